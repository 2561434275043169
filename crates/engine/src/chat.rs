//! `mgc`: the chat database: its tables, how its events apply, its reads.

use crate::database;
use crate::machine::{Engine, Machine};
use pchat_domain::decide::DecideError;
use pchat_domain::*;
use pchat_store::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::Arc;

pub struct ChatMachine;

impl Machine for ChatMachine {
    type Command = Command;
    type Event = Event;
    type Outcome = Outcome;

    const SCHEMA_VERSION: i64 = 2;
    const SCHEMA: &'static str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    admin INTEGER NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- member: a principal key (see Principal::key): users > 0, groups < 0.
CREATE TABLE IF NOT EXISTS group_members (
    group_id INTEGER NOT NULL,
    member INTEGER NOT NULL,
    PRIMARY KEY (group_id, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_by_member ON group_members (member, group_id);
CREATE TABLE IF NOT EXISTS categories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    file_upload INTEGER NOT NULL,
    invitations INTEGER NOT NULL,
    chat_history INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS category_lists (
    category_id INTEGER NOT NULL,
    list TEXT NOT NULL,
    principal INTEGER NOT NULL,
    PRIMARY KEY (category_id, list, principal)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS addins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rooms (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    category_id INTEGER NOT NULL,
    description TEXT NOT NULL,
    privacy TEXT NOT NULL,
    type TEXT NOT NULL,
    created_by INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    disabled INTEGER NOT NULL,
    invitations TEXT NOT NULL,
    addin_id INTEGER
);
CREATE INDEX IF NOT EXISTS rooms_by_category ON rooms (category_id);
CREATE TABLE IF NOT EXISTS room_roles (
    room_id INTEGER NOT NULL,
    role TEXT NOT NULL,
    principal INTEGER NOT NULL,
    PRIMARY KEY (room_id, role, principal)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS room_roles_by_principal ON room_roles (principal, room_id);
CREATE TABLE IF NOT EXISTS invitations (
    room_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    by_user INTEGER,
    lsn INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS invitations_by_user ON invitations (user_id, room_id);
-- status: 0 kept, 1 replaced by an administrator, 2 removed, 3 not kept
-- (category without history). Only 0 and 1 are history; rows stay so that
-- sequence numbers and client_msg_id retries keep working.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sender_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    alert INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    lsn INTEGER NOT NULL,
    status INTEGER NOT NULL DEFAULT 0,
    -- An uploaded file: its SHA-256, and the whole FileRef as JSON.
    file_sha256 TEXT,
    file TEXT,
    UNIQUE (room_id, seq),
    UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX IF NOT EXISTS messages_by_file ON messages (file_sha256, room_id) WHERE file_sha256 IS NOT NULL;
-- The few rows out of the history, so a room's history is counted from
-- indexes alone (the unique (room_id, seq) index minus these), without
-- reading every message row: the runbooks' verification counts them.
CREATE INDEX IF NOT EXISTS messages_out_of_history ON messages (room_id) WHERE status >= 2;
CREATE TABLE IF NOT EXISTS feeds (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    feed TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feeds_by_user ON feeds (user_id);
CREATE TABLE IF NOT EXISTS configuration (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    config TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (
    body, content = 'messages', content_rowid = 'id', tokenize = 'unicode61'
);
";

    fn decide(
        conn: &Connection,
        now: Timestamp,
        command: Command,
    ) -> Result<(Vec<Event>, Outcome), StoreError> {
        decide(&SqlState(conn), now, command).map_err(|e| match e {
            DecideError::Domain(d) => StoreError::Domain(d),
            DecideError::State(s) => StoreError::Internal(s.0),
        })
    }

    fn apply(conn: &Connection, lsn: Lsn, event: &Event) -> rusqlite::Result<()> {
        match event {
            Event::UserCreated {
                user,
                password_hash,
            } => {
                conn.prepare_cached(
                    "INSERT INTO users (id, name, name_key, display_name, admin, password_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    user.id,
                    user.name,
                    name_key(&user.name),
                    user.display_name,
                    user.admin,
                    password_hash,
                    user.created_at
                ])?;
            }
            Event::SessionCreated {
                token_hash,
                user,
                at,
            } => {
                conn.prepare_cached(
                    "INSERT INTO sessions (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![token_hash, user, at])?;
            }
            Event::SessionEnded { token_hash } => {
                conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                    .execute(params![token_hash])?;
            }
            Event::GroupCreated { group: g } | Event::GroupUpdated { group: g } => {
                conn.prepare_cached(
                    "INSERT INTO groups (id, name, name_key, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key,
                        description = excluded.description",
                )?
                .execute(params![g.id, g.name, name_key(&g.name), g.description, g.created_at])?;
            }
            Event::GroupMembersChanged {
                group,
                added,
                removed,
            } => {
                let mut add = conn.prepare_cached(
                    "INSERT OR IGNORE INTO group_members (group_id, member) VALUES (?1, ?2)",
                )?;
                for p in added {
                    add.execute(params![group, p.key()])?;
                }
                let mut del = conn.prepare_cached(
                    "DELETE FROM group_members WHERE group_id = ?1 AND member = ?2",
                )?;
                for p in removed {
                    del.execute(params![group, p.key()])?;
                }
            }
            Event::GroupDeleted { group } => {
                let key = Principal::Group(*group).key();
                conn.execute("DELETE FROM groups WHERE id = ?1", [group])?;
                conn.execute(
                    "DELETE FROM group_members WHERE group_id = ?1 OR member = ?2",
                    params![group, key],
                )?;
                conn.execute("DELETE FROM category_lists WHERE principal = ?1", [key])?;
                conn.execute("DELETE FROM room_roles WHERE principal = ?1", [key])?;
            }
            Event::CategoryCreated { category: c } | Event::CategoryUpdated { category: c } => {
                conn.prepare_cached(
                    "INSERT INTO categories (id, name, name_key, description, created_at, file_upload, invitations, chat_history)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key,
                        description = excluded.description, file_upload = excluded.file_upload,
                        invitations = excluded.invitations, chat_history = excluded.chat_history",
                )?
                .execute(params![
                    c.id,
                    c.name,
                    name_key(&c.name),
                    c.description,
                    c.created_at,
                    c.file_upload,
                    c.invitations,
                    c.chat_history
                ])?;
            }
            Event::CategoryListChanged {
                category,
                list,
                added,
                removed,
            } => {
                let mut add = conn.prepare_cached(
                    "INSERT OR IGNORE INTO category_lists (category_id, list, principal) VALUES (?1, ?2, ?3)",
                )?;
                for p in added {
                    add.execute(params![category, list.as_str(), p.key()])?;
                }
                let mut del = conn.prepare_cached(
                    "DELETE FROM category_lists WHERE category_id = ?1 AND list = ?2 AND principal = ?3",
                )?;
                for p in removed {
                    del.execute(params![category, list.as_str(), p.key()])?;
                }
            }
            Event::CategoryDeleted { category } => {
                conn.execute("DELETE FROM categories WHERE id = ?1", [category])?;
                conn.execute(
                    "DELETE FROM category_lists WHERE category_id = ?1",
                    [category],
                )?;
            }
            Event::RoomCreated { room: r } | Event::RoomUpdated { room: r } => {
                conn.prepare_cached(
                    "INSERT INTO rooms (id, name, name_key, category_id, description, privacy, type, created_by, created_at, last_seq, disabled, invitations, addin_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key,
                        category_id = excluded.category_id, description = excluded.description,
                        privacy = excluded.privacy, type = excluded.type, disabled = excluded.disabled,
                        invitations = excluded.invitations, addin_id = excluded.addin_id",
                )?
                .execute(params![
                    r.id,
                    r.name,
                    name_key(&r.name),
                    r.category,
                    r.description,
                    r.privacy.as_str(),
                    r.room_type.as_str(),
                    r.created_by,
                    r.created_at,
                    r.last_seq,
                    r.disabled,
                    r.invitations.as_str(),
                    r.addin
                ])?;
            }
            Event::RoomDeleted { room } => {
                conn.execute(
                    "INSERT INTO messages_fts (messages_fts, rowid, body)
                     SELECT 'delete', id, body FROM messages WHERE room_id = ?1",
                    [room],
                )?;
                conn.execute("DELETE FROM messages WHERE room_id = ?1", [room])?;
                conn.execute("DELETE FROM room_roles WHERE room_id = ?1", [room])?;
                conn.execute("DELETE FROM invitations WHERE room_id = ?1", [room])?;
                conn.execute("DELETE FROM rooms WHERE id = ?1", [room])?;
            }
            Event::RoleGranted {
                room,
                role,
                principals,
            } => {
                let mut stmt = conn.prepare_cached(
                    "INSERT OR IGNORE INTO room_roles (room_id, role, principal) VALUES (?1, ?2, ?3)",
                )?;
                for p in principals {
                    stmt.execute(params![room, role.as_str(), p.key()])?;
                }
            }
            Event::RoleRevoked {
                room,
                role,
                principals,
            } => {
                let mut stmt = conn.prepare_cached(
                    "DELETE FROM room_roles WHERE room_id = ?1 AND role = ?2 AND principal = ?3",
                )?;
                for p in principals {
                    stmt.execute(params![room, role.as_str(), p.key()])?;
                }
            }
            Event::Invited { room, user, by } => {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO invitations (room_id, user_id, by_user, lsn) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![room, user, by, lsn])?;
            }
            Event::InvitationClosed { room, user } => {
                conn.prepare_cached("DELETE FROM invitations WHERE room_id = ?1 AND user_id = ?2")?
                    .execute(params![room, user])?;
            }
            Event::AddInCreated { addin: a } => {
                conn.prepare_cached(
                    "INSERT INTO addins (id, name, name_key, url) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![a.id, a.name, name_key(&a.name), a.url])?;
            }
            Event::AddInDeleted { addin } => {
                conn.execute("DELETE FROM addins WHERE id = ?1", [addin])?;
                conn.execute(
                    "UPDATE rooms SET addin_id = NULL WHERE addin_id = ?1",
                    [addin],
                )?;
            }
            Event::MessagePosted { message: m, unkept } => {
                // The sequence guard: a message applies only right after the
                // room's previous one, so a bad log can never leave a gap.
                let moved = conn
                    .prepare_cached(
                        "UPDATE rooms SET last_seq = ?1 WHERE id = ?2 AND last_seq = ?3",
                    )?
                    .execute(params![m.seq, m.room, m.seq - 1])?;
                if moved != 1 {
                    return Err(rusqlite::Error::ToSqlConversionFailure(
                        format!(
                            "message seq {} does not follow room {}'s last message",
                            m.seq, m.room
                        )
                        .into(),
                    ));
                }
                let status = if *unkept { STATUS_UNKEPT } else { STATUS_KEPT };
                insert_message(conn, lsn, m, status)?;
            }
            Event::MessagesChanged { room, seqs, change } => {
                let seqs = serde_json::to_string(seqs)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                let ids = history_ids(
                    conn,
                    "room_id = ?1 AND seq IN (SELECT value FROM json_each(?2))",
                    params![room, seqs],
                )?;
                match change {
                    MessageChange::Removed => {
                        rewrite_messages(conn, &ids, "", STATUS_REMOVED)?;
                    }
                    MessageChange::Replaced(text) => {
                        rewrite_messages(conn, &ids, text, STATUS_REPLACED)?;
                    }
                }
            }
            // Kept in the log (and so in compliance) only.
            Event::Accessed { .. } => {}
            Event::MessagesImported { room, messages } => {
                let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
                    return Ok(());
                };
                // The same guard as for posts: imports only extend a room.
                let moved = conn
                    .prepare_cached(
                        "UPDATE rooms SET last_seq = ?1 WHERE id = ?2 AND last_seq < ?3",
                    )?
                    .execute(params![last.seq, room, first.seq])?;
                if moved != 1 {
                    return Err(rusqlite::Error::ToSqlConversionFailure(
                        format!("imported messages do not extend room {room}").into(),
                    ));
                }
                for m in messages {
                    insert_message(
                        conn,
                        lsn,
                        m,
                        if m.replaced {
                            STATUS_REPLACED
                        } else {
                            STATUS_KEPT
                        },
                    )?;
                }
            }
            Event::FeedSaved { feed } => {
                let json = serde_json::to_string(feed)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                conn.execute(
                    "INSERT INTO feeds (id, user_id, name, feed) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, feed = excluded.feed",
                    params![feed.id, feed.user, feed.name, json],
                )?;
            }
            Event::FeedDeleted { feed, .. } => {
                conn.execute("DELETE FROM feeds WHERE id = ?1", [feed])?;
            }
            Event::ConfigurationSet { config } => {
                let json = serde_json::to_string(config)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                conn.execute(
                    "INSERT INTO configuration (id, config) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET config = excluded.config",
                    [json],
                )?;
            }
            Event::RoomCleared { room, until } => {
                let ids = history_ids(conn, "room_id = ?1 AND ts <= ?2", params![room, until])?;
                rewrite_messages(conn, &ids, "", STATUS_REMOVED)?;
            }
        }
        Ok(())
    }
}

/// Inserts a message row and its full-text entry. A message not kept (a
/// category without history) keeps no body, and an empty index entry, so
/// the index always matches its content table.
fn insert_message(conn: &Connection, lsn: Lsn, m: &Message, status: i64) -> rusqlite::Result<()> {
    let body = if status == STATUS_UNKEPT {
        ""
    } else {
        m.body.as_str()
    };
    let file = match &m.file {
        Some(f) => Some(
            serde_json::to_string(f)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
        ),
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO messages (room_id, seq, sender_id, ts, body, alert, client_msg_id, lsn, status, file_sha256, file)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        m.room,
        m.seq,
        m.sender,
        m.ts,
        body,
        m.alert,
        m.client_msg_id,
        lsn,
        status,
        m.file.as_ref().map(|f| f.sha256.as_str()),
        file
    ])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached("INSERT INTO messages_fts (rowid, body) VALUES (?1, ?2)")?
        .execute(params![id, body])?;
    Ok(())
}

const STATUS_KEPT: i64 = 0;
const STATUS_REPLACED: i64 = 1;
const STATUS_REMOVED: i64 = 2;
const STATUS_UNKEPT: i64 = 3;

/// Ids (as a JSON array) of the history messages (kept or replaced) that match.
fn history_ids(
    conn: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT json_group_array(id) FROM messages WHERE {filter} AND {IN_HISTORY}"
    ))?;
    stmt.query_row(p, |r| r.get(0))
}

/// Gives messages a new body and status, keeping the full-text index in
/// step: every row of `messages` has exactly one index entry (an external
/// content FTS5 table must match its content), so the old text is
/// withdrawn and the new one (possibly empty) indexed.
fn rewrite_messages(conn: &Connection, ids: &str, body: &str, status: i64) -> rusqlite::Result<()> {
    const WHICH: &str = "id IN (SELECT value FROM json_each(?1))";
    conn.prepare_cached(&format!(
        "INSERT INTO messages_fts (messages_fts, rowid, body)
         SELECT 'delete', id, body FROM messages WHERE {WHICH}"
    ))?
    .execute([ids])?;
    conn.prepare_cached(&format!(
        "UPDATE messages SET body = ?2, status = ?3 WHERE {WHICH}"
    ))?
    .execute(params![ids, body, status])?;
    conn.prepare_cached(&format!(
        "INSERT INTO messages_fts (rowid, body) SELECT id, body FROM messages WHERE {WHICH}"
    ))?
    .execute([ids])?;
    Ok(())
}

/// The domain's view of the state, over a connection (the write transaction).
struct SqlState<'c>(&'c Connection);

fn st(e: rusqlite::Error) -> StateError {
    StateError(e.to_string())
}

const USER_COLS: &str = "id, name, display_name, admin, created_at";
const ROOM_COLS: &str = "id, name, category_id, description, privacy, type, created_by, created_at, last_seq, disabled, invitations, addin_id";
const CATEGORY_COLS: &str =
    "id, name, description, created_at, file_upload, invitations, chat_history";
const MESSAGE_COLS: &str = "room_id, seq, sender_id, ts, body, alert, client_msg_id, status, file";
/// A principal key (`principal` column) as written in lists.
const PRINCIPAL_NAME: &str = "CASE
    WHEN principal > 0 THEN (SELECT name FROM users WHERE id = principal)
    WHEN principal < 0 THEN 'group:' || (SELECT name FROM groups WHERE id = -principal)
    ELSE '*' END";
/// Messages that are history (kept or replaced).
const IN_HISTORY: &str = "status IN (0, 1)";

fn user_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        display_name: r.get(2)?,
        admin: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn category_row(r: &Row) -> rusqlite::Result<Category> {
    Ok(Category {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        created_at: r.get(3)?,
        file_upload: r.get(4)?,
        invitations: r.get(5)?,
        chat_history: r.get(6)?,
    })
}

fn group_row(r: &Row) -> rusqlite::Result<Group> {
    Ok(Group {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn addin_row(r: &Row) -> rusqlite::Result<AddIn> {
    Ok(AddIn {
        id: r.get(0)?,
        name: r.get(1)?,
        url: r.get(2)?,
    })
}

fn room_row(r: &Row) -> rusqlite::Result<RoomInfo> {
    let privacy: String = r.get(4)?;
    let kind: String = r.get(5)?;
    Ok(RoomInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        category: r.get(2)?,
        description: r.get(3)?,
        privacy: Privacy::parse(&privacy).unwrap_or_default(),
        room_type: RoomType::parse(&kind).unwrap_or_default(),
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        last_seq: r.get(8)?,
        disabled: r.get(9)?,
        invitations: Invitations::parse(&r.get::<_, String>(10)?).unwrap_or_default(),
        addin: r.get(11)?,
    })
}

fn message_row(r: &Row) -> rusqlite::Result<Message> {
    message_at(r, 0)
}

/// A message from `MESSAGE_COLS` starting at column `i`.
fn message_at(r: &Row, i: usize) -> rusqlite::Result<Message> {
    Ok(Message {
        room: r.get(i)?,
        seq: r.get(i + 1)?,
        sender: r.get(i + 2)?,
        ts: r.get(i + 3)?,
        body: r.get(i + 4)?,
        alert: r.get(i + 5)?,
        client_msg_id: r.get(i + 6)?,
        replaced: r.get::<_, i64>(i + 7)? == STATUS_REPLACED,
        file: file_col(r, i + 8)?,
    })
}

/// A search hit: the message's row id (the paging cursor), then `MESSAGE_COLS`.
fn hit_row(r: &Row) -> rusqlite::Result<SearchHit> {
    Ok(SearchHit {
        id: r.get(0)?,
        message: message_at(r, 1)?,
    })
}

/// `MESSAGE_COLS` of the table aliased `m`.
fn message_cols_of_m() -> String {
    MESSAGE_COLS
        .split(", ")
        .map(|col| format!("m.{col}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `file` column: the FileRef as JSON, or NULL.
fn file_col(r: &Row, i: usize) -> rusqlite::Result<Option<FileRef>> {
    match r.get::<_, Option<String>>(i)? {
        Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        }),
        None => Ok(None),
    }
}

fn feeds(conn: &Connection, user: UserId) -> rusqlite::Result<Vec<Feed>> {
    let mut stmt = conn.prepare_cached("SELECT feed FROM feeds WHERE user_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([user], |r| {
        let json: String = r.get(0)?;
        serde_json::from_str(&json).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
    })?;
    rows.collect()
}

fn configuration(conn: &Connection) -> rusqlite::Result<PoolConfig> {
    let json: Option<String> = one(
        conn,
        "SELECT config FROM configuration WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    match json {
        Some(j) => serde_json::from_str(&j).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        }),
        None => Ok(PoolConfig::default()),
    }
}

fn one<T>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    conn.prepare_cached(sql)?.query_row(p, f).optional()
}

/// The user's principal keys: the user and every group holding them
/// (nested groups included; `UNION` stops at cycles).
const MINE: &str = "WITH RECURSIVE g(id) AS (
        SELECT group_id FROM group_members WHERE member = ?1
        UNION SELECT gm.group_id FROM group_members gm JOIN g ON gm.member = -g.id),
    mine(p) AS (SELECT ?1 UNION ALL SELECT -id FROM g)";

