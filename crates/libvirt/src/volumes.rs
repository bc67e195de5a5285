//! The volumes of a move, in the shape of a volume driver's migration hooks: check every disk
//! and say which target volumes a move needs (`plan`), create one (`create`), copy one
//! (`copy`). Which volumes were created, and so may be deleted, is the engine's record.

use ferry_driver::{ErrorKind, TargetVolume, VolumeCopy};
use ferry_model::HostSpec;
use virt::connect::Connect;
use virt::storage_vol::StorageVol;

use crate::domxml::{escape, DiskXml};
use crate::error::Failure;

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
) -> Result<Vec<TargetVolume>, Failure> {
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
) -> Result<Option<TargetVolume>, Failure> {
    if let Some((_, name, servers)) = &disk.network {
        // Network storage is shared by nature; the target must reach its servers.
        for server in servers {
            reachable(server).map_err(|e| {
                let reason = format!("disk {}: network storage {name} at {server} is not reachable: {e}", disk.target);
                Failure::new(ErrorKind::Unreachable, reason)
            })?;
        }
        return Ok(None);
    }
    let Some(path) = &disk.path else {
        let reason = format!("disk {}: a {} disk ferry cannot move", disk.target, disk.kind);
        return Err(Failure::new(ErrorKind::Refused, reason));
    };
    let volume = src.lookup_storage_vol_by_path(path).map_err(|e| {
        Failure::from(e)
            .reworded(|m| format!("disk {} ({path}) is in no storage pool on {}: {m}", disk.target, from.name))
    })?;
    let pool = volume.lookup_storage_pool()?;
    let pool_name = pool.name()?;
    if from.shared_pools.contains(&pool_name) {
        // Declared shared: the target must see the very same volume.
        dst.lookup_storage_vol_by_path(path).map_err(|e| {
            let reason = format!(
                "disk {}: pool {pool_name} is declared shared but {} does not see {path}",
                disk.target, to.name
            );
            Failure::from(e).reworded(|_| reason)
        })?;
        return Ok(None);
    }
    let info = volume.info()?;
    let name = volume.name()?;
    let target_pool = dst.lookup_storage_pool_by_name(&pool_name).map_err(|e| {
        let reason = format!("disk {}: {} has no storage pool {pool_name} to copy {name} into", disk.target, to.name);
        Failure::from(e).reworded(|_| reason)
    })?;
    if target_pool.lookup_storage_vol_by_name(&name).is_ok() {
        return Err(Failure::new(ErrorKind::Conflict, format!(
            "disk {}: volume {name} already exists in pool {pool_name} on {}; refusing to overwrite it (run `ferry cleanup` if it is a leftover)",
            disk.target, to.name
        )));
    }
    let pool_info = target_pool.info()?;
    if pool_info.available < info.capacity {
        return Err(Failure::new(
            ErrorKind::Refused,
            format!(
                "disk {}: pool {pool_name} on {} has {} MiB free, {name} needs up to {} MiB",
                disk.target,
                to.name,
                pool_info.available >> 20,
                info.capacity >> 20
            ),
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
pub(crate) fn create(dst: &Connect, volume: &TargetVolume) -> Result<String, Failure> {
    let TargetVolume { host, pool, name, capacity, format, .. } = volume;
    let target_pool = dst
        .lookup_storage_pool_by_name(pool)
        .map_err(|e| Failure::from(e).reworded(|m| format!("{host} has no storage pool {pool}: {m}")))?;
    if target_pool.lookup_storage_vol_by_name(name).is_ok() {
        let reason = format!("volume {name} already exists in pool {pool} on {host}; refusing to overwrite it");
        return Err(Failure::new(ErrorKind::Conflict, reason));
    }
    let created = StorageVol::create_xml(&target_pool, &volume_xml(name, *capacity, format), 0)
        .map_err(|e| Failure::from(e).reworded(|m| format!("could not create {name} in pool {pool} on {host}: {m}")))?;
    Ok(created.path()?)
}

/// The definition of an empty volume. The name and format come from the source's XML,
/// where any character may be: escaped, so that none can end an element or add one.
fn volume_xml(name: &str, capacity: u64, format: &str) -> String {
    format!(
        "<volume><name>{}</name><capacity unit='bytes'>{capacity}</capacity><target><format type='{}'/></target></volume>",
        escape(name),
        escape(format)
    )
}

fn reachable(server: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addr = server.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| "no address".to_string())?;
    TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).map(drop).map_err(|e| e.to_string())
}

/// Copies a source volume's bytes into its target volume through libvirt storage streams, so
/// that it works between real machines (cold moves). Returns the bytes copied.
pub(crate) fn copy(src: &Connect, dst: &Connect, copy: &VolumeCopy) -> Result<u64, Failure> {
    use virt::stream::Stream;
    let source_path = &copy.volume.source_path;
    let from = src.lookup_storage_vol_by_path(source_path)?;
    let to = dst.lookup_storage_vol_by_path(&copy.target_path)?;
    let down = Stream::new(src, 0)?;
    let up = Stream::new(dst, 0)?;
    from.download(&down, 0, 0, 0).map_err(|e| Failure::from(e).reworded(|m| format!("download {source_path}: {m}")))?;
    let upload = |e: virt::error::Error| Failure::from(e).reworded(|m| format!("upload {}: {m}", copy.target_path));
    to.upload(&up, 0, 0, 0).map_err(upload)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = down.recv(&mut buf)?;
        if n <= 0 {
            break;
        }
        let n = usize::try_from(n).expect("positive");
        let mut sent = 0;
        while sent < n {
            let m = up.send(&buf[sent..n])?;
            sent += usize::try_from(m).map_err(|_| Failure::new(ErrorKind::Internal, "stream send failed"))?;
        }
        total += n as u64;
    }
    down.finish()?;
    up.finish().map_err(upload)?;
    Ok(total)
}

#[cfg(test)]
mod xml_tests {
    use super::volume_xml;

    #[test]
    fn a_name_or_format_cannot_add_to_the_volume_definition() {
        let xml = volume_xml("a</name><allocation>0</allocation><name>b", 1024, "qcow2' x='&");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let volume = doc.root_element();
        let names: Vec<&str> = volume.children().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
        assert_eq!(names, ["name", "capacity", "target"]);
        let name = volume.children().find(|n| n.has_tag_name("name")).and_then(|n| n.text());
        assert_eq!(name, Some("a</name><allocation>0</allocation><name>b"));
        let format = volume.descendants().find(|n| n.has_tag_name("format")).and_then(|n| n.attribute("type"));
        assert_eq!(format, Some("qcow2' x='&"));
    }
}
