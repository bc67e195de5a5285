//! The HTML page and its timeline, from records made here: layout (lanes, bars, rows,
//! marks, lines, ticks), the page's content and escaping, and its size at 10,000 VMs.

use ferry_journal::{Attempt, AttemptKind, Event, EventKind, Move, Run, RunKind, RunState};
use ferry_model::Status;
use serde_json::{json, Value};

use crate::html::render;
use crate::timeline::{layout, At, MarkKind, Timeline};
use crate::view::{build_report, Planned, Report};

/// 2026-11-23 20:30:15 UTC.
const T0: i64 = 1_795_465_815_000;
const RUN: &str = "r-20261123-203015-ab12";

/// Records of a run, made one VM at a time.
#[derive(Default)]
struct Records {
    moves: Vec<Move>,
    attempts: Vec<Attempt>,
    events: Vec<Event>,
}

impl Records {
    fn vm(&mut self, vm: &str, from: &str, to: &str, status: Status, message: &str) -> &mut Records {
        self.moves.push(Move {
            run: RUN.into(),
            uuid: format!("u-{vm}"),
            vm: vm.into(),
            source: from.into(),
            target: Some(to.into()),
            group: None,
            seq: self.moves.len() as i64,
            priority: 0,
            status,
            phase: None,
            phase_done: false,
            message: message.into(),
            started_ms: None,
            ended_ms: None,
            updated_ms: T0,
            generation: 1,
        });
        self
    }

    /// An attempt of the last VM, `start`..`end` seconds after T0.
    fn attempt(&mut self, to: &str, (start, end): (f64, Option<f64>), outcome: Option<Status>) -> &mut Records {
        let m = self.moves.last_mut().expect("a VM first");
        // A VM's attempts are made one after the other.
        let number = self.attempts.iter().rev().take_while(|a| a.uuid == m.uuid).count() as u32 + 1;
        let at = |s: f64| T0 + (s * 1000.0) as i64;
        m.started_ms = m.started_ms.or(Some(at(start)));
        if m.status.is_terminal() {
            m.ended_ms = end.map(at);
        }
        self.attempts.push(Attempt {
            run: RUN.into(),
            uuid: m.uuid.clone(),
            number,
            kind: if number == 1 { AttemptKind::Live } else { AttemptKind::Cold },
            target: to.into(),
            started_ms: at(start),
            ended_ms: end.map(at),
            outcome,
            message: String::new(),
            wall_ms: end.map(|e| ((e - start) * 1000.0) as u64),
            job_ms: None,
            downtime_ms: Some(120),
            bytes: Some(512 << 20),
            passes: Some(3),
            estimate: Some(json!({ "total_s": 9.0, "downtime_ms": 100.0 })),
            compression: None,
            memory_bytes: None,
            memory_sent_bytes: None,
        });
        self
    }

    /// An event about the last VM, `at` seconds after T0.
    fn event(&mut self, at: f64, kind: EventKind, message: &str, data: Option<Value>) -> &mut Records {
        let uuid = self.moves.last().expect("a VM first").uuid.clone();
        self.events.push(Event {
            id: self.events.len() as i64 + 1,
            run: RUN.into(),
            uuid: Some(uuid),
            at_ms: T0 + (at * 1000.0) as i64,
            kind,
            message: message.into(),
            data,
        });
        self
    }

    fn report(&self, state: RunState, planned: Planned) -> Report {
        let run = Run {
            id: RUN.into(),
            plan_name: "web-tier".into(),
            kind: RunKind::Migrate,
            parent: None,
            state,
            abort_requested: false,
            owner: None,
            heartbeat_ms: None,
            created_ms: T0,
            updated_ms: T0,
            finished_ms: state.is_ended().then_some(T0 + 100_000),
            generation: 3,
        };
        build_report(&run, &self.moves, &self.attempts, self.events.clone(), planned, T0 + 100_000)
    }
}

fn hosts(names: &[&str]) -> Planned {
    Planned { hosts: names.iter().map(|h| h.to_string()).collect(), ..Planned::default() }
}

/// (host, attempt, inbound, row) of every bar, lane by lane.
fn bars(t: &Timeline) -> Vec<(String, usize, bool, usize)> {
    t.lanes.iter().flat_map(|l| l.bars.iter().map(|b| (l.host.clone(), b.attempt, b.inbound, b.row))).collect()
}

