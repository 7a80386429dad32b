//! Domain tests of the grant lifecycle (grant, revoke, expiry, sweep) over in-memory doubles.
//! Each SPEC invariant has tests that fail without it; the mutation each catches is named in
//! the test's comment.

use super::{
    grant::{request_grant, GrantError, GrantPolicy, GrantRequest},
    revoke::RevokeError,
};
use crate::{
    clock::Clock,
    domain::model::{
        AuditAction, GrantFilter, GrantStatus, IdempotencyClaim, IdempotencyKey, IdempotencyState, LeaseKey,
        MembershipEnd, ACTOR_SWEEP,
    },
    ports::DirectoryError,
    ports::GrantStore,
    testing::lifecycle::{self as scenarios, t0, LifecycleHarness, ADMIN, REVOKER},
    testing::FakeDirectory,
    testing::{Fault, MemoryGrantStore, SyncedMemberships},
};
use chrono::Duration;
use std::sync::{atomic::Ordering, Arc};

/// The HTTP status the edge gives an error (the mapping lives in `crate::http`).
fn status_of<E>(error: &E) -> u16
where
    for<'a> crate::http::Problem: From<&'a E>,
{
    crate::http::Problem::from(error).status
}

fn hours(h: i64) -> Duration {
    Duration::hours(h)
}

/// The lifecycle over the in-memory store (see [`LifecycleHarness`] for the organization), plus
/// checks that read the store's internals.
struct World(Arc<LifecycleHarness<MemoryGrantStore, SyncedMemberships>>);

impl std::ops::Deref for World {
    type Target = LifecycleHarness<MemoryGrantStore, SyncedMemberships>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl World {
    fn new(members: &[(&str, &str)]) -> Self {
        Self::with_policy(members, |_| {})
    }

    fn with_policy(members: &[(&str, &str)], edit: impl FnOnce(&mut GrantPolicy)) -> Self {
        let mut harness = LifecycleHarness::new(MemoryGrantStore::default(), SyncedMemberships::default(), members);
        edit(&mut harness.policy);
        Self(Arc::new(harness))
    }

    fn status(&self, id: &str) -> GrantStatus {
        self.store.grant(id).expect("grant").status
    }

    fn actions(&self, id: &str) -> Vec<AuditAction> {
        self.store.audit().iter().filter(|r| r.grant_id == id).map(|r| r.action).collect()
    }

    /// Nothing was written or changed anywhere.
    fn assert_untouched(&self, members_before: bool, what: &str) {
        assert!(self.store.grants().is_empty(), "{what}: a grant was recorded");
        assert!(self.store.audit().is_empty(), "{what}: audit written");
        assert!(self.store.leases().is_empty(), "{what}: a lease was left");
        assert_eq!(self.store.idempotency_records(), 0, "{what}: idempotency record left");
        assert_eq!(self.jc.member_calls(), 0, "{what}: JumpCloud membership touched");
        assert_eq!(self.alice_member(), members_before, "{what}: membership changed");
        assert!(self.bus.published().is_empty(), "{what}: event published");
        assert!(self.scheduler.schedules.lock().unwrap().is_empty(), "{what}: schedule created");
    }

    /// The store's own consistency: every pending or active grant (and only those, plus failed
    /// ones awaiting clean-up) holds its lease; settled grants are out of the sweep's index.
    fn assert_consistent(&self) {
        let leases = self.store.leases();
        let indexed = self.store.indexed();
        for g in self.store.grants() {
            let holds = leases.get(&g.lease_key()).is_some_and(|l| l.holders.contains(&g.id));
            match g.status {
                GrantStatus::Pending | GrantStatus::Active => {
                    assert!(holds && indexed.contains(&g.id), "open grant {} not held/indexed", g.id)
                }
                GrantStatus::Expired | GrantStatus::Revoked => {
                    assert!(!holds && !indexed.contains(&g.id), "settled grant {} still held", g.id);
                    assert!(g.ended_at.is_some());
                }
                GrantStatus::Failed => assert_eq!(holds, indexed.contains(&g.id), "failed grant {}", g.id),
            }
        }
        for (key, lease) in &leases {
            assert!(!lease.holders.is_empty() || lease.lock.is_some(), "empty lease {key:?} left");
        }
    }
}

fn alice_g1() -> LeaseKey {
    LeaseKey { integration: "corp".into(), group_id: "g1".into(), user_id: "u1".into() }
}

fn transient() -> DirectoryError {
    DirectoryError::Transient { reason: "HTTP 503: unavailable".into() }
}

// ---------------------------------------------------------------------------------------------
// The happy path, audit and events (invariant 4)

#[tokio::test]
async fn a_grant_adds_the_member_records_it_and_schedules_its_expiry() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "2h").await;
    assert_eq!(grant.status, GrantStatus::Active);
    assert_eq!((grant.user.id.as_str(), grant.user.email.as_str()), ("u1", "alice@corp.com"));
    assert_eq!((grant.group.id.as_str(), grant.group.name.as_str()), ("g1", "prod-db-admins"));
    assert_eq!((grant.granted_at, grant.expires_at, grant.ended_at), (t0(), t0() + hours(2), None));
    assert_eq!((grant.integration.as_str(), grant.requested_by.as_str()), ("corp", ADMIN));
    assert!(!grant.preexisting_membership);
    assert!(uuid::Uuid::parse_str(&grant.id).is_ok());
    assert!(w.alice_member());
    let name = grant.schedule_name.clone().expect("schedule");
    assert_eq!(w.scheduler.schedules.lock().unwrap()[&name].expires_at, t0() + hours(2));
    assert_eq!(w.store.grant(&grant.id).unwrap(), grant);
    assert_eq!(w.actions(&grant.id), vec![AuditAction::Created, AuditAction::Activated]);
    assert_eq!(w.bus.types_for(&grant.id), vec!["Grant Created"]);
    w.assert_consistent();
    // Found by id, email, username; group by id.
    for user in ["u1", "Alice", "ALICE@corp.com"] {
        let mut req = w.request(user, "1h");
        req.group = "g1".into();
        let again = request_grant(&w.ctx(), req).await.unwrap().grant;
        assert_eq!(again.user.id, "u1");
    }
}

