//! Views as text: `ferry runs`, `ferry status` and `ferry report` (table and CSV).

use ferry_journal::RunState;
use serde_json::Value;

use crate::roll::{result_words, HostOutcome, HostReport, RollView, ScriptRun, Span, Tail, VmPath};
use crate::units::{bytes, clock, duration, rfc3339, utc};
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
    if let Some(roll) = &view.roll {
        out.push('\n');
        out.push_str(&roll_status(roll));
    }
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

/// A roll's hosts in `ferry status`: one row each, in wave order, with where it is.
fn roll_status(roll: &RollView) -> String {
    let mut rows = vec![["HOST", "WAVE", "OUTCOME", "HOOK", "CHECK", "RETURN"].map(String::from).to_vec()];
    let script = |s: &Option<ScriptRun>| s.as_ref().map_or("-".to_owned(), |s| result_words(&s.result));
    for h in &roll.hosts {
        let back = match &h.back {
            Some(b) if b.all_back => "every VM back".to_owned(),
            Some(b) if !b.state.is_ended() => "under way".to_owned(),
            Some(_) => "not every VM back".to_owned(),
            None => "-".to_owned(),
        };
        rows.push(vec![
            h.host.clone(),
            h.wave.map_or("-".to_owned(), |w| w.to_string()),
            outcome_words(&h.outcome),
            script(&h.hook),
            script(&h.check),
            back,
        ]);
    }
    table(&rows)
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
    out.push_str(&format!("bytes    {} transferred\n", bytes(s.bytes)));
    if !report.notes.is_empty() {
        out.push_str("\nrun\n");
        for n in &report.notes {
            out.push_str(&format!("  {}: {}\n", duration(n.since_start_ms), n.message));
            out.push_str(&hook_output(n.data.as_ref(), "    "));
        }
    }
    if let Some(roll) = &report.roll {
        format_roll(roll, report.generated_ms, &mut out);
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
            a.attempt.bytes.map(bytes),
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

/// A roll's hosts, each a block in wave order, then its VMs' paths as a table.
fn format_roll(roll: &RollView, now_ms: i64, out: &mut String) {
    out.push_str("\nhosts\n");
    for host in &roll.hosts {
        format_host(host, now_ms, out);
    }
    if let Some(r) = &roll.rebalance {
        let moves: Vec<String> =
            r.moves.iter().map(|d| format!("{} -> {} {}", d.vm, d.host.as_deref().unwrap_or("?"), d.status)).collect();
        out.push_str(&format!(
            "\nrebalance (run {}, {}): {} moves: {}\n",
            r.run,
            r.state,
            moves.len(),
            moves.join(", ")
        ));
    }
    if roll.vms.is_empty() {
        return;
    }
    out.push_str("\nVMs\n");
    let mut rows = vec![["  VM", "HOME", "PATH", "NOW ON"].map(String::from).to_vec()];
    for vm in &roll.vms {
        rows.push(vec![format!("  {}", vm.vm), vm.home.clone(), vm_path_words(vm), now_on(vm)]);
    }
    out.push_str(&table(&rows));
}

/// One host's block: its wave and outcome, then a line per step it went through.
fn format_host(host: &HostReport, now_ms: i64, out: &mut String) {
    let wave = host.wave.map(|n| format!("  wave {n}")).unwrap_or_default();
    out.push_str(&format!("  {}{wave}  {}\n", host.host, outcome_words(&host.outcome)));
    if let Some(drain) = &host.drain {
        let vms: Vec<String> = drain
            .vms
            .iter()
            .map(|d| format!("{} -> {} {}", d.vm, d.host.as_deref().unwrap_or("?"), d.status))
            .collect();
        let text = match drain.span {
            Some(span) => format!("{}: {}", span_words(span, now_ms), vms.join(", ")),
            None if vms.is_empty() => "empty".to_owned(),
            None => format!("not started: {}", vms.join(", ")),
        };
        out.push_str(&format!("    drain   {text}\n"));
    }
    for step in &host.maintenance {
        let what = match (step.step.as_str(), step.was_running) {
            ("start", _) => "started again",
            (_, Some(false)) => "found off",
            _ => "shut down",
        };
        out.push_str(&format!("    maintenance  {} {what} at {}\n", step.vm, clock(step.at_ms)));
    }
    if let Some(hook) = &host.hook {
        out.push_str(&format!("    hook    {}\n", script_words(hook)));
        out.push_str(&tails(hook, "      "));
    }
    if let Some(check) = &host.check {
        let verdict = if check.result.ok() { "passed" } else { "did not pass" };
        let attempts = match check.attempts {
            Some(1) => " after 1 attempt".to_owned(),
            Some(n) => format!(" after {n} attempts"),
            None => String::new(),
        };
        out.push_str(&format!("    check   {verdict}{attempts}: {}\n", script_words(check)));
        if !check.result.ok() {
            out.push_str(&tails(check, "      "));
        }
    }
    if let Some(back) = &host.back {
        let home = back.vms.iter().filter(|d| d.status.is_success()).count();
        let vms: Vec<String> =
            back.vms.iter().map(|d| format!("{} <- {} {}", d.vm, d.host.as_deref().unwrap_or("?"), d.status)).collect();
        let when = back.span.map(|s| format!("{}, ", span_words(s, now_ms))).unwrap_or_default();
        let all = if back.all_back { "every VM back".to_owned() } else { format!("{home} of {} back", back.vms.len()) };
        out.push_str(&format!("    return  {when}{all} (run {}): {}\n", back.run, vms.join(", ")));
    }
}

/// `done`, `failed: WHY`, `skipped: WHY`, `not reached`, `under way`.
pub(crate) fn outcome_words(outcome: &HostOutcome) -> String {
    match outcome {
        HostOutcome::Done => "done".to_owned(),
        HostOutcome::Failed { why } => format!("failed: {why}"),
        HostOutcome::Skipped { why } => format!("skipped: {why}"),
        HostOutcome::NotReached => "not reached".to_owned(),
        HostOutcome::UnderWay => "under way".to_owned(),
    }
}

/// `12.3 s (20:30:15 to 20:30:27 UTC)`, or `5.0 s so far (since 20:30:15 UTC)` while open.
pub(crate) fn span_words(span: Span, now_ms: i64) -> String {
    match span.ended_ms {
        Some(end) => format!("{} ({})", duration(end - span.started_ms), window(span)),
        None => format!("{} so far ({})", duration(now_ms - span.started_ms), window(span)),
    }
}

/// `20:30:15 to 20:30:27 UTC`, or `since 20:30:15 UTC` while open.
fn window(span: Span) -> String {
    match span.ended_ms {
        Some(end) => format!("{} to {} UTC", clock(span.started_ms), clock(end)),
        None => format!("since {} UTC", clock(span.started_ms)),
    }
}

/// "`upgrade.sh` exited 0 after 4.1 s (20:30:30 to 20:30:34 UTC)", with how many times it
/// ran when more than once.
pub(crate) fn script_words(run: &ScriptRun) -> String {
    let command = run.command.as_deref().map(|c| format!("`{c}` ")).unwrap_or_default();
    let took = run.duration_ms.map(|d| format!(" after {}", duration(i64::try_from(d).unwrap_or(i64::MAX))));
    let when = run.span.map(|s| format!(" ({})", window(s)));
    let runs = if run.runs > 1 { format!("; ran {} times", run.runs) } else { String::new() };
    format!("{command}{}{}{}{runs}", result_words(&run.result), took.unwrap_or_default(), when.unwrap_or_default())
}

/// The last lines of a hook's or check's output, `out |` and `err |`.
fn tails(run: &ScriptRun, indent: &str) -> String {
    let mut out = String::new();
    for (tail, tag) in [(&run.stdout, "out"), (&run.stderr, "err")] {
        out.push_str(&tail_lines(tail, tag, indent));
    }
    out
}

pub(crate) fn tail_lines(tail: &Tail, tag: &str, indent: &str) -> String {
    let mut out = String::new();
    if tail.before > 0 {
        out.push_str(&format!("{indent}{tag} | … {} lines before\n", tail.before));
    }
    for line in &tail.lines {
        out.push_str(&format!("{indent}{tag} | {line}\n"));
    }
    out
}

/// A VM's steps: `wave 1: host-a -> host-c SUCCESS, back host-c -> host-a ROLLED-BACK`.
pub(crate) fn vm_path_words(vm: &VmPath) -> String {
    let mut waves: Vec<(usize, &str, Vec<String>)> = Vec::new();
    for step in &vm.steps {
        let status = step.status.map(|s| format!(" {s}")).unwrap_or_default();
        let to = step.to.as_deref().unwrap_or("?");
        let words = match step.step {
            "leave" | "rebalance" => format!("{} -> {to}{status}", step.from),
            "return" => format!("back {} -> {to}{status}", step.from),
            "start" => format!("started again on {}", step.from),
            _ => format!("shut down on {}", step.from),
        };
        let part = if step.step == "rebalance" { "rebalance" } else { "wave" };
        match waves.last_mut() {
            Some((wave, p, steps)) if *wave == step.wave && *p == part => steps.push(words),
            _ => waves.push((step.wave, part, vec![words])),
        }
    }
    let label = |wave: &usize, part: &str| if part == "wave" { format!("wave {wave}") } else { part.to_string() };
    waves
        .iter()
        .map(|(wave, part, steps)| format!("{}: {}", label(wave, part), steps.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a VM is by the journal, and whether ferry left it shut down.
pub(crate) fn now_on(vm: &VmPath) -> String {
    if vm.off {
        format!("{} (shut down)", vm.ends_on)
    } else {
        vm.ends_on.clone()
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
