//! `ferry-guest`: the workload inside ferry's lab guests.
//!
//! Runs from the initramfs `/init` of a lab guest (see `ferry_lab::image`) and never exits on its
//! own. It keeps a working set of pages whose content is a function of (page, generation, word)
//! and of the page's class (zero, text or random, mixed as asked: `memory.rs`), rewrites pages
//! at the dirty rate asked for on the kernel command line, re-verifies every page every couple
//! of seconds, writes and re-reads a disk block a second with direct I/O, and prints the
//! `ferry-heartbeat` protocol on its stdout, the serial console.
//!
//! Settings come from `/proc/cmdline` (`ferry.dirty=MiB/s`, `ferry.wss=MiB`, `ferry.disk=PATH`
//! or `none`, `ferry.mix=ZERO:TEXT:RANDOM` percent of pages); the `FERRY_CMDLINE` environment
//! variable replaces it for running natively.
//!
//! Architecture invariant: std and libc only. The binary is linked statically and runs with
//! nothing else around it but busybox.

mod disk;
mod memory;
mod settings;

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ferry_heartbeat::{Boot, Heartbeat};

use crate::disk::DiskCheck;
use crate::memory::{WorkingSet, PAGES_PER_MIB};
use crate::settings::{DiskChoice, Settings};

/// The main loop's period: dirtying is spread over ticks this long.
const TICK: Duration = Duration::from_millis(10);
/// Every page is verified at least this often (unless the CPU cannot keep up). Verifying
/// rebuilds each page under TCG: at 2 s an idle 128 MiB guest took 12.6 % of a core, at 4 s
/// 7.1 % (4.3 % with a 1 MiB working set), and the suite runs a dozen such guests at once.
const VERIFY_PASS: Duration = Duration::from_secs(4);
/// Share of a tick the verifier may use, so it cannot starve dirtying.
const VERIFY_SHARE: f64 = 0.6;
/// Dirtying missed during a pause is not made up beyond this much. Short, so that a vCPU
/// throttled by auto-converge (QEMU sleeps it up to 990 ms of every second) dirties less, as a
/// CPU-bound workload would; a 250 ms catch-up kept a 99 %-throttled guest above a 12 MiB/s
/// link's switch-over threshold.
const MAX_BACKLOG: Duration = Duration::from_millis(50);
/// At most this many `CORRUPT` lines a second per source; the rest are counted.
const CORRUPT_LINES_PER_SECOND: u32 = 5;
/// How long to wait for a named disk device to appear.
const DISK_WAIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cmdline = match std::env::var("FERRY_CMDLINE") {
        Ok(cmdline) => cmdline,
        Err(_) => match std::fs::read_to_string("/proc/cmdline") {
            Ok(cmdline) => cmdline,
            Err(e) => {
                eprintln!("ferry-guest: cannot read /proc/cmdline: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let settings = match Settings::from_cmdline(&cmdline) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ferry-guest: {e}");
            return ExitCode::from(2);
        }
    };
    run(&settings)
}

