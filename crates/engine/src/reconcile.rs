//! After a crash: the journal's moves in flight, settled against what the hypervisors say.

use std::sync::Arc;
use std::time::Duration;

use ferry_driver::{Driver, MoveRequest, TargetVolume, VolumeCopy};
use ferry_journal::{AttemptEnd, AttemptKind, EventKind, Journal, Move, RunKind};
use ferry_model::{created_volumes, Location, Status, Step, StepRecord};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::recovery::{decide, describe, Recovery};
use crate::run::EngineError;
use crate::saga::Steps;

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

/// Settles every move of run `run_id` that the journal has in flight (`MIGRATING`), from
/// the steps its journal recorded and where the hosts say the VM is (`recovery::decide`):
///
/// - a migration job still running on the source is waited out, up to `wait` (then
///   aborted): its own end decides;
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
/// Moves are settled concurrently. Runs nothing else: the caller then runs the engine.
pub async fn reconcile<D: Driver>(
    driver: Arc<D>,
    journal: &Journal,
    run_id: &str,
    wait: Duration,
    delete_source_volumes: bool,
) -> Result<Vec<Reconciled>, EngineError> {
    let attempts = journal.attempts(run_id).await?;
    let kind = journal.run(run_id).await?.kind;
    let mut settling = JoinSet::new();
    for m in journal.moves(run_id).await? {
        if m.status != Status::Migrating {
            continue;
        }
        let attempt = attempts.iter().filter(|a| a.uuid == m.uuid).max_by_key(|a| a.number).cloned();
        let (driver, journal) = (driver.clone(), journal.clone());
        settling.spawn(async move { settle(&*driver, &journal, m, attempt, kind, wait, delete_source_volumes).await });
    }
    let mut settled = Vec::new();
    while let Some(joined) = settling.join_next().await {
        match joined {
            Ok(result) => settled.push(result?),
            Err(e) => return Err(EngineError::Inconsistent(format!("a reconciliation task failed: {e}"))),
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
    wait: Duration,
    delete_source_volumes: bool,
) -> Result<Reconciled, EngineError> {
    let mut actions = Vec::new();
    let kind = attempt.as_ref().map_or(AttemptKind::Live, |a| a.kind);
    let target = m.target.clone().or_else(|| attempt.as_ref().map(|a| a.target.clone()));

    // A migration that outlived its ferry goes on in libvirt: its own end decides.
    let started = Instant::now();
    let mut abort_sent = false;
    while let Ok(Some(_)) = driver.job(&m.source, &m.uuid).await {
        if started.elapsed() >= wait && !abort_sent {
            let _ = driver.abort_job(&m.source, &m.uuid).await;
            actions.push(format!("aborted the migration job still running on {} after {} s", m.source, wait.as_secs()));
            abort_sent = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if started.elapsed() >= Duration::from_millis(500) && !abort_sent {
        actions.push(format!(
            "waited {:.1} s for the migration job still running on {}",
            started.elapsed().as_secs_f64(),
            m.source
        ));
    }

    let (status, message) = match driver.locate(&m.uuid).await {
        Err(e) => (
            Status::FailureLost,
            format!("could not find where it runs after a crash ({e}); run `ferry cleanup --vm {}`", m.vm),
        ),
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
