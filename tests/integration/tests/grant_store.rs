//! The DynamoDB grant store against moto's server with the real SDK: every operation's success
//! and its refused condition, the queries and their pages, idempotency, the synced-directory
//! oracle, AWS's limits, and the domain's lifecycle (grant, revoke, expiry, sweep; invariants 2,
//! 3 and 5, concurrent deliveries) run over it. Every test has its own table; the DynamoDB calls
//! are counted by an SDK interceptor.

use aws_sdk_dynamodb::{
    config::{interceptors::BeforeTransmitInterceptorContextRef, ConfigBag, Intercept, RuntimeComponents},
    error::BoxError,
    types::AttributeValue,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use integration_tests::{serial_proxy, Stack, ThrottlingProxy};
use jit_shared::{
    adapters::dynamodb::{DynamoGrantStore, DynamoStore, StoreError},
    clock::Clock,
    domain::model::{
        ApprovalMode, AuditAction, AuditOutcome, AuditRecord, Grant, GrantDuration, GrantFilter, GrantGroup,
        GrantStatus, GrantUser, IdempotencyClaim, IdempotencyState, LeaseHold, LeaseKey, LeaseLock, MembershipEnd,
        RevocationRequest,
    },
    domain::model::{DirectoryChanges, Membership, ObjectId},
    domain::{
        grant::{request_grant, GrantContext, GrantError, GrantPolicy},
        revoke::{sweep, RevokeError},
    },
    ports::DirectoryError,
    ports::{
        Activation, DirectoryStore, Ending, Failure, GrantStore, GrantStoreError, MembershipOracle, SyncState,
        SyncStatus,
    },
    testing::lifecycle::{self as scenarios, t0, LifecycleHarness, ADMIN, REVOKER},
    testing::Fault,
};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{atomic::Ordering, Arc, Mutex},
};

type Item = HashMap<String, AttributeValue>;

fn minutes(m: i64) -> Duration {
    Duration::minutes(m)
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The DynamoDB requests sent (every attempt), by operation.
#[derive(Debug, Default)]
struct Calls(Mutex<BTreeMap<String, usize>>);

impl Calls {
    /// The calls since the last `take`.
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug)]
struct Counting(Arc<Calls>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "Counting"
    }
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("unknown");
        let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        *self.0 .0.lock().unwrap().entry(operation).or_default() += 1;
        Ok(())
    }
}

fn count(calls: &BTreeMap<String, usize>) -> usize {
    calls.values().sum()
}

/// One test's table and a store over it whose calls are counted.
struct Db {
    stack: Stack,
    store: DynamoGrantStore,
    calls: Arc<Calls>,
}

impl Db {
    async fn new() -> Self {
        Self::with_endpoint(None).await
    }

    /// The store's requests go to `endpoint` (a [`serial_proxy`]) instead of moto itself.
    async fn with_endpoint(endpoint: Option<&str>) -> Self {
        let stack = Stack::new().await;
        let calls = Arc::new(Calls::default());
        let mut config = aws_sdk_dynamodb::config::Builder::from(&stack.sdk).interceptor(Counting(calls.clone()));
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        let store = DynamoGrantStore::new(aws_sdk_dynamodb::Client::from_conf(config.build()), &stack.table);
        Self { stack, store, calls }
    }

    /// The lease item as stored.
    async fn lease_item(&self, key: &LeaseKey) -> Option<Item> {
        self.stack.item(&format!("LEASE#{}", key.integration), &format!("{}#{}", key.group_id, key.user_id)).await
    }

    async fn holders(&self, key: &LeaseKey) -> Option<BTreeSet<String>> {
        self.lease_item(key).await.map(|item| match item.get("holders") {
            Some(AttributeValue::Ss(ids)) => ids.iter().cloned().collect(),
            _ => BTreeSet::new(),
        })
    }

    async fn lock_owner(&self, key: &LeaseKey) -> Option<String> {
        self.lease_item(key).await.and_then(|item| item.get("lock_owner").and_then(|v| v.as_s().ok()).cloned())
    }

    /// Every lease of an integration: holders, preexisting, lock owner.
    async fn leases(&self, integration: &str) -> BTreeMap<LeaseKey, (BTreeSet<String>, bool, Option<String>)> {
        self.stack
            .partition(&format!("LEASE#{integration}"))
            .await
            .iter()
            .map(|item| {
                let (group_id, user_id) = item["sk"].as_s().unwrap().split_once('#').unwrap();
                let key =
                    LeaseKey { integration: integration.into(), group_id: group_id.into(), user_id: user_id.into() };
                let holders = match item.get("holders") {
                    Some(AttributeValue::Ss(ids)) => ids.iter().cloned().collect(),
                    _ => BTreeSet::new(),
                };
                let preexisting = item.get("preexisting").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
                let owner = item.get("lock_owner").and_then(|v| v.as_s().ok()).cloned();
                (key, (holders, preexisting, owner))
            })
            .collect()
    }

    /// The sweep's index: grant id -> `gsi2sk`.
    async fn indexed(&self) -> BTreeMap<String, String> {
        let out = self
            .stack
            .dynamodb
            .query()
            .table_name(&self.stack.table)
            .index_name("gsi2")
            .key_condition_expression("gsi2pk = :due")
            .expression_attribute_values(":due", AttributeValue::S("DUE".into()))
            .send()
            .await
            .unwrap();
        out.items().iter().map(|i| (i["id"].as_s().unwrap().clone(), i["gsi2sk"].as_s().unwrap().clone())).collect()
    }

    async fn actions(&self, grant_id: &str) -> Vec<AuditAction> {
        self.store.audit_for(grant_id).await.unwrap().into_iter().map(|r| r.action).collect()
    }

    async fn all_grants(&self) -> Vec<Grant> {
        let page = self.store.list(&GrantFilter::default(), 1000, None).await.unwrap();
        assert!(page.next.is_none());
        page.grants
    }
}

fn alice_g1() -> LeaseKey {
    lease("u1", "g1")
}

fn lease(user: &str, group: &str) -> LeaseKey {
    LeaseKey { integration: "corp".into(), group_id: group.into(), user_id: user.into() }
}

/// A pending grant of `user` in `group` (of "corp"), granted at `at` for `hours`.
fn pending(user: &str, group: &str, at: DateTime<Utc>, hours: i64) -> Grant {
    Grant {
        id: uuid::Uuid::new_v4().to_string(),
        integration: "corp".into(),
        user: GrantUser { id: user.into(), email: format!("{user}@corp.com") },
        group: GrantGroup { id: group.into(), name: format!("prod-{group}") },
        status: GrantStatus::Pending,
        requested_at: at,
        granted_at: Some(at),
        expires_at: Some(at + Duration::hours(hours)),
        ended_at: None,
        duration: GrantDuration::from_secs(hours as u64 * 3600),
        requested_by: ADMIN.into(),
        reason: "incident 4711".into(),
        break_glass: false,
        approval: ApprovalMode::Admin,
        approvals_required: 0,
        approvals: Vec::new(),
        approvers: Vec::new(),
        request_expires_at: None,
        decided_by: None,
        policy: None,
        revision: 0,
        pending_extension: None,
        extensions: Vec::new(),
        remind_before: None,
        membership_end: None,
        preexisting_membership: false,
        membership_missing: false,
        schedule_name: None,
        requester: None,
        revocation_requested: None,
        source: None,
    }
}

fn record(grant: &Grant, at: DateTime<Utc>, action: AuditAction) -> AuditRecord {
    AuditRecord::new(grant, at, "tester", action, AuditOutcome::Succeeded)
}

fn hold(grant: &Grant, owner: &str) -> LeaseHold {
    LeaseHold { key: grant.lease_key(), owner: owner.into() }
}

/// Locks the grant's lease as `owner` at `grant.granted_at` and records the grant pending.
async fn recorded(db: &Db, grant: &Grant, owner: &str) -> LeaseHold {
    db.store.lock_lease(&grant.lease_key(), owner, grant.requested_at, minutes(3)).await.unwrap();
    let hold = hold(grant, owner);
    db.store.insert_pending(grant, &hold, &[record(grant, grant.requested_at, AuditAction::Created)]).await.unwrap();
    hold
}

/// A grant recorded and active (lock released).
async fn active(db: &Db, grant: &Grant) -> Grant {
    let owner = format!("grant:{}", grant.id);
    let hold = recorded(db, grant, &owner).await;
    let activation = Activation {
        grant: grant.clone(),
        preexisting: false,
        lease_preexisting: Some(false),
        schedule_name: Some(format!("jit-expire-{}", grant.id)),
    };
    db.store.activate(&activation, &hold, &[record(grant, grant.requested_at, AuditAction::Activated)]).await.unwrap()
}

