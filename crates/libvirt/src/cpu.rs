//! How much CPU a host has idle: libvirt's node CPU times (`virNodeGetCPUStats`, all CPUs
//! summed, in ns) read twice, the idle time's growth divided by the time between.

use std::ffi::CStr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use ferry_model::HostSpec;
use virt::connect::Connect;
use virt::sys;

use crate::conn::read;
use crate::error::Failure;

/// Long enough to average over a few scheduler ticks, short enough to hold a move's start.
const SAMPLE: Duration = Duration::from_millis(250);

/// Idle cores on `host` over the next [`SAMPLE`].
pub(crate) fn idle_cpus(host: &HostSpec) -> Result<f64, Failure> {
    read(host, |conn| {
        let first = idle_ns(conn)?;
        let since = Instant::now();
        sleep(SAMPLE);
        let second = idle_ns(conn)?;
        let elapsed_ns = since.elapsed().as_nanos() as f64;
        Ok(second.saturating_sub(first) as f64 / elapsed_ns)
    })
}

/// Nanoseconds all CPUs of the host have been idle (iowait counts as idle: a core waiting
/// on a disk can compress).
fn idle_ns(conn: &Connect) -> Result<u64, Failure> {
    let mut count: std::os::raw::c_int = 0;
    // SAFETY: a live connection; with null params libvirt only writes the count.
    let rc = unsafe {
        sys::virNodeGetCPUStats(conn.as_ptr(), sys::VIR_NODE_CPU_STATS_ALL_CPUS, std::ptr::null_mut(), &mut count, 0)
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    let mut params = vec![sys::virNodeCPUStats { field: [0; 80], value: 0 }; usize::try_from(count).unwrap_or(0)];
    // SAFETY: `params` holds `count` entries, which libvirt fills (and may lower `count`).
    let rc = unsafe {
        sys::virNodeGetCPUStats(conn.as_ptr(), sys::VIR_NODE_CPU_STATS_ALL_CPUS, params.as_mut_ptr(), &mut count, 0)
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    params.truncate(usize::try_from(count).unwrap_or(0));
    let mut idle = None;
    for p in &params {
        // SAFETY: libvirt NUL-terminates each field name within its 80 bytes.
        let name = unsafe { CStr::from_ptr(p.field.as_ptr()) }.to_string_lossy();
        if name == "idle" || name == "iowait" {
            idle = Some(idle.unwrap_or(0) + p.value);
        }
    }
    idle.ok_or_else(|| Failure::new(ferry_driver::ErrorKind::Refused, "the host reports no idle CPU time"))
}
