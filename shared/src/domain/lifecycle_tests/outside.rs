//! Memberships added outside the product to a `jit_only` group, as the incremental sync sees
//! them: reported, or removed with `remove_outside`, audited; a grant's own never.

use super::*;
use crate::ports::DirectoryStore;
use crate::{
    config::DirectoryPolicy,
    domain::{
        incremental::{sync_incremental, IncrementalContext, IncrementalOutcome, IncrementalReport},
        model::{AuditOutcome, EventType, DRIFT_AUDIT_ID},
        sync::{sync_integration, NoProgress, SyncContext},
    },
    ports::{DirectoryChange, DirectoryEvent},
};

const JIT_ONLY: &str = "version: 1\nrules:\n  - groups: [\"prod-db-admins\"]\n    eligible: everyone\n    max_duration: 4h\n    jit_only: true\n";

/// The directory synced (cursor at t0) and `policy` applied.
async fn synced(policy: &str) -> World {
    let w = World::new(&[]);
    w.policies.apply(policy, t0());
    let directory_policy = DirectoryPolicy::default();
    let ctx = SyncContext::directory_only(&w.synced, &directory_policy, &w.clock);
    sync_integration(&ctx, "corp", w.jc.as_ref()).await.expect("full sync");
    w.advance(Duration::minutes(1));
    w
}

/// JumpCloud adds the member outside the product, and says so in an event.
fn added_in_jumpcloud(w: &World, group: &str, user: &str) {
    w.jc.set_member(group, user);
    logged(w, group, user, true);
}

async fn run(w: &World) -> IncrementalReport {
    let policy = DirectoryPolicy::default();
    let grants = w.ctx();
    let ctx = IncrementalContext { store: &w.synced, policy: &policy, clock: &w.clock, grants: Some(&grants) };
    match sync_incremental(&ctx, "corp", w.jc.as_ref(), w.jc.as_ref()).await.expect("incremental run") {
        IncrementalOutcome::Applied(report) => report,
        other => panic!("{other:?}"),
    }
}

fn drift_events(w: &World) -> Vec<serde_json::Value> {
    w.bus.published().into_iter().filter(|e| e.detail_type == EventType::DriftDetected).map(|e| e.detail).collect()
}

#[tokio::test]
async fn an_outside_membership_of_a_jit_only_group_is_reported_once_and_left() {
    let w = synced(JIT_ONLY).await;
    added_in_jumpcloud(&w, "g1", "u2");
    let report = run(&w).await;
    assert_eq!(report.added_outside, vec![("g1".to_owned(), "u2".to_owned(), false)]);
    assert!(w.jc.is_member("g1", "u2"), "reported, not removed");
    assert!(w.synced.is_member("corp", "g1", "u2").await.unwrap(), "stored as JumpCloud has it");
    let events = drift_events(&w);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["drift"], "added_outside");
    assert_eq!(
        (events[0]["group"]["name"].as_str(), events[0]["user"]["email"].as_str()),
        (Some("prod-db-admins"), Some("bob@corp.com"))
    );
    assert_eq!(events[0]["removed"], false);
    let trail = w.store.audit_for(DRIFT_AUDIT_ID).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(
        (trail[0].group_id.as_str(), trail[0].user_id.as_str(), trail[0].outcome),
        ("g1", "u2", AuditOutcome::Succeeded)
    );
    assert!(trail[0].detail.as_deref().unwrap().contains("reported"));

    // The next run reads the event again (its overlap): the stored membership is not news.
    w.advance(Duration::minutes(1));
    assert!(run(&w).await.added_outside.is_empty());
    assert_eq!(drift_events(&w).len(), 1, "reported once");
}

#[tokio::test]
async fn with_remove_outside_it_is_removed_audited_and_not_stored() {
    let w = synced(&format!("{JIT_ONLY}    remove_outside: true\n")).await;
    added_in_jumpcloud(&w, "g1", "u2");
    let report = run(&w).await;
    assert_eq!(report.added_outside, vec![("g1".to_owned(), "u2".to_owned(), true)]);
    assert!(!w.jc.is_member("g1", "u2"), "removed in JumpCloud");
    assert!(!w.synced.is_member("corp", "g1", "u2").await.unwrap());
    assert_eq!(drift_events(&w)[0]["removed"], true);
    let trail = w.store.audit_for(DRIFT_AUDIT_ID).await.unwrap();
    assert!(trail[0].detail.as_deref().unwrap().ends_with("removed"), "{trail:?}");
    assert!(w.store.leases().is_empty(), "the judgement's lease lock is gone with it");
}

