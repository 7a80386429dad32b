//! The audit trail's hash chains and daily seals in DynamoDB (moto's server, the real SDK): what
//! the store writes verifies; concurrent writers of one grant's trail still make one chain; and
//! each way of tampering with the items directly (overwrite, delete, the chain's head, a whole
//! grant's trail) makes verification fail (issue 10 point 2).

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, TimeZone, Utc};
use integration_tests::{serial_proxy, BusCopy, Stack};
use jit_shared::{
    adapters::{dynamodb::DynamoGrantStore, eventbridge::EventBridgeBus},
    domain::audit::{seal_days, verify, verify_anchors, AuditScope, AuditVerification, SealAnchor},
    domain::model::{
        audit_chain::{ChainBreak, SealBreak},
        sample_grant, AuditAction, AuditOutcome, AuditRecord, Grant,
    },
    ports::GrantStore,
};
use std::{collections::HashMap, sync::Arc};

type Item = HashMap<String, AttributeValue>;

fn day() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap()
}

fn grant(id: &str) -> Grant {
    Grant { id: id.to_owned(), ..sample_grant() }
}

fn record(grant: &Grant, minute: i64, action: AuditAction) -> AuditRecord {
    AuditRecord::new(
        grant,
        day() + Duration::hours(9) + Duration::minutes(minute),
        "tester",
        action,
        AuditOutcome::Succeeded,
    )
}

struct Trail {
    stack: Stack,
    store: Arc<DynamoGrantStore>,
}

impl Trail {
    async fn new() -> Self {
        let stack = Stack::new().await;
        // Through the proxy that hands moto one request at a time: each request atomic, as in
        // DynamoDB (moto alone lets two racing conditional writes both pass; see `serial_proxy`).
        let config = aws_sdk_dynamodb::config::Builder::from(&stack.sdk).endpoint_url(serial_proxy()).build();
        let store = Arc::new(DynamoGrantStore::new(aws_sdk_dynamodb::Client::from_conf(config), &stack.table));
        Self { stack, store }
    }

    async fn verify(&self, scope: AuditScope) -> AuditVerification {
        verify(self.store.as_ref(), &scope, day() + Duration::days(1) + Duration::hours(2), &mut |_| {}).await.unwrap()
    }

    /// Every item of a grant's audit partition (records and the chain's head), by sort key.
    async fn items(&self, grant_id: &str) -> Vec<Item> {
        self.stack.partition(&format!("AUDIT#{grant_id}")).await
    }

    async fn put_raw(&self, item: Item) {
        self.stack.dynamodb.put_item().table_name(&self.stack.table).set_item(Some(item)).send().await.unwrap();
    }

    async fn delete_raw(&self, item: &Item) {
        let key = HashMap::from([("pk".to_owned(), item["pk"].clone()), ("sk".to_owned(), item["sk"].clone())]);
        self.stack.dynamodb.delete_item().table_name(&self.stack.table).set_key(Some(key)).send().await.unwrap();
    }

    /// A fresh event bus whose `Audit Day Sealed` events a rule copies to a fresh queue: the copy
    /// a security team keeps outside the table.
    async fn bus(&self) -> SealBus {
        let events = aws_sdk_eventbridge::Client::new(&self.stack.sdk);
        let pattern = serde_json::json!({ "source": ["jit-access"], "detail-type": ["Audit Day Sealed"] });
        let copy = BusCopy::new(&self.stack.sdk, &events, pattern).await;
        SealBus { adapter: EventBridgeBus::new(events, &copy.name), copy }
    }
}

struct SealBus {
    adapter: EventBridgeBus,
    copy: BusCopy,
}

impl SealBus {
    /// The seals' copies delivered so far, each read from the event as delivered.
    async fn kept(&self) -> Vec<SealAnchor> {
        let delivered = self.copy.delivered().await;
        delivered
            .iter()
            .map(|event| SealAnchor::parse(&event.to_string()).expect("an Audit Day Sealed event"))
            .collect()
    }
}

