//! `pchat admin` against a data directory and against a running server.

use super::common::*;
use std::io::Write;
use std::process::Stdio;

fn admin(args: &[&str], password: &str) -> (bool, String, String) {
    let mut child = pchat()
        .arg("admin")
        .args(args)
        .env_remove("PCHAT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn first_admin_from_the_cli_then_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // no databases yet: a clear refusal
    let (ok, _, err) = admin(
        &["create-user", "--data-dir", d, "--name", "root", "--admin"],
        "root-password",
    );
    assert!(!ok);
    assert!(err.contains("holds no pchat databases"), "{err}");

    // a server without PCHAT_BOOTSTRAP_ADMIN starts with no user and says how to make one
    let server = Server::start_in(dir.path(), &[]);
    let (ok, out, err) = admin(
        &[
            "create-user",
            "--data-dir",
            d,
            "--name",
            "root",
            "--admin",
            "--json",
        ],
        "root-password",
    );
    assert!(ok, "{err}");
    let user: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (user["name"].as_str(), user["admin"].as_bool()),
        (Some("root"), Some(true))
    );

    // the running server accepts the new administrator
    let c = server.client();
    c.sign_in("root", "root-password").await;

    // through the API of the running server
    let (ok, out, err) = admin(
        &[
            "create-category",
            "--url",
            &server.url,
            "--as",
            "root:root-password",
            "--name",
            "ops",
            "--json",
        ],
        "",
    );
    assert!(ok, "{err}");
    let cat: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(cat["name"], "ops");
    let (ok, out, _) = admin(
        &[
            "create-user",
            "--url",
            &server.url,
            "--as",
            "root:root-password",
            "--name",
            "carol",
        ],
        "carol-password",
    );
    assert!(ok);
    assert!(out.contains("created user carol"), "{out}");
    c.sign_in("carol", "carol-password").await;

    // refusals: duplicate name, weak password, wrong admin password
    let (ok, _, err) = admin(&["create-category", "--data-dir", d, "--name", "OPS"], "");
    assert!(!ok && err.contains("already taken"), "{err}");
    let (ok, _, err) = admin(&["create-user", "--data-dir", d, "--name", "dave"], "short");
    assert!(!ok && err.contains("passwords are"), "{err}");
    let (ok, _, err) = admin(
        &[
            "create-user",
            "--url",
            &server.url,
            "--as",
            "root:wrong-password",
            "--name",
            "erin",
        ],
        "erin-password",
    );
    assert!(!ok && err.contains("invalid_credentials"), "{err}");
    let (ok, _, err) = admin(&["create-user", "--name", "frank"], "frank-password");
    assert!(!ok && err.contains("--data-dir"), "{err}");
}

