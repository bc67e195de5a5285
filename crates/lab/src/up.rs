//! `lab up` and `lab down`.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tracing::info;
use virt::connect::Connect;
use virt::storage_vol::StorageVol;

use crate::layout::{self, Layout, Net, Transport, PRIVATE_DIRS};
use crate::xml::{self, GuestDisk, GuestSpec};
use crate::{
    connect, image, libvirt_err, net, process, LabDisk, LabError, LabHost, LabState, LabVm, MemoryMix, DATA_DISK_MIB,
    LOCAL_POOL,
};

/// What `lab up` builds.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Lab directory.
    pub dir: PathBuf,
    /// Number of hosts (libvirtd daemons).
    pub hosts: usize,
    /// Number of guests, spread over the hosts.
    pub vms: usize,
    /// Memory per guest, MiB.
    pub mem_mib: u64,
    /// Memory each guest dirties per second, MiB.
    pub dirty_mib_s: f64,
    /// What each new guest's working set holds, in percent of its pages.
    pub memory_mix: MemoryMix,
    /// First port of the lab's block of ports; derived from the directory when absent.
    pub port_base: Option<u16>,
    /// Where the guest kernel and initramfs are cached; `DIR/cache` when absent.
    pub cache_dir: Option<PathBuf>,
    /// How long to wait for every guest's first heartbeat.
    pub boot_timeout: Duration,
    /// Each host's outbound link, MiB/s: when given, every host runs in its own network
    /// namespace behind a shaped veth; when absent, every host is on 127.0.0.1, unshaped.
    pub link_mib_s: Option<u64>,
    /// How ferry, virsh and the daemons reach each host's libvirtd, and whether migration
    /// streams must be TLS; when absent, an existing lab's, else TLS.
    pub transport: Option<Transport>,
}

