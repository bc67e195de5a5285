//! The driver a command runs on: libvirt for real hosts, the simulator for a fleet given as
//! `--cluster sim:FILE`. Commands are written once, against [`AnyDriver`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_driver::{
    ColdOptions, Driver, DriverError, LiveOptions, Migration, MoveError, MoveReport, MoveRequest, Progress, ShutDown,
    StepGate, TargetVolume, Volume,
};
use ferry_engine::Clock;
use ferry_journal::JournalClock;
use ferry_libvirt::LibvirtDriver;
use ferry_model::{Inventory, Location, Metadata};
use ferry_sim::SimDriver;

use crate::cluster::Cluster;

/// Either driver.
#[derive(Debug, Clone)]
pub enum AnyDriver {
    /// Real hosts.
    Libvirt(LibvirtDriver),
    /// A simulated fleet, in virtual time.
    Sim(SimDriver),
}

/// The owner a simulated run is journaled under: the same every time, so that the same
/// simulation writes the same journal.
pub const SIM_OWNER: &str = "simulation";

impl AnyDriver {
    /// The driver of `cluster`. A simulated fleet starts its virtual clock now: call inside
    /// the runtime that runs the command (on virtual time, see `ferry_sim::runtime`).
    pub fn new(cluster: &Cluster) -> AnyDriver {
        match cluster {
            Cluster::Hosts(spec) => AnyDriver::Libvirt(LibvirtDriver::new(spec.clone())),
            Cluster::Sim(fleet) => AnyDriver::Sim(SimDriver::new(fleet)),
        }
    }

    /// How fast each VM in `uuids` dirties memory, MiB/s, measured over `seconds` (at once
    /// and exactly in a simulation); the VMs that could not be measured, with why.
    pub async fn measure_dirty_rates(
        &self,
        uuids: Vec<String>,
        seconds: u32,
    ) -> (HashMap<String, f64>, HashMap<String, String>) {
        match self {
            AnyDriver::Libvirt(d) => d.measure_dirty_rates(uuids, seconds).await,
            AnyDriver::Sim(d) => d.measure_dirty_rates(&uuids),
        }
    }

    /// Sets the operators' tags of VM `vm` on `host` (`ferry tag`): real hosts only, whose
    /// domains keep them in their metadata.
    pub async fn set_tags(
        &self,
        host: &str,
        vm: &str,
        tags: std::collections::BTreeMap<String, String>,
    ) -> Result<(), DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.set_tags(host, vm, tags).await,
            AnyDriver::Sim(_) => Err(DriverError::new(
                host,
                "write tags",
                ferry_driver::ErrorKind::Other,
                "a simulated fleet keeps no tags",
            )),
        }
    }

    /// Whether measuring dirty rates costs nothing (a simulation knows them).
    pub fn is_sim(&self) -> bool {
        matches!(self, AnyDriver::Sim(_))
    }
}

/// A cluster's driver and the clock of the runs on it, made once per command: a simulated
/// world and its virtual time go on from one run to the next (a roll's waves).
#[derive(Debug, Clone)]
pub struct Session {
    /// The driver.
    pub driver: Arc<AnyDriver>,
    /// The engine's clock: wall time, or the simulation's virtual time.
    pub clock: Clock,
}

impl Session {
    /// The session of `cluster`, its virtual clock (for a simulation) starting now.
    pub fn new(cluster: &Cluster) -> Session {
        Session { driver: Arc::new(AnyDriver::new(cluster)), clock: clocks(cluster).0 }
    }
}

/// What a simulated fleet declares of its VMs' memory, for the estimates; nothing for real
/// hosts.
pub fn memory_profiles(cluster: &Cluster) -> HashMap<String, ferry_preview::MemoryProfile> {
    match cluster {
        Cluster::Hosts(_) => HashMap::new(),
        Cluster::Sim(fleet) => fleet.memory_profiles(),
    }
}

/// The clocks of a command: the engine's and the journal's. Wall clock for real hosts; for a
/// simulation, virtual time from the fleet's start instant.
pub fn clocks(cluster: &Cluster) -> (Clock, JournalClock) {
    match cluster {
        Cluster::Hosts(_) => (Clock::system(), JournalClock::System),
        Cluster::Sim(fleet) => {
            let unix = fleet.start_unix();
            (Clock::starting_at(unix as f64), JournalClock::Virtual { unix_ms: unix * 1000 })
        }
    }
}

