//! `ferry migrate`, `ferry resume`, `ferry abort`: arguments and what they print.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ferry_runs::abort::Aborted;
use ferry_runs::inputs::Inputs;
use ferry_runs::start::Start;
use ferry_runs::Error;

use crate::cluster::ClusterArg;
use crate::show::{self, exit, out, Output};
use crate::state::StateArg;

/// `ferry migrate` arguments.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The plan: TOML, or CSV (`vm,to,group,order`) when the name ends in .csv.
    pub plan: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
    /// No move starts after this instant: RFC 3339 (2026-11-25T06:00:00Z), a local time of
    /// day (22:00, the next one) or a duration from now (+2h, +90m); overrides the plan's
    /// deadline.
    #[arg(long, value_name = "TIME")]
    pub deadline: Option<String>,
    /// Waive a check: its failures become warnings and the move runs. Repeatable.
    #[arg(long = "ignore", value_name = "CHECK")]
    pub ignore: Vec<String>,
    /// Measure each VM's dirty rate before estimating (implied on a simulated fleet).
    #[arg(long)]
    pub measure: bool,
}

/// `ferry resume` arguments.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run to finish.
    pub run: String,
    /// A drain's hook was interrupted when ferry stopped, and the operator has finished its
    /// work by hand: take it as done and bring the VMs back.
    #[arg(long)]
    pub hook_done: bool,
    #[command(flatten)]
    pub state: StateArg,
}

/// `ferry abort` arguments.
#[derive(Debug, clap::Args)]
pub struct AbortArgs {
    /// The run to abort.
    pub run: String,
    #[command(flatten)]
    pub state: StateArg,
    /// Seconds to wait for the process running it to finish aborting.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub wait: u64,
}

/// Runs `ferry migrate`.
pub async fn migrate(args: MigrateArgs, output: Output) -> ExitCode {
    let inputs = ferry_runs::inputs::load(&args.plan, args.cluster.location(), &args.ignore);
    let deadline = match (&args.deadline, &inputs) {
        (Some(text), Ok(inputs)) => crate::cluster::deadline_arg(text, &inputs.cluster).map(Some),
        _ => Ok(None),
    };
    let journal = args.state.at();
    let started = async {
        let (deadline, Inputs { mut plan, cluster, ignore }, journal) = match (deadline, inputs, journal) {
            (Ok(deadline), Ok(inputs), Ok(journal)) => (deadline, inputs, journal),
            (deadline, inputs, journal) => {
                let problems: Vec<String> =
                    [deadline.err(), inputs.err(), journal.err().map(|e| format!("--state: {e}"))]
                        .into_iter()
                        .flatten()
                        .collect();
                return Err(Error::BadInput(problems.join("\n")));
            }
        };
        if deadline.is_some() {
            plan.deadline = deadline;
        }
        ferry_runs::start::start(
            Start { plan, cluster, journal: journal.into(), ignore, measure: args.measure, wave_of: None },
            &show::events(output),
        )
        .await
    };
    exit("migrate", false, started.await)
}

/// Runs `ferry resume`.
pub async fn resume(args: ResumeArgs, output: Output) -> ExitCode {
    let resumed = async {
        let journal = args.state.open_existing().await?;
        ferry_runs::roll::resume(&journal, &args.run, args.hook_done, &show::events(output)).await
    };
    exit("resume", false, resumed.await)
}

/// Runs `ferry abort`: asks the process running the run to abort it, and waits for it;
/// when no process runs it (it died), aborts it here.
pub async fn abort(args: AbortArgs, output: Output) -> ExitCode {
    let aborted = async {
        let journal = args.state.open_existing().await?;
        let events = show::events(output);
        let wait = Duration::from_secs(args.wait);
        let (how, ok) = ferry_runs::abort::abort(&journal, &args.run, wait, &events).await?;
        match how {
            Aborted::AlreadyEnded(state) => out!("run {} is already {state}", args.run),
            Aborted::ByItsOwner(state) => out!("run {} {state}", args.run),
            Aborted::Here => out!("run {} aborted", args.run),
        }
        Ok(ok)
    };
    exit("abort", false, aborted.await)
}
