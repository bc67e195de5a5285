//! The whole preview of a plan: targets placed, every check run, every move estimated, the
//! run's makespan. Changes nothing; knows nothing of IO.

use std::collections::HashMap;
use std::fmt::Write as _;

use ferry_model::{
    choose_stream, AutoFacts, ClusterSpec, Compression, HostSpec, Inventory, StreamLimits, StreamMode, StreamOptions,
    VmState,
};
use ferry_plan::{Mode, Plan, ResolvedMove, Target};
use serde::Serialize;

use crate::checks::{check_move, verdict, waive, Candidate, Check, CheckContext, CheckName, EarlierCopy, Outcome};
use crate::estimate::{self, ColdInput, LiveInput, MakespanLimits, PlannedMove};
use crate::placement::{self, Constraints, Fixed, Placer, Request};
use crate::schedule;

/// Link bandwidth assumed for a host whose cluster entry names none, MiB/s.
pub const ASSUMED_LINK_MIB_S: f64 = 1000.0;

/// Choices the operator makes for a preview.
#[derive(Debug, Clone, Default)]
pub struct PreviewConfig {
    /// Checks whose failures become warnings.
    pub ignore: Vec<CheckName>,
    /// Explain each placement (why not the other hosts).
    pub explain: bool,
    /// Dirty rates measured through the hypervisor, MiB/s, by VM UUID.
    pub dirty_rates: HashMap<String, f64>,
    /// What is known of each VM's memory beyond its size, by UUID (a simulated fleet
    /// declares it); unknown, all of memory counts.
    pub memory: HashMap<String, MemoryProfile>,
    /// By VM UUID, the copies of its host-local disks found unused on other hosts, each
    /// judged ferry's or not (`ferry_back::stale`); empty when the hosts were not asked.
    pub earlier_copies: HashMap<String, Vec<EarlierCopy>>,
    /// Now, Unix ms, to judge claims in ferry's metadata (see `CheckContext::now_ms`).
    pub now_ms: Option<i64>,
    /// Runs whose owners are alive in the journal.
    pub live_runs: Vec<String>,
    /// By VM UUID, how its memory compressed the last time a compressed stream carried it
    /// (the journal's latest such attempt); a VM not here is assumed not to compress.
    pub compression: HashMap<String, ObservedCompression>,
    /// By VM UUID, how much memory its latest live migration carried (the journal's latest
    /// successful live attempt); used for a VM whose memory is not declared.
    pub carried: HashMap<String, ObservedMemory>,
}

/// A compression ratio seen on a VM's earlier migration.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedCompression {
    /// Guest memory carried per byte sent.
    pub ratio: f64,
    /// The run it was seen in.
    pub run: String,
}

/// The memory a VM's earlier live migration carried: its normal (non-zero) pages, every
/// pass's, in bytes of guest memory however the stream compressed them.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedMemory {
    /// Guest memory carried, MiB.
    pub carried_mib: f64,
    /// The run it was seen in.
    pub run: String,
}

/// What is known of a VM's memory beyond its size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryProfile {
    /// Memory holding anything but zeros, MiB.
    pub nonzero_mib: Option<f64>,
    /// The memory the guest keeps rewriting, MiB.
    pub working_set_mib: Option<f64>,
}

/// How a move will happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Live migration.
    Live,
    /// Shut down, copy, start on the target.
    Cold,
}

/// Where placement put a VM and why.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementView {
    /// The reason for the choice (or for no choice).
    pub why: String,
    /// With `--explain`: every other host and why not.
    pub rejected: Vec<(String, String)>,
}

