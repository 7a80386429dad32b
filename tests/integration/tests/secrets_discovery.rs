//! Integration discovery against Secrets Manager (moto's server, the real SDK).

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use integration_tests::Stack;
use jit_shared::{adapters::secrets_manager::SecretsManagerCatalog, clock::ManualClock, ports::IntegrationCatalog};
use std::{sync::Arc, time::Duration};

fn catalog(stack: &Stack, clock: Arc<ManualClock>) -> SecretsManagerCatalog {
    SecretsManagerCatalog::new(
        aws_sdk_secretsmanager::Client::new(&stack.sdk),
        &stack.tag_key,
        "true",
        Duration::from_secs(300),
        clock,
    )
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()))
}

#[tokio::test]
async fn discovers_only_secrets_carrying_the_exact_tag() {
    let stack = Stack::new().await;
    let tag = stack.tag_key.clone();
    let good = stack.secret(r#"{"token":"k1","name":"corp","org_id":"o1"}"#, &[(&tag, "true")]).await;
    let unnamed = stack.secret(r#"{"token":"k2"}"#, &[(&tag, "true"), ("team", "it")]).await;
    stack.secret(r#"{"token":"k3","name":"untagged"}"#, &[]).await;
    // ListSecrets' tag-key and tag-value filters match independently: this one passes both filters.
    stack.secret(r#"{"token":"k4","name":"tagged-false"}"#, &[(&tag, "false"), ("other", "true")]).await;
    // A prefix of the tag key must not match either.
    stack.secret(r#"{"token":"k5","name":"prefix"}"#, &[(&format!("{tag}-x"), "true")]).await;
    stack.secret(r#"{"token":"k6","name":"value-prefix"}"#, &[(&tag, "trueish")]).await;

    let found = catalog(&stack, clock()).list().await.unwrap();
    let mut names: Vec<&str> = found.integrations.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    let mut expected = vec!["corp", unnamed.as_str()];
    expected.sort();
    assert_eq!(names, expected, "the secret's name is the default integration name");
    let corp = found.integrations.iter().find(|i| i.name == "corp").unwrap();
    assert_eq!(corp.credentials.token.expose(), "k1");
    assert_eq!(corp.credentials.org_id.as_deref(), Some("o1"));
    assert!(corp.secret_id.contains(&good));
    assert!(found.invalid.is_empty());
}

#[tokio::test]
async fn tagged_secrets_with_bad_values_are_reported_without_their_value() {
    let stack = Stack::new().await;
    let tag = stack.tag_key.clone();
    stack.secret(r#"{"token":"fine","name":"ok"}"#, &[(&tag, "true")]).await;
    let bad = stack.secret(r#"{"tokn":"leaky-secret-value"}"#, &[(&tag, "true")]).await;
    let found = catalog(&stack, clock()).list().await.unwrap();
    assert_eq!(found.integrations.len(), 1);
    assert_eq!(found.invalid.len(), 1);
    assert_eq!(found.invalid[0].secret, bad);
    assert!(found.invalid[0].reason.contains("token"));
    assert!(!format!("{:?}", found.invalid).contains("leaky-secret-value"));
    assert!(!format!("{:?}", found.integrations).contains("fine"), "Debug never shows a key");
}

#[tokio::test]
async fn values_are_cached_for_the_ttl_and_refresh_reads_again() {
    let stack = Stack::new().await;
    let name = stack.integration("rotating", "old-key").await;
    let clock = clock();
    let catalog = catalog(&stack, clock.clone());
    let token = |c: &jit_shared::ports::Discovered| c.integrations[0].credentials.token.expose().to_owned();
    assert_eq!(token(&catalog.list().await.unwrap()), "old-key");

    stack
        .secrets
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"token":"new-key","name":"rotating"}"#)
        .send()
        .await
        .unwrap();
    clock.advance(ChronoDuration::seconds(299));
    assert_eq!(token(&catalog.list().await.unwrap()), "old-key", "served from the cache within the TTL");

    // After a 401 the client asks for a refresh: the new value is read at once and cached.
    assert_eq!(catalog.refresh("rotating").await.unwrap().credentials.token.expose(), "new-key");
    assert_eq!(token(&catalog.list().await.unwrap()), "new-key");

    stack
        .secrets
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"token":"newer-key","name":"rotating"}"#)
        .send()
        .await
        .unwrap();
    clock.advance(ChronoDuration::seconds(301));
    assert_eq!(token(&catalog.list().await.unwrap()), "newer-key", "re-read once the TTL has passed");
    assert!(catalog.refresh("nope").await.is_err());
}

#[tokio::test]
async fn two_secrets_claiming_one_name_are_both_refused_whatever_their_order() {
    let stack = Stack::new().await;
    let tag = stack.tag_key.clone();
    // The real one, then a second secret (another organization's key) claiming the same name; its
    // secret name sorts first, as an attacker would choose it.
    let real = stack.secret(r#"{"token":"real-key","name":"corp","org_id":"org-real"}"#, &[(&tag, "true")]).await;
    let shadow = stack.secret(r#"{"token":"shadow-key","name":"corp","org_id":"org-evil"}"#, &[(&tag, "true")]).await;
    stack.secret(r#"{"token":"other-key","name":"other"}"#, &[(&tag, "true")]).await;

    let found = catalog(&stack, clock()).list().await.unwrap();
    let names: Vec<&str> = found.integrations.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["other"], "neither claimant of corp is used");
    let mut refused: Vec<&str> = found.invalid.iter().map(|i| i.secret.as_str()).collect();
    refused.sort();
    let mut expected = vec![real.as_str(), shadow.as_str()];
    expected.sort();
    assert_eq!(refused, expected);
    for invalid in &found.invalid {
        assert!(
            invalid.reason.contains("\"corp\"") && invalid.reason.contains(&real) && invalid.reason.contains(&shadow)
        );
        assert!(!invalid.reason.contains("real-key") && !invalid.reason.contains("shadow-key"), "{}", invalid.reason);
    }
}
