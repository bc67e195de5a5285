//! Draining a host of six guests to the two other hosts of one lab, three ways, every migration
//! capped at 64 MiB/s: `virsh migrate --live --p2p` one guest after another, the same in a
//! 2-wide sliding window of virsh processes, and `ferry migrate` of a drain plan with
//! `per_source = 2`. Prints each one's makespan, the sum of its migrations' job times, the bytes
//! sent and the worst downtime, medians over the repetitions, and the ratios of ferry's
//! makespan to the two others'. Then, on a second lab whose hosts' outbound links are really
//! shaped (`ferry lab up --link 32`, when this `ferry` has it), ferry's makespan against the
//! link bound: the bytes sent out of the drained host ÷ the link rate. For every ferry run,
//! ferry's own overhead per move from its journal: a slot freed (at a move's switch-over, when
//! its VM runs on the target) → the next migration started.
//!
//! Each migration costs 0.3–0.4 s here outside its copy job (connection, destination QEMU
//! start, prepare/finish): that is what concurrency can hide. (It was ~1.7 s, most of it
//! after the switch-over, while the lab's init reaped the source's QEMU ~1.5 s late; the
//! daemons now run under `tini`.) ferry gives a move's slot to the next one at its
//! switch-over; a virsh window cannot.
//!
//! `cargo bench -p ferry --bench drain_vs_virsh [-- REPS [a|b]]` (root, a machine set up by
//! `scripts/setup`; REPS runs of each contender, default 2; REPS = 1 took 6 minutes, 2 took 11-14
//! on a machine busy with other labs). Brings up its own labs (3 hosts, 6 guests of 256 MiB
//! dirtying 10 MiB/s; ports 24000, then 24500, one lab at a time) and tears them down, also
//! when it fails. Exits 1 when a move fails or `ferry lab check` finds a guest hurt after a
//! measured run.
//!
//! virsh does what ferry's driver does with the plan's default policy: `--live --p2p
//! --persistent --undefinesource --auto-converge`, and for a host-local disk a target volume of
//! the same name, size and format created beforehand, `--copy-storage-all` and a destination
//! XML naming it. Between measured runs (not measured) a ferry plan brings every guest back to
//! host-a.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "shared/lab.rs"]
mod lab;
#[path = "shared/stats.rs"]
mod stats;

use ferry_journal::{Attempt, Event, Journal, JournalConfig};
use ferry_model::{ClusterSpec, Status};
use lab::{ferry, ferry_env, read_cluster, run_window, text, uri_of, virsh, Inventory, VirshJob, Vm};
use stats::median;

/// The host being drained; the lab's guests are gathered on it before every measured run.
const DRAINED: &str = "host-a";
/// Lab shape: 3 hosts, 6 guests (odd-numbered ones on host-local disks, the others on the
/// shared NBD storage) of 256 MiB dirtying 10 MiB/s each.
const HOSTS: usize = 3;
const VMS: usize = 6;
const MEM_MIB: u64 = 256;
const DIRTY_MIB_S: u64 = 10;
/// Each migration's cap in (a), MiB/s: virsh's `--bandwidth`.
const CAP_MIB_S: u64 = 64;
/// The drain plan's outbound migrations per source.
const PER_SOURCE: usize = 2;
/// Every host's `link_mib_s` in the cluster file ferry gets in (a). ferry caps a migration at
/// min(source link ÷ the source's outbound migrations, target link ÷ the target's inbound
/// ones): with two migrations leaving host-a, 128 ÷ 2 = 64 MiB/s each, whether they go to one
/// target (128 ÷ 2 = 64 there too) or to two (128 ÷ 1). No cluster file can do better: once
/// the drain's last migration runs alone, its share of host-a's link is the whole 128, which
/// virsh never gets; the table says for how long that was.
const LINK_A_MIB_S: u64 = CAP_MIB_S * PER_SOURCE as u64;
/// Each host's shaped outbound link in (b), MiB/s. Low enough that the link, not the machine,
/// is the bottleneck: one TCG migration stream here moves about 53 MiB/s with no cap and no
/// shaping (`ferry move --bandwidth 1000` of a 256 MiB guest: 158.6 MiB in a 2.95 s job), so a
/// 64 MiB/s link would measure QEMU's CPU rather than ferry's use of the link.
const LINK_B_MIB_S: u64 = 32;
/// Port bases of the two labs. A 3-host lab listens on BASE..BASE+339 (`layout.rs`: libvirtd
/// at BASE+index, NBD at BASE+10, 80 migration ports per host from BASE+100), so 24500 does
/// not overlap 24000; the labs run one after the other anyway, the guests' CPU being scarce.
const PORTS_A: u16 = 24000;
const PORTS_B: u16 = 24500;

