//! `ferry completions` and `ferry man`: what shells and `man` need, generated from the clap
//! definitions themselves, so that they never drift from the commands.

use std::path::Path;
use std::process::ExitCode;

use crate::show::{write_stdout, EXIT_FAILURE};

/// Prints `shell`'s completion script for `command`.
pub fn completions(shell: clap_complete::Shell, command: &mut clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, command, "ferry", &mut script);
    write_out(&script)
}

/// Prints `ferry.1`, or writes a page per command, subcommands included, into `dir`.
pub fn man(command: clap::Command, dir: Option<&Path>) -> ExitCode {
    let Some(dir) = dir else {
        let mut page = Vec::new();
        return match clap_mangen::Man::new(command).render(&mut page) {
            Ok(()) => write_out(&page),
            Err(e) => fail(&format!("cannot render ferry.1: {e}")),
        };
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(&format!("cannot create {}: {e}", dir.display()));
    }
    match clap_mangen::generate_to(command, dir) {
        Ok(()) => {
            eprintln!("ferry man: wrote the pages into {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("cannot write the pages into {}: {e}", dir.display())),
    }
}

fn write_out(bytes: &[u8]) -> ExitCode {
    match write_stdout(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write to standard output: {e}")),
    }
}

fn fail(text: &str) -> ExitCode {
    eprintln!("ferry: {text}");
    ExitCode::from(EXIT_FAILURE)
}
