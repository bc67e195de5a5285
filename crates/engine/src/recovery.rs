//! What to do with a move that was in flight when ferry stopped, decided from the steps its
//! journal recorded and where the hosts say the VM is. Pure: `reconcile` does the IO.

use ferry_journal::AttemptKind;
use ferry_model::{Location, Step, StepRecord, StepState, VmState};

/// The recovery of one interrupted move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The move got past its point of no return: finish it. A cold move may have left the VM
    /// defined but not started on the target, or still defined on its source.
    Adopt {
        /// Start the VM on the target (the cold move's copy finished; the guest ran before).
        start_target: bool,
        /// Remove the source's definition (the cold move's last step did not happen).
        undefine_source: bool,
    },
    /// The move did not get there: undo it (the volumes it created are deleted) and try again.
    Undo {
        /// Start the VM on its source again (a cold move shut it down).
        start_source: bool,
    },
    /// Neither can be done safely: the operator decides (`ferry cleanup`), told why.
    Lost(String),
}

/// Decides, for a move from `from` to `to` whose latest attempt is of `kind` and recorded
/// `steps`, found at `locations`.
pub(crate) fn decide(
    kind: AttemptKind,
    steps: &[StepRecord],
    locations: &[Location],
    from: &str,
    to: &str,
) -> Recovery {
    let at = |host: &str| locations.iter().find(|l| l.host == host).map(|l| l.state);
    let others: Vec<&Location> = locations.iter().filter(|l| l.host != from && l.host != to).collect();
    if !others.is_empty() {
        return Recovery::Lost(format!("it is also known to {}", hosts(&others)));
    }
    let (source, target) = (at(from), at(to));
    match kind {
        AttemptKind::Live => match (source, target) {
            (None, Some(VmState::Running)) => Recovery::Adopt { start_target: false, undefine_source: false },
            // libvirt undefines the source last, after the VM resumed on the target: a kill
            // in between leaves the source's inactive definition for ferry to remove.
            (Some(state), Some(VmState::Running)) if state != VmState::Running => {
                Recovery::Adopt { start_target: false, undefine_source: true }
            }
            (Some(VmState::Running), None) => Recovery::Undo { start_source: false },
            _ => Recovery::Lost(format!("found {}", describe(locations))),
        },
        AttemptKind::Cold => {
            let began = |want: &Step| steps.iter().any(|s| &s.step == want && s.state != StepState::Failed);
            // A shut-down begun means the guest ran: it must end running wherever it ends.
            let ran = began(&Step::ShutDown { host: from.to_string() });
            // The target's definition is the move's only if the move began to define it:
            // the move refuses a target that already knows the UUID.
            let defined_here = began(&Step::Define { host: to.to_string() });
            match (source, target) {
                (Some(VmState::Running), Some(_)) => Recovery::Lost(format!(
                    "found {}: it runs on its source and the target has a copy",
                    describe(locations)
                )),
                (_, Some(_)) if !defined_here => {
                    Recovery::Lost(format!("found {}, but the move never defined it on {to}", describe(locations)))
                }
                // Defined on the target: every copy finished before, so the move goes forward.
                (source, Some(state)) => Recovery::Adopt {
                    start_target: ran && state != VmState::Running,
                    undefine_source: source.is_some(),
                },
                (Some(state), None) => Recovery::Undo { start_source: ran && state != VmState::Running },
                (None, None) => Recovery::Lost("it is on no host".into()),
            }
        }
    }
}

fn hosts(locations: &[&Location]) -> String {
    locations.iter().map(|l| l.host.as_str()).collect::<Vec<_>>().join(", ")
}

