//! Earlier copies known before anything starts, on a real lab: after a drain and the moves
//! back (source copies kept, the default), a second drain's preview fails the `volumes`
//! check naming each copy left on the target and the command that removes it; that command
//! makes the check pass; and with `policy.stale_copies = "replace"` the drain deletes the
//! copy (journaled before and after) and empties the host. Port block 25000.
//!
//! The lab gives odd-numbered guests host-local disks: two hosts and three guests put vm-1
//! and vm-3, both with one, on host-a.

mod common;

use std::path::{Path, PathBuf};

use common::TestLab;
use ferry_journal::{EventKind, Journal, JournalConfig, Run, RunKind};
use ferry_model::Status;
use serde_json::Value;

/// A lab with its own journal in its directory.
struct StaleLab {
    lab: TestLab,
}

impl StaleLab {
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

    /// `ferry ARGS --cluster C --state S`: (exit code, stdout, stderr).
    fn ferry(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut full: Vec<&str> = args.to_vec();
        let (cluster, state) = (self.cluster(), self.state());
        full.extend(["--cluster", path_str(&cluster), "--state", path_str(&state)]);
        let out = common::ferry(&full);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `ferry preview PLAN --output json`: (exit code, preview).
    fn preview(&self, plan: &Path) -> (Option<i32>, Value) {
        let (code, out, err) = self.ferry(&["preview", path_str(plan), "--output", "json"]);
        let preview =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("preview printed no JSON ({e}):\n{out}\n{err}"));
        (code, preview)
    }

