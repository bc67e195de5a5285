//! Earlier copies on a move's target, settled just before the move prepares it.
//!
//! A move never overwrites a volume. When its target holds an unused copy of the VM's disk
//! that ferry left there (a source copy kept by an earlier move away: `ferry_back::stale`
//! says when ferry may claim one), the move refuses it by default, naming the command that
//! removes it; under `policy.stale_copies = "replace"` it deletes it, journaling the intent
//! before the deletion and the result after. A copy ferry cannot attribute fails the move
//! and is never touched. The driver's `delete_volume` checks again on the host that no
//! domain uses the volume.

use ferry_back::stale::{disks_in_use, earlier_copies, unused_copies, Departure, EarlierCopy, History};
use ferry_document::RunDocument;
use ferry_driver::Driver;
use ferry_journal::{EventKind, Journal, JournalError};
use ferry_plan::StaleCopies;
use ferry_preview::checks::removal_command;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::run::EngineEvent;
use crate::task::TaskInput;

/// Everything this journal knows of VM `uuid`'s moves: one [`Departure`] per run that moved
/// it, with whether that run kept source copies (from the run's plan; `None` when its
/// documents do not say). What `ferry preview` and each move attribute volumes with.
pub async fn departures(journal: &Journal, uuid: &str) -> Result<Vec<Departure>, JournalError> {
    let mut found = Vec::new();
    for run in journal.runs().await? {
        // A run that never had this VM has no move of it.
        let Ok(m) = journal.move_of(&run.id, uuid).await else { continue };
        let succeeded = m.status.is_success();
        let kept_copies = if succeeded {
            let stored = journal.run_documents(&run.id).await?;
            RunDocument::read(&run.id, &stored).ok().map(|(document, _)| document.keeps_source_copies())
        } else {
            None
        };
        found.push(Departure { run: run.id, from: m.source, succeeded, kept_copies, at_ms: run.created_ms });
    }
    Ok(found)
}

/// Clears the way on the target of `input`'s move, or says why the move must not start.
/// Asks the source first, of this VM alone: only a VM with host-local disks has copies,
/// and only when the target holds unused volumes of their names does it ask more (the
/// journal, the VM's metadata). A host that cannot list its volumes leaves the decision to
/// the driver, which refuses any volume in the way.
pub(crate) async fn settle<D: Driver>(
    driver: &D,
    journal: &Journal,
    events: &mpsc::UnboundedSender<EngineEvent>,
    input: &TaskInput,
) -> Result<(), String> {
    let (uuid, vm, to) = (&input.spec.uuid, &input.spec.vm, &input.to);
    let disks = match driver.volumes_of(&input.spec.from, uuid).await {
        Ok(at_source) => disks_in_use(uuid, &at_source),
        Err(e) => {
            debug!(%vm, "earlier copies not looked for: {e}");
            return Ok(());
        }
    };
    if disks.is_empty() {
        return Ok(());
    }
    let at_target = match driver.volumes(to).await {
        Ok(v) if v.iter().any(|v| v.used_by.is_empty()) => v,
        Ok(_) => return Ok(()),
        Err(e) => {
            debug!(%vm, "earlier copies not looked for: {e}");
            return Ok(());
        }
    };
    if unused_copies(&disks, &at_target).is_empty() {
        return Ok(());
    }
    let history = History {
        departures: departures(journal, uuid).await.map_err(|e| format!("journal: {e}"))?,
        metadata: driver.metadata(&input.spec.from, uuid).await.unwrap_or_default(),
    };
    let copies = earlier_copies(&disks, &at_target, &history);
    if let Some(copy) = copies.iter().find(|c| c.attribution.is_none()) {
        let v = &copy.volume;
        return Err(format!(
            "{}/{} on {to} has the name and size of {vm}'s disk, but ferry did not leave it there: ferry will not \
             touch it; remove it by hand once you know whose it is (`virsh vol-delete --pool {} {}` on {to}), or \
             choose another target",
            v.pool, v.name, v.pool, v.name
        ));
    }
    for copy in &copies {
        let EarlierCopy { volume: v, attribution } = copy;
        let why = attribution.as_ref().map(ToString::to_string).unwrap_or_default();
        let at = format!("{}/{} on {to}", v.pool, v.name);
        if input.policy.stale_copies == StaleCopies::Refuse {
            return Err(format!(
                "{at} is an earlier copy of {vm}'s disk ({why}); not overwritten: `{}` deletes it, or set \
                 policy.stale_copies = \"replace\"",
                removal_command(vm)
            ));
        }
        let data = json!({ "host": to, "pool": v.pool, "name": v.name, "attribution": attribution });
        let intent = format!(
            "deleting {at}, an earlier copy of {vm}'s disk ({why}), before preparing the target \
             (policy.stale_copies = replace)"
        );
        // Intent before effect: a deletion the journal cannot record does not happen.
        journal
            .event(&input.run_id, Some(uuid), EventKind::Message, &intent, Some(&data))
            .await
            .map_err(|e| format!("could not journal the deletion of {at}, so it was not done: {e}"))?;
        let _ = events.send(EngineEvent::Note(format!("{vm}: {intent}")));
        let result = driver.delete_volume(to, &v.pool, &v.name).await;
        let text = match &result {
            Ok(()) => format!("deleted {at}, the earlier copy of {vm}'s disk"),
            Err(e) => format!("could not delete {at}, the earlier copy of {vm}'s disk: {e}"),
        };
        if let Err(e) = journal.event(&input.run_id, Some(uuid), EventKind::Message, &text, Some(&data)).await {
            warn!(%vm, "could not journal the result of a deletion: {e}");
        }
        let _ = events.send(EngineEvent::Note(format!("{vm}: {text}")));
        result.map_err(|_| text)?;
    }
    Ok(())
}
