//! Which moves of a run start now.
//!
//! A sliding window, never waves: whenever a slot frees, the next eligible move starts at
//! once. The [`Scheduler`] holds every move of a run and answers one question, again and
//! again: given what is in flight, what starts now? It does no IO, keeps no clock (time is
//! passed in, as seconds) and cannot fail.
//!
//! # Rules
//!
//! - **Limits**: migrations in flight in the run (`cluster`), per source host (outbound) and
//!   per target host (inbound). A limit of 0 counts as 1 (plans reject 0).
//! - **Links**: a host's `link_mib_s` is shared by its migrations, one way for outbound and
//!   the other for inbound (links are full duplex). The migrations that are sending fill the
//!   links by weighted max-min fair shares (progressive filling), so that the caps on a link
//!   add up to at most its speed and every migration is held by a link that is full: none is
//!   capped below what its links could give it. A migration weighs what its busier host
//!   still has to carry, in seconds of its link, so that a host with more left gets more of
//!   a link it shares and the hosts finish about together. The caps follow as migrations
//!   start, end, and start or stop sending ([`Scheduler::set_sending`],
//!   [`Decisions::retunes`]; a change within [`RETUNE_MIN_CHANGE`] is not sent): a
//!   migration's setup and finish (seconds each: connection, destination start,
//!   switch-over) use no link, so the migrations that are sending meanwhile get it. One
//!   that is not sending yet takes nothing from the others; its cap is the share it will
//!   have against those sending.
//! - **Eligible**: a pending move that is not in a group, or the first unfinished member of
//!   its group (members move one at a time, in `order`). A member that does not succeed ends
//!   the rest of its group as SKIPPED-DEPENDENCY, naming it.
//! - **Order**: higher priority first; within a priority, sources take turns (round-robin,
//!   starting after the source that started last) so that one host's queue cannot starve
//!   another's; within a source, larger first (empties the host fastest): memory and the
//!   host-local disks copied with it, what its links carry; then plan order.
//! - **`ANY`**: placed when the move starts, by the caller's placement against a [`View`] of
//!   what is in flight. A move that cannot be placed waits. When nothing is in flight and
//!   nothing could start, nothing will ever change: every move still waiting ends
//!   PRECHECK-FAILED ([`NO_HOST`]).
//! - **Deadline**: once `now >= deadline`, nothing starts; every pending move ends
//!   SKIPPED-TIMEOUT, the message naming the deadline. Moves in flight go on.
//! - **`resume_from`**: only VMs whose status in the previous run was a success move; the
//!   others carry that status, and VMs absent from it end SKIPPED-NO-PREV-STATUS (so does a
//!   VM whose previous status is not final: that run was not over). A carried member counts
//!   as a member that did not succeed, for its group.
//! - **Stop** (Ctrl-C once): nothing new starts; pending moves end ABORTED.
//!
//! # Use
//!
//! After every change — construction, a move finished, the operator stopped the run, or
//! simply time passing towards the deadline — call [`Scheduler::decide`] and act on all of
//! it: start the moves, set the new bandwidth caps (lower ones first), journal the moves the
//! scheduler ended. On `resume`, [`Scheduler::adopt`] what the journal and libvirt say is in
//! flight or over before the first decision.
//!
//! ```
//! use ferry_model::Status;
//! use ferry_plan::Target;
//! use ferry_scheduler::{Config, Item, Scheduler};
//!
//! let item = |vm: &str| Item {
//!     vm: vm.into(),
//!     from: "host-a".into(),
//!     to: Target::Any,
//!     group: None,
//!     order: 0,
//!     priority: 0,
//!     memory_mib: 1024,
//!     disk_mib: 0,
//! };
//! let mut scheduler = Scheduler::new(vec![item("web-1"), item("web-2")], Config::default());
//! let mut now = 0.0;
//! while !scheduler.is_done() {
//!     // Placement: the first host with a free inbound slot.
//!     let decisions = scheduler.decide(now, |_, view| {
//!         ["host-b", "host-c"].into_iter().find(|h| view.has_room(h)).map(String::from)
//!     });
//!     for start in decisions.starts {
//!         // ... run the migration; here it succeeds at once.
//!         scheduler.finished(start.item, Status::Success);
//!     }
//!     now += 1.0;
//! }
//! assert_eq!(scheduler.status(1), Status::Success);
//! ```
//!
//! # Cost
//!
//! One [`Scheduler::decide`] looks at each queued move at most once per start it makes, asks
//! placement at most once per `ANY` move, and stops as soon as the `cluster` limit is
//! reached; with the `cluster` limit binding, a decision costs about a microsecond at 10,000
//! moves and 1,000 sources (`benches/schedule.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::RangeInclusive;

