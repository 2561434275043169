//! The database server (`pchat db serve`): a data directory's `mgc` and
//! `mgccomp`, with the compliance recorder, served over the `pchat-wire`
//! protocol to chat servers and tools that hold the cluster secret.
//!
//! Each connection: challenge, proof, then requests answered as they
//! complete (any order, by id). Commands are handed to the engine in the
//! order they arrive, so a client's commands commit in the order it sent
//! them. A subscription streams committed log records (its id is the id of
//! its Subscribe request) with backpressure: a slow reader slows only its
//! own connection.
//!
//! Besides serving, a database server restores its databases in place
//! (`hosted`), ships their log to a secondary (`logship`) and mirrors them
//! to a partner (`mirror`), and keeps a copy of the pool configuration that
//! fences chat servers (`pool`).

mod hosted;
mod journal;
mod logship;
mod metrics;
mod mirror;
mod pool;

#[cfg(test)]
mod test_support;

use hosted::{db_name, Hosted};
use logship::Logship;
use mirror::Mirroring;
use pchat_engine::backup::{self, RestoreOptions};
use pchat_engine::copy as backup_copy;
use pchat_engine::DbState;
use pchat_store::blobs::Blobs;
use pchat_store::{ChatStore, ComplianceStore, Fork, StoreError};
use pchat_wire::frame::{self, FrameError};
use pchat_wire::message::*;
use pchat_wire::{auth, PROTOCOL_VERSION};
use pool::Pool;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub secret: Vec<u8>,
    /// The pool's topology, when this server is one of its database servers
    /// (`name` is its name there).
    pub topology: Option<pchat_dr::Topology>,
}

/// What one server runs: its databases and their roles.
pub(crate) struct Node {
    hosted: Arc<Hosted>,
    logship: Arc<Logship>,
    mirroring: Arc<Mirroring>,
    pool: Arc<Pool>,
    config: Config,
    /// Each database's fork history with the fork it ends with. A fork's
    /// ancestry never changes, so `status` (which dashboards poll) opens
    /// the database file only when the database moved to another fork.
    forks: std::sync::Mutex<Vec<(Db, String, Vec<Fork>)>>,
    /// The copies being sent from here, by database: their progress, shown
    /// by `status` (the runbooks draw it as a progress bar).
    copies: std::sync::Mutex<Vec<(Db, Arc<CopyProgress>)>>,
}

/// How far a copy being sent has come, in bytes of its stream.
#[derive(Default)]
struct CopyProgress {
    total: AtomicU64,
    sent: AtomicU64,
}

/// Ends a copy's progress entry when the copy ends, however it ends.
struct CopyShown<'a> {
    node: &'a Node,
    progress: Arc<CopyProgress>,
}

impl Drop for CopyShown<'_> {
    fn drop(&mut self) {
        if let Ok(mut copies) = self.node.copies.lock() {
            copies.retain(|(_, p)| !Arc::ptr_eq(p, &self.progress));
        }
    }
}

impl Node {
    /// Shows a copy of `db` in `status` until the answer is dropped.
    fn copy_shown(&self, db: Db) -> CopyShown<'_> {
        let progress = Arc::new(CopyProgress::default());
        if let Ok(mut copies) = self.copies.lock() {
            copies.push((db, progress.clone()));
        }
        CopyShown {
            node: self,
            progress,
        }
    }

    /// `{sent, total}` of the copy of `db` being sent from here, if any.
    fn copy_progress(&self, db: Db) -> Option<serde_json::Value> {
        let copies = self.copies.lock().ok()?;
        let (_, p) = copies.iter().find(|(d, _)| *d == db)?;
        Some(serde_json::json!({
            "sent": p.sent.load(Ordering::Relaxed),
            "total": p.total.load(Ordering::Relaxed),
        }))
    }

    /// The fork history of `db`, whose identity names `fork_id`.
    fn fork_history(&self, db: Db, fork_id: &str) -> Result<Vec<Fork>, StoreError> {
        let cached = self.forks.lock().ok().and_then(|c| {
            c.iter()
                .find(|(d, f, _)| *d == db && f == fork_id)
                .map(|(_, _, h)| h.clone())
        });
        if let Some(history) = cached {
            return Ok(history);
        }
        let history = backup::fork_history(&self.hosted.file(db))
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        // Kept only when it ends with that fork (the file may have moved on
        // since the identity was read).
        if history.last().is_some_and(|f| f.fork_id == fork_id) {
            if let Ok(mut c) = self.forks.lock() {
                c.retain(|(d, _, _)| *d != db);
                c.push((db, fork_id.to_string(), history.clone()));
            }
        }
        Ok(history)
    }
}

