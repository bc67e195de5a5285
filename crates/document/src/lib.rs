//! The run document: what a run keeps in the journal besides its records — the plan as
//! parsed, every move as the engine runs it, the hosts being drained, a single move's
//! hand-set options — so that `resume`, `rollback` and the report need no files.
//!
//! The journal stores it as JSON and knows nothing of its shape; this crate owns the shape
//! and its version. Writing fails loudly (never a `null` document), and reading says which
//! run's document is unreadable and why.

use std::time::Duration;

use ferry_journal::RunDocuments;
use ferry_model::ClusterSpec;
use ferry_plan::{Plan, Target};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version this ferry writes. Documents written before versions were kept have the
/// same shape and read as version 1.
pub const VERSION: u32 = 1;

/// What a run keeps in the journal besides its cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDocument {
    /// The shape's version ([`VERSION`] when written by this ferry).
    #[serde(default = "first_version")]
    pub version: u32,
    /// The plan as parsed (a one-move plan for `ferry move`, a generated one for a drain or
    /// a rollback).
    pub plan: Plan,
    /// Every move, as the engine runs it.
    pub moves: Vec<MoveSpec>,
    /// Hosts being drained: never targets.
    pub unavailable: Vec<String>,
    /// `ferry move`'s hand-set options.
    #[serde(default)]
    pub manual: Manual,
    /// The preview's makespan of the run, s: ferry's scheduler run over its moves in
    /// virtual time (absent from runs journaled before it was kept, and from those without
    /// a preview: a single move, a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_makespan_s: Option<f64>,
}

fn first_version() -> u32 {
    1
}

/// Why a run's documents cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// A document did not serialise (a plan value JSON cannot hold).
    #[error("the run's {what} cannot be written to the journal")]
    Unwritable {
        /// `plan` or `cluster`.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored document does not have the shape of its version.
    #[error("run {run}: its {what} in the journal is unreadable")]
    Unreadable {
        /// The run.
        run: String,
        /// `plan` or `cluster`.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A newer ferry wrote it.
    #[error("run {run}: its document is version {version}, newer than this ferry's {VERSION}: use a newer ferry")]
    Newer {
        /// The run.
        run: String,
        /// The stored version.
        version: u32,
    },
}

impl RunDocument {
    /// A document of this ferry's version.
    pub fn new(plan: Plan, moves: Vec<MoveSpec>, unavailable: Vec<String>, manual: Manual) -> RunDocument {
        RunDocument { version: VERSION, plan, moves, unavailable, manual, estimated_makespan_s: None }
    }

    /// The document and `cluster` as the journal stores them.
    pub fn to_documents(&self, cluster: &ClusterSpec) -> Result<RunDocuments, DocumentError> {
        let plan = serde_json::to_value(self).map_err(|source| DocumentError::Unwritable { what: "plan", source })?;
        let cluster =
            serde_json::to_value(cluster).map_err(|source| DocumentError::Unwritable { what: "cluster", source })?;
        Ok(RunDocuments { plan, cluster })
    }

    /// Run `run`'s document and cluster from what the journal stored.
    pub fn read(run: &str, stored: &RunDocuments) -> Result<(RunDocument, ClusterSpec), DocumentError> {
        let unreadable = |what, source| DocumentError::Unreadable { run: run.to_string(), what, source };
        let version = stored.plan.get("version").and_then(Value::as_u64).map_or(1, |v| v.min(u64::from(u32::MAX)));
        if version > u64::from(VERSION) {
            return Err(DocumentError::Newer { run: run.to_string(), version: version as u32 });
        }
        let document = RunDocument::deserialize(&stored.plan).map_err(|e| unreadable("plan", e))?;
        let cluster = ClusterSpec::deserialize(&stored.cluster).map_err(|e| unreadable("cluster", e))?;
        Ok((document, cluster))
    }

    /// Whether the run kept its moves' source copies of host-local disks.
    pub fn keeps_source_copies(&self) -> bool {
        !self.plan.policy.delete_source_volumes
    }
}

/// One VM's move as the engine runs it (kept in the journal's plan document, so that
/// `resume` needs no files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveSpec {
    /// VM name.
    pub vm: String,
    /// VM UUID: its key in the journal.
    pub uuid: String,
    /// Host it runs on when the run starts.
    pub from: String,
    /// Target host, or `ANY` (placed when the move starts).
    pub to: Target,
    /// Group whose members move one at a time.
    pub group: Option<String>,
    /// Turn within the group.
    pub order: usize,
    /// Higher moves first.
    pub priority: i64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Whether the VM runs (a stopped VM can only move cold).
    pub running: bool,
    /// It moves cold whatever the plan's mode (a roll's `maintenance = "cold"`).
    #[serde(default)]
    pub cold: bool,
    /// Its measured dirty rate, MiB/s, when the preview measured it.
    #[serde(default)]
    pub dirty_mib_s: Option<f64>,
    /// The preview's estimate, kept with the attempt to compare with what happens.
    pub estimate: Option<Value>,
}

