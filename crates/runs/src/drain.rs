//! What follows a drain in any run: once the host is verified empty, its hook runs; when
//! the hook succeeds (or there is none) and the drain returns, every VM that left comes
//! back in a rollback run linked to the drain's run. A failed hook leaves the VMs where
//! they are; `ferry rollback RUN` returns them later. Also the plan `ferry drain` runs.

use std::sync::Arc;
use std::time::Duration;

use ferry_back::rollback::Origin;
use ferry_driver::Driver;
use ferry_engine::Clock;
use ferry_journal::{EventKind, Journal, JournalError, Lease, RunKind};
use ferry_model::{ClusterSpec, Status};
use ferry_plan::{Check, Drain, Hooks, Limits, Plan, Policy, Target};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::cluster::unknown_host;
use crate::drivers::AnyDriver;
use crate::events::{Error, Events};
use crate::hooks;
use crate::maintenance;
use crate::owners::Lost;
use crate::rollback::{self, Returned};

/// What `ferry drain` asks.
#[derive(Debug, Clone)]
pub struct DrainAsk {
    /// The host to empty.
    pub host: String,
    /// Where its VMs go: a host, or `ANY`.
    pub to: String,
    /// The command to run once the host is empty, before the VMs come back.
    pub return_after: Option<String>,
    /// Bring every VM back as soon as the host is empty.
    pub return_at_once: bool,
    /// Seconds the command may run.
    pub hook_timeout_s: u64,
    /// Concurrent migrations out of the host.
    pub per_source: usize,
}

/// The plan of one `[[drain]]` that `ferry drain` runs, or what is wrong with the ask.
pub fn plan(ask: &DrainAsk, cluster: &ClusterSpec) -> Result<Plan, Error> {
    let any = ask.to.eq_ignore_ascii_case("any");
    if cluster.host(&ask.host).is_none() {
        return Err(Error::BadInput(unknown_host("HOST", &ask.host, cluster)));
    }
    if !any && cluster.host(&ask.to).is_none() {
        return Err(Error::BadInput(unknown_host("--to", &ask.to, cluster)));
    }
    if ask.to == ask.host {
        return Err(Error::BadInput(format!("cannot drain {} onto itself", ask.host)));
    }
    if ask.per_source == 0 {
        return Err(Error::BadInput("--per-source must be at least 1".into()));
    }
    Ok(Plan {
        file: "ferry drain".into(),
        name: format!("drain {}", ask.host),
        deadline: None,
        resume_from: None,
        limits: Limits { per_source: ask.per_source, ..Limits::default() },
        policy: Policy::default(),
        moves: Vec::new(),
        drains: vec![Drain {
            host: ask.host.clone(),
            to: if any { Target::Any } else { Target::Host(ask.to.clone()) },
            return_after: ask.return_after.is_some() || ask.return_at_once,
            hook: ask.return_after.clone(),
            check: None,
            shut_down: Vec::new(),
            cold: Vec::new(),
            hook_sim_s: None,
            line: 0,
        }],
        hooks: Hooks { timeout_s: ask.hook_timeout_s.max(1), ..Hooks::default() },
        roll: None,
    })
}