/// Writes `bytes` to `path` through a temporary file, fsynced and renamed.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    backup::sync_parent(path)
}

/// Serves until `stop` changes to true; then stops the recorder and closes
/// the databases (everything acknowledged is already durable).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    serve_with_metrics(listener, None, config, stop).await
}

/// `serve`, with `/metrics` and `/healthz` on a second listener.
pub async fn serve_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let hosted = Hosted::open(&config.data_dir)?;
    let place = config.topology.as_ref().map(|t| (t, config.name.as_str()));
    let pool = Pool::open(&config.data_dir, place)?;
    pool.clone()
        .gossip(config.secret.clone(), config.name.clone());
    let mirroring = Mirroring::start(hosted.clone(), config.secret.clone(), config.name.clone());
    let node = Arc::new(Node {
        pool,
        logship: Logship::start(hosted.clone(), mirroring.clone()),
        mirroring,
        hosted,
        config,
        forks: Default::default(),
        copies: Default::default(),
    });
    if let Some(l) = metrics_listener {
        tokio::spawn(metrics::serve(l, node.clone(), stop.clone()));
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors, say: the error repeats
                        // at once, so wait instead of spinning on it.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (node, stop) = (node.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, node, stop).await {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    node.hosted.close().await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    node: Arc<Node>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let config = &node.config;
    let nonce = auth::nonce();
    frame::write(
        &mut w,
        &ServerMsg::Challenge {
            version: PROTOCOL_VERSION,
            server: config.name.clone(),
            nonce: nonce.clone(),
        },
    )
    .await?;
    let refuse = |code: &str, message: String| ServerMsg::Refused {
        code: code.into(),
        message,
    };
    let hello = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        frame::read::<ClientMsg>(&mut r),
    )
    .await;
    let client = match hello {
        Ok(Ok(ClientMsg::Hello {
            version,
            client,
            proof,
        })) => {
            if version != PROTOCOL_VERSION {
                let m = format!(
                    "this database server speaks protocol {PROTOCOL_VERSION}, not {version}"
                );
                frame::write(&mut w, &refuse("version", m)).await?;
                return Ok(());
            }
            if !auth::check_client(&config.secret, &nonce, &client, &proof) {
                frame::write(
                    &mut w,
                    &refuse("auth", "the proof does not match the cluster secret".into()),
                )
                .await?;
                return Ok(());
            }
            client
        }
        Ok(Ok(other)) => {
            frame::write(
                &mut w,
                &refuse("malformed", format!("expected hello, got {other:?}")),
            )
            .await?;
            return Ok(());
        }
        Ok(Err(e)) => {
            let _ = frame::write(&mut w, &refuse("malformed", e.to_string())).await;
            return Err(e);
        }
        Err(_) => return Ok(()),
    };
    frame::write(
        &mut w,
        &ServerMsg::Welcome {
            server: config.name.clone(),
            proof: auth::server_proof(&config.secret, &nonce, &client),
        },
    )
    .await?;
    tracing::debug!(%client, "client connected");

    // One writer; everything else sends it messages. Bounded, so a client
    // that does not read slows its own subscriptions, nothing else.
    let (out, mut queue) = mpsc::channel::<ServerMsg>(4096);
    let writer = tokio::spawn(async move {
        while let Some(msg) = queue.recv().await {
            if frame::write(&mut w, &msg).await.is_err() {
                break;
            }
        }
    });
    let mut subs: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    // Files being uploaded on this connection, by upload number.
    let mut uploads: HashMap<u64, Vec<u8>> = HashMap::new();
    let result = loop {
        let read = tokio::select! {
            m = frame::read::<ClientMsg>(&mut r) => m,
            // Shutting down: clients learn by the connection closing.
            _ = stop.changed() => break Ok(()),
        };
        let msg = match read {
            Ok(m) => m,
            Err(FrameError::Closed) => break Ok(()),
            Err(e) => {
                let _ = out.send(refuse("malformed", e.to_string())).await;
                break Err(e);
            }
        };
        let ClientMsg::Request { id, req } = msg else {
            let _ = out.send(refuse("malformed", "hello twice".into())).await;
            break Ok(());
        };
        match req {
            Request::Submit { envelope } => {
                let refusal = node
                    .pool
                    .refusal(&client)
                    .or_else(|| node.mirroring.refusal(Db::Mgc));
                if let Some(why) = refusal {
                    let _ = out
                        .send(response::<()>(id, Err(StoreError::Unavailable(why))))
                        .await;
                    continue;
                }
                // Queued now, in arrival order; answered when durable (and,
                // mirrored synchronously, when the mirror has it too).
                let done = node.hosted.mgc().submit(envelope);
                let (out, node) = (out.clone(), node.clone());
                tokio::spawn(async move {
                    let result = match done.await {
                        Ok(c) => node.mirroring.harden(Db::Mgc, c.lsn).await.map(|_| c),
                        Err(e) => Err(e),
                    };
                    let _ = out.send(response(id, result)).await;
                });
            }
            Request::Subscribe { after } => match node
                .hosted
                .readable(Db::Mgc)
                .and_then(|_| node.hosted.mgc().subscribe(after))
            {
                Ok(mut rx) => {
                    let out2 = out.clone();
                    let task = tokio::spawn(async move {
                        // Ends with an error when the database closes (a
                        // restore, a role change): the client subscribes again.
                        while let Some(rec) = rx.recv().await {
                            let msg = match rec {
                                Ok(rec) => match serde_json::to_value(&*rec) {
                                    Ok(record) => ServerMsg::Record { sub: id, record },
                                    Err(e) => ServerMsg::Ended {
                                        sub: id,
                                        error: StoreError::Internal(e.to_string()),
                                    },
                                },
                                Err(error) => ServerMsg::Ended { sub: id, error },
                            };
                            let end = matches!(msg, ServerMsg::Ended { .. });
                            if out2.send(msg).await.is_err() || end {
                                return;
                            }
                        }
                        let error = StoreError::Unavailable("mgc closed on this server".into());
                        let _ = out2.send(ServerMsg::Ended { sub: id, error }).await;
                    });
                    subs.insert(id, task);
                    let _ = out.send(response(id, Ok(serde_json::Value::Null))).await;
                }
                Err(e) => {
                    let _ = out.send(response::<()>(id, Err(e))).await;
                }
            },
            Request::PutFile {
                upload,
                sha256,
                offset,
                data,
                last,
            } => {
                // In the loop, so the parts of an upload stay in order.
                let part = take_part(&mut uploads, upload, offset, &data);
                let done = match part {
                    Err(e) => Some(Err(e)),
                    Ok(()) if last => {
                        let bytes = uploads.remove(&upload).unwrap_or_default();
                        Some(Ok((bytes, sha256)))
                    }
                    Ok(()) => None,
                };
                let (out, blobs) = (out.clone(), node.hosted.blobs());
                tokio::spawn(async move {
                    let result = match done {
                        None => Ok(serde_json::Value::Null),
                        Some(Err(e)) => Err(e),
                        // Stored under the SHA-256 of what came (content-
                        // addressed: a wrong claim stores nothing under it).
                        Some(Ok((bytes, claimed))) => match blobs.put(bytes).await {
                            Ok(sha) if sha == claimed => Ok(serde_json::json!({ "sha256": sha })),
                            Ok(sha) => Err(invalid(format!(
                                "the upload's SHA-256 is {sha}, not {claimed}"
                            ))),
                            Err(e) => Err(e),
                        },
                    };
                    let _ = out.send(ServerMsg::Response { id, result }).await;
                });
            }
            // The rest of the connection is the copy's bytes, then the answer.
            Request::ReceiveCopy {
                db,
                replace,
                recovery,
            } => {
                let opts = RestoreOptions { replace, recovery };
                let answer = receive_copy(&node, &mut r, db, opts, &client).await;
                let _ = out.send(ServerMsg::Response { id, result: answer }).await;
                break Ok(());
            }
            Request::Unsubscribe { sub } => {
                if let Some(t) = subs.remove(&sub) {
                    t.abort();
                }
            }
            other => {
                let (node, out) = (node.clone(), out.clone());
                tokio::spawn(async move {
                    let answer = match other {
                        Request::Status => status(&node).await,
                        Request::GetFile {
                            sha256,
                            offset,
                            len,
                        } => get_file(&node.hosted, sha256, offset, len).await,
                        Request::Backup {
                            db,
                            to,
                            log,
                            name,
                            description,
                        } => backup(&node.hosted, db, to, log, name, description).await,
                        Request::SendCopy { db, to } => send_copy(&node, db, to).await,
                        other => operation(&node, other).await,
                    };
                    let _ = out.send(ServerMsg::Response { id, result: answer }).await;
                });
            }
        }
    };
    for (_, t) in subs {
        t.abort();
    }
    drop(out);
    let _ = writer.await;
    result
}

