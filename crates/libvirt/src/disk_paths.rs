//! The file paths each domain of a host uses, read without waiting for any domain's job.
//!
//! A domain's definition (`virDomainGetXMLDesc`) waits for the job that holds it: a domain
//! migrating in is held for its whole migration, and the read fails after libvirt's 30 s lock
//! timeout (measured on the lab: every move of a drain into one target waited for the move
//! before it). Block statistics taken with `NOWAIT` name the same paths from the definition
//! at once, for running and defined domains alike.

use std::collections::HashMap;
use std::ffi::CStr;

use virt::connect::Connect;
use virt::sys;

use crate::error::Failure;

/// Volume path → UUIDs of the domains whose disks use it.
pub(crate) type PathUsers = HashMap<String, Vec<String>>;

/// Every domain's disk paths on the host behind `conn`.
pub(crate) fn path_users(conn: &Connect) -> Result<PathUsers, Failure> {
    let mut records: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: a live connection; libvirt allocates the NULL-terminated record list it returns.
    let count = unsafe {
        sys::virConnectGetAllDomainStats(
            conn.as_ptr(),
            sys::VIR_DOMAIN_STATS_BLOCK,
            &mut records,
            sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
        )
    };
    if count < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    let mut users = PathUsers::new();
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: libvirt returned `count` valid record pointers, each with `nparams`
        // initialised parameters; everything read is copied before the list is freed.
        let (uuid, paths) = unsafe {
            let record = &**records.add(i);
            let params = match usize::try_from(record.nparams) {
                Ok(n) if n > 0 && !record.params.is_null() => std::slice::from_raw_parts(record.params, n),
                _ => &[],
            };
            (uuid_of(record.dom), disk_paths(params))
        };
        for path in paths {
            users.entry(path).or_default().push(uuid.clone());
        }
    }
    if !records.is_null() {
        // SAFETY: exactly the list libvirt returned; nothing refers to it any more.
        unsafe { sys::virDomainStatsRecordListFree(records) };
    }
    Ok(users)
}

/// # Safety
/// `domain` is a live domain pointer.
unsafe fn uuid_of(domain: sys::virDomainPtr) -> String {
    let mut buf = [0 as std::os::raw::c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: the caller's live domain; libvirt writes a NUL-terminated UUID into the buffer.
    unsafe {
        if sys::virDomainGetUUIDString(domain, buf.as_mut_ptr()) < 0 {
            return "?".into();
        }
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

/// The `block.N.path` values among a record's parameters.
///
/// # Safety
/// Each parameter's field is NUL-terminated and a string parameter's value points to a
/// NUL-terminated string (or is null), as libvirt fills them.
unsafe fn disk_paths(params: &[sys::virTypedParameter]) -> Vec<String> {
    let mut paths = Vec::new();
    for p in params {
        // SAFETY: as the caller promises.
        unsafe {
            let field = CStr::from_ptr(p.field.as_ptr()).to_string_lossy();
            let is_path = field.strip_prefix("block.").is_some_and(|rest| rest.ends_with(".path"));
            if is_path && p.type_ == sys::VIR_TYPED_PARAM_STRING as i32 && !p.value.s.is_null() {
                paths.push(CStr::from_ptr(p.value.s).to_string_lossy().into_owned());
            }
        }
    }
    paths
}