#[tokio::test]
async fn a_grants_own_membership_and_other_groups_are_not_drift() {
    let w = synced(&format!("{JIT_ONLY}    remove_outside: true\n")).await;
    let grant = w.grant("alice@corp.com", "1h").await;
    // JumpCloud's event of the grant's own add, and an outside add to a group no rule marks.
    w.jc.set_member("g3", "u2");
    {
        let mut events = w.jc.events.lock().unwrap();
        for (group, user) in [("g1", "u1"), ("g3", "u2")] {
            let id = format!("e{}", events.len());
            events.push(DirectoryEvent {
                id,
                at: w.clock.now(),
                change: DirectoryChange::Membership { group_id: group.into(), user_id: user.into(), added: true },
            });
        }
    }
    let report = run(&w).await;
    assert!(report.added_outside.is_empty(), "{report:?}");
    assert!(w.jc.is_member("g1", "u1") && w.jc.is_member("g3", "u2"));
    assert!(w.synced.is_member("corp", "g1", "u1").await.unwrap());
    assert!(drift_events(&w).is_empty());
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
}

#[tokio::test]
async fn a_grants_membership_ended_before_the_run_read_its_add_is_not_drift() {
    // Reported only: removal would find it gone anyway; the report is what must not happen.
    let w = synced(JIT_ONLY).await;
    let grant = w.grant("bob@corp.com", "1h").await;
    {
        let mut events = w.jc.events.lock().unwrap();
        let id = format!("e{}", events.len());
        events.push(DirectoryEvent {
            id,
            at: w.clock.now(),
            change: DirectoryChange::Membership { group_id: "g1".into(), user_id: "u2".into(), added: true },
        });
    }
    // Revoked (the membership removed, the lease released) before the incremental run reads the add.
    w.revoke(&grant.id).await.expect("revoked");
    assert!(!w.jc.is_member("g1", "u2"));
    let report = run(&w).await;
    assert!(report.added_outside.is_empty(), "{report:?}");
    assert!(drift_events(&w).is_empty());
    assert!(w.store.audit_for(DRIFT_AUDIT_ID).await.unwrap().is_empty());
    assert!(!w.synced.is_member("corp", "g1", "u2").await.unwrap(), "gone from JumpCloud: not stored either");
}

/// JumpCloud as the full sync lists it, where `member` is removed by hand after the listing and
/// before the judgement.
struct RemovedByHand<'a> {
    inner: &'a crate::testing::FakeDirectory,
    member: (&'a str, &'a str),
}

#[async_trait::async_trait]
impl crate::ports::Directory for RemovedByHand<'_> {
    async fn list_users(&self) -> Result<Vec<crate::ports::SourceUser>, crate::ports::DirectoryError> {
        self.inner.list_users().await
    }
    async fn list_groups(&self) -> Result<Vec<crate::ports::SourceGroup>, crate::ports::DirectoryError> {
        self.inner.list_groups().await
    }
    async fn list_group_members(&self, group_id: &str) -> Result<Vec<String>, crate::ports::DirectoryError> {
        self.inner.list_group_members(group_id).await
    }
    async fn groups_of_user(&self, user_id: &str) -> Result<Vec<String>, crate::ports::DirectoryError> {
        self.inner.unset_member(self.member.0, self.member.1);
        self.inner.groups_of_user(user_id).await
    }
    async fn find_user(&self, key: &str) -> Result<crate::ports::SourceUser, crate::ports::DirectoryError> {
        self.inner.find_user(key).await
    }
    async fn find_group(&self, key: &str) -> Result<crate::ports::SourceGroup, crate::ports::DirectoryError> {
        self.inner.find_group(key).await
    }
    async fn add_member(&self, g: &str, u: &str) -> Result<crate::ports::AddOutcome, crate::ports::AddError> {
        self.inner.add_member(g, u).await
    }
    async fn remove_member(
        &self,
        g: &str,
        u: &str,
    ) -> Result<crate::ports::RemoveOutcome, crate::ports::DirectoryError> {
        self.inner.unset_member(self.member.0, self.member.1);
        self.inner.remove_member(g, u).await
    }
}

