//! A real multi-host libvirt cluster on one Linux machine, for ferry's tests, benchmarks and
//! quick start: N libvirtd daemons, each in its own mount namespace with its own directories,
//! host UUID, TCP port and migration port range; a host-local storage pool per host; shared
//! network storage (an NBD export); tiny TCG guests running ferry's guest workload, whose
//! serial logs prove that no migration lost anything. With `--link`, every host has its own
//! network namespace and a shaped outbound link, so concurrent migrations really share it.

pub mod image;
pub mod layout;
pub mod net;
pub mod pki;
pub mod process;
mod ssh;
pub mod xml;

mod check;
mod up;

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use check::{check, status, CheckConfig, HostStatus, LabStatus, VmCheck, VmStatus};
pub use ferry_heartbeat::MemoryMix;
pub use layout::Transport;
pub use up::{down, up, UpConfig};

/// Everything that can go wrong bringing a lab up or down.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A flag value out of range.
    #[error("{0}")]
    BadInput(String),
    /// The lab directory cannot be used.
    #[error("lab directory {path} is not usable")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Ports the lab needs are taken.
    #[error("ports already in use on 127.0.0.1: {ports}; choose another --port-base")]
    PortsInUse {
        /// The ports, summarised.
        ports: String,
    },
    /// An existing lab has another shape than asked for.
    #[error(
        "{dir} already holds a lab of {hosts} hosts and {vms} VMs; use another --dir or `ferry lab down --purge` first"
    )]
    ShapeMismatch {
        /// The lab directory.
        dir: PathBuf,
        /// Hosts it has.
        hosts: usize,
        /// VMs it has.
        vms: usize,
    },
    /// An existing lab has another kind of network than asked for.
    #[error(
        "{dir} already holds a lab {has}; pass the same --link, use another --dir, or `ferry lab down --purge` first"
    )]
    LinkMismatch {
        /// The lab directory.
        dir: PathBuf,
        /// What it has: "with --link N MiB/s" or "without --link".
        has: String,
    },
    /// An existing lab reaches its hosts another way than asked for.
    #[error(
        "{dir} already holds a lab with --transport {has}; pass --transport {has}, use another --dir, or `ferry lab down --purge` first"
    )]
    TransportMismatch {
        /// The lab directory.
        dir: PathBuf,
        /// The transport it has.
        has: &'static str,
    },
    /// The lab's network namespaces hold processes that are not the lab's.
    #[error("network namespaces {namespaces} hold processes of another lab ({pids}); choose another --port-base")]
    NetworkInUse {
        /// The namespaces.
        namespaces: String,
        /// The processes in them.
        pids: String,
    },
    /// The machine already routes the lab network's addresses.
    #[error("the lab network {subnet} (derived from --port-base) is already routed here: {routes}; choose another --port-base")]
    SubnetTaken {
        /// The lab's /24.
        subnet: String,
        /// The routes in the way.
        routes: String,
    },
    /// A command building or removing the lab's network failed.
    #[error("lab network: {command}: {reason}")]
    Network {
        /// The command.
        command: String,
        /// What it said.
        reason: String,
    },
    /// No lab in this directory.
    #[error("no lab in {0}: run `ferry lab up` first")]
    NoLab(PathBuf),
    /// A process could not be started.
    #[error("could not start {what}")]
    Spawn {
        /// The command.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A daemon did not come up.
    #[error("{host}: daemon did not start: {reason}")]
    DaemonFailed {
        /// Host (or "shared storage").
        host: String,
        /// What it said.
        reason: String,
    },
    /// A libvirt call failed.
    #[error("{host}: {action}: {message}")]
    Libvirt {
        /// Host name.
        host: String,
        /// What was being done.
        action: String,
        /// libvirt's message.
        message: String,
    },
    /// Guests did not print a heartbeat in time.
    #[error("no heartbeat within {seconds} s from: {vms}")]
    NoHeartbeat {
        /// Seconds waited.
        seconds: u64,
        /// The silent guests.
        vms: String,
    },
    /// The guest image could not be built.
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// The lab state file is unreadable.
    #[error("lab state {path} is unreadable: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another IO failure.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl LabError {
    /// Whether the error is the user's input (exit 2) rather than a failure (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LabError::BadInput(_)
                | LabError::Dir { .. }
                | LabError::PortsInUse { .. }
                | LabError::ShapeMismatch { .. }
                | LabError::LinkMismatch { .. }
                | LabError::TransportMismatch { .. }
                | LabError::NetworkInUse { .. }
                | LabError::SubnetTaken { .. }
                | LabError::NoLab(_)
        )
    }
}

