//! `ferry lab ...`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use ferry_lab::{CheckConfig, LabError, MemoryMix, UpConfig};

use crate::show::{out, Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// How long a guest may take from its start to its first heartbeat: about 6 s on an idle
/// machine, over 40 s measured on a 2-core one running two tests' guests.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Lab subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start a lab: N libvirtd "hosts" on this machine and M tiny guests spread over them.
    /// Idempotent: starts only what is not running.
    #[command(after_help = crate::examples::LAB_UP)]
    Up {
        #[command(flatten)]
        dir: DirArg,
        /// Number of hosts (libvirtd daemons), 1 to 9.
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        /// Number of guests, spread round-robin over the hosts.
        #[arg(long, default_value_t = 2)]
        vms: usize,
        /// Memory per guest, MiB.
        #[arg(long, default_value_t = 128)]
        mem: u64,
        /// Memory each guest dirties per second, MiB/s.
        #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
        dirty: f64,
        /// What each new guest's working set holds: percent of pages all zero, of text
        /// (compresses 3-4x with zstd) and random (incompressible); they must add up to 100.
        #[arg(long, value_name = "ZERO:TEXT:RANDOM", default_value_t = MemoryMix::DEFAULT)]
        memory_mix: MemoryMix,
        /// First of the 1000 ports the lab uses, on 127.0.0.1 or, with --link, in its own
        /// namespaces, whose addresses derive from it too (default: derived from --dir).
        #[arg(long)]
        port_base: Option<u16>,
        /// Cache for the guest kernel and initramfs (default: DIR/cache).
        #[arg(long, env = "FERRY_LAB_CACHE")]
        cache: Option<PathBuf>,
        /// Give each host its own network namespace on a lab bridge, its outbound traffic
        /// shaped to this rate, MiB/s, and shared by all its migrations (default: every host
        /// on 127.0.0.1, unshaped).
        #[arg(long, value_name = "MIB_S")]
        link: Option<u64>,
        /// How ferry, virsh and the hosts reach each libvirtd: `tls` (the lab's own CA,
        /// client certificates verified, migration streams TLS-only), `ssh` (an sshd per
        /// host, a lab key and known-hosts file) or `tcp` (plaintext, no authentication).
        /// Default: an existing lab's, else tls.
        #[arg(long, value_name = "tls|ssh|tcp")]
        transport: Option<ferry_lab::Transport>,
    },
    /// Hosts (pid, port, guests) and guests (host, state, last heartbeat).
    #[command(after_help = crate::examples::LAB_STATUS)]
    Status {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Exit 0 only if every guest runs on exactly one host, beats, never restarted, and
    /// its memory and disk were never found corrupt.
    #[command(after_help = crate::examples::LAB_CHECK)]
    Check {
        #[command(flatten)]
        dir: DirArg,
        /// A guest allowed to have restarted (after a cold move). Repeatable.
        #[arg(long = "allow-restart", value_name = "VM")]
        allow_restart: Vec<String>,
    },
    /// Stop every process of the lab and remove its network namespaces (--link). Removes
    /// nothing else outside DIR.
    #[command(after_help = crate::examples::LAB_DOWN)]
    Down {
        #[command(flatten)]
        dir: DirArg,
        /// Also delete DIR.
        #[arg(long)]
        purge: bool,
    },
}

/// The lab directory flag shared by every lab command.
#[derive(Debug, clap::Args)]
pub struct DirArg {
    /// Lab directory (default: $XDG_STATE_HOME/ferry/lab).
    #[arg(long = "dir", env = "FERRY_LAB_DIR")]
    dir: Option<PathBuf>,
}

impl DirArg {
    fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(ferry_lab::default_dir)
    }
}

