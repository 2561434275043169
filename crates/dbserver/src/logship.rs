//! Log shipping (SQL Server's, which Lync used to keep a backup data
//! center): on the primary a **backup job** writes log backups to a share;
//! on a secondary a **copy job** copies new ones to a local folder and a
//! **restore job** applies them in order, WITH NORECOVERY or STANDBY,
//! optionally after a delay. Jobs run on a schedule (down to a second) or
//! continuously (as soon as the log grows, or a file appears). The
//! configuration is kept in the data directory (`logship.json`) and the jobs
//! start again with the server. The monitor keeps each job's last run.

use crate::hosted::{db_name, internal, Hosted};
use crate::mirror::Mirroring;
use pchat_domain::Lsn;
use pchat_engine::backup::{self, BackupError, BackupHeader, BackupKind, Recovery, RestoreOptions};
use pchat_engine::DbState;
use pchat_store::StoreError;
use pchat_wire::message::{Db, LogshipPrimary, LogshipSecondary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a continuous backup job gathers log growth into one file.
const GATHER: Duration = Duration::from_millis(40);
/// How often continuous copy and restore jobs look for new files.
const POLL: Duration = Duration::from_millis(50);
/// How often old files are cleaned up.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    Primary(LogshipPrimary),
    Secondary(LogshipSecondary),
}

/// One job's last run, for the monitor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobRun {
    pub runs: u64,
    pub last_run_ms: Option<i64>,
    /// The last run that did something (wrote, copied or restored a file).
    pub last_done_ms: Option<i64>,
    pub last_file: Option<String>,
    pub last_lsn: Option<Lsn>,
    pub last_error: Option<String>,
}

