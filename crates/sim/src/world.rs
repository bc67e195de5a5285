//! The simulated world: hosts, their links, VMs, and the moves between them, advanced event
//! by event.
//!
//! It keeps no clock: every call passes the time (nanoseconds since the simulation started)
//! and the world first processes every event due by then, in time order (ties in the order
//! they were scheduled). It never waits; it sends progress samples and outcomes on the
//! channels the driver gave it.
//!
//! # Links
//!
//! Every host has a migration link of `link_mib_s` each way (full duplex): its outbound
//! migrations share one direction, its inbound ones the other. The bandwidth of the moves
//! sending data at a moment is their max-min fair share of the links they cross, each
//! capped at its own limit (the migration's bandwidth cap; none for post-copy and cold
//! copies): progressive filling over the connected group of links and moves that a change
//! touches. A move that is not sending (preparing, scanning zero pages, paused, finishing)
//! takes nothing, so the others get more: TCP shares a link among the streams that use it.
//!
//! # One live migration
//!
//! The figures of [`ferry_preview::estimate`], calibrated on the lab, in the same order:
//! [`PREPARE_S`] of the fixed cost outside the copy job ([`PER_MIGRATION_OVERHEAD_S`]) to prepare,
//! [`JOB_SETUP_S`] inside the job, host-local disks at the link's pace, then QEMU's pre-copy
//! loop ([`PrecopyLoop`], the same code the estimate runs): zero pages in fixed time, each
//! period's data at the bandwidth of the moment, a dirty-bitmap sync at the end of each
//! period with the bandwidth and downtime limit of that moment, the guest dirtying memory
//! (throttled by auto-converge) in the meantime. Then the pause: its pages at the link's
//! share (not the cap), the source link's queue, and [`SWITCHOVER_MS`]; or, once post-copy is
//! started, a [`POSTCOPY_SWITCHOVER_MS`] pause and the rest fetched without a cap. The rest
//! of the fixed cost ([`FINISH_S`]) is spent tearing the source down, finding and finalizing
//! the VM. Alone on a link at a
//! constant cap, a migration takes what the estimate says.
//!
//! # Compressed streams
//!
//! When the move's stream compresses (zstd or zlib on multifd channels), each byte of memory
//! sent carries the VM's `compression_ratio` of guest memory, as the estimate has it: the
//! pre-copy loop counts guest memory at the link's rate times the ratio, and its passes, the
//! pause and post-copy put a ratio-th of their memory on the links. Disks are not
//! compressed. The source's channels (no more than its CPUs) compress at most
//! `1000 / compress_cpu_ms_per_mib` MiB/s each, a cap on the memory stages besides the
//! bandwidth cap. Migrations leaving one host at once do not compete for its cores: a host's
//! CPUs bound each migration's channels, not their sum. Flows count bytes sent (`remaining`,
//! `rate`, `transferred`); progress reports memory left as guest memory.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use ferry_driver::{
    ColdOptions, Control, DriverError, ErrorKind, LiveOptions, MoveError, MoveReport, MoveRequest, Progress, Volume,
};
use ferry_model::{
    blocking_claim, claim_refusal, Claim, ClaimFacts, Disk, DiskSource, Host, Inventory, Locality, Location, Metadata,
    Nic, Phase, Pool, Version, Vm, VmState,
};
use ferry_preview::estimate::{
    LiveInput, Next, PrecopyLoop, JOB_SETUP_S, PER_MIGRATION_OVERHEAD_S, POSTCOPY_SWITCHOVER_MS, SWITCHOVER_MS,
    THROTTLE_INCREMENT, THROTTLE_INITIAL,
};
use tokio::sync::{mpsc, oneshot};

use crate::compress::{compressed, Compressed};
use crate::fleet::{Fleet, SHARED_POOL};
use crate::rng::Rng;

/// Nanoseconds since the simulation started.
pub(crate) type Nanos = u64;

/// The owner a simulated move's claim names: the world lives in one process.
const SIM_OWNER: &str = "simulation";

/// A claim's time in the simulation: virtual ms since the fleet's start.
fn virtual_ms(now: Nanos) -> i64 {
    i64::try_from(now / 1_000_000).unwrap_or(i64::MAX)
}

/// Seconds between two progress samples of a migration: the libvirt driver's poll (250 ms),
/// so that the engine sees a migration stop sending (zero pages, the switch-over) as soon
/// here as there.
pub const SAMPLE_EVERY_S: f64 = 0.25;

/// The fixed cost of a live migration before its copy job and after its switch-over: the
/// estimate's, so that the preview and the simulator split it alike.
pub use ferry_preview::estimate::{FINISH_S, PREPARE_S};

const MIB: f64 = 1024.0 * 1024.0;

fn nanos(seconds: f64) -> Nanos {
    (seconds.max(0.0) * 1e9).ceil() as Nanos
}

fn secs(n: Nanos) -> f64 {
    n as f64 / 1e9
}

fn millis(n: Nanos) -> u64 {
    (n + 500_000) / 1_000_000
}

fn bytes(mib: f64) -> u64 {
    (mib.max(0.0) * MIB).round() as u64
}

/// An outcome as the driver hands it over.
pub(crate) type Outcome = Result<MoveReport, MoveError>;

pub(crate) struct World {
    hosts: Vec<SimHost>,
    host_ids: HashMap<String, usize>,
    vms: Vec<SimVm>,
    vm_ids: HashMap<String, usize>,
    flows: BTreeMap<u64, Flow>,
    next_flow: u64,
    /// Moves sending data over each link: host `h`'s outbound link is `2h`, inbound `2h+1`.
    links: Vec<Vec<u64>>,
    events: BinaryHeap<Reverse<(Nanos, u64, Event)>>,
    seq: u64,
    now: Nanos,
    seed: u64,
    error_rate: f64,
}

struct SimHost {
    name: String,
    uri: String,
    up: bool,
    link: f64,
    /// Seconds its outbound link's queue adds to a final pause.
    queue_s: f64,
    cpus: u32,
    /// CPU ms a core spends compressing a MiB of memory; `None`: the compression's default.
    compress_cpu_ms_per_mib: Option<f64>,
    memory_mib: u64,
    /// Memory of the VMs defined here and of those arriving, MiB.
    used_mib: u64,
    capacity_mib: f64,
}

struct SimVm {
    uuid: String,
    name: String,
    memory_mib: u64,
    vcpus: u32,
    dirty_mib_s: f64,
    working_set_mib: Option<f64>,
    nonzero_mib: Option<f64>,
    catch_up_s: Option<f64>,
    /// Memory per byte sent when compressed; `None`: the default.
    compression_ratio: Option<f64>,
    disk_mib: u64,
    shutdown_s: f64,
    /// The host of its domain.
    at: usize,
    state: VmState,
    /// A second domain during a move: the incoming one on the target, or the source's
    /// during post-copy.
    shadow: Option<(usize, VmState)>,
    metadata: Option<Metadata>,
    tags: BTreeMap<String, String>,
    /// The move in flight.
    flow: Option<u64>,
    /// Moves tried, for the random draws of the next one.
    attempts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The stage of a move ends, unless the move changed since (`version`).
    StageEnd { flow: u64, version: u64 },
    /// A progress sample of a live migration is due.
    Sample { flow: u64 },
    /// A host goes down.
    HostDown { host: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Live,
    Cold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reserved on the target while the driver prepares; no event of its own.
    Preparing,
    Setup,
    Disk,
    ZeroPages,
    Period,
    /// The guest is paused while its last dirty pages cross the link, uncapped but sharing
    /// it with the other migrations on it, as on the lab's shaped links.
    Pause,
    /// Then the last pages' wait in the link's queue and the fixed part of the switch-over
    /// ([`SWITCHOVER_MS`]).
    Switching,
    PostcopySwitch,
    Postcopy,
    Finishing,
    Shutdown,
    ColdCopy,
    ColdStart,
}

impl Stage {
    fn sends(self) -> bool {
        matches!(self, Stage::Disk | Stage::Period | Stage::Pause | Stage::Postcopy | Stage::ColdCopy)
    }

