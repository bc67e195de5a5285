//! `ferry inventory`.

use std::process::ExitCode;

use ferry_driver::Driver;
use ferry_model::{Inventory, Locality};

use ferry_runs::drivers::AnyDriver;

use crate::cluster::ClusterArg;
use crate::show::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// Prints hosts and their VMs as libvirt reports them.
pub async fn run(cluster: &ClusterArg, output: Output) -> ExitCode {
    let cluster = match ferry_runs::cluster::read(cluster.location()) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("ferry inventory: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let driver = AnyDriver::new(&cluster);
    let inventory = driver.inventory().await;
    let text = match output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&inventory).expect("inventory serialises")),
        Output::Text => text(&inventory),
    };
    if let Err(e) = crate::show::write_stdout(text.as_bytes()) {
        eprintln!("ferry inventory: cannot print: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    if inventory.unreachable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// The inventory in lines: each host, its pools and networks, its VMs.
fn text(inventory: &Inventory) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for host in &inventory.hosts {
        let used_mib: u64 = inventory
            .vms_on(&host.name)
            .filter(|v| v.state == ferry_model::VmState::Running)
            .map(|v| v.memory_mib)
            .sum();
        let used_vcpus: u32 =
            inventory.vms_on(&host.name).filter(|v| v.state == ferry_model::VmState::Running).map(|v| v.vcpus).sum();
        let _ = writeln!(
            out,
            "{}  {}  cpu {} ({} CPUs, {} vCPUs in use)  memory {} MiB ({} MiB free, {} MiB to guests)  QEMU {}  libvirt {}",
            host.name, host.uri, host.cpu_model, host.cpus, used_vcpus, host.memory_mib, host.free_memory_mib, used_mib,
            host.hypervisor_version, host.libvirt_version
        );
        for pool in &host.pools {
            let _ = writeln!(
                out,
                "  pool {:<10} {:<50} {} MiB free of {}{}",
                pool.name,
                pool.path.as_deref().unwrap_or("-"),
                pool.available >> 20,
                pool.capacity >> 20,
                if pool.shared { "  (shared)" } else { "" }
            );
        }
        if !host.networks.is_empty() {
            let _ = writeln!(out, "  networks {}", host.networks.join(", "));
        }
        for vm in inventory.vms_on(&host.name) {
            let disks: Vec<String> = vm
                .disks
                .iter()
                .map(|d| {
                    let kind = if d.locality == Locality::Shared { "shared" } else { "local" };
                    format!("{}={} ({kind})", d.target, d.source)
                })
                .collect();
            let tags: String = vm.tags.iter().map(|(k, v)| format!("  {k}={v}")).collect();
            let _ = writeln!(
                out,
                "  vm {:<10} {}  {:<8} {} vCPU {} MiB  {}{tags}",
                vm.name,
                vm.uuid,
                vm.state,
                vm.vcpus,
                vm.memory_mib,
                disks.join(" ")
            );
        }
    }
    for (host, why) in &inventory.unreachable {
        let _ = writeln!(out, "{host}  UNREACHABLE: {why}");
    }
    out
}
