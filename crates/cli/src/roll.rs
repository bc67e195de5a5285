//! `ferry roll`, and the preview of a roll plan: its waves, where each VM goes, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry_model::units::seconds;
use ferry_model::{ClusterSpec, Inventory};
use ferry_plan::Plan;
use ferry_roll::{plan_roll, RollPlan};
use ferry_runs::inputs::Inputs;
use ferry_runs::roll::{RollEnd, RollStart};
use ferry_runs::Error;

use crate::cluster::ClusterArg;
use crate::show::{self, exit, out, Output, EXIT_BAD_INPUT, EXIT_FAILURE};
use crate::state::StateArg;

/// `ferry roll` arguments.
#[derive(Debug, clap::Args)]
pub struct RollArgs {
    /// The plan, with its `[roll]` section.
    pub plan: PathBuf,
    /// Go on past the canary hosts without stopping for a confirmation.
    #[arg(long)]
    pub yes: bool,
    /// No wave starts after this instant: RFC 3339 (2026-11-25T06:00:00Z), a local time of
    /// day (22:00, the next one) or a duration from now (+2h, +90m); overrides the plan's
    /// deadline.
    #[arg(long, value_name = "TIME")]
    pub deadline: Option<String>,
    /// Waive a check in every wave: its failures become warnings and the move runs.
    /// Repeatable.
    #[arg(long = "ignore", value_name = "CHECK")]
    pub ignore: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// Runs `ferry roll`: exit 0 when every wave ended well, or the canary waves did and the
/// roll waits for its confirmation; 1 when a wave did not; 2 for bad input.
pub async fn run(args: RollArgs, output: Output) -> ExitCode {
    let rolled = async {
        let Inputs { mut plan, cluster, ignore } =
            ferry_runs::inputs::load(&args.plan, args.cluster.location(), &args.ignore).map_err(Error::BadInput)?;
        if let Some(text) = &args.deadline {
            plan.deadline = Some(crate::cluster::deadline_arg(text, &cluster).map_err(Error::BadInput)?);
        }
        let journal = args.state.at().map_err(|e| Error::BadInput(format!("--state: {e}")))?;
        let start = RollStart { plan, cluster, journal, ignore, yes: args.yes };
        let rolled = ferry_runs::roll::roll(start, &show::events(output)).await?;
        let roll = &rolled.roll;
        Ok(match rolled.end {
            RollEnd::Finished(ok) => {
                out!("roll {roll} finished{}", if ok { "" } else { ": not every wave ended well" });
                ok
            }
            RollEnd::AwaitingConfirmation => {
                out!("roll {roll}: the canary hosts are done; `ferry resume {roll}` goes on");
                true
            }
            RollEnd::Stopped(wave) => {
                out!("roll {roll} stopped at wave {wave}; `ferry resume {roll}` runs it again once fixed");
                false
            }
            RollEnd::Aborted(wave) => {
                out!("roll {roll} aborted at wave {wave}");
                false
            }
            RollEnd::PastDeadline(wave) => {
                out!("roll {roll} stopped: its deadline passed before wave {wave}");
                false
            }
        })
    };
    exit("roll", false, rolled.await)
}

/// Prints the waves of `plan`'s roll; exit 1 when a host cannot go into maintenance as
/// planned, 2 for input errors.
pub fn preview(plan: &Plan, cluster: &ClusterSpec, inventory: &Inventory, output: Output) -> ExitCode {
    let roll = plan.roll.as_ref().expect("called for a roll plan");
    let placement = ferry_preview::placement::Policy::of_plan(plan);
    let rolled = match plan_roll(roll, &plan.file, cluster, inventory, plan.limits.per_source, placement) {
        Ok(r) => r,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match output {
        Output::Json => out!("{}", serde_json::to_string_pretty(&rolled).expect("a roll plan serialises")),
        Output::Text => print_text(plan, &rolled),
    }
    if rolled.impossible.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn print_text(plan: &Plan, r: &RollPlan) {
    let name = &plan.name;
    for (i, wave) in r.waves.iter().enumerate() {
        let canary = if wave.canary { " (canary: confirmation asked after it)" } else { "" };
        let time = wave
            .estimated_s
            .map_or("time unknown (hook_sim_s sets the hook's)".into(), |s| format!("est. {}", seconds(s)));
        out!("wave {}: {}{canary}  {time}", i + 1, wave.hosts.join(", "));
        for step in &wave.vms {
            match &step.to {
                Some(to) => out!(
                    "  {} {} -> {to} ({}{})",
                    step.vm,
                    step.host,
                    step.behaviour.name(),
                    if step.returns { ", comes back" } else { ", stays there" }
                ),
                None => out!("  {} stays on {} ({})", step.vm, step.host, step.behaviour.name()),
            }
        }
        for (host, why) in &wave.waiting {
            out!("  {host} waits: {why}");
        }
        out!("  free outside maintenance: {:.0} MiB, {:.0} vCPUs", wave.free.memory_mib, wave.free.vcpus);
    }
    if plan.roll.as_ref().is_some_and(|roll| !roll.return_vms) {
        out!(
            "then a rebalance by placement {} of the roll's hosts: {} moves as planned now (planned again on the layout the waves leave)",
            plan.policy.placement,
            r.rebalance.len()
        );
        for m in &r.rebalance {
            out!("  {} {} -> {}", m.vm, m.from, m.to);
        }
    }
    for (host, why) in &r.skipped {
        out!("skipped {host}: {why}");
    }
    for (host, why) in &r.impossible {
        out!("CANNOT  {host}: {why}");
    }
    let lowest = r.lowest_free.map_or("-".into(), |c| format!("{:.0} MiB, {:.0} vCPUs", c.memory_mib, c.vcpus));
    let total = r.estimated_s.map_or("unknown".into(), seconds);
    out!(
        "{name}: {} hosts in {} waves, {} moves, {} skipped, {} impossible; lowest free {lowest} (reserve {:.0} MiB, {:.0} vCPUs); est. {total}",
        r.hosts.len(),
        r.waves.len(),
        r.moves,
        r.skipped.len(),
        r.impossible.len(),
        r.reserve.memory_mib,
        r.reserve.vcpus
    );
}