fn sample() -> Records {
    let mut r = Records::default();
    r.vm("web-1", "host-a", "host-b", Status::Success, "moved live to host-b")
        .attempt("host-b", (1.0, Some(11.0)), Some(Status::Success))
        .event(6.0, EventKind::Decision, "raised downtime to 150 ms: flat for 2 passes", None);
    r.vm("web-2", "host-a", "host-c", Status::SuccessCold, "moved cold to host-c")
        .attempt("host-c", (2.0, Some(20.0)), Some(Status::FailureWait))
        .attempt("host-c", (20.5, Some(30.0)), Some(Status::SuccessCold));
    r.vm("db-1", "host-b", "host-a", Status::PrecheckFailed, "memory: host-a has 1024 MiB free");
    r
}

#[test]
fn lanes_follow_the_cluster_then_the_hosts_moves_name() {
    let r = sample();
    let cases = [
        (hosts(&["host-c", "host-b", "host-a", "host-d"]), vec!["host-c", "host-b", "host-a", "host-d"]),
        // No cluster document: the hosts in the order the report's moves name them
        // (failures first: db-1's hosts before web-1's).
        (Planned::default(), vec!["host-b", "host-a", "host-c"]),
        (hosts(&["host-b"]), vec!["host-b", "host-a", "host-c"]),
    ];
    for (planned, want) in cases {
        let t = layout(&r.report(RunState::Finished, planned));
        let lanes: Vec<&str> = t.lanes.iter().map(|l| l.host.as_str()).collect();
        assert_eq!(lanes, want);
    }
}

#[test]
fn each_attempt_is_a_bar_on_its_source_and_its_target_and_concurrent_bars_take_rows() {
    let t = layout(&sample().report(RunState::Finished, hosts(&["host-a", "host-b", "host-c"])));
    // Report order: db-1 (failed its checks, no attempt), web-1 (attempt 0), web-2
    // (attempts 1 and 2). host-a sends all three: web-2's first attempt (2-20 s) overlaps
    // web-1's (1-11 s), so it takes a second row; its cold attempt (20.5 s) fits in the
    // first row again.
    assert_eq!(
        bars(&t),
        [
            ("host-a".to_owned(), 0, false, 0),
            ("host-a".to_owned(), 1, false, 1),
            ("host-a".to_owned(), 2, false, 0),
            ("host-b".to_owned(), 0, true, 0),
            ("host-c".to_owned(), 1, true, 0),
            ("host-c".to_owned(), 2, true, 0),
        ]
    );
    let rows: Vec<usize> = t.lanes.iter().map(|l| l.rows).collect();
    assert_eq!(rows, [2, 1, 1]);
    let classes: Vec<&str> = t.lanes[0].bars.iter().map(|b| b.class).collect();
    assert_eq!(classes, ["ok", "fail", "cold"]);
    // Lanes stack: each as tall as its rows.
    assert_eq!(t.lanes[1].y - t.lanes[0].y, 2.0 * t.pitch + 6.0);
    // Bars keep their time: 10 s of a ~29 s axis is about a third of the 1000-unit plot.
    let web_1 = &t.lanes[0].bars[0];
    assert!((300.0..360.0).contains(&web_1.w), "{web_1:?}");
}

#[test]
fn decisions_and_fallbacks_are_marked_on_both_lanes() {
    let mut r = sample();
    r.vm("app-1", "host-c", "host-b", Status::Success, "")
        .attempt("host-b", (3.0, Some(9.0)), Some(Status::Success))
        .event(
            7.0,
            EventKind::Decision,
            "switched to post-copy: flat at the 300 ms limit",
            Some(json!({ "decision": "start-post-copy" })),
        );
    let t = layout(&r.report(RunState::Finished, hosts(&["host-a", "host-b", "host-c"])));
    // (lane, kind, attempt): web-1's decision (attempt 0), web-2's fallback to its cold
    // attempt (2), app-1's switch to post-copy (3), each on its source's and target's lane.
    let marks: Vec<(&str, MarkKind, usize)> =
        t.lanes.iter().flat_map(|l| l.marks.iter().map(move |m| (l.host.as_str(), m.kind, m.attempt))).collect();
    assert_eq!(
        marks,
        [
            ("host-a", MarkKind::Decision, 0),
            ("host-a", MarkKind::Fallback, 2),
            ("host-b", MarkKind::Decision, 0),
            ("host-b", MarkKind::Fallback, 3),
            ("host-c", MarkKind::Fallback, 2),
            ("host-c", MarkKind::Fallback, 3),
        ]
    );
    // Each at its instant: web-2's cold attempt started at 20.5 s, on the bar's row.
    let fallback = &t.lanes[0].marks[1];
    let cold = t.lanes[0].bars.iter().find(|b| b.attempt == 2).expect("the cold bar");
    assert_eq!((fallback.x, fallback.row), (cold.x, cold.row));
}

