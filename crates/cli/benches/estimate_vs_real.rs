//! The live-migration estimate (`ferry_preview::estimate::estimate_live`) against real moves,
//! fitted on one set of lab cases and judged on another. Fitted: 256 MiB guests dirtying 5 and
//! 25 MiB/s, a shared disk, caps of 32 and 96 MiB/s and no cap. Held out ([`HELD_OUT`]): 128
//! MiB guests dirtying 10 and 15 MiB/s at caps of 48 and 64 MiB/s, a host-local disk copied
//! with the memory, and 192 MiB guests behind a shaped 24 MiB/s link (`ferry lab up --link`).
//!
//! The fit, from the fitted cases of the same run: what one migration stream moves on this
//! machine (the uncapped moves: the guests' TCG vCPUs and the migration thread share two
//! cores, so it varies from machine to machine), then the median distance of the copy job, the
//! pause and the time outside the job from the model's (`JOB_SETUP_S`, `SWITCHOVER_MS`,
//! `PER_MIGRATION_OVERHEAD_S`). Prints the fitted figures against the compiled constants, then
//! per case predicted and measured medians of the copy job, the wall time, the downtime, the
//! passes, with the error of each prediction; for the held-out cases once with the constants as
//! compiled and once refit, with the median errors against the goal (±15 %). No time
//! assertions. The model predicts the move `ferry move` makes (the default policy:
//! auto-converge, downtime steps from 75 ms), for a guest paced by a clock like the lab's.
//!
//! Fit of 2026-12-07 (3 runs a cell, 474 s): one stream 150 MiB/s; JOB_SETUP_S −0.06 s (the
//! auto-converge cell, over-predicted by half, pulls it down; kept at 0.35), SWITCHOVER_MS
//! 23.3 ms, PER_MIGRATION_OVERHEAD_S 2.01 s (kept at 1.7), DEVICE_STATE_MIB 0.37, DISK_SYNC_MS
//! 3.1 ms. Held out, 8 cells, median |error| refit: total time 2 %, downtime 6 %; with the
//! constants compiled before the fit (no device state or disk sync, 16 ms): 3 %, 30 %. The
//! next run, with the constants set from that fit: 3 % and 5 % with them as compiled.
//!
//! Later that day the lab's daemons ran under a prompt reaper (`tini`; a move's call had
//! waited ~1.5 s for the source's QEMU to be reaped). First run after it: held out as
//! compiled, total 47 %, downtime 25 %; fitted: one stream 213 MiB/s, PER_MIGRATION_OVERHEAD_S
//! 0.38 s, SWITCHOVER_MS 14.6 ms (set to 0.4 s and 15 ms). Second: held out as compiled 8 %,
//! 15 %; fitted SWITCHOVER_MS 13.9, DEVICE_STATE_MIB 0.27, DISK_SYNC_MS 3.6 (set to the two
//! runs' means: 14 ms, 0.25 MiB, 4 ms). Third, judged with those as compiled: total time 6 %,
//! downtime 14 % (the pauses are 14–25 ms; 2–6 ms off reads as 15–30 %).
//!
//! Then a move's claim stopped waiting 150 ms to read itself back (a ticket line instead).
//! First run after it: held out as compiled, total 13 %, downtime 7 %; fitted
//! PER_MIGRATION_OVERHEAD_S 0.23 s (set so). Next, judged with it as compiled: total time 7 %,
//! downtime 7 %.
//!
//! `cargo bench -p ferry --bench estimate_vs_real [-- RUNS] [fit-only]` (root, a machine set
//! up by `scripts/setup`; RUNS per cell, default 3; ~10 min). Brings up its own labs (ports
//! 26000 and 27000) and tears them down, even when it fails.

#[path = "shared/stats.rs"]
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use ferry_plan::Policy;
use ferry_preview::estimate::{
    estimate_live, LiveEstimate, LiveInput, DEVICE_STATE_MIB, DISK_SYNC_MS, JOB_SETUP_S, PER_MIGRATION_OVERHEAD_S,
    SWITCHOVER_MS,
};
use ferry_preview::policy_live_input;
use stats::median;

