//! The grant lifecycle end to end: the real `grant` and `revoke` handlers and adapters, moto's
//! server (DynamoDB, Scheduler, EventBridge), the JumpCloud simulator, the real SDK.

use integration_tests::{event, functions::Functions, http_response, lambda_event, Stack};
use jit_shared::{
    clock::ManualClock,
    handlers::{grant::GrantHandler, revoke::RevokeHandler},
    wiring::{Function, Lifecycle},
};
use jumpcloud_sim::{Faults, Group, MembershipMethod, Org, RunningSimulator, Simulator, User};
use serde_json::Value;
use std::sync::Arc;

const KEY: &str = "corp-admin-key-2b9c";
/// A key of another organization, for a secret that shadows `corp`.
const SHADOW_KEY: &str = "evil-org-key-77aa";

struct World {
    stack: Stack,
    sim: RunningSimulator,
    functions: Functions,
    grant: Arc<GrantHandler>,
    revoke: Arc<RevokeHandler>,
    clock: Arc<ManualClock>,
    schedule_group: String,
    alice: String,
    bob: String,
    db: String,
    config: jit_shared::config::Config,
}

async fn world() -> World {
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    let bob = org.add_user(User::new("bob", "bob@example.com"));
    // bob is alice's manager (the directory's relation and the `manager` attribute).
    let mut alice_user = User::new("alice", "alice@example.com");
    alice_user.manager = Some(bob.as_str().into());
    alice_user.set_attribute("manager", "bob@example.com");
    let alice = org.add_user(alice_user);
    let db = org.add_group(Group::new("prod-db-admins"));
    org.add_group(Group::new("prod-auto").with_method(MembershipMethod::DynamicAutomated));
    let sim = Simulator::start(vec![org, Org::new(SHADOW_KEY)]).await.unwrap();
    stack.integration("corp", KEY).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let functions = Functions::new(&stack, &sim.url(), &[], Some(clock.clone())).await;
    World {
        grant: functions.grant.clone(),
        revoke: functions.revoke.clone(),
        stack,
        sim,
        clock,
        schedule_group: functions.schedule_group.clone(),
        alice,
        bob,
        db,
        config: functions.config.clone(),
        functions,
    }
}

fn create(user: &str, duration: &str, key: &str) -> Value {
    let mut e = event("grant-create.json");
    e["headers"]["idempotency-key"] = key.into();
    e["body"] = serde_json::json!({"user": user, "group": "prod-db-admins", "duration": duration, "reason": "INC-1"})
        .to_string()
        .into();
    e
}

fn at(name: &str, path: &str, method: &str) -> Value {
    let mut e = event(name);
    e["rawPath"] = path.into();
    e["requestContext"]["http"]["path"] = path.into();
    e["requestContext"]["http"]["method"] = method.into();
    e
}

impl World {
    /// A revoke function in a new container (its own secrets cache, read afresh).
    fn new_revoke_container(&self) -> RevokeHandler {
        let built = Lifecycle::from_config(&self.stack.sdk, &self.config, Function::Revoke).expect("lifecycle");
        RevokeHandler { lifecycle: Arc::new(Lifecycle { clock: self.clock.clone(), ..built }) }
    }
}

async fn call_grant(w: &World, e: Value) -> (u16, Value) {
    let (status, body, _) = http_response(&w.grant.handle(lambda_event(e)).await.unwrap());
    (status, body)
}

fn member(w: &World, user: &str) -> bool {
    w.sim.handle().org(0).is_member(&w.db, user).unwrap()
}

