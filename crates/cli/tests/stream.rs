//! Migration streams: parallel connections (QEMU multifd) with compression, asked with
//! `ferry move --parallel N --compression NAME`, checked before anything starts. Needs root
//! and the packages `scripts/setup` installs.

mod common;

use common::TestLab;
use serde_json::json;

fn host_of(lab: &TestLab, vm: &str) -> String {
    lab.vm_status(vm)["running_on"][0].as_str().expect("runs somewhere").to_string()
}

#[test]
fn zstd_over_parallel_connections_sends_fewer_bytes_and_the_guest_survives() {
    // Port block shared with memory_mix.rs: test binaries run one after another.
    let lab = TestLab::up("stream", 4_000, &["--hosts", "2", "--vms", "2", "--mem", "256"]);
    lab.check_ok();
    let other = |host: &str| if host == "host-a" { "host-b" } else { "host-a" }.to_string();

    // vm-2's disk is on shared storage: only its memory crosses, in both moves.
    let from = host_of(&lab, "vm-2");
    let (code, plain) = lab.ferry_move(&["vm-2", "--to", &other(&from)]);
    assert_eq!((code, &plain["status"]), (Some(0), &json!("SUCCESS")), "{plain:#}");
    let (code, zstd) = lab.ferry_move(&["vm-2", "--to", &from, "--parallel", "4", "--compression", "zstd"]);
    assert_eq!((code, &zstd["status"]), (Some(0), &json!("SUCCESS")), "{zstd:#}");
    let bytes = |summary: &serde_json::Value| summary["transferred_bytes"].as_u64().expect("bytes sent");
    let ratio = bytes(&zstd) as f64 / bytes(&plain) as f64;
    eprintln!("plain {} B, zstd over 4 connections {} B: {ratio:.2}", bytes(&plain), bytes(&zstd));
    // The default memory mix compresses to about half (its text pages ~3.4x, zero pages free).
    assert!(ratio < 0.7, "zstd sent {ratio:.2} of the plain move's bytes");
    assert_eq!(host_of(&lab, "vm-2"), from);
    lab.check_ok();

    // Compression without multifd is refused before anything starts.
    let out = common::ferry(&[
        "move",
        "vm-2",
        "--to",
        &other(&from),
        "--compression",
        "zstd",
        "--cluster",
        lab.dir.join("cluster.toml").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("compression zstd needs parallel_connections"));
    assert_eq!(host_of(&lab, "vm-2"), from, "nothing moved");
    lab.check_ok();
}
