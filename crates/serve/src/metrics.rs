//! `/metrics`: the journal's moves in Prometheus' text format, named as KubeVirt names its
//! migration metrics (`kubevirt_vmi_migrations_in_*_phase`, `…_migration_data_*`).
//!
//! Counted over every run of the journal, at the moment of the scrape: moves by final
//! status, moves under way by phase, and the downtime of every live attempt that switched
//! over, as a histogram. The migrations this server drives add their transfer figures from
//! their last progress sample, and each such run its ETA (the CLI's board's).

use std::collections::BTreeMap;
use std::fmt::Write;

use ferry_journal::{Attempt, AttemptKind, Journal, JournalError, Move};
use ferry_model::Status;
use ferry_progress::Snapshot;

/// The downtime histogram's upper bounds, seconds: from the 75 ms ferry aims at to the
/// seconds a cold move's restart takes.
const DOWNTIME_BUCKETS_S: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The metrics of every run in `journal`, and of the runs `driven` here now.
pub async fn read(journal: &Journal, driven: &[(String, Snapshot)]) -> Result<String, JournalError> {
    let mut moves = Vec::new();
    let mut attempts = Vec::new();
    for run in journal.runs().await? {
        moves.extend(journal.moves(&run.id).await?);
        attempts.extend(journal.attempts(&run.id).await?);
    }
    let mut text = render(&moves, &attempts);
    text.push_str(&render_driven(driven));
    Ok(text)
}

/// The figures of each migration in flight in the runs `driven` here, labelled by run, VM,
/// source and target, and each run's ETA. Pure.
pub fn render_driven(driven: &[(String, Snapshot)]) -> String {
    let mut out = String::new();
    type Figure = fn(&ferry_driver::Progress) -> u64;
    let gauges: [(&str, &str, Figure); 4] = [
        ("ferry_migration_data_processed_bytes", "Bytes a running migration has sent.", |p| p.transferred_bytes),
        ("ferry_migration_data_remaining_bytes", "Bytes a running migration has still to send.", |p| p.remaining_bytes),
        ("ferry_migration_dirty_memory_rate_bytes", "Bytes per second the guest dirties memory.", |p| {
            p.dirty_rate_bytes_s
        }),
        ("ferry_migration_memory_transfer_rate_bytes", "Bytes per second the migration sends memory.", |p| {
            p.bandwidth_bytes_s
        }),
    ];
    for (name, help, figure) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (run, snapshot) in driven {
            for m in &snapshot.in_flight {
                if let Some(sample) = &m.last {
                    let labels = format!(
                        "run=\"{}\",vm=\"{}\",source=\"{}\",target=\"{}\"",
                        escaped(run),
                        escaped(&m.vm),
                        escaped(&m.from),
                        escaped(&m.to)
                    );
                    let _ = writeln!(out, "{name}{{{labels}}} {}", figure(sample));
                }
            }
        }
    }
    let _ = writeln!(out, "# HELP ferry_run_eta_seconds Seconds until every move of a run this server drives is over.");
    let _ = writeln!(out, "# TYPE ferry_run_eta_seconds gauge");
    for (run, snapshot) in driven {
        if let Some(eta) = snapshot.eta_s {
            let _ = writeln!(out, "ferry_run_eta_seconds{{run=\"{}\"}} {eta:.1}", escaped(run));
        }
    }
    out
}

/// A label value as the text format writes it: backslash, quote and newline escaped.
fn escaped(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics of these moves and attempts. Pure.
pub fn render(moves: &[Move], attempts: &[Attempt]) -> String {
    let mut out = String::new();
    let mut ended: BTreeMap<&str, u64> = BTreeMap::new();
    let mut in_phase: BTreeMap<&str, u64> = BTreeMap::new();
    for m in moves {
        if m.status.is_terminal() {
            *ended.entry(m.status.name()).or_default() += 1;
        } else if m.status == Status::Migrating {
            *in_phase.entry(m.phase.map_or("starting", |p| p.name())).or_default() += 1;
        }
    }
    let _ = writeln!(out, "# HELP ferry_migrations_total Moves that ended, by final status.");
    let _ = writeln!(out, "# TYPE ferry_migrations_total counter");
    for (status, n) in &ended {
        let _ = writeln!(out, "ferry_migrations_total{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP ferry_migrations_in_phase Moves under way, by the phase they are in.");
    let _ = writeln!(out, "# TYPE ferry_migrations_in_phase gauge");
    for (phase, n) in &in_phase {
        let _ = writeln!(out, "ferry_migrations_in_phase{{phase=\"{phase}\"}} {n}");
    }
    let downtimes: Vec<f64> = attempts
        .iter()
        .filter(|a| a.kind == AttemptKind::Live && a.outcome.is_some_and(Status::is_success))
        .filter_map(|a| a.downtime_ms)
        .map(|ms| ms as f64 / 1000.0)
        .collect();
    let _ = writeln!(out, "# HELP ferry_migration_downtime_seconds The pause of each live move that completed.");
    let _ = writeln!(out, "# TYPE ferry_migration_downtime_seconds histogram");
    for bound in DOWNTIME_BUCKETS_S {
        let n = downtimes.iter().filter(|d| **d <= bound).count();
        let _ = writeln!(out, "ferry_migration_downtime_seconds_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "ferry_migration_downtime_seconds_bucket{{le=\"+Inf\"}} {}", downtimes.len());
    let _ = writeln!(out, "ferry_migration_downtime_seconds_sum {}", downtimes.iter().sum::<f64>());
    let _ = writeln!(out, "ferry_migration_downtime_seconds_count {}", downtimes.len());
    out
}
