//! `ferry runs`, `ferry status` and `ferry report`: what the journal says about runs.
//! Read-only: they never create a journal or change one.
//!
//! Reading and printing are kept apart. The commands read the journal's records;
//! `run_view`, `status_view` and `build_report` turn them into plain views (pure and
//! serialisable: `--output json` prints them as they are); the `format_*` functions turn
//! views into text (pure, unit-tested below).

use std::fmt;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_journal::{Attempt, AttemptKind, Event, EventKind, Journal, JournalError, Move, Run, RunKind, RunState};
use ferry_model::{Phase, Status};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::state::{self, StateArg};
use crate::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

// ------------------------------------------------------------------ arguments

/// `ferry runs` arguments.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub state: StateArg,
}

/// `ferry status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The run (`ferry runs` lists them). Default: the latest.
    pub run: Option<String>,
    #[command(flatten)]
    pub state: StateArg,
}

/// `ferry report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run (`ferry runs` lists them).
    pub run: String,
    /// table: a summary, then a block per VM, failures first; json: the run, every move
    /// with its attempts and events, and the summary; csv: one row per VM (downtime and
    /// passes of its last attempt, bytes of all its attempts). Default: table, or json
    /// with `--output json`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    #[command(flatten)]
    pub state: StateArg,
}

/// How `ferry report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text for people.
    Table,
    /// Everything, for programs.
    Json,
    /// One row per VM, for spreadsheets.
    Csv,
}

/// The report's format from `--format` and the global `--output`: `--output json` means
/// `--format json`, and contradicting it is bad input.
pub fn report_format(format: Option<Format>, output: Output) -> Result<Format, String> {
    match (format, output) {
        (None, Output::Text) => Ok(Format::Table),
        (None, Output::Json) | (Some(Format::Json), _) => Ok(Format::Json),
        (Some(format), Output::Text) => Ok(format),
        (Some(format), Output::Json) => Err(format!(
            "--format {} contradicts --output json; give one of them",
            match format {
                Format::Table => "table",
                Format::Json => "json",
                Format::Csv => "csv",
            }
        )),
    }
}

// ------------------------------------------------------------------ commands

/// Why a command could not print what was asked: bad input (exit 2) or a journal that
/// could not be read (exit 1).
enum Failure {
    BadInput(String),
    Failed(String),
}

