//! Where everything of one lab lives: directories under the lab dir and the ports it uses.
//! Pure: computes names, paths and config texts; the caller does the IO.

use std::path::{Path, PathBuf};

/// Most hosts one lab runs: each host takes one libvirtd port and one migration port range.
pub const MAX_HOSTS: usize = 9;
/// Ports each host's migration range spans (memory stream plus one NBD port per disk copy).
const MIGRATION_PORTS_PER_HOST: u16 = 80;

/// The fixed shape of a lab: its directory and port base.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The lab directory; nothing the lab creates lives outside it (but for the image cache).
    pub dir: PathBuf,
    /// First port of the lab's block of 1000 ports on 127.0.0.1.
    pub port_base: u16,
}

/// One host's directories and ports.
#[derive(Debug, Clone)]
pub struct HostLayout {
    /// Host name, `host-a`, `host-b`, ...
    pub name: String,
    /// Root of this host's private directories.
    pub root: PathBuf,
    /// libvirtd's TCP port on 127.0.0.1.
    pub port: u16,
    /// First and last port of the migration range.
    pub migration_ports: (u16, u16),
    /// Directory of the host-local storage pool.
    pub pool_dir: PathBuf,
}

/// The directories each host daemon sees at the system paths, bind-mounted in its own
/// mount namespace: (directory under the host root, system path it hides).
pub const PRIVATE_DIRS: [(&str, &str); 5] = [
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("log", "/var/log/libvirt"),
    ("cache", "/var/cache/libvirt"),
];

impl Layout {
    /// The lab's state file: hosts, VMs, pids.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("lab.json")
    }

    /// The cluster file ferry reads to reach the lab's hosts.
    pub fn cluster_file(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// Directory of the shared network storage images.
    pub fn shared_dir(&self) -> PathBuf {
        self.dir.join("shared")
    }

    /// Port of the NBD server that exports the shared storage.
    pub fn nbd_port(&self) -> u16 {
        self.port_base + 10
    }

    /// Pid file of the NBD server.
    pub fn nbd_pid_file(&self) -> PathBuf {
        self.dir.join("shared").join("nbd.pid")
    }

    /// Per-VM directory (serial log).
    pub fn vm_dir(&self, vm: &str) -> PathBuf {
        self.dir.join("vms").join(vm)
    }

    /// The VM's serial console log, appended to across migrations (every host writes the
    /// same file, as they all run on this machine).
    pub fn serial_log(&self, vm: &str) -> PathBuf {
        self.vm_dir(vm).join("serial.log")
    }

    /// Host `index` (0-based).
    pub fn host(&self, index: usize) -> HostLayout {
        let name = host_name(index);
        let root = self.dir.join("hosts").join(&name);
        let index16 = u16::try_from(index).expect("host index is below MAX_HOSTS");
        let first = self.port_base + 100 + index16 * MIGRATION_PORTS_PER_HOST;
        HostLayout {
            pool_dir: root.join("pool"),
            root,
            name,
            port: self.port_base + index16,
            migration_ports: (first, first + MIGRATION_PORTS_PER_HOST - 1),
        }
    }

    /// Every TCP port the lab listens on, for the "port in use" check before starting.
    pub fn all_ports(&self, hosts: usize) -> Vec<u16> {
        let mut ports = vec![self.nbd_port()];
        for i in 0..hosts {
            let host = self.host(i);
            ports.push(host.port);
            ports.extend(host.migration_ports.0..=host.migration_ports.1);
        }
        ports
    }
}

/// `host-a`, `host-b`, ... for index 0, 1, ...
pub fn host_name(index: usize) -> String {
    let letter = char::from(b'a' + u8::try_from(index % 26).expect("below 26"));
    format!("host-{letter}")
}

/// `vm-1`, `vm-2`, ... for index 0, 1, ...
pub fn vm_name(index: usize) -> String {
    format!("vm-{}", index + 1)
}

/// A port base for a lab directory when none is given: stable for the same directory,
/// different for most different ones, so that two labs can run at once. Below Linux's
/// ephemeral range (32768 and up), where outgoing connections would take ports at random.
pub fn default_port_base(dir: &Path) -> u16 {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    10_000 + u16::try_from(hash % 22).expect("below 22") * 1000
}

impl HostLayout {
    /// Directory under the host root that is mounted over `system_path`.
    pub fn private_dir(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    /// libvirtd's config file.
    pub fn libvirtd_conf(&self) -> PathBuf {
        self.root.join("etc").join("libvirtd.conf")
    }

    /// libvirtd's pid file (outside the private dirs so the lab can read it).
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("libvirtd.pid")
    }

    /// libvirtd's log file, as seen from outside the namespace.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("log").join("libvirtd.log")
    }

    /// The URI ferry uses to reach this host.
    pub fn uri(&self) -> String {
        format!("qemu+tcp://127.0.0.1:{}/system", self.port)
    }

    /// libvirtd.conf: TCP on loopback without auth, a unique host UUID (libvirt decides
    /// "same host" by it alone), logs to a file.
    pub fn libvirtd_conf_text(&self, host_uuid: &str) -> String {
        format!(
            "listen_tls = 0\n\
             listen_tcp = 1\n\
             listen_addr = \"127.0.0.1\"\n\
             tcp_port = \"{port}\"\n\
             auth_tcp = \"none\"\n\
             auth_unix_rw = \"none\"\n\
             auth_unix_ro = \"none\"\n\
             host_uuid = \"{host_uuid}\"\n\
             log_level = 3\n\
             log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n",
            port = self.port,
        )
    }

    /// qemu.conf: QEMU as root without a security driver, cgroups or namespaces (none of which
    /// a lab on one machine needs), console output to files without virtlogd, and this host's
    /// own migration port range. (libvirt refuses loopback as `migration_host` or
    /// `migration_address`, so migrations name the target address in their URI instead.)
    pub fn qemu_conf_text(&self) -> String {
        format!(
            "stdio_handler = \"file\"\n\
             user = \"root\"\n\
             group = \"root\"\n\
             security_driver = \"none\"\n\
             dynamic_ownership = 0\n\
             cgroup_controllers = [ ]\n\
             namespaces = [ ]\n\
             migration_port_min = {min}\n\
             migration_port_max = {max}\n",
            min = self.migration_ports.0,
            max = self.migration_ports.1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_disjoint_ports() {
        let layout = Layout { dir: "/tmp/lab".into(), port_base: 20_000 };
        let mut ports = layout.all_ports(MAX_HOSTS);
        let count = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), count, "a port is used twice");
        assert!(ports.iter().all(|p| (20_000..21_000).contains(p)));
        assert_eq!(layout.host(1).name, "host-b");
        assert_eq!(layout.host(1).uri(), "qemu+tcp://127.0.0.1:20001/system");
    }

    #[test]
    fn default_port_base_is_stable_and_spread() {
        let a = default_port_base(Path::new("/tmp/lab-a"));
        assert_eq!(a, default_port_base(Path::new("/tmp/lab-a")));
        assert!((10_000..32_000).contains(&a) && a.is_multiple_of(1000));
    }
}