fn run(settings: &Settings) -> ! {
    let started = Instant::now();
    let pages = usize::try_from(settings.wss_mib * PAGES_PER_MIB).expect("working set fits memory");
    let filling = Instant::now();
    let mut memory = WorkingSet::new(pages, settings.memory_mix);
    let fill_ms = filling.elapsed().as_millis() as u64;

    let disk = open_disk(&settings.disk);
    say(Boot {
        wss_mib: settings.wss_mib,
        dirty_mib_s: settings.dirty_mib_s,
        disk: disk.as_ref().map(|d| d.path().display().to_string()),
        memory_mix: Some(settings.memory_mix),
        pages_by_class: Some(memory.pages_by_class()),
        fill_ms: Some(fill_ms),
    });
    let disk_verified = Arc::new(AtomicU64::new(0));
    if let Some(disk) = disk {
        let counter = Arc::clone(&disk_verified);
        thread::Builder::new()
            .name("disk".to_string())
            .spawn(move || disk_loop(disk, &counter))
            .expect("spawning the disk thread");
    }

    let dirty_pages_s = settings.dirty_mib_s * PAGES_PER_MIB as f64;
    let verify_per_tick = pages.div_ceil((VERIFY_PASS.as_millis() / TICK.as_millis()) as usize);
    let mut corrupt = RateLimit::default();
    let mut budget = 0.0_f64;
    let mut pages_verified = 0_u64;
    let mut dirtied_since_hb = 0_u64;
    let mut seq = 0_u64;
    let mut last_tick = Instant::now();
    let mut last_hb = last_tick;
    let mut next_hb = last_tick + Duration::from_secs(1);
    let mut next_tick = last_tick;
    loop {
        let now = Instant::now();
        budget += dirty_pages_s * (now - last_tick).as_secs_f64();
        budget = budget.min(dirty_pages_s * MAX_BACKLOG.as_secs_f64() + 1.0);
        last_tick = now;
        let count = budget.floor();
        budget -= count;
        memory.dirty(count as usize);
        dirtied_since_hb += count as u64;

        let verify_until = now + TICK.mul_f64(VERIFY_SHARE);
        for done in 0..verify_per_tick {
            if done % 8 == 7 && Instant::now() >= verify_until {
                break;
            }
            if let Some(mismatch) = memory.verify_next() {
                corrupt.report(mismatch.describe());
            }
            pages_verified += 1;
        }

        let now = Instant::now();
        if now >= next_hb {
            let elapsed = (now - last_hb).as_secs_f64();
            say(Heartbeat {
                seq,
                uptime_ms: uptime_ms().unwrap_or_else(|| (now - started).as_millis() as u64),
                dirty_mib_s: dirtied_since_hb as f64 / PAGES_PER_MIB as f64 / elapsed,
                pages_verified,
                disk_blocks_verified: disk_verified.load(Ordering::Relaxed),
            });
            corrupt.next_second();
            seq += 1;
            dirtied_since_hb = 0;
            last_hb = now;
            // One heartbeat per wake-up: after a pause, carry on from now rather than catch up.
            next_hb += Duration::from_secs(1);
            if next_hb <= now {
                next_hb = now + Duration::from_secs(1);
            }
        }

        next_tick += TICK;
        let now = Instant::now();
        if next_tick > now {
            thread::sleep(next_tick - now);
        } else {
            next_tick = now;
        }
    }
}

/// Opens the disk to check, or explains on stderr why there is none.
fn open_disk(choice: &DiskChoice) -> Option<DiskCheck> {
    let path = match choice {
        DiskChoice::None => return None,
        DiskChoice::Path(path) => {
            let deadline = Instant::now() + DISK_WAIT;
            while !path.exists() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            path.clone()
        }
        DiskChoice::Default => {
            let found = DiskChoice::CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists());
            found?
        }
    };
    match DiskCheck::open(&path) {
        Ok(disk) => Some(disk),
        Err(e) => {
            eprintln!("ferry-guest: running without a disk: {}: {e}", path.display());
            None
        }
    }
}

/// Writes and checks a disk block a second, forever.
fn disk_loop(mut disk: DiskCheck, verified: &AtomicU64) {
    let mut corrupt = RateLimit::default();
    let mut next = Instant::now();
    loop {
        let (count, problems) = disk.round();
        verified.fetch_add(count, Ordering::Relaxed);
        for problem in problems {
            corrupt.report(problem);
        }
        corrupt.next_second();
        next += Duration::from_secs(1);
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Prints one protocol line on the console. Errors are ignored: there is nowhere else to say
/// anything, and the workload must keep running.
fn say(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Limits `CORRUPT` lines, so a badly broken guest does not flood the console.
#[derive(Default)]
struct RateLimit {
    this_second: u32,
    suppressed: u64,
}

impl RateLimit {
    fn report(&mut self, what: String) {
        if self.this_second < CORRUPT_LINES_PER_SECOND {
            self.this_second += 1;
            say(format_args!("FERRY CORRUPT {what}"));
        } else {
            self.suppressed += 1;
        }
    }

    fn next_second(&mut self) {
        if self.suppressed > 0 {
            say(format_args!("FERRY CORRUPT suppressed={} more lines", self.suppressed));
        }
        *self = RateLimit::default();
    }
}

/// Guest uptime from `/proc/uptime`, in milliseconds.
fn uptime_ms() -> Option<u64> {
    uptime_ms_from(&std::fs::read_to_string(Path::new("/proc/uptime")).ok()?)
}

fn uptime_ms_from(text: &str) -> Option<u64> {
    let seconds = text.split_ascii_whitespace().next()?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, "0"));
    let fraction: String = fraction.chars().chain("000".chars()).take(3).collect();
    Some(whole.parse::<u64>().ok()? * 1000 + fraction.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime() {
        assert_eq!(uptime_ms_from("12.03 45.67\n"), Some(12030));
        assert_eq!(uptime_ms_from("0.5 0.1"), Some(500));
        assert_eq!(uptime_ms_from("7 0"), Some(7000));
        assert_eq!(uptime_ms_from(""), None);
        assert_eq!(uptime_ms_from("x.1 0"), None);
    }
}
