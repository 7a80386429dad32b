//! ObjectId-like identifiers and RFC 3339 timestamps, without extra dependencies.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

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
    }
}
