//! How a live migration's stream travels: one connection or several (QEMU's multifd),
//! compressed or not, with zero-copy sends or not. TLS is decided per pair of hosts and
//! kept beside these options.
//!
//! The rules here are the ones that hold whatever the hosts; what each host's QEMU and
//! libvirt can do is preview's `stream` check.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Version;

/// Compression of a multifd stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Pages are sent as they are.
    #[default]
    None,
    /// zstd, levels 1–20 (libvirt's range).
    Zstd,
    /// zlib, levels 1–9.
    Zlib,
}

impl Compression {
    /// Every compression, for messages.
    pub const NAMES: &'static str = "none, zstd, zlib";

    /// The name in plans, flags and libvirt's `compression` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Zlib => "zlib",
        }
    }

    /// The compression a name means.
    pub fn parse(name: &str) -> Option<Compression> {
        match name {
            "none" => Some(Compression::None),
            "zstd" => Some(Compression::Zstd),
            "zlib" => Some(Compression::Zlib),
            _ => None,
        }
    }

    /// The highest level; `None` without compression.
    pub fn max_level(self) -> Option<u32> {
        match self {
            Compression::None => None,
            Compression::Zstd => Some(20),
            Compression::Zlib => Some(9),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(name: &str) -> Result<Compression, String> {
        Compression::parse(name).ok_or_else(|| format!("{name:?} is not one of {}", Compression::NAMES))
    }
}

/// A live migration's stream options besides TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    /// Parallel connections (multifd channels); 0: one plain stream.
    pub parallel_connections: u32,
    /// Compression of the multifd channels.
    pub compression: Compression,
    /// Compression level; `None`: QEMU's default (zstd 1, zlib 1).
    pub compression_level: Option<u32>,
    /// Zero-copy sends (Linux `MSG_ZEROCOPY`): less CPU per byte on the source.
    pub zerocopy: bool,
}

impl StreamOptions {
    /// Whether several connections carry the stream.
    pub fn multifd(&self) -> bool {
        self.parallel_connections > 0
    }

    /// What is wrong with these options whatever the hosts, with `tls` on or off: each
    /// problem names the option. QEMU compresses only multifd channels, and sends
    /// zero-copy only uncompressed, unencrypted multifd pages.
    pub fn problems(&self, tls: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.compression != Compression::None && !self.multifd() {
            problems.push(format!(
                "compression {} needs parallel_connections (QEMU compresses only multifd channels)",
                self.compression
            ));
        }
        match (self.compression_level, self.compression.max_level()) {
            (Some(_), None) => problems.push("compression_level needs a compression".to_string()),
            (Some(level), Some(max)) if level == 0 || level > max => {
                problems.push(format!("compression_level {level} is not in 1–{max} for {}", self.compression))
            }
            _ => {}
        }
        if self.zerocopy {
            if !self.multifd() {
                problems.push("zerocopy needs parallel_connections (zero-copy sends are multifd's)".to_string());
            }
            if self.compression != Compression::None {
                problems.push("zerocopy cannot be combined with compression".to_string());
            }
            if tls {
                problems.push("zerocopy cannot be combined with TLS".to_string());
            }
        }
        problems
    }
}

/// What one host allows of a stream, from its cluster file entry: a host whose QEMU lacks
/// zstd, or whose CPU is spoken for, says so once instead of every plan. Each field set
/// bounds the migrations the host takes part in, as source or target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamLimits {
    /// At most this many parallel connections (0: one plain stream).
    pub parallel_connections: Option<u32>,
    /// Only this compression (`none`: no compression).
    pub compression: Option<Compression>,
    /// At most this compression level.
    pub compression_level: Option<u32>,
    /// `false`: no zero-copy sends.
    pub zerocopy: Option<bool>,
    /// What one migration stream moves from this host at most, MiB/s (one QEMU migration
    /// thread, TLS included when used): the preview estimates no move leaving it faster (per
    /// parallel connection), and `transport = "auto"` compresses only moves whose link share
    /// is below it. `None`: [`ASSUMED_ONE_STREAM_MIB_S`] for `auto`, no bound for estimates.
    pub one_stream_mib_s: Option<u64>,
}

