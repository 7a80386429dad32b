//! EventBridge Scheduler: the grants' one-time expiry schedules ([`EventBridgeScheduler`], the
//! [`ExpiryScheduler`] adapter) and, for the local stack, the runner that delivers them
//! ([`ScheduleRunner`], behind `jitctl run-schedules`): moto stores schedules but never fires them.
//!
//! The runner reads the schedules back through the same API (`ListSchedules`, `GetSchedule`), so a
//! local delivery follows what the schedule says (its `at()` time, target, input, retry policy and
//! `ActionAfterCompletion`), not what the grant function meant to write.

use crate::{
    clock::Clock,
    config::{Config, ConfigError},
    domain::model::{expiry_schedule_expression, expiry_schedule_name, ExpiryInput, Grant},
    ports::{ExpiryScheduler, SchedulerError},
};
use async_trait::async_trait;
use aws_sdk_scheduler::{
    error::DisplayErrorContext,
    operation::get_schedule::GetScheduleOutput,
    types::{
        ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy,
        ScheduleState, Target,
    },
};
use chrono::{DateTime, NaiveDateTime, Utc};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    future::Future,
    sync::Arc,
    time::Duration,
};

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
fn description(grant: &Grant) -> String {
    let text = format!(
        "jit-access: ends grant {} (integration {}, group {}, user {}) at {}",
        grant.id,
        grant.integration,
        grant.group.name,
        grant.user.id,
        grant.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    text.chars().take(MAX_DESCRIPTION_CHARS).collect()
}

fn scheduler_error<E>(what: String) -> impl FnOnce(E) -> SchedulerError
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

#[async_trait]
impl ExpiryScheduler for EventBridgeScheduler {
    async fn create(&self, grant: &Grant) -> Result<String, SchedulerError> {
        let target = self.target.as_ref().ok_or_else(|| {
            SchedulerError(
                "this function cannot create expiry schedules: REVOKE_FUNCTION_ARN and SCHEDULER_ROLE_ARN are not \
                 configured for it"
                    .into(),
            )
        })?;
        let name = expiry_schedule_name(&grant.id);
        let input = serde_json::to_string(&ExpiryInput::expire(&grant.id)).expect("expiry input serializes");
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
            .schedule_expression(expiry_schedule_expression(grant.expires_at))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .state(ScheduleState::Enabled)
            .description(description(grant))
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

    async fn delete(&self, name: &str) -> Result<(), SchedulerError> {
        delete_schedule(&self.client, &self.group, name).await
    }
}

// ---------------------------------------------------------------------------------------------
// The local runner: delivers due one-time schedules to the functions `cargo lambda watch` serves.

/// The sweep schedule's input, exactly as `infra/template.yaml` sends it to `revoke`.
pub const SWEEP_INPUT: &str = r#"{"source": "jit-access.sweep", "detail-type": "Sweep Expired Grants", "detail": {}}"#;
/// The local function the sweep goes to.
pub const SWEEP_FUNCTION: &str = "revoke";
/// The functions of this workspace (binaries `cargo lambda watch` serves).
pub const LOCAL_FUNCTIONS: [&str; 3] = ["sync", "grant", "revoke"];

/// The time of a one-time expression, `at(yyyy-mm-ddThh:mm:ss)`, read in UTC.
pub fn parse_at_expression(expression: &str) -> Option<DateTime<Utc>> {
    let inner = expression.trim().strip_prefix("at(")?.strip_suffix(')')?;
    NaiveDateTime::parse_from_str(inner.trim(), "%Y-%m-%dT%H:%M:%S").ok().map(|t| t.and_utc())
}

/// A one-time schedule whose time has come, as `GetSchedule` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSchedule {
    pub group: String,
    pub name: String,
    pub at: DateTime<Utc>,
    pub target_arn: String,
    /// `Target.Input` (`{}` when the schedule has none).
    pub input: String,
    /// `ActionAfterCompletion` is `DELETE`.
    pub delete_after_completion: bool,
    /// `RetryPolicy.MaximumRetryAttempts` (Scheduler's default 185 when unset).
    pub max_retries: u32,
    /// `RetryPolicy.MaximumEventAgeInSeconds` (Scheduler's default 24 hours when unset).
    pub max_event_age: chrono::Duration,
    pub dead_letter_arn: Option<String>,
}

impl DueSchedule {
    /// From a `GetSchedule` answer: `None` unless it is an enabled one-time schedule in UTC due at
    /// or before `now`.
    pub fn from_output(group: &str, name: &str, schedule: &GetScheduleOutput, now: DateTime<Utc>) -> Option<Self> {
        if schedule.state().is_some_and(|s| *s != ScheduleState::Enabled) {
            return None;
        }
        let expression = schedule.schedule_expression()?;
        let Some(at) = parse_at_expression(expression) else {
            tracing::debug!(schedule = name, expression, "not a one-time schedule: not delivered by the runner");
            return None;
        };
        if !matches!(schedule.schedule_expression_timezone(), None | Some("UTC" | "Etc/UTC")) {
            tracing::warn!(schedule = name, timezone = ?schedule.schedule_expression_timezone(), "schedule not in UTC: skipped");
            return None;
        }
        if at > now {
            return None;
        }
        let target = schedule.target()?;
        let retry = target.retry_policy();
        Some(Self {
            group: group.to_owned(),
            name: name.to_owned(),
            at,
            target_arn: target.arn().to_owned(),
            input: target.input().unwrap_or("{}").to_owned(),
            delete_after_completion: schedule.action_after_completion() == Some(&ActionAfterCompletion::Delete),
            max_retries: retry.and_then(|r| r.maximum_retry_attempts()).unwrap_or(185).max(0) as u32,
            max_event_age: chrono::Duration::seconds(
                retry.and_then(|r| r.maximum_event_age_in_seconds()).unwrap_or(86_400).into(),
            ),
            dead_letter_arn: target.dead_letter_config().and_then(|d| d.arn()).map(str::to_owned),
        })
    }
}

/// The enabled one-time schedules of `group` due at or before `now`, earliest first: every page
/// of `ListSchedules`, then `GetSchedule` for each (a schedule deleted in between is skipped).
pub async fn due_schedules(
    client: &aws_sdk_scheduler::Client,
    group: &str,
    now: DateTime<Utc>,
) -> Result<Vec<DueSchedule>, SchedulerError> {
    let mut names = Vec::new();
    let mut pages = client.list_schedules().group_name(group).state(ScheduleState::Enabled).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(scheduler_error(format!("listing the schedules of group {group}")))?;
        names.extend(page.schedules().iter().filter_map(|s| s.name().map(str::to_owned)));
    }
    let mut due = Vec::new();
    for name in names {
        match client.get_schedule().group_name(group).name(&name).send().await {
            Ok(schedule) => due.extend(DueSchedule::from_output(group, &name, &schedule, now)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(scheduler_error(format!("reading schedule {name} of group {group}"))(e)),
        }
    }
    due.sort_by(|a, b| (a.at, &a.name).cmp(&(b.at, &b.name)));
    Ok(due)
}

/// How the local Lambda endpoint answered one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub status: u16,
    /// Lambda's `X-Amz-Function-Error` header: the function failed although the call succeeded.
    pub function_error: Option<String>,
    /// The start of the answer, kept when the invocation failed (the function's error message).
    pub body_excerpt: String,
}

