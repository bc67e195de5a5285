//! Hooks: operators' commands run around a run, around each VM's move, and on a drained
//! host. Each runs by `sh -c` in its own process group with the run (and VM, or host) in
//! its environment, is killed after its timeout, and its exit status and output go to the
//! journal (an event of the run, or of the VM), where `ferry report` shows them.
//!
//! Per-VM hooks run inside the move, through [`Hooked`], a [`Driver`] that wraps the real
//! one: the engine knows nothing of hooks.
//!
//! A hook may run for an hour: the run's lease is kept every second while it runs. When the
//! lease is found lost (another ferry took the run), the hook is killed, as at its timeout,
//! and its result says so ([`HookRun::lost_to`]): the new holder decides what runs next.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_driver::{
    ColdOptions, Driver, DriverError, LiveOptions, Migration, MoveError, MoveReport, MoveRequest, Progress, ShutDown,
    StepGate, TargetVolume, Volume,
};
use ferry_journal::{EventKind, Journal, JournalError, Lease};
use ferry_lab::process::group_and_start;
use ferry_model::{Inventory, Location, Metadata};
use ferry_plan::{OnFailure, Plan};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::events::Events;

/// Output kept per stream: the end, where the reason usually is.
const KEEP_BYTES: usize = 16 * 1024;

/// How one hook ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookRun {
    /// The command.
    pub command: String,
    /// Its exit code; `None` when it could not start, was killed, or died of a signal.
    pub code: Option<i32>,
    /// Killed after its timeout.
    pub timed_out: bool,
    /// Why it could not start.
    pub error: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// The end of its standard output.
    pub stdout: String,
    /// The end of its standard error.
    pub stderr: String,
    /// Killed because this ferry lost the run's lease to this holder (`host:pid`).
    pub lost_to: Option<String>,
    /// Stopped by the operator ("Ctrl-C", or "`ferry abort`" of the run or of the roll it
    /// is a wave of): its process group asked to end (SIGTERM), killed after [`GRACE`].
    pub stopped_by: Option<String>,
    /// Not run: simulated ([`simulate`]).
    pub simulated: bool,
}

/// How long a hook the operator stopped has to end after SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(10);

impl HookRun {
    /// Whether it exited 0 in time.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
            && !self.timed_out
            && self.error.is_none()
            && self.lost_to.is_none()
            && self.stopped_by.is_none()
    }

    /// What happened, in words: "`touch x` exited 0 after 0.1 s".
    pub fn summary(&self) -> String {
        let took = self.duration.as_secs_f64();
        let what = match (&self.error, self.timed_out, self.code) {
            _ if self.lost_to.is_some() => format!(
                "was killed after {took:.1} s: this ferry lost the run's lease to {}",
                self.lost_to.as_deref().unwrap_or_default()
            ),
            _ if self.stopped_by.is_some() => {
                format!("was stopped by {} after {took:.1} s", self.stopped_by.as_deref().unwrap_or_default())
            }
            (Some(e), _, _) => format!("could not start: {e}"),
            (None, true, _) => format!("was killed after its {took:.0} s timeout"),
            _ if self.simulated => format!("simulated: took {took:.0} s of virtual time"),
            (None, false, Some(code)) => format!("exited {code} after {took:.1} s"),
            (None, false, None) => format!("was killed by a signal after {took:.1} s"),
        };
        let last_of = |text: &'_ str| text.lines().rfind(|l| !l.trim().is_empty()).map(str::to_string);
        let last = last_of(&self.stderr).or_else(|| last_of(&self.stdout));
        match last {
            Some(line) if !self.ok() => format!("`{}` {what}: {}", self.command, line.trim()),
            _ => format!("`{}` {what}", self.command),
        }
    }

    /// The figures and output, for the journal.
    pub fn data(&self, hook: &str) -> Value {
        json!({
            "hook": hook,
            "command": self.command,
            "exit_code": self.code,
            "timed_out": self.timed_out,
            "error": self.error,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            "stdout": self.stdout,
            "stderr": self.stderr,
            "lost_to": self.lost_to,
            "stopped_by": self.stopped_by,
            "simulated": self.simulated,
        })
    }
}

