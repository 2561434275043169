//! The mirror's journal. A mirror hardens each batch its principal streams
//! by appending it to this file with one `fdatasync`, answers, and applies
//! the journal to its database in the background, many batches to one
//! transaction. So a synchronous acknowledgement waits for one small flush
//! on the mirror instead of a database commit (SQL Server's mirror, too,
//! hardens the log first and redoes it after).
//!
//! The journal only takes a batch that simply continues the database (same
//! family and fork, the next LSN); anything else (a fork to adopt, records
//! the mirror already has) settles the journal and is applied at once, with
//! every check of a log restore. Whatever reads or changes the mirror's
//! database settles the journal first, and a database server applies what a
//! journal holds when it starts (after a crash). Each entry is checksummed:
//! a torn last entry was never acknowledged and is dropped.
//!
//! Once everything in it is applied, the journal is rewound, not truncated:
//! the next entries overwrite the file from its start, so an append does not
//! change the file's size and its `fdatasync` flushes the data alone, with no
//! file-system metadata to commit (about half the time on this disk; this is
//! why PostgreSQL recycles WAL segments). Entries left behind a rewind hold
//! only LSNs the database already has (the rewind follows their commit), so
//! recovery skips every record the database holds. A session's end empties
//! the file.

use crate::hosted::internal;
use pchat_domain::Lsn;
use pchat_engine::backup::{LogApplier, LogSource};
use pchat_store::{Fork, RawRecord, StoreError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How long the redo gathers batches before it applies them: larger
/// transactions write each touched page once for many records.
/// `PCHAT_MIRROR_REDO_MS` changes it (tests hold batches in the journal).
fn redo_gather() -> Duration {
    static GATHER: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *GATHER.get_or_init(|| {
        let ms = std::env::var("PCHAT_MIRROR_REDO_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        Duration::from_millis(ms)
    })
}

/// Records hardened and not yet applied beyond which a batch is applied at
/// once with them (the journal does not outgrow a mirror that cannot keep
/// up: the principal waits for the apply).
const MAX_PENDING: usize = 20_000;
/// Journal size beyond which the redo holds appends off to empty it.
const MAX_BYTES: u64 = 8 << 20;
/// Bytes before an entry: payload length (u32 LE), BLAKE3 of the payload.
const ENTRY_HEAD: usize = 4 + 32;

/// One batch as the journal holds it: the records and their source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub family_id: String,
    pub fork_id: String,
    pub forks: Vec<Fork>,
    pub records: Vec<RawRecord>,
}

impl Batch {
    fn source(&self) -> LogSource<'_> {
        LogSource {
            what: "the mirrored log",
            family_id: &self.family_id,
            fork_id: &self.fork_id,
            forks: &self.forks,
        }
    }
}

pub struct Journal {
    path: PathBuf,
    /// The file size beyond which a catch-up holds appends off (`MAX_BYTES`).
    max_bytes: u64,
    /// How long the redo gathers batches (`redo_gather`).
    gather: Duration,
    applier: Mutex<LogApplier>,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    file: File,
    /// Hardened in the file, not yet applied, oldest first.
    pending: Vec<Batch>,
    pending_records: usize,
    /// Bytes of the file in use: the next entry is written here.
    bytes: u64,
    /// The last LSN this copy holds durably (journal or database).
    hardened: Lsn,
    /// The database's family and fork: a batch of another goes the slow way.
    family_id: String,
    fork_id: String,
    /// Set when the session ended or the redo failed: no more appends.
    closed: Option<String>,
}

/// Where `db_file`'s mirror journal lives.
pub fn path_for(db_file: &Path) -> PathBuf {
    let mut p = db_file.as_os_str().to_owned();
    p.push(".mirror-journal");
    PathBuf::from(p)
}

impl State {
    fn take(&mut self) -> Vec<Batch> {
        self.pending_records = 0;
        std::mem::take(&mut self.pending)
    }

    /// After applying `batches`: when that failed, they are pending again
    /// (a settle fails rather than lose them) and the journal takes no more
    /// (the principal sees its mirror away); the file stays.
    fn keep_unapplied(
        &mut self,
        batches: Vec<Batch>,
        applied: Result<Option<Lsn>, StoreError>,
    ) -> Result<(), StoreError> {
        let Err(e) = applied else { return Ok(()) };
        self.pending_records += batches.iter().map(|b| b.records.len()).sum::<usize>();
        let newer = std::mem::replace(&mut self.pending, batches);
        self.pending.extend(newer);
        self.closed = Some(e.to_string());
        Err(e)
    }
}

