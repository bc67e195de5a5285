//! One live migration: prepare (metadata, destination XML; reversible), transfer (watched and
//! steerable), switch-over (the point of no return, observed, never assumed), verified where
//! the VM runs. The engine creates the target volumes before and finalizes after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ferry_driver::{Control, ErrorKind, LiveOptions, Migration, MoveError, MoveReport, MoveRequest, Progress};
use ferry_model::{runs_only_on, ClusterSpec, Compression, HostSpec, Metadata, Phase, StreamOptions};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};
use virt::domain::{Domain, MigrateParameters};
use virt::sys;

use crate::conn::{
    abort_job, connect, describe, endpoints, job_stats, locate_among, open_for_migration, read, start_postcopy,
    Endpoints,
};
use crate::domxml::{parse_domain, rewrite_disk_paths};
use crate::error::Failure;
use crate::metadata::write_metadata;
use crate::volumes;

/// How often job statistics are polled: the convergence policy sees a sample at least
/// this often.
const POLL: Duration = Duration::from_millis(250);
/// A job-statistics poll unanswered this long means libvirt holds the domain for the
/// switch-over (queries answer in milliseconds otherwise).
const SWITCHING_OVER: Duration = Duration::from_millis(600);
/// How long the migration call may go on after the VM resumed on the target before ferry
/// asks where the VM runs. The source's teardown took 1.4–2 s in a lab whose init reaped QEMU
/// late; tens of ms once reaped at once.
const TEARDOWN_PATIENCE: Duration = Duration::from_secs(60);
/// How often it asks then.
const ASK_WHERE_EVERY: Duration = Duration::from_secs(10);
/// Past this after the switch-over, a call still blocked ends the move with where the VM is.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(300);
/// How long a returned migration waits for its helper threads to end.
const HELPERS_END: Duration = Duration::from_secs(10);