use ferry_model::Status;
use ferry_plan::{Limits, Target};

mod share;
#[cfg(test)]
mod tests;

/// The message of a move that placement could not place while nothing was in flight.
pub const NO_HOST: &str = "not started: no host can take it, and no move in flight could free one";

/// The message of a move not started because the operator stopped the run.
pub const STOPPED: &str = "not started: run stopped by the operator";

/// How many times the next younger migration's weight a migration sending from the same
/// source, or into the same target, gets (see [`Scheduler::decide`]'s caps). The lab decides,
/// not the simulator: on bench `drain_vs_virsh` (b) (six guests dirtying 10 MiB/s each,
/// leaving one host over a 32 MiB/s link, two at a time), 2 gave a makespan of 53.8 s for
/// 1,524 MiB sent; 1 (equal shares) gave 71.9 s for 1,978 MiB: at 16 MiB/s each, a guest dirtying 10
/// converges slowly and re-sends much more than at 21. The simulator's fleets dirty little
/// against their 10 GbE links and barely tell (bench `scheduler`, 100-host fleets, host
/// drain / rack drain / rebalance, urgency not yet rounded: 1 gave 59.3 / 160.9 / 157.0 s,
/// 2 gave 61.6 / 162.7 / 155.9 s). Being one weight per migration, it also decides who gets
/// a shared target's link, where it favours the older migration.
pub const SENIORITY: f64 = 2.0;

/// The least urgency a migration weighs with, seconds: a host with nothing left but the
/// moves in flight still has them to finish.
const MIN_URGENCY_S: f64 = 1e-3;

/// A new cap within this fraction of the current one is not worth a retune: every
/// migration that ends or starts shifts the shares of its whole group of links a little,
/// and each retune is a call to the hypervisor and a line in the journal.
pub const RETUNE_MIN_CHANGE: f64 = 0.02;

/// `urgency` rounded down to a power of [`URGENCY_STEP`]: a host's remaining load shrinks
/// with every move that ends there, and an exact weight would shift the shares of every link
/// connected to it each time (a retune storm on a fleet of 1,000 hosts, each retune a
/// hypervisor call and a journal line) for a change of a few per cent.
fn coarse(urgency: f64) -> f64 {
    URGENCY_STEP.powf((urgency.ln() / URGENCY_STEP.ln()).floor())
}

/// The grid urgencies are rounded to (see [`coarse`]).
pub const URGENCY_STEP: f64 = std::f64::consts::SQRT_2;

/// Whether `new` is within [`RETUNE_MIN_CHANGE`] of `old`.
fn about(old: f64, new: f64) -> bool {
    (new - old).abs() <= RETUNE_MIN_CHANGE * old
}

/// One VM's move, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// VM name: the key of `resume_from` and the name in messages.
    pub vm: String,
    /// Host it runs on.
    pub from: String,
    /// Where it goes; `Any` is placed when the move starts.
    pub to: Target,
    /// Group whose members move one at a time.
    pub group: Option<String>,
    /// Position in its group.
    pub order: usize,
    /// Higher moves first.
    pub priority: i64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Host-local disks copied with it, MiB. With the memory, what the move's links carry:
    /// larger moves first within a source.
    pub disk_mib: u64,
}

impl Item {
    /// What the move's links carry, about: memory and copied disks, MiB.
    fn load_mib(&self) -> u64 {
        self.memory_mib + self.disk_mib
    }
}

