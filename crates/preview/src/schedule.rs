//! The run's makespan as ferry's own scheduler will run it, in virtual time: the
//! scheduler (`ferry-scheduler`, the engine's) decides what starts and what bandwidth each
//! migration gets; each migration's time at that bandwidth comes from the estimate. Pure.
//!
//! A migration progresses at the rate its current cap gives: when the scheduler retunes
//! the caps (a migration ended, its link's shares changed), what is left of each migration
//! goes on at the new cap's rate. Every migration is taken to succeed, and to send from its
//! start (its fixed costs before the switch-over are in its time, at every cap). As in the
//! engine, a live move gives its slots to the next moves at its switch-over; it ends its
//! `tail_s` later (the source's teardown, verification), which only the run's end waits for.

use std::collections::{BTreeMap, HashMap};

use ferry_model::{ClusterSpec, Status};
use ferry_plan::Limits;
use ferry_scheduler::{Config, Item, Scheduler, View};

use crate::placement::{self, Constraints, Fixed, Placer, Request};

/// Seconds a move takes to a target (host name) at a bandwidth (MiB/s).
pub type SecondsAt<'a> = Box<dyn Fn(&str, f64) -> f64 + 'a>;

/// One move of the run: the scheduler's item, its time in its slots to a target at a
/// bandwidth (MiB/s; infinite when its links do not limit it), and its time after them.
pub struct Timed<'a> {
    /// The move, as the scheduler takes it (an `ANY` one is placed as it starts).
    pub item: Item,
    /// Seconds from its start to its switch-over (a cold move: to its end), to a target at a
    /// bandwidth.
    pub seconds_at: SecondsAt<'a>,
    /// Seconds from its switch-over to its end, its slots free.
    pub tail_s: f64,
}

/// What the virtual run says.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// When the last move ends, s; infinite when one never does.
    pub makespan_s: f64,
    /// When each move starts, s from the run's start, in the order given; `None` for one
    /// the scheduler never started.
    pub starts: Vec<Option<f64>>,
    /// Where each started move went, in the order given.
    pub targets: Vec<Option<String>>,
}

/// Where a move to `ANY` goes as it starts, as the engine places it: the placement policy's
/// choice among the hosts with a free inbound slot now (best fit would pack a host whose
/// slots are taken, and the move should go to the next best rather than wait), `fixed`
/// saying where every other VM is or will be.
pub fn place_as_it_starts(
    placer: &Placer,
    cluster: &ClusterSpec,
    fixed: &[Fixed],
    item: &Item,
    view: &View,
    constraints: &Constraints,
    policy: placement::Policy,
) -> Option<String> {
    let request = Request { vm: item.vm.clone(), anti_affinity: item.group.clone(), candidates: None };
    let mut constraints = constraints.clone();
    constraints.unavailable.extend(cluster.hosts.iter().filter(|h| !view.has_room(&h.name)).map(|h| h.name.clone()));
    let decision = placer.place(fixed, &[request], &constraints, policy);
    decision.into_iter().next().and_then(|d| d.host).filter(|h| view.has_room(h))
}

/// What happens next in the virtual run.
enum Event {
    /// A move in its slots switches over (index of the move).
    SwitchOver(usize),
    /// A switched-over move ends (index into the tails).
    End(usize),
}

