//! The grant and revoke handlers with in-memory doubles, driven by the sample events in `events/`.

mod access;
mod admin;
mod policy;
mod portal;
mod requests;
mod slack;

use super::{grant::GrantHandler, revoke::RevokeHandler};
use crate::{config::IdentityConfig, wiring::Lifecycle};

/// The sample events' caller.
const ADMIN_ARN: &str = "arn:aws:iam::123456789012:user/alice";
/// Users in this group are admins too (dave is one).
const ADMIN_GROUP: &str = "jit-admins";
use crate::{
    clock::ManualClock,
    domain::grant::GrantPolicy,
    domain::model::{DirectoryChanges, DirectoryGroup, Membership, MembershipMethod},
    ports::DirectoryStore,
    testing::FakeDirectory,
    testing::MemoryStore,
    testing::{
        FakeIntegrations, FakeScheduler, FixedPolicy, MemoryGrantStore, MemoryPolicyStore, RecordingBus,
        SyncedMemberships,
    },
};
use chrono::{TimeZone, Utc};
use lambda_http::{Context, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;

fn event(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn with_id(mut e: Value, id: &str) -> Value {
    let path = e["rawPath"].as_str().unwrap().rsplit_once('/').unwrap().0.to_owned() + "/" + id;
    e["rawPath"] = path.clone().into();
    e["requestContext"]["http"]["path"] = path.into();
    e["pathParameters"]["id"] = id.into();
    e
}

fn with_body(mut e: Value, body: &str) -> Value {
    e["body"] = body.into();
    e
}

struct World {
    grant: GrantHandler,
    revoke: RevokeHandler,
    directory: Arc<FakeDirectory>,
    clock: Arc<ManualClock>,
    bus: Arc<RecordingBus>,
    policies: Arc<FixedPolicy>,
    store: Arc<MemoryGrantStore>,
    policy_store: Arc<MemoryPolicyStore>,
}

async fn world() -> World {
    let directory = Arc::new(FakeDirectory::with(
        vec![FakeDirectory::user("u-alice", "alice@example.com"), FakeDirectory::user("u-bob", "bob@example.com")],
        vec![FakeDirectory::group("g-db", "prod-db-admins"), FakeDirectory::group("g-eng", "engineering")],
        &[],
    ));
    let integrations = Arc::new(FakeIntegrations::default());
    integrations.add("corp", directory.clone());
    let directory_store = Arc::new(MemoryStore::default());
    let group = |id: &str, name: &str, requestable| DirectoryGroup {
        id: id.into(),
        name: name.into(),
        description: None,
        membership_method: MembershipMethod::Static,
        requestable,
    };
    let user = crate::domain::model::fixtures::user;
    // The synced directory: who the callers are.
    let changes = DirectoryChanges {
        put_users: vec![
            user("u-alice", "alice@example.com"),
            user("u-bob", "bob@example.com"),
            user("u-carol", "carol@example.com"),
            user("u-dave", "dave@example.com"),
        ],
        put_groups: vec![
            group("g-db", "prod-db-admins", true),
            group("g-eng", "engineering", false),
            group("g-adm", ADMIN_GROUP, false),
        ],
        put_memberships: vec![Membership { group_id: "g-adm".into(), user_id: "u-dave".into() }],
        ..DirectoryChanges::default()
    };
    directory_store.apply_changes("corp", &changes).await.unwrap();
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()));
    let bus = Arc::new(RecordingBus::default());
    let policies = Arc::new(FixedPolicy::default());
    let store = Arc::new(MemoryGrantStore::default());
    let policy_store = Arc::new(MemoryPolicyStore::default());
    let lifecycle = Arc::new(Lifecycle {
        // The request paths decide by what the tests apply; `GET /policy` reads the store.
        policies: policies.clone(),
        policy_store: policy_store.clone(),
        store: store.clone(),
        scheduler: Arc::new(FakeScheduler::default()),
        events: bus.clone(),
        catalog: integrations.clone(),
        directories: integrations,
        oracle: Arc::new(SyncedMemberships::default()),
        directory_store,
        clock: clock.clone(),
        policy: GrantPolicy::default(),
        // The sample events' caller (alice's IAM user) is the admin.
        identity: IdentityConfig {
            admin_principals: vec![glob::Pattern::new(ADMIN_ARN).unwrap()],
            admin_group: Some(ADMIN_GROUP.into()),
            ..IdentityConfig::default()
        },
        slack: None,
    });
    World {
        grant: GrantHandler { lifecycle: lifecycle.clone() },
        revoke: RevokeHandler { lifecycle },
        directory,
        clock,
        bus,
        policies,
        store,
        policy_store,
    }
}

