//! ferry's domain model: hosts, VMs, volumes, the inventory of a cluster, where a VM is,
//! what ferry writes on a domain, and the per-VM statuses of a move.
//!
//! Pure data: no IO, so nothing here can fail for reasons outside its arguments.

pub mod units;

mod status;
mod step;
mod stream;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use status::{Phase, Status};
pub use step::{created_volumes, Step, StepRecord, StepState};
pub use stream::{
    choose_stream, AutoFacts, Compression, Needs, StreamChoice, StreamLimits, StreamMode, StreamOptions,
    ASSUMED_ONE_STREAM_MIB_S, AUTO_ASSUMED_RATIO, AUTO_MIN_IDLE_CPUS, AUTO_STREAM, ZLIB_CPU_MS_PER_MIB,
    ZSTD_CPU_MS_PER_MIB,
};

/// A host as the cluster file declares it: how to reach it and what the operator says
/// about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Name used in plans and reports.
    pub name: String,
    /// libvirt URI.
    pub uri: String,
    /// Where the target listens for the migration stream (`tcp://ADDRESS`); libvirt's
    /// default (the target's hostname) when absent.
    pub migration_uri: Option<String>,
    /// Host group; moves stay within a group unless a plan allows crossing.
    pub group: String,
    /// Free-form tags (migration-direction rules match on them).
    pub tags: Vec<String>,
    /// Migration link bandwidth, MiB/s, shared by the host's concurrent migrations.
    pub link_mib_s: Option<u64>,
    /// vCPUs allowed per physical CPU.
    pub cpu_overcommit: f64,
    /// Memory allowed per physical byte.
    pub memory_overcommit: f64,
    /// In maintenance: never a target.
    pub maintenance: bool,
    /// Storage pools whose storage every host of the cluster reaches.
    pub shared_pools: Vec<String>,
    /// What this host allows of migration streams.
    #[serde(default)]
    pub stream: StreamLimits,
}

/// The hosts of a cluster, from its cluster file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The hosts, in file order.
    pub hosts: Vec<HostSpec>,
}

/// How ferry and the other hosts' libvirtd reach a host's libvirtd: the transport of its
/// URI (`qemu+TRANSPORT://`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `qemu+tls://`, or `qemu://HOST/` (libvirt's default for a remote host): TLS with
    /// certificates.
    Tls,
    /// `qemu+ssh://`, `qemu+libssh://`, `qemu+libssh2://`: through an ssh session.
    Ssh,
    /// `qemu+tcp://`: plaintext.
    Tcp,
    /// `qemu:///…` or `qemu+unix://`: this machine's own daemon.
    Unix,
    /// `qemu+ext://`: an external program makes the connection.
    Ext,
}

impl Transport {
    /// The transport a libvirt URI names, or why it names none ferry knows.
    pub fn of_uri(uri: &str) -> Result<Transport, String> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| format!("{uri:?} has no scheme://"))?;
        let has_host = !rest.starts_with('/');
        match scheme.split_once('+').map(|(_, t)| t) {
            None if has_host => Ok(Transport::Tls),
            None => Ok(Transport::Unix),
            Some("tls") => Ok(Transport::Tls),
            Some("ssh" | "libssh" | "libssh2") => Ok(Transport::Ssh),
            Some("tcp") => Ok(Transport::Tcp),
            Some("unix") => Ok(Transport::Unix),
            Some("ext") => Ok(Transport::Ext),
            Some(other) => {
                Err(format!("{other:?} is not a libvirt transport (tls, ssh, libssh, libssh2, tcp, unix or ext)"))
            }
        }
    }

    /// Its name in words and files.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::Ssh => "ssh",
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Ext => "ext",
        }
    }
}

impl HostSpec {
    /// The transport of the host's URI (a URI that names none ferry knows is refused when
    /// the cluster file is read; such a spec counts as plaintext here).
    pub fn transport(&self) -> Transport {
        Transport::of_uri(&self.uri).unwrap_or(Transport::Tcp)
    }

    /// Whether a migration from `self` to `target` goes over TLS (`VIR_MIGRATE_TLS`): when
    /// both hosts' URIs use TLS, as a fleet that runs libvirt over TLS has migration
    /// certificates too (and a host with `migrate_tls_force` refuses anything else).
    pub fn migrates_tls_to(&self, target: &HostSpec) -> bool {
        self.transport() == Transport::Tls && target.transport() == Transport::Tls
    }

