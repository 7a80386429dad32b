//! EventBridge Scheduler: the grants' one-time expiry schedules ([`EventBridgeScheduler`], the
//! [`ExpiryScheduler`] adapter). The local stand-in that delivers them (moto stores schedules but
//! never fires them) is `jit_schedule_runner::ScheduleRunner` in `devtools/schedule-runner`, behind
//! `jitctl run-schedules`: a development tool the functions do not link.

use crate::{
    config::{Config, ConfigError},
    domain::model::{expiry_schedule_expression, reminder_schedule_name, schedule_name_for, ExpiryInput, Grant},
    ports::{ExpiryScheduler, SchedulerError},
};
use async_trait::async_trait;
use aws_sdk_scheduler::{
    error::DisplayErrorContext,
    types::{
        ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy,
        ScheduleState, Target,
    },
};
use chrono::{DateTime, Utc};

/// Retries of an expiry schedule's delivery. Scheduler invokes Lambda asynchronously, so these
/// cover getting the event into Lambda's queue (throttling, a Lambda service error); failures of
/// `revoke` itself are retried by the function's own `EventInvokeConfig` (see the template). 185
/// is Scheduler's maximum: the event age below is the bound that matters.
pub const EXPIRY_MAX_RETRY_ATTEMPTS: i32 = 185;

/// One hour rather than Scheduler's default of a day. The sweep ends an expired grant within a
/// minute whether or not its schedule fires (invariant 1), so a delivery hours late adds nothing;
/// a delivery path broken for an hour (a throttled or misconfigured function) should reach the
/// dead-letter queue, whose alarm fires, instead of retrying silently for a day. The same bound as
/// `revoke`'s `MaximumEventAgeInSeconds`.
pub const EXPIRY_MAX_EVENT_AGE_SECS: i32 = 3_600;

/// Scheduler's limit on a schedule's description.
const MAX_DESCRIPTION_CHARS: usize = 512;

/// The environment variable of the expiry schedules' dead-letter queue (set by the template on
/// the grant function); read by the caller and passed to [`EventBridgeScheduler::new`].
pub const SCHEDULE_DLQ_ARN_VAR: &str = "SCHEDULE_DLQ_ARN";

/// A Scheduler client for the SDK configuration (for callers that do not depend on the SDK crate).
pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_scheduler::Client {
    aws_sdk_scheduler::Client::new(sdk)
}

/// Where an expiry schedule delivers: the `revoke` function, through the role Scheduler assumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryTarget {
    pub revoke_function_arn: String,
    pub role_arn: String,
    /// An SQS queue for deliveries that fail for good (`Target.DeadLetterConfig`).
    pub dead_letter_arn: Option<String>,
}

/// The [`ExpiryScheduler`] over EventBridge Scheduler: one-time schedules in the group
/// `SCHEDULE_GROUP`.
#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    client: aws_sdk_scheduler::Client,
    group: String,
    /// `None`: built with [`Self::delete_only`].
    target: Option<ExpiryTarget>,
}

impl EventBridgeScheduler {
    /// For the `grant` function, which creates schedules: fails, naming the variable, without
    /// `REVOKE_FUNCTION_ARN` (a Lambda function ARN) or `SCHEDULER_ROLE_ARN` (an IAM role ARN),
    /// or with a `dead_letter_arn` (`SCHEDULE_DLQ_ARN`, empty = none) that is not an SQS ARN.
    pub fn new(
        client: aws_sdk_scheduler::Client,
        config: &Config,
        dead_letter_arn: Option<String>,
    ) -> Result<Self, ConfigError> {
        let revoke_function_arn = required_arn(
            config.revoke_function_arn.as_deref(),
            "REVOKE_FUNCTION_ARN",
            "lambda",
            "the revoke function that the expiry schedules invoke",
        )?;
        let role_arn = required_arn(
            config.scheduler_role_arn.as_deref(),
            "SCHEDULER_ROLE_ARN",
            "iam",
            "the role EventBridge Scheduler assumes to invoke revoke",
        )?;
        let dead_letter_arn = match dead_letter_arn.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            None => None,
            Some(arn) => Some(
                check_arn(arn, "sqs")
                    .map(str::to_owned)
                    .map_err(|reason| ConfigError { var: SCHEDULE_DLQ_ARN_VAR, reason })?,
            ),
        };
        Ok(Self {
            client,
            group: config.schedule_group.clone(),
            target: Some(ExpiryTarget { revoke_function_arn, role_arn, dead_letter_arn }),
        })
    }

    /// For functions that only delete schedules (`revoke`): `create` fails with an error that says
    /// why, `delete` works.
    pub fn delete_only(client: aws_sdk_scheduler::Client, group: impl Into<String>) -> Self {
        Self { client, group: group.into(), target: None }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn target(&self) -> Option<&ExpiryTarget> {
        self.target.as_ref()
    }
}