/// A move's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct EstimateView {
    /// Bandwidth assumed: the host links shared by concurrent moves, MiB/s.
    pub bandwidth_mib_s: f64,
    /// Dirty rate assumed, MiB/s.
    pub dirty_mib_s: f64,
    /// Whether the dirty rate was measured (else assumed idle).
    pub dirty_measured: bool,
    /// Copy time, s.
    pub transfer_s: f64,
    /// Copy time plus the fixed cost of a migration, s.
    pub total_s: f64,
    /// Expected downtime ("blackout"), ms.
    pub downtime_ms: f64,
    /// Memory passes.
    pub passes: u32,
    /// Whether it is expected to converge.
    pub converges: bool,
    /// In words.
    pub note: String,
    /// What policy would save it, when it is not expected to converge.
    pub advice: Option<String>,
    /// Guest memory carried per byte sent that the estimate assumed, when the stream
    /// compresses: the VM's last observed ratio, else 1.0 (the note says which).
    pub memory_per_byte_sent: Option<f64>,
    /// Memory holding anything but zeros the estimate assumed, MiB: declared (a simulated
    /// fleet), or learned from the VM's last live migration (the note says which). `None`:
    /// all of memory.
    pub nonzero_mib: Option<f64>,
}

/// One VM's preview.
#[derive(Debug, Clone, Serialize)]
pub struct VmPreview {
    /// VM name.
    pub vm: String,
    /// UUID.
    pub uuid: String,
    /// Source host.
    pub from: String,
    /// What the plan asked: a host or ANY.
    pub requested: String,
    /// The target, when one is known.
    pub to: Option<String>,
    /// Its group.
    pub group: Option<String>,
    /// Plan line.
    pub line: usize,
    /// Live or cold.
    pub kind: Kind,
    /// Placement, for `ANY`.
    pub placement: Option<PlacementView>,
    /// Every check.
    pub checks: Vec<Check>,
    /// The worst check.
    pub verdict: Outcome,
    /// The estimate, when it can move.
    pub estimate: Option<EstimateView>,
    /// When ferry's scheduler is expected to start it, s from the run's start (none for a
    /// move that fails its checks).
    pub expected_start_s: Option<f64>,
    /// Where the run is expected to send it: `to`, or for a move to `ANY`, the host the
    /// virtual run placed it on as it started (the run places it then, on what is free).
    pub expected_to: Option<String>,
}

/// The preview of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// Plan name.
    pub plan: String,
    /// Moves in the plan.
    pub moves: usize,
    /// Moves that would fail.
    pub failing: usize,
    /// Moves with warnings.
    pub warnings: usize,
    /// Estimated makespan of the moves that pass, s: ferry's scheduler run over them in
    /// virtual time, each taking at the bandwidth it gets the time its estimate says.
    pub makespan_s: f64,
    /// The makespan by the older formula (every move at the share its limits allow, in a
    /// sliding window), s: for comparison.
    pub makespan_formula_s: f64,
    /// Longest expected downtime, ms.
    pub worst_downtime_ms: f64,
    /// Per VM, in plan order.
    pub vms: Vec<VmPreview>,
}

