//! The embedded database engine behind `mgc` and `mgccomp`.
//!
//! Each database is one SQLite file (WAL, `synchronous=FULL`) holding its
//! **transaction log** (every event with a gap-free LSN) and the **tables**
//! built from those events, written in the same transaction together with the
//! last LSN, so a crash at any instant leaves log and tables consistent.
//!
//! - [`Machine`] says what a database is: its tables, how a command is decided
//!   and how an event is applied. [`ChatMachine`] is `mgc`, [`ComplianceMachine`]
//!   is `mgccomp`.
//! - [`Engine`] runs one machine: a single writer thread takes commands from a
//!   queue and commits them in batches (group commit: many commands, one
//!   transaction, one fsync) and answers each only once its batch is durable;
//!   reads use a pool of read-only connections and never wait for the writer;
//!   committed records are published to subscribers.
//! - [`ChatEngine`] implements `pchat_store::ChatStore` for the chat server.
//! - [`compliance::run_recorder`] copies every `mgc` event into `mgccomp`,
//!   with its cursor on the `mgc` log kept in `mgccomp` itself.
//!
//! This crate knows nothing of HTTP, WebSockets or the chat server.

pub mod backup;
mod chat;
pub mod compliance;
pub mod copy;
mod database;
mod machine;
mod reads;
pub mod replay;

pub use chat::{ChatEngine, ChatMachine};
pub use compliance::RecordBatch;
pub use compliance::{ComplianceEngine, ComplianceMachine};
pub use database::{open_connection, read_identity, read_state, DbState};
pub use machine::{Engine, Machine};

/// File names of the two databases inside a data directory.
pub const MGC_FILE: &str = "mgc.db";
pub const MGCCOMP_FILE: &str = "mgccomp.db";
/// The directory of uploaded files, next to the databases.
pub const FILES_DIR: &str = "files";

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> pchat_store::StoreError {
    pchat_store::StoreError::Internal(e.to_string())
}
