//! Table-driven: a run and a script in a few lines, the decisions as a trace.

use std::collections::HashMap;

use super::*;

/// Runs `input` and compares the trace of every decision with `expect`.
///
/// ```text
/// limits CLUSTER PER_SOURCE PER_TARGET      # default 8 2 2
/// link HOST MIB_S
/// deadline AT SHOWN
/// gate [VM=STATUS ...]                      # resume_from; VMs not listed are absent
/// vm NAME FROM TO|ANY [mem=MiB] [disk=MiB] [prio=N] [group=G order=N]
/// place VM HOST ... [blind]                 # ANY: the first candidate with room
///                                           # (blind: the first, room or not); none: nowhere
/// decide NOW | finish VM STATUS | stop | adopt VM HOST     # the script
/// send VM | quiet VM | switched VM
/// ```
///
/// Trace: `NOW start VM HOST [@MiB/s]`, `NOW retune VM @MiB/s`, `NOW end VM STATUS: message`,
/// `NOW -` for an empty decision, and `done` when every move has ended.
fn check(input: &str, expect: &str) {
    let mut items: Vec<Item> = Vec::new();
    let mut config = Config::default();
    let mut candidates: HashMap<String, (Vec<String>, bool)> = HashMap::new();
    let mut scheduler: Option<Scheduler> = None;
    let mut trace = Vec::new();
    for line in input.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let attrs: HashMap<&str, &str> = words.iter().filter_map(|w| w.split_once('=')).collect();
        let num = |key: &str, default: i64| attrs.get(key).map_or(default, |v| v.parse().expect("a number"));
        let index = |vm: &str| items.iter().position(|i| i.vm == vm).expect("a VM of the run");
        match words[0] {
            "limits" => {
                let n: Vec<usize> = words[1..].iter().map(|w| w.parse().expect("a number")).collect();
                config.limits = Limits { cluster: n[0], per_source: n[1], per_target: n[2] };
            }
            "link" => {
                config.links.insert(words[1].into(), words[2].parse().expect("a number"));
            }
            "deadline" => {
                config.deadline = Some(Deadline { at: words[1].parse().expect("a number"), shown: words[2].into() });
            }
            "gate" => {
                let gate = attrs.iter().map(|(vm, s)| (vm.to_string(), s.parse().expect("a status")));
                config.resume_from = Some(gate.collect());
            }
            "vm" => items.push(Item {
                vm: words[1].into(),
                from: words[2].into(),
                to: if words[3] == "ANY" { Target::Any } else { Target::Host(words[3].into()) },
                group: attrs.get("group").map(|g| g.to_string()),
                order: num("order", 0) as usize,
                priority: num("prio", 0),
                memory_mib: num("mem", 1024) as u64,
                disk_mib: num("disk", 0) as u64,
            }),
            "place" => {
                let blind = words.last() == Some(&"blind");
                let hosts = words[2..].iter().filter(|w| **w != "blind").map(|w| w.to_string());
                candidates.insert(words[1].into(), (hosts.collect(), blind));
            }
            script => {
                let s = scheduler.get_or_insert_with(|| Scheduler::new(items.clone(), config.clone()));
                match script {
                    "decide" => {
                        let now = words[1];
                        let d = s.decide(now.parse().expect("a time"), |item, view| {
                            let (hosts, blind) = candidates.get(&item.vm)?;
                            hosts.iter().find(|h| *blind || view.has_room(h)).cloned()
                        });
                        let name = |i: usize| &items[i].vm;
                        let round = |mib: f64| (mib * 10.0).round() / 10.0;
                        for x in &d.starts {
                            let cap = x.bandwidth_mib_s.map(|b| format!(" @{}", round(b))).unwrap_or_default();
                            trace.push(format!("{now} start {} {}{cap}", name(x.item), x.to));
                        }
                        for x in &d.retunes {
                            trace.push(format!("{now} retune {} @{}", name(x.item), round(x.bandwidth_mib_s)));
                        }
                        for x in &d.ended {
                            trace.push(format!("{now} end {} {}: {}", name(x.item), x.status, x.message));
                        }
                        if d == Decisions::default() {
                            trace.push(format!("{now} -"));
                        }
                    }
                    "finish" => s.finished(index(words[1]), words[2].parse().expect("a status")),
                    "stop" => s.stop_starting(),
                    "send" => s.set_sending(index(words[1]), true),
                    "quiet" => s.set_sending(index(words[1]), false),
                    "switched" => s.switched_over(index(words[1])),
                    "adopt" => s.adopt(index(words[1]), words[2]),
                    other => panic!("unknown line {other:?}"),
                }
            }
        }
    }
    if scheduler.is_some_and(|s| s.is_done()) {
        trace.push("done".into());
    }
    let expect: Vec<&str> = expect.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let trace = trace.join("\n");
    assert_eq!(trace, expect.join("\n"), "\n--- got:\n{trace}\n");
}

