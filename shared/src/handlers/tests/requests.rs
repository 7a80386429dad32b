//! Requests and approvals through the handlers, signed in as several people (JWT): bob asks,
//! his manager carol approves, others may not; visibility, `awaiting=me`, `GET /groups`.

use super::*;
use crate::{
    clock::Clock,
    domain::model::{DirectoryChanges, Membership},
};
use serde_json::json;

pub(super) const POLICY: &str = r#"
version: 1
defaults: {max_duration: 4h, approval: {approvers: [manager], required: 1, timeout: 24h}}
rules:
  - groups: ["prod-db-*"]
    eligible: {groups: [engineering]}
  - groups: ["*"]
    eligible: nobody
"#;

/// An HTTP API event of `method path?query` with `body`, signed in as `email` (JWT), or as the
/// admin IAM user when `email` is `None`.
pub(super) fn http(method: &str, path: &str, query: &str, body: Option<&str>, email: Option<&str>) -> Value {
    let mut e = event("grant-create.json");
    e["headers"].as_object_mut().unwrap().remove("idempotency-key");
    e["routeKey"] = format!("{method} {path}").into();
    e["rawPath"] = path.into();
    e["rawQueryString"] = query.into();
    e["requestContext"]["http"]["method"] = method.into();
    e["requestContext"]["http"]["path"] = path.into();
    e["body"] = body.map_or(Value::Null, Value::from);
    if !query.is_empty() {
        let params: serde_json::Map<String, Value> =
            query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
        e["queryStringParameters"] = params.into();
    }
    if let Some(email) = email {
        let sub = format!("sub-{}", email.split('@').next().unwrap());
        e["requestContext"]["authorizer"] = json!({
            "jwt": { "claims": { "iss": "https://sso.example.com", "sub": sub, "email": email, "email_verified": "true" } }
        });
    }
    e
}

/// bob (manager carol) is in engineering; erin is in nothing.
pub(super) async fn world_with_policy() -> World {
    let w = world().await;
    let mut bob = crate::domain::model::fixtures::user("u-bob", "bob@example.com");
    bob.manager_id = Some("u-carol".into());
    let changes = DirectoryChanges {
        put_users: vec![bob, crate::domain::model::fixtures::user("u-erin", "erin@example.com")],
        put_memberships: vec![Membership { group_id: "g-eng".into(), user_id: "u-bob".into() }],
        ..DirectoryChanges::default()
    };
    w.grant.lifecycle.directory_store.apply_changes("corp", &changes).await.unwrap();
    w.policies.apply(POLICY, w.clock.now());
    w
}

pub(super) const ASK: &str = r#"{"group":"prod-db-admins","duration":"2h","reason":"INC-4711 replica lag"}"#;

