//! The EventBridge Scheduler and EventBridge adapters and the local schedule runner, against
//! moto's server with the real SDK. Every test has its own schedule group, bus and queue.
//!
//! Delivery of events is observed through moto itself: a rule on the test's bus sends every
//! `jit-access` event to an SQS queue (moto delivers rule targets synchronously within
//! `PutEvents`), read back over SQS's JSON protocol. Calls and their entries are counted by an
//! SDK interceptor, which can also mark entries of a real answer as refused (moto never refuses
//! a well-formed entry) to exercise the retry.

use aws_sdk_eventbridge::{
    config::{
        interceptors::{BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextMut},
        ConfigBag, Intercept, RuntimeComponents,
    },
    error::BoxError,
    operation::put_events::{PutEventsInput, PutEventsOutput},
    types::PutEventsResultEntry,
};
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindowMode, ScheduleState};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use integration_tests::{sdk_config, unique, workspace_root, BusCopy};
use jit_schedule_runner::{DeliveryOutcome, FunctionNames, LocalLambda, RunOptions, ScheduleRunner, SWEEP_INPUT};
use jit_shared::{
    adapters::eventbridge::EventBridgeBus,
    adapters::scheduler::{EventBridgeScheduler, EXPIRY_MAX_EVENT_AGE_SECS, EXPIRY_MAX_RETRY_ATTEMPTS},
    adapters::setup,
    clock::{Clock, ManualClock},
    config::Config,
    domain::model::{
        expiry_schedule_name, EventType, Grant, GrantEvent, GrantEventDetail, GrantGroup, GrantStatus, GrantUser,
    },
    ports::{EventBus, ExpiryScheduler},
};
use serde_json::{json, Value};
use std::{
    collections::{HashMap, VecDeque},
    io::{Read, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

const REVOKE_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:revoke";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/jit-access-scheduler";
const DLQ_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:jit-access-dead-letters";
const INVOCATIONS: &str = "/2015-03-31/functions/revoke/invocations";
/// A grant's reason, which must never reach a schedule's description or an error.
const PRIVATE_REASON: &str = "private-reason-7f3a";

// ---------------------------------------------------------------------------------------------
// Helpers

/// The functions' configuration for a schedule group: the ARNs given, `""` removes one.
fn config(group: &str, vars: &[(&str, &str)]) -> Config {
    let mut all: HashMap<&str, &str> = HashMap::from([
        ("SCHEDULE_GROUP", group),
        ("REVOKE_FUNCTION_ARN", REVOKE_ARN),
        ("SCHEDULER_ROLE_ARN", ROLE_ARN),
    ]);
    all.extend(vars.iter().copied());
    Config::from_lookup(|k| all.get(k).map(|v| v.to_string())).expect("valid configuration")
}

/// A fresh schedule group on moto.
async fn schedule_group() -> (aws_sdk_scheduler::Client, String) {
    let client = aws_sdk_scheduler::Client::new(&sdk_config().await);
    let group = unique("sg");
    setup::ensure_schedule_group(&client, &group).await.expect("schedule group created");
    (client, group)
}

fn grant(expires_at: DateTime<Utc>) -> Grant {
    Grant {
        id: uuid::Uuid::new_v4().to_string(),
        integration: "corp".into(),
        user: GrantUser { id: "5f1b1c9e8a2d4b0012345678".into(), email: "alice@corp.example".into() },
        group: GrantGroup { id: "5f1b1c9e8a2d4b0087654321".into(), name: "prod-db-admins".into() },
        status: GrantStatus::Active,
        requested_at: expires_at - ChronoDuration::hours(2),
        granted_at: Some(expires_at - ChronoDuration::hours(2)),
        expires_at: Some(expires_at),
        ended_at: None,
        duration: "2h".parse().unwrap(),
        requested_by: "arn:aws:iam::123456789012:user/admin".into(),
        reason: PRIVATE_REASON.into(),
        break_glass: false,
        approval: jit_shared::domain::model::ApprovalMode::Admin,
        approvals_required: 0,
        approvals: Vec::new(),
        approvers: Vec::new(),
        request_expires_at: None,
        decided_by: None,
        policy: None,
        revision: 0,
        pending_extension: None,
        extensions: Vec::new(),
        remind_before: None,
        membership_end: None,
        preexisting_membership: false,
        membership_missing: false,
        schedule_name: None,
        requester: None,
        revocation_requested: None,
        source: None,
    }
}

async fn schedule_exists(client: &aws_sdk_scheduler::Client, group: &str, name: &str) -> bool {
    match client.get_schedule().group_name(group).name(name).send().await {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => false,
        Err(e) => panic!("GetSchedule {name}: {e:?}"),
    }
}

/// A stand-in for `cargo lambda watch`: records each request's path and body and answers with
/// the current mode (one connection at a time, `Connection: close`).
struct FakeLambda {
    url: String,
    received: Arc<Mutex<Vec<(String, String)>>>,
    mode: Arc<AtomicU8>,
}

const OK: u8 = 0;
const HTTP_500: u8 = 1;
/// 200 with `X-Amz-Function-Error`: how Lambda reports that the function failed.
const FUNCTION_ERROR: u8 = 2;

impl FakeLambda {
    fn start(mode: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(mode));
        let (r, m) = (received.clone(), mode.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &r, &m);
            }
        });
        Self { url, received, mode }
    }

    fn received(&self) -> Vec<(String, String)> {
        self.received.lock().unwrap().clone()
    }

    fn invoker(&self) -> Arc<LocalLambda> {
        Arc::new(LocalLambda::new(&self.url, Duration::from_secs(10)).expect("invoker"))
    }
}