fn access(conn: &Connection, room: RoomId, user: UserId) -> rusqlite::Result<Access> {
    let mut stmt = conn.prepare_cached(&format!(
        "{MINE}
        SELECT
            (SELECT group_concat(role) FROM room_roles
              WHERE room_id = ?2 AND principal IN (SELECT p FROM mine)),
            EXISTS (SELECT 1 FROM category_lists
              WHERE category_id = (SELECT category_id FROM rooms WHERE id = ?2) AND list = 'allowed'
                AND (principal = 0 OR principal IN (SELECT p FROM mine))),
            EXISTS (SELECT 1 FROM category_lists
              WHERE category_id = (SELECT category_id FROM rooms WHERE id = ?2) AND list = 'denied'
                AND (principal = 0 OR principal IN (SELECT p FROM mine))),
            EXISTS (SELECT 1 FROM invitations WHERE room_id = ?2 AND user_id = ?1)"
    ))?;
    stmt.query_row(params![user, room], |r| {
        let roles: Option<String> = r.get(0)?;
        let mut a = Access {
            allowed: category_permits(r.get(1)?, r.get(2)?),
            invited: r.get(3)?,
            ..Access::default()
        };
        for role in roles.as_deref().unwrap_or("").split(',') {
            grant(&mut a, role);
        }
        Ok(a)
    })
}

