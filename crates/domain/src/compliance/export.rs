//! Compliance records as files: conversations in the layout of Lync's XML
//! compliance adapter (schema in `docs/compliance.xsd`), or JSON Lines.
//! Pure formatting: the caller reads the records and writes the files.

use super::ComplianceRecord;
use crate::model::{RoomId, Timestamp, UserId};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// One record with its `mgccomp` id.
#[derive(Debug, Clone)]
pub struct Exported {
    pub id: i64,
    pub record: ComplianceRecord,
}

#[derive(Debug, Clone, Default)]
pub struct UserInfo {
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Default)]
pub struct RoomDetails {
    pub name: String,
    pub description: String,
    pub category: String,
    pub privacy: String,
}

/// Names for ids; an id not found (a deleted room) is written as "room 7".
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub users: HashMap<UserId, UserInfo>,
    pub rooms: HashMap<RoomId, RoomDetails>,
}

impl Names {
    fn user(&self, id: UserId) -> UserInfo {
        self.users.get(&id).cloned().unwrap_or_else(|| UserInfo {
            name: format!("user {id}"),
            display_name: format!("user {id}"),
        })
    }
    fn room(&self, id: RoomId) -> RoomDetails {
        self.rooms.get(&id).cloned().unwrap_or_else(|| RoomDetails {
            name: format!("room {id}"),
            ..RoomDetails::default()
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Channel carries the room's description, category and privacy.
    pub room_details: bool,
    /// Sender carries the user's display name.
    pub user_details: bool,
}

/// .NET ticks (100 ns since 0001-01-01) of the Unix epoch.
const TICKS_AT_EPOCH: i64 = 621_355_968_000_000_000;

/// ISO 8601 UTC with milliseconds, e.g. `2026-11-26T08:00:00.123Z`.
pub fn iso8601(ms: Timestamp) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Characters XML 1.0 allows; any other (most control characters) becomes U+FFFD.
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}' => c,
        _ => '\u{FFFD}',
    }
}

/// Escapes text for an XML attribute value.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute values normalise whitespace; keep line breaks as such.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

fn time(out: &mut String, element: &str, indent: &str, ms: Timestamp) {
    let _ = writeln!(
        out,
        "{indent}<{element} since1970=\"{ms}\" string=\"{}\" long=\"{}\"/>",
        iso8601(ms),
        TICKS_AT_EPOCH + ms * 10_000
    );
}

fn message(out: &mut String, element: &str, indent: &str, e: &Exported, names: &Names, o: Options) {
    let r = &e.record;
    let _ = writeln!(
        out,
        "{indent}<{element} type=\"{}\" content=\"{}\" id=\"{}\">",
        xml_escape(&r.kind),
        xml_escape(r.content.as_deref().unwrap_or("")),
        e.id
    );
    let inner = format!("{indent}  ");
    match r.user {
        Some(u) => {
            let info = names.user(u);
            let _ = write!(
                out,
                "{inner}<Sender UserName=\"{}\" id=\"{u}\" email=\"\" internal=\"true\" uri=\"sip:{}\"",
                xml_escape(&info.name),
                xml_escape(&info.name)
            );
            if o.user_details {
                let _ = write!(out, " DisplayName=\"{}\"", xml_escape(&info.display_name));
            }
            out.push_str("/>\n");
        }
        None => {
            let _ = writeln!(
                out,
                "{inner}<Sender UserName=\"system\" id=\"0\" email=\"\" internal=\"true\" uri=\"\"/>"
            );
        }
    }
    time(out, "DateTimeUTC", &inner, r.ts);
    let _ = writeln!(out, "{indent}</{element}>");
}

/// The records of rooms, grouped into one conversation per room (in room
/// order, records in id order). Records without a room are not
/// conversations; [`jsonl`] keeps them.
pub fn conversations(records: &[Exported]) -> BTreeMap<RoomId, Vec<&Exported>> {
    let mut rooms: BTreeMap<RoomId, Vec<&Exported>> = BTreeMap::new();
    for e in records {
        if let Some(room) = e.record.room {
            rooms.entry(room).or_default().push(e);
        }
    }
    for list in rooms.values_mut() {
        list.sort_by_key(|e| e.id);
    }
    rooms
}