/// The pool configuration held here, with this server's databases (last
/// LSN, fork, state: what peers remember of it). Asked twice a second by
/// every peer and chat server: identities come from the engines' read
/// pools and states from the cache, not from opening the files.
async fn pool_get(node: &Node) -> serde_json::Value {
    let mut v = node.pool.get();
    let mut dbs = serde_json::Map::new();
    for db in [Db::Mgc, Db::Mgccomp] {
        let id = match db {
            Db::Mgc => node.hosted.mgc().engine().identity().await,
            Db::Mgccomp => node.hosted.comp().identity().await,
        };
        let state = node.hosted.cached_state(db);
        if let Ok(id) = id {
            dbs.insert(
                id.name.clone(),
                serde_json::json!({ "last_lsn": id.last_lsn, "fork_id": id.fork_id, "family_id": id.family_id, "state": state }),
            );
        }
    }
    v["databases"] = serde_json::Value::Object(dbs);
    v
}

/// Every hosted database: state, identity, fork history, mirroring and
/// log-shipping role, and whether it serves commands now.
async fn status(node: &Node) -> Result<serde_json::Value, StoreError> {
    let mut dbs = Vec::new();
    for db in [Db::Mgc, Db::Mgccomp] {
        let (mut id, state) = node.hosted.read(db)?;
        // A mirror holds durably what its journal holds, applied or not.
        id.last_lsn = id.last_lsn.max(node.mirroring.journal_lsn(db).unwrap_or(0));
        let forks = node.fork_history(db, &id.fork_id)?;
        let mirroring = node.mirroring.status(db);
        let refusal = node
            .pool
            .role_refusal()
            .or_else(|| node.mirroring.refusal(db));
        // How far the compliance recorder has recorded mgc (one row read).
        let recorded_through = match db {
            Db::Mgccomp => pchat_engine::compliance::recorded_through(&node.hosted.comp())
                .await
                .ok(),
            Db::Mgc => None,
        };
        dbs.push(serde_json::json!({
            "recorded_through": recorded_through,
            "database": id.name, "state": state, "family_id": id.family_id,
            "bytes": std::fs::metadata(node.hosted.file(db)).map(|m| m.len()).unwrap_or(0),
            "fork_id": id.fork_id, "last_lsn": id.last_lsn, "forks": forks,
            "role": mirroring.as_ref().map(|m| m.role),
            "mirroring": mirroring,
            "serving": state == DbState::Online && refusal.is_none(),
            "refusal": refusal,
            "copy": node.copy_progress(db),
        }));
    }
    Ok(serde_json::json!({
        "server": node.config.name,
        "databases": dbs,
        "logship": node.logship.status()?,
        "pool": pool_get(node).await,
    }))
}

