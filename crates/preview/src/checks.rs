//! Prechecks: for each planned move, named checks that pass, fail, warn or inform, each with
//! a reason that names the numbers. An operator may waive a check by name; a waived failure
//! shows as a warning, never silently.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use ferry_model::{
    blocking_claim, claim_refusal, ClaimFacts, ClusterSpec, Compression, Host, HostSpec, Inventory, Locality, Phase,
    StreamMode, Transport, Vm, VmState,
};
use ferry_plan::{Mode, Policy, StaleCopies};
use serde::{Deserialize, Serialize};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// Fine.
    Passed,
    /// Worth knowing; not a problem.
    Info,
    /// A risk, or a waived failure.
    Warning,
    /// The move cannot happen as planned.
    Failed,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Passed => "PASSED",
            Outcome::Info => "INFO",
            Outcome::Warning => "WARNING",
            Outcome::Failed => "FAILED",
        })
    }
}

/// The checks, by name (the names `--ignore` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    /// The VM exists and its state allows the planned kind of move.
    VmState,
    /// The target exists, answers, is not the source, is not being drained.
    Target,
    /// The target is not in maintenance.
    Maintenance,
    /// Memory on the target, counting every planned inbound move and overcommit.
    Memory,
    /// vCPUs on the target, likewise.
    Vcpus,
    /// The target can run the VM's CPU model.
    CpuModel,
    /// The target's hypervisor is not older than the source's.
    HypervisorVersion,
    /// Same host group unless the plan allows crossing.
    HostGroup,
    /// Shared volumes visible on the target; room for host-local copies.
    Volumes,
    /// The VM's networks exist on the target.
    Networks,
    /// Members of a group never end on one host.
    AntiAffinity,
    /// The target accepts VMs from the source (`allow-from:` tags).
    Direction,
    /// The VM is not being moved by another run (ferry's metadata on the domain).
    ActiveRun,
    /// Both hosts' QEMU and libvirt can carry the stream the policy asks (TLS, parallel
    /// connections, compression, zero-copy) for a live move.
    Stream,
}

const NAMES: [(CheckName, &str); 14] = [
    (CheckName::VmState, "vm-state"),
    (CheckName::Target, "target"),
    (CheckName::Maintenance, "maintenance"),
    (CheckName::Memory, "memory"),
    (CheckName::Vcpus, "vcpus"),
    (CheckName::CpuModel, "cpu-model"),
    (CheckName::HypervisorVersion, "hypervisor-version"),
    (CheckName::HostGroup, "host-group"),
    (CheckName::Volumes, "volumes"),
    (CheckName::Networks, "networks"),
    (CheckName::AntiAffinity, "anti-affinity"),
    (CheckName::Direction, "direction"),
    (CheckName::ActiveRun, "active-run"),
    (CheckName::Stream, "stream"),
];

impl CheckName {
    /// The name as printed and as `--ignore` takes it.
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(c, _)| *c == self).map(|(_, n)| *n).unwrap_or("?")
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CheckName {
    type Err = String;
    fn from_str(s: &str) -> Result<CheckName, String> {
        NAMES.iter().find(|(_, n)| *n == s).map(|(c, _)| *c).ok_or_else(|| {
            let all: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
            format!("{s:?} is not a check; checks are {}", all.join(", "))
        })
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Its verdict.
    pub outcome: Outcome,
    /// Why, with the numbers.
    pub message: String,
    /// A live run holds the VM (its claim in ferry's metadata): no `--ignore` waives this
    /// failure, since the driver would refuse the move anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl Check {
    fn new(name: CheckName, outcome: Outcome, message: impl Into<String>) -> Check {
        Check { name, outcome, message: message.into(), held: false }
    }
}

/// A move with its target chosen (by the plan or by placement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// VM UUID.
    pub uuid: String,
    /// Source host.
    pub from: String,
    /// Target host; none when placement found none.
    pub to: Option<String>,
    /// Anti-affinity group: the plan's group, else the VM's `anti_affinity` tag.
    pub group: Option<String>,
}

