//! Groups: named sets of users and of other groups (never a cycle).

use super::lists::{self, Everyone};
use super::{check_description, check_name, DecideError, Decided, Outcome, State};
use crate::command::GroupChanges;
use crate::error::DomainError;
use crate::event::Event;
use crate::model::*;

pub(super) fn create(state: &dyn State, now: Timestamp, changes: GroupChanges) -> Decided {
    let name = changes
        .name
        .clone()
        .ok_or_else(|| DomainError::Invalid("a group needs a name".into()))?;
    check_name(&name)?;
    if state.group_by_name(&name)?.is_some() {
        return Err(DomainError::NameTaken {
            what: "group".into(),
            name,
        }
        .into());
    }
    let group = Group {
        id: state.next_group_id()?,
        name,
        description: check_description(changes.description.clone())?,
        created_at: now,
    };
    let mut events = vec![Event::GroupCreated {
        group: group.clone(),
    }];
    members(state, group.id, &[], &changes, &mut events)?;
    Ok((events, Outcome::Group(group)))
}

pub(super) fn update(state: &dyn State, id: GroupId, changes: GroupChanges) -> Decided {
    let mut group = state
        .group(id)?
        .ok_or(DomainError::NotFound("group".into()))?;
    let before = group.clone();
    if let Some(name) = changes.name.clone() {
        check_name(&name)?;
        if let Some(other) = state.group_by_name(&name)? {
            if other.id != id {
                return Err(DomainError::NameTaken {
                    what: "group".into(),
                    name,
                }
                .into());
            }
        }
        group.name = name;
    }
    if let Some(d) = changes.description.clone() {
        group.description = check_description(Some(d))?;
    }
    let mut events = Vec::new();
    if group != before {
        events.push(Event::GroupUpdated {
            group: group.clone(),
        });
    }
    let current = state.group_members(id)?;
    members(state, id, &current, &changes, &mut events)?;
    Ok((events, Outcome::Group(group)))
}

fn members(
    state: &dyn State,
    id: GroupId,
    current: &[Principal],
    changes: &GroupChanges,
    events: &mut Vec<Event>,
) -> Result<(), DecideError> {
    if changes.members.is_empty() {
        return Ok(());
    }
    let (added, removed) = lists::diff(state, current, &changes.members, Everyone::Refused)?;
    // A group may not hold itself, directly or through the groups it is in.
    let holders = state.groups_of(Principal::Group(id))?;
    for p in &added {
        if let Principal::Group(g) = p {
            if *g == id || holders.contains(g) {
                return Err(DomainError::Invalid(format!(
                    "adding {} would make a group hold itself",
                    lists::describe(state, *p)?
                ))
                .into());
            }
        }
    }
    if !added.is_empty() || !removed.is_empty() {
        events.push(Event::GroupMembersChanged {
            group: id,
            added,
            removed,
        });
    }
    Ok(())
}