    /// Migration-direction rule, after Ganeti's migration tags: a host tagged
    /// `allow-from:CLASS` accepts VMs only from hosts tagged `CLASS`; a host without such
    /// tags accepts VMs from anywhere.
    pub fn accepts_from(&self, source: &HostSpec) -> bool {
        let mut classes = self.tags.iter().filter_map(|t| t.strip_prefix("allow-from:")).peekable();
        classes.peek().is_none() || classes.any(|class| source.tags.iter().any(|t| t == class))
    }
}

impl ClusterSpec {
    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// A hypervisor host as libvirt reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Name from the cluster file.
    pub name: String,
    /// libvirt URI.
    pub uri: String,
    /// Host CPU model (libvirt's name for it).
    pub cpu_model: String,
    /// Named guest CPU models this host can run, by virtualization type (`kvm`, `qemu`),
    /// from libvirt's domain capabilities.
    pub cpu_models: std::collections::BTreeMap<String, Vec<String>>,
    /// Logical CPUs.
    pub cpus: u32,
    /// Physical memory, MiB.
    pub memory_mib: u64,
    /// Free memory, MiB.
    pub free_memory_mib: u64,
    /// Hypervisor (QEMU) version.
    pub hypervisor_version: Version,
    /// libvirt version.
    pub libvirt_version: Version,
    /// Storage pools.
    pub pools: Vec<Pool>,
    /// Virtual networks.
    pub networks: Vec<String>,
}

/// A `major.minor.release` version as libvirt encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Release.
    pub release: u32,
}

impl Version {
    /// Decodes libvirt's `major * 1_000_000 + minor * 1000 + release`.
    pub fn from_libvirt(encoded: u32) -> Version {
        Version { major: encoded / 1_000_000, minor: encoded / 1000 % 1000, release: encoded % 1000 }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.release)
    }
}

/// A storage pool on a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Target directory (for directory pools).
    pub path: Option<String>,
    /// Capacity, bytes.
    pub capacity: u64,
    /// Free space, bytes.
    pub available: u64,
    /// Whether the cluster declares this pool's storage reachable by every host.
    pub shared: bool,
}

/// A VM: a libvirt domain. Its UUID is kept by every move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    /// Domain UUID.
    pub uuid: String,
    /// Domain name.
    pub name: String,
    /// Host it is on (running there, or defined there when stopped).
    pub host: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Guest CPU model, when the domain names one.
    pub cpu_model: Option<String>,
    /// Virtualization type: `kvm`, or `qemu` for software emulation (TCG).
    pub virt_type: String,
    /// Whether its memory is locked in host RAM (`<memoryBacking><locked/>`): zero-copy
    /// migration sends need it.
    #[serde(default)]
    pub memory_locked: bool,
    /// Run state.
    pub state: VmState,
    /// Disks.
    pub disks: Vec<Disk>,
    /// Network interfaces.
    pub nics: Vec<Nic>,
    /// ferry's metadata on the domain, when a run has moved or is moving it.
    #[serde(default)]
    pub ferry: Option<Metadata>,
    /// The operators' tags on the domain (`ferry tag VM KEY=VALUE`), e.g. `maintenance =
    /// shutdown` for a roll; in the domain's metadata, so they travel with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The tag (`ferry tag VM anti_affinity=GROUP`) that puts a VM in an anti-affinity group:
/// no placement ferry makes puts two VMs of one group on one host.
pub const ANTI_AFFINITY_TAG: &str = "anti_affinity";

impl Vm {
    /// Its anti-affinity group, from its tags.
    pub fn anti_affinity(&self) -> Option<&str> {
        self.tags.get(ANTI_AFFINITY_TAG).map(String::as_str)
    }

    /// Disks that must be copied when the VM changes host.
    pub fn local_disks(&self) -> impl Iterator<Item = &Disk> {
        self.disks.iter().filter(|d| d.locality == Locality::HostLocal)
    }

    /// What a move copies of its disks, MiB: the virtual size of its host-local disks.
    pub fn local_disk_mib(&self) -> f64 {
        self.local_disks().map(|d| d.capacity.unwrap_or(0) as f64 / 1_048_576.0).sum()
    }
}

