//! The steps of a move that the engine does itself, each journaled before its effect and
//! after it: creating the target's volumes, removing them again when the move does not
//! complete, finalizing a verified move (metadata, source copies when the policy deletes
//! them), and journaling the steps a cold move's driver asks for. Only what this move's
//! journal records as created is ever deleted by it.

use std::time::Duration;

use ferry_driver::{Driver, DriverError, ErrorKind, MoveRequest, StepEvent, TargetVolume, VolumeCopy};
use ferry_journal::Journal;
use ferry_model::{Metadata, Phase, Step, StepRecord, StepState};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

/// Why creating the target's volumes failed: the driver's kind of failure (`Other` when the
/// journal refused the step) and its message. The kind decides whether to retry.
#[derive(Debug)]
pub(crate) struct StepFailure {
    pub kind: ErrorKind,
    pub message: String,
}

/// One move's attempt as far as its steps are concerned: where they are journaled.
#[derive(Clone)]
pub(crate) struct Steps {
    pub journal: Journal,
    pub run_id: String,
    pub uuid: String,
    pub vm: String,
    pub attempt: u32,
}

impl Steps {
    /// Journals `step`'s intent, then lets a test freeze here (`FERRY_FAILPOINT=STEP:VM`):
    /// a kill there leaves the intent without the effect.
    pub async fn begin(&self, step: &Step) -> Result<(), String> {
        self.journal
            .begin_step(&self.run_id, &self.uuid, self.attempt, step)
            .await
            .map_err(|e| format!("could not journal \"{step}\" before doing it: {e}"))?;
        crate::failpoint::reach(step.name(), &self.vm).await;
        Ok(())
    }

    /// Journals how `step` ended. A failure here is only logged: the effect happened or not
    /// regardless, and recovery treats a step begun as one that may have happened.
    pub async fn end(&self, step: &Step, result: &Result<String, String>) {
        let (state, note) = match result {
            Ok(done) => (StepState::Done, done.as_str()),
            Err(e) => (StepState::Failed, e.as_str()),
        };
        if let Err(e) = self.journal.end_step(&self.run_id, &self.uuid, self.attempt, step, state, note).await {
            warn!(uuid = %self.uuid, "could not journal the end of \"{step}\": {e}");
        }
    }

    /// Creates each volume the move needs on its target, each journaled first. On a
    /// failure, deletes those it created and says why.
    pub async fn create_volumes<D: Driver>(
        &self,
        driver: &D,
        needed: &[TargetVolume],
    ) -> Result<Vec<VolumeCopy>, StepFailure> {
        let mut copies = Vec::new();
        for volume in needed {
            let step =
                Step::CreateVolume { host: volume.host.clone(), pool: volume.pool.clone(), name: volume.name.clone() };
            let created = match self.begin(&step).await {
                Ok(()) => {
                    driver.create_volume(volume).await.map_err(|e| StepFailure { kind: e.kind, message: e.to_string() })
                }
                Err(message) => Err(StepFailure { kind: ErrorKind::Other, message }),
            };
            let result = created.as_ref().map(|path| format!("created {path}")).map_err(|e| e.message.clone());
            self.end(&step, &result).await;
            match created {
                Ok(target_path) => copies.push(VolumeCopy { volume: volume.clone(), target_path }),
                Err(e) => {
                    let _ = self.delete_copies(driver, &copies).await;
                    return Err(e);
                }
            }
        }
        Ok(copies)
    }

    /// Deletes the volumes this attempt created on the target (the move did not complete);
    /// returns what it did, in words. The driver refuses a volume a domain uses.
    pub async fn delete_copies<D: Driver>(&self, driver: &D, copies: &[VolumeCopy]) -> Vec<String> {
        let mut said = Vec::new();
        for copy in copies.iter().rev() {
            let (host, pool, name) = (&copy.volume.host, &copy.volume.pool, &copy.volume.name);
            said.push(self.delete_volume(driver, host, pool, name).await);
        }
        said
    }

