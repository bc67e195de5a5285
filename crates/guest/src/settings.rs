//! Settings from the kernel command line.

use std::fmt;
use std::path::PathBuf;

use ferry_heartbeat::MemoryMix;

/// What the workload does, from `ferry.*` words on the kernel command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ferry.dirty=MiB/s`: memory to rewrite per second (0: verify only).
    pub dirty_mib_s: f64,
    /// `ferry.wss=MiB`: size of the working set.
    pub wss_mib: u64,
    /// `ferry.disk=`: which block device to write and verify.
    pub disk: DiskChoice,
    /// `ferry.mix=ZERO:TEXT:RANDOM`: percent of working-set pages of each class.
    pub memory_mix: MemoryMix,
}

/// Which disk the workload checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskChoice {
    /// No `ferry.disk=`: the first virtio disk there is (see [`DiskChoice::CANDIDATES`]).
    Default,
    /// `ferry.disk=none`.
    None,
    /// `ferry.disk=PATH`.
    Path(PathBuf),
}

impl DiskChoice {
    /// Devices tried, in order, without `ferry.disk=`. The guest has no root disk, so the lab's
    /// data disk is `vda` when it is the only one, whatever target name libvirt gives it.
    pub const CANDIDATES: &'static [&'static str] = &["/dev/vdb", "/dev/vda"];
}

impl Default for Settings {
    fn default() -> Self {
        Settings { dirty_mib_s: 0.0, wss_mib: 32, disk: DiskChoice::Default, memory_mix: MemoryMix::DEFAULT }
    }
}

/// A `ferry.*` word that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSetting {
    word: String,
    reason: String,
}

impl fmt::Display for BadSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad kernel command line setting {}: {}", self.word, self.reason)
    }
}

impl Settings {
    /// Reads `ferry.*` words from a kernel command line; everything else is the kernel's.
    ///
    /// Unknown or malformed `ferry.*` words are errors: a typo must not silently run a default
    /// workload.
    pub fn from_cmdline(cmdline: &str) -> Result<Settings, BadSetting> {
        let mut settings = Settings::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some(setting) = word.strip_prefix("ferry.") else {
                continue;
            };
            let bad = |reason: &str| BadSetting { word: word.to_string(), reason: reason.to_string() };
            let (key, value) = setting.split_once('=').ok_or_else(|| bad("expected key=value"))?;
            match key {
                "dirty" => {
                    let rate: f64 = value.parse().map_err(|_| bad("expected MiB/s"))?;
                    if !(rate.is_finite() && rate >= 0.0) {
                        return Err(bad("expected a rate of 0 or more MiB/s"));
                    }
                    settings.dirty_mib_s = rate;
                }
                "wss" => {
                    let mib: u64 = value.parse().map_err(|_| bad("expected whole MiB"))?;
                    if mib == 0 {
                        return Err(bad("the working set needs at least 1 MiB"));
                    }
                    settings.wss_mib = mib;
                }
                "disk" => {
                    settings.disk = match value {
                        "" => return Err(bad("expected a device path or none")),
                        "none" => DiskChoice::None,
                        path => DiskChoice::Path(PathBuf::from(path)),
                    }
                }
                "mix" => settings.memory_mix = value.parse().map_err(|e: ferry_heartbeat::BadMix| bad(&e.0))?,
                _ => return Err(bad("unknown setting (known: ferry.dirty, ferry.wss, ferry.disk, ferry.mix)")),
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cmdline: &str, expect: &str) {
        let actual = match Settings::from_cmdline(cmdline) {
            Ok(s) => format!("dirty={} wss={} disk={:?} mix={}", s.dirty_mib_s, s.wss_mib, s.disk, s.memory_mix),
            Err(e) => e.to_string(),
        };
        assert_eq!(actual, expect, "cmdline: {cmdline}");
    }

    #[test]
    fn settings() {
        check("console=ttyS0 quiet", "dirty=0 wss=32 disk=Default mix=25:50:25");
        check(
            "console=ttyS0 panic=-1 quiet ferry.dirty=10 ferry.wss=64\n",
            "dirty=10 wss=64 disk=Default mix=25:50:25",
        );
        check("ferry.dirty=2.5 ferry.disk=/dev/vdb", "dirty=2.5 wss=32 disk=Path(\"/dev/vdb\") mix=25:50:25");
        check("ferry.disk=none ferry.mix=10:20:70", "dirty=0 wss=32 disk=None mix=10:20:70");
        check(
            "ferry.mix=10:20:30",
            "bad kernel command line setting ferry.mix=10:20:30: \"10:20:30\": the percentages add up to 60, not 100",
        );
        check("ferry.dirty=fast", "bad kernel command line setting ferry.dirty=fast: expected MiB/s");
        check("ferry.dirty=-1", "bad kernel command line setting ferry.dirty=-1: expected a rate of 0 or more MiB/s");
        check("ferry.wss=0", "bad kernel command line setting ferry.wss=0: the working set needs at least 1 MiB");
        check(
            "ferry.dirt=10",
            "bad kernel command line setting ferry.dirt=10: unknown setting (known: ferry.dirty, ferry.wss, ferry.disk, ferry.mix)",
        );
        check("ferry.wss", "bad kernel command line setting ferry.wss: expected key=value");
    }
}
