//! The engine against real SQLite files in a temporary directory.

use pchat_domain::*;
use pchat_engine::replay::{dump_tables, replay_into};
use pchat_engine::{compliance, open_connection, ChatEngine, ChatMachine};
use pchat_store::{ChatStore, Page};
use std::sync::Arc;

/// The ChatStore conformance suite against the embedded engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_to_the_chat_store_contract() {
    for (name, check) in pchat_store::conformance::CHECKS {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatEngine::open(&dir.path().join("mgc.db")).unwrap();
        let handle = tokio::spawn(check(store.clone()));
        if let Err(e) = handle.await {
            panic!("conformance check {name} failed: {e}");
        }
        store.close();
    }
}

fn env(command: Command) -> Envelope {
    Envelope {
        origin: "test-server".into(),
        command,
    }
}

async fn seed(store: &ChatEngine) -> RoomId {
    store
        .submit(env(Command::BootstrapAdmin {
            name: "admin".into(),
            password_hash: "h".into(),
        }))
        .await
        .unwrap();
    store
        .submit(env(Command::new_category(Actor::User(1), "general")))
        .await
        .unwrap();
    let room = store
        .submit(env(Command::new_room(
            Actor::User(1),
            1,
            "lobby",
            Privacy::Open,
        )))
        .await
        .unwrap();
    match room.outcome {
        Outcome::Room(r) => r.id,
        o => panic!("unexpected {o:?}"),
    }
}

