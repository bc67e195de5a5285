//! Views: what the journal's records say about a run, as plain data. Pure and
//! serialisable: `--output json` prints them as they are, and every format is made from them.

use std::collections::HashMap;
use std::fmt;

use ferry_document::RunDocument;
use ferry_journal::{Attempt, Event, EventKind, Move, Run, RunKind, RunState};
use ferry_model::{ClusterSpec, Phase, Status};
use ferry_preview::estimate::{makespan, MakespanLimits, PlannedMove};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::roll::RollView;

/// How many moves have each status, in the order of the design's status table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts(pub Vec<(Status, usize)>);

impl Counts {
    /// Counts `statuses`.
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Counts {
        let mut counts: Vec<(Status, usize)> = Vec::new();
        for status in statuses {
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => counts.push((status, 1)),
            }
        }
        counts.sort_by_key(|(s, _)| table_order(*s));
        Counts(counts)
    }
}

/// `6 SUCCESS, 1 FAILURE-WAIT`; `no moves` when empty.
impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no moves");
        }
        for (i, (status, n)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} {status}")?;
        }
        Ok(())
    }
}

/// A JSON object `{"SUCCESS": 6, "FAILURE-WAIT": 1}`, in the same order.
impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (status, n) in &self.0 {
            map.serialize_entry(status.name(), n)?;
        }
        map.end()
    }
}

/// A status's row in the design's status table (§5).
pub(crate) fn table_order(status: Status) -> u8 {
    match status {
        Status::Pending => 0,
        Status::PrecheckFailed => 1,
        Status::Queued => 2,
        Status::Migrating => 3,
        Status::Success => 4,
        Status::SuccessCold => 5,
        Status::FailureInit => 6,
        Status::FailureWait => 7,
        Status::FailureLost => 8,
        Status::Aborted => 9,
        Status::SkippedTimeout => 10,
        Status::SkippedDependency => 11,
        Status::SkippedNoPrevStatus => 12,
        Status::RolledBack => 13,
        Status::RollbackFailed => 14,
    }
}

/// Where a move goes in a report: the worst first (a VM that runs nowhere, then VMs left
/// on their source, then those never tried), then moves still going, then successes.
pub(crate) fn severity(status: Status) -> u8 {
    match status {
        Status::FailureLost | Status::RollbackFailed => 0,
        Status::FailureWait | Status::FailureInit | Status::PrecheckFailed => 1,
        Status::Aborted | Status::SkippedTimeout | Status::SkippedDependency | Status::SkippedNoPrevStatus => 2,
        Status::Migrating | Status::Queued | Status::Pending => 3,
        Status::Success | Status::SuccessCold | Status::RolledBack => 4,
    }
}

/// A run, as `ferry runs` lists it and `status` and `report` head it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    /// Run id.
    pub id: String,
    /// The plan's name.
    pub plan: String,
    /// What the run does.
    pub kind: RunKind,
    /// The run a rollback undoes.
    pub parent: Option<String>,
    /// Where the run is in its life.
    pub state: RunState,
    /// Who holds it (`host:pid`).
    pub owner: Option<String>,
    /// For a running run: whether its owner beat within the last 15 s. `None` for a run
    /// that is not running.
    pub owner_alive: Option<bool>,
    /// The owner's last heartbeat, ms since the epoch.
    pub heartbeat_ms: Option<i64>,
    /// Whether `ferry abort` asked it to stop.
    pub abort_requested: bool,
    /// ms since the epoch.
    pub created_ms: i64,
    /// ms since the epoch.
    pub finished_ms: Option<i64>,
    /// How many moves it has.
    pub moves: usize,
    /// Moves per status.
    pub counts: Counts,
}

/// The view of a run whose moves have `statuses`, at `now_ms`.
pub fn run_view(run: &Run, statuses: impl IntoIterator<Item = Status>, now_ms: i64) -> RunView {
    let counts = Counts::of(statuses);
    RunView {
        id: run.id.clone(),
        plan: run.plan_name.clone(),
        kind: run.kind,
        parent: run.parent.clone(),
        state: run.state,
        owner: run.owner.clone(),
        owner_alive: (run.state == RunState::Running).then(|| ferry_journal::owner_alive(run.heartbeat_ms, now_ms)),
        heartbeat_ms: run.heartbeat_ms,
        abort_requested: run.abort_requested,
        created_ms: run.created_ms,
        finished_ms: run.finished_ms,
        moves: counts.0.iter().map(|(_, n)| n).sum(),
        counts,
    }
}

