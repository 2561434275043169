//! `pchat admin compliance export`: conversations out of `mgccomp` into
//! files, once or continuously.
//!
//! Continuous export is exactly-once across crashes. Each pass writes the
//! records after the job's mark into a new directory named by their id range
//! (`JOB-FIRST-LAST`): written under a temporary name, fsynced, renamed, the
//! parent fsynced; only then does the job's mark in `mgccomp` move (a
//! compare-and-set, so two exporters never claim the same records). A crash
//! before the rename leaves a temporary directory, removed on the next run;
//! a crash after it leaves a complete directory whose range starts right
//! after the mark, which the next run recognises and claims instead of
//! exporting again. So every record lands in exactly one directory.

use super::{print, with, Conn, Target};
use anyhow::{bail, Context};
use pchat_api::{
    CategoriesResponse, ComplianceRecordsResponse, MarkResponse, RoomsResponse, UsersResponse,
};
use pchat_domain::compliance::export::{self, Exported, Names, Options, RoomDetails, UserInfo};
use pchat_domain::Timestamp;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum ComplianceCmd {
    /// Write compliance records as conversations (XML, Lync's compliance
    /// adapter layout, schema in docs/compliance.xsd) or JSON Lines.
    Export(ExportArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Xml,
    Jsonl,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    target: Target,
    /// Directory the exports go to (one subdirectory per export).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "xml")]
    format: Format,
    /// Records from this time (2026-11-26, RFC 3339, or ms since the epoch).
    #[arg(long, value_parser = super::parse_time, conflicts_with_all = ["new_only", "every"])]
    since: Option<Timestamp>,
    /// Records up to this time, inclusive.
    #[arg(long, value_parser = super::parse_time, conflicts_with_all = ["new_only", "every"])]
    until: Option<Timestamp>,
    /// One file per room (and, for JSON Lines, pool.jsonl for records without a room).
    #[arg(long)]
    per_room: bool,
    /// Add the room's description, category and privacy.
    #[arg(long)]
    room_details: bool,
    /// Add the user's display name.
    #[arg(long)]
    user_details: bool,
    /// Export what is new since this job's last run, then mark it exported.
    #[arg(long)]
    new_only: bool,
    /// Run continuously: a --new-only pass now and then every DURATION (15m, 1h).
    #[arg(long, value_parser = crate::parse_duration)]
    every: Option<std::time::Duration>,
    /// The continuous job's name (its mark is kept in mgccomp).
    #[arg(long, default_value = "default")]
    job: String,
}

/// Records per export directory.
const BATCH: usize = 50_000;
/// Records per API page.
const PAGE: u32 = 10_000;

#[derive(Debug, Serialize)]
pub struct Batch {
    pub dir: String,
    pub first: i64,
    pub last: i64,
    pub records: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub job: Option<String>,
    pub batches: Vec<Batch>,
    /// Directories a previous, interrupted run had written, now claimed.
    pub recovered: Vec<String>,
    /// The job's mark after the run.
    pub through: Option<i64>,
}

pub async fn run(cmd: ComplianceCmd) -> anyhow::Result<()> {
    let ComplianceCmd::Export(args) = cmd;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let continuous = args.every.is_some() || args.new_only;
    let args = &args;
    loop {
        let report = with(&args.target, |c| async move {
            if continuous {
                incremental(&c, args).await
            } else {
                once(&c, args).await
            }
        })
        .await?;
        print(&args.target, &report, || human(&report))?;
        let Some(every) = args.every else {
            return Ok(());
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn human(r: &Report) -> String {
    let mut lines: Vec<String> = r
        .recovered
        .iter()
        .map(|d| format!("claimed {d} (written by an interrupted run)"))
        .collect();
    for b in &r.batches {
        lines.push(format!(
            "exported {} records (ids {}-{}) to {}",
            b.records, b.first, b.last, b.dir
        ));
    }
    if r.batches.is_empty() && r.recovered.is_empty() {
        lines.push("nothing new to export".into());
    }
    lines.join("\n")
}

async fn page(
    c: &Conn,
    after: i64,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> anyhow::Result<ComplianceRecordsResponse> {
    let mut q = format!("/api/v1/compliance/records?after={after}&limit={PAGE}");
    if let Some(s) = since {
        q.push_str(&format!("&since={s}"));
    }
    if let Some(u) = until {
        q.push_str(&format!("&until={u}"));
    }
    c.call(Method::GET, &q, None).await
}

/// Up to `BATCH` records after `after`.
async fn batch(
    c: &Conn,
    after: i64,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> anyhow::Result<Vec<Exported>> {
    let mut out = Vec::new();
    let mut after = after;
    while out.len() < BATCH {
        let p = page(c, after, since, until).await?;
        let full = p.next_after.is_some();
        for r in p.records {
            after = r.id;
            out.push(Exported {
                id: r.id,
                record: r.record,
            });
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

async fn names(c: &Conn) -> anyhow::Result<Names> {
    let users: UsersResponse = c.call(Method::GET, "/api/v1/users", None).await?;
    let rooms: RoomsResponse = c.call(Method::GET, "/api/v1/rooms", None).await?;
    let cats: CategoriesResponse = c.call(Method::GET, "/api/v1/categories", None).await?;
    let mut n = Names::default();
    for u in users.users {
        n.users.insert(
            u.id,
            UserInfo {
                name: u.name,
                display_name: u.display_name,
            },
        );
    }
    for r in rooms.rooms {
        let category = cats
            .categories
            .iter()
            .find(|c| c.id == r.category)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        n.rooms.insert(
            r.id,
            RoomDetails {
                name: r.name,
                description: r.description,
                category,
                privacy: r.privacy.as_str().into(),
            },
        );
    }
    Ok(n)
}

fn options(a: &ExportArgs) -> Options {
    Options {
        room_details: a.room_details,
        user_details: a.user_details,
    }
}

/// The files of one export: (file name, contents).
fn render(records: &[Exported], names: &Names, a: &ExportArgs) -> Vec<(String, String)> {
    let o = options(a);
    let rooms = export::conversations(records);
    match (a.format, a.per_room) {
        (Format::Xml, false) => vec![(
            "conversations.xml".into(),
            export::xml(rooms.iter().map(|(r, l)| (*r, l.as_slice())), names, o),
        )],
        (Format::Xml, true) => rooms
            .iter()
            .map(|(r, l)| {
                (
                    format!("room-{r}.xml"),
                    export::xml([(*r, l.as_slice())], names, o),
                )
            })
            .collect(),
        (Format::Jsonl, false) => vec![("records.jsonl".into(), export::jsonl(records, names, o))],
        (Format::Jsonl, true) => {
            let mut files: Vec<(String, String)> = rooms
                .iter()
                .map(|(r, l)| {
                    (
                        format!("room-{r}.jsonl"),
                        export::jsonl(l.iter().copied(), names, o),
                    )
                })
                .collect();
            let pool: Vec<&Exported> = records.iter().filter(|e| e.record.room.is_none()).collect();
            if !pool.is_empty() {
                files.push(("pool.jsonl".into(), export::jsonl(pool, names, o)));
            }
            files
        }
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Writes the files into `out/name` all at once: a crash leaves either the
/// whole directory or only a `.tmp-` one.
fn write_dir(out: &Path, name: &str, files: &[(String, String)]) -> anyhow::Result<PathBuf> {
    let target = out.join(name);
    if target.exists() {
        bail!("{} exists already; nothing was written", target.display());
    }
    let tmp = out.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    for (file, contents) in files {
        let path = tmp.join(file);
        let mut f = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::io::Write::write_all(&mut f, contents.as_bytes())?;
        f.sync_all()?;
    }
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))?;
    sync_dir(out)?;
    Ok(target)
}

async fn once(c: &Conn, a: &ExportArgs) -> anyhow::Result<Report> {
    let names = names(c).await?;
    let mut batches = Vec::new();
    let mut after = 0;
    loop {
        let records = batch(c, after, a.since, a.until).await?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            break;
        };
        let (first, last) = (first.id, last.id);
        let name = format!("export-{first:012}-{last:012}");
        let dir = write_dir(&a.out, &name, &render(&records, &names, a))?;
        batches.push(Batch {
            dir: dir.display().to_string(),
            first,
            last,
            records: records.len(),
        });
        after = last;
    }
    Ok(Report {
        job: None,
        batches,
        recovered: vec![],
        through: None,
    })
}

async fn mark(c: &Conn, job: &str) -> anyhow::Result<i64> {
    let m: MarkResponse = c
        .call(
            Method::GET,
            &format!("/api/v1/compliance/marks/{job}"),
            None,
        )
        .await?;
    Ok(m.through)
}

async fn move_mark(c: &Conn, job: &str, from: i64, through: i64) -> anyhow::Result<()> {
    let m: MarkResponse = c
        .call(
            Method::POST,
            &format!("/api/v1/compliance/marks/{job}"),
            Some(json!({ "from": from, "through": through })),
        )
        .await?;
    if m.through != through {
        bail!(
            "another exporter of job '{job}' moved its mark (to {}); this run stops without claiming {}-{through}",
            m.through,
            from + 1
        );
    }
    Ok(())
}

/// `JOB-FIRST-LAST` directories of the job in `out`.
fn job_dirs(out: &Path, job: &str) -> anyhow::Result<Vec<(i64, i64, String)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        let Some(range) = name.strip_prefix(&format!("{job}-")) else {
            continue;
        };
        let mut parts = range.split('-');
        if let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                found.push((a, b, name));
            }
        }
    }
    Ok(found)
}

async fn incremental(c: &Conn, a: &ExportArgs) -> anyhow::Result<Report> {
    let job = &a.job;
    if !pchat_engine::compliance::valid_job(job) {
        bail!("--job must be 1 to 64 letters, digits, '-' or '_'");
    }
    // Leftovers of a run that died before renaming: never complete, never claimed.
    for entry in std::fs::read_dir(&a.out)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(&format!(".tmp-{job}-")) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    // Directories renamed into place whose mark never moved: claim them.
    let mut recovered = Vec::new();
    let mut through = mark(c, job).await?;
    let dirs = job_dirs(&a.out, job)?;
    while let Some((_, last, name)) = dirs.iter().find(|(first, _, _)| *first == through + 1) {
        move_mark(c, job, through, *last).await?;
        recovered.push(name.clone());
        through = *last;
    }
    let names = names(c).await?;
    let mut batches = Vec::new();
    loop {
        let records = batch(c, through, None, None).await?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            break;
        };
        let (first, last) = (first.id, last.id);
        let name = format!("{job}-{first:012}-{last:012}");
        let dir = write_dir(&a.out, &name, &render(&records, &names, a))?;
        if std::env::var_os("PCHAT_TEST_CRASH_AFTER_EXPORT_RENAME").is_some() {
            // For the crash test: die between the rename and the mark.
            std::process::abort();
        }
        move_mark(c, job, through, last).await?;
        batches.push(Batch {
            dir: dir.display().to_string(),
            first,
            last,
            records: records.len(),
        });
        through = last;
    }
    Ok(Report {
        job: Some(job.clone()),
        batches,
        recovered,
        through: Some(through),
    })
}
