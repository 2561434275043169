//! Lync's room model through the API: groups, category walls and creators,
//! invitations, join and leave, disable and delete, add-ins, moving rooms,
//! administrators removing messages, categories without history.

use super::common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn get(c: &Client, token: &str, path: &str) -> Answer {
    c.call("GET", path, Some(token), Value::Null).await
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|x| x.as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn groups_category_walls_and_creators() {
    let Setup {
        server: _server,
        c,
        admin,
        alice,
        bob,
        cat: _,
    } = setup().await;
    let carol = c.user(&admin, "carol").await;

    // legal ⊂ staff; alice is in legal, bob directly in staff.
    let a = c
        .call(
            "POST",
            "/api/v1/groups",
            Some(&admin),
            json!({"name": "legal", "members": ["alice"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let legal = a.body["id"].as_i64().unwrap();
    let a = c
        .call(
            "POST",
            "/api/v1/groups",
            Some(&admin),
            json!({"name": "staff", "members": ["group:legal", "bob"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(names(&a.body["members"]), ["bob", "group:legal"]);
    let staff = a.body["id"].as_i64().unwrap();

    // Refusals: a cycle, unknown members, users may not manage groups.
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/groups/{legal}"),
            Some(&admin),
            json!({"members": {"add": ["group:staff"]}}),
        )
        .await;
    assert_eq!((a.status, a.code()), (422, "invalid_value"), "{}", a.body);
    let a = c
        .call(
            "POST",
            "/api/v1/groups",
            Some(&admin),
            json!({"name": "x", "members": ["group:nope"]}),
        )
        .await;
    assert_eq!(a.code(), "unknown_group");
    let a = c
        .call(
            "POST",
            "/api/v1/groups",
            Some(&admin),
            json!({"name": "x", "members": ["*"]}),
        )
        .await;
    assert_eq!(a.code(), "invalid_value");
    let a = c
        .call(
            "POST",
            "/api/v1/groups",
            Some(&bob),
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    assert_eq!(get(&c, &bob, "/api/v1/groups").await.code(), "forbidden");
    assert_eq!(
        get(&c, &admin, "/api/v1/groups").await.body["groups"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An ethical wall: everyone but legal (alice, through a group).
    let a = c
        .call(
            "POST",
            "/api/v1/categories",
            Some(&admin),
            json!({"name": "mergers", "denied": ["group:legal"], "creators": ["group:staff"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(names(&a.body["allowed"]), ["*"]);
    assert_eq!(names(&a.body["denied"]), ["group:legal"]);
    let mergers = a.body["id"].as_i64().unwrap();

    // Creators: staff (bob directly; alice through legal, but walled off); not carol.
    let a = c
        .call(
            "POST",
            "/api/v1/rooms",
            Some(&carol),
            json!({"name": "deal-c", "category": mergers}),
        )
        .await;
    assert_eq!(a.code(), "forbidden", "{}", a.body);
    let a = c
        .call(
            "POST",
            "/api/v1/rooms",
            Some(&alice),
            json!({"name": "deal-a", "category": mergers}),
        )
        .await;
    assert_eq!(a.code(), "forbidden", "{}", a.body);
    let deal = c
        .room(
            &bob,
            json!({"name": "deal", "category": mergers, "privacy": "open"}),
        )
        .await;

    // Alice cannot be added, cannot find the Open room, cannot read or post.
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{deal}"),
            Some(&bob),
            json!({"members": {"add": ["alice"]}}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (422, "not_allowed_by_category"),
        "{}",
        a.body
    );
    assert_eq!(
        get(&c, &alice, &format!("/api/v1/rooms/{deal}"))
            .await
            .code(),
        "room_not_found"
    );
    let rooms = get(&c, &alice, "/api/v1/rooms").await;
    assert!(
        !rooms.body.to_string().contains("\"deal\""),
        "{}",
        rooms.body
    );
    assert_eq!(
        c.post(&alice, deal, "hi", "a1").await.code(),
        "room_not_found"
    );
    assert_eq!(c.post(&carol, deal, "hi", "c1").await.status, 201);

    // Membership through groups: staff reaches bob, and alice (through
    // legal), whom the wall still keeps out, user by user.
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{deal}"),
            Some(&admin),
            json!({"members": {"add": ["group:staff"]}, "privacy": "closed"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(names(&a.body["members"]), ["group:staff"]);
    let e = get(&c, &bob, &format!("/api/v1/rooms/{deal}/eligible")).await;
    assert_eq!(e.status, 200, "{}", e.body);
    let users = e.body["users"].as_array().unwrap();
    let find = |n: &str| users.iter().find(|u| u["name"] == n).cloned();
    assert_eq!(find("alice").unwrap()["allowed"], false);
    assert_eq!(find("bob").unwrap()["allowed"], true);
    assert!(names(&find("bob").unwrap()["roles"]).contains(&"member".to_string()));
    assert!(find("carol").is_none());
    assert_eq!(
        get(&c, &carol, &format!("/api/v1/rooms/{deal}/eligible"))
            .await
            .code(),
        "forbidden"
    );
    assert_eq!(
        get(&c, &alice, &format!("/api/v1/rooms/{deal}"))
            .await
            .code(),
        "room_not_found"
    );
    let r = get(&c, &bob, &format!("/api/v1/rooms/{deal}")).await;
    assert_eq!(r.body["can_read"], true, "{}", r.body);
    assert_eq!(r.body["my_roles"], json!(["member", "manager"]));
    // Taking legal out of staff is enough to take alice out of the room.
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/groups/{staff}"),
            Some(&admin),
            json!({"members": {"remove": ["group:legal"]}}),
        )
        .await;
    assert_eq!(names(&a.body["members"]), ["bob"]);
    let e = get(&c, &bob, &format!("/api/v1/rooms/{deal}/eligible")).await;
    assert!(!e.body.to_string().contains("alice"), "{}", e.body);

    // A category with rooms is not removed; an empty one is.
    let a = c
        .call(
            "DELETE",
            &format!("/api/v1/categories/{mergers}"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!((a.status, a.code()), (409, "category_not_empty"));
    let a = c
        .call(
            "DELETE",
            &format!("/api/v1/rooms/{deal}"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(a.code(), "forbidden", "managers do not delete rooms");
    let a = c
        .call(
            "DELETE",
            &format!("/api/v1/rooms/{deal}"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    let a = c
        .call(
            "DELETE",
            &format!("/api/v1/categories/{mergers}"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        get(&c, &admin, &format!("/api/v1/categories/{mergers}"))
            .await
            .code(),
        "category_not_found"
    );

    // Removing a group removes it from every list.
    let a = c
        .call(
            "DELETE",
            &format!("/api/v1/groups/{legal}"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 204);
    assert_eq!(
        get(&c, &admin, &format!("/api/v1/groups/{legal}"))
            .await
            .code(),
        "group_not_found"
    );
    assert_eq!(
        get(&c, &admin, "/api/v1/groups/abc").await.code(),
        "group_not_found"
    );
}

#[tokio::test]
async fn invitations_join_leave_disable() {
    let Setup {
        server,
        c,
        admin,
        alice,
        bob,
        cat,
    } = setup().await;
    let secret = c
        .room(
            &alice,
            json!({"name": "board", "category": cat, "privacy": "secret"}),
        )
        .await;
    assert_eq!(c.post(&alice, secret, "minutes", "m1").await.status, 201);

    // Bob does not know the room; a member cannot invite, the manager can.
    assert_eq!(
        get(&c, &bob, &format!("/api/v1/rooms/{secret}"))
            .await
            .code(),
        "room_not_found"
    );
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{secret}/invitations"),
            Some(&alice),
            json!({"user": "bob"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let inv = get(&c, &bob, "/api/v1/invitations").await;
    let list = inv.body["invitations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", inv.body);
    assert_eq!(list[0]["by"], "alice");
    assert_eq!(list[0]["room"]["invited"], true);
    assert_eq!(list[0]["room"]["can_read"], false);
    assert_eq!(list[0]["room"]["can_join"], true);
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{secret}/join"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["can_read"], true);
    assert_eq!(c.history(&bob, secret).await.len(), 1);
    assert!(
        get(&c, &bob, "/api/v1/invitations").await.body["invitations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Bob, a member, may not invite; an unknown invitee is refused.
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{secret}/invitations"),
            Some(&bob),
            json!({"user": "admin"}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{secret}/invitations"),
            Some(&alice),
            json!({"user": "nobody"}),
        )
        .await;
    assert_eq!(a.code(), "unknown_user");
    // Leaving makes the Secret room vanish again.
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{secret}/leave"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        get(&c, &bob, &format!("/api/v1/rooms/{secret}"))
            .await
            .code(),
        "room_not_found"
    );
    // Joining a Closed room needs an invitation; an Open one does not.
    let closed = c
        .room(&alice, json!({"name": "team", "category": cat}))
        .await;
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{closed}/join"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    let open = c
        .room(
            &alice,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{open}/join"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(a.body["my_roles"], json!(["member"]));

    // Invitations off in the room, then in the category.
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{closed}"),
            Some(&alice),
            json!({"invitations": "false"}),
        )
        .await;
    assert_eq!(a.body["invitations_on"], false, "{}", a.body);
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{closed}/invitations"),
            Some(&alice),
            json!({"user": "bob"}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    c.call(
        "PATCH",
        &format!("/api/v1/categories/{cat}"),
        Some(&admin),
        json!({"invitations": false}),
    )
    .await;
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{closed}"),
            Some(&alice),
            json!({"invitations": "inherit"}),
        )
        .await;
    assert_eq!(
        a.code(),
        "forbidden",
        "a room cannot turn invitations on: {}",
        a.body
    );

    // Disable: the member is dropped from live delivery, the room vanishes for
    // them, history is kept; the manager still finds it and enables it again.
    let mut ws = ws_connect(&server.ws_url(&bob)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {open.to_string(): 0}}),
    )
    .await;
    ws_until(&mut ws, "subscribed").await;
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{open}"),
            Some(&alice),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(a.body["disabled"], true, "{}", a.body);
    let frames = ws_until(&mut ws, "unsubscribed").await;
    assert_eq!(frames.last().unwrap()["room"], open);
    assert_eq!(
        get(&c, &bob, &format!("/api/v1/rooms/{open}")).await.code(),
        "room_not_found"
    );
    assert_eq!(
        c.post(&alice, open, "x", "d1").await.code(),
        "room_disabled"
    );
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{open}"),
            Some(&alice),
            json!({"disabled": false}),
        )
        .await;
    assert_eq!(a.body["disabled"], false);
    assert_eq!(c.post(&bob, open, "back", "b1").await.status, 201);
    let a = get(&c, &bob, "/api/v1/rooms/xyz").await;
    assert_eq!(a.code(), "room_not_found");
}

#[tokio::test]
async fn add_ins_and_moving_rooms() {
    let Setup {
        server: _server,
        c,
        admin,
        alice,
        bob,
        cat,
    } = setup().await;
    for (url, ok) in [
        ("https://wiki.example/x", true),
        ("ftp://wiki.example", false),
        ("https://", false),
        ("https://a b", false),
        ("javascript:alert(1)", false),
    ] {
        let a = c
            .call(
                "POST",
                "/api/v1/addins",
                Some(&admin),
                json!({"name": format!("a{}", url.len()), "url": url}),
            )
            .await;
        assert_eq!(a.status == 201, ok, "{url}: {}", a.body);
        if !ok {
            assert_eq!(a.code(), "invalid_value");
        }
    }
    let a = c
        .call(
            "POST",
            "/api/v1/addins",
            Some(&alice),
            json!({"name": "mine", "url": "https://x.example"}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    let name = format!("a{}", "https://wiki.example/x".len());
    let room = c
        .room(
            &alice,
            json!({"name": "team", "category": cat, "addin": name}),
        )
        .await;
    let r = get(&c, &bob, &format!("/api/v1/rooms/{room}")).await;
    assert_eq!(
        r.body["addin"]["url"], "https://wiki.example/x",
        "{}",
        r.body
    );
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(&alice),
            json!({"addin": "nope"}),
        )
        .await;
    assert_eq!(a.code(), "addin_not_found");
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(&alice),
            json!({"addin": null}),
        )
        .await;
    assert!(a.body.get("addin").is_none(), "{}", a.body);

    // Moving: managers may not; administrators may, and entries the new
    // category does not allow are dropped.
    c.call(
        "PATCH",
        &format!("/api/v1/rooms/{room}"),
        Some(&alice),
        json!({"members": {"add": ["bob"]}}),
    )
    .await;
    let a = c
        .call(
            "POST",
            "/api/v1/categories",
            Some(&admin),
            json!({"name": "private", "allowed": ["alice"]}),
        )
        .await;
    let private = a.body["id"].as_i64().unwrap();
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(&alice),
            json!({"category": private}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(&admin),
            json!({"category": "private"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["category"], private);
    assert_eq!(names(&a.body["members"]), Vec::<String>::new());
    assert_eq!(names(&a.body["managers"]), ["alice"]);
    // Renaming keeps names unique.
    c.room(&alice, json!({"name": "other", "category": cat}))
        .await;
    let a = c
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(&alice),
            json!({"name": "OTHER"}),
        )
        .await;
    assert_eq!(a.code(), "name_taken");
    // Removing the add-in clears it from rooms.
    c.call(
        "PATCH",
        &format!("/api/v1/rooms/{room}"),
        Some(&alice),
        json!({"addin": name}),
    )
    .await;
    let a = c
        .call(
            "DELETE",
            &format!("/api/v1/addins/{name}"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 204);
    let r = get(&c, &alice, &format!("/api/v1/rooms/{room}")).await;
    assert!(r.body.get("addin").is_none(), "{}", r.body);
}

#[tokio::test]
async fn administrators_remove_replace_and_clear_messages() {
    let Setup {
        server,
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
    for i in 1..=6 {
        let who = if i % 2 == 0 { &bob } else { &alice };
        assert_eq!(
            c.post(
                who,
                room,
                &format!("note {i} about plums"),
                &format!("n{i}")
            )
            .await
            .status,
            201
        );
    }
    let mut ws = ws_connect(&server.ws_url(&bob)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 6}}),
    )
    .await;
    ws_until(&mut ws, "subscribed").await;

    // Authors cannot remove their own messages.
    let a = c
        .call(
            "POST",
            "/api/v1/messages/remove",
            Some(&bob),
            json!({"room": room, "user": "bob"}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    // Bad filters change nothing.
    for body in [
        json!({}),
        json!({"text": "plums"}),
        json!({"room": room, "remove": true, "replacement": "x"}),
        json!({"room": room, "replacement": ""}),
        json!({"room": room, "user": "nobody"}),
        json!({"room": 999}),
    ] {
        let a = c
            .call(
                "POST",
                "/api/v1/messages/remove",
                Some(&admin),
                body.clone(),
            )
            .await;
        assert!(a.status >= 400, "{body}: {}", a.body);
    }
    assert_eq!(c.history(&alice, room).await.len(), 6);

    // Replace bob's message 2 (default text), remove message 3 by text.
    let a = c
        .call(
            "POST",
            "/api/v1/messages/remove",
            Some(&admin),
            json!({"room": room, "user": "bob", "text": "NOTE 2"}),
        )
        .await;
    assert_eq!(a.body["count"], 1, "{}", a.body);
    let f = ws_until(&mut ws, "messages_changed").await;
    let f = f.last().unwrap();
    assert_eq!(
        (f["seqs"].clone(), f["removed"].clone()),
        (json!([2]), json!(false))
    );
    assert_eq!(f["body"], "This message was replaced by the administrator");
    let a = c
        .call(
            "POST",
            "/api/v1/messages/remove",
            Some(&admin),
            json!({"room": room, "text": "note 3", "remove": true}),
        )
        .await;
    assert_eq!(a.body["count"], 1);
    let h = c.history(&alice, room).await;
    assert_eq!(seqs(&h), vec![1, 2, 4, 5, 6]);
    assert_eq!(h[1]["replaced"], true);
    assert_eq!(
        h[1]["body"],
        "This message was replaced by the administrator"
    );
    let s = get(&c, &alice, "/api/v1/search?q=plums").await;
    assert_eq!(s.body["hits"].as_array().unwrap().len(), 4, "{}", s.body);

    // Clear up to now: history empties; the next post continues the sequence.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{room}/clear"),
            Some(&alice),
            json!({"until": now}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    let a = c
        .call(
            "POST",
            &format!("/api/v1/rooms/{room}/clear"),
            Some(&admin),
            json!({"until": now}),
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    let f = ws_until(&mut ws, "room_cleared").await;
    assert_eq!(f.last().unwrap()["until"], now);
    assert!(c.history(&alice, room).await.is_empty());
    let a = c.post(&alice, room, "fresh", "n7").await;
    assert_eq!(a.body["seq"], 7);
    let f = ws_until(&mut ws, "message").await;
    assert_eq!(f.last().unwrap()["seq"], 7);
    assert_eq!(seqs(&c.history(&bob, room).await), vec![7]);
}

#[tokio::test]
async fn a_category_without_history_delivers_live_only() {
    let Setup {
        server,
        c,
        admin,
        alice,
        bob,
        cat: _,
    } = setup().await;
    let a = c
        .call(
            "POST",
            "/api/v1/categories",
            Some(&admin),
            json!({"name": "ephemeral", "chat_history": false}),
        )
        .await;
    assert_eq!(a.body["chat_history"], false, "{}", a.body);
    let room = c
        .room(
            &alice,
            json!({"name": "live", "category": "ephemeral", "privacy": "open"}),
        )
        .await;
    let mut ws = ws_connect(&server.ws_url(&bob)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 0}}),
    )
    .await;
    ws_until(&mut ws, "subscribed").await;
    assert_eq!(
        c.post(&alice, room, "now you see it", "e1").await.status,
        201
    );
    let f = ws_until(&mut ws, "message").await;
    assert_eq!(f.last().unwrap()["body"], "now you see it");
    // A retry is still recognised; nothing is kept in history or search.
    assert_eq!(
        c.post(&alice, room, "now you see it", "e1").await.status,
        200
    );
    assert!(c.history(&bob, room).await.is_empty());
    let s = get(&c, &bob, "/api/v1/search?q=see").await;
    assert!(s.body["hits"].as_array().unwrap().is_empty(), "{}", s.body);
    assert_eq!(c.post(&alice, room, "again", "e2").await.body["seq"], 2);
}

#[tokio::test]
async fn topic_feeds_live_and_later() {
    let Setup {
        server,
        c,
        admin: _,
        alice,
        bob,
        cat,
    } = setup().await;
    let open = c
        .room(
            &bob,
            json!({"name": "ops", "category": cat, "privacy": "open"}),
        )
        .await;
    let secret = c
        .room(
            &bob,
            json!({"name": "hidden", "category": cat, "privacy": "secret"}),
        )
        .await;
    // Bad feeds change nothing.
    for (body, code) in [
        (json!({"name": "empty"}), "invalid_value"),
        (
            json!({"name": "x", "words": ["two words"]}),
            "invalid_value",
        ),
        (json!({"name": "x", "senders": ["nobody"]}), "unknown_user"),
        (json!({"name": "x", "rooms": [secret]}), "room_not_found"),
        (
            json!({"name": "x", "words": ["a"], "extra": 1}),
            "invalid_request",
        ),
    ] {
        let a = c
            .call("POST", "/api/v1/feeds", Some(&alice), body.clone())
            .await;
        assert_eq!(a.code(), code, "{body}: {}", a.body);
    }
    let a = c
        .call(
            "POST",
            "/api/v1/feeds",
            Some(&alice),
            json!({"name": "outages", "words": ["Outage"], "senders": ["bob"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["words"], json!(["outage"]));
    let feed = a.body["id"].as_i64().unwrap();

    let mut ws = ws_connect(&server.ws_url(&alice)).await;
    ws_send(&mut ws, json!({"type": "follow_feeds"})).await;
    let f = ws_until(&mut ws, "feeds_followed").await;
    assert_eq!(f.last().unwrap()["feeds"], json!(["outages"]));
    // Matches: whole word, from bob, in a room alice may read.
    c.post(&bob, open, "we have an OUTAGE in dc1", "o1").await;
    c.post(&bob, open, "outages are rare", "o2").await; // not the word
    c.post(&bob, secret, "secret outage", "o3").await; // alice cannot read
    c.post(&alice, open, "my own outage", "o4").await; // not from bob
    c.post(&bob, open, "outage over", "o5").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let f = ws_until(&mut ws, "feed_message").await;
        let m = &f.last().unwrap()["message"];
        got.push(m["body"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ["we have an OUTAGE in dc1", "outage over"]);
    assert!(
        ws_next(&mut ws, Duration::from_millis(300)).await.is_none(),
        "nothing else matches"
    );
    // Listed later, newest first.
    let a = get(&c, &alice, &format!("/api/v1/feeds/{feed}/messages")).await;
    let bodies: Vec<&str> = a.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["outage over", "we have an OUTAGE in dc1"]);
    // A feed saved later is followed at once; bob cannot see alice's feeds.
    c.call(
        "POST",
        "/api/v1/feeds",
        Some(&alice),
        json!({"name": "ops room", "rooms": [open]}),
    )
    .await;
    let f = ws_until(&mut ws, "feeds_followed").await;
    assert_eq!(f.last().unwrap()["feeds"], json!(["outages", "ops room"]));
    assert_eq!(
        get(&c, &bob, &format!("/api/v1/feeds/{feed}/messages"))
            .await
            .code(),
        "not_found"
    );
    let a = c
        .call(
            "DELETE",
            &format!("/api/v1/feeds/{feed}"),
            Some(&alice),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 204);
    let a = get(&c, &alice, "/api/v1/feeds").await;
    assert_eq!(a.body["feeds"].as_array().unwrap().len(), 1);
}
