//! The `--cluster` flag: a cluster file of real hosts, or a simulated fleet (`sim:FILE`).

use std::path::{Path, PathBuf};

/// The `--cluster` flag shared by every command that talks to hosts.
#[derive(Debug, clap::Args)]
pub struct ClusterArg {
    /// Cluster file (TOML, `[[host]]` tables), or `sim:FILE` for a simulated fleet (TOML or
    /// JSON, see `ferry sim gen`), run in virtual time. Default: the first that exists of
    /// $XDG_CONFIG_HOME/ferry/cluster.toml (~/.config), /etc/ferry/cluster.toml, and the
    /// lab's cluster.toml ($FERRY_LAB_DIR or the default lab directory).
    #[arg(long = "cluster", env = "FERRY_CLUSTER", value_name = "FILE")]
    cluster: Option<PathBuf>,
}

impl ClusterArg {
    /// What the flag names, if given.
    pub fn location(&self) -> Option<&Path> {
        self.cluster.as_deref()
    }

    /// Whether `--cluster` names a simulated fleet (which runs on virtual time).
    pub fn is_sim(&self) -> bool {
        ferry_runs::cluster::is_sim(self.location())
    }
}

/// `--deadline` in Unix seconds (see `ferry_plan::time::parse_deadline`): a time of day is
/// this machine's local one, and a duration counts from now — on a simulated fleet, from its
/// virtual start.
pub fn deadline_arg(text: &str, cluster: &ferry_runs::cluster::Cluster) -> Result<i64, String> {
    let now = match cluster {
        ferry_runs::cluster::Cluster::Sim(fleet) => {
            jiff::Timestamp::from_second(fleet.start_unix()).map_err(|e| format!("--deadline: {e}"))?
        }
        ferry_runs::cluster::Cluster::Hosts(_) => jiff::Timestamp::now(),
    };
    ferry_plan::time::parse_deadline(text, now, &jiff::tz::TimeZone::system()).map_err(|e| format!("--deadline: {e}"))
}
