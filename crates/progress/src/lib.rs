//! The progress display of a run: on a terminal, one bar per migration in flight and an
//! overall bar with an ETA, redrawn in place; otherwise plain timestamped lines.
//!
//! A [`Board`] is pure. The run engine tells it what happens ([`Board::started`],
//! [`Board::sample`], [`Board::finished`], …) and asks it for text to print: [`Board::frame`]
//! on a terminal, [`Board::plain`] otherwise ([`Board::render`] picks). It reads no clock:
//! every method takes `now`, seconds since the run started (the scheduler's clock), so what
//! it prints depends only on what it was told, and tests need no terminal and no waiting.
//!
//! # The ETA
//!
//! Remaining work is the bytes still to send of the migrations in flight, later memory passes
//! included ([`left_to_send`]), plus the memory of the moves not started, scaled by what the
//! finished moves sent per byte they had to send (pre-copy re-sends dirtied pages). It is
//! divided by the aggregate throughput, an exponential average over about ten seconds, and
//! the fixed cost of each migration left ([`PER_MIGRATION_OVERHEAD_S`]) is added, divided by
//! the number of migrations observed in flight (also averaged).
//!
//! The ETA shown never goes up: when the estimate grows (a new memory pass, a slowdown, a
//! stall) the countdown holds, and when it falls it is followed, however fast. Before any
//! throughput is observed it counts down from the preview's makespan when the board was
//! given one ([`Board::planned`]), else shows `ETA --`; the first estimate from observation
//! replaces the planned countdown, up or down (the only time the ETA may go up: what was
//! measured replaces what was planned). Once every move is over: the run's total time.
//! The hypervisor reports a dirty rate only from the end of a migration's first pass, so
//! until one move has finished, the first pass can look like all the work and the countdown
//! then holds through the later passes.

use std::collections::HashMap;

use ferry_driver::Progress;
use ferry_model::{Phase, Status};
use ferry_preview::estimate::PER_MIGRATION_OVERHEAD_S;
use ferry_preview::Kind;

/// Seconds between two progress lines of one migration, in plain output.
const PROGRESS_EVERY_S: f64 = 5.0;
/// Seconds between two overall lines, in plain output.
const OVERALL_EVERY_S: f64 = 10.0;
/// Shortest span over which throughput is measured, s: samples come every half second.
const RATE_WINDOW_S: f64 = 1.0;
/// Time constant of the throughput and concurrency averages, s.
const SMOOTHING_S: f64 = 10.0;
/// Narrowest bar drawn, in characters between the brackets; narrower, the bar is dropped.
const BAR_MIN: usize = 8;
/// Widest bar drawn.
const BAR_MAX: usize = 20;

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// One move of the run, as the board needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// VM name, the key of every later event.
    pub vm: String,
    /// Guest memory, bytes: the work of a move that has not started.
    pub memory_bytes: u64,
}

/// Where the board is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    /// Whether it is a terminal (redrawn frames) or not (plain lines).
    pub tty: bool,
    /// Columns; no line of a frame's board is wider.
    pub width: usize,
}

/// The display of a run: what every move is doing and how far the run is.
#[derive(Debug)]
pub struct Board {
    moves: Vec<Move>,
    index: HashMap<String, usize>,
    terminal: Terminal,
    /// Lines to print once, above the board (or as plain lines), oldest first.
    log: Vec<LogLine>,
    /// The characters of each line of the last frame's board, to move back over.
    drawn: Vec<usize>,
    /// Bytes sent by all migrations so far, as their samples tell.
    sent: u64,
    /// Start of the current throughput window: time and `sent` then.
    window: Option<(f64, u64)>,
    /// Smoothed aggregate throughput, bytes/s; none until bytes were seen moving.
    rate: Option<f64>,
    /// Smoothed number of moves in flight.
    concurrency: Option<f64>,
    /// Bytes sent by the successful moves that reported samples, and the bytes they had to
    /// send at first (memory and disks).
    finished_sent: u64,
    finished_total: u64,
    /// The ETA last shown, s.
    shown_eta: Option<f64>,
    /// The preview's makespan, s from the start, when the run is driven from its start.
    planned_s: Option<f64>,
    /// Whether an estimate from observation was made (the plan's countdown is over).
    measured: bool,
    /// When the last move ended, once all have.
    ended_at: Option<f64>,
    /// When the last overall plain line was printed.
    overall_at: f64,
    /// Whether the final overall plain line was printed.
    final_printed: bool,
}

#[derive(Debug)]
struct Move {
    vm: String,
    memory_bytes: u64,
    state: State,
}

#[derive(Debug)]
enum State {
    Pending,
    Running(Running),
    Finished(Outcome),
}

#[derive(Debug)]
struct Running {
    from: String,
    to: String,
    kind: Kind,
    since: f64,
    phase: Option<Phase>,
    last: Option<Progress>,
    /// When its last plain progress line was printed (its start, before the first).
    printed_at: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    Skipped,
}

impl Outcome {
    fn of(status: Status) -> Outcome {
        match status {
            s if s.is_success() => Outcome::Succeeded,
            Status::SkippedTimeout | Status::SkippedDependency | Status::SkippedNoPrevStatus | Status::Aborted => {
                Outcome::Skipped
            }
            _ => Outcome::Failed,
        }
    }
}

#[derive(Debug)]
struct LogLine {
    text: String,
    /// Printed above a frame too; otherwise only as a plain line (the bar shows it).
    on_tty: bool,
}

/// The ETA as shown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Eta {
    /// No throughput observed yet.
    Unknown,
    /// Seconds left.
    Remaining(f64),
    /// Every move is over; the run took this long, s.
    Done(f64),
}

/// The overall line's figures.
#[derive(Debug)]
struct Summary {
    fraction: f64,
    done: usize,
    total: usize,
    failed: usize,
    skipped: usize,
    running: usize,
    eta: Eta,
}