/// Prepares (metadata, destination XML into `request.copies`) and starts a live migration.
/// Blocking: run on a blocking thread.
pub(crate) fn start(
    cluster: Arc<ClusterSpec>,
    request: MoveRequest,
    options: LiveOptions,
) -> Result<Migration, MoveError> {
    let started = Instant::now();
    let init = |reason: String| MoveError::init(ErrorKind::Other, reason);
    let Endpoints { from, to, domain, .. } = endpoints(&cluster, &request).map_err(Failure::init)?;
    if !domain.is_active().map_err(|e| Failure::from(e).init())? {
        let reason = format!("not running on {}: a stopped VM can only move cold", from.name);
        return Err(MoveError::init(ErrorKind::Refused, reason));
    }
    let xml = domain.xml_desc(sys::VIR_DOMAIN_XML_MIGRATABLE).map_err(|e| Failure::from(e).init())?;
    let desc = parse_domain(&xml).map_err(init)?;
    // The migration's own connection (see `open_for_migration`), opened before anything is
    // touched: the migration call, its statistics and its controls go through it.
    let own = open_for_migration(&from).map_err(Failure::init)?;
    let migrating = own.lookup_domain_by_uuid_string(&request.vm).map_err(|e| Failure::from(e).init())?;

    let metadata =
        |phase| Metadata { run_id: request.run_id.clone(), original_host: from.name.clone(), phase, claim: None };
    // A refused claim: another run or job holds the VM.
    crate::metadata::claim(&domain, &metadata(Phase::Prepared), &from, &to, crate::metadata::Hold::ByJob)
        .map_err(|reason| MoveError::init(ErrorKind::Conflict, reason))?;
    let copies = request.copies.clone();
    // The volumes for the copies were created (and journaled, when they were) by the engine.
    let (say, said) = mpsc::unbounded_channel();
    let prepared =
        write_metadata(&domain, &metadata(Phase::Transferring)).and_then(|()| match options.max_downtime_ms {
            Some(ms) => domain.migrate_set_max_downtime(ms, 0).map_err(Failure::from),
            None => Ok(()),
        });
    // The destination XML is read after the metadata is written, so that the target's
    // definition carries it: a move that completes while ferry is gone is still ferry's.
    let dest_xml = prepared.and_then(|()| {
        if copies.is_empty() {
            return Ok(None);
        }
        let current = domain.xml_desc(sys::VIR_DOMAIN_XML_MIGRATABLE)?;
        rewrite_disk_paths(&current, &volumes::path_moves(&copies))
            .map(Some)
            .map_err(|e| Failure::new(ErrorKind::Other, e))
    });
    let dest_xml = match dest_xml {
        Ok(x) => x,
        Err(e) => {
            let _ = crate::metadata::clear_metadata(&domain);
            return Err(e.reworded(|e| format!("could not prepare {}: {e}", desc.name)).init());
        }
    };

    let mut flags = sys::VIR_MIGRATE_LIVE
        | sys::VIR_MIGRATE_PEER2PEER
        | sys::VIR_MIGRATE_PERSIST_DEST
        | sys::VIR_MIGRATE_UNDEFINE_SOURCE;
    if !copies.is_empty() {
        flags |= sys::VIR_MIGRATE_NON_SHARED_DISK;
    }
    if options.auto_converge {
        flags |= sys::VIR_MIGRATE_AUTO_CONVERGE;
    }
    if options.postcopy {
        flags |= sys::VIR_MIGRATE_POSTCOPY;
    }
    // Hosts reached over TLS have migration certificates too; one with `migrate_tls_force`
    // refuses a plaintext stream. The engine decides (`Policy::tls_between`).
    flags |= stream_flags(options.tls, &options.stream);
    if options.tls {
        let _ = say.send("migration stream over TLS".to_string());
    }
    let params = MigrateParameters {
        dest_xml: dest_xml.clone(),
        persist_xml: dest_xml,
        bandwidth: options.bandwidth_mib_s,
        auto_converge_initial: options.auto_converge_initial.and_then(|p| i32::try_from(p).ok()),
        auto_converge_increment: options.auto_converge_increment.and_then(|p| i32::try_from(p).ok()),
        uri: to.migration_uri.clone(),
        listen_address: to.migration_uri.as_deref().and_then(listen_address),
        ..stream_parameters(&options.stream)
    };

    let (progress_tx, progress) = mpsc::unbounded_channel();
    let (controls, control_rx) = mpsc::unbounded_channel();
    let (outcome_tx, outcome) = oneshot::channel();
    debug!(vm = %request.vm, prepared_ms = millis(started.elapsed()), "migration prepared");
    let job = Job { cluster, request, from, to, domain: migrating, _own: own, say, messages: Vec::new(), started };
    thread::Builder::new()
        .name(format!("migrate {}", desc.name))
        .spawn(move || {
            let result = job.run(params, flags, progress_tx, control_rx);
            let _ = outcome_tx.send(result);
        })
        .map_err(|e| MoveError::init(ErrorKind::Internal, format!("could not start a thread: {e}")))?;
    Ok(Migration { progress, controls, outcome, said })
}

/// The flags of a stream: TLS, multifd, its compression, zero-copy sends.
fn stream_flags(tls: bool, stream: &StreamOptions) -> u32 {
    let mut flags = 0;
    if tls {
        flags |= sys::VIR_MIGRATE_TLS;
    }
    if stream.multifd() {
        flags |= sys::VIR_MIGRATE_PARALLEL;
    }
    if stream.compression != Compression::None {
        flags |= sys::VIR_MIGRATE_COMPRESSED;
    }
    if stream.zerocopy {
        flags |= sys::VIR_MIGRATE_ZEROCOPY;
    }
    flags
}

