//! `topology.toml`: the pool as published (Lync's Topology Builder). One
//! pool, two data centers, up to 8 chat servers (4 active by default), the
//! database servers by role (primary, primary mirror, backup, backup
//! mirror), the databases, log shipping and mirroring.
//!
//! [`Topology::parse`] reads it and [`Topology::check`] lists every mistake,
//! each with a stable code and a sentence that says how to fix it.
//!
//! ```toml
//! pool = "chatpool1"
//! # max_servers = 8, max_active = 4, active_across_data_centers = false
//! data_centers = ["dc1", "dc2"]
//! databases = ["mgc", "mgccomp"]
//!
//! [[chat_server]]
//! name = "chat1"
//! data_center = "dc1"
//! client = "10.0.1.11:8080"
//! admin = "10.0.1.11:8081"
//! active = true
//!
//! [[database_server]]
//! name = "db1"
//! data_center = "dc1"
//! address = "10.0.1.21:5433"
//! role = "primary"          # primary-mirror, backup, backup-mirror
//! # copy_to = "/var/lib/pchat/logship-copy"   (default: [log_shipping] copy_to)
//!
//! [log_shipping]
//! share = "/share/logship"
//! copy_to = "/var/lib/pchat/logship-copy"
//! continuous = true         # or backup_every / copy_every / restore_every
//!
//! [mirroring]
//! mode = "sync"             # strict, async
//! ```

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub pool: String,
    /// Chat servers the pool may have (Lync: 8).
    #[serde(default = "default_max_servers")]
    pub max_servers: usize,
    /// Chat servers active at once (Lync: 4).
    #[serde(default = "default_max_active")]
    pub max_active: usize,
    /// Whether active chat servers may sit in a data center other than the
    /// serving databases' (Lync: no; only when the link between the data
    /// centers allows it).
    #[serde(default)]
    pub active_across_data_centers: bool,
    pub data_centers: Vec<String>,
    #[serde(default = "default_databases")]
    pub databases: Vec<String>,
    #[serde(default, rename = "chat_server")]
    pub chat_servers: Vec<ChatServer>,
    #[serde(default, rename = "database_server")]
    pub database_servers: Vec<DatabaseServer>,
    pub log_shipping: Option<LogShipping>,
    pub mirroring: Option<Mirroring>,
}

