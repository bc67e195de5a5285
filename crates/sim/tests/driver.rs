//! The simulator through the driver trait, on a runtime whose time is paused: what one
//! migration takes against the estimate it shares its model with, links shared and full
//! duplex, controls, cold moves, faults, and the same answers every time.

use std::future::Future;
use std::time::Duration;

use ferry_driver::{
    ColdOptions, Control, Driver, ErrorKind, LiveOptions, Migration, MoveError, MoveReport, MoveRequest, Progress,
    StepGate,
};
use ferry_model::{Compression, StreamOptions, VmState};
use ferry_preview::estimate::{
    estimate_live, LiveInput, JOB_SETUP_S, PER_MIGRATION_OVERHEAD_S, POSTCOPY_SWITCHOVER_MS, SWITCHOVER_MS,
};
use ferry_sim::{derived_uuid, Fault, Fleet, HostDesc, Settings, SimDriver, VmDesc, SAMPLE_EVERY_S};

/// Runs `f` on a current-thread runtime with paused time: virtual time, as `ferry` runs
/// simulations.
fn sim<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn host(name: &str, link: u64) -> HostDesc {
    HostDesc {
        name: name.into(),
        group: "default".into(),
        tags: Vec::new(),
        cpus: 64,
        memory_mib: 65536,
        link_mib_s: link,
        link_queue_ms: 0.0,
        cpu_overcommit: 4.0,
        memory_overcommit: 1.0,
        maintenance: false,
        compress_cpu_ms_per_mib: None,
    }
}

/// A guest like the lab's: 256 MiB, 64 MiB working set, 132 MiB not zero.
fn lab_vm(name: &str, on: &str, dirty: f64) -> VmDesc {
    VmDesc {
        name: name.into(),
        uuid: None,
        host: on.into(),
        memory_mib: 256,
        vcpus: 1,
        dirty_mib_s: dirty,
        working_set_mib: Some(64.0),
        nonzero_mib: Some(132.0),
        catch_up_s: None,
        disk_mib: 0,
        running: true,
        shutdown_s: 10.0,
        compression_ratio: None,
        tags: Default::default(),
    }
}

fn fleet(hosts: Vec<HostDesc>, vms: Vec<VmDesc>) -> Fleet {
    Fleet { sim: Settings::default(), hosts, vms, faults: Vec::new() }
}

fn request(i: usize, from: &str, to: &str) -> MoveRequest {
    MoveRequest {
        vm: derived_uuid(i),
        from: from.into(),
        to: to.into(),
        run_id: "r-test".into(),
        delete_source_volumes: false,
        copies: Vec::new(),
    }
}

fn capped(mib_s: u64) -> LiveOptions {
    LiveOptions { bandwidth_mib_s: Some(mib_s), ..LiveOptions::default() }
}

/// Drives a migration to its end, collecting its samples.
/// Runs a migration to its end: its outcome, whose report's lines start with what the
/// driver said as the job ran (as the engine puts them), and its progress samples.
async fn finish(mut m: Migration) -> (Result<MoveReport, MoveError>, Vec<Progress>) {
    let mut samples = Vec::new();
    while let Some(p) = m.progress.recv().await {
        samples.push(p);
    }
    let mut outcome = m.outcome.await.expect("an outcome");
    let said: Vec<String> = std::iter::from_fn(|| m.said.try_recv().ok()).collect();
    match &mut outcome {
        Ok(report) => report.messages.splice(0..0, said).for_each(drop),
        Err(MoveError::Transfer { report, .. }) => report.messages.splice(0..0, said).for_each(drop),
        Err(_) => {}
    }
    (outcome, samples)
}

async fn live(
    driver: &SimDriver,
    req: MoveRequest,
    options: LiveOptions,
) -> (Result<MoveReport, MoveError>, Vec<Progress>) {
    let m = driver.migrate_live(req, options).await.expect("starts");
    finish(m).await
}

fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance
}

