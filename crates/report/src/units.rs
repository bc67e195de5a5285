//! Instants as people read them; sizes and durations are `ferry_model::units`.

pub(crate) use ferry_model::units::{bytes, duration};

/// `2026-11-23 20:30:15 UTC`.
pub(crate) fn utc(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{ms} ms (out of range)"),
    }
}

/// `20:31:15`, UTC: the time of day of `ms`.
pub(crate) fn clock(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.strftime("%H:%M:%S").to_string(),
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
