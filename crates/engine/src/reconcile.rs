//! After a crash: the journal's moves in flight, settled against what the hypervisors say.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_converge::Stall;
use ferry_driver::{Driver, MoveRequest, TargetVolume, VolumeCopy};
use ferry_journal::{AttemptEnd, AttemptKind, EventKind, Journal, Lease, Move, RunKind};
use ferry_model::{created_volumes, Location, Status, Step, StepRecord};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::recovery::{decide, describe, Recovery};
use crate::run::{EngineError, EngineEvent};
use crate::saga::Steps;

/// The shortest wait for a job, whatever the VM's memory: the design's floor for a
/// completion timeout (a small guest's job still needs its setup and switch-over).
pub const WAIT_AT_LEAST: Duration = Duration::from_secs(60);

/// How long an aborted job may take to end before its move is FAILURE-LOST: an abort ends
/// a pre-copy job within seconds (QEMU stops sending at once); one still running a minute
/// later is stuck, and waiting longer would hold `resume` for nothing.
pub const AFTER_ABORT: Duration = Duration::from_secs(60);

/// How often a job waited out is described in a note.
const NOTE_EVERY: Duration = Duration::from_secs(10);

/// How long reconciliation waits for a migration job that outlived its ferry before it
/// aborts it, per VM: the plan's completion timeout, per GiB of the VM's memory, or its
/// stall timeout when the job stops getting closer first (as the ferry that started it
/// would have).
#[derive(Debug, Clone, PartialEq)]
pub struct Waits {
    /// Seconds per GiB of the VM's memory (the policy's `completion_timeout_per_gib_s`).
    pub per_gib_s: u64,
    /// Each VM's memory, MiB, by UUID (the run's moves); a VM not listed waits
    /// [`WAIT_AT_LEAST`].
    pub memory_mib: HashMap<String, u64>,
    /// Every VM waits this instead (`ferry move`'s hand-set completion timeout; zero aborts
    /// at once, as `ferry abort` does).
    pub fixed: Option<Duration>,
    /// How long an aborted job may take to end ([`AFTER_ABORT`]).
    pub after_abort: Duration,
    /// Abort a job whose data still to send has not dropped for this long (the policy's
    /// `stall_timeout_s`; `None` under QEMU's own convergence, which has none).
    pub stall_timeout: Option<Duration>,
}

impl Waits {
    /// `per_gib_s` seconds per GiB of each VM's memory (`memory_mib` by UUID), at least
    /// [`WAIT_AT_LEAST`], and no stall timeout.
    pub fn per_gib(per_gib_s: u64, memory_mib: HashMap<String, u64>) -> Waits {
        Waits { per_gib_s, memory_mib, fixed: None, after_abort: AFTER_ABORT, stall_timeout: None }
    }

    /// No wait: a running job is aborted at once (a post-copy job, which cannot be, is
    /// still waited out).
    pub fn abort_at_once() -> Waits {
        Waits {
            per_gib_s: 0,
            memory_mib: HashMap::new(),
            fixed: Some(Duration::ZERO),
            after_abort: AFTER_ABORT,
            stall_timeout: None,
        }
    }

    /// How long VM `uuid`'s job is waited for before it is aborted.
    pub fn for_vm(&self, uuid: &str) -> Duration {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        let gib = self.memory_mib.get(uuid).map_or(0.0, |&mib| mib as f64 / 1024.0);
        Duration::from_secs_f64(gib * self.per_gib_s as f64).max(WAIT_AT_LEAST)
    }
}

/// How long to wait for one VM's job, and where its progress goes.
struct Patience {
    wait: Duration,
    after_abort: Duration,
    stall_timeout: Option<Duration>,
    events: mpsc::UnboundedSender<EngineEvent>,
}

/// What reconciliation did with one move that was in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    /// VM name.
    pub vm: String,
    /// Its status now: SUCCESS or SUCCESS-COLD (adopted; ROLLED-BACK in a rollback run),
    /// PENDING (re-queued), or FAILURE-LOST.
    pub status: Status,
    /// Why, in words.
    pub message: String,
    /// What was done on the hosts, in words.
    pub actions: Vec<String>,
}

