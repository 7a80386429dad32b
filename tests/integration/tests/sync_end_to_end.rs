//! Sync end to end: the real `sync` handler, the JumpCloud simulator, moto's server, the real SDK.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use integration_tests::{event, http_event, http_response, lambda_event, BusCopy, Stack};
use jit_shared::{
    adapters::{dynamodb::DynamoGrantStore, eventbridge::EventBridgeBus},
    domain::audit::{seal_days, verify, verify_anchors, AuditScope, SealAnchor, SEAL_AFTER},
    domain::model::{sample_grant, AuditAction, AuditOutcome, AuditRecord},
    handlers::sync::SyncHandler,
    ports::GrantStore,
};
use jumpcloud_sim::{Group, MembershipMethod, Org, RunningSimulator, Simulator, User, UserState};
use serde_json::Value;
use std::{
    io::Write,
    sync::{Arc, Mutex},
};

const KEY: &str = "corp-admin-key-7d1e0c";

struct Seeded {
    users: Vec<String>,
    prod_db: String,
    engineering: String,
    auto: String,
    empty: String,
}

/// 60 users (user 59 suspended; user 0 manages the rest), a static `prod-db-admins` (users 1-30),
/// `engineering` (everyone), a dynamic group and an empty one.
fn seeded_org(key: &str) -> (Org, Seeded) {
    let mut org = Org::new(key);
    let mut users: Vec<String> = Vec::new();
    for i in 0..60 {
        let mut user = User::new(format!("user{i:02}"), format!("User{i:02}@Corp.Example"));
        user.department = if i % 2 == 0 { "Engineering".into() } else { "Finance".into() };
        user.firstname = format!("Given{i}").into();
        if i > 0 {
            if i % 2 == 0 {
                user.set_attribute("manager", "user00@corp.example");
            } else {
                user.manager = Some(users[0].as_str().into());
            }
        }
        if i == 59 {
            user.set_state(UserState::Suspended);
        }
        users.push(org.add_user(user));
    }
    let prod_db = org.add_group(Group::new("prod-db-admins"));
    let engineering = org.add_group(Group::new("engineering"));
    let auto = org.add_group(Group::new("prod-auto").with_method(MembershipMethod::DynamicAutomated));
    let empty = org.add_group(Group::new("prod-empty"));
    for u in &users[1..=30] {
        org.add_member(&prod_db, u);
    }
    for u in &users {
        org.add_member(&engineering, u);
    }
    for u in &users[1..=5] {
        org.add_member(&auto, u);
    }
    (org, Seeded { users, prod_db, engineering, auto, empty })
}

async fn handler(stack: &Stack, sim: &RunningSimulator) -> SyncHandler {
    SyncHandler::from_config(&stack.sdk, &stack.config(&sim.url(), &[("REQUESTABLE_GROUPS", "prod-*")])).unwrap()
}

async fn post_sync(h: &SyncHandler, body: &str) -> (u16, Value, String) {
    let response = h.handle(lambda_event(http_event("POST", "/sync", Some(body)))).await.unwrap();
    http_response(&response)
}

fn s(item: &std::collections::HashMap<String, AttributeValue>, field: &str) -> Option<String> {
    item.get(field).and_then(|v| v.as_s().ok()).cloned()
}

