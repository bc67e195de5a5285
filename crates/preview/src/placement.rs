//! Placement: which host each VM whose target is `ANY` goes to, and why.
//!
//! [`place`] is a pure function of the cluster file, the inventory, the moves whose target is
//! already fixed and the requests. Hard constraints filter hosts out (each with a reason);
//! the [`Policy`] scores the hosts that remain; ties go to the host whose name sorts first.
//! Requests are placed one after another, largest memory first, and each placement is load
//! that the next ones see, so the result is the same whatever order the caller lists them in.
//!
//! Capacity is counted conservatively: a VM that moves away keeps its vCPUs and memory
//! charged to its source, because it holds them there until its move is done, and the
//! moves of one run overlap. A plan that only fits if outbound moves free room first is
//! rejected here rather than risked at run time.
//!
//! Cost: the load of every host is computed once, anti-affinity groups keep per-host member
//! counts, and a request costs one pass over the candidate hosts with no allocation, so
//! placing 10,000 VMs on 1,000 hosts is 10 million cheap comparisons. Reasons are words only
//! when asked for ([`Constraints::explain`]) or when a request cannot be placed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use ferry_model::{ClusterSpec, Host, HostSpec, Inventory, Vm, VmState};
use serde::{Deserialize, Serialize};

/// How to choose among the hosts that can take a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Pack: the host with the least memory left after placing, so that whole hosts stay
    /// free for large VMs and for maintenance.
    #[default]
    BestFit,
    /// The host with the fewest VMs after placing, so that losing one host hurts the fewest.
    Spread,
    /// The host with the largest share of its memory free after placing.
    LeastLoaded,
}

impl Policy {
    /// Every policy, in the order `--help` lists them.
    pub const ALL: [Policy; 3] = [Policy::BestFit, Policy::Spread, Policy::LeastLoaded];

    /// The name used in plans and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::BestFit => "best-fit",
            Policy::Spread => "spread",
            Policy::LeastLoaded => "least-loaded",
        }
    }

    /// How `a` compares to `b` under this policy: `Less` when `a` is the better host.
    fn prefer(self, a: &Fit, b: &Fit) -> Ordering {
        match self {
            Policy::BestFit => a.free_after.cmp(&b.free_after),
            Policy::Spread => a.vms_after.cmp(&b.vms_after),
            Policy::LeastLoaded => {
                // Larger free fraction first, compared exactly: free_a / cap_a > free_b / cap_b.
                let (fa, ca) = a.fraction();
                let (fb, cb) = b.fraction();
                (fb * ca).cmp(&(fa * cb))
            }
        }
    }

    /// A host's score in words: "1024 MiB left after (of 8192)".
    fn score(self, fit: &Fit) -> String {
        match self {
            Policy::BestFit => format!("{} MiB left after (of {})", fit.free_after, fit.capacity),
            Policy::Spread => format!("{} VMs after placing", fit.vms_after),
            Policy::LeastLoaded => {
                format!("{}% of memory free after ({} of {} MiB)", fit.percent_free(), fit.free_after, fit.capacity)
            }
        }
    }

    /// Why `fit` lost to `chosen`, in words.
    fn lost(self, fit: &Fit, chosen_name: &str, chosen: &Fit) -> String {
        if self.prefer(fit, chosen) == Ordering::Equal {
            return format!(
                "tied with {chosen_name}: {} on both; {chosen_name} comes first by name",
                self.score(chosen)
            );
        }
        let theirs = match self {
            Policy::BestFit => format!("which leaves {} MiB", chosen.free_after),
            Policy::Spread => format!("which would have {}", chosen.vms_after),
            Policy::LeastLoaded => format!("with {}% free", chosen.percent_free()),
        };
        format!("{}; {} prefers {chosen_name}, {theirs}", self.score(fit), policy_words(self))
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Policy {
    /// The policy a parsed plan names (`[policy] placement`), which its parser checked.
    pub fn of_plan(plan: &ferry_plan::Plan) -> Policy {
        plan.policy.placement.parse().expect("the plan parser accepts only known placement policies")
    }
}

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Policy, UnknownPolicy> {
        Policy::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// A placement policy name that is not one of [`Policy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown placement policy `{}`: expected one of ", self.0)?;
        let names: Vec<&str> = Policy::ALL.iter().map(|p| p.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

impl std::error::Error for UnknownPolicy {}

/// One VM to place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// VM name; must be in the inventory.
    pub vm: String,
    /// Anti-affinity group: no two VMs of one group end on one host. `None`: the VM's
    /// `anti_affinity` tag, if it has one.
    pub anti_affinity: Option<String>,
    /// Only these hosts may take it (a drain's explicit target list); `None`: any host.
    pub candidates: Option<Vec<String>>,
}

/// A move whose target the plan names. It is load on `to` for every placement, and, when it
/// belongs to an anti-affinity group, that member's location.
///
/// A `Fixed` whose `to` is the VM's current host says "this member stays": it adds no load,
/// only its location. That is how a caller declares group members that do not move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixed {
    /// VM name.
    pub vm: String,
    /// Target host.
    pub to: String,
    /// Anti-affinity group of this VM, shared with [`Request::anti_affinity`] names; `None`:
    /// its tag, as for a request.
    pub anti_affinity: Option<String>,
}

/// Hard constraints that hold for every request of one call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    /// Targets may be in another host group than the source.
    pub allow_cross_group: bool,
    /// Hosts that are never targets (being drained).
    pub unavailable: Vec<String>,
    /// Fill [`Decision::rejected`] with every other host and why. Costs a string per host
    /// and request: for `preview --explain`, not for runs.
    pub explain: bool,
}

/// Where one request goes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// VM name.
    pub vm: String,
    /// The chosen host; `None` when no host can take the VM.
    pub host: Option<String>,
    /// Why this host ("host-b: best fit, 1024 MiB left after (of 8192)"), or why none
    /// ("no host fits: host-b not enough memory: …; host-c in maintenance").
    pub why: String,
    /// With [`Constraints::explain`]: every other host and why it was filtered out or scored
    /// lower; hosts that fit come first, best first, then the others by name. Empty otherwise.
    pub rejected: Vec<(String, String)>,
}

