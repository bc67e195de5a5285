//! The run's timeline: one lane per host, each attempt a bar on its source's lane and on
//! its target's, convergence decisions and fallbacks marked on the bars, the deadline as a
//! line. [`layout`] computes the geometry (pure, tested); [`svg`] writes it.
//!
//! Written for 10,000 moves on 1,000 hosts: one `<rect>` per bar with integer coordinates,
//! its height and colours from the page's CSS, no per-bar script or title (the page's one
//! script finds an attempt's figures from its `data-a` index), concurrent bars of a host
//! packed into as few rows as they need.

use std::collections::HashMap;
use std::fmt::Write;

use ferry_journal::EventKind;
use ferry_model::Status;

use crate::html::esc;
use crate::units::{clock, duration, utc};
use crate::view::{MoveReport, Report};

/// Width of the host labels' column, in SVG units.
pub(crate) const GUTTER: f64 = 160.0;
/// Width of the plot, in SVG units.
pub(crate) const PLOT: f64 = 1000.0;
/// Right margin, in SVG units: room for the last tick's label.
const MARGIN: f64 = 30.0;
/// Height of the axis: two rows of line labels, then the ticks.
pub(crate) const AXIS: f64 = 44.0;
/// Full width of the timeline's SVGs.
pub(crate) const WIDTH: f64 = GUTTER + PLOT + MARGIN;
/// Space above and below a lane's rows.
const LANE_PAD: f64 = 3.0;
/// A line further out than this many run lengths from the bars is shown as an arrow at
/// the edge instead of squeezing the bars.
const REACH: f64 = 1.0;

/// Bar sizes by how many rows the whole timeline has: big bars for a lab run, thin ones
/// for a fleet.
fn sizes(rows: usize) -> (f64, f64) {
    match rows {
        0..=40 => (14.0, 18.0),
        41..=400 => (8.0, 10.0),
        _ => (5.0, 6.0),
    }
}

/// The whole timeline, in SVG units.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeline {
    /// First instant shown (the plot's left edge), ms since the epoch.
    pub t0: i64,
    /// Last instant shown (the right edge).
    pub t1: i64,
    /// The host lanes, top to bottom.
    pub lanes: Vec<Lane>,
    /// Height of a bar.
    pub bar: f64,
    /// Distance between the tops of two rows.
    pub pitch: f64,
    /// Height of the lanes' SVG.
    pub height: f64,
    /// Time ticks.
    pub ticks: Vec<Tick>,
    /// Lines across every lane: deadline, estimated end, now.
    pub lines: Vec<Line>,
}

/// One host's lane.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lane {
    /// Host name.
    pub host: String,
    /// Top of the lane.
    pub y: f64,
    /// Rows its concurrent bars need (at least one).
    pub rows: usize,
    /// Its bars, by start.
    pub bars: Vec<Bar>,
    /// Marks on its bars.
    pub marks: Vec<Mark>,
}

/// One attempt on one lane.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    /// The attempt's index over the whole report (moves in report order, then attempts).
    pub attempt: usize,
    /// Row within the lane.
    pub row: usize,
    /// Left edge.
    pub x: f64,
    /// Width (at least one unit, so that every attempt shows).
    pub w: f64,
    /// Colour class, from the attempt's outcome.
    pub class: &'static str,
    /// Whether this is the target's side (the VM arriving) rather than the source's.
    pub inbound: bool,
}

/// What a mark on a bar says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkKind {
    /// A convergence decision (downtime raised, bandwidth changed).
    Decision,
    /// A fallback: a switch to post-copy, or a new attempt after a failed one.
    Fallback,
    /// A decision to abort.
    Abort,
}

impl MarkKind {
    fn class(self) -> &'static str {
        match self {
            MarkKind::Decision => "mk d",
            MarkKind::Fallback => "mk f",
            MarkKind::Abort => "mk x",
        }
    }
}

/// A decision or fallback at an instant on a bar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    /// Where on the time axis.
    pub x: f64,
    /// The row of the bar it is on.
    pub row: usize,
    /// What it is.
    pub kind: MarkKind,
    /// The attempt whose bar it is on: hovering it shows that attempt's figures, which
    /// list the VM's decisions.
    pub attempt: usize,
}

