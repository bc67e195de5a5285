//! ferry's metadata on a domain (run id, original host, phase, and the claim of the ferry
//! moving it), written on the live domain and its persistent definition so that libvirt
//! itself knows what ferry is doing — and so that two ferries never move one VM at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use ferry_driver::ErrorKind;
use ferry_model::{
    blocking_claim, claim_refusal, ticket_ahead, Claim, ClaimFacts, HostSpec, Metadata, Phase, Ticket, CLAIM_REFRESH_MS,
};
use tracing::{debug, warn};
use virt::domain::Domain;
use virt::sys;

use crate::conn::{connect, job_stats, msg};
use crate::domxml::{
    metadata_xml, parse_claim_line, parse_metadata, parse_tags, tags_xml, ticket_ns, ticket_xml, METADATA_NS,
    METADATA_PREFIX, TAGS_NS, TAGS_PREFIX, TICKET_PREFIX,
};
use crate::error::Failure;

fn affect(domain: &Domain) -> u32 {
    let mut flags = sys::VIR_DOMAIN_AFFECT_CONFIG;
    if domain.is_active().unwrap_or(false) {
        flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    flags
}

/// One lock per VM (by UUID) for this process's read-modify-writes of its metadata: the
/// claim's refresher never writes between a move's own writes.
fn vm_lock(uuid: &str) -> Arc<Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    locks.entry(uuid.to_string()).or_default().clone()
}

fn hold(lock: &Mutex<()>) -> MutexGuard<'_, ()> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The claims this process holds and refreshes, as (UUID, run id).
static HELD: LazyLock<Mutex<HashSet<(String, String)>>> = LazyLock::new(Default::default);

fn held_here(uuid: &str, run_id: &str) -> bool {
    HELD.lock().unwrap_or_else(PoisonError::into_inner).contains(&(uuid.to_string(), run_id.to_string()))
}

fn set_metadata_raw(domain: &Domain, metadata: &Metadata) -> Result<(), Failure> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    domain
        .set_metadata(kind, Some(&metadata_xml(metadata)), Some(METADATA_PREFIX), Some(METADATA_NS), affect(domain))
        .map_err(Failure::from)
}

/// Writes ferry's metadata element. Metadata without a claim keeps the claim already on the
/// domain when both name the same run: a move's later phases stay claimed.
pub(crate) fn write_metadata(domain: &Domain, metadata: &Metadata) -> Result<(), Failure> {
    let uuid = domain.uuid_string()?;
    let lock = vm_lock(&uuid);
    let _held = hold(&lock);
    let mut metadata = metadata.clone();
    if metadata.claim.is_none() {
        metadata.claim =
            read_metadata(domain).ok().flatten().filter(|m| m.run_id == metadata.run_id).and_then(|m| m.claim);
    }
    set_metadata_raw(domain, &metadata)
}

/// Removes ferry's metadata element.
pub(crate) fn clear_metadata(domain: &Domain) -> Result<(), Failure> {
    remove_element(domain, METADATA_NS)
}

/// Reads ferry's metadata element; none when the domain has none.
pub(crate) fn read_metadata(domain: &Domain) -> Result<Option<Metadata>, Failure> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    let flags =
        if domain.is_active().unwrap_or(false) { sys::VIR_DOMAIN_AFFECT_LIVE } else { sys::VIR_DOMAIN_AFFECT_CONFIG };
    match domain.metadata(kind, Some(METADATA_NS), flags) {
        // Metadata ferry cannot parse is no failure of the host.
        Ok(xml) => parse_metadata(&xml).map(Some).map_err(|e| Failure::new(ErrorKind::Other, e)),
        Err(e) if e.code().is(virt::error::ErrorNumber::NoDomainMetadata) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads the operators' tags (`ferry tag`); none when the domain has none.
pub(crate) fn read_tags(domain: &Domain) -> Result<BTreeMap<String, String>, Failure> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    let flags =
        if domain.is_active().unwrap_or(false) { sys::VIR_DOMAIN_AFFECT_LIVE } else { sys::VIR_DOMAIN_AFFECT_CONFIG };
    match domain.metadata(kind, Some(TAGS_NS), flags) {
        Ok(xml) => parse_tags(&xml).map_err(|e| Failure::new(ErrorKind::Other, e)),
        Err(e) if e.code().is(virt::error::ErrorNumber::NoDomainMetadata) => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the operators' tags on the live domain and its definition; no tags removes the
/// element.
pub(crate) fn write_tags(domain: &Domain, tags: &BTreeMap<String, String>) -> Result<(), Failure> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    let xml = (!tags.is_empty()).then(|| tags_xml(tags));
    let key = xml.is_some().then_some(TAGS_PREFIX);
    domain.set_metadata(kind, xml.as_deref(), key, Some(TAGS_NS), affect(domain)).map_err(Failure::from)
}

/// How a claim stays alive while its move runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// A live migration's job, started right after the claim, holds the domain: libvirt's
    /// job is the lock, and a refresher beside it slowed the migrations (a drain of six
    /// guests took 15.9 s instead of 11.0).
    ByJob,
    /// A cold move holds no job while the guest shuts down and its disks are copied: a
    /// thread keeps the claim fresh.
    Refreshed,
}

