//! Starting a plan's run and resuming one: preview, journal, the pre-run hook, the moves
//! (with their hooks), then each drained host's hook and return, then the post-run hook.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_document::{MoveSpec, RunDocument};
use ferry_driver::Driver;
use ferry_engine::{Clock, EngineEvent, Waits};
use ferry_journal::{Journal, JournalError, Lease, RunState};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{Status, VmState};
use ferry_plan::{Convergence, Drain, OnFailure, Plan};
use ferry_preview::checks::{CheckName, Outcome};
use ferry_preview::PreviewConfig;
use tokio::sync::mpsc;

use crate::build::{settings, RunBuilder};
use crate::cluster::{simulated, Cluster};
use crate::drain::{self, After};
use crate::drivers::{self, AnyDriver, Session};
use crate::events::{Error, Events};
use crate::execute::{execute, Drive};
use crate::hooks;
use crate::journals::JournalAt;
use crate::owners::{all_succeeded, documents, find_run, live_runs, now_ms, owner, owner_of, take_lease, Lost};

/// A plan about to run: `ferry migrate`'s, or the one `ferry drain` makes.
pub struct Start {
    /// The plan, validated.
    pub plan: Plan,
    /// The hosts, real or simulated.
    pub cluster: Cluster,
    /// Where the run goes: the journal is opened (created) only once the plan proved good.
    pub journal: JournalTo,
    /// Checks whose failures are waived.
    pub ignore: Vec<CheckName>,
    /// Measure dirty rates before estimating.
    pub measure: bool,
    /// The roll this run is a wave of.
    pub wave_of: Option<WaveOf>,
}

/// What a roll gives each of its waves.
pub struct WaveOf {
    /// The roll's run.
    pub roll: String,
    /// The roll's driver and clock: a simulated fleet's world and time go on from wave to
    /// wave.
    pub session: Session,
}

/// The journal a run goes to: a path opened once the plan proved good, or one already open
/// (a roll's wave).
pub enum JournalTo {
    /// Opened (created) by the start.
    At(JournalAt),
    /// Open already.
    Open(Journal),
}

impl From<JournalAt> for JournalTo {
    fn from(at: JournalAt) -> JournalTo {
        JournalTo::At(at)
    }
}

