//! The Debian package: `scripts/package` builds it from the binary under test, `dpkg -i`
//! installs it, and the installed `ferry` runs a lab of its own and a preview of an example
//! plan it ships. Needs root. Port block 29500.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INSTALLED: &str = "/usr/bin/ferry";

/// Removes the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-r", "ferry"]).output();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("FERRY_LAB_CACHE", common::cache_dir())
        .env("FERRY_STATE", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package-journal.db"))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {}: {:?}\n{}", args.join(" "), out.status, text(&out));
    text(&out)
}

#[test]
fn the_package_installs_a_ferry_that_runs_a_lab_and_previews_its_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/package");
    let out = Command::new(&script)
        .env("FERRY_BINARY", env!("CARGO_BIN_EXE_ferry"))
        .env("FERRY_DEB_COMPRESSION", "none")
        .output()
        .expect("scripts/package runs");
    assert!(out.status.success(), "{}", text(&out));
    let deb = root.join(String::from_utf8_lossy(&out.stdout).trim());
    let deb = deb.to_str().expect("a UTF-8 path");
    let fields = ok("dpkg-deb", &["-f", deb, "Package", "Version", "Depends"]);
    assert!(fields.contains("Package: ferry"), "{fields}");
    assert!(fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))), "{fields}");
    assert!(fields.contains("libvirt0"), "it needs libvirt's library: {fields}");

    let _installed = Installed;
    ok("dpkg", &["-i", deb]);
    let version = ok(INSTALLED, &["--version"]);
    assert_eq!(version.trim(), format!("ferry {}", env!("CARGO_PKG_VERSION")));
    for file in [
        "/usr/share/man/man1/ferry.1.gz",
        "/usr/share/man/man1/ferry-roll.1.gz",
        "/usr/share/bash-completion/completions/ferry",
        "/usr/share/zsh/vendor-completions/_ferry",
        "/usr/share/fish/vendor_completions.d/ferry.fish",
        "/usr/share/doc/ferry/examples/cluster.toml",
    ] {
        assert!(Path::new(file).is_file(), "{file} installed");
    }
    let listed = ok("dpkg", &["-L", "ferry"]);
    assert!(listed.lines().any(|l| l == INSTALLED), "{listed}");

    // The installed ferry's own lab, and a preview of the example drain the package ships.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package-lab");
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_str().expect("a UTF-8 path");
    ok(INSTALLED, &["lab", "up", "--dir", dir, "--port-base", "29500", "--hosts", "2", "--vms", "2", "--mem", "96"]);
    let checked = run(INSTALLED, &["lab", "check", "--dir", dir]);
    let cluster = format!("{dir}/cluster.toml");
    let preview =
        run(INSTALLED, &["preview", "/usr/share/doc/ferry/examples/drain-host-a.toml", "--cluster", &cluster]);
    let down = run(INSTALLED, &["lab", "down", "--dir", dir, "--purge"]);
    assert!(checked.status.success(), "{}", text(&checked));
    assert_eq!(preview.status.code(), Some(0), "{}", text(&preview));
    assert!(text(&preview).contains("host-a"), "{}", text(&preview));
    assert!(down.status.success(), "{}", text(&down));
}