/// A volume on a host named like one of a VM's host-local disks (same pool, name and size)
/// and used by no domain there: a copy the move would meet on that host, which it never
/// overwrites. Found by the caller (IO), judged by `ferry_back::stale`'s rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierCopy {
    /// The host.
    pub host: String,
    /// Storage pool.
    pub pool: String,
    /// Volume name.
    pub name: String,
    /// How ferry knows it left this copy there (an earlier move away kept it), in words;
    /// `None` when it cannot say: then nothing of ferry's ever touches it.
    pub left_by_ferry: Option<String>,
}

/// The command that removes the copies of `vm`'s disks kept on hosts it does not run on
/// (each re-checked unused on its host before it goes).
pub fn removal_command(vm: &str) -> String {
    format!("ferry cleanup --vm {vm} --source-volumes")
}

/// Everything the checks look at.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    /// Hosts as declared.
    pub cluster: &'a ClusterSpec,
    /// Hosts and VMs as reported.
    pub inventory: &'a Inventory,
    /// The plan's policy.
    pub policy: &'a Policy,
    /// Every planned move, in plan order: earlier moves get capacity first.
    pub moves: &'a [Candidate],
    /// Hosts being drained: never targets.
    pub unavailable: &'a [String],
    /// By VM UUID, the copies of its disks found on other hosts (any host may be a target).
    pub earlier_copies: &'a HashMap<String, Vec<EarlierCopy>>,
    /// Now, Unix ms, to judge whether a claim in ferry's metadata is fresh; none: every
    /// claim counts as fresh.
    pub now_ms: Option<i64>,
    /// Runs whose owners are alive in the journal: their claims hold however old.
    pub live_runs: &'a [String],
}

/// Runs every check on move `index` of `ctx.moves`.
pub fn check_move(ctx: &CheckContext<'_>, index: usize) -> Vec<Check> {
    let candidate = &ctx.moves[index];
    let Some(vm) = ctx.inventory.vms.iter().find(|v| v.uuid == candidate.uuid) else {
        return vec![Check::new(CheckName::VmState, Outcome::Failed, "the VM is not in the inventory")];
    };
    let mut checks = vec![vm_state(vm, ctx.policy), active_run(vm, ctx)];
    let Some(to) = &candidate.to else {
        checks.push(Check::new(CheckName::Target, Outcome::Failed, "no target: placement found no host"));
        return checks;
    };
    let (Some(target_spec), Some(source_spec)) = (ctx.cluster.host(to), ctx.cluster.host(&candidate.from)) else {
        checks.push(Check::new(CheckName::Target, Outcome::Failed, format!("{to} is not in the cluster")));
        return checks;
    };
    let Some(target) = ctx.inventory.host(to) else {
        let why =
            ctx.inventory.unreachable.iter().find(|(h, _)| h == to).map(|(_, w)| w.as_str()).unwrap_or("no answer");
        checks.push(Check::new(CheckName::Target, Outcome::Failed, format!("{to} is unreachable: {why}")));
        return checks;
    };
    checks.push(if *to == candidate.from {
        Check::new(CheckName::Target, Outcome::Failed, format!("{} is already on {to}", vm.name))
    } else if ctx.unavailable.contains(to) {
        Check::new(CheckName::Target, Outcome::Failed, format!("{to} is being drained by this plan"))
    } else {
        Check::new(CheckName::Target, Outcome::Passed, format!("{to} answers ({})", target.uri))
    });
    checks.push(if target_spec.maintenance {
        Check::new(CheckName::Maintenance, Outcome::Failed, format!("{to} is in maintenance"))
    } else {
        Check::new(CheckName::Maintenance, Outcome::Passed, format!("{to} is not in maintenance"))
    });
    let (memory, vcpus) = capacity(ctx, index, vm, target, target_spec);
    checks.push(memory);
    checks.push(vcpus);
    let source = ctx.inventory.host(&candidate.from);
    checks.push(cpu_model(vm, source, target));
    checks.push(match source {
        Some(s) if target.hypervisor_version < s.hypervisor_version => Check::new(
            CheckName::HypervisorVersion,
            Outcome::Failed,
            format!("{to} runs QEMU {}, older than {} on {}", target.hypervisor_version, s.hypervisor_version, s.name),
        ),
        Some(s) => Check::new(
            CheckName::HypervisorVersion,
            Outcome::Passed,
            format!("QEMU {} on {to}, {} on {}", target.hypervisor_version, s.hypervisor_version, s.name),
        ),
        None => {
            Check::new(CheckName::HypervisorVersion, Outcome::Warning, format!("{} did not answer", candidate.from))
        }
    });
    checks.push(if target_spec.group == source_spec.group {
        Check::new(CheckName::HostGroup, Outcome::Passed, format!("both in group {}", target_spec.group))
    } else if ctx.policy.allow_cross_group {
        Check::new(
            CheckName::HostGroup,
            Outcome::Info,
            format!("crosses from group {} to {} (allowed by the plan)", source_spec.group, target_spec.group),
        )
    } else {
        Check::new(
            CheckName::HostGroup,
            Outcome::Failed,
            format!(
                "{to} is in group {}, {} in {}: set policy.allow_cross_group = true to cross",
                target_spec.group, candidate.from, source_spec.group
            ),
        )
    });
    checks.push(volumes(ctx, index, vm, target));
    checks.push(networks(vm, target));
    if ctx.policy.mode != Mode::Cold {
        checks.push(stream(ctx.policy, vm, (source_spec, source), (target_spec, target)));
    }
    if let Some(check) = anti_affinity(ctx, index, vm) {
        checks.push(check);
    }
    checks.push(if target_spec.accepts_from(source_spec) {
        Check::new(CheckName::Direction, Outcome::Passed, format!("{to} accepts VMs from {}", candidate.from))
    } else {
        let allowed: Vec<&str> = target_spec.tags.iter().filter_map(|t| t.strip_prefix("allow-from:")).collect();
        Check::new(
            CheckName::Direction,
            Outcome::Failed,
            format!(
                "{to} accepts VMs only from hosts tagged {}; {} has none of them",
                allowed.join(" or "),
                candidate.from
            ),
        )
    });
    checks
}

