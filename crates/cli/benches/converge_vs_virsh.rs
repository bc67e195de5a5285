//! A busy guest behind a capped link, moved by `virsh migrate --live` with libvirt's
//! defaults and by `ferry migrate` with its convergence policy, at three dirty rates; and
//! the preview's estimate against what happened.
//!
//! One lab per dirty rate — 4 MiB/s (converges easily), 10 (borderline: pre-copy alone
//! converges in over 20 passes), 24 (twice the link: it never does) — because a lab's guests
//! dirty at the rate it came up with; each is torn down before the next, and all use ports
//! 6000–6999. 128 MiB guests; vm-2 (disk on the shared NBD storage) moves from host-b to
//! host-a at 12 MiB/s per migration (`--bandwidth 12` for virsh; a cluster file with
//! `link_mib_s = 12` for ferry). Per lab, five moves:
//!
//! - virsh with libvirt's defaults, given the completion timeout ferry's default policy
//!   gives the guest (150 s per GiB, at least 60 s): if not done by then, `virsh
//!   domjobabort`;
//! - virsh with `--auto-converge`, throttling from where ferry's policy starts and in its
//!   steps (`--auto-converge-initial 50 --auto-converge-increment 25`), the same timeout;
//! - virsh with `--postcopy`, switched to post-copy (`virsh migrate-postcopy`) once the
//!   first pass is over and what remains has not fallen for 3 s — what an operator watching
//!   `domjobinfo` would do — the same timeout;
//! - `ferry migrate` of a one-move plan, default policy with `auto_converge = true`;
//! - the same with `auto_converge = false`, `postcopy = true`.
//!
//! Every contender has the same cap, the same timeout and the same guest: virsh's rows are
//! what an operator gets from the same convergence features QEMU offers ferry.
//!
//! Each move is followed by `ferry lab check` (the bench fails if it does not pass) and,
//! when the guest left host-b, an uncapped virsh move back. Prints outcome, downtime, time,
//! passes, data sent and ferry's journaled decisions per row, then the prediction of
//! `ferry_preview::estimate::estimate_live` for each row against the measurement: once with
//! what `ferry preview` feeds it (all memory counted as data; the dirty rate as declared,
//! which is what `--measure` would ideally read) and once with what is known of the lab's
//! guests (how much memory is non-zero, the working set, the uncapped switch-over).
//!
//! `cargo bench -p ferry --bench converge_vs_virsh` (root, a machine set up by
//! `scripts/setup`). About 10 minutes.

#[path = "shared/stats.rs"]
mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_journal::{Attempt, Event, EventKind, Journal, JournalConfig};
use ferry_plan::Policy;
use ferry_preview::estimate::{estimate_live, LiveEstimate, LiveInput, QEMU_DEFAULT_MAX_DOWNTIME_MS};
use serde_json::Value;
use stats::median;

/// Guest memory, MiB.
const MEM_MIB: u64 = 128;
/// Guest dirty rates, MiB/s: converging easily; borderline (pre-copy alone just converges,
/// in over 20 passes: 12, the link's own rate, never does); twice the link.
const RATES: [f64; 3] = [4.0, 10.0, 24.0];
/// The cap of every migration, MiB/s.
const LINK_MIB_S: u32 = 12;
/// The one port block of this bench; one lab at a time uses it.
const PORT_BASE: u16 = 6000;
/// Goal for the prediction of the total time, %.
const GOAL_PCT: f64 = 25.0;

/// The two ferry rows: name and `[policy]` lines (the rest is the default policy).
const FERRY_ROWS: [(&str, &str); 2] =
    [("ferry auto-converge", "auto_converge = true"), ("ferry post-copy", "auto_converge = false\npostcopy = true")];

