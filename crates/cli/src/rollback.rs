//! `ferry rollback`: every VM a run moved goes back to where it was when the run started,
//! as a new run of kind `rollback` (linked to the original) through the same engine.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_back::rollback::{origins_from_metadata, returns, stale_copies, Origin, Return};
use ferry_driver::{Driver, Volume};
use ferry_engine::{Clock, Manual, MoveSpec, RunSettings};
use ferry_journal::{EventKind, Journal, JournalClock, NewMove, NewRun, Run, RunKind};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{ClusterSpec, Status};
use ferry_plan::{Hooks, Limits, Plan, PlannedMove, Policy, Target};
use serde_json::json;

use crate::cluster::{Cluster, ClusterArg};
use crate::drivers::{self, AnyDriver};
use ferry_document::RunDocument;

use crate::runs::{self, Drive};
use crate::state::StateArg;
use crate::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// `ferry rollback` arguments.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The run to undo.
    pub run: String,
    /// Find the run's VMs by ferry's metadata on the domains (run id, original host) instead
    /// of the journal: for when the journal is lost. Reaches the hosts of --cluster. Not for
    /// simulated runs.
    #[arg(long)]
    pub from_hypervisor: bool,
    /// Print what would be moved back; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The hosts (with --from-hypervisor). For a simulated run, `sim:FILE`, the fleet it
    /// started from: its world is rebuilt from that file and the journal, and the rollback
    /// runs on from there in virtual time.
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

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
    /// Only print what would be done.
    pub dry_run: bool,
}

