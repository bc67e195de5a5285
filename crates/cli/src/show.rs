//! Showing a run as it goes: the engine's events drawn on the progress board, on stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use ferry_engine::EngineEvent;
use ferry_journal::AttemptKind;
use ferry_preview::Kind;
use tokio::sync::mpsc;
use tokio::time::Instant;

use ferry_progress::{Board, Planned, Terminal};
use crate::Output;

/// Draws the engine's events until the engine drops its sender: one bar per migration and
/// an overall bar on a terminal, timestamped lines otherwise, nothing with `--output json`.
pub async fn events(mut rx: mpsc::UnboundedReceiver<EngineEvent>, memory: Vec<(String, u64)>, output: Output) {
    let tty = std::io::stderr().is_terminal();
    // tokio's clock: virtual time when the run is simulated.
    let started = Instant::now();
    let planned = memory.into_iter().map(|(vm, mib)| Planned { vm, memory_bytes: mib << 20 }).collect();
    let mut board = Board::new(planned, Terminal { tty, width: terminal_width() });
    let mut redraw = tokio::time::interval(Duration::from_millis(if tty { 250 } else { 500 }));
    loop {
        tokio::select! {
            biased;
            event = rx.recv() => {
                let Some(event) = event else { break };
                let now = started.elapsed().as_secs_f64();
                match event {
                    EngineEvent::Started { vm, from, to, kind } => board.started(&vm, &from, &to, kind_of(kind), now),
                    EngineEvent::Phase { vm, phase } => board.phase(&vm, phase, now),
                    EngineEvent::Sample { vm, progress } => board.sample(&vm, &progress, now),
                    EngineEvent::Finished { vm, status, message } => board.finished(&vm, status, &message, now),
                    EngineEvent::Note(text) => board.note(&text, now),
                }
            }
            _ = redraw.tick() => {}
        }
        if output != Output::Json {
            draw(&mut board, started.elapsed().as_secs_f64());
        }
    }
    if output != Output::Json {
        draw(&mut board, started.elapsed().as_secs_f64());
    }
}

fn draw(board: &mut Board, now: f64) {
    let text = board.render(now);
    if text.is_empty() {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{text}");
    if !text.ends_with('\n') && !std::io::stderr().is_terminal() {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

fn kind_of(kind: AttemptKind) -> Kind {
    match kind {
        AttemptKind::Live => Kind::Live,
        AttemptKind::Cold => Kind::Cold,
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100)
}