/// The plan under test, exactly as the issue gives it.
const DRAIN_PLAN: &str = "[plan]\nname = \"drain-a\"\n[limits]\ncluster = 4\nper_source = 2\nper_target = 2\n\
                          [[drain]]\nhost = \"host-a\"\nto = \"ANY\"\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(2).max(1);
    // `a` or `b` runs that part alone; both by default.
    let only = args.iter().find(|a| *a == "a" || *a == "b").cloned();
    if let Err(e) = run(reps, only.as_deref()) {
        eprintln!("drain_vs_virsh: {e}");
        std::process::exit(1);
    }
}

fn run(reps: usize, only: Option<&str>) -> Result<(), String> {
    let started = Instant::now();
    let capped = if only == Some("b") { None } else { Some(part_a(reps)?) };
    let linked = if only != Some("a") && lab_has_link() { Some(part_b(reps)?) } else { None };
    if let Some(capped) = &capped {
        print_a(reps, capped);
    }
    match &linked {
        Some(runs) => print_b(runs),
        None if only == Some("a") => {}
        None => println!("\n(b) not run: this ferry's `lab up` has no --link"),
    }
    println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The three contenders of (a). Repetitions run them in alternating order, so that a drift of
/// the machine does not favour one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Contender {
    VirshSequential,
    VirshWindow,
    Ferry,
}

impl Contender {
    const ALL: [Contender; 3] = [Contender::VirshSequential, Contender::VirshWindow, Contender::Ferry];

    fn label(self) -> &'static str {
        match self {
            Contender::VirshSequential => "virsh sequential",
            Contender::VirshWindow => "virsh 2-wide window",
            Contender::Ferry => "ferry per_source = 2",
        }
    }
}

/// The measured runs of (a), per contender.
#[derive(Default)]
struct Capped {
    runs: HashMap<&'static str, Vec<Drained>>,
    /// Guests with a host-local disk (copied with their memory), from the inventory.
    local_disks: usize,
}

fn part_a(reps: usize) -> Result<Capped, String> {
    let lab = Lab::up("bench-drain", PORTS_A, None)?;
    let cluster = lab.capped_cluster()?;
    lab.gather()?;
    // A fresh daemon's first incoming migrations are slower: one unmeasured drain warms
    // host-b and host-c for every contender.
    let warm = lab.ferry_drain(&cluster)?;
    println!("warm-up   ferry drain {:6.2} s", warm.makespan_s);
    let local_disks = lab.inventory()?.vms.iter().filter(|v| !v.local.is_empty()).count();
    let mut capped = Capped { local_disks, ..Capped::default() };
    for rep in 0..reps {
        let mut order = Contender::ALL;
        if rep % 2 == 1 {
            order.reverse();
        }
        for contender in order {
            lab.gather()?;
            let drained = match contender {
                Contender::VirshSequential => lab.virsh_drain(1)?,
                Contender::VirshWindow => lab.virsh_drain(2)?,
                Contender::Ferry => lab.ferry_drain(&cluster)?,
            };
            println!("rep {rep}  {:22} {}", contender.label(), drained.line());
            lab.check()?;
            capped.runs.entry(contender.label()).or_default().push(drained);
        }
    }
    Ok(capped)
}