/// A domain's run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// Running.
    Running,
    /// Paused (by an operator, or by a migration's final phase).
    Paused,
    /// Defined but not running.
    ShutOff,
    /// Crashed, shutting down, suspended to memory, or unknown.
    Other,
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::ShutOff => "shut off",
            VmState::Other => "other",
        })
    }
}

/// A VM disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Guest device name (`vda`).
    pub target: String,
    /// Where its data lives.
    pub source: DiskSource,
    /// Image format (`qcow2`, `raw`).
    pub format: String,
    /// Whether it must be copied on a move.
    pub locality: Locality,
    /// Storage pool holding it, for file disks that belong to one.
    pub pool: Option<String>,
    /// Virtual size, bytes, when known.
    pub capacity: Option<u64>,
}

/// Where a disk's data lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DiskSource {
    /// A file on the host.
    File {
        /// Its path.
        path: String,
    },
    /// A block device on the host.
    Block {
        /// Its path.
        path: String,
    },
    /// A network disk (NBD, iSCSI, RBD, ...).
    Network {
        /// Protocol.
        protocol: String,
        /// Export or image name.
        name: String,
        /// `host:port` of each server.
        servers: Vec<String>,
    },
}

impl fmt::Display for DiskSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSource::File { path } | DiskSource::Block { path } => f.write_str(path),
            DiskSource::Network { protocol, name, servers } => {
                write!(f, "{protocol}://{}/{name}", servers.join(","))
            }
        }
    }
}

/// Whether a disk moves with its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Locality {
    /// Every host reaches the same data: nothing to copy.
    Shared,
    /// Only this host has it: copied on a move.
    HostLocal,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    /// MAC address.
    pub mac: String,
    /// Virtual network or bridge it attaches to.
    pub network: Option<String>,
}

/// Hosts and VMs of a cluster, as libvirt reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Hosts that answered.
    pub hosts: Vec<Host>,
    /// Every VM found, on any host.
    pub vms: Vec<Vm>,
    /// Hosts that could not be asked, with why.
    pub unreachable: Vec<(String, String)>,
}

impl Inventory {
    /// The VM named `name` (names are unique within a cluster ferry manages).
    pub fn vm(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.name == name)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// VMs on host `name`.
    pub fn vms_on<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Vm> + 'a {
        self.vms.iter().filter(move |v| v.host == name)
    }
}

/// Where a VM is known: one host's view of a UUID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Host name.
    pub host: String,
    /// Run state there.
    pub state: VmState,
    /// Whether the definition persists there.
    pub persistent: bool,
}

/// Whether a set of locations is exactly "runs on `host`, and nowhere else is it known".
pub fn runs_only_on(locations: &[Location], host: &str) -> bool {
    matches!(locations, [only] if only.host == host && only.state == VmState::Running)
}

/// What ferry writes on a domain so the hypervisor itself knows what ferry is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The run moving this VM.
    pub run_id: String,
    /// Host the VM was on when the run started.
    pub original_host: String,
    /// Phase of its move.
    pub phase: Phase,
    /// Which ferry holds the VM for the move, and since when: the lock that keeps two runs
    /// (from two journals, two operators) from moving one VM. None in metadata written
    /// before claims existed, and where no move holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
}

/// A ferry's hold on a VM for one move, written in the domain's metadata with its run id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The ferry process driving the move: `host:pid`, like a journal lease's owner.
    pub owner: String,
    /// When the owner last wrote it, Unix ms. The owner rewrites it every
    /// [`CLAIM_REFRESH_MS`] while no libvirt job holds the domain.
    pub refreshed_ms: i64,
}

/// How often a moving ferry rewrites its claim (libvirt refuses metadata writes while a
/// migration job holds the domain; the job is then the lock).
pub const CLAIM_REFRESH_MS: i64 = 5_000;

/// How recent a claim must be to count as held: the journal's lease time
/// (`ferry_journal::OWNER_ALIVE_WITHIN_MS`), so a claim and a lease die alike.
pub const CLAIM_ALIVE_WITHIN_MS: i64 = 15_000;

/// Whether something written at `at_ms` (a claim's refresh, a ticket) still holds at `now_ms`:
/// within [`CLAIM_ALIVE_WITHIN_MS`], or from the future (another host's clock ahead).
fn within_claim_lease(now_ms: i64, at_ms: i64) -> bool {
    now_ms.saturating_sub(at_ms) <= CLAIM_ALIVE_WITHIN_MS
}