/// After run `run_id`'s moves: for each drain of `plan` with a hook or a return, verifies
/// the host is empty, runs its hook, and returns its VMs. Idempotent, so that `resume`
/// calls it too: a hook that already ran is not run again, and a run already returned is
/// not returned again. True when everything that had to happen did; [`Lost`] when another
/// process took the run meanwhile (then nothing more is started). The return runs on
/// `driver` (a simulation's world goes on) with the run's `clock`, while the run's `lease`
/// is kept.
pub async fn after(
    driver: &Arc<AnyDriver>,
    journal: &Journal,
    lease: &Lease,
    plan: &Plan,
    cluster: &ClusterSpec,
    how: After,
    events: &Events,
) -> Result<bool, Lost> {
    let After { clock, hook_done, retry_failed } = how;
    let run_id = lease.run();
    let drains: Vec<&Drain> = plan.drains.iter().filter(|d| d.acts_after()).collect();
    if drains.is_empty() {
        return Ok(true);
    }
    let note = |text: String| async move {
        events.say(&text);
        if let Err(e) = journal.event(run_id, None, EventKind::Message, &text, None).await {
            events.warn(format!("could not journal: {e}"));
        }
    };
    let journaled = journal.events(run_id, None).await.unwrap_or_default();
    let moves = journal.moves(run_id).await.unwrap_or_default();
    let returned = journal
        .runs()
        .await
        .unwrap_or_default()
        .into_iter()
        .any(|r| r.parent.as_deref() == Some(run_id) && r.kind == RunKind::Rollback);
    let inventory = driver.inventory().await;
    let (journaled, moves, inventory) = (&journaled, &moves, &inventory);
    // Each host's hook and check at once: the hosts of a wave are in maintenance together.
    let ended = join_all(drains.iter().map(|d| async move {
            match last_hook(journaled, &d.host) {
                Some(HookRecord::Ended(true)) if !retry_failed => {
                    note(format!(
                        "{}: its hook failed earlier: the VMs stay where they are; `ferry rollback {run_id}` returns them",
                        d.host
                    ))
                    .await;
                    return Ok(HostEnd::FAILED);
                }
                Some(HookRecord::Ended(false)) => {}
                Some(HookRecord::Begun) if !plan.hooks.rerun_hooks && hook_done => {
                    // The operator finished what the interrupted hook was doing.
                    let data =
                        json!({ "hook": "drain", "env": { "FERRY_HOST": d.host }, "exit_code": 0, "by_operator": true });
                    let text = format!("drain hook on {}: marked done by the operator (--hook-done)", d.host);
                    if let Err(e) = journal.event(run_id, None, EventKind::Message, &text, Some(&data)).await {
                        events.warn(format!("could not journal: {e}"));
                        return Ok(HostEnd::FAILED);
                    }
                    events.say(text);
                }
                Some(HookRecord::Begun) if !plan.hooks.rerun_hooks => {
                    note(format!(
                        "{}: its hook was interrupted when ferry stopped, and may have done part of its work: the VMs \
                         stay where they are. Once the hook's work is done, `ferry resume {run_id} --hook-done` brings \
                         them back; `ferry rollback {run_id}` returns them now; `rerun_hooks = true` in the plan's \
                         [hooks] runs an interrupted hook again",
                        d.host
                    ))
                    .await;
                    return Ok(HostEnd::FAILED);
                }
                // Not run yet, interrupted and safe to run again (rerun_hooks), or failed and
                // asked again (a roll resumed once its operator fixed the host).
                hook @ (None | Some(HookRecord::Begun) | Some(HookRecord::Ended(true))) => {
                    match hook {
                        Some(HookRecord::Begun) => {
                            note(format!(
                                "{}: its hook was interrupted when ferry stopped: running it again (rerun_hooks)",
                                d.host
                            ))
                            .await
                        }
                        Some(_) => note(format!("{}: its hook failed earlier: running it again", d.host)).await,
                        None => {}
                    }
                    if inventory.host(&d.host).is_none() {
                        note(format!(
                            "{} did not answer: it cannot be verified empty, so its hook did not run and nothing returns",
                            d.host
                        ))
                        .await;
                        return Ok(HostEnd::FAILED);
                    }
                    // The VMs that sit the maintenance out stay; no other may be there.
                    let left: Vec<String> = inventory
                        .vms_on(&d.host)
                        .filter(|v| !d.shut_down.contains(&v.name))
                        .map(|v| format!("{} ({})", v.name, v.state))
                        .collect();
                    if !left.is_empty() {
                        note(format!(
                        "{} is not empty ({}): its hook did not run and nothing returns; `ferry rollback {run_id}` returns the VMs that left",
                        d.host,
                        left.join(", ")
                    ))
                    .await;
                        return Ok(HostEnd::FAILED);
                    }
                    // Only once the host is known empty of the others, so that a host that keeps
                    // its hook back keeps these VMs running too.
                    let timeout = Duration::from_secs(plan.policy.shutdown_timeout_s);
                    if let Err(text) = maintenance::shut_down(driver, journal, run_id, d, inventory, timeout, events).await
                    {
                        note(format!("{text}: its hook did not run and nothing returns")).await;
                        // Those already shut down run again: the maintenance is not happening.
                        if let Err(text) = maintenance::start_again(driver, journal, run_id, d, events).await {
                            note(text).await;
                        }
                        return Ok(HostEnd::FAILED);
                    }
                    // On a simulated fleet the maintenance takes its time even without a command.
                    let simulated_only = simulated(driver, d).filter(|s| *s > 0.0).map(|_| SIMULATED_MAINTENANCE);
                    if let Some(command) = d.hook.as_deref().or(simulated_only) {
                        let gone: Vec<&str> = moves
                            .iter()
                            .filter(|m| m.source == d.host && m.status.is_success())
                            .map(|m| m.vm.as_str())
                            .collect();
                        let env =
                            vec![("FERRY_HOST".to_string(), d.host.clone()), ("FERRY_VMS".to_string(), gone.join(" "))];
                        let label = format!("drain hook on {}", d.host);
                        let timeout = Duration::from_secs(plan.hooks.timeout_s);
                        // Its intent first: a crash while it runs is then known, not taken for "never ran".
                        let begun = json!({ "hook": HOOK_BEGUN, "env": { "FERRY_HOST": d.host } });
                        let text = format!("{label}: starting `{command}`");
                        if let Err(e) = journal.event(run_id, None, EventKind::Message, &text, Some(&begun)).await {
                            note(format!("{}: its hook was not started: it could not be journaled ({e})", d.host)).await;
                            return Ok(HostEnd::FAILED);
                        }
                        events.say(text);
                        let ran = match simulated(driver, d) {
                            Some(seconds) => {
                                let ran = hooks::simulate(command, seconds).await;
                                let mut env = env;
                                env.push(("FERRY_RUN_ID".into(), run_id.into()));
                                hooks::journal_for_run(journal, run_id, "drain", &label, env, &ran, events).await;
                                ran
                            }
                            None => {
                                hooks::run_for_run(journal, lease, "drain", &label, command, env, timeout, events).await
                            }
                        };
                        if let Some(holder) = ran.lost_to {
                            return Err(Lost { run: run_id.to_string(), holder });
                        }
                        if let Some(by) = &ran.stopped_by {
                            note(format!(
                                "{}: its hook was stopped by {by}: nothing more happens in this run; the VMs stay where \
                                 they are; `ferry rollback {run_id}` returns them",
                                d.host
                            ))
                            .await;
                            return Ok(HostEnd { ok: false, returns: false, stop: true });
                        }
                        if !ran.ok() {
                            note(format!(
                                "{}: the hook failed: the VMs stay where they are; `ferry rollback {run_id}` returns them",
                                d.host
                            ))
                            .await;
                            return Ok(HostEnd::FAILED);
                        }
                    }
                }
            }
            if let Some(check) = d.check.as_ref().filter(|_| !check_passed(journaled, &d.host)) {
                if !run_check(journal, lease, &d.host, check, simulated(driver, d).is_some(), events).await? {
                    note(format!(
                        "{}: its check did not pass: the host stays drained and its VMs stay where they are",
                        d.host
                    ))
                    .await;
                    return Ok(HostEnd::FAILED);
                }
            }
            let mut ok = true;
            if let Err(text) = maintenance::start_again(driver, journal, run_id, d, events).await {
                ok = false;
                note(text).await;
            }
            Ok(HostEnd { ok, returns: d.return_after, stop: false })
    }))
    .await;
    let mut ok = true;
    let mut returning = Vec::new();
    for (d, end) in drains.iter().zip(ended) {
        let end = end?;
        if end.stop {
            return Ok(false);
        }
        ok &= end.ok;
        if end.returns {
            returning.push(d.host.clone());
        }
    }
    if returning.is_empty() || returned {
        return Ok(ok);
    }
    // Before the return starts: a lease lost during the checks above starts nothing.
    if let Err(JournalError::LeaseLost { holder, .. }) = lease.keep().await {
        return Err(Lost { run: run_id.to_string(), holder });
    }
    let origins: Vec<Origin> = moves
        .iter()
        .filter(|m| returning.contains(&m.source) && m.status != Status::PrecheckFailed)
        .map(|m| Origin { vm: m.vm.clone(), uuid: m.uuid.clone(), host: m.source.clone() })
        .collect();
    note(format!("returning the VMs of {} to where they were", returning.join(", "))).await;
    let request = rollback::Request {
        journal,
        driver: driver.clone(),
        clock,
        parent: Some(run_id.to_string()),
        undoes: run_id.to_string(),
        origins,
        cluster: cluster.clone(),
        policy: plan.policy.clone(),
        limits: plan.limits.clone(),
        dry_run: false,
    };
    // The return is a run of its own, under its own lease; the drain's is kept meanwhile, so
    // that a `ferry resume` of the drain does not take it while its VMs come back. (Not in a
    // simulation: its runs cannot be resumed, and its virtual clock runs on its events only.)
    let keeping = (!driver.is_sim()).then(|| tokio::spawn(keep(lease.clone())));
    let returned = rollback::roll_back(request, events).await;
    if let Some(keeping) = keeping {
        keeping.abort();
    }
    Ok(match returned {
        Ok(Returned::Ran { run, all_back }) => {
            note(format!(
                "return: run {run} {}",
                if all_back { "brought every VM back" } else { "did not bring every VM back" }
            ))
            .await;
            ok && all_back
        }
        Ok(_) => ok,
        Err(Error::Lost(lost)) => return Err(lost),
        Err(e) => {
            note(format!("the return could not start: {e}; `ferry rollback {run_id}` returns the VMs")).await;
            false
        }
    })
}