#[tokio::test]
async fn grant_schedule_delete_and_replay_through_the_real_handlers() {
    let w = world().await;
    let (status, grant) = call_grant(&w, create("Alice@Example.com", "2h", "k-1")).await;
    assert_eq!(status, 201, "{grant}");
    assert!(member(&w, &w.alice), "the membership is added in JumpCloud");
    let id = grant["id"].as_str().unwrap().to_owned();

    // The expiry schedule, as EventBridge Scheduler stores it.
    let scheduler = aws_sdk_scheduler::Client::new(&w.stack.sdk);
    let schedule = scheduler
        .get_schedule()
        .group_name(&w.schedule_group)
        .name(grant["schedule_name"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(schedule.schedule_expression().unwrap().starts_with("at("));
    let input: Value = serde_json::from_str(schedule.target().unwrap().input().unwrap()).unwrap();
    assert_eq!(input, serde_json::json!({"action": "expire", "grant_id": id}));

    // Replay: the same grant, nothing added.
    let (status, replay) = call_grant(&w, create("Alice@Example.com", "2h", "k-1")).await;
    assert_eq!((status, &replay["id"]), (200, &grant["id"]));
    assert_eq!(w.sim.handle().request_count("POST /api/v2/usergroups/{id}/members"), 1);

    let (status, got) = call_grant(&w, at("grant-get.json", &format!("/grants/{id}"), "GET")).await;
    assert_eq!((status, &got["status"]), (200, &Value::from("active")));

    let delete = at("grant-revoke-http.json", &format!("/grants/{id}"), "DELETE");
    let (status, revoked, _) = http_response(&w.revoke.handle(lambda_event(delete)).await.unwrap());
    assert_eq!((status, &revoked["status"]), (200, &Value::from("revoked")), "{revoked}");
    assert!(!member(&w, &w.alice), "the membership is removed");
    let gone = scheduler
        .get_schedule()
        .group_name(&w.schedule_group)
        .name(grant["schedule_name"].as_str().unwrap())
        .send()
        .await;
    assert!(gone.is_err(), "early revocation deletes the schedule");
    let audit = w.stack.count(&format!("AUDIT#{id}")).await;
    assert!(audit >= 4, "created, activated, revoked, membership removed: {audit}");
}

#[tokio::test]
async fn expiry_by_schedule_and_by_sweep_and_a_standing_membership_is_kept() {
    let w = world().await;
    w.sim.handle().org(0).add_member(&w.db, &w.bob).unwrap(); // bob's standing access
    let (status, a) = call_grant(&w, create("alice@example.com", "1h", "k-a")).await;
    assert_eq!(status, 201, "{a}");
    let (status, b) = call_grant(&w, create("bob", "1h", "k-b")).await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["preexisting_membership"], true);

    w.clock.advance(chrono::Duration::minutes(61));
    let mut expiry = event("revoke-expiry.json");
    expiry["grant_id"] = a["id"].clone();
    let ended = w.revoke.handle(lambda_event(expiry)).await.unwrap();
    assert_eq!(ended["grant"]["status"], "expired", "{ended}");
    assert!(!member(&w, &w.alice));

    // Bob's schedule never fires: the sweep ends his grant and keeps his standing membership.
    let report = w.revoke.handle(lambda_event(event("revoke-sweep.json"))).await.unwrap();
    assert_eq!(report["ended"], 1, "{report}");
    assert!(member(&w, &w.bob), "a membership that existed before the grant is never removed");
    let (_, b_now) =
        call_grant(&w, at("grant-get.json", &format!("/grants/{}", b["id"].as_str().unwrap()), "GET")).await;
    assert_eq!(b_now["status"], "expired");
}

#[tokio::test]
async fn jumpcloud_down_gives_502_and_leaves_nothing_active_then_the_sweep_retries_revocation() {
    let w = world().await;
    w.sim.handle().set_faults(Faults { rate_5xx: 1.0, seed: Some(3), ..Faults::default() });
    let (status, problem) = call_grant(&w, create("alice@example.com", "1h", "k-down")).await;
    assert_eq!(status, 502, "{problem}");
    assert!(!member(&w, &w.alice));
    let (status, active) = call_grant(&w, at("grant-list.json", "/grants", "GET")).await;
    assert_eq!(status, 200);
    assert_eq!(active["grants"].as_array().unwrap().len(), 0, "nothing active: {active}");

    w.sim.handle().clear_faults();
    let (status, grant) = call_grant(&w, create("alice@example.com", "1h", "k-up")).await;
    assert_eq!(status, 201, "{grant}");
    w.sim.handle().set_faults(Faults { rate_5xx: 1.0, seed: Some(3), ..Faults::default() });
    w.clock.advance(chrono::Duration::minutes(61));
    let report = w.revoke.handle(lambda_event(event("revoke-sweep.json"))).await.unwrap();
    assert_eq!(report["ended"], 0, "{report}");
    assert!(member(&w, &w.alice), "JumpCloud is down: the membership is still there, the grant stays due");

    w.sim.handle().clear_faults();
    let report = w.revoke.handle(lambda_event(event("revoke-sweep.json"))).await.unwrap();
    assert!(report["ended"].as_u64().unwrap() >= 1, "{report}");
    assert!(!member(&w, &w.alice), "the next sweep removed it");
}

#[tokio::test]
async fn sync_reconciles_grants_against_jumpcloud() {
    let w = world().await;
    let config = w.stack.config(&w.sim.url(), &[("REQUESTABLE_GROUPS", "prod-*")]);
    let built = jit_shared::handlers::sync::SyncHandler::from_config(&w.stack.sdk, &config).unwrap();
    let sync = jit_shared::handlers::sync::SyncHandler {
        lifecycle: Some(w.grant.lifecycle.clone()),
        clock: w.clock.clone(),
        ..built
    };
    let (_, alice_grant) = call_grant(&w, create("alice@example.com", "2h", "k-r1")).await;
    let (_, bob_grant) = call_grant(&w, create("bob@example.com", "2h", "k-r2")).await;
    // JumpCloud answers "not a member" when bob's grant ends (a lagging replica): the product
    // removes nothing, and the membership is there after all.
    let jc = w.sim.handle().org(0);
    jc.remove_member(&w.db, &w.bob).unwrap();
    let delete = at("grant-revoke-http.json", &format!("/grants/{}", bob_grant["id"].as_str().unwrap()), "DELETE");
    assert_eq!(http_response(&w.revoke.handle(lambda_event(delete)).await.unwrap()).0, 200);

    // Outside the product: alice's membership is removed, bob's shows up again.
    jc.remove_member(&w.db, &w.alice).unwrap();
    jc.add_member(&w.db, &w.bob).unwrap();
    w.clock.advance(chrono::Duration::minutes(5));

    let response = sync.handle(lambda_event(event("sync-http-post.json"))).await.unwrap();
    let (status, summary, _) = http_response(&response);
    assert_eq!(status, 200, "{summary}");
    let reconciliation = &summary["integrations"][0]["reconciliation"];
    assert_eq!(reconciliation["missing"], serde_json::json!([alice_grant["id"]]), "{reconciliation}");
    assert_eq!(reconciliation["removed"][0][0], bob_grant["id"], "{reconciliation}");
    assert!(!member(&w, &w.bob), "the membership whose removal never happened is removed");
    assert_eq!(reconciliation["readded"], serde_json::json!([]), "{reconciliation}");
    let (_, alice_now) =
        call_grant(&w, at("grant-get.json", &format!("/grants/{}", alice_grant["id"].as_str().unwrap()), "GET")).await;
    assert_eq!(alice_now["membership_missing"], true);
    assert_eq!(alice_now["status"], "active", "marked and reported, not ended: its expiry still runs");
}

/// A person signed in (JWT) calling the grant function.
fn signed_in(mut e: Value, email: &str, body: Option<Value>) -> Value {
    e["requestContext"]["authorizer"] = serde_json::json!({
        "jwt": { "claims": { "iss": "https://sso.example.com", "sub": email, "email": email, "email_verified": "true" } }
    });
    e["headers"].as_object_mut().unwrap().remove("idempotency-key");
    e["body"] = body.map_or(Value::Null, |b| b.to_string().into());
    e
}

/// Invariants 7 and 8 through the real handlers and adapters: a policy applied to DynamoDB, the
/// synced directory from a real sync, alice's request pending until her manager approves it.
#[tokio::test]
async fn a_request_waits_for_the_managers_approval_through_the_real_handlers() {
    use jit_shared::clock::Clock;
    let w = world().await;
    w.functions.sync_now().await;
    let document = "version: 1\nrules:\n  - groups: [\"prod-db-*\"]\n    eligible: everyone\n    max_duration: 4h\n    approval: {approvers: [manager], required: 1, timeout: 1h}\n";
    w.functions.apply_policy(document).await;

    let ask = serde_json::json!({"group": "prod-db-admins", "duration": "2h", "reason": "INC-7 replica"});
    let (status, request) = call_grant(&w, signed_in(event("grant-create.json"), "alice@example.com", Some(ask))).await;
    assert_eq!(status, 202, "{request}");
    assert_eq!(request["approvers"], serde_json::json!(["bob@example.com"]));
    assert!(!member(&w, &w.alice), "invariant 8: nothing in JumpCloud while pending");
    let id = request["id"].as_str().unwrap().to_owned();
    let approve = |email: &str| {
        signed_in(at("grant-create.json", &format!("/grants/{id}/approve"), "POST"), email, Some(serde_json::json!({})))
    };
    let (status, refused) = call_grant(&w, approve("alice@example.com")).await;
    assert_eq!(status, 403, "{refused}");
    w.clock.advance(chrono::Duration::minutes(5));
    let (status, active) = call_grant(&w, approve("bob@example.com")).await;
    assert_eq!((status, active["status"].as_str()), (200, Some("active")), "{active}");
    assert!(member(&w, &w.alice), "added at the approval");
    let granted = chrono::DateTime::parse_from_rfc3339(active["granted_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(active["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - granted, chrono::Duration::hours(2), "the clock starts at the activation");
    assert_eq!(granted, w.clock.now(), "activated at the approval, not the request");
    let stored = w.grant.lifecycle.store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.approvals.len(), 1);
}

#[tokio::test]
async fn a_secret_shadowing_the_integration_never_ends_a_grant_in_the_wrong_organization() {
    let w = world().await;
    let (status, grant) = call_grant(&w, create("alice@example.com", "1h", "k-shadow")).await;
    assert_eq!(status, 201, "{grant}");
    let real_arn = grant["source"]["secret_arn"].as_str().expect("the grant records its secret").to_owned();
    let tag = (w.stack.tag_key.as_str(), "true");
    // Someone who may tag secrets adds one claiming `corp`, with another organization's key.
    let shadow = w.stack.secret(&format!(r#"{{"token":"{SHADOW_KEY}","name":"corp"}}"#), &[tag]).await;
    w.clock.advance(chrono::Duration::minutes(61));

    // Both claimants refused: the expiry cannot be settled, the grant stays due, access stays visible.
    let revoke = w.new_revoke_container();
    let report = revoke.handle(lambda_event(event("revoke-sweep.json"))).await.unwrap();
    assert_eq!((report["ended"].as_u64(), report["failed"].as_u64()), (Some(0), Some(1)), "{report}");
    assert!(member(&w, &w.alice), "not ended in silence");

    // The real secret untagged (or deleted): the shadow alone claims `corp`. Through it the removal
    // would answer 404 ("not a member") in the other organization: refused before any call.
    w.stack.secrets.untag_resource().secret_id(&real_arn).tag_keys(&w.stack.tag_key).send().await.unwrap();
    let member_calls = || w.sim.handle().request_count("POST /api/v2/usergroups/{id}/members");
    let before = member_calls();
    let revoke = w.new_revoke_container();
    let report = revoke.handle(lambda_event(event("revoke-sweep.json"))).await.unwrap();
    assert_eq!((report["ended"].as_u64(), report["failed"].as_u64()), (Some(0), Some(1)), "{report}");
    assert!(report.to_string().contains("another secret"), "{report}");
    assert_eq!(member_calls(), before, "no removal sent through the shadow");
    assert!(member(&w, &w.alice));
    let (_, now) =
        call_grant(&w, at("grant-get.json", &format!("/grants/{}", grant["id"].as_str().unwrap()), "GET")).await;
    assert_eq!(now["status"], "active", "still due: {now}");

    // The real secret back and the shadow gone: the next sweep ends the grant where it was made.
    w.stack
        .secrets
        .tag_resource()
        .secret_id(&real_arn)
        .tags(aws_sdk_secretsmanager::types::Tag::builder().key(&w.stack.tag_key).value("true").build())
        .send()
        .await
        .unwrap();
    w.stack.secrets.delete_secret().secret_id(&shadow).force_delete_without_recovery(true).send().await.unwrap();
    let revoke = w.new_revoke_container();
    let report = revoke.handle(lambda_event(event("revoke-sweep.json"))).await.unwrap();
    assert_eq!(report["ended"], 1, "{report}");
    assert!(!member(&w, &w.alice));
}

/// The portal's reads against DynamoDB: `GET /audit` by grant and by window (the day index),
/// `GET /integrations` (the stored sync status), `GET /me`.
#[tokio::test]
async fn the_portals_reads_find_the_audit_trail_and_sync_status_in_dynamodb() {
    let w = world().await;
    let (status, grant) = call_grant(&w, create("alice@example.com", "1h", "k-portal")).await;
    assert_eq!(status, 201, "{grant}");
    let id = grant["id"].as_str().unwrap().to_owned();
    w.clock.advance(chrono::Duration::seconds(1));

    let audit = |query: &str| {
        let mut e = at("audit-get.json", "/audit", "GET");
        e["rawQueryString"] = query.into();
        e["queryStringParameters"] = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        e
    };
    let (status, trail) = call_grant(&w, audit(&format!("grant={id}"))).await;
    assert_eq!(status, 200, "{trail}");
    let actions: Vec<&str> =
        trail["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "activated"], "{trail}");
    // The window's records come from the per-day index; other tests' grants share the table's
    // index only if they share the table: each test has its own.
    let (status, window) = call_grant(&w, audit("user=alice@example.com")).await;
    assert_eq!(status, 200, "{window}");
    let ids: Vec<&str> =
        window["records"].as_array().unwrap().iter().map(|r| r["grant_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str(), id.as_str()], "{window}");
    let (_, none) = call_grant(&w, audit("user=bob@example.com")).await;
    assert_eq!(none["records"], serde_json::json!([]), "{none}");

    let (status, integrations) = call_grant(&w, at("integrations-get.json", "/integrations", "GET")).await;
    assert_eq!(status, 200, "{integrations}");
    assert_eq!(integrations["integrations"], serde_json::json!([{ "name": "corp", "sync": null }]), "never synced");
    let (status, me) = call_grant(&w, at("me-get.json", "/me", "GET")).await;
    assert_eq!((status, &me["admin"]), (200, &Value::Bool(true)), "{me}");
}

/// While a full sync of the integration runs (its claim held in DynamoDB: in a large organization
/// the daily fanned-out sync holds it for an hour or more), the incremental run stores nothing but
/// still removes a membership added outside the product to a `remove_outside` group, from the
/// simulator's event, within the run; the simulator's event of that removal keeps the next run quiet.
#[tokio::test]
async fn while_a_full_sync_runs_the_incremental_run_removes_an_outside_add_under_remove_outside() {
    use jit_shared::{
        adapters::dynamodb::DynamoStore,
        clock::Clock,
        domain::model::DRIFT_AUDIT_ID,
        ports::{DirectoryStore, SyncStatus},
    };
    let w = world().await;
    w.functions.sync_now().await;
    let document = "version: 1\nrules:\n  - groups: [\"prod-db-admins\"]\n    eligible: everyone\n    max_duration: 4h\n    jit_only: true\n    remove_outside: true\n";
    w.functions.apply_policy(document).await;
    let store = DynamoStore::new(w.stack.dynamodb.clone(), &w.stack.table);
    let running = SyncStatus::running("corp", w.clock.now());
    assert!(store.claim_sync(&running, running.started_at + chrono::Duration::hours(1)).await.unwrap().is_none());
    let cursor = store.event_cursor("corp").await.unwrap();
    w.clock.advance(chrono::Duration::minutes(1));
    w.sim.handle().org(0).add_member(&w.db, &w.bob).unwrap();

    let incremental = || async { w.functions.sync.handle(lambda_event(event("sync-incremental.json"))).await.unwrap() };
    let run = incremental().await;
    let outcome = &run["integrations"][0];
    assert_eq!(outcome["status"], "full_sync_running", "{run}");
    assert_eq!(outcome["watch"]["removed"], serde_json::json!([[w.db, w.bob]]), "{run}");
    assert!(!member(&w, &w.bob), "removed in JumpCloud within the run");
    let trail = w.grant.lifecycle.store.audit_for(DRIFT_AUDIT_ID).await.unwrap();
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert!(trail[0].detail.as_deref().unwrap().ends_with("removed"), "{trail:?}");
    assert!(!store.is_member("corp", &w.db, &w.bob).await.unwrap(), "not stored");
    assert_eq!(store.event_cursor("corp").await.unwrap(), cursor, "the cursor is the full sync's to set");

    // The next run reads the add again and the product's removal after it: nothing to judge.
    w.clock.advance(chrono::Duration::minutes(1));
    let again = incremental().await;
    let watch = &again["integrations"][0]["watch"];
    assert_eq!((watch["events"].as_u64(), watch["judged"].as_u64()), (Some(2), Some(0)), "{again}");
    assert_eq!(w.grant.lifecycle.store.audit_for(DRIFT_AUDIT_ID).await.unwrap().len(), 1);
}