/// Places `requests` on the hosts of `cluster`, given what `inventory` runs where and the
/// moves in `fixed`. One decision per request, in the order of `requests`.
///
/// A host can take a VM when it is in the cluster file and answered (is in
/// `inventory.hosts`), is not the VM's current host, not in maintenance, not in
/// `constraints.unavailable`, is in the source's host group (unless crossing is allowed),
/// accepts VMs from the source ([`HostSpec::accepts_from`]), runs a hypervisor at least as
/// new as the source's, holds no other member of the VM's anti-affinity group (now, or
/// planned), and has room: the vCPUs and memory of its running and paused VMs, plus the
/// planned inbound moves, plus this VM, within `cpus × cpu_overcommit` and
/// `memory_mib × memory_overcommit`. Outbound moves free nothing (see the module docs).
///
/// A group member that is not placed (yet, or at all) counts where it is now; so does every
/// VM tagged into a group (`anti_affinity = GROUP`, [`Vm::anti_affinity`]) that the call
/// neither places nor fixes.
pub fn place(
    cluster: &ClusterSpec,
    inventory: &Inventory,
    fixed: &[Fixed],
    requests: &[Request],
    constraints: &Constraints,
    policy: Policy,
) -> Vec<Decision> {
    Placer::new(cluster, inventory).place(fixed, requests, constraints, policy)
}

/// The cluster and the inventory indexed once, for many calls: a run asks for one `ANY` move
/// at a time, and indexing 10,000 VMs for each was most of the cost of placing one.
pub struct Placer<'a> {
    base: World<'a>,
    vms: HashMap<&'a str, &'a Vm>,
    /// VMs tagged into an anti-affinity group (few, usually): where they are counts even
    /// when a call neither moves nor fixes them.
    tagged: Vec<&'a Vm>,
}

impl<'a> Placer<'a> {
    /// Indexes `cluster` and `inventory`.
    pub fn new(cluster: &'a ClusterSpec, inventory: &'a Inventory) -> Placer<'a> {
        let vms = inventory.vms.iter().map(|v| (v.name.as_str(), v)).collect();
        let tagged = inventory.vms.iter().filter(|v| v.anti_affinity().is_some()).collect();
        Placer { base: World::new(cluster, inventory), vms, tagged }
    }

    /// [`place`] on the indexed cluster and inventory.
    pub fn place(
        &self,
        fixed: &[Fixed],
        requests: &[Request],
        constraints: &Constraints,
        policy: Policy,
    ) -> Vec<Decision> {
        place_in(self.base.constrained(constraints), &self.vms, &self.tagged, fixed, requests, policy)
    }
}

fn place_in<'a>(
    mut world: World<'a>,
    vms: &HashMap<&'a str, &'a Vm>,
    tagged: &[&'a Vm],
    fixed: &'a [Fixed],
    requests: &'a [Request],
    policy: Policy,
) -> Vec<Decision> {
    let mut groups = Groups::default();

    let mut fixed_to: HashMap<&str, &str> = HashMap::new();
    for f in fixed {
        if fixed_to.contains_key(f.vm.as_str()) {
            continue;
        }
        fixed_to.insert(&f.vm, &f.to);
        let vm = vms.get(f.vm.as_str()).copied();
        let current = vm.and_then(|vm| world.index(&vm.host));
        let target = world.index(&f.to);
        let moves = vm.is_some_and(|vm| vm.host != f.to) && target.is_some();
        if let (true, Some(vm), Some(t)) = (moves, vm, target) {
            world.hosts[t].charge(vm);
        }
        // The plan's group, else the VM's tag.
        if let Some(group) = f.anti_affinity.as_deref().or_else(|| vm.and_then(|vm| vm.anti_affinity())) {
            let at = if moves || vm.is_none() { target } else { current };
            groups.join(group, &f.vm, at, moves);
        }
    }

    let mut decisions: Vec<(usize, Decision)> = Vec::with_capacity(requests.len());
    let mut todo: Vec<Req> = Vec::with_capacity(requests.len());
    let mut requested: HashSet<&str> = HashSet::new();
    for (index, request) in requests.iter().enumerate() {
        match world.resolve(index, request, vms, &fixed_to, &mut requested, &mut groups) {
            Ok(req) => todo.push(req),
            Err(why) => decisions.push((index, refused(request, why))),
        }
    }
    // Tagged members this call neither moves nor fixes stay where they are.
    for vm in tagged {
        if !fixed_to.contains_key(vm.name.as_str()) && !requested.contains(vm.name.as_str()) {
            let group = vm.anti_affinity().expect("only tagged VMs");
            groups.join(group, &vm.name, world.index(&vm.host), false);
        }
    }
    // The hard ones first: a large VM placed last finds only crumbs.
    todo.sort_by(|a, b| {
        b.vm.memory_mib.cmp(&a.vm.memory_mib).then_with(|| a.vm.name.cmp(&b.vm.name)).then(a.index.cmp(&b.index))
    });
    for req in &todo {
        decisions.push((req.index, world.place_one(req, &mut groups, policy)));
    }
    decisions.sort_by_key(|(index, _)| *index);
    decisions.into_iter().map(|(_, d)| d).collect()
}

fn refused(request: &Request, why: String) -> Decision {
    Decision { vm: request.vm.clone(), host: None, why, rejected: Vec::new() }
}

/// How a host that can take a VM would look after taking it.
#[derive(Debug, Clone, Copy)]
struct Fit {
    /// Memory left, MiB, with overcommit.
    free_after: u64,
    /// Memory capacity, MiB, with overcommit.
    capacity: u64,
    /// VMs on the host (running, paused, planned inbound), this one included.
    vms_after: u64,
}

impl Fit {
    /// Free memory as an exact fraction (numerator, denominator), widened so that
    /// cross-multiplying cannot overflow; an empty host counts as full.
    fn fraction(&self) -> (u128, u128) {
        if self.capacity == 0 {
            (0, 1)
        } else {
            (u128::from(self.free_after), u128::from(self.capacity))
        }
    }

    fn percent_free(&self) -> u64 {
        let (free, capacity) = self.fraction();
        u64::try_from(free * 100 / capacity).unwrap_or(u64::MAX)
    }
}

