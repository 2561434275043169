//! decide() against an in-memory state that applies the events it returns.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
struct Mem {
    users: BTreeMap<UserId, User>,
    groups: BTreeMap<GroupId, Group>,
    group_members: BTreeSet<(GroupId, Principal)>,
    categories: BTreeMap<CategoryId, Category>,
    category_lists: BTreeSet<(CategoryId, CategoryList, Principal)>,
    rooms: BTreeMap<RoomId, RoomInfo>,
    roles: BTreeSet<(RoomId, Role, Principal)>,
    invitations: BTreeSet<(RoomId, UserId)>,
    addins: BTreeMap<AddInId, AddIn>,
    messages: Vec<Message>,
    sessions: BTreeMap<String, UserId>,
    config: PoolConfig,
    feeds: BTreeMap<FeedId, Feed>,
}

fn find_by_name<'a, T>(
    mut items: impl Iterator<Item = &'a T>,
    name: &str,
    f: impl Fn(&T) -> &str,
) -> Option<T>
where
    T: Clone + 'a,
{
    items.find(|x| name_key(f(x)) == name_key(name)).cloned()
}

impl State for Mem {
    fn user(&self, id: UserId) -> Result<Option<User>, StateError> {
        Ok(self.users.get(&id).cloned())
    }
    fn user_by_name(&self, name: &str) -> Result<Option<User>, StateError> {
        Ok(find_by_name(self.users.values(), name, |u| &u.name))
    }
    fn user_count(&self) -> Result<i64, StateError> {
        Ok(self.users.len() as i64)
    }
    fn next_user_id(&self) -> Result<UserId, StateError> {
        Ok(self.users.keys().max().copied().unwrap_or(0) + 1)
    }
    fn group(&self, id: GroupId) -> Result<Option<Group>, StateError> {
        Ok(self.groups.get(&id).cloned())
    }
    fn group_by_name(&self, name: &str) -> Result<Option<Group>, StateError> {
        Ok(find_by_name(self.groups.values(), name, |g| &g.name))
    }
    fn next_group_id(&self) -> Result<GroupId, StateError> {
        Ok(self.groups.keys().max().copied().unwrap_or(0) + 1)
    }
    fn group_members(&self, id: GroupId) -> Result<Vec<Principal>, StateError> {
        Ok(self
            .group_members
            .iter()
            .filter(|(g, _)| *g == id)
            .map(|(_, p)| *p)
            .collect())
    }
    fn groups_of(&self, p: Principal) -> Result<BTreeSet<GroupId>, StateError> {
        let mut out = BTreeSet::new();
        let mut todo = vec![p];
        while let Some(x) = todo.pop() {
            for (g, m) in &self.group_members {
                if *m == x && out.insert(*g) {
                    todo.push(Principal::Group(*g));
                }
            }
        }
        Ok(out)
    }
    fn category(&self, id: CategoryId) -> Result<Option<Category>, StateError> {
        Ok(self.categories.get(&id).cloned())
    }
    fn category_by_name(&self, name: &str) -> Result<Option<Category>, StateError> {
        Ok(find_by_name(self.categories.values(), name, |c| &c.name))
    }
    fn next_category_id(&self) -> Result<CategoryId, StateError> {
        Ok(self.categories.keys().max().copied().unwrap_or(0) + 1)
    }
    fn category_list(
        &self,
        id: CategoryId,
        list: CategoryList,
    ) -> Result<Vec<Principal>, StateError> {
        Ok(self
            .category_lists
            .iter()
            .filter(|(c, l, _)| *c == id && *l == list)
            .map(|t| t.2)
            .collect())
    }
    fn category_room_count(&self, id: CategoryId) -> Result<i64, StateError> {
        Ok(self.rooms.values().filter(|r| r.category == id).count() as i64)
    }
    fn room(&self, id: RoomId) -> Result<Option<RoomInfo>, StateError> {
        Ok(self.rooms.get(&id).cloned())
    }
    fn room_by_name(&self, name: &str) -> Result<Option<RoomInfo>, StateError> {
        Ok(find_by_name(self.rooms.values(), name, |r| &r.name))
    }
    fn next_room_id(&self) -> Result<RoomId, StateError> {
        Ok(self.rooms.keys().max().copied().unwrap_or(0) + 1)
    }
    fn access(&self, room: RoomId, user: UserId) -> Result<Access, StateError> {
        let mut mine: BTreeSet<Principal> = self
            .groups_of(Principal::User(user))?
            .into_iter()
            .map(Principal::Group)
            .collect();
        mine.insert(Principal::User(user));
        let has = |role| {
            self.roles
                .iter()
                .any(|(r, ro, p)| *r == room && *ro == role && mine.contains(p))
        };
        let (member, manager, presenter) =
            (has(Role::Member), has(Role::Manager), has(Role::Presenter));
        mine.insert(Principal::Everyone);
        let category = self.rooms.get(&room).map(|r| r.category).unwrap_or(0);
        let named = |list| {
            self.category_lists
                .iter()
                .any(|(c, l, p)| *c == category && *l == list && mine.contains(p))
        };
        Ok(Access {
            member,
            manager,
            presenter,
            allowed: category_permits(named(CategoryList::Allowed), named(CategoryList::Denied)),
            invited: self.invitations.contains(&(room, user)),
        })
    }
    fn room_entries(&self, room: RoomId, role: Role) -> Result<Vec<Principal>, StateError> {
        Ok(self
            .roles
            .iter()
            .filter(|(r, ro, _)| *r == room && *ro == role)
            .map(|t| t.2)
            .collect())
    }
    fn addin(&self, id: AddInId) -> Result<Option<AddIn>, StateError> {
        Ok(self.addins.get(&id).cloned())
    }
    fn addin_by_name(&self, name: &str) -> Result<Option<AddIn>, StateError> {
        Ok(find_by_name(self.addins.values(), name, |a| &a.name))
    }
    fn next_addin_id(&self) -> Result<AddInId, StateError> {
        Ok(self.addins.keys().max().copied().unwrap_or(0) + 1)
    }
    fn message_by_client_id(
        &self,
        sender: UserId,
        id: &str,
    ) -> Result<Option<Message>, StateError> {
        Ok(self
            .messages
            .iter()
            .find(|m| m.sender == sender && m.client_msg_id == id)
            .cloned())
    }
    fn matching_messages(
        &self,
        room: Option<RoomId>,
        sender: Option<UserId>,
        filter: &MessageFilter,
        limit: usize,
    ) -> Result<Vec<(RoomId, Vec<Seq>)>, StateError> {
        let mut out: BTreeMap<RoomId, Vec<Seq>> = BTreeMap::new();
        for m in self.messages.iter().filter(|m| {
            room.is_none_or(|r| m.room == r)
                && sender.is_none_or(|s| m.sender == s)
                && filter
                    .text
                    .as_ref()
                    .is_none_or(|t| m.body.to_lowercase().contains(&t.to_lowercase()))
                && filter.since.is_none_or(|t| m.ts >= t)
                && filter.until.is_none_or(|t| m.ts <= t)
        }) {
            out.entry(m.room).or_default().push(m.seq);
        }
        let _ = limit;
        Ok(out.into_iter().collect())
    }
    fn session_user(&self, token_hash: &str) -> Result<Option<UserId>, StateError> {
        Ok(self.sessions.get(token_hash).copied())
    }
    fn configuration(&self) -> Result<PoolConfig, StateError> {
        Ok(self.config)
    }
    fn feeds(&self, user: UserId) -> Result<Vec<Feed>, StateError> {
        Ok(self
            .feeds
            .values()
            .filter(|f| f.user == user)
            .cloned()
            .collect())
    }
    fn next_feed_id(&self) -> Result<FeedId, StateError> {
        Ok(self.feeds.keys().max().copied().unwrap_or(0) + 1)
    }
}

