//! `ferry move`: one VM, live by default, as a run of one move, with progress and a summary.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ferry_driver::{Driver, MoveReport};
use ferry_engine::{Command, Manual, MoveSpec, RunSettings};
use ferry_journal::{Journal, NewMove, NewRun, RunKind};
use ferry_model::{ClusterSpec, Inventory, Location, Status, Vm};
use ferry_plan::{Hooks, Limits, Mode, Plan, PlannedMove, Policy, Target};
use ferry_preview::checks::{check_move, verdict, waive, Candidate, CheckContext, CheckName, Outcome};
use serde::Serialize;

use crate::cluster::ClusterArg;
use crate::drivers::{self, AnyDriver};
use ferry_document::RunDocument;

use crate::runs::{self, Drive};
use crate::state::StateArg;
use crate::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// `ferry move` arguments.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The VM, by name or UUID.
    pub vm: String,
    /// Target host (a name from the cluster file).
    #[arg(long)]
    pub to: String,
    /// Move cold: shut down, copy volumes, start on the target (the guest restarts).
    #[arg(long)]
    pub cold: bool,
    /// Bandwidth cap for the live migration, MiB/s.
    #[arg(long, value_name = "MiB/s")]
    pub bandwidth: Option<u64>,
    /// Maximum downtime the final switch-over may take, ms.
    #[arg(long, value_name = "MS")]
    pub max_downtime: Option<u64>,
    /// Let QEMU slow down a guest that dirties memory faster than it can be sent.
    #[arg(long)]
    pub auto_converge: bool,
    /// Allow switching to post-copy (a failure after the switch loses the VM).
    #[arg(long)]
    pub postcopy: bool,
    /// Abort a live migration that has not completed after this many seconds; the VM stays
    /// on its source. Default: 150 s per GiB of memory and copied disk, at least 60 s.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Seconds a guest gets to shut down by itself in a cold move before it is powered off.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub shutdown_timeout: u64,
    /// Delete the source's copy of host-local volumes after a verified move.
    #[arg(long)]
    pub delete_source_volumes: bool,
    /// Waive a failed precheck (as `ferry preview --ignore`); repeatable. A VM that a live
    /// run is moving stays refused whatever is waived.
    #[arg(long, value_name = "CHECK")]
    pub ignore: Vec<CheckName>,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// What `ferry move` prints as its summary (and as JSON).
#[derive(Debug, Serialize)]
struct Summary {
    run: Option<String>,
    vm: String,
    uuid: String,
    from: String,
    to: String,
    kind: &'static str,
    status: Status,
    reason: Option<String>,
    #[serde(flatten)]
    report: MoveReport,
}