/// Whether both hosts can carry the stream the policy asks between them: every feature it
/// uses against each host's QEMU and libvirt, zero-copy against the guest's locked memory,
/// and what the versions cannot tell (TLS needs migration certificates on both hosts). Under
/// `transport = "auto"`, the compressed stream `auto` may turn on: a host that cannot carry
/// it says so with `compression = "none"` in the cluster file, and `auto` then keeps one
/// plain stream there.
fn stream(policy: &Policy, vm: &Vm, from: (&HostSpec, Option<&Host>), to: (&HostSpec, &Host)) -> Check {
    let tls = policy.tls_between(from.0, to.0);
    let options = match policy.transport {
        StreamMode::Fixed => policy.stream_between(from.0, to.0),
        StreamMode::Auto => policy.auto_stream_between(from.0, to.0),
    };
    let mut used: Vec<String> = Vec::new();
    if tls {
        used.push("TLS".into());
    }
    if options.multifd() {
        used.push(format!("{} connections", options.parallel_connections));
    }
    if options.compression != Compression::None {
        let level = options.compression_level.map(|l| format!(" level {l}")).unwrap_or_default();
        used.push(format!("{}{level}", options.compression));
    }
    if options.zerocopy {
        used.push("zero-copy".into());
    }
    if used.is_empty() {
        return Check::new(CheckName::Stream, Outcome::Passed, "one plain stream");
    }
    let hosts = [Some(to.1), from.1];
    let mut refused = Vec::new();
    for needs in options.needs(tls, policy.postcopy) {
        for host in hosts.iter().flatten() {
            if host.hypervisor_version < needs.qemu {
                refused.push(format!(
                    "{} needs QEMU {} or later; {} runs {}",
                    needs.what, needs.qemu, host.name, host.hypervisor_version
                ));
            }
            if host.libvirt_version < needs.libvirt {
                refused.push(format!(
                    "{} needs libvirt {} or later; {} runs {}",
                    needs.what, needs.libvirt, host.name, host.libvirt_version
                ));
            }
        }
    }
    refused.extend(options.problems(tls));
    if options.zerocopy && !vm.memory_locked {
        refused.push(format!(
            "zero-copy needs {}'s memory locked (<memoryBacking><locked/></memoryBacking> in its domain XML): \
             the kernel pins pages it sends without copying",
            vm.name
        ));
    }
    if !refused.is_empty() {
        return Check::new(CheckName::Stream, Outcome::Failed, refused.join("; "));
    }
    let mut unknown = Vec::new();
    let plain: Vec<&str> =
        [from.0, to.0].iter().filter(|h| h.transport() != Transport::Tls).map(|h| h.name.as_str()).collect();
    if tls && !plain.is_empty() {
        unknown.push(format!(
            "{} reached without TLS: its QEMU needs migration certificates (migrate_tls_x509_cert_dir)",
            plain.join(" and ")
        ));
    }
    if from.1.is_none() {
        unknown.push(format!("{} did not answer: its versions are not known", from.0.name));
    }
    if unknown.is_empty() {
        Check::new(CheckName::Stream, Outcome::Passed, used.join(", "))
    } else {
        Check::new(CheckName::Stream, Outcome::Warning, format!("{}; {}", used.join(", "), unknown.join("; ")))
    }
}

