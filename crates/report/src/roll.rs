//! A roll's report: per host (its wave, drain, maintenance shutdowns, hook, check, return
//! and outcome) and per VM (its path through the roll), from the records of the roll's run,
//! its waves (drain runs naming it as parent) and their returns (rollback runs naming a
//! wave as parent).
//!
//! Everything is read from what the journal says, field by field: a journal written by an
//! older ferry may lack any of it, and then the report leaves that part out rather than fail.

use std::collections::HashMap;

use ferry_journal::{Attempt, Event, EventKind, Move, Run, RunState};
use ferry_model::Status;
use serde::Serialize;
use serde_json::Value;

/// The records of one run, as the journal gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecords {
    /// The run.
    pub run: Run,
    /// Its moves.
    pub moves: Vec<Move>,
    /// Its attempts.
    pub attempts: Vec<Attempt>,
    /// Its events, oldest first.
    pub events: Vec<Event>,
}

/// One wave of a roll: its drain run and the returns (rollback runs) of it, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveRecords {
    /// The wave's drain run.
    pub wave: RunRecords,
    /// Rollback runs whose parent is the wave: its return (and any later `ferry rollback`).
    pub returns: Vec<RunRecords>,
}

/// What a roll did, host by host and VM by VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollView {
    /// The waves, in order.
    pub waves: Vec<WaveView>,
    /// Every host of the roll in wave order, then the hosts left out of it.
    pub hosts: Vec<HostReport>,
    /// Every VM a wave moved, shut down or returned, by name.
    pub vms: Vec<VmPath>,
    /// The rebalance that ends a roll without return, once started.
    pub rebalance: Option<RebalanceView>,
}

/// The rebalance run of a roll without return (`PLAN: rebalance`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebalanceView {
    /// Its run.
    pub run: String,
    /// That run's state.
    pub state: RunState,
    /// Its moves: each VM, where it went from and to, and how.
    pub moves: Vec<Departure>,
}

/// Whether `run` is a roll's rebalance rather than one of its waves.
fn is_rebalance(run: &Run) -> bool {
    run.plan_name.ends_with(": rebalance")
}

/// One wave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaveView {
    /// 1-based.
    pub number: usize,
    /// Its hosts.
    pub hosts: Vec<String>,
    /// Whether it is one of the canary waves, after which the roll waits for a confirmation.
    pub canary: bool,
    /// Its drain run, once started.
    pub run: Option<String>,
    /// That run's state.
    pub state: Option<RunState>,
    /// What the roll said of it last: `true` done, `false` did not end well; `None` before
    /// it said either.
    pub ended_well: Option<bool>,
}

/// One host of the roll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    /// Host name.
    pub host: String,
    /// Its wave (1-based); `None` for a host left out of the roll.
    pub wave: Option<usize>,
    /// Its wave's drain run, once started.
    pub run: Option<String>,
    /// Its VMs leaving; `None` before its wave started.
    pub drain: Option<DrainView>,
    /// VMs shut down on it for the maintenance and started again, as journaled.
    pub maintenance: Vec<MaintenanceStep>,
    /// Its hook, as last journaled.
    pub hook: Option<ScriptRun>,
    /// Its check, as last journaled.
    pub check: Option<ScriptRun>,
    /// Its VMs coming back.
    #[serde(rename = "return")]
    pub back: Option<ReturnView>,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: HostOutcome,
}

/// From when to when; `ended_ms` is `None` while it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// ms since the epoch.
    pub started_ms: i64,
    /// ms since the epoch.
    pub ended_ms: Option<i64>,
}

/// A host's drain: its VMs leaving.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrainView {
    /// From the first move's start to the last one's end; `None` when no VM had to leave
    /// (or none started).
    pub span: Option<Span>,
    /// Each VM that was to leave: where it went and how.
    pub vms: Vec<Departure>,
}

/// One VM leaving a drained host, or coming back to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Departure {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// The other host: where it went, or where it came back from.
    pub host: Option<String>,
    /// The move's status.
    pub status: Status,
}

