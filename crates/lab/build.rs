//! Builds the guest workload (`ferry-guest`) as a fully static binary for the lab's initramfs and
//! exports its path to the crate as `FERRY_GUEST_BIN` (`image.rs` embeds it with `include_bytes!`).
//!
//! A nested `cargo build` with its own target directory under `OUT_DIR`: the guest needs
//! `+crt-static`, which must not leak into the rest of the build, and a separate target directory
//! means the nested cargo never waits for the outer one's build lock. It joins the outer cargo's
//! jobserver (`CARGO_MAKEFLAGS` is kept), so the machine is not oversubscribed.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest runs on x86_64 QEMU whatever the host builds for.
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Environment of this build script that would steer the nested cargo away from a plain release
/// build of the guest (the outer target dir, flags, profile overrides, clippy's wrapper, ...).
/// `CARGO_*` variables not listed in [`KEEP_CARGO_PREFIXES`] go too.
const REMOVE: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
];

/// `CARGO_*` variables that say where and how to fetch, not what to build.
const KEEP_CARGO_PREFIXES: &[&str] = &[
    "CARGO_HOME",
    "CARGO_MAKEFLAGS",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRY_",
    "CARGO_REGISTRIES_",
    "CARGO_SOURCE_",
    "CARGO_TERM_",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let workspace = manifest_dir.join("../..");
    for input in [
        "crates/guest/src",
        "crates/guest/Cargo.toml",
        "crates/heartbeat/src",
        "crates/heartbeat/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }

    let target_dir = out_dir.join("guest-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--release")
        // The outer cargo resolved and fetched everything already; the nested one must neither
        // touch the network nor rewrite Cargo.lock under it.
        .arg("--offline")
        .arg("--locked")
        .args(["--package", "ferry-guest", "--target", GUEST_TARGET])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_var = key.starts_with("CARGO_") || key.starts_with("__CARGO");
        let kept = KEEP_CARGO_PREFIXES.iter().any(|prefix| key.starts_with(prefix));
        if REMOVE.contains(&key) || (cargo_var && !kept) {
            command.env_remove(key);
        }
    }
    command
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        // Line tables are no use inside the guest; a smaller initramfs boots faster.
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");

    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} to build ferry-guest: {e}", Path::new(&cargo).display()));
    if !output.status.success() {
        panic!(
            "building ferry-guest for the lab image failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let binary = target_dir.join(GUEST_TARGET).join("release").join("ferry-guest");
    let bytes = fs::read(&binary).unwrap_or_else(|e| panic!("cannot read the guest binary {}: {e}", binary.display()));
    match has_interpreter(&bytes) {
        Some(false) => {}
        Some(true) => {
            panic!("{} is dynamically linked (it has an ELF interpreter); the initramfs has no libc", binary.display())
        }
        None => panic!("{} is not a 64-bit little-endian ELF file", binary.display()),
    }
    println!("cargo:rustc-env=FERRY_GUEST_BIN={}", binary.display());
}

/// Whether a 64-bit little-endian ELF file asks for a program interpreter (`PT_INTERP`), i.e. is
/// dynamically linked. `None` if it is not such a file.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for index in 0..phnum {
        if u32_at(phoff + index * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}