fn post(room: RoomId, i: usize) -> Envelope {
    env(Command::PostMessage {
        actor: 1,
        room,
        body: format!("message number {i} about apples"),
        client_msg_id: format!("c{i}"),
        alert: i.is_multiple_of(7),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mgc.db");
    let first = {
        let store = ChatEngine::open(&path).unwrap();
        seed(&store).await;
        let id = store.identity().await.unwrap();
        store.close();
        id
    };
    assert_eq!(first.name, "mgc");
    assert_eq!(first.family_id.len(), 32);
    assert!(first.last_lsn >= 4);
    let store = ChatEngine::open(&path).unwrap();
    let again = store.identity().await.unwrap();
    assert_eq!(first, again);
    // and the LSNs go on from where they were
    let c = store.submit(post(1, 1)).await.unwrap();
    assert_eq!(c.lsn, first.last_lsn + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_group_commit_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChatEngine::open(&dir.path().join("mgc.db")).unwrap();
    let room = seed(&store).await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.submit(post(room, i)).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        match t.await.unwrap().outcome {
            Outcome::Message {
                message,
                created: true,
            } => seqs.push(message.seq),
            o => panic!("unexpected {o:?}"),
        }
    }
    seqs.sort();
    assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
    // a retry creates nothing and returns the first message
    let again = store.submit(post(room, 42)).await.unwrap();
    assert!(
        matches!(again.outcome, Outcome::Message { created: false, ref message } if message.body.contains("42"))
    );
    let latest = store
        .messages(room, Page::Latest { limit: 50 })
        .await
        .unwrap();
    assert_eq!(
        latest.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (451..=500).collect::<Vec<_>>()
    );
    let before = store
        .messages(room, Page::Before { seq: 10, limit: 3 })
        .await
        .unwrap();
    assert_eq!(
        before.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    let after = store
        .messages(
            room,
            Page::After {
                seq: 498,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![499, 500]
    );
    // batches of more than one command were committed together
    let mut text = String::new();
    store.metrics().batch_size.render("b", "b", &mut text);
    let single: u64 = text
        .lines()
        .find(|l| l.starts_with("b_bucket{le=\"1\"}"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let total: u64 = text
        .lines()
        .find(|l| l.starts_with("b_count"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        single < total,
        "expected some batches larger than one: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_log_gives_identical_tables() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mgc.db");
    {
        let store = ChatEngine::open(&src).unwrap();
        let room = seed(&store).await;
        store
            .submit(env(Command::CreateUser {
                actor: Actor::User(1),
                name: "bob".into(),
                display_name: Some("Bob B".into()),
                password_hash: "x".into(),
                admin: false,
            }))
            .await
            .unwrap();
        let mut changes = RoomChanges::default();
        changes.members.add = vec!["bob".into()];
        changes.presenters.replace = Some(vec!["admin".into()]);
        changes.description = Some("new".into());
        store
            .submit(env(Command::UpdateRoom {
                actor: Actor::User(1),
                room,
                changes: Box::new(changes),
            }))
            .await
            .unwrap();
        store
            .submit(env(Command::CreateSession {
                user: 2,
                token_hash: "t".into(),
            }))
            .await
            .unwrap();
        let futs: Vec<_> = (0..200).map(|i| store.submit(post(room, i))).collect();
        for f in futs {
            f.await.unwrap();
        }
        store
            .submit(env(Command::EndSession {
                token_hash: "t".into(),
            }))
            .await
            .unwrap();
        room_model_workload(&store, room).await;
        store.close();
    }
    // With rank 1, FTS5 checks its index against the messages table too.
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .expect("the full-text index matches the messages after removals and replacements");
    let dst = dir.path().join("replayed.db");
    replay_into::<ChatMachine>(&src, &dst).unwrap();
    let a = dump_tables(&open_connection(&src).unwrap()).unwrap();
    let b = dump_tables(&open_connection(&dst).unwrap()).unwrap();
    assert!(a.contains("## messages\n") && a.lines().count() > 200);
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_records_every_event_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChatEngine::open(&dir.path().join("mgc.db")).unwrap();
    let room = seed(&store).await;
    let comp_path = dir.path().join("mgccomp.db");
    for round in 0..3 {
        let comp = compliance::open(&comp_path).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let recorder = tokio::spawn(compliance::run_recorder(
            store.clone(),
            comp.clone(),
            stop_rx,
        ));
        for i in 0..100 {
            store.submit(post(room, round * 100 + i)).await.unwrap();
        }
        let target = store.identity().await.unwrap().last_lsn;
        for _ in 0..200 {
            if compliance::recorded_through(&comp).await.unwrap() == target {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(compliance::recorded_through(&comp).await.unwrap(), target);
        stop_tx.send(true).unwrap();
        recorder.await.unwrap().unwrap();
        comp.close();
    }
    let c = open_connection(&comp_path).unwrap();
    let chats: i64 = c
        .query_row(
            "SELECT count(*) FROM compliance WHERE kind = 'CHAT'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let distinct: i64 = c
        .query_row(
            "SELECT count(DISTINCT seq) FROM compliance WHERE kind = 'CHAT' AND room_id = ?1",
            [room],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((chats, distinct), (300, 300));
    let server: String = c
        .query_row(
            "SELECT server FROM compliance WHERE kind = 'CHAT' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(server, "test-server");
}

/// A command whose apply fails (here: a session token that already exists,
/// which decide does not check) fails its whole batch, changes nothing, and
/// then fails alone while its batch-mates succeed when retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_apply_fails_its_batch_then_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChatEngine::open(&dir.path().join("mgc.db")).unwrap();
    let room = seed(&store).await;
    let poison = || {
        env(Command::CreateSession {
            user: 1,
            token_hash: "same".into(),
        })
    };
    store.submit(poison()).await.unwrap();
    // To put the next three in one batch: hold the write lock from another
    // connection, so the writer stalls on a first batch while they queue.
    let blocker = rusqlite::Connection::open(dir.path().join("mgc.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let stalled = store.submit(post(room, 0));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let a = store.submit(post(room, 1));
    let bad = store.submit(poison());
    let b = store.submit(post(room, 2));
    blocker.execute_batch("COMMIT").unwrap();
    // (Normally its own batch; on a very slow machine it may have joined the
    // poison's batch and failed with it: the counts below allow for both.)
    let stalled = usize::from(stalled.await.is_ok()) as i64;
    let before = store.identity().await.unwrap().last_lsn;
    let (a, bad, b) = (a.await, bad.await, b.await);
    assert!(bad.is_err());
    assert!(
        matches!(a, Err(pchat_store::StoreError::Unavailable(_))),
        "{a:?}"
    );
    assert!(
        matches!(b, Err(pchat_store::StoreError::Unavailable(_))),
        "{b:?}"
    );
    assert_eq!(
        store.identity().await.unwrap().last_lsn,
        before,
        "a failed batch wrote something"
    );
    // retried together with the poison: only the poison fails now
    let a = store.submit(post(room, 1));
    let bad = store.submit(poison());
    let b = store.submit(post(room, 2));
    let (a, bad, b) = (a.await.unwrap(), bad.await, b.await.unwrap());
    assert!(bad.is_err());
    let seq = |c: &pchat_store::Committed| match &c.outcome {
        Outcome::Message { message, .. } => message.seq,
        o => panic!("unexpected {o:?}"),
    };
    assert_eq!((seq(&a), seq(&b)), (stalled + 1, stalled + 2));
    let msgs = store
        .messages(room, Page::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(msgs.len() as i64, stalled + 2);
}

/// Every kind of room-model event, so replay covers each apply.
async fn room_model_workload(store: &ChatEngine, room: RoomId) {
    let ok = |c: Command| async move {
        match store.submit(env(c.clone())).await {
            Ok(done) => done.outcome,
            Err(e) => panic!("{c:?} refused: {e}"),
        }
    };
    let group = |name: &str, members: &[&str]| Command::CreateGroup {
        actor: Actor::System,
        group: Box::new(GroupChanges {
            name: Some(name.into()),
            members: ListChange {
                add: members.iter().map(|m| m.to_string()).collect(),
                ..ListChange::default()
            },
            ..GroupChanges::default()
        }),
    };
    ok(group("team", &["bob"])).await;
    ok(group("org", &["group:team", "admin"])).await;
    ok(Command::CreateAddIn {
        actor: Actor::System,
        name: "wiki".into(),
        url: "https://wiki.example/room".into(),
    })
    .await;
    let secret = match ok(Command::CreateCategory {
        actor: Actor::System,
        category: Box::new(CategoryChanges {
            name: Some("secret".into()),
            chat_history: Some(false),
            allowed: ListChange {
                replace: Some(vec!["group:org".into()]),
                ..ListChange::default()
            },
            ..CategoryChanges::default()
        }),
    })
    .await
    {
        Outcome::Category(c) => c.id,
        o => panic!("unexpected {o:?}"),
    };
    // Move the room (drops nobody: everyone in it is in `org`), set its add-in.
    let changes = RoomChanges {
        category: Some(secret),
        addin: Some(Some("wiki".into())),
        managers: ListChange {
            add: vec!["group:team".into()],
            ..ListChange::default()
        },
        ..RoomChanges::default()
    };
    ok(Command::UpdateRoom {
        actor: Actor::System,
        room,
        changes: Box::new(changes),
    })
    .await;
    // Unkept posts in a category without history.
    for i in 0..3 {
        ok(Command::PostMessage {
            actor: 2,
            room,
            body: format!("unkept {i}"),
            client_msg_id: format!("unkept-{i}"),
            alert: true,
        })
        .await;
    }
    ok(Command::ChangeMessages {
        actor: Actor::System,
        filter: MessageFilter {
            room: Some(room),
            text: Some("number 1".into()),
            ..MessageFilter::default()
        },
        change: MessageChange::Replaced("gone".into()),
    })
    .await;
    ok(Command::ChangeMessages {
        actor: Actor::System,
        filter: MessageFilter {
            room: Some(room),
            text: Some("number 2".into()),
            ..MessageFilter::default()
        },
        change: MessageChange::Removed,
    })
    .await;
    let other = match ok(Command::new_room(
        Actor::System,
        1,
        "other",
        Privacy::Secret,
    ))
    .await
    {
        Outcome::Room(r) => r.id,
        o => panic!("unexpected {o:?}"),
    };
    ok(Command::Invite {
        actor: Actor::System,
        room: other,
        user: "bob".into(),
    })
    .await;
    ok(Command::JoinRoom {
        actor: 2,
        room: other,
    })
    .await;
    let say = |room: RoomId, id: &str| Command::PostMessage {
        actor: 2,
        room,
        body: format!("pears {id}"),
        client_msg_id: id.into(),
        alert: false,
    };
    ok(say(other, "other-1")).await;
    ok(say(other, "other-2")).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ok(say(other, "other-3")).await;
    ok(Command::ClearRoom {
        actor: Actor::System,
        room: other,
        until: now,
    })
    .await;
    let kept = store
        .messages(other, Page::Latest { limit: 10 })
        .await
        .unwrap();
    assert_eq!(
        kept.len(),
        1,
        "clear-room keeps only what came after: {kept:?}"
    );
    ok(Command::LeaveRoom {
        actor: 2,
        room: other,
    })
    .await;
    let doomed = match ok(Command::new_room(Actor::System, 1, "doomed", Privacy::Open)).await {
        Outcome::Room(r) => r.id,
        o => panic!("unexpected {o:?}"),
    };
    ok(say(doomed, "doomed-1")).await;
    ok(Command::DeleteRoom {
        actor: Actor::System,
        room: doomed,
    })
    .await;
    ok(Command::DeleteAddIn {
        actor: Actor::System,
        name: "wiki".into(),
    })
    .await;
    let team = match store
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group.name == "team")
        .map(|g| g.group.id)
    {
        Some(id) => id,
        None => panic!("no group team"),
    };
    ok(Command::DeleteGroup {
        actor: Actor::System,
        group: team,
    })
    .await;
    let empty = match ok(Command::new_category(Actor::System, "empty")).await {
        Outcome::Category(c) => c.id,
        o => panic!("unexpected {o:?}"),
    };
    ok(Command::DeleteCategory {
        actor: Actor::System,
        category: empty,
    })
    .await;
}

/// After a failover to a copy of mgc that ends before what mgccomp
/// recorded, the recorder keeps the records of the rolled-back history and
/// records the new history too (under the next epoch), nothing skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_follows_mgc_rolled_back_by_a_failover() {
    use pchat_engine::backup::{self, Recovery, RestoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let mgc_path = dir.path().join("mgc.db");
    let comp_path = dir.path().join("mgccomp.db");
    let store = ChatEngine::open(&mgc_path).unwrap();
    let room = seed(&store).await;
    for i in 0..5 {
        store.submit(post(room, i)).await.unwrap();
    }
    store.close();
    drop(store);
    let early = dir.path().join("early.bak");
    backup::full_backup(&mgc_path, None, &early, "", "").unwrap();
    let record_all = |mgc: Arc<ChatEngine>| {
        let comp_path = comp_path.clone();
        async move {
            let comp = compliance::open(&comp_path).unwrap();
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let recorder =
                tokio::spawn(compliance::run_recorder(mgc.clone(), comp.clone(), stop_rx));
            let target = mgc.identity().await.unwrap().last_lsn;
            for _ in 0..300 {
                if compliance::recorded_through(&comp).await.unwrap() == target {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(compliance::recorded_through(&comp).await.unwrap(), target);
            stop_tx.send(true).unwrap();
            recorder.await.unwrap().unwrap();
            comp.close();
        }
    };
    // The old history: five more posts, recorded.
    let store = ChatEngine::open(&mgc_path).unwrap();
    for i in 5..10 {
        store.submit(post(room, i)).await.unwrap();
    }
    record_all(store.clone()).await;
    store.close();
    drop(store);
    // Failover: mgc is back at the early backup, on a new fork, and goes on.
    let opts = RestoreOptions {
        replace: true,
        recovery: Recovery::Recovery,
    };
    backup::restore(&early, &mgc_path, None, opts).unwrap();
    let store = ChatEngine::open(&mgc_path).unwrap();
    for i in 100..103 {
        store.submit(post(room, i)).await.unwrap();
    }
    record_all(store.clone()).await;
    let c = open_connection(&comp_path).unwrap();
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM compliance WHERE kind = 'CHAT' AND mgc_epoch = 0"),
        10
    );
    assert_eq!(
        count("SELECT count(*) FROM compliance WHERE kind = 'CHAT' AND mgc_epoch = 1"),
        3
    );
}
