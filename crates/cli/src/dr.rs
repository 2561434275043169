//! `pchat dr failover | failback | switchover`: the procedures of the brief
//! as one command each, against the topology. A plan (`--plan` prints it
//! and changes nothing), preflight checks that refuse unsafe runs, each
//! step idempotent and journaled (running the command again after an
//! interruption resumes where it stopped), and a verification at the end
//! that compares every copy of mgc and mgccomp.

use crate::db::replication::{status_entry, Server};
use crate::db::Database;
use crate::pool::{Pool, PoolTarget};
use anyhow::{bail, Context};
use pchat_dr::runbook::{plan, servers_of, Journal, Procedure, Step};
use pchat_dr::topology::Role;
use pchat_dr::{Change, PoolConfig, PoolState, Topology};
use pchat_wire::message::{CopyTarget, LogshipPrimary, LogshipSecondary, MirrorMode, Request};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DATABASES: [Database; 2] = [Database::Mgc, Database::Mgccomp];

#[derive(clap::Subcommand, Debug)]
pub enum DrCmd {
    /// The primary data center is lost: ship what is left, bring the backup
    /// databases online, fail the pool over, mirror the backup, activate
    /// the backup data center's chat servers, verify.
    Failover(RunArgs),
    /// The primary data center is rebuilt: move the pool back to it with
    /// nothing written during the failover lost, and set up mirroring and
    /// log shipping again.
    Failback(RunArgs),
    /// A planned switch with both data centers up and nothing lost: to the
    /// backup data center when the pool is Normal, back (a failback) when
    /// it is FailedOver.
    Switchover(RunArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    target: PoolTarget,
    /// Print the plan (every step with the checks before it) and change nothing.
    #[arg(long)]
    plan: bool,
    /// Do not ask for confirmation (for scripts).
    #[arg(long)]
    yes: bool,
    /// Where the run's journal is kept [default: dr-journal.json next to
    /// the topology].
    #[arg(long)]
    journal: Option<PathBuf>,
}

/// One preflight check: what is checked, and why it failed.
struct Check {
    what: String,
    failed: Option<String>,
}

struct Run {
    pool: Pool,
    servers: std::collections::BTreeMap<Role, Server>,
    journal_path: PathBuf,
    journal: Journal,
    json: bool,
}

fn now_ms() -> u64 {
    pchat_engine::now_ms().max(0) as u64
}

pub async fn run(cmd: DrCmd) -> anyhow::Result<()> {
    let (asked, args) = match cmd {
        DrCmd::Failover(a) => (Some(Procedure::Failover), a),
        DrCmd::Failback(a) => (Some(Procedure::Failback), a),
        DrCmd::Switchover(a) => (None, a),
    };
    let pool = Pool::open(&args.target)?;
    let key = crate::config::cluster_secret(args.target.cluster_secret_file.as_deref())?;
    let servers = pool
        .topology
        .database_servers
        .iter()
        .map(|d| (d.role, Server::connect(&d.address, key.clone())))
        .collect();
    let journal_path = args.journal.clone().unwrap_or_else(|| {
        args.target
            .topology
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("dr-journal.json")
    });
    let unfinished = read_journal(&journal_path)?.filter(|j| !j.finished);
    // A switchover goes wherever the pool is not.
    let procedure = match (asked, &unfinished) {
        (Some(p), _) => p,
        (None, Some(j)) => j.procedure,
        (None, None) => match pool.read().await?.0.state {
            PoolState::Normal => Procedure::SwitchoverToBackup,
            PoolState::FailedOver => Procedure::Failback,
        },
    };
    let journal = match unfinished {
        Some(j) if j.procedure == procedure => j,
        Some(j) => bail!(
            "a {} is half done (journal {}): run it again to finish it before a {}",
            j.procedure.as_str(),
            journal_path.display(),
            procedure.as_str()
        ),
        None => Journal::new(procedure, now_ms()),
    };
    let mut run = Run {
        pool,
        servers,
        journal_path,
        journal,
        json: args.target.json,
    };
    let resuming = !run.journal.done.is_empty();
    run.print_plan(resuming);
    let checks = run.preflight(resuming).await;
    let failed: Vec<&Check> = checks.iter().filter(|c| c.failed.is_some()).collect();
    run.say(&format!(
        "preflight checks{}:",
        if resuming { " (resuming)" } else { "" }
    ));
    for c in &checks {
        match &c.failed {
            None => run.say(&format!("  ok    {}", c.what)),
            Some(why) => run.say(&format!("  FAIL  {}: {why}", c.what)),
        }
    }
    if !failed.is_empty() {
        let reasons: Vec<String> = failed
            .iter()
            .map(|c| c.failed.clone().unwrap_or_default())
            .collect();
        bail!("{} refused: {}", procedure.as_str(), reasons.join("; "));
    }
    if args.plan {
        run.say("--plan: nothing was changed");
        return Ok(());
    }
    if !args.yes {
        confirm(procedure)?;
    }
    run.execute().await
}

fn read_journal(path: &std::path::Path) -> anyhow::Result<Option<Journal>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a runbook journal (move it away to start afresh)",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn confirm(procedure: Procedure) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "not on a terminal, so nobody can confirm the {}: pass --yes to run it",
            procedure.as_str()
        );
    }
    eprint!("Run the {}? [y/N] ", procedure.as_str());
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y" | "yes") {
        bail!("not confirmed: nothing was changed");
    }
    Ok(())
}

/// How the topology configures log shipping of `db` from the primary to the
/// secondary in `secondary` (the backup, or the backup mirror).
fn logship_configs(
    t: &Topology,
    db: Database,
    secondary: Role,
) -> anyhow::Result<(LogshipPrimary, LogshipSecondary)> {
    let l = t
        .log_shipping
        .as_ref()
        .context("the topology has no [log_shipping]")?;
    let every = |v: &Option<String>| -> anyhow::Result<u64> {
        Ok(match v {
            _ if l.continuous => 0,
            Some(s) => pchat_dr::parse_duration(s)
                .map_err(|e| anyhow::anyhow!(e))?
                .as_millis() as u64,
            None => 15 * 60 * 1000,
        })
    };
    let delay = match &l.restore_delay {
        Some(s) => pchat_dr::parse_duration(s)
            .map_err(|e| anyhow::anyhow!(e))?
            .as_millis() as u64,
        None => 0,
    };
    let primary = t
        .database_server(Role::Primary)
        .map(|d| d.address.clone())
        .unwrap_or_default();
    Ok((
        LogshipPrimary {
            db: db.wire(),
            share: l.share.clone(),
            every_ms: every(&l.backup_every)?,
            continuous: l.continuous,
            retention_ms: 72 * 3600 * 1000,
            backup_alert_ms: 3600 * 1000,
        },
        LogshipSecondary {
            db: db.wire(),
            primary,
            share: l.share.clone(),
            copy_to: t
                .copy_folder(secondary)
                .unwrap_or_else(|| l.copy_to.clone()),
            copy_every_ms: every(&l.copy_every)?,
            restore_every_ms: every(&l.restore_every)?,
            delay_ms: delay,
            standby: false,
            continuous: l.continuous,
            restore_alert_ms: 45 * 60 * 1000,
        },
    ))
}

