//! The narrow interface between a chat server and its chat database (`mgc`).
//!
//! Three things cross it, and only these: **submit** a command and get its
//! outcome once durable; run **read queries**; **subscribe** to committed log
//! records from an LSN. The embedded engine (`pchat-engine`) implements
//! [`ChatStore`] in-process; a network client of a separate database server
//! will implement the same trait, so the chat server never knows which it has.
//!
//! This crate must never depend on SQLite or on any transport.

pub mod blobs;
#[cfg(feature = "conformance")]
pub mod conformance;

use pchat_domain::{
    Access, AddIn, Category, CategoryId, DomainError, Envelope, Group, GroupId, LogRecord, Lsn,
    Message, Outcome, RoomId, RoomInfo, Seq, User, UserId,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum StoreError {
    /// The chat model refused the command; nothing changed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database cannot take work now (shutting down, not ONLINE, lost).
    /// Whether a submitted command committed is unknown: retry with the same
    /// `client_msg_id`.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A storage failure.
    #[error("storage error: {0}")]
    Internal(String),
}

/// A database's identity: kept in the database, checked on every backup,
/// restore and log shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    /// Made once, when the database is created; shared by its restores and replicas.
    pub family_id: String,
    /// Changes each time a restored database is brought online with recovery.
    pub fork_id: String,
    pub last_lsn: Lsn,
}

/// A fork of a database's history: bringing a restored database online
/// WITH RECOVERY (or forcing a mirror into service) starts one at the LSN
/// after its last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    pub fork_id: String,
    pub start_lsn: Lsn,
    pub created_at: i64,
}

/// One log record as the log stores it: the event kept as its JSON text,
/// so log backups, log shipping and mirroring carry it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRecord {
    pub lsn: Lsn,
    pub ts: i64,
    pub origin: String,
    pub event: String,
}

impl RawRecord {
    /// A committed record as the log holds it (the engine writes an event
    /// as `serde_json::to_string` of it, so this is the same text).
    pub fn of<E: Serialize>(rec: &LogRecord<E>) -> serde_json::Result<RawRecord> {
        Ok(RawRecord {
            lsn: rec.lsn,
            ts: rec.ts,
            origin: rec.origin.clone(),
            event: serde_json::to_string(&rec.event)?,
        })
    }
}

/// The state a restore leaves a database in (SQL Server's WITH RECOVERY,
/// NORECOVERY and STANDBY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recovery {
    /// ONLINE, on a new fork.
    Recovery,
    /// RESTORING: more log backups may follow.
    NoRecovery,
    /// STANDBY: read-only between log restores.
    Standby,
}

/// A command's result, once its batch is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    /// LSN of the last event the command wrote (the database's last LSN at the
    /// time when it wrote nothing).
    pub lsn: Lsn,
    pub outcome: Outcome,
}

/// Which messages of a room to read, always returned in ascending `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Page {
    Latest { limit: u32 },
    Before { seq: Seq, limit: u32 },
    After { seq: Seq, limit: u32 },
}

/// A group with its direct members, written as in lists (`alice`, `group:Sales`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDetails {
    pub group: Group,
    pub members: Vec<String>,
}

/// A category's lists, written as in lists (`alice`, `group:Sales`, `*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryLists {
    pub allowed: Vec<String>,
    pub denied: Vec<String>,
    pub creators: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub room: RoomId,
    /// Who invited (none: an operator at the machine).
    pub by: Option<UserId>,
}

/// A room's role lists, written as in lists (`alice`, `group:Sales`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRoles {
    pub members: Vec<String>,
    pub managers: Vec<String>,
    pub presenters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Free text; every word must match (prefix match on the last word).
    pub text: String,
    /// Only these rooms (the ones the caller may read).
    pub rooms: Vec<RoomId>,
    pub limit: u32,
    /// Only hits older than this cursor (a hit's `id`).
    pub before: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Cursor for paging: stable for the life of the message.
    pub id: i64,
    pub message: Message,
}

/// Committed log records, in LSN order with no gap, first from the log and then
/// live. An `Err` ends the stream.
pub type Subscription = tokio::sync::mpsc::Receiver<Result<Arc<LogRecord>, StoreError>>;

