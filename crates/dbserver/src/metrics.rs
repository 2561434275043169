//! `/metrics` (Prometheus text) and `/healthz` of a database server, on an
//! HTTP listener of its own (`pchat db serve --metrics-listen`): each
//! database's state and LSN, mirroring (connected, synchronized, exposed,
//! the mirror's lag) and the log-shipping monitor (lag, job ages, alerts),
//! plus group-commit latency.

use crate::hosted::db_name;
use crate::Node;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use pchat_engine::DbState;
use pchat_wire::message::{Db, MirrorRole};
use std::fmt::Write;
use std::sync::Arc;

pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(node);
    let stopped = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::warn!(error = %e, "metrics listener failed");
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    // Reads the database files: off the async threads.
    let text = tokio::task::spawn_blocking(move || render(&node))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// One gauge, with its HELP and TYPE lines, and a value per database.
fn gauge(out: &mut String, name: &str, help: &str, values: &[(&str, f64)]) {
    if values.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (db, v) in values {
        let _ = writeln!(out, "{name}{{database=\"{db}\"}} {v}");
    }
}

fn render(node: &Node) -> String {
    let mut out = String::new();
    let now = pchat_engine::now_ms();
    let (mut lsn, mut online, mut serving) = (vec![], vec![], vec![]);
    let (mut connected, mut synchronized, mut exposed, mut mirror_lag) =
        (vec![], vec![], vec![], vec![]);
    for db in [Db::Mgc, Db::Mgccomp] {
        let name = db_name(db);
        let Ok((id, state)) = node.hosted.read(db) else {
            continue;
        };
        let refusal = node.mirroring.refusal(db);
        lsn.push((name, id.last_lsn as f64));
        online.push((name, f64::from(u8::from(state == DbState::Online))));
        serving.push((
            name,
            f64::from(u8::from(state == DbState::Online && refusal.is_none())),
        ));
        if let Some(m) = node.mirroring.status(db) {
            connected.push((name, f64::from(u8::from(m.connected))));
            synchronized.push((name, f64::from(u8::from(m.synchronized))));
            if m.role == MirrorRole::Principal {
                exposed.push((name, f64::from(u8::from(m.exposed))));
                let behind = id.last_lsn - m.mirror_lsn.unwrap_or(0);
                mirror_lag.push((name, behind.max(0) as f64));
            }
        }
    }
    gauge(
        &mut out,
        "pchat_db_last_lsn",
        "The database's last LSN.",
        &lsn,
    );
    gauge(
        &mut out,
        "pchat_db_online",
        "1 when the database is ONLINE.",
        &online,
    );
    gauge(
        &mut out,
        "pchat_db_serving",
        "1 when the database takes commands here.",
        &serving,
    );
    gauge(
        &mut out,
        "pchat_mirror_connected",
        "1 while the mirroring session is up.",
        &connected,
    );
    gauge(
        &mut out,
        "pchat_mirror_synchronized",
        "1 when principal and mirror hold the same LSNs.",
        &synchronized,
    );
    gauge(
        &mut out,
        "pchat_mirror_exposed",
        "1 when the principal acknowledges commands its mirror lacks.",
        &exposed,
    );
    gauge(
        &mut out,
        "pchat_mirror_lag_lsns",
        "LSNs the principal holds that the mirror has not hardened.",
        &mirror_lag,
    );

    let (mut lag_lsns, mut lag_s, mut backup_age, mut restore_age, mut alerts) =
        (vec![], vec![], vec![], vec![], vec![]);
    let status = node.logship.status().unwrap_or_default();
    let names: Vec<String> = status["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| j["database"].as_str().unwrap_or("").to_string())
        .collect();
    for (j, name) in status["jobs"].as_array().into_iter().flatten().zip(&names) {
        let m = &j["monitor"];
        let age = |t: &serde_json::Value| t.as_i64().map(|t| (now - t) as f64 / 1000.0);
        if let Some(v) = m["lag_lsns"].as_i64() {
            lag_lsns.push((name.as_str(), v as f64));
        }
        if let Some(v) = m["lag_ms"].as_i64() {
            lag_s.push((name.as_str(), v as f64 / 1000.0));
        }
        if j["config"]["role"] == "primary" {
            if let Some(a) = age(&m["backup"]["last_done_ms"]) {
                backup_age.push((name.as_str(), a));
            }
        } else if let Some(a) = age(&m["restore"]["last_done_ms"]) {
            restore_age.push((name.as_str(), a));
        }
        let n = j["alerts"].as_array().map(|a| a.len()).unwrap_or(0);
        alerts.push((name.as_str(), n as f64));
    }
    gauge(
        &mut out,
        "pchat_logship_lag_lsns",
        "Secondary: LSNs copied but not yet restored.",
        &lag_lsns,
    );
    gauge(
        &mut out,
        "pchat_logship_lag_seconds",
        "Secondary: how long the oldest unrestored log backup has waited.",
        &lag_s,
    );
    gauge(
        &mut out,
        "pchat_logship_last_backup_age_seconds",
        "Primary: seconds since the last log backup written.",
        &backup_age,
    );
    gauge(
        &mut out,
        "pchat_logship_last_restore_age_seconds",
        "Secondary: seconds since the last log backup restored.",
        &restore_age,
    );
    gauge(
        &mut out,
        "pchat_logship_alerts",
        "Log-shipping alerts raised now.",
        &alerts,
    );

    node.hosted.mgc().engine().metrics().commit_seconds.render(
        "pchat_db_commit_seconds",
        "mgc group commit: batch start to durable.",
        &mut out,
    );
    out
}