impl Failure {
    fn exit(self, command: &str) -> ExitCode {
        let (text, code) = match self {
            Failure::BadInput(text) => (text, EXIT_BAD_INPUT),
            Failure::Failed(text) => (text, EXIT_FAILURE),
        };
        eprintln!("ferry {command}: {text}");
        ExitCode::from(code)
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Failure {
        Failure::Failed(state::chain(&e))
    }
}

/// Runs `ferry runs`.
pub async fn runs(args: RunsArgs, output: Output) -> ExitCode {
    let listed = async {
        let journal = args.state.open_existing().await.map_err(Failure::BadInput)?;
        let now = now_ms();
        let mut views = Vec::new();
        for run in journal.runs().await? {
            let moves = journal.moves(&run.id).await?;
            views.push(run_view(&run, moves.iter().map(|m| m.status), now));
        }
        Ok::<_, Failure>(views)
    };
    match listed.await {
        Ok(views) => {
            match output {
                Output::Json => println!("{}", to_json(&views)),
                Output::Text => print!("{}", format_runs(&views)),
            }
            ExitCode::SUCCESS
        }
        Err(failure) => failure.exit("runs"),
    }
}

/// Runs `ferry status`: always exit 0 when the run could be read.
pub async fn status(args: StatusArgs, output: Output) -> ExitCode {
    let read = async {
        let journal = args.state.open_existing().await.map_err(Failure::BadInput)?;
        let run = match &args.run {
            Some(id) => find_run(&journal, id).await?,
            None => journal
                .latest_run()
                .await?
                .ok_or_else(|| Failure::BadInput(format!("no runs in the journal at {}", journal.location())))?,
        };
        let moves = journal.moves(&run.id).await?;
        let events = journal.events(&run.id, None).await?;
        Ok::<_, Failure>(status_view(&run, &moves, &events, now_ms()))
    };
    match read.await {
        Ok(view) => {
            match output {
                Output::Json => println!("{}", to_json(&view)),
                Output::Text => print!("{}", format_status(&view)),
            }
            ExitCode::SUCCESS
        }
        Err(failure) => failure.exit("status"),
    }
}

/// Runs `ferry report`: exit 0 when every move succeeded, 1 otherwise.
pub async fn report(args: ReportArgs, output: Output) -> ExitCode {
    let read = async {
        let format = report_format(args.format, output).map_err(Failure::BadInput)?;
        let journal = args.state.open_existing().await.map_err(Failure::BadInput)?;
        let run = find_run(&journal, &args.run).await?;
        let moves = journal.moves(&run.id).await?;
        let attempts = journal.attempts(&run.id).await?;
        let events = journal.events(&run.id, None).await?;
        let mut report = build_report(&run, &moves, &attempts, &events, now_ms());
        let all = journal.runs().await?;
        let mut linked = std::collections::HashMap::new();
        for r in all
            .iter()
            .filter(|r| r.parent.as_deref() == Some(run.id.as_str()) || run.parent.as_deref() == Some(r.id.as_str()))
        {
            linked.insert(r.id.clone(), journal.moves(&r.id).await?);
        }
        report.legs = legs(&run, &all, |id| linked.remove(id).unwrap_or_default(), now_ms());
        let text = match format {
            Format::Table => format_report(&report),
            Format::Json => format!("{}\n", to_json(&report)),
            Format::Csv => report_csv(&report).map_err(|e| Failure::Failed(format!("cannot write the CSV: {e}")))?,
        };
        Ok::<_, Failure>((report.summary.all_succeeded, text))
    };
    match read.await {
        Ok((all_succeeded, text)) => {
            print!("{text}");
            if all_succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
        Err(failure) => failure.exit("report"),
    }
}

/// The run `id`, or bad input naming the closest id the journal has.
async fn find_run(journal: &Journal, id: &str) -> Result<Run, Failure> {
    match journal.run(id).await {
        Ok(run) => Ok(run),
        Err(JournalError::RunNotFound { .. }) => {
            let ids: Vec<String> = journal.runs().await?.into_iter().map(|r| r.id).collect();
            let mut text = format!("no run {id} in the journal at {}", journal.location());
            match ferry_plan::closest(id, ids.iter().map(String::as_str)) {
                Some(near) => text.push_str(&format!("; did you mean {near}?")),
                None if ids.is_empty() => text.push_str(": it holds no runs"),
                None => text.push_str("; `ferry runs` lists them"),
            }
            Err(Failure::BadInput(text))
        }
        Err(e) => Err(e.into()),
    }
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("views are plain data and serialise")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// ------------------------------------------------------------------ views

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
fn table_order(status: Status) -> u8 {
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
fn severity(status: Status) -> u8 {
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
        owner_alive: (run.state == RunState::Running).then(|| state::owner_alive(run.heartbeat_ms, now_ms)),
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
    let vms = moves
        .iter()
        .map(|m| {
            let last =
                events.iter().rev().find(|e| e.uuid.as_deref() == Some(m.uuid.as_str()) && is_vm_message(e.kind));
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
    }
}

/// The events a report tells as a VM's story.
fn is_vm_message(kind: EventKind) -> bool {
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
    /// What happened to the run as a whole, in words: hooks (with their output in
    /// `data`), drained hosts, returns.
    pub notes: Vec<EventView>,
    /// Runs linked to this one: the run it undoes, and the rollbacks (returns) of it.
    pub legs: Vec<Leg>,
}

/// A run linked to the reported one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leg {
    /// `undoes` (this run is a rollback of it) or `undone-by` (a rollback of this run).
    pub relation: &'static str,
    /// The run.
    pub run: RunView,
    /// Its moves, in plan order.
    pub moves: Vec<VmStatus>,
}

/// The legs of `run` among `runs`, with each leg's moves (`moves_of` reads them).
pub fn legs(run: &Run, runs: &[Run], mut moves_of: impl FnMut(&str) -> Vec<Move>, now_ms: i64) -> Vec<Leg> {
    runs.iter()
        .filter_map(|r| {
            let relation = if run.parent.as_deref() == Some(r.id.as_str()) {
                "undoes"
            } else if r.parent.as_deref() == Some(run.id.as_str()) {
                "undone-by"
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

/// One attempt in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptReport {
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
    /// The status it gave the VM; `None` while it runs.
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
    /// The preview's estimate, as journaled.
    pub estimate: Option<Value>,
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
/// run's, in the journal's order.
pub fn build_report(run: &Run, moves: &[Move], attempts: &[Attempt], events: &[Event], now_ms: i64) -> Report {
    let mut reports: Vec<(i64, MoveReport)> = moves
        .iter()
        .map(|m| {
            let mut own: Vec<&Attempt> = attempts.iter().filter(|a| a.uuid == m.uuid).collect();
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
                events: events
                    .iter()
                    .filter(|e| e.uuid.as_deref() == Some(m.uuid.as_str()))
                    .map(|e| EventView {
                        at_ms: e.at_ms,
                        since_start_ms: e.at_ms - run.created_ms,
                        kind: e.kind,
                        message: e.message.clone(),
                        data: e.data.clone(),
                    })
                    .collect(),
            };
            (m.seq, report)
        })
        .collect();
    reports.sort_by_key(|(seq, m)| (severity(m.status), *seq));
    let moves: Vec<MoveReport> = reports.into_iter().map(|(_, m)| m).collect();
    let summary = summarize(&moves);
    let notes = events
        .iter()
        .filter(|e| e.uuid.is_none() && e.kind == EventKind::Message)
        .map(|e| EventView {
            at_ms: e.at_ms,
            since_start_ms: e.at_ms - run.created_ms,
            kind: e.kind,
            message: e.message.clone(),
            data: e.data.clone(),
        })
        .collect();
    Report { run: run_view(run, moves.iter().map(|m| m.status), now_ms), moves, summary, notes, legs: Vec::new() }
}

fn attempt_report(a: &Attempt) -> AttemptReport {
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
    AttemptReport {
        number: a.number,
        kind: a.kind,
        target: a.target.clone(),
        started_ms: a.started_ms,
        ended_ms: a.ended_ms,
        outcome: a.outcome,
        message: a.message.clone(),
        wall_ms: a.wall_ms,
        job_ms: a.job_ms,
        downtime_ms: a.downtime_ms,
        bytes: a.bytes,
        passes: a.passes,
        estimate: a.estimate.clone(),
        estimate_vs_actual,
    }
}

fn summarize(moves: &[MoveReport]) -> Summary {
    let first_start_ms = moves.iter().filter_map(|m| m.started_ms).min();
    // Only moves that started count: a move refused by its checks ends without starting.
    let last_end_ms = moves.iter().filter(|m| m.started_ms.is_some()).filter_map(|m| m.ended_ms).max();
    let worst = moves
        .iter()
        .flat_map(|m| m.attempts.iter().map(move |a| (a.downtime_ms, &m.vm)))
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
        bytes: moves.iter().flat_map(|m| &m.attempts).filter_map(|a| a.bytes).sum(),
    }
}

// ------------------------------------------------------------------ text

/// `ferry runs`: a table, newest first.
pub fn format_runs(runs: &[RunView]) -> String {
    if runs.is_empty() {
        return "no runs\n".to_owned();
    }
    let mut rows = vec![["RUN", "PLAN", "KIND", "STATE", "CREATED", "FINISHED", "MOVES"].map(String::from).to_vec()];
    for run in runs {
        rows.push(vec![
            run.id.clone(),
            run.plan.clone(),
            run.kind.to_string(),
            state_text(run),
            utc(run.created_ms),
            run.finished_ms.map_or_else(|| "-".to_owned(), utc),
            run.counts.to_string(),
        ]);
    }
    table(&rows)
}

/// A run's state in words, with what to do about a run nobody is running.
fn state_text(run: &RunView) -> String {
    let mut text = match (run.state, run.owner_alive) {
        (RunState::Running, Some(true)) => format!("running (owner {}, alive)", run.owner.as_deref().unwrap_or("?")),
        (RunState::Running, _) => format!("running (owner gone: `ferry resume {}`)", run.id),
        (RunState::Stopped, _) => format!("stopped (resumable: `ferry resume {}`)", run.id),
        (state, _) => state.to_string(),
    };
    if run.abort_requested && !run.state.is_ended() {
        text.push_str(", abort requested");
    }
    text
}

/// The header shared by `status` and `report`.
fn format_header(run: &RunView, out: &mut String) {
    let parent = run.parent.as_deref().map(|p| format!(" of run {p}")).unwrap_or_default();
    out.push_str(&format!("run {}  plan {}  ({}{parent})\n", run.id, run.plan, run.kind));
    out.push_str(&format!("state    {}\n", state_text(run)));
}

/// `ferry status` as text.
pub fn format_status(view: &StatusView) -> String {
    let run = &view.run;
    let mut out = String::new();
    format_header(run, &mut out);
    let took = if run.state.is_ended() {
        format!("took {}", duration(view.elapsed_ms))
    } else {
        format!("elapsed {}", duration(view.elapsed_ms))
    };
    out.push_str(&format!("created  {}, {took}\n", utc(run.created_ms)));
    out.push_str(&format!("moves    {}: {}\n", run.moves, run.counts));
    if view.vms.is_empty() {
        return out;
    }
    out.push('\n');
    let mut rows = vec![["VM", "MOVE", "STATUS", "PHASE", "MESSAGE"].map(String::from).to_vec()];
    for vm in &view.vms {
        // A phase says where a move is while it is under way; after, the status does.
        let phase = match vm.phase {
            Some(phase) if !vm.status.is_terminal() => {
                let done = if vm.phase_done { "" } else { " (begun)" };
                format!("{phase}{done}")
            }
            _ => "-".to_owned(),
        };
        rows.push(vec![
            vm.vm.clone(),
            route(&vm.source, vm.target.as_deref()),
            vm.status.to_string(),
            phase,
            vm.message.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

/// `ferry report` as text: the summary, then a block per VM, failures first.
pub fn format_report(report: &Report) -> String {
    let run = &report.run;
    let s = &report.summary;
    let mut out = String::new();
    format_header(run, &mut out);
    let finished = run.finished_ms.map(|f| format!(", finished {}", utc(f))).unwrap_or_default();
    out.push_str(&format!("created  {}{finished}\n", utc(run.created_ms)));
    out.push_str(&format!("moves    {}: {}; {} attempts\n", s.moves, s.counts, s.attempts));
    let makespan = match (s.makespan_ms, s.first_start_ms, s.last_end_ms) {
        (Some(span), Some(first), Some(last)) => {
            format!("{} ({} to {})", duration(span), utc(first), utc(last))
        }
        _ => "-".to_owned(),
    };
    out.push_str(&format!("makespan {makespan}\n"));
    let worst = match (s.worst_downtime_ms, &s.worst_downtime_vm) {
        (Some(ms), Some(vm)) => format!("{ms} ms ({vm})"),
        _ => "-".to_owned(),
    };
    out.push_str(&format!("downtime worst {worst}\n"));
    out.push_str(&format!("bytes    {} transferred\n", mib(s.bytes)));
    if !report.notes.is_empty() {
        out.push_str("\nrun\n");
        for n in &report.notes {
            out.push_str(&format!("  {}: {}\n", duration(n.since_start_ms), n.message));
            out.push_str(&hook_output(n.data.as_ref(), "    "));
        }
    }
    for leg in &report.legs {
        let what = match leg.relation {
            "undoes" => "undoes",
            _ => "undone by",
        };
        out.push_str(&format!(
            "\n{what} run {} ({}): {}, {}\n",
            leg.run.id,
            leg.run.kind,
            state_text(&leg.run),
            leg.run.counts
        ));
        let rows: Vec<Vec<String>> = leg
            .moves
            .iter()
            .map(|m| {
                vec![
                    format!("  {}", m.vm),
                    route(&m.source, m.target.as_deref()),
                    m.status.to_string(),
                    m.message.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&rows));
    }
    for m in &report.moves {
        out.push('\n');
        format_move(m, &mut out);
    }
    out
}

fn format_move(m: &MoveReport, out: &mut String) {
    let group = m.group.as_deref().map(|g| format!("  group {g}")).unwrap_or_default();
    out.push_str(&format!("{}  {}  {}{group}\n", m.vm, m.status, route(&m.source, m.target.as_deref())));
    match (m.started_ms, m.ended_ms) {
        (Some(start), Some(end)) => {
            out.push_str(&format!("  start {}  end {}  ({})\n", utc(start), utc(end), duration(end - start)))
        }
        (Some(start), None) => out.push_str(&format!("  start {}  not ended\n", utc(start))),
        (None, _) => out.push_str("  not started\n"),
    }
    for a in &m.attempts {
        let outcome = a.outcome.map_or_else(|| "not ended".to_owned(), |o| o.to_string());
        let figures = [
            a.wall_ms.map(|v| format!("wall {}", duration(to_i64(v)))),
            a.job_ms.map(|v| format!("job {}", duration(to_i64(v)))),
            a.downtime_ms.map(|v| format!("downtime {v} ms")),
            a.bytes.map(mib),
            a.passes.map(|p| format!("{p} passes")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        out.push_str(&format!("  attempt {}  {} -> {}  {outcome}  {figures}\n", a.number, a.kind, a.target));
        if !a.message.is_empty() {
            out.push_str(&format!("    {}\n", a.message));
        }
        if !a.estimate_vs_actual.is_empty() {
            let compared: Vec<String> = a.estimate_vs_actual.iter().map(comparison).collect();
            out.push_str(&format!("    estimate vs actual: {}\n", compared.join(", ")));
        }
    }
    let mut told = false;
    for e in m.events.iter().filter(|e| is_vm_message(e.kind)) {
        out.push_str(&format!("  {}: {}\n", duration(e.since_start_ms), e.message));
        out.push_str(&hook_output(e.data.as_ref(), "    "));
        told = true;
    }
    // A move given its final status when it was added (a failed check) has no status
    // event: its message is all there is.
    if !told && !m.message.is_empty() {
        out.push_str(&format!("  {}\n", m.message));
    }
}

/// The end of a hook's output, from its event's data: the last lines of each stream,
/// prefixed `out |` and `err |`.
fn hook_output(data: Option<&Value>, indent: &str) -> String {
    const LINES: usize = 5;
    let Some(data) = data.filter(|d| d.get("hook").is_some()) else {
        return String::new();
    };
    let mut out = String::new();
    for (stream, tag) in [("stdout", "out"), ("stderr", "err")] {
        let text = data.get(stream).and_then(Value::as_str).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() > LINES {
            out.push_str(&format!("{indent}{tag} | … {} lines before\n", lines.len() - LINES));
        }
        for line in &lines[lines.len().saturating_sub(LINES)..] {
            out.push_str(&format!("{indent}{tag} | {line}\n"));
        }
    }
    out
}

fn comparison(c: &Comparison) -> String {
    let (name, show): (&str, fn(f64) -> String) = match c.figure {
        "downtime_ms" => ("downtime", |v| format!("{v:.0} ms")),
        "total_s" => ("total", |v| format!("{v:.1} s")),
        _ => ("transfer", |v| format!("{v:.1} s")),
    };
    let actual = c.actual.map_or_else(|| "-".to_owned(), show);
    format!("{name} {} / {actual}", show(c.estimate))
}

/// `ferry report --format csv`: one row per VM.
pub fn report_csv(report: &Report) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "vm",
        "uuid",
        "source",
        "target",
        "status",
        "started",
        "ended",
        "attempts",
        "downtime_ms",
        "bytes",
        "passes",
        "message",
    ])?;
    let text = |v: Option<String>| v.unwrap_or_default();
    for m in &report.moves {
        let last = m.attempts.last();
        let bytes: Option<u64> = m.attempts.iter().filter_map(|a| a.bytes).reduce(|a, b| a + b);
        writer.write_record([
            m.vm.clone(),
            m.uuid.clone(),
            m.source.clone(),
            text(m.target.clone()),
            m.status.to_string(),
            text(m.started_ms.map(rfc3339)),
            text(m.ended_ms.map(rfc3339)),
            m.attempts.len().to_string(),
            text(last.and_then(|a| a.downtime_ms).map(|v| v.to_string())),
            text(bytes.map(|v| v.to_string())),
            text(last.and_then(|a| a.passes).map(|v| v.to_string())),
            m.message.clone(),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn route(source: &str, target: Option<&str>) -> String {
    format!("{source} -> {}", target.unwrap_or("?"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Rows of cells as aligned columns (two spaces apart), the first row being the header.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration for people: `12.4 s`, `3 min 05.2 s`, `2 h 03 min 05 s`.
fn duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{sign}{}.{} s", tenths / 10, tenths % 10);
    }
    if tenths < 36_000 {
        let secs = tenths % 600;
        return format!("{sign}{} min {:02}.{} s", tenths / 600, secs / 10, secs % 10);
    }
    let secs = (ms + 500) / 1000;
    format!("{sign}{} h {:02} min {:02} s", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Bytes in MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// `2026-11-23 20:30:15 UTC`.
fn utc(ms: i64) -> String {
    let t = civil(ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// `2026-11-23T20:30:15.123Z`.
fn rfc3339(ms: i64) -> String {
    let t = civil(ms);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.year, t.month, t.day, t.hour, t.minute, t.second, t.milli)
}

struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
}

/// The UTC calendar time `ms` since the epoch (Howard Hinnant's `civil_from_days`).
fn civil(ms: i64) -> Civil {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        milli,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-23 20:30:15 UTC.
    const T0: i64 = 1_795_465_815_000;

    fn run(state: RunState, heartbeat_ms: Option<i64>) -> Run {
        Run {
            id: "r-20261123-203015-ab12".into(),
            plan_name: "web-tier".into(),
            kind: RunKind::Migrate,
            parent: None,
            state,
            abort_requested: false,
            owner: heartbeat_ms.map(|_| "ctl:42".into()),
            heartbeat_ms,
            created_ms: T0,
            updated_ms: T0,
            finished_ms: state.is_ended().then_some(T0 + 60_000),
            generation: 3,
        }
    }

    fn mv(vm: &str, seq: i64, status: Status, message: &str, span: Option<(i64, i64)>) -> Move {
        Move {
            run: "r-20261123-203015-ab12".into(),
            uuid: format!("u-{vm}"),
            vm: vm.into(),
            source: "host-a".into(),
            target: Some("host-b".into()),
            group: None,
            seq,
            priority: 0,
            status,
            phase: span.map(|_| Phase::Finalized),
            phase_done: true,
            message: message.into(),
            started_ms: span.map(|(s, _)| T0 + s),
            ended_ms: if status.is_terminal() { Some(T0 + span.map_or(100, |(_, e)| e)) } else { None },
            updated_ms: T0,
            generation: 5,
        }
    }

    struct Figures {
        wall: u64,
        job: Option<u64>,
        downtime: Option<u64>,
        mib: u64,
        passes: Option<u32>,
    }

    fn att(vm: &str, number: u32, kind: AttemptKind, outcome: Status, f: Figures) -> Attempt {
        Attempt {
            run: "r-20261123-203015-ab12".into(),
            uuid: format!("u-{vm}"),
            number,
            kind,
            target: "host-b".into(),
            started_ms: T0 + 1_000,
            ended_ms: Some(T0 + 1_000 + f.wall as i64),
            outcome: Some(outcome),
            message: String::new(),
            wall_ms: Some(f.wall),
            job_ms: f.job,
            downtime_ms: f.downtime,
            bytes: Some(f.mib << 20),
            passes: f.passes,
            estimate: None,
        }
    }

    fn ev(id: i64, vm: &str, at: i64, kind: EventKind, message: &str) -> Event {
        Event {
            id,
            run: "r-20261123-203015-ab12".into(),
            uuid: Some(format!("u-{vm}")),
            at_ms: T0 + at,
            kind,
            message: message.into(),
            data: None,
        }
    }

    #[test]
    fn counts_follow_the_status_table() {
        use Status::*;
        let cases: &[(&[Status], &str, Value)] = &[
            (&[], "no moves", json!({})),
            (
                &[FailureWait, Success, Success, Success, Success, Success, Success],
                "6 SUCCESS, 1 FAILURE-WAIT",
                json!({ "SUCCESS": 6, "FAILURE-WAIT": 1 }),
            ),
            (
                &[RollbackFailed, Migrating, Pending, Queued, SuccessCold],
                "1 PENDING, 1 QUEUED, 1 MIGRATING, 1 SUCCESS-COLD, 1 ROLLBACK-FAILED",
                json!({ "PENDING": 1, "QUEUED": 1, "MIGRATING": 1, "SUCCESS-COLD": 1, "ROLLBACK-FAILED": 1 }),
            ),
        ];
        for (statuses, text, json) in cases {
            let counts = Counts::of(statuses.iter().copied());
            assert_eq!(counts.to_string(), *text);
            assert_eq!(serde_json::to_value(&counts).expect("serialises"), *json);
            // serde_json's map sorts keys; the order is checked on the text.
            let ordered = serde_json::to_string(&counts).expect("serialises");
            let keys: Vec<usize> = counts.0.iter().map(|(s, _)| ordered.find(s.name()).expect("key")).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{ordered}");
        }
    }

    #[test]
    fn output_json_means_format_json() {
        let cases = [
            (None, Output::Text, Ok(Format::Table)),
            (None, Output::Json, Ok(Format::Json)),
            (Some(Format::Csv), Output::Text, Ok(Format::Csv)),
            (Some(Format::Json), Output::Json, Ok(Format::Json)),
            (
                Some(Format::Csv),
                Output::Json,
                Err("--format csv contradicts --output json; give one of them".to_owned()),
            ),
        ];
        for (format, output, want) in cases {
            assert_eq!(report_format(format, output), want, "{format:?} {output:?}");
        }
    }

    #[test]
    fn durations_for_people() {
        let cases = [
            (0, "0.0 s"),
            (12_449, "12.4 s"),
            (12_450, "12.5 s"),
            (59_949, "59.9 s"),
            (59_950, "1 min 00.0 s"),
            (185_200, "3 min 05.2 s"),
            (3_599_949, "59 min 59.9 s"),
            (3_599_950, "1 h 00 min 00 s"),
            (7_385_000, "2 h 03 min 05 s"),
            (-1_500, "-1.5 s"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn timestamps_in_utc() {
        let cases = [
            (0, "1970-01-01 00:00:00 UTC", "1970-01-01T00:00:00.000Z"),
            (T0 + 123, "2026-11-23 20:30:15 UTC", "2026-11-23T20:30:15.123Z"),
            (951_782_400_999, "2000-02-29 00:00:00 UTC", "2000-02-29T00:00:00.999Z"),
            (-1, "1969-12-31 23:59:59 UTC", "1969-12-31T23:59:59.999Z"),
        ];
        for (ms, text, rfc) in cases {
            assert_eq!((utc(ms).as_str(), rfc3339(ms).as_str()), (text, rfc), "{ms}");
        }
    }

    #[test]
    fn a_run_state_says_what_to_do() {
        let now = T0 + 100_000;
        let id = "r-20261123-203015-ab12";
        let aborting = Run { abort_requested: true, ..run(RunState::Running, Some(now - 1_000)) };
        let aborted = Run { abort_requested: true, ..run(RunState::Aborted, None) };
        let cases = [
            (run(RunState::Running, Some(now - 3_000)), "running (owner ctl:42, alive)".to_owned()),
            (run(RunState::Running, Some(now - 20_000)), format!("running (owner gone: `ferry resume {id}`)")),
            (run(RunState::Running, None), format!("running (owner gone: `ferry resume {id}`)")),
            (run(RunState::Stopped, Some(now - 3_000)), format!("stopped (resumable: `ferry resume {id}`)")),
            (run(RunState::Finished, None), "finished".to_owned()),
            (aborting, "running (owner ctl:42, alive), abort requested".to_owned()),
            (aborted, "aborted".to_owned()),
        ];
        for (run, want) in cases {
            let view = run_view(&run, [], now);
            assert_eq!(state_text(&view), want);
            assert_eq!(view.owner_alive.is_some(), run.state == RunState::Running);
        }
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["VM".to_owned(), "STATUS".to_owned(), "MESSAGE".to_owned()],
            vec!["web-10".to_owned(), "SUCCESS".to_owned(), String::new()],
            vec!["db".to_owned(), "FAILURE-WAIT".to_owned(), "did not converge".to_owned()],
        ];
        assert_eq!(
            table(&rows),
            "VM      STATUS        MESSAGE\n\
             web-10  SUCCESS\n\
             db      FAILURE-WAIT  did not converge\n"
        );
    }

    #[test]
    fn status_shows_the_latest_word_and_the_phase_in_flight() {
        let now = T0 + 30_000;
        let mut migrating = mv("web-2", 2, Status::Migrating, "", Some((1_000, 0)));
        migrating.phase = Some(Phase::Transferring);
        migrating.phase_done = false;
        let moves = [
            mv("web-1", 1, Status::Success, "live migration completed", Some((1_000, 4_000))),
            migrating,
            mv("web-3", 3, Status::Pending, "", None),
        ];
        let events = [
            ev(1, "web-1", 2_000, EventKind::Decision, "raised downtime to 200 ms"),
            ev(2, "web-1", 4_000, EventKind::Status, "SUCCESS: live migration completed"),
            ev(3, "web-2", 1_000, EventKind::Status, "MIGRATING"),
            ev(4, "web-2", 5_000, EventKind::Message, "dirty rate 310 MiB/s above the link"),
            ev(5, "web-2", 6_000, EventKind::Phase, "transferring: begun"),
        ];
        let view = status_view(&run(RunState::Running, Some(now - 2_000)), &moves, &events, now);
        assert_eq!(view.elapsed_ms, 30_000);
        assert_eq!(
            format_status(&view),
            "run r-20261123-203015-ab12  plan web-tier  (migrate)\n\
             state    running (owner ctl:42, alive)\n\
             created  2026-11-23 20:30:15 UTC, elapsed 30.0 s\n\
             moves    3: 1 PENDING, 1 MIGRATING, 1 SUCCESS\n\
             \n\
             VM     MOVE              STATUS     PHASE                 MESSAGE\n\
             web-1  host-a -> host-b  SUCCESS    -                     live migration completed\n\
             web-2  host-a -> host-b  MIGRATING  transferring (begun)  dirty rate 310 MiB/s above the link\n\
             web-3  host-a -> host-b  PENDING    -\n"
        );
    }

    fn sample_report() -> Report {
        let mut failed = mv("web-2", 2, Status::FailureWait, "did not converge", Some((1_000, 21_500)));
        failed.phase = Some(Phase::Transferring);
        let moves = [
            mv("web-1", 1, Status::Success, "live migration completed", Some((900, 4_500))),
            failed,
            mv("db-1", 3, Status::PrecheckFailed, "memory: host-b has 1024 MiB free, db-1 needs 4096 MiB", None),
        ];
        let mut live = att(
            "web-1",
            1,
            AttemptKind::Live,
            Status::Success,
            Figures { wall: 3_200, job: Some(3_000), downtime: Some(180), mib: 512, passes: Some(4) },
        );
        live.estimate = Some(json!({ "downtime_ms": 120.0, "total_s": 8.0, "transfer_s": null, "note": "x" }));
        let mut stuck = att(
            "web-2",
            1,
            AttemptKind::Live,
            Status::FailureWait,
            Figures { wall: 20_000, job: Some(19_500), downtime: None, mib: 1024, passes: Some(30) },
        );
        stuck.message = "did not converge after 30 passes".into();
        let events = [
            ev(1, "web-1", 2_400, EventKind::Decision, "raised downtime to 200 ms: 3 passes without converging"),
            ev(2, "web-1", 4_500, EventKind::Status, "SUCCESS: live migration completed"),
            ev(3, "web-2", 1_000, EventKind::Attempt, "attempt 1 (live) to host-b started"),
            ev(4, "web-2", 21_500, EventKind::Status, "FAILURE-WAIT: did not converge"),
        ];
        build_report(&run(RunState::Finished, None), &moves, &[live, stuck], &events, T0 + 90_000)
    }

    #[test]
    fn a_report_puts_failures_first_and_sums_up() {
        let report = sample_report();
        let order: Vec<&str> = report.moves.iter().map(|m| m.vm.as_str()).collect();
        assert_eq!(order, ["web-2", "db-1", "web-1"]);
        let s = &report.summary;
        assert_eq!((s.moves, s.attempts, s.all_succeeded), (3, 2, false));
        assert_eq!((s.first_start_ms, s.last_end_ms, s.makespan_ms), (Some(T0 + 900), Some(T0 + 21_500), Some(20_600)));
        assert_eq!((s.worst_downtime_ms, s.worst_downtime_vm.as_deref()), (Some(180), Some("web-1")));
        assert_eq!(s.bytes, 1536 << 20);
        // Only the figures the estimate has (a null one is an impossible estimate) are compared.
        assert_eq!(
            report.moves[2].attempts[0].estimate_vs_actual,
            [
                Comparison { figure: "downtime_ms", estimate: 120.0, actual: Some(180.0) },
                Comparison { figure: "total_s", estimate: 8.0, actual: Some(3.2) },
            ]
        );
        assert_eq!(
            format_report(&report),
            "run r-20261123-203015-ab12  plan web-tier  (migrate)\n\
             state    finished\n\
             created  2026-11-23 20:30:15 UTC, finished 2026-11-23 20:31:15 UTC\n\
             moves    3: 1 PRECHECK-FAILED, 1 SUCCESS, 1 FAILURE-WAIT; 2 attempts\n\
             makespan 20.6 s (2026-11-23 20:30:15 UTC to 2026-11-23 20:30:36 UTC)\n\
             downtime worst 180 ms (web-1)\n\
             bytes    1536.0 MiB transferred\n\
             \n\
             web-2  FAILURE-WAIT  host-a -> host-b\n\
             \x20 start 2026-11-23 20:30:16 UTC  end 2026-11-23 20:30:36 UTC  (20.5 s)\n\
             \x20 attempt 1  live -> host-b  FAILURE-WAIT  wall 20.0 s, job 19.5 s, 1024.0 MiB, 30 passes\n\
             \x20   did not converge after 30 passes\n\
             \x20 21.5 s: FAILURE-WAIT: did not converge\n\
             \n\
             db-1  PRECHECK-FAILED  host-a -> host-b\n\
             \x20 not started\n\
             \x20 memory: host-b has 1024 MiB free, db-1 needs 4096 MiB\n\
             \n\
             web-1  SUCCESS  host-a -> host-b\n\
             \x20 start 2026-11-23 20:30:15 UTC  end 2026-11-23 20:30:19 UTC  (3.6 s)\n\
             \x20 attempt 1  live -> host-b  SUCCESS  wall 3.2 s, job 3.0 s, downtime 180 ms, 512.0 MiB, 4 passes\n\
             \x20   estimate vs actual: downtime 120 ms / 180 ms, total 8.0 s / 3.2 s\n\
             \x20 2.4 s: raised downtime to 200 ms: 3 passes without converging\n\
             \x20 4.5 s: SUCCESS: live migration completed\n"
        );
    }

    #[test]
    fn a_report_as_csv() {
        assert_eq!(
            report_csv(&sample_report()).expect("writes"),
            "vm,uuid,source,target,status,started,ended,attempts,downtime_ms,bytes,passes,message\n\
             web-2,u-web-2,host-a,host-b,FAILURE-WAIT,2026-11-23T20:30:16.000Z,2026-11-23T20:30:36.500Z,1,,1073741824,30,did not converge\n\
             db-1,u-db-1,host-a,host-b,PRECHECK-FAILED,,2026-11-23T20:30:15.100Z,0,,,,\"memory: host-b has 1024 MiB free, db-1 needs 4096 MiB\"\n\
             web-1,u-web-1,host-a,host-b,SUCCESS,2026-11-23T20:30:15.900Z,2026-11-23T20:30:19.500Z,1,180,536870912,4,live migration completed\n"
        );
    }

    #[test]
    fn an_estimate_without_figures_compares_nothing() {
        for estimate in [None, Some(json!("fast")), Some(json!({})), Some(json!({ "downtime_ms": "low" }))] {
            let mut a = att(
                "web-1",
                1,
                AttemptKind::Cold,
                Status::SuccessCold,
                Figures { wall: 1_000, job: None, downtime: None, mib: 1, passes: None },
            );
            a.estimate = estimate.clone();
            assert!(attempt_report(&a).estimate_vs_actual.is_empty(), "{estimate:?}");
        }
    }

    #[test]
    fn a_report_tells_the_runs_hooks_with_their_output_and_its_legs() {
        let drain = Run { kind: RunKind::Drain, ..run(RunState::Finished, None) };
        let moves = [mv("web-1", 0, Status::Success, "moved live to host-b", Some((0, 4_000)))];
        let mut hook =
            ev(1, "web-1", 5_000, EventKind::Message, "drain hook on host-a: `upgrade` exited 0 after 1.0 s");
        hook.uuid = None;
        hook.data = Some(json!({"hook": "drain", "stdout": "a\nb\nc\nd\ne\nf\n", "stderr": "warning: x\n"}));
        let mut report = build_report(&drain, &moves, &[], &[hook], T0 + 60_000);
        let back = Run {
            id: "r-20261123-203021-cd34".into(),
            kind: RunKind::Rollback,
            parent: Some(drain.id.clone()),
            ..run(RunState::Finished, None)
        };
        let returned = Move {
            run: back.id.clone(),
            source: "host-b".into(),
            target: Some("host-a".into()),
            ..mv("web-1", 0, Status::RolledBack, "moved live to host-a", Some((0, 4_000)))
        };
        report.legs = legs(&drain, &[drain.clone(), back.clone()], |_| vec![returned.clone()], T0 + 60_000);
        let text = format_report(&report);
        let expect = "\nrun\n  5.0 s: drain hook on host-a: `upgrade` exited 0 after 1.0 s\n    out | … 1 lines before\n    out | b\n    out | c\n    out | d\n    out | e\n    out | f\n    err | warning: x\n\nundone by run r-20261123-203021-cd34 (rollback): finished, 1 ROLLED-BACK\n  web-1  host-b -> host-a  ROLLED-BACK  moved live to host-a\n";
        assert!(text.contains(expect), "{text}");
        assert_eq!(report.legs[0].relation, "undone-by");
    }
}
