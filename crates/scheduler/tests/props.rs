//! Scheduler invariants over random small runs, each simulated to its end with moves
//! finishing in a random order, some failing, sometimes a deadline or an operator's stop.
//!
//! Every check recomputes what it needs from the simulation's own books, independently of
//! the scheduler: limits never exceeded, no VM started twice, group members one at a time
//! and in order, every move ends once, bandwidth caps as the links say, and no idle slot
//! (nothing eligible left waiting while a slot, its source and a target have room).

use std::collections::HashMap;

use ferry_model::Status;
use ferry_plan::{Limits, Target};
use ferry_scheduler::{Config, Deadline, Decisions, Item, Scheduler};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Source, target (`None`: ANY), group (0: none), order, priority, memory (× 512 MiB),
/// placement candidates, blind placement, status in the previous run.
type ItemSeed = (usize, Option<usize>, usize, usize, i64, u64, Vec<usize>, bool, Option<usize>);

#[derive(Debug, Clone)]
struct Case {
    hosts: usize,
    limits: Limits,
    links: Vec<Option<u32>>,
    items: Vec<ItemSeed>,
    gated: bool,
    deadline: Option<u32>,
    stop_at: Option<u32>,
    seed: u64,
}

const PREVIOUS: [Status; 6] = [
    Status::Success,
    Status::SuccessCold,
    Status::FailureWait,
    Status::FailureInit,
    Status::SkippedTimeout,
    Status::Migrating,
];
const OUTCOMES: [Status; 5] =
    [Status::Success, Status::SuccessCold, Status::Success, Status::FailureWait, Status::FailureInit];

fn case() -> impl Strategy<Value = Case> {
    (1usize..=6).prop_flat_map(|hosts| {
        let item = (
            0..hosts,
            proptest::option::of(0..hosts),
            0usize..4,
            0usize..5,
            -1i64..=1,
            1u64..=8,
            proptest::collection::vec(0..hosts, 0..=3),
            proptest::bool::weighted(0.2),
            proptest::option::weighted(0.8, 0..PREVIOUS.len()),
        );
        (
            (1usize..=6, 1usize..=3, 1usize..=3),
            proptest::collection::vec(proptest::option::of(10u32..=1000), hosts),
            proptest::collection::vec(item, 0..=40),
            proptest::bool::weighted(0.2),
            proptest::option::weighted(0.2, 0u32..30),
            proptest::option::weighted(0.1, 0u32..30),
            any::<u64>(),
        )
            .prop_map(
                move |((cluster, per_source, per_target), links, items, gated, deadline, stop_at, seed)| Case {
                    hosts,
                    limits: Limits { cluster, per_source, per_target },
                    links,
                    items,
                    gated,
                    deadline,
                    stop_at,
                    seed,
                },
            )
    })
}

fn host(h: usize) -> String {
    format!("h{h}")
}

/// The simulation's own books.
struct Books<'a> {
    case: &'a Case,
    items: Vec<Item>,
    /// Members of each group, in order.
    groups: HashMap<String, Vec<usize>>,
    started: Vec<bool>,
    /// Target and current cap of each move in flight.
    running: HashMap<usize, (usize, Option<f64>)>,
    outbound: Vec<usize>,
    inbound: Vec<usize>,
    status: Vec<Option<Status>>,
    /// Moves in flight that are sending data.
    sending: std::collections::HashSet<usize>,
    /// Moves in flight, in the order they started.
    order: Vec<usize>,
    /// Moves in flight that switched over: they hold no slot.
    released: std::collections::HashSet<usize>,
}

