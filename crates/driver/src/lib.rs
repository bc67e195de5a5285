//! The boundary between ferry's engine and the world. The engine asks a [`Driver`] for the
//! inventory, where a VM is, to start a live migration (returning a [`Migration`] that
//! streams [`Progress`] and takes [`Control`]s), or to move a VM cold.
//!
//! **API boundary.** Everything a driver reports is data from `ferry-model`; everything it
//! can be asked is here. The libvirt driver implements it against real hosts.

use std::future::Future;
use std::time::Duration;

use ferry_model::{Inventory, Location, Metadata, Step, StreamOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// One VM to move from one host to another.
#[derive(Debug, Clone)]
pub struct MoveRequest {
    /// Domain UUID.
    pub vm: String,
    /// Source host name.
    pub from: String,
    /// Target host name.
    pub to: String,
    /// Run this move belongs to, written on the domain as metadata.
    pub run_id: String,
    /// Delete the source's copy of host-local volumes after a verified move (kept otherwise).
    pub delete_source_volumes: bool,
    /// The volumes created on the target for the VM's host-local disks (the engine creates
    /// them through [`Driver::create_volume`] before the move starts); empty when it has none.
    pub copies: Vec<VolumeCopy>,
}

/// A volume a move needs on its target: the copy of one of the VM's host-local disks, in
/// the pool of the same name, with the same name, format and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetVolume {
    /// Host to create it on (the move's target).
    pub host: String,
    /// Storage pool (the same name on the source).
    pub pool: String,
    /// Volume name (the same on the source).
    pub name: String,
    /// Virtual size, bytes.
    pub capacity: u64,
    /// Format (`qcow2`, `raw`).
    pub format: String,
    /// The disk's path on the source.
    pub source_path: String,
}

/// A target volume created for a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCopy {
    /// What was created.
    pub volume: TargetVolume,
    /// Its path on the target.
    pub target_path: String,
}

/// What a driver tells the engine around each step of a cold move.
#[derive(Debug)]
pub enum StepEvent {
    /// About to do the step: the answer says whether it was journaled (do it) or not (stop).
    Before(Step, oneshot::Sender<bool>),
    /// The step ended: what it did, or why it failed.
    After(Step, Result<String, String>),
}

/// How a driver asks the engine to journal each step of a cold move before doing it, and
/// tells it how each ended: the saga's record lives in the engine's journal, not the driver.
#[derive(Debug, Clone, Default)]
pub struct StepGate {
    tx: Option<mpsc::UnboundedSender<StepEvent>>,
}

impl StepGate {
    /// A gate and the engine's end of it.
    pub fn new() -> (StepGate, mpsc::UnboundedReceiver<StepEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (StepGate { tx: Some(tx) }, rx)
    }

    /// A gate that journals nothing and lets every step through: for a driver's own tests.
    pub fn unjournaled() -> StepGate {
        StepGate { tx: None }
    }

    /// Asks to do `step`, from a blocking thread; false: it was not journaled, do not act.
    pub fn before_blocking(&self, step: &Step) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (answer, heard) = oneshot::channel();
        tx.send(StepEvent::Before(step.clone(), answer)).is_ok() && heard.blocking_recv().unwrap_or(false)
    }

    /// Asks to do `step`; false: it was not journaled, do not act.
    pub async fn before(&self, step: &Step) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (answer, heard) = oneshot::channel();
        tx.send(StepEvent::Before(step.clone(), answer)).is_ok() && heard.await.unwrap_or(false)
    }

    /// Says how `step` ended.
    pub fn after(&self, step: &Step, result: Result<String, String>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(StepEvent::After(step.clone(), result));
        }
    }
}

