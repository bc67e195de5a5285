//! How the migration stream's transport changes a drain over a slow link: one host of guests
//! drained to the other across links shaped to 32 MiB/s (`ferry lab up --link 32`), by `virsh
//! migrate` plain and by ferry plain, with multifd + zstd, with TLS, with TLS + zstd, and with
//! `[policy] transport = "auto"`. Prints one table: per contender the makespan, the bytes that
//! crossed the drained host's link (its interface's counter, beside libvirt's figure and the
//! guest memory carried), the worst downtime, the CPU used, and the time each move spent
//! outside its hypervisor job; then the goals: zstd ≤ 0.6 × the plain link bound, TLS ≤ 1.15 ×
//! plain, ferry's time outside the job per move ≤ virsh's.
//!
//! Two labs, one after the other on port base 25500, identical but for `--transport`: a TLS
//! lab's QEMU refuses plaintext migration streams (`migrate_tls_force = 1`, as on a hardened
//! fleet; tests/transport.rs shows a plain `virsh migrate` refused there) and a plain lab's
//! has no certificates for TLS ones. So the plaintext contenders (virsh, ferry plain, ferry
//! zstd) run on a `--transport tcp` lab and the TLS ones on a `--transport tls` lab; `auto`
//! runs on both, since what it may choose depends on what the hosts allow.
//!
//! Each lab: 2 hosts with their links shaped to 32 MiB/s, 6 guests of 256 MiB with the
//! default dirty rate (2 MiB/s) and memory mix (25:50:25), every even-numbered guest on a
//! host-local disk (16 MiB, copied with the memory), the others on the shared NBD storage.
//! Every guest is gathered on host-a, then one unmeasured ferry drain of host-a warms host-b's
//! first incoming migrations (a fresh daemon's are slower); after that each contender drains
//! whichever host holds all the guests to the other one, so every contender moves the same
//! guests the same distance, only in alternating directions over identically shaped links.
//! Before each drain (not measured) the copies of host-local disks an earlier drain left on
//! the target are deleted: ferry never overwrites a volume, and virsh needs the name free.
//!
//! Concurrency is the same for all: ferry's plan says `per_source = 2`, virsh runs a 2-wide
//! sliding window of `virsh migrate --live --p2p --persistent --undefinesource
//! --auto-converge` processes (what ferry's driver asks for with the default policy; for a
//! host-local disk a target volume created beforehand, `--copy-storage-all` and a
//! destination XML naming it, as in drain_vs_virsh). virsh gets no `--bandwidth`: the shaped
//! link is the limit; ferry caps each migration at its share of `link_mib_s = 32`.
//!
//! Measured per contender: makespan, the wall time of the whole drain (ferry: the `ferry
//! migrate` process, preview and journal included; virsh: first process started to last
//! ended); link MiB, the drained host's `eth0` transmit counter in its network namespace (the
//! interface the lab shapes) before and after: migration streams, disk copies, NBD writes and
//! libvirt RPC replies alike; machine CPU s, the busy time of all CPUs in /proc/stat over the
//! drain (2 cores: at most 2 × makespan; other processes on the machine count too, so run it on
//! a quiet machine); QEMU CPU s, the CPU time of the lab's QEMU processes (those in its hosts'
//! network namespaces: guests' vCPUs and migration threads, source and target), sampled every
//! 50 ms (a process that exits loses at most its last 50 ms); the guests' idle rate is printed
//! per lab. Outside job per move: a move's wall time minus its hypervisor job time (ferry:
//! its journaled attempt; virsh: its vol-create-as, dumpxml and migrate processes), median
//! over moves, as in drain_vs_virsh: it is the connection and set-up cost that ferry's
//! connection reuse should cut. The plaintext lab ends with moves alone: one guest on shared
//! storage moved back and forth, by ferry and by virsh in turn, the same figure per move
//! with nothing running beside it.
//!
//! `cargo bench -p ferry --bench transport [-- [REPS] [--quick]]` (root, a machine set up by
//! `scripts/setup`; REPS rounds of every contender, medians shown, default 1; `--quick`: 2
//! guests of 128 MiB, for trying it out). Brings up its labs (port base 25500, directories
//! under the target dir) and tears them down, also when it fails. Every contender ends with
//! `ferry lab check`; the bench exits 1 when a contender failed or a check found a guest hurt
//! (an `auto` that the plan parser refuses is printed as not available and is no failure).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "shared/lab.rs"]
mod lab;
#[path = "shared/stats.rs"]
mod stats;

use ferry_journal::{Attempt, Journal, JournalConfig};
use ferry_model::{ClusterSpec, Status};
use lab::{ferry, ferry_env, read_cluster, run_window, text, uri_of, virsh, Inventory, VirshJob, Vm};
use stats::median;

/// Every lab's port base; the two labs run one after the other.
const PORT_BASE: u16 = 25500;
/// Each host's shaped outbound link, MiB/s.
const LINK_MIB_S: u64 = 32;
/// Two hosts: a drain of one is a move of every guest to the other.
const HOSTS: [&str; 2] = ["host-a", "host-b"];
/// Migrations at once: ferry's `per_source`, virsh's window.
const WIDTH: usize = 2;
/// multifd connections of the compressed contenders.
const CONNECTIONS: usize = 4;
/// How often the lab's QEMU processes' CPU time is sampled.
const SAMPLE: Duration = Duration::from_millis(50);
/// How long the guests' idle CPU rate is measured on each lab.
const IDLE: Duration = Duration::from_secs(5);
/// Moves alone of one guest by each of ferry and virsh, on the plaintext lab.
const LONE_MOVES: usize = 4;

