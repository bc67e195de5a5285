//! Connections, libvirt errors in words, and the calls the `virt` crate only exposes raw.
//!
//! Every call goes through the process's one connection per host ([`connect`], [`read`]),
//! kept by [`crate::pool`]; a live migration's own call alone has a connection of its own
//! ([`open_for_migration`]).

use std::sync::{LazyLock, Once};
use std::thread;
use std::time::Duration;

use ferry_driver::{ErrorKind, MoveRequest};
use ferry_model::{ClusterSpec, HostSpec, Location, VmState};
use tracing::{debug, warn};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::error::Failure;
use crate::pool::{Connection, Pool, Pooled};

/// libvirt's keepalive on every connection: a ping after this many seconds of silence...
const KEEPALIVE_INTERVAL_S: i32 = 5;
/// ...and the connection closed after this many unanswered ones: a host silent for
/// 5 × (3 + 1) = 20 s is taken as gone, and its connection is reopened at the next call.
const KEEPALIVE_COUNT: u32 = 3;

/// The process's connections, one per host URI.
static POOL: LazyLock<Pool<Connect>> = LazyLock::new(Pool::default);

impl Connection for Connect {
    fn alive(&self) -> bool {
        // A local check in libvirt's client: no round trip to the host.
        self.is_alive().unwrap_or(false)
    }

    fn same(&self, other: &Self) -> bool {
        // SAFETY: both handles are live; the pointers are compared, never dereferenced.
        unsafe { self.as_ptr() == other.as_ptr() }
    }
}

/// Runs libvirt's default event loop on a thread of its own, once per process. Keepalive
/// needs it, and with it a client notices at once when a host's socket closes (its daemon
/// died or restarted), so that `is_alive` says so before the next call fails on it.
fn start_event_loop() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            warn!("no libvirt event loop ({}): no keepalive; a lost host is found at its next call", msg(e));
            return;
        }
        let spawned = thread::Builder::new().name("libvirt events".into()).spawn(|| loop {
            if let Err(e) = virt::event::event_run_default_impl() {
                debug!("libvirt event loop: {}", msg(e));
                thread::sleep(Duration::from_millis(100));
            }
        });
        if let Err(e) = spawned {
            warn!("could not start libvirt's event loop thread ({e}): keepalive will not run");
        }
    });
}

/// Opens a new connection to `host`, with keepalive. libvirt's own printing of errors to
/// stderr is switched off: ferry reports every error itself, with context. A failure whose
/// code says nothing more specific (an unauthorized one is refused) is the host being
/// unreachable.
fn open(host: &HostSpec) -> Result<Connect, Failure> {
    crate::transport::check_credentials(host)?;
    start_event_loop();
    virt::error::clear_error_callback();
    let conn = Connect::open(Some(&host.uri)).map_err(|e| {
        let failure = Failure::from(e).reworded(|m| format!("{} unreachable: {m}", host.name));
        match failure.kind {
            ErrorKind::Other | ErrorKind::Internal => Failure { kind: ErrorKind::Unreachable, ..failure },
            _ => failure,
        }
    })?;
    // A driver without keepalive (a local one) still works; it just cannot notice silence.
    if let Err(e) = conn.set_keep_alive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) {
        debug!(host = %host.name, "no keepalive: {}", msg(e));
    }
    Ok(conn)
}

fn pooled(host: &HostSpec) -> Result<Pooled<Connect>, Failure> {
    let pooled = POOL.get(&host.uri, || open(host))?;
    if pooled.fresh {
        debug!(host = %host.name, uri = %host.uri, opened = POOL.opened(), "opened a libvirt connection");
    }
    Ok(pooled)
}

/// The process's connection to `host`: the pooled one, or one opened now when there is none
/// or it died.
pub(crate) fn connect(host: &HostSpec) -> Result<Connect, Failure> {
    pooled(host).map(|pooled| pooled.conn)
}

