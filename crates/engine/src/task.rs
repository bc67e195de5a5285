//! One move of a run: its attempts, their phases journaled around the driver's work, each
//! live migration driven by the convergence policy; a cold fallback and bounded retries.

use std::sync::Arc;
use std::time::Duration;

use ferry_converge::{Bounds, Converger, Decision, StartInput, StartPlan};
use ferry_driver::{
    ColdOptions, Control, Driver, ErrorKind, LiveOptions, MoveError, MoveReport, MoveRequest, StepGate,
};
use ferry_journal::{AttemptEnd, AttemptKind, EventKind, Journal, NewAttempt};
use ferry_model::{Compression, Phase, Status, StreamOptions};
use ferry_plan::{Mode, Policy};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use crate::run::{EngineEvent, MoveSpec};
use crate::saga::Steps;

/// Retries of a transiently failed attempt, and the wait before the first (doubling).
const RETRIES: u32 = 2;
const RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// A migration whose bytes grow slower than this share of its cap sends too little to keep
/// its share of the links: it scans zero pages, syncs its dirty bitmap, or starts its copy.
const SENDING_MIN_FRACTION: f64 = 0.1;

/// What the engine tells a running move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TaskControl {
    /// Its share of the links changed, MiB/s.
    Bandwidth(f64),
    /// The operator aborted the run.
    Abort,
}

/// Everything one move needs.
pub(crate) struct TaskInput {
    pub item: usize,
    pub run_id: String,
    pub spec: MoveSpec,
    pub to: String,
    pub kind: AttemptKind,
    /// The attempt the engine journaled as started.
    pub attempt: u32,
    pub bandwidth_mib_s: Option<f64>,
    /// First downtime limit, instead of the convergence policy's.
    pub max_downtime_ms: Option<u64>,
    /// Instead of the policy's per-GiB completion timeout.
    pub completion_timeout: Option<Duration>,
    pub policy: Policy,
    /// Whether the stream is encrypted, and its options, for this pair of hosts.
    pub tls: bool,
    /// Parallel connections, compression, zero-copy.
    pub stream: StreamOptions,
    /// The move's journal generation when the task starts; the task owns the record until
    /// it reports back.
    pub generation: i64,
}

/// How a move ended. Its attempts are already journaled.
pub(crate) struct TaskDone {
    pub item: usize,
    pub status: Status,
    pub message: String,
    pub report: MoveReport,
    pub generation: i64,
}

/// How one attempt ended.
struct Outcome {
    status: Status,
    message: String,
    report: MoveReport,
    /// Aborted by the convergence policy (not by the operator): a cold move may follow.
    by_policy: bool,
    /// Worth trying again: the failure says nothing about the VM or the target.
    transient: bool,
    /// What the driver said while the move ran, journaled as it came: put before the
    /// report's own lines once those are journaled, for whoever reads the report.
    said: Vec<String>,
}

/// What a running move tells the engine before it ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TaskSignal {
    /// Move `item`'s migration started (`true`) or stopped (`false`) sending data: its
    /// setup and finish use no link, so others may have it meanwhile.
    Sending(usize, bool),
    /// Move `item`'s VM runs on its target: its slots may go to the next moves while the
    /// source tears its copy down.
    SwitchedOver(usize),
}

/// The channels between a task and the engine.
pub(crate) struct Channels {
    pub controls: mpsc::UnboundedReceiver<TaskControl>,
    pub signals: mpsc::UnboundedSender<TaskSignal>,
    pub done: mpsc::UnboundedSender<TaskDone>,
    pub events: mpsc::UnboundedSender<EngineEvent>,
}

