//! The live-migration estimate (`ferry_preview::estimate::estimate_live`) against real moves:
//! for each guest dirty rate (5 and 25 MiB/s) a 2-host lab of 256 MiB guests, and for each
//! bandwidth cap (32 and 96 MiB/s) a few `ferry move` runs of the shared-disk guest vm-2,
//! alternating direction. Prints predicted and measured medians of the copy job, the wall time,
//! the downtime and the memory passes, with the error of the prediction. A row without a cap
//! shows what the lab does on its own; its speed depends on how much CPU the migration thread
//! gets, so it is for reference, outside the goal. No time assertions: this is what calibrates
//! the model's constants. The model predicts the move `ferry move` makes (the default policy:
//! auto-converge, downtime steps from 75 ms), for a guest paced by a clock like the lab's.
//!
//! Last run (2026-11-26, 5 runs a cell): transfer within 12 % with a cap; downtime 17–20 ms
//! predicted against 15–20 measured with a cap (−6 % to +13 %); passes as measured but the
//! auto-converge cell (10 vs 21: the model's throttle slows this guest more than QEMU's does
//! here). Without a cap, a move that converges right after pass 1 pauses longer than the model
//! says (31 vs 17 ms): its pause carries pages the destination never had (see `LAB_LINK_MIB_S`).
//!
//! `cargo bench -p ferry --bench estimate_vs_real [-- RUNS] [held-out]` (root, a machine set
//! up by `scripts/setup`; RUNS per cell, default 3). Brings up its own labs (ports 26000 and
//! 27000) and tears them down, even when it fails. `held-out` runs cases the constants were
//! not fitted on ([`HELD_OUT`]: another memory size, other dirty rates and caps) and prints
//! the median errors against the goal (±15 %).

#[path = "shared/stats.rs"]
mod stats;

use std::path::PathBuf;
use std::process::{Command, Output};

use ferry_plan::Policy;
use ferry_preview::estimate::{estimate_live, LiveEstimate, LiveInput, PER_MIGRATION_OVERHEAD_S};
use ferry_preview::policy_live_input;
use stats::median;

/// The lab cases of one run of the bench.
struct Cases {
    /// Guest memory, MiB.
    mem_mib: f64,
    /// Guest dirty rates, MiB/s, each with its own lab and port block.
    labs: [(f64, u16); 2],
    /// Bandwidth caps, MiB/s; `None` moves without a cap, at what the lab gives.
    bandwidths: &'static [Option<f64>],
}

/// The cases the model's lab constants were fitted on.
const FITTED: Cases =
    Cases { mem_mib: 256.0, labs: [(5.0, 26000), (25.0, 27000)], bandwidths: &[Some(32.0), Some(96.0), None] };

/// Cases no constant was fitted on: half the memory, other dirty rates, other caps.
const HELD_OUT: Cases =
    Cases { mem_mib: 128.0, labs: [(10.0, 26000), (15.0, 27000)], bandwidths: &[Some(48.0), Some(64.0)] };
