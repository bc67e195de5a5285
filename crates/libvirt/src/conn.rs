//! Connections, libvirt errors in words, and the calls the `virt` crate only exposes raw.

use ferry_driver::{ErrorKind, MoveRequest};
use ferry_model::{ClusterSpec, HostSpec, Location, VmState};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::error::Failure;

/// Opens a connection to `host`. libvirt's own printing of errors to stderr is switched off:
/// ferry reports every error itself, with context. A failure whose code says nothing more
/// specific (an unauthorized one is refused) is the host being unreachable.
pub(crate) fn open(host: &HostSpec) -> Result<Connect, Failure> {
    crate::transport::check_credentials(host)?;
    virt::error::clear_error_callback();
    Connect::open(Some(&host.uri)).map_err(|e| {
        let failure = Failure::from(e).reworded(|m| format!("{} unreachable: {m}", host.name));
        match failure.kind {
            ErrorKind::Other | ErrorKind::Internal => Failure { kind: ErrorKind::Unreachable, ..failure },
            _ => failure,
        }
    })
}

/// Both ends of a move, connected, and the domain on the source.
pub(crate) struct Endpoints {
    /// Source host.
    pub from: HostSpec,
    /// Target host.
    pub to: HostSpec,
    /// Connection to the source.
    pub src: Connect,
    /// Connection to the target.
    pub dst: Connect,
    /// The VM on the source.
    pub domain: Domain,
}

/// Connects both ends of a move and finds the VM on its source. Any failure here means
/// nothing was touched. A domain with the same UUID already on the target (a leftover of an
/// earlier failure) stops the move: it is cleanup's to judge.
pub(crate) fn endpoints(cluster: &ClusterSpec, request: &MoveRequest) -> Result<Endpoints, Failure> {
    let (from, to) =
        (crate::live::host(cluster, &request.from)?.clone(), crate::live::host(cluster, &request.to)?.clone());
    if from.name == to.name {
        return Err(Failure::new(ErrorKind::Conflict, format!("{} is already on {}", request.vm, to.name)));
    }
    let src = open(&from)?;
    let dst = open(&to)?;
    let domain = src
        .lookup_domain_by_uuid_string(&request.vm)
        .map_err(|e| Failure::from(e).reworded(|m| format!("{} is not on {}: {m}", request.vm, from.name)))?;
    if dst.lookup_domain_by_uuid_string(&request.vm).is_ok() {
        let reason = format!("{} already has a domain with this UUID; run `ferry cleanup`", to.name);
        return Err(Failure::new(ErrorKind::Conflict, reason));
    }
    Ok(Endpoints { from, to, src, dst, domain })
}

/// libvirt's message of an error.
pub(crate) fn msg(e: virt::error::Error) -> String {
    e.message().to_string()
}

/// Cancels the domain's running job (the migration). The `virt` crate has no safe wrapper.
pub(crate) fn abort_job(domain: &Domain) -> Result<(), Failure> {
    // SAFETY: the pointer comes from a live `Domain`, which keeps its reference until drop;
    // virDomainAbortJob only reads it.
    let rc = unsafe { sys::virDomainAbortJob(domain.as_ptr()) };
    if rc < 0 {
        Err(virt::error::Error::last_error().into())
    } else {
        Ok(())
    }
}

/// Switches a migration started with VIR_MIGRATE_POSTCOPY to post-copy.
pub(crate) fn start_postcopy(domain: &Domain) -> Result<(), Failure> {
    // SAFETY: as in `abort_job`; flags must be 0.
    let rc = unsafe { sys::virDomainMigrateStartPostCopy(domain.as_ptr(), 0) };
    if rc < 0 {
        Err(virt::error::Error::last_error().into())
    } else {
        Ok(())
    }
}

/// The run state of a domain in ferry's words.
pub(crate) fn vm_state(domain: &Domain) -> VmState {
    use virt::domain::DomainState;
    match domain.state() {
        Ok((state, _)) if state.is(DomainState::Running) => VmState::Running,
        Ok((state, _)) if state.is(DomainState::Paused) => VmState::Paused,
        Ok((state, _)) if state.is(DomainState::Shutoff) => VmState::ShutOff,
        _ => VmState::Other,
    }
}

/// Every host of the cluster that knows `uuid`, and in what state. Fails when any host
/// cannot be asked: "nowhere" must never be concluded from a silent host.
pub(crate) fn locate(cluster: &ClusterSpec, uuid: &str) -> Result<Vec<Location>, (String, Failure)> {
    let names: Vec<&str> = cluster.hosts.iter().map(|h| h.name.as_str()).collect();
    locate_among(cluster, uuid, &names).map(|sighting| sighting.locations)
}

/// Where `uuid` runs as far as the cluster can say: the hosts it was seen on, and the hosts
/// that could not be asked.
pub(crate) struct Sighting {
    pub locations: Vec<Location>,
    pub unasked: Vec<String>,
}

/// Like [`locate`], but only the `required` hosts must answer (a move's source and target:
/// one host down elsewhere in a large cluster must not fail every move's verification).
/// The others are asked when they can be and listed in `unasked` when they cannot.
pub(crate) fn locate_among(
    cluster: &ClusterSpec,
    uuid: &str,
    required: &[&str],
) -> Result<Sighting, (String, Failure)> {
    let mut sighting = Sighting { locations: Vec::new(), unasked: Vec::new() };
    for host in &cluster.hosts {
        let conn = match open(host) {
            Ok(conn) => conn,
            Err(e) if required.contains(&host.name.as_str()) => return Err((host.name.clone(), e)),
            Err(_) => {
                sighting.unasked.push(host.name.clone());
                continue;
            }
        };
        if let Ok(domain) = conn.lookup_domain_by_uuid_string(uuid) {
            sighting.locations.push(Location {
                host: host.name.clone(),
                state: vm_state(&domain),
                persistent: domain.is_persistent().unwrap_or(false),
            });
        }
    }
    Ok(sighting)
}

/// `where` in words: "running on host-b", "running on host-a and paused on host-b".
pub(crate) fn describe(locations: &[Location]) -> String {
    if locations.is_empty() {
        return "known to no host".into();
    }
    locations.iter().map(|l| format!("{} on {}", l.state, l.host)).collect::<Vec<_>>().join(" and ")
}

/// The domain's job statistics. The `virt` crate's own wrapper builds a `Vec` from a null
/// pointer when no job runs (libvirt then returns no parameters); this one copies the
/// parameters and frees libvirt's array with libvirt's own function.
pub(crate) fn job_stats(domain: &Domain, flags: u32) -> Result<virt::domain::JobStats, Failure> {
    let mut kind: std::os::raw::c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut count: std::os::raw::c_int = 0;
    // SAFETY: the domain pointer is live for the call; libvirt fills the three out-pointers.
    let rc = unsafe { sys::virDomainGetJobStats(domain.as_ptr(), &mut kind, &mut params, &mut count, flags) };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    let copied = match usize::try_from(count) {
        Ok(n) if n > 0 && !params.is_null() => {
            // SAFETY: libvirt returned `count` initialised parameters at `params`; the copy is
            // bitwise and the string values are read (copied) before the array is freed.
            unsafe { std::slice::from_raw_parts(params, n) }.to_vec()
        }
        _ => Vec::new(),
    };
    let stats = virt::domain::JobStats::from((kind, copied));
    if !params.is_null() {
        // SAFETY: `params` and `count` are exactly what libvirt returned; nothing uses them after.
        unsafe { sys::virTypedParamsFree(params, count) };
    }
    Ok(stats)
}
