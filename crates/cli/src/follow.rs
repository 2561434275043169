//! How a chat server of a topology follows the pool configuration: five
//! times a second it reads the copy each database server holds, takes the
//! newest, points its store at the databases the pool state names, and
//! serves only while it is active there (and in the serving data center).
//! When no database server has answered for a while, it cannot know the
//! configuration, so it stops serving too.

use pchat_api::{ActiveServerView, PoolView};
use pchat_dr::{PoolConfig, Topology};
use pchat_server::AppState;
use pchat_wire::message::Request;
use pchat_wire::RemoteStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Short, because a runbook's last step waits for the chat servers to see
/// it (a read is one small request to each database server).
const READ_EVERY: Duration = Duration::from_millis(200);
/// Each database server's answer is awaited this long.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// With no answer from any database server for this long, the server stops
/// serving: the pool may have moved on without it.
const LEASE: Duration = Duration::from_secs(5);

pub async fn follow(
    state: Arc<AppState>,
    store: Arc<RemoteStore>,
    topology: Topology,
    secret: Vec<u8>,
) {
    let me = state.config.server_name.clone();
    let asks: Vec<Arc<RemoteStore>> = topology
        .database_servers
        .iter()
        .map(|d| RemoteStore::tool(d.address.clone(), secret.clone(), me.clone()))
        .collect();
    let mut newest: Option<PoolConfig> = None;
    let mut heard = None::<Instant>;
    loop {
        let answers = futures_util::future::join_all(asks.iter().map(|s| async move {
            let a = tokio::time::timeout(ASK_TIMEOUT, s.call(Request::PoolGet)).await;
            match a {
                Ok(Ok(v)) => Some(serde_json::from_value::<Option<PoolConfig>>(
                    v["config"].clone(),
                )),
                _ => None,
            }
        }))
        .await;
        for a in answers.into_iter().flatten() {
            heard = Some(Instant::now());
            if let Ok(Some(c)) = a {
                if newest.as_ref().is_none_or(|n| c.version > n.version) {
                    newest = Some(c);
                }
            }
        }
        let known = heard.is_some_and(|h| h.elapsed() < LEASE);
        let view = view(&topology, &state, newest.as_ref(), known);
        if let Some(c) = &newest {
            let addrs = topology
                .serving_databases(c.state)
                .iter()
                .map(|d| d.address.clone())
                .collect();
            store.set_addresses(addrs);
        }
        let before = state.pool();
        if before.serving != view.serving || before.version != view.version {
            tracing::info!(
                serving = view.serving,
                version = view.version,
                state = %view.state,
                reason = view.reason.as_deref().unwrap_or(""),
                "pool configuration"
            );
        }
        state.set_pool(view);
        tokio::time::sleep(READ_EVERY).await;
    }
}

fn view(t: &Topology, state: &AppState, c: Option<&PoolConfig>, known: bool) -> PoolView {
    let me = &state.config.server_name;
    let (serving, reason) = match (c, known) {
        (None, _) | (_, false) => (
            false,
            Some(format!(
                "server inactive: {me} cannot learn the pool configuration (no database server of the topology answers)"
            )),
        ),
        (Some(c), true) => match c.may_serve(me) {
            Ok(()) => (true, None),
            Err(why) => (false, Some(why)),
        },
    };
    let active_servers = c
        .map(|c| {
            c.active
                .iter()
                .filter(|a| c.may_serve(&a.name).is_ok())
                .filter_map(|a| {
                    let s = t.chat_servers.iter().find(|s| s.name == a.name)?;
                    Some(ActiveServerView {
                        name: a.name.clone(),
                        data_center: a.data_center.clone(),
                        url: format!("http://{}", s.client),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let servers = t
        .chat_servers
        .iter()
        .map(|s| ActiveServerView {
            name: s.name.clone(),
            data_center: s.data_center.clone(),
            url: format!("http://{}", s.client),
        })
        .collect();
    PoolView {
        pool: t.pool.clone(),
        server: me.clone(),
        data_center: state.config.data_center.clone(),
        serving,
        reason,
        version: c.map(|c| c.version).unwrap_or(0),
        state: c.map(|c| c.state.as_str()).unwrap_or("unknown").to_string(),
        active_servers,
        servers,
    }
}
