//! `ferry move` on a real lab: live moves with shared and host-local disks, cold moves,
//! aborts and a dead target. Every test ends with `ferry lab check` passing.

mod common;

use std::time::{Duration, Instant};

use common::TestLab;
use serde_json::json;

#[test]
fn live_moves_keep_uuid_copy_local_disks_and_take_several_passes_under_a_cap() {
    // 256 MiB dirtying 20 MiB/s: under a 64 MiB/s cap the pre-copy needs several passes.
    let lab = TestLab::up("move-live", 15_000, &["--hosts", "2", "--vms", "2", "--mem", "256", "--dirty", "20"]);
    lab.check_ok();

    let inventory = common::ferry(&[
        "inventory",
        "--cluster",
        lab.dir.join("cluster.toml").to_str().expect("utf-8"),
        "--output",
        "json",
    ]);
    assert!(inventory.status.success());
    let inventory: serde_json::Value = serde_json::from_slice(&inventory.stdout).expect("inventory JSON");
    let disk_of = |vm: &str| {
        inventory["vms"].as_array().expect("vms").iter().find(|v| v["name"] == vm).expect("vm in inventory")["disks"][0]
            ["locality"]
            .clone()
    };
    assert_eq!(disk_of("vm-1"), json!("host-local"));
    assert_eq!(disk_of("vm-2"), json!("shared"));

    // Shared disk (NBD): nothing to copy.
    let uuid2 = lab.vm_status("vm-2")["uuid"].clone();
    let (code, summary) = lab.ferry_move(&["vm-2", "--to", "host-a", "--bandwidth", "64"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"));
    assert!(summary["memory_passes"].as_u64().is_some_and(|p| p >= 2), "several passes expected: {summary:#}");
    assert_eq!(summary["created_volumes"], json!([]));
    let vm2 = lab.vm_status("vm-2");
    assert_eq!(vm2["uuid"], uuid2, "UUID kept");
    assert_eq!(vm2["running_on"], json!(["host-a"]));
    assert_eq!(vm2["defined_on"], json!([]), "undefined on the source");

    // Host-local disk: copied into a volume ferry creates in host-b's pool.
    let before = lab.last_heartbeat("vm-1");
    let (code, summary) = lab.ferry_move(&["vm-1", "--to", "host-b", "--delete-source-volumes"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"));
    let target_volume = lab.dir.join("hosts/host-b/pool/vm-1.qcow2");
    assert_eq!(summary["created_volumes"], json!([target_volume.to_str().expect("utf-8")]));
    assert_eq!(lab.pool_files("host-b"), vec!["vm-1.qcow2"]);
    assert_eq!(lab.pool_files("host-a"), Vec::<String>::new(), "source volume deleted as asked");
    let xml = lab.virsh("host-b", &["dumpxml", "vm-1"]);
    assert!(
        xml.contains(&format!("<source file='{}'", target_volume.display())),
        "XML points at the new volume:\n{xml}"
    );
    assert!(
        xml.contains("urn:ferry:metadata:1") && xml.contains("phase=\"finalized\""),
        "ferry metadata on the domain:\n{xml}"
    );

    // The guest re-reads the blocks it wrote before the move from the copied disk.
    std::thread::sleep(Duration::from_secs(3));
    let after = lab.last_heartbeat("vm-1");
    assert!(
        after.disk_blocks_verified > before.disk_blocks_verified,
        "disk verification went on: {before:?} -> {after:?}"
    );
    lab.check_ok();
}

#[test]
fn cold_move_keeps_uuid_a_dead_target_changes_nothing_and_a_dead_bystander_does_not_matter() {
    let lab = TestLab::up("move-cold", 16_000, &["--hosts", "3", "--vms", "3"]);
    lab.check_ok();
    let uuid1 = lab.vm_status("vm-1")["uuid"].clone();
    let restart_daemons = || {
        let out = common::ferry(&["lab", "up", "--dir", lab.dir_str(), "--hosts", "3", "--vms", "3"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };

    // A host that is neither source nor target being down does not fail a move: it is
    // noted as not asked where the VM runs.
    assert_eq!(lab.vm_status("vm-2")["running_on"], json!(["host-b"]));
    let host_c_pid = lab.status_json()["hosts"][2]["pid"].as_u64().expect("host-c runs");
    common::kill9(u32::try_from(host_c_pid).expect("pid"));
    let (code, summary) = lab.ferry_move(&["vm-2", "--to", "host-a"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"));
    assert!(summary.to_string().contains("not asked where the VM runs (unreachable): host-c"), "{summary:#}");
    restart_daemons();
    assert_eq!(lab.vm_status("vm-2")["running_on"], json!(["host-a"]));

    // Target daemon down: FAILURE-INIT, nothing changed anywhere.
    let xml_before = lab.virsh("host-a", &["dumpxml", "vm-1"]);
    let pools_before = (lab.pool_files("host-a"), lab.pool_files("host-b"));
    let host_b_pid = lab.status_json()["hosts"][1]["pid"].as_u64().expect("host-b runs");
    common::kill9(u32::try_from(host_b_pid).expect("pid"));
    let (code, summary) = lab.ferry_move(&["vm-1", "--to", "host-b"]);
    assert_eq!(code, Some(1), "{summary:#}");
    assert_eq!(summary["status"], json!("FAILURE-INIT"));
    assert!(summary["reason"].as_str().is_some_and(|r| r.contains("host-b unreachable")), "{summary:#}");
    assert_eq!(lab.virsh("host-a", &["dumpxml", "vm-1"]), xml_before, "domain untouched");
    assert_eq!((lab.pool_files("host-a"), lab.pool_files("host-b")), pools_before, "no volume created");
    // Bring host-b back (its guest kept running without its daemon).
    restart_daemons();

    // Cold move: the guest shuts down (powered off after the timeout), its disk is copied
    // through libvirt streams, and it starts on host-b with the same UUID.
    let (code, summary) = lab.ferry_move(&["vm-1", "--to", "host-b", "--cold", "--shutdown-timeout", "2"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS-COLD"));
    let vm1 = lab.vm_status("vm-1");
    assert_eq!(vm1["uuid"], uuid1);
    assert_eq!(vm1["running_on"], json!(["host-b"]));
    assert_eq!(vm1["defined_on"], json!([]), "undefined on the source");
    assert_eq!(lab.pool_files("host-b"), vec!["vm-1.qcow2"]);
    assert_eq!(lab.pool_files("host-a"), vec!["vm-1.qcow2"], "source volume kept by default");
    // Same image bytes up to the guest's writes after restart: the guest finds its earlier
    // blocks intact on boot (a CORRUPT line would fail the check).
    std::thread::sleep(Duration::from_secs(2));
    lab.check_ok_with(&["--allow-restart", "vm-1"]);
}

#[test]
fn an_aborted_live_move_leaves_the_guest_on_its_source_and_removes_the_target_volume() {
    let lab = TestLab::up("move-abort", 17_000, &["--hosts", "2", "--vms", "1", "--mem", "256", "--dirty", "10"]);
    lab.check_ok();

    // Slow enough to still be copying after 3 s: the completion timeout aborts it.
    let pool_dir = lab.dir.join("hosts/host-b/pool");
    let watcher = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if pool_dir.join("vm-1.qcow2").exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    let (code, summary) = lab.ferry_move(&["vm-1", "--to", "host-b", "--bandwidth", "4", "--timeout", "3"]);
    assert!(watcher.join().expect("watcher"), "the target volume existed during the transfer");
    assert_eq!(code, Some(1), "{summary:#}");
    assert_eq!(summary["status"], json!("FAILURE-WAIT"));
    assert!(summary["reason"].as_str().is_some_and(|r| r.contains("completion timeout")), "{summary:#}");
    assert_eq!(lab.vm_status("vm-1")["running_on"], json!(["host-a"]));
    assert_eq!(lab.pool_files("host-b"), Vec::<String>::new(), "target volume removed");
    lab.check_ok();

    // Ctrl-C during the transfer: ABORTED, again on the source.
    let cluster = lab.dir.join("cluster.toml");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["move", "vm-1", "--to", "host-b", "--bandwidth", "4", "--output", "json", "--cluster"])
        .arg(&cluster)
        .env("FERRY_STATE", std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("journal.db"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferry starts");
    let pool_dir = lab.dir.join("hosts/host-b/pool");
    let start = Instant::now();
    while !pool_dir.join("vm-1.qcow2").exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = common::wait_or_fail(child, "ferry move (interrupted)");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    assert_eq!(out.status.code(), Some(1), "{summary:#}");
    assert_eq!(summary["status"], json!("ABORTED"), "{summary:#}");
    assert_eq!(lab.vm_status("vm-1")["running_on"], json!(["host-a"]));
    assert_eq!(lab.pool_files("host-b"), Vec::<String>::new(), "target volume removed");
    lab.check_ok();
}