fn part_b(reps: usize) -> Result<Vec<Drained>, String> {
    let lab = Lab::up("bench-drain-link", PORTS_B, Some(LINK_B_MIB_S))?;
    let cluster = lab.dir.join("cluster.toml");
    let spec = lab.cluster()?;
    if let Some(h) = spec.hosts.iter().find(|h| h.link_mib_s != Some(LINK_B_MIB_S)) {
        return Err(format!("lab cluster.toml gives {} link_mib_s {:?}, not {LINK_B_MIB_S}", h.name, h.link_mib_s));
    }
    lab.gather()?;
    let warm = lab.ferry_drain(&cluster)?;
    println!("warm-up   ferry drain, links {LINK_B_MIB_S} MiB/s {:6.2} s", warm.makespan_s);
    let mut runs = Vec::new();
    for rep in 0..reps {
        lab.gather()?;
        let drained = lab.ferry_drain(&cluster)?;
        println!(
            "rep {rep}  ferry, links {LINK_B_MIB_S} MiB/s    {}  link bound {:6.2} s",
            drained.line(),
            link_bound_s(&drained)
        );
        lab.check()?;
        runs.push(drained);
    }
    Ok(runs)
}

fn print_a(reps: usize, capped: &Capped) {
    println!();
    println!(
        "(a) drain of {DRAINED}: {VMS} guests of {MEM_MIB} MiB dirtying {DIRTY_MIB_S} MiB/s ({} on host-local disks, copied) to the \
         two other hosts, every migration capped at {CAP_MIB_S} MiB/s; medians of {reps} runs",
        capped.local_disks
    );
    println!(
        "{:22} | {:>10} | {:>8} | {:>9} | {:>17} | {:>16} | {:>13}",
        "contender", "makespan s", "jobs s", "sent MiB", "worst downtime ms", "copy MiB/s range", "outside job s"
    );
    let mut makespans = HashMap::new();
    for contender in Contender::ALL {
        let Some(runs) = capped.runs.get(contender.label()) else { continue };
        let makespan = median(runs.iter().map(|r| r.makespan_s));
        makespans.insert(contender, makespan);
        let jobs = median(runs.iter().map(|r| r.jobs_s()));
        let sent = median(runs.iter().map(|r| r.sent_mib()));
        let downtime = runs.iter().filter_map(Drained::worst_downtime_ms).max();
        let rates: Vec<f64> = runs.iter().flat_map(|r| r.moves.iter().filter_map(Move::copy_mib_s)).collect();
        let outside = median(runs.iter().flat_map(|r| r.moves.iter().filter_map(Move::outside_job_s)));
        println!(
            "{:22} | {makespan:>10.2} | {jobs:>8.2} | {sent:>9.1} | {:>17} | {:>16} | {outside:>13.2}",
            contender.label(),
            downtime.map_or("unknown".to_string(), |d| d.to_string()),
            range(&rates)
        );
    }
    if let (Some(f), Some(s), Some(w)) = (
        makespans.get(&Contender::Ferry),
        makespans.get(&Contender::VirshSequential),
        makespans.get(&Contender::VirshWindow),
    ) {
        println!("ratio ferry / virsh sequential  {:.3}  (goal <= 0.55)", f / s);
        println!("ratio ferry / virsh window      {:.3}  (goal <= 1.0)", f / w);
    }
    if let Some(runs) = capped.runs.get(Contender::Ferry.label()) {
        let span = median(runs.iter().filter_map(|r| r.journal_span_s));
        let alone = median(runs.iter().filter_map(|r| r.alone_s));
        println!(
            "ferry: makespan is the `ferry migrate` process (inventory, preview, journal included); first migration start to \
             last end in the journal {span:.2} s; one migration alone holding a slot (its cap then {LINK_A_MIB_S} MiB/s) {alone:.2} s"
        );
        print_overheads(runs);
    }
    println!(
        "makespan: wall time of the whole drain; jobs s: sum of the migrations' hypervisor job times; sent: libvirt's data \
         processed; copy MiB/s: sent ÷ job time per migration, min–max; worst downtime over all runs; outside job: a move's wall time \
         minus its job time, median over moves (virsh: its vol-create-as, dumpxml and migrate processes)"
    );
}