/// No new move starts once this time is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Deadline {
    /// Seconds, on the clock the caller passes to [`Scheduler::decide`].
    pub at: f64,
    /// As the operator wrote it, for messages.
    pub shown: String,
}

/// Everything about a run but its moves.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Concurrency limits.
    pub limits: Limits,
    /// Migration link of each host, MiB/s; a host absent here (or with a link that is not
    /// positive) does not limit bandwidth.
    pub links: HashMap<String, f64>,
    /// No new move starts at or after it.
    pub deadline: Option<Deadline>,
    /// Each VM's status in the run this one resumes from (`resume_from`), if any.
    pub resume_from: Option<HashMap<String, Status>>,
}

/// A move to start now.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// Index of the move in the items given to [`Scheduler::new`].
    pub item: usize,
    /// Target host (placed, for `ANY`).
    pub to: String,
    /// Bandwidth cap, MiB/s; `None` when neither host has a link.
    pub bandwidth_mib_s: Option<f64>,
}

/// A new bandwidth cap for a move in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Retune {
    /// Index of the move.
    pub item: usize,
    /// Its new cap, MiB/s.
    pub bandwidth_mib_s: f64,
}

/// A move the scheduler ended without starting it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// Index of the move.
    pub item: usize,
    /// Its final status.
    pub status: Status,
    /// Why, in words.
    pub message: String,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decisions {
    /// Moves to start, in order.
    pub starts: Vec<Start>,
    /// Moves in flight whose bandwidth cap changed (not those in `starts`).
    pub retunes: Vec<Retune>,
    /// Moves ended by the scheduler since the last decision.
    pub ended: Vec<Ended>,
}

/// The moves of one run and the decision of which start now.
#[derive(Debug, Clone)]
pub struct Scheduler {
    items: Vec<Item>,
    limits: Limits,
    deadline: Option<Deadline>,
    hosts: Vec<Host>,
    host_ids: HashMap<String, usize>,
    /// Per item: source host, fixed target host, group.
    slots: Vec<Slot>,
    state: Vec<State>,
    /// Members of each group, in order.
    groups: Vec<Vec<usize>>,
    /// Queued moves per priority, to visit priorities in order.
    levels: BTreeMap<i64, usize>,
    running: Vec<usize>,
    last_source: Option<usize>,
    unfinished: usize,
    ended: Vec<Ended>,
    /// Per item: whether it is sending data now (see [`Scheduler::set_sending`]).
    sending: Vec<bool>,
    /// Per item: switched over, its slots given back (see [`Scheduler::switched_over`]).
    released: Vec<bool>,
    /// Moves in flight holding slots: `running` less the released ones.
    holding: usize,
    /// `ANY` moves placement found no host with room for, not asked again until a move
    /// frees room (switches over or ends): on a large fleet, asking again after every
    /// progress signal was most of a run's time.
    refused: HashSet<usize>,
}

#[derive(Debug, Clone)]
struct Host {
    name: String,
    link: Option<f64>,
    outbound: usize,
    inbound: usize,
    /// Load (memory and copied disks) of the moves from (to) this host that have not ended,
    /// MiB: what its link still has to carry, about.
    left_out: f64,
    left_in: f64,
    /// Eligible moves from this host, best first.
    queue: BTreeSet<Key>,
}

/// Priority (higher first), load (larger first), item.
type Key = (Reverse<i64>, Reverse<u64>, usize);

#[derive(Debug, Clone, Copy)]
struct Slot {
    from: usize,
    to: Option<usize>,
    group: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running { to: usize, cap: Option<f64> },
    Done(Status),
}

/// What is in flight, for placement.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    scheduler: &'a Scheduler,
}

impl<'a> View<'a> {
    /// Every move in flight, with its target host.
    pub fn running(&self) -> impl Iterator<Item = (&'a Item, &'a str)> + 'a {
        let s = self.scheduler;
        s.running.iter().filter_map(move |&i| match s.state[i] {
            State::Running { to, .. } => Some((&s.items[i], s.hosts[to].name.as_str())),
            _ => None,
        })
    }

    /// Moves in flight to `host`.
    pub fn inbound(&self, host: &str) -> usize {
        self.scheduler.host(host).map_or(0, |h| h.inbound)
    }

    /// Whether `host` may take one more inbound move now (`per_target`).
    pub fn has_room(&self, host: &str) -> bool {
        self.scheduler.has_room(host)
    }
}