#[test]
fn serve_refuses_bad_settings() {
    let out = pchat()
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an address"));
    let out = pchat()
        .args(["serve", "--default-history", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "no_such_key = 1\n").unwrap();
    let out = pchat()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"));
}

#[tokio::test]
async fn test_message_checks_a_round_trip() {
    let Setup {
        server,
        c,
        alice,
        cat,
        ..
    } = setup().await;
    let room = c
        .room(
            &alice,
            serde_json::json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    c.room(
        &alice,
        serde_json::json!({"name": "private", "category": cat}),
    )
    .await;
    c.post(&alice, room, "earlier", "e1").await;
    let run = |room: &str, receiver: &str| {
        pchat()
            .args([
                "admin",
                "test-message",
                "--url",
                &server.url,
                "--sender",
                "alice:alice-password",
            ])
            .args([
                "--receiver",
                receiver,
                "--room",
                room,
                "--json",
                "--timeout-secs",
                "5",
            ])
            .output()
            .unwrap()
    };
    let out = run("lobby", "bob:bob-password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["room"].as_i64(), r["seq"].as_i64()),
        (Some(room), Some(2))
    );
    assert!(r["ack_ms"].as_f64().unwrap() > 0.0 && r["delivery_ms"].as_f64().unwrap() > 0.0);
    // the message really is in the room's history
    let hist = c.history(&alice, room).await;
    assert_eq!(hist.last().unwrap()["client_msg_id"], r["client_msg_id"]);

    // failures exit non-zero with the reason
    let out = run("private", "bob:bob-password");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("lobby", "bob:wrong-password");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("receiver cannot sign in"));
    let out = run("nowhere", "bob:bob-password");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no room named"));
}

/// Runs `pchat admin ARGS --json` and parses the answer; panics on failure.
fn admin_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = admin(&all, "");
    assert!(ok, "pchat admin {args:?} failed: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Runs `pchat admin ARGS`, expects a refusal, and returns its one-line reason.
fn admin_refused(args: &[&str]) -> String {
    let (ok, out, err) = admin(args, "");
    assert!(!ok, "pchat admin {args:?} should fail, printed {out}");
    // One line of reason (clap adds a hint to try --help after its own).
    let reason: Vec<&str> = err
        .trim()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("--help"))
        .collect();
    assert_eq!(reason.len(), 1, "one line: {err}");
    err
}

#[tokio::test]
async fn room_model_from_the_cli_on_a_data_dir_then_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Create the databases, then work on the stopped server's data dir.
    let mut server = Server::start_in(
        dir.path(),
        &[("PCHAT_BOOTSTRAP_ADMIN", &format!("{ADMIN}:{ADMIN_PW}"))],
    );
    let c = server.client();
    let admin_token = c.admin().await;
    c.user(&admin_token, "alice").await;
    c.user(&admin_token, "bob").await;
    server.terminate();

    let dd = ["--data-dir", d];
    let with = |args: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = args.to_vec();
        v.extend_from_slice(&dd);
        v
    };
    let g = admin_json(&with(&[
        "group",
        "new",
        "--name",
        "legal",
        "--members",
        "alice",
    ]));
    assert_eq!(g["members"], serde_json::json!(["alice"]));
    let g = admin_json(&with(&["group", "set", "legal", "--add-members", "bob"]));
    assert_eq!(g["members"], serde_json::json!(["alice", "bob"]));
    let cat = admin_json(&with(&[
        "category",
        "new",
        "--name",
        "deals",
        "--denied",
        "group:legal",
        "--invitations",
        "false",
    ]));
    assert_eq!(cat["denied"], serde_json::json!(["group:legal"]));
    assert_eq!(cat["invitations"], false);
    let cat = admin_json(&with(&[
        "category",
        "set",
        "deals",
        "--remove-denied",
        "group:legal",
        "--add-denied",
        "bob",
        "--chat-history",
        "true",
    ]));
    assert_eq!(cat["denied"], serde_json::json!(["bob"]));
    admin_json(&with(&[
        "addin",
        "new",
        "--name",
        "wiki",
        "--addin-url",
        "https://wiki.example/",
    ]));
    let room = admin_json(&with(&[
        "room",
        "new",
        "--name",
        "merger",
        "--category",
        "deals",
        "--privacy",
        "secret",
        "--managers",
        "alice",
        "--addin",
        "wiki",
    ]));
    assert_eq!(room["managers"], serde_json::json!(["alice"]));
    assert_eq!(room["addin"]["name"], "wiki");
    // bob is walled off: a clear one-line refusal, nothing changed.
    let err = admin_refused(&with(&["room", "set", "merger", "--add-members", "bob"]));
    assert!(err.contains("not_allowed_by_category"), "{err}");
    let rooms = admin_json(&with(&[
        "room",
        "get",
        "--manager",
        "alice",
        "--privacy",
        "secret",
    ]));
    assert_eq!(rooms.as_array().unwrap().len(), 1, "{rooms}");
    assert!(admin_json(&with(&["room", "get", "--member", "bob"]))
        .as_array()
        .unwrap()
        .is_empty());
    let eligible = admin_json(&with(&["eligible", "--room", "merger"]));
    assert_eq!(eligible["users"][0]["name"], "alice");
    let err = admin_refused(&with(&["invite", "--room", "merger", "--user", "alice"]));
    assert!(err.contains("invitations are off"), "{err}");
    let err = admin_refused(&with(&["category", "remove", "deals"]));
    assert!(err.contains("category_not_empty"), "{err}");
    let err = admin_refused(&with(&[
        "clear-room",
        "--room",
        "merger",
        "--until",
        "yesterday",
    ]));
    assert!(err.contains("not a time"), "{err}");
    let err = admin_refused(&with(&["room", "get", "nope"]));
    assert!(err.contains("room_not_found"), "{err}");

    // The same data through a running server.
    let server = Server::start_in(dir.path(), &[]);
    let c = server.client();
    let alice = c.sign_in("alice", "alice-password").await;
    let r = c
        .call(
            "GET",
            "/api/v1/rooms",
            Some(&alice),
            serde_json::Value::Null,
        )
        .await;
    let id = r.body["rooms"][0]["id"].as_i64().unwrap();
    for i in 1..=3 {
        assert_eq!(
            c.post(&alice, id, &format!("quince {i}"), &format!("q{i}"))
                .await
                .status,
            201
        );
    }
    let url = ["--url", server.url.as_str(), "--as", "admin:admin-password"];
    let over = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .copied()
            .chain(url.iter().copied())
            .map(String::from)
            .collect()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        admin_json(&refs)
    };
    let out = run(over(&[
        "remove-message",
        "--room",
        "merger",
        "--text",
        "quince 2",
    ]));
    assert_eq!(out["count"], 1);
    let out = run(over(&[
        "remove-message",
        "--user",
        "alice",
        "--text",
        "quince 3",
        "--remove",
    ]));
    assert_eq!(out["count"], 1);
    let h = c.history(&alice, id).await;
    assert_eq!(seqs(&h), vec![1, 2]);
    assert_eq!(
        h[1]["body"],
        "This message was replaced by the administrator"
    );
    run(over(&[
        "clear-room",
        "--room",
        "merger",
        "--until",
        "2999-01-01",
    ]));
    assert!(c.history(&alice, id).await.is_empty());
    let conf = run(over(&[
        "configuration",
        "--default-chat-history",
        "12",
        "--max-file-size-kb",
        "500",
    ]));
    assert_eq!(
        (
            conf["default_chat_history"].clone(),
            conf["max_file_size_kb"].clone()
        ),
        (serde_json::json!(12), serde_json::json!(500))
    );
    let conf = run(over(&["configuration", "--server-default-chat-history"]));
    assert!(conf["default_chat_history"].is_null(), "{conf}");
    assert_eq!(run(over(&["configuration"]))["max_file_size_kb"], 500);
    let users = run(over(&["list-users"]));
    assert_eq!(users["users"].as_array().unwrap().len(), 3, "{users}");
    let groups = run(over(&["group", "get"]));
    assert_eq!(groups[0]["name"], "legal");
    run(over(&["room", "remove", "merger"]));
    run(over(&["category", "remove", "deals"]));
    run(over(&["group", "remove", "legal"]));
    run(over(&["addin", "remove", "wiki"]));
    assert!(run(over(&["addin", "get"]))["addins"]
        .as_array()
        .unwrap()
        .is_empty());
}