/// Turns failures of the named checks into warnings that say they were waived; never a
/// failure because a live run holds the VM.
pub fn waive(checks: &mut [Check], ignore: &[CheckName]) {
    for check in checks.iter_mut().filter(|c| c.outcome == Outcome::Failed && !c.held && ignore.contains(&c.name)) {
        check.outcome = Outcome::Warning;
        check.message = format!("waived (--ignore {}): {}", check.name, check.message);
    }
}

/// The worst outcome of a list of checks.
pub fn verdict(checks: &[Check]) -> Outcome {
    checks.iter().map(|c| c.outcome).max().unwrap_or(Outcome::Passed)
}

/// The hypervisor knows which run moves a VM: ferry writes its metadata on the domain before
/// each phase and leaves `finalized` behind. Any other phase means a move is in flight, or
/// was interrupted and awaits `ferry resume` or `ferry cleanup`. A move in flight whose run
/// is alive (`ferry_model::blocking_claim`) holds the VM: that failure cannot be waived.
fn active_run(vm: &Vm, ctx: &CheckContext<'_>) -> Check {
    let facts = ClaimFacts {
        run_id: "",
        now_ms: ctx.now_ms.unwrap_or(i64::MIN),
        live_runs: ctx.live_runs,
        owner_running: false,
        job_running: false,
    };
    if let Some(holder) = blocking_claim(vm.ferry.as_ref(), &facts) {
        let message = format!("{} (a live run's lock: --ignore cannot waive it)", claim_refusal(holder, &vm.host));
        return Check { held: true, ..Check::new(CheckName::ActiveRun, Outcome::Failed, message) };
    }
    match &vm.ferry {
        Some(m) if m.phase != Phase::Finalized => Check::new(
            CheckName::ActiveRun,
            Outcome::Failed,
            format!(
                "run {} is moving it (phase {}, from {}): let that run finish, or resume or clean it up",
                m.run_id, m.phase, m.original_host
            ),
        ),
        Some(m) => {
            Check::new(CheckName::ActiveRun, Outcome::Passed, format!("last moved by run {}, finished", m.run_id))
        }
        None => Check::new(CheckName::ActiveRun, Outcome::Passed, "not part of any run"),
    }
}

