//! A roll's report, from records made here: per host, per VM, as text, JSON and HTML, and
//! its timeline of waves, finished and under way.

use ferry_journal::{Event, EventKind, Move, Run, RunKind, RunState};
use ferry_model::Status;
use serde_json::{json, Value};

use crate::html::render;
use crate::roll::{
    result_of, result_words, roll_view, HostOutcome, RollView, RunRecords, ScriptResult, Span, WaveRecords,
};
use crate::roll_timeline::{layout, Step};
use crate::text::format_report;
use crate::timeline::At;
use crate::view::{build_report, Planned, Report};

/// 2026-11-23 20:30:15 UTC.
const T0: i64 = 1_795_465_815_000;
const ROLL: &str = "r-roll";

fn at(s: f64) -> i64 {
    T0 + (s * 1000.0) as i64
}

fn run(id: &str, name: &str, kind: RunKind, parent: Option<&str>, state: RunState, created_s: f64) -> Run {
    Run {
        id: id.into(),
        plan_name: name.into(),
        kind,
        parent: parent.map(str::to_string),
        state,
        abort_requested: false,
        owner: None,
        heartbeat_ms: None,
        created_ms: at(created_s),
        updated_ms: at(created_s),
        finished_ms: state.is_ended().then(|| at(created_s + 30.0)),
        generation: 1,
    }
}

/// The records of one run, made step by step.
struct Records(RunRecords);

impl Records {
    fn new(run: Run) -> Records {
        Records(RunRecords { run, moves: Vec::new(), attempts: Vec::new(), events: Vec::new() })
    }

    /// A move of `vm`, `start`..`end` seconds after T0 (`None`: not ended).
    fn mv(mut self, vm: &str, from: &str, to: &str, status: Status, (start, end): (f64, Option<f64>)) -> Records {
        self.0.moves.push(Move {
            run: self.0.run.id.clone(),
            uuid: format!("u-{vm}"),
            vm: vm.into(),
            source: from.into(),
            target: Some(to.into()),
            group: None,
            seq: self.0.moves.len() as i64,
            priority: 0,
            status,
            phase: None,
            phase_done: true,
            message: String::new(),
            started_ms: Some(at(start)),
            ended_ms: end.map(at),
            updated_ms: at(start),
            generation: 1,
        });
        self
    }

    /// A run-level event `at` seconds after T0.
    fn note(mut self, s: f64, message: &str, data: Option<Value>) -> Records {
        self.0.events.push(Event {
            id: self.0.events.len() as i64 + 1,
            run: self.0.run.id.clone(),
            uuid: None,
            at_ms: at(s),
            kind: EventKind::Message,
            message: message.into(),
            data,
        });
        self
    }
}

fn hook(host: &str, code: i64, duration_ms: u64, stdout: &str, stderr: &str) -> Value {
    json!({
        "hook": "drain", "command": "/lab/hook.sh", "exit_code": code, "timed_out": false, "error": null,
        "duration_ms": duration_ms, "stdout": stdout, "stderr": stderr, "lost_to": null, "stopped_by": null,
        "env": { "FERRY_HOST": host, "FERRY_VMS": "", "FERRY_RUN_ID": "w", "FERRY_HOOK": "drain" },
    })
}

fn begun(host: &str) -> Value {
    json!({ "hook": "drain-begun", "env": { "FERRY_HOST": host } })
}

fn check(host: &str, code: i64, attempts: u64) -> Value {
    json!({
        "hook": "check", "command": "/lab/check.sh", "exit_code": code, "timed_out": false, "error": null,
        "duration_ms": 100, "stdout": "", "stderr": "", "lost_to": null, "stopped_by": null,
        "env": { "FERRY_HOST": host }, "attempts": attempts,
    })
}

fn maintenance(host: &str, vm: &str, step: &str, done: bool) -> Value {
    let mut record = json!({ "step": step, "host": host, "vm": vm, "uuid": format!("u-{vm}"), "done": done });
    if step == "shut-down" && done {
        record["was_running"] = json!(true);
    }
    json!({ "maintenance": record })
}

