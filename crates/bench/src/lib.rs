//! `pchat bench`: loads a running chat server the way real clients do, over
//! WebSocket, and verifies what it was told.
//!
//! Setup (over HTTP, as an administrator): a category, `rooms` open rooms, a
//! user per sender and one for the subscribers. Load: `subscribers` clients
//! per room subscribe; `senders` clients post into the rooms round-robin, each
//! keeping `window` posts in flight, for `duration`. Every body starts with its
//! send time, so subscribers measure post-to-delivery latency. Verify: every
//! room's history is read back and every acknowledged post must be there
//! exactly once, at the `seq` its ack named; subscribers must have seen each
//! room's messages in order with no gap and no duplicate.
//!
//! [`test_message`] is the one-message synthetic check behind
//! `pchat admin test-message`; [`drill`] is the load of `pchat lab drill`.

pub mod drill;
mod probe;
pub use probe::{test_message, ProbeConfig, ProbeReport};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use pchat_api::{ClientFrame, MessagesResponse, RoomView, SessionRequest, SessionResponse};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub struct Config {
    pub url: String,
    pub admin_name: String,
    pub admin_password: String,
    pub senders: usize,
    pub rooms: usize,
    pub subscribers: usize,
    pub size: usize,
    pub duration: Duration,
    pub window: usize,
    /// Connect the subscribers and hold them for `duration`, without posting.
    pub hold_only: bool,
    /// Total posts per second across all senders (None: as fast as acks allow).
    pub rate: Option<f64>,
    /// After loading, time this many history reads (latest 50 of the first
    /// room) and this many full-text searches.
    pub reads: usize,
    /// Clients set TCP_NODELAY, as browsers do.
    pub nodelay: bool,
}

#[derive(Debug, Serialize, Default)]
pub struct Report {
    pub senders: usize,
    pub rooms: usize,
    pub subscribers_per_room: usize,
    pub size: usize,
    pub window: usize,
    pub duration_s: f64,
    pub connections: usize,
    pub posts: u64,
    pub posts_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    pub deliveries: u64,
    pub delivery_p50_ms: f64,
    pub delivery_p99_ms: f64,
    pub server_rss_bytes: u64,
    /// Acknowledged posts not found in history.
    pub missing: u64,
    /// Acknowledged posts found more than once.
    pub duplicated: u64,
    /// Live deliveries out of order, repeated or skipped.
    pub delivery_errors: u64,
    /// Messages subscribers should have received but had not when the run ended.
    pub undelivered: u64,
    /// Posts refused or connections lost.
    pub errors: u64,
    /// Messages in the first room when the reads ran.
    pub read_room_messages: i64,
    pub history_p50_ms: f64,
    pub history_p99_ms: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    /// Average hits per search (limit 20).
    pub search_hits: f64,
}

