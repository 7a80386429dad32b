//! `GET /policy`: the applied version to admins, 403 to anyone else, 404 while none is applied.

use super::{access::as_person, *};

const DOC: &str = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n";

#[tokio::test]
async fn get_policy_answers_admins_only() {
    let w = world().await;
    let (status, body, headers) = call(&w.grant, event("policy-get.json")).await;
    assert_eq!(status, 404, "none applied yet: {body}");
    assert_eq!(headers["content-type"], "application/problem+json");

    let applied = w.policy_store.apply_document(DOC, "cli:carol").await;
    let (status, body, _) = call(&w.grant, event("policy-get.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["document"], DOC);
    assert_eq!(body["applied_by"], "cli:carol");
    assert_eq!(body["sha256"], applied.sha256);
    assert!(body["applied_at"].is_string());

    // dave is an admin through ADMIN_GROUP; bob is not.
    let (status, body, _) = call(&w.grant, as_person(event("policy-get.json"), "dave@example.com", "true")).await;
    assert_eq!((status, &body["version"]), (200, &serde_json::json!(1)), "{body}");
    let (status, body, _) = call(&w.grant, as_person(event("policy-get.json"), "bob@example.com", "true")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("only admins"), "{body}");

    let mut post = event("policy-get.json");
    post["requestContext"]["http"]["method"] = "POST".into();
    assert_eq!(call(&w.grant, post).await.0, 405);
}
