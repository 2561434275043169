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
