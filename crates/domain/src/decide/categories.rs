//! Categories: their switches and their allowed, denied and creators lists.

use super::lists::{self, Everyone};
use super::{check_description, check_name, DecideError, Decided, Outcome, State};
use crate::command::CategoryChanges;
use crate::error::DomainError;
use crate::event::Event;
use crate::model::*;

pub(super) fn create(state: &dyn State, now: Timestamp, changes: CategoryChanges) -> Decided {
    let name = changes
        .name
        .clone()
        .ok_or_else(|| DomainError::Invalid("a category needs a name".into()))?;
    check_name(&name)?;
    if state.category_by_name(&name)?.is_some() {
        return Err(DomainError::NameTaken {
            what: "category".into(),
            name,
        }
        .into());
    }
    let category = Category {
        id: state.next_category_id()?,
        name,
        description: check_description(changes.description.clone())?,
        created_at: now,
        file_upload: changes.file_upload.unwrap_or(true),
        invitations: changes.invitations.unwrap_or(true),
        chat_history: changes.chat_history.unwrap_or(true),
    };
    let mut events = vec![Event::CategoryCreated {
        category: category.clone(),
    }];
    for list in CategoryList::ALL {
        // Lists not given start open (allowed and creators: everyone), so a
        // new category works at once; narrow them to build walls.
        let mut change = changes.list(list).clone();
        if change.is_empty() && list != CategoryList::Denied {
            change.replace = Some(vec![EVERYONE.into()]);
        }
        list_events(state, category.id, list, &[], &change, &mut events)?;
    }
    Ok((events, Outcome::Category(category)))
}

pub(super) fn update(state: &dyn State, id: CategoryId, changes: CategoryChanges) -> Decided {
    let mut category = state
        .category(id)?
        .ok_or(DomainError::NotFound("category".into()))?;
    let before = category.clone();
    if let Some(name) = changes.name.clone() {
        check_name(&name)?;
        if let Some(other) = state.category_by_name(&name)? {
            if other.id != id {
                return Err(DomainError::NameTaken {
                    what: "category".into(),
                    name,
                }
                .into());
            }
        }
        category.name = name;
    }
    if let Some(d) = changes.description.clone() {
        category.description = check_description(Some(d))?;
    }
    if let Some(v) = changes.file_upload {
        category.file_upload = v;
    }
    if let Some(v) = changes.invitations {
        category.invitations = v;
    }
    if let Some(v) = changes.chat_history {
        category.chat_history = v;
    }
    let mut events = Vec::new();
    if category != before {
        events.push(Event::CategoryUpdated {
            category: category.clone(),
        });
    }
    for list in CategoryList::ALL {
        let current = state.category_list(id, list)?;
        list_events(state, id, list, &current, changes.list(list), &mut events)?;
    }
    Ok((events, Outcome::Category(category)))
}

fn list_events(
    state: &dyn State,
    category: CategoryId,
    list: CategoryList,
    current: &[Principal],
    change: &crate::command::ListChange,
    events: &mut Vec<Event>,
) -> Result<(), DecideError> {
    if change.is_empty() {
        return Ok(());
    }
    let (added, removed) = lists::diff(state, current, change, Everyone::Allowed)?;
    if !added.is_empty() || !removed.is_empty() {
        events.push(Event::CategoryListChanged {
            category,
            list,
            added,
            removed,
        });
    }
    Ok(())
}
