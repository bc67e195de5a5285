//! The volumes of a move, in the shape of a volume driver's migration hooks: check every disk
//! and say which target volumes a move needs (`plan`), create one (`create`), copy one
//! (`copy`). Which volumes were created, and so may be deleted, is the engine's record.

use ferry_driver::{TargetVolume, VolumeCopy};
use ferry_model::HostSpec;
use virt::connect::Connect;
use virt::storage_vol::StorageVol;

use crate::conn::msg;
use crate::domxml::DiskXml;

/// (source path, target path) of each copy, for the destination XML.
pub(crate) fn path_moves(copies: &[VolumeCopy]) -> Vec<(String, String)> {
    copies.iter().map(|c| (c.volume.source_path.clone(), c.target_path.clone())).collect()
}

/// Checks every disk and lists a target volume for each host-local one, in the target's
/// pool of the same name, with the same format and size. Shared disks are checked, never
/// copied. Changes nothing.
pub(crate) fn plan(
    src: &Connect,
    dst: &Connect,
    from: &HostSpec,
    to: &HostSpec,
    disks: &[DiskXml],
) -> Result<Vec<TargetVolume>, String> {
    let mut needed = Vec::new();
    for disk in disks {
        if let Some(volume) = plan_disk(src, dst, from, to, disk)? {
            needed.push(volume);
        }
    }
    Ok(needed)
}

fn plan_disk(
    src: &Connect,
    dst: &Connect,
    from: &HostSpec,
    to: &HostSpec,
    disk: &DiskXml,
) -> Result<Option<TargetVolume>, String> {
    if let Some((_, name, servers)) = &disk.network {
        // Network storage is shared by nature; the target must reach its servers.
        for server in servers {
            reachable(server).map_err(|e| {
                format!("disk {}: network storage {name} at {server} is not reachable: {e}", disk.target)
            })?;
        }
        return Ok(None);
    }
    let Some(path) = &disk.path else {
        return Err(format!("disk {}: a {} disk ferry cannot move", disk.target, disk.kind));
    };
    let volume = src
        .lookup_storage_vol_by_path(path)
        .map_err(|e| format!("disk {} ({path}) is in no storage pool on {}: {}", disk.target, from.name, msg(e)))?;
    let pool = volume.lookup_storage_pool().map_err(msg)?;
    let pool_name = pool.name().map_err(msg)?;
    if from.shared_pools.contains(&pool_name) {
        // Declared shared: the target must see the very same volume.
        dst.lookup_storage_vol_by_path(path).map_err(|_| {
            format!("disk {}: pool {pool_name} is declared shared but {} does not see {path}", disk.target, to.name)
        })?;
        return Ok(None);
    }
    let info = volume.info().map_err(msg)?;
    let name = volume.name().map_err(msg)?;
    let target_pool = dst.lookup_storage_pool_by_name(&pool_name).map_err(|_| {
        format!("disk {}: {} has no storage pool {pool_name} to copy {name} into", disk.target, to.name)
    })?;
    if target_pool.lookup_storage_vol_by_name(&name).is_ok() {
        return Err(format!(
            "disk {}: volume {name} already exists in pool {pool_name} on {}; refusing to overwrite it (run `ferry cleanup` if it is a leftover)",
            disk.target, to.name
        ));
    }
    let pool_info = target_pool.info().map_err(msg)?;
    if pool_info.available < info.capacity {
        return Err(format!(
            "disk {}: pool {pool_name} on {} has {} MiB free, {name} needs up to {} MiB",
            disk.target,
            to.name,
            pool_info.available >> 20,
            info.capacity >> 20
        ));
    }
    Ok(Some(TargetVolume {
        host: to.name.clone(),
        pool: pool_name,
        name,
        capacity: info.capacity,
        format: disk.format.clone(),
        source_path: path.clone(),
    }))
}

/// Creates `volume`, empty, on its host (`dst`); returns its path. Refuses an existing one.
pub(crate) fn create(dst: &Connect, volume: &TargetVolume) -> Result<String, String> {
    let TargetVolume { host, pool, name, capacity, format, .. } = volume;
    let target_pool =
        dst.lookup_storage_pool_by_name(pool).map_err(|e| format!("{host} has no storage pool {pool}: {}", msg(e)))?;
    if target_pool.lookup_storage_vol_by_name(name).is_ok() {
        return Err(format!("volume {name} already exists in pool {pool} on {host}; refusing to overwrite it"));
    }
    let xml = format!(
        "<volume><name>{name}</name><capacity unit='bytes'>{capacity}</capacity><target><format type='{format}'/></target></volume>"
    );
    let created = StorageVol::create_xml(&target_pool, &xml, 0)
        .map_err(|e| format!("could not create {name} in pool {pool} on {host}: {}", msg(e)))?;
    created.path().map_err(msg)
}

fn reachable(server: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addr = server.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| "no address".to_string())?;
    TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).map(drop).map_err(|e| e.to_string())
}

/// Copies a source volume's bytes into its target volume through libvirt storage streams, so
/// that it works between real machines (cold moves). Returns the bytes copied.
pub(crate) fn copy(src: &Connect, dst: &Connect, copy: &VolumeCopy) -> Result<u64, String> {
    use virt::stream::Stream;
    let source_path = &copy.volume.source_path;
    let from = src.lookup_storage_vol_by_path(source_path).map_err(msg)?;
    let to = dst.lookup_storage_vol_by_path(&copy.target_path).map_err(msg)?;
    let down = Stream::new(src, 0).map_err(msg)?;
    let up = Stream::new(dst, 0).map_err(msg)?;
    from.download(&down, 0, 0, 0).map_err(|e| format!("download {source_path}: {}", msg(e)))?;
    to.upload(&up, 0, 0, 0).map_err(|e| format!("upload {}: {}", copy.target_path, msg(e)))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = down.recv(&mut buf).map_err(msg)?;
        if n <= 0 {
            break;
        }
        let n = usize::try_from(n).expect("positive");
        let mut sent = 0;
        while sent < n {
            let m = up.send(&buf[sent..n]).map_err(msg)?;
            sent += usize::try_from(m).map_err(|_| "stream send failed".to_string())?;
        }
        total += n as u64;
    }
    down.finish().map_err(msg)?;
    up.finish().map_err(|e| format!("upload {}: {}", copy.target_path, msg(e)))?;
    Ok(total)
}