/// Claims the VM for the move that `prepared` (its metadata, phase `prepared`) describes,
/// before anything is changed: refuses when another run holds it alive
/// ([`ferry_model::blocking_claim`]), takes a ticket ([`ferry_model::Ticket`]), reads the
/// line back, and when no held ticket and no live claim is ahead writes this ferry's claim
/// and withdraws the ticket; when `kept` says so, keeps the claim fresh on a thread of its
/// own until the move's metadata is finalized, cleared or taken. The error is the refusal,
/// in words.
///
/// Two ferries that both read "free" both take a ticket; libvirt keeps them in the order
/// written, and each reads the line after writing its own, so the later one finds the
/// earlier ahead of it (or, once that one has won and withdrawn it, its claim). No pause
/// is needed: the 150 ms that a write-then-read-back claim left for a racer's write to
/// land was the larger part of a move's cost outside its job. Like the journal's leases, it
/// assumes no ferry stalls longer than the claim lease (15 s) between reading the line and
/// writing its claim: one that did could lose its place to a ferry that took its ticket for
/// stale.
pub(crate) fn claim(
    domain: &Domain,
    prepared: &Metadata,
    from: &HostSpec,
    to: &HostSpec,
    kept: Hold,
) -> Result<(), String> {
    let uuid = domain.uuid_string().map_err(msg)?;
    let me = owner();
    let claimed = Metadata { claim: Some(Claim { owner: me.clone(), refreshed_ms: now_ms() }), ..prepared.clone() };
    {
        let lock = vm_lock(&uuid);
        let _held = hold(&lock);
        let found = read_metadata(domain).map_err(|e| format!("could not read metadata: {e}"))?;
        // A job holds the domain: libvirt refuses metadata writes then, so a claim cannot be
        // refreshed during a migration and the job itself is the lock.
        let job_running = job_stats(domain, 0).is_ok_and(|s| s.r#type != 0);
        let facts = ClaimFacts {
            run_id: &prepared.run_id,
            now_ms: now_ms(),
            live_runs: &[],
            owner_running: found.as_ref().is_some_and(|m| owner_running(m, &uuid, &me)),
            job_running,
        };
        if let Some(holder) = blocking_claim(found.as_ref(), &facts) {
            return Err(claim_refusal(holder, &from.name));
        }
        if job_running {
            return Err(format!(
                "a libvirt job already runs on it on {} (no ferry run holds it); wait for the job to end",
                from.name
            ));
        }
        let ticket = first_in_line(domain, &facts, &uuid, &me, &from.name)?;
        set_metadata_raw(domain, &claimed).map_err(|e| format!("could not write metadata: {e}"))?;
        ticket.withdraw(&uuid);
    }
    debug!(vm = %uuid, run = %prepared.run_id, owner = %me, "claimed");
    if kept == Hold::ByJob {
        return Ok(());
    }
    HELD.lock().unwrap_or_else(PoisonError::into_inner).insert((uuid.clone(), prepared.run_id.clone()));
    let (from, to, run_id) = (from.clone(), to.clone(), prepared.run_id.clone());
    let refresher = thread::Builder::new().name(format!("claim {uuid}")).spawn(move || {
        refresh_until_released(&uuid, &run_id, &me, &[from, to]);
        HELD.lock().unwrap_or_else(PoisonError::into_inner).remove(&(uuid, run_id));
    });
    if let Err(e) = refresher {
        // The claim still stands for the lease time; the job then holds the domain.
        warn!("could not start the claim's refresher: {e}");
    }
    Ok(())
}

/// Takes `me`'s ticket for `facts.run_id` and reads the line back: the ticket, held, when no
/// held ticket is ahead of it and no other run's live claim is on the domain; else the
/// refusal, the ticket withdrawn.
fn first_in_line<'d>(
    domain: &'d Domain,
    facts: &ClaimFacts<'_>,
    uuid: &str,
    me: &str,
    host: &str,
) -> Result<TicketHeld<'d>, String> {
    let mine = Ticket { run_id: facts.run_id.to_string(), owner: me.to_string(), written_ms: now_ms() };
    let mut ticket = TicketHeld::take(domain, &mine).map_err(|e| format!("could not write metadata: {e}"))?;
    let xml = domain.xml_desc(0).map_err(|e| format!("could not read back metadata: {e}"))?;
    let line = parse_claim_line(&xml).map_err(|e| format!("could not read back metadata: {e}"))?;
    let tickets: Vec<Ticket> = line.tickets.iter().map(|(_, t)| t.clone()).collect();
    if let Some(ahead) = ticket_ahead(&tickets, &mine, now_ms(), |owner| local_ferry_running(owner, me) == Some(false))
    {
        debug!(vm = %uuid, ahead = %ahead.run_id, "claim: another ferry's ticket is ahead");
        return Err(claim_refusal(&ahead.as_metadata(host), host));
    }
    let found = line.metadata;
    let facts = ClaimFacts {
        now_ms: now_ms(),
        owner_running: found.as_ref().is_some_and(|m| owner_running(m, uuid, me)),
        job_running: false,
        ..*facts
    };
    if let Some(holder) = blocking_claim(found.as_ref(), &facts) {
        return Err(claim_refusal(holder, host));
    }
    // Every ticket ahead is stale: its ferry went before withdrawing it.
    ticket.stale = line.tickets.into_iter().take_while(|(_, t)| !t.same_holder(&mine)).map(|(ns, _)| ns).collect();
    Ok(ticket)
}