impl Books<'_> {
    /// Moves in flight that hold slots.
    fn holding(&self) -> usize {
        self.running.len() - self.released.len()
    }

    fn fail(&self, what: String) -> TestCaseError {
        TestCaseError::fail(what)
    }

    /// Placement: the first candidate with room (blind: the first).
    fn place(&self, i: usize, has_room: impl Fn(usize) -> bool) -> Option<usize> {
        let (_, _, _, _, _, _, candidates, blind, _) = &self.case.items[i];
        candidates.iter().copied().find(|&h| *blind || has_room(h))
    }

    fn has_room(&self, h: usize) -> bool {
        self.inbound[h] < self.case.limits.per_target
    }

    /// Whether `i` may move now as far as its group goes: every earlier member succeeded,
    /// and none is in flight.
    fn group_allows(&self, i: usize) -> bool {
        self.earlier(i).iter().all(|&m| self.status[m].is_some_and(Status::is_success))
    }

    /// Whether an earlier member of `i`'s group ended without success.
    fn earlier_failed(&self, i: usize) -> bool {
        self.earlier(i).iter().any(|&m| self.status[m].is_some_and(|s| !s.is_success()))
    }

    fn earlier(&self, i: usize) -> &[usize] {
        let Some(g) = &self.items[i].group else { return &[] };
        let members = &self.groups[g];
        &members[..members.iter().position(|&m| m == i).unwrap_or(0)]
    }

    /// Caps as the links allow: a move crossing a link with a speed has a cap, no higher than
    /// its slowest link; the caps of the moves sending on a link add up to no more than it;
    /// and each move sending is held by a link those sending fill (none capped below what its
    /// links could give it). Within the scheduler's retune tolerance.
    fn check_caps(&self) -> Result<(), TestCaseError> {
        let tolerance = ferry_scheduler::RETUNE_MIN_CHANGE + 1e-9;
        let speed = |h: usize| self.case.links[h].map(f64::from);
        let ends = |i: usize| (self.case.items[i].0, self.running[&i].0);
        let mut load: HashMap<(usize, bool), f64> = HashMap::new();
        for (&i, &(_, cap)) in &self.running {
            let (from, to) = ends(i);
            let slowest = [speed(from), speed(to)].into_iter().flatten().min_by(f64::total_cmp);
            match (slowest, cap) {
                (None, None) => {}
                (Some(s), Some(c)) if c > 0.0 && c <= s * (1.0 + tolerance) => {}
                _ => return Err(self.fail(format!("{i} capped at {cap:?}, its slowest link is {slowest:?}"))),
            }
            if self.sending.contains(&i) {
                if let Some(c) = cap {
                    *load.entry((from, true)).or_default() += c;
                    *load.entry((to, false)).or_default() += c;
                }
            }
        }
        let full = |h: usize, out: bool| {
            speed(h).is_some_and(|s| load.get(&(h, out)).copied().unwrap_or(0.0) >= s * (1.0 - 2.0 * tolerance))
        };
        for (&(h, out), &l) in &load {
            if let Some(s) = speed(h) {
                if l > s * (1.0 + 2.0 * tolerance) {
                    return Err(self.fail(format!("h{h} carries {l} MiB/s of caps on a {s} MiB/s link")));
                }
            }
            let _ = out;
        }
        for &i in self.running.keys().filter(|i| self.sending.contains(i)) {
            let (from, to) = ends(i);
            if (speed(from).is_some() || speed(to).is_some()) && !full(from, true) && !full(to, false) {
                return Err(self.fail(format!("{i} sends under a cap no full link explains: {load:?}")));
            }
        }
        Ok(())
    }

    fn apply(&mut self, d: &Decisions, now: f64, in_flight_before: usize) -> Result<(), TestCaseError> {
        let limits = &self.case.limits;
        if self.case.deadline.is_some_and(|at| now >= f64::from(at)) && !d.starts.is_empty() {
            return Err(self.fail(format!("started {:?} after the deadline", d.starts)));
        }
        for start in &d.starts {
            let i = start.item;
            if self.started[i] || self.status[i].is_some() {
                return Err(self.fail(format!("{i} started twice or after it ended")));
            }
            if !self.group_allows(i) {
                return Err(self.fail(format!("{i} started before the earlier members of its group succeeded")));
            }
            if let Some(g) = &self.items[i].group {
                if self.groups[g].iter().any(|m| self.running.contains_key(m)) {
                    return Err(self.fail(format!("{i} started while another member of {g} is in flight")));
                }
            }
            let to: usize =
                start.to.trim_start_matches('h').parse().map_err(|_| self.fail(format!("bad host {}", start.to)))?;
            if let Target::Host(fixed) = &self.items[i].to {
                if *fixed != start.to {
                    return Err(self.fail(format!("{i} went to {} instead of {fixed}", start.to)));
                }
            }
            let from = self.case.items[i].0;
            self.started[i] = true;
            self.running.insert(i, (to, start.bandwidth_mib_s));
            self.order.push(i);
            self.outbound[from] += 1;
            self.inbound[to] += 1;
            if self.holding() > limits.cluster
                || self.outbound[from] > limits.per_source
                || self.inbound[to] > limits.per_target
            {
                return Err(self.fail(format!(
                    "limits exceeded by starting {i}: {} holding slots, h{from} sends {}, h{to} receives {}",
                    self.holding(),
                    self.outbound[from],
                    self.inbound[to]
                )));
            }
        }
        for retune in &d.retunes {
            match self.running.get_mut(&retune.item) {
                Some((_, cap)) if d.starts.iter().all(|s| s.item != retune.item) => *cap = Some(retune.bandwidth_mib_s),
                _ => return Err(self.fail(format!("retune of {} which is not a move in flight", retune.item))),
            }
        }
        for ended in &d.ended {
            let i = ended.item;
            if self.started[i] || self.status[i].is_some() {
                return Err(self.fail(format!("{i} ended twice or after it started")));
            }
            if ended.status == Status::PrecheckFailed && (in_flight_before > 0 || !d.starts.is_empty()) {
                return Err(self.fail(format!("{i} failed placement while moves were in flight")));
            }
            if ended.status == Status::SkippedDependency && !self.earlier_failed(i) {
                return Err(self.fail(format!("{i} skipped though no earlier member of its group failed")));
            }
            self.status[i] = Some(ended.status);
        }
        // Caps as the links allow, for every move in flight.
        self.check_caps()?;
        // No idle slot.
        if self.holding() < limits.cluster {
            for i in 0..self.items.len() {
                if self.started[i] || self.status[i].is_some() || !self.group_allows(i) {
                    continue;
                }
                let from = self.case.items[i].0;
                let target = match self.case.items[i].1 {
                    Some(to) => Some(to),
                    None => self.place(i, |h| self.has_room(h)),
                };
                if self.outbound[from] < limits.per_source && target.is_some_and(|t| self.has_room(t)) {
                    return Err(self.fail(format!("idle slot: {i} could start to {target:?}")));
                }
            }
        }
        Ok(())
    }
}

