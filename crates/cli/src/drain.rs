//! `ferry drain`: a plan of one `[[drain]]`, run like `ferry migrate`'s.

use std::process::ExitCode;

use ferry_preview::checks::CheckName;
use ferry_runs::drain::DrainAsk;
use ferry_runs::start::Start;
use ferry_runs::Error;

use crate::cluster::ClusterArg;
use crate::show::{self, exit, Output};
use crate::state::StateArg;

/// `ferry drain` arguments.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The host to empty.
    pub host: String,
    /// Where its VMs go: a host, or ANY (placement decides, never the drained host).
    #[arg(long, default_value = "ANY", value_name = "HOST|ANY")]
    pub to: String,
    /// Once the host is empty, run CMD (by `sh -c`, with FERRY_RUN_ID, FERRY_HOST and
    /// FERRY_VMS in its environment), then bring every VM back. If CMD fails, the VMs stay
    /// where they are; `ferry rollback RUN` returns them later.
    #[arg(long, value_name = "CMD")]
    pub return_after: Option<String>,
    /// Bring every VM back as soon as the host is empty, with no command in between.
    #[arg(long = "return", conflicts_with = "return_after")]
    pub return_at_once: bool,
    /// Seconds the command may run before it is killed (and has failed).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub hook_timeout: u64,
    /// Concurrent migrations out of the host.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub per_source: usize,
    /// Waive a check: its failures become warnings and the move runs. Repeatable.
    #[arg(long = "ignore", value_name = "CHECK")]
    pub ignore: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// Runs `ferry drain`.
pub async fn drain(args: DrainArgs, output: Output) -> ExitCode {
    let drained = async {
        let cluster = ferry_runs::cluster::read(args.cluster.location()).map_err(Error::BadInput)?;
        let ask = DrainAsk {
            host: args.host.clone(),
            to: args.to.clone(),
            return_after: args.return_after.clone(),
            return_at_once: args.return_at_once,
            hook_timeout_s: args.hook_timeout,
            per_source: args.per_source,
        };
        let plan = ferry_runs::drain::plan(&ask, &cluster.spec())?;
        let ignore = args
            .ignore
            .iter()
            .map(|name| name.parse::<CheckName>().map_err(|e| Error::BadInput(format!("--ignore: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let journal = args.state.at().map_err(|e| Error::BadInput(format!("--state: {e}")))?;
        let start = Start { plan, cluster, journal: journal.into(), ignore, measure: false, wave_of: None };
        ferry_runs::start::start(start, &show::events(output)).await
    };
    exit("drain", true, drained.await)
}