/// One journaled maintenance step of a VM that stays on its host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaintenanceStep {
    /// VM name.
    pub vm: String,
    /// `shut-down` or `start`.
    pub step: String,
    /// ms since the epoch.
    pub at_ms: i64,
    /// A shutdown: whether the VM was running (false: nothing was done).
    pub was_running: Option<bool>,
}

/// A hook or a check as journaled for one host: the last time it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScriptRun {
    /// The command.
    pub command: Option<String>,
    /// How it ended.
    pub result: ScriptResult,
    /// When it ran (its start is known from its intent or its duration).
    pub span: Option<Span>,
    /// How long its last run took.
    pub duration_ms: Option<u64>,
    /// How many times it was journaled as ended for this host (a failed hook runs again
    /// when the roll is resumed).
    pub runs: usize,
    /// A check: how many times it was tried before it passed or its time was up.
    pub attempts: Option<u64>,
    /// The last lines of its standard output.
    pub stdout: Tail,
    /// The last lines of its standard error.
    pub stderr: Tail,
}

/// How a hook or check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ScriptResult {
    /// It exited with this code in time.
    Exited {
        /// The exit code.
        code: i64,
    },
    /// It was killed at its timeout.
    TimedOut,
    /// The operator stopped it (`ferry abort`, Ctrl-C).
    Stopped {
        /// Who.
        by: String,
    },
    /// It could not start.
    NotStarted {
        /// Why.
        error: String,
    },
    /// A signal ended it, or this ferry lost the run's lease and killed it.
    Killed,
    /// The operator said its work was done (`ferry resume --hook-done`).
    DoneByOperator,
    /// Not run: a simulated fleet's maintenance, which took its virtual time and ended well.
    Simulated,
    /// Started and not ended yet, in a run still running.
    Running,
    /// Started and never ended: ferry stopped while it ran.
    Interrupted,
}

impl ScriptResult {
    /// Whether it ended well: exit 0, or done by the operator.
    pub fn ok(&self) -> bool {
        matches!(self, ScriptResult::Exited { code: 0 } | ScriptResult::DoneByOperator | ScriptResult::Simulated)
    }

    /// Whether it has not ended.
    pub fn open(&self) -> bool {
        matches!(self, ScriptResult::Running)
    }
}

/// The end of a stream: its last lines, and how many non-empty lines came before them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tail {
    /// Lines left out before `lines`.
    pub before: usize,
    /// The last non-empty lines.
    pub lines: Vec<String>,
}

/// Lines of a hook's output a report keeps.
pub(crate) const TAIL_LINES: usize = 5;

impl Tail {
    fn of(text: &str) -> Tail {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let before = lines.len().saturating_sub(TAIL_LINES);
        Tail { before, lines: lines[before..].iter().map(|l| l.to_string()).collect() }
    }
}

/// A host's VMs coming back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReturnView {
    /// The return's run (the last one, when the wave was rolled back again later).
    pub run: String,
    /// Its state.
    pub state: RunState,
    /// From the first move back's start to the last one's end.
    pub span: Option<Span>,
    /// Each VM coming back to the host.
    pub vms: Vec<Departure>,
    /// Whether every VM that came back to the host is back (none failed or is still on its way).
    pub all_back: bool,
}

/// How a host ended in the roll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum HostOutcome {
    /// Drained, its hook and check passed, its VMs back (as the roll asked).
    Done,
    /// Something did not end well.
    Failed {
        /// What, in words.
        why: String,
    },
    /// Left out of the roll when it was planned.
    Skipped {
        /// Why.
        why: String,
    },
    /// Its wave has not started (the roll stopped or is still on an earlier wave).
    NotReached,
    /// Its wave is under way.
    UnderWay,
}

