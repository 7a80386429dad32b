//! Invariants 7 and 8 over the in-memory doubles: a non-admin's request against the policy, its
//! approvals, denial, cancellation and expiry. Each test names the rule it would catch broken.

use super::*;
use crate::testing::lifecycle::{person, REQUEST_POLICY as POLICY};
use crate::{
    domain::identity::Principal,
    domain::model::{ApprovalMode, EndReason, EventType},
    domain::request::{approve, deny, RequestError},
    domain::revoke::{revoke_grant, sweep},
};

async fn world_with(policy: Option<&str>) -> World {
    let w = World::new(&[]);
    w.sync_request_directory().await;
    if let Some(policy) = policy {
        w.policies.apply(policy, t0());
    }
    w
}

fn alice() -> Principal {
    person("u1", "alice@corp.com")
}
fn bob() -> Principal {
    person("u2", "bob@corp.com")
}
fn owner12() -> Principal {
    person("u12", "user12@corp.com")
}
fn owner13() -> Principal {
    person("u13", "user13@corp.com")
}

/// `caller` asks for `prod-db-admins` for themself.
fn ask(w: &World, caller: &Principal, duration: &str, reason: &str) -> GrantRequest {
    GrantRequest {
        user: None,
        reason: reason.into(),
        requested_by: caller.id.clone(),
        caller_users: caller.users.clone(),
        caller_admin: false,
        ..w.request("ignored", duration)
    }
}

fn events(w: &World, id: &str) -> Vec<EventType> {
    w.bus.published().iter().filter(|e| e.grant_id() == Some(id)).map(|e| e.detail_type).collect()
}

#[tokio::test]
async fn without_a_policy_only_admins_grant() {
    let w = world_with(None).await;
    let err = w.request_as(&alice(), "1h").await.unwrap_err();
    assert!(matches!(err, GrantError::NoPolicy), "{err}");
    assert_eq!(status_of(&err), 403);
    w.assert_untouched(false, "no policy");
    // The admin path is unchanged.
    let grant = w.grant("alice@corp.com", "1h").await;
    assert_eq!((grant.status, grant.approval), (GrantStatus::Active, ApprovalMode::Admin));
}

#[tokio::test]
async fn a_request_that_the_policy_refuses_changes_nothing() {
    let w = world_with(Some(POLICY)).await;
    // Ineligible: user12 is not in engineering.
    let err = w.request_as(&owner12(), "1h").await.unwrap_err();
    assert!(matches!(&err, GrantError::Refused(r) if r.is_forbidden()), "{err}");
    assert_eq!(status_of(&err), 403);
    // For someone else: alice names bob.
    let mut for_bob = ask(&w, &alice(), "1h", "INC-1 x");
    for_bob.user = Some("bob@corp.com".into());
    let err = request_grant(&w.ctx(), for_bob).await.unwrap_err();
    assert!(matches!(err, GrantError::ForSomeoneElse), "{err}");
    assert_eq!(status_of(&err), 403);
    // Naming herself is fine, in any form (checked below by the request going through).
    // Over the rule's maximum (2h), though within the product's (12h).
    let err = w.request_as(&alice(), "3h").await.unwrap_err();
    assert!(err.to_string().contains("over the maximum"), "{err}");
    assert_eq!(status_of(&err), 422);
    // No ticket in the reason.
    let err = request_grant(&w.ctx(), ask(&w, &alice(), "1h", "restore the replica")).await.unwrap_err();
    assert!(err.to_string().contains("ticket"), "{err}");
    assert_eq!(status_of(&err), 422);
    w.assert_untouched(false, "refused requests");
}

#[tokio::test]
async fn a_request_without_a_resolvable_approver_is_refused_never_auto_approved() {
    let only_manager = POLICY
        .replace("approvers: [manager, {group: db-owners}]", "approvers: [manager]")
        .replace("required: 2", "required: 1");
    let w = world_with(Some(&only_manager)).await;
    // user10's manager is suspended; user11 has none.
    for caller in [person("u10", "user10@corp.com"), person("u11", "user11@corp.com")] {
        let err = w.request_as(&caller, "1h").await.unwrap_err();
        assert!(matches!(err, GrantError::NoApprover { required: 1, found: 0, .. }), "{err}");
        assert_eq!(status_of(&err), 422);
    }
    w.assert_untouched(false, "no approver");
}

