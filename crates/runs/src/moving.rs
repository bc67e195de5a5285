//! One VM moved by hand (`ferry move`): live by default, as a run of one move, through the
//! same prechecks, claim and engine as a plan's moves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_document::{Manual, MoveSpec};
use ferry_driver::{Driver, MoveReport};
use ferry_engine::Command;
use ferry_journal::Journal;
use ferry_model::{ClusterSpec, Inventory, Status, StreamOptions, Vm};
use ferry_plan::{Mode, Policy};
use ferry_preview::checks::{check_move, verdict, waive, Candidate, CheckContext, CheckName, Outcome};
use serde::Serialize;

use crate::build::RunBuilder;
use crate::cluster::{self, unknown_host};
use crate::drivers::{self, AnyDriver};
use crate::events::{Error, Events};
use crate::execute::Drive;
use crate::journals::JournalAt;
use crate::owners::{live_runs, now_ms, owner_of};

/// What `ferry move` asks.
#[derive(Debug, Clone, Default)]
pub struct MoveAsk {
    /// The VM, by name or UUID.
    pub vm: String,
    /// The target host.
    pub to: String,
    /// Move cold.
    pub cold: bool,
    /// Bandwidth cap, MiB/s.
    pub bandwidth_mib_s: Option<u64>,
    /// Downtime limit, ms.
    pub max_downtime_ms: Option<u64>,
    /// Let QEMU slow the guest down.
    pub auto_converge: bool,
    /// Allow post-copy.
    pub postcopy: bool,
    /// Completion timeout, s (default: 150 s per GiB, at least 60 s).
    pub timeout_s: Option<u64>,
    /// Seconds a guest gets to shut down in a cold move.
    pub shutdown_timeout_s: u64,
    /// Delete the source's copies of host-local volumes after a verified move.
    pub delete_source_volumes: bool,
    /// Encrypt the stream: `None`, when both hosts' URIs use TLS.
    pub tls: Option<bool>,
    /// Parallel connections, compression, zero-copy.
    pub stream: StreamOptions,
    /// Checks waived.
    pub ignore: Vec<CheckName>,
    /// The cluster argument.
    pub cluster: Option<PathBuf>,
}

/// How a move went: what `ferry move` prints as its summary (and as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    /// The run, when one was journaled.
    pub run: Option<String>,
    /// The VM.
    pub vm: String,
    /// Its UUID.
    pub uuid: String,
    /// Where it was.
    pub from: String,
    /// Where it was to go.
    pub to: String,
    /// `live` or `cold`.
    pub kind: &'static str,
    /// The move's status.
    pub status: Status,
    /// Why it failed.
    pub reason: Option<String>,
    /// Figures and messages.
    #[serde(flatten)]
    pub report: MoveReport,
}

