//! The serial-console line protocol between a ferry lab guest and the lab checker.
//!
//! The guest (`ferry-guest`) prints one line per event on its serial console:
//!
//! ```text
//! FERRY boot wss_mib=32 dirty_mib_s=10 disk=/dev/vdb mix=25:50:25 pages=2048:4096:2048 fill_ms=310
//! FERRY hb seq=12 uptime_ms=12034 dirty_mib_s=9.8 verified=8192 disk_verified=40
//! FERRY CORRUPT page=123 word=4 expected=0x… got=0x…
//! FERRY CORRUPT disk block=7 expected=0x… got=0x…
//! ```
//!
//! The lab reads the console log back (it survives migrations because the serial file is opened
//! in append mode) and [`analyze`]s it: a guest that migrated well kept printing heartbeats with
//! consecutive sequence numbers and a monotonic uptime, booted once, and never saw corruption.
//!
//! Architecture invariant: this crate is pure. It does no IO and has no dependencies, so both the
//! static guest binary and the lab can use it, and it cannot fail except by returning a verdict.

use std::fmt;

/// The token that starts every protocol line. It may appear mid-line: kernel messages share the
/// console and can leave garbage in front of it.
pub const TOKEN: &str = "FERRY ";

/// Console substrings that mean the guest kernel is in trouble. "Out of memory" is the OOM
/// killer, which would otherwise end the workload with nothing but a missing heartbeat to show.
const KERNEL_TROUBLE: &[&str] =
    &["Kernel panic", "Out of memory", "Oops", "BUG:", "general protection fault", "Call Trace:", "segfault"];

/// What a guest's working set holds, in percent of its pages: all-zero pages, pages of text,
/// and pages of random bytes. Written `ZERO:TEXT:RANDOM` (`25:50:25`) on `ferry lab up`, on
/// the guest's kernel command line and in its boot line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMix {
    /// Percent of pages that are all zero.
    pub zero: u8,
    /// Percent of pages of plausible text.
    pub text: u8,
    /// Percent of pages of random, incompressible bytes.
    pub random: u8,
}

impl MemoryMix {
    /// A quarter zero, half text, a quarter random: memory that compresses about as much as a
    /// busy server's, neither to nothing nor not at all.
    pub const DEFAULT: MemoryMix = MemoryMix { zero: 25, text: 50, random: 25 };
}

impl Default for MemoryMix {
    fn default() -> Self {
        MemoryMix::DEFAULT
    }
}

impl fmt::Display for MemoryMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.zero, self.text, self.random)
    }
}

/// Why a `ZERO:TEXT:RANDOM` text is not a memory mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMix(pub String);

impl fmt::Display for BadMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadMix {}

impl std::str::FromStr for MemoryMix {
    type Err = BadMix;

    fn from_str(text: &str) -> Result<MemoryMix, BadMix> {
        let bad = |why: &str| BadMix(format!("{text:?}: {why}"));
        let parts: Vec<&str> = text.split(':').collect();
        let [zero, text_part, random] = parts.as_slice() else {
            return Err(bad("expected ZERO:TEXT:RANDOM percentages of pages, such as 25:50:25"));
        };
        let percent = |part: &str| part.trim().parse::<u8>().ok().filter(|p| *p <= 100);
        let (Some(zero), Some(text_pct), Some(random)) = (percent(zero), percent(text_part), percent(random)) else {
            return Err(bad("each part must be a whole percentage from 0 to 100"));
        };
        let sum = u16::from(zero) + u16::from(text_pct) + u16::from(random);
        if sum != 100 {
            return Err(bad(&format!("the percentages add up to {sum}, not 100")));
        }
        Ok(MemoryMix { zero, text: text_pct, random })
    }
}

