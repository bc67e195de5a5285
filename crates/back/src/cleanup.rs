//! Cleanup: for each VM, which copy is the VM, and what to remove around it.
//!
//! [`plan`] is pure: from every host's view of the VMs (the inventory), the migration jobs
//! that run, the host-local volumes and what the journal knows, it decides. [`apply`] does
//! one step through the driver, whose removals check again on the hosts that they are
//! safe (a copy is removed only while the VM runs on exactly one other host; a volume only
//! while no domain uses it).

use std::fmt;
use std::time::Duration;

use ferry_driver::{Driver, Volume};
use ferry_model::{Inventory, Metadata, Phase, Vm, VmState};
use serde::Serialize;

use crate::local_volume;

/// What the journal knows about a VM. Empty when cleanup works from the hypervisors alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Known {
    /// The run this knowledge comes from.
    pub run: Option<String>,
    /// Host the VM was on when that run started.
    pub source: Option<String>,
    /// Whether that run moved it away from `source`.
    pub moved: bool,
    /// Targets of that run's attempts that were interrupted, or failed after they
    /// prepared the target (not those that could not start): where volumes created for
    /// them may remain.
    pub failed_targets: Vec<String>,
    /// A run whose owner is alive and which is moving the VM: cleanup leaves it alone.
    pub busy: Option<String>,
}

/// A VM to clean up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// What the journal knows.
    pub known: Known,
}

/// The hosts' view, as asked just before planning.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Every host's domains, with ferry's metadata.
    pub inventory: Inventory,
    /// `(host, uuid)` of the domains with a job (a migration) running.
    pub jobs: Vec<(String, String)>,
    /// The host-local volumes of every host that answered.
    pub volumes: Vec<Volume>,
}

/// What the operator asked for besides the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Also delete copies of a VM's disks kept on hosts it left (kept after successful
    /// moves without `delete_source_volumes`).
    pub source_volumes: bool,
}

/// One change on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Cancel the migration job of the VM's domain on `host`; the VM stays there.
    AbortJob {
        /// Host.
        host: String,
        /// VM UUID.
        uuid: String,
    },
    /// Power off and undefine the VM's copy on `host`.
    RemoveCopy {
        /// Host.
        host: String,
        /// VM UUID.
        uuid: String,
    },
    /// Mark the move that brought the VM to `host` finalized (adopt it).
    Finalize {
        /// Host.
        host: String,
        /// VM UUID.
        uuid: String,
        /// The metadata to write.
        metadata: Metadata,
    },
    /// Remove ferry's metadata from the VM's domain on `host`.
    ClearMetadata {
        /// Host.
        host: String,
        /// VM UUID.
        uuid: String,
    },
    /// Delete a volume of a host-local pool.
    DeleteVolume {
        /// Host.
        host: String,
        /// Pool.
        pool: String,
        /// Volume name.
        name: String,
    },
}

/// An action and why, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// What and why, e.g. "remove the paused copy on host-c: the VM runs on host-a".
    pub text: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where a VM stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// The VM is the copy on `host`; the steps remove what is around it.
    Found {
        /// Its host.
        host: String,
        /// Its state there.
        state: VmState,
    },
    /// Nothing can be decided safely (FAILURE-LOST): why, and what the operator can do.
    Lost {
        /// What was found.
        reason: String,
        /// What to do.
        advice: String,
    },
    /// A live run is moving it: left alone.
    Busy {
        /// The run.
        by: String,
    },
}

/// Cleanup's decision for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// Where it stands.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What to do, in order.
    pub steps: Vec<Step>,
    /// What was seen and left alone, and why.
    pub notes: Vec<String>,
}

/// Decides, for each subject, which copy is the VM and what to remove. Pure.
///
/// - On no host: lost; the advice says where its disks may be.
/// - On one host: that is the VM, in whatever state.
/// - On several: the one running; when several run, the one on the host its move started
///   from, if its metadata says that move never switched over; otherwise lost (ferry never
///   guesses between two running copies).
///
/// Around the VM: a migration job still running on it is aborted (it stays where it is),
/// the other copies are removed, metadata of a move that never left the host is cleared and
/// that of a move that arrived is finalized (adopted); a volume named like one of its
/// host-local disks, on another host, unused once the copies are gone and of the same size,
/// is deleted when a failed move created it (a stale copy used it, or the journal has a
/// failed attempt to that host), and kept unless `source_volumes` when it is a copy the VM
/// left behind.
pub fn plan(subjects: &[Subject], world: &World, options: Options) -> Vec<Finding> {
    subjects.iter().map(|s| plan_one(s, world, options)).collect()
}

