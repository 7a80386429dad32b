//! Integrations from AWS Secrets Manager: secrets carrying the configured tag, values parsed,
//! cached per container for a bounded time.

use crate::{
    clock::Clock,
    credentials::IntegrationSecret,
    ports::{Discovered, Integration, IntegrationCatalog, InvalidIntegration, SecretsError},
};
use async_trait::async_trait;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use chrono::{DateTime, Utc};
use std::{sync::Arc, time::Duration};
use tokio::sync::Mutex;

pub struct SecretsManagerCatalog {
    client: aws_sdk_secretsmanager::Client,
    tag_key: String,
    tag_value: String,
    ttl: chrono::Duration,
    clock: Arc<dyn Clock>,
    cache: Mutex<Option<(DateTime<Utc>, Discovered)>>,
}

impl SecretsManagerCatalog {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        tag_key: impl Into<String>,
        tag_value: impl Into<String>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            tag_key: tag_key.into(),
            tag_value: tag_value.into(),
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            clock,
            cache: Mutex::new(None),
        }
    }

    /// `ListSecrets`' tag filters match key and value independently (and by prefix), so the exact
    /// pair is checked on each secret's own tags.
    fn carries_tag(&self, tags: &[Tag]) -> bool {
        tags.iter().any(|t| t.key() == Some(self.tag_key.as_str()) && t.value() == Some(self.tag_value.as_str()))
    }

    async fn tagged_secrets(&self) -> Result<Vec<(String, String)>, SecretsError> {
        let filter = |key: FilterNameStringType, value: &str| Filter::builder().key(key).values(value).build();
        let mut found = Vec::new();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter(FilterNameStringType::TagKey, &self.tag_key))
            .filters(filter(FilterNameStringType::TagValue, &self.tag_value))
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| SecretsError::List(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
            for secret in page.secret_list() {
                if let (true, Some(arn), Some(name)) = (self.carries_tag(secret.tags()), secret.arn(), secret.name()) {
                    found.push((arn.to_owned(), name.to_owned()));
                }
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(found)
    }

    async fn read(&self, arn: &str, secret_name: &str) -> Result<Integration, SecretsError> {
        let value = self.client.get_secret_value().secret_id(arn).send().await.map_err(|e| SecretsError::Read {
            secret: secret_name.to_owned(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
        let text = value.secret_string().ok_or_else(|| SecretsError::InvalidValue {
            secret: secret_name.to_owned(),
            reason: "no string value".to_owned(),
        })?;
        let parsed = IntegrationSecret::parse(text)
            .map_err(|e| SecretsError::InvalidValue { secret: secret_name.to_owned(), reason: e.to_string() })?;
        Ok(Integration {
            name: parsed.name.unwrap_or_else(|| secret_name.to_owned()),
            secret_id: arn.to_owned(),
            credentials: parsed.credentials,
        })
    }

    async fn discover(&self) -> Result<Discovered, SecretsError> {
        let mut discovered = Discovered::default();
        let mut read: Vec<(String, Integration)> = Vec::new();
        for (arn, secret_name) in self.tagged_secrets().await? {
            match self.read(&arn, &secret_name).await {
                Ok(integration) => read.push((secret_name, integration)),
                Err(e) => {
                    tracing::error!(secret = %secret_name, error = %e, "tagged secret cannot be used");
                    discovered.invalid.push(InvalidIntegration { secret: secret_name, reason: e.to_string() });
                }
            }
        }
        // Two secrets claiming one name: neither is used. Picking one (by order, by age) would let
        // anyone who can tag a secret send that integration's revocations to their organization.
        for (secret_name, integration) in &read {
            let claimants: Vec<&str> = read
                .iter()
                .filter(|(_, other)| other.name == integration.name)
                .map(|(name, _)| name.as_str())
                .collect();
            if claimants.len() == 1 {
                discovered.integrations.push(integration.clone());
                continue;
            }
            // `event` is what the deployment's metric filter counts (the integration-conflict alarm).
            tracing::error!(event = "integration_conflict", integration = %integration.name, secret = %secret_name,
                claimants = %claimants.join(", "), "two tagged secrets claim one integration name: both refused");
            discovered.invalid.push(InvalidIntegration {
                secret: secret_name.clone(),
                reason: format!(
                    "{} (secrets {})",
                    SecretsError::DuplicateName(integration.name.clone()),
                    claimants.join(", ")
                ),
            });
        }
        Ok(discovered)
    }
}

#[async_trait]
impl IntegrationCatalog for SecretsManagerCatalog {
    async fn list(&self) -> Result<Discovered, SecretsError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some((read_at, discovered)) = cache.as_ref() {
            if now - *read_at < self.ttl {
                return Ok(discovered.clone());
            }
        }
        let discovered = self.discover().await?;
        *cache = Some((now, discovered.clone()));
        Ok(discovered)
    }

    async fn refresh(&self, name: &str) -> Result<Integration, SecretsError> {
        let known = self.list().await?.integrations.into_iter().find(|i| i.name == name);
        let Some(known) = known else { return Err(SecretsError::UnknownIntegration(name.to_owned())) };
        let fresh = self.read(&known.secret_id, name).await?;
        if fresh.name != known.name {
            // Renamed in place: the cache is refreshed by the next listing, which checks the names.
            return Err(SecretsError::UnknownIntegration(name.to_owned()));
        }
        if let Some((_, discovered)) = self.cache.lock().await.as_mut() {
            for cached in discovered.integrations.iter_mut().filter(|i| i.secret_id == fresh.secret_id) {
                *cached = fresh.clone();
            }
        }
        Ok(fresh)
    }
}