fn vm_state(vm: &Vm, policy: &Policy) -> Check {
    match (vm.state, policy.mode) {
        (_, Mode::Cold) => Check::new(
            CheckName::VmState,
            Outcome::Info,
            format!("{}: moves cold (policy.mode = cold); the guest restarts", vm.state),
        ),
        (VmState::Running, _) => Check::new(CheckName::VmState, Outcome::Passed, "running: moves live"),
        (VmState::Paused, _) => Check::new(CheckName::VmState, Outcome::Warning, "paused: moves live and stays paused"),
        (VmState::ShutOff, Mode::LiveOrCold) => {
            Check::new(CheckName::VmState, Outcome::Info, "shut off: moves cold (nothing runs to migrate live)")
        }
        (VmState::ShutOff, Mode::Live) => Check::new(
            CheckName::VmState,
            Outcome::Failed,
            "shut off: a stopped VM can only move cold; set policy.mode = \"live-or-cold\" or \"cold\"",
        ),
        (VmState::Other, _) => Check::new(
            CheckName::VmState,
            Outcome::Failed,
            "neither running, paused nor shut off: ferry will not touch it",
        ),
    }
}

/// Memory and vCPUs on the target: what runs there, plus every move planned into it up to
/// and including this one, against its capacity times the overcommit ratios.
fn capacity(
    ctx: &CheckContext<'_>,
    index: usize,
    vm: &Vm,
    target: &Host,
    spec: &ferry_model::HostSpec,
) -> (Check, Check) {
    let running = ctx.inventory.vms_on(&target.name).filter(|v| matches!(v.state, VmState::Running | VmState::Paused));
    let (mut memory, mut vcpus) = running.fold((0u64, 0u64), |(m, c), v| (m + v.memory_mib, c + u64::from(v.vcpus)));
    let mut inbound = 0;
    for earlier in &ctx.moves[..index] {
        if earlier.to.as_deref() == Some(&target.name) && earlier.from != target.name {
            if let Some(v) = ctx.inventory.vms.iter().find(|v| v.uuid == earlier.uuid) {
                memory += v.memory_mib;
                vcpus += u64::from(v.vcpus);
                inbound += 1;
            }
        }
    }
    let memory_cap = (target.memory_mib as f64 * spec.memory_overcommit).floor() as u64;
    let vcpu_cap = (f64::from(target.cpus) * spec.cpu_overcommit).floor() as u64;
    let before = if inbound > 0 { format!(" after {inbound} earlier planned inbound moves") } else { String::new() };
    let memory_free = memory_cap.saturating_sub(memory);
    let memory_check = if memory + vm.memory_mib > memory_cap {
        Check::new(
            CheckName::Memory,
            Outcome::Failed,
            format!(
                "{}: not enough memory for {}: needs {} MiB, {memory_free} MiB free{before} ({memory} of {memory_cap} MiB committed, overcommit {})",
                target.name, vm.name, vm.memory_mib, spec.memory_overcommit
            ),
        )
    } else {
        Check::new(
            CheckName::Memory,
            Outcome::Passed,
            format!("needs {} MiB, {memory_free} MiB free on {}{before}", vm.memory_mib, target.name),
        )
    };
    let vcpu_free = vcpu_cap.saturating_sub(vcpus);
    let vcpu_check = if vcpus + u64::from(vm.vcpus) > vcpu_cap {
        Check::new(
            CheckName::Vcpus,
            Outcome::Failed,
            format!(
                "{}: not enough vCPUs for {}: needs {}, {vcpu_free} free{before} ({vcpus} of {vcpu_cap} committed, overcommit {})",
                target.name, vm.name, vm.vcpus, spec.cpu_overcommit
            ),
        )
    } else {
        Check::new(
            CheckName::Vcpus,
            Outcome::Passed,
            format!("needs {}, {vcpu_free} free on {}{before}", vm.vcpus, target.name),
        )
    };
    (memory_check, vcpu_check)
}