#[tokio::test]
async fn every_state_change_is_audited_and_published() {
    // Invariant 4. Mutation caught: dropping any audit record or event of a transition.
    let w = World::new(&[]);
    let revoked = w.grant("alice@corp.com", "2h").await;
    w.advance(Duration::minutes(10));
    let out = w.revoke(&revoked.id).await.unwrap();
    assert_eq!(out.grant.status, GrantStatus::Revoked);
    assert_eq!(out.grant.ended_at, Some(t0() + Duration::minutes(10)));
    assert_eq!(
        w.actions(&revoked.id),
        vec![AuditAction::Created, AuditAction::Activated, AuditAction::Revoked, AuditAction::MembershipRemoved]
    );
    assert_eq!(w.bus.types_for(&revoked.id), vec!["Grant Created", "Grant Revoked"]);
    let audit = w.store.audit_for(&revoked.id).await.unwrap();
    assert_eq!(audit[0].actor, ADMIN);
    assert_eq!(audit[0].reason.as_deref(), Some("incident 4711"));
    assert_eq!(audit[2].actor, REVOKER);
    assert!(audit.iter().all(|r| r.user_id == "u1" && r.group_id == "g1" && r.integration == "corp"));
    let revoked_event = w.bus.published().into_iter().last().unwrap();
    assert_eq!(revoked_event.detail["actor"], REVOKER);
    assert_eq!(revoked_event.detail["membership"], "removed");
    assert_eq!(revoked_event.detail["grant"]["status"], "revoked");

    let expired = w.grant("alice@corp.com", "1h").await;
    w.advance(hours(1));
    w.sweep().await;
    assert_eq!(
        w.actions(&expired.id),
        vec![AuditAction::Created, AuditAction::Activated, AuditAction::Expired, AuditAction::MembershipRemoved]
    );
    assert_eq!(w.bus.types_for(&expired.id), vec!["Grant Created", "Grant Expired"]);
    assert_eq!(w.store.audit_for(&expired.id).await.unwrap()[2].actor, ACTOR_SWEEP);

    *w.jc.add_fault.lock().unwrap() =
        Some(Fault { error: DirectoryError::Invalid { status: 400, message: "no".into() }, applied: false });
    request_grant(&w.ctx(), w.request("bob@corp.com", "1h")).await.unwrap_err();
    let failed = w.store.grants().into_iter().find(|g| g.user.id == "u2").unwrap();
    assert_eq!(w.actions(&failed.id), vec![AuditAction::Created, AuditAction::Failed]);
    assert_eq!(w.bus.types_for(&failed.id), vec!["Grant Failed"]);

    // Queryable per time range, oldest first; kept after the grants ended.
    let page = w.store.audit_between(t0(), t0() + hours(1), 100, None).await.unwrap();
    assert_eq!(page.records.len(), 6, "{:#?}", page.records);
    assert!(page.records.windows(2).all(|p| p[0].at <= p[1].at));
    assert_eq!(w.store.audit_between(t0(), t0() + hours(3), 100, None).await.unwrap().records.len(), 10);
    w.assert_consistent();
}

#[tokio::test]
async fn an_event_bus_failure_does_not_fail_the_grant_or_its_audit() {
    let w = World::new(&[]);
    w.bus.fail.store(true, Ordering::SeqCst);
    let grant = w.grant("alice@corp.com", "2h").await;
    assert_eq!(grant.status, GrantStatus::Active);
    assert_eq!(w.actions(&grant.id), vec![AuditAction::Created, AuditAction::Activated]);
    assert_eq!(w.revoke(&grant.id).await.unwrap().grant.status, GrantStatus::Revoked);
    assert!(!w.alice_member());
}

// ---------------------------------------------------------------------------------------------
// Invariant 1: an expired grant's membership is removed, by its schedule or by the sweep

#[tokio::test]
async fn the_schedule_expires_the_grant_and_removes_the_membership() {
    // Mutation caught: not removing the membership on expiry.
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "2h").await;
    w.advance(hours(2));
    let due = w.scheduler.due(w.clock.now());
    assert_eq!(due, vec![grant.id.clone()]);
    let out = w.expire(&due[0]).await.unwrap();
    assert!(out.changed);
    assert_eq!((out.grant.status, out.membership), (GrantStatus::Expired, Some(MembershipEnd::Removed)));
    assert_eq!(out.grant.ended_at, Some(t0() + hours(2)));
    assert!(!w.alice_member());
    assert!(w.store.indexed().is_empty() && w.store.leases().is_empty());
    // An expiry needs no schedule deletion: the one-time schedule deletes itself.
    assert!(w.scheduler.deleted.lock().unwrap().is_empty());
    w.assert_consistent();
}

