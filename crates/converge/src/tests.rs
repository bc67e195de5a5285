//! Synthetic sample sequences, one per path through the policy.

use super::*;

const M: u64 = 1 << 20;

fn policy(max_downtime_ms: u64, postcopy: bool) -> Policy {
    Policy { max_downtime_ms, postcopy, auto_converge: false, stall_timeout_s: 20, ..Policy::default() }
}

/// A sample in pass `pass` with `remaining` MiB of memory left, sending at `rate` MiB/s.
fn sample(pass: u64, remaining: u64, rate: u64, expected_ms: Option<u64>) -> Progress {
    Progress {
        total_bytes: 256 * M,
        memory_total_bytes: 256 * M,
        memory_remaining_bytes: remaining * M,
        remaining_bytes: remaining * M,
        bandwidth_bytes_s: rate * M,
        memory_passes: pass,
        expected_downtime_ms: expected_ms,
        ..Progress::default()
    }
}

/// Feeds `(time, sample)` pairs; returns every decision with its time.
fn run(policy: &Policy, samples: &[(f64, Progress)]) -> Vec<(f64, Decision)> {
    let plan = start(policy, &StartInput { memory_mib: 256, dirty_mib_s: None, bandwidth_mib_s: Some(64.0) });
    let mut c = Converger::new(Bounds::of(policy, 256, None), &plan);
    samples.iter().filter_map(|(t, s)| c.observe(*t, s).map(|d| (*t, d))).collect()
}

/// Passes of `len` seconds each, every pass starting with `starts[i]` MiB left and sending
/// it down by half within the pass; two samples per second.
fn passes(starts: &[u64], len: f64, rate: u64, expected_ms: Option<u64>) -> Vec<(f64, Progress)> {
    let mut out = Vec::new();
    let mut t = 0.5;
    for (i, &left) in starts.iter().enumerate() {
        let n = (len * 2.0) as u64;
        for k in 0..n {
            out.push((t, sample(i as u64 + 1, left - left * k / (2 * n), rate, expected_ms)));
            t += 0.5;
        }
    }
    out
}

#[test]
fn schedule_steps_up_to_the_maximum() {
    for (max, want) in [
        (300, vec![75, 150, 300]),
        (1000, vec![250, 500, 1000]),
        (100, vec![30, 50, 100]),
        (40, vec![30, 40]),
        (10, vec![30]),
    ] {
        assert_eq!(schedule(max), want, "max {max}");
    }
}

#[test]
fn start_chooses_the_options_that_cannot_be_chosen_later() {
    let cases = [
        (true, false, Some(80.0), "cannot converge by pre-copy alone"),
        (false, true, Some(10.0), "expected to converge (16 % of the link)"),
        (false, false, None, "dirty rate unknown"),
    ];
    for (auto_converge, postcopy, dirty, says) in cases {
        let p = Policy { auto_converge, postcopy, ..Policy::default() };
        let plan = start(&p, &StartInput { memory_mib: 256, dirty_mib_s: dirty, bandwidth_mib_s: Some(64.0) });
        assert_eq!((plan.auto_converge, plan.postcopy, plan.downtime_ms), (auto_converge, postcopy, 75));
        assert!(plan.reason.contains(says), "{}", plan.reason);
        assert_eq!(plan.reason.contains("auto-converge requested"), auto_converge, "{}", plan.reason);
        assert_eq!(plan.reason.contains("post-copy allowed"), postcopy, "{}", plan.reason);
    }
}

#[test]
fn the_throttle_starts_where_the_guest_needs_it() {
    let input =
        |dirty: Option<f64>, bw: Option<f64>| StartInput { memory_mib: 256, dirty_mib_s: dirty, bandwidth_mib_s: bw };
    for (dirty, bw, want) in [
        (Some(10.0), Some(64.0), None),
        (Some(24.0), Some(12.0), Some((75, 25))),
        (Some(100.0), Some(12.0), Some((80, 25))),
        (Some(13.0), Some(12.0), Some((54, 25))),
        (None, Some(12.0), Some((50, 25))),
        (Some(10.0), None, Some((50, 25))),
    ] {
        assert_eq!(throttle(&input(dirty, bw)), want, "{dirty:?} {bw:?}");
    }
}

