//! `ferry completions` and `ferry man`: generated from the command definitions. No lab.

mod common;

use common::ferry;

#[test]
fn completions_name_every_command_in_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ferry(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["migrate", "roll", "rollback", "cleanup", "report", "lab"] {
            assert!(script.contains(command), "{shell} completions lack {command}");
        }
    }
    let out = ferry(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad input");
}

#[test]
fn man_pages_cover_each_command_and_its_options() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("man");
    let _ = std::fs::remove_dir_all(&dir);
    let out = ferry(&["man", "--dir", dir.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["ferry.1", "ferry-move.1", "ferry-roll.1", "ferry-lab-up.1", "ferry-sim-gen.1"] {
        assert!(dir.join(page).is_file(), "no {page}");
    }
    let roll = std::fs::read_to_string(dir.join("ferry-roll.1")).expect("readable");
    assert!(roll.starts_with(".ie") && roll.contains(".TH ferry-roll 1"), "not a man page:\n{roll}");
    assert!(roll.contains("\\-\\-yes"), "its options are there:\n{roll}");
    let out = ferry(&["man"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(".TH ferry 1"));
}

#[test]
fn every_commands_help_ends_with_examples_of_it() {
    let commands: [&[&str]; 23] = [
        &["lab"],
        &["lab", "up"],
        &["lab", "status"],
        &["lab", "check"],
        &["lab", "down"],
        &["inventory"],
        &["move"],
        &["preview"],
        &["migrate"],
        &["resume"],
        &["abort"],
        &["drain"],
        &["roll"],
        &["tag"],
        &["rollback"],
        &["cleanup"],
        &["runs"],
        &["status"],
        &["report"],
        &["sim"],
        &["sim", "gen"],
        &["completions"],
        &["man"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = ferry(&args);
        assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
        let help = String::from_utf8_lossy(&out.stdout);
        let examples = help.split_once("Examples:\n").map(|(_, e)| e).unwrap_or_else(|| panic!("{command:?}:\n{help}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty() && lines.len() <= 2, "{command:?}: one or two examples:\n{help}");
        assert!(
            lines.iter().any(|l| l.trim_start().starts_with(&format!("ferry {}", command.join(" ")))),
            "{command:?}: an example of this very command:\n{help}"
        );
        // Each example parses: its words up to a comment or a shell redirection, then --help
        // (which clap answers only once every word before it is known).
        for line in lines {
            let words: Vec<&str> =
                line.split_whitespace().skip(1).take_while(|w| !matches!(*w, "#" | "|" | ">")).collect();
            let mut args = words.clone();
            args.push("--help");
            let out = ferry(&args);
            assert!(out.status.success(), "{line:?} does not parse: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
