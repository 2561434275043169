//! `pchat db logship` and `pchat db mirror`: the log-shipping wizard and the
//! mirroring pages of SQL Server Management Studio, as commands against
//! database servers (`pchat db serve`).

use super::{out, Database};
use anyhow::{bail, Context};
use pchat_wire::message::{
    CopyTarget, LogshipPrimary, LogshipSecondary, MirrorMode, MirrorRole, Request,
};
use pchat_wire::RemoteStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Secret {
    /// A file holding the cluster secret (else PCHAT_CLUSTER_SECRET).
    #[arg(long, env = "PCHAT_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
}

/// A command's target: databases on one database server.
#[derive(clap::Args, Debug)]
pub struct OnServer {
    #[arg(long)]
    server: String,
    /// mgc, mgccomp, or both (the default).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["mgc", "mgccomp"])]
    database: Vec<Database>,
    #[command(flatten)]
    secret: Secret,
    #[arg(long)]
    json: bool,
}

impl OnServer {
    /// Sends `req` for each database, in order; answers the answers.
    fn each(
        &self,
        req: impl Fn(pchat_wire::message::Db) -> Request,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let s = Server::new(&self.server, &self.secret)?;
        self.database
            .iter()
            .map(|db| s.call(req(db.wire())))
            .collect()
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum LogshipCmd {
    /// Ship the log of the primary's databases to a secondary: initialise
    /// the secondary from a full backup (unless --initialized), then start
    /// the backup job on the primary and the copy and restore jobs on the
    /// secondary.
    Configure {
        #[arg(long)]
        primary: String,
        #[arg(long)]
        secondary: String,
        /// mgc, mgccomp, or both (the default).
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["mgc", "mgccomp"])]
        database: Vec<Database>,
        /// A folder both servers reach (the backup job writes there).
        #[arg(long)]
        share: String,
        /// The secondary's local folder the copy job copies to.
        #[arg(long)]
        copy_to: String,
        /// Ship as soon as the log grows (lag well under a second).
        #[arg(long, conflicts_with_all = ["backup_every", "copy_every", "restore_every"])]
        continuous: bool,
        #[arg(long, default_value = "15m", value_parser = crate::parse_duration)]
        backup_every: Duration,
        #[arg(long, default_value = "15m", value_parser = crate::parse_duration)]
        copy_every: Duration,
        #[arg(long, default_value = "15m", value_parser = crate::parse_duration)]
        restore_every: Duration,
        /// Restore a log backup only once it is this old.
        #[arg(long, value_parser = crate::parse_duration)]
        restore_delay: Option<Duration>,
        /// Leave the secondary read-only between restores (else RESTORING).
        #[arg(long)]
        standby: bool,
        /// The secondary already holds a restored full backup of the primary.
        #[arg(long)]
        initialized: bool,
        /// Overwrite the secondary's databases with the full backup even when
        /// they hold data.
        #[arg(long)]
        replace: bool,
        /// Keep log backups in the share at least this long.
        #[arg(long, default_value = "72h", value_parser = crate::parse_duration)]
        retention: Duration,
        /// Alert when no log backup ran within this.
        #[arg(long, default_value = "1h", value_parser = crate::parse_duration)]
        backup_alert: Duration,
        /// Alert when a copied log backup waited longer than this.
        #[arg(long, default_value = "45m", value_parser = crate::parse_duration)]
        restore_alert: Duration,
        #[command(flatten)]
        secret: Secret,
        #[arg(long)]
        json: bool,
    },
    /// The monitor: each job's last run, last file, last LSN, lag and alerts.
    Status {
        #[arg(long)]
        server: String,
        #[command(flatten)]
        secret: Secret,
        #[arg(long)]
        json: bool,
    },
    /// Run a secondary's copy and restore jobs now, ignoring the delay (what
    /// is left before bringing it online with `pchat db recover`).
    Run {
        #[command(flatten)]
        on: OnServer,
    },
    /// Stop log shipping on a server (the primary's backup job, or a
    /// secondary's copy and restore jobs). The databases keep their state.
    Remove {
        #[command(flatten)]
        on: OnServer,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum MirrorCmd {
    /// Pair the principal's databases with a mirror: the mirror is
    /// initialised from a full backup (through --share) restored WITH
    /// NORECOVERY, then follows the principal's log.
    Set {
        #[arg(long)]
        principal: String,
        #[arg(long)]
        mirror: String,
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["mgc", "mgccomp"])]
        database: Vec<Database>,
        #[arg(long, value_enum, default_value = "sync")]
        mode: Mode,
        /// A folder both servers reach, for the initial full backup.
        #[arg(long)]
        share: String,
        /// Overwrite the mirror's databases even when they hold data.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        secret: Secret,
        #[arg(long)]
        json: bool,
    },
    /// Planned role switch, run against the principal: only when the mirror
    /// is synchronized; nothing is lost.
    Failover {
        #[command(flatten)]
        on: OnServer,
    },
    /// The principal is lost: the mirror serves, on a new fork, and reports
    /// the LSNs it may lack (none when it was synchronized).
    ForceService {
        #[command(flatten)]
        on: OnServer,
    },
    /// Break the pair on this server (run it on both): both keep their
    /// data; a principal serves alone, a mirror stays RESTORING.
    Remove {
        #[command(flatten)]
        on: OnServer,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Mode {
    /// Acknowledge once the mirror has it too; serve alone while it is away.
    Sync,
    /// Acknowledge once the mirror has it too; refuse writes while it is away.
    Strict,
    /// Do not wait for the mirror.
    Async,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One connection to a database server, for a command's requests (the
/// runbooks of `pchat dr` use the same operations).
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) addr: String,
    store: Arc<RemoteStore>,
}

impl Server {
    fn new(addr: &str, secret: &Secret) -> anyhow::Result<Server> {
        let key = crate::config::cluster_secret(secret.cluster_secret_file.as_deref())?;
        Ok(Server::connect(addr, key))
    }

