//! Estimates before anything is touched: how long one live migration takes and how long its
//! guest is paused, what a cold move costs, how a host's link is shared, and the makespan of a
//! batch under the run's concurrency limits.
//!
//! The live model is QEMU's pre-copy, pass by pass. Pass 1 sends all of memory: its non-zero
//! pages at the bandwidth, its zero pages almost free (QEMU sends a page header, not the page).
//! Every later pass sends what the guest dirtied during the previous one, `min(D × t, W)` for a
//! dirty rate `D` over a working set `W`. Before each pass QEMU asks whether the rest could be
//! sent within the allowed downtime (`remaining / B ≤ max_downtime`); if so it pauses the guest
//! and sends it. With auto-converge, every second pass that dirties more than half of what it
//! sent throttles the guest's CPUs harder (20 %, then +10 % a step, `migration/ram.c`
//! `migration_trigger_throttle`), which slows its dirtying in proportion. Post-copy switches
//! after the first pass and lets the destination fetch the rest.
//!
//! Every constant says where its figure comes from. "Measured" means the lab (TCG guests of
//! 256 MiB on two libvirtd daemons on one 2-core machine), bench `estimate_vs_real`
//! (`cargo bench -p ferry --bench estimate_vs_real`).

use std::fmt::Write as _;

/// Seconds a live migration costs outside the hypervisor's copy job: connecting to both
/// hosts, preparing the target, starting the destination QEMU, finding and finalizing the VM
/// afterwards (`wall_ms − job_ms` of `ferry move`).
///
/// Measured in the lab, bench estimate_vs_real, 2026-11-23.
pub const PER_MIGRATION_OVERHEAD_S: f64 = 2.0;

/// Fixed seconds inside the copy job that no memory pass accounts for: the migration
/// connection, device state, the destination's acknowledgement.
///
/// Measured in the lab, bench estimate_vs_real, 2026-11-23.
pub const JOB_SETUP_S: f64 = 0.3;

/// Milliseconds of a pre-copy switch-over that do not depend on the memory left: stopping the
/// guest, device state, starting it on the destination.
///
/// Measured in the lab, bench estimate_vs_real, 2026-11-23.
pub const SWITCHOVER_MS: f64 = 25.0;

/// Milliseconds a post-copy switch-over pauses the guest: only device state moves.
///
/// Lab notes, "Convergence controls": 5 ms, post-copy started at 10 s.
pub const POSTCOPY_SWITCHOVER_MS: f64 = 5.0;

/// MiB/s of zero pages pass 1 gets through: QEMU scans them and sends a header, not the page,
/// so they cost CPU time, not bandwidth.
///
/// Measured in the lab, bench estimate_vs_real, 2026-11-23.
pub const ZERO_PAGE_MIB_S: f64 = 2000.0;

/// QEMU's default `downtime-limit`, ms (`migration/options.c`; anchors, table (b)).
pub const QEMU_DEFAULT_MAX_DOWNTIME_MS: f64 = 300.0;

/// QEMU's `cpu-throttle-initial`: the first auto-converge throttle, a fraction of guest CPU
/// time (anchors, table (b): 20 %).
pub const THROTTLE_INITIAL: f64 = 0.20;

/// QEMU's `cpu-throttle-increment` (anchors, table (b): 10 %).
pub const THROTTLE_INCREMENT: f64 = 0.10;

/// QEMU's `max-cpu-throttle` (anchors, table (b): 99 %).
pub const THROTTLE_MAX: f64 = 0.99;

/// QEMU's `throttle-trigger-threshold`: a pass is "too dirty" when it dirtied more than this
/// share of what it sent (anchors, table (b): 50).
pub const THROTTLE_TRIGGER: f64 = 0.50;

/// A pass whose successor must send at least this share of it makes no real progress: the
/// migration is declared stuck rather than simulated to the end of time.
pub const STALL_RATIO: f64 = 0.9;

/// Pre-copy passes after which a migration without auto-converge is declared stuck.
pub const MAX_PASSES: u32 = 30;