#[tokio::test]
async fn an_outside_add_removed_by_hand_before_the_full_sync_judges_it_is_neither_reported_nor_stored() {
    for policy in [JIT_ONLY.to_owned(), format!("{JIT_ONLY}    remove_outside: true\n")] {
        let w = synced(&policy).await;
        w.jc.set_member("g1", "u2");
        let directory = RemovedByHand { inner: &w.jc, member: ("g1", "u2") };
        let directory_policy = DirectoryPolicy::default();
        let grants = w.ctx();
        let ctx = SyncContext {
            store: &w.synced,
            policy: &directory_policy,
            clock: &w.clock,
            progress: &NoProgress,
            grants: Some(&grants),
            fanout: None,
        };
        let report = sync_integration(&ctx, "corp", &directory).await.expect("full sync");
        let reconciliation = report.reconciliation.expect("reconciled");
        assert!(reconciliation.added_outside.is_empty(), "{policy}: {reconciliation:?}");
        assert!(drift_events(&w).is_empty(), "{policy}");
        assert!(!w.jc.is_member("g1", "u2"));
        assert!(!w.synced.is_member("corp", "g1", "u2").await.unwrap(), "{policy}: listed, but gone when judged");
    }
}

#[tokio::test]
async fn one_membership_that_cannot_be_judged_waits_for_the_next_run_and_the_others_are_kept() {
    // prod-db-admins removes outside adds (the removal fails for now); finance only reports them.
    let policy = format!(
        "{JIT_ONLY}    remove_outside: true\n  - groups: [\"finance\"]\n    eligible: everyone\n    max_duration: 1h\n    jit_only: true\n"
    );
    let w = synced(&policy).await;
    added_in_jumpcloud(&w, "g1", "u2");
    added_in_jumpcloud(&w, "g3", "u10");
    let cursor = w.synced.event_cursor("corp").await.unwrap();
    *w.jc.remove_fault.lock().unwrap() = Some(crate::testing::Fault { error: transient(), applied: false });
    let policy_ = DirectoryPolicy::default();
    let grants = w.ctx();
    let ctx = IncrementalContext { store: &w.synced, policy: &policy_, clock: &w.clock, grants: Some(&grants) };
    let failed = sync_incremental(&ctx, "corp", w.jc.as_ref(), w.jc.as_ref()).await;
    assert!(matches!(failed, Err(crate::domain::incremental::IncrementalError::Drift(_))), "{failed:?}");
    // The one judged is reported and stored; the other is neither, and the cursor stays.
    assert_eq!(drift_events(&w).len(), 1);
    assert_eq!(drift_events(&w)[0]["group"]["id"], "g3");
    assert!(w.synced.is_member("corp", "g3", "u10").await.unwrap());
    assert!(!w.synced.is_member("corp", "g1", "u2").await.unwrap());
    assert_eq!(w.synced.event_cursor("corp").await.unwrap(), cursor);

    // The next run judges the one left (removed now), and does not report the other again.
    *w.jc.remove_fault.lock().unwrap() = None;
    w.advance(Duration::minutes(1));
    let report = run(&w).await;
    assert_eq!(report.added_outside, vec![("g1".to_owned(), "u2".to_owned(), true)]);
    assert!(!w.jc.is_member("g1", "u2"));
    assert_eq!(drift_events(&w).len(), 2, "each reported once");
    assert!(w.synced.event_cursor("corp").await.unwrap() > cursor);
}

/// A full sync with the lifecycle's ports (so it reconciles and judges).
async fn full_sync(w: &World) -> crate::domain::reconcile::ReconcileReport {
    let policy = DirectoryPolicy::default();
    let grants = w.ctx();
    let ctx = SyncContext {
        store: &w.synced,
        policy: &policy,
        clock: &w.clock,
        progress: &NoProgress,
        grants: Some(&grants),
        fanout: None,
    };
    sync_integration(&ctx, "corp", w.jc.as_ref()).await.expect("full sync").reconciliation.expect("reconciled")
}

