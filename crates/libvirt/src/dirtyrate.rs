//! Measuring how fast guests dirty memory, through libvirt's dirty-rate calculation (page
//! sampling: the one mode that reads anything under TCG; noisy, so use several seconds).

use std::collections::HashMap;
use std::ffi::CStr;
use std::thread::sleep;
use std::time::Duration;

use ferry_model::ClusterSpec;
use virt::sys;

use crate::conn::{connect, msg};

/// Starts a calculation of `seconds` on every running VM in `uuids`, waits, and reads each
/// result, MiB/s. VMs that could not be measured are absent, with a reason in the second map.
pub(crate) fn measure(
    cluster: &ClusterSpec,
    uuids: &[String],
    seconds: u32,
) -> (HashMap<String, f64>, HashMap<String, String>) {
    let mut failed = HashMap::new();
    let mut started = Vec::new();
    for host in &cluster.hosts {
        let Ok(conn) = connect(host) else { continue };
        for uuid in uuids {
            let Ok(domain) = conn.lookup_domain_by_uuid_string(uuid) else { continue };
            if !domain.is_active().unwrap_or(false) {
                continue;
            }
            let secs = std::os::raw::c_int::try_from(seconds).unwrap_or(1);
            // SAFETY: a live domain pointer; flags 0 selects page sampling.
            let rc = unsafe { sys::virDomainStartDirtyRateCalc(domain.as_ptr(), secs, 0) };
            if rc < 0 {
                failed.insert(uuid.clone(), virt::error::Error::last_error().message().to_string());
            } else {
                started.push((host.clone(), uuid.clone()));
            }
        }
    }
    sleep(Duration::from_millis(u64::from(seconds) * 1000 + 500));
    let mut rates = HashMap::new();
    for host in &cluster.hosts {
        let mine: Vec<&String> = started.iter().filter(|(h, _)| h.name == host.name).map(|(_, u)| u).collect();
        if mine.is_empty() {
            continue;
        }
        let conn = match connect(host) {
            Ok(c) => c,
            Err(e) => {
                for uuid in mine {
                    failed.insert(uuid.clone(), e.message.clone());
                }
                continue;
            }
        };
        let records = match conn.all_domain_stats(sys::VIR_DOMAIN_STATS_DIRTYRATE, 0) {
            Ok(r) => r,
            Err(e) => {
                for uuid in mine {
                    failed.insert(uuid.clone(), msg(e.clone()));
                }
                continue;
            }
        };
        for record in records {
            // SAFETY: libvirt returned this record; its domain and parameters stay valid
            // while the record is alive (it is not freed by this loop).
            let (uuid, rate) = unsafe {
                let rec = &*record.ptr;
                let mut buf = [0 as std::os::raw::c_char; 37];
                if sys::virDomainGetUUIDString(rec.dom, buf.as_mut_ptr()) < 0 {
                    continue;
                }
                let uuid = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                let mut value: std::os::raw::c_longlong = 0;
                let found = sys::virTypedParamsGetLLong(
                    rec.params,
                    rec.nparams,
                    sys::VIR_DOMAIN_STATS_DIRTYRATE_MEGABYTES_PER_SECOND.as_ptr(),
                    &mut value,
                );
                (uuid, (found == 1).then_some(value))
            };
            if !mine.contains(&&uuid) {
                continue;
            }
            match rate {
                Some(mb_s) => {
                    // libvirt reports MB/s as QEMU computes it, in units of 2^20 bytes.
                    rates.insert(uuid, mb_s as f64);
                }
                None => {
                    failed.insert(uuid, "the calculation returned no rate".into());
                }
            }
        }
    }
    (rates, failed)
}