impl JobRun {
    fn ran(&mut self, result: Result<Option<(String, Lsn)>, String>) {
        let now = pchat_engine::now_ms();
        self.runs += 1;
        self.last_run_ms = Some(now);
        match result {
            Ok(Some((file, lsn))) => {
                self.last_done_ms = Some(now);
                self.last_file = Some(file);
                self.last_lsn = Some(lsn);
                self.last_error = None;
            }
            Ok(None) => self.last_error = None,
            Err(e) => self.last_error = Some(e),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Monitor {
    pub backup: JobRun,
    pub copy: JobRun,
    pub restore: JobRun,
    /// Secondary: the newest LSN copied here, and how far the restore is behind it.
    pub newest_copied_lsn: Option<Lsn>,
    pub lag_lsns: Option<Lsn>,
    /// Secondary: how long the oldest file not yet restored has waited.
    pub lag_ms: Option<i64>,
}

struct Job {
    role: Role,
    monitor: Arc<Mutex<Monitor>>,
    stop: watch::Sender<bool>,
}

pub struct Logship {
    hosted: Arc<Hosted>,
    /// Which copy ships, and how far (a synchronous principal: what its
    /// mirror has hardened).
    mirroring: Arc<Mirroring>,
    jobs: Mutex<BTreeMap<String, Job>>,
}

fn refused(msg: impl Into<String>) -> StoreError {
    StoreError::Domain(pchat_domain::DomainError::Invalid(msg.into()))
}

fn role_db(role: &Role) -> Db {
    match role {
        Role::Primary(p) => p.db,
        Role::Secondary(s) => s.db,
    }
}

impl Logship {
    pub fn start(hosted: Arc<Hosted>, mirroring: Arc<Mirroring>) -> Arc<Logship> {
        let l = Arc::new(Logship {
            hosted,
            mirroring,
            jobs: Mutex::new(BTreeMap::new()),
        });
        let saved: BTreeMap<String, Role> = std::fs::read(l.path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for role in saved.into_values() {
            l.install(role);
        }
        l
    }

    fn path(&self) -> PathBuf {
        self.hosted.data_dir.join("logship.json")
    }

    fn save(&self) -> Result<(), StoreError> {
        let roles: BTreeMap<String, Role> = self
            .jobs
            .lock()
            .map_err(internal)?
            .iter()
            .map(|(k, j)| (k.clone(), j.role.clone()))
            .collect();
        crate::write_atomically(
            &self.path(),
            &serde_json::to_vec_pretty(&roles).map_err(internal)?,
        )
        .map_err(internal)
    }

    fn install(self: &Arc<Self>, role: Role) {
        let db = role_db(&role);
        let (stop, stopped) = watch::channel(false);
        let monitor = Arc::new(Mutex::new(Monitor::default()));
        match &role {
            Role::Primary(p) => {
                tokio::spawn(self.clone().backup_job(p.clone(), monitor.clone(), stopped));
            }
            Role::Secondary(s) => {
                tokio::spawn(
                    self.clone()
                        .secondary_jobs(s.clone(), monitor.clone(), stopped),
                );
            }
        }
        let job = Job {
            role,
            monitor,
            stop,
        };
        if let Ok(mut jobs) = self.jobs.lock() {
            if let Some(old) = jobs.insert(db_name(db).to_string(), job) {
                let _ = old.stop.send(true);
            }
        }
    }

    /// This server becomes the primary of `db`: its backup job starts.
    pub fn set_primary(self: &Arc<Self>, config: LogshipPrimary) -> Result<(), StoreError> {
        if config.every_ms == 0 && !config.continuous {
            return Err(refused("a schedule (every_ms > 0) or continuous mode"));
        }
        let share = Path::new(&config.share);
        if !share.is_dir() {
            return Err(refused(format!(
                "the share {} is not a folder on {}",
                config.share,
                self.hosted.data_dir.display()
            )));
        }
        // The same job again (a second secondary of the same primary is
        // configured): it keeps running, so no two jobs write at once.
        let same = self
            .jobs
            .lock()
            .map_err(internal)?
            .get(db_name(config.db))
            .is_some_and(|j| j.role == Role::Primary(config.clone()));
        if !same {
            self.install(Role::Primary(config));
        }
        self.save()
    }

    /// This server becomes a secondary of `db`: copy and restore jobs start.
    /// The database must already be initialised (restored WITH NORECOVERY or
    /// STANDBY from a full backup of the primary).
    pub fn set_secondary(self: &Arc<Self>, config: LogshipSecondary) -> Result<(), StoreError> {
        if (config.copy_every_ms == 0 || config.restore_every_ms == 0) && !config.continuous {
            return Err(refused("schedules (every_ms > 0) or continuous mode"));
        }
        if self.hosted.state(config.db)? == DbState::Online {
            return Err(refused(format!(
                "{} is ONLINE here: initialise the secondary from a full backup of the primary (restored with --norecovery or --standby)",
                db_name(config.db)
            )));
        }
        std::fs::create_dir_all(&config.copy_to).map_err(|e| {
            refused(format!(
                "cannot create the copy folder {}: {e}",
                config.copy_to
            ))
        })?;
        self.install(Role::Secondary(config));
        self.save()
    }

    /// `sp_delete_log_shipping_primary_database` / `_secondary_database`.
    pub fn remove(&self, db: Db) -> Result<serde_json::Value, StoreError> {
        let job = self
            .jobs
            .lock()
            .map_err(internal)?
            .remove(db_name(db))
            .ok_or_else(|| refused(format!("{} is not log shipped here", db_name(db))))?;
        let _ = job.stop.send(true);
        self.save()?;
        Ok(serde_json::json!({ "database": db_name(db), "removed": true }))
    }

    /// The monitor: every job of this server, with alerts.
    pub fn status(&self) -> Result<serde_json::Value, StoreError> {
        let now = pchat_engine::now_ms();
        let jobs = self.jobs.lock().map_err(internal)?;
        let mut out = Vec::new();
        for (db, job) in jobs.iter() {
            let m = job.monitor.lock().map_err(internal)?.clone();
            let mut alerts = Vec::new();
            // A backup job ships only from the serving copy (a primary mirror
            // has one too, standing by): one that stands by is not late.
            let db_of_job = role_db(&job.role);
            let ships = matches!(job.role, Role::Primary(_))
                && self.hosted.cached_state(db_of_job) == DbState::Online
                && self.mirroring.backup_limit(db_of_job).is_some();
            match &job.role {
                Role::Primary(p) if p.backup_alert_ms > 0 && ships => {
                    let last = m.backup.last_done_ms.or(m.backup.last_run_ms);
                    if last.is_none_or(|t| now - t > p.backup_alert_ms as i64) {
                        alerts.push(format!(
                            "no log backup within {} s",
                            p.backup_alert_ms / 1000
                        ));
                    }
                }
                Role::Secondary(s)
                    if s.restore_alert_ms > 0
                        && m.lag_ms.unwrap_or(0) > s.restore_alert_ms as i64 =>
                {
                    alerts.push(format!("no restore within {} s", s.restore_alert_ms / 1000));
                }
                _ => {}
            }
            if let Some(e) = m
                .backup
                .last_error
                .iter()
                .chain(&m.copy.last_error)
                .chain(&m.restore.last_error)
                .next()
            {
                alerts.push(e.clone());
            }
            out.push(serde_json::json!({
                "database": db,
                "config": job.role,
                "monitor": m,
                "ships": ships,
                "alerts": alerts,
            }));
        }
        Ok(serde_json::json!({ "jobs": out }))
    }

    /// Runs the copy and restore jobs of `db` once, now (what is left, before
    /// bringing a secondary online).
    pub async fn run_now(&self, db: Db) -> Result<serde_json::Value, StoreError> {
        let (config, monitor) = {
            let jobs = self.jobs.lock().map_err(internal)?;
            match jobs.get(db_name(db)) {
                Some(Job {
                    role: Role::Secondary(s),
                    monitor,
                    ..
                }) => (s.clone(), monitor.clone()),
                _ => {
                    return Err(refused(format!(
                        "{} is not a log-shipping secondary here",
                        db_name(db)
                    )))
                }
            }
        };
        let mut seen = HashMap::new();
        let copied = copy_once(&config);
        if let Ok(m) = monitor.lock().as_mut() {
            m.copy.ran(copied.clone());
        }
        copied.map_err(refused)?;
        let restored = self.restore_once(&config, &monitor, &mut seen, true).await;
        if let Ok(m) = monitor.lock().as_mut() {
            m.restore.ran(restored.clone());
        }
        restored.map_err(refused)?;
        let id = self.hosted.identity(db)?;
        Ok(
            serde_json::json!({ "database": db_name(db), "last_lsn": id.last_lsn, "monitor": monitor.lock().map_err(internal)?.clone() }),
        )
    }

    async fn backup_job(
        self: Arc<Self>,
        config: LogshipPrimary,
        monitor: Arc<Mutex<Monitor>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut commits = Commits::of(&self.hosted, config.db);
        let mut last_cleanup = tokio::time::Instant::now();
        let mut seq = 0u64;
        loop {
            if config.continuous {
                // Wake on log growth (or each second, should a wakeup be missed).
                tokio::select! {
                    _ = commits.next(&self.hosted) => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                tokio::time::sleep(GATHER).await;
                commits.drain();
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(config.every_ms)) => {}
                    _ = stop.changed() => return,
                }
            }
            if *stop.borrow() {
                return;
            }
            // Only the serving copy ships, and a synchronous principal only
            // what its mirror holds too.
            let serving = self.hosted.cached_state(config.db) == DbState::Online;
            let Some(upto) = self.mirroring.backup_limit(config.db).filter(|_| serving) else {
                continue;
            };
            seq += 1;
            let db_file = self.hosted.file(config.db);
            let files = self.hosted.files_dir(config.db);
            let to = Path::new(&config.share).join(format!(
                "{}_{:013}_{seq:06}.trn",
                db_name(config.db),
                pchat_engine::now_ms()
            ));
            let result = tokio::task::spawn_blocking(move || {
                match backup::log_backup_through(
                    &db_file,
                    &to,
                    "logship",
                    "log shipping backup job",
                    files.as_deref(),
                    upto,
                ) {
                    Ok(h) => Ok(Some((to.display().to_string(), h.last_lsn))),
                    Err(BackupError::NothingToBackUp(_)) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            if let Ok(m) = monitor.lock().as_mut() {
                m.backup.ran(result);
            }
            if last_cleanup.elapsed() > CLEANUP_EVERY {
                last_cleanup = tokio::time::Instant::now();
                let (share, db, retention) =
                    (PathBuf::from(&config.share), config.db, config.retention_ms);
                let _ =
                    tokio::task::spawn_blocking(move || clean_share(&share, db, retention)).await;
            }
        }
    }

    async fn secondary_jobs(
        self: Arc<Self>,
        config: LogshipSecondary,
        monitor: Arc<Mutex<Monitor>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut seen: HashMap<String, BackupHeader> = HashMap::new();
        let copy_every = if config.continuous {
            POLL
        } else {
            Duration::from_millis(config.copy_every_ms)
        };
        let restore_every = if config.continuous {
            POLL
        } else {
            Duration::from_millis(config.restore_every_ms)
        };
        let mut next_copy = tokio::time::Instant::now();
        let mut next_restore = tokio::time::Instant::now();
        loop {
            let wake = next_copy.min(next_restore);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.changed() => return,
            }
            let now = tokio::time::Instant::now();
            if now >= next_copy {
                next_copy = now + copy_every;
                let c = config.clone();
                let copied = tokio::task::spawn_blocking(move || copy_once(&c))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                if let Ok(m) = monitor.lock().as_mut() {
                    m.copy.ran(copied);
                }
            }
            if now >= next_restore {
                next_restore = now + restore_every;
                let restored = self.restore_once(&config, &monitor, &mut seen, false).await;
                if let Ok(m) = monitor.lock().as_mut() {
                    m.restore.ran(restored);
                }
            }
        }
    }

    /// Applies, in LSN order, the copied log backups that continue the
    /// database (and are older than the delay, unless `now`).
    async fn restore_once(
        &self,
        config: &LogshipSecondary,
        monitor: &Mutex<Monitor>,
        seen: &mut HashMap<String, BackupHeader>,
        ignore_delay: bool,
    ) -> Result<Option<(String, Lsn)>, String> {
        let dir = PathBuf::from(&config.copy_to);
        let prefix = format!("{}_", db_name(config.db));
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(&prefix) && name.ends_with(".trn") && !seen.contains_key(&name) {
                if let Ok(h) = backup::read_header(&e.path()) {
                    seen.insert(name, h);
                }
            }
        }
        let _one = self.hosted.admin.lock().await;
        let file = self.hosted.file(config.db);
        let (id, state) = self.hosted.read(config.db).map_err(|e| e.to_string())?;
        if state == DbState::Online {
            return Err(format!(
                "{} is ONLINE here (recovered): remove log shipping",
                db_name(config.db)
            ));
        }
        let mut pending: Vec<(&String, &BackupHeader)> = seen
            .iter()
            .filter(|(_, h)| h.last_lsn > id.last_lsn && h.kind == BackupKind::Log)
            .collect();
        pending.sort_by_key(|(_, h)| h.first_lsn);
        let newest = seen.values().map(|h| h.last_lsn).max();
        let now = pchat_engine::now_ms();
        let mut last = id.last_lsn;
        let mut done = None;
        let recovery = if config.standby {
            Recovery::Standby
        } else {
            Recovery::NoRecovery
        };
        for (name, h) in pending.iter() {
            if h.first_lsn > last + 1 {
                break; // a gap: the file that fills it has not been copied yet
            }
            if !ignore_delay && h.created_at + config.delay_ms as i64 > now {
                break;
            }
            let path = dir.join(name);
            let (target, files) = (file.clone(), self.hosted.files_dir(config.db));
            let r = tokio::task::spawn_blocking(move || {
                backup::restore(
                    &path,
                    &target,
                    files.as_deref(),
                    RestoreOptions {
                        replace: false,
                        recovery,
                    },
                )
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{name}: {e}"))?;
            last = r.last_lsn;
            done = Some(((*name).clone(), r.last_lsn));
        }
        let waiting = pending
            .iter()
            .filter(|(_, h)| h.last_lsn > last)
            .map(|(_, h)| h.created_at)
            .min();
        if let Ok(m) = monitor.lock().as_mut() {
            m.newest_copied_lsn = newest;
            m.lag_lsns = newest.map(|n| (n - last).max(0));
            m.lag_ms = Some(waiting.map(|t| (now - t).max(0)).unwrap_or(0));
        }
        // Restored and old enough: the copy is not needed any more.
        seen.retain(|name, h| {
            let old = h.last_lsn <= last && h.created_at + 3_600_000 < now;
            if old {
                let _ = std::fs::remove_file(dir.join(name));
            }
            !old
        });
        Ok(done)
    }
}

/// The copy job, once: every log backup of the database in the share that
/// the copy folder lacks, copied under a temporary name, fsynced, renamed.
fn copy_once(config: &LogshipSecondary) -> Result<Option<(String, Lsn)>, String> {
    let share = Path::new(&config.share);
    let to = Path::new(&config.copy_to);
    let prefix = format!("{}_", db_name(config.db));
    let mut names: Vec<String> = std::fs::read_dir(share)
        .map_err(|e| format!("the share {}: {e}", share.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".trn"))
        .collect();
    names.sort();
    let mut last = None;
    for name in names {
        let target = to.join(&name);
        if target.exists() {
            continue;
        }
        // A name of its own: `logship run` and the job may copy at once,
        // and so may another secondary sharing the folder.
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = to.join(format!(".{name}.copying-{}-{n}", std::process::id()));
        let copied = (|| -> std::io::Result<()> {
            std::fs::copy(share.join(&name), &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &target)?;
            std::fs::File::open(to)?.sync_all()
        })();
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            // Copied by the other meanwhile, or cleaned from the share
            // (covered by a full backup): nothing is missing.
            if target.exists()
                || e.kind() == std::io::ErrorKind::NotFound && !share.join(&name).exists()
            {
                continue;
            }
            return Err(format!("copying {name}: {e}"));
        }
        let lsn = backup::read_header(&target)
            .map(|h| h.last_lsn)
            .unwrap_or(0);
        last = Some((name, lsn));
    }
    Ok(last)
}

/// Deletes log backups of `db` from the share that are older than the
/// retention and covered by a newer full backup of the same family there (a
/// restore from that full backup never needs them), and temporary files of
/// its writers older than the retention. Reads headers only: a temporary
/// file (perhaps complete, never published) covers nothing.
fn clean_share(share: &Path, db: Db, retention_ms: u64) {
    let now = pchat_engine::now_ms();
    let Ok(entries) = std::fs::read_dir(share) else {
        return;
    };
    let (temporary, published): (Vec<_>, Vec<_>) = entries
        .flatten()
        .partition(|e| backup::is_temporary(&e.file_name().to_string_lossy()));
    let retention = Duration::from_millis(retention_ms);
    for e in temporary {
        let ours = e
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{}_", db_name(db)));
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > retention);
        if ours && stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let headers: Vec<(PathBuf, BackupHeader)> = published
        .into_iter()
        .filter_map(|e| Some((e.path(), backup::read_header(&e.path()).ok()?)))
        .filter(|(_, h)| h.database == db_name(db))
        .collect();
    for (path, h) in &headers {
        let covered = headers.iter().any(|(_, full)| {
            full.kind == BackupKind::Full
                && full.family_id == h.family_id
                && full.last_lsn >= h.last_lsn
        });
        if h.kind == BackupKind::Log && covered && h.created_at + (retention_ms as i64) < now {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Wakes the continuous backup job when the log of its database grows.
enum Commits {
    Chat(
        Db,
        tokio::sync::broadcast::Receiver<Arc<pchat_domain::LogRecord<pchat_domain::Event>>>,
    ),
    Comp(
        Db,
        tokio::sync::broadcast::Receiver<
            Arc<pchat_domain::LogRecord<pchat_engine::compliance::ComplianceEvent>>,
        >,
    ),
}

impl Commits {
    fn of(hosted: &Hosted, db: Db) -> Commits {
        match db {
            Db::Mgc => Commits::Chat(db, hosted.mgc().engine().commits()),
            Db::Mgccomp => Commits::Comp(db, hosted.comp().commits()),
        }
    }

    /// The next commit (a lag counts: the log grew). When the database was
    /// closed and opened again (a restore), follows the new engine.
    async fn next(&mut self, hosted: &Hosted) {
        use tokio::sync::broadcast::error::RecvError;
        let (db, closed) = match self {
            Commits::Chat(db, r) => (*db, matches!(r.recv().await, Err(RecvError::Closed))),
            Commits::Comp(db, r) => (*db, matches!(r.recv().await, Err(RecvError::Closed))),
        };
        if closed {
            // Give the reopen a moment, should it be under way.
            tokio::time::sleep(Duration::from_millis(100)).await;
            *self = Commits::of(hosted, db);
        }
    }

    fn drain(&mut self) {
        match self {
            Commits::Chat(_, r) => while r.try_recv().is_ok() {},
            Commits::Comp(_, r) => while r.try_recv().is_ok() {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::users;

    /// Configuring a second secondary sends the primary its backup job
    /// again: the same job keeps running (two would write log backups of
    /// the same LSNs at once); another configuration replaces it.
    #[tokio::test]
    async fn the_same_backup_job_set_again_keeps_running() {
        let dir = tempfile::tempdir().unwrap();
        let share = tempfile::tempdir().unwrap();
        let hosted = Hosted::open(dir.path()).unwrap();
        let mirroring = Mirroring::start(hosted.clone(), b"secret".to_vec(), "test".into());
        let l = Logship::start(hosted, mirroring);
        let config = LogshipPrimary {
            db: Db::Mgc,
            share: share.path().display().to_string(),
            every_ms: 0,
            continuous: true,
            retention_ms: 3_600_000,
            backup_alert_ms: 0,
        };
        let monitor = |l: &Logship| {
            let jobs = l.jobs.lock().unwrap();
            jobs["mgc"].monitor.clone()
        };
        l.set_primary(config.clone()).unwrap();
        let first = monitor(&l);
        l.set_primary(config.clone()).unwrap();
        assert!(Arc::ptr_eq(&first, &monitor(&l)), "the job was restarted");
        l.set_primary(LogshipPrimary {
            retention_ms: 7_200_000,
            ..config
        })
        .unwrap();
        assert!(!Arc::ptr_eq(&first, &monitor(&l)), "a new configuration");
    }

    /// Cleaning keeps every log backup a restore from the share still needs:
    /// those after the newest full backup, and those within the retention.
    #[tokio::test]
    async fn cleaning_the_share_keeps_what_a_restore_needs() {
        let dir = tempfile::tempdir().unwrap();
        let share = tempfile::tempdir().unwrap();
        let file = dir.path().join("mgc.db");
        let db = pchat_engine::ChatEngine::open(&file).unwrap();
        let log = |n: &str| {
            let to = share.path().join(n);
            backup::log_backup(&file, &to, "", "", None).unwrap();
            to
        };
        users(&db, 0).await;
        let old1 = log("mgc_1.trn");
        users(&db, 3).await;
        let old2 = log("mgc_2.trn");
        // A complete full backup that its writer never renamed covers
        // nothing, and goes once older than the retention.
        let unfinished = share.path().join("mgc_full.bak.tmp-4242");
        backup::full_backup(&file, None, &unfinished, "", "").unwrap();
        clean_share(share.path(), Db::Mgc, 3_600_000);
        assert!(unfinished.exists());
        std::thread::sleep(Duration::from_millis(5));
        clean_share(share.path(), Db::Mgc, 0);
        assert!(old1.exists() && old2.exists() && !unfinished.exists());
        backup::full_backup(&file, None, &share.path().join("full.bak"), "", "").unwrap();
        users(&db, 6).await;
        let needed = log("mgc_3.trn");
        // Within the retention: nothing goes.
        clean_share(share.path(), Db::Mgc, 3_600_000);
        assert!(old1.exists() && old2.exists() && needed.exists());
        // Past it: what the full backup covers goes, what follows it stays.
        clean_share(share.path(), Db::Mgc, 0);
        std::thread::sleep(Duration::from_millis(5));
        clean_share(share.path(), Db::Mgc, 0);
        assert!(!old1.exists() && !old2.exists());
        assert!(needed.exists());
        assert!(share.path().join("full.bak").exists());
        // Another database's files are not touched.
        clean_share(share.path(), Db::Mgccomp, 0);
        assert!(needed.exists());
        db.close();
    }
}
