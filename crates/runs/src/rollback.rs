//! Rolling a run back: every VM it moved goes back to where it was when the run started,
//! as a new run of kind `rollback` (linked to the original) through the same engine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_back::rollback::{origins_from_metadata, returns, stale_copies, Origin, Return};
use ferry_document::MoveSpec;
use ferry_driver::{Driver, Volume};
use ferry_engine::Clock;
use ferry_journal::{EventKind, Journal, JournalClock, NewMove, Run, RunKind, RunState};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{ClusterSpec, Status};
use ferry_plan::{Limits, Policy};
use serde::Serialize;

use crate::abort::abort_here;
use crate::build::RunBuilder;
use crate::cluster::{self, simulated, Cluster};
use crate::drivers::{self, AnyDriver};
use crate::events::{Error, Events};
use crate::execute::{execute, Drive};
use crate::journals::JournalAt;
use crate::owners::{documents, find_run, held_by_another, owner, owner_of, refuse_if_driven};

/// A rollback to run.
pub struct Request<'a> {
    /// Where the rollback run goes.
    pub journal: &'a Journal,
    /// The hosts, real or simulated.
    pub driver: Arc<AnyDriver>,
    /// The engine's clock (virtual time in a simulation).
    pub clock: Clock,
    /// The run undone, when this journal has it (the new run's parent).
    pub parent: Option<String>,
    /// The run undone, as named in the new run's plan name.
    pub undoes: String,
    /// Where each VM goes back to.
    pub origins: Vec<Origin>,
    /// The hosts.
    pub cluster: ClusterSpec,
    /// How moves run (the undone run's).
    pub policy: Policy,
    /// Concurrency limits (the undone run's).
    pub limits: Limits,
    /// Only say what would be done.
    pub dry_run: bool,
}

/// A copy of a returning VM's host-local disk that its move away kept on its origin.
#[derive(Debug, Clone, Serialize)]
pub struct StaleCopy {
    /// The VM's UUID.
    #[serde(skip)]
    pub uuid: String,
    /// The VM.
    #[serde(skip)]
    pub vm: String,
    /// The volume.
    #[serde(flatten)]
    pub volume: Volume,
}

/// How a rollback went.
#[derive(Debug, Clone)]
pub enum Returned {
    /// Every VM was on its original host already.
    Nothing {
        /// Each VM's return.
        returns: Vec<Return>,
    },
    /// A dry run: said only.
    DryRun {
        /// Each VM's return.
        returns: Vec<Return>,
        /// The stale copies that would be deleted.
        stale: Vec<StaleCopy>,
        /// Some VM cannot be returned.
        blocked: bool,
    },
    /// A rollback run ran.
    Ran {
        /// Its id.
        run: String,
        /// Every VM of it ended ROLLED-BACK.
        all_back: bool,
    },
}

impl Returned {
    /// Whether the rollback did (or would do) everything it had to.
    pub fn ok(&self) -> bool {
        match self {
            Returned::Nothing { .. } => true,
            Returned::DryRun { blocked, .. } => !blocked,
            Returned::Ran { all_back, .. } => *all_back,
        }
    }
}

/// What `ferry rollback` asks.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// The run to undo.
    pub run: String,
    /// Find its VMs by ferry's metadata on the domains of `cluster` instead of the journal.
    pub from_hypervisor: bool,
    /// Only say what would be done.
    pub dry_run: bool,
    /// The cluster argument: the hosts (with `from_hypervisor`), or `sim:FILE`, the fleet a
    /// simulated run started from.
    pub cluster: Option<PathBuf>,
    /// The journal.
    pub journal: JournalAt,
}

/// Rolls run `ask.run` back (see [`roll_back`]), finding its VMs by the journal, by their
/// metadata, or in a simulated run's rebuilt world.
pub async fn rollback(ask: &Rollback, events: &Events) -> Result<Returned, Error> {
    let found = if ask.from_hypervisor {
        from_hypervisor(ask, events).await?
    } else if cluster::is_sim(ask.cluster.as_deref()) {
        from_simulation(ask, events).await?
    } else {
        from_journal(ask, events).await?
    };
    let request = Request {
        journal: &found.journal,
        driver: found.driver,
        clock: found.clock,
        parent: found.parent,
        undoes: ask.run.clone(),
        origins: found.origins,
        cluster: found.cluster,
        policy: found.policy,
        limits: found.limits,
        dry_run: ask.dry_run,
    };
    roll_back(request, events).await
}

