//! `--cluster sim:FILE`: whole runs on a simulated fleet through the binary, in virtual time.
//! No lab, no root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::ferry;
use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sim-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test directory");
    dir
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A fleet of 20 hosts and 200 VMs from `seed`, where one live migration in twenty breaks.
fn fleet(dir: &Path, seed: u64) -> PathBuf {
    let file = dir.join(format!("fleet-{seed}.toml"));
    let out = ferry(&["sim", "gen", "--hosts", "20", "--vms", "200", "--seed", &seed.to_string(), "-o", path(&file)]);
    assert!(out.status.success(), "{}", text(&out));
    let generated = std::fs::read_to_string(&file).expect("written");
    std::fs::write(&file, generated.replace("migration_error_rate = 0.0", "migration_error_rate = 0.05"))
        .expect("edited");
    file
}

/// A fleet `ferry sim gen` writes (no faults), as a `--cluster` argument.
fn generated(dir: &Path, hosts: u32, vms: u32, seed: u64) -> String {
    let fleet = dir.join("fleet.toml");
    let (hosts, vms, seed) = (hosts.to_string(), vms.to_string(), seed.to_string());
    let out = ferry(&["sim", "gen", "--hosts", &hosts, "--vms", &vms, "--seed", &seed, "-o", path(&fleet)]);
    assert!(out.status.success(), "{}", text(&out));
    format!("sim:{}", path(&fleet))
}

/// Drains three hosts to anywhere under the default limits.
fn plan(dir: &Path) -> PathBuf {
    let file = dir.join("drain.toml");
    std::fs::write(
        &file,
        "[plan]\nname = \"drain three\"\n\n[limits]\ncluster = 6\nper_source = 2\nper_target = 2\n\n\
         [[drain]]\nhost = \"h-0001\"\n\n[[drain]]\nhost = \"h-0002\"\n\n[[drain]]\nhost = \"h-0003\"\n",
    )
    .expect("written");
    file
}

