//! The views and their text, table-driven.

use ferry_document::{Manual, MoveSpec, RunDocument};
use ferry_journal::{Attempt, AttemptKind, Event, EventKind, Move, Run, RunKind, RunState};
use ferry_model::{Phase, Status};
use ferry_plan::{Limits, Target};
use serde_json::{json, Value};

use crate::text::{format_report, format_status, report_csv, state_text, table};
use crate::units::{bytes, duration, rfc3339, utc};
use crate::view::{
    attempt_report, build_report, legs, planned, run_view, status_view, Comparison, Counts, Planned, Report,
};

/// 2026-11-23 20:30:15 UTC.
const T0: i64 = 1_795_465_815_000;

fn run(state: RunState, heartbeat_ms: Option<i64>) -> Run {
    Run {
        id: "r-20261123-203015-ab12".into(),
        plan_name: "web-tier".into(),
        kind: RunKind::Migrate,
        parent: None,
        state,
        abort_requested: false,
        owner: heartbeat_ms.map(|_| "ctl:42".into()),
        heartbeat_ms,
        created_ms: T0,
        updated_ms: T0,
        finished_ms: state.is_ended().then_some(T0 + 60_000),
        generation: 3,
    }
}

fn mv(vm: &str, seq: i64, status: Status, message: &str, span: Option<(i64, i64)>) -> Move {
    Move {
        run: "r-20261123-203015-ab12".into(),
        uuid: format!("u-{vm}"),
        vm: vm.into(),
        source: "host-a".into(),
        target: Some("host-b".into()),
        group: None,
        seq,
        priority: 0,
        status,
        phase: span.map(|_| Phase::Finalized),
        phase_done: true,
        message: message.into(),
        started_ms: span.map(|(s, _)| T0 + s),
        ended_ms: if status.is_terminal() { Some(T0 + span.map_or(100, |(_, e)| e)) } else { None },
        updated_ms: T0,
        generation: 5,
    }
}

struct Figures {
    wall: u64,
    job: Option<u64>,
    downtime: Option<u64>,
    mib: u64,
    passes: Option<u32>,
}

fn att(vm: &str, number: u32, kind: AttemptKind, outcome: Status, f: Figures) -> Attempt {
    Attempt {
        run: "r-20261123-203015-ab12".into(),
        uuid: format!("u-{vm}"),
        number,
        kind,
        target: "host-b".into(),
        started_ms: T0 + 1_000,
        ended_ms: Some(T0 + 1_000 + f.wall as i64),
        outcome: Some(outcome),
        message: String::new(),
        wall_ms: Some(f.wall),
        job_ms: f.job,
        downtime_ms: f.downtime,
        bytes: Some(f.mib << 20),
        passes: f.passes,
        estimate: None,
        compression: None,
        memory_bytes: None,
        memory_sent_bytes: None,
    }
}

fn ev(id: i64, vm: &str, at: i64, kind: EventKind, message: &str) -> Event {
    Event {
        id,
        run: "r-20261123-203015-ab12".into(),
        uuid: Some(format!("u-{vm}")),
        at_ms: T0 + at,
        kind,
        message: message.into(),
        data: None,
    }
}

#[test]
fn counts_follow_the_status_table() {
    use Status::*;
    let cases: &[(&[Status], &str, Value)] = &[
        (&[], "no moves", json!({})),
        (
            &[FailureWait, Success, Success, Success, Success, Success, Success],
            "6 SUCCESS, 1 FAILURE-WAIT",
            json!({ "SUCCESS": 6, "FAILURE-WAIT": 1 }),
        ),
        (
            &[RollbackFailed, Migrating, Pending, Queued, SuccessCold],
            "1 PENDING, 1 QUEUED, 1 MIGRATING, 1 SUCCESS-COLD, 1 ROLLBACK-FAILED",
            json!({ "PENDING": 1, "QUEUED": 1, "MIGRATING": 1, "SUCCESS-COLD": 1, "ROLLBACK-FAILED": 1 }),
        ),
    ];
    for (statuses, text, json) in cases {
        let counts = Counts::of(statuses.iter().copied());
        assert_eq!(counts.to_string(), *text);
        assert_eq!(serde_json::to_value(&counts).expect("serialises"), *json);
        // serde_json's map sorts keys; the order is checked on the text.
        let ordered = serde_json::to_string(&counts).expect("serialises");
        let keys: Vec<usize> = counts.0.iter().map(|(s, _)| ordered.find(s.name()).expect("key")).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{ordered}");
    }
}