fn plan_one(subject: &Subject, world: &World, options: Options) -> Finding {
    let mut finding = Finding {
        vm: subject.vm.clone(),
        uuid: subject.uuid.clone(),
        verdict: Verdict::Busy { by: String::new() },
        steps: Vec::new(),
        notes: Vec::new(),
    };
    if let Some(by) = &subject.known.busy {
        finding.verdict = Verdict::Busy { by: by.clone() };
        return finding;
    }
    let copies: Vec<&Vm> = world.inventory.vms.iter().filter(|v| v.uuid == subject.uuid).collect();
    let keep = match choose(subject, &copies, &world.inventory) {
        Ok(keep) => keep,
        Err((reason, advice)) => {
            finding.verdict = Verdict::Lost { reason, advice };
            return finding;
        }
    };
    finding.verdict = Verdict::Found { host: keep.host.clone(), state: keep.state };
    let step = |action: Action, text: String| Step { action, text };
    let uuid = subject.uuid.clone();

    if world.jobs.iter().any(|(h, u)| *h == keep.host && *u == uuid) {
        finding.steps.push(step(
            Action::AbortJob { host: keep.host.clone(), uuid: uuid.clone() },
            format!(
                "abort the migration job still running on {}: no live ferry run owns it; the VM stays there",
                keep.host
            ),
        ));
    }
    let removed: Vec<&str> = copies.iter().filter(|c| c.host != keep.host).map(|c| c.host.as_str()).collect();
    for copy in copies.iter().filter(|c| c.host != keep.host) {
        finding.steps.push(step(
            Action::RemoveCopy { host: copy.host.clone(), uuid: uuid.clone() },
            format!("remove the {} copy on {}: the VM runs on {}", copy.state, copy.host, keep.host),
        ));
    }
    if keep.state == VmState::Paused && copies.len() == 1 {
        finding.notes.push(format!("paused on {}: `virsh resume` it if it should run", keep.host));
    }

    // The metadata travels with the domain: on the source while the move had not switched
    // over, on the target after.
    let origin_of_move = match &keep.ferry {
        Some(m) if m.phase < Phase::SwitchedOver && m.original_host == keep.host => {
            finding.steps.push(step(
                Action::ClearMetadata { host: keep.host.clone(), uuid: uuid.clone() },
                format!(
                    "clear the metadata of run {}'s interrupted move ({}): the VM never left {}",
                    m.run_id, m.phase, keep.host
                ),
            ));
            None
        }
        Some(m) if m.original_host != keep.host && m.phase < Phase::Finalized => {
            let metadata = Metadata { phase: Phase::Finalized, ..m.clone() };
            finding.steps.push(step(
                Action::Finalize { host: keep.host.clone(), uuid: uuid.clone(), metadata },
                format!(
                    "adopt run {}'s move from {}: it arrived on {}; mark it finalized",
                    m.run_id, m.original_host, keep.host
                ),
            ));
            Some((m.original_host.clone(), m.run_id.clone()))
        }
        Some(m) if m.original_host != keep.host => Some((m.original_host.clone(), m.run_id.clone())),
        _ => None,
    };
    let origin = origin_of_move.or_else(|| {
        let k = &subject.known;
        k.source.clone().filter(|s| k.moved && *s != keep.host).map(|s| (s, k.run.clone().unwrap_or_default()))
    });

    for (disk, (pool, name)) in keep.disks.iter().filter_map(|d| local_volume(d).map(|v| (d, v))) {
        for volume in world.volumes.iter().filter(|v| v.host != keep.host && v.pool == pool && v.name == name) {
            let at = format!("{pool}/{name} on {}", volume.host);
            let users: Vec<&String> =
                volume.used_by.iter().filter(|u| !(**u == uuid && removed.contains(&volume.host.as_str()))).collect();
            if !users.is_empty() {
                let users: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
                finding.notes.push(format!("left alone: {at} is used by {}", users.join(", ")));
                continue;
            }
            if disk.capacity.is_some_and(|c| c != volume.capacity) {
                finding.notes.push(format!(
                    "left alone: {at} is not the size of {}'s disk {} ({} bytes, not {})",
                    subject.vm,
                    disk.target,
                    volume.capacity,
                    disk.capacity.unwrap_or_default()
                ));
                continue;
            }
            let delete = Action::DeleteVolume { host: volume.host.clone(), pool: pool.clone(), name: name.clone() };
            if removed.contains(&volume.host.as_str()) {
                finding.steps.push(step(
                    delete,
                    format!("delete {at}: the stale copy there used it, created for a move that failed"),
                ));
            } else if subject.known.failed_targets.contains(&volume.host) {
                let run = subject.known.run.as_deref().unwrap_or("?");
                finding
                    .steps
                    .push(step(delete, format!("delete {at}: created for run {run}'s move there, which failed")));
            } else {
                let what = match &origin {
                    Some((host, run)) if *host == volume.host => {
                        format!("the source copy of {at}, kept after run {run}'s move")
                    }
                    _ => format!("{at}, a copy of {}'s disk {} on a host it does not run on", subject.vm, disk.target),
                };
                if options.source_volumes {
                    finding.steps.push(step(delete, format!("delete {what} (--source-volumes)")));
                } else {
                    finding.notes.push(format!("kept: {what} (`--source-volumes` deletes it)"));
                }
            }
        }
    }
    finding
}

