//! A database copied straight to other servers, at disk speed: the file
//! itself (with its WAL and, for `mgc`, the uploaded files) read while the
//! database's writers are held off, streamed to each target, which builds
//! the restored database beside its own and renames it into place.
//!
//! A full backup reads the database page by page through SQLite and writes
//! a file that a restore then reads and writes again; a copy reads the file
//! once and writes it once per target. The price: no command commits on the
//! source while it is read (its writers wait, then fail as busy), so a copy
//! is for a database nobody writes to, as in a failback, after the active
//! servers are cleared.
//!
//! The stream:
//!
//! ```text
//! header length (u32 LE) | header (JSON, a full backup's) | sections | BLAKE3 of all before it
//! ```
//!
//! The sections are `db` (the file), `wal` (its WAL, when it holds frames)
//! and `file:SHA256` (an uploaded file). The receiver checks the header
//! before it takes the target offline, and the checksum before the copy
//! replaces anything: a cut or damaged stream leaves the target as it was.

use crate::backup::{
    check_digest, check_header, header_of, install_full, read_sections, refuse_replacing,
    uploaded_files, wal_of, write_section, BackupError, BackupHeader, BackupKind, HashReader,
    RestoreOptions, RestoreReport, Section, FORMAT,
};
use rusqlite::Connection;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Size of the chunks a copy hands to `out`: under the allocator's mmap
/// threshold (128 KiB), so chunk buffers are reused from the heap instead
/// of being fresh pages, zeroed and faulted in by the kernel each time.
pub const CHUNK: usize = 64 << 10;
/// Chunks in flight between the file and the network (4 MiB).
pub const IN_FLIGHT: usize = 64;

/// Streams a copy of the database file `db` (and the uploaded files under
/// `files_dir`) to `out`, in chunks of at most [`CHUNK`] bytes (each read
/// straight into the buffer handed over: no copy of its own), holding the
/// database's write lock from before its header is read until the last
/// byte is out. `length` learns the stream's length in bytes before its
/// first byte goes out (for progress). Answers the header sent.
pub fn send_copy(
    db: &Path,
    files_dir: Option<&Path>,
    name: &str,
    length: &mut dyn FnMut(u64),
    out: &mut dyn FnMut(Vec<u8>) -> std::io::Result<()>,
) -> Result<BackupHeader, BackupError> {
    let conn = Connection::open(db)?;
    // Empty the WAL into the file first when that can be done at once (the
    // usual case: nobody writes or reads), so the file alone is the copy;
    // whatever stays in the WAL (a reader held it, a commit slipped in
    // before the lock) is copied with it.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let mut header = header_of(
            &conn,
            BackupKind::Full,
            name,
            "a copy of the database file, streamed to another server",
        )?;
        // With the write lock held nothing appends to the WAL or restarts
        // it; a checkpoint still running writes into the file only pages
        // that the WAL (copied after the file) holds too.
        let mut parts: Vec<(Section, PathBuf)> = vec![(
            Section {
                name: "db".into(),
                len: std::fs::metadata(db)?.len(),
            },
            db.to_path_buf(),
        )];
        let wal = wal_of(db);
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if wal_len > 0 {
            parts.push((
                Section {
                    name: "wal".into(),
                    len: wal_len,
                },
                wal,
            ));
        }
        if let Some(dir) = files_dir {
            for (sha, path) in uploaded_files(dir)? {
                let len = std::fs::metadata(&path)?.len();
                parts.push((
                    Section {
                        name: format!("file:{sha}"),
                        len,
                    },
                    path,
                ));
            }
        }
        header.sections = parts.iter().map(|(s, _)| s.clone()).collect();
        let head = serde_json::to_vec(&header).map_err(|e| BackupError::Refused(e.to_string()))?;
        // Length prefix, header, sections, BLAKE3.
        length(4 + head.len() as u64 + header.sections.iter().map(|s| s.len).sum::<u64>() + 32);
        let mut hasher = blake3::Hasher::new();
        let mut emit = |bytes: Vec<u8>| -> std::io::Result<()> {
            hasher.update(&bytes);
            out(bytes)
        };
        emit((head.len() as u32).to_le_bytes().to_vec())?;
        emit(head)?;
        for (s, path) in &parts {
            let mut f = std::fs::File::open(path)?.take(s.len);
            let mut sent = 0u64;
            loop {
                // One read() per chunk, into the buffer that is sent.
                let mut chunk = vec![0u8; CHUNK];
                let n = f.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
                emit(chunk)?;
                sent += n as u64;
            }
            if sent != s.len {
                return Err(BackupError::Refused(format!(
                    "{} changed while it was copied ({} bytes, then {sent})",
                    path.display(),
                    s.len
                )));
            }
        }
        out(hasher.finalize().as_bytes().to_vec())?;
        Ok(header)
    })();
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// A copy's header from its bytes: a full backup's, of a known database.
pub fn parse_header(head: &[u8]) -> Result<BackupHeader, BackupError> {
    let header: BackupHeader = serde_json::from_slice(head)
        .map_err(|e| BackupError::Damaged(format!("unreadable header: {e}")))?;
    if header.format != FORMAT {
        return Err(BackupError::UnsupportedFormat(header.format));
    }
    if header.kind != BackupKind::Full {
        return Err(BackupError::Damaged(
            "a copy that is not of a whole database".into(),
        ));
    }
    check_header(&header)?;
    Ok(header)
}

/// Refuses a copy that a restore over `db` would refuse (another database,
/// or one in use, without `replace`): checked before `db` is closed.
pub fn check_target(
    db: &Path,
    header: &BackupHeader,
    opts: RestoreOptions,
) -> Result<(), BackupError> {
    refuse_replacing(db, header, opts)
}

/// Restores a copy onto the database file `db` (not open by anyone): `head`
/// the header's bytes (after their length), `header` as [`parse_header`]
/// read them, `rest` the stream after the header. `source` names where it came from (kept in the new
/// history when it starts one).
pub fn restore_copy(
    head: &[u8],
    header: &BackupHeader,
    rest: &mut dyn Read,
    db: &Path,
    files_dir: Option<&Path>,
    opts: RestoreOptions,
    source: &str,
) -> Result<RestoreReport, BackupError> {
    refuse_replacing(db, header, opts)?;
    install_full(db, header, opts, source, |tmp| {
        let mut r = HashReader {
            inner: rest,
            hasher: blake3::Hasher::new(),
        };
        r.hasher.update(&(head.len() as u32).to_le_bytes());
        r.hasher.update(head);
        read_sections(&mut r, header, |s, part| {
            write_section(tmp, files_dir, s, part)
        })?;
        check_digest(r)
    })
}