    /// Deletes one volume, journaled; returns what happened, in words.
    pub async fn delete_volume<D: Driver>(&self, driver: &D, host: &str, pool: &str, name: &str) -> String {
        let step = Step::DeleteVolume { host: host.into(), pool: pool.into(), name: name.into() };
        let result = match self.begin(&step).await {
            Ok(()) => delete_when_free(driver, host, pool, name)
                .await
                .map(|()| format!("deleted {name} from pool {pool} on {host}"))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        self.end(&step, &result).await;
        result.unwrap_or_else(|e| format!("kept {name} in pool {pool} on {host}: {e}"))
    }

    /// The last steps of a verified move: ferry's metadata on the target says finalized, and
    /// the source's copies of the disks this move copied are deleted when `delete_source`.
    /// Returns what it did, in words, and the deleted paths.
    pub async fn finalize<D: Driver>(&self, driver: &D, request: &MoveRequest) -> (Vec<String>, Vec<String>) {
        let mut said = Vec::new();
        let finalized = Metadata {
            run_id: request.run_id.clone(),
            original_host: request.from.clone(),
            phase: Phase::Finalized,
            claim: None,
        };
        if let Err(e) = driver.set_metadata(&request.to, &request.vm, Some(&finalized)).await {
            said.push(format!("could not record the finalized phase on {}: {e}", request.to));
        }
        let mut deleted = Vec::new();
        if request.delete_source_volumes {
            for copy in &request.copies {
                let (pool, name) = (&copy.volume.pool, &copy.volume.name);
                let done = self.delete_volume(driver, &request.from, pool, name).await;
                if done.starts_with("deleted") {
                    deleted.push(copy.volume.source_path.clone());
                }
                said.push(done);
            }
        }
        (said, deleted)
    }

    /// Journals each step a cold move's driver asks for until the move ends (the gate's
    /// sender is dropped). A step that cannot be journaled is refused: the driver does not do
    /// it. `switched_over` hears when the VM started on `target`.
    pub async fn gate(
        self,
        mut asks: mpsc::UnboundedReceiver<StepEvent>,
        target: String,
        switched_over: mpsc::UnboundedSender<()>,
    ) {
        while let Some(event) = asks.recv().await {
            match event {
                StepEvent::Before(step, answer) => {
                    let journaled = self.begin(&step).await;
                    if let Err(e) = &journaled {
                        warn!(uuid = %self.uuid, "{e}");
                    }
                    let _ = answer.send(journaled.is_ok());
                }
                StepEvent::After(step, result) => {
                    self.end(&step, &result).await;
                    if result.is_ok() && matches!(&step, Step::Start { host } if *host == target) {
                        let _ = switched_over.send(());
                    }
                }
            }
        }
    }
}

/// How long a deletion refused as a conflict is tried again: libvirt holds a migration's
/// source domain for its teardown (up to 2 s where init reaps QEMU late, longer on a busy
/// host), and while it does, no domain there may be judged not to use the volume.
const DELETE_PATIENCE: Duration = Duration::from_secs(20);

/// Deletes a volume, trying again while the host refuses it as a conflict (a domain's
/// definition locked for a moment, or the volume in use) for up to [`DELETE_PATIENCE`].
async fn delete_when_free<D: Driver>(driver: &D, host: &str, pool: &str, name: &str) -> Result<(), DriverError> {
    let started = Instant::now();
    loop {
        match driver.delete_volume(host, pool, name).await {
            Err(e) if e.kind == ErrorKind::Conflict && started.elapsed() < DELETE_PATIENCE => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// The steps of attempt `attempt` among a move's.
pub(crate) fn of_attempt(steps: &[StepRecord], attempt: u32) -> Vec<StepRecord> {
    steps.iter().filter(|s| s.attempt == attempt).cloned().collect()
}