    /// Sends guest memory (through the stream's compression, if any), not disks.
    fn sends_memory(self) -> bool {
        matches!(self, Stage::Period | Stage::Pause | Stage::Postcopy)
    }

    /// Before the switch-over: an abort still leaves the VM on its source.
    fn revocable(self) -> bool {
        matches!(self, Stage::Setup | Stage::Disk | Stage::ZeroPages | Stage::Period)
    }

    fn in_job(self) -> bool {
        !matches!(self, Stage::Preparing | Stage::Finishing)
    }
}

/// How a move ends, decided when its job ends.
#[derive(Debug, Clone)]
enum End {
    Moved,
    Failed { kind: ErrorKind, reason: String, aborted: bool },
    Lost { reason: String },
}

struct Flow {
    kind: Kind,
    vm: usize,
    from: usize,
    to: usize,
    run_id: String,
    delete_source_volumes: bool,
    requested: Nanos,
    job_start: Nanos,
    job_end: Option<Nanos>,
    stage: Stage,
    version: u64,
    cap: Option<f64>,
    /// MiB/s on the links.
    rate: f64,
    /// MiB left to send in a sending stage, as sent on the links (memory compressed).
    remaining: f64,
    /// Time up to which `remaining`, `transferred` and `memory_sent` are counted.
    updated: Nanos,
    /// MiB sent, memory and disks.
    transferred: f64,
    /// MiB of them that carried memory.
    memory_sent: f64,
    /// How the stream compresses memory; `None`: it sends it as it is.
    compressed: Option<Compressed>,
    options: LiveOptions,
    max_downtime_ms: f64,
    precopy: Option<PrecopyLoop>,
    period_start: Nanos,
    /// Pass 1's data, sent after its zero pages.
    first_data: f64,
    first_pass: bool,
    /// The stream breaks when this share of pass 1's data is sent.
    doomed: Option<f64>,
    downtime_ms: Option<f64>,
    postcopy_active: bool,
    postcopy_rest: f64,
    was_running: bool,
    end: Option<End>,
    messages: Vec<String>,
    progress: Option<mpsc::UnboundedSender<Progress>>,
    /// Where a live job's lines go as they happen (see `Migration::said`).
    said: Option<mpsc::UnboundedSender<String>>,
    outcome: Option<oneshot::Sender<Outcome>>,
}

impl Flow {
    /// A line about the job as it runs: said at once, or, with no one listening, kept for
    /// the report.
    fn say(&mut self, line: String) {
        match &self.said {
            Some(said) => {
                let _ = said.send(line);
            }
            None => self.messages.push(line),
        }
    }

    /// The most this move may send now, MiB/s on the links: its bandwidth cap while the
    /// cap applies, and what the source's CPUs compress while it sends compressed memory.
    fn cap(&self) -> f64 {
        let cap = match self.stage {
            Stage::Disk | Stage::Period => self.cap.unwrap_or(f64::INFINITY),
            _ => f64::INFINITY,
        };
        match self.compressed {
            Some(c) if self.stage.sends_memory() => cap.min(c.wire_cap()),
            _ => cap,
        }
    }

    /// Guest memory a byte sent carries: the stream's ratio when it compresses.
    fn ratio(&self) -> f64 {
        self.compressed.map_or(1.0, |c| c.ratio)
    }

    /// What sending `memory_mib` of guest memory puts on the links, MiB.
    fn wire(&self, memory_mib: f64) -> f64 {
        memory_mib / self.ratio()
    }

    /// How fast memory moves when the links give the move `link_mib_s`: compressed, as fast
    /// as the source's CPUs allow. What QEMU's pre-copy loop counts with.
    fn memory_speed(&self, link_mib_s: f64) -> f64 {
        match self.compressed {
            Some(c) => (link_mib_s * c.ratio).min(c.memory_mib_s),
            None => link_mib_s,
        }
    }

    /// Counts what was sent up to `now` at the current rate.
    fn settle(&mut self, now: Nanos) {
        if self.stage.sends() && now > self.updated {
            let sent = (self.rate * secs(now - self.updated)).min(self.remaining);
            self.remaining -= sent;
            self.transferred += sent;
            if self.stage.sends_memory() {
                self.memory_sent += sent;
            }
        }
        self.updated = self.updated.max(now);
    }
}

fn out_link(h: usize) -> usize {
    2 * h
}

fn in_link(h: usize) -> usize {
    2 * h + 1
}

impl World {
    pub(crate) fn new(fleet: &Fleet) -> World {
        let hosts: Vec<SimHost> = fleet
            .hosts
            .iter()
            .map(|h| SimHost {
                name: h.name.clone(),
                uri: format!("{}{}", crate::fleet::SIM_URI_PREFIX, h.name),
                up: true,
                link: h.link_mib_s as f64,
                queue_s: h.link_queue_ms.max(0.0) / 1000.0,
                cpus: h.cpus,
                compress_cpu_ms_per_mib: h.compress_cpu_ms_per_mib,
                memory_mib: h.memory_mib,
                used_mib: 0,
                capacity_mib: h.memory_mib as f64 * h.memory_overcommit,
            })
            .collect();
        let host_ids: HashMap<String, usize> = hosts.iter().enumerate().map(|(i, h)| (h.name.clone(), i)).collect();
        let mut world = World {
            links: vec![Vec::new(); 2 * hosts.len()],
            vms: Vec::with_capacity(fleet.vms.len()),
            vm_ids: HashMap::with_capacity(fleet.vms.len()),
            flows: BTreeMap::new(),
            next_flow: 1,
            events: BinaryHeap::new(),
            seq: 0,
            now: 0,
            seed: fleet.sim.seed,
            error_rate: fleet.sim.migration_error_rate,
            hosts,
            host_ids,
        };
        for (i, v) in fleet.vms.iter().enumerate() {
            let at = world.host_ids[&v.host];
            world.hosts[at].used_mib += v.memory_mib;
            let uuid = fleet.uuid(i);
            world.vm_ids.insert(uuid.clone(), i);
            world.vms.push(SimVm {
                uuid,
                name: v.name.clone(),
                memory_mib: v.memory_mib,
                vcpus: v.vcpus,
                dirty_mib_s: v.dirty_mib_s,
                working_set_mib: v.working_set_mib,
                catch_up_s: v.catch_up_s,
                nonzero_mib: v.nonzero_mib,
                compression_ratio: v.compression_ratio,
                disk_mib: v.disk_mib,
                shutdown_s: v.shutdown_s,
                at,
                state: if v.running { VmState::Running } else { VmState::ShutOff },
                shadow: None,
                metadata: None,
                tags: v.tags.clone(),
                flow: None,
                attempts: 0,
            });
        }
        for fault in &fleet.faults {
            let host = world.host_ids[&fault.host];
            world.schedule(nanos(fault.down_at_s), Event::HostDown { host });
        }
        world
    }

