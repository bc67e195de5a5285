//! `ferry roll` on a real lab. Port blocks 20500, 21500, 22500 and 23500.
//!
//! The hook does what an upgrade does to a host: its libvirtd is taken down (the host is
//! gone from the cluster) and started again (`ferry lab up`, which starts only what is not
//! running); the check asks the host's libvirtd for its version until it answers. Each
//! hook writes when it ran to a log the test reads.

mod common;

use std::path::{Path, PathBuf};

use common::{path_str, TestLab};
use ferry_journal::{Journal, JournalConfig, Run, RunKind, RunState};

const LAB_ARGS: [&str; 6] = ["--hosts", "4", "--vms", "4", "--mem", "96"];

/// A lab with the roll's hook, check and journal in its directory.
struct RollLab {
    lab: TestLab,
    port: u16,
}

impl RollLab {
    fn up(name: &str, port: u16) -> RollLab {
        let lab = RollLab { lab: TestLab::up(name, port, &LAB_ARGS), port };
        lab.lab.check_ok();
        lab.write_scripts();
        lab
    }

    fn dir(&self) -> &Path {
        &self.lab.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The hook (libvirtd down and up again; refuses while a `fail-HOST` file exists) and
    /// the check (the host's libvirtd answers).
    fn write_scripts(&self) {
        let dir = self.lab.dir_str();
        let ferry = env!("CARGO_BIN_EXE_ferry");
        let lab_args = LAB_ARGS.join(" ");
        let hook = format!(
            "#!/bin/sh\nset -e\n\
             if [ -e \"{dir}/fail-$FERRY_HOST\" ]; then echo \"upgrade of $FERRY_HOST failed\" >&2; exit 3; fi\n\
             echo \"$FERRY_HOST begin $(date +%s%3N) $FERRY_VMS\" >> \"{dir}/hooks.log\"\n\
             pid=$(cat \"{dir}/hosts/$FERRY_HOST/libvirtd.pid\")\n\
             kill \"$pid\"\n\
             while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done\n\
             FERRY_LAB_CACHE=\"{cache}\" \"{ferry}\" lab up --dir \"{dir}\" --port-base {port} {lab_args} > /dev/null\n\
             echo \"$FERRY_HOST end $(date +%s%3N)\" >> \"{dir}/hooks.log\"\n",
            cache = common::cache_dir().display(),
            port = self.port,
        );
        // A hook that only takes its time, where the test is about which hosts go together.
        let quick = format!(
            "#!/bin/sh\necho \"$FERRY_HOST begin $(date +%s%3N)\" >> \"{dir}/hooks.log\"\nsleep 1\n\
             echo \"$FERRY_HOST end $(date +%s%3N)\" >> \"{dir}/hooks.log\"\n"
        );
        let check = format!(
            "#!/bin/sh\n\
             uri=$(awk -v h=\"$FERRY_HOST\" '/^name = /{{n=($3==\"\\\"\"h\"\\\"\")}} n && /^uri = /{{gsub(/\"/,\"\",$3); print $3; exit}}' \"{dir}/cluster.toml\")\n\
             exec virsh -c \"$uri\" version\n"
        );
        for (name, text) in [("hook.sh", hook), ("quick.sh", quick), ("check.sh", check)] {
            let path = self.path(name);
            std::fs::write(&path, text).expect("write a script");
            let out = std::process::Command::new("chmod").arg("+x").arg(&path).output().expect("chmod");
            assert!(out.status.success());
        }
    }

    /// The roll plan with hook script `hook` and the extra `[roll]` lines `roll`.
    fn plan(&self, hook: &str, roll: &str) -> PathBuf {
        let text = format!(
            "[plan]\nname = \"roll-lab\"\n[limits]\nper_source = 2\n[policy]\ndelete_source_volumes = true\n\
             [roll]\nhosts = \"all\"\nhook = \"{}\"\nhook_timeout_s = 300\ncheck = \"{}\"\ncheck_timeout_s = 120\n\
             return = true\n{roll}",
            self.path(hook).display(),
            self.path("check.sh").display()
        );
        let path = self.path("roll.toml");
        std::fs::write(&path, text).expect("write the plan");
        path
    }

    /// `ferry ARGS --state S` (and `--cluster C` unless resuming): (exit code, stdout + stderr).
    fn ferry(&self, args: &[&str], cluster: bool) -> (Option<i32>, String) {
        let (cluster_file, state) = (self.path("cluster.toml"), self.path("journal.db"));
        let mut full: Vec<&str> = args.to_vec();
        if cluster {
            full.extend(["--cluster", path_str(&cluster_file)]);
        }
        full.extend(["--state", path_str(&state)]);
        let out = common::ferry(&full);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    fn runs(&self) -> Vec<Run> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let journal =
                Journal::open_path(&self.path("journal.db"), &JournalConfig::default()).await.expect("journal opens");
            journal.runs().await.expect("runs")
        })
    }

    /// The hook log: (host, "begin" | "end", unix ms).
    fn hooks(&self) -> Vec<(String, String, u64)> {
        std::fs::read_to_string(self.path("hooks.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let host = w.next().expect("host").to_string();
                let what = w.next().expect("begin or end").to_string();
                (host, what, w.next().expect("time").parse().expect("ms"))
            })
            .collect()
    }

    fn guests(&self) -> Vec<(String, String, Vec<String>)> {
        status_of(&self.lab)
    }
}

