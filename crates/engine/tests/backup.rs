//! Full and log backups taken while the database serves, restored in order,
//! give the same tables; every refusal leaves the target as it was.

use pchat_domain::*;
use pchat_engine::backup::{self, BackupError, BackupKind, Recovery, RestoreOptions};
use pchat_engine::replay::dump_tables;
use pchat_engine::{open_connection, ChatEngine, DbState};
use pchat_store::ChatStore;
use std::path::Path;
use std::sync::Arc;

fn env(command: Command) -> Envelope {
    Envelope {
        origin: "backup-test".into(),
        command,
    }
}

async fn seed(store: &Arc<ChatEngine>) -> RoomId {
    store
        .submit(env(Command::BootstrapAdmin {
            name: "admin".into(),
            password_hash: "h".into(),
        }))
        .await
        .unwrap();
    store
        .submit(env(Command::new_category(Actor::System, "general")))
        .await
        .unwrap();
    match store
        .submit(env(Command::new_room(
            Actor::System,
            1,
            "lobby",
            Privacy::Open,
        )))
        .await
        .unwrap()
        .outcome
    {
        Outcome::Room(r) => r.id,
        o => panic!("unexpected {o:?}"),
    }
}

async fn post(store: &Arc<ChatEngine>, room: RoomId, i: usize) {
    store
        .submit(env(Command::PostMessage {
            actor: 1,
            room,
            body: format!("message {i}"),
            client_msg_id: format!("m{i}"),
            alert: false,
        }))
        .await
        .unwrap();
}

/// Two databases of different families, `a/mgc.db` and `b/mgc.db` under
/// `dir`, each with `posts` messages in a room.
async fn two_databases(dir: &Path, posts: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut out = Vec::new();
    for name in ["a", "b"] {
        let db = dir.join(name).join("mgc.db");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let s = ChatEngine::open(&db).unwrap();
        let room = seed(&s).await;
        for i in 0..posts {
            post(&s, room, i).await;
        }
        s.close();
        out.push(db);
    }
    (out[0].clone(), out[1].clone())
}

/// What a restore left beside `db` under a temporary name.
fn restore_leftovers(db: &Path) -> Vec<String> {
    std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("restore"))
        .collect()
}

