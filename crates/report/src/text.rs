//! Views as text: `ferry runs`, `ferry status` and `ferry report` (table and CSV).

use ferry_journal::RunState;
use serde_json::Value;

use crate::units::{duration, mib, rfc3339, utc};
use crate::view::{is_vm_message, Comparison, MoveReport, Report, RunView, StatusView};

/// `ferry runs`: a table, newest first.
pub fn format_runs(runs: &[RunView]) -> String {
    if runs.is_empty() {
        return "no runs\n".to_owned();
    }
    let mut rows = vec![["RUN", "PLAN", "KIND", "STATE", "CREATED", "FINISHED", "MOVES"].map(String::from).to_vec()];
    for run in runs {
        rows.push(vec![
            run.id.clone(),
            run.plan.clone(),
            run.kind.to_string(),
            state_text(run),
            utc(run.created_ms),
            run.finished_ms.map_or_else(|| "-".to_owned(), utc),
            run.counts.to_string(),
        ]);
    }
    table(&rows)
}

/// A run's state in words, with what to do about a run nobody is running.
pub(crate) fn state_text(run: &RunView) -> String {
    let mut text = match (run.state, run.owner_alive) {
        (RunState::Running, Some(true)) => format!("running (owner {}, alive)", run.owner.as_deref().unwrap_or("?")),
        (RunState::Running, _) => format!("running (owner gone: `ferry resume {}`)", run.id),
        (RunState::Stopped, _) => format!("stopped (resumable: `ferry resume {}`)", run.id),
        (state, _) => state.to_string(),
    };
    if run.abort_requested && !run.state.is_ended() {
        text.push_str(", abort requested");
    }
    text
}

/// The header shared by `status` and `report`.
fn format_header(run: &RunView, out: &mut String) {
    let parent = run.parent.as_deref().map(|p| format!(" of run {p}")).unwrap_or_default();
    out.push_str(&format!("run {}  plan {}  ({}{parent})\n", run.id, run.plan, run.kind));
    out.push_str(&format!("state    {}\n", state_text(run)));
}