#[test]
fn durations_for_people() {
    let cases = [
        (0, "0.0 s"),
        (12_449, "12.4 s"),
        (12_450, "12.5 s"),
        (59_949, "59.9 s"),
        (59_950, "1 min 00.0 s"),
        (185_200, "3 min 05.2 s"),
        (3_599_949, "59 min 59.9 s"),
        (3_599_950, "1 h 00 min 00 s"),
        (7_385_000, "2 h 03 min 05 s"),
        (-1_500, "-1.5 s"),
    ];
    for (ms, want) in cases {
        assert_eq!(duration(ms), want, "{ms}");
    }
}

#[test]
fn bytes_in_the_largest_sensible_unit() {
    for (count, text) in [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (134_742_016, "128.5 MiB"),
        (8_053_400 * (1 << 20), "7.7 TiB"),
        (u64::MAX, "16384.0 PiB"),
    ] {
        assert_eq!(bytes(count), text, "{count}");
    }
}

#[test]
fn timestamps_in_utc() {
    let cases = [
        (0, "1970-01-01 00:00:00 UTC", "1970-01-01T00:00:00.000Z"),
        (T0 + 123, "2026-11-23 20:30:15 UTC", "2026-11-23T20:30:15.123Z"),
        (951_782_400_999, "2000-02-29 00:00:00 UTC", "2000-02-29T00:00:00.999Z"),
        (-1, "1969-12-31 23:59:59 UTC", "1969-12-31T23:59:59.999Z"),
    ];
    for (ms, text, rfc) in cases {
        assert_eq!((utc(ms).as_str(), rfc3339(ms).as_str()), (text, rfc), "{ms}");
    }
}

#[test]
fn a_run_state_says_what_to_do() {
    let now = T0 + 100_000;
    let id = "r-20261123-203015-ab12";
    let aborting = Run { abort_requested: true, ..run(RunState::Running, Some(now - 1_000)) };
    let aborted = Run { abort_requested: true, ..run(RunState::Aborted, None) };
    let cases = [
        (run(RunState::Running, Some(now - 3_000)), "running (owner ctl:42, alive)".to_owned()),
        (run(RunState::Running, Some(now - 20_000)), format!("running (owner gone: `ferry resume {id}`)")),
        (run(RunState::Running, None), format!("running (owner gone: `ferry resume {id}`)")),
        (run(RunState::Stopped, Some(now - 3_000)), format!("stopped (resumable: `ferry resume {id}`)")),
        (run(RunState::Finished, None), "finished".to_owned()),
        (aborting, "running (owner ctl:42, alive), abort requested".to_owned()),
        (aborted, "aborted".to_owned()),
    ];
    for (run, want) in cases {
        let view = run_view(&run, [], now);
        assert_eq!(state_text(&view), want);
        assert_eq!(view.owner_alive.is_some(), run.state == RunState::Running);
    }
}

#[test]
fn tables_align_columns() {
    let rows = vec![
        vec!["VM".to_owned(), "STATUS".to_owned(), "MESSAGE".to_owned()],
        vec!["web-10".to_owned(), "SUCCESS".to_owned(), String::new()],
        vec!["db".to_owned(), "FAILURE-WAIT".to_owned(), "did not converge".to_owned()],
    ];
    assert_eq!(
        table(&rows),
        "VM      STATUS        MESSAGE\n\
         web-10  SUCCESS\n\
         db      FAILURE-WAIT  did not converge\n"
    );
}

#[test]
fn status_shows_the_latest_word_and_the_phase_in_flight() {
    let now = T0 + 30_000;
    let mut migrating = mv("web-2", 2, Status::Migrating, "", Some((1_000, 0)));
    migrating.phase = Some(Phase::Transferring);
    migrating.phase_done = false;
    let moves = [
        mv("web-1", 1, Status::Success, "live migration completed", Some((1_000, 4_000))),
        migrating,
        mv("web-3", 3, Status::Pending, "", None),
    ];
    let events = [
        ev(1, "web-1", 2_000, EventKind::Decision, "raised downtime to 200 ms"),
        ev(2, "web-1", 4_000, EventKind::Status, "SUCCESS: live migration completed"),
        ev(3, "web-2", 1_000, EventKind::Status, "MIGRATING"),
        ev(4, "web-2", 5_000, EventKind::Message, "dirty rate 310 MiB/s above the link"),
        ev(5, "web-2", 6_000, EventKind::Phase, "transferring: begun"),
    ];
    let view = status_view(&run(RunState::Running, Some(now - 2_000)), &moves, &events, now);
    assert_eq!(view.elapsed_ms, 30_000);
    assert_eq!(
        format_status(&view),
        "run r-20261123-203015-ab12  plan web-tier  (migrate)\n\
         state    running (owner ctl:42, alive)\n\
         created  2026-11-23 20:30:15 UTC, elapsed 30.0 s\n\
         moves    3: 1 PENDING, 1 MIGRATING, 1 SUCCESS\n\
         \n\
         VM     MOVE              STATUS     PHASE                 MESSAGE\n\
         web-1  host-a -> host-b  SUCCESS    -                     live migration completed\n\
         web-2  host-a -> host-b  MIGRATING  transferring (begun)  dirty rate 310 MiB/s above the link\n\
         web-3  host-a -> host-b  PENDING    -\n"
    );
}