    pub(crate) fn connect(addr: &str, key: Vec<u8>) -> Server {
        Server {
            addr: addr.to_string(),
            store: RemoteStore::tool(addr.to_string(), key, "pchat-db".into()),
        }
    }

    pub(crate) async fn ask(&self, req: Request) -> anyhow::Result<serde_json::Value> {
        self.store
            .call(req)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.addr))
    }

    fn call(&self, req: Request) -> anyhow::Result<serde_json::Value> {
        tokio::runtime::Handle::current().block_on(self.ask(req))
    }

    /// The status entry of one database.
    pub(crate) async fn database(&self, db: Database) -> anyhow::Result<serde_json::Value> {
        let v = self.ask(Request::Status).await?;
        status_entry(&v, db).with_context(|| format!("{} hosts no {}", self.addr, db.file()))
    }

    /// Copies `db` from this server straight to `to` (`SendCopy`), giving
    /// `show` a progress bar line every second while it runs.
    pub(crate) async fn send_copy(
        &self,
        db: Database,
        to: Vec<CopyTarget>,
        show: &dyn Fn(&str),
    ) -> anyhow::Result<serde_json::Value> {
        let t0 = std::time::Instant::now();
        let work = self.ask(Request::SendCopy { db: db.wire(), to });
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let entry = tokio::time::timeout(Duration::from_secs(1), self.database(db)).await;
                    let line = match entry {
                        Ok(Ok(e)) => progress_line(db.name(), &e["copy"], t0.elapsed()),
                        _ => None,
                    };
                    show(&line.unwrap_or_else(|| {
                        format!("  {}: ... {:.0} s", db.name(), t0.elapsed().as_secs_f64())
                    }));
                }
            }
        }
    }

    /// Full backup of `db` on `from` into the share, restored here in
    /// `recovery` (the first step of log shipping and of mirroring).
    pub(crate) async fn initialise_from(
        &self,
        from: &Server,
        db: Database,
        share: &str,
        recovery: pchat_store::Recovery,
        replace: bool,
    ) -> anyhow::Result<serde_json::Value> {
        let here = self.database(db).await?;
        let there = from.database(db).await?;
        let name = db.name();
        if here["last_lsn"] != 0 && here["family_id"] != there["family_id"] && !replace {
            bail!(
                "{} on {} holds data of another database (LSN {}): the backup set holds a backup of a database other than the existing database (use --replace)",
                name,
                self.addr,
                here["last_lsn"]
            );
        }
        let file = format!(
            "{}/{name}_full_{}.bak",
            share.trim_end_matches('/'),
            pchat_engine::now_ms()
        );
        from.ask(Request::Backup {
            db: db.wire(),
            to: file.clone(),
            log: false,
            name: format!("{name} initialisation"),
            description: format!("full backup of {name} on {} for {}", from.addr, self.addr),
        })
        .await?;
        self.ask(Request::Restore {
            db: db.wire(),
            from: file,
            replace: true,
            recovery,
        })
        .await
    }

    /// Mirroring of `db` from `principal` to this server, which is first
    /// initialised from a full backup (RESTORING).
    pub(crate) async fn mirror_of(
        &self,
        principal: &Server,
        db: Database,
        share: &str,
        mode: MirrorMode,
        replace: bool,
    ) -> anyhow::Result<serde_json::Value> {
        let r = self
            .initialise_from(
                principal,
                db,
                share,
                pchat_store::Recovery::NoRecovery,
                replace,
            )
            .await?;
        self.pair_with(principal, db, mode).await?;
        Ok(r)
    }

    /// Pairs this copy of `db` (restored WITH NORECOVERY from a backup of
    /// the principal's history) as the mirror of `principal`.
    pub(crate) async fn pair_with(
        &self,
        principal: &Server,
        db: Database,
        mode: MirrorMode,
    ) -> anyhow::Result<()> {
        self.ask(Request::MirrorSet {
            db: db.wire(),
            role: MirrorRole::Mirror,
            partner: principal.addr.clone(),
            mode,
        })
        .await?;
        principal
            .ask(Request::MirrorSet {
                db: db.wire(),
                role: MirrorRole::Principal,
                partner: self.addr.clone(),
                mode,
            })
            .await?;
        Ok(())
    }

    /// Log shipping of `db` from `primary` to this server (the secondary).
    pub(crate) async fn ship_from(
        &self,
        primary: &Server,
        primary_config: LogshipPrimary,
        secondary_config: LogshipSecondary,
    ) -> anyhow::Result<()> {
        primary
            .ask(Request::LogshipPrimary {
                config: primary_config,
            })
            .await?;
        self.ask(Request::LogshipSecondary {
            config: secondary_config,
        })
        .await?;
        Ok(())
    }
}