impl UpConfig {
    fn validate(&self) -> Result<(), LabError> {
        let mut errors = Vec::new();
        if self.hosts == 0 || self.hosts > layout::MAX_HOSTS {
            errors.push(format!("--hosts {}: must be 1 to {}", self.hosts, layout::MAX_HOSTS));
        }
        if self.vms > 64 {
            errors.push(format!("--vms {}: must be 0 to 64", self.vms));
        }
        if !(96..=4096).contains(&self.mem_mib) {
            errors.push(format!(
                "--mem {}: must be 96 to 4096 MiB (the guest kernel alone needs about 72 MiB to boot)",
                self.mem_mib
            ));
        }
        if !(self.dirty_mib_s >= 0.0 && self.dirty_mib_s <= 1000.0) {
            errors.push(format!("--dirty {}: must be 0 to 1000 MiB/s", self.dirty_mib_s));
        }
        if let Some(link) = self.link_mib_s {
            if !(1..=10_000).contains(&link) {
                errors.push(format!("--link {link}: must be 1 to 10000 MiB/s"));
            }
        }
        if let Some(base) = self.port_base {
            if !(1024..=31_000).contains(&base) {
                errors.push(format!(
                    "--port-base {base}: must be 1024 to 31000 (the lab takes 1000 ports, below the ephemeral range)"
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LabError::BadInput(errors.join("; ")))
        }
    }
}

/// Brings the lab up, or completes one that is partly up: starts what is not running,
/// defines and starts what is missing. Returns the lab's state.
pub fn up(config: &UpConfig) -> Result<LabState, LabError> {
    config.validate()?;
    let dir = absolute(&config.dir)?;
    ensure_writable(&dir)?;
    let existing = match LabState::load(&dir) {
        Ok(state) => Some(state),
        Err(LabError::NoLab(_)) => None,
        Err(e) => return Err(e),
    };
    if let Some(state) = &existing {
        if state.hosts.len() != config.hosts || state.vms.len() != config.vms {
            return Err(LabError::ShapeMismatch { dir, hosts: state.hosts.len(), vms: state.vms.len() });
        }
        // Guests' disks name the storage's address and daemons their namespace: a lab cannot
        // move between loopback and its own network (its link rate can change).
        if state.link_mib_s.is_some() != config.link_mib_s.is_some() {
            let has = match state.link_mib_s {
                Some(link) => format!("with --link {link} MiB/s"),
                None => "without --link".to_string(),
            };
            return Err(LabError::LinkMismatch { dir, has });
        }
        // Daemon configs, URIs and guests' migration settings all follow the transport.
        if config.transport.is_some_and(|t| t != state.transport) {
            return Err(LabError::TransportMismatch { dir, has: state.transport.name() });
        }
    }
    let port_base =
        existing.as_ref().map(|s| s.port_base).or(config.port_base).unwrap_or_else(|| layout::default_port_base(&dir));
    let transport = existing.as_ref().map(|s| s.transport).or(config.transport).unwrap_or(Transport::Tls);
    let layout = Layout { dir: dir.clone(), port_base, transport };
    let net = config.link_mib_s.map(|link| layout.net(config.hosts, link));

    let mut running = process::lab_processes(&dir);
    if running.is_empty() {
        match &net {
            // Ports held by this lab's own running processes are fine; anything else is not.
            None => {
                let busy = process::ports_in_use(&layout.all_ports(config.hosts));
                if !busy.is_empty() {
                    return Err(LabError::PortsInUse { ports: summarise_ports(&busy) });
                }
            }
            // Every port is inside the lab's own namespaces. What an earlier run of this lab
            // left (a crash, an interrupted `down`) is removed first; namespaces with
            // processes in them are another lab's, and refuse this port base.
            Some(net) => {
                net::remove(&net.prefix)?;
                net::check_subnet_free(net)?;
            }
        }
    }

    let cache = config.cache_dir.clone().unwrap_or_else(|| dir.join("cache"));
    let image = image::ensure_image(&cache)?;

    let state = match existing {
        Some(state) => state,
        None => new_state(config, &layout, net.as_ref(), image.kernel.clone(), image.initrd.clone()),
    };
    let state = LabState { kernel: image.kernel, initrd: image.initrd, link_mib_s: config.link_mib_s, ..state };
    // Written before the network exists, so that `down` always finds its port base.
    write_state(&layout, &state)?;
    ensure_credentials(&layout, net.as_ref(), &state)?;

    if let Some(net) = &net {
        if !running.is_empty() && !net::is_complete(net) {
            // The daemons' network is broken under them: start the lab again from scratch.
            info!(network = %net.cidr(), "lab network incomplete: restarting the lab");
            down(&dir, false)?;
            running.clear();
        }
        if running.is_empty() {
            net::build(net)?;
        } else {
            net::shape(net)?;
        }
    }

    let capabilities = cache.join(CAPABILITIES_CACHE);
    let started = start_everything(&layout, net.as_ref(), &state, config.boot_timeout, &capabilities);
    if let Err(e) = started {
        // Leave no half-started daemons behind: stop whatever this lab runs.
        if running.is_empty() {
            let _ = down(&dir, false);
        }
        return Err(e);
    }
    write_cluster_file(&layout, net.as_ref(), &state)?;
    Ok(state)
}

fn new_state(config: &UpConfig, layout: &Layout, net: Option<&Net>, kernel: PathBuf, initrd: PathBuf) -> LabState {
    let hosts = (0..config.hosts)
        .map(|i| {
            let host = layout.host_in(i, net);
            LabHost {
                uri: host.uri(),
                port: host.port,
                address: host.address,
                netns: host.netns,
                name: host.name,
                host_uuid: uuid::Uuid::new_v4().to_string(),
            }
        })
        .collect::<Vec<_>>();
    let vms = (0..config.vms)
        .map(|i| {
            let name = layout::vm_name(i);
            // Alternate disk kinds so both storage paths are always exercised.
            let disk = if i % 2 == 0 {
                LabDisk::Local { volume: format!("{name}.qcow2") }
            } else {
                LabDisk::Shared { export: name.clone() }
            };
            LabVm {
                uuid: uuid::Uuid::new_v4().to_string(),
                home: hosts[i % hosts.len()].name.clone(),
                mem_mib: config.mem_mib,
                dirty_mib_s: config.dirty_mib_s,
                wss_mib: crate::guest_working_set_mib(config.mem_mib),
                memory_mix: config.memory_mix,
                disk,
                name,
            }
        })
        .collect();
    LabState {
        port_base: layout.port_base,
        hosts,
        vms,
        kernel,
        initrd,
        link_mib_s: config.link_mib_s,
        transport: layout.transport,
    }
}

/// The transport's credentials, made once and kept: TLS certificates from the lab's CA, or
/// ssh keys and the known-hosts file.
fn ensure_credentials(layout: &Layout, net: Option<&Net>, state: &LabState) -> Result<(), LabError> {
    let hosts: Vec<_> = (0..state.hosts.len()).map(|i| layout.host_in(i, net)).collect();
    match layout.transport {
        Transport::Tcp => Ok(()),
        Transport::Tls => {
            let hosts: Vec<_> =
                hosts.iter().map(|h| crate::pki::PkiHost { name: h.name.clone(), address: h.address }).collect();
            crate::pki::ensure(&layout.dir, &hosts)
        }
        Transport::Ssh => crate::ssh::ensure(&layout.dir, &hosts),
    }
}

/// Where the shared storage listens: on loopback, or on the bridge in the lab's own network
/// namespace, which every host reaches over its link.
fn nbd_listen(layout: &Layout, net: Option<&Net>) -> process::NbdListen {
    process::NbdListen {
        address: net.map_or(Ipv4Addr::LOCALHOST, Net::storage_address),
        port: layout.nbd_port(),
        netns: net.map(Net::net_namespace),
    }
}

fn start_everything(
    layout: &Layout,
    net: Option<&Net>,
    state: &LabState,
    boot_timeout: Duration,
    capabilities: &Path,
) -> Result<(), LabError> {
    let storage = nbd_listen(layout, net);
    start_shared_storage(layout, &storage, state)?;
    let mut connections = Vec::new();
    for (i, host) in state.hosts.iter().enumerate() {
        let host_layout = layout.host_in(i, net);
        if process::read_pid(&host_layout.pid_file()).is_none() {
            prepare_host_dirs(&host_layout, &host.host_uuid)?;
            copy_files(capabilities, &host_layout.private_dir("cache").join("qemu/capabilities"));
            let pid = process::start_libvirtd(&host_layout)?;
            info!(host = %host.name, pid, port = host.port, "libvirtd started");
        }
        let conn = connect_when_ready(&host_layout, host)?;
        ensure_pool(&conn, &host.name, &host_layout.pool_dir)?;
        connections.push(conn);
    }
    // A fresh daemon answers its first capability queries slowly (it probes the host and
    // QEMU, seconds each); ask now, all hosts at once, so the lab's first user does not wait.
    std::thread::scope(|scope| {
        for conn in &connections {
            scope.spawn(move || {
                let _ = conn.capabilities();
                for virt_type in ["kvm", "qemu"] {
                    let _ = conn.domain_capabilities(None, None, None, Some(virt_type), 0);
                }
            });
        }
    });
    // What the first host's daemon probed seeds the next lab's daemons: libvirt reuses a
    // cached probe of QEMU while the binaries it names are unchanged, and probes again
    // otherwise. 8 s of a 3-host lab's 15 s start on the lab machine.
    for i in 0..state.hosts.len() {
        if let Some(pid) = process::read_pid(&layout.host_in(i, net).pid_file()) {
            process::release_cpus(pid);
        }
    }
    let first = layout.host_in(0, net);
    copy_files(&first.private_dir("cache").join("qemu/capabilities"), capabilities);

    // Starting a guest blocks for seconds in libvirt; start them all at once.
    let results: Vec<Result<bool, LabError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = state
            .vms
            .iter()
            .map(|vm| scope.spawn(|| ensure_running(layout, &storage, state, &connections, vm)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("guest start does not panic")).collect()
    });
    let mut booting = Vec::new();
    for (vm, result) in state.vms.iter().zip(results) {
        if result? {
            booting.push(vm.name.clone());
        }
    }
    wait_for_heartbeats(layout, &booting, boot_timeout)
}

/// The TCP port answers before the drivers are initialised, and a daemon whose
/// configuration is refused dies only then: retry, and report the daemon's own words.
fn connect_when_ready(layout: &layout::HostLayout, host: &LabHost) -> Result<Connect, LabError> {
    let start = Instant::now();
    loop {
        match connect(host) {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                let dead = process::read_pid(&layout.pid_file()).is_none();
                if dead || start.elapsed() > Duration::from_secs(15) {
                    let log = fs::read_to_string(layout.log_file()).unwrap_or_default();
                    return Err(match first_error_of_last_start(&log) {
                        Some(reason) => LabError::DaemonFailed { host: host.name.clone(), reason },
                        None => e,
                    });
                }
            }
        }
        sleep(Duration::from_millis(100));
    }
}

