use ferry_model::{Host, Inventory, Version, Vm, VmState};
use ferry_plan::{parse_cluster, parse_plan_toml, Maintenance, Roll};
use ferry_preview::placement::Policy;

use super::*;

/// `hosts` hosts of 4 GiB and 4 CPUs (no overcommit), in one host group; even ones tagged.
fn cluster(hosts: usize) -> ClusterSpec {
    let text: String = (0..hosts)
        .map(|i| {
            format!(
                "[[host]]\nname = \"h{i}\"\nuri = \"qemu+tcp://h{i}/system\"\ngroup = \"all\"\ntags = [{}]\nlink_mib_s = 100\n",
                if i % 2 == 0 { "\"even\"" } else { "" }
            )
        })
        .collect();
    parse_cluster("c.toml", &text).expect("cluster parses")
}

fn host(name: &str) -> Host {
    Host {
        name: name.into(),
        uri: format!("qemu+tcp://{name}/system"),
        cpu_model: "qemu64".into(),
        cpu_models: Default::default(),
        cpus: 4,
        memory_mib: 4096,
        free_memory_mib: 4096,
        hypervisor_version: Version { major: 10, minor: 0, release: 2 },
        libvirt_version: Version { major: 11, minor: 3, release: 0 },
        pools: vec![],
        networks: vec!["default".into()],
    }
}

fn vm(name: &str, on: &str, memory_mib: u64) -> Vm {
    Vm {
        uuid: format!("uuid-{name}"),
        name: name.into(),
        host: on.into(),
        vcpus: 1,
        memory_mib,
        cpu_model: None,
        virt_type: "kvm".into(),
        memory_locked: false,
        state: VmState::Running,
        disks: vec![],
        nics: vec![],
        ferry: None,
        tags: Default::default(),
    }
}

/// `per_host` VMs of `memory_mib` on each of `hosts` hosts.
fn inventory(hosts: usize, per_host: usize, memory_mib: u64) -> Inventory {
    Inventory {
        hosts: (0..hosts).map(|i| host(&format!("h{i}"))).collect(),
        vms: (0..hosts)
            .flat_map(|i| (0..per_host).map(move |j| vm(&format!("vm-{i}-{j}"), &format!("h{i}"), memory_mib)))
            .collect(),
        unreachable: vec![],
    }
}

fn roll(section: &str) -> Roll {
    let text = format!("[plan]\nname = \"r\"\n[roll]\n{section}\n");
    parse_plan_toml("r.toml", &text).expect("plan parses").roll.expect("a roll")
}

fn waves(plan: &RollPlan) -> Vec<Vec<&str>> {
    plan.waves.iter().map(|w| w.hosts.iter().map(String::as_str).collect()).collect()
}

#[test]
fn max_unavailable_and_capacity_shape_the_waves() {
    // 4 hosts with 2 GiB used each: two can go at once (the other two take 4 GiB more).
    let plan =
        plan_roll(&roll("max_unavailable = 2"), "r.toml", &cluster(4), &inventory(4, 2, 1024), 2, Policy::BestFit)
            .expect("plans");
    assert_eq!(waves(&plan), [["h0", "h1"], ["h2", "h3"]]);
    assert_eq!(plan.moves, 16, "8 VMs out and back");
    assert!(plan.impossible.is_empty() && plan.skipped.is_empty());
    // The others are full: each VM lands where it fits, none on a host of its own wave.
    for wave in &plan.waves {
        for step in &wave.vms {
            let to = step.to.as_deref().expect("moves");
            assert!(!wave.hosts.iter().any(|h| h == to), "{step:?}");
        }
    }
    // 3 GiB used each: only one at a time fits, and the waiting host says why.
    let plan =
        plan_roll(&roll("max_unavailable = 2"), "r.toml", &cluster(4), &inventory(4, 3, 1024), 2, Policy::BestFit)
            .expect("plans");
    assert_eq!(waves(&plan), [["h0"], ["h1"], ["h2"], ["h3"]]);
    let (host, why) = &plan.waves[0].waiting[0];
    assert_eq!(host, "h1");
    assert!(why.contains("no host outside the wave has room"), "{why}");
}