/// The parameters of a stream: how many connections, which compression at which level.
fn stream_parameters(stream: &StreamOptions) -> MigrateParameters {
    let level = stream.compression_level.and_then(|l| i32::try_from(l).ok());
    MigrateParameters {
        parallel_connections: stream.multifd().then(|| i32::try_from(stream.parallel_connections).unwrap_or(i32::MAX)),
        compression: (stream.compression != Compression::None).then(|| stream.compression.name().to_string()),
        compression_zstd_level: level.filter(|_| stream.compression == Compression::Zstd),
        compression_zlib_level: level.filter(|_| stream.compression == Compression::Zlib),
        ..MigrateParameters::default()
    }
}

struct Job {
    cluster: Arc<ClusterSpec>,
    request: MoveRequest,
    from: HostSpec,
    to: HostSpec,
    /// The VM on the source, through the migration's own connection.
    domain: Domain,
    /// That connection, held for the job's life (the domain holds it too; this says so).
    _own: virt::connect::Connect,
    /// Lines said as they happen (see [`Migration::said`]).
    say: mpsc::UnboundedSender<String>,
    /// Lines about the end, for the report.
    messages: Vec<String>,
    started: Instant,
}

impl Job {
    fn run(
        mut self,
        params: MigrateParameters,
        flags: u32,
        progress: mpsc::UnboundedSender<Progress>,
        mut controls: mpsc::UnboundedReceiver<Control>,
    ) -> Result<MoveReport, MoveError> {
        let dconn_uri = self.to.uri.clone();
        let migrating = self.domain.clone();
        let (done_tx, done) = std::sync::mpsc::channel();
        let caller = Helper::spawn(move |_| {
            let _ = done_tx.send(migrating.migrate_to_uri3(Some(&dconn_uri), params, flags).map_err(Failure::from));
        });
        // Job statistics on a thread of their own: libvirt holds the domain from the
        // switch-over's pause to the end of the migration call, and a query then waits
        // seconds. A poll that does not answer within SWITCHING_OVER says so.
        let (stats_tx, stats) = std::sync::mpsc::channel();
        let polled = self.domain.clone();
        let poller = Helper::spawn(move |stop| loop {
            let sample = job_stats(&polled, 0).ok().filter(|s| s.r#type != 0);
            if stats_tx.send(sample).is_err() || !Helper::wait(&stop, POLL) {
                break;
            }
        });
        // The target's view, on a thread of its own too, so that a target slow to answer
        // never holds up the controls: the VM resumed there after a complete copy is the
        // switch-over.
        let (resumed_tx, resumed) = std::sync::mpsc::channel();
        let mut target = Target::new(&self.to, &self.request.vm);
        let watcher = Helper::spawn(move |stop| loop {
            if target.resumed_after_copy() {
                let _ = resumed_tx.send(());
                break;
            }
            if !Helper::wait(&stop, POLL) {
                break;
            }
        });
        let mut seen_on_target: Option<Instant> = None;
        let mut asked_where: Option<Instant> = None;
        let aborted = Arc::new(AtomicBool::new(false));
        // Set once the guest pauses for its switch-over: a control failing after that came
        // too late, which is no failure of the move.
        let switching = Arc::new(AtomicBool::new(false));
        let (to_apply, controller) = self.controller(Arc::clone(&aborted), Arc::clone(&switching));
        let mut last = Progress::default();
        let mut answered = Instant::now();
        let job_started = Instant::now();
        let mut call_returned = false;
        // Wake on the migration's end at once, not at the next poll.
        let result = loop {
            while let Ok(control) = controls.try_recv() {
                let _ = to_apply.send((control, job_started.elapsed().as_secs_f64()));
            }
            while let Ok(sample) = stats.try_recv() {
                answered = Instant::now();
                if let Some(sample) = sample {
                    // A switch-over seen on the target stays seen.
                    let switched = last.switched_over;
                    last = Progress {
                        switching_over: switched,
                        switched_over: switched,
                        ..progress_of(&sample, job_started)
                    };
                    trace!(
                        vm = %self.request.vm,
                        at_ms = last.elapsed_ms,
                        pass = last.memory_passes,
                        remaining = last.memory_remaining_bytes,
                        mib_s = last.bandwidth_bytes_s / (1 << 20),
                        dirty_mib_s = last.dirty_rate_bytes_s / (1 << 20),
                        expected_downtime_ms = ?last.expected_downtime_ms,
                        "job sample"
                    );
                    let _ = progress.send(last.clone());
                }
            }
            if !last.switching_over && last.transferred_bytes > 0 && answered.elapsed() > SWITCHING_OVER {
                last.switching_over = true;
                switching.store(true, Ordering::SeqCst);
                let _ = progress.send(last.clone());
            }
            if seen_on_target.is_none() && resumed.try_recv().is_ok() {
                seen_on_target = Some(Instant::now());
            }
            if !last.switched_over && last.transferred_bytes > 0 && seen_on_target.is_some() {
                last.switching_over = true;
                switching.store(true, Ordering::SeqCst);
                last.switched_over = true;
                debug!(vm = %self.request.vm, job_wall_ms = millis(job_started.elapsed()), "runs on the target");
                let _ = progress.send(last.clone());
            }
            if let Some(since) = seen_on_target.filter(|since| since.elapsed() > TEARDOWN_PATIENCE) {
                // The call has not returned long after the switch-over: libvirt is stuck
                // tearing down the source. Where the VM runs decides, not the call.
                if asked_where.is_none_or(|at| at.elapsed() > ASK_WHERE_EVERY) {
                    asked_where = Some(Instant::now());
                    if let Some(stuck) = self.stuck_after_switch_over(since.elapsed()) {
                        break stuck;
                    }
                }
            }
            match done.recv_timeout(POLL) {
                Ok(result) => {
                    call_returned = true;
                    break result;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(Failure::new(ErrorKind::Internal, "migration thread panicked"))
                }
            }
        };
        // The copy is over: closing the progress stream tells the engine this migration's
        // link share is free while it is verified and finalized.
        drop(progress);
        drop(stats);
        // A control still blocked in libvirt (it came as the job switched over) says what
        // became of it if the engine still listens.
        drop(to_apply);
        // Once the call returned, libvirt answers the helpers at once: wait for them, so that
        // none is still inside libvirt (or closing the migration's connection) when ferry
        // exits. A thread that was, on a libssh2 connection, crashed ferry at its exit. A
        // call still blocked (a stuck teardown) keeps its threads; they are left.
        if call_returned {
            for (name, helper) in
                [("call", caller), ("statistics", poller), ("target", watcher), ("controls", controller)]
            {
                if !helper.stop(HELPERS_END) {
                    debug!(vm = %self.request.vm, helper = name, "a helper thread still runs; left");
                }
            }
        }
        debug!(vm = %self.request.vm, job_wall_ms = millis(job_started.elapsed()), ok = result.is_ok(), "migration call returned");
        let aborted = aborted.load(Ordering::SeqCst);
        match result {
            Ok(()) => self.finalize(last),
            Err(e) => self.after_failure(e, aborted, last),
        }
    }

    /// The migration call still blocks `waited` after the VM resumed on the target. The
    /// VM running on the target alone makes the move done (the source's copy is gone);
    /// past [`TEARDOWN_LIMIT`] the move ends with where the VM is, for `cleanup` to settle.
    /// `None`: wait on.
    fn stuck_after_switch_over(&mut self, waited: Duration) -> Option<Result<(), Failure>> {
        let located = self.locate();
        let note = format!(
            "the migration call had not returned {:.0} s after the VM resumed on {}",
            waited.as_secs_f64(),
            self.to.name
        );
        match located {
            Ok(locations) if runs_only_on(&locations, &self.to.name) => {
                warn!(vm = %self.request.vm, "{note}; it runs on {} alone: done", self.to.name);
                self.messages.push(format!("{note}; it runs there alone, so the move is done"));
                Some(Ok(()))
            }
            // Past the limit the call is taken as timed out, whatever it says later.
            Ok(locations) if waited > TEARDOWN_LIMIT => {
                Some(Err(Failure::new(ErrorKind::TimedOut, format!("{note}; the VM is {}", describe(&locations)))))
            }
            Err((host, e)) if waited > TEARDOWN_LIMIT => {
                Some(Err(Failure::new(ErrorKind::TimedOut, format!("{note}; {host} cannot be asked: {e}"))))
            }
            _ => {
                warn!(vm = %self.request.vm, "{note}; waiting for the source's teardown");
                None
            }
        }
    }

    /// Applies each control sent, `at` seconds into the job, on a thread of its own and in
    /// order, and says what happened as it happens. Its own thread because a
    /// call that arrives as libvirt switches over waits for the domain until the migration
    /// call is over (0.9–2 s in the lab), and the job's loop must see the switch-over
    /// meanwhile: it frees the move's slot for the next one.
    fn controller(
        &self,
        aborted: Arc<AtomicBool>,
        switching: Arc<AtomicBool>,
    ) -> (std::sync::mpsc::Sender<(Control, f64)>, Helper) {
        let (to_apply, controls) = std::sync::mpsc::channel::<(Control, f64)>();
        let said = self.say.clone();
        let domain = self.domain.clone();
        let vm = self.request.vm.clone();
        let helper = Helper::spawn(move |_| {
            for (control, at) in controls {
                let result = match control {
                    Control::SetMaxDowntime(ms) => domain.migrate_set_max_downtime(ms, 0).map_err(Failure::from),
                    Control::SetBandwidth(mib_s) => domain.migrate_set_max_speed(mib_s, 0).map_err(Failure::from),
                    Control::StartPostCopy => start_postcopy(&domain),
                    Control::Abort => {
                        aborted.store(true, Ordering::SeqCst);
                        abort_job(&domain)
                    }
                };
                let line = match result {
                    Ok(()) => format!("applied {control:?} at {at:.1} s of the job"),
                    Err(e) if switching.load(Ordering::SeqCst) => {
                        debug!(%vm, ?control, error = %e, "control came as the job switched over");
                        format!("{control:?} at {at:.1} s of the job came too late: the move was switching over")
                    }
                    Err(e) => {
                        debug!(%vm, ?control, error = %e, "control failed");
                        format!("{control:?} at {at:.1} s of the job failed: {e}")
                    }
                };
                if said.send(line).is_err() {
                    break;
                }
            }
        });
        (to_apply, helper)
    }

    /// The migration call returned success: observe where the VM runs before believing it.
    fn finalize(mut self, last: Progress) -> Result<MoveReport, MoveError> {
        let locations = self
            .locate()
            .map_err(|(host, e)| lost(format!("migration reported success but {host} cannot be asked: {e}"), vec![]))?;
        if !runs_only_on(&locations, &self.to.name) {
            return Err(lost(format!("migration reported success but the VM is {}", describe(&locations)), locations));
        }
        let domain = read(&self.to, |dst| Ok(dst.lookup_domain_by_uuid_string(&self.request.vm)?))
            .map_err(|e| lost(e.message, locations.clone()))?;
        let completed = job_stats(&domain, sys::VIR_DOMAIN_JOB_STATS_COMPLETED).ok();
        let mut report = MoveReport {
            wall_ms: 0,
            job_ms: completed.as_ref().and_then(|s| s.time_elapsed),
            downtime_ms: completed.as_ref().and_then(|s| s.downtime),
            transferred_bytes: completed.as_ref().and_then(|s| s.data_processed).unwrap_or(last.transferred_bytes),
            memory_passes: completed.as_ref().and_then(|s| s.mem_iteration).unwrap_or(last.memory_passes),
            memory_bytes: completed.as_ref().and_then(|s| s.mem_normal_bytes),
            memory_sent_bytes: completed.as_ref().and_then(|s| s.mem_processed),
            created_volumes: Vec::new(),
            deleted_volumes: Vec::new(),
            locations,
            messages: std::mem::take(&mut self.messages),
        };
        report.wall_ms = millis(self.started.elapsed());
        report.messages.push(format!("runs on {}, verified", self.to.name));
        info!(vm = %self.request.vm, to = %self.to.name, wall_ms = report.wall_ms, "live migration verified");
        Ok(report)
    }

    /// Where the VM runs; the source and target must answer, the other hosts are asked when
    /// they can be, and those that cannot are noted in the report.
    fn locate(&mut self) -> Result<Vec<ferry_model::Location>, (String, Failure)> {
        let sighting = locate_among(&self.cluster, &self.request.vm, &[&self.from.name, &self.to.name])?;
        if !sighting.unasked.is_empty() {
            self.messages.push(format!("not asked where the VM runs (unreachable): {}", sighting.unasked.join(", ")));
        }
        Ok(sighting.locations)
    }

    /// The migration call failed: find where the VM is, undo the preparation if it is safely
    /// on its source, and say so.
    fn after_failure(mut self, error: Failure, aborted: bool, last: Progress) -> Result<MoveReport, MoveError> {
        let locations = match self.locate() {
            Ok(l) => l,
            Err((host, e)) => {
                return Err(lost(format!("migration failed ({error}) and {host} cannot be asked: {e}"), vec![]))
            }
        };
        if runs_only_on(&locations, &self.to.name) {
            // The switch-over happened even though the call reported an error (for example
            // a failure in the finish step): the move is done.
            self.messages.push(format!("migration call reported: {error}; the VM runs on the target"));
            return self.finalize(last);
        }
        if !runs_only_on(&locations, &self.from.name) {
            return Err(lost(format!("migration failed ({error}) and the VM is {}", describe(&locations)), locations));
        }
        if let Ok(src) = connect(&self.from) {
            if let Ok(domain) = src.lookup_domain_by_uuid_string(&self.request.vm) {
                let _ = crate::metadata::clear_metadata(&domain);
            }
        }
        self.messages.push(format!("still runs on {}, verified", self.from.name));
        let report = MoveReport {
            wall_ms: millis(self.started.elapsed()),
            job_ms: Some(last.elapsed_ms),
            transferred_bytes: last.transferred_bytes,
            memory_passes: last.memory_passes,
            locations,
            messages: self.messages,
            ..MoveReport::default()
        };
        Err(MoveError::Transfer { kind: error.kind, reason: error.message, aborted, report: Box::new(report) })
    }
}

/// A thread of one migration (its call, its statistics, its controls, its watch on the
/// target), which can be told to stop and waited for.
struct Helper {
    stop: Option<std::sync::mpsc::Sender<()>>,
    ended: std::sync::mpsc::Receiver<()>,
}

impl Helper {
    /// Runs `work` on a thread of its own; `work` gets the receiver that says stop.
    fn spawn(work: impl FnOnce(std::sync::mpsc::Receiver<()>) + Send + 'static) -> Helper {
        let (stop, stopped) = std::sync::mpsc::channel();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        thread::spawn(move || {
            // `work`'s captures (libvirt handles among them) are dropped before this says so.
            work(stopped);
            drop(ended_tx);
        });
        Helper { stop: Some(stop), ended }
    }

