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
CREATE TABLE IF NOT EXISTS categories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL
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
    disabled INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS room_roles (
    room_id INTEGER NOT NULL,
    role TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (room_id, role, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS room_roles_by_user ON room_roles (user_id, room_id);
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
    UNIQUE (room_id, seq),
    UNIQUE (sender_id, client_msg_id)
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
            Event::CategoryCreated { category: c } => {
                conn.prepare_cached(
                    "INSERT INTO categories (id, name, name_key, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![c.id, c.name, name_key(&c.name), c.description, c.created_at])?;
            }
            Event::RoomCreated { room: r } | Event::RoomUpdated { room: r } => {
                conn.prepare_cached(
                    "INSERT INTO rooms (id, name, name_key, category_id, description, privacy, type, created_by, created_at, last_seq, disabled)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key,
                        category_id = excluded.category_id, description = excluded.description,
                        privacy = excluded.privacy, type = excluded.type, disabled = excluded.disabled",
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
                    r.disabled
                ])?;
            }
            Event::RoleGranted { room, role, users } => {
                let mut stmt = conn.prepare_cached(
                    "INSERT OR IGNORE INTO room_roles (room_id, role, user_id) VALUES (?1, ?2, ?3)",
                )?;
                for u in users {
                    stmt.execute(params![room, role.as_str(), u])?;
                }
            }
            Event::RoleRevoked { room, role, users } => {
                let mut stmt = conn.prepare_cached(
                    "DELETE FROM room_roles WHERE room_id = ?1 AND role = ?2 AND user_id = ?3",
                )?;
                for u in users {
                    stmt.execute(params![room, role.as_str(), u])?;
                }
            }
            Event::MessagePosted { message: m } => {
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
                conn.prepare_cached(
                    "INSERT INTO messages (room_id, seq, sender_id, ts, body, alert, client_msg_id, lsn)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![m.room, m.seq, m.sender, m.ts, m.body, m.alert, m.client_msg_id, lsn])?;
                let id = conn.last_insert_rowid();
                conn.prepare_cached("INSERT INTO messages_fts (rowid, body) VALUES (?1, ?2)")?
                    .execute(params![id, m.body])?;
            }
        }
        Ok(())
    }
}

/// The domain's view of the state, over a connection (the write transaction).
struct SqlState<'c>(&'c Connection);

fn st(e: rusqlite::Error) -> StateError {
    StateError(e.to_string())
}

const USER_COLS: &str = "id, name, display_name, admin, created_at";
const ROOM_COLS: &str =
    "id, name, category_id, description, privacy, type, created_by, created_at, last_seq, disabled";
const MESSAGE_COLS: &str = "room_id, seq, sender_id, ts, body, alert, client_msg_id";

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
    })
}

fn message_row(r: &Row) -> rusqlite::Result<Message> {
    Ok(Message {
        room: r.get(0)?,
        seq: r.get(1)?,
        sender: r.get(2)?,
        ts: r.get(3)?,
        body: r.get(4)?,
        alert: r.get(5)?,
        client_msg_id: r.get(6)?,
    })
}

fn one<T>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    conn.prepare_cached(sql)?.query_row(p, f).optional()
}

fn access(conn: &Connection, room: RoomId, user: UserId) -> rusqlite::Result<Access> {
    let mut a = Access::default();
    let mut stmt =
        conn.prepare_cached("SELECT role FROM room_roles WHERE user_id = ?1 AND room_id = ?2")?;
    let mut rows = stmt.query(params![user, room])?;
    while let Some(r) = rows.next()? {
        match Role::parse(&r.get::<_, String>(0)?) {
            Some(Role::Member) => a.member = true,
            Some(Role::Manager) => a.manager = true,
            Some(Role::Presenter) => a.presenter = true,
            None => {}
        }
    }
    Ok(a)
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
            "SELECT id, name, description, created_at FROM categories WHERE id = ?1",
            [id],
            category_row,
        )
        .map_err(st)
    }
    fn category_by_name(&self, name: &str) -> Result<Option<Category>, StateError> {
        one(
            self.0,
            "SELECT id, name, description, created_at FROM categories WHERE name_key = ?1",
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
    fn role_list(&self, room: RoomId, role: Role) -> Result<Vec<UserId>, StateError> {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT user_id FROM room_roles WHERE room_id = ?1 AND role = ?2 ORDER BY user_id",
            )
            .map_err(st)?;
        let rows = stmt
            .query_map(params![room, role.as_str()], |r| r.get(0))
            .map_err(st)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(st)
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
            let mut stmt = c.prepare_cached(
                "SELECT id, name, description, created_at FROM categories ORDER BY id",
            )?;
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
            let mut stmt = c.prepare_cached(
                "SELECT rr.role, u.name FROM room_roles rr JOIN users u ON u.id = rr.user_id
                 WHERE rr.room_id = ?1 ORDER BY u.name_key",
            )?;
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
            let mut out = Vec::new();
            let mut stmt =
                c.prepare_cached(&format!("SELECT {ROOM_COLS} FROM rooms ORDER BY name_key"))?;
            let rooms = stmt
                .query_map([], room_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut roles = std::collections::HashMap::<RoomId, Access>::new();
            let mut stmt =
                c.prepare_cached("SELECT room_id, role FROM room_roles WHERE user_id = ?1")?;
            let mut rows = stmt.query([user])?;
            while let Some(r) = rows.next()? {
                let a = roles.entry(r.get(0)?).or_default();
                match Role::parse(&r.get::<_, String>(1)?) {
                    Some(Role::Member) => a.member = true,
                    Some(Role::Manager) => a.manager = true,
                    Some(Role::Presenter) => a.presenter = true,
                    None => {}
                }
            }
            for room in rooms {
                let a = roles.get(&room.id).copied().unwrap_or_default();
                out.push((room, a));
            }
            Ok(out)
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
                    format!("SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND seq > ?2 ORDER BY seq DESC LIMIT ?3"),
                    0,
                    limit,
                    true,
                ),
                Page::Before { seq, limit } => (
                    format!("SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"),
                    seq,
                    limit,
                    true,
                ),
                Page::After { seq, limit } => (
                    format!("SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3"),
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
                        MESSAGE_COLS
                            .split(", ")
                            .map(|col| format!("m.{col}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))?;
                    let rows = stmt.query_map(
                        params![fts, q.before.unwrap_or(i64::MAX), rooms, q.limit],
                        |r| {
                            Ok(SearchHit {
                                id: r.get(0)?,
                                message: Message {
                                    room: r.get(1)?,
                                    seq: r.get(2)?,
                                    sender: r.get(3)?,
                                    ts: r.get(4)?,
                                    body: r.get(5)?,
                                    alert: r.get(6)?,
                                    client_msg_id: r.get(7)?,
                                },
                            })
                        },
                    )?;
                    rows.collect()
                })
                .await
        })
    }
}

fn state_to_sql(e: StateError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.0.into())
}
