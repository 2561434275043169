//! Principal lists: names to principals, list changes to added/removed sets,
//! and the category's verdict on a principal.

use super::{DecideError, State};
use crate::command::ListChange;
use crate::error::DomainError;
use crate::model::*;
use std::collections::BTreeSet;

/// Whether `*` may appear in the list.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Everyone {
    Allowed,
    Refused,
}

pub(super) fn resolve(
    state: &dyn State,
    name: &str,
    everyone: Everyone,
) -> Result<Principal, DecideError> {
    if name == EVERYONE {
        return match everyone {
            Everyone::Allowed => Ok(Principal::Everyone),
            Everyone::Refused => Err(DomainError::Invalid(format!(
                "'{EVERYONE}' (everyone) belongs in category lists only; make the room Open instead"
            ))
            .into()),
        };
    }
    if let Some(group) = name.strip_prefix(GROUP_PREFIX) {
        let g = state
            .group_by_name(group)?
            .ok_or_else(|| DomainError::UnknownGroup(group.to_string()))?;
        return Ok(Principal::Group(g.id));
    }
    let u = state
        .user_by_name(name)?
        .ok_or_else(|| DomainError::UnknownUser(name.to_string()))?;
    Ok(Principal::User(u.id))
}

/// The list after the change, as (added, removed) against `current`.
pub(super) fn diff(
    state: &dyn State,
    current: &[Principal],
    change: &ListChange,
    everyone: Everyone,
) -> Result<(Vec<Principal>, Vec<Principal>), DecideError> {
    let resolve_all = |names: &[String]| -> Result<BTreeSet<Principal>, DecideError> {
        names.iter().map(|n| resolve(state, n, everyone)).collect()
    };
    let current: BTreeSet<Principal> = current.iter().copied().collect();
    let mut target = match &change.replace {
        Some(list) => resolve_all(list)?,
        None => current.clone(),
    };
    target.extend(resolve_all(&change.add)?);
    for p in resolve_all(&change.remove)? {
        target.remove(&p);
    }
    Ok((
        target.difference(&current).copied().collect(),
        current.difference(&target).copied().collect(),
    ))
}

/// `p` itself, every group holding it, and everyone.
pub(super) fn standing(
    state: &dyn State,
    p: Principal,
) -> Result<BTreeSet<Principal>, DecideError> {
    let mut all: BTreeSet<Principal> = state
        .groups_of(p)?
        .into_iter()
        .map(Principal::Group)
        .collect();
    all.insert(p);
    all.insert(Principal::Everyone);
    Ok(all)
}

fn named_in(
    state: &dyn State,
    category: CategoryId,
    list: CategoryList,
    standing: &BTreeSet<Principal>,
) -> Result<bool, DecideError> {
    Ok(state
        .category_list(category, list)?
        .iter()
        .any(|e| standing.contains(e)))
}

/// The category lets `p` in (see [`category_permits`]).
pub(super) fn permitted(
    state: &dyn State,
    category: CategoryId,
    p: Principal,
) -> Result<bool, DecideError> {
    let s = standing(state, p)?;
    Ok(category_permits(
        named_in(state, category, CategoryList::Allowed, &s)?,
        named_in(state, category, CategoryList::Denied, &s)?,
    ))
}

/// The user may create rooms in the category: a creator, and let in.
pub(super) fn may_create_rooms(
    state: &dyn State,
    category: CategoryId,
    user: UserId,
) -> Result<bool, DecideError> {
    let p = Principal::User(user);
    let s = standing(state, p)?;
    Ok(named_in(state, category, CategoryList::Creators, &s)? && permitted(state, category, p)?)
}

/// How a principal is written in lists and messages.
pub(super) fn describe(state: &dyn State, p: Principal) -> Result<String, DecideError> {
    Ok(match p {
        Principal::Everyone => EVERYONE.to_string(),
        Principal::User(id) => state
            .user(id)?
            .map(|u| u.name)
            .unwrap_or_else(|| format!("user {id}")),
        Principal::Group(id) => format!(
            "{GROUP_PREFIX}{}",
            state
                .group(id)?
                .map(|g| g.name)
                .unwrap_or_else(|| id.to_string())
        ),
    })
}
