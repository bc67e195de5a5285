//! Placement invariants over random small fleets: whatever the fleet, placement never
//! overfills a host, never breaks anti-affinity or a hard constraint, answers every request,
//! and gives the same answer for the same question.
//!
//! Every check recomputes what it needs from the fleet itself, independently of the module.

use std::collections::{HashMap, HashSet};

use ferry_model::{ClusterSpec, Host, HostSpec, Inventory, Version, Vm, VmState};
use ferry_preview::placement::{place, Constraints, Decision, Fixed, Policy, Request};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
struct Fleet {
    cluster: ClusterSpec,
    inventory: Inventory,
    fixed: Vec<Fixed>,
    requests: Vec<Request>,
    constraints: Constraints,
    policy: Policy,
}

impl Fleet {
    fn place(&self) -> Vec<Decision> {
        place(&self.cluster, &self.inventory, &self.fixed, &self.requests, &self.constraints, self.policy)
    }
}

/// group, cpus, memory GiB, cpu and memory overcommit, maintenance, tags, QEMU minor, answers
type HostSeed = (usize, u32, u64, f64, f64, bool, usize, u32, bool);
/// host, vcpus, memory (× 256 MiB), state, role (0 stays, 1 request, 2 fixed), anti-affinity
/// group (0: none), candidates, fixed target
type VmSeed = (usize, u32, u64, usize, usize, usize, Option<Vec<usize>>, usize);

const TAGS: [&[&str]; 5] = [&[], &["old"], &["new"], &["allow-from:old"], &["new", "allow-from:new"]];

fn host_seed() -> impl Strategy<Value = HostSeed> {
    (
        0..2usize,
        1..16u32,
        1..16u64,
        prop::sample::select(vec![1.0, 1.5, 2.0]),
        prop::sample::select(vec![1.0, 1.25, 1.5]),
        prop::bool::weighted(0.15),
        prop::sample::select(vec![0usize, 0, 0, 1, 2, 3, 4]),
        0..3u32,
        prop::bool::weighted(0.9),
    )
}

fn vm_seed() -> impl Strategy<Value = VmSeed> {
    (
        0..8usize,
        1..8u32,
        1..32u64,
        prop::sample::select(vec![0usize, 0, 0, 1, 2]),
        prop::sample::select(vec![0usize, 1, 1, 1, 2]),
        0..4usize,
        prop::option::weighted(0.2, prop::collection::vec(0..9usize, 0..4)),
        0..8usize,
    )
}

fn fleet() -> impl Strategy<Value = Fleet> {
    (
        prop::collection::vec(host_seed(), 2..=8),
        prop::collection::vec(vm_seed(), 0..=30),
        any::<bool>(),
        any::<u8>(),
        prop::bool::weighted(0.3),
        prop::sample::select(Policy::ALL.to_vec()),
    )
        .prop_map(|(hosts, vms, cross, unavailable, explain, policy)| {
            build(&hosts, &vms, cross, unavailable, explain, policy)
        })
}

