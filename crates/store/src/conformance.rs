//! The conformance suite: what every [`ChatStore`] must do, whatever it is
//! built on (the embedded engine today; a network client of a database
//! server next). Each implementation's tests run every check in [`CHECKS`]
//! against a fresh, empty store:
//!
//! ```text
//! for (name, check) in pchat_store::conformance::CHECKS {
//!     check(new_empty_store()).await; // panics with `name` in the message
//! }
//! ```
//!
//! Enabled by the `conformance` feature; test code, so it asserts and panics.

use crate::{BoxFuture, ChatStore, Page, SearchQuery, StoreError};
use pchat_domain::*;
use std::sync::Arc;

pub type Check = fn(Arc<dyn ChatStore>) -> BoxFuture<'static, ()>;

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("posts_commit_in_submit_order_without_gaps", |s| {
        Box::pin(posts_commit_in_submit_order_without_gaps(s))
    }),
    ("retries_return_the_first_message", |s| {
        Box::pin(retries_return_the_first_message(s))
    }),
    ("refused_commands_change_nothing", |s| {
        Box::pin(refused_commands_change_nothing(s))
    }),
    ("history_pages", |s| Box::pin(history_pages(s))),
    ("search_is_limited_to_given_rooms", |s| {
        Box::pin(search_is_limited_to_given_rooms(s))
    }),
    ("subscribe_catches_up_then_follows", |s| {
        Box::pin(subscribe_catches_up_then_follows(s))
    }),
    ("users_sessions_and_roles", |s| {
        Box::pin(users_sessions_and_roles(s))
    }),
    ("access_through_nested_groups_and_category_walls", |s| {
        Box::pin(access_through_nested_groups_and_category_walls(s))
    }),
    ("removed_replaced_and_cleared_messages", |s| {
        Box::pin(removed_replaced_and_cleared_messages(s))
    }),
    ("feeds_configuration_and_files", |s| {
        Box::pin(feeds_configuration_and_files(s))
    }),
];

fn env(command: Command) -> Envelope {
    Envelope {
        origin: "conformance".into(),
        command,
    }
}

async fn ok(store: &Arc<dyn ChatStore>, command: Command) -> Outcome {
    match store.submit(env(command.clone())).await {
        Ok(c) => c.outcome,
        Err(e) => panic!("{command:?} failed: {e}"),
    }
}

/// admin (1), alice (2), a category (1), an open room "lobby".
async fn seed(store: &Arc<dyn ChatStore>) -> RoomId {
    ok(
        store,
        Command::BootstrapAdmin {
            name: "admin".into(),
            password_hash: "h".into(),
        },
    )
    .await;
    let alice = Command::CreateUser {
        actor: Actor::User(1),
        name: "alice".into(),
        display_name: None,
        password_hash: "h2".into(),
        admin: false,
    };
    ok(store, alice).await;
    ok(store, Command::new_category(Actor::User(1), "general")).await;
    let room = Command::new_room(Actor::User(1), 1, "lobby", Privacy::Open);
    match ok(store, room).await {
        Outcome::Room(r) => r.id,
        o => panic!("unexpected {o:?}"),
    }
}

fn post(sender: UserId, room: RoomId, i: usize) -> Command {
    Command::PostMessage {
        actor: sender,
        room,
        body: format!("message {i} about apples"),
        client_msg_id: format!("c{i}"),
        alert: false,
    }
}

fn seq_of(outcome: &Outcome) -> Seq {
    match outcome {
        Outcome::Message { message, .. } => message.seq,
        o => panic!("unexpected {o:?}"),
    }
}

async fn posts_commit_in_submit_order_without_gaps(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    // all submitted before any answer is awaited: queued in call order
    let answers: Vec<_> = (0..300)
        .map(|i| store.submit(env(post(2, room, i))))
        .collect();
    let mut last_lsn = 0;
    for (i, a) in answers.into_iter().enumerate() {
        let c = a.await.unwrap_or_else(|e| panic!("post {i}: {e}"));
        assert_eq!(
            seq_of(&c.outcome),
            i as Seq + 1,
            "post {i} committed out of order"
        );
        assert!(c.lsn > last_lsn, "LSNs must increase");
        last_lsn = c.lsn;
    }
    let id = store.identity().await.expect("identity");
    assert_eq!(id.last_lsn, last_lsn);
    assert_eq!(
        store
            .room(room)
            .await
            .expect("room")
            .expect("exists")
            .last_seq,
        300
    );
}

