//! `ferry rollback`: every VM a run moved goes back to where it was when the run started,
//! as a new run of kind `rollback` (linked to the original) through the same engine.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_back::rollback::{origins_from_metadata, returns, stale_copies, Origin, Return};
use ferry_driver::{Driver, Volume};
use ferry_engine::{Manual, MoveSpec, RunSettings};
use ferry_journal::{EventKind, Journal, NewMove, NewRun, RunKind};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{ClusterSpec, Status};
use ferry_plan::{Hooks, Limits, Plan, PlannedMove, Policy, Target};
use serde_json::json;

use crate::cluster::ClusterArg;
use crate::runs::{self, RunDocument};
use crate::state::StateArg;
use crate::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// `ferry rollback` arguments.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The run to undo.
    pub run: String,
    /// Find the run's VMs by ferry's metadata on the domains (run id, original host) instead
    /// of the journal: for when the journal is lost. Reaches the hosts of --cluster.
    #[arg(long)]
    pub from_hypervisor: bool,
    /// Print what would be moved back; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// A rollback to run.
pub struct Request<'a> {
    /// Where the rollback run goes.
    pub journal: &'a Journal,
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
    let bad = |e: String| {
        eprintln!("ferry rollback: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let quiet = output == Output::Json;
    let (journal, parent, origins, cluster, policy, limits) = if args.from_hypervisor {
        let cluster = match args.cluster.load() {
            Ok((_, c)) => c,
            Err(e) => return bad(e),
        };
        let journal = match args.state.open().await {
            Ok(j) => j,
            Err(e) => return bad(format!("--state: {e}")),
        };
        let parent = journal.run(&args.run).await.ok();
        if let Some(run) = &parent {
            if runs::held_by_another(run, &runs::owner()) {
                return bad(format!(
                    "run {} is being run by {}; `ferry abort {}` first",
                    run.id,
                    run.owner.as_deref().unwrap_or("?"),
                    run.id
                ));
            }
        }
        let (policy, limits) = match &parent {
            Some(run) => match runs::documents(&journal, &run.id).await {
                Ok((document, _)) => (document.plan.policy, document.plan.limits),
                Err(_) => (Policy::default(), Limits::default()),
            },
            None => (Policy::default(), Limits::default()),
        };
        let inventory = LibvirtDriver::new(cluster.clone()).inventory().await;
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
        (journal, parent.map(|r| r.id), origins, cluster, policy, limits)
    } else {
        let journal = match args.state.open_existing().await {
            Ok(j) => j,
            Err(e) => return bad(format!("{e}; `--from-hypervisor` finds the run's VMs by their metadata instead")),
        };
        let run = match runs::find_run(&journal, &args.run).await {
            Ok(run) => run,
            Err(e) => return bad(e),
        };
        let (document, cluster) = match runs::documents(&journal, &run.id).await {
            Ok(d) => d,
            Err(e) => return bad(e),
        };
        if let Err(e) = settle_unfinished(&journal, &run.id, &cluster, args.dry_run, quiet).await {
            return bad(e);
        }
        let moves = match journal.moves(&run.id).await {
            Ok(m) => m,
            Err(e) => return bad(e.to_string()),
        };
        let mut origins: Vec<Origin> =
            moves.into_iter().map(|m| Origin { vm: m.vm, uuid: m.uuid, host: m.source }).collect();
        origins.sort_by(|a, b| a.vm.cmp(&b.vm));
        (journal, Some(run.id), origins, cluster, document.plan.policy, document.plan.limits)
    };
    let request = Request {
        journal: &journal,
        parent,
        undoes: args.run.clone(),
        origins,
        cluster,
        policy,
        limits,
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

/// A run that did not finish, or an earlier rollback of it that did not, is settled first
/// when no live process holds it (as `ferry abort` would): migrations still running are
/// cancelled, moves in flight are judged by where their VMs run. One held by a live
/// process is refused.
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
        if runs::held_by_another(&run, &me) {
            return Err(format!(
                "run {} is being run by {}; `ferry abort {}` first",
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
            runs::abort_offline(Arc::new(LibvirtDriver::new(cluster.clone())), journal, &id).await?;
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
    let driver = Arc::new(LibvirtDriver::new(request.cluster.clone()));
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
    let document =
        RunDocument { plan: plan.clone(), moves: specs.clone(), unavailable: Vec::new(), manual: Manual::default() };
    let new_run = NewRun {
        plan_name: plan.name.clone(),
        plan: serde_json::to_value(&document).map_err(|e| e.to_string())?,
        cluster: serde_json::to_value(&request.cluster).map_err(|e| e.to_string())?,
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
        owner: runs::owner(),
        policy: request.policy.clone(),
        limits: request.limits.clone(),
        deadline: None,
        resume_from: None,
        unavailable: Vec::new(),
        manual: Manual::default(),
    };
    let inventory = driver.inventory().await;
    let moved_ok = specs.is_empty()
        || runs::execute(
            driver,
            request.journal.clone(),
            request.cluster.clone(),
            inventory,
            settings,
            specs,
            run.generation,
            &plan,
            output,
        )
        .await;
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
