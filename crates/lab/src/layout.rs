//! Where everything of one lab lives: directories under the lab dir, the ports it uses and,
//! with `--link`, its private network. Pure: computes names, paths, addresses, config texts and
//! the commands to run; the caller does the IO.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// How ferry, virsh and the daemons reach each host's libvirtd.
    pub transport: Transport,
}

/// How the lab's hosts are reached (`ferry lab up --transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `qemu+tcp://`, no authentication, plaintext migration streams: what labs were before
    /// transports (a state file without the field is one of these).
    #[default]
    Tcp,
    /// `qemu+tls://` with the lab's own CA: each libvirtd verifies its clients'
    /// certificates, and QEMU refuses any migration stream that is not TLS.
    Tls,
    /// `qemu+libssh2://` to an sshd per host, with a lab key and known-hosts file.
    Ssh,
}

impl Transport {
    /// The name `--transport` takes.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ssh => "ssh",
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Transport, String> {
        match s {
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            "ssh" => Ok(Transport::Ssh),
            other => Err(format!("{other:?} is not a transport: tls, ssh or tcp")),
        }
    }
}

/// One host's directories and ports.
#[derive(Debug, Clone)]
pub struct HostLayout {
    /// Host name, `host-a`, `host-b`, ...
    pub name: String,
    /// Root of this host's private directories.
    pub root: PathBuf,
    /// The host's port: libvirtd's TCP or TLS listener, or its sshd (`--transport ssh`).
    pub port: u16,
    /// First and last port of the migration range.
    pub migration_ports: (u16, u16),
    /// Directory of the host-local storage pool.
    pub pool_dir: PathBuf,
    /// Where libvirtd listens and migrations arrive: 127.0.0.1, or the host's address on the
    /// lab's bridge when it has its own network namespace.
    pub address: Ipv4Addr,
    /// The host's network namespace (`--link`); `None`: the machine's own network.
    pub netns: Option<String>,
    /// How it is reached.
    pub transport: Transport,
    /// The lab directory (credentials shared by every host live there).
    pub lab_dir: PathBuf,
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

    /// Host `index` (0-based), on 127.0.0.1.
    pub fn host(&self, index: usize) -> HostLayout {
        self.host_in(index, None)
    }

