//! Plan files: which VMs go where, in TOML (the full format) or CSV (one move per row).
//!
//! ```toml
//! [plan]
//! name = "rack12-maintenance"
//! deadline = "2026-11-23T06:00:00Z"   # no new move starts after this
//! resume_from = "RUN"                 # move only VMs that succeeded in RUN
//!
//! [limits]
//! cluster = 8
//! per_source = 2
//! per_target = 2
//!
//! [policy]
//! mode = "live-or-cold"               # live | cold | live-or-cold
//! max_downtime_ms = 300
//! auto_converge = true
//! postcopy = false
//! completion_timeout_per_gib_s = 150
//! stall_timeout_s = 40
//! convergence = "ferry"               # ferry | qemu: QEMU alone, one fixed limit, no stall abort
//! placement = "best-fit"              # best-fit | spread | least-loaded
//! allow_cross_group = false
//! stale_copies = "refuse"             # refuse | replace: earlier copies ferry left on a target
//! tls = true                          # encrypt migration streams (default: when both hosts' URIs use TLS)
//! parallel_connections = 4            # multifd channels (default 0: one stream)
//! compression = "zstd"                # none | zstd | zlib (needs parallel_connections)
//! compression_level = 1               # zstd 1-20, zlib 1-9
//! zerocopy = false                    # zero-copy sends (multifd, no compression, no TLS)
//! transport = "fixed"                 # fixed | auto: per move, compressed multifd when the
//!                                     # link share limits it and the source has CPU idle
//!
//! [[move]]
//! vm = "web-1"
//! to = "host-b"                       # or "ANY"
//! priority = 10
//!
//! [[group]]                           # one after another; a failure skips the rest
//! vms = ["dns-a", "dns-b"]
//! to = "ANY"
//!
//! [[drain]]
//! host = "host-a"
//! to = "ANY"
//! return = true                       # after the hook, every VM comes back to host-a
//! hook = "ssh host-a sudo apt-get -y upgrade"
//!
//! [hooks]                             # commands run by `sh -c`, output journaled
//! pre_run = "notify start"            # once, before the first move
//! post_run = "notify done"            # once, after the last (and after any return)
//! pre_move = "check-app $FERRY_VM"    # before each VM's move ([[move]] pre_hook replaces it)
//! post_move = "check-app $FERRY_VM"   # after each VM's successful move (post_hook replaces it)
//! on_failure = "fail"                 # fail | warn
//! timeout_s = 600
//! rerun_hooks = false                 # after a crash in a drain's hook, resume runs it again
//! ```

use std::collections::HashMap;

use ferry_model::{Compression, HostSpec, StreamMode, StreamOptions, AUTO_STREAM};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::roll::{parse_roll, RawRoll, Roll};

use crate::time::parse_rfc3339;
use crate::{line_of, toml_error, InputError};

/// Where a move goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A named host.
    Host(String),
    /// Placement decides, when the move starts.
    Any,
}

impl Target {
    fn parse(text: &str) -> Target {
        if text.eq_ignore_ascii_case("any") {
            Target::Any
        } else {
            Target::Host(text.to_string())
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Host(h) => f.write_str(h),
            Target::Any => f.write_str("ANY"),
        }
    }
}

/// How VMs move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Live only; a VM that cannot move live stays where it is.
    Live,
    /// Cold only: every VM restarts on its target.
    Cold,
    /// Live, and cold when live is impossible or fails.
    LiveOrCold,
}

/// Concurrency limits of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Migrations in flight in the whole run.
    pub cluster: usize,
    /// Outbound migrations per source host.
    pub per_source: usize,
    /// Inbound migrations per target host.
    pub per_target: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { cluster: 8, per_source: 2, per_target: 2 }
    }
}

/// What a move does with an earlier copy of its VM's disk that ferry left on its target
/// (a source copy kept by an earlier move away from that host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StaleCopies {
    /// The `volumes` check fails naming the copy and the command that removes it; the move
    /// does not start.
    #[default]
    Refuse,
    /// The move deletes the copy (journaled first) just before it prepares the target.
    Replace,
}

impl std::fmt::Display for StaleCopies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StaleCopies::Refuse => "refuse",
            StaleCopies::Replace => "replace",
        })
    }
}

/// Who drives a live migration to its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Convergence {
    /// ferry's policy (`ferry-converge`): the downtime limit raised in steps up to
    /// `max_downtime_ms`, a throttle fitted to the guest, post-copy when allowed, the stall
    /// and completion timeouts.
    #[default]
    Ferry,
    /// QEMU alone, as `virsh migrate --auto-converge` leaves it: one fixed downtime limit
    /// (`max_downtime_ms`), QEMU's default throttle, no post-copy, no stall abort; only the
    /// completion timeout. For comparing with what libvirt does by itself.
    Qemu,
}

impl Convergence {
    /// The names a plan may give.
    pub const NAMES: &'static str = "ferry, qemu";
}

