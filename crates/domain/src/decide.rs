//! The decide step: a command and the current state in, events and an outcome out.

use crate::command::*;
use crate::error::DomainError;
use crate::event::Event;
use crate::model::*;
use crate::permissions::{self, Caller};
use std::collections::BTreeSet;

/// Reading the state failed (an IO error in the implementation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state read failed: {0}")]
pub struct StateError(pub String);

/// The state `decide` reads. The storage engine implements it over the open
/// write transaction, so a command sees the effects of the commands before it
/// in the same batch.
pub trait State {
    fn user(&self, id: UserId) -> Result<Option<User>, StateError>;
    fn user_by_name(&self, name: &str) -> Result<Option<User>, StateError>;
    fn user_count(&self) -> Result<i64, StateError>;
    fn next_user_id(&self) -> Result<UserId, StateError>;
    fn group(&self, id: GroupId) -> Result<Option<Group>, StateError>;
    fn group_by_name(&self, name: &str) -> Result<Option<Group>, StateError>;
    fn next_group_id(&self) -> Result<GroupId, StateError>;
    /// The group's direct members.
    fn group_members(&self, id: GroupId) -> Result<Vec<Principal>, StateError>;
    /// Every group that holds `p`, directly or through nested groups.
    fn groups_of(&self, p: Principal) -> Result<BTreeSet<GroupId>, StateError>;
    fn category(&self, id: CategoryId) -> Result<Option<Category>, StateError>;
    fn category_by_name(&self, name: &str) -> Result<Option<Category>, StateError>;
    fn next_category_id(&self) -> Result<CategoryId, StateError>;
    fn category_list(
        &self,
        id: CategoryId,
        list: CategoryList,
    ) -> Result<Vec<Principal>, StateError>;
    fn category_room_count(&self, id: CategoryId) -> Result<i64, StateError>;
    fn room(&self, id: RoomId) -> Result<Option<RoomInfo>, StateError>;
    fn room_by_name(&self, name: &str) -> Result<Option<RoomInfo>, StateError>;
    fn next_room_id(&self) -> Result<RoomId, StateError>;
    /// The user's effective standing in the room (roles through groups
    /// included, the category's verdict, invitation).
    fn access(&self, room: RoomId, user: UserId) -> Result<Access, StateError>;
    /// The entries of one role list, as stored (users and groups).
    fn room_entries(&self, room: RoomId, role: Role) -> Result<Vec<Principal>, StateError>;
    fn addin(&self, id: AddInId) -> Result<Option<AddIn>, StateError>;
    fn addin_by_name(&self, name: &str) -> Result<Option<AddIn>, StateError>;
    fn next_addin_id(&self) -> Result<AddInId, StateError>;
    fn message_by_client_id(
        &self,
        sender: UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>, StateError>;
    /// Messages still in history that match, as (room, seqs), at most `limit`
    /// seqs in all.
    fn matching_messages(
        &self,
        room: Option<RoomId>,
        sender: Option<UserId>,
        filter: &MessageFilter,
        limit: usize,
    ) -> Result<Vec<(RoomId, Vec<Seq>)>, StateError>;
    fn session_user(&self, token_hash: &str) -> Result<Option<UserId>, StateError>;
    fn configuration(&self) -> Result<PoolConfig, StateError>;
    /// The user's feeds, by name.
    fn feeds(&self, user: UserId) -> Result<Vec<Feed>, StateError>;
    fn next_feed_id(&self) -> Result<FeedId, StateError>;
}

/// What the caller gets back once the events are durable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    User(User),
    Session {
        user: UserId,
    },
    SessionEnded,
    Group(Group),
    Category(Category),
    Room(RoomInfo),
    AddIn(AddIn),
    Configuration(PoolConfig),
    Feed(Feed),
    /// `created` is false when the `client_msg_id` had been posted before and
    /// this is the first message, returned again.
    Message {
        message: Message,
        created: bool,
    },
    /// How many messages an administrator removed or replaced.
    MessagesChanged {
        count: usize,
    },
    /// Done; nothing to report.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    State(#[from] StateError),
}

