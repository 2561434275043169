//! The HTTP API as a client uses it, and every kind of bad input.

use super::common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn rooms_messages_history_and_search() {
    let Setup {
        server: _server,
        c,
        admin: _,
        alice,
        bob,
        cat,
    } = setup().await;

    let open = c
        .room(
            &alice,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    let closed = c
        .room(&alice, json!({"name": "team", "category": "general"}))
        .await;
    let secret = c
        .room(
            &alice,
            json!({"name": "board", "category": cat, "privacy": "secret"}),
        )
        .await;

    // creator becomes manager; defaults are Closed/Normal
    let r = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{closed}"),
            Some(&alice),
            Value::Null,
        )
        .await;
    assert_eq!(
        (r.body["privacy"].as_str(), r.body["type"].as_str()),
        (Some("closed"), Some("normal"))
    );
    assert_eq!(r.body["managers"], json!(["alice"]));

    // bob sees the open and closed rooms, not the secret one
    let list = c
        .call("GET", "/api/v1/rooms", Some(&bob), Value::Null)
        .await;
    let names: Vec<&str> = list.body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["lobby", "team"]);

    // posting: 201, then the same client_msg_id again: 200 with the first message
    let first = c.post(&alice, open, "hello apples", "m1").await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(
        (first.body["seq"].as_i64(), first.body["sender"].as_str()),
        (Some(1), Some("alice"))
    );
    let again = c.post(&alice, open, "something else", "m1").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    // the same client_msg_id from another user is another message
    assert_eq!(c.post(&bob, open, "bob's apples", "m1").await.status, 201);
    for i in 3..=40 {
        assert_eq!(
            c.post(
                &alice,
                open,
                &format!("message {i} pears"),
                &format!("m{i}")
            )
            .await
            .status,
            201
        );
    }
    c.post(&alice, closed, "closed apples", "c1").await;
    c.post(&alice, secret, "secret apples", "s1").await;

    // history: latest 30 by default, ascending; before / after pages
    let latest = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{open}/messages"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(
        seqs(latest.body["messages"].as_array().unwrap()),
        (11..=40).collect::<Vec<_>>()
    );
    let before = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{open}/messages?before=5&limit=3"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(
        seqs(before.body["messages"].as_array().unwrap()),
        vec![2, 3, 4]
    );
    let after = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{open}/messages?after=38"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(
        seqs(after.body["messages"].as_array().unwrap()),
        vec![39, 40]
    );
    let all = c.history(&bob, open).await;
    assert_eq!(seqs(&all), (1..=40).collect::<Vec<_>>());

    // search: only rooms the caller may read, newest first, with paging
    let hits = |a: &Answer| -> Vec<String> {
        a.body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["body"].as_str().unwrap().to_string())
            .collect()
    };
    let s = c
        .call("GET", "/api/v1/search?q=apples", Some(&bob), Value::Null)
        .await;
    assert_eq!(hits(&s), vec!["bob's apples", "hello apples"]);
    let s = c
        .call("GET", "/api/v1/search?q=apples", Some(&alice), Value::Null)
        .await;
    assert_eq!(
        hits(&s),
        vec![
            "secret apples",
            "closed apples",
            "bob's apples",
            "hello apples"
        ]
    );
    let p1 = c
        .call(
            "GET",
            "/api/v1/search?q=pears&limit=5",
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(hits(&p1)[0], "message 40 pears");
    let cursor = p1.body["next_before"].as_str().unwrap().to_string();
    let p2 = c
        .call(
            "GET",
            &format!("/api/v1/search?q=pears&limit=5&before={cursor}"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(hits(&p2)[0], "message 35 pears");
    let s = c
        .call(
            "GET",
            &format!("/api/v1/search?q=apples&room={closed}"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!((s.status, s.code()), (403, "forbidden"));

    // membership: alice adds bob to the closed room; now he reads and posts
    let p = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{closed}"),
            Some(&alice),
            json!({"members": {"add": ["bob"]}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["members"], json!(["bob"]));
    assert_eq!(c.post(&bob, closed, "now I'm in", "b1").await.status, 201);
    let p = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{closed}"),
            Some(&alice),
            json!({"members": {"replace": []}}),
        )
        .await;
    assert_eq!(p.body["members"], json!([]));
    assert_eq!(c.post(&bob, closed, "out again", "b2").await.status, 403);

    // auditorium: only presenters post
    let aud = c
        .room(
            &alice,
            json!({"name": "town hall", "category": cat, "privacy": "open", "type": "auditorium"}),
        )
        .await;
    assert_eq!(
        c.post(&alice, aud, "manager, not presenter", "a1")
            .await
            .code(),
        "forbidden"
    );
    c.call(
        "PATCH",
        &format!("/api/v1/rooms/{aud}"),
        Some(&alice),
        json!({"presenters": {"add": ["alice"]}}),
    )
    .await;
    assert_eq!(
        c.post(&alice, aud, "now presenting", "a1").await.status,
        201
    );

    // sign out: the token stops working
    assert_eq!(
        c.call("DELETE", "/api/v1/sessions", Some(&bob), Value::Null)
            .await
            .status,
        204
    );
    assert_eq!(
        c.call("GET", "/api/v1/rooms", Some(&bob), Value::Null)
            .await
            .code(),
        "unauthorized"
    );
}

#[tokio::test]
async fn bad_input_gets_a_stable_error_and_changes_nothing() {
    let Setup {
        server: _server,
        c,
        admin,
        alice,
        bob,
        cat,
    } = setup().await;
    let open = c
        .room(
            &alice,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    let closed = c
        .room(&alice, json!({"name": "team", "category": cat}))
        .await;
    let secret = c
        .room(
            &alice,
            json!({"name": "board", "category": cat, "privacy": "secret"}),
        )
        .await;
    let aud = c
        .room(
            &alice,
            json!({"name": "hall", "category": cat, "privacy": "open", "type": "auditorium"}),
        )
        .await;
    c.post(&alice, open, "before", "x0").await;

    let snapshot = |c: Client, t: String| async move {
        let rooms = c
            .call("GET", "/api/v1/rooms", Some(&t), Value::Null)
            .await
            .body;
        let mut hist = Vec::new();
        for r in rooms["rooms"].as_array().unwrap() {
            hist.push(c.history(&t, r["id"].as_i64().unwrap()).await);
        }
        (rooms, hist)
    };
    let before = snapshot(c.clone(), admin.clone()).await;

    let msgs = |room: i64| format!("/api/v1/rooms/{room}/messages");
    let big = "x".repeat(16 * 1024 + 1);
    // (what, method, path, token, body, status, code)
    type Case<'a> = (
        &'a str,
        &'a str,
        String,
        Option<&'a str>,
        Option<Vec<u8>>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed json",
            "POST",
            msgs(open),
            Some(&alice),
            Some(b"{\"body\": ".to_vec()),
            400,
            "malformed_json",
        ),
        (
            "not json at all",
            "POST",
            msgs(open),
            Some(&alice),
            Some(b"hello".to_vec()),
            400,
            "malformed_json",
        ),
        (
            "wrong field type",
            "POST",
            msgs(open),
            Some(&alice),
            Some(br#"{"body": 5, "client_msg_id": "a"}"#.to_vec()),
            422,
            "invalid_request",
        ),
        (
            "missing client_msg_id",
            "POST",
            msgs(open),
            Some(&alice),
            Some(br#"{"body": "hi"}"#.to_vec()),
            422,
            "invalid_request",
        ),
        (
            "unknown field",
            "POST",
            msgs(open),
            Some(&alice),
            Some(br#"{"body": "hi", "client_msg_id": "a", "x": 1}"#.to_vec()),
            422,
            "invalid_request",
        ),
        (
            "empty body",
            "POST",
            msgs(open),
            Some(&alice),
            Some(br#"{"body": "", "client_msg_id": "a"}"#.to_vec()),
            422,
            "invalid_value",
        ),
        (
            "body over 16 KiB",
            "POST",
            msgs(open),
            Some(&alice),
            Some(serde_json::to_vec(&json!({"body": big, "client_msg_id": "a"})).unwrap()),
            413,
            "message_too_large",
        ),
        (
            "invalid utf-8",
            "POST",
            msgs(open),
            Some(&alice),
            Some(b"{\"body\": \"\xff\xfe\", \"client_msg_id\": \"a\"}".to_vec()),
            400,
            "invalid_utf8",
        ),
        (
            "unknown room",
            "POST",
            msgs(9999),
            Some(&alice),
            Some(br#"{"body": "hi", "client_msg_id": "a"}"#.to_vec()),
            404,
            "room_not_found",
        ),
        (
            "room id not a number",
            "GET",
            "/api/v1/rooms/abc".into(),
            Some(&alice),
            None,
            404,
            "room_not_found",
        ),
        (
            "read secret as non-member",
            "GET",
            msgs(secret),
            Some(&bob),
            None,
            404,
            "room_not_found",
        ),
        (
            "get secret as non-member",
            "GET",
            format!("/api/v1/rooms/{secret}"),
            Some(&bob),
            None,
            404,
            "room_not_found",
        ),
        (
            "post secret as non-member",
            "POST",
            msgs(secret),
            Some(&bob),
            Some(br#"{"body": "hi", "client_msg_id": "a"}"#.to_vec()),
            404,
            "room_not_found",
        ),
        (
            "read closed as non-member",
            "GET",
            msgs(closed),
            Some(&bob),
            None,
            403,
            "forbidden",
        ),
        (
            "post closed as non-member",
            "POST",
            msgs(closed),
            Some(&bob),
            Some(br#"{"body": "hi", "client_msg_id": "a"}"#.to_vec()),
            403,
            "forbidden",
        ),
        (
            "post auditorium as non-presenter",
            "POST",
            msgs(aud),
            Some(&bob),
            Some(br#"{"body": "hi", "client_msg_id": "a"}"#.to_vec()),
            403,
            "forbidden",
        ),
        (
            "duplicate room name",
            "POST",
            "/api/v1/rooms".into(),
            Some(&bob),
            Some(serde_json::to_vec(&json!({"name": "LOBBY", "category": cat})).unwrap()),
            409,
            "name_taken",
        ),
        (
            "unknown category",
            "POST",
            "/api/v1/rooms".into(),
            Some(&bob),
            Some(serde_json::to_vec(&json!({"name": "new", "category": "nope"})).unwrap()),
            404,
            "category_not_found",
        ),
        (
            "bad privacy",
            "POST",
            "/api/v1/rooms".into(),
            Some(&bob),
            Some(
                serde_json::to_vec(&json!({"name": "new", "category": cat, "privacy": "public"}))
                    .unwrap(),
            ),
            422,
            "invalid_request",
        ),
        (
            "missing token",
            "GET",
            "/api/v1/rooms".into(),
            None,
            None,
            401,
            "unauthorized",
        ),
        (
            "wrong token",
            "GET",
            "/api/v1/rooms".into(),
            Some("0000"),
            None,
            401,
            "unauthorized",
        ),
        (
            "wrong password",
            "POST",
            "/api/v1/sessions".into(),
            None,
            Some(br#"{"name": "alice", "password": "nope-nope"}"#.to_vec()),
            401,
            "invalid_credentials",
        ),
        (
            "unknown user sign-in",
            "POST",
            "/api/v1/sessions".into(),
            None,
            Some(br#"{"name": "mallory", "password": "nope-nope"}"#.to_vec()),
            401,
            "invalid_credentials",
        ),
        (
            "non-admin creates user",
            "POST",
            "/api/v1/users".into(),
            Some(&bob),
            Some(br#"{"name": "eve", "password": "eve-password"}"#.to_vec()),
            403,
            "forbidden",
        ),
        (
            "non-admin creates category",
            "POST",
            "/api/v1/categories".into(),
            Some(&bob),
            Some(br#"{"name": "mine"}"#.to_vec()),
            403,
            "forbidden",
        ),
        (
            "short password",
            "POST",
            "/api/v1/users".into(),
            Some(&admin),
            Some(br#"{"name": "eve", "password": "short"}"#.to_vec()),
            422,
            "invalid_value",
        ),
        (
            "duplicate user",
            "POST",
            "/api/v1/users".into(),
            Some(&admin),
            Some(br#"{"name": "Alice", "password": "alice-password"}"#.to_vec()),
            409,
            "name_taken",
        ),
        (
            "non-manager edits room",
            "PATCH",
            format!("/api/v1/rooms/{open}"),
            Some(&bob),
            Some(br#"{"description": "mine now"}"#.to_vec()),
            403,
            "forbidden",
        ),
        (
            "unknown user in list",
            "PATCH",
            format!("/api/v1/rooms/{open}"),
            Some(&alice),
            Some(br#"{"members": {"add": ["bob", "ghost"]}}"#.to_vec()),
            422,
            "unknown_user",
        ),
        (
            "limit out of range",
            "GET",
            format!("{}?limit=501", msgs(open)),
            Some(&alice),
            None,
            400,
            "invalid_query",
        ),
        (
            "before and after",
            "GET",
            format!("{}?before=3&after=1", msgs(open)),
            Some(&alice),
            None,
            400,
            "invalid_query",
        ),
        (
            "seq not a number",
            "GET",
            format!("{}?before=x", msgs(open)),
            Some(&alice),
            None,
            400,
            "invalid_query",
        ),
        (
            "search without q",
            "GET",
            "/api/v1/search".into(),
            Some(&alice),
            None,
            400,
            "invalid_query",
        ),
        (
            "unknown path",
            "GET",
            "/api/v1/nothing".into(),
            Some(&alice),
            None,
            404,
            "not_found",
        ),
        (
            "wrong method",
            "PUT",
            "/api/v1/rooms".into(),
            Some(&alice),
            None,
            405,
            "method_not_allowed",
        ),
        (
            "client_msg_id reused in another room",
            "POST",
            msgs(aud),
            Some(&alice),
            Some(br#"{"body": "hi", "client_msg_id": "x0"}"#.to_vec()),
            409,
            "client_msg_id_reused",
        ),
    ];
    for (what, method, path, token, body, status, code) in cases {
        let a = c.send(method, &path, token, body).await;
        assert_eq!((a.status, a.code()), (status, code), "{what}: {}", a.body);
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: no message"
        );
    }
    // a refused list change changed nothing, not even its valid part
    let r = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{open}"),
            Some(&alice),
            Value::Null,
        )
        .await;
    assert_eq!(r.body["members"], json!([]));
    let after = snapshot(c.clone(), admin.clone()).await;
    assert_eq!(before, after, "bad input changed something");
}

#[tokio::test]
async fn operational_endpoints_and_openapi() {
    let server = Server::start();
    let c = server.client();
    let h = c.call("GET", "/healthz", None, Value::Null).await;
    assert_eq!((h.status, h.body["status"].as_str()), (200, Some("ok")));
    let r = c.call("GET", "/readyz", None, Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["database"]["name"], "mgc");
    assert_eq!(r.body["server"], "chat1");

    let admin = c.admin().await;
    let cat = c.category(&admin, "general").await;
    let room = c
        .room(
            &admin,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    c.post(&admin, room, "hello", "m1").await;
    let text = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "pchat_posts_total 1",
        "pchat_deliveries_total",
        "pchat_connections ",
        "pchat_commit_seconds_bucket",
        "pchat_commit_batch_size_count",
        "pchat_post_ack_seconds_count 1",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }

    // The web client follows the pool to other chat servers: their API
    // answers its preflight (bearer tokens, never cookies), errors included.
    let pre = c
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/rooms/{room}/messages", c.base),
        )
        .header("origin", "http://127.0.0.9:1")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 200);
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    let refused = c
        .http
        .get(format!("{}/api/v1/users/me", c.base))
        .header("origin", "http://127.0.0.9:1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["access-control-allow-origin"], "*");
    // The DR dashboard's API: administrators only, and only in a topology.
    let t = c
        .call("GET", "/api/v1/admin/topology", Some(&admin), Value::Null)
        .await;
    assert_eq!((t.status, t.code()), (404, "no_topology"), "{}", t.body);
    let alice = c.user(&admin, "alice").await;
    let t = c
        .call("GET", "/api/v1/admin/topology", Some(&alice), Value::Null)
        .await;
    assert_eq!((t.status, t.code()), (403, "forbidden"), "{}", t.body);
    // The pages themselves: built in, with a strict content security policy.
    for (path, kind) in [
        ("/", "text/html"),
        ("/admin/topology", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let res = c
            .http
            .get(format!("{}{path}", c.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
    }

    let doc = c
        .call("GET", "/api/v1/openapi.json", None, Value::Null)
        .await;
    assert_eq!(doc.body["openapi"], "3.0.3");
    for path in [
        "/sessions",
        "/users",
        "/categories",
        "/rooms",
        "/rooms/{id}",
        "/rooms/{id}/messages",
        "/search",
        "/stream",
        "/groups",
        "/groups/{id}",
        "/categories/{id}",
        "/rooms/{id}/invitations",
        "/rooms/{id}/join",
        "/rooms/{id}/leave",
        "/rooms/{id}/eligible",
        "/rooms/{id}/clear",
        "/rooms/{id}/files",
        "/rooms/{id}/files/{sha256}",
        "/invitations",
        "/addins",
        "/addins/{name}",
        "/messages/remove",
        "/feeds",
        "/feeds/{id}",
        "/feeds/{id}/messages",
        "/configuration",
        "/compliance/records",
        "/compliance/marks/{job}",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "openapi lacks {path}"
        );
    }
}
