//! Every precheck, table-driven: passing, failing, and waived.

use ferry_model::{
    Claim, ClusterSpec, Compression, Disk, DiskSource, Host, HostSpec, Inventory, Locality, Metadata, Nic, Phase, Pool,
    Version, Vm, VmState,
};
use ferry_plan::{Mode, Policy};
use std::collections::HashMap;

use ferry_plan::StaleCopies;
use ferry_preview::checks::{check_move, waive, Candidate, CheckContext, CheckName, EarlierCopy, Outcome};

fn spec(name: &str, group: &str) -> HostSpec {
    HostSpec {
        name: name.into(),
        uri: format!("qemu+tcp://{name}/system"),
        migration_uri: None,
        group: group.into(),
        tags: vec![],
        link_mib_s: Some(1000),
        cpu_overcommit: 1.0,
        memory_overcommit: 1.0,
        maintenance: false,
        shared_pools: vec!["nfs".into()],
        stream: Default::default(),
    }
}

fn host(name: &str) -> Host {
    Host {
        name: name.into(),
        uri: format!("qemu+tcp://{name}/system"),
        cpu_model: "Skylake-Client".into(),
        cpu_models: [("kvm".to_string(), vec!["qemu64".to_string(), "Skylake-Client".to_string()])]
            .into_iter()
            .collect(),
        cpus: 4,
        memory_mib: 8192,
        free_memory_mib: 8000,
        hypervisor_version: Version { major: 10, minor: 0, release: 2 },
        libvirt_version: Version { major: 11, minor: 3, release: 0 },
        pools: vec![
            Pool {
                name: "local".into(),
                path: Some(format!("/pool/{name}")),
                capacity: 100 << 30,
                available: 10 << 30,
                shared: false,
            },
            Pool {
                name: "nfs".into(),
                path: Some("/nfs".into()),
                capacity: 100 << 30,
                available: 50 << 30,
                shared: true,
            },
        ],
        networks: vec!["default".into()],
    }
}

fn vm(name: &str, on: &str, memory_mib: u64, vcpus: u32) -> Vm {
    Vm {
        uuid: format!("uuid-{name}"),
        name: name.into(),
        host: on.into(),
        vcpus,
        memory_mib,
        cpu_model: Some("qemu64".into()),
        virt_type: "kvm".into(),
        memory_locked: false,
        state: VmState::Running,
        disks: vec![Disk {
            target: "vda".into(),
            source: DiskSource::File { path: format!("/pool/{on}/{name}.qcow2") },
            format: "qcow2".into(),
            locality: Locality::HostLocal,
            pool: Some("local".into()),
            capacity: Some(1 << 30),
        }],
        nics: vec![Nic { mac: "52:54:00:00:00:01".into(), network: Some("default".into()) }],
        ferry: None,
        tags: Default::default(),
    }
}

struct World {
    cluster: ClusterSpec,
    inventory: Inventory,
    policy: Policy,
    moves: Vec<Candidate>,
    unavailable: Vec<String>,
    earlier_copies: HashMap<String, Vec<EarlierCopy>>,
    live_runs: Vec<String>,
}

/// The preview's clock in these tests, Unix ms.
const NOW_MS: i64 = 1_796_500_000_000;

fn world() -> World {
    World {
        cluster: ClusterSpec { hosts: vec![spec("a", "g1"), spec("b", "g1"), spec("c", "g2")] },
        inventory: Inventory {
            hosts: vec![host("a"), host("b"), host("c")],
            vms: vec![vm("web-1", "a", 2048, 2), vm("web-2", "a", 2048, 2), vm("big", "b", 4096, 2)],
            unreachable: vec![],
        },
        policy: Policy::default(),
        moves: vec![Candidate { uuid: "uuid-web-1".into(), from: "a".into(), to: Some("b".into()), group: None }],
        unavailable: vec![],
        earlier_copies: HashMap::new(),
        live_runs: vec![],
    }
}

/// web-1's disk, unused on `host`; `left_by_ferry` says how ferry knows it left it there.
fn copy_of_web_1(w: &mut World, host: &str, left_by_ferry: Option<&str>) {
    w.earlier_copies.entry("uuid-web-1".into()).or_default().push(EarlierCopy {
        host: host.into(),
        pool: "local".into(),
        name: "web-1.qcow2".into(),
        left_by_ferry: left_by_ferry.map(String::from),
    });
}