#[test]
fn lines_within_reach_widen_the_axis_and_others_point_off_it() {
    let r = sample();
    let at = |deadline_s: i64, state| {
        let planned = Planned { deadline_ms: Some(T0 + deadline_s * 1000), ..hosts(&["host-a", "host-b", "host-c"]) };
        let t = layout(&r.report(state, planned));
        (t.lines[0].at, t.t0 < T0, t.t1 > T0 + 40_000)
    };
    // The moves span 1-30 s.
    assert!(matches!(at(25, RunState::Finished), (At::Inside(_), false, false)));
    // 40 s: within one run length after the last end, so the axis grows to show it.
    assert!(matches!(at(40, RunState::Finished), (At::Inside(_), false, true)));
    assert!(matches!(at(3_600, RunState::Finished), (At::After, false, false)));
    assert!(matches!(at(-3_600, RunState::Finished), (At::Before, false, false)));
    // A run still going has a "now" line too.
    let t = layout(&r.report(RunState::Running, Planned::default()));
    assert_eq!(t.lines.iter().map(|l| l.class).collect::<Vec<_>>(), ["now"]);
}

#[test]
fn open_attempts_end_at_the_report_or_at_the_run_end() {
    let mut r = Records::default();
    r.vm("web-1", "host-a", "host-b", Status::Migrating, "").attempt("host-b", (1.0, None), None);
    for state in [RunState::Running, RunState::Stopped] {
        let t = layout(&r.report(state, Planned::default()));
        let bar = &t.lanes[0].bars[0];
        assert_eq!(bar.class, "open");
        // Generated (and for a stopped run, nothing better known) at T0 + 100 s.
        let end = t.lanes[0].bars[0].x + bar.w;
        assert!(end > 900.0, "{state:?}: {bar:?}");
    }
}

#[test]
fn ticks_are_round_and_about_ten() {
    // (run length s, tick labels): the axis starts a little before T0 = 20:30:15.
    let cases: [(f64, &[&str]); 3] = [
        (30.0, &["20:30:15", "20:30:20", "20:30:25", "20:30:30", "20:30:35", "20:30:40", "20:30:45"]),
        (600.0, &["20:31", "20:32", "20:33", "20:34", "20:35", "20:36", "20:37", "20:38", "20:39", "20:40"]),
        (7_200.0, &["20:30", "20:45", "21:00", "21:15", "21:30", "21:45", "22:00", "22:15", "22:30"]),
    ];
    for (length, want) in cases {
        let mut r = Records::default();
        r.vm("web-1", "host-a", "host-b", Status::Success, "").attempt(
            "host-b",
            (0.0, Some(length)),
            Some(Status::Success),
        );
        let t = layout(&r.report(RunState::Finished, Planned::default()));
        let labels: Vec<&str> = t.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, want, "{length}");
    }
}

#[test]
fn the_page_tells_failures_first_with_their_reasons() {
    let page = render(&sample().report(RunState::Finished, hosts(&["host-a", "host-b", "host-c"])));
    let failures = &page[page.find("<section id=\"failures\">").expect("failures")..];
    let failures = &failures[..failures.find("</section>").expect("end")];
    assert!(
        failures.contains("<b>db-1</b> <span class=\"chip skip\">PRECHECK-FAILED</span> host-b \u{2192} host-a"),
        "{failures}"
    );
    assert!(failures.contains("not started: a check failed</span><br>memory: host-a has 1024 MiB free"), "{failures}");
    assert!(!failures.contains("web-"), "successes are not failures: {failures}");
    // Rows: failures first, in the report's order.
    let rows: Vec<&str> = page.split("<tr><td>").skip(1).map(|r| &r[..r.find('<').expect("cell")]).collect();
    assert_eq!(rows, ["db-1", "web-1", "web-2"]);
    for part in [
        "<g class=\"lane\" data-host=\"host-a\"",
        "3 hosts, 3 attempts",
        "1 SUCCESS</span>",
        // web-1's attempt in the script's data, with its estimate.
        "9,100]",
    ] {
        assert!(page.contains(part), "{part}");
    }

    let mut clean = Records::default();
    clean.vm("web-1", "host-a", "host-b", Status::Success, "").attempt(
        "host-b",
        (1.0, Some(5.0)),
        Some(Status::Success),
    );
    let page = render(&clean.report(RunState::Finished, Planned::default()));
    assert!(page.contains("No failures: every move succeeded."));
}

