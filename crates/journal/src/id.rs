//! Run ids: short, sortable by creation time, unique enough to retry on a clash.

/// `r-YYYYMMDD-HHMMSS-xxxx` for the UTC time `ms` since the epoch and a 16-bit suffix; a
/// time beyond the years 9999 either way (no clock gives one) is clamped to them.
pub(crate) fn run_id(ms: i64, suffix: u16) -> String {
    let at = jiff::Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    format!("r-{}-{suffix:04x}", at.strftime("%Y%m%d-%H%M%S"))
}

/// A random suffix for a run id.
pub(crate) fn random_suffix() -> u16 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        let cases = [
            (0, 0, "r-19700101-000000-0000"),
            (1_795_465_815_000, 0xab12, "r-20261123-203015-ab12"),
            (951_782_400_000, 1, "r-20000229-000000-0001"),
            (4_102_444_799_999, 0xffff, "r-20991231-235959-ffff"),
        ];
        for (ms, suffix, want) in cases {
            assert_eq!(run_id(ms, suffix), want, "{ms}");
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let times = [0, 1000, 59_999, 86_400_000, 1_795_465_815_000, 4_102_444_799_999];
        let ids: Vec<String> = times.iter().map(|&t| run_id(t, 0xffff - (t % 7) as u16)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