fn sample_report() -> Report {
    let mut failed = mv("web-2", 2, Status::FailureWait, "did not converge", Some((1_000, 21_500)));
    failed.phase = Some(Phase::Transferring);
    let moves = [
        mv("web-1", 1, Status::Success, "live migration completed", Some((900, 4_500))),
        failed,
        mv("db-1", 3, Status::PrecheckFailed, "memory: host-b has 1024 MiB free, db-1 needs 4096 MiB", None),
    ];
    let mut live = att(
        "web-1",
        1,
        AttemptKind::Live,
        Status::Success,
        Figures { wall: 3_200, job: Some(3_000), downtime: Some(180), mib: 512, passes: Some(4) },
    );
    live.estimate = Some(json!({ "downtime_ms": 120.0, "total_s": 8.0, "transfer_s": null, "note": "x" }));
    let mut stuck = att(
        "web-2",
        1,
        AttemptKind::Live,
        Status::FailureWait,
        Figures { wall: 20_000, job: Some(19_500), downtime: None, mib: 1024, passes: Some(30) },
    );
    stuck.message = "did not converge after 30 passes".into();
    let events = [
        ev(1, "web-1", 2_400, EventKind::Decision, "raised downtime to 200 ms: 3 passes without converging"),
        ev(2, "web-1", 4_500, EventKind::Status, "SUCCESS: live migration completed"),
        ev(3, "web-2", 1_000, EventKind::Attempt, "attempt 1 (live) to host-b started"),
        ev(4, "web-2", 21_500, EventKind::Status, "FAILURE-WAIT: did not converge"),
    ];
    build_report(
        &run(RunState::Finished, None),
        &moves,
        &[live, stuck],
        events.to_vec(),
        Planned::default(),
        T0 + 90_000,
    )
}

#[test]
fn a_report_puts_failures_first_and_sums_up() {
    let report = sample_report();
    let order: Vec<&str> = report.moves.iter().map(|m| m.vm.as_str()).collect();
    assert_eq!(order, ["web-2", "db-1", "web-1"]);
    let s = &report.summary;
    assert_eq!((s.moves, s.attempts, s.all_succeeded), (3, 2, false));
    assert_eq!((s.first_start_ms, s.last_end_ms, s.makespan_ms), (Some(T0 + 900), Some(T0 + 21_500), Some(20_600)));
    assert_eq!((s.worst_downtime_ms, s.worst_downtime_vm.as_deref()), (Some(180), Some("web-1")));
    assert_eq!(s.bytes, 1536 << 20);
    // Only the figures the estimate has (a null one is an impossible estimate) are compared.
    assert_eq!(
        report.moves[2].attempts[0].estimate_vs_actual,
        [
            Comparison { figure: "downtime_ms", estimate: 120.0, actual: Some(180.0) },
            Comparison { figure: "total_s", estimate: 8.0, actual: Some(3.2) },
        ]
    );
    assert_eq!(
        format_report(&report),
        "run r-20261123-203015-ab12  plan web-tier  (migrate)\n\
         state    finished\n\
         created  2026-11-23 20:30:15 UTC, finished 2026-11-23 20:31:15 UTC\n\
         moves    3: 1 PRECHECK-FAILED, 1 SUCCESS, 1 FAILURE-WAIT; 2 attempts\n\
         makespan 20.6 s (2026-11-23 20:30:15 UTC to 2026-11-23 20:30:36 UTC)\n\
         downtime worst 180 ms (web-1)\n\
         bytes    1.5 GiB transferred\n\
         \n\
         web-2  FAILURE-WAIT  host-a -> host-b\n\
         \x20 start 2026-11-23 20:30:16 UTC  end 2026-11-23 20:30:36 UTC  (20.5 s)\n\
         \x20 attempt 1  live -> host-b  FAILURE-WAIT  wall 20.0 s, job 19.5 s, 1.0 GiB, 30 passes\n\
         \x20   did not converge after 30 passes\n\
         \x20 21.5 s: FAILURE-WAIT: did not converge\n\
         \n\
         db-1  PRECHECK-FAILED  host-a -> host-b\n\
         \x20 not started\n\
         \x20 memory: host-b has 1024 MiB free, db-1 needs 4096 MiB\n\
         \n\
         web-1  SUCCESS  host-a -> host-b\n\
         \x20 start 2026-11-23 20:30:15 UTC  end 2026-11-23 20:30:19 UTC  (3.6 s)\n\
         \x20 attempt 1  live -> host-b  SUCCESS  wall 3.2 s, job 3.0 s, downtime 180 ms, 512.0 MiB, 4 passes\n\
         \x20   estimate vs actual: downtime 120 ms / 180 ms, total 8.0 s / 3.2 s\n\
         \x20 2.4 s: raised downtime to 200 ms: 3 passes without converging\n\
         \x20 4.5 s: SUCCESS: live migration completed\n"
    );
}