fn simulate(case: &Case) -> Result<(), TestCaseError> {
    let items: Vec<Item> = case
        .items
        .iter()
        .enumerate()
        .map(|(i, (from, to, group, order, priority, memory, _, _, _))| Item {
            vm: format!("vm{i}"),
            from: host(*from),
            to: to.map_or(Target::Any, |t| Target::Host(host(t))),
            group: (*group > 0).then(|| format!("g{group}")),
            order: *order,
            priority: *priority,
            memory_mib: memory * 512,
            disk_mib: 0,
        })
        .collect();
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(g) = &item.group {
            groups.entry(g.clone()).or_default().push(i);
        }
    }
    for members in groups.values_mut() {
        members.sort_by_key(|&i| (items[i].order, i));
    }
    let gate: HashMap<String, Status> =
        case.items.iter().enumerate().filter_map(|(i, seed)| seed.8.map(|k| (format!("vm{i}"), PREVIOUS[k]))).collect();
    let config = Config {
        limits: case.limits.clone(),
        links: (0..case.hosts).filter_map(|h| case.links[h].map(|l| (host(h), f64::from(l)))).collect(),
        deadline: case.deadline.map(|at| Deadline { at: f64::from(at), shown: format!("T{at}") }),
        resume_from: case.gated.then(|| gate.clone()),
    };
    let mut scheduler = Scheduler::new(items.clone(), config);
    let n = items.len();
    let mut books = Books {
        case,
        items,
        groups,
        started: vec![false; n],
        running: HashMap::new(),
        outbound: vec![0; case.hosts],
        inbound: vec![0; case.hosts],
        status: vec![None; n],
        sending: Default::default(),
        order: Vec::new(),
        released: Default::default(),
    };
    let mut rng = case.seed | 1;
    let mut next = move |bound: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % bound as u64) as usize
    };
    for step in 0..=(2 * n as u32 + 2) {
        if case.stop_at == Some(step) {
            scheduler.stop_starting();
        }
        let now = f64::from(step);
        let in_flight = books.running.len();
        let d = scheduler.decide(now, |item, view| {
            let i: usize = item.vm[2..].parse().expect("vmN");
            books.place(i, |h| view.has_room(&host(h))).map(host)
        });
        books.apply(&d, now, in_flight)?;
        if step == 0 && case.gated {
            for (i, item) in books.items.iter().enumerate() {
                let expected = match gate.get(&item.vm) {
                    Some(s) if s.is_success() => continue,
                    Some(s) if s.is_terminal() => *s,
                    _ => Status::SkippedNoPrevStatus,
                };
                if books.status[i] != Some(expected) {
                    return Err(TestCaseError::fail(format!(
                        "vm{i} gated by {:?} ended {:?}",
                        gate.get(&item.vm),
                        books.status[i]
                    )));
                }
            }
        }
        let over = case.deadline.is_some_and(|at| now >= f64::from(at)) || case.stop_at.is_some_and(|s| step >= s);
        if over && (0..n).any(|i| !books.started[i] && books.status[i].is_none()) {
            return Err(TestCaseError::fail("moves left pending after the deadline or a stop".to_string()));
        }
        if scheduler.is_done() {
            for i in 0..n {
                match books.status[i] {
                    Some(s) if s.is_terminal() && scheduler.status(i) == s => {}
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "vm{i} done as {other:?}, scheduler says {}",
                            scheduler.status(i)
                        )))
                    }
                }
            }
            return Ok(());
        }
        if books.running.is_empty() {
            return Err(TestCaseError::fail(format!("stuck at step {step}: nothing in flight, not done")));
        }
        let mut in_flight: Vec<usize> = books.running.keys().copied().collect();
        in_flight.sort_unstable();
        let i = in_flight[next(in_flight.len())];
        let status = OUTCOMES[next(OUTCOMES.len())];
        // Some move in flight starts or stops sending data.
        let j = in_flight[next(in_flight.len())];
        let now_sending = !books.sending.remove(&j);
        if now_sending {
            books.sending.insert(j);
        }
        if !books.released.contains(&j) {
            scheduler.set_sending(j, now_sending);
        } else {
            books.sending.remove(&j);
        }
        // Some move in flight switches over: its slots are free before it ends.
        let k = in_flight[next(in_flight.len())];
        if next(2) == 0 && books.released.insert(k) {
            books.sending.remove(&k);
            books.outbound[case.items[k].0] -= 1;
            books.inbound[books.running[&k].0] -= 1;
            scheduler.switched_over(k);
        }
        books.sending.remove(&i);
        let (to, _) = books.running.remove(&i).expect("in flight");
        books.order.retain(|&k| k != i);
        if !books.released.remove(&i) {
            books.outbound[case.items[i].0] -= 1;
            books.inbound[to] -= 1;
        }
        books.status[i] = Some(status);
        scheduler.finished(i, status);
    }
    Err(TestCaseError::fail("the run did not end".to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn runs_keep_every_rule(case in case()) {
        simulate(&case)?;
    }
}