/// The tables, without what differs by design between a database and its
/// restored copy (identity's fork and the fork history).
fn data(db: &Path) -> String {
    let dump = dump_tables(&open_connection(db).unwrap()).unwrap();
    let mut out = String::new();
    let mut skip = false;
    for line in dump.lines() {
        if line.starts_with("## ") {
            skip = line == "## identity" || line == "## forks";
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn opts(replace: bool, recovery: Recovery) -> RestoreOptions {
    RestoreOptions { replace, recovery }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_log_backups_under_load_restore_to_the_same_tables() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src").join("mgc.db");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let store = ChatEngine::open(&src).unwrap();
    let room = seed(&store).await;
    // Load in the background while backups are taken.
    let load = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..600 {
                post(&store, room, i).await;
                if i % 50 == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        })
    };
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let full = share.join("full.bak");
    let h = {
        let (src, full) = (src.clone(), full.clone());
        tokio::task::spawn_blocking(move || {
            backup::full_backup(&src, None, &full, "nightly", "all of mgc")
        })
        .await
        .unwrap()
        .unwrap()
    };
    assert_eq!(
        (h.kind, h.database.as_str(), h.name.as_str()),
        (BackupKind::Full, "mgc", "nightly")
    );
    let mut logs = Vec::new();
    for n in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let to = share.join(format!("log{n}.trn"));
        let src2 = src.clone();
        let to2 = to.clone();
        match tokio::task::spawn_blocking(move || backup::log_backup(&src2, &to2, "log", "", None))
            .await
            .unwrap()
        {
            Ok(h) => logs.push((to, h)),
            Err(BackupError::NothingToBackUp(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    load.await.unwrap();
    for i in 600..605 {
        post(&store, room, i).await;
    }
    let last = share.join("last.trn");
    logs.push((
        last.clone(),
        backup::log_backup(&src, &last, "log", "", None).unwrap(),
    ));
    // The chain has no gap, and the files verify.
    for w in logs.windows(2) {
        assert_eq!(w[1].1.first_lsn, w[0].1.last_lsn + 1, "chain");
    }
    assert_eq!(logs[0].1.first_lsn, 1);
    let found = backup::scan(&share).unwrap();
    assert_eq!(found.len(), logs.len() + 1);
    assert!(backup::chain_gaps(&found).is_empty());
    // A complete file under a writer's temporary name (the writer was killed
    // between its fsync and its rename) is listed as such, never as a backup.
    let unfinished = share.join("next.trn.tmp-77");
    std::fs::copy(&last, &unfinished).unwrap();
    let found = backup::scan(&share).unwrap();
    let temporary: Vec<_> = found.iter().filter(|f| f.header.is_none()).collect();
    assert_eq!(temporary.len(), 1, "{found:?}");
    assert!(temporary[0].temporary && temporary[0].error.is_some());
    assert_eq!(found.len(), logs.len() + 2);
    std::fs::remove_file(&unfinished).unwrap();
    let source_last = store.identity().await.unwrap().last_lsn;
    assert!(
        h.last_lsn < source_last,
        "the full backup was taken mid-load"
    );
    assert!(logs.len() >= 2, "log backups were taken mid-load");
    store.close();
    drop(store);

    // Restore: full with NORECOVERY, every log, the last WITH RECOVERY.
    let dst = dir.path().join("dst").join("mgc.db");
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let r = backup::restore(&full, &dst, None, opts(false, Recovery::NoRecovery)).unwrap();
    assert_eq!(r.state, DbState::Restoring);
    // A restoring database takes no commands.
    let restoring = ChatEngine::open(&dst).unwrap();
    let refused = restoring
        .submit(env(Command::new_category(Actor::System, "x")))
        .await;
    assert!(
        matches!(refused, Err(pchat_store::StoreError::Unavailable(_))),
        "{refused:?}"
    );
    restoring.close();
    drop(restoring);
    let n = logs.len();
    for (i, (file, _)) in logs.iter().enumerate() {
        let rec = if i + 1 == n {
            Recovery::Recovery
        } else {
            Recovery::Standby
        };
        let r = backup::restore(file, &dst, None, opts(false, rec)).unwrap();
        assert!(r.last_lsn <= source_last);
    }
    assert_eq!(data(&src), data(&dst));
    let conn = open_connection(&dst).unwrap();
    let id = pchat_engine::read_identity(&conn).unwrap().unwrap();
    assert_eq!(id.last_lsn, source_last);
    assert_eq!(pchat_engine::read_state(&conn).unwrap(), DbState::Online);
    assert_ne!(id.fork_id, h.fork_id, "recovery starts a new fork");
    drop(conn);
    // Online again: it takes commands, and its history is the source's.
    let back = ChatEngine::open(&dst).unwrap();
    let page = back
        .messages(room, pchat_store::Page::Latest { limit: 1000 })
        .await
        .unwrap();
    assert_eq!(page.len(), 605);
    post(&back, room, 605).await;
    back.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_databases(dir.path(), 20).await;
    let mk = |name: &str| {
        let p = dir.path().join(name).join("mgc.db");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    let full_a = dir.path().join("a.bak");
    backup::full_backup(&a, None, &full_a, "a", "").unwrap();
    // Another database without --replace.
    let before = data(&b);
    let e = backup::restore(&full_a, &b, None, opts(false, Recovery::Recovery)).unwrap_err();
    assert!(
        e.to_string()
            .contains("a database other than the existing database"),
        "{e}"
    );
    assert_eq!(data(&b), before);
    // Corrupt byte, truncated file, not a backup.
    let bytes = std::fs::read(&full_a).unwrap();
    for (name, bad) in [
        ("corrupt", {
            let mut c = bytes.clone();
            let i = c.len() / 2;
            c[i] ^= 0x40;
            c
        }),
        ("truncated", bytes[..bytes.len() - 100].to_vec()),
        ("empty", vec![]),
        ("other", b"not a backup at all".to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bad).unwrap();
        assert!(backup::verify(&p).is_err(), "{name} verifies");
        let e = backup::restore(&p, &b, None, opts(true, Recovery::Recovery)).unwrap_err();
        assert!(!e.to_string().is_empty());
        assert_eq!(data(&b), before, "{name} changed the target");
    }
    // A log onto an ONLINE database.
    let log_a = dir.path().join("a1.trn");
    backup::log_backup(&a, &log_a, "", "", None).unwrap();
    let e = backup::restore(&log_a, &b, None, opts(false, Recovery::NoRecovery)).unwrap_err();
    assert!(e.to_string().contains("ONLINE"), "{e}");
    // Restore a's full backup onto c (NORECOVERY), then: a gap, another fork.
    let c = mk("c");
    backup::restore(&full_a, &c, None, opts(false, Recovery::NoRecovery)).unwrap();
    let s = ChatEngine::open(&a).unwrap();
    for i in 20..30 {
        post(&s, 1, i).await;
    }
    s.close();
    drop(s);
    let log_a2 = dir.path().join("a2.trn");
    backup::log_backup(&a, &log_a2, "", "", None).unwrap();
    let s = ChatEngine::open(&a).unwrap();
    for i in 30..40 {
        post(&s, 1, i).await;
    }
    s.close();
    drop(s);
    let log_a3 = dir.path().join("a3.trn");
    backup::log_backup(&a, &log_a3, "", "", None).unwrap();
    let before_c = data(&c);
    // a1 is already in the full backup (consistent overlap): fine. a3 skips a2: a gap.
    backup::restore(&log_a, &c, None, opts(false, Recovery::NoRecovery)).unwrap();
    let e = backup::restore(&log_a3, &c, None, opts(false, Recovery::NoRecovery)).unwrap_err();
    assert!(e.to_string().contains("are missing"), "{e}");
    assert_eq!(data(&c), before_c);
    // Another fork: d restored from a's full backup WITH RECOVERY, then written to.
    let d = mk("d");
    backup::restore(&full_a, &d, None, opts(false, Recovery::Recovery)).unwrap();
    let s = ChatEngine::open(&d).unwrap();
    post(&s, 1, 99).await;
    s.close();
    drop(s);
    let log_d = dir.path().join("d1.trn");
    backup::log_backup(&d, &log_d, "", "", None).unwrap();
    // In order, the chain applies; once c holds LSNs past the point where
    // fork d began, d's log is refused.
    backup::restore(&log_a2, &c, None, opts(false, Recovery::NoRecovery)).unwrap();
    let before_c = data(&c);
    let e = backup::restore(&log_d, &c, None, opts(false, Recovery::NoRecovery)).unwrap_err();
    assert!(e.to_string().contains("rebuilt from a backup"), "{e}");
    assert_eq!(data(&c), before_c);
    let r = backup::restore(&log_a3, &c, None, opts(false, Recovery::Recovery)).unwrap();
    assert_eq!(r.state, DbState::Online);
    assert_eq!(data(&a), data(&c));
    // A database that holds nothing past the fork point follows the newer
    // fork (a log-shipping secondary after a mirror failover).
    let e = mk("e");
    backup::restore(&full_a, &e, None, opts(false, Recovery::NoRecovery)).unwrap();
    let r = backup::restore(&log_d, &e, None, opts(false, Recovery::Recovery)).unwrap();
    let forks = backup::fork_history(&e).unwrap();
    assert!(forks
        .iter()
        .any(|f| f.fork_id == backup::read_header(&log_d).unwrap().fork_id));
    assert_ne!(
        r.fork_id,
        backup::read_header(&log_d).unwrap().fork_id,
        "recovery starts yet another fork"
    );
    assert_ne!(data(&e), data(&c), "e has what only fork d wrote");
    assert_eq!(data(&e), data(&d));
}

#[test]
fn a_full_backup_of_mgc_carries_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mgc.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = ChatEngine::open(&db).unwrap();
        seed(&s).await;
        s.close();
    });
    let files = dir.path().join("files");
    let content = b"the quarterly report".to_vec();
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let blob = files.join("sha256").join(&sha[..2]).join(&sha[2..]);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &content).unwrap();
    let bak = dir.path().join("full.bak");
    let h = backup::full_backup(&db, Some(&files), &bak, "", "").unwrap();
    assert!(h.sections.iter().any(|s| s.name == format!("file:{sha}")));
    let other = tempfile::tempdir().unwrap();
    let files2 = other.path().join("files");
    backup::restore(
        &bak,
        &other.path().join("mgc.db"),
        Some(&files2),
        opts(false, Recovery::Recovery),
    )
    .unwrap();
    let restored = files2.join("sha256").join(&sha[..2]).join(&sha[2..]);
    assert_eq!(std::fs::read(restored).unwrap(), content);
}

/// A log backup of mgc carries the files its records post; restoring it
/// puts them in place (how log shipping moves uploads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_backup_carries_the_files_its_records_post() {
    use pchat_store::blobs::{Blobs, LocalBlobs};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mgc.db");
    let files = dir.path().join("files");
    let s = ChatEngine::open(&db).unwrap();
    let room = seed(&s).await;
    s.close();
    drop(s);
    let full = dir.path().join("full.bak");
    backup::full_backup(&db, Some(&files), &full, "", "").unwrap();
    let content = b"minutes of the meeting".to_vec();
    let sha = LocalBlobs::new(files.clone())
        .put(content.clone())
        .await
        .unwrap();
    let s = ChatEngine::open(&db).unwrap();
    s.submit(env(Command::PostFile {
        actor: 1,
        room,
        file: FileRef {
            sha256: sha.clone(),
            size: content.len() as i64,
            name: "minutes.txt".into(),
            content_type: "text/plain".into(),
        },
        body: None,
        client_msg_id: "file-1".into(),
    }))
    .await
    .unwrap();
    post(&s, room, 1).await;
    s.close();
    drop(s);
    let log = dir.path().join("1.trn");
    let h = backup::log_backup(&db, &log, "", "", Some(&files)).unwrap();
    assert!(
        h.sections.iter().any(|s| s.name == format!("file:{sha}")),
        "{h:?}"
    );
    let other = tempfile::tempdir().unwrap();
    let (db2, files2) = (other.path().join("mgc.db"), other.path().join("files"));
    backup::restore(
        &full,
        &db2,
        Some(&files2),
        opts(false, Recovery::NoRecovery),
    )
    .unwrap();
    backup::restore(&log, &db2, Some(&files2), opts(false, Recovery::Recovery)).unwrap();
    assert_eq!(
        LocalBlobs::new(files2).get(sha).await.unwrap(),
        Some(content)
    );
    assert_eq!(data(&db2), data(&db));
}