#[test]
fn a_report_as_csv() {
    assert_eq!(
        report_csv(&sample_report()).expect("writes"),
        "vm,uuid,source,target,status,started,ended,attempts,downtime_ms,bytes,passes,message\n\
         web-2,u-web-2,host-a,host-b,FAILURE-WAIT,2026-11-23T20:30:16.000Z,2026-11-23T20:30:36.500Z,1,,1073741824,30,did not converge\n\
         db-1,u-db-1,host-a,host-b,PRECHECK-FAILED,,2026-11-23T20:30:15.100Z,0,,,,\"memory: host-b has 1024 MiB free, db-1 needs 4096 MiB\"\n\
         web-1,u-web-1,host-a,host-b,SUCCESS,2026-11-23T20:30:15.900Z,2026-11-23T20:30:19.500Z,1,180,536870912,4,live migration completed\n"
    );
}

#[test]
fn a_csv_field_that_would_start_a_formula_is_text() {
    let mut report = sample_report();
    report.moves[0].vm = "=HYPERLINK(\"http://x\")".into();
    report.moves[0].message = "@SUM(A1)".into();
    report.moves[1].message = "-2+3".into();
    let csv = report_csv(&report).expect("writes");
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[1].starts_with("\"'=HYPERLINK(\"\"http://x\"\")\",u-web-2,"), "{csv}");
    assert!(rows[1].ends_with(",'@SUM(A1)"), "{csv}");
    assert!(rows[2].ends_with(",'-2+3"), "{csv}");
    assert!(rows[3].starts_with("web-1,"), "{csv}");
}

#[test]
fn an_estimate_without_figures_compares_nothing() {
    for estimate in [None, Some(json!("fast")), Some(json!({})), Some(json!({ "downtime_ms": "low" }))] {
        let mut a = att(
            "web-1",
            1,
            AttemptKind::Cold,
            Status::SuccessCold,
            Figures { wall: 1_000, job: None, downtime: None, mib: 1, passes: None },
        );
        a.estimate = estimate.clone();
        assert!(attempt_report(&a).estimate_vs_actual.is_empty(), "{estimate:?}");
    }
}

#[test]
fn what_the_documents_say() {
    let moves = [
        mv("web-1", 1, Status::Success, "", Some((0, 10_000))),
        mv("web-2", 2, Status::Success, "", Some((0, 10_000))),
        mv("db-1", 3, Status::PrecheckFailed, "memory", None),
        mv("db-2", 4, Status::FailureWait, "", Some((0, 10_000))),
    ];
    let spec = |vm: &str, total_s: Value| MoveSpec {
        vm: vm.into(),
        uuid: format!("u-{vm}"),
        from: "host-a".into(),
        to: Target::Any,
        group: None,
        order: 0,
        priority: 0,
        memory_mib: 1024,
        running: true,
        cold: false,
        dirty_mib_s: None,
        estimate: Some(json!({ "total_s": total_s })),
    };
    let mut plan =
        ferry_plan::parse_plan("web.toml", "[plan]\nname = \"web-tier\"\n[[move]]\nvm = \"web-1\"\nto = \"ANY\"\n")
            .expect("a plan");
    plan.deadline = Some(1_795_470_000);
    plan.limits = Limits { cluster: 8, per_source: 1, per_target: 2 };
    let moves_planned = vec![
        spec("web-1", json!(8.0)),
        spec("web-2", json!(4.5)),
        // Failed its checks: not run, not estimated.
        spec("db-1", json!(100.0)),
        // Never converges: stored as null, left out as the preview leaves it out.
        spec("db-2", Value::Null),
    ];
    let document = RunDocument::new(plan, moves_planned, vec![], Manual::default());
    let cluster = ferry_plan::parse_cluster(
        "cluster.toml",
        "[[host]]\nname = \"host-b\"\nuri = \"qemu+tcp://b/system\"\n[[host]]\nname = \"host-a\"\nuri = \"qemu+tcp://a/system\"\n",
    )
    .expect("a cluster");
    assert_eq!(
        planned(&document, &cluster, &moves),
        Planned {
            deadline_ms: Some(1_795_470_000_000),
            hosts: vec!["host-b".into(), "host-a".into()],
            // Both leave host-a, one at a time.
            estimated_makespan_ms: Some(12_500),
        }
    );
    let unestimated = RunDocument { moves: vec![spec("web-1", Value::Null)], ..document };
    assert_eq!(planned(&unestimated, &cluster, &moves).estimated_makespan_ms, None);
}

