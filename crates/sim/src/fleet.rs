//! The fleet description: what `--cluster sim:FILE` reads and `ferry sim gen` writes.
//!
//! ```toml
//! [sim]
//! seed = 7                          # every random draw of the simulation follows from it
//! start = "2026-01-01T00:00:00Z"    # the virtual clock when the simulation starts
//! migration_error_rate = 0.01       # chance that a live migration's stream breaks in pass 1
//!
//! [[fault]]                         # a host goes down at a virtual time
//! host = "h-0003"
//! down_at_s = 600
//!
//! [[host]]
//! name = "h-0001"
//! group = "default"                 # host group (moves stay inside one unless allowed)
//! tags = ["rack-01"]
//! cpus = 64
//! memory_mib = 524288
//! link_mib_s = 1250                 # migration link, each way (full duplex)
//! compress_cpu_ms_per_mib = 2.5     # CPU ms a core spends compressing a MiB of memory
//!                                   # (default: 2.5 for zstd, 12.5 for zlib; assumed)
//!
//! [[vm]]
//! name = "vm-00001"
//! host = "h-0001"
//! memory_mib = 8192
//! vcpus = 4
//! dirty_mib_s = 20                  # how fast the guest dirties memory
//! working_set_mib = 2048            # what it keeps rewriting (default: all of memory)
//! nonzero_mib = 6144                # memory that is not zero pages (default: all of memory)
//! disk_mib = 0                      # host-local disk copied on a move; 0: shared storage
//! compression_ratio = 2.08          # memory per byte sent when compressed (default 1.0)
//! tags = { anti_affinity = "db" }   # the operators' tags (`ferry tag`)
//! ```
//!
//! A file whose name ends in `.json` is read as JSON with the same fields (`host`, `vm` and
//! `fault` arrays, a `sim` object). Everything is validated before anything runs; every
//! problem names the file, the line (TOML) and the field.

use std::collections::{BTreeMap, HashMap};

use ferry_model::{ClusterSpec, HostSpec};
use ferry_plan::InputError;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A simulated fleet: hosts, VMs, faults and the simulation's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// The simulation's settings.
    #[serde(default)]
    pub sim: Settings,
    /// Hosts.
    #[serde(rename = "host")]
    pub hosts: Vec<HostDesc>,
    /// VMs.
    #[serde(rename = "vm", default)]
    pub vms: Vec<VmDesc>,
    /// Injected faults.
    #[serde(rename = "fault", default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
}

/// The simulation's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Every random draw follows from it: the same seed, the same simulation.
    #[serde(default)]
    pub seed: u64,
    /// The virtual clock at the start, RFC 3339.
    #[serde(default = "default_start")]
    pub start: String,
    /// Chance that a live migration's stream breaks (at a random point of its first pass);
    /// the VM then stays on its source.
    #[serde(default)]
    pub migration_error_rate: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { seed: 0, start: default_start(), migration_error_rate: 0.0 }
    }
}

/// Where the virtual clock starts unless the file says: 2026-01-01T00:00:00Z, a fixed
/// instant, so that the same fleet gives the same journal.
pub const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

fn default_start() -> String {
    DEFAULT_START.to_string()
}

/// A simulated host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDesc {
    /// Name used in plans and reports.
    pub name: String,
    /// Host group.
    #[serde(default = "default_group")]
    pub group: String,
    /// Tags (migration-direction rules match on them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Logical CPUs.
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Physical memory, MiB.
    pub memory_mib: u64,
    /// Migration link, MiB/s, each way: outbound migrations share it, inbound ones share
    /// another of the same speed.
    pub link_mib_s: u64,
    /// How long its outbound link's queue holds data while migrations fill it, ms: a final
    /// pause waits that long more for its last pages. The lab's shaped links queue 50 ms
    /// (`tc tbf latency`); a data-centre switch port, far less.
    #[serde(default, skip_serializing_if = "is_default")]
    pub link_queue_ms: f64,
    /// vCPUs allowed per CPU.
    #[serde(default = "default_cpu_overcommit")]
    pub cpu_overcommit: f64,
    /// Memory allowed per physical byte.
    #[serde(default = "one")]
    pub memory_overcommit: f64,
    /// In maintenance: never a target.
    #[serde(default, skip_serializing_if = "is_false")]
    pub maintenance: bool,
    /// CPU ms one of its cores spends compressing a MiB of guest memory, when a migration
    /// leaving it compresses (each multifd channel is a thread on a core). Absent: the
    /// compression's assumed default ([`crate::ZSTD_CPU_MS_PER_MIB`],
    /// [`crate::ZLIB_CPU_MS_PER_MIB`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress_cpu_ms_per_mib: Option<f64>,
}

