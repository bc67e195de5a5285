//! One move of a run: its phases journaled around the driver's work, its migration watched.

use std::sync::Arc;
use std::time::Duration;

use ferry_driver::{ColdOptions, Control, Driver, LiveOptions, MoveError, MoveReport, MoveRequest};
use ferry_journal::{AttemptKind, Journal};
use ferry_model::{Phase, Status};
use ferry_plan::Policy;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use crate::run::{EngineEvent, MoveSpec};

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
    pub bandwidth_mib_s: Option<f64>,
    pub max_downtime_ms: Option<u64>,
    /// Instead of the policy's per-GiB completion timeout.
    pub completion_timeout: Option<Duration>,
    pub policy: Policy,
    /// The move's journal generation when the task starts; the task owns the record until
    /// it reports back.
    pub generation: i64,
}

/// How a move ended.
pub(crate) struct TaskDone {
    pub item: usize,
    pub status: Status,
    pub message: String,
    pub report: MoveReport,
    pub generation: i64,
}

/// Runs one move and reports its end on `done`.
pub(crate) async fn run<D: Driver>(
    driver: Arc<D>,
    journal: Journal,
    input: TaskInput,
    controls: mpsc::UnboundedReceiver<TaskControl>,
    done: mpsc::UnboundedSender<TaskDone>,
    events: mpsc::UnboundedSender<EngineEvent>,
) {
    let item = input.item;
    let mut phases = Phases {
        journal,
        run_id: input.run_id.clone(),
        uuid: input.spec.uuid.clone(),
        vm: input.spec.vm.clone(),
        generation: input.generation,
        events: events.clone(),
    };
    let (status, message, report) = match input.kind {
        AttemptKind::Live => live(&*driver, &mut phases, &input, controls, &events).await,
        AttemptKind::Cold => cold(&*driver, &mut phases, &input).await,
    };
    let _ = done.send(TaskDone { item, status, message, report, generation: phases.generation });
}

/// The move's phases in the journal. Each is begun before its side effect; a failure to
/// write one before the driver acts stops the move before it starts.
struct Phases {
    journal: Journal,
    run_id: String,
    uuid: String,
    vm: String,
    generation: i64,
    events: mpsc::UnboundedSender<EngineEvent>,
}

impl Phases {
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
}

fn request(input: &TaskInput) -> MoveRequest {
    MoveRequest {
        vm: input.spec.uuid.clone(),
        from: input.spec.from.clone(),
        to: input.to.clone(),
        run_id: input.run_id.clone(),
        delete_source_volumes: input.policy.delete_source_volumes,
    }
}

/// The longest a live migration may take: the plan's seconds per GiB of memory, at least
/// a minute.
fn completion_timeout(policy: &Policy, memory_mib: u64) -> Duration {
    let seconds = policy.completion_timeout_per_gib_s as f64 * memory_mib as f64 / 1024.0;
    Duration::from_secs_f64(seconds.max(60.0))
}

