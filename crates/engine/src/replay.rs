//! Rebuilding a database's tables from its log: the property every replica,
//! restore and log shipment relies on.

use crate::database::{open_for_write, read_identity};
use crate::internal;
use crate::machine::{read_log, Machine};
use pchat_store::StoreError;
use rusqlite::{params, Connection};
use std::path::Path;

/// Applies the whole log of the database at `src` to a new database at `dst`
/// (which must not exist), keeping `src`'s identity.
pub fn replay_into<M: Machine>(src: &Path, dst: &Path) -> Result<(), StoreError> {
    if dst.exists() {
        return Err(StoreError::Internal(format!(
            "{} exists already",
            dst.display()
        )));
    }
    let from = crate::database::open_connection(src).map_err(internal)?;
    let identity = read_identity(&from)
        .map_err(internal)?
        .ok_or_else(|| internal("source has no identity"))?;
    let mut to =
        open_for_write(dst, &identity.name, M::SCHEMA, M::SCHEMA_VERSION).map_err(internal)?;
    let tx = to.transaction().map_err(internal)?;
    tx.execute(
        "UPDATE identity SET family_id = ?1, fork_id = ?2 WHERE id = 1",
        params![identity.family_id, identity.fork_id],
    )
    .map_err(internal)?;
    tx.execute("DELETE FROM forks", []).map_err(internal)?;
    {
        let mut forks = from
            .prepare("SELECT fork_id, start_lsn, created_at FROM forks")
            .map_err(internal)?;
        let rows = forks
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(internal)?;
        for row in rows {
            let (f, s, c) = row.map_err(internal)?;
            tx.execute(
                "INSERT INTO forks (fork_id, start_lsn, created_at) VALUES (?1, ?2, ?3)",
                params![f, s, c],
            )
            .map_err(internal)?;
        }
    }
    let mut after = 0;
    loop {
        let chunk = read_log::<M::Event>(&from, after, 1000).map_err(internal)?;
        if chunk.is_empty() {
            break;
        }
        for rec in chunk {
            let text = serde_json::to_string(&rec.event).map_err(internal)?;
            tx.execute(
                "INSERT INTO log (lsn, ts, origin, event) VALUES (?1, ?2, ?3, ?4)",
                params![rec.lsn, rec.ts, rec.origin, text],
            )
            .map_err(internal)?;
            M::apply(&tx, rec.lsn, &rec.event).map_err(internal)?;
            after = rec.lsn;
        }
    }
    tx.execute("UPDATE identity SET last_lsn = ?1 WHERE id = 1", [after])
        .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok(())
}

/// Every row of every ordinary table except `identity`'s creation time,
/// in a fixed order, as text: two databases with the same dump have the
/// same tables.
pub fn dump_tables(conn: &Connection) -> rusqlite::Result<String> {
    let mut tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             AND name NOT LIKE '%_fts%' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tables.push("messages_fts".into());
    let mut out = String::new();
    for t in tables {
        let exists: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            [&t],
            |r| r.get(0),
        )?;
        if exists == 0 {
            continue;
        }
        let sql = if t == "messages_fts" {
            "SELECT rowid, body FROM messages_fts ORDER BY rowid".to_string()
        } else if t == "backup_history" {
            // Physical metadata of this file, not part of its data.
            continue;
        } else if t == "identity" {
            "SELECT name, family_id, fork_id, last_lsn FROM identity".to_string()
        } else {
            format!("SELECT * FROM \"{t}\" ORDER BY 1, 2")
        };
        let mut stmt = conn.prepare(&sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query([])?;
        out.push_str(&format!("## {t}\n"));
        while let Some(r) = rows.next()? {
            let cols: Vec<String> = (0..n)
                .map(|i| match r.get_ref(i) {
                    Ok(v) => format!("{v:?}"),
                    Err(e) => format!("<{e}>"),
                })
                .collect();
            out.push_str(&cols.join("|"));
            out.push('\n');
        }
    }
    Ok(out)
}
