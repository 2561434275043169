//! pchat's chat model, as pure and deterministic code.
//!
//! A chat server turns each API request into a [`Command`]. [`decide`] checks it
//! against the current [`State`] (read through a trait, so this crate never
//! touches a database) and answers with the [`Event`]s that record the change
//! plus an [`Outcome`] for the caller. Events carry every value their apply
//! needs (ids, times, sequence numbers), so a replica or a log replay applies
//! them without deciding again.
//!
//! [`permissions`] holds the room access rules (privacy × role × room type) in
//! one place, used by `decide` for writes and by the chat server for reads.
//! [`compliance`] maps events to the records kept in `mgccomp`.
//!
//! This crate must never depend on storage, networking or async runtimes.

pub mod command;
pub mod compliance;
pub mod decide;
pub mod error;
pub mod event;
pub mod model;
pub mod permissions;

pub use command::{
    AccessKind, Actor, CategoryChanges, Command, ConfigChanges, Envelope, GroupChanges,
    ImportedMessage, ListChange, MessageChange, MessageFilter, RoomChanges,
};
pub use decide::{decide, Outcome, State, StateError};
pub use error::DomainError;
pub use event::{Event, LogRecord};
pub use model::*;
