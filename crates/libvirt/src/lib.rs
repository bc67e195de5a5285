//! ferry's libvirt driver: the [`Driver`] trait against real hosts through libvirt's C API
//! (the `virt` crate). Every libvirt call blocks, so each runs on a blocking thread.
//!
//! Live moves are peer-to-peer, persistent on the target, undefined on the source, with the
//! same UUID, bound to the target's migration address; host-local disks are copied into
//! volumes ferry creates on the target (storage copy with a destination XML), shared ones are
//! checked and never copied, and libvirt's "unsafe" flag is never passed. After every move
//! the driver asks every host (all at once) where the VM runs before it reports an outcome.
//!
//! The process keeps one connection per host, with keepalive, shared by every call and
//! reopened when it dies; a live migration's own call alone has one of its own.

mod cold;
mod conn;
mod cpu;
mod dirtyrate;
mod disk_paths;
pub mod domxml;
mod error;
mod inventory;
mod leftovers;
mod live;
mod metadata;
mod pool;
mod recover;
mod transport;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ferry_driver::{
    ColdOptions, Driver, DriverError, ErrorKind, LiveOptions, Migration, MoveError, MoveReport, MoveRequest, Progress,
    ShutDown, StepGate, TargetVolume, Volume,
};
use ferry_model::{ClusterSpec, Inventory, Location, Metadata};

use crate::error::Failure;

/// The libvirt driver for one cluster.
#[derive(Debug, Clone)]
pub struct LibvirtDriver {
    cluster: Arc<ClusterSpec>,
}

impl LibvirtDriver {
    /// A driver for the hosts of `cluster`.
    pub fn new(cluster: ClusterSpec) -> LibvirtDriver {
        LibvirtDriver { cluster: Arc::new(cluster) }
    }

    /// The cluster it drives.
    pub fn cluster(&self) -> &ClusterSpec {
        &self.cluster
    }

    /// Measures how fast each running VM in `uuids` dirties memory, MiB/s, over `seconds`
    /// (all at once). VMs that could not be measured are in the second map, with why.
    pub async fn measure_dirty_rates(
        &self,
        uuids: Vec<String>,
        seconds: u32,
    ) -> (HashMap<String, f64>, HashMap<String, String>) {
        let cluster = self.cluster.clone();
        blocking(move || dirtyrate::measure(&cluster, &uuids, seconds)).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("libvirt calls do not panic")
}

fn driver_error(host: &str, action: &str) -> impl Fn(Failure) -> DriverError {
    let host = host.to_string();
    let action = action.to_string();
    move |failure| failure.on(&host, &action)
}

/// Starts a domain and waits until it runs. A start cut short (its ferry killed mid-call)
/// goes on in libvirtd, or leaves QEMU paused before the guest's first instruction: both are
/// waited out or resumed rather than taken for failures.
fn start_domain(domain: &virt::domain::Domain) -> Result<(), Failure> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let attempt = match conn::vm_state(domain) {
            ferry_model::VmState::Running => return Ok(()),
            ferry_model::VmState::Paused => domain.resume().map_err(Failure::from),
            ferry_model::VmState::ShutOff => domain.create().map(drop).map_err(Failure::from),
            ferry_model::VmState::Other => Err(Failure::new(ErrorKind::Refused, "in a state that cannot start")),
        };
        match attempt {
            Ok(()) if conn::vm_state(domain) == ferry_model::VmState::Running => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            _ if std::time::Instant::now() >= deadline => {
                return Err(Failure::new(ErrorKind::TimedOut, "it did not come to run"))
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    }
}

fn with_domain<T>(
    cluster: &ClusterSpec,
    host: &str,
    vm: &str,
    action: &str,
    f: impl FnOnce(&virt::domain::Domain) -> Result<T, Failure>,
) -> Result<T, DriverError> {
    let err = driver_error(host, action);
    let spec = live::host(cluster, host).map_err(&err)?;
    let (conn, domain) =
        conn::read(spec, |conn| Ok((conn.clone(), conn.lookup_domain_by_uuid_string(vm)?))).map_err(&err)?;
    conn::settled(spec, &conn, f(&domain)).map_err(err)
}

impl LibvirtDriver {
    /// Sets the operators' tags (`ferry tag`) of VM `vm` (name or UUID) on `host`: its live
    /// domain and its definition.
    pub async fn set_tags(&self, host: &str, vm: &str, tags: BTreeMap<String, String>) -> Result<(), DriverError> {
        let (cluster, host, vm) = (self.cluster.clone(), host.to_string(), vm.to_string());
        blocking(move || with_domain(&cluster, &host, &vm, "write tags", |d| metadata::write_tags(d, &tags))).await
    }
}

impl Driver for LibvirtDriver {
    async fn inventory(&self) -> Inventory {
        let cluster = self.cluster.clone();
        blocking(move || inventory::inventory(&cluster)).await
    }

    async fn locate(&self, vm: &str) -> Result<Vec<Location>, DriverError> {
        let cluster = self.cluster.clone();
        let vm = vm.to_string();
        blocking(move || conn::locate(&cluster, &vm)).await.map_err(|(host, failure)| failure.on(&host, "locate"))
    }