#[tokio::test]
async fn the_sweep_ends_a_grant_whose_schedule_was_never_created() {
    // Mutations caught: a schedule failure failing the grant; a sweep that does not settle due
    // grants; a `due` that misses grants without a schedule.
    let w = World::new(&[]);
    w.scheduler.fail_create.store(true, Ordering::SeqCst);
    let grant = w.grant("alice@corp.com", "90m").await;
    assert_eq!((grant.status, grant.schedule_name.as_deref()), (GrantStatus::Active, None));
    assert_eq!(w.actions(&grant.id), vec![AuditAction::Created, AuditAction::Activated, AuditAction::ScheduleFailed]);

    w.advance(Duration::minutes(89));
    assert_eq!(w.sweep().await.examined, 0, "not due yet");
    assert!(w.alice_member());

    w.advance(Duration::minutes(1));
    let report = w.sweep().await;
    assert_eq!((report.examined, report.ended, report.failed), (1, 1, 0));
    assert_eq!(w.status(&grant.id), GrantStatus::Expired);
    assert!(!w.alice_member());
    assert_eq!(w.sweep().await.examined, 0, "settled grants leave the index");
}

#[tokio::test]
async fn the_sweep_ends_a_grant_whose_schedule_never_fired_and_the_late_schedule_changes_nothing() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    w.advance(hours(3));
    assert_eq!(w.sweep().await.ended, 1);
    assert!(!w.alice_member());
    // The schedule fires at last: nothing more happens.
    let adds_removes = w.jc.member_calls();
    let audit = w.store.audit().len();
    let out = w.expire(&grant.id).await.unwrap();
    assert!(!out.changed);
    assert_eq!(out.grant.status, GrantStatus::Expired);
    assert_eq!((w.jc.member_calls(), w.store.audit().len()), (adds_removes, audit));
}

#[tokio::test]
async fn an_early_expiry_is_refused_and_the_grant_still_ends_on_time() {
    // Mutation caught: honouring an expiry before `expires_at` (ends access early).
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "2h").await;
    w.advance(hours(1));
    let err = w.expire(&grant.id).await.unwrap_err();
    assert!(matches!(err, RevokeError::NotDue { .. }), "{err}");
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
    assert!(w.alice_member());
    // Within the tolerance for clock skew, it is honoured.
    w.advance(hours(1) - Duration::seconds(2));
    assert_eq!(w.expire(&grant.id).await.unwrap().grant.status, GrantStatus::Expired);
    assert!(!w.alice_member());
}

#[tokio::test]
async fn the_sweep_pages_through_many_due_grants() {
    let w = World::with_policy(&[], |p| p.sweep_page = 3);
    let mut ids = vec![];
    for i in 10..20 {
        ids.push(w.grant(&format!("user{i}@corp.com"), "1h").await.id);
    }
    w.advance(hours(1));
    let report = w.sweep().await;
    assert_eq!((report.examined, report.ended), (10, 10));
    assert!(ids.iter().all(|id| w.status(id) == GrantStatus::Expired));
    assert!(w.jc.members.lock().unwrap().get("g1").is_none_or(|m| m.is_empty()));
}

// ---------------------------------------------------------------------------------------------
// Invariant 2: a membership that existed before the grant is never removed by it

#[tokio::test]
async fn a_standing_membership_survives_the_grants_expiry_and_revocation() {
    // Mutations caught: ignoring the lease's `preexisting` when ending; taking JumpCloud's 409 as
    // not pre-existing.
    let w = World::new(&[("g1", "u1")]);
    let grant = w.grant("alice@corp.com", "1h").await;
    assert!(grant.preexisting_membership);
    assert!(w.store.leases()[&alice_g1()].preexisting);
    w.advance(hours(1));
    let out = w.expire(&grant.id).await.unwrap();
    assert_eq!((out.grant.status, out.membership), (GrantStatus::Expired, Some(MembershipEnd::KeptPreexisting)));
    assert!(w.alice_member());
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 0);
    assert_eq!(w.actions(&grant.id).last(), Some(&AuditAction::MembershipKept));

    let again = w.grant("alice@corp.com", "1h").await;
    assert!(again.preexisting_membership);
    assert_eq!(w.revoke(&again.id).await.unwrap().membership, Some(MembershipEnd::KeptPreexisting));
    assert!(w.alice_member());
    w.advance(hours(2));
    w.sweep().await;
    assert!(w.alice_member());
    w.assert_consistent();
}

#[tokio::test]
async fn overlapping_grants_on_a_standing_membership_never_remove_it() {
    let w = World::new(&[("g1", "u1")]);
    let first = w.grant("alice@corp.com", "1h").await;
    let second = w.grant("alice@corp.com", "2h").await;
    assert!(first.preexisting_membership && second.preexisting_membership);
    w.advance(hours(1));
    w.sweep().await;
    assert!(w.alice_member());
    w.advance(hours(1));
    w.sweep().await;
    assert!(w.alice_member());
    assert_eq!((w.status(&first.id), w.status(&second.id)), (GrantStatus::Expired, GrantStatus::Expired));
    assert!(w.store.leases().is_empty());
}

