//! A simulated drain at fleet scale: 10,000 moves out of 1,000 source hosts onto 250 targets
//! (`ANY`, placed by a trivial closure: the next target with room), one in ten in a group of
//! two, every host with a 1,000 MiB/s link. Migrations take 5–60 simulated seconds and
//! finish in time order; one in twenty fails.
//!
//! Prints the time spent in the scheduler — every `decide` and `finished` call — in total and
//! per call. Asserts nothing about time.
//! Run: `cargo bench -p ferry-scheduler --bench schedule`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use ferry_model::Status;
use ferry_plan::{Limits, Target};
use ferry_scheduler::{Config, Item, Scheduler};

const SOURCES: usize = 1_000;
const TARGETS: usize = 250;
const PER_SOURCE: usize = 10;
const LIMITS: Limits = Limits { cluster: 200, per_source: 2, per_target: 2 };

fn main() {
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    let targets: Vec<String> = (0..TARGETS).map(|t| format!("t{t:03}")).collect();
    let mut items = Vec::with_capacity(SOURCES * PER_SOURCE);
    for s in 0..SOURCES {
        for k in 0..PER_SOURCE {
            let pair = k < 2 && s % 5 == 0;
            items.push(Item {
                vm: format!("vm{s:04}-{k}"),
                from: format!("s{s:04}"),
                to: Target::Any,
                group: pair.then(|| format!("pair{s:04}")),
                order: k,
                priority: 0,
                memory_mib: 512 << next(6),
                disk_mib: 0,
            });
        }
    }
    let links = items.iter().map(|i| i.from.clone()).chain(targets.iter().cloned()).map(|h| (h, 1_000.0)).collect();
    let n = items.len();
    let mut scheduler = Scheduler::new(items, Config { limits: LIMITS, links, ..Config::default() });

    let (mut decide, mut finish) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    let (mut starts, mut retunes, mut placements, mut cursor) = (0, 0, 0u64, 0);
    let mut events = BinaryHeap::new();
    let mut now = 0.0;
    loop {
        let clock = Instant::now();
        let d = scheduler.decide(now, |_, view| {
            placements += 1;
            let found = (0..TARGETS).map(|k| (cursor + k) % TARGETS).find(|&t| view.has_room(&targets[t]))?;
            cursor = found + 1;
            Some(targets[found].clone())
        });
        decide.push(clock.elapsed());
        starts += d.starts.len();
        retunes += d.retunes.len();
        for start in d.starts {
            let at = now + 5.0 + next(56) as f64;
            events.push(Reverse(((at * 1000.0) as u64, start.item)));
        }
        let Some(Reverse((at, item))) = events.pop() else { break };
        now = at as f64 / 1000.0;
        let status = if next(20) == 0 { Status::FailureWait } else { Status::Success };
        let clock = Instant::now();
        scheduler.finished(item, status);
        finish.push(clock.elapsed());
    }

    let total: Duration = decide.iter().chain(&finish).sum();
    println!(
        "drain: {n} moves, {SOURCES} sources -> {TARGETS} targets (ANY), limits cluster {} per_source {} per_target {}",
        LIMITS.cluster, LIMITS.per_source, LIMITS.per_target
    );
    println!("  {starts} started, {retunes} bandwidth retunes, {placements} placement calls");
    println!("  simulated makespan {now:.0} s, every move ended: {}", scheduler.is_done());
    println!("  scheduler time, all calls: {:.1} ms", total.as_secs_f64() * 1e3);
    report("decide", &mut decide);
    report("finished", &mut finish);
}

fn report(name: &str, times: &mut [Duration]) {
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let avg = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    let at = |q: f64| times.get(((times.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
    println!(
        "  {name:>8}: {:>6} calls, median {:.2} µs, avg {:.2} µs, p99 {:.2} µs, max {:.1} µs",
        times.len(),
        us(at(0.5)),
        us(avg),
        us(at(0.99)),
        us(at(1.0)),
    );
}
