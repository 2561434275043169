//! The chat server: the HTTP API, WebSocket streams, fan-out, sessions and
//! metrics, in front of any [`ChatStore`].
//!
//! - `routes/` has one file per resource of the HTTP API (`/api/v1/...`).
//! - [`stream`] runs one WebSocket connection: subscriptions with catch-up
//!   from history then live delivery (no gap, no duplicate), and pipelined
//!   posts acknowledged once durable.
//! - [`hub`] follows the store's committed log and fans each new message out
//!   to the connections subscribed to its room, serialised once.
//! - [`auth`] hashes passwords, issues tokens and caches sessions.
//! - [`error`] turns every failure into `{"error": {"code", "message"}}` with
//!   a code from `pchat_api::ErrorCode`.
//!
//! The server never touches SQLite: everything goes through `ChatStore`, so
//! the same code runs against the embedded engine or a remote database.

pub mod auth;
pub mod console;
pub mod error;
pub mod hub;
pub mod json;
pub mod metrics;
mod routes;
pub mod stream;
mod views;
pub mod web;

use axum::serve::ListenerExt;
use axum::Router;
use pchat_store::ChatStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Settings of one chat server.
#[derive(Debug, Clone)]
pub struct Config {
    /// This server's name (recorded with every command it sends).
    pub server_name: String,
    /// The pool and data center this server belongs to (used by the pool and
    /// DR features; reported by `/readyz`).
    pub pool: String,
    pub data_center: String,
    /// Messages returned on join when the client gives no limit (1–500).
    pub default_history: u32,
    /// Most WebSocket connections held at once.
    pub max_connections: usize,
    /// How long SIGTERM waits for connections to finish.
    pub drain_timeout: Duration,
    /// Where uploaded files are kept (content-addressed); None: no uploads.
    pub files: Option<Arc<dyn pchat_store::blobs::Blobs>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "chat1".into(),
            pool: "pool1".into(),
            data_center: "dc1".into(),
            default_history: pchat_api::DEFAULT_HISTORY,
            max_connections: 50_000,
            drain_timeout: Duration::from_secs(10),
            files: None,
        }
    }
}

/// Everything a request handler needs, shared by all of them.
pub struct AppState {
    pub store: Arc<dyn ChatStore>,
    /// The compliance database, when this server has one to show
    /// (`/api/v1/compliance/...`, administrators only).
    pub compliance: Option<Arc<dyn pchat_store::ComplianceStore>>,
    pub config: Config,
    pub sessions: auth::SessionCache,
    pub names: views::NameCache,
    pub hub: Arc<hub::Hub>,
    pub metrics: Arc<metrics::Metrics>,
    /// This server's place in the pool: set by whoever follows the pool
    /// configuration; a server outside any topology always serves.
    pool: watch::Sender<pchat_api::PoolView>,
    /// The DR dashboard's backend, set by a server started in a topology.
    pub console: std::sync::OnceLock<Arc<dyn console::Console>>,
    shutdown: watch::Sender<bool>,
    ready: AtomicBool,
    /// Whether `serve` started the hub (the operator's in-process calls of
    /// `pchat admin --data-dir` run without one, and need none).
    hub_spawned: AtomicBool,
    /// Each WebSocket connection holds a clone; shutdown waits until all are dropped.
    connections_open: Mutex<Option<mpsc::Sender<()>>>,
    connections_closed: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

impl AppState {
    pub fn new(store: Arc<dyn ChatStore>, config: Config) -> Arc<Self> {
        Self::with_compliance(store, None, config)
    }

    pub fn with_compliance(
        store: Arc<dyn ChatStore>,
        compliance: Option<Arc<dyn pchat_store::ComplianceStore>>,
        config: Config,
    ) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        let (open, closed) = mpsc::channel(1);
        let (pool, _) = watch::channel(pchat_api::PoolView {
            pool: config.pool.clone(),
            server: config.server_name.clone(),
            data_center: config.data_center.clone(),
            serving: true,
            reason: None,
            version: 0,
            state: "normal".into(),
            active_servers: Vec::new(),
            servers: Vec::new(),
        });
        Arc::new(AppState {
            pool,
            console: std::sync::OnceLock::new(),
            names: views::NameCache::new(store.clone()),
            store,
            compliance,
            config,
            sessions: auth::SessionCache::default(),
            hub: Arc::new(hub::Hub::default()),
            metrics: Arc::new(metrics::Metrics::default()),
            shutdown,
            ready: AtomicBool::new(false),
            hub_spawned: AtomicBool::new(false),
            connections_open: Mutex::new(Some(open)),
            connections_closed: tokio::sync::Mutex::new(closed),
        })
    }