/// A ticket written on a domain, withdrawn when dropped: whether its ferry claimed the VM or
/// was refused, the ticket has done its work once the claim is decided.
struct TicketHeld<'d> {
    domain: &'d Domain,
    ns: String,
    /// The namespaces of stale tickets found ahead of it, removed with it so they do not
    /// travel on with the VM.
    stale: Vec<String>,
}

impl<'d> TicketHeld<'d> {
    fn take(domain: &'d Domain, ticket: &Ticket) -> Result<Self, Failure> {
        let ns = ticket_ns(&ticket.owner, &ticket.run_id);
        let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
        domain.set_metadata(kind, Some(&ticket_xml(ticket)), Some(TICKET_PREFIX), Some(&ns), affect(domain))?;
        Ok(TicketHeld { domain, ns, stale: Vec::new() })
    }

    /// Withdraws the ticket (as dropping it would) and the stale ones found ahead of it.
    fn withdraw(self, uuid: &str) {
        for ns in &self.stale {
            if let Err(e) = remove_element(self.domain, ns) {
                debug!(vm = %uuid, "claim: could not remove a stale ticket: {e}");
            }
        }
    }
}

impl Drop for TicketHeld<'_> {
    fn drop(&mut self) {
        // Left behind, it goes stale within the claim's lease time.
        if let Err(e) = remove_element(self.domain, &self.ns) {
            warn!("could not withdraw a claim's ticket: {e}");
        }
    }
}

/// Removes the metadata element of namespace `ns`.
fn remove_element(domain: &Domain, ns: &str) -> Result<(), Failure> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    domain.set_metadata(kind, None, None, Some(ns), affect(domain)).map_err(Failure::from)
}

/// Rewrites the claim every [`CLAIM_REFRESH_MS`] on whichever of `hosts` has the domain,
/// while it names this run and this owner and is not finalized. Skips a round while a job
/// holds the domain (the write would wait for the job's end).
fn refresh_until_released(uuid: &str, run_id: &str, me: &str, hosts: &[HostSpec]) {
    let every = Duration::from_millis(u64::try_from(CLAIM_REFRESH_MS).expect("positive constant"));
    loop {
        thread::sleep(every);
        let domain = hosts.iter().find_map(|h| connect(h).ok()?.lookup_domain_by_uuid_string(uuid).ok());
        let Some(domain) = domain else {
            debug!(vm = %uuid, "claim: the domain is on neither host; stop refreshing");
            return;
        };
        let lock = vm_lock(uuid);
        let _held = hold(&lock);
        let current = match read_metadata(&domain) {
            Ok(m) => m,
            Err(e) => {
                debug!(vm = %uuid, "claim: could not read metadata: {e}");
                continue;
            }
        };
        let ours = current.filter(|m| {
            m.run_id == run_id && m.phase != Phase::Finalized && m.claim.as_ref().is_some_and(|c| c.owner == me)
        });
        let Some(mut metadata) = ours else {
            debug!(vm = %uuid, run = %run_id, "claim released");
            return;
        };
        if job_stats(&domain, 0).is_ok_and(|s| s.r#type != 0) {
            continue;
        }
        metadata.claim = Some(Claim { owner: me.to_string(), refreshed_ms: now_ms() });
        if let Err(e) = set_metadata_raw(&domain, &metadata) {
            debug!(vm = %uuid, "claim: could not refresh: {e}");
        }
    }
}

/// Whether the ferry named in `metadata`'s claim runs: this process while it still
/// refreshes that claim, or a `ferry` process with that pid on this machine.
fn owner_running(metadata: &Metadata, uuid: &str, me: &str) -> bool {
    let Some(claim) = &metadata.claim else { return false };
    if claim.owner == me {
        return held_here(uuid, &metadata.run_id);
    }
    local_ferry_running(&claim.owner, me) == Some(true)
}

/// Whether `owner` (`host:pid`) is a running `ferry` process, when it names this machine;
/// none when it names another.
fn local_ferry_running(owner: &str, me: &str) -> Option<bool> {
    let (host, pid) = owner.rsplit_once(':').unwrap_or((owner, ""));
    let local = me.rsplit_once(':').is_some_and(|(my_host, _)| my_host == host);
    // The command name guards against a dead ferry's pid reused by another program.
    local.then(|| {
        !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim().starts_with("ferry"))
    })
}

/// This process as a claim's owner: `host:pid`, like a journal lease's owner.
fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