/// One lab and the moves measured on it.
struct Family {
    /// What sets these cases apart, for the table.
    name: &'static str,
    /// Guest memory, MiB.
    mem_mib: f64,
    /// The guests' dirty rate, MiB/s.
    dirty: f64,
    /// A shaped link (`ferry lab up --link`), MiB/s.
    link: Option<u64>,
    port_base: u16,
    /// (guest, bandwidth cap): vm-1's disk is host-local (copied with the memory), vm-2's
    /// shared; `None` moves at what the link or the lab gives.
    cells: &'static [(&'static str, Option<f64>)],
}

/// The cases the constants are fitted on: 256 MiB guests, caps of 32 and 96 MiB/s with a
/// shared and a host-local disk, uncapped moves (what one migration stream moves on this
/// machine), and a shaped 32 MiB/s link (what the pause sends besides memory).
const FITTED: [Family; 3] = [
    Family {
        name: "fit",
        mem_mib: 256.0,
        dirty: 5.0,
        link: None,
        port_base: 26000,
        cells: &[
            ("vm-2", Some(32.0)),
            ("vm-2", Some(96.0)),
            ("vm-2", None),
            ("vm-1", Some(32.0)),
            ("vm-1", Some(96.0)),
        ],
    },
    Family {
        name: "fit",
        mem_mib: 256.0,
        dirty: 25.0,
        link: None,
        port_base: 27000,
        cells: &[("vm-2", Some(32.0)), ("vm-2", Some(96.0)), ("vm-2", None), ("vm-1", Some(96.0))],
    },
    Family {
        name: "fit, link 32",
        mem_mib: 256.0,
        dirty: 5.0,
        link: Some(32),
        port_base: 26000,
        cells: &[("vm-2", None)],
    },
];

/// Cases no constant was fitted on: other memory sizes, dirty rates and caps, a host-local
/// disk, and a shaped link instead of a cap.
const HELD_OUT: [Family; 3] = [
    Family {
        name: "128 MiB",
        mem_mib: 128.0,
        dirty: 10.0,
        link: None,
        port_base: 26000,
        cells: &[("vm-2", Some(48.0)), ("vm-2", Some(64.0)), ("vm-1", Some(48.0))],
    },
    Family {
        name: "128 MiB",
        mem_mib: 128.0,
        dirty: 15.0,
        link: None,
        port_base: 27000,
        cells: &[("vm-2", Some(48.0)), ("vm-2", Some(64.0)), ("vm-1", Some(64.0))],
    },
    Family {
        name: "192 MiB, link 24",
        mem_mib: 192.0,
        dirty: 8.0,
        link: Some(24),
        port_base: 26000,
        cells: &[("vm-2", None), ("vm-1", None)],
    },
];

/// The lab's "link" for the pause's pages ([`ferry_lab::LOOPBACK_PAGE_MIB_S`]).
const LAB_LINK_MIB_S: f64 = ferry_lab::LOOPBACK_PAGE_MIB_S;

/// What the fitted cases say about this machine, next to the compiled constants.
struct Fit {
    /// MiB/s one migration stream moves here when nothing caps it (the uncapped moves).
    stream_mib_s: f64,
    /// Seconds to add to `JOB_SETUP_S`, ms to `SWITCHOVER_MS`, s to `PER_MIGRATION_OVERHEAD_S`.
    job_setup_s: f64,
    switchover_ms: f64,
    overhead_s: f64,
    /// MiB to add to what the pause sends besides memory (device state), crossing the link.
    pause_extra_mib: f64,
    /// Ms to add to the pause of a move that copies a disk (the copy's last sync).
    disk_sync_ms: f64,
}

impl Fit {
    /// The compiled constants as they are; streams as fast as the cap.
    const COMPILED: Fit = Fit {
        stream_mib_s: f64::INFINITY,
        job_setup_s: 0.0,
        switchover_ms: 0.0,
        overhead_s: 0.0,
        pause_extra_mib: 0.0,
        disk_sync_ms: 0.0,
    };
}

