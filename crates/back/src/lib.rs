//! Putting things back.
//!
//! [`rollback`] decides, from where each VM of a run started (the journal's moves, or
//! ferry's metadata on the domains when the journal is lost) and where it is now (the
//! inventory), which VMs a rollback moves back, which are home already and which cannot
//! be returned yet; the engine then runs those moves as a run of kind `rollback`.
//!
//! [`cleanup`] reconciles: for each VM it decides, from every host's view of it, which
//! copy is the VM (the running one; the source when two run and the move never switched
//! over), and what to remove: migration jobs nobody owns, stale copies, volumes left by
//! failed moves (and, when asked, source copies kept after successful ones), stale
//! metadata. [`cleanup::plan`] is pure, so `--dry-run` prints exactly what
//! [`cleanup::apply`] would do; `apply` acts through the [`Driver`](ferry_driver::Driver),
//! whose removals check again on the hosts that they are safe.
//!
//! [`stale`] recognises, on a move's target, the copies of the moving VM's disks that ferry
//! left there (source copies kept by an earlier move away), and says how ferry knows.

pub mod cleanup;
pub mod rollback;
pub mod stale;

use ferry_model::{Disk, DiskSource, Locality};

/// The pool and volume name of a host-local file disk (a directory pool's volume is named
/// after its file).
pub(crate) fn local_volume(disk: &Disk) -> Option<(String, String)> {
    if disk.locality != Locality::HostLocal {
        return None;
    }
    let (Some(pool), DiskSource::File { path }) = (&disk.pool, &disk.source) else { return None };
    let name = path.rsplit('/').next().filter(|n| !n.is_empty())?;
    Some((pool.clone(), name.to_string()))
}
