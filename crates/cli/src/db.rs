//! `pchat db`: the database operations Lync's procedures ran in SQL Server
//! Management Studio: backup, restore, recovery, log shipping, mirroring, status.
//!
//! They work on a database server (`--server ADDR`, paths are then on the
//! server's machine) or on a data directory (`--data-dir`; a backup may be
//! taken while `pchat serve` runs there, a restore needs the directory to
//! itself). Log shipping and mirroring (`replication`) need servers.

pub(crate) mod replication;

use anyhow::{bail, Context};
use pchat_engine::backup::{self, BackupError, Recovery, RestoreOptions};
use pchat_engine::{open_connection, read_identity, read_state, FILES_DIR, MGCCOMP_FILE, MGC_FILE};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum DbCmd {
    /// Run a database server: this data directory's mgc and mgccomp (with
    /// the compliance recorder) for chat servers started with --database.
    Serve {
        #[arg(long, env = "PCHAT_DATA_DIR")]
        data_dir: PathBuf,
        /// Where to listen (default: the address the topology gives this
        /// server, else 127.0.0.1:5433).
        #[arg(long)]
        listen: Option<String>,
        /// This database server's name.
        #[arg(long, default_value = "db1")]
        name: String,
        /// The pool's topology.toml, when this server is one of its database
        /// servers: it then keeps the pool configuration in step with its
        /// peers and takes writes only in the pool state its role serves.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Serve `/metrics` (Prometheus) and `/healthz` over HTTP here.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// A file holding the cluster secret (else PCHAT_CLUSTER_SECRET).
        #[arg(long, env = "PCHAT_CLUSTER_SECRET_FILE")]
        cluster_secret_file: Option<PathBuf>,
    },
    /// A full backup (a consistent snapshot taken while the database serves;
    /// for mgc with its uploaded files), or with --log a log backup (the log
    /// records since the previous log backup).
    Backup {
        #[command(flatten)]
        at: At,
        #[arg(long, value_enum)]
        database: Database,
        #[arg(long)]
        to: PathBuf,
        #[arg(long)]
        log: bool,
        /// The backup set's name.
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a full backup, or apply a log backup to a database restored
    /// with --norecovery or --standby. The file is checked completely first.
    Restore {
        #[command(flatten)]
        at: At,
        #[arg(long, value_enum)]
        database: Database,
        #[arg(long)]
        from: PathBuf,
        /// Overwrite a database that is ONLINE or of another family.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        mode: Mode,
        #[arg(long)]
        json: bool,
    },
    /// Copy a database from one database server straight to others (the
    /// file read once and streamed to each; no backup file). Its writers
    /// wait while it is read: for a database nobody writes to.
    Copy {
        /// The database server that holds the database.
        #[arg(long)]
        server: String,
        #[arg(long, env = "PCHAT_CLUSTER_SECRET_FILE")]
        cluster_secret_file: Option<PathBuf>,
        #[arg(long, value_enum)]
        database: Database,
        /// A database server to copy it to (repeat for several at once).
        #[arg(long, required = true)]
        to: Vec<String>,
        /// Overwrite a database that is ONLINE or of another family.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        mode: Mode,
        #[arg(long)]
        json: bool,
    },
    /// Bring a database restored with --norecovery or --standby ONLINE on a
    /// new fork, restoring nothing more (RESTORE DATABASE ... WITH RECOVERY).
    Recover {
        #[command(flatten)]
        at: At,
        #[arg(long, value_enum)]
        database: Database,
        #[arg(long)]
        json: bool,
    },
    /// Take an ONLINE database out of service: it keeps its data and serves
    /// nothing (SQL Server's SET OFFLINE).
    Offline {
        #[command(flatten)]
        at: At,
        #[arg(long, value_enum)]
        database: Database,
        #[arg(long)]
        json: bool,
    },
    /// Bring an OFFLINE database back ONLINE.
    Online {
        #[command(flatten)]
        at: At,
        #[arg(long, value_enum)]
        database: Database,
        #[arg(long)]
        json: bool,
    },
    /// Log shipping: configure, status (the monitor), run, remove.
    #[command(subcommand)]
    Logship(replication::LogshipCmd),
    /// Database mirroring: set, failover, force-service, remove.
    #[command(subcommand)]
    Mirror(replication::MirrorCmd),
    /// Check a backup file without restoring it.
    Verify {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The backup sets and log chains in a folder, with their LSN ranges and gaps.
    Backups {
        #[arg(long)]
        share: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Every database of a data directory: state, identity, LSNs, fork.
    Status {
        #[command(flatten)]
        at: At,
        #[arg(long)]
        json: bool,
    },
}

/// The state a restore or copy leaves the database in.
#[derive(clap::Args, Debug)]
#[group(multiple = false)]
pub struct Mode {
    /// Bring the database ONLINE on a new fork (the default).
    #[arg(long)]
    recovery: bool,
    /// Leave it RESTORING: more log backups follow.
    #[arg(long)]
    norecovery: bool,
    /// Leave it read-only between log restores.
    #[arg(long)]
    standby: bool,
}

impl Mode {
    fn recovery(&self) -> Recovery {
        if self.norecovery {
            Recovery::NoRecovery
        } else if self.standby {
            Recovery::Standby
        } else {
            Recovery::Recovery
        }
    }
}

/// Where a command runs: on a data directory, or through a database
/// server (then paths such as `--to` are on the server's machine).
#[derive(clap::Args, Debug)]
pub struct At {
    #[arg(
        long,
        env = "PCHAT_DATA_DIR",
        conflicts_with = "server",
        required_unless_present = "server"
    )]
    data_dir: Option<PathBuf>,
    /// A database server's address (`pchat db serve`).
    #[arg(long)]
    server: Option<String>,
    /// With --server: a file holding the cluster secret (else PCHAT_CLUSTER_SECRET).
    #[arg(long, env = "PCHAT_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
}

impl At {
    /// Sends one request to the database server named by `--server`.
    fn call(&self, req: pchat_wire::message::Request) -> anyhow::Result<serde_json::Value> {
        self.remote(move |store| {
            Box::pin(async move { store.call(req).await.map_err(|e| anyhow::anyhow!("{e}")) })
        })
    }

    /// Runs `f` against the database server named by `--server`.
    fn remote<T>(
        &self,
        f: impl FnOnce(std::sync::Arc<pchat_wire::RemoteStore>) -> Fut<T>,
    ) -> anyhow::Result<T> {
        let addr = self.server.clone().context("--server or --data-dir")?;
        let secret = crate::config::cluster_secret(self.cluster_secret_file.as_deref())?;
        let store = pchat_wire::RemoteStore::tool(addr, secret, "pchat-db".into());
        let rt = tokio::runtime::Handle::current();
        rt.block_on(f(store))
    }
}

type Fut<T> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send>>;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Database {
    Mgc,
    Mgccomp,
}

impl Database {
    fn file(self) -> &'static str {
        match self {
            Database::Mgc => MGC_FILE,
            Database::Mgccomp => MGCCOMP_FILE,
        }
    }
    /// Uploaded files travel with `mgc`.
    fn files(self, dir: &Path) -> Option<PathBuf> {
        (self == Database::Mgc).then(|| dir.join(FILES_DIR))
    }
    /// The database's name: `mgc` or `mgccomp`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Database::Mgc => "mgc",
            Database::Mgccomp => "mgccomp",
        }
    }
    pub(crate) fn wire(self) -> pchat_wire::message::Db {
        match self {
            Database::Mgc => pchat_wire::message::Db::Mgc,
            Database::Mgccomp => pchat_wire::message::Db::Mgccomp,
        }
    }
}

