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

/// Where a cluster file is looked for when neither `--cluster` nor `$FERRY_CLUSTER` names
/// one, in order: the user's (`$XDG_CONFIG_HOME/ferry/cluster.toml`, by default under
/// `~/.config`), the machine's (`/etc/ferry/cluster.toml`), then the lab's (`$FERRY_LAB_DIR`
/// or the default lab directory, where `ferry lab up` writes it).
pub fn default_locations() -> Vec<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let config = set("XDG_CONFIG_HOME").or_else(|| set("HOME").map(|home| home.join(".config")));
    let lab_dir = set("FERRY_LAB_DIR").unwrap_or_else(ferry_lab::default_dir);
    config
        .map(|c| c.join("ferry").join("cluster.toml"))
        .into_iter()
        .chain([PathBuf::from("/etc/ferry/cluster.toml"), lab_dir.join("cluster.toml")])
        .collect()
}

/// The first of `candidates` that exists, or the error that lists them all.
fn first_existing(candidates: &[PathBuf]) -> Result<PathBuf, String> {
    candidates.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "no cluster file: pass --cluster FILE (or set FERRY_CLUSTER), write one at {}, or bring up a lab \
             (`ferry lab up`, which writes the last)",
            tried.join(", ")
        )
    })
}

/// Reads and validates a cluster file of real hosts (the first of [`default_locations`]
/// when `None`); every problem is in the error, one per line.
pub fn read_hosts(location: Option<&Path>) -> Result<(PathBuf, ClusterSpec), String> {
    let path = match location {
        Some(path) => path.to_path_buf(),
        None => first_existing(&default_locations())?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cluster_file_that_exists_is_taken_and_none_names_every_place() {
        let dir = std::env::temp_dir().join(format!("ferry-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let (user, machine, lab) = (dir.join("user.toml"), dir.join("machine.toml"), dir.join("lab.toml"));
        std::fs::write(&machine, "").expect("written");
        std::fs::write(&lab, "").expect("written");
        let candidates = [user.clone(), machine.clone(), lab];
        assert_eq!(first_existing(&candidates), Ok(machine));
        std::fs::write(&user, "").expect("written");
        assert_eq!(first_existing(&candidates), Ok(user));
        let _ = std::fs::remove_dir_all(&dir);
        let missing = first_existing(&candidates).expect_err("none left");
        assert!(missing.contains("user.toml") && missing.contains("lab.toml"), "{missing}");
    }

    #[test]
    fn the_users_file_comes_before_the_machines_and_the_labs_last() {
        let places = default_locations();
        assert_eq!(places.len(), 3, "{places:?}");
        assert!(places[0].ends_with("ferry/cluster.toml") && places[0] != Path::new("/etc/ferry/cluster.toml"));
        assert_eq!(places[1], Path::new("/etc/ferry/cluster.toml"));
        assert!(places[2].ends_with("cluster.toml"));
    }
}