/// A board's figures at one moment, for watchers that draw their own ([`Board::snapshot`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// Seconds until every move is over (0 once they are); before any throughput, the
    /// preview's countdown ([`Board::planned`]) or none.
    pub eta_s: Option<f64>,
    /// The run's work done, 0 to 1, each move weighted by its memory.
    pub fraction: f64,
    /// Moves over.
    pub done: usize,
    /// Moves in the run.
    pub total: usize,
    /// The migrations in flight.
    pub in_flight: Vec<InFlight>,
}

/// A migration in flight.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InFlight {
    /// Its VM.
    pub vm: String,
    /// Source host.
    pub from: String,
    /// Target host.
    pub to: String,
    /// Seconds since it started.
    pub since_s: f64,
    /// Its last progress sample, once there is one.
    pub last: Option<Progress>,
}

/// A piece of a board line.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    /// A bar filled to this fraction, as wide as the line allows.
    Bar(f64),
}

/// A cell and when it goes if the line is too wide: higher ranks first, 0 never.
type Ranked = (u8, Cell);

impl Board {
    /// A board for a run of these moves (VM names are unique in a run; a repeated name is
    /// ignored), printed on `terminal`.
    pub fn new(moves: Vec<Planned>, terminal: Terminal) -> Board {
        let mut board = Board {
            moves: Vec::with_capacity(moves.len()),
            index: HashMap::with_capacity(moves.len()),
            terminal,
            log: Vec::new(),
            drawn: Vec::new(),
            sent: 0,
            window: None,
            rate: None,
            concurrency: None,
            finished_sent: 0,
            finished_total: 0,
            shown_eta: None,
            planned_s: None,
            measured: false,
            ended_at: None,
            overall_at: 0.0,
            final_printed: false,
        };
        for planned in moves {
            if !board.index.contains_key(&planned.vm) {
                board.index.insert(planned.vm.clone(), board.moves.len());
                board.moves.push(Move { vm: planned.vm, memory_bytes: planned.memory_bytes, state: State::Pending });
            }
        }
        board
    }

    /// The run's makespan as its preview estimated it, s: the ETA counts down from it until
    /// throughput is observed. `None`, or a figure that is not finite: `ETA --` until then.
    pub fn planned(mut self, makespan_s: Option<f64>) -> Board {
        self.planned_s = makespan_s.filter(|s| s.is_finite() && *s > 0.0);
        self
    }

    /// `vm` started moving. A VM the board was not given is added, without memory.
    pub fn started(&mut self, vm: &str, from: &str, to: &str, kind: Kind, now: f64) {
        let i = self.slot(vm);
        let kind_name = match kind {
            Kind::Live => "live",
            Kind::Cold => "cold",
        };
        self.moves[i].state = State::Running(Running {
            from: from.to_string(),
            to: to.to_string(),
            kind,
            since: now,
            phase: None,
            last: None,
            printed_at: now,
        });
        self.log(now, false, format!("{vm}  {from} -> {to}  started {kind_name}"));
    }

    /// `vm`'s move reached `phase` (shown on the bar of a cold move). Ignored unless it runs.
    pub fn phase(&mut self, vm: &str, phase: Phase, now: f64) {
        if let Some(State::Running(run)) = self.index.get(vm).map(|&i| &mut self.moves[i].state) {
            run.phase = Some(phase);
            self.log(now, false, format!("{vm}  {phase}"));
        }
    }

    /// A progress sample of `vm`'s migration. Ignored unless it runs.
    pub fn sample(&mut self, vm: &str, progress: &Progress, now: f64) {
        let Some(&i) = self.index.get(vm) else { return };
        let State::Running(run) = &mut self.moves[i].state else { return };
        let before = run.last.as_ref().map_or(0, |p| p.transferred_bytes);
        run.last = Some(progress.clone());
        self.sent += progress.transferred_bytes.saturating_sub(before);
        if self.window.is_none() {
            self.window = Some((now, self.sent));
        }
        self.observe(now);
    }

    /// `vm`'s move is over with `status`; `message` says why or how (may be empty).
    pub fn finished(&mut self, vm: &str, status: Status, message: &str, now: f64) {
        let i = self.slot(vm);
        let outcome = Outcome::of(status);
        let mut text = format!("{vm}  ");
        if let State::Running(run) = &self.moves[i].state {
            text.push_str(&format!("{} -> {}  {status}  {:.1} s", run.from, run.to, now - run.since));
            if let (Outcome::Succeeded, Some(p)) = (outcome, &run.last) {
                // What was left at the last sample was sent before the end.
                self.sent += p.remaining_bytes;
                self.finished_sent += p.transferred_bytes + p.remaining_bytes;
                self.finished_total += if p.total_bytes > 0 { p.total_bytes } else { self.moves[i].memory_bytes };
            }
        } else {
            text.push_str(status.name());
        }
        if !message.is_empty() {
            text.push_str("  ");
            text.push_str(message);
        }
        self.moves[i].state = State::Finished(outcome);
        self.log(now, true, text);
        if self.is_done() {
            self.ended_at = Some(now);
        }
    }

    /// A message about the whole run, printed once.
    pub fn note(&mut self, text: &str, now: f64) {
        self.log(now, true, text.to_string());
    }

    /// Whether every move is over.
    pub fn is_done(&self) -> bool {
        self.moves.iter().all(|m| matches!(m.state, State::Finished(_)))
    }

    /// The terminal is now `width` columns wide (it was resized): the next frame fits it,
    /// and moves back over the last one as it wraps there.
    pub fn resize(&mut self, width: usize) {
        self.terminal.width = width;
    }

    /// What to print now: a [`frame`](Board::frame) on a terminal, otherwise the
    /// [`plain`](Board::plain) lines, each ending with a newline.
    pub fn render(&mut self, now: f64) -> String {
        if self.terminal.tty {
            self.frame(now)
        } else {
            self.plain(now).into_iter().map(|line| line + "\n").collect()
        }
    }

