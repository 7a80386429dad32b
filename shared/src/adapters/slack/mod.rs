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
//!   approval: every message of the request updated (`chat.update`) with where it stands;
//! - `Extension Requested` (an active grant's extension awaiting approval, whatever the grant's
//!   own approval was): posted as a message of its own ([`blocks::render_extension`]) to the
//!   channel of the applied policy's rule for the group (the rule the extension was decided by),
//!   or else to each of the extension's approvers; kept apart from the request's messages, one
//!   set per extension ([`extension_subject`]). `Grant Extended` / `Request Denied` carrying the
//!   extension decided, and `Grant Expired` / `Grant Revoked` of a grant whose extension still
//!   awaited approval, update them.
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
    domain::model::{ApprovalMode, EventType, Grant, GrantEvent, GrantEventDetail, PendingExtension},
    domain::policy::GroupRef,
    ports::{EventBus, EventBusError, PolicyStore, SecretsError, StoreError},
};
use async_trait::async_trait;
use blocks::ExtensionState;
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

/// Where a request's (or an extension's) Slack messages are, to update them. `subject`: the grant
/// id for its request's messages, [`extension_subject`] for one extension's.
#[async_trait]
pub trait SlackMessageStore: Send + Sync {
    /// Adds messages of the subject (kept until `keep_until`).
    async fn record(
        &self,
        subject: &str,
        messages: &[PostedMessage],
        keep_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Every message recorded for the subject, in the order posted.
    async fn messages(&self, subject: &str) -> Result<Vec<PostedMessage>, StoreError>;
}

/// Where one extension's messages are kept: apart from the request's, by its request time.
pub fn extension_subject(grant_id: &str, requested_at: DateTime<Utc>) -> String {
    format!("{grant_id}#extension#{}", blocks::stamp(requested_at))
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
        let of_request = match event.detail_type {
            EventType::ApprovalRequested
            | EventType::RequestApproved
            | EventType::GrantCreated
            | EventType::GrantFailed
            | EventType::RequestDenied
            | EventType::RequestCancelled
            | EventType::RequestExpired
            | EventType::GrantExtended
            | EventType::GrantExpired
            | EventType::GrantRevoked => true,
            EventType::ExtensionRequested => false,
            _ => return,
        };
        let Ok(detail) = serde_json::from_value::<GrantEventDetail>(event.detail.clone()) else { return };
        let grant = &detail.grant;
        // An extension's messages: which extension, and where it now stands.
        let extension = match event.detail_type {
            EventType::ExtensionRequested => grant.pending_extension.clone().map(|p| (p, ExtensionState::Awaiting)),
            EventType::GrantExtended => detail.extension.clone().map(|p| (p, ExtensionState::Approved)),
            EventType::RequestDenied => detail.extension.clone().map(|p| (p, ExtensionState::Denied)),
            EventType::GrantExpired | EventType::GrantRevoked => {
                grant.pending_extension.clone().map(|p| (p, ExtensionState::GrantEnded))
            }
            _ => None,
        };
        // Only requests that awaited approval have messages; a denied extension leaves its
        // request's as they were.
        let request = of_request
            && grant.approval == ApprovalMode::Approvers
            && !(event.detail_type == EventType::RequestDenied && detail.extension.is_some());
        if !request && extension.is_none() {
            return;
        }
        let app = match self.app().await {
            Ok(Some(app)) => app,
            Ok(None) => return,
            Err(e) => return failed(&grant.id, &e, "the Slack secret could not be read"),
        };
        if request && event.detail_type == EventType::ApprovalRequested {
            self.announce(&app, grant).await;
        } else if request {
            self.refresh(&app, grant).await;
        }
        match extension {
            Some((ext, ExtensionState::Awaiting)) => self.announce_extension(&app, grant, &ext).await,
            Some((ext, state)) => self.refresh_extension(&app, grant, &ext, state).await,
            None => {}
        }
    }

    /// Posts a request awaiting approval to its rule's channel, or to each approver.
    pub async fn announce(&self, app: &SlackSecret, grant: &Grant) {
        let targets = match self.channel_of(grant).await {
            Some(channel) => vec![channel],
            None => self.approvers_in_slack(app, &grant.id, &grant.approvers).await,
        };
        let (text, blocks) = blocks::render(grant);
        self.post(app, &grant.id, &grant.id, &targets, &text, &blocks).await;
    }

    /// Posts an extension awaiting approval to the channel of the applied rule for the grant's
    /// group, or to each of the extension's approvers.
    pub async fn announce_extension(&self, app: &SlackSecret, grant: &Grant, ext: &PendingExtension) {
        let targets = match self.current_channel(grant).await {
            Some(channel) => vec![channel],
            None => self.approvers_in_slack(app, &grant.id, &ext.approvers).await,
        };
        let (text, blocks) = blocks::render_extension(grant, ext, ExtensionState::Awaiting);
        self.post(app, &grant.id, &extension_subject(&grant.id, ext.at), &targets, &text, &blocks).await;
    }