/// The first error libvirtd logged since it last started, without its location prefix.
/// dmidecode's complaint about /dev/mem is harmless noise on every start here.
fn first_error_of_last_start(log: &str) -> Option<String> {
    let since = log.rfind("libvirt version:").unwrap_or(0);
    log[since..]
        .lines()
        .filter(|l| l.contains(" error : ") && !l.contains("dmidecode"))
        .map(|l| l.rsplit(" : ").next().unwrap_or(l).trim().to_string())
        .next()
}

fn start_shared_storage(layout: &Layout, listen: &process::NbdListen, state: &LabState) -> Result<(), LabError> {
    let shared_dir = layout.shared_dir();
    fs::create_dir_all(&shared_dir).map_err(io_err("create the shared storage directory"))?;
    let mut images = Vec::new();
    for vm in &state.vms {
        if let LabDisk::Shared { export } = &vm.disk {
            let image = shared_dir.join(format!("{export}.qcow2"));
            if !image.exists() {
                run(Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2"])
                    .arg(&image)
                    .arg(format!("{DATA_DISK_MIB}M")))?;
            }
            images.push(image);
        }
    }
    if images.is_empty() || process::read_pid(&layout.nbd_pid_file()).is_some() {
        return Ok(());
    }
    let pid = process::start_nbd_server(&images, listen, &layout.nbd_pid_file())?;
    info!(pid, address = %listen.address, port = listen.port, exports = images.len(), "shared storage started");
    Ok(())
}

