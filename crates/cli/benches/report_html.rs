//! The HTML report of a fleet-sized run: 10,000 VMs on 1,000 hosts. How big the page is,
//! how long `ferry report --format html` takes, and how long headless Chromium takes to
//! open it; then the page's DOM is checked as the lab test checks a real run's (one lane
//! per host, one bar per attempt on each of its two lanes, one row per VM).
//!
//! The run is synthetic, written through the journal's API in the order a run would write
//! it, paced in real time (the journal stamps its records with the wall clock): a sliding
//! window of 100 moves, at most 2 out of and 2 into a host, live moves of 0.2 to 1.5 s with
//! a few convergence decisions and post-copy switches, failures that stay on their source,
//! some that fall back to a cold move, a few lost, a few refused by their checks, and a
//! deadline that leaves the tail of the plan unstarted. About a minute of writing.
//!
//! Prints figures; asserts only the DOM's structure, never a time.
//! Run: `cargo bench -p ferry --bench report_html`. `FERRY_BENCH_MOVES`, `FERRY_BENCH_HOSTS`
//! and `FERRY_BENCH_SECONDS` (the run's length) change the run, `FERRY_BENCH_OPENS` how many
//! times Chromium opens the page (5); `FERRY_BENCH_KEEP=DIR` copies the page there.

#[path = "../tests/common/dom.rs"]
mod dom;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_journal::{
    AttemptEnd, AttemptKind, Durability, EventKind, Journal, JournalConfig, NewAttempt, NewMove, NewRun, RunKind,
    RunState, FIRST_GENERATION,
};
use ferry_model::{Phase, Status};
use serde_json::json;

const MIB: u64 = 1 << 20;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// xorshift64*: the same run every time, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happens to one VM.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Refused by a check; never starts.
    Precheck,
    Success,
    /// Live, after a switch to post-copy.
    PostCopy,
    /// Does not converge; stays on its source.
    Wait,
    /// Does not converge, then moves cold.
    WaitThenCold,
    /// Cannot start.
    Init,
    /// Runs nowhere afterwards.
    Lost,
}

struct Vm {
    name: String,
    uuid: String,
    source: usize,
    target: usize,
    memory_mib: u64,
    fate: Fate,
    /// Length of the first attempt, ms.
    first_ms: u64,
    /// Length of a cold fallback, ms.
    cold_ms: u64,
    /// A convergence decision during the first attempt.
    decision: bool,
    estimate_s: f64,
}

/// One journal write, at an instant of the run (ms from its start).
#[derive(Debug, Clone, Copy)]
enum Step {
    Start { vm: usize, number: u32 },
    Decision { vm: usize, postcopy: bool },
    End { vm: usize, number: u32 },
    Skip { vm: usize },
}

fn fleet(moves: usize, hosts: usize, rng: &mut Rng, mean_ms: f64) -> Vec<Vm> {
    (0..moves)
        .map(|i| {
            let source = i % hosts;
            let target = (source + 1 + (rng.next() as usize % (hosts - 1))) % hosts;
            let memory_mib = 1024 << (rng.next() % 5);
            let roll = rng.unit();
            let fate = match roll {
                r if r < 0.01 => Fate::Precheck,
                r if r < 0.035 => Fate::Wait,
                r if r < 0.06 => Fate::WaitThenCold,
                r if r < 0.065 => Fate::Init,
                r if r < 0.066 => Fate::Lost,
                r if r < 0.086 => Fate::PostCopy,
                _ => Fate::Success,
            };
            let size = 0.5 + memory_mib as f64 / 16_384.0;
            let first_ms = match fate {
                Fate::Init => 30 + rng.next() % 80,
                _ => (mean_ms * size * (0.6 + 0.8 * rng.unit())) as u64,
            };
            Vm {
                name: format!("vm-{:05}", i + 1),
                uuid: format!("00000000-0000-4000-8000-{:012}", i + 1),
                source,
                target,
                memory_mib,
                fate,
                first_ms,
                cold_ms: (mean_ms * 0.4 * size) as u64,
                decision: fate == Fate::PostCopy || rng.unit() < 0.15,
                estimate_s: first_ms as f64 / 1000.0 * (0.8 + 0.4 * rng.unit()),
            }
        })
        .collect()
}

