//! Where a journal lives, and opening it: a file path, a `sqlite:` URL or a `postgres://`
//! URL.

use std::path::{Path, PathBuf};

use ferry_journal::{Durability, Journal, JournalClock, JournalConfig, JournalError};

use crate::events::Error;

/// A journal's location, opened on demand: commands that start runs open (create) it only
/// once their input proved good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalAt(PathBuf);

impl JournalAt {
    /// `path`, or the default under the state directory when `None` or empty. A
    /// `postgres://` location must be a URL with a host (checked here, before anything
    /// starts); the server is reached only when the journal is opened.
    pub fn new(path: Option<&Path>) -> Result<JournalAt, String> {
        match path {
            Some(path) if !path.as_os_str().is_empty() => {
                let server = |l: &&str| l.starts_with("postgres://") || l.starts_with("postgresql://");
                if let Some(location) = path.to_str().filter(server) {
                    ferry_journal::check_server_url(location).map_err(|e| chain(&e))?;
                }
                Ok(JournalAt(path.to_path_buf()))
            }
            _ => ferry_journal::default_path_from_env().map(JournalAt).map_err(|e| chain(&e)),
        }
    }

    /// The location as given.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Opens the journal, creating it and its directory when missing: for commands that
    /// start runs. A simulated run's journal records virtual time (and, having nothing
    /// real to lose in a power cut, does without a sync per commit).
    pub async fn open_with_clock(&self, clock: JournalClock) -> Result<Journal, Error> {
        open_at(&self.0, clock).await
    }

    /// Opens a journal that must already exist: for commands that read, which must not
    /// leave an empty journal behind when pointed at the wrong place.
    pub async fn open_existing(&self) -> Result<Journal, Error> {
        self.open_existing_with_clock(JournalClock::System).await
    }

    /// [`JournalAt::open_existing`] with a clock: virtual time for a command that continues
    /// a simulated run's world (on a runtime whose time is paused).
    pub async fn open_existing_with_clock(&self, clock: JournalClock) -> Result<Journal, Error> {
        if let Some(file) = database_file(&self.0) {
            if !file.exists() {
                return Err(Error::BadInput(format!(
                    "no journal at {}: no run has been started with this --state",
                    file.display()
                )));
            }
        }
        open_at(&self.0, clock).await
    }
}

/// Opens a file path or a URL. A location that names no journal ferry can open is bad
/// input (exit 2); one that names a journal that cannot be opened now (a server that does
/// not answer or refuses the password, a newer schema) is a failure (exit 1).
async fn open_at(path: &Path, clock: JournalClock) -> Result<Journal, Error> {
    let config = JournalConfig {
        clock,
        durability: match clock {
            JournalClock::System => Durability::Full,
            JournalClock::Virtual { .. } => Durability::Normal,
        },
        ..JournalConfig::default()
    };
    let opened = match path.to_str() {
        Some(location) if is_url(location) => Journal::open_with(location, &config).await,
        _ => Journal::open_path(path, &config).await,
    };
    opened.map_err(|e| match e {
        JournalError::NoStateDir | JournalError::UnsupportedLocation { .. } | JournalError::BadUrl { .. } => {
            Error::BadInput(format!("--state: {}", chain(&e)))
        }
        e => Error::Failed(chain(&e)),
    })
}

/// Whether `location` is a URL (`sqlite://…`, `postgres://…`) rather than a file name.
fn is_url(location: &str) -> bool {
    location.starts_with("sqlite:") || location.contains("://")
}

/// The file a location names: the path itself, or a `sqlite:` URL's file; `None` when it
/// names no file (in-memory databases, other schemes).
fn database_file(path: &Path) -> Option<PathBuf> {
    let Some(location) = path.to_str() else {
        return Some(path.to_path_buf());
    };
    if let Some(rest) = location.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let file = rest.split('?').next().unwrap_or_default();
        return (!file.is_empty() && file != ":memory:").then(|| PathBuf::from(file));
    }
    (!location.contains("://")).then(|| path.to_path_buf())
}

/// An error and its sources, one after the other: the journal's messages never repeat
/// their source, so printing only the top one would hide the reason.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_url_is_checked_as_one() {
        for fine in ["postgres.db", "postgres-journal", "/var/lib/postgres/j.db", "postgres://ferry@db/ferry"] {
            assert!(JournalAt::new(Some(Path::new(fine))).is_ok(), "{fine}");
        }
        for bad in ["postgres://", "postgresql://ferry:secret@/ferry"] {
            let e = JournalAt::new(Some(Path::new(bad))).expect_err(bad);
            assert!(e.contains("malformed journal URL") && !e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn database_file_of_paths_and_urls() {
        let cases = [
            ("/var/ferry/j.db", Some("/var/ferry/j.db")),
            ("j.db", Some("j.db")),
            ("sqlite:///var/ferry/j.db", Some("/var/ferry/j.db")),
            ("sqlite://j.db?mode=rwc", Some("j.db")),
            ("sqlite:j.db", Some("j.db")),
            ("sqlite::memory:", None),
            ("postgres://db/ferry", None),
        ];
        for (location, want) in cases {
            assert_eq!(database_file(Path::new(location)), want.map(PathBuf::from), "{location}");
        }
    }
}
