//! The web client and the DR dashboard in a real browser: Debian's chromium
//! driven by playwright-core (`crates/cli/tests/browser/*.mjs`), against real
//! servers started here. `.ci/run` installs chromium and the npm package; a
//! machine without them fails these tests with a message saying so.

use super::common::{Server, ADMIN, ADMIN_PW};
use super::pool::Lab;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where the tests save screenshots (the README shows the best of them).
pub fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
}

/// Runs one browser test script with these variables; fails with its output.
pub fn node(script: &str, env: &[(&str, &str)]) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix crates/cli/tests/browser` (as .ci/run does)"
    );
    let chromium = std::env::var("PCHAT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no chromium at {chromium}: install Debian's package `chromium` (as .ci/run does)"
    );
    let out = Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("PCHAT_SCREENSHOTS", screenshots())
        .envs(env.iter().copied())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ok"), "{script} did not finish:\n{stdout}");
    // What the script measured (shown with --nocapture).
    println!("{script}: {}", stdout.trim());
}

/// Sign in, manage, create rooms, two users chatting live in two browser
/// contexts, history by scrolling, search, files, a Secret room, unread
/// counts, phone width.
#[test]
fn chat_client_in_chromium() {
    let server = Server::start();
    node(
        "chat.mjs",
        &[
            ("PCHAT_URL", &server.url),
            ("PCHAT_ADMIN", &format!("{ADMIN}:{ADMIN_PW}")),
        ],
    );
}

/// The page stays open while the primary data center is killed and the pool
/// fails over: the banner appears and goes, the client moves to the backup
/// data center by itself and the message typed during the outage is
/// delivered exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn chat_client_follows_a_data_center_failover() {
    let lab = Lab::up();
    lab.wait_serving("chat1", true).await;
    let c = lab.client("chat1");
    let admin = c.admin().await;
    c.user(&admin, "alice").await;
    let cat = c.category(&admin, "general").await;
    c.room(
        &admin,
        json!({"name": "ops", "category": cat, "privacy": "open"}),
    )
    .await;
    let dir = lab.dir.path().to_string_lossy().to_string();
    let secret = lab.secret_file().to_string_lossy().to_string();
    node(
        "failover.mjs",
        &[
            ("PCHAT_URL", &lab.chat["chat1"]),
            ("PCHAT_BIN", env!("CARGO_BIN_EXE_pchat")),
            ("PCHAT_LAB_DIR", &dir),
            ("PCHAT_CLUSTER_SECRET_FILE", &secret),
            ("PCHAT_DB1", &lab.db["db1"]),
            ("PCHAT_DB3", &lab.db["db3"]),
            ("PCHAT_LOG", "warn"),
        ],
    );
}

/// The DR dashboard on a chat server of the backup data center: it shows
/// the lab, runs a switchover from the page and shows the loss of the
/// primary data center within 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_shows_the_pool_and_runs_a_switchover() {
    let lab = Lab::up();
    lab.wait_serving("chat1", true).await;
    // The administrator exists once an active server has created it.
    lab.client("chat1").admin().await;
    let dir = lab.dir.path().to_string_lossy().to_string();
    node(
        "dashboard.mjs",
        &[
            ("PCHAT_URL", &lab.chat["chat3"]),
            ("PCHAT_ACTIVE_URL", &lab.chat["chat1"]),
            ("PCHAT_BIN", env!("CARGO_BIN_EXE_pchat")),
            ("PCHAT_LAB_DIR", &dir),
            ("PCHAT_ADMIN", &format!("{ADMIN}:{ADMIN_PW}")),
            ("PCHAT_LOG", "warn"),
        ],
    );
}