/// `ferry status` as text.
pub fn format_status(view: &StatusView) -> String {
    let run = &view.run;
    let mut out = String::new();
    format_header(run, &mut out);
    let took = if run.state.is_ended() {
        format!("took {}", duration(view.elapsed_ms))
    } else {
        format!("elapsed {}", duration(view.elapsed_ms))
    };
    out.push_str(&format!("created  {}, {took}\n", utc(run.created_ms)));
    out.push_str(&format!("moves    {}: {}\n", run.moves, run.counts));
    if view.vms.is_empty() {
        return out;
    }
    out.push('\n');
    let mut rows = vec![["VM", "MOVE", "STATUS", "PHASE", "MESSAGE"].map(String::from).to_vec()];
    for vm in &view.vms {
        // A phase says where a move is while it is under way; after, the status does.
        let phase = match vm.phase {
            Some(phase) if !vm.status.is_terminal() => {
                let done = if vm.phase_done { "" } else { " (begun)" };
                format!("{phase}{done}")
            }
            _ => "-".to_owned(),
        };
        rows.push(vec![
            vm.vm.clone(),
            route(&vm.source, vm.target.as_deref()),
            vm.status.to_string(),
            phase,
            vm.message.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

/// `ferry report` as text: the summary, then a block per VM, failures first.
pub fn format_report(report: &Report) -> String {
    let run = &report.run;
    let s = &report.summary;
    let mut out = String::new();
    format_header(run, &mut out);
    let finished = run.finished_ms.map(|f| format!(", finished {}", utc(f))).unwrap_or_default();
    out.push_str(&format!("created  {}{finished}\n", utc(run.created_ms)));
    out.push_str(&format!("moves    {}: {}; {} attempts\n", s.moves, s.counts, s.attempts));
    let makespan = match (s.makespan_ms, s.first_start_ms, s.last_end_ms) {
        (Some(span), Some(first), Some(last)) => {
            format!("{} ({} to {})", duration(span), utc(first), utc(last))
        }
        _ => "-".to_owned(),
    };
    let estimated =
        report.planned.estimated_makespan_ms.map(|e| format!(", estimated {}", duration(e))).unwrap_or_default();
    out.push_str(&format!("makespan {makespan}{estimated}\n"));
    if let Some(deadline) = report.planned.deadline_ms {
        out.push_str(&format!("deadline {}\n", utc(deadline)));
    }
    let worst = match (s.worst_downtime_ms, &s.worst_downtime_vm) {
        (Some(ms), Some(vm)) => format!("{ms} ms ({vm})"),
        _ => "-".to_owned(),
    };
    out.push_str(&format!("downtime worst {worst}\n"));
    out.push_str(&format!("bytes    {} transferred\n", mib(s.bytes)));
    if !report.notes.is_empty() {
        out.push_str("\nrun\n");
        for n in &report.notes {
            out.push_str(&format!("  {}: {}\n", duration(n.since_start_ms), n.message));
            out.push_str(&hook_output(n.data.as_ref(), "    "));
        }
    }
    for leg in &report.legs {
        let what = crate::view::relation_words(leg.relation);
        let run = &leg.run;
        out.push_str(&format!("\n{what} run {} ({}): {}, {}\n", run.id, run.kind, state_text(run), run.counts));
        let rows: Vec<Vec<String>> = leg
            .moves
            .iter()
            .map(|m| {
                vec![
                    format!("  {}", m.vm),
                    route(&m.source, m.target.as_deref()),
                    m.status.to_string(),
                    m.message.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&rows));
    }
    for m in &report.moves {
        out.push('\n');
        format_move(m, &mut out);
    }
    out
}

fn format_move(m: &MoveReport, out: &mut String) {
    let group = m.group.as_deref().map(|g| format!("  group {g}")).unwrap_or_default();
    out.push_str(&format!("{}  {}  {}{group}\n", m.vm, m.status, route(&m.source, m.target.as_deref())));
    match (m.started_ms, m.ended_ms) {
        (Some(start), Some(end)) => {
            out.push_str(&format!("  start {}  end {}  ({})\n", utc(start), utc(end), duration(end - start)))
        }
        (Some(start), None) => out.push_str(&format!("  start {}  not ended\n", utc(start))),
        (None, _) => out.push_str("  not started\n"),
    }
    for a in &m.attempts {
        let outcome = a.attempt.outcome.map_or_else(|| "not ended".to_owned(), |o| o.to_string());
        let figures = [
            a.attempt.wall_ms.map(|v| format!("wall {}", duration(to_i64(v)))),
            a.attempt.job_ms.map(|v| format!("job {}", duration(to_i64(v)))),
            a.attempt.downtime_ms.map(|v| format!("downtime {v} ms")),
            a.attempt.bytes.map(mib),
            a.attempt.passes.map(|p| format!("{p} passes")),
            a.attempt.compression.map(|c| match a.attempt.memory_per_byte_sent() {
                Some(ratio) => format!("{c} memory {ratio:.2}:1"),
                None => format!("{c} (ratio not reported)"),
            }),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        out.push_str(&format!(
            "  attempt {}  {} -> {}  {outcome}  {figures}\n",
            a.attempt.number, a.attempt.kind, a.attempt.target
        ));
        if !a.attempt.message.is_empty() {
            out.push_str(&format!("    {}\n", a.attempt.message));
        }
        if !a.estimate_vs_actual.is_empty() {
            let compared: Vec<String> = a.estimate_vs_actual.iter().map(comparison).collect();
            out.push_str(&format!("    estimate vs actual: {}\n", compared.join(", ")));
        }
    }
    let mut told = false;
    for e in m.events.iter().filter(|e| is_vm_message(e.kind)) {
        out.push_str(&format!("  {}: {}\n", duration(e.since_start_ms), e.message));
        out.push_str(&hook_output(e.data.as_ref(), "    "));
        told = true;
    }
    // A move given its final status when it was added (a failed check) has no status
    // event: its message is all there is.
    if !told && !m.message.is_empty() {
        out.push_str(&format!("  {}\n", m.message));
    }
}

fn comparison(c: &Comparison) -> String {
    let (name, show): (&str, fn(f64) -> String) = match c.figure {
        "downtime_ms" => ("downtime", |v| format!("{v:.0} ms")),
        "total_s" => ("total", |v| format!("{v:.1} s")),
        _ => ("transfer", |v| format!("{v:.1} s")),
    };
    let actual = c.actual.map_or_else(|| "-".to_owned(), show);
    format!("{name} {} / {actual}", show(c.estimate))
}

/// `ferry report --format csv`: one row per VM.
pub fn report_csv(report: &Report) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "vm",
        "uuid",
        "source",
        "target",
        "status",
        "started",
        "ended",
        "attempts",
        "downtime_ms",
        "bytes",
        "passes",
        "message",
    ])?;
    let text = |v: Option<String>| v.unwrap_or_default();
    for m in &report.moves {
        let last = m.attempts.last();
        let bytes: Option<u64> = m.attempts.iter().filter_map(|a| a.attempt.bytes).reduce(|a, b| a + b);
        writer.write_record([
            inert(&m.vm),
            m.uuid.clone(),
            inert(&m.source),
            inert(&text(m.target.clone())),
            m.status.to_string(),
            text(m.started_ms.map(rfc3339)),
            text(m.ended_ms.map(rfc3339)),
            m.attempts.len().to_string(),
            text(last.and_then(|a| a.attempt.downtime_ms).map(|v| v.to_string())),
            text(bytes.map(|v| v.to_string())),
            text(last.and_then(|a| a.attempt.passes).map(|v| v.to_string())),
            inert(&m.message),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A CSV field that a spreadsheet shows as text: one that would start a formula (`=`, `+`,
/// `-`, `@`, or a tab or carriage return before one) gets a leading `'`. Names and messages
/// come from the hosts and from hooks' output, which anyone with a VM may shape.
fn inert(field: &str) -> String {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field.to_string()
    }
}

/// The end of a hook's output, from its event's data: the last lines of each stream,
/// prefixed `out |` and `err |`.
pub(crate) fn hook_output(data: Option<&Value>, indent: &str) -> String {
    const LINES: usize = 5;
    let Some(data) = data.filter(|d| d.get("hook").is_some()) else {
        return String::new();
    };
    let mut out = String::new();
    for (stream, tag) in [("stdout", "out"), ("stderr", "err")] {
        let text = data.get(stream).and_then(Value::as_str).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() > LINES {
            out.push_str(&format!("{indent}{tag} | … {} lines before\n", lines.len() - LINES));
        }
        for line in &lines[lines.len().saturating_sub(LINES)..] {
            out.push_str(&format!("{indent}{tag} | {line}\n"));
        }
    }
    out
}

fn route(source: &str, target: Option<&str>) -> String {
    format!("{source} -> {}", target.unwrap_or("?"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Rows of cells as aligned columns (two spaces apart), the first row being the header.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
