//! Compliance records: what `mgccomp` keeps of every chat event.

use crate::command::{AccessKind, MessageChange};
use crate::event::{Event, LogRecord};
use crate::model::*;
use serde::{Deserialize, Serialize};

/// One compliance record. Lync's kinds JOIN, PART and CHAT come from room
/// membership and messages; every other event is kept too, as ADMIN or
/// SIGNIN/SIGNOUT, so the compliance database holds a record of each event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceRecord {
    /// LSN of the `mgc` log record this came from.
    pub mgc_lsn: Lsn,
    /// Position among the records made from that log record.
    pub part: i64,
    pub kind: String,
    pub ts: Timestamp,
    pub server: String,
    pub user: Option<UserId>,
    pub room: Option<RoomId>,
    pub seq: Option<Seq>,
    pub content: Option<String>,
}

/// The records for one `mgc` log record, in a fixed order.
pub fn records_for(rec: &LogRecord) -> Vec<ComplianceRecord> {
    let base = |kind: &str, user: Option<UserId>, room: Option<RoomId>| ComplianceRecord {
        mgc_lsn: rec.lsn,
        part: 0,
        kind: kind.to_string(),
        ts: rec.ts,
        server: rec.origin.clone(),
        user,
        room,
        seq: None,
        content: None,
    };
    let admin = |user: Option<UserId>, room: Option<RoomId>, what: String| ComplianceRecord {
        content: Some(what),
        ..base("ADMIN", user, room)
    };
    let mut out = match &rec.event {
        Event::MessagePosted { message, .. } => {
            let mut out = vec![ComplianceRecord {
                seq: Some(message.seq),
                content: Some(message.body.clone()),
                ..base("CHAT", Some(message.sender), Some(message.room))
            }];
            if let Some(f) = &message.file {
                out.push(ComplianceRecord {
                    seq: Some(message.seq),
                    content: Some(format!("{} ({} bytes, sha256 {})", f.name, f.size, f.sha256)),
                    ..base("FILEUPLOAD", Some(message.sender), Some(message.room))
                });
            }
            out
        }
        Event::MessagesImported { room, messages } => vec![admin(
            None,
            Some(*room),
            format!("{} messages imported", messages.len()),
        )],
        Event::FeedSaved { feed } => vec![admin(
            Some(feed.user),
            None,
            format!("feed {} saved", feed.name),
        )],
        Event::FeedDeleted { user, feed } => {
            vec![admin(Some(*user), None, format!("feed {feed} deleted"))]
        }
        Event::ConfigurationSet { config } => vec![admin(
            None,
            None,
            format!(
                "configuration: DefaultChatHistory {:?}, MaxFileSizeKB {}, ParticipantUpdateLimit {}",
                config.default_chat_history, config.max_file_size_kb, config.participant_update_limit
            ),
        )],
        Event::RoleGranted {
            room,
            role,
            principals,
        }
        | Event::RoleRevoked {
            room,
            role,
            principals,
        } => {
            let granted = matches!(rec.event, Event::RoleGranted { .. });
            principals
                .iter()
                .map(|p| match (p, role) {
                    // A user's membership is Lync's JOIN and PART.
                    (Principal::User(u), Role::Member) => {
                        base(if granted { "JOIN" } else { "PART" }, Some(*u), Some(*room))
                    }
                    (p, role) => admin(
                        user_of(*p),
                        Some(*room),
                        format!(
                            "{} {} {}",
                            role.as_str(),
                            principal_text(*p),
                            if granted { "granted" } else { "revoked" }
                        ),
                    ),
                })
                .collect()
        }
        Event::SessionCreated { user, .. } => vec![base("SIGNIN", Some(*user), None)],
        Event::SessionEnded { .. } => vec![base("SIGNOUT", None, None)],
        Event::UserCreated { user, .. } => {
            vec![admin(
                Some(user.id),
                None,
                format!("user {} created", user.name),
            )]
        }
        Event::GroupCreated { group } => {
            vec![admin(None, None, format!("group {} created", group.name))]
        }
        Event::GroupUpdated { group } => {
            vec![admin(None, None, format!("group {} updated", group.name))]
        }
        Event::GroupMembersChanged {
            group,
            added,
            removed,
        } => vec![admin(
            None,
            None,
            format!(
                "group {group} members: added [{}], removed [{}]",
                principals_text(added),
                principals_text(removed)
            ),
        )],
        Event::GroupDeleted { group } => vec![admin(None, None, format!("group {group} deleted"))],
        Event::CategoryCreated { category } => {
            vec![admin(
                None,
                None,
                format!("category {} created", category.name),
            )]
        }
        Event::CategoryUpdated { category } => {
            vec![admin(
                None,
                None,
                format!("category {} updated", category.name),
            )]
        }
        Event::CategoryListChanged {
            category,
            list,
            added,
            removed,
        } => vec![admin(
            None,
            None,
            format!(
                "category {category} {}: added [{}], removed [{}]",
                list.as_str(),
                principals_text(added),
                principals_text(removed)
            ),
        )],
        Event::CategoryDeleted { category } => {
            vec![admin(None, None, format!("category {category} deleted"))]
        }
        Event::RoomCreated { room } => {
            vec![admin(
                None,
                Some(room.id),
                format!("room {} created", room.name),
            )]
        }
        Event::RoomUpdated { room } => {
            vec![admin(
                None,
                Some(room.id),
                format!("room {} updated", room.name),
            )]
        }
        Event::RoomDeleted { room } => vec![admin(None, Some(*room), "room deleted".into())],
        Event::Invited { room, user, by } => vec![admin(
            Some(*user),
            Some(*room),
            match by {
                Some(by) => format!("invited by user {by}"),
                None => "invited".into(),
            },
        )],
        Event::InvitationClosed { room, user } => {
            vec![admin(Some(*user), Some(*room), "invitation closed".into())]
        }
        Event::AddInCreated { addin } => vec![admin(
            None,
            None,
            format!("add-in {} created: {}", addin.name, addin.url),
        )],
        Event::AddInDeleted { addin } => {
            vec![admin(None, None, format!("add-in {addin} deleted"))]
        }
        Event::MessagesChanged { room, seqs, change } => seqs
            .iter()
            .map(|seq| ComplianceRecord {
                seq: Some(*seq),
                ..admin(
                    None,
                    Some(*room),
                    match change {
                        MessageChange::Removed => "message removed".to_string(),
                        MessageChange::Replaced(t) => format!("message replaced with: {t}"),
                    },
                )
            })
            .collect(),
        Event::Accessed { user, room, access } => vec![match access {
            AccessKind::History => base("BACKCHAT", Some(*user), Some(*room)),
            AccessKind::FileDownload { file } => ComplianceRecord {
                content: Some(file.clone()),
                ..base("FILEDOWNLOAD", Some(*user), Some(*room))
            },
        }],
        Event::RoomCleared { room, until } => vec![admin(
            None,
            Some(*room),
            format!("room cleared up to {until} ms"),
        )],
    };
    for (i, r) in out.iter_mut().enumerate() {
        r.part = i as i64;
    }
    out
}

fn user_of(p: Principal) -> Option<UserId> {
    match p {
        Principal::User(u) => Some(u),
        _ => None,
    }
}

fn principal_text(p: Principal) -> String {
    match p {
        Principal::Everyone => EVERYONE.to_string(),
        Principal::User(u) => format!("user {u}"),
        Principal::Group(g) => format!("group {g}"),
    }
}

fn principals_text(ps: &[Principal]) -> String {
    ps.iter()
        .map(|p| principal_text(*p))
        .collect::<Vec<_>>()
        .join(", ")
}

pub mod export;
