//! The runbooks against a lab: failover after the loss of the primary data
//! center, failback to the rebuilt one, switchover both ways; refused
//! preflights; and a run killed (SIGKILL) at every step, before and after
//! the step acted, that resumes to the same end state as a run never
//! interrupted.

use super::common::*;
use super::pool::{lab_cmd, Lab};
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

impl Lab {
    /// `pchat dr ARGS --topology T --yes --json`: the report, or the error.
    pub fn dr(&self, args: &[&str], pause: Option<&str>) -> Result<Value, String> {
        let mut cmd = pchat();
        cmd.arg("dr")
            .args(args)
            .arg("--topology")
            .arg(self.topology())
            .args(["--yes", "--json"])
            .env("PCHAT_CLUSTER_SECRET_FILE", self.secret_file());
        if let Some(p) = pause {
            cmd.env("PCHAT_DR_PAUSE", p);
        }
        let out = cmd.output().unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Runs `pchat dr ARGS` until it pauses at `pause`, then SIGKILLs it.
    pub fn dr_killed_at(&self, args: &[&str], pause: &str) {
        let mut child = pchat()
            .arg("dr")
            .args(args)
            .arg("--topology")
            .arg(self.topology())
            .args(["--yes", "--json"])
            .env("PCHAT_CLUSTER_SECRET_FILE", self.secret_file())
            .env("PCHAT_DR_PAUSE", pause)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with("paused ") {
                child.kill().unwrap();
                child.wait().unwrap();
                return;
            }
            seen.push(line);
        }
        let _ = child.wait();
        panic!(
            "dr {args:?} ended without pausing at {pause}: {}",
            seen.join("\n")
        );
    }

    /// `pchat db ARGS --json` against this lab.
    pub fn db(&self, args: &[&str]) -> Value {
        self.try_db(args)
            .unwrap_or_else(|e| panic!("db {args:?}: {e}"))
    }

    pub fn try_db(&self, args: &[&str]) -> Result<Value, String> {
        let out = pchat()
            .arg("db")
            .args(args)
            .arg("--json")
            .env("PCHAT_CLUSTER_SECRET_FILE", self.secret_file())
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    }