/// The line the guest prints once, when its workload starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Boot {
    /// Size of the working set the guest dirties and verifies, in MiB.
    pub wss_mib: u64,
    /// Requested dirty rate, in MiB/s.
    pub dirty_mib_s: f64,
    /// The block device the guest writes and verifies, or `None` when it runs without a disk.
    pub disk: Option<String>,
    /// The mix of its working set; `None` from a guest that predates mixes.
    pub memory_mix: Option<MemoryMix>,
    /// Pages of each class the guest built, zero, text and random, counted from its pages.
    pub pages_by_class: Option<[u64; 3]>,
    /// How long filling the working set took, in milliseconds.
    pub fill_ms: Option<u64>,
}

impl fmt::Display for Boot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN}boot wss_mib={} dirty_mib_s={} disk={}",
            self.wss_mib,
            self.dirty_mib_s,
            self.disk.as_deref().unwrap_or("none")
        )?;
        if let Some(mix) = self.memory_mix {
            write!(f, " mix={mix}")?;
        }
        if let Some([zero, text, random]) = self.pages_by_class {
            write!(f, " pages={zero}:{text}:{random}")?;
        }
        if let Some(ms) = self.fill_ms {
            write!(f, " fill_ms={ms}")?;
        }
        Ok(())
    }
}

/// The line the guest prints once a second.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// 0 for the first heartbeat after boot, then +1 per heartbeat. A migration pause does not
    /// skip numbers, so any other step means lost lines or a restarted guest.
    pub seq: u64,
    /// Guest uptime (from `/proc/uptime`), in milliseconds.
    pub uptime_ms: u64,
    /// Dirty rate achieved over the last second, in MiB/s.
    pub dirty_mib_s: f64,
    /// Memory pages verified since boot.
    pub pages_verified: u64,
    /// Disk blocks verified since boot; 0 without a disk.
    pub disk_blocks_verified: u64,
}

impl fmt::Display for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN}hb seq={} uptime_ms={} dirty_mib_s={:.1} verified={} disk_verified={}",
            self.seq, self.uptime_ms, self.dirty_mib_s, self.pages_verified, self.disk_blocks_verified
        )
    }
}

/// One meaningful console line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The guest workload started.
    Boot(Boot),
    /// The guest is alive.
    Heartbeat(Heartbeat),
    /// The guest read back something other than what it wrote; the text after `CORRUPT`.
    Corrupt(String),
    /// A kernel panic, oops, BUG, fault, trace or OOM kill; the whole (trimmed) line.
    KernelTrouble(String),
}

/// Parses one console line (with or without its line ending).
///
/// Returns `None` for lines that mean nothing to the checker, including protocol lines that are
/// malformed: a damaged heartbeat is reported as a sequence gap by [`analyze`], never guessed at.
pub fn parse_line(line: &str) -> Option<Event> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(event) = parse_protocol(line) {
        return Some(event);
    }
    if KERNEL_TROUBLE.iter().any(|needle| line.contains(needle)) {
        return Some(Event::KernelTrouble(line.trim().to_string()));
    }
    None
}

fn parse_protocol(line: &str) -> Option<Event> {
    // The last token is the one that runs to the end of the line; anything before it is garbage
    // left by interleaved kernel output.
    let start = line.rfind(TOKEN)?;
    let rest = &line[start + TOKEN.len()..];
    let (kind, fields) = rest.split_once(' ').unwrap_or((rest, ""));
    match kind {
        "boot" => {
            let disk = field(fields, "disk")?;
            // The mix fields are optional (older guests do not print them), but a malformed one
            // makes the line unreadable rather than silently mix-less.
            let pages_by_class = match field(fields, "pages") {
                None => None,
                Some(text) => {
                    let counts: Vec<u64> = text.split(':').map(|n| n.parse().ok()).collect::<Option<_>>()?;
                    Some(<[u64; 3]>::try_from(counts).ok()?)
                }
            };
            Some(Event::Boot(Boot {
                wss_mib: field(fields, "wss_mib")?.parse().ok()?,
                dirty_mib_s: rate(field(fields, "dirty_mib_s")?)?,
                disk: (disk != "none").then(|| disk.to_string()),
                memory_mix: field(fields, "mix").map(str::parse).transpose().ok()?,
                pages_by_class,
                fill_ms: field(fields, "fill_ms").map(str::parse).transpose().ok()?,
            }))
        }
        "hb" => Some(Event::Heartbeat(Heartbeat {
            seq: field(fields, "seq")?.parse().ok()?,
            uptime_ms: field(fields, "uptime_ms")?.parse().ok()?,
            dirty_mib_s: rate(field(fields, "dirty_mib_s")?)?,
            pages_verified: field(fields, "verified")?.parse().ok()?,
            disk_blocks_verified: field(fields, "disk_verified")?.parse().ok()?,
        })),
        "CORRUPT" => Some(Event::Corrupt(fields.trim().to_string())),
        _ => None,
    }
}

