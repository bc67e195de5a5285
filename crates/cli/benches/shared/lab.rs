//! What the lab benches that race `virsh migrate` share: a virsh migration as the driver
//! would do it, the parts of `ferry inventory` they need, and running ferry and virsh.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Instant;

use ferry_model::ClusterSpec;

pub(crate) struct VirshJob {
    pub(crate) vm: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) to_uri: String,
    pub(crate) migration_uri: String,
    pub(crate) listen_address: String,
    /// Host-local disks and the path of their copy on the target.
    pub(crate) disks: Vec<(LocalDisk, String)>,
    pub(crate) xml_file: PathBuf,
    /// `--bandwidth`, MiB/s, when the migration is capped.
    pub(crate) bandwidth_mib_s: Option<u64>,
}

impl VirshJob {
    /// The migration of `vm` to host `to` as ferry's driver would do it: its host-local
    /// disks copied into the target's pool of the same name, its destination XML in
    /// `xml_dir`, capped at `bandwidth_mib_s` when given.
    pub(crate) fn new(
        inventory: &Inventory,
        cluster: &ClusterSpec,
        vm: &Vm,
        to: &str,
        xml_dir: &Path,
        bandwidth_mib_s: Option<u64>,
    ) -> Result<VirshJob, String> {
        let to_spec = cluster.host(to).ok_or_else(|| format!("no {to} in the cluster"))?;
        let migration_uri = to_spec.migration_uri.clone().ok_or_else(|| format!("{to} has no migration_uri"))?;
        let mut disks = Vec::new();
        for disk in &vm.local {
            let pool = inventory
                .pools
                .get(&(to.to_string(), disk.pool.clone()))
                .ok_or_else(|| format!("{to} has no pool {}", disk.pool))?;
            disks.push((disk.clone(), format!("{pool}/{}", disk.volume)));
        }
        Ok(VirshJob {
            vm: vm.name.clone(),
            from: uri_of(cluster, &vm.host)?,
            to: to.to_string(),
            to_uri: to_spec.uri.clone(),
            listen_address: listen_address(&migration_uri),
            migration_uri,
            disks,
            xml_file: xml_dir.join(format!("{}-migrate.xml", vm.name)),
            bandwidth_mib_s,
        })
    }

    pub(crate) fn run(&self) -> Result<(), String> {
        let bandwidth = self.bandwidth_mib_s.map(|b| b.to_string());
        let mut args: Vec<&str> =
            vec!["migrate", "--live", "--p2p", "--persistent", "--undefinesource", "--auto-converge"];
        if let Some(b) = &bandwidth {
            args.extend(["--bandwidth", b]);
        }
        let xml_file = self.xml_file.to_str().expect("the target directory is UTF-8");
        if !self.disks.is_empty() {
            for (disk, _) in &self.disks {
                let capacity = disk.capacity.to_string();
                virsh(&self.to_uri, &["vol-create-as", &disk.pool, &disk.volume, &capacity, "--format", &disk.format])?;
            }
            let mut xml = virsh(&self.from, &["dumpxml", "--migratable", &self.vm])?;
            for (disk, target_path) in &self.disks {
                xml = xml.replace(&format!("'{}'", disk.path), &format!("'{target_path}'"));
            }
            std::fs::write(&self.xml_file, xml).map_err(|e| format!("{xml_file}: {e}"))?;
            args.extend(["--copy-storage-all", "--xml", xml_file, "--persistent-xml", xml_file]);
        }
        args.extend([
            self.vm.as_str(),
            self.to_uri.as_str(),
            "--migrateuri",
            self.migration_uri.as_str(),
            "--listen-address",
            self.listen_address.as_str(),
        ]);
        virsh(&self.from, &args).map(drop).map_err(|e| format!("{} -> {}: {e}", self.vm, self.to))
    }
}

/// What the bench needs of `ferry inventory`.
pub(crate) struct Inventory {
    pub(crate) vms: Vec<Vm>,
    /// (host, pool) → the pool's directory.
    pub(crate) pools: HashMap<(String, String), String>,
}

impl Inventory {
    /// The guests on `host`, in their numbers' order (vm-2 before vm-10).
    pub(crate) fn guests_on(&self, host: &str) -> Vec<&Vm> {
        let mut guests: Vec<&Vm> = self.vms.iter().filter(|v| v.host == host).collect();
        guests.sort_by_key(|v| v.name.trim_start_matches("vm-").parse::<u32>().unwrap_or(u32::MAX));
        guests
    }
}

