//! ferry's scheduler against the concurrency policies of other orchestrators, on the same
//! simulated fleets, and against a lower bound.
//!
//! Scenarios, each on a fleet of 100 hosts / 1,000 VMs and one of 1,000 hosts / 10,000 VMs
//! (`ferry sim gen`'s generator, seed 2026, 10 GbE links, 60 % full):
//!
//! - **host drain**: every VM of one host to other hosts;
//! - **rack drain**: every VM of a rack of 20 hosts to the other racks;
//! - **rebalance**: half the hosts hold every VM (the fleet at 30 %, so they are 60 % full);
//!   half of each full host's VMs go to the empty hosts: round-robin for the baselines; ferry
//!   places each when it starts (`to = "ANY"`, `placement = "spread"`, as an operator would
//!   write a rebalance), against the inbound slots free at that moment.
//!
//! Every policy moves the same VMs; in the drains to the same targets (placed once by ferry's
//! placement, `spread`), except Proxmox's, which by definition sends one host's VMs to one
//! target (in the rebalance too); and
//! every migration runs with the same options (auto-converge, 300 ms downtime limit, a
//! completion timeout of 150 s per GiB): only *what starts when*, and with which bandwidth
//! cap, differs.
//!
//! - **ferry**: the real engine, scheduler and journal (virtual clock): a sliding window,
//!   2 outbound and 2 inbound per host (the plan defaults), no cluster limit (the default 8 is
//!   for small clusters: an operator draining a rack sets it), each migration capped at its
//!   share of the links (the scheduler's retunes). A second row, for information only, allows
//!   4 each way (on the 100-host fleets only: on the 1,000-host rebalance it took 13 minutes
//!   of wall time, in retunes).
//! - **Nova**: `max_concurrent_live_migrations = 1` per source host, every host's queue in
//!   order, no other limit, no cap (anchors: Nova, `host-evacuate-live`).
//! - **KubeVirt**: 5 migrations in the cluster, 2 outbound per node, in order, no cap
//!   (`parallelMigrationsPerCluster`, `parallelOutboundMigrationsPerNode`).
//! - **hbal**: jobsets (waves) of moves that share no host, one jobset after the other.
//! - **Proxmox**: `migrateall` per drained host to one target (the emptiest host not yet
//!   chosen) with 4 workers (`max-workers`).
//! - **ferry's order, no caps** (a diagnosis, not a product): ferry's scheduler deciding
//!   what starts (2 out, 2 in, sliding window, larger first, sources in turn), its
//!   migrations sharing links like the baselines', without caps.
//! - **lower bound**: the most any host's link must carry (non-zero memory and disks of the
//!   moves out of it, or into it; out of it only when the targets are not fixed, as in the
//!   rebalance) at its speed, or the longest single move alone, whichever is larger. No
//!   schedule beats it; pre-copy's re-sends and each migration's fixed cost make it
//!   unreachable.
//!
//! Figures: makespan (virtual time from the first start to the last end), the worst
//! downtime, the bytes sent, the moves that did not succeed, and ratios.
//!
//! `cargo bench -p ferry-sim --bench scheduler [-- --quick]` (`--quick`: the 100-host
//! fleets only). Prints the table; asserts nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_driver::{Control, Driver, LiveOptions, MoveError, MoveReport, MoveRequest};
use ferry_engine::{Clock, Engine, Manual, MoveSpec, RunSettings};
use ferry_journal::{Journal, JournalClock, JournalConfig, NewMove, NewRun, RunKind};
use ferry_model::Status;
use ferry_plan::{Limits, Policy, Target};
use ferry_preview::estimate::{JOB_SETUP_S, PER_MIGRATION_OVERHEAD_S};
use ferry_preview::placement::{self, Constraints, Request};
use ferry_sim::{Fleet, GenOptions, SimDriver};
use tokio::sync::mpsc;

