//! The `sync` function: on its schedule syncs every integration in full; on the incremental
//! schedule (every minute) brings each up to date from its Directory Insights events; on
//! `POST /sync` syncs one or all in full.

use super::{access, failure, routing};
use crate::{
    adapters::dynamodb::{DynamoSharedRate, DynamoStore},
    adapters::jumpcloud::{JumpCloudDirectories, SharedRateFor},
    adapters::sqs::SqsPartQueue,
    clock::Clock,
    config::{Config, ConfigError, DirectoryPolicy, FanOutConfig, IdentityConfig},
    domain::audit::seal_days,
    domain::fanout::{run_part, FanOut},
    domain::incremental::{sync_incremental_all, IncrementalSummary},
    domain::model::Name,
    domain::sync::{sync_all, NoProgress, SyncContext, SyncError, SyncSummary},
    http::{handle_invocation, json, parse_body, Problem},
    ports::{DirectoryProvider, DirectoryStore, IntegrationCatalog},
    ports::{PartMessage, PartQueue, SyncRunStore},
    wiring::{Function, Lifecycle},
};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::{
    http::{Method, StatusCode},
    lambda_runtime::Diagnostic,
    Body, LambdaEvent, Request, Response,
};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use tracing::Instrument;

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
    /// The fanned-out full sync's queue and records; `None`: every sync runs in one invocation.
    pub fanout: Option<FanOutPorts>,
}

/// What the fanned-out full sync runs over (`domain::fanout`).
#[derive(Clone)]
pub struct FanOutPorts {
    pub queue: Arc<dyn PartQueue>,
    pub runs: Arc<dyn SyncRunStore>,
    /// Its settings; tests make the parts smaller.
    pub settings: FanOutConfig,
}

