//! Durability by crashing: SIGKILL mid-load, and SIGTERM drains.

use super::common::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (room, user, client_msg_id) → acknowledged seq.
type Acked = Arc<Mutex<HashMap<(i64, String, String), i64>>>;

async fn load(
    server: &Server,
    c: &Client,
    rooms: &[i64],
    users: &[(String, String)],
    acked: Acked,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (ui, (name, token)) in users.iter().enumerate() {
        for lane in 0..2 {
            let (c, token, name, acked, rooms) = (
                c.clone(),
                token.clone(),
                name.clone(),
                acked.clone(),
                rooms.to_vec(),
            );
            let ws_url = server.ws_url(&token);
            tasks.push(tokio::spawn(async move {
                // half the clients post over HTTP, half over WebSocket
                if lane == 0 {
                    for i in 0.. {
                        let room = rooms[(ui + i) % rooms.len()];
                        let cmid = format!("h{i}");
                        let Ok(resp) = c
                            .http
                            .post(format!("{}/api/v1/rooms/{room}/messages", c.base))
                            .bearer_auth(&token)
                            .json(&json!({"body": format!("{name} {cmid}"), "client_msg_id": cmid}))
                            .send()
                            .await
                        else {
                            return;
                        };
                        if resp.status().as_u16() != 201 {
                            return;
                        }
                        let Ok(v) = resp.json::<serde_json::Value>().await else { return };
                        acked.lock().unwrap().insert((room, name.clone(), cmid), v["seq"].as_i64().unwrap());
                    }
                } else {
                    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else { return };
                    let mut sent: HashMap<String, i64> = HashMap::new();
                    for i in 0.. {
                        // keep 8 in flight
                        while sent.len() < 8 {
                            let room = rooms[(ui + i + sent.len()) % rooms.len()];
                            let cmid = format!("w{i}-{}", sent.len());
                            let f = json!({"type": "post", "room": room, "body": format!("{name} {cmid}"), "client_msg_id": cmid});
                            if futures_util::SinkExt::send(&mut ws, tokio_tungstenite::tungstenite::Message::text(f.to_string())).await.is_err() {
                                return;
                            }
                            sent.insert(cmid, room);
                        }
                        let Some(f) = ws_next(&mut ws, Duration::from_secs(10)).await else { return };
                        if f["type"] == "ack" {
                            let cmid = f["client_msg_id"].as_str().unwrap().to_string();
                            if let Some(room) = sent.remove(&cmid) {
                                acked.lock().unwrap().insert((room, name.clone(), cmid), f["seq"].as_i64().unwrap());
                            }
                        }
                    }
                }
            }));
        }
    }
    tasks
}