impl std::str::FromStr for Convergence {
    type Err = String;

    fn from_str(name: &str) -> Result<Convergence, String> {
        match name {
            "ferry" => Ok(Convergence::Ferry),
            "qemu" => Ok(Convergence::Qemu),
            _ => Err(format!("{name:?} is not one of {}", Convergence::NAMES)),
        }
    }
}

/// How each migration is driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Live, cold, or live with a cold fallback.
    pub mode: Mode,
    /// Longest pause allowed at switch-over, ms (QEMU's default is 300).
    pub max_downtime_ms: u64,
    /// Let QEMU throttle a guest that dirties memory faster than it can be sent.
    pub auto_converge: bool,
    /// Allow post-copy (a failure after the switch loses the VM).
    pub postcopy: bool,
    /// Abort a migration not complete after this many seconds per GiB of memory.
    pub completion_timeout_per_gib_s: u64,
    /// Abort a migration that made no progress for this long.
    pub stall_timeout_s: u64,
    /// ferry's convergence policy, or QEMU's alone. Absent from the documents of runs
    /// journaled before it existed: those ran ferry's.
    #[serde(default)]
    pub convergence: Convergence,
    /// Placement policy for `ANY`: best-fit, spread, least-loaded.
    pub placement: String,
    /// Allow targets outside the source's host group.
    pub allow_cross_group: bool,
    /// Delete the source copy of host-local volumes after a verified move.
    pub delete_source_volumes: bool,
    /// Seconds a guest gets to shut down by itself in a cold move.
    pub shutdown_timeout_s: u64,
    /// Earlier copies ferry left on a target: refused (default) or replaced. Absent from
    /// the documents of runs journaled before it existed: those refused.
    #[serde(default)]
    pub stale_copies: StaleCopies,
    /// Encrypt migration streams with TLS; `None`: when both hosts' URIs use TLS.
    #[serde(default)]
    pub tls: Option<bool>,
    /// Parallel connections, compression, zero-copy.
    #[serde(default)]
    pub stream: StreamOptions,
    /// `fixed`: `stream` for every move; `auto`: chosen per move as it starts.
    #[serde(default)]
    pub transport: StreamMode,
}

impl Policy {
    /// Whether migrations from `from` to `to` are encrypted: as the policy says, else when
    /// both hosts are reached over TLS (hosts set up for TLS migrations usually refuse any
    /// other: QEMU's `migrate_tls_force`).
    pub fn tls_between(&self, from: &HostSpec, to: &HostSpec) -> bool {
        self.tls.unwrap_or_else(|| from.migrates_tls_to(to))
    }

    /// The stream options of migrations from `from` to `to`: the policy's, within what
    /// each host allows.
    pub fn stream_between(&self, from: &HostSpec, to: &HostSpec) -> StreamOptions {
        to.stream.bound(from.stream.bound(self.stream))
    }

    /// The compressed stream `transport = "auto"` may turn on from `from` to `to`: the
    /// policy's when it compresses, else [`AUTO_STREAM`], within what each host allows.
    pub fn auto_stream_between(&self, from: &HostSpec, to: &HostSpec) -> StreamOptions {
        let wanted = if self.stream.compression == Compression::None { AUTO_STREAM } else { self.stream };
        to.stream.bound(from.stream.bound(wanted))
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            mode: Mode::Live,
            max_downtime_ms: 300,
            auto_converge: true,
            postcopy: false,
            completion_timeout_per_gib_s: 150,
            stall_timeout_s: 40,
            convergence: Convergence::Ferry,
            placement: "best-fit".into(),
            allow_cross_group: false,
            delete_source_volumes: false,
            shutdown_timeout_s: 60,
            stale_copies: StaleCopies::Refuse,
            tls: None,
            stream: StreamOptions::default(),
            transport: StreamMode::Fixed,
        }
    }
}

/// What a failing hook does to its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The hook's failure fails what it guards and stops the run: after a failed
    /// `pre_run` nothing moves; after a failed `pre_move` that VM stays where it is; after
    /// either per-VM hook no new move starts (those not started end FAILURE-INIT, those
    /// under way finish). The run exits 1.
    Fail,
    /// The failure is journaled and reported; the run goes on.
    Warn,
}

/// Commands run around a run and around each VM's move, by `sh -c`, with the run and the
/// VM in their environment; their output goes to the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hooks {
    /// Once, before the first move.
    pub pre_run: Option<String>,
    /// Once, after the last move (and after the return of drained VMs).
    pub post_run: Option<String>,
    /// Before each VM's move, unless the move has its own `pre_hook`.
    pub pre_move: Option<String>,
    /// After each VM's successful move, unless the move has its own `post_hook`.
    pub post_move: Option<String>,
    /// What a failing hook does.
    pub on_failure: OnFailure,
    /// A hook still running after this many seconds is killed, and has failed.
    pub timeout_s: u64,
    /// After a crash during a drain's hook, `ferry resume` runs the hook again (it must be
    /// safe to repeat); otherwise resume stops and asks the operator (`--hook-done`).
    pub rerun_hooks: bool,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            pre_run: None,
            post_run: None,
            pre_move: None,
            post_move: None,
            on_failure: OnFailure::Fail,
            timeout_s: 600,
            rerun_hooks: false,
        }
    }
}