    /// Text that redraws the board in place on a terminal: moves the cursor up over the
    /// previous frame's board and clears it, prints the lines logged since (they stay and
    /// scroll away), then one bar per move in flight and the overall line, each fitted to
    /// the terminal's width.
    pub fn frame(&mut self, now: f64) -> String {
        let summary = self.summary(now);
        let mut out = String::new();
        // Up over the last frame's lines as the terminal shows them now: a line that a
        // narrower terminal wraps takes several rows.
        let width = self.terminal.width;
        let rows: usize = self.drawn.iter().map(|&chars| chars.div_ceil(width.max(1)).max(1)).sum();
        if rows > 0 {
            out.push_str(&format!("\x1b[{rows}A\r\x1b[J"));
        }
        for line in self.log.drain(..).filter(|l| l.on_tty) {
            out.push_str(&line.text);
            out.push('\n');
        }
        let mut running: Vec<(&str, &Running)> = self.running().collect();
        running.sort_by(|a, b| a.1.since.total_cmp(&b.1.since));
        let pad = (
            running.iter().map(|(vm, _)| vm.chars().count()).max().unwrap_or(0),
            running.iter().map(|(_, run)| route(run).chars().count()).max().unwrap_or(0),
        );
        let mut lines: Vec<String> =
            running.iter().map(|(vm, run)| fit(move_cells(vm, run, now, pad), width)).collect();
        lines.push(fit(summary.cells(), width));
        self.drawn = lines.iter().map(|l| l.chars().count()).collect();
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Lines for output that is not a terminal, oldest first, each starting with the time
    /// since the run started: what was logged since the last call (starts, phases, ends,
    /// notes), a progress line for each migration in flight at most every 5 s, an overall
    /// line every 10 s and once when every move is over.
    pub fn plain(&mut self, now: f64) -> Vec<String> {
        let mut lines: Vec<String> = self.log.drain(..).map(|l| l.text).collect();
        let stamp = timestamp(now);
        for Move { vm, state, .. } in &mut self.moves {
            if let State::Running(run) = state {
                if run.last.is_some() && now - run.printed_at >= PROGRESS_EVERY_S {
                    run.printed_at = now;
                    lines.push(format!("{stamp}  {}", plain_text(move_cells(vm, run, now, (0, 0)))));
                }
            }
        }
        let done = self.is_done();
        if (done && !self.final_printed) || (!done && now - self.overall_at >= OVERALL_EVERY_S) {
            self.overall_at = now;
            self.final_printed = done;
            let summary = self.summary(now);
            let percent = percent(summary.fraction);
            lines.push(format!("{stamp}  {}  {}", percent.trim_start(), plain_text(summary.cells())));
        }
        lines
    }

    /// What a watcher other than a terminal needs now (`ferry serve`'s metrics and pages):
    /// the ETA as the board would show it, and each migration in flight with its last
    /// sample. Drops the lines logged since the last call, which nobody prints.
    pub fn snapshot(&mut self, now: f64) -> Snapshot {
        self.log.clear();
        let summary = self.summary(now);
        let eta_s = match summary.eta {
            Eta::Unknown => None,
            Eta::Remaining(s) => Some(s),
            Eta::Done(_) => Some(0.0),
        };
        let in_flight = self
            .running()
            .map(|(vm, run)| InFlight {
                vm: vm.to_owned(),
                from: run.from.clone(),
                to: run.to.clone(),
                since_s: now - run.since,
                last: run.last.clone(),
            })
            .collect();
        Snapshot { eta_s, fraction: summary.fraction, done: summary.done, total: summary.total, in_flight }
    }

    fn slot(&mut self, vm: &str) -> usize {
        if let Some(&i) = self.index.get(vm) {
            return i;
        }
        self.index.insert(vm.to_string(), self.moves.len());
        self.moves.push(Move { vm: vm.to_string(), memory_bytes: 0, state: State::Pending });
        self.moves.len() - 1
    }

    fn log(&mut self, now: f64, on_tty: bool, text: String) {
        self.log.push(LogLine { text: format!("{}  {text}", timestamp(now)), on_tty });
    }

    fn running(&self) -> impl Iterator<Item = (&str, &Running)> {
        self.moves.iter().filter_map(|m| match &m.state {
            State::Running(run) => Some((m.vm.as_str(), run)),
            _ => None,
        })
    }

    /// Closes the throughput window once it spans [`RATE_WINDOW_S`] and folds it into the
    /// averages, weighted by its length (an exponential average with [`SMOOTHING_S`]).
    fn observe(&mut self, now: f64) {
        let Some((since, sent_then)) = self.window else { return };
        let span = now - since;
        if span < RATE_WINDOW_S {
            return;
        }
        let weight = 1.0 - (-span / SMOOTHING_S).exp();
        let throughput = self.sent.saturating_sub(sent_then) as f64 / span;
        self.rate = match self.rate {
            Some(rate) => Some(rate + weight * (throughput - rate)),
            None if throughput > 0.0 => Some(throughput),
            None => None,
        };
        let running = self.running().count() as f64;
        self.concurrency = Some(self.concurrency.map_or(running, |c| c + weight * (running - c)));
        self.window = Some((now, self.sent));
    }

    /// Seconds until every move is over, from what was observed; none without throughput.
    fn estimate(&self) -> Option<f64> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        // Pre-copy sends pages the guest dirtied again: finished moves tell how much more.
        let resent = if self.finished_total > 0 { self.finished_sent as f64 / self.finished_total as f64 } else { 1.0 };
        let (mut bytes, mut overhead) = (0.0, 0.0);
        for m in &self.moves {
            let memory = m.memory_bytes as f64 * resent;
            match &m.state {
                State::Pending | State::Running(Running { last: None, .. }) => {
                    bytes += memory;
                    overhead += PER_MIGRATION_OVERHEAD_S;
                }
                // Its copy runs: connecting and starting QEMU are behind it, finding and
                // finalizing the VM are not; the split is not measured, half is assumed.
                State::Running(Running { last: Some(p), .. }) => {
                    bytes += left_to_send(p, resent);
                    overhead += PER_MIGRATION_OVERHEAD_S / 2.0;
                }
                State::Finished(_) => {}
            }
        }
        Some(bytes / rate + overhead / self.concurrency.unwrap_or(1.0).max(1.0))
    }