/// One entry of the file: payload length, its BLAKE3, the batch as JSON.
fn entry_bytes(batch: &Batch) -> Result<Vec<u8>, StoreError> {
    let payload = serde_json::to_vec(batch).map_err(internal)?;
    let len = u32::try_from(payload.len()).map_err(internal)?;
    let mut entry = Vec::with_capacity(ENTRY_HEAD + payload.len());
    entry.extend_from_slice(&len.to_le_bytes());
    entry.extend_from_slice(blake3::hash(&payload).as_bytes());
    entry.extend_from_slice(&payload);
    Ok(entry)
}

/// The batches in a journal file, up to the first torn or damaged entry.
fn read_entries(path: &Path) -> Result<Vec<Batch>, StoreError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(internal)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(internal(e)),
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + ENTRY_HEAD) {
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[..4]);
        let len = u32::from_le_bytes(len) as usize;
        let Some(payload) = bytes.get(at + ENTRY_HEAD..at + ENTRY_HEAD + len) else {
            break; // torn: never acknowledged
        };
        if blake3::hash(payload).as_bytes() != &head[4..] {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(batch) => out.push(batch),
            Err(_) => break,
        }
        at += ENTRY_HEAD + len;
    }
    Ok(out)
}

/// Applies `batches` in order: consecutive batches of one source in one
/// transaction. Answers the last LSN applied.
fn apply_all(applier: &mut LogApplier, batches: &[Batch]) -> Result<Option<Lsn>, StoreError> {
    let mut last = None;
    let mut at = 0;
    while let Some(run) = batches.get(at) {
        let same = batches[at..]
            .iter()
            .take_while(|b| b.family_id == run.family_id && b.fork_id == run.fork_id)
            .count();
        let records: Vec<RawRecord> = batches[at..at + same]
            .iter()
            .flat_map(|b| b.records.iter().cloned())
            .collect();
        let done = applier.apply(&run.source(), &records, None).map_err(|e| {
            StoreError::Unavailable(format!("the mirror could not apply its journal: {e}"))
        })?;
        last = Some(done.last_lsn);
        at += same;
    }
    Ok(last)
}

/// Applies what the journal of `db_file` holds, then empties it: run when a
/// database server starts, before the database is read or changed.
pub fn recover(db_file: &Path) -> Result<usize, StoreError> {
    let path = path_for(db_file);
    let mut batches = read_entries(&path)?;
    let mut n = 0;
    if !batches.is_empty() {
        let mut applier = LogApplier::open(db_file).map_err(internal)?;
        // What a rewind left behind, the database already holds.
        let (id, _) = applier.identity().map_err(internal)?;
        for b in &mut batches {
            b.records.retain(|r| r.lsn > id.last_lsn);
        }
        batches.retain(|b| !b.records.is_empty());
        n = batches.iter().map(|b| b.records.len()).sum();
        apply_all(&mut applier, &batches).map_err(|e| {
            internal(format!(
                "{}: {e} (if the database was replaced since, remove this file)",
                path.display()
            ))
        })?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(internal(e)),
        _ => Ok(n),
    }
}

impl Journal {
    /// Opens the journal of a mirror's database (applying what an earlier
    /// session left) and starts its redo.
    pub fn open(db_file: &Path) -> Result<Arc<Journal>, StoreError> {
        Self::open_with(db_file, MAX_BYTES, redo_gather())
    }

