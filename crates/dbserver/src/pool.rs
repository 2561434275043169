//! This database server's copy of the pool configuration (`pool.json`), and
//! the fencing it enables: a chat server writes here only while it is
//! active in the newest configuration this server knows.
//!
//! Given the topology, the server also knows its own role: it takes writes
//! only in the pool state that uses its role (Normal: primary and primary
//! mirror; FailedOver: backup and backup mirror), only once it has compared
//! its copy with every peer since it started (each answered, refused or
//! timed out: a returning server learns that the pool moved on before it
//! takes a write), and it exchanges copies with its peers every half second
//! so every copy converges on the newest.

use crate::write_atomically;
use pchat_dr::topology::Role;
use pchat_dr::{PoolConfig, PoolState, Topology};
use pchat_store::StoreError;
use pchat_wire::message::Request;
use pchat_wire::RemoteStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const POOL_FILE: &str = "pool.json";

/// How often copies are compared with the peers'.
const GOSSIP_EVERY: Duration = Duration::from_millis(500);
/// A peer that has not answered within this counts as away.
const GOSSIP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where this server sits in the topology.
struct Place {
    role: Role,
    /// The other database servers: name and address.
    peers: Vec<(String, String)>,
}

pub(crate) struct Pool {
    file: PathBuf,
    held: Mutex<Option<PoolConfig>>,
    place: Option<Place>,
    /// Compared with every peer's copy since this server started.
    confirmed: AtomicBool,
    /// What each peer last said of its databases (last LSN, fork, state),
    /// and when: after losing a data center, the last LSNs known of its
    /// databases (how much the failover cannot recover).
    peers: Mutex<std::collections::BTreeMap<String, serde_json::Value>>,
}

fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Domain(pchat_domain::DomainError::Invalid(e.to_string()))
}

impl Pool {
    pub(crate) fn open(
        data_dir: &std::path::Path,
        topology: Option<(&Topology, &str)>,
    ) -> anyhow::Result<Arc<Pool>> {
        let file = data_dir.join(POOL_FILE);
        let mut held = match std::fs::read(&file) {
            Ok(bytes) => Some(serde_json::from_slice::<PoolConfig>(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is not a pool configuration: {e}", file.display())
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", file.display())),
        };
        let place = match topology {
            None => None,
            Some((t, name)) => {
                let me = t
                    .database_servers
                    .iter()
                    .find(|d| d.name == name)
                    .ok_or_else(|| {
                        anyhow::anyhow!("{name} is not a database server of the topology")
                    })?;
                // Before any change, the published topology is version 1
                // (the same on every server, so copies compare equal).
                held.get_or_insert_with(|| PoolConfig::initial(t, 0));
                Some(Place {
                    role: me.role,
                    peers: t
                        .database_servers
                        .iter()
                        .filter(|d| d.name != name)
                        .map(|d| (d.name.clone(), d.address.clone()))
                        .collect(),
                })
            }
        };
        let confirmed = place.as_ref().is_none_or(|p| p.peers.is_empty());
        Ok(Arc::new(Pool {
            file,
            held: Mutex::new(held),
            place,
            confirmed: AtomicBool::new(confirmed),
            peers: Mutex::default(),
        }))
    }

    pub(crate) fn held(&self) -> Option<PoolConfig> {
        self.held.lock().ok().and_then(|h| h.clone())
    }

    pub(crate) fn get(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.held(),
            "confirmed": self.confirmed.load(Ordering::SeqCst),
            "peers": self.peers.lock().map(|p| p.clone()).unwrap_or_default(),
        })
    }

    /// Keeps `config` when it is newer than the copy held (fsynced first).
    pub(crate) fn put(&self, config: PoolConfig) -> Result<serde_json::Value, StoreError> {
        {
            let mut held = self
                .held
                .lock()
                .map_err(|_| StoreError::Internal("pool lock poisoned".into()))?;
            match held.as_ref() {
                Some(h) if h.pool != config.pool => {
                    return Err(invalid(format!(
                        "this database server belongs to pool {}, not {}",
                        h.pool, config.pool
                    )))
                }
                Some(h) if h.version == config.version && *h != config => {
                    return Err(invalid(format!(
                        "conflict: pool configuration version {} here is another change ({}); read the newest and try again",
                        h.version, h.change
                    )))
                }
                Some(h) if h.version >= config.version => {}
                _ => {
                    let bytes = serde_json::to_vec_pretty(&config)
                        .map_err(|e| StoreError::Internal(e.to_string()))?;
                    write_atomically(&self.file, &bytes)
                        .map_err(|e| StoreError::Internal(format!("cannot keep pool.json: {e}")))?;
                    tracing::info!(version = config.version, change = %config.change, "pool configuration");
                    *held = Some(config);
                }
            }
        }
        Ok(self.get())
    }

