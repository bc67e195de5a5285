//! What can go wrong with the journal.

use std::path::PathBuf;

/// An error from the journal. Every variant names the run, VM or file it is about.
///
/// A cause from below (SQLite, the file system) is part of the message, not a `source()`:
/// every caller prints the message, and the cause is what tells the operator what to fix
/// ("cannot open the journal at j.db: unable to open database file").
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The state directory could not be found: neither `XDG_STATE_HOME` nor `HOME` is set.
    #[error("no state directory: neither XDG_STATE_HOME nor HOME is set; give --state")]
    NoStateDir,
    /// A location names a database this build cannot open.
    #[error("unsupported journal location {location:?}: give a file path, a sqlite:// or a postgres:// URL")]
    UnsupportedLocation {
        /// The location as given.
        location: String,
    },
    /// A `postgres://` location that is not a URL with a host.
    #[error("malformed journal URL {location:?}: give postgres://USER@HOST[:PORT]/DATABASE")]
    BadUrl {
        /// The location as given, without its password.
        location: String,
    },
    /// The journal's own runtime (for virtual time) could not be started.
    #[error("cannot start the journal's runtime: {cause}")]
    Runtime {
        /// Why.
        cause: std::io::Error,
    },
    /// The directory that holds the journal file could not be created.
    #[error("cannot create the journal directory {}: {cause}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The journal file could not be made private to its owner.
    #[error("cannot make the journal {} private (mode 0600): {cause}", path.display())]
    Private {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open the journal at {location}: {}", said(cause))]
    Open {
        /// The location as given.
        location: String,
        /// Why.
        cause: sqlx::Error,
    },
    /// The journal was written by a newer ferry.
    #[error("journal at {location} has schema version {found}; this ferry knows up to {known}")]
    NewerSchema {
        /// The location as given.
        location: String,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A schema migration failed; the journal is unchanged.
    #[error("cannot migrate the journal at {location} to schema version {version}: {}", said(cause))]
    Migrate {
        /// The location as given.
        location: String,
        /// The version being applied.
        version: i64,
        /// Why.
        cause: sqlx::Error,
    },
    /// A query failed.
    #[error("journal query failed: {}", said(.0))]
    Database(sqlx::Error),
    /// Another process took run `run`'s lease after this one did: this process's writes to
    /// the run are refused (fencing), and it must start nothing more.
    #[error("run {run} is now driven by {holder}: this process lost its lease")]
    LeaseLost {
        /// The run id.
        run: String,
        /// Who holds the lease now (`host:pid`).
        holder: String,
    },
    /// Another process holds run `run`'s lease: a claim was refused.
    #[error("run {run} is being driven by {holder}")]
    LeaseHeld {
        /// The run id.
        run: String,
        /// Who holds the lease (`host:pid`).
        holder: String,
    },
    /// No run has this id.
    #[error("no run {run} in the journal")]
    RunNotFound {
        /// The run id.
        run: String,
    },
    /// The run has no move for this VM.
    #[error("run {run} has no move for VM {uuid}")]
    MoveNotFound {
        /// The run id.
        run: String,
        /// The VM's UUID.
        uuid: String,
    },
    /// The attempt does not exist.
    #[error("run {run} has no attempt {number} for VM {uuid}")]
    AttemptNotFound {
        /// The run id.
        run: String,
        /// The VM's UUID.
        uuid: String,
        /// The attempt number.
        number: u32,
    },
    /// The attempt already has its outcome.
    #[error("attempt {number} of VM {uuid} in run {run} has already ended")]
    AttemptEnded {
        /// The run id.
        run: String,
        /// The VM's UUID.
        uuid: String,
        /// The attempt number.
        number: u32,
    },
    /// Someone else changed the record since the caller read it (compare-and-swap failed):
    /// read it again and decide again.
    #[error("{record} changed meanwhile: expected generation {expected}, found {found}")]
    Conflict {
        /// Which record, in words ("run r-…", "VM web-1 (UUID) in run r-…").
        record: String,
        /// The generation the caller held.
        expected: i64,
        /// The generation in the journal.
        found: i64,
    },
    /// A phase was confirmed that is not the move's current, unconfirmed phase.
    #[error("VM {uuid} in run {run}: cannot confirm phase {expected}: the move is {found}")]
    PhaseMismatch {
        /// The run id.
        run: String,
        /// The VM's UUID.
        uuid: String,
        /// The phase the caller meant to confirm.
        expected: ferry_model::Phase,
        /// The move's phase in words ("in no phase", "in transferring, confirmed").
        found: String,
    },
    /// A run already has a move for this VM.
    #[error("run {run} already has a move for VM {uuid}")]
    DuplicateMove {
        /// The run id.
        run: String,
        /// The VM's UUID.
        uuid: String,
    },
    /// The run has not ended: what is asked is for ended runs.
    #[error("run {run} has not ended ({state})")]
    RunNotEnded {
        /// The run id.
        run: String,
        /// Its state.
        state: crate::RunState,
    },
    /// The run has ended; nothing more can be asked of it.
    #[error("run {run} has already ended ({state})")]
    RunEnded {
        /// The run id.
        run: String,
        /// Its final state.
        state: crate::RunState,
    },
    /// A value in the journal cannot be read by this build.
    #[error("{table}.{column} holds {value:?}, which this ferry cannot read")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
        /// The value as stored.
        value: String,
    },
}

impl From<sqlx::Error> for JournalError {
    fn from(cause: sqlx::Error) -> JournalError {
        JournalError::Database(cause)
    }
}

impl JournalError {
    /// Whether the database server did not answer (what the journal retries, for as long as
    /// its configuration says, before it gives up with this error).
    pub fn is_unreachable(&self) -> bool {
        crate::journal::is_unreachable(self)
    }
}

/// What a database error says: a server's own message without the line of its source code
/// that PostgreSQL's errors carry ("… at line 334", which reads like a line of the
/// operator's input).
fn said(cause: &sqlx::Error) -> String {
    match cause {
        sqlx::Error::Database(e) => e.message().to_owned(),
        other => other.to_string(),
    }
}

/// The journal's result type.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;