fn print_b(runs: &[Drained]) {
    println!();
    println!(
        "(b) the same drain by ferry with every host's outbound link shaped to {LINK_B_MIB_S} MiB/s and shared by all its \
         migrations (`ferry lab up --link {LINK_B_MIB_S}`; the cluster file says link_mib_s = {LINK_B_MIB_S}); {} runs",
        runs.len()
    );
    println!(
        "{:>4} | {:>10} | {:>9} | {:>12} | {:>18} | {:>7}",
        "run", "makespan s", "sent MiB", "link bound s", "makespan / bound", "span / bound"
    );
    for (i, r) in runs.iter().enumerate() {
        let bound = link_bound_s(r);
        println!(
            "{i:>4} | {:>10.2} | {:>9.1} | {bound:>12.2} | {:>18.3} | {:>7.3}",
            r.makespan_s,
            r.sent_mib(),
            r.makespan_s / bound,
            r.journal_span_s.unwrap_or(f64::NAN) / bound
        );
    }
    let ratio = median(runs.iter().map(|r| r.makespan_s / link_bound_s(r)));
    let span = median(runs.iter().filter_map(|r| r.journal_span_s.map(|s| s / link_bound_s(r))));
    println!("median makespan / link bound  {ratio:.3}  (goal <= 1.2); first start to last end in the journal / bound {span:.3}");
    let rates: Vec<f64> = runs.iter().flat_map(|r| r.moves.iter().filter_map(Move::copy_mib_s)).collect();
    let outside = median(runs.iter().flat_map(|r| r.moves.iter().filter_map(Move::outside_job_s)));
    println!(
        "copy MiB/s per migration {} (ferry's caps: shares of {LINK_B_MIB_S} among the migrations sending from {DRAINED}, filling the links); outside job per move, median \
         {outside:.2} s; worst downtime {} ms",
        range(&rates),
        runs.iter().filter_map(Drained::worst_downtime_ms).max().map_or("unknown".to_string(), |d| d.to_string())
    );
    println!("link bound: bytes sent out of {DRAINED} (libvirt's data processed) ÷ {LINK_B_MIB_S} MiB/s");
    print_overheads(runs);
}

fn print_overheads(runs: &[Drained]) {
    let gaps: Vec<f64> = runs.iter().flat_map(|r| r.overheads_ms.iter().copied()).collect();
    if gaps.is_empty() {
        println!("ferry overhead per move: no move waited for a slot");
        return;
    }
    let max = gaps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "ferry overhead per move (journal: a move's switch-over freeing a slot → the next migration from that source started), \
         {} moves: median {:.0} ms, max {max:.0} ms  (goal: median < 20 ms)",
        gaps.len(),
        median(&gaps)
    );
}

/// The link bound of a drain: its bytes through the drained host's shaped link at full rate.
fn link_bound_s(drained: &Drained) -> f64 {
    drained.sent_mib() / LINK_B_MIB_S as f64
}

/// One drain as measured.
struct Drained {
    /// Wall time of the whole drain, s.
    makespan_s: f64,
    /// One per guest.
    moves: Vec<Move>,
    /// ferry: first migration start to last end in the journal, s.
    journal_span_s: Option<f64>,
    /// ferry: time with exactly one migration in flight after the first started, s.
    alone_s: Option<f64>,
    /// ferry: for each move that took a slot freed by an earlier one, the gap, ms.
    overheads_ms: Vec<f64>,
}

/// One guest's migration.
struct Move {
    vm: String,
    to: String,
    /// The whole move: ferry's attempt; virsh's volume creation, XML and migrate processes.
    wall_ms: Option<u64>,
    job_ms: Option<u64>,
    bytes: Option<u64>,
    downtime_ms: Option<u64>,
}

impl Move {
    fn copy_mib_s(&self) -> Option<f64> {
        let (bytes, job) = (self.bytes?, self.job_ms?);
        (job > 0).then(|| bytes as f64 / 1048576.0 / (job as f64 / 1000.0))
    }