fn serve(mut stream: std::net::TcpStream, received: &Mutex<Vec<(String, String)>>, mode: &AtomicU8) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[header_end..header_end + length]).into_owned();
    received.lock().unwrap().push((path, body));
    let (status, extra, reply) = match mode.load(Ordering::SeqCst) {
        OK => (200, "", r#"{"outcome":"expired"}"#),
        HTTP_500 => (500, "", r#"{"errorType":"Injected","errorMessage":"injected failure"}"#),
        _ => {
            (200, "X-Amz-Function-Error: Unhandled\r\n", r#"{"errorType":"Injected","errorMessage":"handler failed"}"#)
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// EventBridgeScheduler

#[tokio::test]
async fn creates_the_expiry_schedule_with_the_documented_fields() {
    let (client, group) = schedule_group().await;
    let scheduler = EventBridgeScheduler::new(client.clone(), &config(&group, &[]), Some(DLQ_ARN.into())).unwrap();
    let g = grant(Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap() + ChronoDuration::milliseconds(250));

    let name = scheduler.create(&g).await.unwrap();
    assert_eq!(name, expiry_schedule_name(&g.id));

    let s = client.get_schedule().group_name(&group).name(&name).send().await.unwrap();
    assert_eq!(s.group_name(), Some(group.as_str()));
    assert_eq!(s.schedule_expression(), Some("at(2030-01-02T03:04:06)"), "rounded up, never early");
    assert_eq!(s.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(s.flexible_time_window().map(|w| w.mode()), Some(&FlexibleTimeWindowMode::Off));
    assert_eq!(s.action_after_completion(), Some(&ActionAfterCompletion::Delete));
    assert_eq!(s.state(), Some(&ScheduleState::Enabled));
    let target = s.target().expect("target");
    assert_eq!(target.arn(), REVOKE_ARN);
    assert_eq!(target.role_arn(), ROLE_ARN);
    assert_eq!(json_of(target.input().expect("input")), json!({ "action": "expire", "grant_id": g.id }));
    let retry = target.retry_policy().expect("retry policy");
    assert_eq!(retry.maximum_retry_attempts(), Some(EXPIRY_MAX_RETRY_ATTEMPTS));
    assert_eq!(retry.maximum_event_age_in_seconds(), Some(EXPIRY_MAX_EVENT_AGE_SECS));
    assert_ne!(
        (EXPIRY_MAX_RETRY_ATTEMPTS, EXPIRY_MAX_EVENT_AGE_SECS),
        (185, 86_400),
        "differs from the defaults moto fills in, so this proves the adapter set it"
    );
    assert_eq!(target.dead_letter_config().and_then(|d| d.arn()), Some(DLQ_ARN));
    let description = s.description().expect("description");
    assert!(description.contains(&g.id), "{description}");
    assert!(!description.contains(PRIVATE_REASON) && !description.contains(&g.user.email), "{description}");

    // Creating again (a retried request) is success and leaves one schedule.
    assert_eq!(scheduler.create(&g).await.unwrap(), name);
    let listed = client.list_schedules().group_name(&group).send().await.unwrap();
    assert_eq!(listed.schedules().iter().filter_map(|s| s.name()).collect::<Vec<_>>(), vec![name.as_str()]);

    scheduler.delete(&name).await.unwrap();
    assert!(!schedule_exists(&client, &group, &name).await);
    scheduler.delete(&name).await.expect("deleting a schedule that is gone is success");
    scheduler.delete("jit-expire-never-created").await.unwrap();
}

#[tokio::test]
async fn the_dead_letter_queue_is_optional_and_checked() {
    let (client, group) = schedule_group().await;
    for none in [None, Some(String::new()), Some("  ".to_owned())] {
        let scheduler = EventBridgeScheduler::new(client.clone(), &config(&group, &[]), none).unwrap();
        let name = scheduler.create(&grant(Utc::now() + ChronoDuration::hours(1))).await.unwrap();
        let s = client.get_schedule().group_name(&group).name(&name).send().await.unwrap();
        assert!(s.target().unwrap().dead_letter_config().is_none());
    }
    let err = EventBridgeScheduler::new(
        client.clone(),
        &config(&group, &[]),
        Some("arn:aws:sns:us-east-1:123456789012:topic".into()),
    )
    .unwrap_err();
    assert_eq!(err.var, "SCHEDULE_DLQ_ARN", "{err}");
}

#[tokio::test]
async fn missing_arns_are_a_construction_error() {
    let (client, group) = schedule_group().await;
    for (vars, var) in [
        (vec![("REVOKE_FUNCTION_ARN", "")], "REVOKE_FUNCTION_ARN"),
        (vec![("SCHEDULER_ROLE_ARN", "")], "SCHEDULER_ROLE_ARN"),
        (vec![("REVOKE_FUNCTION_ARN", ""), ("SCHEDULER_ROLE_ARN", "")], "REVOKE_FUNCTION_ARN"),
        // An ARN of the wrong service.
        (vec![("SCHEDULER_ROLE_ARN", REVOKE_ARN)], "SCHEDULER_ROLE_ARN"),
        (vec![("REVOKE_FUNCTION_ARN", ROLE_ARN)], "REVOKE_FUNCTION_ARN"),
    ] {
        let err = EventBridgeScheduler::new(client.clone(), &config(&group, &vars), None).unwrap_err();
        assert_eq!(err.var, var, "{vars:?}: {err}");
        assert!(err.to_string().contains(var), "{err}");
    }

    // revoke only deletes: without the ARNs, create says why and creates nothing.
    let scheduler = EventBridgeScheduler::delete_only(client.clone(), &group);
    let err = scheduler.create(&grant(Utc::now())).await.unwrap_err();
    assert!(err.to_string().contains("REVOKE_FUNCTION_ARN"), "{err}");
    assert!(client.list_schedules().group_name(&group).send().await.unwrap().schedules().is_empty());
    scheduler.delete("jit-expire-missing").await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// EventBridgeBus

/// Counts `PutEvents` calls and their entries; marks entries of real answers as refused, per call.
#[derive(Debug, Default, Clone)]
struct PutEventsSpy {
    calls: Arc<Mutex<Vec<usize>>>,
    /// For each next call, the indexes of the entries to report refused.
    refuse: Arc<Mutex<VecDeque<Vec<usize>>>>,
}

impl Intercept for PutEventsSpy {
    fn name(&self) -> &'static str {
        "PutEventsSpy"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context.input().downcast_ref::<PutEventsInput>() {
            self.calls.lock().unwrap().push(input.entries().len());
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(refuse) = self.refuse.lock().unwrap().pop_front() else { return Ok(()) };
        if let Some(Ok(output)) = context.output_or_error_mut() {
            let output = output.downcast_mut::<PutEventsOutput>().expect("a PutEvents answer");
            let entries = output.entries.get_or_insert_with(Vec::new);
            for &i in &refuse {
                entries[i] = PutEventsResultEntry::builder()
                    .error_code("InternalFailure")
                    .error_message("injected by the test")
                    .build();
            }
            output.failed_entry_count = refuse.len() as i32;
        }
        Ok(())
    }
}

struct Bus {
    events: aws_sdk_eventbridge::Client,
    spy: PutEventsSpy,
    copy: BusCopy,
}

impl Bus {
    /// A bus whose `jit-access` events a rule copies to a fresh queue.
    async fn new() -> Self {
        let sdk = sdk_config().await;
        let spy = PutEventsSpy::default();
        let events = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&sdk).interceptor(spy.clone()).build(),
        );
        let copy = BusCopy::new(&sdk, &events, json!({ "source": ["jit-access"] })).await;
        Self { events, spy, copy }
    }

    fn adapter(&self) -> EventBridgeBus {
        EventBridgeBus::new(self.events.clone(), &self.copy.name)
    }

    fn calls(&self) -> Vec<usize> {
        self.spy.calls.lock().unwrap().clone()
    }

    /// Every event the rule delivered so far.
    async fn delivered(&self) -> Vec<Value> {
        self.copy.delivered().await
    }
}

fn grant_event(detail_type: EventType) -> GrantEvent {
    let detail = GrantEventDetail {
        grant: grant(Utc::now()),
        actor: "system:schedule".into(),
        membership: None,
        error: None,
        notify: vec![],
        drift: None,
        extension: None,
    };
    GrantEvent::for_grant(detail_type, &detail)
}

const TYPES: [EventType; 4] =
    [EventType::GrantCreated, EventType::GrantExpired, EventType::GrantRevoked, EventType::RevocationFailed];

#[tokio::test]
async fn publishes_23_events_in_3_calls_onto_the_bus() {
    let bus = Bus::new().await;
    let events: Vec<GrantEvent> = (0..23).map(|i| grant_event(TYPES[i % TYPES.len()])).collect();

    bus.adapter().publish(&events).await.unwrap();

    assert_eq!(bus.calls(), vec![10, 10, 3], "at most 10 entries per PutEvents");
    let delivered = bus.delivered().await;
    assert_eq!(delivered.len(), 23, "each event reached the rule's queue once");
    let mut sent: Vec<(String, String)> =
        events.iter().map(|e| (e.grant_id().unwrap().to_owned(), e.detail_type.detail_type().to_owned())).collect();
    let mut got: Vec<(String, String)> = delivered
        .iter()
        .map(|e| {
            assert_eq!(e["source"], "jit-access");
            (e["detail"]["grant"]["id"].as_str().unwrap().to_owned(), e["detail-type"].as_str().unwrap().to_owned())
        })
        .collect();
    sent.sort();
    got.sort();
    assert_eq!(got, sent);
    let first = delivered.iter().find(|e| e["detail"]["grant"]["id"] == events[0].grant_id().unwrap()).unwrap();
    assert_eq!(first["detail"], events[0].detail, "the detail arrives as published");

    bus.adapter().publish(&[]).await.unwrap();
    assert_eq!(bus.calls().len(), 3, "nothing to publish, no call");
}

#[tokio::test]
async fn refused_entries_are_sent_once_more() {
    let bus = Bus::new().await;
    let events: Vec<GrantEvent> = (0..3).map(|i| grant_event(TYPES[i])).collect();
    bus.spy.refuse.lock().unwrap().push_back(vec![0, 2]);

    bus.adapter().publish(&events).await.unwrap();

    assert_eq!(bus.calls(), vec![3, 2], "the two refused entries, once more");
    // moto had accepted them the first time (the refusal was injected): they arrive twice.
    let delivered = bus.delivered().await;
    let count = |id: &str| delivered.iter().filter(|e| e["detail"]["grant"]["id"] == id).count();
    assert_eq!(count(events[0].grant_id().unwrap()), 2);
    assert_eq!(count(events[1].grant_id().unwrap()), 1);
    assert_eq!(count(events[2].grant_id().unwrap()), 2);
}

#[tokio::test]
async fn entries_refused_twice_are_reported_by_detail_type_without_content() {
    let bus = Bus::new().await;
    let events: Vec<GrantEvent> = (0..3).map(|i| grant_event(TYPES[i])).collect();
    // First call: entries 1 and 2 refused; the retry (entries 1 and 2): its first refused again.
    bus.spy.refuse.lock().unwrap().extend([vec![1, 2], vec![0]]);

    let err = bus.adapter().publish(&events).await.unwrap_err().to_string();

    assert_eq!(bus.calls(), vec![3, 2], "one retry, no more");
    assert!(err.contains("1 of 3"), "{err}");
    assert!(err.contains("Grant Expired") && err.contains(events[1].grant_id().unwrap()), "{err}");
    assert!(err.contains("InternalFailure"), "{err}");
    assert!(!err.contains("Grant Created") && !err.contains("Grant Revoked"), "only the unpublished one: {err}");
    assert!(!err.contains(PRIVATE_REASON) && !err.contains("alice@corp.example"), "no event content: {err}");
}

#[tokio::test]
async fn an_event_above_256_kb_is_refused_and_the_others_published() {
    let bus = Bus::new().await;
    let small = grant_event(EventType::GrantCreated);
    let mut large = grant_event(EventType::RevocationFailed);
    large.detail["error"] = Value::String("x".repeat(300 * 1024));

    let err = bus.adapter().publish(&[large.clone(), small.clone()]).await.unwrap_err().to_string();

    assert!(err.contains("Revocation Failed") && err.contains(large.grant_id().unwrap()), "{err}");
    assert!(err.contains("256000") || err.contains("256 KB"), "{err}");
    assert!(err.len() < 1_000, "the error names the event, it does not carry it");
    assert_eq!(bus.calls(), vec![1], "only the small event was sent");
    let delivered = bus.delivered().await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["detail"]["grant"]["id"], small.grant_id().unwrap());
}

// ---------------------------------------------------------------------------------------------
// The local schedule runner

#[tokio::test]
async fn the_runner_delivers_due_schedules_deletes_them_and_keeps_future_ones() {
    let (client, group) = schedule_group().await;
    let scheduler = EventBridgeScheduler::new(client.clone(), &config(&group, &[]), None).unwrap();
    let now = Utc::now();
    let due = grant(now - ChronoDuration::minutes(1));
    let future = grant(now + ChronoDuration::hours(1));
    let due_name = scheduler.create(&due).await.unwrap();
    let future_name = scheduler.create(&future).await.unwrap();
    let lambda = FakeLambda::start(OK);
    let mut runner = ScheduleRunner::new(client.clone(), &group, FunctionNames::default(), lambda.invoker());

    let deliveries = runner.tick(now).await.unwrap();

    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = &deliveries[0];
    assert_eq!((d.schedule.as_str(), d.function.as_str(), d.status), (due_name.as_str(), "revoke", Some(200)));
    assert_eq!(d.outcome, DeliveryOutcome::Delivered { deleted: true });
    let line = d.to_string();
    assert!(line.contains(&due_name) && line.contains("revoke") && line.contains("200"), "{line}");
    let received = lambda.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, INVOCATIONS);
    assert_eq!(json_of(&received[0].1), json!({ "action": "expire", "grant_id": due.id }));
    assert!(!schedule_exists(&client, &group, &due_name).await, "delivered and ActionAfterCompletion DELETE");
    assert!(schedule_exists(&client, &group, &future_name).await, "not due yet");

    assert!(runner.tick(now).await.unwrap().is_empty(), "nothing is due twice");
    assert_eq!(lambda.received().len(), 1);

    // Its time comes.
    let deliveries = runner.tick(future.expiry() + ChronoDuration::seconds(1)).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(json_of(&lambda.received()[1].1)["grant_id"], future.id);
    assert!(!schedule_exists(&client, &group, &future_name).await);
}

#[tokio::test]
async fn a_failed_invocation_keeps_the_schedule_until_a_later_tick_delivers_it() {
    let (client, group) = schedule_group().await;
    let scheduler = EventBridgeScheduler::new(client.clone(), &config(&group, &[]), None).unwrap();
    let now = Utc::now();
    let g = grant(now - ChronoDuration::seconds(30));
    let name = scheduler.create(&g).await.unwrap();
    let lambda = FakeLambda::start(HTTP_500);
    let mut runner = ScheduleRunner::new(client.clone(), &group, FunctionNames::default(), lambda.invoker());

    let d = runner.tick(now).await.unwrap().remove(0);
    assert_eq!(d.status, Some(500));
    let DeliveryOutcome::Retrying { attempt: 1, max_attempts, error } = &d.outcome else { panic!("{:?}", d.outcome) };
    assert_eq!(*max_attempts, EXPIRY_MAX_RETRY_ATTEMPTS as u32 + 1);
    assert!(error.contains("500") && error.contains("injected failure"), "{error}");
    assert!(schedule_exists(&client, &group, &name).await, "kept for the next tick");

    // The function fails (Lambda's X-Amz-Function-Error): a failure too.
    lambda.mode.store(FUNCTION_ERROR, Ordering::SeqCst);
    let d = runner.tick(now).await.unwrap().remove(0);
    assert!(matches!(d.outcome, DeliveryOutcome::Retrying { attempt: 2, .. }), "{:?}", d.outcome);
    assert!(schedule_exists(&client, &group, &name).await);

    lambda.mode.store(OK, Ordering::SeqCst);
    let d = runner.tick(now).await.unwrap().remove(0);
    assert_eq!(d.outcome, DeliveryOutcome::Delivered { deleted: true });
    assert!(!schedule_exists(&client, &group, &name).await);
    let received = lambda.received();
    assert_eq!(received.len(), 3, "one invocation per tick");
    assert!(received.iter().all(|(path, body)| path == INVOCATIONS && json_of(body)["grant_id"] == g.id.as_str()));
}

#[tokio::test]
async fn the_runner_gives_up_when_the_retry_policy_is_used_up() {
    let (client, group) = schedule_group().await;
    let scheduler = EventBridgeScheduler::new(client.clone(), &config(&group, &[]), Some(DLQ_ARN.into())).unwrap();
    let g = grant(Utc::now() - ChronoDuration::minutes(1));
    let name = scheduler.create(&g).await.unwrap();
    let lambda = FakeLambda::start(HTTP_500);
    let mut runner = ScheduleRunner::new(client.clone(), &group, FunctionNames::default(), lambda.invoker());

    // Older than the policy's maximum event age: this failure is the last.
    let late = g.expiry() + ChronoDuration::seconds(i64::from(EXPIRY_MAX_EVENT_AGE_SECS) + 60);
    let d = runner.tick(late).await.unwrap().remove(0);

    assert!(matches!(d.outcome, DeliveryOutcome::GaveUp { attempts: 1, deleted: true, .. }), "{:?}", d.outcome);
    assert!(!schedule_exists(&client, &group, &name).await, "completed, as Scheduler completes it");
    assert!(runner.tick(late).await.unwrap().is_empty());
}

#[tokio::test]
async fn deployed_function_names_reach_the_local_function() {
    let (client, group) = schedule_group().await;
    let stack = EventBridgeScheduler::new(
        client.clone(),
        &config(&group, &[("REVOKE_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:jit-access-revoke")]),
        None,
    )
    .unwrap();
    let custom = EventBridgeScheduler::new(
        client.clone(),
        &config(&group, &[("REVOKE_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:expiry-target")]),
        None,
    )
    .unwrap();
    let now = Utc::now();
    stack.create(&grant(now - ChronoDuration::minutes(2))).await.unwrap();
    custom.create(&grant(now - ChronoDuration::minutes(1))).await.unwrap();
    // A target that is no Lambda function: left alone, reported once.
    let queue_target = aws_sdk_scheduler::types::Target::builder()
        .arn("arn:aws:sqs:us-east-1:123456789012:somewhere")
        .role_arn(ROLE_ARN)
        .build()
        .unwrap();
    client
        .create_schedule()
        .group_name(&group)
        .name("not-a-function")
        .schedule_expression("at(2020-01-01T00:00:00)")
        .flexible_time_window(
            aws_sdk_scheduler::types::FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().unwrap(),
        )
        .target(queue_target)
        .send()
        .await
        .unwrap();
    let lambda = FakeLambda::start(OK);
    let names = FunctionNames::default().map("expiry-target", "revoke");
    let mut runner = ScheduleRunner::new(client.clone(), &group, names, lambda.invoker());

    let deliveries = runner.tick(now).await.unwrap();

    let outcomes: Vec<(&str, &str)> = deliveries.iter().map(|d| (d.schedule.as_str(), d.function.as_str())).collect();
    assert_eq!(outcomes.len(), 3, "{deliveries:?}");
    assert_eq!(outcomes[0], ("not-a-function", "-"), "earliest first");
    assert!(matches!(deliveries[0].outcome, DeliveryOutcome::Unroutable { .. }));
    assert!(deliveries[1..].iter().all(|d| d.function == "revoke" && d.succeeded()), "{deliveries:?}");
    assert!(lambda.received().iter().all(|(path, _)| path == INVOCATIONS));
    assert_eq!(lambda.received().len(), 2);
    assert!(runner.tick(now).await.unwrap().is_empty(), "the unroutable one is reported once");
    assert!(schedule_exists(&client, &group, "not-a-function").await);
}

#[tokio::test]
async fn the_runner_reads_every_page_of_schedules() {
    let (client, group) = schedule_group().await;
    let scheduler = EventBridgeScheduler::new(client.clone(), &config(&group, &[]), None).unwrap();
    let now = Utc::now();
    // moto pages ListSchedules by 50.
    let mut ids: Vec<String> = Vec::new();
    for i in 0..53 {
        let g = grant(now - ChronoDuration::seconds(100 - i));
        scheduler.create(&g).await.unwrap();
        ids.push(g.id);
    }
    let lambda = FakeLambda::start(OK);
    let mut runner = ScheduleRunner::new(client.clone(), &group, FunctionNames::default(), lambda.invoker());

    let deliveries = runner.tick(now).await.unwrap();

    assert_eq!(deliveries.len(), 53);
    let delivered: Vec<String> =
        lambda.received().iter().map(|(_, b)| json_of(b)["grant_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(delivered, ids, "every one, earliest first");
    assert!(client.list_schedules().group_name(&group).send().await.unwrap().schedules().is_empty());
}

#[tokio::test]
async fn the_sweep_sends_the_templates_event_to_revoke() {
    let (client, group) = schedule_group().await;
    let lambda = FakeLambda::start(OK);
    let runner = ScheduleRunner::new(client, &group, FunctionNames::default(), lambda.invoker());

    let d = runner.sweep().await;

    assert!(d.succeeded(), "{d}");
    assert_eq!(lambda.received(), vec![(INVOCATIONS.to_owned(), SWEEP_INPUT.to_owned())]);
    let template = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    assert!(template.contains(&format!("Input: '{SWEEP_INPUT}'")), "the sweep schedule's input, verbatim");
    let fixture = std::fs::read_to_string(workspace_root().join("events/revoke-sweep.json")).unwrap();
    assert_eq!(json_of(&fixture), json_of(SWEEP_INPUT));

    lambda.mode.store(HTTP_500, Ordering::SeqCst);
    assert!(matches!(runner.sweep().await.outcome, DeliveryOutcome::Failed { .. }));
}

#[tokio::test]
async fn run_delivers_sweeps_and_stops_on_shutdown() {
    let (client, group) = schedule_group().await;
    let scheduler = EventBridgeScheduler::new(client.clone(), &config(&group, &[]), None).unwrap();
    let clock = ManualClock::new(Utc::now());
    let g = grant(clock.now() - ChronoDuration::seconds(5));
    let name = scheduler.create(&g).await.unwrap();
    let lambda = FakeLambda::start(OK);
    let mut runner = ScheduleRunner::new(client.clone(), &group, FunctionNames::default(), lambda.invoker());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stop = Some(stop);
    let mut lines = Vec::new();
    // Long periods: the first tick and the first sweep happen at once, nothing else before the stop.
    let options = RunOptions { interval: Duration::from_secs(3600), sweep_every: Some(Duration::from_secs(3600)) };

    runner
        .run(
            &options,
            &clock,
            async {
                let _ = stopped.await;
            },
            |delivery| {
                lines.push(delivery.to_string());
                if delivery.schedule == "sweep" {
                    if let Some(stop) = stop.take() {
                        let _ = stop.send(());
                    }
                }
            },
        )
        .await;

    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(&name) && lines[1].starts_with("sweep"), "{lines:?}");
    let bodies: Vec<Value> = lambda.received().iter().map(|(_, b)| json_of(b)).collect();
    assert_eq!(bodies, vec![json!({ "action": "expire", "grant_id": g.id }), json_of(SWEEP_INPUT)]);
    assert!(!schedule_exists(&client, &group, &name).await);
}