/// A labelled instant on the axis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tick {
    /// Where.
    pub x: f64,
    /// `20:31:00` or `20:31`.
    pub label: String,
}

/// Where a line falls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum At {
    /// Inside the plot.
    Inside(f64),
    /// Before the left edge: drawn as an arrow there.
    Before,
    /// After the right edge: drawn as an arrow there.
    After,
}

/// A line across every lane.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    /// Where.
    pub at: At,
    /// CSS class: `deadline`, `estimate`, `now`.
    pub class: &'static str,
    /// What it marks, with its time.
    pub label: String,
}

/// Where the report's instants go on the plot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub t0: i64,
    pub t1: i64,
}

impl Scale {
    pub(crate) fn x(&self, t: i64) -> f64 {
        GUTTER + PLOT * (t - self.t0) as f64 / (self.t1 - self.t0).max(1) as f64
    }

    pub(crate) fn at(&self, t: i64) -> At {
        if t < self.t0 {
            At::Before
        } else if t > self.t1 {
            At::After
        } else {
            At::Inside(self.x(t))
        }
    }
}

/// The class of an attempt's bar, from its outcome.
pub(crate) fn outcome_class(outcome: Option<Status>) -> &'static str {
    match outcome {
        None | Some(Status::Migrating | Status::Pending | Status::Queued) => "open",
        Some(Status::Success | Status::RolledBack) => "ok",
        Some(Status::SuccessCold) => "cold",
        Some(Status::FailureLost | Status::RollbackFailed) => "lost",
        Some(Status::Aborted) => "abort",
        Some(
            Status::FailureInit
            | Status::FailureWait
            | Status::PrecheckFailed
            | Status::SkippedTimeout
            | Status::SkippedDependency
            | Status::SkippedNoPrevStatus,
        ) => "fail",
    }
}

/// The hosts that get a lane: the cluster's, in its file's order, then any other host a
/// move names (a journal without its cluster document), in the order they appear.
pub(crate) fn hosts(report: &Report) -> Vec<String> {
    let mut hosts = report.planned.hosts.clone();
    let mut known: std::collections::HashSet<String> = hosts.iter().cloned().collect();
    for m in &report.moves {
        let named =
            std::iter::once(&m.source).chain(m.target.iter()).chain(m.attempts.iter().map(|a| &a.attempt.target));
        for host in named {
            if known.insert(host.clone()) {
                hosts.push(host.clone());
            }
        }
    }
    hosts
}

/// One attempt's span: start and end (an attempt still open ends at the report's time,
/// or, in a run that ended without closing it, at the run's end).
fn span(report: &Report, start: i64, end: Option<i64>) -> (i64, i64) {
    let end = end.unwrap_or(if report.run.state.is_ended() {
        report.run.finished_ms.unwrap_or(report.generated_ms)
    } else {
        report.generated_ms
    });
    (start, end.max(start))
}

