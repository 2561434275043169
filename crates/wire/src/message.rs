//! What crosses the wire. Every frame holds one JSON document: a
//! [`ClientMsg`] from a client, a [`ServerMsg`] from the database server.

use pchat_domain::{Envelope, Feed, Lsn, RoomId, UserId};
use pchat_store::{Fork, Page, RawRecord, RecordQuery, Recovery, SearchQuery, StoreError};
use serde::{Deserialize, Serialize};

/// The protocol version this pchat speaks. A peer speaking another is
/// refused with code `version` during the handshake.
pub const PROTOCOL_VERSION: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Db {
    Mgc,
    Mgccomp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// The answer to the server's challenge.
    Hello {
        version: u16,
        /// The client's name (a chat server's, or a tool's).
        client: String,
        /// HMAC-SHA256 of the challenge with the cluster secret (hex).
        proof: String,
    },
    Request {
        id: u64,
        req: Request,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    /// The first frame of every connection.
    Challenge {
        version: u16,
        server: String,
        nonce: String,
    },
    /// The handshake succeeded; `proof` shows the server knows the secret too.
    Welcome { server: String, proof: String },
    /// The connection is refused (then closed): `version`, `auth`, `malformed`.
    Refused { code: String, message: String },
    Response {
        id: u64,
        result: Result<serde_json::Value, StoreError>,
    },
    /// A committed log record of a subscription.
    Record { sub: u64, record: serde_json::Value },
    /// A subscription ended (the client subscribes again from its last LSN).
    Ended { sub: u64, error: StoreError },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Decide and commit; answered with `Committed` once durable. Commands
    /// of one connection are queued in the order they arrive.
    Submit {
        envelope: Envelope,
    },
    /// Log records after `after`, then live; answered with the subscription id.
    Subscribe {
        after: Lsn,
    },
    Unsubscribe {
        sub: u64,
    },
    Identity {
        db: Db,
    },
    Read {
        query: Query,
    },
    Compliance {
        query: ComplianceQuery,
    },
    /// Every hosted database: name, state, family, fork, last LSN.
    Status,
    /// A backup written by the database server to `to`, a path on its
    /// machine (a share it can reach). Answered with the backup's header.
    Backup {
        db: Db,
        to: String,
        log: bool,
        name: String,
        description: String,
    },
    /// Restore a backup file on the server's machine onto a hosted database
    /// (it is closed meanwhile and opened again). Answers a restore report.
    Restore {
        db: Db,
        from: String,
        replace: bool,
        recovery: Recovery,
    },
    /// Copy a hosted database straight to other database servers (its file
    /// read once while its writers are held off; see [`Request::ReceiveCopy`]).
    /// Answers `{database, family_id, fork_id, last_lsn, bytes, copies:
    /// [{to, report} | {to, error}]}`.
    SendCopy {
        db: Db,
        to: Vec<CopyTarget>,
    },
    /// Sent by a database server sending a copy: the connection's last
    /// request. The copy's bytes follow it on the connection (not framed:
    /// header length u32 LE, header, sections, BLAKE3), and the server
    /// answers with the restore report once the copy replaced `db`.
    ReceiveCopy {
        db: Db,
        replace: bool,
        recovery: Recovery,
    },
    /// Bring a RESTORING or STANDBY database ONLINE on a new fork, restoring
    /// nothing (`RESTORE DATABASE ... WITH RECOVERY`).
    Recover {
        db: Db,
    },
    /// Part of an uploaded file's content (base64), appended at `offset`
    /// to upload `upload` (a number the client picks); with `last` the
    /// whole is checked against `sha256` and stored (fsynced), and the
    /// answer is `{sha256}`. Files travel in parts: a frame holds 16 MiB.
    PutFile {
        upload: u64,
        sha256: String,
        offset: u64,
        data: String,
        last: bool,
    },
    /// Up to `len` bytes of a stored file from `offset`: `{size, data}`
    /// (base64), or null when there is no such file.
    GetFile {
        sha256: String,
        offset: u64,
        len: u64,
    },
    /// Take an ONLINE database out of service (SQL Server's `SET OFFLINE`).
    Offline {
        db: Db,
    },
    /// Bring an OFFLINE database back ONLINE.
    Online {
        db: Db,
    },
    /// Put an ONLINE or OFFLINE database that holds exactly a full backup's
    /// data (its family, through its last LSN) back to RESTORING in place,
    /// as if that backup had been restored over it WITH NORECOVERY.
    HoldForLogs {
        db: Db,
        family_id: String,
        last_lsn: Lsn,
    },
    /// Make this server the log-shipping primary of `db` (its backup job).
    LogshipPrimary {
        config: LogshipPrimary,
    },
    /// Make this server a log-shipping secondary of `db` (copy and restore jobs).
    LogshipSecondary {
        config: LogshipSecondary,
    },
    /// Stop log shipping `db` here (`sp_delete_log_shipping_*`).
    LogshipRemove {
        db: Db,
    },
    /// The log-shipping monitor: every job of this server.
    LogshipStatus,
    /// Run a secondary's copy and restore jobs once, now, ignoring the
    /// restore delay (what is left before bringing it online).
    LogshipRun {
        db: Db,
    },
    /// Pair `db` with a partner: this server's copy is principal or mirror.
    MirrorSet {
        db: Db,
        role: MirrorRole,
        partner: String,
        mode: MirrorMode,
    },
    /// Break the pair; both keep their data (a mirror stays RESTORING).
    MirrorRemove {
        db: Db,
    },
    /// Planned role switch, sent to the principal: only when synchronized.
    MirrorFailover {
        db: Db,
    },
    /// Forced service, sent to the mirror when the principal is lost.
    MirrorForce {
        db: Db,
    },
    /// Principal to mirror, during a planned failover: the principal is
    /// RESTORING now and held `last_lsn`; come ONLINE on the same fork.
    MirrorTakeOver {
        db: Db,
        last_lsn: Lsn,
    },
    /// Principal to mirror: starting to stream. Answers the mirror's identity.
    MirrorStart {
        db: Db,
        family_id: String,
        fork_id: String,
        forks: Vec<Fork>,
    },
    /// Principal to mirror: log records to harden; answers the last LSN the
    /// mirror has made durable.
    MirrorApply {
        db: Db,
        family_id: String,
        fork_id: String,
        forks: Vec<Fork>,
        records: Vec<RawRecord>,
        /// The principal's last committed LSN (what a forced service may lose).
        principal_lsn: Lsn,
    },
    /// What a database holds, in any state: identity, state, and each
    /// room's messages (mgc) or the records (mgccomp), to compare copies.
    Summary {
        db: Db,
    },
    /// The pool configuration this server holds: `{config, confirmed}`
    /// (config null when it holds none).
    PoolGet,
    /// A pool configuration, kept when newer than the one held (an equal
    /// version with other content is refused: two changes raced). Answers
    /// what `PoolGet` answers, after.
    PoolPut {
        config: pchat_dr::PoolConfig,
    },
}

/// Where a copy goes, and the state it leaves the database in there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyTarget {
    pub addr: String,
    pub replace: bool,
    pub recovery: Recovery,
}

