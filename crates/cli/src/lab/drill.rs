//! `pchat lab drill`: the whole story under load, measured. Normal
//! operation; the principal database server killed alone (its mirror is
//! forced into service: nothing acknowledged lost); the whole primary data
//! center killed; `pchat dr failover`; chat on the backup side; the primary
//! data center rebuilt; `pchat dr failback`; chat again. Then every
//! acknowledged post is looked up in the history, and the report says what
//! was lost where, and why.

use super::{alive, kill_dc, rebuild_dc, up, Which};
use anyhow::{bail, Context};
use pchat_bench::drill::{Ack, History, Load, LoadConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// Posts per second, all clients together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Posting clients, spread over the active chat servers.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// How long each phase of chat runs.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub phase: Duration,
    /// The administrator, name:password (the lab's PCHAT_BOOTSTRAP_ADMIN).
    #[arg(long, env = "PCHAT_BOOTSTRAP_ADMIN")]
    pub admin: String,
    /// Clients keep an outbox: after the data-center failover they post
    /// their acknowledged posts that the backup lacks again (same
    /// `client_msg_id`), so nothing a client was told is lost.
    #[arg(long)]
    pub resend_lost: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DrillArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(drill(&args))?;
    if args.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    if report["ok"] != true {
        bail!("the drill lost or duplicated acknowledged posts that the report cannot account for");
    }
    Ok(())
}