#[test]
fn alone_on_its_link_a_migration_takes_what_the_estimate_says() {
    // (dirty MiB/s, cap MiB/s): the lab's calibration cells.
    for (dirty, cap) in [(5.0, 32), (5.0, 96), (25.0, 32), (25.0, 96), (0.0, 200), (60.0, 32)] {
        let estimate = estimate_live(&LiveInput {
            memory_mib: 256.0,
            dirty_mib_s: dirty,
            bandwidth_mib_s: cap as f64,
            nonzero_mib: Some(132.0),
            working_set_mib: Some(64.0),
            link_mib_s: Some(1000.0),
            ..LiveInput::default()
        });
        let (report, samples) = sim(async {
            let driver = SimDriver::new(&fleet(vec![host("a", 1000), host("b", 1000)], vec![lab_vm("v", "a", dirty)]));
            let started = tokio::time::Instant::now();
            let m = driver.migrate_live(request(0, "a", "b"), capped(cap)).await.expect("starts");
            // One that does not converge goes on until someone gives up (the engine's
            // completion timeout): here, after ten minutes.
            let controls = m.controls.clone();
            let give_up = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(600)).await;
                let _ = controls.send(Control::Abort);
            });
            let (outcome, samples) = finish(m).await;
            give_up.abort();
            (outcome.map(|r| (r, started.elapsed())), samples)
        });
        if !estimate.converges {
            assert!(matches!(report, Err(MoveError::Transfer { aborted: true, .. })), "{dirty} at {cap}: {report:?}");
            assert!(samples.len() >= 1190, "{dirty} at {cap}: {}", samples.len());
            continue;
        }
        let (report, elapsed) = report.unwrap_or_else(|e| panic!("{dirty} MiB/s at {cap}: {e}"));
        let job = report.job_ms.expect("a job time") as f64 / 1000.0;
        assert!(
            close(job, estimate.transfer_s, 0.002),
            "{dirty} at {cap}: job {job} s, estimate {} s",
            estimate.transfer_s
        );
        let wall = report.wall_ms as f64 / 1000.0;
        assert!(close(wall, estimate.total_s, 0.003), "{dirty} at {cap}: wall {wall}, estimate {}", estimate.total_s);
        assert!(close(elapsed.as_secs_f64(), wall, 0.002), "the outcome arrives when the move ends");
        assert_eq!(report.memory_passes, u64::from(estimate.passes), "{dirty} at {cap}");
        let downtime = report.downtime_ms.expect("a downtime") as f64;
        assert!(
            close(downtime, estimate.downtime_ms, 1.0),
            "{dirty} at {cap}: {downtime} ms, estimate {}",
            estimate.downtime_ms
        );
        // A sample every SAMPLE_EVERY_S of the job, then one as it ends saying the VM runs on
        // the target.
        let (last, periodic) = samples.split_last().expect("samples");
        assert!(last.switched_over && periodic.iter().all(|s| !s.switched_over), "{dirty} at {cap}");
        assert_eq!(periodic.len() as f64, (job / SAMPLE_EVERY_S).floor(), "{dirty} at {cap}");
        for (k, s) in periodic.iter().enumerate() {
            assert_eq!(s.elapsed_ms, (SAMPLE_EVERY_S * 1000.0) as u64 * (k as u64 + 1));
        }
        assert!(samples.windows(2).all(|w| w[0].transferred_bytes <= w[1].transferred_bytes));
        assert_eq!(report.locations.len(), 1);
        assert_eq!(report.locations[0].host, "b");
    }
}

#[test]
fn migrations_leaving_one_host_share_its_link_and_links_are_full_duplex() {
    // Two idle 1 GiB guests (all non-zero) leave host a over its 100 MiB/s link: each gets
    // half. A third goes the other way, from b to a, at the full rate: links are full duplex.
    let vm = |name: &str, on: &str| VmDesc {
        memory_mib: 1024,
        working_set_mib: None,
        nonzero_mib: None,
        ..lab_vm(name, on, 0.0)
    };
    let (one, two, back) = sim(async {
        let driver = SimDriver::new(&fleet(
            vec![host("a", 100), host("b", 100), host("c", 100)],
            vec![vm("v1", "a"), vm("v2", "a"), vm("v3", "b")],
        ));
        let (m1, m2, m3) = tokio::join!(
            driver.migrate_live(request(0, "a", "b"), LiveOptions::default()),
            driver.migrate_live(request(1, "a", "c"), LiveOptions::default()),
            driver.migrate_live(request(2, "b", "a"), LiveOptions::default()),
        );
        let (r1, r2, r3) =
            tokio::join!(finish(m1.expect("starts")), finish(m2.expect("starts")), finish(m3.expect("starts")));
        (r1.0.expect("v1 moves"), r2.0.expect("v2 moves"), r3.0.expect("v3 moves"))
    });
    // After 0.35 s of job setup, pass 1 sends 999 MiB, leaving 25 MiB: what a 300 ms pause
    // takes at the link's 100 MiB/s. Alone, that is 9.99 s, then the pause (250 ms + the fixed
    // switch-over).
    let job = |r: &MoveReport| r.job_ms.expect("job") as f64 / 1000.0;
    let pause_s = 0.25 + SWITCHOVER_MS / 1000.0;
    assert!(close(job(&back), 0.35 + 9.99 + pause_s, 0.002), "{back:?}");
    assert_eq!(back.memory_passes, 3);
    // Two on one link: 19.98 s at 50 MiB/s each; QEMU then measures 50 MiB/s, so only 15 MiB
    // fit a 300 ms pause: one more period sends 12.5 MiB (0.25 s), and both pauses send the
    // last 12.5 MiB at the same time, sharing the link (the same pause).
    for r in [&one, &two] {
        assert!(close(job(r), 0.35 + 19.98 + 0.25 + pause_s, 0.002), "{r:?}");
        assert_eq!(r.downtime_ms, Some((pause_s * 1000.0).round() as u64));
        assert_eq!(r.memory_passes, 4);
    }
}

