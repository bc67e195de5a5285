//! ferry over the transports a fleet really uses, on labs brought up with them.
//!
//! `--transport tls`: every libvirtd verifies client certificates from the lab's CA and QEMU
//! refuses plaintext migration streams (`migrate_tls_force`), so every move that succeeds here
//! went over TLS; a plain `virsh migrate --live --p2p` is refused. Live moves with host-local
//! and shared disks, a cold move, a drain, its rollback and a cleanup after ferry died
//! mid-migration; bad client credentials (a missing key, a certificate from another CA) end
//! FAILURE-INIT naming host and file, with nothing changed. `--transport ssh`: a live move and
//! a drain. Every test ends with `ferry lab check` passing and every VM running on exactly one
//! host, defined on no other.
//!
//! Port blocks 1500 (tls) and 3000 (ssh): one lab each, so both tests may run at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{path_str, wait_for_line, TestLab};
use ferry_journal::{Journal, JournalConfig};
use serde_json::json;

/// The TLS lab's port block.
const TLS_PORTS: u16 = 1_500;
/// The ssh lab's port block.
const SSH_PORTS: u16 = 3_000;
/// What ferry's live driver says of a TLS migration stream (crates/libvirt/src/live.rs).
const TLS_STREAM: &str = "migration stream over TLS";

