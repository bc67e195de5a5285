//! Finding and reading the cluster: a cluster file of real hosts, or a simulated fleet
//! (`--cluster sim:FILE`).

use std::path::PathBuf;

use ferry_model::ClusterSpec;
use ferry_sim::Fleet;

/// The `--cluster` flag shared by every command that talks to hosts.
#[derive(Debug, clap::Args)]
pub struct ClusterArg {
    /// Cluster file (TOML, `[[host]]` tables), or `sim:FILE` for a simulated fleet (TOML or
    /// JSON, see `ferry sim gen`), run in virtual time. Default: the lab's cluster.toml when
    /// a lab is up ($FERRY_LAB_DIR or the default lab directory).
    #[arg(long = "cluster", env = "FERRY_CLUSTER", value_name = "FILE")]
    cluster: Option<PathBuf>,
}

/// What `--cluster` names.
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

/// The prefix of a simulated fleet in `--cluster`.
const SIM_PREFIX: &str = "sim:";

impl ClusterArg {
    /// Whether `--cluster` names a simulated fleet (which runs on virtual time).
    pub fn is_sim(&self) -> bool {
        self.cluster.as_ref().and_then(|p| p.to_str()).is_some_and(|p| p.starts_with(SIM_PREFIX))
    }

    /// Reads and validates the cluster file or the fleet; every problem is in the error, one
    /// per line.
    pub fn cluster(&self) -> Result<Cluster, String> {
        if let Some(file) = self.cluster.as_ref().and_then(|p| p.to_str()).and_then(|p| p.strip_prefix(SIM_PREFIX)) {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            return Fleet::parse(file, &text)
                .map(|fleet| Cluster::Sim(Box::new(fleet)))
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
        }
        self.load().map(|(_, spec)| Cluster::Hosts(spec))
    }

    /// Reads and validates a cluster file of real hosts; every problem is in the error, one
    /// per line.
    pub fn load(&self) -> Result<(PathBuf, ClusterSpec), String> {
        let path = match &self.cluster {
            Some(path) => path.clone(),
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
}