/// Where the image cache keeps libvirt's probe of QEMU for the next lab.
const CAPABILITIES_CACHE: &str = "qemu-capabilities";

/// Copies each file of `from` (if it exists) into `to`, each through a temporary name and
/// a rename, so that labs starting at once never read half a file. Best effort: a cache.
fn copy_files(from: &Path, to: &Path) {
    let Ok(entries) = fs::read_dir(from) else { return };
    if fs::create_dir_all(to).is_err() {
        return;
    }
    for entry in entries.flatten() {
        let (source, name) = (entry.path(), entry.file_name());
        let partial = to.join(format!(".{}.{}", name.to_string_lossy(), std::process::id()));
        if fs::copy(&source, &partial).and_then(|_| fs::rename(&partial, to.join(&name))).is_err() {
            let _ = fs::remove_file(&partial);
        }
    }
}

fn prepare_host_dirs(host: &layout::HostLayout, host_uuid: &str) -> Result<(), LabError> {
    for (sub, _) in PRIVATE_DIRS {
        fs::create_dir_all(host.private_dir(sub)).map_err(io_err("create a host directory"))?;
    }
    fs::create_dir_all(&host.pool_dir).map_err(io_err("create a pool directory"))?;
    let etc = host.private_dir("etc");
    fs::write(host.libvirtd_conf(), host.libvirtd_conf_text(host_uuid)).map_err(io_err("write libvirtd.conf"))?;
    fs::write(etc.join("qemu.conf"), host.qemu_conf_text()).map_err(io_err("write qemu.conf"))?;
    Ok(())
}