/// Runs the checks on move 0 (or the last move) and returns the one named.
fn outcome_of(w: &World, index: usize, name: CheckName, ignore: &[CheckName]) -> (Outcome, String) {
    let ctx = CheckContext {
        cluster: &w.cluster,
        inventory: &w.inventory,
        policy: &w.policy,
        moves: &w.moves,
        unavailable: &w.unavailable,
        earlier_copies: &w.earlier_copies,
        now_ms: Some(NOW_MS),
        live_runs: &w.live_runs,
    };
    let mut checks = check_move(&ctx, index);
    waive(&mut checks, ignore);
    let check = checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} check in {checks:#?}"));
    (check.outcome, check.message.clone())
}

type Mutation = fn(&mut World);

#[test]
fn every_check_passes_fails_and_can_be_waived() {
    let cases: Vec<(&str, CheckName, Mutation, Outcome, &str)> = vec![
        ("running moves live", CheckName::VmState, |_| {}, Outcome::Passed, "moves live"),
        (
            "stopped under live",
            CheckName::VmState,
            |w| w.inventory.vms[0].state = VmState::ShutOff,
            Outcome::Failed,
            "only move cold",
        ),
        (
            "stopped under live-or-cold",
            CheckName::VmState,
            |w| {
                w.inventory.vms[0].state = VmState::ShutOff;
                w.policy.mode = Mode::LiveOrCold;
            },
            Outcome::Info,
            "moves cold",
        ),
        ("target answers", CheckName::Target, |_| {}, Outcome::Passed, "b answers"),
        (
            "target is the source",
            CheckName::Target,
            |w| w.moves[0].to = Some("a".into()),
            Outcome::Failed,
            "already on a",
        ),
        ("target drained", CheckName::Target, |w| w.unavailable = vec!["b".into()], Outcome::Failed, "being drained"),
        (
            "target unreachable",
            CheckName::Target,
            |w| {
                w.inventory.hosts.retain(|h| h.name != "b");
                w.inventory.unreachable.push(("b".into(), "connection refused".into()));
            },
            Outcome::Failed,
            "b is unreachable: connection refused",
        ),
        ("no placement", CheckName::Target, |w| w.moves[0].to = None, Outcome::Failed, "placement found no host"),
        ("not in maintenance", CheckName::Maintenance, |_| {}, Outcome::Passed, "not in maintenance"),
        (
            "in maintenance",
            CheckName::Maintenance,
            |w| w.cluster.hosts[1].maintenance = true,
            Outcome::Failed,
            "b is in maintenance",
        ),
        ("memory fits", CheckName::Memory, |_| {}, Outcome::Passed, "needs 2048 MiB, 4096 MiB free"),
        (
            "memory short",
            CheckName::Memory,
            |w| w.inventory.vms[0].memory_mib = 6000,
            Outcome::Failed,
            "needs 6000 MiB, 4096 MiB free",
        ),
        (
            "memory overcommit allows",
            CheckName::Memory,
            |w| {
                w.inventory.vms[0].memory_mib = 6000;
                w.cluster.hosts[1].memory_overcommit = 1.5;
            },
            Outcome::Passed,
            "needs 6000 MiB",
        ),
        ("vcpus fit", CheckName::Vcpus, |_| {}, Outcome::Passed, "needs 2, 2 free"),
        ("vcpus short", CheckName::Vcpus, |w| w.inventory.vms[0].vcpus = 3, Outcome::Failed, "needs 3, 2 free"),
        ("cpu model usable", CheckName::CpuModel, |_| {}, Outcome::Passed, "can run CPU model qemu64"),
        (
            "cpu model unusable",
            CheckName::CpuModel,
            |w| {
                w.inventory.hosts[1].cpu_models.insert("kvm".into(), vec!["Haswell".into()]);
            },
            Outcome::Failed,
            "cannot run CPU model qemu64",
        ),
        (
            "host cpu differs",
            CheckName::CpuModel,
            |w| {
                w.inventory.vms[0].cpu_model = None;
                w.inventory.hosts[1].cpu_model = "EPYC".into();
            },
            Outcome::Warning,
            "uses the host CPU",
        ),
        ("same hypervisor", CheckName::HypervisorVersion, |_| {}, Outcome::Passed, "QEMU 10.0.2 on b"),
        (
            "older hypervisor",
            CheckName::HypervisorVersion,
            |w| w.inventory.hosts[1].hypervisor_version = Version { major: 7, minor: 2, release: 0 },
            Outcome::Failed,
            "older than 10.0.2",
        ),
        ("plain stream", CheckName::Stream, |_| {}, Outcome::Passed, "one plain stream"),
        (
            "zstd over four connections",
            CheckName::Stream,
            |w| {
                w.policy.stream.parallel_connections = 4;
                w.policy.stream.compression = Compression::Zstd;
            },
            Outcome::Passed,
            "4 connections, zstd",
        ),
        (
            "zstd on an old libvirt",
            CheckName::Stream,
            |w| {
                w.policy.stream.parallel_connections = 2;
                w.policy.stream.compression = Compression::Zstd;
                w.inventory.hosts[1].libvirt_version = Version { major: 9, minor: 0, release: 0 };
            },
            Outcome::Failed,
            "multifd compression needs libvirt 9.4.0 or later; b runs 9.0.0",
        ),
        (
            "post-copy after multifd on QEMU 10.0",
            CheckName::Stream,
            |w| {
                w.policy.stream.parallel_connections = 2;
                w.policy.postcopy = true;
            },
            Outcome::Failed,
            "post-copy with parallel connections needs QEMU 10.1.0 or later; b runs 10.0.2",
        ),
        (
            "TLS asked of hosts reached over TCP",
            CheckName::Stream,
            |w| w.policy.tls = Some(true),
            Outcome::Warning,
            "TLS; a and b reached without TLS",
        ),
        (
            "TLS by default between TLS hosts",
            CheckName::Stream,
            |w| {
                for h in &mut w.cluster.hosts {
                    h.uri = format!("qemu+tls://{}/system", h.name);
                }
            },
            Outcome::Passed,
            "TLS",
        ),
        (
            "zero-copy without locked memory",
            CheckName::Stream,
            |w| {
                w.policy.stream.parallel_connections = 2;
                w.policy.stream.zerocopy = true;
            },
            Outcome::Failed,
            "zero-copy needs web-1's memory locked",
        ),
        (
            "zero-copy with locked memory",
            CheckName::Stream,
            |w| {
                w.policy.stream.parallel_connections = 2;
                w.policy.stream.zerocopy = true;
                w.inventory.vms[0].memory_locked = true;
            },
            Outcome::Passed,
            "2 connections, zero-copy",
        ),
        ("same group", CheckName::HostGroup, |_| {}, Outcome::Passed, "both in group g1"),
        (
            "other group",
            CheckName::HostGroup,
            |w| w.moves[0].to = Some("c".into()),
            Outcome::Failed,
            "allow_cross_group",
        ),
        (
            "other group allowed",
            CheckName::HostGroup,
            |w| {
                w.moves[0].to = Some("c".into());
                w.policy.allow_cross_group = true;
            },
            Outcome::Info,
            "allowed by the plan",
        ),
        ("local disk copied", CheckName::Volumes, |_| {}, Outcome::Passed, "copies 1024 MiB into pool local"),
        (
            "no room for the copy",
            CheckName::Volumes,
            |w| w.inventory.hosts[1].pools[0].available = 100 << 20,
            Outcome::Failed,
            "has 100 MiB free, the copy needs 1024 MiB",
        ),
        (
            "no such pool",
            CheckName::Volumes,
            |w| {
                w.inventory.hosts[1].pools.remove(0);
            },
            Outcome::Failed,
            "has no storage pool local",
        ),
        (
            "shared pool",
            CheckName::Volumes,
            |w| {
                w.inventory.vms[0].disks[0].locality = Locality::Shared;
                w.inventory.vms[0].disks[0].pool = Some("nfs".into());
            },
            Outcome::Passed,
            "shared pool nfs, not copied",
        ),
        (
            "shared pool missing",
            CheckName::Volumes,
            |w| {
                w.inventory.vms[0].disks[0].locality = Locality::Shared;
                w.inventory.vms[0].disks[0].pool = Some("nfs".into());
                w.inventory.hosts[1].pools.remove(1);
            },
            Outcome::Failed,
            "shared pool nfs is not declared on b",
        ),
        (
            "an earlier copy ferry left is refused by default, naming the command",
            CheckName::Volumes,
            |w| copy_of_web_1(w, "b", Some("run r-1 moved it away from there and kept this copy")),
            Outcome::Failed,
            "local/web-1.qcow2 on b is an earlier copy of web-1's disk (run r-1 moved it away from there and kept \
             this copy); the move will not overwrite it: `ferry cleanup --vm web-1 --source-volumes` deletes it",
        ),
        (
            "an earlier copy ferry left is replaced when the policy says so",
            CheckName::Volumes,
            |w| {
                copy_of_web_1(w, "b", Some("run r-1 moved it away from there and kept this copy"));
                w.policy.stale_copies = StaleCopies::Replace;
            },
            Outcome::Warning,
            "deletes local/web-1.qcow2 on b, an earlier copy of web-1's disk (run r-1 moved it away from there and \
             kept this copy), just before preparing the target (policy.stale_copies = replace); vda: copies 1024 MiB",
        ),
        (
            "a copy ferry cannot attribute is never replaced",
            CheckName::Volumes,
            |w| {
                copy_of_web_1(w, "b", None);
                w.policy.stale_copies = StaleCopies::Replace;
            },
            Outcome::Failed,
            "local/web-1.qcow2 on b has the name and size of web-1's disk, but ferry did not leave it there",
        ),
        (
            "a copy on another host is not in the way",
            CheckName::Volumes,
            |w| copy_of_web_1(w, "c", None),
            Outcome::Passed,
            "copies 1024 MiB into pool local",
        ),
        ("network present", CheckName::Networks, |_| {}, Outcome::Passed, "every network"),
        (
            "network missing",
            CheckName::Networks,
            |w| w.inventory.hosts[1].networks.clear(),
            Outcome::Failed,
            "b has no network default",
        ),
        (
            "direction allowed",
            CheckName::Direction,
            |w| {
                w.cluster.hosts[1].tags = vec!["allow-from:old".into()];
                w.cluster.hosts[0].tags = vec!["old".into()];
            },
            Outcome::Passed,
            "accepts VMs from a",
        ),
        ("no run", CheckName::ActiveRun, |_| {}, Outcome::Passed, "not part of any run"),
        (
            "finished run",
            CheckName::ActiveRun,
            |w| {
                w.inventory.vms[0].ferry = Some(Metadata {
                    run_id: "r-1".into(),
                    original_host: "c".into(),
                    phase: Phase::Finalized,
                    claim: None,
                });
            },
            Outcome::Passed,
            "last moved by run r-1",
        ),
        (
            "run in flight",
            CheckName::ActiveRun,
            |w| {
                w.inventory.vms[0].ferry = Some(Metadata {
                    run_id: "r-2".into(),
                    original_host: "a".into(),
                    phase: Phase::Transferring,
                    claim: None,
                });
            },
            Outcome::Failed,
            "run r-2 is moving it (phase transferring, from a)",
        ),
        (
            "direction refused",
            CheckName::Direction,
            |w| w.cluster.hosts[1].tags = vec!["allow-from:old".into()],
            Outcome::Failed,
            "only from hosts tagged old",
        ),
    ];
    for (what, name, mutate, expect, text) in cases {
        let mut w = world();
        mutate(&mut w);
        let (outcome, message) = outcome_of(&w, 0, name, &[]);
        assert_eq!(outcome, expect, "{what}: {message}");
        assert!(message.contains(text), "{what}: {message:?} lacks {text:?}");
        if expect == Outcome::Failed {
            let (waived, message) = outcome_of(&w, 0, name, &[name]);
            assert_eq!(waived, Outcome::Warning, "{what} waived");
            assert!(message.starts_with(&format!("waived (--ignore {name})")), "{what}: {message}");
        }
    }
}

