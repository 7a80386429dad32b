//! The portal's routes (`handlers/admin.rs`): `GET /me` for anyone, `GET /integrations` and
//! `GET /audit` for admins only.

use super::{access::as_person, *};
use crate::{
    clock::Clock,
    ports::{SyncState, SyncStatus},
};

#[tokio::test]
async fn get_me_says_who_the_caller_is() {
    let w = world().await;
    let (status, me, _) = call(&w.grant, event("me-get.json")).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, serde_json::json!({ "id": ADMIN_ARN, "admin": true, "users": [] }), "an IAM admin");

    let (status, me, _) = call(&w.grant, as_person(event("me-get.json"), "bob@example.com", "true")).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["admin"], false);
    assert_eq!(me["id"], "https://sso.example.com#sub-bob");
    assert_eq!(me["users"], serde_json::json!([{ "integration": "corp", "id": "u-bob", "email": "bob@example.com" }]));

    let (_, dave, _) = call(&w.grant, as_person(event("me-get.json"), "dave@example.com", "true")).await;
    assert_eq!(dave["admin"], true, "an admin by ADMIN_GROUP: {dave}");

    let (status, body, _) = call(&w.grant, as_person(event("me-get.json"), "mallory@example.com", "true")).await;
    assert_eq!(status, 403, "not a user of the directory: {body}");
    let mut anonymous = event("me-get.json");
    anonymous["requestContext"].as_object_mut().unwrap().remove("authorizer");
    assert_eq!(call(&w.grant, anonymous).await.0, 401);
}

