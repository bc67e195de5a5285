//! After a crash: the journal's moves in flight, settled against what the hypervisors say.

use std::sync::Arc;
use std::time::Duration;

use ferry_driver::{Driver, MoveRequest};
use ferry_journal::{AttemptEnd, AttemptKind, EventKind, Journal, Move, RunKind};
use ferry_model::{Location, Metadata, Phase, Status, VmState};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::run::EngineError;

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

/// Settles every move of run `run_id` that the journal has in flight (`MIGRATING`):
///
/// - a migration job still running on the source is waited out, up to `wait` (then
///   aborted): its own end decides;
/// - the VM runs on its target only: the move completed while ferry was away; adopted
///   (SUCCESS, or SUCCESS-COLD for a cold move), ferry's metadata there finalized;
/// - the VM runs on its source only: the move did not happen; what it prepared on the
///   target is removed and the move is re-queued (PENDING);
/// - anything else (nowhere, or more than one host): FAILURE-LOST, with where it was seen.
///
/// An adopted live move's source copies of host-local disks are deleted when
/// `delete_source_volumes` (the plan's policy), as the move would have done.
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
        Ok(locations) => {
            let running: Vec<&Location> = locations.iter().filter(|l| l.state == VmState::Running).collect();
            match (running.as_slice(), target.as_deref()) {
                ([only], Some(to)) if only.host == to => {
                    let finalized = Metadata {
                        run_id: m.run.clone(),
                        original_host: m.source.clone(),
                        phase: Phase::Finalized,
                        claim: None,
                    };
                    if driver.set_metadata(to, &m.uuid, Some(&finalized)).await.is_ok() {
                        actions.push(format!("marked it finalized on {to}"));
                    }
                    if delete_source_volumes && kind == AttemptKind::Live {
                        match driver.release_source(&request(&m, to)).await {
                            Ok(done) => actions.extend(done),
                            Err(e) => actions.push(format!("source volumes kept: {e}")),
                        }
                    }
                    let status = if kind == AttemptKind::Cold { Status::SuccessCold } else { Status::Success };
                    (status, format!("adopted: the move completed on {to} while ferry was not running"))
                }
                ([only], _) if only.host == m.source && locations.len() == 1 => {
                    if let Some(to) = &target {
                        match driver.discard_prepared(&request(&m, to)).await {
                            Ok(done) => actions.extend(done),
                            Err(e) => actions.push(format!("could not undo the interrupted move's preparation: {e}")),
                        }
                    }
                    (
                        Status::Pending,
                        format!("re-queued: the move was interrupted and did not complete; it runs on {}", m.source),
                    )
                }
                _ => (
                    Status::FailureLost,
                    format!("after a crash it was found {}; run `ferry cleanup --vm {}`", describe(&locations), m.vm),
                ),
            }
        }
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

/// The move `m` to `to`, as the driver's recovery calls take it.
fn request(m: &Move, to: &str) -> MoveRequest {
    MoveRequest {
        vm: m.uuid.clone(),
        from: m.source.clone(),
        to: to.to_string(),
        run_id: m.run.clone(),
        delete_source_volumes: false,
    }
}

fn describe(locations: &[Location]) -> String {
    if locations.is_empty() {
        return "on no host".into();
    }
    locations.iter().map(|l| format!("{} on {}", l.state, l.host)).collect::<Vec<_>>().join(", ")
}