    fn journal<T>(&self, read: impl AsyncFnOnce(&Journal) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let journal = Journal::open_path(&self.state(), &JournalConfig::default()).await.expect("journal opens");
            read(&journal).await
        })
    }

    fn runs(&self) -> Vec<Run> {
        self.journal(async |j| j.runs().await.expect("runs"))
    }

    /// Each guest's (name, hosts it runs on), sorted by name.
    fn placement(&self) -> Vec<(String, Vec<String>)> {
        let status = self.lab.status_json();
        let mut vms: Vec<(String, Vec<String>)> = status["vms"]
            .as_array()
            .expect("vms")
            .iter()
            .map(|v| {
                let running: Vec<String> = serde_json::from_value(v["running_on"].clone()).expect("running_on");
                (v["name"].as_str().expect("name").to_string(), running)
            })
            .collect();
        vms.sort();
        vms
    }

    /// The hosts whose definitions include `vm` (running or not).
    fn defined_on(&self, vm: &str) -> Vec<String> {
        ["host-a", "host-b"]
            .into_iter()
            .filter(|h| self.lab.virsh(h, &["list", "--all", "--name"]).lines().any(|l| l.trim() == vm))
            .map(String::from)
            .collect()
    }

    /// Every guest runs on exactly one host and is defined on exactly one, the same.
    fn assert_each_vm_once(&self) {
        for (vm, running) in self.placement() {
            assert_eq!(running.len(), 1, "{vm} runs on exactly one host: {running:?}");
            assert_eq!(self.defined_on(&vm), running, "{vm} is defined only where it runs");
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run_id(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("run "))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no run id printed:\n{text}"))
}

/// The `volumes` check of `vm` in a JSON preview: (outcome, message).
fn volumes_check(preview: &Value, vm: &str) -> (String, String) {
    let entry = preview["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .find(|v| v["vm"] == vm)
        .unwrap_or_else(|| panic!("{vm} in the preview: {preview:#}"));
    let check = entry["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "volumes")
        .unwrap_or_else(|| panic!("a volumes check for {vm}: {entry:#}"));
    (check["outcome"].as_str().expect("outcome").to_string(), check["message"].as_str().expect("message").to_string())
}

#[test]
fn a_drain_meeting_the_copies_its_vms_left_fails_its_preview_or_replaces_them_by_policy() {
    let lab = StaleLab { lab: TestLab::up("stale", 25_000, &["--hosts", "2", "--vms", "3", "--mem", "96"]) };
    let on_a: Vec<String> = lab.placement().into_iter().filter(|(_, h)| h == &["host-a"]).map(|(vm, _)| vm).collect();
    assert_eq!(on_a, ["vm-1", "vm-3"], "the lab puts two guests with host-local disks on host-a");

    // 1. Drain host-a onto host-b, source copies kept (the default).
    let (code, out, err) = lab.ferry(&["drain", "host-a", "--to", "host-b"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    for vm in &on_a {
        let files = lab.lab.pool_files("host-a");
        assert!(files.contains(&format!("{vm}.qcow2")), "the drain kept {vm}'s copy on host-a: {files:?}\n{out}");
    }

    // 2. Moving vm-1 back meets that copy: the move refuses it before preparing anything,
    //    naming it and the command that removes it.
    let (code, out, err) = lab.ferry(&["move", "vm-1", "--to", "host-a"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let refused = format!("{out}\n{err}");
    assert!(refused.contains("FAILURE-INIT"), "{refused}");
    assert!(refused.contains("local/vm-1.qcow2 on host-a is an earlier copy of vm-1's disk"), "{refused}");
    assert!(refused.contains("`ferry cleanup --vm vm-1 --source-volumes` deletes it"), "{refused}");
    assert_eq!(lab.placement().iter().find(|(vm, _)| vm == "vm-1").expect("vm-1").1, ["host-b"], "vm-1 stayed");

    // 3. The named command removes the copies; the moves back then succeed, keeping the
    //    copies on host-b in turn.
    for vm in &on_a {
        let (code, out, err) = lab.ferry(&["cleanup", "--vm", vm, "--source-volumes"]);
        assert_eq!(code, Some(0), "{out}\n{err}");
        assert!(!lab.lab.pool_files("host-a").contains(&format!("{vm}.qcow2")), "cleanup deleted {vm}'s copy: {out}");
        let (code, out, err) = lab.ferry(&["move", vm, "--to", "host-a"]);
        assert_eq!(code, Some(0), "{out}\n{err}");
        assert!(lab.lab.pool_files("host-b").contains(&format!("{vm}.qcow2")), "the move kept {vm}'s copy on host-b");
    }

    // 4. Draining host-a onto host-b again: the preview fails the volumes check of both VMs,
    //    naming the copy, the run that left it, and the command.
    let refuse = lab.plan("drain-refuse", "[[drain]]\nhost = \"host-a\"\nto = \"host-b\"\n");
    let (code, preview) = lab.preview(&refuse);
    assert_eq!(code, Some(1), "{preview:#}");
    for vm in &on_a {
        let (outcome, message) = volumes_check(&preview, vm);
        assert_eq!(outcome, "FAILED", "{vm}: {message}");
        for needle in [
            format!("local/{vm}.qcow2 on host-b is an earlier copy of {vm}'s disk (run "),
            "moved it away from there and kept this copy".to_string(),
            format!("`ferry cleanup --vm {vm} --source-volumes` deletes it"),
        ] {
            assert!(message.contains(&needle), "{vm}: {message:?} lacks {needle:?}");
        }
    }

    // 5. Running the named command for vm-1 makes its check pass; vm-3's copy is still there.
    let (code, out, err) = lab.ferry(&["cleanup", "--vm", "vm-1", "--source-volumes"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, preview) = lab.preview(&refuse);
    assert_eq!(code, Some(1), "vm-3 still fails: {preview:#}");
    let (outcome, message) = volumes_check(&preview, "vm-1");
    assert_eq!(outcome, "PASSED", "{message}");
    assert_eq!(volumes_check(&preview, "vm-3").0, "FAILED");

    // 6. Under stale_copies = "replace" the preview lists the deletion and passes, and the
    //    drain deletes the copy, journaled before and after, and empties host-a.
    let replace = lab.plan(
        "drain-replace",
        "[policy]\nstale_copies = \"replace\"\n\n[[drain]]\nhost = \"host-a\"\nto = \"host-b\"\n",
    );
    let (code, preview) = lab.preview(&replace);
    assert_eq!(code, Some(0), "{preview:#}");
    let (outcome, message) = volumes_check(&preview, "vm-3");
    assert_eq!(outcome, "WARNING", "{message}");
    assert!(message.starts_with("deletes local/vm-3.qcow2 on host-b, an earlier copy of vm-3's disk"), "{message}");
    let runs_before = lab.runs().len();
    let (code, out, err) = lab.ferry(&["migrate", path_str(&replace)]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let drain = run_id(&out);
    assert_eq!(lab.runs().len(), runs_before + 1, "one new run");
    let placement = lab.placement();
    for (vm, running) in &placement {
        assert_ne!(running, &["host-a"], "{vm}: host-a is empty: {placement:?}");
    }
    let (moves, events) = lab.journal(async |j| {
        let run = j.run(&drain).await.expect("the drain's run");
        assert_eq!(run.kind, RunKind::Drain);
        (j.moves(&drain).await.expect("moves"), j.events(&drain, None).await.expect("events"))
    });
    let mut moved: Vec<&str> = moves.iter().map(|m| m.vm.as_str()).collect();
    moved.sort();
    assert_eq!(moved, on_a, "the drain moved host-a's guests");
    for m in &moves {
        assert_eq!(m.status, Status::Success, "{m:#?}");
        assert_eq!(m.target.as_deref(), Some("host-b"), "{m:#?}");
    }
    let messages: Vec<&str> =
        events.iter().filter(|e| e.kind == EventKind::Message).map(|e| e.message.as_str()).collect();
    let intent = messages
        .iter()
        .position(|m| m.starts_with("deleting local/vm-3.qcow2 on host-b, an earlier copy of vm-3's disk"))
        .unwrap_or_else(|| panic!("the deletion's intent is journaled: {messages:#?}"));
    let done = messages
        .iter()
        .position(|m| *m == "deleted local/vm-3.qcow2 on host-b, the earlier copy of vm-3's disk")
        .unwrap_or_else(|| panic!("the deletion's result is journaled: {messages:#?}"));
    assert!(intent < done, "intent before effect: {messages:#?}");
    assert!(
        !messages.iter().any(|m| m.contains("vm-1.qcow2 on host-b, an earlier copy")),
        "vm-1 had no copy left to delete: {messages:#?}"
    );

    lab.assert_each_vm_once();
    lab.lab.check_ok();
}