#[tokio::test]
async fn sync_of_a_seeded_org_stores_exactly_the_expected_directory() {
    let stack = Stack::new().await;
    let (org, seeded) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let h = handler(&stack, &sim).await;

    let (status, body, content_type) = post_sync(&h, "{}").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"), "{body}");
    let corp = &body["integrations"][0];
    assert_eq!(corp["status"], "succeeded");
    assert_eq!(
        (corp["users"].as_u64(), corp["groups"].as_u64(), corp["memberships"].as_u64()),
        (Some(59), Some(4), Some(94))
    );

    // Exactly 59 users (the suspended one left out), 4 groups, 30 + 59 + 5 memberships.
    assert_eq!(stack.count("DIR#corp#USER").await, 59);
    assert_eq!(stack.count("DIR#corp#GROUP").await, 4);
    assert_eq!(stack.count("DIR#corp#MEMBER").await, 94);
    assert!(stack.item("DIR#corp#USER", &seeded.users[59]).await.is_none(), "suspended users are not stored");
    assert!(stack.item("DIR#corp#MEMBER", &format!("{}#{}", seeded.engineering, seeded.users[59])).await.is_none());

    let user = stack.item("DIR#corp#USER", &seeded.users[2]).await.unwrap();
    assert_eq!(s(&user, "email").as_deref(), Some("user02@corp.example"), "canonical email");
    assert_eq!(s(&user, "manager_id").as_deref(), Some(seeded.users[0].as_str()), "manager from the custom attribute");
    assert_eq!(s(&user, "manager_email").as_deref(), Some("user00@corp.example"));
    assert_eq!(s(&user, "department").as_deref(), Some("Engineering"));
    assert_eq!(s(&user, "gsi1pk").as_deref(), Some("EMAIL#corp#user02@corp.example"));
    let odd = stack.item("DIR#corp#USER", &seeded.users[3]).await.unwrap();
    assert_eq!(s(&odd, "manager_id").as_deref(), Some(seeded.users[0].as_str()), "manager from JumpCloud's own field");

    let requestable =
        |item: &std::collections::HashMap<String, AttributeValue>| item["requestable"].as_bool().ok().copied();
    let group = |id: &String| {
        let id = id.clone();
        let stack = &stack;
        async move { stack.item("DIR#corp#GROUP", &id).await.unwrap() }
    };
    assert_eq!(requestable(&group(&seeded.prod_db).await), Some(true));
    assert_eq!(requestable(&group(&seeded.engineering).await), Some(false), "out of REQUESTABLE_GROUPS");
    assert_eq!(requestable(&group(&seeded.auto).await), Some(false), "dynamic");
    assert_eq!(requestable(&group(&seeded.empty).await), Some(true));

    let status = stack.item("INTEGRATION#corp", "SYNC").await.unwrap();
    assert_eq!(s(&status, "state").as_deref(), Some("succeeded"));
    assert_eq!(status["written"].as_n().unwrap(), "157");
}

#[tokio::test]
async fn a_second_sync_of_an_unchanged_directory_writes_nothing() {
    let stack = Stack::new().await;
    let (org, seeded) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let h = handler(&stack, &sim).await;
    assert_eq!(post_sync(&h, "{}").await.0, 200);

    // A marker on one item of each kind: any put of that item would erase it.
    let keys = [
        ("DIR#corp#USER".to_owned(), seeded.users[1].clone()),
        ("DIR#corp#GROUP".to_owned(), seeded.prod_db.clone()),
        ("DIR#corp#MEMBER".to_owned(), format!("{}#{}", seeded.prod_db, seeded.users[1])),
    ];
    for (pk, sk) in &keys {
        stack
            .dynamodb
            .update_item()
            .table_name(&stack.table)
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::S(sk.clone()))
            .update_expression("SET marker = :m")
            .expression_attribute_values(":m", AttributeValue::S("untouched".into()))
            .send()
            .await
            .unwrap();
    }
    let (status, body, _) = post_sync(&h, r#"{"integration":"corp"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["integrations"][0]["written"].as_u64(), body["integrations"][0]["deleted"].as_u64()),
        (Some(0), Some(0))
    );
    for (pk, sk) in &keys {
        let item = stack.item(pk, sk).await.unwrap();
        assert_eq!(s(&item, "marker").as_deref(), Some("untouched"), "{pk} {sk} was rewritten");
    }
}

#[tokio::test]
async fn vanished_users_groups_and_memberships_are_deleted_and_changes_written() {
    let stack = Stack::new().await;
    let (org, seeded) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let h = handler(&stack, &sim).await;
    assert_eq!(post_sync(&h, "{}").await.0, 200);

    let jc = sim.handle().org(0);
    jc.remove_user(&seeded.users[10]).unwrap(); // member of prod-db-admins and engineering
    jc.remove_group(&seeded.empty).unwrap();
    jc.remove_member(&seeded.engineering, &seeded.users[20]).unwrap();
    jc.update_user(&seeded.users[2], |u| u.department = "Security".into()).unwrap();

    let (status, body, _) = post_sync(&h, "{}").await;
    assert_eq!(status, 200, "{body}");
    let corp = &body["integrations"][0];
    assert_eq!((corp["written"].as_u64(), corp["deleted"].as_u64()), (Some(1), Some(5)), "{corp}");
    assert!(stack.item("DIR#corp#USER", &seeded.users[10]).await.is_none());
    assert!(stack.item("DIR#corp#GROUP", &seeded.empty).await.is_none());
    for (g, u) in [(&seeded.prod_db, 10), (&seeded.engineering, 10), (&seeded.engineering, 20)] {
        assert!(stack.item("DIR#corp#MEMBER", &format!("{g}#{}", seeded.users[u])).await.is_none());
    }
    let changed = stack.item("DIR#corp#USER", &seeded.users[2]).await.unwrap();
    assert_eq!(s(&changed, "department").as_deref(), Some("Security"));
    assert_eq!(stack.count("DIR#corp#MEMBER").await, 94 - 3);
}

