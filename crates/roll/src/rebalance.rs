//! The rebalance that ends a roll whose VMs do not come back (`return = false`): the last
//! hosts to go are left empty and the first ones full. It evens out the hosts the roll went
//! through by the plan's placement policy: `spread` their VM counts, `least-loaded` the
//! share of their memory in use. `best-fit` packs VMs so that whole hosts stay free, which
//! is what the roll left: it moves nothing.
//!
//! Greedy and bounded: while the most loaded host holds more than the least loaded one by
//! more than a VM, one of its running VMs moves there — the smallest under `spread` (the
//! cheapest move), the largest that does not overshoot under `least-loaded` — if placement
//! allows it (capacity, group, direction, hypervisor version, anti-affinity). A VM moves
//! once at most, and the loop stops at the first pair no VM can even.

use ferry_model::{ClusterSpec, Inventory, Vm, VmState};
use ferry_preview::placement::{capacity, Constraints, Fixed, Placer, Policy, Request};
use serde::Serialize;

/// One move of the rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rebalance {
    /// VM name.
    pub vm: String,
    /// Where it runs.
    pub from: String,
    /// Where it goes.
    pub to: String,
}

/// One host's load, in the policy's unit.
struct Load<'a> {
    name: &'a str,
    /// Its VMs that may move (running), smallest first.
    vms: Vec<&'a Vm>,
    /// VMs on it (running or paused).
    count: f64,
    /// Memory in use, MiB.
    used_mib: f64,
    /// Memory capacity with overcommit, MiB.
    capacity_mib: f64,
}

impl Load<'_> {
    /// The load the policy evens out, after `change` (a VM of `mib` in, +1, or out, -1).
    fn after(&self, policy: Policy, change: f64, mib: f64) -> f64 {
        match policy {
            Policy::Spread => self.count + change,
            _ => (self.used_mib + change * mib) / self.capacity_mib.max(1.0),
        }
    }
}

/// The moves that even out `hosts` (those in the cluster file, answering and not in
/// maintenance) under `policy`, on the layout `inventory` shows.
pub fn plan_rebalance(
    cluster: &ClusterSpec,
    inventory: &Inventory,
    hosts: &[String],
    policy: Policy,
) -> Vec<Rebalance> {
    if policy == Policy::BestFit {
        return Vec::new();
    }
    let mut loads: Vec<Load> = hosts
        .iter()
        .filter_map(|name| {
            let spec = cluster.host(name).filter(|s| !s.maintenance)?;
            let host = inventory.host(name)?;
            let on: Vec<&Vm> = inventory.vms_on(name).filter(|v| v.state != VmState::ShutOff).collect();
            let mut vms: Vec<&Vm> = on.iter().copied().filter(|v| v.state == VmState::Running).collect();
            vms.sort_by(|a, b| a.memory_mib.cmp(&b.memory_mib).then(a.name.cmp(&b.name)));
            Some(Load {
                name: name.as_str(),
                vms,
                count: on.len() as f64,
                used_mib: on.iter().map(|v| v.memory_mib as f64).sum(),
                capacity_mib: capacity(spec, host).1 as f64,
            })
        })
        .collect();
    let placer = Placer::new(cluster, inventory);
    let mut fixed: Vec<Fixed> = Vec::new();
    let mut moves = Vec::new();
    for _ in 0..inventory.vms.len() {
        let by = |l: &Load| l.after(policy, 0.0, 0.0);
        let most = (0..loads.len()).max_by(|&a, &b| by(&loads[a]).total_cmp(&by(&loads[b])).then(b.cmp(&a)));
        let least = (0..loads.len()).min_by(|&a, &b| by(&loads[a]).total_cmp(&by(&loads[b])).then(a.cmp(&b)));
        let (Some(most), Some(least)) = (most, least) else { break };
        // The VMs that leave the pair no further apart: the less loaded host stays at most
        // as loaded as the other after the move.
        let evens = |vm: &&Vm| {
            let mib = vm.memory_mib as f64;
            loads[least].after(policy, 1.0, mib) <= loads[most].after(policy, -1.0, mib)
        };
        let mut candidates: Vec<&Vm> = loads[most].vms.iter().copied().filter(evens).collect();
        if policy != Policy::Spread {
            candidates.reverse();
        }
        let to = loads[least].name;
        let chosen = candidates.into_iter().find(|vm| {
            let request = Request { vm: vm.name.clone(), anti_affinity: None, candidates: Some(vec![to.to_string()]) };
            let decision = placer.place(&fixed, &[request], &Constraints::default(), policy);
            decision[0].host.as_deref() == Some(to)
        });
        let Some(vm) = chosen else { break };
        // A VM moves once at most: it does not join the movable VMs of its new host.
        let mib = vm.memory_mib as f64;
        loads[most].vms.retain(|v| v.name != vm.name);
        loads[most].count -= 1.0;
        loads[most].used_mib -= mib;
        loads[least].count += 1.0;
        loads[least].used_mib += mib;
        fixed.push(Fixed { vm: vm.name.clone(), to: to.to_string(), anti_affinity: None });
        moves.push(Rebalance { vm: vm.name.clone(), from: vm.host.clone(), to: to.to_string() });
    }
    moves
}
