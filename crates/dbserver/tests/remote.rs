//! A database server on 127.0.0.1, used through the network client: the
//! ChatStore conformance suite, and the handshake's refusals.

use pchat_dbserver::{serve, Config};
use pchat_store::ChatStore;
use pchat_wire::frame;
use pchat_wire::message::*;
use pchat_wire::{Remote, RemoteStore};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"a cluster secret for tests";

struct TestServer {
    addr: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        Config {
            name: "db1".into(),
            data_dir: dir.path().to_path_buf(),
            secret: SECRET.to_vec(),
            topology: None,
        },
        stopped,
    ));
    TestServer {
        addr,
        stop,
        task,
        _dir: dir,
    }
}

impl TestServer {
    async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_store_conforms_to_the_chat_store_contract() {
    for (name, check) in pchat_store::conformance::CHECKS {
        let server = start().await;
        let store: Arc<dyn ChatStore> = Arc::new(Remote(RemoteStore::new(
            vec![server.addr.clone()],
            SECRET.to_vec(),
            "conformance".into(),
        )));
        let handle = tokio::spawn(check(store));
        if let Err(e) = handle.await {
            panic!("conformance check {name} failed over the network: {e}");
        }
        server.shutdown().await;
    }
}

async fn handshake(addr: &str, hello: impl FnOnce(String) -> Vec<u8>) -> ServerMsg {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let nonce = match frame::read::<ServerMsg>(&mut s).await.unwrap() {
        ServerMsg::Challenge { nonce, version, .. } => {
            assert_eq!(version, pchat_wire::PROTOCOL_VERSION);
            nonce
        }
        other => panic!("{other:?}"),
    };
    use tokio::io::AsyncWriteExt;
    s.write_all(&hello(nonce)).await.unwrap();
    frame::read::<ServerMsg>(&mut s).await.unwrap()
}

fn hello(version: u16, secret: &[u8], nonce: &str) -> Vec<u8> {
    frame::encode(&ClientMsg::Hello {
        version,
        client: "probe".into(),
        proof: pchat_wire::auth::client_proof(secret, nonce, "probe"),
    })
    .unwrap()
}

#[tokio::test]
async fn the_handshake_refuses_wrong_secrets_versions_and_garbage() {
    let server = start().await;
    let a = &server.addr;
    let code = |m: ServerMsg| match m {
        ServerMsg::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        code(handshake(a, |n| hello(1, b"the wrong secret!!", &n)).await),
        "auth"
    );
    assert_eq!(
        code(handshake(a, |n| hello(99, SECRET, &n)).await),
        "version"
    );
    assert_eq!(
        code(handshake(a, |_| b"\x00\x00\x00\x05hello".to_vec()).await),
        "malformed"
    );
    assert_eq!(
        code(handshake(a, |_| b"\xff\xff\xff\xff".to_vec()).await),
        "malformed",
        "a frame over the limit"
    );
    assert!(matches!(
        handshake(a, |n| hello(1, SECRET, &n)).await,
        ServerMsg::Welcome { .. }
    ));
    // A client with the wrong secret gets a clear "unavailable" answer.
    let wrong = Remote(RemoteStore::new(
        vec![a.clone()],
        b"the wrong secret!!".to_vec(),
        "x".into(),
    ));
    let e = wrong.user_count().await.unwrap_err();
    assert!(e.to_string().contains("auth"), "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fails_over_to_the_partner_and_pending_requests_answer_unavailable() {
    let first = start().await;
    let second = start().await;
    // The first address is dead: the client uses its partner.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let store = RemoteStore::new(
        vec![dead, second.addr.clone()],
        SECRET.to_vec(),
        "chat1".into(),
    );
    let remote = Remote(store.clone());
    assert_eq!(remote.user_count().await.unwrap(), 0);
    assert_eq!(store.connected_to().as_deref(), Some("db1"));
    // The server goes away: the next request says unavailable, none hangs.
    second.shutdown().await;
    let e = remote.user_count().await.unwrap_err();
    assert!(
        matches!(e, pchat_store::StoreError::Unavailable(_)),
        "{e:?}"
    );
    first.shutdown().await;
}

/// A subscriber that stops reading must not stall the connection it shares
/// with requests (the chat server's hub awaits reads while it follows the
/// log): reads keep answering, and the subscriber, a buffer behind, gets
/// an error telling it to subscribe again instead of records going missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_never_blocks_requests_and_is_ended_not_skipped() {
    use pchat_domain::*;
    let server = start().await;
    let store = Remote(RemoteStore::new(
        vec![server.addr.clone()],
        SECRET.to_vec(),
        "t".into(),
    ));
    let env = |command| Envelope {
        origin: "t".into(),
        command,
    };
    store
        .submit(env(Command::BootstrapAdmin {
            name: "admin".into(),
            password_hash: "h".into(),
        }))
        .await
        .unwrap();
    store
        .submit(env(Command::new_category(Actor::System, "c")))
        .await
        .unwrap();
    store
        .submit(env(Command::new_room(Actor::System, 1, "r", Privacy::Open)))
        .await
        .unwrap();
    let mut sub = store.subscribe(0).unwrap();
    // Far more records than the subscription's buffer, nobody reading.
    let posts: Vec<_> = (0..3000)
        .map(|i| {
            store.submit(env(Command::PostMessage {
                actor: 1,
                room: 1,
                body: format!("m{i}"),
                client_msg_id: format!("c{i}"),
                alert: false,
            }))
        })
        .collect();
    for p in posts {
        p.await.unwrap();
    }
    let answered =
        tokio::time::timeout(std::time::Duration::from_secs(5), store.user_count()).await;
    assert_eq!(
        answered
            .expect("a read answered while the subscriber stalled")
            .unwrap(),
        1
    );
    // The subscriber sees records in order with no gap, then an error.
    let mut last = 0;
    let ended = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await {
            Ok(Some(Ok(rec))) => {
                assert_eq!(rec.lsn, last + 1, "no gap");
                last = rec.lsn;
            }
            Ok(Some(Err(e))) => break e,
            other => panic!("the stalled subscription neither ended nor continued: {other:?}"),
        }
    };
    assert!(
        matches!(ended, pchat_store::StoreError::Unavailable(_)),
        "{ended:?}"
    );
    assert!(last < 3003, "it fell behind and was ended, at LSN {last}");
    server.shutdown().await;
}