/// Runs `command` by `sh -c` with `env`, killing its whole process group after `timeout`,
/// keeping `lease` every second meanwhile; killed too once the lease is found lost. Ctrl-C,
/// or `ferry abort` of the run or of its parent (a roll), stops it: its group gets SIGTERM,
/// and SIGKILL after [`GRACE`].
pub async fn run(command: &str, env: Vec<(String, String)>, timeout: Duration, lease: &Lease) -> HookRun {
    let command = command.to_string();
    let stop = Arc::new(Stop::default());
    let stopping = Arc::clone(&stop);
    let mut hook = tokio::task::spawn_blocking(move || run_blocking(&command, &env, timeout, &stopping));
    let journal = lease.journal();
    let parent = journal.run(lease.run()).await.ok().and_then(|r| r.parent);
    let asked_to_abort = || async {
        for run in std::iter::once(lease.run()).chain(parent.as_deref()) {
            if journal.abort_requested(run).await.unwrap_or(false) {
                return true;
            }
        }
        false
    };
    let (mut lost_to, mut stopped_by) = (None, None);
    // Made once: a Ctrl-C while the loop is elsewhere is not lost.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let joined = loop {
        tokio::select! {
            joined = &mut hook => break joined,
            _ = &mut ctrl_c, if stopped_by.is_none() => {
                stopped_by = Some("Ctrl-C".to_string());
                stop.terminate.store(true, Ordering::SeqCst);
            }
            _ = tick.tick(), if lost_to.is_none() => {
                let started = stop.group.lock().ok().and_then(|mut g| g.take());
                if let Some(group) = started {
                    let text = format!("hook started as process group {}", group.pgid);
                    let data = json!({ GROUP: group });
                    let _ = journal.event(lease.run(), None, EventKind::Message, &text, Some(&data)).await;
                }
                match lease.keep().await {
                    Err(JournalError::LeaseLost { holder, .. }) => {
                        lost_to = Some(holder);
                        stop.kill.store(true, Ordering::SeqCst);
                    }
                    // A journal that does not answer for a moment is no reason to kill the
                    // hook: the next beat tries again, and the engine stops on a lasting fault.
                    Err(e) => tracing::warn!("could not keep the lease of run {} during a hook: {e}", lease.run()),
                    Ok(()) => {}
                }
                if stopped_by.is_none() && asked_to_abort().await {
                    stopped_by = Some("`ferry abort`".to_string());
                    stop.terminate.store(true, Ordering::SeqCst);
                }
            }
        }
    };
    let mut ran = joined
        .unwrap_or_else(|e| HookRun { error: Some(format!("the hook's thread failed: {e}")), ..HookRun::default() });
    ran.lost_to = lost_to;
    ran.stopped_by = stopped_by;
    ran
}

/// How a running hook is to be stopped, shared with the thread that waits for it.
#[derive(Debug, Default)]
struct Stop {
    /// At once (the lease is lost: another process owns the run now).
    kill: AtomicBool,
    /// Asked to end first, killed after [`GRACE`] (the operator).
    terminate: AtomicBool,
    /// Its process group once started, for the journal.
    group: Mutex<Option<Group>>,
}

/// A hook's process group as journaled once it started, so that a `resume` after this
/// ferry died ends what is left of it before anything else runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Group {
    /// The group's id: its leader's pid.
    pgid: u32,
    /// Its leader's start, in clock ticks after boot (/proc): a later group with the same
    /// id is not this one.
    started: u64,
}

/// The event data's key of a journaled [`Group`].
const GROUP: &str = "hook_group";

/// The processes still in `group`: those in its process group that started no earlier than
/// its leader (a group id cannot be reused while any member lives).
fn members(group: Group) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok()?.parse::<u32>().ok())
        .filter_map(group_and_start)
        .filter(|&(pgrp, started)| pgrp == group.pgid && started >= group.started)
        .count()
}