#[test]
fn capacity_counts_every_earlier_inbound_move() {
    let mut w = world();
    // b has 8192 MiB and runs big (4096): web-1 (2048) fits, web-2 (2048) fits, a third does not.
    w.inventory.vms.push(vm("web-3", "a", 2048, 1));
    w.cluster.hosts[1].cpu_overcommit = 4.0;
    w.moves = ["web-1", "web-2", "web-3"]
        .iter()
        .map(|n| Candidate { uuid: format!("uuid-{n}"), from: "a".into(), to: Some("b".into()), group: None })
        .collect();
    assert_eq!(outcome_of(&w, 0, CheckName::Memory, &[]).0, Outcome::Passed);
    assert_eq!(outcome_of(&w, 1, CheckName::Memory, &[]).0, Outcome::Passed);
    let (outcome, message) = outcome_of(&w, 2, CheckName::Memory, &[]);
    assert_eq!(outcome, Outcome::Failed);
    assert!(message.contains("0 MiB free after 2 earlier planned inbound moves"), "{message}");
}

#[test]
fn anti_affinity_sees_where_every_member_ends() {
    let mut w = world();
    w.moves = vec![
        Candidate { uuid: "uuid-web-1".into(), from: "a".into(), to: Some("b".into()), group: Some("web".into()) },
        Candidate { uuid: "uuid-web-2".into(), from: "a".into(), to: Some("b".into()), group: Some("web".into()) },
    ];
    let (outcome, message) = outcome_of(&w, 1, CheckName::AntiAffinity, &[]);
    assert_eq!(outcome, Outcome::Failed);
    assert!(message.contains("web-2 and web-1 of group web would both be on b"), "{message}");
    w.moves[1].to = Some("c".into());
    w.policy.allow_cross_group = true;
    assert_eq!(outcome_of(&w, 1, CheckName::AntiAffinity, &[]).0, Outcome::Passed);
    let (waived, _) = {
        w.moves[1].to = Some("b".into());
        outcome_of(&w, 1, CheckName::AntiAffinity, &[CheckName::AntiAffinity])
    };
    assert_eq!(waived, Outcome::Warning);
}

