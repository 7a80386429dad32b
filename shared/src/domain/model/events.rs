//! The product's events: `detail-type`s and the `detail` of a grant's event.

use super::{Grant, MembershipEnd, PendingExtension};
use serde::{Deserialize, Serialize};

/// The `source` of every event the product publishes.
pub const EVENT_SOURCE: &str = "jit-access";

/// An event's `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "Grant Created")]
    GrantCreated,
    #[serde(rename = "Grant Revoked")]
    GrantRevoked,
    #[serde(rename = "Grant Expired")]
    GrantExpired,
    /// A grant could not be made (JumpCloud failed): nothing is active.
    #[serde(rename = "Grant Failed")]
    GrantFailed,
    #[serde(rename = "Revocation Failed")]
    RevocationFailed,
    #[serde(rename = "Sync Completed")]
    SyncCompleted,
    #[serde(rename = "Drift Detected")]
    DriftDetected,
    #[serde(rename = "Approval Requested")]
    ApprovalRequested,
    #[serde(rename = "Request Approved")]
    RequestApproved,
    #[serde(rename = "Request Denied")]
    RequestDenied,
    #[serde(rename = "Request Cancelled")]
    RequestCancelled,
    #[serde(rename = "Request Expired")]
    RequestExpired,
    #[serde(rename = "Break Glass Used")]
    BreakGlassUsed,
    #[serde(rename = "Extension Requested")]
    ExtensionRequested,
    #[serde(rename = "Grant Extended")]
    GrantExtended,
    #[serde(rename = "Grant Expiring Soon")]
    GrantExpiringSoon,
    /// A new version of the access policy was applied (`jitctl policy apply`).
    #[serde(rename = "Policy Changed")]
    PolicyChanged,
    /// A finished day of the audit trail was sealed: the seal's copy outside the table
    /// (`domain::audit::SealAnchor`).
    #[serde(rename = "Audit Day Sealed")]
    AuditDaySealed,
}

impl EventType {
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::GrantCreated => "Grant Created",
            Self::GrantRevoked => "Grant Revoked",
            Self::GrantExpired => "Grant Expired",
            Self::GrantFailed => "Grant Failed",
            Self::RevocationFailed => "Revocation Failed",
            Self::SyncCompleted => "Sync Completed",
            Self::DriftDetected => "Drift Detected",
            Self::ApprovalRequested => "Approval Requested",
            Self::RequestApproved => "Request Approved",
            Self::RequestDenied => "Request Denied",
            Self::RequestCancelled => "Request Cancelled",
            Self::RequestExpired => "Request Expired",
            Self::BreakGlassUsed => "Break Glass Used",
            Self::ExtensionRequested => "Extension Requested",
            Self::GrantExtended => "Grant Extended",
            Self::GrantExpiringSoon => "Grant Expiring Soon",
            Self::PolicyChanged => "Policy Changed",
            Self::AuditDaySealed => "Audit Day Sealed",
        }
    }
}

/// The `detail` of a grant's event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEventDetail {
    pub grant: Grant,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipEnd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The emails to tell (requester, grantee, approvers), for rules that route notifications.
    #[serde(default)]
    pub notify: Vec<String>,
    /// `Drift Detected`: its kind (`outlived_grant`, `readded_outside`, `membership_missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// `Grant Extended` and `Request Denied` that decided a pending extension: that extension as
    /// it stood when decided (with its approvals); the grant no longer carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<PendingExtension>,
}

/// One event for the bus: `source` is [`EVENT_SOURCE`], `detail-type` is
/// `detail_type.detail_type()`, `detail` is JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantEvent {
    pub detail_type: EventType,
    pub detail: serde_json::Value,
}

impl GrantEvent {
    pub fn for_grant(detail_type: EventType, detail: &GrantEventDetail) -> Self {
        Self { detail_type, detail: serde_json::to_value(detail).expect("event detail serializes") }
    }
    /// The grant id in a grant event's detail.
    pub fn grant_id(&self) -> Option<&str> {
        self.detail.get("grant")?.get("id")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::sample_grant;

    #[test]
    fn event_types_are_spelled_as_documented() {
        assert_eq!(EventType::GrantCreated.detail_type(), "Grant Created");
        assert_eq!(EventType::GrantRevoked.detail_type(), "Grant Revoked");
        assert_eq!(EventType::GrantExpired.detail_type(), "Grant Expired");
        assert_eq!(EventType::RevocationFailed.detail_type(), "Revocation Failed");
        assert_eq!(EventType::SyncCompleted.detail_type(), "Sync Completed");
        assert_eq!(EventType::DriftDetected.detail_type(), "Drift Detected");
        assert_eq!(EventType::PolicyChanged.detail_type(), "Policy Changed");
        assert_eq!(EventType::AuditDaySealed.detail_type(), "Audit Day Sealed");
        for t in [
            EventType::GrantCreated,
            EventType::RevocationFailed,
            EventType::GrantFailed,
            EventType::PolicyChanged,
            EventType::AuditDaySealed,
        ] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.detail_type());
        }
        let event = GrantEvent::for_grant(
            EventType::GrantCreated,
            &GrantEventDetail {
                grant: sample_grant(),
                actor: "me".into(),
                membership: None,
                error: None,
                notify: vec![],
                drift: None,
                extension: None,
            },
        );
        assert_eq!(event.grant_id(), Some(sample_grant().id.as_str()));
    }
}