/// A roll of four hosts, one a wave, host-d left out: wave 1 (host-a) went through every
/// step; wave 2 (host-b) failed its hook, so the roll stopped and wave 3 never started.
fn stopped_roll() -> (Run, Vec<Event>, Vec<WaveRecords>) {
    let roll = Records::new(run(ROLL, "roll-lab", RunKind::Roll, None, RunState::Stopped, 0.0))
        .note(
            0.0,
            "3 waves of 4 hosts; 1 skipped",
            Some(json!({
                "roll_waves": { "hosts": [["host-a"], ["host-b"], ["host-c"]], "canaries": 1 },
                "skipped": [["host-d", "vm-9 stays (maintenance = \"stay\")"]],
            })),
        )
        .note(0.5, "wave 1: host-a", None)
        // Wave 1's verdict as a record (its words may change); wave 2's, as an older ferry
        // journaled it, in words only.
        .note(18.0, "wave 1 (host-a) went well", Some(json!({ "wave_verdict": { "wave": 1, "ended_well": true } })))
        .note(30.0, "wave 2: host-b: did not end well (see its run)", None)
        .note(30.1, "roll stopped at wave 2 (on_host_failure = \"stop\")", None);
    let wave_1 =
        Records::new(run("r-w1", "roll-lab: wave 1 (host-a)", RunKind::Drain, Some(ROLL), RunState::Finished, 0.5))
            .mv("vm-1", "host-a", "host-b", Status::Success, (1.0, Some(5.0)))
            .mv("vm-2", "host-a", "host-c", Status::Success, (1.5, Some(6.0)))
            .note(
                6.4,
                "db-1 on host-a: shut down for the host's maintenance: begun",
                Some(maintenance("host-a", "db-1", "shut-down", false)),
            )
            .note(
                6.5,
                "db-1 on host-a: shut down for the host's maintenance: shut down",
                Some(maintenance("host-a", "db-1", "shut-down", true)),
            )
            .note(7.0, "drain hook on host-a: starting `/lab/hook.sh`", Some(begun("host-a")))
            .note(
                11.0,
                "drain hook on host-a: `/lab/hook.sh` exited 0 after 4.0 s",
                Some(hook("host-a", 0, 4_000, "1\n2\n3\n4\n5\n6\nupgraded host-a\n", "")),
            )
            .note(
                12.0,
                "check of host-a: `/lab/check.sh` exited 0 after 0.1 s (attempt 2)",
                Some(check("host-a", 0, 2)),
            )
            .note(
                12.5,
                "db-1 on host-a: started again after the host's maintenance",
                Some(maintenance("host-a", "db-1", "start", true)),
            )
            .note(12.6, "returning the VMs of host-a to where they were", None);
    let return_1 = Records::new(run("r-b1", "return", RunKind::Rollback, Some("r-w1"), RunState::Finished, 12.7))
        .mv("vm-1", "host-b", "host-a", Status::RolledBack, (13.0, Some(16.0)))
        .mv("vm-2", "host-c", "host-a", Status::RolledBack, (13.5, Some(17.0)));
    let wave_2 =
        Records::new(run("r-w2", "roll-lab: wave 2 (host-b)", RunKind::Drain, Some(ROLL), RunState::Finished, 18.5))
            .mv("vm-3", "host-b", "host-a", Status::Success, (20.0, Some(24.0)))
            .note(25.0, "drain hook on host-b: starting `/lab/hook.sh`", Some(begun("host-b")))
            .note(
                25.2,
                "drain hook on host-b: `/lab/hook.sh` exited 3 after 0.2 s: upgrade of host-b failed",
                Some(hook("host-b", 3, 200, "", "upgrade of host-b failed\n")),
            )
            .note(
                25.3,
                "host-b: the hook failed: the VMs stay where they are; `ferry rollback r-w2` returns them",
                None,
            );
    let waves = vec![
        WaveRecords { wave: wave_2.0, returns: Vec::new() },
        WaveRecords { wave: wave_1.0, returns: vec![return_1.0] },
    ];
    (roll.0.run, roll.0.events, waves)
}

