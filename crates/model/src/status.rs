//! Per-VM statuses and the phases of one move.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The outcome of one VM in a run. Terminal unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Status {
    /// Planned, not started (not terminal).
    Pending,
    /// A check failed; never started.
    PrecheckFailed,
    /// Waiting for a slot (not terminal).
    Queued,
    /// Transfer in progress (not terminal).
    Migrating,
    /// Live migration completed; the VM runs on the target.
    Success,
    /// Moved by the cold path: the VM was restarted on the target.
    SuccessCold,
    /// Could not start; the VM is untouched on its source.
    FailureInit,
    /// Started but did not complete; the VM runs on its source.
    FailureWait,
    /// The VM runs nowhere or in two places: needs `cleanup`.
    FailureLost,
    /// Stopped by the operator.
    Aborted,
    /// Not started before the deadline.
    SkippedTimeout,
    /// An earlier member of its group failed.
    SkippedDependency,
    /// Gated by a previous run where it was absent.
    SkippedNoPrevStatus,
    /// Returned to its original host by `rollback`.
    RolledBack,
    /// `rollback` could not return it.
    RollbackFailed,
}

const NAMES: [(Status, &str); 15] = [
    (Status::Pending, "PENDING"),
    (Status::PrecheckFailed, "PRECHECK-FAILED"),
    (Status::Queued, "QUEUED"),
    (Status::Migrating, "MIGRATING"),
    (Status::Success, "SUCCESS"),
    (Status::SuccessCold, "SUCCESS-COLD"),
    (Status::FailureInit, "FAILURE-INIT"),
    (Status::FailureWait, "FAILURE-WAIT"),
    (Status::FailureLost, "FAILURE-LOST"),
    (Status::Aborted, "ABORTED"),
    (Status::SkippedTimeout, "SKIPPED-TIMEOUT"),
    (Status::SkippedDependency, "SKIPPED-DEPENDENCY"),
    (Status::SkippedNoPrevStatus, "SKIPPED-NO-PREV-STATUS"),
    (Status::RolledBack, "ROLLED-BACK"),
    (Status::RollbackFailed, "ROLLBACK-FAILED"),
];

impl Status {
    /// Whether the VM is where it was meant to end up.
    pub fn is_success(self) -> bool {
        matches!(self, Status::Success | Status::SuccessCold | Status::RolledBack)
    }

    /// Whether nothing more will happen to this VM in its run.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Pending | Status::Queued | Status::Migrating)
    }

    /// The status's name as printed and journaled.
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(s, _)| *s == self).map(|(_, n)| *n).unwrap_or("?")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        NAMES.iter().find(|(_, n)| *n == s).map(|(status, _)| *status).ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// The phases of one VM's move, each journaled before its side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Checks passed.
    Prechecked,
    /// Target volumes created, metadata written: reversible.
    Prepared,
    /// The migration job runs: abortable, the VM still runs on its source.
    Transferring,
    /// The VM runs on the target: the point of no return.
    SwitchedOver,
    /// Verified where it runs, source resources released.
    Finalized,
}

impl Phase {
    /// The phase's name as written in domain metadata.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prechecked => "prechecked",
            Phase::Prepared => "prepared",
            Phase::Transferring => "transferring",
            Phase::SwitchedOver => "switched-over",
            Phase::Finalized => "finalized",
        }
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        [Phase::Prechecked, Phase::Prepared, Phase::Transferring, Phase::SwitchedOver, Phase::Finalized]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown phase {s:?}"))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for (status, name) in NAMES {
            assert_eq!(status.to_string(), name);
            assert_eq!(name.parse::<Status>(), Ok(status));
        }
    }

    #[test]
    fn terminal_and_success() {
        assert!(!Status::Migrating.is_terminal());
        assert!(Status::FailureWait.is_terminal());
        assert!(Status::SuccessCold.is_success());
        assert!(!Status::FailureInit.is_success());
    }
}
