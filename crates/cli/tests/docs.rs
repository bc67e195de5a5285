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
