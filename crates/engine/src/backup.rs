//! Backups of a database, and restoring them (SQL Server's BACKUP DATABASE,
//! BACKUP LOG and RESTORE, which Lync's procedures use).
//!
//! A backup is one file:
//!
//! ```text
//! MAGIC "PCHATBK1" | header length (u32 LE) | header (JSON) | sections | SHA-256 of all before it
//! ```
//!
//! The header names the database, its family, its fork history, the LSN
//! range, the backup set's name and description, when and by which pchat it
//! was written, and the sections that follow. A **full** backup holds a
//! consistent snapshot of the database file taken while it serves (SQLite's
//! `VACUUM INTO`, one read transaction) and, for `mgc`, every uploaded file;
//! a **log** backup holds the log records since the previous log backup, so
//! log backups form a chain. A file is written under a temporary name,
//! fsynced, and renamed: a crash never leaves a file that looks complete.
//! Every restore reads and checks the whole file first, so a corrupt or
//! truncated one changes nothing.
//!
//! Restoring a full backup builds the new database beside the target and
//! renames it into place (the target is either as it was or restored, never
//! half); restoring a log backup applies its records in one transaction.
//! WITH RECOVERY brings the database ONLINE on a new fork; NORECOVERY leaves
//! it RESTORING and STANDBY read-only, ready for the next log backup.

use crate::database::{self, read_identity, read_state, DbState};
use crate::{ChatMachine, ComplianceMachine, Machine};
use pchat_domain::Lsn;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"PCHATBK1";
/// Version of the header layout this pchat writes and reads.
pub const FORMAT: u32 = 1;
/// Largest header accepted (a fork history is small).
const MAX_HEADER: u32 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    pub fork_id: String,
    pub start_lsn: Lsn,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// `db` (the database file), `log` (JSON lines of log records) or
    /// `file:SHA256` (an uploaded file).
    pub name: String,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: u32,
    pub kind: BackupKind,
    pub database: String,
    pub family_id: String,
    /// The database's fork when the backup was taken.
    pub fork_id: String,
    pub forks: Vec<Fork>,
    /// Full: 1 (the snapshot holds the whole log). Log: the first record.
    pub first_lsn: Lsn,
    /// The last LSN the backup holds.
    pub last_lsn: Lsn,
    pub name: String,
    pub description: String,
    pub created_at: i64,
    pub pchat_version: String,
    pub sections: Vec<Section>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not a pchat backup")]
    NotABackup(String),
    #[error("backup format {0} is not supported (this pchat reads format {FORMAT})")]
    UnsupportedFormat(u32),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("nothing to back up: the log ends at LSN {0}, already in a log backup")]
    NothingToBackUp(Lsn),
    #[error("{0}")]
    Refused(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
}

fn refused(msg: impl Into<String>) -> BackupError {
    BackupError::Refused(msg.into())
}

/// Counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

fn temp_beside(path: &Path, what: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}-{}", std::process::id()));
    path.with_file_name(name)
}

/// Removes what an earlier, interrupted run left beside `path` under a
/// temporary name (`temp_beside`): never complete, never used.
fn remove_leftovers(path: &Path, what: &str) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.{what}-", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Where a section's bytes come from when writing.
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Writes header and sections to `to` under a temporary name, with the
/// checksum, fsynced, then renamed into place.
fn write_backup(
    to: &Path,
    mut header: BackupHeader,
    parts: Vec<(String, Source)>,
) -> Result<BackupHeader, BackupError> {
    header.sections = parts
        .iter()
        .map(|(name, src)| {
            let len = match src {
                Source::File(p) => std::fs::metadata(p)?.len(),
                Source::Bytes(b) => b.len() as u64,
            };
            Ok(Section {
                name: name.clone(),
                len,
            })
        })
        .collect::<std::io::Result<_>>()?;
    let head = serde_json::to_vec(&header).map_err(|e| refused(e.to_string()))?;
    remove_leftovers(to, "tmp");
    let tmp = temp_beside(to, "tmp");
    let result = (|| -> Result<(), BackupError> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = Hashing {
            inner: std::io::BufWriter::new(file),
            hasher: Sha256::new(),
        };
        w.write_all(MAGIC)?;
        w.write_all(&(head.len() as u32).to_le_bytes())?;
        w.write_all(&head)?;
        for ((_, src), section) in parts.iter().zip(&header.sections) {
            let copied = match src {
                Source::File(p) => std::io::copy(&mut std::fs::File::open(p)?, &mut w)?,
                Source::Bytes(b) => {
                    w.write_all(b)?;
                    b.len() as u64
                }
            };
            if copied != section.len {
                return Err(refused(format!(
                    "section {} changed while it was being written",
                    section.name
                )));
            }
        }
        let digest = w.hasher.finalize();
        let mut inner = w.inner;
        inner.write_all(&digest)?;
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, to)?;
    sync_parent(to)?;
    Ok(header)
}