/// Previews `moves` (the plan resolved against the inventory).
pub fn preview(
    cluster: &ClusterSpec,
    inventory: &Inventory,
    plan: &Plan,
    moves: &[ResolvedMove],
    config: &PreviewConfig,
) -> Preview {
    let unavailable: Vec<String> = plan.drains.iter().map(|d| d.host.clone()).collect();
    let placements = place_any(cluster, inventory, plan, moves, &unavailable, config.explain);
    let tags: HashMap<&str, &str> =
        inventory.vms.iter().filter_map(|v| v.anti_affinity().map(|g| (v.uuid.as_str(), g))).collect();
    let candidates: Vec<Candidate> = moves
        .iter()
        .zip(&placements)
        .map(|(m, placed)| Candidate {
            uuid: m.uuid.clone(),
            from: m.from.clone(),
            to: match &m.to {
                Target::Host(h) => Some(h.clone()),
                Target::Any => placed.as_ref().and_then(|p| p.host.clone()),
            },
            group: m.group.clone().or_else(|| tags.get(m.uuid.as_str()).map(|g| g.to_string())),
        })
        .collect();
    let ctx = CheckContext {
        cluster,
        inventory,
        policy: &plan.policy,
        moves: &candidates,
        unavailable: &unavailable,
        earlier_copies: &config.earlier_copies,
        now_ms: config.now_ms,
        live_runs: &config.live_runs,
    };

    // Concurrency each host's link is shared by: its moves, up to the plan's limits.
    let mut outbound: HashMap<&str, usize> = HashMap::new();
    let mut inbound: HashMap<&str, usize> = HashMap::new();
    for c in &candidates {
        *outbound.entry(c.from.as_str()).or_default() += 1;
        if let Some(to) = &c.to {
            *inbound.entry(to.as_str()).or_default() += 1;
        }
    }
    let cluster_limit = plan.limits.cluster;
    let share = |host: &str, count: usize, limit: usize| {
        let link = cluster.host(host).and_then(|h| h.link_mib_s).map(|l| l as f64).unwrap_or(ASSUMED_LINK_MIB_S);
        estimate::bandwidth_share(Some(link), count.min(limit).min(cluster_limit).max(1)).unwrap_or(link)
    };

    // A move's estimate at a bandwidth: what the preview shows, and what the scheduler's
    // virtual run takes it to last at each cap it gives.
    let estimate_at = |m: &ResolvedMove, vm: &ferry_model::Vm, to: &str, kind: Kind, bandwidth: f64| {
        let measured = config.dirty_rates.get(&m.uuid).copied();
        let dirty = measured.unwrap_or(0.0);
        let disk_mib = vm.local_disk_mib();
        let known = match (config.memory.get(&m.uuid), config.carried.get(&m.uuid)) {
            (Some(declared), _) => Known::Declared(*declared),
            (None, Some(seen)) => Known::Carried(seen),
            (None, None) => Known::Nothing,
        };
        let stream = cluster
            .host(&m.from)
            .zip(cluster.host(to))
            .map(|(from, to)| (from, stream_between(&plan.policy, from, to, bandwidth)));
        let compression = stream
            .as_ref()
            .map(|(_, s)| s.compression)
            .filter(|c| *c != Compression::None)
            .map(|c| (c, config.compression.get(&m.uuid)));
        match kind {
            Kind::Live => {
                let ceiling =
                    stream.as_ref().and_then(|(from, s)| stream_ceiling(&from.stream, s)).filter(|c| *c < bandwidth);
                let guest = LiveGuest { memory_mib: vm.memory_mib as f64, known, dirty, measured: measured.is_some() };
                let mut view = live_view(guest, ceiling.unwrap_or(bandwidth), disk_mib, compression, plan);
                if let Some(ceiling) = ceiling {
                    let _ = write!(
                        view.note,
                        "; {ceiling:.0} MiB/s, not its {bandwidth:.0} MiB/s share: what one stream moves from {} (its one_stream_mib_s)",
                        m.from
                    );
                }
                view
            }
            Kind::Cold => cold_view(disk_mib, bandwidth, plan),
        }
    };

    let mut vms = Vec::new();
    let mut timed = Vec::new();
    for (i, (m, placed)) in moves.iter().zip(&placements).enumerate() {
        let mut checks = check_move(&ctx, i);
        waive(&mut checks, &config.ignore);
        let verdict = verdict(&checks);
        let vm = inventory.vms.iter().find(|v| v.uuid == m.uuid);
        let kind = match (plan.policy.mode, vm.map(|v| v.state)) {
            (Mode::Cold, _) | (Mode::LiveOrCold, Some(VmState::ShutOff)) => Kind::Cold,
            _ => Kind::Live,
        };
        let estimate = match (vm, &candidates[i].to) {
            (Some(vm), Some(to)) => {
                let bandwidth = share(&m.from, outbound[m.from.as_str()], plan.limits.per_source).min(share(
                    to,
                    inbound[to.as_str()],
                    plan.limits.per_target,
                ));
                Some(estimate_at(m, vm, to, kind, bandwidth))
            }
            _ => None,
        };
        if verdict != Outcome::Failed {
            if let (Some(e), Some(to), Some(vm)) = (&estimate, &candidates[i].to, vm) {
                if e.total_s.is_finite() {
                    timed.push((i, m, vm, to.clone(), kind));
                }
            }
        }
        vms.push(VmPreview {
            vm: m.vm.clone(),
            uuid: m.uuid.clone(),
            from: m.from.clone(),
            requested: m.to.to_string(),
            to: candidates[i].to.clone(),
            group: m.group.clone(),
            line: m.line,
            kind,
            placement: placed.as_ref().map(|p| PlacementView { why: p.why.clone(), rejected: p.rejected.clone() }),
            checks,
            verdict,
            estimate,
            expected_start_s: None,
            expected_to: None,
        });
    }
    // The makespan and each move's start: ferry's scheduler over the moves that pass, each
    // taking at the bandwidth it gives them the time its estimate says; a move to `ANY`
    // placed as it starts, as the engine places it.
    let links: HashMap<String, f64> =
        cluster.hosts.iter().map(|h| (h.name.clone(), h.link_mib_s.map_or(ASSUMED_LINK_MIB_S, |l| l as f64))).collect();
    let moves_timed: Vec<schedule::Timed<'_>> = timed
        .iter()
        .map(|(_, m, vm, _, kind)| schedule::Timed {
            item: ferry_scheduler::Item {
                vm: m.vm.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                group: m.group.clone(),
                order: m.order,
                priority: m.priority,
                memory_mib: vm.memory_mib,
                disk_mib: vm.local_disk_mib() as u64,
            },
            // A live move's slots are free at its switch-over, before its finish.
            seconds_at: Box::new({
                let estimate_at = &estimate_at;
                let after = if *kind == Kind::Live { estimate::FINISH_S } else { 0.0 };
                move |to: &str, bandwidth: f64| estimate_at(m, vm, to, *kind, bandwidth).total_s - after
            }),
            tail_s: if *kind == Kind::Live { estimate::FINISH_S } else { 0.0 },
        })
        .collect();
    let placer = Placer::new(cluster, inventory);
    let constraints = Constraints {
        allow_cross_group: plan.policy.allow_cross_group,
        unavailable: unavailable.clone(),
        explain: false,
    };
    let policy = placement::Policy::of_plan(plan);
    // Where each VM of the run is or will be, but for those to `ANY` not placed yet (the one
    // being placed is never here: a placed move starts at once).
    let mut bound: Vec<Fixed> = timed
        .iter()
        .filter_map(|(_, m, ..)| match &m.to {
            Target::Host(h) => Some(Fixed { vm: m.vm.clone(), to: h.clone(), anti_affinity: m.group.clone() }),
            Target::Any => None,
        })
        .collect();
    let place = |item: &ferry_scheduler::Item, view: &ferry_scheduler::View| {
        let to = schedule::place_as_it_starts(&placer, cluster, &bound, item, view, &constraints, policy)?;
        bound.push(Fixed { vm: item.vm.clone(), to: to.clone(), anti_affinity: item.group.clone() });
        Some(to)
    };
    let scheduled = schedule::schedule(moves_timed, plan.limits.clone(), links, place);
    for (((i, ..), start), to) in timed.iter().zip(&scheduled.starts).zip(scheduled.targets) {
        vms[*i].expected_start_s = *start;
        vms[*i].expected_to = to;
    }
    // The older formula over the same moves, at the estimates shown.
    let planned: Vec<PlannedMove> = timed
        .iter()
        .map(|(i, m, vm, to, _)| PlannedMove {
            source: m.from.clone(),
            target: to.clone(),
            seconds: vms[*i].estimate.as_ref().map_or(f64::INFINITY, |e| e.total_s),
            load_mib: vm.memory_mib as f64 + vm.local_disk_mib(),
        })
        .collect();
    let limits = MakespanLimits {
        cluster: plan.limits.cluster,
        per_source: plan.limits.per_source,
        per_target: plan.limits.per_target,
    };
    Preview {
        plan: plan.name.clone(),
        moves: vms.len(),
        failing: vms.iter().filter(|v| v.verdict == Outcome::Failed).count(),
        warnings: vms.iter().filter(|v| v.verdict == Outcome::Warning).count(),
        makespan_s: scheduled.makespan_s,
        makespan_formula_s: estimate::makespan(&planned, &limits),
        worst_downtime_ms: vms
            .iter()
            .filter(|v| v.verdict != Outcome::Failed)
            .filter_map(|v| v.estimate.as_ref())
            .map(|e| e.downtime_ms)
            .filter(|d| d.is_finite())
            .fold(0.0, f64::max),
        vms,
    }
}

