//! How a live migration is driven to its end, on purpose, with a reason for every step.
//!
//! Two pure parts. [`start`] chooses what can only be chosen when a migration starts —
//! auto-converge and the post-copy capability (libvirt and QEMU refuse both later) — and
//! the first downtime limit and bandwidth. A [`Converger`] then reads the migration's
//! progress samples and answers, one at a time, with a [`Decision`]:
//!
//! - **Raise the downtime limit** along a stepped schedule up to the plan's
//!   `max_downtime_ms`, when the memory still to send at the start of each pass stopped
//!   shrinking (the guest dirties as fast as the link sends). The step chosen is the
//!   smallest that covers the downtime QEMU expects, so one raise usually finishes it.
//! - **Switch to post-copy**, when allowed and requested at start, once the limit is at its
//!   maximum and memory is still flat — never when the link looks unhealthy, because a
//!   post-copy that loses its link loses the VM.
//! - **Abort** when nothing got closer for `stall_timeout_s` (the remaining memory made no
//!   new low), or when the completion timeout (`completion_timeout_per_gib_s` × GiB) passed.
//!   The VM stays on its source; the caller may fall back to a cold move.
//!
//! Bandwidth changes come from the scheduler (a host's link shared by its migrations); the
//! caller applies them and says so with [`Converger::bandwidth_changed`] so that the link
//! health test knows the cap.
//!
//! Under `convergence = "qemu"` ([`Convergence::Qemu`]) none of this: QEMU converges alone,
//! as `virsh migrate --auto-converge` leaves it — one fixed limit (`max_downtime_ms`), QEMU's
//! default throttle, no post-copy; only the completion timeout aborts. For comparing ferry's
//! policy with what libvirt does by itself, on the same fleet.
//!
//! Time is seconds since the migration started, passed in; nothing here reads a clock.

use ferry_driver::Progress;
use ferry_plan::{Convergence, Policy};
use serde::Serialize;

/// Memory passes whose starting remainder must stay flat before the limit is raised.
pub const FLAT_PASSES: usize = 2;
/// A pass "shrank" the remainder when it fell by at least this fraction.
pub const SHRINK: f64 = 0.10;
/// The shortest time over which the remainder must have stopped shrinking, s: about eight
/// samples, so that passes shorter than a sample are judged on several of them.
pub const FLAT_WINDOW_S: f64 = 2.0;
/// A new low of the remaining bytes counts as progress when it is this much lower.
pub const PROGRESS_BYTES: u64 = 1 << 20;
/// The link is healthy when it delivered at least this share of the cap recently.
pub const HEALTHY_SHARE: f64 = 0.25;
/// Samples (about half a second each) the link health is judged on.
pub const HEALTH_WINDOW: usize = 6;
/// The lowest downtime limit ferry asks for, ms: below it the switch-over itself does not fit.
pub const MIN_DOWNTIME_MS: u64 = 30;

const MIB: f64 = 1_048_576.0;

/// What is known of a VM when its migration starts.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInput {
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Measured or declared dirty rate, MiB/s.
    pub dirty_mib_s: Option<f64>,
    /// Bandwidth the migration gets, MiB/s (`None`: unlimited).
    pub bandwidth_mib_s: Option<f64>,
}

/// How a migration starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartPlan {
    /// Request auto-converge.
    pub auto_converge: bool,
    /// Auto-converge's first throttle and its step, percent (`None`: QEMU's 20 and 10).
    pub throttle: Option<(u32, u32)>,
    /// Request the post-copy capability (to switch later if needed).
    pub postcopy: bool,
    /// First downtime limit, ms.
    pub downtime_ms: u64,
    /// Bandwidth cap, MiB/s.
    pub bandwidth_mib_s: Option<f64>,
    /// Why, in words.
    pub reason: String,
}

/// The downtime limits, lowest first, ending at the plan's maximum.
pub fn schedule(max_downtime_ms: u64) -> Vec<u64> {
    let max = max_downtime_ms.max(MIN_DOWNTIME_MS);
    let mut steps: Vec<u64> = [max / 4, max / 2, max].into_iter().map(|s| s.max(MIN_DOWNTIME_MS)).collect();
    steps.dedup();
    steps
}