/// Runs a plan: previews it, journals the run, runs its pre-run hook, its moves (with their
/// hooks), then, for each drained host, its hook and the return of its VMs, then its
/// post-run hook. True when every move succeeded and no hook failed under `fail`.
pub async fn start(start: Start, events: &Events) -> Result<bool, Error> {
    let Start { plan, cluster: source, journal, ignore, measure, wave_of } = start;
    if plan.roll.is_some() {
        return Err(Error::BadInput(format!(
            "{}: a roll plan: `ferry roll {}` runs it (`ferry preview {}` shows its waves)",
            plan.file, plan.file, plan.file
        )));
    }
    let cluster = source.spec();
    let journal_clock = drivers::clocks(&source).1;
    let (parent, Session { driver, clock }) = match wave_of {
        Some(WaveOf { roll, session }) => (Some(roll), session),
        None => (None, Session::new(&source)),
    };
    let inventory = driver.inventory().await;
    let resolved = ferry_plan::resolve(&plan, &cluster, &inventory)
        .map_err(|errors| Error::BadInput(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
    // The journal is opened (created) only once the plan proved good.
    let journal = match journal {
        JournalTo::At(at) => at.open_with_clock(journal_clock).await?,
        JournalTo::Open(journal) => journal,
    };
    let resume_from = match &plan.resume_from {
        Some(previous) => Some(
            previous_statuses(&journal, previous)
                .await
                .map_err(|e| Error::BadInput(format!("{}: resume_from: {e}", plan.file)))?,
        ),
        None => None,
    };
    let mut config = PreviewConfig {
        ignore,
        memory: drivers::memory_profiles(&source),
        now_ms: Some(now_ms()),
        live_runs: live_runs(&journal).await,
        ..PreviewConfig::default()
    };
    config.earlier_copies =
        crate::preview::earlier_copies(&driver, Some(&journal), &inventory, &resolved, events).await;
    crate::preview::learn_from_journal(&journal, &resolved, events, &mut config).await;
    if measure || driver.is_sim() {
        let uuids = resolved.iter().map(|m| m.uuid.clone()).collect();
        config.dirty_rates = driver.measure_dirty_rates(uuids, 3).await.0;
    }
    let preview = ferry_preview::preview(&cluster, &inventory, &plan, &resolved, &config);

    let mut builder = RunBuilder::plan(plan.clone(), cluster.clone());
    builder.parent(parent);
    builder.estimated_makespan(preview.makespan_s);
    for (m, p) in resolved.iter().zip(&preview.vms) {
        let vm = inventory.vms.iter().find(|v| v.uuid == m.uuid);
        let failed: Vec<String> = p
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect();
        let (status, message) = if failed.is_empty() {
            (Status::Pending, String::new())
        } else {
            (Status::PrecheckFailed, failed.join("; "))
        };
        let estimate = p.estimate.as_ref();
        let spec = MoveSpec {
            vm: m.vm.clone(),
            uuid: m.uuid.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            group: m.group.clone(),
            order: m.order,
            priority: m.priority,
            memory_mib: vm.map_or(0, |v| v.memory_mib),
            running: vm.is_some_and(|v| v.state == VmState::Running),
            cold: m.cold,
            dirty_mib_s: estimate.filter(|e| e.dirty_measured).map(|e| e.dirty_mib_s),
            estimate: estimate.map(serde_json::to_value).transpose().map_err(|e| Error::failed(&e))?,
        };
        builder.moving(spec, m.order, status, message);
    }
    let built = builder.create(&journal, events).await?;
    let run = &built.run;
    // The lease from the start: the pre-run hook may run for an hour, and a `ferry resume`
    // meanwhile must find the run alive.
    let lease = journal
        .claim_lease(run, &owner_of(&driver))
        .await
        .map_err(|e| Error::Failed(format!("could not take run {}: {e}", run.id)))?;
    let timeout = Duration::from_secs(plan.hooks.timeout_s);
    if let Some(command) = &plan.hooks.pre_run {
        let ran =
            hooks::run_for_run(&journal, &lease, "pre-run", "pre-run hook", command, plan_env(&plan), timeout, events)
                .await;
        if let Some(holder) = ran.lost_to {
            return Err(Error::Lost(Lost { run: run.id.clone(), holder }));
        }
        let why = match &ran.stopped_by {
            Some(by) => Some(format!("not started: the pre-run hook was stopped by {by}")),
            None if !ran.ok() && plan.hooks.on_failure == OnFailure::Fail => {
                Some("not started: the pre-run hook failed (on_failure = fail)".to_string())
            }
            None => None,
        };
        if let Some(why) = why {
            end_unstarted(&journal, &run.id, &why).await.map_err(|e| match Lost::from_journal(&e) {
                Some(lost) => Error::Lost(lost),
                None => Error::failed(&e),
            })?;
            events.say(format!("run {} finished: {}; nothing moved", run.id, why.trim_start_matches("not started: ")));
            return Ok(false);
        }
    }
    let drive = Drive {
        driver: driver.clone(),
        journal: journal.clone(),
        cluster: cluster.clone(),
        inventory,
        settings: built.settings(owner_of(&driver), resume_from),
        specs: built.document.moves.clone(),
        generation: run.generation,
        clock,
        planned_s: built.document.estimated_makespan_s,
    };
    let mut ok = soft(execute(drive, &plan, events).await, events)?;
    ok &= drain::after(
        &driver,
        &journal,
        &lease,
        &plan,
        &cluster,
        After { clock, hook_done: false, retry_failed: false },
        events,
    )
    .await?;
    ok &= post_run(&journal, &lease, &plan, events).await?;
    Ok(ok)
}

/// A run's failure that lets what follows it go on (its drain's return, its post-run hook):
/// said, and `false`. A lost lease goes on up: nothing more may start.
pub(crate) fn soft(result: Result<bool, Error>, events: &Events) -> Result<bool, Lost> {
    match result {
        Ok(ok) => Ok(ok),
        Err(Error::Lost(lost)) => Err(lost),
        Err(e) => {
            events.warn(e.to_string());
            Ok(false)
        }
    }
}

/// The plan's post-run hook, once per run: after a crash, `resume` runs it when the journal
/// has no result of it. True unless it failed under `on_failure = "fail"`.
async fn post_run(journal: &Journal, lease: &Lease, plan: &Plan, events: &Events) -> Result<bool, Lost> {
    let Some(command) = &plan.hooks.post_run else { return Ok(true) };
    let journaled = journal.events(lease.run(), None).await.unwrap_or_default();
    if journaled.iter().any(|e| e.data.as_ref().is_some_and(|d| d["hook"] == "post-run")) {
        return Ok(true);
    }
    let timeout = Duration::from_secs(plan.hooks.timeout_s);
    let ran =
        hooks::run_for_run(journal, lease, "post-run", "post-run hook", command, plan_env(plan), timeout, events).await;
    if let Some(holder) = ran.lost_to {
        return Err(Lost { run: lease.run().to_string(), holder });
    }
    Ok(ran.ok() || plan.hooks.on_failure == OnFailure::Warn)
}

/// The environment of a run-level hook besides the run id.
fn plan_env(plan: &Plan) -> Vec<(String, String)> {
    vec![("FERRY_PLAN".into(), plan.name.clone())]
}

/// Ends every move of the run that has not ended with FAILURE-INIT and `message`, and the
/// run as finished.
async fn end_unstarted(journal: &Journal, run_id: &str, message: &str) -> Result<(), JournalError> {
    for m in journal.moves(run_id).await? {
        if !m.status.is_terminal() {
            journal.set_status(run_id, &m.uuid, m.generation, Status::FailureInit, message).await?;
        }
    }
    let run = journal.run(run_id).await?;
    journal.set_run_state(run_id, run.generation, RunState::Finished).await?;
    Ok(())
}

/// The final statuses of run `id`, by VM name, for `resume_from`.
async fn previous_statuses(journal: &Journal, id: &str) -> Result<HashMap<String, Status>, String> {
    let moves = journal.moves(id).await.map_err(|e| e.to_string())?;
    if moves.is_empty() {
        journal.run(id).await.map_err(|e| e.to_string())?;
    }
    Ok(moves.into_iter().map(|m| (m.vm, m.status)).collect())
}

/// Resumes run `id`: its moves in flight settled and the rest run, then what follows them
/// (a drain's hook and return, the post-run hook), also for a run whose moves had all ended
/// when ferry stopped. `hook_done`: the operator finished an interrupted drain hook's work;
/// `retry_failed`: a drain hook or check that failed runs again (a roll's wave). True when
/// every move succeeded and nothing that followed failed.
pub async fn resume(
    journal: &Journal,
    id: &str,
    hook_done: bool,
    retry_failed: bool,
    events: &Events,
) -> Result<bool, Error> {
    let run = find_run(journal, id).await?;
    let (document, cluster) = documents(journal, &run.id).await?;
    let plan = &document.plan;
    let follows = plan.hooks.post_run.is_some() || plan.drains.iter().any(Drain::acts_after);
    if run.state.is_ended() && !follows {
        events.say(format!("run {} is already {}: nothing to resume", run.id, run.state));
        return Ok(all_succeeded(journal, &run.id).await);
    }
    if simulated(&cluster) {
        return Err(Error::BadInput(format!(
            "run {} was simulated (--cluster sim:FILE): its world lived in the process that ran it; run the plan again",
            run.id
        )));
    }
    // A drain's return that ferry left unfinished is a run of its own: it goes first.
    let mut ok = true;
    if let Some(child) = drain::unfinished_return(journal, &run.id).await {
        events.say(format!("run {}: finishing its return, run {child}", run.id));
        ok &= soft(Box::pin(resume(journal, &child, false, false, events)).await, events)?;
    }
    let me = owner();
    let lease = take_lease(journal, &run.id, &me).await?;
    hooks::end_leftovers(journal, &run.id, events).await;
    let driver = Arc::new(AnyDriver::Libvirt(LibvirtDriver::new(cluster.clone())));
    let how = After { clock: Clock::system(), hook_done, retry_failed };
    if run.state.is_ended() {
        ok &= all_succeeded(journal, &run.id).await;
        ok &= drain::after(&driver, journal, &lease, plan, &cluster, how, events).await?;
        ok &= post_run(journal, &lease, plan, events).await?;
        return Ok(ok);
    }
    settle(&driver, journal, &lease, &document, events).await?;
    events.say(format!("run {} resumed", run.id));
    let resume_from = match &plan.resume_from {
        Some(previous) => previous_statuses(journal, previous).await.ok(),
        None => None,
    };
    let drive = Drive {
        driver: driver.clone(),
        journal: journal.clone(),
        cluster: cluster.clone(),
        inventory: driver.inventory().await,
        settings: settings(&run.id, me, &document, resume_from),
        specs: document.moves.clone(),
        generation: run.generation,
        clock: Clock::system(),
        planned_s: None,
    };
    let mut ok = soft(execute(drive, plan, events).await, events)?;
    // A drained host's hook and the return of its VMs, and the post-run hook, if the run
    // stopped before them.
    ok &= drain::after(&driver, journal, &lease, plan, &cluster, how, events).await?;
    ok &= post_run(journal, &lease, plan, events).await?;
    Ok(ok)
}

/// Settles the moves the journal has in flight against the hosts, saying what was done.
async fn settle(
    driver: &Arc<AnyDriver>,
    journal: &Journal,
    lease: &Lease,
    document: &RunDocument,
    events: &Events,
) -> Result<(), Error> {
    let (note_tx, mut notes) = mpsc::unbounded_channel();
    let saying = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(event) = notes.recv().await {
                if let EngineEvent::Note(note) = event {
                    events.say(note);
                }
            }
        })
    };
    let release = document.plan.policy.delete_source_volumes;
    let reconciled = ferry_engine::reconcile(driver.clone(), journal, lease, &waits(document), release, &note_tx).await;
    drop(note_tx);
    let _ = saying.await;
    let settled = reconciled.map_err(|e| match Lost::from_engine(lease.run(), &e) {
        Some(lost) => Error::Lost(lost),
        None => Error::failed(&e),
    })?;
    for r in settled {
        events.say(format!("{}: {}: {}", r.vm, r.status, r.message));
        for action in r.actions {
            events.say(format!("  - {action}"));
        }
    }
    Ok(())
}

/// How long `resume` waits for each job that outlived its ferry: the completion timeout the
/// run's moves had (per GiB of each VM's memory, or `ferry move`'s hand-set one), and their
/// stall timeout under ferry's convergence.
fn waits(document: &RunDocument) -> Waits {
    let policy = &document.plan.policy;
    let memory = document.moves.iter().map(|m| (m.uuid.clone(), m.memory_mib)).collect();
    let stall_timeout =
        (policy.convergence == Convergence::Ferry).then(|| Duration::from_secs(policy.stall_timeout_s.max(1)));
    let waits = Waits { stall_timeout, ..Waits::per_gib(policy.completion_timeout_per_gib_s, memory) };
    match document.manual.completion_timeout {
        Some(fixed) => Waits { fixed: Some(fixed), ..waits },
        None => waits,
    }
}