    fn lab(&self, args: &[&str]) {
        let out = lab_cmd(self.dir.path(), args);
        assert!(
            out.status.success(),
            "lab {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until the backup database server has restored what the
    /// primary holds (continuous log shipping), so a loss ships everything.
    fn wait_shipped(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lsn = |server: &str| {
                self.db(&["status", "--server", &self.db[server]])["databases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["last_lsn"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            };
            if lsn("db1") == lsn("db3") {
                return;
            }
            assert!(Instant::now() < deadline, "log shipping never caught up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What a run leaves: pool state and active servers, and per database
    /// server and database its state, mirroring role, log-shipping role,
    /// rooms with their messages and compliance record count.
    fn end_state(&self) -> Value {
        let pool = self.admin(&["pool-state"]).unwrap();
        let mut out = json!({
            "state": pool["config"]["state"],
            "active": pool["config"]["active"],
        });
        for server in ["db1", "db2", "db3", "db4"] {
            let addr = &self.db[server];
            let Ok(status) = self.try_db(&["status", "--server", addr]) else {
                out[server] = json!("down");
                continue;
            };
            let logship = self.db(&["logship", "status", "--server", addr]);
            for d in status["databases"].as_array().unwrap() {
                let name = d["database"].as_str().unwrap();
                let shipped = logship["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|j| j["database"] == name)
                    .map(|j| j["config"]["role"].clone());
                out[server][name] = json!({
                    "state": d["state"], "role": d["role"], "logship": shipped,
                });
            }
        }
        out
    }
}

async fn story_setup(lab: &Lab) -> (Client, String, i64) {
    lab.wait_serving("chat1", true).await;
    let c1 = lab.client("chat1");
    let admin = c1.admin().await;
    let cat = c1.category(&admin, "general").await;
    let room = c1
        .room(
            &admin,
            json!({"name": "ops", "category": cat, "privacy": "open"}),
        )
        .await;
    for i in 1..=20 {
        let a = c1
            .post(&admin, room, &format!("p{i}"), &format!("p{i}"))
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    (c1, admin, room)
}

fn bodies(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

fn assert_no_gap(history: &[Value]) {
    let seqs = seqs(history);
    let want: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, want, "sequence numbers have a gap or a repeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_failback_and_switchover_lose_nothing() {
    let lab = Lab::up();
    // The lab keeps the backup mirror warm as a second secondary; for mgc
    // it is not here, so the failover seeds that mirror by a copy.
    lab.db(&[
        "logship",
        "remove",
        "--server",
        &lab.db["db4"],
        "--database",
        "mgc",
    ]);
    let (_c1, _admin, room) = story_setup(&lab).await;

    // Refused: the primary still serves (a switchover is the safe way).
    let e = lab.dr(&["failover"], None).unwrap_err();
    assert!(e.contains("switchover") && e.contains("ONLINE"), "{e}");
    // Refused: nothing to fail back.
    let e = lab.dr(&["failback"], None).unwrap_err();
    assert!(e.contains("not failed over"), "{e}");
    // --plan lists the steps and changes nothing.
    let out = pchat()
        .args(["dr", "failover", "--plan", "--topology"])
        .arg(lab.topology())
        .env("PCHAT_CLUSTER_SECRET_FILE", lab.secret_file())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("7. verify"), "{text}");
    assert!(
        text.contains("mirror mgc and mgccomp from db3 to db4"),
        "{text}"
    );
    assert_eq!(lab.admin(&["pool-state"]).unwrap()["config"]["version"], 1);

    lab.wait_shipped();
    lab.lab(&["kill-dc", "primary"]);
    // Off a terminal, nobody can confirm: refused without --yes, unchanged.
    let out = pchat()
        .args(["dr", "failover", "--topology"])
        .arg(lab.topology())
        .env("PCHAT_CLUSTER_SECRET_FILE", lab.secret_file())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--yes"), "{e}");
    assert_eq!(lab.admin(&["pool-state"]).unwrap()["config"]["version"], 1);
    let started = Instant::now();
    let report = lab.dr(&["failover"], None).unwrap();
    let took = started.elapsed();
    assert_eq!(report["procedure"], "failover");
    // Everything had been shipped: the report says nothing was lost.
    assert_eq!(
        report["recovery"]["mgc"]["not_recovered_lsns"], 0,
        "{report}"
    );
    assert!(
        report["recovery"]["mgc"]["primary_last_known_lsn"].is_i64(),
        "{report}"
    );
    let verify = &report["verify"];
    assert_eq!(verify["state"], "failed-over");
    let copies = verify["mgc"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "the backup and its mirror: {verify}");
    assert_eq!(copies[0]["rooms"][0]["messages"], 20);
    assert_eq!(copies[0]["fork_id"], copies[1]["fork_id"]);
    // mgccomp's new mirror had restored every log the backup had: paired
    // as it was. mgc's was not log shipped: none of the backup's servers
    // was active yet, so it was seeded by a copy, not through the share.
    let mirrored = &report["steps"]["mirror-backup"]["result"];
    assert_eq!(mirrored["mgccomp"]["by"], "log shipping", "{report}");
    assert_eq!(mirrored["mgc"]["by"], "copy", "{report}");
    assert_eq!(
        report["recovery"]["mgccomp"]["backup_mirror_restored_lsn"],
        report["recovery"]["mgccomp"]["restored_lsn"],
        "{report}"
    );
    assert!(report["recovery"]["mgc"]["backup_mirror_restored_lsn"].is_null());
    println!("failover took {took:?}");

    // Chat on the backup side.
    let c3 = lab.client("chat3");
    lab.wait_serving("chat3", true).await;
    let admin3 = c3.admin().await;
    assert_eq!(c3.history(&admin3, room).await.len(), 20);
    // A client that had seen seq 25 (acknowledged on the lost primary, never
    // shipped) is told the history now ends at 20, on a new fork, and gets
    // the messages that take seqs 21, 22, ... from here.
    let mut ws = ws_connect(&c3.ws_url(&admin3)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 25}}),
    )
    .await;
    let frames = ws_until(&mut ws, "subscribed").await;
    let rewound = &frames[0];
    assert_eq!(rewound["type"], "history_rewound", "{frames:?}");
    assert_eq!(
        (rewound["your_seq"].as_i64(), rewound["last_seq"].as_i64()),
        (Some(25), Some(20))
    );
    assert_eq!(rewound["fork_id"], report["verify"]["mgc"][0]["fork_id"]);
    assert_eq!(frames.last().unwrap()["rooms"][room.to_string()], 20);
    for i in 21..=30 {
        let a = c3
            .post(&admin3, room, &format!("p{i}"), &format!("p{i}"))
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let frames = ws_until(&mut ws, "message").await;
    assert_eq!(frames.last().unwrap()["seq"], 21, "{frames:?}");

    // The old data center comes back on its old data: its chat servers
    // stay inactive and its old primary serves no one.
    lab.lab(&["up"]);
    lab.wait_serving("chat1", false).await;
    let db1 = lab.db(&["status", "--server", &lab.db["db1"]]);
    for d in db1["databases"].as_array().unwrap() {
        assert_eq!(d["serving"], false, "{d}");
    }
    let a = lab
        .client("chat1")
        .post(&admin3, room, "stale", "stale")
        .await;
    assert_eq!(a.code(), "server_inactive", "{}", a.body);

    // Failback refuses while a server of the primary data center is active
    // (possible only where the topology lets servers be active across).
    let topology = std::fs::read_to_string(lab.topology()).unwrap();
    std::fs::write(
        lab.topology(),
        format!("active_across_data_centers = true\n{topology}"),
    )
    .unwrap();
    lab.admin(&["active-servers", "add", "chat1"]).unwrap();
    let e = lab.dr(&["failback"], None).unwrap_err();
    assert!(
        e.contains("chat1 of the primary data center is still active"),
        "{e}"
    );
    lab.admin(&["active-servers", "remove", "chat1"]).unwrap();
    std::fs::write(lab.topology(), topology).unwrap();

    // Failback needs the rebuilt primary data center.
    lab.lab(&["kill-dc", "primary"]);
    let e = lab.dr(&["failback"], None).unwrap_err();
    assert!(e.contains("rebuild"), "{e}");
    lab.lab(&["rebuild-dc", "primary"]);
    let report = lab.dr(&["failback"], None).unwrap();
    let verify = &report["verify"];
    assert_eq!(verify["state"], "normal");
    // The primary, its mirror, the backup and the backup mirror: both
    // secondaries follow the primary from the copied data, no full backup.
    assert_eq!(verify["mgc"].as_array().unwrap().len(), 4, "{verify}");
    let shipping = &report["steps"]["ship-from-primary"]["result"];
    for (server, db) in [("db3", "mgc"), ("db4", "mgc"), ("db4", "mgccomp")] {
        assert!(
            shipping[server][db]["secondary_from_lsn"].is_i64(),
            "{report}"
        );
    }
    // The backup mirror held both as they were (the compliance recorder had
    // recorded everything before its pair was broken).
    for db in ["mgc", "mgccomp"] {
        assert_eq!(
            report["steps"]["copy-to-primary"]["result"][db]["backup-mirror"]["state"], "RESTORING",
            "{report}"
        );
    }
    for copy in verify["mgc"].as_array().unwrap() {
        assert_eq!(copy["rooms"][0]["messages"], 30, "{copy}");
    }
    let c1 = lab.client("chat1");
    lab.wait_serving("chat1", true).await;
    let admin1 = c1.admin().await;
    let history = c1.history(&admin1, room).await;
    let want: Vec<String> = (1..=30).map(|i| format!("p{i}")).collect();
    assert_eq!(
        bodies(&history),
        want,
        "nothing written during the failover is lost"
    );
    assert_no_gap(&history);
    assert_eq!(c1.post(&admin1, room, "p31", "p31").await.status, 201);

    // A planned switchover each way: nothing lost, not even the tail.
    let report = lab.dr(&["switchover"], None).unwrap();
    assert_eq!(report["procedure"], "switchover-to-backup");
    for db in ["mgc", "mgccomp"] {
        assert_eq!(
            report["steps"]["mirror-backup"]["result"][db]["by"], "log shipping",
            "{report}"
        );
    }
    lab.wait_serving("chat4", true).await;
    let c4 = lab.client("chat4");
    let admin4 = c4.admin().await;
    assert_eq!(c4.post(&admin4, room, "p32", "p32").await.status, 201);
    let report = lab.dr(&["switchover"], None).unwrap();
    assert_eq!(report["procedure"], "failback");
    lab.wait_serving("chat2", true).await;
    let c2 = lab.client("chat2");
    let admin2 = c2.admin().await;
    let history = c2.history(&admin2, room).await;
    let want: Vec<String> = (1..=32).map(|i| format!("p{i}")).collect();
    assert_eq!(bodies(&history), want);
    assert_no_gap(&history);
}

/// Every step of a plan, in order (the keys `pchat dr --plan` prints are
/// the journal's; the tests name them as the runbook does).
const FAILOVER: [&str; 7] = [
    "ship-remaining-logs",
    "stop-log-shipping",
    "recover-backup",
    "set-pool-state-failed-over",
    "mirror-backup",
    "activate-servers-failed-over",
    "verify",
];
const FAILBACK: [&str; 8] = [
    "clear-active-servers",
    "remove-backup-mirroring",
    "copy-to-primary",
    "mirror-primary",
    "ship-from-primary",
    "set-pool-state-normal",
    "activate-servers-normal",
    "verify",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runbooks_killed_at_every_step_resume_to_the_same_end() {
    let (interrupted, straight) = (Lab::up(), Lab::up());
    for lab in [&interrupted, &straight] {
        story_setup(lab).await;
        lab.wait_shipped();
        lab.lab(&["kill-dc", "primary"]);
    }
    for step in FAILOVER {
        for when in ["before", "after"] {
            interrupted.dr_killed_at(&["failover"], &format!("{when}:{step}"));
        }
    }
    let resumed = interrupted.dr(&["failover"], None).unwrap();
    // Killed after the verification acted but before the journal said so:
    // the resumed run verifies again, and that is all.
    let redone: Vec<&String> = resumed["steps"].as_object().unwrap().keys().collect();
    assert_eq!(redone, ["verify"], "{resumed}");
    straight.dr(&["failover"], None).unwrap();
    assert_eq!(interrupted.end_state(), straight.end_state());

    for lab in [&interrupted, &straight] {
        lab.lab(&["rebuild-dc", "primary"]);
    }
    for step in FAILBACK {
        for when in ["before", "after"] {
            interrupted.dr_killed_at(&["failback"], &format!("{when}:{step}"));
        }
    }
    interrupted.dr(&["failback"], None).unwrap();
    straight.dr(&["failback"], None).unwrap();
    let (a, b) = (interrupted.end_state(), straight.end_state());
    assert_eq!(a, b);
    assert_eq!(a["state"], "normal");

    // The histories match too.
    for lab in [&interrupted, &straight] {
        lab.wait_serving("chat1", true).await;
        let c = lab.client("chat1");
        let admin = c.admin().await;
        let history = c.history(&admin, 1).await;
        assert_eq!(history.len(), 20);
        assert_no_gap(&history);
    }
}

/// The drill of the README, with less load and shorter phases (the test
/// machine runs other tests alongside): nothing acknowledged is lost across
/// the mirror failover or the failback, the data-center failover loses
/// exactly what had not been shipped, nothing is duplicated, and every
/// room's sequence numbers run without a gap.
#[test]
fn the_drill_accounts_for_every_acknowledged_post() {
    let r = drill(&[]);
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["acknowledged"].as_u64().unwrap() > 1000, "{r}");
    assert_eq!(r["lost_on_mirror_failover"], 0, "{r}");
    assert_eq!(r["lost_on_failback"], 0, "{r}");
    assert_eq!(r["duplicated"], 0, "{r}");
    assert_eq!(r["seq_gaps"], 0, "{r}");
    assert_eq!(r["lost_on_dc_failover"], r["unshipped_at_dc_loss"], "{r}");
    for key in ["mirror_failover", "dc_failover", "failback_runbook"] {
        assert!(r["rto_seconds"][key].is_number(), "{r}");
    }
    println!("{r}");
}

/// The same story with clients that keep an outbox: after the failover they
/// post again what the backup lacks, and nothing any client was told is
/// lost.
#[test]
fn with_outboxes_the_drill_loses_nothing_acknowledged() {
    let r = drill(&["--resend-lost"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["resent_after_dc_loss"], r["unshipped_at_dc_loss"], "{r}");
    for key in [
        "lost_on_mirror_failover",
        "lost_on_dc_failover",
        "lost_on_failback",
        "duplicated",
        "seq_gaps",
    ] {
        assert_eq!(r[key], 0, "{key}: {r}");
    }
    println!("{r}");
}

/// A verification that finds a copy it cannot compare (here the backup
/// mirror, killed after the failover) fails the runbook with a non-zero
/// exit that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_verification_exits_non_zero() {
    let lab = Lab::up();
    story_setup(&lab).await;
    lab.wait_shipped();
    lab.lab(&["kill-dc", "primary"]);
    lab.dr(&["failover"], None).unwrap();
    let lab_json: Value =
        serde_json::from_slice(&std::fs::read(lab.dir.path().join("lab.json")).unwrap()).unwrap();
    let db4 = lab_json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "db4")
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    unsafe {
        libc::kill(db4 as i32, libc::SIGKILL);
    }
    // A run whose journal has every step done but the verification.
    let done: serde_json::Map<String, Value> = FAILOVER[..FAILOVER.len() - 1]
        .iter()
        .map(|k| (k.to_string(), Value::Null))
        .collect();
    let journal = json!({
        "procedure": "failover", "started_at_ms": 1, "done": done,
        "facts": {}, "finished": false,
    });
    std::fs::write(
        lab.dir.path().join("dr-journal.json"),
        serde_json::to_vec(&journal).unwrap(),
    )
    .unwrap();
    let e = lab.dr(&["failover"], None).unwrap_err();
    assert!(e.contains("verification failed"), "{e}");
    assert!(e.contains("db4"), "{e}");
}

/// `pchat lab drill` with a light load in a new lab (taken down after); its
/// report.
fn drill(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = pchat()
        .args(["lab", "drill", "--json", "--rate", "300", "--clients", "20"])
        .args(["--rooms", "4", "--phase", "2s"])
        .args(extra)
        .arg("--dir")
        .arg(dir.path())
        .env("PCHAT_BOOTSTRAP_ADMIN", format!("{ADMIN}:{ADMIN_PW}"))
        .env("PCHAT_LOG", "warn")
        .output()
        .unwrap();
    let _ = pchat()
        .args(["lab", "down", "--dir"])
        .arg(dir.path())
        .output();
    assert!(
        out.status.success(),
        "drill failed: {}\nreport: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // Under load too, the runbooks kept the backup mirror warm: the
    // failover paired it as it was, and the failback held both of its
    // databases in place (none initialised again from a full backup).
    let mut journals = std::collections::HashMap::new();
    for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().to_string();
        if name.starts_with("dr-journal-") {
            let j: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
            journals.insert(j["procedure"].as_str().unwrap().to_string(), j);
        }
    }
    for db in ["mgc", "mgccomp"] {
        let failover = &journals["failover"]["done"]["mirror-backup"];
        assert_eq!(failover[db]["by"], "log shipping", "{failover}");
        let failback = &journals["failback"]["done"]["copy-to-primary"];
        assert_eq!(
            failback[db]["backup-mirror"]["state"], "RESTORING",
            "{failback}"
        );
    }
    serde_json::from_slice(&out.stdout).unwrap()
}
