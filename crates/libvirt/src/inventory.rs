//! Hosts and VMs as libvirt reports them.

use ferry_model::{ClusterSpec, Disk, DiskSource, Host, HostSpec, Inventory, Locality, Nic, Pool, Version, Vm};
use virt::connect::Connect;

use crate::conn::{read, vm_state};
use crate::domxml::parse_domain;
use crate::error::Failure;
use crate::pool::ask_each;

/// Asks every host, all at once; the hosts and VMs come in the cluster's order. A host that
/// does not answer is listed as unreachable.
pub(crate) fn inventory(cluster: &ClusterSpec) -> Inventory {
    let answers = ask_each(&cluster.hosts, |spec| read(spec, |conn| host_inventory(conn, spec)));
    let mut inventory = Inventory::default();
    for (spec, answer) in cluster.hosts.iter().zip(answers) {
        match answer {
            Ok((host, vms)) => {
                inventory.hosts.push(host);
                inventory.vms.extend(vms);
            }
            Err(e) => inventory.unreachable.push((spec.name.clone(), e.message)),
        }
    }
    inventory
}

fn host_inventory(conn: &Connect, spec: &HostSpec) -> Result<(Host, Vec<Vm>), Failure> {
    let node = conn.node_info()?;
    let capabilities = conn.capabilities()?;
    let pools = pools(conn, spec)?;
    let host = Host {
        name: spec.name.clone(),
        uri: spec.uri.clone(),
        cpu_model: host_cpu_model(&capabilities).unwrap_or_else(|| node.model.clone()),
        cpu_models: ["kvm", "qemu"]
            .into_iter()
            .filter_map(|virt_type| {
                let xml = conn.domain_capabilities(None, None, None, Some(virt_type), 0).ok()?;
                Some((virt_type.to_string(), usable_cpu_models(&xml)))
            })
            .collect(),
        cpus: node.cpus,
        memory_mib: node.memory / 1024,
        free_memory_mib: conn.free_memory()? >> 20,
        hypervisor_version: Version::from_libvirt(conn.hyp_version()?),
        libvirt_version: Version::from_libvirt(conn.lib_version()?),
        networks: conn.list_networks().unwrap_or_default(),
        pools,
    };
    let mut vms = Vec::new();
    for domain in conn.list_all_domains(0)? {
        let Ok(xml) = domain.xml_desc(0) else { continue };
        let Ok(desc) = parse_domain(&xml) else { continue };
        let disks = desc
            .disks
            .iter()
            .map(|d| {
                let source = match (&d.network, &d.path) {
                    (Some((protocol, name, servers)), _) => {
                        DiskSource::Network { protocol: protocol.clone(), name: name.clone(), servers: servers.clone() }
                    }
                    (None, Some(path)) if d.kind == "block" => DiskSource::Block { path: path.clone() },
                    (None, path) => DiskSource::File { path: path.clone().unwrap_or_default() },
                };
                let volume = d.path.as_deref().and_then(|p| conn.lookup_storage_vol_by_path(p).ok());
                let pool = volume.as_ref().and_then(|v| v.lookup_storage_pool().ok()).and_then(|p| p.name().ok());
                let shared = d.network.is_some() || pool.as_ref().is_some_and(|p| spec.shared_pools.contains(p));
                Disk {
                    target: d.target.clone(),
                    source,
                    format: d.format.clone(),
                    locality: if shared { Locality::Shared } else { Locality::HostLocal },
                    pool,
                    capacity: volume.and_then(|v| v.info().ok()).map(|i| i.capacity),
                }
            })
            .collect();
        vms.push(Vm {
            uuid: desc.uuid,
            name: desc.name,
            host: spec.name.clone(),
            vcpus: desc.vcpus,
            memory_mib: desc.memory_kib / 1024,
            cpu_model: desc.cpu_model,
            virt_type: desc.virt_type,
            memory_locked: desc.memory_locked,
            state: vm_state(&domain),
            disks,
            nics: desc.nics.into_iter().map(|(mac, network)| Nic { mac, network }).collect(),
            ferry: crate::metadata::read_metadata(&domain).ok().flatten(),
            tags: crate::metadata::read_tags(&domain).unwrap_or_default(),
        });
    }
    Ok((host, vms))
}

fn pools(conn: &Connect, spec: &HostSpec) -> Result<Vec<Pool>, Failure> {
    let mut pools = Vec::new();
    for pool in conn.list_all_storage_pools(0)? {
        let name = pool.name()?;
        let info = pool.info()?;
        let xml = pool.xml_desc(0).unwrap_or_default();
        let path = roxmltree::Document::parse(&xml).ok().and_then(|doc| {
            doc.descendants().find(|n| n.has_tag_name("path")).and_then(|n| n.text()).map(String::from)
        });
        pools.push(Pool {
            shared: spec.shared_pools.contains(&name),
            name,
            path,
            capacity: info.capacity,
            available: info.available,
        });
    }
    Ok(pools)
}

/// The host CPU model from the capabilities XML (`<host><cpu><model>`).
fn host_cpu_model(capabilities: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(capabilities).ok()?;
    let host = doc.root_element().children().find(|n| n.has_tag_name("host"))?;
    let cpu = host.children().find(|n| n.has_tag_name("cpu"))?;
    cpu.children().find(|n| n.has_tag_name("model"))?.text().map(String::from)
}

/// Named CPU models marked usable in the domain capabilities (`<mode name='custom'>`).
fn usable_cpu_models(capabilities: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(capabilities) else { return Vec::new() };
    doc.descendants()
        .filter(|n| n.has_tag_name("mode") && n.attribute("name") == Some("custom"))
        .flat_map(|mode| mode.children().filter(|m| m.has_tag_name("model") && m.attribute("usable") == Some("yes")))
        .filter_map(|m| m.text().map(String::from))
        .collect()
}
