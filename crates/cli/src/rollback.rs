//! `ferry rollback`: arguments and what it prints.

use std::process::ExitCode;

use ferry_runs::rollback::{Returned, Rollback};
use serde_json::json;

use crate::cluster::ClusterArg;
use crate::show::{self, exit, out, Output};
use crate::state::StateArg;

/// `ferry rollback` arguments.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The run to undo.
    pub run: String,
    /// Find the run's VMs by ferry's metadata on the domains (run id, original host) instead
    /// of the journal: for when the journal is lost. Reaches the hosts of --cluster. Not for
    /// simulated runs.
    #[arg(long)]
    pub from_hypervisor: bool,
    /// Print what would be moved back; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The hosts (with --from-hypervisor). For a simulated run, `sim:FILE`, the fleet it
    /// started from: its world is rebuilt from that file and the journal, and the rollback
    /// runs on from there in virtual time.
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// Runs `ferry rollback`.
pub async fn rollback(args: RollbackArgs, output: Output) -> ExitCode {
    let rolled = async {
        let ask = Rollback {
            run: args.run.clone(),
            from_hypervisor: args.from_hypervisor,
            dry_run: args.dry_run,
            cluster: args.cluster.location().map(Into::into),
            journal: args.state.at().map_err(|e| ferry_runs::Error::BadInput(format!("--state: {e}")))?,
        };
        let returned = ferry_runs::rollback::rollback(&ask, &show::events(output)).await?;
        if output == Output::Json {
            match &returned {
                Returned::Nothing { returns } => {
                    out!("{}", json!({ "run": null, "undoes": args.run, "returns": returns }))
                }
                Returned::DryRun { returns, stale, .. } => {
                    out!("{}", json!({ "run": null, "undoes": args.run, "returns": returns, "stale_copies": stale }))
                }
                Returned::Ran { .. } => {}
            }
        }
        Ok(returned.ok())
    };
    exit("rollback", true, rolled.await)
}
