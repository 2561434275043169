//! `pchat bench` against a real server: it loads, verifies and reports.

use super::common::*;

#[test]
fn bench_loads_verifies_and_reports_json() {
    let server = Server::start();
    let out = pchat()
        .args([
            "bench",
            "--url",
            &server.url,
            "--admin",
            &format!("{ADMIN}:{ADMIN_PW}"),
        ])
        .args([
            "--senders",
            "4",
            "--rooms",
            "2",
            "--subscribers",
            "2",
            "--duration",
            "1s",
            "--window",
            "2",
        ])
        .args(["--reads", "5", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for key in [
        "posts_per_s",
        "ack_p50_ms",
        "ack_p99_ms",
        "ack_p999_ms",
        "delivery_p50_ms",
        "delivery_p99_ms",
        "server_rss_bytes",
    ] {
        assert!(r[key].as_f64().is_some(), "missing {key}: {r}");
    }
    let posts = r["posts"].as_u64().unwrap();
    assert!(posts > 0);
    // every post delivered to both subscribers of its room, verified against history
    assert_eq!(r["deliveries"].as_u64(), Some(posts * 2));
    assert_eq!(
        (
            r["missing"].as_u64(),
            r["duplicated"].as_u64(),
            r["delivery_errors"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(r["server_rss_bytes"].as_u64().unwrap() > 0);
    assert!(r["history_p99_ms"].as_f64().unwrap() > 0.0);

    // a wrong administrator password is a clear failure
    let out = pchat()
        .args([
            "bench",
            "--url",
            &server.url,
            "--admin",
            "admin:wrong-password",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot sign in"));
}