/// The value of `key=value` among whitespace-separated fields; the first one wins.
fn field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields.split_ascii_whitespace().find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
}

fn rate(text: &str) -> Option<f64> {
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// What a console log says about the guest's health.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogReport {
    /// Boot lines seen.
    pub boots: u32,
    /// The last boot line seen.
    pub boot: Option<Boot>,
    /// Heartbeat lines seen.
    pub heartbeats: u64,
    /// The last heartbeat seen.
    pub last: Option<Heartbeat>,
    /// Everything wrong, in log order (a restart is reported once, at the end).
    pub problems: Vec<Problem>,
}

impl LogReport {
    /// True when the guest printed at least one heartbeat and nothing is wrong.
    ///
    /// A log without heartbeats is not healthy: the workload never ran.
    pub fn healthy(&self) -> bool {
        self.heartbeats > 0 && self.problems.is_empty()
    }
}

/// Something wrong in a console log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Uptime decreased between two consecutive heartbeats: the guest restarted or time broke.
    UptimeWentBack {
        /// Uptime in the earlier heartbeat, in milliseconds.
        from_ms: u64,
        /// Uptime in the later heartbeat, in milliseconds.
        to_ms: u64,
    },
    /// A heartbeat did not carry the next sequence number: lines were lost or repeated.
    SequenceBroken {
        /// The sequence number due.
        expected: u64,
        /// The sequence number seen.
        got: u64,
    },
    /// The guest booted more than once.
    Restarted {
        /// Boot lines seen.
        boots: u32,
    },
    /// The guest reported corruption; the text after `CORRUPT`.
    Corrupt(String),
    /// The guest kernel reported trouble; the console line.
    KernelTrouble(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UptimeWentBack { from_ms, to_ms } => {
                write!(f, "uptime went back from {:.1} s to {:.1} s", *from_ms as f64 / 1000.0, *to_ms as f64 / 1000.0)
            }
            Problem::SequenceBroken { expected, got } => {
                write!(f, "heartbeat sequence broken: expected seq={expected}, got seq={got}")
            }
            Problem::Restarted { boots } => write!(f, "guest restarted: booted {boots} times"),
            Problem::Corrupt(what) => write!(f, "guest saw corruption: {what}"),
            Problem::KernelTrouble(line) => write!(f, "guest kernel trouble: {line}"),
        }
    }
}