/// An HTTP event through the grant handler; the answer checked against the API's document.
async fn call(handler: &GrantHandler, e: Value) -> (u16, Value, Value) {
    let response = handler.handle(LambdaEvent::new(e.clone(), Context::default())).await.unwrap();
    checked(&e, response)
}

/// An HTTP event through the revoke handler (`DELETE /grants/{id}`), checked likewise.
async fn call_revoke(handler: &RevokeHandler, e: Value) -> (u16, Value, Value) {
    let response = handler.handle(LambdaEvent::new(e.clone(), Context::default())).await.unwrap();
    checked(&e, response)
}

/// The answer split into status, body and headers, after checking it against `api/openapi.yaml`
/// (`testing::contract`): a status, content type or body the document does not allow fails.
fn checked(e: &Value, response: Value) -> (u16, Value, Value) {
    let (status, body, headers) = split(response);
    let method = e["requestContext"]["http"]["method"].as_str().unwrap_or_default();
    let path = e["rawPath"].as_str().unwrap_or_default();
    if let Err(disagreement) =
        crate::testing::contract::check(method, path, status, headers["content-type"].as_str(), &body)
    {
        panic!("the answer disagrees with api/openapi.yaml: {disagreement}\nbody: {body}");
    }
    (status, body, headers)
}

fn split(response: Value) -> (u16, Value, Value) {
    let status = response["statusCode"].as_u64().unwrap() as u16;
    let body = response["body"]
        .as_str()
        .filter(|b| !b.is_empty())
        .map(|b| serde_json::from_str(b).unwrap())
        .unwrap_or(Value::Null);
    (status, body, response["headers"].clone())
}

fn is_member(w: &World, group: &str, user: &str) -> bool {
    w.directory.members.lock().unwrap().get(group).is_some_and(|m| m.contains(user))
}

#[tokio::test]
async fn post_grants_creates_a_grant_and_a_replay_returns_it() {
    let w = world().await;
    let (status, grant, headers) = call(&w.grant, event("grant-create.json")).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["user"]["email"], "alice@example.com");
    assert_eq!(grant["group"]["name"], "prod-db-admins");
    assert_eq!(grant["requested_by"], "arn:aws:iam::123456789012:user/alice", "the caller from the authorizer");
    assert_eq!(grant["granted_at"], "2026-11-23T12:00:00Z");
    assert_eq!(grant["expires_at"], "2026-11-23T14:00:00Z");
    assert_eq!(grant["preexisting_membership"], false);
    assert_eq!(headers["location"], format!("/grants/{}", grant["id"].as_str().unwrap()));
    assert!(is_member(&w, "g-db", "u-alice"));

    let (status, replay, _) = call(&w.grant, event("grant-create.json")).await;
    assert_eq!(status, 200, "same Idempotency-Key: the same grant, nothing added");
    assert_eq!(replay["id"], grant["id"]);

    let (status, got, _) = call(&w.grant, with_id(event("grant-get.json"), grant["id"].as_str().unwrap())).await;
    assert_eq!((status, &got["id"]), (200, &grant["id"]));
    let (status, list, _) = call(&w.grant, event("grant-list.json")).await;
    assert_eq!(status, 200);
    assert_eq!(list["grants"].as_array().unwrap().len(), 1);
    assert_eq!(list["next"], Value::Null);
}

