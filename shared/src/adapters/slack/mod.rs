//! Slack approvals (SPEC "People's interfaces", optional): requests awaiting approval are posted
//! to Slack with Approve / Deny buttons, the clicks come back to `POST /slack/interactions`
//! (`handlers/slack.rs`), and the messages follow the request to its end.
//!
//! Built only with `SLACK_ENABLED` (`wiring.rs`); then on when one Secrets Manager secret carries
//! the tag `SLACK_SECRET_TAG_KEY` = `SLACK_SECRET_TAG_VALUE` (`jit-access-slack` = `true`) with
//! `bot_token` and `signing_secret` ([`SlackAppSource`]; two such secrets: off, and logged). Nothing in the domain knows of
//! Slack: [`SlackEventBus`] decorates the event bus, so every path that publishes a request's
//! events (the API, `jitctl`, a Slack click, the request's expiry schedule and the sweep) drives the
//! messages the same way, after EventBridge has the event:
//! - `Approval Requested`: posted to the rule's `slack_channel` (the policy version and rule the
//!   request recorded), or else as a direct message to each approver found by
//!   `users.lookupByEmail` (at most [`MAX_DIRECT_MESSAGES`]); where each message is kept in the
//!   table ([`SlackMessageStore`]) to update it later;
//! - `Request Approved`, `Grant Created`, `Grant Failed`, `Request Denied`, `Request Cancelled`,
//!   `Request Expired`, `Grant Extended`, `Grant Expired`, `Grant Revoked` of a request that awaited
//!   approval: every message of the request updated (`chat.update`) with where it stands.
//!
//! Slack is a notification: a failure never fails a grant or a decision. It is logged as
//! `"event": "slack_failed"` with the method and Slack's error code (counted by the template's
//! `SlackFailures` metric filters) and the product goes on.

mod api;
pub mod blocks;
pub mod interaction;
pub mod signature;

pub use api::{PostedMessage, SlackApi, SlackError, SlackUser, CALL_TIMEOUT};

