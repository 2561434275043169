//! Compliance: a mixed workload with a SIGKILL in the middle, then exports
//! (continuous XML with a crash between writing and marking, and JSON Lines)
//! that hold every acknowledged message exactly once; the XML validates
//! against docs/compliance.xsd.

use super::common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Body → (room, seq) of every acknowledged post.
type Acked = Arc<Mutex<HashMap<String, (i64, i64)>>>;

/// Posts over HTTP from a few tasks until the server goes away or `n` each.
async fn post_load(c: &Client, token: &str, rooms: &[i64], tag: &str, n: usize, acked: Acked) {
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let (c, token, rooms, acked, tag) = (
            c.clone(),
            token.to_string(),
            rooms.to_vec(),
            acked.clone(),
            tag.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let room = rooms[(lane + i) % rooms.len()];
                let body = format!("{tag}-{lane}-{i} <&\"'>");
                let Ok(resp) = c
                    .http
                    .post(format!("{}/api/v1/rooms/{room}/messages", c.base))
                    .bearer_auth(&token)
                    .json(&json!({"body": body, "client_msg_id": format!("{tag}-{lane}-{i}")}))
                    .send()
                    .await
                else {
                    return;
                };
                if resp.status().as_u16() != 201 {
                    return;
                }
                let Ok(v) = resp.json::<Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .insert(body, (room, v["seq"].as_i64().unwrap()));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn export(server: &Server, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = pchat();
    cmd.args([
        "admin",
        "compliance",
        "export",
        "--json",
        "--url",
        &server.url,
    ])
    .args(["--as", &format!("{ADMIN}:{ADMIN_PW}"), "--out"])
    .arg(out)
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#10;", "\n")
        .replace("&amp;", "&")
}

/// The CHAT contents of an exported XML file, with their channel.
fn xml_chats(xml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut channel = String::new();
    for line in xml.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("<Channel uri=\"") {
            channel = rest.split('"').next().unwrap().to_string();
        }
        if let Some(rest) = line.strip_prefix("<Message type=\"CHAT\" content=\"") {
            let content = rest.split("\" id=\"").next().unwrap();
            out.push((channel.clone(), unescape(content)));
        }
    }
    out
}

fn files_with(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dir).unwrap() {
        let d = d.unwrap().path();
        if d.is_dir() {
            out.extend(files_with(&d, ext));
        } else if d.extension().is_some_and(|e| e == ext) {
            out.push(d);
        }
    }
    out.sort();
    out
}