impl StreamLimits {
    /// `options` within these limits: fewer connections, no compression or another one
    /// refused, a lower level, no zero-copy.
    pub fn bound(&self, mut options: StreamOptions) -> StreamOptions {
        if let Some(max) = self.parallel_connections {
            options.parallel_connections = options.parallel_connections.min(max);
        }
        if self.compression.is_some_and(|only| only != options.compression) {
            options.compression = Compression::None;
        }
        if let (Some(max), Some(level)) = (self.compression_level, options.compression_level) {
            options.compression_level = Some(level.min(max));
        }
        if self.zerocopy == Some(false) {
            options.zerocopy = false;
        }
        // What the bounds took away takes its dependents with it.
        if !options.multifd() {
            options.compression = Compression::None;
            options.zerocopy = false;
        }
        if options.compression == Compression::None {
            options.compression_level = None;
        }
        options
    }
}

/// The oldest QEMU and libvirt that can do a stream feature, with its name for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The feature, in words.
    pub what: &'static str,
    /// Oldest QEMU.
    pub qemu: Version,
    /// Oldest libvirt.
    pub libvirt: Version,
}

const fn version(major: u32, minor: u32) -> Version {
    Version { major, minor, release: 0 }
}

impl StreamOptions {
    /// The features these options use, each with the versions it needs on both hosts.
    /// Sources: libvirt's `libvirt-domain.h` (`VIR_MIGRATE_TLS` since 3.2.0,
    /// `VIR_MIGRATE_PARALLEL` 5.2.0, `VIR_MIGRATE_ZEROCOPY` 8.5.0, the zstd and zlib levels of
    /// parallel migration 9.4.0); QEMU's multifd (4.0), its zstd and zlib channels (5.0),
    /// `zero-copy-send` (7.1), post-copy after multifd pre-copy (10.1).
    pub fn needs(&self, tls: bool, postcopy: bool) -> Vec<Needs> {
        let mut needs = Vec::new();
        if tls {
            needs.push(Needs { what: "TLS", qemu: version(2, 9), libvirt: version(3, 2) });
        }
        if self.multifd() {
            needs.push(Needs { what: "parallel connections", qemu: version(4, 0), libvirt: version(5, 2) });
        }
        if self.compression != Compression::None {
            needs.push(Needs { what: "multifd compression", qemu: version(5, 0), libvirt: version(9, 4) });
        }
        if self.zerocopy {
            needs.push(Needs { what: "zero-copy sends", qemu: version(7, 1), libvirt: version(8, 5) });
        }
        if postcopy && self.multifd() {
            needs.push(Needs {
                what: "post-copy with parallel connections",
                qemu: version(10, 1),
                libvirt: version(5, 2),
            });
        }
        needs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(parallel: u32, compression: Compression, level: Option<u32>, zerocopy: bool) -> StreamOptions {
        StreamOptions { parallel_connections: parallel, compression, compression_level: level, zerocopy }
    }

    #[test]
    fn impossible_combinations_name_the_option() {
        let cases = [
            (options(0, Compression::None, None, false), false, vec![]),
            (options(4, Compression::Zstd, Some(3), false), true, vec![]),
            (options(0, Compression::Zstd, None, false), false, vec!["compression zstd needs parallel_connections"]),
            (options(2, Compression::None, Some(3), false), false, vec!["compression_level needs a compression"]),
            (
                options(2, Compression::Zlib, Some(10), false),
                false,
                vec!["compression_level 10 is not in 1–9 for zlib"],
            ),
            (options(2, Compression::Zstd, Some(0), false), false, vec!["compression_level 0 is not in 1–20"]),
            (options(0, Compression::None, None, true), false, vec!["zerocopy needs parallel_connections"]),
            (
                options(2, Compression::Zstd, None, true),
                true,
                vec!["zerocopy cannot be combined with compression", "zerocopy cannot be combined with TLS"],
            ),
        ];
        for (stream, tls, want) in cases {
            let got = stream.problems(tls);
            assert_eq!(got.len(), want.len(), "{stream:?} tls {tls}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.starts_with(w), "{stream:?}: {g:?} does not start with {w:?}");
            }
        }
    }

    #[test]
    fn each_feature_needs_its_versions() {
        let all = options(4, Compression::Zstd, None, false).needs(true, true);
        let what: Vec<&str> = all.iter().map(|n| n.what).collect();
        assert_eq!(what, ["TLS", "parallel connections", "multifd compression", "post-copy with parallel connections"]);
        assert_eq!(all[2].libvirt, version(9, 4));
        assert!(options(0, Compression::None, None, false).needs(false, true).is_empty());
    }

    #[test]
    fn a_host_bounds_the_stream_it_takes_part_in() {
        let asked = options(8, Compression::Zstd, Some(5), false);
        let cases = [
            (StreamLimits::default(), asked),
            (
                StreamLimits { parallel_connections: Some(2), compression_level: Some(3), ..StreamLimits::default() },
                options(2, Compression::Zstd, Some(3), false),
            ),
            (
                StreamLimits { compression: Some(Compression::Zlib), ..StreamLimits::default() },
                options(8, Compression::None, None, false),
            ),
            (
                StreamLimits { parallel_connections: Some(0), ..StreamLimits::default() },
                options(0, Compression::None, None, false),
            ),
        ];
        for (limits, want) in cases {
            let bounded = limits.bound(asked);
            assert_eq!(bounded, want, "{limits:?}");
            assert!(bounded.problems(false).is_empty(), "{bounded:?}");
        }
    }

    #[test]
    fn compression_names_round_trip() {
        for c in [Compression::None, Compression::Zstd, Compression::Zlib] {
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
        }
        assert_eq!("lz4".parse::<Compression>(), Err("\"lz4\" is not one of none, zstd, zlib".to_string()));
    }
}

/// How a plan's migration streams are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// As the policy's stream options say, for every move.
    #[default]
    Fixed,
    /// Per move: compressed multifd when the link share limits the move and the source has
    /// a core to spare, else one plain stream ([`choose_stream`]).
    Auto,
}