/// `ferry ARGS --cluster CLUSTER --state LAB/journal.db`: (exit code, stdout + stderr).
fn ferry_in(lab: &TestLab, cluster: &Path, args: &[&str]) -> (Option<i32>, String) {
    let state = lab.dir.join("journal.db");
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--cluster", path_str(cluster), "--state", path_str(&state)]);
    let out = common::ferry(&full);
    (out.status.code(), format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `ferry move VM ... --output json` with a cluster file and the lab's journal: (exit code,
/// summary).
fn move_with(lab: &TestLab, cluster: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let state = lab.dir.join("journal.db");
    lab.ferry_move_with(cluster, &["--state", path_str(&state)], args)
}

fn run_id(text: &str) -> String {
    common::printed_run_id(text).unwrap_or_else(|| panic!("no run id printed:\n{text}"))
}

/// The driver's messages journaled for `run`, every VM's.
fn run_messages(lab: &TestLab, run: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal =
        rt.block_on(Journal::open_path(&lab.dir.join("journal.db"), &JournalConfig::default())).expect("journal opens");
    rt.block_on(journal.events(run, None)).expect("events").into_iter().map(|e| e.message).collect()
}

/// Every guest runs on exactly one host and is defined on no other.
fn assert_each_vm_once(lab: &TestLab) {
    let status = lab.status_json();
    for vm in status["vms"].as_array().expect("vms") {
        assert_eq!(vm["running_on"].as_array().map(Vec::len), Some(1), "{vm:#}");
        assert_eq!(vm["defined_on"], json!([]), "{vm:#}");
        assert_eq!(vm["paused_on"], json!([]), "{vm:#}");
    }
}

/// The host a guest runs on.
fn host_of(lab: &TestLab, vm: &str) -> String {
    let running = lab.vm_status(vm)["running_on"].clone();
    match running.as_array().map(Vec::as_slice) {
        Some([one]) => one.as_str().expect("a host name").to_string(),
        _ => panic!("{vm} runs on {running}"),
    }
}

/// A copy of the lab's cluster file in which `host`'s URI reads its client credentials from
/// `pki` instead of the lab's.
fn cluster_with_pki(lab: &TestLab, host: &str, pki: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.dir.join("cluster.toml")).expect("cluster file");
    let client = ferry_lab::pki::client_dir(&lab.dir);
    let start = text.find(&format!("name = \"{host}\"")).expect("the host is in the cluster file");
    let (before, after) = text.split_at(start);
    let after = after.replacen(&format!("pkipath={}", client.display()), &format!("pkipath={}", pki.display()), 1);
    let path = lab.dir.join(name);
    std::fs::write(&path, format!("{before}{after}")).expect("write a cluster file");
    path
}

/// A client credentials directory like the lab's, with `change` applied.
fn client_pki_with(lab: &TestLab, name: &str, change: impl FnOnce(&Path)) -> PathBuf {
    let dir = lab.dir.join(name);
    std::fs::create_dir_all(&dir).expect("create a pki dir");
    for file in ["cacert.pem", "clientcert.pem", "clientkey.pem"] {
        std::fs::copy(ferry_lab::pki::client_dir(&lab.dir).join(file), dir.join(file)).expect("copy");
    }
    change(&dir);
    dir
}

#[test]
fn over_tls_every_move_kind_works_plaintext_is_refused_and_bad_credentials_change_nothing() {
    let started = Instant::now();
    let lab =
        TestLab::up("transport-tls", TLS_PORTS, &["--transport", "tls", "--hosts", "3", "--vms", "4", "--mem", "96"]);
    let up_s = started.elapsed().as_secs_f64();
    let cluster = lab.dir.join("cluster.toml");
    let text = std::fs::read_to_string(&cluster).expect("cluster file");
    assert_eq!(text.matches("uri = \"qemu+tls://").count(), 3, "{text}");
    // vm-1 (host-local disk) and vm-4 (shared) on host-a, vm-2 (shared) on host-b, vm-3
    // (host-local) on host-c.
    assert_eq!(host_of(&lab, "vm-2"), "host-b");

    // A plain peer-to-peer migration, as an operator would type it, is refused by the source
    // and changes nothing.
    let uuids = lab.uuids();
    let qemu2 = common::qemu_pid(&uuids[1]).expect("vm-2's QEMU");
    let out = Command::new("virsh")
        .args(["-c", &lab.uri("host-b"), "migrate", "--live", "--p2p", "--persistent", "--undefinesource"])
        .args(["vm-2", &lab.uri("host-c"), "--migrateuri", "tcp://127.0.0.1"])
        .output()
        .expect("virsh runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a plaintext migration went through");
    assert!(said.contains("allows migration only with VIR_MIGRATE_TLS"), "{said}");
    assert_eq!(host_of(&lab, "vm-2"), "host-b");
    assert_eq!(common::qemu_pid(&uuids[1]), Some(qemu2), "vm-2's QEMU was not touched");

    // Bad client credentials for the target: FAILURE-INIT, exit 1, the reason names the host
    // and the file, and nothing changed on either host.
    let xml_before = lab.virsh("host-b", &["dumpxml", "vm-2"]);
    let pools_before = (lab.pool_files("host-b"), lab.pool_files("host-c"));
    let no_key = client_pki_with(&lab, "pki-no-key", |dir| {
        std::fs::remove_file(dir.join("clientkey.pem")).expect("remove the key");
    });
    let foreign = client_pki_with(&lab, "pki-foreign", |dir| {
        let (cert, key) = ferry_lab::pki::foreign_client().expect("another CA issues");
        ferry_lab::pki::write_file(&dir.join("clientcert.pem"), &cert, false).expect("write");
        ferry_lab::pki::write_file(&dir.join("clientkey.pem"), &key, true).expect("write");
    });
    for (pki, file, words) in [
        (&no_key, "clientkey.pem", "cannot read its TLS client key"),
        (&foreign, "clientcert.pem", "failed validation against"),
    ] {
        let bad = cluster_with_pki(&lab, "host-c", pki, "bad-cluster.toml");
        let (code, summary) = move_with(&lab, &bad, &["vm-2", "--to", "host-c"]);
        assert_eq!(code, Some(1), "{summary:#}");
        assert_eq!(summary["status"], json!("FAILURE-INIT"), "{summary:#}");
        let reason = summary["reason"].as_str().expect("a reason");
        assert!(reason.contains("host-c"), "names the host: {reason}");
        assert!(reason.contains(path_str(&pki.join(file))), "names the file: {reason}");
        assert!(reason.contains(words), "{reason}");
        assert_eq!(lab.virsh("host-b", &["dumpxml", "vm-2"]), xml_before, "domain untouched");
        assert_eq!((lab.pool_files("host-b"), lab.pool_files("host-c")), pools_before, "no volume created");
        assert_eq!(common::qemu_pid(&uuids[1]), Some(qemu2), "vm-2's QEMU was not touched");
    }

    // Live, host-local disk copied, then live with a shared disk: both over TLS.
    let live_started = Instant::now();
    let (code, summary) = move_with(&lab, &cluster, &["vm-1", "--to", "host-b"]);
    let live_local_s = live_started.elapsed().as_secs_f64();
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"), "{summary:#}");
    assert!(summary["messages"].to_string().contains(TLS_STREAM), "{summary:#}");
    assert!(summary["created_volumes"].to_string().contains("vm-1.qcow2"), "{summary:#}");
    let (code, summary) = move_with(&lab, &cluster, &["vm-2", "--to", "host-c"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"), "{summary:#}");
    assert!(summary["messages"].to_string().contains(TLS_STREAM), "{summary:#}");
    assert_eq!(summary["created_volumes"], json!([]), "a shared disk is not copied: {summary:#}");
    assert_eq!((host_of(&lab, "vm-1"), host_of(&lab, "vm-2")), ("host-b".into(), "host-c".into()));

    // Cold: shut down, its disk copied through libvirt streams over the TLS connections,
    // started on the target.
    let (code, summary) = move_with(&lab, &cluster, &["vm-3", "--to", "host-a", "--cold", "--shutdown-timeout", "2"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS-COLD"), "{summary:#}");
    assert!(summary["messages"].to_string().contains("through libvirt streams (tls connections)"), "{summary:#}");
    assert_eq!(host_of(&lab, "vm-3"), "host-a");

    // A drain of host-a (vm-3 and vm-4) to host-b (host-c keeps the cold move's source copy
    // of vm-3's disk), then its rollback: every move a TLS stream.
    let (code, text) = ferry_in(&lab, &cluster, &["drain", "host-a", "--to", "host-b"]);
    assert_eq!(code, Some(0), "{text}");
    let drain = run_id(&text);
    assert!(lab.status_json()["hosts"][0]["running"].as_array().is_some_and(Vec::is_empty), "host-a is empty");
    let said = run_messages(&lab, &drain);
    assert_eq!(said.iter().filter(|m| m.as_str() == TLS_STREAM).count(), 2, "{said:#?}");
    let (code, text) = ferry_in(&lab, &cluster, &["rollback", &drain]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!((host_of(&lab, "vm-3"), host_of(&lab, "vm-4")), ("host-a".into(), "host-a".into()), "{text}");
    let back = run_id(&text);
    let said = run_messages(&lab, &back);
    assert_eq!(said.iter().filter(|m| m.as_str() == TLS_STREAM).count(), 2, "{said:#?}");

    // ferry dies (SIGKILL) in the middle of vm-1's TLS migration, slowed to 1 MiB/s; libvirt
    // goes on with it. Cleanup from the hypervisors, over TLS, aborts the job nobody owns and
    // removes the target's incoming copy and the volume created for it.
    let uuid1 = uuids[0].clone();
    let qemu1 = common::qemu_pid(&uuid1).expect("vm-1's QEMU");
    let slow = lab.dir.join("slow-cluster.toml");
    let text: Vec<String> = std::fs::read_to_string(&cluster)
        .expect("cluster file")
        .lines()
        .map(|l| if l.starts_with("link_mib_s") { "link_mib_s = 1".into() } else { l.to_string() })
        .collect();
    std::fs::write(&slow, text.join("\n")).expect("write cluster");
    let state = lab.dir.join("journal.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["move", "vm-1", "--to", "host-c", "--cluster", path_str(&slow), "--state", path_str(&state)])
        .env("FERRY_FAILPOINT", "transferring:vm-1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry runs");
    wait_for_line(&mut child, "failpoint transferring vm-1", Duration::from_secs(120));
    // Killed once the target holds the incoming copy.
    lab.wait_incoming("vm-1", "host-c");
    common::kill9(child.id());
    let _ = child.wait();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.vm_status("vm-1")["paused_on"], json!(["host-c"]), "the migration goes on without ferry");
    let (code, text) = ferry_in(&lab, &slow, &["cleanup", "--vm", "vm-1", "--from-hypervisor"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("- abort the migration job still running on host-b"), "{text}");
    assert!(text.contains("- remove the paused copy on host-c"), "{text}");
    assert!(!lab.pool_files("host-c").contains(&"vm-1.qcow2".to_string()), "{text}");
    assert_eq!(common::qemu_pid(&uuid1), Some(qemu1), "vm-1 stayed where it ran");
    assert_eq!(host_of(&lab, "vm-1"), "host-b");

    assert_each_vm_once(&lab);
    lab.check_ok_with(&["--allow-restart", "vm-3"]);
    println!("tls lab up {up_s:.1} s; live move with a copied disk {live_local_s:.1} s");
}

#[test]
fn over_ssh_a_live_move_and_a_drain_work() {
    let started = Instant::now();
    let lab =
        TestLab::up("transport-ssh", SSH_PORTS, &["--transport", "ssh", "--hosts", "2", "--vms", "3", "--mem", "96"]);
    let up_s = started.elapsed().as_secs_f64();
    let cluster = lab.dir.join("cluster.toml");
    let text = std::fs::read_to_string(&cluster).expect("cluster file");
    assert_eq!(text.matches("uri = \"qemu+libssh2://root@").count(), 2, "{text}");
    // Every host's sshd runs from the lab's own config.
    for host in ["host-a", "host-b"] {
        let config = lab.dir.join("hosts").join(host).join("ssh").join("sshd_config");
        let pids = common::processes_under(&config, &[]);
        assert_eq!(pids.len(), 1, "one sshd for {host}: {pids:?}");
    }

    let (code, summary) = move_with(&lab, &cluster, &["vm-1", "--to", "host-b"]);
    assert_eq!(code, Some(0), "{summary:#}");
    assert_eq!(summary["status"], json!("SUCCESS"), "{summary:#}");
    assert!(!summary["messages"].to_string().contains(TLS_STREAM), "ssh hosts are not TLS hosts: {summary:#}");
    assert_eq!(host_of(&lab, "vm-1"), "host-b");

    // host-a keeps vm-3 (host-local disk): the drain sends it to host-b. (vm-1 could not
    // go back to host-a: its move kept the source's copy of its disk there.)
    let (code, text) = ferry_in(&lab, &cluster, &["drain", "host-a", "--to", "ANY"]);
    assert_eq!(code, Some(0), "{text}");
    for vm in ["vm-1", "vm-2", "vm-3"] {
        assert_eq!(host_of(&lab, vm), "host-b", "{text}");
    }
    assert_each_vm_once(&lab);
    lab.check_ok();
    println!("ssh lab up {up_s:.1} s");
}