/// Ends what is left of the hooks run `run_id`'s journal says were started (a ferry that
/// died left them running): SIGTERM to each group still there, SIGKILL after [`GRACE`].
/// Before a resumed run goes on, so that no hook runs twice at once.
pub async fn end_leftovers(journal: &Journal, run_id: &str, events: &Events) {
    let journaled = journal.events(run_id, None).await.unwrap_or_default();
    let groups = journaled
        .iter()
        .filter_map(|e| e.data.as_ref()?.get(GROUP))
        .filter_map(|g| serde_json::from_value::<Group>(g.clone()).ok());
    for group in groups {
        if members(group) == 0 {
            continue;
        }
        let text = format!("a hook left running by the ferry that died (process group {}): ending it", group.pgid);
        events.say(&text);
        let _ = journal.event(run_id, None, EventKind::Message, &text, None).await;
        kill_group(group.pgid, libc::SIGTERM);
        let asked = Instant::now();
        while members(group) > 0 && asked.elapsed() < GRACE {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if members(group) > 0 {
            kill_group(group.pgid, libc::SIGKILL);
        }
    }
}

/// Runs the hook to its end, its timeout, or until `stop` says (see [`Stop`]).
fn run_blocking(command: &str, env: &[(String, String)], timeout: Duration, stop: &Stop) -> HookRun {
    let started = Instant::now();
    let mut result = HookRun { command: command.to_string(), ..HookRun::default() };
    let spawned = Process::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let reader = |stream: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_end(&mut bytes);
            }
            let _ = tx.send(bytes);
        });
        rx
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let pid = child.id();
    if let (Some((_, started)), Ok(mut group)) = (group_and_start(pid), stop.group.lock()) {
        *group = Some(Group { pgid: pid, started });
    }
    let mut terminated: Option<Instant> = None;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                result.code = status.code();
                break;
            }
            Ok(None) if stop.kill.load(Ordering::SeqCst) || terminated.is_some_and(|at| at.elapsed() >= GRACE) => {
                kill_group(pid, libc::SIGKILL);
                let _ = child.wait();
                break;
            }
            Ok(None) if terminated.is_none() && stop.terminate.load(Ordering::SeqCst) => {
                kill_group(pid, libc::SIGTERM);
                terminated = Some(Instant::now());
            }
            Ok(None) if started.elapsed() >= timeout => {
                kill_group(pid, libc::SIGKILL);
                let _ = child.wait();
                result.timed_out = true;
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                result.error = Some(e.to_string());
                kill_group(pid, libc::SIGKILL);
                let _ = child.wait();
                break;
            }
        }
    }
    // Whatever it left running in the background must not keep the output open forever.
    let grace = Duration::from_secs(2);
    let (stdout, stderr) = (out.recv_timeout(grace).unwrap_or_default(), err.recv_timeout(grace).unwrap_or_default());
    result.stdout = tail(&stdout);
    result.stderr = tail(&stderr);
    result.duration = started.elapsed();
    result
}