impl Report {
    pub fn human(&self) -> String {
        format!(
            "{} senders, {} rooms × {} subscribers, {} B bodies, window {}, {:.1}s, {} connections\n\
             posts:      {} acknowledged, {:.0} posts/s\n\
             ack:        p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms\n\
             delivery:   {} messages, p50 {:.2} ms  p99 {:.2} ms\n\
             server RSS: {:.1} MiB\n\
             verify:     {} missing, {} duplicated, {} delivery errors, {} undelivered, {} errors\n\
             reads:      latest 50 of {} messages p50 {:.2} ms p99 {:.2} ms; search p50 {:.2} ms p99 {:.2} ms ({:.1} hits)",
            self.senders,
            self.rooms,
            self.subscribers_per_room,
            self.size,
            self.window,
            self.duration_s,
            self.connections,
            self.posts,
            self.posts_per_s,
            self.ack_p50_ms,
            self.ack_p99_ms,
            self.ack_p999_ms,
            self.deliveries,
            self.delivery_p50_ms,
            self.delivery_p99_ms,
            self.server_rss_bytes as f64 / (1024.0 * 1024.0),
            self.missing,
            self.duplicated,
            self.delivery_errors,
            self.undelivered,
            self.errors,
            self.read_room_messages,
            self.history_p50_ms,
            self.history_p99_ms,
            self.search_p50_ms,
            self.search_p99_ms,
            self.search_hits
        )
    }
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer: {text}"))
    }

    async fn sign_in(&self, name: &str, password: &str) -> anyhow::Result<String> {
        let body = SessionRequest {
            name: name.into(),
            password: password.into(),
        };
        let s: SessionResponse = self
            .call(
                self.client
                    .post(format!("{}/api/v1/sessions", self.base))
                    .json(&body),
            )
            .await?;
        Ok(s.token)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        self.call(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> anyhow::Result<T> {
        self.call(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    async fn rss(&self) -> u64 {
        let Ok(resp) = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
        else {
            return 0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn ws_url(base: &str, token: &str) -> String {
    let ws = base
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    format!("{ws}/api/v1/stream?access_token={token}")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Microseconds since `epoch`, written at the start of each body.
fn stamp(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// Words w0..w999 in bodies, so searches have something to find.
const VOCABULARY: u64 = 1000;

/// A cheap deterministic generator (xorshift) for word choice.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn body(epoch: Instant, size: usize, rng: &mut u64) -> String {
    let mut b = format!("t={};", stamp(epoch));
    for _ in 0..3 {
        b.push_str(&format!(" w{}", next_rand(rng) % VOCABULARY));
    }
    b.push(' ');
    while b.len() < size {
        b.push('x');
    }
    b
}

/// Reads `seq` and the stamp of a message frame without a full parse.
fn parse_delivery(text: &str) -> Option<(i64, i64, u64)> {
    if !text.starts_with("{\"type\":\"message\"") {
        return None;
    }
    let num = |key: &str| -> Option<i64> {
        let at = text.find(key)? + key.len();
        let rest = &text[at..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let room = num("\"room\":")?;
    let seq = num("\"seq\":")?;
    let t = num("\"body\":\"t=")? as u64;
    Some((room, seq, t))
}

struct Shared {
    epoch: Instant,
    stop: AtomicBool,
    errors: AtomicU64,
}

struct SubscriberResult {
    room: i64,
    last_seq: i64,
    latencies_ms: Vec<f64>,
    delivery_errors: u64,
}

/// Whether bench clients set TCP_NODELAY (`--nodelay`). Off by default: the
/// bench shares the machine with the server, and 16,000 no-delay client
/// sockets cost it enough CPU to distort the server's figures.
static NODELAY: AtomicBool = AtomicBool::new(false);

/// A WebSocket with a small read buffer (the server's reason is in `stream.rs`).
async fn connect(url: &str) -> anyhow::Result<(Ws, ())> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        url,
        Some(config),
        NODELAY.load(Ordering::Relaxed),
    )
    .await
    .context("websocket connect")?;
    Ok((ws, ()))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

static DRAIN_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);

fn stop_deadline_passed(shared: &Shared) -> bool {
    stamp(shared.epoch) > DRAIN_DEADLINE.load(Ordering::Relaxed)
}

struct SenderResult {
    /// (room, client_msg_id, seq) of every acknowledged post.
    acked: Vec<(i64, String, i64)>,
    ack_ms: Vec<f64>,
}

/// What every sender is told: body size, window, duration, pause between posts.
struct SenderConfig {
    size: usize,
    window: usize,
    duration: Duration,
    interval: Option<Duration>,
}

async fn sender(
    id: usize,
    url: String,
    rooms: Arc<Vec<i64>>,
    cfg: Arc<SenderConfig>,
    shared: Arc<Shared>,
    target: Arc<Vec<AtomicU64>>,
) -> anyhow::Result<SenderResult> {
    let (mut ws, _) = connect(&url).await?;
    let mut out = SenderResult {
        acked: Vec::new(),
        ack_ms: Vec::new(),
    };
    let mut in_flight: HashMap<String, (Instant, usize)> = HashMap::new();
    let mut n = 0usize;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (id as u64 + 1);
    let start = Instant::now();
    let end = start + cfg.duration;
    // Paced senders start spread over one interval.
    let mut next_send = start
        + cfg
            .interval
            .map_or(Duration::ZERO, |iv| iv.mul_f64((id % 97) as f64 / 97.0));
    loop {
        while Instant::now() < end && in_flight.len() < cfg.window && Instant::now() >= next_send {
            let room_ix = (id + n) % rooms.len();
            let cmid = format!("b{id}-{n}");
            n += 1;
            let f = ClientFrame::Post {
                room: rooms[room_ix],
                body: body(shared.epoch, cfg.size, &mut rng),
                client_msg_id: cmid.clone(),
                alert: false,
            };
            ws.send(Message::text(serde_json::to_string(&f)?)).await?;
            in_flight.insert(cmid, (Instant::now(), room_ix));
            if let Some(iv) = cfg.interval {
                next_send += iv;
            }
        }
        let now = Instant::now();
        if in_flight.is_empty() && now >= end {
            break;
        }
        let pacing = cfg.interval.is_some() && now < end && in_flight.len() < cfg.window;
        let wait = if pacing {
            next_send.saturating_duration_since(now)
        } else {
            Duration::from_secs(30)
        };
        let text = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) if pacing => continue,
            Err(_) => bail!("no ack within 30 s"),
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            Ok(_) => bail!("connection lost with {} posts in flight", in_flight.len()),
        };
        let v: serde_json::Value = serde_json::from_str(text.as_str())?;
        match v["type"].as_str() {
            Some("ack") => {
                let cmid = v["client_msg_id"].as_str().unwrap_or_default().to_string();
                let seq = v["seq"].as_i64().unwrap_or(0);
                if let Some((t, room_ix)) = in_flight.remove(&cmid) {
                    out.ack_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    out.acked.push((rooms[room_ix], cmid, seq));
                    target[room_ix].fetch_max(seq as u64, Ordering::Relaxed);
                }
            }
            Some("error") => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = v["client_msg_id"].as_str() {
                    in_flight.remove(c);
                }
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(out)
}

/// Times `n` reads of the latest 50 messages of `room` and `n` searches for
/// a random vocabulary word across every room, one at a time.
async fn time_reads(
    http: &Http,
    token: &str,
    room: i64,
    n: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, f64)> {
    let mut history = Vec::with_capacity(n);
    let mut search = Vec::with_capacity(n);
    let mut hits = 0usize;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..n {
        let t = Instant::now();
        let page: MessagesResponse = http
            .get(token, &format!("/api/v1/rooms/{room}/messages?limit=50"))
            .await?;
        history.push(t.elapsed().as_secs_f64() * 1000.0);
        if page.messages.is_empty() {
            bail!("room {room} is empty");
        }
        let word = format!("w{}", next_rand(&mut rng) % VOCABULARY);
        let t = Instant::now();
        let found: serde_json::Value = http
            .get(token, &format!("/api/v1/search?q={word}&limit=20"))
            .await?;
        search.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += found["hits"].as_array().map_or(0, |h| h.len());
    }
    history.sort_by(f64::total_cmp);
    search.sort_by(f64::total_cmp);
    Ok((history, search, hits as f64 / n.max(1) as f64))
}

pub async fn run(cfg: Config) -> anyhow::Result<Report> {
    NODELAY.store(cfg.nodelay, Ordering::Relaxed);
    let http = Http {
        base: cfg.url.trim_end_matches('/').to_string(),
        client: reqwest::Client::new(),
    };
    let admin = http
        .sign_in(&cfg.admin_name, &cfg.admin_password)
        .await
        .context("cannot sign in as the administrator")?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let password = format!("bench-{run_id}-pw");

    let category: serde_json::Value = http
        .post(
            &admin,
            "/api/v1/categories",
            serde_json::json!({"name": format!("bench-{run_id}")}),
        )
        .await?;
    let mut rooms = Vec::new();
    for i in 0..cfg.rooms {
        let r: RoomView = http
            .post(&admin, "/api/v1/rooms", serde_json::json!({"name": format!("bench-{run_id}-{i}"), "category": category["id"], "privacy": "open"}))
            .await?;
        rooms.push(r.id);
    }
    let rooms = Arc::new(rooms);
    let make_user = |name: String| {
        let http = &http;
        let admin = &admin;
        let password = &password;
        async move {
            let _: serde_json::Value = http
                .post(
                    admin,
                    "/api/v1/users",
                    serde_json::json!({"name": name, "password": password}),
                )
                .await?;
            http.sign_in(&name, password).await
        }
    };
    let sub_token = make_user(format!("bench-{run_id}-sub")).await?;
    // Senders share up to 8 users (their client_msg_ids differ): setting up
    // a user costs two Argon2 computations on the server.
    let mut user_tokens = Vec::new();
    if !cfg.hold_only {
        for i in 0..cfg.senders.min(8) {
            user_tokens.push(make_user(format!("bench-{run_id}-s{i}")).await?);
        }
    }
    let sender_tokens: Vec<&String> = if cfg.hold_only {
        Vec::new()
    } else {
        (0..cfg.senders)
            .map(|i| &user_tokens[i % user_tokens.len()])
            .collect()
    };

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
    });
    let target: Arc<Vec<AtomicU64>> =
        Arc::new((0..rooms.len()).map(|_| AtomicU64::new(0)).collect());

    // Subscribers first, connected a few hundred at a time.
    let mut subs = tokio::task::JoinSet::new();
    let connect_gate = Arc::new(tokio::sync::Semaphore::new(256));
    let connected = Arc::new(AtomicU64::new(0));
    for (ix, room) in rooms.iter().enumerate() {
        for _ in 0..cfg.subscribers {
            let (url, shared, target, gate, connected) = (
                ws_url(&http.base, &sub_token),
                shared.clone(),
                target.clone(),
                connect_gate.clone(),
                connected.clone(),
            );
            let room = *room;
            subs.spawn(async move {
                // The permit covers connecting and subscribing only.
                let permit = gate.acquire_owned().await.ok();
                subscriber(
                    url,
                    room,
                    shared,
                    target,
                    ix,
                    CountOnSubscribed { connected, permit },
                )
                .await
            });
        }
    }
    let expected_subs = (rooms.len() * cfg.subscribers) as u64;
    let setup_deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::Relaxed) < expected_subs
        && Instant::now() < setup_deadline
        && !subs.is_empty()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if shared.errors.load(Ordering::Relaxed) > 0
            && connected.load(Ordering::Relaxed) + shared.errors.load(Ordering::Relaxed)
                >= expected_subs
        {
            break;
        }
    }

    eprintln!(
        "bench: {} subscribers connected; load starts",
        connected.load(Ordering::Relaxed)
    );
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    if cfg.hold_only {
        tokio::time::sleep(cfg.duration).await;
    } else {
        let scfg = Arc::new(SenderConfig {
            size: cfg.size,
            window: cfg.window,
            duration: cfg.duration,
            interval: cfg
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(cfg.senders as f64 / r)),
        });
        for (i, token) in sender_tokens.iter().enumerate() {
            senders.spawn(sender(
                i,
                ws_url(&http.base, token),
                rooms.clone(),
                scfg.clone(),
                shared.clone(),
                target.clone(),
            ));
        }
    }
    let mut acked = Vec::new();
    let mut ack_ms = Vec::new();
    while let Some(r) = senders.join_next().await {
        match r {
            Ok(Ok(s)) => {
                acked.extend(s.acked);
                ack_ms.extend(s.ack_ms);
            }
            Ok(Err(e)) => {
                eprintln!("sender failed: {e:#}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("sender panicked: {e}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss = http.rss().await;

    // Let subscribers drain up to the last acknowledged seq, for at most 30 s.
    DRAIN_DEADLINE.store(stamp(shared.epoch) + 30_000_000, Ordering::Relaxed);
    shared.stop.store(true, Ordering::Relaxed);
    let mut delivery_ms = Vec::new();
    let mut delivery_errors = 0;
    let mut undelivered = 0u64;
    while let Some(r) = subs.join_next().await {
        match r {
            Ok(Ok(s)) => {
                let ix = rooms.iter().position(|x| *x == s.room).unwrap_or(0);
                undelivered +=
                    (target[ix].load(Ordering::Relaxed) as i64 - s.last_seq).max(0) as u64;
                delivery_errors += s.delivery_errors;
                delivery_ms.extend(s.latencies_ms);
            }
            Ok(Err(e)) => {
                eprintln!("subscriber failed: {e:#}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // Verify against history.
    let (missing, duplicated) = verify(&http, &admin, &rooms, &acked).await?;

    let mut reads = (Vec::new(), Vec::new(), 0.0);
    let mut read_room_messages = 0;
    if cfg.reads > 0 {
        let room: RoomView = http
            .get(&admin, &format!("/api/v1/rooms/{}", rooms[0]))
            .await?;
        read_room_messages = room.last_seq;
        reads = time_reads(&http, &admin, rooms[0], cfg.reads).await?;
    }

    ack_ms.sort_by(f64::total_cmp);
    delivery_ms.sort_by(f64::total_cmp);
    Ok(Report {
        senders: if cfg.hold_only { 0 } else { cfg.senders },
        rooms: rooms.len(),
        subscribers_per_room: cfg.subscribers,
        size: cfg.size,
        window: cfg.window,
        duration_s: elapsed,
        connections: connected.load(Ordering::Relaxed) as usize + sender_tokens.len(),
        posts: acked.len() as u64,
        posts_per_s: acked.len() as f64 / elapsed.max(1e-9),
        ack_p50_ms: percentile(&ack_ms, 0.50),
        ack_p99_ms: percentile(&ack_ms, 0.99),
        ack_p999_ms: percentile(&ack_ms, 0.999),
        deliveries: delivery_ms.len() as u64,
        delivery_p50_ms: percentile(&delivery_ms, 0.50),
        delivery_p99_ms: percentile(&delivery_ms, 0.99),
        server_rss_bytes: rss,
        missing,
        duplicated,
        delivery_errors,
        undelivered,
        errors: shared.errors.load(Ordering::Relaxed),
        read_room_messages,
        history_p50_ms: percentile(&reads.0, 0.50),
        history_p99_ms: percentile(&reads.0, 0.99),
        search_p50_ms: percentile(&reads.1, 0.50),
        search_p99_ms: percentile(&reads.1, 0.99),
        search_hits: reads.2,
    })
}

/// Counts a subscriber as connected, and frees its connect permit, once subscribed.
struct CountOnSubscribed {
    connected: Arc<AtomicU64>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl CountOnSubscribed {
    fn done(&mut self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.permit.take();
    }
}

async fn subscriber(
    url: String,
    room: i64,
    shared: Arc<Shared>,
    target: Arc<Vec<AtomicU64>>,
    room_ix: usize,
    mut guard: CountOnSubscribed,
) -> anyhow::Result<SubscriberResult> {
    let (mut ws, _) = connect(&url).await?;
    let sub = ClientFrame::Subscribe {
        rooms: BTreeMap::from([(room.to_string(), 0)]),
    };
    ws.send(Message::text(serde_json::to_string(&sub)?)).await?;
    let mut r = SubscriberResult {
        room,
        last_seq: 0,
        latencies_ms: Vec::new(),
        delivery_errors: 0,
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(t))))
                if t.as_str().starts_with("{\"type\":\"subscribed\"") =>
            {
                break
            }
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().starts_with("{\"type\":\"error\"") => {
                bail!("subscribe refused: {}", t.as_str())
            }
            Ok(Some(Ok(_))) => {}
            _ => bail!("no subscribed frame"),
        }
    }
    guard.done();
    loop {
        let stop = shared.stop.load(Ordering::Relaxed);
        if stop
            && (r.last_seq >= target[room_ix].load(Ordering::Relaxed) as i64
                || stop_deadline_passed(&shared))
        {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Some((_, seq, sent)) = parse_delivery(t.as_str()) {
                    if seq != r.last_seq + 1 {
                        r.delivery_errors += 1;
                    }
                    r.last_seq = r.last_seq.max(seq);
                    r.latencies_ms
                        .push((stamp(shared.epoch).saturating_sub(sent)) as f64 / 1000.0);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => bail!("connection lost"),
        }
    }
    let _ = ws.close(None).await;
    Ok(r)
}

/// Reads every room's history and checks each acknowledged post is there
/// exactly once at the acknowledged seq. Returns (missing, duplicated).
async fn verify(
    http: &Http,
    token: &str,
    rooms: &[i64],
    acked: &[(i64, String, i64)],
) -> anyhow::Result<(u64, u64)> {
    // client_msg_ids are unique within a bench run (b{sender}-{n}), so
    // (room, client_msg_id) names one post.
    let mut seen: HashMap<(i64, String), Vec<i64>> = HashMap::new();
    for room in rooms {
        let mut after = 0;
        loop {
            let page: MessagesResponse = http
                .get(
                    token,
                    &format!("/api/v1/rooms/{room}/messages?after={after}&limit=500"),
                )
                .await?;
            let n = page.messages.len();
            for m in page.messages {
                after = m.seq;
                seen.entry((m.room, m.client_msg_id))
                    .or_default()
                    .push(m.seq);
            }
            if n < 500 {
                break;
            }
        }
    }
    Ok(check_acked(&seen, acked))
}

/// Each acknowledged (room, client_msg_id, seq) against what history holds:
/// (missing, duplicated). A post found at another seq than its ack named
/// counts as missing.
fn check_acked(
    seen: &HashMap<(i64, String), Vec<i64>>,
    acked: &[(i64, String, i64)],
) -> (u64, u64) {
    let (mut missing, mut duplicated) = (0, 0);
    for (room, cmid, seq) in acked {
        match seen.get(&(*room, cmid.clone())) {
            None => missing += 1,
            Some(seqs) if seqs.len() > 1 => duplicated += 1,
            Some(seqs) if seqs[0] != *seq => missing += 1,
            Some(_) => {}
        }
    }
    (missing, duplicated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_frames_parse() {
        let f = r#"{"type":"message","room":3,"seq":42,"sender":"a","sender_id":1,"body":"t=12345;xxx","ts":1,"client_msg_id":"c","alert":false}"#;
        assert_eq!(parse_delivery(f), Some((3, 42, 12345)));
        assert_eq!(parse_delivery(r#"{"type":"ack"}"#), None);
    }

    #[test]
    fn verification_counts_missing_and_duplicated_posts() {
        let seen = HashMap::from([
            ((1, "a".to_string()), vec![1]),
            ((1, "b".to_string()), vec![2, 3]),
            ((1, "c".to_string()), vec![4]),
        ]);
        let ack = |cmid: &str, seq| (1, cmid.to_string(), seq);
        assert_eq!(check_acked(&seen, &[ack("a", 1), ack("c", 4)]), (0, 0));
        assert_eq!(
            check_acked(&seen, &[ack("b", 2)]),
            (0, 1),
            "in history twice"
        );
        assert_eq!(check_acked(&seen, &[ack("z", 5)]), (1, 0), "not in history");
        assert_eq!(check_acked(&seen, &[ack("c", 9)]), (1, 0), "at another seq");
        assert_eq!(
            check_acked(&seen, &[(2, "a".into(), 1)]),
            (1, 0),
            "in another room"
        );
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=1000).map(|x| x as f64).collect();
        assert_eq!(percentile(&v, 0.5), 501.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
