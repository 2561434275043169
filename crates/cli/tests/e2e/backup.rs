//! `pchat db` on data directories: backups taken while the server serves
//! under load, restored in order into a new directory, serve the same rooms
//! and history; refusals; and the backup and restore commands killed with
//! SIGKILL midway never leave a file or database that looks complete but
//! is not.

use super::common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn db(args: &[&str]) -> (bool, String) {
    let o = pchat().arg("db").args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn ok(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out) = db(&all);
    assert!(ok, "pchat db {args:?}: {out}");
    serde_json::from_str(out.trim()).unwrap_or(Value::Null)
}

/// Rooms and full histories as the API shows them.
async fn pool(c: &Client, token: &str) -> Value {
    let rooms = c
        .call("GET", "/api/v1/rooms", Some(token), Value::Null)
        .await
        .body;
    let mut out = Vec::new();
    for r in rooms["rooms"].as_array().unwrap() {
        let id = r["id"].as_i64().unwrap();
        out.push(json!({"room": r["name"], "history": c.history(token, id).await}));
    }
    json!(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_under_load_restore_into_a_new_data_dir() {
    let server = Server::start();
    let c = server.client();
    let admin = c.admin().await;
    let cat = c.category(&admin, "general").await;
    let room = c
        .room(
            &admin,
            json!({"name": "lobby", "category": cat, "privacy": "open"}),
        )
        .await;
    let d = server.data_dir.to_str().unwrap().to_string();
    let share = tempfile::tempdir().unwrap();
    let s = |name: &str| share.path().join(name).to_str().unwrap().to_string();

    let load = {
        let (c, admin) = (c.clone(), admin.clone());
        tokio::spawn(async move {
            for i in 0..400 {
                let a = c
                    .post(&admin, room, &format!("load {i}"), &format!("l{i}"))
                    .await;
                assert_eq!(a.status, 201);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let full = ok(&[
        "backup",
        "--data-dir",
        &d,
        "--database",
        "mgc",
        "--to",
        &s("mgc-full.bak"),
        "--name",
        "nightly",
    ]);
    ok(&[
        "backup",
        "--data-dir",
        &d,
        "--database",
        "mgccomp",
        "--to",
        &s("comp-full.bak"),
    ]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log1 = ok(&[
        "backup",
        "--data-dir",
        &d,
        "--database",
        "mgc",
        "--log",
        "--to",
        &s("mgc-1.trn"),
    ]);
    load.await.unwrap();
    // A few more after the load, so the last log backup always has records.
    for i in 0..3 {
        assert_eq!(
            c.post(&admin, room, "tail", &format!("t{i}")).await.status,
            201
        );
    }
    let log2 = ok(&[
        "backup",
        "--data-dir",
        &d,
        "--database",
        "mgc",
        "--log",
        "--to",
        &s("mgc-2.trn"),
    ]);
    assert_eq!(
        log2["first_lsn"].as_i64().unwrap(),
        log1["last_lsn"].as_i64().unwrap() + 1
    );
    assert!(
        full["last_lsn"].as_i64() < log2["last_lsn"].as_i64(),
        "the full backup was mid-load"
    );
    // Nothing new: a clear refusal, no file.
    let (okk, out) = db(&[
        "backup",
        "--data-dir",
        &d,
        "--database",
        "mgc",
        "--log",
        "--to",
        &s("mgc-3.trn"),
    ]);
    assert!(!okk && out.contains("nothing to back up"), "{out}");
    assert!(!share.path().join("mgc-3.trn").exists());

    let listed = ok(&["backups", "--share", share.path().to_str().unwrap()]);
    assert_eq!(listed["backups"].as_array().unwrap().len(), 4, "{listed}");
    assert!(listed["gaps"].as_array().unwrap().is_empty());

    // A restore needs the directory to itself: refused while the server runs.
    let (okk, out) = db(&[
        "restore",
        "--data-dir",
        &d,
        "--database",
        "mgc",
        "--from",
        &s("mgc-full.bak"),
        "--replace",
    ]);
    assert!(!okk && out.contains("in use"), "{out}");

    let target = tempfile::tempdir().unwrap();
    let t = target.path().to_str().unwrap();
    let r = ok(&[
        "restore",
        "--data-dir",
        t,
        "--database",
        "mgc",
        "--from",
        &s("mgc-full.bak"),
        "--norecovery",
    ]);
    assert_eq!(r["state"], "RESTORING");
    let r = ok(&[
        "restore",
        "--data-dir",
        t,
        "--database",
        "mgc",
        "--from",
        &s("mgc-1.trn"),
        "--standby",
    ]);
    assert_eq!(r["state"], "STANDBY");
    // Out of order, onto the wrong database, or a wrong file: refused, unchanged.
    let (okk, out) = db(&[
        "restore",
        "--data-dir",
        t,
        "--database",
        "mgccomp",
        "--from",
        &s("mgc-2.trn"),
    ]);
    assert!(!okk && out.contains("not of"), "{out}");
    let r = ok(&[
        "restore",
        "--data-dir",
        t,
        "--database",
        "mgc",
        "--from",
        &s("mgc-2.trn"),
        "--recovery",
    ]);
    assert_eq!(
        (r["state"].clone(), r["last_lsn"].clone()),
        (json!("ONLINE"), log2["last_lsn"].clone())
    );
    ok(&[
        "restore",
        "--data-dir",
        t,
        "--database",
        "mgccomp",
        "--from",
        &s("comp-full.bak"),
    ]);
    let (okk, out) = db(&[
        "restore",
        "--data-dir",
        t,
        "--database",
        "mgc",
        "--from",
        &s("mgc-2.trn"),
    ]);
    assert!(!okk && out.contains("ONLINE"), "{out}");
    let status = ok(&["status", "--data-dir", t]);
    assert_eq!(status["databases"][0]["state"], "ONLINE", "{status}");

    // The restored directory serves the same rooms and history.
    let before = pool(&c, &admin).await;
    let restored = Server::start_in(target.path(), &[]);
    let c2 = restored.client();
    let admin2 = c2.admin().await;
    assert_eq!(pool(&c2, &admin2).await, before);
    assert_eq!(before[0]["history"].as_array().unwrap().len(), 403);
}

/// Kills `pchat db ARGS` after `delay`; answers whether it had finished.
fn run_and_kill(args: &[&str], delay: Duration) -> bool {
    let mut child = pchat()
        .arg("db")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_killed_midway() {
    let mut server = Server::start();
    let c = server.client();
    let admin = c.admin().await;
    let cat = c.category(&admin, "general").await;
    let room = c
        .room(
            &admin,
            json!({"name": "big", "category": cat, "privacy": "open"}),
        )
        .await;
    let body = "x".repeat(8000);
    let posts: Vec<_> = (0..600)
        .map(|i| {
            let (c, admin, body) = (c.clone(), admin.clone(), body.clone());
            async move { c.post(&admin, room, &body, &format!("b{i}")).await }
        })
        .collect();
    for a in futures_util::future::join_all(posts).await {
        assert_eq!(a.status, 201);
    }
    server.terminate();
    let d = server.data_dir.to_str().unwrap().to_string();
    let share = tempfile::tempdir().unwrap();
    let file = share.path().join("full.bak");
    let f = file.to_str().unwrap().to_string();

    // Backups killed at different moments: never a file that looks complete
    // but is not (a partial one only under a temporary name).
    let mut killed_midway = 0;
    for ms in [1u64, 5, 10, 20, 40, 80, 160, 320, 640] {
        let _ = std::fs::remove_file(&file);
        let finished = run_and_kill(
            &["backup", "--data-dir", &d, "--database", "mgc", "--to", &f],
            Duration::from_millis(ms),
        );
        if file.exists() {
            let (okk, out) = db(&["verify", &f]);
            assert!(okk, "a backup killed after {ms} ms left a bad file: {out}");
        } else {
            assert!(!finished, "a finished backup left no file");
            killed_midway += 1;
        }
    }
    ok(&["backup", "--data-dir", &d, "--database", "mgc", "--to", &f]);
    // The completed backup removed what killed runs left under temporary names.
    let names: Vec<String> = std::fs::read_dir(share.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["full.bak"], "{names:?}");
    let expected_last = ok(&["verify", &f])["last_lsn"].clone();

    // Restores killed at different moments: the target is as it was (no
    // database, or the earlier one) or restored; never half.
    let target = tempfile::tempdir().unwrap();
    let t = target.path().to_str().unwrap().to_string();
    for ms in [1u64, 5, 10, 20, 40, 80, 160, 320, 640] {
        run_and_kill(
            &[
                "restore",
                "--data-dir",
                &t,
                "--database",
                "mgc",
                "--from",
                &f,
                "--replace",
            ],
            Duration::from_millis(ms),
        );
        if target.path().join("mgc.db").exists() {
            let s = ok(&["status", "--data-dir", &t]);
            assert_eq!(s["databases"][0]["last_lsn"], expected_last, "{s}");
        }
    }
    // And the restore, run again, completes.
    let r = ok(&[
        "restore",
        "--data-dir",
        &t,
        "--database",
        "mgc",
        "--from",
        &f,
        "--replace",
    ]);
    assert_eq!(r["last_lsn"], expected_last);
    let leftovers: Vec<String> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let restored = Server::start_in(Path::new(&t), &[]);
    let c2 = restored.client();
    let admin2 = c2.admin().await;
    assert_eq!(c2.history(&admin2, room).await.len(), 600);
    eprintln!("backups killed before finishing: {killed_midway} of 9");
}
