//! A cold move: shut the guest down (forcing it off after a timeout), copy its host-local
//! volumes through libvirt storage streams, define it on the target with the same UUID,
//! start it there, undefine it on the source.

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use ferry_driver::{ColdOptions, MoveError, MoveReport, MoveRequest};
use ferry_model::{ClusterSpec, Metadata, Phase, VmState};
use tracing::info;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::conn::{describe, endpoints, locate_among, msg, Endpoints};
use crate::domxml::{parse_domain, rewrite_disk_paths};
use crate::live::millis;
use crate::metadata::{clear_metadata, write_metadata};
use crate::volumes::{self, Handoff};

/// Moves a VM cold. Blocking.
pub(crate) fn run(
    cluster: Arc<ClusterSpec>,
    request: MoveRequest,
    options: ColdOptions,
) -> Result<MoveReport, MoveError> {
    let started = Instant::now();
    let init = |reason: String| MoveError::Init { reason };
    let Endpoints { from, to, src, dst, domain } = endpoints(&cluster, &request).map_err(init)?;
    let was_running = domain.is_active().map_err(|e| init(msg(e)))?;
    let xml =
        domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_MIGRATABLE).map_err(|e| init(msg(e)))?;
    let desc = parse_domain(&xml).map_err(init)?;
    let metadata =
        |phase| Metadata { run_id: request.run_id.clone(), original_host: from.name.clone(), phase, claim: None };
    crate::metadata::claim(&domain, &metadata(Phase::Prepared), &from, &to).map_err(init)?;
    let undo = |handoff: &Handoff| {
        volumes::revert(&dst, handoff);
        let _ = clear_metadata(&domain);
    };
    let handoff = volumes::prepare(&src, &dst, &from, &to, &desc.disks).map_err(|e| {
        undo(&Handoff::default());
        init(e)
    })?;
    let target_xml = match rewrite_disk_paths(&xml, &handoff.path_moves()) {
        Ok(x) => x,
        Err(e) => {
            undo(&handoff);
            return Err(init(e));
        }
    };
    if let Err(e) = write_metadata(&domain, &metadata(Phase::Transferring)) {
        undo(&handoff);
        return Err(init(format!("could not write metadata: {e}")));
    }

    let mut messages: Vec<String> = handoff
        .copies
        .iter()
        .map(|c| format!("created {} on {} for {}", c.target_path, to.name, c.source_path))
        .collect();
    let down_since = Instant::now();
    if was_running {
        messages.push(stop(&domain, options.shutdown_timeout).map_err(|e| {
            revert(&dst, &domain, &handoff, false);
            MoveError::Transfer { reason: e, aborted: false, report: Box::default() }
        })?);
    }
    let failed = |reason: String, messages: Vec<String>| {
        revert(&dst, &domain, &handoff, was_running);
        MoveError::Transfer {
            reason,
            aborted: false,
            report: Box::new(MoveReport { wall_ms: millis(started.elapsed()), messages, ..MoveReport::default() }),
        }
    };
    let copied = match volumes::copy_through_streams(&src, &dst, &handoff) {
        Ok(bytes) => bytes,
        Err(e) => return Err(failed(format!("copying volumes: {e}"), messages)),
    };
    if !handoff.copies.is_empty() {
        messages.push(format!("copied {} MiB of volumes through libvirt streams", copied >> 20));
    }
    let target = match dst.define_domain_xml(&target_xml) {
        Ok(d) => d,
        Err(e) => return Err(failed(format!("defining on {}: {}", to.name, msg(e)), messages)),
    };
    if was_running {
        if let Err(e) = target.create() {
            let _ = target.undefine();
            return Err(failed(format!("starting on {}: {}", to.name, msg(e)), messages));
        }
    }
    let downtime = millis(down_since.elapsed());
    // The switch-over: from here the target's copy is the VM.
    let _ = write_metadata(&target, &metadata(Phase::SwitchedOver));
    if let Err(e) = domain.undefine() {
        messages.push(format!("could not undefine on {}: {}", from.name, msg(e)));
    }
    let sighting = locate_among(&cluster, &request.vm, &[&from.name, &to.name]).map_err(|(h, e)| MoveError::Lost {
        reason: format!("moved, but {h} cannot be asked: {e}"),
        locations: vec![],
    })?;
    if !sighting.unasked.is_empty() {
        messages.push(format!("not asked where the VM runs (unreachable): {}", sighting.unasked.join(", ")));
    }
    let locations = sighting.locations;
    let expected = if was_running { VmState::Running } else { VmState::ShutOff };
    if !matches!(locations.as_slice(), [only] if only.host == to.name && only.state == expected) {
        return Err(MoveError::Lost {
            reason: format!("after the cold move the VM is {}", describe(&locations)),
            locations,
        });
    }
    let _ = write_metadata(&target, &metadata(Phase::Finalized));
    let mut report = MoveReport {
        downtime_ms: was_running.then_some(downtime),
        transferred_bytes: copied,
        created_volumes: handoff.copies.iter().map(|c| c.target_path.clone()).collect(),
        locations,
        messages,
        ..MoveReport::default()
    };
    if request.delete_source_volumes && !handoff.copies.is_empty() {
        match volumes::release_source(&src, &handoff) {
            Ok(deleted) => {
                for path in &deleted {
                    report.messages.push(format!("deleted the source volume {path} on {}", from.name));
                }
                report.deleted_volumes = deleted;
            }
            Err(e) => report.messages.push(format!("source volumes kept: {e}")),
        }
    }
    report.wall_ms = millis(started.elapsed());
    report.messages.push(format!("runs on {}, verified", to.name));
    info!(vm = %request.vm, to = %to.name, wall_ms = report.wall_ms, "cold move verified");
    Ok(report)
}

/// Asks the guest to shut down; powers it off when it has not after `timeout`.
fn stop(domain: &Domain, timeout: Duration) -> Result<String, String> {
    let asked = Instant::now();
    if domain.shutdown().is_ok() {
        while asked.elapsed() < timeout {
            if !domain.is_active().map_err(msg)? {
                return Ok(format!("shut down by the guest in {:.1} s", asked.elapsed().as_secs_f64()));
            }
            sleep(Duration::from_millis(100));
        }
    }
    if domain.is_active().map_err(msg)? {
        domain.destroy().map_err(|e| format!("could not power off: {}", msg(e)))?;
    }
    Ok(format!("powered off after {:.1} s without a shutdown by the guest", asked.elapsed().as_secs_f64()))
}

/// Puts the VM back as it was on its source: target volumes deleted, metadata cleared,
/// started again if it was running.
fn revert(dst: &Connect, domain: &Domain, handoff: &Handoff, restart: bool) {
    volumes::revert(dst, handoff);
    let _ = clear_metadata(domain);
    if restart && !domain.is_active().unwrap_or(true) {
        let _ = domain.create();
    }
}
