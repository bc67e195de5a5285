//! A roll's timeline of waves: one lane per host in wave order, on it a segment for each
//! step the host went through — its drain, its hook, its check, its VMs' return — on one
//! time axis, "now" as a line while the roll goes on. [`layout`] computes the geometry
//! (pure, tested); [`svg`] writes it in the look of the run's timeline
//! ([`crate::timeline`]), whose scale and ticks it shares.
//!
//! A roll has tens of hosts, not thousands: each segment carries its own `<title>` (its
//! figures on hover, without the page's script).

use std::fmt::Write;

use crate::html::esc;
use crate::roll::{result_words, HostReport, RollView, Span};
use crate::text::span_words;
use crate::timeline::{ticks, At, Scale, Tick, AXIS, GUTTER, PLOT, WIDTH};
use crate::units::utc;

/// Height of a segment.
const BAR: f64 = 14.0;
/// Height of a lane.
const PITCH: f64 = 22.0;
/// The narrowest segment: a check that answered at once still shows.
const MIN_WIDTH: f64 = 3.0;

/// The step of a host a segment shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Its VMs leaving.
    Drain,
    /// Its hook.
    Hook,
    /// Its check, until it passed or its time was up.
    Check,
    /// Its VMs coming back.
    Return,
}

impl Step {
    fn class(self) -> &'static str {
        match self {
            Step::Drain => "drain",
            Step::Hook => "hook",
            Step::Check => "check",
            Step::Return => "back",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Step::Drain => "drain",
            Step::Hook => "hook",
            Step::Check => "check",
            Step::Return => "return",
        }
    }
}

/// The whole timeline, in SVG units.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RollTimeline {
    /// The plot's left edge, ms since the epoch.
    pub t0: i64,
    /// Its right edge.
    pub t1: i64,
    /// One lane per host that has a wave, in wave order.
    pub lanes: Vec<RollLane>,
    /// Time ticks.
    pub ticks: Vec<Tick>,
    /// "Now", while the roll goes on.
    pub now: Option<(At, String)>,
    /// Height of the lanes' SVG.
    pub height: f64,
}

/// One host's lane.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RollLane {
    /// Host name.
    pub host: String,
    /// Its wave.
    pub wave: usize,
    /// Top of the lane.
    pub y: f64,
    /// Its steps, in the order they happened.
    pub segments: Vec<Segment>,
}

/// One step of a host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    /// Which.
    pub step: Step,
    /// Left edge.
    pub x: f64,
    /// Width, at least [`MIN_WIDTH`] units.
    pub w: f64,
    /// It did not end well.
    pub failed: bool,
    /// It has not ended: it runs to "now" (or to the roll's end when the roll ended without it).
    pub open: bool,
    /// What it was, in words, for its hover title.
    pub title: String,
}

/// A step's span and whether it failed, before it is placed.
struct Placed {
    step: Step,
    span: Span,
    failed: bool,
    title: String,
}

/// The steps of `host` that have a time.
fn steps(host: &HostReport, now_ms: i64) -> Vec<Placed> {
    let mut steps = Vec::new();
    if let Some((drain, span)) = host.drain.as_ref().and_then(|d| Some((d, d.span?))) {
        let failed = drain.vms.iter().any(|d| d.status.is_terminal() && !d.status.is_success());
        let moved = drain.vms.iter().filter(|d| d.status.is_success()).count();
        let title =
            format!("drain {}: {}, {moved} of {} VMs left", host.host, span_words(span, now_ms), drain.vms.len());
        steps.push(Placed { step: Step::Drain, span, failed, title });
    }
    for (step, run) in [(Step::Hook, &host.hook), (Step::Check, &host.check)] {
        let Some((run, span)) = run.as_ref().and_then(|r| Some((r, r.span?))) else { continue };
        let failed = !run.result.ok() && !run.result.open();
        let title =
            format!("{} {}: {} ({})", step.name(), host.host, result_words(&run.result), span_words(span, now_ms));
        steps.push(Placed { step, span, failed, title });
    }
    if let Some((back, span)) = host.back.as_ref().and_then(|b| Some((b, b.span?))) {
        let home = back.vms.iter().filter(|d| d.status.is_success()).count();
        let failed = back.state.is_ended() && !back.all_back;
        let title =
            format!("return {}: {}, {home} of {} VMs back", host.host, span_words(span, now_ms), back.vms.len());
        steps.push(Placed { step: Step::Return, span, failed, title });
    }
    steps
}

