//! A cold move, step by step: shut the guest down (forcing it off after a timeout), copy each
//! host-local volume into the copy the engine created through libvirt storage streams,
//! define the VM on the target with the same UUID, start it there (the point of no return),
//! undefine it on the source. Each step is asked of the engine's [`StepGate`] (journaled)
//! before it is done and reported after; a failure before the point of no return undoes the
//! steps done, so the VM runs on its source again.

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use ferry_driver::{ColdOptions, ErrorKind, MoveError, MoveReport, MoveRequest, StepGate};
use ferry_model::{ClusterSpec, Metadata, Phase, Step, VmState};
use tracing::info;
use virt::domain::Domain;
use virt::sys;

use crate::conn::{describe, endpoints, locate_among, msg, Endpoints};
use crate::domxml::{parse_domain, rewrite_disk_paths};
use crate::error::Failure;
use crate::live::millis;
use crate::metadata::{clear_metadata, write_metadata};
use crate::volumes;

/// Moves a VM cold. Blocking.
pub(crate) fn run(
    cluster: Arc<ClusterSpec>,
    request: MoveRequest,
    options: ColdOptions,
    steps: StepGate,
) -> Result<MoveReport, MoveError> {
    let started = Instant::now();
    let init = |reason: String| MoveError::init(ErrorKind::Other, reason);
    let Endpoints { from, to, src, dst, domain } = endpoints(&cluster, &request).map_err(Failure::init)?;
    let was_running = domain.is_active().map_err(|e| Failure::from(e).init())?;
    let xml = domain
        .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_MIGRATABLE)
        .map_err(|e| Failure::from(e).init())?;
    parse_domain(&xml).map_err(init)?;
    let target_xml = rewrite_disk_paths(&xml, &volumes::path_moves(&request.copies)).map_err(init)?;
    let metadata =
        |phase| Metadata { run_id: request.run_id.clone(), original_host: from.name.clone(), phase, claim: None };
    // A refused claim: another run or job holds the VM.
    crate::metadata::claim(&domain, &metadata(Phase::Prepared), &from, &to, crate::metadata::Hold::Refreshed)
        .map_err(|reason| MoveError::init(ErrorKind::Conflict, reason))?;
    if let Err(e) = write_metadata(&domain, &metadata(Phase::Transferring)) {
        let _ = clear_metadata(&domain);
        return Err(e.reworded(|e| format!("could not write metadata: {e}")).init());
    }

    let mut cold = Cold {
        steps,
        messages: Vec::new(),
        defined: None,
        source: domain,
        from: from.name.clone(),
        to: to.name.clone(),
        was_running,
        started,
    };
    let down_since = Instant::now();
    if was_running {
        let timeout = options.shutdown_timeout;
        let source = cold.source.clone();
        cold.step(Step::ShutDown { host: from.name.clone() }, || stop(&source, timeout))?;
    }
    let mut copied = 0u64;
    for copy in &request.copies {
        let step = Step::CopyVolume {
            from: from.name.clone(),
            to: to.name.clone(),
            pool: copy.volume.pool.clone(),
            name: copy.volume.name.clone(),
        };
        cold.step(step, || {
            let bytes = volumes::copy(&src, &dst, copy)?;
            copied += bytes;
            Ok(format!(
                "copied {} MiB into {} through libvirt streams ({} connections)",
                bytes >> 20,
                copy.target_path,
                from.transport().name()
            ))
        })?;
    }
    let mut defined = None;
    cold.step(Step::Define { host: to.name.clone() }, || {
        let target = dst.define_domain_xml(&target_xml)?;
        // From here the target's copy carries the move's metadata, as a live move's does.
        let _ = write_metadata(&target, &metadata(Phase::Transferring));
        defined = Some(target);
        Ok(format!("defined on {}", to.name))
    })?;
    cold.defined = defined;
    if was_running {
        let target = cold.defined.clone().expect("defined just above");
        cold.step(Step::Start { host: to.name.clone() }, || {
            target.create().map(|_| format!("started on {}", to.name)).map_err(Failure::from)
        })?;
    }
    // The point of no return: the target's copy is the VM.
    let downtime = millis(down_since.elapsed());
    let Cold { steps, mut messages, source, .. } = cold;
    let undefine = Step::Undefine { host: from.name.clone() };
    if steps.before_blocking(&undefine) {
        let result = source.undefine().map(|()| format!("undefined on {}", from.name)).map_err(msg);
        if let Err(e) = &result {
            messages.push(format!("could not undefine on {}: {e}", from.name));
        }
        steps.after(&undefine, result);
    } else {
        messages.push(format!("left defined on {}: the step could not be journaled", from.name));
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
    let mut report = MoveReport {
        downtime_ms: was_running.then_some(downtime),
        transferred_bytes: copied,
        locations,
        messages,
        ..MoveReport::default()
    };
    report.wall_ms = millis(started.elapsed());
    report.messages.push(format!("runs on {}, verified", to.name));
    info!(vm = %request.vm, to = %to.name, wall_ms = report.wall_ms, "cold move verified");
    Ok(report)
}