async fn retries_return_the_first_message(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    let first = ok(&store, post(2, room, 1)).await;
    let lsn = store.identity().await.expect("identity").last_lsn;
    let again = store.submit(env(post(2, room, 1))).await.expect("retry");
    match (&first, &again.outcome) {
        (
            Outcome::Message {
                message: a,
                created: true,
            },
            Outcome::Message {
                message: b,
                created: false,
            },
        ) => {
            assert_eq!(a, b)
        }
        o => panic!("unexpected {o:?}"),
    }
    assert_eq!(
        store.identity().await.expect("identity").last_lsn,
        lsn,
        "a retry wrote to the log"
    );
    assert_eq!(
        store
            .messages(room, Page::Latest { limit: 10 })
            .await
            .expect("history")
            .len(),
        1
    );
}

async fn refused_commands_change_nothing(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    let lsn = store.identity().await.expect("identity").last_lsn;
    let refusals = [
        Command::new_category(Actor::User(2), "mine"),
        Command::PostMessage {
            actor: 2,
            room: 999,
            body: "x".into(),
            client_msg_id: "a".into(),
            alert: false,
        },
        Command::PostMessage {
            actor: 2,
            room,
            body: String::new(),
            client_msg_id: "b".into(),
            alert: false,
        },
        Command::new_room(Actor::User(2), 1, "LOBBY", Privacy::Closed),
    ];
    for command in refusals {
        match store.submit(env(command.clone())).await {
            Err(StoreError::Domain(_)) => {}
            other => panic!("{command:?} should be refused by the domain, got {other:?}"),
        }
    }
    assert_eq!(store.identity().await.expect("identity").last_lsn, lsn);
}

async fn history_pages(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    for i in 0..120 {
        ok(&store, post(2, room, i)).await;
    }
    let seqs = |v: Vec<Message>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    let get = |page| store.messages(room, page);
    assert_eq!(
        seqs(get(Page::Latest { limit: 3 }).await.expect("latest")),
        vec![118, 119, 120]
    );
    assert_eq!(
        seqs(
            get(Page::Before { seq: 4, limit: 10 })
                .await
                .expect("before")
        ),
        vec![1, 2, 3]
    );
    assert_eq!(
        seqs(
            get(Page::After {
                seq: 117,
                limit: 10
            })
            .await
            .expect("after")
        ),
        vec![118, 119, 120]
    );
    assert!(get(Page::After {
        seq: 120,
        limit: 10
    })
    .await
    .expect("after end")
    .is_empty());
}

async fn search_is_limited_to_given_rooms(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    for i in 0..30 {
        ok(&store, post(2, room, i)).await;
    }
    let q = |text: &str, rooms: Vec<RoomId>, before| SearchQuery {
        text: text.into(),
        rooms,
        limit: 10,
        before,
    };
    let hits = store
        .search(q("apples", vec![room], None))
        .await
        .expect("search");
    assert_eq!(
        hits.iter().map(|h| h.message.seq).collect::<Vec<_>>(),
        (21..=30).rev().collect::<Vec<_>>()
    );
    let older = store
        .search(q("apples", vec![room], Some(hits[9].id)))
        .await
        .expect("page");
    assert_eq!(older[0].message.seq, 20);
    assert!(store
        .search(q("apples", vec![room + 1], None))
        .await
        .expect("other room")
        .is_empty());
    assert!(store
        .search(q("\"unbalanced AND (", vec![room], None))
        .await
        .is_ok());
}

async fn subscribe_catches_up_then_follows(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    for i in 0..50 {
        ok(&store, post(2, room, i)).await;
    }
    let from = store.identity().await.expect("identity").last_lsn - 20;
    let mut sub = store.subscribe(from).expect("subscribe");
    let more: Vec<_> = (50..100)
        .map(|i| store.submit(env(post(2, room, i))))
        .collect();
    for m in more {
        m.await.expect("post");
    }
    let end = store.identity().await.expect("identity").last_lsn;
    let mut expected = from + 1;
    while expected <= end {
        let rec = tokio::time::timeout(std::time::Duration::from_secs(10), sub.recv())
            .await
            .expect("subscription stalled")
            .expect("subscription ended")
            .expect("subscription failed");
        assert_eq!(rec.lsn, expected, "gap or duplicate in the subscription");
        expected += 1;
    }
}