#[test]
fn empty_run_is_done_at_once() {
    check("decide 0", "0 -\ndone");
}

#[test]
fn a_freed_slot_starts_the_next_move_at_once() {
    check(
        "
        limits 4 2 4
        vm a h1 h2
        vm b h1 h2
        vm c h1 h3
        vm d h1 h3
        decide 0
        finish a SUCCESS
        decide 1
        finish c FAILURE-WAIT
        decide 2
        finish b SUCCESS
        finish d SUCCESS
        decide 3
        ",
        "
        0 start a h2
        0 start b h2
        1 start c h3
        2 start d h3
        3 -
        done
        ",
    );
}

#[test]
fn per_target_binds_and_a_blocked_move_does_not_block_its_source() {
    // h3 takes one at a time: b waits while e, behind it on h1, goes to h4.
    check(
        "
        limits 3 2 1
        vm a h1 h3
        vm b h1 h3
        vm c h2 h3
        vm d h2 h4
        vm e h1 h4
        decide 0
        finish a SUCCESS
        decide 1
        finish d SUCCESS
        decide 2
        ",
        "
        0 start a h3
        0 start d h4
        1 start b h3
        2 start e h4
        ",
    );
}

#[test]
fn cluster_binds_across_sources() {
    check(
        "
        limits 1 2 2
        vm a h1 h2
        vm b h3 h4
        decide 0
        decide 1
        finish a SUCCESS
        decide 2
        ",
        "
        0 start a h2
        1 -
        2 start b h4
        ",
    );
}

#[test]
fn sources_take_turns() {
    // By memory alone h1's three big moves would go first; h2 gets every other slot.
    check(
        "
        limits 2 2 9
        vm a1 h1 t mem=4096
        vm a2 h1 t mem=4096
        vm a3 h1 t mem=4096
        vm b1 h2 t
        vm b2 h2 t
        decide 0
        finish a1 SUCCESS
        decide 1
        finish a2 SUCCESS
        decide 2
        finish b1 SUCCESS
        decide 3
        ",
        "
        0 start a1 t
        0 start b1 t
        1 start a2 t
        2 start b2 t
        3 start a3 t
        ",
    );
}

#[test]
fn larger_first_counts_the_disks_a_move_copies() {
    // b's memory is smaller, but with its host-local disk it carries the most.
    check(
        "
        limits 1 1 9
        vm a h1 t mem=8192
        vm b h1 t mem=2048 disk=20480
        vm c h1 t mem=4096
        decide 0
        finish b SUCCESS
        decide 1
        finish a SUCCESS
        decide 2
        finish c SUCCESS
        decide 3
        ",
        "
        0 start b t
        1 start a t
        2 start c t
        3 -
        done
        ",
    );
}

