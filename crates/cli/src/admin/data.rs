//! `pchat admin export-data` / `import-data` (Lync's Export- and
//! Import-CsPersistentChatData): a pool's users, groups, add-ins,
//! categories, rooms and history in one portable, versioned file.
//!
//! The file is JSON Lines: a header line (format, version, level, since),
//! one line per item, and an end line with the number of items and the
//! SHA-256 of every line before it, so a truncated or altered file is
//! refused before anything changes. It carries password hashes: keep it
//! like a backup. Both commands work on a data directory (the operator at
//! the machine), never over the network.

use anyhow::{bail, Context};
use pchat_domain::{
    Actor, CategoryChanges, Command, Envelope, GroupChanges, ImportedMessage, Invitations,
    ListChange, PoolConfig, Privacy, RoomChanges, RoomType, Timestamp,
};
use pchat_engine::{ChatEngine, MGC_FILE};
use pchat_store::{ChatStore, Page};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

pub const FORMAT: &str = "pchat-data";
pub const VERSION: u32 = 1;
/// Messages per line (and per import command).
const CHUNK: usize = 1000;

/// What an export holds; each level includes the ones before it.
#[derive(
    clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Users and groups.
    User,
    /// And add-ins and categories.
    Category,
    /// And rooms with their settings and lists.
    RoomDirectory,
    /// And history (since --since).
    Content,
    /// And the pool configuration.
    All,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Header {
        format: String,
        version: u32,
        level: Level,
        since: Option<Timestamp>,
        created_at: Timestamp,
        pchat: String,
        source_family: String,
        source_lsn: i64,
    },
    Config {
        config: PoolConfig,
    },
    User {
        name: String,
        display_name: String,
        admin: bool,
        password_hash: String,
    },
    Group {
        name: String,
        description: String,
        members: Vec<String>,
    },
    Addin {
        name: String,
        url: String,
    },
    Category {
        name: String,
        description: String,
        file_upload: bool,
        invitations: bool,
        chat_history: bool,
        allowed: Vec<String>,
        denied: Vec<String>,
        creators: Vec<String>,
    },
    Room {
        name: String,
        category: String,
        description: String,
        privacy: Privacy,
        room_type: RoomType,
        disabled: bool,
        invitations: Invitations,
        addin: Option<String>,
        members: Vec<String>,
        managers: Vec<String>,
        presenters: Vec<String>,
    },
    Messages {
        room: String,
        messages: Vec<ImportedMessage>,
    },
    End {
        items: usize,
        sha256: String,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub file: String,
    pub level: Option<Level>,
    pub users: usize,
    pub groups: usize,
    pub addins: usize,
    pub categories: usize,
    pub rooms: usize,
    pub messages: usize,
}

