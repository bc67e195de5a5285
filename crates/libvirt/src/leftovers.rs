//! What `cleanup` removes: stale copies of a VM and volumes nobody uses. Each call checks
//! again, on the hosts, what makes the removal safe; the caller's plan is not trusted.

use ferry_driver::{ErrorKind, Volume};
use ferry_model::{ClusterSpec, VmState};
use virt::error::ErrorNumber;
use virt::sys;

use crate::conn::{connect, describe, locate, vm_state};
use crate::disk_paths::path_users;
use crate::domxml::parse_domain;
use crate::error::Failure;
use crate::live::host;

/// The volumes of a host's host-local pools, with their users.
pub(crate) fn volumes(cluster: &ClusterSpec, name: &str) -> Result<Vec<Volume>, Failure> {
    let spec = host(cluster, name)?;
    let conn = connect(spec)?;
    let used = path_users(&conn)?;
    let mut found = Vec::new();
    for pool in conn.list_all_storage_pools(0)? {
        let pool_name = pool.name()?;
        if spec.shared_pools.contains(&pool_name) || !pool.is_active().unwrap_or(false) {
            continue;
        }
        // Files may have appeared behind libvirt's back (a crashed copy): look again.
        let _ = pool.refresh(0);
        for volume in pool.list_all_volumes(0)? {
            let path = volume.path()?;
            found.push(Volume {
                host: spec.name.clone(),
                pool: pool_name.clone(),
                name: volume.name()?,
                capacity: volume.info().map(|i| i.capacity).unwrap_or(0),
                used_by: used.get(&path).cloned().unwrap_or_default(),
                path,
            });
        }
    }
    found.sort_by(|a, b| (&a.pool, &a.name).cmp(&(&b.pool, &b.name)));
    Ok(found)
}

/// The volumes of a host's host-local pools that domain `uuid`'s disks use, from its own
/// definition: no other domain is asked.
pub(crate) fn volumes_of(cluster: &ClusterSpec, name: &str, uuid: &str) -> Result<Vec<Volume>, Failure> {
    let spec = host(cluster, name)?;
    let conn = connect(spec)?;
    let domain = conn.lookup_domain_by_uuid_string(uuid)?;
    let desc = parse_domain(&domain.xml_desc(0)?).map_err(|e| Failure::new(ErrorKind::Internal, e))?;
    let mut found = Vec::new();
    for path in desc.disks.iter().filter_map(|d| d.path.as_deref()) {
        // A path in no pool (a network disk, a file libvirt does not manage) is no volume.
        let Ok(volume) = conn.lookup_storage_vol_by_path(path) else { continue };
        let pool = volume.lookup_storage_pool()?;
        let pool_name = pool.name()?;
        if spec.shared_pools.contains(&pool_name) {
            continue;
        }
        found.push(Volume {
            host: spec.name.clone(),
            pool: pool_name,
            name: volume.name()?,
            capacity: volume.info().map(|i| i.capacity).unwrap_or(0),
            used_by: vec![uuid.to_string()],
            path: path.to_string(),
        });
    }
    Ok(found)
}

/// Deletes a volume of a host-local pool that no domain on the host uses; one already gone
/// is no error.
pub(crate) fn delete_volume(cluster: &ClusterSpec, name: &str, pool: &str, volume: &str) -> Result<(), Failure> {
    let spec = host(cluster, name)?;
    if spec.shared_pools.iter().any(|p| p == pool) {
        let reason = format!("pool {pool} is shared: ferry never deletes shared storage");
        return Err(Failure::new(ErrorKind::Refused, reason));
    }
    let conn = connect(spec)?;
    let found = match conn
        .lookup_storage_pool_by_name(pool)
        .map_err(|e| Failure::from(e).reworded(|m| format!("no pool {pool}: {m}")))?
        .lookup_storage_vol_by_name(volume)
    {
        Ok(found) => found,
        // Already gone: what was to be deleted is not there.
        Err(e) if e.code().is(ErrorNumber::NoStorageVolume) => return Ok(()),
        Err(e) => return Err(Failure::from(e).reworded(|m| format!("no volume {volume} in pool {pool}: {m}"))),
    };
    let path = found.path()?;
    if let Some(uuids) = path_users(&conn)?.get(&path) {
        return Err(Failure::new(ErrorKind::Conflict, format!("{path} is in use by {}", uuids.join(", "))));
    }
    found.delete(0).map_err(|e| Failure::from(e).reworded(|m| format!("could not delete {path}: {m}")))
}

/// Powers off and undefines the copy of `vm` on `name`, when the VM runs on exactly one
/// other host.
pub(crate) fn remove_copy(cluster: &ClusterSpec, name: &str, vm: &str) -> Result<String, Failure> {
    let spec = host(cluster, name)?;
    let locations =
        locate(cluster, vm).map_err(|(h, e)| e.reworded(|e| format!("{h} cannot be asked where {vm} runs: {e}")))?;
    let elsewhere: Vec<_> = locations.iter().filter(|l| l.host != spec.name && l.state == VmState::Running).collect();
    if !locations.iter().any(|l| l.host == spec.name) {
        return Ok(format!("no copy left on {}", spec.name));
    }
    if elsewhere.len() != 1 {
        return Err(Failure::new(ErrorKind::Refused, format!(
            "refusing to remove the copy on {}: the VM is {}, and a copy is removed only when it runs on exactly one other host",
            spec.name,
            describe(&locations)
        )));
    }
    let conn = connect(spec)?;
    let domain = conn.lookup_domain_by_uuid_string(vm)?;
    let state = vm_state(&domain);
    let mut done = Vec::new();
    if domain.is_active()? {
        // A copy being torn down by libvirt (an aborted incoming migration) is locked for a
        // moment, and may vanish by itself.
        let mut tries = 0;
        loop {
            match domain.destroy() {
                Ok(()) => break,
                // Only "no such domain" says it went: a connection lost meanwhile says nothing.
                Err(_) if conn.lookup_domain_by_uuid_string(vm).is_err_and(|e| e.code().is(ErrorNumber::NoDomain)) => {
                    return Ok(format!("the {state} copy on {} went away by itself", spec.name));
                }
                Err(e) if tries >= 20 => {
                    let reason = |m: &str| format!("could not power off the {state} copy on {}: {m}", spec.name);
                    return Err(Failure::from(e).reworded(reason));
                }
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
        done.push(format!("powered off the {state} copy on {}", spec.name));
    }
    // The definition may have gone with the power-off (a transient copy).
    let defined = match conn.lookup_domain_by_uuid_string(vm) {
        Ok(domain) => Some(domain),
        Err(e) if e.code().is(ErrorNumber::NoDomain) => None,
        Err(e) => {
            return Err(Failure::from(e).reworded(|m| format!("could not look for the copy on {}: {m}", spec.name)))
        }
    };
    if let Some(domain) = defined {
        let flags = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
        domain
            .undefine_flags(flags)
            .map_err(|e| Failure::from(e).reworded(|m| format!("could not undefine the copy on {}: {m}", spec.name)))?;
        done.push(format!("undefined it on {}", spec.name));
    }
    Ok(format!("{} (the VM runs on {})", done.join(", "), elsewhere[0].host))
}
