//! A compressed migration stream, as the simulator models it: the source's multifd channels
//! compress guest memory (not disks, which NBD copies as they are), so a byte on the link
//! carries `ratio` bytes of memory, and the channels together compress no faster than their
//! cores allow.
//!
//! The figures are the fleet's (`compression_ratio` per VM, `compress_cpu_ms_per_mib` per
//! host); what is absent takes the defaults below, each naming where it comes from.

use ferry_model::{Compression, StreamOptions};

/// Guest memory per byte sent when a VM's memory is compressed and the fleet does not say:
/// 1.0, no gain. A fleet that never measured its guests is promised nothing from compression
/// (it still pays the CPU), and the estimate assumes the same when it knows no ratio
/// (`LiveInput::compression_ratio`). The lab's guest, for comparison, measured 2.08:1 with
/// zstd on 4 channels (123.8 MB sent plain, 59.5 MB compressed).
pub const DEFAULT_COMPRESSION_RATIO: f64 = 1.0;

/// CPU a core spends compressing a MiB of guest memory, when the host does not say: the
/// assumptions `transport = "auto"` sizes its CPU by (see their sources there).
pub use ferry_model::{ZLIB_CPU_MS_PER_MIB, ZSTD_CPU_MS_PER_MIB};

/// How one migration's stream carries memory when it compresses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Compressed {
    /// Guest memory per byte sent.
    pub ratio: f64,
    /// Channels compressing at once: the stream's parallel connections, no more than the
    /// source's CPUs.
    pub channels: u32,
    /// Guest memory the channels compress per second at most, MiB/s.
    pub memory_mib_s: f64,
}

impl Compressed {
    /// The fastest the stream can send, MiB/s on the link: what the channels compress, sent
    /// `ratio` times smaller.
    pub fn wire_cap(&self) -> f64 {
        self.memory_mib_s / self.ratio
    }
}

/// How a stream with `stream`'s options carries the memory of a VM whose memory compresses
/// `ratio`:1, from a source with `cpus` CPUs that spends `cpu_ms_per_mib` a MiB (absent: the
/// compression's default). `None`: the memory is sent as it is (no compression, or no
/// multifd channels, which QEMU requires for it).
pub(crate) fn compressed(
    stream: &StreamOptions,
    ratio: Option<f64>,
    cpu_ms_per_mib: Option<f64>,
    cpus: u32,
) -> Option<Compressed> {
    let default_ms = match stream.compression {
        Compression::None => return None,
        Compression::Zstd => ZSTD_CPU_MS_PER_MIB,
        Compression::Zlib => ZLIB_CPU_MS_PER_MIB,
    };
    if !stream.multifd() {
        return None;
    }
    let ms = cpu_ms_per_mib.filter(|m| positive(*m)).unwrap_or(default_ms);
    // A channel is a thread: it compresses on one core, and the source has only so many.
    let channels = stream.parallel_connections.min(cpus.max(1));
    Some(Compressed {
        ratio: ratio.filter(|r| positive(*r)).unwrap_or(DEFAULT_COMPRESSION_RATIO),
        channels,
        memory_mib_s: f64::from(channels) * 1000.0 / ms,
    })
}

fn positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parallel: u32, compression: Compression) -> StreamOptions {
        StreamOptions { parallel_connections: parallel, compression, ..StreamOptions::default() }
    }

    #[test]
    fn only_compressing_multifd_streams_compress() {
        assert_eq!(compressed(&stream(4, Compression::None), Some(3.0), None, 64), None);
        // QEMU compresses multifd channels only; the plan refuses this, the model ignores it.
        assert_eq!(compressed(&stream(0, Compression::Zstd), Some(3.0), None, 64), None);
    }

    #[test]
    fn channels_compress_at_their_cores_pace_and_no_more_channels_than_cores() {
        let zstd = compressed(&stream(4, Compression::Zstd), Some(2.0), None, 64).expect("compresses");
        assert_eq!(zstd.channels, 4);
        assert_eq!(zstd.memory_mib_s, 4.0 * 1000.0 / ZSTD_CPU_MS_PER_MIB);
        assert_eq!(zstd.wire_cap(), zstd.memory_mib_s / 2.0);
        let zlib = compressed(&stream(4, Compression::Zlib), Some(2.0), None, 64).expect("compresses");
        assert_eq!(zlib.memory_mib_s, 4.0 * 1000.0 / ZLIB_CPU_MS_PER_MIB);
        let few_cores = compressed(&stream(8, Compression::Zstd), None, Some(20.0), 2).expect("compresses");
        assert_eq!((few_cores.channels, few_cores.memory_mib_s), (2, 100.0));
    }

    #[test]
    fn figures_that_are_no_figures_take_the_defaults() {
        for bad in [None, Some(0.0), Some(-1.0), Some(f64::NAN), Some(f64::INFINITY)] {
            let c = compressed(&stream(1, Compression::Zstd), bad, bad, 64).expect("compresses");
            assert_eq!(c.ratio, DEFAULT_COMPRESSION_RATIO);
            assert_eq!(c.memory_mib_s, 1000.0 / ZSTD_CPU_MS_PER_MIB);
        }
    }
}