/// Log shipping's backup job, on the primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogshipPrimary {
    pub db: Db,
    /// The share both sides reach (a path on this server's machine).
    pub share: String,
    /// How often the backup job runs; 0 with `continuous`.
    pub every_ms: u64,
    /// Back up as soon as the log grows (gathering for a few milliseconds).
    pub continuous: bool,
    /// Log backups older than this are deleted from the share once a newer
    /// full backup there covers them (never one a restore still needs).
    pub retention_ms: u64,
    /// The monitor alerts when no log backup ran within this.
    pub backup_alert_ms: u64,
}

/// Log shipping's copy and restore jobs, on a secondary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogshipSecondary {
    pub db: Db,
    /// The primary's name (for the monitor).
    pub primary: String,
    pub share: String,
    /// The local folder the copy job copies to.
    pub copy_to: String,
    pub copy_every_ms: u64,
    pub restore_every_ms: u64,
    /// Log backups are restored only once they are this old.
    pub delay_ms: u64,
    /// STANDBY (read-only between restores) rather than RESTORING.
    pub standby: bool,
    /// Copy and restore as soon as files appear.
    pub continuous: bool,
    /// The monitor alerts when nothing was restored within this.
    pub restore_alert_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorRole {
    Principal,
    Mirror,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorMode {
    /// A command is acknowledged once principal and mirror both hold it; while
    /// the mirror is away the principal serves alone (exposed).
    Sync,
    /// Like sync, but no writes at all while the mirror is away.
    Strict,
    /// The mirror follows as fast as it can; acknowledgements do not wait.
    Async,
}

/// The read queries of `ChatStore`, one to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    User {
        id: UserId,
    },
    Credentials {
        name: String,
    },
    SessionUser {
        token_hash: String,
    },
    UserCount,
    Users,
    Category {
        id: i64,
    },
    Categories,
    CategoryLists {
        id: i64,
    },
    Room {
        id: RoomId,
    },
    RoomRoles {
        id: RoomId,
    },
    Access {
        room: RoomId,
        user: UserId,
    },
    RoomsWithAccess {
        user: UserId,
    },
    Groups,
    Group {
        id: i64,
    },
    Addins,
    Invitations {
        user: UserId,
    },
    Eligible {
        room: RoomId,
    },
    Messages {
        room: RoomId,
        page: Page,
    },
    Search {
        query: SearchQuery,
    },
    Configuration,
    FileInRoom {
        room: RoomId,
        sha256: String,
    },
    Feeds {
        user: UserId,
    },
    FeedMessages {
        feed: Feed,
        rooms: Vec<RoomId>,
        before: Option<i64>,
        limit: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case", deny_unknown_fields)]
pub enum ComplianceQuery {
    Records {
        query: RecordQuery,
    },
    Mark {
        job: String,
    },
    MoveMark {
        job: String,
        from: i64,
        through: i64,
    },
}
