//! One WebSocket connection on `/api/v1/stream`.
//!
//! Subscribing to a room registers the connection with the hub *first* and
//! only then reads history after the client's cursor: a message committed
//! before the registration is in that read, one committed after it arrives
//! live, and one in both is skipped by its sequence number. Live messages
//! that arrive ahead of the cursor (a gap) are filled from history first.
//!
//! Posts are queued to the store in the order they arrive and acknowledged in
//! that order once durable; up to [`MAX_IN_FLIGHT`] may be pending.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::hub::{Delivery, Outbox};
use crate::views;
use crate::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use pchat_api::{ClientFrame, ErrorCode, ServerFrame};
use pchat_domain::permissions;
use pchat_domain::{Command, Outcome, RoomId, Seq, User};
use pchat_store::{Committed, Page, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Posts a connection may have waiting for their acknowledgement.
pub const MAX_IN_FLIGHT: usize = 256;
/// Deliveries buffered per connection before it counts as lagged.
const OUTBOX_CAPACITY: usize = 512;
/// History read per round trip during catch-up.
const CATCH_UP_PAGE: u32 = 500;

pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Some(guard) = state.connection_guard() else {
        return Err(ApiError::new(
            ErrorCode::ShuttingDown,
            "the server is shutting down",
        ));
    };
    if state.metrics.connections.load(Ordering::Relaxed) as usize >= state.config.max_connections {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "too many connections",
        ));
    }
    // tungstenite's default 128 KiB read buffer is zero-filled on reads and
    // kept per connection: 4 KiB costs far less CPU, and far less memory for
    // 20,000 mostly idle connections; larger frames still arrive.
    Ok(ws
        .max_message_size(256 * 1024)
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            state.metrics.connections.fetch_add(1, Ordering::Relaxed);
            state
                .metrics
                .connections_total
                .fetch_add(1, Ordering::Relaxed);
            Connection::new(state.clone(), caller.user)
                .run(socket)
                .await;
            state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            drop(guard);
        }))
}

type Pending = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (String, RoomId, Instant, Result<Committed, StoreError>)>
            + Send,
    >,
>;

struct Connection {
    state: Arc<AppState>,
    user: User,
    id: u64,
    outbox: Arc<Outbox>,
    inbox: mpsc::Receiver<Delivery>,
    /// Room → last `seq` sent to the client.
    cursors: HashMap<RoomId, Seq>,
    /// Frames written but not yet flushed.
    unflushed: usize,
}

enum Flow {
    Continue,
    Close,
}