/// The roll's report from its run's `events` and its waves' records.
pub fn roll_view(events: &[Event], runs: &[WaveRecords]) -> RollView {
    let (rebalance, waves): (Vec<&WaveRecords>, Vec<&WaveRecords>) =
        runs.iter().partition(|w| is_rebalance(&w.wave.run));
    let waves = waves.as_slice();
    let rebalance = rebalance.first().copied();
    let planned = planned_waves(events, waves);
    let verdicts = verdicts(events);
    let by_number = number_waves(waves);
    let wave_views: Vec<WaveView> = planned
        .hosts
        .iter()
        .enumerate()
        .map(|(i, hosts)| {
            let records = by_number.get(&(i + 1)).copied();
            WaveView {
                number: i + 1,
                hosts: hosts.clone(),
                canary: i < planned.canaries,
                run: records.map(|w| w.wave.run.id.clone()),
                state: records.map(|w| w.wave.run.state),
                ended_well: verdicts.get(&(i + 1)).copied(),
            }
        })
        .collect();
    let mut hosts: Vec<HostReport> = Vec::new();
    for wave in &wave_views {
        let records = by_number.get(&wave.number).copied();
        for host in &wave.hosts {
            hosts.push(host_report(host, wave, records));
        }
    }
    for (host, why) in &planned.skipped {
        hosts.push(HostReport {
            host: host.clone(),
            wave: None,
            run: None,
            drain: None,
            maintenance: Vec::new(),
            hook: None,
            check: None,
            back: None,
            outcome: HostOutcome::Skipped { why: why.clone() },
        });
    }
    let after = wave_views.len() + 1;
    let rebalance_view = rebalance.map(|r| RebalanceView {
        run: r.wave.run.id.clone(),
        state: r.wave.run.state,
        moves: r
            .wave
            .moves
            .iter()
            .map(|m| Departure { vm: m.vm.clone(), uuid: m.uuid.clone(), host: m.target.clone(), status: m.status })
            .collect(),
    });
    RollView {
        waves: wave_views,
        vms: vm_paths(&by_number, rebalance.map(|r| (after, &r.wave))),
        hosts,
        rebalance: rebalance_view,
    }
}

/// The waves as the roll journaled them when it was planned.
struct PlannedWaves {
    hosts: Vec<Vec<String>>,
    canaries: usize,
    skipped: Vec<(String, String)>,
}

/// The waves from the roll's `roll_waves` event; without one (an older journal), one wave
/// per wave run in the order they were created, with the hosts their records name.
fn planned_waves(events: &[Event], waves: &[&WaveRecords]) -> PlannedWaves {
    let journaled = events.iter().filter_map(|e| e.data.as_ref()).find(|d| d.get("roll_waves").is_some());
    if let Some(data) = journaled {
        let hosts: Vec<Vec<String>> =
            data["roll_waves"]["hosts"].as_array().map(|waves| waves.iter().map(strings).collect()).unwrap_or_default();
        let canaries = data["roll_waves"]["canaries"].as_u64().map_or(0, |n| n as usize);
        let skipped = data["skipped"]
            .as_array()
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_str()?.to_string(), p.get(1)?.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        return PlannedWaves { hosts, canaries, skipped };
    }
    let mut ordered: Vec<&WaveRecords> = waves.to_vec();
    ordered.sort_by_key(|w| w.wave.run.created_ms);
    let hosts = ordered.iter().map(|w| hosts_named(&w.wave)).collect();
    PlannedWaves { hosts, canaries: 0, skipped: Vec::new() }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The drained hosts a wave's records name: its moves' sources, its hooks' hosts.
fn hosts_named(records: &RunRecords) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    let named = records.moves.iter().map(|m| m.source.clone()).chain(records.events.iter().filter_map(host_of));
    for host in named {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// The host a hook's or check's event is about.
fn host_of(e: &Event) -> Option<String> {
    e.data.as_ref()?.get("env")?.get("FERRY_HOST")?.as_str().map(str::to_string)
}

/// Each wave's run by its number: from its name (`PLAN: wave N (HOSTS)`), else by the
/// order the waves were created in.
fn number_waves<'a>(waves: &[&'a WaveRecords]) -> HashMap<usize, &'a WaveRecords> {
    let mut ordered: Vec<&WaveRecords> = waves.to_vec();
    ordered.sort_by_key(|w| w.wave.run.created_ms);
    let mut numbered = HashMap::new();
    for (i, w) in ordered.into_iter().enumerate() {
        let number = wave_number(&w.wave.run.plan_name).unwrap_or(i + 1);
        numbered.entry(number).or_insert(w);
    }
    numbered
}

