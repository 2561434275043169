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
use pchat_store::{ChatStore, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub struct ComplianceMachine;

/// Record the compliance records of these `mgc` log records (in LSN order).
pub struct RecordBatch {
    pub records: Vec<Arc<LogRecord>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ComplianceEvent {
    Recorded {
        through_mgc_lsn: Lsn,
        records: Vec<ComplianceRecord>,
    },
}

impl Machine for ComplianceMachine {
    type Command = RecordBatch;
    type Event = ComplianceEvent;
    /// The cursor after the batch: the last `mgc` LSN recorded.
    type Outcome = Lsn;

    const SCHEMA_VERSION: i64 = 1;
    const SCHEMA: &'static str = "
CREATE TABLE IF NOT EXISTS compliance (
    id INTEGER PRIMARY KEY,
    mgc_lsn INTEGER NOT NULL,
    part INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    server TEXT NOT NULL,
    user_id INTEGER,
    room_id INTEGER,
    seq INTEGER,
    content TEXT,
    UNIQUE (mgc_lsn, part)
);
CREATE TABLE IF NOT EXISTS mgc_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    lsn INTEGER NOT NULL
);
";

    fn decide(
        conn: &Connection,
        _now: Timestamp,
        cmd: RecordBatch,
    ) -> Result<(Vec<ComplianceEvent>, Lsn), StoreError> {
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
        Ok((
            vec![ComplianceEvent::Recorded {
                through_mgc_lsn: through,
                records,
            }],
            through,
        ))
    }

    fn apply(conn: &Connection, _lsn: Lsn, event: &ComplianceEvent) -> rusqlite::Result<()> {
        let ComplianceEvent::Recorded {
            through_mgc_lsn,
            records,
        } = event;
        let mut stmt = conn.prepare_cached(
            "INSERT INTO compliance (mgc_lsn, part, kind, ts, server, user_id, room_id, seq, content)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
        Ok(())
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
    mgc: Arc<dyn ChatStore>,
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
    mgc: &Arc<dyn ChatStore>,
    comp: &Arc<ComplianceEngine>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let from = recorded_through(comp).await?;
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
        comp.submit("compliance-recorder", RecordBatch { records })
            .await?;
    }
}