#[test]
fn the_page_tells_the_runs_hooks_with_their_output() {
    let mut r = sample();
    r.events.push(Event {
        id: 99,
        run: RUN.into(),
        uuid: None,
        at_ms: T0 + 40_000,
        kind: EventKind::Message,
        message: "drain hook on host-a: `upgrade` exited 1 after 2.0 s".into(),
        data: Some(json!({"hook": "drain", "stdout": "<b>done</b>\n", "stderr": ""})),
    });
    let page = render(&r.report(RunState::Finished, Planned::default()));
    let run = &page[page.find("<section id=\"run\">").expect("the run's section")..];
    let run = &run[..run.find("</section>").expect("end")];
    assert!(run.contains("40.0 s</span> drain hook on host-a: `upgrade` exited 1 after 2.0 s"), "{run}");
    assert!(run.contains("<pre>out | &lt;b&gt;done&lt;/b&gt;\n</pre>"), "{run}");
    // Without notes or linked runs, no such section.
    assert!(!render(&sample().report(RunState::Finished, Planned::default())).contains("<section id=\"run\">"));
}

#[test]
fn the_page_escapes_what_the_journal_says() {
    let mut r = Records::default();
    r.vm("<b>&\"vm'</b>", "host-<a>", "host-b", Status::FailureWait, "</script><script>alert(1)</script>")
        .attempt("host-b", (1.0, Some(5.0)), Some(Status::FailureWait))
        .event(2.0, EventKind::Decision, "<!-- decision -->", None);
    let page = render(&r.report(RunState::Finished, Planned::default()));
    for raw in ["<b>&\"vm'", "host-<a>", "</script><script>alert", "<!-- decision"] {
        assert!(!page.contains(raw), "{raw} is escaped");
    }
    assert!(page.contains("&lt;b&gt;&amp;&quot;vm&#39;&lt;/b&gt;"));
    // The data block holds no "<" at all, so nothing in it can end its script.
    let data = &page[page.find("id=\"data\">").expect("data")..];
    let data = &data[..data.find("</script>").expect("end")];
    assert!(!data[10..].contains('<'), "{data}");
}

/// 10,000 VMs on 1,000 hosts, every attempt ended with every figure, one VM in ten with a
/// decision and one in twenty failed and moved cold afterwards: the page stays under 5 MiB.
#[test]
fn a_fleet_report_stays_under_five_mib() {
    let mut r = Records::default();
    for i in 0..10_000 {
        let (from, to) = (format!("host-{:04}", i % 1000), format!("host-{:04}", (i * 7 + 3) % 1000));
        let start = (i / 100) as f64 * 30.0;
        if i % 20 == 0 {
            r.vm(
                &format!("vm-{i:05}"),
                &from,
                &to,
                Status::SuccessCold,
                &format!("moved cold to {to} (the guest restarted)"),
            )
            .attempt(&to, (start, Some(start + 20.0)), Some(Status::FailureWait))
            .attempt(&to, (start + 20.5, Some(start + 29.0)), Some(Status::SuccessCold));
        } else {
            r.vm(&format!("vm-{i:05}"), &from, &to, Status::Success, &format!("moved live to {to}")).attempt(
                &to,
                (start, Some(start + 25.0)),
                Some(Status::Success),
            );
        }
        if i % 10 == 0 {
            r.event(
                start + 10.0,
                EventKind::Decision,
                "raised downtime to 150 ms: remaining memory flat for 2 passes",
                None,
            );
        }
    }
    let planned = Planned {
        deadline_ms: Some(T0 + 3_000_000),
        hosts: (0..1000).map(|h| format!("host-{h:04}")).collect(),
        estimated_makespan_ms: Some(2_800_000),
    };
    let page = render(&r.report(RunState::Finished, planned));
    let mib = page.len() as f64 / (1 << 20) as f64;
    assert!(mib < 5.0, "{mib:.2} MiB");
    assert_eq!(page.matches("<rect ").count(), 2 * 10_500);
    assert_eq!(page.matches("<g class=\"lane\"").count(), 1000);
}
