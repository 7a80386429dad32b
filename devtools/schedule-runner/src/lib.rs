//! The local stand-in for EventBridge Scheduler ([`ScheduleRunner`], behind `jitctl run-schedules`):
//! delivers the due one-time schedules of a group to the functions `cargo lambda watch` serves,
//! because moto stores schedules but never fires them; and sends the sweep to `revoke`.
//!
//! The runner reads the schedules back through the same API (`ListSchedules`, `GetSchedule`), so a
//! local delivery follows what the schedule says (its `at()` time, target, input, retry policy and
//! `ActionAfterCompletion`), not what the grant function meant to write.
//!
//! With a queue ([`sqs::SqsRelay`]) it also stands in for Lambda's SQS event source mapping: the
//! fanned-out sync's parts go to `sync`.
//!
//! A development tool: `jitctl` and the integration tests use it; the functions do not link it.

pub mod sqs;

use async_trait::async_trait;
use aws_sdk_scheduler::{
    operation::get_schedule::GetScheduleOutput,
    types::{ActionAfterCompletion, ScheduleState},
};
use chrono::{DateTime, NaiveDateTime, Utc};
use jit_shared::{
    adapters::scheduler::{delete_schedule, scheduler_error},
    clock::Clock,
    ports::SchedulerError,
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    future::Future,
    sync::Arc,
    time::Duration,
};

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
    relay: Option<sqs::SqsRelay>,
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
            relay: None,
        }
    }

    /// Each tick also relays the fanned-out sync's parts from that queue to `sync`.
    pub fn with_relay(mut self, relay: sqs::SqsRelay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Relays every part on the queue (nothing without a relay).
    pub async fn relay_parts(&self) -> Vec<Delivery> {
        let Some(relay) = &self.relay else { return Vec::new() };
        match relay.drain().await {
            Ok(relayed) => relayed
                .into_iter()
                .map(|r| Delivery {
                    schedule: format!("sync part {}", r.message_id),
                    function: sqs::PARTS_FUNCTION.into(),
                    status: None,
                    outcome: match r.failure {
                        None => DeliveryOutcome::Delivered { deleted: false },
                        Some(error) => DeliveryOutcome::Failed {
                            error: format!("receive {}, back on the queue: {error}", r.receive_count),
                        },
                    },
                })
                .collect(),
            Err(error) => {
                tracing::warn!(error, "could not relay the sync parts; trying again next tick");
                Vec::new()
            }
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
                self.relay_parts().await.iter().for_each(&mut report);
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
    use jit_shared::domain::model::expiry_schedule_expression;

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
    fn the_sweep_input_is_the_documented_event() {
        let input: serde_json::Value = serde_json::from_str(SWEEP_INPUT).unwrap();
        assert_eq!(
            input,
            serde_json::json!({"source": "jit-access.sweep", "detail-type": "Sweep Expired Grants", "detail": {}})
        );
    }
}