fn ensure_pool(conn: &Connect, host: &str, dir: &Path) -> Result<(), LabError> {
    let pool = match conn.lookup_storage_pool_by_name(LOCAL_POOL) {
        Ok(pool) => pool,
        Err(_) => {
            let pool = conn
                .define_storage_pool_xml(&xml::dir_pool(LOCAL_POOL, dir), 0)
                .map_err(libvirt_err(host, "define pool"))?;
            pool.set_autostart(true).map_err(libvirt_err(host, "autostart pool"))?;
            pool
        }
    };
    if !pool.is_active().map_err(libvirt_err(host, "pool state"))? {
        pool.create(0).map_err(libvirt_err(host, "start pool"))?;
    }
    Ok(())
}

/// Makes sure `vm` runs on some host: running somewhere is left alone; defined but stopped
/// is started where it is defined; unknown everywhere is defined and started at home.
/// Returns whether it was started.
fn ensure_running(
    layout: &Layout,
    storage: &process::NbdListen,
    state: &LabState,
    connections: &[Connect],
    vm: &LabVm,
) -> Result<bool, LabError> {
    let mut defined_on = None;
    for (host, conn) in state.hosts.iter().zip(connections) {
        if let Ok(domain) = conn.lookup_domain_by_uuid_string(&vm.uuid) {
            if domain.is_active().map_err(libvirt_err(&host.name, "domain state"))? {
                return Ok(false);
            }
            defined_on.get_or_insert((host, domain));
        }
    }
    let (host, domain) = match defined_on {
        Some(found) => found,
        None => {
            let index = state.hosts.iter().position(|h| h.name == vm.home).unwrap_or(0);
            let host = &state.hosts[index];
            let conn = &connections[index];
            let local_path;
            let disk = match &vm.disk {
                LabDisk::Local { volume } => {
                    local_path = ensure_volume(conn, &host.name, volume)?;
                    GuestDisk::Local { path: &local_path }
                }
                LabDisk::Shared { export } => {
                    GuestDisk::Shared { export, address: storage.address, port: storage.port }
                }
            };
            fs::create_dir_all(layout.vm_dir(&vm.name)).map_err(io_err("create a VM directory"))?;
            let serial = layout.serial_log(&vm.name);
            let spec = GuestSpec {
                name: &vm.name,
                uuid: &vm.uuid,
                mem_mib: vm.mem_mib,
                dirty_mib_s: vm.dirty_mib_s,
                wss_mib: vm.wss_mib,
                memory_mix: vm.memory_mix,
                kernel: &state.kernel,
                initrd: &state.initrd,
                serial_log: &serial,
                disk,
            };
            let domain = conn
                .define_domain_xml(&xml::domain(&spec))
                .map_err(libvirt_err(&host.name, &format!("define {}", vm.name)))?;
            (host, domain)
        }
    };
    // A fresh boot starts a fresh log, so that `lab check` judges this life only.
    let serial = layout.serial_log(&vm.name);
    if serial.exists() {
        let _ = fs::rename(&serial, serial.with_extension("log.previous"));
    }
    domain.create().map_err(libvirt_err(&host.name, &format!("start {}", vm.name)))?;
    info!(vm = %vm.name, host = %host.name, "guest started");
    Ok(true)
}