/// One VM's planned move, wherever in the file it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMove {
    /// VM name (or UUID).
    pub vm: String,
    /// Target.
    pub to: Target,
    /// Group it belongs to; its members move one after another.
    pub group: Option<String>,
    /// Position within its group.
    pub order: usize,
    /// Higher moves first (after group order).
    pub priority: i64,
    /// Line of the file that asked for it.
    pub line: usize,
    /// Run before this VM's move instead of the plan's `pre_move` hook.
    #[serde(default)]
    pub pre_hook: Option<String>,
    /// Run after this VM's successful move instead of the plan's `post_move` hook.
    #[serde(default)]
    pub post_hook: Option<String>,
}

/// A host to empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    /// The host.
    pub host: String,
    /// Where its VMs go.
    pub to: Target,
    /// Bring every VM back after the hook.
    pub return_after: bool,
    /// Command to run once the host is empty.
    pub hook: Option<String>,
    /// What must pass after the hook before the host takes its VMs back (a roll's `check`).
    #[serde(default)]
    pub check: Option<Check>,
    /// VMs (names) that do not leave: shut down before the hook, started again once the
    /// check passed (a roll's `maintenance = "shutdown"`).
    #[serde(default)]
    pub shut_down: Vec<String>,
    /// VMs (names) that leave cold whatever the plan's `mode` (a roll's `maintenance =
    /// "cold"`).
    #[serde(default)]
    pub cold: Vec<String>,
    /// On a simulated fleet, the hook and the check are not run: the hook (or, without one,
    /// the host's maintenance) takes this many seconds of virtual time and ends well (a
    /// roll's `hook_sim_s`, 0 when not given). `None`: they run as on real hosts.
    #[serde(default)]
    pub hook_sim_s: Option<f64>,
    /// Line of the file.
    pub line: usize,
}

impl Drain {
    /// Whether something follows the host's emptying: its hook, its check, the return, or
    /// VMs to start again.
    pub fn acts_after(&self) -> bool {
        self.hook.is_some() || self.check.is_some() || self.return_after || !self.shut_down.is_empty()
    }
}

/// A command that must pass before a drained host takes VMs again: run until it exits 0,
/// for at most `timeout_s` seconds (a host that reboots answers after a while).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The command (`FERRY_HOST` in its environment).
    pub command: String,
    /// Seconds it may take to pass.
    pub timeout_s: u64,
}

