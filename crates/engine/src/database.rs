//! Opening a database file: pragmas, the shared schema (identity, forks, log)
//! and the database's identity.

use pchat_store::Identity;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// Tables every database has, whatever its machine.
const CORE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    family_id TEXT NOT NULL,
    fork_id TEXT NOT NULL,
    last_lsn INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    -- ONLINE, RESTORING, STANDBY or OFFLINE (see DbState).
    state TEXT NOT NULL DEFAULT 'ONLINE'
);
CREATE TABLE IF NOT EXISTS forks (
    fork_id TEXT PRIMARY KEY,
    start_lsn INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
-- Backups taken of this database (physical metadata: not in the log).
CREATE TABLE IF NOT EXISTS backup_history (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    first_lsn INTEGER NOT NULL,
    last_lsn INTEGER NOT NULL,
    file TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    lsn INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    origin TEXT NOT NULL,
    event TEXT NOT NULL
);
";

/// Opens (or creates) a database file for writing and sets it up: WAL,
/// `synchronous=FULL` (a commit is durable when it returns), the core schema,
/// the machine's schema, and a new identity when the file is new.
pub(crate) fn open_for_write(
    path: &Path,
    name: &str,
    schema: &str,
    schema_version: i64,
) -> rusqlite::Result<Connection> {
    // A writer beside us (a running server) can still make SQLite answer
    // "busy" at once on paths its busy timeout does not cover: try again.
    let mut attempt = 0;
    loop {
        match open_for_write_once(path, name, schema, schema_version) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 50 =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn open_for_write_once(
    path: &Path,
    name: &str,
    schema: &str,
    schema_version: i64,
) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    // Before anything else: even setting the journal mode may wait for a
    // writer beside us.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // The writer uses more distinct statements than rusqlite's default 16.
    conn.set_prepared_statement_cache_capacity(128);
    let has_identity: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'identity'",
        [],
        |r| r.get::<_, i64>(0),
    )? > 0;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if has_identity && version != schema_version {
        return Err(rusqlite::Error::ToSqlConversionFailure(
            format!(
                "{} has schema version {version}, this pchat uses version {schema_version}; \
                 move the data with `pchat admin export-data` / `import-data`",
                path.display()
            )
            .into(),
        ));
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // The default page cache (2 MiB). A larger one makes every commit slower:
    // SQLite walks the cache when a write transaction ends.
    // Checkpoints run from the writer between batches; a larger threshold
    // keeps them rarer under load.
    conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
    // Take the write lock first: a transaction that read first could not
    // upgrade if another writer (a running server beside `pchat admin
    // --data-dir`) committed meanwhile; SQLite then answers "database is
    // locked" at once, without waiting.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(CORE_SCHEMA)?;
    tx.execute_batch(schema)?;
    tx.pragma_update(None, "user_version", schema_version)?;
    let exists: bool =
        tx.query_row("SELECT count(*) FROM identity", [], |r| r.get::<_, i64>(0))? > 0;
    if !exists {
        let family = random_id();
        let fork = random_id();
        let now = crate::now_ms();
        tx.execute(
            "INSERT INTO identity (id, name, family_id, fork_id, last_lsn, created_at) VALUES (1, ?1, ?2, ?3, 0, ?4)",
            params![name, family, fork, now],
        )?;
        tx.execute(
            "INSERT INTO forks (fork_id, start_lsn, created_at) VALUES (?1, 1, ?2)",
            params![fork, now],
        )?;
    }
    tx.commit()?;
    Ok(conn)
}

/// Opens a database file read-only (for the read pool and for tools).
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

pub fn read_identity(conn: &Connection) -> rusqlite::Result<Option<Identity>> {
    conn.query_row(
        "SELECT name, family_id, fork_id, last_lsn FROM identity WHERE id = 1",
        [],
        |r| {
            Ok(Identity {
                name: r.get(0)?,
                family_id: r.get(1)?,
                fork_id: r.get(2)?,
                last_lsn: r.get(3)?,
            })
        },
    )
    .optional()
}

/// 128 random bits as hex: family and fork ids.
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    // getrandom fails only when the OS has no entropy source at all; a
    // time-based id keeps the database usable and still unique enough there.
    if getrandom::fill(&mut b).is_err() {
        b[..16].copy_from_slice(
            &(crate::now_ms() as u128 ^ (std::process::id() as u128) << 64).to_le_bytes(),
        );
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether a database takes commands (Lync's SQL Server database states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DbState {
    /// Read-write.
    Online,
    /// Restored WITH NORECOVERY: applies log backups, serves nothing.
    Restoring,
    /// Restored WITH STANDBY: applies log backups, read-only between them.
    Standby,
    /// Taken out of service by an operator (`pchat db offline`): serves
    /// nothing, keeps its data, comes back with `pchat db online`.
    Offline,
}

impl DbState {
    pub fn as_str(self) -> &'static str {
        match self {
            DbState::Online => "ONLINE",
            DbState::Restoring => "RESTORING",
            DbState::Standby => "STANDBY",
            DbState::Offline => "OFFLINE",
        }
    }
    pub fn parse(s: &str) -> Option<DbState> {
        [
            DbState::Online,
            DbState::Restoring,
            DbState::Standby,
            DbState::Offline,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

pub fn read_state(conn: &Connection) -> rusqlite::Result<DbState> {
    let s: String = conn.query_row("SELECT state FROM identity WHERE id = 1", [], |r| r.get(0))?;
    DbState::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown database state {s}").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (x INTEGER);";

    /// Opening a database that another connection keeps writing to waits
    /// for the write lock instead of failing with "database is locked".
    #[test]
    fn opening_beside_a_busy_writer_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mgc.db");
        let writer = open_for_write(&path, "mgc", SCHEMA, 1).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
                }
            })
        };
        let opened: Vec<_> = (0..60)
            .map(|_| open_for_write(&path, "mgc", SCHEMA, 1).map(drop))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy.join().unwrap();
        let failed: Vec<_> = opened.into_iter().filter_map(Result::err).collect();
        assert!(
            failed.is_empty(),
            "{} opens failed: {:?}",
            failed.len(),
            failed.first()
        );
    }
}