/// A log backup can stop at an LSN (a synchronous principal ships only what
/// its mirror hardened), and the next one continues from there; a database
/// restored WITH RECOVERY starts its log chain after the backup's last LSN,
/// so a secondary restored from the same backup follows it with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_chains_stop_where_told_and_start_after_a_recovered_restore() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |name: &str| {
        let p = dir.path().join(name).join("mgc.db");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    let a = mk("a");
    let s = ChatEngine::open(&a).unwrap();
    let room = seed(&s).await;
    for i in 0..20 {
        post(&s, room, i).await;
    }
    let last = s.identity().await.unwrap().last_lsn;
    let first = dir.path().join("1.trn");
    let h = backup::log_backup_through(&a, &first, "", "", None, Some(last - 5)).unwrap();
    assert_eq!((h.first_lsn, h.last_lsn), (1, last - 5));
    let second = dir.path().join("2.trn");
    let h = backup::log_backup(&a, &second, "", "", None).unwrap();
    assert_eq!((h.first_lsn, h.last_lsn), (last - 4, last));

    s.close();

    // A database never log-backed-up: a full backup of it, restored WITH
    // RECOVERY on b (a new primary) and WITH NORECOVERY on c (its
    // secondary): b's first log backup starts right after the backup (not
    // at LSN 1), and c applies it.
    let d = mk("d");
    let s = ChatEngine::open(&d).unwrap();
    let room = seed(&s).await;
    for i in 0..20 {
        post(&s, room, i).await;
    }
    let last = s.identity().await.unwrap().last_lsn;
    s.close();
    let full = dir.path().join("d.bak");
    backup::full_backup(&d, None, &full, "d", "").unwrap();
    let (b, c) = (mk("b"), mk("c"));
    backup::restore(&full, &b, None, opts(false, Recovery::Recovery)).unwrap();
    backup::restore(&full, &c, None, opts(false, Recovery::NoRecovery)).unwrap();
    let s = ChatEngine::open(&b).unwrap();
    post(&s, room, 100).await;
    s.close();
    let log_b = dir.path().join("b.trn");
    let h = backup::log_backup(&b, &log_b, "", "", None).unwrap();
    assert_eq!((h.first_lsn, h.last_lsn), (last + 1, last + 1));
    backup::restore(&log_b, &c, None, opts(false, Recovery::NoRecovery)).unwrap();
    let conn = open_connection(&c).unwrap();
    let id = pchat_engine::read_identity(&conn).unwrap().unwrap();
    assert_eq!(id.last_lsn, last + 1);
}