/// Every log line of this test binary (a process-wide subscriber: a thread-local one misses
/// events whose callsites other test threads registered first).
fn captured_logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
    .clone()
}

/// Collects log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);
impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_bad_integration_is_reported_while_another_syncs_and_no_key_is_logged() {
    let stack = Stack::new().await;
    let (good_org, _) = seeded_org(KEY);
    let sim = Simulator::start(vec![good_org]).await.unwrap();
    stack.integration("corp", KEY).await;
    const WRONG: &str = "wrong-key-must-never-be-logged-93f1";
    stack.integration("broken", WRONG).await;
    let h = handler(&stack, &sim).await;

    let logs = captured_logs();
    let (status, body, _) = post_sync(&h, "{}").await;
    let scheduled = h.handle(lambda_event(event("sync-schedule.json"))).await.unwrap();

    assert_eq!(status, 200, "{body}");
    let outcome = |summary: &Value, name: &str| {
        summary["integrations"].as_array().unwrap().iter().find(|o| o["integration"] == name).cloned().unwrap()
    };
    assert_eq!(outcome(&body, "corp")["status"], "succeeded");
    let broken = outcome(&body, "broken");
    assert_eq!(broken["status"], "failed");
    assert!(broken["error"].as_str().unwrap().contains("401"), "{broken}");
    assert_eq!(outcome(&scheduled, "corp")["status"], "succeeded");
    assert_eq!(outcome(&scheduled, "broken")["status"], "failed");
    assert_eq!(stack.count("DIR#corp#USER").await, 59);
    assert_eq!(stack.count("DIR#broken#USER").await, 0);
    let status = stack.item("INTEGRATION#broken", "SYNC").await.unwrap();
    assert_eq!(s(&status, "state").as_deref(), Some("failed"));

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("401"), "the failure is logged: {logged}");
    for secret in [WRONG, KEY] {
        assert!(!logged.contains(secret), "a key reached the logs");
        assert!(
            !body.to_string().contains(secret) && !scheduled.to_string().contains(secret),
            "a key reached a response"
        );
        let status_item = format!("{:?}", stack.item("INTEGRATION#broken", "SYNC").await);
        assert!(!status_item.contains(secret), "a key reached the store");
    }
}

/// The scheduled full sync seals the audit trail's finished days and publishes each seal (`Audit
/// Day Sealed`): the copy outside the table that `jitctl audit verify --anchors` compares it with.
#[tokio::test]
async fn the_scheduled_sync_seals_finished_audit_days_and_publishes_each_seal() {
    let stack = Stack::new().await;
    let (org, _) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
    let pattern = serde_json::json!({ "source": ["jit-access"], "detail-type": ["Audit Day Sealed"] });
    let copy = BusCopy::new(&stack.sdk, &events, pattern).await;
    let config = stack.config(&sim.url(), &[("EVENT_BUS_NAME", copy.name.as_str())]);
    let h = SyncHandler::from_config(&stack.sdk, &config).unwrap();
    // A grant's record on the last finished day the handler's clock can seal, and the day before
    // it sealed already: the handler's run seals from that day on (whatever the time of day).
    let store = DynamoGrantStore::new(stack.dynamodb.clone(), &stack.table);
    let day = (Utc::now() - SEAL_AFTER - Duration::days(1)).date_naive();
    let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let record = AuditRecord::new(
        &sample_grant(),
        midnight + Duration::hours(12),
        "tester",
        AuditAction::Created,
        AuditOutcome::Succeeded,
    );
    store.append_audit(&[record]).await.unwrap();
    let before =
        seal_days(&store, &EventBridgeBus::new(events.clone(), &copy.name), midnight + SEAL_AFTER).await.unwrap();
    assert_eq!(before.iter().map(|s| s.day).collect::<Vec<_>>(), vec![day.pred_opt().unwrap()]);
    copy.delivered().await;

    let scheduled = h.handle(lambda_event(event("sync-schedule.json"))).await.unwrap();

    assert_eq!(scheduled["integrations"][0]["status"], "succeeded", "{scheduled}");
    let anchors = |delivered: Vec<Value>| -> Vec<SealAnchor> {
        delivered.iter().map(|e| SealAnchor::parse(&e.to_string()).expect("a seal's event")).collect()
    };
    let kept = anchors(copy.delivered().await);
    assert_eq!(kept.first().map(|a| a.day), Some(day), "{kept:?}");
    let mut report = verify(&store, &AuditScope::Since(midnight), Utc::now(), &mut |_| {}).await.unwrap();
    verify_anchors(&store, &kept, &mut report).await.unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.anchors, kept.len(), "each stored seal is the one its event names");

    h.handle(lambda_event(event("sync-schedule.json"))).await.unwrap();
    let again = anchors(copy.delivered().await);
    assert!(
        again.iter().all(|a| kept.iter().all(|k| k.day != a.day)),
        "a day is sealed, and published, once: {again:?}"
    );
}