fn build(hosts: &[HostSeed], vms: &[VmSeed], cross: bool, unavailable: u8, explain: bool, policy: Policy) -> Fleet {
    let name = |i: usize| {
        if i < hosts.len() {
            format!("h{i}")
        } else {
            "nowhere".to_string()
        }
    };
    let mut fleet = Fleet {
        cluster: ClusterSpec::default(),
        inventory: Inventory::default(),
        fixed: Vec::new(),
        requests: Vec::new(),
        constraints: Constraints {
            allow_cross_group: cross,
            unavailable: (0..hosts.len()).filter(|i| unavailable & (1 << i) != 0 && i % 3 == 0).map(name).collect(),
            explain,
        },
        policy,
    };
    for (i, &(group, cpus, gib, cpu_oc, mem_oc, maintenance, tags, minor, answers)) in hosts.iter().enumerate() {
        fleet.cluster.hosts.push(HostSpec {
            name: name(i),
            uri: format!("test:///h{i}"),
            migration_uri: None,
            group: format!("g{group}"),
            tags: TAGS[tags].iter().map(|t| t.to_string()).collect(),
            link_mib_s: None,
            cpu_overcommit: cpu_oc,
            memory_overcommit: mem_oc,
            maintenance,
            shared_pools: vec![],
            stream: Default::default(),
        });
        if answers {
            let version = Version { major: 9, minor, release: 0 };
            fleet.inventory.hosts.push(Host {
                name: name(i),
                uri: format!("test:///h{i}"),
                cpu_model: "qemu64".to_string(),
                cpu_models: Default::default(),
                cpus,
                memory_mib: gib * 1024,
                free_memory_mib: 0,
                hypervisor_version: version,
                libvirt_version: version,
                pools: vec![],
                networks: vec![],
            });
        } else {
            fleet.inventory.unreachable.push((name(i), "connection refused".to_string()));
        }
    }
    for (i, (host, vcpus, quarters, state, role, group, candidates, to)) in vms.iter().cloned().enumerate() {
        let vm = format!("vm{i}");
        fleet.inventory.vms.push(Vm {
            uuid: format!("uuid-{i}"),
            name: vm.clone(),
            host: name(host % hosts.len()),
            vcpus,
            memory_mib: quarters * 256,
            cpu_model: None,
            virt_type: "kvm".to_string(),
            memory_locked: false,
            state: [VmState::Running, VmState::Paused, VmState::ShutOff][state],
            disks: vec![],
            nics: vec![],
            ferry: None,
            tags: Default::default(),
        });
        let anti_affinity = (group > 0).then(|| format!("aa{group}"));
        match role {
            1 => fleet.requests.push(Request {
                vm,
                anti_affinity,
                candidates: candidates.map(|list| list.into_iter().map(|h| name(h.min(hosts.len()))).collect()),
            }),
            2 => fleet.fixed.push(Fixed { vm, to: name(to % hosts.len()), anti_affinity }),
            _ => {}
        }
    }
    fleet
}

/// floor(amount × ratio), computed here rather than borrowed from the module.
fn capacity(amount: u64, ratio: f64) -> u64 {
    (amount as f64 * ratio).floor() as u64
}

fn placed<'a>(fleet: &'a Fleet, decisions: &'a [Decision]) -> impl Iterator<Item = (&'a Vm, &'a str)> + 'a {
    decisions.iter().filter_map(move |d| {
        let host = d.host.as_deref()?;
        Some((fleet.inventory.vm(&d.vm).expect("a placed VM is in the inventory"), host))
    })
}

fn never_overfilled(fleet: &Fleet, decisions: &[Decision]) -> Result<(), TestCaseError> {
    let mut load: HashMap<String, (u64, u64)> = HashMap::new();
    let mut add = |host: &str, vm: &Vm| {
        let entry = load.entry(host.to_string()).or_default();
        entry.0 += u64::from(vm.vcpus);
        entry.1 += vm.memory_mib;
    };
    for vm in &fleet.inventory.vms {
        if matches!(vm.state, VmState::Running | VmState::Paused) {
            add(&vm.host, vm);
        }
    }
    for f in &fleet.fixed {
        let vm = fleet.inventory.vm(&f.vm).expect("fixed VMs are in the inventory");
        if vm.host != f.to {
            add(&f.to, vm);
        }
    }
    let targets: HashSet<&str> = placed(fleet, decisions)
        .map(|(vm, host)| {
            add(host, vm);
            host
        })
        .collect();
    for host in targets {
        let spec = fleet.cluster.host(host).expect("a target is in the cluster file");
        let real = fleet.inventory.host(host).expect("a target is in the inventory");
        let (vcpus, memory) = load[host];
        prop_assert!(
            vcpus <= capacity(u64::from(real.cpus), spec.cpu_overcommit),
            "{host}: {vcpus} vCPUs on {} CPUs × {}",
            real.cpus,
            spec.cpu_overcommit
        );
        prop_assert!(
            memory <= capacity(real.memory_mib, spec.memory_overcommit),
            "{host}: {memory} MiB on {} MiB × {}",
            real.memory_mib,
            spec.memory_overcommit
        );
    }
    Ok(())
}

fn anti_affinity_kept(fleet: &Fleet, decisions: &[Decision]) -> Result<(), TestCaseError> {
    // Where every member ends: its placement, else its fixed target, else where it is now.
    let mut members: Vec<(&str, &str, &str)> = Vec::new(); // group, vm, final host
    for (request, decision) in fleet.requests.iter().zip(decisions) {
        if let Some(group) = &request.anti_affinity {
            let vm = fleet.inventory.vm(&request.vm).expect("requested VMs are in the inventory");
            members.push((group, &request.vm, decision.host.as_deref().unwrap_or(&vm.host)));
        }
    }
    for f in &fleet.fixed {
        if let Some(group) = &f.anti_affinity {
            members.push((group, &f.vm, &f.to));
        }
    }
    for (request, decision) in fleet.requests.iter().zip(decisions) {
        let (Some(group), Some(host)) = (&request.anti_affinity, &decision.host) else {
            continue;
        };
        for &(other_group, other, at) in &members {
            prop_assert!(
                !(other_group == group && other != request.vm && at == host),
                "{} placed on {host}, where {other} of group {group} ends",
                request.vm
            );
        }
    }
    Ok(())
}

