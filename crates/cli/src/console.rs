//! The DR dashboard's backend in a chat server started with `--topology`:
//! it looks at every chat server (`/api/v1/pool`, `/metrics`) and database
//! server (`status`) of the topology four times a second, keeps an hour of
//! samples for the chart, and runs the runbooks as `pchat dr` child
//! processes, so a run from the page journals and resumes exactly like one
//! from a terminal.

use futures_util::future::{join_all, BoxFuture, FutureExt};
use pchat_dr::Topology;
use pchat_server::console::{Console, Runbook};
use pchat_wire::message::Request;
use pchat_wire::RemoteStore;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// How long a server has to answer a look before it shows as down.
const LOOK_TIMEOUT: Duration = Duration::from_millis(800);
/// Looks four times a second, so a lost server shows within a second.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// One sample a second (every fourth look), for an hour.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const SAMPLES: usize = 3600;
/// Looking stops this long after the last dashboard request.
const IDLE_STOP: Duration = Duration::from_secs(3600);

pub struct PoolConsole {
    topology: Topology,
    topology_path: PathBuf,
    secret: Vec<u8>,
    http: reqwest::Client,
    /// One connection per database server, kept between looks.
    stores: Mutex<HashMap<String, Arc<RemoteStore>>>,
    looking: AtomicBool,
    /// When a dashboard last asked: looking stops an hour after that.
    asked: Mutex<std::time::Instant>,
    latest: Mutex<Option<Value>>,
    samples: Mutex<VecDeque<Value>>,
    run: Arc<Mutex<Option<RunState>>>,
}

#[derive(Clone)]
struct RunState {
    runbook: &'static str,
    started_at: i64,
    lines: Vec<String>,
    finished: bool,
    ok: Option<bool>,
    report: Value,
}

/// Counters summed over the chat servers, to turn into rates.
#[derive(Default, Clone)]
struct Counters {
    posts: f64,
    /// Cumulative count per `le` bucket of pchat_post_ack_seconds.
    ack_buckets: Vec<(f64, f64)>,
}

impl PoolConsole {
    pub fn new(topology: Topology, topology_path: PathBuf, secret: Vec<u8>) -> Arc<PoolConsole> {
        Arc::new(PoolConsole {
            topology,
            topology_path,
            secret,
            http: reqwest::Client::builder()
                .timeout(LOOK_TIMEOUT)
                .build()
                .unwrap_or_default(),
            stores: Mutex::new(HashMap::new()),
            looking: AtomicBool::new(false),
            asked: Mutex::new(std::time::Instant::now()),
            latest: Mutex::new(None),
            samples: Mutex::new(VecDeque::new()),
            run: Arc::new(Mutex::new(None)),
        })
    }

