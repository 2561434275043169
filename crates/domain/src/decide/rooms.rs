//! Rooms: create, change (properties, role lists, category, disabled,
//! invitations, add-in), invite, join, leave.

use super::lists::{self, Everyone};
use super::{caller_in, check_description, check_name, DecideError, Decided, Outcome, State};
use crate::command::{Actor, RoomChanges};
use crate::error::DomainError;
use crate::event::Event;
use crate::model::*;
use crate::permissions::{self, Caller};

pub(super) fn create(
    state: &dyn State,
    now: Timestamp,
    actor: Actor,
    category: CategoryId,
    changes: RoomChanges,
) -> Decided {
    let creator = match actor {
        Actor::System => None,
        Actor::User(id) => Some(
            state
                .user(id)?
                .ok_or(DomainError::NotFound("user".into()))?,
        ),
    };
    let cat = state
        .category(category)?
        .ok_or(DomainError::NotFound("category".into()))?;
    if let Some(u) = &creator {
        if !u.admin && !lists::may_create_rooms(state, category, u.id)? {
            return Err(DomainError::Forbidden(
                "only the category's creators (and administrators) create rooms in it".into(),
            )
            .into());
        }
    }
    let name = changes
        .name
        .clone()
        .ok_or_else(|| DomainError::Invalid("a room needs a name".into()))?;
    check_name(&name)?;
    if state.room_by_name(&name)?.is_some() {
        return Err(DomainError::NameTaken {
            what: "room".into(),
            name,
        }
        .into());
    }
    if changes.category.is_some_and(|c| c != category) {
        return Err(DomainError::Invalid("two different categories given".into()).into());
    }
    let mut room = RoomInfo {
        id: state.next_room_id()?,
        name,
        category,
        description: String::new(),
        privacy: Privacy::default(),
        room_type: RoomType::default(),
        created_by: creator.as_ref().map(|u| u.id).unwrap_or(0),
        created_at: now,
        last_seq: 0,
        disabled: false,
        invitations: if cat.invitations {
            Invitations::Inherit
        } else {
            Invitations::False
        },
        addin: None,
    };
    properties(state, &mut room, &cat, &changes)?;
    let mut events = vec![Event::RoomCreated { room: room.clone() }];
    let mut managers = vec![];
    if let Some(u) = &creator {
        events.push(Event::RoleGranted {
            room: room.id,
            role: Role::Manager,
            principals: vec![Principal::User(u.id)],
        });
        managers.push(Principal::User(u.id));
    }
    for role in Role::ALL {
        let current = if role == Role::Manager {
            &managers[..]
        } else {
            &[]
        };
        role_events(state, &room, role, current, &changes, &mut events)?;
    }
    Ok((events, Outcome::Room(room)))
}

pub(super) fn update(
    state: &dyn State,
    actor: Actor,
    room_id: RoomId,
    changes: RoomChanges,
) -> Decided {
    let mut room = state
        .room(room_id)?
        .ok_or(DomainError::NotFound("room".into()))?;
    let mut admin = true;
    if let Actor::User(id) = actor {
        let user = state
            .user(id)?
            .ok_or(DomainError::NotFound("user".into()))?;
        let caller = caller_in(state, &user, room_id)?;
        if !permissions::can_find(&room, caller) {
            return Err(DomainError::NotFound("room".into()).into());
        }
        if !permissions::can_manage(&room, caller) {
            return Err(DomainError::Forbidden(
                "only the room's managers and administrators edit a room".into(),
            )
            .into());
        }
        admin = user.admin;
    }
    let before = room.clone();
    if let Some(name) = changes.name.clone() {
        check_name(&name)?;
        if let Some(other) = state.room_by_name(&name)? {
            if other.id != room_id {
                return Err(DomainError::NameTaken {
                    what: "room".into(),
                    name,
                }
                .into());
            }
        }
        room.name = name;
    }
    if let Some(c) = changes.category {
        if c != room.category && !admin {
            return Err(DomainError::Forbidden(
                "only administrators move a room to another category".into(),
            )
            .into());
        }
        room.category = c;
    }
    let cat = state
        .category(room.category)?
        .ok_or(DomainError::NotFound("category".into()))?;
    properties(state, &mut room, &cat, &changes)?;
    if before.invitations == Invitations::False && room.invitations == Invitations::Inherit {
        // Checked here, not in `properties`, so a room created in such a
        // category simply starts with invitations off.
        if !cat.invitations {
            return Err(DomainError::Forbidden(
                "the category has invitations off, so its rooms cannot turn them on".into(),
            )
            .into());
        }
    }
    let mut events = Vec::new();
    if room != before {
        events.push(Event::RoomUpdated { room: room.clone() });
    }
    for role in Role::ALL {
        let mut current = state.room_entries(room_id, role)?;
        if room.category != before.category {
            // Moving drops the entries the new category does not let in.
            let mut dropped = Vec::new();
            for p in &current {
                if !lists::permitted(state, room.category, *p)? {
                    dropped.push(*p);
                }
            }
            if !dropped.is_empty() {
                current.retain(|p| !dropped.contains(p));
                events.push(Event::RoleRevoked {
                    room: room_id,
                    role,
                    principals: dropped,
                });
            }
        }
        role_events(state, &room, role, &current, &changes, &mut events)?;
    }
    Ok((events, Outcome::Room(room)))
}