/// Why a host can take no VM at all in this call.
#[derive(Debug, Clone, Copy)]
enum Barred<'a> {
    NotInCluster,
    /// In the cluster file but not in the inventory, with the reason the inventory gives.
    Unreachable(Option<&'a str>),
    Maintenance,
    Unavailable,
}

/// Why a host cannot take one VM. Kept as data, put in words only when someone reads it.
#[derive(Debug, Clone, Copy)]
enum Reject<'a> {
    NotCandidate,
    Current,
    Barred(Barred<'a>),
    OtherGroup,
    Direction,
    OlderHypervisor,
    AntiAffinity,
    Vcpus { free: u64 },
    Memory { free: u64 },
}

impl Reject<'_> {
    /// How far the host got through the filters: the higher, the closer it came to fitting.
    fn rank(&self) -> u8 {
        match self {
            Reject::NotCandidate => 0,
            Reject::Current => 1,
            Reject::Barred(Barred::NotInCluster | Barred::Unreachable(_)) => 2,
            Reject::Barred(Barred::Maintenance) => 3,
            Reject::Barred(Barred::Unavailable) => 4,
            Reject::OtherGroup => 5,
            Reject::Direction => 6,
            Reject::OlderHypervisor => 7,
            Reject::AntiAffinity => 8,
            Reject::Vcpus { .. } => 9,
            Reject::Memory { .. } => 10,
        }
    }
}

/// A host as placement sees it: the union of the cluster file and the inventory.
#[derive(Clone)]
struct Target<'a> {
    name: &'a str,
    spec: Option<&'a HostSpec>,
    host: Option<&'a Host>,
    barred: Option<Barred<'a>>,
    /// Interned `HostSpec::group`.
    group: usize,
    vcpu_capacity: u64,
    memory_capacity: u64,
    /// Running and paused VMs plus planned inbound moves.
    vcpus: u64,
    memory: u64,
    vms: u64,
}

impl Target<'_> {
    fn charge(&mut self, vm: &Vm) {
        self.vcpus += u64::from(vm.vcpus);
        self.memory += vm.memory_mib;
        self.vms += 1;
    }
}

/// A request, resolved against the inventory.
struct Req<'a> {
    index: usize,
    vm: &'a Vm,
    source: usize,
    /// Anti-affinity group and member index in it.
    member: Option<(usize, usize)>,
    /// Host indices this request may use, sorted; `None`: all.
    candidates: Option<Vec<usize>>,
    /// Candidate names that are no host at all.
    unknown: Vec<&'a str>,
}

#[derive(Default)]
struct Groups<'a> {
    index: HashMap<&'a str, usize>,
    groups: Vec<Group<'a>>,
}

struct Group<'a> {
    name: &'a str,
    members: Vec<Member<'a>>,
    /// Host index → members located there.
    at: HashMap<usize, u32>,
}

struct Member<'a> {
    vm: &'a str,
    at: Option<usize>,
    /// `at` is a planned target, not where the VM is now.
    moved: bool,
}

impl<'a> Groups<'a> {
    fn join(&mut self, group: &'a str, vm: &'a str, at: Option<usize>, moved: bool) -> (usize, usize) {
        let next = self.groups.len();
        let g = *self.index.entry(group).or_insert(next);
        if g == next {
            self.groups.push(Group { name: group, members: Vec::new(), at: HashMap::new() });
        }
        let group = &mut self.groups[g];
        if let Some(h) = at {
            *group.at.entry(h).or_insert(0) += 1;
        }
        group.members.push(Member { vm, at, moved });
        (g, group.members.len() - 1)
    }

    fn relocate(&mut self, (g, m): (usize, usize), to: usize) {
        let group = &mut self.groups[g];
        let member = &mut group.members[m];
        if let Some(from) = member.at {
            if let Some(count) = group.at.get_mut(&from) {
                *count = count.saturating_sub(1);
            }
        }
        member.at = Some(to);
        member.moved = true;
        *group.at.entry(to).or_insert(0) += 1;
    }

    /// The member other than `(g, m)` that blocks host `h`, first by name.
    fn blocker(&self, (g, m): (usize, usize), h: usize) -> Option<&Member<'a>> {
        let group = &self.groups[g];
        group
            .members
            .iter()
            .enumerate()
            .filter(|&(i, member)| i != m && member.at == Some(h))
            .map(|(_, member)| member)
            .min_by_key(|member| member.vm)
    }
}

#[derive(Clone)]
struct World<'a> {
    /// Sorted by name, so that index order is the tie-break order.
    hosts: Vec<Target<'a>>,
    by_name: HashMap<&'a str, usize>,
    group_names: Vec<&'a str>,
    allow_cross_group: bool,
    explain: bool,
    /// `blocked[h] == serial`: host `h` holds another member of the current request's group.
    blocked: Vec<u64>,
    serial: u64,
}

impl<'a> World<'a> {
    /// Every host of the cluster file and the inventory, charged with the VMs running there;
    /// no constraint applied yet.
    fn new(cluster: &'a ClusterSpec, inventory: &'a Inventory) -> World<'a> {
        let mut union: BTreeMap<&str, (Option<&HostSpec>, Option<&Host>)> = BTreeMap::new();
        for spec in &cluster.hosts {
            let entry = union.entry(&spec.name).or_default();
            entry.0 = entry.0.or(Some(spec));
        }
        for host in &inventory.hosts {
            let entry = union.entry(&host.name).or_default();
            entry.1 = entry.1.or(Some(host));
        }
        let unreachable: HashMap<&str, &str> =
            inventory.unreachable.iter().map(|(h, why)| (h.as_str(), why.as_str())).collect();
        let mut group_ids: HashMap<&str, usize> = HashMap::new();
        let mut group_names = Vec::new();