#[tokio::test]
async fn two_distinct_approvers_activate_the_request_and_its_clock_starts_then() {
    let w = world_with(Some(POLICY)).await;
    let request = w.request_as(&alice(), "2h").await.unwrap();
    assert_eq!(request.status, GrantStatus::PendingApproval);
    assert_eq!((request.granted_at, request.expires_at), (None, None));
    assert_eq!(request.approvals_required, 2);
    // The manager and the owners, but never alice herself, though she owns the databases.
    assert_eq!(request.approvers, ["bob@corp.com", "user12@corp.com", "user13@corp.com"]);
    assert_eq!(request.request_expires_at, Some(t0() + hours(4)));
    assert_eq!(request.policy.map(|p| (p.version, p.rule)), Some((1, 0)));
    assert!(!w.alice_member(), "invariant 8: a pending request adds nothing");
    assert_eq!(w.jc.member_calls(), 0);
    assert!(w.scheduler.schedules.lock().unwrap().contains_key(&format!("jit-request-{}", request.id)));
    let ctx = w.ctx();

    w.clock.advance(Duration::minutes(10));
    let once = approve(&ctx, &request.id, &bob(), Some("ok")).await.unwrap();
    assert_eq!((once.status, once.approvals.len()), (GrantStatus::PendingApproval, 1));
    // The same approver twice counts once.
    let again = approve(&ctx, &request.id, &bob(), None).await.unwrap();
    assert_eq!((again.status, again.approvals.len()), (GrantStatus::PendingApproval, 1));
    assert!(!w.alice_member());

    w.clock.advance(Duration::minutes(5));
    let active = approve(&ctx, &request.id, &owner12(), None).await.unwrap();
    assert_eq!(active.status, GrantStatus::Active);
    assert!(w.alice_member());
    let activated = t0() + Duration::minutes(15);
    assert_eq!(active.granted_at, Some(activated), "the clock starts at the last approval");
    assert_eq!(active.expires_at, Some(activated + hours(2)));
    assert_eq!(
        w.scheduler.schedules.lock().unwrap()[&format!("jit-expire-{}", request.id)].expires_at,
        active.expires_at
    );
    assert_eq!(active.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(), ["bob@corp.com", "user12@corp.com"]);
    // Decided: a third approval is too late.
    let late = approve(&ctx, &request.id, &owner13(), None).await.unwrap_err();
    assert!(matches!(late, RequestError::NotPending(GrantStatus::Active)), "{late}");
    assert_eq!(status_of(&late), 409);
    assert_eq!(
        events(&w, &request.id),
        [EventType::ApprovalRequested, EventType::RequestApproved, EventType::GrantCreated]
    );
    let requested = &w.bus.published()[0];
    let notify: Vec<&str> =
        requested.detail["notify"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(notify, ["alice@corp.com", "bob@corp.com", "user12@corp.com", "user13@corp.com"]);
    // Expiry then works as for any grant.
    w.clock.set(activated + hours(2));
    sweep(&ctx, w.clock.now()).await.unwrap();
    assert_eq!(w.status(&request.id), GrantStatus::Expired);
    assert!(!w.alice_member());
    w.assert_consistent();
}

#[tokio::test]
async fn the_requester_and_anyone_outside_the_rule_cannot_approve() {
    let w = world_with(Some(POLICY)).await;
    let request = w.request_as(&alice(), "1h").await.unwrap();
    let ctx = w.ctx();
    // The requester (and grantee), though an owner of the databases.
    let err = approve(&ctx, &request.id, &alice(), None).await.unwrap_err();
    assert!(matches!(&err, RequestError::Forbidden(m) if m.contains("grantee")), "{err}");
    assert_eq!(status_of(&err), 403);
    // Someone the rule does not name.
    let err = approve(&ctx, &request.id, &person("u11", "user11@corp.com"), None).await.unwrap_err();
    assert!(matches!(&err, RequestError::Forbidden(m) if m.contains("not an approver")), "{err}");
    // An admin principal without a user of the integration: admins grant, they do not vote.
    let admin = Principal { id: ADMIN.into(), admin: true, users: vec![] };
    assert!(matches!(approve(&ctx, &request.id, &admin, None).await, Err(RequestError::Forbidden(_))));
    // An admin who is a user but not an approver of this rule.
    let admin_user = Principal { admin: true, ..person("u11", "user11@corp.com") };
    assert!(matches!(approve(&ctx, &request.id, &admin_user, None).await, Err(RequestError::Forbidden(_))));
    let stored = w.store.grant(&request.id).unwrap();
    assert!(stored.approvals.is_empty() && stored.status == GrantStatus::PendingApproval);
    assert!(!w.alice_member());
}

#[tokio::test]
async fn a_requester_who_is_not_the_grantee_never_counts_either() {
    // An approval record naming the requester as someone else than the grantee (a request an
    // admin-backed tool made on a user's behalf): that requester cannot approve.
    let w = world_with(Some(POLICY)).await;
    let request = w.request_as(&alice(), "1h").await.unwrap();
    let mut stored = w.store.grant(&request.id).unwrap();
    stored.requester = Some(crate::domain::model::GrantUser { id: "u12".into(), email: "user12@corp.com".into() });
    w.store.put_grant(stored);
    let err = approve(&w.ctx(), &request.id, &owner12(), None).await.unwrap_err();
    assert!(matches!(&err, RequestError::Forbidden(m) if m.contains("requester")), "{err}");
}

#[tokio::test]
async fn short_requests_are_auto_approved_and_break_glass_is_immediate_and_flagged() {
    let w = world_with(Some(POLICY)).await;
    let auto = w.request_as(&alice(), "30m").await.unwrap();
    assert_eq!((auto.status, auto.approval), (GrantStatus::Active, ApprovalMode::AutoApproved));
    assert!(w.alice_member());
    assert!(w
        .store
        .audit()
        .iter()
        .any(|r| r.grant_id == auto.id && r.detail.as_deref().is_some_and(|d| d.contains("auto-approved"))));

    let mut glass = ask(&w, &alice(), "2h", "INC-9 outage");
    glass.break_glass = true;
    let grant = request_grant(&w.ctx(), glass).await.unwrap().grant;
    assert_eq!(
        (grant.status, grant.approval, grant.break_glass),
        (GrantStatus::Active, ApprovalMode::BreakGlass, true)
    );
    assert_eq!(events(&w, &grant.id), [EventType::BreakGlassUsed, EventType::GrantCreated]);
    let used = w.bus.published().into_iter().find(|e| e.detail_type == EventType::BreakGlassUsed).unwrap();
    assert!(used.detail["notify"].as_array().unwrap().iter().any(|e| e == "bob@corp.com"), "approvers are told");

    // Break glass where the rule does not allow it.
    let no_glass = POLICY.replace("break_glass: true", "break_glass: false");
    w.policies.apply(&no_glass, t0());
    let mut glass = ask(&w, &alice(), "2h", "INC-9 outage");
    glass.break_glass = true;
    let err = request_grant(&w.ctx(), glass).await.unwrap_err();
    assert!(err.to_string().contains("break glass"), "{err}");
    assert_eq!(status_of(&err), 422);
}

#[tokio::test]
async fn a_denied_or_cancelled_request_never_adds_the_membership() {
    let w = world_with(Some(POLICY)).await;
    let ctx = w.ctx();
    let denied = w.request_as(&alice(), "1h").await.unwrap();
    // A denial needs a comment, and a sane one.
    assert!(matches!(deny(&ctx, &denied.id, &bob(), None).await, Err(RequestError::InvalidComment(_))));
    let long = "x".repeat(1001);
    assert!(matches!(deny(&ctx, &denied.id, &bob(), Some(&long)).await, Err(RequestError::InvalidComment(_))));
    for bad in ["no\u{7}", "ok \u{202E}deined\u{202C}", "fine \u{2066}x\u{2069}"] {
        let err = deny(&ctx, &denied.id, &bob(), Some(bad)).await.unwrap_err();
        assert_eq!(status_of(&err), 400, "{bad:?}");
        let err = approve(&ctx, &denied.id, &bob(), Some(bad)).await.unwrap_err();
        assert_eq!(status_of(&err), 400, "{bad:?}");
    }
    // Line breaks and tabs are text, not controls.
    assert!(crate::domain::request::check_comment(Some("two\nlines\tok"), true).is_ok());
    assert!(matches!(deny(&ctx, &denied.id, &alice(), Some("mine")).await, Err(RequestError::Forbidden(_))));
    let ended = deny(&ctx, &denied.id, &bob(), Some("not during the freeze")).await.unwrap();
    assert_eq!((ended.status, ended.decided_by.as_deref()), (GrantStatus::Denied, Some("bob@corp.com")));
    // Approving it afterwards does nothing.
    let err = approve(&ctx, &denied.id, &owner12(), None).await.unwrap_err();
    assert!(matches!(err, RequestError::NotPending(GrantStatus::Denied)));

    let cancelled = w.request_as(&alice(), "1h").await.unwrap();
    approve(&ctx, &cancelled.id, &bob(), None).await.unwrap();
    let outcome = revoke_grant(&ctx, &cancelled.id, &alice().id, EndReason::Revoked).await.unwrap();
    assert_eq!(outcome.grant.status, GrantStatus::Cancelled);
    assert!(outcome.changed && outcome.membership.is_none());
    assert!(matches!(approve(&ctx, &cancelled.id, &owner12(), None).await, Err(RequestError::NotPending(_))));

    assert!(!w.alice_member());
    assert_eq!(w.jc.member_calls(), 0, "invariant 8: JumpCloud never asked");
    assert_eq!(events(&w, &denied.id), [EventType::ApprovalRequested, EventType::RequestDenied]);
    assert_eq!(events(&w, &cancelled.id), [EventType::ApprovalRequested, EventType::RequestCancelled]);
    assert_eq!(w.actions(&denied.id), [AuditAction::Created, AuditAction::Denied]);
    w.assert_consistent();
}

#[tokio::test]
async fn a_request_past_its_timeout_cannot_be_approved_and_the_sweep_ends_it() {
    let w = world_with(Some(POLICY)).await;
    let ctx = w.ctx();
    let request = w.request_as(&alice(), "1h").await.unwrap();
    approve(&ctx, &request.id, &bob(), None).await.unwrap();
    w.clock.set(t0() + hours(4));
    // Before any sweep: too late (409).
    let err = approve(&ctx, &request.id, &owner12(), None).await.unwrap_err();
    assert!(matches!(err, RequestError::Expired(_)), "{err}");
    assert_eq!(status_of(&err), 409);
    let report = sweep(&ctx, w.clock.now()).await.unwrap();
    assert_eq!(report.ended, 1);
    let ended = w.store.grant(&request.id).unwrap();
    assert_eq!((ended.status, ended.granted_at), (GrantStatus::RequestExpired, None));
    assert!(!w.alice_member());
    assert_eq!(events(&w, &request.id), [EventType::ApprovalRequested, EventType::RequestExpired]);
    // The request's schedule delivering afterwards changes nothing.
    let outcome = revoke_grant(&ctx, &request.id, ACTOR_SCHEDULE_TEST, EndReason::Expired).await.unwrap();
    assert!(!outcome.changed);
    w.assert_consistent();
}

const ACTOR_SCHEDULE_TEST: &str = crate::domain::model::ACTOR_SCHEDULE;

#[tokio::test]
async fn a_policy_change_takes_effect_on_the_next_request() {
    let w = world_with(Some(POLICY)).await;
    assert_eq!(w.request_as(&alice(), "1h").await.unwrap().status, GrantStatus::PendingApproval);
    w.policies.apply(&POLICY.replace("auto_approve_up_to: 30m", "auto_approve_up_to: 1h"), t0());
    let grant = w.request_as(&alice(), "1h").await.unwrap();
    assert_eq!((grant.status, grant.policy.map(|p| p.version)), (GrantStatus::Active, Some(2)));
}

#[tokio::test]
async fn concurrent_decisions_leave_one_outcome_each() {
    for _ in 0..20 {
        let w = world_with(Some(POLICY)).await;
        let [approved, raced, cancelled, timed_out] = w.concurrent_decisions().await;
        assert!(matches!(timed_out.status, GrantStatus::RequestExpired | GrantStatus::Active));
        assert_eq!(approved.status, GrantStatus::Active);
        assert_eq!(approved.approvals.len(), 2);
        assert_eq!(events(&w, &approved.id).iter().filter(|e| **e == EventType::GrantCreated).count(), 1);
        // One approval of two cannot activate it: the denial stands, whenever it landed.
        assert_eq!(raced.status, GrantStatus::Denied);
        assert!(matches!(cancelled.status, GrantStatus::Cancelled | GrantStatus::Revoked | GrantStatus::Active));
        w.assert_consistent();
    }
}

#[tokio::test]
async fn a_grantee_suspended_since_the_request_is_never_activated() {
    let w = world_with(Some(POLICY)).await;
    let request = w.request_as(&alice(), "1h").await.unwrap();
    let ctx = w.ctx();
    approve(&ctx, &request.id, &bob(), None).await.unwrap();
    for user in w.jc.users.lock().unwrap().iter_mut().filter(|u| u.id == "u1") {
        user.state = crate::domain::model::UserState::Suspended;
    }
    let err = approve(&ctx, &request.id, &owner12(), None).await.unwrap_err();
    assert_eq!(status_of(&err), 422, "{err}");
    assert!(!w.alice_member());
    assert_eq!(w.jc.member_calls(), 0);
    let stored = w.store.grant(&request.id).unwrap();
    assert_eq!((stored.status, stored.approvals.len()), (GrantStatus::PendingApproval, 1));
    w.assert_consistent();
}
