//! `pchat admin`: the management commands (Lync's Management Shell cmdlets).
//!
//! Each command runs against either a data directory (`--data-dir`, acting as
//! the operator at the machine) or a running server (`--url` with an
//! administrator's credentials), with the same output (`--json` for scripts).

use anyhow::{bail, Context};
use pchat_api::{
    CategoryView, CreateCategoryRequest, CreateUserRequest, ErrorBody, SessionRequest,
    SessionResponse, UserView,
};
use pchat_domain::{Actor, Command, Envelope, Outcome};
use pchat_engine::{ChatEngine, MGC_FILE};
use pchat_store::ChatStore;
use serde::Serialize;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

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
    /// Create a category.
    CreateCategory {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
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
            let user: UserView = match where_to(&target)? {
                Where::Dir(dir) => {
                    let password_hash = pchat_server::auth::hash_password(password)
                        .await
                        .map_err(|e| anyhow::anyhow!(e.message))?;
                    let command = Command::CreateUser {
                        actor: Actor::System,
                        name,
                        display_name,
                        password_hash,
                        admin,
                    };
                    match submit(&dir, command).await? {
                        Outcome::User(u) => UserView::from(&u),
                        o => bail!("unexpected outcome {o:?}"),
                    }
                }
                Where::Api(api) => {
                    api.post(
                        "/api/v1/users",
                        &CreateUserRequest {
                            name,
                            password,
                            display_name,
                            admin,
                        },
                    )
                    .await?
                }
            };
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
            let category: CategoryView = match where_to(&target)? {
                Where::Dir(dir) => {
                    match submit(
                        &dir,
                        Command::CreateCategory {
                            actor: Actor::System,
                            name,
                            description,
                        },
                    )
                    .await?
                    {
                        Outcome::Category(c) => CategoryView::from(c),
                        o => bail!("unexpected outcome {o:?}"),
                    }
                }
                Where::Api(api) => {
                    api.post(
                        "/api/v1/categories",
                        &CreateCategoryRequest { name, description },
                    )
                    .await?
                }
            };
            print(&target, &category, || {
                format!("created category {} (id {})", category.name, category.id)
            })
        }
    }
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

enum Where {
    Dir(PathBuf),
    Api(Api),
}

fn where_to(t: &Target) -> anyhow::Result<Where> {
    match (&t.data_dir, &t.url) {
        (Some(d), None) => Ok(Where::Dir(d.clone())),
        (None, Some(u)) => {
            let creds = t
                .as_admin
                .as_deref()
                .context("--url needs --as name:password (or PCHAT_ADMIN)")?;
            let (name, password) = creds
                .split_once(':')
                .context("--as must be name:password")?;
            Ok(Where::Api(Api {
                base: u.trim_end_matches('/').to_string(),
                name: name.into(),
                password: password.into(),
            }))
        }
        _ => bail!("say where: --data-dir DIR or --url URL --as name:password"),
    }
}

async fn submit(dir: &std::path::Path, command: Command) -> anyhow::Result<Outcome> {
    let path = dir.join(MGC_FILE);
    if !path.exists() {
        bail!(
            "{} holds no pchat databases (start `pchat serve --data-dir {}` once to create them)",
            dir.display(),
            dir.display()
        );
    }
    let store = ChatEngine::open(&path)?;
    let result = store
        .submit(Envelope {
            origin: "pchat-admin".into(),
            command,
        })
        .await;
    store.close();
    Ok(result?.outcome)
}

struct Api {
    base: String,
    name: String,
    password: String,
}

impl Api {
    async fn post<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let client = reqwest::Client::new();
        let session: SessionResponse = decode(
            client
                .post(format!("{}/api/v1/sessions", self.base))
                .json(&SessionRequest {
                    name: self.name.clone(),
                    password: self.password.clone(),
                })
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.base))?,
        )
        .await?;
        let out = decode(
            client
                .post(format!("{}{path}", self.base))
                .bearer_auth(&session.token)
                .json(body)
                .send()
                .await?,
        )
        .await;
        let _ = client
            .delete(format!("{}/api/v1/sessions", self.base))
            .bearer_auth(&session.token)
            .send()
            .await;
        out
    }
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).context("unexpected answer from the server");
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(e) => bail!(
            "{} ({}): {}",
            e.error.code,
            status.as_u16(),
            e.error.message
        ),
        Err(_) => bail!("server answered {status}"),
    }
}
