//! Volume handoff around a move, in the shape of a volume driver's migration hooks: check
//! and prepare on the source, prepare on the target, release on the source after success,
//! and a revert that tolerates steps that never happened.

use ferry_model::HostSpec;
use virt::connect::Connect;
use virt::storage_vol::StorageVol;

use crate::conn::msg;
use crate::domxml::DiskXml;

/// A host-local disk copied to a volume created for it on the target.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    /// Disk path on the source.
    pub source_path: String,
    /// Path of the volume created on the target.
    pub target_path: String,
}

/// What was prepared for a move: volumes to copy into (created on the target).
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// Host-local disks and the target volumes created for them.
    pub copies: Vec<Copy>,
}

impl Handoff {
    /// (source path, target path) for the destination XML.
    pub fn path_moves(&self) -> Vec<(String, String)> {
        self.copies.iter().map(|c| (c.source_path.clone(), c.target_path.clone())).collect()
    }
}

/// Checks every disk and creates a target volume for each host-local one, in the target's
/// pool of the same name, with the same format and size. Shared disks are checked, never
/// copied. On failure, removes what it created and says why.
pub(crate) fn prepare(
    src: &Connect,
    dst: &Connect,
    from: &HostSpec,
    to: &HostSpec,
    disks: &[DiskXml],
) -> Result<Handoff, String> {
    let mut handoff = Handoff::default();
    for disk in disks {
        if let Err(e) = prepare_disk(src, dst, from, to, disk, &mut handoff) {
            revert(dst, &handoff);
            return Err(e);
        }
    }
    Ok(handoff)
}

fn prepare_disk(
    src: &Connect,
    dst: &Connect,
    from: &HostSpec,
    to: &HostSpec,
    disk: &DiskXml,
    handoff: &mut Handoff,
) -> Result<(), String> {
    if let Some((_, name, servers)) = &disk.network {
        // Network storage is shared by nature; the target must reach its servers.
        for server in servers {
            reachable(server).map_err(|e| {
                format!("disk {}: network storage {name} at {server} is not reachable: {e}", disk.target)
            })?;
        }
        return Ok(());
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
        return Ok(());
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
    let xml = format!(
        "<volume><name>{name}</name><capacity unit='bytes'>{}</capacity><target><format type='{}'/></target></volume>",
        info.capacity, disk.format
    );
    let created = StorageVol::create_xml(&target_pool, &xml, 0)
        .map_err(|e| format!("disk {}: could not create {name} on {}: {}", disk.target, to.name, msg(e)))?;
    handoff.copies.push(Copy { source_path: path.clone(), target_path: created.path().map_err(msg)? });
    Ok(())
}

/// Deletes every volume created on the target. Volumes already gone are fine.
pub(crate) fn revert(dst: &Connect, handoff: &Handoff) -> Vec<String> {
    let mut deleted = Vec::new();
    for copy in &handoff.copies {
        if let Ok(volume) = dst.lookup_storage_vol_by_path(&copy.target_path) {
            if volume.delete(0).is_ok() {
                deleted.push(copy.target_path.clone());
            }
        }
    }
    deleted
}

/// After a verified move: deletes the source's copies when asked.
pub(crate) fn release_source(src: &Connect, handoff: &Handoff) -> Result<Vec<String>, String> {
    let mut deleted = Vec::new();
    for copy in &handoff.copies {
        let volume = src.lookup_storage_vol_by_path(&copy.source_path).map_err(msg)?;
        volume.delete(0).map_err(|e| format!("could not delete {}: {}", copy.source_path, msg(e)))?;
        deleted.push(copy.source_path.clone());
    }
    Ok(deleted)
}

fn reachable(server: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addr = server.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| "no address".to_string())?;
    TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).map(drop).map_err(|e| e.to_string())
}

/// Copies each source volume's bytes into its target volume through libvirt storage
/// streams, so that it works between real machines (cold moves).
pub(crate) fn copy_through_streams(src: &Connect, dst: &Connect, handoff: &Handoff) -> Result<u64, String> {
    use virt::stream::Stream;
    let mut total = 0u64;
    for copy in &handoff.copies {
        let from = src.lookup_storage_vol_by_path(&copy.source_path).map_err(msg)?;
        let to = dst.lookup_storage_vol_by_path(&copy.target_path).map_err(msg)?;
        let down = Stream::new(src, 0).map_err(msg)?;
        let up = Stream::new(dst, 0).map_err(msg)?;
        from.download(&down, 0, 0, 0).map_err(|e| format!("download {}: {}", copy.source_path, msg(e)))?;
        to.upload(&up, 0, 0, 0).map_err(|e| format!("upload {}: {}", copy.target_path, msg(e)))?;
        let mut buf = vec![0u8; 1 << 20];
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
    }
    Ok(total)
}
