//! How long a journal event takes to reach a browser watching the run in `ferry serve`'s web
//! view, and how much memory the server needs meanwhile.
//!
//! The run: a drain of the first HOSTS hosts (default 100) of a simulated 1,000-host,
//! 10,000-VM fleet (`ferry sim gen --hosts 1000 --vms 10000 --seed 7`, every VM to `ANY`),
//! `ferry migrate --cluster sim:FILE` in virtual time: its events are written as fast as
//! the journal takes them (about a thousand a second), far denser than a real run's. A
//! `ferry serve` on the same SQLite journal; headless Chromium opens the run's page as soon
//! as the run has an id, and keeps it open to the end (the page refreshes the report as
//! events come, as it does for a person).
//!
//! An event's write time is when this bench first saw it in the journal: a reader of its
//! own asks for new events every 5 ms (so latencies read up to about 5 ms short). Its
//! arrival is when the page's stream reader got it (`performance.timeOrigin + now()`, the
//! same machine clock). Only events written after the page received its first are counted:
//! what was written before it opened arrives as a backlog. The server's peak memory is its
//! VmHWM once the run has ended.
//!
//! Goals: p99 under 500 ms, peak memory under 300 MiB.
//!
//! `cargo bench -p ferry --bench serve_latency [-- HOSTS]`; `FERRY_BENCH_SERVE_LOG=FILE`
//! keeps the server's log (each request and how long it took). No lab: the simulator, the
//! server and Chromium.

#[path = "../tests/common/dom.rs"]
mod dom;
#[path = "shared/fleet_drain.rs"]
mod fleet_drain;
#[path = "../tests/common/served.rs"]
mod served;

use fleet_drain::{ferry, path};

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_journal::{Journal, JournalConfig};

const TOKEN: &str = "bench-read-token-0123456789";

fn main() {
    let drained_hosts: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("ferry-serve-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let drain = fleet_drain::fleet_drain(Path::new(env!("CARGO_BIN_EXE_ferry")), &dir, 1000, drained_hosts);
    let (fleet_path, plan) = (drain.fleet, drain.plan);
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("read {TOKEN}\n")).expect("tokens");
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let state = dir.join("journal.db");
    let cluster = format!("sim:{}", path(&fleet_path));
    println!("fleet: 1000 hosts, {} VMs; drain of {drained_hosts} hosts ({} moves)", drain.vms, drain.moves);

    let (mut server, port) = serve(&state, &tokens, &cluster);
    let started = Instant::now();
    let mut run_process = ferry(&["migrate", path(&plan), "--cluster", &cluster, "--state", path(&state)])
        .arg("-q")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry migrate");
    let first = served::first_line(run_process.stdout.take().expect("stdout"));
    let run = first.split_whitespace().find(|w| w.starts_with("r-")).expect("a run id").to_owned();

    let done = Arc::new(AtomicBool::new(false));
    let seen = {
        let (state, run, done) = (state.clone(), run.clone(), done.clone());
        std::thread::spawn(move || tail(&state, &run, &done))
    };
    let mut browser = dom::Browser::open_url(&format!("http://127.0.0.1:{port}/runs/{run}#token={TOKEN}"), &dir);
    let status = run_process.wait().expect("ferry migrate ends");
    let run_s = started.elapsed().as_secs_f64();
    assert!(status.code().is_some_and(|c| c <= 1), "ferry migrate: {status}");
    let ended = browser.wait_until("document.body.dataset.ended === 'true'", Duration::from_secs(600));
    assert!(ended, "the page never saw the run end");
    done.store(true, Ordering::Relaxed);
    let written = seen.join().expect("the journal reader");
    let received = browser.eval("JSON.stringify(window.ferryReceived)");
    let received: Vec<(i64, f64)> =
        serde_json::from_str(received.as_str().expect("a JSON string")).expect("pairs of id and time");
    let refreshes = browser.eval("Number(document.body.dataset.refreshes || 0)");
    let peak_mib = peak_memory_mib(server.id());
    drop(browser);
    let _ = server.kill();
    let _ = server.wait();

    let opened_at = received.first().map(|(_, at)| *at).expect("the page received events");
    let received: HashMap<i64, f64> = received.into_iter().collect();
    let mut latencies: Vec<f64> = written
        .iter()
        .filter(|(_, at)| *at > opened_at)
        .filter_map(|(id, at)| received.get(id).map(|got| got - at))
        .collect();
    let missed = written.iter().filter(|(id, _)| !received.contains_key(id)).count();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "run: {run_s:.1} s of wall time, {} events, {} counted after the page opened",
        written.len(),
        latencies.len()
    );
    println!("page: the report refreshed {refreshes} times; {missed} events never reached it");
    println!();
    println!("| figure | value | goal |");
    println!("|---|---|---|");
    println!("| event latency p50 | {:.0} ms | |", quantile(0.5));
    println!("| event latency p90 | {:.0} ms | |", quantile(0.9));
    println!("| event latency p99 | {:.0} ms | < 500 ms: {} |", quantile(0.99), met(quantile(0.99) < 500.0));
    println!("| event latency max | {:.0} ms | |", quantile(1.0));
    println!("| server peak memory | {peak_mib:.0} MiB | < 300 MiB: {} |", met(peak_mib < 300.0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `ferry serve` on `state`; the process and its port.
fn serve(state: &Path, tokens: &Path, cluster: &str) -> (Child, u16) {
    let mut server = ferry(&["serve", "--listen", "127.0.0.1:0", "--token-file", path(tokens), "--state", path(state)])
        .args(["--cluster", cluster])
        .stdout(Stdio::piped())
        .stderr(match std::env::var_os("FERRY_BENCH_SERVE_LOG") {
            Some(log) => Stdio::from(std::fs::File::create(log).expect("the server's log")),
            None => Stdio::null(),
        })
        .env("RUST_LOG", "ferry_serve=debug")
        .spawn()
        .expect("ferry serve");
    let port = served::listening_port(server.stdout.take().expect("stdout"));
    (server, port)
}

/// Each event of `run` and when it was first seen in the journal (ms since the epoch),
/// asking every 5 ms, until `done` and nothing new.
fn tail(state: &Path, run: &str, done: &AtomicBool) -> Vec<(i64, f64)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let journal = Journal::open_path(state, &JournalConfig::default()).await.expect("the journal");
        let (mut seen, mut after) = (Vec::new(), 0);
        loop {
            let new = journal.events_after(run, after, 10_000).await.expect("events");
            let at = now_ms();
            if new.is_empty() && done.load(Ordering::Relaxed) {
                return seen;
            }
            for event in &new {
                seen.push((event.id, at));
            }
            after = new.last().map_or(after, |e| e.id);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The peak resident memory of process `pid`, MiB (its VmHWM).
fn peak_memory_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "not met"
    }
}