/// The run's writes in time order: a sliding window under the limits, no start after the
/// deadline (ms from the start).
fn schedule(vms: &[Vm], hosts: usize, cluster: usize, deadline_ms: u64) -> Vec<(u64, Step)> {
    let mut steps = Vec::new();
    let mut pending: Vec<usize> = (0..vms.len()).filter(|&i| vms[i].fate != Fate::Precheck).collect();
    pending.reverse();
    // (end, vm) of the moves in flight.
    let mut running: Vec<(u64, usize)> = Vec::new();
    let mut out_of = vec![0usize; hosts];
    let mut into = vec![0usize; hosts];
    let mut now = 0u64;
    loop {
        if now <= deadline_ms {
            let mut i = pending.len();
            while i > 0 && running.len() < cluster {
                i -= 1;
                let v = pending[i];
                let vm = &vms[v];
                if out_of[vm.source] >= 2 || into[vm.target] >= 2 {
                    continue;
                }
                pending.remove(i);
                out_of[vm.source] += 1;
                into[vm.target] += 1;
                steps.push((now, Step::Start { vm: v, number: 1 }));
                let first_end = now + vm.first_ms;
                if vm.decision {
                    steps.push((
                        now + vm.first_ms * 2 / 3,
                        Step::Decision { vm: v, postcopy: vm.fate == Fate::PostCopy },
                    ));
                }
                steps.push((first_end, Step::End { vm: v, number: 1 }));
                let end = if vm.fate == Fate::WaitThenCold {
                    steps.push((first_end + 20, Step::Start { vm: v, number: 2 }));
                    steps.push((first_end + 20 + vm.cold_ms, Step::End { vm: v, number: 2 }));
                    first_end + 20 + vm.cold_ms
                } else {
                    first_end
                };
                running.push((end, v));
            }
        } else {
            for &v in pending.iter().rev() {
                steps.push((deadline_ms, Step::Skip { vm: v }));
            }
            pending.clear();
        }
        if running.is_empty() && pending.is_empty() {
            break;
        }
        // The next end; with nothing in flight, the deadline (what is left is skipped then).
        now = running.iter().map(|r| r.0).min().unwrap_or(deadline_ms + 1).max(now);
        running.retain(|&(end, v)| {
            if end <= now {
                out_of[vms[v].source] -= 1;
                into[vms[v].target] -= 1;
                false
            } else {
                true
            }
        });
    }
    steps.sort_by_key(|(at, _)| *at);
    steps
}

fn host(i: usize) -> String {
    format!("host-{:04}", i + 1)
}

struct Filled {
    run: String,
    attempts: usize,
    events: usize,
    took: Duration,
}

