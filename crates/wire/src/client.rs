//! [`RemoteStore`]: a database server, seen through `ChatStore` and
//! `ComplianceStore`, so the chat server cannot tell it from the embedded
//! engine.
//!
//! One TCP connection carries every request, tagged with an id; answers may
//! come back in any order. Commands are written in the order `submit` is
//! called and the server queues them in arrival order, so the in-order
//! promise of `ChatStore::submit` holds across the network. When the
//! connection fails, every pending request answers `unavailable` (posts are
//! retried by clients with the same `client_msg_id`), subscriptions end
//! (their owners subscribe again from their last LSN), and the next request
//! connects again, to the first address that answers: the database and its
//! failover partner.

use crate::auth;
use crate::frame::{self, FrameError};
use crate::message::*;
use pchat_domain::*;
use pchat_store::*;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<serde_json::Value, StoreError>>>>>;
type Subs = Arc<Mutex<HashMap<u64, mpsc::Sender<Result<Arc<LogRecord>, StoreError>>>>>;

/// A live connection: where to write, and what waits for answers.
struct Link {
    out: mpsc::UnboundedSender<ClientMsg>,
    /// False once the reader has seen the connection end.
    alive: Arc<std::sync::atomic::AtomicBool>,
    pending: Pending,
    subs: Subs,
    server: String,
    addr: String,
    /// Ends the connection now (the store moved to other database servers).
    close: Arc<tokio::sync::Notify>,
    /// Set before `close` when the server's mgc turned out not to serve.
    rejected: Arc<std::sync::atomic::AtomicBool>,
}

impl Link {
    fn usable(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.out.is_closed()
    }
}

pub struct RemoteStore {
    /// The database server, then its failover partner.
    addrs: Mutex<Vec<String>>,
    secret: Vec<u8>,
    client: String,
    /// Connect only to a server whose `mgc` is ONLINE and serving (a chat
    /// server's store), not to a mirror or a secondary.
    principal_only: bool,
    link: Mutex<Option<Arc<Link>>>,
    /// Serialises reconnecting (a tokio mutex: held across the handshake).
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    metrics: Arc<StoreMetrics>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RemoteStore {
    /// A chat server's store: connects on first use to the first of `addrs`
    /// whose `mgc` serves (the principal of a mirrored pair). An answer of
    /// `unavailable` (the database went out of service) makes the next
    /// request connect again.
    pub fn new(addrs: Vec<String>, secret: Vec<u8>, client: String) -> Arc<RemoteStore> {
        Self::build(addrs, secret, client, true)
    }

    /// A tool's connection to one database server, whatever its role.
    pub fn tool(addr: String, secret: Vec<u8>, client: String) -> Arc<RemoteStore> {
        Self::build(vec![addr], secret, client, false)
    }

    fn build(
        addrs: Vec<String>,
        secret: Vec<u8>,
        client: String,
        principal_only: bool,
    ) -> Arc<RemoteStore> {
        Arc::new(RemoteStore {
            addrs: Mutex::new(addrs),
            secret,
            client,
            principal_only,
            link: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            metrics: Arc::new(StoreMetrics::default()),
        })
    }

    /// Moves the store to other database servers (the pool changed state):
    /// a connection to a server not in `addrs` ends now, failing what waits
    /// on it as `unavailable` and ending its subscriptions, and the next
    /// request connects to the new ones.
    pub fn set_addresses(&self, addrs: Vec<String>) {
        if let Ok(mut a) = self.addrs.lock() {
            if *a == addrs {
                return;
            }
            *a = addrs.clone();
        }
        let old = self
            .link
            .lock()
            .ok()
            .and_then(|mut l| l.take_if(|l| !addrs.contains(&l.addr)));
        if let Some(l) = old {
            l.alive.store(false, Ordering::SeqCst);
            l.close.notify_one();
        }
    }

    /// The addresses the store connects to.
    pub fn addresses(&self) -> Vec<String> {
        self.addrs.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The server of the current connection, if any.
    pub fn connected_to(&self) -> Option<String> {
        self.link
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|l| l.server.clone()))
    }

