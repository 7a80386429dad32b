//! Step 1 of a grant: the request checked on its own, before any I/O.

use super::{GrantError, GrantPolicy, GrantRequest, MAX_REASON_CHARS};
use crate::domain::{
    identity::PrincipalUser,
    model::{content_hash, GrantDuration, Name},
};

/// A request that passed the checks that need no I/O.
pub(super) struct CheckedRequest {
    pub(super) user: Option<String>,
    pub(super) group: String,
    pub(super) duration: GrantDuration,
    pub(super) reason: String,
    pub(super) integration: Option<String>,
    pub(super) requested_by: String,
    pub(super) caller_users: Vec<PrincipalUser>,
    pub(super) caller_admin: bool,
    pub(super) break_glass: bool,
    /// Scoped to the caller.
    pub(super) idempotency_key: Option<String>,
}

impl CheckedRequest {
    /// Identifies the request's content (the caller is part of the key, not of the content).
    pub(super) fn hash(&self) -> String {
        let content =
            (&self.user, &self.group, self.duration.as_secs(), &self.reason, &self.integration, self.break_glass);
        format!("{:016x}", content_hash(&content))
    }
}

/// Step 1's checks of the request itself (its names and key were parsed at the edge).
pub(super) fn check_request(request: &GrantRequest, policy: &GrantPolicy) -> Result<CheckedRequest, GrantError> {
    let invalid = |m: &str| Err(GrantError::InvalidRequest(m.to_owned()));
    let reason = request.reason.trim();
    if reason.is_empty() {
        return invalid("reason must not be empty");
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(GrantError::InvalidRequest(format!("reason is longer than {MAX_REASON_CHARS} characters")));
    }
    if reason.chars().any(crate::domain::model::is_unsafe_text_char) {
        return invalid("reason contains control or bidirectional-formatting characters");
    }
    let requested_by = request.requested_by.trim();
    if requested_by.is_empty() {
        return invalid("the caller's identity is missing");
    }
    if request.duration < policy.min_duration || request.duration > policy.max_duration {
        return Err(GrantError::DurationOutOfRange {
            requested: request.duration,
            min: policy.min_duration,
            max: policy.max_duration,
        });
    }
    Ok(CheckedRequest {
        user: request.user.as_ref().map(Name::to_string),
        group: request.group.to_string(),
        duration: request.duration,
        reason: reason.to_owned(),
        integration: request.integration.as_ref().map(Name::to_string),
        requested_by: requested_by.to_owned(),
        caller_users: request.caller_users.clone(),
        caller_admin: request.caller_admin,
        break_glass: request.break_glass,
        // Scoped to the caller: two callers' keys never collide.
        idempotency_key: request.idempotency_key.as_ref().map(|key| format!("{requested_by}#{}", key.as_str())),
    })
}