/// Runs one move and reports its end on `done`.
pub(crate) async fn run<D: Driver>(driver: Arc<D>, journal: Journal, input: TaskInput, channels: Channels) {
    let Channels { mut controls, signals, done, events } = channels;
    let mut move_ = Move {
        journal,
        run_id: input.run_id.clone(),
        uuid: input.spec.uuid.clone(),
        vm: input.spec.vm.clone(),
        generation: input.generation,
        events: events.clone(),
        started: Instant::now(),
    };
    let mut kind = input.kind;
    let mut attempt = input.attempt;
    let mut retries = 0;
    let outcome = loop {
        let steps = move_.steps(attempt);
        let outcome = match crate::stale::settle(&*driver, &move_.journal, &events, &input).await {
            Err(reason) => failure(Status::FailureInit, format!("could not start: {reason}")),
            Ok(()) => match kind {
                AttemptKind::Live => live(&*driver, &mut move_, &steps, &input, &mut controls, &signals).await,
                AttemptKind::Cold => cold(&*driver, &mut move_, &steps, &input, &signals).await,
            },
        };
        move_.end_attempt(attempt, &outcome).await;
        let next = if outcome.by_policy && kind == AttemptKind::Live && input.policy.mode == Mode::LiveOrCold {
            move_
                .note(&format!("falling back to a cold move to {}: the live migration could not complete", input.to))
                .await;
            AttemptKind::Cold
        } else if outcome.transient && retries < RETRIES {
            let wait = RETRY_BACKOFF * 2u32.pow(retries);
            retries += 1;
            move_.note(&format!("retry {retries} of {RETRIES} in {} s: {}", wait.as_secs(), outcome.message)).await;
            tokio::time::sleep(wait).await;
            kind
        } else {
            break outcome;
        };
        kind = next;
        match move_.start_attempt(kind, &input.to, &input.spec, compression_of(kind, &input.stream)).await {
            Some(n) => attempt = n,
            None => break outcome,
        }
    };
    let mut report = outcome.report;
    report.messages.splice(0..0, outcome.said);
    let _ = done.send(TaskDone {
        item: input.item,
        status: outcome.status,
        message: outcome.message,
        report,
        generation: move_.generation,
    });
}

/// One move's record in the journal while its task runs. Each phase is begun before its
/// side effect; a failure to write one before the driver acts stops the move before it starts.
struct Move {
    journal: Journal,
    run_id: String,
    uuid: String,
    vm: String,
    generation: i64,
    events: mpsc::UnboundedSender<EngineEvent>,
    started: Instant,
}

impl Move {
    fn steps(&self, attempt: u32) -> Steps {
        Steps {
            journal: self.journal.clone(),
            run_id: self.run_id.clone(),
            uuid: self.uuid.clone(),
            vm: self.vm.clone(),
            attempt,
        }
    }

    async fn begin(&mut self, phase: Phase) -> Result<(), String> {
        match self.journal.begin_phase(&self.run_id, &self.uuid, self.generation, phase).await {
            Ok(g) => {
                self.generation = g;
                let _ = self.events.send(EngineEvent::Phase { vm: self.vm.clone(), phase });
                Ok(())
            }
            Err(e) => Err(format!("could not journal phase {phase}: {e}")),
        }
    }

    /// Confirms a phase after its side effect. A failure here is only logged: the side
    /// effect happened, and `resume` judges by what the hypervisors say.
    async fn end(&mut self, phase: Phase) {
        match self.journal.end_phase(&self.run_id, &self.uuid, self.generation, phase).await {
            Ok(g) => self.generation = g,
            Err(e) => warn!(uuid = %self.uuid, %phase, "could not confirm phase: {e}"),
        }
    }

    /// Journals a convergence decision; `at` (seconds since the migration started) goes
    /// with its figures, the journal's own timestamp dates it.
    async fn decision(&self, at: f64, text: &str, data: serde_json::Value) {
        let data = json!({ "at_s": at, "decision": data });
        if let Err(e) = self.journal.event(&self.run_id, Some(&self.uuid), EventKind::Decision, text, Some(&data)).await
        {
            warn!(uuid = %self.uuid, "could not journal a decision: {e}");
        }
        let _ = self.events.send(EngineEvent::Note(format!("{}: {text}", self.vm)));
    }

