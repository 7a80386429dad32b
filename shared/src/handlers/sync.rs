//! The `sync` function: on its schedule syncs every integration in full; on the incremental
//! schedule (every minute) brings each up to date from its Directory Insights events; on
//! `POST /sync` syncs one or all in full.

use super::{access, failure, routing};
use crate::{
    adapters::dynamodb::DynamoStore,
    clock::Clock,
    config::{Config, ConfigError, DirectoryPolicy, IdentityConfig},
    domain::audit::seal_days,
    domain::incremental::{sync_incremental_all, IncrementalSummary},
    domain::model::Name,
    domain::sync::{sync_all, NoProgress, SyncContext, SyncError, SyncSummary},
    http::{handle_invocation, json, parse_body, Problem},
    ports::{DirectoryProvider, DirectoryStore, IntegrationCatalog},
    wiring::{Function, Lifecycle},
};
use lambda_http::{
    http::{Method, StatusCode},
    lambda_runtime::Diagnostic,
    Body, LambdaEvent, Request, Response,
};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

pub struct SyncHandler {
    /// The grant lifecycle's ports, for reconciliation; `None` syncs the directory only.
    pub lifecycle: Option<Arc<Lifecycle>>,
    pub catalog: Arc<dyn IntegrationCatalog>,
    pub directories: Arc<dyn DirectoryProvider>,
    pub store: Arc<dyn DirectoryStore>,
    pub policy: DirectoryPolicy,
    pub clock: Arc<dyn Clock>,
    /// `POST /sync` is for admins.
    pub identity: IdentityConfig,
}

/// The incremental schedule's event (`{"source": "jit.sync", "detail-type": "Incremental Sync"}`,
/// the rule target's constant input).
pub const INCREMENTAL_SOURCE: &str = "jit.sync";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    integration: Option<String>,
}