    fn open_with(
        db_file: &Path,
        max_bytes: u64,
        gather: Duration,
    ) -> Result<Arc<Journal>, StoreError> {
        recover(db_file)?;
        let applier =
            LogApplier::open(db_file).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (id, _) = applier.identity().map_err(internal)?;
        let path = path_for(db_file);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(internal)?;
        // An acknowledged batch must not vanish with the file's name.
        pchat_engine::backup::sync_parent(&path).map_err(internal)?;
        let journal = Arc::new(Journal {
            path,
            max_bytes,
            gather,
            applier: Mutex::new(applier),
            state: Mutex::new(State {
                file,
                pending: Vec::new(),
                pending_records: 0,
                bytes: 0,
                hardened: id.last_lsn,
                family_id: id.family_id,
                fork_id: id.fork_id,
                closed: None,
            }),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&journal);
        std::thread::Builder::new()
            .name("mirror-redo".into())
            .spawn(move || redo(weak))
            .map_err(internal)?;
        Ok(journal)
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(internal)
    }

    /// The last LSN this copy holds durably.
    pub fn hardened(&self) -> Lsn {
        self.state.lock().map(|s| s.hardened).unwrap_or(0)
    }

    /// Makes `batch` durable here and answers the last LSN held. Blocking.
    pub fn harden(&self, batch: Batch) -> Result<Lsn, StoreError> {
        let first = batch.records.first().map(|r| r.lsn);
        let last = batch.records.last().map_or(0, |r| r.lsn);
        let consecutive = batch.records.windows(2).all(|w| w[1].lsn == w[0].lsn + 1);
        {
            let mut st = self.state()?;
            if let Some(why) = &st.closed {
                return Err(StoreError::Unavailable(why.clone()));
            }
            let same_source = batch.family_id == st.family_id && batch.fork_id == st.fork_id;
            if same_source && first.is_none() {
                return Ok(st.hardened);
            }
            let continues = same_source && consecutive && first == Some(st.hardened + 1);
            if continues && st.pending_records < MAX_PENDING {
                let entry = entry_bytes(&batch)?;
                let written = st
                    .file
                    .write_all_at(&entry, st.bytes)
                    .and_then(|_| st.file.sync_data());
                if let Err(e) = written {
                    // The file may now end in a torn entry: no more appends.
                    let why = format!("the mirror journal {} failed: {e}", self.path.display());
                    st.closed = Some(why.clone());
                    return Err(StoreError::Unavailable(why));
                }
                st.bytes += entry.len() as u64;
                st.pending_records += batch.records.len();
                st.pending.push(batch);
                st.hardened = last;
                self.wake.notify_one();
                return Ok(last);
            }
        }
        // Not a simple continuation (or the redo is far behind): apply all
        // of it now, with every check.
        self.apply_pending(Some(batch))
    }

    /// Applies what is pending (then `extra`, if any) and answers the last
    /// LSN held.
    fn apply_pending(&self, extra: Option<Batch>) -> Result<Lsn, StoreError> {
        let mut applier = self.applier.lock().map_err(internal)?;
        let taken = self.state()?.take();
        let applied = apply_all(&mut applier, &taken);
        let mut st = self.state()?;
        st.keep_unapplied(taken, applied)?;
        if !st.pending.is_empty() && st.bytes > self.max_bytes {
            // Under steady load the appends never pause, so the file would
            // never empty: catch up with them held off.
            let rest = st.take();
            let applied = apply_all(&mut applier, &rest);
            st.keep_unapplied(rest, applied)?;
        }
        if st.pending.is_empty() {
            // All applied and committed: the file holds nothing needed.
            st.bytes = 0;
        }
        drop(st);
        if let Some(batch) = extra {
            // A refusal here is the principal's to hear; the journal is fine.
            let done = applier
                .apply(&batch.source(), &batch.records, None)
                .map_err(|e| {
                    StoreError::Domain(pchat_domain::DomainError::Invalid(e.to_string()))
                })?;
            let (id, _) = applier.identity().map_err(internal)?;
            let mut st = self.state()?;
            st.hardened = st.hardened.max(done.last_lsn);
            st.family_id = id.family_id;
            st.fork_id = id.fork_id;
        }
        Ok(self.state()?.hardened)
    }

    /// Applies everything the journal holds; the database then holds all
    /// that was acknowledged. Blocking.
    pub fn settle(&self) -> Result<Lsn, StoreError> {
        self.apply_pending(None)
    }

    /// Takes no more batches (the session ended), then settles: a batch
    /// that came in between would otherwise stay in the file unapplied.
    pub fn close(&self) -> Result<Lsn, StoreError> {
        self.state()?.closed = Some("the mirroring session ended: start again".into());
        self.wake.notify_all();
        let held = self.settle()?;
        // Nothing left behind a rewind outlives the session (the database
        // may change in other ways after it).
        let st = self.state()?;
        st.file
            .set_len(0)
            .and_then(|_| st.file.sync_data())
            .map_err(internal)?;
        Ok(held)
    }

    /// Bytes of the file in use (tests).
    #[cfg(test)]
    fn held_bytes(&self) -> u64 {
        self.state.lock().map(|s| s.bytes).unwrap_or(0)
    }
}

/// The background redo: waits for batches, gathers for a moment, applies.
fn redo(journal: Weak<Journal>) {
    loop {
        let Some(j) = journal.upgrade() else { return };
        {
            let Ok(st) = j.state.lock() else { return };
            let Ok((st, _)) = j.wake.wait_timeout_while(st, Duration::from_secs(1), |s| {
                s.pending.is_empty() && s.closed.is_none()
            }) else {
                return;
            };
            if st.closed.is_some() {
                return;
            }
            if st.pending.is_empty() {
                continue;
            }
        }
        let gather = j.gather;
        drop(j);
        std::thread::sleep(gather);
        let Some(j) = journal.upgrade() else { return };
        if let Err(e) = j.apply_pending(None) {
            tracing::error!(error = %e, "mirror redo failed: the mirror takes no more batches");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::users;
    use pchat_engine::backup::{self, RestoreOptions};

    /// A source database with three users, and a mirror of it restored
    /// from a full backup then; three users more per `rounds` after it: the
    /// records after the backup, and the batch source.
    async fn source_and_mirror(dir: &Path, rounds: u32) -> (PathBuf, Vec<RawRecord>, Batch) {
        let source = dir.join("source.db");
        let engine = pchat_engine::ChatEngine::open(&source).unwrap();
        users(&engine, 0).await;
        let h = backup::full_backup(&source, None, &dir.join("full.bak"), "", "").unwrap();
        for round in 1..=rounds {
            users(&engine, 3 * round).await;
        }
        let mut log = engine.engine().subscribe(h.last_lsn);
        let mut records = Vec::new();
        while records.len() < 3 * rounds as usize {
            let r = log.recv().await.unwrap().unwrap();
            records.push(RawRecord::of(&r).unwrap());
        }
        engine.close();
        let mirror = dir.join("mgc.db");
        let opts = RestoreOptions {
            replace: false,
            recovery: pchat_store::Recovery::NoRecovery,
        };
        backup::restore(&dir.join("full.bak"), &mirror, None, opts).unwrap();
        let batch = Batch {
            family_id: h.family_id,
            fork_id: h.fork_id,
            forks: h.forks,
            records: Vec::new(),
        };
        (mirror, records, batch)
    }

    fn last_in_file(db: &Path) -> Lsn {
        LogApplier::open(db).unwrap().identity().unwrap().0.last_lsn
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hardened_batches_reach_the_database_and_the_file_empties() {
        let dir = tempfile::tempdir().unwrap();
        let (mirror, records, source) = source_and_mirror(dir.path(), 2).await;
        let start = last_in_file(&mirror);
        let journal = Journal::open(&mirror).unwrap();
        let batch = |r: &[RawRecord]| Batch {
            records: r.to_vec(),
            ..source.clone()
        };
        assert_eq!(journal.harden(batch(&records[..2])).unwrap(), start + 2);
        assert_eq!(journal.harden(batch(&records[2..4])).unwrap(), start + 4);
        assert_eq!(journal.hardened(), start + 4);
        assert!(journal.held_bytes() > 0);

        // A gap is refused (it goes the checked way) and changes nothing.
        let e = journal.harden(batch(&records[5..])).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(journal.hardened(), start + 4);

        // Settled: the database holds all of it, the journal nothing.
        assert_eq!(journal.settle().unwrap(), start + 4);
        assert_eq!(last_in_file(&mirror), start + 4);
        assert_eq!(journal.held_bytes(), 0);
        assert!(std::fs::metadata(path_for(&mirror)).unwrap().len() > 0);
        // The rest, then closed: no more batches.
        assert_eq!(journal.harden(batch(&records[4..])).unwrap(), start + 6);
        assert_eq!(journal.close().unwrap(), start + 6);
        assert_eq!(last_in_file(&mirror), start + 6);
        assert_eq!(std::fs::metadata(path_for(&mirror)).unwrap().len(), 0);
        assert!(journal.harden(batch(&records[..1])).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_appends_that_never_pause_the_file_still_empties() {
        let dir = tempfile::tempdir().unwrap();
        let (mirror, records, source) = source_and_mirror(dir.path(), 60).await;
        let start = last_in_file(&mirror);
        // Any size is over the limit: every redo pass catches up fully. The
        // redo starts at once, so batches come in while it applies.
        let journal = Journal::open_with(&mirror, 1, Duration::ZERO).unwrap();
        let (mut written, mut largest) = (0, 0);
        for r in records.chunks(1) {
            let batch = Batch {
                records: r.to_vec(),
                ..source.clone()
            };
            written += entry_bytes(&batch).unwrap().len() as u64;
            journal.harden(batch).unwrap();
            largest = largest.max(journal.held_bytes());
        }
        // The appends came back to back, each with a flush: without the
        // catch-up the redo never finds the journal empty and the file
        // holds every entry.
        assert!(
            largest < written / 2,
            "the journal grew to {largest} of {written} bytes"
        );
        assert_eq!(journal.close().unwrap(), start + records.len() as Lsn);
        assert_eq!(last_in_file(&mirror), start + records.len() as Lsn);
        assert_eq!(std::fs::metadata(path_for(&mirror)).unwrap().len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_left_behind_a_rewind_are_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mirror, records, source) = source_and_mirror(dir.path(), 2).await;
        let start = last_in_file(&mirror);
        let batch = |r: &[RawRecord]| Batch {
            records: r.to_vec(),
            ..source.clone()
        };
        // The journal held the first three, they were applied, it rewound.
        LogApplier::open(&mirror)
            .unwrap()
            .apply(&source.source(), &records[..3], None)
            .unwrap();
        let behind = entry_bytes(&batch(&records[2..3])).unwrap();
        let mut held = entry_bytes(&batch(&records[..2])).unwrap();
        held.extend_from_slice(&behind);
        std::fs::write(path_for(&mirror), &held).unwrap();
        assert_eq!(recover(&mirror).unwrap(), 0);
        assert_eq!(last_in_file(&mirror), start + 3);

        // A newer entry written over the start, an old one after it: the
        // newer one alone is applied.
        let mut held = entry_bytes(&batch(&records[3..5])).unwrap();
        held.extend_from_slice(&behind);
        std::fs::write(path_for(&mirror), &held).unwrap();
        assert_eq!(recover(&mirror).unwrap(), 2);
        assert_eq!(last_in_file(&mirror), start + 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_left_by_a_crash_is_applied_when_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mirror, records, source) = source_and_mirror(dir.path(), 1).await;
        let start = last_in_file(&mirror);
        // What a crashed mirror leaves: entries hardened, none applied,
        // the last one torn.
        let mut held = Vec::new();
        for r in records.chunks(2) {
            held.extend(
                entry_bytes(&Batch {
                    records: r.to_vec(),
                    ..source.clone()
                })
                .unwrap(),
            );
        }
        let torn = entry_bytes(&Batch {
            records: records.clone(),
            ..source
        })
        .unwrap();
        held.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(path_for(&mirror), &held).unwrap();
        assert_eq!(recover(&mirror).unwrap(), 3);
        assert_eq!(last_in_file(&mirror), start + 3);
        assert!(!path_for(&mirror).exists());
    }

    #[test]
    fn a_torn_or_damaged_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let batch = |lsn| Batch {
            family_id: "f".into(),
            fork_id: "k".into(),
            forks: Vec::new(),
            records: vec![RawRecord {
                lsn,
                ts: 1,
                origin: "o".into(),
                event: "{}".into(),
            }],
        };
        let entry = |b: &Batch| entry_bytes(b).unwrap();
        let mut bytes = entry(&batch(1));
        bytes.extend(entry(&batch(2)));
        let whole = bytes.len();
        let mut torn = entry(&batch(3));
        torn.truncate(torn.len() - 3);
        bytes.extend(torn);
        std::fs::write(&path, &bytes).unwrap();
        let got = read_entries(&path).unwrap();
        assert_eq!(
            got.iter().map(|b| b.records[0].lsn).collect::<Vec<_>>(),
            [1, 2]
        );

        // A flipped byte in the second entry: only the first counts.
        bytes.truncate(whole);
        let at = whole - 5;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let got = read_entries(&path).unwrap();
        assert_eq!(
            got.iter().map(|b| b.records[0].lsn).collect::<Vec<_>>(),
            [1]
        );
        assert!(read_entries(&dir.path().join("none")).unwrap().is_empty());
    }
}
