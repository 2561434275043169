//! The load of a disaster-recovery drill (`pchat lab drill`): clients that
//! post at a steady total rate through whichever chat servers are active,
//! the way a well-behaved client does across failovers. A client whose
//! server stops answering or answers `server_inactive` goes to an active
//! server (every chat server's `GET /api/v1/pool` names them) and posts the
//! same message again with the same `client_msg_id` until it is
//! acknowledged; every acknowledgement is kept, to be checked against the
//! history at the end.

use pchat_api::{MessageView, MessagesResponse, PoolView, SessionRequest, SessionResponse};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub struct LoadConfig {
    /// Every chat server's base URL (active or not).
    pub servers: Vec<String>,
    pub admin_name: String,
    pub admin_password: String,
    pub clients: usize,
    /// Posts per second, all clients together.
    pub rate: f64,
    pub rooms: Vec<i64>,
}

/// One acknowledged post.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub room: i64,
    pub client_msg_id: String,
    pub body: String,
    pub seq: i64,
    /// When the acknowledgement came.
    #[serde(skip)]
    pub at: Instant,
}

struct Shared {
    cfg: LoadConfig,
    http: reqwest::Client,
    stop: AtomicBool,
    acks: Mutex<Vec<Ack>>,
    token: tokio::sync::RwLock<String>,
    /// The active servers' URLs, as the newest pool view names them.
    active: RwLock<Vec<String>>,
    retries: AtomicU64,
    refused: AtomicU64,
}

pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

enum Posted {
    Acked(i64),
    SignInAgain,
    Retry,
    Refused(String),
}