fn forks(conn: &Connection) -> rusqlite::Result<Vec<Fork>> {
    let mut stmt =
        conn.prepare("SELECT fork_id, start_lsn, created_at FROM forks ORDER BY start_lsn")?;
    let rows = stmt.query_map([], |r| {
        Ok(Fork {
            fork_id: r.get(0)?,
            start_lsn: r.get(1)?,
            created_at: r.get(2)?,
        })
    })?;
    rows.collect()
}

fn header_of(
    conn: &Connection,
    kind: BackupKind,
    name: &str,
    description: &str,
) -> Result<BackupHeader, BackupError> {
    let id = read_identity(conn)?.ok_or_else(|| refused("the database has no identity"))?;
    Ok(BackupHeader {
        format: FORMAT,
        kind,
        database: id.name,
        family_id: id.family_id,
        fork_id: id.fork_id,
        forks: forks(conn)?,
        first_lsn: 1,
        last_lsn: id.last_lsn,
        name: name.to_string(),
        description: description.to_string(),
        created_at: crate::now_ms(),
        pchat_version: env!("CARGO_PKG_VERSION").to_string(),
        sections: vec![],
    })
}

/// Uploaded files under `files_dir` (content-addressed `sha256/ab/cdef…`).
fn uploaded_files(files_dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let root = files_dir.join("sha256");
    if !root.exists() {
        return Ok(out);
    }
    for prefix in std::fs::read_dir(&root)? {
        let prefix = prefix?;
        if !prefix.file_type()?.is_dir() {
            continue;
        }
        let p = prefix.file_name().to_string_lossy().to_string();
        for f in std::fs::read_dir(prefix.path())? {
            let f = f?;
            let rest = f.file_name().to_string_lossy().to_string();
            let sha = format!("{p}{rest}");
            if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push((sha, f.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A full backup of the database file `db` (which may be serving), with the
/// uploaded files under `files_dir` when given, into `to`.
pub fn full_backup(
    db: &Path,
    files_dir: Option<&Path>,
    to: &Path,
    name: &str,
    description: &str,
) -> Result<BackupHeader, BackupError> {
    remove_leftovers(to, "snapshot");
    let snapshot = temp_beside(to, "snapshot");
    let result = (|| {
        // One read transaction: the copy is the database at one LSN.
        let conn = database::open_connection(db)?;
        conn.execute("VACUUM INTO ?1", [snapshot.to_string_lossy()])?;
        drop(conn);
        let snap = database::open_connection(&snapshot)?;
        let header = header_of(&snap, BackupKind::Full, name, description)?;
        drop(snap);
        let mut parts = vec![("db".to_string(), Source::File(snapshot.clone()))];
        if let Some(dir) = files_dir {
            for (sha, path) in uploaded_files(dir)? {
                parts.push((format!("file:{sha}"), Source::File(path)));
            }
        }
        write_backup(to, header, parts)
    })();
    let _ = std::fs::remove_file(&snapshot);
    let header = result?;
    record(db, &header, to)?;
    Ok(header)
}

/// Where the next log backup starts: right after the last one (or at the
/// first record).
fn next_log_start(conn: &Connection) -> rusqlite::Result<Lsn> {
    Ok(conn
        .query_row(
            "SELECT max(last_lsn) FROM backup_history WHERE kind = 'log'",
            [],
            |r| r.get::<_, Option<Lsn>>(0),
        )?
        .unwrap_or(0)
        + 1)
}

/// A log backup of `db`: its log records after the previous log backup.
pub fn log_backup(
    db: &Path,
    to: &Path,
    name: &str,
    description: &str,
) -> Result<BackupHeader, BackupError> {
    let mut conn = database::open_connection(db)?;
    // A read transaction: identity and log rows seen at one point.
    let tx = conn.transaction()?;
    let mut header = header_of(&tx, BackupKind::Log, name, description)?;
    let first = next_log_start(&tx)?;
    if first > header.last_lsn {
        return Err(BackupError::NothingToBackUp(header.last_lsn));
    }
    let mut lines = Vec::new();
    {
        let mut stmt = tx.prepare(
            "SELECT lsn, ts, origin, event FROM log WHERE lsn >= ?1 AND lsn <= ?2 ORDER BY lsn",
        )?;
        let mut rows = stmt.query(params![first, header.last_lsn])?;
        let mut expect = first;
        while let Some(r) = rows.next()? {
            let row = RawRecord {
                lsn: r.get(0)?,
                ts: r.get(1)?,
                origin: r.get(2)?,
                event: r.get(3)?,
            };
            if row.lsn != expect {
                return Err(refused(format!(
                    "the log lacks LSN {expect}: it was truncated, so the chain needs a new full backup"
                )));
            }
            expect += 1;
            serde_json::to_writer(&mut lines, &row).map_err(|e| refused(e.to_string()))?;
            lines.push(b'\n');
        }
    }
    tx.finish()?;
    drop(conn);
    header.first_lsn = first;
    let header = write_backup(to, header, vec![("log".into(), Source::Bytes(lines))])?;
    record(db, &header, to)?;
    Ok(header)
}

/// Notes a backup in the database's history (where log backups chain from).
fn record(db: &Path, h: &BackupHeader, to: &Path) -> Result<(), BackupError> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute(
        "INSERT INTO backup_history (kind, first_lsn, last_lsn, file, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            match h.kind {
                BackupKind::Full => "full",
                BackupKind::Log => "log",
            },
            h.first_lsn,
            h.last_lsn,
            to.display().to_string(),
            h.created_at
        ],
    )?;
    Ok(())
}

/// One log record as it is stored (the event kept as its JSON text, so a
/// log backup is byte-for-byte what the log holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RawRecord {
    lsn: Lsn,
    ts: i64,
    origin: String,
    event: String,
}

/// Reads the header of a backup file (without checking the rest).
fn read_header(r: &mut impl Read, what: &str) -> Result<(BackupHeader, Vec<u8>), BackupError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| BackupError::NotABackup(what.to_string()))?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup(what.to_string()));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|_| BackupError::Damaged("truncated in its header".into()))?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(BackupError::Damaged(format!("a header of {len} bytes")));
    }
    let mut head = vec![0u8; len as usize];
    r.read_exact(&mut head)
        .map_err(|_| BackupError::Damaged("truncated in its header".into()))?;
    let format: serde_json::Value = serde_json::from_slice(&head)
        .map_err(|e| BackupError::Damaged(format!("unreadable header: {e}")))?;
    if let Some(f) = format.get("format").and_then(|f| f.as_u64()) {
        if f != u64::from(FORMAT) {
            return Err(BackupError::UnsupportedFormat(f as u32));
        }
    }
    let header: BackupHeader = serde_json::from_slice(&head)
        .map_err(|e| BackupError::Damaged(format!("unreadable header: {e}")))?;
    let mut prefix = MAGIC.to_vec();
    prefix.extend_from_slice(&len.to_le_bytes());
    prefix.extend_from_slice(&head);
    Ok((header, prefix))
}