fn mirror_mode(t: &Topology) -> MirrorMode {
    match t.mirroring.as_ref().map(|m| m.mode.as_str()) {
        Some("strict") => MirrorMode::Strict,
        Some("async") => MirrorMode::Async,
        _ => MirrorMode::Sync,
    }
}

impl Run {
    fn say(&self, line: &str) {
        // With --json, stdout holds only the final report.
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn t(&self) -> &Topology {
        &self.pool.topology
    }

    fn server(&self, role: Role) -> anyhow::Result<&Server> {
        self.servers
            .get(&role)
            .with_context(|| format!("the topology has no {} database server", role.as_str()))
    }

    fn name(&self, role: Role) -> String {
        self.t()
            .database_server(role)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| role.as_str().into())
    }

    fn print_plan(&self, resuming: bool) {
        let p = self.journal.procedure;
        self.say(&format!(
            "{} of pool {}{}",
            p.as_str(),
            self.t().pool,
            if resuming {
                format!(
                    " (resuming the run started at {} ms)",
                    self.journal.started_at_ms
                )
            } else {
                String::new()
            }
        ));
        for (i, step) in plan(p).into_iter().enumerate() {
            let mark = if self.journal.is_done(step) {
                "done"
            } else {
                "    "
            };
            self.say(&format!("  {mark} {}. {}", i + 1, step.describe(self.t())));
        }
    }

