//! Grants as the product stores and shows them: the grant itself and the membership lease that
//! overlapping grants share (audit trail: `audit.rs`; events: `events.rs`; schedules:
//! `schedules.rs`).
//!
//! The lifecycle (see `domain::grant`, `domain::request` and `domain::revoke`):
//! `pending_approval` (a request: no membership, never) -> `denied` | `cancelled` |
//! `request_expired`, or at its last approval -> `pending`;
//! `pending` (recorded, JumpCloud not yet asked) -> `active` (member) -> `expired` | `revoked`;
//! `pending` -> `failed` (JumpCloud refused or failed). A grant is in the sweep's index from
//! the moment it is recorded until it is settled (a request: due at its `request_expires_at`),
//! so that no outcome depends on one delivery.

use super::GrantDuration;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Actors recorded when the product itself acts (humans are recorded by their identity).
pub const ACTOR_SCHEDULE: &str = "system:schedule";
pub const ACTOR_SWEEP: &str = "system:sweep";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantStatus {
    /// A request awaiting its approvals: nothing in JumpCloud.
    #[serde(rename = "pending_approval")]
    PendingApproval,
    /// Recorded; the membership may or may not have been added yet.
    Pending,
    Active,
    Expired,
    Revoked,
    Failed,
    /// A request an approver denied.
    Denied,
    /// A request its requester (or an admin) withdrew.
    Cancelled,
    /// A request not decided within its rule's approval timeout.
    #[serde(rename = "request_expired")]
    RequestExpired,
}

/// Every status, for listings and messages.
pub const GRANT_STATUSES: [GrantStatus; 9] = [
    GrantStatus::PendingApproval,
    GrantStatus::Pending,
    GrantStatus::Active,
    GrantStatus::Expired,
    GrantStatus::Revoked,
    GrantStatus::Failed,
    GrantStatus::Denied,
    GrantStatus::Cancelled,
    GrantStatus::RequestExpired,
];

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::RequestExpired => "request_expired",
        }
    }
    /// Expired and revoked grants and ended requests never change again (a failed one may still
    /// have a stray membership to clean up: see [`Grant`]).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Expired | Self::Revoked | Self::Denied | Self::Cancelled | Self::RequestExpired)
    }
    /// A request that ended without ever being approved.
    pub fn is_ended_request(self) -> bool {
        matches!(self, Self::Denied | Self::Cancelled | Self::RequestExpired)
    }
}

impl std::str::FromStr for GrantStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        GRANT_STATUSES.into_iter().find(|status| status.as_str() == wanted).ok_or_else(|| {
            let known: Vec<&str> = GRANT_STATUSES.iter().map(|s| s.as_str()).collect();
            format!("unknown grant status {wanted:?} ({})", known.join(", "))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantUser {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantGroup {
    pub id: String,
    pub name: String,
}

/// A revocation that was asked for but could not be carried out (JumpCloud failed): the sweep
/// finishes it as soon as it can, instead of waiting for the grant's expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRequest {
    pub at: DateTime<Utc>,
    pub by: String,
}

/// How a grant came to be allowed (invariant 7: recorded and published as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// An admin granted it on their own say.
    Admin,
    /// Short enough for the rule's `auto_approve_up_to`.
    AutoApproved,
    /// The requester invoked the rule's break glass.
    BreakGlass,
    /// `approvals_required` distinct approvers of the rule approve it (or are to).
    Approvers,
}

/// One approver's approval of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approver's email.
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An extension asked for and awaiting its approvals (`POST /grants/{id}/extend`): approve and
/// deny act on it while the grant stays active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingExtension {
    pub duration: GrantDuration,
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
    pub approvals_required: u32,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    pub approvers: Vec<String>,
    /// Not approved by then: it lapses (a new extension may be asked for).
    pub request_expires_at: DateTime<Utc>,
}

/// An extension applied: `expires_at` moved by `duration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub duration: GrantDuration,
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The policy version and rule that decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub version: u64,
    /// The rule's position in the document (0-based).
    pub rule: usize,
}