    fn store(&self, address: &str) -> Arc<RemoteStore> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores
            .entry(address.to_string())
            .or_insert_with(|| {
                RemoteStore::tool(
                    address.to_string(),
                    self.secret.clone(),
                    "pchat-dashboard".into(),
                )
            })
            .clone()
    }

    /// Starts looking four times a second (on the first request of a
    /// dashboard) until an hour after the last one, so a chat server nobody
    /// watches does no extra work.
    fn ensure_looking(self: &Arc<Self>) {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
        if self.looking.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut previous: Option<(std::time::Instant, Counters)> = None;
            let mut tick = tokio::time::interval(LOOK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let idle = me.asked.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
                if idle > IDLE_STOP {
                    *me.latest.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    me.looking.store(false, Ordering::SeqCst);
                    return;
                }
                let (snapshot, counters) = me.look().await;
                let now = std::time::Instant::now();
                let due = previous
                    .as_ref()
                    // Half a look of slack: ticks wobble.
                    .is_none_or(|(then, _)| {
                        now.duration_since(*then) + LOOK_EVERY / 2 >= SAMPLE_EVERY
                    });
                let sample = due.then(|| sample(&snapshot, previous.as_ref(), &counters, now));
                *me.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
                let Some(sample) = sample else { continue };
                previous = Some((now, counters));
                let mut samples = me.samples.lock().unwrap_or_else(|e| e.into_inner());
                samples.push_back(sample);
                while samples.len() > SAMPLES {
                    samples.pop_front();
                }
            }
        });
    }

    /// Everything at once: every server is asked concurrently.
    async fn look(&self) -> (Value, Counters) {
        let chats = join_all(self.topology.chat_servers.iter().map(|c| async move {
            let base = format!("http://{}", c.client);
            let (pool, metrics) = tokio::join!(
                self.http.get(format!("{base}/api/v1/pool")).send(),
                self.http.get(format!("{base}/metrics")).send()
            );
            let pool = match pool {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            };
            let metrics = match metrics {
                Ok(r) => r.text().await.ok(),
                Err(_) => None,
            };
            (c, base, pool, metrics)
        }))
        .await;
        let dbs = join_all(self.topology.database_servers.iter().map(|d| async move {
            let store = self.store(&d.address);
            let status = tokio::time::timeout(LOOK_TIMEOUT, store.call(Request::Status)).await;
            let status = match status {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {LOOK_TIMEOUT:?}")),
            };
            (d, status)
        }))
        .await;

        let mut counters = Counters::default();
        let mut chat_servers = Vec::new();
        for (c, url, pool, metrics) in chats {
            let metric = |name: &str| metrics.as_deref().and_then(|m| gauge(m, name));
            if let Some(m) = &metrics {
                counters.posts += gauge(m, "pchat_posts_total").unwrap_or(0.0);
                add_buckets(
                    &mut counters.ack_buckets,
                    m,
                    "pchat_post_ack_seconds_bucket",
                );
            }
            chat_servers.push(json!({
                "name": c.name, "data_center": c.data_center, "url": url,
                "up": pool.is_some(),
                "serving": pool.as_ref().map(|p| p["serving"].clone()),
                "reason": pool.as_ref().map(|p| p["reason"].clone()),
                "version": pool.as_ref().map(|p| p["version"].clone()),
                "connections": metric("pchat_connections"),
                "posts_total": metric("pchat_posts_total"),
            }));
        }
        // The newest pool configuration any database server holds.
        let mut config: Option<Value> = None;
        let mut database_servers = Vec::new();
        for (d, status) in dbs {
            let (up, error, databases, logship) = match &status {
                Ok(s) => {
                    let c = &s["pool"]["config"];
                    let newer = config
                        .as_ref()
                        .is_none_or(|have| c["version"].as_u64() > have["version"].as_u64());
                    if c.is_object() && newer {
                        config = Some(c.clone());
                    }
                    (
                        true,
                        None,
                        s["databases"].clone(),
                        s["logship"]["jobs"].clone(),
                    )
                }
                Err(e) => (false, Some(e.clone()), Value::Null, Value::Null),
            };
            database_servers.push(json!({
                "name": d.name, "data_center": d.data_center, "address": d.address,
                "role": d.role.as_str(), "up": up, "error": error,
                "databases": databases, "logship": logship,
            }));
        }
        let active: Vec<String> = config
            .as_ref()
            .and_then(|c| c["active"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for c in &mut chat_servers {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            c["active"] = json!(active.contains(&name));
        }
        let snapshot = json!({
            "pool": self.topology.pool,
            "data_centers": self.topology.data_centers,
            "config": config,
            "chat_servers": chat_servers,
            "database_servers": database_servers,
            "at": pchat_engine::now_ms(),
        });
        (snapshot, counters)
    }

    fn set_run(&self, f: impl FnOnce(&mut RunState)) {
        if let Some(r) = self.run.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(r)
        }
    }

    /// `pchat dr RUNBOOK --topology T --json ARGS`, with the cluster secret
    /// in its environment.
    fn dr_command(
        &self,
        runbook: Runbook,
        args: &[&str],
    ) -> Result<tokio::process::Command, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the pchat binary: {e}"))?;
        let secret = String::from_utf8(self.secret.clone())
            .map_err(|_| "runbooks from the dashboard need a UTF-8 cluster secret".to_string())?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("dr")
            .arg(runbook.as_str())
            .arg("--topology")
            .arg(&self.topology_path)
            .arg("--json")
            .args(args)
            .env_remove("PCHAT_CLUSTER_SECRET_FILE")
            .env("PCHAT_CLUSTER_SECRET", secret)
            .env("PCHAT_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false);
        Ok(cmd)
    }
}

/// A value of an unlabelled metric line `NAME VALUE`.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Adds a histogram's cumulative buckets `NAME{le="X"} N` into `into`.
fn add_buckets(into: &mut Vec<(f64, f64)>, metrics: &str, name: &str) {
    for l in metrics.lines() {
        let Some(rest) = l.strip_prefix(name).and_then(|r| r.strip_prefix("{le=\"")) else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        let Ok(count) = count.trim().parse::<f64>() else {
            continue;
        };
        match into.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => into.push((le, count)),
        }
    }
    into.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// Posts per second and ack p99 over the last interval, and the largest