    // ------------------------------------------------------------------ time

    /// Processes every event due by `until`.
    pub(crate) fn advance(&mut self, until: Nanos) {
        while let Some(Reverse((at, _, event))) = self.events.peek().copied() {
            if at > until {
                break;
            }
            self.events.pop();
            self.now = self.now.max(at);
            self.handle(event);
        }
        self.now = self.now.max(until);
    }

    /// When the next event is due, if any.
    pub(crate) fn next_event(&self) -> Option<Nanos> {
        self.events.peek().map(|Reverse((at, _, _))| *at)
    }

    fn schedule(&mut self, at: Nanos, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::StageEnd { flow, version } => {
                if self.flows.get(&flow).is_some_and(|f| f.version == version) {
                    self.stage_ended(flow);
                }
            }
            Event::Sample { flow } => self.sample(flow),
            Event::HostDown { host } => self.host_down(host),
        }
    }

    // ------------------------------------------------------------------ queries

    pub(crate) fn inventory(&self) -> Inventory {
        let mut inventory = Inventory::default();
        for h in &self.hosts {
            if !h.up {
                inventory
                    .unreachable
                    .push((h.name.clone(), "cannot connect: the host is down (simulated fault)".into()));
                continue;
            }
            inventory.hosts.push(Host {
                name: h.name.clone(),
                uri: h.uri.clone(),
                cpu_model: "sim".into(),
                cpu_models: [("kvm".to_string(), vec!["sim".to_string()])].into_iter().collect(),
                cpus: h.cpus,
                memory_mib: h.memory_mib,
                free_memory_mib: h.memory_mib.saturating_sub(h.used_mib),
                hypervisor_version: Version { major: 10, minor: 0, release: 0 },
                libvirt_version: Version { major: 11, minor: 3, release: 0 },
                pools: vec![
                    Pool { name: SHARED_POOL.into(), path: None, capacity: 1 << 50, available: 1 << 49, shared: true },
                    Pool {
                        name: "local".into(),
                        path: Some("/var/lib/libvirt/images".into()),
                        capacity: 1 << 44,
                        available: 1 << 43,
                        shared: false,
                    },
                ],
                networks: vec!["default".into()],
            });
        }
        for v in &self.vms {
            if !self.hosts[v.at].up {
                continue;
            }
            let disk = if v.disk_mib > 0 {
                Disk {
                    target: "vda".into(),
                    source: DiskSource::File { path: format!("/var/lib/libvirt/images/{}.qcow2", v.name) },
                    format: "qcow2".into(),
                    locality: Locality::HostLocal,
                    pool: Some("local".into()),
                    capacity: Some(v.disk_mib << 20),
                }
            } else {
                Disk {
                    target: "vda".into(),
                    source: DiskSource::Network {
                        protocol: "rbd".into(),
                        name: format!("{SHARED_POOL}/{}", v.name),
                        servers: vec!["sim".into()],
                    },
                    format: "raw".into(),
                    locality: Locality::Shared,
                    pool: None,
                    capacity: None,
                }
            };
            inventory.vms.push(Vm {
                uuid: v.uuid.clone(),
                name: v.name.clone(),
                host: self.hosts[v.at].name.clone(),
                vcpus: v.vcpus,
                memory_mib: v.memory_mib,
                cpu_model: None,
                virt_type: "kvm".into(),
                memory_locked: false,
                state: v.state,
                disks: vec![disk],
                nics: vec![Nic { mac: mac(&v.uuid), network: Some("default".into()) }],
                ferry: v.metadata.clone(),
                tags: v.tags.clone(),
            });
        }
        inventory
    }

    /// Every host that knows `uuid`; like the libvirt driver, an error naming the first host
    /// that cannot be asked when one is down.
    pub(crate) fn locate(&self, uuid: &str) -> Result<Vec<Location>, (String, String)> {
        if let Some(h) = self.hosts.iter().find(|h| !h.up) {
            return Err((h.name.clone(), "cannot connect: the host is down (simulated fault)".into()));
        }
        Ok(match self.vm_ids.get(uuid) {
            Some(&i) => self.locations(i),
            None => Vec::new(),
        })
    }

    /// Where VM `i` runs as a move's verification sees it, like the libvirt driver's: the
    /// `required` hosts (its source and target) must answer; the others are asked when they
    /// are up, and those that are down are returned by name (one host down elsewhere in a
    /// fleet must not make every move's outcome unknown).
    fn locate_among(&self, i: usize, required: &[usize]) -> Result<(Vec<Location>, Vec<String>), (String, String)> {
        if let Some(&h) = required.iter().find(|&&h| !self.hosts[h].up) {
            return Err((self.hosts[h].name.clone(), "cannot connect: the host is down (simulated fault)".into()));
        }
        let unasked = self.hosts.iter().filter(|h| !h.up).map(|h| h.name.clone()).collect();
        let mut found = self.locations(i);
        found.retain(|l| self.host_ids.get(&l.host).is_some_and(|&h| self.hosts[h].up));
        Ok((found, unasked))
    }

    fn locations(&self, i: usize) -> Vec<Location> {
        let v = &self.vms[i];
        let mut found = vec![Location { host: self.hosts[v.at].name.clone(), state: v.state, persistent: true }];
        if let Some((h, state)) = v.shadow {
            found.push(Location { host: self.hosts[h].name.clone(), state, persistent: false });
        }
        found.sort_by(|a, b| a.host.cmp(&b.host));
        found
    }

    fn host_error(&self, host: &str, action: &str) -> Option<DriverError> {
        let error = |kind, message: String| Some(DriverError::new(host, action, kind, message));
        match self.host_ids.get(host) {
            None => error(ErrorKind::NotFound, format!("no host {host} in the fleet")),
            Some(&h) if !self.hosts[h].up => {
                error(ErrorKind::Unreachable, "cannot connect: the host is down (simulated fault)".into())
            }
            Some(_) => None,
        }
    }

    /// The VM `uuid` whose domain is on `host`.
    fn domain(&self, host: &str, uuid: &str, action: &str) -> Result<usize, DriverError> {
        if let Some(e) = self.host_error(host, action) {
            return Err(e);
        }
        let h = self.host_ids[host];
        match self.vm_ids.get(uuid) {
            Some(&i) if self.vms[i].at == h || self.vms[i].shadow.is_some_and(|(s, _)| s == h) => Ok(i),
            _ => Err(DriverError::new(
                host,
                action,
                ErrorKind::NotFound,
                format!("Domain not found: no domain with matching uuid '{uuid}'"),
            )),
        }
    }

    /// Idle cores of `host`: its CPUs less the channels its compressing migrations in flight
    /// keep busy. (The sim does not model the guests' own CPU use.)
    pub(crate) fn idle_cpus(&self, host: &str) -> Result<f64, DriverError> {
        if let Some(e) = self.host_error(host, "tell its idle CPU") {
            return Err(e);
        }
        let h = self.host_ids[host];
        let busy: u32 = self
            .flows
            .values()
            .filter(|f| f.from == h && f.end.is_none())
            .filter_map(|f| f.compressed.as_ref().map(|c| c.channels))
            .sum();
        Ok(f64::from(self.hosts[h].cpus.saturating_sub(busy)))
    }

