//! Which VMs a rollback returns to where they started. Pure.

use ferry_driver::Volume;
use ferry_model::{Inventory, Phase, Vm};
use serde::Serialize;

use crate::stale::{local_disks, unused_copies};

/// Where a VM was when a run started: where a rollback of that run returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// Its host when the run started.
    pub host: String,
}

/// What a rollback does with one VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Return {
    /// It runs elsewhere: move it back.
    Move {
        /// The VM as the inventory shows it, on the host it leaves.
        vm: Box<Vm>,
        /// Its original host.
        to: String,
    },
    /// It is on its original host already (never moved, or returned before).
    Home {
        /// VM name.
        vm: String,
        /// The host.
        host: String,
    },
    /// It cannot be returned now.
    Blocked {
        /// VM name.
        vm: String,
        /// VM UUID.
        uuid: String,
        /// Its original host.
        to: String,
        /// Why, and what the operator can do.
        reason: String,
    },
}

impl Return {
    /// The VM's name.
    pub fn vm(&self) -> &str {
        match self {
            Return::Move { vm, .. } => &vm.name,
            Return::Home { vm, .. } | Return::Blocked { vm, .. } => vm,
        }
    }
}

/// Where each VM of run `run` started, from ferry's metadata on the domains: every domain
/// whose metadata names the run and says its move switched over (the move happened)
/// started on the metadata's original host. What `--from-hypervisor` uses when the journal
/// is lost. A VM moved again by a later run carries that run's metadata and is not found.
pub fn origins_from_metadata(run: &str, inventory: &Inventory) -> Vec<Origin> {
    let mut origins: Vec<Origin> = Vec::new();
    for vm in &inventory.vms {
        let Some(m) = &vm.ferry else { continue };
        if m.run_id != run || m.phase < Phase::SwitchedOver || origins.iter().any(|o| o.uuid == vm.uuid) {
            continue;
        }
        origins.push(Origin { vm: vm.name.clone(), uuid: vm.uuid.clone(), host: m.original_host.clone() });
    }
    origins.sort_by(|a, b| a.vm.cmp(&b.vm));
    origins
}

/// What a rollback does with each VM of `origins`, judged by where the inventory finds it:
/// on exactly one host other than its origin, it moves back; on its origin, nothing; on no
/// host, on several, or with its origin unreachable, it is blocked, with what to do.
pub fn returns(origins: &[Origin], inventory: &Inventory) -> Vec<Return> {
    origins
        .iter()
        .map(|o| {
            let copies: Vec<&Vm> = inventory.vms.iter().filter(|v| v.uuid == o.uuid).collect();
            let blocked =
                |reason: String| Return::Blocked { vm: o.vm.clone(), uuid: o.uuid.clone(), to: o.host.clone(), reason };
            match copies.as_slice() {
                [] if !inventory.unreachable.is_empty() => {
                    let hosts: Vec<&str> = inventory.unreachable.iter().map(|(h, _)| h.as_str()).collect();
                    blocked(format!("found on no reachable host ({} did not answer)", hosts.join(", ")))
                }
                [] => blocked(format!("known to no host; `ferry cleanup --vm {}` says what can be done", o.vm)),
                [vm] if vm.host == o.host => Return::Home { vm: o.vm.clone(), host: o.host.clone() },
                [_] if inventory.host(&o.host).is_none() => {
                    blocked(format!("its original host {} did not answer", o.host))
                }
                [vm] => Return::Move { vm: Box::new((*vm).clone()), to: o.host.clone() },
                many => {
                    let seen: Vec<String> = many.iter().map(|v| format!("{} on {}", v.state, v.host)).collect();
                    blocked(format!(
                        "known to {} hosts ({}); `ferry cleanup --vm {}` first",
                        many.len(),
                        seen.join(", "),
                        o.vm
                    ))
                }
            }
        })
        .collect()
}

/// Volumes on a returning VM's original host that would stop it from coming back: the
/// copies of its host-local disks that the move away kept there (same pool, same name, same
/// size, used by no domain; [`crate::stale`]'s match). A live move never overwrites a
/// volume, and these copies are older than the disks the VM runs on, so the rollback deletes
/// them first: it is returning the VM from where that very run took it.
pub fn stale_copies<'a>(vm: &Vm, volumes_at_origin: &'a [Volume]) -> Vec<&'a Volume> {
    unused_copies(&local_disks(vm), volumes_at_origin)
}

#[cfg(test)]
mod tests {
    use ferry_model::{Disk, DiskSource, Locality, Metadata, VmState};

    use super::*;

