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