impl Invocation {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status) && self.function_error.is_none()
    }
}

/// Invokes a function with a JSON payload (Lambda's `Invoke`, synchronously). `Err` when no
/// answer came (connection refused, timeout).
#[async_trait]
pub trait LambdaInvoker: Send + Sync {
    async fn invoke(&self, function: &str, payload: &str) -> Result<Invocation, String>;
}

/// `POST {base_url}/2015-03-31/functions/{name}/invocations`: the Lambda API path that
/// `cargo lambda watch` serves.
#[derive(Debug, Clone)]
pub struct LocalLambda {
    http: reqwest::Client,
    base_url: String,
}

impl LocalLambda {
    /// `timeout` bounds one invocation; `cargo lambda watch` compiles a function on its first
    /// invocation, so allow minutes.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(base_url).map_err(|e| format!("{base_url:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{base_url:?} is not an http(s) URL"));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { http, base_url: base_url.trim_end_matches('/').to_owned() })
    }

    pub fn invocation_url(&self, function: &str) -> String {
        format!("{}/2015-03-31/functions/{function}/invocations", self.base_url)
    }
}

#[async_trait]
impl LambdaInvoker for LocalLambda {
    async fn invoke(&self, function: &str, payload: &str) -> Result<Invocation, String> {
        let response = self
            .http
            .post(self.invocation_url(function))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload.to_owned())
            .send()
            .await
            .map_err(|e| format!("invoking {function}: {e}"))?;
        let status = response.status().as_u16();
        let function_error =
            response.headers().get("x-amz-function-error").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.bytes().await.unwrap_or_default();
        let body_excerpt = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        Ok(Invocation { status, function_error, body_excerpt })
    }
}

