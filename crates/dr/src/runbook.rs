//! The two procedures of the brief, and the planned switchover, as lists of
//! steps with their checks; and the journal that lets an interrupted run
//! resume where it stopped. Pure: `pchat dr` carries the steps out.
//!
//! Every step is idempotent (it looks at what is there before acting), so
//! running a step again after a crash in its middle is safe; the journal
//! only says which steps are known to be done, and keeps what a later step
//! needs (the name of the full backup a failback restores).

use crate::topology::{Role, Topology};
use crate::PoolState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Procedure {
    /// The primary data center is lost: serve from the backup databases.
    Failover,
    /// The primary data center is rebuilt: serve from it again.
    Failback,
    /// Both data centers are up: move to the backup with nothing lost.
    SwitchoverToBackup,
}

impl Procedure {
    pub fn as_str(self) -> &'static str {
        match self {
            Procedure::Failover => "failover",
            Procedure::Failback => "failback",
            Procedure::SwitchoverToBackup => "switchover-to-backup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Failover: copy every log backup left in the share and restore them
    /// all, in sequence, on the backup databases.
    ShipRemainingLogs,
    /// Switchover: no writes, and the backup has restored the primary's
    /// last LSN (the tail of the log is shipped).
    ShipTheTail,
    /// Remove log shipping on the backup (and on the primary if it answers).
    StopLogShipping,
    /// Switchover: break the primary's mirror pair (both keep their data).
    RemovePrimaryMirroring,
    /// Bring backup mgc and mgccomp online with recovery (a new fork).
    RecoverBackup,
    SetPoolState(PoolState),
    /// Mirror the backup databases to the backup mirror.
    MirrorBackup,
    /// The active servers become the chat servers of the serving data center.
    ActivateServers(PoolState),
    ClearActiveServers,
    /// Failback: remove mirroring on backup mgc and mgccomp.
    RemoveBackupMirroring,
    /// Failback: copy backup mgc and mgccomp straight to the primary (with
    /// replace and recovery) and the primary mirror (norecovery); the
    /// backup goes back to RESTORING in place.
    CopyToPrimary,
    /// Failback: mirror the primary to the primary mirror.
    MirrorPrimary,
    /// Failback: log shipping from the primary to the backup and the backup
    /// mirror again.
    ShipFromPrimary,
    /// Compare the copies of mgc and mgccomp and check the active servers.
    Verify,
}

impl Step {
    /// A stable name (the journal's key).
    pub fn key(self) -> String {
        match self {
            Step::SetPoolState(s) => format!("set-pool-state-{}", s.as_str()),
            Step::ActivateServers(s) => format!("activate-servers-{}", s.as_str()),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        }
    }

    /// What the step does, with the topology's names.
    pub fn describe(self, t: &Topology) -> String {
        let name = |r: Role| {
            t.database_server(r)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| r.as_str().to_string())
        };
        let (p, pm, b, bm) = (
            name(Role::Primary),
            name(Role::PrimaryMirror),
            name(Role::Backup),
            name(Role::BackupMirror),
        );
        let share = t
            .log_shipping
            .as_ref()
            .map(|l| l.share.clone())
            .unwrap_or_default();
        match self {
            Step::ShipRemainingLogs => format!(
                "copy every log backup not yet copied from {share} and restore the rest in sequence on {b} (mgc, mgccomp), and on {bm}, the second secondary kept warm"
            ),
            Step::ShipTheTail => format!(
                "wait until {b} (and {bm}, the second secondary) has restored every LSN the primary committed (the tail of the log)"
            ),
            Step::StopLogShipping => {
                format!("stop log shipping to {b} and {bm} (and from the primary, where it answers)")
            }
            Step::RemovePrimaryMirroring => format!("remove mirroring between {p} and {pm}"),
            Step::RecoverBackup => {
                format!("bring mgc and mgccomp on {b} online with recovery (a new fork)")
            }
            Step::SetPoolState(s) => format!("set pool state {}", s.as_str()),
            Step::MirrorBackup => format!(
                "mirror mgc and mgccomp from {b} to {bm} ({}; {bm} follows from the logs it restored when it holds what {b} holds; else it is initialised by a copy straight from {b}, whose servers are not active yet; else from a full backup through {share})",
                t.mirroring.as_ref().map(|m| m.mode.as_str()).unwrap_or("sync")
            ),
            Step::ActivateServers(s) => {
                let dc = t.serving_data_center(s);
                format!(
                    "set the active servers to the chat servers of {dc}: {}",
                    servers_of(t, &dc).join(", ")
                )
            }
            Step::ClearActiveServers => "clear the active server list".into(),
            Step::RemoveBackupMirroring => {
                format!("remove mirroring on backup mgc and mgccomp ({b} and {bm})")
            }
            Step::CopyToPrimary => format!(
                "copy mgc and mgccomp from {b} (nobody writes there now) straight to {p}, with replace and recovery (ready to use), and at the same time to {pm} with norecovery; {b}, which holds the same data, goes back to RESTORING in place, and so does {bm}, its mirror until now"
            ),
            Step::MirrorPrimary => format!(
                "mirror mgc and mgccomp from {p} to {pm} ({pm} follows from the restored backup)"
            ),
            Step::ShipFromPrimary => format!(
                "log shipping from {p} (and {pm} once it is principal) to {b} and {bm} again ({b} follows from the copied data; {bm} too when it holds it, else it is initialised from a full backup of {p})"
            ),
            Step::Verify => "verify: family, fork, last LSN and messages per room of mgc and mgccomp on every copy; active servers in the serving data center".into(),
        }
    }
}