/// The downtime limits a migration under `policy` may step through: [`schedule`] under
/// ferry's convergence; under QEMU's, `max_downtime_ms` alone (nothing raises it).
pub fn steps(policy: &Policy) -> Vec<u64> {
    match policy.convergence {
        Convergence::Ferry => schedule(policy.max_downtime_ms),
        Convergence::Qemu => vec![policy.max_downtime_ms],
    }
}

/// A spell of passes whose starts did not shrink: how many, over how long, and the lowest
/// start in it and before it (the unit of `starts`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlatSpell {
    /// Passes in the spell.
    pub passes: usize,
    /// From the first pass start in the spell to now, s.
    pub seconds: f64,
    /// The lowest start in the spell.
    pub low: f64,
    /// The lowest start before it.
    pub low_before: f64,
}

/// Whether what was left at pass starts stopped shrinking by `now`: over the last
/// [`FLAT_PASSES`] passes, and over at least [`FLAT_WINDOW_S`], no pass started [`SHRINK`]
/// below the lowest start before them. `starts` are `(seconds, amount)`, oldest first. The
/// rule the converger raises the limit by, and the estimate models.
///
/// Judged on lows, over time: when passes are shorter than the sampling, each pass's start
/// is read at a random point of the pass, and a rule comparing one pass with the next sees
/// a drop somewhere in every few passes however flat the memory really is.
pub fn stopped_shrinking(starts: &[(f64, f64)], now: f64) -> Option<FlatSpell> {
    if starts.len() <= FLAT_PASSES {
        return None;
    }
    let by_passes = starts.len() - FLAT_PASSES;
    let by_time = starts.partition_point(|&(t, _)| t <= now - FLAT_WINDOW_S);
    let split = by_passes.min(by_time);
    let low = |s: &[(f64, f64)]| s.iter().map(|&(_, v)| v).fold(f64::INFINITY, f64::min);
    let spell = FlatSpell {
        passes: starts.len() - split,
        seconds: now - starts[split].0,
        low: low(&starts[split..]),
        low_before: low(&starts[..split]),
    };
    (split > 0 && spell.low > spell.low_before * (1.0 - SHRINK)).then_some(spell)
}

/// Chooses how a migration starts.
pub fn start(policy: &Policy, input: &StartInput) -> StartPlan {
    let steps = steps(policy);
    let downtime_ms = steps[0];
    let ferrys = policy.convergence == Convergence::Ferry;
    let outlook = match (input.dirty_mib_s, input.bandwidth_mib_s) {
        (Some(dirty), Some(bw)) if dirty >= bw => {
            format!("dirtying {dirty:.1} MiB/s against {bw:.0} MiB/s: it cannot converge by pre-copy alone")
        }
        (Some(dirty), Some(bw)) => format!(
            "dirtying {dirty:.1} MiB/s against {bw:.0} MiB/s: expected to converge ({:.0} % of the link)",
            100.0 * dirty / bw
        ),
        (Some(dirty), None) => format!("dirtying {dirty:.1} MiB/s, link uncapped"),
        (None, Some(bw)) => format!("dirty rate unknown, {bw:.0} MiB/s"),
        (None, None) => "dirty rate unknown, link uncapped".to_string(),
    };
    let limit = if ferrys {
        format!("downtime limit {downtime_ms} ms (steps {steps:?} ms)")
    } else {
        format!("QEMU converges alone (convergence = qemu): downtime limit fixed at {downtime_ms} ms, no stall abort")
    };
    let mut parts = vec![outlook, limit];
    // QEMU's own throttle is its default one: fitting it to the guest is ferry's policy.
    let throttle = (ferrys && policy.auto_converge).then(|| throttle(input)).flatten();
    let postcopy = ferrys && policy.postcopy;
    if policy.auto_converge {
        let how = throttle.map_or("QEMU's default throttle".to_string(), |(first, step)| {
            format!("throttle from {first} % in steps of {step} %")
        });
        parts.push(format!("auto-converge requested (QEMU throttles only a guest that cannot keep up; {how})"));
    }
    if postcopy {
        parts.push("post-copy allowed, as a last resort".into());
    }
    StartPlan {
        auto_converge: policy.auto_converge,
        throttle,
        postcopy,
        downtime_ms,
        bandwidth_mib_s: input.bandwidth_mib_s,
        reason: parts.join("; "),
    }
}

