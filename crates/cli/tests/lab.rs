//! The lab, for real: libvirtd daemons, QEMU guests, serial logs. Needs root and the
//! packages `scripts/setup` installs.

mod common;

use std::process::Command;

use common::{ferry, TestLab};

#[test]
fn a_capped_multi_pass_live_migration_with_virsh_leaves_the_guest_intact() {
    // 256 MiB dirtying 20 MiB/s under a 64 MiB/s cap: the multi-pass pre-copy that QEMU 7.2
    // under TCG corrupted.
    let lab = TestLab::up("virsh-migrate", 11_000, &["--hosts", "2", "--vms", "2", "--mem", "256", "--dirty", "20"]);
    lab.check_ok();

    // vm-2 has its disk on the shared NBD storage, so plain virsh needs no storage copy.
    let src = lab.uri("host-b");
    let dst = lab.uri("host-a");
    let out = Command::new("virsh")
        // The lab's hosts refuse plaintext migration streams (TLS, its default transport).
        .args(["-c", &src, "migrate", "--live", "--p2p", "--persistent", "--undefinesource", "--tls"])
        .args(["--bandwidth", "64", "vm-2", &dst])
        .args(["--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"])
        .output()
        .expect("virsh runs");
    assert!(out.status.success(), "virsh migrate failed: {}", String::from_utf8_lossy(&out.stderr));

    // The destination keeps the incoming migration's completed statistics.
    let info =
        Command::new("virsh").args(["-c", &dst, "domjobinfo", "vm-2", "--completed"]).output().expect("virsh runs");
    let info = String::from_utf8_lossy(&info.stdout).to_string();
    let iterations = info.lines().find_map(|l| l.strip_prefix("Iteration:")).and_then(|v| v.trim().parse::<u64>().ok());
    assert!(iterations.is_some_and(|n| n >= 2), "expected several memory passes:\n{info}");

    let status = lab.status_json();
    let vm2 = status["vms"].as_array().expect("vms").iter().find(|v| v["name"] == "vm-2").expect("vm-2");
    assert_eq!(vm2["running_on"], serde_json::json!(["host-a"]));
    assert_eq!(vm2["defined_on"], serde_json::json!([]), "the source must not keep a definition");
    lab.check_ok();
}

#[test]
fn a_killed_guest_fails_the_check_by_name_and_down_leaves_nothing_running() {
    let lab = TestLab::up("kill-guest", 12_000, &["--hosts", "2", "--vms", "2"]);
    lab.check_ok();

    let uuids = lab.uuids();
    let uuid2 = lab.vm_status("vm-2")["uuid"].as_str().expect("uuid").to_string();
    let qemu = common::qemu_pid(&uuid2).expect("vm-2 has a QEMU process");
    common::kill9(qemu);
    let out = ferry(&["lab", "check", "--dir", lab.dir_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "check must fail:\n{stdout}");
    let vm2 = stdout.lines().find(|l| l.contains("vm-2")).expect("a line for vm-2");
    assert!(vm2.starts_with("FAIL"), "vm-2 must fail: {vm2}");
    let vm1 = stdout.lines().find(|l| l.contains("vm-1")).expect("a line for vm-1");
    assert!(vm1.starts_with("ok"), "vm-1 is healthy: {vm1}");

    let out = ferry(&["lab", "down", "--dir", lab.dir_str()]);
    assert!(out.status.success());
    assert_eq!(common::processes_under(&lab.dir, &uuids), Vec::<u32>::new(), "lab processes left running");
}

#[test]
fn up_is_idempotent_and_restarts_what_died() {
    let lab = TestLab::up("idempotent", 13_000, &["--hosts", "1", "--vms", "1"]);
    let before = lab.status_json();
    let out = ferry(&["lab", "up", "--dir", lab.dir_str(), "--hosts", "1", "--vms", "1", "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = lab.status_json();
    assert_eq!(before["hosts"][0]["pid"], after["hosts"][0]["pid"], "a running daemon must be kept");
    // The running guest is kept: the same domain, on the same host, not booted again.
    assert_eq!(after["vms"][0]["uuid"], before["vms"][0]["uuid"]);
    assert_eq!(before["vms"][0]["running_on"], serde_json::json!(["host-a"]));
    assert_eq!(after["vms"][0]["running_on"], serde_json::json!(["host-a"]));
    let uptime = |status: &serde_json::Value| status["vms"][0]["uptime_s"].as_f64();
    assert!(
        uptime(&after).zip(uptime(&before)).is_some_and(|(a, b)| a >= b),
        "the guest kept running: uptime {:?} -> {:?}",
        uptime(&before),
        uptime(&after)
    );

    // A different shape in the same directory is refused, not silently merged.
    let out = ferry(&["lab", "up", "--dir", lab.dir_str(), "--hosts", "2", "--vms", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a lab of 1 hosts"));

    // After a stop, `up` brings the same guests back.
    let out = ferry(&["lab", "down", "--dir", lab.dir_str()]);
    assert!(out.status.success());
    let out = ferry(&["lab", "up", "--dir", lab.dir_str(), "--hosts", "1", "--vms", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = lab.status_json();
    assert_eq!(again["vms"][0]["uuid"], before["vms"][0]["uuid"]);
    lab.check_ok();
}

#[test]
fn bad_input_is_refused_with_exit_2_and_starts_nothing() {
    let dir = common::test_dir("bad-input");
    let dir_str = dir.to_str().expect("utf-8 path");
    for (args, expect) in [
        (vec!["--hosts", "0"], "--hosts 0"),
        (vec!["--hosts", "12"], "--hosts 12"),
        (vec!["--mem", "8"], "--mem 8"),
        (vec!["--dirty", "-1"], "--dirty"),
        (vec!["--hosts", "many"], "invalid value 'many'"),
    ] {
        let mut full = vec!["lab", "up", "--dir", dir_str, "--port-base", "14000"];
        full.extend(args.iter());
        let out = ferry(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: expected {expect:?} in {stderr}");
    }

    let out = ferry(&["lab", "up", "--dir", "/proc/ferry-lab", "--port-base", "14000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/proc/ferry-lab"));

    // A port of the lab's block already taken: refused before anything starts.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", 14_001)).expect("bind a test port");
    let out = ferry(&["lab", "up", "--dir", dir_str, "--port-base", "14000", "--hosts", "2", "--vms", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("14001"), "{stderr}");
    assert_eq!(common::processes_under(&dir, &[]), Vec::<u32>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `lab down --purge` of a directory that holds no lab refuses (exit 2): a process whose
/// command line names the directory survives, and the directory and its files stay.
#[test]
fn down_refuses_a_directory_that_is_no_lab_and_signals_nothing() {
    let dir = common::test_dir("not-a-lab");
    std::fs::create_dir_all(&dir).expect("a directory");
    std::fs::write(dir.join("precious.txt"), "keep me").expect("a file");
    // `sh -c … DIR`: the shell stays, its command line naming the directory.
    let mut bystander = Command::new("sh").args(["-c", "sleep 300; true"]).arg(&dir).spawn().expect("sh runs");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let dir_str = dir.to_str().expect("utf-8 path");
    let out = ferry(&["lab", "down", "--purge", "--dir", dir_str]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let alive = bystander.try_wait().expect("wait").is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no lab in"), "{stderr}");
    assert!(alive, "a process naming the directory was signalled");
    assert_eq!(std::fs::read_to_string(dir.join("precious.txt")).expect("the file stays"), "keep me");
    let _ = std::fs::remove_dir_all(&dir);
}
