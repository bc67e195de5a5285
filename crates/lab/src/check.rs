//! `lab status` and `lab check`: where each guest runs, and whether its serial log proves it
//! alive and intact.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use ferry_heartbeat::{analyze, LogReport, Problem};
use serde::Serialize;
use virt::domain::DomainState;

use crate::layout::Layout;
use crate::{connect, process, LabError, LabState};

/// A host as `lab status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// Host name.
    pub name: String,
    /// libvirt URI.
    pub uri: String,
    /// libvirtd's pid when running.
    pub pid: Option<u32>,
    /// Guests running on it.
    pub running: Vec<String>,
    /// Why it could not be asked, if it could not.
    pub error: Option<String>,
}

/// A guest as `lab status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// Hosts where it runs (one, when all is well).
    pub running_on: Vec<String>,
    /// Hosts where it is paused (a migration in flight, or a leftover copy).
    pub paused_on: Vec<String>,
    /// Hosts where it is defined but not running.
    pub defined_on: Vec<String>,
    /// Last heartbeat's sequence number.
    pub last_seq: Option<u64>,
    /// Last heartbeat's guest uptime, seconds.
    pub uptime_s: Option<f64>,
    /// Seconds since the serial log last changed.
    pub log_age_s: Option<f64>,
    /// The memory mix its boot line reports (`ZERO:TEXT:RANDOM` percent of pages).
    pub memory_mix: Option<String>,
}

/// The whole lab as `lab status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// Lab directory.
    pub dir: String,
    /// Hosts.
    pub hosts: Vec<HostStatus>,
    /// Guests.
    pub vms: Vec<VmStatus>,
}

/// Where every guest runs and its last heartbeat.
pub fn status(dir: &Path) -> Result<LabStatus, LabError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let state = LabState::load(&dir)?;
    let layout = Layout { dir: dir.clone(), port_base: state.port_base, transport: state.transport };
    let mut hosts = Vec::new();
    let mut vms: Vec<VmStatus> = state
        .vms
        .iter()
        .map(|vm| {
            let log = fs::read_to_string(layout.serial_log(&vm.name)).unwrap_or_default();
            let report = analyze(&log);
            VmStatus {
                name: vm.name.clone(),
                uuid: vm.uuid.clone(),
                running_on: Vec::new(),
                paused_on: Vec::new(),
                defined_on: Vec::new(),
                last_seq: report.last.as_ref().map(|h| h.seq),
                uptime_s: report.last.as_ref().map(|h| h.uptime_ms as f64 / 1000.0),
                log_age_s: log_age(&layout.serial_log(&vm.name)),
                memory_mix: report.boot.and_then(|boot| boot.memory_mix).map(|mix| mix.to_string()),
            }
        })
        .collect();
    for (i, host) in state.hosts.iter().enumerate() {
        let pid = process::read_pid(&layout.host(i).pid_file());
        let mut status =
            HostStatus { name: host.name.clone(), uri: host.uri.clone(), pid, running: Vec::new(), error: None };
        match pid.ok_or_else(|| "libvirtd is not running".to_string()).and_then(|_| {
            let conn = connect(host).map_err(|e| e.to_string())?;
            conn.list_all_domains(0).map_err(|e| e.message().to_string())
        }) {
            Ok(domains) => {
                for domain in domains {
                    let uuid = domain.uuid_string().unwrap_or_default();
                    let state = domain.state().map(|(s, _)| s).ok();
                    let running = state.is_some_and(|s| s.is(DomainState::Running));
                    let paused = state.is_some_and(|s| s.is(DomainState::Paused));
                    let name = domain.name().unwrap_or_default();
                    if running {
                        status.running.push(name);
                    }
                    if let Some(vm) = vms.iter_mut().find(|v| v.uuid == uuid) {
                        let list = if running {
                            &mut vm.running_on
                        } else if paused {
                            &mut vm.paused_on
                        } else {
                            &mut vm.defined_on
                        };
                        list.push(host.name.clone());
                    }
                }
            }
            Err(e) => status.error = Some(e),
        }
        hosts.push(status);
    }
    Ok(LabStatus { dir: dir.display().to_string(), hosts, vms })
}