/// Checks a backup completely without restoring it: its header, that its
/// sections add up, and its checksum. Answers the header.
pub fn verify(path: &Path) -> Result<BackupHeader, BackupError> {
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let what = path.display().to_string();
    let (header, prefix) = read_header(&mut f, &what)?;
    let mut hasher = Sha256::new();
    hasher.update(&prefix);
    let body: u64 = header.sections.iter().map(|s| s.len).sum();
    let copied = std::io::copy(&mut (&mut f).take(body), &mut HashSink(&mut hasher))?;
    if copied != body {
        return Err(BackupError::Damaged(format!(
            "truncated: {copied} of {body} bytes of data"
        )));
    }
    let mut digest = [0u8; 32];
    f.read_exact(&mut digest)
        .map_err(|_| BackupError::Damaged("truncated: the checksum is missing".into()))?;
    let mut rest = [0u8; 1];
    if f.read(&mut rest)? != 0 {
        return Err(BackupError::Damaged("data after the checksum".into()));
    }
    if hasher.finalize().as_slice() != digest {
        return Err(BackupError::Damaged("the checksum does not match".into()));
    }
    check_header(&header)?;
    Ok(header)
}

fn check_header(h: &BackupHeader) -> Result<(), BackupError> {
    let bad = |m: &str| Err(BackupError::Damaged(m.to_string()));
    match h.kind {
        BackupKind::Full => {
            if h.sections.first().map(|s| s.name.as_str()) != Some("db") {
                return bad("a full backup without its database section");
            }
        }
        BackupKind::Log => {
            if h.sections.len() != 1 || h.sections[0].name != "log" {
                return bad("a log backup without its log section");
            }
            if h.first_lsn < 1 || h.first_lsn > h.last_lsn {
                return bad("a log backup with an empty or inverted LSN range");
            }
        }
    }
    if !["mgc", "mgccomp"].contains(&h.database.as_str()) {
        return bad("an unknown database name");
    }
    Ok(())
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What state a restore leaves the database in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recovery {
    /// ONLINE, on a new fork.
    Recovery,
    /// RESTORING: more log backups may follow.
    NoRecovery,
    /// STANDBY: read-only between log restores.
    Standby,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    pub replace: bool,
    pub recovery: Recovery,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub database: String,
    pub kind: BackupKind,
    /// LSNs applied from this backup (a full backup: its whole range).
    pub applied: u64,
    pub last_lsn: Lsn,
    pub state: DbState,
    pub fork_id: String,
}

/// Reads the sections of a verified backup in order.
fn sections(
    path: &Path,
    header: &BackupHeader,
    mut each: impl FnMut(&Section, &mut dyn Read) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    read_header(&mut f, &path.display().to_string())?;
    for s in &header.sections {
        let mut part = (&mut f).take(s.len);
        each(s, &mut part)?;
        // Whatever the reader left of this section is skipped.
        std::io::copy(&mut part, &mut std::io::sink())?;
    }
    Ok(())
}

/// Restores `backup` onto the database file `db` (a data directory's
/// `mgc.db` or `mgccomp.db`, not open by anyone), putting uploaded files of
/// a full `mgc` backup into `files_dir`.
pub fn restore(
    backup: &Path,
    db: &Path,
    files_dir: Option<&Path>,
    opts: RestoreOptions,
) -> Result<RestoreReport, BackupError> {
    let header = verify(backup)?;
    match header.kind {
        BackupKind::Full => restore_full(backup, &header, db, files_dir, opts),
        BackupKind::Log => match header.database.as_str() {
            "mgc" => restore_log::<ChatMachine>(backup, &header, db, opts),
            _ => restore_log::<ComplianceMachine>(backup, &header, db, opts),
        },
    }
}

/// The identity and state of an existing database file.
fn existing(db: &Path) -> Result<Option<(pchat_store::Identity, DbState)>, BackupError> {
    if !db.exists() {
        return Ok(None);
    }
    let conn = database::open_connection(db)?;
    let id = read_identity(&conn)?;
    Ok(match id {
        Some(id) => Some((id, read_state(&conn)?)),
        None => None,
    })
}

/// Sets the restored database's state; WITH RECOVERY starts a new fork.
fn set_state(conn: &Connection, recovery: Recovery) -> Result<(DbState, String), BackupError> {
    let last: Lsn = conn.query_row("SELECT last_lsn FROM identity WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    let state = match recovery {
        Recovery::Recovery => DbState::Online,
        Recovery::NoRecovery => DbState::Restoring,
        Recovery::Standby => DbState::Standby,
    };
    if recovery == Recovery::Recovery {
        let fork = database::random_id();
        conn.execute(
            "INSERT INTO forks (fork_id, start_lsn, created_at) VALUES (?1, ?2, ?3)",
            params![fork, last + 1, crate::now_ms()],
        )?;
        conn.execute("UPDATE identity SET fork_id = ?1 WHERE id = 1", [&fork])?;
    }
    conn.execute(
        "UPDATE identity SET state = ?1 WHERE id = 1",
        [state.as_str()],
    )?;
    let fork: String = conn.query_row("SELECT fork_id FROM identity WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    Ok((state, fork))
}

fn restore_full(
    backup: &Path,
    header: &BackupHeader,
    db: &Path,
    files_dir: Option<&Path>,
    opts: RestoreOptions,
) -> Result<RestoreReport, BackupError> {
    if let Some((id, state)) = existing(db)? {
        if id.name != header.database {
            return Err(refused(format!(
                "{} holds database {}, the backup is of {}",
                db.display(),
                id.name,
                header.database
            )));
        }
        if id.family_id != header.family_id && !opts.replace {
            return Err(refused(
                "the backup set holds a backup of a database other than the existing database (use --replace to overwrite it)",
            ));
        }
        if state == DbState::Online && !opts.replace {
            return Err(refused(format!(
                "{} is ONLINE at LSN {}: restoring over it discards it (use --replace)",
                header.database, id.last_lsn
            )));
        }
    }
    remove_leftovers(db, "restore");
    let tmp = temp_beside(db, "restore");
    let result = (|| -> Result<(DbState, String), BackupError> {
        sections(backup, header, |s, r| {
            if s.name == "db" {
                let mut out = std::fs::File::create(&tmp)?;
                std::io::copy(r, &mut out)?;
                out.sync_all()?;
            } else if let (Some(sha), Some(dir)) = (s.name.strip_prefix("file:"), files_dir) {
                put_file(dir, sha, r)?;
            }
            Ok(())
        })?;
        let conn = Connection::open(&tmp)?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        let tx = conn.unchecked_transaction()?;
        let out = set_state(&tx, opts.recovery)?;
        tx.commit()?;
        drop(conn);
        std::fs::File::open(&tmp)?.sync_all()?;
        Ok(out)
    })();
    let (state, fork_id) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Replace the target: empty its WAL into it first, so removing the WAL
    // loses nothing should the rename not happen.
    if db.exists() {
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        drop(conn);
    }
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::rename(&tmp, db)?;
    sync_parent(db)?;
    Ok(RestoreReport {
        database: header.database.clone(),
        kind: BackupKind::Full,
        applied: header.last_lsn.max(0) as u64,
        last_lsn: header.last_lsn,
        state,
        fork_id,
    })
}

/// Stores an uploaded file from a backup (content-addressed; checked).
fn put_file(dir: &Path, sha: &str, r: &mut dyn Read) -> Result<(), BackupError> {
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BackupError::Damaged(format!("a file named {sha}")));
    }
    let target = dir.join("sha256").join(&sha[..2]).join(&sha[2..]);
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)?;
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != sha {
        return Err(BackupError::Damaged(format!(
            "file {sha} does not match its name"
        )));
    }
    if target.exists() {
        return Ok(());
    }
    let parent = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    let tmp = temp_beside(&target, "tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    sync_parent(&target)?;
    Ok(())
}

