//! Slack's request signatures ("Verifying requests from Slack",
//! <https://api.slack.com/authentication/verifying-requests-from-slack>): every request Slack sends
//! carries `X-Slack-Request-Timestamp` (Unix seconds) and `X-Slack-Signature` =
//! `v0=` + hex(HMAC-SHA256(signing secret, `v0:{timestamp}:{raw body}`)). A request is Slack's when
//! the signature recomputed over its raw body matches, compared in constant time, and its
//! timestamp is within five minutes of now (either way): a request captured once cannot be
//! replayed later, nor its body with another timestamp (the timestamp is signed).
//!
//! Nothing here reads the body before the signature holds.

use crate::credentials::SlackSigningSecret;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signature's version: Slack's only one.
pub const VERSION: &str = "v0";
/// How far a request's timestamp may be from now, either way.
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";

/// Why a request is not taken as Slack's. Never carries the secret, the signature or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Slack-Request-Timestamp header")]
    MissingTimestamp,
    #[error("no X-Slack-Signature header")]
    MissingSignature,
    #[error("X-Slack-Request-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    /// Older than the window: a replay, or a request held back.
    #[error("the request was signed {0} s ago, more than {MAX_SKEW_SECONDS} s")]
    Stale(i64),
    /// Ahead of now by more than the window.
    #[error("the request is dated {0} s in the future, more than {MAX_SKEW_SECONDS} s")]
    Future(i64),
    /// Not `v0=` and 64 hex digits, or not the HMAC of this timestamp and body.
    #[error("the signature does not match the request")]
    Mismatch,
}

/// Checks a request's signature headers against its raw body, as of `now`.
pub fn verify(
    secret: &SlackSigningSecret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.map(str::trim).filter(|t| !t.is_empty()).ok_or(SignatureError::MissingTimestamp)?;
    let signature = signature.map(str::trim).filter(|s| !s.is_empty()).ok_or(SignatureError::MissingSignature)?;
    // Digits only: the timestamp is signed as sent, so "+17..." or " 17..." must not pass as a number.
    if timestamp.len() > 12 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    let sent: i64 = timestamp.parse().map_err(|_| SignatureError::BadTimestamp)?;
    let age = now.timestamp() - sent;
    if age > MAX_SKEW_SECONDS {
        return Err(SignatureError::Stale(age));
    }
    if -age > MAX_SKEW_SECONDS {
        return Err(SignatureError::Future(-age));
    }
    let expected = signature
        .strip_prefix(VERSION)
        .and_then(|rest| rest.strip_prefix('='))
        .and_then(decode_hex)
        .ok_or(SignatureError::Mismatch)?;
    let mut mac = keyed(secret);
    mac.update(format!("{VERSION}:{timestamp}:").as_bytes());
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Slack-Signature` Slack would send for `body` at `timestamp` (for tests and tools).
pub fn sign(secret: &SlackSigningSecret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = keyed(secret);
    mac.update(format!("{VERSION}:{timestamp}:").as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("{VERSION}={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn keyed(secret: &SlackSigningSecret) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key length")
}

/// 32 bytes from 64 hex digits (either case), else `None`.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    text.as_bytes().chunks(2).map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Slack's worked example in "Verifying requests from Slack": this secret, timestamp and body
    /// give this signature.
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn secret() -> SlackSigningSecret {
        SlackSigningSecret::new(DOC_SECRET)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    fn doc_time() -> i64 {
        DOC_TIMESTAMP.parse().unwrap()
    }

    #[test]
    fn slacks_documented_example_verifies() {
        assert_eq!(sign(&secret(), doc_time(), DOC_BODY.as_bytes()), DOC_SIGNATURE);
        let check = |now| verify(&secret(), Some(DOC_TIMESTAMP), Some(DOC_SIGNATURE), DOC_BODY.as_bytes(), now);
        assert_eq!(check(at(doc_time() + 10)), Ok(()));
        // Upper-case hex is the same signature.
        let upper = format!("v0={}", DOC_SIGNATURE[3..].to_uppercase());
        assert_eq!(verify(&secret(), Some(DOC_TIMESTAMP), Some(&upper), DOC_BODY.as_bytes(), at(doc_time())), Ok(()));
    }

    #[test]
    fn the_window_is_five_minutes_either_way() {
        let check = |now| verify(&secret(), Some(DOC_TIMESTAMP), Some(DOC_SIGNATURE), DOC_BODY.as_bytes(), now);
        assert_eq!(check(at(doc_time() + 300)), Ok(()));
        assert_eq!(check(at(doc_time() - 300)), Ok(()));
        assert_eq!(check(at(doc_time() + 301)), Err(SignatureError::Stale(301)));
        assert_eq!(check(at(doc_time() - 301)), Err(SignatureError::Future(301)));
    }

    #[test]
    fn a_wrong_secret_another_body_or_timestamp_or_a_malformed_signature_is_a_mismatch() {
        let now = at(doc_time());
        let body = DOC_BODY.as_bytes();
        let wrong = SlackSigningSecret::new("another-apps-signing-secret");
        assert_eq!(verify(&wrong, Some(DOC_TIMESTAMP), Some(DOC_SIGNATURE), body, now), Err(SignatureError::Mismatch));
        let edited = DOC_BODY.replace("roadrunner", "coyote");
        let edited = edited.as_bytes();
        assert_eq!(
            verify(&secret(), Some(DOC_TIMESTAMP), Some(DOC_SIGNATURE), edited, now),
            Err(SignatureError::Mismatch)
        );
        // The same body and signature replayed with a fresh timestamp: the timestamp is signed.
        let later = (doc_time() + 600).to_string();
        assert_eq!(
            verify(&secret(), Some(&later), Some(DOC_SIGNATURE), body, at(doc_time() + 600)),
            Err(SignatureError::Mismatch)
        );
        for malformed in
            ["v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "v0=abc", "a2114d57", "v0=zz"]
        {
            assert_eq!(
                verify(&secret(), Some(DOC_TIMESTAMP), Some(malformed), body, now),
                Err(SignatureError::Mismatch),
                "{malformed}"
            );
        }
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        let now = at(doc_time());
        let body = DOC_BODY.as_bytes();
        assert_eq!(verify(&secret(), None, Some(DOC_SIGNATURE), body, now), Err(SignatureError::MissingTimestamp));
        assert_eq!(verify(&secret(), Some(" "), Some(DOC_SIGNATURE), body, now), Err(SignatureError::MissingTimestamp));
        assert_eq!(verify(&secret(), Some(DOC_TIMESTAMP), None, body, now), Err(SignatureError::MissingSignature));
        for bad in ["+1531420618", "1531420618.5", "-1", "soon", "99999999999999999999"] {
            assert_eq!(
                verify(&secret(), Some(bad), Some(DOC_SIGNATURE), body, now),
                Err(SignatureError::BadTimestamp),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_never_show_the_secret_or_the_signature() {
        let err = verify(&secret(), Some(DOC_TIMESTAMP), Some(DOC_SIGNATURE), b"x", at(doc_time())).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(DOC_SECRET) && !shown.contains(&DOC_SIGNATURE[3..]), "{shown}");
    }
}