/// The copy a full backup was taken from goes back to RESTORING in place
/// (what the failback does instead of restoring the backup over it) and
/// then follows the new fork of a copy restored WITH RECOVERY; refused when
/// it moved on since the backup, and harmless twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backed_up_copy_holds_for_logs_in_place_and_follows_the_new_fork() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |name: &str| {
        let p = dir.path().join(name).join("mgc.db");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    let source = mk("source");
    let s = ChatEngine::open(&source).unwrap();
    let room = seed(&s).await;
    for i in 0..20 {
        post(&s, room, i).await;
    }
    let id = s.identity().await.unwrap();
    s.close();
    let full = dir.path().join("full.bak");
    let h = backup::full_backup(&source, None, &full, "f", "").unwrap();
    assert_eq!(h.last_lsn, id.last_lsn);

    // Refused for another family or LSN; nothing changes.
    let e = backup::hold_for_logs(&source, "another-family", h.last_lsn).unwrap_err();
    assert!(e.to_string().contains("restore the backup over it"), "{e}");
    let e = backup::hold_for_logs(&source, &h.family_id, h.last_lsn - 1).unwrap_err();
    assert!(e.to_string().contains("restore the backup over it"), "{e}");
    let state = |p: &Path| pchat_engine::read_state(&open_connection(p).unwrap()).unwrap();
    assert_eq!(state(&source), DbState::Online);

    backup::hold_for_logs(&source, &h.family_id, h.last_lsn).unwrap();
    backup::hold_for_logs(&source, &h.family_id, h.last_lsn).unwrap();
    assert_eq!(state(&source), DbState::Restoring);
    assert!(ChatEngine::open(&source).is_ok());

    // A new primary from the backup, WITH RECOVERY (a new fork); its log
    // applies to the source, which follows the fork.
    let primary = mk("primary");
    backup::restore(&full, &primary, None, opts(false, Recovery::Recovery)).unwrap();
    let p = ChatEngine::open(&primary).unwrap();
    post(&p, room, 100).await;
    let new_fork = p.identity().await.unwrap().fork_id;
    p.close();
    let log = dir.path().join("primary.trn");
    backup::log_backup(&primary, &log, "", "", None).unwrap();
    backup::restore(&log, &source, None, opts(false, Recovery::NoRecovery)).unwrap();
    let got = pchat_engine::read_identity(&open_connection(&source).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((got.last_lsn, got.fork_id), (h.last_lsn + 1, new_fork));
    assert_eq!(data(&source), data(&primary));
}

