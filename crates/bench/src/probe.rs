//! `pchat admin test-message`: one synthetic transaction, like Lync's
//! Test-CsPersistentChatMessage. A receiver subscribes to a room over
//! WebSocket, a sender posts a uniquely tagged message, and the probe checks
//! that it is acknowledged and delivered to the receiver exactly once.

use crate::{connect, ws_url, Http};
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use pchat_api::{ClientFrame, RoomView, RoomsResponse};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub struct ProbeConfig {
    pub url: String,
    /// name:password of the posting account.
    pub sender: (String, String),
    /// name:password of the receiving account.
    pub receiver: (String, String),
    /// Room id or name; both accounts must be able to read it, the sender to post.
    pub room: String,
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub room: i64,
    pub seq: i64,
    pub client_msg_id: String,
    pub sign_in_ms: f64,
    pub subscribe_ms: f64,
    pub ack_ms: f64,
    pub delivery_ms: f64,
}

impl ProbeReport {
    pub fn human(&self) -> String {
        format!(
            "ok: room {} seq {} — sign-in {:.1} ms, subscribe {:.1} ms, post→ack {:.1} ms, post→delivery {:.1} ms",
            self.room, self.seq, self.sign_in_ms, self.subscribe_ms, self.ack_ms, self.delivery_ms
        )
    }
}

pub async fn test_message(cfg: ProbeConfig) -> anyhow::Result<ProbeReport> {
    let http = Http {
        base: cfg.url.trim_end_matches('/').to_string(),
        client: reqwest::Client::new(),
    };
    let started = Instant::now();
    let sender = http
        .sign_in(&cfg.sender.0, &cfg.sender.1)
        .await
        .context("the sender cannot sign in")?;
    let receiver = http
        .sign_in(&cfg.receiver.0, &cfg.receiver.1)
        .await
        .context("the receiver cannot sign in")?;
    let sign_in_ms = ms(started);

    let room = find_room(&http, &receiver, &cfg.room).await?;
    if !room.can_read {
        bail!("{} may not read room '{}'", cfg.receiver.0, room.name);
    }
    let t = Instant::now();
    let (mut rx, _) = connect(&ws_url(&http.base, &receiver)).await?;
    let subscribe = ClientFrame::Subscribe {
        rooms: BTreeMap::from([(room.id.to_string(), room.last_seq)]),
    };
    rx.send(Message::text(serde_json::to_string(&subscribe)?))
        .await?;
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    next_of(&mut rx, "subscribed", deadline)
        .await
        .context("subscribing")?;
    let subscribe_ms = ms(t);

    let (mut tx, _) = connect(&ws_url(&http.base, &sender)).await?;
    let client_msg_id = format!(
        "test-message-{}",
        std::process::id() as u128 * 1_000_000 + started.elapsed().as_nanos()
    );
    let post = ClientFrame::Post {
        room: room.id,
        body: format!("pchat test-message {client_msg_id}"),
        client_msg_id: client_msg_id.clone(),
        alert: false,
    };
    let posted = Instant::now();
    tx.send(Message::text(serde_json::to_string(&post)?))
        .await?;
    let ack = next_of(&mut tx, "ack", deadline)
        .await
        .context("waiting for the acknowledgement")?;
    let ack_ms = ms(posted);
    let seq = ack["seq"].as_i64().context("ack without seq")?;
    let delivered = next_of(&mut rx, "message", deadline)
        .await
        .context("waiting for the delivery")?;
    let delivery_ms = ms(posted);
    if delivered["client_msg_id"] != client_msg_id.as_str() || delivered["seq"] != seq {
        bail!("the receiver got another message first: {delivered}");
    }
    // exactly once: nothing more arrives for a moment
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(200), rx.next()).await
    {
        if t.as_str().contains(&client_msg_id) {
            bail!("the message was delivered twice");
        }
    }
    let _ = tx.close(None).await;
    let _ = rx.close(None).await;
    Ok(ProbeReport {
        room: room.id,
        seq,
        client_msg_id,
        sign_in_ms,
        subscribe_ms,
        ack_ms,
        delivery_ms,
    })
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

async fn find_room(http: &Http, token: &str, room: &str) -> anyhow::Result<RoomView> {
    if let Ok(id) = room.parse::<i64>() {
        return http
            .get(token, &format!("/api/v1/rooms/{id}"))
            .await
            .with_context(|| format!("room {id}"));
    }
    let rooms: RoomsResponse = http.get(token, "/api/v1/rooms").await?;
    rooms
        .rooms
        .into_iter()
        .find(|r| r.name.to_lowercase() == room.to_lowercase())
        .with_context(|| format!("no room named '{room}' that the receiver can see"))
}

/// The next frame of `kind`; an error frame or the deadline fails.
async fn next_of(
    ws: &mut crate::Ws,
    kind: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<serde_json::Value> {
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no '{kind}' before the timeout"))?;
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("connection failed: {e}"),
            None => bail!("connection closed"),
        };
        let v: serde_json::Value = serde_json::from_str(text.as_str())?;
        if v["type"] == kind {
            return Ok(v);
        }
        if v["type"] == "error" {
            bail!(
                "{}: {}",
                v["code"].as_str().unwrap_or("error"),
                v["message"].as_str().unwrap_or("")
            );
        }
    }
}