    /// The ETA to show now; updates what was last shown.
    fn eta(&mut self, now: f64) -> Eta {
        if self.is_done() {
            return Eta::Done(self.ended_at.unwrap_or(0.0));
        }
        self.observe(now);
        let estimate = self.estimate();
        self.shown_eta = match (estimate, self.measured) {
            (Some(_), false) => {
                self.measured = true;
                estimate
            }
            (None, false) => self.planned_s.map(|planned| planned - now).filter(|left| *left > 0.0),
            (_, true) => next_shown(self.shown_eta, estimate),
        };
        self.shown_eta.map_or(Eta::Unknown, Eta::Remaining)
    }

    fn summary(&mut self, now: f64) -> Summary {
        let memory: u64 = self.moves.iter().map(|m| m.memory_bytes).sum();
        let weight = |m: &Move| {
            if memory > 0 {
                m.memory_bytes as f64 / memory as f64
            } else {
                1.0 / self.moves.len() as f64
            }
        };
        let mut s = Summary {
            fraction: 0.0,
            done: 0,
            total: self.moves.len(),
            failed: 0,
            skipped: 0,
            running: 0,
            eta: Eta::Unknown,
        };
        for m in &self.moves {
            match &m.state {
                State::Pending => {}
                State::Running(run) => {
                    s.running += 1;
                    s.fraction += weight(m) * run.last.as_ref().map_or(0.0, done_fraction);
                }
                State::Finished(outcome) => {
                    s.done += 1;
                    s.failed += usize::from(*outcome == Outcome::Failed);
                    s.skipped += usize::from(*outcome == Outcome::Skipped);
                    s.fraction += weight(m);
                }
            }
        }
        s.eta = self.eta(now);
        s
    }
}

impl Summary {
    /// `[####......]  3/6 done  1 failed  2 running  ETA 0:42`
    fn cells(&self) -> Vec<Ranked> {
        let mut cells =
            vec![(2, Cell::Bar(self.fraction)), (0, Cell::Text(format!("{}/{} done", self.done, self.total)))];
        let counts = [(0, self.failed, "failed"), (3, self.skipped, "skipped"), (4, self.running, "running")];
        for (rank, n, what) in counts {
            if n > 0 {
                cells.push((rank, Cell::Text(format!("{n} {what}"))));
            }
        }
        let eta = match self.eta {
            Eta::Unknown => "ETA --".to_string(),
            Eta::Remaining(s) => format!("ETA {}", clock(s)),
            Eta::Done(s) => format!("total {}", clock(s)),
        };
        cells.push((0, Cell::Text(eta)));
        cells
    }
}

/// The ETA to show after `shown`, given a new estimate: never more than `shown`.
fn next_shown(shown: Option<f64>, estimate: Option<f64>) -> Option<f64> {
    match (shown, estimate) {
        (Some(shown), Some(estimate)) => Some(shown.min(estimate)),
        (shown, estimate) => shown.or(estimate),
    }
}

/// `web-1  host-a -> host-b  [#####.....]   42%  107.5/256.0 MiB  58.1 MiB/s  pass 2`; a cold
/// move without samples: `db-1  host-a -> host-c  cold  transferring  0:12`. `pad`: widths
/// of the name and route columns.
fn move_cells(vm: &str, run: &Running, now: f64, pad: (usize, usize)) -> Vec<Ranked> {
    let phase = run.phase.map_or("starting", Phase::name);
    let mut cells =
        vec![(0, Cell::Text(format!("{vm:<0$}", pad.0))), (4, Cell::Text(format!("{:<1$}", route(run), pad.1)))];
    let text = Cell::Text;
    match (&run.last, run.kind) {
        (None, Kind::Cold) => {
            cells.extend([(3, text("cold".into())), (0, text(phase.into())), (2, text(clock(now - run.since)))])
        }
        (None, Kind::Live) => {
            cells.extend([(2, Cell::Bar(0.0)), (0, text(percent(0.0))), (1, text("starting".into()))])
        }
        (Some(p), kind) => {
            let extra = match kind {
                Kind::Cold => phase.to_string(),
                Kind::Live if p.postcopy_active => "post-copy".to_string(),
                Kind::Live => format!("pass {}", p.memory_passes),
            };
            let fraction = done_fraction(p);
            cells.extend([
                (2, Cell::Bar(fraction)),
                (0, text(percent(fraction))),
                (3, text(amount(p.total_bytes.saturating_sub(p.remaining_bytes), p.total_bytes))),
                (5, text(format!("{:.1} MiB/s", p.bandwidth_bytes_s as f64 / MIB))),
                (1, text(extra)),
            ]);
        }
    }
    cells
}

/// Bytes a live migration still has to send: the rest of this memory pass and the passes
/// after it, each resending what the guest dirtied during the one before (the ratio of dirty
/// rate to bandwidth, capped at 0.9: closer to 1, auto-converge or post-copy ends it). Pages
/// dirtied during a pass are counted in `remaining_bytes` only when it ends, so mid-pass the
/// expected total less what was sent is taken when larger, the total scaled by `resent` (what
/// finished moves sent per byte they had to send) or by the passes, whichever is more.
fn left_to_send(p: &Progress, resent: f64) -> f64 {
    let dirtied = match p.bandwidth_bytes_s {
        0 => 0.0,
        bandwidth => (p.dirty_rate_bytes_s as f64 / bandwidth as f64).min(0.9),
    };
    let passes = 1.0 / (1.0 - dirtied);
    let this_and_later = p.remaining_bytes as f64 * passes;
    let expected = p.total_bytes as f64 * resent.max(passes) - p.transferred_bytes as f64;
    this_and_later.max(expected)
}

fn route(run: &Running) -> String {
    format!("{} -> {}", run.from, run.to)
}

