//! The audit trail: one record per change of a grant (and of the policy, and drift), chained
//! per grant by the store (`audit_chain.rs`).

use super::{ChainLink, Grant, LeaseKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// The grant was recorded (pending).
    Created,
    /// The membership is in place and the grant active.
    Activated,
    /// The grant could not be made.
    Failed,
    Revoked,
    Expired,
    /// JumpCloud (or the integration) failed while removing the membership; retried by the sweep.
    RevocationFailed,
    MembershipRemoved,
    MembershipKept,
    /// The expiry schedule could not be created: the sweep ends the grant instead.
    ScheduleFailed,
    /// Sync found the membership gone outside the product.
    MembershipMissing,
    /// Sync found a membership the product granted that outlived its grant.
    DriftDetected,
    /// An approver approved a request (the last required approval activates it).
    Approved,
    Denied,
    Cancelled,
    /// A request not decided within its approval timeout.
    RequestExpired,
    /// An extension was asked for and awaits approval.
    ExtensionRequested,
    /// The expiry moved (an extension applied).
    Extended,
    /// A pending extension was denied.
    ExtensionDenied,
    /// A new version of the access policy was applied (see [`AuditRecord::policy_applied`]).
    PolicyApplied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Succeeded,
    Failed,
}

/// One append-only entry of the audit trail (kept when the grant is gone). Self-contained: it
/// names the integration, user and group, not only the grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// A UUID v4: records of one grant at the same instant stay distinct.
    pub id: String,
    pub grant_id: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub integration: String,
    pub user_id: String,
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Its place in the grant's hash chain, set by the store as it writes the record
    /// (`audit_chain::link`); `None` on records written before chains existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
}

impl AuditRecord {
    pub fn new(grant: &Grant, at: DateTime<Utc>, actor: &str, action: AuditAction, outcome: AuditOutcome) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            grant_id: grant.id.clone(),
            at,
            actor: actor.to_owned(),
            action,
            outcome,
            integration: grant.integration.clone(),
            user_id: grant.user.id.clone(),
            group_id: grant.group.id.clone(),
            reason: None,
            detail: None,
            chain: None,
        }
    }
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The record of a membership added outside the product to a group only it should fill
    /// (the pseudo-grant [`DRIFT_AUDIT_ID`]; see [`AuditRecord::policy_applied`] for why).
    pub fn outside_membership(
        at: DateTime<Utc>,
        actor: &str,
        key: &LeaseKey,
        outcome: AuditOutcome,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            grant_id: DRIFT_AUDIT_ID.to_owned(),
            at,
            actor: actor.to_owned(),
            action: AuditAction::DriftDetected,
            outcome,
            integration: key.integration.clone(),
            user_id: key.user_id.clone(),
            group_id: key.group_id.clone(),
            reason: None,
            detail: Some(detail.into()),
            chain: None,
        }
    }

    /// The record of a policy change.
    ///
    /// The audit trail is grant-centric (one partition per grant, and a per-day index that
    /// `audit_between` and `jitctl audit --since` read). A policy change is recorded as a record
    /// of the pseudo-grant [`POLICY_AUDIT_ID`] rather than as a new kind of item: it then lands
    /// in the same day index with no change to the listing, the item mapping or older records
    /// (a reader that does not know `policy_applied` still sees a well-formed record), and
    /// `audit_for("policy")` is the history of every change. `integration`, `user_id` and
    /// `group_id` are empty: a policy spans all of them.
    pub fn policy_applied(at: DateTime<Utc>, by: &str, version: u64, previous: Option<u64>, sha256: &str) -> Self {
        let previous = previous.map_or_else(|| "none".to_owned(), |p| p.to_string());
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            grant_id: POLICY_AUDIT_ID.to_owned(),
            at,
            actor: by.to_owned(),
            action: AuditAction::PolicyApplied,
            outcome: AuditOutcome::Succeeded,
            integration: String::new(),
            user_id: String::new(),
            group_id: String::new(),
            reason: None,
            detail: Some(format!("version {version} (sha256 {sha256}), previous {previous}")),
            chain: None,
        }
    }
}

/// The `grant_id` of policy changes' audit records (no grant id is a UUID of this form).
pub const POLICY_AUDIT_ID: &str = "policy";
/// The `grant_id` of the records of memberships added outside the product to a `jit_only` group
/// (no grant holds them: they are kept as the trail of this pseudo-grant, as policy changes are).
pub const DRIFT_AUDIT_ID: &str = "drift";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::sample_grant;

    #[test]
    fn audit_records_serialize_their_action_in_snake_case() {
        let r = AuditRecord::new(
            &sample_grant(),
            sample_grant().requested_at,
            "me",
            AuditAction::RevocationFailed,
            AuditOutcome::Failed,
        )
        .detail("JumpCloud unavailable");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["action"], "revocation_failed");
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["user_id"], "u1");
        assert!(json.get("reason").is_none());
    }

    #[test]
    fn a_policy_change_is_an_audit_record_of_the_policy() {
        let at = sample_grant().requested_at;
        let r = AuditRecord::policy_applied(at, "cli:carol", 3, Some(2), "ab12");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["action"], "policy_applied");
        assert_eq!(json["grant_id"], POLICY_AUDIT_ID);
        assert_eq!(json["actor"], "cli:carol");
        assert_eq!(json["detail"], "version 3 (sha256 ab12), previous 2");
        let first = AuditRecord::policy_applied(at, "me", 1, None, "cd34");
        assert_eq!(first.detail.as_deref(), Some("version 1 (sha256 cd34), previous none"));
    }
}