impl FanOutPorts {
    fn fanout(&self) -> FanOut<'_> {
        FanOut {
            users_per_part: self.settings.users_per_part,
            groups_per_part: self.settings.groups_per_part,
            ..FanOut::new(self.queue.as_ref(), self.runs.as_ref(), self.settings.above_users)
        }
    }
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
        let http = crate::wiring::http_client();
        let lifecycle = Arc::new(Lifecycle::from_config_with_http(sdk, config, Function::Revoke, http.clone())?);
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let store = Arc::new(DynamoStore::new(dynamodb.clone(), &config.table_name));
        let (directories, fanout): (Arc<dyn DirectoryProvider>, _) = match &config.fanout {
            None => (lifecycle.directories.clone(), None),
            Some(settings) => {
                // The sync's own JumpCloud clients, over the same connection pool: every sync of
                // an integration, in every container (the planner, its workers, the incremental
                // runs), takes from one rate budget in the table, which leaves the rest of
                // JumpCloud's rate to grants and revocations.
                let (table, per_second) = (config.table_name.clone(), settings.requests_per_second);
                let rate_for: SharedRateFor = Arc::new(move |integration: &str| {
                    Arc::new(DynamoSharedRate::new(dynamodb.clone(), table.clone(), integration, per_second))
                        as Arc<dyn crate::ports::SharedRate>
                });
                let directories = Arc::new(
                    JumpCloudDirectories::new(
                        http,
                        config.jumpcloud_api_url.clone(),
                        config.jumpcloud_insights_url.clone(),
                        config.jumpcloud.clone(),
                        lifecycle.catalog.clone(),
                    )
                    .with_shared_rate(rate_for),
                );
                let queue = Arc::new(SqsPartQueue::new(aws_sdk_sqs::Client::new(sdk), &settings.queue_url));
                let ports = FanOutPorts { queue, runs: store.clone(), settings: settings.clone() };
                (directories, Some(ports))
            }
        };
        Ok(Self {
            catalog: lifecycle.catalog.clone(),
            directories,
            clock: lifecycle.clock.clone(),
            lifecycle: Some(lifecycle),
            store,
            policy: config.directory.clone(),
            identity: config.identity.clone(),
            fanout,
        })
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        handle_invocation(event, |request| self.http(request), |event| self.scheduled(event)).await
    }

    async fn run(&self, only: Option<&str>) -> Result<SyncSummary, SyncError> {
        let grants = self.lifecycle.as_ref().map(|l| l.ctx());
        let fanout = self.fanout.as_ref().map(FanOutPorts::fanout);
        let ctx = self.ctx(grants.as_ref(), fanout.as_ref());
        let summary = sync_all(&ctx, self.catalog.as_ref(), self.directories.as_ref(), only).await?;
        for outcome in &summary.integrations {
            tracing::info!(integration = outcome.integration(), outcome = ?outcome, "sync finished");
        }
        Ok(summary)
    }

    fn ctx<'a>(
        &'a self,
        grants: Option<&'a crate::domain::grant::GrantContext<'a>>,
        fanout: Option<&'a FanOut<'a>>,
    ) -> SyncContext<'a> {
        SyncContext {
            store: self.store.as_ref(),
            policy: &self.policy,
            clock: self.clock.as_ref(),
            progress: &NoProgress,
            grants,
            fanout,
        }
    }

    /// The incremental schedule's run over every integration. Fails the invocation (for alarms)
    /// only when every integration failed.
    async fn incremental(&self) -> Result<Value, Diagnostic> {
        let grants = self.lifecycle.as_ref().map(|l| l.ctx());
        let fanout = self.fanout.as_ref().map(FanOutPorts::fanout);
        let summary: IncrementalSummary = sync_incremental_all(
            &self.ctx(grants.as_ref(), fanout.as_ref()),
            self.catalog.as_ref(),
            self.directories.as_ref(),
        )
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
        if event.get("Records").is_some() {
            return self.parts(event).await;
        }
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

    /// The fanned-out sync's parts, delivered by SQS (`domain::fanout::run_part`). A part that
    /// fails is reported back (`batchItemFailures`): SQS delivers it again, and after the
    /// queue's `maxReceiveCount` moves it to the dead-letter queue.
    async fn parts(&self, event: Value) -> Result<Value, Diagnostic> {
        let Some(ports) = &self.fanout else {
            return Err(failure::non_retryable("an SQS event, but the fan-out is off (SYNC_QUEUE_URL is not set)"));
        };
        let event: SqsEvent =
            serde_json::from_value(event).map_err(|e| failure::non_retryable(format!("not an SQS event: {e}")))?;
        let fanout = ports.fanout();
        let grants = self.lifecycle.as_ref().map(|l| l.ctx());
        let ctx = self.ctx(grants.as_ref(), Some(&fanout));
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let attempt = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
            let message: PartMessage = match record.body.as_deref().map(serde_json::from_str) {
                Some(Ok(message)) => message,
                other => {
                    let error = other.and_then(Result::err).map(|e| e.to_string()).unwrap_or_else(|| "no body".into());
                    // Never workable: it goes to the dead-letter queue for someone to look at.
                    tracing::error!(message_id = id, error, "a sync part message that is not one");
                    response.add_failure(id);
                    continue;
                }
            };
            let span = tracing::info_span!("sync_part", integration = message.integration, run_id = message.run_id);
            let outcome = async {
                let directory = self.directory_for(&message.integration).await?;
                run_part(&ctx, &fanout, &message, directory.as_ref(), attempt).await
            }
            .instrument(span)
            .await;
            match outcome {
                Ok(outcome) => {
                    tracing::info!(integration = message.integration, run_id = message.run_id, ?outcome, "sync part")
                }
                Err(error) => {
                    tracing::error!(integration = message.integration, run_id = message.run_id, kind = message.kind.as_str(), part = message.part, attempt, error = %error, "sync part failed");
                    response.add_failure(id);
                }
            }
        }
        Ok(serde_json::to_value(response).expect("responses serialize"))
    }

    async fn directory_for(&self, integration: &str) -> Result<Arc<dyn crate::ports::Directory>, SyncError> {
        let discovered = self.catalog.list().await?;
        let found = discovered.integrations.iter().find(|i| i.name == integration);
        let found = found.ok_or_else(|| SyncError::UnknownIntegration(integration.to_owned()))?;
        Ok(self.directories.directory(found))
    }

    /// Seals finished days of the audit trail (`domain::audit::seal_days`). Best effort: a
    /// failure is logged and the next scheduled run catches up; it never fails the sync.
    async fn seal_audit_days(&self) {
        let Some(lifecycle) = &self.lifecycle else { return };
        if let Err(e) = seal_days(lifecycle.store.as_ref(), lifecycle.events.as_ref(), self.clock.now()).await {
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
