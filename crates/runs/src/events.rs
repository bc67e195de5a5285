//! What the application layer tells whoever shows a run, and how its operations fail.

use std::sync::Arc;

use ferry_engine::{EngineEvent, RunEnd};
use ferry_journal::{AttemptKind, RunKind};
use ferry_progress::{Board, Planned, Terminal};

use crate::owners::Lost;

/// What happens, in the order it happens.
#[derive(Debug, Clone)]
pub enum Event {
    /// A run was journaled: its id is the first thing an operator needs.
    Created {
        /// The run.
        run: String,
        /// Its kind.
        kind: RunKind,
        /// The run it undoes or returns, for a rollback.
        parent: Option<String>,
        /// Its moves.
        moves: usize,
        /// Moves that failed their prechecks and will not start.
        failing: usize,
    },
    /// The engine starts driving a run's moves: each VM with its memory, MiB.
    Driving {
        /// The run.
        run: String,
        /// Its moves' VMs and their memory.
        vms: Vec<(String, u64)>,
        /// The preview's makespan, s, when the run is driven from its start.
        planned_s: Option<f64>,
    },
    /// What the engine says as it goes.
    Engine(EngineEvent),
    /// The engine stopped driving the run.
    Driven {
        /// The run.
        run: String,
    },
    /// A run's moves ended (told once a plan's, a rollback's or a return's moves are over;
    /// a single move tells its own outcome instead).
    Finished {
        /// The run.
        run: String,
        /// How it ended.
        end: RunEnd,
    },
    /// A line for people: a hook's result, a settled move, a step of a return.
    Said(String),
    /// Something went wrong that does not stop the operation (a journal write that failed).
    Warning(String),
}

/// A board for the moves of [`Event::Driving`]: each VM with its memory, MiB, its ETA
/// counting down from the preview's makespan, when there is one, until throughput is seen.
pub fn board_for(vms: &[(String, u64)], planned_s: Option<f64>, terminal: Terminal) -> Board {
    Board::new(vms.iter().map(|(vm, mib)| Planned { vm: vm.clone(), memory_bytes: mib << 20 }).collect(), terminal)
        .planned(planned_s)
}

/// Tells `board` what the engine said, `now` seconds after the run started being driven.
pub fn show_on(board: &mut Board, event: &EngineEvent, now: f64) {
    match event {
        EngineEvent::Started { vm, from, to, kind } => {
            let kind = match kind {
                AttemptKind::Live => ferry_preview::Kind::Live,
                AttemptKind::Cold => ferry_preview::Kind::Cold,
            };
            board.started(vm, from, to, kind, now);
        }
        EngineEvent::Phase { vm, phase } => board.phase(vm, *phase, now),
        EngineEvent::Sample { vm, progress } => board.sample(vm, progress, now),
        EngineEvent::Finished { vm, status, message } => board.finished(vm, *status, message, now),
        EngineEvent::Note(note) => board.note(note, now),
    }
}

/// Where [`Event`]s go: a function the binary gives (it prints them), or nowhere.
#[derive(Clone)]
pub struct Events(Arc<dyn Fn(Event) + Send + Sync>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    /// Events given to `sink` as they happen.
    pub fn to(sink: impl Fn(Event) + Send + Sync + 'static) -> Events {
        Events(Arc::new(sink))
    }

    /// Events nobody shows (tests, benchmarks).
    pub fn ignored() -> Events {
        Events::to(|_| {})
    }

    /// Tells `event`.
    pub fn emit(&self, event: Event) {
        (self.0)(event);
    }

    /// Says a line for people.
    pub fn say(&self, text: impl Into<String>) {
        self.emit(Event::Said(text.into()));
    }

    /// Warns.
    pub fn warn(&self, text: impl Into<String>) {
        self.emit(Event::Warning(text.into()));
    }
}

/// Why an operation did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input does not name something to do; nothing was started or changed (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// It was refused (another process holds the run) or failed on the way (exit 1).
    #[error("{0}")]
    Failed(String),
    /// This process lost the run's lease: it starts nothing more and must end at once,
    /// leaving what it started in libvirt to the new holder (exit 1).
    #[error("{0}")]
    Lost(Lost),
}

impl Error {
    /// A failure from an error and its sources.
    pub fn failed(e: &dyn std::error::Error) -> Error {
        Error::Failed(crate::journals::chain(e))
    }
}

impl From<Lost> for Error {
    fn from(lost: Lost) -> Error {
        Error::Lost(lost)
    }
}