async fn fill(path: &Path, moves: usize, hosts: usize, seconds: u64) -> Filled {
    let config = JournalConfig { durability: Durability::Normal, ..JournalConfig::default() };
    let journal = Journal::open_path(path, &config).await.expect("journal opens");
    let mut rng = Rng(0x5eed_f00d_cafe_beef);
    // A window of 100, smaller for small runs so that they still queue.
    let cluster = (moves / 20).clamp(2, 100);
    let mean_ms = seconds as f64 * 1000.0 * cluster as f64 / moves as f64;
    let vms = fleet(moves, hosts, &mut rng, mean_ms);
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    // The deadline cuts the tail of the plan; whole seconds, as plans say.
    let deadline_s = now_s + 1 + seconds * 85 / 100;
    let begin = Instant::now();
    let start_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;
    let steps = schedule(&vms, hosts, cluster, (deadline_s * 1000).saturating_sub(start_ms));

    let specs: Vec<_> = vms
        .iter()
        .map(|v| {
            json!({
                "vm": v.name, "uuid": v.uuid, "from": host(v.source), "to": { "host": host(v.target) },
                "memory_mib": v.memory_mib, "running": true,
                "estimate": { "total_s": v.estimate_s, "downtime_ms": 120.0 },
            })
        })
        .collect();
    let run = journal
        .create_run(&NewRun {
            plan_name: "night-10k".into(),
            plan: json!({
                "plan": {
                    "name": "night-10k",
                    "deadline": deadline_s,
                    "limits": { "cluster": cluster, "per_source": 2, "per_target": 2 },
                },
                "moves": specs,
            }),
            cluster: json!({ "hosts": (0..hosts).map(|h| json!({ "name": host(h) })).collect::<Vec<_>>() }),
            kind: RunKind::Drain,
            parent: None,
        })
        .await
        .expect("run created");
    let new_moves: Vec<NewMove> = vms
        .iter()
        .enumerate()
        .map(|(i, v)| NewMove {
            vm: v.name.clone(),
            uuid: v.uuid.clone(),
            source: host(v.source),
            target: Some(host(v.target)),
            group: None,
            seq: i as i64,
            priority: 0,
            status: if v.fate == Fate::Precheck { Status::PrecheckFailed } else { Status::Pending },
            message: if v.fate == Fate::Precheck {
                format!("memory: {} has 512 MiB free, {} needs {} MiB", host(v.target), v.name, v.memory_mib)
            } else {
                String::new()
            },
        })
        .collect();
    journal.add_moves(&run.id, &new_moves).await.expect("moves added");

    let mut generation = vec![FIRST_GENERATION; vms.len()];
    let mut attempts = 0;
    for (at, step) in steps {
        let due = begin + Duration::from_millis(at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let id = run.id.as_str();
        match step {
            Step::Start { vm, number } => {
                let v = &vms[vm];
                let kind = if number == 1 { AttemptKind::Live } else { AttemptKind::Cold };
                if number == 1 {
                    let message = format!("live move {} -> {} started", host(v.source), host(v.target));
                    generation[vm] = journal
                        .set_status(id, &v.uuid, generation[vm], Status::Migrating, &message)
                        .await
                        .expect("migrating");
                    generation[vm] =
                        journal.begin_phase(id, &v.uuid, generation[vm], Phase::Transferring).await.expect("phase");
                } else {
                    journal
                        .event(id, Some(&v.uuid), EventKind::Message, "falling back to a cold move", None)
                        .await
                        .expect("message");
                }
                let estimate = (number == 1).then(|| json!({ "total_s": v.estimate_s, "downtime_ms": 120.0 }));
                journal
                    .record_attempt_start(
                        id,
                        &v.uuid,
                        &NewAttempt { kind, target: host(v.target), estimate, compression: None },
                    )
                    .await
                    .expect("attempt starts");
                attempts += 1;
            }
            Step::Decision { vm, postcopy } => {
                let (message, data) = if postcopy {
                    (
                        "switched to post-copy: remaining memory flat for 2 passes at the 300 ms limit".to_owned(),
                        json!({ "decision": "start-post-copy" }),
                    )
                } else {
                    (
                        "raised downtime to 150 ms: remaining memory flat for 2 passes".to_owned(),
                        json!({ "decision": "raise-downtime", "ms": 150 }),
                    )
                };
                journal
                    .event(id, Some(&vms[vm].uuid), EventKind::Decision, &message, Some(&data))
                    .await
                    .expect("decision");
            }
            Step::End { vm, number } => {
                let v = &vms[vm];
                let gib = v.memory_mib as f64 / 1024.0;
                let (outcome, message, final_status) = match (v.fate, number) {
                    (Fate::Success | Fate::PostCopy, _) => {
                        (Status::Success, format!("moved live to {}", host(v.target)), true)
                    }
                    (Fate::Wait, _) => (
                        Status::FailureWait,
                        "aborted: no progress for 30 s (stall timeout); the VM runs on its source".to_owned(),
                        true,
                    ),
                    (Fate::WaitThenCold, 1) => (
                        Status::FailureWait,
                        "did not converge: dirty rate above the link; the VM runs on its source".to_owned(),
                        false,
                    ),
                    (Fate::WaitThenCold, _) => {
                        (Status::SuccessCold, format!("moved cold to {} (the guest restarted)", host(v.target)), true)
                    }
                    (Fate::Init, _) => (
                        Status::FailureInit,
                        format!("could not start: volume {}.qcow2 already exists on {}", v.name, host(v.target)),
                        true,
                    ),
                    (Fate::Lost, _) => (
                        Status::FailureLost,
                        format!("{} runs on neither host after the migration; run `ferry cleanup --vm`", v.name),
                        true,
                    ),
                    (Fate::Precheck, _) => unreachable!("never started"),
                };
                let live = number == 1 && outcome == Status::Success;
                let end = AttemptEnd {
                    outcome,
                    message: message.clone(),
                    wall_ms: None,
                    job_ms: None,
                    downtime_ms: live.then_some(40 + (v.first_ms % 260)),
                    bytes: (v.fate != Fate::Init).then_some((gib * 1.3 * 1024.0) as u64 * MIB),
                    passes: live.then_some(2 + (v.first_ms % 5) as u32),
                    memory_bytes: None,
                    memory_sent_bytes: None,
                };
                journal.record_attempt_end(id, &v.uuid, number, &end).await.expect("attempt ends");
                if final_status {
                    if outcome.is_success() {
                        generation[vm] = journal
                            .end_phase(id, &v.uuid, generation[vm], Phase::Transferring)
                            .await
                            .expect("phase done");
                    }
                    generation[vm] =
                        journal.set_status(id, &v.uuid, generation[vm], outcome, &message).await.expect("status");
                }
            }
            Step::Skip { vm } => {
                let message = "not started: the deadline passed";
                generation[vm] = journal
                    .set_status(id, &vms[vm].uuid, generation[vm], Status::SkippedTimeout, message)
                    .await
                    .expect("skipped");
            }
        }
    }
    let state = journal.run(&run.id).await.expect("run");
    journal.set_run_state(&run.id, state.generation, RunState::Finished).await.expect("finished");
    let events = journal.events(&run.id, None).await.expect("events").len();
    let took = begin.elapsed();
    journal.close().await;
    Filled { run: run.id, attempts, events, took }
}

/// Times of one page in headless Chromium, from the page's own clock (ms since its
/// navigation started): when the DOM was built (parsing and the inline scripts done), when
/// the load event ended, and when the first frame after it (style, layout, paint) was done.
struct Opened {
    interactive_ms: f64,
    load_ms: f64,
    frame_ms: f64,
    /// For a report: scrolling to the VM table until its frame is done (the table is laid
    /// out only then), and sorting it by a number column until the frame after.
    table_ms: Option<(f64, f64)>,
}

fn open(page: &Path, scratch: &Path, report: bool) -> Opened {
    let mut browser = dom::Browser::open(page, scratch);
    // A frame callback's timer runs once that frame is done.
    let times = browser.eval(
        "new Promise(function (done) { requestAnimationFrame(function () { setTimeout(function () { \
         var n = performance.getEntriesByType('navigation')[0]; \
         done([n.domInteractive, n.loadEventEnd, performance.now()]); }, 0); }); })",
    );
    let time = |i: usize| times[i].as_f64().expect("a time");
    let table_ms = report.then(|| {
        let times = browser.eval(
            "new Promise(function (done) { var t = performance.now(); \
             document.getElementById('vms').scrollIntoView(); \
             requestAnimationFrame(function () { setTimeout(function () { var shown = performance.now() - t; \
             var u = performance.now(); document.querySelectorAll('#vms th')[6].click(); \
             requestAnimationFrame(function () { setTimeout(function () { \
             done([shown, performance.now() - u]); }, 0); }); }, 0); }); })",
        );
        (times[0].as_f64().expect("a time"), times[1].as_f64().expect("a time"))
    });
    Opened { interactive_ms: time(0), load_ms: time(1), frame_ms: time(2), table_ms }
}

fn main() {
    let moves = setting("FERRY_BENCH_MOVES", 10_000) as usize;
    let hosts = setting("FERRY_BENCH_HOSTS", 1_000).max(2) as usize;
    let seconds = setting("FERRY_BENCH_SECONDS", 60).max(5);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-report-html");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    let state = dir.join("journal.db");

    println!("report_html: writing a {moves}-move run on {hosts} hosts through the journal ({seconds} s of run)...");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let filled = runtime.block_on(fill(&state, moves, hosts, seconds));
    println!(
        "journal: run {}, {moves} moves, {} attempts, {} events, written in {:.1} s",
        filled.run,
        filled.attempts,
        filled.events,
        filled.took.as_secs_f64()
    );

    let page = dir.join(format!("{}.html", filled.run));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["report", &filled.run, "--format", "html", "-o"])
        .arg(&page)
        .arg("--state")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .output()
        .expect("ferry runs");
    let rendered = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "some moves failed: {}", String::from_utf8_lossy(&out.stderr));
    let size = std::fs::metadata(&page).expect("the page").len();
    println!(
        "ferry report --format html: {:.2} MiB ({size} bytes) in {:.2} s (reading the journal included)",
        size as f64 / MIB as f64,
        rendered.as_secs_f64()
    );

    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!doctype html><html><head><meta charset=\"utf-8\"><title>blank</title></head><body><p>blank</p></body></html>")
        .expect("write the blank page");
    // The machine may be shared: each page is opened several times, in turns, and the
    // fastest and the median opening printed with the load average.
    let opens = setting("FERRY_BENCH_OPENS", 5).max(1) as usize;
    let (mut report_opens, mut blank_opens) = (Vec::new(), Vec::new());
    for _ in 0..opens {
        blank_opens.push(open(&blank, &dir, false));
        report_opens.push(open(&page, &dir, true));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "chromium (headless, 1280x900), each page opened {opens} times; load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    for (what, runs) in [("the report", &mut report_opens), ("a blank page", &mut blank_opens)] {
        runs.sort_by(|a, b| a.frame_ms.total_cmp(&b.frame_ms));
        for (which, t) in [("fastest", &runs[0]), ("median", &runs[runs.len() / 2])] {
            println!(
                "  {what}, {which}: DOM built {:.0} ms, load event over {:.0} ms, first frame done {:.0} ms \
                 after navigation start",
                t.interactive_ms, t.load_ms, t.frame_ms
            );
        }
    }
    let mut tables: Vec<(f64, f64)> = report_opens.iter().filter_map(|o| o.table_ms).collect();
    tables.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((shown, sorted)) = tables.get(tables.len() / 2) {
        println!(
            "  the report's VM table, median: shown (scrolled to, laid out) in {shown:.0} ms, \
             sorted by a column in {sorted:.0} ms"
        );
    }

    // The page as Chromium built it: what the lab test checks on a real run.
    let dumped = dom::dump(&page, &dir);
    assert!(dom::script_errors(&dumped.log).is_empty(), "script errors:\n{}", dumped.log);
    let shown = dom::report_page(&dumped.html);
    assert!(shown.ready, "the page's script ran");
    assert_eq!(shown.lanes.len(), hosts, "one lane per host");
    let bars: usize = shown.lanes.iter().map(|(_, bars)| bars.len()).sum();
    assert_eq!(bars, 2 * filled.attempts, "each attempt on its source's lane and its target's");
    assert_eq!(shown.data["a"].as_array().map(Vec::len), Some(filled.attempts));
    assert_eq!(shown.rows.len(), moves, "one row per VM");
    println!(
        "DOM: {} lanes, {bars} bars, {} rows, {} failures listed",
        shown.lanes.len(),
        shown.rows.len(),
        shown.failures.len()
    );

    if let Ok(keep) = std::env::var("FERRY_BENCH_KEEP") {
        let kept = Path::new(&keep).join(page.file_name().expect("a file name"));
        std::fs::copy(&page, &kept).expect("copy the page");
        println!("kept {}", kept.display());
    }
}
