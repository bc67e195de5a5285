//! Earlier copies: a volume on a move's target that is a copy of the moving VM's disk which
//! ferry itself left there, and whether ferry may say so. Pure.
//!
//! The rule. A volume on host `H` is an *earlier copy* of VM `X`'s disk when
//!
//! 1. it has the pool and name of one of `X`'s host-local disks, and that disk's size when
//!    the size is known (a copy has the size of what it copies);
//! 2. no domain on `H` uses it (`X` itself does not run on `H`: it is moving there);
//! 3. ferry can say it left it there ([`Attribution`]), because
//!    - **the journal** says so: the latest move of `X` recorded in this journal that left
//!      `H` succeeded and kept its source copies (`delete_source_volumes = false`); or
//!    - **ferry's metadata** on `X`'s domain says so: ferry writes it at every move and leaves
//!      it behind, so a finished move (`SwitchedOver` or later) whose `original_host` is `H`
//!      took `X` from `H`. A copy that move deleted is not there any more, so a volume of the
//!      same name and size on `H` is the copy it kept. This is what a journal that never saw
//!      the move (another operator's, or a lost one) still has.
//!
//! A volume that meets 1 and 2 but not 3 is *unattributed*: ferry never touches it, and the
//! `volumes` check fails naming it.

use ferry_driver::Volume;
use ferry_model::{Metadata, Phase, Vm};
use serde::Serialize;

use crate::local_volume;

/// One of a VM's host-local disks, as a volume: where a copy of it would be on another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalDisk {
    /// Storage pool.
    pub pool: String,
    /// Volume name within the pool.
    pub name: String,
    /// Virtual size, bytes, when known.
    pub capacity: Option<u64>,
}

/// The VM's host-local disks, from its definition.
pub fn local_disks(vm: &Vm) -> Vec<LocalDisk> {
    vm.disks
        .iter()
        .filter_map(|d| local_volume(d).map(|(pool, name)| LocalDisk { pool, name, capacity: d.capacity }))
        .collect()
}

/// The VM's host-local disks, from the volumes of the host it runs on (those its domain
/// uses): what the engine knows at a move's start, where it has no inventory.
pub fn disks_in_use(uuid: &str, volumes_at_source: &[Volume]) -> Vec<LocalDisk> {
    volumes_at_source
        .iter()
        .filter(|v| v.used_by.iter().any(|u| u == uuid))
        .map(|v| LocalDisk { pool: v.pool.clone(), name: v.name.clone(), capacity: Some(v.capacity) })
        .collect()
}

/// A move of the VM away from a host, as a journal recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Departure {
    /// The run.
    pub run: String,
    /// The host the VM left (the move's source).
    pub from: String,
    /// Whether the move succeeded (the VM left).
    pub succeeded: bool,
    /// Whether it kept the source's copies of the VM's host-local disks; `None` when the
    /// run's documents do not say.
    pub kept_copies: Option<bool>,
    /// When the run was created, ms since the epoch: the latest departure counts.
    pub at_ms: i64,
}

/// What ferry knows of a VM's past, to attribute volumes with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct History {
    /// Its moves in this journal, in any order.
    pub departures: Vec<Departure>,
    /// ferry's metadata on its domain, where it runs now.
    pub metadata: Option<Metadata>,
}

/// Why ferry knows it left a volume on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum Attribution {
    /// The journal: run `run` moved the VM away from that host and kept its copies.
    Journal {
        /// The run.
        run: String,
    },
    /// ferry's metadata on the VM's domain: run `run` moved it away from that host.
    Metadata {
        /// The run.
        run: String,
    },
}

impl std::fmt::Display for Attribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attribution::Journal { run } => write!(f, "run {run} moved it away from there and kept this copy"),
            Attribution::Metadata { run } => {
                write!(f, "ferry's metadata on the VM says run {run} moved it away from there")
            }
        }
    }
}

