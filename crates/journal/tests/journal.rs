//! The journal against real databases: SQLite files in temporary directories and private
//! PostgreSQL servers (`ferry_pgtest`), no mocks. Every test that is not about one backend
//! runs on both (`on_both_backends!`: `NAME::sqlite` and `NAME::postgres`).
//!
//! Two tests re-run this test binary as a second process (`child_process`, which does
//! nothing unless `FERRY_JOURNAL_CHILD` is set) to have a real second writer and a real
//! `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ferry_journal::{
    AttemptEnd, AttemptKind, EventKind, Journal, JournalClock, JournalConfig, JournalError, NewAttempt, NewMove,
    NewRun, RunKind, RunState, FIRST_GENERATION,
};
use ferry_model::{Compression, Phase, Status};
use serde_json::json;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferry-journal-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        TempDir(dir)
    }

    fn db(&self) -> String {
        self.0.join("state").join("journal.db").display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a test's journal lives: a new SQLite file, or a new PostgreSQL server of the test's
/// own (started on the test's thread, stopped when the store is dropped).
enum Store {
    Sqlite(TempDir),
    Postgres(ferry_pgtest::Server),
}

impl Store {
    fn sqlite() -> Store {
        Store::Sqlite(TempDir::new())
    }

    fn postgres() -> Store {
        Store::Postgres(ferry_pgtest::Server::start().expect("a PostgreSQL server (scripts/setup installs it)"))
    }

    /// The journal's location, as `--state` takes it.
    fn db(&self) -> String {
        match self {
            Store::Sqlite(dir) => dir.db(),
            Store::Postgres(server) => server.url(ferry_pgtest::DATABASE),
        }
    }

    /// The location as a URL, which sqlx opens directly.
    fn url(&self) -> String {
        match self {
            Store::Sqlite(dir) => format!("sqlite://{}", dir.db()),
            Store::Postgres(server) => server.url(ferry_pgtest::DATABASE),
        }
    }
}

/// A test run on both backends: `async fn NAME(store) { … }` becomes the module `NAME`
/// with the tests `sqlite` and `postgres`, each handing the body a new [`Store`].
macro_rules! on_both_backends {
    ($(#[$attr:meta])* async fn $name:ident($store:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($store: Store) $body

            $(#[$attr])*
            async fn sqlite() {
                body(Store::sqlite()).await
            }

            $(#[$attr])*
            async fn postgres() {
                body(Store::postgres()).await
            }
        }
    };
}

/// Every schema version this build knows, oldest first.
fn every_version() -> Vec<i64> {
    (1..=ferry_journal::schema_version()).collect()
}

fn new_run(name: &str) -> NewRun {
    NewRun {
        plan_name: name.to_owned(),
        plan: json!({ "plan": { "name": name }, "limits": { "per_source": 2 } }),
        cluster: json!({ "hosts": [{ "name": "host-a" }, { "name": "host-b" }] }),
        kind: RunKind::Migrate,
        parent: None,
    }
}

fn new_move(i: u32) -> NewMove {
    NewMove {
        vm: format!("vm-{i}"),
        uuid: format!("00000000-0000-0000-0000-{i:012}"),
        source: "host-a".to_owned(),
        target: if i.is_multiple_of(2) { Some("host-b".to_owned()) } else { None },
        group: if i < 2 { Some("dns".to_owned()) } else { None },
        seq: i64::from(i),
        priority: i64::from(i % 3),
        status: Status::Pending,
        message: String::new(),
    }
}

async fn run_with_moves(journal: &Journal, n: u32) -> String {
    let run = journal.create_run(&new_run("plan")).await.expect("create run");
    let moves: Vec<NewMove> = (0..n).map(new_move).collect();
    journal.add_moves(&run.id, &moves).await.expect("add moves");
    run.id
}

on_both_backends! {
    #[tokio::test]
    async fn opening_twice_applies_migrations_once(dir) {
        let first = Journal::open(&dir.db()).await.expect("first open");
        let run = run_with_moves(&first, 1).await;
        first.close().await;

        let second = Journal::open(&dir.db()).await.expect("second open");
        let third = Journal::open(&dir.url()).await.expect("open by URL");
        assert_eq!(second.applied_versions().await.expect("versions"), every_version());
        assert_eq!(third.run(&run).await.expect("run").id, run);
        assert_eq!(second.moves(&run).await.expect("moves").len(), 1);
    }
}

on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_opens_at_the_same_moment_agree(dir) {
        let db = dir.db();
        let opens = (0..4).map(|_| {
            let db = db.clone();
            tokio::spawn(async move { Journal::open(&db).await })
        });
        for open in opens.collect::<Vec<_>>() {
            let journal = open.await.expect("join").expect("concurrent first open");
            assert_eq!(journal.applied_versions().await.expect("versions"), every_version());
        }
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_newer_schema_is_refused(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        journal.close().await;
        {
            // Pretend a newer ferry migrated the file.
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&dir.url()).await.expect("raw open");
            sqlx::query("INSERT INTO schema_version (version, description, applied_ms) VALUES (999, 'future', 0)")
                .execute(&pool)
                .await
                .expect("insert");
            pool.close().await;
        }
        match Journal::open(&dir.db()).await {
            Err(JournalError::NewerSchema { found: 999, .. }) => {}
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unsupported_and_malformed_locations_are_named() {
    match Journal::open("mysql://db.example/ferry").await {
        Err(e @ JournalError::UnsupportedLocation { .. }) => {
            assert!(e.to_string().contains("mysql://db.example/ferry"), "{e}");
        }
        other => panic!("expected UnsupportedLocation, got {other:?}"),
    }
    for malformed in ["postgres://", "postgres://ferry:secret@/ferry", "postgres://ferry:secret@[::1/ferry"] {
        match Journal::open(malformed).await {
            Err(e @ JournalError::BadUrl { .. }) => {
                let text = e.to_string();
                assert!(text.contains("postgres://USER@HOST"), "{text}");
                assert!(!text.contains("secret"), "the password is never printed: {text}");
            }
            other => panic!("{malformed}: expected BadUrl, got {other:?}"),
        }
    }
}

/// A wrong password, a server that does not answer: each named, with no password in the
/// message, at once (opening does not retry).
#[tokio::test]
async fn a_postgres_journal_that_cannot_be_reached_is_named() {
    let mut server = ferry_pgtest::Server::start().expect("a PostgreSQL server");
    let wrong = server.url_with_password(ferry_pgtest::DATABASE, "not-the-password");
    let e = Journal::open(&wrong).await.expect_err("a wrong password is refused");
    let text = e.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("not-the-password") && text.contains("***"), "{text}");

    let url = server.url(ferry_pgtest::DATABASE);
    server.stop().expect("stops");
    let started = std::time::Instant::now();
    let e = Journal::open(&url).await.expect_err("a stopped server does not answer");
    let text = e.to_string();
    assert!(text.starts_with("cannot open the journal at postgres://ferry:***@127.0.0.1:"), "{text}");
    assert!(!text.contains(server.password()), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused at once: {:?}", started.elapsed());
}

/// PostgreSQL restarted under a journal: operations wait for it (growing pauses), then go
/// on with new connections; every write lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_is_waited_out() {
    let mut server = ferry_pgtest::Server::start().expect("a PostgreSQL server");
    let journal = Journal::open(&server.url(ferry_pgtest::DATABASE)).await.expect("open");
    let run = run_with_moves(&journal, 1).await;
    let uuid = new_move(0).uuid;
    server.stop().expect("stops");
    let writing = {
        let (journal, run, uuid) = (journal.clone(), run.clone(), uuid.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            journal
                .set_status(&run, &uuid, FIRST_GENERATION, Status::Migrating, "after the restart")
                .await
                .map(|g| (g, started.elapsed()))
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!writing.is_finished(), "the write waits while the server is down");
    server.start_again().expect("starts again");
    let (generation, waited) = writing.await.expect("join").expect("the write lands once the server is back");
    assert_eq!(generation, FIRST_GENERATION + 1, "written exactly once");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    let events = journal.events(&run, Some(&uuid)).await.expect("events");
    assert_eq!(events.iter().filter(|e| e.message.contains("after the restart")).count(), 1, "{events:?}");
}

/// A server down for longer than the journal's retry window: the operation fails, naming
/// the database, instead of waiting forever.
#[tokio::test]
async fn a_postgres_journal_down_for_longer_than_its_retries_fails_the_operation() {
    let mut server = ferry_pgtest::Server::start().expect("a PostgreSQL server");
    let config = JournalConfig { retry_for: Duration::from_secs(1), ..JournalConfig::default() };
    let journal = Journal::open_with(&server.url(ferry_pgtest::DATABASE), &config).await.expect("open");
    let run = run_with_moves(&journal, 1).await;
    server.stop().expect("stops");
    let started = std::time::Instant::now();
    let e = journal.run(&run).await.expect_err("no answer");
    assert!(started.elapsed() >= Duration::from_millis(500), "retried first: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(!e.to_string().is_empty());
}

on_both_backends! {
    #[tokio::test]
    async fn a_stale_handle_gets_a_conflict(dir) {
        let a = Journal::open(&dir.db()).await.expect("open a");
        let b = Journal::open(&dir.db()).await.expect("open b");
        let run = run_with_moves(&a, 1).await;
        let uuid = new_move(0).uuid;

        // Both read generation 1; a writes first.
        let seen_by_b = b.move_of(&run, &uuid).await.expect("move").generation;
        assert_eq!(seen_by_b, FIRST_GENERATION);
        let gen = a.set_status(&run, &uuid, FIRST_GENERATION, Status::Queued, "").await.expect("a writes");
        assert_eq!(gen, FIRST_GENERATION + 1);

        let err = b.set_status(&run, &uuid, seen_by_b, Status::Migrating, "").await.expect_err("b is stale");
        match &err {
            JournalError::Conflict { expected, found, record } => {
                assert_eq!((*expected, *found), (1, 2));
                assert!(record.contains("vm-0") && record.contains(&run), "{record}");
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("VM vm-0 ({uuid}) in run {run} changed meanwhile: expected generation 1, found 2")
        );
        // Every move write is checked the same way; nothing was changed by the failed ones.
        assert!(matches!(b.begin_phase(&run, &uuid, 1, Phase::Prepared).await, Err(JournalError::Conflict { .. })));
        assert!(matches!(b.set_target(&run, &uuid, 1, "host-c").await, Err(JournalError::Conflict { .. })));
        let now = b.move_of(&run, &uuid).await.expect("move");
        assert_eq!((now.status, now.generation, now.phase), (Status::Queued, 2, None));

        // Runs too.
        let run_gen = a.run(&run).await.expect("run").generation;
        a.set_run_state(&run, run_gen, RunState::Stopped).await.expect("a stops the run");
        match b.set_run_state(&run, run_gen, RunState::Finished).await {
            Err(JournalError::Conflict { expected, found, .. }) => assert_eq!(found, expected + 1),
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(b.run(&run).await.expect("run").state, RunState::Stopped);

        // Unknown records are named, not conflicts.
        assert!(matches!(a.set_status(&run, "nope", 1, Status::Queued, "").await, Err(JournalError::MoveNotFound { .. })));
        assert!(matches!(a.set_run_state("r-none", 1, RunState::Stopped).await, Err(JournalError::RunNotFound { .. })));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn phases_are_written_before_and_confirmed_after(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        let run = run_with_moves(&journal, 1).await;
        let uuid = new_move(0).uuid;

        let mut gen = FIRST_GENERATION;
        for phase in [Phase::Prechecked, Phase::Prepared, Phase::Transferring] {
            gen = journal.begin_phase(&run, &uuid, gen, phase).await.expect("begin");
            let m = journal.move_of(&run, &uuid).await.expect("move");
            assert_eq!((m.phase, m.phase_done), (Some(phase), false));
            gen = journal.end_phase(&run, &uuid, gen, phase).await.expect("end");
            let m = journal.move_of(&run, &uuid).await.expect("move");
            assert_eq!((m.phase, m.phase_done, m.generation), (Some(phase), true, gen));
        }
        // Confirming twice, or a phase that is not the current one, is refused.
        match journal.end_phase(&run, &uuid, gen, Phase::Transferring).await {
            Err(JournalError::PhaseMismatch { found, .. }) => {
                assert_eq!(found, "in transferring, already confirmed")
            }
            other => panic!("expected PhaseMismatch, got {other:?}"),
        }
        gen = journal.begin_phase(&run, &uuid, gen, Phase::SwitchedOver).await.expect("begin");
        match journal.end_phase(&run, &uuid, gen, Phase::Finalized).await {
            Err(e @ JournalError::PhaseMismatch { .. }) => assert_eq!(
                e.to_string(),
                format!("VM {uuid} in run {run}: cannot confirm phase finalized: the move is in switched-over")
            ),
            other => panic!("expected PhaseMismatch, got {other:?}"),
        }
        // A stale generation is a conflict even when the phase matches.
        assert!(matches!(
            journal.end_phase(&run, &uuid, gen - 1, Phase::SwitchedOver).await,
            Err(JournalError::Conflict { .. })
        ));
        let phases: Vec<String> = journal
            .events(&run, Some(&uuid))
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.kind == EventKind::Phase)
            .map(|e| e.message)
            .collect();
        assert_eq!(
            phases,
            [
                "prechecked: begun",
                "prechecked: done",
                "prepared: begun",
                "prepared: done",
                "transferring: begun",
                "transferring: done",
                "switched-over: begun"
            ]
        );
    }
}

on_both_backends! {
    #[tokio::test]
    async fn every_record_round_trips(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        let new = new_run("rack12");
        let run = journal.create_run(&new).await.expect("create");
        assert!(run.id.starts_with("r-") && run.id.len() == "r-20261123-201500-ab12".len(), "{}", run.id);
        assert_eq!(journal.run(&run.id).await.expect("run"), run);
        let docs = journal.run_documents(&run.id).await.expect("docs");
        assert_eq!((docs.plan, docs.cluster), (new.plan.clone(), new.cluster.clone()));

        // A rollback run points at its parent; an unknown parent is refused.
        let rollback = journal
            .create_run(&NewRun { kind: RunKind::Rollback, parent: Some(run.id.clone()), ..new.clone() })
            .await
            .expect("rollback run");
        let read = journal.run(&rollback.id).await.expect("run");
        assert_eq!((read.kind, read.parent.as_deref()), (RunKind::Rollback, Some(run.id.as_str())));
        let orphan = NewRun { kind: RunKind::Rollback, parent: Some("r-none".into()), ..new.clone() };
        assert!(matches!(journal.create_run(&orphan).await, Err(JournalError::RunNotFound { .. })));

        // Moves: every field, nullable ones both ways, initial terminal statuses.
        let mut moves: Vec<NewMove> = (0..4).map(new_move).collect();
        moves[3].status = Status::PrecheckFailed;
        moves[3].message = "host-b: not enough memory for vm-3: needs 4096 MiB, 1024 MiB free".into();
        journal.add_moves(&run.id, &moves).await.expect("add");
        let read = journal.moves(&run.id).await.expect("moves");
        assert_eq!(read.len(), 4);
        for (m, r) in moves.iter().zip(&read) {
            assert_eq!(
                (&r.run, &r.vm, &r.uuid, &r.source, &r.target, &r.group, r.seq, r.priority, r.status, &r.message),
                (&run.id, &m.vm, &m.uuid, &m.source, &m.target, &m.group, m.seq, m.priority, m.status, &m.message)
            );
            assert_eq!((r.phase, r.phase_done, r.generation, r.started_ms), (None, false, FIRST_GENERATION, None));
            assert_eq!(r.ended_ms.is_some(), m.status.is_terminal());
        }

        // Target, status timestamps.
        let uuid = &moves[1].uuid;
        let mut gen = journal.set_target(&run.id, uuid, FIRST_GENERATION, "host-c").await.expect("target");
        gen = journal.set_status(&run.id, uuid, gen, Status::Migrating, "").await.expect("migrating");
        let m = journal.move_of(&run.id, uuid).await.expect("move");
        assert_eq!((m.target.as_deref(), m.status, m.ended_ms), (Some("host-c"), Status::Migrating, None));
        let started = m.started_ms.expect("start time set by MIGRATING");

        // Attempts: a live one that fails, a cold one that succeeds.
        let estimate = json!({ "transfer_s": 4.5, "downtime_ms": 120, "passes": 3 });
        let live = NewAttempt {
            kind: AttemptKind::Live,
            target: "host-c".into(),
            estimate: Some(estimate.clone()),
            compression: Some(Compression::Zstd),
        };
        let one = journal.record_attempt_start(&run.id, uuid, &live).await.expect("attempt 1");
        let end = AttemptEnd {
            outcome: Status::FailureWait,
            message: "stalled for 40 s at 812 MiB remaining".into(),
            wall_ms: Some(41_250),
            job_ms: Some(40_100),
            downtime_ms: None,
            bytes: Some(6_000_000_000),
            passes: Some(17),
            memory_bytes: Some(9_000_000_000),
            memory_sent_bytes: Some(4_000_000_000),
        };
        journal.record_attempt_end(&run.id, uuid, one, &end).await.expect("end 1");
        assert!(matches!(
            journal.record_attempt_end(&run.id, uuid, one, &end).await,
            Err(JournalError::AttemptEnded { number: 1, .. })
        ));
        assert!(matches!(
            journal.record_attempt_end(&run.id, uuid, 9, &end).await,
            Err(JournalError::AttemptNotFound { number: 9, .. })
        ));
        let cold = NewAttempt { kind: AttemptKind::Cold, target: "host-c".into(), estimate: None, compression: None };
        let two = journal.record_attempt_start(&run.id, uuid, &cold).await.expect("attempt 2");
        assert_eq!((one, two), (1, 2));
        let cold_end = AttemptEnd {
            outcome: Status::SuccessCold,
            message: String::new(),
            wall_ms: None,
            job_ms: None,
            downtime_ms: Some(9_800),
            bytes: Some(u64::MAX),
            passes: None,
            memory_bytes: None,
            memory_sent_bytes: None,
        };
        journal.record_attempt_end(&run.id, uuid, two, &cold_end).await.expect("end 2");
        assert!(matches!(
            journal.record_attempt_start(&run.id, "nope", &cold).await,
            Err(JournalError::MoveNotFound { .. })
        ));
        let attempts = journal.attempts(&run.id).await.expect("attempts");
        assert_eq!(attempts.len(), 2);
        let (a, b) = (&attempts[0], &attempts[1]);
        assert_eq!(
            (a.number, a.kind, a.target.as_str(), a.outcome),
            (1, AttemptKind::Live, "host-c", Some(Status::FailureWait))
        );
        assert_eq!(
            (a.wall_ms, a.job_ms, a.downtime_ms, a.bytes, a.passes),
            (Some(41_250), Some(40_100), None, Some(6_000_000_000), Some(17))
        );
        assert_eq!((a.message.as_str(), a.estimate.as_ref()), (end.message.as_str(), Some(&estimate)));
        assert_eq!((a.compression, a.memory_per_byte_sent()), (Some(Compression::Zstd), Some(2.25)));
        assert_eq!((b.compression, b.memory_per_byte_sent()), (None, None));
        // The VM's latest compressed attempt, whatever run it was in; none for another VM.
        let last = journal.last_compressed_attempt(uuid).await.expect("query").expect("one");
        assert_eq!((last.run.as_str(), last.number), (run.id.as_str(), 1));
        assert_eq!(journal.last_compressed_attempt(&moves[0].uuid).await.expect("query"), None);
        assert!(a.started_ms >= started && a.ended_ms.is_some());
        assert_eq!(
            (b.number, b.kind, b.outcome, b.estimate.as_ref()),
            (2, AttemptKind::Cold, Some(Status::SuccessCold), None)
        );
        assert!(b.wall_ms.is_some(), "wall time defaults to the timestamps");
        assert_eq!((b.downtime_ms, b.bytes, b.passes), (Some(9_800), Some(i64::MAX as u64), None));

        gen = journal
            .set_status(&run.id, uuid, gen, Status::SuccessCold, "moved cold after live stalled")
            .await
            .expect("done");
        let m = journal.move_of(&run.id, uuid).await.expect("move");
        assert_eq!(
            (m.status, m.message.as_str(), m.generation),
            (Status::SuccessCold, "moved cold after live stalled", gen)
        );
        assert_eq!(m.started_ms, Some(started));
        assert!(m.ended_ms.is_some_and(|e| e >= started));

        // Events: free ones with and without a VM, and those every write left.
        let decision = json!({ "action": "raise-downtime", "to_ms": 500, "remaining_mib": 812 });
        let id = journal
            .event(
                &run.id,
                Some(uuid),
                EventKind::Decision,
                "raise downtime to 500 ms: pass 6 left 812 MiB",
                Some(&decision),
            )
            .await
            .expect("event");
        let run_note = journal.event(&run.id, None, EventKind::Message, "deadline in 10 min", None).await.expect("event");
        assert!(run_note > id);
        assert!(matches!(
            journal.event(&run.id, Some("nope"), EventKind::Message, "x", None).await,
            Err(JournalError::MoveNotFound { .. })
        ));
        assert!(matches!(
            journal.event("r-none", None, EventKind::Message, "x", None).await,
            Err(JournalError::RunNotFound { .. })
        ));
        let all = journal.events(&run.id, None).await.expect("events");
        let mine = journal.events(&run.id, Some(uuid)).await.expect("events");
        // A follower reads what is new, in pages, and ends with exactly what the run has.
        let (mut followed, mut after) = (Vec::new(), 0);
        loop {
            let page = journal.events_after(&run.id, after, 3).await.expect("events after");
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = last.id;
            followed.extend(page);
        }
        assert_eq!(followed, all);
        assert!(journal.events_after(&run.id, run_note, 10).await.expect("events after").is_empty());
        assert!(all.windows(2).all(|w| w[0].id < w[1].id && w[0].at_ms <= w[1].at_ms));
        assert!(mine.iter().all(|e| e.uuid.as_deref() == Some(uuid.as_str())));
        let kinds: Vec<EventKind> = mine.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Target,
                EventKind::Status,
                EventKind::Attempt,
                EventKind::Attempt,
                EventKind::Attempt,
                EventKind::Attempt,
                EventKind::Status,
                EventKind::Decision
            ]
        );
        let last = mine.last().expect("decision event");
        assert_eq!(
            (last.id, last.message.as_str(), last.data.as_ref()),
            (id, "raise downtime to 500 ms: pass 6 left 812 MiB", Some(&decision))
        );
        let note = all.iter().find(|e| e.id == run_note).expect("run event");
        assert_eq!((note.uuid.as_ref(), note.kind, note.data.as_ref()), (None, EventKind::Message, None));
        assert_eq!(mine[1].message, "MIGRATING");
        assert_eq!(mine[6].message, "SUCCESS-COLD: moved cold after live stalled");
        assert_eq!(mine[3].data.as_ref().and_then(|d| d.get("bytes")), Some(&json!(6_000_000_000u64)));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn adding_moves_is_all_or_nothing(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        let run = journal.create_run(&new_run("plan")).await.expect("run").id;
        let mut moves: Vec<NewMove> = (0..5).map(new_move).collect();
        moves[4].uuid = moves[1].uuid.clone();
        match journal.add_moves(&run, &moves).await {
            Err(JournalError::DuplicateMove { uuid, .. }) => assert_eq!(uuid, moves[1].uuid),
            other => panic!("expected DuplicateMove, got {other:?}"),
        }
        assert!(journal.moves(&run).await.expect("moves").is_empty());
        assert!(matches!(journal.add_moves("r-none", &moves[..1]).await, Err(JournalError::RunNotFound { .. })));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn runs_are_listed_newest_first(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        assert_eq!(journal.latest_run().await.expect("latest"), None);
        let mut created = Vec::new();
        for i in 0..4 {
            created.push(journal.create_run(&new_run(&format!("plan-{i}"))).await.expect("run"));
            // Ids and timestamps have millisecond (timestamps) and second (ids) resolution.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let listed: Vec<String> = journal.runs().await.expect("runs").into_iter().map(|r| r.plan_name).collect();
        assert_eq!(listed, ["plan-3", "plan-2", "plan-1", "plan-0"]);
        assert_eq!(journal.latest_run().await.expect("latest").map(|r| r.id), Some(created[3].id.clone()));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn an_abort_request_is_seen_by_another_handle(dir) {
        let runner = Journal::open(&dir.db()).await.expect("runner");
        let run = runner.create_run(&new_run("plan")).await.expect("run");
        let gen = runner.claim(&run.id, run.generation, "host-a:4242").await.expect("claim");
        assert!(runner.heartbeat(&run.id, "host-a:4242").await.expect("heartbeat"));
        assert!(!runner.heartbeat(&run.id, "host-b:1").await.expect("heartbeat of a non-owner"));
        assert!(!runner.abort_requested(&run.id).await.expect("flag"));

        // `ferry abort` from another terminal.
        let other = Journal::open(&dir.db()).await.expect("other");
        assert!(other.request_abort(&run.id).await.expect("abort"));
        assert!(!other.request_abort(&run.id).await.expect("second abort"), "already requested");
        assert!(runner.abort_requested(&run.id).await.expect("flag"));

        // The runner cannot finish the run without having seen the request.
        assert!(matches!(runner.set_run_state(&run.id, gen, RunState::Finished).await, Err(JournalError::Conflict { .. })));
        let seen = runner.run(&run.id).await.expect("run");
        assert!(seen.abort_requested);
        assert_eq!(seen.owner.as_deref(), Some("host-a:4242"));
        runner.set_run_state(&run.id, seen.generation, RunState::Aborted).await.expect("aborted");
        let ended = other.run(&run.id).await.expect("run");
        assert_eq!(ended.state, RunState::Aborted);
        assert!(ended.finished_ms.is_some());
        match other.request_abort(&run.id).await {
            Err(e @ JournalError::RunEnded { .. }) => {
                assert_eq!(e.to_string(), format!("run {} has already ended (aborted)", run.id))
            }
            other => panic!("expected RunEnded, got {other:?}"),
        }
        assert!(matches!(other.abort_requested("r-none").await, Err(JournalError::RunNotFound { .. })));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn an_ended_run_can_be_asked_to_stop_what_follows_its_moves(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        let run = journal.create_run(&new_run("drain")).await.expect("create run");
        assert!(matches!(journal.request_abort_after_moves(&run.id).await, Err(JournalError::RunNotEnded { .. })));
        journal.set_run_state(&run.id, run.generation, RunState::Finished).await.expect("finished");
        let generation = journal.run(&run.id).await.expect("run").generation;
        assert!(journal.request_abort_after_moves(&run.id).await.expect("asked"));
        assert!(!journal.request_abort_after_moves(&run.id).await.expect("again"), "already asked");
        assert!(journal.abort_requested(&run.id).await.expect("flag"), "the hook's poll sees it");
        let after = journal.run(&run.id).await.expect("run");
        assert_eq!((after.state, after.generation), (RunState::Finished, generation), "its end stays as it was");
    }
}

/// Two writers bump the same move with compare-and-swap (re-reading on conflict) and
/// write their own moves and events; returns how many conflicts it met.
async fn writer(journal: Journal, run: String, shared: String, own: String, rounds: u32) -> u32 {
    let mut conflicts = 0;
    let mut own_gen = journal.move_of(&run, &own).await.expect("own move").generation;
    for i in 0..rounds {
        loop {
            let gen = journal.move_of(&run, &shared).await.expect("shared move").generation;
            match journal.set_status(&run, &shared, gen, Status::Queued, &format!("{own} {i}")).await {
                Ok(_) => break,
                Err(JournalError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("shared write: {e}"),
            }
        }
        own_gen = journal.set_status(&run, &own, own_gen, Status::Queued, "").await.expect("own write");
        journal.event(&run, Some(&own), EventKind::Message, "tick", None).await.expect("event");
    }
    conflicts
}

on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_handles_write_at_once(dir) {
        let a = Journal::open(&dir.db()).await.expect("open a");
        let b = Journal::open(&dir.db()).await.expect("open b");
        let run = run_with_moves(&a, 3).await;
        let [shared, mine, theirs] = [0, 1, 2].map(|i| new_move(i).uuid);
        let rounds = 100;
        let ta = tokio::spawn(writer(a.clone(), run.clone(), shared.clone(), mine.clone(), rounds));
        let tb = tokio::spawn(writer(b, run.clone(), shared.clone(), theirs.clone(), rounds));
        let conflicts = ta.await.expect("writer a") + tb.await.expect("writer b");
        let generation = |uuid: String| {
            let a = a.clone();
            let run = run.clone();
            async move { a.move_of(&run, &uuid).await.expect("move").generation }
        };
        // No update was lost: each of the 2 × 100 shared writes took one generation.
        assert_eq!(generation(shared).await, FIRST_GENERATION + 2 * i64::from(rounds));
        assert_eq!(generation(mine).await, FIRST_GENERATION + i64::from(rounds));
        assert_eq!(generation(theirs).await, FIRST_GENERATION + i64::from(rounds));
        let events = a.events(&run, None).await.expect("events");
        // 2 run events (created, moves added), then per writer and round: the shared
        // status, its own status, its own message.
        assert_eq!(events.len(), 2 + 2 * 3 * rounds as usize);
        eprintln!("{conflicts} conflicts resolved by re-reading");
    }
}

/// `child_process` running in a new process of this test binary; killed when dropped.
struct ChildProcess {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl ChildProcess {
    fn spawn(mode: &str, db: &str, run: &str, uuid: &str) -> ChildProcess {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
            .env("FERRY_JOURNAL_CHILD", mode)
            .env("FERRY_JOURNAL_DB", db)
            .env("FERRY_JOURNAL_RUN", run)
            .env("FERRY_JOURNAL_UUID", uuid)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        ChildProcess { child, lines: BufReader::new(stdout).lines() }
    }

    /// The rest of the first output line holding `marker` (libtest prints
    /// `test child_process ... ` before it on the same line).
    fn wait_for(&mut self, marker: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.expect("child output");
            if let Some(at) = line.find(marker) {
                return line[at + marker.len()..].trim().to_owned();
            }
        }
        panic!("child ended before printing {marker}");
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The second process of the two tests below; does nothing in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    let Ok(mode) = std::env::var("FERRY_JOURNAL_CHILD") else {
        return;
    };
    let var = |name: &str| std::env::var(name).expect("child environment");
    let (db, run, uuid) = (var("FERRY_JOURNAL_DB"), var("FERRY_JOURNAL_RUN"), var("FERRY_JOURNAL_UUID"));
    let journal = Journal::open(&db).await.expect("child open");
    match mode.as_str() {
        "write" => {
            println!("CHILD-READY");
            let conflicts = writer(journal, run, new_move(0).uuid, uuid, 100).await;
            println!("CHILD-DONE {conflicts}");
        }
        "phase-then-hang" => {
            let gen = journal.move_of(&run, &uuid).await.expect("move").generation;
            let gen = journal.begin_phase(&run, &uuid, gen, Phase::Transferring).await.expect("phase");
            journal.set_status(&run, &uuid, gen, Status::Migrating, "").await.expect("status");
            println!("CHILD-WRITTEN");
            // Wait to be killed with SIGKILL, the pool still open.
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
        other => panic!("unknown child mode {other}"),
    }
}

on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_write_at_once(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        let run = run_with_moves(&journal, 3).await;
        let [shared, mine, theirs] = [0, 1, 2].map(|i| new_move(i).uuid);
        let mut child = ChildProcess::spawn("write", &dir.db(), &run, &theirs);
        child.wait_for("CHILD-READY");
        let conflicts = writer(journal.clone(), run.clone(), shared.clone(), mine.clone(), 100).await;
        let done = tokio::task::spawn_blocking(move || {
            let conflicts = child.wait_for("CHILD-DONE");
            (conflicts, child.child.wait().expect("child exit"))
        })
        .await
        .expect("join");
        assert!(done.1.success(), "child failed: {done:?}");
        let shared_gen = journal.move_of(&run, &shared).await.expect("move").generation;
        assert_eq!(shared_gen, FIRST_GENERATION + 200, "no update lost across processes");
        let theirs_gen = journal.move_of(&run, &theirs).await.expect("move").generation;
        assert_eq!(theirs_gen, FIRST_GENERATION + 100);
        eprintln!("conflicts: {conflicts} here, {} in the child", done.0);
    }
}

#[tokio::test]
async fn a_phase_survives_a_dropped_pool() {
    let dir = TempDir::new();
    let journal = Journal::open(&dir.db()).await.expect("open");
    let run = run_with_moves(&journal, 1).await;
    let uuid = new_move(0).uuid;
    journal.begin_phase(&run, &uuid, FIRST_GENERATION, Phase::Transferring).await.expect("phase");
    // No close, no destructor: connections stay open, the WAL is not checkpointed.
    std::mem::forget(journal);
    assert!(Path::new(&format!("{}-wal", dir.db())).exists());

    let reopened = Journal::open(&dir.db()).await.expect("reopen");
    let m = reopened.move_of(&run, &uuid).await.expect("move");
    assert_eq!((m.phase, m.phase_done, m.generation), (Some(Phase::Transferring), false, FIRST_GENERATION + 1));
}

on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_phase_survives_kill_9(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        let run = run_with_moves(&journal, 1).await;
        let uuid = new_move(0).uuid;
        journal.close().await;

        let mut child = ChildProcess::spawn("phase-then-hang", &dir.db(), &run, &uuid);
        child.wait_for("CHILD-WRITTEN");
        child.child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        let status = child.child.wait().expect("reaped");
        assert!(!status.success());

        let reopened = Journal::open(&dir.db()).await.expect("reopen after kill");
        let m = reopened.move_of(&run, &uuid).await.expect("move");
        assert_eq!((m.phase, m.phase_done, m.status), (Some(Phase::Transferring), false, Status::Migrating));
        assert_eq!(m.generation, FIRST_GENERATION + 2);
        // And the file takes writes again at once.
        reopened.end_phase(&run, &uuid, m.generation, Phase::Transferring).await.expect("write after kill");
    }
}

/// A simulated run: on a runtime whose time is paused, the journal records virtual time,
/// and no operation lets that time advance (a timer due meanwhile does not fire), however
/// slow the disk. With the system clock on such a runtime, the pool's own timeouts fire
/// while SQLite works: opening fails with "pool timed out".
#[test]
fn virtual_time_is_recorded_and_never_advances_during_an_operation_on_sqlite() {
    virtual_time_is_recorded_and_never_advances_during_an_operation(Store::sqlite());
}

/// The same on PostgreSQL, where connecting yields to tokio (password authentication), which
/// must not wait for the paused caller.
#[test]
fn virtual_time_is_recorded_and_never_advances_during_an_operation_on_postgres() {
    virtual_time_is_recorded_and_never_advances_during_an_operation(Store::postgres());
}

fn virtual_time_is_recorded_and_never_advances_during_an_operation(dir: Store) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused runtime");
    runtime.block_on(async {
        let start_ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let config = JournalConfig { clock: JournalClock::Virtual { unix_ms: start_ms }, ..JournalConfig::default() };
        let journal = Journal::open_with(&dir.db(), &config).await.expect("opens in virtual time");
        let started = tokio::time::Instant::now();
        // A timer due 10 ms (virtual) from now: with the journal's work awaited on this
        // runtime, it would fire while SQLite syncs to disk.
        let timer = tokio::spawn(tokio::time::sleep(Duration::from_millis(10)));
        let run = run_with_moves(&journal, 50).await;
        for i in 0..50 {
            let uuid = new_move(i).uuid;
            journal.set_status(&run, &uuid, FIRST_GENERATION, Status::Migrating, "started").await.expect("status");
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "virtual time moved during journal writes");
        assert!(!timer.is_finished());
        let created = journal.run(&run).await.expect("run");
        assert_eq!(created.created_ms, start_ms);
        assert!(created.id.starts_with("r-20260101-000000-"), "{}", created.id);

        tokio::time::sleep(Duration::from_secs(3600)).await;
        journal.set_run_state(&run, created.generation, RunState::Finished).await.expect("finish");
        let finished = journal.run(&run).await.expect("run");
        assert_eq!(finished.finished_ms, Some(start_ms + 3_600_000));
        journal.close().await;
    });
}

on_both_backends! {
    #[tokio::test]
    async fn a_claim_lost_to_another_process_names_the_holder(dir) {
        let first = Journal::open(&dir.db()).await.expect("first");
        let second = Journal::open(&dir.db()).await.expect("second");
        let run = run_with_moves(&first, 1).await;
        // Both read the run ownerless and decide to take it; the first claim wins.
        let seen_by_first = first.run(&run).await.expect("run");
        let seen_by_second = second.run(&run).await.expect("run");
        let lease = first.claim_lease(&seen_by_first, "host-a:1").await.expect("first claim");
        assert_eq!((lease.run(), lease.owner()), (run.as_str(), "host-a:1"));
        match second.claim_lease(&seen_by_second, "host-b:2").await {
            Err(JournalError::LeaseHeld { run: r, holder }) => {
                assert_eq!((r.as_str(), holder.as_str()), (run.as_str(), "host-a:1"));
            }
            other => panic!("expected LeaseHeld naming host-a:1, got {other:?}"),
        }
        let refused = second.claim_lease(&seen_by_second, "host-b:2").await.expect_err("still refused");
        assert!(refused.to_string().contains("host-a:1"), "{refused}");
        lease.keep().await.expect("the winner still holds it");

        // A change that is not a claim (an abort request) is a conflict to read again, not a holder.
        let seen = second.run(&run).await.expect("run");
        assert!(first.request_abort(&run).await.expect("abort"));
        assert!(matches!(second.claim_lease(&seen, "host-b:2").await, Err(JournalError::Conflict { .. })));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_stale_holders_writes_are_refused_after_another_claimed(dir) {
        let stale = Journal::open(&dir.db()).await.expect("stale holder");
        let run = run_with_moves(&stale, 2).await;
        let lease = stale.claim_lease(&stale.run(&run).await.expect("run"), "host-a:1").await.expect("claim");
        let moves = stale.moves(&run).await.expect("moves");
        let (vm1, vm2) = (&moves[0], &moves[1]);
        let g1 = stale.set_target(&run, &vm1.uuid, vm1.generation, "host-b").await.expect("holder writes");

        // The holder stops answering; another process takes the run.
        let next = Journal::open(&dir.db()).await.expect("new holder");
        let taken = next.claim_lease(&next.run(&run).await.expect("run"), "host-b:2").await.expect("takeover");
        assert!(taken.epoch() > lease.epoch());

        let lost = |result: Result<i64, JournalError>, what: &str| match result {
            Err(JournalError::LeaseLost { run: r, holder }) => {
                assert_eq!((r.as_str(), holder.as_str()), (run.as_str(), "host-b:2"), "{what}");
            }
            other => panic!("{what}: expected LeaseLost naming host-b:2, got {other:?}"),
        };
        lost(stale.set_status(&run, &vm1.uuid, g1, Status::Migrating, "started").await, "set_status");
        lost(stale.begin_phase(&run, &vm1.uuid, g1, Phase::Transferring).await, "begin_phase");
        lost(stale.set_target(&run, &vm2.uuid, vm2.generation, "host-b").await, "set_target");
        let attempt = NewAttempt { kind: AttemptKind::Live, target: "host-b".into(), estimate: None, compression: None };
        lost(stale.record_attempt_start(&run, &vm1.uuid, &attempt).await.map(i64::from), "record_attempt_start");
        let run_generation = stale.run(&run).await.expect("run").generation;
        lost(stale.set_run_state(&run, run_generation, RunState::Finished).await, "set_run_state");
        lost(stale.add_moves(&run, &[new_move(9)]).await.map(|()| 0), "add_moves");
        lost(lease.keep().await.map(|()| 0), "keep");
        // The intent of a step that would change a host: refused, so the step is not done.
        let step = ferry_model::Step::ShutDown { host: "host-a".into() };
        lost(stale.begin_step(&run, &vm1.uuid, 1, &step).await.map(|()| 0), "begin_step");
        // A clone of the stale handle is fenced too: the lease belongs to the process.
        lost(stale.clone().set_status(&run, &vm1.uuid, g1, Status::Migrating, "").await, "a clone");

        // Nothing the stale holder tried is in the journal; the new holder writes as usual.
        let now = next.move_of(&run, &vm1.uuid).await.expect("move");
        assert_eq!((now.status, now.generation, now.phase), (Status::Pending, g1, None));
        assert!(next.attempts(&run).await.expect("attempts").is_empty());
        assert!(next.steps(&run, &vm1.uuid).await.expect("steps").is_empty());
        assert_eq!(next.moves(&run).await.expect("moves").len(), 2);
        next.set_status(&run, &vm1.uuid, g1, Status::Migrating, "started").await.expect("the holder writes");
        taken.keep().await.expect("the new holder keeps it");
        assert_eq!(next.lease(&run).map(|l| l.epoch()), Some(taken.epoch()));
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_heartbeat_by_a_non_holder_is_refused(dir) {
        let journal = Journal::open(&dir.db()).await.expect("open");
        let run = run_with_moves(&journal, 1).await;
        let first = journal.claim_lease(&journal.run(&run).await.expect("run"), "host-a:1").await.expect("claim");
        assert!(journal.heartbeat(&run, "host-a:1").await.expect("heartbeat"));
        assert!(!journal.heartbeat(&run, "host-c:3").await.expect("a stranger's heartbeat"));
        let other = Journal::open(&dir.db()).await.expect("other");
        other.claim_lease(&other.run(&run).await.expect("run"), "host-b:2").await.expect("takeover");
        assert!(!journal.heartbeat(&run, "host-a:1").await.expect("the old holder's heartbeat"));
        let beat = other.run(&run).await.expect("run").heartbeat_ms;
        assert!(matches!(first.keep().await, Err(JournalError::LeaseLost { .. })));
        assert_eq!(other.run(&run).await.expect("run").heartbeat_ms, beat, "a refused beat writes nothing");
    }
}

#[tokio::test]
async fn a_journal_error_names_its_cause() {
    let dir = TempDir::new();
    // A directory where the journal file should be: SQLite cannot open it.
    let path = dir.0.join("journal.db");
    std::fs::create_dir_all(&path).expect("dir");
    let e = Journal::open(path.to_str().expect("utf-8")).await.expect_err("cannot open a directory");
    let text = e.to_string();
    assert!(text.starts_with(&format!("cannot open the journal at {}: ", path.display())), "{text}");
    assert!(text.len() > format!("cannot open the journal at {}: ", path.display()).len() + 3, "{text}");
}

/// A restart waited out in virtual time: the pauses between tries are wall time (the
/// simulation's clock stands still while the journal works, so a timer of its runtime
/// would never fire), and the simulation's clock does not move meanwhile.
#[test]
fn a_postgres_restart_is_waited_out_in_virtual_time() {
    let mut server = ferry_pgtest::Server::start().expect("a PostgreSQL server");
    let url = server.url(ferry_pgtest::DATABASE);
    let (ready, stopped) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let simulation = std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        runtime.block_on(async {
            let config = JournalConfig {
                clock: JournalClock::Virtual { unix_ms: 1_767_225_600_000 },
                ..JournalConfig::default()
            };
            let journal = Journal::open_with(&url, &config).await.expect("opens in virtual time");
            let run = run_with_moves(&journal, 1).await;
            ready.0.send(()).expect("the test waits");
            stopped.1.recv().expect("the server stopped");
            let (virtual_start, wall_start) = (tokio::time::Instant::now(), std::time::Instant::now());
            let uuid = new_move(0).uuid;
            let written = journal.set_status(&run, &uuid, FIRST_GENERATION, Status::Migrating, "after").await;
            assert_eq!(written.expect("lands once the server is back"), FIRST_GENERATION + 1);
            assert_eq!(virtual_start.elapsed(), Duration::ZERO, "the simulation's clock stood still");
            wall_start.elapsed()
        })
    });
    ready.1.recv().expect("the simulation is ready");
    server.stop().expect("stops");
    stopped.0.send(()).expect("the simulation waits");
    std::thread::sleep(Duration::from_millis(1500));
    server.start_again().expect("starts again");
    let waited = simulation.join().expect("the simulation ends");
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
}