/// Settles every move of the run `lease` holds that the journal has in flight (`MIGRATING`), from
/// the steps its journal recorded and where the hosts say the VM is (`recovery::decide`):
///
/// - a migration job still running on the source is waited out, up to its VM's wait in
///   `waits` (then aborted; a job that does not end within `waits.after_abort` of its abort
///   leaves the move FAILURE-LOST, saying what to do): its own end decides. A job in
///   post-copy cannot be aborted: it is waited to its end. Its samples go to `events`
///   ([`EngineEvent::Sample`]), with a [`EngineEvent::Note`] every 10 s;
/// - past its point of no return (a live VM running on its target alone; a cold move's VM
///   defined on its target, its copies finished) the move is finished: the cold VM started
///   there and undefined on its source if those steps had not happened, ferry's metadata
///   finalized, the source's copies deleted when `delete_source_volumes` (the plan's policy);
///   adopted (SUCCESS, or SUCCESS-COLD for a cold move);
/// - short of it (the VM on its source only) the move is undone: a cold move's guest started
///   again on its source, the volumes the journal says the move created deleted (no others),
///   ferry's metadata of this run cleared; re-queued (PENDING);
/// - anything else (nowhere, on another host, running beside a copy): FAILURE-LOST, with
///   where it was seen.
///
/// Moves are settled concurrently, the lease kept every second meanwhile; when it is lost,
/// reconciliation stops at once with [`ferry_journal::JournalError::LeaseLost`] (jobs go on
/// in libvirt; the new holder settles them). Runs nothing else: the caller then runs the
/// engine.
pub async fn reconcile<D: Driver>(
    driver: Arc<D>,
    journal: &Journal,
    lease: &Lease,
    waits: &Waits,
    delete_source_volumes: bool,
    events: &mpsc::UnboundedSender<EngineEvent>,
) -> Result<Vec<Reconciled>, EngineError> {
    let run_id = lease.run();
    lease.keep().await?;
    let attempts = journal.attempts(run_id).await?;
    let kind = journal.run(run_id).await?.kind;
    let mut settling = JoinSet::new();
    for m in journal.moves(run_id).await? {
        if m.status != Status::Migrating {
            continue;
        }
        let attempt = attempts.iter().filter(|a| a.uuid == m.uuid).max_by_key(|a| a.number).cloned();
        let (driver, journal) = (driver.clone(), journal.clone());
        let patience = Patience {
            wait: waits.for_vm(&m.uuid),
            after_abort: waits.after_abort,
            stall_timeout: waits.stall_timeout,
            events: events.clone(),
        };
        settling
            .spawn(async move { settle(&*driver, &journal, m, attempt, kind, patience, delete_source_volumes).await });
    }
    let mut settled = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            joined = settling.join_next() => match joined {
                None => break,
                Some(Ok(result)) => settled.push(result?),
                Some(Err(e)) => return Err(EngineError::Inconsistent(format!("a reconciliation task failed: {e}"))),
            },
            // A job waited out may take many minutes: the holder says it is alive meanwhile,
            // and stops (dropping the settling tasks, not aborting any job) once it is not.
            _ = tick.tick() => lease.keep().await?,
        }
    }
    settled.sort_by(|a, b| a.vm.cmp(&b.vm));
    Ok(settled)
}

async fn settle<D: Driver>(
    driver: &D,
    journal: &Journal,
    m: Move,
    attempt: Option<ferry_journal::Attempt>,
    run_kind: RunKind,
    patience: Patience,
    delete_source_volumes: bool,
) -> Result<Reconciled, EngineError> {
    let mut actions = Vec::new();
    let kind = attempt.as_ref().map_or(AttemptKind::Live, |a| a.kind);
    let target = m.target.clone().or_else(|| attempt.as_ref().map(|a| a.target.clone()));

    // A migration that outlived its ferry goes on in libvirt: its own end decides.
    let stuck = wait_out_job(driver, &m, &patience, &mut actions).await;

    let located = match stuck {
        Some(why) => Err(why),
        None => driver.locate(&m.uuid).await.map_err(|e| {
            format!("could not find where it runs after a crash ({e}); run `ferry cleanup --vm {}`", m.vm)
        }),
    };
    let (status, message) = match located {
        Err(why) => (Status::FailureLost, why),
        Ok(locations) => match &target {
            None => (
                Status::FailureLost,
                format!(
                    "after a crash it was found {}, and the journal names no target; run `ferry cleanup --vm {}`",
                    describe(&locations),
                    m.vm
                ),
            ),
            Some(to) => {
                let steps = journal.steps(&m.run, &m.uuid).await?;
                let number = attempt.as_ref().map_or(0, |a| a.number);
                let latest = crate::saga::of_attempt(&steps, number);
                let recovery = decide(kind, &latest, &locations, &m.source, to);
                let recovering = Steps {
                    journal: journal.clone(),
                    run_id: m.run.clone(),
                    uuid: m.uuid.clone(),
                    vm: m.vm.clone(),
                    attempt: number,
                };
                let request = request(&m, to, &steps, delete_source_volumes);
                recover(driver, &recovering, &request, kind, recovery, &steps, &locations, &mut actions).await
            }
        },
    };

    if let Some(a) = &attempt {
        if a.ended_ms.is_none() {
            let outcome = if status == Status::Pending { Status::FailureWait } else { status };
            let end = AttemptEnd {
                outcome,
                message: format!("interrupted: ferry stopped during this attempt; {message}"),
                wall_ms: None,
                job_ms: None,
                downtime_ms: None,
                bytes: None,
                passes: None,
                memory_bytes: None,
                memory_sent_bytes: None,
            };
            journal.record_attempt_end(&m.run, &m.uuid, a.number, &end).await?;
        }
    }
    for action in &actions {
        journal.event(&m.run, Some(&m.uuid), EventKind::Message, action, None).await?;
    }
    let status = crate::run::status_in(run_kind, status);
    journal.set_status(&m.run, &m.uuid, m.generation, status, &message).await?;
    Ok(Reconciled { vm: m.vm, status, message, actions })
}