fn open(dir: &Path, create: bool) -> anyhow::Result<Arc<ChatEngine>> {
    let path = dir.join(MGC_FILE);
    if !create && !path.exists() {
        bail!("{} holds no pchat databases", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(ChatEngine::open(&path)?)
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn export(
    dir: &Path,
    to: &Path,
    level: Level,
    since: Option<Timestamp>,
) -> anyhow::Result<Summary> {
    let store = open(dir, false)?;
    let result = export_from(store.as_ref(), to, level, since).await;
    store.close();
    result
}

async fn export_from(
    store: &ChatEngine,
    to: &Path,
    level: Level,
    since: Option<Timestamp>,
) -> anyhow::Result<Summary> {
    let identity = store.identity().await?;
    let mut lines: Vec<String> = Vec::new();
    let mut push = |l: &Line| -> anyhow::Result<()> {
        lines.push(serde_json::to_string(l)?);
        Ok(())
    };
    let mut sum = Summary {
        file: to.display().to_string(),
        level: Some(level),
        ..Summary::default()
    };
    push(&Line::Header {
        format: FORMAT.into(),
        version: VERSION,
        level,
        since,
        created_at: pchat_engine::now_ms(),
        pchat: env!("CARGO_PKG_VERSION").into(),
        source_family: identity.family_id,
        source_lsn: identity.last_lsn,
    })?;
    if level >= Level::All {
        push(&Line::Config {
            config: store.configuration().await?,
        })?;
    }
    for u in store.users().await? {
        let hash = store
            .credentials(u.name.clone())
            .await?
            .map(|(_, h)| h)
            .unwrap_or_default();
        push(&Line::User {
            name: u.name,
            display_name: u.display_name,
            admin: u.admin,
            password_hash: hash,
        })?;
        sum.users += 1;
    }
    for g in store.groups().await? {
        push(&Line::Group {
            name: g.group.name,
            description: g.group.description,
            members: g.members,
        })?;
        sum.groups += 1;
    }
    let categories = store.categories().await?;
    let addins = store.addins().await?;
    if level >= Level::Category {
        for a in &addins {
            push(&Line::Addin {
                name: a.name.clone(),
                url: a.url.clone(),
            })?;
            sum.addins += 1;
        }
        for c in &categories {
            let l = store.category_lists(c.id).await?;
            push(&Line::Category {
                name: c.name.clone(),
                description: c.description.clone(),
                file_upload: c.file_upload,
                invitations: c.invitations,
                chat_history: c.chat_history,
                allowed: l.allowed,
                denied: l.denied,
                creators: l.creators,
            })?;
            sum.categories += 1;
        }
    }
    if level >= Level::RoomDirectory {
        let names: HashMap<i64, String> = store
            .users()
            .await?
            .into_iter()
            .map(|u| (u.id, u.name))
            .collect();
        // Every room: the operator (user 0) is listed against all of them.
        let rooms: Vec<_> = store
            .rooms_with_access(0)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        for r in &rooms {
            let roles = store.room_roles(r.id).await?;
            push(&Line::Room {
                name: r.name.clone(),
                category: categories
                    .iter()
                    .find(|c| c.id == r.category)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                description: r.description.clone(),
                privacy: r.privacy,
                room_type: r.room_type,
                disabled: r.disabled,
                invitations: r.invitations,
                addin: r
                    .addin
                    .and_then(|id| addins.iter().find(|a| a.id == id))
                    .map(|a| a.name.clone()),
                members: roles.members,
                managers: roles.managers,
                presenters: roles.presenters,
            })?;
            sum.rooms += 1;
        }
        if level >= Level::Content {
            for r in &rooms {
                let mut after = 0;
                loop {
                    let page = store
                        .messages(
                            r.id,
                            Page::After {
                                seq: after,
                                limit: CHUNK as u32,
                            },
                        )
                        .await?;
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    let full = page.len() == CHUNK;
                    let messages: Vec<ImportedMessage> = page
                        .into_iter()
                        .filter(|m| since.is_none_or(|s| m.ts >= s))
                        .map(|m| ImportedMessage {
                            seq: m.seq,
                            sender: names
                                .get(&m.sender)
                                .cloned()
                                .unwrap_or_else(|| format!("user{}", m.sender)),
                            ts: m.ts,
                            body: m.body,
                            alert: m.alert,
                            client_msg_id: m.client_msg_id,
                            replaced: m.replaced,
                            file: m.file,
                        })
                        .collect();
                    if !messages.is_empty() {
                        sum.messages += messages.len();
                        push(&Line::Messages {
                            room: r.name.clone(),
                            messages,
                        })?;
                    }
                    if !full {
                        break;
                    }
                }
            }
        }
    }
    // Users and groups are exported at every level (the lists name them).
    let mut hasher = Sha256::new();
    for l in &lines {
        hasher.update(l.as_bytes());
        hasher.update(b"\n");
    }
    let end = Line::End {
        items: lines.len() - 1,
        sha256: hex(hasher.finalize()),
    };
    lines.push(serde_json::to_string(&end)?);
    let tmp = to.with_extension("tmp-export");
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        for l in &lines {
            f.write_all(l.as_bytes())?;
            f.write_all(b"\n")?;
        }
        f.sync_all()?;
    }
    std::fs::rename(&tmp, to).with_context(|| format!("cannot write {}", to.display()))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(sum)
}

/// Reads and checks a file completely: header, every line, count, checksum.
fn read(from: &Path) -> anyhow::Result<(Level, Vec<Line>)> {
    let f = std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut hasher = Sha256::new();
    let mut lines = Vec::new();
    let mut end = None;
    for (n, raw) in std::io::BufReader::new(f).lines().enumerate() {
        let raw = raw.with_context(|| format!("line {} is not UTF-8 text", n + 1))?;
        if end.is_some() {
            bail!("line {}: data after the end line", n + 1);
        }
        let line: Line = serde_json::from_str(&raw)
            .with_context(|| format!("line {} is not a pchat-data item", n + 1))?;
        match line {
            Line::End { items, sha256 } => end = Some((items, sha256)),
            l => {
                hasher.update(raw.as_bytes());
                hasher.update(b"\n");
                lines.push(l);
            }
        }
    }
    let Some((items, sha)) = end else {
        bail!("the file has no end line: it is truncated");
    };
    if hex(hasher.finalize()) != sha || items + 1 != lines.len() {
        bail!("the file's checksum does not match: it was altered or damaged");
    }
    let level = match lines.first() {
        Some(Line::Header {
            format,
            version,
            level,
            ..
        }) => {
            if format != FORMAT {
                bail!("not a pchat-data file (format '{format}')");
            }
            if *version != VERSION {
                bail!("pchat-data version {version} is not supported (this pchat reads {VERSION})");
            }
            *level
        }
        _ => bail!("the file does not start with a pchat-data header"),
    };
    Ok((level, lines))
}

/// Every name a list may refer to is defined in the file (the target pool
/// is empty): checked before anything changes.
fn check_references(lines: &[Line]) -> anyhow::Result<()> {
    let mut users = HashSet::new();
    let mut groups = HashSet::new();
    let mut addins = HashSet::new();
    let mut categories = HashSet::new();
    let mut rooms = HashSet::new();
    for l in lines {
        match l {
            Line::User { name, .. } => {
                users.insert(name.to_lowercase());
            }
            Line::Group { name, .. } => {
                groups.insert(name.to_lowercase());
            }
            Line::Addin { name, .. } => {
                addins.insert(name.to_lowercase());
            }
            Line::Category { name, .. } => {
                categories.insert(name.to_lowercase());
            }
            Line::Room { name, .. } => {
                rooms.insert(name.to_lowercase());
            }
            _ => {}
        }
    }
    let principal = |p: &str| -> anyhow::Result<()> {
        let ok = p == "*"
            || match p.strip_prefix("group:") {
                Some(g) => groups.contains(&g.to_lowercase()),
                None => users.contains(&p.to_lowercase()),
            };
        if !ok {
            bail!("the file names '{p}' in a list but does not define it");
        }
        Ok(())
    };
    for l in lines {
        match l {
            Line::Group { members, .. } => members.iter().try_for_each(|m| principal(m))?,
            Line::Category {
                allowed,
                denied,
                creators,
                ..
            } => allowed
                .iter()
                .chain(denied)
                .chain(creators)
                .try_for_each(|m| principal(m))?,
            Line::Room {
                name,
                category,
                addin,
                members,
                managers,
                presenters,
                ..
            } => {
                if !categories.contains(&category.to_lowercase()) {
                    bail!(
                        "room '{name}' is in category '{category}', which the file does not define"
                    );
                }
                if let Some(a) = addin
                    .as_ref()
                    .filter(|a| !addins.contains(&a.to_lowercase()))
                {
                    bail!("room '{name}' uses add-in '{a}', which the file does not define");
                }
                members
                    .iter()
                    .chain(managers)
                    .chain(presenters)
                    .try_for_each(|m| principal(m))?;
            }
            Line::Messages { room, messages } => {
                if !rooms.contains(&room.to_lowercase()) {
                    bail!("the file has messages of room '{room}' but does not define it");
                }
                for m in messages {
                    if !users.contains(&m.sender.to_lowercase()) {
                        bail!("a message of room '{room}' is from '{}', whom the file does not define", m.sender);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub async fn import(dir: &Path, from: &Path) -> anyhow::Result<Summary> {
    let (level, lines) = read(from)?;
    check_references(&lines)?;
    let _owner = crate::dirlock::lock(dir, "import-data")?;
    let store = open(dir, true)?;
    let result = import_into(store.clone(), &lines).await;
    store.close();
    let mut sum = result?;
    sum.file = from.display().to_string();
    sum.level = Some(level);
    Ok(sum)
}

async fn import_into(store: Arc<ChatEngine>, lines: &[Line]) -> anyhow::Result<Summary> {
    if store.user_count().await? > 0 || !store.categories().await?.is_empty() {
        bail!("import-data needs an empty pool (no users, categories or rooms): use a new data directory");
    }
    let run = |command: Command| {
        let store = store.clone();
        async move {
            store
                .submit(Envelope {
                    origin: "pchat-import".into(),
                    command,
                })
                .await
                .map(|c| c.outcome)
        }
    };
    let mut sum = Summary::default();
    let mut category_ids = HashMap::new();
    let mut room_ids = HashMap::new();
    // Groups first without members (they may name each other), then members.
    for pass in 0..2 {
        for l in lines {
            match (pass, l) {
                (0, Line::Config { config }) => {
                    run(Command::SetConfiguration {
                        actor: Actor::System,
                        changes: pchat_domain::ConfigChanges {
                            default_chat_history: Some(config.default_chat_history),
                            max_file_size_kb: Some(config.max_file_size_kb),
                            participant_update_limit: Some(config.participant_update_limit),
                        },
                    })
                    .await?;
                }
                (
                    0,
                    Line::User {
                        name,
                        display_name,
                        admin,
                        password_hash,
                    },
                ) => {
                    run(Command::CreateUser {
                        actor: Actor::System,
                        name: name.clone(),
                        display_name: Some(display_name.clone()),
                        password_hash: password_hash.clone(),
                        admin: *admin,
                    })
                    .await?;
                    sum.users += 1;
                }
                (
                    0,
                    Line::Group {
                        name, description, ..
                    },
                ) => {
                    run(Command::CreateGroup {
                        actor: Actor::System,
                        group: Box::new(GroupChanges {
                            name: Some(name.clone()),
                            description: Some(description.clone()),
                            ..GroupChanges::default()
                        }),
                    })
                    .await?;
                    sum.groups += 1;
                }
                (1, Line::Group { name, members, .. }) if !members.is_empty() => {
                    let id = store
                        .groups()
                        .await?
                        .into_iter()
                        .find(|g| g.group.name == *name)
                        .map(|g| g.group.id)
                        .context("a group just created is missing")?;
                    run(Command::UpdateGroup {
                        actor: Actor::System,
                        group: id,
                        changes: Box::new(GroupChanges {
                            members: ListChange::set(Some(members.clone())),
                            ..GroupChanges::default()
                        }),
                    })
                    .await?;
                }
                (1, Line::Addin { name, url }) => {
                    run(Command::CreateAddIn {
                        actor: Actor::System,
                        name: name.clone(),
                        url: url.clone(),
                    })
                    .await?;
                    sum.addins += 1;
                }
                (
                    1,
                    Line::Category {
                        name,
                        description,
                        file_upload,
                        invitations,
                        chat_history,
                        allowed,
                        denied,
                        creators,
                    },
                ) => {
                    let out = run(Command::CreateCategory {
                        actor: Actor::System,
                        category: Box::new(CategoryChanges {
                            name: Some(name.clone()),
                            description: Some(description.clone()),
                            file_upload: Some(*file_upload),
                            invitations: Some(*invitations),
                            chat_history: Some(*chat_history),
                            allowed: ListChange::set(Some(allowed.clone())),
                            denied: ListChange::set(Some(denied.clone())),
                            creators: ListChange::set(Some(creators.clone())),
                        }),
                    })
                    .await?;
                    if let pchat_domain::Outcome::Category(c) = out {
                        category_ids.insert(name.to_lowercase(), (c.id, c.invitations));
                    }
                    sum.categories += 1;
                }
                (
                    1,
                    Line::Room {
                        name,
                        category,
                        description,
                        privacy,
                        room_type,
                        disabled,
                        invitations,
                        addin,
                        members,
                        managers,
                        presenters,
                    },
                ) => {
                    let (cat, cat_invitations) = *category_ids
                        .get(&category.to_lowercase())
                        .context("a category just created is missing")?;
                    let out = run(Command::CreateRoom {
                        actor: Actor::System,
                        category: cat,
                        room: Box::new(RoomChanges {
                            name: Some(name.clone()),
                            description: Some(description.clone()),
                            privacy: Some(*privacy),
                            room_type: Some(*room_type),
                            category: None,
                            disabled: Some(*disabled),
                            // With the category's invitations off the room's
                            // setting is moot, and may not be set to inherit.
                            invitations: cat_invitations.then_some(*invitations),
                            addin: addin.clone().map(Some),
                            members: ListChange::set(Some(members.clone())),
                            managers: ListChange::set(Some(managers.clone())),
                            presenters: ListChange::set(Some(presenters.clone())),
                        }),
                    })
                    .await?;
                    if let pchat_domain::Outcome::Room(r) = out {
                        room_ids.insert(name.to_lowercase(), r.id);
                    }
                    sum.rooms += 1;
                }
                (1, Line::Messages { room, messages }) => {
                    let id = *room_ids
                        .get(&room.to_lowercase())
                        .context("a room just created is missing")?;
                    for chunk in messages.chunks(pchat_domain::decide::MAX_IMPORT_BATCH) {
                        run(Command::ImportMessages {
                            actor: Actor::System,
                            room: id,
                            messages: chunk.to_vec(),
                        })
                        .await?;
                    }
                    sum.messages += messages.len();
                }
                _ => {}
            }
        }
    }
    Ok(sum)
}
