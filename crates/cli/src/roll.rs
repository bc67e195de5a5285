//! The preview of a roll plan: its waves, where each VM goes, and why.

use std::process::ExitCode;

use ferry_model::{ClusterSpec, Inventory};
use ferry_plan::Plan;
use ferry_roll::{plan_roll, RollPlan};

use crate::show::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// Prints the waves of `plan`'s roll; exit 1 when a host cannot go into maintenance as
/// planned, 2 for input errors.
pub fn preview(plan: &Plan, cluster: &ClusterSpec, inventory: &Inventory, output: Output) -> ExitCode {
    let roll = plan.roll.as_ref().expect("called for a roll plan");
    let rolled = match plan_roll(roll, &plan.file, cluster, inventory, plan.limits.per_source) {
        Ok(r) => r,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rolled).expect("a roll plan serialises")),
        Output::Text => print_text(&plan.name, &rolled),
    }
    if rolled.impossible.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn print_text(name: &str, r: &RollPlan) {
    for (i, wave) in r.waves.iter().enumerate() {
        let canary = if wave.canary { " (canary: confirmation asked after it)" } else { "" };
        let time =
            wave.estimated_s.map_or("time unknown (hook_sim_s sets the hook's)".into(), |s| format!("est. {s:.0} s"));
        println!("wave {}: {}{canary}  {time}", i + 1, wave.hosts.join(", "));
        for step in &wave.vms {
            match &step.to {
                Some(to) => println!(
                    "  {} {} -> {to} ({}{})",
                    step.vm,
                    step.host,
                    step.behaviour.name(),
                    if step.returns { ", comes back" } else { ", stays there" }
                ),
                None => println!("  {} stays on {} ({})", step.vm, step.host, step.behaviour.name()),
            }
        }
        for (host, why) in &wave.waiting {
            println!("  {host} waits: {why}");
        }
        println!("  free outside maintenance: {:.0} MiB, {:.0} vCPUs", wave.free.memory_mib, wave.free.vcpus);
    }
    for (host, why) in &r.skipped {
        println!("skipped {host}: {why}");
    }
    for (host, why) in &r.impossible {
        println!("CANNOT  {host}: {why}");
    }
    let lowest = r.lowest_free.map_or("-".into(), |c| format!("{:.0} MiB, {:.0} vCPUs", c.memory_mib, c.vcpus));
    let total = r.estimated_s.map_or("unknown".into(), |s| format!("{s:.0} s"));
    println!(
        "{name}: {} hosts in {} waves, {} moves, {} skipped, {} impossible; lowest free {lowest} (reserve {:.0} MiB, {:.0} vCPUs); est. {total}",
        r.hosts.len(),
        r.waves.len(),
        r.moves,
        r.skipped.len(),
        r.impossible.len(),
        r.reserve.memory_mib,
        r.reserve.vcpus
    );
    println!("(ferry roll, which runs a roll, is not built yet: this is its preview)");
}