        let hosts: Vec<Target> = union
            .into_iter()
            .map(|(name, (spec, host))| {
                let barred = match (spec, host) {
                    (None, _) => Some(Barred::NotInCluster),
                    (Some(_), None) => Some(Barred::Unreachable(unreachable.get(name).copied())),
                    (Some(spec), Some(_)) if spec.maintenance => Some(Barred::Maintenance),
                    _ => None,
                };
                let group = spec.map_or(usize::MAX, |spec| {
                    *group_ids.entry(spec.group.as_str()).or_insert_with(|| {
                        group_names.push(spec.group.as_str());
                        group_names.len() - 1
                    })
                });
                let (vcpu_capacity, memory_capacity) = match (spec, host) {
                    (Some(spec), Some(host)) => capacity(spec, host),
                    _ => (0, 0),
                };
                Target { name, spec, host, barred, group, vcpu_capacity, memory_capacity, vcpus: 0, memory: 0, vms: 0 }
            })
            .collect();
        let by_name = hosts.iter().enumerate().map(|(i, t)| (t.name, i)).collect();
        let blocked = vec![0; hosts.len()];
        let mut world =
            World { hosts, by_name, group_names, allow_cross_group: false, explain: false, blocked, serial: 0 };
        for vm in &inventory.vms {
            if matches!(vm.state, VmState::Running | VmState::Paused) {
                if let Some(h) = world.index(&vm.host) {
                    world.hosts[h].charge(vm);
                }
            }
        }
        world
    }

    /// A copy of this world under `constraints`.
    fn constrained(&self, constraints: &Constraints) -> World<'a> {
        let mut world = self.clone();
        for name in &constraints.unavailable {
            if let Some(h) = world.index(name) {
                world.hosts[h].barred.get_or_insert(Barred::Unavailable);
            }
        }
        world.allow_cross_group = constraints.allow_cross_group;
        world.explain = constraints.explain;
        world
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Checks what can be checked once per request; `Err` is the decision's `why`.
    fn resolve(
        &self,
        index: usize,
        request: &'a Request,
        vms: &HashMap<&str, &'a Vm>,
        fixed_to: &HashMap<&str, &str>,
        requested: &mut HashSet<&'a str>,
        groups: &mut Groups<'a>,
    ) -> Result<Req<'a>, String> {
        if !requested.insert(&request.vm) {
            return Err(format!("{} is requested more than once; placed once only", request.vm));
        }
        if let Some(to) = fixed_to.get(request.vm.as_str()) {
            return Err(format!("{} already moves to {to}, which the plan names", request.vm));
        }
        let vm = vms.get(request.vm.as_str()).ok_or_else(|| format!("{} is not in the inventory", request.vm))?;
        let source = self.index(&vm.host).ok_or_else(|| {
            format!("{} is on {}, which is neither in the cluster file nor in the inventory", vm.name, vm.host)
        })?;
        let host = &self.hosts[source];
        if host.spec.is_none() {
            return Err(format!("{} is on {}, which is not in the cluster file", vm.name, vm.host));
        }
        if host.host.is_none() {
            return Err(format!("{} is on {}, which is not in the inventory", vm.name, vm.host));
        }
        let (candidates, unknown) = match &request.candidates {
            None => (None, Vec::new()),
            Some(names) => {
                let mut known = Vec::with_capacity(names.len());
                let mut unknown = Vec::new();
                for name in names {
                    match self.index(name) {
                        Some(h) => known.push(h),
                        None => unknown.push(name.as_str()),
                    }
                }
                known.sort_unstable();
                known.dedup();
                unknown.sort_unstable();
                unknown.dedup();
                (Some(known), unknown)
            }
        };
        // The plan's group, else the VM's tag.
        let group = request.anti_affinity.as_deref().or_else(|| vm.anti_affinity());
        let member = group.map(|g| groups.join(g, &vm.name, Some(source), false));
        Ok(Req { index, vm, source, member, candidates, unknown })
    }

    /// The hard constraints for one host; a fit or the first reason it fails.
    #[inline]
    fn check(&self, req: &Req, source: &HostSpec, t: usize) -> Result<Fit, Reject<'a>> {
        if t == req.source {
            return Err(Reject::Current);
        }
        let target = &self.hosts[t];
        if let Some(barred) = target.barred {
            return Err(Reject::Barred(barred));
        }
        let (Some(spec), Some(host), Some(source_host)) = (target.spec, target.host, self.hosts[req.source].host)
        else {
            // Not barred means both are known; a source without them was refused in `resolve`.
            return Err(Reject::Barred(Barred::NotInCluster));
        };
        if !self.allow_cross_group && target.group != self.hosts[req.source].group {
            return Err(Reject::OtherGroup);
        }
        if !spec.accepts_from(source) {
            return Err(Reject::Direction);
        }
        if host.hypervisor_version < source_host.hypervisor_version {
            return Err(Reject::OlderHypervisor);
        }
        if req.member.is_some() && self.blocked[t] == self.serial {
            return Err(Reject::AntiAffinity);
        }
        let vcpus = u64::from(req.vm.vcpus);
        if target.vcpus + vcpus > target.vcpu_capacity {
            return Err(Reject::Vcpus { free: target.vcpu_capacity.saturating_sub(target.vcpus) });
        }
        let memory = req.vm.memory_mib;
        if target.memory + memory > target.memory_capacity {
            return Err(Reject::Memory { free: target.memory_capacity.saturating_sub(target.memory) });
        }
        Ok(Fit {
            free_after: target.memory_capacity - target.memory - memory,
            capacity: target.memory_capacity,
            vms_after: target.vms + 1,
        })
    }

    fn place_one(&mut self, req: &Req<'a>, groups: &mut Groups<'a>, policy: Policy) -> Decision {
        self.serial += 1;
        if let Some((g, _)) = req.member {
            for (&h, &count) in &groups.groups[g].at {
                if count > 0 {
                    self.blocked[h] = self.serial;
                }
            }
        }
        let source = self.hosts[req.source].spec.expect("resolve() refuses sources outside the cluster file");

        let mut best: Option<(usize, Fit)> = None;
        let mut consider = |t: usize, fit: Fit| {
            // Candidates come in index (= name) order, so only a strictly better host wins a tie.
            if best.is_none_or(|(_, b)| policy.prefer(&fit, &b) == Ordering::Less) {
                best = Some((t, fit));
            }
        };
        match &req.candidates {
            None => (0..self.hosts.len()).for_each(|t| {
                if let Ok(fit) = self.check(req, source, t) {
                    consider(t, fit);
                }
            }),
            Some(list) => list.iter().for_each(|&t| {
                if let Ok(fit) = self.check(req, source, t) {
                    consider(t, fit);
                }
            }),
        }

        let (why, rejected) = match best {
            Some((t, fit)) => {
                let why = format!("{}: {}, {}", self.hosts[t].name, policy_words(policy), policy.score(&fit));
                let rejected = if self.explain {
                    self.explain_all(req, source, groups, policy, Some((t, fit)))
                } else {
                    Vec::new()
                };
                (why, rejected)
            }
            None => {
                let why = self.no_fit(req, source, groups);
                let rejected =
                    if self.explain { self.explain_all(req, source, groups, policy, None) } else { Vec::new() };
                (why, rejected)
            }
        };
        if let Some((t, _)) = best {
            self.hosts[t].charge(req.vm);
            if let Some(member) = req.member {
                groups.relocate(member, t);
            }
        }
        Decision { vm: req.vm.name.clone(), host: best.map(|(t, _)| self.hosts[t].name.to_string()), why, rejected }
    }

    fn is_candidate(&self, req: &Req, t: usize) -> bool {
        req.candidates.as_ref().is_none_or(|list| list.binary_search(&t).is_ok())
    }

    /// "no host fits: " and the hosts that came closest, with their reasons.
    fn no_fit(&self, req: &Req, source: &HostSpec, groups: &Groups) -> String {
        const SHOWN: usize = 5;
        let mut closest: Vec<(u8, usize, Reject)> = (0..self.hosts.len())
            .filter(|&t| self.is_candidate(req, t))
            .filter_map(|t| self.check(req, source, t).err().map(|r| (r.rank(), t, r)))
            .collect();
        closest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut parts: Vec<String> = closest
            .iter()
            .take(SHOWN)
            .map(|&(_, t, r)| format!("{} {}", self.hosts[t].name, self.words(req, groups, t, r)))
            .collect();
        let room = SHOWN.saturating_sub(parts.len());
        parts.extend(req.unknown.iter().take(room).map(|name| format!("{name} {UNKNOWN}")));
        let more = closest.len() + req.unknown.len() - parts.len();
        if parts.is_empty() {
            return "no host fits: the move has no candidate hosts".to_string();
        }
        let mut why = format!("no host fits: {}", parts.join("; "));
        if more > 0 {
            why.push_str(&format!("; and {more} more"));
        }
        why
    }

    /// Every host but the chosen one, with why: the hosts that fit (best first), then the
    /// others by name, then candidate names that are no host.
    fn explain_all(
        &self,
        req: &Req,
        source: &HostSpec,
        groups: &Groups,
        policy: Policy,
        chosen: Option<(usize, Fit)>,
    ) -> Vec<(String, String)> {
        let mut fits: Vec<(usize, Fit)> = Vec::new();
        let mut filtered: Vec<(String, String)> = Vec::new();
        for t in 0..self.hosts.len() {
            // A host's own reason (maintenance, ...) says more than "not a candidate".
            let result = match self.check(req, source, t) {
                Ok(_) if !self.is_candidate(req, t) => Err(Reject::NotCandidate),
                result => result,
            };
            match result {
                Ok(fit) => fits.push((t, fit)),
                Err(r) => filtered.push((self.hosts[t].name.to_string(), self.words(req, groups, t, r))),
            }
        }
        fits.sort_by(|a, b| policy.prefer(&a.1, &b.1).then(a.0.cmp(&b.0)));
        let mut rejected: Vec<(String, String)> = match chosen {
            Some((c, chosen)) => fits
                .iter()
                .filter(|(t, _)| *t != c)
                .map(|(t, fit)| (self.hosts[*t].name.to_string(), policy.lost(fit, self.hosts[c].name, &chosen)))
                .collect(),
            None => Vec::new(),
        };
        rejected.extend(filtered);
        rejected.extend(req.unknown.iter().map(|name| (name.to_string(), UNKNOWN.to_string())));
        rejected
    }

    /// A reason in words, to follow the host's name.
    fn words(&self, req: &Req, groups: &Groups, t: usize, reject: Reject) -> String {
        let target = &self.hosts[t];
        let source = &self.hosts[req.source];
        match reject {
            Reject::NotCandidate => "not among this move's candidate hosts".to_string(),
            Reject::Current => format!("is where {} runs now", req.vm.name),
            Reject::Barred(Barred::NotInCluster) => "not in the cluster file".to_string(),
            Reject::Barred(Barred::Unreachable(Some(why))) => format!("unreachable: {why}"),
            Reject::Barred(Barred::Unreachable(None)) => "not in the inventory".to_string(),
            Reject::Barred(Barred::Maintenance) => "in maintenance".to_string(),
            Reject::Barred(Barred::Unavailable) => "unavailable (being drained)".to_string(),
            Reject::OtherGroup => format!(
                "in host group {}, not the source's {} (crossing groups not allowed)",
                self.group_name(target.group),
                self.group_name(source.group)
            ),
            Reject::Direction => {
                let classes: Vec<&str> = target
                    .spec
                    .map(|s| s.tags.iter().filter_map(|t| t.strip_prefix("allow-from:")).collect())
                    .unwrap_or_default();
                format!("accepts VMs only from hosts tagged {}; {} is not", classes.join(" or "), source.name)
            }
            Reject::OlderHypervisor => match (target.host, source.host) {
                (Some(t), Some(s)) => {
                    format!(
                        "hypervisor {} is older than {}'s {}",
                        t.hypervisor_version, source.name, s.hypervisor_version
                    )
                }
                _ => "hypervisor older than the source's".to_string(),
            },
            Reject::AntiAffinity => match req.member.and_then(|m| groups.blocker(m, t).map(|b| (m, b))) {
                Some(((g, _), blocker)) => format!(
                    "anti-affinity group {}: {} {}",
                    groups.groups[g].name,
                    blocker.vm,
                    if blocker.moved { "is planned to move there" } else { "is there" }
                ),
                None => "anti-affinity: another member of the group is there".to_string(),
            },
            Reject::Vcpus { free } => {
                format!("not enough vCPUs: needs {}, {free} free after planned moves", req.vm.vcpus)
            }
            Reject::Memory { free } => {
                format!("not enough memory: needs {} MiB, {free} MiB free after planned moves", req.vm.memory_mib)
            }
        }
    }

    fn group_name(&self, group: usize) -> &str {
        self.group_names.get(group).copied().unwrap_or("?")
    }
}

