//! Database mirroring (SQL Server's, as Lync used it): a principal streams
//! its log records to a mirror on another database server, which applies
//! them in RESTORING state.
//!
//! - **sync**: a command is acknowledged once the mirror has it too; while the
//!   mirror is away the principal serves alone and says it is *exposed*.
//! - **strict**: sync, but no writes while the mirror is away, so nothing
//!   acknowledged ever exists on the principal alone.
//! - **async**: acknowledgements do not wait for the mirror.
//!
//! A principal that starts up serves only once its partner has confirmed it
//! is still the principal (a mirror forced into service meanwhile answers
//! with its newer fork, and the old principal stays out: it rejoins as the
//! mirror when it holds nothing the new principal lacks, and otherwise waits
//! to be rebuilt from a backup). `mirror remove` on it lets it serve alone.

use crate::hosted::{db_name, internal, Hosted};
use crate::journal::{self, Batch, Journal};
use pchat_domain::Lsn;
use pchat_engine::backup;
use pchat_engine::DbState;
use pchat_store::{Fork, RawRecord, StoreError};
use pchat_wire::message::{Db, MirrorMode, MirrorRole, Request};
use pchat_wire::RemoteStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How long a principal waits for the mirror to answer a batch before it
/// counts the mirror as away.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most records in one batch to the mirror.
const MAX_BATCH: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairConfig {
    pub role: MirrorRole,
    pub partner: String,
    pub mode: MirrorMode,
}

/// What the principal knows of its mirror.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Link {
    connected: bool,
    /// The last LSN the mirror has made durable.
    hardened: Lsn,
}

struct Pair {
    config: PairConfig,
    link: watch::Sender<Link>,
    /// Principal: acknowledgements waiting for the mirror, by LSN; each is
    /// told `true` once the mirror holds its LSN, `false` if the mirror
    /// goes away first. (A watch would wake every waiter on every batch.)
    waiters: BTreeMap<Lsn, Vec<oneshot::Sender<bool>>>,
    /// Principal: its partner confirmed it is the principal since it started.
    confirmed: bool,
    /// Principal after a forced service: serves alone until the pair is
    /// synchronized again, whatever the mode.
    forced: bool,
    /// Principal: refusing new commands during a planned role switch.
    switching: bool,
    /// Why this copy must not serve (a newer fork exists elsewhere).
    deposed: Option<String>,
    /// Mirror: the principal's last LSN as last heard.
    principal_lsn: Lsn,
    /// Mirror: where the session's batches are hardened and applied.
    journal: Option<Arc<Journal>>,
    /// Principal: stops the streaming task.
    stop: Option<watch::Sender<bool>>,
}

pub struct Mirroring {
    hosted: Arc<Hosted>,
    secret: Vec<u8>,
    name: String,
    pairs: Mutex<BTreeMap<String, Pair>>,
}

fn key(db: Db) -> String {
    db_name(db).to_string()
}

fn parse_db(s: &str) -> Option<Db> {
    match s {
        "mgc" => Some(Db::Mgc),
        "mgccomp" => Some(Db::Mgccomp),
        _ => None,
    }
}

fn refused(msg: impl Into<String>) -> StoreError {
    StoreError::Domain(pchat_domain::DomainError::Invalid(msg.into()))
}

/// The status of one database's mirroring, for `pchat db status`.
#[derive(Debug, Clone, Serialize)]
pub struct PairStatus {
    pub role: MirrorRole,
    pub partner: String,
    pub mode: MirrorMode,
    pub connected: bool,
    pub synchronized: bool,
    /// Principal: acknowledging commands the mirror does not have.
    pub exposed: bool,
    pub mirror_lsn: Option<Lsn>,
    pub principal_lsn: Option<Lsn>,
    pub deposed: Option<String>,
    pub confirmed: bool,
}

