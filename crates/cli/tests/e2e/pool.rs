//! The pool across two data centers (`pchat lab`): active servers, pool
//! state, how fast chat servers follow a change, fencing of stale chat
//! servers by the database servers, and a configuration that survives the
//! loss of a data center.

use super::common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A lab brought up in a temporary directory; SIGKILLed when dropped.
pub struct Lab {
    pub dir: tempfile::TempDir,
    /// Chat servers' base URLs by name.
    pub chat: HashMap<String, String>,
    /// Database servers' addresses by name.
    pub db: HashMap<String, String>,
}

pub fn lab_cmd(dir: &Path, args: &[&str]) -> std::process::Output {
    pchat()
        .arg("lab")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("PCHAT_BOOTSTRAP_ADMIN", format!("{ADMIN}:{ADMIN_PW}"))
        .env("PCHAT_LOG", "warn")
        .output()
        .unwrap()
}

impl Lab {
    pub fn up() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let out = lab_cmd(dir.path(), &["up", "--json"]);
        assert!(
            out.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let by_name = |list: &Value, field: &str| -> HashMap<String, String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap().to_string(),
                        s[field].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        Lab {
            chat: by_name(&v["chat_servers"], "url"),
            db: by_name(&v["database_servers"], "address"),
            dir,
        }
    }