    /// Journals a line the driver said while the move ran, as it comes.
    async fn said(&self, text: &str) {
        if let Err(e) = self.journal.event(&self.run_id, Some(&self.uuid), EventKind::Message, text, None).await {
            warn!(uuid = %self.uuid, "could not journal what the driver said: {e}");
        }
    }

    async fn note(&self, text: &str) {
        if let Err(e) = self.journal.event(&self.run_id, Some(&self.uuid), EventKind::Message, text, None).await {
            warn!(uuid = %self.uuid, "could not journal a message: {e}");
        }
        let _ = self.events.send(EngineEvent::Note(format!("{}: {text}", self.vm)));
    }

    async fn start_attempt(
        &self,
        kind: AttemptKind,
        to: &str,
        spec: &MoveSpec,
        compression: Option<Compression>,
    ) -> Option<u32> {
        let attempt = NewAttempt { kind, target: to.to_string(), estimate: spec.estimate.clone(), compression };
        match self.journal.record_attempt_start(&self.run_id, &self.uuid, &attempt).await {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(uuid = %self.uuid, "could not journal an attempt; not starting it: {e}");
                None
            }
        }
    }

    async fn end_attempt(&self, number: u32, outcome: &Outcome) {
        let r = &outcome.report;
        let end = AttemptEnd {
            outcome: outcome.status,
            message: outcome.message.clone(),
            wall_ms: Some(r.wall_ms),
            job_ms: r.job_ms,
            downtime_ms: r.downtime_ms,
            bytes: Some(r.transferred_bytes),
            passes: u32::try_from(r.memory_passes).ok(),
            memory_bytes: r.memory_bytes,
            memory_sent_bytes: r.memory_sent_bytes,
        };
        if let Err(e) = self.journal.record_attempt_end(&self.run_id, &self.uuid, number, &end).await {
            warn!(uuid = %self.uuid, "could not journal the end of attempt {number}: {e}");
        }
        // What the driver did at the end, in words ("runs on host-b, verified").
        for text in &r.messages {
            let _ = self.journal.event(&self.run_id, Some(&self.uuid), EventKind::Message, text, None).await;
        }
    }
}

/// The compression an attempt's stream uses: a live one's, when it compresses.
pub(crate) fn compression_of(kind: AttemptKind, stream: &StreamOptions) -> Option<Compression> {
    (kind == AttemptKind::Live && stream.compression != Compression::None).then_some(stream.compression)
}

fn request(input: &TaskInput) -> MoveRequest {
    MoveRequest {
        vm: input.spec.uuid.clone(),
        from: input.spec.from.clone(),
        to: input.to.clone(),
        run_id: input.run_id.clone(),
        delete_source_volumes: input.policy.delete_source_volumes,
        copies: Vec::new(),
    }
}

/// The reversible preparation of either kind of move: its disks checked and the target's
/// volumes created, each journaled first. Returns the request with its copies.
async fn prepare<D: Driver>(
    driver: &D,
    record: &mut Move,
    steps: &Steps,
    input: &TaskInput,
) -> Result<MoveRequest, Outcome> {
    record.begin(Phase::Prepared).await.map_err(|e| failure(Status::FailureInit, e))?;
    let mut request = request(input);
    let needed = driver.plan_volumes(&request).await.map_err(|e| failed(e, None))?;
    request.copies = steps.create_volumes(driver, &needed).await.map_err(|e| Outcome {
        transient: e.kind.is_transient(),
        ..failure(Status::FailureInit, format!("could not start: {}", e.message))
    })?;
    record.end(Phase::Prepared).await;
    Ok(request)
}

/// After a move that did not complete with its VM on its source: the volumes it created
/// are deleted, and the outcome says so.
async fn undo<D: Driver>(driver: &D, steps: &Steps, request: &MoveRequest, mut outcome: Outcome) -> Outcome {
    if matches!(outcome.status, Status::FailureInit | Status::FailureWait | Status::Aborted) {
        let said = steps.delete_copies(driver, &request.copies).await;
        outcome.report.messages.extend(said);
    }
    outcome
}