fn grant(a: &mut Access, role: &str) {
    match Role::parse(role) {
        Some(Role::Member) => a.member = true,
        Some(Role::Manager) => a.manager = true,
        Some(Role::Presenter) => a.presenter = true,
        None => {}
    }
}

fn principals(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Principal>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(p, |r| Ok(Principal::from_key(r.get(0)?)))?;
    rows.collect()
}

fn next_id(conn: &Connection, table: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(&format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"))?
        .query_row([], |r| r.get(0))
}

impl State for SqlState<'_> {
    fn user(&self, id: UserId) -> Result<Option<User>, StateError> {
        one(
            self.0,
            &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            [id],
            user_row,
        )
        .map_err(st)
    }
    fn user_by_name(&self, name: &str) -> Result<Option<User>, StateError> {
        one(
            self.0,
            &format!("SELECT {USER_COLS} FROM users WHERE name_key = ?1"),
            [name_key(name)],
            user_row,
        )
        .map_err(st)
    }
    fn user_count(&self) -> Result<i64, StateError> {
        self.0
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .map_err(st)
    }
    fn next_user_id(&self) -> Result<UserId, StateError> {
        self.0
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM users", [], |r| {
                r.get(0)
            })
            .map_err(st)
    }
    fn category(&self, id: CategoryId) -> Result<Option<Category>, StateError> {
        one(
            self.0,
            &format!("SELECT {CATEGORY_COLS} FROM categories WHERE id = ?1"),
            [id],
            category_row,
        )
        .map_err(st)
    }
    fn category_by_name(&self, name: &str) -> Result<Option<Category>, StateError> {
        one(
            self.0,
            &format!("SELECT {CATEGORY_COLS} FROM categories WHERE name_key = ?1"),
            [name_key(name)],
            category_row,
        )
        .map_err(st)
    }
    fn next_category_id(&self) -> Result<CategoryId, StateError> {
        self.0
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM categories", [], |r| {
                r.get(0)
            })
            .map_err(st)
    }
    fn room(&self, id: RoomId) -> Result<Option<RoomInfo>, StateError> {
        one(
            self.0,
            &format!("SELECT {ROOM_COLS} FROM rooms WHERE id = ?1"),
            [id],
            room_row,
        )
        .map_err(st)
    }
    fn room_by_name(&self, name: &str) -> Result<Option<RoomInfo>, StateError> {
        one(
            self.0,
            &format!("SELECT {ROOM_COLS} FROM rooms WHERE name_key = ?1"),
            [name_key(name)],
            room_row,
        )
        .map_err(st)
    }
    fn next_room_id(&self) -> Result<RoomId, StateError> {
        self.0
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM rooms", [], |r| {
                r.get(0)
            })
            .map_err(st)
    }
    fn access(&self, room: RoomId, user: UserId) -> Result<Access, StateError> {
        access(self.0, room, user).map_err(st)
    }
    fn room_entries(&self, room: RoomId, role: Role) -> Result<Vec<Principal>, StateError> {
        principals(
            self.0,
            "SELECT principal FROM room_roles WHERE room_id = ?1 AND role = ?2 ORDER BY principal",
            params![room, role.as_str()],
        )
        .map_err(st)
    }
    fn group(&self, id: GroupId) -> Result<Option<Group>, StateError> {
        one(
            self.0,
            "SELECT id, name, description, created_at FROM groups WHERE id = ?1",
            [id],
            group_row,
        )
        .map_err(st)
    }
    fn group_by_name(&self, name: &str) -> Result<Option<Group>, StateError> {
        one(
            self.0,
            "SELECT id, name, description, created_at FROM groups WHERE name_key = ?1",
            [name_key(name)],
            group_row,
        )
        .map_err(st)
    }
    fn next_group_id(&self) -> Result<GroupId, StateError> {
        next_id(self.0, "groups").map_err(st)
    }
    fn group_members(&self, id: GroupId) -> Result<Vec<Principal>, StateError> {
        principals(
            self.0,
            "SELECT member FROM group_members WHERE group_id = ?1 ORDER BY member",
            [id],
        )
        .map_err(st)
    }
    fn groups_of(&self, p: Principal) -> Result<std::collections::BTreeSet<GroupId>, StateError> {
        let mut stmt = self
            .0
            .prepare_cached(&format!("{MINE} SELECT id FROM g"))
            .map_err(st)?;
        let rows = stmt.query_map([p.key()], |r| r.get(0)).map_err(st)?;
        rows.collect::<rusqlite::Result<_>>().map_err(st)
    }
    fn category_list(
        &self,
        id: CategoryId,
        list: CategoryList,
    ) -> Result<Vec<Principal>, StateError> {
        principals(
            self.0,
            "SELECT principal FROM category_lists WHERE category_id = ?1 AND list = ?2 ORDER BY principal",
            params![id, list.as_str()],
        )
        .map_err(st)
    }
    fn category_room_count(&self, id: CategoryId) -> Result<i64, StateError> {
        self.0
            .query_row(
                "SELECT count(*) FROM rooms WHERE category_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(st)
    }
    fn addin(&self, id: AddInId) -> Result<Option<AddIn>, StateError> {
        one(
            self.0,
            "SELECT id, name, url FROM addins WHERE id = ?1",
            [id],
            addin_row,
        )
        .map_err(st)
    }
    fn addin_by_name(&self, name: &str) -> Result<Option<AddIn>, StateError> {
        one(
            self.0,
            "SELECT id, name, url FROM addins WHERE name_key = ?1",
            [name_key(name)],
            addin_row,
        )
        .map_err(st)
    }
    fn next_addin_id(&self) -> Result<AddInId, StateError> {
        next_id(self.0, "addins").map_err(st)
    }
    fn matching_messages(
        &self,
        room: Option<RoomId>,
        sender: Option<UserId>,
        filter: &MessageFilter,
        limit: usize,
    ) -> Result<Vec<(RoomId, Vec<Seq>)>, StateError> {
        let mut stmt = self
            .0
            .prepare_cached(&format!(
                "SELECT room_id, seq FROM messages
                 WHERE {IN_HISTORY}
                   AND (?1 IS NULL OR room_id = ?1) AND (?2 IS NULL OR sender_id = ?2)
                   AND (?3 IS NULL OR instr(lower(body), lower(?3)) > 0)
                   AND (?4 IS NULL OR ts >= ?4) AND (?5 IS NULL OR ts <= ?5)
                 ORDER BY room_id, seq LIMIT ?6"
            ))
            .map_err(st)?;
        let rows = stmt
            .query_map(
                params![
                    room,
                    sender,
                    filter.text,
                    filter.since,
                    filter.until,
                    limit as i64
                ],
                |r| Ok((r.get::<_, RoomId>(0)?, r.get::<_, Seq>(1)?)),
            )
            .map_err(st)?;
        let mut out: Vec<(RoomId, Vec<Seq>)> = Vec::new();
        for row in rows {
            let (room, seq) = row.map_err(st)?;
            match out.last_mut() {
                Some((r, seqs)) if *r == room => seqs.push(seq),
                _ => out.push((room, vec![seq])),
            }
        }
        Ok(out)
    }
    fn message_by_client_id(
        &self,
        sender: UserId,
        id: &str,
    ) -> Result<Option<Message>, StateError> {
        one(
            self.0,
            &format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE sender_id = ?1 AND client_msg_id = ?2"
            ),
            params![sender, id],
            message_row,
        )
        .map_err(st)
    }
    fn configuration(&self) -> Result<PoolConfig, StateError> {
        configuration(self.0).map_err(st)
    }
    fn feeds(&self, user: UserId) -> Result<Vec<Feed>, StateError> {
        feeds(self.0, user).map_err(st)
    }
    fn next_feed_id(&self) -> Result<FeedId, StateError> {
        next_id(self.0, "feeds").map_err(st)
    }
    fn session_user(&self, token_hash: &str) -> Result<Option<UserId>, StateError> {
        one(
            self.0,
            "SELECT user_id FROM sessions WHERE token_hash = ?1",
            [token_hash],
            |r| r.get(0),
        )
        .map_err(st)
    }
}

