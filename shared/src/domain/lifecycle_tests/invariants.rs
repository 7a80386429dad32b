//! The grant lifecycle's invariants 1 to 5 over the in-memory doubles: the happy path, audit and
//! events, expiry by schedule and sweep, standing access, overlapping grants, idempotent revocation.

use super::*;

// ---------------------------------------------------------------------------------------------
// The happy path, audit and events (invariant 4)

#[tokio::test]
async fn a_grant_adds_the_member_records_it_and_schedules_its_expiry() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "2h").await;
    assert_eq!(grant.status, GrantStatus::Active);
    assert_eq!((grant.user.id.as_str(), grant.user.email.as_str()), ("u1", "alice@corp.com"));
    assert_eq!((grant.group.id.as_str(), grant.group.name.as_str()), ("g1", "prod-db-admins"));
    assert_eq!((grant.granted_at, grant.expires_at, grant.ended_at), (Some(t0()), Some(t0() + hours(2)), None));
    assert_eq!((grant.integration.as_str(), grant.requested_by.as_str()), ("corp", ADMIN));
    assert!(!grant.preexisting_membership);
    assert!(uuid::Uuid::parse_str(&grant.id).is_ok());
    assert!(w.alice_member());
    let name = grant.schedule_name.clone().expect("schedule");
    assert_eq!(w.scheduler.schedules.lock().unwrap()[&name].expires_at, Some(t0() + hours(2)));
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