/// What an uncapped migration gets in the lab when it gets a core, MiB/s: the guests and the
/// migration thread share two cores. From the faster uncapped runs (134 MiB, job 0.61–0.89 s;
/// 2026-11-23); when the thread is starved, uncapped jobs take 2–4 s.
const LAB_UNCAPPED_MIB_S: f64 = 250.0;
/// The lab's "link" for the pause's pages ([`ferry_lab::LOOPBACK_PAGE_MIB_S`]).
const LAB_LINK_MIB_S: f64 = ferry_lab::LOOPBACK_PAGE_MIB_S;

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let held_out = std::env::args().any(|a| a == "held-out");
    let cases = if held_out { &HELD_OUT } else { &FITTED };
    let mem_mib = cases.mem_mib;
    let mut rows = Vec::new();
    for (dirty, port_base) in cases.labs {
        let lab = Lab::up(mem_mib, dirty, port_base);
        let mut on = lab.vm_host("vm-2");
        // Each daemon's first incoming migration is slower: one unmeasured move each way.
        for _ in 0..2 {
            let to = other(&on);
            match lab.move_vm(&to, None) {
                Ok(_) => on = to,
                Err(e) => eprintln!("warm-up move to {to}: {e}"),
            }
        }
        for &bandwidth in cases.bandwidths {
            let mut cell = Cell::default();
            for run in 0..runs {
                let to = other(&on);
                match lab.move_vm(&to, bandwidth) {
                    Ok(m) => {
                        println!(
                            "dirty {dirty:>4} MiB/s  bw {:>4} MiB/s  run {run}  {on} -> {to}  job {:>6} ms  wall {:>6} ms  downtime {:>4} ms  passes {:>2}  sent {:>6.1} MiB",
                            show_bw(bandwidth), m.job_ms, m.wall_ms, m.downtime_ms, m.passes, m.sent_mib
                        );
                        cell.push(&m);
                        on = to;
                    }
                    Err(e) => println!(
                        "dirty {dirty} MiB/s  bw {} MiB/s  run {run}  {on} -> {to}: FAILED: {e}",
                        show_bw(bandwidth)
                    ),
                }
            }
            rows.push((dirty, bandwidth, cell));
        }
        if let Some(achieved) = lab.achieved_dirty_rate("vm-2") {
            println!("vm-2 reports dirtying {achieved:.1} MiB/s (median of its heartbeats; asked {dirty})");
        }
        lab.check();
    }

    println!();
    let which = if held_out { "cases held out of the fit" } else { "the cases the constants were fitted on" };
    println!("live move of a {mem_mib} MiB guest (shared disk), {which}, medians of {runs} runs; predicted / measured (error of the prediction)");
    println!(
        "{:>6} {:>5} | {:>22} | {:>22} | {:>16} | {:>7} | {:>8} | note",
        "dirty", "bw", "transfer s (job)", "total s (wall)", "downtime ms", "passes", "sent MiB"
    );
    let mut worst_transfer: f64 = 0.0;
    let mut overheads = Vec::new();
    let (mut total_errors, mut downtime_errors) = (Vec::new(), Vec::new());
    for (dirty, bandwidth, cell) in rows {
        let e = predict(mem_mib, dirty, bandwidth);
        let bandwidth = show_bw(bandwidth);
        if cell.job_ms.is_empty() {
            println!("{dirty:>6} {bandwidth:>5} | no successful run | {}", e.note);
            continue;
        }
        overheads.extend(cell.wall_ms.iter().zip(&cell.job_ms).map(|(w, j)| (w - j) / 1000.0));
        let job = median(&cell.job_ms) / 1000.0;
        let wall = median(&cell.wall_ms) / 1000.0;
        let downtime = median(&cell.downtime_ms);
        let passes = median(&cell.passes);
        let sent = median(&cell.sent_mib);
        if bandwidth != "none" {
            worst_transfer = worst_transfer.max(err(e.transfer_s, job).abs());
            total_errors.push(err(e.total_s, wall));
            downtime_errors.push(err(e.downtime_ms, downtime));
        }
        println!(
            "{dirty:>6} {bandwidth:>5} | {:>5.2} / {:>5.2} ({:>+4.0} %) | {:>5.2} / {:>5.2} ({:>+4.0} %) | {:>5.0} / {:>5.0}   | {:>2} / {:>2} | {:>8.1} | {}",
            e.transfer_s,
            job,
            err(e.transfer_s, job),
            e.total_s,
            wall,
            err(e.total_s, wall),
            e.downtime_ms,
            downtime,
            e.passes,
            passes,
            sent,
            e.note
        );
    }
    println!("largest transfer-time error with a cap: {worst_transfer:.0} % (goal: within 25 %)");
    if !total_errors.is_empty() {
        let median_abs = |e: &[f64]| median(e.iter().map(|x| x.abs()).collect::<Vec<_>>());
        println!(
            "median |error| with a cap over {} cells: total time {:.0} %, downtime {:.0} % (goal out of sample: within 15 %)",
            total_errors.len(),
            median_abs(&total_errors),
            median_abs(&downtime_errors)
        );
    }
    if !overheads.is_empty() {
        let (lo, hi) =
            (overheads.iter().copied().fold(f64::INFINITY, f64::min), overheads.iter().copied().fold(0.0, f64::max));
        println!(
            "wall - job over {} moves: median {:.2} s ({lo:.2}–{hi:.2}); PER_MIGRATION_OVERHEAD_S = {PER_MIGRATION_OVERHEAD_S}",
            overheads.len(),
            median(&overheads)
        );
    }
    println!(
        "model inputs: working set {} MiB, non-zero {} MiB, link {LAB_LINK_MIB_S} MiB/s; bw none predicted at {LAB_UNCAPPED_MIB_S} MiB/s",
        lab_working_set(mem_mib),
        ferry_lab::GUEST_BASE_NONZERO_MIB + lab_working_set(mem_mib)
    );
}

fn show_bw(bandwidth: Option<f64>) -> String {
    bandwidth.map_or("none".to_string(), |b| format!("{b}"))
}

/// The model's answer for one cell, with what the lab tells about its guests, for the move
/// `ferry move` makes: the default policy's downtime steps and auto-converge, started without
/// a measured dirty rate; the lab's guest makes up 50 ms of work after each throttle stop.
fn predict(mem_mib: f64, dirty: f64, bandwidth: Option<f64>) -> LiveEstimate {
    let wss = lab_working_set(mem_mib);
    let bandwidth = bandwidth.unwrap_or(LAB_UNCAPPED_MIB_S);
    estimate_live(&LiveInput {
        nonzero_mib: Some(ferry_lab::GUEST_BASE_NONZERO_MIB + wss),
        working_set_mib: Some(wss),
        link_mib_s: Some(LAB_LINK_MIB_S),
        catch_up_s: Some(ferry_lab::GUEST_CATCH_UP_S),
        ..policy_live_input(&Policy::default(), mem_mib, dirty, false, bandwidth)
    })
}