/// Runs `f` on the connection to `host`. When it finds the host unreachable, the connection
/// is dropped from the pool; `f` is a read, so on a connection that was reused (it may have
/// died since its last call, before libvirt noticed) it is run once more on a new one.
pub(crate) fn read<T>(host: &HostSpec, f: impl Fn(&Connect) -> Result<T, Failure>) -> Result<T, Failure> {
    let first = pooled(host)?;
    let result = f(&first.conn);
    if first.fresh || !unreachable(&result) {
        return settled(host, &first.conn, result);
    }
    POOL.discard(&host.uri, &first.conn);
    debug!(host = %host.name, "a reused connection failed; asking again on a new one");
    let again = pooled(host)?;
    let result = f(&again.conn);
    settled(host, &again.conn, result)
}

/// Reports `result` of a call on `conn` to the pool: a connection whose call found the host
/// unreachable is dropped, so that the next call opens a new one. Returns `result`.
pub(crate) fn settled<T>(host: &HostSpec, conn: &Connect, result: Result<T, Failure>) -> Result<T, Failure> {
    if unreachable(&result) {
        POOL.discard(&host.uri, conn);
    }
    result
}

fn unreachable<T>(result: &Result<T, Failure>) -> bool {
    result.as_ref().is_err_and(|e| e.kind == ErrorKind::Unreachable)
}

/// A connection to `host` for one live migration alone, not pooled. The migration call
/// blocks for the whole copy, and its job-statistics polls block through the switch-over;
/// libvirtd serves at most `max_client_requests` (5 by default) calls of one connection at
/// once and stops reading it meanwhile, so on the shared connection a few migrations from
/// one source would hold up every other call there (an abort among them) and, with
/// keepalive unanswered, get the connection closed under them.
pub(crate) fn open_for_migration(host: &HostSpec) -> Result<Connect, Failure> {
    let conn = open(host)?;
    debug!(host = %host.name, uri = %host.uri, "opened a connection for one migration");
    Ok(conn)
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
    let (src, domain) = read(&from, |conn| {
        let domain = conn
            .lookup_domain_by_uuid_string(&request.vm)
            .map_err(|e| Failure::from(e).reworded(|m| format!("{} is not on {}: {m}", request.vm, from.name)))?;
        Ok((conn.clone(), domain))
    })?;
    // Only "no such domain" says the target is free; a target that cannot say stops the move.
    let (dst, leftover) = read(&to, |conn| match conn.lookup_domain_by_uuid_string(&request.vm) {
        Ok(_) => Ok((conn.clone(), true)),
        Err(e) => match Failure::from(e) {
            failure if failure.kind == ErrorKind::NotFound => Ok((conn.clone(), false)),
            failure => Err(failure.reworded(|m| format!("{} cannot be asked about {}: {m}", to.name, request.vm))),
        },
    })?;
    if leftover {
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
    // Every host at once; the answers are read in the cluster's order, as they were asked
    // one after another before.
    let answers = crate::pool::ask_each(&cluster.hosts, |host| read(host, |conn| sighted(conn, host, uuid)));
    let mut sighting = Sighting { locations: Vec::new(), unasked: Vec::new() };
    for (host, answer) in cluster.hosts.iter().zip(answers) {
        match answer {
            Ok(Some(location)) => sighting.locations.push(location),
            Ok(None) => {}
            Err(e) if required.contains(&host.name.as_str()) => return Err((host.name.clone(), e)),
            Err(_) => sighting.unasked.push(host.name.clone()),
        }
    }
    Ok(sighting)
}

/// Whether `host` knows `uuid`, and how. Only libvirt's "no such domain" is a no: any other
/// failure means the host could not say.
fn sighted(conn: &Connect, host: &HostSpec, uuid: &str) -> Result<Option<Location>, Failure> {
    let domain = match conn.lookup_domain_by_uuid_string(uuid) {
        Ok(domain) => domain,
        Err(e) => {
            let failure = Failure::from(e);
            return if failure.kind == ErrorKind::NotFound { Ok(None) } else { Err(failure) };
        }
    };
    Ok(Some(Location {
        host: host.name.clone(),
        state: vm_state(&domain),
        persistent: domain.is_persistent().unwrap_or(false),
    }))
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