impl Mem {
    fn apply(&mut self, ev: &Event) {
        match ev {
            Event::UserCreated { user, .. } => {
                self.users.insert(user.id, user.clone());
            }
            Event::SessionCreated {
                token_hash, user, ..
            } => {
                self.sessions.insert(token_hash.clone(), *user);
            }
            Event::SessionEnded { token_hash } => {
                self.sessions.remove(token_hash);
            }
            Event::GroupCreated { group } | Event::GroupUpdated { group } => {
                self.groups.insert(group.id, group.clone());
            }
            Event::GroupMembersChanged {
                group,
                added,
                removed,
            } => {
                for p in added {
                    self.group_members.insert((*group, *p));
                }
                for p in removed {
                    self.group_members.remove(&(*group, *p));
                }
            }
            Event::GroupDeleted { group } => {
                let p = Principal::Group(*group);
                self.groups.remove(group);
                self.group_members.retain(|(g, m)| g != group && *m != p);
                self.category_lists.retain(|t| t.2 != p);
                self.roles.retain(|t| t.2 != p);
            }
            Event::CategoryCreated { category } | Event::CategoryUpdated { category } => {
                self.categories.insert(category.id, category.clone());
            }
            Event::CategoryListChanged {
                category,
                list,
                added,
                removed,
            } => {
                for p in added {
                    self.category_lists.insert((*category, *list, *p));
                }
                for p in removed {
                    self.category_lists.remove(&(*category, *list, *p));
                }
            }
            Event::CategoryDeleted { category } => {
                self.categories.remove(category);
                self.category_lists.retain(|t| t.0 != *category);
            }
            Event::RoomCreated { room } | Event::RoomUpdated { room } => {
                self.rooms.insert(room.id, room.clone());
            }
            Event::RoomDeleted { room } => {
                self.rooms.remove(room);
                self.roles.retain(|t| t.0 != *room);
                self.invitations.retain(|t| t.0 != *room);
                self.messages.retain(|m| m.room != *room);
            }
            Event::RoleGranted {
                room,
                role,
                principals,
            } => {
                for p in principals {
                    self.roles.insert((*room, *role, *p));
                }
            }
            Event::RoleRevoked {
                room,
                role,
                principals,
            } => {
                for p in principals {
                    self.roles.remove(&(*room, *role, *p));
                }
            }
            Event::Invited { room, user, .. } => {
                self.invitations.insert((*room, *user));
            }
            Event::InvitationClosed { room, user } => {
                self.invitations.remove(&(*room, *user));
            }
            Event::AddInCreated { addin } => {
                self.addins.insert(addin.id, addin.clone());
            }
            Event::AddInDeleted { addin } => {
                self.addins.remove(addin);
                for r in self.rooms.values_mut() {
                    if r.addin == Some(*addin) {
                        r.addin = None;
                    }
                }
            }
            Event::MessagePosted { message, .. } => {
                if let Some(r) = self.rooms.get_mut(&message.room) {
                    r.last_seq = message.seq;
                }
                self.messages.push(message.clone());
            }
            Event::MessagesChanged { room, seqs, change } => {
                for m in self.messages.iter_mut() {
                    if m.room == *room && seqs.contains(&m.seq) {
                        if let MessageChange::Replaced(t) = change {
                            m.body = t.clone();
                            m.replaced = true;
                        }
                    }
                }
                if *change == MessageChange::Removed {
                    self.messages
                        .retain(|m| m.room != *room || !seqs.contains(&m.seq));
                }
            }
            Event::Accessed { .. } => {}
            Event::ConfigurationSet { config } => self.config = *config,
            Event::MessagesImported { room, messages } => {
                if let (Some(r), Some(last)) = (self.rooms.get_mut(room), messages.last()) {
                    r.last_seq = last.seq;
                }
                self.messages.extend(messages.iter().cloned());
            }
            Event::FeedSaved { feed } => {
                self.feeds.insert(feed.id, feed.clone());
            }
            Event::FeedDeleted { feed, .. } => {
                self.feeds.remove(feed);
            }
            Event::RoomCleared { room, until } => {
                self.messages.retain(|m| m.room != *room || m.ts > *until);
            }
        }
    }

