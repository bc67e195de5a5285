//! ferry's input files, parsed and validated completely before anything runs: every error
//! names the file, the line and the field, and all errors are reported, not just the first.
//!
//! Pure: takes file names and texts, returns data or errors. The caller reads the files.

mod cluster;
mod plan;
mod resolve;
mod roll;
pub mod time;

use std::fmt;

pub use cluster::parse_cluster;
pub use plan::{
    parse_plan, parse_plan_csv, parse_plan_toml, Check, Convergence, Drain, Hooks, Limits, Mode, OnFailure, Plan,
    PlannedMove, Policy, StaleCopies, Target,
};
pub use resolve::{resolve, ResolvedMove};
pub use roll::{HostSelector, Maintenance, OnHostFailure, Reserve, Roll, MAINTENANCE_TAG};

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// File name as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (`host[2].uri`), when known.
    pub field: Option<String>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// A TOML syntax or type error, located.
pub(crate) fn toml_error(file: &str, text: &str, error: &toml::de::Error) -> InputError {
    InputError {
        file: file.to_string(),
        line: error.span().map(|span| line_of(text, span.start)),
        field: None,
        message: error.message().trim().to_string(),
    }
}

/// The closest of `candidates` to `name`, if close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        // Optimal string alignment: insertions, deletions, substitutions and swaps of
        // neighbours (the commonest typo) each cost one.
        .map(|c| (strsim::osa_distance(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names_suggest_typos_only() {
        let hosts = ["host-a", "host-b", "web-1"];
        assert_eq!(closest("hots-a", hosts), Some("host-a"));
        assert_eq!(closest("web1", hosts), Some("web-1"));
        assert_eq!(closest("wbe-1", hosts), Some("web-1"));
        assert_eq!(closest("database", hosts), None);
    }
}