#[tokio::test]
async fn an_ambiguous_409_counts_as_standing_only_if_the_synced_directory_held_it() {
    // Mutation caught: taking an ambiguous 409 (possibly our own timed-out add) as pre-existing
    // without asking the synced directory, or ignoring the directory's answer.
    // Standing member, known to the last sync before the grant: kept.
    let w = World::new(&[("g1", "u1")]);
    w.jc.ambiguous_409.store(true, Ordering::SeqCst);
    w.oracle.synced(t0() - Duration::minutes(5), &[alice_g1()]);
    let grant = w.grant("alice@corp.com", "1h").await;
    assert!(grant.preexisting_membership);
    w.advance(hours(1));
    w.sweep().await;
    assert!(w.alice_member());

    // Not a member at the last sync: the 409 answered our own earlier attempt: removed at expiry.
    let w = World::new(&[("g1", "u1")]);
    w.jc.ambiguous_409.store(true, Ordering::SeqCst);
    w.oracle.synced(t0() - Duration::minutes(5), &[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    assert!(!grant.preexisting_membership);
    w.advance(hours(1));
    w.sweep().await;
    assert!(!w.alice_member());

    // A sync that finished after the add began proves nothing: not pre-existing.
    let w = World::new(&[("g1", "u1")]);
    w.jc.ambiguous_409.store(true, Ordering::SeqCst);
    w.oracle.synced(t0() + Duration::seconds(1), &[alice_g1()]);
    assert!(!w.grant("alice@corp.com", "1h").await.preexisting_membership);
}

#[tokio::test]
async fn a_standing_membership_removed_outside_the_product_is_not_restored_for_good() {
    // The first grant found a standing membership; an admin then removed it; a second grant adds
    // it again. That membership is the grants' now: it ends with the last of them.
    let w = World::new(&[("g1", "u1")]);
    let first = w.grant("alice@corp.com", "1h").await;
    assert!(first.preexisting_membership);
    w.jc.unset_member("g1", "u1");
    let second = w.grant("alice@corp.com", "2h").await;
    assert!(!second.preexisting_membership);
    w.advance(hours(1));
    w.sweep().await;
    assert!(w.alice_member(), "still held by the second grant");
    w.advance(hours(1));
    w.sweep().await;
    assert!(!w.alice_member());
}

// ---------------------------------------------------------------------------------------------
// Invariant 3: overlapping grants keep the membership until the last ends

#[tokio::test]
async fn overlapping_grants_keep_the_membership_until_the_last_ends() {
    // Mutation caught: removing the membership without checking the lease's other holders.
    let w = World::new(&[]);
    let short = w.grant("alice@corp.com", "1h").await;
    let long = w.grant("alice@corp.com", "3h").await;
    assert!(!short.preexisting_membership && !long.preexisting_membership, "the 409 was the first grant's");
    assert_eq!(w.store.leases()[&alice_g1()].holders.len(), 2);

    w.advance(hours(1));
    let out = w.expire(&short.id).await.unwrap();
    assert_eq!(out.membership, Some(MembershipEnd::KeptForOtherGrants));
    assert!(w.alice_member());
    assert_eq!(w.actions(&short.id).last(), Some(&AuditAction::MembershipKept));

    w.advance(hours(2));
    assert_eq!(w.expire(&long.id).await.unwrap().membership, Some(MembershipEnd::Removed));
    assert!(!w.alice_member());
    assert!(w.store.leases().is_empty());
}

#[tokio::test]
async fn revoking_the_later_grant_first_keeps_the_membership_for_the_earlier() {
    let w = World::new(&[]);
    let first = w.grant("alice@corp.com", "2h").await;
    let second = w.grant("alice@corp.com", "1h").await;
    assert_eq!(w.revoke(&second.id).await.unwrap().membership, Some(MembershipEnd::KeptForOtherGrants));
    assert!(w.alice_member());
    assert_eq!(w.revoke(&first.id).await.unwrap().membership, Some(MembershipEnd::Removed));
    assert!(!w.alice_member());
    // Another user's grant on the same group is another lease.
    let bob = w.grant("bob@corp.com", "1h").await;
    let alice = w.grant("alice@corp.com", "1h").await;
    w.revoke(&bob.id).await.unwrap();
    assert!(w.alice_member() && !w.jc.is_member("g1", "u2"));
    w.revoke(&alice.id).await.unwrap();
    w.assert_consistent();
}

// ---------------------------------------------------------------------------------------------
// Invariant 5: revocation is idempotent

#[tokio::test]
async fn revoking_twice_is_not_an_error_and_changes_nothing_more() {
    // Mutation caught: settling a grant that is no longer open (a second removal, a second audit
    // record or event, or a conflict error).
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "2h").await;
    let first = w.revoke(&grant.id).await.unwrap();
    assert!(first.changed);
    let (audit, events, removes) =
        (w.store.audit().len(), w.bus.published().len(), w.jc.removes.load(Ordering::SeqCst));
    // The user is made a member again outside the product: a repeated revoke must not touch it.
    w.jc.set_member("g1", "u1");
    for _ in 0..3 {
        let again = w.revoke(&grant.id).await.unwrap();
        assert!(!again.changed);
        assert_eq!(again.grant, first.grant);
        let expired = w.expire(&grant.id).await.unwrap();
        assert_eq!(expired.grant.status, GrantStatus::Revoked);
    }
    w.advance(hours(3));
    assert_eq!(w.sweep().await.examined, 0);
    assert_eq!((w.store.audit().len(), w.bus.published().len()), (audit, events));
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), removes);
    assert!(w.alice_member());
    assert!(matches!(w.revoke("no-such-grant").await, Err(RevokeError::NotFound(_))));
}