    pub fn topology(&self) -> PathBuf {
        self.dir.path().join("topology.toml")
    }

    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("secret")
    }

    pub fn client(&self, server: &str) -> Client {
        Client {
            base: self.chat[server].clone(),
            http: reqwest::Client::new(),
        }
    }

    /// `pchat admin ARGS --topology T --json`: its JSON, or its error.
    pub fn admin(&self, args: &[&str]) -> Result<Value, String> {
        let out = pchat()
            .arg("admin")
            .args(args)
            .arg("--topology")
            .arg(self.topology())
            .arg("--json")
            .env("PCHAT_CLUSTER_SECRET_FILE", self.secret_file())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Waits until `server`'s pool view says `serving` (10 s at most).
    pub async fn wait_serving(&self, server: &str, serving: bool) -> Value {
        let c = self.client(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = c.call("GET", "/api/v1/pool", None, Value::Null).await.body;
            if v["serving"] == serving {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{server} never became serving={serving}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill_all(&self) {
        let _ = pchat()
            .args(["lab", "kill-dc", "primary", "--dir"])
            .arg(self.dir.path())
            .output();
        let _ = pchat()
            .args(["lab", "kill-dc", "backup", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A chat server of an old configuration: pointed straight at a database
/// server, following no pool configuration (what a server restored from an
/// old image, or partitioned away, would do).
/// Its error output when it does not even start.
fn stale_chat_server(lab: &Lab, name: &str, db: &str, dir: &Path) -> Result<Server, String> {
    let mut cmd = pchat();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--server-name", name])
        .args(["--database", &lab.db[db]])
        .arg("--data-dir")
        .arg(dir)
        .env("PCHAT_CLUSTER_SECRET_FILE", lab.secret_file())
        .env("PCHAT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(u) = line.strip_prefix("pchat listening on ") {
                    break u.trim().to_string();
                }
            }
            _ => {
                let out = child.wait_with_output().unwrap();
                return Err(String::from_utf8_lossy(&out.stderr).to_string());
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Server::attach(child, url, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_servers_pool_state_and_fencing() {
    let lab = Lab::up();
    lab.wait_serving("chat1", true).await;
    lab.wait_serving("chat2", true).await;

    // An inactive server refuses clients and says where to go.
    let c3 = lab.client("chat3");
    let a = c3.call("GET", "/api/v1/users/me", None, Value::Null).await;
    assert_eq!((a.status, a.code()), (503, "server_inactive"), "{}", a.body);
    let view = lab.wait_serving("chat3", false).await;
    let active: Vec<&str> = view["active_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(active, ["chat1", "chat2"], "{view}");
    assert!(view["reason"]
        .as_str()
        .unwrap()
        .starts_with("server inactive"));

    let c1 = lab.client("chat1");
    let admin = c1.admin().await;
    let cat = c1.category(&admin, "general").await;
    let room = c1
        .room(
            &admin,
            json!({"name": "ops", "category": cat, "privacy": "open"}),
        )
        .await;
    assert_eq!(c1.post(&admin, room, "one", "m1").await.status, 201);
    let mut ws = ws_connect(&c1.ws_url(&admin)).await;
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "rooms": {room.to_string(): 0}}),
    )
    .await;
    let frames = ws_until(&mut ws, "message").await;
    assert_eq!(seqs(&frames), [1]);

    // chat1 leaves the active list: within 2 s its WebSocket clients are
    // sent to chat2, and it refuses requests.
    let started = Instant::now();
    let v = lab.admin(&["active-servers", "remove", "chat1"]).unwrap();
    assert_eq!(v["config"]["version"], 2);
    let bye = ws_until(&mut ws, "going_away").await;
    let bye = bye.last().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "applied after {took:?}");
    assert_eq!(bye["active_servers"][0]["name"], "chat2", "{bye}");
    assert!(
        bye["reason"].as_str().unwrap().contains("not active"),
        "{bye}"
    );
    let a = c1.post(&admin, room, "two", "m2").await;
    assert_eq!((a.status, a.code()), (503, "server_inactive"), "{}", a.body);

    // The client goes where it was told and posts again with the same id:
    // the message exists once.
    let c2 = Client {
        base: bye["active_servers"][0]["url"]
            .as_str()
            .unwrap()
            .to_string(),
        http: reqwest::Client::new(),
    };
    let admin2 = c2.admin().await;
    assert_eq!(c2.post(&admin2, room, "two", "m2").await.status, 201);
    assert_eq!(c2.post(&admin2, room, "two", "m2").await.status, 200);
    let bodies: Vec<Value> = c2
        .history(&admin2, room)
        .await
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("one"), json!("two")]);
    // The stream resumes on chat2 from the cursor it had on chat1 (seq 1):
    // the message after it, once, then live.
    let mut ws2 = ws_connect(&c2.ws_url(&admin2)).await;
    ws_send(
        &mut ws2,
        json!({"type": "subscribe", "rooms": {room.to_string(): 1}}),
    )
    .await;
    let frames = ws_until(&mut ws2, "subscribed").await;
    assert_eq!(seqs(&frames), [2], "{frames:?}");
    assert_eq!(c2.post(&admin2, room, "three", "m3").await.status, 201);
    let frames = ws_until(&mut ws2, "message").await;
    assert_eq!(seqs(&frames), [3], "{frames:?}");

    // A chat server of a stale configuration writes nothing: the database
    // server fences it (signing in writes a session).
    let stale_dir = tempfile::tempdir().unwrap();
    let stale = stale_chat_server(&lab, "chat1", "db1", stale_dir.path()).unwrap();
    let s = stale.client();
    let a = s
        .call(
            "POST",
            "/api/v1/sessions",
            None,
            json!({"name": ADMIN, "password": ADMIN_PW}),
        )
        .await;
    assert_eq!((a.status, a.code()), (503, "server_inactive"), "{}", a.body);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fenced"));

    // Active servers must sit where the databases serve.
    let e = lab.admin(&["active-servers", "add", "chat3"]).unwrap_err();
    assert!(e.contains("active_in_other_data_center"), "{e}");
    let e = lab.admin(&["active-servers", "add", "chat9"]).unwrap_err();
    assert!(e.contains("unknown_server"), "{e}");
    let v = lab.admin(&["pool-state"]).unwrap();
    assert_eq!(v["config"]["version"], 2, "refused changes change nothing");
    assert_eq!(v["config"]["state"], "normal");
    for copy in v["copies"].as_array().unwrap() {
        assert_eq!(copy["version"], 2, "{copy}");
    }

    // Swap: chat1 back in, chat2 out, in one version.
    let v = lab
        .admin(&["active-servers", "swap", "chat2", "chat1"])
        .unwrap();
    assert_eq!(v["config"]["version"], 3);
    lab.wait_serving("chat1", true).await;
    lab.wait_serving("chat2", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_configuration_survives_the_loss_of_a_data_center() {
    let lab = Lab::up();
    lab.wait_serving("chat1", true).await;

    let out = lab_cmd(lab.dir.path(), &["kill-dc", "primary"]);
    assert!(out.status.success());
    // With dc1 gone, the change is kept by dc2's database servers.
    let v = lab.admin(&["pool-state", "failed-over"]).unwrap();
    assert_eq!(v["config"]["version"], 2);
    let copies: HashMap<String, Value> = v["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["server"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    assert!(copies["db1"]["error"].is_string() && copies["db2"]["error"].is_string());
    assert_eq!(copies["db3"]["version"], 2);
    assert_eq!(copies["db4"]["version"], 2);
    let v = lab
        .admin(&["active-servers", "replace", "chat3", "chat4"])
        .unwrap();
    assert_eq!(v["config"]["version"], 3);
    lab.wait_serving("chat3", true).await;

    // dc1 comes back on its old data, with configuration version 1: its
    // database servers learn version 3 from their peers, its chat servers
    // stay inactive, and the old primary takes no chat writes.
    let out = lab_cmd(lab.dir.path(), &["up"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = lab.wait_serving("chat1", false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = lab.admin(&["pool-state"]).unwrap();
        if v["copies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["version"] == 3)
        {
            break;
        }
        assert!(Instant::now() < deadline, "copies never converged: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = if view["version"] == 3 {
        view
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        lab.wait_serving("chat1", false).await
    };
    assert_eq!(view["version"], 3, "{view}");
    assert_eq!(view["state"], "failed-over");
    let stale_dir = tempfile::tempdir().unwrap();
    // Its databases do not serve at all now: a chat server of the old
    // configuration pointed at it cannot even start.
    let e = stale_chat_server(&lab, "chat3", "db1", stale_dir.path())
        .err()
        .expect("a chat server started on the old primary");
    assert!(e.contains("does not serve"), "{e}");
    let status = lab_db_status(&lab, "db1");
    assert!(
        status["databases"][0]["refusal"]
            .as_str()
            .unwrap()
            .contains("primary database server"),
        "{status}"
    );

    // With every database server gone, the active chat3 cannot learn the
    // configuration any more: within the lease (5 s) it stops serving.
    lab.wait_serving("chat3", true).await;
    let lab_json: Value =
        serde_json::from_slice(&std::fs::read(lab.dir.path().join("lab.json")).unwrap()).unwrap();
    for p in lab_json["processes"].as_array().unwrap() {
        if p["kind"] == "database" {
            unsafe {
                libc::kill(p["pid"].as_i64().unwrap() as i32, libc::SIGKILL);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let v = lab
            .client("chat3")
            .call("GET", "/api/v1/pool", None, Value::Null)
            .await
            .body;
        if v["serving"] == false {
            break v;
        }
        assert!(Instant::now() < deadline, "chat3 still serves: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        view["reason"].as_str().unwrap().contains("cannot learn"),
        "{view}"
    );
}

fn lab_db_status(lab: &Lab, server: &str) -> Value {
    let out = pchat()
        .args(["db", "status", "--json", "--server", &lab.db[server]])
        .env("PCHAT_CLUSTER_SECRET_FILE", lab.secret_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