/// Passes after which even an auto-converging migration is declared stuck (throttle at its
/// maximum and still no convergence).
const MAX_THROTTLED_PASSES: u32 = 200;

/// The largest downtime worth suggesting instead of a policy: oVirt's "suspend workload"
/// policy ends its downtime ramp at 5000 ms (anchors, table (b)).
pub const MAX_SUGGESTED_DOWNTIME_MS: f64 = 5000.0;

/// What the live estimate needs to know about one migration.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveInput {
    /// Guest memory, MiB.
    pub memory_mib: f64,
    /// How fast the guest dirties memory, MiB/s (a measured or declared estimate).
    pub dirty_mib_s: f64,
    /// Bandwidth the migration gets, MiB/s: its cap, or its share of the link.
    pub bandwidth_mib_s: f64,
    /// The largest pause allowed at switch-over, ms (QEMU's default is
    /// [`QEMU_DEFAULT_MAX_DOWNTIME_MS`]).
    pub max_downtime_ms: f64,
    /// Host-local disks, MiB, copied before memory at the same bandwidth.
    pub disk_copy_mib: f64,
    /// Auto-converge is requested at start: QEMU may throttle the guest.
    pub auto_converge: bool,
    /// Post-copy is requested at start: the policy may switch to it when pre-copy is stuck.
    pub postcopy: bool,
    /// Memory holding anything but zeros, MiB, when known (a guest's resident set, say). Pass
    /// 1 sends only this at the bandwidth; the rest are zero pages, nearly free. `None`: all of
    /// memory counts, the cautious answer.
    pub nonzero_mib: Option<f64>,
    /// The memory the guest keeps rewriting, MiB, when known: no pass after the first resends
    /// more than this. `None`: all of memory.
    pub working_set_mib: Option<f64>,
}

impl Default for LiveInput {
    /// An empty guest with QEMU's default downtime limit and no policy: fill in at least
    /// memory, dirty rate and bandwidth.
    fn default() -> LiveInput {
        LiveInput {
            memory_mib: 0.0,
            dirty_mib_s: 0.0,
            bandwidth_mib_s: 0.0,
            max_downtime_ms: QEMU_DEFAULT_MAX_DOWNTIME_MS,
            disk_copy_mib: 0.0,
            auto_converge: false,
            postcopy: false,
            nonzero_mib: None,
            working_set_mib: None,
        }
    }
}

/// The fate of one live migration, as far as a model can tell.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEstimate {
    /// The copy job, s: disks, every memory pass and the final pause. Infinite when it does
    /// not converge.
    pub transfer_s: f64,
    /// The transfer and the fixed cost of a migration ([`PER_MIGRATION_OVERHEAD_S`]), s.
    pub total_s: f64,
    /// The pause at switch-over, ms. Infinite when it does not converge.
    pub downtime_ms: f64,
    /// Memory passes, the final one (guest paused) included; for a migration that does not
    /// converge, the passes made before it was declared stuck.
    pub passes: u32,
    /// Whether the migration ends with the requested options.
    pub converges: bool,
    /// The outcome in words: "converges in 3 passes", or why not and what would help.
    pub note: String,
    /// The policy that would make it converge; `None` when it converges.
    pub advice: Option<String>,
}