const UNKNOWN: &str = "unknown host: neither in the cluster file nor in the inventory";

fn policy_words(policy: Policy) -> &'static str {
    match policy {
        Policy::BestFit => "best fit",
        Policy::Spread => "spread",
        Policy::LeastLoaded => "least loaded",
    }
}

/// What a host holds in all, (vCPUs, MiB): its CPUs and memory times the cluster file's
/// overcommit.
pub fn capacity(spec: &HostSpec, host: &Host) -> (u64, u64) {
    (overcommitted(u64::from(host.cpus), spec.cpu_overcommit), overcommitted(host.memory_mib, spec.memory_overcommit))
}

/// `amount × ratio`, rounded down: a ratio of 1.5 on 3 CPUs allows 4 vCPUs, not 5.
fn overcommitted(amount: u64, ratio: f64) -> u64 {
    // `as` saturates: a negative or NaN ratio gives 0, an absurd one u64::MAX.
    (amount as f64 * ratio).floor() as u64
}

#[cfg(test)]
mod tests {
    use ferry_model::Version;

    use super::*;

    /// A fleet and a question in a few lines, one item a line:
    ///
    /// ```text
    /// host NAME [group=G] [cpus=N] [mem=MiB] [cpu-oc=F] [mem-oc=F] [qemu=X.Y.Z] [tags=T,U]
    ///           [maintenance] [down] [extra]      # down: no answer; extra: not in the cluster file
    /// vm NAME on=HOST [vcpus=N] [mem=MiB] [off]
    /// fixed VM to=HOST [aa=GROUP]
    /// move VM [aa=GROUP] [only=HOST,HOST]
    /// policy best-fit|spread|least-loaded
    /// unavailable HOST | cross-groups | explain
    /// ```
    ///
    /// Defaults: group g, 8 CPUs, 8192 MiB, overcommit 1, QEMU 9.0.0; VMs 1 vCPU, 1024 MiB.
    struct Case {
        cluster: ClusterSpec,
        inventory: Inventory,
        fixed: Vec<Fixed>,
        requests: Vec<Request>,
        constraints: Constraints,
        policy: Policy,
    }

