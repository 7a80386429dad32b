//! Who may do what, through the handlers: callers signed in as several people (JWT) and IAM
//! principals; admins by `ADMIN_PRINCIPALS` and by `ADMIN_GROUP`.

use super::*;
use crate::domain::model::EventType;
use serde_json::json;

const ISSUER: &str = "https://sso.example.com";

/// A sample event as the JWT authorizer passes it: the token's claims, as strings.
pub(super) fn as_person(mut e: Value, email: &str, verified: &str) -> Value {
    let sub = format!("sub-{}", email.split('@').next().unwrap());
    e["requestContext"]["authorizer"] = json!({
        "jwt": { "claims": { "iss": ISSUER, "sub": sub, "email": email, "email_verified": verified }, "scopes": null }
    });
    e
}

fn create_for(user: &str) -> Value {
    let mut e = with_body(
        event("grant-create.json"),
        &format!(r#"{{"user":"{user}","group":"prod-db-admins","duration":"2h","reason":"INC-1"}}"#),
    );
    e["headers"].as_object_mut().unwrap().remove("idempotency-key");
    e
}

async fn revoke(w: &World, e: Value) -> (u16, Value, Value) {
    call_revoke(&w.revoke, e).await
}

#[tokio::test]
async fn callers_without_a_usable_identity_are_refused_and_nothing_changes() {
    let w = world().await;
    let cases = [
        (as_person(create_for("bob@example.com"), "bob@example.com", "false"), 401, "not verified"),
        (as_person(create_for("bob@example.com"), "mallory@example.com", "true"), 403, "not an active user"),
        (as_person(event("grant-list.json"), "mallory@example.com", "true"), 403, "not an active user"),
    ];
    for (e, status, detail) in cases {
        let (got, body, _) = call(&w.grant, e).await;
        assert_eq!(got, status, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    }
    let mut other_iam = create_for("bob@example.com");
    other_iam["requestContext"]["authorizer"]["iam"]["userArn"] = "arn:aws:iam::123456789012:user/mallory".into();
    let (status, body, _) = call(&w.grant, other_iam).await;
    assert_eq!(status, 403);
    assert!(body["detail"].as_str().unwrap().contains("ADMIN_PRINCIPALS"), "{body}");
    assert!(!is_member(&w, "g-db", "u-bob"));
    assert!(w.bus.published().is_empty());
}

#[tokio::test]
async fn without_a_policy_only_admins_grant() {
    let w = world().await;
    // bob, signed in, asks for himself: no policy is applied, so he may not.
    let (status, body, _) = call(&w.grant, as_person(create_for("bob@example.com"), "bob@example.com", "true")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("only admins"), "{body}");
    assert!(!is_member(&w, "g-db", "u-bob"));
    let (_, groups, _) = call(&w.grant, as_person(event("groups-list.json"), "bob@example.com", "true")).await;
    assert_eq!(groups["groups"], json!([]), "nothing bob may request");

    // dave is an admin through ADMIN_GROUP: he grants, and is recorded as the requester.
    let (status, grant, _) = call(&w.grant, as_person(create_for("bob@example.com"), "dave@example.com", "true")).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["requested_by"], format!("{ISSUER}#sub-dave"));
    assert_eq!(grant["requester"], json!({"id": "u-dave", "email": "dave@example.com"}));
    assert!(is_member(&w, "g-db", "u-bob"));
    // The IAM admin has no directory user: no requester.
    let (status, grant, _) = call(&w.grant, create_for("alice@example.com")).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!((grant["requested_by"].as_str(), &grant["requester"]), (Some(ADMIN_ARN), &Value::Null));
    let (_, groups, _) = call(&w.grant, event("groups-list.json")).await;
    assert_eq!(groups["groups"].as_array().unwrap().len(), 1, "admins see the requestable groups");
}

#[tokio::test]
async fn people_see_and_end_only_their_own_grants() {
    let w = world().await;
    let (_, bobs, _) = call(&w.grant, create_for("bob@example.com")).await;
    let (_, alices, _) = call(&w.grant, create_for("alice@example.com")).await;
    let (bob_id, alice_id) = (bobs["id"].as_str().unwrap(), alices["id"].as_str().unwrap());
    let bob = |e: Value| as_person(e, "bob@example.com", "true");
    let carol = |e: Value| as_person(e, "carol@example.com", "true");

    // The grantee sees his grant; someone else gets 404, as if it did not exist.
    assert_eq!(call(&w.grant, bob(with_id(event("grant-get.json"), bob_id))).await.0, 200);
    assert_eq!(call(&w.grant, bob(with_id(event("grant-get.json"), alice_id))).await.0, 404);
    assert_eq!(call(&w.grant, carol(with_id(event("grant-get.json"), bob_id))).await.0, 404);
    // Listings hold only the caller's own grants; asking for someone else's is refused.
    let (status, list, _) = call(&w.grant, bob(event("grant-list.json"))).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["grants"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![bob_id]);
    let (_, list, _) = call(&w.grant, carol(event("grant-list.json"))).await;
    assert!(list["grants"].as_array().unwrap().is_empty(), "{list}");
    let (status, _, _) =
        call(&w.grant, bob(with_query(event("grant-list.json"), &[("user", "alice@example.com")]))).await;
    assert_eq!(status, 403);
    let (status, _, _) =
        call(&w.grant, bob(with_query(event("grant-list.json"), &[("user", "bob@example.com")]))).await;
    assert_eq!(status, 200);
    let (_, all, _) = call(&w.grant, event("grant-list.json")).await;
    assert_eq!(all["grants"].as_array().unwrap().len(), 2, "the admin sees every grant");

    // Ending: not someone else's (404, unseen), one's own yes, and it is audited as theirs.
    let delete = |id: &str| with_id(event("grant-revoke-http.json"), id);
    assert_eq!(revoke(&w, carol(delete(bob_id))).await.0, 404);
    assert!(is_member(&w, "g-db", "u-bob"));
    let (status, ended, _) = revoke(&w, bob(delete(bob_id))).await;
    assert_eq!((status, ended["status"].as_str()), (200, Some("revoked")), "{ended}");
    assert!(!is_member(&w, "g-db", "u-bob"));
    let revoked = w.bus.published().into_iter().find(|e| e.detail_type == EventType::GrantRevoked).expect("published");
    assert_eq!(revoked.detail["actor"], format!("{ISSUER}#sub-bob"));
}

#[tokio::test]
async fn events_from_another_api_than_the_deployed_one_are_refused() {
    let w = world().await;
    let mut identity = w.grant.lifecycle.identity.clone();
    // The sample events come through API `abc123`.
    identity.api_id = Some("abc123".into());
    let lifecycle = |identity: IdentityConfig| GrantHandler {
        lifecycle: Arc::new(crate::wiring::Lifecycle { identity, ..(*w.grant.lifecycle).clone() }),
    };
    let deployed = lifecycle(identity.clone());
    assert_eq!(call(&deployed, event("grant-list.json")).await.0, 200);
    identity.api_id = Some("zzz999".into());
    let elsewhere = lifecycle(identity);
    let (status, body, _) = call(&elsewhere, event("grant-list.json")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("did not come through"), "{body}");
}
