//! Who drives a run: the journal lease's owner (`host:pid:boot`, a controller's identity),
//! whether another live process holds a run, taking a run's lease, and what this process
//! does when it loses one.

use ferry_document::RunDocument;
use ferry_engine::EngineError;
use ferry_journal::{Journal, JournalError, Lease, Run};
use ferry_model::ClusterSpec;

/// The lease rule lives with the lease, in the journal.
pub use ferry_journal::owner_alive;

use crate::drivers::{AnyDriver, SIM_OWNER};
use crate::events::Error;

/// This controller, as a journal lease's owner: `host:pid:boot`, the machine's host name,
/// this process's id and the first 8 characters of the machine's boot id. Controllers on
/// several machines share a PostgreSQL journal: the host tells whose process it is, the
/// boot id that a process of this host's previous boot is gone, whatever its pid now is.
pub fn owner() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default().trim().to_owned();
    let boot: String = read("/proc/sys/kernel/random/boot_id").chars().filter(|c| *c != '-').take(8).collect();
    format!("{}:{}:{boot}", read("/proc/sys/kernel/hostname"), std::process::id())
}

/// An owner's parts: host, pid, and boot id (absent in the `host:pid` of older ferries).
fn parts(owner: &str) -> (&str, &str, Option<&str>) {
    let mut fields = owner.rsplitn(3, ':');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(boot), Some(pid), Some(host)) => (host, pid, Some(boot)),
        (Some(pid), Some(host), None) => (host, pid, None),
        _ => (owner, "", None),
    }
}

/// The owner a run on `driver` is journaled under: `host:pid`, or, for a simulation, the
/// same name every time (the same simulation writes the same journal).
pub fn owner_of(driver: &AnyDriver) -> String {
    if driver.is_sim() {
        SIM_OWNER.to_string()
    } else {
        owner()
    }
}

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Whether another process holds the run: its owner beat recently, and, when it ran on
/// this machine, its process still exists (a killed ferry is known dead at once) in this
/// boot of it.
pub fn held_by_another(run: &Run, me: &str) -> bool {
    let Some(owner) = run.owner.as_deref() else { return false };
    if owner == me || !owner_alive(run.heartbeat_ms, now_ms()) {
        return false;
    }
    let (host, pid, boot) = parts(owner);
    let (my_host, _, my_boot) = parts(me);
    if host != my_host {
        return true;
    }
    match (boot, my_boot) {
        (Some(boot), Some(mine)) if boot != mine => false,
        _ => running(pid),
    }
}

/// Whether process `pid` of this machine runs: it exists and has not exited (a zombie its
/// parent has not reaped yet has).
fn running(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(std::path::Path::new("/proc").join(pid).join("stat")) else { return false };
    // `PID (COMM) STATE ...`: the state follows the last ')', COMM may hold anything.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// The runs of the journal that another live process holds: their claims on VMs hold
/// however old (the active-run check). A journal that cannot be read gives none: the
/// driver still refuses a VM whose claim is fresh or whose job runs.
pub async fn live_runs(journal: &Journal) -> Vec<String> {
    let me = owner();
    let runs = journal.runs().await.unwrap_or_default();
    runs.into_iter().filter(|r| !r.state.is_ended() && held_by_another(r, &me)).map(|r| r.id).collect()
}

/// Takes run `id`'s lease for `me`, unless another process holds it: refused then, in words
/// that name the holder and what to do. A claim that loses a race to another process is
/// refused the same way; one that meets another change (an abort request) reads the run
/// again and decides again.
pub async fn take_lease(journal: &Journal, id: &str, me: &str) -> Result<Lease, Error> {
    for _ in 0..8 {
        let run = journal.run(id).await.map_err(|e| Error::Failed(format!("run {id}: {e}")))?;
        if held_by_another(&run, me) {
            let since = (now_ms() - run.heartbeat_ms.unwrap_or(0)) / 1000;
            return Err(Error::Failed(refusal(id, run.owner.as_deref().unwrap_or("another ferry"), Some(since))));
        }
        match journal.claim_lease(&run, me).await {
            Ok(lease) => return Ok(lease),
            Err(JournalError::LeaseHeld { holder, .. }) => return Err(Error::Failed(refusal(id, &holder, None))),
            Err(JournalError::Conflict { .. }) => continue,
            Err(e) => return Err(Error::Failed(format!("could not take run {id}: {e}"))),
        }
    }
    Err(Error::Failed(format!("could not take run {id}: it kept changing while this ferry tried; try again")))
}

/// Another process drives run `id`: what to say, and what to do instead.
fn refusal(id: &str, holder: &str, silent_s: Option<i64>) -> String {
    let since = silent_s.map(|s| format!(" (its last sign of life was {s} s ago)")).unwrap_or_default();
    format!(
        "run {id} is being driven by {holder}{since}; this ferry starts nothing. `ferry status {id}` follows it; \
         `ferry abort {id}` stops it"
    )
}

/// Refused when another live process drives `run`, naming it and what to do first.
pub fn refuse_if_driven(run: &Run) -> Result<(), Error> {
    if held_by_another(run, &owner()) {
        return Err(Error::Failed(format!(
            "run {} is being driven by {}; this ferry starts nothing: `ferry abort {}` first",
            run.id,
            run.owner.as_deref().unwrap_or("?"),
            run.id
        )));
    }
    Ok(())
}

/// The lease this process holds on run `run_id`, or a new claim of it at `generation` (a
/// run this process just created).
pub(crate) async fn lease_for(journal: &Journal, run_id: &str, generation: i64, owner: &str) -> Result<Lease, String> {
    if let Some(lease) = journal.lease(run_id) {
        return Ok(lease);
    }
    journal.claim(run_id, generation, owner).await.map_err(|e| format!("could not take run {run_id}: {e}"))?;
    journal.lease(run_id).ok_or_else(|| format!("run {run_id}: claimed, but the journal kept no lease"))
}

/// This ferry lost a run's lease: another process claimed the run and drives it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The run.
    pub run: String,
    /// Who drives it now (`host:pid`).
    pub holder: String,
}

