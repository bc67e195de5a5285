//! Property tests: random small fleets and plans run through the real engine, scheduler and
//! journal on the simulator, in virtual time. Whatever the fleet, the limits, the groups,
//! the faults: the limits are never exceeded, no VM ever runs on two hosts, every VM ends in
//! a terminal status where that status says it is, and the same seed gives the same run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_driver::Driver;
use ferry_engine::{Clock, Engine, EngineEvent, Manual, MoveSpec, RunEnd, RunSettings};
use ferry_journal::{Journal, JournalClock, JournalConfig, NewMove, NewRun, RunKind};
use ferry_model::{Phase, Status, VmState};
use ferry_plan::{Limits, Mode, Policy, Target};
use ferry_sim::{Fault, Fleet, HostDesc, Rng, Settings, SimDriver, VmDesc};
use proptest::prelude::*;

/// One random case: a fleet, its moves and the run's settings, all from a seed.
#[derive(Debug, Clone)]
struct Case {
    fleet: Fleet,
    moves: Vec<MoveSpec>,
    limits: Limits,
    policy: Policy,
    unavailable: Vec<String>,
    faults: bool,
}

fn case(seed: u64, hosts: usize, vms: usize, faults: bool) -> Case {
    let mut rng = Rng::new(seed);
    let hosts: Vec<HostDesc> = (0..hosts)
        .map(|h| HostDesc {
            name: format!("h{h}"),
            group: "default".into(),
            tags: Vec::new(),
            cpus: 16,
            memory_mib: [8192, 16384, 32768][rng.below(3)],
            link_mib_s: [50, 200, 1000][rng.below(3)],
            link_queue_ms: 0.0,
            cpu_overcommit: 4.0,
            memory_overcommit: 1.0,
            maintenance: false,
            compress_cpu_ms_per_mib: None,
        })
        .collect();
    let mut used = vec![0u64; hosts.len()];
    let mut list = Vec::new();
    for i in 0..vms {
        let memory = [512, 1024, 2048, 4096][rng.below(4)];
        let Some(h) = (0..hosts.len())
            .map(|k| (k + rng.below(hosts.len())) % hosts.len())
            .find(|&h| used[h] + memory <= hosts[h].memory_mib)
        else {
            continue;
        };
        used[h] += memory;
        let m = memory as f64;
        list.push(VmDesc {
            name: format!("v{i}"),
            uuid: None,
            host: hosts[h].name.clone(),
            memory_mib: memory,
            vcpus: 1,
            // Some never converge at a small link: the engine's completion timeout ends them.
            dirty_mib_s: [0.0, 5.0, 40.0, 300.0][rng.below(4)],
            working_set_mib: Some(m * rng.range(0.1, 0.6)),
            nonzero_mib: Some(m * rng.range(0.3, 1.0)),
            catch_up_s: None,
            disk_mib: if rng.unit() < 0.2 { 1024 } else { 0 },
            running: rng.unit() < 0.9,
            shutdown_s: rng.range(0.0, 90.0),
            compression_ratio: None,
            tags: Default::default(),
        });
    }
    let mut fleet = Fleet {
        sim: Settings { seed, migration_error_rate: if faults { 0.2 } else { 0.0 }, ..Settings::default() },
        hosts,
        vms: list,
        faults: Vec::new(),
    };
    if faults && rng.unit() < 0.5 {
        let host = fleet.hosts[rng.below(fleet.hosts.len())].name.clone();
        fleet.faults.push(Fault { host, down_at_s: rng.range(0.0, 120.0) });
    }
    // A drained host: every VM on it moves to ANY, and it takes none.
    let drained = (rng.unit() < 0.3).then(|| fleet.hosts[rng.below(fleet.hosts.len())].name.clone());
    let groups = ["dns", "db"];
    let mut moves = Vec::new();
    for (i, v) in fleet.vms.iter().enumerate() {
        let on_drained = drained.as_deref() == Some(v.host.as_str());
        if !on_drained && rng.unit() < 0.3 {
            continue;
        }
        let to = if on_drained || rng.unit() < 0.4 {
            Target::Any
        } else {
            let others: Vec<&HostDesc> = fleet
                .hosts
                .iter()
                .filter(|h| h.name != v.host && drained.as_deref() != Some(h.name.as_str()))
                .collect();
            if others.is_empty() {
                continue;
            }
            Target::Host(others[rng.below(others.len())].name.clone())
        };
        let group = (rng.unit() < 0.3).then(|| groups[rng.below(2)].to_string());
        moves.push(MoveSpec {
            vm: v.name.clone(),
            uuid: fleet.uuid(i),
            from: v.host.clone(),
            to,
            group,
            order: i,
            priority: rng.below(2) as i64,
            memory_mib: v.memory_mib,
            running: v.running,
            cold: false,
            // As `ferry migrate` on a fleet gives it: measured, for the convergence policy.
            dirty_mib_s: v.running.then_some(v.dirty_mib_s),
            estimate: None,
        });
    }
    let limits = Limits { cluster: 1 + rng.below(4), per_source: 1 + rng.below(3), per_target: 1 + rng.below(3) };
    let policy = Policy {
        mode: [Mode::Live, Mode::LiveOrCold, Mode::Cold][rng.below(3)],
        auto_converge: rng.unit() < 0.5,
        completion_timeout_per_gib_s: 150,
        shutdown_timeout_s: 60,
        ..Policy::default()
    };
    Case { fleet, moves, limits, policy, unavailable: drained.into_iter().collect(), faults }
}