fn say(args: &DrillArgs, line: &str) {
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// `pchat ARGS` with the lab's secret, off the runtime; its output as JSON.
async fn pchat(dir: &Path, args: Vec<String>) -> anyhow::Result<Value> {
    let dir = dir.to_path_buf();
    blocking(move || super::pchat(&dir, &args)).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Signs in on the first chat server that lets it, and makes the rooms.
async fn setup_rooms(
    urls: &[String],
    admin: (&str, &str),
    rooms: usize,
) -> anyhow::Result<Vec<i64>> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (url, token) = loop {
        let mut found = None;
        for u in urls {
            let r = http
                .post(format!("{u}/api/v1/sessions"))
                .json(&json!({"name": admin.0, "password": admin.1}))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status().is_success() {
                    let v: Value = r.json().await?;
                    found = v["token"].as_str().map(|t| (u.clone(), t.to_string()));
                    break;
                }
            }
        }
        if let Some(f) = found {
            break f;
        }
        if Instant::now() > deadline {
            bail!(
                "cannot sign in as {} at any chat server of the lab",
                admin.0
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let call = |method: reqwest::Method, path: &str, body: Value| {
        http.request(method, format!("{url}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let _ = call(
        reqwest::Method::POST,
        "/api/v1/categories",
        json!({"name": "drill"}),
    )
    .await?;
    let mut ids = Vec::new();
    for i in 1..=rooms {
        let name = format!("drill-{i}");
        let r = call(
            reqwest::Method::POST,
            "/api/v1/rooms",
            json!({"name": name, "category": "drill", "privacy": "open"}),
        )
        .await?;
        let v: Value = r.json().await?;
        match v["id"].as_i64() {
            Some(id) => ids.push(id),
            None => {
                // There from an earlier drill: find it.
                let list: Value = http
                    .get(format!("{url}/api/v1/rooms"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                let id = list["rooms"]
                    .as_array()
                    .and_then(|rs| rs.iter().find(|r| r["name"] == name.as_str()))
                    .and_then(|r| r["id"].as_i64())
                    .with_context(|| format!("cannot create or find room {name}: {v}"))?;
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

async fn drill(args: &DrillArgs) -> anyhow::Result<Value> {
    let (admin_name, admin_password) = args
        .admin
        .split_once(':')
        .context("--admin must be name:password")?;
    std::fs::create_dir_all(&args.dir)?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot use {}", args.dir.display()))?;
    {
        let dir = dir.clone();
        blocking(move || up(&dir, crate::db::replication::Mode::Sync)).await?;
    }
    let topology = crate::topology::load(&dir.join("topology.toml"))?;
    let state = pchat(
        &dir,
        vec![
            "admin".into(),
            "pool-state".into(),
            "--json".into(),
            "--topology".into(),
            dir.join("topology.toml").display().to_string(),
        ],
    )
    .await?;
    if state["config"]["state"] != "normal" {
        bail!(
            "the drill starts from a pool in state normal; this lab's is {}",
            state["config"]["state"]
        );
    }
    let urls: Vec<String> = topology
        .chat_servers
        .iter()
        .map(|c| format!("http://{}", c.client))
        .collect();
    let rooms = setup_rooms(&urls, (admin_name, admin_password), args.rooms.max(1)).await?;
    say(
        args,
        &format!(
            "drill: {} clients posting {} per second into {} rooms; phases of {:?}",
            args.clients,
            args.rate,
            rooms.len(),
            args.phase
        ),
    );
    let load = Load::start(LoadConfig {
        servers: urls,
        admin_name: admin_name.into(),
        admin_password: admin_password.into(),
        clients: args.clients.max(1),
        rate: args.rate,
        rooms: rooms.clone(),
    })
    .await?;
    let t0 = Instant::now();
    let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;

    say(args, "1. normal operation");
    tokio::time::sleep(args.phase).await;

    say(
        args,
        "2. the principal database server is killed; its mirror is forced into service",
    );
    let lab = super::load(&dir)?;
    let (principal, mirror) = (
        topology
            .database_server(pchat_dr::topology::Role::Primary)
            .context("no primary")?,
        topology
            .database_server(pchat_dr::topology::Role::PrimaryMirror)
            .context("no primary mirror")?,
    );
    let pid = lab
        .processes
        .iter()
        .find(|p| p.name == principal.name && alive(p.pid))
        .map(|p| p.pid)
        .context("the principal database server is not running")?;
    let t_mirror = Instant::now();
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    pchat(
        &dir,
        vec![
            "db".into(),
            "mirror".into(),
            "force-service".into(),
            "--server".into(),
            mirror.address.clone(),
            "--json".into(),
        ],
    )
    .await?;
    let rto_mirror = load
        .first_ack_after(t_mirror, Duration::from_secs(60))
        .await
        .context("no post was acknowledged within 60 s of the mirror failover")?;
    say(
        args,
        &format!(
            "   first acknowledgement {:.3} s after the kill",
            rto_mirror.as_secs_f64()
        ),
    );
    tokio::time::sleep(args.phase).await;
    let mirror_outage = load.longest_gap(t_mirror, Instant::now());

    // Everything acknowledged so far must be in the history now.
    let t_snapshot = Instant::now();
    let (url, token) = load.reader().await.context("no active chat server")?;
    let snapshot = History::read(&url, &token, &rooms).await?;
    let before_snapshot: Vec<Ack> = load
        .acks()
        .into_iter()
        .filter(|a| a.at < t_snapshot)
        .collect();
    let lost_on_mirror = snapshot.missing(&before_snapshot).len();

    say(args, "3. the whole primary data center is lost (SIGKILL)");
    {
        let dir = dir.clone();
        let done = blocking(move || kill_dc(&dir, Which::Primary)).await?;
        say(args, &format!("   {done}"));
    }
    // Once every process of the data center is dead: what was acknowledged
    // before came from it, what comes after from the backup side.
    let t_dc = Instant::now();
    let acked_before_dc: Vec<Ack> = load.acks().into_iter().filter(|a| a.at < t_dc).collect();

    say(args, "4. pchat dr failover");
    let topo = dir.join("topology.toml").display().to_string();
    let t_failover = Instant::now();
    let failover = pchat(
        &dir,
        vec![
            "dr".into(),
            "failover".into(),
            "--topology".into(),
            topo.clone(),
            "--yes".into(),
            "--json".into(),
        ],
    )
    .await?;
    let failover_took = t_failover.elapsed();
    let rto_failover = load
        .first_ack_after(t_failover, Duration::from_secs(60))
        .await
        .context("no post was acknowledged within 60 s of the failover")?;
    say(
        args,
        &format!(
            "   runbook {:.2} s; first acknowledgement {:.2} s after it started",
            failover_took.as_secs_f64(),
            rto_failover.as_secs_f64()
        ),
    );
    let (url, token) = load.reader().await.context("no active chat server")?;
    let after_failover = History::read(&url, &token, &rooms).await?;
    let unshipped: Vec<Ack> = after_failover
        .missing(&acked_before_dc)
        .into_iter()
        .cloned()
        .collect();

    let resent = if args.resend_lost {
        let n = load.resend(&unshipped).await?;
        say(
            args,
            &format!(
                "   {n} acknowledged posts the backup lacked were posted again by their clients"
            ),
        );
        n
    } else {
        0
    };

    say(args, "5. chat on the backup side");
    tokio::time::sleep(args.phase).await;
    let dc_outage = load.longest_gap(t_dc, Instant::now());

    say(
        args,
        "6. the primary data center is rebuilt; pchat dr failback",
    );
    {
        let dir = dir.clone();
        let done = blocking(move || rebuild_dc(&dir, Which::Primary)).await?;
        say(args, &format!("   {done}"));
    }
    let t_failback = Instant::now();
    let failback = pchat(
        &dir,
        vec![
            "dr".into(),
            "failback".into(),
            "--topology".into(),
            topo,
            "--yes".into(),
            "--json".into(),
        ],
    )
    .await?;
    let failback_took = t_failback.elapsed();
    let rto_failback = load
        .first_ack_after(t_failback + failback_took, Duration::from_secs(60))
        .await
        .context("no post was acknowledged within 60 s of the failback")?;
    say(
        args,
        &format!(
            "   runbook {:.2} s; first acknowledgement {:.2} s after it finished",
            failback_took.as_secs_f64(),
            rto_failback.as_secs_f64()
        ),
    );

    say(args, "7. chat again");
    tokio::time::sleep(args.phase).await;
    let failback_outage = load.longest_gap(t_failback, Instant::now());
    let (url, token) = load.reader().await.context("no active chat server")?;
    let (retries, refused) = load.retries();
    let acks = load.stop().await;
    let finished = t0.elapsed();
    let history = History::read(&url, &token, &rooms).await?;

    let lost_on_dc = history.missing(&acked_before_dc).len();
    let after_dc: Vec<Ack> = acks.iter().filter(|a| a.at >= t_dc).cloned().collect();
    let lost_on_failback = history.missing(&after_dc).len();
    let duplicated = history.duplicated();
    let seq_gaps = history.seq_gaps();
    let rpo = unshipped
        .iter()
        .map(|a| t_dc.saturating_duration_since(a.at))
        .max()
        .unwrap_or_default();
    let ok = lost_on_mirror == 0
        && lost_on_failback == 0
        && duplicated == 0
        && seq_gaps == 0
        && refused == 0
        && lost_on_dc <= unshipped.len()
        && (!args.resend_lost || lost_on_dc == 0);
    Ok(json!({
        "ok": ok,
        "acknowledged": acks.len(),
        "posts_per_second": acks.len() as f64 / finished.as_secs_f64(),
        "lost_on_mirror_failover": lost_on_mirror,
        "lost_on_dc_failover": lost_on_dc,
        "unshipped_at_dc_loss": unshipped.len(),
        "resent_after_dc_loss": resent,
        "runbook_not_recovered_lsns": {
            "mgc": failover["recovery"]["mgc"]["not_recovered_lsns"],
            "mgccomp": failover["recovery"]["mgccomp"]["not_recovered_lsns"],
        },
        "lost_on_failback": lost_on_failback,
        "duplicated": duplicated,
        "seq_gaps": seq_gaps,
        "retried_posts": retries,
        "refused_posts": refused,
        "rto_seconds": {
            "mirror_failover": secs(mirror_outage),
            "dc_failover": secs(rto_failover),
            "dc_outage": secs(dc_outage),
            "failback_runbook": secs(failback_took),
            "failback_outage": secs(failback_outage),
            "overall": secs(finished),
        },
        "rpo_seconds": secs(rpo),
        "runbook_seconds": {
            "failover": failover["seconds"],
            "failback": failback["seconds"],
        },
        "settings": { "rate": args.rate, "clients": args.clients, "rooms": rooms.len(), "phase_seconds": args.phase.as_secs_f64() },
    }))
}

fn print_report(r: &Value) {
    println!("drill report");
    for key in [
        "acknowledged",
        "posts_per_second",
        "lost_on_mirror_failover",
        "unshipped_at_dc_loss",
        "lost_on_dc_failover",
        "lost_on_failback",
        "duplicated",
        "seq_gaps",
        "retried_posts",
        "refused_posts",
        "rpo_seconds",
    ] {
        println!("  {key:<26} {}", r[key]);
    }
    println!(
        "  runbook_not_recovered_lsns mgc {} mgccomp {}",
        r["runbook_not_recovered_lsns"]["mgc"], r["runbook_not_recovered_lsns"]["mgccomp"]
    );
    if let Some(rto) = r["rto_seconds"].as_object() {
        for (k, v) in rto {
            println!("  rto {k:<22} {v} s");
        }
    }
    println!(
        "  {}",
        if r["ok"] == true {
            "OK: every acknowledged post is accounted for"
        } else {
            "FAILED: see above"
        }
    );
}