    /// Sleeps `pause`; false when told to stop meanwhile.
    fn wait(stop: &std::sync::mpsc::Receiver<()>, pause: Duration) -> bool {
        matches!(stop.recv_timeout(pause), Err(std::sync::mpsc::RecvTimeoutError::Timeout))
    }

    /// Tells it to stop and waits up to `limit` for its end: whether it ended.
    fn stop(mut self, limit: Duration) -> bool {
        self.stop.take();
        matches!(self.ended.recv_timeout(limit), Err(std::sync::mpsc::RecvTimeoutError::Disconnected))
    }
}

/// The migration's target, asked whether the VM runs there. Its state answers at once even
/// while the source holds the domain for the switch-over and its teardown.
struct Target {
    host: HostSpec,
    uuid: String,
    conn: Option<virt::connect::Connect>,
    domain: Option<Domain>,
}

impl Target {
    fn new(host: &HostSpec, uuid: &str) -> Target {
        Target { host: host.clone(), uuid: uuid.to_string(), conn: None, domain: None }
    }

    /// Whether the VM runs on the target, resumed by a completed migration (not running in
    /// post-copy, which still fetches pages from the source). Any failure to ask is a no; the
    /// next poll asks the pool again (a connection lost meanwhile is reopened there).
    fn resumed_after_copy(&mut self) -> bool {
        if self.conn.is_none() {
            self.conn = connect(&self.host).ok();
        }
        if self.domain.is_none() {
            // The target's domain exists from the migration's prepare step on.
            self.domain = self.conn.as_ref().and_then(|c| c.lookup_domain_by_uuid_string(&self.uuid).ok());
        }
        let Some(domain) = &self.domain else {
            self.conn = None;
            return false;
        };
        use virt::domain::{DomainRunningReason, DomainStateReason};
        let Ok((_, reason)) = domain.state() else {
            (self.conn, self.domain) = (None, None);
            return false;
        };
        matches!(reason, virt::enumutil::Enum::Known(DomainStateReason::Running(why)) if why.is(DomainRunningReason::Migrated))
    }
}

fn lost(reason: String, locations: Vec<ferry_model::Location>) -> MoveError {
    MoveError::Lost { reason, locations }
}

pub(crate) fn host<'a>(cluster: &'a ClusterSpec, name: &str) -> Result<&'a HostSpec, Failure> {
    cluster.host(name).ok_or_else(|| Failure::new(ErrorKind::NotFound, format!("no host {name} in the cluster")))
}

