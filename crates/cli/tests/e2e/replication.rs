//! Mirroring and log shipping between real database servers on 127.0.0.1,
//! with a real chat server in front and real clients posting.

use super::common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (client_msg_id, seq) of every acknowledged post.
type Acked = Arc<Mutex<Vec<(String, i64)>>>;

/// Clients posting into `room` until `stop`, each retrying a post that
/// failed with the same client_msg_id (as real clients do) until it is
/// acknowledged. Answers (id, seq) of every acknowledged post.
fn posting(
    c: &Client,
    token: &str,
    room: i64,
    lanes: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (c, token, acked, stop) = (c.clone(), token.to_string(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("l{lane}-{i}");
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let a = c.post(&token, room, &id, &id).await;
                    if a.status == 201 || a.status == 200 {
                        acked
                            .lock()
                            .unwrap()
                            .push((id.clone(), a.body["seq"].as_i64().unwrap()));
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{id} never acknowledged: {}",
                        a.body
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                i += 1;
                tokio::time::sleep(pause).await;
            }
        }));
    }
    (acked, tasks)
}

fn chat_env(database: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PCHAT_BOOTSTRAP_ADMIN", format!("{ADMIN}:{ADMIN_PW}")),
        ("PCHAT_CLUSTER_SECRET", SECRET.to_string()),
        ("PCHAT_DATABASE", database.to_string()),
    ]
}

