//! A chat server on a database server (`pchat serve --database`), real
//! processes on 127.0.0.1: the API works as with the embedded engine; the
//! chat server survives a database server restart; a wrong cluster secret
//! is refused.

use super::common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_server_on_a_database_server() {
    let db_dir = tempfile::tempdir().unwrap();
    let mut db = DbServer::start(db_dir.path(), "127.0.0.1:0");
    let chat_dir = tempfile::tempdir().unwrap();
    let env = [
        ("PCHAT_BOOTSTRAP_ADMIN", format!("{ADMIN}:{ADMIN_PW}")),
        ("PCHAT_CLUSTER_SECRET", SECRET.to_string()),
        ("PCHAT_DATABASE", db.addr.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut chat = Server::start_in(chat_dir.path(), &env);
    let c = chat.client();
    let admin = c.admin().await;
    let alice = c.user(&admin, "alice").await;
    let cat = c.category(&admin, "general").await;
    let room = c
        .room(
            &alice,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    // Live delivery over the WebSocket, fed by the database server's log.
    let mut ws = ws_connect(&chat.ws_url(&admin)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 0}}),
    )
    .await;
    ws_until(&mut ws, "subscribed").await;
    for i in 1..=20 {
        assert_eq!(
            c.post(&alice, room, &format!("m{i}"), &format!("c{i}"))
                .await
                .status,
            201
        );
    }
    let frames = ws_until(&mut ws, "message").await;
    assert_eq!(frames.last().unwrap()["seq"], 1);
    assert_eq!(
        seqs(&c.history(&alice, room).await),
        (1..=20).collect::<Vec<_>>()
    );
    // Compliance is recorded on the database server.
    let mut chats = 0;
    for _ in 0..100 {
        let r = c
            .call(
                "GET",
                "/api/v1/compliance/records?limit=1000",
                Some(&admin),
                Value::Null,
            )
            .await;
        chats = r.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "CHAT")
            .count();
        if chats == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chats, 20);

    // Status and a backup through the database server.
    let status = pchat()
        .args(["db", "status", "--json", "--server", &db.addr])
        .env("PCHAT_CLUSTER_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["databases"][0]["state"], "ONLINE", "{status}");
    let share = tempfile::tempdir().unwrap();
    let to = share.path().join("mgc.bak");
    let out = pchat()
        .args([
            "db",
            "backup",
            "--json",
            "--database",
            "mgc",
            "--server",
            &db.addr,
            "--to",
        ])
        .arg(&to)
        .env("PCHAT_CLUSTER_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = pchat()
        .args(["db", "verify", "--json"])
        .arg(&to)
        .output()
        .unwrap();
    assert!(verified.status.success());
    let h: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(h["database"], "mgc");
    let refused = pchat()
        .args([
            "db",
            "backup",
            "--database",
            "mgc",
            "--server",
            &db.addr,
            "--log",
            "--to",
            "/nonexistent/dir/x.trn",
        ])
        .env("PCHAT_CLUSTER_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!refused.status.success());

    // The database server dies: posts answer 503 (retry-safe), nothing hangs.
    let addr = db.addr.clone();
    db.kill9();
    let a = c.post(&alice, room, "while down", "down1").await;
    assert_eq!((a.status, a.code()), (503, "unavailable"), "{}", a.body);
    // It comes back on the same address: the chat server reconnects, and
    // the retried post is committed once.
    let _db = DbServer::start(db_dir.path(), &addr);
    let mut ok = false;
    for _ in 0..100 {
        let a = c.post(&alice, room, "while down", "down1").await;
        if a.status == 201 || a.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the chat server did not reconnect");
    let h = c.history(&alice, room).await;
    assert_eq!(h.len(), 21);
    assert_eq!(h.iter().filter(|m| m["body"] == "while down").count(), 1);

    // A chat server restarted on the database server keeps everything.
    chat.kill9();
    let chat = chat.restart_with(&env);
    let c = chat.client();
    let alice = c.sign_in("alice", "alice-password").await;
    assert_eq!(c.history(&alice, room).await.len(), 21);
}

#[test]
fn a_wrong_cluster_secret_is_refused() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = DbServer::start(db_dir.path(), "127.0.0.1:0");
    let chat_dir = tempfile::tempdir().unwrap();
    let out = pchat()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(chat_dir.path())
        .env("PCHAT_DATABASE", &db.addr)
        .env("PCHAT_CLUSTER_SECRET", "not the cluster secret at all")
        .env("PCHAT_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth"), "{err}");
    // Too short a secret is refused before connecting.
    let out = pchat()
        .args(["db", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(db_dir.path().join("other"))
        .env("PCHAT_CLUSTER_SECRET", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 bytes"));
}

/// SIGKILL of the database server under load: every post the chat server
/// acknowledged is on the restarted database server exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_server_killed_under_load_loses_nothing_acknowledged() {
    let db_dir = tempfile::tempdir().unwrap();
    let mut db = DbServer::start(db_dir.path(), "127.0.0.1:0");
    let (_chat, c, admin, room) = chat_room_on(&db.addr, "busy").await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, i64)>::new()));
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let (c, admin, acked) = (c.clone(), admin.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..2000 {
                let id = format!("l{lane}-{i}");
                let a = c.post(&admin, room, &id, &id).await;
                if a.status == 201 {
                    acked
                        .lock()
                        .unwrap()
                        .push((id, a.body["seq"].as_i64().unwrap()));
                } else {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let addr = db.addr.clone();
    db.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "some posts were acknowledged before the kill"
    );
    let _db = DbServer::start(db_dir.path(), &addr);
    let mut history = Vec::new();
    for _ in 0..100 {
        let a = c
            .call(
                "GET",
                &format!("/api/v1/rooms/{room}/messages?after=0&limit=1"),
                Some(&admin),
                Value::Null,
            )
            .await;
        if a.status == 200 {
            history = c.history(&admin, room).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bodies: Vec<&str> = history
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    for (id, seq) in &acked {
        let n = bodies.iter().filter(|b| *b == id).count();
        assert_eq!(n, 1, "acknowledged {id} (seq {seq}) is there exactly once");
    }
    assert_eq!(
        seqs(&history),
        (1..=history.len() as i64).collect::<Vec<_>>()
    );
}

/// `pchat db offline` takes a database out of service on a running
/// database server: commands and reads are refused, its data is kept, and
/// `pchat db online` brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_taken_offline_serves_nothing_until_brought_online() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = DbServer::start(db_dir.path(), "127.0.0.1:0");
    let (_chat, c, admin, room) = chat_room_on(&db.addr, "lobby").await;
    assert_eq!(c.post(&admin, room, "before", "b").await.status, 201);

    let off = db_cmd(&["offline", "--server", &db.addr, "--database", "mgc"]).unwrap();
    assert_eq!(off["state"], "OFFLINE", "{off}");
    assert_eq!(db_status(&db.addr, "mgc")["serving"], false);
    let p = c.post(&admin, room, "while offline", "w").await;
    assert_eq!((p.status, p.code()), (503, "unavailable"), "{}", p.body);
    let r = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 503, "reads are refused too: {}", r.body);
    // Each refused request had the chat server connect again and find mgc
    // not serving: those connections are closed, not kept (they once
    // were, until the database server ran out of file descriptors).
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/fd", db.child.id()))
            .unwrap()
            .flatten()
            .filter(|f| {
                std::fs::read_link(f.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
    };
    for _ in 0..40 {
        let p = c.post(&admin, room, "while offline", "w").await;
        assert_eq!(p.status, 503, "{}", p.body);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sockets() > 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database server holds {} sockets",
            sockets()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = db_cmd(&["offline", "--server", &db.addr, "--database", "mgc"]).unwrap_err();
    assert!(e.contains("is OFFLINE, not ONLINE"), "{e}");

    let on = db_cmd(&["online", "--server", &db.addr, "--database", "mgc"]).unwrap();
    assert_eq!(on["state"], "ONLINE", "{on}");
    let mut ok = false;
    for _ in 0..100 {
        let p = c.post(&admin, room, "while offline", "w").await;
        if p.status == 201 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the chat server did not come back");
    let h = c.history(&admin, room).await;
    assert_eq!(seqs(&h), vec![1, 2]);
}

/// With a database server, uploads are kept on it, next to mgc: a file of
/// several protocol parts goes up and comes back whole, the chat server
/// keeps no copy, and the database server's full backup of mgc carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_live_on_the_database_server_and_in_its_backups() {
    use super::files::{download, upload};
    let db_dir = tempfile::tempdir().unwrap();
    let db = DbServer::start(db_dir.path(), "127.0.0.1:0");
    let (chat, c, admin, room) = chat_room_on(&db.addr, "docs").await;
    // 9 MB: three parts of the protocol.
    let content: Vec<u8> = (0..9_000_000u32).map(|i| (i % 251) as u8).collect();
    let a = upload(&c, &admin, room, "big.bin", "f1", content.clone()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let url = a.body["file"]["url"].as_str().unwrap().to_string();
    let (status, bytes, _) = download(&c, &admin, &url).await;
    assert_eq!(status, 200);
    assert!(bytes == content, "the file came back changed");
    let sha = a.body["file"]["sha256"].as_str().unwrap().to_string();
    let on_db = db_dir
        .path()
        .join("files/sha256")
        .join(&sha[..2])
        .join(&sha[2..]);
    assert!(on_db.exists(), "the file is on the database server");
    assert!(
        !chat.data_dir.join("files/sha256").exists(),
        "the chat server keeps no copy"
    );

    // The database server's full backup of mgc carries it; restored on
    // another database server, it is served again.
    let share = tempfile::tempdir().unwrap();
    let to = share.path().join("mgc.bak");
    db_cmd(&[
        "backup",
        "--server",
        &db.addr,
        "--database",
        "mgc",
        "--to",
        to.to_str().unwrap(),
    ])
    .unwrap();
    let h = db_cmd(&["verify", to.to_str().unwrap()]).unwrap();
    assert!(
        h["sections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == format!("file:{sha}")),
        "{h}"
    );
    let other_dir = tempfile::tempdir().unwrap();
    let other = DbServer::start(other_dir.path(), "127.0.0.1:0");
    db_cmd(&[
        "restore",
        "--server",
        &other.addr,
        "--database",
        "mgc",
        "--from",
        to.to_str().unwrap(),
        "--replace",
    ])
    .unwrap();
    let chat2_dir = tempfile::tempdir().unwrap();
    let env2 = [
        ("PCHAT_CLUSTER_SECRET", SECRET.to_string()),
        ("PCHAT_DATABASE", other.addr.clone()),
    ];
    let env2: Vec<(&str, &str)> = env2.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let chat2 = Server::start_in(chat2_dir.path(), &env2);
    let c2 = chat2.client();
    let admin2 = c2.sign_in(ADMIN, ADMIN_PW).await;
    let (status, bytes, _) = download(&c2, &admin2, &url).await;
    assert_eq!(status, 200);
    assert!(bytes == content, "the restored file came back changed");
}

/// `pchat db copy`: a serving database copied straight to two database
/// servers at once; refused without --replace (targets unchanged, the
/// reason named per target), one target down does not stop the other, and
/// the source serves again once it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_goes_straight_to_other_database_servers() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let source = DbServer::start(dirs[0].path(), "127.0.0.1:0");
    let (b, c) = (
        DbServer::start(dirs[1].path(), "127.0.0.1:0"),
        DbServer::start(dirs[2].path(), "127.0.0.1:0"),
    );
    let (_chat, cl, admin, room) = chat_room_on(&source.addr, "lobby").await;
    for i in 1..=30 {
        let r = cl
            .post(&admin, room, &format!("m{i}"), &format!("c{i}"))
            .await;
        assert_eq!(r.status, 201);
    }
    let src = db_status(&source.addr, "mgc");
    let copy = |extra: &[&str]| {
        pchat()
            .args(["db", "copy", "--json", "--server", &source.addr])
            .args(["--database", "mgc"])
            .args(extra)
            .env("PCHAT_CLUSTER_SECRET", SECRET)
            .output()
            .unwrap()
    };

    // Without --replace: each target already holds another mgc.
    let before = (db_status(&b.addr, "mgc"), db_status(&c.addr, "mgc"));
    let out = copy(&["--to", &b.addr, "--to", &c.addr]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&b.addr)
            && err.contains(&c.addr)
            && err.contains("a database other than the existing database"),
        "{err}"
    );
    assert_eq!(
        (db_status(&b.addr, "mgc"), db_status(&c.addr, "mgc")),
        before
    );

    // With --replace and --norecovery, to both at once, one address dead.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = copy(&[
        "--to",
        &b.addr,
        "--to",
        &dead,
        "--to",
        &c.addr,
        "--replace",
        "--norecovery",
    ]);
    assert!(!out.status.success(), "the dead target is reported");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["last_lsn"], src["last_lsn"], "{v}");
    let copies = v["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 3);
    assert!(copies[1]["error"].is_string(), "{v}");
    for (target, copied) in [(&b, &copies[0]), (&c, &copies[2])] {
        assert_eq!(copied["report"]["state"], "RESTORING", "{v}");
        let e = db_status(&target.addr, "mgc");
        assert_eq!(
            (&e["state"], &e["family_id"], &e["last_lsn"]),
            (&json!("RESTORING"), &src["family_id"], &src["last_lsn"]),
            "{e}"
        );
    }

    // The source serves again, and a copy with recovery comes ONLINE on a
    // new fork holding every message.
    let r = cl.post(&admin, room, "after", "c-after").await;
    assert_eq!(r.status, 201);
    let out = copy(&["--to", &b.addr, "--replace"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = db_status(&b.addr, "mgc");
    let now = db_status(&source.addr, "mgc");
    assert_eq!(e["state"], "ONLINE");
    assert_eq!(e["last_lsn"], now["last_lsn"]);
    assert_ne!(e["fork_id"], now["fork_id"]);
}

/// A copy in progress shows in its source's status (`copy`: bytes sent of
/// the stream's length), and `pchat db copy` draws it as a progress bar
/// every second. A target that takes the copy but reads nothing holds it
/// part way (the copy goes to every target in step); once it reads, the
/// copy finishes, and the entry goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_progress_shows_how_far_it_has_come() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let source = DbServer::start(dirs[0].path(), "127.0.0.1:0");
    let target = DbServer::start(dirs[1].path(), "127.0.0.1:0");
    let (_chat, cl, admin, room) = chat_room_on(&source.addr, "lobby").await;
    // 32 MB of uploads, which a copy of mgc carries: several times what the
    // socket buffers (the sink reads nothing, so its window stays small)
    // and the copy's chunks in flight (4 MiB) hold.
    for f in 0..2u32 {
        let content: Vec<u8> = (0..16_000_000u32).map(|i| ((i + f) % 251) as u8).collect();
        let name = format!("f{f}.bin");
        let up = super::files::upload(&cl, &admin, room, &name, &name, content).await;
        assert_eq!(up.status, 201, "{}", up.body);
    }

    let (sink, release) = stalling_target().await;
    let copy = pchat()
        .args(["db", "copy", "--json", "--server", &source.addr])
        .args(["--database", "mgc", "--to", &target.addr, "--to", &sink])
        .arg("--replace")
        .env("PCHAT_CLUSTER_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let progress = || db_status(&source.addr, "mgc")["copy"].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while progress()["sent"].as_u64().unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "no copy in status");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Held part way, and long enough for a progress line or two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let held = progress();
    let (sent, total) = (
        held["sent"].as_u64().unwrap(),
        held["total"].as_u64().unwrap(),
    );
    assert!(total > 32_000_000, "{held}");
    assert!(sent > 0 && sent < total, "{held}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        progress(),
        held,
        "the copy moved past a target that reads nothing"
    );

    release.send(()).unwrap();
    let out = copy.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The sink never answers with a restore report: that target fails.
    assert!(!out.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes"].as_u64(), Some(total), "{v}");
    assert_eq!(v["copies"][0]["report"]["state"], "ONLINE", "{v}");
    assert!(v["copies"][1]["error"].is_string(), "{v}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("  mgc: [") && l.contains("MiB/s")),
        "no progress bar on stderr: {err}"
    );
    assert!(progress().is_null(), "the copy is still shown");
    assert_eq!(db_status(&target.addr, "mgc")["state"], "ONLINE");
}

/// A chat server (on a temporary directory) using the database server at
/// `database`: the server, a client, the administrator's token and the id
/// of a new open room `name`.
async fn chat_room_on(database: &str, name: &str) -> (Server, Client, String, i64) {
    let env = [
        ("PCHAT_BOOTSTRAP_ADMIN", format!("{ADMIN}:{ADMIN_PW}")),
        ("PCHAT_CLUSTER_SECRET", SECRET.to_string()),
        ("PCHAT_DATABASE", database.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let chat = Server::start_temp(&env);
    let c = chat.client();
    let admin = c.admin().await;
    let cat = c.category(&admin, "general").await;
    let room = c
        .room(
            &admin,
            json!({"name": name, "category": cat, "privacy": "open"}),
        )
        .await;
    (chat, c, admin, room)
}

/// A copy target (its address answered) that passes the handshake and takes
/// the copy's request, then reads nothing until released; then it reads
/// the rest and hangs up without a report.
async fn stalling_target() -> (String, tokio::sync::oneshot::Sender<()>) {
    use pchat_wire::message::{ClientMsg, ServerMsg};
    use pchat_wire::{auth, frame, PROTOCOL_VERSION};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let nonce = auth::nonce();
        let challenge = ServerMsg::Challenge {
            version: PROTOCOL_VERSION,
            server: "sink".into(),
            nonce: nonce.clone(),
        };
        frame::write(&mut w, &challenge).await.unwrap();
        let ClientMsg::Hello { client, .. } = frame::read(&mut r).await.unwrap() else {
            panic!("no hello")
        };
        let proof = auth::server_proof(SECRET.as_bytes(), &nonce, &client);
        let welcome = ServerMsg::Welcome {
            server: "sink".into(),
            proof,
        };
        frame::write(&mut w, &welcome).await.unwrap();
        let _request: ClientMsg = frame::read(&mut r).await.unwrap();
        let _ = released.await;
        let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    });
    (addr, release)
}

/// A sender that stops in the middle of a copy: the target gives up after
/// 30 s without data, answers why, and its database is as it was, serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_sender_hangs_leaves_the_target_as_it_was() {
    use pchat_wire::frame;
    use pchat_wire::message::{ClientMsg, Db, Request, ServerMsg};
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let target = DbServer::start(dir.path(), "127.0.0.1:0");
    let before = db_status(&target.addr, "mgc");
    let (mut r, mut w, _) =
        pchat_wire::client::handshake(&target.addr, SECRET.as_bytes(), "hanging sender")
            .await
            .unwrap();
    let req = Request::ReceiveCopy {
        db: Db::Mgc,
        replace: true,
        recovery: pchat_store::Recovery::NoRecovery,
    };
    frame::write(&mut w, &ClientMsg::Request { id: 1, req })
        .await
        .unwrap();
    // A header that promises a 1 MiB database; then half of it, then nothing.
    let head = serde_json::to_vec(&json!({
        "format": 1, "kind": "full", "database": "mgc", "family_id": "f",
        "fork_id": "k", "forks": [], "first_lsn": 1, "last_lsn": 5, "name": "",
        "description": "", "created_at": 0, "pchat_version": "test",
        "sections": [{"name": "db", "len": 1 << 20}],
    }))
    .unwrap();
    w.write_all(&(head.len() as u32).to_le_bytes())
        .await
        .unwrap();
    w.write_all(&head).await.unwrap();
    w.write_all(&vec![7u8; 512 << 10]).await.unwrap();
    let t0 = std::time::Instant::now();
    let answer: ServerMsg = tokio::time::timeout(Duration::from_secs(90), frame::read(&mut r))
        .await
        .expect("the target answers")
        .unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(25) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
    match answer {
        ServerMsg::Response { result: Err(e), .. } => {
            assert!(e.to_string().contains("sent nothing for 30 s"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(db_status(&target.addr, "mgc"), before);
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