fn required_arn(value: Option<&str>, var: &'static str, service: &str, what: &str) -> Result<String, ConfigError> {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError { var, reason: format!("required to schedule grant expiry: the ARN of {what}") })?;
    check_arn(value, service).map(str::to_owned).map_err(|reason| ConfigError { var, reason })
}

/// `arn:<partition>:<service>:...` with six or more parts.
fn check_arn<'a>(arn: &'a str, service: &str) -> Result<&'a str, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() >= 6 && parts[0] == "arn" && !parts[1].is_empty() && parts[2] == service {
        Ok(arn)
    } else {
        Err(format!("{arn:?} is not an ARN of {service} (arn:aws:{service}:...)"))
    }
}

/// Names the grant, never its reason or the user's email (anyone who may read schedules sees it).
fn description(grant: &Grant, what: &str) -> String {
    let text = format!(
        "jit-access: {what} grant {} (integration {}, group {}, user {}) at {}",
        grant.id,
        grant.integration,
        grant.group.name,
        grant.user.id,
        grant.expiry().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    text.chars().take(MAX_DESCRIPTION_CHARS).collect()
}

/// Maps an SDK error to a [`SchedulerError`] that says what was being done (`what`) and why.
pub fn scheduler_error<E>(what: String) -> impl FnOnce(E) -> SchedulerError
where
    E: std::error::Error + 'static,
{
    move |e| SchedulerError(format!("{what}: {}", DisplayErrorContext(e)))
}

/// Deletes a schedule; one that does not exist is success.
pub async fn delete_schedule(
    client: &aws_sdk_scheduler::Client,
    group: &str,
    name: &str,
) -> Result<(), SchedulerError> {
    match client.delete_schedule().group_name(group).name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
        Err(e) => Err(scheduler_error(format!("deleting schedule {name} of group {group}"))(e)),
    }
}

impl EventBridgeScheduler {
    /// One one-time schedule targeting the `revoke` function.
    async fn create_one_time(
        &self,
        name: String,
        at: DateTime<Utc>,
        input: String,
        description: String,
    ) -> Result<String, SchedulerError> {
        let target = self.target.as_ref().ok_or_else(|| {
            SchedulerError(
                "this function cannot create expiry schedules: REVOKE_FUNCTION_ARN and SCHEDULER_ROLE_ARN are not \
                 configured for it"
                    .into(),
            )
        })?;
        let retry = RetryPolicy::builder()
            .maximum_retry_attempts(EXPIRY_MAX_RETRY_ATTEMPTS)
            .maximum_event_age_in_seconds(EXPIRY_MAX_EVENT_AGE_SECS)
            .build();
        let dead_letter =
            target.dead_letter_arn.as_ref().map(|arn| DeadLetterConfig::builder().arn(arn.clone()).build());
        let target = Target::builder()
            .arn(&target.revoke_function_arn)
            .role_arn(&target.role_arn)
            .input(input)
            .retry_policy(retry)
            .set_dead_letter_config(dead_letter)
            .build()
            .map_err(|e| SchedulerError(format!("schedule target: {e}")))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| SchedulerError(format!("flexible time window: {e}")))?;
        let created = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.group)
            .schedule_expression(expiry_schedule_expression(at))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .state(ScheduleState::Enabled)
            .description(description)
            .target(target)
            .send()
            .await;
        match created {
            Ok(_) => Ok(name),
            // The name is the grant's: an existing schedule is this grant's (a retried request).
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => Ok(name),
            Err(e) => Err(scheduler_error(format!("creating schedule {name} in group {}", self.group))(e)),
        }
    }
}

#[async_trait]
impl ExpiryScheduler for EventBridgeScheduler {
    async fn create(&self, grant: &Grant) -> Result<String, SchedulerError> {
        let input = serde_json::to_string(&ExpiryInput::expire(&grant.id)).expect("expiry input serializes");
        self.create_one_time(schedule_name_for(grant), grant.expiry(), input, description(grant, "ends")).await
    }

    async fn create_reminder(&self, grant: &Grant, at: DateTime<Utc>) -> Result<String, SchedulerError> {
        let input = serde_json::to_string(&ExpiryInput::remind(&grant.id)).expect("reminder input serializes");
        self.create_one_time(reminder_schedule_name(&grant.id), at, input, description(grant, "reminds of the end of"))
            .await
    }

    async fn delete(&self, name: &str) -> Result<(), SchedulerError> {
        delete_schedule(&self.client, &self.group, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_checked_by_service() {
        assert!(check_arn("arn:aws:sqs:us-east-1:123456789012:dlq", "sqs").is_ok());
        assert!(check_arn("arn:aws-cn:iam::123456789012:role/r", "iam").is_ok());
        assert!(check_arn("arn:aws:sns:us-east-1:123456789012:topic", "sqs").is_err());
        assert!(check_arn("dlq", "sqs").is_err());
    }
}