async fn backup(
    hosted: &Hosted,
    db: Db,
    to: String,
    log: bool,
    name: String,
    description: String,
) -> Result<serde_json::Value, StoreError> {
    let (file, files) = (hosted.file(db), hosted.files_dir(db));
    let done = tokio::task::spawn_blocking(move || {
        let to = std::path::PathBuf::from(to);
        if log {
            backup::log_backup(&file, &to, &name, &description, files.as_deref())
        } else {
            backup::full_backup(&file, files.as_deref(), &to, &name, &description)
        }
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))?;
    // A refusal (nothing to back up, a bad path) is the caller's to read.
    let header =
        done.map_err(|e| StoreError::Domain(pchat_domain::DomainError::Invalid(e.to_string())))?;
    value(Ok(header))
}

/// Streams a copy of `db` to every target at once (each byte read once,
/// written to every connection), and answers what each target reported.
async fn send_copy(
    node: &Node,
    db: Db,
    to: Vec<CopyTarget>,
) -> Result<serde_json::Value, StoreError> {
    use tokio::io::AsyncWriteExt;
    node.hosted.readable(db)?;
    let me = format!("{} copy", node.config.name);
    // Per target: the connection's halves, or why it failed.
    let mut links = Vec::new();
    for t in &to {
        let link = async {
            let (r, mut w, _) =
                pchat_wire::client::handshake(&t.addr, &node.config.secret, &me).await?;
            let req = Request::ReceiveCopy {
                db,
                replace: t.replace,
                recovery: t.recovery,
            };
            frame::write(&mut w, &ClientMsg::Request { id: 1, req })
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok::<_, StoreError>((r, w))
        };
        links.push(match link.await {
            Ok((r, w)) => (Some(r), Some(w), None),
            Err(e) => (None, None, Some(e.to_string())),
        });
    }
    if links.iter().all(|(_, w, _)| w.is_none()) {
        let why: Vec<String> = links
            .iter()
            .zip(&to)
            .map(|((_, _, e), t)| format!("{}: {}", t.addr, e.clone().unwrap_or_default()))
            .collect();
        return Err(StoreError::Unavailable(format!(
            "no target answered: {}",
            why.join("; ")
        )));
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(backup_copy::IN_FLIGHT);
    let (file, files) = (node.hosted.file(db), node.hosted.files_dir(db));
    let name = format!("copy of {} from {}", db_name(db), node.config.name);
    let shown = node.copy_shown(db);
    let progress = shown.progress.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut length = |n| progress.total.store(n, Ordering::Relaxed);
        backup_copy::send_copy(&file, files.as_deref(), &name, &mut length, &mut |bytes| {
            tx.blocking_send(bytes).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "every target went away")
            })
        })
    });
    let mut bytes = 0u64;
    while let Some(chunk) = rx.recv().await {
        bytes += chunk.len() as u64;
        let writes = links.iter_mut().map(|(_, w, _)| {
            let chunk = &chunk;
            async move {
                if let Some(conn) = w {
                    // A target that stops reading has answered why (read
                    // below), or is gone, or hangs: it is dropped, and the
                    // others go on.
                    let sent = tokio::time::timeout(COPY_STALL, conn.write_all(chunk)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        *w = None;
                    }
                }
            }
        });
        futures_util::future::join_all(writes).await;
        shown.progress.sent.store(bytes, Ordering::Relaxed);
        if links.iter().all(|(_, w, _)| w.is_none()) {
            break;
        }
    }
    drop(rx);
    let sent = reader
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    // Every target answers: a restore report, or why not (a target cut
    // short reads the end of the connection and says so).
    let answers = links
        .into_iter()
        .zip(&to)
        .map(|((r, w, failed), t)| async move {
            drop(w);
            let answer = match (failed, r) {
                (Some(e), _) => Err(e),
                (None, None) => Err("no connection".to_string()),
                // The answer comes once the target has written, checked and
                // renamed the copy: minutes for a large one.
                (None, Some(mut r)) => match tokio::time::timeout(
                    std::time::Duration::from_secs(3600),
                    frame::read::<ServerMsg>(&mut r),
                )
                .await
                {
                    Ok(Ok(ServerMsg::Response { result, .. })) => result.map_err(|e| e.to_string()),
                    Ok(Ok(ServerMsg::Refused { message, .. })) => Err(message),
                    Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
                    Ok(Err(e)) => Err(format!("the connection failed: {e}")),
                    Err(_) => Err("no answer within an hour".to_string()),
                },
            };
            match answer {
                Ok(report) => serde_json::json!({ "to": t.addr, "report": report }),
                Err(e) => serde_json::json!({ "to": t.addr, "error": e }),
            }
        });
    let copies = futures_util::future::join_all(answers).await;
    let header = match sent {
        Ok(h) => h,
        Err(e) => {
            let why: Vec<String> = copies
                .iter()
                .filter_map(|c| Some(format!("{}: {}", c["to"].as_str()?, c["error"].as_str()?)))
                .collect();
            return Err(invalid(format!(
                "the copy stopped: {e} ({})",
                why.join("; ")
            )));
        }
    };
    Ok(serde_json::json!({
        "database": header.database, "family_id": header.family_id,
        "fork_id": header.fork_id, "last_lsn": header.last_lsn,
        "bytes": bytes, "copies": copies,
    }))
}