/// Runs `ferry move`: a run of one move, journaled like any other (`ferry report`,
/// `ferry resume` work on it). It goes through preview's prechecks first (a failure is
/// FAILURE-INIT, exit 1, nothing journaled or touched), then the driver's claim on the VM.
/// Ctrl-C aborts the migration (the VM stays on its source).
pub async fn run(args: MoveArgs, output: Output) -> ExitCode {
    let bad = |e: String| {
        eprintln!("ferry move: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let source = match args.cluster.cluster() {
        Ok(cluster) => cluster,
        Err(e) => return bad(e),
    };
    let spec = source.spec();
    if spec.host(&args.to).is_none() {
        let names = spec.hosts.iter().map(|h| h.name.as_str());
        let hint = ferry_plan::closest(&args.to, names).map(|c| format!("; did you mean {c}?")).unwrap_or_default();
        return bad(format!("--to {}: no such host in the cluster{hint}", args.to));
    }
    let (clock, journal_clock) = drivers::clocks(&source);
    let journal = match args.state.open_with_clock(journal_clock).await {
        Ok(j) => j,
        Err(e) => return bad(format!("--state: {e}")),
    };
    let driver = Arc::new(AnyDriver::new(&source));
    let inventory = driver.inventory().await;
    let Some(vm) = inventory.vms.iter().find(|v| v.name == args.vm || v.uuid == args.vm).cloned() else {
        let mut message = format!("{}: no such VM on any reachable host", args.vm);
        if let Some(c) = ferry_plan::closest(&args.vm, inventory.vms.iter().map(|v| v.name.as_str())) {
            message.push_str(&format!("; did you mean {c}?"));
        }
        for (host, why) in &inventory.unreachable {
            message.push_str(&format!("\n  {host} could not be asked: {why}"));
        }
        return bad(message);
    };
    let kind = if args.cold { "cold" } else { "live" };
    let summary = |run: Option<String>, status, reason, report| Summary {
        run,
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        from: vm.host.clone(),
        to: args.to.clone(),
        kind,
        status,
        reason,
        report,
    };
    if vm.host == args.to {
        let report =
            MoveReport { messages: vec![format!("already on {}: nothing to do", args.to)], ..MoveReport::default() };
        print_summary(&summary(None, Status::Success, None, report), output);
        return ExitCode::SUCCESS;
    }

    let policy = Policy {
        mode: if args.cold { Mode::Cold } else { Mode::Live },
        auto_converge: args.auto_converge,
        postcopy: args.postcopy,
        delete_source_volumes: args.delete_source_volumes,
        shutdown_timeout_s: args.shutdown_timeout,
        max_downtime_ms: args.max_downtime.unwrap_or(Policy::default().max_downtime_ms),
        ..Policy::default()
    };
    if let Some(refusal) = precheck(&args, &vm, &spec, &inventory, &policy, &journal).await {
        let report = MoveReport { messages: refusal.clone(), ..MoveReport::default() };
        print_summary(&summary(None, Status::FailureInit, Some(refusal.join("; ")), report), output);
        return ExitCode::from(EXIT_FAILURE);
    }
    let manual = Manual {
        bandwidth_mib_s: args.bandwidth.map(|b| b as f64),
        max_downtime_ms: args.max_downtime,
        completion_timeout: Some(Duration::from_secs(args.timeout.unwrap_or_else(|| default_timeout(&vm)))),
    };
    let plan = Plan {
        file: "ferry move".into(),
        name: format!("move {} to {}", vm.name, args.to),
        deadline: None,
        resume_from: None,
        limits: Limits::default(),
        policy: policy.clone(),
        moves: vec![PlannedMove {
            vm: vm.name.clone(),
            to: Target::Host(args.to.clone()),
            group: None,
            order: 0,
            priority: 0,
            line: 0,
            pre_hook: None,
            post_hook: None,
        }],
        drains: Vec::new(),
        hooks: Hooks::default(),
    };
    let specs = vec![MoveSpec::to_host(&vm, &args.to)];
    let document = RunDocument::new(plan.clone(), specs.clone(), Vec::new(), manual.clone());
    let stored = match document.to_documents(&spec) {
        Ok(stored) => stored,
        Err(e) => return bad(crate::state::chain(&e)),
    };
    let new_run = NewRun {
        plan_name: plan.name.clone(),
        plan: stored.plan,
        cluster: stored.cluster,
        kind: RunKind::Migrate,
        parent: None,
    };
    let new_move = NewMove {
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        source: vm.host.clone(),
        target: Some(args.to.clone()),
        group: None,
        seq: 0,
        priority: 0,
        status: Status::Pending,
        message: String::new(),
    };
    let run = match runs::create(&journal, &new_run, &[new_move]).await {
        Ok(run) => run,
        Err(e) => {
            eprintln!("ferry move: journal: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if output == Output::Text {
        println!("run {}", run.id);
    }
    let settings = RunSettings {
        run_id: run.id.clone(),
        owner: runs::owner_of(&driver),
        policy,
        limits: Limits::default(),
        deadline: None,
        resume_from: None,
        unavailable: Vec::new(),
        manual,
    };
    let drive = Drive { driver, journal, cluster: spec, inventory, settings, specs, generation: run.generation, clock };
    let end = match drive.drive(&[Command::Abort], output).await {
        Ok(end) => end,
        Err(e) => {
            eprintln!("ferry move: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let Some(moved) = end.moves.into_iter().next() else {
        eprintln!("ferry move: the run ended without its move");
        return ExitCode::from(EXIT_FAILURE);
    };
    let failed = !moved.status.is_success();
    let reason = failed.then_some(moved.message.clone());
    let mut report = moved.report.unwrap_or_default();
    if failed {
        report.messages.insert(0, moved.message);
    }
    print_summary(&summary(Some(run.id), moved.status, reason, report), output);
    if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// Preview's checks for this one move, with `--ignore` applied: the failures in words, and
/// what to do, when any failed. Another run's live claim on the VM fails however waived.
async fn precheck(
    args: &MoveArgs,
    vm: &Vm,
    cluster: &ClusterSpec,
    inventory: &Inventory,
    policy: &Policy,
    journal: &Journal,
) -> Option<Vec<String>> {
    let live_runs = runs::live_runs(journal).await;
    // Earlier copies on the target are judged when the move starts (the engine's `stale`).
    let earlier_copies = HashMap::new();
    let candidates =
        [Candidate { uuid: vm.uuid.clone(), from: vm.host.clone(), to: Some(args.to.clone()), group: None }];
    let ctx = CheckContext {
        cluster,
        inventory,
        policy,
        moves: &candidates,
        unavailable: &[],
        earlier_copies: &earlier_copies,
        now_ms: Some(runs::now_ms()),
        live_runs: &live_runs,
    };
    let mut checks = check_move(&ctx, 0);
    waive(&mut checks, &args.ignore);
    if verdict(&checks) != Outcome::Failed {
        return None;
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Failed);
    let mut refusal: Vec<String> = failed.map(|c| format!("{}: {}", c.name, c.message)).collect();
    let waivable = checks.iter().any(|c| c.outcome == Outcome::Failed && !c.held);
    refusal.push(if waivable {
        "fix what failed, or waive a check with --ignore CHECK (`ferry preview` shows every check)".to_string()
    } else {
        "nothing was started".to_string()
    });
    Some(refusal)
}

/// 150 s per GiB of memory (the design's default completion timeout), at least 60 s.
fn default_timeout(vm: &Vm) -> u64 {
    let gib = vm.memory_mib as f64 / 1024.0;
    ((gib * 150.0).ceil() as u64).max(60)
}

fn print_summary(s: &Summary, output: Output) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(s).expect("summary serialises"));
        return;
    }
    println!("{} {} {} -> {}: {}", s.vm, s.kind, s.from, s.to, s.status);
    if let Some(reason) = &s.reason {
        println!("  reason: {reason}");
    }
    let r = &s.report;
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
    println!(
        "  wall {:.2} s  job {}  downtime {}  transferred {:.1} MiB  memory passes {}",
        r.wall_ms as f64 / 1000.0,
        ms(r.job_ms),
        ms(r.downtime_ms),
        r.transferred_bytes as f64 / 1048576.0,
        r.memory_passes
    );
    if !r.locations.is_empty() {
        println!("  now: {}", describe(&r.locations));
    }
    for m in &r.messages {
        println!("  - {m}");
    }
}

fn describe(locations: &[Location]) -> String {
    locations.iter().map(|l| format!("{} on {}", l.state, l.host)).collect::<Vec<_>>().join(", ")
}
