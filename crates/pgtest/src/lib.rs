//! A private PostgreSQL server for ferry's tests and benchmarks.
//!
//! Each [`Server`] is a `postgres` process of its own: a copy of a template cluster (made once
//! per machine with `initdb`, then reused) in a temporary directory, listening on a free port
//! of 127.0.0.1 only, with password (SCRAM) authentication for TCP, run as `nobody` when the
//! caller is root (PostgreSQL refuses root). It is stopped, and its directory removed, when
//! the `Server` is dropped; the server also gets SIGINT (a fast shutdown) if the thread that
//! started it dies without dropping it, so a killed test leaves no server behind.
//!
//! No shell is involved: every program is started with its arguments as a vector.

use std::fs;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::{chown, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The role every server has, owner of the database [`DATABASE`].
pub const USER: &str = "ferry";
/// The database every server has, besides PostgreSQL's own.
pub const DATABASE: &str = "ferry";

/// How long a server may take to start or stop before it counts as failed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running (or stopped, see [`Server::stop`]) private PostgreSQL server.
#[derive(Debug)]
pub struct Server {
    dir: PathBuf,
    port: u16,
    password: String,
    settings: Vec<String>,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

/// How a server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Without fsync: for tests, which never outlive a power cut.
    Fast,
    /// PostgreSQL's defaults (every commit flushed): for benchmarks set against a durable
    /// SQLite journal.
    Durable,
}

impl Server {
    /// Starts a server without fsync (for tests). Call it from the thread that keeps the
    /// `Server`: the server is shut down when that thread ends.
    pub fn start() -> io::Result<Server> {
        Server::start_with(Durability::Fast)
    }

    /// Starts a server keeping its data as `durability` says.
    pub fn start_with(durability: Durability) -> io::Result<Server> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let user = unprivileged_user()?;
        let template = template(user)?;
        remove_dead_servers_directories();
        let dir = std::env::temp_dir().join(format!(
            "ferry-pgtest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        run(Command::new("cp").arg("-a").arg(template.join("data")).arg(&dir), "cp")?;
        if let Some((uid, gid)) = user {
            chown(&dir, Some(uid), Some(gid))?;
        }
        let password = fs::read_to_string(template.join("password"))?.trim().to_owned();
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_owned(),
            "unix_socket_directories=".to_owned(),
            "shared_buffers=16MB".to_owned(),
            "max_connections=40".to_owned(),
        ];
        if durability == Durability::Fast {
            settings.extend(["fsync=off", "synchronous_commit=off", "full_page_writes=off"].map(str::to_owned));
        }
        let mut server = Server { dir, port: free_port()?, password, settings, user, child: None };
        server.start_again()?;
        Ok(server)
    }

    /// The URL of database `database` as the server's role, with its password.
    pub fn url(&self, database: &str) -> String {
        self.url_with_password(database, &self.password)
    }

    /// The URL of database `database` with another password (to be refused).
    pub fn url_with_password(&self, database: &str, password: &str) -> String {
        format!("postgres://{USER}:{password}@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name`, owned by the server's role.
    pub fn create_database(&self, name: &str) -> io::Result<()> {
        let mut psql = Command::new(server_bin("psql")?);
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", USER, "-d", DATABASE])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")))
            .env("PGPASSWORD", &self.password);
        run(&mut psql, "psql")
    }

    /// Stops the server (a fast shutdown: sessions are ended, everything committed is
    /// kept), waiting for it to exit. [`Server::start_again`] brings it back.
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
        // SAFETY: `pid` is our own child, not yet waited for, so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + PATIENCE;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Err(io::Error::other("postgres did not stop within 60 s; killed"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the server again on the same port and data, waiting until it accepts
    /// connections.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = fs::File::create(self.dir.join("log"))?;
        let mut postgres = Command::new(server_bin("postgres")?);
        postgres.arg("-D").arg(self.dir.join("data")).arg("-p").arg(self.port.to_string());
        for setting in &self.settings {
            postgres.arg("-c").arg(setting);
        }
        postgres.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        as_user(&mut postgres, self.user);
        // SAFETY: prctl(2) is async-signal-safe, and the closure touches no memory of the
        // parent's.
        unsafe {
            postgres.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(postgres.spawn()?);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.ready() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    let log = fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                    return Err(io::Error::other(format!("postgres exited ({status}) at start:\n{log}")));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("postgres did not get ready within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server says it is ready: the status line of `postmaster.pid` (its
    /// eighth) reads "ready".
    fn ready(&self) -> bool {
        fs::read_to_string(self.dir.join("data").join("postmaster.pid"))
            .is_ok_and(|pid| pid.lines().nth(7).is_some_and(|status| status.trim() == "ready"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes the directories of servers whose test process is gone (killed before it could
/// drop them): `ferry-pgtest-PID-N` with no process PID.
fn remove_dead_servers_directories() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("ferry-pgtest-")) else { continue };
        let Some((pid, n)) = rest.split_once('-') else { continue };
        let ours = pid.parse::<u32>().is_ok() && n.parse::<u32>().is_ok();
        if ours && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The template cluster of this machine, made on first use: `data` (initdb's, with the
/// database [`DATABASE`]) and `password`. Made under a name of its own and renamed into
/// place, so that two processes making it at once both end with a whole one.
fn template(user: Option<(u32, u32)>) -> io::Result<PathBuf> {
    let version = run_output(Command::new(server_bin("postgres")?).arg("--version"))?;
    let major = version.split_whitespace().nth(2).and_then(|v| v.split('.').next()).unwrap_or("0").to_owned();
    let owner = user.map_or_else(|| my_uid().to_string(), |(uid, _)| uid.to_string());
    let template = std::env::temp_dir().join(format!("ferry-pgtest-template-{major}-{owner}"));
    if template.join("ready").exists() {
        return Ok(template);
    }
    let making = template.with_extension(format!("making-{}", std::process::id()));
    let _ = fs::remove_dir_all(&making);
    fs::create_dir(&making)?;
    fs::set_permissions(&making, fs::Permissions::from_mode(0o700))?;
    let password = random_hex(16)?;
    let password_file = making.join("password");
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&password_file)?
        .write_all(password.as_bytes())?;
    if let Some((uid, gid)) = user {
        chown(&making, Some(uid), Some(gid))?;
        chown(&password_file, Some(uid), Some(gid))?;
    }
    let data = making.join("data");
    let mut initdb = Command::new(server_bin("initdb")?);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["--no-sync", "-E", "UTF8", "--locale=C", "-U", USER, "--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", password_file.display()));
    as_user(&mut initdb, user);
    run(&mut initdb, "initdb")?;
    // The database, made in single-user mode: no server to start yet.
    let mut single = Command::new(server_bin("postgres")?);
    single.arg("--single").arg("-D").arg(&data).arg("postgres");
    single.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    as_user(&mut single, user);
    let mut child = single.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "CREATE DATABASE {DATABASE} OWNER {USER};")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "postgres --single: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    fs::write(making.join("ready"), b"")?;
    match fs::rename(&making, &template) {
        Ok(()) => Ok(template),
        // Another process made it meanwhile: use theirs.
        Err(_) if template.join("ready").exists() => {
            let _ = fs::remove_dir_all(&making);
            Ok(template)
        }
        Err(e) => Err(e),
    }
}

/// `nobody`'s uid and gid when this process is root (PostgreSQL will not run as root), else
/// `None`: run as ourselves.
fn unprivileged_user() -> io::Result<Option<(u32, u32)>> {
    if my_uid() != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"nobody"))
                .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        })
        .flatten()
        .map(Some)
        .ok_or_else(|| io::Error::other("no user nobody in /etc/passwd to run PostgreSQL as"))
}