fn default_group() -> String {
    "default".into()
}

fn default_cpus() -> u32 {
    64
}

fn default_cpu_overcommit() -> f64 {
    4.0
}

fn one() -> f64 {
    1.0
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A simulated VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDesc {
    /// Name.
    pub name: String,
    /// UUID; derived from the VM's position in the file when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Host it runs on.
    pub host: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// How fast the guest dirties memory, MiB/s.
    #[serde(default)]
    pub dirty_mib_s: f64,
    /// What the guest keeps rewriting, MiB: no pass after the first resends more. All of
    /// memory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_set_mib: Option<f64>,
    /// Memory holding anything but zeros, MiB: pass 1 sends only this at the link's pace.
    /// All of memory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonzero_mib: Option<f64>,
    /// How much work the guest makes up after auto-converge stopped its vCPU, seconds, when
    /// it works to a clock (requests, or the lab's guest, 0.05) rather than as fast as it
    /// can. Absent: CPU-bound, its dirtying falls with its CPU time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_s: Option<f64>,
    /// Host-local disk copied on a move, MiB; 0: the disk is on shared storage.
    #[serde(default, skip_serializing_if = "is_default")]
    pub disk_mib: u64,
    /// Whether it runs (a stopped VM moves cold).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub running: bool,
    /// Seconds the guest takes to shut down when asked.
    #[serde(default = "default_shutdown", skip_serializing_if = "is_default_shutdown")]
    pub shutdown_s: f64,
    /// Guest memory carried per byte sent when a migration compresses its memory (zstd or
    /// zlib on multifd channels), as the lab measures it (`memory / bytes sent`). Absent:
    /// [`crate::DEFAULT_COMPRESSION_RATIO`], no gain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_ratio: Option<f64>,
    /// The operators' tags, as `ferry tag` sets them on a real domain (`maintenance`,
    /// `anti_affinity`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

fn default_vcpus() -> u32 {
    2
}

/// A field left at its default is not written: fleet files stay as short as `sim gen` can make them.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_shutdown() -> f64 {
    10.0
}

fn is_default_shutdown(s: &f64) -> bool {
    *s == default_shutdown()
}

/// A fault injected at a virtual time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The host that goes down: it answers nothing any more, and its VMs with it.
    pub host: String,
    /// Seconds after the start.
    pub down_at_s: f64,
}

/// The URI scheme of a simulated host in the cluster a fleet gives (`sim:///NAME`).
pub const SIM_URI_PREFIX: &str = "sim:///";

/// The shared storage pool every simulated host has.
pub const SHARED_POOL: &str = "shared";