fn report_of(roll: &Run, events: &[Event], waves: &[WaveRecords], now_ms: i64) -> Report {
    let mut report = build_report(roll, &[], &[], events.to_vec(), Planned::default(), now_ms);
    report.roll = Some(roll_view(events, waves));
    report
}

fn view() -> RollView {
    let (_, events, waves) = stopped_roll();
    roll_view(&events, &waves)
}

#[test]
fn each_host_in_wave_order_with_its_steps_and_outcome() {
    let v = view();
    let hosts: Vec<(&str, Option<usize>, &HostOutcome)> =
        v.hosts.iter().map(|h| (h.host.as_str(), h.wave, &h.outcome)).collect();
    assert_eq!(
        hosts,
        [
            ("host-a", Some(1), &HostOutcome::Done),
            ("host-b", Some(2), &HostOutcome::Failed { why: "its hook exited 3".into() }),
            ("host-c", Some(3), &HostOutcome::NotReached),
            ("host-d", None, &HostOutcome::Skipped { why: "vm-9 stays (maintenance = \"stay\")".into() }),
        ]
    );
    let a = &v.hosts[0];
    let drain = a.drain.as_ref().expect("host-a was drained");
    assert_eq!(drain.span, Some(Span { started_ms: at(1.0), ended_ms: Some(at(6.0)) }));
    let left: Vec<(&str, Option<&str>, Status)> =
        drain.vms.iter().map(|d| (d.vm.as_str(), d.host.as_deref(), d.status)).collect();
    assert_eq!(left, [("vm-1", Some("host-b"), Status::Success), ("vm-2", Some("host-c"), Status::Success)]);
    let steps: Vec<(&str, &str, i64)> =
        a.maintenance.iter().map(|m| (m.vm.as_str(), m.step.as_str(), m.at_ms)).collect();
    assert_eq!(steps, [("db-1", "shut-down", at(6.5)), ("db-1", "start", at(12.5))]);
    let hook = a.hook.as_ref().expect("host-a's hook");
    assert_eq!(hook.result, ScriptResult::Exited { code: 0 });
    assert_eq!((hook.command.as_deref(), hook.duration_ms, hook.runs), (Some("/lab/hook.sh"), Some(4_000), 1));
    // From its intent to its result.
    assert_eq!(hook.span, Some(Span { started_ms: at(7.0), ended_ms: Some(at(11.0)) }));
    assert_eq!(
        (hook.stdout.before, hook.stdout.lines.as_slice()),
        (2, ["3", "4", "5", "6", "upgraded host-a"].map(String::from).as_slice())
    );
    let check = a.check.as_ref().expect("host-a's check");
    assert_eq!((check.result.ok(), check.attempts, check.duration_ms), (true, Some(2), Some(100)));
    // No intent is journaled for a check: its end less its duration.
    assert_eq!(check.span, Some(Span { started_ms: at(11.9), ended_ms: Some(at(12.0)) }));
    let back = a.back.as_ref().expect("host-a's return");
    assert_eq!((back.run.as_str(), back.all_back), ("r-b1", true));
    assert_eq!(back.span, Some(Span { started_ms: at(13.0), ended_ms: Some(at(17.0)) }));

    let b = &v.hosts[1];
    assert_eq!(b.hook.as_ref().map(|h| h.stderr.lines.clone()), Some(vec!["upgrade of host-b failed".to_string()]));
    assert_eq!((b.check.is_none(), b.back.is_none()), (true, true));
    assert_eq!((v.hosts[2].run.as_deref(), v.hosts[2].drain.is_none()), (None, true));

    let waves: Vec<(usize, bool, Option<&str>, Option<bool>)> =
        v.waves.iter().map(|w| (w.number, w.canary, w.run.as_deref(), w.ended_well)).collect();
    assert_eq!(
        waves,
        [(1, true, Some("r-w1"), Some(true)), (2, false, Some("r-w2"), Some(false)), (3, false, None, None)]
    );
}