/// How a live migration runs. Auto-converge and post-copy can only be chosen here: libvirt
/// and QEMU refuse to enable either once the migration runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveOptions {
    /// Let QEMU throttle a guest that dirties memory faster than it can be sent.
    pub auto_converge: bool,
    /// Allow a later switch to post-copy.
    pub postcopy: bool,
    /// Bandwidth cap, MiB/s; none means unlimited.
    pub bandwidth_mib_s: Option<u64>,
    /// Initial downtime limit, ms; none means the hypervisor's default.
    pub max_downtime_ms: Option<u64>,
    /// Auto-converge's first throttle, percent of guest CPU; none: the hypervisor's default.
    #[serde(default)]
    pub auto_converge_initial: Option<u32>,
    /// Auto-converge's throttle step per pass that fails to keep up, percent.
    #[serde(default)]
    pub auto_converge_increment: Option<u32>,
    /// Encrypt the stream with TLS.
    #[serde(default)]
    pub tls: bool,
    /// Parallel connections, compression, zero-copy.
    #[serde(default)]
    pub stream: StreamOptions,
}

/// How a cold move runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdOptions {
    /// How long a guest gets to shut down by itself before it is powered off.
    pub shutdown_timeout: Duration,
}

impl Default for ColdOptions {
    fn default() -> ColdOptions {
        ColdOptions { shutdown_timeout: Duration::from_secs(60) }
    }
}

/// One sample of a running migration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Time since the job started.
    pub elapsed_ms: u64,
    /// Total bytes to send (memory and disks), as last estimated.
    pub total_bytes: u64,
    /// Bytes sent so far.
    pub transferred_bytes: u64,
    /// Bytes still to send.
    pub remaining_bytes: u64,
    /// Memory bytes still to send.
    pub memory_remaining_bytes: u64,
    /// Guest memory size, bytes.
    pub memory_total_bytes: u64,
    /// Disk bytes still to copy.
    pub disk_remaining_bytes: u64,
    /// Rate the guest dirties memory, bytes/s.
    pub dirty_rate_bytes_s: u64,
    /// Rate memory is sent, bytes/s.
    pub bandwidth_bytes_s: u64,
    /// Memory pass (iteration) count.
    pub memory_passes: u64,
    /// Downtime the hypervisor expects for the final switch-over, ms.
    pub expected_downtime_ms: Option<u64>,
    /// Auto-converge throttle, percent, when active.
    pub throttle_percent: Option<u32>,
    /// Whether the migration switched to post-copy.
    pub postcopy_active: bool,
    /// The hypervisor stopped answering while it switches the VM over (it holds the domain
    /// from the final pause to the end): the rest of the sample repeats the last one, and no
    /// more data is sent at the migration's cap, so its link share is free.
    #[serde(default)]
    pub switching_over: bool,
    /// The VM runs on the target, the copy complete (not in post-copy): what is left is the
    /// source's teardown of its copy, which loads neither link nor target. Observed on the
    /// target, never assumed; the move is verified when the migration ends.
    #[serde(default)]
    pub switched_over: bool,
}

/// A change to a running migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// Allow a longer final pause, ms.
    SetMaxDowntime(u64),
    /// Change the bandwidth cap, MiB/s.
    SetBandwidth(u64),
    /// Switch to post-copy (only when requested at start).
    StartPostCopy,
    /// Cancel: the VM stays on its source.
    Abort,
}

/// How [`Driver::shut_down`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutDown {
    /// Whether the VM was running (false: it was shut off already, nothing was done).
    pub was_running: bool,
    /// How: by its guest, or powered off after the timeout.
    pub how: String,
}

/// Figures of a finished move.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MoveReport {
    /// Wall time from the request to the verified end, ms.
    pub wall_ms: u64,
    /// The hypervisor's job time, ms (live moves).
    pub job_ms: Option<u64>,
    /// Time the guest was paused (live) or down (cold), ms.
    pub downtime_ms: Option<u64>,
    /// Bytes sent (memory and disks).
    pub transferred_bytes: u64,
    /// Memory passes.
    pub memory_passes: u64,
    /// Guest memory the migration carried (normal pages' bytes), when the hypervisor says.
    pub memory_bytes: Option<u64>,
    /// Bytes sent for that memory, when the hypervisor says: below `memory_bytes` when the
    /// stream compresses it.
    pub memory_sent_bytes: Option<u64>,
    /// Volumes created on the target.
    pub created_volumes: Vec<String>,
    /// Source volumes deleted after the move.
    pub deleted_volumes: Vec<String>,
    /// Where the VM was found afterwards.
    pub locations: Vec<Location>,
    /// What happened, in words, in order.
    pub messages: Vec<String>,
}

