//! `ferry runs`, `ferry status` and `ferry report` on a real journal file, filled through
//! the journal's own API as the run engine fills it: what they print matches the journal,
//! in every format, with the documented exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_journal::{
    AttemptEnd, AttemptKind, EventKind, Journal, JournalConfig, NewAttempt, NewMove, NewRun, RunKind, RunState,
};
use ferry_model::{Phase, Status};
use serde_json::{json, Value};

/// A fresh directory for one test's journal.
fn test_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// Runs `ferry ARGS --state STATE`.
fn ferry(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg("--state")
        .arg(state)
        .env_remove("FERRY_STATE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the ferry binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)))
}

const MIB: u64 = 1 << 20;

fn new_move(vm: &str, uuid: &str, seq: i64, status: Status, message: &str) -> NewMove {
    NewMove {
        vm: vm.to_owned(),
        uuid: uuid.to_owned(),
        source: "host-a".to_owned(),
        target: Some("host-b".to_owned()),
        group: None,
        seq,
        priority: 0,
        status,
        message: message.to_owned(),
    }
}

fn new_run(plan: &str) -> NewRun {
    NewRun {
        plan_name: plan.to_owned(),
        plan: json!({ "name": plan }),
        cluster: json!({}),
        kind: RunKind::Migrate,
        parent: None,
    }
}

/// The runs the tests look at, oldest first.
struct Sample {
    /// Finished: web-1 SUCCESS (live, with an estimate and a convergence decision), web-2
    /// FAILURE-WAIT after two attempts, db-1 PRECHECK-FAILED.
    mixed: String,
    /// Finished: both moves succeeded.
    clean: String,
    /// Running, owner alive: app-1 SUCCESS, app-2 MIGRATING in transferring.
    live: String,
}

/// Moves a VM through one attempt, as the engine does; returns the move's generation.
async fn attempt(
    journal: &Journal,
    run: &str,
    uuid: &str,
    generation: i64,
    new: NewAttempt,
    end: AttemptEnd,
    decision: Option<&str>,
) -> i64 {
    let mut generation =
        journal.begin_phase(run, uuid, generation, Phase::Transferring).await.expect("begin transferring");
    let number = journal.record_attempt_start(run, uuid, &new).await.expect("attempt starts");
    if let Some(decision) = decision {
        journal
            .event(run, Some(uuid), EventKind::Decision, decision, Some(&json!({ "downtime_ms": 200 })))
            .await
            .expect("decision event");
    }
    let outcome = end.outcome;
    journal.record_attempt_end(run, uuid, number, &end).await.expect("attempt ends");
    if outcome.is_success() {
        generation = journal.end_phase(run, uuid, generation, Phase::Transferring).await.expect("transferring done");
    }
    generation
}

fn end(outcome: Status, message: &str, figures: [Option<u64>; 4], passes: Option<u32>) -> AttemptEnd {
    let [wall_ms, job_ms, downtime_ms, bytes] = figures;
    AttemptEnd {
        outcome,
        message: message.to_owned(),
        wall_ms,
        job_ms,
        downtime_ms,
        bytes,
        passes,
        memory_bytes: None,
        memory_sent_bytes: None,
    }
}

async fn fill(path: &Path) -> Sample {
    let journal = Journal::open_path(path, &JournalConfig::default()).await.expect("create the journal");

    // The mixed run.
    let run = journal.create_run(&new_run("web-tier")).await.expect("create run");
    let mut run_generation = journal.claim(&run.id, run.generation, "ctl-1:4242").await.expect("claim");
    journal
        .add_moves(
            &run.id,
            &[
                new_move("web-1", "u-web-1", 1, Status::Pending, ""),
                new_move("web-2", "u-web-2", 2, Status::Pending, ""),
                new_move(
                    "db-1",
                    "u-db-1",
                    3,
                    Status::PrecheckFailed,
                    "memory: host-b has 1024 MiB free, db-1 needs 4096 MiB",
                ),
            ],
        )
        .await
        .expect("add moves");
    let g = journal.set_status(&run.id, "u-web-1", 1, Status::Migrating, "").await.expect("web-1 migrating");
    let g = attempt(
        &journal,
        &run.id,
        "u-web-1",
        g,
        NewAttempt {
            kind: AttemptKind::Live,
            target: "host-b".into(),
            estimate: Some(json!({ "downtime_ms": 120.0, "total_s": 8.0, "transfer_s": 7.5, "note": "x" })),
            compression: None,
        },
        end(Status::Success, "", [Some(3200), Some(3000), Some(180), Some(512 * MIB)], Some(4)),
        Some("raised downtime to 200 ms: 3 passes without converging"),
    )
    .await;
    journal
        .set_status(&run.id, "u-web-1", g, Status::Success, "live migration completed")
        .await
        .expect("web-1 success");

    let g = journal.set_status(&run.id, "u-web-2", 1, Status::Migrating, "").await.expect("web-2 migrating");
    let g = attempt(
        &journal,
        &run.id,
        "u-web-2",
        g,
        NewAttempt { kind: AttemptKind::Live, target: "host-b".into(), estimate: None, compression: None },
        end(
            Status::FailureWait,
            "did not converge after 30 passes",
            [Some(20_000), Some(19_500), None, Some(1024 * MIB)],
            Some(30),
        ),
        None,
    )
    .await;
    journal
        .event(&run.id, Some("u-web-2"), EventKind::Message, "retrying cold on host-c", None)
        .await
        .expect("message event");
    let g = attempt(
        &journal,
        &run.id,
        "u-web-2",
        g,
        NewAttempt { kind: AttemptKind::Cold, target: "host-c".into(), estimate: None, compression: None },
        end(Status::FailureWait, "host-c refused the volume", [Some(900), None, None, Some(10 * MIB)], None),
        None,
    )
    .await;
    journal
        .set_status(&run.id, "u-web-2", g, Status::FailureWait, "did not converge; cold move refused")
        .await
        .expect("web-2 failed");
    run_generation = journal.set_run_state(&run.id, run_generation, RunState::Finished).await.expect("finish");
    let _ = run_generation;
    let mixed = run.id;

    // The clean run.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let run = journal.create_run(&new_run("clean")).await.expect("create run");
    let run_generation = journal.claim(&run.id, run.generation, "ctl-1:4243").await.expect("claim");
    journal
        .add_moves(
            &run.id,
            &[
                new_move("api-1", "u-api-1", 1, Status::Pending, ""),
                new_move("api-2", "u-api-2", 2, Status::Pending, ""),
            ],
        )
        .await
        .expect("add moves");
    for (uuid, status) in [("u-api-1", Status::Success), ("u-api-2", Status::SuccessCold)] {
        let g = journal.set_status(&run.id, uuid, 1, Status::Migrating, "").await.expect("migrating");
        let kind = if status == Status::Success { AttemptKind::Live } else { AttemptKind::Cold };
        let g = attempt(
            &journal,
            &run.id,
            uuid,
            g,
            NewAttempt { kind, target: "host-b".into(), estimate: None, compression: None },
            end(status, "", [Some(1000), Some(900), Some(50), Some(100 * MIB)], Some(2)),
            None,
        )
        .await;
        journal.set_status(&run.id, uuid, g, status, "").await.expect("success");
    }
    journal.set_run_state(&run.id, run_generation, RunState::Finished).await.expect("finish");
    let clean = run.id;

    // The live run, latest of all.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let run = journal.create_run(&new_run("in-flight")).await.expect("create run");
    journal.claim(&run.id, run.generation, "ctl-2:77").await.expect("claim");
    journal
        .add_moves(
            &run.id,
            &[
                new_move("app-1", "u-app-1", 1, Status::Pending, ""),
                new_move("app-2", "u-app-2", 2, Status::Pending, ""),
            ],
        )
        .await
        .expect("add moves");
    let g = journal.set_status(&run.id, "u-app-1", 1, Status::Migrating, "").await.expect("migrating");
    journal.set_status(&run.id, "u-app-1", g, Status::Success, "").await.expect("success");
    let g = journal.set_status(&run.id, "u-app-2", 1, Status::Migrating, "").await.expect("migrating");
    journal.begin_phase(&run.id, "u-app-2", g, Phase::Transferring).await.expect("phase");
    journal
        .event(&run.id, Some("u-app-2"), EventKind::Decision, "raised bandwidth to 900 MiB/s", None)
        .await
        .expect("decision");
    assert!(journal.heartbeat(&run.id, "ctl-2:77").await.expect("heartbeat"));
    let live = run.id;
    journal.close().await;
    Sample { mixed, clean, live }
}

#[tokio::test]
async fn runs_status_and_report_tell_what_the_journal_holds() {
    let dir = test_dir("journal");
    let state = dir.join("journal.db");
    let sample = fill(&state).await;

    // ferry runs: newest first, counts per status, the live run's owner alive.
    let out = ferry(&state, &["runs"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("RUN "), "{text}");
    assert!(lines[1].starts_with(&sample.live), "{text}");
    assert!(lines[1].contains("running (owner ctl-2:77, alive)"), "{text}");
    assert!(lines[1].contains("1 MIGRATING, 1 SUCCESS"), "{text}");
    assert!(lines[2].starts_with(&sample.clean), "{text}");
    assert!(lines[2].contains("1 SUCCESS, 1 SUCCESS-COLD"), "{text}");
    assert!(lines[3].starts_with(&sample.mixed), "{text}");
    assert!(lines[3].contains("finished"), "{text}");
    assert!(lines[3].contains("1 PRECHECK-FAILED, 1 SUCCESS, 1 FAILURE-WAIT"), "{text}");

    let runs = json_of(&ferry(&state, &["runs", "--output", "json"]));
    let ids: Vec<&str> = runs.as_array().expect("an array").iter().map(|r| r["id"].as_str().expect("id")).collect();
    assert_eq!(ids, [&sample.live, &sample.clean, &sample.mixed]);
    assert_eq!(runs[0]["state"], "running");
    assert_eq!(runs[0]["owner"], "ctl-2:77");
    assert_eq!(runs[0]["owner_alive"], true);
    assert_eq!(runs[2]["owner_alive"], Value::Null);
    assert_eq!(runs[2]["counts"], json!({ "PRECHECK-FAILED": 1, "SUCCESS": 1, "FAILURE-WAIT": 1 }));
    assert_eq!(runs[2]["moves"], 3);

    // ferry status: the latest run by default, with the phase of the move in flight.
    let out = ferry(&state, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with(&format!("run {}  plan in-flight  (migrate)\n", sample.live)), "{text}");
    assert!(text.contains("state    running (owner ctl-2:77, alive)\n"), "{text}");
    assert!(text.contains("moves    2: 1 MIGRATING, 1 SUCCESS\n"), "{text}");
    let app2 = text.lines().find(|l| l.starts_with("app-2")).expect("a line for app-2");
    for part in ["host-a -> host-b", "MIGRATING", "transferring (begun)", "raised bandwidth to 900 MiB/s"] {
        assert!(app2.contains(part), "{part}: {app2}");
    }

    let out = ferry(&state, &["status", &sample.mixed]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("state    finished\n"), "{text}");
    let web2 = text.lines().find(|l| l.starts_with("web-2")).expect("a line for web-2");
    assert!(web2.contains("FAILURE-WAIT"), "{web2}");
    assert!(web2.contains("did not converge; cold move refused"), "{web2}");
    // A phase is shown only while a move is under way.
    assert!(!web2.contains("transferring"), "{web2}");

    let status = json_of(&ferry(&state, &["--output", "json", "status", &sample.mixed]));
    assert_eq!(status["run"]["id"], sample.mixed.as_str());
    let journal = Journal::open_path(&state, &JournalConfig::default()).await.expect("open");
    let moves = journal.moves(&sample.mixed).await.expect("moves");
    let vms = status["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), moves.len());
    for (vm, m) in vms.iter().zip(&moves) {
        assert_eq!(vm["vm"], m.vm.as_str());
        assert_eq!(vm["uuid"], m.uuid.as_str());
        assert_eq!(vm["status"], m.status.name());
        assert_eq!(vm["target"], m.target.as_deref().expect("target"));
    }

    // ferry report, table: summary first, failures first, figures and story per VM.
    let out = ferry(&state, &["report", &sample.mixed]);
    assert_eq!(out.status.code(), Some(1), "a failed move makes exit 1: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("moves    3: 1 PRECHECK-FAILED, 1 SUCCESS, 1 FAILURE-WAIT; 3 attempts\n"), "{text}");
    assert!(text.contains("downtime worst 180 ms (web-1)\n"), "{text}");
    assert!(text.contains("bytes    1.5 GiB transferred\n"), "{text}");
    let block = |vm: &str| text.find(&format!("\n{vm}  ")).unwrap_or_else(|| panic!("no block for {vm}:\n{text}"));
    assert!(block("web-2") < block("db-1") && block("db-1") < block("web-1"), "failures first:\n{text}");
    for line in [
        "web-2  FAILURE-WAIT  host-a -> host-b\n",
        "  attempt 1  live -> host-b  FAILURE-WAIT  wall 20.0 s, job 19.5 s, 1.0 GiB, 30 passes\n",
        "    did not converge after 30 passes\n",
        "  attempt 2  cold -> host-c  FAILURE-WAIT  wall 0.9 s, 10.0 MiB\n",
        ": retrying cold on host-c\n",
        ": FAILURE-WAIT: did not converge; cold move refused\n",
        "db-1  PRECHECK-FAILED  host-a -> host-b\n  not started\n  memory: host-b has 1024 MiB free, db-1 needs 4096 MiB\n",
        "  attempt 1  live -> host-b  SUCCESS  wall 3.2 s, job 3.0 s, downtime 180 ms, 512.0 MiB, 4 passes\n",
        "    estimate vs actual: downtime 120 ms / 180 ms, total 8.0 s / 3.2 s, transfer 7.5 s / 3.0 s\n",
        ": raised downtime to 200 ms: 3 passes without converging\n",
        ": SUCCESS: live migration completed\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }

    // ferry report, JSON: every move, attempt and event of the journal.
    let out = ferry(&state, &["report", &sample.mixed, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json_of(&out);
    let same = ferry(&state, &["--output", "json", "report", &sample.mixed]);
    assert_eq!(json_of(&same)["moves"], report["moves"], "--output json is --format json");
    let attempts = journal.attempts(&sample.mixed).await.expect("attempts");
    let events = journal.events(&sample.mixed, None).await.expect("events");
    let reported = report["moves"].as_array().expect("moves");
    let order: Vec<&str> = reported.iter().map(|m| m["vm"].as_str().expect("vm")).collect();
    assert_eq!(order, ["web-2", "db-1", "web-1"]);
    for m in &moves {
        let r = reported.iter().find(|r| r["uuid"] == m.uuid.as_str()).expect("every move reported");
        assert_eq!(r["status"], m.status.name());
        let want: Vec<(u64, &str)> = attempts
            .iter()
            .filter(|a| a.uuid == m.uuid)
            .map(|a| (u64::from(a.number), a.outcome.expect("ended").name()))
            .collect();
        let got: Vec<(u64, &str)> = r["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| (a["number"].as_u64().expect("number"), a["outcome"].as_str().expect("outcome")))
            .collect();
        assert_eq!(got, want, "{}", m.vm);
        let want_events: Vec<&str> =
            events.iter().filter(|e| e.uuid.as_deref() == Some(m.uuid.as_str())).map(|e| e.message.as_str()).collect();
        let got_events: Vec<&str> =
            r["events"].as_array().expect("events").iter().map(|e| e["message"].as_str().expect("message")).collect();
        assert_eq!(got_events, want_events, "{}", m.vm);
    }
    let web1 = &reported[2];
    assert_eq!(
        web1["attempts"][0]["estimate_vs_actual"][0],
        json!({ "figure": "downtime_ms", "estimate": 120.0, "actual": 180.0 })
    );
    let summary = &report["summary"];
    let bytes: u64 = attempts.iter().filter_map(|a| a.bytes).sum();
    assert_eq!(summary["bytes"], bytes);
    assert_eq!(summary["attempts"], attempts.len());
    assert_eq!(summary["worst_downtime_ms"], 180);
    assert_eq!(summary["worst_downtime_vm"], "web-1");
    assert_eq!(summary["all_succeeded"], false);
    let first = moves.iter().filter_map(|m| m.started_ms).min().expect("a start");
    let last = moves.iter().filter(|m| m.started_ms.is_some()).filter_map(|m| m.ended_ms).max().expect("an end");
    assert_eq!(summary["makespan_ms"], last - first);

    // ferry report, CSV: one row per VM, as the journal has it.
    let out = ferry(&state, &["report", &sample.mixed, "--format", "csv"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = reader.headers().expect("a header").iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "vm",
            "uuid",
            "source",
            "target",
            "status",
            "started",
            "ended",
            "attempts",
            "downtime_ms",
            "bytes",
            "passes",
            "message"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
    assert_eq!(rows.len(), moves.len());
    for m in &moves {
        let row = rows.iter().find(|r| &r[1] == m.uuid.as_str()).expect("a row per move");
        assert_eq!(&row[0], m.vm);
        assert_eq!(&row[2], m.source);
        assert_eq!(&row[4], m.status.name());
        assert_eq!(&row[11], m.message);
        let own: Vec<_> = attempts.iter().filter(|a| a.uuid == m.uuid).collect();
        assert_eq!(row[7].parse::<usize>().expect("attempts"), own.len());
        let bytes: u64 = own.iter().filter_map(|a| a.bytes).sum();
        assert_eq!(&row[9], if own.is_empty() { String::new() } else { bytes.to_string() });
        assert_eq!(row[5].is_empty(), m.started_ms.is_none() && own.is_empty(), "{}", m.vm);
    }
    let web1 = rows.iter().find(|r| &r[0] == "web-1").expect("web-1");
    assert_eq!((&web1[8], &web1[10]), ("180", "4"));
    assert!(web1[5].ends_with('Z') && web1[5].contains('T'), "{}", &web1[5]);

    // ferry report, HTML to a file: one self-contained page, nothing on stdout, readable by
    // its owner only, also over a file that was readable by all.
    let page = dir.join("mixed.html");
    let page_arg = page.to_str().expect("utf-8 path");
    std::fs::write(&page, "old").expect("a file in the way");
    std::fs::set_permissions(&page, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let out = ferry(&state, &["report", &sample.mixed, "--format", "html", "-o", page_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("wrote"), "{}", stderr(&out));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&page).expect("written").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let html = std::fs::read_to_string(&page).expect("the page was written");
    assert!(html.starts_with("<!doctype html>"), "{}", &html[..80]);
    for m in &moves {
        assert!(html.contains(&format!("<tr><td>{}<td", m.vm)), "{}", m.vm);
    }
    // Nothing to fetch: no links, no sources, no imports.
    for fetch in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(fetch), "{fetch}");
    }
    // To stdout without -o; contradicting --output json is bad input.
    let out = ferry(&state, &["report", &sample.clean, "--format", "html"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("<!doctype html>"));
    let out = ferry(&state, &["report", &sample.clean, "--format", "html", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Exit 0 when every move succeeded.
    let out = ferry(&state, &["report", &sample.clean]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let out = ferry(&state, &["report", &sample.clean, "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A run still going has not succeeded yet.
    assert_eq!(ferry(&state, &["report", &sample.live]).status.code(), Some(1));
    journal.close().await;
}

#[tokio::test]
async fn an_unknown_run_exits_2_naming_the_closest() {
    let dir = test_dir("unknown");
    let state = dir.join("journal.db");
    let sample = fill(&state).await;
    let mut typo: Vec<char> = sample.mixed.chars().collect();
    let last = typo.len() - 1;
    typo.swap(last, last - 1);
    if typo.iter().collect::<String>() == sample.mixed {
        typo[last] = if typo[last] == '0' { '1' } else { '0' };
    }
    let typo: String = typo.into_iter().collect();
    for args in [vec!["report", typo.as_str()], vec!["status", typo.as_str()]] {
        let out = ferry(&state, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("no run {typo} in the journal at")), "{err}");
        assert!(err.contains(&format!("did you mean {}?", sample.mixed)), "{err}");
        assert!(stdout(&out).is_empty());
    }
    let out = ferry(&state, &["report", "nothing-like-it-at-all-really"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`ferry runs` lists them"), "{}", stderr(&out));
}

#[test]
fn a_missing_journal_is_a_clear_error_and_is_not_created() {
    let dir = test_dir("missing");
    let state = dir.join("nowhere").join("journal.db");
    for args in [vec!["status"], vec!["runs"], vec!["report", "r-20260101-000000-0000"]] {
        let out = ferry(&state, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&out).trim_end(),
            format!("ferry {}: no journal at {}: no run has been started with this --state", args[0], state.display())
        );
        assert!(!state.exists(), "{args:?} created the journal");
        assert!(!dir.join("nowhere").exists(), "{args:?} created the directory");
    }
}

#[tokio::test]
async fn an_empty_journal_has_no_runs() {
    let dir = test_dir("empty");
    let state = dir.join("journal.db");
    Journal::open_path(&state, &JournalConfig::default()).await.expect("create").close().await;
    let out = ferry(&state, &["runs"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "no runs\n"));
    assert_eq!(json_of(&ferry(&state, &["runs", "--output", "json"])), json!([]));
    let out = ferry(&state, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no runs in the journal at"), "{}", stderr(&out));
}