#[tokio::test]
async fn get_integrations_shows_admins_each_integrations_last_sync() {
    let w = world().await;
    let (status, body, _) = call(&w.grant, event("integrations-get.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "integrations": [{ "name": "corp", "sync": null }], "invalid": [] }));

    let at = w.clock.now();
    let synced = SyncStatus {
        integration: "corp".into(),
        state: SyncState::Succeeded,
        started_at: at,
        finished_at: Some(at + chrono::Duration::seconds(2)),
        users: 4,
        groups: 3,
        memberships: 1,
        written: 8,
        deleted: 0,
        error: None,
    };
    w.grant.lifecycle.directory_store.put_sync_status(&synced).await.unwrap();
    let (_, body, _) = call(&w.grant, event("integrations-get.json")).await;
    let sync = &body["integrations"][0]["sync"];
    assert_eq!((sync["state"].as_str(), sync["users"].as_u64()), (Some("succeeded"), Some(4)), "{body}");
    assert_eq!(sync["finished_at"], "2026-11-23T12:00:02Z");

    for who in ["bob@example.com", "carol@example.com"] {
        let (status, body, _) = call(&w.grant, as_person(event("integrations-get.json"), who, "true")).await;
        assert_eq!(status, 403, "{who}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("only admins"), "{body}");
    }
    let (status, _, _) = call(&w.grant, as_person(event("integrations-get.json"), "dave@example.com", "true")).await;
    assert_eq!(status, 200, "dave is an admin by ADMIN_GROUP");
}

fn audit(query: &[(&str, &str)]) -> Value {
    let mut e = event("audit-get.json");
    e["rawQueryString"] = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&").into();
    e["queryStringParameters"] = query.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    e
}

fn actions(body: &Value) -> Vec<String> {
    body["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn get_audit_finds_a_grants_trail_or_a_windows_records_for_admins_only() {
    let w = world().await;
    let (status, grant, _) = call(&w.grant, event("grant-create.json")).await;
    assert_eq!(status, 201, "{grant}");
    let id = grant["id"].as_str().unwrap();
    w.clock.advance(chrono::Duration::minutes(5));
    let (status, _, _) = call_revoke(&w.revoke, with_id(event("grant-revoke-http.json"), id)).await;
    assert_eq!(status, 200);

    // One grant's whole trail, oldest first.
    let (status, trail, _) = call(&w.grant, audit(&[("grant", id)])).await;
    assert_eq!(status, 200, "{trail}");
    let trail_actions = actions(&trail);
    assert_eq!(trail_actions.first().map(String::as_str), Some("created"), "{trail}");
    assert!(
        trail_actions.contains(&"activated".to_owned()) && trail_actions.contains(&"revoked".to_owned()),
        "{trail}"
    );
    assert!(trail["records"].as_array().unwrap().iter().all(|r| r["grant_id"] == id));
    assert_eq!(trail["next"], Value::Null);

    // The sample event's window: the whole day of 2026-11-23.
    let (status, day, _) = call(&w.grant, event("audit-get.json")).await;
    assert_eq!(status, 200, "{day}");
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(actions(&day)), sorted(trail_actions.clone()), "the day holds this grant's records only");
    // By default the last 24 hours.
    w.clock.advance(chrono::Duration::minutes(1));
    let (_, recent, _) = call(&w.grant, audit(&[])).await;
    assert_eq!(sorted(actions(&recent)), sorted(trail_actions.clone()));
    // Filters resolve names as `GET /grants` does.
    for (query, found) in [
        (vec![("user", "alice@example.com")], true),
        (vec![("user", "u-alice"), ("group", "prod-db-admins")], true),
        (vec![("integration", "corp")], true),
        (vec![("user", "bob@example.com")], false),
        (vec![("group", "engineering")], false),
        (vec![("from", "2026-11-24"), ("to", "2026-11-25")], false),
        (vec![("from", "2026-11-23T12:04:00Z"), ("to", "2026-11-23T12:06:00Z")], true),
    ] {
        let (status, body, _) = call(&w.grant, audit(&query)).await;
        assert_eq!(status, 200, "{query:?}: {body}");
        assert_eq!(!body["records"].as_array().unwrap().is_empty(), found, "{query:?}: {body}");
    }
    // A page of one record, then the rest.
    let (_, first, _) = call(&w.grant, audit(&[("from", "2026-11-23"), ("limit", "1")])).await;
    assert_eq!(first["records"].as_array().unwrap().len(), 1, "{first}");
    let next = first["next"].as_str().expect("more to read").to_owned();
    let (status, second, _) = call(&w.grant, audit(&[("from", "2026-11-23"), ("limit", "1"), ("next", &next)])).await;
    assert_eq!((status, actions(&second).len()), (200, 1), "{second}");

    for (query, expected) in [
        (vec![("grant", "not-a-grant")], 400),
        (vec![("grant", id), ("from", "2026-11-23")], 400),
        (vec![("from", "yesterday")], 400),
        (vec![("to", "2026-13-01")], 400),
        (vec![("from", "2026-11-24"), ("to", "2026-11-23")], 400),
        (vec![("limit", "0")], 400),
        (vec![("limit", "101")], 400),
        (vec![("next", "not-a-token")], 400),
        (vec![("user", "nobody@example.com")], 404),
    ] {
        let (status, body, headers) = call(&w.grant, audit(&query)).await;
        assert_eq!(status, expected, "{query:?}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{query:?}");
    }
    let (status, body, _) = call(&w.grant, as_person(audit(&[("grant", id)]), "alice@example.com", "true")).await;
    assert_eq!(status, 403, "the grantee is no admin: {body}");
    let mut post = event("audit-get.json");
    post["requestContext"]["http"]["method"] = "POST".into();
    assert_eq!(call(&w.grant, post).await.0, 405);
}

#[tokio::test]
async fn get_groups_carries_each_rules_ticket_pattern_and_extension_limit() {
    let w = world().await;
    let policy = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n    max_duration: 2h\n    \
                  ticket: \"INC-[0-9]+\"\n    extend: {max_total: 6h}\n";
    w.policies.apply(policy, w.clock.now());
    let (status, body, _) = call(&w.grant, as_person(event("groups-list.json"), "bob@example.com", "true")).await;
    assert_eq!(status, 200, "{body}");
    let group = &body["groups"][0];
    assert_eq!(group["name"], "prod-db-admins", "{body}");
    assert_eq!((group["ticket"].as_str(), group["extend_max_total"].as_str()), (Some("INC-[0-9]+"), Some("6h")));
    assert_eq!(group["max_duration"], "2h");
}