use crate::{
    clock::Clock,
    credentials::SlackSecret,
    domain::model::{ApprovalMode, EventType, Grant, GrantEvent, GrantEventDetail},
    ports::{EventBus, EventBusError, PolicyStore, SecretsError, StoreError},
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::sync::Arc;

/// Direct messages per request at most (an approver group can be large); the rest are logged.
pub const MAX_DIRECT_MESSAGES: usize = 25;
/// Slack calls of one request in flight at once.
const CONCURRENT_CALLS: usize = 4;
/// How long a request's message references are kept (DynamoDB TTL), from the first post.
const MESSAGES_KEPT_DAYS: i64 = 90;

/// The Slack app's secret, if Slack is set up.
#[async_trait]
pub trait SlackAppSource: Send + Sync {
    /// `None`: Slack is off (no secret carries the tag, or more than one does).
    async fn current(&self) -> Result<Option<Arc<SlackSecret>>, SecretsError>;
}

/// Where a request's Slack messages are, to update them.
#[async_trait]
pub trait SlackMessageStore: Send + Sync {
    /// Adds messages of the request (kept until `keep_until`).
    async fn record(
        &self,
        grant_id: &str,
        messages: &[PostedMessage],
        keep_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Every message recorded for the request, in the order posted.
    async fn messages(&self, grant_id: &str) -> Result<Vec<PostedMessage>, StoreError>;
}

/// Slack approvals: the app's secret, the Web API, and where the messages are.
pub struct SlackApprovals {
    app: Arc<dyn SlackAppSource>,
    api: SlackApi,
    messages: Arc<dyn SlackMessageStore>,
    /// The versions of the access policy: the rule a request recorded names its `slack_channel`.
    policies: Arc<dyn PolicyStore>,
    clock: Arc<dyn Clock>,
}

/// Logs a Slack call that failed (`event = "slack_failed"`, counted by the template).
fn failed(grant_id: &str, error: &dyn std::fmt::Display, what: &str) {
    tracing::warn!(event = "slack_failed", grant_id, error = %error, "Slack: {what}");
}

impl SlackApprovals {
    pub fn new(
        app: Arc<dyn SlackAppSource>,
        api: SlackApi,
        messages: Arc<dyn SlackMessageStore>,
        policies: Arc<dyn PolicyStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { app, api, messages, policies, clock }
    }

    pub fn api(&self) -> &SlackApi {
        &self.api
    }

    /// The app's secret; `None` when Slack is off.
    pub async fn app(&self) -> Result<Option<Arc<SlackSecret>>, SecretsError> {
        self.app.current().await
    }

    /// Follows one published event (see the module's list); never fails.
    pub async fn on_event(&self, event: &GrantEvent) {
        let announce = match event.detail_type {
            EventType::ApprovalRequested => true,
            EventType::RequestApproved
            | EventType::GrantCreated
            | EventType::GrantFailed
            | EventType::RequestDenied
            | EventType::RequestCancelled
            | EventType::RequestExpired
            | EventType::GrantExtended
            | EventType::GrantExpired
            | EventType::GrantRevoked => false,
            _ => return,
        };
        let Ok(detail) = serde_json::from_value::<GrantEventDetail>(event.detail.clone()) else { return };
        let grant = detail.grant;
        // Only requests that awaited approval have messages.
        if grant.approval != ApprovalMode::Approvers {
            return;
        }
        let app = match self.app().await {
            Ok(Some(app)) => app,
            Ok(None) => return,
            Err(e) => return failed(&grant.id, &e, "the Slack secret could not be read"),
        };
        if announce {
            self.announce(&app, &grant).await;
        } else {
            self.refresh(&app, &grant).await;
        }
    }

    /// Posts a request awaiting approval to its rule's channel, or to each approver.
    pub async fn announce(&self, app: &SlackSecret, grant: &Grant) {
        let token = &app.bot_token;
        let targets = match self.channel_of(grant).await {
            Some(channel) => vec![channel],
            None => self.approvers_in_slack(app, grant).await,
        };
        if targets.is_empty() {
            tracing::warn!(grant_id = %grant.id, "Slack: no approver of the request has a Slack account; nothing posted");
            return;
        }
        let (text, blocks) = blocks::render(grant);
        let posts: Vec<_> = targets.iter().map(|target| self.api.post_message(token, target, &text, &blocks)).collect();
        let results: Vec<_> = futures::stream::iter(posts).buffered(CONCURRENT_CALLS).collect().await;
        let mut posted = Vec::new();
        for (result, target) in results.into_iter().zip(&targets) {
            match result {
                Ok(message) => posted.push(message),
                Err(e) => failed(&grant.id, &e, &format!("could not post the request to {target}")),
            }
        }
        if posted.is_empty() {
            return;
        }
        let keep_until = self.clock.now() + chrono::Duration::days(MESSAGES_KEPT_DAYS);
        if let Err(e) = self.messages.record(&grant.id, &posted, keep_until).await {
            failed(&grant.id, &e, "the posted messages could not be recorded: they will not be updated");
        }
        tracing::info!(grant_id = %grant.id, messages = posted.len(), "request posted to Slack");
    }

    /// Updates every message of the request with where it stands.
    pub async fn refresh(&self, app: &SlackSecret, grant: &Grant) {
        let messages = match self.messages.messages(&grant.id).await {
            Ok(messages) => messages,
            Err(e) => return failed(&grant.id, &e, "the request's messages could not be read"),
        };
        if messages.is_empty() {
            return;
        }
        let (text, blocks) = blocks::render(grant);
        let updates: Vec<_> =
            messages.iter().map(|message| self.api.update(&app.bot_token, message, &text, &blocks)).collect();
        let results: Vec<_> = futures::stream::iter(updates).buffered(CONCURRENT_CALLS).collect().await;
        for (result, message) in results.into_iter().zip(&messages) {
            if let Err(e) = result {
                failed(&grant.id, &e, &format!("could not update the message in {}", message.channel));
            }
        }
    }

    /// The rule's `slack_channel`, from the policy version the request was decided by.
    async fn channel_of(&self, grant: &Grant) -> Option<String> {
        let policy = grant.policy?;
        match self.policies.version(policy.version).await {
            Ok(Some(applied)) => applied.policy.rules.get(policy.rule).and_then(|r| r.slack_channel.clone()),
            Ok(None) => None,
            Err(e) => {
                failed(&grant.id, &e, "the request's policy version could not be read: posting to the approvers");
                None
            }
        }
    }

    /// The Slack users of the request's approvers, by email.
    async fn approvers_in_slack(&self, app: &SlackSecret, grant: &Grant) -> Vec<String> {
        if grant.approvers.len() > MAX_DIRECT_MESSAGES {
            tracing::warn!(grant_id = %grant.id, approvers = grant.approvers.len(),
                "Slack: more approvers than direct messages sent; set the rule's slack_channel");
        }
        let emails: Vec<&String> = grant.approvers.iter().take(MAX_DIRECT_MESSAGES).collect();
        let lookups: Vec<_> = emails.iter().map(|email| self.api.lookup_by_email(&app.bot_token, email)).collect();
        let results: Vec<_> = futures::stream::iter(lookups).buffered(CONCURRENT_CALLS).collect().await;
        let mut users = Vec::new();
        for (found, email) in results.into_iter().zip(emails) {
            match found {
                Ok(Some(user)) => users.push(user),
                Ok(None) => {
                    tracing::info!(grant_id = %grant.id, approver = %email, "Slack: the approver has no Slack account")
                }
                Err(e) => failed(&grant.id, &e, &format!("could not look up the approver {email}")),
            }
        }
        users
    }
}

/// The event bus, then Slack: every event is published as before; those of requests awaiting
/// approval then drive their Slack messages ([`SlackApprovals::on_event`]). Slack never changes
/// the publication's result.
pub struct SlackEventBus {
    inner: Arc<dyn EventBus>,
    slack: Arc<SlackApprovals>,
}

impl SlackEventBus {
    pub fn new(inner: Arc<dyn EventBus>, slack: Arc<SlackApprovals>) -> Self {
        Self { inner, slack }
    }
}

#[async_trait]
impl EventBus for SlackEventBus {
    async fn publish(&self, events: &[GrantEvent]) -> Result<(), EventBusError> {
        let published = self.inner.publish(events).await;
        for event in events {
            self.slack.on_event(event).await;
        }
        published
    }
}
