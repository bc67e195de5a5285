//! Finding and reading the cluster: a cluster file of real hosts, or a simulated fleet
//! (`sim:FILE`).

use std::path::{Path, PathBuf};

use ferry_model::ClusterSpec;
use ferry_sim::Fleet;

/// What a cluster argument names.
#[derive(Debug, Clone)]
pub enum Cluster {
    /// Real hosts, reached through libvirt.
    Hosts(ClusterSpec),
    /// A simulated fleet.
    Sim(Box<Fleet>),
}

impl Cluster {
    /// The hosts, as a cluster file would declare them.
    pub fn spec(&self) -> ClusterSpec {
        match self {
            Cluster::Hosts(spec) => spec.clone(),
            Cluster::Sim(fleet) => fleet.cluster(),
        }
    }
}

/// The prefix of a simulated fleet in a cluster argument.
pub const SIM_PREFIX: &str = "sim:";

/// Whether `location` names a simulated fleet (which runs on virtual time).
pub fn is_sim(location: Option<&Path>) -> bool {
    location.and_then(Path::to_str).is_some_and(|p| p.starts_with(SIM_PREFIX))
}

/// Reads and validates the cluster file or the fleet `location` names (the lab's cluster
/// file when `None`); every problem is in the error, one per line.
pub fn read(location: Option<&Path>) -> Result<Cluster, String> {
    if let Some(file) = location.and_then(Path::to_str).and_then(|p| p.strip_prefix(SIM_PREFIX)) {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        return Fleet::parse(file, &text)
            .map(|fleet| Cluster::Sim(Box::new(fleet)))
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }
    read_hosts(location).map(|(_, spec)| Cluster::Hosts(spec))
}

/// Reads and validates a cluster file of real hosts (the lab's when `None`); every problem
/// is in the error, one per line.
pub fn read_hosts(location: Option<&Path>) -> Result<(PathBuf, ClusterSpec), String> {
    let path = match location {
        Some(path) => path.to_path_buf(),
        None => {
            let lab_dir = std::env::var_os("FERRY_LAB_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(ferry_lab::default_dir);
            let path = lab_dir.join("cluster.toml");
            if !path.exists() {
                return Err(format!(
                    "no cluster file: pass --cluster FILE, or bring up a lab (`ferry lab up`), which writes {}",
                    path.display()
                ));
            }
            path
        }
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
    ferry_plan::parse_cluster(&name, &text)
        .map(|spec| (path, spec))
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

/// Whether a run's cluster is a simulated fleet's.
pub fn simulated(cluster: &ClusterSpec) -> bool {
    cluster.hosts.iter().any(|h| h.uri.starts_with(ferry_sim::SIM_URI_PREFIX))
}

/// A host name that the cluster does not have: the error, with the closest name.
pub fn unknown_host(flag: &str, name: &str, cluster: &ClusterSpec) -> String {
    let names = cluster.hosts.iter().map(|h| h.name.as_str());
    let hint = ferry_plan::closest(name, names).map(|c| format!("; did you mean {c}?")).unwrap_or_default();
    format!("{flag} {name}: no such host in the cluster{hint}")
}