/// A copy streamed while the database serves (with a reader holding part of
/// the log in the WAL) and restored elsewhere: the same tables, the same
/// last LSN, the uploaded files, a new fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_restores_the_file_its_wal_and_its_uploads() {
    use pchat_engine::copy;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src").join("mgc.db");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let store = ChatEngine::open(&src).unwrap();
    let room = seed(&store).await;
    for i in 0..50 {
        post(&store, room, i).await;
    }
    // A reader on an older snapshot: the WAL cannot be emptied into the
    // file, so the last posts are only in the WAL when the copy is taken.
    let reader = rusqlite::Connection::open(&src).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    for i in 50..100 {
        post(&store, room, i).await;
    }
    let files = dir.path().join("src").join("files");
    let content = b"minutes of the meeting".to_vec();
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let blob = files.join("sha256").join(&sha[..2]).join(&sha[2..]);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &content).unwrap();

    let (mut stream, mut length) = (Vec::new(), 0);
    let header = copy::send_copy(&src, Some(&files), "test", &mut |n| length = n, &mut |b| {
        stream.extend_from_slice(&b);
        Ok(())
    })
    .unwrap();
    drop(reader);
    assert_eq!(
        length,
        stream.len() as u64,
        "the length told before the stream"
    );
    let names: Vec<&str> = header.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "wal", &format!("file:{sha}")], "{names:?}");
    let id = store.identity().await.unwrap();
    assert_eq!(header.last_lsn, id.last_lsn);

    let dst = dir.path().join("dst").join("mgc.db");
    let dst_files = dir.path().join("dst").join("files");
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let report = restore_stream(
        &stream,
        &dst,
        Some(&dst_files),
        opts(false, Recovery::Recovery),
    )
    .unwrap();
    assert_eq!(
        (report.last_lsn, report.state),
        (id.last_lsn, DbState::Online)
    );
    assert_ne!(report.fork_id, id.fork_id, "recovery starts a new fork");
    assert_eq!(data(&dst), data(&src));
    let conn = open_connection(&dst).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 100);
    let restored = dst_files.join("sha256").join(&sha[..2]).join(&sha[2..]);
    assert_eq!(std::fs::read(restored).unwrap(), content);
    assert_eq!(restore_leftovers(&dst), Vec::<String>::new());
    store.close();
}

