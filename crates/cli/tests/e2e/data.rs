//! export-data then import-data into an empty data directory reproduces the
//! pool, compared through the API; damaged files and non-empty targets are
//! refused and change nothing.

use super::common::*;
use serde_json::{json, Value};
use std::path::Path;

fn admin_cmd(args: &[&str]) -> (bool, String) {
    let o = pchat().arg("admin").args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Everything a client sees of the pool, with ids replaced by names.
async fn snapshot(c: &Client, admin: &str) -> Value {
    let get = |path: String| {
        let c = c.clone();
        let admin = admin.to_string();
        async move { c.call("GET", &path, Some(&admin), Value::Null).await.body }
    };
    let cats = get("/api/v1/categories".into()).await;
    let cat_name = |id: &Value| {
        cats["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| &c["id"] == id)
            .map(|c| c["name"].clone())
            .unwrap_or(Value::Null)
    };
    let mut rooms = Vec::new();
    for r in get("/api/v1/rooms".into()).await["rooms"]
        .as_array()
        .unwrap()
    {
        let id = r["id"].as_i64().unwrap();
        let mut full = get(format!("/api/v1/rooms/{id}")).await;
        let history = c.history(admin, id).await;
        let history: Vec<Value> = history
            .into_iter()
            .map(|mut m| {
                m.as_object_mut().unwrap().remove("sender_id");
                m.as_object_mut().unwrap().remove("room");
                if let Some(f) = m.get_mut("file") {
                    f.as_object_mut().unwrap().remove("url");
                }
                m
            })
            .collect();
        let o = full.as_object_mut().unwrap();
        for k in [
            "id",
            "created_at",
            "created_by",
            "my_roles",
            "can_manage",
            "can_join",
        ] {
            o.remove(k);
        }
        o.insert("category".into(), cat_name(&r["category"]));
        o.insert("history".into(), json!(history));
        rooms.push(full);
    }
    let mut categories: Vec<Value> = cats["categories"].as_array().unwrap().clone();
    for c in &mut categories {
        let o = c.as_object_mut().unwrap();
        o.remove("id");
        o.remove("created_at");
    }
    let mut groups: Vec<Value> = get("/api/v1/groups".into()).await["groups"]
        .as_array()
        .unwrap()
        .clone();
    for g in &mut groups {
        let o = g.as_object_mut().unwrap();
        o.remove("id");
        o.remove("created_at");
    }
    let mut users = get("/api/v1/users".into()).await;
    for u in users["users"].as_array_mut().unwrap() {
        u.as_object_mut().unwrap().remove("id");
    }
    json!({
        "rooms": rooms,
        "categories": categories,
        "groups": groups,
        "users": users,
        "addins": get("/api/v1/addins".into()).await,
        "configuration": get("/api/v1/configuration".into()).await,
    })
}

async fn build_pool(c: &Client, admin: &str) {
    let alice = c.user(admin, "alice").await;
    let bob = c.user(admin, "bob").await;
    c.user(admin, "carol").await;
    let call = |m: &'static str, p: String, b: Value| {
        let c = c.clone();
        let admin = admin.to_string();
        async move {
            let a = c.call(m, &p, Some(&admin), b).await;
            assert!(a.status < 300, "{m} {p}: {}", a.body);
            a.body
        }
    };
    call(
        "POST",
        "/api/v1/groups".into(),
        json!({"name": "inner", "members": ["bob"]}),
    )
    .await;
    call(
        "POST",
        "/api/v1/groups".into(),
        json!({"name": "outer", "members": ["group:inner", "carol"]}),
    )
    .await;
    call(
        "POST",
        "/api/v1/addins".into(),
        json!({"name": "wiki", "url": "https://wiki.example/a?b=c"}),
    )
    .await;
    call(
        "POST",
        "/api/v1/categories".into(),
        json!({"name": "general", "description": "all of us", "allowed": ["*"], "denied": ["carol"], "creators": ["alice", "group:outer"]}),
    )
    .await;
    call(
        "POST",
        "/api/v1/categories".into(),
        json!({"name": "quiet", "invitations": false, "chat_history": false, "file_upload": false}),
    )
    .await;
    call(
        "PATCH",
        "/api/v1/configuration".into(),
        json!({"default_chat_history": 7, "max_file_size_kb": 300}),
    )
    .await;
    let lobby = c
        .room(&alice, json!({"name": "lobby", "category": "general", "privacy": "open", "addin": "wiki", "members": ["group:outer"]}))
        .await;
    let town = c
        .room(&alice, json!({"name": "town hall", "category": "general", "type": "auditorium", "presenters": ["alice"], "invitations": "false"}))
        .await;
    let board = c
        .room(&alice, json!({"name": "board", "category": "general", "privacy": "secret", "members": ["bob"]}))
        .await;
    c.room(admin, json!({"name": "hush", "category": "quiet"}))
        .await;
    for i in 1..=30 {
        let (who, room) = match i % 3 {
            0 => (&bob, lobby),
            1 => (&alice, lobby),
            _ => (&alice, board),
        };
        c.call(
            "POST",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(who),
            json!({"body": format!("message {i} — ünïcode ✓"), "client_msg_id": format!("m{i}"), "alert": i == 5}),
        )
        .await;
    }
    c.post(&alice, town, "welcome all", "t1").await;
    call(
        "POST",
        "/api/v1/messages/remove".into(),
        json!({"room": lobby, "text": "message 4 "}),
    )
    .await;
    call(
        "POST",
        "/api/v1/messages/remove".into(),
        json!({"room": lobby, "text": "message 7 ", "remove": true}),
    )
    .await;
    call(
        "PATCH",
        format!("/api/v1/rooms/{board}"),
        json!({"disabled": true}),
    )
    .await;
}

#[tokio::test]
async fn export_then_import_reproduces_the_pool() {
    let source = Server::start();
    let c = source.client();
    let admin = c.admin().await;
    build_pool(&c, &admin).await;
    let before = snapshot(&c, &admin).await;
    // The snapshot sees what was built: rooms, lists, replaced and removed messages.
    let text = before.to_string();
    assert_eq!(before["rooms"].as_array().unwrap().len(), 4);
    assert!(text.contains("This message was replaced by the administrator"));
    assert!(!text.contains("message 7 "), "removed");
    assert!(text.contains("group:outer") && text.contains("\"denied\":[\"carol\"]"));
    assert!(text.contains("https://wiki.example/a?b=c"));

    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("pool.jsonl");
    let src = source.data_dir.to_str().unwrap().to_string();
    let (ok, out) = admin_cmd(&[
        "export-data",
        "--data-dir",
        &src,
        "--to",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{out}");
    let sum: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (sum["rooms"].clone(), sum["groups"].clone()),
        (json!(4), json!(2)),
        "{sum}"
    );

    // Damaged files change nothing: altered, truncated, another version.
    let text = std::fs::read_to_string(&file).unwrap();
    let target = work.path().join("target");
    let t = target.to_str().unwrap();
    for (name, bad) in [
        ("altered", text.replacen("welcome all", "welcome ALL", 1)),
        (
            "truncated",
            text.lines().take(5).collect::<Vec<_>>().join("\n"),
        ),
        ("garbage", "not json\n".to_string()),
        ("carol missing", without_user(&text, "carol")),
    ] {
        let p = work.path().join(name);
        std::fs::write(&p, bad).unwrap();
        let (ok, out) = admin_cmd(&[
            "import-data",
            "--data-dir",
            t,
            "--from",
            p.to_str().unwrap(),
        ]);
        assert!(!ok, "{name}: {out}");
        if name == "carol missing" {
            assert!(out.contains("does not define"), "{out}");
        }
        assert!(
            !target.join("mgc.db").exists(),
            "{name}: nothing may be created"
        );
    }

    let (ok, out) = admin_cmd(&[
        "import-data",
        "--data-dir",
        t,
        "--from",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{out}");
    // A second import into the now non-empty pool is refused.
    let (ok, out) = admin_cmd(&[
        "import-data",
        "--data-dir",
        t,
        "--from",
        file.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("empty pool"), "{out}");

    let imported = Server::start_in(Path::new(t), &[]);
    let c2 = imported.client();
    let admin2 = c2.sign_in(ADMIN, ADMIN_PW).await;
    let after = snapshot(&c2, &admin2).await;
    assert_eq!(before, after);
    // Posting continues each room's sequence.
    let alice = c2.sign_in("alice", "alice-password").await;
    let lobby = after["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["name"] == "lobby")
        .unwrap();
    let last = after["rooms"][lobby]["last_seq"].as_i64().unwrap();
    let rooms = c2
        .call("GET", "/api/v1/rooms", Some(&alice), Value::Null)
        .await;
    let id = rooms.body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lobby")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        c2.post(&alice, id, "after import", "x1").await.body["seq"],
        last + 1
    );
}

/// The export with one user's line taken out and the end line recomputed:
/// a well-formed file whose lists name someone it does not define.
fn without_user(text: &str, name: &str) -> String {
    use sha2::Digest;
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"type\":\"end\""))
        .filter(|l| {
            !(l.contains("\"type\":\"user\"") && l.contains(&format!("\"name\":\"{name}\"")))
        })
        .collect();
    let mut hasher = sha2::Sha256::new();
    for l in &lines {
        hasher.update(l.as_bytes());
        hasher.update(b"\n");
    }
    let sha: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let end = json!({"type": "end", "items": lines.len() - 1, "sha256": sha}).to_string();
    lines.push(&end);
    let mut out = lines.join("\n");
    out.push('\n');
    out
}
