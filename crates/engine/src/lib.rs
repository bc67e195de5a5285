//! Runs: a plan's moves, driven to their end.
//!
//! The [`Engine`] is the dispatcher of one run. It asks the scheduler which moves start
//! now, places `ANY` moves against live capacity, starts one task per move (a live
//! migration through the [`Driver`](ferry_driver::Driver), watched for its completion
//! timeout and for stalls, or a cold move), applies the scheduler's bandwidth shares to the
//! migrations in flight, and writes every step to the journal *before* its side effect and
//! confirms it after. The operator can stop it (no new starts) or abort it (running
//! migrations are cancelled; VMs stay on their sources), from this process through
//! [`Command`]s or from another one through the journal's abort flag.
//!
//! After a crash, [`reconcile`] compares the journal with what the hypervisors report
//! (where each VM in flight runs, whether its migration job still runs) and settles every
//! move that was in flight: adopted where the migration completed, re-queued where it did
//! not (its preparation undone), FAILURE-LOST only when the VM runs nowhere or twice. The
//! engine then finishes the run.
//!
//! Just before a move prepares its target, [`stale`](departures) settles the earlier copies
//! of the VM's disks that ferry left there: refused by default, deleted (journaled first)
//! under `policy.stale_copies = "replace"`, never touched when ferry cannot say it left them.
//!
//! The engine knows nothing of terminals: it reports [`EngineEvent`]s on a channel.

mod clock;
mod failpoint;
mod reconcile;
mod recovery;
mod run;
mod saga;
mod stale;
mod task;

pub use clock::Clock;
pub use reconcile::{reconcile, Reconciled, Waits, AFTER_ABORT, WAIT_AT_LEAST};
pub use run::{Command, Engine, EngineError, EngineEvent, Manual, MoveEnd, MoveSpec, RunEnd, RunSettings};
pub use stale::departures;
pub use task::live_options;