#[test]
fn priority_before_turns_then_larger_memory() {
    check(
        "
        limits 1 1 9
        vm a h1 t prio=0 mem=8192
        vm b h2 t prio=5
        vm c h1 t prio=5 mem=512
        vm d h1 t prio=5 mem=2048
        decide 0
        finish d SUCCESS
        decide 1
        finish b SUCCESS
        decide 2
        finish c SUCCESS
        decide 3
        finish a SUCCESS
        decide 4
        ",
        "
        0 start d t
        1 start b t
        2 start c t
        3 start a t
        4 -
        done
        ",
    );
}

#[test]
fn group_moves_one_at_a_time_in_order_and_a_failure_skips_the_rest() {
    check(
        "
        limits 4 4 4
        vm x h1 h2 group=g order=3
        vm y h1 h2 group=g order=1
        vm z h3 h2 group=g order=2
        vm w h1 h2 group=g order=4
        vm q h1 h2
        decide 0
        finish y SUCCESS-COLD
        decide 1
        finish z FAILURE-WAIT
        decide 2
        finish q SUCCESS
        decide 3
        ",
        "
        0 start y h2
        0 start q h2
        1 start z h2
        2 end x SKIPPED-DEPENDENCY: not started: z, before it in group g, ended FAILURE-WAIT
        2 end w SKIPPED-DEPENDENCY: not started: z, before it in group g, ended FAILURE-WAIT
        3 -
        done
        ",
    );
}

#[test]
fn any_waits_for_room_then_is_placed() {
    // c fits only h3, busy with a: it waits, and goes when a ends. b finds h4.
    check(
        "
        limits 4 2 1
        vm a h1 h3
        vm b h2 ANY
        vm c h2 ANY
        place b h3 h4
        place c h3
        decide 0
        finish a SUCCESS
        decide 1
        ",
        "
        0 start a h3
        0 start b h4
        1 start c h3
        ",
    );
}

#[test]
fn a_placement_without_room_waits() {
    check(
        "
        limits 4 2 1
        vm a h1 h2
        vm b h3 ANY
        place b h2 blind
        decide 0
        finish a SUCCESS
        decide 1
        ",
        "
        0 start a h2
        1 start b h2
        ",
    );
}

#[test]
fn nowhere_to_go_with_nothing_in_flight_is_a_precheck_failure() {
    check(
        "
        vm a h1 ANY group=g order=1
        vm b h1 h2 group=g order=2
        vm c h1 ANY
        place c h2
        decide 0
        finish c SUCCESS
        decide 1
        ",
        "
        0 start c h2
        1 end a PRECHECK-FAILED: not started: no host can take it, and no move in flight could free one
        1 end b SKIPPED-DEPENDENCY: not started: a, before it in group g, ended PRECHECK-FAILED
        done
        ",
    );
}

#[test]
fn the_deadline_stops_new_starts() {
    check(
        "
        limits 1 1 1
        deadline 10 2026-11-23T06:00:00Z
        vm a h1 h2
        vm b h1 h2
        vm c h3 h4 group=g order=1
        vm d h3 h4 group=g order=2
        decide 0
        decide 9.5
        decide 10
        finish a SUCCESS
        decide 11
        ",
        "
        0 start a h2
        9.5 -
        10 end b SKIPPED-TIMEOUT: not started: the deadline 2026-11-23T06:00:00Z was reached
        10 end c SKIPPED-TIMEOUT: not started: the deadline 2026-11-23T06:00:00Z was reached
        10 end d SKIPPED-TIMEOUT: not started: the deadline 2026-11-23T06:00:00Z was reached
        11 -
        done
        ",
    );
}