type Decided = Result<(Vec<Event>, Outcome), DecideError>;

/// Most messages one remove-message command changes.
pub const MAX_CHANGED_MESSAGES: usize = 100_000;

/// Decides a command. `now` is the time stamped on the events (the engine's
/// clock, taken once per batch) so the result depends only on the inputs.
pub fn decide(state: &dyn State, now: Timestamp, command: Command) -> Decided {
    match command {
        Command::CreateUser {
            actor,
            name,
            display_name,
            password_hash,
            admin,
        } => {
            require_admin(state, actor)?;
            create_user(state, now, name, display_name, password_hash, admin)
        }
        Command::BootstrapAdmin {
            name,
            password_hash,
        } => {
            if state.user_count()? > 0 {
                return Err(DomainError::Forbidden(
                    "users exist already; bootstrap is only for an empty database".into(),
                )
                .into());
            }
            create_user(state, now, name, None, password_hash, true)
        }
        Command::CreateSession { user, token_hash } => {
            if state.user(user)?.is_none() {
                return Err(DomainError::NotFound("user".into()).into());
            }
            let ev = Event::SessionCreated {
                token_hash,
                user,
                at: now,
            };
            Ok((vec![ev], Outcome::Session { user }))
        }
        Command::EndSession { token_hash } => {
            if state.session_user(&token_hash)?.is_none() {
                return Ok((vec![], Outcome::SessionEnded));
            }
            Ok((
                vec![Event::SessionEnded { token_hash }],
                Outcome::SessionEnded,
            ))
        }
        Command::CreateGroup { actor, group } => {
            require_admin(state, actor)?;
            groups::create(state, now, *group)
        }
        Command::UpdateGroup {
            actor,
            group,
            changes,
        } => {
            require_admin(state, actor)?;
            groups::update(state, group, *changes)
        }
        Command::DeleteGroup { actor, group } => {
            require_admin(state, actor)?;
            state
                .group(group)?
                .ok_or(DomainError::NotFound("group".into()))?;
            Ok((vec![Event::GroupDeleted { group }], Outcome::Done))
        }
        Command::CreateCategory { actor, category } => {
            require_admin(state, actor)?;
            categories::create(state, now, *category)
        }
        Command::UpdateCategory {
            actor,
            category,
            changes,
        } => {
            require_admin(state, actor)?;
            categories::update(state, category, *changes)
        }
        Command::DeleteCategory { actor, category } => {
            require_admin(state, actor)?;
            state
                .category(category)?
                .ok_or(DomainError::NotFound("category".into()))?;
            let rooms = state.category_room_count(category)?;
            if rooms > 0 {
                return Err(DomainError::CategoryNotEmpty(rooms).into());
            }
            Ok((vec![Event::CategoryDeleted { category }], Outcome::Done))
        }
        Command::CreateRoom {
            actor,
            category,
            room,
        } => rooms::create(state, now, actor, category, *room),
        Command::UpdateRoom {
            actor,
            room,
            changes,
        } => rooms::update(state, actor, room, *changes),
        Command::DeleteRoom { actor, room } => {
            require_admin(state, actor)?;
            state
                .room(room)?
                .ok_or(DomainError::NotFound("room".into()))?;
            Ok((vec![Event::RoomDeleted { room }], Outcome::Done))
        }
        Command::Invite { actor, room, user } => rooms::invite(state, actor, room, &user),
        Command::JoinRoom { actor, room } => rooms::join(state, actor, room),
        Command::LeaveRoom { actor, room } => rooms::leave(state, actor, room),
        Command::CreateAddIn { actor, name, url } => {
            require_admin(state, actor)?;
            check_name(&name)?;
            if !valid_url(&url) {
                return Err(DomainError::Invalid(format!(
                    "add-in URLs are http:// or https:// with a host, at most {MAX_URL_BYTES} bytes, no spaces"
                ))
                .into());
            }
            if state.addin_by_name(&name)?.is_some() {
                return Err(DomainError::NameTaken {
                    what: "add-in".into(),
                    name,
                }
                .into());
            }
            let addin = AddIn {
                id: state.next_addin_id()?,
                name,
                url,
            };
            Ok((
                vec![Event::AddInCreated {
                    addin: addin.clone(),
                }],
                Outcome::AddIn(addin),
            ))
        }
        Command::DeleteAddIn { actor, name } => {
            require_admin(state, actor)?;
            let addin = state
                .addin_by_name(&name)?
                .ok_or(DomainError::NotFound("add-in".into()))?;
            Ok((vec![Event::AddInDeleted { addin: addin.id }], Outcome::Done))
        }
        Command::ChangeMessages {
            actor,
            filter,
            change,
        } => {
            require_admin(state, actor)?;
            change_messages(state, filter, change)
        }
        Command::PostFile {
            actor,
            room,
            file,
            body,
            client_msg_id,
        } => {
            let body = body.unwrap_or_else(|| file.name.clone());
            post(
                state,
                now,
                actor,
                room,
                body,
                client_msg_id,
                false,
                Some(file),
            )
        }
        Command::ImportMessages {
            actor,
            room,
            messages,
        } => {
            if actor != Actor::System {
                return Err(DomainError::Forbidden(
                    "only the operator at the machine imports history (pchat admin import-data)"
                        .into(),
                )
                .into());
            }
            import_messages(state, room, messages)
        }
        Command::SaveFeed {
            actor,
            name,
            words,
            senders,
            rooms,
        } => save_feed(state, now, actor, name, words, senders, rooms),
        Command::DeleteFeed { actor, feed } => {
            if !state.feeds(actor)?.iter().any(|f| f.id == feed) {
                return Err(DomainError::NotFound("feed".into()).into());
            }
            Ok((
                vec![Event::FeedDeleted { user: actor, feed }],
                Outcome::Done,
            ))
        }
        Command::SetConfiguration { actor, changes } => {
            require_admin(state, actor)?;
            let mut config = state.configuration()?;
            if let Some(d) = changes.default_chat_history {
                if d.is_some_and(|n| !(1..=500).contains(&n)) {
                    return Err(DomainError::Invalid(
                        "DefaultChatHistory is 1 to 500 messages".into(),
                    )
                    .into());
                }
                config.default_chat_history = d;
            }
            if let Some(kb) = changes.max_file_size_kb {
                if !(1..=MAX_FILE_SIZE_KB_LIMIT).contains(&kb) {
                    return Err(DomainError::Invalid(format!(
                        "MaxFileSizeKB is 1 to {MAX_FILE_SIZE_KB_LIMIT}"
                    ))
                    .into());
                }
                config.max_file_size_kb = kb;
            }
            if let Some(n) = changes.participant_update_limit {
                if !(1..=100_000).contains(&n) {
                    return Err(DomainError::Invalid(
                        "ParticipantUpdateLimit is 1 to 100,000".into(),
                    )
                    .into());
                }
                config.participant_update_limit = n;
            }
            let events = if config == state.configuration()? {
                vec![]
            } else {
                vec![Event::ConfigurationSet { config }]
            };
            Ok((events, Outcome::Configuration(config)))
        }
        Command::RecordAccess { user, room, access } => {
            state
                .user(user)?
                .ok_or(DomainError::NotFound("user".into()))?;
            state
                .room(room)?
                .ok_or(DomainError::NotFound("room".into()))?;
            Ok((vec![Event::Accessed { user, room, access }], Outcome::Done))
        }
        Command::ClearRoom { actor, room, until } => {
            require_admin(state, actor)?;
            state
                .room(room)?
                .ok_or(DomainError::NotFound("room".into()))?;
            Ok((vec![Event::RoomCleared { room, until }], Outcome::Done))
        }
        Command::PostMessage {
            actor,
            room,
            body,
            client_msg_id,
            alert,
        } => post(state, now, actor, room, body, client_msg_id, alert, None),
    }
}