/// How long a copy's sender or receiver waits for the other side to take
/// or bring the next chunk before it gives up on it (a peer that hangs
/// must not keep a database offline or its writers held off).
const COPY_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads exactly `buf.len()` bytes of a copy, or fails after [`COPY_STALL`]
/// without any.
async fn read_copy(r: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut [u8]) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    match tokio::time::timeout(COPY_STALL, r.read_exact(buf)).await {
        Ok(read) => read.map(|_| ()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the sender sent nothing for 30 s",
        )),
    }
}

/// Reads a copy from the connection and restores it over `db`. The header
/// is checked before `db` closes; the rest goes to the restore through a
/// bounded channel (the socket is read here, the file written on a
/// blocking thread).
async fn receive_copy(
    node: &Node,
    r: &mut tokio::net::tcp::OwnedReadHalf,
    db: Db,
    opts: RestoreOptions,
    from: &str,
) -> Result<serde_json::Value, StoreError> {
    let cut = |e: std::io::Error| invalid(format!("the copy was cut short: {e}"));
    let mut len = [0u8; 4];
    read_copy(r, &mut len).await.map_err(cut)?;
    let len = u32::from_le_bytes(len);
    if len > backup::MAX_HEADER {
        return Err(invalid(format!("a copy header of {len} bytes")));
    }
    let mut head = vec![0u8; len as usize];
    read_copy(r, &mut head).await.map_err(cut)?;
    let header = backup_copy::parse_header(&head).map_err(invalid)?;
    if header.database != db_name(db) {
        return Err(invalid(format!(
            "the copy is of {}, not of {}",
            header.database,
            db_name(db)
        )));
    }
    let _one = node.hosted.admin.lock().await;
    not_mirrored(node, db)?;
    // Refused here while the database still serves (the restore checks
    // again once it is closed).
    let (file, checked) = (node.hosted.file(db), header.clone());
    tokio::task::spawn_blocking(move || backup_copy::check_target(&file, &checked, opts))
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
        .map_err(invalid)?;
    let mut left = header.sections.iter().map(|s| s.len).sum::<u64>() + 32;
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(backup_copy::IN_FLIGHT);
    let pump = async move {
        while left > 0 {
            // Whole chunks: the restore writes and hashes a chunk at a time.
            let mut buf = vec![0u8; left.min(backup_copy::CHUNK as u64) as usize];
            let part = match read_copy(r, &mut buf).await {
                Ok(()) => {
                    left -= buf.len() as u64;
                    Ok(buf)
                }
                Err(e) => Err(e),
            };
            let failed = part.is_err();
            if tx.send(part).await.is_err() || failed {
                break;
            }
        }
    };
    let files = node.hosted.files_dir(db);
    let source = format!("copy from {from}");
    let restore = node.hosted.offline(db, move |file| {
        let mut rest = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        backup_copy::restore_copy(
            &head,
            &header,
            &mut rest,
            file,
            files.as_deref(),
            opts,
            &source,
        )
    });
    let ((), report) = tokio::join!(pump, restore);
    value(Ok(report?.map_err(invalid)?))
}