fn is_conflict<T: std::fmt::Debug>(result: Result<T, GrantStoreError>) -> String {
    match result {
        Err(GrantStoreError::Conflict(why)) => why,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn is_bad_token<T: std::fmt::Debug>(result: Result<T, GrantStoreError>) {
    match result {
        Err(GrantStoreError::InvalidToken(_)) => {}
        other => panic!("expected an invalid token error, got {other:?}"),
    }
}

fn ids(grants: &[Grant]) -> Vec<&str> {
    grants.iter().map(|g| g.id.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Leases and their lock

#[tokio::test]
async fn lock_lease_creates_the_lease_and_refuses_another_owner_until_the_lock_lapses() {
    let db = Db::new().await;
    let key = alice_g1();
    let locked = db.store.lock_lease(&key, "a", t0(), minutes(3)).await.unwrap();
    assert!(locked.holders.is_empty() && !locked.preexisting);
    assert_eq!(locked.lock, Some(LeaseLock { owner: "a".into(), until: t0() + minutes(3) }));
    let item = db.lease_item(&key).await.expect("lease item");
    assert_eq!(item["kind"].as_s().unwrap(), "lease");
    assert_eq!(item["integration"].as_s().unwrap(), "corp");
    assert_eq!(item["group_id"].as_s().unwrap(), "g1");
    assert_eq!(item["user_id"].as_s().unwrap(), "u1");
    assert!(!item.contains_key("ttl"));

    // The same owner takes it again (and extends it).
    let again = db.store.lock_lease(&key, "a", t0() + minutes(1), minutes(3)).await.unwrap();
    assert_eq!(again.lock.unwrap().until, t0() + minutes(4));

    // Another owner is refused with the holder's time, up to the last nanosecond.
    for at in [t0() + minutes(2), t0() + minutes(4) - Duration::nanoseconds(1)] {
        match db.store.lock_lease(&key, "b", at, minutes(3)).await {
            Err(GrantStoreError::LeaseBusy { until }) => assert_eq!(until, t0() + minutes(4)),
            other => panic!("expected busy, got {other:?}"),
        }
    }
    // A lapsed lock is taken over, and its old owner is refused from then on.
    let taken = db.store.lock_lease(&key, "b", t0() + minutes(4), minutes(3)).await.unwrap();
    assert_eq!(taken.lock, Some(LeaseLock { owner: "b".into(), until: t0() + minutes(7) }));
    match db.store.lock_lease(&key, "a", t0() + minutes(5), minutes(3)).await {
        Err(GrantStoreError::LeaseBusy { until }) => assert_eq!(until, t0() + minutes(7)),
        other => panic!("expected busy, got {other:?}"),
    }
    // Sub-second times compare as times (fixed-width text), not as text of varying width.
    let key2 = lease("u2", "g1");
    let fraction = t0() + Duration::milliseconds(500);
    db.store.lock_lease(&key2, "a", t0(), Duration::milliseconds(700)).await.unwrap();
    assert!(matches!(
        db.store.lock_lease(&key2, "b", fraction, minutes(1)).await,
        Err(GrantStoreError::LeaseBusy { .. })
    ));
    db.store.lock_lease(&key2, "b", t0() + Duration::milliseconds(700), minutes(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_lockers_get_the_lock_one_at_a_time() {
    // One conditional update per attempt: of many concurrent lockers exactly one wins (requests
    // through the serializing proxy, as DynamoDB applies them; see `serial_proxy`).
    let db = Arc::new(Db::with_endpoint(Some(&serial_proxy())).await);
    for round in 0..10 {
        let key = lease(&format!("u{round}"), "g1");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (db, key) = (db.clone(), key.clone());
                tokio::spawn(async move { db.store.lock_lease(&key, &format!("o{i}"), t0(), minutes(3)).await })
            })
            .collect();
        let mut owners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(lease) => owners.push(lease.lock.unwrap().owner),
                Err(GrantStoreError::LeaseBusy { until }) => assert_eq!(until, t0() + minutes(3)),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(owners.len(), 1, "round {round}: {owners:?}");
        assert_eq!(db.lock_owner(&key).await, owners.pop());
    }
}

#[tokio::test]
async fn a_cancelled_transaction_undoes_its_own_writes_and_keeps_everything_else() {
    // moto as the test tooling starts it (scripts/moto_server.py): a cancelled transaction puts
    // back the items it wrote, as DynamoDB does, and leaves the rest of the table as it is.
    use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};
    let stack = Stack::new().await;
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let key = |sk: &str| std::collections::HashMap::from([("pk".to_owned(), s("T#1")), ("sk".to_owned(), s(sk))]);
    let put = |sk: &str, v: &str| {
        let mut item = key(sk);
        item.insert("v".to_owned(), s(v));
        item
    };
    stack.dynamodb.put_item().table_name(&stack.table).set_item(Some(put("a", "1"))).send().await.unwrap();
    stack.dynamodb.put_item().table_name(&stack.table).set_item(Some(put("other", "1"))).send().await.unwrap();
    let transaction = |condition_on: &str| {
        stack
            .dynamodb
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&stack.table)
                            .set_key(Some(key("a")))
                            .update_expression("SET v = :v")
                            .expression_attribute_values(":v", s("2"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(Put::builder().table_name(&stack.table).set_item(Some(put("b", "new"))).build().unwrap())
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&stack.table)
                            .set_key(Some(key(condition_on)))
                            .condition_expression("attribute_exists(pk)")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
    };
    let cancelled = transaction("missing").await;
    assert!(cancelled.is_err(), "the condition on a missing item cancels it");
    let v = |item: Option<Item>| item.and_then(|i| i.get("v").and_then(|v| v.as_s().ok()).cloned());
    assert_eq!(v(stack.item("T#1", "a").await), Some("1".to_owned()), "its update undone");
    assert_eq!(stack.item("T#1", "b").await, None, "its put undone");
    assert_eq!(v(stack.item("T#1", "other").await), Some("1".to_owned()));

    transaction("other").await.expect("every condition holds");
    assert_eq!(v(stack.item("T#1", "a").await), Some("2".to_owned()));
    assert_eq!(v(stack.item("T#1", "b").await), Some("new".to_owned()));
}

#[tokio::test]
async fn a_throttled_request_is_retried_then_refused_and_applies_nothing_until_let_through() {
    // DynamoDB's throttling as the soak injects it (a proxy answering as DynamoDB does): the SDK
    // retries a throttled request (a throttling error), a request throttled on every attempt is
    // refused as a store error and writes nothing, and once let through it is applied.
    let proxy = ThrottlingProxy::start(1_000_000);
    let db = Db::with_endpoint(Some(&proxy.url)).await;
    let key = alice_g1();
    let refused = db.store.lock_lease(&key, "a", t0(), minutes(3)).await;
    assert!(
        matches!(&refused, Err(GrantStoreError::Store(StoreError::Aws(m))) if m.contains("ProvisionedThroughputExceeded")),
        "{refused:?}"
    );
    let (seen, throttled) = proxy.counts();
    assert!(
        seen > 1 && throttled == seen,
        "the SDK retried a throttled request: {seen} attempts, {throttled} throttled"
    );
    assert_eq!(db.lease_item(&key).await, None, "a throttled request applied nothing");

    proxy.set_rate(0);
    let locked = db.store.lock_lease(&key, "a", t0(), minutes(3)).await.expect("let through");
    assert_eq!(locked.lock.map(|l| l.owner), Some("a".to_owned()));
    assert!(db.lease_item(&key).await.is_some());
    assert_eq!(proxy.counts(), (seen + 1, throttled));
}

#[tokio::test]
async fn unlock_lease_releases_only_its_own_lock_and_deletes_an_empty_lease() {
    let db = Db::new().await;
    let key = alice_g1();
    db.store.lock_lease(&key, "a", t0(), minutes(3)).await.unwrap();
    // Not the owner: nothing happens.
    db.store.unlock_lease(&LeaseHold { key: key.clone(), owner: "b".into() }).await.unwrap();
    assert_eq!(db.lock_owner(&key).await.as_deref(), Some("a"));
    // The owner of a lease that holds no grant: the lease goes.
    db.store.unlock_lease(&LeaseHold { key: key.clone(), owner: "a".into() }).await.unwrap();
    assert!(db.lease_item(&key).await.is_none());
    // Unlocking a lease that does not exist is no error.
    db.store.unlock_lease(&LeaseHold { key: key.clone(), owner: "a".into() }).await.unwrap();

    // A lease with holders stays, unlocked.
    let grant = pending("u1", "g1", t0(), 1);
    let hold = recorded(&db, &grant, "a").await;
    db.store.unlock_lease(&hold).await.unwrap();
    assert_eq!(db.holders(&key).await, Some(BTreeSet::from([grant.id.clone()])));
    assert_eq!(db.lock_owner(&key).await, None);
}

// ---------------------------------------------------------------------------------------------
// insert_pending

#[tokio::test]
async fn insert_pending_records_the_grant_its_holding_its_audit_and_its_due_time_at_once() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    db.store.lock_lease(&grant.lease_key(), "a", t0(), minutes(3)).await.unwrap();
    db.calls.take();
    let hold = hold(&grant, "a");
    db.store.insert_pending(&grant, &hold, &[record(&grant, t0(), AuditAction::Created)]).await.unwrap();
    assert_eq!(db.calls.take(), BTreeMap::from([("TransactWriteItems".to_owned(), 1)]), "one transaction");

    assert_eq!(db.store.get(&grant.id).await.unwrap(), Some(grant.clone()));
    assert_eq!(db.holders(&grant.lease_key()).await, Some(BTreeSet::from([grant.id.clone()])));
    assert_eq!(db.lock_owner(&grant.lease_key()).await.as_deref(), Some("a"), "the lock stays");
    assert_eq!(db.actions(&grant.id).await, vec![AuditAction::Created]);
    let due_at_expiry = db.store.due(grant.expiry(), 10, None).await.unwrap();
    assert_eq!(ids(&due_at_expiry.grants), vec![grant.id.as_str()]);
    assert!(db.store.due(grant.expiry() - Duration::nanoseconds(1), 10, None).await.unwrap().grants.is_empty());
    let item = db.stack.item(&format!("GRANT#{}", grant.id), "GRANT").await.unwrap();
    assert!(!item.contains_key("ttl"), "grants are kept");
    let audit = db.stack.dynamodb.query().table_name(&db.stack.table).key_condition_expression("pk = :pk");
    let audit = audit
        .expression_attribute_values(":pk", AttributeValue::S(format!("AUDIT#{}", grant.id)))
        .send()
        .await
        .unwrap();
    assert!(audit.items().iter().all(|i| !i.contains_key("ttl")), "audit is kept");
}

#[tokio::test]
async fn insert_pending_twice_or_without_the_lock_conflicts_and_writes_nothing() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    let hold = recorded(&db, &grant, "a").await;
    // The same grant again, lock still held.
    let why = is_conflict(db.store.insert_pending(&grant, &hold, &[record(&grant, t0(), AuditAction::Created)]).await);
    assert!(why.contains("exists"), "{why}");
    assert_eq!(db.actions(&grant.id).await.len(), 1, "the refused audit record was not written");

    // Another grant of the lease, by someone who does not hold the lock.
    let other = pending("u1", "g1", t0(), 1);
    let stranger = LeaseHold { key: other.lease_key(), owner: "stranger".into() };
    let why =
        is_conflict(db.store.insert_pending(&other, &stranger, &[record(&other, t0(), AuditAction::Created)]).await);
    assert!(why.contains("not held by stranger"), "{why}");
    assert_eq!(db.store.get(&other.id).await.unwrap(), None);
    assert!(db.store.audit_for(&other.id).await.unwrap().is_empty());
    assert_eq!(db.holders(&grant.lease_key()).await, Some(BTreeSet::from([grant.id.clone()])));

    // A lock that lapsed and passed to someone else.
    db.store.lock_lease(&grant.lease_key(), "b", t0() + minutes(3), minutes(3)).await.unwrap();
    is_conflict(db.store.insert_pending(&other, &hold, &[]).await);
    assert_eq!(db.store.get(&other.id).await.unwrap(), None);

    // Not pending, or not of the held lease: refused without a call.
    db.calls.take();
    let mut active = other.clone();
    active.status = GrantStatus::Active;
    is_conflict(db.store.insert_pending(&active, &hold, &[]).await);
    is_conflict(db.store.insert_pending(&pending("u2", "g1", t0(), 1), &hold, &[]).await);
    assert_eq!(count(&db.calls.take()), 0);
}

#[tokio::test]
async fn transactions_respect_the_limit_of_100_items_by_construction() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    db.store.lock_lease(&grant.lease_key(), "a", t0(), minutes(3)).await.unwrap();
    let hold = hold(&grant, "a");
    let audit: Vec<AuditRecord> = (0..98).map(|_| record(&grant, t0(), AuditAction::Created)).collect();
    db.calls.take();
    // Grant + lease + 98 records + the chain's head = 101 items: refused before anything is sent.
    match db.store.insert_pending(&grant, &hold, &audit).await {
        Err(GrantStoreError::Store(StoreError::Mapping(m))) => assert!(m.contains("100"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(count(&db.calls.take()), 0);
    // 100 items is fine.
    db.store.insert_pending(&grant, &hold, &audit[..97]).await.unwrap();
    assert_eq!(db.store.audit_for(&grant.id).await.unwrap().len(), 97);
}

// ---------------------------------------------------------------------------------------------
// activate

#[tokio::test]
async fn activate_makes_the_grant_active_releases_the_lock_and_returns_the_stored_grant() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    let hold = recorded(&db, &grant, "a").await;
    let activation = Activation {
        grant: grant.clone(),
        preexisting: true,
        lease_preexisting: Some(true),
        schedule_name: Some("jit-expire-x".into()),
    };
    db.calls.take();
    let active = db.store.activate(&activation, &hold, &[record(&grant, t0(), AuditAction::Activated)]).await.unwrap();
    let calls = db.calls.take();
    let expected = BTreeMap::from([("GetItem".to_owned(), 1), ("TransactWriteItems".to_owned(), 1)]);
    assert_eq!(calls, expected, "one write, and the read of the audit chain's head only");
    assert_eq!(active.status, GrantStatus::Active);
    assert!(active.preexisting_membership);
    assert_eq!(active.schedule_name.as_deref(), Some("jit-expire-x"));
    assert_eq!(db.store.get(&grant.id).await.unwrap(), Some(active.clone()), "returned as stored");
    let leases = db.leases("corp").await;
    assert_eq!(leases[&grant.lease_key()], (BTreeSet::from([grant.id.clone()]), true, None));
    assert_eq!(db.actions(&grant.id).await, vec![AuditAction::Created, AuditAction::Activated]);

    // Not pending any more.
    let why = is_conflict(db.store.activate(&activation, &hold, &[record(&grant, t0(), AuditAction::Activated)]).await);
    assert!(why.contains("not pending"), "{why}");
    assert_eq!(db.actions(&grant.id).await.len(), 2);

    // A second grant on the lease, activated without deciding `preexisting`: the lease keeps it.
    let second = pending("u1", "g1", t0() + minutes(1), 1);
    let hold2 = recorded(&db, &second, "b").await;
    let keep = Activation { grant: second.clone(), preexisting: true, lease_preexisting: None, schedule_name: None };
    let second_active = db.store.activate(&keep, &hold2, &[]).await.unwrap();
    assert_eq!(second_active.schedule_name, None);
    assert_eq!(db.store.get(&second.id).await.unwrap(), Some(second_active));
    assert!(db.leases("corp").await[&grant.lease_key()].1, "preexisting left as it was");
}

#[tokio::test]
async fn activate_is_refused_for_an_unknown_grant_another_lease_or_a_lock_passed_on() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    let hold = recorded(&db, &grant, "a").await;
    let activation =
        Activation { grant: grant.clone(), preexisting: false, lease_preexisting: Some(false), schedule_name: None };

    // A grant never recorded: the conditional write finds no pending grant.
    let unknown = Activation { grant: Grant { id: "nope".into(), ..grant.clone() }, ..activation.clone() };
    assert!(is_conflict(db.store.activate(&unknown, &hold, &[]).await).contains("not pending"));
    assert!(db.store.get("nope").await.unwrap().is_none(), "nothing written");

    let elsewhere = LeaseHold { key: lease("u2", "g1"), owner: "a".into() };
    assert!(is_conflict(db.store.activate(&activation, &elsewhere, &[]).await).contains("another lease"));

    // The lock lapsed and passed on: the grant stays pending, nothing is written.
    db.store.lock_lease(&grant.lease_key(), "b", t0() + minutes(3), minutes(3)).await.unwrap();
    let why = is_conflict(db.store.activate(&activation, &hold, &[record(&grant, t0(), AuditAction::Activated)]).await);
    assert!(why.contains("not held by a"), "{why}");
    assert_eq!(db.store.get(&grant.id).await.unwrap().unwrap().status, GrantStatus::Pending);
    assert_eq!(db.actions(&grant.id).await, vec![AuditAction::Created]);
    assert_eq!(db.lock_owner(&grant.lease_key()).await.as_deref(), Some("b"));
}

// ---------------------------------------------------------------------------------------------
// fail_for_cleanup and end

#[tokio::test]
async fn a_failed_grant_stays_a_holder_and_due_until_its_clean_up_ends_it_still_failed() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    let hold = recorded(&db, &grant, "a").await;
    let failure = Failure { grant: grant.clone(), ended_at: t0() + minutes(1), lease_preexisting: Some(false) };
    let failed =
        db.store.fail_for_cleanup(&failure, &hold, &[record(&grant, t0(), AuditAction::Failed)]).await.unwrap();
    assert_eq!((failed.status, failed.ended_at), (GrantStatus::Failed, Some(t0() + minutes(1))));
    assert_eq!(db.store.get(&grant.id).await.unwrap(), Some(failed.clone()));
    assert_eq!(db.leases("corp").await[&grant.lease_key()], (BTreeSet::from([grant.id.clone()]), false, None));
    // Due at its failure, not at its expiry.
    assert_eq!(ids(&db.store.due(t0() + minutes(1), 10, None).await.unwrap().grants), vec![grant.id.as_str()]);
    assert!(db.store.due(t0() + minutes(1) - Duration::nanoseconds(1), 10, None).await.unwrap().grants.is_empty());
    // Not pending any more.
    db.store.lock_lease(&grant.lease_key(), "a", t0() + minutes(2), minutes(3)).await.unwrap();
    is_conflict(db.store.fail_for_cleanup(&failure, &hold, &[]).await);

    // The sweep's clean-up: ends it, as `expired` asked, but it stays failed.
    let ending = Ending {
        grant: failed.clone(),
        status: GrantStatus::Expired,
        ended_at: t0() + minutes(2),
        last_holder: true,
        membership: None,
    };
    let ended = db.store.end(&ending, &hold, &[record(&grant, t0(), AuditAction::MembershipRemoved)]).await.unwrap();
    assert_eq!((ended.status, ended.ended_at), (GrantStatus::Failed, Some(t0() + minutes(2))));
    assert_eq!(db.store.get(&grant.id).await.unwrap(), Some(ended));
    assert!(db.lease_item(&grant.lease_key()).await.is_none(), "the last holder deleted the lease");
    assert!(db.indexed().await.is_empty());
    // Settled: a second end conflicts.
    db.store.lock_lease(&grant.lease_key(), "a", t0() + minutes(3), minutes(3)).await.unwrap();
    assert!(is_conflict(db.store.end(&ending, &hold, &[]).await).contains("settled"));
    assert_eq!(
        db.actions(&grant.id).await,
        vec![AuditAction::Created, AuditAction::Failed, AuditAction::MembershipRemoved]
    );

    // An active grant cannot fail for clean-up.
    let other = active(&db, &pending("u2", "g1", t0(), 1)).await;
    let hold2 = hold_locked(&db, &other, "c").await;
    let failure2 = Failure { grant: other.clone(), ended_at: t0(), lease_preexisting: None };
    assert!(is_conflict(db.store.fail_for_cleanup(&failure2, &hold2, &[]).await).contains("not pending"));
}

/// Locks the grant's lease as `owner`.
async fn hold_locked(db: &Db, grant: &Grant, owner: &str) -> LeaseHold {
    db.store.lock_lease(&grant.lease_key(), owner, t0(), minutes(3)).await.unwrap();
    hold(grant, owner)
}

#[tokio::test]
async fn end_as_last_holder_deletes_the_lease_and_as_one_of_several_keeps_the_others() {
    let db = Db::new().await;
    let first = active(&db, &pending("u1", "g1", t0(), 1)).await;
    let second = active(&db, &pending("u1", "g1", t0() + minutes(1), 2)).await;
    assert_eq!(db.holders(&alice_g1()).await.unwrap().len(), 2);

    // One of two holders.
    let hold1 = hold_locked(&db, &first, "r1").await;
    let ending = Ending {
        grant: first.clone(),
        status: GrantStatus::Expired,
        ended_at: t0() + minutes(60),
        last_holder: false,
        membership: None,
    };
    db.calls.take();
    let ended = db.store.end(&ending, &hold1, &[record(&first, t0(), AuditAction::Expired)]).await.unwrap();
    let expected = BTreeMap::from([("GetItem".to_owned(), 1), ("TransactWriteItems".to_owned(), 1)]);
    assert_eq!(db.calls.take(), expected, "one write, and the read of the audit chain's head only");
    assert_eq!((ended.status, ended.ended_at), (GrantStatus::Expired, Some(t0() + minutes(60))));
    assert_eq!(db.store.get(&first.id).await.unwrap(), Some(ended));
    assert_eq!(db.leases("corp").await[&alice_g1()], (BTreeSet::from([second.id.clone()]), false, None));
    assert_eq!(db.indexed().await.keys().collect::<Vec<_>>(), vec![&second.id]);
    // Ended: again conflicts.
    let hold1 = hold_locked(&db, &first, "r1").await;
    assert!(is_conflict(db.store.end(&ending, &hold1, &[]).await).contains("settled"));
    db.store.unlock_lease(&hold1).await.unwrap();

    // Claiming to be the last holder while another holds the lease: refused, nothing changes.
    let third = active(&db, &pending("u1", "g1", t0() + minutes(2), 3)).await;
    let hold2 = hold_locked(&db, &second, "r2").await;
    let wrong = Ending {
        grant: second.clone(),
        status: GrantStatus::Revoked,
        ended_at: t0(),
        last_holder: true,
        membership: None,
    };
    let why = is_conflict(db.store.end(&wrong, &hold2, &[record(&second, t0(), AuditAction::Revoked)]).await);
    assert!(why.contains("other grants hold"), "{why}");
    assert_eq!(db.store.get(&second.id).await.unwrap().unwrap().status, GrantStatus::Active);
    assert_eq!(db.holders(&alice_g1()).await.unwrap(), BTreeSet::from([second.id.clone(), third.id.clone()]));
    assert_eq!(db.lock_owner(&alice_g1()).await.as_deref(), Some("r2"), "the refused end kept the lock");
    assert_eq!(db.actions(&second.id).await, vec![AuditAction::Created, AuditAction::Activated]);
    // An end state is required.
    let not_an_end = Ending { status: GrantStatus::Active, last_holder: false, ..wrong.clone() };
    assert!(is_conflict(db.store.end(&not_an_end, &hold2, &[]).await).contains("not an end state"));
    db.store.unlock_lease(&hold2).await.unwrap();

    // Then the two ends in turn: the last one deletes the lease.
    for (grant, last) in [(&second, false), (&third, true)] {
        let hold = hold_locked(&db, grant, "r3").await;
        let ending = Ending {
            grant: grant.clone(),
            status: GrantStatus::Revoked,
            ended_at: t0(),
            last_holder: last,
            membership: None,
        };
        assert_eq!(db.store.end(&ending, &hold, &[]).await.unwrap().status, GrantStatus::Revoked);
    }
    assert!(db.lease_item(&alice_g1()).await.is_none());
    assert!(db.indexed().await.is_empty());
}

#[tokio::test]
async fn end_with_a_lock_passed_on_or_of_an_unknown_grant_is_refused() {
    let db = Db::new().await;
    let grant = active(&db, &pending("u1", "g1", t0(), 1)).await;
    let stale = hold_locked(&db, &grant, "stale").await;
    db.store.lock_lease(&grant.lease_key(), "fresh", t0() + minutes(3), minutes(3)).await.unwrap();
    let ending = Ending {
        grant: grant.clone(),
        status: GrantStatus::Revoked,
        ended_at: t0(),
        last_holder: true,
        membership: None,
    };
    assert!(is_conflict(db.store.end(&ending, &stale, &[record(&grant, t0(), AuditAction::Revoked)]).await)
        .contains("not held by stale"));
    assert_eq!(db.store.get(&grant.id).await.unwrap().unwrap().status, GrantStatus::Active);
    assert!(db.lease_item(&grant.lease_key()).await.is_some());
    assert_eq!(db.indexed().await.len(), 1);
    let fresh = LeaseHold { owner: "fresh".into(), ..stale.clone() };
    let unknown = Ending { grant: Grant { id: "nope".into(), ..grant.clone() }, ..ending };
    assert!(is_conflict(db.store.end(&unknown, &fresh, &[]).await).contains("settled"));
    assert!(db.store.get("nope").await.unwrap().is_none(), "nothing written");
}

// ---------------------------------------------------------------------------------------------
// revocation_failed and mark_membership_missing

#[tokio::test]
async fn a_failed_revocation_releases_the_lock_and_records_the_first_request_as_due_now() {
    let db = Db::new().await;
    let grant = active(&db, &pending("u1", "g1", t0(), 2)).await;
    let hold = hold_locked(&db, &grant, "r").await;
    let request = RevocationRequest { at: t0() + minutes(10), by: REVOKER.into() };
    db.calls.take();
    db.store
        .revocation_failed(&grant.id, Some(&request), &hold, &[record(&grant, t0(), AuditAction::RevocationFailed)])
        .await
        .unwrap();
    assert_eq!(count(&db.calls.take()), 3, "the grant, the audit chain's head, one transaction");
    assert_eq!(db.lock_owner(&grant.lease_key()).await, None);
    let stored = db.store.get(&grant.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.revocation_requested.as_ref()), (GrantStatus::Active, Some(&request)));
    // Due at the request, long before its expiry.
    assert_eq!(ids(&db.store.due(t0() + minutes(10), 10, None).await.unwrap().grants), vec![grant.id.as_str()]);

    // A later request does not replace the first (nor its place in the index).
    let hold = hold_locked(&db, &grant, "r2").await;
    let later = RevocationRequest { at: t0() + minutes(20), by: "someone-else".into() };
    db.store.revocation_failed(&grant.id, Some(&later), &hold, &[]).await.unwrap();
    assert_eq!(db.store.get(&grant.id).await.unwrap().unwrap().revocation_requested, Some(request));
    assert_eq!(ids(&db.store.due(t0() + minutes(10), 10, None).await.unwrap().grants), vec![grant.id.as_str()]);

    // Without a request: the lock is released and the record appended, nothing else.
    let hold = hold_locked(&db, &grant, "r3").await;
    db.store
        .revocation_failed(&grant.id, None, &hold, &[record(&grant, t0(), AuditAction::RevocationFailed)])
        .await
        .unwrap();
    assert_eq!(db.lock_owner(&grant.lease_key()).await, None);
    assert_eq!(db.actions(&grant.id).await.iter().filter(|a| **a == AuditAction::RevocationFailed).count(), 2);

    // Without the lock: refused, no record.
    let not_held = LeaseHold { key: grant.lease_key(), owner: "nobody".into() };
    let why = is_conflict(
        db.store
            .revocation_failed(&grant.id, None, &not_held, &[record(&grant, t0(), AuditAction::RevocationFailed)])
            .await,
    );
    assert!(why.contains("not held by nobody"), "{why}");
    assert_eq!(db.actions(&grant.id).await.iter().filter(|a| **a == AuditAction::RevocationFailed).count(), 2);
    assert!(matches!(
        db.store.revocation_failed("nope", None, &not_held, &[]).await,
        Err(GrantStoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_missing_membership_is_marked_on_active_grants_only() {
    let db = Db::new().await;
    let grant = active(&db, &pending("u1", "g1", t0(), 2)).await;
    let marked = db
        .store
        .mark_membership_missing(&grant.id, &[record(&grant, t0(), AuditAction::MembershipMissing)])
        .await
        .unwrap();
    assert!(marked.membership_missing);
    assert_eq!(db.store.get(&grant.id).await.unwrap(), Some(marked));
    assert_eq!(db.actions(&grant.id).await.last(), Some(&AuditAction::MembershipMissing));

    let pending = pending("u2", "g1", t0(), 1);
    recorded(&db, &pending, "a").await;
    assert!(is_conflict(db.store.mark_membership_missing(&pending.id, &[]).await).contains("not active"));
    assert!(matches!(db.store.mark_membership_missing("nope", &[]).await, Err(GrantStoreError::NotFound(_))));
}

// ---------------------------------------------------------------------------------------------
// Queries

#[tokio::test]
async fn due_returns_exactly_the_due_grants_earliest_first_in_resumable_pages() {
    let db = Db::new().await;
    // Six grants expiring at 1h .. 6h (one lease each), and a failed one due at 30 minutes.
    let mut expiring = Vec::new();
    for i in 1..=6 {
        expiring.push(active(&db, &pending(&format!("u{i}"), "g1", t0(), i)).await);
    }
    let failed = pending("u9", "g1", t0(), 5);
    let hold = recorded(&db, &failed, "f").await;
    let failure = Failure { grant: failed.clone(), ended_at: t0() + minutes(30), lease_preexisting: None };
    db.store.fail_for_cleanup(&failure, &hold, &[]).await.unwrap();
    // An ended grant is not due.
    let ended = active(&db, &pending("u8", "g1", t0(), 1)).await;
    let hold = hold_locked(&db, &ended, "e").await;
    let ending = Ending {
        grant: ended.clone(),
        status: GrantStatus::Revoked,
        ended_at: t0(),
        last_holder: true,
        membership: None,
    };
    db.store.end(&ending, &hold, &[]).await.unwrap();

    // Due at exactly 3h: the failed one, then 1h, 2h, 3h (inclusive).
    let page = db.store.due(t0() + Duration::hours(3), 10, None).await.unwrap();
    let expected: Vec<&str> = [failed.id.as_str()].into_iter().chain(ids(&expiring[..3])).collect();
    assert_eq!(ids(&page.grants), expected);
    assert_eq!(page.next, None);
    // A full page that happens to be the last one has no next token.
    let exact = db.store.due(t0() + Duration::hours(3), 4, None).await.unwrap();
    assert_eq!((exact.grants.len(), exact.next), (4, None));

    // Pages of two at 10h: every due grant once, in order; one query per page.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    db.calls.take();
    loop {
        let page = db.store.due(t0() + Duration::hours(10), 2, next.as_deref()).await.unwrap();
        pages += 1;
        seen.extend(page.grants.iter().map(|g| g.id.clone()));
        // Settling a grant while paging skips none of the others.
        if pages == 1 {
            let g = &page.grants[1];
            let hold = hold_locked(&db, g, "s").await;
            let ending = Ending {
                grant: g.clone(),
                status: GrantStatus::Expired,
                ended_at: t0(),
                last_holder: true,
                membership: None,
            };
            db.store.end(&ending, &hold, &[]).await.unwrap();
        }
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    let expected: Vec<String> = [failed.id.clone()].into_iter().chain(expiring.iter().map(|g| g.id.clone())).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);

    // Bad tokens are errors, not panics; a token of another listing is refused too.
    is_bad_token(db.store.due(t0(), 2, Some("not a token")).await);
    is_bad_token(db.store.due(t0(), 2, Some("eyJrIjoiZHVlIn0")).await);
    let list_token = db.store.list(&GrantFilter::default(), 1, None).await.unwrap().next.unwrap();
    is_bad_token(db.store.due(t0(), 2, Some(&list_token)).await);
}

#[tokio::test]
async fn list_is_newest_first_filtered_and_paged_with_a_resumable_token() {
    let db = Db::new().await;
    // Twelve grants a minute apart: alice (u1) and bob (u2) by turns, in g1 and g2, two integrations.
    let mut all = Vec::new();
    for i in 0..12i64 {
        let user = if i % 2 == 0 { "u1" } else { "u2" };
        let group = if i % 3 == 0 { "g2" } else { "g1" };
        let mut grant = pending(user, group, t0() + minutes(i), 2);
        if i == 11 {
            grant.integration = "other".into();
        }
        all.push(active(&db, &grant).await);
    }
    // The oldest two end: one expired, one revoked; one stays pending.
    for (grant, status) in [(&all[0], GrantStatus::Expired), (&all[1], GrantStatus::Revoked)] {
        let hold = hold_locked(&db, grant, "r").await;
        let last_holder = db.holders(&grant.lease_key()).await.unwrap() == BTreeSet::from([grant.id.clone()]);
        let ending = Ending { grant: grant.clone(), status, ended_at: t0(), last_holder, membership: None };
        db.store.end(&ending, &hold, &[]).await.unwrap();
    }
    let still_pending = pending("u1", "g3", t0() + minutes(30), 1);
    recorded(&db, &still_pending, "p").await;
    let newest_first: Vec<String> =
        [still_pending.id.clone()].into_iter().chain(all.iter().rev().map(|g| g.id.clone())).collect();

    async fn pages(db: &Db, filter: &GrantFilter, limit: usize) -> (Vec<String>, usize) {
        let (mut out, mut next, mut count) = (Vec::new(), None::<String>, 0);
        loop {
            let page = db.store.list(filter, limit, next.as_deref()).await.unwrap();
            assert!(page.grants.len() <= limit);
            assert!(page.grants.iter().all(|g| filter.matches(g)));
            count += 1;
            out.extend(page.grants.into_iter().map(|g| g.id));
            next = page.next;
            if next.is_none() {
                return (out, count);
            }
        }
    }

    // Everything, in pages of 5: 13 grants = 3 pages, and the token resumes exactly.
    let (listed, count) = pages(&db, &GrantFilter::default(), 5).await;
    assert_eq!((listed, count), (newest_first.clone(), 3));
    let first = db.store.list(&GrantFilter::default(), 5, None).await.unwrap();
    let again = db.store.list(&GrantFilter::default(), 5, first.next.as_deref()).await.unwrap();
    assert_eq!(ids(&again.grants), newest_first[5..10].iter().map(String::as_str).collect::<Vec<_>>());
    let all_at_once = db.store.list(&GrantFilter::default(), 13, None).await.unwrap();
    assert_eq!((all_at_once.grants.len(), all_at_once.next), (13, None), "a full last page has no token");

    let expect = |f: &dyn Fn(&Grant) -> bool| -> Vec<String> {
        let by_id: HashMap<&str, &Grant> = all.iter().chain([&still_pending]).map(|g| (g.id.as_str(), g)).collect();
        newest_first.iter().filter(|id| f(by_id[id.as_str()])).cloned().collect()
    };
    // By user, in pages of 2.
    let alice = GrantFilter { user_id: Some("u1".into()), ..GrantFilter::default() };
    assert_eq!(pages(&db, &alice, 2).await.0, expect(&|g| g.user.id == "u1"));
    // By group and integration.
    let g2 = GrantFilter { group_id: Some("g2".into()), ..GrantFilter::default() };
    assert_eq!(pages(&db, &g2, 3).await.0, expect(&|g| g.group.id == "g2"));
    let other = GrantFilter { integration: Some("other".into()), ..GrantFilter::default() };
    assert_eq!(pages(&db, &other, 3).await.0, vec![all[11].id.clone()]);
    // By an end status (the full index, filtered).
    let expired = GrantFilter { status: Some(GrantStatus::Expired), ..GrantFilter::default() };
    assert_eq!(pages(&db, &expired, 1).await.0, vec![all[0].id.clone()]);
    // Active (from the sweep's index), newest first, in pages of 3, with a user filter too.
    let active_filter = GrantFilter { status: Some(GrantStatus::Active), ..GrantFilter::default() };
    let active_ids: Vec<String> = all[2..].iter().rev().map(|g| g.id.clone()).collect();
    assert_eq!(pages(&db, &active_filter, 3).await, (active_ids, 4));
    let alice_active = GrantFilter { user_id: Some("u1".into()), ..active_filter.clone() };
    assert_eq!(
        pages(&db, &alice_active, 2).await.0,
        expect(&|g| g.user.id == "u1" && g.status == GrantStatus::Active && g.id != all[0].id)
    );
    let pending_filter = GrantFilter { status: Some(GrantStatus::Pending), ..GrantFilter::default() };
    assert_eq!(pages(&db, &pending_filter, 5).await.0, vec![still_pending.id.clone()]);
    // Nothing matches.
    let nobody = GrantFilter { user_id: Some("u7".into()), ..GrantFilter::default() };
    assert_eq!(pages(&db, &nobody, 5).await, (vec![], 1));

    // Bad tokens, and tokens of another kind of listing, are errors.
    is_bad_token(db.store.list(&GrantFilter::default(), 5, Some("%%%")).await);
    let open_token = db.store.list(&active_filter, 1, None).await.unwrap().next.unwrap();
    is_bad_token(db.store.list(&GrantFilter::default(), 5, Some(&open_token)).await);
    is_bad_token(db.store.list(&active_filter, 5, first.next.as_deref()).await);
}

#[tokio::test]
async fn audit_is_kept_per_grant_in_writing_order_and_by_time_across_days() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    let other = pending("u2", "g1", t0(), 2);
    let midnight = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
    let from = midnight - Duration::hours(1);
    let to = midnight + Duration::hours(12);
    // Records of one instant, in one call and across calls, keep their writing order.
    let same: Vec<AuditRecord> = [AuditAction::Created, AuditAction::Activated, AuditAction::Revoked]
        .into_iter()
        .map(|a| record(&grant, from, a))
        .collect();
    db.store.append_audit(&same).await.unwrap();
    db.store.append_audit(&[record(&grant, from, AuditAction::MembershipRemoved)]).await.unwrap();
    let in_range = vec![
        record(&other, midnight - Duration::milliseconds(500), AuditAction::Created),
        record(&other, midnight, AuditAction::Activated),
        record(&grant, midnight + Duration::hours(1), AuditAction::MembershipKept),
        record(&other, to - Duration::nanoseconds(1), AuditAction::Expired),
    ];
    db.store.append_audit(&in_range).await.unwrap();
    let outside = vec![
        record(&other, from - Duration::nanoseconds(1), AuditAction::Failed),
        record(&other, to, AuditAction::Failed),
    ];
    db.store.append_audit(&outside).await.unwrap();

    assert_eq!(
        db.actions(&grant.id).await,
        vec![
            AuditAction::Created,
            AuditAction::Activated,
            AuditAction::Revoked,
            AuditAction::MembershipRemoved,
            AuditAction::MembershipKept
        ]
    );
    let whole = db.store.audit_for(&other.id).await.unwrap();
    assert_eq!(whole.len(), 5);
    assert!(whole.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    let mut stored = whole[1].clone();
    assert_eq!(stored.chain.take().map(|l| l.n), Some(1), "the first written of other's records");
    assert_eq!(stored, in_range[0], "stored as given");

    // From (inclusive) to (exclusive), across two days, in pages of 3.
    let expected: Vec<String> = same
        .iter()
        .chain([&record(&grant, from, AuditAction::MembershipRemoved)])
        .map(|r| r.action)
        .chain(in_range.iter().map(|r| r.action))
        .map(|a| format!("{a:?}"))
        .collect();
    let (mut seen, mut next, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = db.store.audit_between(from, to, 3, next.as_deref()).await.unwrap();
        pages += 1;
        seen.extend(page.records.iter().map(|r| format!("{:?}", r.action)));
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let everything = db.store.audit_between(from, to, 8, None).await.unwrap();
    assert_eq!((everything.records.len(), everything.next), (8, None));
    assert!(db.store.audit_between(to, from, 8, None).await.unwrap().records.is_empty());
    is_bad_token(db.store.audit_between(from, to, 3, Some("garbage")).await);
    // A token of a day outside the range.
    let first = db.store.audit_between(from, to, 1, None).await.unwrap();
    is_bad_token(db.store.audit_between(midnight, to, 3, first.next.as_deref()).await);
}

#[tokio::test]
async fn many_audit_records_are_written_in_transactions_of_at_most_100() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    let records: Vec<AuditRecord> =
        (0..150).map(|i| record(&grant, t0() + Duration::seconds(i), AuditAction::MembershipKept)).collect();
    db.calls.take();
    db.store.append_audit(&records).await.unwrap();
    // 50 records and the chain's head per transaction, each after a read of the head.
    let expected = BTreeMap::from([("GetItem".to_owned(), 3), ("TransactWriteItems".to_owned(), 3)]);
    assert_eq!(db.calls.take(), expected);
    let stored = db.store.audit_for(&grant.id).await.unwrap();
    assert_eq!(stored.iter().map(|r| r.chain.as_ref().unwrap().n).collect::<Vec<_>>(), (1..=150).collect::<Vec<_>>());
    let unlinked: Vec<AuditRecord> = stored.into_iter().map(|r| AuditRecord { chain: None, ..r }).collect();
    assert_eq!(unlinked, records);
    // Free text too long for an item is cut, not refused.
    let huge = record(&grant, t0(), AuditAction::RevocationFailed).detail("x".repeat(500_000));
    db.store.append_audit(&[huge]).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Idempotency

#[tokio::test]
async fn idempotency_claims_new_in_progress_completed_mismatch_and_take_over() {
    let db = Db::new().await;
    let claim = |key: &str, hash: &str, now: DateTime<Utc>| IdempotencyClaim {
        key: key.into(),
        request_hash: hash.into(),
        now,
        expires_at: now + Duration::hours(24),
        in_progress_until: now + minutes(3),
    };
    let key = format!("{ADMIN}#retry-1");
    assert_eq!(db.store.begin_idempotent(&claim(&key, "h1", t0())).await.unwrap(), IdempotencyState::New);
    let item = db.stack.item(&format!("IDEMPOTENCY#{key}"), "IDEMPOTENCY").await.unwrap();
    let expected_ttl = (t0() + Duration::hours(24)).timestamp().to_string();
    assert_eq!(item["ttl"].as_n().unwrap(), &expected_ttl, "DynamoDB's TTL in epoch seconds");
    // Running: the same request waits, another one is a mismatch.
    assert_eq!(db.store.begin_idempotent(&claim(&key, "h1", t0())).await.unwrap(), IdempotencyState::InProgress);
    assert_eq!(db.store.begin_idempotent(&claim(&key, "h2", t0())).await.unwrap(), IdempotencyState::Mismatch);
    // Completed: the grant is replayed; a different request is still a mismatch.
    db.store.complete_idempotent(&key, "grant-1").await.unwrap();
    let later = t0() + minutes(10);
    assert_eq!(
        db.store.begin_idempotent(&claim(&key, "h1", later)).await.unwrap(),
        IdempotencyState::Completed("grant-1".into())
    );
    assert_eq!(db.store.begin_idempotent(&claim(&key, "h2", later)).await.unwrap(), IdempotencyState::Mismatch);
    // Only an in-progress record completes; abandoning a completed one does nothing.
    assert!(is_conflict(db.store.complete_idempotent(&key, "grant-2").await).contains("not in progress"));
    db.store.abandon_idempotent(&key).await.unwrap();
    assert_eq!(
        db.store.begin_idempotent(&claim(&key, "h1", later)).await.unwrap(),
        IdempotencyState::Completed("grant-1".into())
    );
    // Expired (at exactly its end of life): claimed anew, whatever it was.
    let expired = t0() + Duration::hours(24);
    assert_eq!(db.store.begin_idempotent(&claim(&key, "h2", expired)).await.unwrap(), IdempotencyState::New);

    // An in-progress claim whose request died is taken over once it is past `in_progress_until`.
    let key2 = format!("{ADMIN}#retry-2");
    assert_eq!(db.store.begin_idempotent(&claim(&key2, "h1", t0())).await.unwrap(), IdempotencyState::New);
    let before = t0() + minutes(3) - Duration::nanoseconds(1);
    assert_eq!(db.store.begin_idempotent(&claim(&key2, "h1", before)).await.unwrap(), IdempotencyState::InProgress);
    assert_eq!(db.store.begin_idempotent(&claim(&key2, "h1", t0() + minutes(3))).await.unwrap(), IdempotencyState::New);
    // A failed request frees its key.
    db.store.abandon_idempotent(&key2).await.unwrap();
    assert!(db.stack.item(&format!("IDEMPOTENCY#{key2}"), "IDEMPOTENCY").await.is_none());
    assert_eq!(db.store.begin_idempotent(&claim(&key2, "h3", t0())).await.unwrap(), IdempotencyState::New);
    assert!(is_conflict(db.store.complete_idempotent("never-claimed", "g").await).contains("not in progress"));
    db.store.abandon_idempotent("never-claimed").await.unwrap();

    // A key too long for a partition key is hashed, and works the same.
    let long = format!("{}#k", "x".repeat(3000));
    assert_eq!(db.store.begin_idempotent(&claim(&long, "h1", t0())).await.unwrap(), IdempotencyState::New);
    assert_eq!(db.store.begin_idempotent(&claim(&long, "h1", t0())).await.unwrap(), IdempotencyState::InProgress);
    db.store.complete_idempotent(&long, "grant-3").await.unwrap();
    assert_eq!(
        db.store.begin_idempotent(&claim(&long, "h1", t0())).await.unwrap(),
        IdempotencyState::Completed("grant-3".into())
    );
}

// ---------------------------------------------------------------------------------------------
// The synced directory as an oracle

#[tokio::test]
async fn the_oracle_answers_only_from_a_successful_sync_finished_before_the_moment() {
    let db = Db::new().await;
    let directory = DynamoStore::new(db.stack.dynamodb.clone(), &db.stack.table);
    let (member, stranger) = (lease("5f0c1a2b3c4d5e6f70819203", "6a0b1c2d3e4f506172839405"), alice_g1());
    // No sync at all.
    assert_eq!(db.store.synced_membership(&member, t0()).await.unwrap(), None);

    let changes = DirectoryChanges {
        put_memberships: vec![Membership {
            group_id: ObjectId::new(&member.group_id),
            user_id: ObjectId::new(&member.user_id),
        }],
        ..DirectoryChanges::default()
    };
    directory.apply_changes("corp", &changes).await.unwrap();
    let status = |state, finished_at| SyncStatus {
        integration: "corp".into(),
        state,
        started_at: t0() - minutes(5),
        finished_at,
        users: 1,
        groups: 1,
        memberships: 1,
        written: 1,
        deleted: 0,
        error: None,
    };
    // Running, or failed: unknown.
    directory.put_sync_status(&status(SyncState::Running, None)).await.unwrap();
    assert_eq!(db.store.synced_membership(&member, t0()).await.unwrap(), None);
    directory.put_sync_status(&status(SyncState::Failed, Some(t0() - minutes(1)))).await.unwrap();
    assert_eq!(db.store.synced_membership(&member, t0()).await.unwrap(), None);
    // Succeeded before the moment (or exactly at it): known.
    directory.put_sync_status(&status(SyncState::Succeeded, Some(t0()))).await.unwrap();
    db.calls.take();
    assert_eq!(db.store.synced_membership(&member, t0()).await.unwrap(), Some(true));
    assert_eq!(db.calls.take(), BTreeMap::from([("BatchGetItem".to_owned(), 1)]));
    assert_eq!(db.store.synced_membership(&stranger, t0()).await.unwrap(), Some(false));
    // Succeeded after the moment: it may show the grant's own add.
    assert_eq!(db.store.synced_membership(&member, t0() - Duration::nanoseconds(1)).await.unwrap(), None);
    // Another integration knows nothing.
    let elsewhere = LeaseKey { integration: "other".into(), ..member };
    assert_eq!(db.store.synced_membership(&elsewhere, t0()).await.unwrap(), None);
}

#[tokio::test]
async fn audit_pages_that_fill_at_the_end_of_a_day_continue_with_the_next_day() {
    let db = Db::new().await;
    let grant = pending("u1", "g1", t0(), 2);
    let day1 = Utc.with_ymd_and_hms(2026, 11, 23, 22, 0, 0).unwrap();
    let day2 = day1 + Duration::hours(4);
    let records = vec![
        record(&grant, day1, AuditAction::Created),
        record(&grant, day1 + Duration::minutes(1), AuditAction::Activated),
        record(&grant, day2, AuditAction::Revoked),
        record(&grant, day2 + Duration::minutes(1), AuditAction::MembershipRemoved),
    ];
    db.store.append_audit(&records).await.unwrap();
    let (from, to) = (day1 - Duration::hours(1), day2 + Duration::hours(1));
    for limit in 1..=5 {
        let (mut seen, mut next, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let page = db.store.audit_between(from, to, limit, next.as_deref()).await.unwrap();
            pages += 1;
            assert!(page.records.len() <= limit);
            seen.extend(page.records.iter().map(|r| r.action));
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        assert_eq!(seen, records.iter().map(|r| r.action).collect::<Vec<_>>(), "pages of {limit}");
        assert!(pages <= 4 / limit + 1, "pages of {limit}: {pages}");
    }
}

// ---------------------------------------------------------------------------------------------
// The domain's lifecycle over DynamoDB

/// The lifecycle (see [`LifecycleHarness`] for the organization) over the DynamoDB store, which
/// is also the oracle, over the same table; `db` reads what it wrote.
struct World {
    harness: Arc<LifecycleHarness<DynamoGrantStore, DynamoGrantStore>>,
    db: Db,
}

impl std::ops::Deref for World {
    type Target = LifecycleHarness<DynamoGrantStore, DynamoGrantStore>;
    fn deref(&self) -> &Self::Target {
        &self.harness
    }
}

impl World {
    async fn new(members: &[(&str, &str)]) -> Self {
        let db = Db::with_endpoint(Some(&serial_proxy())).await;
        let mut harness = LifecycleHarness::new(db.store.clone(), db.store.clone(), members);
        // moto answers in milliseconds, not microseconds: wait longer between lock attempts.
        harness.policy.lock_backoff = std::time::Duration::from_millis(5);
        Self { harness: Arc::new(harness), db }
    }

    async fn status(&self, id: &str) -> GrantStatus {
        self.stored_status(id).await
    }

    /// The store's own consistency, read from DynamoDB: every pending or active grant holds its
    /// lease and is in the sweep's index; settled ones are in neither; failed ones in both or
    /// neither; no lease is left empty and unlocked.
    async fn assert_consistent(&self) {
        let leases = self.db.leases("corp").await;
        let indexed = self.db.indexed().await;
        for g in self.db.all_grants().await {
            let holds = leases.get(&g.lease_key()).is_some_and(|l| l.0.contains(&g.id));
            match g.status {
                GrantStatus::Pending | GrantStatus::Active => {
                    assert!(holds && indexed.contains_key(&g.id), "open grant {} not held/indexed", g.id)
                }
                GrantStatus::Expired | GrantStatus::Revoked => {
                    assert!(!holds && !indexed.contains_key(&g.id), "settled grant {} still held", g.id);
                    assert!(g.ended_at.is_some());
                }
                GrantStatus::Failed => assert_eq!(holds, indexed.contains_key(&g.id), "failed grant {}", g.id),
                GrantStatus::PendingApproval => assert!(!holds && indexed.contains_key(&g.id), "request {}", g.id),
                GrantStatus::Denied | GrantStatus::Cancelled | GrantStatus::RequestExpired => {
                    assert!(!holds && !indexed.contains_key(&g.id), "ended request {}", g.id)
                }
            }
        }
        for (key, (holders, _, lock)) in &leases {
            assert!(!holders.is_empty() || lock.is_some(), "empty lease {key:?} left");
        }
    }
}

#[tokio::test]
async fn a_grant_and_its_revocation_run_over_dynamodb_with_a_measured_number_of_calls() {
    let w = World::new(&[]).await;
    w.db.calls.take();
    let grant = w.grant("alice@corp.com", "2h").await;
    let grant_calls = w.db.calls.take();
    assert_eq!(grant.status, GrantStatus::Active);
    assert!(w.alice_member() && !grant.preexisting_membership);
    assert_eq!(w.db.store.get(&grant.id).await.unwrap(), Some(grant.clone()));
    assert_eq!(w.db.holders(&alice_g1()).await, Some(BTreeSet::from([grant.id.clone()])));
    assert_eq!(w.db.lock_owner(&alice_g1()).await, None);

    w.advance(minutes(30));
    w.db.calls.take();
    let revoked = w.revoke(&grant.id).await.unwrap();
    let revoke_calls = w.db.calls.take();
    assert!(revoked.changed && revoked.membership == Some(MembershipEnd::Removed));
    assert_eq!(revoked.grant.status, GrantStatus::Revoked);
    assert!(!w.alice_member());
    assert!(w.db.lease_item(&alice_g1()).await.is_none());
    assert_eq!(
        w.db.actions(&grant.id).await,
        vec![AuditAction::Created, AuditAction::Activated, AuditAction::Revoked, AuditAction::MembershipRemoved]
    );
    assert_eq!(w.bus.types_for(&grant.id), vec!["Grant Created", "Grant Revoked"]);
    // Revoking twice is no error and changes nothing.
    w.db.calls.take();
    let again = w.revoke(&grant.id).await.unwrap();
    assert!(!again.changed);
    assert_eq!(count(&w.db.calls.take()), 1, "one read");

    // A grant: lock (UpdateItem), record pending, activate (a TransactWriteItems each; activating
    // reads the audit chain's head first). A revocation: read (GetItem), lock (UpdateItem), the
    // chain's head (GetItem), end (TransactWriteItems).
    let expected_grant =
        BTreeMap::from([("GetItem".to_owned(), 1), ("TransactWriteItems".to_owned(), 2), ("UpdateItem".to_owned(), 1)]);
    let expected_revoke =
        BTreeMap::from([("GetItem".to_owned(), 2), ("TransactWriteItems".to_owned(), 1), ("UpdateItem".to_owned(), 1)]);
    println!("DynamoDB calls: grant {grant_calls:?}, revoke {revoke_calls:?}");
    assert_eq!((grant_calls, revoke_calls), (expected_grant, expected_revoke));

    // With an Idempotency-Key: the claim (PutItem) and its completion (UpdateItem) on top; a
    // replay costs the claim and one read.
    let mut request = w.request("bob@corp.com", "1h");
    request.idempotency_key = Some("retry-1".into());
    w.db.calls.take();
    let first = request_grant(&w.ctx(), request.clone()).await.unwrap();
    let keyed = w.db.calls.take();
    assert_eq!(count(&keyed), 6, "{keyed:?}");
    let replay = request_grant(&w.ctx(), request).await.unwrap();
    assert!(replay.replayed && replay.grant == first.grant);
    assert_eq!(w.db.calls.take(), BTreeMap::from([("GetItem".to_owned(), 1), ("PutItem".to_owned(), 1)]));
    assert_eq!(w.jc.adds.load(Ordering::SeqCst), 2, "the replay added nothing");

    // The sweep at expiry: one query, then lock, the audit chain's head and end: four calls.
    w.advance(Duration::hours(1));
    w.db.calls.take();
    let report = w.sweep().await;
    assert_eq!((report.examined, report.ended), (1, 1));
    let sweep_calls = w.db.calls.take();
    println!("DynamoDB calls: sweep of one grant {sweep_calls:?}");
    assert_eq!(count(&sweep_calls), 4, "{sweep_calls:?}");
    w.assert_consistent().await;
}

#[tokio::test]
async fn a_standing_membership_survives_expiry_and_revocation_invariant_2() {
    let w = World::new(&[("g1", "u1")]).await;
    let expiring = w.grant("alice@corp.com", "1h").await;
    assert!(expiring.preexisting_membership);
    w.advance(Duration::hours(1));
    let ended = w.expire(&expiring.id).await.unwrap();
    assert_eq!(ended.membership, Some(MembershipEnd::KeptPreexisting));
    assert!(w.alice_member());

    let revoked = w.grant("alice@corp.com", "1h").await;
    assert!(revoked.preexisting_membership);
    assert_eq!(w.revoke(&revoked.id).await.unwrap().membership, Some(MembershipEnd::KeptPreexisting));
    assert!(w.alice_member());
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 0);

    // Two overlapping grants on the standing membership: neither end removes it.
    let a = w.grant("alice@corp.com", "1h").await;
    let b = w.grant("alice@corp.com", "2h").await;
    assert!(a.preexisting_membership && b.preexisting_membership);
    w.advance(Duration::hours(2));
    let report = w.sweep().await;
    assert_eq!(report.ended, 2);
    assert!(w.alice_member());
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 0);
    w.assert_consistent().await;
}

#[tokio::test]
async fn overlapping_grants_keep_the_membership_until_the_last_ends_invariant_3() {
    let w = World::new(&[]).await;
    let short = w.grant("alice@corp.com", "1h").await;
    let long = w.grant("alice@corp.com", "3h").await;
    assert!(!short.preexisting_membership && !long.preexisting_membership);
    assert_eq!(w.db.holders(&alice_g1()).await.unwrap().len(), 2);
    w.advance(Duration::hours(1));
    let first = w.expire(&short.id).await.unwrap();
    assert_eq!(first.membership, Some(MembershipEnd::KeptForOtherGrants));
    assert!(w.alice_member(), "removed while another grant holds it");
    // Revoking the later one first keeps the membership for a third, earlier-ending one.
    let third = w.grant("alice@corp.com", "1h").await;
    assert_eq!(w.revoke(&long.id).await.unwrap().membership, Some(MembershipEnd::KeptForOtherGrants));
    assert!(w.alice_member());
    // The last one ends through the sweep (its schedule never fired).
    w.advance(Duration::hours(1));
    let report = w.sweep().await;
    assert_eq!((report.examined, report.ended), (1, 1));
    assert_eq!(w.status(&third.id).await, GrantStatus::Expired);
    assert!(!w.alice_member());
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 1);
    assert!(w.db.lease_item(&alice_g1()).await.is_none());
    w.assert_consistent().await;
}

#[tokio::test]
async fn the_sweep_pages_through_due_grants_and_finishes_failed_revocations_and_leftovers() {
    let w = World::new(&[]).await;
    // Seven grants whose schedules could not be created, swept in pages of three.
    w.scheduler.fail_create.store(true, Ordering::SeqCst);
    let mut grants = Vec::new();
    for i in 10..17 {
        grants.push(w.grant(&format!("user{i}@corp.com"), "1h").await);
    }
    w.scheduler.fail_create.store(false, Ordering::SeqCst);
    let policy = GrantPolicy { sweep_page: 3, ..w.policy.clone() };
    w.advance(Duration::hours(1));
    let ctx = GrantContext { policy: &policy, ..w.ctx() };
    let report = sweep(&ctx, w.clock.now()).await.unwrap();
    assert_eq!((report.examined, report.ended, report.failed), (7, 7, 0));
    for g in &grants {
        assert_eq!(w.status(&g.id).await, GrantStatus::Expired);
        assert!(!w.jc.is_member("g1", &g.user.id));
    }

    // JumpCloud down during a revocation: the grant stays active and due now; the sweep finishes it.
    let grant = w.grant("alice@corp.com", "2h").await;
    *w.jc.remove_fault.lock().unwrap() =
        Some(Fault { error: DirectoryError::Transient { reason: "HTTP 503".into() }, applied: false });
    assert!(matches!(w.revoke(&grant.id).await, Err(RevokeError::Directory(_))));
    let stored = w.db.store.get(&grant.id).await.unwrap().unwrap();
    assert_eq!(stored.status, GrantStatus::Active);
    assert!(stored.revocation_requested.is_some());
    assert!(w.alice_member());
    *w.jc.remove_fault.lock().unwrap() = None;
    w.advance(minutes(1));
    let report = w.sweep().await;
    assert_eq!(report.ended, 1);
    assert_eq!(w.status(&grant.id).await, GrantStatus::Revoked, "finished as the revocation it was");
    assert!(!w.alice_member());

    // A timed-out add that JumpCloud applied: the grant fails, the sweep removes the membership.
    *w.jc.add_fault.lock().unwrap() =
        Some(Fault { error: DirectoryError::Transient { reason: "timed out".into() }, applied: true });
    let failed = request_grant(&w.ctx(), w.request("bob@corp.com", "1h")).await;
    assert!(matches!(failed, Err(GrantError::Directory(_))));
    *w.jc.add_fault.lock().unwrap() = None;
    assert!(w.jc.is_member("g1", "u2"));
    let report = w.sweep().await;
    assert_eq!((report.cleaned_up, report.failed), (1, 0));
    assert!(!w.jc.is_member("g1", "u2"));
    w.assert_consistent().await;
    assert!(w.db.indexed().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedule_sweep_and_delete_delivered_together_settle_the_grant_once() {
    for round in 0..12 {
        let w = World::new(&[]).await;
        scenarios::deliveries_together_settle_once(w.harness.clone(), round).await;
        w.assert_consistent().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grant_revoke_and_sweep_on_one_membership_end_consistent() {
    for round in 0..24 {
        let standing = round % 4 == 3;
        let members: &[(&str, &str)] = if standing { &[("g1", "u1")] } else { &[] };
        let w = World::new(members).await;
        let new_grant =
            scenarios::grant_during_revocations_keeps_the_membership(w.harness.clone(), standing, round).await;
        let leases = w.db.leases("corp").await;
        assert_eq!(leases[&alice_g1()], (BTreeSet::from([new_grant.id.clone()]), standing, None), "round {round}");

        // And the new grant's end leaves the membership as it was before both.
        w.revoke(&new_grant.id).await.unwrap();
        assert_eq!(w.alice_member(), standing, "round {round}");
        w.assert_consistent().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_overlapping_grants_and_revocations_end_with_the_last() {
    for round in 0..6 {
        let w = World::new(&[]).await;
        scenarios::overlapping_grants_end_with_the_last(w.harness.clone(), round).await;
        w.assert_consistent().await;
    }
}

/// Invariants 7 and 8 on DynamoDB: approvals, a denial and a cancellation racing each other are
/// decided by the conditional writes on the request's revision: one activation, one outcome each,
/// and no request ever holding a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_approvals_denials_and_cancellations_leave_one_outcome_on_dynamodb() {
    for _ in 0..3 {
        let w = World::new(&[]).await;
        w.sync_request_directory().await;
        w.policies.apply(scenarios::REQUEST_POLICY, t0());
        let [approved, raced, cancelled, timed_out] = w.concurrent_decisions().await;
        assert!(matches!(timed_out.status, GrantStatus::RequestExpired | GrantStatus::Active));
        assert_eq!((approved.status, approved.approvals.len()), (GrantStatus::Active, 2));
        assert!(w.alice_member(), "the approved request's membership");
        assert_eq!(raced.status, GrantStatus::Denied, "one approval of two never activates");
        assert!(
            matches!(cancelled.status, GrantStatus::Cancelled | GrantStatus::Revoked | GrantStatus::Active),
            "{:?}",
            cancelled.status
        );
        let created = w
            .bus
            .published()
            .iter()
            .filter(|e| {
                e.grant_id() == Some(approved.id.as_str())
                    && e.detail_type == jit_shared::domain::model::EventType::GrantCreated
            })
            .count();
        assert_eq!(created, 1, "activated once");
        w.assert_consistent().await;
    }
}

/// An extension on DynamoDB: the expiry, the sweep's index and the revision move in one
/// conditioned write, and a grant's end read before it fails instead of ending the extended
/// grant at its old time.
#[tokio::test]
async fn an_extension_moves_the_due_time_and_a_stale_end_fails() {
    use jit_shared::domain::extension::{extend, ExtendRequest};
    let w = World::new(&[]).await;
    let grant = w.grant("alice@corp.com", "1h").await;
    let stale = w.db.store.get(&grant.id).await.unwrap().unwrap();
    let admin = jit_shared::domain::identity::Principal { id: ADMIN.into(), admin: true, users: vec![] };
    let request = ExtendRequest { duration: "2h".parse().unwrap(), reason: "INC-4711 longer".into() };
    let extended = extend(&w.ctx(), &grant.id, &admin, &request).await.unwrap();
    assert_eq!(extended.expires_at, Some(t0() + Duration::hours(3)));
    let stored = w.db.store.get(&grant.id).await.unwrap().unwrap();
    assert_eq!((stored.expires_at, stored.revision, stored.extensions.len()), (extended.expires_at, 1, 1));
    assert!(w.db.store.due(t0() + Duration::hours(2), 10, None).await.unwrap().grants.is_empty(), "not due at 1h");
    assert_eq!(w.db.store.due(t0() + Duration::hours(3), 10, None).await.unwrap().grants.len(), 1);

    // An end conditioned on the revision read before the extension is refused.
    let hold = LeaseHold { key: stale.lease_key(), owner: "stale-expiry".into() };
    w.db.store.lock_lease(&hold.key, &hold.owner, t0(), minutes(3)).await.unwrap();
    let ending = Ending {
        grant: stale,
        status: GrantStatus::Expired,
        ended_at: t0() + Duration::hours(1),
        last_holder: true,
        membership: None,
    };
    let refused = w.db.store.end(&ending, &hold, &[]).await;
    assert!(matches!(refused, Err(GrantStoreError::Conflict(_))), "{refused:?}");
    w.db.store.unlock_lease(&hold).await.unwrap();
    // A second extension read at the old revision is refused too.
    let mut again = extended.clone();
    again.revision = 1;
    assert!(matches!(w.db.store.extend_grant(&again, &[]).await, Err(GrantStoreError::Conflict(_))));
    assert_eq!(w.db.store.get(&grant.id).await.unwrap().unwrap().status, GrantStatus::Active);
    w.assert_consistent().await;
}