    pub(crate) fn metadata(&self, host: &str, uuid: &str) -> Result<Option<Metadata>, DriverError> {
        let i = self.domain(host, uuid, "read metadata")?;
        Ok(self.vms[i].metadata.clone())
    }

    pub(crate) fn set_metadata(
        &mut self,
        host: &str,
        uuid: &str,
        metadata: Option<&Metadata>,
    ) -> Result<(), DriverError> {
        let i = self.domain(host, uuid, "write metadata")?;
        self.vms[i].metadata = metadata.cloned();
        Ok(())
    }

    /// The volumes of `host`'s host-local pool: the disk of each VM with a domain there (the
    /// incoming one of a move too), used by it. The world keeps no other copies: a move's
    /// source copy is not modelled, so no volume is ever unused.
    pub(crate) fn volumes(&self, host: &str) -> Result<Vec<Volume>, DriverError> {
        if let Some(e) = self.host_error(host, "list volumes") {
            return Err(e);
        }
        let h = self.host_ids[host];
        Ok(self
            .vms
            .iter()
            .filter(|v| v.disk_mib > 0 && (v.at == h || v.shadow.is_some_and(|(s, _)| s == h)))
            .map(|v| Volume {
                host: host.to_string(),
                pool: "local".into(),
                name: format!("{}.qcow2", v.name),
                path: format!("/var/lib/libvirt/images/{}.qcow2", v.name),
                capacity: v.disk_mib << 20,
                used_by: vec![v.uuid.clone()],
            })
            .collect())
    }

    pub(crate) fn job(&mut self, host: &str, uuid: &str) -> Result<Option<Progress>, DriverError> {
        let i = self.domain(host, uuid, "read job")?;
        let Some(id) = self.vms[i].flow else { return Ok(None) };
        let now = self.now;
        let flow = self.flows.get_mut(&id).expect("a VM's flow exists");
        if flow.kind != Kind::Live || !flow.stage.in_job() {
            return Ok(None);
        }
        flow.settle(now);
        Ok(Some(self.progress(id)))
    }

    pub(crate) fn abort_job(&mut self, host: &str, uuid: &str) -> Result<(), DriverError> {
        let i = self.domain(host, uuid, "abort job")?;
        match self.vms[i].flow {
            Some(id) if self.flows[&id].kind == Kind::Live && self.flows[&id].stage.revocable() => {
                self.control(id, &Control::Abort);
                Ok(())
            }
            // libvirt's VIR_ERR_OPERATION_INVALID.
            _ => Err(DriverError::new(
                host,
                "abort job",
                ErrorKind::Refused,
                "Requested operation is not valid: no job is active on the domain",
            )),
        }
    }

    /// Starts a VM that is shut off on `host`; one running there already is left alone.
    pub(crate) fn start_vm(&mut self, host: &str, uuid: &str) -> Result<(), DriverError> {
        let i = self.domain(host, uuid, "start")?;
        let here = self.host_ids[host];
        let v = &mut self.vms[i];
        if v.at == here && v.flow.is_none() && v.state == VmState::ShutOff {
            v.state = VmState::Running;
        }
        Ok(())
    }

    /// Shuts down a VM running on `host` and not migrating; true when it was running.
    pub(crate) fn stop_vm(&mut self, host: &str, uuid: &str) -> Result<bool, DriverError> {
        let i = self.domain(host, uuid, "shut down")?;
        let here = self.host_ids[host];
        let v = &mut self.vms[i];
        let running = v.at == here && v.flow.is_none() && v.state == VmState::Running;
        if running {
            v.state = VmState::ShutOff;
        }
        Ok(running)
    }

    /// Each running VM's dirty rate, MiB/s, by UUID (what a measurement finds).
    pub(crate) fn dirty_rates(&self, uuids: &[String]) -> (HashMap<String, f64>, HashMap<String, String>) {
        let mut rates = HashMap::new();
        let mut failed = HashMap::new();
        for uuid in uuids {
            match self.vm_ids.get(uuid).map(|&i| &self.vms[i]) {
                Some(v) if !self.hosts[v.at].up => {
                    failed.insert(uuid.clone(), format!("{}: the host is down", self.hosts[v.at].name));
                }
                Some(v) if v.state == VmState::Running => {
                    rates.insert(uuid.clone(), v.dirty_mib_s);
                }
                Some(v) => {
                    failed.insert(uuid.clone(), format!("{} is not running", v.name));
                }
                None => {
                    failed.insert(uuid.clone(), "no such VM".into());
                }
            }
        }
        (rates, failed)
    }

    // ------------------------------------------------------------------ starting moves

    /// Checks a move and reserves the target's memory for it: the preparation of a live
    /// migration (the job starts with [`World::start_job`]) or the start of a cold move.
    fn reserve(&mut self, request: &MoveRequest, kind: Kind) -> Result<u64, MoveError> {
        use ErrorKind::{Conflict, NotFound, Refused, Unreachable};
        let init = MoveError::init;
        let &i =
            self.vm_ids.get(&request.vm).ok_or_else(|| init(NotFound, format!("no VM {} on any host", request.vm)))?;
        let host = |name: &str| {
            self.host_ids.get(name).copied().ok_or_else(|| init(NotFound, format!("no host {name} in the fleet")))
        };
        let (from, to) = (host(&request.from)?, host(&request.to)?);
        for h in [from, to] {
            if !self.hosts[h].up {
                return Err(init(
                    Unreachable,
                    format!("{}: cannot connect: the host is down (simulated fault)", self.hosts[h].name),
                ));
            }
        }
        let v = &self.vms[i];
        if from == to {
            return Err(init(Conflict, format!("{} is already on {}", v.name, request.to)));
        }
        if v.at != from {
            let reason = format!("{} is not on {} (it is on {})", v.name, request.from, self.hosts[v.at].name);
            return Err(init(NotFound, reason));
        }
        // The world's flows are its live moves: a flow of another run holds the VM as a
        // libvirt job would, and its claim names that run.
        let live_runs: Vec<String> = self.flows.values().map(|f| f.run_id.clone()).collect();
        let facts = ClaimFacts {
            run_id: &request.run_id,
            now_ms: virtual_ms(self.now),
            live_runs: &live_runs,
            owner_running: false,
            job_running: v.flow.is_some(),
        };
        if let Some(holder) = blocking_claim(v.metadata.as_ref(), &facts) {
            return Err(init(Conflict, claim_refusal(holder, &request.from)));
        }
        if v.flow.is_some() {
            return Err(init(Conflict, format!("{}: a job is already running on the domain", v.name)));
        }
        if kind == Kind::Live && v.state != VmState::Running {
            return Err(init(Refused, format!("not running on {}: a stopped VM can only move cold", request.from)));
        }
        let target = &self.hosts[to];
        let free = target.capacity_mib - target.used_mib as f64;
        if v.memory_mib as f64 > free {
            return Err(init(
                Refused,
                format!(
                    "{}: not enough memory for {}: needs {} MiB, {:.0} MiB free",
                    target.name,
                    v.name,
                    v.memory_mib,
                    free.max(0.0)
                ),
            ));
        }
        let id = self.next_flow;
        self.next_flow += 1;
        let memory = v.memory_mib;
        let was_running = v.state == VmState::Running;
        self.hosts[to].used_mib += memory;
        let v = &mut self.vms[i];
        v.flow = Some(id);
        v.attempts += 1;
        v.metadata = Some(Metadata {
            run_id: request.run_id.clone(),
            original_host: request.from.clone(),
            phase: Phase::Prepared,
            claim: Some(Claim { owner: SIM_OWNER.into(), refreshed_ms: virtual_ms(self.now) }),
        });
        self.flows.insert(
            id,
            Flow {
                kind,
                vm: i,
                from,
                to,
                run_id: request.run_id.clone(),
                delete_source_volumes: request.delete_source_volumes,
                requested: self.now,
                job_start: self.now,
                job_end: None,
                stage: Stage::Preparing,
                version: 0,
                cap: None,
                rate: 0.0,
                remaining: 0.0,
                updated: self.now,
                transferred: 0.0,
                memory_sent: 0.0,
                compressed: None,
                options: LiveOptions::default(),
                max_downtime_ms: ferry_preview::estimate::QEMU_DEFAULT_MAX_DOWNTIME_MS,
                precopy: None,
                period_start: self.now,
                first_data: 0.0,
                first_pass: false,
                doomed: None,
                downtime_ms: None,
                postcopy_active: false,
                postcopy_rest: 0.0,
                was_running,
                end: None,
                messages: Vec::new(),
                progress: None,
                said: None,
                outcome: None,
            },
        );
        Ok(id)
    }

