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

/// Bytes in MiB with one decimal.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// `2026-11-23 20:30:15 UTC`.
pub(crate) fn utc(ms: i64) -> String {
    let t = civil(ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// `2026-11-23T20:30:15.123Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = civil(ms);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.year, t.month, t.day, t.hour, t.minute, t.second, t.milli)
}

struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
}

/// The UTC calendar time `ms` since the epoch.
fn civil(ms: i64) -> Civil {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = ferry_model::calendar::civil_from_days(days);
    Civil { year, month, day, hour: rem / 3600, minute: rem % 3600 / 60, second: rem % 60, milli }
}