/// Runs a lab subcommand.
pub fn run(command: LabCommand, output: Output) -> ExitCode {
    let result = match command {
        LabCommand::Up { dir, hosts, vms, mem, dirty, memory_mix, port_base, cache, link, transport } => {
            let config = UpConfig {
                dir: dir.path(),
                hosts,
                vms,
                mem_mib: mem,
                dirty_mib_s: dirty,
                memory_mix,
                port_base,
                cache_dir: cache,
                boot_timeout: BOOT_TIMEOUT,
                link_mib_s: link,
                transport,
            };
            ferry_lab::up(&config).and_then(|_| print_status(&config.dir, output))
        }
        LabCommand::Status { dir } => print_status(&dir.path(), output),
        LabCommand::Check { dir, allow_restart } => {
            let config = CheckConfig { allow_restart, fresh_within: Duration::from_secs(5), boot_within: BOOT_TIMEOUT };
            ferry_lab::check(&dir.path(), &config).map(|verdicts| {
                print_checks(&verdicts, output);
                if verdicts.iter().all(|v| v.ok()) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_FAILURE)
                }
            })
        }
        LabCommand::Down { dir, purge } => ferry_lab::down(&dir.path(), purge).map(|stopped| {
            if output == Output::Json {
                out!("{}", serde_json::json!({ "stopped_processes": stopped }));
            } else {
                out!("lab down: stopped {stopped} processes");
            }
            ExitCode::SUCCESS
        }),
    };
    result.unwrap_or_else(|e| report_error(&e))
}

fn report_error(error: &LabError) -> ExitCode {
    let mut text = format!("ferry lab: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{text}");
    ExitCode::from(if error.is_bad_input() { EXIT_BAD_INPUT } else { EXIT_FAILURE })
}

fn print_status(dir: &std::path::Path, output: Output) -> Result<ExitCode, LabError> {
    let status = ferry_lab::status(dir)?;
    if output == Output::Json {
        out!("{}", serde_json::to_string_pretty(&status).expect("status serialises"));
        return Ok(ExitCode::SUCCESS);
    }
    out!("lab {}", status.dir);
    out!("{:<8} {:<8} {:<38} GUESTS", "HOST", "PID", "URI");
    for host in &status.hosts {
        let pid = host.pid.map_or("down".to_string(), |p| p.to_string());
        let guests = match &host.error {
            Some(e) => format!("({e})"),
            None => host.running.join(" "),
        };
        out!("{:<8} {:<8} {:<38} {}", host.name, pid, host.uri, guests);
    }
    out!();
    out!("{:<8} {:<10} {:<10} {:>8} {:>10} {:>9}", "GUEST", "HOST", "STATE", "SEQ", "UPTIME", "LOG AGE");
    for vm in &status.vms {
        let (host, state) = match (vm.running_on.as_slice(), vm.paused_on.as_slice(), vm.defined_on.as_slice()) {
            ([one], [], _) => (one.clone(), "running"),
            ([one], paused, _) => (format!("{one}+{}", paused.join(",")), "running+paused"),
            ([], [one, ..], _) => (one.clone(), "paused"),
            ([], [], [one, ..]) => (one.clone(), "stopped"),
            ([], [], []) => ("-".to_string(), "missing"),
            (many, _, _) => (many.join(","), "TWICE"),
        };
        out!(
            "{:<8} {:<10} {:<10} {:>8} {:>10} {:>9}",
            vm.name,
            host,
            state,
            vm.last_seq.map_or("-".into(), |s| s.to_string()),
            vm.uptime_s.map_or("-".into(), |u| format!("{u:.1} s")),
            vm.log_age_s.map_or("-".into(), |a| format!("{a:.1} s")),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_checks(verdicts: &[ferry_lab::VmCheck], output: Output) {
    if output == Output::Json {
        out!("{}", serde_json::to_string_pretty(verdicts).expect("verdicts serialise"));
        return;
    }
    for v in verdicts {
        let host = v.host.as_deref().unwrap_or("-");
        let uptime = v.uptime_s.map_or("-".into(), |u| format!("{u:.1} s"));
        if v.ok() {
            out!("ok    {:<8} on {:<8} uptime {:>9}  {} heartbeats", v.name, host, uptime, v.heartbeats);
        } else {
            out!("FAIL  {:<8} on {:<8} uptime {:>9}  {}", v.name, host, uptime, v.problems.join("; "));
        }
    }
}