impl StreamMode {
    /// Every mode, for messages.
    pub const NAMES: &'static str = "fixed, auto";
}

impl std::str::FromStr for StreamMode {
    type Err = String;

    fn from_str(name: &str) -> Result<StreamMode, String> {
        match name {
            "fixed" => Ok(StreamMode::Fixed),
            "auto" => Ok(StreamMode::Auto),
            _ => Err(format!("{name:?} is not one of {}", StreamMode::NAMES)),
        }
    }
}

/// What one migration stream moves when a host does not say: VMware chooses one vMotion
/// stream per 15 Gbit/s of link since vSphere 7.0 U2 (Broadcom KB 323379), about 1788 MiB/s.
pub const ASSUMED_ONE_STREAM_MIB_S: u64 = 1788;

/// The least idle CPU a source needs before `auto` compresses, cores: QEMU compresses in its
/// multifd threads on the source, and a margin keeps them from taking the guests' CPU.
pub const AUTO_MIN_IDLE_CPUS: f64 = 0.25;

/// CPU time zstd at level 1 takes per MiB of guest memory, ms. An assumption from published
/// speeds: zstd's own benchmark (README, zstd 1.5.7 `-1` on Silesia) compresses 510 MB/s on a
/// 4.9 GHz desktop core (2.1 ms/MiB) and lzbench 345 MB/s on a 2.6 GHz Broadwell Xeon core
/// (3.0 ms/MiB); 2.5 ms sits between, for a modest server core, before QEMU's own per-page work.
pub const ZSTD_CPU_MS_PER_MIB: f64 = 2.5;

