//! What a journal write costs on this machine: a compare-and-swap status update (one
//! transaction: the update, the check, its event) and a free event insert, each 1,000
//! times, first from one writer, then from two writers at once on the same file (two
//! handles with their own connections, as two ferry processes would have). Both
//! durabilities, to show what `synchronous = FULL` costs. Then the bulk paths: adding
//! 10,000 moves in one transaction, reading them back, reading a run's events.
//!
//! Prints median, p90 and p99 per operation and the writers' combined rate; asserts
//! nothing about time. The file lives in `FERRY_BENCH_DIR` or the system temp directory.
//! Run: `cargo bench -p ferry-journal --bench journal`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_journal::{Durability, EventKind, Journal, JournalConfig, NewMove, NewRun, RunKind, FIRST_GENERATION};
use ferry_model::Status;
use serde_json::json;

const OPS: usize = 1_000;
const BULK_MOVES: u32 = 10_000;

#[derive(Clone, Copy)]
enum Op {
    Status,
    Event,
}

fn new_move(i: u32) -> NewMove {
    NewMove {
        vm: format!("vm-{i:05}"),
        uuid: format!("00000000-0000-0000-0000-{i:012}"),
        source: format!("h{:03}", i % 100),
        target: None,
        group: None,
        seq: i64::from(i),
        priority: 0,
        status: Status::Pending,
        message: String::new(),
    }
}

async fn run_with_moves(journal: &Journal, n: u32) -> String {
    let run = journal
        .create_run(&NewRun {
            plan_name: "bench".into(),
            plan: json!({}),
            cluster: json!({}),
            kind: RunKind::Migrate,
            parent: None,
        })
        .await
        .expect("create run");
    let moves: Vec<NewMove> = (0..n).map(new_move).collect();
    journal.add_moves(&run.id, &moves).await.expect("add moves");
    run.id
}

/// `OPS` operations of one kind on VM `uuid`; the time of each.
async fn time_ops(journal: Journal, run: String, uuid: String, op: Op) -> Vec<Duration> {
    let mut times = Vec::with_capacity(OPS);
    let mut generation = journal.move_of(&run, &uuid).await.expect("move").generation;
    for i in 0..OPS {
        let status = if i % 2 == 0 { Status::Queued } else { Status::Pending };
        let started = Instant::now();
        match op {
            Op::Status => {
                generation = journal.set_status(&run, &uuid, generation, status, "bench").await.expect("status update");
            }
            Op::Event => {
                let data = json!({ "action": "wait", "remaining_mib": i });
                journal
                    .event(&run, Some(&uuid), EventKind::Decision, "wait: converging", Some(&data))
                    .await
                    .expect("event");
            }
        }
        times.push(started.elapsed());
    }
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let at = ((last as f64) * p).round() as usize;
    sorted.get(at.min(last)).copied().unwrap_or_default()
}

fn report(label: &str, mut times: Vec<Duration>, wall: Duration) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {label:<28} median {:>7.3} ms   p90 {:>7.3} ms   p99 {:>7.3} ms   {:>6.0} ops/s",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.9)),
        ms(percentile(&times, 0.99)),
        times.len() as f64 / wall.as_secs_f64()
    );
}

async fn bench_writes(dir: &std::path::Path, durability: Durability, name: &str) {
    let db = dir.join(format!("{name}.db")).display().to_string();
    let config = JournalConfig { durability, ..JournalConfig::default() };
    let a = Journal::open_with(&db, &config).await.expect("open a");
    let b = Journal::open_with(&db, &config).await.expect("open b");
    let run = run_with_moves(&a, 3).await;
    let uuid = |i| new_move(i).uuid;
    println!("synchronous = {name}");

    for (op, label) in [(Op::Status, "CAS status update"), (Op::Event, "event insert")] {
        let started = Instant::now();
        let times = time_ops(a.clone(), run.clone(), uuid(0), op).await;
        report(&format!("{label}, 1 writer"), times, started.elapsed());

        let started = Instant::now();
        let ta = tokio::spawn(time_ops(a.clone(), run.clone(), uuid(1), op));
        let tb = tokio::spawn(time_ops(b.clone(), run.clone(), uuid(2), op));
        let mut times = ta.await.expect("writer a");
        times.extend(tb.await.expect("writer b"));
        report(&format!("{label}, 2 writers"), times, started.elapsed());
    }
    a.close().await;
    b.close().await;
}

async fn bench_bulk(dir: &std::path::Path) {
    let db = dir.join("bulk.db").display().to_string();
    let journal = Journal::open(&db).await.expect("open");
    println!("bulk (synchronous = FULL)");
    let started = Instant::now();
    let run = run_with_moves(&journal, BULK_MOVES).await;
    println!("  add_moves({BULK_MOVES}), one transaction   {:>8.1} ms", started.elapsed().as_secs_f64() * 1e3);
    let started = Instant::now();
    let moves = journal.moves(&run).await.expect("moves");
    assert_eq!(moves.len(), BULK_MOVES as usize);
    println!("  moves() of {BULK_MOVES}                 {:>8.1} ms", started.elapsed().as_secs_f64() * 1e3);
    for m in moves.iter().take(1_000) {
        journal.set_status(&run, &m.uuid, FIRST_GENERATION, Status::Queued, "").await.expect("status");
    }
    let started = Instant::now();
    let events = journal.events(&run, None).await.expect("events");
    println!("  events() of {:<5}                   {:>8.1} ms", events.len(), started.elapsed().as_secs_f64() * 1e3);
    journal.close().await;
}

fn main() {
    let base = std::env::var_os("FERRY_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("ferry-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    println!("journal files in {}; {OPS} operations per line", dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        bench_writes(&dir, Durability::Full, "FULL").await;
        bench_writes(&dir, Durability::Normal, "NORMAL").await;
        bench_bulk(&dir).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