impl Driver for AnyDriver {
    async fn inventory(&self) -> Inventory {
        match self {
            AnyDriver::Libvirt(d) => d.inventory().await,
            AnyDriver::Sim(d) => d.inventory().await,
        }
    }

    async fn locate(&self, vm: &str) -> Result<Vec<Location>, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.locate(vm).await,
            AnyDriver::Sim(d) => d.locate(vm).await,
        }
    }

    async fn plan_volumes(&self, request: &MoveRequest) -> Result<Vec<TargetVolume>, MoveError> {
        match self {
            AnyDriver::Libvirt(d) => d.plan_volumes(request).await,
            AnyDriver::Sim(d) => d.plan_volumes(request).await,
        }
    }

    async fn create_volume(&self, volume: &TargetVolume) -> Result<String, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.create_volume(volume).await,
            AnyDriver::Sim(d) => d.create_volume(volume).await,
        }
    }

    async fn migrate_live(&self, request: MoveRequest, options: LiveOptions) -> Result<Migration, MoveError> {
        match self {
            AnyDriver::Libvirt(d) => d.migrate_live(request, options).await,
            AnyDriver::Sim(d) => d.migrate_live(request, options).await,
        }
    }

    async fn move_cold(
        &self,
        request: MoveRequest,
        options: ColdOptions,
        steps: StepGate,
    ) -> Result<MoveReport, MoveError> {
        match self {
            AnyDriver::Libvirt(d) => d.move_cold(request, options, steps).await,
            AnyDriver::Sim(d) => d.move_cold(request, options, steps).await,
        }
    }

    async fn start(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.start(host, vm).await,
            AnyDriver::Sim(d) => d.start(host, vm).await,
        }
    }

    async fn shut_down(&self, host: &str, vm: &str, timeout: Duration) -> Result<ShutDown, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.shut_down(host, vm, timeout).await,
            AnyDriver::Sim(d) => d.shut_down(host, vm, timeout).await,
        }
    }

    async fn metadata(&self, host: &str, vm: &str) -> Result<Option<Metadata>, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.metadata(host, vm).await,
            AnyDriver::Sim(d) => d.metadata(host, vm).await,
        }
    }

    async fn set_metadata(&self, host: &str, vm: &str, metadata: Option<&Metadata>) -> Result<(), DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.set_metadata(host, vm, metadata).await,
            AnyDriver::Sim(d) => d.set_metadata(host, vm, metadata).await,
        }
    }

    async fn job(&self, host: &str, vm: &str) -> Result<Option<Progress>, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.job(host, vm).await,
            AnyDriver::Sim(d) => d.job(host, vm).await,
        }
    }

    async fn abort_job(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.abort_job(host, vm).await,
            AnyDriver::Sim(d) => d.abort_job(host, vm).await,
        }
    }

    async fn volumes(&self, host: &str) -> Result<Vec<Volume>, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.volumes(host).await,
            AnyDriver::Sim(d) => d.volumes(host).await,
        }
    }

    async fn volumes_of(&self, host: &str, uuid: &str) -> Result<Vec<Volume>, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.volumes_of(host, uuid).await,
            AnyDriver::Sim(d) => d.volumes_of(host, uuid).await,
        }
    }

    async fn delete_volume(&self, host: &str, pool: &str, name: &str) -> Result<(), DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.delete_volume(host, pool, name).await,
            AnyDriver::Sim(d) => d.delete_volume(host, pool, name).await,
        }
    }

    async fn idle_cpus(&self, host: &str) -> Result<f64, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.idle_cpus(host).await,
            AnyDriver::Sim(d) => d.idle_cpus(host).await,
        }
    }

    async fn remove_copy(&self, host: &str, vm: &str) -> Result<String, DriverError> {
        match self {
            AnyDriver::Libvirt(d) => d.remove_copy(host, vm).await,
            AnyDriver::Sim(d) => d.remove_copy(host, vm).await,
        }
    }
}