    fn vm(name: &str, host: &str, state: VmState, ferry: Option<(&str, &str, Phase)>) -> Vm {
        Vm {
            uuid: format!("uuid-{name}"),
            name: name.into(),
            host: host.into(),
            vcpus: 1,
            memory_mib: 128,
            cpu_model: None,
            virt_type: "qemu".into(),
            memory_locked: false,
            state,
            disks: vec![Disk {
                target: "vda".into(),
                source: DiskSource::File { path: format!("/pools/{host}/{name}.qcow2") },
                format: "qcow2".into(),
                locality: Locality::HostLocal,
                pool: Some("local".into()),
                capacity: Some(1 << 24),
            }],
            nics: vec![],
            ferry: ferry.map(|(run, original, phase)| Metadata {
                run_id: run.into(),
                original_host: original.into(),
                phase,
                claim: None,
            }),
            tags: Default::default(),
        }
    }

    fn inventory(vms: Vec<Vm>) -> Inventory {
        let host = |name: &str| ferry_model::Host {
            name: name.into(),
            uri: "test:///".into(),
            cpu_model: "x".into(),
            cpu_models: Default::default(),
            cpus: 2,
            memory_mib: 4096,
            free_memory_mib: 4096,
            hypervisor_version: ferry_model::Version { major: 10, minor: 0, release: 0 },
            libvirt_version: ferry_model::Version { major: 11, minor: 3, release: 0 },
            pools: vec![],
            networks: vec![],
        };
        Inventory { hosts: vec![host("a"), host("b"), host("c")], vms, unreachable: vec![] }
    }

    fn origin(name: &str, host: &str) -> Origin {
        Origin { vm: name.into(), uuid: format!("uuid-{name}"), host: host.into() }
    }

    #[test]
    fn each_vm_moves_back_stays_or_is_blocked_with_a_reason() {
        let inv = inventory(vec![
            vm("moved", "b", VmState::Running, None),
            vm("home", "a", VmState::Running, None),
            vm("twice", "a", VmState::Running, None),
            vm("twice", "c", VmState::Paused, None),
        ]);
        let origins = [origin("moved", "a"), origin("home", "a"), origin("twice", "a"), origin("gone", "b")];
        let got: Vec<String> = returns(&origins, &inv)
            .iter()
            .map(|r| match r {
                Return::Move { vm, to } => format!("{} {} -> {to}", vm.name, vm.host),
                Return::Home { vm, host } => format!("{vm} home on {host}"),
                Return::Blocked { vm, reason, .. } => format!("{vm} blocked: {reason}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                "moved b -> a",
                "home home on a",
                "twice blocked: known to 2 hosts (running on a, paused on c); `ferry cleanup --vm twice` first",
                "gone blocked: known to no host; `ferry cleanup --vm gone` says what can be done",
            ]
        );
    }

    #[test]
    fn an_unreachable_original_host_blocks_the_return() {
        let mut inv = inventory(vec![vm("moved", "b", VmState::Running, None)]);
        inv.hosts.retain(|h| h.name != "a");
        inv.unreachable.push(("a".into(), "connection refused".into()));
        let got = returns(&[origin("moved", "a")], &inv);
        assert!(
            matches!(&got[0], Return::Blocked { reason, .. } if reason == "its original host a did not answer"),
            "{got:?}"
        );
    }

    #[test]
    fn metadata_names_the_runs_switched_over_moves() {
        let inv = inventory(vec![
            vm("done", "b", VmState::Running, Some(("r-1", "a", Phase::Finalized))),
            vm("cold", "c", VmState::Running, Some(("r-1", "a", Phase::SwitchedOver))),
            vm("interrupted", "a", VmState::Running, Some(("r-1", "a", Phase::Transferring))),
            vm("other-run", "b", VmState::Running, Some(("r-2", "a", Phase::Finalized))),
            vm("plain", "b", VmState::Running, None),
        ]);
        assert_eq!(origins_from_metadata("r-1", &inv), vec![origin("cold", "a"), origin("done", "a")]);
    }

    #[test]
    fn only_unused_copies_of_the_vms_own_disks_are_stale() {
        let moved = vm("web", "b", VmState::Running, None);
        let volume = |name: &str, used_by: &[&str]| Volume {
            host: "a".into(),
            pool: "local".into(),
            name: name.into(),
            path: format!("/pools/a/{name}"),
            capacity: 1 << 24,
            used_by: used_by.iter().map(|u| u.to_string()).collect(),
        };
        let at_a = [volume("web.qcow2", &[]), volume("db.qcow2", &[])];
        assert_eq!(stale_copies(&moved, &at_a), vec![&at_a[0]]);
        let in_use = [volume("web.qcow2", &["uuid-other"])];
        assert!(stale_copies(&moved, &in_use).is_empty());
    }
}
