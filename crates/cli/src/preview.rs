//! `ferry preview`: every move's checks, placement and estimates, before anything is touched.

use ferry_model::units::seconds;
use std::path::PathBuf;
use std::process::ExitCode;

use ferry_driver::Driver;
use ferry_model::Inventory;
use ferry_preview::checks::Outcome;
use ferry_preview::{Preview, PreviewConfig};
use ferry_runs::drivers::AnyDriver;
use ferry_runs::inputs::Inputs;

use crate::cluster::ClusterArg;
use crate::show::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};
use crate::state::StateArg;

/// `ferry preview` arguments.
#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    /// The plan: TOML, or CSV (`vm,to,group,order`) when the name ends in .csv.
    pub plan: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Use a saved inventory (`ferry inventory --output json`) instead of asking the hosts:
    /// nothing is contacted.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Measure each VM's dirty rate through libvirt before estimating (takes --measure-seconds).
    /// Implied on a simulated fleet, whose rates are known.
    #[arg(long)]
    pub measure: bool,
    /// Seconds each dirty-rate measurement lasts.
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub measure_seconds: u32,
    /// Waive a check: its failures become warnings. Repeatable. Checks: vm-state, target,
    /// maintenance, memory, vcpus, cpu-model, hypervisor-version, host-group, volumes,
    /// networks, anti-affinity, direction.
    #[arg(long = "ignore", value_name = "CHECK")]
    pub ignore: Vec<String>,
    /// Explain each placement: why the chosen host, and why not each other host.
    #[arg(long)]
    pub explain: bool,
    /// The journal tells which copies of a VM's disks on other hosts ferry left there (read
    /// only, when it exists).
    #[command(flatten)]
    pub state: StateArg,
}

/// Runs `ferry preview`.
pub async fn run(args: PreviewArgs, output: Output) -> ExitCode {
    let bad = |e: String| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let Inputs { plan, cluster: source, ignore, .. } =
        match ferry_runs::inputs::load(&args.plan, args.cluster.location(), &args.ignore) {
            Ok(inputs) => inputs,
            Err(e) => return bad(e),
        };
    let cluster = source.spec();
    let driver = AnyDriver::new(&source);
    let inventory: Inventory = match &args.inventory {
        Some(path) => {
            let name = path.display().to_string();
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str(&text).map_err(|e| format!("line {}: {e}", e.line())));
            match parsed {
                Ok(inventory) => inventory,
                Err(e) => return bad(format!("{name}: not an inventory (ferry inventory --output json): {e}")),
            }
        }
        None => driver.inventory().await,
    };
    if plan.roll.is_some() {
        return crate::roll::preview(&plan, &cluster, &inventory, output);
    }
    let moves = match ferry_plan::resolve(&plan, &cluster, &inventory) {
        Ok(moves) => moves,
        Err(errors) => return bad(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    };
    let mut config = PreviewConfig {
        ignore,
        explain: args.explain,
        memory: ferry_runs::drivers::memory_profiles(&source),
        now_ms: Some(ferry_runs::owners::now_ms()),
        ..PreviewConfig::default()
    };
    // A simulated fleet's commands run on paused time: its journal takes the virtual clock.
    let journal_clock = ferry_runs::drivers::clocks(&source).1;
    let journal = match args.state.at() {
        Ok(at) => at.open_existing_with_clock(journal_clock).await.ok(),
        Err(_) => None,
    };
    let events = crate::show::events(output);
    if let Some(journal) = &journal {
        config.compression = ferry_runs::preview::observed_compression(journal, &moves, &events).await;
    }
    if args.inventory.is_none() {
        config.earlier_copies =
            ferry_runs::preview::earlier_copies(&driver, journal.as_ref(), &inventory, &moves, &events).await;
    }
    if args.measure || (driver.is_sim() && args.inventory.is_none()) {
        if args.inventory.is_some() {
            return bad("--measure asks the hosts; it cannot be used with --inventory".into());
        }
        let uuids = moves.iter().map(|m| m.uuid.clone()).collect();
        let (rates, failed) = driver.measure_dirty_rates(uuids, args.measure_seconds).await;
        for (uuid, why) in failed {
            let name = moves.iter().find(|m| m.uuid == uuid).map(|m| m.vm.as_str()).unwrap_or(&uuid);
            eprintln!("ferry preview: could not measure {name}: {why}");
        }
        config.dirty_rates = rates;
    }
    let preview = ferry_preview::preview(&cluster, &inventory, &plan, &moves, &config);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&preview).expect("preview serialises")),
        Output::Text => print_text(&preview),
    }
    if preview.failing > 0 {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_text(p: &Preview) {
    for vm in &p.vms {
        let to = vm.to.as_deref().unwrap_or("?");
        let kind = match vm.kind {
            ferry_preview::Kind::Live => "live",
            ferry_preview::Kind::Cold => "cold",
        };
        let group = vm.group.as_deref().map(|g| format!(", group {g}")).unwrap_or_default();
        println!("{}  {} -> {to} ({kind}{group}, plan line {})  {}", vm.vm, vm.from, vm.line, vm.verdict);
        if let Some(placement) = &vm.placement {
            println!("  placement: {}", placement.why);
            for (host, why) in &placement.rejected {
                println!("    not {host}: {why}");
            }
        }
        for check in &vm.checks {
            println!("  {:<8} {:<19} {}", check.outcome.to_string(), check.name.to_string(), check.message);
        }
        if let Some(e) = &vm.estimate {
            if vm.verdict != Outcome::Failed {
                println!(
                    "  estimate: blackout {}  transfer {}  total {}  at {:.0} MiB/s, dirty {:.1} MiB/s{}",
                    ms(e.downtime_ms),
                    seconds(e.transfer_s),
                    seconds(e.total_s),
                    e.bandwidth_mib_s,
                    e.dirty_mib_s,
                    if e.dirty_measured { " (measured)" } else { "" }
                );
                println!("            {}", e.note);
                if let Some(advice) = &e.advice {
                    println!("            advice: {advice}");
                }
            }
        }
        println!();
    }
    println!(
        "{}: {} moves, {} would fail, {} with warnings; estimated makespan {} under the plan's limits, worst blackout {}",
        p.plan,
        p.moves,
        p.failing,
        p.warnings,
        seconds(p.makespan_s),
        ms(p.worst_downtime_ms)
    );
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0} ms")
    } else {
        "never".into()
    }
}