    fn current(&self) -> Option<Arc<Link>> {
        let l = self.link.lock().ok()?;
        l.as_ref().filter(|l| l.usable()).cloned()
    }

    async fn link(&self) -> Result<Arc<Link>, StoreError> {
        if let Some(l) = self.current() {
            return Ok(l);
        }
        let _one = self.connecting.lock().await;
        if let Some(l) = self.current() {
            return Ok(l);
        }
        let mut last = String::from("no database server address");
        let addrs = self.addrs.lock().map(|a| a.clone()).unwrap_or_default();
        for addr in &addrs {
            let linked = match connect(addr, &self.secret, &self.client).await {
                Ok(l) if self.principal_only => serves(l).await,
                other => other,
            };
            match linked {
                Ok(l) => {
                    let l = Arc::new(l);
                    if let Ok(mut slot) = self.link.lock() {
                        *slot = Some(l.clone());
                    }
                    return Ok(l);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "database server not reachable");
                    last = format!("{addr}: {e}");
                }
            }
        }
        Err(unavailable(last))
    }

    /// Sends a request now (so requests leave in call order) and answers a
    /// future of its reply.
    fn send(
        self: &Arc<Self>,
        req: Request,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, StoreError>> + Send + 'static
    {
        let this = self.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Fast path: an open link takes the request synchronously, keeping order.
        let (tx, rx) = oneshot::channel();
        let sent = match self.current() {
            Some(l) => enqueue(&l, id, req.clone(), tx).map(|_| None),
            None => Ok(Some((req, tx))),
        };
        async move {
            match sent {
                Err(e) => return Err(e),
                Ok(Some((req, tx))) => {
                    let l = this.link().await?;
                    enqueue(&l, id, req, tx)?;
                }
                Ok(None) => {}
            }
            rx.await
                .map_err(|_| unavailable("the database server connection was lost"))?
        }
    }

    async fn ask<T: DeserializeOwned>(self: &Arc<Self>, req: Request) -> Result<T, StoreError> {
        let v = self.send(req).await?;
        serde_json::from_value(v)
            .map_err(|e| StoreError::Internal(format!("unexpected answer: {e}")))
    }

    /// Any request, answered as JSON (the operations of `pchat db`).
    pub async fn call(self: &Arc<Self>, req: Request) -> Result<serde_json::Value, StoreError> {
        self.send(req).await
    }

    /// Every hosted database's state and identity (`pchat db status --server`).
    pub async fn status(self: &Arc<Self>) -> Result<serde_json::Value, StoreError> {
        self.ask(Request::Status).await
    }

    /// A backup written by the database server (`pchat db backup --server`).
    pub async fn backup(
        self: &Arc<Self>,
        db: Db,
        to: String,
        log: bool,
        name: String,
        description: String,
    ) -> Result<serde_json::Value, StoreError> {
        self.ask(Request::Backup {
            db,
            to,
            log,
            name,
            description,
        })
        .await
    }

    fn read<T: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        query: Query,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let this = self.clone();
        Box::pin(async move { this.ask(Request::Read { query }).await })
    }
}

/// Why a connection was closed by this side.
const MOVED: &str = "the pool moved to other database servers";
const NOT_SERVING: &str = "its mgc does not serve chat servers";

/// The link, if its server's `mgc` serves commands now; else it is closed
/// (its reader and writer tasks end and the socket with them).
async fn serves(l: Link) -> Result<Link, StoreError> {
    let checked = check_serves(&l).await;
    if checked.is_err() {
        l.alive.store(false, Ordering::SeqCst);
        l.rejected.store(true, Ordering::SeqCst);
        l.close.notify_one();
    }
    checked.map(|()| l)
}

async fn check_serves(l: &Link) -> Result<(), StoreError> {
    let (tx, rx) = oneshot::channel();
    enqueue(l, 0, Request::Status, tx)?;
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), rx)
        .await
        .map_err(|_| unavailable("no answer to status"))?
        .map_err(|_| unavailable("the connection was lost"))??;
    let mgc = status["databases"]
        .as_array()
        .and_then(|dbs| dbs.iter().find(|d| d["database"] == "mgc"));
    match mgc {
        Some(d) if d["serving"] == true => Ok(()),
        Some(d) => Err(unavailable(format!(
            "{}: mgc does not serve here ({}, {})",
            l.server,
            d["state"].as_str().unwrap_or("?"),
            d["role"].as_str().unwrap_or("standalone")
        ))),
        None => Err(unavailable(format!("{} hosts no mgc", l.server))),
    }
}