/// Keeps `lease` every second until it is lost or the task is aborted.
pub(crate) async fn keep(lease: Lease) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(JournalError::LeaseLost { .. }) = lease.keep().await {
            return;
        }
    }
}

/// How one drained host's part of [`after`] ended.
#[derive(Debug, Clone, Copy)]
struct HostEnd {
    /// Everything that had to happen did.
    ok: bool,
    /// Its VMs come back.
    returns: bool,
    /// The operator stopped its hook: nothing more happens in the run.
    stop: bool,
}

impl HostEnd {
    /// Its hook, check or shutdowns did not happen as they had to: its VMs stay away.
    const FAILED: HostEnd = HostEnd { ok: false, returns: false, stop: false };
}

/// How [`after`] runs.
#[derive(Debug, Clone, Copy)]
pub struct After {
    /// The run's clock (virtual in a simulation), for the return.
    pub clock: Clock,
    /// The operator says an interrupted hook's work is done (`ferry resume --hook-done`).
    pub hook_done: bool,
    /// A hook that failed runs again (a roll resumed after its operator fixed the host).
    pub retry_failed: bool,
}

/// How often a check that failed is tried again.
const CHECK_RETRY: Duration = Duration::from_secs(2);

/// What a simulated host's maintenance is called when the plan names no hook.
const SIMULATED_MAINTENANCE: &str = "(maintenance, hook_sim_s)";

