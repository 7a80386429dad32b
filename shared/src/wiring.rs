//! The application's wiring: the adapters behind each port, built once per container, for the
//! functions and `jitctl` alike; and the domain context over them.

use crate::{
    adapters::dynamodb::{DynamoGrantStore, DynamoPolicyStore, DynamoSlackMessages, DynamoStore},
    adapters::eventbridge::EventBridgeBus,
    adapters::policy_cache::PolicyCache,
    adapters::scheduler::{self, EventBridgeScheduler},
    adapters::secrets_manager::SecretsManagerSlackApp,
    adapters::slack::{SlackApi, SlackApprovals, SlackEventBus},
    clock::{Clock, SystemClock},
    config::{Config, ConfigError, IdentityConfig},
    domain::grant::{GrantContext, GrantPolicy},
    ports::{
        DirectoryProvider, DirectoryStore, EventBus, ExpiryScheduler, GrantStore, IntegrationCatalog, MembershipOracle,
        PolicySource, PolicyStore,
    },
};
use std::sync::Arc;

/// Cheap to clone: every port is shared.
#[derive(Clone)]
pub struct Lifecycle {
    pub store: Arc<dyn GrantStore>,
    pub scheduler: Arc<dyn ExpiryScheduler>,
    pub events: Arc<dyn EventBus>,
    pub catalog: Arc<dyn IntegrationCatalog>,
    pub directories: Arc<dyn DirectoryProvider>,
    pub oracle: Arc<dyn MembershipOracle>,
    /// The synced directory (`GET /groups`).
    pub directory_store: Arc<dyn DirectoryStore>,
    pub clock: Arc<dyn Clock>,
    pub policy: GrantPolicy,
    /// Who the callers are: admins, the identity claim.
    pub identity: IdentityConfig,
    /// The applied access policy as the request paths decide by it (read at most every 30 s).
    pub policies: Arc<dyn PolicySource>,
    /// The policy's versions (`GET /policy`, `jitctl policy`).
    pub policy_store: Arc<dyn PolicyStore>,
    /// Slack approvals (`POST /slack/interactions`); also behind `events`, which it decorates.
    /// `None`: off (`SLACK_ENABLED` false, the default) or not wired (tests); on, it acts only
    /// while its secret exists.
    pub slack: Option<Arc<SlackApprovals>>,
}

/// Which function a lifecycle serves: only `grant` creates expiry schedules (and holds the ARNs
/// that takes); `revoke` only deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Grant,
    Revoke,
}

impl Lifecycle {
    /// Builds every client once (per container). Missing schedule ARNs fail `grant` at start-up.
    pub fn from_config(sdk: &aws_config::SdkConfig, config: &Config, function: Function) -> Result<Self, ConfigError> {
        Self::from_config_with_http(sdk, config, function, http_client())
    }

    /// As [`from_config`](Self::from_config), over `http`: a function that makes more HTTPS
    /// clients of its own (the sync's) keeps one connection pool per container.
    pub fn from_config_with_http(
        sdk: &aws_config::SdkConfig,
        config: &Config,
        function: Function,
        http: reqwest::Client,
    ) -> Result<Self, ConfigError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (catalog, directories) = integrations(sdk, config, clock.clone(), http.clone());
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let store = Arc::new(DynamoGrantStore::new(dynamodb.clone(), &config.table_name));
        let scheduler_client = scheduler::client(sdk);
        let scheduler: Arc<dyn ExpiryScheduler> = match function {
            Function::Grant => {
                Arc::new(EventBridgeScheduler::new(scheduler_client, config, config.schedule_dlq_arn.clone())?)
            }
            Function::Revoke => Arc::new(EventBridgeScheduler::delete_only(scheduler_client, &config.schedule_group)),
        };
        let policy_store: Arc<dyn PolicyStore> = Arc::new(DynamoPolicyStore::new(dynamodb.clone(), &config.table_name));
        // Slack off (`SLACK_ENABLED`): nothing built, so nothing ever lists secrets for its tag.
        let slack = config.slack.enabled.then(|| {
            Arc::new(SlackApprovals::new(
                Arc::new(SecretsManagerSlackApp::new(
                    aws_sdk_secretsmanager::Client::new(sdk),
                    &config.slack.secret_tag_key,
                    &config.slack.secret_tag_value,
                    config.secrets_cache_ttl,
                    clock.clone(),
                )),
                SlackApi::new(http, &config.slack.api_url),
                Arc::new(DynamoSlackMessages::new(dynamodb.clone(), &config.table_name)),
                policy_store.clone(),
                clock.clone(),
            ))
        });
        let bus: Arc<dyn EventBus> =
            Arc::new(EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &config.event_bus_name));
        let events: Arc<dyn EventBus> = match &slack {
            Some(slack) => Arc::new(SlackEventBus::new(bus, slack.clone())),
            None => bus,
        };
        Ok(Self {
            policies: Arc::new(PolicyCache::with_default_ttl(policy_store.clone(), clock.clone())),
            policy_store,
            store: store.clone(),
            scheduler,
            events,
            catalog,
            directories,
            oracle: store,
            directory_store: Arc::new(DynamoStore::new(dynamodb, &config.table_name)),
            clock,
            policy: GrantPolicy::from_config(config),
            identity: config.identity.clone(),
            slack,
        })
    }

    pub fn ctx(&self) -> GrantContext<'_> {
        GrantContext {
            store: self.store.as_ref(),
            scheduler: self.scheduler.as_ref(),
            events: self.events.as_ref(),
            catalog: self.catalog.as_ref(),
            directories: self.directories.as_ref(),
            oracle: self.oracle.as_ref(),
            directory_store: self.directory_store.as_ref(),
            policies: self.policies.as_ref(),
            clock: self.clock.as_ref(),
            policy: &self.policy,
        }
    }
}

/// Integrations (Secrets Manager, by tag) and their JumpCloud clients: built once per container.
pub fn integrations(
    sdk: &aws_config::SdkConfig,
    config: &crate::config::Config,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    http: reqwest::Client,
) -> (
    std::sync::Arc<dyn crate::ports::IntegrationCatalog>,
    std::sync::Arc<crate::adapters::jumpcloud::JumpCloudDirectories>,
) {
    let catalog: std::sync::Arc<dyn crate::ports::IntegrationCatalog> =
        std::sync::Arc::new(crate::adapters::secrets_manager::SecretsManagerCatalog::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            &config.secret_tag_key,
            &config.secret_tag_value,
            config.secrets_cache_ttl,
            clock,
        ));
    let directories = std::sync::Arc::new(crate::adapters::jumpcloud::JumpCloudDirectories::new(
        http,
        config.jumpcloud_api_url.clone(),
        config.jumpcloud_insights_url.clone(),
        config.jumpcloud.clone(),
        catalog.clone(),
    ));
    (catalog, directories)
}

/// The container's one HTTP client (connection pool), shared by every integration's JumpCloud
/// client and by Slack's.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("jit-access/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client builds")
}