/// A live move as the engine will run it under `policy`: its downtime steps, auto-converge
/// and post-copy as the policy says, and the throttle it asks for (which depends on whether
/// the dirty rate is `measured`). The guest's memory profile and disks are the caller's.
pub fn policy_live_input(
    policy: &ferry_plan::Policy,
    memory_mib: f64,
    dirty: f64,
    measured: bool,
    bandwidth: f64,
) -> LiveInput {
    // How the migration will start, as the engine starts it (under `convergence = "qemu"`:
    // QEMU's throttle, one fixed limit, no post-copy).
    let start = ferry_converge::start(
        policy,
        &ferry_converge::StartInput {
            memory_mib: memory_mib as u64,
            dirty_mib_s: measured.then_some(dirty),
            bandwidth_mib_s: Some(bandwidth),
        },
    );
    LiveInput {
        memory_mib,
        dirty_mib_s: dirty,
        bandwidth_mib_s: bandwidth,
        max_downtime_ms: policy.max_downtime_ms as f64,
        auto_converge: start.auto_converge,
        postcopy: start.postcopy,
        downtime_steps_ms: ferry_converge::steps(policy).into_iter().map(|s| s as f64).collect(),
        throttle: start.throttle.map(|(first, step)| (f64::from(first) / 100.0, f64::from(step) / 100.0)),
        ..LiveInput::default()
    }
}