#[test]
fn a_converging_migration_is_left_alone() {
    // Each pass starts with half of the previous one's memory.
    let decisions = run(&policy(300, true), &passes(&[200, 100, 50, 25, 12], 2.0, 64, Some(400)));
    assert_eq!(decisions, vec![]);
}

#[test]
fn flat_passes_raise_the_limit_to_the_smallest_step_covering_the_expected_downtime() {
    let decisions = run(&policy(300, false), &passes(&[120, 60, 60, 60], 1.0, 64, Some(120)));
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    let (t, d) = &decisions[0];
    assert_eq!(*t, 3.5, "at the first sample of the second flat pass");
    let Decision::RaiseDowntime { ms, reason } = d else { panic!("{d:?}") };
    assert_eq!(*ms, 150);
    assert!(reason.contains("none of the last 2 passes") && reason.contains("QEMU expects 120 ms"), "{reason}");
    assert!(d.describe().starts_with("raised downtime to 150 ms: remaining memory flat"), "{}", d.describe());
}

#[test]
fn a_larger_share_starts_the_count_of_flat_passes_afresh() {
    let policy = policy(300, false);
    let plan = start(&policy, &StartInput { memory_mib: 256, dirty_mib_s: None, bandwidth_mib_s: Some(21.0) });
    let samples = passes(&[120, 60, 60, 60, 60], 1.0, 21, Some(120));
    // When decisions come if the cap becomes `cap` just before pass 3.
    let decided_at = |cap: f64| {
        let mut c = Converger::new(Bounds::of(&policy, 256, None), &plan);
        let mut decided = Vec::new();
        for (t, s) in &samples {
            if *t == 2.5 {
                c.bandwidth_changed(cap);
            }
            decided.extend(c.observe(*t, s).map(|_| *t));
        }
        decided
    };
    // An older migration on the link finishes: without the change the limit would rise at
    // 3.5 s (pass 4); with it, the passes counted start with pass 3, the first on the larger
    // share, and it rises at pass 5.
    assert_eq!(decided_at(32.0), vec![4.5]);
    // A smaller share does not.
    assert_eq!(decided_at(10.0), vec![3.5]);
}

#[test]
fn still_flat_after_the_maximum_switches_to_post_copy_on_a_healthy_link() {
    let decisions = run(&policy(300, true), &passes(&[120, 60, 60, 60, 60, 60, 60, 60], 1.0, 64, Some(900)));
    let kinds: Vec<String> = decisions.iter().map(|(t, d)| format!("{t}: {}", d.describe())).collect();
    assert_eq!(decisions.len(), 2, "{kinds:#?}");
    assert!(matches!(decisions[0].1, Decision::RaiseDowntime { ms: 300, .. }), "{kinds:#?}");
    let Decision::StartPostCopy { reason } = &decisions[1].1 else { panic!("{kinds:#?}") };
    assert!(reason.contains("maximum downtime 300 ms") && reason.contains("64.0 MiB/s"), "{reason}");
}

#[test]
fn post_copy_is_never_started_on_an_unhealthy_link_and_the_stall_timeout_ends_it() {
    // Flat passes, but the link delivers 4 MiB/s against a 64 MiB/s cap.
    let decisions =
        run(&policy(300, true), &passes(&[120, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60], 3.0, 4, Some(900)));
    let kinds: Vec<String> = decisions.iter().map(|(t, d)| format!("{t}: {}", d.describe())).collect();
    assert!(decisions.iter().all(|(_, d)| !matches!(d, Decision::StartPostCopy { .. })), "{kinds:#?}");
    let Some((t, Decision::Abort { reason })) = decisions.last() else { panic!("{kinds:#?}") };
    assert!(reason.contains("stall timeout"), "{reason}");
    assert!(*t >= 20.0, "not before the stall timeout: {t}");
}