/// What the lab knows about itself, kept in `DIR/lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// First port of the lab's port block.
    pub port_base: u16,
    /// The hosts.
    pub hosts: Vec<LabHost>,
    /// The guests.
    pub vms: Vec<LabVm>,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Guest initramfs.
    pub initrd: PathBuf,
    /// Each host's outbound link, MiB/s, when hosts have their own network (`--link`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_mib_s: Option<u64>,
    /// How its hosts are reached; a state file written before transports is a TCP lab.
    #[serde(default)]
    pub transport: Transport,
}

/// One lab host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabHost {
    /// Name, `host-a`, ...
    pub name: String,
    /// libvirt URI.
    pub uri: String,
    /// libvirtd's TCP port.
    pub port: u16,
    /// Where libvirtd listens and migrations arrive.
    #[serde(default = "loopback")]
    pub address: Ipv4Addr,
    /// The host's network namespace (`--link`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The UUID libvirt uses to tell hosts apart.
    pub host_uuid: String,
}

fn loopback() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}

/// One lab guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabVm {
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// The host it was first started on.
    pub home: String,
    /// Memory, MiB.
    pub mem_mib: u64,
    /// Dirty rate, MiB/s.
    pub dirty_mib_s: f64,
    /// Working set, MiB.
    pub wss_mib: u64,
    /// What its working set holds (`ZERO:TEXT:RANDOM` percent of pages); labs from before
    /// mixes get the default when a guest is defined again.
    #[serde(default, with = "mix_text")]
    pub memory_mix: MemoryMix,
    /// Its data disk.
    pub disk: LabDisk,
}

/// A memory mix in `lab.json` as it is written everywhere else, `25:50:25`.
mod mix_text {
    use ferry_heartbeat::MemoryMix;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mix: &MemoryMix, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(mix)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MemoryMix, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A lab guest's data disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LabDisk {
    /// A qcow2 volume in the home host's pool `local`.
    Local {
        /// Volume name.
        volume: String,
    },
    /// An NBD export of the shared storage.
    Shared {
        /// Export name.
        export: String,
    },
}