/// Auto-converge's throttle step, percent: QEMU raises the throttle once every two passes
/// that fail to keep up, so a large step reaches the needed slowdown in a few passes (the
/// lab's guests needed 99 % under software emulation).
pub const THROTTLE_STEP: u32 = 25;

/// Auto-converge's throttle for a guest: QEMU's gentle default (20 %, then 10 % a pass)
/// for one expected to converge anyway; for one that cannot, or whose dirty rate is
/// unknown, a start and steps that reach the needed slowdown in a few passes. Throttling by
/// p % of guest CPU cuts the dirty rate to about (1 − p) of itself; half the link is the aim.
pub fn throttle(input: &StartInput) -> Option<(u32, u32)> {
    match (input.dirty_mib_s, input.bandwidth_mib_s) {
        (Some(dirty), Some(bw)) if dirty < bw => None,
        (Some(dirty), Some(bw)) if dirty > 0.0 => {
            let needed = (1.0 - 0.5 * bw / dirty) * 100.0;
            Some(((needed.ceil() as u32).clamp(20, 80), THROTTLE_STEP))
        }
        _ => Some((50, THROTTLE_STEP)),
    }
}

/// One step of a migration's driving.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Allow a longer final pause, ms.
    RaiseDowntime {
        /// The new limit.
        ms: u64,
        /// Why.
        reason: String,
    },
    /// Switch to post-copy.
    StartPostCopy {
        /// Why.
        reason: String,
    },
    /// Cancel the migration: the VM stays on its source.
    Abort {
        /// Why.
        reason: String,
    },
}

impl Decision {
    /// Why, in words.
    pub fn reason(&self) -> &str {
        match self {
            Decision::RaiseDowntime { reason, .. }
            | Decision::StartPostCopy { reason }
            | Decision::Abort { reason } => reason,
        }
    }

    /// What it does and why: "raised downtime to 150 ms: …".
    pub fn describe(&self) -> String {
        match self {
            Decision::RaiseDowntime { ms, reason } => format!("raised downtime to {ms} ms: {reason}"),
            Decision::StartPostCopy { reason } => format!("switched to post-copy: {reason}"),
            Decision::Abort { reason } => format!("aborted: {reason}"),
        }
    }
}

/// Limits a [`Converger`] works within.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// The downtime schedule ([`schedule`]).
    pub steps: Vec<u64>,
    /// Whether post-copy was requested at start.
    pub postcopy: bool,
    /// Abort after this long without a new low of the remaining bytes, s (`None`: never,
    /// as under QEMU's own convergence).
    pub stall_timeout_s: Option<f64>,
    /// Abort after this long in all, s.
    pub completion_timeout_s: f64,
    /// Words for the completion timeout's origin ("150 s per GiB of memory").
    pub completion_rule: String,
}

impl Bounds {
    /// The bounds of a plan's policy for a VM of `memory_mib`; `completion_timeout_s`
    /// overrides the per-GiB rule (`ferry move --timeout`).
    pub fn of(policy: &Policy, memory_mib: u64, completion_timeout_s: Option<f64>) -> Bounds {
        let (completion_timeout_s, completion_rule) = match completion_timeout_s {
            Some(t) => (t, "the completion timeout".to_string()),
            None => (
                (policy.completion_timeout_per_gib_s as f64 * memory_mib as f64 / 1024.0).max(60.0),
                format!("{} s per GiB of memory, at least 60 s", policy.completion_timeout_per_gib_s),
            ),
        };
        let ferrys = policy.convergence == Convergence::Ferry;
        Bounds {
            steps: steps(policy),
            postcopy: ferrys && policy.postcopy,
            stall_timeout_s: ferrys.then(|| policy.stall_timeout_s.max(1) as f64),
            completion_timeout_s,
            completion_rule,
        }
    }
}