#[test]
fn without_help_a_non_converging_migration_aborts_at_the_stall_timeout() {
    let decisions =
        run(&policy(300, false), &passes(&[120, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60], 3.0, 64, Some(900)));
    let kinds: Vec<String> = decisions.iter().map(|(t, d)| format!("{t}: {}", d.describe())).collect();
    assert!(matches!(decisions[0].1, Decision::RaiseDowntime { ms: 300, .. }), "{kinds:#?}");
    let (t, last) = decisions.last().expect("decisions");
    assert!(matches!(last, Decision::Abort { .. }), "{kinds:#?}");
    // The low is the end of the second pass (35 MiB left at 6.0 s): later passes never go
    // lower, so 20 s later it aborts.
    assert!((25.0..=26.5).contains(t), "{kinds:#?}");
    assert!(last.reason().contains("has not dropped below 35.0 MiB since 6.0 s"), "{}", last.reason());
}

#[test]
fn the_completion_timeout_bounds_even_a_migration_that_progresses() {
    let p = Policy { completion_timeout_per_gib_s: 150, ..policy(300, false) };
    let plan = start(&p, &StartInput { memory_mib: 256, dirty_mib_s: None, bandwidth_mib_s: Some(1.0) });
    let mut c = Converger::new(Bounds::of(&p, 256, None), &plan);
    // 256 MiB at 150 s/GiB is 37.5 s, so the 60 s floor applies; progress all the way.
    let mut decision = None;
    for k in 0..200u64 {
        let t = 0.5 * k as f64;
        if let Some(d) = c.observe(t, &sample(1, 256 - k, 1, None)) {
            decision = Some((t, d));
            break;
        }
    }
    let (t, d) = decision.expect("aborted");
    assert_eq!(t, 60.0);
    assert_eq!(d.reason(), "not complete within 60 s (150 s per GiB of memory, at least 60 s)");
    assert_eq!(c.observe(61.0, &sample(1, 100, 1, None)), None, "one abort only");
}

#[test]
fn a_link_that_went_silent_aborts_on_ticks_alone() {
    let p = policy(300, true);
    let plan = start(&p, &StartInput { memory_mib: 256, dirty_mib_s: None, bandwidth_mib_s: Some(64.0) });
    let mut c = Converger::new(Bounds::of(&p, 256, Some(600.0)), &plan);
    assert_eq!(c.observe(0.5, &sample(1, 200, 64, None)), None);
    assert_eq!(c.tick(10.0), None);
    let d = c.tick(20.5).expect("stall");
    assert!(d.reason().contains("no progress for 20 s"), "{}", d.reason());
}

#[test]
fn auto_converge_tightening_its_throttle_is_not_a_stall() {
    let p = policy(300, false);
    let plan = start(&p, &StartInput { memory_mib: 256, dirty_mib_s: None, bandwidth_mib_s: Some(64.0) });
    let mut c = Converger::new(Bounds::of(&p, 256, Some(600.0)), &plan);
    let mut throttled = |t: f64, throttle: u32| {
        let s = Progress { throttle_percent: Some(throttle), ..sample(3, 60, 64, None) };
        c.observe(t, &s)
    };
    assert_eq!(throttled(1.0, 0), None);
    // The throttle rises every 10 s: 35 s without a new low, and still no abort.
    for (k, t) in [11.0, 21.0, 31.0].into_iter().enumerate() {
        assert_eq!(throttled(t, 20 + 10 * k as u32), None, "at {t} s");
    }
    let d = throttled(51.5, 40).expect("stalled once the throttle stopped rising");
    assert!(d.reason().contains("stall timeout"), "{}", d.reason());
}

