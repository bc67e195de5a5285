//! `ferry move`: one VM, live by default, with a progress line and a summary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ferry_driver::{ColdOptions, Control, Driver, LiveOptions, MoveError, MoveReport, MoveRequest, Progress};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{Location, Status, Vm};
use serde::Serialize;

use crate::cluster::ClusterArg;
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
    #[command(flatten)]
    pub cluster: ClusterArg,
}

/// What `ferry move` prints as its summary (and as JSON).
#[derive(Debug, Serialize)]
struct Summary {
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

/// Runs `ferry move`.
pub async fn run(args: MoveArgs, output: Output) -> ExitCode {
    let bad = |e: String| {
        eprintln!("ferry move: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let spec = match args.cluster.load() {
        Ok((_, spec)) => spec,
        Err(e) => return bad(e),
    };
    if spec.host(&args.to).is_none() {
        let names = spec.hosts.iter().map(|h| h.name.as_str());
        let hint = ferry_plan::closest(&args.to, names).map(|c| format!("; did you mean {c}?")).unwrap_or_default();
        return bad(format!("--to {}: no such host in the cluster{hint}", args.to));
    }
    let driver = LibvirtDriver::new(spec);
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
    if vm.host == args.to {
        let summary = Summary {
            vm: vm.name.clone(),
            uuid: vm.uuid.clone(),
            from: vm.host.clone(),
            to: args.to.clone(),
            kind: if args.cold { "cold" } else { "live" },
            status: Status::Success,
            reason: None,
            report: MoveReport { messages: vec![format!("already on {}: nothing to do", args.to)], ..MoveReport::default() },
        };
        print_summary(&summary, output);
        return ExitCode::SUCCESS;
    }
    let request = MoveRequest {
        vm: vm.uuid.clone(),
        from: vm.host.clone(),
        to: args.to.clone(),
        run_id: format!("move-{}", unix_millis()),
        delete_source_volumes: args.delete_source_volumes,
    };
    let kind = if args.cold { "cold" } else { "live" };
    let progress = ProgressLine::new(output, &vm.name, &args.to);
    let (status, reason, report) = if args.cold {
        let options = ColdOptions { shutdown_timeout: Duration::from_secs(args.shutdown_timeout) };
        progress.note(&format!("{}: cold move {} -> {}", vm.name, vm.host, args.to));
        outcome(driver.move_cold(request, options).await, Status::SuccessCold, false)
    } else {
        live(&driver, &vm, request, &args, progress).await
    };
    let failed = !status.is_success();
    let summary = Summary { vm: vm.name.clone(), uuid: vm.uuid.clone(), from: vm.host.clone(), to: args.to.clone(), kind, status, reason, report };
    print_summary(&summary, output);
    if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

async fn live(driver: &LibvirtDriver, vm: &Vm, request: MoveRequest, args: &MoveArgs, mut line: ProgressLine) -> (Status, Option<String>, MoveReport) {
    let options = LiveOptions {
        auto_converge: args.auto_converge,
        postcopy: args.postcopy,
        bandwidth_mib_s: args.bandwidth,
        max_downtime_ms: args.max_downtime,
    };
    let timeout = Duration::from_secs(args.timeout.unwrap_or_else(|| default_timeout(vm)));
    let mut migration = match driver.migrate_live(request, options).await {
        Ok(m) => m,
        Err(e) => return outcome(Err(e), Status::Success, false),
    };
    let started = Instant::now();
    let mut aborted_by_operator = false;
    let mut abort_sent = false;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            sample = migration.progress.recv() => {
                if let Some(sample) = sample {
                    line.update(&sample, started.elapsed());
                }
            }
            result = &mut migration.outcome => {
                break result.unwrap_or_else(|_| Err(MoveError::Init { reason: "the migration thread ended without an outcome".into() }));
            }
            _ = &mut deadline, if !abort_sent => {
                line.note(&format!("{}: not complete after {} s: aborting", vm.name, timeout.as_secs()));
                let _ = migration.controls.send(Control::Abort);
                abort_sent = true;
            }
            _ = tokio::signal::ctrl_c(), if !abort_sent => {
                line.note(&format!("{}: interrupted: aborting the migration (the VM stays on {})", vm.name, vm.host));
                let _ = migration.controls.send(Control::Abort);
                abort_sent = true;
                aborted_by_operator = true;
            }
        }
    };
    line.finish();
    let (status, reason, mut report) = outcome(result, Status::Success, aborted_by_operator);
    if abort_sent && !aborted_by_operator && status == Status::FailureWait {
        let why = format!("aborted: not complete within the {} s completion timeout", timeout.as_secs());
        report.messages.insert(0, why.clone());
        return (status, Some(why), report);
    }
    (status, reason, report)
}

/// 150 s per GiB of memory (the design's default completion timeout), at least 60 s.
fn default_timeout(vm: &Vm) -> u64 {
    let gib = vm.memory_mib as f64 / 1024.0;
    ((gib * 150.0).ceil() as u64).max(60)
}

fn outcome(result: Result<MoveReport, MoveError>, success: Status, by_operator: bool) -> (Status, Option<String>, MoveReport) {
    match result {
        Ok(report) => (success, None, report),
        Err(MoveError::Init { reason }) => (Status::FailureInit, Some(reason), MoveReport::default()),
        Err(MoveError::Transfer { reason, aborted, report }) => {
            let status = if aborted && by_operator { Status::Aborted } else { Status::FailureWait };
            (status, Some(reason), *report)
        }
        Err(MoveError::Lost { reason, locations }) => {
            (Status::FailureLost, Some(format!("{reason}; run `ferry cleanup --vm`")), MoveReport { locations, ..MoveReport::default() })
        }
    }
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

fn unix_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// One progress line: redrawn in place on a terminal, a plain line a second otherwise.
struct ProgressLine {
    tty: bool,
    quiet: bool,
    prefix: String,
    last_plain: Option<Instant>,
}

impl ProgressLine {
    fn new(output: Output, vm: &str, to: &str) -> ProgressLine {
        ProgressLine { tty: std::io::stderr().is_terminal(), quiet: output == Output::Json, prefix: format!("{vm} -> {to}"), last_plain: None }
    }

    fn update(&mut self, p: &Progress, elapsed: Duration) {
        if self.quiet {
            return;
        }
        let mib = |b: u64| b as f64 / 1048576.0;
        let percent = if p.total_bytes > 0 { 100.0 * p.transferred_bytes as f64 / p.total_bytes as f64 } else { 0.0 };
        let text = format!(
            "{}  {percent:3.0}%  {:.1}/{:.1} MiB  {:.1} MiB/s  pass {}  dirty {:.1} MiB/s  {:.1} s",
            self.prefix,
            mib(p.transferred_bytes),
            mib(p.total_bytes),
            mib(p.bandwidth_bytes_s),
            p.memory_passes,
            mib(p.dirty_rate_bytes_s),
            elapsed.as_secs_f64()
        );
        if self.tty {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        } else if self.last_plain.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            eprintln!("{text}");
            self.last_plain = Some(Instant::now());
        }
    }

    fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{text}");
    }

    fn finish(&self) {
        if self.tty && !self.quiet {
            eprint!("\r\x1b[2K");
        }
    }
}
