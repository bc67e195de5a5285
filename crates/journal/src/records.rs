//! The records the journal keeps, as callers write and read them.

use std::fmt;
use std::str::FromStr;

use ferry_model::{Compression, Phase, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Declares a fieldless enum stored as text: `name()`, `Display`, `FromStr`.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name as stored and printed.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), s)),
                }
            }
        }
    };
}

text_enum! {
    /// What a run does.
    pub enum RunKind {
        /// Runs a plan's moves.
        Migrate => "migrate",
        /// Returns every VM a previous run moved to its original host; `parent` names that run.
        Rollback => "rollback",
        /// Empties a host.
        Drain => "drain",
        /// Rolling maintenance: its waves are drain runs whose `parent` names it.
        Roll => "roll",
    }
}

text_enum! {
    /// Where a run is in its life.
    pub enum RunState {
        /// A ferry process is (or was, until it died) working on it.
        Running => "running",
        /// Stopped before all its moves ended (Ctrl-C, deadline, crash found by `resume`); resumable.
        Stopped => "stopped",
        /// Every move has a terminal status.
        Finished => "finished",
        /// The operator aborted it; every VM is on a known host.
        Aborted => "aborted",
    }
}

impl RunState {
    /// Whether nothing more will happen in this run.
    pub fn is_ended(self) -> bool {
        matches!(self, RunState::Finished | RunState::Aborted)
    }
}

text_enum! {
    /// How an attempt moves its VM.
    pub enum AttemptKind {
        /// Live migration.
        Live => "live",
        /// Shut down, copy, start on the target.
        Cold => "cold",
    }
}

text_enum! {
    /// What an event records.
    pub enum EventKind {
        /// A run was created or changed state.
        Run => "run",
        /// An abort was requested.
        Abort => "abort",
        /// A move's status changed; the message says why.
        Status => "status",
        /// A phase was begun (before its side effect) or confirmed (after it).
        Phase => "phase",
        /// A move's target was set (placement of `ANY`).
        Target => "target",
        /// An attempt started or ended.
        Attempt => "attempt",
        /// Something happened to a VM, in words.
        Message => "message",
        /// A convergence decision (downtime, bandwidth, post-copy, abort) and its reason.
        Decision => "decision",
        /// A step of a move's saga, begun (before its effect) or ended (after it).
        Step => "step",
    }
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// The plan's name.
    pub plan_name: String,
    /// The plan as resolved, so `resume` needs no file.
    pub plan: Value,
    /// The cluster file as read, so `resume`, `rollback` and `cleanup` reach the same hosts.
    pub cluster: Value,
    /// What the run does.
    pub kind: RunKind,
    /// The run a rollback undoes.
    pub parent: Option<String>,
}

/// A run as journaled (without its plan and cluster: see [`RunDocuments`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Sortable id, `r-YYYYMMDD-HHMMSS-xxxx` (UTC).
    pub id: String,
    /// The plan's name.
    pub plan_name: String,
    /// What the run does.
    pub kind: RunKind,
    /// The run a rollback undoes.
    pub parent: Option<String>,
    /// Where the run is in its life.
    pub state: RunState,
    /// Whether `ferry abort` asked it to stop.
    pub abort_requested: bool,
    /// Who holds the run (`host:pid`), set by [`claim`](crate::Journal::claim).
    pub owner: Option<String>,
    /// The owner's last sign of life, ms since the epoch.
    pub heartbeat_ms: Option<i64>,
    /// ms since the epoch.
    pub created_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
    /// When it finished or was aborted, ms since the epoch.
    pub finished_ms: Option<i64>,
    /// Compare-and-swap generation.
    pub generation: i64,
}

/// The documents a run was started from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDocuments {
    /// The plan as resolved.
    pub plan: Value,
    /// The cluster file.
    pub cluster: Value,
}

/// A move to add to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMove {
    /// VM name.
    pub vm: String,
    /// VM UUID: the move's key within its run.
    pub uuid: String,
    /// The host it is on when the run starts (where `rollback` returns it).
    pub source: String,
    /// Target host; `None` for `ANY` until placed.
    pub target: Option<String>,
    /// The group it moves with, one member at a time.
    pub group: Option<String>,
    /// Its position in the plan (within a group: its turn).
    pub seq: i64,
    /// Higher moves first.
    pub priority: i64,
    /// Usually [`Status::Pending`]; a terminal status (e.g. `PRECHECK-FAILED`) when it never runs.
    pub status: Status,
    /// Why it has that status; empty when there is nothing to say.
    pub message: String,
}

