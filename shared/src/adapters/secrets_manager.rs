//! Integrations from AWS Secrets Manager: secrets carrying the configured tag, values parsed,
//! cached per container for a bounded time. The Slack app's secret is found the same way, by its
//! own tag ([`SecretsManagerSlackApp`]).

use crate::{
    adapters::{slack::SlackAppSource, ttl_cache::TtlCache},
    clock::Clock,
    credentials::{IntegrationSecret, SlackSecret},
    ports::{Discovered, Integration, IntegrationCatalog, InvalidIntegration, SecretsError},
};
use async_trait::async_trait;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use std::{sync::Arc, time::Duration};

pub struct SecretsManagerCatalog {
    client: aws_sdk_secretsmanager::Client,
    tag_key: String,
    tag_value: String,
    cache: TtlCache<Discovered>,
}

impl SecretsManagerCatalog {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        tag_key: impl Into<String>,
        tag_value: impl Into<String>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { client, tag_key: tag_key.into(), tag_value: tag_value.into(), cache: TtlCache::from_std(ttl, clock) }
    }

    async fn tagged_secrets(&self) -> Result<Vec<(String, String)>, SecretsError> {
        tagged_secrets(&self.client, &self.tag_key, &self.tag_value).await
    }

    async fn read(&self, arn: &str, secret_name: &str) -> Result<Integration, SecretsError> {
        let text = secret_string(&self.client, arn, secret_name).await?;
        let parsed = IntegrationSecret::parse(&text)
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

/// The secrets carrying the tag `tag_key` = `tag_value`, as (ARN, name), by name. `ListSecrets`' tag
/// filters match key and value independently (and by prefix), so the exact pair is checked on each
/// secret's own tags.
async fn tagged_secrets(
    client: &aws_sdk_secretsmanager::Client,
    tag_key: &str,
    tag_value: &str,
) -> Result<Vec<(String, String)>, SecretsError> {
    let carries_tag = |tags: &[Tag]| tags.iter().any(|t| t.key() == Some(tag_key) && t.value() == Some(tag_value));
    let filter = |key: FilterNameStringType, value: &str| Filter::builder().key(key).values(value).build();
    let mut found = Vec::new();
    let mut pages = client
        .list_secrets()
        .filters(filter(FilterNameStringType::TagKey, tag_key))
        .filters(filter(FilterNameStringType::TagValue, tag_value))
        .max_results(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| SecretsError::List(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
        for secret in page.secret_list() {
            if let (true, Some(arn), Some(name)) = (carries_tag(secret.tags()), secret.arn(), secret.name()) {
                found.push((arn.to_owned(), name.to_owned()));
            }
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(found)
}

/// A secret's string value (errors name the secret, never the value).
async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
    secret_name: &str,
) -> Result<String, SecretsError> {
    let value = client.get_secret_value().secret_id(arn).send().await.map_err(|e| SecretsError::Read {
        secret: secret_name.to_owned(),
        reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
    })?;
    value.secret_string().map(str::to_owned).ok_or_else(|| SecretsError::InvalidValue {
        secret: secret_name.to_owned(),
        reason: "no string value".to_owned(),
    })
}

#[async_trait]
impl IntegrationCatalog for SecretsManagerCatalog {
    async fn list(&self) -> Result<Discovered, SecretsError> {
        self.cache.get_or_read(|| self.discover()).await
    }

    async fn refresh(&self, name: &str) -> Result<Integration, SecretsError> {
        let known = self.list().await?.integrations.into_iter().find(|i| i.name == name);
        let Some(known) = known else { return Err(SecretsError::UnknownIntegration(name.to_owned())) };
        let fresh = self.read(&known.secret_id, name).await?;
        if fresh.name != known.name {
            // Renamed in place: the cache is refreshed by the next listing, which checks the names.
            return Err(SecretsError::UnknownIntegration(name.to_owned()));
        }
        self.cache
            .update(|discovered| {
                for cached in discovered.integrations.iter_mut().filter(|i| i.secret_id == fresh.secret_id) {
                    *cached = fresh.clone();
                }
            })
            .await;
        Ok(fresh)
    }
}

/// The Slack app's secret ([`SlackAppSource`]): the one secret tagged `SLACK_SECRET_TAG_KEY` =
/// `SLACK_SECRET_TAG_VALUE` (`jit-access-slack` = `true`), read and cached like the integrations'.
/// None: Slack is off. Two or more: all refused (Slack off), logged `event = "slack_conflict"`:
/// whoever can tag a secret must not be able to swap in a signing secret of their own unnoticed.
/// A secret whose value does not parse is reported as an error (not cached), never as "off".
pub struct SecretsManagerSlackApp {
    client: aws_sdk_secretsmanager::Client,
    tag_key: String,
    tag_value: String,
    cache: TtlCache<SlackApp>,
}

/// What discovery found: the secret, or `None` (Slack off).
type SlackApp = Option<Arc<SlackSecret>>;

impl SecretsManagerSlackApp {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        tag_key: impl Into<String>,
        tag_value: impl Into<String>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { client, tag_key: tag_key.into(), tag_value: tag_value.into(), cache: TtlCache::from_std(ttl, clock) }
    }

    async fn discover(&self) -> Result<SlackApp, SecretsError> {
        let tagged = tagged_secrets(&self.client, &self.tag_key, &self.tag_value).await?;
        match tagged.as_slice() {
            [] => Ok(None),
            [(arn, name)] => {
                let text = secret_string(&self.client, arn, name).await?;
                let secret = SlackSecret::parse(&text)
                    .map_err(|e| SecretsError::InvalidValue { secret: name.clone(), reason: e.to_string() })?;
                Ok(Some(Arc::new(secret)))
            }
            several => {
                let names: Vec<&str> = several.iter().map(|(_, name)| name.as_str()).collect();
                tracing::error!(event = "slack_conflict", secrets = %names.join(", "),
                    "two or more secrets carry the Slack tag: all refused, Slack approvals are off");
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl SlackAppSource for SecretsManagerSlackApp {
    async fn current(&self) -> Result<Option<Arc<SlackSecret>>, SecretsError> {
        self.cache.get_or_read(|| self.discover()).await
    }
}
