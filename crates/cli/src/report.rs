//! `ferry runs`, `ferry status` and `ferry report`: what the journal says about runs.
//! Read-only: they never create a journal or change one.
//!
//! Reading and printing are kept apart: these commands read the journal's records and
//! print; `ferry-report` turns records into views and views into text.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry_report::{format_report, format_runs, format_status, html, report_csv};
use ferry_runs::reading;
use serde::Serialize;

use crate::show::{write_stdout, Output, EXIT_BAD_INPUT, EXIT_FAILURE};
use crate::state::StateArg;

// ------------------------------------------------------------------ arguments

/// `ferry runs` arguments.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub state: StateArg,
}

/// `ferry status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The run (`ferry runs` lists them). Default: the latest.
    pub run: Option<String>,
    #[command(flatten)]
    pub state: StateArg,
}

/// `ferry report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run (`ferry runs` lists them).
    pub run: String,
    /// table: a summary, then a block per VM, failures first; json: the run, every move
    /// with its attempts and events, and the summary; csv: one row per VM (downtime and
    /// passes of its last attempt, bytes of all its attempts); html: one self-contained
    /// page (summary, failures, a timeline with a lane per host, a sortable table), best
    /// with `-o`. Default: table, or json with `--output json`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Write the report to FILE instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArg,
}

/// How `ferry report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text for people.
    Table,
    /// Everything, for programs.
    Json,
    /// One row per VM, for spreadsheets.
    Csv,
    /// One self-contained page with a timeline, for people who were not there.
    Html,
}

/// The report's format from `--format` and the global `--output`: `--output json` means
/// `--format json`, and contradicting it is bad input.
pub fn report_format(format: Option<Format>, output: Output) -> Result<Format, String> {
    match (format, output) {
        (None, Output::Text) => Ok(Format::Table),
        (None, Output::Json) | (Some(Format::Json), _) => Ok(Format::Json),
        (Some(format), Output::Text) => Ok(format),
        (Some(format), Output::Json) => Err(format!(
            "--format {} contradicts --output json; give one of them",
            match format {
                Format::Table => "table",
                Format::Json => "json",
                Format::Csv => "csv",
                Format::Html => "html",
            }
        )),
    }
}

// ------------------------------------------------------------------ commands

/// Why a command could not print what was asked: bad input (exit 2) or a journal that
/// could not be read (exit 1).
enum Failure {
    BadInput(String),
    Failed(String),
}

impl From<ferry_runs::Error> for Failure {
    fn from(e: ferry_runs::Error) -> Failure {
        match e {
            ferry_runs::Error::BadInput(text) => Failure::BadInput(text),
            other => Failure::Failed(other.to_string()),
        }
    }
}

impl Failure {
    fn exit(self, command: &str) -> ExitCode {
        let (text, code) = match self {
            Failure::BadInput(text) => (text, EXIT_BAD_INPUT),
            Failure::Failed(text) => (text, EXIT_FAILURE),
        };
        eprintln!("ferry {command}: {text}");
        ExitCode::from(code)
    }
}

/// Prints `text` on standard output ([`write_stdout`]), then ends with `code`.
fn emit(command: &str, text: &str, code: ExitCode) -> ExitCode {
    match write_stdout(text.as_bytes()) {
        Ok(()) => code,
        Err(e) => Failure::Failed(format!("cannot write to standard output: {e}")).exit(command),
    }
}

/// Runs `ferry runs`.
pub async fn runs(args: RunsArgs, output: Output) -> ExitCode {
    let listed = async {
        let journal = args.state.open_existing().await?;
        Ok::<_, Failure>(reading::run_views(&journal).await?)
    };
    match listed.await {
        Ok(views) => emit(
            "runs",
            &match output {
                Output::Json => format!("{}\n", to_json(&views)),
                Output::Text => format_runs(&views),
            },
            ExitCode::SUCCESS,
        ),
        Err(failure) => failure.exit("runs"),
    }
}

/// Runs `ferry status`: always exit 0 when the run could be read.
pub async fn status(args: StatusArgs, output: Output) -> ExitCode {
    let read = async {
        let journal = args.state.open_existing().await?;
        Ok::<_, Failure>(reading::status(&journal, args.run.as_deref()).await?)
    };
    match read.await {
        Ok(view) => emit(
            "status",
            &match output {
                Output::Json => format!("{}\n", to_json(&view)),
                Output::Text => format_status(&view),
            },
            ExitCode::SUCCESS,
        ),
        Err(failure) => failure.exit("status"),
    }
}

/// Runs `ferry report`: exit 0 when every move succeeded, 1 otherwise.
pub async fn report(args: ReportArgs, output: Output) -> ExitCode {
    let read = async {
        let format = report_format(args.format, output).map_err(Failure::BadInput)?;
        let journal = args.state.open_existing().await?;
        let report = reading::report(&journal, &args.run).await?;
        let text = match format {
            Format::Table => format_report(&report),
            Format::Json => format!("{}\n", to_json(&report)),
            Format::Csv => report_csv(&report).map_err(|e| Failure::Failed(format!("cannot write the CSV: {e}")))?,
            Format::Html => html::render(&report),
        };
        if let Some(path) = &args.out {
            write_private(path, text.as_bytes())
                .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok::<_, Failure>((report.summary.all_succeeded, text))
    };
    match read.await {
        Ok((all_succeeded, text)) => {
            let code = if all_succeeded { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) };
            match &args.out {
                Some(path) => {
                    eprintln!("ferry report: wrote {} ({:.1} KiB)", path.display(), text.len() as f64 / 1024.0);
                    code
                }
                None => emit("report", &text, code),
            }
        }
        Err(failure) => failure.exit("report"),
    }
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("views are plain data and serialise")
}

/// Writes a report readable by its owner only (0600), also over an existing file: reports
/// name hosts, VMs and what hooks printed.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_json_means_format_json() {
        let cases = [
            (None, Output::Text, Ok(Format::Table)),
            (None, Output::Json, Ok(Format::Json)),
            (Some(Format::Csv), Output::Text, Ok(Format::Csv)),
            (Some(Format::Json), Output::Json, Ok(Format::Json)),
            (
                Some(Format::Csv),
                Output::Json,
                Err("--format csv contradicts --output json; give one of them".to_owned()),
            ),
            (Some(Format::Html), Output::Text, Ok(Format::Html)),
            (
                Some(Format::Html),
                Output::Json,
                Err("--format html contradicts --output json; give one of them".to_owned()),
            ),
        ];
        for (format, output, want) in cases {
            assert_eq!(report_format(format, output), want, "{format:?} {output:?}");
        }
    }
}
