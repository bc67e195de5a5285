//! The simulated fleet and drain plan several benches run: `ferry sim gen --hosts H --vms
//! 10×H --seed 7`, every VM of its first `drained` hosts to `ANY`; and how they call ferry.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_sim::Fleet;

/// A fleet file and its drain plan, written in `dir`.
pub(crate) struct FleetDrain {
    /// The fleet file.
    pub fleet: PathBuf,
    /// The plan.
    pub plan: PathBuf,
    /// VMs in the fleet.
    pub vms: usize,
    /// Moves in the plan.
    pub moves: usize,
}

/// Generates a `hosts`-host fleet in `dir` (with `ferry`, the binary under bench) and a
/// plan draining its first `drained` hosts.
pub(crate) fn fleet_drain(ferry: &Path, dir: &Path, hosts: usize, drained: usize) -> FleetDrain {
    let fleet_path = dir.join("fleet.toml");
    let generated = Command::new(ferry)
        .args(["sim", "gen", "--hosts", &hosts.to_string(), "--vms", &(hosts * 10).to_string(), "--seed", "7"])
        .arg("-o")
        .arg(&fleet_path)
        .status()
        .expect("ferry sim gen");
    assert!(generated.success(), "ferry sim gen failed");
    let text = std::fs::read_to_string(&fleet_path).expect("the fleet file");
    let name = fleet_path.to_str().expect("a UTF-8 path");
    let fleet = Fleet::parse(name, &text).expect("a valid fleet");
    let drained: Vec<&str> = fleet.hosts.iter().take(drained).map(|h| h.name.as_str()).collect();
    let moves: Vec<String> = fleet
        .vms
        .iter()
        .filter(|vm| drained.contains(&vm.host.as_str()))
        .map(|vm| format!("[[move]]\nvm = \"{}\"\nto = \"ANY\"\n", vm.name))
        .collect();
    let plan = dir.join("drain.toml");
    let text = format!("[plan]\nname = \"drain {} hosts\"\n{}", drained.len(), moves.concat());
    std::fs::write(&plan, text).expect("the plan");
    FleetDrain { fleet: fleet_path, plan, vms: fleet.vms.len(), moves: moves.len() }
}

/// `ferry ARGS`, the binary under bench.
pub(crate) fn ferry(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command.args(args);
    command
}

/// A path as an argument.
pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
