//! The databases a server hosts, open: `mgc` and `mgccomp`, each of which
//! can be taken offline for a restore or a change of state and opened again
//! while the server runs, and the compliance recorder, which runs only while
//! both are ONLINE (on a mirror or a log-shipping secondary they are not).

use pchat_engine::{compliance, ChatEngine, ComplianceEngine, DbState, MGCCOMP_FILE, MGC_FILE};
use pchat_store::StoreError;
use pchat_wire::message::Db;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

type Recorder = (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
);

pub struct Hosted {
    pub data_dir: PathBuf,
    mgc: RwLock<Arc<ChatEngine>>,
    comp: RwLock<Arc<ComplianceEngine>>,
    recorder: Mutex<Option<Recorder>>,
    /// The state of each database as last opened (every change of state
    /// goes through `offline`, which reopens): checked without IO.
    states: Mutex<[DbState; 2]>,
    /// One change of a database at a time (restore, recovery, role change).
    pub admin: tokio::sync::Mutex<()>,
}

pub fn db_file(db: Db) -> &'static str {
    match db {
        Db::Mgc => MGC_FILE,
        Db::Mgccomp => MGCCOMP_FILE,
    }
}

pub fn db_name(db: Db) -> &'static str {
    match db {
        Db::Mgc => "mgc",
        Db::Mgccomp => "mgccomp",
    }
}

pub fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

impl Hosted {
    pub fn open(data_dir: &Path) -> anyhow::Result<Arc<Hosted>> {
        std::fs::create_dir_all(data_dir)?;
        // What an interrupted upload left: never complete, never used.
        let _ = std::fs::remove_dir_all(data_dir.join(pchat_engine::FILES_DIR).join("tmp"));
        let hosted = Arc::new(Hosted {
            data_dir: data_dir.to_path_buf(),
            mgc: RwLock::new(ChatEngine::open(&data_dir.join(MGC_FILE))?),
            comp: RwLock::new(compliance::open(&data_dir.join(MGCCOMP_FILE))?),
            recorder: Mutex::new(None),
            states: Mutex::new([DbState::Online; 2]),
            admin: tokio::sync::Mutex::new(()),
        });
        for db in [Db::Mgc, Db::Mgccomp] {
            hosted.note_state(db)?;
        }
        hosted.start_recorder();
        Ok(hosted)
    }

    pub fn mgc(&self) -> Arc<ChatEngine> {
        match self.mgc.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn comp(&self) -> Arc<ComplianceEngine> {
        match self.comp.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn file(&self, db: Db) -> PathBuf {
        self.data_dir.join(db_file(db))
    }

    /// Uploaded files travel with `mgc`.
    pub fn files_dir(&self, db: Db) -> Option<PathBuf> {
        (db == Db::Mgc).then(|| self.data_dir.join(pchat_engine::FILES_DIR))
    }

    /// Uploaded files (they travel with `mgc`).
    pub fn blobs(&self) -> pchat_store::blobs::LocalBlobs {
        pchat_store::blobs::LocalBlobs::new(self.data_dir.join(pchat_engine::FILES_DIR))
    }

    /// The identity and state in the database file (one read).
    pub fn read(&self, db: Db) -> Result<(pchat_store::Identity, DbState), StoreError> {
        let conn = pchat_engine::open_connection(&self.file(db)).map_err(internal)?;
        let id = pchat_engine::read_identity(&conn)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("{} has no identity", db_name(db))))?;
        Ok((id, pchat_engine::read_state(&conn).map_err(internal)?))
    }

    pub fn state(&self, db: Db) -> Result<DbState, StoreError> {
        Ok(self.read(db)?.1)
    }

    pub fn identity(&self, db: Db) -> Result<pchat_store::Identity, StoreError> {
        Ok(self.read(db)?.0)
    }

    /// Starts the recorder when both databases are ONLINE.
    fn start_recorder(&self) {
        let both = self
            .states
            .lock()
            .map(|s| *s)
            .unwrap_or([DbState::Offline; 2]);
        if both != [DbState::Online; 2] {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(compliance::run_recorder(self.mgc(), self.comp(), stopped));
        if let Ok(mut r) = self.recorder.lock() {
            *r = Some((stop, task));
        }
    }

    async fn stop_recorder(&self) {
        let running = self.recorder.lock().ok().and_then(|mut r| r.take());
        if let Some((stop, task)) = running {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Closes `db`, runs `change` on its file (a restore, a change of
    /// state), then opens it again, whatever `change` answered, and
    /// restarts the recorder if both databases are ONLINE. Commands sent to
    /// the database meanwhile are refused as unavailable (and retried).
    pub async fn offline<T: Send + 'static>(
        &self,
        db: Db,
        change: impl FnOnce(&Path) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        self.stop_recorder().await;
        let file = self.file(db);
        let result = match db {
            Db::Mgc => {
                let old = self.mgc();
                tokio::task::spawn_blocking(move || {
                    old.close();
                    change(&file)
                })
                .await
            }
            Db::Mgccomp => {
                let old = self.comp();
                tokio::task::spawn_blocking(move || {
                    old.close();
                    change(&file)
                })
                .await
            }
        };
        let reopened = self.reopen(db);
        self.start_recorder();
        let result = result.map_err(internal)?;
        reopened?;
        Ok(result)
    }

    fn note_state(&self, db: Db) -> Result<(), StoreError> {
        let state = self.state(db)?;
        if let Ok(mut s) = self.states.lock() {
            s[db as usize] = state;
        }
        Ok(())
    }

    /// The database's state as last noted (no IO: kept as it changes).
    pub fn cached_state(&self, db: Db) -> DbState {
        self.states
            .lock()
            .map(|s| s[db as usize])
            .unwrap_or(DbState::Offline)
    }

    /// Refuses reads of a database that is RESTORING or OFFLINE (it serves
    /// nothing); ONLINE and STANDBY (read-only) are read.
    pub fn readable(&self, db: Db) -> Result<(), StoreError> {
        match self.cached_state(db) {
            DbState::Online | DbState::Standby => Ok(()),
            other => Err(StoreError::Unavailable(format!(
                "{} is {} here: it serves no reads",
                db_name(db),
                other.as_str()
            ))),
        }
    }

    fn reopen(&self, db: Db) -> Result<(), StoreError> {
        let file = self.file(db);
        match db {
            Db::Mgc => {
                let engine = ChatEngine::open(&file)?;
                if let Ok(mut g) = self.mgc.write() {
                    *g = engine;
                }
            }
            Db::Mgccomp => {
                let engine = compliance::open(&file)?;
                if let Ok(mut g) = self.comp.write() {
                    *g = engine;
                }
            }
        }
        self.note_state(db)
    }

    /// Stops the recorder and closes both databases (everything acknowledged
    /// is already durable).
    pub async fn close(&self) {
        self.stop_recorder().await;
        self.mgc().close();
        self.comp().close();
    }
}
