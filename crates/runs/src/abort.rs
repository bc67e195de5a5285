//! Aborting a run: asking the process that drives it, or, when none does (it died),
//! settling it here against the hosts and ending it ABORTED.

use std::sync::Arc;
use std::time::Duration;

use ferry_driver::Driver;
use ferry_engine::Waits;
use ferry_journal::{Journal, Lease, Run, RunKind, RunState};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{ClusterSpec, Status};
use tokio::sync::mpsc;

use crate::cluster::simulated;
use crate::events::{Error, Events};
use crate::owners::{
    all_succeeded, documents, find_run, held_by_another, now_ms, owner, owner_alive, take_lease, Lost,
};

/// Whether a live process drives `run`: another one, or this very one (a server that
/// started or resumed it in one of its tasks), whose lease is fresh.
fn driven(run: &Run) -> bool {
    let me = owner();
    let here = run.owner.as_deref() == Some(me.as_str()) && owner_alive(run.heartbeat_ms, now_ms());
    here || held_by_another(run, &me)
}

/// How an abort ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aborted {
    /// The run had ended already, in this state.
    AlreadyEnded(RunState),
    /// The process driving it ended it, in this state.
    ByItsOwner(RunState),
    /// No process drove it: it was settled and aborted here.
    Here,
}

/// Aborts run `id`: asks the process that drives it to abort and waits up to `wait` for it;
/// when no process drives it, aborts it here ([`abort_here`]). The outcome, and whether
/// every move of the run succeeded.
pub async fn abort(journal: &Journal, id: &str, wait: Duration, events: &Events) -> Result<(Aborted, bool), Error> {
    let run = find_run(journal, id).await?;
    // A run whose moves ended may still be held by its process: a drain's hook or return
    // runs after the moves, and the abort stops them.
    let held = driven(&run);
    if run.state.is_ended() && !held {
        return Ok((Aborted::AlreadyEnded(run.state), all_succeeded(journal, &run.id).await));
    }
    if run.state.is_ended() {
        journal.request_abort_after_moves(&run.id).await.map_err(|e| Error::failed(&e))?;
    } else {
        journal.request_abort(&run.id).await.map_err(|e| Error::failed(&e))?;
    }
    if held {
        let doing = if run.state.is_ended() {
            "is stopping the hook or return that follows the run's moves"
        } else {
            "is cancelling the run's migrations"
        };
        events.say(format!("abort requested; {} {doing}", run.owner.as_deref().unwrap_or("its owner")));
        let waited = std::time::Instant::now();
        while waited.elapsed() < wait {
            // Done when the owner ended the run (its moves were under way) or, when they
            // had ended already, let the run go.
            match journal.run(&run.id).await {
                Ok(r) if r.state.is_ended() && (!run.state.is_ended() || !driven(&r)) => {
                    return Ok((Aborted::ByItsOwner(r.state), all_succeeded(journal, &run.id).await));
                }
                Ok(r) if !driven(&r) => break,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        if journal.run(&run.id).await.is_ok_and(|r| driven(&r)) {
            return Err(Error::Failed(format!(
                "run {} has not finished aborting after {} s; `ferry status {}` follows it",
                run.id,
                wait.as_secs(),
                run.id
            )));
        }
    }
    // Nobody runs it: abort it here, and a roll's waves not ended with it (they ran in its
    // process).
    let (_, cluster) = documents(journal, &run.id).await?;
    abort_here(&cluster, journal, &run.id, events).await?;
    if run.kind == RunKind::Roll {
        for wave in journal.runs().await.map_err(|e| Error::failed(&e))? {
            if wave.parent.as_deref() == Some(run.id.as_str()) && !wave.state.is_ended() {
                events.say(format!("wave {} ({}): aborted with its roll", wave.id, wave.plan_name));
                let (_, cluster) = documents(journal, &wave.id).await?;
                abort_here(&cluster, journal, &wave.id, events).await?;
            }
        }
    }
    Ok((Aborted::Here, all_succeeded(journal, &run.id).await))
}

/// Aborts run `run_id`, which no process runs, on `cluster`, under its lease (refused,
/// naming the holder, when another process took it meanwhile): a run on real hosts is
/// settled against them first ([`abort_offline`]); a simulated run's world ended with the
/// process that ran it, so there is nothing to settle, and its moves not over end ABORTED.
pub async fn abort_here(cluster: &ClusterSpec, journal: &Journal, run_id: &str, events: &Events) -> Result<(), Error> {
    if simulated(cluster) {
        // Its heartbeats are on virtual time: no process can be told alive by them, and the
        // world it ran in is gone.
        let run = journal.run(run_id).await.map_err(|e| Error::failed(&e))?;
        journal
            .claim_lease(&run, &owner())
            .await
            .map_err(|e| Error::Failed(format!("could not take run {run_id}: {e}")))?;
        close_run(journal, run_id).await
    } else {
        let lease = take_lease(journal, run_id, &owner()).await?;
        abort_offline(Arc::new(LibvirtDriver::new(cluster.clone())), journal, &lease, events).await
    }
}

/// Settles the run `lease` holds against the hosts, its running jobs aborted at once (a
/// post-copy job, which cannot be, waited out), then ends it ABORTED.
pub async fn abort_offline<D: Driver>(
    driver: Arc<D>,
    journal: &Journal,
    lease: &Lease,
    events: &Events,
) -> Result<(), Error> {
    let run_id = lease.run();
    let release = documents(journal, run_id).await.is_ok_and(|(d, _)| d.plan.policy.delete_source_volumes);
    let (notes, _ignored) = mpsc::unbounded_channel();
    let settled = ferry_engine::reconcile(driver, journal, lease, &Waits::abort_at_once(), release, &notes)
        .await
        .map_err(|e| match Lost::from_engine(run_id, &e) {
            Some(lost) => Error::Lost(lost),
            None => Error::failed(&e),
        })?;
    for r in settled {
        events.say(format!("{}: {}: {}", r.vm, r.status, r.message));
    }
    close_run(journal, run_id).await
}

/// Ends every move not yet over as ABORTED, then the run.
async fn close_run(journal: &Journal, run_id: &str) -> Result<(), Error> {
    let failed = |e: ferry_journal::JournalError| Error::failed(&e);
    for m in journal.moves(run_id).await.map_err(failed)? {
        if !m.status.is_terminal() {
            journal
                .set_status(run_id, &m.uuid, m.generation, Status::Aborted, "not started: run aborted by the operator")
                .await
                .map_err(failed)?;
        }
    }
    let run = journal.run(run_id).await.map_err(failed)?;
    journal.set_run_state(run_id, run.generation, RunState::Aborted).await.map_err(failed)?;
    Ok(())
}
