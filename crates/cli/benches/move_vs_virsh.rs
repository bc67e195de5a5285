//! The same live move done by `ferry move` and by `virsh migrate --live --p2p`, on one lab,
//! alternating, several runs each: medians and the ratio ferry/virsh of wall time.
//!
//! `cargo bench -p ferry --bench move_vs_virsh [-- RUNS]` (root, a machine set up by
//! `scripts/setup`). Brings up its own 2-host lab and tears it down.

#[path = "shared/stats.rs"]
mod stats;

use stats::median;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(6);
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-move-lab");
    let dir_s = dir.to_str().expect("utf-8 path").to_string();
    let _ = Command::new(ferry).args(["lab", "down", "--purge", "--dir", &dir_s]).status();
    let up = Command::new(ferry)
        // Plain streams: virsh's plain migrate would be refused by a TLS lab.
        .args([
            "lab",
            "up",
            "--dir",
            &dir_s,
            "--hosts",
            "2",
            "--vms",
            "2",
            "--port-base",
            "25000",
            "--transport",
            "tcp",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("ferry runs");
    assert!(up.status.success(), "lab up: {}", String::from_utf8_lossy(&up.stderr));
    let uri = |host: &str| format!("qemu+tcp://127.0.0.1:{}/system", if host == "host-a" { 25000 } else { 25001 });
    let cluster = dir.join("cluster.toml");

    // vm-2 lives on the shared NBD storage: a pure memory migration for both tools. Each
    // round of four moves gives both tools both directions; a first unmeasured round warms
    // up each daemon's first incoming migration.
    let order = [true, false, false, true];
    let mut on = "host-b";
    let mut ferry_ms = Vec::new();
    let mut virsh_ms = Vec::new();
    for run in 0..(runs.div_ceil(2) + 1) * 4 {
        let to = if on == "host-a" { "host-b" } else { "host-a" };
        let use_ferry = order[run % 4];
        let warmup = run < 4;
        let started = Instant::now();
        let out = if use_ferry {
            Command::new(ferry)
                .args(["move", "vm-2", "--to", to, "--cluster"])
                .arg(&cluster)
                .env("RUST_LOG", "warn")
                .output()
        } else {
            Command::new("virsh")
                .args([
                    "-c",
                    &uri(on),
                    "migrate",
                    "--live",
                    "--p2p",
                    "--persistent",
                    "--undefinesource",
                    "vm-2",
                    &uri(to),
                ])
                .args(["--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"])
                .output()
        }
        .expect("mover runs");
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let tool = if use_ferry { "ferry" } else { "virsh" };
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        println!("{:6}  {tool}  {on} -> {to}  {ms:7.0} ms", if warmup { "warmup" } else { "" });
        if !warmup {
            if use_ferry {
                ferry_ms.push(ms)
            } else {
                virsh_ms.push(ms)
            }
        }
        on = to;
    }
    let check = Command::new(ferry).args(["lab", "check", "--dir", &dir_s]).output().expect("ferry runs");
    let healthy = check.status.success();
    let _ = Command::new(ferry).args(["lab", "down", "--purge", "--dir", &dir_s]).status();

    let (f, v) = (median(&ferry_ms), median(&virsh_ms));
    println!();
    println!("live move of a 128 MiB guest, shared disk, {} runs each", ferry_ms.len());
    println!("  ferry move        median {f:7.0} ms   min {:7.0}   max {:7.0}", min(&ferry_ms), max(&ferry_ms));
    println!("  virsh migrate     median {v:7.0} ms   min {:7.0}   max {:7.0}", min(&virsh_ms), max(&virsh_ms));
    println!("  ratio ferry/virsh {:.3}  (goal <= 1.05)", f / v);
    println!("  lab check after all moves: {}", if healthy { "passed" } else { "FAILED" });
    if !healthy {
        println!("{}", String::from_utf8_lossy(&check.stdout));
        std::process::exit(1);
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}