#[test]
fn a_redundancy_group_is_never_in_maintenance_together_and_the_reserve_is_kept() {
    let plan = plan_roll(
        &roll("max_unavailable = 2\nredundancy_groups = [[\"h0\", \"h1\"]]"),
        "r.toml",
        &cluster(4),
        &inventory(4, 1, 512),
        2,
        Policy::BestFit,
    )
    .expect("plans");
    assert_eq!(waves(&plan), [["h0", "h2"], ["h1", "h3"]]);
    assert!(plan.waves[0].waiting.iter().any(|(h, why)| h == "h1" && why.contains("redundancy group with h0")));

    // N+1: a whole host (4 GiB) stays free outside maintenance; 2 of 4 hosts at once would
    // leave 16 - 8 - 2 = 6 GiB... but 3 at once only 16 - 12 - 2 = 2.
    let plan = plan_roll(
        &roll("max_unavailable = 3\nreserve = \"largest-host\""),
        "r.toml",
        &cluster(4),
        &inventory(4, 1, 512),
        2,
        Policy::BestFit,
    )
    .expect("plans");
    assert_eq!(waves(&plan), [["h0", "h1"], ["h2", "h3"]]);
    let lowest = plan.lowest_free.expect("waves");
    assert!(lowest.memory_mib >= plan.reserve.memory_mib, "{lowest:?} below {:?}", plan.reserve);
    assert!(plan.waves[0].waiting.iter().any(|(h, why)| h == "h2" && why.contains("below the reserve")));
}

#[test]
fn stay_skips_a_host_shutdown_stays_and_canaries_go_first() {
    let mut inv = inventory(3, 1, 512);
    inv.vms.push(vm("db", "h2", 512));
    let plan = plan_roll(
        &roll("max_unavailable = 2\ncanary = 1\n[roll.maintenance]\nvm-0-0 = \"shutdown\"\nvm-1-0 = \"stay\""),
        "r.toml",
        &cluster(3),
        &inv,
        2,
        Policy::BestFit,
    )
    .expect("plans");
    assert_eq!(plan.skipped, [("h1".to_string(), "vm-1-0 stays (maintenance = \"stay\")".to_string())]);
    assert_eq!(waves(&plan), [["h0"], ["h2"]]);
    assert!(plan.waves[0].canary && !plan.waves[1].canary);
    let off = &plan.waves[0].vms[0];
    assert_eq!((off.vm.as_str(), off.behaviour, off.to.as_deref()), ("vm-0-0", Maintenance::Shutdown, None));
    assert_eq!(plan.moves, 4, "h2's two VMs out and back");
}

#[test]
fn a_vms_maintenance_tag_counts_where_the_plan_does_not_name_it() {
    let mut inv = inventory(3, 1, 512);
    let tag = |inv: &mut Inventory, vm: &str, value: &str| {
        let v = inv.vms.iter_mut().find(|v| v.name == vm).expect("the VM");
        v.tags.insert("maintenance".into(), value.into());
    };
    tag(&mut inv, "vm-1-0", "stay");
    tag(&mut inv, "vm-0-0", "stay");
    tag(&mut inv, "vm-2-0", "not-a-behaviour");
    // The plan's word wins over vm-0-0's tag; a tag ferry cannot read counts as none (live).
    let plan =
        plan_roll(&roll("[roll.maintenance]\nvm-0-0 = \"shutdown\""), "r.toml", &cluster(3), &inv, 2, Policy::BestFit)
            .expect("plans");
    assert_eq!(plan.skipped, [("h1".to_string(), "vm-1-0 stays (maintenance = \"stay\")".to_string())]);
    let steps: Vec<(&str, Maintenance)> =
        plan.waves.iter().flat_map(|w| &w.vms).map(|s| (s.vm.as_str(), s.behaviour)).collect();
    assert_eq!(steps, [("vm-0-0", Maintenance::Shutdown), ("vm-2-0", Maintenance::Live)]);
}