fn cpu_model(vm: &Vm, source: Option<&Host>, target: &Host) -> Check {
    let usable = target.cpu_models.get(&vm.virt_type);
    match (&vm.cpu_model, usable) {
        (Some(model), None) => Check::new(
            CheckName::CpuModel,
            Outcome::Warning,
            format!(
                "{} did not list its usable CPU models for {} guests; {model} unverified",
                target.name, vm.virt_type
            ),
        ),
        (Some(model), Some(models)) if models.iter().any(|m| m == model) => Check::new(
            CheckName::CpuModel,
            Outcome::Passed,
            format!("{} can run CPU model {model} ({})", target.name, vm.virt_type),
        ),
        (Some(model), Some(_)) => Check::new(
            CheckName::CpuModel,
            Outcome::Failed,
            format!("{} cannot run CPU model {model} ({})", target.name, vm.virt_type),
        ),
        // No named model: the guest sees the host's CPU, which must then be the same.
        (None, _) => match source {
            Some(s) if s.cpu_model == target.cpu_model => {
                Check::new(CheckName::CpuModel, Outcome::Passed, format!("host CPU {} on both", target.cpu_model))
            }
            Some(s) => Check::new(
                CheckName::CpuModel,
                Outcome::Warning,
                format!(
                    "the guest uses the host CPU: {} on {}, {} on {}",
                    s.cpu_model, s.name, target.cpu_model, target.name
                ),
            ),
            None => Check::new(CheckName::CpuModel, Outcome::Warning, "the source did not answer"),
        },
    }
}

fn volumes(ctx: &CheckContext<'_>, index: usize, vm: &Vm, target: &Host) -> Check {
    if vm.disks.is_empty() {
        return Check::new(CheckName::Volumes, Outcome::Passed, "no disks");
    }
    let copies = ctx.earlier_copies.get(&vm.uuid).into_iter().flatten().filter(|c| c.host == target.name);
    let mut replaced = Vec::new();
    for copy in copies {
        let at = format!("{}/{} on {}", copy.pool, copy.name, copy.host);
        let Some(why) = &copy.left_by_ferry else {
            return Check::new(
                CheckName::Volumes,
                Outcome::Failed,
                format!(
                    "{at} has the name and size of {}'s disk, but ferry did not leave it there (no move of this \
                     journal kept it, and {}'s metadata names no move from {}): ferry will not touch it; remove it \
                     by hand once you know whose it is (`virsh vol-delete --pool {} {}` on {}), or choose another \
                     target",
                    vm.name, vm.name, copy.host, copy.pool, copy.name, copy.host
                ),
            );
        };
        match ctx.policy.stale_copies {
            StaleCopies::Refuse => {
                return Check::new(
                    CheckName::Volumes,
                    Outcome::Failed,
                    format!(
                        "{at} is an earlier copy of {}'s disk ({why}); the move will not overwrite it: `{}` deletes \
                         it, or set policy.stale_copies = \"replace\" to delete it as the move starts",
                        vm.name,
                        removal_command(&vm.name)
                    ),
                );
            }
            StaleCopies::Replace => replaced.push(format!(
                "deletes {at}, an earlier copy of {}'s disk ({why}), just before preparing the target \
                 (policy.stale_copies = replace)",
                vm.name
            )),
        }
    }
    // Space already promised in each target pool to earlier moves' copies.
    let mut promised: HashMap<&str, u64> = HashMap::new();
    for earlier in &ctx.moves[..index] {
        if earlier.to.as_deref() != Some(&target.name) {
            continue;
        }
        if let Some(v) = ctx.inventory.vms.iter().find(|v| v.uuid == earlier.uuid) {
            for d in v.local_disks() {
                if let Some(pool) = &d.pool {
                    *promised.entry(pool.as_str()).or_default() += d.capacity.unwrap_or(0);
                }
            }
        }
    }
    let mut notes = Vec::new();
    for disk in &vm.disks {
        match (disk.locality, &disk.pool) {
            (Locality::Shared, None) => notes.push(format!("{}: shared ({}), not copied", disk.target, disk.source)),
            (Locality::Shared, Some(pool)) => {
                if !target.pools.iter().any(|p| &p.name == pool && p.shared) {
                    return Check::new(
                        CheckName::Volumes,
                        Outcome::Failed,
                        format!("{}: shared pool {pool} is not declared on {}", disk.target, target.name),
                    );
                }
                notes.push(format!("{}: in shared pool {pool}, not copied", disk.target));
            }
            (Locality::HostLocal, None) => {
                return Check::new(
                    CheckName::Volumes,
                    Outcome::Failed,
                    format!(
                        "{} ({}) is in no storage pool: ferry cannot create its copy on {}",
                        disk.target, disk.source, target.name
                    ),
                )
            }
            (Locality::HostLocal, Some(pool)) => {
                let Some(target_pool) = target.pools.iter().find(|p| &p.name == pool) else {
                    return Check::new(
                        CheckName::Volumes,
                        Outcome::Failed,
                        format!("{}: {} has no storage pool {pool} to copy into", disk.target, target.name),
                    );
                };
                let size = disk.capacity.unwrap_or(0);
                let taken = promised.get(pool.as_str()).copied().unwrap_or(0);
                let free = target_pool.available.saturating_sub(taken);
                if size > free {
                    return Check::new(
                        CheckName::Volumes,
                        Outcome::Failed,
                        format!(
                            "{}: pool {pool} on {} has {} MiB free, the copy needs {} MiB",
                            disk.target,
                            target.name,
                            free >> 20,
                            size >> 20
                        ),
                    );
                }
                *promised.entry(pool.as_str()).or_default() += size;
                notes.push(format!(
                    "{}: copies {} MiB into pool {pool} ({} MiB free)",
                    disk.target,
                    size >> 20,
                    free >> 20
                ));
            }
        }
    }
    if replaced.is_empty() {
        Check::new(CheckName::Volumes, Outcome::Passed, notes.join("; "))
    } else {
        replaced.extend(notes);
        Check::new(CheckName::Volumes, Outcome::Warning, replaced.join("; "))
    }
}