fn main() -> ExitCode {
    let bench_started = Instant::now();
    let policy = Policy::default();
    let timeout_s = completion_timeout_s(&policy);
    let mut rows: Vec<Row> = Vec::new();
    let mut achieved = Vec::new();
    let mut failure = None;
    for dirty in RATES {
        let lab = Lab::up(dirty);
        match measure_lab(&lab, dirty, timeout_s, &mut rows) {
            Ok(()) => {}
            Err(e) => failure = Some(e),
        }
        achieved.push((dirty, lab.achieved_dirty_rate("vm-2")));
        drop(lab);
        if failure.is_some() {
            break;
        }
    }

    println!();
    println!(
        "vm-2: {MEM_MIB} MiB, shared disk, host-b -> host-a, {LINK_MIB_S} MiB/s per migration; completion timeout {timeout_s:.0} s \
         (default policy: {} s/GiB, at least 60 s); ferry's policy otherwise default (max_downtime_ms {}, stall_timeout_s {})",
        policy.completion_timeout_per_gib_s, policy.max_downtime_ms, policy.stall_timeout_s
    );
    for (dirty, rate) in &achieved {
        let rate = rate.map_or("no heartbeats read".to_string(), |r| format!("{r:.1} MiB/s"));
        println!("  dirty {dirty} MiB/s asked: the guest's heartbeats report a median of {rate}");
    }
    println!(
        "  total s: virsh's wall time, or ferry's attempt (journal); job: the hypervisor's; guest MiB/s: lowest / median dirty rate \
         of the guest's heartbeats during the move; decisions: ferry's journal (s since the start; AC throttle start+step, PC post-copy allowed)"
    );
    println!();
    println!(
        "{:>5} | {:<19} | {:<41} | {:>8} | {:>13} | {:>6} | {:>8} | {:>11} | decisions",
        "dirty", "mover", "outcome", "downtime", "total s (job)", "passes", "sent MiB", "guest MiB/s"
    );
    for r in &rows {
        println!(
            "{:>5} | {:<19} | {:<41} | {:>8} | {:>13} | {:>6} | {:>8} | {:>11} | {}",
            r.dirty,
            r.mover,
            r.outcome,
            r.downtime_ms.map_or("-".into(), |d| format!("{d:.0} ms")),
            format!("{:.1} ({})", r.total_s, r.job_s.map_or("-".into(), |j| format!("{j:.1}"))),
            r.passes.map_or("-".into(), |p| p.to_string()),
            r.sent_mib.map_or("-".into(), |s| format!("{s:.1}")),
            r.guest_dirty.map_or("-".into(), |(low, med)| format!("{low:.1} / {med:.1}")),
            if r.decisions.is_empty() { "-".to_string() } else { r.decisions.join("; ") }
        );
    }

    println!();
    println!(
        "predicted / measured; total s error of the prediction (goal within {GOAL_PCT:.0} %): \"preview\" = estimate_live as ferry preview calls it, \
         \"lab model\" = with the lab guest's non-zero memory ({:.0} MiB), working set ({:.0} MiB) and uncapped switch-over",
        ferry_lab::GUEST_BASE_NONZERO_MIB + lab_working_set(MEM_MIB as f64),
        lab_working_set(MEM_MIB as f64)
    );
    println!(
        "{:>5} | {:<19} | {:>23} | {:>23} | {:>13} | {:>13} | {:>7} | verdict",
        "dirty", "mover", "total s: preview", "total s: lab model", "job s: model", "downtime ms", "passes"
    );
    // Rows each prediction missed, with how.
    let (mut preview_off, mut model_off) = (Vec::new(), Vec::new());
    for r in &rows {
        let preview = predict(r.dirty, r.options, false);
        let model = predict(r.dirty, r.options, true);
        let completed = r.completed;
        let (p, m) = (judge(&preview, r), judge(&model, r));
        let verdict = match (&p, &m) {
            (Ok(()), Ok(())) if !completed => "within: neither completes, as both predicted".to_string(),
            (Ok(()), Ok(())) => "within (both)".to_string(),
            (Ok(()), Err(m)) => format!("within (preview); lab model off: {m}"),
            (Err(p), Ok(())) => format!("within (lab model); preview off: {p}"),
            (Err(p), Err(m)) => format!("OFF: preview {p}, lab model {m}"),
        };
        let row = format!("{} {}", r.dirty, r.mover);
        if let Err(e) = p {
            preview_off.push(format!("{row} ({e})"));
        }
        if let Err(e) = m {
            model_off.push(format!("{row} ({e})"));
        }
        println!(
            "{:>5} | {:<19} | {:>23} | {:>23} | {:>13} | {:>13} | {:>7} | {verdict}",
            r.dirty,
            r.mover,
            versus(preview.total_s, r.total_s, completed),
            versus(model.total_s, r.total_s, completed),
            format!(
                "{} / {}",
                secs(model.transfer_s),
                r.job_s.filter(|_| completed).map_or("-".into(), |j| format!("{j:.1}"))
            ),
            format!(
                "{} / {}",
                ms(model.downtime_ms),
                r.downtime_ms.filter(|_| completed).map_or("-".into(), |d| format!("{d:.0}"))
            ),
            format!("{} / {}", model.passes, r.passes.map_or("-".into(), |p| p.to_string())),
        );
    }
    for (name, off) in [("lab model", &model_off), ("preview", &preview_off)] {
        let missed = if off.is_empty() { String::new() } else { format!("; off: {}", off.join(", ")) };
        println!("{name}: {} of {} rows within {GOAL_PCT:.0} %{missed}", rows.len() - off.len(), rows.len());
    }
    println!();
    println!("decisions in full:");
    for r in &rows {
        for d in &r.full_decisions {
            println!("  {} {}: {d}", r.dirty, r.mover);
        }
    }
    println!();
    println!("bench took {:.0} s", bench_started.elapsed().as_secs_f64());
    match failure {
        None => ExitCode::SUCCESS,
        Some(e) => {
            println!();
            println!("BENCH FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The three rows of one lab, each followed by `ferry lab check` and the guest put back.
fn measure_lab(lab: &Lab, dirty: f64, timeout_s: f64, rows: &mut Vec<Row>) -> Result<(), String> {
    for variant in [Virsh::Defaults, Virsh::AutoConverge, Virsh::PostCopy] {
        let row = lab.virsh_move(dirty, timeout_s, variant)?;
        println!("{}", row.line());
        rows.push(row);
        lab.check(&format!("after {}", variant.name()))?;
        lab.put_back()?;
    }
    for (mover, policy) in FERRY_ROWS {
        let row = lab.ferry_move(dirty, mover, policy)?;
        println!("{}", row.line());
        rows.push(row);
        lab.check(&format!("after {mover}"))?;
        lab.put_back()?;
    }
    Ok(())
}

/// What the default policy gives a guest of [`MEM_MIB`] to complete, s (ferry-converge's
/// `Bounds::of`).
fn completion_timeout_s(policy: &Policy) -> f64 {
    (policy.completion_timeout_per_gib_s as f64 * MEM_MIB as f64 / 1024.0).max(60.0)
}

/// Options a row's migration started with, as the model knows them.
#[derive(Debug, Clone, Copy)]
struct Options {
    auto_converge: bool,
    postcopy: bool,
}

/// How virsh is asked to converge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Virsh {
    /// libvirt's defaults: plain pre-copy.
    Defaults,
    /// `--auto-converge`.
    AutoConverge,
    /// `--postcopy`, switched when it stalls.
    PostCopy,
}

impl Virsh {
    fn name(self) -> &'static str {
        match self {
            Virsh::Defaults => "virsh (defaults)",
            Virsh::AutoConverge => "virsh auto-converge",
            Virsh::PostCopy => "virsh post-copy",
        }
    }

    /// virsh's flags. Auto-converge throttles as ferry's does a guest whose dirty rate it
    /// was not told (ferry's rows are not told either): the same start and step.
    fn flags(self) -> Vec<String> {
        match self {
            Virsh::Defaults => Vec::new(),
            Virsh::AutoConverge => {
                let unknown = ferry_converge::StartInput {
                    memory_mib: MEM_MIB,
                    dirty_mib_s: None,
                    bandwidth_mib_s: Some(f64::from(LINK_MIB_S)),
                };
                let (initial, step) = ferry_converge::throttle(&unknown).unwrap_or((20, 10));
                ["--auto-converge", "--auto-converge-initial", &initial.to_string()]
                    .into_iter()
                    .chain(["--auto-converge-increment", &step.to_string()])
                    .map(String::from)
                    .collect()
            }
            Virsh::PostCopy => vec!["--postcopy".to_owned()],
        }
    }

    fn options(self) -> Options {
        Options { auto_converge: self == Virsh::AutoConverge, postcopy: self == Virsh::PostCopy }
    }
}

/// Seconds without progress after which the post-copy row switches.
const POSTCOPY_AFTER_STALL_S: f64 = 3.0;

/// One measured move.
struct Row {
    dirty: f64,
    mover: String,
    options: Options,
    completed: bool,
    outcome: String,
    downtime_ms: Option<f64>,
    total_s: f64,
    job_s: Option<f64>,
    passes: Option<u64>,
    sent_mib: Option<f64>,
    /// The guest's own dirty rate during the move, MiB/s: lowest and median of its
    /// heartbeats (auto-converge's throttle shows here).
    guest_dirty: Option<(f64, f64)>,
    /// Abbreviated.
    decisions: Vec<String>,
    full_decisions: Vec<String>,
}

impl Row {
    /// A progress line printed as soon as the row is measured.
    fn line(&self) -> String {
        format!(
            "dirty {} MiB/s  {:<19}  {}  total {:.1} s  downtime {}  passes {}  sent {}",
            self.dirty,
            self.mover,
            self.outcome,
            self.total_s,
            self.downtime_ms.map_or("-".into(), |d| format!("{d:.0} ms")),
            self.passes.map_or("-".into(), |p| p.to_string()),
            self.sent_mib.map_or("-".into(), |s| format!("{s:.1} MiB")),
        )
    }
}

/// The estimate for a row: as `ferry preview` asks it (`lab` false), or with what is known
/// of the lab's guests.
fn predict(dirty: f64, options: Options, lab: bool) -> LiveEstimate {
    let memory = MEM_MIB as f64;
    let wss = lab_working_set(memory);
    let mut input = LiveInput {
        memory_mib: memory,
        dirty_mib_s: dirty,
        bandwidth_mib_s: f64::from(LINK_MIB_S),
        max_downtime_ms: if options.auto_converge || options.postcopy {
            Policy::default().max_downtime_ms as f64
        } else {
            QEMU_DEFAULT_MAX_DOWNTIME_MS
        },
        auto_converge: options.auto_converge,
        postcopy: options.postcopy,
        ..LiveInput::default()
    };
    if options.auto_converge || options.postcopy {
        // ferry's policy, as the engine applies it: the downtime steps, and the throttle it
        // asks for a guest whose dirty rate it was not told.
        let policy = Policy { auto_converge: options.auto_converge, postcopy: options.postcopy, ..Policy::default() };
        let start = ferry_converge::start(
            &policy,
            &ferry_converge::StartInput {
                memory_mib: MEM_MIB,
                dirty_mib_s: None,
                bandwidth_mib_s: Some(f64::from(LINK_MIB_S)),
            },
        );
        input.downtime_steps_ms =
            ferry_converge::schedule(policy.max_downtime_ms).into_iter().map(|s| s as f64).collect();
        input.throttle = start.throttle.map(|(first, step)| (f64::from(first) / 100.0, f64::from(step) / 100.0));
    }
    if lab {
        input.catch_up_s = Some(ferry_lab::GUEST_CATCH_UP_S);
        input.nonzero_mib = Some(ferry_lab::GUEST_BASE_NONZERO_MIB + wss);
        input.working_set_mib = Some(wss);
        input.link_mib_s = Some(ferry_lab::LOOPBACK_PAGE_MIB_S);
    }
    estimate_live(&input)
}

/// Whether a prediction met the goal for a row: the outcome right and, when the move
/// completed, the total time within [`GOAL_PCT`]; how it missed otherwise.
fn judge(e: &LiveEstimate, row: &Row) -> Result<(), String> {
    match (e.converges, row.completed) {
        (true, true) => {
            let err = err(e.total_s, row.total_s);
            if err.abs() <= GOAL_PCT {
                Ok(())
            } else {
                Err(format!("{err:+.0} %"))
            }
        }
        (false, false) => Ok(()),
        (true, false) => Err("predicted done, was not".into()),
        (false, true) => Err("predicted not done, was".into()),
    }
}

fn versus(predicted: f64, measured: f64, completed: bool) -> String {
    if !predicted.is_finite() {
        return format!("never / {}", if completed { format!("{measured:.1}") } else { "never".into() });
    }
    if !completed {
        return format!("{predicted:.1} / never");
    }
    format!("{predicted:.1} / {measured:.1} ({:+.0} %)", err(predicted, measured))
}

fn secs(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.1}")
    } else {
        "never".into()
    }
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "never".into()
    }
}