impl Load {
    /// Signs in, starts following the pool and starts the clients.
    pub async fn start(cfg: LoadConfig) -> anyhow::Result<Load> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(cfg.clients)
            .build()?;
        let shared = Arc::new(Shared {
            cfg,
            http,
            stop: AtomicBool::new(false),
            acks: Mutex::new(Vec::new()),
            token: tokio::sync::RwLock::new(String::new()),
            active: RwLock::new(Vec::new()),
            retries: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        refresh_active(&shared).await;
        sign_in(&shared).await?;
        let mut tasks = vec![tokio::spawn(follow_pool(shared.clone()))];
        for i in 0..shared.cfg.clients {
            tasks.push(tokio::spawn(client(shared.clone(), i)));
        }
        Ok(Load { shared, tasks })
    }

    pub fn acked(&self) -> usize {
        self.shared.acks.lock().map(|a| a.len()).unwrap_or(0)
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.shared
            .acks
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Posts retried (a server away or inactive) and posts refused outright.
    pub fn retries(&self) -> (u64, u64) {
        (
            self.shared.retries.load(Ordering::Relaxed),
            self.shared.refused.load(Ordering::Relaxed),
        )
    }

    /// Waits for the first acknowledgement that came after `t`; how long
    /// after `t` it came.
    pub async fn first_ack_after(&self, t: Instant, within: Duration) -> Option<Duration> {
        let deadline = Instant::now() + within;
        loop {
            let first = self.shared.acks.lock().ok().and_then(|a| {
                a.iter()
                    .rev()
                    .take_while(|x| x.at > t)
                    .last()
                    .map(|x| x.at - t)
            });
            if first.is_some() {
                return first;
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The longest time without an acknowledgement between `from` and
    /// `to` (an outage, however in-flight answers straddle its start).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .shared
            .acks
            .lock()
            .map(|a| {
                a.iter()
                    .map(|x| x.at)
                    .filter(|t| *t >= from && *t <= to)
                    .collect()
            })
            .unwrap_or_default();
        times.sort();
        let mut prev = from;
        let mut longest = Duration::ZERO;
        for t in times.into_iter().chain(std::iter::once(to)) {
            longest = longest.max(t.saturating_duration_since(prev));
            prev = t;
        }
        longest
    }

    /// Stops the clients once each has its current post acknowledged (30 s
    /// at most); every acknowledgement.
    pub async fn stop(self) -> Vec<Ack> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
        self.shared
            .acks
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// What a client with an outbox does when the history it finds ends
    /// before its own acknowledged posts (a data-center failover lost what
    /// was not shipped): posts them again, with their `client_msg_id`.
    /// Answers how many were posted again.
    pub async fn resend(&self, lost: &[Ack]) -> anyhow::Result<usize> {
        let mut sent = 0;
        for a in lost {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let url = self
                    .shared
                    .active
                    .read()
                    .ok()
                    .and_then(|v| v.first().cloned());
                let posted = match &url {
                    Some(u) => post(&self.shared, u, a.room, &a.body, &a.client_msg_id).await,
                    None => Posted::Retry,
                };
                match posted {
                    Posted::Acked(_) => {
                        sent += 1;
                        break;
                    }
                    Posted::SignInAgain => {
                        let _ = sign_in(&self.shared).await;
                    }
                    Posted::Refused(why) => anyhow::bail!("posting a lost message again: {why}"),
                    Posted::Retry => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                if Instant::now() > deadline {
                    anyhow::bail!("could not post {} again within 30 s", a.client_msg_id);
                }
            }
        }
        Ok(sent)
    }

    /// An active server's URL and the administrator's token (to read back).
    pub async fn reader(&self) -> Option<(String, String)> {
        refresh_active(&self.shared).await;
        let url = self.shared.active.read().ok()?.first()?.clone();
        Some((url, self.shared.token.read().await.clone()))
    }
}

/// Every chat server's pool view; the newest names the active servers.
async fn refresh_active(shared: &Shared) {
    let asks = shared.cfg.servers.iter().map(|s| async move {
        let r = shared
            .http
            .get(format!("{s}/api/v1/pool"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?;
        r.json::<PoolView>().await.ok()
    });
    let views = futures_util::future::join_all(asks).await;
    if let Some(v) = views.into_iter().flatten().max_by_key(|v| v.version) {
        let urls = v.active_servers.into_iter().map(|a| a.url).collect();
        if let Ok(mut a) = shared.active.write() {
            *a = urls;
        }
    }
}

async fn follow_pool(shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        refresh_active(&shared).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sign_in(shared: &Shared) -> anyhow::Result<()> {
    let body = SessionRequest {
        name: shared.cfg.admin_name.clone(),
        password: shared.cfg.admin_password.clone(),
    };
    let mut last = anyhow::anyhow!("no active chat server to sign in at");
    let active = shared.active.read().map(|a| a.clone()).unwrap_or_default();
    for url in active {
        let r = shared
            .http
            .post(format!("{url}/api/v1/sessions"))
            .json(&body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                let s: SessionResponse = r.json().await?;
                *shared.token.write().await = s.token;
                return Ok(());
            }
            Ok(r) => last = anyhow::anyhow!("{url}: {}", r.status()),
            Err(e) => last = anyhow::anyhow!("{url}: {e}"),
        }
    }
    Err(last)
}

async fn post(shared: &Shared, url: &str, room: i64, body: &str, cmid: &str) -> Posted {
    let token = shared.token.read().await.clone();
    let r = shared
        .http
        .post(format!("{url}/api/v1/rooms/{room}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "body": body, "client_msg_id": cmid }))
        .send()
        .await;
    let Ok(r) = r else { return Posted::Retry };
    let status = r.status().as_u16();
    match status {
        200 | 201 => match r.json::<MessageView>().await {
            Ok(m) => Posted::Acked(m.seq),
            // The answer was cut: the post may have been made; the retry
            // with the same client_msg_id finds it.
            Err(_) => Posted::Retry,
        },
        // A session made on a primary whose log was not shipped is gone.
        401 => Posted::SignInAgain,
        // Server away, inactive, or its database failing over.
        502..=504 => Posted::Retry,
        _ => Posted::Refused(format!("{status}: {}", r.text().await.unwrap_or_default())),
    }
}

async fn client(shared: Arc<Shared>, i: usize) {
    let cfg = &shared.cfg;
    let period = Duration::from_secs_f64(cfg.clients as f64 / cfg.rate.max(0.001));
    // Spread the clients' ticks over one period.
    let mut next = Instant::now() + period.mul_f64(i as f64 / cfg.clients.max(1) as f64);
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next.into()).await;
        next += period;
        // Fallen far behind (an outage): do not burst to catch up.
        if next + Duration::from_secs(1) < Instant::now() {
            next = Instant::now() + period;
        }
        n += 1;
        let cmid = format!("d{i}-{n}");
        let room = cfg.rooms[(i + n as usize) % cfg.rooms.len()];
        let body = format!("drill client {i} post {n}");
        loop {
            let active = shared.active.read().map(|a| a.clone()).unwrap_or_default();
            if active.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let url = &active[i % active.len()];
            match post(&shared, url, room, &body, &cmid).await {
                Posted::Acked(seq) => {
                    if let Ok(mut a) = shared.acks.lock() {
                        a.push(Ack {
                            room,
                            client_msg_id: cmid,
                            body,
                            seq,
                            at: Instant::now(),
                        });
                    }
                    break;
                }
                Posted::SignInAgain => {
                    let _ = sign_in(&shared).await;
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                }
                Posted::Retry => {
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Posted::Refused(why) => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    eprintln!("drill: a post was refused: {why}");
                    break;
                }
            }
        }
    }
}

/// Every message of the rooms: (room, client_msg_id) → the seqs it holds,
/// and each room's seqs in order.
pub struct History {
    pub by_cmid: HashMap<(i64, String), Vec<i64>>,
    pub seqs: HashMap<i64, Vec<i64>>,
}

impl History {
    pub async fn read(url: &str, token: &str, rooms: &[i64]) -> anyhow::Result<History> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut h = History {
            by_cmid: HashMap::new(),
            seqs: HashMap::new(),
        };
        for &room in rooms {
            let mut after = 0;
            loop {
                let r = http
                    .get(format!(
                        "{url}/api/v1/rooms/{room}/messages?after={after}&limit=500"
                    ))
                    .bearer_auth(token)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    anyhow::bail!("{url}: reading room {room}: {}", r.status());
                }
                let page: MessagesResponse = r.json().await?;
                let n = page.messages.len();
                for m in page.messages {
                    after = m.seq;
                    h.seqs.entry(room).or_default().push(m.seq);
                    h.by_cmid
                        .entry((room, m.client_msg_id))
                        .or_default()
                        .push(m.seq);
                }
                if n < 500 {
                    break;
                }
            }
        }
        Ok(h)
    }

    /// Acknowledged posts not in the history.
    pub fn missing<'a>(&self, acks: impl IntoIterator<Item = &'a Ack>) -> Vec<&'a Ack> {
        acks.into_iter()
            .filter(|a| {
                !self
                    .by_cmid
                    .contains_key(&(a.room, a.client_msg_id.clone()))
            })
            .collect()
    }

    /// Posts the history holds more than once.
    pub fn duplicated(&self) -> usize {
        self.by_cmid.values().filter(|s| s.len() > 1).count()
    }

    /// Rooms whose sequence numbers skip or repeat (1, 2, 3, ... expected).
    pub fn seq_gaps(&self) -> usize {
        self.seqs
            .values()
            .filter(|s| s.iter().enumerate().any(|(i, &q)| q != i as i64 + 1))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_finds_missing_duplicated_and_gaps() {
        let mut h = History {
            by_cmid: HashMap::new(),
            seqs: HashMap::new(),
        };
        h.by_cmid.insert((1, "a".into()), vec![1]);
        h.by_cmid.insert((1, "b".into()), vec![2, 4]);
        h.seqs.insert(1, vec![1, 2, 4]);
        h.seqs.insert(2, vec![1, 2]);
        let ack = |cmid: &str| Ack {
            room: 1,
            client_msg_id: cmid.into(),
            body: String::new(),
            seq: 1,
            at: Instant::now(),
        };
        let acks = [ack("a"), ack("c")];
        let missing: Vec<&str> = h
            .missing(&acks)
            .iter()
            .map(|a| a.client_msg_id.as_str())
            .collect();
        assert_eq!(missing, ["c"]);
        assert_eq!(h.duplicated(), 1);
        assert_eq!(h.seq_gaps(), 1);
    }
}
