//! How a scheduled invocation (an expiry, the sweep, the sync schedule) fails: as a Lambda
//! `Diagnostic` whose `errorType` says whether delivering the same event again can help. The
//! runtime reports it; the schedule's retry policy and the alarms act on it.

use crate::domain::revoke::RevokeError;
use lambda_http::lambda_runtime::Diagnostic;

/// Delivering the event again may succeed (JumpCloud or AWS failed for now).
pub const RETRYABLE: &str = "Retryable";
/// No delivery of this event can succeed (it is malformed, or names nothing that exists).
pub const NON_RETRYABLE: &str = "NonRetryable";

pub fn retryable(message: impl Into<String>) -> Diagnostic {
    Diagnostic { error_type: RETRYABLE.to_owned(), error_message: message.into() }
}

pub fn non_retryable(message: impl Into<String>) -> Diagnostic {
    Diagnostic { error_type: NON_RETRYABLE.to_owned(), error_message: message.into() }
}

impl From<&RevokeError> for Diagnostic {
    fn from(error: &RevokeError) -> Self {
        match error {
            // The grant does not exist: no delivery can end it.
            RevokeError::NotFound(_) => non_retryable(error.to_string()),
            _ => retryable(error.to_string()),
        }
    }
}

/// Whether a diagnostic asks for another delivery.
pub fn is_retryable(diagnostic: &Diagnostic) -> bool {
    diagnostic.error_type == RETRYABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_grant_is_not_worth_another_delivery() {
        assert!(!is_retryable(&Diagnostic::from(&RevokeError::NotFound("g".into()))));
        assert!(is_retryable(&Diagnostic::from(&RevokeError::Busy)));
        assert!(is_retryable(&Diagnostic::from(&RevokeError::UnknownIntegration("corp".into()))));
    }
}
