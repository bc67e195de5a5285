//! What the journal says about a run, for people and programs: `ferry runs`, `ferry status`
//! and `ferry report`.
//!
//! Reading and printing are kept apart, and this crate does neither: the binary reads the
//! journal's records; [`view`] turns them into plain views (serialisable: `--output json`
//! prints them as they are); [`text`] turns views into text and CSV, [`html`] into a
//! self-contained page with a timeline.
//!
//! **Architecture invariant:** pure. Records in, views out, views in, strings out: no
//! journal, no files, no clock (the caller passes "now").

pub mod html;
pub mod roll;
mod roll_timeline;
pub mod text;
mod timeline;
mod units;
pub mod view;

pub use roll::{roll_view, HostOutcome, HostReport, RollView, RunRecords, VmPath, WaveRecords};
pub use text::{format_report, format_runs, format_status, report_csv};
pub use view::{
    build_report, legs, planned, run_view, status_view, AttemptReport, Comparison, Counts, EventView, Leg, MoveReport,
    Planned, Report, RunView, StatusView, Summary, VmStatus,
};

#[cfg(test)]
mod html_tests;
#[cfg(test)]
mod roll_tests;
#[cfg(test)]
mod tests;
