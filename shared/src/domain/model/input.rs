//! Request fields, parsed once at the edge into types that can only hold a valid value ("parse,
//! don't validate"): the domain takes these and never checks them again. Each type has one rule;
//! a refusal names the field and that rule.

use std::fmt;

/// The longest name or id accepted, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Characters free text (a reason, a comment) may not hold: control characters (line breaks and
/// tabs aside) and the bidirectional formatting characters that make text display otherwise than
/// it reads ("Trojan Source": an approver would approve what they did not see).
pub fn is_unsafe_text_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A request field that broke its type's rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` must be {rule}")]
pub struct InvalidField {
    pub field: &'static str,
    pub rule: &'static str,
}

/// A user (email, username or id), group (name or id) or integration as a request names it:
/// trimmed, 1 to 256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        let value = value.trim();
        let unsafe_char = |c: char| c.is_control() || is_unsafe_text_char(c);
        if value.is_empty() || value.chars().count() > MAX_NAME_CHARS || value.chars().any(unsafe_char) {
            return Err(InvalidField { field, rule: "1 to 256 printable characters" });
        }
        Ok(Self(value.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters (no spaces, no controls), so
/// that it is safe in a store key and a log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const FIELD: &'static str = "Idempotency-Key";

    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY_CHARS || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidField { field: Self::FIELD, rule: "1 to 255 visible ASCII characters" });
        }
        Ok(Self(value.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tests write names as literals; an invalid one is a bug in the test.
#[cfg(any(test, feature = "testing"))]
impl From<&str> for Name {
    fn from(value: &str) -> Self {
        Self::parse("name", value).unwrap_or_else(|e| panic!("{value:?} in a test: {e}"))
    }
}

#[cfg(any(test, feature = "testing"))]
impl From<&str> for IdempotencyKey {
    fn from(value: &str) -> Self {
        Self::parse(value).unwrap_or_else(|e| panic!("{value:?} in a test: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_and_printable() {
        assert_eq!(Name::parse("user", "  alice@corp.com ").unwrap().as_str(), "alice@corp.com");
        for bad in ["", "   ", "a\nb", "tab\there", &"x".repeat(257)] {
            let err = Name::parse("user", bad).unwrap_err();
            assert_eq!(err.to_string(), "`user` must be 1 to 256 printable characters", "{bad:?}");
        }
        assert!(Name::parse("group", &"é".repeat(256)).is_ok(), "characters, not bytes");
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("req-42_a.b").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in ["", "a b", "a\nb", "é", &"k".repeat(256)] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(err.to_string(), "`Idempotency-Key` must be 1 to 255 visible ASCII characters", "{bad:?}");
        }
    }
}