#[test]
fn passes_shorter_than_the_sampling_are_judged_over_a_window() {
    // A pass between every two samples, each read at a random point of its pass: the starts
    // alternate 26 and 20 MiB while the memory to send really stays where it is. One pass
    // against the next, every other one "shrank"; over 2 s, nothing made a new low.
    let mut samples = vec![(0.25, sample(1, 120, 12, Some(2000))), (0.5, sample(2, 60, 12, Some(2000)))];
    for i in 0..40u64 {
        let left = if i % 2 == 0 { 26 } else { 20 };
        samples.push((0.75 + 0.25 * i as f64, sample(3 + i, left, 12, Some(200))));
    }
    let decisions = run(&policy(300, false), &samples);
    let Some((t, Decision::RaiseDowntime { ms: 300, reason })) = decisions.first() else { panic!("{decisions:#?}") };
    assert_eq!(*t, 3.0, "2 s after the first 20 MiB start: {reason}");
    assert!(reason.contains("below ~20.0 MiB, the lowest start before them"), "{reason}");
}

#[test]
fn samples_counting_nothing_left_before_the_copy_starts_are_no_progress_to_beat() {
    // A storage copy's first samples: sized, nothing left counted. Then memory goes down
    // slowly but steadily for longer than the stall timeout (20 s): no abort.
    let mut samples: Vec<(f64, Progress)> = (1..=3).map(|k| (k as f64 * 0.5, sample(0, 0, 12, None))).collect();
    for k in 0..60u64 {
        samples.push((2.0 + k as f64 * 0.5, sample(1, 250 - 4 * k, 12, None)));
    }
    let decisions = run(&policy(300, false), &samples);
    assert!(decisions.iter().all(|(_, d)| !matches!(d, Decision::Abort { .. })), "{decisions:#?}");
}

#[test]
fn under_qemus_convergence_the_limit_is_fixed_at_the_maximum_and_the_throttle_qemus() {
    let qemu = Policy { convergence: Convergence::Qemu, auto_converge: true, ..policy(300, false) };
    assert_eq!(steps(&qemu), vec![300]);
    // A guest that cannot keep up: ferry's policy would start a strong throttle.
    let input = StartInput { memory_mib: 256, dirty_mib_s: Some(100.0), bandwidth_mib_s: Some(12.0) };
    let plan = start(&qemu, &input);
    assert_eq!((plan.auto_converge, plan.throttle, plan.postcopy, plan.downtime_ms), (true, None, false, 300));
    assert!(plan.reason.contains("downtime limit fixed at 300 ms"), "{}", plan.reason);
    assert_eq!(start(&Policy { convergence: Convergence::Ferry, ..qemu.clone() }, &input).throttle, Some((80, 25)));
}

#[test]
fn under_qemus_convergence_flat_passes_change_nothing_and_only_the_completion_timeout_aborts() {
    // Allowed post-copy and a 20 s stall timeout, both of which ferry's policy would use.
    let qemu = Policy { convergence: Convergence::Qemu, ..policy(300, true) };
    let flat: Vec<u64> = std::iter::once(120).chain(std::iter::repeat_n(60, 40)).collect();
    let samples = passes(&flat, 3.0, 64, Some(900));
    let decisions = run(&qemu, &samples);
    // 256 MiB at 150 s/GiB is under the 60 s floor: the one decision is the abort at 60 s.
    let kinds: Vec<String> = decisions.iter().map(|(t, d)| format!("{t}: {}", d.describe())).collect();
    let [(t, Decision::Abort { reason })] = decisions.as_slice() else { panic!("{kinds:#?}") };
    assert_eq!((*t, reason.as_str()), (60.0, "not complete within 60 s (150 s per GiB of memory, at least 60 s)"));
    // ferry's own policy on the same samples raises the limit and then switches to post-copy.
    let ferrys = run(&Policy { convergence: Convergence::Ferry, ..qemu }, &samples);
    assert!(matches!(ferrys.first(), Some((_, Decision::RaiseDowntime { .. }))), "{ferrys:#?}");
}
