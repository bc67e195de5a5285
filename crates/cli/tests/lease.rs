//! Leases that bind, on real labs: of two `ferry resume` of one run started at once, one
//! drives it and the other is refused naming it, also while the holder waits out a job
//! that outlived its ferry; a ferry stopped (SIGSTOP) past its lease
//! finds, once continued, that another took the run, and starts nothing more.
//!
//! Port blocks 24000 and 30000, one lab each.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{path_str, stdout_run_id, wait_for_line, TestLab};
use ferry_journal::{Attempt, EventKind, Journal, JournalConfig, Move, Run, OWNER_ALIVE_WITHIN_MS};
use ferry_model::Status;

/// A lab with its journal and plans in its directory.
struct LeaseLab {
    lab: TestLab,
}

impl LeaseLab {
    fn up(name: &str, port_base: u16) -> LeaseLab {
        LeaseLab { lab: TestLab::up(name, port_base, &["--hosts", "3", "--vms", "3", "--mem", "128", "--dirty", "2"]) }
    }

    fn state(&self) -> PathBuf {
        self.lab.dir.join("journal.db")
    }

    /// The lab's cluster file with every host's link at `link` MiB/s: migrations of
    /// seconds, long enough to be caught in flight.
    fn cluster_with_link(&self, link: u32) -> PathBuf {
        let text = std::fs::read_to_string(self.lab.dir.join("cluster.toml")).expect("cluster file");
        let text: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with("link_mib_s") { format!("link_mib_s = {link}") } else { l.to_string() })
            .collect();
        let path = self.lab.dir.join(format!("cluster-{link}.toml"));
        std::fs::write(&path, text.join("\n")).expect("write cluster file");
        path
    }

    /// A plan moving each of the three guests one host along (vm-1 from host-a to host-b,
    /// …), one migration at a time.
    fn one_along(&self) -> PathBuf {
        self.plan("along", &[("vm-1", "host-b"), ("vm-2", "host-c"), ("vm-3", "host-a")])
    }

    /// A plan of `moves` (VM, target), one migration at a time.
    fn plan(&self, name: &str, moves: &[(&str, &str)]) -> PathBuf {
        let moves =
            moves.iter().map(|(vm, to)| format!("[[move]]\nvm = \"{vm}\"\nto = \"{to}\"\n")).collect::<String>();
        let path = self.lab.dir.join(format!("{name}.toml"));
        std::fs::write(&path, format!("[plan]\nname = \"{name}\"\n[limits]\ncluster = 1\n{moves}")).expect("plan");
        path
    }

    /// `ferry migrate PLAN` killed (-9) at the failpoint `transferring` of vm-2 once its
    /// target `vm2_to` holds the incoming copy, its migration left running in libvirt; the
    /// run's id.
    fn migrate_killed_in_flight(&self, plan: &Path, cluster: &Path, vm2_to: &str) -> String {
        let mut migrate = self.spawn(
            &["migrate", path_str(plan), "--cluster", path_str(cluster)],
            &[("FERRY_FAILPOINT", "transferring:vm-2")],
        );
        let run = stdout_run_id(&mut migrate);
        wait_for_line(&mut migrate, "failpoint transferring vm-2", Duration::from_secs(180));
        self.lab.wait_incoming("vm-2", vm2_to);
        common::kill9(migrate.id());
        let _ = migrate.wait();
        run
    }

    /// The journal's status of `vm` in `run`.
    fn status_of(&self, run: &str, vm: &str) -> Status {
        self.moves(run).into_iter().find(|m| m.vm == vm).map(|m| m.status).expect("a move of the VM")
    }

    /// `ferry COMMAND ARGS --state` in the background, both streams piped.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--state", path_str(&self.state())])
            .envs(env.iter().copied())
            .env("FERRY_LAB_CACHE", common::cache_dir())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferry runs")
    }

    fn journal(&self) -> (tokio::runtime::Runtime, Journal) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let journal = rt.block_on(Journal::open_path(&self.state(), &JournalConfig::default())).expect("journal opens");
        (rt, journal)
    }

    /// Whether another process can write the journal now: it journals a message on `run`.
    fn writable(&self, run: &str) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let config = JournalConfig { busy_timeout: Duration::from_secs(2), ..JournalConfig::default() };
        rt.block_on(async {
            let journal = Journal::open_path(&self.state(), &config).await.expect("journal opens");
            journal.event(run, None, EventKind::Message, "test: the journal takes a write", None).await.is_ok()
        })
    }

    fn run(&self, id: &str) -> Run {
        let (rt, journal) = self.journal();
        rt.block_on(journal.run(id)).expect("run")
    }

    fn moves(&self, run: &str) -> Vec<Move> {
        let (rt, journal) = self.journal();
        rt.block_on(journal.moves(run)).expect("moves")
    }

    fn attempts(&self, run: &str) -> Vec<Attempt> {
        let (rt, journal) = self.journal();
        rt.block_on(journal.attempts(run)).expect("attempts")
    }

    /// Every move succeeded, and every VM runs on exactly one host: its target.
    fn assert_all_moved_where_journal_says(&self, run: &str, context: &str) {
        let moves = self.moves(run);
        assert!(moves.iter().all(|m| m.status == Status::Success), "{context}: {moves:#?}");
        for m in moves {
            let status = self.lab.vm_status(&m.vm);
            let running: Vec<String> = serde_json::from_value(status["running_on"].clone()).expect("running_on");
            assert_eq!(running, vec![m.target.clone().expect("a target")], "{} runs on {running:?}", m.vm);
        }
        // Defined once, and no volume left but the source copies the policy keeps (of every
        // run in this journal: a guest moved twice left one on each host it left).
        let (rt, journal) = self.journal();
        let runs = rt.block_on(journal.runs()).expect("runs");
        let kept: Vec<(String, String)> = runs
            .iter()
            .flat_map(|r| rt.block_on(journal.moves(&r.id)).expect("moves"))
            .map(|m| (m.source, format!("{}.qcow2", m.vm)))
            .collect();
        self.lab.assert_each_vm_once_and_no_stray_volume(&kept, &|| context.to_string());
    }
}