fn restore_log<M: Machine>(
    backup: &Path,
    header: &BackupHeader,
    db: &Path,
    opts: RestoreOptions,
) -> Result<RestoreReport, BackupError> {
    let (id, state) = existing(db)?.ok_or_else(|| {
        refused(format!(
            "{} does not exist: restore a full backup first (with --norecovery or --standby)",
            db.display()
        ))
    })?;
    if id.name != header.database {
        return Err(refused(format!(
            "the log backup is of {}, the database is {}",
            header.database, id.name
        )));
    }
    if state == DbState::Online {
        return Err(refused(format!(
            "{} is ONLINE: a log backup restores only onto a database restored with --norecovery or --standby",
            id.name
        )));
    }
    if id.family_id != header.family_id {
        return Err(refused(format!(
            "the log backup (LSNs {}-{}) belongs to another database family ({}; the database is {})",
            header.first_lsn, header.last_lsn, header.family_id, id.family_id
        )));
    }
    if id.fork_id != header.fork_id {
        return Err(refused(format!(
            "the log backup (LSNs {}-{}) is of fork {}, the database is on fork {}",
            header.first_lsn, header.last_lsn, header.fork_id, id.fork_id
        )));
    }
    if header.first_lsn > id.last_lsn + 1 {
        return Err(refused(format!(
            "the log backup starts at LSN {}, the database ends at LSN {}: LSNs {}-{} are missing (restore the log backups between)",
            header.first_lsn,
            id.last_lsn,
            id.last_lsn + 1,
            header.first_lsn - 1
        )));
    }
    let mut records = Vec::new();
    sections(backup, header, |_, r| {
        for line in std::io::BufReader::new(r).lines() {
            let rec: RawRecord = serde_json::from_str(&line?)
                .map_err(|e| BackupError::Damaged(format!("a log record: {e}")))?;
            records.push(rec);
        }
        Ok(())
    })?;
    use std::io::BufRead;
    let expected = (header.last_lsn - header.first_lsn + 1) as usize;
    if records.len() != expected
        || records
            .iter()
            .enumerate()
            .any(|(i, r)| r.lsn != header.first_lsn + i as i64)
    {
        return Err(BackupError::Damaged(
            "its records do not match its LSN range".into(),
        ));
    }
    let mut conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let tx = conn.transaction()?;
    let mut applied = 0u64;
    for rec in &records {
        if rec.lsn <= id.last_lsn {
            // Already here: it must be the very same record.
            let have: Option<(i64, String, String)> = tx
                .query_row(
                    "SELECT ts, origin, event FROM log WHERE lsn = ?1",
                    [rec.lsn],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if have.as_ref() != Some(&(rec.ts, rec.origin.clone(), rec.event.clone())) {
                return Err(refused(format!(
                    "the log backup overlaps the database inconsistently at LSN {}",
                    rec.lsn
                )));
            }
            continue;
        }
        let event: M::Event = serde_json::from_str(&rec.event)
            .map_err(|e| BackupError::Damaged(format!("LSN {}: {e}", rec.lsn)))?;
        tx.execute(
            "INSERT INTO log (lsn, ts, origin, event) VALUES (?1, ?2, ?3, ?4)",
            params![rec.lsn, rec.ts, rec.origin, rec.event],
        )?;
        M::apply(&tx, rec.lsn, &event)?;
        applied += 1;
    }
    let last = id.last_lsn.max(header.last_lsn);
    tx.execute("UPDATE identity SET last_lsn = ?1 WHERE id = 1", [last])?;
    let (state, fork_id) = set_state(&tx, opts.recovery)?;
    tx.commit()?;
    Ok(RestoreReport {
        database: id.name,
        kind: BackupKind::Log,
        applied,
        last_lsn: last,
        state,
        fork_id,
    })
}

/// A backup found in a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Found {
    pub file: String,
    pub header: Option<BackupHeader>,
    /// Why the file is not a usable backup.
    pub error: Option<String>,
}