/// Goals, from the issue.
const GOAL_ZSTD_OF_BOUND: f64 = 0.6;
const GOAL_TLS_OF_PLAIN: f64 = 1.15;
const GOAL_OUTSIDE_OF_VIRSH: f64 = 1.0;

#[derive(Debug, Clone, Copy)]
struct Shape {
    vms: usize,
    mem_mib: u64,
}

const FULL: Shape = Shape { vms: 6, mem_mib: 256 };
const QUICK: Shape = Shape { vms: 2, mem_mib: 128 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabKind {
    Tcp,
    Tls,
}

impl LabKind {
    fn transport(self) -> &'static str {
        match self {
            LabKind::Tcp => "tcp",
            LabKind::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Contender {
    VirshPlain,
    FerryPlain,
    FerryZstd,
    AutoTcp,
    FerryTls,
    FerryTlsZstd,
    AutoTls,
}

impl Contender {
    const ALL: [Contender; 7] = [
        Contender::VirshPlain,
        Contender::FerryPlain,
        Contender::FerryZstd,
        Contender::AutoTcp,
        Contender::FerryTls,
        Contender::FerryTlsZstd,
        Contender::AutoTls,
    ];

    fn label(self) -> &'static str {
        match self {
            Contender::VirshPlain => "virsh plain",
            Contender::FerryPlain => "ferry plain",
            Contender::FerryZstd => "ferry multifd 4 + zstd",
            Contender::AutoTcp | Contender::AutoTls => "ferry auto",
            Contender::FerryTls => "ferry TLS",
            Contender::FerryTlsZstd => "ferry TLS + multifd 4 + zstd",
        }
    }

    fn lab(self) -> LabKind {
        match self {
            Contender::VirshPlain | Contender::FerryPlain | Contender::FerryZstd | Contender::AutoTcp => LabKind::Tcp,
            Contender::FerryTls | Contender::FerryTlsZstd | Contender::AutoTls => LabKind::Tls,
        }
    }

    fn is_auto(self) -> bool {
        matches!(self, Contender::AutoTcp | Contender::AutoTls)
    }

    /// The `[policy]` lines of a ferry contender's plan; `None` for virsh.
    fn policy(self) -> Option<String> {
        let zstd = format!("parallel_connections = {CONNECTIONS}\ncompression = \"zstd\"\n");
        Some(match self {
            Contender::VirshPlain => return None,
            Contender::FerryPlain => "tls = false\n".to_string(),
            Contender::FerryZstd => format!("tls = false\n{zstd}"),
            Contender::FerryTls => "tls = true\n".to_string(),
            Contender::FerryTlsZstd => format!("tls = true\n{zstd}"),
            Contender::AutoTcp | Contender::AutoTls => "transport = \"auto\"\n".to_string(),
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1).max(1);
    let shape = if args.iter().any(|a| a == "--quick") { QUICK } else { FULL };
    let started = Instant::now();
    let mut results: Vec<(Contender, Vec<Outcome>)> = Contender::ALL.iter().map(|c| (*c, Vec::new())).collect();
    let mut labs = Vec::new();
    let mut fatal = Vec::new();
    for kind in [LabKind::Tcp, LabKind::Tls] {
        match run_lab(kind, shape, reps, &mut results) {
            Ok(info) => labs.push(info),
            Err(e) => {
                eprintln!("transport: {} lab: {e}", kind.transport());
                fatal.push(format!("{} lab: {e}", kind.transport()));
            }
        }
    }
    print_table(shape, reps, &labs, &results);
    for e in &fatal {
        println!("FAILED {e}");
    }
    println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
    let failed = results.iter().flat_map(|(_, o)| o).any(|o| matches!(o, Outcome::Failed(_)))
        || results.iter().flat_map(|(_, o)| o).any(|o| matches!(o, Outcome::Measured(m) if m.check.is_err()));
    if failed || !fatal.is_empty() {
        std::process::exit(1);
    }
}

/// What one lab's set-up measured.
struct LabInfo {
    kind: LabKind,
    /// The lab's QEMU processes' CPU while no migration runs, CPU-s per s.
    idle_qemu_cpu: f64,
    /// The unmeasured warm-up drain's makespan, s.
    warm_up_s: f64,
    /// Moves alone (plaintext lab only): each one's time outside its job, s.
    lone: Option<LoneMoves>,
}

/// One guest on shared storage moved alone, back and forth, by ferry and by virsh in turn.
struct LoneMoves {
    ferry_outside_s: Vec<f64>,
    virsh_outside_s: Vec<f64>,
}

fn run_lab(
    kind: LabKind,
    shape: Shape,
    reps: usize,
    results: &mut [(Contender, Vec<Outcome>)],
) -> Result<LabInfo, String> {
    let mut lab = Lab::up(kind, shape)?;
    let spec = lab.cluster()?;
    if let Some(h) = spec.hosts.iter().find(|h| h.link_mib_s != Some(LINK_MIB_S)) {
        return Err(format!("lab cluster.toml gives {} link_mib_s {:?}, not {LINK_MIB_S}", h.name, h.link_mib_s));
    }
    lab.gather(HOSTS[0])?;
    // One unmeasured drain warms the other host's first incoming migrations.
    // The default policy: TLS between TLS hosts, plaintext otherwise.
    let warm = match lab.drain(None, "")? {
        Outcome::Measured(m) => m,
        Outcome::NotAvailable(e) | Outcome::Failed(e) => return Err(format!("warm-up drain: {e}")),
    };
    println!("{} lab: warm-up ferry drain of {} {:6.2} s", kind.transport(), warm.drained, warm.makespan_s);
    warm.check.clone()?;
    let idle_qemu_cpu = lab.idle_qemu_cpu()?;
    println!("{} lab: guests idle: QEMU {idle_qemu_cpu:.2} CPU-s/s", kind.transport());
    let mut order: Vec<Contender> = Contender::ALL.iter().copied().filter(|c| c.lab() == kind).collect();
    for rep in 0..reps {
        if rep % 2 == 1 {
            order.reverse();
        }
        for &contender in &order {
            let outcome = match contender.policy() {
                None => lab.virsh_drain(),
                Some(policy) => lab.drain(Some(contender), &policy),
            }
            .unwrap_or_else(Outcome::Failed);
            println!("{} lab: rep {rep} {:28} {}", kind.transport(), contender.label(), outcome.line());
            let slot = results.iter_mut().find(|(c, _)| *c == contender).expect("every contender has a slot");
            slot.1.push(outcome);
        }
    }
    let lone = match kind {
        LabKind::Tcp => Some(lab.lone_moves(LONE_MOVES)?),
        LabKind::Tls => None,
    };
    Ok(LabInfo { kind, idle_qemu_cpu, warm_up_s: warm.makespan_s, lone })
}

/// One contender's drain.
enum Outcome {
    Measured(Measured),
    /// The plan was refused as bad input (exit 2): `auto` before ferry has it.
    NotAvailable(String),
    Failed(String),
}

impl Outcome {
    fn line(&self) -> String {
        match self {
            Outcome::Measured(m) => format!(
                "drained {} makespan {:6.2} s  link {:6.1} MiB  libvirt {:6.1} MiB  worst downtime {:>4} ms  check {}",
                m.drained,
                m.makespan_s,
                m.link_mib(),
                m.libvirt_mib(),
                m.worst_downtime_ms().map_or("?".to_string(), |d| d.to_string()),
                match &m.check {
                    Ok(()) => "passed".to_string(),
                    Err(e) => format!("FAILED: {e}"),
                }
            ),
            Outcome::NotAvailable(e) => format!("not available: {e}"),
            Outcome::Failed(e) => format!("FAILED: {e}"),
        }
    }
}

/// One drain as measured.
struct Measured {
    drained: String,
    makespan_s: f64,
    moves: Vec<Move>,
    /// Bytes out of the drained host's shaped interface during the drain.
    link_tx: u64,
    /// Busy time of all CPUs during the drain, s.
    machine_cpu_s: f64,
    /// CPU time of the lab's QEMU processes during the drain, s.
    qemu_cpu_s: f64,
    /// `ferry lab check` afterwards.
    check: Result<(), String>,
}

/// One guest's migration.
struct Move {
    /// The whole move: ferry's attempt; virsh's volume creation, XML and migrate processes.
    wall_ms: Option<u64>,
    job_ms: Option<u64>,
    /// libvirt's data processed.
    bytes: Option<u64>,
    /// Guest memory carried (normal pages), uncompressed.
    memory_bytes: Option<u64>,
    downtime_ms: Option<u64>,
}

impl Move {
    fn outside_job_s(&self) -> Option<f64> {
        Some((self.wall_ms? as f64 - self.job_ms? as f64) / 1000.0)
    }
}

impl Measured {
    fn link_mib(&self) -> f64 {
        self.link_tx as f64 / 1048576.0
    }

    fn libvirt_mib(&self) -> f64 {
        self.moves.iter().filter_map(|m| m.bytes).sum::<u64>() as f64 / 1048576.0
    }

    fn memory_mib(&self) -> Option<f64> {
        let known: Vec<u64> = self.moves.iter().filter_map(|m| m.memory_bytes).collect();
        (known.len() == self.moves.len()).then(|| known.iter().sum::<u64>() as f64 / 1048576.0)
    }

    fn worst_downtime_ms(&self) -> Option<u64> {
        self.moves.iter().filter_map(|m| m.downtime_ms).max()
    }
}

/// A contender's row: medians over its measured runs.
struct Row {
    makespan_s: f64,
    link_mib: f64,
    libvirt_mib: f64,
    memory_mib: Option<f64>,
    worst_downtime_ms: Option<u64>,
    machine_cpu_s: f64,
    qemu_cpu_s: f64,
    outside_s: f64,
    check: String,
    drained: String,
}

fn row_of(outcomes: &[Outcome]) -> Result<Row, String> {
    let measured: Vec<&Measured> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Measured(m) => Some(m),
            _ => None,
        })
        .collect();
    if let Some(reason) = outcomes.iter().find_map(|o| match o {
        Outcome::NotAvailable(e) => Some(format!("not available: {e}")),
        Outcome::Failed(e) => Some(format!("FAILED: {e}")),
        Outcome::Measured(_) => None,
    }) {
        return Err(reason);
    }
    if measured.is_empty() {
        return Err("not run".to_string());
    }
    let med = |f: &dyn Fn(&Measured) -> f64| median(measured.iter().map(|m| f(m)));
    let failed: Vec<&String> = measured.iter().filter_map(|m| m.check.as_ref().err()).collect();
    let mut drained: Vec<&str> = measured.iter().map(|m| m.drained.as_str()).collect();
    drained.dedup();
    Ok(Row {
        makespan_s: med(&|m| m.makespan_s),
        link_mib: med(&|m| m.link_mib()),
        libvirt_mib: med(&|m| m.libvirt_mib()),
        memory_mib: measured.iter().map(|m| m.memory_mib()).collect::<Option<Vec<f64>>>().map(median),
        worst_downtime_ms: measured.iter().filter_map(|m| m.worst_downtime_ms()).max(),
        machine_cpu_s: med(&|m| m.machine_cpu_s),
        qemu_cpu_s: med(&|m| m.qemu_cpu_s),
        outside_s: median(measured.iter().flat_map(|m| m.moves.iter().filter_map(Move::outside_job_s))),
        check: match failed.first() {
            None => "passed".to_string(),
            Some(e) => format!("FAILED: {}", first_line(e)),
        },
        drained: drained.join(","),
    })
}

fn print_table(shape: Shape, reps: usize, labs: &[LabInfo], results: &[(Contender, Vec<Outcome>)]) {
    println!();
    println!(
        "Drain of one host of {} guests of {} MiB (default dirty rate 2 MiB/s, memory mix 25:50:25; {} on 16 MiB host-local \
         disks, copied) to the other of 2 hosts, outbound links shaped to {LINK_MIB_S} MiB/s, {WIDTH} migrations at a time; \
         {}{reps} run(s) each, medians",
        shape.vms,
        shape.mem_mib,
        shape.vms.div_ceil(2),
        if shape.vms == QUICK.vms { "QUICK MODE; " } else { "" },
    );
    println!(
        "lab tcp: `ferry lab up --transport tcp --link {LINK_MIB_S}` (plaintext streams allowed); lab tls: `--transport tls` \
         (QEMU migrate_tls_force = 1: only TLS streams); same shape, port base {PORT_BASE}, one after the other"
    );
    println!(
        "{:28} | {:3} | {:13} | {:>8} | {:>9} | {:>9} | {:>9} | {:>8} | {:>9} | {:>8} | {:>10} | lab check",
        "contender",
        "lab",
        "drained",
        "makespan",
        "link MiB",
        "libvirt",
        "memory",
        "worst",
        "machine",
        "QEMU",
        "outside",
    );
    println!(
        "{:28} | {:3} | {:13} | {:>8} | {:>9} | {:>9} | {:>9} | {:>8} | {:>9} | {:>8} | {:>10} |",
        "", "", "", "s", "(counted)", "MiB", "MiB", "downtime", "CPU s", "CPU s", "job s/move"
    );
    let mut rows: HashMap<Contender, Row> = HashMap::new();
    for (contender, outcomes) in results {
        let lab = contender.lab().transport();
        match row_of(outcomes) {
            Ok(r) => {
                println!(
                    "{:28} | {lab:3} | {:13} | {:>8.2} | {:>9.1} | {:>9.1} | {:>9} | {:>8} | {:>9.1} | {:>8.1} | {:>10.2} | {}",
                    contender.label(),
                    r.drained,
                    r.makespan_s,
                    r.link_mib,
                    r.libvirt_mib,
                    r.memory_mib.map_or("?".to_string(), |m| format!("{m:.1}")),
                    r.worst_downtime_ms.map_or("?".to_string(), |d| format!("{d} ms")),
                    r.machine_cpu_s,
                    r.qemu_cpu_s,
                    r.outside_s,
                    r.check
                );
                rows.insert(*contender, r);
            }
            Err(reason) => println!("{:28} | {lab:3} | {}", contender.label(), first_line(&reason)),
        }
    }
    for lab in labs {
        println!(
            "lab {}: guests' QEMU processes use {:.2} CPU-s/s when idle; warm-up drain (not measured) {:.1} s",
            lab.kind.transport(),
            lab.idle_qemu_cpu,
            lab.warm_up_s
        );
    }
    println!(
        "link MiB: the drained host's eth0 tx counter in its namespace (everything that left it); libvirt MiB: data processed \
         summed over the migrations; memory MiB: guest memory carried, uncompressed (memory_normal_bytes); machine CPU: \
         /proc/stat busy time of both cores (anything else running counts too); QEMU CPU: the lab's QEMU processes (guests \
         and migration threads, both hosts); outside job: a move's wall time minus its hypervisor job time, median over moves"
    );

    println!("\nGoals");
    let plain = rows.get(&Contender::FerryPlain);
    match (plain, rows.get(&Contender::FerryZstd)) {
        (Some(p), Some(z)) => {
            let bound = p.link_mib / LINK_MIB_S as f64;
            let ratio = z.makespan_s / bound;
            println!(
                "zstd makespan / plain link bound   {:.3}  (goal <= {GOAL_ZSTD_OF_BOUND}) {}   bound: ferry plain's {:.1} MiB \
                 counted on the link / {LINK_MIB_S} MiB/s = {bound:.2} s; zstd took {:.2} s",
                ratio,
                mark(ratio <= GOAL_ZSTD_OF_BOUND),
                p.link_mib,
                z.makespan_s
            );
        }
        _ => println!("zstd makespan / plain link bound   not measured ✗ (ferry plain or ferry zstd has no figures)"),
    }
    match (plain, rows.get(&Contender::FerryTls)) {
        (Some(p), Some(t)) => {
            let ratio = t.makespan_s / p.makespan_s;
            println!(
                "TLS makespan / plain makespan      {ratio:.3}  (goal <= {GOAL_TLS_OF_PLAIN}) {}   {:.2} s on lab tls / {:.2} s on \
                 lab tcp",
                mark(ratio <= GOAL_TLS_OF_PLAIN),
                t.makespan_s,
                p.makespan_s
            );
        }
        _ => println!("TLS makespan / plain makespan      not measured ✗ (ferry plain or ferry TLS has no figures)"),
    }
    if let (Some(z), Some(tz)) = (rows.get(&Contender::FerryZstd), rows.get(&Contender::FerryTlsZstd)) {
        println!(
            "  (no goal) TLS + zstd / zstd        {:.3}   {:.2} s / {:.2} s",
            tz.makespan_s / z.makespan_s,
            tz.makespan_s,
            z.makespan_s
        );
    }
    match (plain, rows.get(&Contender::VirshPlain)) {
        (Some(p), Some(v)) => {
            let ratio = p.outside_s / v.outside_s;
            println!(
                "ferry / virsh outside job per move {ratio:.3}  (goal <= {GOAL_OUTSIDE_OF_VIRSH}) {}   ferry plain {:.2} s, virsh \
                 plain {:.2} s (medians over moves)",
                mark(ratio <= GOAL_OUTSIDE_OF_VIRSH),
                p.outside_s,
                v.outside_s
            );
        }
        _ => println!("ferry / virsh outside job per move not measured ✗ (ferry plain or virsh plain has no figures)"),
    }
    for lone in labs.iter().filter_map(|l| l.lone.as_ref()) {
        let (f, v) = (median(lone.ferry_outside_s.iter()), median(lone.virsh_outside_s.iter()));
        let list = |xs: &[f64]| xs.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
        println!(
            "  one move alone, outside job      {:.3}  (the same goal) {}   ferry {f:.2} s [{}], virsh {v:.2} s [{}]: one guest on \
             shared storage moved back and forth, {LONE_MOVES} moves each in turn, nothing else running",
            f / v,
            mark(f / v <= GOAL_OUTSIDE_OF_VIRSH),
            list(&lone.ferry_outside_s),
            list(&lone.virsh_outside_s),
        );
    }
}

fn mark(met: bool) -> &'static str {
    if met {
        "✓ met"
    } else {
        "✗ NOT MET"
    }
}

/// A lab owned by the bench: `lab down --purge` on drop, also when the bench fails.
struct Lab {
    dir: PathBuf,
    kind: LabKind,
    shape: Shape,
    /// The host holding every guest: the next drain's source.
    holder: &'static str,
}

impl Lab {
    fn up(kind: LabKind, shape: Shape) -> Result<Lab, String> {
        let name = format!("bench-transport-{}", kind.transport());
        let lab = Lab { dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name), kind, shape, holder: HOSTS[0] };
        let _ = ferry(&["lab", "down", "--purge", "--dir", lab.dir_str()]);
        let (vms, mem, port, link) =
            (shape.vms.to_string(), shape.mem_mib.to_string(), PORT_BASE.to_string(), LINK_MIB_S.to_string());
        let hosts = HOSTS.len().to_string();
        let args = [
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
            "--port-base",
            &port,
            "--link",
            &link,
            "--transport",
            kind.transport(),
        ];
        let started = Instant::now();
        let out = ferry(&args);
        if !out.status.success() {
            return Err(format!("lab up: {}\n{}", text(&out.stdout), text(&out.stderr)));
        }
        println!("{} lab: up in {:.0} s", kind.transport(), started.elapsed().as_secs_f64());
        Ok(lab)
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("the target directory is UTF-8")
    }

    fn journal(&self) -> PathBuf {
        self.dir.join("journal.db")
    }

    fn cluster_file(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    fn cluster(&self) -> Result<ClusterSpec, String> {
        read_cluster(&self.cluster_file())
    }

    /// A host's network namespace (`crates/lab/src/layout.rs`: `ferry-BASE-HOST`).
    fn namespace(host: &str) -> String {
        format!("ferry-{PORT_BASE}-{host}")
    }

    fn other(host: &str) -> &'static str {
        if host == HOSTS[0] {
            HOSTS[1]
        } else {
            HOSTS[0]
        }
    }

    fn inventory(&self) -> Result<Inventory, String> {
        let cluster = self.cluster_file();
        let out = ferry(&["inventory", "--cluster", cluster.to_str().unwrap_or_default(), "--output", "json"]);
        if !out.status.success() {
            return Err(format!("inventory: {}", text(&out.stderr)));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("inventory prints no JSON: {e}"))?;
        Inventory::from_json(&json)
    }

    /// Deletes on `host` every volume named like a host-local disk of a guest that runs
    /// elsewhere: the copies an earlier move away left behind (not measured).
    fn clean_stale(&self, host: &str, inventory: &Inventory) -> Result<(), String> {
        let uri = uri_of(&self.cluster()?, host)?;
        for vm in inventory.vms.iter().filter(|v| v.host != host) {
            for disk in &vm.local {
                if virsh(&uri, &["vol-info", "--pool", &disk.pool, &disk.volume]).is_ok() {
                    virsh(&uri, &["vol-delete", "--pool", &disk.pool, &disk.volume])?;
                }
            }
        }
        Ok(())
    }

    /// Brings every guest to `host` with a ferry plan (not measured).
    fn gather(&mut self, host: &'static str) -> Result<(), String> {
        let inventory = self.inventory()?;
        let away: Vec<&Vm> = inventory.vms.iter().filter(|v| v.host != host).collect();
        if !away.is_empty() {
            self.clean_stale(host, &inventory)?;
            let mut plan = String::from(
                "[plan]\nname = \"gather\"\n[limits]\ncluster = 4\nper_source = 2\nper_target = 4\n[policy]\n\
                 delete_source_volumes = true\n",
            );
            for vm in &away {
                plan.push_str(&format!("[[move]]\nvm = \"{}\"\nto = \"{host}\"\n", vm.name));
            }
            let out = self.migrate("gather.toml", &plan, "error")?;
            if !out.status.success() {
                return Err(format!("gathering on {host} failed:\n{}{}", text(&out.stdout), text(&out.stderr)));
            }
            let stray: Vec<String> = self
                .inventory()?
                .vms
                .iter()
                .filter(|v| v.host != host)
                .map(|v| format!("{} on {}", v.name, v.host))
                .collect();
            if !stray.is_empty() {
                return Err(format!("after gathering: {}", stray.join(", ")));
            }
        }
        if inventory.vms.len() != self.shape.vms {
            return Err(format!("{} guests in the inventory, expected {}", inventory.vms.len(), self.shape.vms));
        }
        self.holder = host;
        Ok(())
    }

    /// Gets the next drain ready: every guest on [`Lab::holder`], no stale copy on the other host.
    fn prepare(&mut self) -> Result<(&'static str, &'static str), String> {
        let from = self.holder;
        self.gather(from)?;
        let to = Lab::other(from);
        self.clean_stale(to, &self.inventory()?)?;
        Ok((from, to))
    }

    /// `ferry migrate PLAN --cluster LAB --state LAB/journal.db`.
    fn migrate(&self, file: &str, plan: &str, log: &str) -> Result<Output, String> {
        let path = self.dir.join(file);
        std::fs::write(&path, plan).map_err(|e| format!("{}: {e}", path.display()))?;
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("migrate")
            .arg(&path)
            .arg("--cluster")
            .arg(self.cluster_file())
            .arg("--state")
            .arg(self.journal())
            .envs(ferry_env(log))
            .output()
            .map_err(|e| format!("ferry: {e}"))
    }

    /// A ferry drain of the holder with `policy`, measured. `contender` `None`: the warm-up.
    fn drain(&mut self, contender: Option<Contender>, policy: &str) -> Result<Outcome, String> {
        let (from, _) = self.prepare()?;
        let plan = format!(
            "[plan]\nname = \"transport-drain\"\n[limits]\ncluster = 4\nper_source = {WIDTH}\nper_target = {WIDTH}\n\
             [policy]\n{policy}[[drain]]\nhost = \"{from}\"\nto = \"ANY\"\n"
        );
        let meter = Meter::start(from)?;
        let started = Instant::now();
        let out = self.migrate("drain.toml", &plan, "warn")?;
        let makespan_s = started.elapsed().as_secs_f64();
        let (link_tx, machine_cpu_s, qemu_cpu_s) = meter.stop()?;
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        if out.status.code() == Some(2) && contender.is_some_and(Contender::is_auto) {
            // Bad input, nothing started: this ferry does not know the key yet.
            let reason =
                stderr.lines().chain(stdout.lines()).map(str::trim).find(|l| !l.is_empty()).unwrap_or("exit 2");
            return Ok(Outcome::NotAvailable(reason.to_string()));
        }
        for line in stderr.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
            println!("          ferry said: {line}");
        }
        let run = stdout.lines().next().and_then(|l| l.strip_prefix("run ")).map(|r| r.trim().to_string());
        if !out.status.success() {
            // The guests may be split now; the next prepare gathers them back.
            return Ok(Outcome::Failed(format!(
                "ferry migrate exited {}: {}",
                out.status,
                first_line(
                    &format!("{stdout}{stderr}")
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .collect::<Vec<_>>()
                        .join(" | ")
                )
            )));
        }
        let run = run.ok_or_else(|| format!("ferry migrate printed no run id first: {stdout}"))?;
        let moves = self.journal_moves(&run)?;
        self.holder = Lab::other(from);
        let check = self.check();
        Ok(Outcome::Measured(Measured {
            drained: from.to_string(),
            makespan_s,
            moves,
            link_tx,
            machine_cpu_s,
            qemu_cpu_s,
            check,
        }))
    }

    /// A finished ferry run's moves, from its journal; an error unless every move succeeded
    /// at its first attempt.
    fn journal_moves(&self, run: &str) -> Result<Vec<Move>, String> {
        let (moves, attempts) = read_journal(&self.journal(), run)?;
        let name: HashMap<&str, &str> = moves.iter().map(|m| (m.uuid.as_str(), m.vm.as_str())).collect();
        if moves.len() != self.shape.vms {
            return Err(format!("run {run}: {} moves in the journal, expected {}", moves.len(), self.shape.vms));
        }
        if let Some(m) = moves.iter().find(|m| m.status != Status::Success) {
            return Err(format!("run {run}: {} ended {} ({})", m.vm, m.status, m.message));
        }
        if attempts.len() != moves.len() {
            return Err(format!("run {run}: {} attempts for {} moves (retries?)", attempts.len(), moves.len()));
        }
        attempts
            .iter()
            .map(|a: &Attempt| {
                if a.outcome != Some(Status::Success) {
                    return Err(format!(
                        "run {run}: {} attempt {} ended {:?}: {}",
                        name.get(a.uuid.as_str()).unwrap_or(&"?"),
                        a.number,
                        a.outcome,
                        a.message
                    ));
                }
                Ok(Move {
                    wall_ms: a.wall_ms,
                    job_ms: a.job_ms,
                    bytes: a.bytes,
                    memory_bytes: a.memory_bytes,
                    downtime_ms: a.downtime_ms,
                })
            })
            .collect()
    }

    /// Every guest of the holder moved by `virsh migrate`, [`WIDTH`] at a time (a sliding
    /// window: each process that ends starts the next), doing what ferry's driver does.
    fn virsh_drain(&mut self) -> Result<Outcome, String> {
        let (from, to) = self.prepare()?;
        let inventory = self.inventory()?;
        let cluster = self.cluster()?;
        let jobs = inventory
            .guests_on(from)
            .into_iter()
            .map(|vm| VirshJob::new(&inventory, &cluster, vm, to, &self.dir, None))
            .collect::<Result<Vec<_>, _>>()?;
        if jobs.len() != self.shape.vms {
            return Err(format!("{} guests on {from}, expected {}", jobs.len(), self.shape.vms));
        }

        let meter = Meter::start(from)?;
        let started = Instant::now();
        let (walls, failures) = run_window(&jobs, WIDTH);
        let makespan_s = started.elapsed().as_secs_f64();
        let (link_tx, machine_cpu_s, qemu_cpu_s) = meter.stop()?;
        if !failures.is_empty() {
            return Ok(Outcome::Failed(format!("virsh drain: {}", failures.join("; "))));
        }
        self.holder = to;
        // Figures of each finished job, kept by the target; read after the clock stopped.
        let mut moves = Vec::new();
        for job in &jobs {
            let stats = virsh(&job.to_uri, &["domjobinfo", &job.vm, "--completed", "--rawstats"])?;
            let stat = |key: &str| {
                stats.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':')?.trim().parse::<u64>().ok())
            };
            moves.push(Move {
                wall_ms: walls.get(job.vm.as_str()).copied(),
                job_ms: stat("time_elapsed"),
                bytes: stat("data_processed"),
                memory_bytes: stat("memory_normal_bytes"),
                downtime_ms: stat("downtime"),
            });
        }
        let check = self.check();
        Ok(Outcome::Measured(Measured {
            drained: from.to_string(),
            makespan_s,
            moves,
            link_tx,
            machine_cpu_s,
            qemu_cpu_s,
            check,
        }))
    }

    /// [`LoneMoves`]: `moves` by ferry and as many by virsh, alternating, one guest on shared
    /// storage to the other host and back. ferry's figure is its attempt's (`ferry move
    /// --output json`: wall and job time, as the journal keeps them for a drain); virsh's is
    /// its process's wall time, its connection included: what ferry's reuse saves.
    fn lone_moves(&mut self, moves: usize) -> Result<LoneMoves, String> {
        let cluster = self.cluster()?;
        let name = self
            .inventory()?
            .vms
            .iter()
            .find(|v| v.local.is_empty())
            .map(|v| v.name.clone())
            .ok_or("no guest on shared storage")?;
        let mut lone = LoneMoves { ferry_outside_s: Vec::new(), virsh_outside_s: Vec::new() };
        for _ in 0..moves {
            let inventory = self.inventory()?;
            let vm = inventory.vms.iter().find(|v| v.name == name).ok_or_else(|| format!("{name} is gone"))?;
            let out = ferry(&[
                "move",
                &name,
                "--to",
                Lab::other(&vm.host),
                "--no-tls",
                "--cluster",
                self.cluster_file().to_str().unwrap_or_default(),
                "--state",
                self.journal().to_str().unwrap_or_default(),
                "--output",
                "json",
            ]);
            if !out.status.success() {
                return Err(format!("ferry move {name}: {}{}", text(&out.stdout), text(&out.stderr)));
            }
            let json: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("ferry move prints no JSON: {e}"))?;
            let (Some(wall), Some(job)) = (json["wall_ms"].as_u64(), json["job_ms"].as_u64()) else {
                return Err(format!("ferry move {name}: no wall_ms or job_ms in {json}"));
            };
            lone.ferry_outside_s.push((wall as f64 - job as f64) / 1000.0);

            let inventory = self.inventory()?;
            let vm = inventory.vms.iter().find(|v| v.name == name).ok_or_else(|| format!("{name} is gone"))?;
            let job = VirshJob::new(&inventory, &cluster, vm, Lab::other(&vm.host), &self.dir, None)?;
            let started = Instant::now();
            job.run()?;
            let wall = started.elapsed().as_secs_f64();
            let stats = virsh(&job.to_uri, &["domjobinfo", &job.vm, "--completed", "--rawstats"])?;
            let job_ms = stats
                .lines()
                .find_map(|l| l.trim().strip_prefix("time_elapsed:")?.trim().parse::<f64>().ok())
                .ok_or_else(|| format!("virsh domjobinfo {name}: no time_elapsed"))?;
            lone.virsh_outside_s.push(wall - job_ms / 1000.0);
        }
        self.check()?;
        Ok(lone)
    }

    /// The lab's QEMU processes' CPU rate with no migration running, CPU-s per s.
    fn idle_qemu_cpu(&self) -> Result<f64, String> {
        let meter = Meter::start(self.holder)?;
        std::thread::sleep(IDLE);
        let (_, _, qemu) = meter.stop()?;
        Ok(qemu / IDLE.as_secs_f64())
    }

    /// `ferry lab check`: every guest alive, its memory and disk intact.
    fn check(&self) -> Result<(), String> {
        let out = ferry(&["lab", "check", "--dir", self.dir_str()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("lab check ({}): {}{}", self.kind.transport(), text(&out.stdout), text(&out.stderr)))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = ferry(&["lab", "down", "--purge", "--dir", self.dir_str()]);
        if !out.status.success() {
            eprintln!("transport: lab down {}: {}", self.dir_str(), text(&out.stderr));
        }
    }
}