fn out<T: Serialize>(json: bool, v: &T, human: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(v)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}

fn plain(e: BackupError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// `pchat db serve`, until SIGTERM or Ctrl-C.
pub async fn serve(cmd: DbCmd) -> anyhow::Result<()> {
    let DbCmd::Serve {
        data_dir,
        listen,
        name,
        topology,
        metrics_listen,
        cluster_secret_file,
    } = cmd
    else {
        return tokio::task::spawn_blocking(move || run(cmd)).await?;
    };
    let secret = crate::config::cluster_secret(cluster_secret_file.as_deref())?;
    let topology = topology.as_deref().map(crate::topology::load).transpose()?;
    let listen = match (listen, &topology) {
        (Some(l), _) => l,
        (None, Some(t)) => t
            .database_servers
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.address.clone())
            .with_context(|| format!("{name} is not a database server of the topology"))?,
        (None, None) => "127.0.0.1:5433".into(),
    };
    let _owner = crate::dirlock::lock(&data_dir, "pchat db serve")?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let metrics = match metrics_listen {
        Some(m) => {
            let l = tokio::net::TcpListener::bind(&m)
                .await
                .with_context(|| format!("cannot listen on {m}"))?;
            println!("pchat db metrics on {}", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    println!("pchat db listening on {addr}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        let _ = stop.send(true);
    });
    pchat_dbserver::serve_with_metrics(
        listener,
        metrics,
        pchat_dbserver::Config {
            name,
            data_dir,
            secret,
            topology,
        },
        stopped,
    )
    .await
}

pub fn run(cmd: DbCmd) -> anyhow::Result<()> {
    match cmd {
        DbCmd::Serve { .. } => bail!("pchat db serve runs on the async runtime"),
        DbCmd::Backup {
            at,
            database,
            to,
            log,
            name,
            description,
            json,
        } => {
            let Some(data_dir) = at.data_dir.clone() else {
                let db = database.wire();
                let to_s = to.display().to_string();
                let h = at.remote(move |store| {
                    Box::pin(async move {
                        store
                            .backup(db, to_s, log, name, description)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))
                    })
                })?;
                return out(json, &h, || {
                    format!(
                        "{} backup of {} (LSNs {}-{}) written by the server to {}",
                        if log { "log" } else { "full" },
                        h["database"].as_str().unwrap_or(""),
                        h["first_lsn"],
                        h["last_lsn"],
                        to.display()
                    )
                });
            };
            let db = data_dir.join(database.file());
            if !db.exists() {
                bail!(
                    "{} holds no {} database",
                    data_dir.display(),
                    database.file()
                );
            }
            let h = if log {
                backup::log_backup(
                    &db,
                    &to,
                    &name,
                    &description,
                    database.files(&data_dir).as_deref(),
                )
            } else {
                backup::full_backup(
                    &db,
                    database.files(&data_dir).as_deref(),
                    &to,
                    &name,
                    &description,
                )
            }
            .map_err(plain)?;
            out(json, &h, || {
                format!(
                    "{} backup of {} (LSNs {}-{}, fork {}) written to {}",
                    if log { "log" } else { "full" },
                    h.database,
                    h.first_lsn,
                    h.last_lsn,
                    h.fork_id,
                    to.display()
                )
            })
        }
        DbCmd::Restore {
            at,
            database,
            from,
            replace,
            mode,
            json,
        } => {
            let recovery = mode.recovery();
            // The header before taking the directory (a wrong file never
            // even locks it); the checksum is checked as the data is read,
            // before anything takes effect.
            let report = |r: &backup::RestoreReport| {
                format!(
                    "restored {} to LSN {} ({} applied); it is {} on fork {}",
                    r.database,
                    r.last_lsn,
                    r.applied,
                    r.state.as_str(),
                    r.fork_id
                )
            };
            let Some(data_dir) = at.data_dir.clone() else {
                let v = at.call(pchat_wire::message::Request::Restore {
                    db: database.wire(),
                    from: from.display().to_string(),
                    replace,
                    recovery,
                })?;
                let r: backup::RestoreReport = serde_json::from_value(v)?;
                return out(json, &r, || report(&r));
            };
            let h = backup::read_header(&from).map_err(plain)?;
            if h.database != database.file().trim_end_matches(".db") {
                bail!(
                    "{} holds a backup of {}, not of {}",
                    from.display(),
                    h.database,
                    database.file()
                );
            }
            let _owner = crate::dirlock::lock(&data_dir, "a restore")?;
            let r = backup::restore(
                &from,
                &data_dir.join(database.file()),
                database.files(&data_dir).as_deref(),
                RestoreOptions { replace, recovery },
            )
            .map_err(plain)?;
            out(json, &r, || report(&r))
        }
        DbCmd::Copy {
            server,
            cluster_secret_file,
            database,
            to,
            replace,
            mode,
            json,
        } => {
            let key = crate::config::cluster_secret(cluster_secret_file.as_deref())?;
            let at = replication::Server::connect(&server, key);
            let recovery = mode.recovery();
            let to = to
                .into_iter()
                .map(|addr| pchat_wire::message::CopyTarget {
                    addr,
                    replace,
                    recovery,
                })
                .collect();
            // Progress on stderr: stdout holds the report.
            let copying = at.send_copy(database, to, &|line| eprintln!("{line}"));
            let v = tokio::runtime::Handle::current().block_on(copying)?;
            let copies = v["copies"].as_array().cloned().unwrap_or_default();
            let failed: Vec<String> = copies
                .iter()
                .filter_map(|c| Some(format!("{}: {}", c["to"].as_str()?, c["error"].as_str()?)))
                .collect();
            out(json, &v, || {
                let mut lines = vec![format!(
                    "copied {} through LSN {} ({} MiB)",
                    v["database"].as_str().unwrap_or_default(),
                    v["last_lsn"],
                    v["bytes"].as_u64().unwrap_or(0) >> 20
                )];
                for c in &copies {
                    let to = c["to"].as_str().unwrap_or_default();
                    lines.push(match c.get("report") {
                        Some(r) => format!(
                            "  {to}: {} on fork {}",
                            r["state"].as_str().unwrap_or_default(),
                            r["fork_id"].as_str().unwrap_or_default()
                        ),
                        None => format!(
                            "  {to}: refused: {}",
                            c["error"].as_str().unwrap_or_default()
                        ),
                    });
                }
                lines.join("\n")
            })?;
            if !failed.is_empty() {
                bail!("the copy failed on {}", failed.join("; "));
            }
            Ok(())
        }
        DbCmd::Recover { at, database, json } => {
            let done: backup::Applied = match at.data_dir.clone() {
                None => {
                    serde_json::from_value(at.call(pchat_wire::message::Request::Recover {
                        db: database.wire(),
                    })?)?
                }
                Some(dir) => {
                    let _owner = crate::dirlock::lock(&dir, "a recovery")?;
                    backup::recover(&dir.join(database.file())).map_err(plain)?
                }
            };
            out(json, &done, || {
                format!(
                    "{} is {} at LSN {} on fork {}",
                    database.file().trim_end_matches(".db"),
                    done.state.as_str(),
                    done.last_lsn,
                    done.fork_id
                )
            })
        }
        DbCmd::Offline { at, database, json } => change_state(&at, database, json, true),
        DbCmd::Online { at, database, json } => change_state(&at, database, json, false),
        DbCmd::Logship(cmd) => replication::logship(cmd),
        DbCmd::Mirror(cmd) => replication::mirror(cmd),
        DbCmd::Verify { file, json } => {
            let h = backup::verify(&file).map_err(plain)?;
            out(json, &h, || {
                format!(
                    "ok: {} backup of {} (family {}, fork {}), LSNs {}-{}, {} section(s), set '{}'",
                    match h.kind {
                        backup::BackupKind::Full => "full",
                        backup::BackupKind::Log => "log",
                    },
                    h.database,
                    h.family_id,
                    h.fork_id,
                    h.first_lsn,
                    h.last_lsn,
                    h.sections.len(),
                    h.name
                )
            })
        }
        DbCmd::Backups { share, json } => {
            let found = backup::scan(&share).map_err(plain)?;
            let gaps = backup::chain_gaps(&found);
            let report = serde_json::json!({
                "backups": found,
                "gaps": gaps.iter().map(|(db, family, after, next)| serde_json::json!({
                    "database": db, "family_id": family, "after_lsn": after, "next_first_lsn": next,
                })).collect::<Vec<_>>(),
            });
            out(json, &report, || {
                let mut lines: Vec<String> = found
                    .iter()
                    .map(|f| match (&f.header, &f.error) {
                        (Some(h), _) => format!(
                            "{:<8} {:<4} LSNs {:>8}-{:<8} family {} fork {}  {}",
                            h.database,
                            match h.kind {
                                backup::BackupKind::Full => "full",
                                backup::BackupKind::Log => "log",
                            },
                            h.first_lsn,
                            h.last_lsn,
                            &h.family_id[..8.min(h.family_id.len())],
                            &h.fork_id[..8.min(h.fork_id.len())],
                            f.file
                        ),
                        (None, Some(e)) if f.temporary => format!("TEMPORARY {}: {e}", f.file),
                        (None, Some(e)) => format!("DAMAGED  {}: {e}", f.file),
                        (None, None) => f.file.clone(),
                    })
                    .collect();
                for (db, _, after, next) in &gaps {
                    lines.push(format!(
                        "GAP      {db}: LSNs {}-{} are in no log backup",
                        after + 1,
                        next - 1
                    ));
                }
                lines.join("\n")
            })
        }
        DbCmd::Status { at, json } => {
            let Some(data_dir) = at.data_dir.clone() else {
                let v = at.remote(|store| {
                    Box::pin(
                        async move { store.status().await.map_err(|e| anyhow::anyhow!("{e}")) },
                    )
                })?;
                let dbs = v["databases"].as_array().cloned().unwrap_or_default();
                return out(json, &v, || status_text(&dbs));
            };
            let mut dbs = Vec::new();
            for file in [MGC_FILE, MGCCOMP_FILE] {
                let path = data_dir.join(file);
                if !path.exists() {
                    continue;
                }
                let conn = open_connection(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let id = read_identity(&conn)?.context("a database without identity")?;
                let state = read_state(&conn)?;
                dbs.push(serde_json::json!({
                    "database": id.name, "state": state, "family_id": id.family_id,
                    "fork_id": id.fork_id, "last_lsn": id.last_lsn,
                }));
            }
            if dbs.is_empty() {
                bail!("{} holds no pchat databases", data_dir.display());
            }
            out(json, &serde_json::json!({ "databases": dbs }), || {
                status_text(&dbs)
            })
        }
    }
}

/// `pchat db offline` (`offline`) or `pchat db online`.
fn change_state(at: &At, database: Database, json: bool, offline: bool) -> anyhow::Result<()> {
    let v = match at.data_dir.clone() {
        None => at.call(if offline {
            pchat_wire::message::Request::Offline {
                db: database.wire(),
            }
        } else {
            pchat_wire::message::Request::Online {
                db: database.wire(),
            }
        })?,
        Some(dir) => {
            let _owner = crate::dirlock::lock(&dir, "a change of state")?;
            let file = dir.join(database.file());
            if !file.exists() {
                bail!("{} holds no {} database", dir.display(), database.file());
            }
            if offline {
                backup::take_offline(&file)
            } else {
                backup::bring_online(&file)
            }
            .map_err(plain)?;
            let state = read_state(&open_connection(&file)?)?;
            serde_json::json!({ "database": database.file().trim_end_matches(".db"), "state": state })
        }
    };
    out(json, &v, || {
        format!(
            "{} is {}",
            v["database"].as_str().unwrap_or(""),
            v["state"].as_str().unwrap_or("")
        )
    })
}

fn status_text(dbs: &[serde_json::Value]) -> String {
    dbs.iter()
        .map(|d| {
            let m = &d["mirroring"];
            let mirroring = if m.is_object() {
                format!(
                    "  {} of {} ({}, {}{}{})",
                    m["role"].as_str().unwrap_or(""),
                    m["partner"].as_str().unwrap_or(""),
                    m["mode"].as_str().unwrap_or(""),
                    if m["synchronized"] == true {
                        "synchronized"
                    } else {
                        "not synchronized"
                    },
                    if m["exposed"] == true {
                        ", EXPOSED: the mirror is away"
                    } else {
                        ""
                    },
                    m["deposed"]
                        .as_str()
                        .map(|d| format!(", OUT OF SERVICE: {d}"))
                        .unwrap_or_default(),
                )
            } else {
                String::new()
            };
            format!(
                "{:<8} {:<9} last LSN {:>8}  fork {}{}{}",
                d["database"].as_str().unwrap_or(""),
                d["state"].as_str().unwrap_or(""),
                d["last_lsn"],
                d["fork_id"].as_str().unwrap_or(""),
                if d["serving"] == false && d["state"] == "ONLINE" {
                    "  (not serving)"
                } else {
                    ""
                },
                mirroring
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
