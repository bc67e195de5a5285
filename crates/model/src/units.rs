//! Sizes and durations as people read them: the one formatter every output of ferry uses.

/// Bytes in the largest binary unit that keeps the number at 1 or more, one decimal:
/// `512 B`, `1.5 KiB`, `128.5 MiB`, `7.7 TiB`.
pub fn bytes(count: u64) -> String {
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

/// A duration of `ms` milliseconds: `12.4 s`, `3 min 05.2 s`, `2 h 03 min 05 s`.
pub fn duration(ms: i64) -> String {
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

/// A duration of `s` seconds as [`duration`] writes it; `never` when it is not finite.
pub fn seconds(s: f64) -> String {
    if s.is_finite() {
        duration((s * 1000.0).round() as i64)
    } else {
        "never".to_string()
    }
}