    /// Prepares a live migration: checked, the target's memory reserved.
    pub(crate) fn prepare_live(&mut self, request: &MoveRequest, options: &LiveOptions) -> Result<u64, MoveError> {
        let id = self.reserve(request, Kind::Live)?;
        let flow = self.flows.get_mut(&id).expect("just inserted");
        flow.options = options.clone();
        let source = &self.hosts[flow.from];
        flow.compressed = compressed(
            &options.stream,
            self.vms[flow.vm].compression_ratio,
            source.compress_cpu_ms_per_mib,
            source.cpus,
        );
        flow.cap = options.bandwidth_mib_s.map(|b| b as f64);
        if let Some(ms) = options.max_downtime_ms {
            flow.max_downtime_ms = ms as f64;
        }
        Ok(id)
    }

    /// Starts the copy job of a prepared live migration; an error undoes the preparation.
    pub(crate) fn start_job(
        &mut self,
        id: u64,
        progress: mpsc::UnboundedSender<Progress>,
        said: mpsc::UnboundedSender<String>,
        outcome: oneshot::Sender<Outcome>,
    ) -> Result<(), MoveError> {
        let flow = &self.flows[&id];
        for h in [flow.from, flow.to] {
            if !self.hosts[h].up {
                let reason = format!("{}: cannot connect: the host is down (simulated fault)", self.hosts[h].name);
                self.release(id);
                return Err(MoveError::init(ErrorKind::Unreachable, reason));
            }
        }
        let now = self.now;
        let (vm, to) = (flow.vm, flow.to);
        let attempt = self.vms[vm].attempts;
        let doomed = {
            let mut rng = Rng::for_stream(self.seed, 0xfa17 + vm as u64, attempt);
            let u = rng.unit();
            (u < self.error_rate).then(|| u / self.error_rate)
        };
        let v = &mut self.vms[vm];
        v.shadow = Some((to, VmState::Paused));
        if let Some(m) = &mut v.metadata {
            m.phase = Phase::Transferring;
        }
        let flow = self.flows.get_mut(&id).expect("checked");
        flow.progress = Some(progress);
        flow.said = Some(said);
        flow.outcome = Some(outcome);
        flow.job_start = now;
        flow.doomed = doomed;
        self.set_stage(id, Stage::Setup, Work::Wait(JOB_SETUP_S));
        self.schedule(now + nanos(SAMPLE_EVERY_S), Event::Sample { flow: id });
        Ok(())
    }

    /// Starts a cold move: shut down, copy host-local disks, define and start on the target.
    pub(crate) fn start_cold(
        &mut self,
        request: &MoveRequest,
        options: &ColdOptions,
        outcome: oneshot::Sender<Outcome>,
    ) -> Result<(), MoveError> {
        let id = self.reserve(request, Kind::Cold)?;
        let flow = self.flows.get_mut(&id).expect("just inserted");
        flow.outcome = Some(outcome);
        let v = &mut self.vms[flow.vm];
        if let Some(m) = &mut v.metadata {
            m.phase = Phase::Transferring;
        }
        let shutdown = if flow.was_running {
            if v.shutdown_s > options.shutdown_timeout.as_secs_f64() {
                flow.messages.push(format!(
                    "{} did not shut down within {} s: powered off",
                    v.name,
                    options.shutdown_timeout.as_secs()
                ));
            }
            v.shutdown_s.min(options.shutdown_timeout.as_secs_f64())
        } else {
            0.0
        };
        self.set_stage(id, Stage::Shutdown, Work::Wait(shutdown));
        Ok(())
    }

    /// Undoes the preparation of a live migration whose job never started (its caller gave
    /// up while it was being prepared).
    pub(crate) fn cancel_prepared(&mut self, id: u64) {
        if self.flows.get(&id).is_some_and(|f| f.stage == Stage::Preparing) {
            self.release(id);
        }
    }

    /// Undoes a reservation whose move never started.
    fn release(&mut self, id: u64) {
        if let Some(flow) = self.flows.remove(&id) {
            self.hosts[flow.to].used_mib -= self.vms[flow.vm].memory_mib;
            let v = &mut self.vms[flow.vm];
            v.flow = None;
            v.shadow = None;
            v.metadata = None;
        }
    }

    // ------------------------------------------------------------------ stages

    fn set_stage(&mut self, id: u64, stage: Stage, work: Work) {
        let now = self.now;
        let flow = self.flows.get_mut(&id).expect("a live flow");
        flow.settle(now);
        let was = flow.stage.sends();
        flow.stage = stage;
        flow.version += 1;
        let version = flow.version;
        let (from, to) = (flow.from, flow.to);
        match work {
            Work::Wait(seconds) => {
                flow.remaining = 0.0;
                self.schedule(now + nanos(seconds), Event::StageEnd { flow: id, version });
            }
            Work::Send(mib) => flow.remaining = mib.max(0.0),
        }
        let sends = stage.sends();
        if was && !sends {
            self.links[out_link(from)].retain(|&f| f != id);
            self.links[in_link(to)].retain(|&f| f != id);
            self.flows.get_mut(&id).expect("a live flow").rate = 0.0;
        } else if !was && sends {
            self.links[out_link(from)].push(id);
            self.links[in_link(to)].push(id);
        }
        if was || sends {
            self.reallocate(&[out_link(from), in_link(to)], sends.then_some(id));
        }
    }

