//! Putting everything back, on real labs: a drain that returns after a hook, a rollback
//! after a partial failure, cleanup of a constructed split state, and a rollback from the
//! hypervisors' metadata after the journal was deleted. Every test ends with `ferry lab
//! check` passing and every VM running exactly once, where it started.
//!
//! Two port blocks (9000 and 10000) are shared by the four tests: a lock per block lets
//! at most two labs run at once (`--test-threads 2`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{path_str, wait_for_line, TestLab};
use ferry_journal::{Journal, JournalConfig, Move, Run, RunKind};
use ferry_model::Status;

static BLOCK_9000: Mutex<()> = Mutex::new(());
static BLOCK_10000: Mutex<()> = Mutex::new(());

/// A lab with its journal and plans in its directory, holding its port block.
struct BackLab {
    lab: TestLab,
    // Dropped after the lab: the block is free only once the lab is down.
    _block: MutexGuard<'static, ()>,
}

impl BackLab {
    fn up(name: &str, port_base: u16, args: &[&str]) -> BackLab {
        let block = match port_base {
            9_000 => &BLOCK_9000,
            10_000 => &BLOCK_10000,
            other => panic!("port base {other}: these tests use 9000 and 10000 only"),
        };
        let guard = block.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        BackLab { lab: TestLab::up(name, port_base, args), _block: guard }
    }

    fn state(&self) -> PathBuf {
        self.lab.dir.join("journal.db")
    }

    fn cluster(&self) -> PathBuf {
        self.lab.dir.join("cluster.toml")
    }

    fn plan(&self, name: &str, text: &str) -> PathBuf {
        let path = self.lab.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write plan");
        path
    }

    /// `ferry ARGS --cluster C --state S`: (exit code, stdout + stderr).
    fn ferry(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut full: Vec<&str> = args.to_vec();
        let (cluster, state) = (self.cluster(), self.state());
        full.extend(["--cluster", path_str(&cluster), "--state", path_str(&state)]);
        let out = common::ferry(&full);
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    /// `ferry report RUN --state S`: (exit code, stdout + stderr).
    fn report(&self, run: &str) -> (Option<i32>, String) {
        let state = self.state();
        let out = common::ferry(&["report", run, "--state", path_str(&state)]);
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    fn journal(&self) -> (tokio::runtime::Runtime, Journal) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let journal = rt.block_on(Journal::open_path(&self.state(), &JournalConfig::default())).expect("journal opens");
        (rt, journal)
    }

    fn runs(&self) -> Vec<Run> {
        let (rt, journal) = self.journal();
        rt.block_on(journal.runs()).expect("runs")
    }

    fn moves(&self, run: &str) -> Vec<Move> {
        let (rt, journal) = self.journal();
        rt.block_on(journal.moves(run)).expect("moves")
    }

    /// The only run whose parent is `run`.
    fn child(&self, run: &str) -> Run {
        let children: Vec<Run> = self.runs().into_iter().filter(|r| r.parent.as_deref() == Some(run)).collect();
        assert_eq!(children.len(), 1, "one run linked to {run}: {children:#?}");
        children.into_iter().next().expect("one")
    }

    /// Each guest's (name, uuid, hosts it runs on), sorted by name.
    fn placement(&self) -> Vec<(String, String, Vec<String>)> {
        let status = self.lab.status_json();
        let mut vms: Vec<(String, String, Vec<String>)> = status["vms"]
            .as_array()
            .expect("vms")
            .iter()
            .map(|v| {
                let running: Vec<String> = serde_json::from_value(v["running_on"].clone()).expect("running_on");
                (v["name"].as_str().expect("name").to_string(), v["uuid"].as_str().expect("uuid").to_string(), running)
            })
            .collect();
        vms.sort();
        vms
    }

    /// Every guest runs exactly once, where `before` had it, with the same UUID.
    fn assert_home(&self, before: &[(String, String, Vec<String>)]) {
        assert_eq!(self.placement(), before, "every VM runs exactly once on its original host");
    }

    fn uri(&self, host: &str) -> String {
        self.lab.uri(host)
    }
}

fn run_id(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("run "))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no run id printed:\n{text}"))
}