/// How much of the current estimate of the total is sent; goes back when a memory pass
/// starts, as the data to send grows again.
fn done_fraction(p: &Progress) -> f64 {
    if p.total_bytes == 0 {
        return 0.0;
    }
    p.total_bytes.saturating_sub(p.remaining_bytes) as f64 / p.total_bytes as f64
}

/// Cells joined by two spaces. When that is wider than `width`, the bar shrinks down to
/// [`BAR_MIN`], then cells go, highest rank first, then the line is cut.
fn fit(mut cells: Vec<Ranked>, width: usize) -> String {
    let bar_width = loop {
        let text: usize = cells
            .iter()
            .map(|(_, cell)| match cell {
                Cell::Text(t) => t.chars().count(),
                Cell::Bar(_) => 2,
            })
            .sum();
        let fixed = text + 2 * cells.len().saturating_sub(1);
        let has_bar = cells.iter().any(|(_, cell)| matches!(cell, Cell::Bar(_)));
        if fixed + if has_bar { BAR_MIN } else { 0 } <= width {
            break (width - fixed).min(BAR_MAX);
        }
        let droppable = cells.iter().enumerate().filter(|(_, (rank, _))| *rank > 0).max_by_key(|(_, (rank, _))| *rank);
        match droppable.map(|(i, _)| i) {
            Some(i) => {
                cells.remove(i);
            }
            None => break BAR_MIN,
        }
    };
    let parts: Vec<String> = cells
        .into_iter()
        .map(|(_, cell)| match cell {
            Cell::Text(t) => t,
            Cell::Bar(fraction) => bar(fraction, bar_width),
        })
        .collect();
    let line: String = parts.join("  ").chars().take(width).collect();
    line.trim_end().to_string()
}

/// The text cells of a line, for plain output: no bar, no width.
fn plain_text(cells: Vec<Ranked>) -> String {
    let texts: Vec<String> = cells
        .into_iter()
        .filter_map(|(_, cell)| match cell {
            Cell::Text(t) => Some(t.trim_end().to_string()),
            Cell::Bar(_) => None,
        })
        .collect();
    texts.join("  ")
}

/// `[####......]`: `width` characters between the brackets, filled down to the character.
fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).floor() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// ` 42%`, rounded down: 100 % only when done.
fn percent(fraction: f64) -> String {
    format!("{:>3}%", (fraction.clamp(0.0, 1.0) * 100.0).floor() as u64)
}

/// `107.5/256.0 MiB`, in GiB from 10 GiB.
fn amount(done: u64, total: u64) -> String {
    let (unit, name) = if total as f64 >= 10.0 * GIB { (GIB, "GiB") } else { (MIB, "MiB") };
    format!("{:.1}/{:.1} {name}", done as f64 / unit, total as f64 / unit)
}

/// `0:42`, `1:02:05`: a duration as the board's clocks show it (ETAs, totals, a cold
/// move's time so far), seconds rounded up, so that an ETA of `0:00` means nothing left.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).ceil() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