/// This process's uid.
fn my_uid() -> u32 {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    unsafe { libc::getuid() }
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        // std drops root's supplementary groups itself when it sets the uid.
        command.uid(uid).gid(gid);
    }
}

/// A port of 127.0.0.1 free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A PostgreSQL program: on the PATH, else in the newest
/// `/usr/lib/postgresql/N/bin` (Debian keeps them off the PATH).
fn server_bin(name: &str) -> io::Result<PathBuf> {
    if let Some(found) = on_path(name) {
        return Ok(found);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
        .filter(|(_, p)| p.exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no PostgreSQL `{name}`: run scripts/setup")))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run(command: &mut Command, name: &str) -> io::Result<()> {
    run_output(command).map(drop).map_err(|e| io::Error::other(format!("{name}: {e}")))
}

fn run_output(command: &mut Command) -> io::Result<String> {
    let out = command.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_stops_and_starts_again_keeping_its_port() {
        let mut server = Server::start().expect("a server");
        let port = server.port();
        let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        assert!(listening(), "accepts connections once ready");
        server.create_database("second").expect("a second database");
        server.stop().expect("stops");
        assert!(!listening(), "stopped");
        server.start_again().expect("starts again");
        assert!(listening());
        let dir = server.dir.clone();
        drop(server);
        assert!(!dir.exists(), "its directory is removed");
        assert!(!listening());
    }
}
