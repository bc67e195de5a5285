//! Showing what the application layer tells: lines for people on stdout, warnings on
//! stderr, and a run's progress drawn on its board on stderr — bars on a terminal,
//! timestamped lines otherwise, nothing with `--output json` but each run's end.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_engine::RunEnd;
use ferry_journal::RunKind;
use ferry_model::Status;
use ferry_progress::{Board, Terminal};
use ferry_runs::{Error, Event, Events};
use tokio::time::Instant;

/// `println!` that ignores a failed write: a reader gone (`ferry migrate … | head -1`,
/// `ferry preview … | head`) must neither stop the run this process drives nor panic.
macro_rules! out {
    () => {
        $crate::show::out!("")
    };
    ($($arg:tt)*) => {{
        let _ = std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!("{}\n", format_args!($($arg)*)));
    }};
}
pub(crate) use out;

/// Output format of commands that print data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Text,
    /// JSON for programs.
    Json,
}

/// Exit code for bad input: nothing was started or changed.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when something failed.
pub const EXIT_FAILURE: u8 = 1;

/// The board of the run being driven, and when it started (tokio's clock: virtual time when
/// the run is simulated).
struct Screen {
    board: Option<(Board, Instant)>,
}

/// The [`Events`] of a command: shown as `output` says.
/// Writes `bytes` to standard output. A reader that stopped reading (`ferry report RUN |
/// head`) is no error: it had what it wanted.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}

/// `-q`: no progress board and no running commentary, only what a script needs.
static QUIET: AtomicBool = AtomicBool::new(false);
/// `--log-format json`: standard error is for JSON objects; no progress board there.
static NO_BOARD: AtomicBool = AtomicBool::new(false);

/// What this process prints besides its results: `quiet` (`-q`) leaves the run ids, each
/// run's end and the warnings; `no_board` keeps the commentary but draws no progress board.
pub fn set_chatter(quiet: bool, no_board: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    NO_BOARD.store(no_board, Ordering::Relaxed);
}

pub fn events(output: Output) -> Events {
    let screen = Arc::new(Mutex::new(Screen { board: None }));
    Events::to(move |event| show(&screen, output, event))
}

fn show(screen: &Arc<Mutex<Screen>>, output: Output, event: Event) {
    let text = output == Output::Text;
    // The board and the commentary are for a person watching; -q leaves the run id, each
    // run's end and the warnings.
    let chatty = text && !QUIET.load(Ordering::Relaxed);
    let drawn = chatty && !NO_BOARD.load(Ordering::Relaxed);
    match event {
        Event::Created { run, kind, parent, moves, failing } if text => {
            if kind == RunKind::Rollback {
                let of = parent.map(|p| format!(" of run {p}")).unwrap_or_default();
                out!("run {run} (rollback{of})");
            } else {
                out!("run {run}");
            }
            if failing > 0 {
                out!("{failing} of {moves} moves fail their prechecks and will not start (see `ferry report {run}`)");
            }
        }
        Event::Driving { vms, planned_s, .. } => {
            let tty = std::io::stderr().is_terminal();
            let board = ferry_runs::events::board_for(&vms, planned_s, Terminal { tty, width: terminal_width() });
            lock(screen).board = Some((board, Instant::now()));
            if drawn {
                tokio::spawn(redraw(screen.clone(), Duration::from_millis(if tty { 250 } else { 500 })));
            }
        }
        Event::Engine(event) => {
            let mut screen = lock(screen);
            let Some((board, started)) = screen.board.as_mut() else { return };
            let now = started.elapsed().as_secs_f64();
            ferry_runs::events::show_on(board, &event, now);
            if drawn {
                draw(board, now);
            }
        }
        Event::Driven { .. } => {
            if let Some((mut board, started)) = lock(screen).board.take() {
                if drawn {
                    draw(&mut board, started.elapsed().as_secs_f64());
                }
            }
        }
        Event::Finished { run, end } => print_end(&run, &end, output),
        Event::Said(line) if chatty => out!("{line}"),
        Event::Warning(line) => eprintln!("ferry: {line}"),
        Event::Created { .. } | Event::Said(_) => {}
    }
}

/// Redraws the board every `every` until it is gone: bars and the ETA move between events.
async fn redraw(screen: Arc<Mutex<Screen>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut screen = lock(&screen);
        let Some((board, started)) = screen.board.as_mut() else { return };
        let now = started.elapsed().as_secs_f64();
        draw(board, now);
    }
}

fn lock(screen: &Mutex<Screen>) -> std::sync::MutexGuard<'_, Screen> {
    screen.lock().unwrap_or_else(|p| p.into_inner())
}

fn draw(board: &mut Board, now: f64) {
    board.resize(terminal_width());
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

fn print_end(run_id: &str, end: &RunEnd, output: Output) {
    if output == Output::Json {
        let moves: Vec<_> = end
            .moves
            .iter()
            .map(|m| serde_json::json!({"vm": m.vm, "status": m.status, "message": m.message}))
            .collect();
        out!("{}", serde_json::json!({ "run": run_id, "state": end.state.name(), "moves": moves }));
        return;
    }
    let mut counts: Vec<(Status, usize)> = Vec::new();
    for m in &end.moves {
        match counts.iter_mut().find(|(s, _)| *s == m.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((m.status, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out!("run {run_id} {}: {}", end.state, counts.join(", "));
    out!("details: ferry report {run_id}");
}

/// Standard error's terminal width: the terminal's own (asked each frame, so a resize is
/// followed), else `COLUMNS`, else 100.
fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .unwrap_or(100)
}

/// The exit code of an operation: 0 when it did all it had to, 1 when something failed or
/// was refused, 2 for bad input (nothing started). Bad input is printed after `bad_prefix`
/// (commands that read files print the file's own `file:line:` first), a failure after
/// `ferry COMMAND: `. A lost lease ends the process at once ([`lost_exit`]).
pub fn exit(command: &str, bad_prefix: bool, result: Result<bool, Error>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILURE),
        Err(Error::BadInput(e)) if bad_prefix => {
            eprintln!("ferry {command}: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Error::BadInput(e)) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Error::Failed(e)) => {
            eprintln!("ferry {command}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Error::Lost(lost)) => lost_exit(&lost),
    }
}

/// Says that this ferry lost the lease and ends the process at once with exit 1. At once,
/// not by returning: the driver's blocking calls (a migration waited for in libvirt, its
/// finalization or undo after it) cannot be cancelled, and the runtime would wait for them
/// on its way out, then let them act on a run another process now drives. Ending the
/// process closes their connections as `kill -9` would: the migrations go on in libvirt,
/// for the new holder to settle.
fn lost_exit(lost: &ferry_runs::Lost) -> ! {
    eprintln!("ferry: {lost}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(i32::from(EXIT_FAILURE))
}