/// The stream a move between `from` and `to` will use: the policy's; under `transport =
/// "auto"`, the one `auto` would choose taking the source to have the CPU it needs idle (it
/// is measured only as the move starts).
fn stream_between(policy: &ferry_plan::Policy, from: &HostSpec, to: &HostSpec, share_mib_s: f64) -> StreamOptions {
    match policy.transport {
        StreamMode::Fixed => policy.stream_between(from, to),
        StreamMode::Auto => {
            // Idle CPU is measured only at the start: the preview shows auto's choice CPU permitting.
            let facts = AutoFacts::new(from, Some(share_mib_s), Ok(f64::INFINITY));
            choose_stream(policy.auto_stream_between(from, to), &facts).options
        }
    }
}

/// The most a live move leaving `from` over `stream` gets, MiB/s, when the host says what
/// one migration stream moves from it (its CPU, not its link, limits each stream): that, once
/// per parallel connection.
fn stream_ceiling(from: &StreamLimits, stream: &StreamOptions) -> Option<f64> {
    from.one_stream_mib_s.map(|one| one as f64 * f64::from(stream.parallel_connections.max(1)))
}

/// Where what is known of a VM's memory comes from.
#[derive(Clone, Copy)]
enum Known<'a> {
    /// Declared (a simulated fleet's figures).
    Declared(MemoryProfile),
    /// Its last live migration carried this much.
    Carried(&'a ObservedMemory),
    /// Nothing: all of memory counts.
    Nothing,
}

impl Known<'_> {
    /// The profile the estimate takes for a guest of `memory_mib`. What a migration carried
    /// counts its passes' resends too: as the guest's non-zero memory, an upper bound.
    fn profile(self, memory_mib: f64) -> MemoryProfile {
        match self {
            Known::Declared(p) => p,
            Known::Carried(seen) => {
                MemoryProfile { nonzero_mib: Some(seen.carried_mib.min(memory_mib)), working_set_mib: None }
            }
            Known::Nothing => MemoryProfile::default(),
        }
    }
}

/// What a live estimate knows of the guest.
struct LiveGuest<'a> {
    memory_mib: f64,
    known: Known<'a>,
    /// Dirty rate, MiB/s, and whether it was measured (else assumed).
    dirty: f64,
    measured: bool,
}