/// Lays out `roll`, whose run was created at `created_ms`; `ended_ms` is its end once it
/// ended, `now_ms` when the report was made.
pub(crate) fn layout(roll: &RollView, created_ms: i64, ended_ms: Option<i64>, now_ms: i64) -> RollTimeline {
    // What has not ended runs to now, or, in a roll that ended without ending it, to its end.
    let open_end = ended_ms.unwrap_or(now_ms);
    let hosts: Vec<(&HostReport, usize, Vec<Placed>)> =
        roll.hosts.iter().filter_map(|h| Some((h, h.wave?, steps(h, now_ms)))).collect();
    let spans = hosts.iter().flat_map(|(_, _, steps)| steps.iter().map(|p| p.span));
    let (mut first, mut last) = (created_ms, ended_ms.unwrap_or(created_ms));
    for span in spans {
        first = first.min(span.started_ms);
        last = last.max(span.ended_ms.unwrap_or(open_end));
    }
    let now = ended_ms.is_none().then_some(now_ms);
    if let Some(now) = now {
        last = last.max(now);
    }
    let length = (last - first).max(1_000);
    let pad = length / 50;
    let scale = Scale { t0: first - pad, t1: first + length + pad };
    let lanes = hosts
        .into_iter()
        .enumerate()
        .map(|(i, (host, wave, steps))| RollLane {
            host: host.host.clone(),
            wave,
            y: i as f64 * PITCH,
            segments: steps
                .into_iter()
                .map(|p| {
                    let x0 = scale.x(p.span.started_ms);
                    let x1 = scale.x(p.span.ended_ms.unwrap_or(open_end).max(p.span.started_ms));
                    Segment {
                        step: p.step,
                        x: x0,
                        w: (x1 - x0).max(MIN_WIDTH),
                        failed: p.failed,
                        open: p.span.ended_ms.is_none(),
                        title: p.title,
                    }
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    let height = (lanes.len() as f64 * PITCH).max(1.0);
    RollTimeline {
        t0: scale.t0,
        t1: scale.t1,
        ticks: ticks(&scale),
        now: now.map(|n| (scale.at(n), format!("now {}", utc(n)))),
        lanes,
        height,
    }
}

/// The timeline as two SVGs, as the run's: the axis, then the lanes.
pub(crate) fn svg(t: &RollTimeline, out: &mut String) {
    let right = GUTTER + PLOT;
    let _ = write!(
        out,
        "<svg class=\"axis\" viewBox=\"0 0 {WIDTH} {AXIS}\" width=\"{WIDTH}\" height=\"{AXIS}\" text-anchor=\"middle\">"
    );
    for tick in &t.ticks {
        let _ = write!(out, "<text x=\"{:.0}\" y=\"{}\">{}</text>", tick.x, AXIS - 4.0, tick.label);
    }
    if let Some((At::Inside(x), label)) = &t.now {
        let anchor = if *x > WIDTH - 130.0 { "end" } else { "middle" };
        let _ = write!(out, "<text class=\"now\" x=\"{x:.0}\" y=\"11\" text-anchor=\"{anchor}\">{}</text>", esc(label));
    }
    out.push_str("</svg>");
    let height = t.height.ceil();
    let _ = write!(
        out,
        "<svg class=\"rolls\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\">\
         <path class=\"grid\" d=\""
    );
    for tick in &t.ticks {
        let _ = write!(out, "M{:.0} 0V{height}", tick.x);
    }
    // A line between two waves, none between two hosts of one wave.
    out.push_str("\"/><path class=\"sep\" d=\"");
    for pair in t.lanes.windows(2).filter(|p| p[0].wave != p[1].wave) {
        let _ = write!(out, "M0 {:.0}H{right}", pair[1].y);
    }
    out.push_str("\"/>");
    let middle = (PITCH / 2.0).round();
    for (i, lane) in t.lanes.iter().enumerate() {
        let _ = write!(
            out,
            "<g class=\"lane\" data-host=\"{}\" transform=\"translate(0 {:.0})\">",
            esc(&lane.host),
            lane.y
        );
        // The wave's number once, on its first lane.
        if i == 0 || t.lanes[i - 1].wave != lane.wave {
            let _ = write!(out, "<text class=\"wave\" x=\"4\" y=\"{middle}\">wave {}</text>", lane.wave);
        }
        let _ = write!(out, "<text class=\"host\" x=\"{:.0}\" y=\"{middle}\">{}</text>", GUTTER - 8.0, esc(&lane.host));
        for s in &lane.segments {
            let mut class = s.step.class().to_owned();
            if s.failed {
                class.push_str(" bad");
            }
            if s.open {
                class.push_str(" going");
            }
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{:.0}\" y=\"{:.0}\" width=\"{:.0}\" height=\"{BAR}\"><title>{}</title></rect>",
                s.x,
                (PITCH - BAR) / 2.0,
                s.w,
                esc(&s.title)
            );
        }
        out.push_str("</g>");
    }
    if let Some((At::Inside(x), label)) = &t.now {
        let _ = write!(
            out,
            "<line class=\"now\" x1=\"{x:.0}\" x2=\"{x:.0}\" y1=\"0\" y2=\"{height}\"><title>{}</title></line>",
            esc(label)
        );
    }
    out.push_str("</svg>");
}