/// `00:01:23`: time since the run started, rounded down.
fn timestamp(seconds: f64) -> String {
    let s = seconds.max(0.0).floor() as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    fn planned(moves: &[(&str, u64)]) -> Vec<Planned> {
        moves.iter().map(|(vm, mib)| Planned { vm: vm.to_string(), memory_bytes: mib * MB }).collect()
    }

    fn tty(width: usize) -> Terminal {
        Terminal { tty: true, width }
    }

    fn progress(total_mib: f64, remaining_mib: f64, transferred_mib: f64, rate_mib_s: f64, pass: u64) -> Progress {
        Progress {
            total_bytes: (total_mib * MIB) as u64,
            remaining_bytes: (remaining_mib * MIB) as u64,
            transferred_bytes: (transferred_mib * MIB) as u64,
            memory_total_bytes: (total_mib * MIB) as u64,
            bandwidth_bytes_s: (rate_mib_s * MIB) as u64,
            memory_passes: pass,
            ..Progress::default()
        }
    }

    #[test]
    fn the_eta_counts_down_from_the_preview_until_throughput_replaces_it() {
        let moves = vec![Planned { vm: "vm-1".into(), memory_bytes: (1024.0 * MIB) as u64 }];
        let mut board = Board::new(moves.clone(), tty(120)).planned(Some(60.0));
        board.started("vm-1", "host-a", "host-b", Kind::Live, 0.0);
        assert_eq!(board.snapshot(0.0).eta_s, Some(60.0));
        assert_eq!(board.snapshot(5.0).eta_s, Some(55.0));
        // Observed: 1,024 MiB at 10 MiB/s, the run is later than planned; the measurement
        // replaces the plan, though higher.
        board.sample("vm-1", &progress(1024.0, 1000.0, 24.0, 10.0, 1), 6.0);
        board.sample("vm-1", &progress(1024.0, 990.0, 34.0, 10.0, 1), 7.0);
        let measured = board.snapshot(7.0).eta_s.expect("an estimate");
        assert!(measured > 90.0, "{measured}");
        // Then it never goes up again.
        board.sample("vm-1", &progress(1024.0, 985.0, 39.0, 5.0, 1), 8.0);
        assert!(board.snapshot(8.0).eta_s.expect("an estimate") <= measured);
        // Without a plan, or once the plan's time is over with nothing observed: unknown.
        let mut unplanned = Board::new(moves.clone(), tty(120));
        assert_eq!(unplanned.snapshot(1.0).eta_s, None);
        let mut late = Board::new(moves, tty(120)).planned(Some(3.0));
        assert_eq!(late.snapshot(4.0).eta_s, None);
    }

    #[test]
    fn bars() {
        let cases = [
            (0.0, 10, "[..........]"),
            (0.42, 10, "[####......]"),
            (0.999, 10, "[#########.]"),
            (1.0, 5, "[#####]"),
            (1.7, 4, "[####]"),
            (-0.2, 4, "[....]"),
            (f64::NAN, 4, "[....]"),
            (0.5, 0, "[]"),
        ];
        for (fraction, width, expected) in cases {
            assert_eq!(bar(fraction, width), expected, "{fraction} {width}");
        }
    }

    #[test]
    fn numbers() {
        let durations = [
            (0.0, "0:00"),
            (0.2, "0:01"),
            (42.0, "0:42"),
            (61.0, "1:01"),
            (3600.0, "1:00:00"),
            (3725.0, "1:02:05"),
            (-5.0, "0:00"),
        ];
        for (seconds, expected) in durations {
            assert_eq!(clock(seconds), expected, "{seconds}");
        }
        let stamps = [(0.0, "00:00:00"), (59.9, "00:00:59"), (3725.9, "01:02:05"), (360_000.0, "100:00:00")];
        for (seconds, expected) in stamps {
            assert_eq!(timestamp(seconds), expected, "{seconds}");
        }
        let percents = [(0.0, "  0%"), (0.4199, " 41%"), (0.999, " 99%"), (1.0, "100%")];
        for (fraction, expected) in percents {
            assert_eq!(percent(fraction), expected, "{fraction}");
        }
        let amounts = [
            (0, 0, "0.0/0.0 MiB"),
            (107 * MB + MB / 2, 256 * MB, "107.5/256.0 MiB"),
            (5 << 30, 16 << 30, "5.0/16.0 GiB"),
        ];
        for (done, total, expected) in amounts {
            assert_eq!(amount(done, total), expected);
        }
    }

    #[test]
    fn width_fitting() {
        let cells = || -> Vec<Ranked> {
            let text = |rank, s: &str| (rank, Cell::Text(s.to_string()));
            vec![
                text(0, "web-1"),
                text(4, "host-a -> host-b"),
                (2, Cell::Bar(0.42)),
                text(0, " 42%"),
                text(3, "107.5/256.0 MiB"),
                text(5, "58.1 MiB/s"),
                text(1, "pass 2"),
            ]
        };
        let cases = [
            (100, "web-1  host-a -> host-b  [########............]   42%  107.5/256.0 MiB  58.1 MiB/s  pass 2"),
            (80, "web-1  host-a -> host-b  [####......]   42%  107.5/256.0 MiB  58.1 MiB/s  pass 2"),
            (75, "web-1  host-a -> host-b  [#######..........]   42%  107.5/256.0 MiB  pass 2"),
            (50, "web-1  [####......]   42%  107.5/256.0 MiB  pass 2"),
            (40, "web-1  [#######..........]   42%  pass 2"),
            (25, "web-1   42%  pass 2"),
            (12, "web-1   42%"),
            (8, "web-1"),
            (3, "web"),
            (0, ""),
        ];
        for (width, expected) in cases {
            assert_eq!(fit(cells(), width), expected, "width {width}");
        }
        for width in 0..120 {
            assert!(fit(cells(), width).chars().count() <= width, "width {width}");
        }
    }

    /// web-1 live and db-1 cold in flight, web-2 waiting.
    fn two_running(width: usize) -> Board {
        let mut board = Board::new(planned(&[("web-1", 256), ("web-2", 256), ("db-1", 1024)]), tty(width));
        board.started("web-1", "host-a", "host-b", Kind::Live, 1.0);
        board.started("db-1", "host-a", "host-c", Kind::Cold, 1.0);
        board.phase("db-1", Phase::Transferring, 2.0);
        board.sample("web-1", &progress(256.0, 128.0, 128.0, 60.0, 2), 2.0);
        board
    }

    #[test]
    fn frames_redraw_in_place_and_log_above() {
        let mut board = two_running(100);
        assert_eq!(
            board.frame(3.0),
            "web-1  host-a -> host-b  [##########..........]   50%  128.0/256.0 MiB  60.0 MiB/s  pass 2\n\
             db-1   host-a -> host-c  cold  transferring  0:02\n\
             [#...................]  0/3 done  2 running  ETA --\n"
        );
        board.finished("web-1", Status::Success, "verified on host-b", 3.2);
        board.note("stop requested: no new moves start", 3.3);
        assert_eq!(
            board.frame(3.5),
            "\x1b[3A\r\x1b[J\
             00:00:03  web-1  host-a -> host-b  SUCCESS  2.2 s  verified on host-b\n\
             00:00:03  stop requested: no new moves start\n\
             db-1  host-a -> host-c  cold  transferring  0:03\n\
             [###.................]  1/3 done  1 running  ETA --\n"
        );
        board.finished("web-2", Status::Aborted, "not started: run stopped by the operator", 4.0);
        board.finished("db-1", Status::FailureWait, "shutdown timed out", 70.0);
        assert_eq!(
            board.frame(71.0),
            "\x1b[2A\r\x1b[J\
             00:00:04  web-2  ABORTED  not started: run stopped by the operator\n\
             00:01:10  db-1  host-a -> host-c  FAILURE-WAIT  69.0 s  shutdown timed out\n\
             [####################]  3/3 done  1 failed  1 skipped  total 1:10\n"
        );
    }

    #[test]
    fn frames_fit_the_width() {
        for width in [0, 10, 30, 45, 60, 100, 200] {
            let frame = two_running(width).frame(3.0);
            for line in frame.lines() {
                assert!(line.chars().count() <= width, "width {width}: {line:?}");
            }
        }
        let narrow = two_running(40).frame(3.0);
        assert_eq!(
            narrow,
            "web-1  [########.........]   50%  pass 2\n\
             db-1   cold  transferring  0:02\n\
             [.........]  0/3 done  2 running  ETA --\n"
        );
    }

    #[test]
    fn a_narrower_terminal_moves_up_over_the_rows_its_wrapped_lines_take() {
        // At 100 columns: lines of 90, 49 and 51 characters. At 40, the first wraps into 3
        // rows and the others into 2 each: 7 rows up, and the new frame fits 40.
        let mut board = two_running(100);
        let lens: Vec<usize> = board.frame(3.0).lines().map(|l| l.chars().count()).collect();
        assert_eq!(lens, [90, 49, 51]);
        board.resize(40);
        let frame = board.frame(3.5);
        assert!(frame.starts_with("\x1b[7A\r\x1b[J"), "{frame:?}");
        assert!(frame.lines().skip(1).all(|l| l.chars().count() <= 40), "{frame}");
        // The same width again: one row per line.
        assert!(board.frame(4.0).starts_with("\x1b[3A\r\x1b[J"));
    }

    /// What kind of plain line this is, and its time.
    fn classify(line: &str) -> (u64, &'static str) {
        let (h, m, s) = (&line[0..2], &line[3..5], &line[6..8]);
        let seconds = h.parse::<u64>().expect("hours") * 3600
            + m.parse::<u64>().expect("minutes") * 60
            + s.parse::<u64>().expect("seconds");
        let kind = if line.contains("started") {
            "start"
        } else if line.contains("SUCCESS") {
            "finish"
        } else if line.contains(" done") {
            "overall"
        } else if line.contains("MiB/s") {
            "progress"
        } else {
            "other"
        };
        (seconds, kind)
    }

    #[test]
    fn plain_line_cadence() {
        // One migration from 1 s to 23 s, sampled every half second; plain output asked for
        // every `every` seconds.
        let cases: [(f64, &[(u64, &str)]); 2] = [
            (
                0.5,
                &[
                    (1, "start"),
                    (6, "progress"),
                    (10, "overall"),
                    (11, "progress"),
                    (16, "progress"),
                    (20, "overall"),
                    (21, "progress"),
                    (23, "finish"),
                    (23, "overall"),
                ],
            ),
            (4.0, &[(1, "start"), (8, "progress"), (12, "overall"), (16, "progress"), (23, "finish"), (24, "overall")]),
        ];
        for (every, expected) in cases {
            let mut board = Board::new(planned(&[("web-1", 256)]), Terminal { tty: false, width: 80 });
            let mut lines = Vec::new();
            for tick in 0..=48 {
                let now = f64::from(tick) * 0.5;
                if now == 1.0 {
                    board.started("web-1", "host-a", "host-b", Kind::Live, now);
                } else if now > 1.0 && now < 23.0 {
                    let sent = (now - 1.0) * 10.0;
                    board.sample("web-1", &progress(256.0, 256.0 - sent, sent, 10.0, 1), now);
                } else if now == 23.0 {
                    board.finished("web-1", Status::Success, "", now);
                }
                if now % every == 0.0 {
                    lines.extend(board.plain(now));
                }
            }
            let got: Vec<(u64, &str)> = lines.iter().map(|l| classify(l)).collect();
            assert_eq!(got, expected, "every {every} s: {lines:#?}");
        }
    }

    #[test]
    fn plain_lines_read_well() {
        let mut board = two_running(80);
        board.terminal.tty = false;
        board.finished("web-1", Status::Success, "verified on host-b", 3.2);
        assert_eq!(
            board.render(3.5),
            "00:00:01  web-1  host-a -> host-b  started live\n\
             00:00:01  db-1  host-a -> host-c  started cold\n\
             00:00:02  db-1  transferring\n\
             00:00:03  web-1  host-a -> host-b  SUCCESS  2.2 s  verified on host-b\n"
        );
        board.sample("db-1", &progress(1024.0, 512.0, 512.0, 100.0, 0), 4.0);
        let at_ten = board.plain(10.0);
        assert_eq!(
            at_ten,
            [
                "00:00:10  db-1  host-a -> host-c   50%  512.0/1024.0 MiB  100.0 MiB/s  transferring",
                // 0:05 with PER_MIGRATION_OVERHEAD_S at 0.4 s.
                "00:00:10  50%  1/3 done  1 running  ETA 0:05",
            ]
        );
    }

    #[test]
    fn shown_eta_never_rises() {
        let cases = [
            (None, None, None),
            (None, Some(30.0), Some(30.0)),
            (Some(30.0), None, Some(30.0)),
            (Some(30.0), Some(40.0), Some(30.0)),
            (Some(30.0), Some(29.5), Some(29.5)),
            (Some(30.0), Some(2.0), Some(2.0)),
        ];
        for (shown, estimate, expected) in cases {
            assert_eq!(next_shown(shown, estimate), expected, "{shown:?} {estimate:?}");
        }
    }

    #[test]
    fn estimate_counts_bytes_and_overhead() {
        let mut board = Board::new(planned(&[("web-1", 256), ("web-2", 200)]), tty(100));
        board.started("web-1", "host-a", "host-b", Kind::Live, 0.0);
        board.sample("web-1", &progress(256.0, 256.0, 0.0, 50.0, 1), 0.0);
        assert_eq!(board.estimate(), None, "no throughput yet");
        board.sample("web-1", &progress(256.0, 156.0, 100.0, 50.0, 1), 2.0);
        // 156 MiB left in flight and 200 MiB waiting at 50 MiB/s; half an overhead for web-1
        // and a whole one for web-2, one migration at a time.
        let expected = 356.0 / 50.0 + 1.5 * PER_MIGRATION_OVERHEAD_S;
        let estimate = board.estimate().expect("throughput was observed");
        assert!((estimate - expected).abs() < 1e-6, "{estimate} != {expected}");
        // A second pass: web-1 will have sent 356 MiB for 256 MiB of memory, and web-2 is
        // counted at the same ratio.
        board.sample("web-1", &progress(256.0, 50.0, 306.0, 50.0, 2), 2.5);
        board.finished("web-1", Status::Success, "", 3.0);
        let per_memory = 356.0 / 256.0;
        let rate = board.rate.expect("throughput was observed") / MIB;
        let expected = 200.0 * per_memory / rate + PER_MIGRATION_OVERHEAD_S;
        let estimate = board.estimate().expect("throughput was observed");
        assert!((estimate - expected).abs() < 1e-6, "{estimate} != {expected}");
    }

    #[test]
    fn bytes_left_include_later_passes() {
        // remaining, total, transferred, dirty rate, bandwidth, resent by finished moves
        let cases = [
            ("first pass, dirty rate not known yet", (600, 1000, 400, 0, 100), 1.0, 600.0),
            ("second pass, half resent each pass", (300, 1000, 1200, 50, 100), 1.0, 800.0),
            ("finished moves resent more", (600, 1000, 400, 0, 100), 3.0, 2600.0),
            ("more passes than expected", (100, 1000, 5000, 50, 100), 1.0, 200.0),
            ("dirtying faster than sending, capped", (100, 1000, 1000, 200, 100), 1.0, 9000.0),
            ("no bandwidth reported", (100, 1000, 900, 50, 0), 1.0, 100.0),
        ];
        for (case, (remaining, total, transferred, dirty, bandwidth), resent, expected) in cases {
            let p = Progress {
                remaining_bytes: remaining,
                total_bytes: total,
                transferred_bytes: transferred,
                dirty_rate_bytes_s: dirty,
                bandwidth_bytes_s: bandwidth,
                ..Progress::default()
            };
            let left = left_to_send(&p, resent);
            assert!((left - expected).abs() < 1e-6, "{case}: {left} != {expected}");
        }
    }

    /// Parses `ETA m:ss` or `ETA h:mm:ss` of a frame; none for `ETA --`.
    fn shown_eta(frame: &str) -> Option<u64> {
        let eta = frame.split("ETA ").nth(1)?.split_whitespace().next()?;
        eta.split(':').map(|part| part.parse::<u64>().ok()).try_fold(0, |acc, part| part.map(|p| acc * 60 + p))
    }

    /// A deterministic pseudo-random sequence (an LCG): the same runs every time.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    struct Sim {
        vm: String,
        since: f64,
        sent: f64,
        pass_size: f64,
        pass_left: f64,
        pass: u64,
    }

    #[test]
    fn eta_never_runs_backwards_and_ends_done() {
        // name, moves, memory MiB, concurrency, per-migration speed (MiB/s) at a time,
        // fraction of a pass dirtied again, every how many moves one fails.
        type Speed = fn(f64) -> f64;
        let scenarios: [(&str, usize, f64, usize, Speed, f64, usize); 6] = [
            ("steady", 6, 256.0, 2, |_| 50.0, 0.2, 0),
            ("speed-up", 8, 512.0, 3, |t| if t < 20.0 { 20.0 } else { 120.0 }, 0.3, 0),
            ("slow-down", 8, 512.0, 3, |t| if t < 20.0 { 120.0 } else { 15.0 }, 0.3, 0),
            ("stall", 5, 256.0, 2, |t| if (10.0..25.0).contains(&t) { 0.0 } else { 60.0 }, 0.1, 0),
            ("failures", 10, 300.0, 4, |_| 40.0, 0.5, 3),
            ("one big", 1, 4096.0, 1, |t| 30.0 + (t / 7.0).sin() * 25.0, 0.4, 0),
        ];
        for (seed, (name, count, memory, concurrency, speed, dirty, fail_every)) in scenarios.into_iter().enumerate() {
            let mut random = Lcg(seed as u64);
            let vms: Vec<String> = (0..count).map(|i| format!("vm-{i}")).collect();
            let plan: Vec<Planned> =
                vms.iter().map(|vm| Planned { vm: vm.clone(), memory_bytes: (memory * MIB) as u64 }).collect();
            let mut board = Board::new(plan, tty(200));
            let (mut waiting, mut running, mut started) = (vms.clone(), Vec::<Sim>::new(), 0);
            let (mut last_shown, mut saw_eta, mut now) = (None::<u64>, false, 0.0);
            while !board.is_done() {
                assert!(now < 3600.0, "{name}: never ends");
                while running.len() < concurrency && !waiting.is_empty() {
                    let vm = waiting.remove(0);
                    board.started(&vm, "host-a", "host-b", Kind::Live, now);
                    running.push(Sim { vm, since: now, sent: 0.0, pass_size: memory, pass_left: memory, pass: 1 });
                    started += 1;
                }
                let mut ended = Vec::new();
                for (i, sim) in running.iter_mut().enumerate() {
                    if now - sim.since < 1.0 {
                        continue; // connecting
                    }
                    let rate = speed(now) * (0.5 + random.next());
                    let step = (rate * 0.5).min(sim.pass_left);
                    sim.sent += step;
                    sim.pass_left -= step;
                    if sim.pass_left <= 0.0 {
                        if sim.pass_size * dirty > 4.0 {
                            sim.pass_size *= dirty;
                            sim.pass_left = sim.pass_size;
                            sim.pass += 1;
                        } else {
                            ended.push(i);
                            continue;
                        }
                    }
                    if fail_every > 0 && sim.pass == 2 && started % fail_every == 0 {
                        ended.push(i);
                        continue;
                    }
                    // The hypervisor knows the dirty rate from the end of the first pass.
                    let dirty_rate = if sim.pass > 1 { dirty * rate * MIB } else { 0.0 };
                    let sample = Progress {
                        dirty_rate_bytes_s: dirty_rate as u64,
                        ..progress(memory, sim.pass_left, sim.sent, rate, sim.pass)
                    };
                    board.sample(&sim.vm, &sample, now);
                }
                for i in ended.into_iter().rev() {
                    let sim = running.remove(i);
                    let status = if sim.pass_left > 0.0 { Status::FailureWait } else { Status::Success };
                    board.finished(&sim.vm, status, "", now);
                }
                let frame = board.frame(now);
                match shown_eta(&frame) {
                    Some(eta) => {
                        if let Some(last) = last_shown {
                            assert!(eta <= last, "{name} at {now}: ETA rose from {last} to {eta}:\n{frame}");
                        }
                        last_shown = Some(eta);
                        saw_eta = true;
                    }
                    None if !board.is_done() => {
                        assert!(frame.contains("ETA --"), "{name}: {frame}");
                        assert!(last_shown.is_none(), "{name} at {now}: ETA went back to --:\n{frame}");
                    }
                    None => {}
                }
                now += 0.5;
            }
            let last = board.frame(now);
            assert!(saw_eta, "{name}: an ETA was shown");
            assert!(last.contains(&format!("{count}/{count} done")) && last.contains("total "), "{name}: {last}");
        }
    }
}
