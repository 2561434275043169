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

use pchat_engine::{compliance, ChatEngine, ComplianceEngine, MGCCOMP_FILE, MGC_FILE};
use pchat_store::{ChatStore, ComplianceStore, StoreError};
use pchat_wire::frame::{self, FrameError};
use pchat_wire::message::*;
use pchat_wire::{auth, PROTOCOL_VERSION};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub secret: Vec<u8>,
}

/// The databases this server hosts.
pub struct Databases {
    pub mgc: Arc<ChatEngine>,
    pub comp: Arc<ComplianceEngine>,
}

impl Databases {
    pub fn open(data_dir: &std::path::Path) -> anyhow::Result<Databases> {
        std::fs::create_dir_all(data_dir)?;
        Ok(Databases {
            mgc: ChatEngine::open(&data_dir.join(MGC_FILE))?,
            comp: compliance::open(&data_dir.join(MGCCOMP_FILE))?,
        })
    }
}

/// Serves until `stop` changes to true; then stops the recorder and closes
/// the databases (everything acknowledged is already durable).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let dbs = Arc::new(Databases::open(&config.data_dir)?);
    let (stop_recorder, recorder_stop) = watch::channel(false);
    let recorder = tokio::spawn(compliance::run_recorder(
        dbs.mgc.clone(),
        dbs.comp.clone(),
        recorder_stop,
    ));
    let config = Arc::new(config);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let (dbs, config, stop) = (dbs.clone(), config.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, dbs, config, stop).await {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    let _ = stop_recorder.send(true);
    let _ = recorder.await;
    dbs.mgc.close();
    dbs.comp.close();
    Ok(())
}

async fn connection(
    stream: TcpStream,
    dbs: Arc<Databases>,
    config: Arc<Config>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
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
                // Queued now, in arrival order; answered when durable.
                let done = dbs.mgc.submit(envelope);
                let out = out.clone();
                tokio::spawn(async move {
                    let _ = out.send(response(id, done.await)).await;
                });
            }
            Request::Subscribe { after } => match dbs.mgc.subscribe(after) {
                Ok(mut rx) => {
                    let out2 = out.clone();
                    let task = tokio::spawn(async move {
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
                    });
                    subs.insert(id, task);
                    let _ = out.send(response(id, Ok(serde_json::Value::Null))).await;
                }
                Err(e) => {
                    let _ = out.send(response::<()>(id, Err(e))).await;
                }
            },
            Request::Unsubscribe { sub } => {
                if let Some(t) = subs.remove(&sub) {
                    t.abort();
                }
            }
            other => {
                let (dbs, out, data_dir) = (dbs.clone(), out.clone(), config.data_dir.clone());
                tokio::spawn(async move {
                    let answer = match other {
                        Request::Status => status(&data_dir).await,
                        Request::Backup {
                            db,
                            to,
                            log,
                            name,
                            description,
                        } => backup(&data_dir, db, to, log, name, description).await,
                        other => answer(&dbs, other).await,
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

fn db_file(db: Db) -> &'static str {
    match db {
        Db::Mgc => MGC_FILE,
        Db::Mgccomp => MGCCOMP_FILE,
    }
}

async fn status(data_dir: &std::path::Path) -> Result<serde_json::Value, StoreError> {
    let data_dir = data_dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
        let mut dbs = Vec::new();
        for file in [MGC_FILE, MGCCOMP_FILE] {
            let conn =
                pchat_engine::open_connection(&data_dir.join(file)).map_err(|e| e.to_string())?;
            let id = pchat_engine::read_identity(&conn)
                .map_err(|e| e.to_string())?
                .ok_or("a database without identity")?;
            let state = pchat_engine::read_state(&conn).map_err(|e| e.to_string())?;
            dbs.push(serde_json::json!({
                "database": id.name, "state": state, "family_id": id.family_id,
                "fork_id": id.fork_id, "last_lsn": id.last_lsn,
            }));
        }
        Ok(serde_json::json!({ "databases": dbs }))
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))?;
    out.map_err(StoreError::Internal)
}

async fn backup(
    data_dir: &std::path::Path,
    db: Db,
    to: String,
    log: bool,
    name: String,
    description: String,
) -> Result<serde_json::Value, StoreError> {
    let data_dir = data_dir.to_path_buf();
    let done = tokio::task::spawn_blocking(move || {
        let file = data_dir.join(db_file(db));
        let to = std::path::PathBuf::from(to);
        if log {
            pchat_engine::backup::log_backup(&file, &to, &name, &description)
        } else {
            let files = (db == Db::Mgc).then(|| data_dir.join(pchat_engine::FILES_DIR));
            pchat_engine::backup::full_backup(&file, files.as_deref(), &to, &name, &description)
        }
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))?;
    // A refusal (nothing to back up, a bad path) is the caller's to read.
    let header =
        done.map_err(|e| StoreError::Domain(pchat_domain::DomainError::Invalid(e.to_string())))?;
    value(Ok(header))
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

async fn answer(dbs: &Databases, req: Request) -> Result<serde_json::Value, StoreError> {
    let s: &dyn ChatStore = dbs.mgc.as_ref();
    match req {
        Request::Identity { db: Db::Mgc } => value(s.identity().await),
        Request::Identity { db: Db::Mgccomp } => value(
            dbs.comp
                .read(pchat_engine::read_identity)
                .await
                .and_then(|i| {
                    i.ok_or_else(|| StoreError::Internal("mgccomp has no identity".into()))
                }),
        ),
        Request::Read { query } => match query {
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
            let c: &dyn ComplianceStore = dbs.comp.as_ref();
            match query {
                ComplianceQuery::Records { query } => value(c.records(query).await),
                ComplianceQuery::Mark { job } => value(c.export_mark(job).await),
                ComplianceQuery::MoveMark { job, from, through } => {
                    value(c.move_export_mark(job, from, through).await)
                }
            }
        }
        // Handled by the connection loop.
        Request::Submit { .. }
        | Request::Subscribe { .. }
        | Request::Unsubscribe { .. }
        | Request::Status
        | Request::Backup { .. } => Err(StoreError::Internal("not a query".into())),
    }
}