    fn stage_ended(&mut self, id: u64) {
        let now = self.now;
        let flow = self.flows.get_mut(&id).expect("checked by the caller");
        flow.settle(now);
        let stage = flow.stage;
        match stage {
            Stage::Preparing => {}
            Stage::Setup => {
                let disk = self.vms[flow.vm].disk_mib;
                if disk > 0 {
                    self.set_stage(id, Stage::Disk, Work::Send(disk as f64));
                } else {
                    self.first_pass(id);
                }
            }
            Stage::Disk => self.first_pass(id),
            Stage::ZeroPages => {
                let data = flow.wire(flow.first_data * flow.doomed.unwrap_or(1.0));
                self.set_stage(id, Stage::Period, Work::Send(data));
            }
            Stage::Period => {
                if flow.first_pass && flow.doomed.is_some() {
                    let reason = "simulated fault: the migration stream broke during the first pass";
                    self.fail(id, ErrorKind::Unreachable, reason.into(), false);
                } else {
                    self.sync(id);
                }
            }
            Stage::Pause => {
                let queue = self.hosts[flow.from].queue_s;
                self.set_stage(id, Stage::Switching, Work::Wait(queue + SWITCHOVER_MS / 1000.0));
            }
            Stage::Switching => {
                flow.downtime_ms = Some(secs(now - flow.period_start) * 1000.0);
                self.switch_over(id);
                self.end_job(id, End::Moved);
            }
            Stage::PostcopySwitch => {
                self.switch_over(id);
                let flow = self.flows.get_mut(&id).expect("a live flow");
                let (vm, from) = (flow.vm, flow.from);
                let rest = flow.wire(flow.postcopy_rest);
                // The source keeps the pages not fetched yet until post-copy ends.
                self.hosts[from].used_mib += self.vms[vm].memory_mib;
                self.vms[vm].shadow = Some((from, VmState::Paused));
                self.set_stage(id, Stage::Postcopy, Work::Send(rest));
            }
            Stage::Postcopy => {
                let (vm, from) = (flow.vm, flow.from);
                self.hosts[from].used_mib -= self.vms[vm].memory_mib;
                self.vms[vm].shadow = None;
                self.end_job(id, End::Moved);
            }
            Stage::Finishing => self.finish(id),
            Stage::Shutdown => {
                self.vms[flow.vm].state = VmState::ShutOff;
                let disk = self.vms[flow.vm].disk_mib;
                if disk > 0 {
                    self.set_stage(id, Stage::ColdCopy, Work::Send(disk as f64));
                } else {
                    self.set_stage(id, Stage::ColdStart, Work::Wait(PER_MIGRATION_OVERHEAD_S));
                }
            }
            Stage::ColdCopy => self.set_stage(id, Stage::ColdStart, Work::Wait(PER_MIGRATION_OVERHEAD_S)),
            Stage::ColdStart => {
                let was_running = flow.was_running;
                self.switch_over(id);
                let flow = self.flows.get_mut(&id).expect("a cold flow");
                self.vms[flow.vm].state = if was_running { VmState::Running } else { VmState::ShutOff };
                flow.job_end = Some(now);
                flow.end = Some(End::Moved);
                self.finish(id);
            }
        }
    }

    fn first_pass(&mut self, id: u64) {
        let now = self.now;
        let flow = self.flows.get_mut(&id).expect("a live flow");
        let v = &self.vms[flow.vm];
        let path = self.hosts[flow.from].link.min(self.hosts[flow.to].link);
        // The loop counts in guest memory: a compressed stream's bandwidth carries more.
        let bandwidth = flow.memory_speed(flow.cap.unwrap_or(path).min(path));
        let input = LiveInput {
            memory_mib: v.memory_mib as f64,
            dirty_mib_s: v.dirty_mib_s,
            bandwidth_mib_s: bandwidth,
            max_downtime_ms: flow.max_downtime_ms,
            auto_converge: flow.options.auto_converge,
            postcopy: flow.options.postcopy,
            nonzero_mib: v.nonzero_mib,
            working_set_mib: v.working_set_mib,
            catch_up_s: v.catch_up_s,
            link_mib_s: Some(flow.memory_speed(path)),
            ..LiveInput::default()
        };
        let (precopy, first) = PrecopyLoop::start(&input, bandwidth, flow.options.auto_converge);
        // The throttle the caller chose at start (the convergence policy does), else QEMU's.
        let percent = |p: Option<u32>, default: f64| p.map_or(default, |p| f64::from(p) / 100.0);
        let precopy = precopy.with_throttle(
            percent(flow.options.auto_converge_initial, THROTTLE_INITIAL),
            percent(flow.options.auto_converge_increment, THROTTLE_INCREMENT),
        );
        flow.precopy = Some(precopy);
        flow.first_data = first.data_mib;
        flow.first_pass = true;
        flow.period_start = now;
        if first.zero_s > 0.0 {
            self.set_stage(id, Stage::ZeroPages, Work::Wait(first.zero_s));
        } else {
            let data = flow.wire(first.data_mib * flow.doomed.unwrap_or(1.0));
            self.set_stage(id, Stage::Period, Work::Send(data));
        }
    }

    /// The dirty-bitmap sync at the end of a period: another period, or the pause.
    fn sync(&mut self, id: u64) {
        let now = self.now;
        let flow = self.flows.get_mut(&id).expect("a live flow");
        let path = self.hosts[flow.from].link.min(self.hosts[flow.to].link);
        // QEMU's threshold uses the bandwidth it measured; a starved migration measured none.
        let bandwidth = flow.memory_speed(if flow.rate > 0.0 { flow.rate } else { flow.cap.unwrap_or(path).min(path) });
        let period = secs(now - flow.period_start);
        let max_downtime = flow.max_downtime_ms;
        let precopy = flow.precopy.as_mut().expect("a period follows the first pass");
        let next = precopy.sync(period, bandwidth, max_downtime).next;
        flow.first_pass = false;
        flow.period_start = now;
        match next {
            Next::Send { data_mib } => {
                let data = flow.wire(data_mib);
                self.set_stage(id, Stage::Period, Work::Send(data));
            }
            Next::Pause { data_mib } => {
                // The downtime counts from here (`period_start`) to the switch-over's end.
                let data = flow.wire(data_mib);
                self.vms[flow.vm].state = VmState::Paused;
                self.set_stage(id, Stage::Pause, Work::Send(data));
            }
        }
    }

    /// The VM now runs on the target; the source's domain is gone.
    fn switch_over(&mut self, id: u64) {
        let flow = &self.flows[&id];
        let (vm, from, to) = (flow.vm, flow.from, flow.to);
        self.hosts[from].used_mib -= self.vms[vm].memory_mib;
        let v = &mut self.vms[vm];
        v.at = to;
        v.state = VmState::Running;
        v.shadow = None;
    }

    fn end_job(&mut self, id: u64, end: End) {
        let now = self.now;
        let flow = self.flows.get_mut(&id).expect("a live flow");
        flow.job_end = Some(now);
        // The copy is over: like the libvirt driver, the progress stream closes now, not
        // when the VM has been found and finalized, so the engine knows at once that this
        // migration's link share is free; a move that switched over says so first, as the
        // libvirt driver does when the target runs the VM.
        if let (End::Moved, Some(tx)) = (&end, flow.progress.take()) {
            let mut last = self.progress(id);
            last.switching_over = true;
            last.switched_over = true;
            let _ = tx.send(last);
        }
        let flow = self.flows.get_mut(&id).expect("a live flow");
        flow.end = Some(end);
        self.set_stage(id, Stage::Finishing, Work::Wait(FINISH_S));
    }