/// `ferry lab up`'s working set for its guests of `mem` MiB.
fn lab_working_set(mem: f64) -> f64 {
    ferry_lab::guest_working_set_mib(mem as u64) as f64
}

/// Signed error of a prediction against a measurement, %.
fn err(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured * 100.0
}

fn other(host: &str) -> String {
    if host == "host-a" { "host-b" } else { "host-a" }.to_string()
}

/// One measured move.
struct Measured {
    job_ms: f64,
    wall_ms: f64,
    downtime_ms: f64,
    passes: f64,
    sent_mib: f64,
}

#[derive(Default)]
struct Cell {
    job_ms: Vec<f64>,
    wall_ms: Vec<f64>,
    downtime_ms: Vec<f64>,
    passes: Vec<f64>,
    sent_mib: Vec<f64>,
}

impl Cell {
    fn push(&mut self, m: &Measured) {
        self.job_ms.push(m.job_ms);
        self.wall_ms.push(m.wall_ms);
        self.downtime_ms.push(m.downtime_ms);
        self.passes.push(m.passes);
        self.sent_mib.push(m.sent_mib);
    }
}

/// A lab owned by the bench: `lab down --purge` on drop, also when the bench panics.
struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn up(mem_mib: f64, dirty: f64, port_base: u16) -> Lab {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-estimate-{dirty}"));
        let lab = Lab { dir };
        let _ = ferry(&["lab", "down", "--purge", "--dir", lab.dir_str()]);
        let (mem, dirty, port) = (format!("{mem_mib}"), format!("{dirty}"), port_base.to_string());
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
            &dirty,
            "--port-base",
            &port,
            // Plain streams, as the estimate's constants were calibrated.
            "--transport",
            "tcp",
        ]);
        assert!(out.status.success(), "lab up: {}\n{}", text(&out.stdout), text(&out.stderr));
        lab
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    fn vm_host(&self, vm: &str) -> String {
        let out = ferry(&["lab", "status", "--dir", self.dir_str(), "--output", "json"]);
        assert!(out.status.success(), "lab status: {}", text(&out.stderr));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lab status prints JSON");
        let vms = status["vms"].as_array().expect("lab status lists vms");
        let entry = vms.iter().find(|v| v["name"] == vm).expect("the guest is in the lab");
        entry["running_on"][0].as_str().expect("the guest runs somewhere").to_string()
    }

    /// The median dirty rate a guest's heartbeats report, MiB/s.
    fn achieved_dirty_rate(&self, vm: &str) -> Option<f64> {
        let log = std::fs::read_to_string(self.dir.join("vms").join(vm).join("serial.log")).ok()?;
        let rates: Vec<f64> = log
            .lines()
            .filter(|l| l.contains("FERRY hb "))
            .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("dirty_mib_s=")))
            .filter_map(|v| v.parse().ok())
            .collect();
        (!rates.is_empty()).then(|| median(&rates))
    }

    fn move_vm(&self, to: &str, bandwidth: Option<f64>) -> Result<Measured, String> {
        let cluster = self.dir.join("cluster.toml");
        let cluster = cluster.to_str().expect("utf-8 path");
        let mut args = vec!["move", "vm-2", "--to", to, "--output", "json", "--cluster", cluster];
        let bw = bandwidth.map(|b| format!("{b}"));
        if let Some(bw) = &bw {
            args.extend(["--bandwidth", bw]);
        }
        let out = ferry(&args);
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("no JSON ({e}): {}", text(&out.stderr)))?;
        if !out.status.success() {
            return Err(format!("{} {}", json["status"], json["reason"]));
        }
        let num = |key: &str| json[key].as_f64().ok_or_else(|| format!("no {key} in {json}"));
        Ok(Measured {
            job_ms: num("job_ms")?,
            wall_ms: num("wall_ms")?,
            downtime_ms: num("downtime_ms")?,
            passes: num("memory_passes")?,
            sent_mib: num("transferred_bytes")? / 1048576.0,
        })
    }

    fn check(&self) {
        let out = ferry(&["lab", "check", "--dir", self.dir_str()]);
        println!("lab check ({}): {}", self.dir_str(), if out.status.success() { "passed" } else { "FAILED" });
        if !out.status.success() {
            println!("{}", text(&out.stdout));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = ferry(&["lab", "down", "--purge", "--dir", self.dir_str()]);
    }
}

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("FERRY_LAB_CACHE", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-cache"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("the ferry binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
