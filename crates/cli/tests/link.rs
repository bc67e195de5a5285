//! `ferry lab up --link`: every lab host in its own network namespace, its outbound traffic
//! shaped, so that migrations leaving one host really share its link. Needs root, iproute2
//! and the packages `scripts/setup` installs.

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{ferry, TestLab};
use serde_json::{json, Value};

/// The tests that measure rates run one at a time: three labs of TCG guests on two cores
/// would measure the CPU, not the links.
static MEASURING: Mutex<()> = Mutex::new(());

const MIB: f64 = 1024.0 * 1024.0;

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Named network namespaces whose name starts with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = ip(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// Interfaces of this (the root) namespace whose name starts with `prefix`.
fn links(prefix: &str) -> Vec<String> {
    ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The named network namespace a process runs in.
fn netns_of(pid: u32) -> String {
    ip(&["netns", "identify", &pid.to_string()]).trim().to_string()
}

fn qemu_of(lab: &TestLab, vm: &str) -> u32 {
    let uuid = lab.vm_status(vm)["uuid"].as_str().expect("uuid").to_string();
    common::qemu_pid(&uuid).expect("the guest has a QEMU process")
}

/// A move's average rate over its libvirt job, MiB/s.
fn job_rate(summary: &Value) -> f64 {
    let bytes = summary["transferred_bytes"].as_u64().expect("transferred_bytes") as f64;
    let ms = summary["job_ms"].as_u64().expect("job_ms") as f64;
    bytes / MIB / (ms / 1000.0)
}

fn describe(summary: &Value) -> String {
    format!(
        "{} {} -> {}: {:.1} MiB in {:.2} s = {:.1} MiB/s ({} passes, downtime {} ms)",
        summary["vm"].as_str().unwrap_or("?"),
        summary["from"].as_str().unwrap_or("?"),
        summary["to"].as_str().unwrap_or("?"),
        summary["transferred_bytes"].as_u64().unwrap_or(0) as f64 / MIB,
        summary["job_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
        job_rate(summary),
        summary["memory_passes"],
        summary["downtime_ms"],
    )
}

#[test]
fn a_linked_lab_shapes_a_migration_keeps_its_guests_and_leaves_no_namespace() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = "ferry-28000-";
    let lab = TestLab::up("link", 28_000, &["--hosts", "3", "--vms", "3", "--link", "32"]);
    lab.check_ok();

    // 28000 = 0x6d60: the lab's /24 is 10.(128 + 0x6d).(0x60) = 10.237.96.0/24.
    let cluster = std::fs::read_to_string(lab.dir.join("cluster.toml")).expect("cluster file");
    for (i, host) in ["host-a", "host-b", "host-c"].iter().enumerate() {
        let n = i + 1;
        let block = cluster
            .split("[[host]]")
            .find(|b| b.contains(&format!("name = \"{host}\"")))
            .unwrap_or_else(|| panic!("{host} in the cluster file:\n{cluster}"));
        // TLS, the lab's default: the host's certificate names its namespace address.
        assert!(block.contains(&format!("uri = \"qemu+tls://10.237.96.{n}:2800{i}/system?pkipath=")), "{block}");
        assert!(block.contains(&format!("migration_uri = \"tcp://10.237.96.{n}\"")), "{block}");
        assert!(block.contains("link_mib_s = 32\n"), "{block}");
    }
    assert!(!cluster.contains("127.0.0.1"), "no host on loopback:\n{cluster}");
    assert_eq!(
        namespaces(prefix),
        ["ferry-28000-host-a", "ferry-28000-host-b", "ferry-28000-host-c", "ferry-28000-net"]
    );
    assert_eq!(links(prefix), ["ferry-28000-r"]);

    // vm-2's disk is on the shared NBD storage, in the lab's own namespace; its QEMU runs in
    // its host's namespace, and in the target's after the move.
    assert_eq!(netns_of(qemu_of(&lab, "vm-2")), "ferry-28000-host-b");
    let before = lab.last_heartbeat("vm-2");
    let (code, summary) = lab.ferry_move(&["vm-2", "--to", "host-a"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"));
    eprintln!("alone on a 32 MiB/s link: {}", describe(&summary));
    // Over loopback the same move runs at about 200 MiB/s: below 40, the link shaped it.
    let rate = job_rate(&summary);
    assert!(rate < 40.0, "shaped to 32 MiB/s, moved at {rate:.1} MiB/s: {summary:#}");
    assert_eq!(lab.vm_status("vm-2")["running_on"], json!(["host-a"]));
    assert_eq!(netns_of(qemu_of(&lab, "vm-2")), "ferry-28000-host-a");

    // The guest goes on writing and re-reading its NBD disk from the new host.
    std::thread::sleep(Duration::from_secs(3));
    let after = lab.last_heartbeat("vm-2");
    assert!(
        after.disk_blocks_verified > before.disk_blocks_verified,
        "disk verification went on: {before:?} -> {after:?}"
    );
    lab.check_ok();

    let out = ferry(&["lab", "down", "--dir", lab.dir_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(namespaces(prefix), Vec::<String>::new(), "namespaces left behind");
    assert_eq!(links(prefix), Vec::<String>::new(), "links left behind");
}

/// A network namespace the test owns, removed on drop.
struct Decoy(&'static str);

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).status();
    }
}

#[test]
fn up_cleans_what_a_crashed_linked_lab_left_and_down_touches_nothing_else() {
    let dir = common::test_dir("link-stale");
    let dir_str = dir.to_str().expect("utf-8 path");
    let prefix = "ferry-29000-";
    let out = ferry(&["lab", "up", "--dir", dir_str, "--port-base", "29000", "--link", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--link 0"));
    assert_eq!(namespaces(prefix), Vec::<String>::new(), "bad input creates nothing");

    // Not the lab's, though its name starts like the lab's prefix.
    let decoy = Decoy("ferry-2900-decoy");
    ip(&["netns", "add", decoy.0]);

    let args = ["--hosts", "1", "--vms", "0", "--link", "16"];
    let lab = TestLab::up("link-stale", 29_000, &args);
    // A mark on host-a's namespace, to tell it from a fresh one (namespace inode numbers are
    // reused).
    let marked = || ip(&["-n", "ferry-29000-host-a", "-o", "link", "show", "lo"]).contains("alias stale-mark");
    ip(&["-n", "ferry-29000-host-a", "link", "set", "lo", "alias", "stale-mark"]);
    assert!(marked());

    // A crash: the daemon dies, its namespaces stay. `up` removes them and starts afresh.
    let pid = lab.status_json()["hosts"][0]["pid"].as_u64().expect("host-a runs");
    common::kill9(u32::try_from(pid).expect("pid"));
    std::thread::sleep(Duration::from_millis(200));
    let mut full = vec!["lab", "up", "--dir", lab.dir_str()];
    full.extend(args);
    let out = ferry(&full);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!marked(), "the stale namespace was replaced by a fresh one");
    assert_eq!(namespaces(prefix), ["ferry-29000-host-a", "ferry-29000-net"]);

    // A linked lab stays linked.
    let out = ferry(&["lab", "up", "--dir", lab.dir_str(), "--hosts", "1", "--vms", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("with --link 16 MiB/s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = ferry(&["lab", "down", "--dir", lab.dir_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(namespaces(prefix), Vec::<String>::new());
    assert_eq!(links(prefix), Vec::<String>::new());
    assert_eq!(namespaces(decoy.0), [decoy.0], "another's namespace is left alone");
}

#[test]
fn two_migrations_of_one_run_leaving_one_host_overlap_and_share_its_link() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let link = 32.0;
    // vm-1 (host-local disk) and vm-4 (shared disk) both start on host-a.
    let lab = TestLab::up("link-share", 28_500, &["--hosts", "3", "--vms", "4", "--mem", "256", "--link", "32"]);
    lab.check_ok();

    // One run of both moves: ferry shares host-a's link between them (two may leave a host
    // at once by default).
    let plan = lab.dir.join("share.toml");
    std::fs::write(
        &plan,
        "[plan]\nname = \"share\"\n[[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n[[move]]\nvm = \"vm-4\"\nto = \"host-c\"\n",
    )
    .expect("a plan");
    let state = lab.dir.join("share.db");
    let cluster = lab.dir.join("cluster.toml");
    let migrate = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["migrate", common::path_str(&plan), "--cluster", common::path_str(&cluster)])
        .args(["--state", common::path_str(&state), "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferry migrate");

    // While both send, each one's libvirt job is read on the source every half second: the
    // bytes each sent between the first and the last reading where both were sending.
    let both_sending = || {
        let one = processed_mib(&lab, "vm-1");
        let four = processed_mib(&lab, "vm-4");
        one.zip(four).filter(|(a, b)| *a > 0.0 && *b > 0.0)
    };
    let started = std::time::Instant::now();
    let mut readings: Vec<(std::time::Instant, (f64, f64))> = Vec::new();
    loop {
        match both_sending() {
            Some(sent) => readings.push((std::time::Instant::now(), sent)),
            None if !readings.is_empty() => break,
            None => assert!(started.elapsed() < Duration::from_secs(60), "the two migrations never sent together"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let ((t0, first), (t1, second)) = (readings[0], readings[readings.len() - 1]);
    let span = (t1 - t0).as_secs_f64();
    assert!(span >= 1.5, "both sent together for {span:.1} s only: {readings:?}");
    let (rate1, rate4) = ((second.0 - first.0) / span, (second.1 - first.1) / span);
    let out = common::wait_or_fail(migrate, "ferry migrate");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("together out of host-a ({link} MiB/s): vm-1 {rate1:.1} MiB/s, vm-4 {rate4:.1} MiB/s");

    // The journal: both succeeded, and their attempts overlapped for longer than the sample.
    let run = common::printed_run_id(&String::from_utf8_lossy(&out.stdout)).expect("a run id");
    let report = ferry(&["report", &run, "--state", common::path_str(&state), "--format", "json"]);
    let report: Value = serde_json::from_slice(&report.stdout).expect("the report");
    let span_of = |vm: &str| {
        let m = report["moves"].as_array().and_then(|m| m.iter().find(|m| m["vm"] == vm)).expect("the move");
        assert_eq!(m["status"], "SUCCESS", "{m:#}");
        (m["started_ms"].as_i64().expect("started"), m["ended_ms"].as_i64().expect("ended"))
    };
    let (one, four) = (span_of("vm-1"), span_of("vm-4"));
    let overlap_s = (one.1.min(four.1) - one.0.max(four.0)) as f64 / 1000.0;
    assert!(overlap_s > span, "the moves overlapped {overlap_s:.1} s: {one:?} and {four:?}");

    // Each got a share of the link while the other ran — neither starved, neither had it
    // all (ferry weighs the older migration twice the younger: 2/3 and 1/3) — and together
    // they used it and kept within it.
    for (vm, rate) in [("vm-1", rate1), ("vm-4", rate4)] {
        assert!(rate > 0.25 * link && rate < 0.75 * link, "{vm} sent {rate:.1} MiB/s of a {link} MiB/s link it shared");
    }
    let sum = rate1 + rate4;
    assert!(sum > link * 0.75 && sum < link * 1.15, "{rate1:.1} + {rate4:.1} MiB/s share one {link} MiB/s link");
    assert_eq!(lab.vm_status("vm-1")["running_on"], json!(["host-b"]));
    assert_eq!(lab.vm_status("vm-4")["running_on"], json!(["host-c"]));
    lab.check_ok();
}

/// What `vm`'s migration job on host-a has sent so far, MiB; none when it has no job.
fn processed_mib(lab: &TestLab, vm: &str) -> Option<f64> {
    let out = Command::new("virsh").arg("-c").arg(lab.uri("host-a")).args(["domjobinfo", vm]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("Data processed:"))?;
    let mut words = line["Data processed:".len()..].split_whitespace();
    let amount: f64 = words.next()?.parse().ok()?;
    let scale = match words.next()? {
        "B" => 1.0 / MIB,
        "KiB" => 1.0 / 1024.0,
        "MiB" => 1.0,
        "GiB" => 1024.0,
        _ => return None,
    };
    Some(amount * scale)
}
