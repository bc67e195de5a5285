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
