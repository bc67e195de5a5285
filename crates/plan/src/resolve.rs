//! A plan's names checked against the cluster and what libvirt reports: every VM found,
//! every host known, drains expanded into moves. Errors keep the plan's lines and suggest
//! the closest existing name.

use ferry_model::{ClusterSpec, Inventory};
use serde::{Deserialize, Serialize};

use crate::{closest, InputError, Plan, Target};

/// One VM's move with its VM found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedMove {
    /// VM name.
    pub vm: String,
    /// VM UUID.
    pub uuid: String,
    /// Host it is on now.
    pub from: String,
    /// Where it goes.
    pub to: Target,
    /// Group, for one-after-another moves and anti-affinity.
    pub group: Option<String>,
    /// Position in its group.
    pub order: usize,
    /// Higher first.
    pub priority: i64,
    /// Line of the plan that asked for it.
    pub line: usize,
    /// The host it drains, when it comes from a `[[drain]]`.
    pub drains: Option<String>,
    /// It moves cold whatever the plan's mode (its drain says so).
    #[serde(default)]
    pub cold: bool,
}

/// Resolves every name of `plan`. All problems are reported at once.
pub fn resolve(
    plan: &Plan,
    cluster: &ClusterSpec,
    inventory: &Inventory,
) -> Result<Vec<ResolvedMove>, Vec<InputError>> {
    let mut errors = Vec::new();
    let error = |line: usize, field: &str, message: String| InputError {
        file: plan.file.clone(),
        line: Some(line),
        field: Some(field.to_string()),
        message,
    };
    let host_names = || cluster.hosts.iter().map(|h| h.name.as_str());
    let unknown_host = |name: &str| {
        let hint = closest(name, host_names()).map(|c| format!("; did you mean {c}?")).unwrap_or_default();
        format!("no host {name} in the cluster{hint}")
    };
    let unreachable = if inventory.unreachable.is_empty() {
        String::new()
    } else {
        let hosts: Vec<&str> = inventory.unreachable.iter().map(|(h, _)| h.as_str()).collect();
        format!(" (not asked: {} unreachable)", hosts.join(", "))
    };
    let mut resolved = Vec::new();
    for m in &plan.moves {
        if let Target::Host(to) = &m.to {
            if cluster.host(to).is_none() {
                errors.push(error(m.line, "to", unknown_host(to)));
            }
        }
        let found = inventory.vms.iter().filter(|v| v.name == m.vm || v.uuid == m.vm).collect::<Vec<_>>();
        match found.as_slice() {
            [vm] => resolved.push(ResolvedMove {
                vm: vm.name.clone(),
                uuid: vm.uuid.clone(),
                from: vm.host.clone(),
                to: m.to.clone(),
                group: m.group.clone(),
                order: m.order,
                priority: m.priority,
                line: m.line,
                drains: None,
                cold: false,
            }),
            [] => {
                let hint = closest(&m.vm, inventory.vms.iter().map(|v| v.name.as_str()))
                    .map(|c| format!("; did you mean {c}?"))
                    .unwrap_or_default();
                errors.push(error(m.line, "vm", format!("no VM {} on any host{unreachable}{hint}", m.vm)));
            }
            many => {
                let hosts: Vec<&str> = many.iter().map(|v| v.host.as_str()).collect();
                errors.push(error(
                    m.line,
                    "vm",
                    format!(
                        "{} is known to {} hosts ({}): run `ferry cleanup --vm {}` first",
                        m.vm,
                        many.len(),
                        hosts.join(", "),
                        m.vm
                    ),
                ));
            }
        }
    }
    for d in &plan.drains {
        if cluster.host(&d.host).is_none() {
            errors.push(error(d.line, "drain.host", unknown_host(&d.host)));
            continue;
        }
        if let Target::Host(to) = &d.to {
            if cluster.host(to).is_none() {
                errors.push(error(d.line, "drain.to", unknown_host(to)));
            }
        }
        if inventory.host(&d.host).is_none() {
            errors.push(error(d.line, "drain.host", format!("{} did not answer: its VMs cannot be listed", d.host)));
            continue;
        }
        // A VM named explicitly elsewhere in the plan goes where that says; one that sits the
        // host's maintenance out, shut down, does not go.
        for vm in inventory.vms_on(&d.host) {
            if resolved.iter().any(|r: &ResolvedMove| r.uuid == vm.uuid) || d.shut_down.contains(&vm.name) {
                continue;
            }
            resolved.push(ResolvedMove {
                vm: vm.name.clone(),
                uuid: vm.uuid.clone(),
                from: d.host.clone(),
                to: d.to.clone(),
                group: None,
                order: 0,
                priority: 0,
                line: d.line,
                drains: Some(d.host.clone()),
                cold: d.cold.contains(&vm.name),
            });
        }
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}