    /// Posts one message to each target and records where they are, under `subject`.
    async fn post(
        &self,
        app: &SlackSecret,
        grant_id: &str,
        subject: &str,
        targets: &[String],
        text: &str,
        blocks: &serde_json::Value,
    ) {
        if targets.is_empty() {
            tracing::warn!(grant_id, "Slack: no approver has a Slack account; nothing posted");
            return;
        }
        let token = &app.bot_token;
        let posts: Vec<_> = targets.iter().map(|target| self.api.post_message(token, target, text, blocks)).collect();
        let results: Vec<_> = futures::stream::iter(posts).buffered(CONCURRENT_CALLS).collect().await;
        let mut posted = Vec::new();
        for (result, target) in results.into_iter().zip(targets) {
            match result {
                Ok(message) => posted.push(message),
                Err(e) => failed(grant_id, &e, &format!("could not post to {target}")),
            }
        }
        if posted.is_empty() {
            return;
        }
        let keep_until = self.clock.now() + chrono::Duration::days(MESSAGES_KEPT_DAYS);
        if let Err(e) = self.messages.record(subject, &posted, keep_until).await {
            failed(grant_id, &e, "the posted messages could not be recorded: they will not be updated");
        }
        tracing::info!(grant_id, messages = posted.len(), "posted to Slack");
    }

    /// Updates every message of the extension with where it stands.
    pub async fn refresh_extension(
        &self,
        app: &SlackSecret,
        grant: &Grant,
        ext: &PendingExtension,
        state: ExtensionState,
    ) {
        let (text, blocks) = blocks::render_extension(grant, ext, state);
        self.update_all(app, &grant.id, &extension_subject(&grant.id, ext.at), &text, &blocks).await;
    }

    /// Updates every message of the request with where it stands.
    pub async fn refresh(&self, app: &SlackSecret, grant: &Grant) {
        let (text, blocks) = blocks::render(grant);
        self.update_all(app, &grant.id, &grant.id, &text, &blocks).await;
    }

    /// Updates every message recorded under `subject` to `text` and `blocks`.
    async fn update_all(
        &self,
        app: &SlackSecret,
        grant_id: &str,
        subject: &str,
        text: &str,
        blocks: &serde_json::Value,
    ) {
        let messages = match self.messages.messages(subject).await {
            Ok(messages) => messages,
            Err(e) => return failed(grant_id, &e, "the messages could not be read"),
        };
        let updates: Vec<_> =
            messages.iter().map(|message| self.api.update(&app.bot_token, message, text, blocks)).collect();
        let results: Vec<_> = futures::stream::iter(updates).buffered(CONCURRENT_CALLS).collect().await;
        for (result, message) in results.into_iter().zip(&messages) {
            if let Err(e) = result {
                failed(grant_id, &e, &format!("could not update the message in {}", message.channel));
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

    /// The `slack_channel` of the applied policy's rule for the grant's group: the rule an
    /// extension is decided by (`domain::extension`).
    async fn current_channel(&self, grant: &Grant) -> Option<String> {
        let group = GroupRef { id: &grant.group.id, name: &grant.group.name };
        match self.policies.applied().await {
            Ok(applied) => applied?.policy.rule_for(&group).and_then(|r| r.slack_channel.clone()),
            Err(e) => {
                failed(&grant.id, &e, "the applied policy could not be read: posting to the approvers");
                None
            }
        }
    }

    /// The Slack users of `approvers`, by email (at most [`MAX_DIRECT_MESSAGES`]).
    async fn approvers_in_slack(&self, app: &SlackSecret, grant_id: &str, approvers: &[String]) -> Vec<String> {
        if approvers.len() > MAX_DIRECT_MESSAGES {
            tracing::warn!(
                grant_id,
                approvers = approvers.len(),
                "Slack: more approvers than direct messages sent; set the rule's slack_channel"
            );
        }
        let emails: Vec<&String> = approvers.iter().take(MAX_DIRECT_MESSAGES).collect();
        let lookups: Vec<_> = emails.iter().map(|email| self.api.lookup_by_email(&app.bot_token, email)).collect();
        let results: Vec<_> = futures::stream::iter(lookups).buffered(CONCURRENT_CALLS).collect().await;
        let mut users = Vec::new();
        for (found, email) in results.into_iter().zip(emails) {
            match found {
                Ok(Some(user)) => users.push(user),
                Ok(None) => tracing::info!(grant_id, approver = %email, "Slack: the approver has no Slack account"),
                Err(e) => failed(grant_id, &e, &format!("could not look up the approver {email}")),
            }
        }
        users
    }
}

/// The event bus, then Slack: every event is published as before; those of requests and
/// extensions awaiting approval then drive their Slack messages ([`SlackApprovals::on_event`]). Slack never changes
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
