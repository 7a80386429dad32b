//! The small traits the domain works through. Adapters implement them over JumpCloud and AWS;
//! tests implement them in memory.

use crate::{
    jumpcloud::{JumpCloudError, JumpCloudGroup, JumpCloudUser},
    model::{DirectoryChanges, DirectoryDigest},
    secret::Credentials,
    store::StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What an add answered: JumpCloud's 409 means the user already was a direct member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// `ambiguous`: an earlier attempt of this same call may have been applied before it failed
    /// (timeout or 5xx after sending), so the 409 may be our own add.
    AlreadyMember {
        ambiguous: bool,
    },
}

/// What a remove answered: JumpCloud's 404 means the user was not a member (any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    NotMember,
}

/// One JumpCloud organization's directory.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn list_users(&self) -> Result<Vec<JumpCloudUser>, JumpCloudError>;
    async fn list_groups(&self) -> Result<Vec<JumpCloudGroup>, JumpCloudError>;
    /// Ids of the group's direct user members.
    async fn list_group_members(&self, group_id: &str) -> Result<Vec<String>, JumpCloudError>;
    /// By email, username or id.
    async fn find_user(&self, key: &str) -> Result<JumpCloudUser, JumpCloudError>;
    /// By name or id.
    async fn find_group(&self, key: &str) -> Result<JumpCloudGroup, JumpCloudError>;
    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<AddOutcome, JumpCloudError>;
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<RemoveOutcome, JumpCloudError>;
}

/// An integration: one JumpCloud organization, configured by one tagged secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub name: String,
    /// The secret's ARN (never its value).
    pub secret_id: String,
    pub credentials: Credentials,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("listing secrets failed: {0}")]
    List(String),
    #[error("reading secret {secret}: {reason}")]
    Read { secret: String, reason: String },
    #[error("secret {secret} has an invalid value: {reason}")]
    InvalidValue { secret: String, reason: String },
    #[error("two secrets name the integration {0:?}; names must be unique")]
    DuplicateName(String),
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
}

/// A tagged secret that could not be used: reported, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIntegration {
    /// The secret's name (never its value).
    pub secret: String,
    pub reason: String,
}

/// What discovery found.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    pub integrations: Vec<Integration>,
    pub invalid: Vec<InvalidIntegration>,
}

/// Where integrations come from (Secrets Manager, by tag).
#[async_trait]
pub trait IntegrationCatalog: Send + Sync {
    /// Every integration, served from a bounded-time cache.
    async fn list(&self) -> Result<Discovered, SecretsError>;
    /// One integration's secret, read again now (after JumpCloud answered 401: the key may have rotated).
    async fn refresh(&self, name: &str) -> Result<Integration, SecretsError>;
}

/// Builds (once) and hands out the directory client of an integration.
pub trait DirectoryProvider: Send + Sync {
    fn directory(&self, integration: &Integration) -> Arc<dyn Directory>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    Running,
    Succeeded,
    Failed,
}

/// The last sync of one integration, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub integration: String,
    pub state: SyncState,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub users: u64,
    #[serde(default)]
    pub groups: u64,
    #[serde(default)]
    pub memberships: u64,
    /// Items put (new or changed).
    #[serde(default)]
    pub written: u64,
    #[serde(default)]
    pub deleted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The synced directory in DynamoDB.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// The stored directory's ids, content hashes and memberships (not the items themselves).
    async fn load_digest(&self, integration: &str) -> Result<DirectoryDigest, StoreError>;
    /// Writes the changes (batched; retried until nothing is left unprocessed).
    async fn apply_changes(&self, integration: &str, changes: &DirectoryChanges) -> Result<(), StoreError>;
    async fn put_sync_status(&self, status: &SyncStatus) -> Result<(), StoreError>;
    async fn sync_status(&self, integration: &str) -> Result<Option<SyncStatus>, StoreError>;
}