/// One measured cell: its family, guest, cap and moves.
struct Row<'a> {
    family: &'a Family,
    vm: &'static str,
    cap: Option<f64>,
    moves: Vec<Measured>,
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let fitted = measure(&FITTED, runs);
    let fit = fit(&fitted);
    println!();
    println!(
        "fitted on {} moves: one stream moves {:.1} MiB/s here; JOB_SETUP_S {} → {:.2} s, SWITCHOVER_MS {} → {:.1} ms, PER_MIGRATION_OVERHEAD_S {} → {:.2} s, DEVICE_STATE_MIB {} → {:.2}, DISK_SYNC_MS {} → {:.1}",
        fitted.iter().map(|r| r.moves.len()).sum::<usize>(),
        fit.stream_mib_s,
        JOB_SETUP_S,
        JOB_SETUP_S + fit.job_setup_s,
        SWITCHOVER_MS,
        SWITCHOVER_MS + fit.switchover_ms,
        PER_MIGRATION_OVERHEAD_S,
        PER_MIGRATION_OVERHEAD_S + fit.overhead_s,
        DEVICE_STATE_MIB,
        DEVICE_STATE_MIB + fit.pause_extra_mib,
        DISK_SYNC_MS,
        DISK_SYNC_MS + fit.disk_sync_ms,
    );
    if std::env::args().any(|a| a == "fit-only") {
        table("the cases the constants are fitted on (in sample)", &fitted, &fit);
        return;
    }
    let held_out = measure(&HELD_OUT, runs);
    table("the cases the constants are fitted on (in sample)", &fitted, &fit);
    table("cases held out of the fit, with the constants as compiled", &held_out, &Fit::COMPILED);
    table("cases held out of the fit, with the constants refit on this machine's fitted cases", &held_out, &fit);
}

/// Brings up each family's lab and moves its guests, `runs` times a cell, alternating
/// direction; checks every guest afterwards.
fn measure(families: &[Family], runs: usize) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    for family in families {
        let lab = Lab::up(family);
        let mut on: HashMap<&str, String> = HashMap::new();
        for (vm, _) in family.cells {
            if on.contains_key(vm) {
                continue;
            }
            let mut at = lab.vm_host(vm);
            // Each daemon's first incoming migration is slower: one unmeasured move each way.
            for _ in 0..2 {
                let to = other(&at);
                match lab.move_vm(vm, &to, None) {
                    Ok(_) => at = to,
                    Err(e) => eprintln!("warm-up move of {vm} to {to}: {e}"),
                }
            }
            on.insert(vm, at);
        }
        for &(vm, cap) in family.cells {
            let mut moves = Vec::new();
            for run in 0..runs {
                let from = on[vm].clone();
                let to = other(&from);
                let what = format!(
                    "{:<17} {:>3} MiB dirty {:>4}  {vm} bw {:>4}  run {run}  {from} -> {to}",
                    family.name,
                    family.mem_mib,
                    family.dirty,
                    show_bw(cap)
                );
                match lab.move_vm(vm, &to, cap) {
                    Ok(m) => {
                        println!(
                            "{what}  job {:>6} ms  wall {:>6} ms  downtime {:>4} ms  passes {:>2}  sent {:>6.1} MiB",
                            m.job_ms, m.wall_ms, m.downtime_ms, m.passes, m.sent_mib
                        );
                        moves.push(m);
                        on.insert(vm, to);
                    }
                    Err(e) => println!("{what}: FAILED: {e}"),
                }
            }
            rows.push(Row { family, vm, cap, moves });
        }
        if let Some(achieved) = lab.achieved_dirty_rate("vm-2") {
            println!("vm-2 reports dirtying {achieved:.1} MiB/s (median of its heartbeats; asked {})", family.dirty);
        }
        lab.check();
    }
    rows
}