impl Mirroring {
    /// Loads the pairs from `mirroring.json` and starts streaming from every
    /// principal. A principal is not confirmed until its partner answers.
    pub fn start(hosted: Arc<Hosted>, secret: Vec<u8>, name: String) -> Arc<Mirroring> {
        let m = Arc::new(Mirroring {
            hosted,
            secret,
            name,
            pairs: Mutex::new(BTreeMap::new()),
        });
        let saved: BTreeMap<String, PairConfig> = std::fs::read(m.path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for db in [Db::Mgc, Db::Mgccomp] {
            // A mirror that stopped (crashed) mid-session: what it hardened
            // goes into the database before anything reads it.
            match journal::recover(&m.hosted.file(db)) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(db = db_name(db), records = n, "applied the mirror journal")
                }
                Err(e) => {
                    tracing::error!(db = db_name(db), error = %e, "the mirror journal could not be applied")
                }
            }
        }
        for (db, config) in saved {
            if let Some(db) = parse_db(&db) {
                m.install(db, config, false, false);
            }
        }
        m
    }

    /// Ends the mirroring session of `db` here, if any: everything its
    /// journal hardened is applied to the database (also what a crashed
    /// server left). What changes a mirror's file first does this.
    pub async fn settle(&self, db: Db) -> Result<(), StoreError> {
        self.apply_journal(db, true).await
    }

    /// Applies what the journal of `db` holds, keeping the session: the
    /// database file then holds everything this copy acknowledged.
    pub async fn flush(&self, db: Db) -> Result<(), StoreError> {
        self.apply_journal(db, false).await
    }

    async fn apply_journal(&self, db: Db, end_session: bool) -> Result<(), StoreError> {
        let journal = self
            .with(db, |p| match end_session {
                true => p.journal.take(),
                false => p.journal.clone(),
            })
            .flatten();
        let file = self.hosted.file(db);
        tokio::task::spawn_blocking(move || match journal {
            Some(j) if end_session => j.close().map(|_| ()),
            Some(j) => j.settle().map(|_| ()),
            None => journal::recover(&file).map(|_| ()),
        })
        .await
        .map_err(internal)?
    }

    /// The last LSN the journal of `db`'s mirroring session holds.
    pub fn journal_lsn(&self, db: Db) -> Option<Lsn> {
        self.with(db, |p| p.journal.as_ref().map(|j| j.hardened()))
            .flatten()
    }

    fn path(&self) -> std::path::PathBuf {
        self.hosted.data_dir.join("mirroring.json")
    }

    fn save(&self) -> Result<(), StoreError> {
        let configs: BTreeMap<String, PairConfig> = self
            .pairs
            .lock()
            .map_err(internal)?
            .iter()
            .map(|(k, p)| (k.clone(), p.config.clone()))
            .collect();
        crate::write_atomically(
            &self.path(),
            &serde_json::to_vec_pretty(&configs).map_err(internal)?,
        )
        .map_err(internal)
    }

    fn install(self: &Arc<Self>, db: Db, config: PairConfig, confirmed: bool, forced: bool) {
        let role = config.role;
        let (link, _) = watch::channel(Link::default());
        let mut pair = Pair {
            config,
            link,
            waiters: BTreeMap::new(),
            confirmed,
            forced,
            switching: false,
            deposed: None,
            principal_lsn: 0,
            journal: None,
            stop: None,
        };
        if role == MirrorRole::Principal {
            let (stop, stopped) = watch::channel(false);
            pair.stop = Some(stop);
            tokio::spawn(self.clone().stream(db, pair.link.clone(), stopped));
        }
        if let Ok(mut pairs) = self.pairs.lock() {
            if let Some(old) = pairs.insert(key(db), pair) {
                if let Some(stop) = old.stop {
                    let _ = stop.send(true);
                }
            }
        }
    }

    fn with<T>(&self, db: Db, f: impl FnOnce(&mut Pair) -> T) -> Option<T> {
        self.pairs.lock().ok()?.get_mut(&key(db)).map(f)
    }

    /// `f` of the pair of `db`, if this copy has `role` in it.
    fn as_role<T>(&self, db: Db, role: MirrorRole, f: impl FnOnce(&mut Pair) -> T) -> Option<T> {
        self.with(db, |p| (p.config.role == role).then(|| f(p)))
            .flatten()
    }

    /// Why `db` takes no commands here now, if it does not.
    pub fn refusal(&self, db: Db) -> Option<String> {
        self.with(db, |p| {
            if let Some(d) = &p.deposed {
                return Some(d.clone());
            }
            if p.config.role != MirrorRole::Principal {
                return Some(format!("{} is the mirror here; its principal is {}", db_name(db), p.config.partner));
            }
            if !p.confirmed {
                return Some(format!(
                    "{} waits for its mirror partner {} to confirm it is still the principal (or for `pchat db mirror remove`)",
                    db_name(db), p.config.partner
                ));
            }
            if p.switching {
                return Some(format!("{} is switching roles with {}", db_name(db), p.config.partner));
            }
            let link = *p.link.borrow();
            if p.config.mode == MirrorMode::Strict && !link.connected && !p.forced {
                return Some(format!(
                    "{} is mirrored in strict mode and its mirror {} is away: writes are refused",
                    db_name(db), p.config.partner
                ));
            }
            None
        })
        .flatten()
    }

    /// How far log shipping's backup job may back up `db` here: None when
    /// this copy is not the principal (a mirror, a deposed principal: the
    /// serving copy ships); else Some(limit), where a synchronous principal
    /// ships only what its connected mirror has hardened, so a mirror forced
    /// into service never lacks what the log-shipping secondary holds (the
    /// secondary could not follow its new fork otherwise).
    pub fn backup_limit(&self, db: Db) -> Option<Option<Lsn>> {
        match self.with(db, |p| {
            let link = *p.link.borrow();
            if p.deposed.is_some() || p.config.role != MirrorRole::Principal {
                None
            } else if p.config.mode != MirrorMode::Async && link.connected && !p.forced {
                Some(Some(link.hardened))
            } else {
                Some(None)
            }
        }) {
            None => Some(None), // not mirrored: everything
            Some(limit) => limit,
        }
    }

    /// Waits, after `db` committed through `lsn`, until the acknowledgement
    /// may go out: at once for async or unmirrored databases; for sync, once
    /// the mirror has `lsn` or is away; for strict, once the mirror has it,
    /// else the command is not acknowledged (retried with its client_msg_id).
    pub async fn harden(&self, db: Db, lsn: Lsn) -> Result<(), StoreError> {
        let Some((mode, forced, wait)) = self.with(db, |p| {
            let link = *p.link.borrow();
            let wait = (p.config.mode != MirrorMode::Async
                && link.connected
                && link.hardened < lsn)
                .then(|| {
                    let (tx, rx) = oneshot::channel();
                    p.waiters.entry(lsn).or_default().push(tx);
                    rx
                });
            let held = link.connected || link.hardened >= lsn;
            (p.config.mode, p.forced, (wait, held))
        }) else {
            return Ok(());
        };
        let (wait, held_now) = wait;
        if mode == MirrorMode::Async {
            return Ok(());
        }
        // The pair replaced or removed meanwhile (the sender dropped): not
        // known to be held, so strict mode does not acknowledge it (the
        // client retries with its client_msg_id).
        let held = match wait {
            Some(rx) => rx.await.unwrap_or(false),
            None => held_now,
        };
        if !held && mode == MirrorMode::Strict && !forced {
            return Err(StoreError::Unavailable(format!(
                "the mirror of {} went away before it held LSN {lsn}; retry",
                db_name(db)
            )));
        }
        Ok(())
    }

    /// Changes what the principal knows of its mirror and answers the
    /// acknowledgements that were waiting for it. Only for the session's own
    /// pair: a session the pair was replaced under (a new partner) must not
    /// tell the new pair what its old mirror held.
    fn update_link(&self, db: Db, link: &watch::Sender<Link>, change: impl FnOnce(&mut Link)) {
        self.with(db, |p| {
            if !p.link.same_channel(link) {
                return;
            }
            p.link.send_modify(change);
            let link = *p.link.borrow();
            let held = if link.connected {
                let later = p.waiters.split_off(&(link.hardened + 1));
                std::mem::replace(&mut p.waiters, later)
            } else {
                std::mem::take(&mut p.waiters)
            };
            for tx in held.into_values().flatten() {
                let _ = tx.send(link.connected);
            }
        });
    }

    pub fn status(&self, db: Db) -> Option<PairStatus> {
        let file_last = self.hosted.identity(db).map(|i| i.last_lsn).unwrap_or(0);
        self.with(db, |p| {
            let link = *p.link.borrow();
            // A mirror holds durably what its journal holds too.
            let last = file_last.max(p.journal.as_ref().map_or(0, |j| j.hardened()));
            let principal = p.config.role == MirrorRole::Principal;
            let synchronized = if principal {
                link.connected && link.hardened >= last
            } else {
                p.principal_lsn > 0 && last >= p.principal_lsn
            };
            PairStatus {
                role: p.config.role,
                partner: p.config.partner.clone(),
                mode: p.config.mode,
                connected: if principal {
                    link.connected
                } else {
                    p.journal.is_some()
                },
                synchronized,
                exposed: principal && p.confirmed && p.deposed.is_none() && !link.connected,
                mirror_lsn: principal.then_some(link.hardened),
                principal_lsn: (!principal).then_some(p.principal_lsn),
                deposed: p.deposed.clone(),
                confirmed: p.confirmed,
            }
        })
    }

    /// `mirror set` on this server: this copy of `db` becomes `role`.
    pub async fn set(
        self: &Arc<Self>,
        db: Db,
        role: MirrorRole,
        partner: String,
        mode: MirrorMode,
    ) -> Result<serde_json::Value, StoreError> {
        let state = self.hosted.state(db)?;
        match role {
            MirrorRole::Mirror if state == DbState::Online => {
                return Err(refused(format!(
                    "{} is ONLINE here: a mirror starts from a full backup of the principal restored with --norecovery",
                    db_name(db)
                )))
            }
            MirrorRole::Principal if state != DbState::Online => {
                return Err(refused(format!(
                    "{} is {} here: only an ONLINE database can be the principal",
                    db_name(db),
                    state.as_str()
                )))
            }
            _ => {}
        }
        self.install(
            db,
            PairConfig {
                role,
                partner,
                mode,
            },
            true,
            false,
        );
        self.save()?;
        Ok(serde_json::json!({ "database": db_name(db), "role": role }))
    }

    /// `mirror remove`: both copies keep their data; a principal serves
    /// alone, a mirror stays RESTORING until it is recovered.
    pub async fn remove(&self, db: Db) -> Result<serde_json::Value, StoreError> {
        self.settle(db).await?;
        let old = self
            .pairs
            .lock()
            .map_err(internal)?
            .remove(&key(db))
            .ok_or_else(|| refused(format!("{} is not mirrored here", db_name(db))))?;
        if let Some(stop) = old.stop {
            let _ = stop.send(true);
        }
        self.save()?;
        Ok(serde_json::json!({ "database": db_name(db), "removed": true }))
    }

    /// Principal side of the stream: connects, asks the mirror where it is,
    /// sends everything after, then follows the log. Reconnects on failure.
    async fn stream(
        self: Arc<Self>,
        db: Db,
        link: watch::Sender<Link>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let result = tokio::select! {
                r = self.session(db, &link) => r,
                _ = stop.changed() => return,
            };
            self.update_link(db, &link, |l| l.connected = false);
            if let Err(e) = result {
                tracing::debug!(db = db_name(db), error = %e, "mirroring session ended");
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn session(
        self: &Arc<Self>,
        db: Db,
        link: &watch::Sender<Link>,
    ) -> Result<(), StoreError> {
        let Some(partner) = self.with(db, |p| p.config.partner.clone()) else {
            return Ok(());
        };
        let remote = RemoteStore::tool(partner.clone(), self.secret.clone(), self.name.clone());
        let id = self.hosted.identity(db)?;
        let forks = backup::fork_history(&self.hosted.file(db)).map_err(internal)?;
        let answer = remote
            .call(Request::MirrorStart {
                db,
                family_id: id.family_id.clone(),
                fork_id: id.fork_id.clone(),
                forks: forks.clone(),
            })
            .await;
        let mirror: StartAnswer = match answer {
            Ok(v) => serde_json::from_value(v).map_err(internal)?,
            Err(StoreError::Domain(e)) => {
                // The partner refuses to be our mirror: it may be a principal
                // on a newer fork (it was forced into service).
                return self.deposed_by(db, &partner, &e.to_string()).await;
            }
            Err(e) => return Err(e),
        };
        if mirror.last_lsn > id.last_lsn {
            let why = format!(
                "the mirror {partner} holds LSNs up to {}, beyond this principal's {}",
                mirror.last_lsn, id.last_lsn
            );
            self.with(db, |p| p.deposed = Some(why.clone()));
            return Err(refused(why));
        }
        self.with(db, |p| {
            p.confirmed = true;
            p.deposed = None;
        });
        self.update_link(db, link, |l| {
            l.connected = true;
            l.hardened = mirror.last_lsn;
        });
        tracing::info!(db = db_name(db), %partner, from = mirror.last_lsn, "mirroring");
        let mut records = self.subscribe(db, mirror.last_lsn)?;
        // Records to harden, and what the principal holds (as far as the
        // mirror can be told: a forced service reports what it lacks of it).
        let apply = |records: Vec<RawRecord>, principal_lsn: Lsn| {
            let call = remote.call(Request::MirrorApply {
                db,
                family_id: id.family_id.clone(),
                fork_id: id.fork_id.clone(),
                forks: forks.clone(),
                records,
                principal_lsn,
            });
            async move {
                tokio::time::timeout(APPLY_TIMEOUT, call)
                    .await
                    .map_err(|_| {
                        StoreError::Unavailable("the mirror did not answer in time".into())
                    })?
            }
        };
        // Tell the mirror at once what the principal holds: a mirror that
        // already has all of it reports itself synchronized before the next
        // write, instead of "no news" until then.
        apply(Vec::new(), self.last_committed(db)).await?;
        loop {
            let Some(first) = records.recv().await else {
                return Err(StoreError::Unavailable("the log stream ended".into()));
            };
            let mut batch = vec![first?];
            while batch.len() < MAX_BATCH {
                match records.try_recv() {
                    Ok(r) => batch.push(r?),
                    Err(_) => break,
                }
            }
            if db == Db::Mgc {
                self.send_files(&remote, &batch).await?;
            }
            let batch_end = batch.last().map(|r| r.lsn).unwrap_or(0);
            let sent = apply(batch, self.last_committed(db).max(batch_end)).await?;
            let hardened: Lsn =
                serde_json::from_value(sent["last_lsn"].clone()).map_err(internal)?;
            self.update_link(db, link, |l| l.hardened = hardened);
            // The pair works again (after a forced service): the mode holds.
            self.with(db, |p| p.forced = false);
        }
    }

    /// The uploaded files a batch of `mgc` records posts, sent ahead of the
    /// records, so the mirror never holds a message without its file.
    async fn send_files(
        &self,
        remote: &Arc<RemoteStore>,
        batch: &[RawRecord],
    ) -> Result<(), StoreError> {
        use pchat_store::blobs::Blobs;
        let blobs = self.hosted.blobs();
        for sha in batch.iter().flat_map(|r| backup::posted_files(&r.event)) {
            match blobs.get(sha.clone()).await? {
                Some(bytes) => {
                    tokio::time::timeout(
                        APPLY_TIMEOUT,
                        pchat_wire::Remote(remote.clone()).put(bytes),
                    )
                    .await
                    .map_err(|_| {
                        StoreError::Unavailable("the mirror did not take a file in time".into())
                    })??;
                }
                None => {
                    tracing::warn!(%sha, "a posted file is missing here: the mirror goes without it")
                }
            }
        }
        Ok(())
    }

    fn last_committed(&self, db: Db) -> Lsn {
        match db {
            Db::Mgc => self.hosted.mgc().engine().last_committed(),
            Db::Mgccomp => self.hosted.comp().last_committed(),
        }
    }

    /// Committed records of `db` after `after`, as the log stores them.
    fn subscribe(
        &self,
        db: Db,
        after: Lsn,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<RawRecord, StoreError>>, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(8192);
        match db {
            Db::Mgc => {
                let mut src = self.hosted.mgc().engine().subscribe(after);
                tokio::spawn(async move {
                    while let Some(r) = src.recv().await {
                        let raw = r.and_then(|r| RawRecord::of(&r).map_err(internal));
                        if tx.send(raw).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Db::Mgccomp => {
                let mut src = self.hosted.comp().subscribe(after);
                tokio::spawn(async move {
                    while let Some(r) = src.recv().await {
                        let raw = r.and_then(|r| RawRecord::of(&r).map_err(internal));
                        if tx.send(raw).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        Ok(rx)
    }

    /// The partner refused to mirror us. If it is a principal on a newer
    /// fork, this copy must not serve: it rejoins as the mirror when it holds
    /// nothing past the fork point, else it waits to be rebuilt.
    async fn deposed_by(&self, db: Db, partner: &str, why: &str) -> Result<(), StoreError> {
        let remote = RemoteStore::tool(partner.to_string(), self.secret.clone(), self.name.clone());
        let status = remote.status().await?;
        let theirs = status["databases"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["database"] == db_name(db)).cloned())
            .unwrap_or_default();
        let their_forks: Vec<Fork> =
            serde_json::from_value(theirs["forks"].clone()).unwrap_or_default();
        let ours = self.hosted.identity(db)?;
        let online = theirs["state"] == "ONLINE" && theirs["family_id"] == ours.family_id.as_str();
        let newer = their_forks
            .iter()
            .position(|f| f.fork_id == ours.fork_id)
            .and_then(|i| their_forks.get(i + 1).cloned());
        let Some(next) = newer.filter(|_| online) else {
            return Err(refused(format!("{partner} refused to mirror: {why}")));
        };
        if ours.last_lsn < next.start_lsn {
            // Nothing here the new principal lacks: become its mirror.
            self.hosted
                .offline(db, backup::set_restoring)
                .await?
                .map_err(internal)?;
            let mode = self.with(db, |p| p.config.mode).unwrap_or(MirrorMode::Sync);
            if let Some(stop) = self.with(db, |p| p.stop.take()).flatten() {
                let _ = stop.send(true);
            }
            self.with(db, |p| {
                p.config = PairConfig {
                    role: MirrorRole::Mirror,
                    partner: partner.to_string(),
                    mode,
                };
                p.deposed = None;
            });
            self.save()?;
            tracing::warn!(db = db_name(db), %partner, "a newer fork serves on the partner: rejoined as its mirror");
            Ok(())
        } else {
            let why = format!(
                "{partner} serves {} on fork {} (from LSN {}); this copy has LSNs {}-{} of its old fork that it lacks: rebuild it from a backup",
                db_name(db),
                next.fork_id,
                next.start_lsn,
                next.start_lsn,
                ours.last_lsn
            );
            self.with(db, |p| p.deposed = Some(why.clone()));
            Err(refused(why))
        }
    }

    /// Mirror side: the principal starts streaming.
    pub async fn start_stream(
        &self,
        db: Db,
        family_id: &str,
        fork_id: &str,
        forks: &[Fork],
    ) -> Result<serde_json::Value, StoreError> {
        let role = self.with(db, |p| p.config.role);
        if role != Some(MirrorRole::Mirror) {
            let (id, state) = self.hosted.read(db)?;
            return Err(refused(format!(
                "{} here is not a mirror ({}, fork {}, last LSN {})",
                db_name(db),
                state.as_str(),
                id.fork_id,
                id.last_lsn
            )));
        }
        // An earlier session (a principal that reconnects) ends first.
        self.settle(db).await?;
        let (id, state) = self.hosted.read(db)?;
        if state == DbState::Online {
            return Err(refused(format!("{} is ONLINE here", db_name(db))));
        }
        if id.family_id != family_id {
            return Err(refused(format!(
                "{} here is of another family ({})",
                db_name(db),
                id.family_id
            )));
        }
        if id.fork_id != fork_id && !forks.iter().any(|f| f.fork_id == id.fork_id) {
            return Err(refused(format!(
                "{} here is on fork {}, not in the principal's history",
                db_name(db),
                id.fork_id
            )));
        }
        let file = self.hosted.file(db);
        let journal = tokio::task::spawn_blocking(move || Journal::open(&file))
            .await
            .map_err(internal)??;
        self.with(db, |p| p.journal = Some(journal));
        serde_json::to_value(StartAnswer {
            last_lsn: id.last_lsn,
            fork_id: id.fork_id,
        })
        .map_err(internal)
    }

    /// Mirror side: harden a batch.
    pub async fn apply(
        &self,
        db: Db,
        family_id: String,
        fork_id: String,
        forks: Vec<Fork>,
        records: Vec<RawRecord>,
        principal_lsn: Lsn,
    ) -> Result<serde_json::Value, StoreError> {
        let journal = self
            .with(db, |p| {
                p.principal_lsn = p.principal_lsn.max(principal_lsn);
                p.journal.clone()
            })
            .flatten()
            .ok_or_else(|| StoreError::Unavailable("no mirroring session: start again".into()))?;
        let batch = Batch {
            family_id,
            fork_id,
            forks,
            records,
        };
        let last_lsn = tokio::task::spawn_blocking(move || journal.harden(batch))
            .await
            .map_err(internal)??;
        Ok(serde_json::json!({ "last_lsn": last_lsn }))
    }

    /// `mirror force-service` on the mirror: ONLINE on a new fork.
    pub async fn force(self: &Arc<Self>, db: Db) -> Result<serde_json::Value, StoreError> {
        let Some((partner, mode, heard)) = self.as_role(db, MirrorRole::Mirror, |p| {
            (p.config.partner.clone(), p.config.mode, p.principal_lsn)
        }) else {
            return Err(refused(format!("{} is not a mirror here", db_name(db))));
        };
        self.settle(db).await?;
        let done = self
            .hosted
            .offline(db, backup::recover)
            .await?
            .map_err(|e| refused(e.to_string()))?;
        let lost = (heard > done.last_lsn).then(|| (done.last_lsn + 1, heard));
        self.install(
            db,
            PairConfig {
                role: MirrorRole::Principal,
                partner,
                mode,
            },
            true,
            true,
        );
        self.save()?;
        Ok(serde_json::json!({
            "database": db_name(db),
            "last_lsn": done.last_lsn,
            "fork_id": done.fork_id,
            "principal_lsn_heard": heard,
            "mode": mode,
            // Committed on the old principal, never received here. In sync
            // and strict mode none was acknowledged, unless the principal
            // served exposed (its mirror away) before it was lost.
            "missing_lsns": lost.map(|(a, b)| serde_json::json!({ "first": a, "last": b })),
        }))
    }

    /// `mirror failover` on the principal: a planned switch with no loss.
    /// New commands are refused, the mirror catches up, this copy goes
    /// RESTORING, then the mirror comes ONLINE on the same fork.
    pub async fn failover(self: &Arc<Self>, db: Db) -> Result<serde_json::Value, StoreError> {
        let Some((partner, mode, mut rx)) = self.as_role(db, MirrorRole::Principal, |p| {
            (p.config.partner.clone(), p.config.mode, p.link.subscribe())
        }) else {
            return Err(refused(format!("{} is not a principal here", db_name(db))));
        };
        if !rx.borrow().connected {
            return Err(refused(format!(
                "the mirror {partner} is not connected: a planned failover needs a synchronized mirror (force service on the mirror instead)"
            )));
        }
        self.with(db, |p| p.switching = true);
        let result = async {
            // Closing the database commits what is queued; RESTORING, it
            // takes nothing more. The stream follows it to its last record.
            self.hosted
                .offline(db, backup::set_restoring)
                .await?
                .map_err(internal)?;
            let last = self.hosted.identity(db)?.last_lsn;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let link = *rx.borrow_and_update();
                if link.hardened >= last {
                    break;
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        return Err(refused(format!(
                            "the mirror {partner} did not reach LSN {last} within 10 s"
                        )))
                    }
                }
            }
            if let Some(stop) = self.with(db, |p| p.stop.take()).flatten() {
                let _ = stop.send(true);
            }
            let remote = RemoteStore::tool(partner.clone(), self.secret.clone(), self.name.clone());
            remote
                .call(Request::MirrorTakeOver { db, last_lsn: last })
                .await
        }
        .await;
        match result {
            Ok(v) => {
                self.install(
                    db,
                    PairConfig {
                        role: MirrorRole::Mirror,
                        partner,
                        mode,
                    },
                    true,
                    false,
                );
                self.save()?;
                Ok(v)
            }
            Err(e) => {
                // Back to serving as it was.
                if self.hosted.state(db)? != DbState::Online {
                    self.hosted
                        .offline(db, backup::set_online)
                        .await?
                        .map_err(internal)?;
                }
                self.install(
                    db,
                    PairConfig {
                        role: MirrorRole::Principal,
                        partner,
                        mode,
                    },
                    true,
                    false,
                );
                Err(e)
            }
        }
    }

    /// Mirror side of a planned failover: it holds everything the principal
    /// had (`last_lsn`), so it comes ONLINE on the same fork.
    pub async fn take_over(
        self: &Arc<Self>,
        db: Db,
        last_lsn: Lsn,
    ) -> Result<serde_json::Value, StoreError> {
        let Some((partner, mode)) = self.as_role(db, MirrorRole::Mirror, |p| {
            (p.config.partner.clone(), p.config.mode)
        }) else {
            return Err(refused(format!("{} is not a mirror here", db_name(db))));
        };
        self.settle(db).await?;
        let ours = self.hosted.identity(db)?.last_lsn;
        if ours != last_lsn {
            return Err(refused(format!(
                "the mirror holds LSNs up to {ours}, the principal {last_lsn}: not synchronized"
            )));
        }
        self.hosted
            .offline(db, backup::set_online)
            .await?
            .map_err(internal)?;
        self.install(
            db,
            PairConfig {
                role: MirrorRole::Principal,
                partner,
                mode,
            },
            true,
            false,
        );
        self.save()?;
        let id = self.hosted.identity(db)?;
        Ok(serde_json::json!({
            "database": db_name(db),
            "principal": self.name,
            "last_lsn": id.last_lsn,
            "fork_id": id.fork_id,
        }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StartAnswer {
    last_lsn: Lsn,
    fork_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A principal pair whose mirror at `partner` never answers (its
    /// session waits in the handshake, leaving the link to the test).
    fn principal(partner: &str) -> PairConfig {
        PairConfig {
            role: MirrorRole::Principal,
            partner: partner.into(),
            mode: MirrorMode::Strict,
        }
    }

    /// A session the pair was replaced under (the pair now has another
    /// mirror) cannot tell the new pair what its old mirror held: the new
    /// pair's link and the acknowledgements waiting on it stay as they were.
    #[tokio::test]
    async fn a_replaced_pairs_session_does_not_speak_for_the_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let partner = silent.local_addr().unwrap().to_string();
        let hosted = Hosted::open(dir.path()).unwrap();
        let m = Mirroring::start(hosted, b"secret".to_vec(), "test".into());
        m.install(Db::Mgc, principal(&partner), true, false);
        let old = m.with(Db::Mgc, |p| p.link.clone()).unwrap();
        m.install(Db::Mgc, principal(&partner), true, false);
        let new = m.with(Db::Mgc, |p| p.link.clone()).unwrap();
        m.update_link(Db::Mgc, &new, |l| {
            l.connected = true;
            l.hardened = 5;
        });
        let waiting = tokio::spawn({
            let m = m.clone();
            async move { m.harden(Db::Mgc, 10).await }
        });
        while m.with(Db::Mgc, |p| p.waiters.len()) != Some(1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        // The old session says its mirror went away, then that it held 10.
        m.update_link(Db::Mgc, &old, |l| l.connected = false);
        m.update_link(Db::Mgc, &old, |l| {
            l.connected = true;
            l.hardened = 10;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let link = *new.borrow();
        assert_eq!((link.connected, link.hardened), (true, 5));
        assert!(!waiting.is_finished(), "answered by the old session");
        assert_eq!(m.with(Db::Mgc, |p| p.waiters.len()), Some(1));

        // The new pair's own session answers it.
        m.update_link(Db::Mgc, &new, |l| l.hardened = 10);
        assert!(waiting.await.unwrap().is_ok());
    }
}