#[test]
fn each_vm_has_its_path_through_the_waves() {
    let v = view();
    let paths: Vec<(&str, &str, String, &str, bool)> = v
        .vms
        .iter()
        .map(|p| (p.vm.as_str(), p.home.as_str(), crate::text::vm_path_words(p), p.ends_on.as_str(), p.off))
        .collect();
    assert_eq!(
        paths,
        [
            ("db-1", "host-a", "wave 1: shut down on host-a, started again on host-a".to_string(), "host-a", false),
            (
                "vm-1",
                "host-a",
                "wave 1: host-a -> host-b SUCCESS, back host-b -> host-a ROLLED-BACK".to_string(),
                "host-a",
                false
            ),
            (
                "vm-2",
                "host-a",
                "wave 1: host-a -> host-c SUCCESS, back host-c -> host-a ROLLED-BACK".to_string(),
                "host-a",
                false
            ),
            // host-b's hook failed: its VM stays where it went.
            ("vm-3", "host-b", "wave 2: host-b -> host-a SUCCESS".to_string(), "host-a", false),
        ]
    );
}

#[test]
fn the_text_report_has_a_block_per_host_and_a_row_per_vm() {
    let (roll, events, waves) = stopped_roll();
    let text = format_report(&report_of(&roll, &events, &waves, at(40.0)));
    let expect = "\nhosts\n\
        \x20 host-a  wave 1  done\n\
        \x20   drain   5.0 s (20:30:16 to 20:30:21 UTC): vm-1 -> host-b SUCCESS, vm-2 -> host-c SUCCESS\n\
        \x20   maintenance  db-1 shut down at 20:30:21\n\
        \x20   maintenance  db-1 started again at 20:30:27\n\
        \x20   hook    `/lab/hook.sh` exited 0 after 4.0 s (20:30:22 to 20:30:26 UTC)\n\
        \x20     out | … 2 lines before\n\
        \x20     out | 3\n\
        \x20     out | 4\n\
        \x20     out | 5\n\
        \x20     out | 6\n\
        \x20     out | upgraded host-a\n\
        \x20   check   passed after 2 attempts: `/lab/check.sh` exited 0 after 0.1 s (20:30:26 to 20:30:27 UTC)\n\
        \x20   return  4.0 s (20:30:28 to 20:30:32 UTC), every VM back (run r-b1): vm-1 <- host-b ROLLED-BACK, vm-2 <- host-c ROLLED-BACK\n\
        \x20 host-b  wave 2  failed: its hook exited 3\n\
        \x20   drain   4.0 s (20:30:35 to 20:30:39 UTC): vm-3 -> host-a SUCCESS\n\
        \x20   hook    `/lab/hook.sh` exited 3 after 0.2 s (20:30:40 to 20:30:40 UTC)\n\
        \x20     err | upgrade of host-b failed\n\
        \x20 host-c  wave 3  not reached\n\
        \x20 host-d  skipped: vm-9 stays (maintenance = \"stay\")\n\
        \n\
        VMs\n\
        \x20 VM    HOME    PATH                                                                 NOW ON\n\
        \x20 db-1  host-a  wave 1: shut down on host-a, started again on host-a                 host-a\n\
        \x20 vm-1  host-a  wave 1: host-a -> host-b SUCCESS, back host-b -> host-a ROLLED-BACK  host-a\n\
        \x20 vm-2  host-a  wave 1: host-a -> host-c SUCCESS, back host-c -> host-a ROLLED-BACK  host-a\n\
        \x20 vm-3  host-b  wave 2: host-b -> host-a SUCCESS                                     host-a\n";
    assert!(text.contains(expect), "{text}");
}

#[test]
fn the_json_report_has_the_roll_typed() {
    let (roll, events, waves) = stopped_roll();
    let json = serde_json::to_value(report_of(&roll, &events, &waves, at(40.0))).expect("serialises");
    let hosts = &json["roll"]["hosts"];
    assert_eq!(hosts[0]["host"], "host-a");
    assert_eq!(hosts[0]["outcome"], "done");
    assert_eq!(hosts[0]["hook"]["result"], json!({ "kind": "exited", "code": 0 }));
    assert_eq!(hosts[0]["check"]["attempts"], 2);
    assert_eq!(hosts[0]["return"]["all_back"], true);
    assert_eq!(hosts[0]["drain"]["span"], json!({ "started_ms": at(1.0), "ended_ms": at(6.0) }));
    assert_eq!(hosts[1]["outcome"], "failed");
    assert_eq!(hosts[1]["why"], "its hook exited 3");
    assert_eq!(hosts[2]["outcome"], "not-reached");
    assert_eq!(hosts[3]["outcome"], "skipped");
    assert_eq!(
        json["roll"]["vms"][3]["steps"][0],
        json!({
            "wave": 2, "step": "leave", "from": "host-b", "to": "host-a", "status": "SUCCESS", "at_ms": at(20.0),
        })
    );
    // A run that is no roll has no such key.
    let plain = build_report(&roll, &[], &[], Vec::new(), Planned::default(), T0);
    assert!(serde_json::to_value(plain).expect("serialises").get("roll").is_none());
}