/// One XML document of conversations.
pub fn xml<'a>(
    rooms: impl IntoIterator<Item = (RoomId, &'a [&'a Exported])>,
    names: &Names,
    o: Options,
) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Conversations>\n");
    for (room, list) in rooms {
        let (Some(first), Some(last)) = (list.first(), list.last()) else {
            continue;
        };
        let d = names.room(room);
        out.push_str("  <Conversation>\n");
        let _ = write!(
            out,
            "    <Channel uri=\"ma-chan://pchat/{room}\" name=\"{}\"",
            xml_escape(&d.name)
        );
        if o.room_details {
            let _ = write!(
                out,
                " description=\"{}\" category=\"{}\" privacy=\"{}\"",
                xml_escape(&d.description),
                xml_escape(&d.category),
                xml_escape(&d.privacy)
            );
        }
        out.push_str("/>\n");
        message(&mut out, "FirstMessage", "    ", first, names, o);
        time(&mut out, "StartTimeUTC", "    ", first.record.ts);
        time(&mut out, "EndTimeUTC", "    ", last.record.ts);
        out.push_str("    <Messages>\n");
        for e in list {
            message(&mut out, "Message", "      ", e, names, o);
        }
        out.push_str("    </Messages>\n  </Conversation>\n");
    }
    out.push_str("</Conversations>\n");
    out
}

/// One JSON object per line, every record (with or without a room).
pub fn jsonl<'a>(
    records: impl IntoIterator<Item = &'a Exported>,
    names: &Names,
    o: Options,
) -> String {
    let mut out = String::new();
    for e in records {
        let r = &e.record;
        let mut v = serde_json::json!({
            "id": e.id,
            "kind": r.kind,
            "ts": r.ts,
            "time": iso8601(r.ts),
            "server": r.server,
            "user": r.user,
            "user_name": r.user.map(|u| names.user(u).name),
            "room": r.room,
            "room_name": r.room.map(|x| names.room(x).name),
            "seq": r.seq,
            "content": r.content,
            "mgc_lsn": r.mgc_lsn,
        });
        if o.user_details {
            v["user_display_name"] = serde_json::json!(r.user.map(|u| names.user(u).display_name));
        }
        if o.room_details {
            if let Some(room) = r.room {
                let d = names.room(room);
                v["room_description"] = serde_json::json!(d.description);
                v["room_category"] = serde_json::json!(d.category);
                v["room_privacy"] = serde_json::json!(d.privacy);
            }
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_795_680_000_123), "2026-11-26T08:00:00.123Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn escaping_keeps_xml_well_formed() {
        assert_eq!(
            xml_escape("a<b>&\"c\"'\n\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;&#10;\u{FFFD}"
        );
    }

    #[test]
    fn one_conversation_per_room_in_id_order() {
        let rec = |id, room, kind: &str| Exported {
            id,
            record: ComplianceRecord {
                mgc_lsn: id,
                part: 0,
                kind: kind.into(),
                ts: id * 1000,
                server: "s".into(),
                user: Some(1),
                room,
                seq: None,
                content: Some(format!("m{id}")),
            },
        };
        let records = vec![
            rec(3, Some(2), "CHAT"),
            rec(1, Some(1), "JOIN"),
            rec(2, Some(1), "CHAT"),
            rec(4, None, "SIGNIN"),
        ];
        let rooms = conversations(&records);
        assert_eq!(rooms.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        let doc = xml(
            rooms.iter().map(|(r, l)| (*r, l.as_slice())),
            &Names::default(),
            Options::default(),
        );
        assert_eq!(doc.matches("<Conversation>").count(), 2);
        assert!(doc.contains("<FirstMessage type=\"JOIN\" content=\"m1\" id=\"1\">"));
        assert!(doc.contains("long=\"621355968010000000\""), "{doc}");
        let lines = jsonl(&records, &Names::default(), Options::default());
        assert_eq!(lines.lines().count(), 4);
    }
}