impl Fleet {
    /// Parses and validates a fleet file: JSON when `file` ends in `.json`, TOML otherwise.
    /// Every problem is reported, each naming the file, the line when known, and the field.
    pub fn parse(file: &str, text: &str) -> Result<Fleet, Vec<InputError>> {
        let err =
            |line: Option<usize>, message: String| vec![InputError { file: file.into(), line, field: None, message }];
        let (fleet, lines) = if file.ends_with(".json") {
            let fleet: Fleet = serde_json::from_str(text).map_err(|e| err(Some(e.line()), e.to_string()))?;
            (fleet, Lines::default())
        } else {
            let raw: RawFleet = toml::from_str(text)
                .map_err(|e| err(e.span().map(|s| line_of(text, s.start)), e.message().trim().to_string()))?;
            let breaks: Vec<usize> = text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i).collect();
            let line = |offset: usize| breaks.partition_point(|&b| b < offset) + 1;
            let lines = Lines {
                hosts: raw.host.iter().map(|h| line(h.span().start)).collect(),
                vms: raw.vm.iter().map(|v| line(v.span().start)).collect(),
                faults: raw.fault.iter().map(|f| line(f.span().start)).collect(),
            };
            let fleet = Fleet {
                sim: raw.sim,
                hosts: raw.host.into_iter().map(Spanned::into_inner).collect(),
                vms: raw.vm.into_iter().map(Spanned::into_inner).collect(),
                faults: raw.fault.into_iter().map(Spanned::into_inner).collect(),
            };
            (fleet, lines)
        };
        let errors = fleet.problems(file, &lines);
        if errors.is_empty() {
            Ok(fleet)
        } else {
            Err(errors)
        }
    }

    /// The fleet as TOML, in the format [`Fleet::parse`] reads.
    pub fn to_toml(&self) -> String {
        let mut text = String::from("# A simulated fleet for ferry: `ferry <command> --cluster sim:FILE`.\n");
        text.push_str(&toml::to_string(self).expect("a fleet is plain data"));
        text
    }

    /// Unix seconds of the virtual clock at the start.
    pub fn start_unix(&self) -> i64 {
        ferry_plan::time::parse_rfc3339(&self.sim.start).expect("validated when parsed")
    }

    /// The hosts as a ferry cluster (what a cluster file would declare).
    pub fn cluster(&self) -> ClusterSpec {
        ClusterSpec {
            hosts: self
                .hosts
                .iter()
                .map(|h| HostSpec {
                    name: h.name.clone(),
                    uri: format!("{SIM_URI_PREFIX}{}", h.name),
                    migration_uri: None,
                    group: h.group.clone(),
                    tags: h.tags.clone(),
                    link_mib_s: Some(h.link_mib_s),
                    cpu_overcommit: h.cpu_overcommit,
                    memory_overcommit: h.memory_overcommit,
                    maintenance: h.maintenance,
                    shared_pools: vec![SHARED_POOL.into()],
                    stream: Default::default(),
                })
                .collect(),
        }
    }

    /// The UUID of the `i`-th VM: its own, or one derived from its position.
    pub fn uuid(&self, i: usize) -> String {
        self.vms[i].uuid.clone().unwrap_or_else(|| derived_uuid(i))
    }

    /// Each VM's dirty rate, MiB/s, by UUID: what a measurement would find.
    pub fn dirty_rates(&self) -> HashMap<String, f64> {
        (0..self.vms.len()).map(|i| (self.uuid(i), self.vms[i].dirty_mib_s)).collect()
    }

    /// What the fleet declares of each VM's memory, by UUID, for the estimates.
    pub fn memory_profiles(&self) -> HashMap<String, ferry_preview::MemoryProfile> {
        (0..self.vms.len())
            .map(|i| {
                let v = &self.vms[i];
                (
                    self.uuid(i),
                    ferry_preview::MemoryProfile { nonzero_mib: v.nonzero_mib, working_set_mib: v.working_set_mib },
                )
            })
            .collect()
    }

    fn problems(&self, file: &str, lines: &Lines) -> Vec<InputError> {
        let mut errors = Vec::new();
        let mut error = |line: Option<usize>, field: String, message: String| {
            errors.push(InputError { file: file.into(), line, field: Some(field), message })
        };
        if let Err(e) = ferry_plan::time::parse_rfc3339(&self.sim.start) {
            error(None, "sim.start".into(), e);
        }
        let rate = self.sim.migration_error_rate;
        if !(0.0..=1.0).contains(&rate) {
            error(None, "sim.migration_error_rate".into(), format!("{rate} must be a chance between 0 and 1"));
        }
        if self.hosts.is_empty() {
            error(
                None,
                "host".into(),
                "no hosts: add at least one [[host]] with a name, memory_mib and link_mib_s".into(),
            );
        }
        let mut hosts: HashMap<&str, usize> = HashMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let line = lines.hosts.get(i).copied();
            let field = |name: &str| format!("host[{i}].{name}");
            if h.name.trim().is_empty() {
                error(line, field("name"), "must not be empty".into());
            } else if let Some(first) = hosts.insert(&h.name, i) {
                error(line, field("name"), format!("{:?} is already the name of host[{first}]", h.name));
            }
            if h.memory_mib == 0 {
                error(line, field("memory_mib"), "must be positive".into());
            }
            if h.link_mib_s == 0 {
                error(line, field("link_mib_s"), "must be a positive bandwidth in MiB/s".into());
            }
            if h.cpus == 0 {
                error(line, field("cpus"), "must be positive".into());
            }
            for (name, v) in [("cpu_overcommit", h.cpu_overcommit), ("memory_overcommit", h.memory_overcommit)] {
                if !(v > 0.0 && v.is_finite()) {
                    error(line, field(name), format!("{v} must be a positive ratio"));
                }
            }
            if let Some(ms) = h.compress_cpu_ms_per_mib.filter(|ms| !(*ms > 0.0 && ms.is_finite())) {
                error(line, field("compress_cpu_ms_per_mib"), format!("{ms} must be a positive time in ms"));
            }
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut uuids: HashMap<String, usize> = HashMap::new();
        let mut load: BTreeMap<usize, u64> = BTreeMap::new();
        for (i, v) in self.vms.iter().enumerate() {
            let line = lines.vms.get(i).copied();
            let field = |name: &str| format!("vm[{i}].{name}");
            if v.name.trim().is_empty() {
                error(line, field("name"), "must not be empty".into());
            } else if let Some(first) = names.insert(&v.name, i) {
                error(line, field("name"), format!("{:?} is already the name of vm[{first}]", v.name));
            }
            if let Some(first) = uuids.insert(self.uuid(i), i) {
                error(line, field("uuid"), format!("{} is already the UUID of vm[{first}]", self.uuid(i)));
            }
            match hosts.get(v.host.as_str()) {
                Some(&h) => *load.entry(h).or_default() += v.memory_mib,
                None => {
                    let hint = ferry_plan::closest(&v.host, hosts.keys().copied())
                        .map(|c| format!("; did you mean {c}?"))
                        .unwrap_or_default();
                    error(line, field("host"), format!("no host {:?} in the fleet{hint}", v.host));
                }
            }
            if v.memory_mib == 0 {
                error(line, field("memory_mib"), "must be positive".into());
            }
            if !(v.dirty_mib_s >= 0.0 && v.dirty_mib_s.is_finite()) {
                error(line, field("dirty_mib_s"), format!("{} must be a rate of 0 or more", v.dirty_mib_s));
            }
            for (name, value) in [("working_set_mib", v.working_set_mib), ("nonzero_mib", v.nonzero_mib)] {
                if let Some(x) = value {
                    if !(x >= 0.0 && x <= v.memory_mib as f64) {
                        error(
                            line,
                            field(name),
                            format!("{x} must be between 0 and the VM's memory ({} MiB)", v.memory_mib),
                        );
                    }
                }
            }
            if let Some(r) = v.compression_ratio.filter(|r| !(*r > 0.0 && r.is_finite())) {
                error(line, field("compression_ratio"), format!("{r} must be a positive ratio (memory per byte sent)"));
            }
            if !(v.shutdown_s >= 0.0 && v.shutdown_s.is_finite()) {
                error(line, field("shutdown_s"), format!("{} must be 0 or more seconds", v.shutdown_s));
            }
        }
        for (h, used) in load {
            let host = &self.hosts[h];
            let capacity = host.memory_mib as f64 * host.memory_overcommit;
            if used as f64 > capacity {
                error(
                    lines.hosts.get(h).copied(),
                    format!("host[{h}].memory_mib"),
                    format!("{}: its VMs need {used} MiB, it has {capacity:.0} MiB", host.name),
                );
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            let line = lines.faults.get(i).copied();
            if !hosts.contains_key(f.host.as_str()) {
                error(line, format!("fault[{i}].host"), format!("no host {:?} in the fleet", f.host));
            }
            if !(f.down_at_s >= 0.0 && f.down_at_s.is_finite()) {
                error(line, format!("fault[{i}].down_at_s"), format!("{} must be 0 or more seconds", f.down_at_s));
            }
        }
        errors
    }
}

