//! Every mistake `check` names, each made on purpose in the example topology.

use super::*;

const EXAMPLE: &str = include_str!("../../../../docs/examples/topology.toml");

fn example() -> Topology {
    Topology::parse(EXAMPLE).unwrap()
}

fn codes(t: &Topology) -> Vec<&'static str> {
    t.check().into_iter().map(|m| m.code).collect()
}

#[test]
fn the_example_topology_is_valid() {
    let t = example();
    assert_eq!(t.check(), vec![]);
    assert_eq!(t.max_servers, 8);
    assert_eq!(t.max_active, 4);
    assert_eq!(t.database_server(Role::Backup).unwrap().name, "db3");
}

#[test]
fn syntax_and_unknown_fields_name_the_line() {
    let e =
        Topology::parse("pool = \"p\"\ndata_centers = [\"a\", \"b\"]\ncolour = 1\n").unwrap_err();
    assert_eq!(e.code, "syntax");
    assert!(
        e.message.contains("colour") && e.message.contains("line 3"),
        "{}",
        e.message
    );
    let e = Topology::parse("pool = ").unwrap_err();
    assert_eq!(e.code, "syntax");
    let bad_role = EXAMPLE.replace("role = \"backup-mirror\"", "role = \"spare\"");
    assert_eq!(Topology::parse(&bad_role).unwrap_err().code, "syntax");
}

#[test]
fn unknown_names() {
    let mut t = example();
    t.chat_servers[0].data_center = "dc9".into();
    let m = t.check();
    assert!(
        m.iter().any(|m| m.code == "unknown_data_center"
            && m.message.contains("chat1")
            && m.message.contains("dc9")),
        "{m:?}"
    );
    let mut t = example();
    t.databases.push("mgcarchive".into());
    assert_eq!(codes(&t), vec!["unknown_database"]);
    let mut t = example();
    t.data_centers = vec!["dc1".into(), "dc1".into()];
    assert!(codes(&t).contains(&"data_centers"));
}

#[test]
fn a_mirror_in_another_data_center() {
    let mut t = example();
    t.database_servers[1].data_center = "dc2".into();
    let m = t.check();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].code, "mirror_in_other_data_center");
    assert!(
        m[0].message.contains("db2") && m[0].message.contains("db1"),
        "{}",
        m[0].message
    );
}

#[test]
fn two_roles_on_one_server_and_a_role_taken_twice() {
    let mut t = example();
    let mut again = t.database_servers[2].clone();
    again.role = Role::BackupMirror;
    t.database_servers.push(again);
    let c = codes(&t);
    assert!(c.contains(&"two_roles"), "{c:?}");
    assert!(c.contains(&"role_taken"), "{c:?}");
    assert!(!c.contains(&"duplicate_name"), "{c:?}");
    let mut t = example();
    t.database_servers[3].role = Role::Backup;
    assert!(codes(&t).contains(&"role_taken"));
    let mut t = example();
    t.database_servers.retain(|d| d.role != Role::Backup);
    assert!(codes(&t).contains(&"role_missing"));
    let mut t = example();
    t.database_servers[2].data_center = "dc1".into();
    t.database_servers[3].data_center = "dc1".into();
    assert_eq!(codes(&t), vec!["backup_in_primary_data_center"]);
}

#[test]
fn an_address_reused_or_malformed() {
    let mut t = example();
    t.chat_servers[1].admin = t.database_servers[0].address.clone();
    let m = t.check();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].code, "address_reused");
    assert!(
        m[0].message.contains("chat2 (admin)") && m[0].message.contains("db1"),
        "{}",
        m[0].message
    );
    let mut t = example();
    t.chat_servers[0].client = "10.0.1.11".into();
    assert_eq!(codes(&t), vec!["bad_address"]);
    let mut t = example();
    t.chat_servers[2].name = "chat1".into();
    assert_eq!(codes(&t), vec!["duplicate_name"]);
}