/// `ferry status`: a run and where each of its VMs is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    /// The run.
    pub run: RunView,
    /// From its creation to its end, or to now while it has not ended.
    pub elapsed_ms: i64,
    /// Its moves, in plan order.
    pub vms: Vec<VmStatus>,
    /// A roll's hosts, in wave order (set by the caller, who reads its waves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roll: Option<RollView>,
}

/// One VM in `ferry status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmStatus {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// Host it started on.
    pub source: String,
    /// Target host; `None` while unplaced.
    pub target: Option<String>,
    /// Status.
    pub status: Status,
    /// The last phase begun.
    pub phase: Option<Phase>,
    /// Whether that phase was confirmed done.
    pub phase_done: bool,
    /// The latest thing said about it: its last message, decision or status message.
    pub message: String,
}

/// The status view of a run at `now_ms`; `events` are the run's, oldest first.
pub fn status_view(run: &Run, moves: &[Move], events: &[Event], now_ms: i64) -> StatusView {
    // One pass over the events, not one per move: a run has thousands of each.
    let mut latest: HashMap<&str, &Event> = HashMap::new();
    for e in events.iter().filter(|e| is_vm_message(e.kind)) {
        if let Some(uuid) = e.uuid.as_deref() {
            latest.insert(uuid, e);
        }
    }
    let vms = moves
        .iter()
        .map(|m| {
            let last = latest.get(m.uuid.as_str());
            // A status event reads "STATUS: message"; the status is on the line already.
            let message = match last {
                Some(e) if e.kind != EventKind::Status => e.message.clone(),
                _ => m.message.clone(),
            };
            VmStatus {
                vm: m.vm.clone(),
                uuid: m.uuid.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
                status: m.status,
                phase: m.phase,
                phase_done: m.phase_done,
                message,
            }
        })
        .collect();
    StatusView {
        run: run_view(run, moves.iter().map(|m| m.status), now_ms),
        elapsed_ms: run.finished_ms.unwrap_or(now_ms) - run.created_ms,
        vms,
        roll: None,
    }
}

/// The events a report tells as a VM's story.
pub(crate) fn is_vm_message(kind: EventKind) -> bool {
    matches!(kind, EventKind::Message | EventKind::Decision | EventKind::Status)
}

/// `ferry report`: everything the journal knows about a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The run.
    pub run: RunView,
    /// Its moves, failures first (worst first), each group in plan order.
    pub moves: Vec<MoveReport>,
    /// Totals.
    pub summary: Summary,
    /// What the run was started from.
    pub planned: Planned,
    /// When the report was made, ms since the epoch: attempts still open end here.
    pub generated_ms: i64,
    /// What happened to the run as a whole, in words: hooks (with their output in
    /// `data`), drained hosts, returns.
    pub notes: Vec<EventView>,
    /// Runs linked to this one: the run it undoes, and the rollbacks (returns) of it.
    pub legs: Vec<Leg>,
    /// A roll's hosts and VMs through its waves (see [`crate::roll::roll_view`]); only in
    /// the report of a roll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roll: Option<RollView>,
}

/// A run linked to the reported one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leg {
    /// `undoes` (this run is a rollback of it), `undone-by` (a rollback of this run, a
    /// drain's return), `part-of` (this run is a wave of that roll) or `wave` (a wave of
    /// this roll).
    pub relation: &'static str,
    /// The run.
    pub run: RunView,
    /// Its moves, in plan order.
    pub moves: Vec<VmStatus>,
}

/// How a leg's relation reads: "undoes", "undone by", "part of", "wave".
pub fn relation_words(relation: &str) -> &'static str {
    match relation {
        "undoes" => "undoes",
        "part-of" => "part of",
        "wave" => "wave",
        _ => "undone by",
    }
}

/// The legs of `run` among `runs`, with each leg's moves (`moves_of` reads them).
pub fn legs(run: &Run, runs: &[Run], mut moves_of: impl FnMut(&str) -> Vec<Move>, now_ms: i64) -> Vec<Leg> {
    runs.iter()
        .filter_map(|r| {
            let relation = if run.parent.as_deref() == Some(r.id.as_str()) {
                if r.kind == RunKind::Roll {
                    "part-of"
                } else {
                    "undoes"
                }
            } else if r.parent.as_deref() == Some(run.id.as_str()) {
                if run.kind == RunKind::Roll {
                    "wave"
                } else {
                    "undone-by"
                }
            } else {
                return None;
            };
            let moves = moves_of(&r.id);
            Some(Leg {
                relation,
                run: run_view(r, moves.iter().map(|m| m.status), now_ms),
                moves: status_view(r, &moves, &[], now_ms).vms,
            })
        })
        .collect()
}

