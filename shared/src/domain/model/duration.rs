//! Durations as people and ISO 8601 write them: `90m`, `2h`, `1h30m`, `45s`, `1d`, `PT2H`, `PT1H30M`.
//! Requests and configuration share this one parser.

use std::{fmt, str::FromStr, time::Duration};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 90m, 2h, 1h30m, PT2H)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// A parsed, positive duration with whole-second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantDuration(Duration);

impl GrantDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
    pub fn as_std(&self) -> Duration {
        self.0
    }
    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
    pub fn to_chrono(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.0.as_secs() as i64)
    }
}

impl fmt::Display for GrantDuration {
    /// Shortest human form: `2h`, `90m`, `1h30m`, `45s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

/// As its human form (`"2h"`): grants record their duration so.
impl serde::Serialize for GrantDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GrantDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for GrantDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse(input).map(Self)
    }
}

/// Upper bound on any duration we accept (a year), so arithmetic on timestamps never overflows.
const MAX_SECS: u64 = 366 * 86_400;

pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: input.chars().take(40).collect(), reason };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(err("empty"));
    }
    let upper = trimmed.to_ascii_uppercase();
    let secs = if let Some(iso) = upper.strip_prefix('P') {
        parse_iso(iso).ok_or_else(|| err("not an ISO 8601 duration"))?
    } else {
        parse_units(&trimmed.to_ascii_lowercase()).ok_or_else(|| err("not a duration"))?
    };
    if secs == 0 {
        return Err(err("must be positive"));
    }
    if secs > MAX_SECS {
        return Err(err("longer than a year"));
    }
    Ok(Duration::from_secs(secs))
}

/// `1h30m`, `90m`, `2h`, `1d`: each unit at most once, largest first.
fn parse_units(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut last_rank = usize::MAX;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (rank, size) = match c {
            'd' => (3, 86_400),
            'h' => (2, 3_600),
            'm' => (1, 60),
            's' => (0, 1),
            _ => return None,
        };
        if number.is_empty() || number.len() > 9 || rank >= last_rank {
            return None;
        }
        last_rank = rank;
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(size)?)?;
        number.clear();
    }
    number.is_empty().then_some(total).filter(|_| last_rank != usize::MAX)
}

/// The part after `P`: `T2H`, `T1H30M`, `1D`, `1DT2H`. Years and months are refused: their length varies.
fn parse_iso(s: &str) -> Option<u64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (s, None),
    };
    let mut total = 0u64;
    if !date.is_empty() {
        let days = date.strip_suffix('D')?;
        total += days.parse::<u64>().ok()?.checked_mul(86_400)?;
    }
    if let Some(time) = time {
        total = total.checked_add(parse_units(&time.to_ascii_lowercase())?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        s.parse::<GrantDuration>().unwrap().as_secs()
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(secs("90m"), 5_400);
        assert_eq!(secs("2h"), 7_200);
        assert_eq!(secs("PT2H"), 7_200);
        assert_eq!(secs("pt2h"), 7_200);
        assert_eq!(secs("1h30m"), 5_400);
        assert_eq!(secs("PT1H30M"), 5_400);
        assert_eq!(secs("1m"), 60);
        assert_eq!(secs("12h"), 43_200);
        assert_eq!(secs("PT12H"), 43_200);
        assert_eq!(secs("1d"), 86_400);
        assert_eq!(secs("P1DT1H"), 90_000);
        assert_eq!(secs(" 45s "), 45);
    }

    #[test]
    fn refuses_what_is_not_a_positive_duration() {
        for bad in [
            "",
            "0m",
            "2",
            "h",
            "2x",
            "-1h",
            "2h2h",
            "30m1h",
            "P",
            "PT",
            "P1M",
            "P1Y",
            "1.5h",
            "PT-1H",
            "9999999999h",
            "400d",
        ] {
            assert!(bad.parse::<GrantDuration>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn error_names_the_input_and_gives_examples() {
        let e = "soon".parse::<GrantDuration>().unwrap_err().to_string();
        assert!(e.contains("\"soon\"") && e.contains("90m"), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["2h", "90m", "1h30m", "45s", "1d2h"] {
            let d: GrantDuration = s.parse().unwrap();
            let again: GrantDuration = d.to_string().parse().unwrap();
            assert_eq!(d, again);
        }
        assert_eq!(GrantDuration::from_secs(5_400).to_string(), "1h30m");
    }
}
