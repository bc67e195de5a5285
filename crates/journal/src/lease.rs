//! A run's lease as the process holding it sees it.

use crate::error::Result;
use crate::journal::Journal;

/// The lease on one run held by this process: who (`host:pid`) and the fencing epoch its
/// claim got. Every claim of the run bumps the epoch; from then on this lease's
/// [`Lease::keep`] fails, and so does every state-changing write to the run through the
/// journal handle (or a clone of it) that claimed it, with
/// [`JournalError::LeaseLost`](crate::JournalError::LeaseLost) naming the new holder.
///
/// The holder calls [`Lease::keep`] about once a second wherever it waits (the engine's
/// loop, a migration job waited out after a crash, a hook), so that other processes see it
/// alive (see [`OWNER_ALIVE_WITHIN_MS`](crate::OWNER_ALIVE_WITHIN_MS)).
#[derive(Debug, Clone)]
pub struct Lease {
    pub(crate) journal: Journal,
    pub(crate) run: String,
    pub(crate) owner: String,
    pub(crate) epoch: i64,
}

impl Lease {
    /// The run held.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Who holds it (`host:pid`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The journal the lease was claimed through.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The fencing epoch of this claim.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Says the holder is alive (the run's heartbeat), if it still holds the lease;
    /// [`JournalError::LeaseLost`](crate::JournalError::LeaseLost) naming the holder when
    /// another process claimed the run since: start nothing more.
    pub async fn keep(&self) -> Result<()> {
        self.journal.keep_lease(self).await
    }
}