/// The working set a lab guest of `mem_mib` dirties and verifies, MiB: a quarter of its
/// memory, and never more than half of what the kernel and initramfs leave (about 72 MiB go
/// to them).
pub const fn guest_working_set_mib(mem_mib: u64) -> u64 {
    let quarter = mem_mib / 4;
    let half_left = mem_mib.saturating_sub(72) / 2;
    let wss = if quarter < half_left { quarter } else { half_left };
    if wss > 8 {
        wss
    } else {
        8
    }
}
/// Memory of a lab guest that is neither zero nor its working set, MiB: the kernel, the
/// initramfs and its unpacked copy, page tables. Uncapped moves of a 256 MiB guest dirtying
/// 5 MiB/s sent 133.7–135 MiB, of which ~2.5 MiB dirtied during the pass and 64 MiB working
/// set (bench estimate_vs_real, 2026-11-23); 128 MiB guests boot the same image.
pub const GUEST_BASE_NONZERO_MIB: f64 = 68.0;
/// Memory of a lab guest of `mem_mib` with `mix` that is not zero, MiB: what a migration sends
/// in full, the zero pages of its working set being sent as headers alone.
pub fn guest_nonzero_mib(mem_mib: u64, mix: MemoryMix) -> f64 {
    let working_set = guest_working_set_mib(mem_mib) as f64;
    GUEST_BASE_NONZERO_MIB + working_set * f64::from(100 - mix.zero) / 100.0
}
/// How fast the lab sends pages past a migration's cap (its final pause, post-copy), MiB/s,
/// without a shaped link: the `link_mib_s` every bench gives the estimate for the lab's
/// loopback. Fitted (bench estimate_vs_real, 2026-11-26) on pauses at a 32 MiB/s cap with
/// downtime limits of 75, 300 and 600 ms: 0.53 ms a MiB more than the model's pause, ~1900
/// MiB/s. Pages the destination never had cross slower (~350 MiB/s: a pause carrying all of a
/// 128 MiB guest's data took 362–412 ms), which the model does not tell apart: post-copy's
/// and a first pass's pause are predicted short.
pub const LOOPBACK_PAGE_MIB_S: f64 = 2000.0;
/// How much missed work a lab guest makes up after auto-converge stopped its vCPU, s: it
/// dirties to a clock and catches up at most 50 ms (`crates/guest`, `MAX_BACKLOG`).
pub const GUEST_CATCH_UP_S: f64 = 0.05;
/// How long a shaped link's queue holds packets (`tc tbf latency`), ms: with `--link`, a
/// migration's last pages wait about this long behind the others' while the link is full.
pub const LINK_QUEUE_MS: u32 = 50;
/// Size of each guest's data disk.
pub const DATA_DISK_MIB: u64 = 16;
/// Name of each host's local storage pool.
pub const LOCAL_POOL: &str = "local";

impl LabState {
    /// Reads `DIR/lab.json`.
    pub fn load(dir: &Path) -> Result<LabState, LabError> {
        let path = dir.join("lab.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LabError::NoLab(dir.to_path_buf())),
            Err(e) => return Err(LabError::State { path, reason: e.to_string() }),
        };
        serde_json::from_str(&text).map_err(|e| LabError::State { path, reason: e.to_string() })
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&LabHost> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// The lab directory when none is given: `$XDG_STATE_HOME/ferry/lab`, else
/// `~/.local/state/ferry/lab`.
pub fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("ferry").join("lab")
}

/// Opens a connection to a lab host, with libvirt's own stderr printing silenced.
pub(crate) fn connect(host: &LabHost) -> Result<virt::connect::Connect, LabError> {
    virt::error::clear_error_callback();
    virt::connect::Connect::open(Some(&host.uri)).map_err(|e| LabError::Libvirt {
        host: host.name.clone(),
        action: "connect".into(),
        message: e.message().to_string(),
    })
}

/// Maps a libvirt error into a [`LabError`] for `host` doing `action`.
pub(crate) fn libvirt_err(host: &str, action: &str) -> impl Fn(virt::error::Error) -> LabError {
    let host = host.to_string();
    let action = action.to_string();
    move |e| LabError::Libvirt { host: host.clone(), action: action.clone(), message: e.message().to_string() }
}

#[cfg(test)]
mod tests {
    use super::{guest_nonzero_mib, guest_working_set_mib, MemoryMix};

    #[test]
    fn a_guest_works_on_a_quarter_of_its_memory_within_half_of_what_the_kernel_leaves() {
        assert_eq!(guest_working_set_mib(256), 64);
        assert_eq!(guest_working_set_mib(128), 28);
        assert_eq!(guest_working_set_mib(96), 12);
        assert_eq!(guest_working_set_mib(80), 8);
    }

    #[test]
    fn the_zero_pages_of_the_mix_are_not_sent_in_full() {
        assert_eq!(guest_nonzero_mib(256, MemoryMix::DEFAULT), 68.0 + 48.0);
        assert_eq!(guest_nonzero_mib(256, MemoryMix { zero: 0, text: 0, random: 100 }), 68.0 + 64.0);
        assert_eq!(guest_nonzero_mib(256, MemoryMix { zero: 100, text: 0, random: 0 }), 68.0);
    }
}