#[tokio::test]
async fn a_membership_already_removed_in_jumpcloud_counts_as_removed() {
    // Mutation caught: treating JumpCloud's 404 on remove as a failure.
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "2h").await;
    w.jc.unset_member("g1", "u1");
    let out = w.revoke(&grant.id).await.unwrap();
    assert_eq!((out.grant.status, out.membership), (GrantStatus::Revoked, Some(MembershipEnd::AlreadyRemoved)));
    assert_eq!(w.actions(&grant.id).last(), Some(&AuditAction::MembershipRemoved));
    assert_eq!(w.bus.types_for(&grant.id), vec!["Grant Created", "Grant Revoked"]);
    // An early revocation deletes the schedule, which would otherwise fire for nothing.
    assert_eq!(*w.scheduler.deleted.lock().unwrap(), vec![grant.schedule_name.unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedule_sweep_and_delete_delivered_together_settle_the_grant_once() {
    // Mutations caught: no lease lock around the removal, no re-check of the grant under the lock.
    for round in 0..150 {
        let w = Arc::new(World::new(&[]));
        scenarios::deliveries_together_settle_once(w.0.clone(), round).await;
        w.assert_consistent();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grant_revoke_and_sweep_on_one_membership_end_consistent() {
    // Mutations caught: the lock, the last-holder check, the re-read under the lock. Run many
    // times, with and without a standing membership.
    for round in 0..200 {
        let standing = round % 4 == 3;
        let members: &[(&str, &str)] = if standing { &[("g1", "u1")] } else { &[] };
        let w = World::new(members);
        let new_grant = scenarios::grant_during_revocations_keeps_the_membership(w.0.clone(), standing, round).await;
        let lease = &w.store.leases()[&alice_g1()];
        assert_eq!(lease.holders.iter().collect::<Vec<_>>(), vec![&new_grant.id], "round {round}");
        assert_eq!(lease.preexisting, standing, "round {round}");

        // And the new grant's end leaves the membership as it was before both.
        w.revoke(&new_grant.id).await.unwrap();
        assert_eq!(w.alice_member(), standing, "round {round}");
        w.assert_consistent();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_overlapping_grants_and_revocations_end_with_the_last() {
    for round in 0..50 {
        let w = World::new(&[]);
        scenarios::overlapping_grants_end_with_the_last(w.0.clone(), round).await;
        w.assert_consistent();
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error kind, and nothing changes

#[tokio::test]
async fn bad_requests_are_refused_with_their_kind_and_change_nothing() {
    type Edit = fn(&mut GrantRequest);
    let cases: Vec<(&str, Edit, u16)> = vec![
        ("empty reason", |r| r.reason = "   ".into(), 422),
        ("reason too long", |r| r.reason = "x".repeat(1001), 422),
        ("duration below the minimum", |r| r.duration = "30s".parse().unwrap(), 422),
        ("duration above the maximum", |r| r.duration = "13h".parse().unwrap(), 422),
        ("unknown integration", |r| r.integration = Some("other".into()), 404),
        ("unknown user", |r| r.user = "nobody@corp.com".into(), 404),
        ("unknown group", |r| r.group = "prod-nothing".into(), 404),
        ("suspended user", |r| r.user = "sam@corp.com".into(), 422),
        ("dynamic group", |r| r.group = "prod-auto".into(), 422),
        ("out-of-scope group", |r| r.group = "finance".into(), 422),
        ("missing caller", |r| r.requested_by = "".into(), 422),
    ];
    for (what, edit, status) in cases {
        for standing in [false, true] {
            let members: &[(&str, &str)] = if standing { &[("g1", "u1")] } else { &[] };
            let w = World::new(members);
            let mut request = w.request("alice@corp.com", "2h");
            request.idempotency_key = Some(IdempotencyKey::parse(&format!("key-{what}").replace(' ', "-")).unwrap());
            edit(&mut request);
            let err = request_grant(&w.ctx(), request).await.unwrap_err();
            assert_eq!(status_of(&err), status, "{what}: {err}");
            w.assert_untouched(standing, what);
        }
    }
}

#[tokio::test]
async fn the_error_kinds_name_what_was_wrong() {
    let w = World::new(&[]);
    let err = |edit: fn(&mut GrantRequest)| {
        let mut r = w.request("alice@corp.com", "2h");
        edit(&mut r);
        let ctx = w.ctx();
        async move { request_grant(&ctx, r).await.unwrap_err() }
    };
    assert!(matches!(err(|r| r.user = "nobody".into()).await, GrantError::UserNotFound(u) if u == "nobody"));
    assert!(matches!(err(|r| r.group = "nope".into()).await, GrantError::GroupNotFound(_)));
    assert!(matches!(err(|r| r.user = "u3".into()).await, GrantError::UserSuspended(_)));
    assert!(matches!(err(|r| r.group = "g2".into()).await, GrantError::GroupNotRequestable { .. }));
    assert!(matches!(err(|r| r.duration = "13h".parse().unwrap()).await, GrantError::DurationOutOfRange { .. }));
    assert!(matches!(err(|r| r.integration = Some("x".into())).await, GrantError::UnknownIntegration(_)));
    // Several integrations: one must be named; a named one works.
    w.integrations.add("other", Arc::new(FakeDirectory::default()));
    let e = err(|_| {}).await;
    assert!(matches!(&e, GrantError::IntegrationRequired(names) if names.len() == 2), "{e}");
    assert!(e.to_string().contains("integration is required"), "{e}");
    let mut r = w.request("alice@corp.com", "2h");
    r.integration = Some("corp".into());
    assert_eq!(request_grant(&w.ctx(), r).await.unwrap().grant.integration, "corp");
    w.integrations.remove("corp");
    w.integrations.remove("other");
    assert!(matches!(err(|_| {}).await, GrantError::NoIntegration));
}

#[tokio::test]
async fn a_busy_membership_answers_conflict_and_records_nothing() {
    let w = World::with_policy(&[], |p| p.lock_attempts = 2);
    w.store.lock_lease(&alice_g1(), "someone-else", t0(), Duration::minutes(3)).await.unwrap();
    let err = request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await.unwrap_err();
    assert!(matches!(err, GrantError::Busy), "{err}");
    assert_eq!(status_of(&err), 409);
    assert!(w.store.grants().is_empty() && w.store.audit().is_empty());
    assert_eq!(w.jc.member_calls(), 0);
    // A lock whose owner died lapses.
    w.advance(Duration::minutes(3));
    assert_eq!(w.grant("alice@corp.com", "2h").await.status, GrantStatus::Active);
}

// ---------------------------------------------------------------------------------------------
// JumpCloud failing

#[tokio::test]
async fn jumpcloud_down_during_grant_is_a_502_with_nothing_active_and_no_membership() {
    // Lookups failing: nothing is written at all.
    let w = World::new(&[]);
    *w.jc.fail_with.lock().unwrap() = Some(transient());
    let err = request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await.unwrap_err();
    assert_eq!(status_of(&err), 502, "{err}");
    w.assert_untouched(false, "lookups failing");

    // The add failing: the grant is failed, nothing is active, no membership.
    let w = World::new(&[]);
    *w.jc.add_fault.lock().unwrap() = Some(Fault { error: transient(), applied: false });
    let err = request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await.unwrap_err();
    assert!(matches!(err, GrantError::Directory(_)) && status_of(&err) == 502, "{err}");
    let grants = w.store.grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].status, GrantStatus::Failed);
    assert!(grants[0].ended_at.is_some());
    assert!(!w.alice_member());
    assert!(w.scheduler.schedules.lock().unwrap().is_empty());
    let active = GrantFilter { status: Some(GrantStatus::Active), ..GrantFilter::default() };
    assert!(w.store.list(&active, 10, None).await.unwrap().grants.is_empty());
    // The add may have been applied: the sweep settles the failed grant's membership.
    *w.jc.add_fault.lock().unwrap() = None;
    let report = w.sweep().await;
    assert_eq!((report.cleaned_up, report.failed), (1, 0));
    assert!(!w.alice_member());
    assert!(w.store.leases().is_empty() && w.store.indexed().is_empty());
    assert_eq!(w.status(&grants[0].id), GrantStatus::Failed);
    w.assert_consistent();
}

#[tokio::test]
async fn a_timed_out_add_that_jumpcloud_applied_is_removed_by_the_sweep() {
    // Mutation caught: taking a transient add failure as not applied (the stray membership would
    // stay forever with no grant to end it).
    let w = World::new(&[]);
    *w.jc.add_fault.lock().unwrap() = Some(Fault { error: transient(), applied: true });
    let err = request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await.unwrap_err();
    assert_eq!(status_of(&err), 502);
    assert!(w.alice_member(), "JumpCloud applied it");
    let failed = w.store.grants().remove(0);
    assert_eq!(failed.status, GrantStatus::Failed);
    // JumpCloud still down at the first sweep: retried by the next.
    *w.jc.remove_fault.lock().unwrap() = Some(Fault { error: transient(), applied: false });
    assert_eq!(w.sweep().await.failed, 1);
    assert!(w.alice_member());
    *w.jc.remove_fault.lock().unwrap() = None;
    w.advance(Duration::minutes(1));
    assert_eq!(w.sweep().await.cleaned_up, 1);
    assert!(!w.alice_member());
    assert_eq!(w.actions(&failed.id).last(), Some(&AuditAction::MembershipRemoved));
    w.assert_consistent();
}

#[tokio::test]
async fn a_failed_add_on_a_standing_membership_leaves_it() {
    // Invariant 2 on the failure path: the synced directory shows the standing membership.
    let w = World::new(&[("g1", "u1")]);
    w.oracle.synced(t0() - Duration::minutes(10), &[alice_g1()]);
    *w.jc.add_fault.lock().unwrap() = Some(Fault { error: transient(), applied: false });
    request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await.unwrap_err();
    *w.jc.add_fault.lock().unwrap() = None;
    w.sweep().await;
    assert!(w.alice_member());
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_refused_add_ends_the_grant_failed_at_once() {
    let w = World::new(&[]);
    *w.jc.add_fault.lock().unwrap() =
        Some(Fault { error: DirectoryError::Invalid { status: 400, message: "bad".into() }, applied: false });
    let err = request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await.unwrap_err();
    assert_eq!(status_of(&err), 502);
    assert_eq!(w.store.grants()[0].status, GrantStatus::Failed);
    assert!(w.store.indexed().is_empty() && w.store.leases().is_empty(), "nothing left to clean up");
    w.assert_consistent();
}

#[tokio::test]
async fn a_refused_add_beside_an_active_grant_leaves_that_grant_its_membership() {
    let w = World::new(&[]);
    let active = w.grant("alice@corp.com", "2h").await;
    *w.jc.add_fault.lock().unwrap() =
        Some(Fault { error: DirectoryError::Invalid { status: 400, message: "bad".into() }, applied: false });
    request_grant(&w.ctx(), w.request("alice@corp.com", "1h")).await.unwrap_err();
    let failed = w.store.grants().into_iter().find(|g| g.id != active.id).unwrap();
    assert_eq!(failed.status, GrantStatus::Failed);
    let lease = &w.store.leases()[&alice_g1()];
    assert_eq!(lease.holders.iter().collect::<Vec<_>>(), vec![&active.id]);
    assert!(w.alice_member());
    w.assert_consistent();
}

#[tokio::test]
async fn jumpcloud_down_during_revoke_keeps_the_grant_and_the_sweep_finishes_it() {
    // Mutation caught: ending the grant although the membership could not be removed.
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "2h").await;
    *w.jc.remove_fault.lock().unwrap() = Some(Fault { error: transient(), applied: false });
    w.advance(Duration::minutes(5));
    let err = w.revoke(&grant.id).await.unwrap_err();
    assert!(matches!(err, RevokeError::Directory(_)) && status_of(&err) == 502, "{err}");
    let stored = w.store.grant(&grant.id).unwrap();
    assert_eq!(stored.status, GrantStatus::Active);
    assert_eq!(stored.revocation_requested.as_ref().map(|r| r.by.as_str()), Some(REVOKER));
    assert!(w.alice_member());
    assert_eq!(w.actions(&grant.id).last(), Some(&AuditAction::RevocationFailed));
    assert_eq!(w.bus.types_for(&grant.id), vec!["Grant Created", "Revocation Failed"]);
    assert!(w.store.leases()[&alice_g1()].lock.is_none(), "the lock is released");

    // The sweep retries now, not at expiry; while JumpCloud is down it keeps failing.
    w.advance(Duration::minutes(1));
    let report = w.sweep().await;
    assert_eq!((report.examined, report.failed), (1, 1));
    assert_eq!(report.failures[0].grant_id, grant.id);
    *w.jc.remove_fault.lock().unwrap() = None;
    w.advance(Duration::minutes(1));
    let report = w.sweep().await;
    assert_eq!(report.ended, 1);
    let ended = w.store.grant(&grant.id).unwrap();
    assert_eq!(ended.status, GrantStatus::Revoked, "finished as the revocation it was");
    assert!(!w.alice_member());
    assert_eq!(
        w.bus.types_for(&grant.id),
        vec!["Grant Created", "Revocation Failed", "Revocation Failed", "Grant Revoked"]
    );
    w.assert_consistent();
}

#[tokio::test]
async fn jumpcloud_down_at_expiry_leaves_the_grant_overdue_until_the_sweep_succeeds() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    *w.jc.remove_fault.lock().unwrap() = Some(Fault { error: transient(), applied: false });
    w.advance(hours(1));
    assert!(w.expire(&grant.id).await.is_err());
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
    assert!(w.store.grant(&grant.id).unwrap().revocation_requested.is_none());
    w.advance(Duration::minutes(1));
    assert_eq!(w.sweep().await.failed, 1);
    *w.jc.remove_fault.lock().unwrap() = None;
    w.advance(Duration::minutes(1));
    assert_eq!(w.sweep().await.ended, 1);
    assert_eq!(w.status(&grant.id), GrantStatus::Expired);
    assert!(!w.alice_member());
}

#[tokio::test]
async fn a_grant_whose_integration_vanished_is_not_ended_silently() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    w.integrations.remove("corp");
    w.advance(hours(1));
    let report = w.sweep().await;
    assert_eq!(report.failed, 1);
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
    assert_eq!(w.bus.types_for(&grant.id).last(), Some(&"Revocation Failed"));
}

// ---------------------------------------------------------------------------------------------
// Crashes and store failures

#[tokio::test]
async fn a_grant_left_pending_by_a_crash_is_settled_at_its_expiry() {
    let w = World::new(&[]);
    w.store.fail("activate");
    let err = request_grant(&w.ctx(), w.request("alice@corp.com", "1h")).await.unwrap_err();
    assert_eq!(status_of(&err), 500, "{err}");
    w.store.heal();
    let pending = w.store.grants().remove(0);
    assert_eq!(pending.status, GrantStatus::Pending);
    assert!(w.alice_member());
    assert!(w.store.leases()[&alice_g1()].lock.is_none(), "the lock is released");
    // Another grant meanwhile shares the membership; the leftover does not end it early.
    let other = w.grant("alice@corp.com", "2h").await;
    w.advance(hours(1));
    let report = w.sweep().await;
    assert_eq!(report.ended, 1);
    assert_eq!(w.status(&pending.id), GrantStatus::Failed);
    assert!(w.alice_member());
    assert_eq!(w.bus.types_for(&pending.id), vec!["Grant Failed"]);
    w.advance(hours(1));
    w.sweep().await;
    assert_eq!(w.status(&other.id), GrantStatus::Expired);
    assert!(!w.alice_member());
    w.assert_consistent();
}

#[tokio::test]
async fn a_store_failure_while_ending_leaves_the_grant_for_the_next_delivery() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    w.advance(hours(1));
    w.store.fail("end");
    assert!(matches!(w.expire(&grant.id).await, Err(RevokeError::Store(_))));
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
    w.store.heal();
    let out = w.sweep().await;
    assert_eq!(out.ended, 1);
    assert_eq!(w.store.grant(&grant.id).unwrap().status, GrantStatus::Expired);
    assert!(!w.alice_member());
    // The retry found the membership gone already (404): still one consistent outcome.
    assert_eq!(w.actions(&grant.id).iter().filter(|a| **a == AuditAction::MembershipRemoved).count(), 1);
    w.assert_consistent();
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key

#[tokio::test]
async fn an_idempotent_replay_returns_the_same_grant_and_adds_nothing() {
    // Mutation caught: not consulting the idempotency record (a second grant would be made).
    let w = World::new(&[]);
    let mut request = w.request("alice@corp.com", "2h");
    request.idempotency_key = Some("7d1c0c8e".into());
    let first = request_grant(&w.ctx(), request.clone()).await.unwrap();
    assert!(!first.replayed);
    let (audit, events, calls) = (w.store.audit().len(), w.bus.published().len(), w.jc.member_calls());
    w.advance(Duration::minutes(1));
    for _ in 0..3 {
        let again = request_grant(&w.ctx(), request.clone()).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.grant, first.grant);
    }
    assert_eq!(w.store.grants().len(), 1);
    assert_eq!((w.store.audit().len(), w.bus.published().len(), w.jc.member_calls()), (audit, events, calls));
    assert_eq!(w.scheduler.schedules.lock().unwrap().len(), 1);

    // The same key for another request: refused. Another caller's key is another key.
    let mut different = request.clone();
    different.duration = "1h".parse().unwrap();
    let err = request_grant(&w.ctx(), different).await.unwrap_err();
    assert!(matches!(err, GrantError::IdempotencyMismatch) && status_of(&err) == 422, "{err}");
    let mut other_caller = request.clone();
    other_caller.requested_by = REVOKER.into();
    assert!(!request_grant(&w.ctx(), other_caller).await.unwrap().replayed);
    // After the record's lifetime, the key is new again.
    w.advance(hours(25));
    assert!(!request_grant(&w.ctx(), request).await.unwrap().replayed);
}

#[tokio::test]
async fn a_request_in_progress_under_the_same_key_is_a_conflict_and_a_failed_one_frees_its_key() {
    let w = World::new(&[]);
    let mut request = w.request("alice@corp.com", "2h");
    request.idempotency_key = Some("k1".into());
    let key = format!("{ADMIN}#k1");
    let claim = IdempotencyClaim {
        key: key.clone(),
        request_hash: "whatever".into(),
        now: t0(),
        expires_at: t0() + hours(24),
        in_progress_until: t0() + Duration::minutes(3),
    };
    // A different request is running under the key: mismatch; the same one: in progress.
    assert_eq!(w.store.begin_idempotent(&claim).await.unwrap(), IdempotencyState::New);
    assert!(matches!(request_grant(&w.ctx(), request.clone()).await, Err(GrantError::IdempotencyMismatch)));
    w.store.abandon_idempotent(&key).await.unwrap();

    *w.jc.add_fault.lock().unwrap() = Some(Fault { error: transient(), applied: false });
    let err = request_grant(&w.ctx(), request.clone()).await.unwrap_err();
    assert_eq!(status_of(&err), 502);
    assert_eq!(w.store.idempotency_records(), 0, "a failed request frees its key");
    *w.jc.add_fault.lock().unwrap() = None;

    let ctx = w.ctx();
    let (first, second) = futures::join!(request_grant(&ctx, request.clone()), request_grant(&ctx, request.clone()));
    let (ok, conflict) = match (first, second) {
        (Ok(g), Err(e)) | (Err(e), Ok(g)) => (g, e),
        (a, b) => panic!("expected one grant and one conflict: {a:?} {b:?}"),
    };
    assert!(matches!(conflict, GrantError::IdempotencyInProgress) && status_of(&conflict) == 409);
    let replay = request_grant(&w.ctx(), request).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.grant.id, ok.grant.id);
}

// ---------------------------------------------------------------------------------------------
// The in-memory store keeps DynamoDB's conditions

#[tokio::test]
async fn the_memory_store_refuses_writes_from_a_lapsed_lock() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    let key = alice_g1();
    let stale = crate::domain::model::LeaseHold { key: key.clone(), owner: "stale".into() };
    w.store.lock_lease(&key, "stale", t0(), Duration::seconds(1)).await.unwrap();
    // Someone else takes the lapsed lock.
    w.store.lock_lease(&key, "fresh", t0() + Duration::seconds(2), Duration::minutes(1)).await.unwrap();
    let ending =
        crate::ports::Ending { grant: grant.clone(), status: GrantStatus::Revoked, ended_at: t0(), last_holder: true };
    assert!(matches!(w.store.end(&ending, &stale, &[]).await, Err(crate::ports::GrantStoreError::Conflict(_))));
    assert!(matches!(
        w.store.lock_lease(&key, "third", t0() + Duration::seconds(3), Duration::minutes(1)).await,
        Err(crate::ports::GrantStoreError::LeaseBusy { .. })
    ));
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
}

#[tokio::test]
async fn grants_are_listed_newest_first_with_filters_and_pages() {
    let w = World::new(&[]);
    let mut ids = vec![];
    for user in ["alice@corp.com", "bob@corp.com", "alice@corp.com"] {
        ids.push(w.grant(user, "1h").await.id);
        w.advance(Duration::minutes(1));
    }
    w.revoke(&ids[0]).await.unwrap();
    let all = w.store.list(&GrantFilter::default(), 2, None).await.unwrap();
    assert_eq!(all.grants.iter().map(|g| &g.id).collect::<Vec<_>>(), vec![&ids[2], &ids[1]]);
    let rest = w.store.list(&GrantFilter::default(), 2, all.next.as_deref()).await.unwrap();
    assert_eq!((rest.grants.len(), rest.next), (1, None));
    let filter =
        GrantFilter { status: Some(GrantStatus::Active), user_id: Some("u1".into()), ..GrantFilter::default() };
    let alice_active = w.store.list(&filter, 10, None).await.unwrap();
    assert_eq!(alice_active.grants.iter().map(|g| &g.id).collect::<Vec<_>>(), vec![&ids[2]]);
}