/// One grant. Times are RFC 3339 UTC in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// A UUID v4.
    pub id: String,
    pub integration: String,
    pub user: GrantUser,
    pub group: GrantGroup,
    pub status: GrantStatus,
    pub requested_at: DateTime<Utc>,
    /// Activation: the clock of the grant starts then. `None` while the request awaits approval
    /// (and for good when it ends unapproved).
    pub granted_at: Option<DateTime<Utc>>,
    /// `granted_at` + `duration` (plus extensions); `None` while awaiting approval.
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// As requested.
    pub duration: GrantDuration,
    pub requested_by: String,
    /// The JumpCloud user behind the caller; `None` for an admin principal without one.
    #[serde(default)]
    pub requester: Option<GrantUser>,
    pub reason: String,
    #[serde(default)]
    pub break_glass: bool,
    pub approval: ApprovalMode,
    /// Distinct approvals a request needs (0 when it needed none).
    #[serde(default)]
    pub approvals_required: u32,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// The emails that may approve the request (resolved when it was made).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// A request not decided by then ends `request_expired`.
    #[serde(default)]
    pub request_expires_at: Option<DateTime<Utc>>,
    /// Who denied or cancelled the request.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// The policy version and rule that decided it; `None` for an admin's grant.
    #[serde(default)]
    pub policy: Option<PolicyRef>,
    /// Bumped by every change of a request or an extension: those changes, and a grant's end,
    /// are conditioned on the revision read.
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub pending_extension: Option<PendingExtension>,
    #[serde(default)]
    pub extensions: Vec<Extension>,
    /// Publish `Grant Expiring Soon` this long before the expiry (the rule's `remind_before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind_before: Option<GrantDuration>,
    /// What its end did to the membership (reconciliation tells a membership the product
    /// removed and someone restored from one whose removal never happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_end: Option<MembershipEnd>,
    /// The user was a standing member before the grant: its end leaves the membership alone.
    pub preexisting_membership: bool,
    /// Sync found the membership gone while the grant was active (removed outside the product).
    #[serde(default)]
    pub membership_missing: bool,
    /// The one-time expiry schedule, when it could be created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_requested: Option<RevocationRequest>,
    /// The secret and JumpCloud organization the grant was made through: its membership is
    /// removed through the same, never through another secret that claims the integration's name
    /// since. `None` on grants made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IntegrationSource>,
}

/// Where an integration's grants were made: the ARN of its secret (never its value) and the
/// organization its key acts in (`x-org-id`; `None` for a single-organization key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationSource {
    pub secret_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

impl Grant {
    /// When the sweep must look at it: a request at its `request_expires_at`, a grant at its
    /// expiry.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.status {
            GrantStatus::PendingApproval => self.request_expires_at,
            _ => self.expires_at,
        }
    }

    /// When it ends by itself: a grant at its expiry, a request awaiting approval at its
    /// approval timeout.
    pub fn expiry(&self) -> DateTime<Utc> {
        self.expires_at.or(self.request_expires_at).unwrap_or(self.requested_at)
    }

    pub fn lease_key(&self) -> LeaseKey {
        LeaseKey {
            integration: self.integration.clone(),
            group_id: self.group.id.clone(),
            user_id: self.user.id.clone(),
        }
    }

    /// The status this grant takes when it is settled as `end` (the store's `end`): a failed
    /// grant stays failed. `Err` says why it cannot be: it is settled already (expired or
    /// revoked, or failed and out of the sweep's index: cleaned up), or `end` is no end state.
    /// One decision for every store, so that the DynamoDB adapter and the in-memory double agree.
    pub fn settled_status(&self, end: GrantStatus, in_sweep_index: bool) -> Result<GrantStatus, String> {
        let open = match self.status {
            GrantStatus::Pending | GrantStatus::Active => true,
            GrantStatus::Failed => in_sweep_index,
            // A request never held a membership: `domain::request` ends it, not `end`.
            GrantStatus::PendingApproval
            | GrantStatus::Expired
            | GrantStatus::Revoked
            | GrantStatus::Denied
            | GrantStatus::Cancelled
            | GrantStatus::RequestExpired => false,
        };
        if !open {
            return Err(format!("grant {} is settled already", self.id));
        }
        if !matches!(end, GrantStatus::Expired | GrantStatus::Revoked | GrantStatus::Failed) {
            return Err(format!("{} is not an end state", end.as_str()));
        }
        Ok(if self.status == GrantStatus::Failed { GrantStatus::Failed } else { end })
    }
}

/// A grant for tests: active, granted 2026-11-23 12:00 UTC for two hours.
#[cfg(any(test, feature = "testing"))]
pub fn sample_grant() -> Grant {
    use chrono::TimeZone;
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    Grant {
        id: "0b7c1e9e-4a8e-4bd6-9a8c-2b1f1c7a1d11".into(),
        integration: "corp".into(),
        user: GrantUser { id: "u1".into(), email: "alice@corp.com".into() },
        group: GrantGroup { id: "g1".into(), name: "prod-db-admins".into() },
        status: GrantStatus::Active,
        requested_at: at,
        granted_at: Some(at),
        expires_at: Some(at + chrono::Duration::hours(2)),
        ended_at: None,
        duration: GrantDuration::from_secs(7200),
        requested_by: "arn:aws:iam::123456789012:user/admin".into(),
        reason: "incident 42".into(),
        break_glass: false,
        approval: ApprovalMode::Admin,
        approvals_required: 0,
        approvals: Vec::new(),
        approvers: Vec::new(),
        request_expires_at: None,
        decided_by: None,
        policy: None,
        revision: 0,
        pending_extension: None,
        extensions: Vec::new(),
        remind_before: None,
        membership_end: None,
        preexisting_membership: false,
        membership_missing: false,
        schedule_name: None,
        requester: None,
        revocation_requested: None,
        source: None,
    }
}

