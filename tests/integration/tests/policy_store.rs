//! The DynamoDB policy store against moto's server with the real SDK: versions numbered from 1
//! and never overwritten, the applied pointer moved only from the planned-on version (of
//! concurrent applies exactly one wins), and each change's audit record in the per-day index.

use chrono::{DateTime, Duration, TimeZone, Utc};
use integration_tests::{serial_proxy, Stack};
use jit_shared::{
    adapters::dynamodb::{DynamoGrantStore, DynamoPolicyStore},
    domain::{
        model::{AuditAction, POLICY_AUDIT_ID},
        policy::{document_sha256, parse_policy},
    },
    ports::{GrantStore, PolicyChange, PolicyStore, PolicyStoreError},
};
use std::sync::Arc;

fn document(max: &str) -> String {
    format!("version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n    max_duration: {max}\n")
}

fn change(document: &str, previous: Option<u64>, by: &str) -> PolicyChange {
    PolicyChange {
        document: document.to_owned(),
        policy: Arc::new(parse_policy(document).unwrap()),
        previous,
        by: by.to_owned(),
        at: t0(),
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

async fn stores() -> (Stack, DynamoPolicyStore, DynamoGrantStore) {
    let stack = Stack::new().await;
    // Through the serializing proxy: moto applies concurrent transactions without isolation (see
    // `serial_proxy`); DynamoDB applies each atomically.
    let serial = aws_sdk_dynamodb::config::Builder::from(&stack.sdk).endpoint_url(serial_proxy()).build();
    let policies = DynamoPolicyStore::new(aws_sdk_dynamodb::Client::from_conf(serial), &stack.table);
    let grants = DynamoGrantStore::new(stack.dynamodb.clone(), &stack.table);
    (stack, policies, grants)
}

#[tokio::test]
async fn versions_are_numbered_kept_and_never_overwritten() {
    let (stack, store, grants) = stores().await;
    assert!(store.applied().await.unwrap().is_none());
    assert!(store.version(1).await.unwrap().is_none());

    let first = store.apply(&change(&document("2h"), None, "cli:carol")).await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.sha256, document_sha256(&document("2h")));
    let second = store.apply(&change(&document("1h"), Some(1), "cli:dave")).await.unwrap();
    assert_eq!(second.version, 2);

    let applied = store.applied().await.unwrap().unwrap();
    assert_eq!((applied.version, applied.applied_by.as_str()), (2, "cli:dave"));
    assert_eq!(applied.policy.rules[0].max_duration.to_string(), "1h", "parsed back");
    let one = store.version(1).await.unwrap().unwrap();
    assert_eq!((one.document, one.applied_by.as_str()), (document("2h"), "cli:carol"), "version 1 as applied");

    // A change planned on version 1 again (it would be version 2): refused, version 2 unchanged.
    match store.apply(&change(&document("30m"), Some(1), "cli:mallory")).await {
        Err(PolicyStoreError::Conflict { current }) => assert_eq!(current, Some(2)),
        other => panic!("{other:?}"),
    }
    // And one planned on no policy at all.
    match store.apply(&change(&document("30m"), None, "cli:mallory")).await {
        Err(PolicyStoreError::Conflict { current }) => assert_eq!(current, Some(2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.version(2).await.unwrap().unwrap().applied_by, "cli:dave");
    assert_eq!(stack.count("POLICY").await, 3, "two versions and the pointer");
    let item = stack.item("POLICY", "VERSION#00000000000000000002").await.unwrap();
    assert_eq!(item["previous"].as_n().unwrap(), "1");

    // One audit record per landed change (none for the refused ones), in the day index that
    // `jitctl audit --since` reads, and under the pseudo-grant `policy`: the history of changes.
    let page = grants.audit_between(t0() - Duration::hours(1), t0() + Duration::hours(1), 100, None).await.unwrap();
    let records: Vec<_> = page.records.iter().filter(|r| r.action == AuditAction::PolicyApplied).collect();
    assert_eq!(records.len(), 2, "{:?}", page.records);
    assert!(records.iter().all(|r| r.grant_id == POLICY_AUDIT_ID));
    assert_eq!((records[0].actor.as_str(), records[1].actor.as_str()), ("cli:carol", "cli:dave"));
    assert_eq!(
        records[0].detail.as_deref(),
        Some(format!("version 1 (sha256 {}), previous none", first.sha256).as_str())
    );
    assert!(records[1].detail.as_deref().unwrap().ends_with("previous 1"), "{:?}", records[1]);
    assert_eq!(grants.audit_for(POLICY_AUDIT_ID).await.unwrap().len(), 2);
}

#[tokio::test]
async fn of_concurrent_applies_on_one_version_exactly_one_wins() {
    let (_stack, store, grants) = stores().await;
    store.apply(&change(&document("2h"), None, "cli:carol")).await.unwrap();
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.apply(&change(&document(&format!("{}m", 10 + i)), Some(1), &format!("cli:op{i}"))).await
            })
        })
        .collect();
    let mut won = vec![];
    for task in tasks {
        match task.await.unwrap() {
            Ok(applied) => won.push(applied),
            Err(PolicyStoreError::Conflict { current }) => assert_eq!(current, Some(2)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one apply lands");
    let applied = store.applied().await.unwrap().unwrap();
    assert_eq!((applied.version, &applied.applied_by), (2, &won[0].applied_by));
    assert!(store.version(3).await.unwrap().is_none());
    let page = grants.audit_between(t0() - Duration::hours(1), t0() + Duration::hours(1), 100, None).await.unwrap();
    let actors: Vec<&str> = page.records.iter().map(|r| r.actor.as_str()).collect();
    assert_eq!(actors, vec!["cli:carol", won[0].applied_by.as_str()], "the losers left no audit record");
}