/// Checks every acknowledged post is in history exactly once at its seq,
/// every room's seqs are 1..=n, and mgccomp has a CHAT record for each.
async fn check(
    server: &Server,
    c: &Client,
    rooms: &[i64],
    acked: &HashMap<(i64, String, String), i64>,
) {
    let admin = c.admin().await;
    let mut found: HashMap<(i64, String, String), Vec<i64>> = HashMap::new();
    let mut total = 0;
    for room in rooms {
        let hist = c.history(&admin, *room).await;
        assert_eq!(
            seqs(&hist),
            (1..=hist.len() as i64).collect::<Vec<_>>(),
            "room {room} has a gap"
        );
        total += hist.len();
        for m in hist {
            let key = (
                *room,
                m["sender"].as_str().unwrap().to_string(),
                m["client_msg_id"].as_str().unwrap().to_string(),
            );
            found
                .entry(key)
                .or_default()
                .push(m["seq"].as_i64().unwrap());
        }
    }
    for (key, seq) in acked {
        assert_eq!(
            found.get(key),
            Some(&vec![*seq]),
            "acknowledged post {key:?} (seq {seq}) missing or duplicated"
        );
    }
    // Every message (acknowledged or not) reaches mgccomp exactly once, once the
    // recorder has caught up after the restart.
    let comp = server.data_dir.join("mgccomp.db");
    let mut chat = 0;
    for _ in 0..200 {
        let conn = rusqlite::Connection::open_with_flags(
            &comp,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        chat = conn
            .query_row(
                "SELECT count(*) FROM compliance WHERE kind = 'CHAT'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
        if chat as usize == total {
            let distinct: i64 = conn
                .query_row("SELECT count(*) FROM (SELECT DISTINCT room_id, seq FROM compliance WHERE kind = 'CHAT')", [], |r| r.get(0))
                .unwrap();
            assert_eq!(distinct, chat, "duplicate compliance records");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mgccomp has {chat} CHAT records for {total} messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_and_duplicates_nothing_acknowledged() {
    let mut server = Server::start();
    let c = server.client();
    let admin = c.admin().await;
    let cat = c.category(&admin, "general").await;
    let mut rooms = Vec::new();
    for i in 0..3 {
        rooms.push(
            c.room(
                &admin,
                json!({"name": format!("r{i}"), "category": cat, "privacy": "open"}),
            )
            .await,
        );
    }
    let mut users = Vec::new();
    for i in 0..8 {
        let name = format!("u{i}");
        users.push((name.clone(), c.user(&admin, &name).await));
    }
    let acked: Acked = Arc::default();
    for round in 0..2 {
        let tasks = load(&server, &c, &rooms, &users, acked.clone()).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let before = acked.lock().unwrap().len();
        server.kill9();
        for t in tasks {
            let _ = t.await;
        }
        assert!(
            before > 50,
            "round {round}: only {before} posts acknowledged before the kill"
        );
        server = server.restart();
        let c = server.client();
        let snapshot = acked.lock().unwrap().clone();
        check(&server, &c, &rooms, &snapshot).await;
        // tokens (sessions) survive the crash
        assert_eq!(
            c.call(
                "GET",
                "/api/v1/users/me",
                Some(&users[0].1),
                serde_json::Value::Null
            )
            .await
            .status,
            200
        );
    }
    // retrying every acknowledged post after the crash creates nothing
    let c = server.client();
    let snapshot = acked.lock().unwrap().clone();
    let tokens: HashMap<&str, &str> = users
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    for ((room, name, cmid), seq) in snapshot.iter().take(100) {
        let a = c.post(tokens[name.as_str()], *room, "retry", cmid).await;
        assert_eq!((a.status, a.body["seq"].as_i64()), (200, Some(*seq)));
    }
    let unique: HashSet<_> = snapshot.keys().collect();
    assert_eq!(unique.len(), snapshot.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let mut server = Server::start();
    let c = server.client();
    let admin = c.admin().await;
    let cat = c.category(&admin, "general").await;
    let room = c
        .room(
            &admin,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    let users = vec![("admin".to_string(), admin.clone())];
    let mut ws = ws_connect(&server.ws_url(&admin)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 0}}),
    )
    .await;
    ws_until(&mut ws, "subscribed").await;
    let acked: Acked = Arc::default();
    let tasks = load(&server, &c, &[room], &users, acked.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    for t in tasks {
        let _ = t.await;
    }
    // the subscriber was told to go away
    let mut frames = Vec::new();
    while let Some(f) = ws_next(&mut ws, Duration::from_secs(2)).await {
        frames.push(f);
    }
    assert!(
        frames.iter().any(|f| f["type"] == "going_away"),
        "no going_away frame"
    );
    // mgccomp was brought up to date before exit: check the files before restarting
    let conn = rusqlite::Connection::open(server.data_dir.join("mgccomp.db")).unwrap();
    let recorded: i64 = conn
        .query_row(
            "SELECT count(*) FROM compliance WHERE kind = 'CHAT'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mgc = rusqlite::Connection::open(server.data_dir.join("mgc.db")).unwrap();
    let messages: i64 = mgc
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(recorded, messages);
    drop((conn, mgc));
    let server = server.restart();
    let snapshot = acked.lock().unwrap().clone();
    assert!(!snapshot.is_empty());
    check(&server, &server.client(), &[room], &snapshot).await;
}