/// The whole job with `max_unavailable = 1`: host-b's hook fails first, so the roll stops
/// there with host-b drained; once fixed, `ferry resume` runs host-b's hook again and the
/// roll goes on. Every host in order, each libvirtd really restarted, every VM back on its
/// own host with its UUID, the guests unharmed.
#[test]
fn a_roll_restarting_each_libvirtd_stops_at_a_failed_hook_and_resumes_to_the_end() {
    let lab = RollLab::up("roll", 20_500);
    let before = lab.guests();
    let plan = lab.plan("hook.sh", "max_unavailable = 1\non_host_failure = \"stop\"\n");
    std::fs::write(lab.path("fail-host-b"), "").expect("write the failure switch");

    let (code, out) = lab.ferry(&["roll", path_str(&plan)], true);
    assert_eq!(code, Some(1), "the roll stops at host-b's failed hook:\n{out}");
    assert!(out.contains("roll stopped at wave 2"), "{out}");
    assert!(out.contains("upgrade of host-b failed"), "the hook's own words are shown:\n{out}");
    let roll = lab.runs().into_iter().find(|r| r.kind == RunKind::Roll).expect("the roll's run");
    assert_eq!(roll.state, RunState::Stopped);
    // host-b stays drained: its guest waits elsewhere.
    let drained: Vec<_> = lab.guests().into_iter().filter(|g| g.2.contains(&"host-b".to_string())).collect();
    assert!(drained.is_empty(), "host-b holds {drained:?} after its failed hook");
    assert_eq!(lab.hooks().iter().filter(|h| h.1 == "begin").count(), 1, "only host-a's hook ran:\n{out}");

    std::fs::remove_file(lab.path("fail-host-b")).expect("fix host-b");
    let (code, out) = lab.ferry(&["resume", &roll.id], false);
    assert_eq!(code, Some(0), "the resumed roll finishes:\n{out}");
    assert!(out.contains("host-b: its hook failed earlier: running it again"), "{out}");

    // Every host once, in the cluster file's order, one at a time.
    let hooks = lab.hooks();
    let order: Vec<&str> = hooks.iter().filter(|h| h.1 == "begin").map(|h| h.0.as_str()).collect();
    assert_eq!(order, ["host-a", "host-b", "host-c", "host-d"], "{hooks:?}");
    for pair in hooks.windows(2) {
        assert!(pair[0].2 <= pair[1].2, "hooks overlap: {hooks:?}");
        if pair[0].1 == "begin" {
            assert_eq!((pair[1].0.as_str(), pair[1].1.as_str()), (pair[0].0.as_str(), "end"), "{hooks:?}");
        }
    }
    // Each wave is a drain run of the roll, and its hosts' VMs came back.
    let runs = lab.runs();
    let waves: Vec<&Run> =
        runs.iter().filter(|r| r.parent.as_deref() == Some(roll.id.as_str()) && r.kind == RunKind::Drain).collect();
    assert_eq!(waves.len(), 4, "{runs:#?}");
    assert_eq!(lab.guests(), before, "every guest back on its own host with its UUID");
    let roll = runs.iter().find(|r| r.id == roll.id).expect("the roll");
    assert_eq!(roll.state, RunState::Finished);
    lab.lab.assert_each_vm_once_and_no_stray_volume(&[], &|| out.clone());
    lab.lab.check_ok();
    assert_the_report_tells_each_host(&lab, &roll.id);
}

