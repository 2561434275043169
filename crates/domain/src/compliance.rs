//! Compliance records: what `mgccomp` keeps of every chat event.

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
    let mut out = match &rec.event {
        Event::MessagePosted { message } => vec![ComplianceRecord {
            seq: Some(message.seq),
            content: Some(message.body.clone()),
            ..base("CHAT", Some(message.sender), Some(message.room))
        }],
        Event::RoleGranted {
            room,
            role: Role::Member,
            users,
        } => users
            .iter()
            .map(|u| base("JOIN", Some(*u), Some(*room)))
            .collect(),
        Event::RoleRevoked {
            room,
            role: Role::Member,
            users,
        } => users
            .iter()
            .map(|u| base("PART", Some(*u), Some(*room)))
            .collect(),
        Event::RoleGranted { room, role, users } | Event::RoleRevoked { room, role, users } => {
            let verb = if matches!(rec.event, Event::RoleGranted { .. }) {
                "granted"
            } else {
                "revoked"
            };
            users
                .iter()
                .map(|u| ComplianceRecord {
                    content: Some(format!("{} {verb}", role.as_str())),
                    ..base("ADMIN", Some(*u), Some(*room))
                })
                .collect()
        }
        Event::SessionCreated { user, .. } => vec![base("SIGNIN", Some(*user), None)],
        Event::SessionEnded { .. } => vec![base("SIGNOUT", None, None)],
        Event::UserCreated { user, .. } => {
            vec![ComplianceRecord {
                content: Some(format!("user {} created", user.name)),
                ..base("ADMIN", Some(user.id), None)
            }]
        }
        Event::CategoryCreated { category } => {
            vec![ComplianceRecord {
                content: Some(format!("category {} created", category.name)),
                ..base("ADMIN", None, None)
            }]
        }
        Event::RoomCreated { room } => {
            vec![ComplianceRecord {
                content: Some(format!("room {} created", room.name)),
                ..base("ADMIN", None, Some(room.id))
            }]
        }
        Event::RoomUpdated { room } => {
            vec![ComplianceRecord {
                content: Some(format!("room {} updated", room.name)),
                ..base("ADMIN", None, Some(room.id))
            }]
        }
    };
    for (i, r) in out.iter_mut().enumerate() {
        r.part = i as i64;
    }
    out
}