/// Waits out the migration job still running on `m`'s source, if any: up to
/// `patience.wait`, or while it gets closer within `patience.stall_timeout`, then aborts
/// it; a job in post-copy (which cannot be aborted: the VM
/// already runs on the target) is waited to its end. Returns why the move must end
/// FAILURE-LOST when the job outlived its abort by `patience.after_abort`, `None` once no
/// job runs (or the source cannot be asked: where the VM runs decides then).
async fn wait_out_job<D: Driver>(
    driver: &D,
    m: &Move,
    patience: &Patience,
    actions: &mut Vec<String>,
) -> Option<String> {
    let started = Instant::now();
    let mut aborted_at: Option<Instant> = None;
    let mut post_copy = false;
    let mut noted = started;
    let mut stall = Stall::default();
    while let Ok(Some(progress)) = driver.job(&m.source, &m.uuid).await {
        let at = started.elapsed().as_secs_f64();
        stall.observe(at, &progress);
        if progress.postcopy_active && !post_copy {
            post_copy = true;
            actions.push(format!(
                "its migration job on {} is in post-copy, which cannot be aborted: waited to its end",
                m.source
            ));
        }
        if noted.elapsed() >= NOTE_EVERY {
            noted = Instant::now();
            // What is left, not a share of the total: pre-copy resends dirtied pages, so the
            // bytes sent overtake the estimated total.
            let left_mib = progress.remaining_bytes as f64 / (1024.0 * 1024.0);
            let _ = patience.events.send(EngineEvent::Note(format!(
                "{}: waiting for its migration job on {}{} ({left_mib:.0} MiB left, {:.0} s so far)",
                m.vm,
                m.source,
                if post_copy { ", in post-copy" } else { "" },
                started.elapsed().as_secs_f64()
            )));
        }
        let _ = patience.events.send(EngineEvent::Sample { vm: m.vm.clone(), progress });
        let why_abort = if started.elapsed() >= patience.wait {
            Some(format!("after {} s", patience.wait.as_secs()))
        } else {
            patience.stall_timeout.and_then(|timeout| stall.stalled(at, timeout.as_secs_f64()))
        };
        match (aborted_at, why_abort) {
            (None, Some(why)) if !post_copy => {
                actions.push(match driver.abort_job(&m.source, &m.uuid).await {
                    Ok(()) => format!("aborted the migration job still running on {}: {why}", m.source),
                    Err(e) => format!("could not abort the migration job on {}: {e}", m.source),
                });
                aborted_at = Some(Instant::now());
            }
            (Some(at), _) if !post_copy && at.elapsed() >= patience.after_abort => {
                return Some(format!(
                    "its migration job on {} did not end within {} s of its abort; once `virsh domjobinfo {}` \
                     on {} shows no job, run `ferry cleanup --vm {}`",
                    m.source,
                    patience.after_abort.as_secs(),
                    m.uuid,
                    m.source,
                    m.vm
                ));
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if started.elapsed() >= Duration::from_millis(500) && aborted_at.is_none() {
        actions.push(format!(
            "waited {:.1} s for the migration job still running on {}",
            started.elapsed().as_secs_f64(),
            m.source
        ));
    }
    None
}

/// Carries out `recovery`; returns the move's status and why, in words, and says what it
/// did in `actions`.
#[allow(clippy::too_many_arguments)]
async fn recover<D: Driver>(
    driver: &D,
    steps: &Steps,
    request: &MoveRequest,
    kind: AttemptKind,
    recovery: Recovery,
    all_steps: &[StepRecord],
    locations: &[Location],
    actions: &mut Vec<String>,
) -> (Status, String) {
    let (vm, from, to) = (&steps.vm, &request.from, &request.to);
    match recovery {
        Recovery::Adopt { start_target, undefine_source } => {
            if start_target {
                if let Err(e) = restart(driver, steps, to, &request.vm, actions).await {
                    return (Status::FailureLost, format!("its cold move was defined on {to} but could not start there ({e}); run `ferry cleanup --vm {vm}`"));
                }
            }
            if undefine_source {
                let step = Step::Undefine { host: from.clone() };
                let result = match steps.begin(&step).await {
                    Ok(()) => driver.remove_copy(from, &request.vm).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                steps.end(&step, &result).await;
                match result {
                    Ok(done) => actions.push(done),
                    Err(e) => actions.push(format!("its definition on {from} was kept: {e}")),
                }
            }
            let (said, _) = steps.finalize(driver, request).await;
            actions.extend(said);
            let status = if kind == AttemptKind::Cold { Status::SuccessCold } else { Status::Success };
            (status, format!("adopted: the move completed on {to} while ferry was not running"))
        }
        Recovery::Undo { start_source } => {
            if start_source {
                if let Err(e) = restart(driver, steps, from, &request.vm, actions).await {
                    return (Status::FailureLost, format!("its cold move was undone but it could not start again on {from} ({e}); run `ferry cleanup --vm {vm}`"));
                }
            }
            for (host, pool, name) in created_volumes(all_steps) {
                actions.push(steps.delete_volume(driver, &host, &pool, &name).await);
            }
            match driver.metadata(from, &request.vm).await {
                Ok(Some(m)) if m.run_id == request.run_id => match driver.set_metadata(from, &request.vm, None).await {
                    Ok(()) => actions.push(format!("cleared ferry's metadata on {from}")),
                    Err(e) => actions.push(format!("could not clear ferry's metadata on {from}: {e}")),
                },
                _ => {}
            }
            (Status::Pending, format!("re-queued: the move was interrupted and did not complete; it runs on {from}"))
        }
        Recovery::Lost(why) => (
            Status::FailureLost,
            format!("after a crash it was found {} ({why}); run `ferry cleanup --vm {vm}`", describe(locations)),
        ),
    }
}

/// Starts the VM on `host` again, journaled.
async fn restart<D: Driver>(
    driver: &D,
    steps: &Steps,
    host: &str,
    uuid: &str,
    actions: &mut Vec<String>,
) -> Result<(), String> {
    let step = Step::Start { host: host.to_string() };
    let result = match steps.begin(&step).await {
        Ok(()) => driver.start(host, uuid).await.map(|()| format!("started it on {host}")).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    steps.end(&step, &result).await;
    let done = result?;
    actions.push(done);
    Ok(())
}

/// The move `m` to `to`, as the recovery's steps take it: the copies its journal says it
/// created (what the source would release), and the policy's deletion of source copies.
fn request(m: &Move, to: &str, steps: &[StepRecord], delete_source_volumes: bool) -> MoveRequest {
    let copies = created_volumes(steps)
        .into_iter()
        .filter(|(host, _, _)| host == to)
        .map(|(host, pool, name)| VolumeCopy {
            volume: TargetVolume { host, pool, name, capacity: 0, format: String::new(), source_path: String::new() },
            target_path: String::new(),
        })
        .collect();
    MoveRequest {
        vm: m.uuid.clone(),
        from: m.source.clone(),
        to: to.to_string(),
        run_id: m.run.clone(),
        delete_source_volumes,
        copies,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_waited_for_per_gib_of_its_vms_memory() {
        let memory: HashMap<String, u64> =
            [("big".to_string(), 8 * 1024), ("half".to_string(), 512), ("tiny".to_string(), 128)].into();
        let waits = Waits::per_gib(150, memory);
        let cases = [
            ("big", Duration::from_secs(1200)),
            // 75 s, above the floor.
            ("half", Duration::from_secs(75)),
            // 18.75 s: the floor.
            ("tiny", WAIT_AT_LEAST),
            ("unknown", WAIT_AT_LEAST),
        ];
        for (vm, want) in cases {
            assert_eq!(waits.for_vm(vm), want, "{vm}");
        }
        assert_eq!(waits.after_abort, AFTER_ABORT);
        let fixed = Waits { fixed: Some(Duration::from_secs(7)), ..waits };
        assert_eq!(fixed.for_vm("big"), Duration::from_secs(7));
        assert_eq!(Waits::abort_at_once().for_vm("big"), Duration::ZERO);
    }
}
