//! A move's saga steps, kept as events: a step's intent is written before its effect and its
//! result after, and the latest record of each step says what may have happened.

use ferry_model::{Step, StepRecord, StepState};
use serde_json::{json, Value};

use crate::records::EventKind;
use crate::{Journal, Result};

impl Journal {
    /// Records that attempt `attempt` of VM `uuid` is about to do `step`. The caller acts
    /// only once this returned: a step not journaled is never done. Fenced: a handle whose
    /// lease on the run was taken by another process is refused (`LeaseLost`).
    pub async fn begin_step(&self, run: &str, uuid: &str, attempt: u32, step: &Step) -> Result<()> {
        let data = step_data(attempt, step, StepState::Begun);
        let message = format!("about to {step}");
        self.fenced_event(run, Some(uuid), EventKind::Step, &message, Some(&data)).await.map(drop)
    }

    /// Records how a step begun with [`Journal::begin_step`] ended; `note` says more (why it
    /// failed, what it did).
    pub async fn end_step(
        &self,
        run: &str,
        uuid: &str,
        attempt: u32,
        step: &Step,
        state: StepState,
        note: &str,
    ) -> Result<()> {
        let data = step_data(attempt, step, state);
        let verb = match state {
            StepState::Begun => "about to",
            StepState::Done => "did:",
            StepState::Failed => "failed to",
        };
        let message = if note.is_empty() { format!("{verb} {step}") } else { format!("{verb} {step}: {note}") };
        self.event(run, Some(uuid), EventKind::Step, &message, Some(&data)).await.map(drop)
    }

    /// VM `uuid`'s steps in run `run`, each with its latest state, in the order they were
    /// first begun.
    pub async fn steps(&self, run: &str, uuid: &str) -> Result<Vec<StepRecord>> {
        let events = self.events(run, Some(uuid)).await?;
        let mut steps: Vec<StepRecord> = Vec::new();
        for event in events.iter().filter(|e| e.kind == EventKind::Step) {
            let Some(record) = event.data.as_ref().and_then(record_of) else { continue };
            // A step done again later (a second attempt's, or an undo's) is a new record.
            match steps.iter_mut().rev().find(|s| s.attempt == record.attempt && s.step == record.step) {
                Some(last) if last.state == StepState::Begun => last.state = record.state,
                _ => steps.push(record),
            }
        }
        Ok(steps)
    }
}

fn step_data(attempt: u32, step: &Step, state: StepState) -> Value {
    json!({ "attempt": attempt, "step": step, "state": state })
}

fn record_of(data: &Value) -> Option<StepRecord> {
    Some(StepRecord {
        attempt: u32::try_from(data.get("attempt")?.as_u64()?).ok()?,
        step: serde_json::from_value(data.get("step")?.clone()).ok()?,
        state: serde_json::from_value(data.get("state")?.clone()).ok()?,
    })
}