mod categories;
mod groups;
mod lists;
mod rooms;

fn create_user(
    state: &dyn State,
    now: Timestamp,
    name: String,
    display_name: Option<String>,
    password_hash: String,
    admin: bool,
) -> Decided {
    check_name(&name)?;
    if name.starts_with(GROUP_PREFIX) || name == EVERYONE {
        return Err(DomainError::Invalid(format!(
            "user names cannot be '{EVERYONE}' or begin with '{GROUP_PREFIX}' (lists use those for everyone and for groups)"
        ))
        .into());
    }
    let display_name = match display_name {
        Some(d) => {
            check_name(&d)?;
            d
        }
        None => name.clone(),
    };
    if password_hash.is_empty() {
        return Err(DomainError::Invalid("password hash is empty".into()).into());
    }
    if state.user_by_name(&name)?.is_some() {
        return Err(DomainError::NameTaken {
            what: "user".into(),
            name,
        }
        .into());
    }
    let user = User {
        id: state.next_user_id()?,
        name,
        display_name,
        admin,
        created_at: now,
    };
    Ok((
        vec![Event::UserCreated {
            user: user.clone(),
            password_hash,
        }],
        Outcome::User(user),
    ))
}

#[allow(clippy::too_many_arguments)]
fn post(
    state: &dyn State,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    body: String,
    client_msg_id: String,
    alert: bool,
    file: Option<FileRef>,
) -> Decided {
    if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return Err(DomainError::Invalid(format!(
            "client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes"
        ))
        .into());
    }
    // A retry returns the first message, whatever changed since.
    if let Some(first) = state.message_by_client_id(actor, &client_msg_id)? {
        if first.room != room_id {
            return Err(DomainError::ClientMsgIdReused(client_msg_id).into());
        }
        return Ok((
            vec![],
            Outcome::Message {
                message: first,
                created: false,
            },
        ));
    }
    if body.is_empty() || body.len() > MAX_BODY_BYTES {
        return Err(DomainError::Invalid(format!(
            "body must be 1 to {MAX_BODY_BYTES} bytes of UTF-8"
        ))
        .into());
    }
    let user = state
        .user(actor)?
        .ok_or(DomainError::NotFound("user".into()))?;
    let room = state
        .room(room_id)?
        .ok_or(DomainError::NotFound("room".into()))?;
    let caller = caller_in(state, &user, room_id)?;
    if !permissions::can_find(&room, caller) {
        return Err(DomainError::NotFound("room".into()).into());
    }
    if room.disabled {
        return Err(DomainError::RoomDisabled.into());
    }
    if !permissions::can_post(&room, caller) {
        let why = if room.room_type == RoomType::Auditorium {
            "only presenters post in an auditorium room"
        } else {
            "only members post in this room"
        };
        return Err(DomainError::Forbidden(why.into()).into());
    }
    let category = state
        .category(room.category)?
        .ok_or(DomainError::NotFound("category".into()))?;
    if let Some(f) = &file {
        if !f.valid() {
            return Err(DomainError::Invalid(
                "a file needs a SHA-256, a size, a plain name and a content type".into(),
            )
            .into());
        }
        if !category.file_upload {
            return Err(
                DomainError::Forbidden("file upload is off in this category".into()).into(),
            );
        }
        let max = i64::from(state.configuration()?.max_file_size_kb) * 1000;
        if f.size > max {
            return Err(DomainError::Invalid(format!(
                "files are at most {max} bytes (MaxFileSizeKB)"
            ))
            .into());
        }
    }
    let kept = category.chat_history;
    let message = Message {
        room: room_id,
        seq: room.last_seq + 1,
        sender: actor,
        ts: now,
        body,
        alert,
        client_msg_id,
        replaced: false,
        file,
    };
    Ok((
        vec![Event::MessagePosted {
            message: message.clone(),
            unkept: !kept,
        }],
        Outcome::Message {
            message,
            created: true,
        },
    ))
}