/// Runs `moves` under `limits` on hosts whose links are `links` (MiB/s), in virtual time;
/// `place` chooses the target of a move to `ANY` as it starts (as [`Scheduler::decide`]).
pub fn schedule(
    moves: Vec<Timed<'_>>,
    limits: Limits,
    links: HashMap<String, f64>,
    mut place: impl FnMut(&Item, &View) -> Option<String>,
) -> Scheduled {
    let mut starts = vec![None; moves.len()];
    let mut targets = vec![None; moves.len()];
    if moves.is_empty() {
        return Scheduled { makespan_s: 0.0, starts, targets };
    }
    let (items, timing): (Vec<Item>, Vec<_>) = moves.into_iter().map(|t| (t.item, (t.seconds_at, t.tail_s))).unzip();
    let mut scheduler = Scheduler::new(items, Config { limits, links, deadline: None, resume_from: None });
    // Per move in its slots: the fraction of it done, and its rate (fraction per second);
    // ordered, so that ties end the same way every time.
    let mut flight: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    // Per move switched over: when it ends.
    let mut tails: Vec<(usize, f64)> = Vec::new();
    let rate =
        |item: usize, to: &str, cap: Option<f64>| 1.0 / (timing[item].0)(to, cap.unwrap_or(f64::INFINITY)).max(1e-9);
    let mut now = 0.0_f64;
    let mut makespan_s = 0.0_f64;
    loop {
        // Decide until nothing more starts: a start marks the move sending, which may retune.
        loop {
            let decisions = scheduler.decide(now, &mut place);
            for r in &decisions.retunes {
                if let (Some(f), Some(to)) = (flight.get_mut(&r.item), &targets[r.item]) {
                    f.1 = rate(r.item, to, Some(r.bandwidth_mib_s));
                }
            }
            if decisions.starts.is_empty() {
                break;
            }
            for s in decisions.starts {
                starts[s.item] = Some(now);
                flight.insert(s.item, (0.0, rate(s.item, &s.to, s.bandwidth_mib_s)));
                targets[s.item] = Some(s.to);
                scheduler.set_sending(s.item, true);
            }
        }
        if scheduler.is_done() {
            break;
        }
        // The next event: a move in its slots switching over, or one switched over ending.
        let switches = flight.iter().map(|(&i, &(done, speed))| (now + (1.0 - done) / speed, Event::SwitchOver(i)));
        let ends = tails.iter().enumerate().map(|(k, &(_, at))| (at, Event::End(k)));
        let Some((at, event)) = switches.chain(ends).min_by(|a, b| a.0.total_cmp(&b.0)) else { break };
        if !at.is_finite() {
            return Scheduled { makespan_s: f64::INFINITY, starts, targets };
        }
        let step = (at - now).max(0.0);
        now += step;
        for f in flight.values_mut() {
            f.0 += f.1 * step;
        }
        match event {
            Event::SwitchOver(item) => {
                flight.remove(&item);
                scheduler.switched_over(item);
                tails.push((item, now + timing[item].1.max(0.0)));
            }
            Event::End(k) => {
                let (item, _) = tails.swap_remove(k);
                makespan_s = makespan_s.max(now);
                scheduler.finished(item, Status::Success);
            }
        }
    }
    Scheduled { makespan_s, starts, targets }
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

    /// Every move of these tests names its target.
    fn no_any(_: &Item, _: &View) -> Option<String> {
        None
    }

    /// A move of `mib` over whatever bandwidth it gets, plus `fixed` seconds, ending at once.
    fn timed<'a>(item: Item, mib: f64, fixed: f64) -> Timed<'a> {
        Timed { item, seconds_at: Box::new(move |_, bw| fixed + mib / bw), tail_s: 0.0 }
    }

    #[test]
    fn two_moves_sharing_a_source_link_take_turns_with_its_bandwidth() {
        let links = HashMap::from([("a".to_owned(), 100.0), ("b".to_owned(), 1000.0), ("c".to_owned(), 1000.0)]);
        let limits = Limits { cluster: 8, per_source: 2, per_target: 2 };
        // Two of 1,000 MiB leaving a over 100 MiB/s: together 20 s, whatever the split.
        let moves =
            vec![timed(item("v1", "a", "b", 1000), 1000.0, 0.0), timed(item("v2", "a", "c", 1000), 1000.0, 0.0)];
        let run = schedule(moves, limits.clone(), links.clone(), no_any);
        assert!((run.makespan_s - 20.0).abs() < 0.5, "{run:?}");
        assert_eq!(run.starts, vec![Some(0.0), Some(0.0)]);
        // One at a time: the second starts when the first ends, 10 s each.
        let one = Limits { per_source: 1, ..limits };
        let moves = vec![timed(item("v1", "a", "b", 1000), 1000.0, 0.0), timed(item("v2", "a", "c", 900), 900.0, 0.0)];
        let run = schedule(moves, one, links, no_any);
        assert!((run.makespan_s - 19.0).abs() < 1e-6, "{run:?}");
        assert_eq!(run.starts[0], Some(0.0));
        assert!((run.starts[1].expect("started") - 10.0).abs() < 1e-6, "{run:?}");
    }

    #[test]
    fn moves_from_different_sources_each_get_their_own_link() {
        let links = HashMap::from([("a".to_owned(), 100.0), ("b".to_owned(), 100.0), ("c".to_owned(), 1000.0)]);
        let limits = Limits { cluster: 8, per_source: 2, per_target: 2 };
        let moves = vec![timed(item("v1", "a", "c", 500), 500.0, 1.0), timed(item("v2", "b", "c", 500), 500.0, 1.0)];
        let run = schedule(moves, limits, links, no_any);
        assert!((run.makespan_s - 6.0).abs() < 1e-6, "{run:?}");
    }

    #[test]
    fn a_move_that_never_ends_makes_the_run_endless() {
        let links = HashMap::from([("a".to_owned(), 100.0)]);
        let moves =
            vec![Timed { item: item("v1", "a", "b", 10), seconds_at: Box::new(|_, _| f64::INFINITY), tail_s: 1.0 }];
        assert_eq!(schedule(moves, Limits::default(), links, no_any).makespan_s, f64::INFINITY);
    }

    #[test]
    fn a_slot_is_free_at_the_switch_over_and_the_run_waits_for_the_last_tail() {
        let links = HashMap::from([("a".to_owned(), 100.0), ("b".to_owned(), 1000.0)]);
        let one = Limits { cluster: 8, per_source: 1, per_target: 1 };
        // 5 s in the slot, 2 s after it: the second starts at 5 s, switches over at 10 s and
        // ends at 12 s; the first's tail (5 to 7 s) does not hold it up.
        let with_tail =
            |vm: &str| Timed { item: item(vm, "a", "b", 500), seconds_at: Box::new(|_, bw| 500.0 / bw), tail_s: 2.0 };
        let run = schedule(vec![with_tail("v1"), with_tail("v2")], one, links, no_any);
        assert!((run.starts[1].expect("started") - 5.0).abs() < 1e-6, "{run:?}");
        assert!((run.makespan_s - 12.0).abs() < 1e-6, "{run:?}");
    }
}