/// N of a wave run's name `PLAN: wave N (HOSTS)`.
fn wave_number(name: &str) -> Option<usize> {
    let (_, rest) = name.rsplit_once(": wave ")?;
    rest.split_once(' ').map_or(rest, |(n, _)| n).parse().ok()
}

/// What the roll last said of each wave: its `wave_verdict` record, or in a journal from
/// before those, its message "wave N: HOSTS: done" or "…: did not end well".
fn verdicts(events: &[Event]) -> HashMap<usize, bool> {
    let mut said = HashMap::new();
    for e in events.iter().filter(|e| e.uuid.is_none()) {
        let verdict = e.data.as_ref().and_then(|d| d.get("wave_verdict"));
        if let Some(v) = verdict {
            if let (Some(number), Some(ok)) = (v["wave"].as_u64(), v["ended_well"].as_bool()) {
                said.insert(number as usize, ok);
            }
            continue;
        }
        let Some(rest) = e.message.strip_prefix("wave ") else { continue };
        let Some((number, _)) = rest.split_once(':') else { continue };
        let Ok(number) = number.parse::<usize>() else { continue };
        if rest.ends_with(": done") {
            said.insert(number, true);
        } else if rest.contains(": did not end well") {
            said.insert(number, false);
        }
    }
    said
}

fn host_report(host: &str, wave: &WaveView, records: Option<&WaveRecords>) -> HostReport {
    let Some(records) = records else {
        return HostReport {
            host: host.to_string(),
            wave: Some(wave.number),
            run: None,
            drain: None,
            maintenance: Vec::new(),
            hook: None,
            check: None,
            back: None,
            outcome: HostOutcome::NotReached,
        };
    };
    let own = &records.wave;
    let running = !own.run.state.is_ended();
    let mut report = HostReport {
        host: host.to_string(),
        wave: Some(wave.number),
        run: Some(own.run.id.clone()),
        drain: Some(drain(host, own)),
        maintenance: maintenance(host, &own.events),
        hook: script(host, "drain", &own.events, running),
        check: script(host, "check", &own.events, running),
        back: back(host, &records.returns),
        outcome: HostOutcome::UnderWay,
    };
    report.outcome = judge(&report, records, wave.ended_well, last_note(host, &own.events));
    report
}