#[test]
fn resume_from_moves_successes_only() {
    check(
        "
        gate a=SUCCESS b=FAILURE-WAIT d=MIGRATING e=SUCCESS-COLD f=SKIPPED-TIMEOUT g=SUCCESS
        vm a h1 h2
        vm b h1 h2
        vm c h1 h2
        vm d h1 h2
        vm e h3 h2
        vm f h4 h2 group=pair order=1
        vm g h4 h2 group=pair order=2
        decide 0
        ",
        "
        0 start a h2
        0 start e h2
        0 end b FAILURE-WAIT: not moved: carried from the previous run, where it ended FAILURE-WAIT
        0 end c SKIPPED-NO-PREV-STATUS: not moved: absent from the previous run
        0 end d SKIPPED-NO-PREV-STATUS: not moved: no final status in the previous run (it was MIGRATING)
        0 end f SKIPPED-TIMEOUT: not moved: carried from the previous run, where it ended SKIPPED-TIMEOUT
        0 end g SKIPPED-DEPENDENCY: not started: f, before it in group pair, ended SKIPPED-TIMEOUT
        ",
    );
}

#[test]
fn links_are_shared_and_reshared() {
    // h1 sends at 100, h2 receives at 60; h3 and h4 have no link. Those sending fill the
    // links (h2 is full first: a, older into h2, 40 and c 20; b gets the 60 a leaves on h1);
    // a migration not sending yet is capped at the share it will have against those
    // sending (d: a fifth of h1, being the third sending into h3, a quarter of b's weight).
    check(
        "
        limits 8 2 4
        link h1 100
        link h2 60
        vm a h1 h2
        vm b h1 h3
        vm c h4 h2
        vm d h1 h3 prio=-1
        vm e h4 h3
        decide 0
        send a
        send b
        send c
        send e
        decide 0.5
        finish a SUCCESS
        decide 1
        send d
        decide 1.5
        finish b SUCCESS
        decide 2
        ",
        "
        0 start a h2 @60
        0 start c h2 @60
        0 start b h3 @100
        0 start e h3
        0.5 retune a @40
        0.5 retune c @20
        0.5 retune b @60
        1 start d h3 @20
        1 retune c @60
        1 retune b @100
        1.5 retune b @80
        2 retune d @100
        ",
    );
}

#[test]
fn a_migration_in_setup_or_finishing_leaves_the_link_to_those_sending() {
    // Two migrations out of h1 (link 64): while one sets up or finishes, the other gets it
    // all; while both send, the older gets twice the younger's share (SENIORITY).
    check(
        "
        limits 8 2 2
        link h1 64
        vm a h1 h2
        vm b h1 h3
        decide 0
        send a
        decide 1
        send b
        decide 2
        quiet a
        decide 3
        finish a SUCCESS
        decide 4
        ",
        "
        0 start a h2 @64
        0 start b h3 @64
        1 retune b @21.3
        2 retune a @42.7
        3 retune a @32
        3 retune b @64
        4 -
        ",
    );
}

#[test]
fn stop_ends_what_has_not_started() {
    check(
        "
        limits 1 1 1
        vm a h1 h2
        vm b h1 h2
        vm c h1 h2
        decide 0
        stop
        decide 1
        finish a SUCCESS
        decide 2
        ",
        "
        0 start a h2
        1 end b ABORTED: not started: run stopped by the operator
        1 end c ABORTED: not started: run stopped by the operator
        2 -
        done
        ",
    );
}

#[test]
fn adopted_moves_count_and_their_group_follows() {
    // As resume finds them: a in flight, e already ended.
    check(
        "
        limits 2 1 2
        link h1 100
        vm a h1 h2 group=g order=1
        vm b h1 h2 group=g order=2
        vm c h1 h3
        vm d h4 h3
        vm e h4 h3
        adopt a h2
        adopt e h3
        finish e SUCCESS
        decide 0
        finish a SUCCESS
        decide 1
        ",
        "
        0 start d h3
        0 retune a @100
        1 start b h2 @100
        ",
    );
}