    /// The job failed before the switch-over: the VM runs on, on its source.
    fn fail(&mut self, id: u64, kind: ErrorKind, reason: String, aborted: bool) {
        let flow = &self.flows[&id];
        let (vm, to) = (flow.vm, flow.to);
        self.hosts[to].used_mib -= self.vms[vm].memory_mib;
        let v = &mut self.vms[vm];
        v.shadow = None;
        v.state = VmState::Running;
        self.end_job(id, End::Failed { kind, reason, aborted });
    }

    /// The move is over: the outcome, as the libvirt driver would report it after asking
    /// every host where the VM is.
    fn finish(&mut self, id: u64) {
        let now = self.now;
        let Some(mut flow) = self.flows.remove(&id) else { return };
        if flow.stage.sends() {
            // Ended while sending (a cold copy whose host went down): its links go to the others.
            self.links[out_link(flow.from)].retain(|&f| f != id);
            self.links[in_link(flow.to)].retain(|&f| f != id);
            self.reallocate(&[out_link(flow.from), in_link(flow.to)], None);
        }
        let end = flow.end.take().unwrap_or(End::Lost { reason: "the move ended without an outcome".into() });
        let vm = flow.vm;
        self.vms[vm].flow = None;
        let located = self.locate_among(vm, &[flow.from, flow.to]).map(|(locations, unasked)| {
            if !unasked.is_empty() {
                flow.messages.push(format!("not asked where the VM runs (unreachable): {}", unasked.join(", ")));
            }
            locations
        });
        let passes = flow.precopy.as_ref().map_or(0, |p| u64::from(p.passes()));
        let name = self.vms[vm].name.clone();
        let disk = self.vms[vm].disk_mib > 0;
        let (from, to) = (self.hosts[flow.from].name.clone(), self.hosts[flow.to].name.clone());
        let live = flow.kind == Kind::Live;
        let mut report = MoveReport {
            wall_ms: millis(now - flow.requested),
            job_ms: flow.job_end.map(|e| millis(e - flow.job_start)),
            downtime_ms: flow.downtime_ms.map(|d| d.round() as u64),
            transferred_bytes: bytes(flow.transferred),
            memory_passes: passes,
            // What libvirt's job statistics say of a live job: its memory pages' bytes and
            // what was sent for them (fewer when the stream compresses).
            memory_bytes: live.then(|| bytes(flow.memory_sent * flow.ratio())),
            memory_sent_bytes: live.then(|| bytes(flow.memory_sent)),
            created_volumes: Vec::new(),
            deleted_volumes: Vec::new(),
            locations: Vec::new(),
            messages: std::mem::take(&mut flow.messages),
        };
        if flow.kind == Kind::Cold {
            report.job_ms = None;
            report.memory_passes = 0;
            report.downtime_ms = Some(millis(now - flow.requested));
        }
        let result = match (end, located) {
            (End::Lost { reason }, _) => Err(MoveError::Lost { reason, locations: Vec::new() }),
            (End::Moved, Err((host, e))) => Err(MoveError::Lost {
                reason: format!("migration reported success but {host} cannot be asked: {e}"),
                locations: Vec::new(),
            }),
            (End::Failed { reason, .. }, Err((host, e))) => Err(MoveError::Lost {
                reason: format!("migration failed ({reason}) and {host} cannot be asked: {e}"),
                locations: Vec::new(),
            }),
            (End::Moved, Ok(locations)) => {
                if let Some(m) = &mut self.vms[vm].metadata {
                    m.phase = Phase::Finalized;
                }
                if disk {
                    report.created_volumes.push(format!("/var/lib/libvirt/images/{name}.qcow2"));
                    if flow.delete_source_volumes {
                        report.deleted_volumes.push(format!("/var/lib/libvirt/images/{name}.qcow2"));
                        report
                            .messages
                            .push(format!("deleted the source volume /var/lib/libvirt/images/{name}.qcow2 on {from}"));
                    }
                }
                report.locations = locations;
                report.messages.push(format!("runs on {to}, verified"));
                Ok(report)
            }
            (End::Failed { kind, reason, aborted }, Ok(locations)) => {
                if self.vms[vm].metadata.as_ref().is_some_and(|m| m.run_id == flow.run_id) {
                    self.vms[vm].metadata = None;
                }
                if disk {
                    report.messages.push(format!("deleted /var/lib/libvirt/images/{name}.qcow2 on {to}"));
                }
                report.messages.push(format!("still runs on {from}, verified"));
                report.locations = locations;
                Err(MoveError::Transfer { kind, reason, aborted, report: Box::new(report) })
            }
        };
        if let Some(outcome) = flow.outcome.take() {
            let _ = outcome.send(result);
        }
    }

    // ------------------------------------------------------------------ controls, faults

    /// Applies a control to a live migration; ignored once it is over.
    pub(crate) fn control(&mut self, id: u64, control: &Control) {
        let now = self.now;
        let Some(flow) = self.flows.get_mut(&id) else { return };
        if flow.kind != Kind::Live || !flow.stage.in_job() {
            return;
        }
        flow.settle(now);
        let at = secs(now - flow.job_start);
        let applied = format!("applied {control:?} at {at:.1} s of the job");
        match control {
            Control::SetBandwidth(b) => {
                flow.cap = Some(*b as f64);
                flow.say(applied);
                if flow.stage.sends() {
                    let (from, to) = (flow.from, flow.to);
                    self.reallocate(&[out_link(from), in_link(to)], None);
                }
            }
            Control::SetMaxDowntime(ms) => {
                flow.max_downtime_ms = *ms as f64;
                flow.say(applied);
            }
            Control::StartPostCopy => {
                if !flow.options.postcopy {
                    flow.say(format!(
                        "{control:?} at {at:.1} s of the job failed: Requested operation is not valid: postcopy migration was not enabled"
                    ));
                    return;
                }
                let unsent = match flow.stage {
                    Stage::Period => flow.remaining * flow.ratio(),
                    Stage::ZeroPages => flow.first_data,
                    _ => {
                        flow.say(format!("{control:?} at {at:.1} s of the job failed: not in the memory phase"));
                        return;
                    }
                };
                let precopy = flow.precopy.as_ref().expect("the memory phase has a pre-copy loop");
                flow.postcopy_rest = precopy.postcopy_rest(secs(now - flow.period_start), unsent);
                flow.postcopy_active = true;
                flow.downtime_ms = Some(POSTCOPY_SWITCHOVER_MS);
                flow.say(applied);
                self.vms[flow.vm].state = VmState::Paused;
                self.set_stage(id, Stage::PostcopySwitch, Work::Wait(POSTCOPY_SWITCHOVER_MS / 1000.0));
            }
            Control::Abort => {
                if flow.stage.revocable() {
                    flow.say(applied);
                    // libvirt's VIR_ERR_OPERATION_ABORTED.
                    self.fail(
                        id,
                        ErrorKind::Other,
                        "operation aborted: migration job: canceled by client".into(),
                        true,
                    );
                } else {
                    flow.say(format!("{control:?} at {at:.1} s of the job came too late: the move was switching over"));
                }
            }
        }
    }