/// The virtual time drain `d`'s hook takes when it is simulated rather than run (see
/// [`Drain::hook_sim_s`]).
fn simulated(driver: &AnyDriver, d: &Drain) -> Option<f64> {
    d.hook_sim_s.filter(|_| driver.is_sim())
}

/// Runs `check` for `host` until it passes or its time is up, journaling the result (the
/// attempts that failed before it passed are only counted). True when it passed. A
/// `simulated` check is not run: it passes at once.
async fn run_check(
    journal: &Journal,
    lease: &Lease,
    host: &str,
    check: &Check,
    simulated: bool,
    events: &Events,
) -> Result<bool, Lost> {
    let run_id = lease.run();
    let env = vec![
        ("FERRY_HOST".to_string(), host.to_string()),
        ("FERRY_RUN_ID".to_string(), run_id.to_string()),
        ("FERRY_HOOK".to_string(), CHECK.to_string()),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(check.timeout_s);
    events.say(format!("check of {host}: `{}`, for up to {} s", check.command, check.timeout_s));
    let mut attempts = 0;
    let ran = loop {
        attempts += 1;
        if simulated {
            break hooks::simulate(&check.command, 0.0).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_secs(1));
        let ran = hooks::run(&check.command, env.clone(), left, lease).await;
        if let Some(holder) = ran.lost_to {
            return Err(Lost { run: run_id.to_string(), holder });
        }
        if ran.ok() || tokio::time::Instant::now() + CHECK_RETRY >= deadline {
            break ran;
        }
        tokio::time::sleep(CHECK_RETRY).await;
    };
    let text = format!("check of {host}: {} (attempt {attempts})", ran.summary());
    events.say(&text);
    let mut data = ran.data(CHECK);
    data["env"] = json!({ "FERRY_HOST": host });
    data["attempts"] = json!(attempts);
    if let Err(e) = journal.event(run_id, None, EventKind::Message, &text, Some(&data)).await {
        events.warn(format!("could not journal the check of {host}: {e}"));
    }
    Ok(ran.ok())
}

/// The event data's `hook` of a drained host's check.
const CHECK: &str = "check";

/// Whether `host`'s check passed, as a run's `events` last say.
fn check_passed(events: &[ferry_journal::Event], host: &str) -> bool {
    events
        .iter()
        .rev()
        .filter_map(|e| e.data.as_ref())
        .find(|d| d["hook"] == CHECK && d["env"]["FERRY_HOST"] == Value::String(host.to_string()))
        .is_some_and(ended_well)
}

/// Whether a hook or check, as journaled ([`hooks::HookRun::data`]), exited 0 in time.
fn ended_well(data: &Value) -> bool {
    data["exit_code"] == 0 && data["timed_out"] != true && data["error"].is_null()
}

/// The event data's `hook` of a drain hook's intent, journaled before it runs.
const HOOK_BEGUN: &str = "drain-begun";

/// What the journal last says of a drained host's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookRecord {
    /// It was started and never ended: ferry stopped while it ran.
    Begun,
    /// It ended; `true` when it failed.
    Ended(bool),
}