/// Splits a copy stream as a receiving server does, and restores it.
fn restore_stream(
    stream: &[u8],
    db: &Path,
    files: Option<&Path>,
    o: RestoreOptions,
) -> Result<backup::RestoreReport, BackupError> {
    let len = u32::from_le_bytes(stream[..4].try_into().unwrap()) as usize;
    let head = &stream[4..4 + len];
    let header = pchat_engine::copy::parse_header(head)?;
    let mut rest = &stream[4 + len..];
    pchat_engine::copy::restore_copy(head, &header, &mut rest, db, files, o, "test")
}

/// A copy cut short, with a flipped byte, or of another database without
/// replace changes nothing on the target and leaves nothing beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_damaged_copy_leaves_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_databases(dir.path(), 200).await;
    let mut stream = Vec::new();
    let writer = rusqlite::Connection::open(&a).unwrap();
    writer.busy_timeout(std::time::Duration::ZERO).unwrap();
    let (mut calls, mut writes_refused) = (0, 0);
    pchat_engine::copy::send_copy(&a, None, "a", &mut |_| {}, &mut |bytes| {
        // While the copy is read, nobody else can write.
        calls += 1;
        if writer.execute_batch("BEGIN IMMEDIATE").is_err() {
            writes_refused += 1;
        } else {
            writer.execute_batch("ROLLBACK").unwrap();
        }
        stream.extend_from_slice(&bytes);
        Ok(())
    })
    .unwrap();
    assert!(
        calls > 2 && writes_refused == calls,
        "{writes_refused} of {calls}"
    );
    // And once it is sent, writers go on.
    writer.execute_batch("BEGIN IMMEDIATE; ROLLBACK").unwrap();
    let before = data(&b);
    let e = restore_stream(&stream, &b, None, opts(false, Recovery::Recovery)).unwrap_err();
    assert!(
        e.to_string()
            .contains("a database other than the existing database"),
        "{e}"
    );
    let mut flipped = stream.clone();
    let i = flipped.len() / 2;
    flipped[i] ^= 0x40;
    let cut = stream[..stream.len() * 2 / 3].to_vec();
    for (what, bad) in [("flipped", flipped), ("cut", cut)] {
        let e = restore_stream(&bad, &b, None, opts(true, Recovery::Recovery)).unwrap_err();
        assert!(
            matches!(e, BackupError::Damaged(_) | BackupError::Io(_)),
            "{what}: {e}"
        );
        assert_eq!(data(&b), before, "{what}");
        assert_eq!(restore_leftovers(&b), Vec::<String>::new(), "{what}");
    }
    // The whole copy, with replace, does replace it.
    restore_stream(&stream, &b, None, opts(true, Recovery::NoRecovery)).unwrap();
    assert_eq!(data(&b), data(&a));
}

/// The runbooks' verification counts a room's history from indexes: every
/// message kept or replaced, none removed; the same count as reading the rows.
#[tokio::test]
async fn a_summary_counts_the_history_without_removed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mgc.db");
    let store = Arc::new(ChatEngine::open(&db).unwrap());
    let room = seed(&store).await;
    for i in 0..12 {
        post(&store, room, i).await;
    }
    for (text, change) in [
        ("message 3", MessageChange::Removed),
        ("message 4", MessageChange::Replaced("gone".into())),
        ("message 5", MessageChange::Removed),
    ] {
        store
            .submit(env(Command::ChangeMessages {
                actor: Actor::System,
                filter: MessageFilter {
                    room: Some(room),
                    text: Some(text.into()),
                    ..MessageFilter::default()
                },
                change,
            }))
            .await
            .unwrap();
    }
    store.close();
    let summary = backup::summary(&db).unwrap();
    let lobby = summary.rooms.iter().find(|r| r.id == room).unwrap();
    assert_eq!((lobby.messages, lobby.last_seq), (10, 12), "{summary:?}");
    let conn = open_connection(&db).unwrap();
    let read: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE room_id = ?1 AND status IN (0, 1)",
            [room],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(lobby.messages, read);
    let plan = |sql: &str| -> String {
        conn.query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3))
            .unwrap()
    };
    let all = plan("SELECT COUNT(*) FROM messages WHERE room_id = 1");
    assert!(all.contains("COVERING INDEX"), "{all}");
    let out = plan("SELECT COUNT(*) FROM messages WHERE room_id = 1 AND status >= 2");
    assert!(out.contains("messages_out_of_history"), "{out}");
}