impl Connection {
    fn new(state: Arc<AppState>, user: User) -> Self {
        let (tx, inbox) = mpsc::channel(OUTBOX_CAPACITY);
        let id = state.hub.connection_id();
        Connection {
            state,
            user,
            id,
            outbox: Arc::new(Outbox {
                tx,
                lagged: Default::default(),
            }),
            inbox,
            cursors: HashMap::new(),
            unflushed: 0,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut incoming) = socket.split();
        let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
        let mut shutdown = self.state.shutdown_signal();
        let mut closing = *shutdown.borrow();
        let mut pool = self.state.pool_watch();
        let mut reason = String::from("server shutting down");
        loop {
            if closing && pending.is_empty() {
                let bye = ServerFrame::GoingAway {
                    reason: reason.clone(),
                    active_servers: self.state.pool().active_servers,
                };
                let _ = self.send(&mut sink, &bye).await;
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: 1001,
                        reason: Utf8Bytes::from_static("shutting down"),
                    })))
                    .await;
                break;
            }
            let flow = tokio::select! {
                biased;
                _ = shutdown.changed(), if !closing => { closing = true; Ok(Flow::Continue) }
                // No longer active: the pending posts get their answers (the
                // database server fences them if they are too late), then the
                // client is sent to an active server.
                _ = pool.changed(), if !closing => {
                    let view = pool.borrow_and_update().clone();
                    if !view.serving {
                        closing = true;
                        reason = view.reason.unwrap_or_else(|| "server inactive".into());
                    }
                    Ok(Flow::Continue)
                }
                Some((cmid, room, started, result)) = pending.next(), if !pending.is_empty() => {
                    self.ack(&mut sink, cmid, room, started, result).await
                }
                Some(d) = self.inbox.recv() => self.on_delivery(&mut sink, d).await,
                msg = incoming.next(), if !closing && pending.len() < MAX_IN_FLIGHT => match msg {
                    Some(Ok(Message::Text(t))) => self.on_frame(&mut sink, &mut pending, t.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        self.refuse(&mut sink, None, None, ErrorCode::InvalidRequest, "frames are JSON text").await
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Ok(Flow::Close),
                    Some(Ok(_)) => Ok(Flow::Continue),
                },
            };
            let flow = match flow {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended");
                    Flow::Close
                }
            };
            if self.unflushed > 0 && self.inbox.is_empty() {
                if sink.flush().await.is_err() {
                    break;
                }
                self.unflushed = 0;
            }
            if matches!(flow, Flow::Close) {
                break;
            }
        }
        for room in self.cursors.keys() {
            self.state.hub.remove(*room, self.id);
        }
        self.state.hub.unfollow_feeds(self.id);
    }

    /// (Re)loads the user's feeds and follows them.
    async fn follow_feeds<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
    ) -> Result<(), axum::Error> {
        let feeds = self
            .state
            .store
            .feeds(self.user.id)
            .await
            .map_err(axum::Error::new)?;
        let names = feeds.iter().map(|f| f.name.clone()).collect();
        self.state
            .hub
            .follow_feeds(self.id, self.user.id, feeds, self.outbox.clone());
        self.send(sink, &ServerFrame::FeedsFollowed { feeds: names })
            .await
    }

    async fn feed<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        text: Utf8Bytes,
    ) -> Result<(), axum::Error> {
        sink.feed(Message::Text(text)).await?;
        self.unflushed += 1;
        if self.unflushed >= 64 {
            sink.flush().await?;
            self.unflushed = 0;
        }
        Ok(())
    }

    async fn send<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        frame: &ServerFrame,
    ) -> Result<(), axum::Error> {
        let text = serde_json::to_string(frame).map_err(axum::Error::new)?;
        self.feed(sink, Utf8Bytes::from(text)).await
    }

    async fn refuse<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        client_msg_id: Option<String>,
        room: Option<RoomId>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<Flow, axum::Error> {
        let f = ServerFrame::Error {
            client_msg_id,
            room,
            code: code.code().into(),
            message: message.into(),
        };
        self.send(sink, &f).await?;
        Ok(Flow::Continue)
    }

    async fn on_frame<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        pending: &mut FuturesOrdered<Pending>,
        text: &str,
    ) -> Result<Flow, axum::Error> {
        let frame: ClientFrame = match crate::json::parse(text.as_bytes()) {
            Ok(f) => f,
            Err(e) => return self.refuse(sink, None, None, e.code, e.message).await,
        };
        match frame {
            ClientFrame::FollowFeeds => {
                self.follow_feeds(sink).await?;
                Ok(Flow::Continue)
            }
            ClientFrame::Ping => {
                self.send(sink, &ServerFrame::Pong).await?;
                Ok(Flow::Continue)
            }
            ClientFrame::Subscribe { rooms } => self.subscribe(sink, rooms).await,
            ClientFrame::Unsubscribe { rooms } => {
                for room in rooms {
                    if self.cursors.remove(&room).is_some() {
                        self.state.hub.remove(room, self.id);
                    }
                }
                Ok(Flow::Continue)
            }
            ClientFrame::Post {
                room,
                body,
                client_msg_id,
                alert,
            } => {
                if body.len() > pchat_domain::MAX_BODY_BYTES {
                    self.state
                        .metrics
                        .posts_refused
                        .fetch_add(1, Ordering::Relaxed);
                    return self
                        .refuse(
                            sink,
                            Some(client_msg_id),
                            Some(room),
                            ErrorCode::MessageTooLarge,
                            "message bodies are at most 16 KiB",
                        )
                        .await;
                }
                let started = Instant::now();
                let command = Command::PostMessage {
                    actor: self.user.id,
                    room,
                    body,
                    client_msg_id: client_msg_id.clone(),
                    alert,
                };
                // Queued now, in arrival order; acknowledged in the same order.
                let answer = self.state.submit(command);
                pending.push_back(Box::pin(async move {
                    (client_msg_id, room, started, answer.await)
                }));
                Ok(Flow::Continue)
            }
        }
    }

    async fn ack<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        client_msg_id: String,
        room: RoomId,
        started: Instant,
        result: Result<Committed, StoreError>,
    ) -> Result<Flow, axum::Error> {
        match result {
            Ok(Committed {
                outcome: Outcome::Message { message, created },
                ..
            }) => {
                if created {
                    self.state.metrics.posts.fetch_add(1, Ordering::Relaxed);
                    self.state
                        .metrics
                        .ack_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                let f = ServerFrame::Ack {
                    client_msg_id,
                    room,
                    seq: message.seq,
                    created,
                };
                self.send(sink, &f).await?;
                Ok(Flow::Continue)
            }
            Ok(_) => {
                self.refuse(
                    sink,
                    Some(client_msg_id),
                    Some(room),
                    ErrorCode::Internal,
                    "unexpected outcome",
                )
                .await
            }
            Err(e) => {
                self.state
                    .metrics
                    .posts_refused
                    .fetch_add(1, Ordering::Relaxed);
                let e = ApiError::from(e);
                self.refuse(sink, Some(client_msg_id), Some(room), e.code, e.message)
                    .await
            }
        }
    }

    /// Whether the user may read `room` now (and the room exists for them).
    async fn readable(&self, room: RoomId) -> Result<Result<Seq, ApiError>, StoreError> {
        let Some(info) = self.state.store.room(room).await? else {
            return Ok(Err(ApiError::new(
                ErrorCode::RoomNotFound,
                "room not found",
            )));
        };
        let access = self.state.store.access(room, self.user.id).await?;
        let c = views::caller(&self.user, access);
        if !permissions::can_find(&info, c) {
            return Ok(Err(ApiError::new(
                ErrorCode::RoomNotFound,
                "room not found",
            )));
        }
        if !permissions::can_read(&info, c) {
            return Ok(Err(ApiError::new(
                ErrorCode::Forbidden,
                "only members read this room",
            )));
        }
        Ok(Ok(info.last_seq))
    }

    async fn subscribe<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        rooms: BTreeMap<String, Seq>,
    ) -> Result<Flow, axum::Error> {
        let mut subscribed = BTreeMap::new();
        for (key, cursor) in rooms {
            let Ok(room) = key.parse::<RoomId>() else {
                self.refuse(
                    sink,
                    None,
                    None,
                    ErrorCode::InvalidRequest,
                    format!("'{key}' is not a room id"),
                )
                .await?;
                continue;
            };
            let last = match self.readable(room).await.map_err(axum::Error::new)? {
                Ok(last) => last,
                Err(e) => {
                    self.refuse(sink, None, Some(room), e.code, e.message)
                        .await?;
                    continue;
                }
            };
            if cursor < last {
                // Catching up is reading history.
                self.state
                    .record_access(&self.user, room, pchat_domain::AccessKind::History);
            }
            // The client saw messages this history does not hold: the pool
            // failed over to a copy that had not received them (they were
            // not shipped). Say so, and deliver from where it now ends, or
            // the messages that take those seqs would never reach it.
            let cursor = if cursor > last {
                let fork_id = self
                    .state
                    .store
                    .identity()
                    .await
                    .map(|i| i.fork_id)
                    .unwrap_or_default();
                self.send(
                    sink,
                    &ServerFrame::HistoryRewound {
                        room,
                        your_seq: cursor,
                        last_seq: last,
                        fork_id,
                    },
                )
                .await?;
                last
            } else {
                cursor
            };
            // Register first, then read history: see the module docs.
            let already = self.cursors.insert(room, cursor.max(0)).is_some();
            if !already {
                self.state.hub.add(room, self.id, self.outbox.clone());
            }
            self.fill(sink, room, Seq::MAX).await?;
            subscribed.insert(key, self.cursors.get(&room).copied().unwrap_or(0));
        }
        self.send(sink, &ServerFrame::Subscribed { rooms: subscribed })
            .await?;
        Ok(Flow::Continue)
    }

    /// Sends history of `room` after the cursor, up to and including `upto`.
    async fn fill<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        room: RoomId,
        upto: Seq,
    ) -> Result<(), axum::Error> {
        loop {
            let Some(&cursor) = self.cursors.get(&room) else {
                return Ok(());
            };
            if cursor >= upto {
                return Ok(());
            }
            let page = self
                .state
                .store
                .messages(
                    room,
                    Page::After {
                        seq: cursor,
                        limit: CATCH_UP_PAGE,
                    },
                )
                .await
                .map_err(axum::Error::new)?;
            let full = page.len() as u32 == CATCH_UP_PAGE;
            for m in page {
                if m.seq > upto {
                    return Ok(());
                }
                let view = self
                    .state
                    .names
                    .message(&m)
                    .await
                    .map_err(axum::Error::new)?;
                self.send(sink, &ServerFrame::Message(view)).await?;
                self.state
                    .metrics
                    .deliveries
                    .fetch_add(1, Ordering::Relaxed);
                self.cursors.insert(room, m.seq);
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn on_delivery<S: SinkExt<Message, Error = axum::Error> + Unpin>(
        &mut self,
        sink: &mut S,
        d: Delivery,
    ) -> Result<Flow, axum::Error> {
        match d {
            Delivery::Message { room, seq, frame } => {
                let Some(&cursor) = self.cursors.get(&room) else {
                    return Ok(Flow::Continue);
                };
                if seq > cursor {
                    if seq > cursor + 1 {
                        self.fill(sink, room, seq - 1).await?;
                    }
                    self.feed(sink, frame).await?;
                    self.state
                        .metrics
                        .deliveries
                        .fetch_add(1, Ordering::Relaxed);
                    self.cursors.insert(room, seq);
                }
            }
            Delivery::Feed { room, frame } => {
                if let Ok(Ok(_)) = self.readable(room).await {
                    self.feed(sink, frame).await?;
                }
            }
            Delivery::FeedsChanged => {
                self.follow_feeds(sink).await?;
            }
            Delivery::Notice { room, frame } => {
                if self.cursors.contains_key(&room) {
                    self.feed(sink, frame).await?;
                }
            }
            Delivery::Recheck { room } => {
                if self.cursors.contains_key(&room) {
                    if let Err(e) = self.readable(room).await.map_err(axum::Error::new)? {
                        self.cursors.remove(&room);
                        self.state.hub.remove(room, self.id);
                        self.send(
                            sink,
                            &ServerFrame::Unsubscribed {
                                room,
                                reason: e.message,
                            },
                        )
                        .await?;
                    }
                }
            }
        }
        if self.outbox.lagged.swap(false, Ordering::AcqRel) {
            // Deliveries were dropped: refill every room from history.
            self.state
                .metrics
                .subscriber_refills
                .fetch_add(1, Ordering::Relaxed);
            let rooms: Vec<RoomId> = self.cursors.keys().copied().collect();
            for room in rooms {
                self.fill(sink, room, Seq::MAX).await?;
            }
        }
        Ok(Flow::Continue)
    }
}
