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
fn two_migrations_leaving_one_host_share_its_link() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let link = 64.0;
    // vm-1 (host-local disk) and vm-4 (shared disk) both start on host-a.
    let lab = TestLab::up("link-share", 28_500, &["--hosts", "3", "--vms", "4", "--mem", "256", "--link", "64"]);
    lab.check_ok();

    let (one, four) = std::thread::scope(|scope| {
        let one = scope.spawn(|| lab.ferry_move(&["vm-1", "--to", "host-b"]));
        let four = scope.spawn(|| lab.ferry_move(&["vm-4", "--to", "host-c"]));
        (one.join().expect("move vm-1"), four.join().expect("move vm-4"))
    });
    for (code, summary) in [&one, &four] {
        assert_eq!(*code, Some(0), "{summary:#}");
        assert_eq!(summary["status"], json!("SUCCESS"), "{summary:#}");
    }
    let (rate1, rate4) = (job_rate(&one.1), job_rate(&four.1));
    eprintln!("together out of host-a ({link} MiB/s):\n  {}\n  {}", describe(&one.1), describe(&four.1));
    eprintln!("  sum {:.1} MiB/s", rate1 + rate4);

    // One move alone on an identical link, for comparison.
    let (code, alone) = lab.ferry_move(&["vm-4", "--to", "host-a"]);
    assert_eq!(code, Some(0), "{alone:#}");
    eprintln!("alone out of host-c ({link} MiB/s):\n  {}", describe(&alone));

    // Each stays under the link, and together they do not exceed it by more than the
    // stretch where one had it alone.
    assert!(rate1 < link * 1.1 && rate4 < link * 1.1, "{rate1:.1} and {rate4:.1} MiB/s on a {link} MiB/s link");
    assert!(rate1 + rate4 < link * 1.25, "{rate1:.1} + {rate4:.1} MiB/s share one {link} MiB/s link");
    assert!(job_rate(&alone) < link * 1.1, "{}", describe(&alone));
    lab.check_ok();
}