/// A parsed, self-consistent plan (names not yet checked against the cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// File it came from.
    pub file: String,
    /// Plan name.
    pub name: String,
    /// No new move starts after this (Unix seconds).
    pub deadline: Option<i64>,
    /// Run whose successes gate this one.
    pub resume_from: Option<String>,
    /// Concurrency limits.
    pub limits: Limits,
    /// Migration policy.
    pub policy: Policy,
    /// Explicit moves and group members, in file order.
    pub moves: Vec<PlannedMove>,
    /// Hosts to empty.
    pub drains: Vec<Drain>,
    /// Commands run around the run and each move.
    #[serde(default)]
    pub hooks: Hooks,
    /// Rolling maintenance of many hosts, when the plan is a roll.
    #[serde(default)]
    pub roll: Option<Roll>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    plan: Option<RawHeader>,
    limits: Option<Spanned<RawLimits>>,
    policy: Option<RawPolicy>,
    #[serde(default, rename = "move")]
    moves: Vec<Spanned<RawMove>>,
    #[serde(default, rename = "group")]
    groups: Vec<Spanned<RawGroup>>,
    #[serde(default, rename = "drain")]
    drains: Vec<Spanned<RawDrain>>,
    hooks: Option<RawHooks>,
    roll: Option<Spanned<RawRoll>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    pre_run: Option<Spanned<String>>,
    post_run: Option<Spanned<String>>,
    pre_move: Option<Spanned<String>>,
    post_move: Option<Spanned<String>>,
    on_failure: Option<Spanned<String>>,
    timeout_s: Option<Spanned<i64>>,
    rerun_hooks: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Option<String>,
    deadline: Option<Spanned<toml::Value>>,
    resume_from: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cluster: Option<Spanned<i64>>,
    per_source: Option<Spanned<i64>>,
    per_target: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    mode: Option<Spanned<String>>,
    max_downtime_ms: Option<Spanned<i64>>,
    auto_converge: Option<bool>,
    postcopy: Option<bool>,
    completion_timeout_per_gib_s: Option<Spanned<i64>>,
    stall_timeout_s: Option<Spanned<i64>>,
    convergence: Option<Spanned<String>>,
    placement: Option<Spanned<String>>,
    allow_cross_group: Option<bool>,
    delete_source_volumes: Option<bool>,
    shutdown_timeout_s: Option<Spanned<i64>>,
    stale_copies: Option<Spanned<String>>,
    tls: Option<bool>,
    parallel_connections: Option<Spanned<i64>>,
    compression: Option<Spanned<String>>,
    compression_level: Option<Spanned<i64>>,
    zerocopy: Option<Spanned<bool>>,
    transport: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMove {
    vm: Spanned<String>,
    to: Spanned<String>,
    #[serde(default)]
    priority: i64,
    pre_hook: Option<Spanned<String>>,
    post_hook: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Option<String>,
    vms: Spanned<Vec<Spanned<String>>>,
    to: Spanned<String>,
    #[serde(default)]
    priority: i64,
    pre_hook: Option<Spanned<String>>,
    post_hook: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrain {
    host: Spanned<String>,
    #[serde(default = "any")]
    to: Spanned<String>,
    #[serde(default, rename = "return")]
    return_after: bool,
    hook: Option<Spanned<String>>,
}

fn any() -> Spanned<String> {
    Spanned::new(0..0, "ANY".to_string())
}

/// Collects located errors for one file.
/// The stream options of `[policy]` into `policy`: each value checked, then the
/// combination (an impossible one is named at the option that makes it so).
fn stream_policy(p: &RawPolicy, policy: &mut Policy, errors: &mut Errors<'_>) {
    policy.tls = p.tls;
    let stream = &mut policy.stream;
    if let Some(n) = &p.parallel_connections {
        match u32::try_from(*n.get_ref()) {
            Ok(n) if n <= 64 => stream.parallel_connections = n,
            _ => errors.at(n.span(), "policy.parallel_connections", format!("{} is not in 0–64", n.get_ref())),
        }
    }
    if let Some(name) = &p.compression {
        match name.get_ref().parse::<Compression>() {
            Ok(c) => stream.compression = c,
            Err(e) => errors.at(name.span(), "policy.compression", e),
        }
    }
    if let Some(level) = &p.compression_level {
        match u32::try_from(*level.get_ref()) {
            Ok(l) => stream.compression_level = Some(l),
            Err(_) => errors.at(level.span(), "policy.compression_level", format!("{} is negative", level.get_ref())),
        }
    }
    if let Some(zerocopy) = &p.zerocopy {
        stream.zerocopy = *zerocopy.get_ref();
    }
    if let Some(mode) = &p.transport {
        match mode.get_ref().parse::<StreamMode>() {
            Ok(m) => policy.transport = m,
            Err(e) => errors.at(mode.span(), "policy.transport", e),
        }
    }
    // Where to point at: the option the problem starts with, else the first one given.
    let span_of = |problem: &str| {
        let spans = [
            ("compression_level", p.compression_level.as_ref().map(Spanned::span)),
            ("compression", p.compression.as_ref().map(Spanned::span)),
            ("zerocopy", p.zerocopy.as_ref().map(Spanned::span)),
        ];
        let named = spans.iter().find(|(name, span)| problem.starts_with(name) && span.is_some());
        let any = spans.iter().find(|(_, span)| span.is_some());
        named.or(any).and_then(|(_, span)| span.clone()).unwrap_or(0..0)
    };
    for problem in stream.problems(policy.tls == Some(true)) {
        let field = problem.split(' ').next().unwrap_or("compression").to_string();
        errors.at(span_of(&problem), format!("policy.{field}"), problem);
    }
}

struct Errors<'a> {
    file: &'a str,
    text: &'a str,
    list: Vec<InputError>,
}

impl Errors<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(InputError {
            file: self.file.to_string(),
            line: (span.end > 0).then(|| line_of(self.text, span.start)),
            field: Some(field.into()),
            message: message.into(),
        });
    }
}