fn schema_valid(file: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/compliance.xsd");
    let o = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(file)
        .output()
        .expect("xmllint (Debian's libxml2-utils, installed by .ci/run) must be on PATH");
    assert!(
        o.status.success(),
        "{} does not validate: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hold_every_acknowledged_message_once_across_crashes() {
    let mut server = Server::start();
    let c = server.client();
    let admin = c.admin().await;
    let alice = c.user(&admin, "alice").await;
    let cat = c.category(&admin, "general").await;
    let rooms: Vec<i64> = futures_util::future::join_all((0..3).map(|i| {
        c.room(
            &alice,
            json!({"name": format!("room {i}"), "category": cat, "privacy": "open"}),
        )
    }))
    .await;
    let acked: Acked = Arc::default();

    // Load, and SIGKILL the server in the middle of it.
    let load = {
        let (c, alice, rooms, acked) = (c.clone(), alice.clone(), rooms.clone(), acked.clone());
        tokio::spawn(async move { post_load(&c, &alice, &rooms, "a", 400, acked).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill9();
    let _ = load.await;
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "some posts were acknowledged before the crash");
    let server = server.restart();
    let c = server.client();
    let alice = c.sign_in("alice", "alice-password").await;
    let bob = c.user(&c.admin().await, "bob").await;
    // A history read by bob: BACKCHAT.
    assert!(!c.history(&bob, rooms[0]).await.is_empty());
    post_load(&c, &alice, &rooms, "b", 50, acked.clone()).await;

    // Continuous XML export, crashing once between the rename and the mark.
    let out = tempfile::tempdir().unwrap();
    let xml = [
        "--new-only",
        "--job",
        "xml",
        "--room-details",
        "--user-details",
    ];
    let wait_recorded = |n: usize| {
        let c = c.clone();
        async move {
            let admin = c.admin().await;
            for _ in 0..200 {
                let a = c
                    .call(
                        "GET",
                        "/api/v1/compliance/records?limit=10000",
                        Some(&admin),
                        Value::Null,
                    )
                    .await;
                let chats = a.body["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["kind"] == "CHAT")
                    .count();
                if chats >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the compliance recorder did not catch up");
        }
    };
    let n = acked.lock().unwrap().len();
    wait_recorded(n).await;
    let (ok, text) = export(
        &server,
        out.path(),
        &xml,
        &[("PCHAT_TEST_CRASH_AFTER_EXPORT_RENAME", "1")],
    );
    assert!(!ok, "the failpoint aborts the export: {text}");
    assert_eq!(
        files_with(out.path(), "xml").len(),
        1,
        "the directory was renamed into place"
    );
    post_load(&c, &alice, &rooms, "c", 25, acked.clone()).await;
    let n = acked.lock().unwrap().len();
    wait_recorded(n).await;
    let (ok, text) = export(&server, out.path(), &xml, &[]);
    assert!(ok, "{text}");
    let report: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(report["recovered"].as_array().unwrap().len(), 1, "{report}");
    // (Its own sign-in may be recorded while it runs: then a second batch.)
    assert!(
        !report["batches"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // Only what happened since: the previous export's own sign-in and
    // sign-out (pool records: no conversation, so no CHAT).
    let (ok, text) = export(&server, out.path(), &xml, &[]);
    assert!(ok, "{text}");
    let report: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for batch in report["batches"].as_array().unwrap() {
        let dir = batch["dir"].as_str().unwrap();
        let third = std::fs::read_to_string(Path::new(dir).join("conversations.xml")).unwrap();
        assert!(xml_chats(&third).is_empty(), "{third}");
    }

    // Every committed message (acknowledged ones, and any the crash took
    // before its answer) exactly once, in the right room; valid XML.
    let acked = acked.lock().unwrap().clone();
    let mut committed: HashMap<String, (i64, i64)> = HashMap::new();
    for room in &rooms {
        for m in c.history(&alice, *room).await {
            committed.insert(
                m["body"].as_str().unwrap().to_string(),
                (*room, m["seq"].as_i64().unwrap()),
            );
        }
    }
    for (body, at) in &acked {
        assert_eq!(
            committed.get(body),
            Some(at),
            "acknowledged {body} is in history"
        );
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let files = files_with(out.path(), "xml");
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        schema_valid(f);
        let text = std::fs::read_to_string(f).unwrap();
        if text.contains("<Conversation>") {
            assert!(text.contains("DisplayName=\"alice\""), "user details");
            assert!(text.contains("category=\"general\""), "room details");
        }
        for (channel, body) in xml_chats(&text) {
            let (room, _) = committed
                .get(&body)
                .unwrap_or_else(|| panic!("exported a message never committed: {body}"));
            assert_eq!(channel, format!("ma-chan://pchat/{room}"));
            *seen.entry(body).or_default() += 1;
        }
    }
    let missing: Vec<_> = acked.keys().filter(|b| !seen.contains_key(*b)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not exported: {missing:?}"
    );
    assert!(seen.values().all(|n| *n == 1), "exported twice");

    // JSON Lines, one file per room, in one go: the same messages once each,
    // BACKCHAT for bob's read, and sign-ins in pool.jsonl.
    let out2 = tempfile::tempdir().unwrap();
    let (ok, text) = export(
        &server,
        out2.path(),
        &["--format", "jsonl", "--per-room"],
        &[],
    );
    assert!(ok, "{text}");
    let mut chats = HashSet::new();
    let mut kinds = HashSet::new();
    for f in files_with(out2.path(), "jsonl") {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            kinds.insert(v["kind"].as_str().unwrap().to_string());
            if v["kind"] == "CHAT" {
                let body = v["content"].as_str().unwrap().to_string();
                assert_eq!(
                    committed.get(&body),
                    Some(&(v["room"].as_i64().unwrap(), v["seq"].as_i64().unwrap())),
                    "{v}"
                );
                assert!(chats.insert(body), "twice in JSON Lines");
            }
        }
    }
    assert_eq!(chats.len(), committed.len());
    for k in ["CHAT", "BACKCHAT", "SIGNIN", "ADMIN"] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    assert!(out2.path().read_dir().unwrap().next().is_some());

    // Bad input: a bad job name, conflicting flags; nothing is written.
    let out3 = tempfile::tempdir().unwrap();
    let (ok, text) = export(&server, out3.path(), &["--new-only", "--job", "a/b"], &[]);
    assert!(!ok && text.contains("--job"), "{text}");
    let (ok, _) = export(
        &server,
        out3.path(),
        &["--new-only", "--since", "2026-01-01"],
        &[],
    );
    assert!(!ok);
    assert!(files_with(out3.path(), "xml").is_empty());
}
