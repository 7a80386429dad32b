//! A grant's one-time schedules (EventBridge Scheduler): names, expressions and the input the
//! `revoke` function receives.

use super::{Grant, GrantStatus};
use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiryAction {
    Expire,
    /// Publish `Grant Expiring Soon` if the grant is still active and not extended past it.
    Remind,
}

/// The input of a grant's one-time expiry schedule, as the `revoke` function receives it:
/// `{"action":"expire","grant_id":"<uuid>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryInput {
    pub action: ExpiryAction,
    pub grant_id: String,
}

impl ExpiryInput {
    pub fn expire(grant_id: &str) -> Self {
        Self { action: ExpiryAction::Expire, grant_id: grant_id.to_owned() }
    }
    pub fn remind(grant_id: &str) -> Self {
        Self { action: ExpiryAction::Remind, grant_id: grant_id.to_owned() }
    }
}

/// The schedule of a grant's `Grant Expiring Soon` reminder.
pub fn reminder_schedule_name(grant_id: &str) -> String {
    format!("jit-remind-{grant_id}")
}

/// The schedule's name (unique per grant, at most 64 characters as Scheduler requires).
pub fn expiry_schedule_name(grant_id: &str) -> String {
    format!("jit-expire-{grant_id}")
}

/// The schedule that ends a request at its approval timeout: another name than the grant's
/// expiry schedule, which its activation creates while this one may still exist.
pub fn request_schedule_name(grant_id: &str) -> String {
    format!("jit-request-{grant_id}")
}

/// The one-time schedule a grant (or request) needs now: at [`Grant::expiry`].
pub fn schedule_name_for(grant: &Grant) -> String {
    if grant.status == GrantStatus::PendingApproval {
        request_schedule_name(&grant.id)
    } else {
        expiry_schedule_name(&grant.id)
    }
}

/// The one-time schedule expression, `at(yyyy-mm-ddThh:mm:ss)` to be read in UTC (the schedule's
/// timezone must be `UTC`). Rounded up to the second, so that it never fires before the expiry.
pub fn expiry_schedule_expression(expires_at: DateTime<Utc>) -> String {
    let at = if expires_at.nanosecond() == 0 {
        expires_at
    } else {
        expires_at.with_nanosecond(0).expect("valid") + chrono::Duration::seconds(1)
    };
    format!("at({})", at.format("%Y-%m-%dT%H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expiry_input_has_the_documented_shape() {
        let input = ExpiryInput::expire("abc");
        assert_eq!(serde_json::to_string(&input).unwrap(), r#"{"action":"expire","grant_id":"abc"}"#);
        let parsed: ExpiryInput = serde_json::from_str(r#"{"action":"expire","grant_id":"abc"}"#).unwrap();
        assert_eq!(parsed, input);
        assert!(expiry_schedule_name("0b7c1e9e-4a8e-4bd6-9a8c-2b1f1c7a1d11").len() <= 64);
    }

    #[test]
    fn schedule_expression_is_utc_and_never_early() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).unwrap();
        assert_eq!(expiry_schedule_expression(at), "at(2026-11-23T14:00:00)");
        let fractional = at + chrono::Duration::milliseconds(1);
        assert_eq!(expiry_schedule_expression(fractional), "at(2026-11-23T14:00:01)");
    }
}
