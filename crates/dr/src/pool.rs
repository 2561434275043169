//! The pool configuration (Lync's active server list and pool state, kept in
//! its Central Management Store): which chat servers are active, and whether
//! the pool uses the primary databases (Normal) or the backup ones
//! (FailedOver).
//!
//! Every database server of the topology keeps a copy, and copies are
//! ordered by `version`: the newest one anybody can see is the pool's. A
//! change is written to every reachable database server and spreads from
//! there to the others, so the configuration survives the loss of either
//! data center. Database servers fence by it (no writes from a chat server
//! that is not active in the newest version they know) and chat servers
//! obey it (an inactive server refuses clients).

use crate::topology::{Role, Topology};
use crate::Mistake;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolState {
    /// The pool uses the primary databases (their mirror as failover partner).
    Normal,
    /// The pool uses the backup databases.
    FailedOver,
}

impl PoolState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Normal => "normal",
            PoolState::FailedOver => "failed-over",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveServer {
    pub name: String,
    pub data_center: String,
}

/// One version of the pool configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub pool: String,
    /// Grows by one with every change; the newest version wins.
    pub version: u64,
    pub state: PoolState,
    pub active: Vec<ActiveServer>,
    /// Where the databases serve from in this state.
    pub serving_data_center: String,
    /// Whether active servers may sit in the other data center.
    pub active_across_data_centers: bool,
    /// What the change was, who made it and when (ms since the epoch).
    pub change: String,
    pub changed_at_ms: u64,
}

/// A change to the pool configuration (the Lync cmdlets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `Set-CsPersistentChatActiveServer -ActiveServers @{Add=...}`
    Add(Vec<String>),
    /// `@{Remove=...}`
    Remove(Vec<String>),
    /// `-ActiveServers a,b` (the list becomes exactly these).
    Replace(Vec<String>),
    /// `-ActiveServers $Null`
    Clear,
    /// One server leaves and another joins in the same version.
    Swap { out: String, into: String },
    /// `Set-CsPersistentChatState -PoolState ...`
    State(PoolState),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Add(s) => write!(f, "active-servers add {}", s.join(" ")),
            Change::Remove(s) => write!(f, "active-servers remove {}", s.join(" ")),
            Change::Replace(s) => write!(f, "active-servers replace {}", s.join(" ")),
            Change::Clear => write!(f, "active-servers clear"),
            Change::Swap { out, into } => write!(f, "active-servers swap {out} {into}"),
            Change::State(s) => write!(f, "pool-state {}", s.as_str()),
        }
    }
}

fn mistake(code: &'static str, message: String) -> Mistake {
    Mistake { code, message }
}

impl PoolConfig {
    /// Version 1, as the topology publishes it: Normal, with the chat
    /// servers marked `active`.
    pub fn initial(t: &Topology, now_ms: u64) -> PoolConfig {
        PoolConfig {
            pool: t.pool.clone(),
            version: 1,
            state: PoolState::Normal,
            active: t
                .chat_servers
                .iter()
                .filter(|c| c.active)
                .map(|c| ActiveServer {
                    name: c.name.clone(),
                    data_center: c.data_center.clone(),
                })
                .collect(),
            serving_data_center: t.serving_data_center(PoolState::Normal),
            active_across_data_centers: t.active_across_data_centers,
            change: "published topology".into(),
            changed_at_ms: now_ms,
        }
    }

