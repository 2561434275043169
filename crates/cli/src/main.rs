//! `pchat`: the one binary. Only command-line definitions and glue live here;
//! the work is done by the library crates.

mod admin;
mod config;
mod console;
mod db;
mod dirlock;
mod dr;
mod follow;
mod lab;
mod pool;
mod serve;
mod topology;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pchat",
    version,
    about = "Persistent group chat that survives the loss of a data center"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a chat server (HTTP API, WebSocket, embedded databases mgc and mgccomp).
    Serve(config::ServeArgs),
    /// Administer users, groups, categories, rooms, add-ins and messages, against a data directory or a running server.
    #[command(subcommand)]
    Admin(Box<admin::AdminCmd>),
    /// Database operations: serve, backup, restore, recover, log shipping, mirroring, status.
    #[command(subcommand)]
    Db(db::DbCmd),
    /// The pool's topology across two data centers (topology.toml).
    #[command(subcommand)]
    Topology(topology::TopologyCmd),
    /// Load a running server like real clients do, and verify what it acknowledged.
    Bench(BenchArgs),
    /// A whole pool across two data centers as local processes (up, down,
    /// status, kill-dc, rebuild-dc).
    #[command(subcommand)]
    Lab(lab::LabCmd),
    /// The runbooks: failover, failback and switchover of the pool between
    /// its data centers, each one command with a plan, checks, progress,
    /// resume and verification.
    #[command(subcommand)]
    Dr(dr::DrCmd),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An administrator, as name:password (creates the bench's users and rooms).
    #[arg(long, env = "PCHAT_BENCH_ADMIN")]
    admin: String,
    /// Concurrent posting clients (one WebSocket each).
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Rooms the senders post into (round-robin).
    #[arg(long, default_value_t = 8)]
    rooms: usize,
    /// Subscribed clients per room (one WebSocket each).
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// How long to load, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: std::time::Duration,
    /// Posts each sender keeps in flight (1: post, wait for the ack, post again).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Only connect subscribers and hold them (no posting); reports RSS.
    #[arg(long)]
    hold_only: bool,
    /// Total posts per second across all senders (default: as fast as acks allow).
    #[arg(long)]
    rate: Option<f64>,
    /// After loading, time this many reads of the latest 50 messages of the
    /// first room and this many full-text searches.
    #[arg(long, default_value_t = 0)]
    reads: usize,
    /// Clients set TCP_NODELAY, as browsers do (costs the bench more CPU).
    #[arg(long)]
    nodelay: bool,
    /// Print one JSON object on one line.
    #[arg(long)]
    json: bool,
}

pub(crate) use pchat_dr::parse_duration;

/// Servers and the bench hold one file descriptor per connection: lift the
/// soft limit to the hard one, and (where allowed, e.g. as root) both to the
/// kernel's per-process ceiling `fs.nr_open` (at most 1,048,576).
fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
            .unwrap_or(lim.rlim_max)
            .min(1 << 20);
        if ceiling > lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: ceiling,
                rlim_max: ceiling,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return;
            }
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// glibc raises its mmap threshold after a large block is freed, so Argon2's
/// 19 MiB blocks would then come from (and stay in) the heap. A fixed
/// threshold keeps them mmap'd and returned to the OS when freed.
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; called before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    fix_mmap_threshold();
    let cli = Cli::parse();
    raise_fd_limit();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PCHAT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Cmd::Serve(args) => serve::run(args).await,
            Cmd::Db(cmd) => db::serve(cmd).await,
            Cmd::Admin(cmd) => admin::run(*cmd).await,
            Cmd::Topology(cmd) => topology::run(cmd),
            Cmd::Dr(cmd) => dr::run(cmd).await,
            Cmd::Lab(cmd) => tokio::task::spawn_blocking(move || lab::run(cmd)).await?,
            Cmd::Bench(a) => {
                let (name, password) = a
                    .admin
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("--admin must be name:password"))?;
                let config = pchat_bench::Config {
                    url: a.url,
                    admin_name: name.to_string(),
                    admin_password: password.to_string(),
                    senders: a.senders,
                    rooms: a.rooms.max(1),
                    subscribers: a.subscribers,
                    size: a.size,
                    duration: a.duration,
                    window: a.window.max(1),
                    hold_only: a.hold_only,
                    rate: a.rate,
                    reads: a.reads,
                    nodelay: a.nodelay,
                };
                let report = pchat_bench::run(config).await?;
                if a.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{}", report.human());
                }
                if report.missing > 0 || report.duplicated > 0 {
                    anyhow::bail!(
                        "verification failed: {} acknowledged posts missing, {} duplicated",
                        report.missing,
                        report.duplicated
                    );
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