async fn users_sessions_and_roles(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    let (user, hash) = store
        .credentials("ALICE".into())
        .await
        .expect("credentials")
        .expect("alice");
    assert_eq!((user.id, hash.as_str()), (2, "h2"));
    assert!(store
        .credentials("nobody".into())
        .await
        .expect("credentials")
        .is_none());
    ok(
        &store,
        Command::CreateSession {
            user: 2,
            token_hash: "t".into(),
        },
    )
    .await;
    assert_eq!(
        store
            .session_user("t".into())
            .await
            .expect("session")
            .map(|u| u.id),
        Some(2)
    );
    ok(
        &store,
        Command::EndSession {
            token_hash: "t".into(),
        },
    )
    .await;
    assert!(store
        .session_user("t".into())
        .await
        .expect("session")
        .is_none());
    let mut changes = RoomChanges::default();
    changes.members.add = vec!["alice".into()];
    ok(
        &store,
        Command::UpdateRoom {
            actor: Actor::User(1),
            room,
            changes: Box::new(changes),
        },
    )
    .await;
    let roles = store.room_roles(room).await.expect("roles");
    assert_eq!(
        (roles.members, roles.managers),
        (vec!["alice".to_string()], vec!["admin".to_string()])
    );
    let access = store.access(room, 2).await.expect("access");
    assert!(access.member && !access.manager);
    let listed = store.rooms_with_access(2).await.expect("rooms");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].1.member);
    assert_eq!(store.user_count().await.expect("count"), 2);
}

fn list(names: &[&str]) -> ListChange {
    ListChange {
        add: names.iter().map(|n| n.to_string()).collect(),
        ..ListChange::default()
    }
}

/// Effective access: roles through nested groups, the category's verdict
/// (denied wins), invitations; the lists as names; the eligible expansion.
async fn access_through_nested_groups_and_category_walls(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    for (name, members) in [("inner", vec!["alice"]), ("outer", vec!["group:inner"])] {
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
    let changes = RoomChanges {
        presenters: list(&["group:outer"]),
        ..RoomChanges::default()
    };
    ok(
        &store,
        Command::UpdateRoom {
            actor: Actor::System,
            room,
            changes: Box::new(changes),
        },
    )
    .await;
    let a = store.access(room, 2).await.expect("access");
    assert!(a.presenter && a.allowed && !a.member, "{a:?}");
    let roles = store.room_roles(room).await.expect("roles");
    assert_eq!(roles.presenters, vec!["group:outer".to_string()]);
    let groups = store.groups().await.expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1].members, vec!["group:inner".to_string()]);
    let eligible = store.eligible(room).await.expect("eligible");
    // The creator (admin) as manager, and alice through two groups.
    let alice = eligible
        .iter()
        .find(|(u, _)| u.id == 2)
        .expect("alice eligible");
    assert!(alice.1.presenter && eligible.len() == 2, "{eligible:?}");
    // Deny the outer group: alice is walled off, her role stays listed.
    ok(
        &store,
        Command::UpdateCategory {
            actor: Actor::System,
            category: 1,
            changes: Box::new(CategoryChanges {
                denied: list(&["group:outer"]),
                ..CategoryChanges::default()
            }),
        },
    )
    .await;
    let a = store.access(room, 2).await.expect("access");
    assert!(a.presenter && !a.allowed, "{a:?}");
    let lists = store.category_lists(1).await.expect("lists");
    assert_eq!(lists.denied, vec!["group:outer".to_string()]);
    assert_eq!(lists.allowed, vec!["*".to_string()]);
    let rooms = store.rooms_with_access(2).await.expect("rooms");
    assert!(rooms.iter().all(|(_, a)| !a.allowed));
    // Invitations show in access and in the invitee's list.
    ok(
        &store,
        Command::UpdateCategory {
            actor: Actor::System,
            category: 1,
            changes: Box::new(CategoryChanges {
                denied: ListChange {
                    replace: Some(vec![]),
                    ..ListChange::default()
                },
                ..CategoryChanges::default()
            }),
        },
    )
    .await;
    ok(
        &store,
        Command::Invite {
            actor: Actor::System,
            room,
            user: "alice".into(),
        },
    )
    .await;
    assert!(store.access(room, 2).await.expect("access").invited);
    let inv = store.invitations(2).await.expect("invitations");
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].room, room);
}