/// One VM's move in a run, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    /// Run id.
    pub run: String,
    /// VM UUID.
    pub uuid: String,
    /// VM name.
    pub vm: String,
    /// Host the VM was on when the run started.
    pub source: String,
    /// Target host; `None` while `ANY` is unplaced.
    pub target: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Position in the plan.
    pub seq: i64,
    /// Priority.
    pub priority: i64,
    /// Status.
    pub status: Status,
    /// The last phase begun, if any.
    pub phase: Option<Phase>,
    /// Whether that phase's side effect was confirmed done.
    pub phase_done: bool,
    /// The last status message.
    pub message: String,
    /// When it first became `MIGRATING`, ms since the epoch.
    pub started_ms: Option<i64>,
    /// When it reached a terminal status, ms since the epoch.
    pub ended_ms: Option<i64>,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
    /// Compare-and-swap generation.
    pub generation: i64,
}

/// An attempt to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAttempt {
    /// Live or cold.
    pub kind: AttemptKind,
    /// The host it moves the VM to.
    pub target: String,
    /// The preview's estimate for it, to compare with what happened.
    pub estimate: Option<Value>,
    /// How its migration stream is compressed; `None` for a plain stream or a cold move.
    pub compression: Option<Compression>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    /// The status it gives the VM (`SUCCESS`, `FAILURE-WAIT`, …).
    pub outcome: Status,
    /// What happened, in words.
    pub message: String,
    /// Wall time as measured by the caller (monotonic clock); `None`: from the timestamps.
    pub wall_ms: Option<u64>,
    /// The hypervisor job's time.
    pub job_ms: Option<u64>,
    /// Downtime (blackout) the VM saw.
    pub downtime_ms: Option<u64>,
    /// Bytes transferred.
    pub bytes: Option<u64>,
    /// Memory passes.
    pub passes: Option<u32>,
    /// Guest memory the migration carried (normal pages' bytes), when the hypervisor said.
    pub memory_bytes: Option<u64>,
    /// Bytes it sent for that memory, when the hypervisor said.
    pub memory_sent_bytes: Option<u64>,
}

/// One attempt to move a VM, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// Run id.
    pub run: String,
    /// VM UUID.
    pub uuid: String,
    /// 1, 2, … within the move.
    pub number: u32,
    /// Live or cold.
    pub kind: AttemptKind,
    /// Where it moved the VM to.
    pub target: String,
    /// ms since the epoch.
    pub started_ms: i64,
    /// ms since the epoch; `None` while it runs (or if ferry died during it).
    pub ended_ms: Option<i64>,
    /// The status it gave the VM.
    pub outcome: Option<Status>,
    /// What happened, in words.
    pub message: String,
    /// Wall time.
    pub wall_ms: Option<u64>,
    /// Hypervisor job time.
    pub job_ms: Option<u64>,
    /// Downtime.
    pub downtime_ms: Option<u64>,
    /// Bytes transferred.
    pub bytes: Option<u64>,
    /// Memory passes.
    pub passes: Option<u32>,
    /// The estimate it started with.
    pub estimate: Option<Value>,
    /// How its stream was compressed; `None`: plain or cold.
    pub compression: Option<Compression>,
    /// Guest memory the migration carried.
    pub memory_bytes: Option<u64>,
    /// Bytes sent for that memory.
    pub memory_sent_bytes: Option<u64>,
}

impl Attempt {
    /// Guest memory carried per byte sent, when both figures are known and not zero.
    pub fn memory_per_byte_sent(&self) -> Option<f64> {
        match (self.memory_bytes, self.memory_sent_bytes) {
            (Some(carried), Some(sent)) if carried > 0 && sent > 0 => Some(carried as f64 / sent as f64),
            _ => None,
        }
    }
}

/// One line of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Increasing over the whole journal.
    pub id: i64,
    /// Run id.
    pub run: String,
    /// The VM it is about; `None` for the run itself.
    pub uuid: Option<String>,
    /// ms since the epoch.
    pub at_ms: i64,
    /// What it records.
    pub kind: EventKind,
    /// In words.
    pub message: String,
    /// Figures, for reports and benchmarks.
    pub data: Option<Value>,
}

impl Attempt {
    /// When the attempt stopped holding its slots (cluster, source, target): at the
    /// switch-over its `events` record, or at its end. `None` while it runs.
    pub fn slot_freed_ms(&self, events: &[Event]) -> Option<i64> {
        let switched = events.iter().find(|e| {
            e.kind == EventKind::Phase
                && e.uuid.as_deref() == Some(self.uuid.as_str())
                && e.at_ms >= self.started_ms
                && self.ended_ms.is_none_or(|end| e.at_ms <= end)
                && e.data.as_ref().is_some_and(|d| d["phase"] == Phase::SwitchedOver.name() && d["done"] == false)
        });
        switched.map(|e| e.at_ms).or(self.ended_ms)
    }
}