/// `ferry lab up`'s working set for its guests of `mem` MiB.
fn lab_working_set(mem: f64) -> f64 {
    ferry_lab::guest_working_set_mib(mem as u64) as f64
}

/// Signed error of a prediction against a measurement, %.
fn err(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured * 100.0
}

/// A lab owned by the bench: `lab down --purge` on drop, also when the bench panics.
struct Lab {
    dir: PathBuf,
    dirty: f64,
}

impl Lab {
    fn up(dirty: f64) -> Lab {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-converge-{dirty}"));
        let lab = Lab { dir, dirty };
        let _ = ferry(&["lab", "down", "--purge", "--dir", lab.dir_str()]);
        let (mem, rate, port) = (MEM_MIB.to_string(), dirty.to_string(), PORT_BASE.to_string());
        let started = Instant::now();
        let out = ferry(&[
            "lab",
            "up",
            "--dir",
            lab.dir_str(),
            "--hosts",
            "2",
            "--vms",
            "2",
            "--mem",
            &mem,
            "--dirty",
            &rate,
            "--port-base",
            &port,
            // Plain streams, as the baseline's figures were taken; virsh's plain migrate
            // would be refused by a TLS lab.
            "--transport",
            "tcp",
        ]);
        assert!(out.status.success(), "lab up: {}\n{}", text(&out.stdout), text(&out.stderr));
        println!("lab up (dirty {dirty} MiB/s) in {:.0} s", started.elapsed().as_secs_f64());
        let on = lab.vm_host("vm-2");
        assert_eq!(on, "host-b", "the lab puts vm-2 on host-b");
        // The cluster file with every host's link at the cap: ferry caps each migration at it.
        let cluster = std::fs::read_to_string(lab.dir.join("cluster.toml")).expect("the lab writes a cluster file");
        assert!(cluster.lines().any(|l| l.starts_with("link_mib_s")), "cluster file without link_mib_s:\n{cluster}");
        let capped: Vec<String> = cluster
            .lines()
            .map(|l| if l.starts_with("link_mib_s") { format!("link_mib_s = {LINK_MIB_S}") } else { l.to_string() })
            .collect();
        std::fs::write(lab.capped_cluster(), capped.join("\n")).expect("write the capped cluster file");
        lab
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    fn capped_cluster(&self) -> PathBuf {
        self.dir.join(format!("cluster-{LINK_MIB_S}.toml"))
    }

    fn state(&self) -> PathBuf {
        self.dir.join("journal.db")
    }

    fn status(&self) -> Value {
        let out = ferry(&["lab", "status", "--dir", self.dir_str(), "--output", "json"]);
        assert!(out.status.success(), "lab status: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("lab status prints JSON")
    }

    /// Where a guest runs; "" when nowhere, "a,b" when on several hosts.
    fn vm_host(&self, vm: &str) -> String {
        let status = self.status();
        let vms = status["vms"].as_array().expect("lab status lists vms");
        let entry = vms.iter().find(|v| v["name"] == vm).expect("the guest is in the lab");
        let on: Vec<&str> = entry["running_on"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        on.join(",")
    }

    fn uri(&self, host: &str) -> String {
        let status = self.status();
        status["hosts"]
            .as_array()
            .expect("lab status lists hosts")
            .iter()
            .find(|h| h["name"] == host)
            .and_then(|h| h["uri"].as_str())
            .expect("the host is in the lab")
            .to_string()
    }

    fn virsh(&self, host: &str, args: &[&str]) -> Output {
        Command::new("virsh").arg("-c").arg(self.uri(host)).args(args).output().expect("virsh runs")
    }

    /// A baseline: capped `virsh migrate` as `variant` says, aborted after the completion
    /// timeout.
    fn virsh_move(&self, dirty: f64, timeout_s: f64, variant: Virsh) -> Result<Row, String> {
        let (src, dst) = (self.uri("host-b"), self.uri("host-a"));
        let bandwidth = LINK_MIB_S.to_string();
        let mark = self.serial_len();
        let started = Instant::now();
        let mut child = Command::new("virsh")
            .args([
                "-c",
                &src,
                "migrate",
                "--live",
                "--p2p",
                "--persistent",
                "--undefinesource",
                "--bandwidth",
                &bandwidth,
            ])
            .args(variant.flags())
            .args(["vm-2", &dst, "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("virsh: {e}"))?;
        let timeout = Duration::from_secs_f64(timeout_s);
        let mut last_job = String::new();
        // For the post-copy row: the least remaining seen, and since when.
        let (mut least, mut since, mut switched) = (f64::INFINITY, Instant::now(), None);
        while started.elapsed() < timeout && child.try_wait().map_err(|e| e.to_string())?.is_none() {
            std::thread::sleep(Duration::from_millis(500));
            if variant == Virsh::PostCopy && switched.is_none() {
                let job = JobInfo::parse(&text(&self.virsh("host-b", &["domjobinfo", "vm-2"]).stdout));
                if let (Some(pass), Some(left)) = (job.passes, job.remaining_mib) {
                    if left < least {
                        (least, since) = (left, Instant::now());
                    } else if pass >= 2 && since.elapsed().as_secs_f64() >= POSTCOPY_AFTER_STALL_S {
                        let out = self.virsh("host-b", &["migrate-postcopy", "vm-2"]);
                        if out.status.success() {
                            switched = Some(started.elapsed().as_secs_f64());
                        }
                    }
                }
            }
            if started.elapsed() + Duration::from_secs(2) > timeout {
                // Where the job stands just before the abort.
                let out = self.virsh("host-b", &["domjobinfo", "vm-2"]);
                if out.status.success() {
                    last_job = text(&out.stdout);
                }
            }
        }
        let mut row = Row {
            dirty,
            mover: variant.name().into(),
            options: variant.options(),
            completed: false,
            outcome: String::new(),
            downtime_ms: None,
            total_s: 0.0,
            job_s: None,
            passes: None,
            sent_mib: None,
            guest_dirty: None,
            decisions: Vec::new(),
            full_decisions: Vec::new(),
        };
        if child.try_wait().map_err(|e| e.to_string())?.is_none() {
            let abort = self.virsh("host-b", &["domjobabort", "vm-2"]);
            let status = child.wait().map_err(|e| e.to_string())?;
            row.total_s = started.elapsed().as_secs_f64();
            let job = JobInfo::parse(&last_job);
            row.outcome = format!("not done in {timeout_s:.0} s, aborted");
            if let (Some(pass), Some(left)) = (job.passes, job.remaining_mib) {
                row.outcome = format!("not done in {timeout_s:.0} s (pass {pass}, {left:.1} MiB left)");
            }
            row.passes = job.passes;
            row.sent_mib = job.processed_mib;
            row.guest_dirty = self.guest_dirty_since(mark);
            if !abort.status.success() || status.success() {
                return Err(format!(
                    "virsh domjobabort: {} {}; virsh migrate ended {status}",
                    text(&abort.stdout),
                    text(&abort.stderr)
                ));
            }
            return Ok(row);
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        row.total_s = started.elapsed().as_secs_f64();
        row.guest_dirty = self.guest_dirty_since(mark);
        if !out.status.success() {
            row.outcome = format!("failed: {}", text(&out.stderr).trim());
            return Ok(row);
        }
        row.completed = true;
        row.outcome = "done".into();
        if let Some(at) = switched {
            row.outcome = format!("done (post-copy from {at:.1} s)");
            row.decisions.push(format!("{at:.1} s PC switched"));
        }
        let info = self.virsh("host-a", &["domjobinfo", "vm-2", "--completed"]);
        let job = JobInfo::parse(&text(&info.stdout));
        row.downtime_ms = job.downtime_ms;
        row.job_s = job.elapsed_ms.map(|ms| ms / 1000.0);
        row.passes = job.passes;
        row.sent_mib = job.processed_mib;
        Ok(row)
    }

    /// `ferry migrate` of a one-move plan with `policy` lines; the row from its journal.
    fn ferry_move(&self, dirty: f64, mover: &str, policy: &str) -> Result<Row, String> {
        let name = mover.replace(' ', "-");
        let plan = self.dir.join(format!("{name}.toml"));
        let text_plan =
            format!("[plan]\nname = \"{name}\"\n[policy]\n{policy}\n[[move]]\nvm = \"vm-2\"\nto = \"host-a\"\n");
        std::fs::write(&plan, text_plan).map_err(|e| format!("{}: {e}", plan.display()))?;
        let mark = self.serial_len();
        let started = Instant::now();
        let out = ferry(&[
            "migrate",
            path_str(&plan),
            "--cluster",
            path_str(&self.capped_cluster()),
            "--state",
            path_str(&self.state()),
        ]);
        let wall = started.elapsed().as_secs_f64();
        let stdout = text(&out.stdout);
        let run = stdout
            .lines()
            .find_map(|l| l.strip_prefix("run "))
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| format!("ferry migrate printed no run id:\n{stdout}\n{}", text(&out.stderr)))?
            .to_string();
        let (attempts, events) = self.journal(&run)?;
        let mut row = Row {
            dirty,
            mover: mover.into(),
            options: Options {
                auto_converge: policy.contains("auto_converge = true"),
                postcopy: policy.contains("postcopy = true"),
            },
            completed: false,
            outcome: String::new(),
            downtime_ms: None,
            total_s: wall,
            job_s: None,
            passes: None,
            sent_mib: None,
            guest_dirty: self.guest_dirty_since(mark),
            decisions: Vec::new(),
            full_decisions: Vec::new(),
        };
        let outcomes: Vec<String> = attempts
            .iter()
            .map(|a| format!("{} {}", a.kind, a.outcome.map_or("unfinished".into(), |o| o.to_string())))
            .collect();
        row.outcome = if outcomes.is_empty() {
            format!("no attempt (exit {:?})", out.status.code())
        } else {
            outcomes.join(", ")
        };
        if let Some(a) = attempts.first() {
            row.completed = a.outcome.is_some_and(|o| o.is_success());
            row.total_s = a.wall_ms.map_or(wall, |w| w as f64 / 1000.0);
            row.job_s = a.job_ms.map(|j| j as f64 / 1000.0);
            row.downtime_ms = a.downtime_ms.map(|d| d as f64);
            row.passes = a.passes.map(u64::from);
            row.sent_mib = a.bytes.map(|b| b as f64 / 1_048_576.0);
            if !row.completed {
                row.outcome.push_str(&format!(" after {:.1} s", row.total_s));
            }
        }
        row.outcome
            .push_str(&format!(" (exit {}, {wall:.1} s)", out.status.code().map_or("-".into(), |c| c.to_string())));
        for e in events.iter().filter(|e| e.kind == EventKind::Decision) {
            row.decisions.push(abbreviate(e));
            row.full_decisions.push(match e.data.as_ref().and_then(|d| d["at_s"].as_f64()) {
                Some(at) => format!("{at:.1} s: {}", e.message),
                None => e.message.clone(),
            });
        }
        Ok(row)
    }

    fn journal(&self, run: &str) -> Result<(Vec<Attempt>, Vec<Event>), String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let journal =
                Journal::open_path(&self.state(), &JournalConfig::default()).await.map_err(|e| e.to_string())?;
            let attempts = journal.attempts(run).await.map_err(|e| e.to_string())?;
            let events = journal.events(run, None).await.map_err(|e| e.to_string())?;
            Ok((attempts, events))
        })
    }

    /// `ferry lab check` must pass.
    fn check(&self, when: &str) -> Result<(), String> {
        let out = ferry(&["lab", "check", "--dir", self.dir_str()]);
        if out.status.success() {
            return Ok(());
        }
        Err(format!("lab check {when} (dirty {}): {}\n{}", self.dirty, text(&out.stdout), text(&out.stderr)))
    }

    /// Moves vm-2 back to host-b with an uncapped virsh when it is on host-a.
    fn put_back(&self) -> Result<(), String> {
        match self.vm_host("vm-2").as_str() {
            "host-b" => Ok(()),
            "host-a" => {
                let out = Command::new("virsh")
                    .args([
                        "-c",
                        &self.uri("host-a"),
                        "migrate",
                        "--live",
                        "--p2p",
                        "--persistent",
                        "--undefinesource",
                        "vm-2",
                    ])
                    .arg(self.uri("host-b"))
                    .args(["--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"])
                    .output()
                    .map_err(|e| format!("virsh: {e}"))?;
                if out.status.success() {
                    self.check("after the move back")
                } else {
                    Err(format!("virsh migrate back to host-b: {}", text(&out.stderr)))
                }
            }
            other => Err(format!("vm-2 runs on {other:?}")),
        }
    }

    fn serial_log(&self, vm: &str) -> PathBuf {
        self.dir.join("vms").join(vm).join("serial.log")
    }

    /// The median dirty rate a guest's heartbeats report, MiB/s.
    fn achieved_dirty_rate(&self, vm: &str) -> Option<f64> {
        let log = std::fs::read(self.serial_log(vm)).ok()?;
        let rates = heartbeat_rates(&log);
        (!rates.is_empty()).then(|| median(&rates))
    }

    /// Bytes of vm-2's serial log so far.
    fn serial_len(&self) -> usize {
        std::fs::metadata(self.serial_log("vm-2")).map_or(0, |m| m.len() as usize)
    }

    /// The lowest and the median dirty rate of vm-2's heartbeats after byte `mark` of its log.
    fn guest_dirty_since(&self, mark: usize) -> Option<(f64, f64)> {
        let log = std::fs::read(self.serial_log("vm-2")).ok()?;
        let rates = heartbeat_rates(log.get(mark..)?);
        let low = rates.iter().copied().reduce(f64::min)?;
        Some((low, median(&rates)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = ferry(&["lab", "down", "--purge", "--dir", self.dir_str()]);
    }
}

/// The dirty rates a serial log's heartbeats report, MiB/s.
fn heartbeat_rates(log: &[u8]) -> Vec<f64> {
    String::from_utf8_lossy(log)
        .lines()
        .filter(|l| l.contains("FERRY hb "))
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("dirty_mib_s=")))
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// A journaled decision in a few words: "0 s start AC 50+25 % 75 ms", "12.3 s dt 150".
fn abbreviate(event: &Event) -> String {
    let Some(data) = &event.data else { return event.message.clone() };
    let at = data["at_s"].as_f64().unwrap_or(0.0);
    let d = &data["decision"];
    let what = match d["decision"].as_str() {
        Some("raise-downtime") => format!("downtime {} ms", d["ms"]),
        Some("start-post-copy") => "post-copy".to_string(),
        Some("abort") => {
            let reason = d["reason"].as_str().unwrap_or_default();
            if reason.contains("stall") {
                "abort (stall)".to_string()
            } else if reason.contains("not complete") {
                "abort (timeout)".to_string()
            } else {
                "abort".to_string()
            }
        }
        _ if d.get("bandwidth_mib_s").is_some() && d.get("auto_converge").is_none() => {
            format!("bandwidth {}", d["bandwidth_mib_s"])
        }
        _ => {
            let mut parts = vec!["start".to_string()];
            if d["auto_converge"] == Value::Bool(true) {
                match (d["auto_converge_initial"].as_u64(), d["auto_converge_increment"].as_u64()) {
                    (Some(i), Some(s)) => parts.push(format!("AC {i}+{s} %")),
                    _ => parts.push("AC".into()),
                }
            }
            if d["postcopy"] == Value::Bool(true) {
                parts.push("PC".into());
            }
            if let Some(ms) = d["max_downtime_ms"].as_u64() {
                parts.push(format!("{ms} ms"));
            }
            parts.join(" ")
        }
    };
    format!("{at:.1}s {what}")
}

/// What `virsh domjobinfo` says.
#[derive(Debug, Default)]
struct JobInfo {
    elapsed_ms: Option<f64>,
    downtime_ms: Option<f64>,
    passes: Option<u64>,
    processed_mib: Option<f64>,
    remaining_mib: Option<f64>,
}

impl JobInfo {
    fn parse(text: &str) -> JobInfo {
        let mut job = JobInfo::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key.trim() {
                "Time elapsed" => job.elapsed_ms = number(value),
                "Total downtime" => job.downtime_ms = number(value),
                "Iteration" => job.passes = number(value).map(|n| n as u64),
                "Data processed" => job.processed_mib = mib(value),
                "Data remaining" => job.remaining_mib = mib(value),
                _ => {}
            }
        }
        job
    }
}

/// The number before a unit: "1234   ms" → 1234.
fn number(value: &str) -> Option<f64> {
    value.split_whitespace().next()?.parse().ok()
}

/// "12.345 MiB" → 12.345; other units converted.
fn mib(value: &str) -> Option<f64> {
    let mut parts = value.split_whitespace();
    let n: f64 = parts.next()?.parse().ok()?;
    let scale = match parts.next()? {
        "B" => 1.0 / 1_048_576.0,
        "KiB" => 1.0 / 1024.0,
        "MiB" => 1.0,
        "GiB" => 1024.0,
        _ => return None,
    };
    Some(n * scale)
}

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("FERRY_LAB_CACHE", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-cache"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("the ferry binary runs")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