#[test]
fn a_full_link_queue_lengthens_the_pause_by_its_latency() {
    // The lab's shaped links hold 50 ms of data in their queue: the last pages wait that long.
    let moved = |queue_ms: f64| {
        sim(async {
            let source = HostDesc { link_queue_ms: queue_ms, ..host("a", 100) };
            let driver = SimDriver::new(&fleet(vec![source, host("b", 100)], vec![lab_vm("v", "a", 5.0)]));
            let m = driver.migrate_live(request(0, "a", "b"), LiveOptions::default()).await.expect("starts");
            finish(m).await.0.expect("moves")
        })
    };
    let (plain, queued) = (moved(0.0), moved(50.0));
    assert_eq!(queued.downtime_ms.expect("a pause"), plain.downtime_ms.expect("a pause") + 50);
    assert_eq!(queued.job_ms.expect("a job"), plain.job_ms.expect("a job") + 50);
}

#[test]
fn a_move_that_stops_sending_leaves_the_link_to_the_others() {
    // v1 is small: once it is done (and while it prepares and finishes), v2 has the link alone.
    let big = VmDesc { memory_mib: 2048, working_set_mib: None, nonzero_mib: None, ..lab_vm("v2", "a", 0.0) };
    let small = VmDesc { memory_mib: 256, working_set_mib: None, nonzero_mib: None, ..lab_vm("v1", "a", 0.0) };
    let (r1, r2) = sim(async {
        let driver = SimDriver::new(&fleet(vec![host("a", 100), host("b", 100), host("c", 100)], vec![small, big]));
        let (m1, m2) = tokio::join!(
            driver.migrate_live(request(0, "a", "b"), LiveOptions::default()),
            driver.migrate_live(request(1, "a", "c"), LiveOptions::default()),
        );
        let (r1, r2) = tokio::join!(finish(m1.expect("starts")), finish(m2.expect("starts")));
        (r1.0.expect("v1 moves"), r2.0.expect("v2 moves"))
    });
    // Both send at 50 MiB/s: v1's pass 1 (231 MiB, 4.62 s), one more period (12.5 MiB,
    // 0.25 s; see above) and its pause (12.5 MiB, 0.25 s, + the switch-over); v2 has sent 256 MiB by
    // the pause's end and sends its other 1767 MiB alone at 100 MiB/s, converging at once
    // at that rate.
    let job = |r: &MoveReport| r.job_ms.expect("job") as f64 / 1000.0;
    let pause_s = 0.25 + SWITCHOVER_MS / 1000.0;
    assert!(close(job(&r1), 0.35 + 4.62 + 0.25 + pause_s, 0.002), "{r1:?}");
    assert!(close(job(&r2), 0.35 + 4.87 + 0.25 + 17.67 + pause_s, 0.002), "{r2:?}");
}

