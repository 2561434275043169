//! `pchat admin`: the management commands (Lync's Management Shell cmdlets).
//!
//! Each command runs against either a data directory (`--data-dir`, acting as
//! the operator at the machine) or a running server (`--url` with an
//! administrator's credentials), with the same output (`--json` for scripts).

use anyhow::{bail, Context};
use pchat_api::{
    AddInView, AddInsResponse, CategoriesResponse, CategoryView, EligibleResponse, ErrorBody,
    GroupView, GroupsResponse, RemoveMessagesResponse, RoomView, RoomsResponse, SessionRequest,
    SessionResponse, UserView,
};
use pchat_domain::{name_key, Invitations, Privacy, RoomType, Timestamp};
use pchat_engine::{compliance as compliance_engine, ChatEngine, MGCCOMP_FILE, MGC_FILE};
use pchat_server::AppState;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

mod compliance;
mod data;

#[derive(clap::Args, Debug)]
pub struct Target {
    /// Work on the databases in this directory directly.
    #[arg(long, env = "PCHAT_DATA_DIR", conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// Work through the API of the server at this URL.
    #[arg(long, env = "PCHAT_URL")]
    url: Option<String>,
    /// With --url: sign in as this administrator, name:password.
    #[arg(long = "as", env = "PCHAT_ADMIN", requires = "url")]
    as_admin: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCmd {
    /// Create a user. The password is read from PCHAT_PASSWORD, or prompted
    /// for on a terminal, or read as one line from standard input.
    CreateUser {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// The synthetic check (Lync's Test-CsPersistentChatMessage): the receiver
    /// subscribes to a room, the sender posts, and the message must be
    /// acknowledged and delivered exactly once. Prints the timings; exits
    /// non-zero on any failure.
    TestMessage {
        /// Base URL of the server.
        #[arg(long, env = "PCHAT_URL")]
        url: String,
        /// The posting test account, name:password.
        #[arg(long)]
        sender: String,
        /// The receiving test account, name:password.
        #[arg(long)]
        receiver: String,
        /// Room id or name (the receiver reads it, the sender posts in it).
        #[arg(long)]
        room: String,
        /// Seconds to wait for each step.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The pool configuration (Get-/Set-CsPersistentChatConfiguration):
    /// without options it prints it; with options it changes them.
    Configuration {
        #[command(flatten)]
        target: Target,
        /// Messages on join when a client asks for no number (1–500).
        #[arg(long)]
        default_chat_history: Option<u32>,
        /// Return DefaultChatHistory to each server's --default-history.
        #[arg(long, conflicts_with = "default_chat_history")]
        server_default_chat_history: bool,
        /// Largest file upload, in KB.
        #[arg(long)]
        max_file_size_kb: Option<u32>,
        #[arg(long)]
        participant_update_limit: Option<u32>,
    },
    /// List the users.
    ListUsers {
        #[command(flatten)]
        target: Target,
    },
    /// Create a category (short for `category new`).
    CreateCategory {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// The active server list (Set-CsPersistentChatActiveServer): only
    /// active servers take clients and write. Kept on the topology's
    /// database servers.
    #[command(subcommand)]
    ActiveServers(crate::pool::ActiveServersCmd),
    /// The pool state (Get-/Set-CsPersistentChatState): normal uses the
    /// primary databases, failed-over the backup ones. Without a state it
    /// prints the pool configuration.
    PoolState {
        #[arg(value_enum)]
        state: Option<crate::pool::StateArg>,
        #[command(flatten)]
        target: crate::pool::PoolTarget,
    },
    /// Groups: named sets of users and groups (New/Set/Get/Remove).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Categories: switches and allowed, denied and creators lists.
    #[command(subcommand)]
    Category(CategoryCmd),
    /// Rooms (New/Set/Get/Remove-CsPersistentChatRoom).
    #[command(subcommand)]
    Room(RoomCmd),
    /// Add-ins: named web pages shown with rooms.
    #[command(subcommand)]
    Addin(AddinCmd),
    /// Everyone a room's role lists reach, through groups, with the
    /// category's verdict (Get-CsPersistentChatEligiblePrincipal).
    Eligible {
        #[command(flatten)]
        target: Target,
        /// Room id or name.
        #[arg(long)]
        room: String,
    },
    /// The compliance database: export conversations (Lync's compliance adapter).
    #[command(subcommand)]
    Compliance(compliance::ComplianceCmd),
    /// Write the pool's users, groups, add-ins, categories, rooms and history
    /// to one portable file (Export-CsPersistentChatData). Works on a data
    /// directory: the file carries password hashes.
    ExportData {
        #[arg(long, env = "PCHAT_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        to: PathBuf,
        /// What to include; each level includes the ones before it.
        #[arg(long, value_enum, default_value = "all")]
        level: data::Level,
        /// Only messages posted from this time.
        #[arg(long, value_parser = parse_time)]
        since: Option<Timestamp>,
        #[arg(long)]
        json: bool,
    },
    /// Load an export-data file into an empty pool (Import-CsPersistentChatData).
    /// The file is checked completely first; a damaged one changes nothing.
    ImportData {
        #[arg(long, env = "PCHAT_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Invite a user to a room.
    Invite {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        room: String,
        #[arg(long)]
        user: String,
    },
    /// Remove or replace messages (Remove-CsPersistentChatMessage). By
    /// default each body becomes "This message was replaced by the
    /// administrator"; `--replace TEXT` sets another text; `--remove` takes
    /// the messages out of history. Compliance keeps the originals.
    RemoveMessage {
        #[command(flatten)]
        target: Target,
        /// Room id or name.
        #[arg(long)]
        room: Option<String>,
        /// Sender's user name.
        #[arg(long)]
        user: Option<String>,
        /// Only messages whose body contains this text (ignoring case).
        #[arg(long)]
        text: Option<String>,
        /// From this time (2026-11-26, 2026-11-26T10:00:00Z, or ms since the epoch).
        #[arg(long, value_parser = parse_time)]
        since: Option<Timestamp>,
        /// Up to this time, inclusive.
        #[arg(long, value_parser = parse_time)]
        until: Option<Timestamp>,
        #[arg(long, conflicts_with = "replace")]
        remove: bool,
        #[arg(long)]
        replace: Option<String>,
    },
    /// Remove every message of a room posted up to a time (Clear-CsPersistentChatRoom).
    ClearRoom {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        room: String,
        /// 2026-11-26 (midnight UTC), 2026-11-26T10:00:00Z, or ms since the epoch.
        #[arg(long, value_parser = parse_time)]
        until: Timestamp,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum GroupCmd {
    New {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Users and groups (group:NAME), comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    Set {
        #[command(flatten)]
        target: Target,
        /// Group id or name.
        group: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        members: MembersChange,
    },
    /// One group, or all of them.
    Get {
        #[command(flatten)]
        target: Target,
        group: Option<String>,
    },
    /// Removes the group and every list entry naming it.
    Remove {
        #[command(flatten)]
        target: Target,
        group: String,
    },
}

#[derive(clap::Args, Debug, Default)]
pub struct MembersChange {
    /// Replace the members with these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    members: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    add_members: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    remove_members: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum CategoryCmd {
    New {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: CategorySettings,
        /// Allowed members: users, group:NAME, or * (everyone). Default *.
        #[arg(long, value_delimiter = ',')]
        allowed: Option<Vec<String>>,
        /// Denied members (denied wins over allowed). Default none.
        #[arg(long, value_delimiter = ',')]
        denied: Option<Vec<String>>,
        /// Who may create rooms in it. Default *.
        #[arg(long, value_delimiter = ',')]
        creators: Option<Vec<String>>,
    },
    Set {
        #[command(flatten)]
        target: Target,
        /// Category id or name.
        category: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: CategorySettings,
        #[command(flatten)]
        lists: CategoryListsChange,
    },
    Get {
        #[command(flatten)]
        target: Target,
        category: Option<String>,
    },
    /// Refused while the category has rooms.
    Remove {
        #[command(flatten)]
        target: Target,
        category: String,
    },
}

#[derive(clap::Args, Debug, Default)]
pub struct CategorySettings {
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    file_upload: Option<bool>,
    #[arg(long)]
    invitations: Option<bool>,
    #[arg(long)]
    chat_history: Option<bool>,
}

#[derive(clap::Args, Debug, Default)]
pub struct CategoryListsChange {
    #[arg(long, value_delimiter = ',')]
    allowed: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    add_allowed: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    remove_allowed: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    denied: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    add_denied: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    remove_denied: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    creators: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    add_creators: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    remove_creators: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum RoomCmd {
    New {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        /// Category id or name.
        #[arg(long)]
        category: String,
        #[command(flatten)]
        settings: RoomSettings,
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<String>>,
        #[arg(long, value_delimiter = ',')]
        managers: Option<Vec<String>>,
        #[arg(long, value_delimiter = ',')]
        presenters: Option<Vec<String>>,
    },
    Set {
        #[command(flatten)]
        target: Target,
        /// Room id or name.
        room: String,
        #[arg(long)]
        name: Option<String>,
        /// Move to this category (entries it does not allow are dropped).
        #[arg(long)]
        category: Option<String>,
        #[command(flatten)]
        settings: RoomSettings,
        /// Remove the room's add-in.
        #[arg(long, conflicts_with = "addin")]
        no_addin: bool,
        #[command(flatten)]
        lists: RoomListsChange,
    },
    /// Rooms, filtered like Get-CsPersistentChatRoom.
    Get {
        #[command(flatten)]
        target: Target,
        /// One room (id or name); otherwise every room that matches the filters.
        room: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long, value_parser = parse_privacy)]
        privacy: Option<Privacy>,
        #[arg(long = "type", value_parser = parse_room_type)]
        room_type: Option<RoomType>,
        /// Rooms whose managers list names this user or group.
        #[arg(long)]
        manager: Option<String>,
        /// Rooms whose members list names this user or group.
        #[arg(long)]
        member: Option<String>,
        #[arg(long)]
        disabled: Option<bool>,
        /// Rooms with at least this many messages posted.
        #[arg(long)]
        min_messages: Option<i64>,
    },
    /// Deletes the room and its history (compliance keeps its records).
    Remove {
        #[command(flatten)]
        target: Target,
        room: String,
    },
}

#[derive(clap::Args, Debug, Default)]
pub struct RoomSettings {
    #[arg(long)]
    description: Option<String>,
    #[arg(long, value_parser = parse_privacy)]
    privacy: Option<Privacy>,
    #[arg(long = "type", value_parser = parse_room_type)]
    room_type: Option<RoomType>,
    /// inherit or false.
    #[arg(long, value_parser = parse_invitations)]
    invitations: Option<Invitations>,
    #[arg(long)]
    disabled: Option<bool>,
    /// An add-in's name.
    #[arg(long)]
    addin: Option<String>,
}

#[derive(clap::Args, Debug, Default)]
pub struct RoomListsChange {
    #[arg(long, value_delimiter = ',')]
    members: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    add_members: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    remove_members: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    managers: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    add_managers: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    remove_managers: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    presenters: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    add_presenters: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    remove_presenters: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum AddinCmd {
    New {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        /// The page: an http:// or https:// URL (`--url` names the server).
        #[arg(long)]
        addin_url: String,
    },
    Get {
        #[command(flatten)]
        target: Target,
    },
    Remove {
        #[command(flatten)]
        target: Target,
        name: String,
    },
}

fn parse_privacy(s: &str) -> Result<Privacy, String> {
    Privacy::parse(&s.to_lowercase()).ok_or_else(|| format!("'{s}': use open, closed or secret"))
}

fn parse_room_type(s: &str) -> Result<RoomType, String> {
    RoomType::parse(&s.to_lowercase()).ok_or_else(|| format!("'{s}': use normal or auditorium"))
}

fn parse_invitations(s: &str) -> Result<Invitations, String> {
    Invitations::parse(&s.to_lowercase()).ok_or_else(|| format!("'{s}': use inherit or false"))
}

/// A time as milliseconds since the epoch: `2026-11-26` (midnight UTC),
/// `2026-11-26T10:00:00Z` (RFC 3339), or a plain number of milliseconds.
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(full.trim_end_matches('Z')).map_err(|e| {
        format!("'{s}' is not a time like 2026-11-26 or 2026-11-26T10:00:00Z ({e})")
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("'{s}' is before 1970"))?;
    Ok(d.as_millis() as Timestamp)
}

fn change(replace: Option<Vec<String>>, add: Vec<String>, remove: Vec<String>) -> Value {
    json!({ "replace": replace, "add": add, "remove": remove })
}

fn credentials(flag: &str, value: &str) -> anyhow::Result<(String, String)> {
    let (n, p) = value
        .split_once(':')
        .with_context(|| format!("--{flag} must be name:password"))?;
    Ok((n.to_string(), p.to_string()))
}

pub async fn run(cmd: AdminCmd) -> anyhow::Result<()> {
    match cmd {
        AdminCmd::TestMessage {
            url,
            sender,
            receiver,
            room,
            timeout_secs,
            json,
        } => {
            let report = pchat_bench::test_message(pchat_bench::ProbeConfig {
                url,
                sender: credentials("sender", &sender)?,
                receiver: credentials("receiver", &receiver)?,
                room,
                timeout: std::time::Duration::from_secs(timeout_secs.max(1)),
            })
            .await
            .context("test-message failed")?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.human());
            }
            Ok(())
        }
        AdminCmd::CreateUser {
            target,
            name,
            display_name,
            admin,
        } => {
            let password = read_password(&name)?;
            pchat_server::auth::check_password_policy(&password)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let body = json!({ "name": name, "password": password, "display_name": display_name, "admin": admin });
            let user: UserView = with(&target, |c| async move {
                c.call(Method::POST, "/api/v1/users", Some(body)).await
            })
            .await?;
            print(&target, &user, || {
                format!(
                    "created user {} (id {}{})",
                    user.name,
                    user.id,
                    if user.admin { ", administrator" } else { "" }
                )
            })
        }
        AdminCmd::CreateCategory {
            target,
            name,
            description,
        } => {
            run_category(CategoryCmd::New {
                target,
                name,
                settings: CategorySettings {
                    description,
                    ..CategorySettings::default()
                },
                allowed: None,
                denied: None,
                creators: None,
            })
            .await
        }
        AdminCmd::Configuration {
            target,
            default_chat_history,
            server_default_chat_history,
            max_file_size_kb,
            participant_update_limit,
        } => {
            let change = default_chat_history.is_some()
                || server_default_chat_history
                || max_file_size_kb.is_some()
                || participant_update_limit.is_some();
            let config: pchat_api::ConfigurationView = with(&target, |c| async move {
                if !change {
                    return c.call(Method::GET, "/api/v1/configuration", None).await;
                }
                let mut body = json!({
                    "max_file_size_kb": max_file_size_kb,
                    "participant_update_limit": participant_update_limit,
                });
                if server_default_chat_history {
                    body["default_chat_history"] = Value::Null;
                } else if let Some(n) = default_chat_history {
                    body["default_chat_history"] = json!(n);
                }
                c.call(Method::PATCH, "/api/v1/configuration", Some(body))
                    .await
            })
            .await?;
            print(&target, &config, || {
                format!(
                    "DefaultChatHistory {} MaxFileSizeKB {} ParticipantUpdateLimit {}",
                    config
                        .default_chat_history
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "(each server's default)".into()),
                    config.max_file_size_kb,
                    config.participant_update_limit
                )
            })
        }
        AdminCmd::ListUsers { target } => {
            let all: pchat_api::UsersResponse = with(&target, |c| async move {
                c.call(Method::GET, "/api/v1/users", None).await
            })
            .await?;
            print(&target, &all, || {
                all.users
                    .iter()
                    .map(|u| {
                        format!(
                            "{} ({}){}",
                            u.name,
                            u.display_name,
                            if u.admin { " administrator" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        AdminCmd::ActiveServers(cmd) => crate::pool::run_active_servers(cmd).await,
        AdminCmd::PoolState { state, target } => crate::pool::run_pool_state(state, target).await,
        AdminCmd::Group(cmd) => run_group(cmd).await,
        AdminCmd::Category(cmd) => run_category(cmd).await,
        AdminCmd::Room(cmd) => run_room(cmd).await,
        AdminCmd::Addin(cmd) => run_addin(cmd).await,
        AdminCmd::Compliance(cmd) => compliance::run(cmd).await,
        AdminCmd::ExportData {
            data_dir,
            to,
            level,
            since,
            json,
        } => {
            let sum = data::export(&data_dir, &to, level, since).await?;
            data_summary(json, "exported", &sum)
        }
        AdminCmd::ImportData {
            data_dir,
            from,
            json,
        } => {
            let sum = data::import(&data_dir, &from).await?;
            data_summary(json, "imported", &sum)
        }
        AdminCmd::Eligible { target, room } => {
            let out: EligibleResponse = with(&target, |c| async move {
                let id = c.room_id(&room).await?;
                c.call(Method::GET, &format!("/api/v1/rooms/{id}/eligible"), None)
                    .await
            })
            .await?;
            print(&target, &out, || {
                out.users
                    .iter()
                    .map(|u| {
                        format!(
                            "{:<24} {:<28} {}",
                            u.name,
                            u.roles.join(","),
                            if u.allowed {
                                "allowed"
                            } else {
                                "walled off by the category"
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        AdminCmd::Invite { target, room, user } => {
            let name = user.clone();
            let r: RoomView = with(&target, |c| async move {
                let id = c.room_id(&room).await?;
                c.call(
                    Method::POST,
                    &format!("/api/v1/rooms/{id}/invitations"),
                    Some(json!({ "user": user })),
                )
                .await
            })
            .await?;
            print(&target, &r, || format!("invited {name} to {}", r.name))
        }
        AdminCmd::RemoveMessage {
            target,
            room,
            user,
            text,
            since,
            until,
            remove,
            replace,
        } => {
            let out: RemoveMessagesResponse = with(&target, |c| async move {
                let room = match room {
                    Some(r) => Some(c.room_id(&r).await?),
                    None => None,
                };
                let body = json!({
                    "room": room, "user": user, "text": text, "since": since,
                    "until": until, "remove": remove, "replacement": replace,
                });
                c.call(Method::POST, "/api/v1/messages/remove", Some(body))
                    .await
            })
            .await?;
            print(&target, &out, || {
                format!(
                    "{} message(s) {}",
                    out.count,
                    if remove { "removed" } else { "replaced" }
                )
            })
        }
        AdminCmd::ClearRoom {
            target,
            room,
            until,
        } => {
            let name = room.clone();
            let _: Value = with(&target, |c| async move {
                let id = c.room_id(&room).await?;
                c.call(
                    Method::POST,
                    &format!("/api/v1/rooms/{id}/clear"),
                    Some(json!({ "until": until })),
                )
                .await
            })
            .await?;
            print(&target, &json!({ "cleared": name, "until": until }), || {
                format!("cleared {name} up to {until} ms")
            })
        }
    }
}

async fn run_group(cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::New {
            target,
            name,
            description,
            members,
        } => {
            let body = json!({ "name": name, "description": description, "members": members });
            let g: GroupView = with(&target, |c| async move {
                c.call(Method::POST, "/api/v1/groups", Some(body)).await
            })
            .await?;
            print(&target, &g, || {
                format!("created group {} (id {})", g.name, g.id)
            })
        }
        GroupCmd::Set {
            target,
            group,
            name,
            description,
            members,
        } => {
            let body = json!({
                "name": name, "description": description,
                "members": change(members.members, members.add_members, members.remove_members),
            });
            let g: GroupView = with(&target, |c| async move {
                let id = c.group_id(&group).await?;
                c.call(Method::PATCH, &format!("/api/v1/groups/{id}"), Some(body))
                    .await
            })
            .await?;
            print(&target, &g, || group_text(&g))
        }
        GroupCmd::Get { target, group } => {
            let groups: Vec<GroupView> = with(&target, |c| async move {
                let all: GroupsResponse = c.call(Method::GET, "/api/v1/groups", None).await?;
                match group {
                    None => Ok(all.groups),
                    Some(g) => {
                        let id = c.group_id(&g).await?;
                        Ok(all.groups.into_iter().filter(|x| x.id == id).collect())
                    }
                }
            })
            .await?;
            print(&target, &groups, || {
                groups.iter().map(group_text).collect::<Vec<_>>().join("\n")
            })
        }
        GroupCmd::Remove { target, group } => {
            let name = group.clone();
            let _: Value = with(&target, |c| async move {
                let id = c.group_id(&group).await?;
                c.call(Method::DELETE, &format!("/api/v1/groups/{id}"), None)
                    .await
            })
            .await?;
            print(&target, &json!({ "removed": name }), || {
                format!("removed group {name}")
            })
        }
    }
}

fn data_summary(json: bool, verb: &str, s: &data::Summary) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!(
            "{verb} {} users, {} groups, {} add-ins, {} categories, {} rooms, {} messages ({})",
            s.users, s.groups, s.addins, s.categories, s.rooms, s.messages, s.file
        );
    }
    Ok(())
}

fn group_text(g: &GroupView) -> String {
    format!("{} (id {}): {}", g.name, g.id, g.members.join(", "))
}

fn category_text(c: &CategoryView) -> String {
    let list = |l: &Option<Vec<String>>| l.as_ref().map(|v| v.join(",")).unwrap_or_default();
    format!(
        "{} (id {}) file_upload={} invitations={} chat_history={} allowed=[{}] denied=[{}] creators=[{}]",
        c.name,
        c.id,
        c.file_upload,
        c.invitations,
        c.chat_history,
        list(&c.allowed),
        list(&c.denied),
        list(&c.creators)
    )
}

async fn run_category(cmd: CategoryCmd) -> anyhow::Result<()> {
    match cmd {
        CategoryCmd::New {
            target,
            name,
            settings,
            allowed,
            denied,
            creators,
        } => {
            let body = json!({
                "name": name, "description": settings.description,
                "file_upload": settings.file_upload, "invitations": settings.invitations,
                "chat_history": settings.chat_history,
                "allowed": allowed, "denied": denied, "creators": creators,
            });
            let c: CategoryView = with(&target, |c| async move {
                c.call(Method::POST, "/api/v1/categories", Some(body)).await
            })
            .await?;
            print(&target, &c, || {
                format!("created category {} (id {})", c.name, c.id)
            })
        }
        CategoryCmd::Set {
            target,
            category,
            name,
            settings,
            lists: l,
        } => {
            let body = json!({
                "name": name, "description": settings.description,
                "file_upload": settings.file_upload, "invitations": settings.invitations,
                "chat_history": settings.chat_history,
                "allowed": change(l.allowed, l.add_allowed, l.remove_allowed),
                "denied": change(l.denied, l.add_denied, l.remove_denied),
                "creators": change(l.creators, l.add_creators, l.remove_creators),
            });
            let c: CategoryView = with(&target, |c| async move {
                let id = c.category_id(&category).await?;
                c.call(
                    Method::PATCH,
                    &format!("/api/v1/categories/{id}"),
                    Some(body),
                )
                .await
            })
            .await?;
            print(&target, &c, || category_text(&c))
        }
        CategoryCmd::Get { target, category } => {
            let cats: Vec<CategoryView> = with(&target, |c| async move {
                let all: CategoriesResponse =
                    c.call(Method::GET, "/api/v1/categories", None).await?;
                match category {
                    None => Ok(all.categories),
                    Some(x) => {
                        let id = c.category_id(&x).await?;
                        Ok(all.categories.into_iter().filter(|c| c.id == id).collect())
                    }
                }
            })
            .await?;
            print(&target, &cats, || {
                cats.iter()
                    .map(category_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        CategoryCmd::Remove { target, category } => {
            let name = category.clone();
            let _: Value = with(&target, |c| async move {
                let id = c.category_id(&category).await?;
                c.call(Method::DELETE, &format!("/api/v1/categories/{id}"), None)
                    .await
            })
            .await?;
            print(&target, &json!({ "removed": name }), || {
                format!("removed category {name}")
            })
        }
    }
}

fn room_text(r: &RoomView) -> String {
    let list = |l: &Option<Vec<String>>| l.as_ref().map(|v| v.join(",")).unwrap_or_default();
    format!(
        "{} (id {}) category={} {} {}{} invitations={} messages={} members=[{}] managers=[{}] presenters=[{}]{}",
        r.name,
        r.id,
        r.category,
        r.privacy.as_str(),
        r.room_type.as_str(),
        if r.disabled { " disabled" } else { "" },
        r.invitations.as_str(),
        r.last_seq,
        list(&r.members),
        list(&r.managers),
        list(&r.presenters),
        r.addin
            .as_ref()
            .map(|a| format!(" addin={} ({})", a.name, a.url))
            .unwrap_or_default()
    )
}

async fn run_room(cmd: RoomCmd) -> anyhow::Result<()> {
    match cmd {
        RoomCmd::New {
            target,
            name,
            category,
            settings: s,
            members,
            managers,
            presenters,
        } => {
            let r: RoomView = with(&target, |c| async move {
                let cat = c.category_id(&category).await?;
                let body = json!({
                    "name": name, "category": cat, "description": s.description,
                    "privacy": s.privacy, "type": s.room_type, "invitations": s.invitations,
                    "disabled": s.disabled, "addin": s.addin,
                    "members": members, "managers": managers, "presenters": presenters,
                });
                c.call(Method::POST, "/api/v1/rooms", Some(body)).await
            })
            .await?;
            print(&target, &r, || {
                format!("created room {} (id {})", r.name, r.id)
            })
        }
        RoomCmd::Set {
            target,
            room,
            name,
            category,
            settings: s,
            no_addin,
            lists: l,
        } => {
            let r: RoomView = with(&target, |c| async move {
                let id = c.room_id(&room).await?;
                let mut body = json!({
                    "name": name, "description": s.description, "privacy": s.privacy,
                    "type": s.room_type, "invitations": s.invitations, "disabled": s.disabled,
                    "members": change(l.members, l.add_members, l.remove_members),
                    "managers": change(l.managers, l.add_managers, l.remove_managers),
                    "presenters": change(l.presenters, l.add_presenters, l.remove_presenters),
                });
                if let Some(cat) = category {
                    body["category"] = json!(c.category_id(&cat).await?);
                }
                if no_addin {
                    body["addin"] = Value::Null;
                } else if let Some(a) = s.addin {
                    body["addin"] = json!(a);
                }
                c.call(Method::PATCH, &format!("/api/v1/rooms/{id}"), Some(body))
                    .await
            })
            .await?;
            print(&target, &r, || room_text(&r))
        }
        RoomCmd::Get {
            target,
            room,
            category,
            privacy,
            room_type,
            manager,
            member,
            disabled,
            min_messages,
        } => {
            let rooms: Vec<RoomView> = with(&target, |c| async move {
                let ids: Vec<i64> = match room {
                    Some(r) => vec![c.room_id(&r).await?],
                    None => {
                        let all: RoomsResponse = c.call(Method::GET, "/api/v1/rooms", None).await?;
                        all.rooms.into_iter().map(|r| r.id).collect()
                    }
                };
                let cat = match category {
                    Some(x) => Some(c.category_id(&x).await?),
                    None => None,
                };
                let named = |list: &Option<Vec<String>>, who: &Option<String>| match who {
                    None => true,
                    Some(w) => list
                        .as_ref()
                        .is_some_and(|l| l.iter().any(|n| name_key(n) == name_key(w))),
                };
                let mut out = Vec::new();
                for id in ids {
                    let r: RoomView = c
                        .call(Method::GET, &format!("/api/v1/rooms/{id}"), None)
                        .await?;
                    if cat.is_some_and(|x| x != r.category)
                        || privacy.is_some_and(|p| p != r.privacy)
                        || room_type.is_some_and(|t| t != r.room_type)
                        || disabled.is_some_and(|d| d != r.disabled)
                        || min_messages.is_some_and(|m| r.last_seq < m)
                        || !named(&r.managers, &manager)
                        || !named(&r.members, &member)
                    {
                        continue;
                    }
                    out.push(r);
                }
                Ok(out)
            })
            .await?;
            print(&target, &rooms, || {
                rooms.iter().map(room_text).collect::<Vec<_>>().join("\n")
            })
        }
        RoomCmd::Remove { target, room } => {
            let name = room.clone();
            let _: Value = with(&target, |c| async move {
                let id = c.room_id(&room).await?;
                c.call(Method::DELETE, &format!("/api/v1/rooms/{id}"), None)
                    .await
            })
            .await?;
            print(&target, &json!({ "removed": name }), || {
                format!("removed room {name}")
            })
        }
    }
}

async fn run_addin(cmd: AddinCmd) -> anyhow::Result<()> {
    match cmd {
        AddinCmd::New {
            target,
            name,
            addin_url: url,
        } => {
            let a: AddInView = with(&target, |c| async move {
                c.call(
                    Method::POST,
                    "/api/v1/addins",
                    Some(json!({ "name": name, "url": url })),
                )
                .await
            })
            .await?;
            print(&target, &a, || {
                format!("created add-in {} ({})", a.name, a.url)
            })
        }
        AddinCmd::Get { target } => {
            let all: AddInsResponse = with(&target, |c| async move {
                c.call(Method::GET, "/api/v1/addins", None).await
            })
            .await?;
            print(&target, &all, || {
                all.addins
                    .iter()
                    .map(|a| format!("{} {}", a.name, a.url))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        AddinCmd::Remove { target, name } => {
            let n = name.clone();
            let _: Value = with(&target, |c| async move {
                c.call(
                    Method::DELETE,
                    &format!("/api/v1/addins/{}", encode_path(&name)),
                    None,
                )
                .await
            })
            .await?;
            print(&target, &json!({ "removed": n }), || {
                format!("removed add-in {n}")
            })
        }
    }
}

/// Percent-encodes a path segment.
fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print<T: Serialize>(
    target: &Target,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if target.json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}

fn read_password(name: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("PCHAT_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("password for {name}: "))
            .context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Where the commands go: the API of a running server, or the same API
/// handled in-process over a data directory (as the operator at the machine).
pub(crate) enum Conn {
    Local {
        state: Arc<AppState>,
        engine: Arc<ChatEngine>,
        comp: Arc<compliance_engine::ComplianceEngine>,
    },
    Remote {
        base: String,
        client: reqwest::Client,
        token: String,
    },
}

/// Connects as `target` says, runs `f`, and always closes the connection
/// (signs out, or closes the database after its last commit).
pub(crate) async fn with<T, F, Fut>(target: &Target, f: F) -> anyhow::Result<T>
where
    F: FnOnce(Arc<Conn>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let conn = Arc::new(Conn::open(target).await?);
    let out = f(conn.clone()).await;
    conn.close().await;
    out
}

impl Conn {
    async fn open(t: &Target) -> anyhow::Result<Conn> {
        match (&t.data_dir, &t.url) {
            (Some(dir), None) => {
                let path = dir.join(MGC_FILE);
                if !path.exists() {
                    bail!(
                        "{} holds no pchat databases (start `pchat serve --data-dir {}` once to create them)",
                        dir.display(),
                        dir.display()
                    );
                }
                let engine = ChatEngine::open(&path)?;
                let comp = compliance_engine::open(&dir.join(MGCCOMP_FILE))?;
                let config = pchat_server::Config {
                    server_name: "pchat-admin".into(),
                    ..pchat_server::Config::default()
                };
                let state = AppState::with_compliance(engine.clone(), Some(comp.clone()), config);
                Ok(Conn::Local {
                    state,
                    engine,
                    comp,
                })
            }
            (None, Some(url)) => {
                let creds = t
                    .as_admin
                    .as_deref()
                    .context("--url needs --as name:password (or PCHAT_ADMIN)")?;
                let (name, password) = credentials("as", creds)?;
                let base = url.trim_end_matches('/').to_string();
                let client = reqwest::Client::new();
                let session: SessionResponse = decode(
                    client
                        .post(format!("{base}/api/v1/sessions"))
                        .json(&SessionRequest { name, password })
                        .send()
                        .await
                        .with_context(|| format!("cannot reach {base}"))?,
                )
                .await?;
                Ok(Conn::Remote {
                    base,
                    client,
                    token: session.token,
                })
            }
            _ => bail!("say where: --data-dir DIR or --url URL --as name:password"),
        }
    }

    async fn close(&self) {
        match self {
            Conn::Local { engine, comp, .. } => {
                engine.close();
                comp.close();
            }
            Conn::Remote {
                base,
                client,
                token,
            } => {
                let _ = client
                    .delete(format!("{base}/api/v1/sessions"))
                    .bearer_auth(token)
                    .send()
                    .await;
            }
        }
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let (status, bytes) = match self {
            Conn::Local { state, .. } => {
                let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
                let method = axum_method(&method)?;
                pchat_server::operator_call(state, method, path, body).await?
            }
            Conn::Remote {
                base,
                client,
                token,
            } => {
                let mut req = client
                    .request(method, format!("{base}{path}"))
                    .bearer_auth(token);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let resp = req.send().await?;
                (resp.status().as_u16(), resp.bytes().await?.to_vec())
            }
        };
        answer(status, &bytes)
    }

    async fn room_id(&self, r: &str) -> anyhow::Result<i64> {
        self.id_of("room", "/api/v1/rooms", "rooms", r).await
    }

    async fn group_id(&self, g: &str) -> anyhow::Result<i64> {
        self.id_of("group", "/api/v1/groups", "groups", g).await
    }

    async fn category_id(&self, c: &str) -> anyhow::Result<i64> {
        self.id_of("category", "/api/v1/categories", "categories", c)
            .await
    }

    /// An id given as a number, or the id of the item named so (ignoring
    /// case) in the listing at `path` (field `field`).
    async fn id_of(&self, what: &str, path: &str, field: &str, r: &str) -> anyhow::Result<i64> {
        if let Ok(id) = r.parse() {
            return Ok(id);
        }
        let all: Value = self.call(Method::GET, path, None).await?;
        all[field]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| {
                x["name"]
                    .as_str()
                    .is_some_and(|n| name_key(n) == name_key(r))
            })
            .and_then(|x| x["id"].as_i64())
            .with_context(|| format!("{what}_not_found: no {what} named '{r}'"))
    }
}

fn axum_method(m: &Method) -> anyhow::Result<axum::http::Method> {
    axum::http::Method::from_bytes(m.as_str().as_bytes()).context("bad method")
}

fn answer<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> anyhow::Result<T> {
    if (200..300).contains(&status) {
        let bytes = if bytes.is_empty() { b"null" } else { bytes };
        return serde_json::from_slice(bytes).context("unexpected answer from the server");
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(e) => bail!("{} ({status}): {}", e.error.code, e.error.message),
        Err(_) => bail!("server answered {status}"),
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    answer(status, &bytes)
}