#[test]
fn anti_affinity_counts_tagged_vms_that_do_not_move() {
    let mut w = world();
    let tag = |w: &mut World, name: &str, group: &str| {
        let vm = w.inventory.vms.iter_mut().find(|v| v.name == name).expect("a VM of the world");
        vm.tags.insert(ferry_model::ANTI_AFFINITY_TAG.into(), group.into());
    };
    tag(&mut w, "web-1", "db");
    tag(&mut w, "big", "db");
    let (outcome, message) = outcome_of(&w, 0, CheckName::AntiAffinity, &[]);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(message, "web-1 and big of group db would both be on b");
    // Another group, or big moving away, clears it.
    tag(&mut w, "big", "web");
    assert_eq!(outcome_of(&w, 0, CheckName::AntiAffinity, &[]).0, Outcome::Passed);
    tag(&mut w, "big", "db");
    w.moves.push(Candidate {
        uuid: "uuid-big".into(),
        from: "b".into(),
        to: Some("a".into()),
        group: Some("db".into()),
    });
    assert_eq!(outcome_of(&w, 0, CheckName::AntiAffinity, &[]).0, Outcome::Passed);
}

#[test]
fn a_live_runs_claim_fails_active_run_and_no_ignore_waives_it() {
    // (case, claim refreshed at, runs alive in the journal, held: not waivable)
    let cases: [(&str, Option<i64>, &[&str], bool); 4] = [
        ("claim refreshed 5 s ago", Some(NOW_MS - 5_000), &[], true),
        ("claim a minute old, its ferry gone", Some(NOW_MS - 60_000), &[], false),
        ("claim a minute old, its run alive in the journal", Some(NOW_MS - 60_000), &["r-9"], true),
        ("metadata from before claims", None, &[], false),
    ];
    for (what, refreshed_ms, live_runs, held) in cases {
        let mut w = world();
        w.inventory.vms[0].ferry = Some(Metadata {
            run_id: "r-9".into(),
            original_host: "a".into(),
            phase: Phase::Transferring,
            claim: refreshed_ms.map(|refreshed_ms| Claim { owner: "ops-2:77".into(), refreshed_ms }),
        });
        w.live_runs = live_runs.iter().map(|r| r.to_string()).collect();
        let (outcome, message) = outcome_of(&w, 0, CheckName::ActiveRun, &[CheckName::ActiveRun]);
        if held {
            assert_eq!(outcome, Outcome::Failed, "{what}: {message}");
            assert_eq!(
                message,
                "being moved by run r-9 (host a, owner ops-2:77); wait for it, or `ferry abort r-9` \
                 (a live run's lock: --ignore cannot waive it)",
                "{what}"
            );
        } else {
            assert_eq!(outcome, Outcome::Warning, "{what}: {message}");
            assert!(message.starts_with("waived (--ignore active-run): run r-9 is moving it"), "{what}: {message}");
        }
    }
}
