//! `pchat lab`: a whole pool across two data centers as local processes on
//! 127.0.0.1, for trying pchat and for drills. Four database servers
//! (primary, primary mirror, backup, backup mirror), four chat servers (two
//! per data center, those of the primary data center active), the
//! log-shipping share, and the topology.toml describing it all.
//!
//! Everything lives in one directory: `topology.toml`, `secret` (the
//! cluster secret), `lab.json` (each process: name, kind, data center,
//! address, pid), `logs/NAME.log`, and one data directory per server.
//! Processes run in their own process group, so they outlive `lab up`.

mod drill;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Subcommand, Debug)]
pub enum LabCmd {
    /// Start the pool: database servers, mirroring in the primary data
    /// center, log shipping to the backup, chat servers. Run again, it
    /// starts what is not running, on its data (a data center back after a
    /// power cut). Prints where everything is (--json: one object).
    Up {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Mirroring mode of the primary databases.
        #[arg(long, value_enum, default_value = "sync")]
        mirroring: crate::db::replication::Mode,
    },
    /// Stop every process of the lab (SIGTERM, then SIGKILL after 10 s).
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Each process: running or not; each chat server's pool view.
    Status {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// SIGKILL every process of a data center, like a power cut.
    KillDc {
        #[arg(value_enum)]
        which: Which,
        #[arg(long)]
        dir: PathBuf,
    },
    /// The whole story under load, measured: normal operation, the
    /// principal database server killed (its mirror takes over), the
    /// primary data center killed, failover, chat on the backup side, the
    /// primary rebuilt, failback, chat again. Exits non-zero when anything
    /// acknowledged was lost that the report cannot account for, or
    /// anything was duplicated.
    Drill(drill::DrillArgs),
    /// Fresh, empty database servers in a data center (as Topology Builder
    /// reinstalls them), and its chat servers started again. Its processes
    /// must be down (kill-dc first).
    RebuildDc {
        #[arg(value_enum)]
        which: Which,
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Primary,
    Backup,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    pub name: String,
    /// `database` or `chat`.
    pub kind: String,
    pub data_center: String,
    /// A database server's role in the topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// host:port (a chat server's clients use http://address).
    pub address: String,
    pub pid: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Lab {
    pub processes: Vec<Process>,
}

const DC: [&str; 2] = ["dc1", "dc2"];

/// `n` distinct free ports, each held until all are chosen. They are taken
/// below the kernel's ephemeral range (which starts at 32768 by default),
/// from a random start, so that no connection another program opens
/// meanwhile can take one before the lab's servers bind it.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    const LOW: u16 = 20000;
    const SPAN: u16 = 12000;
    let mut start = [0u8; 2];
    getrandom::fill(&mut start).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let start = u16::from_le_bytes(start) % SPAN;
    let mut held = Vec::new();
    for i in 0..SPAN {
        if held.len() == n {
            break;
        }
        let port = LOW + (start + i) % SPAN;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    if held.len() < n {
        bail!("cannot find {n} free ports on 127.0.0.1");
    }
    Ok(held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()?)
}

fn topology_text(dir: &Path, ports: &[u16]) -> String {
    let mut t = String::from(
        "# Written by `pchat lab up`: both data centers on this machine.\n\
         pool = \"labpool\"\n\
         data_centers = [\"dc1\", \"dc2\"]\n\
         databases = [\"mgc\", \"mgccomp\"]\n",
    );
    for (i, port) in ports[..4].iter().enumerate() {
        let dc = DC[i / 2];
        t.push_str(&format!(
            "\n[[chat_server]]\nname = \"chat{}\"\ndata_center = \"{dc}\"\nclient = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{}\"\nactive = {}\n",
            i + 1,
            ports[8 + i],
            i < 2
        ));
    }
    let roles = ["primary", "primary-mirror", "backup", "backup-mirror"];
    for (i, port) in ports[4..8].iter().enumerate() {
        t.push_str(&format!(
            "\n[[database_server]]\nname = \"db{}\"\ndata_center = \"{}\"\naddress = \"127.0.0.1:{port}\"\nrole = \"{}\"\n",
            i + 1,
            DC[i / 2],
            roles[i]
        ));
        // The backup mirror is a second log-shipping secondary, on the
        // same machine as the backup here: a copy folder of its own.
        if roles[i] == "backup-mirror" {
            t.push_str(&format!(
                "copy_to = \"{}\"\n",
                dir.join(format!("copy-db{}", i + 1)).display()
            ));
        }
    }
    t.push_str(&format!(
        "\n[log_shipping]\nshare = \"{}\"\ncopy_to = \"{}\"\ncontinuous = true\n\n[mirroring]\nmode = \"sync\"\n",
        dir.join("share").display(),
        dir.join("copy").display()
    ));
    t
}

fn lab_file(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

pub fn load(dir: &Path) -> anyhow::Result<Lab> {
    let f = lab_file(dir);
    let text = std::fs::read_to_string(&f).with_context(|| {
        format!(
            "{} holds no lab (no lab.json): run pchat lab up",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", f.display()))
}

fn save(dir: &Path, lab: &Lab) -> anyhow::Result<()> {
    let tmp = dir.join("lab.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(lab)?)?;
    std::fs::rename(&tmp, lab_file(dir))?;
    Ok(())
}

pub fn alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists; a zombie child of ours does
    // not count (it was reaped by whoever started it, or will be).
    let exists = unsafe { libc::kill(pid as i32, 0) } == 0;
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(true)
}

/// Starts a pchat process in its own process group, output to logs/NAME.log.
fn spawn(dir: &Path, name: &str, args: &[String]) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir.join("logs"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs").join(format!("{name}.log")))?;
    let exe = std::env::current_exe().context("cannot find the pchat executable")?;
    let child = Command::new(exe)
        .args(args)
        .env("PCHAT_CLUSTER_SECRET_FILE", dir.join("secret"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(child.id())
}

fn wait_tcp(address: &str, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{name} did not start listening on {address} within 30 s (see its log)")
}

fn start_database(dir: &Path, d: &pchat_dr::topology::DatabaseServer) -> anyhow::Result<Process> {
    let data = dir.join(&d.name);
    let args = vec![
        "db".into(),
        "serve".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--name".into(),
        d.name.clone(),
        "--topology".into(),
        dir.join("topology.toml").display().to_string(),
    ];
    let pid = spawn(dir, &d.name, &args)?;
    Ok(Process {
        name: d.name.clone(),
        kind: "database".into(),
        data_center: d.data_center.clone(),
        role: Some(d.role.as_str().into()),
        address: d.address.clone(),
        pid,
    })
}

fn start_chat(dir: &Path, c: &pchat_dr::topology::ChatServer) -> anyhow::Result<Process> {
    let args = vec![
        "serve".into(),
        "--topology".into(),
        dir.join("topology.toml").display().to_string(),
        "--server-name".into(),
        c.name.clone(),
        "--data-dir".into(),
        dir.join(&c.name).display().to_string(),
    ];
    let pid = spawn(dir, &c.name, &args)?;
    Ok(Process {
        name: c.name.clone(),
        kind: "chat".into(),
        data_center: c.data_center.clone(),
        role: None,
        address: c.client.clone(),
        pid,
    })
}

/// Runs `pchat ARGS` to completion with the lab's secret (replication
/// set-up, the drill's runbooks); its output as JSON (null if it is not).
fn pchat<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .env("PCHAT_CLUSTER_SECRET_FILE", dir.join("secret"))
        .output()?;
    if !out.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        bail!(
            "pchat {} failed: {}",
            shown.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

pub fn run(cmd: LabCmd) -> anyhow::Result<()> {
    match cmd {
        LabCmd::Up {
            dir,
            json,
            mirroring,
        } => {
            let (dir, lab) = up(&dir, mirroring)?;
            print_lab(&dir, &lab, json);
            Ok(())
        }
        LabCmd::Down { dir } => down(&dir),
        LabCmd::Status { dir, json } => status(&dir, json),
        LabCmd::KillDc { which, dir } => {
            println!("{}", kill_dc(&dir, which)?);
            Ok(())
        }
        LabCmd::RebuildDc { which, dir } => {
            println!("{}", rebuild_dc(&dir, which)?);
            Ok(())
        }
        LabCmd::Drill(args) => drill::run(args),
    }
}

/// Starts whatever of the lab is not running; where it lives, and its lab.
fn up(dir: &Path, mirroring: crate::db::replication::Mode) -> anyhow::Result<(PathBuf, Lab)> {
    std::fs::create_dir_all(dir.join("share"))?;
    std::fs::create_dir_all(dir.join("copy"))?;
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("cannot use {}", dir.display()))?;
    if !dir.join("secret").exists() {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.join("secret"), hex)?;
    }
    let topo_path = dir.join("topology.toml");
    let fresh = !topo_path.exists();
    if fresh {
        // Chat servers' client addresses, database servers, then chat
        // servers' admin addresses (kept free for them).
        let ports = free_ports(12)?;
        std::fs::write(&topo_path, topology_text(dir, &ports))?;
    }
    let topology = crate::topology::load(&topo_path)?;
    // Up again after a stop or a power cut: what runs is kept, the rest
    // starts on its data.
    let mut lab = load(dir).unwrap_or(Lab {
        processes: Vec::new(),
    });
    for d in &topology.database_servers {
        ensure_running(dir, &mut lab, &d.name, || start_database(dir, d))?;
    }
    for d in &topology.database_servers {
        wait_tcp(&d.address, &d.name)?;
    }
    // A new lab: mirroring in the primary data center, log shipping to the
    // backup. A lab brought up again keeps its replication.
    if !dir.join("replication-configured").exists() {
        configure_replication(dir, &topology, mirroring)?;
        std::fs::write(dir.join("replication-configured"), b"")?;
    }
    for c in &topology.chat_servers {
        ensure_running(dir, &mut lab, &c.name, || start_chat(dir, c))?;
    }
    for c in &topology.chat_servers {
        wait_tcp(&c.client, &c.name)?;
    }
    // A new lab is handed over serving; one brought up again is as the
    // runbooks left it (perhaps failed over to databases that are gone).
    if fresh {
        wait_usable(dir)?;
    }
    Ok((dir.clone(), lab))
}

/// Starts `name` unless it runs, and notes it in lab.json.
fn ensure_running(
    dir: &Path,
    lab: &mut Lab,
    name: &str,
    start: impl FnOnce() -> anyhow::Result<Process>,
) -> anyhow::Result<()> {
    if lab.processes.iter().any(|p| p.name == name && alive(p.pid)) {
        return Ok(());
    }
    let p = start()?;
    lab.processes.retain(|x| x.name != p.name);
    lab.processes.push(p);
    save(dir, lab)
}

/// Waits until the pool serves: some chat server serving and, when
/// PCHAT_BOOTSTRAP_ADMIN names the administrator, able to sign them in.
fn wait_usable(dir: &Path) -> anyhow::Result<()> {
    let lab = load(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let admin = std::env::var("PCHAT_BOOTSTRAP_ADMIN").ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        loop {
            for p in lab.processes.iter().filter(|p| p.kind == "chat") {
                let base = format!("http://{}", p.address);
                let Ok(r) = client.get(format!("{base}/api/v1/pool")).send().await else {
                    continue;
                };
                let Ok(view) = r.json::<serde_json::Value>().await else {
                    continue;
                };
                if view["serving"] != true {
                    continue;
                }
                let Some((name, password)) = admin.as_deref().and_then(|a| a.split_once(':'))
                else {
                    return Ok(());
                };
                let signed_in = client
                    .post(format!("{base}/api/v1/sessions"))
                    .json(&serde_json::json!({"name": name, "password": password}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if signed_in {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the pool did not start serving within 60 s (see the logs in {})",
                    dir.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn configure_replication(
    dir: &Path,
    topology: &pchat_dr::Topology,
    mirroring: crate::db::replication::Mode,
) -> anyhow::Result<()> {
    use pchat_dr::topology::Role;
    let addr = |role| {
        topology
            .database_server(role)
            .map(|d| d.address.clone())
            .context("the lab topology lacks a role")
    };
    let (primary, mirror) = (addr(Role::Primary)?, addr(Role::PrimaryMirror)?);
    let share = dir.join("share").display().to_string();
    let mode = match mirroring {
        crate::db::replication::Mode::Sync => "sync",
        crate::db::replication::Mode::Strict => "strict",
        crate::db::replication::Mode::Async => "async",
    };
    pchat(
        dir,
        &[
            "db",
            "mirror",
            "set",
            "--principal",
            &primary,
            "--mirror",
            &mirror,
            "--mode",
            mode,
            "--share",
            &share,
        ],
    )?;
    // Log shipping to the backup, initialising it; then the backup job on
    // the primary mirror too (as SQL Server has it): it ships only while its
    // copy is the principal, i.e. after a mirror failover. The backup
    // mirror is a second secondary, kept warm: at a failover it holds what
    // the backup holds, and becomes its mirror without a copy.
    for (secondary, from, initialized) in [
        (Role::Backup, &primary, false),
        (Role::Backup, &mirror, true),
        (Role::BackupMirror, &primary, false),
        (Role::BackupMirror, &mirror, true),
    ] {
        let backup = addr(secondary)?;
        let copy = topology
            .copy_folder(secondary)
            .context("the lab topology has no copy folder")?;
        let mut args = vec![
            "db",
            "logship",
            "configure",
            "--primary",
            from,
            "--secondary",
            &backup,
            "--share",
            &share,
            "--copy-to",
            &copy,
            "--continuous",
        ];
        if initialized {
            args.push("--initialized");
        }
        pchat(dir, &args)?;
    }
    Ok(())
}

fn print_lab(dir: &Path, lab: &Lab, json: bool) {
    let chat: Vec<_> = lab
        .processes
        .iter()
        .filter(|p| p.kind == "chat")
        .map(|p| serde_json::json!({"name": p.name, "data_center": p.data_center, "url": format!("http://{}", p.address), "pid": p.pid}))
        .collect();
    let db: Vec<_> = lab
        .processes
        .iter()
        .filter(|p| p.kind == "database")
        .map(|p| serde_json::json!({"name": p.name, "role": p.role, "data_center": p.data_center, "address": p.address, "pid": p.pid}))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "dir": dir, "topology": dir.join("topology.toml"),
                "secret_file": dir.join("secret"),
                "chat_servers": chat, "database_servers": db,
            })
        );
        return;
    }
    println!("lab in {}", dir.display());
    println!("topology: {}", dir.join("topology.toml").display());
    println!("cluster secret file: {}", dir.join("secret").display());
    for p in &lab.processes {
        let what = match (&p.role, p.kind.as_str()) {
            (Some(r), _) => format!("database server ({r})"),
            _ => "chat server".into(),
        };
        let at = if p.kind == "chat" {
            format!("http://{}", p.address)
        } else {
            p.address.clone()
        };
        println!(
            "  {:<6} {:<4} {:<32} {:<24} pid {}",
            p.name, p.data_center, what, at, p.pid
        );
    }
}

fn signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let lab = load(dir)?;
    // Chat servers first, so none is left writing while databases stop.
    let order = lab
        .processes
        .iter()
        .filter(|p| p.kind == "chat")
        .chain(lab.processes.iter().filter(|p| p.kind != "chat"));
    for p in order {
        if alive(p.pid) {
            signal(p.pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && lab.processes.iter().any(|p| alive(p.pid)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &lab.processes {
        if alive(p.pid) {
            eprintln!("{} did not stop within 10 s: SIGKILL", p.name);
            signal(p.pid, libc::SIGKILL);
        }
    }
    println!("lab in {} is down", dir.display());
    Ok(())
}

fn dc_of(dir: &Path, which: Which) -> anyhow::Result<String> {
    let t = crate::topology::load(&dir.join("topology.toml"))?;
    Ok(match which {
        Which::Primary => t.serving_data_center(pchat_dr::PoolState::Normal),
        Which::Backup => t.serving_data_center(pchat_dr::PoolState::FailedOver),
    })
}

/// SIGKILLs a data center's processes; what was killed.
fn kill_dc(dir: &Path, which: Which) -> anyhow::Result<String> {
    let lab = load(dir)?;
    let dc = dc_of(dir, which)?;
    let mut killed = Vec::new();
    for p in lab.processes.iter().filter(|p| p.data_center == dc) {
        if alive(p.pid) {
            signal(p.pid, libc::SIGKILL);
            killed.push(p.name.as_str());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && lab
            .processes
            .iter()
            .any(|p| p.data_center == dc && alive(p.pid))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!("data center {dc}: SIGKILL {}", killed.join(" ")))
}

fn rebuild_dc(dir: &Path, which: Which) -> anyhow::Result<String> {
    let mut lab = load(dir)?;
    let dc = dc_of(dir, which)?;
    let topology = crate::topology::load(&dir.join("topology.toml"))?;
    if let Some(p) = lab
        .processes
        .iter()
        .find(|p| p.data_center == dc && alive(p.pid))
    {
        bail!(
            "{} of data center {dc} is still running: pchat lab kill-dc first",
            p.name
        );
    }
    for d in topology
        .database_servers
        .iter()
        .filter(|d| d.data_center == dc)
    {
        let data = dir.join(&d.name);
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("cannot clear {}", data.display()))?;
        }
        let p = start_database(dir, d)?;
        wait_tcp(&p.address, &p.name)?;
        lab.processes.retain(|x| x.name != p.name);
        lab.processes.push(p);
        save(dir, &lab)?;
    }
    for c in topology.chat_servers.iter().filter(|c| c.data_center == dc) {
        let p = start_chat(dir, c)?;
        wait_tcp(&p.address, &p.name)?;
        lab.processes.retain(|x| x.name != p.name);
        lab.processes.push(p);
        save(dir, &lab)?;
    }
    Ok(format!(
        "data center {dc}: fresh database servers and its chat servers started"
    ))
}

fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let lab = load(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut rows = Vec::new();
    for p in &lab.processes {
        let running = alive(p.pid);
        let pool = if p.kind == "chat" && running {
            rt.block_on(async {
                let r = client
                    .get(format!("http://{}/api/v1/pool", p.address))
                    .send()
                    .await
                    .ok()?;
                r.json::<serde_json::Value>().await.ok()
            })
        } else {
            None
        };
        rows.push(serde_json::json!({
            "name": p.name, "kind": p.kind, "data_center": p.data_center,
            "role": p.role, "address": p.address, "pid": p.pid,
            "running": running, "pool": pool,
        }));
    }
    if json {
        println!("{}", serde_json::json!({ "processes": rows }));
        return Ok(());
    }
    for r in &rows {
        let note = match r["pool"].as_object() {
            Some(v) if v["serving"] == true => format!("serving (pool version {})", v["version"]),
            Some(v) => v["reason"].as_str().unwrap_or("not serving").to_string(),
            None => String::new(),
        };
        println!(
            "  {:<6} {:<4} {:<9} {:<22} {:<8} {}",
            r["name"].as_str().unwrap_or(""),
            r["data_center"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["address"].as_str().unwrap_or(""),
            if r["running"] == true {
                "running"
            } else {
                "down"
            },
            note
        );
    }
    Ok(())
}