/// What a ferry about to move a VM knows besides the VM's metadata.
#[derive(Debug, Clone, Copy)]
pub struct ClaimFacts<'a> {
    /// The run about to move the VM.
    pub run_id: &'a str,
    /// Now, Unix ms.
    pub now_ms: i64,
    /// Runs whose owners are alive in this ferry's journal.
    pub live_runs: &'a [String],
    /// Whether the claim's owner is known to run: a ferry process on this machine (or this
    /// process, still refreshing that claim).
    pub owner_running: bool,
    /// Whether a libvirt job (a migration) holds the domain now.
    pub job_running: bool,
}

/// The claim that stops `facts.run_id` from moving a VM, if any: metadata naming another
/// run whose move is not finalized and whose holder is alive — alive in our journal, its
/// owner running, a job on the domain, or its claim refreshed within
/// [`CLAIM_ALIVE_WITHIN_MS`] (a claim from the future, another host's clock ahead, counts).
/// A stale claim of a dead ferry is no lock: its run awaits `ferry resume` or
/// `ferry cleanup`, which preview's active-run check reports.
pub fn blocking_claim<'m>(metadata: Option<&'m Metadata>, facts: &ClaimFacts<'_>) -> Option<&'m Metadata> {
    let m = metadata?;
    if m.run_id == facts.run_id || m.phase == Phase::Finalized {
        return None;
    }
    let fresh = m.claim.as_ref().is_some_and(|c| within_claim_lease(facts.now_ms, c.refreshed_ms));
    let alive = facts.live_runs.contains(&m.run_id) || facts.job_running || fresh || facts.owner_running;
    alive.then_some(m)
}

/// A ferry's place in line for a VM's claim. Each claiming ferry writes one in a metadata
/// element of its own (one namespace per owner and run), so racing ferries never overwrite
/// each other's; libvirt keeps the elements in the order they were written, so the line is
/// the order the ferries arrived in, and the first held ticket claims the VM
/// ([`ticket_ahead`]). It lives from the claim's first write to its last, milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The run about to move the VM.
    pub run_id: String,
    /// The ferry process: `host:pid`, as a claim's owner.
    pub owner: String,
    /// When it was written, Unix ms.
    pub written_ms: i64,
}

impl Ticket {
    /// Whether `other` is this ferry's ticket for this run.
    pub fn same_holder(&self, other: &Ticket) -> bool {
        self.run_id == other.run_id && self.owner == other.owner
    }

    /// The claim this ticket stands for, in the words of metadata (for [`claim_refusal`]).
    pub fn as_metadata(&self, original_host: &str) -> Metadata {
        Metadata {
            run_id: self.run_id.clone(),
            original_host: original_host.to_string(),
            phase: Phase::Prepared,
            claim: Some(Claim { owner: self.owner.clone(), refreshed_ms: self.written_ms }),
        }
    }
}

/// The first ticket ahead of `mine` in `line` (tickets in the order they were written) that
/// is still held: written within [`CLAIM_ALIVE_WITHIN_MS`] (or from a clock ahead) by an
/// owner not known to be gone. A ferry that finds none, in a read made after its own ticket
/// was written, is first: any later ticket was written after its own and finds it ahead.
/// When `mine` is not in `line`, every held ticket counts as ahead.
pub fn ticket_ahead<'t>(
    line: &'t [Ticket],
    mine: &Ticket,
    now_ms: i64,
    owner_gone: impl Fn(&str) -> bool,
) -> Option<&'t Ticket> {
    line.iter()
        .take_while(|t| !t.same_holder(mine))
        .find(|t| within_claim_lease(now_ms, t.written_ms) && !owner_gone(&t.owner))
}