fn kill_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads
        // (it was started with process_group(0)); it touches no memory.
        unsafe { libc::kill(-pid, signal) };
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(KEEP_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Runs a run-level hook (`pre-run`, `post-run`, `drain`) of the run `lease` holds and
/// journals it as an event of the run, its environment in the event's data; says
/// "`label`: what happened". Returns how it ran.
#[allow(clippy::too_many_arguments, reason = "a hook's whole context; one call per hook kind")]
pub async fn run_for_run(
    journal: &Journal,
    lease: &Lease,
    hook: &str,
    label: &str,
    command: &str,
    mut env: Vec<(String, String)>,
    timeout: Duration,
    events: &Events,
) -> HookRun {
    let run_id = lease.run();
    env.push(("FERRY_RUN_ID".into(), run_id.into()));
    env.push(("FERRY_HOOK".into(), hook.into()));
    let ran = run(command, env.clone(), timeout, lease).await;
    journal_for_run(journal, run_id, hook, label, env, &ran, events).await;
    ran
}

/// Journals how a run-level hook of run `run_id` ran, as an event of the run with `env` in
/// its data, and says "`label`: what happened".
pub async fn journal_for_run(
    journal: &Journal,
    run_id: &str,
    hook: &str,
    label: &str,
    env: Vec<(String, String)>,
    ran: &HookRun,
    events: &Events,
) {
    let text = format!("{label}: {}", ran.summary());
    events.say(&text);
    let mut data = ran.data(hook);
    data["env"] = env.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>().into();
    if let Err(e) = journal.event(run_id, None, EventKind::Message, &text, Some(&data)).await {
        events.warn(format!("could not journal the {hook} hook's result: {e}"));
    }
}

/// A hook on a simulated fleet: `command` is not run; it takes `seconds` of virtual time
/// and ends well.
pub async fn simulate(command: &str, seconds: f64) -> HookRun {
    let duration = Duration::from_secs_f64(seconds.max(0.0));
    tokio::time::sleep(duration).await;
    HookRun { command: command.to_string(), code: Some(0), duration, simulated: true, ..HookRun::default() }
}

/// One VM's hooks.
#[derive(Debug, Clone, Default)]
struct VmHooks {
    name: String,
    pre: Option<String>,
    post: Option<String>,
}

/// What every per-VM hook needs, shared with the tasks that wait for migrations' ends.
struct Context {
    journal: Journal,
    lease: Lease,
    run_id: String,
    on_failure: OnFailure,
    timeout: Duration,
    failed: Arc<Mutex<Option<String>>>,
    events: Events,
}

impl Context {
    /// The hook whose failure under `fail` stops the run, if one did.
    fn failed(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs one VM's hook; `Err` with the reason when it failed and the policy is `fail`
    /// (the run is then told to start nothing new).
    async fn hook(&self, stage: &str, command: &str, vm: &VmHooks, request: &MoveRequest) -> Result<(), String> {
        let env = vec![
            ("FERRY_RUN_ID".to_string(), self.run_id.clone()),
            ("FERRY_HOOK".to_string(), stage.to_string()),
            ("FERRY_VM".to_string(), vm.name.clone()),
            ("FERRY_VM_UUID".to_string(), request.vm.clone()),
            ("FERRY_FROM".to_string(), request.from.clone()),
            ("FERRY_TO".to_string(), request.to.clone()),
        ];
        let ran = run(command, env, self.timeout, &self.lease).await;
        let mut text = format!("{stage} hook: {}", ran.summary());
        // A hook killed because the lease is lost stops the move whatever the policy: this
        // ferry starts nothing more.
        let lost = ran.lost_to.is_some();
        let failed = !lost && !ran.ok() && self.on_failure == OnFailure::Fail;
        if failed {
            text.push_str("; on_failure = fail: no new move starts");
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{stage} hook of {}", vm.name));
        } else if !ran.ok() && !lost {
            text.push_str("; on_failure = warn: the run goes on");
        }
        if !ran.ok() {
            self.events.warn(format!("{}: {text}", vm.name));
        }
        if let Err(e) =
            self.journal.event(&self.run_id, Some(&request.vm), EventKind::Message, &text, Some(&ran.data(stage))).await
        {
            self.events.warn(format!("could not journal {}'s {stage} hook: {e}", vm.name));
        }
        if failed || lost {
            Err(text)
        } else {
            Ok(())
        }
    }
}

/// A driver that runs each VM's pre-move hook before its move starts (once per VM, however
/// many attempts) and its post-move hook after a verified move. Under `on_failure = fail`,
/// a failed hook stops the run: that VM's move (for a pre-move hook) and every move not yet
/// started end FAILURE-INIT before anything is touched; moves under way finish.
pub struct Hooked<D> {
    inner: Arc<D>,
    vms: HashMap<String, VmHooks>,
    context: Arc<Context>,
    started: Mutex<HashSet<String>>,
}

impl<D: Driver> Hooked<D> {
    /// Wraps `inner` with the hooks of `plan` for the run `lease` holds, for the VMs
    /// `uuids` (UUID, name). A hook failing under `fail` is named in `failed`.
    pub fn new(
        inner: Arc<D>,
        plan: &Plan,
        uuids: &[(String, String)],
        journal: Journal,
        lease: Lease,
        failed: Arc<Mutex<Option<String>>>,
        events: Events,
    ) -> Hooked<D> {
        let vms = uuids
            .iter()
            .map(|(uuid, name)| {
                let own = plan.moves.iter().find(|m| m.vm == *name || m.vm == *uuid);
                let hooks = VmHooks {
                    name: name.clone(),
                    pre: own.and_then(|m| m.pre_hook.clone()).or_else(|| plan.hooks.pre_move.clone()),
                    post: own.and_then(|m| m.post_hook.clone()).or_else(|| plan.hooks.post_move.clone()),
                };
                (uuid.clone(), hooks)
            })
            .collect();
        let context = Context {
            journal,
            run_id: lease.run().to_string(),
            lease,
            on_failure: plan.hooks.on_failure,
            timeout: Duration::from_secs(plan.hooks.timeout_s),
            failed,
            events,
        };
        Hooked { inner, vms, context: Arc::new(context), started: Mutex::new(HashSet::new()) }
    }

    async fn before(&self, request: &MoveRequest) -> Result<(), MoveError> {
        if let Some(which) = self.context.failed() {
            let reason = format!("not started: the {which} failed (on_failure = fail)");
            return Err(MoveError::init(ferry_driver::ErrorKind::Other, reason));
        }
        let Some(vm) = self.vms.get(&request.vm) else { return Ok(()) };
        let Some(pre) = &vm.pre else { return Ok(()) };
        let first = self.started.lock().map(|mut s| s.insert(request.vm.clone())).unwrap_or(true);
        if !first {
            return Ok(());
        }
        // A hook's failure is the operator's refusal: no retry.
        self.context
            .hook("pre-move", pre, vm, request)
            .await
            .map_err(|reason| MoveError::init(ferry_driver::ErrorKind::Other, reason))
    }
}

impl<D: Driver> Driver for Hooked<D> {
    async fn inventory(&self) -> Inventory {
        self.inner.inventory().await
    }

    async fn locate(&self, vm: &str) -> Result<Vec<Location>, DriverError> {
        self.inner.locate(vm).await
    }

    /// The first step of every move: the pre-move hook runs before it.
    async fn plan_volumes(&self, request: &MoveRequest) -> Result<Vec<TargetVolume>, MoveError> {
        self.before(request).await?;
        self.inner.plan_volumes(request).await
    }

    async fn create_volume(&self, volume: &TargetVolume) -> Result<String, DriverError> {
        self.inner.create_volume(volume).await
    }

    async fn migrate_live(&self, request: MoveRequest, options: LiveOptions) -> Result<Migration, MoveError> {
        self.before(&request).await?;
        let mut migration = self.inner.migrate_live(request.clone(), options).await?;
        let Some(vm) = self.vms.get(&request.vm).filter(|v| v.post.is_some()).cloned() else { return Ok(migration) };
        // The post-move hook runs between the driver's verified outcome and the engine's.
        let (tx, rx) = oneshot::channel();
        let outcome = std::mem::replace(&mut migration.outcome, rx);
        let context = self.context.clone();
        tokio::spawn(async move {
            let Ok(outcome) = outcome.await else { return };
            if outcome.is_ok() {
                if let Some(post) = &vm.post {
                    let _ = context.hook("post-move", post, &vm, &request).await;
                }
            }
            let _ = tx.send(outcome);
        });
        Ok(migration)
    }

    async fn move_cold(
        &self,
        request: MoveRequest,
        options: ColdOptions,
        steps: StepGate,
    ) -> Result<MoveReport, MoveError> {
        self.before(&request).await?;
        let report = self.inner.move_cold(request.clone(), options, steps).await?;
        if let Some(vm) = self.vms.get(&request.vm) {
            if let Some(post) = &vm.post {
                let _ = self.context.hook("post-move", post, vm, &request).await;
            }
        }
        Ok(report)
    }

    async fn metadata(&self, host: &str, vm: &str) -> Result<Option<Metadata>, DriverError> {
        self.inner.metadata(host, vm).await
    }

    async fn set_metadata(&self, host: &str, vm: &str, metadata: Option<&Metadata>) -> Result<(), DriverError> {
        self.inner.set_metadata(host, vm, metadata).await
    }

    async fn job(&self, host: &str, vm: &str) -> Result<Option<Progress>, DriverError> {
        self.inner.job(host, vm).await
    }

    async fn abort_job(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        self.inner.abort_job(host, vm).await
    }

    async fn start(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        self.inner.start(host, vm).await
    }

    async fn shut_down(&self, host: &str, vm: &str, timeout: Duration) -> Result<ShutDown, DriverError> {
        self.inner.shut_down(host, vm, timeout).await
    }

    async fn volumes(&self, host: &str) -> Result<Vec<Volume>, DriverError> {
        self.inner.volumes(host).await
    }

    async fn volumes_of(&self, host: &str, uuid: &str) -> Result<Vec<Volume>, DriverError> {
        self.inner.volumes_of(host, uuid).await
    }

    async fn delete_volume(&self, host: &str, pool: &str, name: &str) -> Result<(), DriverError> {
        self.inner.delete_volume(host, pool, name).await
    }

    async fn idle_cpus(&self, host: &str) -> Result<f64, DriverError> {
        self.inner.idle_cpus(host).await
    }

    async fn remove_copy(&self, host: &str, vm: &str) -> Result<String, DriverError> {
        self.inner.remove_copy(host, vm).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_now(command: &str, timeout: Duration) -> HookRun {
        run_blocking(command, &[("FERRY_HOST".into(), "host-a".into())], timeout, &Stop::default())
    }

    #[test]
    fn a_hook_sees_its_environment_and_its_output_is_kept() {
        let ran = run_now("echo \"host $FERRY_HOST\"; echo oops >&2; exit 3", Duration::from_secs(10));
        assert_eq!(ran.code, Some(3));
        assert!(!ran.ok());
        assert_eq!(ran.stdout, "host host-a\n");
        assert_eq!(ran.stderr, "oops\n");
        assert!(ran.summary().starts_with("`echo"), "{}", ran.summary());
        assert!(ran.summary().ends_with("exited 3 after 0.0 s: oops"), "{}", ran.summary());
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let started = Instant::now();
        let ran = run_now("sleep 30 & sleep 30; true", Duration::from_millis(300));
        assert!(ran.timed_out && !ran.ok(), "{ran:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(ran.summary().contains("was killed after its"), "{}", ran.summary());
    }

    #[test]
    fn a_hook_is_killed_with_its_children_when_told_to_stop() {
        let started = Instant::now();
        let stop = Stop { kill: AtomicBool::new(true), ..Stop::default() };
        let ran = run_blocking("sleep 30 & sleep 30; true", &[], Duration::from_secs(60), &stop);
        assert!(!ran.ok() && !ran.timed_out, "{ran:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn a_hook_the_operator_stops_is_asked_to_end_first() {
        // It traps SIGTERM, says so and ends: no need for the SIGKILL after the grace.
        let started = Instant::now();
        let stop = Stop::default();
        let ran = std::thread::scope(|scope| {
            // Once the shell had time to set its trap.
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                stop.terminate.store(true, Ordering::SeqCst);
            });
            run_blocking("trap 'echo asked to end; exit 7' TERM; sleep 30 & wait", &[], Duration::from_secs(60), &stop)
        });
        assert_eq!((ran.code, ran.stdout.as_str()), (Some(7), "asked to end\n"), "{ran:?}");
        assert!(started.elapsed() < GRACE, "{:?}", started.elapsed());
    }

    #[test]
    fn a_hook_killed_for_a_lost_lease_says_who_took_the_run() {
        let mut ran = run_now("true", Duration::from_secs(10));
        ran.lost_to = Some("ctl-2:77".into());
        assert!(ran.summary().contains("this ferry lost the run's lease to ctl-2:77"), "{}", ran.summary());
        assert_eq!(ran.data("drain")["lost_to"], "ctl-2:77");
    }

    #[test]
    fn a_hook_group_is_found_by_id_and_start_until_its_last_member_ends() {
        let mut child = Process::new("sh").args(["-c", "sleep 30 & sleep 30"]).process_group(0).spawn().expect("sh");
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(200));
        let (pgrp, started) = group_and_start(pid).expect("its stat");
        assert_eq!(pgrp, pid, "it leads its group");
        let group = Group { pgid: pid, started };
        assert!(members(group) >= 2, "sh and its sleeps");
        assert_eq!(
            members(Group { started: started + 100_000, ..group }),
            0,
            "a group of that id started later is another"
        );
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait();
        let killed = Instant::now();
        while members(group) > 0 && killed.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(members(group), 0);
    }

    #[test]
    fn a_quick_successful_hook() {
        let ran = run_now("true", Duration::from_secs(10));
        assert!(ran.ok(), "{ran:?}");
        assert!(ran.summary().starts_with("`true` exited 0 after"), "{}", ran.summary());
    }
}
