//! The applied access policy (SPEC "Who may do what"): versioned, each version immutable, the
//! change audited. `jitctl policy apply` writes it; the `grant` function reads it through a short
//! cache (a change takes effect within a minute).

use super::StoreError;
use crate::domain::policy::Policy;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// One applied version of the policy document.
#[derive(Debug, Clone)]
pub struct AppliedPolicy {
    /// 1 for the first document applied, then one more per change.
    pub version: u64,
    /// The document as applied (YAML or JSON), kept so that `show` and `plan` see what was applied.
    pub document: String,
    /// Hex SHA-256 of `document`.
    pub sha256: String,
    pub applied_at: DateTime<Utc>,
    /// The principal that applied it.
    pub applied_by: String,
    /// `document`, parsed.
    pub policy: Arc<Policy>,
}

/// A new version to apply.
#[derive(Debug, Clone)]
pub struct PolicyChange {
    pub document: String,
    pub policy: Arc<Policy>,
    /// The version the change was planned against (`None`: no policy applied yet). The apply is
    /// refused if another change landed meanwhile.
    pub previous: Option<u64>,
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// Another apply landed since the change was planned.
    #[error("the applied policy changed meanwhile (now version {current:?}); plan again")]
    Conflict { current: Option<u64> },
    /// A stored version that no longer parses (written by another release, or altered).
    #[error("stored policy version {version} is invalid: {reason}")]
    Invalid { version: u64, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where policy versions are kept.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// The applied version, if any (a strongly consistent read).
    async fn applied(&self) -> Result<Option<AppliedPolicy>, PolicyStoreError>;
    /// One version, applied now or before.
    async fn version(&self, version: u64) -> Result<Option<AppliedPolicy>, PolicyStoreError>;
    /// Stores the change as the next version and makes it the applied one, with its audit
    /// record, atomically; `Conflict` when the applied version is no longer `change.previous`.
    async fn apply(&self, change: &PolicyChange) -> Result<AppliedPolicy, PolicyStoreError>;
}

/// The policy the request paths decide by: the applied version, read at most once per
/// `ttl` per container.
#[async_trait]
pub trait PolicySource: Send + Sync {
    async fn current(&self) -> Result<Option<Arc<AppliedPolicy>>, PolicyStoreError>;
}