fn enqueue(
    l: &Link,
    id: u64,
    req: Request,
    tx: oneshot::Sender<Result<serde_json::Value, StoreError>>,
) -> Result<(), StoreError> {
    if let Ok(mut p) = l.pending.lock() {
        p.insert(id, tx);
    }
    // The reader marks the link dead, then answers everything pending: if
    // it has already done so, this request would wait forever; take it back.
    if !l.alive.load(Ordering::SeqCst) {
        if let Ok(mut p) = l.pending.lock() {
            p.remove(&id);
        }
        return Err(unavailable("the database server connection was lost"));
    }
    l.out
        .send(ClientMsg::Request { id, req })
        .map_err(|_| unavailable("the database server connection was lost"))
}

/// Connects to a database server and runs the handshake: answers the two
/// halves of the connection, ready for requests, and the server's name.
pub async fn handshake(
    addr: &str,
    secret: &[u8],
    client: &str,
) -> Result<
    (
        tokio::net::tcp::OwnedReadHalf,
        tokio::net::tcp::OwnedWriteHalf,
        String,
    ),
    StoreError,
> {
    let stream = tokio::time::timeout(std::time::Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| unavailable("connect timed out"))?
        .map_err(unavailable)?;
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let hello = async {
        let nonce = match frame::read::<ServerMsg>(&mut r)
            .await
            .map_err(unavailable)?
        {
            ServerMsg::Challenge { version, nonce, .. } if version == PROTOCOL_VERSION => nonce,
            ServerMsg::Challenge { version, .. } => {
                return Err(unavailable(format!(
                    "the database server speaks protocol {version}, this pchat {PROTOCOL_VERSION}"
                )))
            }
            other => return Err(unavailable(format!("unexpected first frame {other:?}"))),
        };
        frame::write(
            &mut w,
            &ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                client: client.to_string(),
                proof: auth::client_proof(secret, &nonce, client),
            },
        )
        .await
        .map_err(unavailable)?;
        match frame::read::<ServerMsg>(&mut r)
            .await
            .map_err(unavailable)?
        {
            ServerMsg::Welcome { server, proof } => {
                if !auth::check_server(secret, &nonce, client, &proof) {
                    return Err(unavailable(
                        "the database server does not know the cluster secret",
                    ));
                }
                Ok(server)
            }
            ServerMsg::Refused { code, message } => {
                Err(unavailable(format!("refused ({code}): {message}")))
            }
            other => Err(unavailable(format!("unexpected frame {other:?}"))),
        }
    };
    let server = tokio::time::timeout(std::time::Duration::from_secs(5), hello)
        .await
        .map_err(|_| unavailable("handshake timed out"))??;
    Ok((r, w, server))
}