pub fn logship(cmd: LogshipCmd) -> anyhow::Result<()> {
    match cmd {
        LogshipCmd::Configure {
            primary,
            secondary,
            database,
            share,
            copy_to,
            continuous,
            backup_every,
            copy_every,
            restore_every,
            restore_delay,
            standby,
            initialized,
            replace,
            retention,
            backup_alert,
            restore_alert,
            secret,
            json,
        } => {
            let (p, s) = (
                Server::new(&primary, &secret)?,
                Server::new(&secondary, &secret)?,
            );
            let mut done = Vec::new();
            for db in database {
                let name = db.file().trim_end_matches(".db");
                let block = |f| tokio::runtime::Handle::current().block_on(f);
                let initialised = if initialized {
                    let here = block(s.database(db))?;
                    if here["state"] == "ONLINE" {
                        bail!("{name} on {secondary} is ONLINE: it is not initialised (restore a full backup of the primary with --norecovery or --standby, or leave out --initialized)");
                    }
                    here
                } else {
                    let recovery = if standby {
                        pchat_store::Recovery::Standby
                    } else {
                        pchat_store::Recovery::NoRecovery
                    };
                    tokio::runtime::Handle::current()
                        .block_on(s.initialise_from(&p, db, &share, recovery, replace))?
                };
                let primary_config = LogshipPrimary {
                    db: db.wire(),
                    share: share.clone(),
                    every_ms: if continuous { 0 } else { ms(backup_every) },
                    continuous,
                    retention_ms: ms(retention),
                    backup_alert_ms: ms(backup_alert),
                };
                let secondary_config = LogshipSecondary {
                    db: db.wire(),
                    primary: primary.clone(),
                    share: share.clone(),
                    copy_to: copy_to.clone(),
                    copy_every_ms: if continuous { 0 } else { ms(copy_every) },
                    restore_every_ms: if continuous { 0 } else { ms(restore_every) },
                    delay_ms: restore_delay.map(ms).unwrap_or(0),
                    standby,
                    continuous,
                    restore_alert_ms: ms(restore_alert),
                };
                tokio::runtime::Handle::current().block_on(s.ship_from(
                    &p,
                    primary_config,
                    secondary_config,
                ))?;
                done.push(serde_json::json!({
                    "database": name,
                    "secondary_last_lsn": initialised["last_lsn"],
                }));
            }
            out(json, &done, || {
                done.iter()
                    .map(|d| {
                        format!(
                            "{}: shipping from {primary} to {secondary} ({}); the secondary is initialised at LSN {}",
                            d["database"].as_str().unwrap_or(""),
                            if continuous { "continuous".to_string() } else { format!("backup every {backup_every:?}") },
                            d["secondary_last_lsn"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        LogshipCmd::Status {
            server,
            secret,
            json,
        } => {
            let v = Server::new(&server, &secret)?.call(Request::LogshipStatus)?;
            out(json, &v, || monitor_text(&v))
        }
        LogshipCmd::Run { on } => {
            let done = on.each(|db| Request::LogshipRun { db })?;
            out(on.json, &done, || {
                done.iter()
                    .map(|d| {
                        format!(
                            "{}: restored through LSN {}",
                            d["database"].as_str().unwrap_or(""),
                            d["last_lsn"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        LogshipCmd::Remove { on } => {
            let done = on.each(|db| Request::LogshipRemove { db })?;
            out(on.json, &done, || {
                format!(
                    "log shipping removed on {} for {}",
                    on.server,
                    done.iter()
                        .map(|d| d["database"].as_str().unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        }
    }
}

fn monitor_text(v: &serde_json::Value) -> String {
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        return "no log shipping on this server".into();
    }
    let age = |t: &serde_json::Value| match t.as_i64() {
        Some(t) => format!("{:.1} s ago", (pchat_engine::now_ms() - t) as f64 / 1000.0),
        None => "never".into(),
    };
    let mut lines = Vec::new();
    for j in jobs {
        let m = &j["monitor"];
        let role = j["config"]["role"].as_str().unwrap_or("");
        lines.push(format!("{} ({role})", j["database"].as_str().unwrap_or("")));
        let names: &[&str] = if role == "primary" {
            &["backup"]
        } else {
            &["copy", "restore"]
        };
        for job in names {
            let r = &m[*job];
            lines.push(format!(
                "  {job:<8} last run {}, last file {}, last LSN {}{}",
                age(&r["last_run_ms"]),
                r["last_file"].as_str().unwrap_or("-"),
                r["last_lsn"],
                r["last_error"]
                    .as_str()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            ));
        }
        if role == "secondary" {
            lines.push(format!(
                "  lag      {} LSNs, {} ms",
                m["lag_lsns"], m["lag_ms"]
            ));
        }
        for a in j["alerts"].as_array().into_iter().flatten() {
            lines.push(format!("  ALERT    {}", a.as_str().unwrap_or("")));
        }
    }
    lines.join("\n")
}

/// Which request a mirroring command sends for one database.
type ToRequest = fn(pchat_wire::message::Db) -> Request;

pub fn mirror(cmd: MirrorCmd) -> anyhow::Result<()> {
    let (on, req): (OnServer, ToRequest) = match cmd {
        MirrorCmd::Set {
            principal,
            mirror,
            database,
            mode,
            share,
            replace,
            secret,
            json,
        } => {
            let (p, m) = (
                Server::new(&principal, &secret)?,
                Server::new(&mirror, &secret)?,
            );
            let mode = match mode {
                Mode::Sync => MirrorMode::Sync,
                Mode::Strict => MirrorMode::Strict,
                Mode::Async => MirrorMode::Async,
            };
            let mut done = Vec::new();
            for db in database {
                let r = tokio::runtime::Handle::current()
                    .block_on(m.mirror_of(&p, db, &share, mode, replace))?;
                done.push(serde_json::json!({
                    "database": db.file().trim_end_matches(".db"),
                    "mirror_from_lsn": r["last_lsn"],
                }));
            }
            return out(json, &done, || {
                done.iter()
                    .map(|d| {
                        format!(
                            "{}: {principal} is the principal, {mirror} the mirror ({mode:?}); the mirror starts at LSN {}",
                            d["database"].as_str().unwrap_or(""),
                            d["mirror_from_lsn"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        MirrorCmd::Failover { on } => (on, |db| Request::MirrorFailover { db }),
        MirrorCmd::ForceService { on } => (on, |db| Request::MirrorForce { db }),
        MirrorCmd::Remove { on } => (on, |db| Request::MirrorRemove { db }),
    };
    let done = on.each(req)?;
    let server = &on.server;
    out(on.json, &done, || {
        done.iter()
            .map(|d| {
                let mut line = format!(
                    "{}: done on {server}",
                    d["database"].as_str().unwrap_or("")
                );
                if let Some(m) = d.get("missing_lsns") {
                    line = if m.is_null() {
                        format!(
                            "{}: serving on {server} at LSN {} on fork {}; it lacks nothing the old principal committed",
                            d["database"].as_str().unwrap_or(""),
                            d["last_lsn"],
                            d["fork_id"].as_str().unwrap_or("")
                        )
                    } else {
                        format!(
                            "{}: serving on {server} at LSN {} on fork {}; LSNs {}-{} committed on the old principal are missing here{}",
                            d["database"].as_str().unwrap_or(""),
                            d["last_lsn"],
                            d["fork_id"].as_str().unwrap_or(""),
                            m["first"],
                            m["last"],
                            if d["mode"] == "async" {
                                " (asynchronous: some may have been acknowledged)"
                            } else {
                                " (none was acknowledged unless the principal served exposed)"
                            }
                        )
                    };
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A copy's progress (`copy` in a database's status: `{sent, total}`
/// bytes) as a bar: `  mgc: [##########--------------]  42%  440 of 1040 MiB, 415 MiB/s`.
pub(crate) fn progress_line(
    name: &str,
    copy: &serde_json::Value,
    elapsed: Duration,
) -> Option<String> {
    const WIDTH: usize = 24;
    let (sent, total) = (copy["sent"].as_u64()?, copy["total"].as_u64()?);
    if total == 0 {
        return None;
    }
    let done = sent.min(total) as f64 / total as f64;
    let filled = ((done * WIDTH as f64).round() as usize).min(WIDTH);
    let rate = sent as f64 / elapsed.as_secs_f64().max(0.001) / (1u64 << 20) as f64;
    Some(format!(
        "  {name}: [{}{}] {:>3.0}%  {} of {} MiB, {rate:.0} MiB/s",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        done * 100.0,
        sent >> 20,
        total >> 20,
    ))
}

/// One database's entry in a `status` answer.
pub(crate) fn status_entry(status: &serde_json::Value, db: Database) -> Option<serde_json::Value> {
    status["databases"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["database"] == db.name()).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_copy_in_progress_is_drawn_as_a_bar() {
        let copy = json!({"sent": 440u64 << 20, "total": 1040u64 << 20});
        let line = progress_line("mgc", &copy, Duration::from_secs(2)).unwrap();
        assert_eq!(
            line,
            "  mgc: [##########--------------]  42%  440 of 1040 MiB, 220 MiB/s"
        );
        let done = json!({"sent": 7, "total": 7});
        let line = progress_line("mgccomp", &done, Duration::from_secs(1)).unwrap();
        assert!(
            line.contains(&format!("[{}] 100%", "#".repeat(24))),
            "{line}"
        );
        // No copy, or one whose length is not known yet: no bar.
        assert_eq!(
            progress_line("mgc", &json!(null), Duration::from_secs(1)),
            None
        );
        let unknown = json!({"sent": 0, "total": 0});
        assert_eq!(progress_line("mgc", &unknown, Duration::from_secs(1)), None);
    }
}
