//! `ferry migrate`, `ferry resume`, `ferry abort`: runs that change things.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_document::RunDocument;
use ferry_driver::Driver;
use ferry_engine::{Clock, Command, Engine, EngineError, EngineEvent, Manual, MoveSpec, RunEnd, RunSettings, Waits};
use ferry_journal::{Journal, JournalError, Lease, NewMove, NewRun, Run, RunKind, RunState};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{ClusterSpec, Status, VmState};
use ferry_plan::{OnFailure, Plan, Target};
use ferry_preview::checks::{CheckName, Outcome};
use ferry_preview::PreviewConfig;
use tokio::sync::mpsc;

use crate::cluster::{Cluster, ClusterArg};
use crate::drain::After;
use crate::drivers::{self, AnyDriver, SIM_OWNER};
use crate::hooks::{self, Hooked};
use crate::inputs::Inputs;
use crate::state::{owner_alive, StateArg};
use crate::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// `ferry migrate` arguments.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The plan: TOML, or CSV (`vm,to,group,order`) when the name ends in .csv.
    pub plan: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
    /// No move starts after this instant (RFC 3339, e.g. 2026-11-25T06:00:00Z); overrides
    /// the plan's deadline.
    #[arg(long, value_name = "TIME")]
    pub deadline: Option<String>,
    /// Waive a check: its failures become warnings and the move runs. Repeatable.
    #[arg(long = "ignore", value_name = "CHECK")]
    pub ignore: Vec<String>,
    /// Measure each VM's dirty rate before estimating (implied on a simulated fleet).
    #[arg(long)]
    pub measure: bool,
}

/// `ferry resume` arguments.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run to finish.
    pub run: String,
    /// A drain's hook was interrupted when ferry stopped, and the operator has finished its
    /// work by hand: take it as done and bring the VMs back.
    #[arg(long)]
    pub hook_done: bool,
    #[command(flatten)]
    pub state: StateArg,
}

/// `ferry abort` arguments.
#[derive(Debug, clap::Args)]
pub struct AbortArgs {
    /// The run to abort.
    pub run: String,
    #[command(flatten)]
    pub state: StateArg,
    /// Seconds to wait for the process running it to finish aborting.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub wait: u64,
}

/// Runs `ferry migrate`.
pub async fn migrate(args: MigrateArgs, output: Output) -> ExitCode {
    let bad = |e: String| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let deadline = args.deadline.as_deref().map(ferry_plan::time::parse_rfc3339).transpose();
    let inputs = crate::inputs::load(&args.plan, &args.cluster, &args.ignore);
    let (deadline, Inputs { mut plan, cluster, ignore, .. }) = match (deadline, inputs) {
        (Ok(deadline), Ok(inputs)) => (deadline, inputs),
        (deadline, inputs) => {
            let problems: Vec<String> =
                [deadline.err().map(|e| format!("--deadline: {e}")), inputs.err()].into_iter().flatten().collect();
            return bad(problems.join("\n"));
        }
    };
    if deadline.is_some() {
        plan.deadline = deadline;
    }
    start(Start { plan, cluster, state: &args.state, ignore, measure: args.measure }, output).await
}

/// A plan about to run: `ferry migrate`'s, or the one `ferry drain` makes.
pub struct Start<'a> {
    /// The plan, validated.
    pub plan: Plan,
    /// The hosts, real or simulated.
    pub cluster: Cluster,
    /// Where the run goes: the journal is opened (created) only once the plan proved good.
    pub state: &'a StateArg,
    /// Checks whose failures are waived.
    pub ignore: Vec<CheckName>,
    /// Measure dirty rates before estimating.
    pub measure: bool,
}