/// How a rollback went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// Every VM was on its original host already.
    Nothing,
    /// `--dry-run`: printed only; whether some VM cannot be returned.
    DryRun {
        /// Some VM is blocked.
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

/// Runs `ferry rollback`.
pub async fn rollback(args: RollbackArgs, output: Output) -> ExitCode {
    let quiet = output == Output::Json;
    let found = if args.from_hypervisor {
        from_hypervisor(&args, quiet).await
    } else if args.cluster.is_sim() {
        from_simulation(&args, quiet).await
    } else {
        from_journal(&args, quiet).await
    };
    let found = match found {
        Ok(found) => found,
        Err(Refused::BadInput(e)) => {
            eprintln!("ferry rollback: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Err(Refused::Failed(e)) => {
            eprintln!("ferry rollback: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let request = Request {
        journal: &found.journal,
        driver: found.driver,
        clock: found.clock,
        parent: found.parent,
        undoes: args.run.clone(),
        origins: found.origins,
        cluster: found.cluster,
        policy: found.policy,
        limits: found.limits,
        dry_run: args.dry_run,
    };
    match roll_back(request, output).await {
        Ok(Returned::Nothing) | Ok(Returned::DryRun { blocked: false }) => ExitCode::SUCCESS,
        Ok(Returned::Ran { all_back: true, .. }) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            eprintln!("ferry rollback: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Why a rollback did not start.
enum Refused {
    /// The arguments or the journal do not name something to roll back (exit 2).
    BadInput(String),
    /// Another process drives the run, or settling it failed (exit 1).
    Failed(String),
}

impl From<String> for Refused {
    fn from(e: String) -> Refused {
        Refused::BadInput(e)
    }
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

/// `--from-hypervisor`: the run's VMs by ferry's metadata on the domains of --cluster.
async fn from_hypervisor(args: &RollbackArgs, quiet: bool) -> Result<Found, Refused> {
    let cluster = match args.cluster.cluster()? {
        Cluster::Hosts(spec) => spec,
        Cluster::Sim(_) => {
            return Err(Refused::BadInput(format!(
                "--from-hypervisor reads ferry's metadata on real domains, and a simulated fleet starts without any; \
                 `ferry rollback {} --cluster sim:FILE` rolls a simulated run back from the journal",
                args.run
            )))
        }
    };
    let journal = args.state.open_with_clock(JournalClock::System).await.map_err(|e| format!("--state: {e}"))?;
    let parent = journal.run(&args.run).await.ok();
    if let Some(run) = &parent {
        if runs::held_by_another(run, &runs::owner()) {
            return Err(Refused::Failed(format!(
                "run {} is being driven by {}; this ferry starts nothing: `ferry abort {}` first",
                run.id,
                run.owner.as_deref().unwrap_or("?"),
                run.id
            )));
        }
    }
    let (policy, limits) = match &parent {
        Some(run) => match runs::documents(&journal, &run.id).await {
            Ok((document, _)) => (document.plan.policy, document.plan.limits),
            Err(_) => (Policy::default(), Limits::default()),
        },
        None => (Policy::default(), Limits::default()),
    };
    let driver = Arc::new(AnyDriver::Libvirt(LibvirtDriver::new(cluster.clone())));
    let inventory = driver.inventory().await;
    let origins = origins_from_metadata(&args.run, &inventory);
    if !quiet {
        println!(
            "from the hypervisors: {} VM{} carry ferry's metadata of run {}",
            origins.len(),
            if origins.len() == 1 { "" } else { "s" },
            args.run
        );
        for (host, why) in &inventory.unreachable {
            println!("  {host} did not answer ({why}): its VMs are not seen");
        }
    }
    let parent = parent.map(|r| r.id);
    Ok(Found { journal, driver, clock: Clock::system(), parent, origins, cluster, policy, limits })
}

/// From the journal, on the real hosts the run ran on.
async fn from_journal(args: &RollbackArgs, quiet: bool) -> Result<Found, Refused> {
    let journal = args
        .state
        .open_existing()
        .await
        .map_err(|e| format!("{e}; `--from-hypervisor` finds the run's VMs by their metadata instead"))?;
    let run = runs::find_run(&journal, &args.run).await?;
    let (document, cluster) = runs::documents(&journal, &run.id).await?;
    if runs::simulated(&cluster) {
        return Err(Refused::BadInput(format!(
            "run {} was simulated: its world lived in the process that ran it; \
             `ferry rollback {} --cluster sim:FILE`, with the fleet file it ran on, rebuilds it and rolls the run back there",
            run.id, run.id
        )));
    }
    settle_unfinished(&journal, &run.id, &cluster, args.dry_run, quiet).await.map_err(Refused::Failed)?;
    let origins = origins(&journal, &run).await?;
    let driver = Arc::new(AnyDriver::Libvirt(LibvirtDriver::new(cluster.clone())));
    let (policy, limits) = (document.plan.policy, document.plan.limits);
    Ok(Found { journal, driver, clock: Clock::system(), parent: Some(run.id), origins, cluster, policy, limits })
}

/// From the journal, for a simulated run: its world, rebuilt from the fleet file of
/// --cluster and the journal ([`crate::sim::continued`]), goes on in virtual time.
async fn from_simulation(args: &RollbackArgs, quiet: bool) -> Result<Found, Refused> {
    let Cluster::Sim(fleet) = args.cluster.cluster()? else {
        return Err(Refused::BadInput("--cluster: not a simulated fleet".into()));
    };
    // This runtime's time is paused: the journal runs on virtual time too, first from the
    // fleet's start (only read), then from where the run's world goes on.
    let first = JournalClock::Virtual { unix_ms: fleet.start_unix() * 1000 };
    let journal = args.state.open_existing_with_clock(first).await?;
    let run = runs::find_run(&journal, &args.run).await?;
    let (document, cluster) = runs::documents(&journal, &run.id).await?;
    if !runs::simulated(&cluster) {
        return Err(Refused::BadInput(format!(
            "run {} ran on real hosts, not on a simulated fleet: roll it back without --cluster sim:FILE",
            run.id
        )));
    }
    if cluster != fleet.cluster() {
        return Err(Refused::BadInput(format!(
            "run {} was simulated on another fleet: its hosts are not this file's",
            run.id
        )));
    }
    let world = crate::sim::continued(&fleet, &journal, &run).await?;
    drop(journal);
    let source = Cluster::Sim(Box::new(world));
    let (clock, journal_clock) = drivers::clocks(&source);
    let journal = args.state.open_existing_with_clock(journal_clock).await?;
    settle_unfinished(&journal, &run.id, &cluster, args.dry_run, quiet).await.map_err(Refused::Failed)?;
    let origins = origins(&journal, &run).await?;
    let driver = Arc::new(AnyDriver::new(&source));
    let (policy, limits) = (document.plan.policy, document.plan.limits);
    Ok(Found { journal, driver, clock, parent: Some(run.id), origins, cluster, policy, limits })
}

/// Where each VM of `run` started, by name.
async fn origins(journal: &Journal, run: &Run) -> Result<Vec<Origin>, String> {
    let moves = journal.moves(&run.id).await.map_err(|e| e.to_string())?;
    let mut origins: Vec<Origin> =
        moves.into_iter().map(|m| Origin { vm: m.vm, uuid: m.uuid, host: m.source }).collect();
    origins.sort_by(|a, b| a.vm.cmp(&b.vm));
    Ok(origins)
}

/// A run that did not finish, or an earlier rollback of it that did not, is settled first
/// when no live process holds it (as `ferry abort` would, under the run's lease): migrations
/// still running are cancelled, moves in flight are judged by where their VMs run. One held
/// by a live process is refused, naming it. (A simulated run's heartbeats are on virtual time and its world is
/// gone with its process: it is only closed, its moves not over ABORTED.)
async fn settle_unfinished(
    journal: &Journal,
    run_id: &str,
    cluster: &ClusterSpec,
    dry_run: bool,
    quiet: bool,
) -> Result<(), String> {
    let me = runs::owner();
    let mut unfinished = Vec::new();
    for run in journal.runs().await.map_err(|e| e.to_string())? {
        let ours = run.id == run_id || (run.parent.as_deref() == Some(run_id) && run.kind == RunKind::Rollback);
        if !ours || run.state.is_ended() {
            continue;
        }
        if !runs::simulated(cluster) && runs::held_by_another(&run, &me) {
            return Err(format!(
                "run {} is being driven by {}; this ferry starts nothing: `ferry abort {}` first",
                run.id,
                run.owner.as_deref().unwrap_or("?"),
                run.id
            ));
        }
        unfinished.push(run.id);
    }
    for id in unfinished {
        if !quiet {
            println!("run {id} did not finish and no ferry runs it: it is aborted first");
        }
        if !dry_run {
            runs::abort_here(cluster, journal, &id).await?;
        }
    }
    Ok(())
}

/// Returns each VM of `request.origins` that runs elsewhere to its origin, as a new run of
/// kind `rollback`; VMs found nowhere or twice end ROLLBACK-FAILED in it, with what to do.
/// Before the run, the stale copies of returning VMs' host-local disks that their moves
/// away kept on the origins are deleted (they would stop the moves back).
pub async fn roll_back(request: Request<'_>, output: Output) -> Result<Returned, String> {
    let quiet = output == Output::Json;
    let driver = request.driver.clone();
    let inventory = driver.inventory().await;
    let decided = returns(&request.origins, &inventory);
    let blocked = decided.iter().any(|r| matches!(r, Return::Blocked { .. }));
    if !quiet && !decided.is_empty() {
        println!("rollback of run {}:", request.undoes);
        for r in &decided {
            match r {
                Return::Move { vm, to } => println!("  {}: {} -> {to}", vm.name, vm.host),
                Return::Home { vm, host } => println!("  {vm}: already on {host}"),
                Return::Blocked { vm, reason, .. } => println!("  {vm}: cannot return: {reason}"),
            }
        }
    }
    if decided.iter().all(|r| matches!(r, Return::Home { .. })) {
        if quiet {
            println!("{}", json!({ "run": null, "undoes": request.undoes, "returns": decided }));
        } else {
            println!("nothing to roll back: every VM of run {} is where it started", request.undoes);
        }
        return Ok(Returned::Nothing);
    }

    // The stale copies on the origins, found now so that --dry-run shows them too.
    let mut volumes: HashMap<String, Vec<Volume>> = HashMap::new();
    let mut stale: Vec<(String, String, Volume)> = Vec::new();
    for r in &decided {
        let Return::Move { vm, to } = r else { continue };
        if !volumes.contains_key(to) {
            let found = driver.volumes(to).await.map_err(|e| e.to_string())?;
            volumes.insert(to.clone(), found);
        }
        for v in stale_copies(vm, &volumes[to]) {
            stale.push((vm.uuid.clone(), vm.name.clone(), v.clone()));
        }
    }
    if request.dry_run {
        if quiet {
            println!(
                "{}",
                json!({ "run": null, "undoes": request.undoes, "returns": decided, "stale_copies": stale.iter().map(|s| &s.2).collect::<Vec<_>>() })
            );
        } else {
            for (_, vm, v) in &stale {
                println!("  {vm}: would delete {}/{} on {}, the copy its move away kept there", v.pool, v.name, v.host);
            }
            println!("dry run: nothing changed");
        }
        return Ok(Returned::DryRun { blocked });
    }

    let mut specs = Vec::new();
    let mut new_moves = Vec::new();
    let mut planned = Vec::new();
    for (seq, r) in decided.iter().enumerate() {
        match r {
            Return::Home { .. } => {}
            Return::Move { vm, to } => {
                specs.push(MoveSpec::to_host(vm, to));
                planned.push(PlannedMove {
                    vm: vm.name.clone(),
                    to: Target::Host(to.clone()),
                    group: None,
                    order: 0,
                    priority: 0,
                    line: 0,
                    pre_hook: None,
                    post_hook: None,
                });
                new_moves.push(NewMove {
                    vm: vm.name.clone(),
                    uuid: vm.uuid.clone(),
                    source: vm.host.clone(),
                    target: Some(to.clone()),
                    group: None,
                    seq: seq as i64,
                    priority: 0,
                    status: Status::Pending,
                    message: String::new(),
                });
            }
            Return::Blocked { vm, uuid, to, reason } => new_moves.push(NewMove {
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
    let plan = Plan {
        file: "ferry rollback".into(),
        name: format!("rollback of {}", request.undoes),
        deadline: None,
        resume_from: None,
        limits: request.limits.clone(),
        policy: request.policy.clone(),
        moves: planned,
        drains: Vec::new(),
        hooks: Hooks::default(),
    };
    let document = RunDocument::new(plan.clone(), specs.clone(), Vec::new(), Manual::default());
    let stored = document.to_documents(&request.cluster).map_err(|e| crate::state::chain(&e))?;
    let new_run = NewRun {
        plan_name: plan.name.clone(),
        plan: stored.plan,
        cluster: stored.cluster,
        kind: RunKind::Rollback,
        parent: request.parent.clone(),
    };
    let run = runs::create(request.journal, &new_run, &new_moves).await.map_err(|e| format!("journal: {e}"))?;
    if !quiet {
        let of = request.parent.as_deref().map(|p| format!(" of run {p}")).unwrap_or_default();
        println!("run {} (rollback{of})", run.id);
    }
    for (uuid, vm, v) in &stale {
        let text = match driver.delete_volume(&v.host, &v.pool, &v.name).await {
            Ok(()) => format!(
                "deleted {}/{} on {}: the copy its move away kept there, older than the disk it runs on",
                v.pool, v.name, v.host
            ),
            Err(e) => format!("could not delete the stale copy {}/{} on {}: {e}", v.pool, v.name, v.host),
        };
        if !quiet {
            println!("  {vm}: {text}");
        }
        request.journal.event(&run.id, Some(uuid), EventKind::Message, &text, None).await.map_err(|e| e.to_string())?;
    }
    let settings = RunSettings {
        run_id: run.id.clone(),
        owner: runs::owner_of(&driver),
        policy: request.policy.clone(),
        limits: request.limits.clone(),
        deadline: None,
        resume_from: None,
        unavailable: Vec::new(),
        manual: Manual::default(),
    };
    let inventory = driver.inventory().await;
    let moved_ok = specs.is_empty() || {
        let drive = Drive {
            driver,
            journal: request.journal.clone(),
            cluster: request.cluster.clone(),
            inventory,
            settings,
            specs,
            generation: run.generation,
            clock: request.clock,
        };
        runs::execute(drive, &plan, output).await
    };
    if new_moves.iter().all(|m| m.status == Status::RollbackFailed) {
        // Nothing for the engine to run: the run ends here.
        finish(request.journal, &run.id).await?;
        if !quiet {
            println!("run {} finished: {} ROLLBACK-FAILED", run.id, new_moves.len());
        }
    }
    Ok(Returned::Ran { run: run.id, all_back: moved_ok && !blocked })
}

async fn finish(journal: &Journal, run_id: &str) -> Result<(), String> {
    let run = journal.run(run_id).await.map_err(|e| e.to_string())?;
    journal
        .set_run_state(run_id, run.generation, ferry_journal::RunState::Finished)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
