//! Durations, sizes and instants as people read them.

/// A duration for people: `12.4 s`, `3 min 05.2 s`, `2 h 03 min 05 s`.
pub(crate) fn duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{sign}{}.{} s", tenths / 10, tenths % 10);
    }
    if tenths < 36_000 {
        let secs = tenths % 600;
        return format!("{sign}{} min {:02}.{} s", tenths / 600, secs / 10, secs % 10);
    }
    let secs = (ms + 500) / 1000;
    format!("{sign}{} h {:02} min {:02} s", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Bytes in the largest binary unit that keeps the number at 1 or more, one decimal:
/// `512 B`, `1.5 KiB`, `128.5 MiB`, `7.7 TiB`.
pub(crate) fn bytes(count: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `2026-11-23 20:30:15 UTC`.
pub(crate) fn utc(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{ms} ms (out of range)"),
    }
}

/// `2026-11-23T20:30:15.123Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => format!("{}.{:03}Z", at.strftime("%Y-%m-%dT%H:%M:%S"), ms.rem_euclid(1000)),
        Err(_) => format!("{ms} ms (out of range)"),
    }
}
