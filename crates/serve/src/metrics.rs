//! `/metrics`: the journal's moves in Prometheus' text format, named as KubeVirt names its
//! migration metrics (`kubevirt_vmi_migrations_in_*_phase`, `…_migration_data_*`).
//!
//! Counted over every run of the journal, at the moment of the scrape: moves by final
//! status, moves under way by phase, and the downtime of every live attempt that switched
//! over, as a histogram.

use std::collections::BTreeMap;
use std::fmt::Write;

use ferry_journal::{Attempt, AttemptKind, Journal, JournalError, Move};
use ferry_model::Status;

/// The downtime histogram's upper bounds, seconds: from the 75 ms ferry aims at to the
/// seconds a cold move's restart takes.
const DOWNTIME_BUCKETS_S: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The metrics of every run in `journal`.
pub async fn read(journal: &Journal) -> Result<String, JournalError> {
    let mut moves = Vec::new();
    let mut attempts = Vec::new();
    for run in journal.runs().await? {
        moves.extend(journal.moves(&run.id).await?);
        attempts.extend(journal.attempts(&run.id).await?);
    }
    Ok(render(&moves, &attempts))
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