/// Runs the plan on the fleet with a journal of its own; returns the run id and
/// `ferry report --format json` with the run id replaced and without the time the report was
/// generated (the wall clock's, not the run's).
fn run(dir: &Path, fleet: &Path, plan: &Path, name: &str) -> (String, String) {
    let state = dir.join(format!("{name}.db"));
    let cluster = format!("sim:{}", path(fleet));
    let out = ferry(&["migrate", path(plan), "--cluster", &cluster, "--state", path(&state)]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a run id")
        .to_string();
    let out = ferry(&["report", &id, "--state", path(&state), "--format", "json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let mut report: Value = serde_json::from_slice(&out.stdout).expect("json");
    report.as_object_mut().expect("an object").remove("generated_ms");
    (id.clone(), serde_json::to_string_pretty(&report).expect("json").replace(&id, "RUN"))
}

#[test]
fn the_same_seed_gives_the_same_report_byte_for_byte() {
    let dir = dir("determinism");
    let (fleet7, plan) = (fleet(&dir, 7), plan(&dir));
    let (id_a, a) = run(&dir, &fleet7, &plan, "a");
    let (id_b, b) = run(&dir, &fleet7, &plan, "b");
    assert_ne!(id_a, id_b, "two runs, two ids");
    assert_eq!(a, b, "the same fleet and seed, the same report");

    // It is a real run: moves, some broken by the seed's faults, in virtual time from the
    // fleet's start.
    let report: Value = serde_json::from_str(&a).expect("json");
    assert_eq!(report["run"]["created_ms"], 1_767_225_600_000_i64);
    let moves = report["moves"].as_array().expect("moves");
    assert!(moves.len() >= 20, "{}", moves.len());
    let statuses: Vec<&str> = moves.iter().map(|m| m["status"].as_str().unwrap_or("?")).collect();
    assert!(statuses.contains(&"SUCCESS"), "{statuses:?}");
    assert!(statuses.iter().all(|s| ["SUCCESS", "FAILURE-WAIT"].contains(s)), "{statuses:?}");
    assert!(report["summary"]["makespan_ms"].as_i64().is_some_and(|m| m > 10_000), "{}", report["summary"]);

    // Events in the order they happened: a control the driver applied during a job is
    // journaled before the job's switch-over, not with the move's end.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let events = runtime.block_on(async {
        let journal = ferry_journal::Journal::open(path(&dir.join("a.db"))).await.expect("the journal");
        journal.events(&id_a, None).await.expect("events")
    });
    let mut applied = 0;
    for event in events.iter().filter(|e| e.message.starts_with("applied ")) {
        let switched = events.iter().find(|e| e.uuid == event.uuid && e.message == "switched-over: begun");
        if let Some(switched) = switched {
            assert!(event.id < switched.id, "{event:?} journaled after {switched:?}");
            applied += 1;
        }
    }
    assert!(applied > 0, "no control applied during a job that switched over");

    // Another seed, another fleet and another story.
    let fleet8 = fleet(&dir, 8);
    let (_, c) = run(&dir, &fleet8, &plan, "c");
    assert_ne!(a, c);
}

/// `ferry report RUN | head`, `ferry preview PLAN | head`, `ferry inventory | head`: the
/// reader leaves early; ferry ends as the command's own exit code says, without a panic.
#[test]
fn output_read_in_part_ends_quietly() {
    let dir = dir("pipe");
    let (fleet, plan) = (fleet(&dir, 7), plan(&dir));
    let (id, _) = run(&dir, &fleet, &plan, "a");
    let (state, preview_state) = (dir.join("a.db"), dir.join("p.db"));
    let big = generated(&dir, 100, 2000, 7);
    let drain = dir.join("drain-ten.toml");
    let hosts: String = (1..=10).map(|i| format!("[[drain]]\nhost = \"h-{i:04}\"\n")).collect();
    std::fs::write(&drain, format!("[plan]\nname = \"drain ten\"\n\n{hosts}")).expect("written");
    let commands: [Vec<&str>; 3] = [
        vec!["report", &id, "--state", path(&state), "--format", "json"],
        vec!["preview", path(&drain), "--cluster", &big, "--state", path(&preview_state)],
        vec!["inventory", "--cluster", &big],
    ];
    for args in commands {
        let whole = ferry(&args);
        // Larger than a pipe's buffer (64 KiB): the reader's leaving is seen by a write.
        assert!(whole.stdout.len() > 128 * 1024, "{args:?}: {} bytes", whole.stdout.len());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ferry runs");
        let mut head = [0u8; 100];
        std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut head).expect("the output begins");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("ferry ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), whole.status.code(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn preview_and_move_run_on_a_simulated_fleet_and_bad_fleets_are_refused() {
    let dir = dir("commands");
    let (fleet, plan) = (fleet(&dir, 3), plan(&dir));
    let cluster = format!("sim:{}", path(&fleet));
    let out = ferry(&["preview", path(&plan), "--cluster", &cluster, "--output", "json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let preview: Value = serde_json::from_slice(&out.stdout).expect("json");
    let vm = &preview["vms"][0];
    assert_eq!(vm["estimate"]["dirty_measured"], Value::Bool(true), "a simulation knows its dirty rates: {vm}");

    let inventory = ferry(&["inventory", "--cluster", &cluster, "--output", "json"]);
    let inventory: Value = serde_json::from_slice(&inventory.stdout).expect("json");
    let name = inventory["vms"][0]["name"].as_str().expect("a VM").to_string();
    let from = inventory["vms"][0]["host"].as_str().expect("a host").to_string();
    let to = if from == "h-0001" { "h-0002" } else { "h-0001" };
    let state = dir.join("move.db");
    let out = ferry(&["move", &name, "--to", to, "--cluster", &cluster, "--state", path(&state), "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["status"], "SUCCESS");
    assert!(summary["wall_ms"].as_u64().is_some_and(|w| w > 1700), "{summary}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[host]]\nname = \"a\"\nmemory_mib = 1024\nlink_mib_s = 0\n").expect("written");
    let out = ferry(&["preview", path(&plan), "--cluster", &format!("sim:{}", path(&bad))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.toml:1: host[0].link_mib_s: must be a positive bandwidth"), "{}", text(&out));
}

/// The first `run ID` line of `out`.
fn run_id(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a run id")
        .to_string()
}

/// Where each VM is, by name.
fn placement(cluster: &str) -> Vec<(String, String)> {
    let out = ferry(&["inventory", "--cluster", cluster, "--output", "json"]);
    let inventory: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut at: Vec<(String, String)> = inventory["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or("?").to_string(), v["host"].as_str().unwrap_or("?").to_string()))
        .collect();
    at.sort();
    at
}

#[test]
fn drain_return_and_rollback_run_on_a_simulated_fleet_and_cleanup_refuses_it() {
    let dir = dir("back");
    let cluster = generated(&dir, 6, 30, 3);
    let state = dir.join("journal.db");
    let home = placement(&cluster);
    let on_first: Vec<&String> = home.iter().filter(|(_, h)| h == "h-0001").map(|(v, _)| v).collect();
    assert!(!on_first.is_empty(), "{home:?}");

    // A drain that returns after its hook: the hook sees the host empty, the VMs come back in
    // a rollback run in the same simulated world.
    let out = ferry(&[
        "drain",
        "h-0001",
        "--return-after",
        "test \"$FERRY_HOST\" = h-0001",
        "--cluster",
        &cluster,
        "--state",
        path(&state),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let drain = run_id(&out);
    assert!(text(&out).contains("brought every VM back"), "{}", text(&out));
    let report = ferry(&["report", &drain, "--state", path(&state), "--format", "json"]);
    let report: Value = serde_json::from_slice(&report.stdout).expect("json");
    let moves = report["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), on_first.len(), "{report}");
    assert!(moves.iter().all(|m| m["status"] == "SUCCESS"), "{report}");

    // A plan run in a process of its own, rolled back in another from the journal and the
    // fleet file: the world goes on from where the run left it.
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, "[[drain]]\nhost = \"h-0002\"\n").expect("written");
    let out = ferry(&["migrate", path(&plan), "--cluster", &cluster, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let migrate = run_id(&out);
    let moved = home.iter().filter(|(_, h)| h == "h-0002").count();

    let out = ferry(&["rollback", &migrate, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(2), "without its fleet file: {}", text(&out));
    assert!(text(&out).contains("--cluster sim:FILE"), "{}", text(&out));
    let out = ferry(&["rollback", &migrate, "--from-hypervisor", "--cluster", &cluster, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = ferry(&["rollback", &migrate, "--cluster", &cluster, "--state", path(&state), "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let runs = ferry(&["runs", "--state", path(&state), "--output", "json"]);
    let runs: Value = serde_json::from_slice(&runs.stdout).expect("json");
    let rollback = runs
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["parent"] == Value::String(migrate.clone()))
        .unwrap_or_else(|| panic!("a rollback of {migrate}: {runs}"));
    let id = rollback["id"].as_str().expect("an id");
    let report = ferry(&["report", id, "--state", path(&state), "--format", "json"]);
    let report: Value = serde_json::from_slice(&report.stdout).expect("json");
    let moves = report["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), moved, "{report}");
    assert!(moves.iter().all(|m| m["status"] == "ROLLED-BACK"), "{report}");
    assert!(
        report["run"]["created_ms"].as_i64() > Some(1_767_225_600_000),
        "the rollback's virtual clock goes on from the run's end: {}",
        report["run"]
    );
    // The HTML report of a simulated run, like any other's.
    let page = dir.join("rollback.html");
    let out = ferry(&["report", id, "--state", path(&state), "--format", "html", "-o", path(&page)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = std::fs::read_to_string(&page).expect("a page");
    assert!(html.contains("<html") && html.contains("ROLLED-BACK"), "{}", &html[..html.len().min(400)]);

    // Idempotent: the world rebuilt now includes the rollback.
    let out = ferry(&["rollback", &migrate, "--cluster", &cluster, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing to roll back"), "{}", text(&out));

    // Nothing of a simulated world is left to clean up.
    let out = ferry(&["cleanup", &migrate, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = ferry(&["cleanup", "--vm", "vm-00001", "--cluster", &cluster, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_compressed_drain_teaches_the_next_preview_each_vms_ratio() {
    let dir = dir("compression");
    let fleet = fleet(&dir, 11);
    let cluster = format!("sim:{}", path(&fleet));
    let plan = dir.join("zstd.toml");
    std::fs::write(
        &plan,
        "[plan]\nname = \"zstd\"\n[policy]\nparallel_connections = 4\ncompression = \"zstd\"\n\
         [[drain]]\nhost = \"h-0001\"\n",
    )
    .expect("written");
    let state = dir.join("journal.db");
    let preview = |state: &Path| {
        let out = ferry(&["preview", path(&plan), "--cluster", &cluster, "--state", path(state), "--output", "json"]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
        let preview: Value = serde_json::from_slice(&out.stdout).expect("preview json");
        preview["vms"].as_array().expect("vms").clone()
    };
    let before = preview(&dir.join("none.db"));
    assert!(before.iter().all(|v| v["estimate"]["memory_per_byte_sent"] == 1.0), "{before:#?}");

    let out = ferry(&["migrate", path(&plan), "--cluster", &cluster, "--state", path(&state)]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    // The fleet file's ratio of each VM (the simulator's truth) is what the journal learnt.
    let generated = std::fs::read_to_string(&fleet).expect("fleet");
    let after = preview(&state);
    let mut learnt = 0;
    for vm in &after {
        let Some(ratio) = vm["estimate"]["memory_per_byte_sent"].as_f64() else { continue };
        if ratio == 1.0 {
            continue; // a move that failed before sending memory teaches nothing
        }
        learnt += 1;
        let name = vm["vm"].as_str().expect("name");
        let declared = declared_ratio(&generated, name).expect("a ratio in the fleet");
        assert!((ratio - declared).abs() < 0.05 * declared, "{name}: learnt {ratio}, declared {declared}");
        assert!(vm["estimate"]["note"].as_str().expect("note").contains("seen in run"), "{vm:#}");
    }
    assert!(learnt >= after.len() / 2, "{learnt} of {} learnt", after.len());
}

/// `compression_ratio` of VM `name` in a fleet file.
fn declared_ratio(fleet: &str, name: &str) -> Option<f64> {
    let entry = fleet.split("[[vm]]").find(|e| e.contains(&format!("name = \"{name}\"")))?;
    let line = entry.lines().find(|l| l.starts_with("compression_ratio = "))?;
    line.trim_start_matches("compression_ratio = ").trim().parse().ok()
}

#[test]
fn a_roll_plan_is_previewed_in_waves_and_refused_by_migrate() {
    let dir = dir("roll");
    let fleet = fleet(&dir, 5);
    let cluster = format!("sim:{}", path(&fleet));
    let plan = dir.join("roll.toml");
    std::fs::write(
        &plan,
        "[plan]\nname = \"patch\"\n[roll]\nmax_unavailable = 3\nreserve = \"largest-host\"\nhook_sim_s = 300\n\
         redundancy_groups = [[\"h-0001\", \"h-0002\"]]\n",
    )
    .expect("written");
    let out = ferry(&["preview", path(&plan), "--cluster", &cluster, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let roll: Value = serde_json::from_slice(&out.stdout).expect("json");
    let waves = roll["waves"].as_array().expect("waves");
    let mut seen: Vec<String> = Vec::new();
    for wave in waves {
        let hosts: Vec<String> = wave["hosts"].as_array().expect("hosts").iter().map(|h| h.to_string()).collect();
        assert!(!hosts.is_empty() && hosts.len() <= 3, "{wave:#}");
        assert!(!(hosts.contains(&"\"h-0001\"".into()) && hosts.contains(&"\"h-0002\"".into())), "{wave:#}");
        assert!(wave["free"]["memory_mib"].as_f64() >= roll["reserve"]["memory_mib"].as_f64(), "{wave:#}");
        seen.extend(hosts);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20, "every host of the fleet once: {seen:?}");
    assert!(waves.len() < 20, "hosts share waves");

    // Running it is refused, and nothing is journaled.
    let state = dir.join("journal.db");
    let out = ferry(&["migrate", path(&plan), "--cluster", &cluster, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("a roll plan"), "{}", text(&out));
    assert!(!state.exists());

    // A roll naming a host the fleet lacks: exit 2, file, line and field.
    std::fs::write(&plan, "[plan]\nname = \"patch\"\n[roll]\nhosts = [\"h-0001\", \"h-9999\"]\n").expect("written");
    let out = ferry(&["preview", path(&plan), "--cluster", &cluster]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("roll.toml:4: roll.hosts: no host h-9999 in the cluster file"), "{}", text(&out));
}

#[test]
fn a_simulated_roll_runs_its_waves_in_virtual_time_and_brings_every_vm_home() {
    let dir = dir("roll-run");
    let cluster = generated(&dir, 20, 200, 5);
    // A hook and a check that would fail if they ran: on a simulated fleet they do not, and
    // the hook takes hook_sim_s of virtual time.
    let plan = dir.join("roll.toml");
    std::fs::write(
        &plan,
        "[plan]\nname = \"patch\"\n[roll]\nmax_unavailable = 3\nreserve = \"largest-host\"\nhook = \"exit 3\"\n\
         hook_sim_s = 300\ncheck = \"false\"\ncanary = 1\nredundancy_groups = [[\"h-0001\", \"h-0002\"]]\n",
    )
    .expect("written");
    let out = ferry(&["preview", path(&plan), "--cluster", &cluster, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let preview: Value = serde_json::from_slice(&out.stdout).expect("json");
    let planned = preview["waves"].as_array().expect("waves").len();

    // No --yes: a simulated roll cannot wait for a confirmation, so it goes on.
    let state = dir.join("journal.db");
    let out = ferry(&["roll", path(&plan), "--cluster", &cluster, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("finished"), "{}", text(&out));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let config = ferry_journal::JournalConfig::default();
        let journal = ferry_journal::Journal::open_path(&state, &config).await.expect("journal");
        let runs = journal.runs().await.expect("runs");
        let roll = runs.iter().find(|r| r.kind == ferry_journal::RunKind::Roll).expect("the roll");
        let waves: Vec<_> = runs.iter().filter(|r| r.parent.as_deref() == Some(roll.id.as_str())).collect();
        assert_eq!(waves.len(), planned, "the waves the preview showed");
        // Each wave holds its hosts for the hook's 300 s of virtual time, one after another.
        let took_s = (roll.finished_ms.expect("finished") - roll.created_ms) / 1000;
        assert!(took_s >= 300 * planned as i64, "{took_s} s for {planned} waves");
        for wave in &waves {
            assert!(!(wave.plan_name.contains("h-0001,") && wave.plan_name.contains("h-0002")), "{}", wave.plan_name);
            let events = journal.events(&wave.id, None).await.expect("events");
            let hooks: Vec<&Value> =
                events.iter().filter_map(|e| e.data.as_ref()).filter(|d| d["hook"] == "drain").collect();
            assert!(!hooks.is_empty(), "{}: a hook per host", wave.plan_name);
            let ran =
                events.iter().filter_map(|e| e.data.as_ref()).filter(|d| d["hook"] == "drain" || d["hook"] == "check");
            for hook in ran {
                assert_eq!((hook["simulated"].as_bool(), hook["exit_code"].as_i64()), (Some(true), Some(0)), "{hook}");
            }
            assert!(hooks.iter().all(|h| h["duration_ms"] == 300_000), "{hooks:?}");
            let left = journal.moves(&wave.id).await.expect("moves");
            let back: Vec<_> = runs.iter().filter(|r| r.parent.as_deref() == Some(wave.id.as_str())).collect();
            assert_eq!(back.len(), 1, "{}: one return", wave.plan_name);
            let returned = journal.moves(&back[0].id).await.expect("moves");
            assert_eq!(returned.len(), left.len(), "{}", wave.plan_name);
            for m in &left {
                assert!(m.status.is_success(), "{m:?}");
                let home = returned.iter().find(|r| r.uuid == m.uuid).expect("returned");
                assert_eq!(
                    (home.status, home.target.as_deref()),
                    (ferry_model::Status::RolledBack, Some(m.source.as_str())),
                    "{home:?}"
                );
            }
        }
    });
}

#[test]
fn a_simulated_roll_given_a_deadline_as_a_duration_starts_no_wave_after_it() {
    let dir = dir("roll-deadline");
    let cluster = generated(&dir, 20, 200, 5);
    let plan = dir.join("roll.toml");
    std::fs::write(&plan, "[plan]\nname = \"patch\"\n[roll]\nmax_unavailable = 3\nhook_sim_s = 600\n")
        .expect("written");
    let state = dir.join("journal.db");
    let roll = |deadline: &str| {
        ferry(&["roll", path(&plan), "--cluster", &cluster, "--state", path(&state), "--deadline", deadline])
    };

    let out = roll("tomorrow");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--deadline: \"tomorrow\""), "{}", text(&out));
    assert!(!state.exists(), "nothing journaled");

    // Each wave holds its hosts 600 s of virtual time: past 25 minutes, the third wave waits.
    let out = roll("+25m");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("its deadline passed before wave 3"), "{}", text(&out));
}

#[test]
fn a_simulated_roll_never_puts_two_vms_of_an_anti_affinity_group_on_one_host() {
    let dir = dir("roll-anti-affinity");
    let cluster = generated(&dir, 8, 40, 5);
    // The first VM of each of six hosts tagged into group db, as `ferry tag` would.
    let fleet = dir.join("fleet.toml");
    let mut members: std::collections::BTreeMap<String, String> = Default::default();
    let mut tagged = Vec::new();
    let mut name = String::new();
    for line in std::fs::read_to_string(&fleet).expect("fleet").lines() {
        tagged.push(line.to_string());
        if let Some(n) = line.strip_prefix("name = \"vm-") {
            name = format!("vm-{}", n.trim_end_matches('"'));
        }
        let host = line.strip_prefix("host = \"").map(|h| h.trim_end_matches('"').to_string());
        if let Some(host) = host.filter(|h| h.as_str() <= "h-0006" && !members.values().any(|m| m == h)) {
            members.insert(name.clone(), host);
            tagged.push("tags = { anti_affinity = \"db\" }".to_string());
        }
    }
    assert_eq!(members.len(), 6, "{members:?}");
    std::fs::write(&fleet, tagged.join("\n")).expect("tagged");
    let plan = dir.join("roll.toml");
    std::fs::write(
        &plan,
        "[plan]\nname = \"patch\"\n[policy]\nplacement = \"spread\"\n\
         [roll]\nmax_unavailable = 3\nreturn = false\nhook_sim_s = 60\n",
    )
    .expect("written");

    // Three hosts away leave five, three of them holding members: no wave takes three
    // members' hosts, and the preview says so.
    let out = ferry(&["preview", path(&plan), "--cluster", &cluster, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let preview: Value = serde_json::from_slice(&out.stdout).expect("json");
    let reasons: Vec<&str> = preview["waves"]
        .as_array()
        .expect("waves")
        .iter()
        .flat_map(|w| w["waiting"].as_array().expect("waiting").iter().map(|p| p[1].as_str().expect("a reason")))
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("anti-affinity group db: every host outside the wave")),
        "{reasons:?}"
    );

    let planned = preview["rebalance"].as_array().expect("a rebalance").len();
    assert!(planned > 0, "the last wave's hosts end empty: spread evens them out");

    let state = dir.join("journal.db");
    let out = ferry(&["roll", path(&plan), "--cluster", &cluster, "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("rebalance of the roll's hosts by placement spread"), "{}", text(&out));
    // Where the members are after each run of the roll (the rebalance last), from the
    // journal's moves; and how many VMs each host holds at the end.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let roll = rt.block_on(async {
        let journal = ferry_journal::Journal::open_path(&state, &Default::default()).await.expect("journal");
        let mut runs = journal.runs().await.expect("runs");
        runs.sort_by_key(|r| r.created_ms);
        let mut moved = 0;
        let mut on: std::collections::BTreeMap<String, i32> = Default::default();
        let rebalance = runs.last().expect("runs");
        assert!(rebalance.plan_name.ends_with(": rebalance"), "{}", rebalance.plan_name);
        assert!(!journal.moves(&rebalance.id).await.expect("moves").is_empty());
        for run in runs.iter().filter(|r| r.kind != ferry_journal::RunKind::Roll) {
            for m in journal.moves(&run.id).await.expect("moves") {
                *on.entry(m.source.clone()).or_default() -= 1;
                *on.entry(m.target.clone().expect("a target")).or_default() += 1;
                assert!(m.status.is_success(), "{m:?}");
                if let (Some(at), Some(to)) = (members.get_mut(&m.vm), m.target.clone()) {
                    *at = to;
                    moved += 1;
                }
            }
            let hosts: std::collections::BTreeSet<&String> = members.values().collect();
            assert_eq!(hosts.len(), members.len(), "after {}: {members:?}", run.plan_name);
        }
        assert!(moved >= 6, "every member left its host once: {moved} moves");
        // Net of every move, no host the roll went through ends empty.
        let out = ferry(&["inventory", "--cluster", &cluster, "--output", "json"]);
        let inventory: Value = serde_json::from_slice(&out.stdout).expect("json");
        for host in inventory["hosts"].as_array().expect("hosts") {
            let name = host["name"].as_str().expect("a name");
            let before = inventory["vms"].as_array().expect("vms").iter().filter(|v| v["host"] == name).count();
            let after = before as i32 + on.get(name).copied().unwrap_or(0);
            assert!(after > 0, "{name} ends empty: {on:?}");
        }
        runs.iter().find(|r| r.kind == ferry_journal::RunKind::Roll).expect("the roll").id.clone()
    });
    // The report tells the roll, its rebalance included.
    let out = ferry(&["report", &roll, "--state", path(&state), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let rebalance = &report["roll"]["rebalance"];
    assert_eq!(rebalance["state"], "finished", "{rebalance:#}");
    assert!(!rebalance["moves"].as_array().expect("moves").is_empty(), "{rebalance:#}");
    assert_eq!(report["roll"]["waves"].as_array().expect("waves").len(), preview["waves"].as_array().expect("").len());
    let rebalanced =
        report["roll"]["vms"].as_array().expect("vms").iter().flat_map(|v| v["steps"].as_array().expect("steps"));
    assert!(rebalanced.filter(|s| s["step"] == "rebalance").count() > 0, "{report:#}");
    let out = ferry(&["report", &roll, "--state", path(&state)]);
    assert!(text(&out).contains("\nrebalance (run "), "{}", text(&out));
}

#[test]
fn quiet_leaves_what_a_script_needs_and_json_logs_are_json_only() {
    let dir = dir("chatter");
    let cluster = generated(&dir, 10, 40, 3);
    let plan = dir.join("drain.toml");
    std::fs::write(&plan, "[plan]\nname = \"d\"\n[[drain]]\nhost = \"h-0001\"\n").expect("written");
    let migrate = |flags: &[&str], db: &str| {
        let state = dir.join(db);
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["migrate", path(&plan), "--cluster", &cluster, "--state", path(&state)]);
        let out = ferry(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let (_, board) = migrate(&[], "plain.db");
    assert!(board.contains("started live"), "a progress board:\n{board}");
    let (said, board) = migrate(&["-q"], "quiet.db");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert!(lines[0].starts_with("run r-") && lines[1].ends_with("finished: 4 SUCCESS"), "{said}");
    assert!(board.is_empty(), "no board: {board}");

    // -vv (RUST_LOG unset, so that the flag decides): sqlx's debug lines, each a JSON object
    // with its level; nothing else on stderr.
    let state = dir.join("json.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["-vv", "--log-format", "json", "migrate", path(&plan), "--cluster", &cluster, "--state", path(&state)])
        .env_remove("RUST_LOG")
        .output()
        .expect("ferry runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.lines().count() > 10, "{logs}");
    for line in logs.lines() {
        let log: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(log["level"].is_string(), "{line}");
    }

    let out = ferry(&["-q", "-v", "inventory", "--cluster", &cluster]);
    assert_eq!(out.status.code(), Some(2), "-q and -v contradict: {}", text(&out));
}

#[test]
fn the_preview_of_a_fleet_drain_agrees_with_its_simulated_run() {
    // A hundred hosts of the 1,000-host, 10,000-VM fleet, drained anywhere.
    let dir = dir("preview-agrees");
    let cluster = generated(&dir, 1000, 10_000, 7);
    let drains: String = (1..=100).map(|h| format!("[[drain]]\nhost = \"h-{h:04}\"\n")).collect();
    let plan = dir.join("drain.toml");
    std::fs::write(&plan, format!("[plan]\nname = \"drain 100\"\n{drains}")).expect("written");
    let out = ferry(&["preview", path(&plan), "--cluster", &cluster, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let preview: Value = serde_json::from_slice(&out.stdout).expect("json");
    let predicted = preview["makespan_s"].as_f64().expect("a makespan");
    let starts: Vec<f64> =
        preview["vms"].as_array().expect("vms").iter().filter_map(|v| v["expected_start_s"].as_f64()).collect();
    assert_eq!(starts.len(), preview["moves"].as_u64().expect("moves") as usize, "every move has a start");
    assert!(starts.iter().all(|s| *s >= 0.0 && *s < predicted), "starts within the run");

    let state = dir.join("run.db");
    let out = ferry(&["migrate", path(&plan), "--cluster", &cluster, "--state", path(&state), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split_whitespace().next()).map(str::to_owned))
        .expect("a run id");
    let out = ferry(&["report", &id, "--state", path(&state), "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let ran = report["summary"]["makespan_ms"].as_f64().expect("a makespan") / 1000.0;
    let error = predicted / ran - 1.0;
    eprintln!("preview {predicted:.0} s, run {ran:.0} s: {:+.1} %", error * 100.0);
    assert!(error.abs() <= 0.10, "preview {predicted:.0} s against a run of {ran:.0} s: {:+.1} %", error * 100.0);
    // The report's estimate is the preview's.
    let kept = report["planned"]["estimated_makespan_ms"].as_f64().expect("an estimate") / 1000.0;
    assert!((kept - predicted).abs() < 1.0, "the report says {kept:.0} s, the preview {predicted:.0} s");
}
