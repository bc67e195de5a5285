//! `ferry`: the command line. A thin layer: parses arguments, calls the library crates,
//! prints results, maps outcomes to exit codes (0 success, 1 something failed, 2 bad input).

mod cluster;
mod inventory;
mod lab;
mod moving;
mod preview;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Moves fleets of running virtual machines between KVM/QEMU hosts through libvirt.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    /// How to print data: human-readable text or JSON.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

/// Output format of commands that print data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Text,
    /// JSON for programs.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A local multi-host libvirt lab with real QEMU guests.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Hosts (capacity, CPU model, versions, pools, networks) and their VMs, as libvirt
    /// reports them.
    Inventory {
        #[command(flatten)]
        cluster: cluster::ClusterArg,
    },
    /// Move one VM to another host: live by default, verified afterwards.
    Move(moving::MoveArgs),
    /// Preview a plan: every move's checks, placement and estimates. Changes nothing.
    Preview(preview::PreviewArgs),
}

/// Exit code for bad input: nothing was started or changed.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when something failed.
pub const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_BAD_INPUT),
            };
        }
    };
    match cli.command {
        Command::Lab { command } => lab::run(command, cli.output),
        Command::Inventory { cluster } => runtime().block_on(inventory::run(&cluster, cli.output)),
        Command::Move(args) => runtime().block_on(moving::run(args, cli.output)),
        Command::Preview(args) => runtime().block_on(preview::run(args, cli.output)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}