/// log-shipping lag of the restore jobs.
fn sample(
    snapshot: &Value,
    previous: Option<&(std::time::Instant, Counters)>,
    now_counters: &Counters,
    now: std::time::Instant,
) -> Value {
    let (posts_per_s, ack_p99_ms) = match previous {
        Some((then, before)) => {
            let secs = now.duration_since(*then).as_secs_f64().max(0.001);
            // A restarted server resets its counters: never a negative rate.
            let posts = (now_counters.posts - before.posts).max(0.0);
            let deltas: Vec<(f64, f64)> = now_counters
                .ack_buckets
                .iter()
                .map(|(le, c)| {
                    let was = before
                        .ack_buckets
                        .iter()
                        .find(|(b, _)| b == le)
                        .map(|(_, c)| *c)
                        .unwrap_or(0.0);
                    (*le, (c - was).max(0.0))
                })
                .collect();
            (Some(posts / secs), p99_ms(&deltas))
        }
        None => (None, None),
    };
    let lag = snapshot["database_servers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["logship"].as_array().cloned().unwrap_or_default())
        .filter_map(|j| j["monitor"]["lag_ms"].as_i64())
        .max();
    json!({
        "t": snapshot["at"],
        "posts_per_s": posts_per_s,
        "ack_p99_ms": ack_p99_ms,
        "shipping_lag_ms": lag,
    })
}

/// The upper bound of the bucket holding the 99th percentile, in ms.
fn p99_ms(cumulative: &[(f64, f64)]) -> Option<f64> {
    let total = cumulative.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    cumulative
        .iter()
        .find(|(_, c)| *c >= total * 0.99)
        .map(|(le, _)| {
            if le.is_finite() {
                le * 1000.0
            } else {
                10_000.0
            }
        })
}

impl Console for PoolConsoleHandle {
    fn snapshot(&self) -> BoxFuture<'_, Value> {
        async move {
            self.0.ensure_looking();
            // The first look of a new dashboard is made now; later ones come
            // from the once-a-second looks.
            let latest = self
                .0
                .latest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            match latest {
                Some(s) => s,
                None => self.0.look().await.0,
            }
        }
        .boxed()
    }

    fn samples(&self, since: i64) -> Value {
        let samples = self.0.samples.lock().unwrap_or_else(|e| e.into_inner());
        Value::Array(
            samples
                .iter()
                .filter(|s| s["t"].as_i64().unwrap_or(0) > since)
                .cloned()
                .collect(),
        )
    }

    fn plan(&self, runbook: Runbook) -> BoxFuture<'_, Value> {
        async move {
            let output = match self.0.dr_command(runbook, &["--plan"]) {
                Ok(mut cmd) => cmd.output().await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match output {
                Ok(out) => {
                    let lines: Vec<String> = String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .map(str::to_string)
                        .collect();
                    json!({ "runbook": runbook.as_str(), "ok": out.status.success(), "lines": lines })
                }
                Err(e) => json!({ "runbook": runbook.as_str(), "ok": false, "lines": [e] }),
            }
        }
        .boxed()
    }

    fn start(&self, runbook: Runbook) -> Result<(), String> {
        let console = self.0.clone();
        {
            let mut run = console.run.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = run.as_ref().filter(|r| !r.finished) {
                return Err(format!(
                    "a {} is running (started at {} ms)",
                    r.runbook, r.started_at
                ));
            }
            let mut child = console
                .dr_command(runbook, &["--yes"])?
                .spawn()
                .map_err(|e| format!("cannot start pchat dr: {e}"))?;
            let stderr = child.stderr.take();
            // The report (stdout) is read meanwhile: a large one must not
            // block the child while the lines (stderr) are followed.
            let stdout = child.stdout.take();
            let report = tokio::spawn(async move {
                let mut text = String::new();
                if let Some(mut out) = stdout {
                    let _ = out.read_to_string(&mut text).await;
                }
                text
            });
            *run = Some(RunState {
                runbook: runbook.as_str(),
                started_at: pchat_engine::now_ms(),
                lines: Vec::new(),
                finished: false,
                ok: None,
                report: Value::Null,
            });
            let follower = console.clone();
            tokio::spawn(async move {
                if let Some(stderr) = stderr {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        follower.set_run(|r| r.lines.push(line));
                    }
                }
                let report = report.await.unwrap_or_default();
                let ok = child.wait().await.map(|s| s.success()).unwrap_or(false);
                let report = serde_json::from_str(&report).unwrap_or(Value::Null);
                follower.set_run(|r| {
                    r.finished = true;
                    r.ok = Some(ok);
                    r.report = report;
                });
            });
        }
        Ok(())
    }

    fn run(&self) -> Value {
        let run = self.0.run.lock().unwrap_or_else(|e| e.into_inner());
        match run.as_ref() {
            None => Value::Null,
            Some(r) => json!({
                "runbook": r.runbook, "started_at": r.started_at, "lines": r.lines,
                "finished": r.finished, "ok": r.ok, "report": r.report,
            }),
        }
    }
}

/// The console as the chat server holds it.
pub struct PoolConsoleHandle(pub Arc<PoolConsole>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gauges_and_the_p99_of_a_histogram() {
        let m = "pchat_posts_total 120\npchat_connections 3\n\
                 pchat_post_ack_seconds_bucket{le=\"0.001\"} 50\n\
                 pchat_post_ack_seconds_bucket{le=\"0.01\"} 98\n\
                 pchat_post_ack_seconds_bucket{le=\"0.1\"} 100\n\
                 pchat_post_ack_seconds_bucket{le=\"+Inf\"} 100\n";
        assert_eq!(gauge(m, "pchat_posts_total"), Some(120.0));
        assert_eq!(gauge(m, "pchat_connections"), Some(3.0));
        assert_eq!(gauge(m, "pchat_post"), None);
        let mut b = Vec::new();
        add_buckets(&mut b, m, "pchat_post_ack_seconds_bucket");
        add_buckets(&mut b, m, "pchat_post_ack_seconds_bucket");
        assert_eq!(b.len(), 4);
        assert_eq!(b[1], (0.01, 196.0));
        // 99% of 200 is 198: in the 0.1 s bucket.
        assert_eq!(p99_ms(&b), Some(100.0));
        assert_eq!(p99_ms(&[]), None);
    }
}