/// Estimates one live migration: pre-copy pass by pass, with auto-converge's throttling when
/// requested, and a switch to post-copy when requested and pre-copy alone cannot finish.
pub fn estimate_live(input: &LiveInput) -> LiveEstimate {
    let bandwidth = input.bandwidth_mib_s;
    if !(bandwidth > 0.0 && bandwidth.is_finite()) {
        return LiveEstimate {
            transfer_s: f64::INFINITY,
            total_s: f64::INFINITY,
            downtime_ms: f64::INFINITY,
            passes: 0,
            converges: false,
            note: format!("does not converge: no bandwidth ({bandwidth} MiB/s)"),
            advice: Some("give the migration bandwidth".to_string()),
        };
    }
    let disk_s = input.disk_copy_mib.max(0.0) / bandwidth;
    let finish = |memory_s: f64, downtime_ms: f64, passes: u32, note: String| {
        let transfer_s = JOB_SETUP_S + disk_s + memory_s + downtime_ms / 1000.0;
        LiveEstimate {
            transfer_s,
            total_s: transfer_s + PER_MIGRATION_OVERHEAD_S,
            downtime_ms,
            passes,
            converges: true,
            note,
            advice: None,
        }
    };

    let plain = precopy(input, bandwidth, input.auto_converge);
    let stuck_mib = match plain.outcome {
        Outcome::Converged { remaining_mib } => {
            let mut note = format!("converges in {} passes", plain.passes);
            if plain.max_throttle > 0.0 {
                let _ = write!(note, ", auto-converge throttling the guest up to {:.0} %", plain.max_throttle * 100.0);
            }
            return finish(plain.memory_s, downtime_ms(remaining_mib, bandwidth), plain.passes, note);
        }
        Outcome::Stuck { remaining_mib } => remaining_mib,
    };
    if input.postcopy {
        let (memory_s, passes) = postcopy(input, bandwidth);
        let note = format!("converges by switching to post-copy after the first pass ({passes} passes)");
        return finish(memory_s, POSTCOPY_SWITCHOVER_MS, passes, note);
    }

    // Stuck: say why, and what would save it.
    let mut note = format!(
        "does not converge: dirties {} MiB/s, {} MiB/s available",
        fmt_num(input.dirty_mib_s),
        fmt_num(bandwidth)
    );
    if plain.passes > 1 && stuck_mib > 0.0 && input.dirty_mib_s < bandwidth {
        let _ = write!(note, " (still {} MiB to send after {} passes)", fmt_num(stuck_mib), plain.passes);
    }
    let mut options = Vec::new();
    let mut advice = None;
    if !input.auto_converge {
        let throttled = precopy(input, bandwidth, true);
        if let Outcome::Converged { remaining_mib } = throttled.outcome {
            let total = JOB_SETUP_S + disk_s + throttled.memory_s + downtime_ms(remaining_mib, bandwidth) / 1000.0;
            options.push(format!(
                "auto_converge would throttle it (est. {:.1} s, up to {:.0} %)",
                total,
                throttled.max_throttle * 100.0
            ));
            advice = Some(format!(
                "request auto_converge: est. {:.1} s, {} passes, the guest throttled up to {:.0} %",
                total,
                throttled.passes,
                throttled.max_throttle * 100.0
            ));
        }
    }
    let (post_s, _) = postcopy(input, bandwidth);
    let post_total = JOB_SETUP_S + disk_s + post_s + POSTCOPY_SWITCHOVER_MS / 1000.0;
    options.push(format!("post-copy would finish in {post_total:.1} s"));
    if advice.is_none() {
        advice = Some(format!(
            "allow post-copy: est. {post_total:.1} s (a failure after the switch loses the VM)"
        ));
    }
    if let Some(needed) = bandwidth_to_converge(input) {
        options.push(format!("raise bandwidth to ≥ {} MiB/s", needed.ceil()));
    }
    let pause_ms = downtime_ms(stuck_mib, bandwidth);
    if pause_ms <= MAX_SUGGESTED_DOWNTIME_MS && pause_ms > input.max_downtime_ms {
        options.push(format!("allow a downtime of ≥ {:.0} ms", pause_ms.ceil()));
    }
    let _ = write!(note, "; {}", join_or(&options));
    LiveEstimate {
        transfer_s: f64::INFINITY,
        total_s: f64::INFINITY,
        downtime_ms: f64::INFINITY,
        passes: plain.passes,
        converges: false,
        note,
        advice,
    }
}

/// What a cold move needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdInput {
    /// Host-local disks to copy, MiB.
    pub disk_copy_mib: f64,
    /// Bandwidth of the copy, MiB/s.
    pub bandwidth_mib_s: f64,
    /// Seconds the guest takes to shut down (the shutdown timeout, to be safe).
    pub shutdown_s: f64,
}