#[tokio::test]
async fn an_outside_add_a_full_sync_finds_first_is_judged_by_it_once() {
    let w = synced(JIT_ONLY).await;
    // Added in JumpCloud, its event not (yet) read: the full sync finds it.
    added_in_jumpcloud(&w, "g1", "u2");
    // And one to a group no rule marks, and a grant's own: neither is drift.
    w.jc.set_member("g3", "u10");
    let grant = w.grant("alice@corp.com", "1h").await;
    w.advance(Duration::minutes(1));
    let report = full_sync(&w).await;
    assert_eq!(report.added_outside, vec![("g1".to_owned(), "u2".to_owned(), false)], "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(drift_events(&w).len(), 1);
    assert!(w.synced.is_member("corp", "g1", "u2").await.unwrap(), "reported, stored");
    assert_eq!(w.status(&grant.id), GrantStatus::Active);

    // Neither the incremental run reading its event nor the next full sync reports it again.
    w.advance(Duration::minutes(1));
    assert!(run(&w).await.added_outside.is_empty());
    w.advance(Duration::minutes(1));
    assert!(full_sync(&w).await.added_outside.is_empty());
    assert_eq!(drift_events(&w).len(), 1, "reported once");
}

#[tokio::test]
async fn with_remove_outside_a_full_sync_removes_it_and_the_first_sync_touches_nothing() {
    let policy = format!("{JIT_ONLY}    remove_outside: true\n");
    // The first sync: what it finds was there before the product (standing), whatever the rule.
    let w = World::new(&[("g1", "u2")]);
    w.policies.apply(&policy, t0());
    let first = full_sync(&w).await;
    assert!(first.added_outside.is_empty());
    assert!(w.jc.is_member("g1", "u2"), "standing, untouched");

    w.jc.set_member("g1", "u10");
    w.advance(Duration::minutes(1));
    let report = full_sync(&w).await;
    assert_eq!(report.added_outside, vec![("g1".to_owned(), "u10".to_owned(), true)]);
    assert!(!w.jc.is_member("g1", "u10"), "removed in JumpCloud");
    assert!(!w.synced.is_member("corp", "g1", "u10").await.unwrap(), "and not stored");
    assert!(w.jc.is_member("g1", "u2"), "the standing one still untouched");
    let trail = w.store.audit_for(DRIFT_AUDIT_ID).await.unwrap();
    assert_eq!(trail.len(), 1);
}

#[test]
fn remove_outside_without_jit_only_is_refused() {
    let doc = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n    remove_outside: true\n";
    let error = crate::domain::policy::parse_policy(doc).unwrap_err().to_string();
    assert!(error.contains("remove_outside needs jit_only"), "{error}");
}

/// A fanned-out full sync (one user and one group per part) with the lifecycle's ports: its
/// reconciliation as `Sync Completed` reported it.
async fn fanned_full_sync(w: &World) -> serde_json::Value {
    use crate::domain::fanout::{run_part, FanOut};
    use crate::domain::sync::{full_sync, IntegrationOutcome};
    use crate::testing::{MemoryQueue, MemoryRuns};
    let policy = DirectoryPolicy::default();
    let grants = w.ctx();
    let (queue, runs) = (MemoryQueue::default(), MemoryRuns::default());
    let fanout = FanOut { users_per_part: 1, groups_per_part: 1, ..FanOut::new(&queue, &runs, 0) };
    let ctx = SyncContext {
        grants: Some(&grants),
        fanout: Some(&fanout),
        ..SyncContext::directory_only(&w.synced, &policy, &w.clock)
    };
    let outcome = full_sync(&ctx, "corp", w.jc.as_ref()).await;
    assert!(matches!(outcome, IntegrationOutcome::FannedOut(_)), "{outcome:?}");
    while let Some(message) = queue.take() {
        run_part(&ctx, &fanout, &message, w.jc.as_ref(), 1).await.expect("part");
    }
    let completed: Vec<_> =
        w.bus.published().into_iter().filter(|e| e.detail_type == EventType::SyncCompleted).collect();
    let last = completed.last().expect("Sync Completed");
    assert!(last.detail["parts"].as_u64().unwrap() > 2, "{:?}", last.detail);
    last.detail["reconciliation"].clone()
}

#[tokio::test]
async fn a_fanned_out_sync_judges_an_outside_add_once_and_the_first_one_touches_nothing() {
    let policy = format!("{JIT_ONLY}    remove_outside: true\n");
    let w = World::new(&[("g1", "u2")]);
    w.policies.apply(&policy, t0());
    let first = fanned_full_sync(&w).await;
    assert!(first.get("added_outside").is_none(), "{first}");
    assert!(w.jc.is_member("g1", "u2"), "standing, untouched");

    // Added outside the product, to the jit_only group and to another: only the first is drift.
    w.jc.set_member("g1", "u10");
    w.jc.set_member("g3", "u10");
    let grant = w.grant("alice@corp.com", "1h").await;
    w.advance(Duration::minutes(1));
    let report = fanned_full_sync(&w).await;
    assert_eq!(report["added_outside"], serde_json::json!([["g1", "u10", true]]), "{report}");
    assert!(!w.jc.is_member("g1", "u10"), "removed in JumpCloud");
    assert!(!w.synced.is_member("corp", "g1", "u10").await.unwrap(), "and not stored");
    assert!(w.synced.is_member("corp", "g3", "u10").await.unwrap());
    assert!(w.jc.is_member("g1", "u2"), "the standing one still untouched");
    assert_eq!(w.status(&grant.id), GrantStatus::Active, "the grant's own membership is no drift");
    assert_eq!(drift_events(&w).len(), 1);
    w.advance(Duration::minutes(1));
    assert!(fanned_full_sync(&w).await.get("added_outside").is_none(), "once");
}

#[tokio::test]
async fn a_fanned_out_sync_reconciles_grants_against_what_its_parts_stored() {
    let w = World::new(&[]);
    fanned_full_sync(&w).await;
    let grant = w.grant("alice@corp.com", "1h").await;
    // Removed in JumpCloud outside the product while the grant is active.
    w.jc.unset_member("g1", "u1");
    w.advance(Duration::minutes(10));
    let report = fanned_full_sync(&w).await;
    assert_eq!(report["missing"], serde_json::json!([grant.id]), "{report}");
    assert!(w.store.grant(&grant.id).unwrap().membership_missing);
}

/// JumpCloud's event of a membership change (as Directory Insights logs every add and removal,
/// the product's own included).
fn logged(w: &World, group: &str, user: &str, added: bool) {
    let mut events = w.jc.events.lock().unwrap();
    let id = format!("e{}", events.len());
    events.push(DirectoryEvent {
        id,
        at: w.clock.now(),
        change: DirectoryChange::Membership { group_id: group.into(), user_id: user.into(), added },
    });
}

/// An incremental run while a full sync runs: what it did against additions outside the product.
async fn watch_run(w: &World) -> crate::domain::drift_watch::DriftWatch {
    let policy = DirectoryPolicy::default();
    let grants = w.ctx();
    let ctx = IncrementalContext { store: &w.synced, policy: &policy, clock: &w.clock, grants: Some(&grants) };
    match sync_incremental(&ctx, "corp", w.jc.as_ref(), w.jc.as_ref()).await.expect("incremental run") {
        IncrementalOutcome::Watched(watch) => watch,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn while_a_fanned_out_sync_runs_an_outside_add_under_remove_outside_is_removed_within_a_run() {
    use crate::domain::fanout::{run_part, FanOut};
    use crate::domain::sync::{full_sync, IntegrationOutcome};
    use crate::testing::{MemoryQueue, MemoryRuns};
    let w = synced(&format!("{JIT_ONLY}    remove_outside: true\n")).await;
    let grant = w.grant("alice@corp.com", "1h").await;
    logged(&w, "g1", "u1", true);
    // The daily full sync fans out; its first part is done when bob is added outside the product.
    let policy = DirectoryPolicy::default();
    let grants = w.ctx();
    let (queue, runs) = (MemoryQueue::default(), MemoryRuns::default());
    let fanout = FanOut { users_per_part: 1, groups_per_part: 1, ..FanOut::new(&queue, &runs, 0) };
    let ctx = SyncContext {
        grants: Some(&grants),
        fanout: Some(&fanout),
        ..SyncContext::directory_only(&w.synced, &policy, &w.clock)
    };
    let began = w.clock.now();
    assert!(matches!(full_sync(&ctx, "corp", w.jc.as_ref()).await, IntegrationOutcome::FannedOut(_)));
    run_part(&ctx, &fanout, &queue.take().expect("a part"), w.jc.as_ref(), 1).await.expect("part");
    w.advance(Duration::minutes(1));
    added_in_jumpcloud(&w, "g1", "u2");
    let (cursor, writes) = (w.synced.event_cursor("corp").await.unwrap(), w.synced.item_writes());

    let watch = watch_run(&w).await;
    assert_eq!(watch.removed, vec![("g1".to_owned(), "u2".to_owned())], "{watch:?}");
    assert!(watch.failures.is_empty(), "{watch:?}");
    assert!(!w.jc.is_member("g1", "u2"), "removed in JumpCloud within the run");
    assert!(w.jc.is_member("g1", "u1"), "the grant's own membership is no drift");
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
    let events = drift_events(&w);
    assert_eq!((events.len(), &events[0]["removed"]), (1, &serde_json::json!(true)));
    assert_eq!(w.store.audit_for(DRIFT_AUDIT_ID).await.unwrap().len(), 1, "audited");
    assert_eq!(w.synced.item_writes(), writes, "nothing stored over the full sync's reads");
    assert_eq!(w.synced.event_cursor("corp").await.unwrap(), cursor, "nor the cursor moved");
    logged(&w, "g1", "u2", false);

    // The next run's window reads the add again: gone, so nothing more is reported.
    w.advance(Duration::minutes(1));
    let again = watch_run(&w).await;
    assert!(again.removed.is_empty(), "{again:?}");
    // The full sync's other parts, then the first incremental run after it: nothing more either.
    while let Some(message) = queue.take() {
        run_part(&ctx, &fanout, &message, w.jc.as_ref(), 1).await.expect("part");
    }
    assert_eq!(w.synced.event_cursor("corp").await.unwrap(), Some(began), "the full sync ended");
    w.advance(Duration::minutes(1));
    assert!(run(&w).await.added_outside.is_empty());
    assert_eq!(drift_events(&w).len(), 1, "reported once");
    assert!(!w.synced.is_member("corp", "g1", "u2").await.unwrap());
    assert!(w.synced.is_member("corp", "g1", "u1").await.unwrap());
}

#[tokio::test]
async fn while_a_full_sync_runs_a_report_only_add_is_left_to_it_and_reported_once() {
    let w = synced(JIT_ONLY).await;
    let running = crate::ports::SyncStatus::running("corp", w.clock.now());
    w.synced.put_sync_status(&running).await.unwrap();
    added_in_jumpcloud(&w, "g1", "u2");
    // And to a group no rule marks: not judged at all.
    w.jc.set_member("g3", "u10");
    logged(&w, "g3", "u10", true);
    let watch = watch_run(&w).await;
    assert_eq!((watch.events, watch.judged, watch.left_to_full_sync), (2, 1, 1), "{watch:?}");
    assert!(watch.removed.is_empty());
    assert!(drift_events(&w).is_empty(), "not reported now: it would be again by the full sync");
    assert!(w.jc.is_member("g1", "u2"), "left in place");

    // The full sync (its reads after the add) reports it; the run after it does not again.
    w.synced
        .put_sync_status(&crate::ports::SyncStatus { state: crate::ports::SyncState::Succeeded, ..running })
        .await
        .unwrap();
    w.advance(Duration::minutes(1));
    assert_eq!(full_sync(&w).await.added_outside, vec![("g1".to_owned(), "u2".to_owned(), false)]);
    w.advance(Duration::minutes(1));
    assert!(run(&w).await.added_outside.is_empty());
    assert_eq!(drift_events(&w).len(), 1, "reported once");
}

#[tokio::test]
async fn while_a_full_sync_runs_a_group_created_meanwhile_is_known_by_its_name() {
    // prod-db-admins created in JumpCloud after the stored directory was (a second group of the
    // name, say), and given a member outside the product: its rule is known by the name read.
    let w = synced(&format!("{JIT_ONLY}    remove_outside: true\n")).await;
    w.jc.groups.lock().unwrap().push(crate::testing::FakeDirectory::group("g9", "prod-db-admins"));
    w.synced.put_sync_status(&crate::ports::SyncStatus::running("corp", w.clock.now())).await.unwrap();
    added_in_jumpcloud(&w, "g9", "u2");
    let watch = watch_run(&w).await;
    assert_eq!(watch.removed, vec![("g9".to_owned(), "u2".to_owned())], "{watch:?}");
    assert!(!w.jc.is_member("g9", "u2"));
}
