//! Placement at fleet scale: 1,000 hosts, 10,000 VMs, every policy.
//!
//! (a) a rebalance: every VM asks for a new host (anywhere in its rack but its current
//!     host), with anti-affinity groups of 2 and 3 VMs; goal < 1 s.
//! (b) a drain: the 100 VMs of 10 hosts onto the rest; goal < 10 ms.
//!
//! Both without explanations (what a run uses). Prints medians; asserts nothing about time.
//! Run: `cargo bench -p ferry-preview --bench placement`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferry_model::{ClusterSpec, Host, HostSpec, Inventory, Version, Vm, VmState};
use ferry_preview::placement::{place, Constraints, Decision, Fixed, Policy, Request};

const HOSTS: usize = 1_000;
const VMS_PER_HOST: usize = 10;
const RACKS: usize = 10;

fn host_name(h: usize) -> String {
    format!("h{h:04}")
}

fn fleet() -> (ClusterSpec, Inventory, Vec<Option<String>>) {
    let mut cluster = ClusterSpec::default();
    let mut inventory = Inventory::default();
    let mut groups = Vec::with_capacity(HOSTS * VMS_PER_HOST);
    for h in 0..HOSTS {
        // A few kinds of host, so that every filter has work: direction tags, a newer QEMU
        // on some, maintenance on a few.
        let mut tags = vec![format!("rack-{}", h % RACKS)];
        if h.is_multiple_of(10) {
            tags.push("gen2".to_string());
        }
        if h.is_multiple_of(50) {
            tags.push("allow-from:gen2".to_string());
        }
        cluster.hosts.push(HostSpec {
            name: host_name(h),
            uri: format!("qemu+tcp://{}/system", host_name(h)),
            migration_uri: None,
            group: format!("rack-{}", h % RACKS),
            tags,
            link_mib_s: Some(1_000),
            cpu_overcommit: 4.0,
            memory_overcommit: 1.0,
            maintenance: h % 97 == 96,
            shared_pools: vec![],
            stream: Default::default(),
        });
        let version = Version { major: 9, minor: if h.is_multiple_of(100) { 1 } else { 2 }, release: 0 };
        inventory.hosts.push(Host {
            name: host_name(h),
            uri: format!("qemu+tcp://{}/system", host_name(h)),
            cpu_model: "EPYC-Milan".to_string(),
            cpu_models: Default::default(),
            cpus: 64,
            memory_mib: 256 * 1024,
            free_memory_mib: 0,
            hypervisor_version: version,
            libvirt_version: version,
            pools: vec![],
            networks: vec![],
        });
        for s in 0..VMS_PER_HOST {
            let v = h * VMS_PER_HOST + s;
            inventory.vms.push(Vm {
                uuid: format!("00000000-0000-0000-0000-{v:012}"),
                name: format!("vm{v:05}"),
                host: host_name(h),
                vcpus: [1, 2, 2, 4, 4, 8, 16][v % 7],
                memory_mib: [1, 2, 4, 4, 8, 8, 16, 32][v % 8] * 1024,
                cpu_model: None,
                virt_type: "kvm".to_string(),
                memory_locked: false,
                state: if v.is_multiple_of(23) { VmState::ShutOff } else { VmState::Running },
                disks: vec![],
                nics: vec![],
                ferry: None,
                tags: Default::default(),
            });
            // Slot s of neighbouring hosts of one rack form a group: triples for even
            // slots, pairs for odd ones, none for the last four slots.
            let rack_index = h / RACKS;
            groups.push(match s {
                0..=5 if s.is_multiple_of(2) => Some(format!("aa-{}-{s}-{}", h % RACKS, rack_index / 3)),
                0..=5 => Some(format!("aa-{}-{s}-{}", h % RACKS, rack_index / 2)),
                _ => None,
            });
        }
    }
    (cluster, inventory, groups)
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

fn measure(reps: usize, mut run: impl FnMut() -> Vec<Decision>) -> (f64, Vec<Decision>) {
    let mut samples = Vec::with_capacity(reps);
    let mut last = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        last = black_box(run());
        samples.push(start.elapsed());
    }
    (median(samples), last)
}

fn main() {
    let (cluster, inventory, groups) = fleet();
    let quiet = Constraints::default();
    let fixed: Vec<Fixed> = Vec::new();

    let rebalance: Vec<Request> = inventory
        .vms
        .iter()
        .zip(&groups)
        .map(|(vm, group)| Request { vm: vm.name.clone(), anti_affinity: group.clone(), candidates: None })
        .collect();

    let drained: Vec<String> = (0..10).map(|h| host_name(h * 7 + 3)).collect();
    let drain: Vec<Request> = inventory
        .vms
        .iter()
        .zip(&groups)
        .filter(|(vm, _)| drained.contains(&vm.host))
        .map(|(vm, group)| Request { vm: vm.name.clone(), anti_affinity: group.clone(), candidates: None })
        .collect();
    let draining = Constraints { unavailable: drained.clone(), ..Constraints::default() };
    let explaining = Constraints { explain: true, ..draining.clone() };

    println!(
        "placement: {} hosts, {} VMs ({} in anti-affinity groups), {} racks",
        cluster.hosts.len(),
        inventory.vms.len(),
        groups.iter().filter(|g| g.is_some()).count(),
        RACKS
    );
    let placed = |d: &[Decision]| d.iter().filter(|d| d.host.is_some()).count();
    for policy in Policy::ALL {
        let (a, da) = measure(5, || place(&cluster, &inventory, &fixed, &rebalance, &quiet, policy));
        let (b, db) = measure(31, || place(&cluster, &inventory, &fixed, &drain, &draining, policy));
        let (c, dc) = measure(11, || place(&cluster, &inventory, &fixed, &drain, &explaining, policy));
        let reasons: usize = dc.iter().map(|d| d.rejected.len()).sum();
        println!(
            "{policy:>12}  (a) rebalance {:>5} VMs: {a:>8.2} ms median of 5, {:>5} placed  (goal < 1000 ms)",
            rebalance.len(),
            placed(&da)
        );
        println!(
            "{policy:>12}  (b) drain     {:>5} VMs: {b:>8.2} ms median of 31, {:>5} placed  (goal < 10 ms)",
            drain.len(),
            placed(&db)
        );
        println!("{policy:>12}      drain --explain:     {c:>8.2} ms median of 11, {reasons} reasons",);
    }
}