#[test]
fn a_roll_under_way_shows_its_hook_running_until_now() {
    let (mut roll, events, mut waves) = stopped_roll();
    roll.state = RunState::Running;
    roll.finished_ms = None;
    // Wave 2 is running its hook: begun, not ended yet.
    let wave_2 = &mut waves[0].wave;
    wave_2.run.state = RunState::Running;
    wave_2.run.finished_ms = None;
    wave_2.events.retain(|e| e.at_ms < at(25.1));
    let events: Vec<Event> = events.into_iter().filter(|e| e.at_ms < at(20.0)).collect();
    let v = roll_view(&events, &waves);
    let b = &v.hosts[1];
    assert_eq!(b.outcome, HostOutcome::UnderWay);
    let hook = b.hook.as_ref().expect("its hook");
    assert_eq!(
        (&hook.result, hook.span),
        (&ScriptResult::Running, Some(Span { started_ms: at(25.0), ended_ms: None }))
    );

    let now = at(40.0);
    let t = layout(&v, roll.created_ms, None, now);
    let lane = t.lanes.iter().find(|l| l.host == "host-b").expect("host-b's lane");
    let running = lane.segments.iter().find(|s| s.step == Step::Hook).expect("its hook");
    assert!(running.open && !running.failed, "{running:?}");
    // It reaches "now", the axis's last instant but its air.
    let Some((At::Inside(now_x), _)) = t.now else { panic!("no now line: {:?}", t.now) };
    assert!((running.x + running.w - now_x).abs() < 0.5, "{running:?} ends at {now_x}");
    // The same roll as text: under way, the hook "is running".
    let text = format_report(&report_of(&roll, &events, &waves, now));
    assert!(text.contains("  host-b  wave 2  under way\n"), "{text}");
    assert!(text.contains("    hook    `/lab/hook.sh` is running (since 20:30:40 UTC)\n"), "{text}");
}

/// A lane's steps: which, and whether it failed.
type Steps = Vec<(Step, bool)>;

#[test]
fn the_timeline_has_a_lane_per_host_with_its_steps_in_time() {
    let (roll, _, _) = stopped_roll();
    let v = view();
    let t = layout(&v, roll.created_ms, Some(at(30.1)), at(100.0));
    // host-d, left out, has no lane; host-c, not reached, has an empty one.
    let lanes: Vec<(&str, usize, Steps)> = t
        .lanes
        .iter()
        .map(|l| (l.host.as_str(), l.wave, l.segments.iter().map(|s| (s.step, s.failed)).collect()))
        .collect();
    assert_eq!(
        lanes,
        [
            ("host-a", 1, vec![(Step::Drain, false), (Step::Hook, false), (Step::Check, false), (Step::Return, false)]),
            ("host-b", 2, vec![(Step::Drain, false), (Step::Hook, true)]),
            ("host-c", 3, vec![]),
        ]
    );
    // An ended roll has no "now"; each step keeps its time: host-a's drain (1-6 s) ends
    // before its hook (7-11 s) starts, which ends before its return (13-17 s).
    assert_eq!(t.now, None);
    let a = &t.lanes[0].segments;
    assert!(a[0].x + a[0].w < a[1].x && a[1].x + a[1].w < a[3].x, "{a:?}");
    assert_eq!(a[1].title, "hook host-a: exited 0 (4.0 s (20:30:22 to 20:30:26 UTC))");
}