/// Lays the report out.
pub(crate) fn layout(report: &Report) -> Timeline {
    let hosts = hosts(report);
    let spans: Vec<(i64, i64)> = report
        .moves
        .iter()
        .flat_map(|m| &m.attempts)
        .map(|a| span(report, a.attempt.started_ms, a.attempt.ended_ms))
        .collect();
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    let (first, last) = match (first, last) {
        (Some(first), Some(last)) => (first, last),
        // Nothing started: the run's own life is the axis.
        _ => (report.run.created_ms, report.run.finished_ms.unwrap_or(report.generated_ms)),
    };
    let length = (last - first).max(1_000);
    // Lines within reach widen the axis; further ones become arrows at its edge.
    let reach = (first - (length as f64 * REACH) as i64, last + (length as f64 * REACH) as i64);
    let estimate_end =
        report.planned.estimated_makespan_ms.zip(report.summary.first_start_ms).map(|(span, start)| start + span);
    let now = (!report.run.state.is_ended()).then_some(report.generated_ms);
    let mut t0 = first;
    let mut t1 = first + length;
    for t in [report.planned.deadline_ms, estimate_end, now].into_iter().flatten() {
        if t >= reach.0 && t <= reach.1 {
            t0 = t0.min(t);
            t1 = t1.max(t);
        }
    }
    // A little air on both sides.
    let pad = (t1 - t0) / 50;
    let scale = Scale { t0: t0 - pad, t1: t1 + pad };

    let lane_of: HashMap<&str, usize> = hosts.iter().enumerate().map(|(i, h)| (h.as_str(), i)).collect();
    // Every bar, by lane, before packing: (start x, end x, bar).
    let mut pending: Vec<Vec<(f64, f64, Bar)>> = vec![Vec::new(); hosts.len()];
    let mut index = 0;
    for m in &report.moves {
        for a in &m.attempts {
            let (start, end) = span(report, a.attempt.started_ms, a.attempt.ended_ms);
            let (x0, x1) = (scale.x(start), scale.x(end));
            let bar = |inbound| Bar {
                attempt: index,
                row: 0,
                x: x0,
                w: (x1 - x0).max(1.0),
                class: outcome_class(a.attempt.outcome),
                inbound,
            };
            for (host, inbound) in [(m.source.as_str(), false), (a.attempt.target.as_str(), true)] {
                if let Some(&lane) = lane_of.get(host) {
                    pending[lane].push((x0, x0 + (x1 - x0).max(1.0), bar(inbound)));
                }
            }
            index += 1;
        }
    }
    let mut lanes: Vec<Lane> = hosts
        .into_iter()
        .zip(pending)
        .map(|(host, mut bars)| {
            let rows = pack(&mut bars);
            Lane { host, y: 0.0, rows, bars: bars.into_iter().map(|(_, _, bar)| bar).collect(), marks: Vec::new() }
        })
        .collect();
    mark(report, &scale, &mut lanes);

    let (bar, pitch) = sizes(lanes.iter().map(|l| l.rows).sum());
    let mut y = 0.0;
    for lane in &mut lanes {
        lane.y = y;
        y += lane.rows as f64 * pitch + 2.0 * LANE_PAD;
    }
    let mut lines = Vec::new();
    if let Some(deadline) = report.planned.deadline_ms {
        lines.push(Line { at: scale.at(deadline), class: "deadline", label: format!("deadline {}", utc(deadline)) });
    }
    if let (Some(end), Some(span)) = (estimate_end, report.planned.estimated_makespan_ms) {
        lines.push(Line {
            at: scale.at(end),
            class: "estimate",
            label: format!("estimated end ({} makespan)", duration(span)),
        });
    }
    if let Some(now) = now {
        lines.push(Line { at: scale.at(now), class: "now", label: format!("now {}", utc(now)) });
    }
    Timeline { t0: scale.t0, t1: scale.t1, ticks: ticks(&scale), lanes, bar, pitch, height: y.max(1.0), lines }
}

/// Puts each bar in the first row free at its start (bars sorted by start); returns the
/// rows used, at least one. Greedy interval partitioning: as few rows as the most bars
/// that overlap at one instant.
fn pack(bars: &mut [(f64, f64, Bar)]) -> usize {
    bars.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.attempt.cmp(&b.2.attempt)));
    // Where each row is free again; a bar needs a unit of air after the previous one.
    let mut free: Vec<f64> = Vec::new();
    for (start, end, bar) in bars.iter_mut() {
        let row = match free.iter().position(|&f| f <= *start) {
            Some(row) => row,
            None => {
                free.push(f64::NEG_INFINITY);
                free.len() - 1
            }
        };
        free[row] = *end + 1.0;
        bar.row = row;
    }
    free.len().max(1)
}