/// The bytes a channel brings, read on a blocking thread.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => (self.buf, self.pos) = (b, 0),
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Restores and state changes are refused on a mirrored copy.
fn not_mirrored(node: &Node, db: Db) -> Result<(), StoreError> {
    match node.mirroring.status(db) {
        Some(_) => Err(invalid(format!(
            "{} is mirrored here: remove mirroring first",
            db_name(db)
        ))),
        None => Ok(()),
    }
}

fn response<T: Serialize>(id: u64, r: Result<T, StoreError>) -> ServerMsg {
    ServerMsg::Response {
        id,
        result: r
            .and_then(|v| serde_json::to_value(v).map_err(|e| StoreError::Internal(e.to_string()))),
    }
}

fn value<T: Serialize>(r: Result<T, StoreError>) -> Result<serde_json::Value, StoreError> {
    r.and_then(|v| serde_json::to_value(v).map_err(|e| StoreError::Internal(e.to_string())))
}

/// Largest file a database server takes (the chat server enforces the
/// pool's MaxFileSizeKB; this only bounds what one upload can hold).
const MAX_UPLOAD: usize = 256 << 20;

/// Appends a part to an upload; parts come in order, from offset 0.
fn take_part(
    uploads: &mut HashMap<u64, Vec<u8>>,
    upload: u64,
    offset: u64,
    data: &str,
) -> Result<(), StoreError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| invalid(format!("a file part is not base64: {e}")))?;
    let buf = uploads.entry(upload).or_default();
    if buf.len() as u64 != offset || buf.len() + bytes.len() > MAX_UPLOAD {
        uploads.remove(&upload);
        return Err(invalid(format!(
            "upload {upload}: a part at offset {offset} does not follow the last one, or the file exceeds {MAX_UPLOAD} bytes"
        )));
    }
    buf.extend_from_slice(&bytes);
    Ok(())
}