/// A move's start: it first became MIGRATING, or its first attempt began.
fn move_start(m: &Move, attempts: &[Attempt]) -> Option<i64> {
    let first_attempt = attempts.iter().filter(|a| a.uuid == m.uuid).map(|a| a.started_ms).min();
    match (m.started_ms, first_attempt) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The span of `moves`: the first start to the last end, open while any of them (started
/// or not) has not ended; `None` when none started.
fn span_of(moves: &[&Move], attempts: &[Attempt]) -> Option<Span> {
    let started_ms = moves.iter().filter_map(|m| move_start(m, attempts)).min()?;
    let ended_ms = if moves.iter().all(|m| m.status.is_terminal()) {
        moves.iter().filter(|m| move_start(m, attempts).is_some()).filter_map(|m| m.ended_ms).max()
    } else {
        None
    };
    Some(Span { started_ms, ended_ms })
}

fn drain(host: &str, records: &RunRecords) -> DrainView {
    let leaving: Vec<&Move> = records.moves.iter().filter(|m| m.source == host).collect();
    DrainView {
        span: span_of(&leaving, &records.attempts),
        vms: leaving
            .iter()
            .map(|m| Departure { vm: m.vm.clone(), uuid: m.uuid.clone(), host: m.target.clone(), status: m.status })
            .collect(),
    }
}

/// The maintenance steps done on `host` (not their intents: a step journaled as begun and
/// never done shows as not done).
fn maintenance(host: &str, events: &[Event]) -> Vec<MaintenanceStep> {
    events
        .iter()
        .filter_map(|e| {
            let record = e.data.as_ref()?.get("maintenance")?;
            if record.get("host")?.as_str()? != host || record.get("done")?.as_bool() != Some(true) {
                return None;
            }
            Some(MaintenanceStep {
                vm: record.get("vm")?.as_str()?.to_string(),
                step: record.get("step")?.as_str()?.to_string(),
                at_ms: e.at_ms,
                was_running: record.get("was_running").and_then(Value::as_bool),
            })
        })
        .collect()
}

/// The last run of `host`'s hook (`kind` "drain") or check (`kind` "check") among a wave's
/// events; a hook begun after its last end is running (in a run still `running`) or was
/// interrupted.
fn script(host: &str, kind: &str, events: &[Event], running: bool) -> Option<ScriptRun> {
    let about_host: Vec<(&Event, &Value)> = events
        .iter()
        .filter_map(|e| Some((e, e.data.as_ref()?)))
        .filter(|(e, _)| host_of(e).as_deref() == Some(host))
        .collect();
    let is = |d: &Value, what: &str| d.get("hook").and_then(Value::as_str) == Some(what);
    let ended: Vec<(&Event, &Value)> = about_host.iter().copied().filter(|(_, d)| is(d, kind)).collect();
    let runs = ended.len();
    let last_end = ended.last().copied();
    // Only a hook journals its intent ("drain-begun").
    let begun =
        (kind == "drain").then(|| about_host.iter().rev().find(|(_, d)| is(d, "drain-begun")).copied()).flatten();
    match (begun, last_end) {
        (Some((b, _)), end) if end.is_none_or(|(e, _)| b.at_ms > e.at_ms || (b.at_ms == e.at_ms && b.id > e.id)) => {
            // Begun after its last end: not ended (yet).
            Some(ScriptRun {
                command: command_of(&b.message),
                result: if running { ScriptResult::Running } else { ScriptResult::Interrupted },
                span: Some(Span { started_ms: b.at_ms, ended_ms: None }),
                duration_ms: None,
                runs,
                attempts: None,
                stdout: Tail::default(),
                stderr: Tail::default(),
            })
        }
        (_, Some((e, data))) => {
            let duration_ms = data.get("duration_ms").and_then(Value::as_u64);
            // Its start: its intent just before it, or its end less its duration.
            let intent = begun.filter(|(b, _)| b.at_ms <= e.at_ms).map(|(b, _)| b.at_ms);
            let started_ms = intent.or(duration_ms.map(|d| e.at_ms - i64::try_from(d).unwrap_or(0)));
            let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default();
            Some(ScriptRun {
                command: data.get("command").and_then(Value::as_str).map(str::to_string),
                result: result_of(data),
                span: started_ms.map(|s| Span { started_ms: s.min(e.at_ms), ended_ms: Some(e.at_ms) }),
                duration_ms,
                runs,
                attempts: data.get("attempts").and_then(Value::as_u64),
                stdout: Tail::of(text("stdout")),
                stderr: Tail::of(text("stderr")),
            })
        }
        _ => None,
    }
}

/// The command of a hook's intent, "drain hook on HOST: starting `COMMAND`".
fn command_of(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("starting `")?;
    rest.strip_suffix('`').map(str::to_string)
}

/// How a hook or check ended, from its journaled data.
pub(crate) fn result_of(data: &Value) -> ScriptResult {
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_string);
    if data.get("by_operator").and_then(Value::as_bool) == Some(true) {
        return ScriptResult::DoneByOperator;
    }
    if data.get("simulated").and_then(Value::as_bool) == Some(true) {
        return ScriptResult::Simulated;
    }
    if let Some(by) = text("stopped_by") {
        return ScriptResult::Stopped { by };
    }
    if let Some(error) = text("error") {
        return ScriptResult::NotStarted { error };
    }
    if data.get("timed_out").and_then(Value::as_bool) == Some(true) {
        return ScriptResult::TimedOut;
    }
    match data.get("exit_code").and_then(Value::as_i64) {
        Some(code) if text("lost_to").is_none() => ScriptResult::Exited { code },
        _ => ScriptResult::Killed,
    }
}

/// The VMs coming back to `host` in the wave's last return that brought any there.
fn back(host: &str, returns: &[RunRecords]) -> Option<ReturnView> {
    returns.iter().rev().find_map(|r| {
        let coming: Vec<&Move> = r.moves.iter().filter(|m| m.target.as_deref() == Some(host)).collect();
        if coming.is_empty() {
            return None;
        }
        Some(ReturnView {
            run: r.run.id.clone(),
            state: r.run.state,
            span: span_of(&coming, &r.attempts),
            all_back: coming.iter().all(|m| m.status.is_success()),
            vms: coming
                .iter()
                .map(|m| Departure {
                    vm: m.vm.clone(),
                    uuid: m.uuid.clone(),
                    // A VM found nowhere has no source: "-".
                    host: Some(m.source.clone()).filter(|s| s != "-"),
                    status: m.status,
                })
                .collect(),
        })
    })
}

/// The wave's last word about `host` itself ("HOST: its check did not pass: …", "HOST is
/// not empty (…)"), leaving out those that say it is run again.
fn last_note(host: &str, events: &[Event]) -> Option<String> {
    events
        .iter()
        .rev()
        .filter(|e| e.uuid.is_none() && e.kind == EventKind::Message && e.data.is_none())
        .find(|e| {
            e.message.strip_prefix(host).is_some_and(|rest| rest.starts_with(": ") || rest.starts_with(" is not empty"))
                && !e.message.contains("running it again")
        })
        .map(|e| e.message.clone())
}

/// How a host of a started wave ended: what did not end well first, in the order it
/// happens (VMs leaving, hook, check, return); then under way while its wave or return
/// runs; then what the wave's own words say.
fn judge(report: &HostReport, records: &WaveRecords, ended_well: Option<bool>, note: Option<String>) -> HostOutcome {
    let failed = |why: String| HostOutcome::Failed { why };
    let stuck: Vec<String> = report
        .drain
        .iter()
        .flat_map(|d| &d.vms)
        .filter(|d| d.status.is_terminal() && !d.status.is_success())
        .map(|d| format!("{} did not leave ({})", d.vm, d.status))
        .collect();
    if !stuck.is_empty() {
        return failed(stuck.join(", "));
    }
    for (what, run) in [("hook", &report.hook), ("check", &report.check)] {
        if let Some(run) = run.as_ref().filter(|r| !r.result.ok() && !r.result.open()) {
            return failed(format!("its {what} {}", result_words(&run.result)));
        }
    }
    if let Some(back) = report.back.as_ref().filter(|b| b.state.is_ended() && !b.all_back) {
        let home = back.vms.iter().filter(|d| d.status.is_success()).count();
        return failed(format!("{home} of {} VMs came back", back.vms.len()));
    }
    let returning = records.returns.iter().any(|r| !r.run.state.is_ended());
    if !records.wave.run.state.is_ended() || returning || report.hook.as_ref().is_some_and(|h| h.result.open()) {
        return HostOutcome::UnderWay;
    }
    match (ended_well, note) {
        (Some(true), _) | (None, None) => HostOutcome::Done,
        (_, Some(note)) => failed(note),
        // Its wave did not end well, but not because of this host.
        (Some(false), None) => HostOutcome::Done,
    }
}

/// How a hook or check ended, in words: "exited 3", "timed out".
pub fn result_words(result: &ScriptResult) -> String {
    match result {
        ScriptResult::Exited { code } => format!("exited {code}"),
        ScriptResult::TimedOut => "timed out".to_string(),
        ScriptResult::Stopped { by } => format!("was stopped by {by}"),
        ScriptResult::NotStarted { error } => format!("could not start: {error}"),
        ScriptResult::Killed => "was killed".to_string(),
        ScriptResult::DoneByOperator => "was marked done by the operator".to_string(),
        ScriptResult::Simulated => "was simulated".to_string(),
        ScriptResult::Running => "is running".to_string(),
        ScriptResult::Interrupted => "was interrupted when ferry stopped".to_string(),
    }
}

/// One VM's path through the roll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmPath {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// The host it was on when the roll first touched it.
    pub home: String,
    /// What happened to it, in wave order.
    pub steps: Vec<VmStep>,
    /// Where it is by the journal: where its last move that succeeded took it.
    pub ends_on: String,
    /// Whether ferry shut it down for a maintenance and has not started it again.
    pub off: bool,
}