/// What `lab check` accepts.
#[derive(Debug, Clone, Default)]
pub struct CheckConfig {
    /// Guests allowed to have restarted (a cold move restarts its guest on purpose).
    pub allow_restart: Vec<String>,
    /// How long to wait for a fresh heartbeat from a guest that kept running.
    pub fresh_within: Duration,
    /// How long to wait for one from a guest allowed to have restarted: it may still be
    /// booting, and a TCG boot on a busy machine takes several times its idle 6 s.
    pub boot_within: Duration,
}

/// One guest's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct VmCheck {
    /// Domain name.
    pub name: String,
    /// The host it runs on, when exactly one.
    pub host: Option<String>,
    /// Heartbeats seen in its log.
    pub heartbeats: u64,
    /// Guest uptime at the last heartbeat, seconds.
    pub uptime_s: Option<f64>,
    /// Everything wrong with it; empty when healthy.
    pub problems: Vec<String>,
}

impl VmCheck {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Judges every guest: running on exactly one host, a fresh heartbeat, uptime never went
/// back, no corruption, no kernel trouble.
pub fn check(dir: &Path, config: &CheckConfig) -> Result<Vec<VmCheck>, LabError> {
    let lab = status(dir)?;
    let state = LabState::load(Path::new(&lab.dir))?;
    let layout = Layout { dir: lab.dir.clone().into(), port_base: state.port_base, transport: state.transport };
    let mut verdicts: Vec<VmCheck> = Vec::new();
    for vm in &lab.vms {
        let mut problems = Vec::new();
        match vm.running_on.len() {
            0 => problems.push(match vm.defined_on.as_slice() {
                [] => "runs on no host and is defined on none".to_string(),
                hosts => format!("not running (defined on {})", hosts.join(", ")),
            }),
            1 => {}
            _ => problems.push(format!("runs on {} hosts: {}", vm.running_on.len(), vm.running_on.join(", "))),
        }
        for host in &vm.paused_on {
            problems.push(format!("a paused copy on {host}"));
        }
        for host in &lab.hosts {
            if let Some(e) = &host.error {
                problems.push(format!("{} could not be asked: {e}", host.name));
            }
        }
        verdicts.push(VmCheck {
            name: vm.name.clone(),
            host: (vm.running_on.len() == 1).then(|| vm.running_on[0].clone()),
            heartbeats: 0,
            uptime_s: None,
            problems,
        });
    }

    // A heartbeat newer than the one seen at the start proves the guest is alive now.
    let start = Instant::now();
    let seen: Vec<u64> = read_reports(&layout, &lab).iter().map(|r| r.heartbeats).collect();
    let waits: Vec<Duration> = lab
        .vms
        .iter()
        .map(|vm| if config.allow_restart.contains(&vm.name) { config.boot_within } else { config.fresh_within })
        .collect();
    let mut reports: Vec<LogReport>;
    loop {
        reports = read_reports(&layout, &lab);
        let waiting = reports
            .iter()
            .zip(&seen)
            .zip(&waits)
            .any(|((r, seen), wait)| r.heartbeats <= *seen && start.elapsed() < *wait);
        if !waiting {
            break;
        }
        sleep(Duration::from_millis(250));
    }

    for ((verdict, report), seen) in verdicts.iter_mut().zip(&reports).zip(&seen) {
        verdict.heartbeats = report.heartbeats;
        verdict.uptime_s = report.last.as_ref().map(|h| h.uptime_ms as f64 / 1000.0);
        if report.heartbeats == 0 {
            verdict.problems.push("no heartbeat in its serial log".into());
        } else if report.heartbeats <= *seen {
            let age = log_age(&layout.serial_log(&verdict.name)).unwrap_or(f64::NAN);
            verdict.problems.push(format!("no new heartbeat: last one {age:.0} s ago"));
        }
        let restart_allowed = config.allow_restart.contains(&verdict.name);
        for problem in &report.problems {
            match problem {
                Problem::Restarted { .. } | Problem::UptimeWentBack { .. } if restart_allowed => {}
                problem => verdict.problems.push(problem.to_string()),
            }
        }
    }
    Ok(verdicts)
}

fn read_reports(layout: &Layout, lab: &crate::LabStatus) -> Vec<LogReport> {
    lab.vms.iter().map(|vm| analyze(&fs::read_to_string(layout.serial_log(&vm.name)).unwrap_or_default())).collect()
}

fn log_age(path: &Path) -> Option<f64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(modified).unwrap_or_default().as_secs_f64())
}