#[test]
fn the_page_of_a_roll_has_its_hosts_its_timeline_and_its_vms() {
    let (roll, events, waves) = stopped_roll();
    let page = render(&report_of(&roll, &events, &waves, at(100.0)));
    let section = |id: &str| {
        let from = page.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no {id} section"));
        let part = &page[from..];
        part[..part.find("</section>").expect("its end")].to_string()
    };
    assert!(
        page.contains(
            "<dt>4 hosts in 3 waves</dt><dd><span class=\"chip ok\">1 done</span> <span class=\"chip fail\">1 \
             failed</span> <span class=\"chip skip\">1 not reached</span> <span class=\"chip skip\">1 skipped</span>"
        ),
        "{page}"
    );
    let hosts = section("hosts");
    assert!(hosts.contains("<tr data-host=\"host-b\"><td><b>host-b</b><td>2<td>"), "{hosts}");
    assert!(hosts.contains("<span class=\"chip fail\">exited 3</span>"), "{hosts}");
    assert!(hosts.contains("<pre>err | upgrade of host-b failed\n</pre>"), "{hosts}");
    assert!(hosts.contains("<span class=\"chip ok\">2 of 2 back</span>"), "{hosts}");
    assert!(hosts.contains("<td class=\"fail\">failed: its hook exited 3"), "{hosts}");
    let waves_section = section("waves");
    assert_eq!(waves_section.matches("<g class=\"lane\"").count(), 3);
    assert!(waves_section.contains("<rect class=\"hook bad\""), "{waves_section}");
    assert!(waves_section.contains("<text class=\"wave\" x=\"4\" y=\"11\">wave 2</text>"), "{waves_section}");
    let vms = section("roll-vms");
    assert!(
        vms.contains("<tr><td><b>vm-3</b><td>host-b<td>wave 2: host-b -&gt; host-a SUCCESS<td class=\"fail\">host-a"),
        "{vms}"
    );
    // A roll moves nothing itself: no run timeline, no failures list, no VM table of moves.
    for absent in ["id=\"lanes\"", "<section id=\"failures\">", "<section id=\"moves\">"] {
        assert!(!page.contains(absent), "{absent}");
    }
}

/// A journal from before the roll journaled its waves: the wave runs, in the order they
/// were created, with the hosts their records name.
#[test]
fn without_its_journaled_waves_the_roll_is_told_from_its_wave_runs() {
    let (_, _, waves) = stopped_roll();
    let v = roll_view(&[], &waves);
    let hosts: Vec<(&str, Option<usize>)> = v.hosts.iter().map(|h| (h.host.as_str(), h.wave)).collect();
    assert_eq!(hosts, [("host-a", Some(1)), ("host-b", Some(2))]);
    // No verdict journaled either: the host's own records decide.
    assert_eq!(v.hosts[0].outcome, HostOutcome::Done);
    assert_eq!(v.hosts[1].outcome, HostOutcome::Failed { why: "its hook exited 3".into() });
}

#[test]
fn a_simulated_hook_is_told_as_simulated_and_ended_well() {
    let mut data = hook("h-0001", 0, 300_000, "", "");
    assert_eq!(result_of(&data), ScriptResult::Exited { code: 0 });
    data["simulated"] = json!(true);
    let result = result_of(&data);
    assert_eq!((result_words(&result), result.ok()), ("was simulated".to_string(), true));
}

#[test]
fn the_status_of_a_roll_has_a_row_per_host() {
    let (roll, events, waves) = stopped_roll();
    let mut status = crate::view::status_view(&roll, &[], &events, at(40.0));
    status.roll = Some(roll_view(&events, &waves));
    let text = crate::text::format_status(&status);
    let expect = "HOST    WAVE  OUTCOME                                     HOOK      CHECK     RETURN\n\
        host-a  1     done                                        exited 0  exited 0  every VM back\n\
        host-b  2     failed: its hook exited 3                   exited 3  -         -\n\
        host-c  3     not reached                                 -         -         -\n\
        host-d  -     skipped: vm-9 stays (maintenance = \"stay\")  -         -         -\n";
    assert!(text.contains(expect), "{text}");
}