/// Whether ferry left copies of the VM's disks on `host`, and how it knows. The journal
/// speaks first: when its latest departure from `host` deleted the copies (or failed, or
/// does not say), it does not attribute, and neither does the metadata of that same run.
pub fn attribute(host: &str, history: &History) -> Option<Attribution> {
    let latest = history.departures.iter().filter(|d| d.from == host && d.succeeded).max_by_key(|d| d.at_ms);
    match latest {
        Some(d) if d.kept_copies == Some(true) => return Some(Attribution::Journal { run: d.run.clone() }),
        Some(d) if d.kept_copies == Some(false) => {
            // A later move by another journal may have kept copies there: the metadata tells.
            return metadata_attribution(host, history).filter(|a| *a != Attribution::Metadata { run: d.run.clone() });
        }
        _ => {}
    }
    metadata_attribution(host, history)
}

fn metadata_attribution(host: &str, history: &History) -> Option<Attribution> {
    history
        .metadata
        .as_ref()
        .filter(|m| m.original_host == host && m.phase >= Phase::SwitchedOver)
        .map(|m| Attribution::Metadata { run: m.run_id.clone() })
}

/// A volume on a move's target named like one of the VM's disks and used by no domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarlierCopy {
    /// The volume.
    pub volume: Volume,
    /// How ferry knows it left it there; `None`: it cannot say, and never touches it.
    pub attribution: Option<Attribution>,
}

/// The volumes of `volumes_at_target` (one host's) that are copies of `disks`, used by no
/// domain there and of the same size, each with how ferry knows it left it (see the module's
/// rule). Volumes in use are not listed: the move refuses them as it refuses any volume in
/// its way.
pub fn earlier_copies(disks: &[LocalDisk], volumes_at_target: &[Volume], history: &History) -> Vec<EarlierCopy> {
    unused_copies(disks, volumes_at_target)
        .into_iter()
        .map(|v| EarlierCopy { volume: v.clone(), attribution: attribute(&v.host, history) })
        .collect()
}

