//! RFC 3339 timestamps (`2026-11-23T06:00:00Z`, `2026-11-23T07:00:00+01:00`) to Unix
//! seconds and back, without a calendar dependency.

/// Parses an RFC 3339 date-time with a `Z` or `±HH:MM` offset into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a date-time like 2026-11-23T06:00:00Z");
    let t = text.trim();
    if t.len() < 19 || !t.is_ascii() {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| t[range].parse::<i64>().map_err(|_| bad());
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|(i, c)| t.as_bytes()[*i] != *c) || !matches!(t.as_bytes()[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
            let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(format!("{text:?} has no time zone: end it with Z or an offset like +01:00")),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(format!("{text:?} is not a valid date-time"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = ferry_model::calendar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil (its inverse is `ferry_model::calendar::civil_from_days`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    }
}