/// The same for zlib (level 1): zstd's README puts zlib 1.3.1 `-1` at 105 MB/s against
/// zstd's 510 MB/s on the same core, about 5 times the CPU a MiB; so 5 × 2.5 ms. An
/// assumption like [`ZSTD_CPU_MS_PER_MIB`].
pub const ZLIB_CPU_MS_PER_MIB: f64 = 12.5;

/// The ratio `auto` sizes the CPU it needs by: about the lab guest's measured 2.09:1 (its
/// default memory mix, zstd over 4 connections).
pub const AUTO_ASSUMED_RATIO: f64 = 2.0;

impl Compression {
    /// CPU time to compress a MiB of guest memory, ms; `None` without compression.
    pub fn cpu_ms_per_mib(self) -> Option<f64> {
        match self {
            Compression::None => None,
            Compression::Zstd => Some(ZSTD_CPU_MS_PER_MIB),
            Compression::Zlib => Some(ZLIB_CPU_MS_PER_MIB),
        }
    }
}

/// The compressed stream `auto` turns on when the policy names none: 4 connections (the
/// multifd channel count KubeVirt and Nova's examples use) with zstd at its fastest level.
pub const AUTO_STREAM: StreamOptions =
    StreamOptions { parallel_connections: 4, compression: Compression::Zstd, compression_level: None, zerocopy: false };

/// What `auto` knows of one move as it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoFacts {
    /// The move's share of the links between its hosts, MiB/s; `None`: no link rate known.
    pub link_share_mib_s: Option<f64>,
    /// What one stream moves from the source, MiB/s.
    pub one_stream_mib_s: u64,
    /// Whether that is [`ASSUMED_ONE_STREAM_MIB_S`] rather than the host's own figure.
    pub one_stream_assumed: bool,
    /// The source's idle cores now, or why it could not say.
    pub idle_cpus: Result<f64, String>,
    /// The source host's name, for the reason.
    pub source: String,
}

impl AutoFacts {
    /// The facts of a move from `source` that may use `link_share_mib_s`.
    pub fn new(source: &crate::HostSpec, link_share_mib_s: Option<f64>, idle_cpus: Result<f64, String>) -> AutoFacts {
        AutoFacts {
            link_share_mib_s,
            one_stream_mib_s: source.stream.one_stream_mib_s.unwrap_or(ASSUMED_ONE_STREAM_MIB_S),
            one_stream_assumed: source.stream.one_stream_mib_s.is_none(),
            idle_cpus,
            source: source.name.clone(),
        }
    }
}

/// A stream chosen for a move, with the reason in words for the journal and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamChoice {
    /// The stream.
    pub options: StreamOptions,
    /// Why, in words: "4 connections with zstd: its link share 32 MiB/s is below ...".
    pub why: String,
}

/// `auto`'s choice for one move: `compressed` (the policy's compressed stream, else
/// [`AUTO_STREAM`], within what the hosts allow) when its link share is below what one
/// stream moves, so that fewer bytes finish sooner, and its source has the idle CPU that
/// compressing memory fast enough to fill the share takes (share × [`AUTO_ASSUMED_RATIO`] ×
/// the compression's CPU per MiB, at least [`AUTO_MIN_IDLE_CPUS`]); else one plain stream,
/// which costs no CPU and is as fast when the stream, not the link, limits.
pub fn choose_stream(compressed: StreamOptions, facts: &AutoFacts) -> StreamChoice {
    let plain =
        |why: String| StreamChoice { options: StreamOptions::default(), why: format!("one plain stream: {why}") };
    if compressed.compression == Compression::None {
        return plain("the hosts allow no compressed stream".to_string());
    }
    let one = format!(
        "{} MiB/s{}",
        facts.one_stream_mib_s,
        if facts.one_stream_assumed { " (assumed; the host's one_stream_mib_s sets it)" } else { "" }
    );
    let Some(share) = facts.link_share_mib_s else {
        return plain("no link rate is known between these hosts".to_string());
    };
    if share >= facts.one_stream_mib_s as f64 {
        return plain(format!("its link share {share:.0} MiB/s is not below what one stream moves, {one}"));
    }
    let per_mib_ms = compressed.compression.cpu_ms_per_mib().unwrap_or(ZSTD_CPU_MS_PER_MIB);
    let needed = (share * AUTO_ASSUMED_RATIO * per_mib_ms / 1000.0).max(AUTO_MIN_IDLE_CPUS);
    let idle = match &facts.idle_cpus {
        Err(e) => return plain(format!("{}'s idle CPU is not known ({e})", facts.source)),
        Ok(idle) if *idle < needed => {
            return plain(format!(
                "{} has {idle:.2} cores idle, below the {needed:.2} compressing its link share takes",
                facts.source
            ))
        }
        Ok(idle) => *idle,
    };
    let level = compressed.compression_level.map(|l| format!(" level {l}")).unwrap_or_default();
    StreamChoice {
        options: compressed,
        why: format!(
            "{} connections with {}{level}: its link share {share:.0} MiB/s is below what one stream moves, \
             {one}, and {} has {idle:.2} cores idle ({needed:.2} needed)",
            compressed.parallel_connections, compressed.compression, facts.source
        ),
    }
}

