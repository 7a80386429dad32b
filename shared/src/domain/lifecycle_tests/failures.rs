//! JumpCloud failing, crashes and store failures: nothing is left active that should not be, and
//! whatever a failure left behind is settled later.

use super::*;

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

#[tokio::test]
async fn a_grant_is_never_revoked_through_another_secret_claiming_its_integration() {
    // Issue 10 point 1: the integration's name now stands for another secret (another
    // organization's key). Removing through it would "succeed" (404, not a member) elsewhere
    // while the real membership stays: refused, reported, the grant stays due.
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    let source = grant.source.clone().expect("a grant records its source");
    assert!(source.secret_arn.ends_with(":secret:corp"), "{source:?}");
    let (real, directory) = w.integrations.integrations.lock().unwrap()[0].clone();
    let mut shadow = real.clone();
    shadow.secret_id = "arn:aws:secretsmanager:us-east-1:000000000000:secret:corp-shadow".into();
    w.integrations.remove("corp");
    w.integrations.integrations.lock().unwrap().push((shadow.clone(), directory.clone()));
    w.advance(hours(1));
    let report = w.sweep().await;
    assert_eq!((report.failed, report.ended), (1, 0));
    assert!(report.failures[0].error.contains("another secret"), "{:?}", report.failures);
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
    assert!(w.alice_member(), "nothing was removed through the shadow");
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 0);
    assert_eq!(w.actions(&grant.id).last(), Some(&AuditAction::RevocationFailed));
    let err = w.revoke(&grant.id).await.unwrap_err();
    assert!(matches!(err, RevokeError::IntegrationChanged(_)) && status_of(&err) == 502, "{err}");
    assert!(!err.to_string().contains("arn:"), "no ARN in what a caller is answered: {err}");

    // The same secret naming another organization is refused too.
    let mut moved = real.clone();
    moved.credentials.org_id = Some("another-org".into());
    w.integrations.remove("corp");
    w.integrations.integrations.lock().unwrap().push((moved, directory.clone()));
    w.advance(Duration::minutes(1));
    assert_eq!(w.sweep().await.failed, 1);

    // The real secret back: the sweep ends it through it.
    w.integrations.remove("corp");
    w.integrations.integrations.lock().unwrap().push((real, directory));
    w.advance(Duration::minutes(1));
    assert_eq!(w.sweep().await.ended, 1);
    assert!(!w.alice_member());
    w.assert_consistent();
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
async fn a_grant_left_pending_after_its_add_is_removed_at_expiry_though_a_later_sync_saw_the_membership() {
    // The soak's case (DynamoDB throttled the activation write after JumpCloud added the member):
    // a sync after the add shows the membership, but only a sync from before the grant may call
    // it pre-existing. At expiry the membership the grant added goes.
    let w = World::new(&[]);
    w.store.fail("activate");
    request_grant(&w.ctx(), w.request("alice@corp.com", "1h")).await.unwrap_err();
    w.store.heal();
    let pending = w.store.grants().remove(0);
    assert_eq!(pending.status, GrantStatus::Pending);
    assert!(w.alice_member());
    w.advance(Duration::minutes(5));
    w.oracle.synced(w.clock.now(), &[alice_g1()]);
    w.advance(hours(1));
    assert_eq!(w.sweep().await.ended, 1);
    assert_eq!(w.status(&pending.id), GrantStatus::Failed);
    assert!(!w.alice_member(), "the grant's own membership did not outlive it");
    assert!(w.actions(&pending.id).contains(&AuditAction::MembershipRemoved));
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