/// The chat servers of a data center, up to the pool's active limit.
pub fn servers_of(t: &Topology, dc: &str) -> Vec<String> {
    t.chat_servers
        .iter()
        .filter(|c| c.data_center == dc)
        .take(t.max_active)
        .map(|c| c.name.clone())
        .collect()
}

/// The steps of a procedure, in order.
pub fn plan(p: Procedure) -> Vec<Step> {
    use PoolState::*;
    match p {
        Procedure::Failover => vec![
            Step::ShipRemainingLogs,
            Step::StopLogShipping,
            Step::RecoverBackup,
            Step::SetPoolState(FailedOver),
            Step::MirrorBackup,
            Step::ActivateServers(FailedOver),
            Step::Verify,
        ],
        Procedure::SwitchoverToBackup => vec![
            Step::ClearActiveServers,
            Step::ShipTheTail,
            Step::StopLogShipping,
            Step::RemovePrimaryMirroring,
            Step::RecoverBackup,
            Step::SetPoolState(FailedOver),
            Step::MirrorBackup,
            Step::ActivateServers(FailedOver),
            Step::Verify,
        ],
        // Active servers must sit where the databases serve, so the pool
        // state changes before the primary's servers become active (nobody
        // is active in between: the list was cleared first).
        Procedure::Failback => vec![
            Step::ClearActiveServers,
            Step::RemoveBackupMirroring,
            Step::CopyToPrimary,
            Step::MirrorPrimary,
            Step::ShipFromPrimary,
            Step::SetPoolState(Normal),
            Step::ActivateServers(Normal),
            Step::Verify,
        ],
    }
}

/// What a run has done, kept in a file next to the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub procedure: Procedure,
    pub started_at_ms: u64,
    /// Steps done, by key, with what they reported.
    pub done: BTreeMap<String, serde_json::Value>,
    /// Facts a later step needs (e.g. `backup_files`).
    #[serde(default)]
    pub facts: BTreeMap<String, serde_json::Value>,
    pub finished: bool,
}

impl Journal {
    pub fn new(procedure: Procedure, now_ms: u64) -> Journal {
        Journal {
            procedure,
            started_at_ms: now_ms,
            done: BTreeMap::new(),
            facts: BTreeMap::new(),
            finished: false,
        }
    }

    pub fn is_done(&self, step: Step) -> bool {
        self.done.contains_key(&step.key())
    }

    /// The first step not done yet.
    pub fn next(&self) -> Option<Step> {
        plan(self.procedure).into_iter().find(|s| !self.is_done(*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::parse(include_str!("../../../docs/examples/topology.toml")).unwrap()
    }

    #[test]
    fn the_brief_order() {
        let keys: Vec<String> = plan(Procedure::Failover)
            .into_iter()
            .map(Step::key)
            .collect();
        assert_eq!(
            keys,
            [
                "ship-remaining-logs",
                "stop-log-shipping",
                "recover-backup",
                "set-pool-state-failed-over",
                "mirror-backup",
                "activate-servers-failed-over",
                "verify"
            ]
        );
        let keys: Vec<String> = plan(Procedure::Failback)
            .into_iter()
            .map(Step::key)
            .collect();
        assert_eq!(keys[0], "clear-active-servers");
        assert_eq!(keys.last().map(String::as_str), Some("verify"));
        // Every key is unique within a plan (the journal relies on it).
        for p in [
            Procedure::Failover,
            Procedure::Failback,
            Procedure::SwitchoverToBackup,
        ] {
            let keys: std::collections::BTreeSet<String> =
                plan(p).into_iter().map(Step::key).collect();
            assert_eq!(keys.len(), plan(p).len());
        }
    }

    #[test]
    fn descriptions_name_the_servers() {
        let t = topology();
        assert!(Step::RecoverBackup.describe(&t).contains("db3"));
        assert!(Step::ActivateServers(PoolState::FailedOver)
            .describe(&t)
            .ends_with("dc2: chat3, chat4"));
        assert!(Step::MirrorBackup.describe(&t).contains("db3 to db4 (sync"));
    }

    #[test]
    fn a_journal_resumes_at_the_first_step_not_done() {
        let mut j = Journal::new(Procedure::Failover, 0);
        assert_eq!(j.next(), Some(Step::ShipRemainingLogs));
        j.done
            .insert(Step::ShipRemainingLogs.key(), serde_json::Value::Null);
        j.done
            .insert(Step::StopLogShipping.key(), serde_json::Value::Null);
        assert_eq!(j.next(), Some(Step::RecoverBackup));
        let text = serde_json::to_string(&j).unwrap();
        let back: Journal = serde_json::from_str(&text).unwrap();
        assert_eq!(back, j);
    }
}