/// Marks the convergence decisions and fallbacks on the bars of the attempts they
/// happened in, on both lanes.
fn mark(report: &Report, scale: &Scale, lanes: &mut [Lane]) {
    let lane_of: HashMap<String, usize> = lanes.iter().enumerate().map(|(i, l)| (l.host.clone(), i)).collect();
    let mut index = 0;
    for m in &report.moves {
        let first = index;
        index += m.attempts.len();
        for (kind, at) in marks_of(m) {
            // The attempt it happened in: the last one started by then.
            let Some(k) = m.attempts.iter().rposition(|a| a.attempt.started_ms <= at) else {
                continue;
            };
            let attempt = first + k;
            for host in [&m.source, &m.attempts[k].attempt.target] {
                let Some(lane) = lane_of.get(host.as_str()).map(|&i| &mut lanes[i]) else {
                    continue;
                };
                if let Some(row) = lane.bars.iter().find(|b| b.attempt == attempt).map(|b| b.row) {
                    lane.marks.push(Mark { x: scale.x(at), row, kind, attempt });
                }
            }
        }
    }
}

/// A move's decisions and fallbacks: what and when.
fn marks_of(m: &MoveReport) -> Vec<(MarkKind, i64)> {
    let mut marks = Vec::new();
    for e in m.events.iter().filter(|e| e.kind == EventKind::Decision) {
        let decision = e.data.as_ref().and_then(|d| d.get("decision")).and_then(|d| d.as_str()).unwrap_or("");
        let kind = if decision == "start-post-copy" || e.message.starts_with("switched to post-copy") {
            MarkKind::Fallback
        } else if decision == "abort" || e.message.starts_with("aborted") {
            MarkKind::Abort
        } else {
            MarkKind::Decision
        };
        marks.push((kind, e.at_ms));
    }
    // A new attempt after one that failed falls back (to a cold move, to another target).
    for pair in m.attempts.windows(2) {
        if !pair[0].attempt.outcome.is_some_and(Status::is_success) {
            marks.push((MarkKind::Fallback, pair[1].attempt.started_ms));
        }
    }
    marks
}

/// Ticks every 1, 2, 5, 10, 15 or 30 s, min or h, at most about ten.
pub(crate) fn ticks(scale: &Scale) -> Vec<Tick> {
    const S: i64 = 1_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;
    let steps = [
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        M,
        2 * M,
        5 * M,
        10 * M,
        15 * M,
        30 * M,
        H,
        2 * H,
        3 * H,
        6 * H,
        12 * H,
        24 * H,
    ];
    let length = scale.t1 - scale.t0;
    let step = steps.into_iter().find(|s| length / s <= 10).unwrap_or(24 * H);
    let mut t = scale.t0.div_euclid(step) * step;
    if t < scale.t0 {
        t += step;
    }
    let mut ticks = Vec::new();
    while t <= scale.t1 {
        let time = clock(t);
        ticks.push(Tick { x: scale.x(t), label: if step >= M { time[..5].to_owned() } else { time } });
        t += step;
    }
    ticks
}