/// A UUID from a VM's position in its file: unique within the fleet, the same every time.
pub fn derived_uuid(i: usize) -> String {
    format!("5e1f0000-0000-4000-8000-{:012x}", i + 1)
}

/// The TOML file, with the position of each table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default)]
    sim: Settings,
    #[serde(default)]
    host: Vec<Spanned<HostDesc>>,
    #[serde(default)]
    vm: Vec<Spanned<VmDesc>>,
    #[serde(default)]
    fault: Vec<Spanned<Fault>>,
}

/// The line each table starts on (TOML only).
#[derive(Default)]
struct Lines {
    hosts: Vec<usize>,
    vms: Vec<usize>,
    faults: Vec<usize>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(file: &str, text: &str, expect: &[&str]) {
        match Fleet::parse(file, text) {
            Ok(f) => assert!(expect.is_empty(), "expected errors {expect:?}, parsed {f:?}"),
            Err(errors) => {
                let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
                assert_eq!(got.len(), expect.len(), "{got:#?}");
                for (g, e) in got.iter().zip(expect) {
                    assert!(g.starts_with(e), "{g:?} does not start with {e:?}");
                }
            }
        }
    }

    const GOOD: &str = "[sim]\nseed = 3\n\n[[host]]\nname = \"a\"\nmemory_mib = 4096\nlink_mib_s = 100\n\n[[host]]\nname = \"b\"\nmemory_mib = 4096\nlink_mib_s = 100\n\n[[vm]]\nname = \"v\"\nhost = \"a\"\nmemory_mib = 1024\ndirty_mib_s = 5\n";