/// Parses and validates a TOML plan. All problems are returned at once.
pub fn parse_plan_toml(file: &str, text: &str) -> Result<Plan, Vec<InputError>> {
    let raw: RawPlan = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
    let mut errors = Errors { file, text, list: Vec::new() };
    let header = raw.plan.as_ref();
    let deadline = header.and_then(|h| h.deadline.as_ref()).and_then(|d| {
        let text = match d.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Datetime(dt) => dt.to_string(),
            other => format!("{other}"),
        };
        parse_rfc3339(&text).map_err(|e| errors.at(d.span(), "plan.deadline", e)).ok()
    });
    let resume_from = header.and_then(|h| h.resume_from.as_ref()).and_then(|r| {
        if r.get_ref().trim().is_empty() {
            errors.at(r.span(), "plan.resume_from", "must name a run id");
            None
        } else {
            Some(r.get_ref().trim().to_string())
        }
    });

    let mut limits = Limits::default();
    if let Some(raw_limits) = &raw.limits {
        let l = raw_limits.get_ref();
        for (value, slot, name) in [
            (&l.cluster, &mut limits.cluster, "limits.cluster"),
            (&l.per_source, &mut limits.per_source, "limits.per_source"),
            (&l.per_target, &mut limits.per_target, "limits.per_target"),
        ] {
            if let Some(v) = value {
                match usize::try_from(*v.get_ref()) {
                    Ok(n) if n > 0 => *slot = n,
                    _ => errors.at(v.span(), name, format!("{} must be a positive number of migrations", v.get_ref())),
                }
            }
        }
    }

    let mut policy = Policy::default();
    if let Some(p) = &raw.policy {
        if let Some(mode) = &p.mode {
            match mode.get_ref().as_str() {
                "live" => policy.mode = Mode::Live,
                "cold" => policy.mode = Mode::Cold,
                "live-or-cold" => policy.mode = Mode::LiveOrCold,
                other => {
                    errors.at(mode.span(), "policy.mode", format!("{other:?} is not one of live, cold, live-or-cold"))
                }
            }
        }
        for (value, slot, name, min) in [
            (&p.max_downtime_ms, &mut policy.max_downtime_ms, "policy.max_downtime_ms", 1),
            (
                &p.completion_timeout_per_gib_s,
                &mut policy.completion_timeout_per_gib_s,
                "policy.completion_timeout_per_gib_s",
                1,
            ),
            (&p.stall_timeout_s, &mut policy.stall_timeout_s, "policy.stall_timeout_s", 1),
            (&p.shutdown_timeout_s, &mut policy.shutdown_timeout_s, "policy.shutdown_timeout_s", 0),
        ] {
            if let Some(v) = value {
                match u64::try_from(*v.get_ref()) {
                    Ok(n) if n >= min => *slot = n,
                    _ => errors.at(v.span(), name, format!("{} must be at least {min}", v.get_ref())),
                }
            }
        }
        if let Some(placement) = &p.placement {
            match placement.get_ref().as_str() {
                "best-fit" | "spread" | "least-loaded" => policy.placement = placement.get_ref().clone(),
                other => errors.at(
                    placement.span(),
                    "policy.placement",
                    format!("{other:?} is not one of best-fit, spread, least-loaded"),
                ),
            }
        }
        if let Some(stale) = &p.stale_copies {
            match stale.get_ref().as_str() {
                "refuse" => policy.stale_copies = StaleCopies::Refuse,
                "replace" => policy.stale_copies = StaleCopies::Replace,
                other => {
                    errors.at(stale.span(), "policy.stale_copies", format!("{other:?} is not one of refuse, replace"))
                }
            }
        }
        stream_policy(p, &mut policy, &mut errors);
        policy.auto_converge = p.auto_converge.unwrap_or(policy.auto_converge);
        policy.postcopy = p.postcopy.unwrap_or(policy.postcopy);
        if let Some(convergence) = &p.convergence {
            match convergence.get_ref().parse::<Convergence>() {
                // Nothing would ever switch: asking for post-copy too is a mistake to name.
                Ok(Convergence::Qemu) if policy.postcopy => errors.at(
                    convergence.span(),
                    "policy.convergence",
                    "\"qemu\" never switches to post-copy: drop postcopy = true, or use convergence = \"ferry\"",
                ),
                Ok(c) => policy.convergence = c,
                Err(e) => errors.at(convergence.span(), "policy.convergence", e),
            }
        }
        policy.allow_cross_group = p.allow_cross_group.unwrap_or(policy.allow_cross_group);
        policy.delete_source_volumes = p.delete_source_volumes.unwrap_or(policy.delete_source_volumes);
    }

    let mut moves = Vec::new();
    for (i, m) in raw.moves.iter().enumerate() {
        let m = m.get_ref();
        let line = line_of(text, m.vm.span().start);
        if m.vm.get_ref().trim().is_empty() {
            errors.at(m.vm.span(), format!("move[{i}].vm"), "must name a VM");
        }
        if m.to.get_ref().trim().is_empty() {
            errors.at(m.to.span(), format!("move[{i}].to"), "must name a host or ANY");
        }
        moves.push(PlannedMove {
            vm: m.vm.get_ref().trim().to_string(),
            to: Target::parse(m.to.get_ref().trim()),
            group: None,
            order: 0,
            priority: m.priority,
            line,
            pre_hook: command(&mut errors, &m.pre_hook, &format!("move[{i}].pre_hook")),
            post_hook: command(&mut errors, &m.post_hook, &format!("move[{i}].post_hook")),
        });
    }
    let mut group_names: HashMap<String, usize> = HashMap::new();
    for (g, group) in raw.groups.iter().enumerate() {
        let span = group.span();
        let group = group.get_ref();
        let name = group.name.clone().unwrap_or_else(|| format!("group-{}", g + 1));
        if let Some(first) = group_names.insert(name.clone(), g) {
            errors.at(
                span.clone(),
                format!("group[{g}].name"),
                format!("{name:?} is already the name of group[{first}]"),
            );
        }
        if group.vms.get_ref().is_empty() {
            errors.at(group.vms.span(), format!("group[{g}].vms"), "an empty group: list at least one VM");
        }
        if group.to.get_ref().trim().is_empty() {
            errors.at(group.to.span(), format!("group[{g}].to"), "must name a host or ANY");
        }
        let pre_hook = command(&mut errors, &group.pre_hook, &format!("group[{g}].pre_hook"));
        let post_hook = command(&mut errors, &group.post_hook, &format!("group[{g}].post_hook"));
        for (order, vm) in group.vms.get_ref().iter().enumerate() {
            moves.push(PlannedMove {
                vm: vm.get_ref().trim().to_string(),
                to: Target::parse(group.to.get_ref().trim()),
                group: Some(name.clone()),
                order,
                priority: group.priority,
                line: line_of(text, vm.span().start),
                pre_hook: pre_hook.clone(),
                post_hook: post_hook.clone(),
            });
        }
    }
    let mut seen: HashMap<&str, &PlannedMove> = HashMap::new();
    for m in &moves {
        if let Some(first) = seen.get(m.vm.as_str()) {
            let where_first = match &first.group {
                Some(g) => format!("group {g} (line {})", first.line),
                None => format!("a move on line {}", first.line),
            };
            errors.list.push(InputError {
                file: file.to_string(),
                line: Some(m.line),
                field: Some(if m.group.is_some() { "group.vms".into() } else { "move.vm".into() }),
                message: format!("{} is already planned in {where_first}: a VM moves once per plan", m.vm),
            });
        } else {
            seen.insert(&m.vm, m);
        }
    }

    let mut drains = Vec::new();
    let mut drained: HashMap<String, usize> = HashMap::new();
    for (i, d) in raw.drains.iter().enumerate() {
        let d = d.get_ref();
        let host = d.host.get_ref().trim().to_string();
        let line = line_of(text, d.host.span().start);
        if host.is_empty() {
            errors.at(d.host.span(), format!("drain[{i}].host"), "must name a host");
        } else if let Some(first) = drained.insert(host.clone(), line) {
            errors.at(d.host.span(), format!("drain[{i}].host"), format!("{host} is already drained on line {first}"));
        }
        let to = Target::parse(d.to.get_ref().trim());
        if to == Target::Host(host.clone()) {
            errors.at(d.to.span(), format!("drain[{i}].to"), format!("cannot drain {host} onto itself"));
        }
        if let Some(hook) = &d.hook {
            if hook.get_ref().trim().is_empty() {
                errors.at(hook.span(), format!("drain[{i}].hook"), "an empty command");
            }
        }
        drains.push(Drain {
            host,
            to,
            return_after: d.return_after,
            hook: d.hook.as_ref().map(|h| h.get_ref().clone()),
            check: None,
            shut_down: Vec::new(),
            cold: Vec::new(),
            hook_sim_s: None,
            line,
        });
    }
    let mut hooks = Hooks::default();
    if let Some(h) = &raw.hooks {
        hooks.pre_run = command(&mut errors, &h.pre_run, "hooks.pre_run");
        hooks.post_run = command(&mut errors, &h.post_run, "hooks.post_run");
        hooks.pre_move = command(&mut errors, &h.pre_move, "hooks.pre_move");
        hooks.post_move = command(&mut errors, &h.post_move, "hooks.post_move");
        if let Some(policy) = &h.on_failure {
            match policy.get_ref().as_str() {
                "fail" => hooks.on_failure = OnFailure::Fail,
                "warn" => hooks.on_failure = OnFailure::Warn,
                other => errors.at(policy.span(), "hooks.on_failure", format!("{other:?} is not one of fail, warn")),
            }
        }
        hooks.rerun_hooks = h.rerun_hooks.unwrap_or(false);
        if let Some(t) = &h.timeout_s {
            match u64::try_from(*t.get_ref()) {
                Ok(n) if n > 0 => hooks.timeout_s = n,
                _ => errors.at(
                    t.span(),
                    "hooks.timeout_s",
                    format!("{} must be a positive number of seconds", t.get_ref()),
                ),
            }
        }
    }

    let roll = raw.roll.as_ref().and_then(|r| match parse_roll(r.get_ref(), |at| line_of(text, at)) {
        Ok(roll) => Some(roll),
        Err(problems) => {
            for (span, field, message) in problems {
                errors.at(span, field, message);
            }
            None
        }
    });
    if let Some(r) = &raw.roll {
        if !moves.is_empty() || !drains.is_empty() {
            errors.at(
                r.span(),
                "roll",
                "a roll moves what its hosts hold: drop the plan's [[move]], [[group]] and [[drain]]",
            );
        }
    } else if moves.is_empty() && drains.is_empty() {
        errors.list.push(InputError {
            file: file.to_string(),
            line: None,
            field: None,
            message: "nothing to do: add a [[move]], [[group]] or [[drain]], or a [roll]".into(),
        });
    }

    if errors.list.is_empty() {
        Ok(Plan {
            file: file.to_string(),
            name: header.and_then(|h| h.name.clone()).unwrap_or_else(|| file_stem(file)),
            deadline,
            resume_from,
            limits,
            policy,
            moves,
            drains,
            hooks,
            roll,
        })
    } else {
        Err(errors.list)
    }
}

