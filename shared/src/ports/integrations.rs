//! Where integrations come from: one JumpCloud organization per tagged secret.

use crate::credentials::Credentials;
use async_trait::async_trait;
use std::sync::Arc;

use super::Directory;

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
    #[error("two or more secrets name the integration {0:?}: all of them are refused until names are unique")]
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
    /// The same organization's Directory Insights events (the incremental sync).
    fn insights(&self, integration: &Integration) -> Arc<dyn super::DirectoryInsights>;
}