/// Whether a migration still makes progress: the lowest amount still to send, and when it
/// was last beaten by [`PROGRESS_BYTES`]. Judges a job ferry started and one it found still
/// running after a crash alike.
#[derive(Debug, Clone, Default)]
pub struct Stall {
    /// Lowest remaining bytes seen, and when (seconds on the caller's clock).
    low: Option<(u64, f64)>,
    /// Auto-converge's throttle, percent, as last seen.
    throttle: u32,
}

impl Stall {
    /// Reads a sample taken `at` seconds on the caller's clock.
    pub fn observe(&mut self, at: f64, sample: &Progress) {
        let remaining = sample.memory_remaining_bytes + sample.disk_remaining_bytes;
        // The first samples often come before QEMU has sized the job, and a storage copy's
        // first samples may count nothing left at all: nothing to judge yet. A low of zero
        // would never be beaten, and the stall timeout would abort a migration that moves.
        if sample.total_bytes > 0 && remaining > 0 {
            match self.low {
                Some((low, _)) if remaining + PROGRESS_BYTES > low => {}
                _ => self.low = Some((remaining, at)),
            }
        }
        // Auto-converge tightening its throttle is QEMU still working on it: not a stall.
        let throttle = sample.throttle_percent.unwrap_or(0);
        if throttle > self.throttle {
            self.throttle = throttle;
            if let Some((low, _)) = self.low {
                self.low = Some((low, at));
            }
        }
    }

    /// Why the migration counts as stalled at `at` after `timeout_s` without progress, if it
    /// does; the time before the first sample counts as without progress.
    pub fn stalled(&self, at: f64, timeout_s: f64) -> Option<String> {
        let since = self.low.map_or(0.0, |(_, t)| t);
        (at - since >= timeout_s).then(|| {
            let low = self.low.map_or(String::new(), |(b, _)| format!(" below {:.1} MiB", b as f64 / MIB));
            format!(
                "no progress for {:.0} s (stall timeout): the data still to send has not dropped{low} since {since:.1} s",
                at - since
            )
        })
    }
}

/// Drives one migration from its progress samples.
#[derive(Debug, Clone)]
pub struct Converger {
    bounds: Bounds,
    step: usize,
    cap_mib_s: Option<f64>,
    stall: Stall,
    /// Memory remaining at the start of each pass seen (bytes), and when, in order.
    pass_starts: Vec<(f64, f64)>,
    pass: u64,
    /// Passes seen when the limit was last raised.
    raised_at_pass: usize,
    /// Recent sent rates, bytes/s.
    rates: Vec<u64>,
    postcopy_started: bool,
    ended: bool,
}

impl Converger {
    /// A converger whose migration started with `plan`.
    pub fn new(bounds: Bounds, plan: &StartPlan) -> Converger {
        let step = bounds.steps.iter().position(|&s| s >= plan.downtime_ms).unwrap_or(0);
        Converger {
            bounds,
            step,
            cap_mib_s: plan.bandwidth_mib_s,
            stall: Stall::default(),
            pass_starts: Vec::new(),
            pass: 0,
            raised_at_pass: 0,
            rates: Vec::new(),
            postcopy_started: false,
            ended: false,
        }
    }

    /// The scheduler changed the migration's bandwidth cap. A larger cap starts the count of
    /// flat passes afresh: passes sent on a smaller share (a younger migration, while an
    /// older one on its link finishes) say nothing about what this one can do, and raising
    /// the downtime limit for them would only lengthen its pause later.
    pub fn bandwidth_changed(&mut self, mib_s: f64) {
        if self.cap_mib_s.is_some_and(|old| mib_s > old) {
            self.raised_at_pass = self.pass_starts.len();
        }
        self.cap_mib_s = Some(mib_s);
    }

    /// The downtime limit now, ms.
    pub fn downtime_ms(&self) -> u64 {
        self.bounds.steps[self.step]
    }