impl SyncHandler {
    /// Builds every client once (per container).
    pub fn from_config(sdk: &aws_config::SdkConfig, config: &Config) -> Result<Self, ConfigError> {
        // The lifecycle's catalog and JumpCloud clients serve the sync too: one set per container.
        let lifecycle = Arc::new(Lifecycle::from_config(sdk, config, Function::Revoke)?);
        let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.table_name));
        Ok(Self {
            catalog: lifecycle.catalog.clone(),
            directories: lifecycle.directories.clone(),
            clock: lifecycle.clock.clone(),
            lifecycle: Some(lifecycle),
            store,
            policy: config.directory.clone(),
            identity: config.identity.clone(),
        })
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        handle_invocation(event, |request| self.http(request), |event| self.scheduled(event)).await
    }

    async fn run(&self, only: Option<&str>) -> Result<SyncSummary, SyncError> {
        let grants = self.lifecycle.as_ref().map(|l| l.ctx());
        let summary =
            sync_all(&self.ctx(grants.as_ref()), self.catalog.as_ref(), self.directories.as_ref(), only).await?;
        for outcome in &summary.integrations {
            tracing::info!(integration = outcome.integration(), outcome = ?outcome, "sync finished");
        }
        Ok(summary)
    }

    fn ctx<'a>(&'a self, grants: Option<&'a crate::domain::grant::GrantContext<'a>>) -> SyncContext<'a> {
        SyncContext {
            store: self.store.as_ref(),
            policy: &self.policy,
            clock: self.clock.as_ref(),
            progress: &NoProgress,
            grants,
            fanout: None,
        }
    }

    /// The incremental schedule's run over every integration. Fails the invocation (for alarms)
    /// only when every integration failed.
    async fn incremental(&self) -> Result<Value, Diagnostic> {
        let grants = self.lifecycle.as_ref().map(|l| l.ctx());
        let summary: IncrementalSummary =
            sync_incremental_all(&self.ctx(grants.as_ref()), self.catalog.as_ref(), self.directories.as_ref())
                .await
                .map_err(|e| failure::retryable(e.to_string()))?;
        for outcome in &summary.integrations {
            tracing::info!(outcome = ?outcome, "incremental sync finished");
        }
        let summary_json = serde_json::to_value(&summary).expect("summaries serialize");
        if !summary.integrations.is_empty() && summary.integrations.iter().all(|o| o.is_failure()) {
            return Err(failure::retryable(format!("every integration failed to sync: {summary_json}")));
        }
        Ok(summary_json)
    }

    /// The schedules: the full sync of every integration (EventBridge's scheduled event), or the
    /// incremental run (`events/sync-incremental.json`). Fails the invocation (for alarms) only
    /// when none could be synced.
    async fn scheduled(&self, event: Value) -> Result<Value, Diagnostic> {
        let source = event.get("source").and_then(Value::as_str).unwrap_or_default();
        if source == INCREMENTAL_SOURCE {
            return self.incremental().await;
        }
        if source != "aws.events" && source != "aws.scheduler" {
            return Err(failure::non_retryable(format!(
                "unsupported event (source {source:?}): expected an EventBridge schedule or an HTTP request"
            )));
        }
        let summary = self.run(None).await.map_err(|e| failure::retryable(e.to_string()))?;
        self.seal_audit_days().await;
        let summary_json = serde_json::to_value(&summary).expect("summaries serialize");
        // A sync already running does the work: only failures everywhere are worth a retry.
        if !summary.integrations.is_empty() && summary.integrations.iter().all(|o| !o.is_success() && !o.is_running()) {
            return Err(failure::retryable(format!("every integration failed to sync: {summary_json}")));
        }
        Ok(summary_json)
    }

    /// Seals finished days of the audit trail (`domain::audit::seal_days`). Best effort: a
    /// failure is logged and the next scheduled run catches up; it never fails the sync.
    async fn seal_audit_days(&self) {
        let Some(lifecycle) = &self.lifecycle else { return };
        if let Err(e) = seal_days(lifecycle.store.as_ref(), self.clock.now()).await {
            tracing::error!(event = "audit_seal_failed", error = %e, "sealing the audit trail's finished days failed");
        }
    }

    async fn http(&self, request: Request) -> Response<Body> {
        if !routing::matches(&request, &Method::POST, &["sync"]) {
            let status = if routing::path_known(&request, &["sync"]) {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::NOT_FOUND
            };
            return Problem::new(status, format!("no route {} {}", request.method(), request.uri().path())).into();
        }
        let principal =
            match access::principal(&request, &self.identity, self.catalog.as_ref(), self.store.as_ref()).await {
                Ok(principal) => principal,
                Err(problem) => return problem.into(),
            };
        if let Err(problem) = access::admins_only(&principal, "run a sync") {
            return problem.into();
        }
        let body: SyncRequest = match parse_body(&request, Some(SyncRequest::default())) {
            Ok(body) => body,
            Err(problem) => return problem.into(),
        };
        let only = match body.integration.as_deref().map(|i| Name::parse("integration", i)).transpose() {
            Ok(only) => only,
            Err(invalid) => return Problem::from(invalid).into(),
        };
        match self.run(only.as_ref().map(Name::as_str)).await {
            // Every integration was being synced already: accepted, nothing started (the
            // summary says since when each runs).
            Ok(summary) if !summary.integrations.is_empty() && summary.integrations.iter().all(|o| o.is_running()) => {
                json(StatusCode::ACCEPTED, &summary)
            }
            Ok(summary)
                if !summary.integrations.is_empty()
                    && summary.integrations.iter().all(|o| !o.is_success() && !o.is_running()) =>
            {
                let failures: Vec<String> = summary
                    .integrations
                    .iter()
                    .map(|o| match o {
                        crate::domain::sync::IntegrationOutcome::Failed { integration, error } => {
                            format!("{integration}: {error}")
                        }
                        other => other.integration().to_owned(),
                    })
                    .collect();
                Problem::new(StatusCode::BAD_GATEWAY, format!("sync failed: {}", failures.join("; "))).into()
            }
            Ok(summary) => json(StatusCode::OK, &summary),
            Err(e) => {
                if !matches!(e, SyncError::UnknownIntegration(_)) {
                    tracing::error!(error = %e, "sync failed");
                }
                Problem::from(&e).into()
            }
        }
    }
}
