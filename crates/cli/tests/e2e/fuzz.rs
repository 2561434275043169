//! Mutated requests against every write endpoint: never a 5xx, always the
//! JSON error shape on refusal, and a refused request changes nothing.

use super::common::*;
use serde_json::{json, Value};

/// xorshift: deterministic, so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Odd values to put where a field's value was.
fn odd_value(rng: &mut Rng) -> Value {
    let choices = [
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(1e308),
        json!(9_223_372_036_854_775_807i64),
        json!(""),
        json!(" padded "),
        json!("\u{0000}\u{202e}\u{1F600}"),
        json!("x".repeat(20_000)),
        json!([]),
        json!({}),
        json!({"add": 5}),
        json!(["alice", 7]),
    ];
    choices[rng.below(choices.len())].clone()
}

/// A mutation of a valid JSON body, as bytes.
fn mutate(rng: &mut Rng, valid: &Value) -> Vec<u8> {
    let bytes = serde_json::to_vec(valid).unwrap();
    match rng.below(6) {
        // truncated
        0 => bytes[..rng.below(bytes.len())].to_vec(),
        // a byte flipped (may break UTF-8 or syntax)
        1 => {
            let mut b = bytes.clone();
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
            b
        }
        // a field's value replaced
        2 | 3 => {
            let mut v = valid.clone();
            if let Some(obj) = v.as_object_mut() {
                let keys: Vec<String> = obj.keys().cloned().collect();
                let k = &keys[rng.below(keys.len())];
                obj.insert(k.clone(), odd_value(rng));
            }
            serde_json::to_vec(&v).unwrap()
        }
        // a field removed, or an unknown one added
        4 => {
            let mut v = valid.clone();
            if let Some(obj) = v.as_object_mut() {
                if rng.below(2) == 0 {
                    let keys: Vec<String> = obj.keys().cloned().collect();
                    obj.remove(&keys[rng.below(keys.len())]);
                } else {
                    obj.insert("surprise".into(), odd_value(rng));
                }
            }
            serde_json::to_vec(&v).unwrap()
        }
        // not an object at all
        _ => serde_json::to_vec(&odd_value(rng)).unwrap(),
    }
}

#[tokio::test]
async fn mutated_requests_never_break_the_server() {
    let Setup {
        server: _server,
        c,
        admin,
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
    c.post(&alice, room, "first", "m0").await;
    let snapshot = || async {
        let rooms = c
            .call("GET", "/api/v1/rooms", Some(&admin), Value::Null)
            .await
            .body;
        let hist = c.history(&admin, room).await;
        let mut pool = Vec::new();
        for path in [
            "/api/v1/categories",
            "/api/v1/groups",
            "/api/v1/addins",
            "/api/v1/configuration",
        ] {
            pool.push(c.call("GET", path, Some(&admin), Value::Null).await.body);
        }
        let feeds = c
            .call("GET", "/api/v1/feeds", Some(&bob), Value::Null)
            .await
            .body;
        let invites = c
            .call("GET", "/api/v1/invitations", Some(&bob), Value::Null)
            .await
            .body;
        (rooms, hist, pool, feeds, invites)
    };
    let mut state = snapshot().await;

    let endpoints: Vec<(&str, String, &str, Value)> = vec![
        (
            "POST",
            "/api/v1/sessions".into(),
            "",
            json!({"name": "alice", "password": "alice-password"}),
        ),
        (
            "POST",
            "/api/v1/users".into(),
            &admin,
            json!({"name": "eve", "password": "eve-password", "display_name": "Eve", "admin": false}),
        ),
        (
            "POST",
            "/api/v1/categories".into(),
            &admin,
            json!({"name": "ops", "description": "d"}),
        ),
        (
            "POST",
            "/api/v1/rooms".into(),
            &bob,
            json!({"name": "new", "category": cat, "description": "d", "privacy": "open", "type": "normal"}),
        ),
        (
            "PATCH",
            format!("/api/v1/rooms/{room}"),
            &alice,
            json!({"name": "lobby2", "description": "d", "members": {"add": ["bob"]}}),
        ),
        (
            "POST",
            format!("/api/v1/rooms/{room}/messages"),
            &alice,
            json!({"body": "hello", "client_msg_id": "fuzz", "alert": false}),
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            &admin,
            json!({"name": "team", "description": "d", "members": ["alice", "bob"]}),
        ),
        (
            "PATCH",
            format!("/api/v1/categories/{cat}"),
            &admin,
            json!({"description": "d", "file_upload": true, "allowed": {"add": ["*"]}, "denied": {"remove": ["bob"]}}),
        ),
        (
            "PATCH",
            format!("/api/v1/rooms/{room}"),
            &admin,
            json!({"category": cat, "disabled": false, "invitations": "inherit", "addin": null}),
        ),
        (
            "POST",
            format!("/api/v1/rooms/{room}/invitations"),
            &alice,
            json!({"user": "bob"}),
        ),
        (
            "POST",
            "/api/v1/messages/remove".into(),
            &admin,
            json!({"room": room, "user": "bob", "text": "zzz", "since": 0, "until": 1, "remove": false}),
        ),
        (
            "POST",
            format!("/api/v1/rooms/{room}/clear"),
            &admin,
            json!({"until": 1}),
        ),
        (
            "POST",
            "/api/v1/feeds".into(),
            &bob,
            json!({"name": "f", "words": ["hello"], "senders": ["alice"], "rooms": [room]}),
        ),
        (
            "PATCH",
            "/api/v1/configuration".into(),
            &admin,
            json!({"default_chat_history": 10, "max_file_size_kb": 100, "participant_update_limit": 50}),
        ),
        (
            "POST",
            "/api/v1/addins".into(),
            &admin,
            json!({"name": "wiki", "url": "https://wiki.example"}),
        ),
    ];
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut refused, mut accepted) = (0, 0);
    for round in 0..600 {
        let (method, path, token, valid) = &endpoints[round % endpoints.len()];
        let body = mutate(&mut rng, valid);
        let token = if token.is_empty() { None } else { Some(*token) };
        let a = c.send(method, path, token, Some(body.clone())).await;
        let what = format!(
            "{method} {path} with {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        assert!(a.status < 500, "{what} → {} {}", a.status, a.body);
        let now = snapshot().await;
        if a.status >= 400 {
            refused += 1;
            assert!(!a.code().is_empty(), "{what}: no error code in {}", a.body);
            assert_eq!(
                state,
                now,
                "{what} was refused ({}) but changed something",
                a.code()
            );
        } else {
            // Some mutations are still valid input (an optional field dropped).
            accepted += 1;
            state = now;
        }
    }
    assert!(
        refused > 400,
        "only {refused} of 600 mutations were refused ({accepted} accepted)"
    );
}
