//! Fan-out: follows the store's committed log and hands each new message to
//! every connection subscribed to its room.
//!
//! A message is serialised once and the same bytes go to every subscriber.
//! Each connection has a bounded outbox; when it is full the hub does not wait
//! (one slow client must not hold up a room of 16,000) but marks the
//! connection as lagged, and the connection refills what it missed from
//! history. Connections also refill on any gap in a room's sequence numbers,
//! so delivery never skips a message and never repeats one.

use crate::AppState;
use axum::extract::ws::Utf8Bytes;
use pchat_api::MessageView;
use pchat_api::ServerFrame;
use pchat_domain::{Event, Feed, Lsn, Message, MessageChange, RoomId, Seq, UserId};
use pchat_store::StoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, Notify};

/// What the hub sends a connection.
#[derive(Clone)]
pub enum Delivery {
    Message {
        room: RoomId,
        seq: Seq,
        frame: Utf8Bytes,
    },
    /// The room's privacy or roles changed: check the subscriber may still read.
    Recheck { room: RoomId },
    /// A frame outside the message sequence (an administrator's change).
    Notice { room: RoomId, frame: Utf8Bytes },
    /// A message of `room` matching one of the user's feeds: sent only if
    /// the user may read the room now.
    Feed { room: RoomId, frame: Utf8Bytes },
    /// The user's feeds changed: load them again.
    FeedsChanged,
}

/// A connection that follows its user's topic feeds.
struct FeedFollower {
    user: UserId,
    feeds: Vec<Feed>,
    outbox: Arc<Outbox>,
}

pub struct Outbox {
    pub tx: mpsc::Sender<Delivery>,
    /// Set when a delivery was dropped because the outbox was full.
    pub lagged: AtomicBool,
}

#[derive(Default)]
pub struct Hub {
    rooms: RwLock<HashMap<RoomId, HashMap<u64, Arc<Outbox>>>>,
    followers: RwLock<HashMap<u64, FeedFollower>>,
    next_id: AtomicU64,
    started: Notify,
    /// True while the hub follows the log.
    following: AtomicBool,
}

impl Hub {
    pub fn connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn add(&self, room: RoomId, conn: u64, outbox: Arc<Outbox>) {
        if let Ok(mut rooms) = self.rooms.write() {
            rooms.entry(room).or_default().insert(conn, outbox);
        }
    }

    pub fn remove(&self, room: RoomId, conn: u64) {
        if let Ok(mut rooms) = self.rooms.write() {
            if let Some(subs) = rooms.get_mut(&room) {
                subs.remove(&conn);
                if subs.is_empty() {
                    rooms.remove(&room);
                }
            }
        }
    }

    pub fn follow_feeds(&self, conn: u64, user: UserId, feeds: Vec<Feed>, outbox: Arc<Outbox>) {
        if let Ok(mut f) = self.followers.write() {
            f.insert(
                conn,
                FeedFollower {
                    user,
                    feeds,
                    outbox,
                },
            );
        }
    }

    pub fn unfollow_feeds(&self, conn: u64) {
        if let Ok(mut f) = self.followers.write() {
            f.remove(&conn);
        }
    }

    /// Hands a new message to every follower with a matching feed.
    fn deliver_to_feeds(&self, message: &Message, view: &MessageView) {
        let Ok(followers) = self.followers.read() else {
            return;
        };
        if followers.is_empty() {
            return;
        }
        let body_words: std::collections::HashSet<String> =
            pchat_domain::words(&message.body).collect();
        for f in followers.values() {
            for feed in f
                .feeds
                .iter()
                .filter(|feed| feed.matches(message, &body_words))
            {
                let frame = ServerFrame::FeedMessage {
                    feed: feed.name.clone(),
                    message: view.clone(),
                };
                let Ok(s) = serde_json::to_string(&frame) else {
                    continue;
                };
                let d = Delivery::Feed {
                    room: message.room,
                    frame: Utf8Bytes::from(s),
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = f.outbox.tx.try_send(d) {
                    // Feeds are best effort live; the feed's history lists it.
                    tracing::debug!(user = f.user, "feed delivery dropped: outbox full");
                }
            }
        }
    }

    fn feeds_changed(&self, user: UserId) {
        let Ok(followers) = self.followers.read() else {
            return;
        };
        for f in followers.values().filter(|f| f.user == user) {
            let _ = f.outbox.tx.try_send(Delivery::FeedsChanged);
        }
    }

    fn deliver(&self, room: RoomId, d: Delivery) {
        let Ok(rooms) = self.rooms.read() else { return };
        let Some(subs) = rooms.get(&room) else { return };
        for outbox in subs.values() {
            if let Err(mpsc::error::TrySendError::Full(_)) = outbox.tx.try_send(d.clone()) {
                outbox.lagged.store(true, Ordering::Release);
            }
        }
    }

    /// Every subscriber of every room checks again: a group or category
    /// changed, which may reach any room.
    fn recheck_all(&self) {
        let rooms: Vec<RoomId> = match self.rooms.read() {
            Ok(r) => r.keys().copied().collect(),
            Err(_) => return,
        };
        for room in rooms {
            self.deliver(room, Delivery::Recheck { room });
        }
    }

    /// Resolves once the hub follows the log.
    pub async fn started(&self) {
        let notified = self.started.notified();
        if self.is_following() {
            return;
        }
        notified.await;
    }

    pub fn is_following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }
}