/// A mirror forced into service names the LSNs the principal told it of
/// but it never received; a mirror refuses records of another family, and
/// a copy that is not a mirror refuses to be forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_service_names_the_lsns_the_mirror_lacks() {
    use pchat_domain::{Actor, Command, Envelope};
    let source_dir = tempfile::tempdir().unwrap();
    let source = source_dir.path().join("mgc.db");
    let engine = pchat_engine::ChatEngine::open(&source).unwrap();
    for i in 0..3 {
        let command = Command::CreateUser {
            actor: Actor::System,
            name: format!("user{i}"),
            display_name: None,
            password_hash: "x".into(),
            admin: false,
        };
        let origin = "test".into();
        engine.submit(Envelope { origin, command }).await.unwrap();
    }
    engine.close();
    let full = source_dir.path().join("full.bak");
    let h = pchat_engine::backup::full_backup(&source, None, &full, "", "").unwrap();

    let server = start().await;
    let tool = RemoteStore::tool(server.addr.clone(), SECRET.to_vec(), "test".into());
    let e = tool
        .call(Request::MirrorForce { db: Db::Mgc })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a mirror"), "{e}");
    tool.call(Request::Restore {
        db: Db::Mgc,
        from: full.display().to_string(),
        replace: true,
        recovery: pchat_store::Recovery::NoRecovery,
    })
    .await
    .unwrap();
    tool.call(Request::MirrorSet {
        db: Db::Mgc,
        role: MirrorRole::Mirror,
        partner: "127.0.0.1:9".into(),
        mode: MirrorMode::Async,
    })
    .await
    .unwrap();
    let start = tool
        .call(Request::MirrorStart {
            db: Db::Mgc,
            family_id: h.family_id.clone(),
            fork_id: h.fork_id.clone(),
            forks: h.forks.clone(),
        })
        .await
        .unwrap();
    assert_eq!(start["last_lsn"], h.last_lsn);
    let apply = |family_id: String, principal_lsn| Request::MirrorApply {
        db: Db::Mgc,
        family_id,
        fork_id: h.fork_id.clone(),
        forks: h.forks.clone(),
        records: vec![],
        principal_lsn,
    };
    let e = tool
        .call(apply("another family".into(), h.last_lsn))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another database family"), "{e}");
    // The principal says it committed five more than it sent, then is lost.
    tool.call(apply(h.family_id.clone(), h.last_lsn + 5))
        .await
        .unwrap();
    let forced = tool
        .call(Request::MirrorForce { db: Db::Mgc })
        .await
        .unwrap();
    assert_eq!(forced["missing_lsns"]["first"], h.last_lsn + 1, "{forced}");
    assert_eq!(forced["missing_lsns"]["last"], h.last_lsn + 5, "{forced}");
    assert_ne!(
        forced["fork_id"],
        h.fork_id.as_str(),
        "forced service starts a new fork"
    );
    let status = tool.status().await.unwrap();
    assert_eq!(status["databases"][0]["state"], "ONLINE", "{status}");
    server.shutdown().await;
}

/// Files in parts: whole and in order they are stored and read back in
/// parts; a part out of order, bad base64 or a wrong SHA-256 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_travel_in_parts_and_bad_parts_are_refused() {
    use pchat_store::blobs::{sha256_hex, Blobs};
    let server = start().await;
    let remote = Remote(RemoteStore::tool(
        server.addr.clone(),
        SECRET.to_vec(),
        "t".into(),
    ));
    let content: Vec<u8> = (0..(pchat_wire::client::FILE_PART * 2 + 17))
        .map(|i| (i % 241) as u8)
        .collect();
    let sha = remote.put(content.clone()).await.unwrap();
    assert_eq!(sha, sha256_hex(&content));
    assert_eq!(remote.get(sha).await.unwrap(), Some(content));
    assert_eq!(remote.get("0".repeat(64)).await.unwrap(), None);
    let tool = remote.0.clone();
    let part = |offset: u64, data: &str, last: bool| Request::PutFile {
        upload: 7,
        sha256: "1".repeat(64),
        offset,
        data: data.into(),
        last,
    };
    let e = tool.call(part(5, "aGVsbG8=", false)).await.unwrap_err();
    assert!(e.to_string().contains("does not follow"), "{e}");
    let e = tool.call(part(0, "not base64!", false)).await.unwrap_err();
    assert!(e.to_string().contains("not base64"), "{e}");
    let e = tool.call(part(0, "aGVsbG8=", true)).await.unwrap_err();
    assert!(e.to_string().contains("not 1111"), "{e}");
    server.shutdown().await;
}