fn status_of(moves: &[Move], vm: &str) -> Move {
    moves.iter().find(|m| m.vm == vm).unwrap_or_else(|| panic!("{vm} in {moves:#?}")).clone()
}

#[test]
fn a_drain_returns_every_vm_after_its_hook_ran_on_the_empty_host() {
    let lab = BackLab::up("back-drain", 9_000, &["--hosts", "3", "--vms", "4", "--mem", "96"]);
    let before = lab.placement();
    let on_a: Vec<String> = before.iter().filter(|(_, _, h)| h == &["host-a"]).map(|(n, _, _)| n.clone()).collect();
    assert_eq!(on_a.len(), 2, "the lab puts two guests on host-a: {before:?}");
    let marker = lab.lab.dir.join("marker");
    // The hook proves the host was empty when it ran: it lists host-a's domains.
    let hook = format!(
        "echo \"hook for $FERRY_HOST ($FERRY_VMS), run $FERRY_RUN_ID\" > {m}; virsh -c {uri} list --all --name >> {m}",
        m = path_str(&marker),
        uri = lab.uri("host-a")
    );
    let (code, text) = lab.ferry(&["drain", "host-a", "--to", "ANY", "--return-after", &hook]);
    assert_eq!(code, Some(0), "{text}");
    let drain = run_id(&text);

    let written = std::fs::read_to_string(&marker).expect("the hook wrote its marker");
    let mut lines = written.lines();
    let first = lines.next().expect("a first line");
    assert!(first.starts_with("hook for host-a (") && first.ends_with(&format!("run {drain}")), "{written}");
    for vm in &on_a {
        assert!(first.contains(vm.as_str()), "FERRY_VMS names {vm}: {written}");
    }
    assert!(lines.all(|l| l.trim().is_empty()), "host-a had no domain when the hook ran: {written}");

    // Both legs in the journal: the drain, then its return as a rollback run.
    let runs = lab.runs();
    assert_eq!(runs.iter().find(|r| r.id == drain).expect("drain run").kind, RunKind::Drain);
    let away = lab.moves(&drain);
    assert_eq!(away.len(), 2, "{away:#?}");
    for m in &away {
        assert_eq!(m.status, Status::Success, "{m:#?}");
        assert_ne!(m.target.as_deref(), Some("host-a"), "{m:#?}");
    }
    let back = lab.child(&drain);
    assert_eq!(back.kind, RunKind::Rollback);
    let returned = lab.moves(&back.id);
    assert_eq!(returned.len(), 2, "{returned:#?}");
    for m in &returned {
        assert_eq!(m.status, Status::RolledBack, "{m:#?}");
        assert_eq!(m.target.as_deref(), Some("host-a"));
        assert_eq!(Some(m.source.as_str()), status_of(&away, &m.vm).target.as_deref(), "came back from where it went");
    }
    lab.assert_home(&before);

    // The report of the drain shows the hook and both legs.
    let (code, report) = lab.report(&drain);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("drain hook on host-a: `echo"), "{report}");
    assert!(report.contains(&format!("undone by run {} (rollback)", back.id)), "{report}");
    assert_eq!(report.matches("ROLLED-BACK").count(), 2 + 1, "two VMs and the counts line: {report}");

    // Rolling the drain back again finds everything home: no new run.
    let (code, text) = lab.ferry(&["rollback", &drain]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nothing to roll back"), "{text}");
    assert_eq!(lab.runs().len(), runs.len(), "no run was created");
    lab.assert_home(&before);

    // Ctrl-C while the hook runs (in a process group of its own, which the terminal's
    // SIGINT does not reach): ferry asks it to end, the run stops there, nothing returns.
    // host-b this time: host-a's guests left copies of their disks where they went.
    let trapped = lab.lab.dir.join("trapped");
    let hook =
        format!("trap 'echo TERM > {t}; exit 1' TERM; echo started > {t}; sleep 120 & wait", t = path_str(&trapped));
    let (cluster, state) = (lab.cluster(), lab.state());
    // host-b drained with the hook, once it has started: the child, its run (the newest).
    let drain_until_the_hook = || {
        let _ = std::fs::remove_file(&trapped);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["drain", "host-b", "--to", "ANY", "--return-after", &hook])
            .args(["--cluster", path_str(&cluster), "--state", path_str(&state)])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferry runs");
        let waiting = Instant::now();
        while std::fs::read_to_string(&trapped).unwrap_or_default().trim() != "started" {
            assert!(waiting.elapsed() < Duration::from_secs(120), "the hook did not start in 120 s");
            if child.try_wait().expect("wait").is_some() {
                let out = child.wait_with_output().expect("output");
                panic!("ferry ended before its hook:\n{}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let run = lab.runs().into_iter().max_by_key(|r| r.created_ms).expect("the drain's run").id;
        (child, run)
    };
    // The drain stopped at its hook by `by` since `asked`: exit 1 soon after, the hook asked
    // to end, the run stopped there with nothing returned and host-b drained; then rolled
    // back, every guest home. Its output.
    let stopped_at_the_hook = |child: std::process::Child, stopped: &str, asked: Instant, by: &str| {
        let out = child.wait_with_output().expect("ferry ends");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(asked.elapsed() < Duration::from_secs(10), "ended {:?} after {by}: {text}", asked.elapsed());
        assert_eq!(std::fs::read_to_string(&trapped).unwrap_or_default().trim(), "TERM", "the hook was asked to end");
        let said = format!("host-b: its hook was stopped by {by}: nothing more happens in this run");
        assert!(text.contains(&said), "{text}");
        assert!(lab.runs().iter().all(|r| r.parent.as_deref() != Some(stopped)), "no return started");
        assert!(lab.placement().iter().all(|(_, _, hosts)| hosts != &["host-b"]), "host-b stays drained");
        let (code, back) = lab.ferry(&["rollback", stopped]);
        assert_eq!(code, Some(0), "{back}");
        lab.assert_home(&before);
        text
    };
    let (child, stopped) = drain_until_the_hook();
    let interrupted = Instant::now();
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    let text = stopped_at_the_hook(child, &stopped, interrupted, "Ctrl-C");
    assert_eq!(run_id(&text), stopped, "the newest run is the drain's");

    // `ferry abort RUN` from another terminal while the hook runs: the same.
    let (child, stopped) = drain_until_the_hook();
    let aborted = Instant::now();
    let out = common::ferry(&["abort", &stopped, "--state", path_str(&state)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stopped_at_the_hook(child, &stopped, aborted, "`ferry abort`");
    lab.lab.check_ok();
}

#[test]
fn a_rollback_after_a_partial_failure_and_a_crash_returns_the_moved_and_leaves_the_failed_untouched() {
    let lab = BackLab::up("back-partial", 10_000, &["--hosts", "3", "--vms", "3", "--mem", "96"]);
    let before = lab.placement();
    // vm-3 (host-c) has a host-local disk; a volume of its name in host-a's pool makes its
    // move there fail before anything is touched (ferry never overwrites a volume).
    lab.lab.virsh("host-a", &["vol-create-as", "local", "vm-3.qcow2", "16M", "--format", "qcow2"]);
    let uuid3 = before.iter().find(|(n, _, _)| n == "vm-3").expect("vm-3").1.clone();
    let qemu3 = common::qemu_pid(&uuid3).expect("vm-3's QEMU");
    let plan = lab.plan(
        "partial",
        "[plan]\nname = \"partial\"\n[[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n[[move]]\nvm = \"vm-2\"\nto = \"host-c\"\n[[move]]\nvm = \"vm-3\"\nto = \"host-a\"\n",
    );
    let (code, text) = lab.ferry(&["migrate", path_str(&plan), "--ignore", "volumes"]);
    assert_eq!(code, Some(1), "{text}");
    let run = run_id(&text);
    let moves = lab.moves(&run);
    assert_eq!(status_of(&moves, "vm-1").status, Status::Success, "{moves:#?}");
    assert_eq!(status_of(&moves, "vm-2").status, Status::Success, "{moves:#?}");
    assert_eq!(status_of(&moves, "vm-3").status, Status::FailureInit, "{moves:#?}");

    // A dry run says what it would do and changes nothing.
    let moved = lab.placement();
    let (code, text) = lab.ferry(&["rollback", &run, "--dry-run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("vm-1: host-b -> host-a") && text.contains("vm-2: host-c -> host-b"), "{text}");
    assert!(text.contains("vm-3: already on host-c"), "{text}");
    assert!(text.contains("would delete local/vm-1.qcow2 on host-a"), "the copy vm-1's move kept: {text}");
    assert_eq!(lab.runs().len(), 1, "a dry run creates no run");
    assert_eq!(lab.placement(), moved);

    // The rollback's ferry dies (SIGKILL) once vm-2 is back and vm-1's migration has
    // completed but is not yet recorded; running the rollback again settles the dead run
    // (vm-1 adopted where it arrived) and finds nothing left to move.
    let (cluster, state) = (lab.cluster(), lab.state());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["rollback", &run, "--cluster", path_str(&cluster), "--state", path_str(&state)])
        .env("FERRY_FAILPOINT", "completed:vm-1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry runs");
    wait_for_line(&mut child, "failpoint completed vm-1", Duration::from_secs(120));
    let started = Instant::now();
    while !lab
        .runs()
        .iter()
        .filter(|r| r.parent.as_deref() == Some(run.as_str()))
        .any(|r| lab.moves(&r.id).iter().any(|m| m.vm == "vm-2" && m.status == Status::RolledBack))
    {
        assert!(started.elapsed() < Duration::from_secs(120), "vm-2 did not come back");
        std::thread::sleep(Duration::from_millis(250));
    }
    common::kill9(child.id());
    let _ = child.wait();
    let (code, text) = lab.ferry(&["rollback", &run]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("did not finish and no ferry runs it: it is aborted first"), "{text}");
    assert!(text.contains("nothing to roll back"), "{text}");
    let back = lab.child(&run);
    assert_eq!(back.kind, RunKind::Rollback);
    let returned = lab.moves(&back.id);
    assert_eq!(returned.len(), 2, "vm-3 never moved, so it is not in the rollback: {returned:#?}");
    for m in &returned {
        assert_eq!(m.status, Status::RolledBack, "{m:#?}");
    }
    lab.assert_home(&before);
    assert_eq!(common::qemu_pid(&uuid3), Some(qemu3), "vm-3's QEMU was never touched");

    // Idempotent: a second rollback has nothing to do.
    let (code, text) = lab.ferry(&["rollback", &run]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nothing to roll back"), "{text}");
    assert_eq!(lab.runs().len(), 2);

    // vm-3's move could not start, so it created nothing: cleanup does not take the volume
    // that stopped it for a leftover of that move.
    let (code, text) = lab.ferry(&["cleanup", &run]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("kept: local/vm-3.qcow2 on host-a, a copy of vm-3's disk vda on a host it does not run on"),
        "{text}"
    );
    assert!(lab.lab.pool_files("host-a").contains(&"vm-3.qcow2".to_string()), "{text}");
    lab.assert_home(&before);
    lab.lab.check_ok();
}

#[test]
fn cleanup_removes_a_stale_paused_copy_and_leftover_volumes_and_leaves_the_live_vm_alone() {
    let lab = BackLab::up("back-cleanup", 9_000, &["--hosts", "3", "--vms", "3", "--mem", "96"]);
    let before = lab.placement();
    let uuid1 = before.iter().find(|(n, _, _)| n == "vm-1").expect("vm-1").1.clone();
    let live = common::qemu_pid(&uuid1).expect("vm-1's QEMU");

    // The split state a failed move can leave: on host-c, a volume for vm-1's disk and a
    // paused vm-1 defined on it.
    let info = lab.lab.virsh("host-a", &["vol-info", "--bytes", "--pool", "local", "vm-1.qcow2"]);
    let capacity = info
        .lines()
        .find_map(|l| l.strip_prefix("Capacity:"))
        .and_then(|c| c.split_whitespace().next())
        .expect("a capacity")
        .to_string();
    lab.lab.virsh("host-c", &["vol-create-as", "local", "vm-1.qcow2", &capacity, "--format", "qcow2"]);
    let xml = lab.lab.virsh("host-a", &["dumpxml", "--inactive", "vm-1"]);
    let (pool_a, pool_c) = (lab.lab.dir.join("hosts/host-a/pool"), lab.lab.dir.join("hosts/host-c/pool"));
    assert!(xml.contains(path_str(&pool_a)), "vm-1's disk is in host-a's pool: {xml}");
    let copy = lab.lab.dir.join("vm-1-copy.xml");
    std::fs::write(&copy, xml.replace(path_str(&pool_a), path_str(&pool_c))).expect("write XML");
    lab.lab.virsh("host-c", &["define", path_str(&copy)]);
    lab.lab.virsh("host-c", &["start", "--paused", "vm-1"]);
    let check = common::ferry(&["lab", "check", "--dir", lab.lab.dir_str()]);
    assert!(!check.status.success(), "lab check sees the split state");

    let (code, text) = lab.ferry(&["cleanup", "--vm", "vm-1", "--dry-run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("vm-1: running on host-a"), "{text}");
    assert!(text.contains("would remove the paused copy on host-c: the VM runs on host-a"), "{text}");
    assert!(text.contains("would delete local/vm-1.qcow2 on host-c"), "{text}");
    assert!(lab.lab.virsh("host-c", &["list", "--all", "--name"]).contains("vm-1"), "dry run: the copy is still there");
    assert!(lab.lab.pool_files("host-c").contains(&"vm-1.qcow2".to_string()), "dry run: the volume is still there");

    let (code, text) = lab.ferry(&["cleanup", "--vm", "vm-1"]);
    assert_eq!(code, Some(0), "{text}");
    let remove = text.find("- remove the paused copy on host-c").expect("the removal printed");
    let done = text.find("done: powered off the paused copy on host-c").expect("and done");
    assert!(remove < done, "printed before it is done: {text}");
    assert!(!lab.lab.virsh("host-c", &["list", "--all", "--name"]).contains("vm-1"), "{text}");
    assert!(!lab.lab.pool_files("host-c").contains(&"vm-1.qcow2".to_string()), "{text}");
    assert!(lab.lab.pool_files("host-a").contains(&"vm-1.qcow2".to_string()), "the live VM's disk stays");
    assert_eq!(common::qemu_pid(&uuid1), Some(live), "the live VM was not touched");
    let (code, text) = lab.ferry(&["cleanup", "--vm", "vm-1"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("vm-1: running on host-a; nothing to clean up"), "{text}");
    lab.assert_home(&before);

    // ferry dies (SIGKILL) in the middle of vm-3's migration, slowed to 1 MiB/s; libvirt
    // goes on with it. Cleanup from the hypervisors alone aborts the job nobody owns, and
    // removes the target's incoming copy and the volume created for it.
    let uuid3 = before.iter().find(|(n, _, _)| n == "vm-3").expect("vm-3").1.clone();
    let qemu3 = common::qemu_pid(&uuid3).expect("vm-3's QEMU");
    let text = std::fs::read_to_string(lab.cluster()).expect("cluster file");
    let slow = lab.lab.dir.join("slow-cluster.toml");
    let text: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with("link_mib_s") { "link_mib_s = 1".into() } else { l.to_string() })
        .collect();
    std::fs::write(&slow, text.join("\n")).expect("write cluster");
    let plan = lab.plan("slow", "[plan]\nname = \"slow\"\n[[move]]\nvm = \"vm-3\"\nto = \"host-b\"\n");
    let state = lab.state();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["migrate", path_str(&plan), "--cluster", path_str(&slow), "--state", path_str(&state)])
        .env("FERRY_FAILPOINT", "transferring:vm-3")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry runs");
    wait_for_line(&mut child, "failpoint transferring vm-3", Duration::from_secs(120));
    // Killed once the target holds the incoming copy.
    lab.lab.wait_incoming("vm-3", "host-b");
    common::kill9(child.id());
    let _ = child.wait();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lab.lab.vm_status("vm-3")["paused_on"],
        serde_json::json!(["host-b"]),
        "the migration goes on without ferry"
    );
    let out = common::ferry(&["cleanup", "--vm", "vm-3", "--from-hypervisor", "--cluster", path_str(&slow)]);
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("- abort the migration job still running on host-c")
            && text.contains("done: the job on host-c ended"),
        "{text}"
    );
    assert!(text.contains("- remove the paused copy on host-b"), "{text}");
    assert!(text.contains("- delete local/vm-3.qcow2 on host-b: the stale copy there used it"), "{text}");
    assert!(!lab.lab.pool_files("host-b").contains(&"vm-3.qcow2".to_string()), "{text}");
    assert_eq!(common::qemu_pid(&uuid3), Some(qemu3), "vm-3 stayed where it ran");
    lab.assert_home(&before);

    // A successful move keeps the source's copy of a host-local disk; cleanup names it and
    // deletes it only when asked.
    let plan = lab.plan("away", "[plan]\nname = \"away\"\n[[move]]\nvm = \"vm-3\"\nto = \"host-b\"\n");
    let (code, text) = lab.ferry(&["migrate", path_str(&plan)]);
    assert_eq!(code, Some(0), "{text}");
    let run = run_id(&text);
    let (code, text) = lab.ferry(&["cleanup", &run]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("kept: the source copy of local/vm-3.qcow2 on host-c, kept after run {run}'s move")),
        "{text}"
    );
    assert!(lab.lab.pool_files("host-c").contains(&"vm-3.qcow2".to_string()));
    let (code, text) = lab.ferry(&["cleanup", &run, "--source-volumes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!lab.lab.pool_files("host-c").contains(&"vm-3.qcow2".to_string()), "{text}");
    assert!(lab.lab.pool_files("host-b").contains(&"vm-3.qcow2".to_string()), "vm-3's disk now is on host-b");
    lab.lab.check_ok();
}

#[test]
fn a_rollback_from_the_hypervisors_metadata_needs_no_journal() {
    let lab = BackLab::up("back-metadata", 10_000, &["--hosts", "3", "--vms", "3", "--mem", "96"]);
    let before = lab.placement();
    let plan = lab.plan(
        "around",
        "[plan]\nname = \"around\"\n[[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n[[move]]\nvm = \"vm-2\"\nto = \"host-c\"\n[[move]]\nvm = \"vm-3\"\nto = \"host-a\"\n",
    );
    let (code, text) = lab.ferry(&["migrate", path_str(&plan)]);
    assert_eq!(code, Some(0), "{text}");
    let run = run_id(&text);
    assert!(lab.placement().iter().zip(&before).all(|(now, then)| now.2 != then.2), "every VM moved");

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path_str(&lab.state())));
    }
    let (code, text) = lab.ferry(&["rollback", &run]);
    assert_eq!(code, Some(2), "without the journal the run is unknown: {text}");
    let (code, text) = lab.ferry(&["rollback", &run, "--from-hypervisor"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("3 VMs carry ferry's metadata of run {run}")), "{text}");
    lab.assert_home(&before);
    let runs = lab.runs();
    assert_eq!(runs.len(), 1, "the new journal holds the rollback only: {runs:#?}");
    assert_eq!((runs[0].kind, runs[0].parent.as_deref()), (RunKind::Rollback, None));
    let moves = lab.moves(&runs[0].id);
    assert_eq!(moves.len(), 3);
    assert!(moves.iter().all(|m| m.status == Status::RolledBack), "{moves:#?}");

    // The metadata now names the rollback: a second rollback of the run finds nothing.
    let (code, text) = lab.ferry(&["rollback", &run, "--from-hypervisor"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nothing to roll back") || text.contains("0 VMs carry"), "{text}");
    assert_eq!(lab.runs().len(), 1);
    lab.assert_home(&before);
    lab.lab.check_ok();
}

#[test]
fn hooks_run_around_the_run_and_each_move_and_their_failure_policy_holds() {
    let lab = BackLab::up("back-hooks", 9_000, &["--hosts", "3", "--vms", "3", "--mem", "96"]);
    let log = lab.lab.dir.join("hooks.log");
    let log = path_str(&log);
    let plan = lab.plan(
        "warned",
        &format!(
            "[plan]\nname = \"warned\"\n[limits]\ncluster = 1\n\
             [policy]\ndelete_source_volumes = true\n\
             [hooks]\npre_run = \"echo pre-run $FERRY_RUN_ID >> {log}\"\npost_run = \"echo post-run >> {log}\"\n\
             pre_move = \"echo pre-move $FERRY_VM $FERRY_FROM $FERRY_TO >> {log}\"\npost_move = \"echo post-move $FERRY_VM >> {log}\"\n\
             on_failure = \"warn\"\n\
             [[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n\
             [[move]]\nvm = \"vm-2\"\nto = \"host-c\"\npost_hook = \"echo post-move-own $FERRY_VM >> {log}; echo broken >&2; exit 7\"\n"
        ),
    );
    let (code, text) = lab.ferry(&["migrate", path_str(&plan)]);
    assert_eq!(code, Some(0), "a failed hook under warn fails nothing: {text}");
    let run = run_id(&text);
    assert!(lab.moves(&run).iter().all(|m| m.status == Status::Success), "{text}");
    let lines: Vec<String> = std::fs::read_to_string(log).expect("hooks log").lines().map(String::from).collect();
    let at = |line: &str| lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("{line:?} not in {lines:#?}"));
    assert_eq!(at(&format!("pre-run {run}")), 0, "{lines:#?}");
    assert_eq!(at("post-run"), lines.len() - 1, "{lines:#?}");
    assert!(at("pre-move vm-1 host-a host-b") < at("post-move vm-1"), "{lines:#?}");
    assert!(
        at("pre-move vm-2 host-b host-c") < at("post-move-own vm-2"),
        "the move's own hook replaces the plan's: {lines:#?}"
    );
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let (_, report) = lab.report(&run);
    assert!(report.contains("pre-run hook: `echo pre-run"), "{report}");
    assert!(
        report.contains("exited 7 after") && report.contains(": broken; on_failure = warn: the run goes on"),
        "{report}"
    );

    // Under fail, a failed pre-move hook keeps its VM and every later one where they are.
    // (vm-1 goes back to host-a: the first plan deleted the copy it left there.)
    let plan = lab.plan(
        "failing",
        "[plan]\nname = \"failing\"\n[limits]\ncluster = 1\n[hooks]\non_failure = \"fail\"\n\
         [[move]]\nvm = \"vm-1\"\nto = \"host-a\"\npriority = 10\npre_hook = \"echo no >&2; exit 3\"\n\
         [[move]]\nvm = \"vm-3\"\nto = \"host-a\"\n",
    );
    let moved = lab.placement();
    let (code, text) = lab.ferry(&["migrate", path_str(&plan)]);
    assert_eq!(code, Some(1), "{text}");
    let moves = lab.moves(&run_id(&text));
    let (first, later) = (status_of(&moves, "vm-1"), status_of(&moves, "vm-3"));
    assert_eq!(first.status, Status::FailureInit, "{moves:#?}");
    assert!(
        first.message.contains("pre-move hook: `echo no >&2; exit 3` exited 3 after")
            && first.message.contains(": no; on_failure = fail"),
        "{first:#?}"
    );
    assert_eq!(later.status, Status::FailureInit, "{moves:#?}");
    assert!(later.message.contains("not started: the pre-move hook of vm-1 failed (on_failure = fail)"), "{later:#?}");
    assert_eq!(lab.placement(), moved, "nothing moved");

    // A failed pre-run hook under fail: nothing starts.
    let plan = lab.plan(
        "gated",
        "[plan]\nname = \"gated\"\n[hooks]\npre_run = \"exit 1\"\n[[move]]\nvm = \"vm-3\"\nto = \"host-a\"\n",
    );
    let (code, text) = lab.ferry(&["migrate", path_str(&plan)]);
    assert_eq!(code, Some(1), "{text}");
    let moves = lab.moves(&run_id(&text));
    assert_eq!(moves[0].status, Status::FailureInit, "{moves:#?}");
    assert!(moves[0].message.contains("the pre-run hook failed"), "{moves:#?}");
    assert_eq!(lab.placement(), moved, "nothing moved");
    lab.lab.check_ok();
}
