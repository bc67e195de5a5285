//! `ferry preview`: every move's checks, placement and estimates, before anything is touched.

use ferry_model::units::seconds;
use std::path::PathBuf;
use std::process::ExitCode;

use ferry_driver::Driver;
use ferry_model::Inventory;
use ferry_preview::checks::Outcome;
use ferry_preview::Preview;
use ferry_runs::drivers::AnyDriver;
use ferry_runs::inputs::Inputs;
use ferry_runs::preview::PreviewAsk;

use crate::cluster::ClusterArg;
use crate::show::{out, Output, EXIT_BAD_INPUT, EXIT_FAILURE};
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
    let inventory: Option<Inventory> = match &args.inventory {
        Some(path) => {
            let name = path.display().to_string();
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str(&text).map_err(|e| format!("line {}: {e}", e.line())));
            match parsed {
                Ok(inventory) => Some(inventory),
                Err(e) => return bad(format!("{name}: not an inventory (ferry inventory --output json): {e}")),
            }
        }
        None => None,
    };
    if plan.roll.is_some() {
        let cluster = source.spec();
        let inventory = match inventory {
            Some(inventory) => inventory,
            None => AnyDriver::new(&source).inventory().await,
        };
        return crate::roll::preview(&plan, &cluster, &inventory, output);
    }
    // A simulated fleet's commands run on paused time: its journal takes the virtual clock.
    let journal_clock = ferry_runs::drivers::clocks(&source).1;
    let journal = match args.state.at() {
        Ok(at) => at.open_existing_with_clock(journal_clock).await.ok(),
        Err(_) => None,
    };
    let ask = PreviewAsk {
        ignore,
        explain: args.explain,
        measure: args.measure,
        measure_seconds: args.measure_seconds,
        inventory,
    };
    let events = crate::show::events(output);
    let preview = match ferry_runs::preview::preview_moves(&source, &plan, ask, journal.as_ref(), &events).await {
        Ok(preview) => preview,
        Err(ferry_runs::Error::BadInput(e)) => return bad(e),
        Err(e) => {
            eprintln!("ferry preview: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match output {
        Output::Json => out!("{}", serde_json::to_string_pretty(&preview).expect("preview serialises")),
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
        out!("{}  {} -> {to} ({kind}{group}, plan line {})  {}", vm.vm, vm.from, vm.line, vm.verdict);
        if let Some(placement) = &vm.placement {
            out!("  placement: {}", placement.why);
            for (host, why) in &placement.rejected {
                out!("    not {host}: {why}");
            }
        }
        for check in &vm.checks {
            out!("  {:<8} {:<19} {}", check.outcome.to_string(), check.name.to_string(), check.message);
        }
        if let Some(e) = &vm.estimate {
            if vm.verdict != Outcome::Failed {
                out!(
                    "  estimate: blackout {}  transfer {}  total {}  at {:.0} MiB/s, dirty {:.1} MiB/s{}",
                    ms(e.downtime_ms),
                    seconds(e.transfer_s),
                    seconds(e.total_s),
                    e.bandwidth_mib_s,
                    e.dirty_mib_s,
                    if e.dirty_measured { " (measured)" } else { "" }
                );
                out!("            {}", e.note);
                if let Some(advice) = &e.advice {
                    out!("            advice: {advice}");
                }
            }
        }
        out!();
    }
    out!(
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
