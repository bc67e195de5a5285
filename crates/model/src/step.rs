//! The steps of a move's saga: each is journaled before it is done (its intent) and after
//! (its result), so that after a crash the journal says what a move may have changed and
//! only that is undone.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One step that changes a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Create volume `name` in pool `pool` on `host` for a copy of a host-local disk.
    CreateVolume {
        /// Host (the move's target).
        host: String,
        /// Storage pool.
        pool: String,
        /// Volume name.
        name: String,
    },
    /// Delete volume `name` of pool `pool` on `host`: the undo of a `CreateVolume`, or a
    /// source copy after a verified move when the policy deletes them.
    DeleteVolume {
        /// Host.
        host: String,
        /// Storage pool.
        pool: String,
        /// Volume name.
        name: String,
    },
    /// Shut the guest down on `host` (a cold move's first step).
    ShutDown {
        /// Host (the source).
        host: String,
    },
    /// Copy volume `name` of pool `pool` from `from` into its copy on `to`.
    CopyVolume {
        /// Source host.
        from: String,
        /// Target host.
        to: String,
        /// Storage pool (the same name on both).
        pool: String,
        /// Volume name (the same on both).
        name: String,
    },
    /// Define the VM on `host` from its source's definition.
    Define {
        /// Host (the target).
        host: String,
    },
    /// Start the VM on `host`.
    Start {
        /// Host.
        host: String,
    },
    /// Undefine the VM on `host`, never its last definition.
    Undefine {
        /// Host.
        host: String,
    },
}

impl Step {
    /// The step's kind as a failpoint names it (`create-volume`, `shut-down`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Step::CreateVolume { .. } => "create-volume",
            Step::DeleteVolume { .. } => "delete-volume",
            Step::ShutDown { .. } => "shut-down",
            Step::CopyVolume { .. } => "copy-volume",
            Step::Define { .. } => "define",
            Step::Start { .. } => "start-vm",
            Step::Undefine { .. } => "undefine",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateVolume { host, pool, name } => write!(f, "create volume {name} in pool {pool} on {host}"),
            Step::DeleteVolume { host, pool, name } => write!(f, "delete volume {name} of pool {pool} on {host}"),
            Step::ShutDown { host } => write!(f, "shut the guest down on {host}"),
            Step::CopyVolume { from, to, pool, name } => {
                write!(f, "copy volume {name} of pool {pool} from {from} to {to}")
            }
            Step::Define { host } => write!(f, "define the VM on {host}"),
            Step::Start { host } => write!(f, "start the VM on {host}"),
            Step::Undefine { host } => write!(f, "undefine the VM on {host}"),
        }
    }
}

/// Where a step got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Journaled, about to be done: it may or may not have happened.
    Begun,
    /// Done.
    Done,
    /// Tried and failed: it did not happen.
    Failed,
}

/// A step of one attempt as the journal last recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The attempt it belongs to (1, 2, …).
    pub attempt: u32,
    /// The step.
    pub step: Step,
    /// Its latest state.
    pub state: StepState,
}

/// The volumes a move's attempts may have created and not deleted since: every
/// `CreateVolume` begun or done (a step begun may have happened) without a later
/// `DeleteVolume` of the same volume done. Only these may an undo delete.
pub fn created_volumes(steps: &[StepRecord]) -> Vec<(String, String, String)> {
    let mut created: Vec<(String, String, String)> = Vec::new();
    for record in steps {
        match (&record.step, record.state) {
            (Step::CreateVolume { host, pool, name }, StepState::Begun | StepState::Done) => {
                let key = (host.clone(), pool.clone(), name.clone());
                if !created.contains(&key) {
                    created.push(key);
                }
            }
            (Step::DeleteVolume { host, pool, name }, StepState::Done) => {
                created.retain(|(h, p, n)| !(h == host && p == pool && n == name));
            }
            _ => {}
        }
    }
    created
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(attempt: u32, step: Step, state: StepState) -> StepRecord {
        StepRecord { attempt, step, state }
    }

    fn create(host: &str, name: &str) -> Step {
        Step::CreateVolume { host: host.into(), pool: "local".into(), name: name.into() }
    }

    fn delete(host: &str, name: &str) -> Step {
        Step::DeleteVolume { host: host.into(), pool: "local".into(), name: name.into() }
    }

    #[test]
    fn only_volumes_a_move_began_to_create_and_did_not_delete_are_its_own() {
        let key = |h: &str, n: &str| (h.to_string(), "local".to_string(), n.to_string());
        let steps = [
            record(1, create("host-b", "a.qcow2"), StepState::Done),
            record(1, create("host-b", "b.qcow2"), StepState::Begun),
            record(1, create("host-b", "c.qcow2"), StepState::Failed),
            record(1, delete("host-b", "a.qcow2"), StepState::Begun),
        ];
        // A delete only begun may not have happened: the volume is still the move's.
        assert_eq!(created_volumes(&steps), [key("host-b", "a.qcow2"), key("host-b", "b.qcow2")]);
        let mut done = steps.to_vec();
        done.push(record(1, delete("host-b", "a.qcow2"), StepState::Done));
        assert_eq!(created_volumes(&done), [key("host-b", "b.qcow2")]);
        // A source copy deleted after the move is not a created volume either way.
        done.push(record(1, delete("host-a", "b.qcow2"), StepState::Done));
        assert_eq!(created_volumes(&done), [key("host-b", "b.qcow2")]);
    }

    #[test]
    fn steps_round_trip_through_json_with_their_kind() {
        let step = Step::CopyVolume { from: "a".into(), to: "b".into(), pool: "local".into(), name: "v".into() };
        let json = serde_json::to_value(&step).expect("serializes");
        assert_eq!(json["step"], "copy-volume");
        assert_eq!(serde_json::from_value::<Step>(json).expect("parses"), step);
        assert_eq!(step.name(), "copy-volume");
    }
}