pub(crate) struct Vm {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) local: Vec<LocalDisk>,
}

#[derive(Clone)]
pub(crate) struct LocalDisk {
    pub(crate) path: String,
    pub(crate) pool: String,
    pub(crate) volume: String,
    pub(crate) capacity: u64,
    pub(crate) format: String,
}

impl Inventory {
    pub(crate) fn from_json(json: &serde_json::Value) -> Result<Inventory, String> {
        if json["unreachable"].as_array().is_some_and(|u| !u.is_empty()) {
            return Err(format!("inventory: unreachable hosts {}", json["unreachable"]));
        }
        let str_of = |v: &serde_json::Value, key: &str| {
            v[key].as_str().map(String::from).ok_or_else(|| format!("inventory: no {key} in {v}"))
        };
        let mut pools = HashMap::new();
        for host in json["hosts"].as_array().ok_or("inventory: no hosts")? {
            for pool in host["pools"].as_array().ok_or("inventory: no pools")? {
                pools.insert((str_of(host, "name")?, str_of(pool, "name")?), str_of(pool, "path")?);
            }
        }
        let mut vms = Vec::new();
        for vm in json["vms"].as_array().ok_or("inventory: no vms")? {
            let mut local = Vec::new();
            for disk in vm["disks"].as_array().ok_or("inventory: no disks")? {
                if disk["locality"] != "host-local" {
                    continue;
                }
                let path = str_of(&disk["source"], "path")?;
                local.push(LocalDisk {
                    volume: path.rsplit('/').next().unwrap_or(&path).to_string(),
                    pool: str_of(disk, "pool")?,
                    capacity: disk["capacity"].as_u64().ok_or_else(|| format!("inventory: no capacity in {disk}"))?,
                    format: str_of(disk, "format")?,
                    path,
                });
            }
            vms.push(Vm { name: str_of(vm, "name")?, host: str_of(vm, "host")?, local });
        }
        Ok(Inventory { vms, pools })
    }
}

pub(crate) fn read_cluster(path: &Path) -> Result<ClusterSpec, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ferry_plan::parse_cluster(&path.display().to_string(), &text)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

pub(crate) fn uri_of(cluster: &ClusterSpec, host: &str) -> Result<String, String> {
    cluster.host(host).map(|h| h.uri.clone()).ok_or_else(|| format!("no {host} in the cluster"))
}

/// `tcp://ADDRESS[:PORT]` → `ADDRESS`: where the target binds its incoming migration, as
/// ferry's driver passes it.
pub(crate) fn listen_address(migration_uri: &str) -> String {
    let rest = migration_uri.split_once("://").map_or(migration_uri, |(_, r)| r);
    rest.rsplit_once(':').map_or(rest, |(host, _)| host).to_string()
}

pub(crate) fn ferry_env(log: &str) -> [(&'static str, String); 3] {
    [
        ("FERRY_LAB_CACHE", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-cache").display().to_string()),
        ("RUST_LOG", log.to_string()),
        ("NO_COLOR", "1".to_string()),
    ]
}

pub(crate) fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .envs(ferry_env("warn"))
        .output()
        .expect("the ferry binary runs")
}

/// `virsh -c URI ARGS...`: its stdout, or why it failed.
pub(crate) fn virsh(uri: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("virsh").arg("-c").arg(uri).args(args).output().map_err(|e| format!("virsh: {e}"))?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("virsh {}: {}", args.join(" "), text(&out.stderr).trim()))
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `jobs` with at most `width` at a time, in order, starting no new one after a
/// failure: each finished migration's wall time, ms, by VM, and every failure.
pub(crate) fn run_window(jobs: &[VirshJob], width: usize) -> (HashMap<&str, u64>, Vec<String>) {
    let mut failures = Vec::new();
    let mut walls = HashMap::new();
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        let mut queue = jobs.iter();
        let mut in_flight = 0;
        loop {
            while in_flight < width && failures.is_empty() {
                let Some(job) = queue.next() else { break };
                let done = done.clone();
                scope.spawn(move || {
                    let started = Instant::now();
                    let result = job.run().map(|()| (job.vm.as_str(), started.elapsed().as_millis()));
                    let _ = done.send(result);
                });
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let result = finished.recv().expect("every worker sends its result before it ends");
            in_flight -= 1;
            match result {
                Ok((vm, ms)) => {
                    walls.insert(vm, u64::try_from(ms).unwrap_or(u64::MAX));
                }
                Err(e) => failures.push(e),
            }
        }
    });
    (walls, failures)
}