#[test]
fn a_host_that_cannot_be_emptied_is_impossible_and_return_false_keeps_the_new_layout() {
    // Two hosts, each 3.5 GiB used: neither can take the other's VMs.
    let plan = plan_roll(&roll(""), "r.toml", &cluster(2), &inventory(2, 7, 512), 2, Policy::BestFit).expect("plans");
    assert!(plan.waves.is_empty());
    assert_eq!(plan.impossible.len(), 2);
    assert!(plan.impossible[0].1.contains("no host outside the wave has room"));

    // Without return, h0's VMs stay where they went: h1 then holds three VMs, not two.
    let plan = plan_roll(&roll("return = false"), "r.toml", &cluster(3), &inventory(3, 2, 1024), 2, Policy::BestFit)
        .expect("plans");
    assert_eq!(waves(&plan), [["h0"], ["h1"], ["h2"]]);
    assert_eq!(plan.waves[1].vms.len(), 3, "{:?}", plan.waves[1].vms);
    assert_eq!(plan.moves, 2 + 3 + 3);
    let back = plan_roll(&roll(""), "r.toml", &cluster(3), &inventory(3, 2, 1024), 2, Policy::BestFit).expect("plans");
    assert_eq!(back.moves, 12, "two out and back per host");
}

#[test]
fn estimates_need_the_hooks_time_and_add_up() {
    let cluster = cluster(2);
    let inventory = inventory(2, 1, 1000);
    let unknown = plan_roll(&roll(""), "r.toml", &cluster, &inventory, 2, Policy::BestFit).expect("plans");
    assert_eq!(unknown.estimated_s, None);
    let known = plan_roll(&roll("hook_sim_s = 60"), "r.toml", &cluster, &inventory, 2, Policy::BestFit).expect("plans");
    // Each host: 1000 MiB at 100 MiB/s plus one move's overhead, out and back, and the hook.
    let one = 2.0 * (10.0 + PER_MIGRATION_OVERHEAD_S) + 60.0;
    // Summed in another order than here: equal to the last bit only by luck.
    let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-9);
    for wave in &known.waves {
        assert!(near(wave.estimated_s, one), "{:?} != {one}", wave.estimated_s);
    }
    assert_eq!(known.waves.len(), 2);
    assert!(near(known.estimated_s, 2.0 * one), "{:?} != {}", known.estimated_s, 2.0 * one);
}