    fn save(&self) -> anyhow::Result<()> {
        let tmp = self.journal_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.journal)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.journal_path)?;
        Ok(())
    }

    /// A database's status entry, or None when its server does not answer.
    async fn entry(&self, role: Role, db: Database) -> Option<Value> {
        let s = self.server(role).ok()?;
        tokio::time::timeout(Duration::from_secs(3), s.database(db))
            .await
            .ok()?
            .ok()
    }

    async fn answers(&self, role: Role) -> bool {
        let Ok(s) = self.server(role) else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(3), s.ask(Request::Status)).await,
            Ok(Ok(_))
        )
    }

    async fn preflight(&self, resuming: bool) -> Vec<Check> {
        let mut out = Vec::new();
        let mut check = |what: String, failed: Option<String>| out.push(Check { what, failed });
        let config = self.pool.read().await;
        let state = config.as_ref().ok().map(|(c, _)| c.state);
        check(
            "the pool configuration can be read".into(),
            config.as_ref().err().map(|e| e.to_string()),
        );
        let (b, bm, p, pm) = (
            self.name(Role::Backup),
            self.name(Role::BackupMirror),
            self.name(Role::Primary),
            self.name(Role::PrimaryMirror),
        );
        match self.journal.procedure {
            Procedure::Failover | Procedure::SwitchoverToBackup => {
                let planned = self.journal.procedure == Procedure::SwitchoverToBackup;
                if !resuming {
                    check(
                        "the pool state is normal".into(),
                        (state != Some(PoolState::Normal)).then(|| {
                            "the pool is failed over already (fail back with pchat dr failback)"
                                .to_string()
                        }),
                    );
                }
                let mut backup_ok = None;
                for db in DATABASES {
                    match self.entry(Role::Backup, db).await {
                        None => backup_ok = Some(format!("{b} does not answer")),
                        Some(e) if !resuming && e["state"] == "ONLINE" => {
                            backup_ok = Some(format!(
                                "{} on {b} is ONLINE: it is not a log-shipping secondary",
                                db.name()
                            ))
                        }
                        Some(_) => {}
                    }
                }
                check(
                    format!("the backup databases on {b} answer and follow the primary"),
                    backup_ok,
                );
                // Needed by a step still to run, not by one already done.
                if !self.journal.is_done(Step::MirrorBackup) {
                    check(
                        format!("the backup mirror {bm} answers"),
                        (!self.answers(Role::BackupMirror).await).then(|| {
                            format!("{bm} does not answer: it is needed to mirror the backup")
                        }),
                    );
                }
                // Failing over a primary that still serves would lose what
                // it commits after the last shipped log: switch instead.
                let mut serving = Vec::new();
                for role in [Role::Primary, Role::PrimaryMirror] {
                    if let Some(e) = self.entry(role, Database::Mgc).await {
                        if e["serving"] == true {
                            serving.push(self.name(role));
                        }
                    }
                }
                if planned {
                    if !resuming {
                        check(
                            format!("the primary databases serve ({p} or {pm})"),
                            serving.is_empty().then(|| {
                                "no primary database serves: this is a failover (pchat dr failover)"
                                    .to_string()
                            }),
                        );
                    }
                } else {
                    check(
                        "the primary databases are not online and reachable".into(),
                        (!serving.is_empty()).then(|| {
                            format!(
                                "mgc is ONLINE and reachable on {}: a failover now would lose what it commits after the last shipped log; use pchat dr switchover (a planned switch that ships the tail of the log, so nothing is lost)",
                                serving.join(" and ")
                            )
                        }),
                    );
                }
            }
            Procedure::Failback => {
                if !resuming {
                    check(
                        "the pool state is failed-over".into(),
                        (state != Some(PoolState::FailedOver)).then(|| {
                            "the pool is not failed over: nothing to fail back".to_string()
                        }),
                    );
                    let misplaced: Vec<String> = config
                        .as_ref()
                        .ok()
                        .map(|(c, _)| {
                            let dc = self.t().serving_data_center(PoolState::Normal);
                            c.active
                                .iter()
                                .filter(|a| a.data_center == dc)
                                .map(|a| a.name.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    check(
                        "no server of the primary data center is active".into(),
                        (!misplaced.is_empty()).then(|| {
                            format!(
                                "{} of the primary data center {} still active (pchat admin active-servers remove ...)",
                                misplaced.join(", "),
                                if misplaced.len() == 1 { "is" } else { "are" }
                            )
                        }),
                    );
                    let mut online = None;
                    for db in DATABASES {
                        let e = self.entry(Role::Backup, db).await;
                        if e.as_ref().is_none_or(|e| e["state"] != "ONLINE") {
                            online = Some(format!("{} on {b} is not ONLINE", db.name()));
                        }
                    }
                    check(format!("the backup databases on {b} are online"), online);
                }
                for role in [Role::Primary, Role::PrimaryMirror] {
                    let name = self.name(role);
                    check(
                        format!("the rebuilt primary database server {name} answers"),
                        (!self.answers(role).await).then(|| {
                            format!("{name} does not answer: rebuild the primary data center first (its database servers reinstalled, e.g. pchat lab rebuild-dc primary)")
                        }),
                    );
                }
            }
        }
        out
    }

    async fn execute(&mut self) -> anyhow::Result<()> {
        let steps = plan(self.journal.procedure);
        let total = steps.len();
        let started = Instant::now();
        let mut report = json!({});
        for (i, step) in steps.into_iter().enumerate() {
            if self.journal.is_done(step) {
                continue;
            }
            pause_point("before", step).await;
            let t0 = Instant::now();
            self.say(&format!(
                "[{}/{total}] {} ...",
                i + 1,
                step.describe(self.t())
            ));
            let note = self.step(step).await.with_context(|| {
                format!(
                    "step {} ({}) failed; run the command again to resume",
                    i + 1,
                    step.key()
                )
            })?;
            let secs = t0.elapsed().as_secs_f64();
            self.say(&format!(
                "[{}/{total}] done in {secs:.2} s{}",
                i + 1,
                summary_line(&note)
            ));
            // Done but not yet journaled: the worst moment to be killed.
            pause_point("after", step).await;
            report[step.key()] = json!({ "seconds": secs, "result": note });
            self.journal.done.insert(step.key(), note);
            self.save()?;
        }
        self.journal.finished = true;
        self.save()?;
        // Finished: the journal is kept under its own name for the record.
        let kept = self.journal_path.with_file_name(format!(
            "dr-journal-{}-{}.json",
            self.journal.procedure.as_str(),
            self.journal.started_at_ms
        ));
        let _ = std::fs::rename(&self.journal_path, &kept);
        let verify = self
            .journal
            .done
            .get(&Step::Verify.key())
            .cloned()
            .unwrap_or(Value::Null);
        let out = json!({
            "procedure": self.journal.procedure.as_str(),
            "seconds": started.elapsed().as_secs_f64(),
            "steps": report,
            "recovery": self.journal.facts.get("recovery"),
            "verify": verify,
            "journal": kept,
        });
        if self.json {
            println!("{out}");
        } else {
            self.say(&format!(
                "{} finished in {:.2} s (journal {})",
                self.journal.procedure.as_str(),
                started.elapsed().as_secs_f64(),
                kept.display()
            ));
        }
        Ok(())
    }

    async fn step(&mut self, step: Step) -> anyhow::Result<Value> {
        match step {
            Step::ShipRemainingLogs => self.ship_remaining_logs().await,
            Step::ShipTheTail => self.ship_the_tail().await,
            Step::StopLogShipping => self.stop_log_shipping().await,
            Step::RemovePrimaryMirroring => {
                self.remove_mirroring(&[Role::Primary, Role::PrimaryMirror])
                    .await
            }
            Step::RemoveBackupMirroring => {
                // The compliance recorder on the backup records the last of
                // mgc first (nobody writes now), so the backup mirror's
                // mgccomp holds all of it too when the pair is broken.
                let b = self.server(Role::Backup)?.clone();
                if b.database(Database::Mgc).await?["state"] == "ONLINE" {
                    self.recorder_caught_up(&b).await?;
                }
                self.remove_mirroring(&[Role::Backup, Role::BackupMirror])
                    .await
            }
            Step::RecoverBackup => self.recover_backup().await,
            Step::SetPoolState(s) => self.set_pool_state(s).await,
            Step::MirrorBackup => self.mirror(Role::Backup, Role::BackupMirror).await,
            Step::MirrorPrimary => self.mirror(Role::Primary, Role::PrimaryMirror).await,
            Step::ActivateServers(s) => self.activate(s).await,
            Step::ClearActiveServers => self.clear_active().await,
            Step::CopyToPrimary => self.copy_to_primary().await,
            Step::ShipFromPrimary => self.ship_from_primary().await,
            Step::Verify => self.verify().await,
        }
    }

    async fn ship_remaining_logs(&mut self) -> anyhow::Result<Value> {
        let b = self.server(Role::Backup)?;
        let mut out = json!({});
        // What the backup heard of the primaries last (their databases'
        // last LSNs), for the report of what could not be recovered.
        let heard = b.ask(Request::PoolGet).await.unwrap_or(Value::Null);
        for db in DATABASES {
            let e = b.database(db).await?;
            let restored = if e["state"] == "ONLINE" {
                e["last_lsn"].clone()
            } else {
                let r = b.ask(Request::LogshipRun { db: db.wire() }).await?;
                r["last_lsn"].clone()
            };
            let mut known = None::<(i64, i64)>;
            for role in [Role::Primary, Role::PrimaryMirror] {
                let peer = &heard["peers"][self.name(role)];
                let lsn = peer["databases"][db.name()]["last_lsn"].as_i64();
                let at = peer["at_ms"].as_i64();
                if let (Some(lsn), Some(at)) = (lsn, at) {
                    if known.is_none_or(|(l, _)| lsn > l) {
                        known = Some((lsn, at));
                    }
                }
            }
            let restored_lsn = restored.as_i64().unwrap_or(0);
            let warm = self.warm_up_backup_mirror(db).await;
            out[db.name()] = json!({
                "restored_lsn": restored_lsn,
                "backup_mirror_restored_lsn": warm,
                "primary_last_known_lsn": known.map(|k| k.0),
                "primary_last_heard_ms": known.map(|k| k.1),
                "not_recovered_lsns": known.map(|(l, _)| (l - restored_lsn).max(0)),
            });
        }
        self.journal.facts.insert("recovery".into(), out.clone());
        for db in DATABASES {
            let r = &out[db.name()];
            let line = match r["primary_last_known_lsn"].as_i64() {
                Some(k) => format!(
                    "  {}: restored through LSN {}; the lost primary was last heard at LSN {k}: {} LSN(s) not recovered",
                    db.name(),
                    r["restored_lsn"],
                    r["not_recovered_lsns"]
                ),
                None => format!(
                    "  {}: restored through LSN {}; the lost primary's last LSN is unknown",
                    db.name(),
                    r["restored_lsn"]
                ),
            };
            self.say(&line);
        }
        Ok(out)
    }

    /// Switchover: nobody writes (the active list is empty) and the backup
    /// restores until it holds the principal's last LSN.
    async fn ship_the_tail(&mut self) -> anyhow::Result<Value> {
        let b = self.server(Role::Backup)?;
        let mut out = json!({});
        for db in DATABASES {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let mut target = None;
                for role in [Role::Primary, Role::PrimaryMirror] {
                    if let Some(e) = self.entry(role, db).await {
                        if e["serving"] == true {
                            target = e["last_lsn"].as_i64();
                        }
                    }
                }
                let here = b.database(db).await?;
                let at = here["last_lsn"].as_i64().unwrap_or(0);
                match target {
                    Some(t) if at >= t => {
                        out[db.name()] = json!({ "shipped_lsn": at });
                        break;
                    }
                    None if here["state"] == "ONLINE" => {
                        out[db.name()] = json!({ "shipped_lsn": at, "note": "already online" });
                        break;
                    }
                    None => bail!(
                        "no primary database serves {}: use pchat dr failover",
                        db.name()
                    ),
                    Some(_) => {}
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} on the backup stayed behind the primary for 120 s (LSN {at} of {:?}): check log shipping (pchat db logship status)",
                        db.name(),
                        target
                    );
                }
                // The backup job ships as the log grows; run the copy and
                // restore now rather than wait for their schedule.
                let _ = b.ask(Request::LogshipRun { db: db.wire() }).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let shipped = out[db.name()]["shipped_lsn"].as_i64();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let warm = self.warm_up_backup_mirror(db).await;
                if warm.is_none() || warm >= shipped || Instant::now() > deadline {
                    out[db.name()]["backup_mirror_restored_lsn"] = json!(warm);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(out)
    }

    /// Has the backup mirror, a second log-shipping secondary kept warm,
    /// copy and restore what the share holds now: the LSN it reached, or
    /// None when it does not answer or is not log shipped (the mirror step
    /// then seeds it by a copy).
    async fn warm_up_backup_mirror(&self, db: Database) -> Option<i64> {
        let bm = self.server(Role::BackupMirror).ok()?;
        let ran = tokio::time::timeout(
            Duration::from_secs(30),
            bm.ask(Request::LogshipRun { db: db.wire() }),
        )
        .await;
        match ran {
            Ok(Ok(r)) => r["last_lsn"].as_i64(),
            _ => None,
        }
    }

    async fn stop_log_shipping(&mut self) -> anyhow::Result<Value> {
        let mut out = json!({});
        for role in [
            Role::Backup,
            Role::BackupMirror,
            Role::Primary,
            Role::PrimaryMirror,
        ] {
            let Ok(s) = self.server(role) else { continue };
            let status =
                tokio::time::timeout(Duration::from_secs(3), s.ask(Request::LogshipStatus)).await;
            let Ok(Ok(status)) = status else {
                if role == Role::Backup {
                    bail!("{} does not answer", self.name(role));
                }
                continue; // a lost primary ships nothing; a lost backup mirror is seeded later
            };
            for job in status["jobs"].as_array().into_iter().flatten() {
                let db = match job["database"].as_str() {
                    Some("mgc") => Database::Mgc,
                    Some("mgccomp") => Database::Mgccomp,
                    _ => continue,
                };
                s.ask(Request::LogshipRemove { db: db.wire() }).await?;
                out[self.name(role)][db.name()] = json!("removed");
            }
        }
        Ok(out)
    }

    async fn remove_mirroring(&mut self, roles: &[Role]) -> anyhow::Result<Value> {
        let mut out = json!({});
        for &role in roles {
            for db in DATABASES {
                let Some(e) = self.entry(role, db).await else {
                    out[self.name(role)] = json!("does not answer");
                    continue;
                };
                if e["mirroring"].is_null() {
                    continue;
                }
                // Nobody writes now: a connected (asynchronous) mirror gets
                // the last records first, so it holds what its principal
                // holds and can follow the next principal from there.
                if e["mirroring"]["role"] == "principal" && e["mirroring"]["connected"] == true {
                    self.mirror_caught_up(role, db).await;
                }
                self.server(role)?
                    .ask(Request::MirrorRemove { db: db.wire() })
                    .await?;
                out[self.name(role)][db.name()] = json!("removed");
            }
        }
        Ok(out)
    }

    /// Waits (up to 10 s) until the mirror of `role`'s principal copy has
    /// hardened all of it.
    async fn mirror_caught_up(&self, role: Role, db: Database) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.entry(role, db).await {
                Some(e) if e["mirroring"]["synchronized"] != true => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => return,
            }
        }
    }

    async fn recover_backup(&mut self) -> anyhow::Result<Value> {
        let b = self.server(Role::Backup)?;
        let mut out = json!({});
        for db in DATABASES {
            let e = b.database(db).await?;
            if e["state"] != "ONLINE" {
                b.ask(Request::Recover { db: db.wire() }).await?;
            }
            let e = b.database(db).await?;
            out[db.name()] =
                json!({ "fork_id": e["fork_id"], "last_lsn": e["last_lsn"], "state": e["state"] });
        }
        Ok(out)
    }

    async fn set_pool_state(&mut self, s: PoolState) -> anyhow::Result<Value> {
        let (c, _) = self.pool.read().await?;
        let c = if c.state == s {
            c
        } else {
            self.pool.change(&Change::State(s)).await?.0
        };
        Ok(json!({ "version": c.version, "state": c.state.as_str() }))
    }

    async fn activate(&mut self, s: PoolState) -> anyhow::Result<Value> {
        let dc = self.t().serving_data_center(s);
        let want = servers_of(self.t(), &dc);
        let (c, _) = self.pool.read().await?;
        let now: Vec<String> = c.active.iter().map(|a| a.name.clone()).collect();
        let c = if now == want {
            c
        } else {
            self.pool.change(&Change::Replace(want)).await?.0
        };
        Ok(json!({ "version": c.version, "active": active_names(&c) }))
    }

    async fn clear_active(&mut self) -> anyhow::Result<Value> {
        let (c, _) = self.pool.read().await?;
        let c = if c.active.is_empty() {
            c
        } else {
            self.pool.change(&Change::Clear).await?.0
        };
        Ok(json!({ "version": c.version }))
    }

    /// Whether no chat server may write to `role`'s databases now (its
    /// writers may be held off for a copy): none is active, or none is
    /// active in its data center and active servers do not write across
    /// data centers (fencing refuses them). The runbooks mirror a new
    /// principal before they activate its servers.
    async fn nobody_writes_to(&self, role: Role) -> bool {
        let Some(dc) = self
            .t()
            .database_server(role)
            .map(|d| d.data_center.clone())
        else {
            return false;
        };
        match self.pool.read().await {
            Ok((c, _)) => {
                c.active.is_empty()
                    || (!c.active_across_data_centers
                        && c.active.iter().all(|a| a.data_center != dc))
            }
            Err(_) => false,
        }
    }

    async fn mirror(&mut self, principal: Role, mirror: Role) -> anyhow::Result<Value> {
        let share = self
            .t()
            .log_shipping
            .as_ref()
            .map(|l| l.share.clone())
            .context("the topology has no [log_shipping] share for the initial full backup")?;
        let mode = mirror_mode(self.t());
        let (p, m) = (self.server(principal)?, self.server(mirror)?);
        let mut out = json!({});
        for db in DATABASES {
            let e = p.database(db).await?;
            if e["mirroring"]["partner"] == json!(m.addr) && e["role"] == "principal" {
                out[db.name()] = json!("already mirrored");
                continue;
            }
            // A half-made pair from an interrupted run is made again.
            let _ = p.ask(Request::MirrorRemove { db: db.wire() }).await;
            let _ = m.ask(Request::MirrorRemove { db: db.wire() }).await;
            let here = m.database(db).await?;
            if self.journal.facts.contains_key(&restored_key(mirror, db)) {
                // Restored from the failback's backup: it follows from there.
                m.pair_with(p, db, mode).await?;
                out[db.name()] = json!("paired");
            } else if ready_to_mirror(&here, &e) {
                // A warm secondary that restored every log the backup did:
                // it follows the principal's new fork from where it stands.
                self.say(&format!(
                    "  {}: {} holds what {} holds (LSN {}): paired without a copy",
                    db.name(),
                    self.name(mirror),
                    self.name(principal),
                    here["last_lsn"]
                ));
                m.pair_with(p, db, mode).await?;
                out[db.name()] =
                    json!({ "mirror_from_lsn": here["last_lsn"], "by": "log shipping" });
            } else if self.nobody_writes_to(principal).await {
                // Nobody writes to the principal yet: a copy straight to the
                // mirror (read once, written once) instead of a full backup
                // through the share and its restore.
                let to = vec![CopyTarget {
                    addr: m.addr.clone(),
                    replace: true,
                    recovery: pchat_store::Recovery::NoRecovery,
                }];
                self.say(&format!(
                    "  {}: copying from {} to {} (norecovery)",
                    db.name(),
                    self.name(principal),
                    self.name(mirror)
                ));
                let sent = p.send_copy(db, to, &|line| self.say(line)).await?;
                if let Some(e) = sent["copies"][0]["error"].as_str() {
                    bail!("copying {} to {} failed: {e}", db.name(), self.name(mirror));
                }
                m.pair_with(p, db, mode).await?;
                out[db.name()] = json!({ "mirror_from_lsn": sent["last_lsn"], "by": "copy" });
            } else {
                let r = m.mirror_of(p, db, &share, mode, true).await?;
                out[db.name()] = json!({ "mirror_from_lsn": r["last_lsn"] });
            }
        }
        Ok(out)
    }

    /// Backup mgc and mgccomp copied straight to the primary (with recovery:
    /// ready to use) and to the primary mirror (with norecovery: it follows
    /// the primary's new fork from there), both from one read of each file
    /// on the backup, which nobody writes to (no server is active). The
    /// backup then goes back to RESTORING in place: it holds the same data,
    /// so it follows the primary's new fork without being written again.
    async fn copy_to_primary(&mut self) -> anyhow::Result<Value> {
        use pchat_store::Recovery;
        let b = self.server(Role::Backup)?.clone();
        let mut out = json!({});
        // Which targets still need their copies (a resumed run skips what
        // is done). A target gets both databases or neither: its compliance
        // recorder runs whenever both are ONLINE, and a copied mgccomp next
        // to an mgc of another history would record that history as a new
        // epoch. So both go OFFLINE first, and the recorder starts again
        // only once both copies are in place.
        let mut pending = Vec::new();
        for (role, recovery) in [
            (Role::Primary, Recovery::Recovery),
            (Role::PrimaryMirror, Recovery::NoRecovery),
        ] {
            let done = DATABASES
                .iter()
                .all(|db| self.journal.facts.contains_key(&restored_key(role, *db)));
            if done {
                for db in DATABASES {
                    out[db.name()][role.as_str()] = json!("already copied");
                }
                continue;
            }
            let s = self.server(role)?.clone();
            for db in DATABASES {
                self.journal.facts.remove(&restored_key(role, db));
                let _ = s.ask(Request::MirrorRemove { db: db.wire() }).await;
                let _ = s.ask(Request::LogshipRemove { db: db.wire() }).await;
                let _ = s.ask(Request::Offline { db: db.wire() }).await;
            }
            pending.push((role, recovery, s.addr.clone()));
        }
        let mut work = Vec::new();
        for db in DATABASES {
            let targets = pending.clone();
            if targets.is_empty() {
                continue;
            }
            let names: Vec<String> = targets
                .iter()
                .map(|(role, recovery, _)| {
                    let how = if *recovery == Recovery::Recovery {
                        "recovery"
                    } else {
                        "norecovery"
                    };
                    format!("{} ({how})", self.name(*role))
                })
                .collect();
            let line = format!(
                "  {}: copying from {} to {}",
                db.name(),
                self.name(Role::Backup),
                names.join(" and ")
            );
            work.push((db, targets, line));
        }
        if !work.is_empty() {
            self.recorder_caught_up(&b).await?;
        }
        // One database after the other: the copies are bound by CPU and
        // disk, and two at once measured slower on two cores.
        let mut failed = Vec::new();
        for (db, targets, line) in &work {
            self.say(line);
            let to = targets
                .iter()
                .map(|(_, recovery, addr)| CopyTarget {
                    addr: addr.clone(),
                    replace: true,
                    recovery: *recovery,
                })
                .collect();
            let sent = b.send_copy(*db, to, &|line| self.say(line)).await;
            let sent = match sent {
                Ok(v) => v,
                Err(e) => {
                    failed.push(format!("{}: {e:#}", db.name()));
                    continue;
                }
            };
            self.journal.facts.insert(
                format!("copy-{}", db.name()),
                json!({ "family_id": sent["family_id"], "last_lsn": sent["last_lsn"], "bytes": sent["bytes"] }),
            );
            let copies = sent["copies"].as_array().cloned().unwrap_or_default();
            for ((role, _, _), copy) in targets.iter().zip(copies) {
                match copy.get("report") {
                    Some(report) => {
                        self.journal
                            .facts
                            .insert(restored_key(*role, *db), json!(true));
                        out[db.name()][role.as_str()] = report.clone();
                    }
                    None => failed.push(format!(
                        "{} on {}: {}",
                        db.name(),
                        self.name(*role),
                        short(&copy["error"])
                    )),
                }
            }
        }
        self.save()?;
        if !failed.is_empty() {
            bail!("copying failed: {}", failed.join("; "));
        }
        // The backup, which the copy was taken from, holds the copied data;
        // so does the backup mirror, its mirror until now: both go back to
        // RESTORING in place and follow the primary's new fork from there.
        // A backup mirror that cannot (down, or behind) is initialised from
        // a full backup of the primary when log shipping is set up again.
        for role in [Role::Backup, Role::BackupMirror] {
            for db in DATABASES {
                let key = restored_key(role, db);
                if self.journal.facts.contains_key(&key) {
                    continue;
                }
                match self.hold_in_place(role, db).await {
                    Ok(r) => {
                        self.say(&format!(
                            "  {}: {} holds the copied data (LSN {}): back to RESTORING in place",
                            db.name(),
                            self.name(role),
                            r["last_lsn"]
                        ));
                        self.journal.facts.insert(key, json!(true));
                        out[db.name()][role.as_str()] = r;
                        self.save()?;
                    }
                    Err(e) if role == Role::BackupMirror => {
                        self.say(&format!(
                            "  {}: {} cannot follow as it is ({e:#}): it is initialised from the primary later",
                            db.name(),
                            self.name(role)
                        ));
                        out[db.name()][role.as_str()] = json!(format!("{e:#}"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Puts `db` on the server in `role` back to RESTORING in place, checked
    /// against what the failback copied (family and last LSN).
    async fn hold_in_place(&self, role: Role, db: Database) -> anyhow::Result<Value> {
        let copy = self
            .journal
            .facts
            .get(&format!("copy-{}", db.name()))
            .context("the journal lacks what was copied")?;
        let family_id = copy["family_id"].as_str().unwrap_or_default().to_string();
        let last_lsn = copy["last_lsn"].as_i64().unwrap_or(-1);
        let s = self.server(role)?;
        let _ = s.ask(Request::MirrorRemove { db: db.wire() }).await;
        let _ = s.ask(Request::LogshipRemove { db: db.wire() }).await;
        s.ask(Request::HoldForLogs {
            db: db.wire(),
            family_id,
            last_lsn,
        })
        .await
        .with_context(|| format!("holding {} on {} for logs", db.name(), s.addr))
    }

    /// Waits until the backup's compliance recorder has recorded all of
    /// its mgc (nobody writes now, so it gets there): the copied mgccomp
    /// is then complete, and the copies agree with each other at once
    /// instead of each recorder catching up on its own.
    async fn recorder_caught_up(&self, b: &crate::db::replication::Server) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut said = false;
        loop {
            let status = b.ask(Request::Status).await?;
            let entry = |db| status_entry(&status, db).unwrap_or_default();
            let last = entry(Database::Mgc)["last_lsn"].as_i64().unwrap_or(0);
            let cursor = entry(Database::Mgccomp)["recorded_through"]
                .as_i64()
                .unwrap_or(0);
            if cursor >= last {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the compliance recorder on {} has recorded mgc through LSN {cursor} of {last} and does not catch up; run the command again to resume",
                    b.addr
                );
            }
            if !said {
                self.say(&format!(
                    "  waiting for the compliance recorder on {} (mgc LSN {cursor} of {last} recorded)",
                    self.name(Role::Backup)
                ));
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Log shipping from the primary to the backup and to the backup
    /// mirror, a second secondary kept warm for the next failover.
    async fn ship_from_primary(&mut self) -> anyhow::Result<Value> {
        let share = self
            .t()
            .log_shipping
            .as_ref()
            .map(|l| l.share.clone())
            .context("the topology has no [log_shipping]")?;
        let p = self.server(Role::Primary)?;
        let mut out = json!({});
        for secondary in [Role::Backup, Role::BackupMirror] {
            let s = match self.server(secondary) {
                Ok(s) => s,
                Err(_) if secondary == Role::BackupMirror => continue,
                Err(e) => return Err(e),
            };
            let jobs = s.ask(Request::LogshipStatus).await;
            let jobs = match jobs {
                Ok(j) => j,
                // The warm spare is worth having, not worth failing for:
                // the verification names it if it is missing.
                Err(e) if secondary == Role::BackupMirror => {
                    out[self.name(secondary)] = json!(format!("{e:#}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for db in DATABASES {
                let already = jobs["jobs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|j| j["database"] == db.name() && j["config"]["role"] == "secondary");
                let here = s.database(db).await?;
                let (pc, sc) = logship_configs(self.t(), db, secondary)?;
                // The primary's backup job (and the primary mirror's, which
                // ships once it is principal): the same job for both
                // secondaries, kept running when it is there already.
                p.ask(Request::LogshipPrimary { config: pc.clone() })
                    .await?;
                if let Ok(pm) = self.server(Role::PrimaryMirror) {
                    pm.ask(Request::LogshipPrimary { config: pc.clone() })
                        .await?;
                }
                if already && here["state"] != "ONLINE" {
                    out[self.name(secondary)][db.name()] = json!("already shipping");
                    continue;
                }
                let _ = s.ask(Request::LogshipRemove { db: db.wire() }).await;
                // Held for logs by the failback's copy, it follows the
                // primary's new fork from there; otherwise it starts afresh.
                let r = if self
                    .journal
                    .facts
                    .contains_key(&restored_key(secondary, db))
                    && here["state"] != "ONLINE"
                {
                    here.clone()
                } else {
                    self.long(s.initialise_from(
                        p,
                        db,
                        &share,
                        pchat_store::Recovery::NoRecovery,
                        true,
                    ))
                    .await?
                };
                s.ship_from(p, pc, sc).await?;
                out[self.name(secondary)][db.name()] =
                    json!({ "secondary_from_lsn": r["last_lsn"] });
            }
        }
        Ok(out)
    }

    /// Awaits a long operation, printing the time it has taken every second.
    async fn long<T>(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let t0 = Instant::now();
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    self.say(&format!("  ... {:.0} s", t0.elapsed().as_secs_f64()));
                }
            }
        }
    }

    async fn verify(&mut self) -> anyhow::Result<Value> {
        let (c, _) = self.pool.read().await?;
        // The log-shipping secondaries: the backup, and the backup mirror
        // kept warm for the next failover.
        let (principal_roles, mirror_partner, secondaries) = match c.state {
            PoolState::Normal => (
                [Role::Primary, Role::PrimaryMirror],
                true,
                &[Role::Backup, Role::BackupMirror][..],
            ),
            PoolState::FailedOver => ([Role::Backup, Role::BackupMirror], true, &[][..]),
        };
        let mut problems = Vec::new();
        let mut out = json!({ "state": c.state.as_str(), "version": c.version });
        for db in DATABASES {
            // The serving copy, its mirror, and the log-shipping secondary.
            let mut serving = None;
            for role in principal_roles {
                if let Some(e) = self.entry(role, db).await {
                    if e["serving"] == true {
                        serving = Some(role);
                    }
                }
            }
            let Some(serving) = serving else {
                problems.push(format!("no copy of {} serves", db.name()));
                continue;
            };
            let mut copies = vec![serving];
            if mirror_partner {
                copies.extend(principal_roles.iter().copied().filter(|r| *r != serving));
            }
            copies.extend(secondaries);
            let summaries = self.summaries(db, &copies).await;
            let first = &summaries[0].1;
            let mut rows = Vec::new();
            for (role, s) in &summaries {
                let name = self.name(*role);
                match s {
                    Err(e) => problems.push(format!("{} on {name}: {e}", db.name())),
                    Ok(s) => {
                        if let Ok(f) = first {
                            for field in ["family_id", "fork_id", "last_lsn"] {
                                if field == "fork_id" && follows_fork(s, f) {
                                    continue;
                                }
                                if s["identity"][field] != f["identity"][field] {
                                    problems.push(format!(
                                        "{} on {name}: {field} {} differs from the serving copy's {}",
                                        db.name(),
                                        s["identity"][field],
                                        f["identity"][field]
                                    ));
                                }
                            }
                            for field in ["rooms", "compliance_records"] {
                                if s[field] != f[field] {
                                    problems.push(format!(
                                        "{} on {name}: {field} differ from the serving copy's",
                                        db.name()
                                    ));
                                }
                            }
                        }
                        rows.push(json!({
                            "server": name, "role": role.as_str(), "state": s["state"],
                            "family_id": s["identity"]["family_id"], "fork_id": s["identity"]["fork_id"],
                            "last_lsn": s["identity"]["last_lsn"],
                            "rooms": s["rooms"], "compliance_records": s["compliance_records"],
                        }));
                    }
                }
            }
            out[db.name()] = json!(rows);
        }
        // The active servers: where the databases serve, and serving (all
        // asked at once: each may still be reading the new configuration).
        let urls: Vec<String> = c
            .active
            .iter()
            .map(|a| {
                self.t()
                    .chat_servers
                    .iter()
                    .find(|s| s.name == a.name)
                    .map(|s| format!("http://{}", s.client))
                    .unwrap_or_default()
            })
            .collect();
        let serving = futures_util::future::join_all(urls.iter().map(|u| chat_serving(u))).await;
        let mut active = Vec::new();
        for ((a, url), serving) in c.active.iter().zip(&urls).zip(serving) {
            if a.data_center != c.serving_data_center && !c.active_across_data_centers {
                problems.push(format!(
                    "active server {} is in {}, the databases serve from {}",
                    a.name, a.data_center, c.serving_data_center
                ));
            }
            if !serving {
                problems.push(format!("active server {} does not serve ({url})", a.name));
            }
            active.push(json!({ "name": a.name, "data_center": a.data_center, "url": url, "serving": serving }));
        }
        if c.active.is_empty() {
            problems.push("no chat server is active".into());
        }
        out["active_servers"] = json!(active);
        self.print_verification(&out);
        if !problems.is_empty() {
            out["problems"] = json!(problems);
            bail!("verification failed: {}", problems.join("; "));
        }
        Ok(out)
    }

    /// Each copy's summary, waiting (up to 20 s) for mirrors and secondaries
    /// to reach the serving copy's last LSN.
    async fn summaries(&self, db: Database, roles: &[Role]) -> Vec<(Role, Result<Value, String>)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Each server counts its own copy: all at once.
            let asks = roles.iter().map(|&role| async move {
                let s = match self.server(role) {
                    Ok(s) => tokio::time::timeout(
                        Duration::from_secs(5),
                        s.ask(Request::Summary { db: db.wire() }),
                    )
                    .await
                    .map_err(|_| "no answer".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                    Err(e) => Err(e.to_string()),
                };
                (role, s)
            });
            let out = futures_util::future::join_all(asks).await;
            let lsn = |s: &Result<Value, String>| {
                s.as_ref().ok().map(|v| v["identity"]["last_lsn"].clone())
            };
            let first = lsn(&out[0].1);
            let caught_up = out.iter().all(|(_, s)| lsn(s) == first);
            // A copy that does not answer is a failure now; one that answers
            // behind may still be catching up.
            let all_answer = out.iter().all(|(_, s)| s.is_ok());
            if caught_up || !all_answer || Instant::now() > deadline {
                return out;
            }
            for &role in &roles[1..] {
                if let Ok(s) = self.server(role) {
                    let _ = s.ask(Request::LogshipRun { db: db.wire() }).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn print_verification(&self, v: &Value) {
        self.say(&format!(
            "verification (pool state {}, configuration version {}):",
            v["state"].as_str().unwrap_or(""),
            v["version"]
        ));
        for db in DATABASES {
            for row in v[db.name()].as_array().into_iter().flatten() {
                let rooms = row["rooms"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|r| {
                                format!("{}={}", r["name"].as_str().unwrap_or(""), r["messages"])
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                self.say(&format!(
                    "  {:<8} {:<6} {:<14} {:<10} family {} fork {} last LSN {} {}{}",
                    db.name(),
                    row["server"].as_str().unwrap_or(""),
                    row["role"].as_str().unwrap_or(""),
                    row["state"].as_str().unwrap_or(""),
                    short(&row["family_id"]),
                    short(&row["fork_id"]),
                    row["last_lsn"],
                    if rooms.is_empty() {
                        String::new()
                    } else {
                        format!("messages per room: {rooms}")
                    },
                    row["compliance_records"]
                        .as_i64()
                        .map(|n| format!("records {n}"))
                        .unwrap_or_default()
                ));
            }
        }
        for a in v["active_servers"].as_array().into_iter().flatten() {
            self.say(&format!(
                "  active   {:<6} {:<4} {} {}",
                a["name"].as_str().unwrap_or(""),
                a["data_center"].as_str().unwrap_or(""),
                a["url"].as_str().unwrap_or(""),
                if a["serving"] == true {
                    "serving"
                } else {
                    "NOT SERVING"
                }
            ));
        }
    }
}

/// Fault injection for drills and tests: with `PCHAT_DR_PAUSE=before:KEY`
/// (or `after:KEY`, once the step has acted but before the journal records
/// it) the runbook stops there and waits to be killed.
async fn pause_point(when: &str, step: Step) {
    let Ok(at) = std::env::var("PCHAT_DR_PAUSE") else {
        return;
    };
    if at == format!("{when}:{}", step.key()) {
        eprintln!("paused {at}");
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// Whether `copy` is on an older fork of `serving`'s history and holds
/// nothing past the point where the serving fork begins: a copy restored
/// from the failback's backup, which takes the new fork with its first
/// record.
fn follows_fork(copy: &Value, serving: &Value) -> bool {
    ends_where_fork_begins(&copy["identity"], &serving["identity"], &serving["forks"])
}

/// Whether `copy` (its `fork_id` and `last_lsn`) is on an older fork of a
/// history whose current fork is `serving`'s, and ends right before that
/// fork begins.
fn ends_where_fork_begins(copy: &Value, serving: &Value, forks: &Value) -> bool {
    let forks = forks.as_array().cloned().unwrap_or_default();
    let start = forks
        .iter()
        .find(|f| f["fork_id"] == serving["fork_id"])
        .and_then(|f| f["start_lsn"].as_i64());
    let known = forks.iter().any(|f| f["fork_id"] == copy["fork_id"]);
    known && start.is_some_and(|s| copy["last_lsn"].as_i64() == Some(s - 1))
}

/// Whether the copy of a database that `mirror` (a status entry) holds can
/// become the mirror of `principal`'s as it is: restoring, of the same
/// family, and holding exactly what the principal held when it was brought
/// online (a warm log-shipping secondary, restored as far as the backup).
fn ready_to_mirror(mirror: &Value, principal: &Value) -> bool {
    let restoring = mirror["state"] == "RESTORING" && mirror["mirroring"].is_null();
    let same =
        mirror["fork_id"] == principal["fork_id"] && mirror["last_lsn"] == principal["last_lsn"];
    restoring
        && mirror["family_id"] == principal["family_id"]
        && (same || ends_where_fork_begins(mirror, principal, &principal["forks"]))
}

fn restored_key(role: Role, db: Database) -> String {
    format!("restored-{}-{}", role.as_str(), db.name())
}

fn short(v: &Value) -> String {
    v.as_str()
        .map(|s| s.chars().take(8).collect())
        .unwrap_or_default()
}

fn active_names(c: &PoolConfig) -> Vec<String> {
    c.active.iter().map(|a| a.name.clone()).collect()
}

fn summary_line(note: &Value) -> String {
    match note {
        Value::Object(m) if m.contains_key("version") => {
            format!(" (pool configuration version {})", m["version"])
        }
        _ => String::new(),
    }
}

/// Whether a chat server says it serves (waiting up to 5 s: it follows a
/// change within a second).
async fn chat_serving(url: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let view = match client.get(format!("{url}/api/v1/pool")).send().await {
            Ok(r) => r.json::<Value>().await.ok(),
            Err(_) => None,
        };
        if view.is_some_and(|v| v["serving"] == true) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_on_the_older_fork_follows_only_from_the_fork_start() {
        let serving = json!({
            "identity": {"fork_id": "new", "last_lsn": 40},
            "forks": [{"fork_id": "old", "start_lsn": 1}, {"fork_id": "new", "start_lsn": 41}],
        });
        let copy = |fork: &str, last: i64| json!({"identity": {"fork_id": fork, "last_lsn": last}});
        assert!(follows_fork(&copy("old", 40), &serving));
        assert!(!follows_fork(&copy("old", 39), &serving), "behind");
        assert!(
            !follows_fork(&copy("other", 40), &serving),
            "not in the history"
        );
    }

    #[test]
    fn a_warm_secondary_is_paired_only_when_it_holds_what_the_backup_held() {
        // The backup, recovered at LSN 40: a new fork from 41.
        let backup = json!({
            "state": "ONLINE", "family_id": "f", "fork_id": "new", "last_lsn": 40,
            "forks": [{"fork_id": "old", "start_lsn": 1}, {"fork_id": "new", "start_lsn": 41}],
        });
        let spare = |state: &str, family: &str, fork: &str, last: i64| json!({"state": state, "family_id": family, "fork_id": fork, "last_lsn": last, "mirroring": null});
        assert!(ready_to_mirror(
            &spare("RESTORING", "f", "old", 40),
            &backup
        ));
        assert!(ready_to_mirror(
            &spare("RESTORING", "f", "new", 40),
            &backup
        ));
        for (why, s) in [
            ("behind", spare("RESTORING", "f", "old", 39)),
            ("ahead on the old fork", spare("RESTORING", "f", "old", 41)),
            ("online", spare("ONLINE", "f", "old", 40)),
            ("another family", spare("RESTORING", "g", "old", 40)),
            (
                "a fork not in the history",
                spare("RESTORING", "f", "x", 40),
            ),
        ] {
            assert!(!ready_to_mirror(&s, &backup), "{why}");
        }
        let mut paired = spare("RESTORING", "f", "old", 40);
        paired["mirroring"] = json!({"role": "mirror"});
        assert!(!ready_to_mirror(&paired, &backup), "mirroring already");
    }
}