/// Connects, runs the handshake, and starts the reader and writer tasks.
async fn connect(addr: &str, secret: &[u8], client: &str) -> Result<Link, StoreError> {
    let (mut r, mut w, server) = handshake(addr, secret, client).await?;
    let (out, mut queue) = mpsc::unbounded_channel::<ClientMsg>();
    let pending: Pending = Arc::default();
    let subs: Subs = Arc::default();
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let close = Arc::new(tokio::sync::Notify::new());
    let rejected = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        while let Some(msg) = queue.recv().await {
            if let Err(e) = frame::write(&mut w, &msg).await {
                tracing::debug!(error = %e, "database server connection: write failed");
                break;
            }
        }
    });
    {
        let (pending, subs, alive) = (pending.clone(), subs.clone(), alive.clone());
        let (out, close, rejected) = (out.clone(), close.clone(), rejected.clone());
        tokio::spawn(async move {
            let why = loop {
                let idle = pending.lock().map(|p| p.is_empty()).unwrap_or(true);
                if !alive.load(Ordering::SeqCst) && idle {
                    break "the database went out of service on this server".to_string();
                }
                let read = tokio::select! {
                    m = frame::read::<ServerMsg>(&mut r) => m,
                    _ = close.notified() => break if rejected.load(Ordering::SeqCst) { NOT_SERVING } else { MOVED }.to_string(),
                };
                match read {
                    Ok(ServerMsg::Response { id, result }) => {
                        if matches!(result, Err(StoreError::Unavailable(_))) {
                            // The database went out of service here (closing,
                            // restoring, no longer principal): new requests
                            // connect again and find the one that serves.
                            alive.store(false, Ordering::SeqCst);
                        }
                        let tx = pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(tx) = tx {
                            let _ = tx.send(result);
                        }
                    }
                    Ok(ServerMsg::Record { sub, record }) => {
                        let tx = subs.lock().ok().and_then(|s| s.get(&sub).cloned());
                        let Some(tx) = tx else { continue };
                        let rec = serde_json::from_value::<LogRecord>(record)
                            .map(Arc::new)
                            .map_err(|e| StoreError::Internal(format!("bad log record: {e}")));
                        // Never wait here: this task also carries the answers
                        // a subscriber may be waiting for. A subscriber that
                        // falls a whole buffer behind is ended with an error
                        // (it subscribes again from its last LSN).
                        let lagged = match tx.try_send(rec) {
                            Ok(()) => continue,
                            Err(mpsc::error::TrySendError::Full(_)) => true,
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        };
                        let _ = out.send(ClientMsg::Request {
                            id: 0,
                            req: Request::Unsubscribe { sub },
                        });
                        if let Ok(mut s) = subs.lock() {
                            s.remove(&sub);
                        }
                        if lagged {
                            tokio::spawn(async move {
                                let _ = tx
                                    .send(Err(unavailable(
                                        "the subscriber fell behind; subscribe again from the last LSN",
                                    )))
                                    .await;
                            });
                        }
                    }
                    Ok(ServerMsg::Ended { sub, error }) => {
                        let tx = subs.lock().ok().and_then(|mut s| s.remove(&sub));
                        if let Some(tx) = tx {
                            tokio::spawn(async move {
                                let _ = tx.send(Err(error)).await;
                            });
                        }
                    }
                    Ok(other) => break format!("unexpected frame {other:?}"),
                    Err(FrameError::Closed) => {
                        break "the database server closed the connection".into()
                    }
                    Err(e) => break e.to_string(),
                }
            };
            if why == NOT_SERVING {
                tracing::debug!(reason = %why, "database server connection closed");
            } else {
                tracing::warn!(reason = %why, "database server connection lost");
            }
            alive.store(false, Ordering::SeqCst);
            // Everyone waiting learns now; the next request reconnects.
            let waiting: Vec<_> = pending
                .lock()
                .map(|mut p| p.drain().collect())
                .unwrap_or_default();
            for (_, tx) in waiting {
                let _ = tx.send(Err(unavailable(&why)));
            }
            let ended: Vec<_> = subs
                .lock()
                .map(|mut s| s.drain().collect())
                .unwrap_or_default();
            for (_, tx) in ended {
                let why = why.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Err(unavailable(why))).await;
                });
            }
            drop(out);
        });
    }
    Ok(Link {
        out,
        alive,
        pending,
        subs,
        server,
        addr: addr.to_string(),
        close,
        rejected,
    })
}

/// `ChatStore` is implemented on `Arc<RemoteStore>`'s inner type through
/// this handle, which every method clones cheaply.
#[derive(Clone)]
pub struct Remote(pub Arc<RemoteStore>);

