//! What crosses the wire. Every frame holds one JSON document: a
//! [`ClientMsg`] from a client, a [`ServerMsg`] from the database server.

use pchat_domain::{Envelope, Feed, Lsn, RoomId, UserId};
use pchat_store::{Page, RecordQuery, SearchQuery, StoreError};
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
