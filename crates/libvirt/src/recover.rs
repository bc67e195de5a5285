//! What `resume` needs after a crash: a migration job that outlived its ferry, and the
//! preparation an interrupted move left behind.

use std::time::Instant;

use ferry_driver::{MoveRequest, Progress};
use ferry_model::{ClusterSpec, Phase};
use virt::domain::Domain;

use crate::conn::{self, job_stats, msg};
use crate::domxml::parse_domain;
use crate::live::{host, progress_of};
use crate::metadata::{clear_metadata, read_metadata};

/// The domain's running job, if any.
pub(crate) fn job(domain: &Domain) -> Result<Option<Progress>, String> {
    let stats = job_stats(domain, 0)?;
    Ok((stats.r#type != 0).then(|| progress_of(&stats, Instant::now())))
}

/// Deletes the target volumes and the source metadata of an interrupted live move. Volumes
/// are matched by pool and name, as `volumes::prepare` creates them; nothing is touched
/// unless the source's metadata says this run prepared the move and the target has no
/// domain with the VM's UUID.
pub(crate) fn discard_prepared(cluster: &ClusterSpec, request: &MoveRequest) -> Result<Vec<String>, String> {
    let (from, to) = (host(cluster, &request.from)?, host(cluster, &request.to)?);
    let src = conn::open(from)?;
    let dst = conn::open(to)?;
    let domain = src
        .lookup_domain_by_uuid_string(&request.vm)
        .map_err(|e| format!("{} is not on {}: {}", request.vm, from.name, msg(e)))?;
    if dst.lookup_domain_by_uuid_string(&request.vm).is_ok() {
        return Err(format!("{} also has a domain with this UUID: that is cleanup's to judge", to.name));
    }
    let ours = read_metadata(&domain)?
        .is_some_and(|m| m.run_id == request.run_id && matches!(m.phase, Phase::Prepared | Phase::Transferring));
    if !ours {
        return Ok(Vec::new());
    }
    let desc = parse_domain(&domain.xml_desc(0).map_err(msg)?)?;
    let mut removed = Vec::new();
    for disk in &desc.disks {
        let Some(path) = &disk.path else { continue };
        let Ok(volume) = src.lookup_storage_vol_by_path(path) else { continue };
        let pool = volume.lookup_storage_pool().map_err(msg)?.name().map_err(msg)?;
        if from.shared_pools.contains(&pool) {
            continue;
        }
        let name = volume.name().map_err(msg)?;
        let Ok(target_pool) = dst.lookup_storage_pool_by_name(&pool) else { continue };
        if let Ok(leftover) = target_pool.lookup_storage_vol_by_name(&name) {
            leftover
                .delete(0)
                .map_err(|e| format!("could not delete {name} from pool {pool} on {}: {}", to.name, msg(e)))?;
            removed.push(format!("deleted {name} from pool {pool} on {}, created for the interrupted move", to.name));
        }
    }
    clear_metadata(&domain)?;
    removed.push(format!("cleared ferry's metadata on {}", from.name));
    Ok(removed)
}

/// After a move of `request` completed while ferry was away: deletes the source's copies of
/// the VM's host-local disks, as the move would have with `delete_source_volumes`. Volumes are
/// matched by pool and name, as `volumes::prepare` creates them; nothing is touched unless the
/// VM runs on the target and the source has no domain with its UUID, and a source volume some
/// domain there still uses is kept.
pub(crate) fn release_source(cluster: &ClusterSpec, request: &MoveRequest) -> Result<Vec<String>, String> {
    let (from, to) = (host(cluster, &request.from)?, host(cluster, &request.to)?);
    let src = conn::open(from)?;
    if src.lookup_domain_by_uuid_string(&request.vm).is_ok() {
        return Err(format!("{} still has a domain with this UUID: that is cleanup's to judge", from.name));
    }
    let dst = conn::open(to)?;
    let domain = dst
        .lookup_domain_by_uuid_string(&request.vm)
        .map_err(|e| format!("{} is not on {}: {}", request.vm, to.name, msg(e)))?;
    let desc = parse_domain(&domain.xml_desc(0).map_err(msg)?)?;
    let on_source = crate::leftovers::volumes(cluster, &from.name)?;
    let mut deleted = Vec::new();
    for disk in &desc.disks {
        let Some(path) = &disk.path else { continue };
        let Ok(volume) = dst.lookup_storage_vol_by_path(path) else { continue };
        let pool = volume.lookup_storage_pool().map_err(msg)?.name().map_err(msg)?;
        let name = volume.name().map_err(msg)?;
        let unused = on_source.iter().find(|v| v.pool == pool && v.name == name && v.used_by.is_empty());
        if let Some(copy) = unused {
            crate::leftovers::delete_volume(cluster, &from.name, &pool, &name)?;
            deleted.push(format!("deleted the source volume {} on {}", copy.path, from.name));
        }
    }
    Ok(deleted)
}