/// `pchat db mirror set`: `mirror` becomes the mirror of `principal`'s
/// databases (`db`: one of them), initialised through `share`.
fn mirror_set(
    principal: &str,
    mirror: &str,
    share: &str,
    db: Option<&str>,
    mode: &str,
) -> Result<Value, String> {
    let mut args = vec![
        "mirror",
        "set",
        "--principal",
        principal,
        "--mirror",
        mirror,
        "--share",
        share,
        "--mode",
        mode,
    ];
    if let Some(db) = db {
        args.extend(["--database", db]);
    }
    db_cmd(&args)
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A chat server (on a temporary data directory) using `database`.
fn chat_on(database: &str) -> Server {
    Server::start_temp(&refs(&chat_env(database)))
}

/// An open room `name` in the category "general", made by `admin`.
async fn open_room(c: &Client, admin: &str, name: &str) -> i64 {
    let cat = c.category(admin, "general").await;
    c.room(
        admin,
        json!({"name": name, "category": cat, "privacy": "open"}),
    )
    .await
}

/// Every acknowledged post is in the history exactly once, and the
/// sequence numbers have no gap.
fn exactly_once(history: &[Value], acked: &[(String, i64)]) {
    let bodies: Vec<&str> = history
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    for (id, seq) in acked {
        let n = bodies.iter().filter(|b| *b == id).count();
        assert_eq!(n, 1, "acknowledged {id} (seq {seq}) is there exactly once");
    }
    assert_eq!(
        seqs(history),
        (1..=history.len() as i64).collect::<Vec<_>>()
    );
}

/// A synchronous mirror: clients post; the principal is killed with SIGKILL
/// mid-load; the mirror is forced into service; every acknowledged post is
/// on the new principal exactly once. The old principal, restarted, does
/// not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_mirror_forced_into_service_has_every_acknowledged_post() {
    let (d1, d2, share) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut principal = DbServer::start(d1.path(), "127.0.0.1:0");
    let mirror = DbServer::start(d2.path(), "127.0.0.1:0");
    let share_s = share.path().display().to_string();
    let set = mirror_set(&principal.addr, &mirror.addr, &share_s, None, "sync").unwrap();
    assert_eq!(set.as_array().unwrap().len(), 2, "{set}");
    // A second mirror set onto a mirror holding data of this family is fine;
    // the mirror refuses to serve.
    assert_eq!(db_status(&mirror.addr, "mgc")["state"], "RESTORING");
    assert_eq!(db_status(&mirror.addr, "mgc")["serving"], false);
    let forks_before = db_status(&mirror.addr, "mgc")["forks"].clone();

    let chat = chat_on(&format!("{},{}", principal.addr, mirror.addr));
    let c = chat.client();
    let admin = c.admin().await;
    let room = open_room(&c, &admin, "busy").await;
    // A file, in several protocol parts: the mirror gets it with the post.
    let content: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    let up = super::files::upload(&c, &admin, room, "plan.bin", "file-1", content.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let file_url = up.body["file"]["url"].as_str().unwrap().to_string();
    // Synchronized: the mirror holds what the principal acknowledged.
    let mut synced = false;
    for _ in 0..100 {
        let s = db_status(&principal.addr, "mgc");
        if s["mirroring"]["synchronized"] == true {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(synced, "the mirror never synchronized");

    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = posting(&c, &admin, room, 4, Duration::ZERO, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 10, "posts were acknowledged before the kill");
    let principal_addr = principal.addr.clone();
    principal.kill9();
    let forced = db_cmd(&["mirror", "force-service", "--server", &mirror.addr]).unwrap();
    // What the mirror lacks was committed on the principal but, the mirror
    // being synchronous, never acknowledged (checked below: every
    // acknowledged post is there).
    for d in forced.as_array().unwrap() {
        assert_eq!(d["mode"], "sync", "{d}");
        eprintln!("forced service: {d}");
    }
    // The chat server finds the new principal; the clients' retries land.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < before + 200 {
        assert!(
            Instant::now() < deadline,
            "posting did not resume on the new principal"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let history = c.history(&admin, room).await;
    exactly_once(&history, &acked);
    let (status, bytes, _) = super::files::download(&c, &admin, &file_url).await;
    assert_eq!(status, 200);
    assert!(bytes == content, "the file on the new principal differs");

    // The old principal comes back: it must not serve.
    let old = DbServer::start(d1.path(), &principal_addr);
    for _ in 0..30 {
        let s = db_status(&old.addr, "mgc");
        assert_eq!(s["serving"], false, "the old principal serves: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The chat server still writes to the new principal only.
    let a = c.post(&admin, room, "after", "after").await;
    assert_eq!(a.status, 201, "{}", a.body);
    let mgc = db_status(&mirror.addr, "mgc");
    assert_eq!(mgc["serving"], true, "{mgc}");
    // Its fork history (which status keeps between calls) has the new fork.
    let forks = mgc["forks"].as_array().unwrap();
    assert_eq!(forks.len(), forks_before.as_array().unwrap().len() + 1);
    assert_eq!(forks.last().unwrap()["fork_id"], mgc["fork_id"], "{mgc}");
}

/// A mirror acknowledges a batch once its journal holds it and applies it
/// later. Strict mode, clients posting; the mirror is killed with SIGKILL
/// while its journal holds batches it has not applied (its redo waits 3 s
/// here), then the principal too. The mirror, restarted, applies its
/// journal; forced into service it has every acknowledged post, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_killed_with_batches_in_its_journal_keeps_them() {
    let (d1, d2, share) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut principal = DbServer::start(d1.path(), "127.0.0.1:0");
    let slow_redo = [("PCHAT_MIRROR_REDO_MS", "3000")];
    let mut mirror = DbServer::start_env(d2.path(), "127.0.0.1:0", &[], &slow_redo);
    let share_s = share.path().display().to_string();
    mirror_set(&principal.addr, &mirror.addr, &share_s, None, "strict").unwrap();
    let chat = chat_on(&principal.addr);
    let c = chat.client();
    let admin = c.admin().await;
    let room = open_room(&c, &admin, "journal").await;
    // Wait out the redo of what setting up wrote.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = posting(&c, &admin, room, 4, Duration::ZERO, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let journal = d2.path().join("mgc.db.mirror-journal");
    let held = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
    mirror.kill9();
    // Strict: with the mirror away nothing more is acknowledged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    principal.kill9();
    stop.store(true, Ordering::SeqCst);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "posts were acknowledged before the kill");
    assert!(held > 0, "the journal held batches at the kill");
    drop(tasks);

    let mirror = DbServer::start(d2.path(), &mirror.addr);
    // It applies its journal as it starts (after it bound its address).
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&journal).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the restarted mirror kept its journal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let forced = db_cmd(&["mirror", "force-service", "--server", &mirror.addr]).unwrap();
    eprintln!("forced service: {forced}");
    let chat = chat_on(&mirror.addr);
    let c = chat.client();
    let admin = c.admin().await;
    let history = c.history(&admin, room).await;
    exactly_once(&history, &acked);
}

/// Planned failover: roles switch with nothing lost; `mirror remove`
/// breaks the pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_mirror_failover_switches_roles_without_loss() {
    let (d1, d2, share) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = DbServer::start(d1.path(), "127.0.0.1:0");
    let b = DbServer::start(d2.path(), "127.0.0.1:0");
    let share_s = share.path().display().to_string();
    mirror_set(&a.addr, &b.addr, &share_s, Some("mgc"), "sync").unwrap();
    let chat = chat_on(&format!("{},{}", a.addr, b.addr));
    let c = chat.client();
    let admin = c.admin().await;
    let room = open_room(&c, &admin, "calm").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = posting(&c, &admin, room, 2, Duration::from_millis(5), stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = db_cmd(&[
        "mirror",
        "failover",
        "--server",
        &a.addr,
        "--database",
        "mgc",
    ])
    .unwrap();
    assert!(out[0]["last_lsn"].as_i64().unwrap() > 0, "{out}");
    assert_eq!(db_status(&a.addr, "mgc")["state"], "RESTORING");
    assert_eq!(db_status(&b.addr, "mgc")["serving"], true);
    let n = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < n + 50 {
        assert!(
            Instant::now() < deadline,
            "posting did not resume after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    exactly_once(&c.history(&admin, room).await, &acked.lock().unwrap());
    // The old principal follows as the mirror, and is synchronized.
    let mut synced = false;
    for _ in 0..100 {
        if db_status(&b.addr, "mgc")["mirroring"]["synchronized"] == true {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(synced, "{}", db_status(&b.addr, "mgc"));
    // A failover against the mirror is refused.
    let e = db_cmd(&[
        "mirror",
        "failover",
        "--server",
        &a.addr,
        "--database",
        "mgc",
    ])
    .unwrap_err();
    assert!(e.contains("not a principal"), "{e}");
    // Remove: both keep their data; the mirror stays RESTORING.
    db_cmd(&["mirror", "remove", "--server", &b.addr, "--database", "mgc"]).unwrap();
    db_cmd(&["mirror", "remove", "--server", &a.addr, "--database", "mgc"]).unwrap();
    assert_eq!(db_status(&a.addr, "mgc")["state"], "RESTORING");
    assert!(db_status(&b.addr, "mgc")["mirroring"].is_null());
}

/// Log shipping under steady load for 30 s in continuous mode: the
/// secondary stays within a second or two of the primary. Then the primary
/// is killed, what is left is applied, and the secondary comes online:
/// every log backup that reached the share is applied, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_shipping_keeps_the_secondary_close_and_brings_it_online() {
    let (d1, d2, share, copy) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut primary = DbServer::start(d1.path(), "127.0.0.1:0");
    let secondary = DbServer::start_with(
        d2.path(),
        "127.0.0.1:0",
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let (share_s, copy_s) = (
        share.path().display().to_string(),
        copy.path().display().to_string(),
    );
    let out = db_cmd(&[
        "logship",
        "configure",
        "--primary",
        &primary.addr,
        "--secondary",
        &secondary.addr,
        "--share",
        &share_s,
        "--copy-to",
        &copy_s,
        "--continuous",
    ])
    .unwrap();
    assert_eq!(out.as_array().unwrap().len(), 2, "{out}");
    // Refused: a secondary that is ONLINE, when told it is initialised.
    let other = tempfile::tempdir().unwrap();
    let third = DbServer::start(other.path(), "127.0.0.1:0");
    let e = db_cmd(&[
        "logship",
        "configure",
        "--primary",
        &primary.addr,
        "--secondary",
        &third.addr,
        "--share",
        &share_s,
        "--copy-to",
        &copy_s,
        "--continuous",
        "--initialized",
    ])
    .unwrap_err();
    assert!(e.contains("is ONLINE"), "{e}");

    let chat = chat_on(&primary.addr);
    let c = chat.client();
    let admin = c.admin().await;
    let room = open_room(&c, &admin, "shipped").await;
    let content = b"shipped with the log".repeat(1000);
    let up = super::files::upload(&c, &admin, room, "notes.txt", "file-1", content.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let file_url = up.body["file"]["url"].as_str().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = posting(&c, &admin, room, 2, Duration::from_millis(5), stop.clone());
    // Measure the lag: how long until the secondary holds what the primary
    // held at an instant.
    let started = Instant::now();
    let mut lags = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        let target = db_status(&primary.addr, "mgc")["last_lsn"]
            .as_i64()
            .unwrap();
        let t0 = Instant::now();
        while db_status(&secondary.addr, "mgc")["last_lsn"]
            .as_i64()
            .unwrap()
            < target
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the secondary stopped following"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lags.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lags.sort();
    let (median, max) = (lags[lags.len() / 2], lags[lags.len() - 1]);
    eprintln!(
        "log shipping lag over {} samples: median {median:?}, max {max:?}",
        lags.len()
    );
    // The continuous-mode targets: median ≤ 0.25 s, max ≤ 1 s.
    assert!(
        median <= Duration::from_millis(250),
        "lag median {median:?}"
    );
    assert!(max <= Duration::from_secs(1), "lag max {max:?}");
    let status = db_cmd(&["logship", "status", "--server", &secondary.addr]).unwrap();
    let jobs = status["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{status}");
    assert!(jobs
        .iter()
        .all(|j| j["monitor"]["restore"]["runs"].as_u64().unwrap() > 0));
    // The monitor in /metrics.
    let text = reqwest::get(format!(
        "http://{}/metrics",
        secondary.metrics.as_ref().unwrap()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    for line in [
        "pchat_logship_lag_lsns{database=\"mgc\"}",
        "pchat_logship_last_restore_age_seconds{database=\"mgccomp\"}",
        "pchat_db_online{database=\"mgc\"} 0",
        "pchat_logship_alerts{database=\"mgc\"} 0",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }

    // The primary is lost mid-load.
    primary.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.abort();
    }
    let acked = acked.lock().unwrap().clone();
    db_cmd(&["logship", "run", "--server", &secondary.addr]).unwrap();
    let shipped = db_cmd(&["backups", "--share", &share_s]).unwrap();
    let last_shipped = shipped["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["header"]["database"] == "mgc")
        .map(|b| b["header"]["last_lsn"].as_i64().unwrap())
        .max()
        .unwrap();
    db_cmd(&["logship", "remove", "--server", &secondary.addr]).unwrap();
    let rec = db_cmd(&["recover", "--server", &secondary.addr, "--database", "mgc"]).unwrap();
    db_cmd(&[
        "recover",
        "--server",
        &secondary.addr,
        "--database",
        "mgccomp",
    ])
    .unwrap();
    assert_eq!(rec["last_lsn"].as_i64().unwrap(), last_shipped, "{rec}");
    assert_eq!(rec["state"], "ONLINE");

    // A chat server on the secondary: the history is the acknowledged posts
    // in order, up to what was shipped.
    let chat2_dir = tempfile::tempdir().unwrap();
    let env2 = chat_env(&secondary.addr);
    let chat2 = Server::start_in(chat2_dir.path(), &refs(&env2));
    let c2 = chat2.client();
    let admin2 = c2.sign_in(ADMIN, ADMIN_PW).await;
    let (status, bytes, _) = super::files::download(&c2, &admin2, &file_url).await;
    assert_eq!(status, 200);
    assert!(bytes == content, "the shipped file differs");
    let history: Vec<Value> = c2
        .history(&admin2, room)
        .await
        .into_iter()
        .skip(1)
        .collect();
    let mut in_order = acked.clone();
    in_order.sort_by_key(|(_, seq)| *seq);
    assert!(!history.is_empty());
    for (m, (id, seq)) in history.iter().zip(&in_order) {
        assert_eq!(
            (m["body"].as_str().unwrap(), m["seq"].as_i64().unwrap()),
            (id.as_str(), *seq)
        );
    }
    eprintln!(
        "{} of {} acknowledged posts were shipped before the kill",
        history.len(),
        acked.len()
    );
    assert_eq!(
        seqs(&history),
        (2..=history.len() as i64 + 1).collect::<Vec<_>>()
    );
}

/// The mirror goes away: in strict mode the principal refuses writes (and a
/// retried post commits once when the mirror is back); in sync mode it goes
/// on alone and says it is exposed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_away_stops_strict_writes_and_exposes_sync_ones() {
    let (d1, d2, share) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = DbServer::start_with(
        d1.path(),
        "127.0.0.1:0",
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let mut b = DbServer::start(d2.path(), "127.0.0.1:0");
    let share_s = share.path().display().to_string();
    let (a_addr, b_addr) = (a.addr.clone(), b.addr.clone());
    let set = |mode: &str| mirror_set(&a_addr, &b_addr, &share_s, Some("mgc"), mode).unwrap();
    set("strict");
    let chat = chat_on(&a.addr);
    let c = chat.client();
    let admin = c.admin().await;
    let room = open_room(&c, &admin, "strict").await;
    assert_eq!(c.post(&admin, room, "one", "one").await.status, 201);

    b.kill9();
    let mut refused = false;
    for _ in 0..100 {
        let p = c.post(&admin, room, "two", "two").await;
        if p.status == 503 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "strict mode took a write with its mirror away");
    let s = db_status(&a.addr, "mgc");
    assert!(s["refusal"].as_str().unwrap().contains("strict"), "{s}");
    // The mirror returns: the retried post commits, once.
    let mut b = DbServer::start(d2.path(), &b_addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = c.post(&admin, room, "two", "two").await;
        if p.status == 201 || p.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {}",
            p.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = c.history(&admin, room).await;
    assert_eq!(h.iter().filter(|m| m["body"] == "two").count(), 1);

    // Sync mode: the principal goes on alone, exposed.
    db_cmd(&["mirror", "remove", "--server", &a.addr, "--database", "mgc"]).unwrap();
    db_cmd(&["mirror", "remove", "--server", &b.addr, "--database", "mgc"]).unwrap();
    set("sync");
    b.kill9();
    let mut exposed = false;
    for i in 0..100 {
        let p = c
            .post(&admin, room, &format!("s{i}"), &format!("s{i}"))
            .await;
        assert!(p.status == 201 || p.status == 503, "{}", p.body);
        if p.status == 201 && db_status(&a.addr, "mgc")["mirroring"]["exposed"] == true {
            exposed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exposed, "{}", db_status(&a.addr, "mgc"));
    let text = reqwest::get(format!("http://{}/metrics", a.metrics.as_ref().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "pchat_mirror_exposed{database=\"mgc\"} 1",
        "pchat_mirror_connected{database=\"mgc\"} 0",
        "pchat_db_serving{database=\"mgc\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

/// Stops `server` with SIGSTOP (SIGCONT to the pid answered thaws it): its
/// connections stay up, it answers and hardens nothing.
fn freeze(server: &DbServer) -> i32 {
    let pid = server.child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    pid
}

/// Posts `id` in the background, beside a frozen mirror, and waits until
/// `principal` has committed it (the acknowledgement waits for the mirror).
async fn post_while_frozen(
    c: &Client,
    admin: &str,
    room: i64,
    id: &str,
    principal: &str,
) -> tokio::task::JoinHandle<Answer> {
    let lsn = || db_status(principal, "mgc")["last_lsn"].as_i64().unwrap();
    let before = lsn();
    let (c, admin, id) = (c.clone(), admin.to_string(), id.to_string());
    let post = tokio::spawn(async move { c.post(&admin, room, &id, &id).await });
    let deadline = Instant::now() + Duration::from_secs(2);
    while lsn() <= before {
        assert!(Instant::now() < deadline, "the principal never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    post
}

/// Log shipping from a synchronous principal ships only what its mirror has
/// hardened (`Mirroring::backup_limit`): with the mirror frozen (SIGSTOP), a
/// commit the mirror lacks stays off the share, so a mirror forced into
/// service could never lack what the log-shipping secondary holds. Thawed,
/// the mirror hardens it and it ships.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_principal_ships_only_what_its_mirror_hardened() {
    let (d1, d2, d3, share, copy) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let principal = DbServer::start(d1.path(), "127.0.0.1:0");
    let mirror = DbServer::start(d2.path(), "127.0.0.1:0");
    let secondary = DbServer::start(d3.path(), "127.0.0.1:0");
    let (share_s, copy_s) = (
        share.path().display().to_string(),
        copy.path().display().to_string(),
    );
    mirror_set(&principal.addr, &mirror.addr, &share_s, Some("mgc"), "sync").unwrap();
    db_cmd(&[
        "logship",
        "configure",
        "--primary",
        &principal.addr,
        "--secondary",
        &secondary.addr,
        "--share",
        &share_s,
        "--copy-to",
        &copy_s,
        "--continuous",
        "--database",
        "mgc",
    ])
    .unwrap();
    let chat = chat_on(&principal.addr);
    let c = chat.client();
    let admin = c.admin().await;
    let room = open_room(&c, &admin, "limited").await;
    assert_eq!(c.post(&admin, room, "one", "one").await.status, 201);
    let lsn = |addr: &str| db_status(addr, "mgc")["last_lsn"].as_i64().unwrap();
    let shipped_all = |target: i64| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while lsn(&secondary.addr) < target {
            assert!(Instant::now() < deadline, "log shipping never caught up");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    shipped_all(lsn(&principal.addr));
    let before = lsn(&secondary.addr);

    let pid = freeze(&mirror);
    let post = post_while_frozen(&c, &admin, room, "two", &principal.addr).await;
    // Continuous shipping takes well under a second; for two seconds (the
    // mirror is declared away only after five) nothing past what the mirror
    // holds reaches the secondary.
    let committed = lsn(&principal.addr);
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert_eq!(
            lsn(&secondary.addr),
            before,
            "shipped LSNs the mirror did not hold (principal at {committed})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !post.is_finished(),
        "a sync post was acknowledged unmirrored"
    );

    // Thawed: the mirror hardens, the post is acknowledged, the log ships.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let answer = post.await.unwrap();
    assert_eq!(answer.status, 201, "{}", answer.body);
    shipped_all(lsn(&principal.addr));
    assert_eq!(
        db_status(&principal.addr, "mgc")["mirroring"]["exposed"],
        false
    );
}

/// A strict principal acknowledges a post only once its mirror holds it.
/// When the pair is removed while a post waits for a frozen mirror (the
/// acknowledgement's waiter is dropped with the pair, well before the
/// mirror would be declared away after five seconds), the post is not
/// acknowledged; retried with its client_msg_id on the now unmirrored
/// principal, it is acknowledged once, and the history holds it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_post_is_not_acknowledged_when_its_pair_is_removed_under_it() {
    let (d1, d2, share) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let principal = DbServer::start(d1.path(), "127.0.0.1:0");
    let mirror = DbServer::start(d2.path(), "127.0.0.1:0");
    let share_s = share.path().display().to_string();
    mirror_set(
        &principal.addr,
        &mirror.addr,
        &share_s,
        Some("mgc"),
        "strict",
    )
    .unwrap();
    let chat = chat_on(&principal.addr);
    let c = chat.client();
    let admin = c.admin().await;
    let room = open_room(&c, &admin, "removed").await;
    assert_eq!(c.post(&admin, room, "one", "one").await.status, 201);

    let pid = freeze(&mirror);
    let started = Instant::now();
    let post = post_while_frozen(&c, &admin, room, "two", &principal.addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !post.is_finished(),
        "a strict post was acknowledged unmirrored"
    );
    db_cmd(&[
        "mirror",
        "remove",
        "--server",
        &principal.addr,
        "--database",
        "mgc",
    ])
    .unwrap();
    let answer = post.await.unwrap();
    let waited = started.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.code(), "unavailable", "{}", answer.body);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("went away before it held"),
        "{}",
        answer.body
    );
    // Answered by the removal, not by the mirror being declared away.
    assert!(
        waited < Duration::from_secs(4),
        "answered after {waited:?}: not by the removal"
    );

    // The client retries with the same client_msg_id: one message.
    let again = c.post(&admin, room, "two", "two").await;
    assert!(again.status == 200 || again.status == 201, "{}", again.body);
    let history = c.history(&admin, room).await;
    let twos = history.iter().filter(|m| m["body"] == "two").count();
    assert_eq!(twos, 1, "{history:?}");
}