#[test]
fn controls_steer_a_running_migration() {
    sim(async {
        let vm =
            |name: &str, dirty| VmDesc { memory_mib: 1024, working_set_mib: Some(512.0), ..lab_vm(name, "a", dirty) };
        let driver = SimDriver::new(&fleet(
            vec![host("a", 1000), host("b", 1000)],
            vec![vm("calm", 1.0), vm("busy", 80.0), vm("hot", 80.0), vm("stay", 1.0)],
        ));

        // SetBandwidth: from 10 to 100 MiB/s after 5 s.
        let m = driver.migrate_live(request(0, "a", "b"), capped(10)).await.expect("starts");
        let controls = m.controls.clone();
        let steer = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            controls.send(Control::SetBandwidth(100)).expect("running");
        };
        let ((outcome, samples), ()) = tokio::join!(finish(m), steer);
        let report = outcome.expect("moves");
        assert!(report.job_ms.expect("job") < 17_000, "{report:?}");
        assert!(samples.iter().any(|s| s.bandwidth_bytes_s == 10 << 20));
        assert!(samples.iter().any(|s| s.bandwidth_bytes_s == 100 << 20));
        assert!(report.messages.iter().any(|m| m.contains("applied SetBandwidth(100)")), "{:?}", report.messages);

        // A guest dirtying 80 MiB/s of a 512 MiB working set at 50 MiB/s never converges;
        // post-copy (requested at start) ends it with a 5 ms pause.
        let options = LiveOptions { postcopy: true, ..capped(50) };
        let m = driver.migrate_live(request(1, "a", "b"), options).await.expect("starts");
        let controls = m.controls.clone();
        let steer = async {
            tokio::time::sleep(Duration::from_secs(40)).await;
            controls.send(Control::StartPostCopy).expect("running");
        };
        let ((outcome, samples), ()) = tokio::join!(finish(m), steer);
        let report = outcome.expect("post-copy ends it");
        assert_eq!(report.downtime_ms, Some(POSTCOPY_SWITCHOVER_MS as u64));
        assert!(samples.iter().any(|s| s.postcopy_active));
        assert!(driver.locate(&derived_uuid(1)).await.expect("locate")[0].host == "b");

        // Without post-copy requested at start, StartPostCopy fails; Abort leaves the VM on
        // its source.
        let m = driver.migrate_live(request(2, "a", "b"), capped(50)).await.expect("starts");
        let controls = m.controls.clone();
        let steer = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            controls.send(Control::StartPostCopy).expect("running");
            controls.send(Control::SetMaxDowntime(20)).expect("running");
            tokio::time::sleep(Duration::from_secs(10)).await;
            controls.send(Control::Abort).expect("running");
        };
        let ((outcome, _), ()) = tokio::join!(finish(m), steer);
        match outcome {
            Err(MoveError::Transfer { aborted: true, report, .. }) => {
                assert!(
                    report.messages.iter().any(|m| m.starts_with("StartPostCopy at 10.0 s of the job failed")),
                    "{:?}",
                    report.messages
                );
                assert!(
                    report.messages.iter().any(|m| m.contains("applied SetMaxDowntime(20)")),
                    "{:?}",
                    report.messages
                );
                assert!(report.messages.last().is_some_and(|m| m == "still runs on a, verified"));
                let job = report.job_ms.expect("job");
                assert!((20_000..20_400).contains(&job), "{job}");
            }
            other => panic!("expected an aborted transfer, got {other:?}"),
        }
        let at = driver.locate(&derived_uuid(2)).await.expect("locate");
        assert_eq!((at.len(), at[0].host.as_str(), at[0].state), (1, "a", VmState::Running));

        // The VM stays where it was; aborting through the job API works too.
        let m = driver.migrate_live(request(3, "a", "b"), capped(1)).await.expect("starts");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(driver.job("a", &derived_uuid(3)).await.expect("job").is_some());
        driver.abort_job("a", &derived_uuid(3)).await.expect("aborts");
        assert!(matches!(finish(m).await.0, Err(MoveError::Transfer { aborted: true, .. })));
        assert_eq!(driver.job("a", &derived_uuid(3)).await.expect("job"), None);
    });
}

#[test]
fn a_cold_move_shuts_down_copies_and_starts() {
    let with_disk = VmDesc { disk_mib: 1000, shutdown_s: 4.0, ..lab_vm("v", "a", 5.0) };
    let report = sim(async {
        let driver = SimDriver::new(&fleet(vec![host("a", 100), host("b", 100)], vec![with_disk]));
        let report = driver
            .move_cold(request(0, "a", "b"), ColdOptions::default(), StepGate::unjournaled())
            .await
            .expect("moves cold");
        let inventory = driver.inventory().await;
        assert_eq!(inventory.vms[0].host, "b");
        assert_eq!(inventory.vms[0].state, VmState::Running);
        report
    });
    let want = 4.0 + 10.0 + PER_MIGRATION_OVERHEAD_S;
    assert!(close(report.wall_ms as f64 / 1000.0, want, 0.002), "{report:?}");
    assert_eq!(report.downtime_ms, Some(report.wall_ms));
    assert_eq!(report.transferred_bytes, 1000 << 20);
}

