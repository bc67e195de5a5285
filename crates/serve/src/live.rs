//! The runs this server drives, as they go: one progress board per run (the CLI's, the same
//! ETA), fed by the engine's events, read by `/metrics` and by the run page's stream.
//!
//! Progress samples are not journaled (one every half second per migration), so only the
//! process driving a run has them: a run driven by a CLI or by another server shows its
//! statuses and phases here, and its transfer figures there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ferry_progress::{Board, Snapshot, Terminal};
use ferry_runs::{Event, Events};

/// The boards of the runs this process drives, by run id.
#[derive(Default)]
pub struct Live(Mutex<BTreeMap<String, (Board, Instant)>>);

impl Live {
    /// Events for one operation that drives a run (a start, a resume): they keep the run's
    /// board here from the moment it is driven until it is no more, then go on to `then`.
    pub fn watching(self: &Arc<Self>, then: Events) -> Events {
        let live = self.clone();
        let driven: Mutex<Option<String>> = Mutex::new(None);
        Events::to(move |event| {
            match &event {
                Event::Driving { run, vms, planned_s } => {
                    *lock(&driven) = Some(run.clone());
                    let board = ferry_runs::events::board_for(vms, *planned_s, Terminal { tty: false, width: 100 });
                    live.boards().insert(run.clone(), (board, Instant::now()));
                }
                Event::Engine(engine) => {
                    if let Some(run) = lock(&driven).as_deref() {
                        if let Some((board, since)) = live.boards().get_mut(run) {
                            ferry_runs::events::show_on(board, engine, since.elapsed().as_secs_f64());
                        }
                    }
                }
                Event::Driven { run } => {
                    live.boards().remove(run);
                }
                _ => {}
            }
            then.emit(event);
        })
    }

    /// Run `run`'s figures now, if this process drives it.
    pub fn snapshot(&self, run: &str) -> Option<Snapshot> {
        self.boards().get_mut(run).map(|(board, since)| board.snapshot(since.elapsed().as_secs_f64()))
    }

    /// The figures of every run this process drives now, by run id.
    pub fn snapshots(&self) -> Vec<(String, Snapshot)> {
        self.boards()
            .iter_mut()
            .map(|(run, (board, since))| (run.clone(), board.snapshot(since.elapsed().as_secs_f64())))
            .collect()
    }

    fn boards(&self) -> MutexGuard<'_, BTreeMap<String, (Board, Instant)>> {
        lock(&self.0)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