/// Which copy is the VM, or why none can be chosen (reason, advice).
fn choose<'a>(subject: &Subject, copies: &[&'a Vm], inventory: &Inventory) -> Result<&'a Vm, (String, String)> {
    let running: Vec<&Vm> = copies.iter().copied().filter(|c| c.state == VmState::Running).collect();
    match (copies, running.as_slice()) {
        ([], _) if !inventory.unreachable.is_empty() => {
            let hosts: Vec<&str> = inventory.unreachable.iter().map(|(h, _)| h.as_str()).collect();
            Err((
                format!("found on no host that answered ({} did not)", hosts.join(", ")),
                "bring those hosts back, then run cleanup again".into(),
            ))
        }
        ([], _) => {
            let disks = match &subject.known.source {
                Some(source) => format!(" (its host-local disks were on {source} when run {} started)", subject.known.run.as_deref().unwrap_or("?")),
                None => String::new(),
            };
            Err((
                "known to no host".into(),
                format!(
                    "if its disks remain{disks}, define it again from its XML (`virsh define`) on the host that holds them, then `ferry cleanup --vm {}`; otherwise restore it from a backup",
                    subject.vm
                ),
            ))
        }
        (_, [only]) => Ok(only),
        ([only], []) => Ok(only),
        (_, []) => Err((
            format!("{}, running nowhere", where_(copies)),
            "ferry cannot tell which copy is the VM: start or resume the right one (`virsh start`, `virsh resume`), then run cleanup again".into(),
        )),
        (_, several) => {
            // Two running copies: the source, if its metadata says the move never switched over.
            let sources: Vec<&Vm> = several
                .iter()
                .copied()
                .filter(|c| c.ferry.as_ref().is_some_and(|m| m.phase < Phase::SwitchedOver && m.original_host == c.host))
                .collect();
            match sources.as_slice() {
                [source] => Ok(source),
                _ => Err((
                    where_(copies),
                    "more than one copy runs and nothing says which is the VM: stop the one that must not run (`virsh destroy`), then run cleanup again".into(),
                )),
            }
        }
    }
}

fn where_(copies: &[&Vm]) -> String {
    let seen: Vec<String> = copies.iter().map(|c| format!("{} on {}", c.state, c.host)).collect();
    seen.join(", ")
}