#[test]
fn moves_that_cannot_start_leave_everything_as_it_was() {
    sim(async {
        let big = VmDesc { memory_mib: 60000, working_set_mib: None, nonzero_mib: None, ..lab_vm("big", "a", 0.0) };
        let mut f = fleet(
            vec![host("a", 100), host("b", 100)],
            vec![big.clone(), VmDesc { name: "big2".into(), host: "b".into(), ..big }],
        );
        f.faults.push(Fault { host: "b".into(), down_at_s: 100.0 });
        let driver = SimDriver::new(&f);
        let init = |r: Result<Migration, MoveError>| match r {
            Err(MoveError::Init { kind, reason }) => (kind, reason),
            other => panic!("expected Init, got {other:?}"),
        };
        let (kind, reason) = init(driver.migrate_live(request(0, "a", "b"), LiveOptions::default()).await);
        assert!(reason.starts_with("b: not enough memory for big: needs 60000 MiB, 5536 MiB free"), "{reason}");
        assert_eq!(kind, ErrorKind::Refused);
        let (kind, reason) = init(driver.migrate_live(request(0, "b", "a"), LiveOptions::default()).await);
        assert!(reason.contains("big is not on b (it is on a)"), "{reason}");
        assert_eq!(kind, ErrorKind::NotFound);
        tokio::time::sleep(Duration::from_secs(100)).await;
        let (kind, reason) = init(driver.migrate_live(request(0, "a", "b"), LiveOptions::default()).await);
        assert!(reason.contains("b: cannot connect: the host is down"), "{reason}");
        assert_eq!(kind, ErrorKind::Unreachable);
        let located = driver.locate(&derived_uuid(0)).await.expect_err("b cannot be asked");
        assert_eq!((located.host.as_str(), located.kind), ("b", ErrorKind::Unreachable));
        let inventory = driver.inventory().await;
        assert_eq!(inventory.unreachable.len(), 1);
        assert_eq!(inventory.vms.len(), 1);
    });
}