/// Estimates a cold move, s: shutdown, the disk copy, and defining and starting the VM on the
/// target (taken as [`PER_MIGRATION_OVERHEAD_S`], which is mostly starting a QEMU). The guest is
/// down the whole time, so this is both its downtime and the move's duration. Infinite without
/// bandwidth for a disk to copy.
pub fn estimate_cold(input: &ColdInput) -> f64 {
    let disk = input.disk_copy_mib.max(0.0);
    let copy_s = if disk == 0.0 {
        0.0
    } else if input.bandwidth_mib_s > 0.0 {
        disk / input.bandwidth_mib_s
    } else {
        f64::INFINITY
    };
    input.shutdown_s.max(0.0) + copy_s + PER_MIGRATION_OVERHEAD_S
}

/// One move of a batch, for the makespan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMove {
    /// Source host.
    pub source: String,
    /// Target host.
    pub target: String,
    /// How long the move takes, s (its estimate's `total_s`).
    pub seconds: f64,
    /// Guest memory, MiB: larger moves start first.
    pub memory_mib: f64,
}

/// The run's concurrency limits. A limit of 0 is read as 1, so that every schedule ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MakespanLimits {
    /// Moves in flight in the whole run.
    pub cluster: usize,
    /// Moves in flight out of one host.
    pub per_source: usize,
    /// Moves in flight into one host.
    pub per_target: usize,
}

/// The makespan of a batch, s, as ferry's scheduler runs it: a sliding window, not waves (a
/// slot that frees starts the next eligible move at once), larger memory first (ties keep the
/// given order), never more than the limits allow in flight. A move whose seconds are not
/// finite makes the makespan infinite.
pub fn makespan(moves: &[PlannedMove], limits: &MakespanLimits) -> f64 {
    let cluster = limits.cluster.max(1);
    let per_source = limits.per_source.max(1);
    let per_target = limits.per_target.max(1);
    let mut pending: Vec<&PlannedMove> = moves.iter().collect();
    pending.sort_by(|a, b| b.memory_mib.total_cmp(&a.memory_mib));
    let mut running: Vec<(f64, &PlannedMove)> = Vec::new();
    let mut now = 0.0_f64;
    let mut end = 0.0_f64;
    while !pending.is_empty() || !running.is_empty() {
        let mut i = 0;
        while i < pending.len() && running.len() < cluster {
            let m = pending[i];
            let from = running.iter().filter(|(_, r)| r.source == m.source).count();
            let into = running.iter().filter(|(_, r)| r.target == m.target).count();
            if from < per_source && into < per_target {
                let finish = now + m.seconds.max(0.0);
                end = end.max(finish);
                running.push((finish, pending.remove(i)));
            } else {
                i += 1;
            }
        }
        // Every slot is taken or nothing fits: wait for the next move to end.
        let Some(next) = running.iter().map(|(t, _)| *t).min_by(f64::total_cmp) else { break };
        now = next;
        running.retain(|(t, _)| *t > now);
    }
    end
}

/// A host's link shared evenly by its concurrent migrations, MiB/s each; `None` when the link
/// speed is unknown. No migrations count as one.
pub fn bandwidth_share(link_mib_s: Option<f64>, concurrent: usize) -> Option<f64> {
    link_mib_s.map(|link| link / concurrent.max(1) as f64)
}