/// What a run's documents (its plan and cluster as journaled) say that its records do not.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Planned {
    /// No move starts after this instant; ms since the epoch.
    pub deadline_ms: Option<i64>,
    /// The cluster's hosts, in the cluster file's order.
    pub hosts: Vec<String>,
    /// The preview's makespan under the plan's limits, for the moves that passed their
    /// checks and could be estimated; `None` when none could.
    pub estimated_makespan_ms: Option<i64>,
}

/// What run documents say beyond the records: the deadline, the cluster's hosts and the
/// preview's makespan of the moves that passed their checks and could be estimated.
pub fn planned(document: &RunDocument, cluster: &ClusterSpec, moves: &[Move]) -> Planned {
    let hosts = cluster.hosts.iter().map(|h| h.name.clone()).collect();
    let by_uuid: HashMap<&str, &Move> = moves.iter().map(|m| (m.uuid.as_str(), m)).collect();
    let batch: Vec<PlannedMove> = document
        .moves
        .iter()
        .filter_map(|spec| {
            let m = by_uuid.get(spec.uuid.as_str())?;
            if m.status == Status::PrecheckFailed {
                return None;
            }
            Some(PlannedMove {
                source: m.source.clone(),
                target: m.target.clone()?,
                // A move not expected to end has no total: left out, as the preview leaves it.
                seconds: spec.estimated_total_s()?,
                // The spec keeps the memory, not the disks: the order is about right.
                load_mib: spec.memory_mib as f64,
            })
        })
        .collect();
    let limits = &document.plan.limits;
    // The preview's own figure when the run kept it; else the older formula over the moves.
    let estimated_makespan_ms = document
        .estimated_makespan_s
        .filter(|_| !batch.is_empty())
        .or_else(|| {
            (!batch.is_empty()).then(|| {
                let limits = MakespanLimits {
                    cluster: limits.cluster,
                    per_source: limits.per_source,
                    per_target: limits.per_target,
                };
                makespan(&batch, &limits)
            })
        })
        .filter(|seconds| seconds.is_finite())
        .map(|seconds| (seconds * 1000.0).round() as i64);
    Planned { deadline_ms: document.plan.deadline.map(|s| s * 1000), hosts, estimated_makespan_ms }
}

/// One VM's move in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveReport {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// Host it started on.
    pub source: String,
    /// Target host.
    pub target: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Status.
    pub status: Status,
    /// The last phase begun.
    pub phase: Option<Phase>,
    /// The last status message.
    pub message: String,
    /// When it started: it first became MIGRATING, or its first attempt began; ms since
    /// the epoch.
    pub started_ms: Option<i64>,
    /// When it reached a terminal status, ms since the epoch.
    pub ended_ms: Option<i64>,
    /// Its attempts, in order.
    pub attempts: Vec<AttemptReport>,
    /// Its whole history, oldest first.
    pub events: Vec<EventView>,
}

/// One attempt in a report: the journal's record, and its estimate beside what happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptReport {
    /// The attempt as journaled.
    #[serde(flatten)]
    pub attempt: Attempt,
    /// The estimate's figures beside what happened.
    pub estimate_vs_actual: Vec<Comparison>,
}

/// One estimated figure beside the measured one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The estimate's key: `downtime_ms`, `total_s` or `transfer_s`.
    pub figure: &'static str,
    /// The estimate.
    pub estimate: f64,
    /// What was measured, in the same unit: downtime, wall time, job time.
    pub actual: Option<f64>,
}

/// One event in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// ms since the epoch.
    pub at_ms: i64,
    /// ms since the run was created.
    pub since_start_ms: i64,
    /// What it records.
    pub kind: EventKind,
    /// In words.
    pub message: String,
    /// Figures.
    pub data: Option<Value>,
}

/// A run's totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Moves.
    pub moves: usize,
    /// Moves per status.
    pub counts: Counts,
    /// Whether every move succeeded (the report's exit code is 0).
    pub all_succeeded: bool,
    /// Attempts over all moves.
    pub attempts: usize,
    /// The first move's start, ms since the epoch.
    pub first_start_ms: Option<i64>,
    /// The last move's end, ms since the epoch.
    pub last_end_ms: Option<i64>,
    /// From the first start to the last end.
    pub makespan_ms: Option<i64>,
    /// The longest downtime any attempt saw.
    pub worst_downtime_ms: Option<u64>,
    /// The VM that saw it.
    pub worst_downtime_vm: Option<String>,
    /// Bytes transferred by every attempt.
    pub bytes: u64,
}