/// Moves one VM as a run of one move, journaled like any other (`ferry report`, `ferry
/// resume` work on it). Preview's checks go first (a failure is FAILURE-INIT, nothing
/// journaled or touched), then the driver's claim on the VM. Ctrl-C aborts the migration
/// (the VM stays on its source).
pub async fn move_vm(ask: &MoveAsk, journal: &JournalAt, events: &Events) -> Result<Moved, Error> {
    let problems = ask.stream.problems(ask.tls == Some(true));
    if !problems.is_empty() {
        return Err(Error::BadInput(problems.join("; ")));
    }
    let source = cluster::read(ask.cluster.as_deref()).map_err(Error::BadInput)?;
    let spec = source.spec();
    if spec.host(&ask.to).is_none() {
        return Err(Error::BadInput(unknown_host("--to", &ask.to, &spec)));
    }
    let (clock, journal_clock) = drivers::clocks(&source);
    let journal = journal.open_with_clock(journal_clock).await?;
    let driver = Arc::new(AnyDriver::new(&source));
    let inventory = driver.inventory().await;
    let Some(vm) = inventory.vms.iter().find(|v| v.name == ask.vm || v.uuid == ask.vm).cloned() else {
        let mut message = format!("{}: no such VM on any reachable host", ask.vm);
        if let Some(c) = ferry_plan::closest(&ask.vm, inventory.vms.iter().map(|v| v.name.as_str())) {
            message.push_str(&format!("; did you mean {c}?"));
        }
        for (host, why) in &inventory.unreachable {
            message.push_str(&format!("\n  {host} could not be asked: {why}"));
        }
        return Err(Error::BadInput(message));
    };
    let moved = |run: Option<String>, status, reason, report| Moved {
        run,
        vm: vm.name.clone(),
        uuid: vm.uuid.clone(),
        from: vm.host.clone(),
        to: ask.to.clone(),
        kind: if ask.cold { "cold" } else { "live" },
        status,
        reason,
        report,
    };
    if vm.host == ask.to {
        let report =
            MoveReport { messages: vec![format!("already on {}: nothing to do", ask.to)], ..MoveReport::default() };
        return Ok(moved(None, Status::Success, None, report));
    }
    let policy = Policy {
        mode: if ask.cold { Mode::Cold } else { Mode::Live },
        auto_converge: ask.auto_converge,
        postcopy: ask.postcopy,
        delete_source_volumes: ask.delete_source_volumes,
        shutdown_timeout_s: ask.shutdown_timeout_s,
        max_downtime_ms: ask.max_downtime_ms.unwrap_or(Policy::default().max_downtime_ms),
        tls: ask.tls,
        stream: ask.stream,
        ..Policy::default()
    };
    if let Some(refusal) = precheck(ask, &vm, &spec, &inventory, &policy, &journal).await {
        let report = MoveReport { messages: refusal.clone(), ..MoveReport::default() };
        return Ok(moved(None, Status::FailureInit, Some(refusal.join("; ")), report));
    }
    let manual = Manual {
        bandwidth_mib_s: ask.bandwidth_mib_s.map(|b| b as f64),
        max_downtime_ms: ask.max_downtime_ms,
        completion_timeout: Some(Duration::from_secs(ask.timeout_s.unwrap_or_else(|| default_timeout(&vm)))),
    };
    let built = RunBuilder::single_move(MoveSpec::to_host(&vm, &ask.to), policy, manual, spec.clone())
        .create(&journal, events)
        .await?;
    let drive = Drive {
        driver: driver.clone(),
        journal,
        cluster: spec,
        inventory,
        settings: built.settings(owner_of(&driver), None),
        specs: built.document.moves.clone(),
        generation: built.run.generation,
        clock,
        planned_s: None,
    };
    let end = drive.drive(&[Command::Abort], events).await?;
    let Some(ended) = end.moves.into_iter().next() else {
        return Err(Error::Failed("the run ended without its move".into()));
    };
    let failed = !ended.status.is_success();
    let reason = failed.then_some(ended.message.clone());
    let mut report = ended.report.unwrap_or_default();
    if failed {
        report.messages.insert(0, ended.message);
    }
    Ok(moved(Some(built.run.id), ended.status, reason, report))
}

/// Preview's checks for this one move, with the waivers applied: the failures in words,
/// and what to do, when any failed. Another run's live claim on the VM fails however waived.
async fn precheck(
    ask: &MoveAsk,
    vm: &Vm,
    cluster: &ClusterSpec,
    inventory: &Inventory,
    policy: &Policy,
    journal: &Journal,
) -> Option<Vec<String>> {
    let live_runs = live_runs(journal).await;
    // Earlier copies on the target are judged when the move starts (the engine's `stale`).
    let earlier_copies = HashMap::new();
    let candidates =
        [Candidate { uuid: vm.uuid.clone(), from: vm.host.clone(), to: Some(ask.to.clone()), group: None }];
    let ctx = CheckContext {
        cluster,
        inventory,
        policy,
        moves: &candidates,
        unavailable: &[],
        earlier_copies: &earlier_copies,
        now_ms: Some(now_ms()),
        live_runs: &live_runs,
    };
    let mut checks = check_move(&ctx, 0);
    waive(&mut checks, &ask.ignore);
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