/// What kind of failure a driver met, as data beside its message (which is for people):
/// the engine decides retries by kind, never by searching the message. The libvirt driver
/// takes it from libvirt's error code and domain; ferry's own refusals set it explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// No connection to the host, or it was lost (an RPC failure).
    Unreachable,
    /// The host did not answer in time.
    TimedOut,
    /// The host refused the operation: invalid in the object's state, denied, not
    /// authorized; or ferry refused it (a stopped VM cannot move live).
    Refused,
    /// No such thing: host, domain, pool or volume.
    NotFound,
    /// It is in the way: already exists, already running, held by another job or run.
    Conflict,
    /// The hypervisor failed.
    Internal,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether trying again may succeed: the failure was about reaching the host, not about
    /// the VM, the target or their state, which fail the same way every time.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::TimedOut)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Refused => "refused",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal",
            ErrorKind::Other => "other",
        })
    }
}

/// Why a move did not happen. Every variant says where the VM is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoveError {
    /// It could not start: nothing changed; the VM is untouched on its source.
    #[error("could not start: {reason}")]
    Init {
        /// What kind of failure.
        kind: ErrorKind,
        /// Why.
        reason: String,
    },
    /// It started but did not complete; the VM runs on its source, what was prepared for it
    /// was removed.
    #[error("did not complete: {reason}")]
    Transfer {
        /// What kind of failure.
        kind: ErrorKind,
        /// Why.
        reason: String,
        /// Whether it ended because it was asked to abort.
        aborted: bool,
        /// The figures up to the failure.
        report: Box<MoveReport>,
    },
    /// The VM runs nowhere, or in more than one place: it needs `cleanup`.
    #[error("VM lost track of: {reason}")]
    Lost {
        /// What was found.
        reason: String,
        /// Where it was seen.
        locations: Vec<Location>,
    },
}

impl MoveError {
    /// A move that could not start, for `reason` of `kind`.
    pub fn init(kind: ErrorKind, reason: impl Into<String>) -> MoveError {
        MoveError::Init { kind, reason: reason.into() }
    }

    /// The kind of failure; none for a lost VM, which is no failure to retry but a state
    /// to clean up.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            MoveError::Init { kind, .. } | MoveError::Transfer { kind, .. } => Some(*kind),
            MoveError::Lost { .. } => None,
        }
    }
}

/// A running live migration: its progress samples, its controls, and its outcome.
#[derive(Debug)]
pub struct Migration {
    /// Progress samples, at most every half second, until the migration ends.
    pub progress: mpsc::UnboundedReceiver<Progress>,
    /// Changes to apply to it.
    pub controls: mpsc::UnboundedSender<Control>,
    /// What the driver says while the migration runs (its stream's protection, each control
    /// applied, and when), line by line as it happens: the engine journals each as it
    /// arrives, so the journal keeps the order in which things happened. Lines about the
    /// move's end come in its report.
    pub said: mpsc::UnboundedReceiver<String>,
    /// The outcome, once verified.
    pub outcome: oneshot::Receiver<Result<MoveReport, MoveError>>,
}

/// A driver failure that is not a move's outcome (inventory, locate, metadata).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{host}: {action}: {message}")]
pub struct DriverError {
    /// Host asked.
    pub host: String,
    /// What was asked.
    pub action: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

impl DriverError {
    /// `action` on `host` failed with `message` of `kind`.
    pub fn new(
        host: impl Into<String>,
        action: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        DriverError { host: host.into(), action: action.into(), kind, message: message.into() }
    }
}

/// What the engine needs from the world.
pub trait Driver: Send + Sync + 'static {
    /// Hosts and VMs as the hypervisors report them. Unreachable hosts are listed, not
    /// fatal.
    fn inventory(&self) -> impl Future<Output = Inventory> + Send;