#[test]
fn bad_names_and_an_impossible_reserve_are_input_errors_with_their_lines() {
    let errors = |section: &str| {
        plan_roll(&roll(section), "r.toml", &cluster(2), &inventory(2, 1, 512), 2, Policy::BestFit)
            .expect_err(section)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(errors("hosts = [\"h0\", \"h9\"]"), ["r.toml:4: roll.hosts: no host h9 in the cluster file"]);
    assert_eq!(errors("hosts = \"group:rack9\""), ["r.toml:4: roll.hosts: no host is in group rack9"]);
    assert_eq!(errors("hosts = \"tag:gpu\""), ["r.toml:4: roll.hosts: no host has tag gpu"]);
    assert_eq!(
        errors("redundancy_groups = [[\"h0\", \"h7\"]]"),
        ["r.toml:4: roll.redundancy_groups: no host h7 in the cluster file"]
    );
    assert!(errors("reserve = { memory_mib = 9000, vcpus = 1 }")[0].contains("more than the whole cluster holds"));
    assert_eq!(
        errors("[roll.maintenance]\nghost = \"stay\""),
        ["r.toml:5: roll.maintenance.ghost: no VM ghost on any host"]
    );
    // Selectors pick in the cluster file's order.
    let plan =
        plan_roll(&roll("hosts = \"tag:even\""), "r.toml", &cluster(4), &inventory(4, 1, 512), 2, Policy::BestFit)
            .expect("plans");
    assert_eq!(plan.hosts, ["h0", "h2"]);
}

#[test]
fn anti_affinity_spreads_a_waves_members_and_holds_a_host_back_when_it_cannot() {
    let tag = |inv: &mut Inventory, vm: &str, group: &str| {
        let v = inv.vms.iter_mut().find(|v| v.name == vm).expect("the VM");
        v.tags.insert(ferry_model::ANTI_AFFINITY_TAG.into(), group.into());
    };
    // 4 hosts, one 512 MiB VM each, h2 twice as large, two hosts at once.
    let fleet = || {
        let mut inv = inventory(4, 1, 512);
        inv.hosts[2].memory_mib = 8192;
        inv
    };
    let targets = |wave: &Wave| -> Vec<(String, String)> {
        wave.vms.iter().map(|s| (s.vm.clone(), s.to.clone().expect("moves"))).collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    // Untagged, h0's and h1's VMs both go to h2, the host with the most room.
    let free =
        plan_roll(&roll("max_unavailable = 2"), "r.toml", &cluster(4), &fleet(), 2, Policy::BestFit).expect("plans");
    assert_eq!(waves(&free), [["h0", "h1"], ["h2", "h3"]]);
    assert_eq!(targets(&free.waves[0]), pairs(&[("vm-0-0", "h2"), ("vm-1-0", "h2")]));
    // Tagged into one group with a third member on h3: with two hosts away, the three
    // members need three hosts of the two left. Each wave takes one host, and each waiting
    // host says which members block it.
    let mut inv = fleet();
    for vm in ["vm-0-0", "vm-1-0", "vm-3-0"] {
        tag(&mut inv, vm, "db");
    }
    let plan = plan_roll(&roll("max_unavailable = 2"), "r.toml", &cluster(4), &inv, 2, Policy::BestFit).expect("plans");
    assert_eq!(waves(&plan), [["h0"], ["h1"], ["h2"], ["h3"]]);
    assert_eq!(targets(&plan.waves[0]), pairs(&[("vm-0-0", "h2")]));
    assert_eq!(
        plan.waves[0].waiting[0],
        (
            "h1".to_string(),
            "anti-affinity group db: every host outside the wave with room for vm-1-0 holds a member \
             (vm-0-0 on h2, vm-3-0 on h3)"
                .to_string()
        )
    );
    // vm-0-0 is back on h0 when h1 goes: vm-1-0 goes to h2, and h3 waits once more.
    assert_eq!(targets(&plan.waves[1]), pairs(&[("vm-1-0", "h2")]));
    assert!(plan.waves[1].waiting.iter().any(|(h, why)| h == "h3" && why.contains("(vm-0-0 on h0, vm-1-0 on h2)")));
    // In every wave, no two members end on one host.
    for wave in &plan.waves {
        let mut at: Vec<String> =
            targets(wave).into_iter().filter(|(vm, _)| vm != "vm-2-0").map(|(_, to)| to).collect();
        at.extend(["h0", "h1", "h3"].iter().filter(|h| !wave.hosts.iter().any(|w| w == *h)).map(|h| h.to_string()));
        let distinct: BTreeSet<&String> = at.iter().collect();
        assert_eq!(distinct.len(), at.len(), "{wave:?}");
    }
    // Two hosts, both members': neither can be emptied.
    let mut inv = inventory(2, 1, 512);
    tag(&mut inv, "vm-0-0", "db");
    tag(&mut inv, "vm-1-0", "db");
    let plan = plan_roll(&roll(""), "r.toml", &cluster(2), &inv, 2, Policy::BestFit).expect("plans");
    assert!(plan.waves.is_empty());
    assert!(plan.impossible[0].1.starts_with("anti-affinity group db"), "{:?}", plan.impossible);
}

#[test]
fn without_return_the_roll_ends_evening_its_hosts_out_by_the_placement_policy() {
    // Three hosts of two 1 GiB VMs each, one at a time, no return: the last host ends empty.
    let inv = inventory(3, 2, 1024);
    let counts = |plan: &RollPlan| -> BTreeMap<String, usize> {
        // Where each VM ends: its last wave's target, then the rebalance's.
        let mut at: BTreeMap<&str, &str> = inv.vms.iter().map(|v| (v.name.as_str(), v.host.as_str())).collect();
        for step in plan.waves.iter().flat_map(|w| &w.vms) {
            at.insert(&step.vm, step.to.as_deref().expect("moves"));
        }
        for m in &plan.rebalance {
            assert_eq!(at[m.vm.as_str()], m.from, "{m:?}");
            at.insert(&m.vm, &m.to);
        }
        let mut counts: BTreeMap<String, usize> = ["h0", "h1", "h2"].iter().map(|h| (h.to_string(), 0)).collect();
        for host in at.values() {
            *counts.get_mut(*host).expect("a host") += 1;
        }
        counts
    };
    let packed = plan_roll(&roll("return = false"), "r.toml", &cluster(3), &inv, 2, Policy::BestFit).expect("plans");
    assert!(packed.rebalance.is_empty(), "best-fit keeps the empty host: {:?}", packed.rebalance);
    assert_eq!(counts(&packed).values().filter(|&&c| c == 0).count(), 1, "{:?}", counts(&packed));

    let spread = plan_roll(&roll("return = false"), "r.toml", &cluster(3), &inv, 2, Policy::Spread).expect("plans");
    assert!(!spread.rebalance.is_empty());
    assert_eq!(counts(&spread).values().copied().collect::<Vec<_>>(), [2, 2, 2], "{:?}", spread.rebalance);
    assert_eq!(spread.moves, packed.moves + spread.rebalance.len());
    let least = plan_roll(&roll("return = false"), "r.toml", &cluster(3), &inv, 2, Policy::LeastLoaded).expect("plans");
    assert_eq!(counts(&least).values().copied().collect::<Vec<_>>(), [2, 2, 2], "{:?}", least.rebalance);

    // With return, every VM is home: nothing to even out.
    let back = plan_roll(&roll(""), "r.toml", &cluster(3), &inv, 2, Policy::Spread).expect("plans");
    assert!(back.rebalance.is_empty());
}

#[test]
fn a_rebalance_keeps_anti_affinity_and_moves_nothing_it_cannot() {
    // h0 holds three VMs, h1 one: spread would move one, but both of h0's tagged VMs would
    // join their group's member on h1, and the untagged one is the only one to go.
    let mut inv = inventory(2, 1, 512);
    inv.vms.push(vm("a", "h0", 512));
    inv.vms.push(vm("b", "h0", 256));
    for name in ["a", "b", "vm-1-0"] {
        inv.vms.iter_mut().find(|v| v.name == name).expect("a VM").tags.insert("anti_affinity".into(), "g".into());
    }
    let hosts = ["h0".to_string(), "h1".to_string()];
    let moves = plan_rebalance(&cluster(2), &inv, &hosts, Policy::Spread);
    assert_eq!(moves, [Rebalance { vm: "vm-0-0".into(), from: "h0".into(), to: "h1".into() }]);
    // All tagged: nothing can go.
    inv.vms.iter_mut().find(|v| v.name == "vm-0-0").expect("a VM").tags.insert("anti_affinity".into(), "g".into());
    assert!(plan_rebalance(&cluster(2), &inv, &hosts, Policy::Spread).is_empty());
}

#[test]
fn a_vm_leaves_only_for_a_host_of_its_own_host_group() {
    // h0 and h1 in group a, h2 and h3 in b, 3 GiB used on each: h0's VMs cannot spill over
    // to b, and h1 alone cannot take them.
    let mut spec = cluster(4);
    for h in &mut spec.hosts[2..] {
        h.group = "b".into();
    }
    let plan = plan_roll(&roll(""), "r.toml", &spec, &inventory(4, 3, 1024), 2, Policy::BestFit).expect("plans");
    assert!(plan.waves.is_empty(), "{:?}", plan.waves);
    assert!(plan.impossible[0].1.ends_with("in its host group all"), "{:?}", plan.impossible);
    let plan = plan_roll(&roll(""), "r.toml", &spec, &inventory(4, 1, 1024), 2, Policy::BestFit).expect("plans");
    for step in plan.waves.iter().flat_map(|w| &w.vms) {
        let group = |h: &str| spec.host(h).expect("a host").group.clone();
        assert_eq!(group(&step.host), group(step.to.as_deref().expect("moves")), "{step:?}");
    }
}