    fn host_down(&mut self, h: usize) {
        self.hosts[h].up = false;
        let hit: Vec<u64> = self.flows.iter().filter(|(_, f)| f.from == h || f.to == h).map(|(&id, _)| id).collect();
        for id in hit {
            let flow = &self.flows[&id];
            let name = &self.hosts[h].name;
            let vm = &self.vms[flow.vm].name;
            match flow.stage {
                // The driver finds the host down when the job should start.
                Stage::Preparing | Stage::Finishing => {}
                Stage::Setup | Stage::Disk | Stage::ZeroPages | Stage::Period if flow.to == h => {
                    let reason = format!("migration failed: the connection to {name} was lost");
                    self.fail(id, ErrorKind::Unreachable, reason, false);
                }
                stage => {
                    let reason = format!("{name} went down while {vm} was moving (simulated fault)");
                    if stage.revocable() {
                        // The VM died with its source; nothing arrived on the target.
                        let (vm, to) = (flow.vm, flow.to);
                        self.hosts[to].used_mib -= self.vms[vm].memory_mib;
                        self.vms[vm].shadow = None;
                    }
                    if self.flows[&id].kind == Kind::Cold {
                        let flow = self.flows.get_mut(&id).expect("a cold flow");
                        flow.end = Some(End::Lost { reason });
                        self.finish(id);
                    } else {
                        self.end_job(id, End::Lost { reason });
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ progress

    fn sample(&mut self, id: u64) {
        let now = self.now;
        let Some(flow) = self.flows.get_mut(&id) else { return };
        if flow.kind != Kind::Live || !flow.stage.in_job() || flow.job_end.is_some() {
            return;
        }
        flow.settle(now);
        let progress = self.progress(id);
        if let Some(tx) = &self.flows[&id].progress {
            let _ = tx.send(progress);
        }
        self.schedule(now + nanos(SAMPLE_EVERY_S), Event::Sample { flow: id });
    }

    fn progress(&self, id: u64) -> Progress {
        let flow = &self.flows[&id];
        let v = &self.vms[flow.vm];
        let memory = v.memory_mib as f64;
        let disk_left = match flow.stage {
            Stage::Setup => v.disk_mib as f64,
            Stage::Disk => flow.remaining,
            _ => 0.0,
        };
        // Memory left is guest memory; what is left of a stage is counted as sent.
        let memory_left = match (flow.stage, &flow.precopy) {
            (Stage::Setup | Stage::Disk, _) => v.nonzero_mib.unwrap_or(memory),
            (Stage::ZeroPages, _) => flow.first_data,
            (Stage::Period, Some(p)) => flow.remaining * flow.ratio() + p.left_mib(),
            (Stage::Postcopy, _) => flow.remaining * flow.ratio(),
            _ => 0.0,
        };
        let precopy = flow.precopy.as_ref();
        let synced = precopy.is_some_and(|p| p.passes() > 1);
        Progress {
            elapsed_ms: millis(self.now - flow.job_start),
            total_bytes: bytes(memory + v.disk_mib as f64),
            transferred_bytes: bytes(flow.transferred),
            remaining_bytes: bytes(memory_left + disk_left),
            memory_remaining_bytes: bytes(memory_left),
            memory_total_bytes: bytes(memory),
            disk_remaining_bytes: bytes(disk_left),
            // libvirt reports a dirty rate once the first pass is over.
            dirty_rate_bytes_s: if synced { bytes(precopy.map_or(0.0, PrecopyLoop::dirty_rate)) } else { 0 },
            bandwidth_bytes_s: bytes(flow.rate),
            memory_passes: precopy.map_or(0, |p| u64::from(p.passes())),
            expected_downtime_ms: (flow.rate > 0.0 && synced)
                .then(|| (flow.wire(memory_left) / flow.rate * 1000.0).round() as u64),
            throttle_percent: precopy.map(|p| (p.throttle() * 100.0).round() as u32).filter(|t| *t > 0),
            postcopy_active: flow.postcopy_active,
            // Like libvirt, which holds the domain from the final pause to the end of the
            // switch-over and answers no job statistics meanwhile: no data at the cap any more.
            switching_over: matches!(flow.stage, Stage::Pause | Stage::Switching | Stage::PostcopySwitch),
            switched_over: false,
        }
    }

    // ------------------------------------------------------------------ bandwidth

    /// Max-min fair rates, each under its cap, for the moves connected (through shared
    /// links) to `seeds`; every move whose rate changes (and `force`) gets a new end.
    fn reallocate(&mut self, seeds: &[usize], force: Option<u64>) {
        let now = self.now;
        let mut links: BTreeSet<usize> = BTreeSet::new();
        let mut members: BTreeSet<u64> = BTreeSet::new();
        let mut stack: Vec<usize> = seeds.to_vec();
        while let Some(l) = stack.pop() {
            if !links.insert(l) {
                continue;
            }
            for &f in &self.links[l] {
                if members.insert(f) {
                    let flow = &self.flows[&f];
                    stack.push(out_link(flow.from));
                    stack.push(in_link(flow.to));
                }
            }
        }
        let mut left: BTreeMap<usize, f64> = links.iter().map(|&l| (l, self.hosts[l / 2].link)).collect();
        let mut count: BTreeMap<usize, usize> = links.iter().map(|&l| (l, self.links[l].len())).collect();
        let mut rates: BTreeMap<u64, f64> = BTreeMap::new();
        let mut unfrozen: Vec<u64> = members.iter().copied().collect();
        while !unfrozen.is_empty() {
            let mut level = f64::INFINITY;
            for (&l, &n) in &count {
                if n > 0 {
                    level = level.min(left[&l].max(0.0) / n as f64);
                }
            }
            for f in &unfrozen {
                level = level.min(self.flows[f].cap());
            }
            let slack = 1e-9 * level.max(1.0);
            let saturated = |l: usize, left: &BTreeMap<usize, f64>, count: &BTreeMap<usize, usize>| {
                count[&l] > 0 && left[&l].max(0.0) / count[&l] as f64 <= level + slack
            };
            let (frozen, rest): (Vec<u64>, Vec<u64>) = unfrozen.into_iter().partition(|f| {
                let flow = &self.flows[f];
                flow.cap() <= level + slack
                    || saturated(out_link(flow.from), &left, &count)
                    || saturated(in_link(flow.to), &left, &count)
            });
            for f in frozen {
                let flow = &self.flows[&f];
                let rate = flow.cap().min(level);
                for l in [out_link(flow.from), in_link(flow.to)] {
                    *left.get_mut(&l).expect("a member's links are in the group") -= rate;
                    *count.get_mut(&l).expect("a member's links are in the group") -= 1;
                }
                rates.insert(f, rate);
            }
            unfrozen = rest;
        }
        for (f, rate) in rates {
            let flow = self.flows.get_mut(&f).expect("a member");
            if (flow.rate - rate).abs() <= 1e-12 * rate.max(1.0) && force != Some(f) {
                continue;
            }
            flow.settle(now);
            flow.rate = rate;
            flow.version += 1;
            if rate > 0.0 {
                let end = now + nanos(flow.remaining / rate);
                let version = flow.version;
                self.schedule(end, Event::StageEnd { flow: f, version });
            }
        }
    }
}

/// What a stage does until it ends.
enum Work {
    /// Waits this many seconds.
    Wait(f64),
    /// Sends this many MiB at the bandwidth it gets.
    Send(f64),
}

/// A MAC address from a UUID (QEMU's `52:54:00` prefix).
fn mac(uuid: &str) -> String {
    let hex: Vec<char> = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    let tail: String = hex.iter().rev().take(6).rev().collect();
    format!("52:54:00:{}:{}:{}", &tail[0..2], &tail[2..4], &tail[4..6])
}