/// One move of a scenario.
#[derive(Debug, Clone)]
struct Mv {
    vm: String,
    uuid: String,
    from: String,
    to: String,
    memory_mib: u64,
    /// Host-local disks copied with it, MiB.
    disk_mib: u64,
    /// Dirty rate, MiB/s: measured, as `ferry migrate` on a fleet gives it to the engine.
    dirty_mib_s: f64,
    /// What must cross the link at least: non-zero memory and host-local disks, MiB.
    min_mib: f64,
}

struct Scenario {
    name: String,
    fleet: Fleet,
    moves: Vec<Mv>,
    /// Hosts being emptied (never targets).
    drained: Vec<String>,
    /// ferry places the moves itself when each starts (`to = "ANY"`, `spread`).
    ferry_places: bool,
}

/// What one policy's run gave.
#[derive(Debug, Clone, Default)]
struct Figures {
    makespan_s: f64,
    worst_downtime_ms: u64,
    bytes: u64,
    failures: usize,
    wall_s: f64,
}

const SEED: u64 = 2026;
const COMPLETION_S_PER_GIB: f64 = 150.0;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[(usize, usize)] = if quick { &[(100, 1000)] } else { &[(100, 1000), (1000, 10_000)] };
    let mut scenarios = Vec::new();
    for &(hosts, vms) in sizes {
        scenarios.push(host_drain(hosts, vms));
        scenarios.push(rack_drain(hosts, vms));
        scenarios.push(rebalance(hosts, vms));
    }
    println!("Scheduling policies on simulated fleets (virtual time; same moves and migration options; targets as the bench's doc says)");
    println!(
        "{:<36} {:<30} {:>11} {:>7} {:>10} {:>11} {:>8} {:>11} {:>8}",
        "scenario", "policy", "makespan", "× LB", "worst dt", "sent GiB", "failed", "ferry/this", "wall"
    );
    let mut verdicts = Vec::new();
    for s in &scenarios {
        let lb = lower_bound(s);
        let title = format!("{} ({} moves)", s.name, s.moves.len());
        println!("{title:<36} {:<30} {:>9.1} s {:>7.2}", "lower bound", lb, 1.0);
        let ferry = run_ferry(s, 2);
        let mut rows = vec![("ferry (2 out, 2 in)".to_string(), ferry.clone())];
        for policy in [Baseline::Nova, Baseline::KubeVirt, Baseline::Hbal, Baseline::Proxmox] {
            rows.push((policy.name().to_string(), run_baseline(s, policy)));
        }
        // Not the default: what more concurrency per host does for ferry.
        if s.fleet.hosts.len() <= 100 {
            rows.push(("ferry (4 out, 4 in), for info".to_string(), run_ferry(s, 4)));
        }
        // A diagnosis: ferry's scheduler deciding, its migrations not capped at link shares.
        rows.push((Baseline::FerryUncapped.name().to_string(), run_baseline(s, Baseline::FerryUncapped)));
        let mut fastest_baseline: Option<(String, f64)> = None;
        for (name, f) in &rows {
            println!(
                "{:<36} {:<30} {:>9.1} s {:>7.2} {:>7} ms {:>11.1} {:>8} {:>11.2} {:>6.1} s",
                "",
                name,
                f.makespan_s,
                f.makespan_s / lb,
                f.worst_downtime_ms,
                f.bytes as f64 / (1u64 << 30) as f64,
                f.failures,
                ferry.makespan_s / f.makespan_s,
                f.wall_s
            );
            // A baseline that left more VMs unmoved did not do the same job.
            let comparable = !name.starts_with("ferry") && f.failures <= ferry.failures;
            if comparable && fastest_baseline.as_ref().is_none_or(|(_, m)| f.makespan_s < *m) {
                fastest_baseline = Some((name.clone(), f.makespan_s));
            }
        }
        verdicts.push((title, ferry.makespan_s / lb, ferry.makespan_s, fastest_baseline));
    }
    println!();
    println!("goal: ferry (2 out, 2 in) ≤ 1.15 × lower bound, and no slower than any baseline that moved as many VMs");
    for (title, ratio, ferry, fastest) in verdicts {
        let versus = match fastest {
            Some((name, m)) if m < ferry => format!("{name} is FASTER ({m:.1} s vs {ferry:.1} s)"),
            Some((name, m)) => format!("no baseline faster (next: {name}, {m:.1} s)"),
            None => "no baseline moved as many VMs".to_string(),
        };
        println!("  {title:<36} ferry {ratio:.2} × LB ({}), {versus}", if ratio <= 1.15 { "met" } else { "MISSED" });
    }
}