/// The report of a run from its records, at `now_ms`. `attempts` and `events` are the
/// run's, in the journal's order; `planned` what its documents say (see [`planned`]).
pub fn build_report(
    run: &Run,
    moves: &[Move],
    attempts: &[Attempt],
    events: Vec<Event>,
    planned: Planned,
    now_ms: i64,
) -> Report {
    // Grouped once by VM: a run has thousands of moves and tens of thousands of events.
    let mut attempts_of: HashMap<&str, Vec<&Attempt>> = HashMap::new();
    for a in attempts {
        attempts_of.entry(a.uuid.as_str()).or_default().push(a);
    }
    // Taken, not copied: a 3,000-move run's events are 60 MB as records.
    let mut events_of: HashMap<String, Vec<Event>> = HashMap::new();
    let mut notes = Vec::new();
    for mut e in events {
        match e.uuid.take() {
            Some(uuid) => events_of.entry(uuid).or_default().push(e),
            None if e.kind == EventKind::Message => notes.push(event_view(run, e)),
            None => {}
        }
    }
    let mut reports: Vec<(i64, MoveReport)> = moves
        .iter()
        .map(|m| {
            let mut own = attempts_of.remove(m.uuid.as_str()).unwrap_or_default();
            own.sort_by_key(|a| a.number);
            let first_attempt = own.iter().map(|a| a.started_ms).min();
            let report = MoveReport {
                vm: m.vm.clone(),
                uuid: m.uuid.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
                group: m.group.clone(),
                status: m.status,
                phase: m.phase,
                message: m.message.clone(),
                started_ms: match (m.started_ms, first_attempt) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                ended_ms: m.ended_ms,
                attempts: own.into_iter().map(attempt_report).collect(),
                events: events_of
                    .remove(m.uuid.as_str())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| event_view(run, e))
                    .collect(),
            };
            (m.seq, report)
        })
        .collect();
    reports.sort_by_key(|(seq, m)| (severity(m.status), *seq));
    let moves: Vec<MoveReport> = reports.into_iter().map(|(_, m)| m).collect();
    let summary = summarize(&moves);
    Report {
        run: run_view(run, moves.iter().map(|m| m.status), now_ms),
        moves,
        summary,
        planned,
        generated_ms: now_ms,
        notes,
        legs: Vec::new(),
        roll: None,
    }
}

fn event_view(run: &Run, e: Event) -> EventView {
    EventView {
        at_ms: e.at_ms,
        since_start_ms: e.at_ms - run.created_ms,
        kind: e.kind,
        message: e.message,
        data: e.data,
    }
}

pub(crate) fn attempt_report(a: &Attempt) -> AttemptReport {
    let estimate_vs_actual = match &a.estimate {
        Some(Value::Object(estimate)) => {
            let ms = |v: Option<u64>| v.map(|v| v as f64);
            let s = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
            [("downtime_ms", ms(a.downtime_ms)), ("total_s", s(a.wall_ms)), ("transfer_s", s(a.job_ms))]
                .into_iter()
                .filter_map(|(figure, actual)| {
                    let estimate = estimate.get(figure)?.as_f64()?;
                    Some(Comparison { figure, estimate, actual })
                })
                .collect()
        }
        _ => Vec::new(),
    };
    AttemptReport { attempt: a.clone(), estimate_vs_actual }
}

fn summarize(moves: &[MoveReport]) -> Summary {
    let first_start_ms = moves.iter().filter_map(|m| m.started_ms).min();
    // Only moves that started count: a move refused by its checks ends without starting.
    let last_end_ms = moves.iter().filter(|m| m.started_ms.is_some()).filter_map(|m| m.ended_ms).max();
    let worst = moves
        .iter()
        .flat_map(|m| m.attempts.iter().map(move |a| (a.attempt.downtime_ms, &m.vm)))
        .filter_map(|(downtime, vm)| downtime.map(|d| (d, vm)))
        .max_by_key(|(downtime, _)| *downtime);
    Summary {
        moves: moves.len(),
        counts: Counts::of(moves.iter().map(|m| m.status)),
        all_succeeded: moves.iter().all(|m| m.status.is_success()),
        attempts: moves.iter().map(|m| m.attempts.len()).sum(),
        first_start_ms,
        last_end_ms,
        makespan_ms: match (first_start_ms, last_end_ms) {
            (Some(first), Some(last)) => Some(last - first),
            _ => None,
        },
        worst_downtime_ms: worst.map(|(d, _)| d),
        worst_downtime_vm: worst.map(|(_, vm)| vm.clone()),
        bytes: moves.iter().flat_map(|m| &m.attempts).filter_map(|a| a.attempt.bytes).sum(),
    }
}