    /// Every host that knows this UUID, and in what state.
    fn locate(&self, vm: &str) -> impl Future<Output = Result<Vec<Location>, DriverError>> + Send;

    /// Checks every disk of the VM for a move of `request` (shared storage reachable from
    /// the target, the target's pools, their room, no volume of the same name there) and
    /// returns the volumes the target needs for its host-local disks. Changes nothing; fails
    /// as `MoveError::Init`.
    fn plan_volumes(&self, request: &MoveRequest) -> impl Future<Output = Result<Vec<TargetVolume>, MoveError>> + Send;

    /// Creates `volume` (empty) on its host; returns its path there. Refuses a volume that
    /// already exists: ferry never overwrites one.
    fn create_volume(&self, volume: &TargetVolume) -> impl Future<Output = Result<String, DriverError>> + Send;

    /// Starts a live migration into the volumes `request.copies` (created beforehand); the
    /// returned handle reports progress and the outcome, verified where the VM runs. Fails at
    /// once (as `MoveError::Init`) when it cannot start. It creates and deletes no volume:
    /// after a failure, the caller removes the copies it created.
    fn migrate_live(
        &self,
        request: MoveRequest,
        options: LiveOptions,
    ) -> impl Future<Output = Result<Migration, MoveError>> + Send;

    /// Moves a VM cold into the volumes `request.copies`: shut down, copy each volume,
    /// define and start on the target, undefine on the source; each step asked of `steps`
    /// before it is done and reported after. A failure before the VM started on the target
    /// undoes the steps (the target's definition removed, the VM started again on its
    /// source if it ran) but not the volumes: the caller removes the copies it created.
    fn move_cold(
        &self,
        request: MoveRequest,
        options: ColdOptions,
        steps: StepGate,
    ) -> impl Future<Output = Result<MoveReport, MoveError>> + Send;

