//! Shared by the integration tests: running the `ferry` binary and owning a lab.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the ferry binary built for these tests, under a watchdog: a ferry that hangs fails
/// its test with its threads' stacks instead of stalling the whole suite.
pub fn ferry(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("FERRY_LAB_CACHE", cache_dir())
        // Runs are journaled; tests never write to the user's state directory.
        .env("FERRY_STATE", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("journal.db"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ferry binary runs");
    wait_or_fail(child, &format!("ferry {}", args.join(" ")))
}

/// The longest any one command of a test may take; `FERRY_TEST_TIMEOUT_S` overrides it.
fn command_timeout() -> Duration {
    let seconds = std::env::var("FERRY_TEST_TIMEOUT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    Duration::from_secs(seconds)
}

/// Waits for a child whose output is piped; past [`command_timeout`] it is killed and the
/// test fails with what it printed and, when gdb is there, where each of its threads was.
pub fn wait_or_fail(mut child: Child, what: &str) -> Output {
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + command_timeout();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let stacks = Command::new("gdb")
                .args(["-batch", "-p", &child.id().to_string(), "-ex", "thread apply all bt"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| format!("(no gdb: {e})"));
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
            panic!(
                "{what} still ran after {:?}; killed.\nstdout:\n{}\nstderr:\n{}\nstacks:\n{stacks}",
                command_timeout(),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

/// Reads a child's pipe to its end on a thread of its own, so that the child never blocks
/// on a full pipe while the caller waits; nothing when the pipe was taken before.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// The guest image cache shared by every test lab, so the kernel is fetched once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-cache")
}

/// A fresh directory for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A lab owned by one test: brought up on creation, torn down and removed on drop, even
/// when the test fails.
pub struct TestLab {
    /// The lab directory.
    pub dir: PathBuf,
}

impl TestLab {
    /// `ferry lab up` in a fresh directory with its own port block.
    pub fn up(name: &str, port_base: u16, args: &[&str]) -> TestLab {
        let dir = test_dir(name);
        let lab = TestLab { dir };
        let port = port_base.to_string();
        let mut full = vec!["lab", "up", "--dir", lab.dir_str(), "--port-base", &port];
        full.extend(args);
        let out = ferry(&full);
        assert!(
            out.status.success(),
            "lab up failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// The lab directory as a string.
    pub fn dir_str(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// `ferry lab check` must pass.
    pub fn check_ok(&self) {
        let out = ferry(&["lab", "check", "--dir", self.dir_str()]);
        assert!(
            out.status.success(),
            "lab check failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ferry lab status --output json`.
    pub fn status_json(&self) -> serde_json::Value {
        let out = ferry(&["lab", "status", "--dir", self.dir_str(), "--output", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }

    /// The libvirt URI of a lab host.
    pub fn uri(&self, host: &str) -> String {
        let status = self.status_json();
        status["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["name"] == host)
            .and_then(|h| h["uri"].as_str())
            .expect("host is in the lab")
            .to_string()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        // FERRY_KEEP_FAILED_LABS=1 keeps a failed test's lab directory (serial logs, daemon
        // logs, journal) for a look after; its processes stop either way.
        let keep = std::thread::panicking() && std::env::var_os("FERRY_KEEP_FAILED_LABS").is_some();
        let down: &[&str] = if keep { &["lab", "down", "--dir"] } else { &["lab", "down", "--purge", "--dir"] };
        let _ = ferry(&[down, &[self.dir_str()]].concat());
    }
}

/// Pids of the lab's processes: command line mentions `dir` or one of `uuids` (QEMU).
pub fn processes_under(dir: &Path, uuids: &[String]) -> Vec<u32> {
    let mut needles = vec![dir.to_str().expect("utf-8 path").to_string()];
    needles.extend(uuids.iter().map(|u| format!("-uuid {u} ")));
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
            .unwrap_or(true);
        if needles.iter().any(|n| cmdline.contains(n.as_str())) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// The QEMU process of a guest, by its UUID.
pub fn qemu_pid(uuid: &str) -> Option<u32> {
    processes_under(Path::new("/nonexistent-ferry-lab"), &[uuid.to_string()]).into_iter().next()
}

/// SIGKILL.
pub fn kill9(pid: u32) {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill runs");
    assert!(status.success());
}

impl TestLab {
    /// `ferry move ... --output json` against this lab; returns (exit code, summary).
    pub fn ferry_move(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        self.ferry_move_with(&self.dir.join("cluster.toml"), &[], args)
    }

    /// `ferry move ... --output json` with `cluster` and `extra` options (a `--state`).
    pub fn ferry_move_with(&self, cluster: &Path, extra: &[&str], args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let mut full = vec!["move", "--cluster", path_str(cluster), "--output", "json"];
        full.extend(extra);
        full.extend(args);
        let out = ferry(&full);
        let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ferry move printed no JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), summary)
    }

    /// UUIDs of the lab's guests.
    pub fn uuids(&self) -> Vec<String> {
        let status = self.status_json();
        status["vms"].as_array().expect("vms").iter().map(|v| v["uuid"].as_str().expect("uuid").to_string()).collect()
    }

    /// The status entry of one guest.
    pub fn vm_status(&self, vm: &str) -> serde_json::Value {
        let status = self.status_json();
        status["vms"].as_array().expect("vms").iter().find(|v| v["name"] == vm).expect("guest in the lab").clone()
    }

    /// Waits (up to 30 s) until `host` holds `vm`'s paused incoming copy: the migration is
    /// under way in libvirt. Before that, a source libvirtd still setting it up (a TLS
    /// handshake with the target) gives it up when its client goes.
    pub fn wait_incoming(&self, vm: &str, host: &str) {
        let waited = std::time::Instant::now();
        while self.vm_status(vm)["paused_on"] != serde_json::json!([host]) {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(30),
                "the migration of {vm} never reached {host}: {:#}",
                self.vm_status(vm)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The last heartbeat in a guest's serial log.
    pub fn last_heartbeat(&self, vm: &str) -> ferry_heartbeat::Heartbeat {
        let log = std::fs::read_to_string(self.dir.join("vms").join(vm).join("serial.log")).expect("serial log");
        ferry_heartbeat::analyze(&log).last.expect("a heartbeat")
    }

    /// Files in a host's local pool directory.
    pub fn pool_files(&self, host: &str) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(self.dir.join("hosts").join(host).join("pool"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// `virsh -c URI ARGS...` stdout; panics on failure.
    pub fn virsh(&self, host: &str, args: &[&str]) -> String {
        let out = Command::new("virsh").arg("-c").arg(self.uri(host)).args(args).output().expect("virsh runs");
        assert!(out.status.success(), "virsh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ferry lab check` with extra arguments must pass.
    pub fn check_ok_with(&self, extra: &[&str]) {
        let mut args = vec!["lab", "check", "--dir", self.dir_str()];
        args.extend(extra);
        let out = ferry(&args);
        assert!(
            out.status.success(),
            "lab check failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl TestLab {
    /// Every guest runs on exactly one host and is defined on no other; every volume in a
    /// host's local pool is the disk of a guest running there, except those `kept` names as
    /// (host, file). `context` (a report, a seed) is printed with any failure.
    pub fn assert_each_vm_once_and_no_stray_volume(&self, kept: &[(String, String)], context: &dyn Fn() -> String) {
        let status = self.status_json();
        let mut disks: Vec<(String, String)> = kept.to_vec();
        for vm in status["vms"].as_array().expect("vms") {
            let name = vm["name"].as_str().expect("name");
            let running: Vec<String> = serde_json::from_value(vm["running_on"].clone()).expect("running_on");
            let defined: Vec<String> = serde_json::from_value(vm["defined_on"].clone()).expect("defined_on");
            assert_eq!(running.len(), 1, "{name} runs on {running:?}\n{}", context());
            assert!(defined.is_empty(), "{name} runs on {running:?} and is also defined on {defined:?}\n{}", context());
            disks.push((running[0].clone(), format!("{name}.qcow2")));
        }
        let hosts: Vec<String> = status["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|h| h["name"].as_str().expect("host name").to_string())
            .collect();
        for host in hosts {
            for file in self.pool_files(&host) {
                assert!(
                    disks.contains(&(host.clone(), file.clone())),
                    "{file} on {host} is the disk of no guest there\n{}",
                    context()
                );
            }
        }
    }
}

/// The run id a ferry command printed (`run ID …`).
pub fn printed_run_id(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
}

/// A path as the `&str` a command line takes.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Reads `child`'s stderr until a line contains `needle`; the rest is drained on a thread of
/// its own, so that the child never blocks on a full pipe. Returns the lines read so far.
pub fn wait_for_line(child: &mut Child, needle: &str, timeout: Duration) -> Vec<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    while started.elapsed() < timeout {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return lines;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {timeout:?}:\n{}", lines.join("\n"));
}

/// The run id on the first line `child` prints (`run ID …`); the rest of its stdout is
/// drained, so that it never writes into a closed pipe.
pub fn stdout_run_id(child: &mut Child) -> String {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    printed_run_id(&line).unwrap_or_else(|| panic!("no run id: {line:?}"))
}
