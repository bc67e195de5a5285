//! `ferry sim gen`: writes a simulated fleet for `--cluster sim:FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry_sim::GenOptions;

use crate::show::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// `ferry sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Write a fleet of H hosts (racks of 20, a 10 GbE migration link each) and V VMs (sizes,
    /// dirty rates and working sets drawn from the seed), about 60 % full.
    #[command(after_help = crate::examples::SIM_GEN)]
    Gen(GenArgs),
}

/// `ferry sim gen` arguments.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Hosts.
    #[arg(long)]
    pub hosts: usize,
    /// VMs.
    #[arg(long)]
    pub vms: usize,
    /// Seed of the fleet and of its simulation: the same seed, the same fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Migration link of every host, MiB/s (each way).
    #[arg(long, value_name = "MiB/s", default_value_t = 1250)]
    pub link: u64,
    /// How full the fleet's memory is, a fraction.
    #[arg(long, default_value_t = 0.6)]
    pub fill: f64,
    /// Where to write it (TOML; JSON when the name ends in .json). Default: standard output.
    #[arg(short = 'o', long = "output-file", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs a `ferry sim` command.
pub fn run(command: SimCommand, _output: Output) -> ExitCode {
    match command {
        SimCommand::Gen(args) => gen(args),
    }
}

fn gen(args: GenArgs) -> ExitCode {
    if args.hosts == 0 || args.link == 0 || !(args.fill > 0.0 && args.fill <= 1.0) {
        eprintln!("ferry sim gen: --hosts and --link must be positive and --fill in (0, 1]");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let fleet = ferry_sim::generate(&GenOptions {
        hosts: args.hosts,
        vms: args.vms,
        seed: args.seed,
        link_mib_s: args.link,
        fill: args.fill,
    });
    let text = match &args.out {
        Some(path) if path.extension().is_some_and(|e| e == "json") => {
            serde_json::to_string_pretty(&fleet).expect("a fleet serialises") + "\n"
        }
        _ => fleet.to_toml(),
    };
    match &args.out {
        None => {
            if let Err(e) = crate::show::write_stdout(text.as_bytes()) {
                eprintln!("ferry sim gen: cannot write to standard output: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
        Some(path) => {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("ferry sim gen: {}: {e}", path.display());
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    ExitCode::SUCCESS
}