async fn get_file(
    hosted: &Hosted,
    sha256: String,
    offset: u64,
    len: u64,
) -> Result<serde_json::Value, StoreError> {
    use base64::Engine;
    hosted.readable(Db::Mgc)?;
    let blobs = hosted.blobs();
    let len = len.min(pchat_wire::client::FILE_PART as u64);
    let part = tokio::task::spawn_blocking(move || blobs.read_range(&sha256, offset, len))
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
    Ok(match part {
        None => serde_json::Value::Null,
        Some((bytes, size)) => serde_json::json!({
            "size": size,
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        }),
    })
}

fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Domain(pchat_domain::DomainError::Invalid(e.to_string()))
}

/// Restores, recovery, log shipping and mirroring; else a query.
async fn operation(node: &Arc<Node>, req: Request) -> Result<serde_json::Value, StoreError> {
    match req {
        Request::Restore {
            db,
            from,
            replace,
            recovery,
        } => {
            let _one = node.hosted.admin.lock().await;
            not_mirrored(node, db)?;
            let from = std::path::PathBuf::from(from);
            // A wrong or damaged file is refused before the database closes.
            let header = backup::read_header(&from).map_err(invalid)?;
            if header.database != db_name(db) {
                return Err(invalid(format!(
                    "{} holds a backup of {}, not of {}",
                    from.display(),
                    header.database,
                    db_name(db)
                )));
            }
            let files = node.hosted.files_dir(db);
            let report = node
                .hosted
                .offline(db, move |file| {
                    backup::restore(
                        &from,
                        file,
                        files.as_deref(),
                        RestoreOptions { replace, recovery },
                    )
                })
                .await?
                .map_err(invalid)?;
            value(Ok(report))
        }
        Request::Recover { db } => {
            let _one = node.hosted.admin.lock().await;
            node.mirroring.settle(db).await?;
            let done = node
                .hosted
                .offline(db, backup::recover)
                .await?
                .map_err(invalid)?;
            value(Ok(done))
        }
        Request::Offline { db } | Request::Online { db } => {
            let _one = node.hosted.admin.lock().await;
            if node.mirroring.status(db).is_some() {
                return Err(invalid(format!(
                    "{} is mirrored here: fail over or remove mirroring instead",
                    db_name(db)
                )));
            }
            let change = match req {
                Request::Offline { .. } => backup::take_offline,
                _ => backup::bring_online,
            };
            node.hosted.offline(db, change).await?.map_err(invalid)?;
            let (id, state) = node.hosted.read(db)?;
            Ok(serde_json::json!({ "database": id.name, "state": state, "last_lsn": id.last_lsn }))
        }
        Request::HoldForLogs {
            db,
            family_id,
            last_lsn,
        } => {
            let _one = node.hosted.admin.lock().await;
            not_mirrored(node, db)?;
            node.hosted
                .offline(db, move |file| {
                    backup::hold_for_logs(file, &family_id, last_lsn)
                })
                .await?
                .map_err(invalid)?;
            let (id, state) = node.hosted.read(db)?;
            Ok(serde_json::json!({ "database": id.name, "state": state, "last_lsn": id.last_lsn }))
        }
        Request::LogshipPrimary { config } => {
            node.logship.set_primary(config)?;
            node.logship.status()
        }
        Request::LogshipSecondary { config } => {
            node.logship.set_secondary(config)?;
            node.logship.status()
        }
        Request::LogshipRemove { db } => node.logship.remove(db),
        Request::LogshipStatus => node.logship.status(),
        Request::Summary { db } => {
            // A mirror counts what it acknowledged, journal included.
            node.mirroring.flush(db).await?;
            let file = node.hosted.file(db);
            let done = tokio::task::spawn_blocking(move || backup::summary(&file))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            value(done.map_err(invalid))
        }
        Request::PoolGet => Ok(pool_get(node).await),
        Request::PoolPut { config } => node.pool.put(config),
        Request::LogshipRun { db } => node.logship.run_now(db).await,
        Request::MirrorSet {
            db,
            role,
            partner,
            mode,
        } => node.mirroring.set(db, role, partner, mode).await,
        Request::MirrorRemove { db } => node.mirroring.remove(db).await,
        Request::MirrorFailover { db } => node.mirroring.failover(db).await,
        Request::MirrorForce { db } => node.mirroring.force(db).await,
        Request::MirrorTakeOver { db, last_lsn } => node.mirroring.take_over(db, last_lsn).await,
        Request::MirrorStart {
            db,
            family_id,
            fork_id,
            forks,
        } => {
            node.mirroring
                .start_stream(db, &family_id, &fork_id, &forks)
                .await
        }
        Request::MirrorApply {
            db,
            family_id,
            fork_id,
            forks,
            records,
            principal_lsn,
        } => {
            node.mirroring
                .apply(db, family_id, fork_id, forks, records, principal_lsn)
                .await
        }
        other => answer(&node.hosted, other).await,
    }
}

