//! Backups of a database, and restoring them (SQL Server's BACKUP DATABASE,
//! BACKUP LOG and RESTORE, which Lync's procedures use).
//!
//! A backup is one file:
//!
//! ```text
//! sections | header (JSON) | header length (u32 LE) | MAGIC "PCHATBK1" | BLAKE3 of all before it
//! ```
//!
//! The header comes last so that a full backup's first section, the
//! database, is written straight into the file by SQLite's online backup
//! (one write of the data, not two).
//! The header names the database, its family, its fork history, the LSN
//! range, the backup set's name and description, when and by which pchat it
//! was written, and the sections that follow. A **full** backup holds a
//! consistent snapshot of the database file taken while it serves (SQLite's
//! online backup, one read transaction) and, for `mgc`, every uploaded file;
//! a **log** backup holds the log records since the previous log backup, so
//! log backups form a chain. A file is written under a temporary name,
//! fsynced, and renamed: a crash never leaves a file that looks complete.
//! A restore checks the checksum as it reads, before anything it read
//! takes effect, so a corrupt or truncated file changes nothing.
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

pub use pchat_store::{Fork, RawRecord, Recovery};

pub const MAGIC: &[u8; 8] = b"PCHATBK1";
/// Version of the header layout this pchat writes and reads.
pub const FORMAT: u32 = 1;
/// Largest header accepted (a fork history is small).
pub const MAX_HEADER: u32 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Log,
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
    #[error("{0} is not a complete pchat backup: {1}")]
    NotABackup(String, &'static str),
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

/// Makes the directory entry of `path` durable (after a create or rename).
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
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

/// Whether a file name is a temporary one: `temp_beside`'s, or a dot name
/// (the log-shipping copy job's). Such a file is still being written, or
/// was left by a writer that stopped before renaming it, and may be
/// complete: it is never a published backup.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        || name
            .rsplit_once('.')
            .and_then(|(_, ext)| ext.split_once('-'))
            .is_some_and(|(what, pid)| {
                ["tmp", "restore"].contains(&what)
                    && !pid.is_empty()
                    && pid.bytes().all(|b| b.is_ascii_digit())
            })
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

/// Finishes a backup whose sections are already in `tmp`: appends the
/// header, its length, the magic and the checksum over everything, fsyncs,
/// and renames it to `to`.
fn seal(
    tmp: &Path,
    to: &Path,
    mut header: BackupHeader,
    sections: Vec<Section>,
) -> Result<BackupHeader, BackupError> {
    header.sections = sections;
    let head = serde_json::to_vec(&header).map_err(|e| refused(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new().append(true).open(tmp)?;
    let expected: u64 = header.sections.iter().map(|s| s.len).sum();
    if f.metadata()?.len() != expected {
        return Err(refused(
            "the backup's data changed while it was being written",
        ));
    }
    f.write_all(&head)?;
    f.write_all(&(head.len() as u32).to_le_bytes())?;
    f.write_all(MAGIC)?;
    // Everything just written is in the page cache: hashing it back is cheap.
    let mut hasher = blake3::Hasher::new();
    std::io::copy(
        &mut std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(tmp)?),
        &mut hasher,
    )?;
    f.write_all(hasher.finalize().as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, to)?;
    sync_parent(to)?;
    Ok(header)
}

/// Runs `work`, which writes the existing file `path`, while another thread
/// flushes the file to disk over and over: the disk writes as the data comes
/// instead of all of it at the final fsync (the kernel would wait until
/// a tenth of memory is dirty before it starts on its own).
fn syncing_while<T>(
    path: &Path,
    work: impl FnOnce() -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flusher = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Only a head start: the caller's own fsync is what counts.
                let _ = file.sync_data();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let result = work();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flusher.join();
    result
}

/// Appends a file's bytes; answers how many.
fn append(out: &mut std::fs::File, from: &Path) -> std::io::Result<u64> {
    std::io::copy(&mut std::fs::File::open(from)?, out)
}

pub(crate) fn forks(conn: &Connection) -> rusqlite::Result<Vec<Fork>> {
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

pub(crate) fn header_of(
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
pub(crate) fn uploaded_files(files_dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
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
            if pchat_store::blob_path(files_dir, &sha).as_deref() == Some(f.path().as_path()) {
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
    remove_leftovers(to, "tmp");
    let tmp = temp_beside(to, "tmp");
    let result = (|| {
        // SQLite's online backup, in one step: it holds one read
        // transaction for the whole copy, so the copy is the database at one
        // LSN while writers go on (WAL); it copies pages, straight into the
        // backup file.
        let src = database::open_connection(db)?;
        // Pages read through a memory map instead of one read() each.
        src.pragma_update(None, "mmap_size", 1i64 << 40)?;
        std::fs::File::create(&tmp)?;
        let mut dst = Connection::open(&tmp)?;
        // A new file has nothing to roll back, and `seal` fsyncs it once at
        // the end: no journal, no syncs of SQLite's own while copying.
        dst.pragma_update(None, "journal_mode", "OFF")?;
        dst.pragma_update(None, "synchronous", "OFF")?;
        syncing_while(&tmp, || {
            let b = rusqlite::backup::Backup::new(&src, &mut dst)?;
            b.step(-1)?;
            Ok(())
        })?;
        // A plain (rollback-journal) file: nothing beside it (-wal, -shm)
        // that a later reader would create or need.
        dst.pragma_update(None, "journal_mode", "DELETE")?;
        drop(dst);
        drop(src);
        let header = {
            let snap = database::open_connection(&tmp)?;
            header_of(&snap, BackupKind::Full, name, description)?
        };
        let mut sections = vec![Section {
            name: "db".into(),
            len: std::fs::metadata(&tmp)?.len(),
        }];
        if let Some(dir) = files_dir {
            let mut out = std::fs::OpenOptions::new().append(true).open(&tmp)?;
            for (sha, path) in uploaded_files(dir)? {
                let len = append(&mut out, &path)?;
                sections.push(Section {
                    name: format!("file:{sha}"),
                    len,
                });
            }
        }
        seal(&tmp, to, header, sections)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let header = result?;
    record(db, &header, to)?;
    Ok(header)
}

/// Where the next log backup starts: right after the last one (or at the
/// first record).
fn next_log_start(conn: &Connection) -> rusqlite::Result<Lsn> {
    Ok(conn
        .query_row(
            "SELECT max(last_lsn) FROM backup_history WHERE kind IN ('log', 'chain')",
            [],
            |r| r.get::<_, Option<Lsn>>(0),
        )?
        .unwrap_or(0)
        + 1)
}

/// A log backup of `db`: its log records after the previous log backup,
/// and (for `mgc`, from `files_dir`) the uploaded files they post, so a
/// log-shipping secondary has them too.
pub fn log_backup(
    db: &Path,
    to: &Path,
    name: &str,
    description: &str,
    files_dir: Option<&Path>,
) -> Result<BackupHeader, BackupError> {
    log_backup_through(db, to, name, description, files_dir, None)
}

/// `log_backup`, of the records through `upto` at most (log shipping on a
/// synchronous principal: what the mirror has hardened).
pub fn log_backup_through(
    db: &Path,
    to: &Path,
    name: &str,
    description: &str,
    files_dir: Option<&Path>,
    upto: Option<Lsn>,
) -> Result<BackupHeader, BackupError> {
    let mut conn = database::open_connection(db)?;
    // A read transaction: identity and log rows seen at one point.
    let tx = conn.transaction()?;
    let mut header = header_of(&tx, BackupKind::Log, name, description)?;
    if let Some(upto) = upto {
        header.last_lsn = header.last_lsn.min(upto);
    }
    let first = next_log_start(&tx)?;
    if first > header.last_lsn {
        return Err(BackupError::NothingToBackUp(header.last_lsn));
    }
    let mut lines = Vec::new();
    let mut files: Vec<String> = Vec::new();
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
            if files_dir.is_some() {
                files.extend(posted_files(&row.event));
            }
            serde_json::to_writer(&mut lines, &row).map_err(|e| refused(e.to_string()))?;
            lines.push(b'\n');
        }
    }
    tx.finish()?;
    drop(conn);
    header.first_lsn = first;
    remove_leftovers(to, "tmp");
    let tmp = temp_beside(to, "tmp");
    let written = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&lines)?;
        let mut sections = vec![Section {
            name: "log".into(),
            len: lines.len() as u64,
        }];
        files.sort();
        files.dedup();
        for sha in files {
            match files_dir.and_then(|d| pchat_store::blob_path(d, &sha)) {
                Some(path) if path.exists() => sections.push(Section {
                    len: append(&mut out, &path)?,
                    name: format!("file:{sha}"),
                }),
                _ => {
                    tracing::warn!(%sha, "a posted file is missing: the log backup goes without it")
                }
            }
        }
        drop(out);
        seal(&tmp, to, header, sections)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let header = written?;
    record(db, &header, to)?;
    Ok(header)
}

/// A busy handler that retries every 100 µs, for 10 s.
fn retry_soon(attempt: i32) -> bool {
    std::thread::sleep(std::time::Duration::from_micros(100));
    attempt < 100_000
}

/// Notes a backup in the database's history (where log backups chain from).
fn record(db: &Path, h: &BackupHeader, to: &Path) -> Result<(), BackupError> {
    let conn = Connection::open(db)?;
    // A log-shipping job records every file it ships, and its next file
    // waits for this small commit. Under load the server's writer holds the
    // write lock nearly all the time, releasing it for microseconds between
    // batches: SQLite's own busy wait (sleeps growing to 100 ms) found it
    // free only after 0.1-1.8 s here. Retry every 100 µs instead (10 s in
    // all), and leave the checkpoints to that writer.
    conn.busy_handler(Some(retry_soon))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
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

/// The uploaded files an `mgc` log record posts (a cheap look first: most
/// records post none).
pub fn posted_files(event: &str) -> Vec<String> {
    if !event.contains("\"sha256\"") {
        return Vec::new();
    }
    serde_json::from_str::<pchat_domain::Event>(event)
        .map(|e| e.files().into_iter().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The trailer: header length (4) + magic (8) + checksum (32).
const TRAILER: u64 = 44;

/// Reads the header of a backup file (cheap: the checksum over the data is
/// checked by `verify`, and by `restore` as it reads).
pub fn read_header(path: &Path) -> Result<BackupHeader, BackupError> {
    use std::io::{Seek, SeekFrom};
    let what = path.display().to_string();
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len < TRAILER {
        return Err(BackupError::NotABackup(what, "it is too short"));
    }
    f.seek(SeekFrom::Start(len - TRAILER))?;
    let mut trailer = [0u8; TRAILER as usize];
    f.read_exact(&mut trailer)?;
    if &trailer[4..12] != MAGIC {
        return Err(BackupError::NotABackup(
            what,
            "it lacks the pchat trailer (truncated, or another kind of file)",
        ));
    }
    let hl = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if hl > MAX_HEADER || u64::from(hl) + TRAILER > len {
        return Err(BackupError::Damaged(format!("a header of {hl} bytes")));
    }
    f.seek(SeekFrom::Start(len - TRAILER - u64::from(hl)))?;
    let mut head = vec![0u8; hl as usize];
    f.read_exact(&mut head)?;
    let format: serde_json::Value = serde_json::from_slice(&head)
        .map_err(|e| BackupError::Damaged(format!("unreadable header: {e}")))?;
    if let Some(v) = format.get("format").and_then(|v| v.as_u64()) {
        if v != u64::from(FORMAT) {
            return Err(BackupError::UnsupportedFormat(v as u32));
        }
    }
    let header: BackupHeader = serde_json::from_slice(&head)
        .map_err(|e| BackupError::Damaged(format!("unreadable header: {e}")))?;
    let body: u64 = header.sections.iter().map(|s| s.len).sum();
    if body != len - TRAILER - u64::from(hl) {
        return Err(BackupError::Damaged(format!(
            "its sections hold {body} bytes, the file {} (truncated or altered)",
            len - TRAILER - u64::from(hl)
        )));
    }
    Ok(header)
}

/// Checks a backup completely without restoring it: its trailer and header,
/// that its sections add up, and its checksum. Answers the header.
pub fn verify(path: &Path) -> Result<BackupHeader, BackupError> {
    let header = read_header(path)?;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    std::io::copy(&mut (&mut r).take(len - 32), &mut hasher)?;
    let mut digest = [0u8; 32];
    r.read_exact(&mut digest)?;
    if hasher.finalize() != blake3::Hash::from_bytes(digest) {
        return Err(BackupError::Damaged("the checksum does not match".into()));
    }
    check_header(&header)?;
    Ok(header)
}

pub(crate) fn check_header(h: &BackupHeader) -> Result<(), BackupError> {
    let bad = |m: &str| Err(BackupError::Damaged(m.to_string()));
    match h.kind {
        BackupKind::Full => {
            if h.sections.first().map(|s| s.name.as_str()) != Some("db") {
                return bad("a full backup without its database section");
            }
        }
        BackupKind::Log => {
            // The log, then the files its records post.
            if h.sections.first().map(|s| s.name.as_str()) != Some("log")
                || h.sections[1..].iter().any(|s| !s.name.starts_with("file:"))
            {
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

/// What state a restore leaves the database in.

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

/// Hashes what is read through it.
pub(crate) struct HashReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: blake3::Hasher,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads the sections of a backup in order, checking the checksum over the
/// whole file as it goes: the caller must not make anything it wrote from
/// them take effect unless this returns Ok.
fn sections(
    path: &Path,
    header: &BackupHeader,
    each: impl FnMut(&Section, &mut dyn Read) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut r = HashReader {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        hasher: blake3::Hasher::new(),
    };
    read_sections(&mut r, header, each)?;
    let body: u64 = header.sections.iter().map(|s| s.len).sum();
    // The header, its length and the magic are under the checksum too.
    std::io::copy(&mut (&mut r).take(len - 32 - body), &mut std::io::sink())?;
    check_digest(r)
}

/// Hands each section of `header` to `each`, in order, as `r` yields them.
pub(crate) fn read_sections<R: Read>(
    r: &mut HashReader<R>,
    header: &BackupHeader,
    mut each: impl FnMut(&Section, &mut dyn Read) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    for s in &header.sections {
        let mut part = (&mut *r).take(s.len);
        each(s, &mut part)?;
        // Whatever the reader left of this section is skipped.
        std::io::copy(&mut part, &mut std::io::sink())?;
        if part.limit() > 0 {
            return Err(BackupError::Damaged(format!(
                "it ends inside section {}",
                s.name
            )));
        }
    }
    Ok(())
}

/// Reads the 32-byte checksum that follows what `r` hashed, and compares.
pub(crate) fn check_digest<R: Read>(mut r: HashReader<R>) -> Result<(), BackupError> {
    let mut digest = [0u8; 32];
    r.inner.read_exact(&mut digest)?;
    if r.hasher.finalize() != blake3::Hash::from_bytes(digest) {
        return Err(BackupError::Damaged("the checksum does not match".into()));
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
    // The header now; the checksum while the data is read, before anything
    // read takes effect (a full restore builds beside the target, a log
    // restore parses every record before its transaction).
    let header = read_header(backup)?;
    check_header(&header)?;
    match header.kind {
        BackupKind::Full => restore_full(backup, &header, db, files_dir, opts),
        BackupKind::Log => restore_log(backup, &header, db, files_dir, opts),
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
    refuse_replacing(db, header, opts)?;
    install_full(db, header, opts, &backup.display().to_string(), |tmp| {
        sections(backup, header, |s, r| write_section(tmp, files_dir, s, r))
    })
}

/// Refuses a full restore over `db` that would discard another database,
/// or (without `replace`) one that is in use.
pub(crate) fn refuse_replacing(
    db: &Path,
    header: &BackupHeader,
    opts: RestoreOptions,
) -> Result<(), BackupError> {
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
        if matches!(state, DbState::Online | DbState::Offline) && !opts.replace {
            return Err(refused(format!(
                "{} is {} at LSN {}: restoring over it discards it (use --replace)",
                header.database,
                state.as_str(),
                id.last_lsn
            )));
        }
    }
    Ok(())
}

/// The WAL that SQLite keeps beside a database file.
pub(crate) fn wal_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push("-wal");
    PathBuf::from(p)
}

/// Writes one section of a full backup (or copy) being restored into the
/// new database `tmp`: the database file, its WAL, or an uploaded file.
pub(crate) fn write_section(
    tmp: &Path,
    files_dir: Option<&Path>,
    s: &Section,
    r: &mut dyn Read,
) -> Result<(), BackupError> {
    let target = match s.name.as_str() {
        "db" => tmp.to_path_buf(),
        "wal" => wal_of(tmp),
        name => {
            if let (Some(sha), Some(dir)) = (name.strip_prefix("file:"), files_dir) {
                put_file(dir, sha, r)?;
            }
            return Ok(());
        }
    };
    let mut out = std::fs::File::create(&target)?;
    syncing_while(&target, || {
        // Large reads: fewer writes, and the checksum hashes a megabyte at
        // a time (std::io::copy would go 8 KiB at a time).
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buf[..n])?;
        }
    })?;
    out.sync_all()?;
    Ok(())
}

/// Builds the database a full restore makes beside `db` (`fill` writes its
/// sections, and fails unless every byte checked out), sets its state, and
/// renames it over `db`: the target is either as it was or restored.
pub(crate) fn install_full(
    db: &Path,
    header: &BackupHeader,
    opts: RestoreOptions,
    source: &str,
    fill: impl FnOnce(&Path) -> Result<(), BackupError>,
) -> Result<RestoreReport, BackupError> {
    remove_leftovers(db, "restore");
    let tmp = temp_beside(db, "restore");
    let result = (|| -> Result<(DbState, String), BackupError> {
        fill(&tmp)?;
        // A copied WAL (if any) goes into the file here, and is removed.
        let conn = Connection::open(&tmp)?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        // The file is synced below, before it replaces anything; a crash
        // before that leaves only a leftover that the next restore removes.
        conn.pragma_update(None, "synchronous", "OFF")?;
        let tx = conn.unchecked_transaction()?;
        let last: Lsn = tx.query_row("SELECT last_lsn FROM identity WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        if last != header.last_lsn {
            return Err(BackupError::Damaged(format!(
                "the data ends at LSN {last}, its header says {}",
                header.last_lsn
            )));
        }
        let out = set_state(&tx, opts.recovery)?;
        if opts.recovery == Recovery::Recovery {
            // A new history begins at the backup's last LSN: its log chain
            // starts after it (a secondary is initialised from this backup
            // or a later one), not at whatever the source had backed up.
            tx.execute(
                "INSERT INTO backup_history (kind, first_lsn, last_lsn, file, created_at) VALUES ('chain', ?1, ?1, ?2, ?3)",
                params![header.last_lsn, source, crate::now_ms()],
            )?;
        }
        tx.commit()?;
        drop(conn);
        std::fs::File::open(&tmp)?.sync_all()?;
        Ok(out)
    })();
    let (state, fork_id) = match result {
        Ok(x) => x,
        Err(e) => {
            remove_leftovers(db, "restore");
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
    let target = pchat_store::blob_path(dir, sha)
        .ok_or_else(|| BackupError::Damaged(format!("a file named {sha}")))?;
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

fn restore_log(
    backup: &Path,
    header: &BackupHeader,
    db: &Path,
    files_dir: Option<&Path>,
    opts: RestoreOptions,
) -> Result<RestoreReport, BackupError> {
    let (id, _) = existing(db)?.ok_or_else(|| {
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
    let mut records = Vec::new();
    sections(backup, header, |s, r| {
        if let Some(sha) = s.name.strip_prefix("file:") {
            // Content-addressed and checked: harmless should the restore
            // then be refused.
            if let Some(dir) = files_dir {
                put_file(dir, sha, r)?;
            }
            return Ok(());
        }
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
    let mut applier = LogApplier::open(db)?;
    let source = LogSource {
        what: "the log backup",
        family_id: &header.family_id,
        fork_id: &header.fork_id,
        forks: &header.forks,
    };
    let done = applier.apply(&source, &records, Some(opts.recovery))?;
    Ok(RestoreReport {
        database: id.name,
        kind: BackupKind::Log,
        applied: done.applied,
        last_lsn: done.last_lsn,
        state: done.state,
        fork_id: done.fork_id,
    })
}

/// Where log records come from: a log backup, a log-shipping share or a
/// mirroring principal, with the identity they were written under.
pub struct LogSource<'a> {
    /// Names the source in refusals ("the log backup").
    pub what: &'a str,
    pub family_id: &'a str,
    pub fork_id: &'a str,
    /// The source's fork history (oldest first).
    pub forks: &'a [Fork],
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub applied: u64,
    pub last_lsn: Lsn,
    pub state: DbState,
    pub fork_id: String,
}

/// Applies log records to a database that is RESTORING or STANDBY: the
/// restore of a log backup, the restore job of log shipping, a mirror. One
/// connection, kept open (a mirror applies many small batches).
pub struct LogApplier {
    conn: Connection,
    apply: fn(&Connection, Lsn, &str) -> Result<(), BackupError>,
}

fn apply_text<M: Machine>(conn: &Connection, lsn: Lsn, text: &str) -> Result<(), BackupError> {
    let event: M::Event =
        serde_json::from_str(text).map_err(|e| BackupError::Damaged(format!("LSN {lsn}: {e}")))?;
    M::apply(conn, lsn, &event)?;
    Ok(())
}

impl LogApplier {
    /// Opens an existing database for applying log records.
    pub fn open(db: &Path) -> Result<LogApplier, BackupError> {
        let (id, _) = existing(db)?.ok_or_else(|| {
            refused(format!(
                "{} does not exist: restore a full backup first (with --norecovery or --standby)",
                db.display()
            ))
        })?;
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let apply = match id.name.as_str() {
            "mgc" => apply_text::<ChatMachine>,
            _ => apply_text::<ComplianceMachine>,
        };
        Ok(LogApplier { conn, apply })
    }

    pub fn identity(&self) -> Result<(pchat_store::Identity, DbState), BackupError> {
        let id =
            read_identity(&self.conn)?.ok_or_else(|| refused("the database has no identity"))?;
        Ok((id, read_state(&self.conn)?))
    }

    /// Applies `records` (consecutive LSNs) in one transaction, then sets
    /// the state `then` (None: keep it). Records the database already has
    /// must be the very same. Refused, changing nothing, when the database
    /// is ONLINE, of another family, on a fork the source does not descend
    /// from, or when the records leave a gap.
    ///
    /// A source on a newer fork is followed when the database holds nothing
    /// past the point where that fork began: the database then adopts the
    /// newer forks (this is how a log-shipping secondary follows a mirror
    /// failover, and how an old principal rejoins as a mirror).
    pub fn apply(
        &mut self,
        source: &LogSource,
        records: &[RawRecord],
        then: Option<Recovery>,
    ) -> Result<Applied, BackupError> {
        // Take the write lock at once: a transaction that read first could
        // not upgrade once another connection (a restore job, `pchat admin
        // --data-dir`) had committed meanwhile.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id = read_identity(&tx)?.ok_or_else(|| refused("the database has no identity"))?;
        let state = read_state(&tx)?;
        let (first, last) = match (records.first(), records.last()) {
            (Some(f), Some(l)) => (f.lsn, l.lsn),
            _ => (id.last_lsn + 1, id.last_lsn),
        };
        if !matches!(state, DbState::Restoring | DbState::Standby) {
            return Err(refused(format!(
                "{} is {}: {} applies only to a database restored with --norecovery or --standby",
                id.name,
                state.as_str(),
                source.what
            )));
        }
        if id.family_id != source.family_id {
            return Err(refused(format!(
                "{} (LSNs {first}-{last}) belongs to another database family ({}; the database is {})",
                source.what, source.family_id, id.family_id
            )));
        }
        let adopt = if id.fork_id == source.fork_id {
            Vec::new()
        } else {
            later_forks(source, &id)?
        };
        if first > id.last_lsn + 1 {
            return Err(refused(format!(
                "{} starts at LSN {first}, the database ends at LSN {}: LSNs {}-{} are missing (restore the log backups between)",
                source.what,
                id.last_lsn,
                id.last_lsn + 1,
                first - 1
            )));
        }
        let mut applied = 0u64;
        for (expect, rec) in (first..).zip(records) {
            if rec.lsn != expect {
                return Err(BackupError::Damaged(format!(
                    "{}: LSN {} follows LSN {}",
                    source.what,
                    rec.lsn,
                    expect - 1
                )));
            }
            if rec.lsn <= id.last_lsn {
                // Already here: it must be the very same record.
                let have: Option<(i64, String, String)> = tx
                    .prepare_cached("SELECT ts, origin, event FROM log WHERE lsn = ?1")?
                    .query_row([rec.lsn], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                if have.as_ref() != Some(&(rec.ts, rec.origin.clone(), rec.event.clone())) {
                    return Err(refused(format!(
                        "{} overlaps the database inconsistently at LSN {}",
                        source.what, rec.lsn
                    )));
                }
                continue;
            }
            tx.prepare_cached("INSERT INTO log (lsn, ts, origin, event) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![rec.lsn, rec.ts, rec.origin, rec.event])?;
            (self.apply)(&tx, rec.lsn, &rec.event)?;
            applied += 1;
        }
        let last_lsn = id.last_lsn.max(last);
        for f in &adopt {
            tx.execute(
                "INSERT OR IGNORE INTO forks (fork_id, start_lsn, created_at) VALUES (?1, ?2, ?3)",
                params![f.fork_id, f.start_lsn, f.created_at],
            )?;
        }
        if !adopt.is_empty() {
            tx.execute(
                "UPDATE identity SET fork_id = ?1 WHERE id = 1",
                [source.fork_id],
            )?;
        }
        tx.prepare_cached("UPDATE identity SET last_lsn = ?1 WHERE id = 1")?
            .execute([last_lsn])?;
        let (state, fork_id) = match then {
            Some(r) => set_state(&tx, r)?,
            None => (
                state,
                tx.query_row("SELECT fork_id FROM identity WHERE id = 1", [], |r| {
                    r.get(0)
                })?,
            ),
        };
        tx.commit()?;
        Ok(Applied {
            applied,
            last_lsn,
            state,
            fork_id,
        })
    }
}

/// The forks of `source` after the database's own, when the database can
/// follow them: its fork is in the source's history and it holds nothing
/// from where the next fork began.
fn later_forks(source: &LogSource, id: &pchat_store::Identity) -> Result<Vec<Fork>, BackupError> {
    let ours = source.forks.iter().position(|f| f.fork_id == id.fork_id);
    let after = ours.map(|i| source.forks[i + 1..].to_vec());
    match after {
        Some(later) if later.first().is_some_and(|f| id.last_lsn < f.start_lsn) => Ok(later),
        Some(later) if !later.is_empty() => Err(refused(format!(
            "{} is of fork {}, which began at LSN {}; the database (fork {}) has LSNs up to {} of its own fork: it must be rebuilt from a backup",
            source.what, source.fork_id, later[0].start_lsn, id.fork_id, id.last_lsn
        ))),
        _ => Err(refused(format!(
            "{} is of fork {}, the database is on fork {}",
            source.what, source.fork_id, id.fork_id
        ))),
    }
}

/// Brings a database that is RESTORING or STANDBY ONLINE on a new fork
/// without restoring anything (SQL Server's `RESTORE DATABASE ... WITH
/// RECOVERY` alone): the last step on a log-shipping secondary, and a
/// mirror's forced service.
pub fn recover(db: &Path) -> Result<Applied, BackupError> {
    let mut applier = LogApplier::open(db)?;
    let (id, _) = applier.identity()?;
    let family = id.family_id.clone();
    let fork = id.fork_id.clone();
    let forks = forks(&applier.conn)?;
    applier.apply(
        &LogSource {
            what: "recovery",
            family_id: &family,
            fork_id: &fork,
            forks: &forks,
        },
        &[],
        Some(Recovery::Recovery),
    )
}

/// Takes an ONLINE database out of service: RESTORING (it then applies
/// log records from a new principal), keeping its data. The first step of
/// a planned role switch and of a rejoin.
pub fn set_restoring(db: &Path) -> Result<(), BackupError> {
    change_state(db, DbState::Online, DbState::Restoring)
}

/// Brings a RESTORING database ONLINE on the fork it is on: the mirror of
/// a planned role switch, which holds exactly what the principal held (the
/// old principal is RESTORING before this runs, so one copy serves).
pub fn set_online(db: &Path) -> Result<(), BackupError> {
    change_state(db, DbState::Restoring, DbState::Online)
}

/// Takes an ONLINE database out of service (SQL Server's `SET OFFLINE`):
/// it keeps its data and serves nothing until `bring_online`.
pub fn take_offline(db: &Path) -> Result<(), BackupError> {
    change_state(db, DbState::Online, DbState::Offline)
}

/// Brings an OFFLINE database back ONLINE, on the fork it is on (its data
/// did not change).
pub fn bring_online(db: &Path) -> Result<(), BackupError> {
    change_state(db, DbState::Offline, DbState::Online)
}

/// Puts a database that holds exactly what a full backup taken at
/// `last_lsn` holds back to RESTORING in place, as if that backup had just
/// been restored over it WITH NORECOVERY: log restores (of a newer fork
/// starting right after `last_lsn`, too) may follow. The failback does this
/// on the copy its backup was taken from instead of writing the data over
/// it once more. Refused when the database moved on since (or is another).
pub fn hold_for_logs(db: &Path, family_id: &str, last_lsn: Lsn) -> Result<(), BackupError> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let tx = conn.unchecked_transaction()?;
    let id = read_identity(&tx)?.ok_or_else(|| refused("the database has no identity"))?;
    let state = read_state(&tx)?;
    if id.family_id != family_id || id.last_lsn != last_lsn {
        return Err(refused(format!(
            "{} is of family {} at LSN {}, not what the backup holds (family {family_id}, LSN {last_lsn}): restore the backup over it instead",
            id.name, id.family_id, id.last_lsn
        )));
    }
    match state {
        DbState::Restoring => return Ok(()),
        DbState::Online | DbState::Offline => {}
        other => {
            return Err(refused(format!(
                "{} is {}: only an ONLINE or OFFLINE database goes back to RESTORING in place",
                id.name,
                other.as_str()
            )))
        }
    }
    tx.execute(
        "UPDATE identity SET state = ?1 WHERE id = 1",
        [DbState::Restoring.as_str()],
    )?;
    tx.commit()?;
    Ok(())
}

fn change_state(db: &Path, from: DbState, to: DbState) -> Result<(), BackupError> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let tx = conn.unchecked_transaction()?;
    let state = read_state(&tx)?;
    if state != from {
        return Err(refused(format!(
            "the database is {}, not {}",
            state.as_str(),
            from.as_str()
        )));
    }
    tx.execute("UPDATE identity SET state = ?1 WHERE id = 1", [to.as_str()])?;
    tx.commit()?;
    Ok(())
}

/// The fork history of a database file.
pub fn fork_history(db: &Path) -> Result<Vec<Fork>, BackupError> {
    Ok(forks(&database::open_connection(db)?)?)
}

/// A backup found in a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Found {
    pub file: String,
    pub header: Option<BackupHeader>,
    /// Why the file is not a usable backup.
    pub error: Option<String>,
    /// Under a writer's temporary name: never published (see `is_temporary`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
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
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let checked = verify(&path);
        if matches!(checked, Err(BackupError::NotABackup(..))) {
            continue; // other files (a cut temporary file among them)
        }
        if is_temporary(&name) {
            // A writer killed between its fsync and its rename leaves a
            // complete file here: what it holds was never shipped.
            out.push(Found {
                file,
                header: None,
                error: Some(
                    "a backup still being written, or left by a writer that stopped before publishing it".into(),
                ),
                temporary: true,
            });
            continue;
        }
        match checked {
            Ok(h) => out.push(Found {
                file,
                header: Some(h),
                error: None,
                temporary: false,
            }),
            Err(e) => out.push(Found {
                file,
                header: None,
                error: Some(e.to_string()),
                temporary: false,
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

/// What a database holds, to compare copies of it (the runbooks'
/// verification): its identity and state and, for `mgc`, each room's
/// messages; for `mgccomp`, its records and how far into mgc it has read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub identity: pchat_store::Identity,
    pub state: DbState,
    /// The fork history (a copy restored from a backup is on an older fork
    /// until the first record of the newer one reaches it).
    pub forks: Vec<Fork>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<RoomSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_records: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mgc_cursor: Option<Lsn>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub id: i64,
    pub name: String,
    /// Messages in the history (kept or replaced by an administrator).
    pub messages: i64,
    pub last_seq: i64,
}

/// The summary of a database file, whatever its state (read-only). Room
/// counts come from indexes (all of a room's rows, minus those out of the
/// history: status 2 and 3), not from reading each message.
pub fn summary(db: &Path) -> Result<Summary, BackupError> {
    let conn = database::open_connection(db)?;
    let identity = read_identity(&conn)?.ok_or_else(|| refused("the database has no identity"))?;
    let state = read_state(&conn)?;
    let table = |name: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    let mut out = Summary {
        forks: forks(&conn)?,
        identity,
        state,
        rooms: Vec::new(),
        compliance_records: None,
        mgc_cursor: None,
    };
    if table("rooms")? {
        let mut stmt = conn.prepare(
            "SELECT r.id, r.name, r.last_seq,
                    (SELECT COUNT(*) FROM messages m WHERE m.room_id = r.id)
                    - (SELECT COUNT(*) FROM messages m WHERE m.room_id = r.id AND m.status >= 2)
             FROM rooms r ORDER BY r.id",
        )?;
        out.rooms = stmt
            .query_map([], |r| {
                Ok(RoomSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    last_seq: r.get(2)?,
                    messages: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    if table("compliance")? {
        out.compliance_records =
            Some(conn.query_row("SELECT COUNT(*) FROM compliance", [], |r| r.get(0))?);
        out.mgc_cursor = conn
            .query_row("SELECT lsn FROM mgc_cursor WHERE id = 1", [], |r| r.get(0))
            .optional()?;
    }
    Ok(out)
}
