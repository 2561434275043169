//! The decide step: a command and the current state in, events and an outcome out.

use crate::command::{Actor, Command, ListChange, RoomChanges};
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
    fn category(&self, id: CategoryId) -> Result<Option<Category>, StateError>;
    fn category_by_name(&self, name: &str) -> Result<Option<Category>, StateError>;
    fn next_category_id(&self) -> Result<CategoryId, StateError>;
    fn room(&self, id: RoomId) -> Result<Option<RoomInfo>, StateError>;
    fn room_by_name(&self, name: &str) -> Result<Option<RoomInfo>, StateError>;
    fn next_room_id(&self) -> Result<RoomId, StateError>;
    fn access(&self, room: RoomId, user: UserId) -> Result<Access, StateError>;
    fn role_list(&self, room: RoomId, role: Role) -> Result<Vec<UserId>, StateError>;
    fn message_by_client_id(
        &self,
        sender: UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>, StateError>;
    fn session_user(&self, token_hash: &str) -> Result<Option<UserId>, StateError>;
}

/// What the caller gets back once the events are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    User(User),
    Session {
        user: UserId,
    },
    SessionEnded,
    Category(Category),
    Room(RoomInfo),
    /// `created` is false when the `client_msg_id` had been posted before and
    /// this is the first message, returned again.
    Message {
        message: Message,
        created: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    State(#[from] StateError),
}

type Decided = Result<(Vec<Event>, Outcome), DecideError>;

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
                    "users exist already; bootstrap is only for an empty database",
                )
                .into());
            }
            create_user(state, now, name, None, password_hash, true)
        }
        Command::CreateSession { user, token_hash } => {
            if state.user(user)?.is_none() {
                return Err(DomainError::NotFound("user").into());
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
        Command::CreateCategory {
            actor,
            name,
            description,
        } => {
            require_admin(state, actor)?;
            check_name(&name)?;
            let description = check_description(description)?;
            if state.category_by_name(&name)?.is_some() {
                return Err(DomainError::NameTaken {
                    what: "category",
                    name,
                }
                .into());
            }
            let category = Category {
                id: state.next_category_id()?,
                name,
                description,
                created_at: now,
            };
            Ok((
                vec![Event::CategoryCreated {
                    category: category.clone(),
                }],
                Outcome::Category(category),
            ))
        }
        Command::CreateRoom {
            actor,
            name,
            category,
            description,
            privacy,
            room_type,
        } => {
            let creator = match actor {
                Actor::System => 0,
                Actor::User(id) => {
                    state.user(id)?.ok_or(DomainError::NotFound("user"))?;
                    id
                }
            };
            check_name(&name)?;
            let description = check_description(description)?;
            if state.category(category)?.is_none() {
                return Err(DomainError::NotFound("category").into());
            }
            if state.room_by_name(&name)?.is_some() {
                return Err(DomainError::NameTaken { what: "room", name }.into());
            }
            let room = RoomInfo {
                id: state.next_room_id()?,
                name,
                category,
                description,
                privacy: privacy.unwrap_or_default(),
                room_type: room_type.unwrap_or_default(),
                created_by: creator,
                created_at: now,
                last_seq: 0,
                disabled: false,
            };
            let mut events = vec![Event::RoomCreated { room: room.clone() }];
            if creator != 0 {
                events.push(Event::RoleGranted {
                    room: room.id,
                    role: Role::Manager,
                    users: vec![creator],
                });
            }
            Ok((events, Outcome::Room(room)))
        }
        Command::UpdateRoom {
            actor,
            room,
            changes,
        } => update_room(state, actor, room, *changes),
        Command::PostMessage {
            actor,
            room,
            body,
            client_msg_id,
            alert,
        } => post_message(state, now, actor, room, body, client_msg_id, alert),
    }
}

