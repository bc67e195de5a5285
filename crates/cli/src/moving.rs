//! `ferry move`: one VM, live by default, as a run of one move, with progress and a summary.

use std::process::ExitCode;

use ferry_model::{Compression, Location, StreamOptions};
use ferry_preview::checks::CheckName;
use ferry_runs::moving::{MoveAsk, Moved};

use crate::cluster::ClusterArg;
use crate::show::{self, exit, out, Output};
use crate::state::StateArg;

/// `ferry move` arguments.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The VM, by name or UUID.
    pub vm: String,
    /// Target host (a name from the cluster file).
    #[arg(long)]
    pub to: String,
    /// Move cold: shut down, copy volumes, start on the target (the guest restarts).
    #[arg(long)]
    pub cold: bool,
    /// Bandwidth cap for the live migration, MiB/s.
    #[arg(long, value_name = "MiB/s")]
    pub bandwidth: Option<u64>,
    /// Maximum downtime the final switch-over may take, ms.
    #[arg(long, value_name = "MS")]
    pub max_downtime: Option<u64>,
    /// Let QEMU slow down a guest that dirties memory faster than it can be sent.
    #[arg(long)]
    pub auto_converge: bool,
    /// Allow switching to post-copy (a failure after the switch loses the VM).
    #[arg(long)]
    pub postcopy: bool,
    /// Abort a live migration that has not completed after this many seconds; the VM stays
    /// on its source. Default: 150 s per GiB of the VM's memory, at least 60 s (a plan's
    /// `completion_timeout_per_gib_s`).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Seconds a guest gets to shut down by itself in a cold move before it is powered off.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub shutdown_timeout: u64,
    /// Delete the source's copy of host-local volumes after a verified move.
    #[arg(long)]
    pub delete_source_volumes: bool,
    /// Encrypt the migration stream with TLS (default: when both hosts' URIs use TLS).
    #[arg(long, conflicts_with = "no_tls")]
    pub tls: bool,
    /// Send the migration stream in plain text, even between TLS hosts.
    #[arg(long)]
    pub no_tls: bool,
    /// Parallel connections (QEMU multifd channels); 0: one stream.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub parallel: u32,
    /// Compress the multifd channels: none, zstd or zlib (needs --parallel).
    #[arg(long, value_name = "NAME", default_value = "none")]
    pub compression: Compression,
    /// Compression level: zstd 1-20, zlib 1-9.
    #[arg(long, value_name = "N")]
    pub compression_level: Option<u32>,
    /// Zero-copy sends (needs --parallel, no compression, no TLS, the guest's memory locked).
    #[arg(long)]
    pub zerocopy: bool,
    /// Waive a failed precheck (as `ferry preview --ignore`); repeatable. A VM that a live
    /// run is moving stays refused whatever is waived.
    #[arg(long, value_name = "CHECK")]
    pub ignore: Vec<CheckName>,
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// Runs `ferry move`: exit 0 when the VM moved (or was there already), 1 otherwise.
pub async fn run(args: MoveArgs, output: Output) -> ExitCode {
    let moved = async {
        let journal = args.state.at().map_err(|e| ferry_runs::Error::BadInput(format!("--state: {e}")))?;
        let ask = MoveAsk {
            vm: args.vm,
            to: args.to,
            cold: args.cold,
            bandwidth_mib_s: args.bandwidth,
            max_downtime_ms: args.max_downtime,
            auto_converge: args.auto_converge,
            postcopy: args.postcopy,
            timeout_s: args.timeout,
            shutdown_timeout_s: args.shutdown_timeout,
            delete_source_volumes: args.delete_source_volumes,
            tls: if args.tls {
                Some(true)
            } else if args.no_tls {
                Some(false)
            } else {
                None
            },
            stream: StreamOptions {
                parallel_connections: args.parallel,
                compression: args.compression,
                compression_level: args.compression_level,
                zerocopy: args.zerocopy,
            },
            ignore: args.ignore,
            cluster: args.cluster.location().map(Into::into),
        };
        let moved = ferry_runs::moving::move_vm(&ask, &journal, &show::events(output)).await?;
        print_summary(&moved, output);
        Ok(moved.status.is_success())
    };
    exit("move", true, moved.await)
}

fn print_summary(s: &Moved, output: Output) {
    if output == Output::Json {
        out!("{}", serde_json::to_string_pretty(s).expect("summary serialises"));
        return;
    }
    out!("{} {} {} -> {}: {}", s.vm, s.kind, s.from, s.to, s.status);
    if let Some(reason) = &s.reason {
        out!("  reason: {reason}");
    }
    let r = &s.report;
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
    out!(
        "  wall {:.2} s  job {}  downtime {}  transferred {:.1} MiB  memory passes {}",
        r.wall_ms as f64 / 1000.0,
        ms(r.job_ms),
        ms(r.downtime_ms),
        r.transferred_bytes as f64 / 1048576.0,
        r.memory_passes
    );
    if !r.locations.is_empty() {
        out!("  now: {}", describe(&r.locations));
    }
    for m in &r.messages {
        out!("  - {m}");
    }
}

fn describe(locations: &[Location]) -> String {
    locations.iter().map(|l| format!("{} on {}", l.state, l.host)).collect::<Vec<_>>().join(", ")
}