async fn answer(hosted: &Hosted, req: Request) -> Result<serde_json::Value, StoreError> {
    let mgc = hosted.mgc();
    let comp = hosted.comp();
    let s: &dyn ChatStore = mgc.as_ref();
    match req {
        Request::Identity { db: Db::Mgc } => value(s.identity().await),
        Request::Identity { db: Db::Mgccomp } => {
            value(comp.read(pchat_engine::read_identity).await.and_then(|i| {
                i.ok_or_else(|| StoreError::Internal("mgccomp has no identity".into()))
            }))
        }
        Request::Read { query } => match hosted.readable(Db::Mgc).map(|_| query)? {
            Query::User { id } => value(s.user(id).await),
            Query::Credentials { name } => value(s.credentials(name).await),
            Query::SessionUser { token_hash } => value(s.session_user(token_hash).await),
            Query::UserCount => value(s.user_count().await),
            Query::Users => value(s.users().await),
            Query::Category { id } => value(s.category(id).await),
            Query::Categories => value(s.categories().await),
            Query::CategoryLists { id } => value(s.category_lists(id).await),
            Query::Room { id } => value(s.room(id).await),
            Query::RoomRoles { id } => value(s.room_roles(id).await),
            Query::Access { room, user } => value(s.access(room, user).await),
            Query::RoomsWithAccess { user } => value(s.rooms_with_access(user).await),
            Query::Groups => value(s.groups().await),
            Query::Group { id } => value(s.group(id).await),
            Query::Addins => value(s.addins().await),
            Query::Invitations { user } => value(s.invitations(user).await),
            Query::Eligible { room } => value(s.eligible(room).await),
            Query::Messages { room, page } => value(s.messages(room, page).await),
            Query::Search { query } => value(s.search(query).await),
            Query::Configuration => value(s.configuration().await),
            Query::FileInRoom { room, sha256 } => value(s.file_in_room(room, sha256).await),
            Query::Feeds { user } => value(s.feeds(user).await),
            Query::FeedMessages {
                feed,
                rooms,
                before,
                limit,
            } => value(s.feed_messages(feed, rooms, before, limit).await),
        },
        Request::Compliance { query } => {
            hosted.readable(Db::Mgccomp)?;
            let c: &dyn ComplianceStore = comp.as_ref();
            match query {
                ComplianceQuery::Records { query } => value(c.records(query).await),
                ComplianceQuery::Mark { job } => value(c.export_mark(job).await),
                ComplianceQuery::MoveMark { job, from, through } => {
                    value(c.move_export_mark(job, from, through).await)
                }
            }
        }
        // Handled before.
        _ => Err(StoreError::Internal("not a query".into())),
    }
}