#[test]
fn more_active_servers_than_allowed() {
    let mut t = example();
    t.active_across_data_centers = true;
    for c in &mut t.chat_servers {
        c.active = true;
    }
    t.max_active = 3;
    let m = t.check();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].code, "too_many_active");
    assert!(
        m[0].message.contains("4 chat servers are active"),
        "{}",
        m[0].message
    );
    let mut t = example();
    for i in 0..6 {
        let mut c = t.chat_servers[3].clone();
        c.name = format!("extra{i}");
        c.client = format!("10.0.9.{i}:8080");
        c.admin = format!("10.0.9.{i}:8081");
        t.chat_servers.push(c);
    }
    assert_eq!(codes(&t), vec!["too_many_servers"]);
}

#[test]
fn active_servers_outside_the_primary_data_center() {
    let mut t = example();
    t.chat_servers[2].active = true;
    let m = t.check();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].code, "active_in_other_data_center");
    t.active_across_data_centers = true;
    assert_eq!(t.check(), vec![]);
}

#[test]
fn replication_settings() {
    let mut t = example();
    t.log_shipping = None;
    assert_eq!(codes(&t), vec!["log_shipping_missing"]);
    let mut t = example();
    if let Some(l) = t.log_shipping.as_mut() {
        l.continuous = false;
        l.backup_every = Some("fortnightly".into());
        l.copy_every = Some("1m".into());
    }
    let m = t.check();
    assert_eq!(
        m.iter().filter(|m| m.code == "bad_schedule").count(),
        2,
        "{m:?}"
    );
    let mut t = example();
    t.mirroring = Some(Mirroring {
        mode: "eventually".into(),
    });
    assert_eq!(codes(&t), vec!["bad_mirroring_mode"]);
    let mut t = example();
    t.mirroring = None;
    assert_eq!(codes(&t), vec!["mirroring_missing"]);
}

#[test]
fn every_mistake_at_once() {
    let t = Topology {
        pool: String::new(),
        max_servers: 8,
        max_active: 4,
        active_across_data_centers: false,
        data_centers: vec!["only".into()],
        databases: vec![],
        chat_servers: vec![],
        database_servers: vec![],
        log_shipping: None,
        mirroring: None,
    };
    let c = codes(&t);
    for code in [
        "pool_name",
        "data_centers",
        "unknown_database",
        "no_chat_servers",
        "role_missing",
        "log_shipping_missing",
    ] {
        assert!(c.contains(&code), "{code} missing from {c:?}");
    }
}

#[test]
fn two_secondaries_on_one_host_need_copy_folders_of_their_own() {
    let mut t = example();
    let host = |t: &Topology, r| t.database_server(r).unwrap().address.clone();
    // On hosts of their own (the example), one copy folder path is fine.
    assert_ne!(host(&t, Role::Backup), host(&t, Role::BackupMirror));
    assert_eq!(
        t.copy_folder(Role::Backup),
        t.copy_folder(Role::BackupMirror)
    );
    assert_eq!(codes(&t), Vec::<&str>::new());
    // On one host, as in the lab, they would copy into the same folder.
    for (i, d) in t.database_servers.iter_mut().enumerate() {
        d.address = format!("127.0.0.1:{}", 5433 + i);
    }
    let m = t.check();
    assert_eq!(codes(&t), vec!["copy_folder_shared"], "{m:?}");
    assert!(m[0].message.contains("db3 and db4"), "{m:?}");
    // A folder of its own for one of them.
    let bm = t
        .database_servers
        .iter_mut()
        .find(|d| d.role == Role::BackupMirror)
        .unwrap();
    bm.copy_to = Some("/var/lib/pchat/logship-copy-db4".into());
    assert_eq!(codes(&t), Vec::<&str>::new());
    assert_eq!(
        t.copy_folder(Role::BackupMirror).as_deref(),
        Some("/var/lib/pchat/logship-copy-db4")
    );
}