fn change_messages(state: &dyn State, filter: MessageFilter, change: MessageChange) -> Decided {
    if filter.room.is_none() && filter.user.is_none() {
        return Err(DomainError::Invalid("name a room or a user (or both)".into()).into());
    }
    if let MessageChange::Replaced(text) = &change {
        if text.is_empty() || text.len() > MAX_BODY_BYTES {
            return Err(DomainError::Invalid(format!(
                "the replacement text must be 1 to {MAX_BODY_BYTES} bytes"
            ))
            .into());
        }
    }
    if let Some(room) = filter.room {
        state
            .room(room)?
            .ok_or(DomainError::NotFound("room".into()))?;
    }
    let sender = match &filter.user {
        Some(n) => Some(
            state
                .user_by_name(n)?
                .ok_or_else(|| DomainError::UnknownUser(n.clone()))?
                .id,
        ),
        None => None,
    };
    let found = state.matching_messages(filter.room, sender, &filter, MAX_CHANGED_MESSAGES + 1)?;
    let count: usize = found.iter().map(|(_, seqs)| seqs.len()).sum();
    if count > MAX_CHANGED_MESSAGES {
        return Err(DomainError::Invalid(format!(
            "more than {MAX_CHANGED_MESSAGES} messages match; narrow the filter or use clear-room"
        ))
        .into());
    }
    let events = found
        .into_iter()
        .map(|(room, seqs)| Event::MessagesChanged {
            room,
            seqs,
            change: change.clone(),
        })
        .collect();
    Ok((events, Outcome::MessagesChanged { count }))
}