/// History leaves out removed messages and shows replaced ones; search
/// follows; sequence numbers continue.
async fn removed_replaced_and_cleared_messages(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    for i in 0..5 {
        ok(&store, post(2, room, i)).await;
    }
    let change = |text: &str, change: MessageChange| Command::ChangeMessages {
        actor: Actor::System,
        filter: MessageFilter {
            room: Some(room),
            text: Some(text.into()),
            ..MessageFilter::default()
        },
        change,
    };
    ok(
        &store,
        change("message 1 ", MessageChange::Replaced("gone".into())),
    )
    .await;
    ok(&store, change("message 3 ", MessageChange::Removed)).await;
    let h = store
        .messages(room, Page::Latest { limit: 10 })
        .await
        .expect("history");
    let seqs: Vec<Seq> = h.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 5]);
    assert!(h[1].replaced && h[1].body == "gone", "{:?}", h[1]);
    let hits = store
        .search(SearchQuery {
            text: "gone".into(),
            rooms: vec![room],
            limit: 10,
            before: None,
        })
        .await
        .expect("search");
    assert_eq!(hits.len(), 1);
    ok(
        &store,
        Command::ClearRoom {
            actor: Actor::System,
            room,
            until: i64::MAX,
        },
    )
    .await;
    assert!(store
        .messages(room, Page::Latest { limit: 10 })
        .await
        .expect("history")
        .is_empty());
    match ok(&store, post(2, room, 99)).await {
        Outcome::Message { message, .. } => assert_eq!(message.seq, 6),
        o => panic!("unexpected {o:?}"),
    }
}

/// Feeds, the pool configuration and files round-trip through the store.
async fn feeds_configuration_and_files(store: Arc<dyn ChatStore>) {
    let room = seed(&store).await;
    ok(
        &store,
        Command::SaveFeed {
            actor: 2,
            name: "apples".into(),
            words: vec!["Apples".into()],
            senders: vec![],
            rooms: vec![room],
        },
    )
    .await;
    let feeds = store.feeds(2).await.expect("feeds");
    assert_eq!(feeds.len(), 1);
    assert_eq!(feeds[0].words, vec!["apples".to_string()]);
    for i in 0..3 {
        ok(&store, post(2, room, i)).await;
    }
    let hits = store
        .feed_messages(feeds[0].clone(), vec![room], None, 10)
        .await
        .expect("feed messages");
    assert!(!hits.is_empty() && hits.windows(2).all(|w| w[0].id > w[1].id));
    let config = match ok(
        &store,
        Command::SetConfiguration {
            actor: Actor::System,
            changes: ConfigChanges {
                max_file_size_kb: Some(10),
                ..ConfigChanges::default()
            },
        },
    )
    .await
    {
        Outcome::Configuration(c) => c,
        o => panic!("unexpected {o:?}"),
    };
    assert_eq!(store.configuration().await.expect("configuration"), config);
    let file = FileRef {
        sha256: "ab".repeat(32),
        size: 9000,
        name: "a.txt".into(),
        content_type: "text/plain".into(),
    };
    ok(
        &store,
        Command::PostFile {
            actor: 2,
            room,
            file: file.clone(),
            body: None,
            client_msg_id: "file-1".into(),
        },
    )
    .await;
    assert_eq!(
        store
            .file_in_room(room, file.sha256.clone())
            .await
            .expect("file"),
        Some(file.clone())
    );
    let too_big = FileRef {
        size: 10_001,
        ..file
    };
    let refused = store
        .submit(env(Command::PostFile {
            actor: 2,
            room,
            file: too_big,
            body: None,
            client_msg_id: "file-2".into(),
        }))
        .await;
    assert!(matches!(refused, Err(StoreError::Domain(_))), "{refused:?}");
}