impl Lost {
    /// The lease loss a journal error reports, if it is one.
    pub fn from_journal(e: &JournalError) -> Option<Lost> {
        match e {
            JournalError::LeaseLost { run, holder } => Some(Lost { run: run.clone(), holder: holder.clone() }),
            _ => None,
        }
    }

    /// The lease loss an engine error reports, if it is one.
    pub fn from_engine(run: &str, e: &EngineError) -> Option<Lost> {
        e.lost_to().map(|holder| Lost { run: run.to_string(), holder: holder.to_string() })
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} is now driven by {}; this ferry stopped starting moves (migrations it started go on in \
             libvirt, and {} settles them; `ferry status {}` follows the run)",
            self.run, self.holder, self.holder, self.run
        )
    }
}

/// Run `id`, or bad input naming the closest id the journal has.
pub async fn find_run(journal: &Journal, id: &str) -> Result<Run, Error> {
    match journal.run(id).await {
        Ok(run) => Ok(run),
        Err(JournalError::RunNotFound { .. }) => {
            let runs = journal.runs().await.unwrap_or_default();
            let mut text = format!("no run {id} in the journal at {}", journal.location());
            match ferry_plan::closest(id, runs.iter().map(|r| r.id.as_str())) {
                Some(near) => text.push_str(&format!("; did you mean {near}?")),
                None if runs.is_empty() => text.push_str(": it holds no runs"),
                None => text.push_str("; `ferry runs` lists them"),
            }
            Err(Error::BadInput(text))
        }
        Err(e) => Err(Error::failed(&e)),
    }
}

/// Run `id`'s document and cluster, as journaled.
pub async fn documents(journal: &Journal, id: &str) -> Result<(RunDocument, ClusterSpec), Error> {
    let stored = journal.run_documents(id).await.map_err(|e| Error::failed(&e))?;
    RunDocument::read(id, &stored).map_err(|e| Error::BadInput(crate::journals::chain(&e)))
}

/// Whether every move of run `id` succeeded.
pub async fn all_succeeded(journal: &Journal, id: &str) -> bool {
    journal.moves(id).await.is_ok_and(|moves| moves.iter().all(|m| m.status.is_success()))
}

#[cfg(test)]
mod tests {
    use super::{held_by_another, now_ms, owner, parts, running};
    use ferry_journal::{Run, RunKind, RunState};

    #[test]
    fn an_owner_is_host_pid_and_boot() {
        let me = owner();
        let (host, pid, boot) = parts(&me);
        assert!(!host.is_empty(), "{me}");
        assert_eq!(pid, std::process::id().to_string());
        assert_eq!(boot.map(str::len), Some(8), "{me}");
        assert_eq!(parts("ctl-2:77"), ("ctl-2", "77", None), "an older ferry's owner");
    }

    #[test]
    fn a_run_is_held_by_a_live_process_of_this_boot_or_a_beating_controller_elsewhere() {
        let me = owner();
        let (host, _, boot) = parts(&me);
        let boot = boot.expect("a boot id");
        let run = |owner: &str, beat_ago_ms: i64| Run {
            id: "r-1".into(),
            plan_name: "p".into(),
            kind: RunKind::Migrate,
            parent: None,
            state: RunState::Running,
            abort_requested: false,
            owner: Some(owner.to_owned()),
            heartbeat_ms: Some(now_ms() - beat_ago_ms),
            created_ms: 0,
            updated_ms: 0,
            finished_ms: None,
            generation: 1,
        };
        // This very process, under another identity's eyes: pid 1 runs here.
        assert!(held_by_another(&run(&format!("{host}:1:{boot}"), 0), &me));
        assert!(!held_by_another(&run(&me, 0), &me), "not another");
        assert!(!held_by_another(&run(&format!("{host}:1:{boot}"), 60_000), &me), "silent for a minute");
        assert!(!held_by_another(&run(&format!("{host}:1:00000000"), 0), &me), "a previous boot's");
        assert!(!held_by_another(&run(&format!("{host}:0:{boot}"), 0), &me), "no such process here");
        assert!(held_by_another(&run("ctl-2:1:00000000", 0), &me), "another machine, beating");
        assert!(!held_by_another(&run("ctl-2:1:00000000", 60_000), &me), "another machine, silent");
    }

    #[test]
    fn a_process_runs_until_it_exits_even_unreaped() {
        assert!(running(&std::process::id().to_string()));
        assert!(!running("0"), "no process 0 in /proc");
        assert!(!running("not-a-pid"));
        // Exited and not reaped: a zombie, which no longer runs.
        let mut child = std::process::Command::new("true").spawn().expect("true runs");
        let pid = child.id().to_string();
        let waited = std::time::Instant::now();
        while running(&pid) {
            assert!(waited.elapsed() < std::time::Duration::from_secs(10), "`true` never ended");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(std::path::Path::new("/proc").join(&pid).exists(), "still a zombie");
        child.wait().expect("reaped");
    }
}