    fn run(&mut self, cmd: Command) -> Result<Outcome, DecideError> {
        let (events, outcome) = decide(self, 1000, cmd)?;
        for e in &events {
            self.apply(e);
        }
        Ok(outcome)
    }

    /// admin (1), alice (2), bob (3), a category (1).
    fn seeded() -> Mem {
        let mut m = Mem::default();
        m.run(Command::BootstrapAdmin {
            name: "admin".into(),
            password_hash: "h".into(),
        })
        .unwrap();
        for n in ["alice", "bob"] {
            m.run(Command::CreateUser {
                actor: Actor::User(1),
                name: n.into(),
                display_name: None,
                password_hash: "h".into(),
                admin: false,
            })
            .unwrap();
        }
        m.run(Command::CreateCategory {
            actor: Actor::User(1),
            category: Box::new(CategoryChanges {
                name: Some("general".into()),
                ..Default::default()
            }),
        })
        .unwrap();
        m
    }

    fn make_room(
        &mut self,
        by: UserId,
        name: &str,
        privacy: Privacy,
        room_type: RoomType,
    ) -> RoomId {
        match self
            .run(Command::CreateRoom {
                actor: Actor::User(by),
                category: 1,
                room: Box::new(RoomChanges {
                    name: Some(name.into()),
                    privacy: Some(privacy),
                    room_type: Some(room_type),
                    ..Default::default()
                }),
            })
            .unwrap()
        {
            Outcome::Room(r) => r.id,
            o => panic!("unexpected {o:?}"),
        }
    }
}