    /// Host `index` (0-based): in its own namespace of `net` when given, else on 127.0.0.1.
    pub fn host_in(&self, index: usize, net: Option<&Net>) -> HostLayout {
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
            address: net.map_or(Ipv4Addr::LOCALHOST, |n| n.host_address(index)),
            netns: net.map(|n| n.host_namespace(index)),
            transport: self.transport,
            lab_dir: self.dir.clone(),
        }
    }

    /// The first part of every network namespace and interface name of this lab's network:
    /// `ferry-BASE`. Derived from the port base alone, so that `down` finds them whatever
    /// the state of the lab; two labs never run on the same port base.
    pub fn net_prefix(&self) -> String {
        format!("ferry-{}", self.port_base)
    }

    /// The lab's private network for `hosts` hosts with links of `link_mib_s` MiB/s.
    pub fn net(&self, hosts: usize, link_mib_s: u64) -> Net {
        let [hi, lo] = self.port_base.to_be_bytes();
        Net {
            prefix: self.net_prefix(),
            // One /24 per port base: 10.(128 + BASE / 256).(BASE % 256). Port bases stop at
            // 31000 (< 122 * 256), so the second byte stays below 250.
            subnet: [10, 128 + (hi & 0x7f), lo],
            hosts,
            link_mib_s,
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

/// The lab's ssh key (`--transport ssh`): every host authorizes it; its public half is
/// beside it, `.pub`.
pub fn ssh_key(lab_dir: &Path) -> PathBuf {
    lab_dir.join("ssh").join("id_ed25519")
}

/// The lab's known-hosts file: every host's key at its address and port.
pub fn known_hosts(lab_dir: &Path) -> PathBuf {
    lab_dir.join("ssh").join("known_hosts")
}

/// The keys every host's sshd accepts: the lab key.
pub fn authorized_keys(lab_dir: &Path) -> PathBuf {
    lab_dir.join("ssh").join("authorized_keys")
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

    /// What libvirtd prints on standard error (before its log is set up), as seen from
    /// outside the namespace: `/var/log/libvirt/libvirtd.stderr` inside it.
    pub fn stderr_file(&self) -> PathBuf {
        self.root.join("log").join("libvirtd.stderr")
    }

    /// libvirtd's UNIX socket, as seen from outside the namespace (`/run/libvirt/libvirt-sock`
    /// inside it).
    pub fn socket(&self) -> PathBuf {
        self.private_dir("run").join("libvirt-sock")
    }

    /// The URI ferry uses to reach this host. Credentials are named in the URI (libvirt
    /// would look for them at fixed paths under /etc and ~/.ssh otherwise), so that ferry,
    /// virsh and each libvirtd's peer-to-peer connection all use the lab's own.
    pub fn uri(&self) -> String {
        let (address, port) = (self.address, self.port);
        match self.transport {
            Transport::Tcp => format!("qemu+tcp://{address}:{port}/system"),
            Transport::Tls => {
                format!("qemu+tls://{address}:{port}/system?pkipath={}", crate::pki::client_dir(&self.lab_dir).display())
            }
            // A library transport rather than the ssh binary: only those take a known-hosts
            // file (the binary's is ~/.ssh/known_hosts, outside the lab). libssh2 rather
            // than libssh: over libssh, a reply of 64 KiB or more (domain capabilities)
            // never arrived in a process without a libvirt event loop, as ferry is (libvirt
            // 11.3).
            Transport::Ssh => format!(
                "qemu+libssh2://root@{address}:{port}/system?keyfile={}&known_hosts={}&known_hosts_verify=normal&sshauth=privkey",
                ssh_key(&self.lab_dir).display(),
                known_hosts(&self.lab_dir).display(),
            ),
        }
    }

    /// The host's sshd files: host key, config, pid file, log (`--transport ssh`).
    pub fn ssh_dir(&self) -> PathBuf {
        self.root.join("ssh")
    }

    /// sshd's config: key-only root login on the host's own address and port, its host key,
    /// the lab key as the only authorized one; no PAM (there is no login session to set up).
    pub fn sshd_config_text(&self) -> String {
        let ssh = self.ssh_dir();
        format!(
            "ListenAddress {address}:{port}\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized}\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             LogLevel ERROR\n",
            address = self.address,
            port = self.port,
            key = ssh.join("ssh_host_ed25519_key").display(),
            pid = self.sshd_pid_file().display(),
            authorized = authorized_keys(&self.lab_dir).display(),
        )
    }

    /// sshd's pid file.
    pub fn sshd_pid_file(&self) -> PathBuf {
        self.ssh_dir().join("sshd.pid")
    }

    /// Where the host receives migration streams, for the cluster file.
    pub fn migration_uri(&self) -> String {
        format!("tcp://{}", self.address)
    }

    /// libvirtd.conf: on the host's address, TCP without auth or TLS verifying every
    /// client's certificate against the lab CA (nothing with ssh: sshd has the port and
    /// sessions reach the daemon's UNIX socket); a unique host UUID (libvirt decides "same
    /// host" by it alone), logs to a file.
    pub fn libvirtd_conf_text(&self, host_uuid: &str) -> String {
        let listen = match self.transport {
            Transport::Tcp => {
                format!("listen_tls = 0\nlisten_tcp = 1\ntcp_port = \"{}\"\nauth_tcp = \"none\"\n", self.port)
            }
            Transport::Tls => {
                let pki = crate::pki::host_dir(&self.lab_dir, &self.name);
                format!(
                    "listen_tls = 1\n\
                     listen_tcp = 0\n\
                     tls_port = \"{port}\"\n\
                     auth_tls = \"none\"\n\
                     key_file = \"{key}\"\n\
                     cert_file = \"{cert}\"\n\
                     ca_file = \"{ca}\"\n\
                     tls_no_verify_certificate = 0\n\
                     tls_no_sanity_certificate = 0\n",
                    port = self.port,
                    key = pki.join("serverkey.pem").display(),
                    cert = pki.join("servercert.pem").display(),
                    ca = pki.join("cacert.pem").display(),
                )
            }
            Transport::Ssh => "listen_tls = 0\nlisten_tcp = 0\n".to_string(),
        };
        format!(
            "{listen}\
             listen_addr = \"{address}\"\n\
             auth_unix_rw = \"none\"\n\
             auth_unix_ro = \"none\"\n\
             host_uuid = \"{host_uuid}\"\n\
             log_level = 3\n\
             log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n",
            address = self.address,
        )
    }

    /// The command that starts this host's libvirtd: in a private mount namespace with the
    /// host's directories mounted over libvirt's system paths, inside the host's network
    /// namespace when it has one, on CPU `cpu` (see `crate::process::first_cpu`). QEMU
    /// processes inherit both namespaces from the daemon. Every path is an argument of the
    /// shell, never part of its script: a lab directory may hold any character.
    pub fn start_command(&self, cpu: u32) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        // `"$N"`, naming the next argument, which is `value`.
        let mut arg = |value: String| {
            args.push(value);
            format!("\"${{{}}}\"", args.len())
        };
        // Copies of /run/netns/* bind mounts in a private mount namespace would keep every
        // network namespace that exists now alive for as long as the daemon runs, even after
        // `ip netns del`: the daemon needs none of them.
        let mut script = String::from("set -e\numount -R /run/netns 2>/dev/null || true\n");
        for (sub, system_path) in PRIVATE_DIRS {
            let (from, to) = (arg(self.private_dir(sub).display().to_string()), arg(system_path.to_string()));
            script.push_str(&format!("mkdir -p {to}\nmount --bind {from} {to}\n"));
        }
        if self.transport == Transport::Ssh {
            // sshd in the daemon's namespaces, so that a session's virt-ssh-helper finds this
            // host's libvirt socket; one already running (the daemon alone was restarted)
            // serves the new daemon's socket through the same directory.
            let ssh = self.ssh_dir();
            let privsep = arg(ssh.join("privsep").display().to_string());
            let pid = arg(self.sshd_pid_file().display().to_string());
            let config = arg(ssh.join("sshd_config").display().to_string());
            let log = arg(ssh.join("sshd.log").display().to_string());
            script.push_str(&format!(
                "mkdir -p /run/sshd\nmount --bind {privsep} /run/sshd\n\
                 if ! kill -0 \"$(cat {pid} 2>/dev/null)\" 2>/dev/null; then\n\
                 /usr/sbin/sshd -f {config} -E {log}\nfi\n"
            ));
        }
        // Started on one CPU, let go once its capabilities are loaded: libvirt's cached probe
        // of QEMU holds the host's CPUID, which differs between this machine's vCPUs, and a
        // daemon on another one would probe QEMU again.
        //
        // Under tini as child subreaper: libvirt double-forks QEMU, and when a source's QEMU
        // exits at the end of a migration, the call returns only once the process is reaped.
        // An init that reaps orphans late (this machine's reaps them ~1.5 s after they exit;
        // systemd at once) would add that to every move; tini reaps them as they exit.
        let pid_file = arg(self.pid_file().display().to_string());
        script.push_str(&format!(
            "command -v tini >/dev/null || {{ echo 'tini is not installed (scripts/setup installs it)' >&2; exit 1; }}\n\
             cd /\n\
             (umask 077; : >> /var/log/libvirt/libvirtd.stderr)\n\
             setsid tini -s -- taskset -c {cpu} libvirtd -l -f /etc/libvirt/libvirtd.conf -p {pid_file} \
             </dev/null >/dev/null 2>>/var/log/libvirt/libvirtd.stderr &\n"
        ));
        let mut argv: Vec<String> =
            ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", &script, "sh"].map(String::from).into();
        argv.extend(args);
        in_netns(self.netns.as_deref(), argv)
    }

    /// qemu.conf: QEMU as root without a security driver, cgroups or namespaces (none of which
    /// a lab on one machine needs), console output to files without virtlogd, and this host's
    /// own migration port range. (libvirt refuses loopback as `migration_host` or
    /// `migration_address`, so migrations name the target address in their URI instead.)
    /// With TLS, migration streams are TLS with client certificates verified, and QEMU
    /// refuses any other (`migrate_tls_force`), as on a hardened fleet.
    pub fn qemu_conf_text(&self) -> String {
        let tls = match self.transport {
            Transport::Tls => format!(
                "default_tls_x509_verify = 1\n\
                 migrate_tls_x509_cert_dir = \"{}\"\n\
                 migrate_tls_x509_verify = 1\n\
                 migrate_tls_force = 1\n",
                crate::pki::migration_dir(&self.lab_dir, &self.name).display()
            ),
            Transport::Tcp | Transport::Ssh => String::new(),
        };
        tls + &format!(
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

/// The private network of a lab with `--link`: every host in its own network namespace
/// `PREFIX-host-X`, its interface `eth0` joined by a veth pair to the bridge `br0` in the
/// lab's own namespace `PREFIX-net`. That namespace also holds the shared storage's address
/// (on the bridge) and the far end of one veth, `PREFIX-r`, from the machine's root
/// namespace, where ferry and virsh run: the only thing the lab adds to the root namespace,
/// and the only route into the lab's /24.
///
/// The bridge is not in the root namespace so that nothing the lab switches or addresses is
/// visible there but that one link; deleting the lab's namespaces deletes everything else.
///
/// Each host's outbound traffic is shaped by a token bucket on its `eth0`: all migrations
/// (and storage writes) leaving one host share its link, as on a real NIC; inbound traffic
/// is not shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    /// `ferry-BASE`: the start of every namespace and interface name of this network.
    pub prefix: String,
    /// The first three bytes of the network's /24.
    pub subnet: [u8; 3],
    /// Number of hosts.
    pub hosts: usize,
    /// Each host's outbound rate, MiB/s.
    pub link_mib_s: u64,
}

/// Name of each host's interface inside its namespace.
pub const HOST_INTERFACE: &str = "eth0";
/// Name of the bridge inside the lab's network namespace.
const BRIDGE: &str = "br0";
/// Name, inside the lab's network namespace, of the veth coming from the root namespace.
const ROOT_PORT: &str = "root";

/// One command line: program and arguments.
pub type Cmd = Vec<String>;

/// A command line from words.
pub fn cmd(words: &[&str]) -> Cmd {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// `argv`, run inside network namespace `netns` when there is one.
pub fn in_netns(netns: Option<&str>, argv: Vec<String>) -> Vec<String> {
    match netns {
        Some(ns) => {
            let mut full = cmd(&["ip", "netns", "exec", ns]);
            full.extend(argv);
            full
        }
        None => argv,
    }
}

impl Net {
    /// The lab's own namespace: the bridge, the shared storage, the root link's far end.
    pub fn net_namespace(&self) -> String {
        format!("{}-net", self.prefix)
    }

    /// Host `index`'s namespace.
    pub fn host_namespace(&self, index: usize) -> String {
        format!("{}-{}", self.prefix, host_name(index))
    }

    /// The veth end in the root namespace (at most 15 bytes, the kernel's limit).
    pub fn root_link(&self) -> String {
        format!("{}-r", self.prefix)
    }

    fn address(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, last)
    }

    /// Host `index`'s address: `.1`, `.2`, ...
    pub fn host_address(&self, index: usize) -> Ipv4Addr {
        self.address(u8::try_from(index + 1).expect("host index is below MAX_HOSTS"))
    }

    /// The shared storage's address, on the bridge.
    pub fn storage_address(&self) -> Ipv4Addr {
        self.address(200)
    }

    /// The root namespace's address on the lab's network.
    pub fn root_address(&self) -> Ipv4Addr {
        self.address(254)
    }

    /// The network, `10.X.Y.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}/24", self.address(0))
    }

    /// Whether a namespace or interface name is this network's.
    pub fn owns(&self, name: &str) -> bool {
        owned_by(&self.prefix, name)
    }

    /// Every command that builds the network from nothing, in order; the last ones shape.
    pub fn build_commands(&self) -> Vec<Cmd> {
        let net = self.net_namespace();
        let root = self.root_link();
        let with = |addr: Ipv4Addr| format!("{addr}/24");
        let mut cmds = vec![
            cmd(&["ip", "netns", "add", &net]),
            cmd(&["ip", "-n", &net, "link", "set", "lo", "up"]),
            cmd(&["ip", "-n", &net, "link", "add", BRIDGE, "type", "bridge"]),
            cmd(&["ip", "-n", &net, "addr", "add", &with(self.storage_address()), "dev", BRIDGE]),
            cmd(&["ip", "-n", &net, "link", "set", BRIDGE, "up"]),
            cmd(&["ip", "link", "add", &root, "type", "veth", "peer", "name", ROOT_PORT, "netns", &net]),
            cmd(&["ip", "-n", &net, "link", "set", ROOT_PORT, "master", BRIDGE, "up"]),
            cmd(&["ip", "addr", "add", &with(self.root_address()), "dev", &root]),
            cmd(&["ip", "link", "set", &root, "up"]),
        ];
        for i in 0..self.hosts {
            let ns = self.host_namespace(i);
            let port = host_name(i);
            cmds.extend([
                cmd(&["ip", "netns", "add", &ns]),
                cmd(&["ip", "-n", &ns, "link", "set", "lo", "up"]),
                cmd(&[
                    "ip",
                    "-n",
                    &net,
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    HOST_INTERFACE,
                    "netns",
                    &ns,
                ]),
                cmd(&["ip", "-n", &net, "link", "set", &port, "master", BRIDGE, "up"]),
                cmd(&["ip", "-n", &ns, "addr", "add", &with(self.host_address(i)), "dev", HOST_INTERFACE]),
                cmd(&["ip", "-n", &ns, "link", "set", HOST_INTERFACE, "up"]),
            ]);
        }
        cmds.extend(self.shape_commands());
        cmds
    }

    /// Shapes every host's outbound traffic to the link rate (`replace`: also changes the
    /// rate of a running lab). A token bucket rather than a fair queue: every flow leaving
    /// the host competes for the same tokens, as they would for a NIC.
    pub fn shape_commands(&self) -> Vec<Cmd> {
        let bytes_s = self.link_mib_s * 1024 * 1024;
        let rate = format!("{}bit", bytes_s * 8);
        // At least 10 ms of traffic per burst, so the bucket's granularity does not cap the
        // rate; 256 KiB is what lab-notes measured sharing fairly at 512 Mbit/s.
        let burst = format!("{}b", (bytes_s / 100).max(256 * 1024));
        (0..self.hosts)
            .map(|i| {
                let ns = self.host_namespace(i);
                cmd(&[
                    "tc",
                    "-n",
                    &ns,
                    "qdisc",
                    "replace",
                    "dev",
                    HOST_INTERFACE,
                    "root",
                    "tbf",
                    "rate",
                    &rate,
                    "burst",
                    &burst,
                    "latency",
                    &format!("{}ms", crate::LINK_QUEUE_MS),
                ])
            })
            .collect()
    }
}

/// Whether `name` (a namespace or interface) belongs to the network with `prefix`: exactly
/// `PREFIX-...`, so that `ferry-2800` never claims `ferry-28000-...`.
pub fn owned_by(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('-'))
}

/// The commands that remove the network with `prefix`, given what exists: the root
/// namespace's interfaces and the named network namespaces. The root link goes first and
/// explicitly (a namespace's interfaces are destroyed asynchronously after `ip netns del`);
/// deleting a namespace deletes its veths and their peers. Names of others are never touched.
pub fn teardown_commands(prefix: &str, links: &[String], namespaces: &[String]) -> Vec<Cmd> {
    let links = links.iter().filter(|l| owned_by(prefix, l)).map(|l| cmd(&["ip", "link", "del", l]));
    let namespaces = namespaces.iter().filter(|n| owned_by(prefix, n)).map(|n| cmd(&["ip", "netns", "del", n]));
    links.chain(namespaces).collect()
}

/// Namespace names in the output of `ip netns list` (`NAME` or `NAME (id: N)` per line).
pub fn parse_netns_list(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

/// Interface names in the output of `ip -o link show` (`N: NAME[@PEER]: <FLAGS> ...`).
pub fn parse_link_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// Routes in the output of `ip -o -4 route show root CIDR` that are not through
/// `own_link`: another network already uses the lab's addresses.
pub fn foreign_routes(text: &str, own_link: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["dev", own_link]))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_disjoint_ports() {
        let layout = Layout { dir: "/tmp/lab".into(), port_base: 20_000, transport: Transport::Tcp };
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
    fn a_linked_host_lives_in_its_namespace_at_its_address() {
        let layout = Layout { dir: "/tmp/lab".into(), port_base: 28_000, transport: Transport::Tcp };
        let net = layout.net(3, 32);
        let host = layout.host_in(1, Some(&net));
        assert_eq!(net.subnet, [10, 237, 96]);
        assert_eq!(host.address, Ipv4Addr::new(10, 237, 96, 2));
        assert_eq!(host.netns.as_deref(), Some("ferry-28000-host-b"));
        assert_eq!(host.uri(), "qemu+tcp://10.237.96.2:28001/system");
        assert_eq!(host.migration_uri(), "tcp://10.237.96.2");
        assert!(host.libvirtd_conf_text("u").contains("listen_addr = \"10.237.96.2\""));
        assert_eq!(host.start_command(0)[..6], ["ip", "netns", "exec", "ferry-28000-host-b", "unshare", "-m"]);
        // Without a network: loopback, no namespace, exactly as before.
        let plain = layout.host(1);
        assert_eq!(plain.uri(), "qemu+tcp://127.0.0.1:28001/system");
        assert!(plain.libvirtd_conf_text("u").contains("listen_addr = \"127.0.0.1\""));
        assert_eq!(plain.start_command(0)[..2], ["unshare", "-m"]);
    }

    #[test]
    fn a_lab_directory_is_an_argument_of_the_daemons_shell_never_its_script() {
        let dir = "/tmp/it's $(reboot) `x`";
        for transport in [Transport::Tls, Transport::Ssh] {
            let layout = Layout { dir: dir.into(), port_base: 20_000, transport };
            let argv = layout.host(0).start_command(1);
            let script_at = argv.iter().position(|a| a == "-c").expect("sh -c") + 1;
            let script = &argv[script_at];
            assert!(!script.contains("/tmp/it"), "{script}");
            assert!(script.contains("tini -s -- taskset -c 1 libvirtd"), "{script}");
            assert_eq!(argv[script_at + 1], "sh", "$0");
            let args = &argv[script_at + 2..];
            // Every "$N" of the script names one of them, and the paths are there whole.
            for n in 1..=args.len() {
                assert!(script.contains(&format!("\"${{{n}}}\"")), "${n} unused: {script}");
            }
            assert!(!script.contains(&format!("${{{}}}", args.len() + 1)));
            assert!(args.iter().any(|a| a == &format!("{dir}/hosts/host-a/etc")), "{args:?}");
        }
    }

    #[test]
    fn every_port_base_gets_its_own_subnet_and_short_names() {
        let mut subnets = std::collections::HashSet::new();
        for base in 1024..=31_000 {
            let net = Layout { dir: "/tmp/lab".into(), port_base: base, transport: Transport::Tcp }.net(MAX_HOSTS, 1);
            assert!(subnets.insert(net.subnet), "{base}: subnet {:?} used twice", net.subnet);
            assert!(net.subnet[1] >= 128, "{base}: {:?}", net.subnet);
            assert!(net.root_link().len() <= 15, "{}: longer than IFNAMSIZ", net.root_link());
            let mut addresses: Vec<_> = (0..MAX_HOSTS).map(|i| net.host_address(i)).collect();
            addresses.extend([net.storage_address(), net.root_address()]);
            let count = addresses.len();
            addresses.sort_unstable();
            addresses.dedup();
            assert_eq!(addresses.len(), count, "{base}: an address is used twice");
        }
    }

    #[test]
    fn build_commands_shape_every_host_and_name_only_the_labs_things() {
        let net = Layout { dir: "/tmp/lab".into(), port_base: 28_000, transport: Transport::Tcp }.net(2, 32);
        let cmds = net.build_commands();
        let text: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert!(
            text.contains(&"ip link add ferry-28000-r type veth peer name root netns ferry-28000-net".to_string()),
            "{text:#?}"
        );
        assert!(text.contains(
            &"ip -n ferry-28000-net link add host-b type veth peer name eth0 netns ferry-28000-host-b".to_string()
        ));
        assert!(text.contains(&"ip -n ferry-28000-host-a addr add 10.237.96.1/24 dev eth0".to_string()));
        let shaping: Vec<&String> = text.iter().filter(|t| t.starts_with("tc ")).collect();
        assert_eq!(
            shaping,
            [
                "tc -n ferry-28000-host-a qdisc replace dev eth0 root tbf rate 268435456bit burst 335544b latency 50ms",
                "tc -n ferry-28000-host-b qdisc replace dev eth0 root tbf rate 268435456bit burst 335544b latency 50ms",
            ]
        );
        // Every namespace and every interface created in the root namespace is the lab's.
        for c in &cmds {
            if c[..3] == ["ip", "netns", "add"] {
                assert!(net.owns(&c[3]), "{c:?}");
            }
            if c[..3] == ["ip", "link", "add"] {
                assert!(net.owns(&c[3]), "{c:?}");
            }
        }
        assert!(!net.owns("ferry-28000"));
        assert!(net.owns("ferry-28000-net"));
    }

    #[test]
    fn teardown_touches_only_the_labs_own_names() {
        let links = parse_link_list(
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n\
             2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP\n\
             7: ferry-28000-r@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue\n\
             9: ferry-2800-r@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue\n",
        );
        assert_eq!(links, ["lo", "eth0", "ferry-28000-r", "ferry-2800-r"]);
        let namespaces =
            parse_netns_list("ferry-28000-host-a (id: 2)\nferry-2800-net (id: 1)\nferry-28000-net\nblue\n");
        assert_eq!(namespaces, ["ferry-28000-host-a", "ferry-2800-net", "ferry-28000-net", "blue"]);
        let text: Vec<String> =
            teardown_commands("ferry-28000", &links, &namespaces).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            text,
            ["ip link del ferry-28000-r", "ip netns del ferry-28000-host-a", "ip netns del ferry-28000-net"]
        );
        assert!(teardown_commands("ferry-29000", &links, &namespaces).is_empty());
    }

    #[test]
    fn routes_of_the_labs_own_link_are_not_foreign() {
        let own = "10.237.96.0/24 dev ferry-28000-r proto kernel scope link src 10.237.96.254 \n";
        assert!(foreign_routes(own, "ferry-28000-r").is_empty());
        assert!(foreign_routes("", "ferry-28000-r").is_empty());
        let vpn = "10.237.96.0/24 dev tun0 scope link \n";
        assert_eq!(foreign_routes(vpn, "ferry-28000-r"), ["10.237.96.0/24 dev tun0 scope link"]);
    }

    #[test]
    fn default_port_base_is_stable_and_spread() {
        let a = default_port_base(Path::new("/tmp/lab-a"));
        assert_eq!(a, default_port_base(Path::new("/tmp/lab-a")));
        assert!((10_000..32_000).contains(&a) && a.is_multiple_of(1000));
    }
}