/// A cold move before its point of no return: what to undo if a step fails.
struct Cold {
    steps: StepGate,
    messages: Vec<String>,
    /// The target's definition, once the `Define` step did it.
    defined: Option<Domain>,
    /// The VM's domain on its source.
    source: Domain,
    /// Source and target host names.
    from: String,
    to: String,
    was_running: bool,
    started: Instant,
}

impl Cold {
    /// Does `step` once the engine journaled it; a refusal or a failure undoes the move.
    fn step(&mut self, step: Step, effect: impl FnOnce() -> Result<String, Failure>) -> Result<(), MoveError> {
        if !self.steps.before_blocking(&step) {
            let refused = Failure::new(ErrorKind::Other, format!("could not journal the step \"{step}\"; not done"));
            return Err(self.undo(refused));
        }
        let result = effect();
        self.steps.after(&step, result.clone().map_err(String::from));
        match result {
            Ok(done) => {
                self.messages.push(done);
                Ok(())
            }
            Err(e) => Err(self.undo(e.reworded(|e| format!("could not {step}: {e}")))),
        }
    }

    /// Puts the VM back as it was on its source: the target's definition removed, metadata
    /// cleared, started again if it was running. When a step of this undo cannot be journaled
    /// or fails, the move ends `Lost`, for `ferry resume` (or `cleanup`) to settle.
    fn undo(&mut self, failure: Failure) -> MoveError {
        // Each undo step is journaled first like any other: one the journal refuses (its
        // lease lost to another ferry, which now settles this move) is left to that ferry.
        let mut undone = true;
        if let Some(target) = self.defined.take() {
            let step = Step::Undefine { host: self.to.clone() };
            if self.steps.before_blocking(&step) {
                let result = target.undefine().map(|()| "undefined the target's copy".to_string()).map_err(msg);
                undone &= result.is_ok();
                self.steps.after(&step, result);
            } else {
                undone = false;
            }
        }
        // The source is started again only once no copy is defined on the target.
        if undone {
            let _ = clear_metadata(&self.source);
        }
        if undone && self.was_running && !self.source.is_active().unwrap_or(true) {
            let step = Step::Start { host: self.from.clone() };
            if self.steps.before_blocking(&step) {
                let result = self.source.create().map(|_| "started again on its source".to_string()).map_err(msg);
                if let Err(e) = &result {
                    self.messages.push(format!("could not start it again on its source: {e}"));
                }
                self.steps.after(&step, result);
            } else {
                undone = false;
            }
        }
        if !undone {
            return MoveError::Lost {
                reason: format!(
                    "{} and the cold move could not be undone: `ferry resume` of the run settles it",
                    failure.message
                ),
                locations: Vec::new(),
            };
        }
        MoveError::Transfer {
            kind: failure.kind,
            reason: failure.message,
            aborted: false,
            report: Box::new(MoveReport {
                wall_ms: millis(self.started.elapsed()),
                messages: std::mem::take(&mut self.messages),
                ..MoveReport::default()
            }),
        }
    }
}

/// Asks the guest to shut down; powers it off when it has not after `timeout`.
pub(crate) fn stop(domain: &Domain, timeout: Duration) -> Result<String, Failure> {
    let asked = Instant::now();
    if domain.shutdown().is_ok() {
        while asked.elapsed() < timeout {
            if !domain.is_active()? {
                return Ok(format!("shut down by the guest in {:.1} s", asked.elapsed().as_secs_f64()));
            }
            sleep(Duration::from_millis(100));
        }
    }
    if domain.is_active()? {
        domain.destroy().map_err(|e| Failure::from(e).reworded(|m| format!("could not power off: {m}")))?;
    }
    Ok(format!("powered off after {:.1} s without a shutdown by the guest", asked.elapsed().as_secs_f64()))
}
