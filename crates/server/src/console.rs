//! What the DR dashboard (`/admin/topology`) sees of the pool and runs on
//! it. The chat server only defines the interface and its routes; the
//! binary, which knows the topology and the cluster secret, implements it.

use futures_util::future::BoxFuture;
use serde_json::Value;

/// The runbooks a dashboard may plan and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runbook {
    Failover,
    Failback,
    Switchover,
}

impl Runbook {
    pub fn parse(s: &str) -> Option<Runbook> {
        match s {
            "failover" => Some(Runbook::Failover),
            "failback" => Some(Runbook::Failback),
            "switchover" => Some(Runbook::Switchover),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Runbook::Failover => "failover",
            Runbook::Failback => "failback",
            Runbook::Switchover => "switchover",
        }
    }
}

pub trait Console: Send + Sync {
    /// The pool now: its state and active servers, every chat server (up,
    /// active, connected clients) and database server (its databases' state,
    /// role, mirroring, fork and last LSN; its log-shipping jobs).
    fn snapshot(&self) -> BoxFuture<'_, Value>;
    /// One sample per second, oldest first, over the last hour, taken after
    /// `since` (ms): `{t, posts_per_s, ack_p99_ms, shipping_lag_ms}`.
    fn samples(&self, since: i64) -> Value;
    /// The runbook's plan and preflight checks, changing nothing: `{ok,
    /// lines}`.
    fn plan(&self, runbook: Runbook) -> BoxFuture<'_, Value>;
    /// Starts the runbook in the background; refused while one runs.
    fn start(&self, runbook: Runbook) -> Result<(), String>;
    /// The running or last run: `{runbook, started_at, lines, finished,
    /// ok, report}` (null before the first).
    fn run(&self) -> Value;
}