    /// What the move costs outside its copy job, s.
    fn outside_job_s(&self) -> Option<f64> {
        Some((self.wall_ms? as f64 - self.job_ms? as f64) / 1000.0)
    }
}

impl Drained {
    fn jobs_s(&self) -> f64 {
        self.moves.iter().filter_map(|m| m.job_ms).sum::<u64>() as f64 / 1000.0
    }

    fn sent_mib(&self) -> f64 {
        self.moves.iter().filter_map(|m| m.bytes).sum::<u64>() as f64 / 1048576.0
    }

    fn worst_downtime_ms(&self) -> Option<u64> {
        self.moves.iter().filter_map(|m| m.downtime_ms).max()
    }

    fn line(&self) -> String {
        let mut targets: Vec<String> = Vec::new();
        for host in ["host-b", "host-c"] {
            let vms: Vec<&str> = self.moves.iter().filter(|m| m.to == host).map(|m| m.vm.as_str()).collect();
            if !vms.is_empty() {
                targets.push(format!("{host}: {}", vms.join(" ")));
            }
        }
        format!(
            "makespan {:6.2} s  jobs {:6.2} s  sent {:6.1} MiB  worst downtime {:>4} ms  ({})",
            self.makespan_s,
            self.jobs_s(),
            self.sent_mib(),
            self.worst_downtime_ms().map_or("?".to_string(), |d| d.to_string()),
            targets.join("; ")
        )
    }
}

