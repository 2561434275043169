//! The permission matrix against the real engine: category lists (allowed,
//! denied, creators) × room privacy × room type × role × group nesting, for
//! find, read, post, invite, manage and create. Every verdict is checked the
//! way the chat server reaches it: writes through decide (commands accepted
//! or refused), reads through the store's effective access and the
//! permission rules. The expected values come from an oracle written here
//! independently of the code under test.

use pchat_domain::permissions::{can_find, can_read, Caller};
use pchat_domain::*;
use pchat_engine::ChatEngine;
use pchat_store::{ChatStore, StoreError};
use std::sync::Arc;

fn env(command: Command) -> Envelope {
    Envelope {
        origin: "matrix".into(),
        command,
    }
}

async fn run(store: &Arc<ChatEngine>, command: Command) -> Result<Outcome, StoreError> {
    store.submit(env(command)).await.map(|c| c.outcome)
}

async fn ok(store: &Arc<ChatEngine>, command: Command) -> Outcome {
    match run(store, command.clone()).await {
        Ok(o) => o,
        Err(e) => panic!("{command:?} refused: {e}"),
    }
}

fn list(names: &[&str]) -> ListChange {
    ListChange {
        replace: Some(names.iter().map(|s| s.to_string()).collect()),
        ..ListChange::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Wall {
    AllowEveryone,
    AllowUser,
    /// Allowed through `outer`, which holds `inner`, which holds the user.
    AllowNestedGroup,
    NotAllowed,
    DenyUser,
    DenyNestedGroup,
}

impl Wall {
    const ALL: [Wall; 6] = [
        Wall::AllowEveryone,
        Wall::AllowUser,
        Wall::AllowNestedGroup,
        Wall::NotAllowed,
        Wall::DenyUser,
        Wall::DenyNestedGroup,
    ];
    fn lists(self) -> (ListChange, ListChange) {
        match self {
            Wall::AllowEveryone => (list(&["*"]), list(&[])),
            Wall::AllowUser => (list(&["u", "boss"]), list(&[])),
            Wall::AllowNestedGroup => (list(&["group:outer", "boss"]), list(&[])),
            Wall::NotAllowed => (list(&["boss"]), list(&[])),
            Wall::DenyUser => (list(&["*"]), list(&["u"])),
            Wall::DenyNestedGroup => (list(&["*"]), list(&["group:outer"])),
        }
    }
    fn lets_in(self) -> bool {
        matches!(
            self,
            Wall::AllowEveryone | Wall::AllowUser | Wall::AllowNestedGroup
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Standing {
    None,
    Member,
    /// Member through `outer` (which holds `inner`, which holds the user).
    MemberThroughNestedGroup,
    /// Manager through `inner`.
    ManagerThroughGroup,
    Presenter,
}

impl Standing {
    const ALL: [Standing; 5] = [
        Standing::None,
        Standing::Member,
        Standing::MemberThroughNestedGroup,
        Standing::ManagerThroughGroup,
        Standing::Presenter,
    ];
    fn changes(self) -> RoomChanges {
        let mut c = RoomChanges::default();
        match self {
            Standing::None => {}
            Standing::Member => c.members.add = vec!["u".into()],
            Standing::MemberThroughNestedGroup => c.members.add = vec!["group:outer".into()],
            Standing::ManagerThroughGroup => c.managers.add = vec!["group:inner".into()],
            Standing::Presenter => c.presenters.add = vec!["u".into()],
        }
        c
    }
}

struct Expected {
    find: bool,
    read: bool,
    post: bool,
    manage: bool,
}

/// The rules, written out plainly.
fn oracle(wall: Wall, privacy: Privacy, kind: RoomType, standing: Standing) -> Expected {
    let listed = standing != Standing::None;
    if !wall.lets_in() {
        return Expected {
            find: false,
            read: false,
            post: false,
            manage: false,
        };
    }
    Expected {
        find: privacy != Privacy::Secret || listed,
        read: privacy == Privacy::Open || listed,
        post: match kind {
            RoomType::Auditorium => standing == Standing::Presenter,
            RoomType::Normal => privacy == Privacy::Open || listed,
        },
        manage: standing == Standing::ManagerThroughGroup,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChatEngine::open(&dir.path().join("mgc.db")).unwrap();
    ok(
        &store,
        Command::BootstrapAdmin {
            name: "admin".into(),
            password_hash: "h".into(),
        },
    )
    .await;
    for name in ["u", "boss", "guest"] {
        ok(
            &store,
            Command::CreateUser {
                actor: Actor::System,
                name: name.into(),
                display_name: None,
                password_hash: "h".into(),
                admin: false,
            },
        )
        .await;
    }
    let u = match store.credentials("u".into()).await.unwrap() {
        Some((user, _)) => user,
        None => panic!("no user u"),
    };
    for (name, members) in [("inner", vec!["u"]), ("outer", vec!["group:inner"])] {
        ok(
            &store,
            Command::CreateGroup {
                actor: Actor::System,
                group: Box::new(GroupChanges {
                    name: Some(name.into()),
                    members: list(&members),
                    ..GroupChanges::default()
                }),
            },
        )
        .await;
    }

    let mut checked = 0;
    for wall in Wall::ALL {
        // Every room and role is set up while the category lets everyone in;
        // then the wall goes up, as an administrator would build it.
        let cat = match ok(
            &store,
            Command::CreateCategory {
                actor: Actor::System,
                category: Box::new(CategoryChanges {
                    name: Some(format!("{wall:?}")),
                    creators: list(&["group:outer"]),
                    ..CategoryChanges::default()
                }),
            },
        )
        .await
        {
            Outcome::Category(c) => c.id,
            o => panic!("unexpected {o:?}"),
        };
        let mut rooms = Vec::new();
        for privacy in [Privacy::Open, Privacy::Closed, Privacy::Secret] {
            for kind in [RoomType::Normal, RoomType::Auditorium] {
                for standing in Standing::ALL {
                    let mut changes = standing.changes();
                    changes.name = Some(format!("{wall:?} {privacy:?} {kind:?} {standing:?}"));
                    changes.privacy = Some(privacy);
                    changes.room_type = Some(kind);
                    let room = match ok(
                        &store,
                        Command::CreateRoom {
                            actor: Actor::System,
                            category: cat,
                            room: Box::new(changes),
                        },
                    )
                    .await
                    {
                        Outcome::Room(r) => r,
                        o => panic!("unexpected {o:?}"),
                    };
                    rooms.push((room, privacy, kind, standing));
                }
            }
        }
        let (allowed, denied) = wall.lists();
        ok(
            &store,
            Command::UpdateCategory {
                actor: Actor::System,
                category: cat,
                changes: Box::new(CategoryChanges {
                    allowed,
                    denied,
                    ..CategoryChanges::default()
                }),
            },
        )
        .await;

        // Creating rooms: creators are `group:outer` (so the user, two levels
        // down), and the wall still applies to creators.
        let created = run(
            &store,
            Command::new_room(
                Actor::User(u.id),
                cat,
                &format!("{wall:?} by u"),
                Privacy::Closed,
            ),
        )
        .await;
        assert_eq!(
            created.is_ok(),
            wall.lets_in(),
            "create in {wall:?}: {created:?}"
        );

        for (room, privacy, kind, standing) in rooms {
            let ctx = format!("{wall:?} {privacy:?} {kind:?} {standing:?}");
            let want = oracle(wall, privacy, kind, standing);
            let access = store.access(room.id, u.id).await.unwrap();
            let me = Caller {
                admin: false,
                access,
            };
            assert_eq!(can_find(&room, me), want.find, "find {ctx}");
            assert_eq!(can_read(&room, me), want.read, "read {ctx}");
            let posted = run(
                &store,
                Command::PostMessage {
                    actor: u.id,
                    room: room.id,
                    body: "hi".into(),
                    client_msg_id: format!("m{}", room.id),
                    alert: false,
                },
            )
            .await;
            assert_eq!(posted.is_ok(), want.post, "post {ctx}: {posted:?}");
            let edit = RoomChanges {
                description: Some("edited".into()),
                ..RoomChanges::default()
            };
            let managed = run(
                &store,
                Command::UpdateRoom {
                    actor: Actor::User(u.id),
                    room: room.id,
                    changes: Box::new(edit),
                },
            )
            .await;
            assert_eq!(managed.is_ok(), want.manage, "manage {ctx}: {managed:?}");
            // Invitations are on (category and room inherit): managers invite.
            let invited = run(
                &store,
                Command::Invite {
                    actor: Actor::User(u.id),
                    room: room.id,
                    user: "boss".into(),
                },
            )
            .await;
            assert_eq!(invited.is_ok(), want.manage, "invite {ctx}: {invited:?}");
            // A refusal never hides a room one may not find as "forbidden".
            if !want.find {
                for refused in [&posted, &managed, &invited] {
                    assert!(
                        matches!(
                            refused,
                            Err(StoreError::Domain(DomainError::NotFound(what))) if what == "room"
                        ),
                        "{ctx}: a room the user may not find must not exist for them: {refused:?}"
                    );
                }
            }
            // The expansion shows the user wherever the lists reach them,
            // with the category's verdict.
            let eligible = store.eligible(room.id).await.unwrap();
            let shown = eligible.iter().find(|(x, _)| x.id == u.id);
            match standing {
                Standing::None => assert!(shown.is_none(), "eligible {ctx}"),
                _ => {
                    let (_, a) = shown.unwrap_or_else(|| panic!("eligible {ctx}: u missing"));
                    assert_eq!(a.allowed, wall.lets_in(), "eligible {ctx}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 3 * 2 * 5);
    store.close();
}