    /// Reads a sample taken `at` seconds after the start; returns what to do, if anything.
    pub fn observe(&mut self, at: f64, sample: &Progress) -> Option<Decision> {
        if self.ended {
            return None;
        }
        self.stall.observe(at, sample);
        self.rates.push(sample.bandwidth_bytes_s);
        if self.rates.len() > HEALTH_WINDOW {
            self.rates.remove(0);
        }
        if sample.memory_passes > self.pass && sample.disk_remaining_bytes == 0 {
            self.pass = sample.memory_passes;
            self.pass_starts.push((at, sample.memory_remaining_bytes as f64));
        }
        if sample.postcopy_active {
            self.postcopy_started = true;
        }
        self.bounded(at).or_else(|| self.unstick(at, sample))
    }

    /// Time passed without a sample (a migration whose link died sends none).
    pub fn tick(&mut self, at: f64) -> Option<Decision> {
        if self.ended {
            return None;
        }
        self.bounded(at)
    }

    /// Abort decisions: the completion timeout and the stall timeout.
    fn bounded(&mut self, at: f64) -> Option<Decision> {
        if at >= self.bounds.completion_timeout_s {
            self.ended = true;
            return Some(Decision::Abort {
                reason: format!(
                    "not complete within {:.0} s ({})",
                    self.bounds.completion_timeout_s, self.bounds.completion_rule
                ),
            });
        }
        let stalled = self.bounds.stall_timeout_s.and_then(|timeout| self.stall.stalled(at, timeout));
        match stalled {
            Some(reason) if !self.postcopy_started => {
                self.ended = true;
                Some(Decision::Abort { reason })
            }
            _ => None,
        }
    }

    /// Raise the limit, or switch to post-copy, when the passes stopped shrinking.
    fn unstick(&mut self, at: f64, sample: &Progress) -> Option<Decision> {
        if self.postcopy_started {
            return None;
        }
        let spell = self.flat(at)?;
        let why = format!(
            "remaining memory flat: none of the last {} passes ({:.1} s) started {:.0} % below ~{:.1} MiB, the lowest start before them",
            spell.passes,
            spell.seconds,
            SHRINK * 100.0,
            spell.low_before / MIB,
        );
        if self.step + 1 < self.bounds.steps.len() {
            // The smallest step that covers what QEMU expects the pause to take.
            let expected = sample.expected_downtime_ms.unwrap_or(0);
            let next = (self.step + 1..self.bounds.steps.len())
                .find(|&i| self.bounds.steps[i] >= expected)
                .unwrap_or(self.bounds.steps.len() - 1);
            self.step = next;
            self.raised_at_pass = self.pass_starts.len();
            let expected = sample.expected_downtime_ms.map(|e| format!(", QEMU expects {e} ms")).unwrap_or_default();
            return Some(Decision::RaiseDowntime { ms: self.bounds.steps[next], reason: format!("{why}{expected}") });
        }
        if self.bounds.postcopy {
            self.raised_at_pass = self.pass_starts.len();
            return match self.link_health() {
                Ok(rate) => {
                    self.postcopy_started = true;
                    Some(Decision::StartPostCopy {
                        reason: format!(
                            "{why} at the maximum downtime {} ms; the link delivers {rate:.1} MiB/s",
                            self.downtime_ms()
                        ),
                    })
                }
                // Not now: waiting keeps the VM safe on its source; the stall timeout bounds it.
                Err(_) => None,
            };
        }
        None
    }

    /// Whether the memory still to send stopped shrinking since the limit was last raised
    /// (or the share last grew).
    fn flat(&self, at: f64) -> Option<FlatSpell> {
        stopped_shrinking(&self.pass_starts[self.raised_at_pass.min(self.pass_starts.len())..], at)
    }

    /// The recent sent rate, MiB/s, when the link looks healthy; why not otherwise.
    fn link_health(&self) -> Result<f64, String> {
        if self.rates.len() < HEALTH_WINDOW.min(3) {
            return Err("too few samples".into());
        }
        let rate = self.rates.iter().sum::<u64>() as f64 / self.rates.len() as f64 / MIB;
        let floor = self.cap_mib_s.map_or(1.0, |cap| cap * HEALTHY_SHARE);
        if self.rates.contains(&0) || rate < floor {
            return Err(format!("the link delivers {rate:.1} MiB/s, below {floor:.1} MiB/s"));
        }
        Ok(rate)
    }
}

#[cfg(test)]
mod tests;
