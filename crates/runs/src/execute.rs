//! Driving a journaled run's moves through the engine, with the plan's per-VM hooks.

use std::sync::{Arc, Mutex};

use ferry_driver::Driver;
use ferry_engine::{Clock, Command, Engine, MoveSpec, RunEnd, RunSettings};
use ferry_journal::Journal;
use ferry_model::ClusterSpec;
use ferry_plan::Plan;
use tokio::sync::mpsc;

use crate::events::{Error, Event, Events};
use crate::hooks::Hooked;
use crate::owners::{lease_for, Lost};

/// A run ready to go: the engine's inputs and the run's generation in the journal.
pub struct Drive<D> {
    /// The hosts, real or simulated.
    pub driver: Arc<D>,
    /// The journal holding the run.
    pub journal: Journal,
    /// The cluster file.
    pub cluster: ClusterSpec,
    /// Hosts and VMs now.
    pub inventory: ferry_model::Inventory,
    /// The run's settings.
    pub settings: RunSettings,
    /// Its moves.
    pub specs: Vec<MoveSpec>,
    /// The run's generation, to take its lease when this process does not hold it yet.
    pub generation: i64,
    /// The engine's clock: virtual time in a simulation.
    pub clock: Clock,
    /// The preview's makespan, s, when the run is driven from its start (the progress
    /// display's ETA starts from it); `None` for a resumed run.
    pub planned_s: Option<f64>,
}

impl<D: Driver> Drive<D> {
    /// Runs the engine under the run's lease (the one this process holds, or a claim of it
    /// at `generation`), telling its events between [`Event::Driving`] and
    /// [`Event::Driven`]. Each Ctrl-C sends the next of `interrupts` to the engine.
    pub async fn drive(self, interrupts: &[Command], events: &Events) -> Result<RunEnd, Error> {
        let run_id = self.settings.run_id.clone();
        let lease =
            lease_for(&self.journal, &run_id, self.generation, &self.settings.owner).await.map_err(Error::Failed)?;
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let interrupts = interrupts.to_vec();
        let listening = tokio::spawn(async move {
            for command in interrupts {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                let _ = command_tx.send(command);
            }
        });
        let vms = self.specs.iter().map(|s| (s.vm.clone(), s.memory_mib)).collect();
        events.emit(Event::Driving { run: run_id.clone(), vms, planned_s: self.planned_s });
        let telling = {
            let events = events.clone();
            tokio::spawn(async move {
                while let Some(event) = event_rx.recv().await {
                    events.emit(Event::Engine(event));
                }
            })
        };
        let engine = Engine::new(self.driver, self.journal, self.cluster, self.inventory, self.settings, self.specs)
            .with_clock(self.clock)
            .with_lease(lease);
        let end = engine.run(command_rx, event_tx).await;
        let _ = telling.await;
        listening.abort();
        let end = end.map_err(|e| match Lost::from_engine(&run_id, &e) {
            Some(lost) => Error::Lost(lost),
            None if e.journal_unreachable() => Error::Failed(format!(
                "run {run_id} stopped: the journal stopped answering ({e}); this ferry starts nothing more: \
                 migrations in flight go on in libvirt, and `ferry resume {run_id}` settles them and finishes the \
                 run once the journal answers"
            )),
            None => Error::Failed(format!("run {run_id} stopped: {e}; `ferry resume {run_id}` finishes it")),
        })?;
        events.emit(Event::Driven { run: run_id });
        Ok(end)
    }
}

/// Runs the engine with the plan's per-VM hooks; Ctrl-C once stops starting moves, twice
/// aborts running ones. True when every move succeeded and no hook failed under `fail`.
pub async fn execute<D: Driver>(run: Drive<D>, plan: &Plan, events: &Events) -> Result<bool, Error> {
    let Drive { driver, journal, cluster, inventory, settings, specs, generation, clock, planned_s } = run;
    let run_id = settings.run_id.clone();
    let lease = lease_for(&journal, &run_id, generation, &settings.owner).await.map_err(Error::Failed)?;
    let failed = Arc::new(Mutex::new(None));
    let uuids: Vec<(String, String)> = specs.iter().map(|s| (s.uuid.clone(), s.vm.clone())).collect();
    let hooked = Hooked::new(driver, plan, &uuids, journal.clone(), lease, failed.clone(), events.clone());
    let run =
        Drive { driver: Arc::new(hooked), journal, cluster, inventory, settings, specs, generation, clock, planned_s };
    let end = run.drive(&[Command::Stop, Command::Abort], events).await?;
    events.emit(Event::Finished { run: run_id, end: end.clone() });
    let hook_failed = failed.lock().map(|f| f.is_some()).unwrap_or(true);
    Ok(end.moves.iter().all(|m| m.status.is_success()) && !hook_failed)
}
