//! The journal on PostgreSQL against SQLite, on the same simulated drain: 100 hosts of a
//! 1,000-host, 10,000-VM fleet (`ferry sim gen --hosts 1000 --vms 10000 --seed 7`, every VM
//! of the first 100 hosts to `ANY`), run by `ferry migrate --cluster sim:FILE` once with
//! `--state FILE` and once with `--state postgres://…` (a private server with PostgreSQL's
//! durable defaults: fsync on; ferry asks, for a simulation, what it asks SQLite: commits
//! that survive ferry, not the machine). Rounds alternate the two.
//!
//! Prints per backend: wall time, journal records written (runs, moves, attempts, events)
//! per second of wall time, and ferry's peak memory (its maximum resident set, from
//! wait4). Goal: PostgreSQL ≤ 1.5 × SQLite's wall time.
//!
//! `cargo bench -p ferry --bench journal_backends [-- ROUNDS [HOSTS]]` (default 3 rounds,
//! 1000 hosts with 10 VMs each). No lab: the simulator and a PostgreSQL of its own.

#[path = "shared/fleet_drain.rs"]
mod fleet_drain;

use fleet_drain::{ferry, path};
#[path = "shared/stats.rs"]
mod stats;

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use ferry_journal::Journal;

/// One run of the drain.
struct Ran {
    wall_s: f64,
    records: u64,
    peak_mib: f64,
}

fn main() {
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rounds = numbers.first().copied().unwrap_or(3);
    let hosts = numbers.get(1).copied().unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("ferry-journal-backends-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let made = fleet_drain::fleet_drain(Path::new(env!("CARGO_BIN_EXE_ferry")), &dir, hosts, hosts / 10);
    let (fleet_path, plan) = (made.fleet, made.plan);
    println!("fleet: {hosts} hosts, {} VMs; drain of {} hosts ({} moves)", made.vms, hosts / 10, made.moves);

    let server = ferry_pgtest::Server::start_with(ferry_pgtest::Durability::Durable).expect("a PostgreSQL server");
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    for round in 0..rounds {
        let file = dir.join(format!("journal-{round}.db"));
        sqlite.push(drain(&plan, &fleet_path, path(&file)));
        let database = format!("round{round}");
        server.create_database(&database).expect("a database for the round");
        postgres.push(drain(&plan, &fleet_path, &server.url(&database)));
        println!(
            "round {}: SQLite {:.1} s, PostgreSQL {:.1} s",
            round + 1,
            sqlite[round].wall_s,
            postgres[round].wall_s
        );
    }
    println!();
    println!("| journal | wall s (median) | records | records/s | peak memory MiB |");
    println!("|---|---|---|---|---|");
    for (name, runs) in [("SQLite (file)", &sqlite), ("PostgreSQL (server)", &postgres)] {
        let wall = stats::median(runs.iter().map(|r| r.wall_s));
        let records = runs[0].records;
        println!(
            "| {name} | {wall:.1} | {records} | {:.0} | {:.0} |",
            records as f64 / wall,
            stats::median(runs.iter().map(|r| r.peak_mib))
        );
    }
    let ratio = stats::median(postgres.iter().map(|r| r.wall_s)) / stats::median(sqlite.iter().map(|r| r.wall_s));
    println!();
    println!(
        "PostgreSQL / SQLite wall time: {ratio:.2} (goal <= 1.5: {})",
        if ratio <= 1.5 { "met" } else { "not met" }
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ferry migrate PLAN --cluster sim:FLEET --state STATE`, timed, its records counted and its
/// peak memory read from the kernel when it is reaped.
#[expect(clippy::zombie_processes, reason = "reaped by wait4, which also tells its peak memory")]
fn drain(plan: &Path, fleet: &Path, state: &str) -> Ran {
    let started = Instant::now();
    let child = ferry(&["migrate", path(plan), "--cluster", &format!("sim:{}", path(fleet)), "--state", state])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry migrate");
    let (status, peak_kib) = wait_with_peak(child.id());
    let wall_s = started.elapsed().as_secs_f64();
    assert!(status == 0 || status == 1, "ferry migrate ended with status {status}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let records = runtime.block_on(async {
        let journal = Journal::open(state).await.expect("the journal");
        let mut records = 0;
        for run in journal.runs().await.expect("runs") {
            records += 1;
            records += journal.moves(&run.id).await.expect("moves").len() as u64;
            records += journal.attempts(&run.id).await.expect("attempts").len() as u64;
            records += journal.events(&run.id, None).await.expect("events").len() as u64;
        }
        records
    });
    Ran { wall_s, records, peak_mib: peak_kib as f64 / 1024.0 }
}

/// Waits for child `pid`: its exit status and its maximum resident set in KiB.
fn wait_with_peak(pid: u32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills; `pid` is our child, not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: both pointers are to live locals of the right types.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}