/// `tcp://127.0.0.1[:port]` → `127.0.0.1`: the target binds its incoming migration there.
fn listen_address(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let host =
        rest.rsplit_once(':').map_or(rest, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { rest });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

pub(crate) fn progress_of(stats: &virt::domain::JobStats, started: Instant) -> Progress {
    Progress {
        elapsed_ms: stats.time_elapsed.unwrap_or_else(|| millis(started.elapsed())),
        total_bytes: stats.data_total.unwrap_or(0),
        transferred_bytes: stats.data_processed.unwrap_or(0),
        remaining_bytes: stats.data_remaining.unwrap_or(0),
        memory_remaining_bytes: stats.mem_remaining.unwrap_or(0),
        memory_total_bytes: stats.mem_total.unwrap_or(0),
        disk_remaining_bytes: stats.disk_remaining.unwrap_or(0),
        dirty_rate_bytes_s: stats.mem_dirty_rate.unwrap_or(0) * stats.mem_page_size.unwrap_or(4096),
        bandwidth_bytes_s: stats.mem_bps.unwrap_or(0),
        memory_passes: stats.mem_iteration.unwrap_or(0),
        expected_downtime_ms: stats.downtime,
        throttle_percent: stats.auto_converge_throttle.and_then(|t| u32::try_from(t).ok()),
        postcopy_active: stats.mem_postcopy_reqs.is_some_and(|r| r > 0),
        switching_over: false,
        switched_over: false,
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::listen_address;

    #[test]
    fn listen_address_from_migration_uri() {
        for (uri, expect) in [
            ("tcp://127.0.0.1", Some("127.0.0.1")),
            ("tcp://10.0.0.2:49152", Some("10.0.0.2")),
            ("tcp://[::1]:49152", Some("::1")),
            ("tcp://", None),
        ] {
            assert_eq!(listen_address(uri).as_deref(), expect, "{uri}");
        }
    }
}
