//! The simulator behind ferry's [`Driver`] trait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ferry_driver::{
    ColdOptions, Control, Driver, DriverError, ErrorKind, LiveOptions, Migration, MoveError, MoveReport, MoveRequest,
    Progress, ShutDown, StepGate, TargetVolume, Volume,
};
use ferry_model::{ClusterSpec, Inventory, Location, Metadata};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::fleet::Fleet;
use crate::world::{Nanos, World, PREPARE_S};

/// A simulated fleet as a [`Driver`]: inventory, live and cold moves, metadata and jobs, all
/// in the simulator's world, in tokio's time.
///
/// Create it inside a tokio runtime: a task of its own wakes the world at each event. On a
/// runtime whose time is paused (`start_paused`), time jumps from event to event, so a run
/// of hours takes as long as its events take to compute; the same fleet, seed and calls in
/// the same order give the same results, sample for sample.
#[derive(Clone)]
pub struct SimDriver {
    shared: Arc<Shared>,
    cluster: Arc<ClusterSpec>,
}

struct Shared {
    world: Mutex<World>,
    epoch: Instant,
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the clock task see that the world is gone.
        self.wake.notify_one();
    }
}

impl std::fmt::Debug for SimDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDriver").field("hosts", &self.cluster.hosts.len()).finish()
    }
}

impl SimDriver {
    /// The simulation of `fleet`, starting now (in tokio's time). Call inside a tokio
    /// runtime.
    pub fn new(fleet: &Fleet) -> SimDriver {
        let wake = Arc::new(Notify::new());
        let shared =
            Arc::new(Shared { world: Mutex::new(World::new(fleet)), epoch: Instant::now(), wake: wake.clone() });
        tokio::spawn(clock(Arc::downgrade(&shared), wake, shared.epoch));
        SimDriver { shared, cluster: Arc::new(fleet.cluster()) }
    }

    /// The fleet's hosts as a cluster.
    pub fn cluster(&self) -> &ClusterSpec {
        &self.cluster
    }

    /// Each running VM's dirty rate among `uuids`, MiB/s, as a measurement would find it (at
    /// once); the others with why not.
    pub fn measure_dirty_rates(&self, uuids: &[String]) -> (HashMap<String, f64>, HashMap<String, String>) {
        self.world().dirty_rates(uuids)
    }

    /// The world, advanced to now.
    fn world(&self) -> MutexGuard<'_, World> {
        let mut world = self.shared.world.lock().unwrap_or_else(|e| e.into_inner());
        world.advance(since(self.shared.epoch));
        world
    }
}

/// A live migration being prepared, cancelled when dropped.
struct Preparing<'a> {
    driver: &'a SimDriver,
    id: u64,
}

impl Drop for Preparing<'_> {
    fn drop(&mut self) {
        self.driver.world().cancel_prepared(self.id);
    }
}

fn since(epoch: Instant) -> Nanos {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Wakes the world at its next event, or when a call changed it.
async fn clock(shared: Weak<Shared>, wake: Arc<Notify>, epoch: Instant) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else { return };
            let mut world = shared.world.lock().unwrap_or_else(|e| e.into_inner());
            world.advance(since(epoch));
            world.next_event()
        };
        match next {
            Some(at) => {
                tokio::select! {
                    biased;
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep_until(epoch + Duration::from_nanos(at)) => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl Driver for SimDriver {
    async fn inventory(&self) -> Inventory {
        self.world().inventory()
    }

    async fn locate(&self, vm: &str) -> Result<Vec<Location>, DriverError> {
        // The world fails a locate only for a host that is down.
        self.world()
            .locate(vm)
            .map_err(|(host, message)| DriverError::new(host, "locate", ErrorKind::Unreachable, message))
    }

    /// The simulator keeps no volume objects (see `World::volumes`): a move accounts for its
    /// VM's disk itself (its copy's time on the links, the report's created and deleted
    /// volumes), so none is planned for the engine to create.
    async fn plan_volumes(&self, _request: &MoveRequest) -> Result<Vec<TargetVolume>, MoveError> {
        Ok(Vec::new())
    }

    async fn create_volume(&self, volume: &TargetVolume) -> Result<String, DriverError> {
        Err(DriverError::new(&volume.host, "create a volume", ErrorKind::Refused, "the simulator keeps no volumes"))
    }

    async fn migrate_live(&self, request: MoveRequest, options: LiveOptions) -> Result<Migration, MoveError> {
        let id = self.world().prepare_live(&request, &options)?;
        // Dropped before the job starts (the caller gave up): the preparation is undone.
        let preparing = Preparing { driver: self, id };
        tokio::time::sleep(Duration::from_secs_f64(PREPARE_S)).await;
        std::mem::forget(preparing);
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let (controls, mut control_rx) = mpsc::unbounded_channel::<Control>();
        let (outcome_tx, outcome) = oneshot::channel();
        let (said_tx, said) = mpsc::unbounded_channel();
        self.world().start_job(id, progress_tx, said_tx, outcome_tx)?;
        self.shared.wake.notify_one();
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            while let Some(control) = control_rx.recv().await {
                let Some(shared) = shared.upgrade() else { return };
                {
                    let mut world = shared.world.lock().unwrap_or_else(|e| e.into_inner());
                    world.advance(since(shared.epoch));
                    world.control(id, &control);
                }
                shared.wake.notify_one();
            }
        });
        Ok(Migration { progress, controls, outcome, said })
    }

    /// The world moves the VM through its stages by itself; a simulated run is never resumed,
    /// so its steps are not journaled one by one.
    async fn move_cold(
        &self,
        request: MoveRequest,
        options: ColdOptions,
        _steps: StepGate,
    ) -> Result<MoveReport, MoveError> {
        let (outcome_tx, outcome) = oneshot::channel();
        self.world().start_cold(&request, &options, outcome_tx)?;
        self.shared.wake.notify_one();
        outcome
            .await
            .unwrap_or_else(|_| Err(MoveError::init(ErrorKind::Internal, "the simulation ended before the move")))
    }

    async fn idle_cpus(&self, host: &str) -> Result<f64, DriverError> {
        self.world().idle_cpus(host)
    }

    async fn metadata(&self, host: &str, vm: &str) -> Result<Option<Metadata>, DriverError> {
        self.world().metadata(host, vm)
    }

    async fn set_metadata(&self, host: &str, vm: &str, metadata: Option<&Metadata>) -> Result<(), DriverError> {
        self.world().set_metadata(host, vm, metadata)
    }

    async fn job(&self, host: &str, vm: &str) -> Result<Option<Progress>, DriverError> {
        self.world().job(host, vm)
    }

    async fn abort_job(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        let result = self.world().abort_job(host, vm);
        self.shared.wake.notify_one();
        result
    }

    async fn start(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        self.world().start_vm(host, vm)
    }

    /// At once: a simulated guest shuts down when asked.
    async fn shut_down(&self, host: &str, vm: &str, _timeout: Duration) -> Result<ShutDown, DriverError> {
        let was_running = self.world().stop_vm(host, vm)?;
        let how = if was_running { "shut down by the guest" } else { "shut off already" };
        Ok(ShutDown { was_running, how: how.to_string() })
    }

    async fn volumes(&self, host: &str) -> Result<Vec<Volume>, DriverError> {
        self.world().volumes(host)
    }
}