/// After a verified move: finalized, source copies deleted when the policy says, the
/// report's volumes filled in.
async fn finalize<D: Driver>(
    driver: &D,
    record: &mut Move,
    steps: &Steps,
    request: &MoveRequest,
    report: &mut MoveReport,
) {
    if record.begin(Phase::Finalized).await.is_err() {
        report
            .messages
            .push("the finalized phase could not be journaled: metadata and source copies left as they are".into());
        return;
    }
    crate::failpoint::reach("finalize", &record.vm).await;
    let (said, deleted) = steps.finalize(driver, request).await;
    report.messages.extend(said);
    if !request.copies.is_empty() {
        report.created_volumes = request.copies.iter().map(|c| c.target_path.clone()).collect();
        report.deleted_volumes = deleted;
    }
    record.end(Phase::Finalized).await;
}

async fn live<D: Driver>(
    driver: &D,
    record: &mut Move,
    steps: &Steps,
    input: &TaskInput,
    controls: &mut mpsc::UnboundedReceiver<TaskControl>,
    signals: &mpsc::UnboundedSender<TaskSignal>,
) -> Outcome {
    let vm = &input.spec.vm;
    let mut sending = false;
    let mut watch = SendWatch::default();
    let mut cap = input.bandwidth_mib_s;
    crate::failpoint::reach("start", vm).await;
    let request = match prepare(driver, record, steps, input).await {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let start = ferry_converge::start(
        &input.policy,
        &StartInput {
            memory_mib: input.spec.memory_mib,
            dirty_mib_s: input.spec.dirty_mib_s,
            bandwidth_mib_s: input.bandwidth_mib_s,
        },
    );
    let options = live_options(&start, input.max_downtime_ms, input.tls, input.stream);
    let bounds = Bounds::of(&input.policy, input.spec.memory_mib, input.completion_timeout.map(|t| t.as_secs_f64()));
    let mut converger = Converger::new(bounds, &start);
    // The job's intent is journaled before it starts: a crash from here on finds the move
    // transferring and asks the hosts.
    if let Err(e) = record.begin(Phase::Transferring).await {
        return undo(driver, steps, &request, failure(Status::FailureInit, e)).await;
    }
    let mut migration = match driver.migrate_live(request.clone(), options.clone()).await {
        Ok(m) => m,
        Err(e) => return undo(driver, steps, &request, failed(e, None)).await,
    };
    let started = Instant::now();
    record.decision(0.0, &format!("started live to {}: {}", input.to, start.reason), json!(options)).await;
    crate::failpoint::reach("transferring", vm).await;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut abort: Option<String> = None;
    let mut by_operator = false;
    let mut sampling = true;
    let mut saying = true;
    let mut said = Vec::new();
    let mut switched = false;
    let result = loop {
        // Biased, like the dispatcher's: the same run takes the same turns (the simulator).
        let decision = tokio::select! {
            biased;
            sample = migration.progress.recv(), if sampling => match sample {
                Some(sample) => {
                    let sends = watch.sends(&sample, cap);
                    if sends != sending {
                        sending = sends;
                        let _ = signals.send(TaskSignal::Sending(input.item, sends));
                    }
                    if sample.switched_over && !switched {
                        // Journaled first: the next move may start on the slot it frees.
                        switched = true;
                        switched_over(record).await;
                        let _ = signals.send(TaskSignal::SwitchedOver(input.item));
                    }
                    if sample.switching_over {
                        None
                    } else {
                        let _ = record.events.send(EngineEvent::Sample { vm: vm.clone(), progress: sample.clone() });
                        converger.observe(started.elapsed().as_secs_f64(), &sample)
                    }
                }
                None => {
                    // The job is over (switch-over done, or failed): its link is free.
                    sampling = false;
                    if sending {
                        sending = false;
                        let _ = signals.send(TaskSignal::Sending(input.item, false));
                    }
                    None
                }
            },
            line = migration.said.recv(), if saying => {
                match line {
                    Some(line) => {
                        record.said(&line).await;
                        said.push(line);
                    }
                    None => saying = false,
                }
                None
            }
            outcome = &mut migration.outcome => {
                break outcome.unwrap_or_else(|_| Err(MoveError::init(
                    ErrorKind::Internal,
                    "the migration thread ended without an outcome",
                )));
            }
            control = controls.recv() => match control {
                Some(TaskControl::Bandwidth(b)) => {
                    cap = Some(b);
                    converger.bandwidth_changed(b);
                    let _ = migration.controls.send(Control::SetBandwidth(mib_s(b)));
                    let at = started.elapsed().as_secs_f64();
                    record.decision(at, &format!("bandwidth set to {} MiB/s: its share of the hosts' links changed", mib_s(b)), json!({ "bandwidth_mib_s": mib_s(b) })).await;
                    None
                }
                Some(TaskControl::Abort) if abort.is_none() => {
                    abort = Some("aborted by the operator".into());
                    by_operator = true;
                    let _ = migration.controls.send(Control::Abort);
                    None
                }
                _ => None,
            },
            _ = tick.tick(), if abort.is_none() && !switched => converger.tick(started.elapsed().as_secs_f64()),
        };
        let Some(decision) = decision else { continue };
        if abort.is_some() {
            continue;
        }
        let control = match &decision {
            Decision::RaiseDowntime { ms, .. } => Control::SetMaxDowntime(*ms),
            Decision::StartPostCopy { .. } => Control::StartPostCopy,
            Decision::Abort { reason } => {
                abort = Some(format!("aborted: {reason}"));
                Control::Abort
            }
        };
        let _ = migration.controls.send(control);
        let at = started.elapsed().as_secs_f64();
        record.decision(at, &decision.describe(), json!(decision)).await;
    };
    if sending {
        let _ = signals.send(TaskSignal::Sending(input.item, false));
    }
    // What the driver said just before the end, not yet read.
    while let Ok(line) = migration.said.try_recv() {
        record.said(&line).await;
        said.push(line);
    }
    match result {
        Ok(mut report) => {
            crate::failpoint::reach("completed", vm).await;
            if !switched {
                switched_over(record).await;
            }
            finalize(driver, record, steps, &request, &mut report).await;
            let elapsed = record.started.elapsed().as_secs_f64();
            Outcome {
                status: Status::Success,
                message: format!("moved live to {} in {elapsed:.1} s", input.to),
                report,
                by_policy: false,
                transient: false,
                said,
            }
        }
        Err(e) => {
            let policy_abort = abort.is_some() && !by_operator;
            let mut outcome = failed(e, abort.as_deref());
            if by_operator && outcome.status == Status::FailureWait {
                outcome.status = Status::Aborted;
            }
            outcome.by_policy = policy_abort && outcome.status == Status::FailureWait;
            // A job that failed by itself, not asked to stop, may succeed next time.
            outcome.transient &= abort.is_none();
            outcome.said = said;
            undo(driver, steps, &request, outcome).await
        }
    }
}

/// Journals the switch-over, observed (the VM runs on the target): the transfer is done.
async fn switched_over(record: &mut Move) {
    record.end(Phase::Transferring).await;
    if record.begin(Phase::SwitchedOver).await.is_ok() {
        record.end(Phase::SwitchedOver).await;
    }
}

async fn cold<D: Driver>(
    driver: &D,
    record: &mut Move,
    steps: &Steps,
    input: &TaskInput,
    signals: &mpsc::UnboundedSender<TaskSignal>,
) -> Outcome {
    let request = match prepare(driver, record, steps, input).await {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    if let Err(e) = record.begin(Phase::Transferring).await {
        return undo(driver, steps, &request, failure(Status::FailureInit, e)).await;
    }
    let options = ColdOptions { shutdown_timeout: Duration::from_secs(input.policy.shutdown_timeout_s) };
    let (gate, asks) = StepGate::new();
    let (started_tx, mut started_on_target) = mpsc::unbounded_channel();
    // The steps are journaled on a task of their own: a step's fenced write holds the
    // journal's write lock until it commits, and this task's own writes (the switch-over's
    // phase) must not wait for a transaction only this task could drive to its commit.
    let journaling = tokio::spawn(steps.clone().gate(asks, input.to.clone(), started_tx));
    let moving = driver.move_cold(request.clone(), options, gate);
    tokio::pin!(moving);
    let mut switched = false;
    let result = loop {
        tokio::select! {
            biased;
            Some(()) = started_on_target.recv(), if !switched => {
                // The VM started on the target: the cold move's point of no return.
                switched = true;
                switched_over(record).await;
                let _ = signals.send(TaskSignal::SwitchedOver(input.item));
            }
            result = &mut moving => break result,
        }
    };
    // The driver dropped its gate with its last step: the steps still queued are journaled.
    if let Err(e) = journaling.await {
        warn!(vm = %input.spec.vm, "the step journal of a cold move ended abnormally: {e}");
    }
    while let Ok(()) = started_on_target.try_recv() {
        if !switched {
            switched = true;
            switched_over(record).await;
            let _ = signals.send(TaskSignal::SwitchedOver(input.item));
        }
    }
    match result {
        Ok(mut report) => {
            if !switched {
                switched_over(record).await;
            }
            finalize(driver, record, steps, &request, &mut report).await;
            Outcome {
                status: Status::SuccessCold,
                message: format!("moved cold to {} (the guest restarted)", input.to),
                report,
                by_policy: false,
                transient: false,
                said: Vec::new(),
            }
        }
        Err(e) => undo(driver, steps, &request, failed(e, None)).await,
    }
}

fn failure(status: Status, message: String) -> Outcome {
    Outcome { status, message, report: MoveReport::default(), by_policy: false, transient: false, said: Vec::new() }
}

/// A driver failure as an outcome; `why` is the abort's reason when the engine aborted the
/// migration. Worth retrying only when its kind says the host could not be reached or did not
/// answer in time, and it was not asked to stop.
fn failed(e: MoveError, why: Option<&str>) -> Outcome {
    match e {
        MoveError::Init { kind, reason } => Outcome {
            transient: kind.is_transient(),
            ..failure(Status::FailureInit, format!("could not start: {reason}"))
        },
        MoveError::Transfer { kind, reason, report, aborted } => {
            let message = match why {
                Some(why) => format!("{why}; the VM runs on its source ({reason})"),
                None => format!("did not complete: {reason}; the VM runs on its source"),
            };
            // A job that failed by itself (QEMU reports a broken stream as an internal
            // failure) may succeed next time; one the host refused will not.
            let transient = !aborted && (kind.is_transient() || kind == ErrorKind::Internal);
            Outcome { transient, report: *report, ..failure(Status::FailureWait, message) }
        }
        MoveError::Lost { reason, locations } => Outcome {
            report: MoveReport { locations, ..MoveReport::default() },
            ..failure(Status::FailureLost, format!("{reason}; run `ferry cleanup --vm`"))
        },
    }
}

/// What a live migration starts with: the convergence policy's start, the operator's
/// downtime limit when there is one, and the stream the pair of hosts uses.
pub fn live_options(start: &StartPlan, max_downtime_ms: Option<u64>, tls: bool, stream: StreamOptions) -> LiveOptions {
    LiveOptions {
        auto_converge: start.auto_converge,
        postcopy: start.postcopy,
        bandwidth_mib_s: start.bandwidth_mib_s.map(mib_s),
        max_downtime_ms: Some(max_downtime_ms.unwrap_or(start.downtime_ms)),
        auto_converge_initial: start.throttle.map(|t| t.0),
        auto_converge_increment: start.throttle.map(|t| t.1),
        tls,
        stream,
    }
}

/// Whether a migration is sending, judged from its progress samples: from its first byte
/// to its switch-over, as long as its bytes grow at [`SENDING_MIN_FRACTION`] of its cap. While
/// it sends less (a large guest's zero pages take seconds), its share of the links goes to
/// the migrations beside it.
#[derive(Debug, Default)]
struct SendWatch {
    /// The last sample's job time, ms, and bytes sent.
    last: Option<(u64, u64)>,
    sending: bool,
}

impl SendWatch {
    fn sends(&mut self, sample: &ferry_driver::Progress, cap_mib_s: Option<f64>) -> bool {
        let now = (sample.elapsed_ms, sample.transferred_bytes);
        self.sending = match self.last {
            _ if sample.switching_over || sample.transferred_bytes == 0 => false,
            None | Some((_, 0)) => true,
            Some((at, bytes)) if now.0 > at => {
                let mib_s = now.1.saturating_sub(bytes) as f64 / (1 << 20) as f64 / ((now.0 - at) as f64 / 1000.0);
                cap_mib_s.is_none_or(|cap| mib_s >= SENDING_MIN_FRACTION * cap)
            }
            // The same moment again: no news.
            Some(_) => self.sending,
        };
        self.last = Some(now);
        self.sending
    }
}

fn mib_s(b: f64) -> u64 {
    b.floor().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use ferry_driver::ErrorKind::{self, *};
    use ferry_driver::{MoveError, MoveReport, Progress};
    use ferry_model::Status;

    use super::{failed, SendWatch};

    #[test]
    fn a_failure_is_retried_by_its_kind_never_its_words() {
        // The messages say "unreachable" where the kind does not, and the reverse: the old
        // search of the text would have decided the other way.
        // (kind, message, a start retried, a transfer that failed by itself retried)
        let table: &[(ErrorKind, &str, bool, bool)] = &[
            (Unreachable, "host-b: Cannot recv data: Connection reset by peer", true, true),
            (TimedOut, "cannot acquire state change lock", true, true),
            (Refused, "not running on host-a: a stopped VM can only move cold", false, false),
            (NotFound, "no host host-z in the cluster (unreachable?)", false, false),
            (Conflict, "volume vm-1.qcow2 already exists in pool local on host-a", false, false),
            (Internal, "operation failed: migration out job: unexpectedly failed", false, true),
            (Other, "the run timed out waiting for a slot", false, false),
        ];
        for &(kind, reason, retried, transfer_retried) in table {
            let init = failed(MoveError::init(kind, reason), None);
            assert_eq!((init.status, init.transient), (Status::FailureInit, retried), "start, {kind}");
            let transfer = |aborted| MoveError::Transfer {
                kind,
                reason: reason.into(),
                aborted,
                report: Box::new(MoveReport::default()),
            };
            let done = failed(transfer(false), None);
            assert_eq!((done.status, done.transient), (Status::FailureWait, transfer_retried), "transfer, {kind}");
            // Asked to stop: not retried, whatever the kind.
            assert!(!failed(transfer(true), None).transient, "aborted transfer, {kind}");
        }
        let lost = failed(MoveError::Lost { reason: "unreachable".into(), locations: vec![] }, None);
        assert_eq!((lost.status, lost.transient), (Status::FailureLost, false));
    }

    fn sample(ms: u64, mib: u64) -> Progress {
        Progress { elapsed_ms: ms, transferred_bytes: mib << 20, ..Progress::default() }
    }

    #[test]
    fn sending_follows_the_rate_of_the_bytes_against_the_cap() {
        let mut watch = SendWatch::default();
        let cap = Some(400.0);
        let seen: Vec<bool> = [
            sample(0, 0),      // setting up
            sample(500, 100),  // the first bytes
            sample(1000, 300), // 400 MiB/s
            sample(1500, 310), // 20 MiB/s: zero pages
            sample(1500, 310), // the same moment again
            sample(2000, 350), // 80 MiB/s: at 20 % of the cap
            Progress { switching_over: true, ..sample(2500, 360) },
        ]
        .iter()
        .map(|s| watch.sends(s, cap))
        .collect();
        assert_eq!(seen, [false, true, true, false, false, true, false]);
    }

    #[test]
    fn without_a_cap_any_byte_counts() {
        let mut watch = SendWatch::default();
        assert!(watch.sends(&sample(500, 1), None));
        assert!(watch.sends(&sample(1000, 2), None));
    }
}