/// A lab owned by the bench: `lab down --purge` on drop, also when the bench fails.
struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn up(name: &str, port_base: u16, link: Option<u64>) -> Result<Lab, String> {
        let lab = Lab { dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name) };
        let _ = ferry(&["lab", "down", "--purge", "--dir", lab.dir_str()]);
        let (hosts, vms, mem, dirty, port) =
            (HOSTS.to_string(), VMS.to_string(), MEM_MIB.to_string(), DIRTY_MIB_S.to_string(), port_base.to_string());
        let mut args = vec![
            "lab",
            "up",
            "--dir",
            lab.dir_str(),
            "--hosts",
            &hosts,
            "--vms",
            &vms,
            "--mem",
            &mem,
            "--dirty",
            &dirty,
            "--port-base",
            &port,
            // Plain streams: virsh's plain migrate would be refused by a TLS lab.
            "--transport",
            "tcp",
        ];
        let link = link.map(|l| l.to_string());
        if let Some(link) = &link {
            args.extend(["--link", link]);
        }
        let out = ferry(&args);
        if !out.status.success() {
            return Err(format!("lab up: {}\n{}", text(&out.stdout), text(&out.stderr)));
        }
        Ok(lab)
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("the target directory is UTF-8")
    }

    fn journal(&self) -> PathBuf {
        self.dir.join("journal.db")
    }

    /// The lab's own cluster file, as ferry reads it.
    fn cluster(&self) -> Result<ClusterSpec, String> {
        read_cluster(&self.dir.join("cluster.toml"))
    }

    /// A copy of the lab's cluster file with every host's link at [`LINK_A_MIB_S`].
    fn capped_cluster(&self) -> Result<PathBuf, String> {
        let original =
            std::fs::read_to_string(self.dir.join("cluster.toml")).map_err(|e| format!("cluster.toml: {e}"))?;
        let capped: String = original
            .lines()
            .map(|l| if l.starts_with("link_mib_s") { format!("link_mib_s = {LINK_A_MIB_S}") } else { l.to_string() })
            .map(|l| l + "\n")
            .collect();
        let path = self.dir.join(format!("cluster-link-{LINK_A_MIB_S}.toml"));
        std::fs::write(&path, capped).map_err(|e| format!("{}: {e}", path.display()))?;
        let spec = read_cluster(&path)?;
        if spec.hosts.len() != HOSTS || spec.hosts.iter().any(|h| h.link_mib_s != Some(LINK_A_MIB_S)) {
            return Err(format!("{}: not every host has link_mib_s = {LINK_A_MIB_S}", path.display()));
        }
        Ok(path)
    }

    fn inventory(&self) -> Result<Inventory, String> {
        let out = ferry(&["inventory", "--cluster", &format!("{}/cluster.toml", self.dir_str()), "--output", "json"]);
        if !out.status.success() {
            return Err(format!("inventory: {}", text(&out.stderr)));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("inventory prints no JSON: {e}"))?;
        Inventory::from_json(&json)
    }

    /// Brings every guest back to [`DRAINED`] with a ferry plan (not measured).
    fn gather(&self) -> Result<(), String> {
        let inventory = self.inventory()?;
        let cluster = self.cluster()?;
        let away: Vec<&Vm> = inventory.vms.iter().filter(|v| v.host != DRAINED).collect();
        if away.is_empty() {
            return Ok(());
        }
        // A drain leaves the drained host's copy of each host-local disk behind (neither
        // ferry's default policy nor virsh deletes it), and ferry never overwrites a volume:
        // those stale copies go first. The gather itself deletes what it leaves behind.
        let uri = uri_of(&cluster, DRAINED)?;
        for vm in &away {
            for disk in &vm.local {
                if virsh(&uri, &["vol-info", "--pool", &disk.pool, &disk.volume]).is_ok() {
                    virsh(&uri, &["vol-delete", "--pool", &disk.pool, &disk.volume])?;
                }
            }
        }
        let mut plan = String::from(
            "[plan]\nname = \"gather\"\n[limits]\ncluster = 4\nper_source = 2\nper_target = 4\n[policy]\ndelete_source_volumes = true\n",
        );
        for vm in &away {
            plan.push_str(&format!("[[move]]\nvm = \"{}\"\nto = \"{DRAINED}\"\n", vm.name));
        }
        let path = self.dir.join("gather.toml");
        std::fs::write(&path, plan).map_err(|e| format!("{}: {e}", path.display()))?;
        let cluster_file = self.dir.join("cluster.toml");
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("migrate")
            .arg(&path)
            .arg("--cluster")
            .arg(&cluster_file)
            .arg("--state")
            .arg(self.journal())
            .envs(ferry_env("error"))
            .output()
            .map_err(|e| format!("ferry: {e}"))?;
        if !out.status.success() {
            return Err(format!("gathering on {DRAINED} failed:\n{}{}", text(&out.stdout), text(&out.stderr)));
        }
        let stray: Vec<String> = self
            .inventory()?
            .vms
            .iter()
            .filter(|v| v.host != DRAINED)
            .map(|v| format!("{} on {}", v.name, v.host))
            .collect();
        if !stray.is_empty() {
            return Err(format!("after gathering: {}", stray.join(", ")));
        }
        Ok(())
    }

    /// `ferry migrate` of [`DRAIN_PLAN`] with `cluster`, timed, and its figures from the
    /// journal.
    fn ferry_drain(&self, cluster: &Path) -> Result<Drained, String> {
        let plan = self.dir.join("drain.toml");
        std::fs::write(&plan, DRAIN_PLAN).map_err(|e| format!("{}: {e}", plan.display()))?;
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("migrate")
            .arg(&plan)
            .arg("--cluster")
            .arg(cluster)
            .arg("--state")
            .arg(self.journal())
            .envs(ferry_env("warn"))
            .output()
            .map_err(|e| format!("ferry: {e}"))?;
        let makespan_s = started.elapsed().as_secs_f64();
        let stdout = text(&out.stdout);
        // What ferry logs at warn or above is worth seeing next to the figures.
        for line in text(&out.stderr).lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
            println!("          ferry said: {line}");
        }
        if !out.status.success() {
            return Err(format!("ferry migrate exited {}:\n{stdout}{}", out.status, text(&out.stderr)));
        }
        let run = stdout
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("run "))
            .ok_or_else(|| format!("ferry migrate printed no run id first: {stdout}"))?
            .trim()
            .to_string();
        let (moves, attempts, events) = read_journal(&self.journal(), &run)?;
        let mut last_end = 0;
        if moves.len() != VMS {
            return Err(format!("run {run}: {} moves in the journal, expected {VMS}", moves.len()));
        }
        let source: HashMap<&str, &str> = moves.iter().map(|m| (m.uuid.as_str(), m.source.as_str())).collect();
        let name: HashMap<&str, &str> = moves.iter().map(|m| (m.uuid.as_str(), m.vm.as_str())).collect();
        let mut measured = Vec::new();
        let mut spans = Vec::new();
        for m in &moves {
            if m.status != Status::Success {
                return Err(format!("run {run}: {} ended {} ({})", m.vm, m.status, m.message));
            }
        }
        for a in &attempts {
            let ended =
                a.ended_ms.ok_or_else(|| format!("run {run}: an attempt of {} has no end", name[a.uuid.as_str()]))?;
            if a.outcome != Some(Status::Success) {
                return Err(format!(
                    "run {run}: {} attempt {} ended {:?}: {}",
                    name[a.uuid.as_str()],
                    a.number,
                    a.outcome,
                    a.message
                ));
            }
            // A move holds its slot until its switch-over: the source's teardown that follows
            // overlaps the next migration.
            let freed = a.slot_freed_ms(&events).unwrap_or(ended);
            spans.push((source[a.uuid.as_str()].to_string(), a.started_ms, freed));
            last_end = last_end.max(ended);
            measured.push(Move {
                vm: name[a.uuid.as_str()].to_string(),
                to: a.target.clone(),
                wall_ms: a.wall_ms,
                job_ms: a.job_ms,
                bytes: a.bytes,
                downtime_ms: a.downtime_ms,
            });
        }
        if measured.len() != VMS {
            return Err(format!("run {run}: {} attempts for {VMS} moves (retries?)", measured.len()));
        }
        measured.sort_by(|a, b| a.vm.cmp(&b.vm));
        let first = spans.iter().map(|s| s.1).min().unwrap_or(0);
        // The preview's makespan, as the run kept it: the report's estimate.
        let report = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["report", &run, "--format", "json", "--state"])
            .arg(self.journal())
            .output()
            .map_err(|e| format!("ferry report: {e}"))?;
        let report: serde_json::Value = serde_json::from_slice(&report.stdout).map_err(|e| format!("report: {e}"))?;
        let span_s = (last_end - first) as f64 / 1000.0;
        if let Some(estimated) = report["planned"]["estimated_makespan_ms"].as_f64() {
            let estimated = estimated / 1000.0;
            println!(
                "          preview said {estimated:.1} s; first start to last end {span_s:.1} s ({:+.0} %)",
                (estimated / span_s - 1.0) * 100.0
            );
        }
        Ok(Drained {
            makespan_s,
            moves: measured,
            journal_span_s: Some(span_s),
            alone_s: Some(alone_s(&spans)),
            overheads_ms: slot_overheads(&spans, PER_SOURCE),
        })
    }

    /// Every guest of [`DRAINED`] moved by `virsh migrate`, `width` at a time (a sliding
    /// window: each process that ends starts the next), alternating between the two other
    /// hosts, doing what ferry's driver does: the same flags, and for a host-local disk a
    /// target volume of the same name, size and format created beforehand and a destination
    /// XML naming it.
    fn virsh_drain(&self, width: usize) -> Result<Drained, String> {
        let inventory = self.inventory()?;
        let cluster = self.cluster()?;
        let targets: Vec<&str> = cluster.hosts.iter().map(|h| h.name.as_str()).filter(|h| *h != DRAINED).collect();
        let jobs = inventory
            .guests_on(DRAINED)
            .into_iter()
            .enumerate()
            .map(|(i, vm)| {
                VirshJob::new(&inventory, &cluster, vm, targets[i % targets.len()], &self.dir, Some(CAP_MIB_S))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if jobs.len() != VMS {
            return Err(format!("{} guests on {DRAINED}, expected {VMS}", jobs.len()));
        }

        let started = Instant::now();
        let (walls, failures) = run_window(&jobs, width);
        let makespan_s = started.elapsed().as_secs_f64();
        if !failures.is_empty() {
            return Err(format!("virsh drain, {width} at a time: {}", failures.join("; ")));
        }
        // Figures of each finished job, kept by the target; read after the clock stopped.
        let mut moves = Vec::new();
        for job in &jobs {
            let stats = virsh(&job.to_uri, &["domjobinfo", &job.vm, "--completed", "--rawstats"])?;
            let stat = |key: &str| {
                stats.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':')?.trim().parse::<u64>().ok())
            };
            moves.push(Move {
                vm: job.vm.clone(),
                to: job.to.clone(),
                wall_ms: walls.get(job.vm.as_str()).copied(),
                job_ms: stat("time_elapsed"),
                bytes: stat("data_processed"),
                downtime_ms: stat("downtime"),
            });
        }
        Ok(Drained { makespan_s, moves, journal_span_s: None, alone_s: None, overheads_ms: Vec::new() })
    }

    /// `ferry lab check`: every guest alive, its memory and disk intact.
    fn check(&self) -> Result<(), String> {
        let out = ferry(&["lab", "check", "--dir", self.dir_str()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("lab check ({}) FAILED:\n{}{}", self.dir_str(), text(&out.stdout), text(&out.stderr)))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = ferry(&["lab", "down", "--purge", "--dir", self.dir_str()]);
    }
}

