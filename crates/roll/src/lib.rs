//! Rolling maintenance, planned before anything starts: the hosts a roll goes through, the
//! waves they go in (which hosts are in maintenance together, and why the others wait),
//! where each VM goes and whether it comes back, the free capacity left at the tightest
//! moment, and how long it takes. Pure: the cluster file, the inventory and the plan in; the
//! plan of the roll, or the input errors that make it meaningless, out.
//!
//! A wave is built greedily in the roll's host order: a host joins while the wave has fewer
//! than `max_unavailable` hosts, shares no redundancy group with one already in it, and the
//! hosts outside the wave can take every VM that leaves it (each on one host, by memory and
//! vCPUs within their overcommit, never beside another member of its anti-affinity group)
//! and still keep the reserve free. Canary hosts go first,
//! each wave of them before any other host.

use std::collections::{BTreeMap, BTreeSet};

use ferry_model::{ClusterSpec, Inventory, VmState};
use ferry_plan::{HostSelector, InputError, Maintenance, Reserve, Roll};
use ferry_preview::estimate::PER_MIGRATION_OVERHEAD_S;
use ferry_preview::placement::Policy;
use ferry_preview::ASSUMED_LINK_MIB_S;
use serde::Serialize;

mod rebalance;
pub use rebalance::{plan_rebalance, Rebalance};

/// Memory and vCPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Capacity {
    /// MiB.
    pub memory_mib: f64,
    /// vCPUs.
    pub vcpus: f64,
}

impl Capacity {
    fn fits(&self, need: Capacity) -> bool {
        need.memory_mib <= self.memory_mib && need.vcpus <= self.vcpus
    }

    fn minus(self, other: Capacity) -> Capacity {
        Capacity { memory_mib: self.memory_mib - other.memory_mib, vcpus: self.vcpus - other.vcpus }
    }

    fn plus(self, other: Capacity) -> Capacity {
        Capacity { memory_mib: self.memory_mib + other.memory_mib, vcpus: self.vcpus + other.vcpus }
    }
}

/// One VM's part in a wave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmStep {
    /// VM name.
    pub vm: String,
    /// Its host, in maintenance in this wave.
    pub host: String,
    /// What it does meanwhile.
    pub behaviour: Maintenance,
    /// Where it goes (live and cold moves); `None` when it stays (shut down).
    pub to: Option<String>,
    /// Whether it comes back after the maintenance.
    pub returns: bool,
}

/// Hosts in maintenance together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wave {
    /// The hosts.
    pub hosts: Vec<String>,
    /// Whether these are canary hosts (confirmation asked after them).
    pub canary: bool,
    /// What each VM of these hosts does.
    pub vms: Vec<VmStep>,
    /// Why no other host joined: each waiting host with its reason.
    pub waiting: Vec<(String, String)>,
    /// Free capacity outside the wave once its VMs left.
    pub free: Capacity,
    /// Estimated duration: drain, hook and return of its slowest host, s; `None` when a
    /// hook's time is not known.
    pub estimated_s: Option<f64>,
}

/// The whole roll, planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollPlan {
    /// The hosts the roll goes through, in order.
    pub hosts: Vec<String>,
    /// Hosts left out, each with its reason (a VM that stays).
    pub skipped: Vec<(String, String)>,
    /// Hosts that cannot go into maintenance as planned, each with its reason.
    pub impossible: Vec<(String, String)>,
    /// The waves, in order.
    pub waves: Vec<Wave>,
    /// The reserve kept.
    pub reserve: Capacity,
    /// The least free capacity outside maintenance at any wave.
    pub lowest_free: Option<Capacity>,
    /// Without return: the rebalance that ends the roll, as planned on the layout the waves
    /// leave (the run plans it again on the layout it finds).
    pub rebalance: Vec<Rebalance>,
    /// Moves made (out and back, and the rebalance's).
    pub moves: usize,
    /// Estimated duration of the whole roll, s; `None` when a hook's time is not known.
    pub estimated_s: Option<f64>,
}

/// One VM as the planner sees it.
#[derive(Debug, Clone)]
struct Guest {
    name: String,
    host: String,
    need: Capacity,
    running: bool,
    behaviour: Maintenance,
    /// Its anti-affinity group (the `anti_affinity` tag).
    anti_affinity: Option<String>,
}

