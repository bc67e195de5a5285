//! `ferry`: the command line. A thin layer: parses arguments, calls the library crates,
//! prints results, maps outcomes to exit codes (0 success, 1 something failed, 2 bad input).

mod cleanup;
mod cluster;
mod docs;
mod drain;
mod examples;
mod inventory;
mod lab;
mod moving;
mod preview;
mod report;
mod roll;
mod rollback;
mod runs;
mod serve;
mod show;
mod sim;
mod state;
mod tag;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::show::{Output, EXIT_BAD_INPUT};

/// Moves fleets of running virtual machines between KVM/QEMU hosts through libvirt.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    /// How to print data: human-readable text or JSON.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// More diagnostics on standard error: -v info, -vv debug, -vvv trace (RUST_LOG, when
    /// set, decides instead).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only what a script needs: run ids, each run's end, warnings and errors; no progress.
    #[arg(short = 'q', long = "quiet", global = true)]
    quiet: bool,

    /// Diagnostics as lines of text or as JSON objects (one per line; no progress board is
    /// drawn then, so that standard error holds JSON only).
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A local multi-host libvirt lab with real QEMU guests.
    #[command(after_help = examples::LAB)]
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Hosts (capacity, CPU model, versions, pools, networks) and their VMs, as libvirt
    /// reports them.
    #[command(after_help = examples::INVENTORY)]
    Inventory {
        #[command(flatten)]
        cluster: cluster::ClusterArg,
    },
    /// Move one VM to another host: live by default, verified afterwards.
    #[command(after_help = examples::MOVE)]
    Move(moving::MoveArgs),
    /// Preview a plan: every move's checks, placement and estimates. Changes nothing.
    #[command(after_help = examples::PREVIEW)]
    Preview(preview::PreviewArgs),
    /// Run a plan: every move previewed, then run under the plan's limits, journaled.
    /// Prints the run id first. Ctrl-C once stops starting moves; twice aborts running ones.
    #[command(after_help = examples::MIGRATE)]
    Migrate(runs::MigrateArgs),
    /// Finish a run that stopped (ferry was killed, the machine rebooted): settle what was in
    /// flight against what the hypervisors say, then run the rest.
    #[command(after_help = examples::RESUME)]
    Resume(runs::ResumeArgs),
    /// Abort a run from another terminal: running migrations are cancelled, their VMs stay
    /// on their sources, nothing new starts.
    #[command(after_help = examples::ABORT)]
    Abort(runs::AbortArgs),
    /// Empty a host: every VM moves off (never onto it), then, with --return-after CMD,
    /// CMD runs and every VM comes back. Runs and journals like `ferry migrate`.
    #[command(after_help = examples::DRAIN)]
    Drain(drain::DrainArgs),
    /// Rolling maintenance of a plan's `[roll]`: its hosts wave by wave, each drained, given
    /// to the hook, checked and given its VMs back. `ferry preview PLAN` shows the waves.
    #[command(after_help = examples::ROLL)]
    Roll(roll::RollArgs),
    /// Sets or prints a VM's tags, kept in its domain's metadata so that they travel with it:
    /// `ferry tag VM maintenance=shutdown` is its behaviour in a roll whose plan does not name
    /// it.
    #[command(after_help = examples::TAG)]
    Tag(tag::TagArgs),
    /// Undo a run: every VM it moved goes back to where it was when the run started, as a
    /// new run of kind rollback (ROLLED-BACK / ROLLBACK-FAILED). Idempotent; with
    /// --from-hypervisor it needs no journal.
    #[command(after_help = examples::ROLLBACK)]
    Rollback(rollback::RollbackArgs),
    /// Reconcile: find where each VM of a run (or --vm) really runs; remove stale copies,
    /// migration jobs nobody owns, volumes of failed moves and stale metadata. Every action
    /// is printed first; --dry-run only prints.
    #[command(after_help = examples::CLEANUP)]
    Cleanup(cleanup::CleanupArgs),
    /// Every run in the journal: plan, state (and whether its owner is alive), moves per
    /// status.
    #[command(after_help = examples::RUNS)]
    Runs(report::RunsArgs),
    /// A run and where each of its VMs is: status, phase, last message. Default: the
    /// latest run.
    #[command(after_help = examples::STATUS)]
    Status(report::StatusArgs),
    /// Everything about a run: per VM its attempts, figures, estimates and messages.
    /// Exit 0 when every move succeeded, 1 otherwise.
    #[command(after_help = examples::REPORT)]
    Report(report::ReportArgs),
    /// The journal's runs over HTTP for browsers, monitoring and tools: a JSON API (runs,
    /// reports, abort), each run's events as server-sent events, Prometheus metrics.
    /// Bearer tokens with a read or an operate role.
    #[command(after_help = examples::SERVE)]
    Serve(serve::ServeArgs),
    /// Simulated fleets: `ferry sim gen` writes one; every command that takes `--cluster`
    /// runs on it in virtual time with `--cluster sim:FILE`.
    #[command(after_help = examples::SIM)]
    Sim {
        #[command(subcommand)]
        command: sim::SimCommand,
    },
    /// Shell completions: `ferry completions bash > /etc/bash_completion.d/ferry` (or zsh,
    /// fish, elvish, powershell).
    #[command(after_help = examples::COMPLETIONS)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Man pages from these very definitions: ferry.1 on standard output, or with --dir
    /// one page per command (ferry.1, ferry-move.1, ferry-lab-up.1, ...) written there.
    #[command(after_help = examples::MAN)]
    Man {
        /// Where to write every page (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// How diagnostics (tracing) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines of text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Diagnostics on standard error at the level `-v`/`-q` ask for, unless RUST_LOG says. A
/// server logs each request (info) by default.
fn init_logging(verbose: u8, quiet: bool, format: LogFormat, serving: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) if serving => "warn,ferry_serve=info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_BAD_INPUT),
            };
        }
    };
    init_logging(cli.verbose, cli.quiet, cli.log_format, matches!(cli.command, Command::Serve(_)));
    show::set_chatter(cli.quiet, cli.log_format == LogFormat::Json);
    match cli.command {
        Command::Lab { command } => lab::run(command, cli.output),
        Command::Inventory { cluster } => runtime_for(&cluster).block_on(inventory::run(&cluster, cli.output)),
        Command::Move(args) => runtime_for(&args.cluster).block_on(moving::run(args, cli.output)),
        Command::Preview(args) => runtime_for(&args.cluster).block_on(preview::run(args, cli.output)),
        Command::Migrate(args) => runtime_for(&args.cluster).block_on(runs::migrate(args, cli.output)),
        Command::Resume(args) => runtime().block_on(runs::resume(args, cli.output)),
        Command::Abort(args) => runtime().block_on(runs::abort(args, cli.output)),
        Command::Drain(args) => runtime_for(&args.cluster).block_on(drain::drain(args, cli.output)),
        Command::Roll(args) => runtime_for(&args.cluster).block_on(roll::run(args, cli.output)),
        Command::Tag(args) => runtime().block_on(tag::run(args, cli.output)),
        Command::Rollback(args) => runtime_for(&args.cluster).block_on(rollback::rollback(args, cli.output)),
        Command::Cleanup(args) => runtime().block_on(cleanup::cleanup(args, cli.output)),
        Command::Runs(args) => runtime().block_on(report::runs(args, cli.output)),
        Command::Status(args) => runtime().block_on(report::status(args, cli.output)),
        Command::Report(args) => runtime().block_on(report::report(args, cli.output)),
        Command::Serve(args) => runtime().block_on(serve::run(args)),
        Command::Sim { command } => sim::run(command, cli.output),
        Command::Completions { shell } => docs::completions(shell, &mut Cli::command()),
        Command::Man { dir } => docs::man(Cli::command(), dir.as_deref()),
    }
}

/// The runtime of a command that takes `--cluster`: on virtual time for a simulated fleet
/// (time jumps from one event to the next, so a run of hours takes seconds), else the
/// ordinary one.
fn runtime_for(cluster: &cluster::ClusterArg) -> tokio::runtime::Runtime {
    if cluster.is_sim() {
        ferry_sim::runtime().expect("a tokio runtime starts")
    } else {
        runtime()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts")
}
