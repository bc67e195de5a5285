//! `ferry cleanup`: arguments and what it prints.

use std::process::ExitCode;

use ferry_runs::cleanup::CleanupAsk;
use serde_json::json;

use crate::cluster::ClusterArg;
use crate::show::{self, exit, out, Output};
use crate::state::StateArg;

/// `ferry cleanup` arguments.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// The run whose VMs to clean up (from the journal, or with --from-hypervisor every VM
    /// whose ferry metadata names it).
    pub run: Option<String>,
    /// A VM to clean up, by name or UUID. Repeatable.
    #[arg(long = "vm", value_name = "VM")]
    pub vms: Vec<String>,
    /// Judge from ferry's metadata on the domains, without the journal. With no RUN and no
    /// --vm: every VM carrying ferry's metadata or known to more than one host.
    #[arg(long)]
    pub from_hypervisor: bool,
    /// Also delete copies of a VM's host-local disks kept on hosts it left (after moves
    /// without delete_source_volumes).
    #[arg(long)]
    pub source_volumes: bool,
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// Runs `ferry cleanup`. Exit 0 when every VM was found in one place and every step
/// succeeded; 1 when some VM is lost or busy, or a step failed.
pub async fn cleanup(args: CleanupArgs, output: Output) -> ExitCode {
    let cleaned = async {
        let ask = CleanupAsk {
            run: args.run,
            vms: args.vms,
            from_hypervisor: args.from_hypervisor,
            source_volumes: args.source_volumes,
            dry_run: args.dry_run,
            cluster: args.cluster.location().map(Into::into),
            journal: args.state.at().map_err(|e| ferry_runs::Error::BadInput(format!("--state: {e}")))?,
        };
        let cleaned = ferry_runs::cleanup::cleanup(&ask, &show::events(output)).await?;
        if output == Output::Json {
            out!("{}", json!({ "dry_run": ask.dry_run, "vms": cleaned.vms }));
        }
        Ok(cleaned.ok)
    };
    exit("cleanup", true, cleaned.await)
}