    /// The next version with `change` applied, or why it is refused.
    pub fn apply(&self, t: &Topology, change: &Change, now_ms: u64) -> Result<PoolConfig, Mistake> {
        let mut next = self.clone();
        let names = |list: &[String]| -> Result<Vec<ActiveServer>, Mistake> {
            list.iter()
                .map(|n| {
                    t.chat_servers
                        .iter()
                        .find(|c| &c.name == n)
                        .map(|c| ActiveServer {
                            name: c.name.clone(),
                            data_center: c.data_center.clone(),
                        })
                        .ok_or_else(|| {
                            mistake(
                                "unknown_server",
                                format!("'{n}' is not a chat server of pool {}", t.pool),
                            )
                        })
                })
                .collect()
        };
        let is_active = |n: &str| self.active.iter().any(|a| a.name == n);
        match change {
            Change::Add(list) => {
                for s in names(list)? {
                    if is_active(&s.name) {
                        return Err(mistake(
                            "already_active",
                            format!("{} is already active", s.name),
                        ));
                    }
                    next.active.push(s);
                }
            }
            Change::Remove(list) => {
                names(list)?;
                for n in list {
                    if !is_active(n) {
                        return Err(mistake("not_active", format!("{n} is not active")));
                    }
                }
                next.active.retain(|a| !list.contains(&a.name));
            }
            Change::Replace(list) => next.active = names(list)?,
            Change::Clear => next.active.clear(),
            Change::Swap { out, into } => {
                let into = names(std::slice::from_ref(into))?;
                if !is_active(out) {
                    return Err(mistake("not_active", format!("{out} is not active")));
                }
                if is_active(&into[0].name) {
                    return Err(mistake(
                        "already_active",
                        format!("{} is already active", into[0].name),
                    ));
                }
                next.active.retain(|a| &a.name != out);
                next.active.extend(into);
            }
            Change::State(state) => {
                next.state = *state;
                next.serving_data_center = t.serving_data_center(*state);
            }
        }
        next.active_across_data_centers = t.active_across_data_centers;
        // A server made active must sit where the databases serve (Lync:
        // "All the active servers must be located within the same data
        // center as the new primary database"), unless the link allows it.
        // A change of state may leave servers behind: they do not serve.
        if !matches!(change, Change::State(_) | Change::Remove(_) | Change::Clear) {
            if let Some(m) = next
                .misplaced()
                .into_iter()
                .find(|m| !self.active.iter().any(|a| a.name == m.name))
            {
                return Err(mistake(
                    "active_in_other_data_center",
                    format!(
                        "{} is in data center {}, but in pool state {} the databases serve from {}; \
                         set active_across_data_centers in the topology only if the link allows it",
                        m.name,
                        m.data_center,
                        next.state.as_str(),
                        next.serving_data_center
                    ),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = next.active.iter().find(|a| !seen.insert(a.name.as_str())) {
            return Err(mistake(
                "duplicate_name",
                format!("{} is named twice", dup.name),
            ));
        }
        if next.active.len() > t.max_active {
            return Err(mistake(
                "too_many_active",
                format!(
                    "{} active servers, but the pool allows {} (max_active in the topology)",
                    next.active.len(),
                    t.max_active
                ),
            ));
        }
        next.version = self.version + 1;
        next.pool = t.pool.clone();
        next.active_across_data_centers = t.active_across_data_centers;
        next.change = change.to_string();
        next.changed_at_ms = now_ms;
        Ok(next)
    }

    /// Whether `server` may serve clients and write now, or why not.
    pub fn may_serve(&self, server: &str) -> Result<(), String> {
        let Some(me) = self.active.iter().find(|a| a.name == server) else {
            return Err(format!(
                "server inactive: {server} is not active in pool configuration version {}",
                self.version
            ));
        };
        if me.data_center != self.serving_data_center && !self.active_across_data_centers {
            return Err(format!(
                "server inactive: {server} is in data center {}, but the databases serve from {} \
                 (pool state {}, configuration version {})",
                me.data_center,
                self.serving_data_center,
                self.state.as_str(),
                self.version
            ));
        }
        Ok(())
    }

    /// Active servers in a data center other than the serving one that the
    /// topology does not allow there: they do not serve.
    pub fn misplaced(&self) -> Vec<&ActiveServer> {
        if self.active_across_data_centers {
            return Vec::new();
        }
        self.active
            .iter()
            .filter(|a| a.data_center != self.serving_data_center)
            .collect()
    }

    /// The newest of several copies (ties: the first).
    pub fn newest<'a>(copies: impl IntoIterator<Item = &'a PoolConfig>) -> Option<&'a PoolConfig> {
        copies
            .into_iter()
            .fold(None, |best: Option<&PoolConfig>, c| match best {
                Some(b) if b.version >= c.version => Some(b),
                _ => Some(c),
            })
    }
}

impl Topology {
    /// The data center whose databases serve in `state`.
    pub fn serving_data_center(&self, state: PoolState) -> String {
        let role = match state {
            PoolState::Normal => Role::Primary,
            PoolState::FailedOver => Role::Backup,
        };
        self.database_server(role)
            .map(|d| d.data_center.clone())
            .unwrap_or_default()
    }

    /// The database servers chat servers use in `state`: the principal's
    /// role first, then its mirror (the failover partner).
    pub fn serving_databases(&self, state: PoolState) -> Vec<&crate::topology::DatabaseServer> {
        let roles = match state {
            PoolState::Normal => [Role::Primary, Role::PrimaryMirror],
            PoolState::FailedOver => [Role::Backup, Role::BackupMirror],
        };
        roles
            .iter()
            .filter_map(|r| self.database_server(*r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let t = Topology::parse(include_str!("../../../docs/examples/topology.toml")).unwrap();
        assert!(t.check().is_empty());
        t
    }

    #[test]
    fn initial_is_the_published_active_set() {
        let t = topology();
        let c = PoolConfig::initial(&t, 0);
        assert_eq!(c.version, 1);
        assert_eq!(c.state, PoolState::Normal);
        assert_eq!(c.serving_data_center, "dc1");
        let names: Vec<_> = c.active.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["chat1", "chat2"]);
        assert!(c.may_serve("chat1").is_ok());
        let e = c.may_serve("chat3").unwrap_err();
        assert!(e.starts_with("server inactive"), "{e}");
    }

    #[test]
    fn the_failover_sequence() {
        let t = topology();
        let c = PoolConfig::initial(&t, 0);
        let c = c
            .apply(&t, &Change::State(PoolState::FailedOver), 1)
            .unwrap();
        assert_eq!((c.version, c.serving_data_center.as_str()), (2, "dc2"));
        // Active in dc1 while dc2 serves: they do not serve.
        assert_eq!(c.misplaced().len(), 2);
        assert!(c
            .may_serve("chat1")
            .unwrap_err()
            .contains("data center dc1"));
        let c = c
            .apply(
                &t,
                &Change::Replace(vec!["chat3".into(), "chat4".into()]),
                2,
            )
            .unwrap();
        assert_eq!(c.version, 3);
        assert!(c.may_serve("chat3").is_ok() && c.may_serve("chat1").is_err());
        assert_eq!(c.change, "active-servers replace chat3 chat4");
        let swap = |out: &str, into: &str| Change::Swap {
            out: out.into(),
            into: into.into(),
        };
        // chat1 is in dc1, and dc2 serves now.
        let e = c.apply(&t, &swap("chat4", "chat1"), 3).unwrap_err();
        assert_eq!(e.code, "active_in_other_data_center");
        let c = c
            .apply(&t, &Change::Remove(vec!["chat4".into()]), 3)
            .unwrap();
        let c = c.apply(&t, &swap("chat3", "chat4"), 3).unwrap();
        let names: Vec<_> = c.active.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["chat4"]);
        let c = c.apply(&t, &Change::Clear, 4).unwrap();
        assert!(c.active.is_empty() && c.version == 6);
        // Where the link allows it, servers may be active across.
        let mut across = t.clone();
        across.active_across_data_centers = true;
        let c = c
            .apply(&across, &Change::Add(vec!["chat1".into()]), 5)
            .unwrap();
        assert!(c.may_serve("chat1").is_ok());
    }

    #[test]
    fn refused_changes() {
        let t = topology();
        let c = PoolConfig::initial(&t, 0);
        let code = |ch: Change| c.apply(&t, &ch, 1).unwrap_err().code;
        assert_eq!(code(Change::Add(vec!["chat9".into()])), "unknown_server");
        assert_eq!(
            code(Change::Add(vec!["chat3".into()])),
            "active_in_other_data_center"
        );
        assert_eq!(code(Change::Add(vec!["chat1".into()])), "already_active");
        assert_eq!(code(Change::Remove(vec!["chat3".into()])), "not_active");
        assert_eq!(
            code(Change::Replace(vec!["chat1".into(), "chat1".into()])),
            "duplicate_name"
        );
        let mut small = t.clone();
        small.max_active = 2;
        small.active_across_data_centers = true;
        let e = c
            .apply(&small, &Change::Add(vec!["chat3".into()]), 1)
            .unwrap_err();
        assert_eq!(e.code, "too_many_active");
    }

    #[test]
    fn newest_wins() {
        let t = topology();
        let a = PoolConfig::initial(&t, 0);
        let b = a.apply(&t, &Change::Clear, 1).unwrap();
        assert_eq!(PoolConfig::newest([&a, &b, &a]).unwrap().version, 2);
        assert!(PoolConfig::newest([]).is_none());
    }
}
