//! A database as a state machine, and the engine that runs one: the group
//! committer, the read pool and the publisher of committed records.

use crate::database;
use crate::reads::ReadPool;
use crate::{internal, now_ms};
use pchat_domain::{LogRecord, Lsn, Timestamp};
use pchat_store::{StoreError, StoreMetrics};
use rusqlite::{params, Connection};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// What a database is: its tables, its decide step and its apply step.
pub trait Machine: Send + 'static {
    type Command: Send + 'static;
    type Event: Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static;
    type Outcome: Send + 'static;

    /// `CREATE TABLE IF NOT EXISTS ...` for the machine's tables.
    const SCHEMA: &'static str;
    /// Kept in the file (`PRAGMA user_version`); a file of another version is
    /// refused rather than misread. Bump it whenever `SCHEMA` changes.
    const SCHEMA_VERSION: i64;

    /// Decides a command against the state visible in `conn` (the open write
    /// transaction). Must not write.
    fn decide(
        conn: &Connection,
        now: Timestamp,
        command: Self::Command,
    ) -> Result<(Vec<Self::Event>, Self::Outcome), StoreError>;

    /// Applies one event to the tables. Deterministic: the same log applied to
    /// an empty database gives the same tables.
    fn apply(conn: &Connection, lsn: Lsn, event: &Self::Event) -> rusqlite::Result<()>;
}

struct Request<M: Machine> {
    origin: String,
    command: M::Command,
    reply: oneshot::Sender<Result<(Lsn, M::Outcome), StoreError>>,
}

/// Most commands in one group commit.
const MAX_BATCH: usize = 1024;
/// Live records buffered per subscriber before it falls back to the log.
const LIVE_BUFFER: usize = 16 * 1024;

/// One database, running: a writer thread, a read pool, a publisher.
pub struct Engine<M: Machine> {
    /// Why commands are refused (a database that is not ONLINE).
    refusing: Option<String>,
    name: String,
    queue: Mutex<Option<mpsc::UnboundedSender<Request<M>>>>,
    published: broadcast::Sender<Arc<LogRecord<M::Event>>>,
    pub(crate) reads: Arc<ReadPool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<StoreMetrics>,
    /// The last LSN committed by this engine's writer (or found at open).
    committed: Arc<AtomicI64>,
}