    /// Starts the VM's domain on `host` (after a crash, a cold move's VM left shut off).
    fn start(&self, host: &str, vm: &str) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Shuts the VM's domain on `host` down: asks its guest, and powers it off when it has
    /// not after `timeout`; one shut off already is left alone. Says how it ended, and
    /// whether it was running.
    fn shut_down(
        &self,
        host: &str,
        vm: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<ShutDown, DriverError>> + Send;

    /// ferry's metadata on a domain, if any.
    fn metadata(&self, host: &str, vm: &str) -> impl Future<Output = Result<Option<Metadata>, DriverError>> + Send;

    /// Writes ferry's metadata on a domain (live and persistent definition).
    fn set_metadata(
        &self,
        host: &str,
        vm: &str,
        metadata: Option<&Metadata>,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// The job (a migration) running on the VM's domain on `host`, with its latest figures;
    /// `None` when no job runs. How `resume` finds a migration that outlived its ferry.
    fn job(&self, host: &str, vm: &str) -> impl Future<Output = Result<Option<Progress>, DriverError>> + Send;

    /// Cancels the job running on the VM's domain on `host`; the VM stays there.
    fn abort_job(&self, host: &str, vm: &str) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// The volumes of `host`'s host-local pools (shared pools are never listed), each with
    /// the UUIDs of the domains on `host` whose disks use it. How `cleanup` finds volumes
    /// left by failed moves and source copies kept after successful ones.
    fn volumes(&self, host: &str) -> impl Future<Output = Result<Vec<Volume>, DriverError>> + Send {
        unsupported(host, "list volumes")
    }

    /// The volumes of `host`'s host-local pools that VM `uuid`'s disks use there (none for a
    /// VM on shared storage): what a move of it copies. By default picked from
    /// [`Driver::volumes`]; a driver may ask the VM alone, and leave the host's other
    /// domains (one busy with a migration) alone.
    fn volumes_of(&self, host: &str, uuid: &str) -> impl Future<Output = Result<Vec<Volume>, DriverError>> + Send {
        let (host, uuid) = (host.to_string(), uuid.to_string());
        async move { Ok(self.volumes(&host).await?.into_iter().filter(|v| v.used_by.contains(&uuid)).collect()) }
    }

    /// Deletes volume `name` of pool `pool` on `host`. Refuses a volume of a shared pool and
    /// one a domain on `host` uses; a volume already gone is no error (undo tolerates steps
    /// that never happened).
    fn delete_volume(
        &self,
        host: &str,
        pool: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        let _ = (pool, name);
        unsupported(host, "delete a volume")
    }

    /// Cores of `host` idle now (measured over a fraction of a second): whether it has CPU
    /// to spare for compressing a migration stream. No default: a wrapper that forgot to
    /// pass it on would make every `auto` choice a plain stream without a word.
    fn idle_cpus(&self, host: &str) -> impl Future<Output = Result<f64, DriverError>> + Send;

    /// Removes the copy of VM `vm` defined on `host` (powered off if active, then
    /// undefined; its volumes are left alone). Refuses unless the VM runs on exactly one
    /// other host: never the last copy. Returns what it did, in words.
    fn remove_copy(&self, host: &str, vm: &str) -> impl Future<Output = Result<String, DriverError>> + Send {
        let _ = vm;
        unsupported(host, "remove a copy of a VM")
    }
}

/// A volume in one of a host's host-local pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Host.
    pub host: String,
    /// Storage pool.
    pub pool: String,
    /// Volume name within the pool.
    pub name: String,
    /// Path on the host.
    pub path: String,
    /// Virtual size, bytes.
    pub capacity: u64,
    /// UUIDs of the domains on this host whose disks use it.
    pub used_by: Vec<String>,
}

/// What a driver that cannot do something answers.
fn unsupported<T: Send>(host: &str, action: &str) -> impl Future<Output = Result<T, DriverError>> + Send {
    // The driver refuses what it cannot do: asking again changes nothing.
    std::future::ready(Err(DriverError::new(host, action, ErrorKind::Refused, "not supported by this driver")))
}

#[cfg(test)]
mod tests {
    use super::{DriverError, ErrorKind, MoveError, MoveReport};

    #[test]
    fn only_unreachable_and_timed_out_are_transient() {
        for (kind, transient) in [
            (ErrorKind::Unreachable, true),
            (ErrorKind::TimedOut, true),
            (ErrorKind::Refused, false),
            (ErrorKind::NotFound, false),
            (ErrorKind::Conflict, false),
            (ErrorKind::Internal, false),
            (ErrorKind::Other, false),
        ] {
            assert_eq!(kind.is_transient(), transient, "{kind}");
        }
    }

    #[test]
    fn kinds_serialize_in_kebab_case() {
        let json = serde_json::to_string(&[ErrorKind::TimedOut, ErrorKind::NotFound]).expect("plain enum");
        assert_eq!(json, r#"["timed-out","not-found"]"#);
    }

    #[test]
    fn display_is_the_message_alone() {
        let e = DriverError::new("host-b", "locate", ErrorKind::Unreachable, "host-b unreachable: no route");
        assert_eq!(e.to_string(), "host-b: locate: host-b unreachable: no route");
        let e = MoveError::init(ErrorKind::Conflict, "volume vm-1.qcow2 already exists");
        assert_eq!(e.to_string(), "could not start: volume vm-1.qcow2 already exists");
        assert_eq!(e.kind(), Some(ErrorKind::Conflict));
        let e = MoveError::Transfer {
            kind: ErrorKind::Internal,
            reason: "migration failed".into(),
            aborted: false,
            report: Box::new(MoveReport::default()),
        };
        assert_eq!(e.to_string(), "did not complete: migration failed");
        assert_eq!(e.kind(), Some(ErrorKind::Internal));
        assert_eq!(MoveError::Lost { reason: "gone".into(), locations: vec![] }.kind(), None);
    }
}