    fn parse(input: &str) -> Case {
        let mut case = Case {
            cluster: ClusterSpec::default(),
            inventory: Inventory::default(),
            fixed: Vec::new(),
            requests: Vec::new(),
            constraints: Constraints::default(),
            policy: Policy::default(),
        };
        for line in input.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut words = line.split_whitespace();
            let kind = words.next().expect("a non-empty line has a first word");
            let name = words.next().unwrap_or_default().to_string();
            let mut attrs: HashMap<&str, &str> = HashMap::new();
            for word in words {
                let (key, value) = word.split_once('=').unwrap_or((word, ""));
                attrs.insert(key, value);
            }
            let get = |key: &str, default: &str| attrs.get(key).copied().unwrap_or(default).to_string();
            let num = |key: &str, default: &str| get(key, default).parse::<f64>().expect("a number");
            let list = |key: &str| -> Option<Vec<String>> {
                attrs.get(key).map(|v| v.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
            };
            match kind {
                "host" => {
                    if !attrs.contains_key("extra") {
                        case.cluster.hosts.push(HostSpec {
                            name: name.clone(),
                            uri: format!("test:///{name}"),
                            migration_uri: None,
                            group: get("group", "g"),
                            tags: list("tags").unwrap_or_default(),
                            link_mib_s: None,
                            cpu_overcommit: num("cpu-oc", "1"),
                            memory_overcommit: num("mem-oc", "1"),
                            maintenance: attrs.contains_key("maintenance"),
                            shared_pools: vec![],
                            stream: Default::default(),
                        });
                    }
                    if attrs.contains_key("down") {
                        case.inventory.unreachable.push((name, "connection refused".to_string()));
                        continue;
                    }
                    let qemu: Vec<u32> =
                        get("qemu", "9.0.0").split('.').map(|p| p.parse().expect("a version part")).collect();
                    let version = Version { major: qemu[0], minor: qemu[1], release: qemu[2] };
                    case.inventory.hosts.push(Host {
                        name: name.clone(),
                        uri: format!("test:///{name}"),
                        cpu_model: "qemu64".to_string(),
                        cpu_models: Default::default(),
                        cpus: num("cpus", "8") as u32,
                        memory_mib: num("mem", "8192") as u64,
                        free_memory_mib: 0,
                        hypervisor_version: version,
                        libvirt_version: version,
                        pools: vec![],
                        networks: vec![],
                    });
                }
                "vm" => case.inventory.vms.push(Vm {
                    uuid: format!("uuid-{name}"),
                    name,
                    host: get("on", ""),
                    vcpus: num("vcpus", "1") as u32,
                    memory_mib: num("mem", "1024") as u64,
                    cpu_model: None,
                    virt_type: "kvm".to_string(),
                    memory_locked: false,
                    state: if attrs.contains_key("off") { VmState::ShutOff } else { VmState::Running },
                    disks: vec![],
                    nics: vec![],
                    ferry: None,
                    tags: attrs
                        .get("tag")
                        .map(|g| BTreeMap::from([(ferry_model::ANTI_AFFINITY_TAG.to_string(), g.to_string())]))
                        .unwrap_or_default(),
                }),
                "fixed" => case.fixed.push(Fixed {
                    vm: name,
                    to: get("to", ""),
                    anti_affinity: attrs.get("aa").map(|g| g.to_string()),
                }),
                "move" => case.requests.push(Request {
                    vm: name,
                    anti_affinity: attrs.get("aa").map(|g| g.to_string()),
                    candidates: list("only"),
                }),
                "policy" => case.policy = name.parse().expect("a policy name"),
                "unavailable" => case.constraints.unavailable.push(name),
                "cross-groups" => case.constraints.allow_cross_group = true,
                "explain" => case.constraints.explain = true,
                other => panic!("unknown line kind {other:?} in {line:?}"),
            }
        }
        case
    }