impl ChatStore for Remote {
    fn submit(&self, command: Envelope) -> BoxFuture<'static, Result<Committed, StoreError>> {
        let started = Instant::now();
        let metrics = self.0.metrics.clone();
        let answer = self.0.send(Request::Submit { envelope: command });
        Box::pin(async move {
            let v = answer.await?;
            metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            serde_json::from_value(v)
                .map_err(|e| StoreError::Internal(format!("unexpected answer: {e}")))
        })
    }

    fn subscribe(&self, after: Lsn) -> Result<Subscription, StoreError> {
        let (tx, rx) = mpsc::channel(1024);
        let this = self.0.clone();
        tokio::spawn(async move {
            let link = match this.link().await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            // Register before asking, so no record can arrive unrouted: the
            // id is the request's, which the server uses for the subscription.
            let id = this.next_id.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut s) = link.subs.lock() {
                s.insert(id, tx.clone());
            }
            if !link.alive.load(Ordering::SeqCst) {
                // The reader already ended every subscription it knew.
                if let Ok(mut s) = link.subs.lock() {
                    s.remove(&id);
                }
                let _ = tx
                    .send(Err(unavailable("the database server connection was lost")))
                    .await;
                return;
            }
            let (otx, orx) = oneshot::channel();
            if let Err(e) = enqueue(&link, id, Request::Subscribe { after }, otx) {
                let _ = tx.send(Err(e)).await;
                return;
            }
            match orx.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if let Ok(mut s) = link.subs.lock() {
                        s.remove(&id);
                    }
                    let _ = tx.send(Err(e)).await;
                }
                Err(_) => {}
            }
        });
        Ok(rx)
    }

    fn identity(&self) -> BoxFuture<'_, Result<Identity, StoreError>> {
        let this = self.0.clone();
        Box::pin(async move { this.ask(Request::Identity { db: Db::Mgc }).await })
    }

    fn metrics(&self) -> Arc<StoreMetrics> {
        self.0.metrics.clone()
    }

    fn user(&self, id: UserId) -> BoxFuture<'_, Result<Option<User>, StoreError>> {
        self.0.read(Query::User { id })
    }
    fn credentials(
        &self,
        name: String,
    ) -> BoxFuture<'_, Result<Option<(User, String)>, StoreError>> {
        self.0.read(Query::Credentials { name })
    }
    fn session_user(&self, token_hash: String) -> BoxFuture<'_, Result<Option<User>, StoreError>> {
        self.0.read(Query::SessionUser { token_hash })
    }
    fn user_count(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.0.read(Query::UserCount)
    }
    fn category(&self, id: CategoryId) -> BoxFuture<'_, Result<Option<Category>, StoreError>> {
        self.0.read(Query::Category { id })
    }
    fn categories(&self) -> BoxFuture<'_, Result<Vec<Category>, StoreError>> {
        self.0.read(Query::Categories)
    }
    fn room(&self, id: RoomId) -> BoxFuture<'_, Result<Option<RoomInfo>, StoreError>> {
        self.0.read(Query::Room { id })
    }
    fn room_roles(&self, id: RoomId) -> BoxFuture<'_, Result<RoomRoles, StoreError>> {
        self.0.read(Query::RoomRoles { id })
    }
    fn access(&self, room: RoomId, user: UserId) -> BoxFuture<'_, Result<Access, StoreError>> {
        self.0.read(Query::Access { room, user })
    }
    fn rooms_with_access(
        &self,
        user: UserId,
    ) -> BoxFuture<'_, Result<Vec<(RoomInfo, Access)>, StoreError>> {
        self.0.read(Query::RoomsWithAccess { user })
    }
    fn configuration(&self) -> BoxFuture<'_, Result<PoolConfig, StoreError>> {
        self.0.read(Query::Configuration)
    }
    fn file_in_room(
        &self,
        room: RoomId,
        sha256: String,
    ) -> BoxFuture<'_, Result<Option<FileRef>, StoreError>> {
        self.0.read(Query::FileInRoom { room, sha256 })
    }
    fn feeds(&self, user: UserId) -> BoxFuture<'_, Result<Vec<Feed>, StoreError>> {
        self.0.read(Query::Feeds { user })
    }
    fn feed_messages(
        &self,
        feed: Feed,
        rooms: Vec<RoomId>,
        before: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<SearchHit>, StoreError>> {
        self.0.read(Query::FeedMessages {
            feed,
            rooms,
            before,
            limit,
        })
    }
    fn users(&self) -> BoxFuture<'_, Result<Vec<User>, StoreError>> {
        self.0.read(Query::Users)
    }
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupDetails>, StoreError>> {
        self.0.read(Query::Groups)
    }
    fn group(&self, id: GroupId) -> BoxFuture<'_, Result<Option<GroupDetails>, StoreError>> {
        self.0.read(Query::Group { id })
    }
    fn category_lists(&self, id: CategoryId) -> BoxFuture<'_, Result<CategoryLists, StoreError>> {
        self.0.read(Query::CategoryLists { id })
    }
    fn addins(&self) -> BoxFuture<'_, Result<Vec<AddIn>, StoreError>> {
        self.0.read(Query::Addins)
    }
    fn invitations(&self, user: UserId) -> BoxFuture<'_, Result<Vec<Invitation>, StoreError>> {
        self.0.read(Query::Invitations { user })
    }
    fn eligible(&self, room: RoomId) -> BoxFuture<'_, Result<Vec<(User, Access)>, StoreError>> {
        self.0.read(Query::Eligible { room })
    }
    fn messages(
        &self,
        room: RoomId,
        page: Page,
    ) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        self.0.read(Query::Messages { room, page })
    }
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Vec<SearchHit>, StoreError>> {
        self.0.read(Query::Search { query })
    }
}