/// Does one step through the driver; returns what was done, in words. Aborting a job
/// waits (up to a minute) for the job to end.
pub async fn apply<D: Driver>(driver: &D, action: &Action) -> Result<String, String> {
    match action {
        Action::AbortJob { host, uuid } => {
            driver.abort_job(host, uuid).await.map_err(|e| e.to_string())?;
            let asked = tokio::time::Instant::now();
            while asked.elapsed() < Duration::from_secs(60) {
                match driver.job(host, uuid).await {
                    Ok(None) => {
                        return Ok(format!("the job on {host} ended after {:.1} s", asked.elapsed().as_secs_f64()))
                    }
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err(format!("the job on {host} still runs a minute after it was aborted"))
        }
        Action::RemoveCopy { host, uuid } => driver.remove_copy(host, uuid).await.map_err(|e| e.to_string()),
        Action::Finalize { host, uuid, metadata } => driver
            .set_metadata(host, uuid, Some(metadata))
            .await
            .map(|()| format!("marked finalized on {host}"))
            .map_err(|e| e.to_string()),
        Action::ClearMetadata { host, uuid } => driver
            .set_metadata(host, uuid, None)
            .await
            .map(|()| format!("cleared on {host}"))
            .map_err(|e| e.to_string()),
        Action::DeleteVolume { host, pool, name } => driver
            .delete_volume(host, pool, name)
            .await
            .map(|()| format!("deleted {pool}/{name} on {host}"))
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use ferry_model::{Disk, DiskSource, Locality};

    use super::*;

    fn vm(host: &str, state: VmState, ferry: Option<(&str, Phase)>) -> Vm {
        Vm {
            uuid: "u-1".into(),
            name: "vm-1".into(),
            host: host.into(),
            vcpus: 1,
            memory_mib: 128,
            cpu_model: None,
            virt_type: "qemu".into(),
            memory_locked: false,
            state,
            disks: vec![Disk {
                target: "vda".into(),
                source: DiskSource::File { path: format!("/lab/{host}/pool/vm-1.qcow2") },
                format: "qcow2".into(),
                locality: Locality::HostLocal,
                pool: Some("local".into()),
                capacity: Some(1 << 24),
            }],
            nics: vec![],
            ferry: ferry.map(|(original, phase)| Metadata {
                run_id: "r-1".into(),
                original_host: original.into(),
                phase,
                claim: None,
            }),
            tags: Default::default(),
        }
    }

    fn volume(host: &str, used: bool) -> Volume {
        Volume {
            host: host.into(),
            pool: "local".into(),
            name: "vm-1.qcow2".into(),
            path: format!("/lab/{host}/pool/vm-1.qcow2"),
            capacity: 1 << 24,
            used_by: if used { vec!["u-1".into()] } else { vec![] },
        }
    }

    fn subject(known: Known) -> Subject {
        Subject { vm: "vm-1".into(), uuid: "u-1".into(), known }
    }

    /// The verdict and the steps, in words.
    fn check(vms: Vec<Vm>, jobs: &[&str], volumes: Vec<Volume>, known: Known, options: Options) -> Vec<String> {
        let world = World {
            inventory: Inventory { vms, ..Inventory::default() },
            jobs: jobs.iter().map(|h| (h.to_string(), "u-1".to_string())).collect(),
            volumes,
        };
        let f = &plan(&[subject(known)], &world, options)[0];
        let mut out = vec![match &f.verdict {
            Verdict::Found { host, state } => format!("found {state} on {host}"),
            Verdict::Lost { reason, .. } => format!("lost: {reason}"),
            Verdict::Busy { by } => format!("busy: {by}"),
        }];
        out.extend(f.steps.iter().map(|s| s.text.clone()));
        out.extend(f.notes.iter().map(|n| format!("note: {n}")));
        out
    }

    #[test]
    fn a_paused_copy_and_its_volume_go_the_running_vm_stays() {
        let got = check(
            vec![vm("host-a", VmState::Running, None), vm("host-c", VmState::Paused, None)],
            &[],
            vec![volume("host-a", true), volume("host-c", true)],
            Known::default(),
            Options::default(),
        );
        assert_eq!(
            got,
            [
                "found running on host-a",
                "remove the paused copy on host-c: the VM runs on host-a",
                "delete local/vm-1.qcow2 on host-c: the stale copy there used it, created for a move that failed",
            ]
        );
    }

    #[test]
    fn an_orphaned_job_is_aborted_and_the_interrupted_moves_leftovers_removed() {
        let got = check(
            vec![
                vm("host-a", VmState::Running, Some(("host-a", Phase::Transferring))),
                vm("host-b", VmState::Paused, None),
            ],
            &["host-a"],
            vec![volume("host-a", true), volume("host-b", true)],
            Known::default(),
            Options::default(),
        );
        assert_eq!(
            got,
            [
                "found running on host-a",
                "abort the migration job still running on host-a: no live ferry run owns it; the VM stays there",
                "remove the paused copy on host-b: the VM runs on host-a",
                "clear the metadata of run r-1's interrupted move (transferring): the VM never left host-a",
                "delete local/vm-1.qcow2 on host-b: the stale copy there used it, created for a move that failed",
            ]
        );
    }

    #[test]
    fn two_running_copies_keep_the_source_of_a_move_that_never_switched_over() {
        let got = check(
            vec![
                vm("host-a", VmState::Running, Some(("host-a", Phase::Transferring))),
                vm("host-b", VmState::Running, None),
            ],
            &[],
            vec![],
            Known::default(),
            Options::default(),
        );
        assert_eq!(got[..2], ["found running on host-a", "remove the running copy on host-b: the VM runs on host-a"]);
        let got = check(
            vec![vm("host-a", VmState::Running, None), vm("host-b", VmState::Running, None)],
            &[],
            vec![],
            Known::default(),
            Options::default(),
        );
        assert_eq!(got, ["lost: running on host-a, running on host-b"]);
    }

    #[test]
    fn nowhere_or_nothing_running_is_lost_with_advice() {
        let got = check(
            vec![],
            &[],
            vec![],
            Known { source: Some("host-a".into()), run: Some("r-1".into()), ..Known::default() },
            Options::default(),
        );
        assert_eq!(got, ["lost: known to no host"]);
        let got = check(
            vec![vm("host-a", VmState::Paused, None), vm("host-b", VmState::ShutOff, None)],
            &[],
            vec![],
            Known::default(),
            Options::default(),
        );
        assert_eq!(got, ["lost: paused on host-a, shut off on host-b, running nowhere"]);
    }

    #[test]
    fn a_move_that_arrived_is_adopted_and_its_kept_source_copy_deleted_only_when_asked() {
        let vms = || vec![vm("host-b", VmState::Running, Some(("host-a", Phase::Transferring)))];
        let volumes = || vec![volume("host-a", false), volume("host-b", true)];
        let got = check(vms(), &[], volumes(), Known::default(), Options::default());
        assert_eq!(
            got,
            [
                "found running on host-b",
                "adopt run r-1's move from host-a: it arrived on host-b; mark it finalized",
                "note: kept: the source copy of local/vm-1.qcow2 on host-a, kept after run r-1's move (`--source-volumes` deletes it)",
            ]
        );
        let got = check(vms(), &[], volumes(), Known::default(), Options { source_volumes: true });
        assert_eq!(
            got[2],
            "delete the source copy of local/vm-1.qcow2 on host-a, kept after run r-1's move (--source-volumes)"
        );
    }

    #[test]
    fn the_journal_names_failed_targets_and_live_runs() {
        let known = Known {
            run: Some("r-2".into()),
            source: Some("host-a".into()),
            failed_targets: vec!["host-c".into()],
            ..Known::default()
        };
        let got = check(
            vec![vm("host-a", VmState::Running, None)],
            &[],
            vec![volume("host-c", false)],
            known,
            Options::default(),
        );
        assert_eq!(
            got,
            [
                "found running on host-a",
                "delete local/vm-1.qcow2 on host-c: created for run r-2's move there, which failed"
            ]
        );
        let busy = Known { busy: Some("run r-3 (owner h:1)".into()), ..Known::default() };
        let got = check(vec![vm("host-a", VmState::Running, None)], &["host-a"], vec![], busy, Options::default());
        assert_eq!(got, ["busy: run r-3 (owner h:1)"]);
    }

    #[test]
    fn a_volume_in_use_or_of_another_size_is_left_alone() {
        let mut other = volume("host-c", false);
        other.used_by = vec!["u-9".into()];
        let mut small = volume("host-b", false);
        small.capacity = 1;
        let got = check(
            vec![vm("host-a", VmState::Running, None)],
            &[],
            vec![other, small],
            Known::default(),
            Options { source_volumes: true },
        );
        assert_eq!(
            got,
            [
                "found running on host-a",
                "note: left alone: local/vm-1.qcow2 on host-c is used by u-9",
                "note: left alone: local/vm-1.qcow2 on host-b is not the size of vm-1's disk vda (1 bytes, not 16777216)",
            ]
        );
    }
}