/// The last record of `host`'s drain hook among a run's `events`.
fn last_hook(events: &[ferry_journal::Event], host: &str) -> Option<HookRecord> {
    events.iter().rev().find_map(|e| {
        let data = e.data.as_ref()?;
        if data["env"]["FERRY_HOST"] != Value::String(host.to_string()) {
            return None;
        }
        match data["hook"].as_str()? {
            HOOK_BEGUN => Some(HookRecord::Begun),
            "drain" => Some(HookRecord::Ended(!ended_well(data))),
            _ => None,
        }
    })
}

/// The return run of drain run `run_id` when one was started and has not ended (ferry
/// stopped while the VMs came back): `resume` finishes it before anything else.
pub async fn unfinished_return(journal: &Journal, run_id: &str) -> Option<String> {
    let runs = journal.runs().await.ok()?;
    runs.into_iter()
        .find(|r| r.parent.as_deref() == Some(run_id) && r.kind == RunKind::Rollback && !r.state.is_ended())
        .map(|r| r.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: serde_json::Value) -> ferry_journal::Event {
        ferry_journal::Event {
            id: 1,
            run: "r".into(),
            uuid: None,
            at_ms: 0,
            kind: EventKind::Message,
            message: String::new(),
            data: Some(data),
        }
    }

    #[test]
    fn a_hook_begun_and_never_ended_is_told_from_one_that_ran() {
        let begun = event(json!({ "hook": HOOK_BEGUN, "env": { "FERRY_HOST": "host-a" } }));
        let ended = |code: i64| {
            event(json!({ "hook": "drain", "env": { "FERRY_HOST": "host-a" }, "exit_code": code, "timed_out": false }))
        };
        let other_host = event(json!({ "hook": "drain", "env": { "FERRY_HOST": "host-b" }, "exit_code": 0 }));
        assert_eq!(last_hook(&[], "host-a"), None);
        assert_eq!(last_hook(std::slice::from_ref(&begun), "host-a"), Some(HookRecord::Begun));
        assert_eq!(last_hook(&[begun.clone(), other_host.clone()], "host-a"), Some(HookRecord::Begun));
        assert_eq!(last_hook(&[begun.clone(), ended(0)], "host-a"), Some(HookRecord::Ended(false)));
        assert_eq!(last_hook(&[begun.clone(), ended(3)], "host-a"), Some(HookRecord::Ended(true)));
        // Run again after an interruption (rerun_hooks): the latest record counts.
        assert_eq!(last_hook(&[begun.clone(), ended(3), begun], "host-a"), Some(HookRecord::Begun));
        assert_eq!(last_hook(&[other_host], "host-a"), None);
    }

    #[test]
    fn a_check_counts_as_passed_only_by_its_hosts_last_result() {
        let check = |host: &str, code: i64| {
            event(
                json!({ "hook": CHECK, "env": { "FERRY_HOST": host }, "exit_code": code, "timed_out": false, "error": null }),
            )
        };
        assert!(!check_passed(&[], "host-a"));
        assert!(check_passed(&[check("host-a", 0)], "host-a"));
        assert!(!check_passed(&[check("host-a", 0), check("host-a", 1)], "host-a"));
        assert!(check_passed(&[check("host-a", 1), check("host-a", 0), check("host-b", 1)], "host-a"));
        assert!(!check_passed(&[check("host-b", 0)], "host-a"));
    }
}
