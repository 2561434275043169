//! Reading and changing the pool configuration on the topology's database
//! servers (`pchat admin active-servers`, `pchat admin pool-state`, and the
//! runbooks' steps that change them).
//!
//! A read asks every database server and takes the newest copy. A change is
//! made to that newest copy and written to every database server that
//! answers (the others learn it from their peers): it holds as long as one
//! copy survives, in either data center.

use anyhow::{bail, Context};
use pchat_dr::{Change, PoolConfig, Topology};
use pchat_wire::message::Request;
use pchat_wire::RemoteStore;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a database server has to answer before it counts as away.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the pool configuration lives: the topology and the cluster secret.
#[derive(clap::Args, Debug, Clone)]
pub struct PoolTarget {
    /// The pool's topology.toml.
    #[arg(long, env = "PCHAT_TOPOLOGY")]
    pub topology: PathBuf,
    /// A file holding the cluster secret (else PCHAT_CLUSTER_SECRET).
    #[arg(long, env = "PCHAT_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one database server holds.
#[derive(Debug, Serialize)]
pub struct Copy {
    pub server: String,
    pub data_center: String,
    /// None when it did not answer (see `error`).
    pub version: Option<u64>,
    pub error: Option<String>,
}

pub struct Pool {
    pub topology: Topology,
    secret: Vec<u8>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Pool {
    pub fn open(target: &PoolTarget) -> anyhow::Result<Pool> {
        Ok(Pool {
            topology: crate::topology::load(&target.topology)?,
            secret: crate::config::cluster_secret(target.cluster_secret_file.as_deref())?,
        })
    }

    fn store(&self, address: &str) -> Arc<RemoteStore> {
        RemoteStore::tool(address.into(), self.secret.clone(), "pchat-admin".into())
    }

    async fn ask(&self, address: &str, req: Request) -> anyhow::Result<Option<PoolConfig>> {
        let store = self.store(address);
        let answer = tokio::time::timeout(ASK_TIMEOUT, store.call(req))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {ASK_TIMEOUT:?}"))??;
        serde_json::from_value(answer["config"].clone()).context("unexpected answer")
    }

    /// What each database server answered (in topology order), and the
    /// configurations among the answers.
    fn copies(
        &self,
        answers: Vec<anyhow::Result<Option<PoolConfig>>>,
    ) -> (Vec<Copy>, Vec<PoolConfig>) {
        let mut copies = Vec::new();
        let mut held = Vec::new();
        for (d, a) in self.topology.database_servers.iter().zip(answers) {
            let (version, error) = match a {
                Ok(c) => {
                    let v = c.as_ref().map(|c| c.version);
                    held.extend(c);
                    (v, None)
                }
                Err(e) => (None, Some(e.to_string())),
            };
            copies.push(Copy {
                server: d.name.clone(),
                data_center: d.data_center.clone(),
                version,
                error,
            });
        }
        (copies, held)
    }

    /// The newest copy any database server holds, with what each holds.
    pub async fn read(&self) -> anyhow::Result<(PoolConfig, Vec<Copy>)> {
        let asks = self
            .topology
            .database_servers
            .iter()
            .map(|d| self.ask(&d.address, Request::PoolGet));
        let answers = futures_util::future::join_all(asks).await;
        let (copies, held) = self.copies(answers);
        if copies.iter().all(|c| c.error.is_some()) {
            let why: Vec<String> = copies
                .iter()
                .map(|c| format!("{}: {}", c.server, c.error.as_deref().unwrap_or("")))
                .collect();
            bail!(
                "no database server of the topology answered, so the pool configuration is unknown ({})",
                why.join("; ")
            );
        }
        let newest = PoolConfig::newest(&held)
            .cloned()
            .unwrap_or_else(|| PoolConfig::initial(&self.topology, 0));
        Ok((newest, copies))
    }

    /// Applies `change` to the newest copy and writes the result to every
    /// database server that answers. Refused (with its code) when the
    /// change is not allowed; nothing is written then.
    pub async fn change(&self, change: &Change) -> anyhow::Result<(PoolConfig, Vec<Copy>)> {
        let (newest, _) = self.read().await?;
        let next = newest
            .apply(&self.topology, change, now_ms())
            .map_err(|m| anyhow::anyhow!("{}: {}", m.code, m.message))?;
        self.write(next).await
    }

    /// Writes `config` to every database server that answers; at least one
    /// must keep it.
    pub async fn write(&self, config: PoolConfig) -> anyhow::Result<(PoolConfig, Vec<Copy>)> {
        let puts = self.topology.database_servers.iter().map(|d| {
            self.ask(
                &d.address,
                Request::PoolPut {
                    config: config.clone(),
                },
            )
        });
        let answers = futures_util::future::join_all(puts).await;
        let (copies, _) = self.copies(answers);
        // A conflict means another change took this version first.
        if let Some(c) = copies
            .iter()
            .find(|c| c.error.as_deref().is_some_and(|e| e.contains("conflict")))
        {
            bail!("{}: {}", c.server, c.error.as_deref().unwrap_or("conflict"));
        }
        if !copies.iter().any(|c| c.version == Some(config.version)) {
            bail!(
                "no database server kept pool configuration version {}",
                config.version
            );
        }
        Ok((config, copies))
    }
}

/// Prints a configuration and where it is kept.
pub fn print(config: &PoolConfig, copies: &[Copy], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "config": config, "copies": copies })
        );
        return;
    }
    println!(
        "pool {}: state {} (databases serve from {}), configuration version {} ({})",
        config.pool,
        config.state.as_str(),
        config.serving_data_center,
        config.version,
        config.change
    );
    if config.active.is_empty() {
        println!("active servers: none");
    }
    for a in &config.active {
        let note = if config.misplaced().iter().any(|m| m.name == a.name) {
            "  (does not serve: not in the serving data center)"
        } else {
            ""
        };
        println!("active server {} in {}{note}", a.name, a.data_center);
    }
    for c in copies {
        match (&c.version, &c.error) {
            (_, Some(e)) => println!("  {} ({}): not reached: {e}", c.server, c.data_center),
            (Some(v), None) => println!("  {} ({}): version {v}", c.server, c.data_center),
            (None, None) => println!("  {} ({}): no copy yet", c.server, c.data_center),
        }
    }
}

