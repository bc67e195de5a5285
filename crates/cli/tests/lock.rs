//! One live move per VM, across runs, journals and operators, on real labs: two runs from
//! two journals started together on one VM (exactly one moves it, the other ends
//! FAILURE-INIT naming the winner), and `ferry move` of a VM a running drain is moving
//! (refused, exit 1, naming the drain's run, even with `--ignore active-run`), and the line a
//! claim waits in on libvirt (another ferry's ticket ahead refuses a move; a stale ticket or a
//! gone ferry's does not, and the move removes it). Each ends with the VM running on exactly
//! one host, defined on exactly one, and `ferry lab check`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::TestLab;
use ferry_journal::{Journal, JournalConfig, Move};
use ferry_model::Status;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The lab's cluster file with every host's link at `link` MiB/s: migrations slow enough
/// to overlap.
fn cluster_with_link(lab: &TestLab, link: u32) -> PathBuf {
    let text = std::fs::read_to_string(lab.dir.join("cluster.toml")).expect("cluster file");
    let text: String = text
        .lines()
        .map(|l| if l.starts_with("link_mib_s") { format!("link_mib_s = {link}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let path = lab.dir.join(format!("cluster-{link}.toml"));
    std::fs::write(&path, text).expect("write cluster file");
    path
}

fn write(lab: &TestLab, name: &str, text: &str) -> PathBuf {
    let path = lab.dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// `ferry migrate PLAN` in the background.
fn spawn_migrate(plan: &Path, cluster: &Path, state: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["migrate", "--cluster", path_str(cluster), "--state", path_str(state), path_str(plan)])
        .env("FERRY_LAB_CACHE", common::cache_dir())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry runs")
}

/// Waits for a `ferry migrate`: (exit code, run id, everything it printed).
fn finish(child: Child, what: &str) -> (Option<i32>, String, String) {
    let out = common::wait_or_fail(child, what);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let run = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("{what} printed no run id:\n{text}"));
    (out.status.code(), run, text)
}

fn moves(state: &Path, run: &str) -> Vec<Move> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal = rt.block_on(Journal::open_path(state, &JournalConfig::default())).expect("journal opens");
    rt.block_on(journal.moves(run)).expect("moves")
}

/// The hosts that run `vm`, and the hosts that have it defined at all (running or not).
fn where_is(lab: &TestLab, vm: &str) -> (Vec<String>, Vec<String>) {
    let status = lab.vm_status(vm);
    let running: Vec<String> = serde_json::from_value(status["running_on"].clone()).expect("running_on");
    let hosts: Vec<String> = lab.status_json()["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["name"].as_str().expect("host name").to_string())
        .collect();
    let defined = hosts
        .iter()
        .map(String::as_str)
        .filter(|h| lab.virsh(h, &["list", "--all", "--name"]).lines().any(|l| l.trim() == vm))
        .map(String::from)
        .collect();
    (running, defined)
}

#[test]
fn two_runs_from_two_journals_started_together_move_a_vm_once() {
    let lab = TestLab::up("lock-two", 26_000, &["--hosts", "3", "--vms", "3", "--mem", "128"]);
    let cluster = cluster_with_link(&lab, 16);
    let to_b = write(&lab, "to-b.toml", "[plan]\nname = \"to-b\"\n[[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n");
    let to_c = write(&lab, "to-c.toml", "[plan]\nname = \"to-c\"\n[[move]]\nvm = \"vm-1\"\nto = \"host-c\"\n");
    let (state_b, state_c) = (lab.dir.join("operator-1.db"), lab.dir.join("operator-2.db"));

    let started = Instant::now();
    let one = spawn_migrate(&to_b, &cluster, &state_b);
    let two = spawn_migrate(&to_c, &cluster, &state_c);
    let ((code_b, run_b, text_b), (code_c, run_c, text_c)) = std::thread::scope(|s| {
        let b = s.spawn(|| finish(one, "ferry migrate to-b"));
        let c = s.spawn(|| finish(two, "ferry migrate to-c"));
        (b.join().expect("to-b"), c.join().expect("to-c"))
    });
    eprintln!("both runs ended after {:.1} s", started.elapsed().as_secs_f64());
    let (move_b, move_c) = (&moves(&state_b, &run_b)[0], &moves(&state_c, &run_c)[0]);
    let ((winner, winner_run), (loser, loser_code, loser_text)) = match (move_b.status, move_c.status) {
        (Status::Success, _) => ((move_b, &run_b), (move_c, code_c, &text_c)),
        (_, Status::Success) => ((move_c, &run_c), (move_b, code_b, &text_b)),
        _ => panic!("neither run moved vm-1:\n{text_b}\n{text_c}"),
    };
    assert_eq!(loser.status, Status::FailureInit, "exactly one moves it: {loser:#?}\n{loser_text}");
    let refusal = format!("being moved by run {winner_run} (host host-a, owner ");
    assert!(loser.message.contains(&refusal), "{:?} lacks {refusal:?}", loser.message);
    assert!(loser.message.contains(&format!("`ferry abort {winner_run}`")), "{:?}", loser.message);
    assert_eq!(loser_code, Some(1), "{loser_text}");

    let target = winner.target.clone().expect("a target");
    let (running, defined) = where_is(&lab, "vm-1");
    assert_eq!(running, vec![target.clone()], "vm-1 runs on exactly one host, the winner's target");
    assert_eq!(defined, vec![target], "vm-1 is defined on exactly one host");
    lab.check_ok();
}

/// Writes a ticket on `host`'s vm-1, as another ferry's claim would.
fn write_ticket(lab: &TestLab, host: &str, owner: &str, run: &str, written_ms: i64) {
    let ns = format!("urn:ferry:ticket:1:{}:{run}", owner.replace(':', "%3A"));
    let xml = format!("<ticket run='{run}' owner='{owner}' written-ms='{written_ms}'/>");
    lab.virsh(host, &["metadata", "vm-1", "--uri", &ns, "--key", "ferry-ticket", "--set", &xml, "--live", "--config"]);
}

/// The ticket lines in `host`'s vm-1's live and persistent XML.
fn tickets_on(lab: &TestLab, host: &str) -> Vec<String> {
    let mut found = Vec::new();
    for flags in [&[][..], &["--inactive"][..]] {
        let mut args = vec!["dumpxml", "vm-1"];
        args.extend(flags);
        let xml = lab.virsh(host, &args);
        found.extend(xml.lines().filter(|l| l.contains("urn:ferry:ticket:")).map(|l| l.trim().to_string()));
    }
    found
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit")
}

/// Two ferries that both read vm-1 free both take a ticket, and the later one finds the
/// earlier ahead of it. Here the earlier is written by hand (a ferry on another machine),
/// so the race is certain: the move is refused naming its run and changes nothing. Then
/// that ticket is stale and another, fresh, names a ferry process of this machine that is
/// gone: neither holds the VM, and the move removes both before the VM leaves.
#[test]
fn a_ticket_ahead_in_line_refuses_a_move_and_a_gone_ferrys_ticket_does_not() {
    let lab = TestLab::up("lock-line", 26_500, &["--hosts", "2", "--vms", "1", "--mem", "128"]);
    write_ticket(&lab, "host-a", "ops-9:77", "r-racer", now_ms());

    let (code, summary) = lab.ferry_move(&["vm-1", "--to", "host-b"]);
    assert_eq!(code, Some(1), "{summary:#}");
    assert_eq!(summary["status"], "FAILURE-INIT", "{summary:#}");
    let reason = summary["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("being moved by run r-racer (host host-a, owner ops-9:77)"), "{reason}");
    assert!(reason.contains("`ferry abort r-racer`"), "{reason}");
    let (running, defined) = where_is(&lab, "vm-1");
    assert_eq!((running, defined), (vec!["host-a".to_string()], vec!["host-a".to_string()]));
    let left = tickets_on(&lab, "host-a");
    assert_eq!(left.len(), 2, "the racer's ticket, live and persistent, and not the refused one's: {left:#?}");
    assert!(left.iter().all(|t| t.contains("r-racer")), "{left:#?}");

    write_ticket(&lab, "host-a", "ops-9:77", "r-racer", now_ms() - 16_000);
    let gone = Command::new("true").spawn().expect("true runs");
    let gone_pid = gone.id();
    common::wait_or_fail(gone, "true");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    write_ticket(&lab, "host-a", &format!("{}:{gone_pid}", hostname.trim()), "r-gone", now_ms());
    assert_eq!(tickets_on(&lab, "host-a").len(), 4, "both tickets written");

    let (code, summary) = lab.ferry_move(&["vm-1", "--to", "host-b"]);
    assert_eq!((code, &summary["status"]), (Some(0), &serde_json::json!("SUCCESS")), "{summary:#}");
    let (running, defined) = where_is(&lab, "vm-1");
    assert_eq!((running, defined), (vec!["host-b".to_string()], vec!["host-b".to_string()]));
    assert_eq!(tickets_on(&lab, "host-b"), Vec::<String>::new(), "no ticket travelled with the VM");
    lab.check_ok();
}

/// The drain is cold: a live migration's incoming domain holds libvirt's job lock on the
/// target, so the inventory `ferry move` takes first waits for the migration's end (11 s of
/// a 16 s migration on the lab), and the refusal would race the drain's finalize. A cold
/// move holds no job while the guest (which ignores ACPI) is given its shutdown timeout.
#[test]
fn ferry_move_of_a_vm_a_running_drain_is_moving_is_refused_and_the_drain_succeeds() {
    let lab = TestLab::up("lock-drain", 14_000, &["--hosts", "3", "--vms", "3", "--mem", "128"]);
    let cluster = lab.dir.join("cluster.toml");
    let state = lab.dir.join("journal.db");
    let other_state = lab.dir.join("operator-2.db");
    let drain = write(
        &lab,
        "drain.toml",
        "[plan]\nname = \"drain-a\"\n[policy]\nmode = \"cold\"\nshutdown_timeout_s = 40\n\
         [[drain]]\nhost = \"host-a\"\nto = \"host-b\"\n",
    );
    let mut child = spawn_migrate(&drain, &cluster, &state);
    // The drain's run id comes first on stdout; its progress shows when vm-1 is claimed.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("run id line");
    let run = first.strip_prefix("run ").map(|r| r.trim().to_string()).unwrap_or_else(|| panic!("{first}"));
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).expect("stderr") > 0, "the drain ended before moving vm-1:\n{seen}");
        seen.push_str(&line);
        if line.contains("vm-1") && line.contains("transferring") {
            break;
        }
    }
    let claimed = Instant::now();
    // Keep draining its pipes so it never blocks on them.
    let pipes = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    // Past the lease time, the claim written at the start would be stale: only its refresh
    // keeps it held for an operator with another journal, who cannot see the drain's run.
    std::thread::sleep(std::time::Duration::from_secs(17));

    let cluster_str = path_str(&cluster);
    let attempts: [(&Path, &[&str]); 3] = [(&other_state, &[]), (&state, &[]), (&state, &["--ignore", "active-run"])];
    for (journal, extra) in attempts {
        let mut args = vec!["move", "vm-1", "--to", "host-c", "--cluster", cluster_str, "--state", path_str(journal)];
        args.extend(extra);
        let asked = Instant::now();
        let out = common::ferry(&args);
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let what = format!("{} {extra:?}", journal.display());
        eprintln!("ferry move ({what}) answered in {:.1} s:\n{text}", asked.elapsed().as_secs_f64());
        assert_eq!(out.status.code(), Some(1), "{what}: {text}");
        assert!(text.contains(&format!("being moved by run {run} (host host-a, owner ")), "{what}: {text}");
        assert!(text.contains("FAILURE-INIT"), "{what}: {text}");
    }
    let elapsed = claimed.elapsed().as_secs_f64();
    assert!(elapsed < 40.0, "the refusals came {elapsed:.1} s after the claim, past the guest's shutdown timeout");

    let out = common::wait_or_fail(child, "ferry migrate drain");
    let rest = pipes.join().expect("pipes");
    eprintln!("the drain:\n{seen}{rest}");
    assert_eq!(out.status.code(), Some(0), "the drain failed");
    let drained = moves(&state, &run);
    assert!(drained.iter().all(|m| m.status.is_success()), "{drained:#?}");
    let (running, defined) = where_is(&lab, "vm-1");
    assert_eq!(running, vec!["host-b".to_string()], "vm-1 runs on exactly one host");
    assert_eq!(defined, vec!["host-b".to_string()], "vm-1 is defined on exactly one host");
    // A cold move restarts its guest.
    lab.check_ok_with(&["--allow-restart", "vm-1"]);
}
