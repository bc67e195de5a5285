//! Starting and stopping the lab's processes: libvirtd daemons in private mount namespaces
//! (and, with `--link`, their own network namespaces), the NBD server for shared storage, and
//! finding every process that belongs to a lab.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::layout::{in_netns, HostLayout};
use crate::LabError;

/// Starts libvirtd for `host` (see [`HostLayout::start_command`]) and waits until its TCP
/// port answers.
pub fn start_libvirtd(host: &HostLayout) -> Result<u32, LabError> {
    let _ = fs::remove_file(host.pid_file());
    let argv = host.start_command();
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
    wait_for_port(host.address, host.port, Duration::from_secs(20)).map_err(|()| LabError::DaemonFailed {
        host: host.name.clone(),
        reason: format!("{}:{} did not answer within 20 s; see {}", host.address, host.port, host.log_file().display()),
    })?;
    read_pid(&host.pid_file()).ok_or_else(|| LabError::DaemonFailed {
        host: host.name.clone(),
        reason: format!("no pid in {}", host.pid_file().display()),
    })
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

/// Every process of a lab: those whose command line mentions `dir` (the daemons: their
/// configuration is under it) or one of the lab's guest UUIDs (QEMU gets `-uuid`; its
/// files may be passed as descriptors, and the kernel may live in a cache elsewhere). The
/// catch-all that makes `lab down` leave nothing running, whatever state the lab is in.
pub fn lab_processes(dir: &Path, guest_uuids: &[String]) -> Vec<u32> {
    let mut needles: Vec<Vec<u8>> = vec![dir.as_os_str().as_encoded_bytes().to_vec()];
    needles.extend(guest_uuids.iter().map(|u| format!("-uuid\0{u}\0").into_bytes()));
    // This process and whatever started it (`timeout … ferry lab up --dir D`, a shell) name
    // the directory too, and are not the lab's.
    let mine = ancestry(std::process::id());
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if mine.contains(&pid) {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else { continue };
        let matches = needles.iter().any(|n| cmdline.windows(n.len()).any(|w| w == n.as_slice()));
        if matches && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// `pid` and its ancestors, up to init.
fn ancestry(pid: u32) -> Vec<u32> {
    let mut chain = vec![pid];
    let mut current = pid;
    while let Some(parent) = parent_of(current).filter(|p| *p > 1 && !chain.contains(p)) {
        chain.push(parent);
        current = parent;
    }
    chain
}

/// The parent of `pid`, from /proc/PID/stat (the field after the state letter).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
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
    fn a_process_and_its_parents_are_never_the_labs() {
        let me = std::process::id();
        let chain = ancestry(me);
        assert_eq!(chain[0], me);
        assert_eq!(chain.get(1).copied(), parent_of(me).filter(|p| *p > 1), "{chain:?}");
        // A process this one started, naming a directory, is found; this one, whose own
        // command line names it too, is not.
        let dir = std::env::temp_dir().join(format!("ferry-ancestry-{me}"));
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", &dir.display().to_string()])
            .spawn()
            .expect("sh runs");
        // Until it has exec'd, the child's command line is this test binary's.
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let started = std::time::Instant::now();
        while !std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"sh\0"))
            && started.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let found = lab_processes(&dir, &[]);
        let _ = child.kill();
        let _ = child.wait();
        // Not only it: forks on their way to exec (the shell's for `sleep`) name it too.
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(!found.contains(&me), "{found:?}");
        let exe = std::env::current_exe().expect("the test binary");
        assert!(!lab_processes(&exe, &[]).contains(&me));
    }
}
