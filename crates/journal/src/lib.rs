//! The journal: the crash-safe record of ferry's runs, and the truth for `resume`,
//! `rollback` and `cleanup`.
//!
//! One SQLite file in WAL mode by default (under the user's state directory, see
//! [`default_path`]), shared by the process running a run and any other ferry process
//! (`ferry abort` and `ferry status` from another terminal). Four tables, created by
//! numbered migrations when the journal is opened: `runs`, `moves` (one per VM per run),
//! `attempts` (each try at moving a VM, with its figures) and `events` (the history:
//! every phase, status and target change, per-VM messages, convergence decisions).
//!
//! Every change to a move or to a run's state is a compare-and-swap on the record's
//! generation: the caller passes the generation it read and gets the next one back, or
//! [`JournalError::Conflict`] when someone else changed the record meanwhile. A run's
//! lease ([`Journal::claim_lease`], [`Lease`]) says which process drives it; each claim bumps
//! the run's fencing epoch, and a handle that claimed a run has its state-changing writes
//! to it refused ([`JournalError::LeaseLost`]) once another process claimed it. A move's
//! phase is written with [`Journal::begin_phase`] before its side effect and confirmed
//! with [`Journal::end_phase`] after it, so that after a crash the journal says which side
//! effects may have happened.
//!
//! Timestamps come from the system clock, or, for a simulated run on a tokio runtime whose
//! time is paused, from that virtual clock ([`JournalClock::Virtual`]), in which every
//! operation takes no time at all.
//!
//! Or a PostgreSQL database (`postgres://USER@HOST[:PORT]/DB`), shared by every controller
//! that names it: the same schema and statements (portable SQL: TEXT, BIGINT, `$1`
//! placeholders) through sqlx's `Any` driver. Writers take turns on both (SQLite's write
//! lock; an advisory lock on PostgreSQL), and an operation that finds the server gone
//! (restarting, unreachable) is tried again for up to [`JournalConfig::retry_for`].

mod error;
mod id;
mod journal;
mod lease;
mod records;
mod schema;
mod steps;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

pub use error::{JournalError, Result};
pub use journal::{check_server_url, Durability, Journal, JournalClock, JournalConfig, FIRST_GENERATION};
pub use lease::Lease;
pub use records::{
    Attempt, AttemptEnd, AttemptKind, Event, EventKind, Move, NewAttempt, NewMove, NewRun, Run, RunDocuments, RunKind,
    RunState,
};

/// How recent an owner's heartbeat must be for its run to count as alive. The engine
/// beats every second, so fifteen seconds of silence is a dead or hung process, not a
/// slow journal write.
pub const OWNER_ALIVE_WITHIN_MS: i64 = 15_000;

/// Whether a run's owner looks alive at `now_ms`: it has beaten within
/// [`OWNER_ALIVE_WITHIN_MS`]. A heartbeat from the future (another host's clock ahead of
/// ours) counts as alive.
pub fn owner_alive(heartbeat_ms: Option<i64>, now_ms: i64) -> bool {
    heartbeat_ms.is_some_and(|beat| now_ms.saturating_sub(beat) <= OWNER_ALIVE_WITHIN_MS)
}

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    schema::latest()
}

/// Where the journal lives by default: `$XDG_STATE_HOME/ferry/journal.db`, else
/// `$HOME/.local/state/ferry/journal.db` (the XDG base directory rules: an empty or
/// relative `XDG_STATE_HOME` is ignored). `None` when neither gives a directory.
///
/// Pure: the caller passes the two variables (see [`default_path_from_env`]).
pub fn default_path(xdg_state_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    if let Some(state) = absolute(xdg_state_home) {
        return Some(state.join("ferry").join("journal.db"));
    }
    absolute(home).map(|home| home.join(".local").join("state").join("ferry").join("journal.db"))
}

fn absolute(dir: Option<&OsStr>) -> Option<&Path> {
    dir.map(Path::new).filter(|p| p.is_absolute())
}

/// [`default_path`] with this process's environment.
pub fn default_path_from_env() -> Result<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME");
    let home = std::env::var_os("HOME");
    default_path(xdg.as_deref(), home.as_deref()).ok_or(JournalError::NoStateDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_alive_within_fifteen_seconds() {
        let now = 1_000_000;
        let cases = [
            (None, false),
            (Some(now), true),
            (Some(now - 15_000), true),
            (Some(now - 15_001), false),
            (Some(now + 5_000), true),
            (Some(i64::MIN), false),
        ];
        for (beat, want) in cases {
            assert_eq!(owner_alive(beat, now), want, "{beat:?}");
        }
    }

    #[test]
    fn default_path_follows_xdg_rules() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let cases: [(Option<&OsStr>, Option<&OsStr>, Option<&str>); 6] = [
            (os("/xdg"), os("/home/u"), Some("/xdg/ferry/journal.db")),
            (None, os("/home/u"), Some("/home/u/.local/state/ferry/journal.db")),
            (os(""), os("/home/u"), Some("/home/u/.local/state/ferry/journal.db")),
            (os("relative/dir"), os("/home/u"), Some("/home/u/.local/state/ferry/journal.db")),
            (os("/xdg"), None, Some("/xdg/ferry/journal.db")),
            (None, os(""), None),
        ];
        for (xdg, home, want) in cases {
            assert_eq!(default_path(xdg, home), want.map(PathBuf::from), "{xdg:?} {home:?}");
        }
    }
}