impl ComplianceStore for Remote {
    fn records(&self, query: RecordQuery) -> BoxFuture<'_, Result<Vec<StoredRecord>, StoreError>> {
        let this = self.0.clone();
        Box::pin(async move {
            this.ask(Request::Compliance {
                query: ComplianceQuery::Records { query },
            })
            .await
        })
    }
    fn export_mark(&self, job: String) -> BoxFuture<'_, Result<i64, StoreError>> {
        let this = self.0.clone();
        Box::pin(async move {
            this.ask(Request::Compliance {
                query: ComplianceQuery::Mark { job },
            })
            .await
        })
    }
    fn move_export_mark(
        &self,
        job: String,
        from: i64,
        through: i64,
    ) -> BoxFuture<'_, Result<i64, StoreError>> {
        let this = self.0.clone();
        Box::pin(async move {
            this.ask(Request::Compliance {
                query: ComplianceQuery::MoveMark { job, from, through },
            })
            .await
        })
    }
}

/// Bytes of a file in one request (base64 makes a frame a third larger).
pub const FILE_PART: usize = 4 << 20;

impl pchat_store::blobs::Blobs for Remote {
    fn put(&self, bytes: Vec<u8>) -> BoxFuture<'static, Result<String, StoreError>> {
        let this = self.0.clone();
        Box::pin(async move {
            use base64::Engine;
            let sha256 = pchat_store::blobs::sha256_hex(&bytes);
            let mut nonce = [0u8; 8];
            let _ = getrandom::fill(&mut nonce);
            let upload = u64::from_le_bytes(nonce);
            let parts: Vec<&[u8]> = if bytes.is_empty() {
                vec![&[]]
            } else {
                bytes.chunks(FILE_PART).collect()
            };
            let n = parts.len();
            for (i, part) in parts.into_iter().enumerate() {
                this.send(Request::PutFile {
                    upload,
                    sha256: sha256.clone(),
                    offset: (i * FILE_PART) as u64,
                    data: base64::engine::general_purpose::STANDARD.encode(part),
                    last: i + 1 == n,
                })
                .await?;
            }
            Ok(sha256)
        })
    }

    fn get(&self, sha256: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        let this = self.0.clone();
        Box::pin(async move {
            use base64::Engine;
            let mut out = Vec::new();
            loop {
                let v = this
                    .send(Request::GetFile {
                        sha256: sha256.clone(),
                        offset: out.len() as u64,
                        len: FILE_PART as u64,
                    })
                    .await?;
                if v.is_null() {
                    return Ok(None);
                }
                let size = v["size"].as_u64().unwrap_or(0);
                let data = base64::engine::general_purpose::STANDARD
                    .decode(v["data"].as_str().unwrap_or(""))
                    .map_err(|e| StoreError::Internal(format!("a file part: {e}")))?;
                if data.is_empty() && (out.len() as u64) < size {
                    return Err(StoreError::Internal("a file part came back empty".into()));
                }
                out.extend_from_slice(&data);
                if out.len() as u64 >= size {
                    return Ok(Some(out));
                }
            }
        })
    }
}