/// One guest's virsh migration.
/// For each move that took a slot freed by an earlier move from the same source: its start
/// minus the switch-over (or end) that freed the slot, ms. With `per_source` slots, the k-th start from a
/// source (k >= per_source, in start order) takes the slot of its (k - per_source)-th end.
fn slot_overheads(spans: &[(String, i64, i64)], per_source: usize) -> Vec<f64> {
    let mut by_source: HashMap<&str, (Vec<i64>, Vec<i64>)> = HashMap::new();
    for (source, start, end) in spans {
        let entry = by_source.entry(source).or_default();
        entry.0.push(*start);
        entry.1.push(*end);
    }
    let mut gaps = Vec::new();
    for (mut starts, mut ends) in by_source.into_values() {
        starts.sort_unstable();
        ends.sort_unstable();
        for k in per_source..starts.len() {
            gaps.push((starts[k] - ends[k - per_source]) as f64);
        }
    }
    gaps
}

/// Time with exactly one migration in flight, from the first start to the last end, s.
fn alone_s(spans: &[(String, i64, i64)]) -> f64 {
    let mut edges: Vec<(i64, i32)> = spans.iter().flat_map(|s| [(s.1, 1), (s.2, -1)]).collect();
    // Ends before starts at the same instant: a slot handed over is never counted as alone.
    edges.sort_unstable();
    let (mut in_flight, mut alone_ms, mut since) = (0, 0, 0);
    for (at, delta) in edges {
        if in_flight == 1 {
            alone_ms += at - since;
        }
        in_flight += delta;
        since = at;
    }
    alone_ms as f64 / 1000.0
}

/// A run's moves, attempts and events, from its journal.
type RunRecords = (Vec<ferry_journal::Move>, Vec<Attempt>, Vec<Event>);

fn read_journal(path: &Path, run: &str) -> Result<RunRecords, String> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("tokio: {e}"))?;
    runtime.block_on(async {
        let journal = Journal::open_path(path, &JournalConfig::default()).await.map_err(|e| format!("journal: {e}"))?;
        let moves = journal.moves(run).await.map_err(|e| format!("journal: {e}"))?;
        let attempts = journal.attempts(run).await.map_err(|e| format!("journal: {e}"))?;
        let events = journal.events(run, None).await.map_err(|e| format!("journal: {e}"))?;
        journal.close().await;
        Ok((moves, attempts, events))
    })
}

/// Whether this ferry's `lab up` can shape links.
fn lab_has_link() -> bool {
    text(&ferry(&["lab", "up", "--help"]).stdout).contains("--link")
}

fn range(values: &[f64]) -> String {
    if values.is_empty() {
        return "unknown".to_string();
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.0}–{hi:.0}")
}
