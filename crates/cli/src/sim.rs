//! `ferry sim gen`: writes a simulated fleet for `--cluster sim:FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry_journal::{Journal, Run};
use ferry_sim::{Fleet, GenOptions};

use crate::{Output, EXIT_BAD_INPUT, EXIT_FAILURE};

/// `ferry sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Write a fleet of H hosts (racks of 20, a 10 GbE migration link each) and V VMs (sizes,
    /// dirty rates and working sets drawn from the seed), about 60 % full.
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
        None => print!("{text}"),
        Some(path) => {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("ferry sim gen: {}: {e}", path.display());
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    ExitCode::SUCCESS
}

/// The fleet as simulated run `run` left it, for a command that goes on from there in a new
/// process (`ferry rollback RUN --cluster sim:FILE`): a simulation's world lives only in the
/// process that ran it, so it is rebuilt from `fleet` (the file it started from) and the
/// journal. Every VM that a run of the lineage (the runs `run` descends from by `parent`,
/// and those descending from them: its rollbacks, what it rolled back) moved successfully
/// is where the last such move took it; the others are where the file put them (a VM the
/// run lost is back on its source). The virtual clock starts when the lineage last wrote
/// the journal, and the file's host faults keep their instants (one already past is down
/// from the start).
pub async fn continued(fleet: &Fleet, journal: &Journal, run: &Run) -> Result<Fleet, String> {
    let runs = journal.runs().await.map_err(|e| e.to_string())?;
    let parent_of = |id: &str| runs.iter().find(|r| r.id == id).and_then(|r| r.parent.clone());
    let root_of = |id: &str| {
        let mut id = id.to_string();
        let mut steps = 0;
        while let Some(parent) = parent_of(&id).filter(|_| steps < runs.len()) {
            id = parent;
            steps += 1;
        }
        id
    };
    let root = root_of(&run.id);
    let mut lineage: Vec<&Run> = runs.iter().filter(|r| root_of(&r.id) == root).collect();
    lineage.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));

    let mut next = fleet.clone();
    let start_ms = fleet.start_unix() * 1000;
    let mut end_ms = start_ms;
    for r in lineage {
        end_ms = end_ms.max(r.updated_ms).max(r.finished_ms.unwrap_or(0)).max(r.heartbeat_ms.unwrap_or(0));
        for m in journal.moves(&r.id).await.map_err(|e| e.to_string())? {
            let Some(target) = m.target.filter(|t| m.status.is_success() && fleet.hosts.iter().any(|h| h.name == *t))
            else {
                continue;
            };
            if let Some(i) = (0..fleet.vms.len()).find(|&i| fleet.uuid(i) == m.uuid) {
                next.vms[i].host = target;
            }
        }
    }
    let elapsed_s = u64::try_from(end_ms - start_ms).unwrap_or(0).div_ceil(1000);
    next.sim.start = ferry_plan::time::format_rfc3339(fleet.start_unix() + elapsed_s as i64);
    for fault in &mut next.faults {
        fault.down_at_s = (fault.down_at_s - elapsed_s as f64).max(0.0);
    }
    Ok(next)
}