async fn live<D: Driver>(
    driver: &D,
    phases: &mut Phases,
    input: &TaskInput,
    mut controls: mpsc::UnboundedReceiver<TaskControl>,
    events: &mpsc::UnboundedSender<EngineEvent>,
) -> (Status, String, MoveReport) {
    let vm = &input.spec.vm;
    crate::failpoint::reach("start", vm).await;
    if let Err(e) = phases.begin(Phase::Prepared).await {
        return (Status::FailureInit, e, MoveReport::default());
    }
    let options = LiveOptions {
        auto_converge: input.policy.auto_converge,
        postcopy: input.policy.postcopy,
        bandwidth_mib_s: input.bandwidth_mib_s.map(mib_s),
        max_downtime_ms: input.max_downtime_ms,
    };
    let mut migration = match driver.migrate_live(request(input), options).await {
        Ok(m) => m,
        Err(e) => return failed(e, None),
    };
    phases.end(Phase::Prepared).await;
    if let Err(e) = phases.begin(Phase::Transferring).await {
        warn!(%vm, "{e}");
    }
    crate::failpoint::reach("transferring", vm).await;

    let timeout = input.completion_timeout.unwrap_or_else(|| completion_timeout(&input.policy, input.spec.memory_mib));
    let stall = Duration::from_secs(input.policy.stall_timeout_s.max(1));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    let mut last_progress = (0u64, Instant::now());
    let mut abort: Option<String> = None;
    let mut by_operator = false;
    let mut sampling = true;
    let result = loop {
        tokio::select! {
            sample = migration.progress.recv(), if sampling => match sample {
                Some(sample) => {
                    if sample.transferred_bytes > last_progress.0 {
                        last_progress = (sample.transferred_bytes, Instant::now());
                    }
                    let _ = events.send(EngineEvent::Sample { vm: vm.clone(), progress: sample });
                }
                None => sampling = false,
            },
            outcome = &mut migration.outcome => {
                break outcome.unwrap_or_else(|_| Err(MoveError::Init {
                    reason: "the migration thread ended without an outcome".into(),
                }));
            }
            control = controls.recv() => match control {
                Some(TaskControl::Bandwidth(b)) => {
                    let _ = migration.controls.send(Control::SetBandwidth(mib_s(b)));
                }
                Some(TaskControl::Abort) if abort.is_none() => {
                    abort = Some("aborted by the operator".into());
                    by_operator = true;
                    let _ = migration.controls.send(Control::Abort);
                }
                _ => {}
            },
            _ = &mut deadline, if abort.is_none() => {
                abort = Some(match input.completion_timeout {
                    Some(t) => format!("aborted: not complete within the {} s completion timeout", t.as_secs()),
                    None => format!(
                        "aborted: not complete within {} s ({} s per GiB of memory, at least 60 s)",
                        timeout.as_secs(),
                        input.policy.completion_timeout_per_gib_s
                    ),
                });
                let _ = migration.controls.send(Control::Abort);
            }
            _ = watch.tick(), if abort.is_none() => {
                if last_progress.1.elapsed() >= stall {
                    abort = Some(format!("aborted: no progress for {} s (stall timeout)", stall.as_secs()));
                    let _ = migration.controls.send(Control::Abort);
                }
            }
        }
    };
    match result {
        Ok(report) => {
            crate::failpoint::reach("completed", vm).await;
            phases.end(Phase::Transferring).await;
            if phases.begin(Phase::Finalized).await.is_ok() {
                phases.end(Phase::Finalized).await;
            }
            let message = format!("moved live to {}", input.to);
            (Status::Success, message, report)
        }
        Err(e) => {
            let (status, message, report) = failed(e, abort.as_deref());
            let status = if by_operator && status == Status::FailureWait { Status::Aborted } else { status };
            (status, message, report)
        }
    }
}

async fn cold<D: Driver>(driver: &D, phases: &mut Phases, input: &TaskInput) -> (Status, String, MoveReport) {
    if let Err(e) = phases.begin(Phase::Transferring).await {
        return (Status::FailureInit, e, MoveReport::default());
    }
    let options = ColdOptions { shutdown_timeout: Duration::from_secs(input.policy.shutdown_timeout_s) };
    match driver.move_cold(request(input), options).await {
        Ok(report) => {
            phases.end(Phase::Transferring).await;
            if phases.begin(Phase::Finalized).await.is_ok() {
                phases.end(Phase::Finalized).await;
            }
            (Status::SuccessCold, format!("moved cold to {} (the guest restarted)", input.to), report)
        }
        Err(e) => failed(e, None),
    }
}

/// A driver failure as a status and a message; `why` is the abort's reason when the
/// engine aborted the migration.
fn failed(e: MoveError, why: Option<&str>) -> (Status, String, MoveReport) {
    match e {
        MoveError::Init { reason } => {
            (Status::FailureInit, format!("could not start: {reason}"), MoveReport::default())
        }
        MoveError::Transfer { reason, report, .. } => {
            let message = match why {
                Some(why) => format!("{why}; the VM runs on its source ({reason})"),
                None => format!("did not complete: {reason}; the VM runs on its source"),
            };
            (Status::FailureWait, message, *report)
        }
        MoveError::Lost { reason, locations } => (
            Status::FailureLost,
            format!("{reason}; run `ferry cleanup --vm`"),
            MoveReport { locations, ..MoveReport::default() },
        ),
    }
}

fn mib_s(b: f64) -> u64 {
    b.floor().max(1.0) as u64
}