#[test]
fn faults_break_migrations_where_the_seed_says() {
    // Every migration's stream breaks: the VM stays on its source.
    let mut f = fleet(vec![host("a", 100), host("b", 100)], vec![lab_vm("v", "a", 5.0)]);
    f.sim.migration_error_rate = 1.0;
    sim(async {
        let driver = SimDriver::new(&f);
        match live(&driver, request(0, "a", "b"), LiveOptions::default()).await.0 {
            Err(MoveError::Transfer { aborted: false, kind, reason, .. }) => {
                assert!(reason.contains("stream broke"), "{reason}");
                // A broken stream is the connection's failure: worth retrying.
                assert_eq!(kind, ErrorKind::Unreachable);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(driver.locate(&derived_uuid(0)).await.expect("locate")[0].host, "a");
    });

    // A source that goes down mid-migration takes its VM with it; from then on, like the
    // libvirt driver, nothing can be located (a host cannot be asked).
    let mut f = fleet(vec![host("a", 10), host("b", 10)], vec![lab_vm("v", "a", 5.0)]);
    f.faults.push(Fault { host: "a".into(), down_at_s: 5.0 });
    sim(async {
        let driver = SimDriver::new(&f);
        match live(&driver, request(0, "a", "b"), LiveOptions::default()).await.0 {
            Err(MoveError::Lost { reason, .. }) => {
                assert!(reason.contains("a went down while v was moving"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(driver.locate(&derived_uuid(0)).await.is_err());
    });
}

#[test]
fn the_same_fleet_and_calls_give_the_same_story() {
    let f = {
        let mut f =
            ferry_sim::generate(&ferry_sim::GenOptions { hosts: 6, vms: 40, seed: 5, link_mib_s: 200, fill: 0.5 });
        f.sim.migration_error_rate = 0.2;
        f
    };
    let story = || {
        sim(async {
            let driver = SimDriver::new(&f);
            let inventory = driver.inventory().await;
            let mut runs = Vec::new();
            for (i, vm) in inventory.vms.iter().enumerate().take(20) {
                let to = inventory.hosts[(i + 1) % inventory.hosts.len()].name.clone();
                let to = if to == vm.host { inventory.hosts[(i + 2) % inventory.hosts.len()].name.clone() } else { to };
                let req = MoveRequest {
                    vm: vm.uuid.clone(),
                    from: vm.host.clone(),
                    to,
                    run_id: "r".into(),
                    delete_source_volumes: false,
                    copies: Vec::new(),
                };
                let driver = driver.clone();
                // All at once: they share links, and each one's pace depends on the others'.
                runs.push(tokio::spawn(async move {
                    match driver.migrate_live(req, capped(80)).await {
                        Ok(m) => {
                            // Busy guests may not converge: the engine would give up.
                            let controls = m.controls.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_secs(300)).await;
                                let _ = controls.send(Control::Abort);
                            });
                            let (outcome, samples) = finish(m).await;
                            format!("{outcome:?} {samples:?}")
                        }
                        Err(e) => format!("{e:?}"),
                    }
                }));
            }
            let mut all = Vec::new();
            for r in runs {
                all.push(r.await.expect("no panic"));
            }
            (all, tokio::time::Instant::now())
        })
    };
    let (a, _) = story();
    let (b, _) = story();
    assert_eq!(a, b);
    assert!(a.iter().any(|s| s.contains("stream broke")), "the seed breaks some");
    assert!(a.iter().any(|s| s.starts_with("Ok(")), "and not all");
}

#[test]
fn a_migration_given_up_while_it_is_prepared_leaves_nothing_behind() {
    sim(async {
        let big = VmDesc { memory_mib: 40000, working_set_mib: None, nonzero_mib: None, ..lab_vm("big", "a", 0.0) };
        let driver = SimDriver::new(&fleet(vec![host("a", 100), host("b", 100)], vec![big]));
        let given_up = tokio::time::timeout(
            Duration::from_secs_f64(ferry_sim::PREPARE_S / 2.0),
            driver.migrate_live(request(0, "a", "b"), LiveOptions::default()),
        )
        .await;
        assert!(given_up.is_err(), "still preparing halfway through");
        assert_eq!(driver.inventory().await.vms[0].ferry, None, "its metadata is gone");
        // The target's memory and the VM are free again: the same move starts.
        let (outcome, _) = live(&driver, request(0, "a", "b"), LiveOptions::default()).await;
        assert!(outcome.is_ok(), "{outcome:?}");
    });
}

#[test]
fn auto_converge_throttles_from_the_first_step_and_by_the_increment_asked_for() {
    // A guest dirtying memory far faster than its capped link: auto-converge has to throttle.
    let throttles = |initial: Option<u32>, increment: Option<u32>| {
        let (outcome, samples) = sim(async {
            let driver = SimDriver::new(&fleet(vec![host("a", 1000), host("b", 1000)], vec![lab_vm("v", "a", 60.0)]));
            let options = LiveOptions {
                auto_converge: true,
                auto_converge_initial: initial,
                auto_converge_increment: increment,
                ..capped(32)
            };
            live(&driver, request(0, "a", "b"), options).await
        });
        assert!(outcome.is_ok(), "{outcome:?}");
        let mut seen: Vec<u32> = samples.iter().filter_map(|s| s.throttle_percent).collect();
        seen.dedup();
        seen
    };
    let default = throttles(None, None);
    assert!(default.len() >= 2, "{default:?}");
    assert_eq!(default.first(), Some(&20), "QEMU's 20 % first: {default:?}");
    assert!(default.windows(2).all(|w| w[1] == w[0] + 10), "then 10 % a step: {default:?}");
    let asked = throttles(Some(50), Some(25));
    assert!(asked.len() >= 2, "{asked:?}");
    assert_eq!(asked.first(), Some(&50), "{asked:?}");
    assert!(asked.windows(2).all(|w| w[1] == (w[0] + 25).min(99)), "{asked:?}");
}

#[test]
fn a_cold_copy_cut_short_by_its_target_going_down_leaves_the_link_to_the_others() {
    // v's cold copy and w's live migration share a's outbound link; b goes down mid-copy.
    let v = VmDesc { disk_mib: 10_000, shutdown_s: 1.0, ..lab_vm("v", "a", 5.0) };
    let w =
        VmDesc { memory_mib: 8192, working_set_mib: Some(64.0), nonzero_mib: Some(8000.0), ..lab_vm("w", "a", 5.0) };
    let mut f = fleet(vec![host("a", 100), host("b", 100), host("c", 100)], vec![v, w]);
    f.faults.push(Fault { host: "b".into(), down_at_s: 10.0 });
    sim(async {
        let driver = SimDriver::new(&f);
        let cold = driver.move_cold(request(0, "a", "b"), ColdOptions::default(), StepGate::unjournaled());
        let live = live(&driver, request(1, "a", "c"), LiveOptions::default());
        let both = tokio::time::timeout(Duration::from_secs(3600), async { tokio::join!(cold, live) });
        let (cold, (live, _)) = both.await.expect("both end");
        match cold {
            Err(MoveError::Lost { reason, .. }) => assert!(reason.contains("b went down"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // w's migration went on at the whole link and arrived; as with libvirt, its
        // verification needs only its source and target, and notes b.
        let report = live.expect("w moved");
        assert!(report.messages.iter().any(|m| m.contains("(unreachable): b")), "{:?}", report.messages);
        let inventory = driver.inventory().await;
        assert_eq!(inventory.vms.iter().find(|v| v.name == "w").map(|v| v.host.as_str()), Some("c"));
    });
}

#[test]
fn samples_during_the_final_pause_say_the_switch_over_is_under_way() {
    // A slow link and a generous downtime limit: the final pause lasts seconds.
    let (outcome, samples) = sim(async {
        let driver = SimDriver::new(&fleet(vec![host("a", 10), host("b", 10)], vec![lab_vm("v", "a", 5.0)]));
        live(&driver, request(0, "a", "b"), LiveOptions { max_downtime_ms: Some(3000), ..LiveOptions::default() }).await
    });
    let report = outcome.expect("moves");
    assert!(report.downtime_ms.is_some_and(|d| d > 1000), "{report:?}");
    let first = samples.iter().position(|s| s.switching_over).expect("a sample during the pause");
    assert!(first > 0 && samples[first..].iter().all(|s| s.switching_over), "{samples:?}");
}

#[test]
fn the_progress_stream_closes_when_the_copy_ends_not_when_the_move_does() {
    // Like the libvirt driver: the stream ends with the job, and the VM is found and
    // finalized after it (the second half of the fixed cost), when the link is free.
    let (stream_end, outcome_at, report) = sim(async {
        let driver = SimDriver::new(&fleet(vec![host("a", 1000), host("b", 1000)], vec![lab_vm("v", "a", 5.0)]));
        let started = tokio::time::Instant::now();
        let mut m = driver.migrate_live(request(0, "a", "b"), capped(96)).await.expect("starts");
        while m.progress.recv().await.is_some() {}
        let stream_end = started.elapsed().as_secs_f64();
        let report = m.outcome.await.expect("an outcome").expect("moves");
        (stream_end, started.elapsed().as_secs_f64(), report)
    });
    let job_end = ferry_sim::PREPARE_S + report.job_ms.expect("a job time") as f64 / 1000.0;
    assert!(close(stream_end, job_end, 0.002), "stream closed at {stream_end} s, job ended at {job_end} s");
    assert!(close(outcome_at - stream_end, ferry_sim::FINISH_S, 0.002), "{outcome_at} - {stream_end}");
}

// ---------------------------------------------------------------------- compressed streams

/// A stream of `channels` multifd channels compressing with zstd.
fn zstd(channels: u32) -> LiveOptions {
    let stream = StreamOptions { parallel_connections: channels, compression: Compression::Zstd, ..Default::default() };
    LiveOptions { stream, ..LiveOptions::default() }
}

/// An idle guest of `memory` MiB, none of it zero pages, whose memory compresses `ratio`:1.
fn idle_vm(memory: u64, ratio: Option<f64>) -> VmDesc {
    VmDesc {
        memory_mib: memory,
        working_set_mib: None,
        nonzero_mib: None,
        compression_ratio: ratio,
        ..lab_vm("v", "a", 0.0)
    }
}

/// Hosts a and b on links of `link` MiB/s whose cores compress a MiB in `cpu_ms`.
fn compressing_hosts(link: u64, cpu_ms: f64, cpus: u32) -> Vec<HostDesc> {
    ["a", "b"]
        .into_iter()
        .map(|name| HostDesc { cpus, compress_cpu_ms_per_mib: Some(cpu_ms), ..host(name, link) })
        .collect()
}

/// One move of VM 0 from a to b, alone.
fn move_alone(fleet: &Fleet, options: LiveOptions) -> (MoveReport, Vec<Progress>) {
    let (outcome, samples) = sim(async {
        let driver = SimDriver::new(fleet);
        live(&driver, request(0, "a", "b"), options).await
    });
    (outcome.expect("moves"), samples)
}

/// Seconds the job spent on memory: all of it but its setup and the switch-over's fixed part.
fn memory_s(report: &MoveReport) -> f64 {
    report.job_ms.expect("a job time") as f64 / 1000.0 - JOB_SETUP_S - SWITCHOVER_MS / 1000.0
}

/// A sample taken while memory was on its way: after the job's setup, before the pause.
fn sending(s: &Progress) -> bool {
    s.elapsed_ms as f64 / 1000.0 > JOB_SETUP_S && !s.switching_over
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

#[test]
fn a_guest_compressing_3_to_1_sends_a_third_of_its_memory_in_a_third_of_the_time() {
    // 1 GiB over 100 MiB/s, the link the bound: 4 channels at 0.5 ms a MiB would compress
    // 8000 MiB/s.
    let world = fleet(compressing_hosts(100, 0.5, 64), vec![idle_vm(1024, Some(3.0))]);
    let plain_stream = LiveOptions {
        stream: StreamOptions { parallel_connections: 4, ..Default::default() },
        ..LiveOptions::default()
    };
    let (plain, _) = move_alone(&world, plain_stream);
    let (zstd, samples) = move_alone(&world, zstd(4));
    assert!(close(mib(plain.transferred_bytes), 1024.0, 0.01), "{plain:?}");
    assert!(close(mib(zstd.transferred_bytes), 1024.0 / 3.0, 0.01), "{zstd:?}");
    assert!(close(memory_s(&plain), 1024.0 / 100.0, 0.003), "{plain:?}");
    assert!(close(memory_s(&zstd), memory_s(&plain) / 3.0, 0.003), "{zstd:?}");
    // The samples count bytes sent, and guest memory left; the link is full throughout.
    let periodic: Vec<&Progress> = samples.iter().filter(|s| sending(s)).collect();
    assert!(periodic.iter().all(|s| s.bandwidth_bytes_s == 100 << 20), "{periodic:?}");
    for s in &periodic {
        let carried = mib(s.memory_total_bytes - s.memory_remaining_bytes);
        assert!(close(mib(s.transferred_bytes) * 3.0, carried, 0.01), "{s:?}");
    }
    let last = samples.last().expect("samples");
    assert_eq!(last.transferred_bytes, zstd.transferred_bytes);
    // The report says what the memory cost, as libvirt's job statistics do.
    let carried = |r: &MoveReport| r.memory_bytes.map(mib);
    let sent = |r: &MoveReport| r.memory_sent_bytes.map(mib);
    assert!(close(carried(&zstd).expect("memory carried"), 1024.0, 0.01), "{zstd:?}");
    assert!(close(sent(&zstd).expect("memory sent"), 1024.0 / 3.0, 0.01), "{zstd:?}");
    assert_eq!(zstd.memory_sent_bytes, Some(zstd.transferred_bytes), "no disk: all of it was memory");
    assert_eq!(plain.memory_bytes, plain.memory_sent_bytes);
    assert!(close(sent(&plain).expect("memory sent"), 1024.0, 0.01), "{plain:?}");
}

#[test]
fn a_compressed_stream_goes_no_faster_than_the_source_compresses() {
    // 2 channels at 20 ms a MiB compress 100 MiB/s of memory: a third of that on the link,
    // which could carry 1000 MiB/s (3000 MiB/s of memory).
    let two_cpus = fleet(compressing_hosts(1000, 20.0, 64), vec![idle_vm(1024, Some(3.0))]);
    let (report, samples) = move_alone(&two_cpus, zstd(2));
    assert!(close(memory_s(&report), 1024.0 / 100.0, 0.003), "{report:?}");
    assert!(close(mib(report.transferred_bytes), 1024.0 / 3.0, 0.01), "{report:?}");
    let rates: Vec<f64> = samples.iter().filter(|s| sending(s)).map(|s| mib(s.bandwidth_bytes_s)).collect();
    assert!(rates.iter().all(|r| close(*r, 100.0 / 3.0, 0.01)), "{rates:?}");
    // A source with one CPU runs one channel: half as fast.
    let one_cpu = fleet(compressing_hosts(1000, 20.0, 1), vec![idle_vm(1024, Some(3.0))]);
    let (report, _) = move_alone(&one_cpu, zstd(2));
    assert!(close(memory_s(&report), 1024.0 / 50.0, 0.003), "{report:?}");
}

#[test]
fn a_stream_that_does_not_compress_ignores_the_ratio() {
    // The same moves, the same story, whatever the VM's ratio, when nothing compresses.
    let options = [
        LiveOptions::default(),
        capped(32),
        LiveOptions { stream: StreamOptions { parallel_connections: 4, ..Default::default() }, ..capped(32) },
    ];
    for options in options {
        let story = |ratio| {
            let vm = VmDesc { compression_ratio: ratio, ..lab_vm("v", "a", 25.0) };
            move_alone(&fleet(compressing_hosts(100, 20.0, 64), vec![vm]), options.clone())
        };
        assert_eq!(story(Some(3.0)), story(None), "{options:?}");
    }
}

#[test]
fn compressed_and_alone_on_its_link_a_migration_takes_what_the_estimate_says() {
    // The lab's cells again, at its guest's measured 2.08:1, on cores too fast to matter.
    for (dirty, cap) in [(5.0, 32), (25.0, 32), (25.0, 96), (0.0, 200), (60.0, 96)] {
        let estimate = estimate_live(&LiveInput {
            memory_mib: 256.0,
            dirty_mib_s: dirty,
            bandwidth_mib_s: cap as f64,
            nonzero_mib: Some(132.0),
            working_set_mib: Some(64.0),
            link_mib_s: Some(1000.0),
            compression_ratio: Some(2.08),
            ..LiveInput::default()
        });
        assert!(estimate.converges, "{dirty} at {cap}: {estimate:?}");
        let vm = VmDesc { compression_ratio: Some(2.08), ..lab_vm("v", "a", dirty) };
        let (report, _) = move_alone(
            &fleet(compressing_hosts(1000, 0.1, 64), vec![vm]),
            LiveOptions { bandwidth_mib_s: Some(cap), ..zstd(4) },
        );
        let job = report.job_ms.expect("a job time") as f64 / 1000.0;
        assert!(close(job, estimate.transfer_s, 0.002), "{dirty} at {cap}: job {job} s, estimate {estimate:?}");
        assert_eq!(report.memory_passes, u64::from(estimate.passes), "{dirty} at {cap}");
        let downtime = report.downtime_ms.expect("a downtime") as f64;
        assert!(close(downtime, estimate.downtime_ms, 1.0), "{dirty} at {cap}: {downtime} ms, {estimate:?}");
    }
}
