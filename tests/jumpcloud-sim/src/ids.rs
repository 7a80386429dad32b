//! ObjectId-like identifiers and RFC 3339 timestamps, without extra dependencies.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats an ObjectId the way MongoDB (and so JumpCloud) lays it out: 4 bytes of creation time,
/// 5 bytes that identify the creator, 3 bytes of counter. Sorting ids then sorts by creation time,
/// which is what real JumpCloud ids do.
pub(crate) fn object_id(unix_secs: u32, creator: u64, counter: u32) -> String {
    format!("{unix_secs:08x}{:010x}{:06x}", creator & 0xff_ffff_ffff, counter & 0xff_ffff)
}

/// A fresh id for objects made at run time (builders, tests). Unique within the process: the
/// counter never repeats within a second for fewer than 16M ids, and the creator part differs
/// between processes.
pub fn new_object_id() -> String {
    static CREATOR: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let creator = *CREATOR.get_or_init(|| {
        // No OS entropy source is compiled in (rand without `os_rng`): the clock's nanoseconds
        // mixed with the pid are distinct enough between processes.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default();
        splitmix64(nanos ^ (u64::from(std::process::id()) << 32))
    });
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    object_id(now_secs() as u32, creator, counter)
}

/// True for a 24-character lowercase or uppercase hex string.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SS.000Z`, the form JumpCloud uses for `created`.
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z", secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`: an instant in milliseconds since the Unix epoch, as Directory
/// Insights stamps its events.
pub(crate) fn rfc3339_millis(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", secs / 3600, secs / 60 % 60, secs % 60, ms_of_day % 1000)
}

/// The same, for a [`SystemTime`] (to the millisecond, rounded down).
pub fn format_rfc3339_millis(time: SystemTime) -> String {
    rfc3339_millis(to_millis(time, false))
}

/// Milliseconds since the Unix epoch (negative before it), rounded down or up.
pub(crate) fn to_millis(time: SystemTime, round_up: bool) -> i64 {
    let (before, d) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (false, d),
        Err(e) => (true, e.duration()),
    };
    let whole = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let exact = d.subsec_nanos() % 1_000_000 == 0;
    match (before, exact) {
        (_, true) => {
            if before {
                -whole
            } else {
                whole
            }
        }
        (false, false) => whole + i64::from(round_up),
        (true, false) => -whole - i64::from(!round_up),
    }
}

pub(crate) fn from_millis(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Reads an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS`, optional fraction (any number of digits),
/// then `Z` or `±HH:MM`. Directory Insights also takes it without an offset, as UTC; `t`, `z` and a
/// space for `T` are accepted, as RFC 3339 allows.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 date-time (like 2020-01-01T14:00:00Z)");
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(range).ok_or_else(bad)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return Err(bad());
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    // A leap second (:60) is read as the last instant of its minute's 59th second.
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos += u32::from(b[i] - b'0') * 10u32.pow(8 - (i - start) as u32);
            }
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let secs = h * 3600 + m * 60;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        Some(_) => return Err(bad()),
    };
    let (second, nanos) = if second == 60 { (59, 999_999_999) } else { (second, nanos) };
    let secs =
        days_from_civil(year, month as u32, day as u32) * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let whole = if secs >= 0 { UNIX_EPOCH + magnitude } else { UNIX_EPOCH - magnitude };
    Ok(whole + Duration::from_nanos(nanos.into()))
}

/// Howard Hinnant's civil-to-days algorithm: days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A cheap, well-mixing hash for seeds.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_have_the_mongodb_shape_and_are_unique() {
        let a = new_object_id();
        let b = new_object_id();
        assert!(is_object_id(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(object_id(1, 2, 3), "000000010000000002000003");
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    fn ms(text: &str) -> i64 {
        to_millis(parse_rfc3339(text).unwrap(), false)
    }

    #[test]
    fn rfc3339_parses_what_directory_insights_takes() {
        assert_eq!(ms("2023-11-14T22:13:20Z"), 1_700_000_000_000);
        assert_eq!(ms("2023-11-14T22:13:20.123Z"), 1_700_000_000_123);
        assert_eq!(ms("2023-11-14t22:13:20.1234567z"), 1_700_000_000_123);
        assert_eq!(ms("2023-11-14T22:13:20"), 1_700_000_000_000, "no offset: UTC");
        assert_eq!(ms("2023-11-15T00:13:20+02:00"), 1_700_000_000_000);
        assert_eq!(ms("2023-11-14T20:13:20.5-02:00"), 1_700_000_000_500);
        assert_eq!(ms("2000-02-29T00:00:00Z"), 951_782_400_000);
        assert_eq!(ms("1969-12-31T23:59:59.999Z"), -1);
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20Zx",
            "1700000000",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?}");
        }
        let t = parse_rfc3339("2023-11-14T22:13:20.0001Z").unwrap();
        assert_eq!((to_millis(t, false), to_millis(t, true)), (1_700_000_000_000, 1_700_000_000_001));
        let t = parse_rfc3339("1969-12-31T23:59:59.9991Z").unwrap();
        assert_eq!((to_millis(t, false), to_millis(t, true)), (-1, 0));
        assert_eq!(from_millis(-1), UNIX_EPOCH - Duration::from_millis(1));
        assert_eq!(format_rfc3339_millis(from_millis(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
    }
}
