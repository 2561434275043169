//! The chat server's counters, rendered with the store's in Prometheus text.

use pchat_store::{Histogram, StoreMetrics, LATENCY_BUCKETS};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

pub struct Metrics {
    pub posts: AtomicU64,
    pub posts_refused: AtomicU64,
    pub deliveries: AtomicU64,
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    /// Times a lagging subscriber refilled from history.
    pub subscriber_refills: AtomicU64,
    /// Seconds from receiving a post to its durable acknowledgement.
    pub ack_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            posts: AtomicU64::new(0),
            posts_refused: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            subscriber_refills: AtomicU64::new(0),
            ack_seconds: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// Resident set size of this process, from /proc (0 where there is none).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

impl Metrics {
    pub fn render(&self, store: &StoreMetrics) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        counter(
            "pchat_posts_total",
            "Messages posted and acknowledged as durable.",
            "counter",
            self.posts.load(Relaxed).to_string(),
        );
        counter(
            "pchat_posts_refused_total",
            "Posts refused (bad input, permissions).",
            "counter",
            self.posts_refused.load(Relaxed).to_string(),
        );
        counter(
            "pchat_deliveries_total",
            "Messages delivered to WebSocket subscribers.",
            "counter",
            self.deliveries.load(Relaxed).to_string(),
        );
        counter(
            "pchat_connections",
            "Open WebSocket connections.",
            "gauge",
            self.connections.load(Relaxed).to_string(),
        );
        counter(
            "pchat_connections_total",
            "WebSocket connections accepted.",
            "counter",
            self.connections_total.load(Relaxed).to_string(),
        );
        counter(
            "pchat_subscriber_refills_total",
            "Times a subscriber fell behind its outbox and refilled from history.",
            "counter",
            self.subscriber_refills.load(Relaxed).to_string(),
        );
        counter(
            "process_resident_memory_bytes",
            "Resident memory of the server process.",
            "gauge",
            rss_bytes().to_string(),
        );
        self.ack_seconds.render(
            "pchat_post_ack_seconds",
            "Post received to durable acknowledgement.",
            &mut out,
        );
        store.commit_seconds.render(
            "pchat_commit_seconds",
            "Group commit: batch start to durable.",
            &mut out,
        );
        store.batch_size.render(
            "pchat_commit_batch_size",
            "Commands per group commit.",
            &mut out,
        );
        out
    }
}
