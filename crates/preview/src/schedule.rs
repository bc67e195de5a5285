//! The run's makespan as ferry's own scheduler will run it, in virtual time: the
//! scheduler (`ferry-scheduler`, the engine's) decides what starts and what bandwidth each
//! migration gets; each migration's time at that bandwidth comes from the estimate. Pure.
//!
//! A migration progresses at the rate its current cap gives: when the scheduler retunes
//! the caps (a migration ended, its link's shares changed), what is left of each migration
//! goes on at the new cap's rate. Every migration is taken to succeed, and to send from its
//! start (its fixed costs are in its time, at every cap).

use std::collections::HashMap;

use ferry_model::Status;
use ferry_plan::Limits;
use ferry_scheduler::{Config, Item, Scheduler};

/// One move of the run: the scheduler's item, its target a host (placed by the preview), and
/// its time at a bandwidth (MiB/s; infinite when its links do not limit it).
pub struct Timed<'a> {
    /// The move, as the scheduler takes it, with `to` a host (an `ANY` one is never placed).
    pub item: Item,
    /// Seconds it takes at a bandwidth.
    pub seconds_at: Box<dyn Fn(f64) -> f64 + 'a>,
}

/// What the virtual run says.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// When the last move ends, s; infinite when one never does.
    pub makespan_s: f64,
    /// When each move starts, s from the run's start, in the order given; `None` for one
    /// the scheduler never started.
    pub starts: Vec<Option<f64>>,
}

/// Runs `moves` under `limits` on hosts whose links are `links` (MiB/s), in virtual time.
pub fn schedule(moves: Vec<Timed<'_>>, limits: Limits, links: HashMap<String, f64>) -> Scheduled {
    let mut starts = vec![None; moves.len()];
    if moves.is_empty() {
        return Scheduled { makespan_s: 0.0, starts };
    }
    let (items, seconds_at): (Vec<Item>, Vec<_>) = moves.into_iter().map(|t| (t.item, t.seconds_at)).unzip();
    let mut scheduler = Scheduler::new(items, Config { limits, links, deadline: None, resume_from: None });
    // Per move in flight: the fraction of it done, and its rate (fraction per second).
    let mut flight: HashMap<usize, (f64, f64)> = HashMap::new();
    let rate = |item: usize, cap: Option<f64>| 1.0 / seconds_at[item](cap.unwrap_or(f64::INFINITY)).max(1e-9);
    let mut now = 0.0_f64;
    loop {
        // Decide until nothing more starts: a start marks the move sending, which may retune.
        loop {
            // Every target is placed already: the scheduler never asks.
            let decisions = scheduler.decide(now, |_, _| None);
            for r in &decisions.retunes {
                if let Some(f) = flight.get_mut(&r.item) {
                    f.1 = rate(r.item, Some(r.bandwidth_mib_s));
                }
            }
            if decisions.starts.is_empty() {
                break;
            }
            for s in decisions.starts {
                starts[s.item] = Some(now);
                flight.insert(s.item, (0.0, rate(s.item, s.bandwidth_mib_s)));
                scheduler.set_sending(s.item, true);
            }
        }
        if scheduler.is_done() || flight.is_empty() {
            break;
        }
        // The next move to end, and everyone's progress until then.
        let (&next, &(done, speed)) =
            flight.iter().min_by(|a, b| ((1.0 - a.1 .0) / a.1 .1).total_cmp(&((1.0 - b.1 .0) / b.1 .1))).expect("one");
        let step = (1.0 - done) / speed;
        if !step.is_finite() {
            return Scheduled { makespan_s: f64::INFINITY, starts };
        }
        now += step;
        for f in flight.values_mut() {
            f.0 += f.1 * step;
        }
        flight.remove(&next);
        scheduler.finished(next, Status::Success);
    }
    Scheduled { makespan_s: now, starts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_plan::Target;

    fn item(vm: &str, from: &str, to: &str, memory_mib: u64) -> Item {
        Item {
            vm: vm.into(),
            from: from.into(),
            to: Target::Host(to.into()),
            group: None,
            order: 0,
            priority: 0,
            memory_mib,
            disk_mib: 0,
        }
    }

    /// A move of `mib` over whatever bandwidth it gets, plus `fixed` seconds.
    fn timed<'a>(item: Item, mib: f64, fixed: f64) -> Timed<'a> {
        Timed { item, seconds_at: Box::new(move |bw| fixed + mib / bw) }
    }

    #[test]
    fn two_moves_sharing_a_source_link_take_turns_with_its_bandwidth() {
        let links = HashMap::from([("a".to_owned(), 100.0), ("b".to_owned(), 1000.0), ("c".to_owned(), 1000.0)]);
        let limits = Limits { cluster: 8, per_source: 2, per_target: 2 };
        // Two of 1,000 MiB leaving a over 100 MiB/s: together 20 s, whatever the split.
        let moves =
            vec![timed(item("v1", "a", "b", 1000), 1000.0, 0.0), timed(item("v2", "a", "c", 1000), 1000.0, 0.0)];
        let run = schedule(moves, limits.clone(), links.clone());
        assert!((run.makespan_s - 20.0).abs() < 0.5, "{run:?}");
        assert_eq!(run.starts, vec![Some(0.0), Some(0.0)]);
        // One at a time: the second starts when the first ends, 10 s each.
        let one = Limits { per_source: 1, ..limits };
        let moves = vec![timed(item("v1", "a", "b", 1000), 1000.0, 0.0), timed(item("v2", "a", "c", 900), 900.0, 0.0)];
        let run = schedule(moves, one, links);
        assert!((run.makespan_s - 19.0).abs() < 1e-6, "{run:?}");
        assert_eq!(run.starts[0], Some(0.0));
        assert!((run.starts[1].expect("started") - 10.0).abs() < 1e-6, "{run:?}");
    }

    #[test]
    fn moves_from_different_sources_each_get_their_own_link() {
        let links = HashMap::from([("a".to_owned(), 100.0), ("b".to_owned(), 100.0), ("c".to_owned(), 1000.0)]);
        let limits = Limits { cluster: 8, per_source: 2, per_target: 2 };
        let moves = vec![timed(item("v1", "a", "c", 500), 500.0, 1.0), timed(item("v2", "b", "c", 500), 500.0, 1.0)];
        let run = schedule(moves, limits, links);
        assert!((run.makespan_s - 6.0).abs() < 1e-6, "{run:?}");
    }

    #[test]
    fn a_move_that_never_ends_makes_the_run_endless() {
        let links = HashMap::from([("a".to_owned(), 100.0)]);
        let moves = vec![Timed { item: item("v1", "a", "b", 10), seconds_at: Box::new(|_| f64::INFINITY) }];
        assert_eq!(schedule(moves, Limits::default(), links).makespan_s, f64::INFINITY);
    }
}