/// The fit: the stream's speed from the uncapped moves, then how far the job, the pause and
/// the time outside the job are from the model's over the shared disk's capped moves, then
/// the local disk's pause, then the shaped link's (medians).
fn fit(rows: &[Row]) -> Fit {
    let uncapped: Vec<f64> = rows
        .iter()
        .filter(|r| r.cap.is_none() && r.family.link.is_none())
        .flat_map(|r| &r.moves)
        .map(|m| m.sent_mib / (m.job_ms / 1000.0 - JOB_SETUP_S - m.downtime_ms / 1000.0))
        .collect();
    let stream = Fit { stream_mib_s: median(&uncapped), ..Fit::COMPILED };
    // Each step on its own cases, with the steps before it applied: the shared disk's capped
    // moves on the loopback, then the host-local disk's, then the shaped link's.
    let distances = |fit: &Fit, which: &dyn Fn(&Row) -> bool, measure: &dyn Fn(&Measured, &LiveEstimate) -> f64| {
        let mut all = Vec::new();
        for row in rows.iter().filter(|r| which(r)) {
            let e = predict(row, fit);
            all.extend(row.moves.iter().map(|m| measure(m, &e)));
        }
        median(&all)
    };
    let shared = |r: &Row| r.cap.is_some() && r.family.link.is_none() && r.vm == "vm-2";
    let fixed = Fit {
        job_setup_s: distances(&stream, &shared, &|m, e| m.job_ms / 1000.0 - e.transfer_s),
        switchover_ms: distances(&stream, &shared, &|m, e| m.downtime_ms - e.downtime_ms),
        overhead_s: distances(&stream, &shared, &|m, _| (m.wall_ms - m.job_ms) / 1000.0 - PER_MIGRATION_OVERHEAD_S),
        ..stream
    };
    let local = |r: &Row| r.cap.is_some() && r.family.link.is_none() && r.vm == "vm-1";
    let disk = Fit { disk_sync_ms: distances(&fixed, &local, &|m, e| m.downtime_ms - e.downtime_ms), ..fixed };
    let linked = |r: &Row| r.family.link.is_some() && r.vm == "vm-2";
    let link_mib_s = rows.iter().find(|r| linked(r)).and_then(|r| r.family.link).unwrap_or(0) as f64;
    let extra = distances(&disk, &linked, &|m, e| (m.downtime_ms - e.downtime_ms) / 1000.0 * link_mib_s);
    Fit { pause_extra_mib: if extra.is_nan() { 0.0 } else { extra }, ..disk }
}

/// Prints predicted against measured medians per cell, and the median errors.
fn table(title: &str, rows: &[Row], fit: &Fit) {
    println!();
    println!("live moves, {title}; medians, predicted / measured (error of the prediction)");
    println!(
        "{:<17} {:>4} {:>5} {:>6} {:>5} | {:>22} | {:>22} | {:>18} | {:>7} | {:>8} | note",
        "family", "mem", "dirty", "vm", "bw", "transfer s (job)", "total s (wall)", "downtime ms", "passes", "sent MiB"
    );
    let (mut total_errors, mut downtime_errors) = (Vec::new(), Vec::new());
    for row in rows {
        let f = row.family;
        let bandwidth = show_bw(row.cap);
        let vm = if row.vm == "vm-1" { "local" } else { "shared" };
        let e = predict(row, fit);
        if row.moves.is_empty() {
            println!(
                "{:<17} {:>4} {:>5} {vm:>6} {bandwidth:>5} | no successful run | {}",
                f.name, f.mem_mib, f.dirty, e.note
            );
            continue;
        }
        let m = |pick: fn(&Measured) -> f64| median(row.moves.iter().map(pick).collect::<Vec<_>>());
        let (job, wall) = (m(|m| m.job_ms) / 1000.0, m(|m| m.wall_ms) / 1000.0);
        let (downtime, passes, sent) = (m(|m| m.downtime_ms), m(|m| m.passes), m(|m| m.sent_mib));
        // Uncapped moves on the loopback are what the stream's speed is fitted on.
        if row.cap.is_some() || f.link.is_some() {
            total_errors.push(err(e.total_s, wall));
            downtime_errors.push(err(e.downtime_ms, downtime));
        }
        println!(
            "{:<17} {:>4} {:>5} {vm:>6} {bandwidth:>5} | {:>5.2} / {:>5.2} ({:>+4.0} %) | {:>5.2} / {:>5.2} ({:>+4.0} %) | {:>5.0} / {:>5.0} ({:>+4.0} %) | {:>2} / {:>2} | {:>8.1} | {}",
            f.name,
            f.mem_mib,
            f.dirty,
            e.transfer_s,
            job,
            err(e.transfer_s, job),
            e.total_s,
            wall,
            err(e.total_s, wall),
            e.downtime_ms,
            downtime,
            err(e.downtime_ms, downtime),
            e.passes,
            passes,
            sent,
            e.note
        );
    }
    if !total_errors.is_empty() {
        let median_abs = |e: &[f64]| median(e.iter().map(|x| x.abs()).collect::<Vec<_>>());
        println!(
            "median |error| over {} cells: total time {:.0} %, downtime {:.0} % (goal out of sample: within 15 %)",
            total_errors.len(),
            median_abs(&total_errors),
            median_abs(&downtime_errors)
        );
    }
}

