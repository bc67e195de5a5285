//! `ferry lab up --memory-mix`: guests whose working set holds zero, text and random pages in
//! the proportions asked for, moved live and verified whole. Needs root and the packages
//! `scripts/setup` installs.

mod common;

use common::{ferry, TestLab};
use serde_json::json;

#[test]
fn a_guest_with_a_non_default_memory_mix_reports_it_and_moves_live_intact() {
    // Not the default 25:50:25, and every class present, so a mix that was not passed on
    // would show.
    let lab = TestLab::up(
        "memory-mix",
        4_000,
        &["--hosts", "2", "--vms", "2", "--mem", "256", "--dirty", "10", "--memory-mix", "40:35:25"],
    );
    lab.check_ok();

    for vm in ["vm-1", "vm-2"] {
        assert_eq!(lab.vm_status(vm)["memory_mix"], json!("40:35:25"), "{vm}: the mix its boot line reports");
        // What the guest built, counted page by page: 64 MiB of 4 KiB pages.
        let log = std::fs::read_to_string(lab.dir.join("vms").join(vm).join("serial.log")).expect("serial log");
        let boot = ferry_heartbeat::analyze(&log).boot.expect("a boot line");
        let [zero, text, random] = boot.pages_by_class.expect("the guest counts its pages by class");
        assert_eq!(zero + text + random, 64 * 256, "{vm}: every page of the working set has a class");
        for (class, pages, percent) in [("zero", zero, 40), ("text", text, 35), ("random", random, 25)] {
            let expected = 64 * 256 * percent / 100;
            assert!(pages.abs_diff(expected) <= 1, "{vm}: {pages} {class} pages, expected {expected}");
        }
        eprintln!("{vm}: filled its working set in {:?} ms", boot.fill_ms);
    }

    // vm-2's disk is on the shared storage: only memory crosses.
    let (code, summary) = lab.ferry_move(&["vm-2", "--to", "host-a"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"), "{summary:#}");
    eprintln!("live move of vm-2: {summary}");
    let vm2 = lab.vm_status("vm-2");
    assert_eq!(vm2["running_on"], json!(["host-a"]));
    assert_eq!(vm2["defined_on"], json!([]), "undefined on the source");
    // The guest kept dirtying and verifying its mixed pages on the target.
    let before = lab.last_heartbeat("vm-2");
    lab.check_ok();
    let after = lab.last_heartbeat("vm-2");
    assert!(after.pages_verified > before.pages_verified, "vm-2 verifies on host-a: {before:?} -> {after:?}");
    assert!(after.dirty_mib_s > 5.0, "vm-2 still dirties about 10 MiB/s on host-a: {after:?}");

    // A bad mix is refused before anything starts, naming the flag.
    let out = ferry(&["lab", "up", "--dir", lab.dir_str(), "--hosts", "2", "--vms", "2", "--memory-mix", "40:40:40"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--memory-mix") && stderr.contains("add up to 120, not 100"), "{stderr}");
    lab.check_ok();
}
