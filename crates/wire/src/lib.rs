//! The protocol between chat servers and database servers (and, later,
//! between database servers), and its client.
//!
//! - [`frame`]: 4-byte big-endian length + one JSON document; limits and
//!   clear errors for anything malformed.
//! - [`message`]: the messages, versioned by [`message::PROTOCOL_VERSION`].
//! - [`auth`]: the challenge-response handshake on a shared cluster secret.
//! - [`client`]: `RemoteStore`, a database server seen as a `ChatStore`.
//!
//! The protocol is documented in `docs/PROTOCOL.md`. This crate knows
//! nothing of SQLite (the server side lives in `pchat-dbserver`).

pub mod auth;
pub mod client;
pub mod frame;
pub mod message;

pub use client::{Remote, RemoteStore};
pub use message::PROTOCOL_VERSION;