    fn run(case: &Case) -> Vec<Decision> {
        place(&case.cluster, &case.inventory, &case.fixed, &case.requests, &case.constraints, case.policy)
    }

    fn render(decisions: &[Decision]) -> String {
        let mut out = String::new();
        for d in decisions {
            out.push_str(&format!("{} -> {}: {}\n", d.vm, d.host.as_deref().unwrap_or("none"), d.why));
            for (host, why) in &d.rejected {
                out.push_str(&format!("  {host}: {why}\n"));
            }
        }
        out
    }

    fn check(input: &str, expect: &str) {
        let actual = render(&run(&parse(input)));
        // "- host: reason" lines are the two-space-indented rejected lines of `render`.
        let expect: String = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| match l.strip_prefix("- ") {
                Some(rejected) => format!("  {rejected}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        assert_eq!(actual, expect, "\ninput:\n{input}\nactual:\n{actual}\nexpected:\n{expect}");
    }

    #[test]
    fn capacity_counts_running_vms_with_overcommit() {
        // c2 is shut off: it holds nothing. e's 1 CPU × 2.5 allows 2 vCPUs, not 2.5.
        check(
            "
            host a
            host b mem=4096
            host c mem=4096 mem-oc=1.5
            host d cpus=2 mem=65536
            host e cpus=1 cpu-oc=2.5
            vm x on=a vcpus=2 mem=2048
            vm b1 on=b mem=3072
            vm c1 on=c mem=4096
            vm c2 on=c mem=4096 off
            vm d1 on=d
            move x
            explain
            ",
            "
            x -> c: c: best fit, 0 MiB left after (of 6144)
            - e: 6144 MiB left after (of 8192); best fit prefers c, which leaves 0 MiB
            - a: is where x runs now
            - b: not enough memory: needs 2048 MiB, 1024 MiB free after planned moves
            - d: not enough vCPUs: needs 2, 1 free after planned moves
            ",
        );
    }

    #[test]
    fn planned_moves_are_load_and_large_vms_go_first() {
        // f is inbound on b. big is listed last but placed first, then small sees it on c.
        check(
            "
            host a mem=65536
            host b mem=4096
            host c mem=4096
            vm small on=a mem=1024
            vm big on=a mem=3072
            vm f on=a mem=2048
            fixed f to=b
            move small
            move big
            ",
            "
            small -> c: c: best fit, 0 MiB left after (of 4096)
            big -> c: c: best fit, 1024 MiB left after (of 4096)
            ",
        );
    }

    #[test]
    fn outbound_moves_free_nothing() {
        check(
            "
            host a mem=4096
            host b mem=4096
            vm x on=a mem=3072
            vm y on=b mem=3072
            move x
            move y
            ",
            "
            x -> none: no host fits: b not enough memory: needs 3072 MiB, 1024 MiB free after planned moves; a is where x runs now
            y -> none: no host fits: a not enough memory: needs 3072 MiB, 1024 MiB free after planned moves; b is where y runs now
            ",
        );
    }

    const FILTERS: &str = "
        host src group=g1 tags=old qemu=9.0.0
        host maint group=g1 maintenance
        host drained group=g1
        host gone group=g1 down
        host stray extra
        host other group=g2
        host picky group=g1 tags=allow-from:new
        host ancient group=g1 qemu=8.2.0
        vm x on=src
        unavailable drained
        move x
    ";

    #[test]
    fn hard_constraints_filter_hosts() {
        check(
            &format!("{FILTERS} host ok group=g1 tags=allow-from:old,allow-from:new \n explain"),
            "
            x -> ok: ok: best fit, 7168 MiB left after (of 8192)
            - ancient: hypervisor 8.2.0 is older than src's 9.0.0
            - drained: unavailable (being drained)
            - gone: unreachable: connection refused
            - maint: in maintenance
            - other: in host group g2, not the source's g1 (crossing groups not allowed)
            - picky: accepts VMs only from hosts tagged new; src is not
            - src: is where x runs now
            - stray: not in the cluster file
            ",
        );
    }

    #[test]
    fn no_fit_names_the_hosts_that_came_closest() {
        check(
            FILTERS,
            "
            x -> none: no host fits: ancient hypervisor 8.2.0 is older than src's 9.0.0; picky accepts VMs only from hosts tagged new; src is not; other in host group g2, not the source's g1 (crossing groups not allowed); drained unavailable (being drained); maint in maintenance; and 3 more
            ",
        );
    }

    #[test]
    fn crossing_groups_when_allowed_and_ties_by_name() {
        check(
            &format!("{FILTERS} host ok group=g1 \n cross-groups \n explain"),
            "
            x -> ok: ok: best fit, 7168 MiB left after (of 8192)
            - other: tied with ok: 7168 MiB left after (of 8192) on both; ok comes first by name
            - ancient: hypervisor 8.2.0 is older than src's 9.0.0
            - drained: unavailable (being drained)
            - gone: unreachable: connection refused
            - maint: in maintenance
            - picky: accepts VMs only from hosts tagged new; src is not
            - src: is where x runs now
            - stray: not in the cluster file
            ",
        );
    }

    #[test]
    fn anti_affinity_with_fixed_and_placed_members() {
        // db1 is planned onto c; db2 is placed on d first (same size, first by name), and
        // db3 then avoids both; a still holds db1 and db2 (outbound frees nothing) but fits.
        check(
            "
            host a
            host b
            host c
            host d
            vm db1 on=a
            vm db2 on=a
            vm db3 on=b
            fixed db1 to=c aa=db
            move db2 aa=db
            move db3 aa=db
            explain
            ",
            "
            db2 -> d: d: best fit, 7168 MiB left after (of 8192)
            - a: is where db2 runs now
            - b: anti-affinity group db: db3 is there
            - c: anti-affinity group db: db1 is planned to move there
            db3 -> a: a: best fit, 5120 MiB left after (of 8192)
            - b: is where db3 runs now
            - c: anti-affinity group db: db1 is planned to move there
            - d: anti-affinity group db: db2 is planned to move there
            ",
        );
    }

    #[test]
    fn anti_affinity_from_tags() {
        // db1 stays on b and is in no request: its tag alone keeps both others off b. db2
        // (the larger, placed first) goes to c, which then keeps db3 off c.
        check(
            "
            host a
            host b
            host c
            host d mem=4096
            vm db1 on=b tag=db
            vm db2 on=a tag=db
            vm db3 on=d tag=db mem=512
            move db3
            move db2
            explain
            ",
            "
            db3 -> a: a: best fit, 6656 MiB left after (of 8192)
            - b: anti-affinity group db: db1 is there
            - c: anti-affinity group db: db2 is planned to move there
            - d: is where db3 runs now
            db2 -> c: c: best fit, 7168 MiB left after (of 8192)
            - a: is where db2 runs now
            - b: anti-affinity group db: db1 is there
            - d: anti-affinity group db: db3 is there
            ",
        );
        // A plan's group wins over the tag.
        check(
            "
            host a
            host b
            vm db1 on=b tag=db
            vm db2 on=a tag=db
            move db2 aa=other
            ",
            "db2 -> b: b: best fit, 6144 MiB left after (of 8192)",
        );
    }

    #[test]
    fn anti_affinity_with_members_that_stay() {
        // Without the group, web2 would pack onto b next to web1.
        let fleet = "
            host a
            host b
            host c
            vm web1 on=b
            vm web2 on=a
        ";
        check(&format!("{fleet} move web2"), "web2 -> b: b: best fit, 6144 MiB left after (of 8192)");
        // A fixed move to the current host declares a member that stays, and adds no load.
        check(
            &format!("{fleet} fixed web1 to=b aa=web \n move web2 aa=web \n explain"),
            "
            web2 -> c: c: best fit, 7168 MiB left after (of 8192)
            - a: is where web2 runs now
            - b: anti-affinity group web: web1 is there
            ",
        );
        // A member that cannot be placed stays where it is, and keeps its host.
        check(
            "
            host a mem=20480
            host b
            host c
            vm huge on=a mem=16384
            vm small on=b
            move huge aa=g
            move small aa=g
            ",
            "
            huge -> none: no host fits: c not enough memory: needs 16384 MiB, 8192 MiB free after planned moves; b anti-affinity group g: small is there; a is where huge runs now
            small -> c: c: best fit, 7168 MiB left after (of 8192)
            ",
        );
    }

    /// full: 1024 MiB left after, 3 VMs; many: 5120 left (62%), 5 VMs; big: 15360 left (46%), 2 VMs.
    const SCORES: &str = "
        host src mem=65536
        host full
        host many
        host big mem=32768
        vm x on=src
        vm f1 on=full mem=3072
        vm f2 on=full mem=3072
        vm m1 on=many mem=512
        vm m2 on=many mem=512
        vm m3 on=many mem=512
        vm m4 on=many mem=512
        vm b1 on=big mem=16384
        move x
        explain
    ";

    #[test]
    fn best_fit_packs() {
        check(
            &format!("{SCORES} policy best-fit"),
            "
            x -> full: full: best fit, 1024 MiB left after (of 8192)
            - many: 5120 MiB left after (of 8192); best fit prefers full, which leaves 1024 MiB
            - big: 15360 MiB left after (of 32768); best fit prefers full, which leaves 1024 MiB
            - src: is where x runs now
            ",
        );
    }

    #[test]
    fn spread_takes_the_fewest_vms() {
        check(
            &format!("{SCORES} policy spread"),
            "
            x -> big: big: spread, 2 VMs after placing
            - full: 3 VMs after placing; spread prefers big, which would have 2
            - many: 5 VMs after placing; spread prefers big, which would have 2
            - src: is where x runs now
            ",
        );
    }

    #[test]
    fn least_loaded_takes_the_largest_free_share() {
        check(
            &format!("{SCORES} policy least-loaded"),
            "
            x -> many: many: least loaded, 62% of memory free after (5120 of 8192 MiB)
            - big: 46% of memory free after (15360 of 32768 MiB); least loaded prefers many, with 62% free
            - full: 12% of memory free after (1024 of 8192 MiB); least loaded prefers many, with 62% free
            - src: is where x runs now
            ",
        );
    }

    #[test]
    fn candidates_restrict_the_targets() {
        check(
            "
            host a
            host b
            host c
            host d maintenance
            vm x on=a
            vm y on=a
            vm z on=a
            move x only=c,d,zz
            move y only=d,zz
            move z only=
            explain
            ",
            "
            x -> c: c: best fit, 7168 MiB left after (of 8192)
            - a: is where x runs now
            - b: not among this move's candidate hosts
            - d: in maintenance
            - zz: unknown host: neither in the cluster file nor in the inventory
            y -> none: no host fits: d in maintenance; zz unknown host: neither in the cluster file nor in the inventory
            - a: is where y runs now
            - b: not among this move's candidate hosts
            - c: not among this move's candidate hosts
            - d: in maintenance
            - zz: unknown host: neither in the cluster file nor in the inventory
            z -> none: no host fits: the move has no candidate hosts
            - a: is where z runs now
            - b: not among this move's candidate hosts
            - c: not among this move's candidate hosts
            - d: in maintenance
            ",
        );
    }

    #[test]
    fn requests_that_cannot_be_placed_at_all() {
        check(
            "
            host a
            host b
            vm x on=a
            vm y on=a
            vm lost on=nowhere
            fixed y to=b
            move ghost
            move x
            move x
            move y
            move lost
            ",
            "
            ghost -> none: ghost is not in the inventory
            x -> b: b: best fit, 6144 MiB left after (of 8192)
            x -> none: x is requested more than once; placed once only
            y -> none: y already moves to b, which the plan names
            lost -> none: lost is on nowhere, which is neither in the cluster file nor in the inventory
            ",
        );
    }

    #[test]
    fn policies_parse_and_print() {
        for policy in Policy::ALL {
            assert_eq!(policy.to_string().parse::<Policy>(), Ok(policy));
        }
        assert_eq!(Policy::default(), Policy::BestFit);
        assert_eq!(
            "worst-fit".parse::<Policy>().map_err(|e| e.to_string()),
            Err("unknown placement policy `worst-fit`: expected one of best-fit, spread, least-loaded".to_string())
        );
    }
}