impl<M: Machine> Engine<M> {
    /// Opens the database at `path`, creating it (and its identity) if new.
    pub fn open(path: &Path, name: &str) -> Result<Arc<Self>, StoreError> {
        let conn =
            database::open_for_write(path, name, M::SCHEMA, M::SCHEMA_VERSION).map_err(internal)?;
        let state = database::read_state(&conn).map_err(internal)?;
        let last = database::read_identity(&conn)
            .map_err(internal)?
            .map(|i| i.last_lsn)
            .unwrap_or(0);
        let committed = Arc::new(AtomicI64::new(last));
        let refusing = match state {
            database::DbState::Online => None,
            database::DbState::Offline => Some(format!(
                "{name} is OFFLINE: it takes no commands until it is brought online"
            )),
            other => Some(format!(
                "{name} is {}: it takes no commands until it is restored WITH RECOVERY",
                other.as_str()
            )),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (published, _) = broadcast::channel(LIVE_BUFFER);
        let metrics = Arc::new(StoreMetrics::default());
        let writer = {
            let published = published.clone();
            let metrics = metrics.clone();
            let committed = committed.clone();
            std::thread::Builder::new()
                .name(format!("{name}-writer"))
                .spawn(move || {
                    Writer::<M> {
                        conn,
                        published,
                        metrics,
                        committed,
                    }
                    .run(rx)
                })
                .map_err(internal)?
        };
        Ok(Arc::new(Engine {
            refusing,
            name: name.to_string(),
            queue: Mutex::new(Some(tx)),
            published,
            reads: Arc::new(ReadPool::new(path.to_path_buf(), 16)),
            writer: Mutex::new(Some(writer)),
            metrics,
            committed,
        }))
    }

    pub fn metrics(&self) -> Arc<StoreMetrics> {
        self.metrics.clone()
    }

    /// Decides and commits `command`; the returned future answers once its
    /// batch is durable. The command is queued when `submit` is called (not
    /// when the future is first polled), so commands submitted one after
    /// another commit in that order even when their answers are awaited later.
    pub fn submit(
        &self,
        origin: &str,
        command: M::Command,
    ) -> impl std::future::Future<Output = Result<(Lsn, M::Outcome), StoreError>> + Send + 'static
    {
        let (reply, answer) = oneshot::channel();
        let queued = match self.queue.lock() {
            _ if self.refusing.is_some() => Err(StoreError::Unavailable(
                self.refusing.clone().unwrap_or_default(),
            )),
            Ok(q) => match q.as_ref() {
                Some(q) => q
                    .send(Request {
                        origin: origin.to_string(),
                        command,
                        reply,
                    })
                    .map_err(|_| StoreError::Unavailable(format!("{} writer stopped", self.name))),
                None => Err(StoreError::Unavailable(format!("{} is closed", self.name))),
            },
            Err(e) => Err(internal(e)),
        };
        let name = self.name.clone();
        async move {
            queued?;
            answer
                .await
                .map_err(|_| StoreError::Unavailable(format!("{name} writer stopped")))?
        }
    }

    /// Runs a read on a pooled read-only connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reads = self.reads.clone();
        tokio::task::spawn_blocking(move || reads.with(f))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    /// Committed records after `after`: first from the log, then live. A
    /// subscriber that falls behind the live buffer reads the log again, so the
    /// stream has no gap and no duplicate.
    pub fn subscribe(
        &self,
        after: Lsn,
    ) -> mpsc::Receiver<Result<Arc<LogRecord<M::Event>>, StoreError>> {
        let (tx, rx) = mpsc::channel(1024);
        let mut live = self.published.subscribe();
        let reads = self.reads.clone();
        tokio::spawn(async move {
            let mut last = after;
            let mut catch_up = true;
            loop {
                if catch_up {
                    // Read the log in chunks until it has nothing newer.
                    loop {
                        let from = last;
                        let chunk = {
                            let reads = reads.clone();
                            tokio::task::spawn_blocking(move || {
                                reads.with(|c| read_log::<M::Event>(c, from, 1000))
                            })
                            .await
                        };
                        let chunk = match chunk {
                            Ok(Ok(c)) => c,
                            Ok(Err(e)) => {
                                let _ = tx.send(Err(internal(e))).await;
                                return;
                            }
                            Err(e) => {
                                let _ = tx.send(Err(internal(e))).await;
                                return;
                            }
                        };
                        let n = chunk.len();
                        for rec in chunk {
                            last = rec.lsn;
                            if tx.send(Ok(Arc::new(rec))).await.is_err() {
                                return;
                            }
                        }
                        if n < 1000 {
                            break;
                        }
                    }
                    catch_up = false;
                }
                match live.recv().await {
                    Ok(rec) if rec.lsn <= last => {}
                    Ok(rec) if rec.lsn == last + 1 => {
                        last = rec.lsn;
                        if tx.send(Ok(rec)).await.is_err() {
                            return;
                        }
                    }
                    // A gap (we subscribed before the records we missed were
                    // read) or a lag: the log has everything committed.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => catch_up = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }

    /// The last LSN this engine committed (no IO: what a mirror is told the
    /// principal holds).
    pub fn last_committed(&self) -> Lsn {
        self.committed.load(Ordering::Acquire)
    }

    /// Every record as it commits, for waking up on log growth (a receiver
    /// that lags is told so; the log has everything).
    pub fn commits(&self) -> broadcast::Receiver<Arc<LogRecord<M::Event>>> {
        self.published.subscribe()
    }

    /// The database's identity, as committed.
    pub async fn identity(&self) -> Result<pchat_store::Identity, StoreError> {
        self.read(database::read_identity)
            .await?
            .ok_or_else(|| internal(format!("{} has no identity", self.name)))
    }

    /// Stops taking commands, lets the writer commit and answer everything
    /// already queued, and waits for it.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl<M: Machine> Drop for Engine<M> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads up to `limit` log records after `after`.
pub(crate) fn read_log<E: DeserializeOwned>(
    conn: &Connection,
    after: Lsn,
    limit: usize,
) -> rusqlite::Result<Vec<LogRecord<E>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT lsn, ts, origin, event FROM log WHERE lsn > ?1 ORDER BY lsn LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit as i64], |r| {
        let text: String = r.get(3)?;
        let event = serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(LogRecord {
            lsn: r.get(0)?,
            ts: r.get(1)?,
            origin: r.get(2)?,
            event,
        })
    })?;
    rows.collect()
}

struct Writer<M: Machine> {
    conn: Connection,
    published: broadcast::Sender<Arc<LogRecord<M::Event>>>,
    metrics: Arc<StoreMetrics>,
    committed: Arc<AtomicI64>,
}

type Reply<M> = (
    oneshot::Sender<Result<(Lsn, <M as Machine>::Outcome), StoreError>>,
    Result<(Lsn, <M as Machine>::Outcome), StoreError>,
);

impl<M: Machine> Writer<M> {
    fn run(mut self, mut queue: mpsc::UnboundedReceiver<Request<M>>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // After a failed batch, commands commit one per transaction for a
        // while, so a command whose apply fails fails alone.
        let mut solo_until: Option<Instant> = None;
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            let limit = match solo_until {
                Some(t) if Instant::now() < t => 1,
                _ => MAX_BATCH,
            };
            while batch.len() < limit {
                match queue.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let size = batch.len();
            match self.commit_batch(&mut batch) {
                Ok((replies, records)) => {
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.batch_size.observe(size as f64);
                    if let Some(last) = records.last() {
                        self.committed.store(last.lsn, Ordering::Release);
                    }
                    for (reply, result) in replies {
                        let _ = reply.send(result);
                    }
                    for rec in records {
                        let _ = self.published.send(Arc::new(rec));
                    }
                }
                Err(e) => {
                    // Nothing of the batch is durable. Its reply channels were
                    // dropped with it, so every submitter sees `Unavailable`
                    // and may retry (posts keep their client_msg_id).
                    tracing::error!(error = %e, size, "group commit failed");
                    batch.clear();
                    solo_until = Some(Instant::now() + std::time::Duration::from_secs(5));
                }
            }
        }
    }

    /// One transaction, one fsync, for the whole batch. No savepoint per
    /// command: a savepoint makes FTS5 flush its index to disk each time.
    #[allow(clippy::type_complexity)]
    fn commit_batch(
        &mut self,
        batch: &mut Vec<Request<M>>,
    ) -> rusqlite::Result<(Vec<Reply<M>>, Vec<LogRecord<M::Event>>)> {
        let now = now_ms();
        let mut replies = Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Read under the write lock: another process (`pchat admin --data-dir`
        // beside a running server) may have appended since our last batch.
        let first: Lsn = tx
            .prepare_cached("SELECT last_lsn FROM identity WHERE id = 1")?
            .query_row([], |r| r.get(0))?;
        let mut lsn = first;
        for req in batch.drain(..) {
            // decide only reads; a refused command has written nothing.
            let result = match M::decide(&tx, now, req.command) {
                Err(e) => Err(e),
                Ok((events, outcome)) => {
                    for event in events {
                        lsn += 1;
                        let text = serde_json::to_string(&event)
                            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                        tx.prepare_cached(
                            "INSERT INTO log (lsn, ts, origin, event) VALUES (?1, ?2, ?3, ?4)",
                        )?
                        .execute(params![lsn, now, req.origin, text])?;
                        // An apply error fails the whole batch (see `run`).
                        M::apply(&tx, lsn, &event)?;
                        records.push(LogRecord {
                            lsn,
                            ts: now,
                            origin: req.origin.clone(),
                            event,
                        });
                    }
                    Ok((lsn, outcome))
                }
            };
            replies.push((req.reply, result));
        }
        if lsn != first {
            tx.prepare_cached("UPDATE identity SET last_lsn = ?1 WHERE id = 1")?
                .execute(params![lsn])?;
        }
        tx.commit()?;
        Ok((replies, records))
    }
}