/// Most messages in one import command.
pub const MAX_IMPORT_BATCH: usize = 5000;

fn import_messages(state: &dyn State, room_id: RoomId, list: Vec<ImportedMessage>) -> Decided {
    let room = state
        .room(room_id)?
        .ok_or(DomainError::NotFound("room".into()))?;
    if list.len() > MAX_IMPORT_BATCH {
        return Err(DomainError::Invalid(format!(
            "at most {MAX_IMPORT_BATCH} messages per import command"
        ))
        .into());
    }
    let mut last = room.last_seq;
    let mut senders = std::collections::HashMap::<String, UserId>::new();
    let mut messages = Vec::with_capacity(list.len());
    for m in list {
        if m.seq <= last {
            return Err(DomainError::Invalid(format!(
                "imported message {} does not come after message {last} of the room",
                m.seq
            ))
            .into());
        }
        if m.body.len() > MAX_BODY_BYTES
            || m.client_msg_id.is_empty()
            || m.client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES
            || m.file.as_ref().is_some_and(|f| !f.valid())
        {
            return Err(
                DomainError::Invalid(format!("imported message {} is malformed", m.seq)).into(),
            );
        }
        let sender = match senders.get(&m.sender) {
            Some(id) => *id,
            None => {
                let id = state
                    .user_by_name(&m.sender)?
                    .ok_or_else(|| DomainError::UnknownUser(m.sender.clone()))?
                    .id;
                senders.insert(m.sender.clone(), id);
                id
            }
        };
        if state
            .message_by_client_id(sender, &m.client_msg_id)?
            .is_some()
        {
            return Err(DomainError::ClientMsgIdReused(m.client_msg_id).into());
        }
        last = m.seq;
        messages.push(Message {
            room: room_id,
            seq: m.seq,
            sender,
            ts: m.ts,
            body: m.body,
            alert: m.alert,
            client_msg_id: m.client_msg_id,
            replaced: m.replaced,
            file: m.file,
        });
    }
    let count = messages.len();
    let events = if messages.is_empty() {
        vec![]
    } else {
        vec![Event::MessagesImported {
            room: room_id,
            messages,
        }]
    };
    Ok((events, Outcome::MessagesChanged { count }))
}