fn ensure_volume(conn: &Connect, host: &str, volume: &str) -> Result<PathBuf, LabError> {
    let pool = conn.lookup_storage_pool_by_name(LOCAL_POOL).map_err(libvirt_err(host, "find pool"))?;
    let vol = match pool.lookup_storage_vol_by_name(volume) {
        Ok(vol) => vol,
        Err(_) => StorageVol::create_xml(&pool, &xml::qcow2_volume(volume, DATA_DISK_MIB), 0)
            .map_err(libvirt_err(host, &format!("create volume {volume}")))?,
    };
    let path = vol.path().map_err(libvirt_err(host, "volume path"))?;
    Ok(PathBuf::from(path))
}

fn wait_for_heartbeats(layout: &Layout, vms: &[String], timeout: Duration) -> Result<(), LabError> {
    let start = Instant::now();
    let mut silent: Vec<&String> = vms.iter().collect();
    while !silent.is_empty() {
        silent.retain(|vm| {
            let log = fs::read_to_string(layout.serial_log(vm)).unwrap_or_default();
            ferry_heartbeat::analyze(&log).heartbeats == 0
        });
        if silent.is_empty() {
            break;
        }
        if start.elapsed() > timeout {
            return Err(LabError::NoHeartbeat {
                seconds: timeout.as_secs(),
                vms: silent.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
        sleep(Duration::from_millis(200));
    }
    info!(guests = vms.len(), seconds = start.elapsed().as_secs_f64(), "every guest is beating");
    Ok(())
}

/// Stops every process of the lab in `dir`: guests, daemons, shared storage (found from
/// their pid files); then removes its network namespaces and links (`--link`), found by
/// their prefix. Removes nothing else outside `dir`; with `purge`, removes `dir` too. A
/// directory without the state file `lab up` writes first is no lab: it is refused, and
/// nothing is signalled or removed.
pub fn down(dir: &Path, purge: bool) -> Result<usize, LabError> {
    let dir = absolute(dir)?;
    let state = LabState::load(&dir)?;
    // Destroying guests through libvirt first lets each daemon record them as stopped.
    for host in &state.hosts {
        if let Ok(conn) = connect(host) {
            let domains = conn.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE);
            for domain in domains.unwrap_or_default() {
                let _ = domain.destroy();
            }
        }
    }
    let pids = process::lab_processes(&dir);
    process::terminate(&pids, Duration::from_secs(5));
    let left = process::lab_processes(&dir);
    if !left.is_empty() {
        return Err(LabError::DaemonFailed {
            host: "lab".into(),
            reason: format!("processes still running after SIGKILL: {left:?}"),
        });
    }
    if state.link_mib_s.is_some() {
        let prefix = Layout { dir: dir.clone(), port_base: state.port_base, transport: Transport::Tcp }.net_prefix();
        net::remove(&prefix)?;
    }
    if purge && dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err("remove the lab directory"))?;
    }
    Ok(pids.len())
}

fn write_state(layout: &Layout, state: &LabState) -> Result<(), LabError> {
    let text = serde_json::to_string_pretty(state).expect("lab state serialises");
    let tmp = layout.state_file().with_extension("json.tmp");
    fs::write(&tmp, text).map_err(io_err("write the lab state"))?;
    fs::rename(&tmp, layout.state_file()).map_err(io_err("write the lab state"))
}

/// What one migration stream achieves over loopback between two lab hosts, MiB/s (a lab
/// guest's pre-copy, uncapped, measured with `ferry move` on the 2-core machine kind).
const LAB_LINK_MIB_S: u64 = 200;
/// What one TLS migration stream moves between lab hosts, MiB/s: the TLS lab's hosts declare
/// it as their `one_stream_mib_s`, so a preview bounds each move by it rather than by its
/// link share. Fitted 2026-12-07 on eight uncapped single moves of a 128 MiB guest between
/// two hosts of a default lab (`ferry move vm-2 --to host-c --output json`, then back):
/// memory sent ÷ (job − setup − pause), median 139 MiB/s (75–165); plain streams move
/// 213–232 (bench estimate_vs_real). (A fit earlier that day gave 63 (48–76), with guests
/// that verified their memory twice as often and daemons whose QEMUs were reaped late.)
const TLS_STREAM_MIB_S: u64 = 139;