fn live_view(
    guest: LiveGuest,
    bandwidth: f64,
    disk_mib: f64,
    compression: Option<(Compression, Option<&ObservedCompression>)>,
    plan: &Plan,
) -> EstimateView {
    let LiveGuest { memory_mib, known, dirty, measured } = guest;
    let profile = known.profile(memory_mib);
    let ratio = compression.map(|(_, seen)| seen.map_or(1.0, |s| s.ratio));
    let input = LiveInput {
        nonzero_mib: profile.nonzero_mib,
        working_set_mib: profile.working_set_mib,
        disk_copy_mib: disk_mib,
        compression_ratio: ratio,
        ..policy_live_input(&plan.policy, memory_mib, dirty, measured, bandwidth)
    };
    let e = estimate::estimate_live(&input);
    let mut note = e.note;
    if !measured {
        note.push_str(" (dirty rate not measured: assumed idle; --measure measures it)");
    }
    if let Known::Carried(seen) = known {
        let _ = write!(
            note,
            "; {} MiB of memory to carry, as its last live move did (run {})",
            seen.carried_mib.min(memory_mib).round(),
            seen.run
        );
    }
    if plan.policy.transport == StreamMode::Auto {
        note.push_str("; transport auto: the stream is chosen as the move starts (compressed only when the source has the CPU idle that compressing takes)");
    }
    match compression {
        Some((method, Some(seen))) => {
            let _ = write!(note, "; memory compresses {:.2}:1 with {method} (seen in run {})", seen.ratio, seen.run);
        }
        Some((method, None)) => {
            let _ = write!(note, "; {method} compression assumed to gain nothing (1:1): never observed on this VM");
        }
        None => {}
    }
    if !e.converges && plan.policy.mode == Mode::LiveOrCold {
        note.push_str("; falls back to a cold move (policy.mode = live-or-cold)");
    }
    EstimateView {
        bandwidth_mib_s: bandwidth,
        dirty_mib_s: dirty,
        dirty_measured: measured,
        transfer_s: e.transfer_s,
        total_s: e.total_s,
        downtime_ms: e.downtime_ms,
        passes: e.passes,
        converges: e.converges,
        note,
        advice: e.advice,
        memory_per_byte_sent: ratio,
        nonzero_mib: profile.nonzero_mib,
    }
}

fn cold_view(disk_mib: f64, bandwidth: f64, plan: &Plan) -> EstimateView {
    let seconds = estimate::estimate_cold(&ColdInput {
        disk_copy_mib: disk_mib,
        bandwidth_mib_s: bandwidth,
        shutdown_s: plan.policy.shutdown_timeout_s as f64,
    });
    EstimateView {
        bandwidth_mib_s: bandwidth,
        dirty_mib_s: 0.0,
        dirty_measured: false,
        transfer_s: seconds,
        total_s: seconds,
        downtime_ms: seconds * 1000.0,
        passes: 0,
        converges: true,
        note: format!(
            "cold: the guest is down while it shuts down (up to {} s) and {disk_mib:.0} MiB of disks copy",
            plan.policy.shutdown_timeout_s
        ),
        advice: None,
        memory_per_byte_sent: None,
        nonzero_mib: None,
    }
}

