//! Leases that bind, on real labs: of two `ferry resume` of one run started at once, one
//! drives it and the other is refused naming it, also while the holder waits out a job
//! that outlived its ferry; a ferry stopped (SIGSTOP) past its lease
//! finds, once continued, that another took the run, and starts nothing more.
//!
//! Two controllers on one PostgreSQL journal (one of them in a UTS namespace of its own,
//! so a host of another name): the second refuses what the first drives, naming its run,
//! takes the run over once the first died and its lease expired, and a run goes through a
//! restart of the database.
//!
//! Port blocks 24000, 30000 and 3500, one lab each.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{path_str, printed_run_id, stdout_run_id, wait_for_line, TestLab};
use ferry_journal::{Attempt, EventKind, Journal, JournalConfig, Move, Run, OWNER_ALIVE_WITHIN_MS};
use ferry_model::Status;

/// A lab with its plans in its directory, and its journal there too or on a PostgreSQL
/// server.
struct LeaseLab {
    lab: TestLab,
    /// `--state`: a file of the lab's, or a `postgres://` URL.
    state: String,
}

impl LeaseLab {
    fn up(name: &str, port_base: u16) -> LeaseLab {
        let lab = TestLab::up(name, port_base, &["--hosts", "3", "--vms", "3", "--mem", "128", "--dirty", "2"]);
        let state = lab.dir.join("journal.db").display().to_string();
        LeaseLab { lab, state }
    }

    /// The lab with its journal at `state` instead.
    fn up_with_state(name: &str, port_base: u16, state: String) -> LeaseLab {
        LeaseLab { state, ..LeaseLab::up(name, port_base) }
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
        self.command(args, env).spawn().expect("ferry runs")
    }

    /// `ferry COMMAND ARGS --state`, as [`LeaseLab::spawn`] starts it.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(args)
            .args(["--state", &self.state])
            .envs(env.iter().copied())
            .env("FERRY_LAB_CACHE", common::cache_dir())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// `ferry COMMAND ARGS --state` run to its end as a controller on another machine: in a
    /// UTS namespace of its own whose host name is `host`, so that it takes this machine's
    /// ferries for remote ones, alive as long as their leases are fresh.
    fn output_on(&self, host: &'static str, args: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        let mut command = self.command(args, &[]);
        // SAFETY: unshare(2) and sethostname(2) are system calls, safe between fork and exec;
        // the closure touches only the static name.
        unsafe {
            command.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWUTS) != 0 || libc::sethostname(host.as_ptr().cast(), host.len()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.output().expect("ferry runs")
    }

    fn journal(&self) -> (tokio::runtime::Runtime, Journal) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let opened = match self.state.starts_with("postgres://") {
            true => rt.block_on(Journal::open(&self.state)),
            false => rt.block_on(Journal::open_path(Path::new(&self.state), &JournalConfig::default())),
        };
        (rt, opened.expect("journal opens"))
    }

    /// Whether another process can write the journal now: it journals a message on `run`.
    fn writable(&self, run: &str) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let config = JournalConfig { busy_timeout: Duration::from_secs(2), ..JournalConfig::default() };
        rt.block_on(async {
            let journal = Journal::open_path(Path::new(&self.state), &config).await.expect("journal opens");
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
    let out = common::ferry(&["resume", &run, "--state", &lab.state]);
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
    let out = common::ferry(&["resume", &run, "--state", &lab.state]);
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

#[test]
fn two_controllers_share_a_postgres_journal_and_one_takes_over_from_the_other() {
    let mut server = ferry_pgtest::Server::start().expect("a PostgreSQL server (scripts/setup installs it)");
    let lab = LeaseLab::up_with_state("lease-pg", 3_500, server.url(ferry_pgtest::DATABASE));
    let cluster = lab.cluster_with_link(32);
    let cluster_arg = path_str(&cluster);

    // Controller 1 drains host-b (vm-2), frozen in vm-2's transfer.
    let mut first =
        lab.spawn(&["drain", "host-b", "--cluster", cluster_arg], &[("FERRY_FAILPOINT", "transferring:vm-2")]);
    let run = stdout_run_id(&mut first);
    wait_for_line(&mut first, "failpoint transferring vm-2", Duration::from_secs(180));
    let target = lab.moves(&run)[0].target.clone().expect("vm-2's target");
    lab.lab.wait_incoming("vm-2", &target);

    // Controller 2, another machine to the journal, drains the same host: refused, naming
    // the first's run; nothing of its own starts.
    let refused = lab.output_on("ctl-2", &["drain", "host-b", "--cluster", cluster_arg]);
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    let second = printed_run_id(&String::from_utf8_lossy(&refused.stdout)).expect("the second run's id");
    let refusal = lab.moves(&second);
    assert_eq!(refusal.len(), 1, "{refusal:#?}");
    assert_eq!(refusal[0].status, Status::PrecheckFailed, "{refusal:#?}");
    assert!(refusal[0].message.contains(&run), "the refusal names the run that holds vm-2: {refusal:#?}");
    assert!(lab.attempts(&second).is_empty(), "controller 2 started nothing");
    eprintln!("controller 2 refused: {}", refusal[0].message);

    // Controller 1 dies. Controller 2 may not take its run while the lease is fresh (it
    // cannot see a process of another machine die), and takes it once it expired.
    common::kill9(first.id());
    let _ = first.wait();
    let killed = Instant::now();
    let early = lab.output_on("ctl-2", &["resume", &run]);
    let said = text(&early);
    assert_eq!(early.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("run {run} is being driven by {}", holder(first.id()))), "{said}");
    assert!(killed.elapsed() < Duration::from_millis(OWNER_ALIVE_WITHIN_MS.unsigned_abs()), "refused within the lease");
    let resumed = loop {
        std::thread::sleep(Duration::from_secs(2));
        let out = lab.output_on("ctl-2", &["resume", &run]);
        if out.status.code() == Some(0) {
            break out;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "never taken over:\n{}", text(&out));
    };
    eprintln!("taken over {:.1} s after the kill:\n{}", killed.elapsed().as_secs_f64(), text(&resumed));
    let owner = lab.run(&run).owner.expect("an owner");
    assert!(owner.starts_with("ctl-2:"), "{owner}");
    lab.assert_all_moved_where_journal_says(&run, &text(&resumed));
    lab.lab.check_ok();

    // A run through a restart of the database: 10 s without it, in the middle of a move.
    let plan = lab.plan("through-restart", &[("vm-1", "host-c"), ("vm-2", "host-b"), ("vm-3", "host-b")]);
    let mut migrate = lab.spawn(&["migrate", path_str(&plan), "--cluster", cluster_arg], &[]);
    let restarted = stdout_run_id(&mut migrate);
    let waited = Instant::now();
    while !lab.moves(&restarted).iter().any(|m| m.status == Status::Migrating) {
        assert!(waited.elapsed() < Duration::from_secs(60), "no move started");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop().expect("the database stops");
    std::thread::sleep(Duration::from_secs(10));
    server.start_again().expect("the database starts again");
    let out = common::wait_or_fail(migrate, "ferry migrate through the restart");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    lab.assert_all_moved_where_journal_says(&restarted, &said);
    let attempts = lab.attempts(&restarted);
    assert_eq!(attempts.len(), 3, "one attempt per move, none journaled twice: {attempts:#?}\n{said}");
    lab.lab.check_ok();
}