/// Maps a target's Lambda ARN to the local function that stands for it.
///
/// In order: an explicit mapping (`--function-name-map stack-revoke=revoke`); a local function
/// of that very name; a local function the name ends with after a `-` (SAM and CDK name the
/// deployed functions `<stack>-revoke`: `jit-access-revoke` reaches `revoke`); else the name as
/// it is.
#[derive(Debug, Clone)]
pub struct FunctionNames {
    local: Vec<String>,
    mapped: BTreeMap<String, String>,
}

impl Default for FunctionNames {
    fn default() -> Self {
        Self::new(LOCAL_FUNCTIONS)
    }
}

impl FunctionNames {
    pub fn new<S: Into<String>>(local: impl IntoIterator<Item = S>) -> Self {
        Self { local: local.into_iter().map(Into::into).collect(), mapped: BTreeMap::new() }
    }

    /// The deployed function `deployed` is the local `local`.
    pub fn map(mut self, deployed: impl Into<String>, local: impl Into<String>) -> Self {
        self.mapped.insert(deployed.into(), local.into());
        self
    }

    /// `DEPLOYED=LOCAL` (a function name or ARN on the left).
    pub fn parse_mapping(spec: &str) -> Result<(String, String), String> {
        let (deployed, local) = spec.split_once('=').ok_or_else(|| format!("{spec:?} is not DEPLOYED=LOCAL"))?;
        let deployed = lambda_function_name(deployed.trim()).unwrap_or(deployed.trim());
        let local = local.trim();
        if deployed.is_empty() || local.is_empty() {
            return Err(format!("{spec:?} is not DEPLOYED=LOCAL"));
        }
        Ok((deployed.to_owned(), local.to_owned()))
    }

    pub fn resolve(&self, target_arn: &str) -> Result<String, String> {
        let name = lambda_function_name(target_arn)
            .ok_or_else(|| format!("target {target_arn:?} is not a Lambda function ARN: nothing to invoke locally"))?;
        if let Some(local) = self.mapped.get(name) {
            return Ok(local.clone());
        }
        if self.local.iter().any(|l| l == name) {
            return Ok(name.to_owned());
        }
        let suffixed = self
            .local
            .iter()
            .filter(|l| name.strip_suffix(l.as_str()).is_some_and(|prefix| prefix.ends_with('-')))
            .max_by_key(|l| l.len());
        Ok(suffixed.cloned().unwrap_or_else(|| name.to_owned()))
    }
}

/// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]` -> `<name>`.
pub fn lambda_function_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// What one delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The function answered with success; `deleted`: the schedule was then removed
    /// (`ActionAfterCompletion` `DELETE`).
    Delivered { deleted: bool },
    /// The invocation failed; the schedule is kept and delivered again on the next tick.
    Retrying { attempt: u32, max_attempts: u32, error: String },
    /// The retry policy is used up (attempts or event age): Scheduler would send the event to the
    /// dead-letter queue and complete the schedule.
    GaveUp { attempts: u32, error: String, deleted: bool },
    /// A delivery that is not retried (the sweep: the next one comes anyway).
    Failed { error: String },
    /// The target is not a Lambda function: left alone, reported once.
    Unroutable { error: String },
}

/// One delivery, for the runner's output: `schedule  function  status  outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The schedule's name (`sweep` for the sweep).
    pub schedule: String,
    pub function: String,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    pub outcome: DeliveryOutcome,
}

impl Delivery {
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Delivered { .. })
    }
}

impl fmt::Display for DeliveryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delivered { deleted: true } => f.write_str("delivered, schedule deleted"),
            Self::Delivered { deleted: false } => f.write_str("delivered"),
            Self::Retrying { attempt, max_attempts, error } => {
                write!(f, "failed (attempt {attempt} of {max_attempts}), kept for the next tick: {error}")
            }
            Self::GaveUp { attempts, error, deleted } => write!(
                f,
                "gave up after {attempts} attempt(s), {}: {error}",
                if *deleted { "schedule deleted" } else { "schedule kept" }
            ),
            Self::Failed { error } => write!(f, "failed: {error}"),
            Self::Unroutable { error } => write!(f, "skipped: {error}"),
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
        write!(f, "{:<48} {:<8} {:>4}  {}", self.schedule, self.function, status, self.outcome)
    }
}

fn invocation_error(result: &Result<Invocation, String>) -> Option<String> {
    match result {
        Err(e) => Some(e.clone()),
        Ok(i) if i.succeeded() => None,
        Ok(i) => {
            let mut error = match &i.function_error {
                Some(kind) => format!("function error ({kind})"),
                None => format!("HTTP {}", i.status),
            };
            let excerpt = i.body_excerpt.trim();
            if !excerpt.is_empty() {
                error.push_str(": ");
                error.push_str(excerpt);
            }
            Some(error)
        }
    }
}

/// Delivers one due schedule: invokes `function` with the schedule's input and, on success,
/// deletes the schedule when its `ActionAfterCompletion` is `DELETE`. A failed invocation keeps
/// the schedule (`attempt` counts this one) until the schedule's retry policy is used up
/// (`1 + MaximumRetryAttempts` attempts, or `MaximumEventAgeInSeconds` past its time at `now`).
pub async fn deliver(
    client: &aws_sdk_scheduler::Client,
    schedule: &DueSchedule,
    function: &str,
    invoker: &dyn LambdaInvoker,
    attempt: u32,
    now: DateTime<Utc>,
) -> Delivery {
    let result = invoker.invoke(function, &schedule.input).await;
    let status = result.as_ref().ok().map(|i| i.status);
    let delivery =
        |outcome| Delivery { schedule: schedule.name.clone(), function: function.to_owned(), status, outcome };
    let complete = || async {
        if !schedule.delete_after_completion {
            return false;
        }
        match delete_schedule(client, &schedule.group, &schedule.name).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(schedule = %schedule.name, error = %e, "delivered, but the schedule could not be deleted");
                false
            }
        }
    };
    let Some(error) = invocation_error(&result) else {
        return delivery(DeliveryOutcome::Delivered { deleted: complete().await });
    };
    let max_attempts = schedule.max_retries.saturating_add(1);
    if attempt >= max_attempts || now - schedule.at > schedule.max_event_age {
        tracing::error!(
            schedule = %schedule.name,
            function,
            attempts = attempt,
            dead_letter_queue = schedule.dead_letter_arn.as_deref().unwrap_or("none"),
            error = %error,
            "schedule delivery failed for good: Scheduler would send it to the dead-letter queue"
        );
        return delivery(DeliveryOutcome::GaveUp { attempts: attempt, error, deleted: complete().await });
    }
    delivery(DeliveryOutcome::Retrying { attempt, max_attempts, error })
}

