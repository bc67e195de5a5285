//! Finding and reading the cluster file.

use std::path::PathBuf;

use ferry_model::ClusterSpec;

/// The `--cluster` flag shared by every command that talks to hosts.
#[derive(Debug, clap::Args)]
pub struct ClusterArg {
    /// Cluster file (TOML, `[[host]]` tables). Default: the lab's cluster.toml when a lab
    /// is up ($FERRY_LAB_DIR or the default lab directory).
    #[arg(long = "cluster", env = "FERRY_CLUSTER", value_name = "FILE")]
    cluster: Option<PathBuf>,
}

impl ClusterArg {
    /// Reads and validates the cluster file; every problem is in the error, one per line.
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