#[tokio::test]
async fn the_stored_trail_verifies_and_every_kind_of_tampering_is_found() {
    let t = Trail::new().await;
    let (a, b, c) = (grant("grant-a"), grant("grant-b"), grant("grant-c"));
    for (i, action) in [AuditAction::Created, AuditAction::Activated, AuditAction::Expired].into_iter().enumerate() {
        t.store.append_audit(&[record(&a, i as i64, action)]).await.unwrap();
    }
    t.store.append_audit(&[record(&b, 5, AuditAction::Created)]).await.unwrap();
    t.store.append_audit(&[record(&c, 6, AuditAction::Created), record(&c, 7, AuditAction::Activated)]).await.unwrap();

    // The chain as stored: records 1..=3 of a, each naming the one before; the head after them.
    let items = t.items(&a.id).await;
    assert_eq!(items.len(), 4);
    assert_eq!(items[3]["sk"].as_s().unwrap(), "~CHAIN");
    assert_eq!(items[3]["n"].as_n().unwrap(), "3");
    assert_eq!(t.store.audit_for(&a.id).await.unwrap().len(), 3, "the head is not a record");

    let bus = t.bus().await;
    let sealed =
        seal_days(t.store.as_ref(), &bus.adapter, day() + Duration::days(1) + Duration::hours(1)).await.unwrap();
    assert_eq!(sealed.iter().map(|s| (s.day, s.records)).collect::<Vec<_>>(), vec![(day().date_naive(), 6)]);
    let again = seal_days(t.store.as_ref(), &bus.adapter, day() + Duration::days(1) + Duration::hours(2)).await;
    assert!(again.unwrap().is_empty());

    let clean = t.verify(AuditScope::Since(day())).await;
    assert!(clean.intact(), "{clean:?}");
    assert_eq!((clean.grants, clean.records, clean.seals, clean.unchained), (3, 6, 1, 0));

    // 1. A record overwritten in place (a PutItem: IAM cannot forbid it) with another actor.
    let mut altered = t.items(&a.id).await[1].clone();
    altered.insert("actor".into(), AttributeValue::S("someone-else".into()));
    t.put_raw(altered).await;
    let report = t.verify(AuditScope::Since(day())).await;
    assert!(!report.intact());
    assert!(
        matches!(&report.chain_breaks[..], [(g, ChainBreak::Altered { n: 3, previous: 2, .. })] if g == "grant-a"),
        "{report:?}"
    );
    assert_eq!(report.seal_breaks, vec![SealBreak::Contents { day: day().date_naive(), sealed: 6, stored: 6 }]);

    // 2. A whole grant's trail deleted, head included: nothing of b is left to find it by, but
    // the day's seal counted its record.
    for item in t.items(&b.id).await {
        t.delete_raw(&item).await;
    }
    let report = t.verify(AuditScope::Since(day())).await;
    assert!(report.seal_breaks.contains(&SealBreak::Contents { day: day().date_naive(), sealed: 6, stored: 5 }));

    // 3. The newest record of c deleted: its chain's head still counts it.
    let items = t.items(&c.id).await;
    t.delete_raw(&items[1]).await;
    let report = t.verify(AuditScope::Grant(c.id.clone())).await;
    assert_eq!(
        report.chain_breaks,
        vec![
            (c.id.clone(), ChainBreak::Missing { n: 2 }),
            (c.id.clone(), ChainBreak::Length { head_n: 2, stored_n: 1 })
        ]
    );

    // 4. c's head deleted too, to hide that: chained records without a head.
    t.delete_raw(&t.items(&c.id).await[1]).await;
    let report = t.verify(AuditScope::Grant(c.id.clone())).await;
    assert_eq!(report.chain_breaks, vec![(c.id.clone(), ChainBreak::HeadMissing)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_trail_make_one_chain() {
    // 16 writers start together: they read the same head, one wins each place, the others link
    // again after the head that beat them.
    let t = Trail::new().await;
    let a = grant("grant-busy");
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (store, start) = (t.store.clone(), start.clone());
            let record = record(&a, i, AuditAction::MembershipKept);
            tokio::spawn(async move {
                start.wait().await;
                store.append_audit(&[record]).await
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let records = t.store.audit_for(&a.id).await.unwrap();
    let mut places: Vec<u64> = records.iter().map(|r| r.chain.as_ref().unwrap().n).collect();
    places.sort_unstable();
    assert_eq!(places, (1..=16).collect::<Vec<_>>(), "each record its own place");
    let report = t.verify(AuditScope::Grant(a.id.clone())).await;
    assert!(report.intact(), "{report:?}");
}

#[tokio::test]
async fn the_seals_published_on_the_bus_catch_the_table_rewritten_and_sealed_again() {
    let t = Trail::new().await;
    let bus = t.bus().await;
    let (a, b) = (grant("grant-a"), grant("grant-b"));
    t.store.append_audit(&[record(&a, 0, AuditAction::Created)]).await.unwrap();
    t.store.append_audit(&[record(&b, 1, AuditAction::Created)]).await.unwrap();
    let sealed =
        seal_days(t.store.as_ref(), &bus.adapter, day() + Duration::days(1) + Duration::hours(1)).await.unwrap();
    let kept = bus.kept().await;
    assert_eq!(kept, vec![SealAnchor::of(&sealed[0])], "one event a seal, delivered as published");
    let mut clean = t.verify(AuditScope::Since(day())).await;
    verify_anchors(t.store.as_ref(), &kept, &mut clean).await.unwrap();
    assert!(clean.intact(), "{clean:?}");
    assert_eq!(clean.anchors, 1);

    // Someone with the table's rights deletes b's trail and the day's seal, and seals the day
    // again (the store's own code, as they could): the table alone verifies.
    for item in t.items(&b.id).await.into_iter().chain(t.items("~SEALS").await) {
        t.delete_raw(&item).await;
    }
    let quiet = t.bus().await;
    seal_days(t.store.as_ref(), &quiet.adapter, day() + Duration::days(1) + Duration::hours(1)).await.unwrap();
    let mut report = t.verify(AuditScope::Since(day())).await;
    assert!(report.intact(), "the rewrite is consistent: {report:?}");
    verify_anchors(t.store.as_ref(), &kept, &mut report).await.unwrap();
    assert_eq!(report.seal_breaks, vec![SealBreak::Anchor { day: day().date_naive() }]);
}