/// How often [`ScheduleRunner::run`] looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    pub interval: Duration,
    /// `None`: no sweep.
    pub sweep_every: Option<Duration>,
}

/// Delivers the due schedules of one group, tick after tick, as EventBridge Scheduler would.
/// Remembers between ticks how often each schedule failed, and which ones were delivered but are
/// still there (`ActionAfterCompletion` `NONE`, or a failed delete) so that they are not
/// delivered twice.
pub struct ScheduleRunner {
    client: aws_sdk_scheduler::Client,
    group: String,
    functions: FunctionNames,
    invoker: Arc<dyn LambdaInvoker>,
    attempts: HashMap<String, u32>,
    completed: HashSet<String>,
    unroutable: HashSet<String>,
}

impl ScheduleRunner {
    pub fn new(
        client: aws_sdk_scheduler::Client,
        group: impl Into<String>,
        functions: FunctionNames,
        invoker: Arc<dyn LambdaInvoker>,
    ) -> Self {
        Self {
            client,
            group: group.into(),
            functions,
            invoker,
            attempts: HashMap::new(),
            completed: HashSet::new(),
            unroutable: HashSet::new(),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// One pass: delivers, one after the other, every schedule due at `now`.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<Vec<Delivery>, SchedulerError> {
        let due = due_schedules(&self.client, &self.group, now).await?;
        let present: HashSet<&str> = due.iter().map(|s| s.name.as_str()).collect();
        self.completed.retain(|n| present.contains(n.as_str()));
        self.attempts.retain(|n, _| present.contains(n.as_str()));
        self.unroutable.retain(|n| present.contains(n.as_str()));
        let mut deliveries = Vec::new();
        for schedule in &due {
            if self.completed.contains(&schedule.name) {
                // Delivered before; only the delete is outstanding (if any).
                if schedule.delete_after_completion
                    && delete_schedule(&self.client, &schedule.group, &schedule.name).await.is_ok()
                {
                    self.completed.remove(&schedule.name);
                }
                continue;
            }
            let function = match self.functions.resolve(&schedule.target_arn) {
                Ok(function) => function,
                Err(error) => {
                    if self.unroutable.insert(schedule.name.clone()) {
                        deliveries.push(Delivery {
                            schedule: schedule.name.clone(),
                            function: "-".into(),
                            status: None,
                            outcome: DeliveryOutcome::Unroutable { error },
                        });
                    }
                    continue;
                }
            };
            let attempt = self.attempts.get(&schedule.name).copied().unwrap_or(0) + 1;
            let delivery = deliver(&self.client, schedule, &function, self.invoker.as_ref(), attempt, now).await;
            match &delivery.outcome {
                DeliveryOutcome::Retrying { .. } => {
                    self.attempts.insert(schedule.name.clone(), attempt);
                }
                DeliveryOutcome::Delivered { deleted } | DeliveryOutcome::GaveUp { deleted, .. } => {
                    self.attempts.remove(&schedule.name);
                    if !deleted {
                        self.completed.insert(schedule.name.clone());
                    }
                }
                DeliveryOutcome::Failed { .. } | DeliveryOutcome::Unroutable { .. } => {}
            }
            deliveries.push(delivery);
        }
        Ok(deliveries)
    }

    /// Sends the sweep schedule's event ([`SWEEP_INPUT`]) to `revoke`.
    pub async fn sweep(&self) -> Delivery {
        let result = self.invoker.invoke(SWEEP_FUNCTION, SWEEP_INPUT).await;
        let status = result.as_ref().ok().map(|i| i.status);
        let outcome = match invocation_error(&result) {
            None => DeliveryOutcome::Delivered { deleted: false },
            Some(error) => DeliveryOutcome::Failed { error },
        };
        Delivery { schedule: "sweep".into(), function: SWEEP_FUNCTION.into(), status, outcome }
    }

    /// Ticks every `interval` (and sweeps every `sweep_every`, first at start) until `shutdown`
    /// completes; each delivery goes to `report`. A failed listing is logged and tried again on
    /// the next tick. Stopping in the middle of a delivery is safe: a schedule invoked but not yet
    /// deleted is delivered again next time, and revocation is idempotent.
    pub async fn run(
        &mut self,
        options: &RunOptions,
        clock: &dyn Clock,
        shutdown: impl Future<Output = ()>,
        mut report: impl FnMut(&Delivery),
    ) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(options.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_sweep = options.sweep_every.map(|_| tokio::time::Instant::now());
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            let work = async {
                match self.tick(clock.now()).await {
                    Ok(deliveries) => deliveries.iter().for_each(&mut report),
                    Err(e) => tracing::warn!(error = %e, "could not list the due schedules; trying again next tick"),
                }
                if let (Some(at), Some(every)) = (next_sweep, options.sweep_every) {
                    if tokio::time::Instant::now() >= at {
                        report(&self.sweep().await);
                        // From now, not from `at`: a stalled runner does not sweep back to back.
                        next_sweep = Some(tokio::time::Instant::now() + every);
                    }
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = work => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn at_expressions_parse_in_utc_and_others_do_not() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 1).unwrap();
        assert_eq!(parse_at_expression("at(2026-11-23T14:00:01)"), Some(at));
        assert_eq!(parse_at_expression(&expiry_schedule_expression(at)), Some(at));
        for other in ["rate(1 minute)", "cron(0 12 * * ? *)", "at(2026-11-23 14:00:01)", "at(soon)", ""] {
            assert_eq!(parse_at_expression(other), None, "{other}");
        }
    }

    #[test]
    fn function_names_follow_the_map_then_the_name_then_the_stack_prefix() {
        let names = FunctionNames::default().map("custom-name", "revoke");
        let arn = |name: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
        assert_eq!(names.resolve(&arn("revoke")).unwrap(), "revoke");
        assert_eq!(names.resolve(&arn("revoke:live")).unwrap(), "revoke", "a qualifier is not part of the name");
        assert_eq!(names.resolve(&arn("jit-access-revoke")).unwrap(), "revoke");
        assert_eq!(names.resolve(&arn("stack-grant")).unwrap(), "grant");
        assert_eq!(names.resolve(&arn("custom-name")).unwrap(), "revoke");
        assert_eq!(names.resolve(&arn("unrevoke")).unwrap(), "unrevoke", "a suffix counts only after a dash");
        assert_eq!(names.resolve(&arn("other")).unwrap(), "other");
        assert!(names.resolve("arn:aws:sqs:us-east-1:123456789012:queue").is_err());
        assert!(names.resolve("revoke").is_err());
    }

    #[test]
    fn mappings_parse_from_names_or_arns() {
        assert_eq!(
            FunctionNames::parse_mapping("stack-revoke=revoke").unwrap(),
            ("stack-revoke".into(), "revoke".into())
        );
        assert_eq!(
            FunctionNames::parse_mapping("arn:aws:lambda:us-east-1:123456789012:function:s-revoke = revoke").unwrap(),
            ("s-revoke".into(), "revoke".into())
        );
        for bad in ["revoke", "=revoke", "stack-revoke=", ""] {
            assert!(FunctionNames::parse_mapping(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arns_are_checked_by_service() {
        assert!(check_arn("arn:aws:sqs:us-east-1:123456789012:dlq", "sqs").is_ok());
        assert!(check_arn("arn:aws-cn:iam::123456789012:role/r", "iam").is_ok());
        assert!(check_arn("arn:aws:sns:us-east-1:123456789012:topic", "sqs").is_err());
        assert!(check_arn("dlq", "sqs").is_err());
    }

    #[test]
    fn the_sweep_input_is_the_documented_event() {
        let input: serde_json::Value = serde_json::from_str(SWEEP_INPUT).unwrap();
        assert_eq!(
            input,
            serde_json::json!({"source": "jit-access.sweep", "detail-type": "Sweep Expired Grants", "detail": {}})
        );
    }
}