/// Every file of `dir` checked as a backup (sorted by database, family,
/// kind and LSN).
pub fn scan(dir: &Path) -> Result<Vec<Found>, BackupError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let file = path.display().to_string();
        match verify(&path) {
            Ok(h) => out.push(Found {
                file,
                header: Some(h),
                error: None,
            }),
            Err(BackupError::NotABackup(_)) => {}
            Err(e) => out.push(Found {
                file,
                header: None,
                error: Some(e.to_string()),
            }),
        }
    }
    out.sort_by(|a, b| {
        let key = |f: &Found| {
            f.header.as_ref().map(|h| {
                (
                    h.database.clone(),
                    h.family_id.clone(),
                    h.kind == BackupKind::Log,
                    h.first_lsn,
                    h.last_lsn,
                )
            })
        };
        key(a).cmp(&key(b)).then(a.file.cmp(&b.file))
    });
    Ok(out)
}

/// Gaps in the log chains of scanned backups: (database, family, after LSN,
/// next first LSN).
pub fn chain_gaps(found: &[Found]) -> Vec<(String, String, Lsn, Lsn)> {
    let mut gaps = Vec::new();
    let mut prev: Option<&BackupHeader> = None;
    for h in found
        .iter()
        .filter_map(|f| f.header.as_ref())
        .filter(|h| h.kind == BackupKind::Log)
    {
        if let Some(p) = prev.filter(|p| p.database == h.database && p.family_id == h.family_id) {
            if h.first_lsn > p.last_lsn + 1 {
                gaps.push((
                    h.database.clone(),
                    h.family_id.clone(),
                    p.last_lsn,
                    h.first_lsn,
                ));
            }
        }
        prev = Some(h);
    }
    gaps
}