/// Why a move is refused while another run holds its VM, and what to do.
pub fn claim_refusal(metadata: &Metadata, host: &str) -> String {
    let owner = metadata.claim.as_ref().map_or("unknown", |c| c.owner.as_str());
    format!(
        "being moved by run {} (host {host}, owner {owner}); wait for it, or `ferry abort {}`",
        metadata.run_id, metadata.run_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_names_its_transport_and_tls_migrates_only_between_tls_hosts() {
        for (uri, expect) in [
            ("qemu+tls://10.0.0.1/system?pkipath=/etc/pki/ferry", Ok(Transport::Tls)),
            ("qemu://10.0.0.1/system", Ok(Transport::Tls)),
            ("qemu+ssh://root@h/system?keyfile=/k", Ok(Transport::Ssh)),
            ("qemu+libssh://root@h:2222/system", Ok(Transport::Ssh)),
            ("qemu+libssh2://h/system", Ok(Transport::Ssh)),
            ("qemu+tcp://127.0.0.1:16509/system", Ok(Transport::Tcp)),
            ("qemu:///system", Ok(Transport::Unix)),
            ("qemu+unix:///system", Ok(Transport::Unix)),
            ("qemu+ext:///system?command=/bin/x", Ok(Transport::Ext)),
        ] {
            assert_eq!(Transport::of_uri(uri), expect, "{uri}");
        }
        assert!(Transport::of_uri("qemu+tsl://h/system").is_err_and(|e| e.contains("\"tsl\" is not")));
        assert!(Transport::of_uri("nope").is_err());
        let spec = |uri: &str| HostSpec {
            name: "h".into(),
            uri: uri.into(),
            migration_uri: None,
            group: "g".into(),
            tags: vec![],
            link_mib_s: None,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            maintenance: false,
            shared_pools: vec![],
            stream: Default::default(),
        };
        let (tls, tcp) = (spec("qemu+tls://a/system"), spec("qemu+tcp://b/system"));
        assert!(tls.migrates_tls_to(&spec("qemu://c/system")));
        assert!(!tls.migrates_tls_to(&tcp));
        assert!(!tcp.migrates_tls_to(&tls));
        assert!(!spec("qemu+ssh://a/system").migrates_tls_to(&spec("qemu+ssh://b/system")));
    }

    #[test]
    fn direction_rules_follow_allow_from_tags() {
        let host = |tags: &[&str]| HostSpec {
            name: "h".into(),
            uri: "test:///".into(),
            migration_uri: None,
            group: "g".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            link_mib_s: None,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            maintenance: false,
            shared_pools: vec![],
            stream: Default::default(),
        };
        assert!(host(&[]).accepts_from(&host(&["old"])));
        assert!(host(&["allow-from:old"]).accepts_from(&host(&["old"])));
        assert!(!host(&["allow-from:old"]).accepts_from(&host(&["new"])));
        assert!(host(&["allow-from:old", "allow-from:new"]).accepts_from(&host(&["new"])));
    }

    #[test]
    fn libvirt_versions_decode() {
        let v = Version::from_libvirt(11_003_000);
        assert_eq!(v.to_string(), "11.3.0");
        assert!(Version::from_libvirt(10_000_002) < v);
    }

    #[test]
    fn runs_only_on_needs_one_running_location() {
        let at = |host: &str, state| Location { host: host.into(), state, persistent: true };
        assert!(runs_only_on(&[at("b", VmState::Running)], "b"));
        assert!(!runs_only_on(&[at("a", VmState::Running)], "b"));
        assert!(!runs_only_on(&[at("b", VmState::Running), at("a", VmState::ShutOff)], "b"));
        assert!(!runs_only_on(&[at("b", VmState::Paused)], "b"));
        assert!(!runs_only_on(&[], "b"));
    }

    #[test]
    fn a_claim_blocks_only_while_another_run_holds_it_alive() {
        const NOW: i64 = 1_000_000;
        let meta = |run: &str, phase, refreshed_ms: Option<i64>| Metadata {
            run_id: run.into(),
            original_host: "host-a".into(),
            phase,
            claim: refreshed_ms.map(|refreshed_ms| Claim { owner: "ops-1:42".into(), refreshed_ms }),
        };
        let live = vec!["r-live".to_string()];
        let no_runs: Vec<String> = Vec::new();
        let facts = |live_runs, owner_running, job_running| ClaimFacts {
            run_id: "r-me",
            now_ms: NOW,
            live_runs,
            owner_running,
            job_running,
        };
        let stale = Some(NOW - CLAIM_ALIVE_WITHIN_MS - 1);
        let fresh = Some(NOW - CLAIM_ALIVE_WITHIN_MS);
        // (case, metadata, facts, blocked)
        let cases: Vec<(&str, Option<Metadata>, ClaimFacts<'_>, bool)> = vec![
            ("no metadata", None, facts(&no_runs, false, false), false),
            (
                "other run, refreshed at the lease's edge",
                Some(meta("r-x", Phase::Transferring, fresh)),
                facts(&no_runs, false, false),
                true,
            ),
            (
                "other run, stale claim, owner gone",
                Some(meta("r-x", Phase::Transferring, stale)),
                facts(&no_runs, false, false),
                false,
            ),
            (
                "other run, claim from a clock ahead",
                Some(meta("r-x", Phase::Prepared, Some(NOW + 60_000))),
                facts(&no_runs, false, false),
                true,
            ),
            (
                "other run, stale claim, owner running",
                Some(meta("r-x", Phase::Prepared, stale)),
                facts(&no_runs, true, false),
                true,
            ),
            (
                "other run, stale claim, its job runs",
                Some(meta("r-x", Phase::Transferring, stale)),
                facts(&no_runs, false, true),
                true,
            ),
            (
                "other run alive in our journal, old metadata",
                Some(meta("r-live", Phase::Transferring, None)),
                facts(&live, false, false),
                true,
            ),
            (
                "other run, old metadata, nothing alive",
                Some(meta("r-x", Phase::Transferring, None)),
                facts(&live, false, false),
                false,
            ),
            (
                "own run, fresh claim",
                Some(meta("r-me", Phase::Transferring, fresh)),
                facts(&no_runs, true, true),
                false,
            ),
            (
                "other run, finalized, fresh claim",
                Some(meta("r-live", Phase::Finalized, fresh)),
                facts(&live, true, false),
                false,
            ),
        ];
        for (case, metadata, facts, blocked) in cases {
            assert_eq!(blocking_claim(metadata.as_ref(), &facts).is_some(), blocked, "{case}");
        }
    }

    #[test]
    fn the_first_held_ticket_in_line_claims_the_vm() {
        const NOW: i64 = 1_000_000;
        let ticket =
            |run: &str, owner: &str, written_ms| Ticket { run_id: run.into(), owner: owner.into(), written_ms };
        let mine = ticket("r-me", "ops-1:7", NOW);
        let other = ticket("r-x", "ops-2:9", NOW - 5);
        let stale = ticket("r-old", "ops-3:1", NOW - CLAIM_ALIVE_WITHIN_MS - 1);
        let gone = ticket("r-dead", "ops-1:99", NOW - 5);
        let ahead_clock = ticket("r-y", "ops-4:2", NOW + 60_000);
        let none_gone: &[&str] = &[];
        // (case, line, owners gone, the run of the ticket ahead)
        type Case<'a> = (&'a str, Vec<Ticket>, &'a [&'a str], Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            ("alone", vec![mine.clone()], none_gone, None),
            ("first, another behind", vec![mine.clone(), other.clone()], none_gone, None),
            ("behind another", vec![other.clone(), mine.clone()], none_gone, Some("r-x")),
            ("behind a stale one", vec![stale.clone(), mine.clone()], none_gone, None),
            ("behind a gone owner's", vec![gone.clone(), mine.clone()], &["ops-1:99"], None),
            ("behind a live owner's", vec![gone.clone(), mine.clone()], none_gone, Some("r-dead")),
            ("behind stale, then held", vec![stale.clone(), other.clone(), mine.clone()], none_gone, Some("r-x")),
            ("mine missing", vec![other.clone()], none_gone, Some("r-x")),
            ("from a clock ahead", vec![ahead_clock.clone(), mine.clone()], none_gone, Some("r-y")),
        ];
        for (case, line, gone, ahead) in cases {
            let found = ticket_ahead(&line, &mine, NOW, |owner| gone.contains(&owner));
            assert_eq!(found.map(|t| t.run_id.as_str()), ahead, "{case}");
        }
    }

    #[test]
    fn a_refusal_names_the_run_its_host_and_owner_and_what_to_do() {
        let m = Metadata {
            run_id: "r-7".into(),
            original_host: "host-a".into(),
            phase: Phase::Transferring,
            claim: Some(Claim { owner: "ops-1:42".into(), refreshed_ms: 0 }),
        };
        assert_eq!(
            claim_refusal(&m, "host-a"),
            "being moved by run r-7 (host host-a, owner ops-1:42); wait for it, or `ferry abort r-7`"
        );
    }
}