impl Scheduler {
    /// A run of `items` (indexed from 0 in every answer). Moves gated out by
    /// `resume_from` are ended here and reported by the first [`Scheduler::decide`].
    pub fn new(items: Vec<Item>, config: Config) -> Scheduler {
        let Config { limits, links, deadline, resume_from } = config;
        let mut s = Scheduler {
            limits: Limits {
                cluster: limits.cluster.max(1),
                per_source: limits.per_source.max(1),
                per_target: limits.per_target.max(1),
            },
            deadline,
            hosts: Vec::new(),
            host_ids: HashMap::new(),
            slots: Vec::with_capacity(items.len()),
            state: vec![State::Pending; items.len()],
            groups: Vec::new(),
            levels: BTreeMap::new(),
            running: Vec::new(),
            last_source: None,
            unfinished: items.len(),
            ended: Vec::new(),
            sending: vec![false; items.len()],
            released: vec![false; items.len()],
            holding: 0,
            refused: HashSet::new(),
            items: Vec::new(),
        };
        let mut group_ids = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let from = s.intern(&item.from);
            let to = match &item.to {
                Target::Host(name) => Some(s.intern(name)),
                Target::Any => None,
            };
            let group = item.group.as_ref().map(|g| {
                *group_ids.entry(g.clone()).or_insert_with(|| {
                    s.groups.push(Vec::new());
                    s.groups.len() - 1
                })
            });
            if let Some(g) = group {
                s.groups[g].push(i);
            }
            s.slots.push(Slot { from, to, group });
            s.hosts[from].left_out += item.load_mib() as f64;
            if let Some(to) = to {
                s.hosts[to].left_in += item.load_mib() as f64;
            }
        }
        // Hosts are numbered in plan order, which sets the sources' first turns.
        let mut links: Vec<_> = links.into_iter().filter(|(_, l)| *l > 0.0).collect();
        links.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, link) in links {
            let h = s.intern(&name);
            s.hosts[h].link = Some(link);
        }
        for members in &mut s.groups {
            members.sort_by_key(|&i| (items[i].order, i));
        }
        s.items = items;

        if let Some(previous) = resume_from {
            for i in 0..s.items.len() {
                match previous.get(&s.items[i].vm) {
                    Some(status) if status.is_success() => {}
                    Some(&status) if status.is_terminal() => {
                        s.end(i, status, format!("not moved: carried from the previous run, where it ended {status}"))
                    }
                    Some(status) => s.end(
                        i,
                        Status::SkippedNoPrevStatus,
                        format!("not moved: no final status in the previous run (it was {status})"),
                    ),
                    None => s.end(i, Status::SkippedNoPrevStatus, "not moved: absent from the previous run".into()),
                }
            }
        }
        for i in 0..s.items.len() {
            if s.slots[i].group.is_none() && s.state[i] == State::Pending {
                s.enqueue(i);
            }
        }
        for g in 0..s.groups.len() {
            s.settle(g);
        }
        s
    }

    /// What starts now, the new bandwidth caps of moves in flight, and the moves the
    /// scheduler ended since the last call. `place` is asked for a target of each `ANY` move
    /// that could otherwise start; `None`, or a host without room, and the move waits.
    pub fn decide(&mut self, now: f64, mut place: impl FnMut(&Item, &View) -> Option<String>) -> Decisions {
        if let Some(deadline) = &self.deadline {
            if now >= deadline.at {
                let message = format!("not started: the deadline {} was reached", deadline.shown);
                self.end_pending(Status::SkippedTimeout, &message);
            }
        }
        let mut started = Vec::new();
        let mut refused = std::mem::take(&mut self.refused);
        while let Some((i, to)) = self.pick(&mut refused, &mut place) {
            self.start(i, &to);
            started.push((i, to));
        }
        self.refused = refused;
        if self.running.is_empty() {
            // Nothing in flight, so nothing will ever free a slot or capacity: what waits
            // (placement found no host for it) never starts. Its group's rest is skipped.
            let stuck: Vec<usize> = self.hosts.iter().flat_map(|h| h.queue.iter().map(|k| k.2)).collect();
            for i in stuck {
                self.end(i, Status::PrecheckFailed, NO_HOST.into());
                if let Some(g) = self.slots[i].group {
                    self.settle(g);
                }
            }
        }

        let mut decisions = Decisions { ended: std::mem::take(&mut self.ended), ..Decisions::default() };
        let caps: HashMap<usize, Option<f64>> = self.running.iter().copied().zip(self.caps()).collect();
        for (item, to) in started {
            let cap = caps[&item];
            self.set_cap(item, cap);
            decisions.starts.push(Start { item, to, bandwidth_mib_s: cap });
        }
        for k in 0..self.running.len() {
            let item = self.running[k];
            if self.released[item] {
                continue;
            }
            let cap = caps[&item];
            let State::Running { cap: old, .. } = self.state[item] else { continue };
            match (old, cap) {
                (Some(old), Some(new)) if about(old, new) => {}
                (_, Some(new)) => {
                    decisions.retunes.push(Retune { item, bandwidth_mib_s: new });
                    self.set_cap(item, cap);
                }
                (_, None) => self.set_cap(item, None),
            }
        }
        decisions
    }

    /// Records the end of a move in flight with its final status (for its group, anything
    /// but a success is a failure); ignored unless the move is in flight. Call
    /// [`Scheduler::decide`] next: a slot is free.
    pub fn finished(&mut self, item: usize, status: Status) {
        if !matches!(self.state[item], State::Running { .. }) {
            return;
        }
        self.release(item);
        self.running.retain(|&r| r != item);
        self.state[item] = State::Done(status);
        self.unfinished -= 1;
        if let Some(g) = self.slots[item].group {
            self.settle(g);
        }
    }

    /// A move in flight switched over: its VM runs on the target, and what is left — the
    /// source's teardown of its copy, verification — sends nothing. Its slots (cluster,
    /// source, target) go to the next moves at once; it stays in flight for placement (its
    /// VM's memory is on the target) until [`Scheduler::finished`]. Ignored unless the move
    /// is in flight.
    pub fn switched_over(&mut self, item: usize) {
        if matches!(self.state[item], State::Running { .. }) {
            self.release(item);
        }
    }

    /// Gives back a move's slots and link share, once.
    fn release(&mut self, item: usize) {
        let State::Running { to, .. } = self.state[item] else {
            return;
        };
        if self.released[item] {
            return;
        }
        self.set_sending(item, false);
        self.released[item] = true;
        self.holding -= 1;
        self.refused.clear();
        let (from, load) = (self.slots[item].from, self.items[item].load_mib() as f64);
        self.hosts[from].outbound -= 1;
        self.hosts[from].left_out -= load;
        self.hosts[to].inbound -= 1;
        self.hosts[to].left_in -= load;
    }

    /// Records a pending move as already in flight to `to`, as `resume` finds it after a
    /// crash: it counts against the limits and its cap comes with the next
    /// [`Scheduler::decide`]. A move the journal says has ended is adopted, then
    /// [`Scheduler::finished`]. Ignored unless the move is pending.
    pub fn adopt(&mut self, item: usize, to: &str) {
        if self.state[item] == State::Pending {
            self.start(item, to);
        }
    }

    /// A move in flight started (`true`) or stopped (`false`) sending data: the link shares
    /// of its hosts' other migrations follow with the next [`Scheduler::decide`]. Ignored
    /// unless the move is in flight.
    pub fn set_sending(&mut self, item: usize, sending: bool) {
        if !matches!(self.state[item], State::Running { .. })
            || self.sending[item] == sending
            || (sending && self.released[item])
        {
            return;
        }
        self.sending[item] = sending;
    }

    /// Ctrl-C once: nothing new starts; every pending move ends ABORTED ([`STOPPED`]). Moves in
    /// flight go on.
    pub fn stop_starting(&mut self) {
        self.end_pending(Status::Aborted, STOPPED);
    }

    /// Whether every move has ended.
    pub fn is_done(&self) -> bool {
        self.unfinished == 0
    }

    /// A move's status as the scheduler knows it: PENDING, MIGRATING, or its final status.
    pub fn status(&self, item: usize) -> Status {
        match self.state[item] {
            State::Pending => Status::Pending,
            State::Running { .. } => Status::Migrating,
            State::Done(status) => status,
        }
    }

    /// The next move to start and its target, if any may start.
    fn pick(
        &self,
        refused: &mut HashSet<usize>,
        place: &mut impl FnMut(&Item, &View) -> Option<String>,
    ) -> Option<(usize, String)> {
        if self.holding >= self.limits.cluster {
            return None;
        }
        let n = self.hosts.len();
        let first = self.last_source.map_or(0, |s| s + 1);
        for &priority in self.levels.keys().rev() {
            for host in (first..first + n).map(|k| &self.hosts[k % n]) {
                if host.outbound >= self.limits.per_source {
                    continue;
                }
                for &(_, _, i) in host.queue.range(level(priority)) {
                    match self.slots[i].to {
                        Some(to) => {
                            if self.hosts[to].inbound < self.limits.per_target {
                                return Some((i, self.hosts[to].name.clone()));
                            }
                        }
                        None if refused.contains(&i) => {}
                        None => match place(&self.items[i], &View { scheduler: self }) {
                            Some(to) if self.has_room(&to) => return Some((i, to)),
                            _ => {
                                refused.insert(i);
                            }
                        },
                    }
                }
            }
        }
        None
    }

    fn start(&mut self, item: usize, to: &str) {
        let to = self.intern(to);
        self.dequeue(item);
        let from = self.slots[item].from;
        if self.slots[item].to != Some(to) {
            let load = self.items[item].load_mib() as f64;
            if let Some(fixed) = self.slots[item].to {
                self.hosts[fixed].left_in -= load;
            }
            self.hosts[to].left_in += load;
        }
        self.hosts[from].outbound += 1;
        self.hosts[to].inbound += 1;
        self.state[item] = State::Running { to, cap: None };
        self.running.push(item);
        self.holding += 1;
        self.last_source = Some(from);
    }

    /// The bandwidth cap of each move in flight, in the order of `running`: weighted max-min
    /// fair shares of the links ([`share::allocate`]) among those sending.
    ///
    /// A move's weight is its hosts' urgency times its seniority. Urgency: the seconds its
    /// busier link (source outbound or target inbound) still needs for the moves not ended
    /// there (by load), so that a host with more left to carry gets more of a link it
    /// shares and every host finishes about when the busiest one must. Seniority:
    /// [`SENIORITY`] times the weight of the next younger migration sending from the same
    /// source or into the same target (the larger count of older ones decides), so that
    /// migrations gathering on one host finish one after another, as those leaving one do.
    fn caps(&self) -> Vec<Option<f64>> {
        let mut speeds: Vec<f64> = Vec::new();
        let mut ids: HashMap<(usize, bool), usize> = HashMap::new();
        let mut older_sending: HashMap<(usize, bool), i32> = HashMap::new();
        let mut flows = Vec::with_capacity(self.running.len());
        for &item in &self.running {
            let State::Running { to, .. } = self.state[item] else { continue };
            let from = self.slots[item].from;
            let mut links = Vec::with_capacity(2);
            let mut urgency: f64 = 0.0;
            for (host, outbound) in [(from, true), (to, false)] {
                if let Some(speed) = self.hosts[host].link {
                    let id = *ids.entry((host, outbound)).or_insert_with(|| {
                        speeds.push(speed);
                        speeds.len() - 1
                    });
                    links.push(id);
                    let left = if outbound { self.hosts[host].left_out } else { self.hosts[host].left_in };
                    urgency = urgency.max(left / speed);
                }
            }
            let older = |end| older_sending.get(&end).copied().unwrap_or(0);
            let rank = older((from, true)).max(older((to, false)));
            let weight = coarse(urgency.max(MIN_URGENCY_S)) * SENIORITY.powi(-rank);
            if self.sending[item] {
                *older_sending.entry((from, true)).or_default() += 1;
                *older_sending.entry((to, false)).or_default() += 1;
            }
            flows.push(share::Flow { links, weight, sending: self.sending[item] });
        }
        share::allocate(&speeds, &flows)
    }

    fn set_cap(&mut self, item: usize, new: Option<f64>) {
        if let State::Running { cap, .. } = &mut self.state[item] {
            *cap = new;
        }
    }

    /// Walks a group in order: the first unfinished member becomes eligible, unless an
    /// earlier one did not succeed, which ends the rest.
    fn settle(&mut self, g: usize) {
        for k in 0..self.groups[g].len() {
            let member = self.groups[g][k];
            match self.state[member] {
                State::Done(status) if status.is_success() => {}
                State::Done(status) => {
                    let item = &self.items[member];
                    let message = format!(
                        "not started: {}, before it in group {}, ended {status}",
                        item.vm,
                        item.group.as_deref().unwrap_or_default()
                    );
                    for j in k + 1..self.groups[g].len() {
                        let later = self.groups[g][j];
                        if self.state[later] == State::Pending {
                            self.end(later, Status::SkippedDependency, message.clone());
                        }
                    }
                    return;
                }
                State::Pending => return self.enqueue(member),
                State::Running { .. } => return,
            }
        }
    }

    fn end_pending(&mut self, status: Status, message: &str) {
        for i in 0..self.items.len() {
            if self.state[i] == State::Pending {
                self.end(i, status, message.to_string());
            }
        }
    }

    /// Ends a move that never started (its group is the caller's to settle).
    fn end(&mut self, item: usize, status: Status, message: String) {
        self.dequeue(item);
        let (from, load) = (self.slots[item].from, self.items[item].load_mib() as f64);
        self.hosts[from].left_out -= load;
        if let Some(to) = self.slots[item].to {
            self.hosts[to].left_in -= load;
        }
        self.state[item] = State::Done(status);
        self.unfinished -= 1;
        self.ended.push(Ended { item, status, message });
    }

    fn enqueue(&mut self, item: usize) {
        let key = self.key(item);
        if self.hosts[self.slots[item].from].queue.insert(key) {
            *self.levels.entry(self.items[item].priority).or_default() += 1;
        }
    }

    fn dequeue(&mut self, item: usize) {
        let (key, priority) = (self.key(item), self.items[item].priority);
        if self.hosts[self.slots[item].from].queue.remove(&key) {
            if let Some(count) = self.levels.get_mut(&priority) {
                *count -= 1;
                if *count == 0 {
                    self.levels.remove(&priority);
                }
            }
        }
    }

    fn key(&self, item: usize) -> Key {
        (Reverse(self.items[item].priority), Reverse(self.items[item].load_mib()), item)
    }

    fn intern(&mut self, name: &str) -> usize {
        if let Some(&h) = self.host_ids.get(name) {
            return h;
        }
        self.hosts.push(Host {
            name: name.to_string(),
            link: None,
            outbound: 0,
            inbound: 0,
            left_out: 0.0,
            left_in: 0.0,
            queue: BTreeSet::new(),
        });
        self.host_ids.insert(name.to_string(), self.hosts.len() - 1);
        self.hosts.len() - 1
    }

    fn host(&self, name: &str) -> Option<&Host> {
        self.host_ids.get(name).map(|&h| &self.hosts[h])
    }

    fn has_room(&self, host: &str) -> bool {
        self.host(host).is_none_or(|h| h.inbound < self.limits.per_target)
    }
}

/// The keys of one priority.
fn level(priority: i64) -> RangeInclusive<Key> {
    (Reverse(priority), Reverse(u64::MAX), 0)..=(Reverse(priority), Reverse(0), usize::MAX)
}
