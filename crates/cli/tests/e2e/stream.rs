//! The WebSocket stream: catch-up then live with no gap and no duplicate,
//! pipelined posts, resume after reconnect.

use super::common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn catch_up_then_live_then_resume() {
    let Setup {
        server,
        c,
        admin: _,
        alice,
        bob,
        cat,
    } = setup().await;
    let room = c
        .room(
            &alice,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    for i in 1..=5 {
        c.post(&alice, room, &format!("m{i}"), &format!("h{i}"))
            .await;
    }

    // bob has seen up to 2: gets 3..5 from history, then the subscribed frame
    let mut ws = ws_connect(&server.ws_url(&bob)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 2}}),
    )
    .await;
    let frames = ws_until(&mut ws, "subscribed").await;
    assert_eq!(seqs(&frames), vec![3, 4, 5]);
    assert_eq!(frames.last().unwrap()["rooms"][room.to_string()], 5);

    // live: a post over HTTP arrives; a post over the socket is acked and arrives
    c.post(&alice, room, "m6", "h6").await;
    let f = ws_next(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (f["type"].as_str(), f["seq"].as_i64(), f["sender"].as_str()),
        (Some("message"), Some(6), Some("alice"))
    );
    ws_send(&mut ws, json!({"type": "post", "room": room, "body": "from bob", "client_msg_id": "w1", "alert": true})).await;
    let got = [
        ws_next(&mut ws, Duration::from_secs(5)).await.unwrap(),
        ws_next(&mut ws, Duration::from_secs(5)).await.unwrap(),
    ];
    let ack = got.iter().find(|f| f["type"] == "ack").expect("ack");
    assert_eq!(
        (ack["seq"].as_i64(), ack["created"].as_bool()),
        (Some(7), Some(true))
    );
    let msg = got
        .iter()
        .find(|f| f["type"] == "message")
        .expect("message");
    assert_eq!(
        (msg["seq"].as_i64(), msg["alert"].as_bool()),
        (Some(7), Some(true))
    );
    // retry of the same client_msg_id: acked with the same seq, not created again
    ws_send(
        &mut ws,
        json!({"type": "post", "room": room, "body": "from bob", "client_msg_id": "w1"}),
    )
    .await;
    let ack = ws_next(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["seq"].as_i64(),
            ack["created"].as_bool()
        ),
        (Some("ack"), Some(7), Some(false))
    );
    assert!(
        ws_next(&mut ws, Duration::from_millis(300)).await.is_none(),
        "a retry must not deliver anything"
    );
    drop(ws);

    // more happens while bob is away; reconnecting with his cursor resumes exactly
    c.post(&alice, room, "m8", "h8").await;
    let mut ws = ws_connect(&server.ws_url(&bob)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 7}}),
    )
    .await;
    assert_eq!(seqs(&ws_until(&mut ws, "subscribed").await), vec![8]);

    // bad frames get error frames and the connection stays usable
    ws_send(&mut ws, json!({"type": "dance"})).await;
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(5)).await.unwrap()["code"],
        "invalid_request"
    );
    ws.send_text("not json").await;
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(5)).await.unwrap()["code"],
        "malformed_json"
    );
    ws_send(&mut ws, json!({"type": "post", "room": room, "body": "x".repeat(16 * 1024 + 1), "client_msg_id": "big"})).await;
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(5)).await.unwrap()["code"],
        "message_too_large"
    );
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "pong"
    );
}

trait SendText {
    async fn send_text(&mut self, t: &str);
}

impl SendText for Ws {
    async fn send_text(&mut self, t: &str) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::text(t.to_string()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn subscribing_refuses_rooms_the_user_may_not_read() {
    let Setup {
        server,
        c,
        admin: _,
        alice,
        bob,
        cat,
    } = setup().await;
    let closed = c
        .room(&alice, json!({"name": "team", "category": cat}))
        .await;
    let secret = c
        .room(
            &alice,
            json!({"name": "board", "category": cat, "privacy": "secret"}),
        )
        .await;
    c.post(&alice, closed, "private", "p1").await;
    let mut ws = ws_connect(&server.ws_url(&bob)).await;
    ws_send(&mut ws, json!({"type": "subscribe", "rooms": {closed.to_string(): 0, secret.to_string(): 0, "nope": 0}})).await;
    let frames = ws_until(&mut ws, "subscribed").await;
    let codes: Vec<&str> = frames.iter().filter_map(|f| f["code"].as_str()).collect();
    assert_eq!(
        codes,
        vec!["forbidden", "room_not_found", "invalid_request"]
    );
    assert!(seqs(&frames).is_empty());
    assert_eq!(frames.last().unwrap()["rooms"], json!({}));
    // posting there over the socket is refused too
    ws_send(
        &mut ws,
        json!({"type": "post", "room": closed, "body": "hi", "client_msg_id": "z"}),
    )
    .await;
    let e = ws_next(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (
            e["type"].as_str(),
            e["code"].as_str(),
            e["client_msg_id"].as_str()
        ),
        (Some("error"), Some("forbidden"), Some("z"))
    );
    // a token is required to open the stream
    let err = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/stream",
        server.url.replacen("http", "ws", 1)
    ))
    .await;
    assert!(err.is_err());
    // losing membership ends the subscription
    c.call(
        "PATCH",
        &format!("/api/v1/rooms/{closed}"),
        Some(&alice),
        json!({"members": {"add": ["bob"]}}),
    )
    .await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {closed.to_string(): 0}}),
    )
    .await;
    assert_eq!(seqs(&ws_until(&mut ws, "subscribed").await), vec![1]);
    c.call(
        "PATCH",
        &format!("/api/v1/rooms/{closed}"),
        Some(&alice),
        json!({"members": {"remove": ["bob"]}}),
    )
    .await;
    let f = ws_next(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (f["type"].as_str(), f["room"].as_i64()),
        (Some("unsubscribed"), Some(closed))
    );
    c.post(&alice, closed, "after bob left", "p2").await;
    assert!(ws_next(&mut ws, Duration::from_millis(300)).await.is_none());
}