/// The chat database as the chat server sees it.
pub trait ChatStore: Send + Sync + 'static {
    /// Decides and commits a command; answers once the events are durable.
    /// The command is queued when `submit` is called, so commands submitted
    /// one after another from one task commit in that order (a connection may
    /// pipeline its posts and still keep them in order).
    fn submit(&self, command: Envelope) -> BoxFuture<'static, Result<Committed, StoreError>>;

    /// Log records after `after` (exclusive), then every new one as it commits.
    fn subscribe(&self, after: Lsn) -> Result<Subscription, StoreError>;

    fn identity(&self) -> BoxFuture<'_, Result<Identity, StoreError>>;

    /// Commit latency and batch sizes, for `/metrics`.
    fn metrics(&self) -> Arc<StoreMetrics>;

    fn user(&self, id: UserId) -> BoxFuture<'_, Result<Option<User>, StoreError>>;
    /// The user and its password hash, for signing in.
    fn credentials(
        &self,
        name: String,
    ) -> BoxFuture<'_, Result<Option<(User, String)>, StoreError>>;
    fn session_user(&self, token_hash: String) -> BoxFuture<'_, Result<Option<User>, StoreError>>;
    fn user_count(&self) -> BoxFuture<'_, Result<i64, StoreError>>;

    fn category(&self, id: CategoryId) -> BoxFuture<'_, Result<Option<Category>, StoreError>>;
    fn categories(&self) -> BoxFuture<'_, Result<Vec<Category>, StoreError>>;

    fn room(&self, id: RoomId) -> BoxFuture<'_, Result<Option<RoomInfo>, StoreError>>;
    fn room_roles(&self, id: RoomId) -> BoxFuture<'_, Result<RoomRoles, StoreError>>;
    fn access(&self, room: RoomId, user: UserId) -> BoxFuture<'_, Result<Access, StoreError>>;
    /// Every room with the given user's roles in it.
    fn rooms_with_access(
        &self,
        user: UserId,
    ) -> BoxFuture<'_, Result<Vec<(RoomInfo, Access)>, StoreError>>;

    fn configuration(&self) -> BoxFuture<'_, Result<pchat_domain::PoolConfig, StoreError>>;
    fn feeds(&self, user: UserId) -> BoxFuture<'_, Result<Vec<pchat_domain::Feed>, StoreError>>;
    /// History messages matching the feed in these rooms (the ones its
    /// user may read), newest first, older than the `before` cursor.
    fn feed_messages(
        &self,
        feed: pchat_domain::Feed,
        rooms: Vec<RoomId>,
        before: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<SearchHit>, StoreError>>;
    /// The file, if a message still in the room's history carries it.
    fn file_in_room(
        &self,
        room: RoomId,
        sha256: String,
    ) -> BoxFuture<'_, Result<Option<pchat_domain::FileRef>, StoreError>>;
    /// Every user, by name.
    fn users(&self) -> BoxFuture<'_, Result<Vec<User>, StoreError>>;
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupDetails>, StoreError>>;
    fn group(&self, id: GroupId) -> BoxFuture<'_, Result<Option<GroupDetails>, StoreError>>;
    fn category_lists(&self, id: CategoryId) -> BoxFuture<'_, Result<CategoryLists, StoreError>>;
    fn addins(&self) -> BoxFuture<'_, Result<Vec<AddIn>, StoreError>>;
    /// The rooms the user is invited to.
    fn invitations(&self, user: UserId) -> BoxFuture<'_, Result<Vec<Invitation>, StoreError>>;
    /// Every user a room's role lists reach, directly or through groups, with
    /// their effective standing (`allowed` false: the category walls them off).
    fn eligible(&self, room: RoomId) -> BoxFuture<'_, Result<Vec<(User, Access)>, StoreError>>;

    fn messages(&self, room: RoomId, page: Page)
        -> BoxFuture<'_, Result<Vec<Message>, StoreError>>;
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Vec<SearchHit>, StoreError>>;
}

/// A compliance record as stored in `mgccomp`, with its id there: ids grow
/// with every record, so `after` cursors page through them and export marks
/// name how far an export has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub id: i64,
    #[serde(flatten)]
    pub record: pchat_domain::compliance::ComplianceRecord,
}

/// Which compliance records to read: ids after `after`, posted within
/// [`since`, `until`] (ms), at most `limit`, in id order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordQuery {
    pub after: i64,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: u32,
}

/// The compliance database (`mgccomp`) as exporters see it.
pub trait ComplianceStore: Send + Sync + 'static {
    fn records(&self, query: RecordQuery) -> BoxFuture<'_, Result<Vec<StoredRecord>, StoreError>>;
    /// How far the export job has come (the last record id it exported; 0: none).
    fn export_mark(&self, job: String) -> BoxFuture<'_, Result<i64, StoreError>>;
    /// Moves the job's mark from `from` to `through`, only if it is at `from`
    /// now (two exporters can never both claim the same records). Answers
    /// the mark after the call.
    fn move_export_mark(
        &self,
        job: String,
        from: i64,
        through: i64,
    ) -> BoxFuture<'_, Result<i64, StoreError>>;
}

/// Where an uploaded file's content lives in a data directory's files
/// folder: `sha256/ab/cdef…`, named by the SHA-256 of the content. The one
/// place this layout is written down (the chat server stores there,
/// backups read and restore there). None for a name that is not a SHA-256.
pub fn blob_path(files_dir: &std::path::Path, sha256: &str) -> Option<std::path::PathBuf> {
    pchat_domain::valid_sha256(sha256).then(|| {
        files_dir
            .join("sha256")
            .join(&sha256[..2])
            .join(&sha256[2..])
    })
}

/// A fixed-bucket histogram that many threads record into without locks.
/// Exposed in Prometheus text format by the chat server.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<std::sync::atomic::AtomicU64>,
    /// Sum of observations, in millionths of the unit (fits latency in seconds).
    sum_micros: std::sync::atomic::AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| Default::default()).collect(),
            sum_micros: Default::default(),
        }
    }

    pub fn observe(&self, v: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
    }

    /// Writes the histogram in Prometheus text format.
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Latency buckets in seconds, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
/// Batch-size buckets (commands per group commit).
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// What the database reports about its own work.
pub struct StoreMetrics {
    /// Seconds from the start of a batch to its durable commit.
    pub commit_seconds: Histogram,
    /// Commands per committed batch.
    pub batch_size: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            commit_seconds: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
        }
    }
}
