//! VMs that sit a drained host's maintenance out (a roll's `maintenance = "shutdown"`): shut
//! down on their host before its hook, started again there once its check passed. Each step
//! is journaled before it is done and again once done, so that a resumed run knows which
//! VMs ferry shut down: only those are started again, never one that was off already.

use std::time::Duration;

use ferry_driver::Driver;
use ferry_journal::{Event, EventKind, Journal};
use ferry_model::{Inventory, VmState};
use ferry_plan::Drain;
use serde::{Deserialize, Serialize};

use crate::drivers::AnyDriver;
use crate::events::Events;

/// The event data's key of a journaled step.
const KEY: &str = "maintenance";

/// One journaled step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    step: Step,
    host: String,
    vm: String,
    uuid: String,
    /// `false` before the step, `true` once done.
    done: bool,
    /// A shutdown done: whether the VM was running (false: nothing was done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    was_running: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Step {
    ShutDown,
    Start,
}

/// Shuts down the VMs of `drain.host` named in `drain.shut_down` that `inventory` finds
/// running there, each given `timeout` before it is powered off. An error names the VM
/// that could not be shut down, or whose step could not be journaled: then the host is not
/// empty, and its hook must not run.
pub(crate) async fn shut_down(
    driver: &AnyDriver,
    journal: &Journal,
    run_id: &str,
    drain: &Drain,
    inventory: &Inventory,
    timeout: Duration,
    events: &Events,
) -> Result<(), String> {
    let staying = inventory.vms_on(&drain.host).filter(|v| drain.shut_down.contains(&v.name));
    for vm in staying.filter(|v| v.state != VmState::ShutOff) {
        let mut record = Record {
            step: Step::ShutDown,
            host: drain.host.clone(),
            vm: vm.name.clone(),
            uuid: vm.uuid.clone(),
            done: false,
            was_running: None,
        };
        let what = format!("{} on {}: shut down for the host's maintenance", vm.name, drain.host);
        journal_step(journal, run_id, &format!("{what}: begun"), &record).await?;
        let ended = driver.shut_down(&drain.host, &vm.uuid, timeout).await.map_err(|e| format!("{what}: {e}"))?;
        record.done = true;
        record.was_running = Some(ended.was_running);
        let text = format!("{what}: {}", ended.how);
        journal_step(journal, run_id, &text, &record).await?;
        events.say(text);
    }
    Ok(())
}

/// Starts again, on `drain.host`, every VM that ferry shut down there for the maintenance
/// (as run `run_id`'s journal says) and has not started again yet.
pub(crate) async fn start_again(
    driver: &AnyDriver,
    journal: &Journal,
    run_id: &str,
    drain: &Drain,
    events: &Events,
) -> Result<(), String> {
    if drain.shut_down.is_empty() {
        return Ok(());
    }
    let journaled =
        journal.events(run_id, None).await.map_err(|e| format!("{}: the journal cannot be read: {e}", drain.host))?;
    for (vm, uuid) in shut_by_ferry(&journaled, &drain.host) {
        let mut record = Record {
            step: Step::Start,
            host: drain.host.clone(),
            vm: vm.clone(),
            uuid: uuid.clone(),
            done: false,
            was_running: None,
        };
        let what = format!("{vm} on {}: started again after the host's maintenance", drain.host);
        journal_step(journal, run_id, &format!("{what}: begun"), &record).await?;
        driver
            .start(&drain.host, &uuid)
            .await
            .map_err(|e| format!("{vm} on {}: could not start again: {e}", drain.host))?;
        record.done = true;
        journal_step(journal, run_id, &what, &record).await?;
        events.say(what);
    }
    Ok(())
}

/// The VMs (name, UUID) ferry shut down on `host` and has not started again: a shutdown
/// begun whose end is not journaled counts (it may have happened), one that found the VM
/// off already does not.
fn shut_by_ferry(journaled: &[Event], host: &str) -> Vec<(String, String)> {
    let records: Vec<Record> = journaled
        .iter()
        .filter_map(|e| e.data.as_ref()?.get(KEY))
        .filter_map(|r| serde_json::from_value::<Record>(r.clone()).ok())
        .filter(|r| r.host == host)
        .collect();
    let mut shut: Vec<(String, String)> = Vec::new();
    for r in &records {
        let pair = (r.vm.clone(), r.uuid.clone());
        match (r.step, r.done, r.was_running) {
            (Step::ShutDown, false, _) if !shut.contains(&pair) => shut.push(pair),
            (Step::ShutDown, true, Some(false)) | (Step::Start, true, _) => shut.retain(|p| *p != pair),
            _ => {}
        }
    }
    shut
}

async fn journal_step(journal: &Journal, run_id: &str, text: &str, record: &Record) -> Result<(), String> {
    let data = serde_json::json!({ KEY: record });
    journal
        .event(run_id, None, EventKind::Message, text, Some(&data))
        .await
        .map(drop)
        .map_err(|e| format!("{text}: not done, it could not be journaled ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(record: &Record) -> Event {
        Event {
            id: 0,
            run: "r".into(),
            uuid: None,
            at_ms: 0,
            kind: EventKind::Message,
            message: String::new(),
            data: Some(serde_json::json!({ KEY: record })),
        }
    }

    fn step(step: Step, vm: &str, done: bool, was_running: Option<bool>) -> Record {
        Record { step, host: "h1".into(), vm: vm.into(), uuid: format!("u-{vm}"), done, was_running }
    }

    #[test]
    fn only_what_ferry_shut_down_and_did_not_start_again_is_started() {
        let journaled: Vec<Event> = [
            step(Step::ShutDown, "db-1", false, None),
            step(Step::ShutDown, "db-1", true, Some(true)),
            // Off already: ferry did nothing, and starts nothing.
            step(Step::ShutDown, "off-1", false, None),
            step(Step::ShutDown, "off-1", true, Some(false)),
            // Begun, then ferry died: it may be off because of ferry.
            step(Step::ShutDown, "db-2", false, None),
            // Started again already.
            step(Step::ShutDown, "db-3", false, None),
            step(Step::ShutDown, "db-3", true, Some(true)),
            step(Step::Start, "db-3", false, None),
            step(Step::Start, "db-3", true, None),
        ]
        .iter()
        .map(event)
        .collect();
        let names: Vec<String> = shut_by_ferry(&journaled, "h1").into_iter().map(|(vm, _)| vm).collect();
        assert_eq!(names, ["db-1", "db-2"]);
        assert!(shut_by_ferry(&journaled, "h2").is_empty());
    }
}