fn default_max_servers() -> usize {
    8
}
fn default_max_active() -> usize {
    4
}
fn default_databases() -> Vec<String> {
    vec!["mgc".into(), "mgccomp".into()]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatServer {
    pub name: String,
    pub data_center: String,
    /// Where clients connect (HTTP and WebSocket).
    pub client: String,
    /// Where operators and the runbooks reach it.
    pub admin: String,
    /// In the initial active set.
    #[serde(default)]
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Primary,
    PrimaryMirror,
    Backup,
    BackupMirror,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::PrimaryMirror => "primary-mirror",
            Role::Backup => "backup",
            Role::BackupMirror => "backup-mirror",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseServer {
    pub name: String,
    pub data_center: String,
    /// Where `pchat db serve` listens.
    pub address: String,
    pub role: Role,
    /// Where this server's log-shipping copy job keeps the log backups it
    /// copies (default: `[log_shipping] copy_to`). Two secondaries on one
    /// machine, as in the lab, need folders of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogShipping {
    pub share: String,
    pub copy_to: String,
    #[serde(default)]
    pub continuous: bool,
    pub backup_every: Option<String>,
    pub copy_every: Option<String>,
    pub restore_every: Option<String>,
    pub restore_delay: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirroring {
    pub mode: String,
}

/// One mistake in a topology: a stable code and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mistake {
    pub code: &'static str,
    pub message: String,
}

fn mistake(code: &'static str, message: String) -> Mistake {
    Mistake { code, message }
}

impl Topology {
    /// Reads a topology; a syntax error or an unknown field is one mistake
    /// (`syntax`) that names the line.
    pub fn parse(text: &str) -> Result<Topology, Mistake> {
        toml::from_str(text).map_err(|e| mistake("syntax", e.to_string().trim().to_string()))
    }

    /// The database server of a role, if the topology has one.
    pub fn database_server(&self, role: Role) -> Option<&DatabaseServer> {
        self.database_servers.iter().find(|d| d.role == role)
    }

    /// The copy folder of the server in `role`, as a log-shipping secondary.
    pub fn copy_folder(&self, role: Role) -> Option<String> {
        let shared = self.log_shipping.as_ref().map(|l| l.copy_to.clone());
        self.database_server(role)
            .and_then(|d| d.copy_to.clone())
            .or(shared)
    }

    /// Every mistake, in a stable order (none: the topology can be used).
    pub fn check(&self) -> Vec<Mistake> {
        let mut out = Vec::new();
        if self.pool.trim().is_empty() {
            out.push(mistake("pool_name", "the pool needs a name".into()));
        }
        let dcs: BTreeSet<&str> = self.data_centers.iter().map(String::as_str).collect();
        if self.data_centers.len() != 2 || dcs.len() != 2 {
            out.push(mistake(
                "data_centers",
                format!(
                    "a pool spans two data centers, named differently; this one names {:?}",
                    self.data_centers
                ),
            ));
        }
        for db in &self.databases {
            if db != "mgc" && db != "mgccomp" {
                out.push(mistake(
                    "unknown_database",
                    format!("unknown database '{db}': a pool has mgc and mgccomp"),
                ));
            }
        }
        if !self.databases.iter().any(|d| d == "mgc") {
            out.push(mistake(
                "unknown_database",
                "the databases must include mgc".into(),
            ));
        }
        self.check_names_and_addresses(&dcs, &mut out);
        self.check_chat_servers(&mut out);
        self.check_database_servers(&mut out);
        self.check_replication(&mut out);
        out
    }

    fn check_names_and_addresses(&self, dcs: &BTreeSet<&str>, out: &mut Vec<Mistake>) {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut addresses: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let servers = self
            .chat_servers
            .iter()
            .map(|c| (c.name.as_str(), c.data_center.as_str(), "chat server"))
            .chain(
                self.database_servers
                    .iter()
                    .map(|d| (d.name.as_str(), d.data_center.as_str(), "database server")),
            );
        for (name, dc, what) in servers {
            if name.trim().is_empty() {
                out.push(mistake("server_name", format!("a {what} has no name")));
            }
            *names.entry(name).or_default() += 1;
            if !dcs.contains(dc) {
                out.push(mistake(
                    "unknown_data_center",
                    format!(
                        "{what} '{name}' is in data center '{dc}', which the topology does not name (it names {:?})",
                        self.data_centers
                    ),
                ));
            }
        }
        for c in &self.chat_servers {
            addresses
                .entry(c.client.as_str())
                .or_default()
                .push(format!("{} (client)", c.name));
            addresses
                .entry(c.admin.as_str())
                .or_default()
                .push(format!("{} (admin)", c.name));
        }
        for d in &self.database_servers {
            addresses
                .entry(d.address.as_str())
                .or_default()
                .push(d.name.clone());
        }
        for (name, n) in names {
            if n > 1 && !self.two_roles(name) {
                out.push(mistake(
                    "duplicate_name",
                    format!("'{name}' names {n} servers: every server needs its own name"),
                ));
            }
        }
        for (address, users) in addresses {
            if !valid_address(address) {
                out.push(mistake(
                    "bad_address",
                    format!(
                        "'{address}' ({}) is not an address like 10.0.0.5:8080 or host.example:8080",
                        users.join(", ")
                    ),
                ));
            }
            if users.len() > 1 {
                out.push(mistake(
                    "address_reused",
                    format!(
                        "{address} is used by {}: each needs its own",
                        users.join(" and ")
                    ),
                ));
            }
        }
    }

    /// Whether `name` is one database server listed with two roles (its own
    /// mistake, not a duplicate name).
    fn two_roles(&self, name: &str) -> bool {
        let roles: BTreeSet<Role> = self
            .database_servers
            .iter()
            .filter(|d| d.name == name)
            .map(|d| d.role)
            .collect();
        roles.len() > 1
    }

    fn check_chat_servers(&self, out: &mut Vec<Mistake>) {
        if self.chat_servers.is_empty() {
            out.push(mistake(
                "no_chat_servers",
                "the pool has no chat server".into(),
            ));
        }
        if self.chat_servers.len() > self.max_servers {
            out.push(mistake(
                "too_many_servers",
                format!(
                    "{} chat servers, at most {} in a pool (max_servers)",
                    self.chat_servers.len(),
                    self.max_servers
                ),
            ));
        }
        let active: Vec<&ChatServer> = self.chat_servers.iter().filter(|c| c.active).collect();
        if active.len() > self.max_active {
            out.push(mistake(
                "too_many_active",
                format!(
                    "{} chat servers are active ({}), at most {} may be (max_active)",
                    active.len(),
                    active
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.max_active
                ),
            ));
        }
        let primary_dc = self
            .database_server(Role::Primary)
            .map(|d| d.data_center.as_str());
        if let (Some(dc), false) = (primary_dc, self.active_across_data_centers) {
            for c in active.iter().filter(|c| c.data_center != dc) {
                out.push(mistake(
                    "active_in_other_data_center",
                    format!(
                        "active chat server '{}' is in {}, the primary database in {dc}: all the active servers must be in the data center of the primary database (or set active_across_data_centers when the link allows it)",
                        c.name, c.data_center
                    ),
                ));
            }
        }
    }

    fn check_database_servers(&self, out: &mut Vec<Mistake>) {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for d in &self.database_servers {
            if self.two_roles(&d.name) && seen.insert(d.name.as_str()) {
                let roles: Vec<&str> = self
                    .database_servers
                    .iter()
                    .filter(|x| x.name == d.name)
                    .map(|x| x.role.as_str())
                    .collect();
                out.push(mistake(
                    "two_roles",
                    format!(
                        "database server '{}' has two roles ({}): each role needs its own server",
                        d.name,
                        roles.join(" and ")
                    ),
                ));
            }
        }
        for role in [
            Role::Primary,
            Role::PrimaryMirror,
            Role::Backup,
            Role::BackupMirror,
        ] {
            let holders: Vec<&str> = self
                .database_servers
                .iter()
                .filter(|d| d.role == role)
                .map(|d| d.name.as_str())
                .collect();
            if holders.len() > 1 {
                out.push(mistake(
                    "role_taken",
                    format!(
                        "{} database servers hold the {} role ({}): one server per role",
                        holders.len(),
                        role.as_str(),
                        holders.join(", ")
                    ),
                ));
            }
        }
        let primary = self.database_server(Role::Primary);
        let backup = self.database_server(Role::Backup);
        if primary.is_none() {
            out.push(mistake(
                "role_missing",
                "no database server has the primary role".into(),
            ));
        }
        if backup.is_none() {
            out.push(mistake(
                "role_missing",
                "no database server has the backup role (the copy in the other data center)".into(),
            ));
        }
        if let (Some(p), Some(b)) = (primary, backup) {
            if p.data_center == b.data_center {
                out.push(mistake(
                    "backup_in_primary_data_center",
                    format!(
                        "the backup database server '{}' is in {}, like the primary: it must be in the other data center",
                        b.name, b.data_center
                    ),
                ));
            }
        }
        for (mirror, of) in [(Role::PrimaryMirror, primary), (Role::BackupMirror, backup)] {
            if let (Some(m), Some(of)) = (self.database_server(mirror), of) {
                if m.data_center != of.data_center {
                    out.push(mistake(
                        "mirror_in_other_data_center",
                        format!(
                            "the {} '{}' is in {}, its principal '{}' in {}: a mirror is in its principal's data center",
                            mirror.as_str(),
                            m.name,
                            m.data_center,
                            of.name,
                            of.data_center
                        ),
                    ));
                }
            }
        }
    }

    /// The backup and the backup mirror are both log-shipping secondaries:
    /// on one host their copy jobs need folders of their own.
    fn check_copy_folders(&self, out: &mut Vec<Mistake>) {
        let (Some(b), Some(bm)) = (
            self.database_server(Role::Backup),
            self.database_server(Role::BackupMirror),
        ) else {
            return;
        };
        let host = |a: &str| a.rsplit_once(':').map(|(h, _)| h.to_string());
        let same_host = host(&b.address).is_some() && host(&b.address) == host(&bm.address);
        let folder = self.copy_folder(Role::Backup);
        if same_host && folder == self.copy_folder(Role::BackupMirror) {
            out.push(mistake(
                "copy_folder_shared",
                format!(
                    "{} and {} run on one host and would copy log backups into the same folder {}: give one its own copy_to",
                    b.name,
                    bm.name,
                    folder.unwrap_or_default()
                ),
            ));
        }
    }

    fn check_replication(&self, out: &mut Vec<Mistake>) {
        match &self.log_shipping {
            None => out.push(mistake(
                "log_shipping_missing",
                "no [log_shipping]: the backup databases need a share and a copy folder".into(),
            )),
            Some(l) => {
                if l.share.trim().is_empty() || l.copy_to.trim().is_empty() {
                    out.push(mistake(
                        "log_shipping",
                        "[log_shipping] needs a share and a copy_to folder".into(),
                    ));
                }
                let schedules = [
                    ("backup_every", &l.backup_every),
                    ("copy_every", &l.copy_every),
                    ("restore_every", &l.restore_every),
                ];
                for (field, value) in schedules {
                    match value {
                        Some(v) => {
                            if let Err(e) = crate::parse_duration(v) {
                                out.push(mistake(
                                    "bad_schedule",
                                    format!("[log_shipping] {field}: {e}"),
                                ));
                            }
                        }
                        None if !l.continuous => out.push(mistake(
                            "bad_schedule",
                            format!("[log_shipping] needs {field}, or continuous = true"),
                        )),
                        None => {}
                    }
                }
                if let Some(Err(e)) = l.restore_delay.as_deref().map(crate::parse_duration) {
                    out.push(mistake(
                        "bad_schedule",
                        format!("[log_shipping] restore_delay: {e}"),
                    ));
                }
                self.check_copy_folders(out);
            }
        }
        let mirrors = self.database_server(Role::PrimaryMirror).is_some()
            || self.database_server(Role::BackupMirror).is_some();
        match &self.mirroring {
            Some(m) if !["sync", "strict", "async"].contains(&m.mode.as_str()) => {
                out.push(mistake(
                    "bad_mirroring_mode",
                    format!("[mirroring] mode '{}': use sync, strict or async", m.mode),
                ))
            }
            None if mirrors => out.push(mistake(
                "mirroring_missing",
                "mirror servers are named but there is no [mirroring] mode".into(),
            )),
            _ => {}
        }
    }
}

/// `host:port` with a port number and a host without spaces.
fn valid_address(a: &str) -> bool {
    match a.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