/// Plans `roll` (of plan file `file`) on `cluster` as `inventory` shows it now, `per_source`
/// migrations at once leaving a host; without return, the roll ends with a rebalance by
/// `placement`. Input errors (a host, group or tag that does not exist, a reserve no
/// cluster of this size can keep, a VM named that does not exist) come back all at once.
pub fn plan_roll(
    roll: &Roll,
    file: &str,
    cluster: &ClusterSpec,
    inventory: &Inventory,
    per_source: usize,
    placement: Policy,
) -> Result<RollPlan, Vec<InputError>> {
    let error = |line: Option<usize>, field: &str, message: String| InputError {
        file: file.to_string(),
        line,
        field: Some(format!("roll.{field}")),
        message,
    };
    let mut errors = Vec::new();
    let known: BTreeSet<&str> = cluster.hosts.iter().map(|h| h.name.as_str()).collect();
    let hosts: Vec<String> = match &roll.hosts {
        HostSelector::All => cluster.hosts.iter().map(|h| h.name.clone()).collect(),
        HostSelector::Hosts(names) => {
            for name in names.iter().filter(|n| !known.contains(n.as_str())) {
                errors.push(error(roll.hosts_line, "hosts", format!("no host {name} in the cluster file")));
            }
            names.clone()
        }
        HostSelector::Group(group) => {
            let in_group: Vec<String> =
                cluster.hosts.iter().filter(|h| &h.group == group).map(|h| h.name.clone()).collect();
            if in_group.is_empty() {
                errors.push(error(roll.hosts_line, "hosts", format!("no host is in group {group}")));
            }
            in_group
        }
        HostSelector::Tag(tag) => {
            let tagged: Vec<String> =
                cluster.hosts.iter().filter(|h| h.tags.contains(tag)).map(|h| h.name.clone()).collect();
            if tagged.is_empty() {
                errors.push(error(roll.hosts_line, "hosts", format!("no host has tag {tag}")));
            }
            tagged
        }
    };
    for group in &roll.redundancy_groups {
        for name in group.iter().filter(|n| !known.contains(n.as_str())) {
            errors.push(error(
                roll.redundancy_line,
                "redundancy_groups",
                format!("no host {name} in the cluster file"),
            ));
        }
        let distinct: BTreeSet<&String> = group.iter().collect();
        if distinct.len() != group.len() {
            errors.push(error(roll.redundancy_line, "redundancy_groups", format!("{group:?} names a host twice")));
        }
    }
    for (vm, (_, line)) in &roll.maintenance {
        if !inventory.vms.iter().any(|v| &v.name == vm) {
            errors.push(error(*line, &format!("maintenance.{vm}"), format!("no VM {vm} on any host")));
        }
    }
    let capacity = |name: &str| -> Capacity {
        let spec = cluster.host(name);
        let host = inventory.hosts.iter().find(|h| h.name == name);
        match (spec, host) {
            (Some(spec), Some(host)) => {
                let (vcpus, memory_mib) = ferry_preview::placement::capacity(spec, host);
                Capacity { memory_mib: memory_mib as f64, vcpus: vcpus as f64 }
            }
            _ => Capacity::default(),
        }
    };
    let total = cluster.hosts.iter().fold(Capacity::default(), |sum, h| sum.plus(capacity(&h.name)));
    let reserve = match roll.reserve {
        Reserve::None => Capacity::default(),
        Reserve::LargestHost => cluster.hosts.iter().map(|h| capacity(&h.name)).fold(Capacity::default(), |a, b| {
            Capacity { memory_mib: a.memory_mib.max(b.memory_mib), vcpus: a.vcpus.max(b.vcpus) }
        }),
        Reserve::Capacity { memory_mib, vcpus } => Capacity { memory_mib: memory_mib as f64, vcpus: f64::from(vcpus) },
    };
    if !total.fits(reserve) {
        errors.push(error(
            roll.reserve_line,
            "reserve",
            format!(
                "{:.0} MiB and {:.0} vCPUs kept free is more than the whole cluster holds ({:.0} MiB, {:.0} vCPUs)",
                reserve.memory_mib, reserve.vcpus, total.memory_mib, total.vcpus
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut guests: Vec<Guest> = inventory
        .vms
        .iter()
        .map(|v| Guest {
            name: v.name.clone(),
            host: v.host.clone(),
            need: Capacity { memory_mib: v.memory_mib as f64, vcpus: f64::from(v.vcpus) },
            running: v.state == VmState::Running,
            behaviour: roll.behaviour_for(v),
            anti_affinity: v.anti_affinity().map(str::to_string),
        })
        .collect();
    let mut skipped = Vec::new();
    let mut order = Vec::new();
    for host in &hosts {
        let staying: Vec<&str> = guests
            .iter()
            .filter(|g| &g.host == host && g.running && g.behaviour == Maintenance::Stay)
            .map(|g| g.name.as_str())
            .collect();
        if staying.is_empty() {
            order.push(host.clone());
        } else {
            skipped.push((host.clone(), format!("{} stays (maintenance = \"stay\")", staying.join(", "))));
        }
    }
    let up: Vec<String> = cluster.hosts.iter().filter(|h| !h.maintenance).map(|h| h.name.clone()).collect();
    let link = |name: &str| cluster.host(name).and_then(|h| h.link_mib_s).map_or(ASSUMED_LINK_MIB_S, |l| l as f64);

    let groups = Groups::new(&guests, cluster);
    let mut waves: Vec<Wave> = Vec::new();
    let mut impossible = Vec::new();
    let mut remaining: Vec<String> = order.clone();
    let mut canaries = roll.canary.min(remaining.len());
    while !remaining.is_empty() {
        let canary = canaries > 0;
        let limit = if canary { roll.max_unavailable.min(canaries) } else { roll.max_unavailable };
        let on_host = guests_by_host(&guests);
        let mut trial = Trial::new(&up, &on_host, &capacity, &guests);
        let mut wave: Vec<String> = Vec::new();
        let mut waiting = Vec::new();
        let candidates: Vec<String> = if canary { remaining[..canaries].to_vec() } else { remaining.clone() };
        for host in &candidates {
            if wave.len() >= limit {
                break;
            }
            if let Some(group) =
                roll.redundancy_groups.iter().find(|g| g.contains(host) && wave.iter().any(|w| g.contains(w)))
            {
                let partner = wave.iter().find(|w| group.contains(w)).expect("found just above");
                waiting.push((host.clone(), format!("in a redundancy group with {partner}, in this wave")));
                continue;
            }
            let leaving = on_host.get(host.as_str()).map_or(&[][..], Vec::as_slice);
            match trial.with(&groups, host, leaving, reserve, roll.return_vms) {
                Ok(bigger) => {
                    trial = bigger;
                    wave.push(host.clone());
                }
                Err(why) if wave.is_empty() => impossible.push((host.clone(), why)),
                Err(why) => waiting.push((host.clone(), why)),
            }
        }
        remaining.retain(|h| !wave.contains(h) && !impossible.iter().any(|(i, _)| i == h));
        if canary {
            canaries =
                canaries.saturating_sub(wave.len() + impossible.iter().filter(|(h, _)| candidates.contains(h)).count());
        }
        if wave.is_empty() {
            continue;
        }
        let free = trial.free_total();
        let mut placed = trial.steps;
        placed.sort_by(|a, b| (&a.host, &a.vm).cmp(&(&b.host, &b.vm)));
        let estimated_s = wave
            .iter()
            .map(|host| {
                let leaving = on_host.get(host.as_str()).map_or(&[][..], Vec::as_slice);
                let moving: Vec<&&Guest> = leaving.iter().filter(|g| g.moves()).collect();
                let memory: f64 = moving.iter().map(|g| g.need.memory_mib).sum();
                let batches = moving.len().div_ceil(per_source.max(1)) as f64;
                let drain_s = memory / link(host) + batches * PER_MIGRATION_OVERHEAD_S;
                let back_s = if roll.return_vms { drain_s } else { 0.0 };
                roll.hook_sim_s.map(|hook| drain_s + hook + back_s)
            })
            .try_fold(0.0_f64, |longest, s| s.map(|s| longest.max(s)));
        if !roll.return_vms {
            let moved: BTreeMap<&str, &str> =
                placed.iter().filter_map(|s| s.to.as_deref().map(|to| (s.vm.as_str(), to))).collect();
            for g in &mut guests {
                if let Some(to) = moved.get(g.name.as_str()) {
                    g.host = (*to).to_string();
                }
            }
        }
        let later = remaining.len().saturating_sub(waiting.len());
        if later > 0 {
            waiting.push((format!("{later} more"), "wait for later waves".to_string()));
        }
        waves.push(Wave { hosts: wave, canary, vms: placed, waiting, free, estimated_s });
    }
    let rebalance = if roll.return_vms {
        Vec::new()
    } else {
        let mut after = inventory.clone();
        let at: BTreeMap<&str, &str> = guests.iter().map(|g| (g.name.as_str(), g.host.as_str())).collect();
        for vm in &mut after.vms {
            vm.host = at[vm.name.as_str()].to_string();
        }
        plan_rebalance(cluster, &after, &order, placement)
    };
    let moves = rebalance.len()
        + waves
            .iter()
            .flat_map(|w| &w.vms)
            .filter(|s| s.to.is_some())
            .map(|s| if s.returns { 2 } else { 1 })
            .sum::<usize>();
    let lowest_free = waves
        .iter()
        .map(|w| w.free)
        .reduce(|a, b| Capacity { memory_mib: a.memory_mib.min(b.memory_mib), vcpus: a.vcpus.min(b.vcpus) });
    // The rebalance's moves one after another: it runs under the plan's limits, which may
    // overlap them.
    let rebalance_s: f64 = rebalance
        .iter()
        .map(|m| {
            let memory = inventory.vms.iter().find(|v| v.name == m.vm).map_or(0.0, |v| v.memory_mib as f64);
            memory / link(&m.from) + PER_MIGRATION_OVERHEAD_S
        })
        .sum();
    let estimated_s = waves.iter().map(|w| w.estimated_s).sum::<Option<f64>>().map(|s| s + rebalance_s);
    Ok(RollPlan { hosts: order, skipped, impossible, waves, reserve, lowest_free, rebalance, moves, estimated_s })
}

fn guests_by_host(guests: &[Guest]) -> BTreeMap<&str, Vec<&Guest>> {
    let mut on_host: BTreeMap<&str, Vec<&Guest>> = BTreeMap::new();
    for g in guests {
        on_host.entry(g.host.as_str()).or_default().push(g);
    }
    on_host
}

impl Guest {
    /// Whether it leaves its host for the maintenance (running, moved live or cold).
    fn moves(&self) -> bool {
        self.running && matches!(self.behaviour, Maintenance::Live | Maintenance::Cold)
    }
}

/// A wave being built: the free capacity of every host outside it, where the VMs of the
/// hosts in it go, and where the members of each anti-affinity group are. Grown one host at
/// a time ([`Trial::with`]), so that a large cluster is planned in time proportional to its
/// hosts and VMs, not their product per host tried.
#[derive(Clone)]
struct Trial {
    free: BTreeMap<String, Capacity>,
    steps: Vec<VmStep>,
    needs: BTreeMap<String, Capacity>,
    /// Per anti-affinity group, its members (VM name → host), where this wave puts them.
    members: BTreeMap<String, BTreeMap<String, String>>,
}

/// What every trial of a roll asks and none changes: each VM's anti-affinity group and each
/// host's host group (kept out of [`Trial`], which is copied for every host tried).
struct Groups {
    /// Each tagged VM's anti-affinity group.
    group_of: BTreeMap<String, String>,
    /// Each host's host group: a VM moves within its own.
    host_group: BTreeMap<String, String>,
}

impl Groups {
    fn new(guests: &[Guest], cluster: &ClusterSpec) -> Groups {
        Groups {
            group_of: guests.iter().filter_map(|g| Some((g.name.clone(), g.anti_affinity.clone()?))).collect(),
            host_group: cluster.hosts.iter().map(|h| (h.name.clone(), h.group.clone())).collect(),
        }
    }
}

impl Trial {
    fn new(
        up: &[String],
        on_host: &BTreeMap<&str, Vec<&Guest>>,
        capacity: &dyn Fn(&str) -> Capacity,
        guests: &[Guest],
    ) -> Trial {
        let mut members: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for g in guests {
            if let Some(group) = &g.anti_affinity {
                members.entry(group.clone()).or_default().insert(g.name.clone(), g.host.clone());
            }
        }
        let free = up
            .iter()
            .map(|h| {
                let used =
                    on_host.get(h.as_str()).into_iter().flatten().fold(Capacity::default(), |u, g| u.plus(g.need));
                (h.clone(), capacity(h).minus(used))
            })
            .collect();
        Trial { free, steps: Vec::new(), needs: BTreeMap::new(), members }
    }

    /// The other member of `vm`'s anti-affinity group on `host`, if any.
    fn member_on(&self, groups: &Groups, vm: &str, host: &str) -> Option<&str> {
        let group = groups.group_of.get(vm)?;
        self.members[group]
            .iter()
            .find(|(name, at)| name.as_str() != vm && at.as_str() == host)
            .map(|(n, _)| n.as_str())
    }

    /// This wave with `host` in it too: its VMs placed (largest first, each on the host of
    /// its host group outside the wave with the most free memory that holds it and no other
    /// member of its anti-affinity group, those that were placed on `host` placed again), and the free
    /// capacity outside the wave still covering `reserve`. Shut-off VMs and those shut down
    /// for the maintenance stay.
    fn with(
        &self,
        groups: &Groups,
        host: &str,
        leaving: &[&Guest],
        reserve: Capacity,
        returns: bool,
    ) -> Result<Trial, String> {
        let mut next = self.clone();
        next.free.remove(host);
        let mut to_place: Vec<(String, String, Maintenance, Capacity)> = Vec::new();
        next.steps.retain(|s| {
            if s.to.as_deref() == Some(host) {
                to_place.push((s.vm.clone(), s.host.clone(), s.behaviour, self.needs[&s.vm]));
                false
            } else {
                true
            }
        });
        for g in leaving {
            if g.moves() {
                to_place.push((g.name.clone(), g.host.clone(), g.behaviour, g.need));
            } else {
                next.steps.push(VmStep {
                    vm: g.name.clone(),
                    host: g.host.clone(),
                    behaviour: g.behaviour,
                    to: None,
                    returns: false,
                });
            }
        }
        to_place.sort_by(|a, b| b.3.memory_mib.total_cmp(&a.3.memory_mib).then(a.0.cmp(&b.0)));
        for (vm, from, behaviour, need) in to_place {
            let group = groups.host_group.get(&from);
            let roomy: Vec<(&String, &Capacity)> =
                next.free.iter().filter(|(h, f)| f.fits(need) && groups.host_group.get(*h) == group).collect();
            let target = roomy
                .iter()
                .filter(|(h, _)| next.member_on(groups, &vm, h).is_none())
                .max_by(|a, b| a.1.memory_mib.total_cmp(&b.1.memory_mib).then(b.0.cmp(a.0)))
                .map(|(h, _)| (*h).clone());
            let Some(target) = target else {
                if roomy.is_empty() {
                    return Err(format!(
                        "no host outside the wave has room for {vm} ({:.0} MiB, {:.0} vCPUs) in its host group {}",
                        need.memory_mib,
                        need.vcpus,
                        group.map_or("?", String::as_str)
                    ));
                }
                let blockers: Vec<String> = roomy
                    .iter()
                    .filter_map(|(h, _)| next.member_on(groups, &vm, h).map(|other| format!("{other} on {h}")))
                    .collect();
                return Err(format!(
                    "anti-affinity group {}: every host outside the wave with room for {vm} holds a member ({})",
                    groups.group_of[&vm],
                    blockers.join(", ")
                ));
            };
            let left = next.free.get_mut(&target).expect("chosen from it");
            *left = left.minus(need);
            if let Some(group) = groups.group_of.get(&vm) {
                next.members.get_mut(group).expect("every member's group").insert(vm.clone(), target.clone());
            }
            next.needs.insert(vm.clone(), need);
            next.steps.push(VmStep { vm, host: from, behaviour, to: Some(target), returns });
        }
        let outside = next.free_total();
        if !outside.fits(reserve) {
            return Err(format!(
                "with it in maintenance {:.0} MiB and {:.0} vCPUs would stay free, below the reserve of {:.0} MiB and {:.0} vCPUs",
                outside.memory_mib, outside.vcpus, reserve.memory_mib, reserve.vcpus
            ));
        }
        Ok(next)
    }

    /// Free capacity outside the wave (a host over its capacity counts as none free).
    fn free_total(&self) -> Capacity {
        self.free.values().fold(Capacity::default(), |sum, f| {
            sum.plus(Capacity { memory_mib: f.memory_mib.max(0.0), vcpus: f.vcpus.max(0.0) })
        })
    }
}

#[cfg(test)]
mod tests;