    /// Why `client` may not write here now (None: it may). On every
    /// submit: looks at the copy under the lock, copies nothing.
    pub(crate) fn refusal(&self, client: &str) -> Option<String> {
        let held = self.held.lock().ok()?;
        let held = held.as_ref()?;
        if let Err(why) = held.may_serve(client) {
            return Some(format!("fenced: {why}"));
        }
        self.refusal_of_role(held)
    }

    /// Why this server's databases serve no chat server now: its role is
    /// not the pool state's, or it has not compared its copy with a peer's.
    pub(crate) fn role_refusal(&self) -> Option<String> {
        let held = self.held.lock().ok()?;
        self.refusal_of_role(held.as_ref()?)
    }

    fn refusal_of_role(&self, held: &PoolConfig) -> Option<String> {
        let place = self.place.as_ref()?;
        let serves = match held.state {
            PoolState::Normal => matches!(place.role, Role::Primary | Role::PrimaryMirror),
            PoolState::FailedOver => matches!(place.role, Role::Backup | Role::BackupMirror),
        };
        if !serves {
            return Some(format!(
                "fenced: this is the {} database server, and in pool state {} (configuration version {}) the pool's databases are elsewhere",
                place.role.as_str(),
                held.state.as_str(),
                held.version
            ));
        }
        if !self.confirmed.load(Ordering::SeqCst) {
            return Some(
                "fenced: this database server has not yet compared its pool configuration with a peer since it started"
                    .into(),
            );
        }
        None
    }

    /// Exchanges copies with every peer, forever: a newer copy is kept, an
    /// older one is sent the newer. Writes wait for the first round over
    /// every peer (each answered, refused or timed out), so a server that
    /// returns with a stale copy learns of a newer one first.
    pub(crate) fn gossip(self: Arc<Self>, secret: Vec<u8>, name: String) {
        let Some(place) = &self.place else { return };
        let peers: Vec<_> = place
            .peers
            .iter()
            .map(|(peer, addr)| {
                let store = RemoteStore::tool(addr.clone(), secret.clone(), name.clone());
                (peer.clone(), store)
            })
            .collect();
        tokio::spawn(async move {
            let first = peers
                .iter()
                .map(|(peer, store)| self.compare_logged(peer, store));
            futures_util::future::join_all(first).await;
            self.confirmed.store(true, Ordering::SeqCst);
            loop {
                tokio::time::sleep(GOSSIP_EVERY).await;
                let round = peers
                    .iter()
                    .map(|(peer, store)| self.compare_logged(peer, store));
                futures_util::future::join_all(round).await;
            }
        });
    }

    async fn compare_logged(&self, peer: &str, store: &Arc<RemoteStore>) {
        let done = tokio::time::timeout(GOSSIP_TIMEOUT, self.compare(peer, store)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "pool configuration not compared"),
            Err(_) => tracing::debug!(%peer, "pool configuration comparison timed out"),
        }
    }

    async fn compare(&self, name: &str, peer: &Arc<RemoteStore>) -> Result<(), StoreError> {
        let answer = peer.call(Request::PoolGet).await?;
        if let Ok(mut peers) = self.peers.lock() {
            let heard = serde_json::json!({
                "at_ms": pchat_engine::now_ms(),
                "databases": answer["databases"].clone(),
            });
            peers.insert(name.to_string(), heard);
        }
        let theirs: Option<PoolConfig> = serde_json::from_value(answer["config"].clone())
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        match (theirs, self.held()) {
            (Some(t), m) if m.as_ref().is_none_or(|m| t.version > m.version) => {
                self.put(t)?;
            }
            (t, Some(m)) if t.as_ref().is_none_or(|t| t.version < m.version) => {
                peer.call(Request::PoolPut { config: m }).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