fn show_bw(bandwidth: Option<f64>) -> String {
    bandwidth.map_or("none".to_string(), |b| format!("{b}"))
}

/// The model's answer for one cell, with what the lab tells about its guests, for the move
/// `ferry move` makes: the default policy's downtime steps and auto-converge, started without
/// a measured dirty rate; the lab's guest makes up 50 ms of work after each throttle stop.
/// `fit` moves the fixed costs and caps the stream.
fn predict(row: &Row, fit: &Fit) -> LiveEstimate {
    let f = row.family;
    let wss = lab_working_set(f.mem_mib);
    let link = f.link.map(|l| l as f64);
    let bandwidth = row.cap.or(link).unwrap_or(f64::INFINITY).min(fit.stream_mib_s);
    let disk_copy_mib = if row.vm == "vm-1" { ferry_lab::DATA_DISK_MIB as f64 } else { 0.0 };
    let e = estimate_live(&LiveInput {
        nonzero_mib: Some(ferry_lab::GUEST_BASE_NONZERO_MIB + wss),
        working_set_mib: Some(wss),
        link_mib_s: Some(link.unwrap_or(LAB_LINK_MIB_S)),
        catch_up_s: Some(ferry_lab::GUEST_CATCH_UP_S),
        disk_copy_mib,
        ..policy_live_input(&Policy::default(), f.mem_mib, f.dirty, false, bandwidth)
    });
    // A shaped link's last pages wait out its queue (`tc tbf latency`) in the pause, as bench
    // sim_vs_lab gives its simulated hosts; the estimate knows no queue.
    let queue_ms = if f.link.is_some() { f64::from(ferry_lab::LINK_QUEUE_MS) } else { 0.0 };
    let extra_ms = fit.pause_extra_mib / link.unwrap_or(LAB_LINK_MIB_S) * 1000.0;
    let disk_ms = if disk_copy_mib > 0.0 { fit.disk_sync_ms } else { 0.0 };
    let pause_ms = fit.switchover_ms + queue_ms + extra_ms + disk_ms;
    let transfer_s = e.transfer_s + fit.job_setup_s + pause_ms / 1000.0;
    LiveEstimate {
        transfer_s,
        total_s: transfer_s + PER_MIGRATION_OVERHEAD_S + fit.overhead_s,
        downtime_ms: e.downtime_ms + pause_ms,
        ..e
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

/// A lab owned by the bench: `lab down --purge` on drop, also when the bench panics.
struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn up(family: &Family) -> Lab {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-estimate-{}", family.port_base));
        let lab = Lab { dir };
        let _ = ferry(&["lab", "down", "--purge", "--dir", lab.dir_str()]);
        let (mem, dirty, port) =
            (format!("{}", family.mem_mib), format!("{}", family.dirty), family.port_base.to_string());
        let link = family.link.map(|l| l.to_string());
        let mut args = vec![
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
        ];
        if let Some(link) = &link {
            args.extend(["--link", link]);
        }
        let out = ferry(&args);
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

    fn move_vm(&self, vm: &str, to: &str, bandwidth: Option<f64>) -> Result<Measured, String> {
        let cluster = self.dir.join("cluster.toml");
        let cluster = cluster.to_str().expect("utf-8 path");
        let mut args = vec!["move", vm, "--to", to, "--output", "json", "--cluster", cluster];
        // vm-1's disk is copied: the copy left behind would block its way back.
        if vm == "vm-1" {
            args.push("--delete-source-volumes");
        }
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