#[tokio::test]
async fn a_request_goes_pending_and_the_managers_approval_activates_it() {
    let w = world_with_policy().await;
    let bob = Some("bob@example.com");
    let (status, request, headers) = call(&w.grant, http("POST", "/grants", "", Some(ASK), bob)).await;
    assert_eq!(status, 202, "{request}");
    assert_eq!(request["status"], "pending_approval");
    assert_eq!(request["approvers"], json!(["carol@example.com"]));
    assert_eq!(request["requester"]["email"], "bob@example.com");
    assert_eq!((request["granted_at"].clone(), request["expires_at"].clone()), (Value::Null, Value::Null));
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/grants/{id}"));
    assert!(!is_member(&w, "g-db", "u-bob"));
    let approve =
        |email: Option<&str>, body: Option<&str>| http("POST", &format!("/grants/{id}/approve"), "", body, email);

    // Never the requester; not an admin who is no approver (by group or by IAM); not erin, who
    // cannot even see it.
    for (who, expected) in [(bob, 403), (Some("dave@example.com"), 403), (None, 403), (Some("erin@example.com"), 404)] {
        let (status, body, _) = call(&w.grant, approve(who, None)).await;
        assert_eq!(status, expected, "{who:?}: {body}");
    }
    let (status, _, _) =
        call(&w.grant, http("GET", &format!("/grants/{id}"), "", None, Some("erin@example.com"))).await;
    assert_eq!(status, 404, "others' requests are invisible");

    // carol sees it awaiting her; bob does not (he asked).
    let (_, mine, _) = call(&w.grant, http("GET", "/grants", "awaiting=me", None, Some("carol@example.com"))).await;
    assert_eq!(mine["grants"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["grants"][0]["id"], id.as_str());
    let (_, none, _) = call(&w.grant, http("GET", "/grants", "awaiting=me", None, bob)).await;
    assert_eq!(none["grants"], json!([]));
    let (status, seen, _) =
        call(&w.grant, http("GET", &format!("/grants/{id}"), "", None, Some("carol@example.com"))).await;
    assert_eq!((status, seen["id"].as_str()), (200, Some(id.as_str())));

    // A bad comment changes nothing.
    let (status, _, _) = call(&w.grant, approve(Some("carol@example.com"), Some(r#"{"comment":"ok\u0000"}"#))).await;
    assert_eq!(status, 400);
    let (status, active, _) = call(&w.grant, approve(Some("carol@example.com"), Some(r#"{"comment":"ok"}"#))).await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["status"], "active");
    assert_eq!(active["approvals"][0]["by"], "carol@example.com");
    assert!(is_member(&w, "g-db", "u-bob"));
    // Decided: 409; unknown: 404.
    let (status, _, _) = call(&w.grant, approve(Some("carol@example.com"), None)).await;
    assert_eq!(status, 409);
    let unknown = "3f9a1c2e-5b7d-4e8f-9a0b-000000000000";
    let deny =
        http("POST", &format!("/grants/{unknown}/deny"), "", Some(r#"{"comment":"no"}"#), Some("carol@example.com"));
    assert_eq!(call(&w.grant, deny).await.0, 404);
}

#[tokio::test]
async fn a_denied_request_and_a_cancelled_one_add_nothing() {
    let w = world_with_policy().await;
    let bob = Some("bob@example.com");
    let (_, first, _) = call(&w.grant, http("POST", "/grants", "", Some(ASK), bob)).await;
    let id = first["id"].as_str().unwrap();
    let deny = |body| http("POST", &format!("/grants/{id}/deny"), "", body, Some("carol@example.com"));
    assert_eq!(call(&w.grant, deny(None)).await.0, 400, "a denial says why");
    let long = format!(r#"{{"comment":"{}"}}"#, "x".repeat(1001));
    assert_eq!(call(&w.grant, deny(Some(&long))).await.0, 400);
    let (status, denied, _) = call(&w.grant, deny(Some(r#"{"comment":"use the read replica"}"#))).await;
    assert_eq!((status, denied["status"].as_str()), (200, Some("denied")), "{denied}");

    let (_, second, _) = call(&w.grant, http("POST", "/grants", "", Some(ASK), bob)).await;
    let id = second["id"].as_str().unwrap();
    // carol approves requests; cancelling one is for its requester (or an admin).
    let delete = |email| with_id_as(event("grant-revoke-http.json"), id, email);
    let (status, _, _) = call_revoke(&w.revoke, delete("carol@example.com")).await;
    assert_eq!(status, 403);
    let (status, cancelled, _) = call_revoke(&w.revoke, delete("bob@example.com")).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    assert!(!is_member(&w, "g-db", "u-bob"));
    assert_eq!(w.store.grants().len(), 2);
}

fn with_id_as(e: Value, id: &str, email: &str) -> Value {
    let mut e = with_id(e, id);
    let sub = format!("sub-{}", email.split('@').next().unwrap());
    e["requestContext"]["authorizer"] = json!({
        "jwt": { "claims": { "iss": "https://sso.example.com", "sub": sub, "email": email, "email_verified": "true" } }
    });
    e
}

#[tokio::test]
async fn get_groups_lists_what_each_caller_may_request_with_its_terms() {
    let w = world_with_policy().await;
    let (_, bobs, _) = call(&w.grant, http("GET", "/groups", "", None, Some("bob@example.com"))).await;
    assert_eq!(
        bobs["groups"],
        json!([{ "integration": "corp", "id": "g-db", "name": "prod-db-admins", "description": null,
                 "max_duration": "4h", "approval_required": true, "auto_approve_up_to": null, "break_glass": false,
                 "ticket": null, "extend_max_total": "4h" }])
    );
    let (_, erins, _) = call(&w.grant, http("GET", "/groups", "", None, Some("erin@example.com"))).await;
    assert_eq!(erins["groups"], json!([]), "erin is in no eligible group");
    let (_, admins, _) = call(&w.grant, http("GET", "/groups", "", None, None)).await;
    assert_eq!(admins["groups"].as_array().unwrap().len(), 1, "admins: every requestable group");
}

#[tokio::test]
async fn an_extension_waits_for_the_managers_approval_and_then_moves_the_expiry() {
    let w = world_with_policy().await;
    let bob = Some("bob@example.com");
    let carol = Some("carol@example.com");
    let (_, request, _) = call(&w.grant, http("POST", "/grants", "", Some(ASK), bob)).await;
    let id = request["id"].as_str().unwrap().to_owned();
    let (_, active, _) = call(&w.grant, http("POST", &format!("/grants/{id}/approve"), "", None, carol)).await;
    assert_eq!(active["status"], "active", "{active}");
    let extend = |email: Option<&str>, body: &str| http("POST", &format!("/grants/{id}/extend"), "", Some(body), email);
    let one_hour = r#"{"duration":"1h","reason":"INC-4711 the restore runs long"}"#;
    // Someone who cannot see the grant; the approver, who is not its grantee; bad input.
    assert_eq!(call(&w.grant, extend(Some("erin@example.com"), one_hour)).await.0, 404);
    assert_eq!(call(&w.grant, extend(carol, one_hour)).await.0, 403);
    assert_eq!(call(&w.grant, extend(bob, r#"{"duration":"soon","reason":"x"}"#)).await.0, 400);
    // 2h + 3h would pass the rule's 4h in all.
    let (status, body, _) = call(&w.grant, extend(bob, r#"{"duration":"3h","reason":"INC-1"}"#)).await;
    assert_eq!(status, 422, "{body}");

    let (status, pending, _) = call(&w.grant, extend(bob, one_hour)).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["pending_extension"]["approvers"], json!(["carol@example.com"]));
    assert_eq!(pending["expires_at"], active["expires_at"]);
    let (status, extended, _) = call(&w.grant, http("POST", &format!("/grants/{id}/approve"), "", None, carol)).await;
    assert_eq!(status, 200, "{extended}");
    assert_eq!(extended["expires_at"], "2026-11-23T15:00:00Z");
    assert_eq!(extended["extensions"][0]["duration"], "1h");
    assert_eq!(extended["pending_extension"], Value::Null);
}