    async fn plan_volumes(&self, request: &MoveRequest) -> Result<Vec<TargetVolume>, MoveError> {
        let (cluster, request) = (self.cluster.clone(), request.clone());
        blocking(move || {
            let conn::Endpoints { from, to, src, dst, domain } = conn::endpoints(&cluster, &request)?;
            let xml = domain.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)?;
            let desc = domxml::parse_domain(&xml).map_err(|e| Failure::new(ErrorKind::Other, e))?;
            volumes::plan(&src, &dst, &from, &to, &desc.disks)
        })
        .await
        .map_err(Failure::init)
    }

    async fn create_volume(&self, volume: &TargetVolume) -> Result<String, DriverError> {
        let (cluster, volume) = (self.cluster.clone(), volume.clone());
        let err = driver_error(&volume.host, "create a volume");
        blocking(move || {
            let spec = live::host(&cluster, &volume.host)?;
            let conn = conn::connect(spec)?;
            conn::settled(spec, &conn, volumes::create(&conn, &volume))
        })
        .await
        .map_err(err)
    }

    async fn migrate_live(&self, request: MoveRequest, options: LiveOptions) -> Result<Migration, MoveError> {
        let cluster = self.cluster.clone();
        blocking(move || live::start(cluster, request, options)).await
    }

    async fn move_cold(
        &self,
        request: MoveRequest,
        options: ColdOptions,
        steps: StepGate,
    ) -> Result<MoveReport, MoveError> {
        let cluster = self.cluster.clone();
        blocking(move || cold::run(cluster, request, options, steps)).await
    }

    async fn start(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        let (cluster, host, vm) = (self.cluster.clone(), host.to_string(), vm.to_string());
        blocking(move || with_domain(&cluster, &host, &vm, "start", start_domain)).await
    }

    async fn shut_down(&self, host: &str, vm: &str, timeout: std::time::Duration) -> Result<ShutDown, DriverError> {
        let (cluster, host, vm) = (self.cluster.clone(), host.to_string(), vm.to_string());
        blocking(move || {
            with_domain(&cluster, &host, &vm, "shut down", |d| {
                if !d.is_active()? {
                    return Ok(ShutDown { was_running: false, how: "shut off already".to_string() });
                }
                Ok(ShutDown { was_running: true, how: cold::stop(d, timeout)? })
            })
        })
        .await
    }

    async fn metadata(&self, host: &str, vm: &str) -> Result<Option<Metadata>, DriverError> {
        let (cluster, host, vm) = (self.cluster.clone(), host.to_string(), vm.to_string());
        blocking(move || with_domain(&cluster, &host, &vm, "read metadata", metadata::read_metadata)).await
    }

    async fn set_metadata(&self, host: &str, vm: &str, value: Option<&Metadata>) -> Result<(), DriverError> {
        let (cluster, host, vm, value) = (self.cluster.clone(), host.to_string(), vm.to_string(), value.cloned());
        blocking(move || {
            with_domain(&cluster, &host, &vm, "write metadata", |d| match &value {
                Some(m) => metadata::write_metadata(d, m),
                None => metadata::clear_metadata(d),
            })
        })
        .await
    }

    async fn job(&self, host: &str, vm: &str) -> Result<Option<Progress>, DriverError> {
        let (cluster, host, vm) = (self.cluster.clone(), host.to_string(), vm.to_string());
        blocking(move || with_domain(&cluster, &host, &vm, "read job", recover::job)).await
    }

    async fn abort_job(&self, host: &str, vm: &str) -> Result<(), DriverError> {
        let (cluster, host, vm) = (self.cluster.clone(), host.to_string(), vm.to_string());
        blocking(move || with_domain(&cluster, &host, &vm, "abort job", conn::abort_job)).await
    }

    async fn idle_cpus(&self, host: &str) -> Result<f64, DriverError> {
        let (cluster, name) = (self.cluster.clone(), host.to_string());
        blocking(move || live::host(&cluster, &name).and_then(cpu::idle_cpus))
            .await
            .map_err(driver_error(host, "tell its idle CPU"))
    }

    async fn volumes(&self, host: &str) -> Result<Vec<Volume>, DriverError> {
        let (cluster, name) = (self.cluster.clone(), host.to_string());
        blocking(move || leftovers::volumes(&cluster, &name)).await.map_err(driver_error(host, "list volumes"))
    }

    async fn volumes_of(&self, host: &str, uuid: &str) -> Result<Vec<Volume>, DriverError> {
        let (cluster, name, uuid) = (self.cluster.clone(), host.to_string(), uuid.to_string());
        blocking(move || leftovers::volumes_of(&cluster, &name, &uuid))
            .await
            .map_err(driver_error(host, "list a VM's volumes"))
    }

    async fn delete_volume(&self, host: &str, pool: &str, name: &str) -> Result<(), DriverError> {
        let (cluster, host_name, pool, name) =
            (self.cluster.clone(), host.to_string(), pool.to_string(), name.to_string());
        blocking(move || leftovers::delete_volume(&cluster, &host_name, &pool, &name))
            .await
            .map_err(driver_error(host, "delete a volume"))
    }

    async fn remove_copy(&self, host: &str, vm: &str) -> Result<String, DriverError> {
        let (cluster, host_name, vm) = (self.cluster.clone(), host.to_string(), vm.to_string());
        blocking(move || leftovers::remove_copy(&cluster, &host_name, &vm))
            .await
            .map_err(driver_error(host, "remove a copy of a VM"))
    }
}