/// Places the moves whose target is `ANY`; `None` for the others.
fn place_any(
    cluster: &ClusterSpec,
    inventory: &Inventory,
    plan: &Plan,
    moves: &[ResolvedMove],
    unavailable: &[String],
    explain: bool,
) -> Vec<Option<placement::Decision>> {
    let fixed: Vec<Fixed> = moves
        .iter()
        .filter_map(|m| match &m.to {
            Target::Host(h) => Some(Fixed { vm: m.vm.clone(), to: h.clone(), anti_affinity: m.group.clone() }),
            Target::Any => None,
        })
        .collect();
    let requests: Vec<Request> = moves
        .iter()
        .filter(|m| m.to == Target::Any)
        .map(|m| Request { vm: m.vm.clone(), anti_affinity: m.group.clone(), candidates: None })
        .collect();
    let constraints =
        Constraints { allow_cross_group: plan.policy.allow_cross_group, unavailable: unavailable.to_vec(), explain };
    let policy = placement::Policy::of_plan(plan);
    let mut decisions = placement::place(cluster, inventory, &fixed, &requests, &constraints, policy).into_iter();
    moves.iter().map(|m| if m.to == Target::Any { decisions.next() } else { None }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(policy: &str) -> Plan {
        let text = format!("[plan]\nname = \"p\"\n[policy]\n{policy}\n[[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n");
        ferry_plan::parse_plan("p.toml", &text).expect("plan parses")
    }

    fn view(compression: Option<(Compression, Option<&ObservedCompression>)>, plan: &Plan) -> EstimateView {
        let guest = LiveGuest { memory_mib: 1024.0, known: Known::Nothing, dirty: 0.0, measured: true };
        live_view(guest, 32.0, 0.0, compression, plan)
    }

    #[test]
    fn a_guest_is_estimated_to_carry_what_its_last_live_move_carried_and_no_more_than_its_memory() {
        let plan = plan("");
        let known = |known| {
            live_view(LiveGuest { memory_mib: 1024.0, known, dirty: 0.0, measured: true }, 32.0, 0.0, None, &plan)
        };
        let unknown = known(Known::Nothing);
        let seen = ObservedMemory { carried_mib: 256.0, run: "r-7".into() };
        let learnt = known(Known::Carried(&seen));
        assert_eq!((unknown.nonzero_mib, learnt.nonzero_mib), (None, Some(256.0)));
        assert!(
            learnt.note.contains("256 MiB of memory to carry, as its last live move did (run r-7)"),
            "{}",
            learnt.note
        );
        // 1024 MiB at 32 MiB/s: 32 s of data; 256 MiB: 8 s (and the zero pages' scan).
        let memory = |v: &EstimateView| v.transfer_s - estimate::JOB_SETUP_S;
        assert!((memory(&unknown) - 32.0).abs() < 0.1, "{unknown:?}");
        assert!(memory(&learnt) > 8.0 && memory(&learnt) < 8.5, "{learnt:?}");
        // More than the guest holds (resends of a busier time): all of memory, not more.
        let busy = ObservedMemory { carried_mib: 3000.0, run: "r-8".into() };
        assert_eq!(known(Known::Carried(&busy)).nonzero_mib, Some(1024.0));
        // A declared profile wins over history.
        let declared = MemoryProfile { nonzero_mib: Some(100.0), working_set_mib: None };
        assert_eq!(known(Known::Declared(declared)).nonzero_mib, Some(100.0));
    }

    #[test]
    fn a_host_that_says_what_one_stream_moves_bounds_each_stream_leaving_it() {
        let host = |one: Option<u64>| StreamLimits { one_stream_mib_s: one, ..StreamLimits::default() };
        let plain = StreamOptions::default();
        let four = StreamOptions { parallel_connections: 4, ..StreamOptions::default() };
        assert_eq!(stream_ceiling(&host(None), &plain), None);
        assert_eq!(stream_ceiling(&host(Some(40)), &plain), Some(40.0));
        assert_eq!(stream_ceiling(&host(Some(40)), &four), Some(160.0));
    }

    #[test]
    fn a_compressed_stream_is_estimated_at_the_ratio_last_seen_and_says_so() {
        let plan = plan("parallel_connections = 4\ncompression = \"zstd\"");
        let seen = ObservedCompression { ratio: 2.5, run: "r-1".into() };
        let plain = view(None, &plan);
        let never = view(Some((Compression::Zstd, None)), &plan);
        let learnt = view(Some((Compression::Zstd, Some(&seen))), &plan);
        assert_eq!((plain.memory_per_byte_sent, never.memory_per_byte_sent), (None, Some(1.0)));
        assert_eq!(never.transfer_s, plain.transfer_s);
        assert!(never.note.contains("never observed"), "{}", never.note);
        assert_eq!(learnt.memory_per_byte_sent, Some(2.5));
        assert!(learnt.note.contains("2.50:1 with zstd (seen in run r-1)"), "{}", learnt.note);
        // 1024 MiB at 32 MiB/s: 32 s of memory plain, 12.8 s at 2.5:1.
        let memory = |v: &EstimateView| v.transfer_s - estimate::JOB_SETUP_S;
        assert!((memory(&plain) - 32.0).abs() < 0.1 && (memory(&learnt) - 12.8).abs() < 0.1, "{plain:?} {learnt:?}");
    }
}
