//! Reading a plan, its cluster and the checks to waive, every problem collected.

use std::path::Path;

use ferry_plan::Plan;
use ferry_preview::checks::CheckName;

use crate::cluster::{self, Cluster};

/// A plan and what it runs against.
pub struct Inputs {
    /// The plan, parsed.
    pub plan: Plan,
    /// The cluster file, or the simulated fleet, parsed.
    pub cluster: Cluster,
    /// Checks whose failures become warnings.
    pub ignore: Vec<CheckName>,
}

/// Reads the plan file and the cluster, and parses the `--ignore` names. On any problem,
/// all of them, one per line (each naming file, line and field where there is one).
pub fn load(plan: &Path, cluster: Option<&Path>, ignore: &[String]) -> Result<Inputs, String> {
    let mut problems = Vec::new();
    let ignore: Vec<CheckName> = ignore
        .iter()
        .filter_map(|name| name.parse().map_err(|e: String| problems.push(format!("--ignore: {e}"))).ok())
        .collect();
    let plan_name = plan.display().to_string();
    let plan = match std::fs::read_to_string(plan) {
        Ok(text) => ferry_plan::parse_plan(&plan_name, &text)
            .map_err(|errors| problems.extend(errors.iter().map(ToString::to_string)))
            .ok(),
        Err(e) => {
            problems.push(format!("{plan_name}: {e}"));
            None
        }
    };
    let cluster = cluster::read(cluster).map_err(|e| problems.push(e)).ok();
    match (plan, cluster) {
        (Some(plan), Some(cluster)) if problems.is_empty() => Ok(Inputs { plan, cluster, ignore }),
        _ => Err(problems.join("\n")),
    }
}
