//! The `--state` flag: where the journal lives.

use std::path::PathBuf;

use ferry_journal::Journal;
use ferry_runs::journals::JournalAt;

/// The `--state` flag shared by every command that reads or writes the journal.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArg {
    /// Journal: a file (SQLite), or a PostgreSQL database shared by several controllers
    /// (postgres://USER@HOST[:PORT]/DB; the password from PGPASSFILE or ~/.pgpass, or in the
    /// URL; never printed). Default: $XDG_STATE_HOME/ferry/journal.db or
    /// ~/.local/state/ferry/journal.db.
    #[arg(long = "state", env = "FERRY_STATE", value_name = "PATH|URL")]
    pub state: Option<PathBuf>,
}

impl StateArg {
    /// The journal's location: the flag, else the default under the state directory.
    pub fn at(&self) -> Result<JournalAt, String> {
        JournalAt::new(self.state.as_deref())
    }

    /// Opens a journal that must already exist.
    pub async fn open_existing(&self) -> Result<Journal, ferry_runs::Error> {
        self.at().map_err(|e| ferry_runs::Error::BadInput(format!("--state: {e}")))?.open_existing().await
    }
}