/// What a rollback starts from: where each VM goes back to, and where to run it.
struct Found {
    journal: Journal,
    driver: Arc<AnyDriver>,
    clock: Clock,
    parent: Option<String>,
    origins: Vec<Origin>,
    cluster: ClusterSpec,
    policy: Policy,
    limits: Limits,
}

/// By ferry's metadata on the domains of the cluster.
async fn from_hypervisor(ask: &Rollback, events: &Events) -> Result<Found, Error> {
    let cluster = match cluster::read(ask.cluster.as_deref()).map_err(Error::BadInput)? {
        Cluster::Hosts(spec) => spec,
        Cluster::Sim(_) => {
            return Err(Error::BadInput(format!(
                "--from-hypervisor reads ferry's metadata on real domains, and a simulated fleet starts without any; \
                 `ferry rollback {} --cluster sim:FILE` rolls a simulated run back from the journal",
                ask.run
            )))
        }
    };
    let journal = ask.journal.open_with_clock(JournalClock::System).await?;
    let parent = journal.run(&ask.run).await.ok();
    if let Some(run) = &parent {
        refuse_if_driven(run)?;
    }
    let (policy, limits) = match &parent {
        Some(run) => match documents(&journal, &run.id).await {
            Ok((document, _)) => (document.plan.policy, document.plan.limits),
            Err(_) => (Policy::default(), Limits::default()),
        },
        None => (Policy::default(), Limits::default()),
    };
    let driver = Arc::new(AnyDriver::Libvirt(LibvirtDriver::new(cluster.clone())));
    let inventory = driver.inventory().await;
    let origins = origins_from_metadata(&ask.run, &inventory);
    events.say(format!(
        "from the hypervisors: {} VM{} carry ferry's metadata of run {}",
        origins.len(),
        if origins.len() == 1 { "" } else { "s" },
        ask.run
    ));
    for (host, why) in &inventory.unreachable {
        events.say(format!("  {host} did not answer ({why}): its VMs are not seen"));
    }
    let parent = parent.map(|r| r.id);
    Ok(Found { journal, driver, clock: Clock::system(), parent, origins, cluster, policy, limits })
}

/// From the journal, on the real hosts the run ran on.
async fn from_journal(ask: &Rollback, events: &Events) -> Result<Found, Error> {
    let journal = ask.journal.open_existing().await.map_err(|e| match e {
        Error::BadInput(e) => {
            Error::BadInput(format!("{e}; `--from-hypervisor` finds the run's VMs by their metadata instead"))
        }
        other => other,
    })?;
    let run = find_run(&journal, &ask.run).await?;
    let (document, cluster) = documents(&journal, &run.id).await?;
    if simulated(&cluster) {
        return Err(Error::BadInput(format!(
            "run {} was simulated: its world lived in the process that ran it; \
             `ferry rollback {} --cluster sim:FILE`, with the fleet file it ran on, rebuilds it and rolls the run back there",
            run.id, run.id
        )));
    }
    settle_unfinished(&journal, &run.id, &cluster, ask.dry_run, events).await?;
    let origins = origins(&journal, &run).await?;
    let driver = Arc::new(AnyDriver::Libvirt(LibvirtDriver::new(cluster.clone())));
    let (policy, limits) = (document.plan.policy, document.plan.limits);
    Ok(Found { journal, driver, clock: Clock::system(), parent: Some(run.id), origins, cluster, policy, limits })
}