#[tokio::test]
async fn bad_requests_get_their_status_and_change_nothing() {
    let w = world().await;
    let create = |body: &str| with_body(event("grant-create.json"), body);
    let mut anonymous = create(r#"{"user":"alice@example.com","group":"prod-db-admins","duration":"2h","reason":"x"}"#);
    anonymous["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let mut bad_key = event("grant-create.json");
    bad_key["headers"]["idempotency-key"] = "has spaces".into();
    let cases: Vec<(Value, u16)> = vec![
        (create("{nope"), 400),
        (create(r#"{"user":"alice@example.com","group":"prod-db-admins","duration":"2h"}"#), 400),
        (create(r#"{"user":"alice@example.com","group":"prod-db-admins","duration":"soon","reason":"x"}"#), 400),
        (
            create(r#"{"user":"alice@example.com","group":"prod-db-admins","duration":"2h","reason":"x","extra":1}"#),
            400,
        ),
        (create(r#"{"user":"","group":"prod-db-admins","duration":"2h","reason":"x"}"#), 400),
        (create(r#"{"user":"alice@example.com","group":"prod-db-admins","duration":"30d","reason":"x"}"#), 422),
        (create(r#"{"user":"nobody@example.com","group":"prod-db-admins","duration":"2h","reason":"x"}"#), 404),
        (create(r#"{"user":"alice@example.com","group":"no-such-group","duration":"2h","reason":"x"}"#), 404),
        (
            create(
                r#"{"user":"alice@example.com","group":"prod-db-admins","duration":"2h","reason":"x","integration":"other"}"#,
            ),
            404,
        ),
        (
            create(&format!(
                r#"{{"user":"alice@example.com","group":"prod-db-admins","duration":"2h","reason":"{}"}}"#,
                "x".repeat(70_000)
            )),
            413,
        ),
        (anonymous, 401),
        (bad_key, 400),
        (with_id(event("grant-get.json"), "not-a-grant-id"), 404),
        (with_id(event("grant-get.json"), "3f9a1c2e-5b7d-4e8f-9a0b-000000000000"), 404),
        (with_body(event("grant-list.json"), "").tap_query("status=bogus"), 400),
        (event("grant-list.json").tap_query("limit=0"), 400),
        (event("grant-list.json").tap_query("user=nobody@example.com"), 404),
    ];
    for (request, expected) in cases {
        let (status, body, headers) = call(&w.grant, request.clone()).await;
        assert_eq!(status, expected, "{} {}: {body}", request["rawPath"], request["body"]);
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(body["status"], expected);
    }
    assert!(!is_member(&w, "g-db", "u-alice"), "no bad request added a membership");
    assert!(w.bus.published().is_empty(), "no bad request published an event");
}

trait TapQuery {
    fn tap_query(self, query: &str) -> Value;
}
impl TapQuery for Value {
    fn tap_query(mut self, query: &str) -> Value {
        self["rawQueryString"] = query.into();
        self["queryStringParameters"] =
            query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
        self
    }
}

#[tokio::test]
async fn get_groups_lists_the_requestable_groups() {
    let w = world().await;
    let (status, body, _) = call(&w.grant, event("groups-list.json")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["prod-db-admins"]);
}

#[tokio::test]
async fn delete_revokes_and_removes_the_membership() {
    let w = world().await;
    let (_, grant, _) = call(&w.grant, event("grant-create.json")).await;
    let id = grant["id"].as_str().unwrap();
    let delete = with_id(event("grant-revoke-http.json"), id);
    let (status, revoked, _) = call_revoke(&w.revoke, delete.clone()).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert!(!is_member(&w, "g-db", "u-alice"));
    let (status, again, _) = call_revoke(&w.revoke, delete).await;
    assert_eq!((status, &again["status"]), (200, &Value::from("revoked")), "revoking twice is not an error");
    let unknown = with_id(event("grant-revoke-http.json"), "3f9a1c2e-5b7d-4e8f-9a0b-000000000000");
    assert_eq!(call_revoke(&w.revoke, unknown).await.0, 404);
}

#[tokio::test]
async fn the_schedule_input_and_the_sweep_expire_grants() {
    let w = world().await;
    let (_, grant, _) = call(&w.grant, event("grant-create.json")).await;
    let id = grant["id"].as_str().unwrap().to_owned();
    let mut expiry = event("revoke-expiry.json");
    expiry["grant_id"] = id.clone().into();

    // Early: acknowledged, nothing ended.
    let early = w.revoke.handle(LambdaEvent::new(expiry.clone(), Context::default())).await.unwrap();
    assert_eq!(early["outcome"], "not_due");
    assert!(is_member(&w, "g-db", "u-alice"));

    w.clock.advance(chrono::Duration::hours(2));
    let ended = w.revoke.handle(LambdaEvent::new(expiry, Context::default())).await.unwrap();
    assert_eq!(ended["grant"]["status"], "expired");
    assert!(!is_member(&w, "g-db", "u-alice"));

    // A second grant whose schedule never fires: the sweep ends it.
    let mut second = with_body(
        event("grant-create.json"),
        r#"{"user":"bob@example.com","group":"prod-db-admins","duration":"90m","reason":"INC-4712"}"#,
    );
    second["headers"]["idempotency-key"] = "inc-4712-bob".into();
    assert_eq!(call(&w.grant, second).await.0, 201);
    w.clock.advance(chrono::Duration::minutes(91));
    let report = w.revoke.handle(LambdaEvent::new(event("revoke-sweep.json"), Context::default())).await.unwrap();
    assert_eq!(report["ended"], 1, "{report}");
    assert!(!is_member(&w, "g-db", "u-bob"));
    let types: Vec<&str> = w.bus.published().iter().map(|e| e.detail_type.detail_type()).collect();
    assert_eq!(types.iter().filter(|t| **t == "Grant Expired").count(), 2, "{types:?}");
}

#[tokio::test]
async fn other_events_are_refused() {
    let w = world().await;
    let err = w.revoke.handle(LambdaEvent::new(serde_json::json!({"x": 1}), Context::default())).await.unwrap_err();
    assert!(err.error_message.contains("unsupported event"));
    assert_eq!(err.error_type, super::failure::NON_RETRYABLE, "no delivery of it can succeed");
    let err = w.grant.handle(LambdaEvent::new(event("revoke-sweep.json"), Context::default())).await.unwrap_err();
    assert!(err.error_message.contains("only answers HTTP"));
}

fn with_query(mut e: Value, query: &[(&str, &str)]) -> Value {
    e["rawQueryString"] = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&").into();
    e["queryStringParameters"] = query.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    e
}

#[tokio::test]
async fn get_grants_filters_by_user_and_group_as_post_names_them_and_refuses_bad_parameters() {
    let w = world().await;
    let (status, grant, _) = call(&w.grant, event("grant-create.json")).await;
    assert_eq!(status, 201, "{grant}");
    let list = |query: &[(&str, &str)]| with_query(event("grant-list.json"), query);
    let ids = |body: &Value| body["grants"].as_array().unwrap().iter().map(|g| g["id"].clone()).collect::<Vec<_>>();

    for query in [
        vec![("user", "alice@example.com"), ("group", "prod-db-admins")],
        vec![("user", "alice"), ("status", "active")],
        vec![("group", "prod-db-admins"), ("integration", "corp")],
    ] {
        let (status, body, _) = call(&w.grant, list(&query)).await;
        assert_eq!((status, ids(&body)), (200, vec![grant["id"].clone()]), "{query:?}: {body}");
    }
    for query in [vec![("user", "bob@example.com")], vec![("group", "engineering")], vec![("status", "revoked")]] {
        let (status, body, _) = call(&w.grant, list(&query)).await;
        assert_eq!((status, ids(&body)), (200, vec![]), "{query:?} matches nothing: {body}");
    }
    for (query, expected) in [
        (vec![("user", "nobody@example.com")], 404),
        (vec![("group", "no-such-group")], 404),
        (vec![("user", "alice"), ("integration", "other")], 404),
        (vec![("status", "sleeping")], 400),
        (vec![("limit", "0")], 400),
        (vec![("limit", "101")], 400),
        (vec![("next", "not-a-token")], 400),
    ] {
        let (status, body, _) = call(&w.grant, list(&query)).await;
        assert_eq!(status, expected, "{query:?}: {body}");
        assert_eq!(body["status"], expected, "problem+json body: {body}");
    }
}