    #[test]
    fn a_good_file_parses_with_defaults_and_round_trips() {
        let fleet = Fleet::parse("f.toml", GOOD).expect("parses");
        assert_eq!(fleet.sim.start, DEFAULT_START);
        assert_eq!(fleet.hosts[0].group, "default");
        assert_eq!(fleet.vms[0].vcpus, 2);
        assert!(fleet.vms[0].running);
        assert_eq!((fleet.vms[0].compression_ratio, fleet.hosts[0].compress_cpu_ms_per_mib), (None, None));
        assert_eq!(fleet.uuid(0), "5e1f0000-0000-4000-8000-000000000001");
        assert_eq!(Fleet::parse("f.toml", &fleet.to_toml()).expect("round trip"), fleet);
        let json = serde_json::to_string(&fleet).expect("json");
        assert_eq!(Fleet::parse("f.json", &json).expect("json parses"), fleet);
        let mut compressing = fleet.clone();
        compressing.vms[0].compression_ratio = Some(2.08);
        compressing.hosts[0].compress_cpu_ms_per_mib = Some(4.0);
        let text = compressing.to_toml();
        assert!(text.contains("compression_ratio = 2.08") && text.contains("compress_cpu_ms_per_mib = 4.0"), "{text}");
        assert_eq!(Fleet::parse("f.toml", &text).expect("round trip"), compressing);
        let cluster = fleet.cluster();
        assert_eq!(cluster.hosts[1].uri, "sim:///b");
        assert_eq!(cluster.hosts[1].link_mib_s, Some(100));
    }

    #[test]
    fn every_problem_is_reported_with_line_and_field() {
        check(
            "f.toml",
            "[sim]\nmigration_error_rate = 2\n\n[[host]]\nname = \"a\"\nmemory_mib = 1024\nlink_mib_s = 0\n\n[[host]]\nname = \"a\"\nmemory_mib = 1024\nlink_mib_s = 10\n\n[[vm]]\nname = \"v\"\nhost = \"b\"\nmemory_mib = 512\n\n[[vm]]\nname = \"w\"\nhost = \"a\"\nmemory_mib = 2048\nworking_set_mib = 4096\ncompression_ratio = 0\n\n[[fault]]\nhost = \"z\"\ndown_at_s = 5\n",
            &[
                "f.toml: sim.migration_error_rate: 2 must be a chance",
                "f.toml:4: host[0].link_mib_s: must be a positive",
                "f.toml:9: host[1].name: \"a\" is already the name of host[0]",
                "f.toml:14: vm[0].host: no host \"b\" in the fleet",
                "f.toml:19: vm[1].working_set_mib: 4096 must be between 0 and the VM's memory",
                "f.toml:19: vm[1].compression_ratio: 0 must be a positive ratio",
                "f.toml:9: host[1].memory_mib: a: its VMs need 2048 MiB, it has 1024 MiB",
                "f.toml:26: fault[0].host: no host \"z\"",
            ],
        );
        check(
            "f.toml",
            "[[host]]\nname = \"a\"\nmemory_mib = 1\nlink_mib_s = 1\ncolour = 1\n",
            &["f.toml:5: unknown field `colour`"],
        );
        check(
            "f.toml",
            "[[host]]\nname = \"a\"\nmemory_mib = 1\nlink_mib_s = 1\ncompress_cpu_ms_per_mib = -2\n",
            &["f.toml:1: host[0].compress_cpu_ms_per_mib: -2 must be a positive time"],
        );
        check("f.toml", "[sim]\n", &["f.toml: host: no hosts"]);
        check("f.json", "{\"sim\": {}, \"host\": [}", &["f.json:1:"]);
    }
}