/// From the journal, for a simulated run: its world, rebuilt from the fleet file and the
/// journal ([`crate::sim::continued`]), goes on in virtual time.
async fn from_simulation(ask: &Rollback, events: &Events) -> Result<Found, Error> {
    let Cluster::Sim(fleet) = cluster::read(ask.cluster.as_deref()).map_err(Error::BadInput)? else {
        return Err(Error::BadInput("--cluster: not a simulated fleet".into()));
    };
    // This runtime's time is paused: the journal runs on virtual time too, first from the
    // fleet's start (only read), then from where the run's world goes on.
    let first = JournalClock::Virtual { unix_ms: fleet.start_unix() * 1000 };
    let journal = ask.journal.open_existing_with_clock(first).await?;
    let run = find_run(&journal, &ask.run).await?;
    let (document, cluster) = documents(&journal, &run.id).await?;
    if !simulated(&cluster) {
        return Err(Error::BadInput(format!(
            "run {} ran on real hosts, not on a simulated fleet: roll it back without --cluster sim:FILE",
            run.id
        )));
    }
    if cluster != fleet.cluster() {
        return Err(Error::BadInput(format!(
            "run {} was simulated on another fleet: its hosts are not this file's",
            run.id
        )));
    }
    let world = crate::sim::continued(&fleet, &journal, &run).await.map_err(Error::BadInput)?;
    drop(journal);
    let source = Cluster::Sim(Box::new(world));
    let (clock, journal_clock) = drivers::clocks(&source);
    let journal = ask.journal.open_existing_with_clock(journal_clock).await?;
    settle_unfinished(&journal, &run.id, &cluster, ask.dry_run, events).await?;
    let origins = origins(&journal, &run).await?;
    let driver = Arc::new(AnyDriver::new(&source));
    let (policy, limits) = (document.plan.policy, document.plan.limits);
    Ok(Found { journal, driver, clock, parent: Some(run.id), origins, cluster, policy, limits })
}

/// Where each VM of `run` started, by name.
async fn origins(journal: &Journal, run: &Run) -> Result<Vec<Origin>, Error> {
    let moves = journal.moves(&run.id).await.map_err(|e| Error::failed(&e))?;
    let mut origins: Vec<Origin> =
        moves.into_iter().map(|m| Origin { vm: m.vm, uuid: m.uuid, host: m.source }).collect();
    origins.sort_by(|a, b| a.vm.cmp(&b.vm));
    Ok(origins)
}

/// A run that did not finish, or an earlier rollback of it that did not, is settled first
/// when no live process holds it (as `ferry abort` would, under the run's lease): migrations
/// still running are cancelled, moves in flight are judged by where their VMs run. One held
/// by a live process is refused, naming it. (A simulated run's heartbeats are on virtual
/// time and its world is gone with its process: it is only closed, its moves not over
/// ABORTED.)
async fn settle_unfinished(
    journal: &Journal,
    run_id: &str,
    cluster: &ClusterSpec,
    dry_run: bool,
    events: &Events,
) -> Result<(), Error> {
    let me = owner();
    let mut unfinished = Vec::new();
    for run in journal.runs().await.map_err(|e| Error::failed(&e))? {
        let ours = run.id == run_id || (run.parent.as_deref() == Some(run_id) && run.kind == RunKind::Rollback);
        if !ours || run.state.is_ended() {
            continue;
        }
        if !simulated(cluster) && held_by_another(&run, &me) {
            refuse_if_driven(&run)?;
        }
        unfinished.push(run.id);
    }
    for id in unfinished {
        events.say(format!("run {id} did not finish and no ferry runs it: it is aborted first"));
        if !dry_run {
            abort_here(cluster, journal, &id, events).await?;
        }
    }
    Ok(())
}