/// Many writers post while a reader subscribes mid-stream: the reader gets
/// every message exactly once, in order, from its cursor on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_no_duplicate_under_concurrent_posting() {
    let server = Server::start();
    let c = server.client();
    let admin = c.admin().await;
    let cat = c.category(&admin, "general").await;
    let room = c
        .room(
            &admin,
            json!({"name": "busy", "category": cat, "privacy": "open"}),
        )
        .await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let token = c.user(&admin, &format!("w{w}")).await;
        let url = server.ws_url(&token);
        writers.push(tokio::spawn(async move {
            let mut ws = ws_connect(&url).await;
            // pipelined: 50 posts sent before reading any ack
            for i in 0..50 {
                ws_send(&mut ws, json!({"type": "post", "room": room, "body": format!("w{w} #{i}"), "client_msg_id": format!("{i}")})).await;
            }
            let mut acks = Vec::new();
            while acks.len() < 50 {
                let f = ws_next(&mut ws, Duration::from_secs(10)).await.expect("ack");
                if f["type"] == "ack" {
                    acks.push(f["seq"].as_i64().unwrap());
                }
            }
            acks
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let reader = c.user(&admin, "reader").await;
    let mut ws = ws_connect(&server.ws_url(&reader)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 0}}),
    )
    .await;
    let mut all_acks = Vec::new();
    for w in writers {
        let acks = w.await.unwrap();
        // acknowledged in the order posted: seqs increase per connection
        assert!(
            acks.windows(2).all(|p| p[0] < p[1]),
            "acks out of order: {acks:?}"
        );
        all_acks.extend(acks);
    }
    let mut got = Vec::new();
    while got.len() < 200 {
        match ws_next(&mut ws, Duration::from_secs(10)).await {
            Some(f) if f["type"] == "message" => got.push(f["seq"].as_i64().unwrap()),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
    all_acks.sort();
    assert_eq!(all_acks, (1..=200).collect::<Vec<_>>());
}

/// A subscriber that stops reading while a room runs far ahead: its outbox
/// overflows, the room is not held up, and once it reads again it gets every
/// message exactly once, in order (refilled from history).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_refills_from_history_without_gaps() {
    let Setup {
        server,
        c,
        alice,
        bob,
        cat,
        ..
    } = setup().await;
    let room = c
        .room(
            &alice,
            json!({"name": "busy", "category": cat, "privacy": "open"}),
        )
        .await;
    let mut slow = ws_connect(&server.ws_url(&bob)).await;
    ws_send(
        &mut slow,
        json!({"type": "subscribe", "rooms": {room.to_string(): 0}}),
    )
    .await;
    ws_until(&mut slow, "subscribed").await;
    // 3,000 × 4 KiB: far more than the socket buffers and the 512-frame outbox.
    const N: usize = 3000;
    let mut writer = ws_connect(&server.ws_url(&alice)).await;
    let body = "x".repeat(4096);
    let mut acked = 0;
    for i in 0..N {
        ws_send(
            &mut writer,
            json!({"type": "post", "room": room, "body": body, "client_msg_id": format!("{i}")}),
        )
        .await;
        if i >= 200 {
            // keep at most 200 in flight
            while acked + 200 <= i {
                if ws_next(&mut writer, Duration::from_secs(20))
                    .await
                    .expect("ack")["type"]
                    == "ack"
                {
                    acked += 1;
                }
            }
        }
    }
    while acked < N {
        if ws_next(&mut writer, Duration::from_secs(20))
            .await
            .expect("ack")["type"]
            == "ack"
        {
            acked += 1;
        }
    }
    // now read everything the slow subscriber was sent
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        match ws_next(&mut slow, Duration::from_secs(20)).await {
            Some(f) if f["type"] == "message" => got.push(f["seq"].as_i64().unwrap()),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(got, (1..=N as i64).collect::<Vec<_>>());
    let metrics = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refills: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pchat_subscriber_refills_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(
        refills > 0,
        "the outbox never overflowed: the test did not exercise the refill path"
    );
}