/// What a drain costs besides time: bytes out of the drained host's shaped interface, the
/// machine's busy CPU time, and the lab's QEMU processes' CPU time (sampled on a thread).
struct Meter {
    host: String,
    tx_before: u64,
    machine_before: f64,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<f64>,
}

impl Meter {
    fn start(drained: &str) -> Result<Meter, String> {
        let namespaces: Vec<u64> = HOSTS
            .iter()
            .map(|h| {
                let path = format!("/run/netns/{}", Lab::namespace(h));
                std::fs::metadata(&path).map(|m| m.ino()).map_err(|e| format!("{path}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        // The first sample is taken before the clock starts: processes it finds count from
        // there, processes born later from zero.
        let mut first = qemu_cpu_ticks(&namespaces);
        let sampler = std::thread::spawn(move || {
            let mut last = first.clone();
            loop {
                let done = flag.load(Ordering::Relaxed);
                for (pid, ticks) in qemu_cpu_ticks(&namespaces) {
                    first.entry(pid).or_insert(0);
                    last.insert(pid, ticks);
                }
                if done {
                    break;
                }
                std::thread::sleep(SAMPLE);
            }
            let ticks: u64 = last.iter().map(|(pid, t)| t.saturating_sub(first[pid])).sum();
            ticks as f64 / clock_ticks()
        });
        Ok(Meter {
            host: drained.to_string(),
            tx_before: tx_bytes(drained)?,
            machine_before: machine_busy_s()?,
            stop,
            sampler,
        })
    }

    /// (link tx bytes, machine CPU s, QEMU CPU s) since the start.
    fn stop(self) -> Result<(u64, f64, f64), String> {
        let tx = tx_bytes(&self.host)? - self.tx_before;
        let machine = machine_busy_s()? - self.machine_before;
        self.stop.store(true, Ordering::Relaxed);
        let qemu = self.sampler.join().map_err(|_| "the CPU sampler panicked".to_string())?;
        Ok((tx, machine, qemu))
    }
}

/// Bytes sent out of `host`'s interface in its network namespace (the one the lab shapes).
fn tx_bytes(host: &str) -> Result<u64, String> {
    let ns = Lab::namespace(host);
    let out = Command::new("ip")
        .args(["-n", &ns, "-s", "-j", "link", "show", "dev", "eth0"])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip -n {ns} -s link show eth0: {}", text(&out.stderr).trim()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("ip -j prints no JSON: {e}"))?;
    json[0]["stats64"]["tx"]["bytes"].as_u64().ok_or_else(|| format!("ip -n {ns}: no stats64.tx.bytes in {json}"))
}

/// Busy time of all CPUs since boot, s: /proc/stat's user, nice, system, irq, softirq, steal.
fn machine_busy_s() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let cpu = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")).ok_or("/proc/stat: no cpu line")?;
    let fields: Vec<u64> = cpu.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum();
    Ok(busy as f64 / clock_ticks())
}

/// utime + stime of every QEMU process in one of `namespaces` (network namespace inodes),
/// clock ticks, by pid.
fn qemu_cpu_ticks(namespaces: &[u64]) -> HashMap<u32, u64> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "PID (COMM) STATE ..."; COMM may hold spaces, so split after its closing parenthesis.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with("qemu-system") {
            continue;
        }
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else { continue };
        let inode = ns
            .to_str()
            .and_then(|n| n.strip_prefix("net:["))
            .and_then(|n| n.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        if !inode.is_some_and(|i| namespaces.contains(&i)) {
            continue;
        }
        // After the comm: state (field 3), …, utime (14), stime (15).
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(utime), Some(stime)) =
            (rest.get(11).and_then(|f| f.parse::<u64>().ok()), rest.get(12).and_then(|f| f.parse::<u64>().ok()))
        else {
            continue;
        };
        found.insert(pid, utime + stime);
    }
    found
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn read_journal(path: &Path, run: &str) -> Result<(Vec<ferry_journal::Move>, Vec<Attempt>), String> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("tokio: {e}"))?;
    runtime.block_on(async {
        let journal = Journal::open_path(path, &JournalConfig::default()).await.map_err(|e| format!("journal: {e}"))?;
        let moves = journal.moves(run).await.map_err(|e| format!("journal: {e}"))?;
        let attempts = journal.attempts(run).await.map_err(|e| format!("journal: {e}"))?;
        journal.close().await;
        Ok((moves, attempts))
    })
}

fn first_line(s: &str) -> String {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line.to_string()
    }
}
