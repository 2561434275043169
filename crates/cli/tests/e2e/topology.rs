//! `pchat topology check` on the example topology and on broken copies.

use super::common::*;
use serde_json::Value;

fn check(text: &str) -> (bool, Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topology.toml");
    std::fs::write(&file, text).unwrap();
    let out = pchat()
        .args(["topology", "check", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn topology_check_explains_every_mistake() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/topology.toml"),
    )
    .unwrap();
    let (ok, v) = check(&example);
    assert!(ok, "{v}");
    assert_eq!(v["mistakes"], serde_json::json!([]));
    // Two mistakes at once: both named, exit status 1.
    let broken = example
        .replace("role = \"primary-mirror\"", "role = \"primary\"")
        .replace("10.0.2.12:8081", "10.0.1.11:8080");
    let (ok, v) = check(&broken);
    assert!(!ok);
    let codes: Vec<&str> = v["mistakes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["address_reused", "role_taken"], "{v}");
    // Not TOML, and a file that is not there: clear refusals.
    let (ok, v) = check("pool = [");
    assert!(!ok);
    assert_eq!(v["mistakes"][0]["code"], "syntax");
    let out = pchat()
        .args(["topology", "check", "/nonexistent/topology.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