    /// Submits a command as this server (its name is the command's origin);
    /// answers once durable.
    pub fn submit(
        &self,
        command: pchat_domain::Command,
    ) -> pchat_store::BoxFuture<'static, Result<pchat_store::Committed, pchat_store::StoreError>>
    {
        self.store.submit(pchat_domain::Envelope {
            origin: self.config.server_name.clone(),
            command,
        })
    }

    /// Records for compliance that `user` read history or a file of `room`.
    /// Not waited for: compliance is not on the reader's path, and a read
    /// that fails to be recorded is logged.
    pub fn record_access(
        &self,
        user: &pchat_domain::User,
        room: pchat_domain::RoomId,
        access: pchat_domain::AccessKind,
    ) {
        if user.id == 0 {
            return; // the operator at the machine is not a chat user
        }
        let done = self.submit(pchat_domain::Command::RecordAccess {
            user: user.id,
            room,
            access,
        });
        tokio::spawn(async move {
            if let Err(e) = done.await {
                tracing::warn!(error = %e, "could not record a read for compliance");
            }
        });
    }

    /// Waits (up to `limit`) until the hub first follows the log: whether
    /// it does.
    pub async fn hub_started(&self, limit: std::time::Duration) -> bool {
        !self.hub_spawned.load(Ordering::Relaxed)
            || self.ready.load(Ordering::Relaxed)
            || tokio::time::timeout(limit, self.hub.started())
                .await
                .is_ok()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self.hub.is_following()
            && !*self.shutdown.borrow()
            && self.serving()
    }

    /// Whether this server serves clients now (no copy of the view).
    pub fn serving(&self) -> bool {
        self.pool.borrow().serving
    }

    /// Where this server stands in the pool now.
    pub fn pool(&self) -> pchat_api::PoolView {
        self.pool.borrow().clone()
    }

    /// A new pool view: an inactive server refuses new requests at once,
    /// and its WebSocket clients are told to go to an active server.
    pub fn set_pool(&self, view: pchat_api::PoolView) {
        self.pool.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    pub fn pool_watch(&self) -> watch::Receiver<pchat_api::PoolView> {
        self.pool.subscribe()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// A guard held by each WebSocket connection, or None when shutting down.
    fn connection_guard(&self) -> Option<mpsc::Sender<()>> {
        self.connections_open.lock().ok().and_then(|g| g.clone())
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    routes::router(state)
}

/// Handles one API request in-process as the operator at the machine
/// (`pchat admin --data-dir`): the same routes, checks and error codes as
/// over the network, acting as `Actor::System`. Answers (status, body).
pub async fn operator_call(
    state: &Arc<AppState>,
    method: axum::http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.unwrap_or_default()))?;
    req.extensions_mut().insert(auth::Operator);
    let resp = router(state.clone()).oneshot(req).await?;
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await?;
    Ok((status, bytes.to_vec()))
}

/// Serves the API on `listener` until `stop` resolves, then drains: stops
/// accepting, tells every WebSocket client to go away once its pending posts
/// are acknowledged, and waits (up to the drain timeout) for them to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    state.hub_spawned.store(true, Ordering::Relaxed);
    let hub_task = tokio::spawn(hub::run(state.clone()));
    // The API serves nothing until the hub subscribes (see `routes::gate`),
    // so no committed message can slip between subscribing and serving;
    // the pool's view, the dashboard, the pages and the health checks
    // answer meanwhile, even while no database serves this server.
    let ready = state.clone();
    tokio::spawn(async move {
        ready.hub.started().await;
        ready.ready.store(true, Ordering::Relaxed);
    });
    let app = router(state.clone());
    let shutdown_state = state.clone();
    // Acks and messages are small frames: without TCP_NODELAY, Nagle's
    // algorithm holds one back until the peer's delayed ACK (up to 40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down: draining connections");
            let _ = shutdown_state.shutdown.send(true);
        })
        .await?;
    if let Ok(mut g) = state.connections_open.lock() {
        g.take();
    }
    let mut closed = state.connections_closed.lock().await;
    if tokio::time::timeout(state.config.drain_timeout, closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
    hub_task.abort();
    Ok(())
}