/// `ferry report ROLL` of the roll above, in text, JSON and HTML: each host done in its own
/// wave, its hook exited 0 (host-b's on its second run), its VM back.
fn assert_the_report_tells_each_host(lab: &RollLab, roll: &str) {
    let hosts = ["host-a", "host-b", "host-c", "host-d"];
    let (code, text) = lab.ferry(&["report", roll], false);
    assert_eq!(code, Some(0), "{text}");
    for (i, host) in hosts.iter().enumerate() {
        let block = host_block(&text, host);
        assert!(block.starts_with(&format!("  {host}  wave {}  done\n", i + 1)), "{block}\n{text}");
        let hook = format!("    hook    `{}` exited 0 after ", lab.path("hook.sh").display());
        assert!(block.contains(&hook), "{block}");
        assert!(block.contains("    check   passed after "), "{block}");
        assert!(block.contains(", every VM back (run r-"), "{block}");
        assert!(block.contains("    drain   ") && block.contains(" SUCCESS"), "{block}");
    }
    assert!(host_block(&text, "host-b").contains("; ran 2 times\n"), "{text}");

    let (code, json) = lab.ferry(&["report", roll, "--format", "json"], false);
    assert_eq!(code, Some(0), "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("the report is JSON");
    let reported = report["roll"]["hosts"].as_array().expect("hosts");
    let names: Vec<&str> = reported.iter().filter_map(|h| h["host"].as_str()).collect();
    assert_eq!(names, hosts, "{json}");
    for host in reported {
        assert_eq!(host["outcome"], "done", "{host:#}");
        assert_eq!(host["hook"]["result"], serde_json::json!({ "kind": "exited", "code": 0 }), "{host:#}");
        assert_eq!(host["check"]["result"]["code"], 0, "{host:#}");
        assert_eq!(host["return"]["all_back"], true, "{host:#}");
        assert!(host["return"]["span"]["ended_ms"].as_i64() > host["drain"]["span"]["ended_ms"].as_i64(), "{host:#}");
    }
    for vm in report["roll"]["vms"].as_array().expect("vms") {
        assert_eq!(vm["ends_on"], vm["home"], "every VM home: {vm:#}");
    }

    let page = lab.path("roll.html");
    let (code, out) = lab.ferry(&["report", roll, "--format", "html", "-o", path_str(&page)], false);
    assert_eq!(code, Some(0), "{out}");
    let page = std::fs::read_to_string(&page).expect("the page");
    let waves = &page[page.find("<section id=\"waves\">").expect("the timeline of waves")..];
    let waves = &waves[..waves.find("</section>").expect("its end")];
    for host in hosts {
        let lane = format!("<g class=\"lane\" data-host=\"{host}\"");
        let lane = &waves[waves.find(&lane).unwrap_or_else(|| panic!("{host}'s lane: {waves}"))..];
        let lane = &lane[..lane.find("</g>").expect("its end")];
        for step in ["drain", "hook", "check", "back"] {
            assert!(lane.contains(&format!("<rect class=\"{step}\"")), "{host}: no {step}: {lane}");
        }
    }
}

/// The lines of `host`'s block in a roll's text report.
fn host_block<'a>(text: &'a str, host: &str) -> &'a str {
    let from = text.find(&format!("\n  {host}  ")).unwrap_or_else(|| panic!("no block of {host}:\n{text}")) + 1;
    let rest = &text[from..];
    // Up to the next host's block or the blank line before the VMs, whichever comes first.
    let ends = [rest[1..].find("\n  h").map(|e| e + 2), rest.find("\n\n").map(|e| e + 1)];
    &rest[..ends.into_iter().flatten().min().unwrap_or(rest.len())]
}