#[cfg(test)]
mod auto_tests {
    use super::*;

    fn facts(share: Option<f64>, idle: Result<f64, String>) -> AutoFacts {
        AutoFacts {
            link_share_mib_s: share,
            one_stream_mib_s: ASSUMED_ONE_STREAM_MIB_S,
            one_stream_assumed: true,
            idle_cpus: idle,
            source: "host-a".into(),
        }
    }

    #[test]
    fn a_link_bound_move_with_a_core_to_spare_is_compressed_and_says_why() {
        let choice = choose_stream(AUTO_STREAM, &facts(Some(32.0), Ok(1.4)));
        assert_eq!(choice.options, AUTO_STREAM);
        assert!(choice.why.contains("link share 32 MiB/s is below") && choice.why.contains("1.40 cores idle"));
        // 32 MiB/s at 2:1 is 64 MiB/s of memory, 0.16 cores of zstd: the floor of 0.25 holds.
        assert!(choice.why.contains("(0.25 needed)"), "{}", choice.why);
        // 400 MiB/s at 2:1 with zstd needs 2 cores; 1.4 is not enough.
        let wide = choose_stream(AUTO_STREAM, &facts(Some(400.0), Ok(1.4)));
        assert_eq!(wide.options, StreamOptions::default(), "{}", wide.why);
        assert!(wide.why.contains("below the 2.00 compressing"), "{}", wide.why);
        // The policy's own compressed stream is the one turned on.
        let own = StreamOptions { parallel_connections: 2, compression: Compression::Zlib, ..AUTO_STREAM };
        assert_eq!(choose_stream(own, &facts(Some(32.0), Ok(3.0))).options, own);
        // Hosts that allow no compression get a plain stream.
        let refused = choose_stream(StreamOptions::default(), &facts(Some(32.0), Ok(3.0)));
        assert_eq!(refused.options, StreamOptions::default());
        assert!(refused.why.contains("allow no compressed stream"), "{}", refused.why);
    }

    #[test]
    fn every_other_case_is_one_plain_stream_with_its_reason() {
        let plain = StreamOptions::default();
        for (facts, reason) in [
            (facts(None, Ok(4.0)), "no link rate"),
            (facts(Some(5000.0), Ok(4.0)), "not below what one stream moves, 1788 MiB/s (assumed"),
            (facts(Some(32.0), Ok(0.2)), "0.20 cores idle, below the 0.25"),
            (facts(Some(32.0), Err("unsupported".into())), "idle CPU is not known (unsupported)"),
        ] {
            let choice = choose_stream(AUTO_STREAM, &facts);
            assert_eq!(choice.options, plain, "{facts:?}");
            assert!(choice.why.starts_with("one plain stream: ") && choice.why.contains(reason), "{}", choice.why);
        }
    }
}