/// `pchat admin active-servers` (Set-CsPersistentChatActiveServer).
#[derive(clap::Subcommand, Debug)]
pub enum ActiveServersCmd {
    /// Print the active servers (and the pool state).
    Show {
        #[command(flatten)]
        target: PoolTarget,
    },
    /// Make these servers active too (@{Add=...}).
    Add {
        #[arg(required = true)]
        servers: Vec<String>,
        #[command(flatten)]
        target: PoolTarget,
    },
    /// Make these servers inactive (@{Remove=...}).
    Remove {
        #[arg(required = true)]
        servers: Vec<String>,
        #[command(flatten)]
        target: PoolTarget,
    },
    /// The active servers become exactly these.
    Replace {
        #[arg(required = true)]
        servers: Vec<String>,
        #[command(flatten)]
        target: PoolTarget,
    },
    /// No server is active ($Null): the pool stops serving and writing.
    Clear {
        #[command(flatten)]
        target: PoolTarget,
    },
    /// OUT leaves and IN joins, in one change.
    Swap {
        out: String,
        #[arg(value_name = "IN")]
        into: String,
        #[command(flatten)]
        target: PoolTarget,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum StateArg {
    Normal,
    FailedOver,
}

pub async fn run_active_servers(cmd: ActiveServersCmd) -> anyhow::Result<()> {
    let (change, target) = match cmd {
        ActiveServersCmd::Show { target } => return run_pool_state(None, target).await,
        ActiveServersCmd::Add { servers, target } => (Change::Add(servers), target),
        ActiveServersCmd::Remove { servers, target } => (Change::Remove(servers), target),
        ActiveServersCmd::Replace { servers, target } => (Change::Replace(servers), target),
        ActiveServersCmd::Clear { target } => (Change::Clear, target),
        ActiveServersCmd::Swap { out, into, target } => (Change::Swap { out, into }, target),
    };
    let pool = Pool::open(&target)?;
    let (config, copies) = pool.change(&change).await?;
    print(&config, &copies, target.json);
    Ok(())
}

/// `pchat admin pool-state [normal|failed-over]` (Get-/Set-CsPersistentChatState).
pub async fn run_pool_state(state: Option<StateArg>, target: PoolTarget) -> anyhow::Result<()> {
    let pool = Pool::open(&target)?;
    let (config, copies) = match state {
        None => pool.read().await?,
        Some(s) => {
            let s = match s {
                StateArg::Normal => pchat_dr::PoolState::Normal,
                StateArg::FailedOver => pchat_dr::PoolState::FailedOver,
            };
            pool.change(&Change::State(s)).await?
        }
    };
    print(&config, &copies, target.json);
    Ok(())
}
