//! A kill soak on a real lab: `ferry migrate`, then the `ferry resume` after it, each
//! killed with SIGKILL at seeded random moments of live drains (host-local and shared disks),
//! cold moves, live-or-cold fallbacks and drains that return after their hook. After each
//! round `ferry resume` finishes the run, and then every guest runs on exactly one host and
//! is defined on exactly one, no volume is left that no guest uses (the plans delete source
//! copies), a drained host is empty (or, for a returning drain, holds its guests again), and
//! `ferry lab check` passes. `FERRY_SOAK_SEED` replays a failure (every failure prints its
//! seed); `FERRY_SOAK_KILLS` sets how many kills (8 by default, enough for one round of each
//! scenario; `scripts/soak` runs the long version).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestLab;

/// SplitMix64: a seeded sequence, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [low, high) seconds.
    fn seconds(&mut self, low: f64, high: f64) -> Duration {
        Duration::from_secs_f64(low + (high - low) * (self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// Every guest of the busiest host leaves it, live, to `ANY`.
    Drain,
    /// A guest with a host-local disk and one with a shared disk move cold.
    Cold,
    /// A guest dirtying faster than a slow link: the live attempt stalls, the move goes cold.
    Fallback,
    /// A drain whose guests come back after its hook.
    DrainReturn,
}

/// The rounds' order: a fallback round costs the most (its live attempt must stall before
/// the cold move, and a killed attempt's job is aborted by `resume` only at the stall
/// timeout), so it comes once in six.
const SCENARIOS: [Scenario; 6] =
    [Scenario::Drain, Scenario::Cold, Scenario::DrainReturn, Scenario::Fallback, Scenario::Drain, Scenario::Cold];

struct Soak {
    lab: TestLab,
    seed: u64,
    state: PathBuf,
}

impl Soak {
    fn path(&self, name: &str) -> String {
        self.lab.dir.join(name).to_str().expect("utf-8 path").to_string()
    }

    /// Where each guest runs now.
    fn placement(&self) -> BTreeMap<String, String> {
        let status = self.lab.status_json();
        status["vms"]
            .as_array()
            .expect("vms")
            .iter()
            .map(|v| {
                let host = v["running_on"].as_array().and_then(|h| h.first()).and_then(|h| h.as_str()).unwrap_or("");
                (v["name"].as_str().expect("name").to_string(), host.to_string())
            })
            .collect()
    }

    /// A cluster file like the lab's with every host's link at `link` MiB/s.
    fn slow_cluster(&self, link: u32) -> String {
        let text = std::fs::read_to_string(self.lab.dir.join("cluster.toml")).expect("cluster file");
        let text: String = text
            .lines()
            .map(|l| if l.starts_with("link_mib_s") { format!("link_mib_s = {link}") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        let path = self.path(&format!("cluster-{link}.toml"));
        std::fs::write(&path, text).expect("write cluster file");
        path
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--state", self.state.to_str().expect("utf-8 path")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ferry runs")
    }

    fn ferry(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut full: Vec<&str> = args.to_vec();
        let state = self.state.to_str().expect("utf-8 path");
        full.extend(["--state", state]);
        let out = common::ferry(&full);
        (
            out.status.code(),
            format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    fn context(&self, round: usize, run: &str) -> String {
        format!(
            "soak seed {} (FERRY_SOAK_SEED={} replays it), round {round}\n{}",
            self.seed,
            self.seed,
            self.ferry(&["report", run]).1
        )
    }
}

/// Kills `child` after `after` unless it ended first; says whether it was killed.
fn kill_after(child: &mut Child, after: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < after {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive = child.try_wait().expect("wait").is_none();
    if alive {
        common::kill9(child.id());
    }
    let _ = child.wait();
    alive
}

fn next_host(host: &str) -> &'static str {
    match host {
        "host-a" => "host-b",
        "host-b" => "host-c",
        _ => "host-a",
    }
}

#[test]
fn killed_at_random_moments_every_run_resumes_to_every_vm_running_once() {
    let seed = std::env::var("FERRY_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(14);
    let wanted: usize = std::env::var("FERRY_SOAK_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    // Guests dirty 16 MiB/s over a 12 MiB working set: quick over the lab's own links, never
    // done over a 12 MiB/s one.
    let lab = TestLab::up("soak", 6_000, &["--hosts", "3", "--vms", "4", "--mem", "96", "--dirty", "16"]);
    let soak = Soak { state: lab.dir.join("journal.db"), lab, seed };
    let mut rng = Rng(seed);
    let fast = soak.path("cluster.toml");
    let slow = soak.slow_cluster(12);
    let guests = ["vm-1", "vm-2", "vm-3", "vm-4"];
    let mut kills = 0;
    let mut round = 0;
    while kills < wanted {
        let scenario = SCENARIOS[round % SCENARIOS.len()];
        let before = soak.placement();
        let busiest = {
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            for host in before.values() {
                *count.entry(host.as_str()).or_default() += 1;
            }
            count.into_iter().max_by_key(|(_, n)| *n).map(|(h, _)| h.to_string()).expect("a host")
        };
        let common_policy = "delete_source_volumes = true\nshutdown_timeout_s = 2\n";
        let (body, cluster, kill_within) = match scenario {
            Scenario::Drain => (format!("[policy]\n{common_policy}[[drain]]\nhost = \"{busiest}\"\n"), &fast, 4.0),
            Scenario::Cold => (
                format!(
                    "[policy]\n{common_policy}mode = \"cold\"\n[[move]]\nvm = \"vm-1\"\nto = \"{}\"\n[[move]]\nvm = \"vm-2\"\nto = \"{}\"\n",
                    next_host(&before["vm-1"]),
                    next_host(&before["vm-2"])
                ),
                &fast,
                4.0,
            ),
            Scenario::Fallback => (
                format!(
                    "[policy]\n{common_policy}mode = \"live-or-cold\"\nauto_converge = false\npostcopy = false\n\
                     max_downtime_ms = 100\nstall_timeout_s = 3\n[[move]]\nvm = \"vm-3\"\nto = \"{}\"\n",
                    next_host(&before["vm-3"])
                ),
                &slow,
                12.0,
            ),
            // The hook is safe to repeat: a resume runs it again after a kill during it.
            Scenario::DrainReturn => (
                format!(
                    "[hooks]\nrerun_hooks = true\n[policy]\n{common_policy}\
                     [[drain]]\nhost = \"{busiest}\"\nreturn = true\nhook = \"sleep 2\"\n"
                ),
                &fast,
                10.0,
            ),
        };
        let name = format!("soak-{round}");
        let plan = soak.path(&format!("{name}.toml"));
        std::fs::write(&plan, format!("[plan]\nname = \"{name}\"\n[limits]\ncluster = 2\n{body}")).expect("write plan");

        let mut child = soak.spawn(&["migrate", &plan, "--cluster", cluster]);
        let run = common::stdout_run_id(&mut child);
        kills += usize::from(kill_after(&mut child, rng.seconds(0.3, kill_within)));
        // `ferry resume` is killed too, at its own random moment: twice the kills per round.
        let mut resume = soak.spawn(&["resume", &run]);
        kills += usize::from(kill_after(&mut resume, rng.seconds(0.2, 2.5)));
        let (code, text) = soak.ferry(&["resume", &run]);
        let context = || format!("{scenario:?}: {text}\n{}", soak.context(round, &run));
        assert_eq!(code, Some(0), "{}", context());

        soak.lab.assert_each_vm_once_and_no_stray_volume(&[], &context);
        let after = soak.placement();
        match scenario {
            Scenario::Drain => {
                assert!(after.values().all(|h| *h != busiest), "{busiest} drained: {after:?}\n{}", context());
            }
            Scenario::DrainReturn => {
                for (vm, host) in &before {
                    if *host == busiest {
                        assert_eq!(&after[vm], host, "{vm} returned to {busiest}\n{}", context());
                    }
                }
            }
            Scenario::Cold | Scenario::Fallback => {}
        }
        let mut check = vec!["lab", "check", "--dir", soak.lab.dir_str()];
        for vm in guests {
            check.extend(["--allow-restart", vm]);
        }
        let out = common::ferry(&check);
        assert!(out.status.success(), "lab check: {}\n{}", String::from_utf8_lossy(&out.stdout), context());
        round += 1;
    }
    eprintln!("soak seed {seed}: {kills} kills over {round} rounds, every run resumed, every VM once");
}