/// Checks a whole console log.
///
/// Only complete lines count: a last line without its newline may still be being written, so it
/// is ignored rather than parsed half-way (`uptime_ms=120` of what will be `uptime_ms=12034`).
pub fn analyze(log: &str) -> LogReport {
    let mut report = LogReport::default();
    // The sequence number due next: `None` until known (a log that starts mid-run), `Some(0)`
    // right after a boot line.
    let mut expected_seq: Option<u64> = None;
    for line in log.split_inclusive('\n').filter(|line| line.ends_with('\n')) {
        match parse_line(line) {
            None => {}
            Some(Event::Boot(boot)) => {
                report.boots += 1;
                report.boot = Some(boot);
                expected_seq = Some(0);
            }
            Some(Event::Heartbeat(hb)) => {
                report.heartbeats += 1;
                if let Some(prev) = &report.last {
                    // Across a boot too: a reboot shows up here as well as in `Restarted`.
                    if hb.uptime_ms < prev.uptime_ms {
                        report.problems.push(Problem::UptimeWentBack { from_ms: prev.uptime_ms, to_ms: hb.uptime_ms });
                    }
                }
                if let Some(expected) = expected_seq {
                    if hb.seq != expected {
                        report.problems.push(Problem::SequenceBroken { expected, got: hb.seq });
                    }
                }
                expected_seq = Some(hb.seq.saturating_add(1));
                report.last = Some(hb);
            }
            Some(Event::Corrupt(what)) => report.problems.push(Problem::Corrupt(what)),
            Some(Event::KernelTrouble(line)) => {
                report.problems.push(Problem::KernelTrouble(line));
            }
        }
    }
    if report.boots > 1 {
        report.problems.push(Problem::Restarted { boots: report.boots });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders a report as text, so expectations read like the log they describe.
    fn render(report: &LogReport) -> String {
        let mut out = format!(
            "boots={} heartbeats={} last={} healthy={}\n",
            report.boots,
            report.heartbeats,
            report.last.as_ref().map_or("none".to_string(), |hb| hb.seq.to_string()),
            report.healthy()
        );
        for problem in &report.problems {
            out.push_str(&format!("{problem}\n"));
        }
        out
    }

    fn check(log: &str, expect: &str) {
        let actual = render(&analyze(log));
        let expect = unindent(expect);
        assert_eq!(actual, expect, "\nlog:\n{log}\nactual:\n{actual}\nexpected:\n{expect}");
    }

    fn unindent(text: &str) -> String {
        text.lines().map(str::trim).filter(|line| !line.is_empty()).map(|line| format!("{line}\n")).collect()
    }

    const BOOT: &str = "FERRY boot wss_mib=32 dirty_mib_s=10 disk=/dev/vdb\n";

    fn hb(seq: u64, uptime_ms: u64) -> String {
        let hb = Heartbeat { seq, uptime_ms, dirty_mib_s: 9.8, pages_verified: seq * 4096, disk_blocks_verified: seq };
        format!("{hb}\n")
    }

    #[test]
    fn normal_log() {
        let log = [
            "[    0.000000] Linux version 6.1.0\n".to_string(),
            BOOT.to_string(),
            hb(0, 1500),
            hb(1, 2500),
            hb(2, 3500),
        ]
        .concat();
        check(&log, "boots=1 heartbeats=3 last=2 healthy=true");
    }

    #[test]
    fn empty_log_is_not_healthy() {
        check("", "boots=0 heartbeats=0 last=none healthy=false");
        check(BOOT, "boots=1 heartbeats=0 last=none healthy=false");
    }

    #[test]
    fn log_starting_mid_run() {
        check(&[hb(41, 42000), hb(42, 43000)].concat(), "boots=0 heartbeats=2 last=42 healthy=true");
    }

    #[test]
    fn migration_pause_keeps_the_sequence() {
        // A long pause shows as a big uptime step, not as missing sequence numbers.
        check(
            &[BOOT.to_string(), hb(0, 1000), hb(1, 9000), hb(2, 10000)].concat(),
            "boots=1 heartbeats=3 last=2 healthy=true",
        );
    }

    #[test]
    fn uptime_going_back() {
        check(
            &[BOOT.to_string(), hb(0, 11000), hb(1, 12000), hb(2, 1200)].concat(),
            "boots=1 heartbeats=3 last=2 healthy=false
             uptime went back from 12.0 s to 1.2 s",
        );
    }

    #[test]
    fn sequence_gap_and_repeat() {
        check(
            &[BOOT.to_string(), hb(0, 1000), hb(1, 2000), hb(3, 4000), hb(3, 4100)].concat(),
            "boots=1 heartbeats=4 last=3 healthy=false
             heartbeat sequence broken: expected seq=2, got seq=3
             heartbeat sequence broken: expected seq=4, got seq=3",
        );
    }

    #[test]
    fn first_heartbeat_after_boot_must_be_zero() {
        check(
            &[BOOT.to_string(), hb(1, 2000)].concat(),
            "boots=1 heartbeats=1 last=1 healthy=false
             heartbeat sequence broken: expected seq=0, got seq=1",
        );
    }

    #[test]
    fn corrupt_lines() {
        check(
            &[
                BOOT.to_string(),
                hb(0, 1000),
                "FERRY CORRUPT page=123 word=4 expected=0x00000000000000aa got=0x00000000000000bb\n".to_string(),
                "FERRY CORRUPT disk block=7 expected=0x1 got=0x2\n".to_string(),
                hb(1, 2000),
            ]
            .concat(),
            "boots=1 heartbeats=2 last=1 healthy=false
             guest saw corruption: page=123 word=4 expected=0x00000000000000aa got=0x00000000000000bb
             guest saw corruption: disk block=7 expected=0x1 got=0x2",
        );
    }

    #[test]
    fn kernel_panic() {
        check(
            &[
                BOOT.to_string(),
                hb(0, 1000),
                "[   12.345678] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n"
                    .to_string(),
                "[   12.345999] Call Trace:\r\n".to_string(),
            ]
            .concat(),
            "boots=1 heartbeats=1 last=0 healthy=false
             guest kernel trouble: [   12.345678] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100
             guest kernel trouble: [   12.345999] Call Trace:",
        );
    }

    #[test]
    fn workload_killed_for_memory() {
        check(
            "[    2.347321] Out of memory: Killed process 87 (ferry-guest) total-vm:18040kB\nKilled\n",
            "boots=0 heartbeats=0 last=none healthy=false
             guest kernel trouble: [    2.347321] Out of memory: Killed process 87 (ferry-guest) total-vm:18040kB",
        );
    }

    #[test]
    fn interleaved_kernel_text() {
        // Kernel messages and carriage returns around and in front of protocol lines.
        let log = [
            "[    1.000000] virtio_blk virtio1: [vda] 32768 512-byte logical blocks\r\n",
            "[    1.100000] random: crng initFERRY boot wss_mib=32 dirty_mib_s=10 disk=none\r\n",
            "\u{1b}[0m\x00FERRY hb seq=0 uptime_ms=1500 dirty_mib_s=10.0 verified=0 disk_verified=0\r\n",
            "[    2.000000] clocksource: tsc: mark unstable\r\n",
            "garbage FERRY hb seq=1 uptime_ms=2500 dirty_mib_s=10.0 verified=8192 disk_verified=0\r\n",
        ]
        .concat();
        check(&log, "boots=1 heartbeats=2 last=1 healthy=true");
    }

    #[test]
    fn damaged_heartbeat_is_a_gap_not_a_guess() {
        // Kernel text spliced into a heartbeat makes it unreadable; the next one shows the gap.
        let log = [
            BOOT.to_string(),
            hb(0, 1000),
            "FERRY hb seq=1 uptime_ms=20[    2.0] foo\n".to_string(),
            "00 dirty_mib_s=10.0 verified=8192 disk_verified=1\n".to_string(),
            hb(2, 3000),
        ]
        .concat();
        check(
            &log,
            "boots=1 heartbeats=2 last=2 healthy=false
             heartbeat sequence broken: expected seq=1, got seq=2",
        );
    }

    #[test]
    fn restart() {
        check(
            &[BOOT.to_string(), hb(0, 1000), hb(1, 2000), BOOT.to_string(), hb(0, 900)].concat(),
            "boots=2 heartbeats=3 last=0 healthy=false
             uptime went back from 2.0 s to 0.9 s
             guest restarted: booted 2 times",
        );
    }

    #[test]
    fn truncated_last_line_is_ignored() {
        let log = [BOOT.to_string(), hb(0, 11000), hb(1, 12000), "FERRY hb seq=2 uptime_ms=120".to_string()].concat();
        check(&log, "boots=1 heartbeats=2 last=1 healthy=true");
        // Even when what has arrived so far happens to be a well-formed line.
        let log = [
            BOOT.to_string(),
            hb(0, 11000),
            "FERRY hb seq=1 uptime_ms=12000 dirty_mib_s=9.8 verified=8192 disk_verified=4".to_string(),
        ]
        .concat();
        check(&log, "boots=1 heartbeats=1 last=0 healthy=true");
    }

    #[test]
    fn lines_round_trip() {
        let boot = Boot {
            wss_mib: 32,
            dirty_mib_s: 10.0,
            disk: Some("/dev/vdb".to_string()),
            memory_mix: None,
            pages_by_class: None,
            fill_ms: None,
        };
        assert_eq!(boot.to_string(), "FERRY boot wss_mib=32 dirty_mib_s=10 disk=/dev/vdb");
        assert_eq!(parse_line(&boot.to_string()), Some(Event::Boot(boot)));

        let boot = Boot {
            wss_mib: 16,
            dirty_mib_s: 2.5,
            disk: None,
            memory_mix: Some(MemoryMix { zero: 10, text: 0, random: 90 }),
            pages_by_class: Some([410, 0, 3686]),
            fill_ms: Some(1234),
        };
        assert_eq!(
            boot.to_string(),
            "FERRY boot wss_mib=16 dirty_mib_s=2.5 disk=none mix=10:0:90 pages=410:0:3686 fill_ms=1234"
        );
        assert_eq!(parse_line(&boot.to_string()), Some(Event::Boot(boot)));

        let hb =
            Heartbeat { seq: 12, uptime_ms: 12034, dirty_mib_s: 9.8, pages_verified: 8192, disk_blocks_verified: 40 };
        assert_eq!(hb.to_string(), "FERRY hb seq=12 uptime_ms=12034 dirty_mib_s=9.8 verified=8192 disk_verified=40");
        assert_eq!(parse_line(&format!("{hb}\r\n")), Some(Event::Heartbeat(hb)));
    }

    #[test]
    fn memory_mixes() {
        let parse = |text: &str| text.parse::<MemoryMix>().map(|m| m.to_string()).unwrap_or_else(|e| e.to_string());
        assert_eq!(parse("25:50:25"), "25:50:25");
        assert_eq!(parse("0:0:100"), "0:0:100");
        assert_eq!(parse("100:0:0"), "100:0:0");
        assert_eq!(parse("25:50:20"), "\"25:50:20\": the percentages add up to 95, not 100");
        assert_eq!(parse("25:75"), "\"25:75\": expected ZERO:TEXT:RANDOM percentages of pages, such as 25:50:25");
        assert_eq!(parse("25:50:x"), "\"25:50:x\": each part must be a whole percentage from 0 to 100");
        assert_eq!(parse("-5:55:50"), "\"-5:55:50\": each part must be a whole percentage from 0 to 100");
        assert_eq!(parse("101:0:0"), "\"101:0:0\": each part must be a whole percentage from 0 to 100");
        assert_eq!(MemoryMix::default(), MemoryMix { zero: 25, text: 50, random: 25 });
    }

    #[test]
    fn the_last_boot_line_is_kept() {
        let log = [
            "FERRY boot wss_mib=32 dirty_mib_s=10 disk=none mix=25:50:25 pages=2048:4096:2048 fill_ms=300\n"
                .to_string(),
            hb(0, 1000),
        ]
        .concat();
        let boot = analyze(&log).boot.expect("a boot line");
        assert_eq!(boot.memory_mix, Some(MemoryMix::DEFAULT));
        assert_eq!(boot.pages_by_class, Some([2048, 4096, 2048]));
        assert_eq!(boot.fill_ms, Some(300));
    }

    #[test]
    fn lines_that_mean_nothing() {
        for line in [
            "",
            "\r",
            "FERRY",
            "FERRY hb",
            "FERRY hb seq=x uptime_ms=1 dirty_mib_s=1 verified=1 disk_verified=1",
            "FERRY hb seq=1 uptime_ms=1 dirty_mib_s=nan verified=1 disk_verified=1",
            "FERRY boot wss_mib=32 dirty_mib_s=10",
            "FERRY boot wss_mib=32 dirty_mib_s=10 disk=none mix=50:50:1",
            "FERRY boot wss_mib=32 dirty_mib_s=10 disk=none pages=1:2",
            "FERRY hello",
            "FERRYhb seq=1",
            "[    0.5] Run /init as init process",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }
}