fn hard_constraints_kept(fleet: &Fleet, decisions: &[Decision]) -> Result<(), TestCaseError> {
    for (request, decision) in fleet.requests.iter().zip(decisions) {
        let Some(host) = decision.host.as_deref() else {
            continue;
        };
        let vm = fleet.inventory.vm(&request.vm).expect("a placed VM is in the inventory");
        let target = fleet.cluster.host(host).expect("a target is in the cluster file");
        let source = fleet.cluster.host(&vm.host).expect("a source is in the cluster file");
        let target_version = fleet.inventory.host(host).expect("a target answered").hypervisor_version;
        let source_version = fleet.inventory.host(&vm.host).expect("a source answered").hypervisor_version;
        prop_assert_ne!(host, vm.host.as_str(), "{} placed on its own host", vm.name);
        prop_assert!(!target.maintenance, "{} placed on {host}, in maintenance", vm.name);
        prop_assert!(!fleet.constraints.unavailable.iter().any(|u| u == host), "{host} is unavailable");
        prop_assert!(fleet.constraints.allow_cross_group || target.group == source.group, "group crossed");
        prop_assert!(target.accepts_from(source), "{host} does not accept from {}", source.name);
        prop_assert!(target_version >= source_version, "{host} runs an older hypervisor");
        if let Some(candidates) = &request.candidates {
            prop_assert!(candidates.iter().any(|c| c == host), "{host} is not a candidate");
        }
    }
    Ok(())
}

fn every_request_answered(fleet: &Fleet, decisions: &[Decision]) -> Result<(), TestCaseError> {
    prop_assert_eq!(decisions.len(), fleet.requests.len());
    let hosts: HashSet<&str> = fleet
        .cluster
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .chain(fleet.inventory.hosts.iter().map(|h| h.name.as_str()))
        .collect();
    for (request, decision) in fleet.requests.iter().zip(decisions) {
        prop_assert_eq!(&decision.vm, &request.vm);
        prop_assert!(!decision.why.is_empty(), "{} has no reason", request.vm);
        if decision.host.is_none() {
            prop_assert!(decision.why.contains(&request.vm) || decision.why.starts_with("no host fits: "));
        }
        if fleet.constraints.explain {
            // Every other host is accounted for.
            let named: HashSet<&str> = decision.rejected.iter().map(|(h, _)| h.as_str()).collect();
            // Requests refused before any host was looked at (their source did not answer)
            // have nothing to explain.
            let looked = decision.host.is_some() || decision.why.starts_with("no host fits");
            for host in &hosts {
                if looked && Some(*host) != decision.host.as_deref() {
                    prop_assert!(named.contains(host), "{}: {host} missing from rejected", request.vm);
                }
            }
        } else {
            prop_assert!(decision.rejected.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn placement_keeps_every_invariant(fleet in fleet()) {
        let decisions = fleet.place();
        never_overfilled(&fleet, &decisions)?;
        anti_affinity_kept(&fleet, &decisions)?;
        hard_constraints_kept(&fleet, &decisions)?;
        every_request_answered(&fleet, &decisions)?;
    }

    #[test]
    fn same_question_same_answer(fleet in fleet()) {
        prop_assert_eq!(fleet.place(), fleet.place());
    }

    #[test]
    fn request_order_does_not_matter(fleet in fleet()) {
        let decisions = fleet.place();
        let mut reversed = fleet.clone();
        reversed.requests.reverse();
        let mut again = reversed.place();
        again.reverse();
        prop_assert_eq!(decisions, again);
    }

    #[test]
    fn explaining_changes_no_choice(fleet in fleet()) {
        let mut quiet = fleet.clone();
        quiet.constraints.explain = false;
        let mut loud = fleet;
        loud.constraints.explain = true;
        let choices = |decisions: Vec<Decision>| -> Vec<(Option<String>, String)> {
            decisions.into_iter().map(|d| (d.host, d.why)).collect()
        };
        prop_assert_eq!(choices(quiet.place()), choices(loud.place()));
    }
}