/// Two hosts at a time, but host-a and host-b form a redundancy group: they are never in
/// maintenance together, while two other hosts are. (A hook that only takes a second.)
#[test]
fn a_redundancy_group_is_never_in_maintenance_together() {
    let lab = RollLab::up("roll-pairs", 21_500);
    let before = lab.guests();
    let plan = lab.plan("quick.sh", "max_unavailable = 2\nredundancy_groups = [[\"host-a\", \"host-b\"]]\n");
    let (code, out) = lab.ferry(&["roll", path_str(&plan), "--yes"], true);
    assert_eq!(code, Some(0), "{out}");

    let hooks = lab.hooks();
    let window = |host: &str| {
        let at = |what: &str| hooks.iter().find(|h| h.0 == host && h.1 == what).map(|h| h.2);
        (at("begin").unwrap_or_else(|| panic!("{host}'s hook ran: {hooks:?}")), at("end").expect("it ended"))
    };
    let (a, b) = (window("host-a"), window("host-b"));
    assert!(a.1 < b.0 || b.1 < a.0, "host-a {a:?} and host-b {b:?} were in maintenance together");
    // The limit of two was used: some wave drained two hosts.
    let runs = lab.runs();
    let roll = runs.iter().find(|r| r.kind == RunKind::Roll).expect("the roll");
    let waves: Vec<&Run> = runs.iter().filter(|r| r.parent.as_deref() == Some(roll.id.as_str())).collect();
    assert!(waves.iter().any(|w| w.plan_name.contains(", ")), "no wave of two hosts: {waves:#?}");
    assert!(waves.len() < 4, "{waves:#?}");
    assert_eq!(lab.guests(), before, "every guest back on its own host with its UUID");
    lab.lab.assert_each_vm_once_and_no_stray_volume(&[], &|| out.clone());
    lab.lab.check_ok();

    // Three guests tagged into one anti-affinity group (`ferry tag`, in their domains'
    // metadata) never share a host through a roll without return, one host at a time; the
    // roll ends with a rebalance by the plan's placement.
    let mut members: std::collections::BTreeMap<String, String> =
        before.iter().take(3).map(|g| (g.0.clone(), g.2[0].clone())).collect();
    assert_eq!(members.values().collect::<std::collections::BTreeSet<_>>().len(), 3, "{before:?}");
    for vm in members.keys() {
        let cluster = lab.path("cluster.toml");
        let out = common::ferry(&["tag", vm, "anti_affinity=web", "--cluster", path_str(&cluster)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let plan = lab.plan("quick.sh", "max_unavailable = 1\n");
    let text = std::fs::read_to_string(&plan)
        .expect("the plan")
        .replace("return = true", "return = false")
        .replace("delete_source_volumes = true\n", "delete_source_volumes = true\nplacement = \"spread\"\n");
    std::fs::write(&plan, text).expect("write the plan");
    let (code, out) = lab.ferry(&["roll", path_str(&plan), "--yes"], true);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rebalance of the roll's hosts by placement spread"), "{out}");
    let runs = lab.runs();
    let roll = runs.iter().filter(|r| r.kind == RunKind::Roll).max_by_key(|r| r.created_ms).expect("the roll");
    // Its waves and its rebalance (without return, no wave has a return of its own).
    let mut parts: Vec<&Run> = runs.iter().filter(|r| r.parent.as_deref() == Some(roll.id.as_str())).collect();
    parts.sort_by_key(|r| r.created_ms);
    assert!(parts.len() >= 4, "a wave per host: {parts:#?}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal =
        rt.block_on(Journal::open_path(&lab.path("journal.db"), &JournalConfig::default())).expect("journal opens");
    for run in parts {
        for m in rt.block_on(journal.moves(&run.id)).expect("moves") {
            assert!(m.status.is_success(), "{m:?}\n{out}");
            if let (Some(at), Some(to)) = (members.get_mut(&m.vm), m.target.clone()) {
                *at = to;
            }
        }
        let hosts: std::collections::BTreeSet<&String> = members.values().collect();
        assert_eq!(hosts.len(), 3, "two of {members:?} on one host after {}\n{out}", run.plan_name);
    }
    let now = lab.guests();
    for (vm, at) in &members {
        assert!(now.iter().any(|g| &g.0 == vm && g.2 == [at.clone()]), "{vm} runs on {at} alone: {now:?}");
    }
    lab.lab.assert_each_vm_once_and_no_stray_volume(&[], &|| out.clone());
    lab.lab.check_ok();
}

/// `ferry roll` killed (SIGKILL) during a wave's drain, during a hook and during a return,
/// each time followed by `ferry resume ROLL` (with `rerun_hooks`): the roll completes, every
/// VM back on its own host, nothing doubled or left behind.
#[test]
fn a_roll_killed_in_a_drain_a_hook_and_a_return_resumes_to_the_end() {
    let lab = TestLab::up("roll-kills", 22_500, &["--hosts", "3", "--vms", "3", "--mem", "96"]);
    lab.check_ok();
    let dir = lab.dir.clone();
    let before = status_of(&lab);
    let log = dir.join("hooks.log");
    let plan = dir.join("roll.toml");
    std::fs::write(
        &plan,
        format!(
            "[plan]\nname = \"roll-kills\"\n[limits]\nper_source = 2\n[policy]\ndelete_source_volumes = true\n\
             [hooks]\nrerun_hooks = true\n\
             [roll]\nhosts = \"all\"\nhook = \"echo $FERRY_HOST begin >> {log}; sleep 4; echo $FERRY_HOST end >> {log}\"\n\
             hook_timeout_s = 60\nmax_unavailable = 1\nreturn = true\n",
            log = log.display()
        ),
    )
    .expect("write the plan");
    let (cluster, state) = (dir.join("cluster.toml"), dir.join("journal.db"));
    let spawn = |args: &[&str], name: &str| {
        let out = std::fs::File::create(dir.join(format!("{name}.out"))).expect("output file");
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--state", path_str(&state)])
            .env("FERRY_LAB_CACHE", common::cache_dir())
            .env("RUST_LOG", "warn")
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("ferry runs")
    };
    let runs = || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            match Journal::open_path(&state, &JournalConfig::default()).await {
                Ok(journal) => {
                    let mut found = Vec::new();
                    for run in journal.runs().await.unwrap_or_default() {
                        let moves = journal.moves(&run.id).await.unwrap_or_default();
                        found.push((run, moves));
                    }
                    found
                }
                Err(_) => Vec::new(),
            }
        })
    };
    let wave = |found: &[(Run, Vec<ferry_journal::Move>)], n: usize| {
        found.iter().find(|(r, _)| r.kind == RunKind::Drain && r.plan_name.contains(&format!("wave {n} "))).cloned()
    };
    let kill_when = |mut child: std::process::Child, what: &str, ready: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !ready() {
            assert!(child.try_wait().expect("wait").is_none(), "ferry ended before {what}");
            assert!(started.elapsed() < std::time::Duration::from_secs(300), "no {what} in 300 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    };

    // 1. In wave 1's drain: a migration out of host-a in flight.
    let child = spawn(&["roll", path_str(&plan), "--yes", "--cluster", path_str(&cluster)], "roll");
    kill_when(child, "wave 1's migration", &|| {
        wave(&runs(), 1).is_some_and(|(_, moves)| moves.iter().any(|m| m.status == ferry_model::Status::Migrating))
    });
    let roll = runs().into_iter().find(|(r, _)| r.kind == RunKind::Roll).expect("the roll").0.id;

    // 2. In host-b's hook.
    let hooks_begun = |host: &str| {
        std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| *l == format!("{host} begin")).count()
    };
    let child = spawn(&["resume", &roll], "resume-1");
    kill_when(child, "host-b's hook", &|| hooks_begun("host-b") == 1);

    // 3. In wave 3's return: its rollback run started.
    let child = spawn(&["resume", &roll], "resume-2");
    kill_when(child, "wave 3's return", &|| {
        let found = runs();
        let Some((wave3, _)) = wave(&found, 3) else { return false };
        found.iter().any(|(r, _)| r.kind == RunKind::Rollback && r.parent.as_deref() == Some(wave3.id.as_str()))
    });

    let out = common::ferry(&["resume", &roll, "--state", path_str(&state)]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let outputs = || {
        let mut all = text.clone();
        for name in ["roll", "resume-1", "resume-2"] {
            all += &format!(
                "\n--- {name}\n{}",
                std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default()
            );
        }
        all
    };
    assert_eq!(out.status.code(), Some(0), "{}", outputs());
    assert_eq!(hooks_begun("host-b"), 2, "host-b's interrupted hook ran again:\n{}", outputs());
    for host in ["host-a", "host-c"] {
        assert_eq!(hooks_begun(host), 1, "{host}'s hook ran once:\n{}", outputs());
    }
    let found = runs();
    let (roll_run, _) = found.iter().find(|(r, _)| r.id == roll).expect("the roll");
    assert_eq!(roll_run.state, RunState::Finished, "{}", outputs());
    assert_eq!(status_of(&lab), before, "every guest back on its own host:\n{}", outputs());
    lab.assert_each_vm_once_and_no_stray_volume(&[], &outputs);
    lab.check_ok();
}

/// `ferry abort ROLL` while wave 1's migration runs: it is passed on to the wave, whose
/// migration is cancelled (or, when it was quicker, whose hook and return finish), and no
/// other wave starts; the roll ends ABORTED. Then a roll whose deadline passes during wave
/// 1's hook starts no wave 2 and stops saying so. Last, a roll where one guest sits its
/// host's maintenance out (`maintenance = "shutdown"`: off during the hook, running again
/// after), another keeps its host out of the roll (`"stay"`) and a third leaves cold. Each time every guest is on
/// its own host, healthy, and nothing is left behind.
#[test]
fn a_roll_aborted_or_past_its_deadline_starts_no_other_wave() {
    let lab = TestLab::up("roll-stops", 23_500, &["--hosts", "3", "--vms", "3", "--mem", "96"]);
    lab.check_ok();
    let dir = lab.dir.clone();
    let before = status_of(&lab);
    let (cluster, state, log) = (dir.join("cluster.toml"), dir.join("journal.db"), dir.join("hooks.log"));
    // The hook holds its host in maintenance until the test creates `go-NAME` (at once for
    // the roll `aborting`). `header`: lines of [plan]; `tail`: tables after [roll].
    let plan = |name: &str, header: &str, tail: &str| {
        let path = dir.join(format!("{name}.toml"));
        let go = dir.join(format!("go-{name}"));
        if name == "aborting" {
            std::fs::write(&go, "").expect("a hook that does not wait");
        }
        std::fs::write(
            &path,
            format!(
                "[plan]\nname = \"{name}\"\n{header}[limits]\nper_source = 2\n[policy]\ndelete_source_volumes = true\n\
                 shutdown_timeout_s = 10\n\
                 [roll]\nhosts = \"all\"\nhook = \"echo {name} $FERRY_HOST >> {log}; while [ ! -e {go} ]; do sleep 0.2; done\"\n\
                 hook_timeout_s = 120\nmax_unavailable = 1\nreturn = true\n{tail}",
                log = log.display(),
                go = go.display()
            ),
        )
        .expect("write the plan");
        (path, go)
    };
    let hooks = || std::fs::read_to_string(&log).unwrap_or_default();
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--state", path_str(&state)])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ferry runs")
    };
    let until = |what: &str, ready: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !ready() {
            assert!(started.elapsed() < std::time::Duration::from_secs(120), "no {what} in 120 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let text = |out: std::process::Output| {
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let journal = || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let journal = Journal::open_path(&state, &JournalConfig::default()).await.expect("journal opens");
            let mut found = Vec::new();
            for run in journal.runs().await.expect("runs") {
                let moves = journal.moves(&run.id).await.unwrap_or_default();
                found.push((run, moves));
            }
            found
        })
    };
    let runs = || journal().into_iter().map(|(run, _)| run).collect::<Vec<Run>>();
    let roll_named = |name: &str| {
        let runs = runs();
        let roll = runs.iter().find(|r| r.kind == RunKind::Roll && r.plan_name == name).expect("the roll").clone();
        let waves = runs.iter().filter(|r| r.parent.as_deref() == Some(roll.id.as_str())).count();
        (roll, waves)
    };

    // 1. Aborted in wave 1's migration.
    let (aborting, _) = plan("aborting", "", "");
    let rolling = spawn(&["roll", path_str(&aborting), "--yes", "--cluster", path_str(&cluster)]);
    until("wave 1's migration", &|| {
        journal().iter().any(|(r, moves)| {
            r.kind == RunKind::Drain && moves.iter().any(|m| m.status == ferry_model::Status::Migrating)
        })
    });
    let (roll, _) = roll_named("aborting");
    let abort = spawn(&["abort", &roll.id]);
    let (code, out) = text(rolling.wait_with_output().expect("the roll ends"));
    let (_, abort_out) = text(abort.wait_with_output().expect("the abort ends"));
    assert_eq!(code, Some(1), "{out}\n--- abort\n{abort_out}");
    assert!(out.contains("aborted at wave 1"), "{out}");
    assert!(abort_out.contains(&format!("run {} aborted", roll.id)), "{abort_out}");
    let (roll, waves) = roll_named("aborting");
    assert_eq!((roll.state, waves), (RunState::Aborted, 1), "no wave after the abort:\n{out}");
    assert!(hooks().lines().count() <= 1, "no hook after wave 1's:\n{}", hooks());
    // The abort cancelled wave 1's migration (its guest stayed home) or, when the migration
    // was quicker, stopped its hook before the return: then the guest waits where it went,
    // and a rollback of the wave brings it back.
    if status_of(&lab) != before {
        let wave = runs().into_iter().find(|r| r.parent.as_deref() == Some(roll.id.as_str())).expect("wave 1");
        assert!(out.contains("its hook was stopped by `ferry abort`"), "{out}");
        let (code, back) =
            text(spawn(&["rollback", &wave.id, "--cluster", path_str(&cluster)]).wait_with_output().expect("ends"));
        assert_eq!(code, Some(0), "{back}");
    }
    assert_eq!(status_of(&lab), before, "host-a's guest stayed or came back:\n{out}");
    lab.assert_each_vm_once_and_no_stray_volume(&[], &|| out.clone());

    // 2. The deadline passes during wave 1's hook.
    let deadline_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 15;
    let shown = ferry_plan::time::format_rfc3339(deadline_s as i64);
    let (late, go) = plan("late", &format!("deadline = \"{shown}\"\n"), "");
    let rolling = spawn(&["roll", path_str(&late), "--yes", "--cluster", path_str(&cluster)]);
    until("wave 1's hook", &|| hooks().contains("late host-a"));
    until("the deadline", &|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() > deadline_s
    });
    std::fs::write(&go, "").expect("end the hook");
    let (code, out) = text(rolling.wait_with_output().expect("the roll ends"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("the plan's deadline ({shown}) has passed: wave 2 (host-b)")), "{out}");
    let (roll, waves) = roll_named("late");
    assert_eq!((roll.state, waves), (RunState::Stopped, 1), "no wave after the deadline:\n{out}");
    assert_eq!(status_of(&lab), before, "host-a's guest came back:\n{out}");
    lab.assert_each_vm_once_and_no_stray_volume(&[], &|| out.clone());

    // 3. Sitting the maintenance out, staying, and leaving cold.
    let guest_on = |host: &str| before.iter().find(|g| g.2 == [host]).map(|g| g.0.clone()).expect("a guest there");
    let (sitting, staying, cold) = (guest_on("host-a"), guest_on("host-b"), guest_on("host-c"));
    // The guest that sits it out is told so by its tag (`ferry tag`), not by the plan; the
    // plan's word wins over a tag.
    let tag = |args: &[&str]| {
        let mut full = vec!["tag"];
        full.extend(args);
        full.extend(["--cluster", path_str(&cluster)]);
        let out = common::ferry(&full);
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = tag(&[&sitting, "maintenance=reboot"]);
    assert_eq!(code, Some(2), "a bad tag is refused: {out}");
    assert_eq!(
        tag(&[&sitting, "maintenance=shutdown"]),
        (Some(0), format!("{sitting} on host-a: maintenance=shutdown\n"))
    );
    assert_eq!(tag(&[&staying, "maintenance=live"]).0, Some(0));
    let (shutdown, go) =
        plan("shutdown", "", &format!("[roll.maintenance]\n{staying} = \"stay\"\n{cold} = \"cold\"\n"));
    let rolling = spawn(&["roll", path_str(&shutdown), "--yes", "--cluster", path_str(&cluster)]);
    until("host-a's hook", &|| hooks().contains("shutdown host-a"));
    let during = status_of(&lab);
    let off = during.iter().find(|g| g.0 == sitting).expect("still defined");
    assert!(off.2.is_empty(), "{sitting} is shut down during host-a's maintenance: {during:?}");
    std::fs::write(&go, "").expect("end the hook");
    let (code, out) = text(rolling.wait_with_output().expect("the roll ends"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("host-b is left out of the roll: {staying} stays")), "{out}");
    assert!(out.contains(&format!("{sitting} on host-a: started again after the host's maintenance")), "{out}");
    assert!(hooks().contains("shutdown host-c") && !hooks().contains("shutdown host-b"), "{}", hooks());
    let (roll, _) = roll_named("shutdown");
    let left_cold = journal().into_iter().any(|(r, moves)| {
        r.parent.as_deref() == Some(roll.id.as_str())
            && moves.iter().any(|m| m.vm == cold && m.status == ferry_model::Status::SuccessCold)
    });
    assert!(left_cold, "{cold} left host-c cold:\n{out}");
    assert_eq!(status_of(&lab), before, "{sitting} runs again on host-a, every guest home:\n{out}");
    lab.assert_each_vm_once_and_no_stray_volume(&[], &|| out.clone());
    // The tag stayed on the domain through its shutdown and start.
    assert_eq!(tag(&[&sitting]), (Some(0), format!("{sitting} on host-a: maintenance=shutdown\n")));
    assert_eq!(tag(&[&sitting, "--remove", "maintenance"]), (Some(0), format!("{sitting} on host-a: no tags\n")));
    // The guests shut down and moved cold booted again; the other did not.
    lab.check_ok_with(&["--allow-restart", &sitting, "--allow-restart", &cold]);
}

/// Each guest's (name, uuid, hosts it runs on), sorted by name.
fn status_of(lab: &TestLab) -> Vec<(String, String, Vec<String>)> {
    let status = lab.status_json();
    let mut vms: Vec<(String, String, Vec<String>)> = status["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_string(),
                v["uuid"].as_str().expect("uuid").to_string(),
                serde_json::from_value(v["running_on"].clone()).expect("running_on"),
            )
        })
        .collect();
    vms.sort();
    vms
}