/// Returns each VM of `request.origins` that runs elsewhere to its origin, as a new run of
/// kind `rollback`; VMs found nowhere or twice end ROLLBACK-FAILED in it, with what to do.
/// Before the run, the stale copies of returning VMs' host-local disks that their moves
/// away kept on the origins are deleted (they would stop the moves back).
pub async fn roll_back(request: Request<'_>, events: &Events) -> Result<Returned, Error> {
    let driver = request.driver.clone();
    let inventory = driver.inventory().await;
    let decided = returns(&request.origins, &inventory);
    let blocked = decided.iter().any(|r| matches!(r, Return::Blocked { .. }));
    if !decided.is_empty() {
        events.say(format!("rollback of run {}:", request.undoes));
        for r in &decided {
            events.say(match r {
                Return::Move { vm, to } => format!("  {}: {} -> {to}", vm.name, vm.host),
                Return::Home { vm, host } => format!("  {vm}: already on {host}"),
                Return::Blocked { vm, reason, .. } => format!("  {vm}: cannot return: {reason}"),
            });
        }
    }
    if decided.iter().all(|r| matches!(r, Return::Home { .. })) {
        events.say(format!("nothing to roll back: every VM of run {} is where it started", request.undoes));
        return Ok(Returned::Nothing { returns: decided });
    }

    // The stale copies on the origins, found now so that a dry run shows them too.
    let mut volumes: HashMap<String, Vec<Volume>> = HashMap::new();
    let mut stale: Vec<StaleCopy> = Vec::new();
    for r in &decided {
        let Return::Move { vm, to } = r else { continue };
        if !volumes.contains_key(to) {
            let found = driver.volumes(to).await.map_err(|e| Error::Failed(e.to_string()))?;
            volumes.insert(to.clone(), found);
        }
        for v in stale_copies(vm, &volumes[to]) {
            stale.push(StaleCopy { uuid: vm.uuid.clone(), vm: vm.name.clone(), volume: v.clone() });
        }
    }
    if request.dry_run {
        for s in &stale {
            let v = &s.volume;
            events.say(format!(
                "  {}: would delete {}/{} on {}, the copy its move away kept there",
                s.vm, v.pool, v.name, v.host
            ));
        }
        events.say("dry run: nothing changed");
        return Ok(Returned::DryRun { returns: decided, stale, blocked });
    }

    let mut builder = RunBuilder::rollback(
        &request.undoes,
        request.parent.clone(),
        request.policy.clone(),
        request.limits.clone(),
        request.cluster.clone(),
    );
    for (seq, r) in decided.iter().enumerate() {
        match r {
            Return::Home { .. } => {}
            Return::Move { vm, to } => builder.moving(MoveSpec::to_host(vm, to), seq, Status::Pending, String::new()),
            Return::Blocked { vm, uuid, to, reason } => builder.refused(NewMove {
                vm: vm.clone(),
                uuid: uuid.clone(),
                source: "-".into(),
                target: Some(to.clone()),
                group: None,
                seq: seq as i64,
                priority: 0,
                status: Status::RollbackFailed,
                message: format!("not returned: {reason}"),
            }),
        }
    }
    let built = builder.create(request.journal, events).await?;
    let run = &built.run;
    for s in &stale {
        let v = &s.volume;
        let text = match driver.delete_volume(&v.host, &v.pool, &v.name).await {
            Ok(()) => format!(
                "deleted {}/{} on {}: the copy its move away kept there, older than the disk it runs on",
                v.pool, v.name, v.host
            ),
            Err(e) => format!("could not delete the stale copy {}/{} on {}: {e}", v.pool, v.name, v.host),
        };
        events.say(format!("  {}: {text}", s.vm));
        request
            .journal
            .event(&run.id, Some(&s.uuid), EventKind::Message, &text, None)
            .await
            .map_err(|e| Error::failed(&e))?;
    }
    let specs = built.document.moves.clone();
    let moved_ok = specs.is_empty() || {
        let drive = Drive {
            driver: driver.clone(),
            journal: request.journal.clone(),
            cluster: request.cluster.clone(),
            inventory: driver.inventory().await,
            settings: built.settings(owner_of(&driver), None),
            specs,
            generation: run.generation,
            clock: request.clock,
            planned_s: None,
        };
        execute(drive, &built.document.plan, events).await?
    };
    if built.document.moves.is_empty() {
        // Nothing for the engine to run: every VM is refused, and the run ends here.
        let journal = request.journal;
        let failed = |e: ferry_journal::JournalError| Error::failed(&e);
        let current = journal.run(&run.id).await.map_err(failed)?;
        journal.set_run_state(&run.id, current.generation, RunState::Finished).await.map_err(failed)?;
        let refused = decided.iter().filter(|r| matches!(r, Return::Blocked { .. })).count();
        events.say(format!("run {} finished: {refused} ROLLBACK-FAILED", run.id));
    }
    Ok(Returned::Ran { run: run.id.clone(), all_back: moved_ok && !blocked })
}