/// The volumes named like `disks` (pool and name, and size when known) that no domain uses.
pub fn unused_copies<'v>(disks: &[LocalDisk], volumes: &'v [Volume]) -> Vec<&'v Volume> {
    disks
        .iter()
        .filter_map(|d| {
            volumes.iter().find(|v| {
                v.pool == d.pool
                    && v.name == d.name
                    && v.used_by.is_empty()
                    && d.capacity.is_none_or(|c| c == v.capacity)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(host: &str, name: &str, capacity: u64, used_by: &[&str]) -> Volume {
        Volume {
            host: host.into(),
            pool: "local".into(),
            name: name.into(),
            path: format!("/pools/{host}/{name}"),
            capacity,
            used_by: used_by.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn departure(run: &str, from: &str, at_ms: i64, succeeded: bool, kept: Option<bool>) -> Departure {
        Departure { run: run.into(), from: from.into(), succeeded, kept_copies: kept, at_ms }
    }

    fn metadata(run: &str, original: &str, phase: Phase) -> Option<Metadata> {
        Some(Metadata { run_id: run.into(), original_host: original.into(), phase, claim: None })
    }

    fn judged(history: &History) -> Option<String> {
        attribute("host-b", history).map(|a| a.to_string())
    }

    #[test]
    fn the_latest_departure_in_the_journal_decides() {
        let kept = |run: &str, at| departure(run, "host-b", at, true, Some(true));
        let deleted = |run: &str, at| departure(run, "host-b", at, true, Some(false));
        let cases: Vec<(&str, History, Option<&str>)> = vec![
            ("nothing known", History::default(), None),
            (
                "kept by the latest",
                History { departures: vec![deleted("r-1", 1), kept("r-2", 2)], metadata: None },
                Some("run r-2 moved it away from there and kept this copy"),
            ),
            (
                "deleted by the latest",
                History { departures: vec![kept("r-1", 1), deleted("r-2", 2)], metadata: None },
                None,
            ),
            (
                "deleted by the latest, whose metadata cannot overrule it",
                History { departures: vec![deleted("r-2", 2)], metadata: metadata("r-2", "host-b", Phase::Finalized) },
                None,
            ),
            (
                "a failed move left nothing",
                History { departures: vec![departure("r-1", "host-b", 1, false, Some(true))], metadata: None },
                None,
            ),
            (
                "a move from another host",
                History { departures: vec![departure("r-1", "host-c", 1, true, Some(true))], metadata: None },
                None,
            ),
            (
                "documents that do not say",
                History { departures: vec![departure("r-1", "host-b", 1, true, None)], metadata: None },
                None,
            ),
            (
                "metadata of a finished move from there",
                History { departures: vec![], metadata: metadata("r-9", "host-b", Phase::Finalized) },
                Some("ferry's metadata on the VM says run r-9 moved it away from there"),
            ),
            (
                "metadata of another journal's later move, after ours deleted",
                History {
                    departures: vec![deleted("r-1", 1)],
                    metadata: metadata("r-9", "host-b", Phase::SwitchedOver),
                },
                Some("ferry's metadata on the VM says run r-9 moved it away from there"),
            ),
            (
                "metadata of a move that never switched over",
                History { departures: vec![], metadata: metadata("r-9", "host-b", Phase::Transferring) },
                None,
            ),
            (
                "metadata of a move from elsewhere",
                History { departures: vec![], metadata: metadata("r-9", "host-c", Phase::Finalized) },
                None,
            ),
        ];
        for (what, history, want) in cases {
            assert_eq!(judged(&history).as_deref(), want, "{what}");
        }
    }

    #[test]
    fn only_unused_volumes_of_the_same_pool_name_and_size_are_earlier_copies() {
        let disks = [
            LocalDisk { pool: "local".into(), name: "web.qcow2".into(), capacity: Some(1 << 24) },
            LocalDisk { pool: "local".into(), name: "web-data.qcow2".into(), capacity: None },
        ];
        let history = History { departures: vec![departure("r-1", "host-b", 1, true, Some(true))], metadata: None };
        let at_b = [
            volume("host-b", "web.qcow2", 1 << 24, &[]),
            volume("host-b", "web-data.qcow2", 1 << 30, &[]),
            volume("host-b", "db.qcow2", 1 << 24, &[]),
        ];
        let got = earlier_copies(&disks, &at_b, &history);
        let names: Vec<&str> = got.iter().map(|c| c.volume.name.as_str()).collect();
        assert_eq!(names, ["web.qcow2", "web-data.qcow2"]);
        assert!(got.iter().all(|c| c.attribution == Some(Attribution::Journal { run: "r-1".into() })));

        let other_size = [volume("host-b", "web.qcow2", 1 << 30, &[])];
        assert!(earlier_copies(&disks[..1], &other_size, &history).is_empty(), "another size is another volume");
        let in_use = [volume("host-b", "web.qcow2", 1 << 24, &["uuid-other"])];
        assert!(earlier_copies(&disks, &in_use, &history).is_empty(), "a volume in use is nobody's leftover");
        let unknown = earlier_copies(&disks[..1], &at_b, &History::default());
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].attribution, None, "found, but ferry cannot say it left it");
    }

    #[test]
    fn the_engine_reads_the_disks_from_the_volumes_the_domain_uses() {
        let at_a = [
            volume("host-a", "web.qcow2", 1 << 24, &["uuid-web"]),
            volume("host-a", "db.qcow2", 1 << 24, &["uuid-db"]),
            volume("host-a", "old.qcow2", 1 << 24, &[]),
        ];
        assert_eq!(
            disks_in_use("uuid-web", &at_a),
            [LocalDisk { pool: "local".into(), name: "web.qcow2".into(), capacity: Some(1 << 24) }]
        );
    }
}