/// One thing that happened to a VM in a wave, or in the rebalance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmStep {
    /// The wave (1-based); for the rebalance, one past the last wave.
    pub wave: usize,
    /// `leave`, `return`, `shut-down`, `start` or `rebalance`.
    pub step: &'static str,
    /// The host it left (or stayed on, shut down).
    pub from: String,
    /// The host it went to; `None` for a shutdown or start.
    pub to: Option<String>,
    /// The move's status; `None` for a shutdown or start.
    pub status: Option<Status>,
    /// When it started (a move) or was done (a shutdown or start), ms since the epoch.
    pub at_ms: Option<i64>,
}

/// Each VM's steps through the waves and the rebalance (numbered one past the last wave),
/// by VM name.
fn vm_paths(waves: &HashMap<usize, &WaveRecords>, rebalance: Option<(usize, &RunRecords)>) -> Vec<VmPath> {
    let mut numbers: Vec<usize> = waves.keys().copied().collect();
    numbers.sort_unstable();
    // (uuid, name, step), in wave order.
    let mut steps: Vec<(String, String, VmStep)> = Vec::new();
    for number in numbers {
        let w = waves[&number];
        let moving = |records: &RunRecords, step: &'static str, steps: &mut Vec<(String, String, VmStep)>| {
            let mut moves: Vec<&Move> = records.moves.iter().collect();
            moves.sort_by_key(|m| (move_start(m, &records.attempts).unwrap_or(i64::MAX), m.seq));
            for m in moves {
                steps.push((
                    m.uuid.clone(),
                    m.vm.clone(),
                    VmStep {
                        wave: number,
                        step,
                        from: m.source.clone(),
                        to: m.target.clone(),
                        status: Some(m.status),
                        at_ms: move_start(m, &records.attempts),
                    },
                ));
            }
        };
        moving(&w.wave, "leave", &mut steps);
        for e in &w.wave.events {
            let Some(record) = e.data.as_ref().and_then(|d| d.get("maintenance")) else { continue };
            let field = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_string);
            let (Some(vm), Some(uuid), Some(host), Some(step)) =
                (field("vm"), field("uuid"), field("host"), field("step"))
            else {
                continue;
            };
            // A shutdown that found the VM off did nothing.
            if record.get("done").and_then(Value::as_bool) != Some(true)
                || record.get("was_running").and_then(Value::as_bool) == Some(false)
            {
                continue;
            }
            let step = if step == "start" { "start" } else { "shut-down" };
            steps.push((
                uuid,
                vm,
                VmStep { wave: number, step, from: host, to: None, status: None, at_ms: Some(e.at_ms) },
            ));
        }
        for r in &w.returns {
            moving(r, "return", &mut steps);
        }
    }
    if let Some((number, records)) = rebalance {
        let mut moves: Vec<&Move> = records.moves.iter().collect();
        moves.sort_by_key(|m| (move_start(m, &records.attempts).unwrap_or(i64::MAX), m.seq));
        for m in moves {
            let step = VmStep {
                wave: number,
                step: "rebalance",
                from: m.source.clone(),
                to: m.target.clone(),
                status: Some(m.status),
                at_ms: move_start(m, &records.attempts),
            };
            steps.push((m.uuid.clone(), m.vm.clone(), step));
        }
    }
    let mut paths: Vec<VmPath> = Vec::new();
    for (uuid, vm, step) in steps {
        let index = match paths.iter().position(|p| p.uuid == uuid) {
            Some(i) => i,
            None => {
                paths.push(VmPath {
                    vm: vm.clone(),
                    uuid: uuid.clone(),
                    home: step.from.clone(),
                    steps: Vec::new(),
                    ends_on: step.from.clone(),
                    off: false,
                });
                paths.len() - 1
            }
        };
        let path = &mut paths[index];
        match step.step {
            "shut-down" => path.off = true,
            "start" => path.off = false,
            _ => {
                if let (Some(to), Some(true)) = (&step.to, step.status.map(Status::is_success)) {
                    path.ends_on = to.clone();
                }
            }
        }
        path.steps.push(step);
    }
    paths.sort_by(|a, b| a.vm.cmp(&b.vm).then(a.uuid.cmp(&b.uuid)));
    paths
}