fn users(ids: &[UserId]) -> Vec<Principal> {
    ids.iter().map(|u| Principal::User(*u)).collect()
}

fn post(user: UserId, room: RoomId, cmid: &str) -> Command {
    Command::PostMessage {
        actor: user,
        room,
        body: format!("hello {cmid}"),
        client_msg_id: cmid.into(),
        alert: false,
    }
}

#[test]
fn creator_becomes_manager_and_posts() {
    let mut m = Mem::seeded();
    let r = m.make_room(2, "lobby", Privacy::Closed, RoomType::Normal);
    assert!(m.access(r, 2).unwrap().manager);
    assert!(matches!(
        m.run(post(2, r, "a")),
        Ok(Outcome::Message { created: true, .. })
    ));
    // bob is not a member of the closed room
    assert_eq!(
        m.run(post(3, r, "b")).unwrap_err(),
        DecideError::Domain(DomainError::Forbidden(
            "only members post in this room".into()
        ))
    );
}

#[test]
fn secret_room_does_not_exist_for_outsiders() {
    let mut m = Mem::seeded();
    let r = m.make_room(2, "hidden", Privacy::Secret, RoomType::Normal);
    assert_eq!(
        m.run(post(3, r, "x")).unwrap_err(),
        DecideError::Domain(DomainError::NotFound("room".into()))
    );
}

#[test]
fn auditorium_only_presenters_post() {
    let mut m = Mem::seeded();
    let r = m.make_room(2, "town hall", Privacy::Open, RoomType::Auditorium);
    assert!(m.run(post(3, r, "x")).is_err());
    let mut changes = RoomChanges::default();
    changes.presenters.add = vec!["bob".into()];
    m.run(Command::UpdateRoom {
        actor: Actor::User(2),
        room: r,
        changes: Box::new(changes),
    })
    .unwrap();
    assert!(m.run(post(3, r, "x")).is_ok());
}

#[test]
fn room_names_are_unique_without_case() {
    let mut m = Mem::seeded();
    m.make_room(2, "Lobby", Privacy::Open, RoomType::Normal);
    let err = m
        .run(Command::CreateRoom {
            actor: Actor::User(3),
            category: 1,
            room: Box::new(RoomChanges {
                name: Some("lobby".into()),
                ..Default::default()
            }),
        })
        .unwrap_err();
    assert!(matches!(
        err,
        DecideError::Domain(DomainError::NameTaken { .. })
    ));
}