fn create_user(
    state: &dyn State,
    now: Timestamp,
    name: String,
    display_name: Option<String>,
    password_hash: String,
    admin: bool,
) -> Decided {
    check_name(&name)?;
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
        return Err(DomainError::NameTaken { what: "user", name }.into());
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

fn post_message(
    state: &dyn State,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    body: String,
    client_msg_id: String,
    alert: bool,
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
    let user = state.user(actor)?.ok_or(DomainError::NotFound("user"))?;
    let room = state.room(room_id)?.ok_or(DomainError::NotFound("room"))?;
    let caller = Caller {
        admin: user.admin,
        access: state.access(room_id, actor)?,
    };
    if !permissions::can_find(&room, caller) {
        return Err(DomainError::NotFound("room").into());
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
        return Err(DomainError::Forbidden(why).into());
    }
    let message = Message {
        room: room_id,
        seq: room.last_seq + 1,
        sender: actor,
        ts: now,
        body,
        alert,
        client_msg_id,
    };
    Ok((
        vec![Event::MessagePosted {
            message: message.clone(),
        }],
        Outcome::Message {
            message,
            created: true,
        },
    ))
}

fn update_room(state: &dyn State, actor: Actor, room_id: RoomId, changes: RoomChanges) -> Decided {
    let mut room = state.room(room_id)?.ok_or(DomainError::NotFound("room"))?;
    if let Actor::User(id) = actor {
        let user = state.user(id)?.ok_or(DomainError::NotFound("user"))?;
        let caller = Caller {
            admin: user.admin,
            access: state.access(room_id, id)?,
        };
        if !permissions::can_find(&room, caller) {
            return Err(DomainError::NotFound("room").into());
        }
        if !permissions::can_manage(&room, caller) {
            return Err(DomainError::Forbidden(
                "only the room's managers and administrators edit a room",
            )
            .into());
        }
    }
    let before = room.clone();
    if let Some(name) = changes.name {
        check_name(&name)?;
        if let Some(other) = state.room_by_name(&name)? {
            if other.id != room_id {
                return Err(DomainError::NameTaken { what: "room", name }.into());
            }
        }
        room.name = name;
    }
    if let Some(d) = changes.description {
        room.description = check_description(Some(d))?;
    }
    if let Some(p) = changes.privacy {
        room.privacy = p;
    }
    if let Some(t) = changes.room_type {
        room.room_type = t;
    }
    let mut events = Vec::new();
    if room != before {
        events.push(Event::RoomUpdated { room: room.clone() });
    }
    for (role, change) in [
        (Role::Member, &changes.members),
        (Role::Manager, &changes.managers),
        (Role::Presenter, &changes.presenters),
    ] {
        if !change.is_empty() {
            role_events(state, room_id, role, change, &mut events)?;
        }
    }
    Ok((events, Outcome::Room(room)))
}

fn role_events(
    state: &dyn State,
    room: RoomId,
    role: Role,
    change: &ListChange,
    events: &mut Vec<Event>,
) -> Result<(), DecideError> {
    let resolve = |names: &[String]| -> Result<BTreeSet<UserId>, DecideError> {
        let mut ids = BTreeSet::new();
        for n in names {
            let u = state
                .user_by_name(n)?
                .ok_or_else(|| DomainError::UnknownUser(n.clone()))?;
            ids.insert(u.id);
        }
        Ok(ids)
    };
    let current: BTreeSet<UserId> = state.role_list(room, role)?.into_iter().collect();
    let mut target = match &change.replace {
        Some(list) => resolve(list)?,
        None => current.clone(),
    };
    target.extend(resolve(&change.add)?);
    for id in resolve(&change.remove)? {
        target.remove(&id);
    }
    let granted: Vec<UserId> = target.difference(&current).copied().collect();
    let revoked: Vec<UserId> = current.difference(&target).copied().collect();
    if !granted.is_empty() {
        events.push(Event::RoleGranted {
            room,
            role,
            users: granted,
        });
    }
    if !revoked.is_empty() {
        events.push(Event::RoleRevoked {
            room,
            role,
            users: revoked,
        });
    }
    Ok(())
}

fn require_admin(state: &dyn State, actor: Actor) -> Result<(), DecideError> {
    match actor {
        Actor::System => Ok(()),
        Actor::User(id) => match state.user(id)? {
            Some(u) if u.admin => Ok(()),
            Some(_) => Err(DomainError::Forbidden("administrators only").into()),
            None => Err(DomainError::NotFound("user").into()),
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