/// `mgc`, open, as the chat server's [`ChatStore`].
pub struct ChatEngine {
    engine: Arc<Engine<ChatMachine>>,
}

impl ChatEngine {
    pub fn open(path: &Path) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(ChatEngine {
            engine: Engine::open(path, "mgc")?,
        }))
    }

    /// Stops taking commands and waits until everything queued is committed.
    pub fn close(&self) {
        self.engine.close()
    }

    /// The engine underneath (log shipping and mirroring follow its log).
    pub fn engine(&self) -> &Arc<Engine<ChatMachine>> {
        &self.engine
    }
}

/// Turns a free-text search into an FTS5 query: each word quoted (so no input
/// is FTS syntax), all words required, the last one as a prefix.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(format!("{}*", words.join(" ")))
}

impl ChatStore for ChatEngine {
    fn submit(&self, command: Envelope) -> BoxFuture<'static, Result<Committed, StoreError>> {
        let answer = self.engine.submit(&command.origin, command.command);
        Box::pin(async move {
            let (lsn, outcome) = answer.await?;
            Ok(Committed { lsn, outcome })
        })
    }

    fn subscribe(&self, after: Lsn) -> Result<Subscription, StoreError> {
        Ok(self.engine.subscribe(after))
    }

    fn identity(&self) -> BoxFuture<'_, Result<Identity, StoreError>> {
        Box::pin(async move {
            self.engine
                .read(database::read_identity)
                .await?
                .ok_or_else(|| StoreError::Internal("database has no identity".into()))
        })
    }

    fn metrics(&self) -> Arc<StoreMetrics> {
        self.engine.metrics()
    }

    fn user(&self, id: UserId) -> BoxFuture<'_, Result<Option<User>, StoreError>> {
        Box::pin(
            self.engine
                .read(move |c| SqlState(c).user(id).map_err(state_to_sql)),
        )
    }

    fn credentials(
        &self,
        name: String,
    ) -> BoxFuture<'_, Result<Option<(User, String)>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLS}, password_hash FROM users WHERE name_key = ?1"),
                [name_key(&name)],
                |r| Ok((user_row(r)?, r.get(5)?)),
            )
        }))
    }

    fn session_user(&self, token_hash: String) -> BoxFuture<'_, Result<Option<User>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            one(
                c,
                "SELECT u.id, u.name, u.display_name, u.admin, u.created_at
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
                [token_hash],
                user_row,
            )
        }))
    }

    fn user_count(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(
            self.engine
                .read(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))),
        )
    }

    fn category(&self, id: CategoryId) -> BoxFuture<'_, Result<Option<Category>, StoreError>> {
        Box::pin(
            self.engine
                .read(move |c| SqlState(c).category(id).map_err(state_to_sql)),
        )
    }

    fn categories(&self) -> BoxFuture<'_, Result<Vec<Category>, StoreError>> {
        Box::pin(self.engine.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {CATEGORY_COLS} FROM categories ORDER BY id"
            ))?;
            let rows = stmt.query_map([], category_row)?;
            rows.collect()
        }))
    }

    fn room(&self, id: RoomId) -> BoxFuture<'_, Result<Option<RoomInfo>, StoreError>> {
        Box::pin(
            self.engine
                .read(move |c| SqlState(c).room(id).map_err(state_to_sql)),
        )
    }

    fn room_roles(&self, id: RoomId) -> BoxFuture<'_, Result<RoomRoles, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            let mut roles = RoomRoles::default();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT rr.role, {PRINCIPAL_NAME} AS n FROM room_roles rr
                 WHERE rr.room_id = ?1 ORDER BY lower(n)"
            ))?;
            let mut rows = stmt.query([id])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(1)?;
                match Role::parse(&r.get::<_, String>(0)?) {
                    Some(Role::Member) => roles.members.push(name),
                    Some(Role::Manager) => roles.managers.push(name),
                    Some(Role::Presenter) => roles.presenters.push(name),
                    None => {}
                }
            }
            Ok(roles)
        }))
    }

    fn access(&self, room: RoomId, user: UserId) -> BoxFuture<'_, Result<Access, StoreError>> {
        Box::pin(self.engine.read(move |c| access(c, room, user)))
    }

    fn rooms_with_access(
        &self,
        user: UserId,
    ) -> BoxFuture<'_, Result<Vec<(RoomInfo, Access)>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {ROOM_COLS} FROM rooms ORDER BY name_key"))?;
            let rooms = stmt
                .query_map([], room_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut roles = std::collections::HashMap::<RoomId, Access>::new();
            let mut stmt = c.prepare_cached(&format!(
                "{MINE} SELECT room_id, role FROM room_roles WHERE principal IN (SELECT p FROM mine)"
            ))?;
            let mut rows = stmt.query([user])?;
            while let Some(r) = rows.next()? {
                grant(roles.entry(r.get(0)?).or_default(), &r.get::<_, String>(1)?);
            }
            let mut stmt = c.prepare_cached(
                "SELECT room_id FROM invitations WHERE user_id = ?1",
            )?;
            let mut rows = stmt.query([user])?;
            while let Some(r) = rows.next()? {
                roles.entry(r.get(0)?).or_default().invited = true;
            }
            // The category's verdict, once per category.
            let mut verdict = std::collections::HashMap::<CategoryId, bool>::new();
            let mut stmt = c.prepare_cached(&format!(
                "{MINE} SELECT category_id, list FROM category_lists
                 WHERE list IN ('allowed', 'denied') AND (principal = 0 OR principal IN (SELECT p FROM mine))"
            ))?;
            let mut named = std::collections::HashSet::<(CategoryId, String)>::new();
            let mut rows = stmt.query([user])?;
            while let Some(r) = rows.next()? {
                named.insert((r.get(0)?, r.get(1)?));
            }
            let mut out = Vec::with_capacity(rooms.len());
            for room in rooms {
                let allowed = *verdict.entry(room.category).or_insert_with(|| {
                    category_permits(
                        named.contains(&(room.category, "allowed".to_string())),
                        named.contains(&(room.category, "denied".to_string())),
                    )
                });
                let mut a = roles.get(&room.id).copied().unwrap_or_default();
                a.allowed = allowed;
                out.push((room, a));
            }
            Ok(out)
        }))
    }

    fn feeds(&self, user: UserId) -> BoxFuture<'_, Result<Vec<Feed>, StoreError>> {
        Box::pin(self.engine.read(move |c| feeds(c, user)))
    }

    fn feed_messages(
        &self,
        feed: Feed,
        rooms: Vec<RoomId>,
        before: Option<i64>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<SearchHit>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            let rooms = serde_json::to_string(&rooms).unwrap_or_else(|_| "[]".into());
            let senders = if feed.senders.is_empty() {
                None
            } else {
                serde_json::to_string(&feed.senders).ok()
            };
            // Whole words, all required (no prefix match, unlike search).
            let fts = if feed.words.is_empty() {
                None
            } else {
                Some(
                    feed.words
                        .iter()
                        .map(|w| format!("\"{w}\""))
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            };
            let cols = message_cols_of_m();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT m.id, {cols} FROM messages m
                 WHERE m.room_id IN (SELECT value FROM json_each(?1)) AND m.{IN_HISTORY}
                   AND (?2 IS NULL OR m.sender_id IN (SELECT value FROM json_each(?2)))
                   AND (?3 IS NULL OR m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?3))
                   AND m.id < ?4
                 ORDER BY m.id DESC LIMIT ?5"
            ))?;
            let rows = stmt.query_map(
                params![rooms, senders, fts, before.unwrap_or(i64::MAX), limit],
                hit_row,
            )?;
            rows.collect()
        }))
    }

    fn configuration(&self) -> BoxFuture<'_, Result<PoolConfig, StoreError>> {
        Box::pin(self.engine.read(configuration))
    }

    fn file_in_room(
        &self,
        room: RoomId,
        sha256: String,
    ) -> BoxFuture<'_, Result<Option<FileRef>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            let json: Option<Option<String>> = one(
                c,
                &format!(
                    "SELECT file FROM messages WHERE file_sha256 = ?1 AND room_id = ?2 AND {IN_HISTORY} LIMIT 1"
                ),
                params![sha256, room],
                |r| r.get(0),
            )?;
            match json.flatten() {
                Some(j) => serde_json::from_str(&j).map(Some).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
                }),
                None => Ok(None),
            }
        }))
    }

    fn users(&self) -> BoxFuture<'_, Result<Vec<User>, StoreError>> {
        Box::pin(self.engine.read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {USER_COLS} FROM users ORDER BY name_key"))?;
            let rows = stmt.query_map([], user_row)?;
            rows.collect()
        }))
    }

    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupDetails>, StoreError>> {
        Box::pin(self.engine.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, name, description, created_at FROM groups ORDER BY name_key",
            )?;
            let groups = stmt
                .query_map([], group_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            groups.into_iter().map(|g| group_details(c, g)).collect()
        }))
    }

    fn group(&self, id: GroupId) -> BoxFuture<'_, Result<Option<GroupDetails>, StoreError>> {
        Box::pin(self.engine.read(
            move |c| match SqlState(c).group(id).map_err(state_to_sql)? {
                Some(g) => Ok(Some(group_details(c, g)?)),
                None => Ok(None),
            },
        ))
    }

    fn category_lists(&self, id: CategoryId) -> BoxFuture<'_, Result<CategoryLists, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            let mut lists = CategoryLists::default();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT list, {PRINCIPAL_NAME} AS n FROM category_lists
                 WHERE category_id = ?1 ORDER BY lower(n)"
            ))?;
            let mut rows = stmt.query([id])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(1)?;
                match CategoryList::parse(&r.get::<_, String>(0)?) {
                    Some(CategoryList::Allowed) => lists.allowed.push(name),
                    Some(CategoryList::Denied) => lists.denied.push(name),
                    Some(CategoryList::Creators) => lists.creators.push(name),
                    None => {}
                }
            }
            Ok(lists)
        }))
    }

    fn addins(&self) -> BoxFuture<'_, Result<Vec<AddIn>, StoreError>> {
        Box::pin(self.engine.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT id, name, url FROM addins ORDER BY name_key")?;
            let rows = stmt.query_map([], addin_row)?;
            rows.collect()
        }))
    }

    fn invitations(&self, user: UserId) -> BoxFuture<'_, Result<Vec<Invitation>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT room_id, by_user FROM invitations WHERE user_id = ?1 ORDER BY lsn",
            )?;
            let rows = stmt.query_map([user], |r| {
                Ok(Invitation {
                    room: r.get(0)?,
                    by: r.get(1)?,
                })
            })?;
            rows.collect()
        }))
    }

    fn eligible(&self, room: RoomId) -> BoxFuture<'_, Result<Vec<(User, Access)>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            // Down from the room's entries through nested groups to users.
            let mut stmt = c.prepare_cached(&format!(
                "WITH RECURSIVE reach(p) AS (
                    SELECT principal FROM room_roles WHERE room_id = ?1
                    UNION SELECT gm.member FROM group_members gm JOIN reach ON gm.group_id = -reach.p)
                 SELECT {USER_COLS} FROM users WHERE id IN (SELECT p FROM reach WHERE p > 0)
                 ORDER BY name_key"
            ))?;
            let users = stmt
                .query_map([room], user_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            users
                .into_iter()
                .map(|u| {
                    let a = access(c, room, u.id)?;
                    Ok((u, a))
                })
                .collect()
        }))
    }

    fn messages(
        &self,
        room: RoomId,
        page: Page,
    ) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        Box::pin(self.engine.read(move |c| {
            let (sql, a, limit, reverse) = match page {
                Page::Latest { limit } => (
                    format!("SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND seq > ?2 AND {IN_HISTORY} ORDER BY seq DESC LIMIT ?3"),
                    0,
                    limit,
                    true,
                ),
                Page::Before { seq, limit } => (
                    format!("SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND seq < ?2 AND {IN_HISTORY} ORDER BY seq DESC LIMIT ?3"),
                    seq,
                    limit,
                    true,
                ),
                Page::After { seq, limit } => (
                    format!("SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND seq > ?2 AND {IN_HISTORY} ORDER BY seq ASC LIMIT ?3"),
                    seq,
                    limit,
                    false,
                ),
            };
            let mut stmt = c.prepare_cached(&sql)?;
            let mut out = stmt.query_map(params![room, a, limit], message_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            if reverse {
                out.reverse();
            }
            Ok(out)
        }))
    }

    fn search(&self, q: SearchQuery) -> BoxFuture<'_, Result<Vec<SearchHit>, StoreError>> {
        Box::pin(async move {
            let Some(fts) = fts_query(&q.text) else {
                return Ok(vec![]);
            };
            if q.rooms.is_empty() {
                return Ok(vec![]);
            }
            self.engine
                .read(move |c| {
                    let rooms = serde_json::to_string(&q.rooms).unwrap_or_else(|_| "[]".into());
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT m.id, {} FROM messages_fts f JOIN messages m ON m.id = f.rowid
                         WHERE messages_fts MATCH ?1 AND f.rowid < ?2
                           AND m.room_id IN (SELECT value FROM json_each(?3))
                         ORDER BY f.rowid DESC LIMIT ?4",
                        message_cols_of_m()
                    ))?;
                    let rows = stmt.query_map(
                        params![fts, q.before.unwrap_or(i64::MAX), rooms, q.limit],
                        hit_row,
                    )?;
                    rows.collect()
                })
                .await
        })
    }
}

fn group_details(c: &Connection, group: Group) -> rusqlite::Result<GroupDetails> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} AS n FROM group_members WHERE group_id = ?1 ORDER BY lower(n)",
        PRINCIPAL_NAME.replace("principal", "member")
    ))?;
    let members = stmt
        .query_map([group.id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(GroupDetails { group, members })
}

fn state_to_sql(e: StateError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.0.into())
}
