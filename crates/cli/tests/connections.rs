//! One libvirt connection per host per ferry process, on a real lab: a run's calls share it,
//! and when a host's libvirtd dies and comes back between two moves, the next move goes
//! through a reopened connection. Ends with `ferry lab check` passing and every VM running on
//! exactly one host, defined on exactly one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{path_str, TestLab};
use ferry_journal::{Journal, JournalConfig, Move};
use ferry_model::Status;

const LAB_ARGS: [&str; 6] = ["--hosts", "2", "--vms", "2", "--mem", "96"];

/// Lines of ferry's debug log where the pool opened a connection to `uri`.
fn opened(log: &Path, uri: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("opened a libvirt connection") && l.contains(&format!("{uri} "))).count()
}

/// Lines of ferry's debug log where a migration opened its own connection.
fn opened_for_migrations(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("opened a connection for one migration")).count()
}

fn moves(state: &Path, run: &str) -> Vec<Move> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal = rt.block_on(Journal::open_path(state, &JournalConfig::default())).expect("journal opens");
    rt.block_on(journal.moves(run)).expect("moves")
}

/// Waits for `done`, polling; fails with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn daemon_pids(lab: &TestLab) -> Vec<u32> {
    let status = lab.status_json();
    status["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| u32::try_from(h["pid"].as_u64().expect("the daemon runs")).expect("a pid"))
        .collect()
}

#[test]
fn a_move_after_both_daemons_restarted_goes_through_reopened_connections() {
    let lab = TestLab::up("connections", 2_000, &LAB_ARGS);
    lab.check_ok();
    let uris = [lab.uri("host-a"), lab.uri("host-b")];
    let (waiting, go): (PathBuf, PathBuf) = (lab.dir.join("second-waiting"), lab.dir.join("go"));
    // vm-1 (host-a) moves first; vm-2's move (host-b → host-a) then waits in its pre-move hook,
    // inside the same ferry process, until the test has restarted both daemons.
    let plan = format!(
        "[plan]\nname = \"reopen\"\n[limits]\ncluster = 1\n[policy]\ndelete_source_volumes = true\n\
         [hooks]\ntimeout_s = 600\n\
         [[move]]\nvm = \"vm-1\"\nto = \"host-b\"\npriority = 10\n\
         [[move]]\nvm = \"vm-2\"\nto = \"host-a\"\n\
         pre_hook = \"touch {}; while [ ! -e {} ]; do sleep 0.1; done\"\n",
        waiting.display(),
        go.display()
    );
    let plan_path = lab.dir.join("plan.toml");
    std::fs::write(&plan_path, plan).expect("write the plan");
    let (state, log) = (lab.dir.join("journal.db"), lab.dir.join("ferry.log"));
    let cluster = lab.dir.join("cluster.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["migrate", "--cluster", path_str(&cluster), "--state", path_str(&state), path_str(&plan_path)])
        .env("FERRY_LAB_CACHE", common::cache_dir())
        .env("RUST_LOG", "warn,ferry_libvirt=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("ferry runs");
    let run = common::stdout_run_id(&mut child);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // vm-1 moved and finalized, vm-2's move holds in its hook: ferry has talked to both hosts
    // (inventory, checks, the move, its verification) through one connection each.
    wait_until("vm-2's pre-move hook", Duration::from_secs(300), || waiting.exists());
    wait_until("vm-1's move to end", Duration::from_secs(300), || {
        moves(&state, &run).iter().any(|m| m.vm == "vm-1" && m.status.is_terminal())
    });
    let first = moves(&state, &run).into_iter().find(|m| m.vm == "vm-1").expect("vm-1's move");
    assert_eq!(first.status, Status::Success, "{first:#?}\n{}", log_text());
    for uri in &uris {
        assert_eq!(opened(&log, uri), 1, "one connection to {uri} before the restart:\n{}", log_text());
    }
    assert_eq!(opened_for_migrations(&log), 1, "vm-1's migration call had its own:\n{}", log_text());

    // Both daemons die (QEMU goes on) and come back; the process keeps its dead connections.
    let before = daemon_pids(&lab);
    for &pid in &before {
        common::kill9(pid);
    }
    wait_until("the daemons to die", Duration::from_secs(30), || {
        before.iter().all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
    let mut up = vec!["lab", "up", "--dir", lab.dir_str()];
    up.extend(LAB_ARGS);
    let out = common::ferry(&up);
    assert!(out.status.success(), "lab up after the kill: {}", String::from_utf8_lossy(&out.stderr));
    let after = daemon_pids(&lab);
    assert!(after.iter().all(|pid| !before.contains(pid)), "new daemons: {before:?} → {after:?}");
    std::fs::write(&go, "").expect("write the go file");

    let out = common::wait_or_fail(child, "ferry migrate");
    assert_eq!(out.status.code(), Some(0), "{}", log_text());
    let all = moves(&state, &run);
    assert!(all.iter().all(|m| m.status == Status::Success), "{all:#?}\n{}", log_text());
    assert_eq!(lab.vm_status("vm-1")["running_on"], serde_json::json!(["host-b"]));
    assert_eq!(lab.vm_status("vm-2")["running_on"], serde_json::json!(["host-a"]));
    // Exactly one more connection per host: the dead one was dropped and reopened once.
    for uri in &uris {
        assert_eq!(opened(&log, uri), 2, "reopened once to {uri}:\n{}", log_text());
    }
    assert_eq!(opened_for_migrations(&log), 2, "vm-2's migration call had its own:\n{}", log_text());
    lab.assert_each_vm_once_and_no_stray_volume(&[], &log_text);
    lab.check_ok();
}