// ---------------------------------------------------------------------- scenarios

fn fleet(hosts: usize, vms: usize, fill: f64) -> Fleet {
    ferry_sim::generate(&GenOptions { hosts, vms, seed: SEED, link_mib_s: 1250, fill })
}

fn mv(fleet: &Fleet, i: usize, to: &str) -> Mv {
    let v = &fleet.vms[i];
    Mv {
        vm: v.name.clone(),
        uuid: fleet.uuid(i),
        from: v.host.clone(),
        to: to.to_string(),
        memory_mib: v.memory_mib,
        disk_mib: v.disk_mib,
        dirty_mib_s: v.dirty_mib_s,
        min_mib: v.nonzero_mib.unwrap_or(v.memory_mib as f64) + v.disk_mib as f64,
    }
}

/// Places every VM of `drained` hosts elsewhere, once, with ferry's placement (`spread`).
fn drain(name: String, fleet: Fleet, drained: Vec<String>) -> Scenario {
    let cluster = fleet.cluster();
    let inventory = inventory_of(&fleet);
    let leaving: Vec<usize> = (0..fleet.vms.len()).filter(|&i| drained.contains(&fleet.vms[i].host)).collect();
    let requests: Vec<Request> = leaving
        .iter()
        .map(|&i| Request { vm: fleet.vms[i].name.clone(), anti_affinity: None, candidates: None })
        .collect();
    let constraints = Constraints { allow_cross_group: false, unavailable: drained.clone(), explain: false };
    let decisions = placement::place(&cluster, &inventory, &[], &requests, &constraints, placement::Policy::Spread);
    let moves = leaving.iter().zip(decisions).filter_map(|(&i, d)| d.host.map(|h| mv(&fleet, i, &h))).collect();
    Scenario { name, fleet, moves, drained, ferry_places: false }
}

fn host_drain(hosts: usize, vms: usize) -> Scenario {
    let f = fleet(hosts, vms, 0.6);
    let drained = vec![f.hosts[0].name.clone()];
    drain(format!("host drain, {hosts} hosts"), f, drained)
}

fn rack_drain(hosts: usize, vms: usize) -> Scenario {
    let f = fleet(hosts, vms, 0.6);
    let drained: Vec<String> =
        f.hosts.iter().filter(|h| h.tags.iter().any(|t| t == "rack-01")).map(|h| h.name.clone()).collect();
    drain(format!("rack drain, {hosts} hosts"), f, drained)
}

fn rebalance(hosts: usize, vms: usize) -> Scenario {
    let mut f = fleet(hosts, vms, 0.3);
    let half = hosts / 2;
    let index: HashMap<String, usize> = f.hosts.iter().enumerate().map(|(i, h)| (h.name.clone(), i)).collect();
    for v in &mut f.vms {
        let h = index[&v.host];
        if h >= half {
            v.host = f.hosts[h - half].name.clone();
        }
    }
    let mut turn = vec![0usize; half];
    let mut moves = Vec::new();
    for i in 0..f.vms.len() {
        let h = index[&f.vms[i].host];
        turn[h] += 1;
        if turn[h].is_multiple_of(2) {
            let to = half + (h + turn[h] / 2) % (hosts - half);
            moves.push(mv(&f, i, &f.hosts[to].name.clone()));
        }
    }
    Scenario { name: format!("rebalance, {hosts} hosts"), fleet: f, moves, drained: Vec::new(), ferry_places: true }
}

/// The fleet's inventory at the start, from a simulator (which needs a runtime).
fn inventory_of(fleet: &Fleet) -> ferry_model::Inventory {
    ferry_sim::runtime().expect("a runtime").block_on(async { SimDriver::new(fleet).inventory().await })
}

