//! `mgccomp`: the compliance database, and the recorder that fills it.
//!
//! The recorder follows the `mgc` log from a cursor that lives in `mgccomp`
//! and is moved in the same transaction that stores the records, so a crash
//! anywhere neither loses nor duplicates a record: after a restart the
//! recorder resumes from the cursor, and a batch that was already recorded is
//! recognised and skipped.

use crate::internal;
use crate::machine::{Engine, Machine};
use pchat_domain::compliance::{records_for, ComplianceRecord};
use pchat_domain::{LogRecord, Lsn, Timestamp};
use pchat_store::{
    BoxFuture, ChatStore, ComplianceStore, Fork, RecordQuery, StoreError, StoredRecord,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub struct ComplianceMachine;

/// Record the compliance records of these `mgc` log records (in LSN order).
pub struct RecordBatch {
    pub records: Vec<Arc<LogRecord>>,
    /// `mgc`'s fork history as the recorder found it: kept with the cursor,
    /// so a later recorder sees where a failover rolled `mgc` back.
    pub forks: Vec<Fork>,
}

pub enum ComplianceCommand {
    Record(RecordBatch),
    /// Compare-and-set of an export job's mark (see [`ComplianceStore`]).
    MoveMark {
        job: String,
        from: i64,
        through: i64,
    },
    /// `mgc` ends before the cursor (a data-center failover kept less of
    /// `mgc` than of `mgccomp`): follow the new history from `to`.
    Rewind {
        to: Lsn,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ComplianceEvent {
    Recorded {
        through_mgc_lsn: Lsn,
        records: Vec<ComplianceRecord>,
        /// `mgc`'s fork history, when it differs from the one kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mgc_forks: Option<Vec<Fork>>,
    },
    /// An export job has exported every record up to `through` (a record id).
    Marked { job: String, through: i64 },
    /// The cursor went back to `to`, starting the next epoch: records of
    /// the rolled-back `mgc` history stay, under their epoch, and the new
    /// history's records are kept under the new one.
    Rewound { to: Lsn },
}

/// Export job names: 1 to 64 of A-Z, a-z, 0-9, `-`, `_`.
pub fn valid_job(job: &str) -> bool {
    (1..=64).contains(&job.len())
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Machine for ComplianceMachine {
    type Command = ComplianceCommand;
    type Event = ComplianceEvent;
    /// Recording: the last `mgc` LSN recorded. Moving a mark: the mark after.
    type Outcome = i64;

    const SCHEMA_VERSION: i64 = 3;
    const SCHEMA: &'static str = "
CREATE TABLE IF NOT EXISTS compliance (
    id INTEGER PRIMARY KEY,
    -- Which mgc history: bumped when a failover rolls mgc back (Rewound).
    mgc_epoch INTEGER NOT NULL,
    mgc_lsn INTEGER NOT NULL,
    part INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    server TEXT NOT NULL,
    user_id INTEGER,
    room_id INTEGER,
    seq INTEGER,
    content TEXT,
    UNIQUE (mgc_epoch, mgc_lsn, part)
);
CREATE TABLE IF NOT EXISTS mgc_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    lsn INTEGER NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    -- mgc's fork history (JSON) of the records up to lsn.
    forks TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS export_marks (
    job TEXT PRIMARY KEY,
    through_id INTEGER NOT NULL
);
";

    fn decide(
        conn: &Connection,
        _now: Timestamp,
        cmd: ComplianceCommand,
    ) -> Result<(Vec<ComplianceEvent>, i64), StoreError> {
        let cmd = match cmd {
            ComplianceCommand::Record(batch) => batch,
            ComplianceCommand::MoveMark { job, from, through } => {
                return move_mark(conn, job, from, through)
            }
            ComplianceCommand::Rewind { to } => {
                let cursor = cursor(conn).map_err(internal)?;
                return Ok(if to < cursor {
                    (vec![ComplianceEvent::Rewound { to }], to)
                } else {
                    (vec![], cursor)
                });
            }
        };
        let cursor = cursor(conn).map_err(internal)?;
        let fresh: Vec<&Arc<LogRecord>> = cmd.records.iter().filter(|r| r.lsn > cursor).collect();
        let Some(first) = fresh.first() else {
            return Ok((vec![], cursor));
        };
        if first.lsn != cursor + 1 || fresh.windows(2).any(|w| w[1].lsn != w[0].lsn + 1) {
            return Err(StoreError::Internal(format!(
                "compliance batch starts at mgc LSN {} but the cursor is at {cursor}",
                first.lsn
            )));
        }
        let through = fresh.last().map(|r| r.lsn).unwrap_or(cursor);
        let records = fresh.iter().flat_map(|r| records_for(r)).collect();
        let kept = cursor_forks(conn).map_err(internal)?;
        Ok((
            vec![ComplianceEvent::Recorded {
                through_mgc_lsn: through,
                records,
                mgc_forks: (kept != cmd.forks).then_some(cmd.forks),
            }],
            through,
        ))
    }

    fn apply(conn: &Connection, _lsn: Lsn, event: &ComplianceEvent) -> rusqlite::Result<()> {
        let (through_mgc_lsn, records, mgc_forks) = match event {
            ComplianceEvent::Recorded {
                through_mgc_lsn,
                records,
                mgc_forks,
            } => (through_mgc_lsn, records, mgc_forks),
            ComplianceEvent::Rewound { to } => {
                conn.prepare_cached(
                    "INSERT INTO mgc_cursor (id, lsn, epoch) VALUES (1, ?1, 1)
                     ON CONFLICT (id) DO UPDATE SET lsn = excluded.lsn, epoch = epoch + 1",
                )?
                .execute([to])?;
                return Ok(());
            }
            ComplianceEvent::Marked { job, through } => {
                conn.prepare_cached(
                    "INSERT INTO export_marks (job, through_id) VALUES (?1, ?2)
                     ON CONFLICT (job) DO UPDATE SET through_id = excluded.through_id",
                )?
                .execute(params![job, through])?;
                return Ok(());
            }
        };
        let mut stmt = conn.prepare_cached(
            "INSERT INTO compliance (mgc_epoch, mgc_lsn, part, kind, ts, server, user_id, room_id, seq, content)
             VALUES ((SELECT coalesce(max(epoch), 0) FROM mgc_cursor), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for r in records {
            stmt.execute(params![
                r.mgc_lsn, r.part, r.kind, r.ts, r.server, r.user, r.room, r.seq, r.content
            ])?;
        }
        conn.prepare_cached(
            "INSERT INTO mgc_cursor (id, lsn) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET lsn = excluded.lsn",
        )?
        .execute([through_mgc_lsn])?;
        if let Some(forks) = mgc_forks {
            let text = serde_json::to_string(forks)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            conn.prepare_cached("UPDATE mgc_cursor SET forks = ?1 WHERE id = 1")?
                .execute([text])?;
        }
        Ok(())
    }
}

fn mark(conn: &Connection, job: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT through_id FROM export_marks WHERE job = ?1")?
        .query_row([job], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn move_mark(
    conn: &Connection,
    job: String,
    from: i64,
    through: i64,
) -> Result<(Vec<ComplianceEvent>, i64), StoreError> {
    if !valid_job(&job) {
        return Err(StoreError::Domain(pchat_domain::DomainError::Invalid(
            "export job names are 1 to 64 letters, digits, '-' or '_'".into(),
        )));
    }
    let current = mark(conn, &job).map_err(internal)?;
    let last: i64 = conn
        .query_row("SELECT coalesce(max(id), 0) FROM compliance", [], |r| {
            r.get(0)
        })
        .map_err(internal)?;
    if through < from || through > last {
        return Err(StoreError::Domain(pchat_domain::DomainError::Invalid(
            format!("an export mark moves forward to a recorded id (from {from} to {through}; last record {last})"),
        )));
    }
    if current != from || through == from {
        return Ok((vec![], current));
    }
    Ok((vec![ComplianceEvent::Marked { job, through }], through))
}

/// `mgc`'s fork history kept with the cursor (empty before any record).
fn cursor_forks(conn: &Connection) -> rusqlite::Result<Vec<Fork>> {
    let text: Option<String> = conn
        .query_row("SELECT forks FROM mgc_cursor WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// The last LSN two fork histories of one database share: where the one
/// recorded and the one now diverge (None: they do not).
pub fn divergence(recorded: &[Fork], now: &[Fork]) -> Option<Lsn> {
    let same = recorded
        .iter()
        .zip(now)
        .take_while(|(a, b)| a.fork_id == b.fork_id)
        .count();
    let next = |forks: &[Fork]| forks.get(same).map(|f| f.start_lsn - 1);
    match (next(recorded), next(now)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn cursor(conn: &Connection) -> rusqlite::Result<Lsn> {
    Ok(conn
        .query_row("SELECT lsn FROM mgc_cursor WHERE id = 1", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

pub type ComplianceEngine = Engine<ComplianceMachine>;

pub fn open(path: &Path) -> Result<Arc<ComplianceEngine>, StoreError> {
    Engine::open(path, "mgccomp")
}

/// The last `mgc` LSN recorded in `mgccomp`.
pub async fn recorded_through(comp: &ComplianceEngine) -> Result<Lsn, StoreError> {
    comp.read(cursor).await
}

/// Follows `mgc` and records every event in `mgccomp` until `stop` fires (or
/// `mgc`'s stream ends), in batches gathered for up to 50 ms.
/// On an error it logs, waits a second and resumes from its cursor, which is
/// always safe: the cursor moves only with the records it covers.
pub async fn run_recorder(
    mgc: Arc<crate::ChatEngine>,
    comp: Arc<ComplianceEngine>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StoreError> {
    loop {
        match record(&mgc, &comp, &mut stop).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "compliance recorder failed; resuming from its cursor in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stop.changed() => return Err(e),
                }
            }
        }
    }
}

/// How long the recorder gathers `mgc` records into one `mgccomp` commit.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);
/// Most `mgc` records in one `mgccomp` commit.
const MAX_RECORDS: usize = 5000;

async fn record(
    mgc: &Arc<crate::ChatEngine>,
    comp: &Arc<ComplianceEngine>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let mut from = recorded_through(comp).await?;
    let mgc_last = mgc.engine().identity().await?.last_lsn;
    let forks = mgc.engine().read(crate::backup::forks).await?;
    let kept = comp.read(cursor_forks).await?;
    // Where mgc's history stops being the one recorded: a failover or a
    // restore rolled it back, and the records past that point describe a
    // history mgc no longer has. They stay (under their epoch); the new
    // history is recorded from the divergence, under the next.
    let keep_to = if kept.is_empty() {
        mgc_last
    } else {
        divergence(&kept, &forks).unwrap_or(Lsn::MAX).min(mgc_last)
    };
    if from > keep_to {
        tracing::warn!(
            recorded_through = from,
            keep_to,
            "mgc's history diverges from the recorded one: recording it again from LSN {keep_to}"
        );
        comp.submit(
            "compliance-recorder",
            ComplianceCommand::Rewind { to: keep_to },
        )
        .await?;
        from = keep_to;
    }
    let mut stream = mgc.subscribe(from)?;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let first = tokio::select! {
            r = stream.recv() => r,
            _ = stop.changed() => None,
        };
        let Some(first) = first else { return Ok(()) };
        let mut records = vec![first?];
        // Gather for a moment: compliance is not on the acknowledgement
        // path, and fewer, larger mgccomp commits leave the disk's fsyncs
        // to the chat database.
        let gather_until = tokio::time::Instant::now() + GATHER;
        while records.len() < MAX_RECORDS {
            match tokio::time::timeout_at(gather_until, stream.recv()).await {
                Ok(Some(r)) => records.push(r?),
                Ok(None) | Err(_) => break,
            }
        }
        comp.submit(
            "compliance-recorder",
            ComplianceCommand::Record(RecordBatch {
                records,
                forks: forks.clone(),
            }),
        )
        .await?;
    }
}

impl ComplianceStore for ComplianceEngine {
    fn records(&self, q: RecordQuery) -> BoxFuture<'_, Result<Vec<StoredRecord>, StoreError>> {
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, mgc_lsn, part, kind, ts, server, user_id, room_id, seq, content
                 FROM compliance WHERE id > ?1 AND (?2 IS NULL OR ts >= ?2) AND (?3 IS NULL OR ts <= ?3)
                 ORDER BY id LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![q.after, q.since, q.until, q.limit], |r| {
                Ok(StoredRecord {
                    id: r.get(0)?,
                    record: ComplianceRecord {
                        mgc_lsn: r.get(1)?,
                        part: r.get(2)?,
                        kind: r.get(3)?,
                        ts: r.get(4)?,
                        server: r.get(5)?,
                        user: r.get(6)?,
                        room: r.get(7)?,
                        seq: r.get(8)?,
                        content: r.get(9)?,
                    },
                })
            })?;
            rows.collect()
        }))
    }

    fn export_mark(&self, job: String) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(self.read(move |c| mark(c, &job)))
    }

    fn move_export_mark(
        &self,
        job: String,
        from: i64,
        through: i64,
    ) -> BoxFuture<'_, Result<i64, StoreError>> {
        let done = self.submit(
            "compliance-export",
            ComplianceCommand::MoveMark { job, from, through },
        );
        Box::pin(async move { done.await.map(|(_, mark)| mark) })
    }
}