fn networks(vm: &Vm, target: &Host) -> Check {
    let missing: Vec<&str> = vm
        .nics
        .iter()
        .filter_map(|n| n.network.as_deref())
        .filter(|net| !target.networks.iter().any(|t| t == net))
        .collect();
    if !missing.is_empty() {
        return Check::new(
            CheckName::Networks,
            Outcome::Failed,
            format!("{} has no network {}", target.name, missing.join(", ")),
        );
    }
    if vm.nics.is_empty() {
        Check::new(CheckName::Networks, Outcome::Passed, "no network interfaces")
    } else {
        Check::new(CheckName::Networks, Outcome::Passed, format!("{} has every network the VM uses", target.name))
    }
}

/// No two members of a group end on one host: members that move end on their target,
/// the others stay where they are. A move's group is the plan's, else its VM's tag; VMs
/// tagged into the group that do not move count where they run.
fn anti_affinity(ctx: &CheckContext<'_>, index: usize, vm: &Vm) -> Option<Check> {
    let me = &ctx.moves[index];
    let group = me.group.as_deref().or_else(|| vm.anti_affinity())?;
    let to = me.to.as_ref()?;
    let moving = ctx
        .moves
        .iter()
        .enumerate()
        .filter(|(i, m)| *i != index && m.group.as_deref() == Some(group))
        .map(|(_, m)| (m.uuid.as_str(), m.to.as_ref().unwrap_or(&m.from)));
    let staying = ctx
        .inventory
        .vms
        .iter()
        .filter(|v| v.uuid != vm.uuid && v.anti_affinity() == Some(group))
        .filter(|v| !ctx.moves.iter().any(|m| m.uuid == v.uuid))
        .map(|v| (v.uuid.as_str(), &v.host));
    let clash = moving.chain(staying).find(|(_, at)| *at == to);
    Some(match clash {
        Some((other, _)) => {
            let name = ctx.inventory.vms.iter().find(|v| v.uuid == other).map(|v| v.name.as_str()).unwrap_or("?");
            Check::new(
                CheckName::AntiAffinity,
                Outcome::Failed,
                format!("{} and {name} of group {group} would both be on {to}", vm.name),
            )
        }
        None => {
            Check::new(CheckName::AntiAffinity, Outcome::Passed, format!("no other member of group {group} on {to}"))
        }
    })
}