/// A hook's command: none when absent, an error when blank.
fn command(errors: &mut Errors<'_>, value: &Option<Spanned<String>>, field: &str) -> Option<String> {
    let value = value.as_ref()?;
    if value.get_ref().trim().is_empty() {
        errors.at(value.span(), field, "an empty command");
        return None;
    }
    Some(value.get_ref().clone())
}

/// Parses and validates a CSV plan: a header naming at least `vm` and `to`, optionally
/// `group`, `order` and `priority`; one move per row. Defaults for limits and policy.
pub fn parse_plan_csv(file: &str, text: &str) -> Result<Plan, Vec<InputError>> {
    let err = |line: Option<usize>, field: Option<&str>, message: String| InputError {
        file: file.to_string(),
        line,
        field: field.map(String::from),
        message,
    };
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(false).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![err(Some(1), None, format!("unreadable header: {e}"))]),
    };
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut errors = Vec::new();
    for h in headers.iter() {
        if !["vm", "to", "group", "order", "priority"].iter().any(|k| h.eq_ignore_ascii_case(k)) {
            errors.push(err(Some(1), Some(h), format!("unknown column {h:?}: columns are vm,to,group,order,priority")));
        }
    }
    let (Some(vm_col), Some(to_col)) = (column("vm"), column("to")) else {
        errors.push(err(
            Some(1),
            None,
            format!(
                "the header must name the columns vm and to (found {:?})",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
        return Err(errors);
    };
    let (group_col, order_col, priority_col) = (column("group"), column("order"), column("priority"));
    let mut moves = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| usize::try_from(p.line()).unwrap_or(0));
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!(
                        "{len} fields where the header has {expected_len} (an unclosed quote or a missing comma?)"
                    ),
                    _ => e.to_string(),
                };
                errors.push(err(line, None, message));
                continue;
            }
        };
        let line = record.position().map(|p| usize::try_from(p.line()).unwrap_or(0)).unwrap_or(0);
        let get = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or("").trim().to_string();
        let vm = get(Some(vm_col));
        let to = get(Some(to_col));
        if vm.is_empty() {
            errors.push(err(Some(line), Some("vm"), "empty: every row names a VM".into()));
        }
        if to.is_empty() {
            errors.push(err(Some(line), Some("to"), "empty: name a host or ANY".into()));
        }
        let number = |col: Option<usize>, name: &str, errors: &mut Vec<InputError>| -> i64 {
            let text = get(col);
            if text.is_empty() {
                return 0;
            }
            text.parse::<i64>().unwrap_or_else(|_| {
                errors.push(err(Some(line), Some(name), format!("{text:?} is not a whole number")));
                0
            })
        };
        let order = number(order_col, "order", &mut errors);
        if order < 0 {
            errors.push(err(Some(line), Some("order"), format!("{order} must not be negative")));
        }
        let priority = number(priority_col, "priority", &mut errors);
        let group = Some(get(group_col)).filter(|g| !g.is_empty());
        moves.push(PlannedMove {
            vm,
            to: Target::parse(&to),
            group,
            order: usize::try_from(order).unwrap_or(0),
            priority,
            line,
            pre_hook: None,
            post_hook: None,
        });
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &moves {
        if m.vm.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(m.vm.clone(), m.line) {
            errors.push(err(
                Some(m.line),
                Some("vm"),
                format!("{} is already planned on line {first}: a VM moves once per plan", m.vm),
            ));
        }
    }
    // Within a group, members move in `order`; equal orders would be ambiguous.
    let mut orders: HashMap<(String, usize), usize> = HashMap::new();
    for m in &moves {
        if let Some(g) = &m.group {
            if let Some(first) = orders.insert((g.clone(), m.order), m.line) {
                errors.push(err(
                    Some(m.line),
                    Some("order"),
                    format!("group {g} already has order {} on line {first}", m.order),
                ));
            }
        }
    }
    if moves.is_empty() && errors.is_empty() {
        errors.push(err(None, None, "no rows: nothing to do".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    moves.sort_by(|a, b| {
        (a.group.is_none(), &a.group, a.order, a.line).cmp(&(b.group.is_none(), &b.group, b.order, b.line))
    });
    Ok(Plan {
        file: file.to_string(),
        name: file_stem(file),
        deadline: None,
        resume_from: None,
        limits: Limits::default(),
        policy: Policy::default(),
        moves,
        drains: Vec::new(),
        hooks: Hooks::default(),
        roll: None,
    })
}

/// Parses a plan by its extension: `.csv` is CSV, anything else TOML.
pub fn parse_plan(file: &str, text: &str) -> Result<Plan, Vec<InputError>> {
    if file.to_ascii_lowercase().ends_with(".csv") {
        parse_plan_csv(file, text)
    } else {
        parse_plan_toml(file, text)
    }
}

fn file_stem(file: &str) -> String {
    std::path::Path::new(file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plan".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_are_read_and_impossible_ones_named_with_their_line() {
        let drain = "[[drain]]\nhost = \"host-a\"\n";
        let good =
            format!("[policy]\nparallel_connections = 4\ncompression = \"zstd\"\ncompression_level = 3\n{drain}");
        let plan = parse_plan_toml("p.toml", &good).expect("a good plan");
        let want = StreamOptions {
            parallel_connections: 4,
            compression: Compression::Zstd,
            compression_level: Some(3),
            zerocopy: false,
        };
        assert_eq!((plan.policy.stream, plan.policy.tls), (want, None));
        let cases = [
            ("compression = \"lz4\"\n", 3, "policy.compression", "\"lz4\" is not one of none, zstd, zlib"),
            ("compression = \"zstd\"\n", 3, "policy.compression", "compression zstd needs parallel_connections"),
            (
                "parallel_connections = 2\ncompression = \"zlib\"\ncompression_level = 12\n",
                5,
                "policy.compression_level",
                "compression_level 12 is not in 1–9",
            ),
            (
                "tls = true\nparallel_connections = 2\nzerocopy = true\n",
                5,
                "policy.zerocopy",
                "zerocopy cannot be combined with TLS",
            ),
            ("parallel_connections = -1\n", 3, "policy.parallel_connections", "-1 is not in 0–64"),
        ];
        for (policy, line, field, message) in cases {
            let text = format!("[plan]\nname = \"p\"\n[policy]\n{policy}{drain}");
            let errors = parse_plan_toml("p.toml", &text).expect_err("an impossible stream");
            assert_eq!(errors.len(), 1, "{policy}: {errors:?}");
            let e = &errors[0];
            assert_eq!((e.line, e.field.as_deref()), (Some(line + 1), Some(field)), "{policy}: {e:?}");
            assert!(e.message.starts_with(message), "{policy}: {e:?}");
        }
        // A run journaled before the options existed reads back with none of them.
        let mut old = toml::Table::try_from(&plan.policy).expect("serialises");
        assert!(old.remove("stream").is_some() && old.remove("tls").is_none());
        let read: Policy = old.try_into().expect("reads without the keys");
        assert_eq!(read.stream, StreamOptions::default());
    }

    #[test]
    fn stale_copies_are_refused_unless_the_plan_says_replace() {
        let drain = "[[drain]]\nhost = \"host-a\"\n";
        let default = parse_plan_toml("p.toml", drain).expect("a good plan");
        assert_eq!(default.policy.stale_copies, StaleCopies::Refuse);
        let replace =
            parse_plan_toml("p.toml", &format!("[policy]\nstale_copies = \"replace\"\n{drain}")).expect("a good plan");
        assert_eq!(replace.policy.stale_copies, StaleCopies::Replace);
        // A run journaled before the key existed reads back as refusing.
        let mut old = toml::Table::try_from(&default.policy).expect("serialises");
        assert!(old.remove("stale_copies").is_some());
        let read: Policy = old.try_into().expect("reads without the key");
        assert_eq!(read.stale_copies, StaleCopies::Refuse);
    }

    #[test]
    fn convergence_is_ferrys_unless_the_plan_says_qemu() {
        let drain = "[[drain]]\nhost = \"host-a\"\n";
        let default = parse_plan_toml("p.toml", drain).expect("a good plan");
        assert_eq!(default.policy.convergence, Convergence::Ferry);
        let qemu =
            parse_plan_toml("p.toml", &format!("[policy]\nconvergence = \"qemu\"\n{drain}")).expect("a good plan");
        assert_eq!(qemu.policy.convergence, Convergence::Qemu);
        let cases = [
            ("convergence = \"virsh\"\n", "\"virsh\" is not one of ferry, qemu"),
            ("postcopy = true\nconvergence = \"qemu\"\n", "\"qemu\" never switches to post-copy"),
        ];
        for (policy, message) in cases {
            let text = format!("[policy]\n{policy}{drain}");
            let errors = parse_plan_toml("p.toml", &text).expect_err("a bad convergence");
            assert_eq!(errors.len(), 1, "{policy}: {errors:?}");
            let e = &errors[0];
            let line = text.lines().position(|l| l.starts_with("convergence")).map(|i| i + 1);
            assert_eq!((e.file.as_str(), e.line, e.field.as_deref()), ("p.toml", line, Some("policy.convergence")));
            assert!(e.message.starts_with(message), "{policy}: {e:?}");
        }
        // A run journaled before the key existed reads back as ferry's.
        let mut old = toml::Table::try_from(&qemu.policy).expect("serialises");
        assert!(old.remove("convergence").is_some());
        let read: Policy = old.try_into().expect("reads without the key");
        assert_eq!(read.convergence, Convergence::Ferry);
    }
}