/// Follows the log from its current end until the store's stream ends. If
/// following fails it logs, marks the server not ready, and resubscribes from
/// the last record it handled a second later: nothing is skipped (and the
/// connections fill any gap from history anyway).
pub async fn run(state: Arc<AppState>) {
    let mut last: Option<Lsn> = None;
    let mut fork: Option<String> = None;
    loop {
        match follow(&state, &mut last, &mut fork).await {
            Ok(()) => return,
            Err(e) => {
                state.hub.following.store(false, Ordering::Release);
                tracing::error!(error = %e, "hub: following the log failed; retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

async fn follow(
    state: &Arc<AppState>,
    last: &mut Option<Lsn>,
    fork: &mut Option<String>,
) -> Result<(), StoreError> {
    let id = state.store.identity().await?;
    let from = match *last {
        // The same history: go on where the hub stopped.
        Some(lsn) if fork.as_deref() == Some(id.fork_id.as_str()) => lsn,
        // Another fork (a failover): what the hub saw past its end is not
        // in it; follow from its end.
        Some(lsn) if lsn > id.last_lsn => {
            tracing::warn!(
                fork = %id.fork_id,
                from = lsn,
                to = id.last_lsn,
                "hub: the database is on another fork that ends before what the hub saw"
            );
            id.last_lsn
        }
        Some(lsn) => lsn,
        None => id.last_lsn,
    };
    *fork = Some(id.fork_id);
    let mut log = state.store.subscribe(from)?;
    *last = Some(from);
    state.hub.following.store(true, Ordering::Release);
    state.hub.started.notify_waiters();
    while let Some(rec) = log.recv().await {
        let rec = rec?;
        match &rec.event {
            Event::MessagePosted { message, .. } => {
                // On failure, `last` still names the record before this one:
                // the retry handles this message again.
                let view = state.names.message(message).await?;
                state.hub.deliver_to_feeds(message, &view);
                let frame = match serde_json::to_string(&ServerFrame::Message(view)) {
                    Ok(s) => Utf8Bytes::from(s),
                    Err(_) => continue,
                };
                state.hub.deliver(
                    message.room,
                    Delivery::Message {
                        room: message.room,
                        seq: message.seq,
                        frame,
                    },
                );
            }
            Event::UserCreated { user, .. } => state.names.insert(user.id, &user.name),
            Event::SessionEnded { token_hash } => state.sessions.forget(token_hash),
            Event::RoomUpdated { room } => state
                .hub
                .deliver(room.id, Delivery::Recheck { room: room.id }),
            Event::RoleRevoked { room, .. }
            | Event::RoomDeleted { room }
            | Event::InvitationClosed { room, .. } => {
                state.hub.deliver(*room, Delivery::Recheck { room: *room })
            }
            Event::FeedSaved { feed } => state.hub.feeds_changed(feed.user),
            Event::FeedDeleted { user, .. } => state.hub.feeds_changed(*user),
            Event::GroupMembersChanged { .. }
            | Event::GroupDeleted { .. }
            | Event::CategoryUpdated { .. }
            | Event::CategoryListChanged { .. } => state.hub.recheck_all(),
            Event::MessagesChanged { room, seqs, change } => {
                let (removed, body) = match change {
                    MessageChange::Removed => (true, None),
                    MessageChange::Replaced(t) => (false, Some(t.clone())),
                };
                notice(
                    state,
                    *room,
                    &ServerFrame::MessagesChanged {
                        room: *room,
                        seqs: seqs.clone(),
                        removed,
                        body,
                    },
                );
            }
            Event::RoomCleared { room, until } => notice(
                state,
                *room,
                &ServerFrame::RoomCleared {
                    room: *room,
                    until: *until,
                },
            ),
            _ => {}
        }
        *last = Some(rec.lsn);
    }
    Ok(())
}

fn notice(state: &AppState, room: RoomId, frame: &ServerFrame) {
    if let Ok(s) = serde_json::to_string(frame) {
        state.hub.deliver(
            room,
            Delivery::Notice {
                room,
                frame: Utf8Bytes::from(s),
            },
        );
    }
}