/// How a simulated pre-copy ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// The rest fits the downtime: this much is sent with the guest paused.
    Converged { remaining_mib: f64 },
    /// No real progress any more: this much is still dirty at every pass.
    Stuck { remaining_mib: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Precopy {
    outcome: Outcome,
    /// Passes, the final paused one included when it converged.
    passes: u32,
    /// Seconds of memory passes before the pause.
    memory_s: f64,
    /// The highest auto-converge throttle reached, a fraction.
    max_throttle: f64,
}

/// The first pass: non-zero memory at the bandwidth, zero pages at [`ZERO_PAGE_MIB_S`].
/// Returns (MiB sent, seconds).
fn first_pass(input: &LiveInput, bandwidth: f64) -> (f64, f64) {
    let memory = input.memory_mib.max(0.0);
    let nonzero = input.nonzero_mib.unwrap_or(memory).clamp(0.0, memory);
    (nonzero, nonzero / bandwidth + (memory - nonzero) / ZERO_PAGE_MIB_S)
}

/// The most any later pass resends, MiB.
fn working_set(input: &LiveInput) -> f64 {
    let memory = input.memory_mib.max(0.0);
    input.working_set_mib.unwrap_or(memory).clamp(0.0, memory)
}

/// QEMU's pre-copy loop, one pass at a time, throttling like auto-converge when `throttle`.
fn precopy(input: &LiveInput, bandwidth: f64, throttle: bool) -> Precopy {
    let dirty_rate = input.dirty_mib_s.max(0.0);
    let working_set = working_set(input);
    let threshold = bandwidth * input.max_downtime_ms.max(0.0) / 1000.0;
    let (mut sent, mut pass_s) = first_pass(input, bandwidth);
    let mut memory_s = pass_s;
    let mut passes = 1;
    let mut throttle_now = 0.0_f64;
    let mut max_throttle = 0.0_f64;
    let mut too_dirty = 0;
    loop {
        let dirtied = (dirty_rate * (1.0 - throttle_now) * pass_s).min(working_set);
        // QEMU decides at each dirty-bitmap sync, on what the last period dirtied and sent.
        if throttle && dirtied > THROTTLE_TRIGGER * sent {
            too_dirty += 1;
            if too_dirty >= 2 {
                too_dirty = 0;
                throttle_now = if throttle_now == 0.0 { THROTTLE_INITIAL } else { (throttle_now + THROTTLE_INCREMENT).min(THROTTLE_MAX) };
                max_throttle = max_throttle.max(throttle_now);
            }
        }
        if dirtied <= threshold {
            return Precopy { outcome: Outcome::Converged { remaining_mib: dirtied }, passes: passes + 1, memory_s, max_throttle };
        }
        let stalled = passes > 1 && dirtied >= STALL_RATIO * sent;
        let give_up = if throttle {
            passes >= MAX_THROTTLED_PASSES || (stalled && throttle_now >= THROTTLE_MAX)
        } else {
            stalled || passes >= MAX_PASSES
        };
        if give_up {
            return Precopy { outcome: Outcome::Stuck { remaining_mib: dirtied }, passes, memory_s, max_throttle };
        }
        sent = dirtied;
        pass_s = dirtied / bandwidth;
        memory_s += pass_s;
        passes += 1;
    }
}

/// Post-copy: the first pass, the switch, then what the first pass left dirty, fetched at the
/// same bandwidth (cautious: QEMU's post-copy bandwidth is unlimited by default). Returns
/// (seconds of memory transfer, passes).
fn postcopy(input: &LiveInput, bandwidth: f64) -> (f64, u32) {
    let (_, first_s) = first_pass(input, bandwidth);
    let rest = (input.dirty_mib_s.max(0.0) * first_s).min(working_set(input));
    (first_s + rest / bandwidth, 2)
}

/// The smallest bandwidth at which plain pre-copy converges, MiB/s; `None` when none does
/// within reason (a million MiB/s).
fn bandwidth_to_converge(input: &LiveInput) -> Option<f64> {
    let converges = |b: f64| matches!(precopy(input, b, false).outcome, Outcome::Converged { .. });
    let mut low = input.bandwidth_mib_s;
    let mut high = low.max(1.0);
    while !converges(high) {
        if high > 1e6 {
            return None;
        }
        low = high;
        high *= 2.0;
    }
    for _ in 0..60 {
        let mid = (low + high) / 2.0;
        if converges(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high)
}

/// The pause for sending `remaining_mib` with the guest stopped, ms.
fn downtime_ms(remaining_mib: f64, bandwidth: f64) -> f64 {
    remaining_mib / bandwidth * 1000.0 + SWITCHOVER_MS
}

/// "a", "a, or b", "a, b, or c".
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{}, or {last}", init.join(", ")),
    }
}

/// A number without a useless fraction: 60, 2.5.
fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{:.0}", v.round())
    } else {
        format!("{v:.1}")
    }
}