#[test]
fn a_switched_over_move_gives_its_slots_back_before_it_ends() {
    // a switched over at 1: b starts from h1 and to h2 although a has not ended, and the
    // cluster limit of 2 counts b and c only. a's late end frees nothing twice.
    check(
        "
        limits 2 1 1
        link h1 64
        vm a h1 h2
        vm b h1 h2
        vm c h3 h4
        vm d h3 h4
        decide 0
        send a
        switched a
        send a
        decide 1
        finish a SUCCESS
        decide 2
        finish b SUCCESS
        finish c SUCCESS
        decide 3
        finish d SUCCESS
        decide 4
        ",
        "
        0 start a h2 @64
        0 start c h4
        1 start b h2 @64
        2 -
        3 start d h4
        4 -
        done
        ",
    );
}

#[test]
fn urgency_and_seniority_weigh_a_shared_link() {
    // h1 and h2 (links 100) send into h3 (150). h1 has 8 GiB left to send (81.9 s of its
    // link, 64 on the grid of powers of √2), h2 1 GiB (10.2 s), h3 9 GiB to receive (61.4
    // s, 45.3 on the grid): b weighs 64, c 45.3 (its target's) halved, being younger into
    // h3: b gets all of h1's 100, c the 50 left of h3. Once b ends, a and c weigh the same
    // (32: h1's 41 s, h3's 34.1 s), halved for the younger into h3, a: a gets 50, c 100.
    check(
        "
        limits 8 1 4
        link h1 100
        link h2 100
        link h3 150
        vm a h1 h3 mem=4095
        vm b h1 h3 mem=4096
        vm c h2 h3 mem=1024
        decide 0
        send b
        send c
        decide 1
        finish b SUCCESS
        decide 2
        ",
        "
        0 start b h3 @100
        0 start c h3 @100
        1 retune c @50
        2 start a h3 @50
        2 retune c @100
        ",
    );
}

#[test]
fn small_changes_of_urgency_change_no_share() {
    // a and b share h1's link (100). b's target also expects f (19,200 MiB): b's urgency is
    // 20.2 s to a's 20, the same step of the grid (16): the shares are as seniority alone
    // makes them. f's end changes no weight, so no cap: not worth a call to the hypervisor
    // and a line in the journal.
    check(
        "
        limits 8 2 4
        link h1 100
        link h2 1000
        link h3 1000
        vm a h1 h2 mem=1000
        vm b h1 h3 mem=1000
        vm f h4 h3 mem=19200
        decide 0
        send a
        send b
        decide 1
        finish f SUCCESS
        decide 2
        ",
        "
        0 start a h2 @100
        0 start f h3 @1000
        0 start b h3 @100
        1 retune a @66.7
        1 retune f @666.7
        1 retune b @33.3
        2 -
        ",
    );
}

#[test]
fn urgency_is_rounded_to_its_grid_and_a_small_change_of_a_cap_is_no_retune() {
    assert!((crate::coarse(20.0) - 16.0).abs() < 1e-9);
    assert!((crate::coarse(20.2) - 16.0).abs() < 1e-9);
    assert!((crate::coarse(23.0) - 22.627).abs() < 0.001);
    assert!(crate::about(100.0, 101.9) && crate::about(100.0, 98.1));
    assert!(!crate::about(100.0, 102.5) && !crate::about(100.0, 97.0));
}

#[test]
fn placement_is_asked_again_only_once_a_move_frees_room() {
    let item = |vm: &str, to: Target| Item {
        vm: vm.into(),
        from: "h1".into(),
        to,
        group: None,
        order: 0,
        priority: 0,
        memory_mib: 1024,
        disk_mib: 0,
    };
    let items = vec![item("a", Target::Host("h2".into())), item("b", Target::Any)];
    let mut s = Scheduler::new(items, Config::default());
    let asked = std::cell::Cell::new(0);
    let place = |_: &Item, _: &View| {
        asked.set(asked.get() + 1);
        None
    };
    for now in 0..3 {
        s.decide(f64::from(now), place);
    }
    s.set_sending(0, true);
    s.decide(3.0, place);
    assert_eq!(asked.get(), 1, "b refused once, not at every decision");
    s.switched_over(0);
    s.decide(4.0, place);
    assert_eq!(asked.get(), 2, "asked again once a switch-over freed room");
}
