//! Where the client takes its API key from, and how it gets a fresh one after a 401.

use crate::ports::DirectoryError;
use crate::{credentials::Credentials, ports::IntegrationCatalog};
use async_trait::async_trait;
use std::sync::{Arc, RwLock};

#[async_trait]
pub trait CredentialSource: Send + Sync {
    fn current(&self) -> Credentials;
    /// Reads the credentials again (key rotation); called at most once per call after a 401.
    async fn refresh(&self) -> Result<Credentials, DirectoryError>;
}

/// Fixed credentials (CLI, tests): a refresh gives the same key back.
pub struct StaticCredentials(pub Credentials);

#[async_trait]
impl CredentialSource for StaticCredentials {
    fn current(&self) -> Credentials {
        self.0.clone()
    }
    async fn refresh(&self) -> Result<Credentials, DirectoryError> {
        Ok(self.0.clone())
    }
}

/// Credentials of one integration, refreshed from its catalog (Secrets Manager).
pub struct CatalogCredentials {
    catalog: Arc<dyn IntegrationCatalog>,
    integration: String,
    current: RwLock<Credentials>,
}

impl CatalogCredentials {
    pub fn new(catalog: Arc<dyn IntegrationCatalog>, integration: String, initial: Credentials) -> Self {
        Self { catalog, integration, current: RwLock::new(initial) }
    }
}

#[async_trait]
impl CredentialSource for CatalogCredentials {
    fn current(&self) -> Credentials {
        self.current.read().expect("credentials lock").clone()
    }
    async fn refresh(&self) -> Result<Credentials, DirectoryError> {
        let fresh = self
            .catalog
            .refresh(&self.integration)
            .await
            .map_err(|e| DirectoryError::Credentials { reason: e.to_string() })?;
        *self.current.write().expect("credentials lock") = fresh.credentials.clone();
        Ok(fresh.credentials)
    }
}