/// The timeline as two SVGs: the axis (kept in view while the lanes scroll) and the lanes.
pub(crate) fn svg(t: &Timeline, out: &mut String) {
    let right = GUTTER + PLOT;
    // The axis: tick labels, and the lines' labels (or arrows at the edge) on two rows
    // above them, so that a deadline and an estimated end close together both read.
    let _ = write!(
        out,
        "<svg class=\"axis\" viewBox=\"0 0 {WIDTH} {AXIS}\" width=\"{WIDTH}\" height=\"{AXIS}\" \
         text-anchor=\"middle\">"
    );
    for tick in &t.ticks {
        let _ = write!(out, "<text x=\"{:.0}\" y=\"{}\">{}</text>", tick.x, AXIS - 4.0, tick.label);
    }
    let mut labels: Vec<(f64, &Line)> = t
        .lines
        .iter()
        .map(|line| {
            let x = match line.at {
                At::Inside(x) => x,
                At::Before => GUTTER,
                At::After => right,
            };
            (x, line)
        })
        .collect();
    labels.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut last_on_row = [f64::NEG_INFINITY; 2];
    for (x, line) in labels {
        let (anchor, text) = match line.at {
            At::Before => ("start", format!("\u{2190} {}", esc(&line.label))),
            At::After => ("end", format!("{} \u{2192}", esc(&line.label))),
            // Labels near an edge hang inward.
            At::Inside(x) if x > WIDTH - 130.0 => ("end", esc(&line.label).into_owned()),
            At::Inside(x) if x < GUTTER + 130.0 => ("start", esc(&line.label).into_owned()),
            At::Inside(_) => ("middle", esc(&line.label).into_owned()),
        };
        // The first row with room since its previous label; the first if neither has.
        let row = (0..2).find(|&r| x - last_on_row[r] > 260.0).unwrap_or(0);
        last_on_row[row] = x;
        let _ = write!(
            out,
            "<text class=\"{}\" x=\"{x:.0}\" y=\"{}\" text-anchor=\"{anchor}\">{text}</text>",
            line.class,
            11 + 12 * row
        );
    }
    out.push_str("</svg>");

    let height = t.height.ceil();
    let _ = write!(
        out,
        "<svg class=\"lanes\" id=\"lanes\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" \
         height=\"{height}\" style=\"--bar:{}px\">",
        t.bar
    );
    // Grid and lane separators: one path each.
    out.push_str("<path class=\"grid\" d=\"");
    for tick in &t.ticks {
        let _ = write!(out, "M{:.0} 0V{height}", tick.x);
    }
    out.push_str("\"/><path class=\"sep\" d=\"");
    for lane in t.lanes.iter().skip(1) {
        let _ = write!(out, "M0 {:.0}H{right}", lane.y);
    }
    out.push_str("\"/>");
    for lane in &t.lanes {
        let label = if lane.host.chars().count() > 24 {
            format!("{}\u{2026}", lane.host.chars().take(23).collect::<String>())
        } else {
            lane.host.clone()
        };
        // The lane's group starts at its first row, so that most bars need no y.
        let _ = write!(
            out,
            "<g class=\"lane\" data-host=\"{}\" transform=\"translate(0 {:.0})\">\
             <text class=\"host\" x=\"{:.0}\" y=\"{:.0}\">{}</text>",
            esc(&lane.host),
            lane.y + LANE_PAD,
            GUTTER - 8.0,
            (lane.rows as f64 * t.pitch - (t.pitch - t.bar)) / 2.0,
            esc(&label)
        );
        // Bars grouped by colour (and side): the class is written once per group, not
        // once per bar. Integer units: a 1000-unit plot needs no more.
        let mut groups: Vec<(&str, bool)> = lane.bars.iter().map(|b| (b.class, b.inbound)).collect();
        groups.sort_unstable();
        groups.dedup();
        for (class, inbound) in groups {
            let _ = write!(out, "<g class=\"{class}{}\">", if inbound { " in" } else { "" });
            for bar in lane.bars.iter().filter(|b| b.class == class && b.inbound == inbound) {
                let _ = write!(out, "<rect x=\"{:.0}\"", bar.x);
                if bar.row > 0 {
                    let _ = write!(out, " y=\"{:.0}\"", bar.row as f64 * t.pitch);
                }
                // One unit short, so that back-to-back bars in a row stay apart.
                let _ = write!(out, " width=\"{:.0}\" data-a=\"{}\"/>", (bar.w - 1.0).max(1.0), bar.attempt);
            }
            out.push_str("</g>");
        }
        let half = (t.bar / 2.0).max(3.0).round();
        for mark in &lane.marks {
            // A diamond centred on the bar, drawn from its top corner.
            let _ = write!(
                out,
                "<path class=\"{}\" data-a=\"{}\" d=\"M{:.0} {:.0}l{half} {half}-{half} {half}-{half}-{half}z\"/>",
                mark.kind.class(),
                mark.attempt,
                mark.x,
                mark.row as f64 * t.pitch + t.bar / 2.0 - half,
            );
        }
        out.push_str("</g>");
    }
    for line in &t.lines {
        if let At::Inside(x) = line.at {
            let _ = write!(
                out,
                "<line class=\"{}\" x1=\"{x:.0}\" x2=\"{x:.0}\" y1=\"0\" y2=\"{height}\"><title>{}</title></line>",
                line.class,
                esc(&line.label)
            );
        }
    }
    out.push_str("</svg>");
}