/// What a run did, for the properties and for comparing two runs.
#[derive(Debug, PartialEq)]
struct Outcome {
    end: Vec<(String, Status, String)>,
    reports: Vec<Option<String>>,
    events: Vec<String>,
    /// Where each VM is found afterwards (running, host), by name; `None` when a host that
    /// cannot be asked keeps it from being located.
    at: BTreeMap<String, Option<Vec<(String, VmState)>>>,
    /// Worst concurrency seen while the run went on: cluster, per source, per target.
    peaks: (usize, usize, usize),
    /// Times a VM was seen running on two hosts at once.
    doubles: usize,
    journal_terminal: bool,
}

fn run(case: &Case) -> Outcome {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let db = std::env::temp_dir().join(format!(
        "ferry-sim-props-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let runtime = ferry_sim::runtime().expect("a runtime");
    let outcome = runtime.block_on(async {
        let start = case.fleet.start_unix();
        let config =
            JournalConfig { clock: JournalClock::Virtual { unix_ms: start * 1000 }, ..JournalConfig::default() };
        let journal = Journal::open_path(&db, &config).await.expect("a journal");
        let driver = Arc::new(SimDriver::new(&case.fleet));
        let inventory = driver.inventory().await;
        let new_run = NewRun {
            plan_name: "props".into(),
            plan: serde_json::json!({}),
            cluster: serde_json::json!({}),
            kind: RunKind::Migrate,
            parent: None,
        };
        let run = journal.create_run(&new_run).await.expect("a run");
        let new_moves: Vec<NewMove> = case
            .moves
            .iter()
            .map(|m| NewMove {
                vm: m.vm.clone(),
                uuid: m.uuid.clone(),
                source: m.from.clone(),
                target: match &m.to {
                    Target::Host(h) => Some(h.clone()),
                    Target::Any => None,
                },
                group: m.group.clone(),
                seq: m.order as i64,
                priority: m.priority,
                status: Status::Pending,
                message: String::new(),
            })
            .collect();
        journal.add_moves(&run.id, &new_moves).await.expect("moves");
        let settings = RunSettings {
            run_id: run.id.clone(),
            owner: "props".into(),
            policy: case.policy.clone(),
            limits: case.limits.clone(),
            deadline: None,
            resume_from: None,
            unavailable: case.unavailable.clone(),
            manual: Manual::default(),
        };
        let engine =
            Engine::new(driver.clone(), journal.clone(), case.fleet.cluster(), inventory, settings, case.moves.clone())
                .with_clock(Clock::starting_at(start as f64));
        let (_commands, command_rx) = tokio::sync::mpsc::unbounded_channel();
        let (event_tx, mut event_rx) = tokio::sync::mpsc::unbounded_channel();

        // Watches every VM every quarter second of virtual time while the run goes on.
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = {
            let driver = driver.clone();
            let uuids: Vec<String> = (0..case.fleet.vms.len()).map(|i| case.fleet.uuid(i)).collect();
            tokio::spawn(async move {
                let mut doubles = 0;
                loop {
                    for uuid in &uuids {
                        if let Ok(at) = driver.locate(uuid).await {
                            if at.iter().filter(|l| l.state == VmState::Running).count() > 1 {
                                doubles += 1;
                            }
                        }
                    }
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => return doubles,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            })
        };
        let end: RunEnd = engine.run(command_rx, event_tx).await.expect("the run ends");
        let _ = stop_tx.send(());
        let doubles = watcher.await.expect("the watcher ends");

        let specs: HashMap<&str, &MoveSpec> = case.moves.iter().map(|m| (m.vm.as_str(), m)).collect();
        let mut flying: BTreeMap<String, (String, String)> = BTreeMap::new();
        let (mut peak_cluster, mut peak_source, mut peak_target) = (0, 0, 0);
        let mut events = Vec::new();
        while let Ok(event) = event_rx.try_recv() {
            match &event {
                EngineEvent::Started { vm, from, to, .. } => {
                    assert_eq!(specs[vm.as_str()].from, *from);
                    flying.insert(vm.clone(), (from.clone(), to.clone()));
                    peak_cluster = peak_cluster.max(flying.len());
                    peak_source = peak_source.max(flying.values().filter(|(f, _)| f == from).count());
                    peak_target = peak_target.max(flying.values().filter(|(_, t)| t == to).count());
                }
                // A move holds its slots until its switch-over (or its end).
                EngineEvent::Phase { vm, phase: Phase::SwitchedOver } | EngineEvent::Finished { vm, .. } => {
                    flying.remove(vm);
                }
                _ => {}
            }
            events.push(format!("{event:?}"));
        }
        let mut at = BTreeMap::new();
        for (i, v) in case.fleet.vms.iter().enumerate() {
            let located = driver
                .locate(&case.fleet.uuid(i))
                .await
                .ok()
                .map(|ls| ls.into_iter().map(|l| (l.host, l.state)).collect());
            at.insert(v.name.clone(), located);
        }
        let journal_terminal = journal.moves(&run.id).await.expect("moves").iter().all(|m| m.status.is_terminal());
        journal.close().await;
        Outcome {
            end: end.moves.iter().map(|m| (m.vm.clone(), m.status, m.message.clone())).collect(),
            reports: end.moves.iter().map(|m| m.report.as_ref().map(|r| format!("{r:?}"))).collect(),
            events,
            at,
            peaks: (peak_cluster, peak_source, peak_target),
            doubles,
            journal_terminal,
        }
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    outcome
}

fn check(case: &Case, outcome: &Outcome) {
    let Limits { cluster, per_source, per_target } = case.limits;
    let (c, s, t) = outcome.peaks;
    assert!(
        c <= cluster && s <= per_source && t <= per_target,
        "peaks {:?} over limits {:?}",
        outcome.peaks,
        case.limits
    );
    assert_eq!(outcome.doubles, 0, "a VM ran on two hosts at once");
    assert!(outcome.journal_terminal, "a move is not terminal in the journal");
    let specs: HashMap<&str, &MoveSpec> = case.moves.iter().map(|m| (m.vm.as_str(), m)).collect();
    assert_eq!(outcome.end.len(), case.moves.len());
    for (vm, status, message) in &outcome.end {
        assert!(status.is_terminal(), "{vm}: {status}");
        if *status == Status::FailureLost {
            assert!(case.faults && !case.fleet.faults.is_empty(), "{vm} lost without a host going down: {message}");
            continue;
        }
        // Where the status says the VM is, it is, and only there.
        let Some(Some(at)) = outcome.at.get(vm) else { continue };
        let spec = specs[vm.as_str()];
        let running: Vec<&(String, VmState)> = at.iter().filter(|(_, s)| *s == VmState::Running).collect();
        assert!(running.len() <= 1 && at.len() == 1, "{vm}: {at:?}");
        if status.is_success() {
            assert_ne!(at[0].0, spec.from, "{vm} {status} but still on {}: {message}", spec.from);
            if let Target::Host(to) = &spec.to {
                assert_eq!(&at[0].0, to, "{vm}");
            }
            assert!(!case.unavailable.contains(&at[0].0), "{vm} moved to a drained host");
        } else {
            assert_eq!(at[0].0, spec.from, "{vm} {status} but on {}: {message}", at[0].0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn runs_keep_their_limits_and_leave_every_vm_somewhere_once(
        seed in any::<u64>(),
        hosts in 2usize..6,
        vms in 1usize..14,
        faults in any::<bool>(),
    ) {
        let case = case(seed, hosts, vms, faults);
        let outcome = run(&case);
        check(&case, &outcome);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_same_seed_gives_the_same_run(seed in any::<u64>(), faults in any::<bool>()) {
        let case = case(seed, 4, 10, faults);
        let a = run(&case);
        let b = run(&case);
        prop_assert_eq!(a, b);
    }
}