/// `host:PID:BOOT`, as ferry names a lease's holder.
fn holder(pid: u32) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id").replace('-', "");
    format!("{}:{pid}:{}", host.trim(), &boot[..8])
}

/// A child's stderr, read to its end on a thread of its own.
fn collect(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    })
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

fn text(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn of_two_resumes_at_once_one_drives_the_run_and_the_other_names_it() {
    let lab = LeaseLab::up("lease-two", 24_000);
    let cluster = lab.cluster_with_link(32);
    let run = lab.migrate_killed_in_flight(&lab.one_along(), &cluster, "host-c");

    let first = lab.spawn(&["resume", &run], &[]);
    let second = lab.spawn(&["resume", &run], &[]);
    let pids = [first.id(), second.id()];
    let outs = [common::wait_or_fail(first, "first resume"), common::wait_or_fail(second, "second resume")];
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    let all = format!("first:\n{}\nsecond:\n{}", text(&outs[0]), text(&outs[1]));
    let winner = match codes.as_slice() {
        [Some(0), Some(1)] => 0,
        [Some(1), Some(0)] => 1,
        _ => panic!("expected one resume to exit 0 and the other 1, got {codes:?}\n{all}"),
    };
    let loser = &outs[1 - winner];
    let refusal = format!("run {run} is being driven by {}", holder(pids[winner]));
    assert!(String::from_utf8_lossy(&loser.stderr).contains(&refusal), "expected {refusal:?}:\n{all}");
    assert!(text(loser).contains(&format!("`ferry abort {run}`")), "the refusal says what to do:\n{all}");
    assert_eq!(lab.run(&run).owner, Some(holder(pids[winner])), "{all}");

    lab.assert_all_moved_where_journal_says(&run, &all);
    // Only the winner moved anything: vm-2's interrupted attempt, then one each for the rest.
    let attempts = lab.attempts(&run);
    assert_eq!(attempts.len(), 3, "{attempts:#?}\n{all}");
    lab.lab.check_ok();

    // The holder keeps its lease while it waits out a migration that outlived its ferry:
    // at 4 MiB/s vm-2's 128 MiB take over 30 s, and a resume tried past the lease time
    // while the first still waits for that job is refused.
    let slow = lab.cluster_with_link(4);
    let plan = lab.plan("along-again", &[("vm-1", "host-c"), ("vm-2", "host-a"), ("vm-3", "host-b")]);
    let run = lab.migrate_killed_in_flight(&plan, &slow, "host-a");
    let waiting = lab.spawn(&["resume", &run], &[]);
    let holder_now = holder(waiting.id());
    let started = Instant::now();
    while lab.run(&run).owner.as_deref() != Some(holder_now.as_str()) {
        assert!(started.elapsed() < Duration::from_secs(30), "the resume never claimed the run");
        std::thread::sleep(Duration::from_millis(100));
    }
    let claimed = Instant::now();
    std::thread::sleep(Duration::from_millis(u64::try_from(OWNER_ALIVE_WITHIN_MS).expect("positive") + 2_000));
    assert_eq!(lab.status_of(&run, "vm-2"), Status::Migrating, "the job should still be waited out");
    let out = common::ferry(&["resume", &run, "--state", path_str(&lab.state())]);
    let still_waiting = lab.status_of(&run, "vm-2") == Status::Migrating;
    assert_eq!(out.status.code(), Some(1), "{:?} after the claim: {}", claimed.elapsed(), text(&out));
    assert!(text(&out).contains(&format!("run {run} is being driven by {holder_now}")), "{}", text(&out));
    assert!(still_waiting, "the refusal should come while the job is waited out");
    let out = common::wait_or_fail(waiting, "the resume waiting out vm-2's job");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    lab.assert_all_moved_where_journal_says(&run, &text(&out));
    assert_eq!(lab.attempts(&run).len(), 3);
    lab.lab.check_ok();
}

#[test]
fn a_ferry_stopped_past_its_lease_starts_nothing_once_continued() {
    let lab = LeaseLab::up("lease-stop", 30_000);
    let cluster = lab.cluster_with_link(16);
    let plan = lab.one_along();
    let mut migrate = lab.spawn(&["migrate", path_str(&plan), "--cluster", path_str(&cluster)], &[]);
    let run = stdout_run_id(&mut migrate);
    // Its progress goes to stderr all along: read, so that a full pipe never stops it.
    let stderr = collect(&mut migrate);
    let stale = holder(migrate.id());

    // Stopped while its first migration is in flight: the migration goes on in libvirt.
    let started = Instant::now();
    while !lab.moves(&run).iter().any(|m| m.status == Status::Migrating) {
        assert!(started.elapsed() < Duration::from_secs(120), "nothing started");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    // Stopped outside a journal transaction: one stopped inside holds SQLite's write lock
    // for as long as it is stopped, and no other ferry could write (readers still can).
    for attempt in 1.. {
        signal(migrate.id(), "-STOP");
        if lab.writable(&run) {
            break;
        }
        assert!(attempt < 5, "ferry was stopped inside a write {attempt} times");
        signal(migrate.id(), "-CONT");
        std::thread::sleep(Duration::from_millis(300));
    }
    let stopped_run = lab.run(&run);
    assert_eq!(stopped_run.owner.as_deref(), Some(stale.as_str()));

    // Within the lease time the stopped ferry still counts as alive.
    let out = common::ferry(&["resume", &run, "--state", path_str(&lab.state())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("is being driven by {stale}")), "{}", text(&out));

    // Past it, another ferry takes the run and finishes it.
    let silent_for = Duration::from_millis(u64::try_from(OWNER_ALIVE_WITHIN_MS).expect("positive") + 2_000);
    while started.elapsed() < Duration::from_secs(600) {
        let beat = lab.run(&run).heartbeat_ms.expect("a heartbeat");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        if i64::try_from(now.as_millis()).expect("ms") - beat > i64::try_from(silent_for.as_millis()).expect("ms") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let resume = lab.spawn(&["resume", &run], &[]);
    let taker = holder(resume.id());
    let out = common::wait_or_fail(resume, "resume of the stopped run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let attempts_before = lab.attempts(&run);
    lab.assert_all_moved_where_journal_says(&run, &text(&out));

    // Continued, the first ferry finds the lease gone: it exits 1 naming the holder and
    // neither starts nor records anything.
    signal(migrate.id(), "-CONT");
    let stopped = common::wait_or_fail(migrate, "the continued ferry");
    let stopped_said = stderr.join().expect("stderr read");
    assert_eq!(stopped.status.code(), Some(1), "{stopped_said}");
    let said = format!("run {run} is now driven by {taker}; this ferry stopped starting moves");
    assert!(stopped_said.contains(&said), "expected {said:?}:\n{stopped_said}");
    let attempts = lab.attempts(&run);
    assert_eq!(attempts, attempts_before, "the continued ferry journaled nothing");
    assert_eq!(attempts.len(), 3, "one attempt per VM: {attempts:#?}");
    assert_eq!(lab.run(&run).owner, Some(taker));
    lab.assert_all_moved_where_journal_says(&run, &stopped_said);
    lab.lab.check_ok();
}