/// Where a VM was found, in words.
pub(crate) fn describe(locations: &[Location]) -> String {
    if locations.is_empty() {
        return "on no host".into();
    }
    locations.iter().map(|l| format!("{} on {}", l.state, l.host)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str, state: VmState) -> Location {
        Location { host: host.into(), state, persistent: true }
    }

    fn step(step: Step, state: StepState) -> StepRecord {
        StepRecord { attempt: 1, step, state }
    }

    fn shut_down() -> Step {
        Step::ShutDown { host: "a".into() }
    }

    fn define() -> Step {
        Step::Define { host: "b".into() }
    }

    fn copy() -> Step {
        Step::CopyVolume { from: "a".into(), to: "b".into(), pool: "local".into(), name: "v".into() }
    }

    use StepState::{Begun, Done, Failed};
    use VmState::{Running, ShutOff};

    #[test]
    fn a_live_move_is_adopted_on_its_target_undone_on_its_source_and_lost_otherwise() {
        let live = |locations: &[Location]| decide(AttemptKind::Live, &[], locations, "a", "b");
        assert_eq!(live(&[at("b", Running)]), Recovery::Adopt { start_target: false, undefine_source: false });
        assert_eq!(live(&[at("a", Running)]), Recovery::Undo { start_source: false });
        assert!(matches!(live(&[at("a", Running), at("b", Running)]), Recovery::Lost(_)));
        assert_eq!(
            live(&[at("a", ShutOff), at("b", Running)]),
            Recovery::Adopt { start_target: false, undefine_source: true }
        );
        assert!(matches!(live(&[at("a", ShutOff)]), Recovery::Lost(_)));
        assert!(matches!(live(&[at("a", Running), at("b", ShutOff)]), Recovery::Lost(_)));
        assert!(matches!(live(&[]), Recovery::Lost(_)));
        assert!(matches!(live(&[at("c", Running)]), Recovery::Lost(r) if r.contains("also known to c")));
    }

    #[test]
    fn a_cold_move_killed_before_its_copy_finished_starts_again_on_its_source() {
        let cases = [
            // Killed as it asked the guest to shut down: the guest may still run.
            (vec![step(shut_down(), Begun)], at("a", Running), Recovery::Undo { start_source: false }),
            (vec![step(shut_down(), Begun)], at("a", ShutOff), Recovery::Undo { start_source: true }),
            // Killed while copying a volume.
            (
                vec![step(shut_down(), Done), step(copy(), Begun)],
                at("a", ShutOff),
                Recovery::Undo { start_source: true },
            ),
            // Killed as it began to define the VM on the target, which did not happen.
            (
                vec![step(shut_down(), Done), step(copy(), Done), step(define(), Begun)],
                at("a", ShutOff),
                Recovery::Undo { start_source: true },
            ),
            // A stopped VM moved cold stays stopped.
            (vec![step(copy(), Begun)], at("a", ShutOff), Recovery::Undo { start_source: false }),
        ];
        for (steps, source, want) in cases {
            assert_eq!(
                decide(AttemptKind::Cold, &steps, std::slice::from_ref(&source), "a", "b"),
                want,
                "{steps:?} {source:?}"
            );
        }
    }

    #[test]
    fn a_cold_move_defined_on_its_target_goes_forward() {
        let done = vec![step(shut_down(), Done), step(copy(), Done), step(define(), Done)];
        let cases = [
            // Defined, not started, the source still defined.
            (vec![at("a", ShutOff), at("b", ShutOff)], Recovery::Adopt { start_target: true, undefine_source: true }),
            // Started on the target; the source's definition not removed yet.
            (vec![at("a", ShutOff), at("b", Running)], Recovery::Adopt { start_target: false, undefine_source: true }),
            // Only the last step's confirmation was lost.
            (vec![at("b", Running)], Recovery::Adopt { start_target: false, undefine_source: false }),
        ];
        for (locations, want) in cases {
            assert_eq!(decide(AttemptKind::Cold, &done, &locations, "a", "b"), want, "{locations:?}");
        }
        // A definition begun (not confirmed) that exists is the move's.
        let begun = vec![step(shut_down(), Done), step(copy(), Done), step(define(), Begun)];
        assert_eq!(
            decide(AttemptKind::Cold, &begun, &[at("a", ShutOff), at("b", ShutOff)], "a", "b"),
            Recovery::Adopt { start_target: true, undefine_source: true }
        );
    }

    #[test]
    fn a_cold_move_never_takes_a_copy_it_did_not_define_nor_one_beside_a_running_source() {
        let copying = vec![step(shut_down(), Done), step(copy(), Done)];
        assert!(matches!(
            decide(AttemptKind::Cold, &copying, &[at("a", ShutOff), at("b", ShutOff)], "a", "b"),
            Recovery::Lost(r) if r.contains("never defined it")
        ));
        let failed = vec![step(shut_down(), Done), step(copy(), Done), step(define(), Failed)];
        assert!(matches!(
            decide(AttemptKind::Cold, &failed, &[at("a", ShutOff), at("b", ShutOff)], "a", "b"),
            Recovery::Lost(_)
        ));
        let defined = vec![step(shut_down(), Done), step(copy(), Done), step(define(), Done)];
        assert!(matches!(
            decide(AttemptKind::Cold, &defined, &[at("a", Running), at("b", ShutOff)], "a", "b"),
            Recovery::Lost(_)
        ));
        assert!(matches!(decide(AttemptKind::Cold, &defined, &[], "a", "b"), Recovery::Lost(_)));
    }
}
