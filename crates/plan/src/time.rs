//! Instants in plans and on the command line: RFC 3339 timestamps (`2026-11-23T06:00:00Z`,
//! `2026-11-23T07:00:00+01:00`) to Unix seconds and back, and a deadline given as one of
//! them, a local time of day (`22:00`) or a duration from now (`+2h`). Calendar arithmetic
//! and time zones are jiff's.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan, ZonedDateTime};

/// Parses an RFC 3339 date-time with a `Z` or `±HH:MM` offset into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.len() < 19 || !t.as_bytes().get(10).is_some_and(|c| matches!(c, b'T' | b't' | b' ')) {
        return Err(format!("{text:?} is not a date-time like 2026-11-23T06:00:00Z"));
    }
    match t.parse::<Timestamp>() {
        Ok(at) => Ok(at.as_second()),
        // A date-time without an offset parses as a civil one: name what is missing.
        Err(_) if t.parse::<jiff::civil::DateTime>().is_ok() => {
            Err(format!("{text:?} has no time zone: end it with Z or an offset like +01:00"))
        }
        Err(e) => Err(format!("{text:?} is not a valid date-time like 2026-11-23T06:00:00Z ({e})")),
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: i64) -> String {
    match Timestamp::from_second(unix) {
        Ok(at) => at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("{unix} (out of range)"),
    }
}

/// A deadline as `--deadline` takes it, in Unix seconds: an RFC 3339 date-time; a time of
/// day (`22:00`, `22:00:30`) in `zone`, the next one after `now` (tomorrow's when today's
/// has passed); or a duration after `now`, `+` and hours, minutes or seconds (`+2h`,
/// `+90m`, `+1h30m`).
pub fn parse_deadline(text: &str, now: Timestamp, zone: &TimeZone) -> Result<i64, String> {
    let t = text.trim();
    if let Some(duration) = t.strip_prefix('+') {
        let span: Span = duration
            .parse()
            .map_err(|_| format!("{text:?}: a duration is + and hours, minutes or seconds, like +2h or +1h30m"))?;
        let at =
            now.checked_add(span).map_err(|_| format!("{text:?}: only hours, minutes and seconds (+48h, not +2d)"))?;
        if at <= now {
            return Err(format!("{text:?}: a deadline after now"));
        }
        return Ok(at.as_second());
    }
    if t.len() <= 8 && t.contains(':') {
        let time: Time = t.parse().map_err(|_| format!("{text:?} is not a time of day like 22:00"))?;
        let today =
            now.to_zoned_datetime(zone.clone()).with().time(time).build().map_err(|e| format!("{text:?}: {e}"))?;
        let next: ZonedDateTime = if today.timestamp() > now {
            today
        } else {
            today.checked_add(1.day()).map_err(|e| format!("{text:?}: {e}"))?
        };
        return Ok(next.timestamp().as_second());
    }
    parse_rfc3339(t).map_err(|e| format!("{e}; or a time of day (22:00) or a duration (+2h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, unix) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-11-23T06:00:00Z", 1_795_413_600),
            ("2026-11-23T07:00:00+01:00", 1_795_413_600),
            ("2024-02-29T12:00:00.250Z", 1_709_208_000),
        ] {
            assert_eq!(parse_rfc3339(text), Ok(unix), "{text}");
        }
        assert_eq!(format_rfc3339(1_795_413_600), "2026-11-23T06:00:00Z");
        for bad in ["tomorrow", "2026-11-23", "2026-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2026-11-23T06:00:00"] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert!(parse_rfc3339("2026-11-23T06:00:00").expect_err("no zone").contains("no time zone"));
    }

    #[test]
    fn a_deadline_is_a_date_time_a_time_of_day_or_a_duration() {
        // 2026-11-23 21:00 at UTC+01:00.
        let now = Timestamp::from_second(1_795_413_600 + 14 * 3600).expect("in range");
        let zone = TimeZone::fixed(jiff::tz::offset(1));
        let parse = |text: &str| parse_deadline(text, now, &zone);
        assert_eq!(parse("2026-11-23T06:00:00Z"), Ok(1_795_413_600));
        assert_eq!(parse("+2h"), Ok(now.as_second() + 7200));
        assert_eq!(parse("+1h30m"), Ok(now.as_second() + 5400));
        assert_eq!(parse("+90m"), Ok(now.as_second() + 5400));
        // 22:00 local is in an hour; 06:00 local has passed today: tomorrow's.
        assert_eq!(parse("22:00"), Ok(now.as_second() + 3600));
        assert_eq!(parse("06:00"), Ok(now.as_second() + 9 * 3600));
        assert_eq!(parse("21:00"), Ok(now.as_second() + 24 * 3600), "now is not after now");
        for bad in ["+2", "+0m", "+2d", "25:00", "tomorrow", "+", "22"] {
            assert!(parse(bad).is_err(), "{bad}: {:?}", parse(bad));
        }
    }
}