fn save_feed(
    state: &dyn State,
    now: Timestamp,
    actor: UserId,
    name: String,
    feed_words: Vec<String>,
    senders: Vec<String>,
    rooms: Vec<RoomId>,
) -> Decided {
    state
        .user(actor)?
        .ok_or(DomainError::NotFound("user".into()))?;
    check_name(&name)?;
    if feed_words.len() > MAX_FEED_ITEMS
        || senders.len() > MAX_FEED_ITEMS
        || rooms.len() > MAX_FEED_ITEMS
    {
        return Err(DomainError::Invalid(format!(
            "a feed has at most {MAX_FEED_ITEMS} words, senders and rooms each"
        ))
        .into());
    }
    let mut ws: Vec<String> = Vec::new();
    for w in &feed_words {
        let parts: Vec<String> = words(w).collect();
        if parts.len() != 1 {
            return Err(DomainError::Invalid(format!(
                "'{w}' is not one word (letters and digits)"
            ))
            .into());
        }
        ws.extend(parts);
    }
    ws.sort();
    ws.dedup();
    let mut ids = Vec::new();
    for s in &senders {
        let u = state
            .user_by_name(s)?
            .ok_or_else(|| DomainError::UnknownUser(s.clone()))?;
        ids.push(u.id);
    }
    ids.sort();
    ids.dedup();
    let mut rooms = rooms;
    rooms.sort();
    rooms.dedup();
    for r in &rooms {
        // A room the user cannot find is refused like one that does not exist.
        let room = state
            .room(*r)?
            .ok_or(DomainError::NotFound("room".into()))?;
        let user = state
            .user(actor)?
            .ok_or(DomainError::NotFound("user".into()))?;
        if !permissions::can_find(&room, caller_in(state, &user, *r)?) {
            return Err(DomainError::NotFound("room".into()).into());
        }
    }
    if ws.is_empty() && ids.is_empty() && rooms.is_empty() {
        return Err(
            DomainError::Invalid("a feed needs at least one word, sender or room".into()).into(),
        );
    }
    let existing = state.feeds(actor)?;
    let same = existing
        .iter()
        .find(|f| name_key(&f.name) == name_key(&name));
    if same.is_none() && existing.len() >= MAX_FEEDS {
        return Err(DomainError::Invalid(format!("at most {MAX_FEEDS} feeds per user")).into());
    }
    let feed = Feed {
        id: match same {
            Some(f) => f.id,
            None => state.next_feed_id()?,
        },
        user: actor,
        name,
        words: ws,
        senders: ids,
        rooms,
        created_at: now,
    };
    Ok((
        vec![Event::FeedSaved { feed: feed.clone() }],
        Outcome::Feed(feed),
    ))
}

/// The caller as the permission rules see them, for a room.
fn caller_in(state: &dyn State, user: &User, room: RoomId) -> Result<Caller, DecideError> {
    Ok(Caller {
        admin: user.admin,
        access: state.access(room, user.id)?,
    })
}

fn require_admin(state: &dyn State, actor: Actor) -> Result<(), DecideError> {
    match actor {
        Actor::System => Ok(()),
        Actor::User(id) => match state.user(id)? {
            Some(u) if u.admin => Ok(()),
            Some(_) => Err(DomainError::Forbidden("administrators only".into()).into()),
            None => Err(DomainError::NotFound("user".into()).into()),
        },
    }
}

fn check_name(name: &str) -> Result<(), DomainError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(DomainError::Invalid(format!(
            "names are 1 to {MAX_NAME_CHARS} characters, with no control characters and no leading or trailing spaces"
        )))
    }
}

fn check_description(d: Option<String>) -> Result<String, DomainError> {
    let d = d.unwrap_or_default();
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(DomainError::Invalid(format!(
            "descriptions are at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