#[test]
fn list_changes_replace_then_add_then_remove() {
    let mut m = Mem::seeded();
    let r = m.make_room(1, "ops", Privacy::Closed, RoomType::Normal);
    let changes = RoomChanges {
        members: ListChange {
            add: vec!["bob".into()],
            remove: vec![],
            replace: Some(vec!["alice".into(), "admin".into()]),
        },
        ..RoomChanges::default()
    };
    m.run(Command::UpdateRoom {
        actor: Actor::User(1),
        room: r,
        changes: Box::new(changes),
    })
    .unwrap();
    assert_eq!(m.room_entries(r, Role::Member).unwrap(), users(&[1, 2, 3]));
    let mut changes = RoomChanges::default();
    changes.members.remove = vec!["alice".into()];
    m.run(Command::UpdateRoom {
        actor: Actor::User(1),
        room: r,
        changes: Box::new(changes),
    })
    .unwrap();
    assert_eq!(m.room_entries(r, Role::Member).unwrap(), users(&[1, 3]));
    let mut changes = RoomChanges::default();
    changes.members.add = vec!["nobody".into()];
    let err = m
        .run(Command::UpdateRoom {
            actor: Actor::User(1),
            room: r,
            changes: Box::new(changes),
        })
        .unwrap_err();
    assert_eq!(
        err,
        DecideError::Domain(DomainError::UnknownUser("nobody".into()))
    );
    assert_eq!(
        m.room_entries(r, Role::Member).unwrap(),
        users(&[1, 3]),
        "a refused change changes nothing"
    );
}

#[test]
fn only_admins_create_users_and_categories() {
    let mut m = Mem::seeded();
    let err = m
        .run(Command::CreateCategory {
            actor: Actor::User(2),
            category: Box::new(CategoryChanges {
                name: Some("x".into()),
                ..Default::default()
            }),
        })
        .unwrap_err();
    assert!(matches!(
        err,
        DecideError::Domain(DomainError::Forbidden(_))
    ));
    let err = m
        .run(Command::BootstrapAdmin {
            name: "root".into(),
            password_hash: "h".into(),
        })
        .unwrap_err();
    assert!(matches!(
        err,
        DecideError::Domain(DomainError::Forbidden(_))
    ));
}

#[test]
fn body_limits() {
    let mut m = Mem::seeded();
    let r = m.make_room(2, "lobby", Privacy::Open, RoomType::Normal);
    let big = "x".repeat(MAX_BODY_BYTES + 1);
    let cmd = Command::PostMessage {
        actor: 2,
        room: r,
        body: big,
        client_msg_id: "c".into(),
        alert: false,
    };
    assert!(matches!(
        m.run(cmd),
        Err(DecideError::Domain(DomainError::Invalid(_)))
    ));
    let exact = "é".repeat(MAX_BODY_BYTES / 2);
    let cmd = Command::PostMessage {
        actor: 2,
        room: r,
        body: exact,
        client_msg_id: "c".into(),
        alert: false,
    };
    assert!(m.run(cmd).is_ok());
}

proptest! {
    /// Any interleaving of posts (with retries) from several users into several
    /// rooms: every room's sequence numbers are 1..=n with no gap, and each
    /// (sender, client_msg_id) creates exactly one message.
    #[test]
    fn sequences_have_no_gaps_and_retries_create_nothing(
        posts in proptest::collection::vec((1i64..=3, 0usize..3, 0u8..20), 1..200)
    ) {
        let mut m = Mem::seeded();
        let rooms: Vec<RoomId> = (0..3).map(|i| m.make_room(1, &format!("room{i}"), Privacy::Open, RoomType::Normal)).collect();
        let mut first: BTreeMap<(UserId, u8), Message> = BTreeMap::new();
        for (user, room_ix, cmid) in posts {
            // a client_msg_id belongs to the first room it was used in
            let room = first.get(&(user, cmid)).map(|m| m.room).unwrap_or(rooms[room_ix]);
            match m.run(post(user, room, &cmid.to_string())).unwrap() {
                Outcome::Message { message, created } => {
                    match first.get(&(user, cmid)) {
                        Some(prev) => { prop_assert!(!created); prop_assert_eq!(prev, &message); }
                        None => { prop_assert!(created); first.insert((user, cmid), message); }
                    }
                }
                o => prop_assert!(false, "unexpected {:?}", o),
            }
        }
        prop_assert_eq!(m.messages.len(), first.len());
        for r in rooms {
            let seqs: Vec<Seq> = m.messages.iter().filter(|x| x.room == r).map(|x| x.seq).collect();
            let expected: Vec<Seq> = (1..=seqs.len() as i64).collect();
            prop_assert_eq!(seqs, expected);
        }
    }
}