/// One membership (a user in a group of an integration): the unit overlapping grants share.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseKey {
    pub integration: String,
    pub group_id: String,
    pub user_id: String,
}

/// Who holds a membership, and a short lock that serializes the changes to it.
///
/// `holders` are the grants that still count on the membership: pending and active ones, and
/// failed ones whose add may have been applied and whose clean-up is outstanding. The membership
/// is removed only by the last holder, and never when `preexisting`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holders: BTreeSet<String>,
    /// The user was a member before any of the holders (JumpCloud answered 409 to the first add).
    pub preexisting: bool,
    pub lock: Option<LeaseLock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseLock {
    pub owner: String,
    /// The lock lapses then even if its owner never releases it (a crashed function). Must be
    /// longer than any function's timeout.
    pub until: DateTime<Utc>,
}

/// A lease locked by `owner`: every store operation that changes the lease names it, and fails
/// if the lock has meanwhile passed to someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHold {
    pub key: LeaseKey,
    pub owner: String,
}

/// Why a grant ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// Someone asked (`DELETE /grants/{id}`).
    Revoked,
    /// Its time is up (the expiry schedule or the sweep).
    Expired,
}

impl EndReason {
    pub fn status(self) -> GrantStatus {
        match self {
            Self::Revoked => GrantStatus::Revoked,
            Self::Expired => GrantStatus::Expired,
        }
    }
}

/// What happened to the membership when a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipEnd {
    Removed,
    /// JumpCloud answered 404: it was gone already.
    AlreadyRemoved,
    KeptPreexisting,
    KeptForOtherGrants,
}

impl MembershipEnd {
    pub fn removed(self) -> bool {
        matches!(self, Self::Removed | Self::AlreadyRemoved)
    }
}

// ---------------------------------------------------------------------------------------------
// Queries and idempotency

/// `GET /grants` filters (ids already resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub status: Option<GrantStatus>,
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub integration: Option<String>,
}

impl GrantFilter {
    pub fn matches(&self, grant: &Grant) -> bool {
        self.status.is_none_or(|s| s == grant.status)
            && self.user_id.as_ref().is_none_or(|u| *u == grant.user.id)
            && self.group_id.as_ref().is_none_or(|g| *g == grant.group.id)
            && self.integration.as_ref().is_none_or(|i| *i == grant.integration)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GrantPage {
    pub grants: Vec<Grant>,
    /// An opaque token for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// A claim on an idempotency key (Powertools' record design, on a conditional write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Scoped to the caller: `<requested_by>#<Idempotency-Key>`.
    pub key: String,
    /// Identifies the request's content: a retry must send the same one.
    pub request_hash: String,
    pub now: DateTime<Utc>,
    /// The record's end of life (the table's TTL attribute).
    pub expires_at: DateTime<Utc>,
    /// An in-progress claim older than this belongs to a request that died: it may be taken over.
    pub in_progress_until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// Claimed by this request: go ahead.
    New,
    /// Another request with this key is running.
    InProgress,
    /// Done before: this grant.
    Completed(String),
    /// The key was used for a different request.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_json_has_the_documented_fields_in_rfc3339_utc() {
        let json = serde_json::to_value(sample_grant()).unwrap();
        for field in [
            "id",
            "integration",
            "user",
            "group",
            "status",
            "granted_at",
            "expires_at",
            "ended_at",
            "requested_by",
            "requester",
            "reason",
            "preexisting_membership",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert_eq!(json["status"], "active");
        assert_eq!(json["granted_at"], "2026-11-23T12:00:00Z");
        assert_eq!(json["expires_at"], "2026-11-23T14:00:00Z");
        assert!(json["ended_at"].is_null());
        assert_eq!(json["user"]["email"], "alice@corp.com");
        assert_eq!(json["group"]["name"], "prod-db-admins");
        let back: Grant = serde_json::from_value(json).unwrap();
        assert_eq!(back, sample_grant());
    }

    #[test]
    fn statuses_are_lowercase_and_parse_back() {
        for s in
            [GrantStatus::Pending, GrantStatus::Active, GrantStatus::Expired, GrantStatus::Revoked, GrantStatus::Failed]
        {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.as_str().parse::<GrantStatus>().unwrap(), s);
        }
        assert!("gone".parse::<GrantStatus>().is_err());
    }

    #[test]
    fn a_grant_settles_once_and_a_failed_one_stays_failed() {
        let mut g = sample_grant();
        assert_eq!(g.settled_status(GrantStatus::Revoked, true), Ok(GrantStatus::Revoked));
        assert!(g.settled_status(GrantStatus::Active, true).unwrap_err().contains("not an end state"));
        g.status = GrantStatus::Failed;
        assert_eq!(g.settled_status(GrantStatus::Expired, true), Ok(GrantStatus::Failed));
        assert!(g.settled_status(GrantStatus::Expired, false).unwrap_err().contains("settled already"));
        g.status = GrantStatus::Expired;
        assert!(g.settled_status(GrantStatus::Revoked, true).is_err());
    }
}