/// The plain properties: description, privacy, type, disabled, invitations, add-in.
fn properties(
    state: &dyn State,
    room: &mut RoomInfo,
    cat: &Category,
    changes: &RoomChanges,
) -> Result<(), DecideError> {
    if let Some(d) = changes.description.clone() {
        room.description = check_description(Some(d))?;
    }
    if let Some(p) = changes.privacy {
        room.privacy = p;
    }
    if let Some(t) = changes.room_type {
        room.room_type = t;
    }
    if let Some(d) = changes.disabled {
        room.disabled = d;
    }
    if let Some(i) = changes.invitations {
        if i == Invitations::Inherit && !cat.invitations && room.invitations == Invitations::False {
            return Err(DomainError::Forbidden(
                "the category has invitations off, so its rooms cannot turn them on".into(),
            )
            .into());
        }
        room.invitations = i;
    }
    match &changes.addin {
        None => {}
        Some(None) => room.addin = None,
        Some(Some(name)) => {
            let a = state
                .addin_by_name(name)?
                .ok_or(DomainError::NotFound("add-in".into()))?;
            room.addin = Some(a.id);
        }
    }
    Ok(())
}

fn role_events(
    state: &dyn State,
    room: &RoomInfo,
    role: Role,
    current: &[Principal],
    changes: &RoomChanges,
    events: &mut Vec<Event>,
) -> Result<(), DecideError> {
    let change = match role {
        Role::Member => &changes.members,
        Role::Manager => &changes.managers,
        Role::Presenter => &changes.presenters,
    };
    if change.is_empty() {
        return Ok(());
    }
    let (granted, revoked) = lists::diff(state, current, change, Everyone::Refused)?;
    for p in &granted {
        if !lists::permitted(state, room.category, *p)? {
            return Err(DomainError::NotAllowedByCategory(lists::describe(state, *p)?).into());
        }
    }
    if !granted.is_empty() {
        events.push(Event::RoleGranted {
            room: room.id,
            role,
            principals: granted,
        });
    }
    if !revoked.is_empty() {
        events.push(Event::RoleRevoked {
            room: room.id,
            role,
            principals: revoked,
        });
    }
    Ok(())
}

pub(super) fn invite(state: &dyn State, actor: Actor, room_id: RoomId, invitee: &str) -> Decided {
    let room = state
        .room(room_id)?
        .ok_or(DomainError::NotFound("room".into()))?;
    let cat = state
        .category(room.category)?
        .ok_or(DomainError::NotFound("category".into()))?;
    let (by, caller) = match actor {
        Actor::System => (
            None,
            Caller {
                admin: true,
                access: Access::default(),
            },
        ),
        Actor::User(id) => {
            let user = state
                .user(id)?
                .ok_or(DomainError::NotFound("user".into()))?;
            (Some(id), caller_in(state, &user, room_id)?)
        }
    };
    if !permissions::can_find(&room, caller) {
        return Err(DomainError::NotFound("room".into()).into());
    }
    if !permissions::invitations_on(&room, &cat) {
        return Err(DomainError::Forbidden("invitations are off for this room".into()).into());
    }
    if !permissions::can_invite(&room, &cat, caller) {
        return Err(DomainError::Forbidden(
            "only the room's managers and administrators invite (and not while it is disabled)"
                .into(),
        )
        .into());
    }
    let user = state
        .user_by_name(invitee)?
        .ok_or_else(|| DomainError::UnknownUser(invitee.to_string()))?;
    if !lists::permitted(state, room.category, Principal::User(user.id))? {
        return Err(DomainError::NotAllowedByCategory(user.name).into());
    }
    let access = state.access(room_id, user.id)?;
    if access.member || access.invited {
        return Ok((vec![], Outcome::Room(room)));
    }
    Ok((
        vec![Event::Invited {
            room: room_id,
            user: user.id,
            by,
        }],
        Outcome::Room(room),
    ))
}

pub(super) fn join(state: &dyn State, actor: UserId, room_id: RoomId) -> Decided {
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
    if caller.access.member {
        return Ok((vec![], Outcome::Room(room)));
    }
    if room.disabled {
        return Err(DomainError::RoomDisabled.into());
    }
    if !permissions::can_join(&room, caller) {
        return Err(DomainError::Forbidden(
            "only Open rooms are joined freely; ask a manager for an invitation".into(),
        )
        .into());
    }
    let mut events = vec![Event::RoleGranted {
        room: room_id,
        role: Role::Member,
        principals: vec![Principal::User(actor)],
    }];
    if caller.access.invited {
        events.push(Event::InvitationClosed {
            room: room_id,
            user: actor,
        });
    }
    Ok((events, Outcome::Room(room)))
}

pub(super) fn leave(state: &dyn State, actor: UserId, room_id: RoomId) -> Decided {
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
    let mut events = Vec::new();
    if caller.access.invited {
        events.push(Event::InvitationClosed {
            room: room_id,
            user: actor,
        });
    }
    let me = Principal::User(actor);
    if state.room_entries(room_id, Role::Member)?.contains(&me) {
        events.push(Event::RoleRevoked {
            room: room_id,
            role: Role::Member,
            principals: vec![me],
        });
    } else if caller.access.member {
        return Err(DomainError::Forbidden(
            "you are a member through a group; a manager or administrator changes that".into(),
        )
        .into());
    }
    Ok((events, Outcome::Room(room)))
}
