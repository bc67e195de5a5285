//! Starting and stopping the lab's processes: libvirtd daemons in private mount namespaces
//! (and, with `--link`, their own network namespaces), the NBD server for shared storage, and
//! finding every process that belongs to a lab.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::layout::{in_netns, HostLayout};
use crate::LabError;

/// The machine's CPUs, as the kernel lists them (`0-1`).
fn online_cpus() -> String {
    fs::read_to_string("/sys/devices/system/cpu/online").map_or_else(|_| "0".to_string(), |s| s.trim().to_string())
}

/// The first online CPU, where a lab's daemons start (their probe of QEMU, cached, holds
/// the CPUID of the CPU they ran on).
pub fn first_cpu() -> u32 {
    let online = online_cpus();
    online.split(['-', ',']).next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Lets every thread of process `pid` run on every CPU again (see [`first_cpu`]).
pub fn release_cpus(pid: u32) {
    let _ = Command::new("taskset").args(["-a", "-p", "-c", &online_cpus(), &pid.to_string()]).output();
}

/// How long a lab's libvirtd may take to answer on its port and socket.
const DAEMON_START: Duration = Duration::from_secs(20);

/// Starts libvirtd for `host` (see [`HostLayout::start_command`]) and waits until its TCP
/// port answers.
pub fn start_libvirtd(host: &HostLayout) -> Result<u32, LabError> {
    let _ = fs::remove_file(host.pid_file());
    let argv = host.start_command(first_cpu());
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|source| LabError::Spawn { what: format!("{} libvirtd", argv[0]), source })?;
    if !output.status.success() {
        return Err(LabError::DaemonFailed {
            host: host.name.clone(),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let deadline = Instant::now() + DAEMON_START;
    wait_for_port(host.address, host.port, DAEMON_START).map_err(|()| LabError::DaemonFailed {
        host: host.name.clone(),
        reason: format!(
            "{}:{} did not answer within {} s; see {}",
            host.address,
            host.port,
            DAEMON_START.as_secs(),
            host.log_file().display()
        ),
    })?;
    // The daemon runs in the foreground under its reaper, so nothing waited for it to start:
    // the port may be sshd's (`--transport ssh`), and the pid file and UNIX socket come when
    // libvirtd has set up.
    let socket = host.socket();
    loop {
        if let Some(pid) = read_pid(&host.pid_file()).filter(|_| UnixStream::connect(&socket).is_ok()) {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err(LabError::DaemonFailed {
                host: host.name.clone(),
                reason: format!(
                    "no live pid in {} or no answer on {} within {} s; see {} and {}",
                    host.pid_file().display(),
                    socket.display(),
                    DAEMON_START.as_secs(),
                    host.log_file().display(),
                    host.stderr_file().display()
                ),
            });
        }
        sleep(Duration::from_millis(50));
    }
}

/// Where the shared storage's NBD server listens.
#[derive(Debug, Clone)]
pub struct NbdListen {
    /// Address: 127.0.0.1, or the lab bridge's address with `--link`.
    pub address: Ipv4Addr,
    /// TCP port.
    pub port: u16,
    /// The network namespace to run in (`--link`: the lab's own, where the bridge is).
    pub netns: Option<String>,
}

/// Starts a qemu-storage-daemon that exports each image as an NBD export named after the
/// file stem, where `listen` says. A network block device is storage libvirt knows to be
/// shared, unlike a local directory that two daemons happen to see.
pub fn start_nbd_server(images: &[PathBuf], listen: &NbdListen, pid_file: &Path) -> Result<u32, LabError> {
    let NbdListen { address, port, .. } = listen;
    // The NBD server must exist before exports are added to it.
    let mut args: Vec<String> = vec![
        "qemu-storage-daemon".into(),
        "--nbd-server".into(),
        format!("addr.type=inet,addr.host={address},addr.port={port}"),
    ];
    for (i, image) in images.iter().enumerate() {
        let name = export_name(image);
        args.push("--blockdev".into());
        args.push(format!("driver=file,node-name=f{i},filename={}", image.display()));
        args.push("--blockdev".into());
        args.push(format!("driver=qcow2,node-name=q{i},file=f{i}"));
        args.push("--export".into());
        args.push(format!("type=nbd,id=e{i},node-name=q{i},name={name},writable=on"));
    }
    args.push("--daemonize".into());
    args.push("--pidfile".into());
    args.push(pid_file.display().to_string());
    let argv = in_netns(listen.netns.as_deref(), args);
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|source| LabError::Spawn { what: "qemu-storage-daemon".into(), source })?;
    if !output.status.success() {
        return Err(LabError::DaemonFailed {
            host: "shared storage".into(),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    wait_for_port(*address, *port, Duration::from_secs(10)).map_err(|()| LabError::DaemonFailed {
        host: "shared storage".into(),
        reason: format!("NBD server {address}:{port} did not answer"),
    })?;
    read_pid(pid_file).ok_or_else(|| LabError::DaemonFailed {
        host: "shared storage".into(),
        reason: format!("no pid in {}", pid_file.display()),
    })
}

/// The NBD export name of a shared image: its file stem.
pub fn export_name(image: &Path) -> String {
    image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Ports among `ports` that something already listens on or holds.
pub fn ports_in_use(ports: &[u16]) -> Vec<u16> {
    ports.iter().copied().filter(|port| TcpListener::bind(("127.0.0.1", *port)).is_err()).collect()
}

fn wait_for_port(address: Ipv4Addr, port: u16, timeout: Duration) -> Result<(), ()> {
    let addr = SocketAddr::from((address, port));
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        sleep(Duration::from_millis(50));
    }
    Err(())
}

/// The pid in a pid file, if the file exists and the process is alive.
pub fn read_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Every process of the lab in `dir`, from the pid files the lab's processes wrote: each
/// host's libvirtd (and sshd), its guests' QEMU (libvirt's `run/qemu/NAME.pid`) and the
/// shared storage's NBD server. A pid counts only while `/proc` confirms it: the executable
/// is the one that wrote the file, and the process started before the file was written (a
/// stale file's pid, reused by another process, started after). Never by command line: a
/// process that merely names the directory is not the lab's.
pub fn lab_processes(dir: &Path) -> Vec<u32> {
    let mut files: Vec<(PathBuf, &str)> = vec![(dir.join("shared").join("nbd.pid"), "qemu-storage-daemon")];
    for host in fs::read_dir(dir.join("hosts")).into_iter().flatten().flatten() {
        let root = host.path();
        files.push((root.join("libvirtd.pid"), "libvirtd"));
        files.push((root.join("ssh").join("sshd.pid"), "sshd"));
        for guest in fs::read_dir(root.join("run").join("qemu")).into_iter().flatten().flatten() {
            let path = guest.path();
            // libvirt's own lock file there holds the daemon's pid, found above.
            if path.extension().is_some_and(|e| e == "pid") && path.file_stem().is_some_and(|s| s != "driver") {
                files.push((path, "qemu-system-"));
            }
        }
    }
    let mut pids: Vec<u32> = files.iter().filter_map(|(file, exe)| confirmed_pid(file, exe)).collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The pid in `file` when its process is alive, runs an executable whose name starts with
/// `exe`, and started no later than the file was last written.
fn confirmed_pid(file: &Path, exe: &str) -> Option<u32> {
    let pid = read_pid(file)?;
    let running = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = running.file_name()?.to_string_lossy();
    if !name.starts_with(exe) {
        return None;
    }
    let written = fs::metadata(file).ok()?.modified().ok()?;
    // Clock ticks and the boot time's whole seconds round: a second of slack.
    (started_at(pid)? <= written + Duration::from_secs(1)).then_some(pid)
}

/// A process's group and its start in clock ticks after boot, from `/proc/PID/stat` (the
/// 5th and 22nd fields).
pub fn group_and_start(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised name start at the 3rd.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// When `pid` started: the boot time (`/proc/stat`) plus its start in clock ticks.
fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    let (_, ticks) = group_and_start(pid)?;
    let boot: u64 =
        fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|t| *t > 0)?;
    let since_boot = Duration::from_millis(ticks * 1000 / per_second);
    Some(std::time::UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// Sends `signal` to `pid`; a process already gone is not an error.
pub fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// SIGTERM to every pid, then SIGKILL to those still alive after `grace`.
pub fn terminate(pids: &[u32], grace: Duration) {
    for pid in pids {
        signal(*pid, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < grace && pids.iter().any(|p| alive(*p)) {
        sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        signal(*pid, libc::SIGKILL);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) && pids.iter().any(|p| alive(*p)) {
        sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_counts_only_for_its_own_live_executable_started_before_it() {
        let dir = std::env::temp_dir().join(format!("ferry-pidfile-{}", std::process::id()));
        fs::create_dir_all(dir.join("shared")).expect("a directory");
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let file = dir.join("shared").join("nbd.pid");
        fs::write(&file, child.id().to_string()).expect("a pid file");
        // A process that is not the executable the file belongs to is not the lab's.
        assert_eq!(confirmed_pid(&file, "qemu-storage-daemon"), None);
        assert_eq!(confirmed_pid(&file, "sleep"), Some(child.id()));
        // A file written before its process started names another (a reused pid).
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        fs::File::options().write(true).open(&file).and_then(|f| f.set_modified(old)).expect("set the mtime");
        assert_eq!(confirmed_pid(&file, "sleep"), None);
        // Nothing in a directory that holds no lab's pid files.
        assert!(lab_processes(&dir).is_empty());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(confirmed_pid(&file, "sleep"), None, "a dead process is nobody's");
        let _ = fs::remove_dir_all(&dir);
    }
}