/// The lab as a ferry cluster file. Every lab "host" sees the whole machine's CPUs; tiny
/// TCG guests are overcommitted on purpose.
fn write_cluster_file(layout: &Layout, net: Option<&Net>, state: &LabState) -> Result<(), LabError> {
    let mut text = String::from("# Written by `ferry lab up`: this lab's hosts as a ferry cluster.\n");
    match net {
        None => text.push_str("# Every host runs on this machine; migrations bind to loopback.\n"),
        Some(net) => text.push_str(&format!(
            "# Every host runs on this machine in its own network namespace on {}; all traffic\n\
             # leaving a host shares its link, shaped to {} MiB/s.\n",
            net.cidr(),
            net.link_mib_s
        )),
    }
    text.push_str(match state.transport {
        Transport::Tls => {
            "# Hosts are reached over TLS with the lab's own CA (pkipath); they accept TLS\n\
                           # migration streams only.\n"
        }
        Transport::Ssh => "# Hosts are reached over ssh (an sshd per host) with the lab key and known-hosts file.\n",
        Transport::Tcp => "# Hosts are reached over plaintext TCP without authentication.\n",
    });
    text.push_str("# Every host sees the machine's few CPUs: its tiny guests are overcommitted.\n");
    let link = state.link_mib_s.unwrap_or(LAB_LINK_MIB_S);
    // TLS streams are CPU-bound here, well below the link: the preview is told so.
    let one_stream = match state.transport {
        Transport::Tls => {
            text.push_str(&format!(
                "# One TLS migration stream moves about {TLS_STREAM_MIB_S} MiB/s on this kind of machine (one_stream_mib_s).\n"
            ));
            format!("one_stream_mib_s = {TLS_STREAM_MIB_S}\n")
        }
        Transport::Tcp | Transport::Ssh => String::new(),
    };
    for (i, host) in state.hosts.iter().enumerate() {
        text.push_str(&format!(
            "\n[[host]]\nname = \"{}\"\nuri = \"{}\"\nmigration_uri = \"{}\"\ngroup = \"lab\"\ntags = []\nlink_mib_s = {link}\n{one_stream}cpu_overcommit = 16.0\n",
            host.name,
            host.uri,
            layout.host_in(i, net).migration_uri(),
        ));
    }
    fs::write(layout.cluster_file(), text).map_err(io_err("write cluster.toml"))
}

fn ensure_writable(dir: &Path) -> Result<(), LabError> {
    let err = |source| LabError::Dir { path: dir.to_path_buf(), source };
    fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(".write-test");
    fs::write(&probe, b"").map_err(err)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

fn absolute(dir: &Path) -> Result<PathBuf, LabError> {
    std::path::absolute(dir).map_err(|source| LabError::Dir { path: dir.to_path_buf(), source })
}

fn run(cmd: &mut Command) -> Result<(), LabError> {
    let what = format!("{cmd:?}");
    let output = cmd.output().map_err(|source| LabError::Spawn { what: what.clone(), source })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LabError::DaemonFailed {
            host: "lab".into(),
            reason: format!("{what}: {}", String::from_utf8_lossy(&output.stderr).trim()),
        })
    }
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> LabError {
    move |source| LabError::Io { what: what.to_string(), source }
}

fn summarise_ports(ports: &[u16]) -> String {
    let shown: Vec<String> = ports.iter().take(5).map(u16::to_string).collect();
    if ports.len() > 5 {
        format!("{} and {} more", shown.join(", "), ports.len() - 5)
    } else {
        shown.join(", ")
    }
}