/// Runs a plan: previews it, journals the run, runs its pre-run hook, its moves (with their
/// hooks), then, for each drained host, its hook and the return of its VMs, then its
/// post-run hook. Exit 0 when every move succeeded and no hook failed under `fail`.
pub async fn start(start: Start<'_>, output: Output) -> ExitCode {
    let bad = |e: String| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let Start { plan, cluster: source, state, ignore, measure } = start;
    let plan_name = plan.file.clone();
    let cluster = source.spec();
    let (clock, journal_clock) = drivers::clocks(&source);
    let driver = Arc::new(AnyDriver::new(&source));
    let inventory = driver.inventory().await;
    let resolved = match ferry_plan::resolve(&plan, &cluster, &inventory) {
        Ok(moves) => moves,
        Err(errors) => return bad(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    };
    // The journal is opened (created) only once the plan proved good.
    let journal = match state.open_with_clock(journal_clock).await {
        Ok(j) => j,
        Err(e) => return bad(format!("--state: {e}")),
    };
    let resume_from = match &plan.resume_from {
        Some(previous) => match previous_statuses(&journal, previous).await {
            Ok(statuses) => Some(statuses),
            Err(e) => return bad(format!("{plan_name}: resume_from: {e}")),
        },
        None => None,
    };
    let mut config = PreviewConfig {
        ignore,
        memory: drivers::memory_profiles(&source),
        now_ms: Some(now_ms()),
        live_runs: live_runs(&journal).await,
        ..PreviewConfig::default()
    };
    config.earlier_copies = crate::preview::earlier_copies(&driver, Some(&journal), &inventory, &resolved).await;
    if measure || driver.is_sim() {
        let uuids = resolved.iter().map(|m| m.uuid.clone()).collect();
        config.dirty_rates = driver.measure_dirty_rates(uuids, 3).await.0;
    }
    let preview = ferry_preview::preview(&cluster, &inventory, &plan, &resolved, &config);

    let mut specs = Vec::new();
    let mut new_moves = Vec::new();
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
        new_moves.push(NewMove {
            vm: m.vm.clone(),
            uuid: m.uuid.clone(),
            source: m.from.clone(),
            target: match &m.to {
                Target::Host(h) => Some(h.clone()),
                Target::Any => None,
            },
            group: m.group.clone(),
            seq: m.order as i64,
            priority: m.priority,
            status,
            message,
        });
        specs.push(MoveSpec {
            vm: m.vm.clone(),
            uuid: m.uuid.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            group: m.group.clone(),
            order: m.order,
            priority: m.priority,
            memory_mib: vm.map_or(0, |v| v.memory_mib),
            running: vm.is_some_and(|v| v.state == VmState::Running),
            dirty_mib_s: p.estimate.as_ref().filter(|e| e.dirty_measured).map(|e| e.dirty_mib_s),
            estimate: p.estimate.as_ref().and_then(|e| serde_json::to_value(e).ok()),
        });
    }
    let unavailable: Vec<String> = plan.drains.iter().map(|d| d.host.clone()).collect();
    let document = RunDocument::new(plan.clone(), specs.clone(), unavailable.clone(), Manual::default());
    let stored = match document.to_documents(&cluster) {
        Ok(stored) => stored,
        Err(e) => return bad(format!("ferry migrate: {}", crate::state::chain(&e))),
    };
    let new_run = NewRun {
        plan_name: plan.name.clone(),
        plan: stored.plan,
        cluster: stored.cluster,
        kind: if plan.drains.is_empty() { RunKind::Migrate } else { RunKind::Drain },
        parent: None,
    };
    let run = match create(&journal, &new_run, &new_moves).await {
        Ok(run) => run,
        Err(e) => {
            eprintln!("ferry migrate: journal: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if output == Output::Text {
        println!("run {}", run.id);
        if preview.failing > 0 {
            println!(
                "{} of {} moves fail their prechecks and will not start (see `ferry report {}`)",
                preview.failing, preview.moves, run.id
            );
        }
    }
    // The lease from the start: the pre-run hook may run for an hour, and a `ferry resume`
    // meanwhile must find the run alive.
    let lease = match journal.claim_lease(&run, &owner_of(&driver)).await {
        Ok(lease) => lease,
        Err(e) => {
            eprintln!("ferry: could not take run {}: {e}", run.id);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let quiet = output == Output::Json;
    let timeout = Duration::from_secs(plan.hooks.timeout_s);
    if let Some(command) = &plan.hooks.pre_run {
        let ran =
            hooks::run_for_run(&journal, &lease, "pre-run", "pre-run hook", command, plan_env(&plan), timeout, quiet)
                .await;
        if let Some(holder) = ran.lost_to {
            lost_exit(&Lost { run: run.id.clone(), holder });
        }
        if !ran.ok() && plan.hooks.on_failure == OnFailure::Fail {
            return match end_unstarted(&journal, &run.id, "not started: the pre-run hook failed (on_failure = fail)")
                .await
            {
                Ok(()) => {
                    if !quiet {
                        println!("run {} finished: the pre-run hook failed; nothing moved", run.id);
                    }
                    ExitCode::from(EXIT_FAILURE)
                }
                Err(e) => match Lost::from_journal(&e) {
                    Some(lost) => lost_exit(&lost),
                    None => {
                        eprintln!("ferry: {e}");
                        ExitCode::from(EXIT_FAILURE)
                    }
                },
            };
        }
    }
    let settings = RunSettings {
        run_id: run.id.clone(),
        owner: owner_of(&driver),
        policy: plan.policy.clone(),
        limits: plan.limits.clone(),
        deadline: plan.deadline,
        resume_from,
        unavailable,
        manual: Manual::default(),
    };
    let drive = Drive {
        driver: driver.clone(),
        journal: journal.clone(),
        cluster: cluster.clone(),
        inventory,
        settings,
        specs,
        generation: run.generation,
        clock,
    };
    let mut ok = execute(drive, &plan, output).await;
    ok &= match crate::drain::after(
        &driver,
        &journal,
        &lease,
        &plan,
        &cluster,
        After { clock, hook_done: false, output },
    )
    .await
    {
        Ok(ok) => ok,
        Err(lost) => lost_exit(&lost),
    };
    ok &= post_run(&journal, &lease, &plan, quiet).await;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// The plan's post-run hook, once per run: after a crash, `resume` runs it when the journal
/// has no result of it. True unless it failed under `on_failure = "fail"`.
async fn post_run(journal: &Journal, lease: &Lease, plan: &Plan, quiet: bool) -> bool {
    let Some(command) = &plan.hooks.post_run else { return true };
    let events = journal.events(lease.run(), None).await.unwrap_or_default();
    if events.iter().any(|e| e.data.as_ref().is_some_and(|d| d["hook"] == "post-run")) {
        return true;
    }
    let timeout = Duration::from_secs(plan.hooks.timeout_s);
    let ran =
        hooks::run_for_run(journal, lease, "post-run", "post-run hook", command, plan_env(plan), timeout, quiet).await;
    if let Some(holder) = ran.lost_to {
        lost_exit(&Lost { run: lease.run().to_string(), holder });
    }
    ran.ok() || plan.hooks.on_failure == OnFailure::Warn
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

/// Creates a run and its moves in the journal.
pub async fn create(journal: &Journal, new_run: &NewRun, moves: &[NewMove]) -> Result<Run, JournalError> {
    let run = journal.create_run(new_run).await?;
    journal.add_moves(&run.id, moves).await?;
    Ok(run)
}

/// The final statuses of run `id`, by VM name, for `resume_from`.
async fn previous_statuses(journal: &Journal, id: &str) -> Result<HashMap<String, Status>, String> {
    let moves = journal.moves(id).await.map_err(|e| e.to_string())?;
    if moves.is_empty() {
        journal.run(id).await.map_err(|e| e.to_string())?;
    }
    Ok(moves.into_iter().map(|m| (m.vm, m.status)).collect())
}

/// Runs `ferry resume`: the run's moves in flight settled and the rest run, then what
/// follows them (a drain's hook and return, the post-run hook), also for a run whose moves
/// had all ended when ferry stopped.
pub async fn resume(args: ResumeArgs, output: Output) -> ExitCode {
    let (journal, run) = match open_run(&args.state, &args.run).await {
        Ok(opened) => opened,
        Err(e) => return bad_input(e),
    };
    let (document, cluster) = match documents(&journal, &run.id).await {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    let plan = &document.plan;
    let follows = plan.hooks.post_run.is_some() || plan.drains.iter().any(|d| d.hook.is_some() || d.return_after);
    if run.state.is_ended() && !follows {
        println!("run {} is already {}: nothing to resume", run.id, run.state);
        return exit_for(&journal, &run.id).await;
    }
    if simulated(&cluster) {
        return bad_input(format!(
            "run {} was simulated (--cluster sim:FILE): its world lived in the process that ran it; run the plan again",
            run.id
        ));
    }
    // A drain's return that ferry left unfinished is a run of its own: it goes first.
    let mut ok = true;
    if let Some(child) = crate::drain::unfinished_return(&journal, &run.id).await {
        if output == Output::Text {
            println!("run {}: finishing its return, run {child}", run.id);
        }
        let child_args = ResumeArgs { run: child, hook_done: false, state: args.state.clone() };
        ok &= Box::pin(resume(child_args, output)).await == ExitCode::SUCCESS;
    }
    let me = owner();
    let lease = match take_lease(&journal, &run.id, &me).await {
        Ok(lease) => lease,
        Err(refused) => {
            eprintln!("ferry resume: {refused}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if run.state.is_ended() {
        let driver = Arc::new(AnyDriver::Libvirt(LibvirtDriver::new(cluster.clone())));
        ok &= exit_for(&journal, &run.id).await == ExitCode::SUCCESS;
        let how = After { clock: Clock::system(), hook_done: args.hook_done, output };
        ok &= match crate::drain::after(&driver, &journal, &lease, plan, &cluster, how).await {
            Ok(ok) => ok,
            Err(lost) => lost_exit(&lost),
        };
        ok &= post_run(&journal, &lease, plan, output == Output::Json).await;
        return if ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) };
    }
    let driver = Arc::new(AnyDriver::Libvirt(LibvirtDriver::new(cluster.clone())));
    let waits = waits(&document);
    let release = document.plan.policy.delete_source_volumes;
    let (note_tx, mut notes) = mpsc::unbounded_channel();
    let text = output == Output::Text;
    let printing = tokio::spawn(async move {
        while let Some(event) = notes.recv().await {
            if let (EngineEvent::Note(note), true) = (event, text) {
                println!("{note}");
            }
        }
    });
    let reconciled = ferry_engine::reconcile(driver.clone(), &journal, &lease, &waits, release, &note_tx).await;
    drop(note_tx);
    let _ = printing.await;
    match reconciled {
        Ok(settled) => {
            for r in settled {
                if output == Output::Text {
                    println!("{}: {}: {}", r.vm, r.status, r.message);
                    for action in r.actions {
                        println!("  - {action}");
                    }
                }
            }
        }
        Err(e) => {
            return match Lost::from_engine(&run.id, &e) {
                Some(lost) => lost_exit(&lost),
                None => {
                    eprintln!("ferry resume: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            };
        }
    }
    if output == Output::Text {
        println!("run {} resumed", run.id);
    }
    let resume_from = match &document.plan.resume_from {
        Some(previous) => previous_statuses(&journal, previous).await.ok(),
        None => None,
    };
    let inventory = driver.inventory().await;
    let settings = RunSettings {
        run_id: run.id.clone(),
        owner: me,
        policy: document.plan.policy.clone(),
        limits: document.plan.limits.clone(),
        deadline: document.plan.deadline,
        resume_from,
        unavailable: document.unavailable.clone(),
        manual: document.manual.clone(),
    };
    let drive = Drive {
        driver: driver.clone(),
        journal: journal.clone(),
        cluster: cluster.clone(),
        inventory,
        settings,
        specs: document.moves,
        generation: run.generation,
        clock: Clock::system(),
    };
    let mut ok = execute(drive, &document.plan, output).await;
    // A drained host's hook and the return of its VMs, and the post-run hook, if the run
    // stopped before them.
    let how = After { clock: Clock::system(), hook_done: args.hook_done, output };
    ok &= match crate::drain::after(&driver, &journal, &lease, &document.plan, &cluster, how).await {
        Ok(ok) => ok,
        Err(lost) => lost_exit(&lost),
    };
    ok &= post_run(&journal, &lease, &document.plan, output == Output::Json).await;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// Runs `ferry abort`: asks the process running the run to abort it, and waits for it;
/// when no process runs it (it died), aborts it here: jobs still running are cancelled,
/// moves in flight are settled against the hypervisors, the rest end ABORTED.
pub async fn abort(args: AbortArgs, _output: Output) -> ExitCode {
    let (journal, run) = match open_run(&args.state, &args.run).await {
        Ok(opened) => opened,
        Err(e) => return bad_input(e),
    };
    if run.state.is_ended() {
        println!("run {} is already {}", run.id, run.state);
        return exit_for(&journal, &run.id).await;
    }
    if let Err(e) = journal.request_abort(&run.id).await {
        eprintln!("ferry abort: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    if held_by_another(&run, &owner()) {
        println!("abort requested; {} is cancelling the run's migrations", run.owner.as_deref().unwrap_or("its owner"));
        let waited = std::time::Instant::now();
        while waited.elapsed() < Duration::from_secs(args.wait) {
            match journal.run(&run.id).await {
                Ok(r) if r.state.is_ended() => {
                    println!("run {} {}", r.id, r.state);
                    return exit_for(&journal, &run.id).await;
                }
                Ok(r) if !held_by_another(&r, &owner()) => break,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        if journal.run(&run.id).await.is_ok_and(|r| held_by_another(&r, &owner())) {
            eprintln!(
                "ferry abort: run {} has not finished aborting after {} s; `ferry status {}` follows it",
                run.id, args.wait, run.id
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    // Nobody runs it: abort it here.
    let (_, cluster) = match documents(&journal, &run.id).await {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    match abort_here(&cluster, &journal, &run.id).await {
        Ok(()) => {
            println!("run {} aborted", run.id);
            exit_for(&journal, &run.id).await
        }
        Err(e) => {
            eprintln!("ferry abort: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Aborts run `run_id`, which no process runs, on `cluster`, under its lease (refused,
/// naming the holder, when another process took it meanwhile): a run on real hosts is
/// settled against them first ([`abort_offline`]); a simulated run's world ended with the
/// process that ran it, so there is nothing to settle, and its moves not over end ABORTED.
pub(crate) async fn abort_here(cluster: &ClusterSpec, journal: &Journal, run_id: &str) -> Result<(), String> {
    if simulated(cluster) {
        // Its heartbeats are on virtual time: no process can be told alive by them, and the
        // world it ran in is gone.
        let run = journal.run(run_id).await.map_err(|e| e.to_string())?;
        journal.claim_lease(&run, &owner()).await.map_err(|e| format!("could not take run {run_id}: {e}"))?;
        close_run(journal, run_id).await
    } else {
        let lease = take_lease(journal, run_id, &owner()).await?;
        abort_offline(Arc::new(LibvirtDriver::new(cluster.clone())), journal, &lease).await
    }
}

/// Settles the run `lease` holds against the hosts, its running jobs aborted at once (a
/// post-copy job, which cannot be, waited out), then ends it ABORTED.
pub(crate) async fn abort_offline<D: Driver>(driver: Arc<D>, journal: &Journal, lease: &Lease) -> Result<(), String> {
    let run_id = lease.run();
    let release = documents(journal, run_id).await.is_ok_and(|(d, _)| d.plan.policy.delete_source_volumes);
    let (events, _ignored) = mpsc::unbounded_channel();
    let settled = ferry_engine::reconcile(driver, journal, lease, &Waits::abort_at_once(), release, &events)
        .await
        .map_err(|e| match Lost::from_engine(run_id, &e) {
            Some(lost) => lost_exit(&lost),
            None => e.to_string(),
        })?;
    for r in settled {
        println!("{}: {}: {}", r.vm, r.status, r.message);
    }
    close_run(journal, run_id).await
}

/// Ends every move not yet over as ABORTED, then the run.
async fn close_run(journal: &Journal, run_id: &str) -> Result<(), String> {
    for m in journal.moves(run_id).await.map_err(|e| e.to_string())? {
        if !m.status.is_terminal() {
            journal
                .set_status(run_id, &m.uuid, m.generation, Status::Aborted, "not started: run aborted by the operator")
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let run = journal.run(run_id).await.map_err(|e| e.to_string())?;
    journal.set_run_state(run_id, run.generation, RunState::Aborted).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Whether a run's cluster is a simulated fleet's.
pub(crate) fn simulated(cluster: &ClusterSpec) -> bool {
    cluster.hosts.iter().any(|h| h.uri.starts_with(ferry_sim::SIM_URI_PREFIX))
}

/// The owner a run on `driver` is journaled under: `host:pid`, or, for a simulation, the
/// same name every time (the same simulation writes the same journal).
pub(crate) fn owner_of(driver: &AnyDriver) -> String {
    if driver.is_sim() {
        SIM_OWNER.to_string()
    } else {
        owner()
    }
}

/// Runs the engine with Ctrl-C handling, progress and the plan's per-VM hooks, then prints
/// the outcome. True when every move succeeded and no hook failed under `fail`. A lost
/// lease ends the process ([`lost_exit`]).
pub async fn execute<D: Driver>(run: Drive<D>, plan: &Plan, output: Output) -> bool {
    let Drive { driver, journal, cluster, inventory, settings, specs, generation, clock } = run;
    let run_id = settings.run_id.clone();
    let lease = match lease_for(&journal, &run_id, generation, &settings.owner).await {
        Ok(lease) => lease,
        Err(e) => {
            eprintln!("ferry: {e}");
            return false;
        }
    };
    let failed = Arc::new(Mutex::new(None));
    let uuids: Vec<(String, String)> = specs.iter().map(|s| (s.uuid.clone(), s.vm.clone())).collect();
    let hooked = Hooked::new(driver, plan, &uuids, journal.clone(), lease, failed.clone(), output == Output::Json);
    let run = Drive { driver: Arc::new(hooked), journal, cluster, inventory, settings, specs, generation, clock };
    match run.drive(&[Command::Stop, Command::Abort], output).await {
        Ok(end) => {
            print_end(&run_id, &end, output);
            let hook_failed = failed.lock().map(|f| f.is_some()).unwrap_or(true);
            end.moves.iter().all(|m| m.status.is_success()) && !hook_failed
        }
        Err(e) => {
            eprintln!("ferry: {e}");
            false
        }
    }
}

/// This ferry lost a run's lease: another process claimed the run and drives it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The run.
    pub run: String,
    /// Who drives it now (`host:pid`).
    pub holder: String,
}

impl Lost {
    /// The lease loss a journal error reports, if it is one.
    pub fn from_journal(e: &JournalError) -> Option<Lost> {
        match e {
            JournalError::LeaseLost { run, holder } => Some(Lost { run: run.clone(), holder: holder.clone() }),
            _ => None,
        }
    }

    /// The lease loss an engine error reports, if it is one.
    pub fn from_engine(run: &str, e: &EngineError) -> Option<Lost> {
        e.lost_to().map(|holder| Lost { run: run.to_string(), holder: holder.to_string() })
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} is now driven by {}; this ferry stopped starting moves (migrations it started go on in \
             libvirt, and {} settles them; `ferry status {}` follows the run)",
            self.run, self.holder, self.holder, self.run
        )
    }
}

/// Says that this ferry lost the lease and ends the process at once with exit 1. At once,
/// not by returning: the driver's blocking calls (a migration waited for in libvirt, its
/// finalization or undo after it) cannot be cancelled, and the runtime would wait for them
/// on its way out, then let them act on a run another process now drives. Ending the
/// process closes their connections as `kill -9` would: the migrations go on in libvirt,
/// for the new holder to settle.
pub(crate) fn lost_exit(lost: &Lost) -> ! {
    use std::io::Write;
    eprintln!("ferry: {lost}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(i32::from(EXIT_FAILURE))
}

/// The lease this process holds on run `run_id`, or a new claim of it at `generation` (a
/// run this process just created).
async fn lease_for(journal: &Journal, run_id: &str, generation: i64, owner: &str) -> Result<Lease, String> {
    if let Some(lease) = journal.lease(run_id) {
        return Ok(lease);
    }
    journal.claim(run_id, generation, owner).await.map_err(|e| format!("could not take run {run_id}: {e}"))?;
    journal.lease(run_id).ok_or_else(|| format!("run {run_id}: claimed, but the journal kept no lease"))
}

/// A run ready to go: the engine's inputs and the run's generation in the journal.
pub struct Drive<D> {
    /// The hosts, real or simulated.
    pub driver: Arc<D>,
    /// The journal holding the run.
    pub journal: Journal,
    /// The cluster file.
    pub cluster: ClusterSpec,
    /// Hosts and VMs now.
    pub inventory: ferry_model::Inventory,
    /// The run's settings.
    pub settings: RunSettings,
    /// Its moves.
    pub specs: Vec<MoveSpec>,
    /// The run's generation, to take its lease when this process does not hold it yet.
    pub generation: i64,
    /// The engine's clock: virtual time in a simulation.
    pub clock: Clock,
}

impl<D: Driver> Drive<D> {
    /// Runs the engine under the run's lease (the one this process holds, or a claim of it
    /// at `generation`), showing progress on stderr. Each Ctrl-C sends the next of
    /// `interrupts` to the engine. When the lease is lost, the process ends
    /// ([`lost_exit`]).
    pub async fn drive(self, interrupts: &[Command], output: Output) -> Result<RunEnd, String> {
        let run_id = self.settings.run_id.clone();
        let lease = lease_for(&self.journal, &run_id, self.generation, &self.settings.owner).await?;
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let interrupts = interrupts.to_vec();
        tokio::spawn(async move {
            for command in interrupts {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                let _ = command_tx.send(command);
            }
        });
        let memory: Vec<(String, u64)> = self.specs.iter().map(|s| (s.vm.clone(), s.memory_mib)).collect();
        let show = tokio::spawn(crate::show::events(event_rx, memory, output));
        let engine = Engine::new(self.driver, self.journal, self.cluster, self.inventory, self.settings, self.specs)
            .with_clock(self.clock)
            .with_lease(lease);
        let end = engine.run(command_rx, event_tx).await;
        let _ = show.await;
        end.map_err(|e| match Lost::from_engine(&run_id, &e) {
            Some(lost) => lost_exit(&lost),
            None => format!("run {run_id} stopped: {e}; `ferry resume {run_id}` finishes it"),
        })
    }
}

fn print_end(run_id: &str, end: &RunEnd, output: Output) {
    let mut counts: Vec<(Status, usize)> = Vec::new();
    for m in &end.moves {
        match counts.iter_mut().find(|(s, _)| *s == m.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((m.status, 1)),
        }
    }
    if output == Output::Json {
        let value = serde_json::json!({
            "run": run_id,
            "state": end.state.name(),
            "moves": end.moves.iter().map(|m| serde_json::json!({"vm": m.vm, "status": m.status, "message": m.message})).collect::<Vec<_>>(),
        });
        println!("{value}");
        return;
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("run {run_id} {}: {}", end.state, counts.join(", "));
    println!("details: ferry report {run_id}");
}

/// The journal and run `id` in it.
async fn open_run(state: &StateArg, id: &str) -> Result<(Journal, Run), String> {
    let journal = state.open_existing().await?;
    let run = find_run(&journal, id).await?;
    Ok((journal, run))
}

pub(crate) async fn find_run(journal: &Journal, id: &str) -> Result<Run, String> {
    match journal.run(id).await {
        Ok(run) => Ok(run),
        Err(JournalError::RunNotFound { .. }) => {
            let runs = journal.runs().await.unwrap_or_default();
            let hint = ferry_plan::closest(id, runs.iter().map(|r| r.id.as_str()))
                .map(|c| format!("; did you mean {c}?"))
                .unwrap_or_default();
            Err(format!("no run {id} in the journal{hint}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) async fn documents(journal: &Journal, id: &str) -> Result<(RunDocument, ClusterSpec), String> {
    let stored = journal.run_documents(id).await.map_err(|e| e.to_string())?;
    RunDocument::read(id, &stored).map_err(|e| crate::state::chain(&e))
}

/// 0 when every move of the run succeeded, 1 otherwise.
pub(crate) async fn exit_for(journal: &Journal, id: &str) -> ExitCode {
    match journal.moves(id).await {
        Ok(moves) if moves.iter().all(|m| m.status.is_success()) => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_FAILURE),
    }
}

pub(crate) fn bad_input(e: String) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_BAD_INPUT)
}

/// Takes run `id`'s lease for `me`, unless another process holds it: refused then, in words
/// that name the holder and what to do (the caller exits 1). A claim that loses a race
/// to another process is refused the same way; one that meets another change (an abort
/// request) reads the run again and decides again.
pub(crate) async fn take_lease(journal: &Journal, id: &str, me: &str) -> Result<Lease, String> {
    for _ in 0..8 {
        let run = journal.run(id).await.map_err(|e| format!("run {id}: {e}"))?;
        if held_by_another(&run, me) {
            let since = (now_ms() - run.heartbeat_ms.unwrap_or(0)) / 1000;
            return Err(refusal(id, run.owner.as_deref().unwrap_or("another ferry"), Some(since)));
        }
        match journal.claim_lease(&run, me).await {
            Ok(lease) => return Ok(lease),
            Err(JournalError::LeaseHeld { holder, .. }) => return Err(refusal(id, &holder, None)),
            Err(JournalError::Conflict { .. }) => continue,
            Err(e) => return Err(format!("could not take run {id}: {e}")),
        }
    }
    Err(format!("could not take run {id}: it kept changing while this ferry tried; try again"))
}

/// Another process drives run `id`: what to say, and what to do instead.
fn refusal(id: &str, holder: &str, silent_s: Option<i64>) -> String {
    let since = silent_s.map(|s| format!(" (its last sign of life was {s} s ago)")).unwrap_or_default();
    format!(
        "run {id} is being driven by {holder}{since}; this ferry starts nothing. `ferry status {id}` follows it; \
         `ferry abort {id}` stops it"
    )
}

/// How long `resume` waits for each job that outlived its ferry: the completion timeout the
/// run's moves had (per GiB of each VM's memory, or `ferry move`'s hand-set one).
fn waits(document: &RunDocument) -> Waits {
    let memory = document.moves.iter().map(|m| (m.uuid.clone(), m.memory_mib)).collect();
    let waits = Waits::per_gib(document.plan.policy.completion_timeout_per_gib_s, memory);
    match document.manual.completion_timeout {
        Some(fixed) => Waits { fixed: Some(fixed), ..waits },
        None => waits,
    }
}

/// Whether another process holds the run: its owner beat recently, and, when it ran on
/// this machine, its process still exists (a killed ferry is known dead at once).
pub(crate) fn held_by_another(run: &Run, me: &str) -> bool {
    let Some(owner) = run.owner.as_deref() else { return false };
    if owner == me || !owner_alive(run.heartbeat_ms, now_ms()) {
        return false;
    }
    let (host, pid) = owner.rsplit_once(':').unwrap_or((owner, ""));
    let local = me.rsplit_once(':').is_some_and(|(my_host, _)| my_host == host);
    !local || std::path::Path::new("/proc").join(pid).exists()
}

/// The runs of the journal that another live process holds: their claims on VMs hold
/// however old (the active-run check). A journal that cannot be read gives none: the
/// driver still refuses a VM whose claim is fresh or whose job runs.
pub(crate) async fn live_runs(journal: &Journal) -> Vec<String> {
    let me = owner();
    let runs = journal.runs().await.unwrap_or_default();
    runs.into_iter().filter(|r| !r.state.is_ended() && held_by_another(r, &me)).map(|r| r.id).collect()
}

/// `host:pid`, the journal lease's owner.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