#[test]
fn the_text_report_names_the_estimate_and_the_deadline() {
    let mut report = sample_report();
    report.planned = Planned { deadline_ms: Some(T0 + 3_600_000), hosts: vec![], estimated_makespan_ms: Some(12_500) };
    let text = format_report(&report);
    assert!(
        text.contains(
            "makespan 20.6 s (2026-11-23 20:30:15 UTC to 2026-11-23 20:30:36 UTC), estimated 12.5 s\n\
             deadline 2026-11-23 21:30:15 UTC\n"
        ),
        "{text}"
    );
}

#[test]
fn a_report_tells_the_runs_hooks_with_their_output_and_its_legs() {
    let drain = Run { kind: RunKind::Drain, ..run(RunState::Finished, None) };
    let moves = [mv("web-1", 0, Status::Success, "moved live to host-b", Some((0, 4_000)))];
    let mut hook = ev(1, "web-1", 5_000, EventKind::Message, "drain hook on host-a: `upgrade` exited 0 after 1.0 s");
    hook.uuid = None;
    hook.data = Some(json!({"hook": "drain", "stdout": "a\nb\nc\nd\ne\nf\n", "stderr": "warning: x\n"}));
    let mut report = build_report(&drain, &moves, &[], vec![hook], Planned::default(), T0 + 60_000);
    let back = Run {
        id: "r-20261123-203021-cd34".into(),
        kind: RunKind::Rollback,
        parent: Some(drain.id.clone()),
        ..run(RunState::Finished, None)
    };
    let returned = Move {
        run: back.id.clone(),
        source: "host-b".into(),
        target: Some("host-a".into()),
        ..mv("web-1", 0, Status::RolledBack, "moved live to host-a", Some((0, 4_000)))
    };
    report.legs = legs(&drain, &[drain.clone(), back.clone()], |_| vec![returned.clone()], T0 + 60_000);
    let text = format_report(&report);
    let expect = "\nrun\n  5.0 s: drain hook on host-a: `upgrade` exited 0 after 1.0 s\n    out | … 1 lines before\n    out | b\n    out | c\n    out | d\n    out | e\n    out | f\n    err | warning: x\n\nundone by run r-20261123-203021-cd34 (rollback): finished, 1 ROLLED-BACK\n  web-1  host-b -> host-a  ROLLED-BACK  moved live to host-a\n";
    assert!(text.contains(expect), "{text}");
    assert_eq!(report.legs[0].relation, "undone-by");
}

#[test]
fn a_rolls_report_names_its_waves_and_a_waves_names_its_roll() {
    let roll = Run { kind: RunKind::Roll, ..run(RunState::Finished, None) };
    let wave = Run {
        id: "r-20261123-203021-cd34".into(),
        kind: RunKind::Drain,
        parent: Some(roll.id.clone()),
        ..run(RunState::Finished, None)
    };
    let back = Run {
        id: "r-20261123-203030-ef56".into(),
        kind: RunKind::Rollback,
        parent: Some(wave.id.clone()),
        ..run(RunState::Finished, None)
    };
    let all = [roll.clone(), wave.clone(), back.clone()];
    let of_roll = legs(&roll, &all, |_| Vec::new(), T0);
    assert_eq!(
        of_roll.iter().map(|l| (l.relation, l.run.id.as_str())).collect::<Vec<_>>(),
        [("wave", wave.id.as_str())]
    );
    let of_wave = legs(&wave, &all, |_| Vec::new(), T0);
    let relations: Vec<_> = of_wave.iter().map(|l| (l.relation, l.run.id.as_str())).collect();
    assert_eq!(relations, [("part-of", roll.id.as_str()), ("undone-by", back.id.as_str())]);
    let mut report = build_report(&roll, &[], &[], Vec::new(), Planned::default(), T0);
    report.legs = of_roll;
    assert!(format_report(&report).contains(&format!("\nwave run {} (drain)", wave.id)), "{}", format_report(&report));
}