/// The most any link must carry at its speed, or the longest move alone.
fn lower_bound(s: &Scenario) -> f64 {
    let link: HashMap<&str, f64> = s.fleet.hosts.iter().map(|h| (h.name.as_str(), h.link_mib_s as f64)).collect();
    let mut out: BTreeMap<&str, f64> = BTreeMap::new();
    let mut inb: BTreeMap<&str, f64> = BTreeMap::new();
    let mut longest = 0.0_f64;
    for m in &s.moves {
        *out.entry(&m.from).or_default() += m.min_mib;
        if !s.ferry_places {
            *inb.entry(&m.to).or_default() += m.min_mib;
        }
        let path = link[m.from.as_str()].min(link[m.to.as_str()]);
        longest = longest.max(PER_MIGRATION_OVERHEAD_S + JOB_SETUP_S + m.min_mib / path);
    }
    let busiest = out.iter().chain(inb.iter()).map(|(h, mib)| mib / link[h]).fold(0.0, f64::max);
    busiest.max(longest)
}

// ---------------------------------------------------------------------- ferry

/// The scenario through the real engine (scheduler, journal with the virtual clock).
fn run_ferry(s: &Scenario, per_host: usize) -> Figures {
    let wall = Instant::now();
    let db = std::env::temp_dir().join(format!("ferry-sched-bench-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let runtime = ferry_sim::runtime().expect("a runtime");
    let mut figures = runtime.block_on(async {
        let start = s.fleet.start_unix();
        let config = JournalConfig {
            clock: JournalClock::Virtual { unix_ms: start * 1000 },
            durability: ferry_journal::Durability::Normal,
            ..JournalConfig::default()
        };
        let journal = Journal::open_path(&db, &config).await.expect("a journal");
        let driver = Arc::new(SimDriver::new(&s.fleet));
        let inventory = driver.inventory().await;
        let new_run = NewRun {
            plan_name: s.name.clone(),
            plan: serde_json::json!({}),
            cluster: serde_json::json!({}),
            kind: RunKind::Drain,
            parent: None,
        };
        let run = journal.create_run(&new_run).await.expect("a run");
        let specs: Vec<MoveSpec> = s
            .moves
            .iter()
            .enumerate()
            .map(|(i, m)| MoveSpec {
                vm: m.vm.clone(),
                uuid: m.uuid.clone(),
                from: m.from.clone(),
                to: if s.ferry_places { Target::Any } else { Target::Host(m.to.clone()) },
                group: None,
                order: i,
                priority: 0,
                memory_mib: m.memory_mib,
                running: true,
                cold: false,
                dirty_mib_s: Some(m.dirty_mib_s),
                estimate: None,
            })
            .collect();
        let new_moves: Vec<NewMove> = specs
            .iter()
            .map(|m| NewMove {
                vm: m.vm.clone(),
                uuid: m.uuid.clone(),
                source: m.from.clone(),
                target: match &m.to {
                    Target::Host(h) => Some(h.clone()),
                    Target::Any => None,
                },
                group: None,
                seq: m.order as i64,
                priority: 0,
                status: Status::Pending,
                message: String::new(),
            })
            .collect();
        journal.add_moves(&run.id, &new_moves).await.expect("moves");
        let settings = RunSettings {
            run_id: run.id.clone(),
            owner: "bench".into(),
            policy: Policy {
                completion_timeout_per_gib_s: COMPLETION_S_PER_GIB as u64,
                placement: if s.ferry_places { "spread".into() } else { Policy::default().placement },
                ..Policy::default()
            },
            limits: Limits { cluster: 100_000, per_source: per_host, per_target: per_host },
            deadline: None,
            resume_from: None,
            unavailable: s.drained.clone(),
            manual: Manual::default(),
        };
        let started = tokio::time::Instant::now();
        let engine = Engine::new(driver, journal.clone(), s.fleet.cluster(), inventory, settings, specs)
            .with_clock(Clock::starting_at(start as f64));
        let (_commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let drain_events = tokio::spawn(async move { while event_rx.recv().await.is_some() {} });
        let end = engine.run(command_rx, event_tx).await.expect("the run ends");
        let makespan_s = started.elapsed().as_secs_f64();
        let _ = drain_events.await;
        journal.close().await;
        let mut f = Figures { makespan_s, ..Figures::default() };
        for m in &end.moves {
            if !m.status.is_success() {
                f.failures += 1;
            }
            if let Some(r) = &m.report {
                tally(&mut f, r, m.status.is_success());
            }
        }
        f
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    figures.wall_s = wall.elapsed().as_secs_f64();
    figures
}

fn tally(f: &mut Figures, r: &MoveReport, success: bool) {
    f.bytes += r.transferred_bytes;
    if success {
        f.worst_downtime_ms = f.worst_downtime_ms.max(r.downtime_ms.unwrap_or(0));
    }
}

// ---------------------------------------------------------------------- baselines

#[derive(Debug, Clone, Copy, PartialEq)]
enum Baseline {
    Nova,
    KubeVirt,
    Hbal,
    Proxmox,
    /// ferry's scheduler (2 out, 2 in, sliding window, its order) without bandwidth caps:
    /// what the caps cost.
    FerryUncapped,
}

impl Baseline {
    fn name(self) -> &'static str {
        match self {
            Baseline::Nova => "Nova (1 per source)",
            Baseline::KubeVirt => "KubeVirt (5/cluster, 2/node)",
            Baseline::Hbal => "hbal (waves)",
            Baseline::Proxmox => "Proxmox (1 target, 4 workers)",
            Baseline::FerryUncapped => "ferry's order, no caps (diag.)",
        }
    }
}

/// Proxmox's `migrateall`: each source's VMs to one target, the emptiest host (by memory)
/// not drained and not chosen yet.
fn proxmox_targets(s: &Scenario) -> Vec<Mv> {
    let mut used: HashMap<&str, u64> = HashMap::new();
    for v in &s.fleet.vms {
        *used.entry(v.host.as_str()).or_default() += v.memory_mib;
    }
    let mut chosen: HashMap<String, String> = HashMap::new();
    let mut taken: Vec<String> = s.drained.clone();
    for m in &s.moves {
        if chosen.contains_key(&m.from) {
            continue;
        }
        let target = s
            .fleet
            .hosts
            .iter()
            .filter(|h| h.name != m.from && !taken.contains(&h.name) && !s.moves.iter().any(|o| o.from == h.name))
            .max_by_key(|h| {
                (
                    h.memory_mib.saturating_sub(used.get(h.name.as_str()).copied().unwrap_or(0)),
                    std::cmp::Reverse(h.name.clone()),
                )
            })
            .map(|h| h.name.clone())
            .unwrap_or_else(|| m.to.clone());
        taken.push(target.clone());
        chosen.insert(m.from.clone(), target);
    }
    s.moves.iter().map(|m| Mv { to: chosen[&m.from].clone(), ..m.clone() }).collect()
}

fn run_baseline(s: &Scenario, policy: Baseline) -> Figures {
    let wall = Instant::now();
    let moves = if policy == Baseline::Proxmox { proxmox_targets(s) } else { s.moves.clone() };
    let runtime = ferry_sim::runtime().expect("a runtime");
    let mut figures = runtime.block_on(async {
        let driver = Arc::new(SimDriver::new(&s.fleet));
        let started_at = tokio::time::Instant::now();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(usize, Result<MoveReport, MoveError>)>();
        let mut started = vec![false; moves.len()];
        let mut outbound: HashMap<&str, usize> = HashMap::new();
        let mut flying = 0usize;
        let mut left = moves.len();
        let mut f = Figures::default();
        let items = moves
            .iter()
            .map(|m| ferry_scheduler::Item {
                vm: m.vm.clone(),
                from: m.from.clone(),
                to: Target::Host(m.to.clone()),
                group: None,
                order: 0,
                priority: 0,
                memory_mib: m.memory_mib,
                disk_mib: m.disk_mib,
            })
            .collect();
        let config = ferry_scheduler::Config {
            limits: Limits { cluster: 100_000, per_source: 2, per_target: 2 },
            ..Default::default()
        };
        let mut scheduler = ferry_scheduler::Scheduler::new(items, config);
        while left > 0 {
            let mut starts = Vec::new();
            match policy {
                Baseline::FerryUncapped => {
                    starts = scheduler.decide(0.0, |_, _| None).starts.into_iter().map(|s| s.item).collect();
                }
                Baseline::Hbal => {
                    if flying == 0 {
                        // The next jobset: moves that share no host with another of the set.
                        let mut busy: Vec<&str> = Vec::new();
                        for (i, m) in moves.iter().enumerate() {
                            if !started[i] && !busy.contains(&m.from.as_str()) && !busy.contains(&m.to.as_str()) {
                                busy.push(&m.from);
                                busy.push(&m.to);
                                starts.push(i);
                            }
                        }
                    }
                }
                Baseline::Nova | Baseline::KubeVirt | Baseline::Proxmox => {
                    let (cluster, per_source) = match policy {
                        Baseline::Nova => (usize::MAX, 1),
                        Baseline::KubeVirt => (5, 2),
                        _ => (usize::MAX, 4),
                    };
                    let mut now_flying = flying;
                    for (i, m) in moves.iter().enumerate() {
                        if now_flying >= cluster {
                            break;
                        }
                        let out = outbound.get(m.from.as_str()).copied().unwrap_or(0);
                        if !started[i] && out < per_source {
                            *outbound.entry(&m.from).or_default() += 1;
                            now_flying += 1;
                            starts.push(i);
                        }
                    }
                }
            }
            for i in starts {
                started[i] = true;
                flying += 1;
                if policy == Baseline::Hbal {
                    *outbound.entry(&moves[i].from).or_default() += 1;
                }
                let (driver, done, m) = (driver.clone(), done_tx.clone(), moves[i].clone());
                tokio::spawn(async move {
                    let outcome = migrate(&driver, &m).await;
                    let _ = done.send((i, outcome));
                });
            }
            let Some((i, outcome)) = done_rx.recv().await else { break };
            scheduler.finished(i, if outcome.is_ok() { Status::Success } else { Status::FailureWait });
            flying -= 1;
            left -= 1;
            if let Some(n) = outbound.get_mut(moves[i].from.as_str()) {
                *n -= 1;
            }
            match outcome {
                Ok(report) => tally(&mut f, &report, true),
                Err(MoveError::Transfer { report, .. }) => {
                    f.failures += 1;
                    tally(&mut f, &report, false);
                }
                Err(_) => f.failures += 1,
            }
        }
        f.makespan_s = started_at.elapsed().as_secs_f64();
        f
    });
    figures.wall_s = wall.elapsed().as_secs_f64();
    figures
}

/// One live migration with the options every policy shares, aborted after the completion
/// timeout.
async fn migrate(driver: &SimDriver, m: &Mv) -> Result<MoveReport, MoveError> {
    let request = MoveRequest {
        vm: m.uuid.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        run_id: "bench".into(),
        delete_source_volumes: false,
        copies: Vec::new(),
    };
    let options = LiveOptions { auto_converge: true, ..LiveOptions::default() };
    let mut migration = driver.migrate_live(request, options).await?;
    let timeout = Duration::from_secs_f64((COMPLETION_S_PER_GIB * m.memory_mib as f64 / 1024.0).max(60.0));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut sampling = true;
    loop {
        tokio::select! {
            biased;
            outcome = &mut migration.outcome => {
                return outcome.unwrap_or_else(|_| Err(MoveError::init(ferry_driver::ErrorKind::Internal, "no outcome")));
            }
            sample = migration.progress.recv(), if sampling => sampling = sample.is_some(),
            _ = &mut deadline => {
                let _ = migration.controls.send(Control::Abort);
                deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
        }
    }
}