#[tokio::test]
async fn bad_requests_get_problem_details_and_change_nothing() {
    let stack = Stack::new().await;
    let (org, _) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    stack.integration("broken", "wrong").await;
    let h = handler(&stack, &sim).await;

    let oversized = format!(r#"{{"integration":"{}"}}"#, "x".repeat(70_000));
    let cases: Vec<(Value, u16)> = vec![
        (http_event("POST", "/sync", Some(r#"{"integration":"nope"}"#)), 404),
        (http_event("POST", "/sync", Some("{not json")), 400),
        (http_event("POST", "/sync", Some(r#"{"integrations":"corp"}"#)), 400),
        (http_event("POST", "/sync", Some(r#"{"integration":7}"#)), 400),
        (http_event("POST", "/sync", Some(&oversized)), 413),
        (http_event("GET", "/sync", None), 405),
        (http_event("POST", "/elsewhere", Some("{}")), 404),
        (http_event("POST", "/sync", Some(r#"{"integration":"broken"}"#)), 502),
    ];
    for (request, expected) in cases {
        let response = h.handle(lambda_event(request.clone())).await.unwrap();
        let (status, body, content_type) = http_response(&response);
        assert_eq!(status, expected, "{} {}: {body}", request["requestContext"]["http"]["method"], request["body"]);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["status"].as_u64(), Some(expected as u64));
        assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    }
    assert_eq!(stack.count("DIR#corp#USER").await, 0, "no bad request synced anything");
}

#[tokio::test]
async fn rest_api_events_work_too() {
    let stack = Stack::new().await;
    let (org, _) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let h = handler(&stack, &sim).await;
    let response = h.handle(lambda_event(event("sync-http-post-rest.json"))).await.unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["integrations"][0]["users"], 59);
}

#[tokio::test]
async fn events_other_than_schedules_and_http_are_refused() {
    let stack = Stack::new().await;
    let sim = Simulator::start(vec![Org::new(KEY)]).await.unwrap();
    let h = handler(&stack, &sim).await;
    let err = h.handle(lambda_event(serde_json::json!({"hello": "world"}))).await.unwrap_err();
    assert!(err.error_message.contains("unsupported event"), "{err:?}");
    assert_eq!(err.error_type, "NonRetryable", "{err:?}");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_after_a_401_without_waiting_for_the_cache() {
    let stack = Stack::new().await;
    let (org, _) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    let secret = stack.integration("corp", "revoked-old-key").await;
    let h = handler(&stack, &sim).await;
    let (status, _, _) = post_sync(&h, "{}").await;
    assert_eq!(status, 502, "the old key is refused");

    // The admin rotates the key in Secrets Manager; the container still caches the old value.
    let value = serde_json::json!({ "token": KEY, "name": "corp" }).to_string();
    stack.secrets.put_secret_value().secret_id(&secret).secret_string(value).send().await.unwrap();
    let (status, body, _) = post_sync(&h, "{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["integrations"][0]["users"], 59);
}

#[tokio::test]
async fn the_synced_directory_answers_lookups_by_email_group_name_and_membership() {
    use jit_shared::{adapters::dynamodb::DynamoStore, ports::DirectoryStore};
    let stack = Stack::new().await;
    let (org, seeded) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let (status, _, _) = post_sync(&handler(&stack, &sim).await, "{}").await;
    assert_eq!(status, 200);
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    // Emails are stored canonical (lower case): lookups use that form.
    let user = store.user_by_email("corp", "user05@corp.example").await.unwrap().expect("user05");
    assert_eq!(user.id, seeded.users[5]);
    assert!(store.user_by_email("corp", "User05@Corp.Example").await.unwrap().is_none(), "canonical form only");
    assert!(store.user_by_email("corp", "nobody@corp.example").await.unwrap().is_none());
    assert!(store.user_by_email("corp", "user59@corp.example").await.unwrap().is_none(), "suspended: not stored");
    assert!(store.user_by_email("other", "user05@corp.example").await.unwrap().is_none(), "per integration");
    // A manager lookup's projection: the same user's id and email, nothing else read.
    let key = store.user_key_by_email("corp", "user05@corp.example").await.unwrap();
    assert_eq!(key, Some((user.id.clone(), user.email.clone())));
    assert!(store.user_key_by_email("corp", "User05@Corp.Example").await.unwrap().is_none(), "canonical form only");
    assert!(store.user_key_by_email("corp", "user59@corp.example").await.unwrap().is_none(), "suspended");
    assert!(store.user_key_by_email("other", "user05@corp.example").await.unwrap().is_none(), "per integration");
    let group = store.group_by_name("corp", "prod-db-admins").await.unwrap().expect("group");
    assert_eq!(group.id, seeded.prod_db);
    assert!(store.group_by_name("corp", "Prod-DB-Admins").await.unwrap().is_none(), "names are exact");
    assert!(store.is_member("corp", &seeded.prod_db, &seeded.users[1]).await.unwrap());
    assert!(!store.is_member("corp", &seeded.prod_db, &seeded.users[40]).await.unwrap());
    assert!(store.is_member("corp", &seeded.engineering, &seeded.users[40]).await.unwrap());
}

/// One sync at a time per integration: a claim on DynamoDB is refused while another holds; a
/// `POST /sync` meanwhile answers 202 with the running one's start and starts nothing.
#[tokio::test]
async fn a_second_sync_while_one_runs_is_accepted_and_starts_nothing() {
    use jit_shared::{
        adapters::dynamodb::DynamoStore,
        ports::{DirectoryStore, SyncState, SyncStatus},
    };
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    org.add_user(User::new("alice", "alice@example.com"));
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    let now = chrono::Utc::now();
    let running = |started_at| SyncStatus::running("corp", started_at);
    let claim = running(now - chrono::Duration::minutes(1));
    let until = claim.started_at + chrono::Duration::minutes(15);
    assert!(store.claim_sync(&claim, until).await.unwrap().is_none(), "the first claim holds");
    let second = store.claim_sync(&running(now), now + chrono::Duration::minutes(15)).await.unwrap();
    assert_eq!(second.map(|s| s.started_at), Some(claim.started_at), "a second claim is refused, naming the first");

    let h = handler(&stack, &sim).await;
    let (status, body, _) = post_sync(&h, "{}").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["integrations"][0]["status"], "running", "{body}");
    assert_eq!(sim.handle().request_count("GET /api/systemusers"), 0, "nothing fetched from JumpCloud");

    // The running sync finishes (or its claim lapses): the next one runs.
    let mut done = claim.clone();
    done.state = SyncState::Succeeded;
    store.put_sync_status(&done).await.unwrap();
    let (status, body, _) = post_sync(&h, "{}").await;
    assert_eq!(status, 200, "{body}");
    let stale = running(now - chrono::Duration::hours(1));
    store.claim_sync(&stale, stale.started_at + chrono::Duration::minutes(15)).await.unwrap();
    assert!(
        store.claim_sync(&running(now), now + chrono::Duration::minutes(15)).await.unwrap().is_none(),
        "a lapsed claim does not hold"
    );
}

async fn incremental(h: &SyncHandler) -> Value {
    h.handle(lambda_event(event("sync-incremental.json"))).await.expect("the incremental run")
}

#[tokio::test]
async fn the_incremental_run_applies_the_simulators_events_reading_only_what_they_name() {
    let stack = Stack::new().await;
    let (org, seeded) = seeded_org(KEY);
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let h = handler(&stack, &sim).await;

    // Before any full sync there is no cursor: the run syncs in full and says why.
    let first = incremental(&h).await;
    let outcome = &first["integrations"][0];
    assert_eq!(outcome["status"], "fell_back", "{first}");
    assert!(outcome["reason"].as_str().unwrap().contains("no event cursor"), "{first}");
    assert_eq!(outcome["full_sync"]["status"], "succeeded", "{first}");

    // Nothing changed since: one request, the events page, and nothing written.
    sim.handle().reset_counts();
    let quiet = incremental(&h).await;
    assert_eq!(quiet["integrations"][0]["status"], "applied", "{quiet}");
    assert_eq!(quiet["integrations"][0]["written"], 0, "{quiet}");
    assert_eq!(sim.handle().total_requests(), 1, "{:?}", sim.handle().request_counts());

    // Changes made in JumpCloud (the simulator's own controls): a new user in prod-db-admins, a
    // renamed group, a suspended user, a membership removed, a group deleted.
    let jc = sim.handle().org(0);
    let dana = jc.add_user(User::new("dana", "Dana@Corp.Example")).unwrap();
    jc.add_member(&seeded.prod_db, &dana).unwrap();
    jc.update_group(&seeded.engineering, |g| g.name = "engineering-all".into()).unwrap();
    jc.update_user(&seeded.users[2], |u| u.set_state(UserState::Suspended)).unwrap();
    jc.remove_member(&seeded.prod_db, &seeded.users[3]).unwrap();
    jc.remove_group(&seeded.empty).unwrap();
    sim.handle().reset_counts();
    let run = incremental(&h).await;
    let report = &run["integrations"][0];
    assert_eq!(report["status"], "applied", "{run}");
    assert_eq!((report["users_read"].as_u64(), report["groups_read"].as_u64()), (Some(2), Some(2)), "{run}");

    let stored_user = |id: String| {
        let stack = &stack;
        async move { stack.item("DIR#corp#USER", &id).await }
    };
    let member = |g: &str, u: &str| {
        let key = format!("{g}#{u}");
        let stack = &stack;
        async move { stack.item("DIR#corp#MEMBER", &key).await.is_some() }
    };
    assert_eq!(
        s(&stored_user(dana.clone()).await.expect("dana stored"), "email").as_deref(),
        Some("dana@corp.example")
    );
    assert!(member(&seeded.prod_db, &dana).await, "her membership from its event");
    let engineering = stack.item("DIR#corp#GROUP", &seeded.engineering).await.expect("the group");
    assert_eq!(s(&engineering, "name").as_deref(), Some("engineering-all"));
    assert!(stored_user(seeded.users[2].clone()).await.is_none(), "suspended: left out, as the full sync does");
    assert!(!member(&seeded.engineering, &seeded.users[2]).await, "with its memberships");
    assert!(!member(&seeded.prod_db, &seeded.users[3]).await);
    assert!(member(&seeded.prod_db, &seeded.users[4]).await, "other memberships stay");
    assert!(stack.item("DIR#corp#GROUP", &seeded.empty).await.is_none(), "the deleted group");

    // Only the events page and the named objects were read: no listing of the organization.
    let counts = sim.handle().request_counts();
    let listings = ["GET /api/systemusers", "GET /api/v2/usergroups", "GET /api/v2/usergroups/{id}/members"];
    assert!(listings.iter().all(|l| !counts.contains_key(*l)), "{counts:?}");
    assert_eq!(counts.get("POST /insights/directory/v1/events"), Some(&1), "{counts:?}");

    // Reactivated, the suspended user comes back with the memberships JumpCloud kept for it.
    jc.update_user(&seeded.users[2], |u| u.set_state(UserState::Activated)).unwrap();
    sim.handle().reset_counts();
    let run = incremental(&h).await;
    assert_eq!(run["integrations"][0]["status"], "applied", "{run}");
    assert!(stored_user(seeded.users[2].clone()).await.is_some(), "{run}");
    assert!(member(&seeded.engineering, &seeded.users[2]).await, "its membership, though no event named it");
    assert_eq!(sim.handle().request_count("GET /api/v2/users/{id}/memberof"), 1);

    // And a full sync now finds nothing left to write: the incremental run got it all.
    let (status, body, _) = post_sync(&h, r#"{"integration":"corp"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["integrations"][0]["written"].as_u64(), body["integrations"][0]["deleted"].as_u64()),
        (Some(0), Some(0)),
        "{body}"
    );
}