impl MoveSpec {
    /// A single move of `vm`, as inventoried, to host `to`: no group, no priority, no
    /// estimate (`ferry move`, rollbacks).
    pub fn to_host(vm: &ferry_model::Vm, to: &str) -> MoveSpec {
        MoveSpec {
            vm: vm.name.clone(),
            uuid: vm.uuid.clone(),
            from: vm.host.clone(),
            to: Target::Host(to.to_string()),
            group: None,
            order: 0,
            priority: 0,
            memory_mib: vm.memory_mib,
            running: vm.state == ferry_model::VmState::Running,
            cold: false,
            dirty_mib_s: None,
            estimate: None,
        }
    }

    /// The preview's estimate of the whole move, s; `None` without an estimate or when the
    /// move was not expected to end (an infinite estimate is stored as null).
    pub fn estimated_total_s(&self) -> Option<f64> {
        self.estimate.as_ref()?.get("total_s")?.as_f64()
    }
}

/// Settings an operator gives one move by hand (`ferry move`); a plan's runs leave them unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manual {
    /// Bandwidth cap of every migration, MiB/s (the lower of it and the link share applies).
    pub bandwidth_mib_s: Option<f64>,
    /// Initial downtime limit, ms.
    pub max_downtime_ms: Option<u64>,
    /// Completion timeout of every live migration, instead of the plan's per-GiB one.
    pub completion_timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> Plan {
        ferry_plan::parse_plan("p.toml", "[plan]\nname = \"p\"\n[[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n")
            .expect("a valid plan")
    }

    fn spec(estimate: Option<Value>) -> MoveSpec {
        MoveSpec {
            vm: "vm-1".into(),
            uuid: "u-1".into(),
            from: "host-a".into(),
            to: Target::Host("host-b".into()),
            group: None,
            order: 0,
            priority: 0,
            memory_mib: 128,
            running: true,
            cold: false,
            dirty_mib_s: None,
            estimate,
        }
    }

    #[test]
    fn a_document_reads_back_as_written() {
        let document = RunDocument::new(
            plan(),
            vec![spec(Some(json!({ "total_s": 4.5 })))],
            vec!["host-c".into()],
            Manual { completion_timeout: Some(Duration::from_secs(90)), ..Manual::default() },
        );
        let cluster = ClusterSpec::default();
        let stored = document.to_documents(&cluster).expect("writable");
        assert_eq!(stored.plan["version"], VERSION);
        let (read, read_cluster) = RunDocument::read("r1", &stored).expect("readable");
        assert_eq!(read, document);
        assert_eq!(read_cluster, cluster);
        assert_eq!(read.moves[0].estimated_total_s(), Some(4.5));
    }

    #[test]
    fn a_document_from_before_versions_reads_as_version_1() {
        let mut stored = RunDocument::new(plan(), vec![spec(None)], vec![], Manual::default())
            .to_documents(&ClusterSpec::default())
            .expect("writable");
        stored.plan.as_object_mut().expect("an object").remove("version");
        let (read, _) = RunDocument::read("r1", &stored).expect("readable");
        assert_eq!(read.version, 1);
    }

    #[test]
    fn unreadable_and_newer_documents_name_the_run() {
        let stored = RunDocuments { plan: json!({ "name": "old" }), cluster: json!({ "hosts": [] }) };
        let e = RunDocument::read("r7", &stored).expect_err("not a run document");
        assert!(e.to_string().starts_with("run r7: its plan in the journal is unreadable"), "{e}");
        let newer = RunDocuments { plan: json!({ "version": VERSION + 1 }), cluster: json!({ "hosts": [] }) };
        let e = RunDocument::read("r7", &newer).expect_err("newer");
        assert!(matches!(e, DocumentError::Newer { version, .. } if version == VERSION + 1), "{e}");
    }

    #[test]
    fn an_infinite_estimate_is_no_total() {
        assert_eq!(spec(Some(json!({ "total_s": null }))).estimated_total_s(), None);
        assert_eq!(spec(None).estimated_total_s(), None);
    }
}
