//! Random interleavings of the lifecycle (proptest): admin grants, requests, approvals, denials,
//! cancellations, extensions, expiry deliveries, early revocations, sweeps, sync reconciliations
//! and the clock moving,
//! over the in-memory doubles, with the invariants checked after every step. A failure shrinks
//! to the shortest sequence of steps that breaks one, printed as the steps themselves.
//!
//! The world: `REQUEST_POLICY` (engineering may ask for `prod-db-*`: up to 2h, a ticket, two
//! approvals of the manager and db-owners, up to 30m auto-approved, break glass); alice (u1,
//! manager bob u2) and user11 (no manager) ask; bob, user12, user13 and alice approve, user10
//! tries to; user12 is a standing member of `prod-db-admins`, which nothing may remove.

use super::*;
use crate::domain::{
    extension::{extend, ExtendRequest},
    grant::request_grant,
    model::{ApprovalMode, DirectorySnapshot, EndReason, Grant, Membership, ACTOR_SCHEDULE},
    reconcile::reconcile,
    request::{approve, deny},
    revoke::revoke_grant,
};
use crate::testing::lifecycle::{person, REQUEST_POLICY};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Who acts: the requesters and approvers of the world.
const PEOPLE: [(&str, &str); 5] = [
    ("u1", "alice@corp.com"),
    ("u2", "bob@corp.com"),
    ("u12", "user12@corp.com"),
    ("u13", "user13@corp.com"),
    // In engineering, nobody's manager, no owner: an approver of nothing.
    ("u10", "user10@corp.com"),
];
/// The users an admin grants to (user12 holds the group already).
const GRANTEES: [&str; 3] = ["alice@corp.com", "user11@corp.com", "user12@corp.com"];

#[derive(Debug, Clone)]
enum Step {
    /// An admin grants `prod-db-admins` to a grantee for so many minutes.
    AdminGrant {
        grantee: usize,
        minutes: i64,
    },
    /// alice (`false`) or user11 (`true`) asks for so many minutes, maybe with break glass.
    Request {
        user11: bool,
        minutes: i64,
        break_glass: bool,
    },
    /// A person approves or denies a grant made so far (`nth`: see [`pick`]).
    Approve {
        nth: usize,
        by: usize,
    },
    Deny {
        nth: usize,
        by: usize,
    },
    /// Its requester withdraws it (or gives it up).
    Cancel {
        nth: usize,
    },
    /// Its grantee asks for so many minutes more.
    Extend {
        nth: usize,
        minutes: i64,
    },
    /// The expiry schedule delivers, or an admin revokes.
    DeliverExpiry {
        nth: usize,
    },
    Revoke {
        nth: usize,
    },
    Sweep,
    /// A sync's reconciliation against what JumpCloud holds now.
    Reconcile,
    Advance {
        minutes: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let nth = 0..8usize;
    prop_oneof![
        (0..GRANTEES.len(), 1..180i64).prop_map(|(grantee, minutes)| Step::AdminGrant { grantee, minutes }),
        (any::<bool>(), prop_oneof![Just(15i64), Just(30), Just(60), Just(120), Just(180)], prop::bool::weighted(0.1))
            .prop_map(|(user11, minutes, break_glass)| Step::Request { user11, minutes, break_glass }),
        (nth.clone(), 0..PEOPLE.len()).prop_map(|(nth, by)| Step::Approve { nth, by }),
        (nth.clone(), 0..PEOPLE.len()).prop_map(|(nth, by)| Step::Deny { nth, by }),
        nth.clone().prop_map(|nth| Step::Cancel { nth }),
        (nth.clone(), prop_oneof![Just(15i64), Just(60), Just(300)])
            .prop_map(|(nth, minutes)| Step::Extend { nth, minutes }),
        nth.clone().prop_map(|nth| Step::DeliverExpiry { nth }),
        nth.prop_map(|nth| Step::Revoke { nth }),
        Just(Step::Sweep),
        Just(Step::Reconcile),
        prop_oneof![Just(1i64), Just(20), Just(45), Just(121), Just(300)].prop_map(|minutes| Step::Advance { minutes }),
    ]
}

/// A grant made so far, if any: mostly one of the last three (so that steps meet on one request
/// often enough to complete its approvals), else any.
fn pick(ids: &[String], nth: usize) -> Option<&str> {
    let last = ids.len().checked_sub(1)?;
    let back = if nth < 6 { nth % 3 } else { nth };
    Some(ids[last - back % ids.len()].as_str())
}

async fn run(w: &World, step: &Step, ids: &mut Vec<String>) {
    let ctx = w.ctx();
    let minutes = |m: i64| crate::domain::model::GrantDuration::from_secs(m as u64 * 60);
    // Refusals are part of the game (not an approver, not pending, over the maximum): what matters
    // is the state they leave, which the invariants check. Only a panic or a broken invariant fails.
    match step {
        Step::AdminGrant { grantee, minutes: m } => {
            if let Ok(outcome) = request_grant(&ctx, w.request(GRANTEES[*grantee], &format!("{m}m"))).await {
                ids.push(outcome.grant.id);
            }
        }
        Step::Request { user11, minutes: m, break_glass } => {
            let caller = if *user11 { person("u11", "user11@corp.com") } else { person("u1", "alice@corp.com") };
            let mut request = w.request("ignored", &format!("{m}m"));
            request.user = None;
            request.reason = "INC-4711 restore the replica".into();
            request.requested_by = caller.id.clone();
            request.caller_users = caller.users.clone();
            request.caller_admin = false;
            request.break_glass = *break_glass;
            if let Ok(outcome) = request_grant(&ctx, request).await {
                ids.push(outcome.grant.id);
            }
        }
        Step::Approve { nth, by } => {
            if let Some(id) = pick(ids, *nth) {
                let (uid, email) = PEOPLE[*by];
                let _ = approve(&ctx, id, &person(uid, email), None).await;
            }
        }
        Step::Deny { nth, by } => {
            if let Some(id) = pick(ids, *nth) {
                let (uid, email) = PEOPLE[*by];
                let _ = deny(&ctx, id, &person(uid, email), Some("not now")).await;
            }
        }
        Step::Cancel { nth } => {
            if let Some(id) = pick(ids, *nth) {
                let requester = w.store.grant(id).expect("grant").requested_by;
                let _ = revoke_grant(&ctx, id, &requester, EndReason::Revoked).await;
            }
        }
        Step::Extend { nth, minutes: m } => {
            if let Some(id) = pick(ids, *nth) {
                let grant = w.store.grant(id).expect("grant");
                let grantee = person(&grant.user.id, &grant.user.email);
                let request = ExtendRequest { duration: minutes(*m), reason: "INC-4711 still restoring".into() };
                let _ = extend(&ctx, id, &grantee, &request).await;
            }
        }
        Step::DeliverExpiry { nth } => {
            if let Some(id) = pick(ids, *nth) {
                let _ = revoke_grant(&ctx, id, ACTOR_SCHEDULE, EndReason::Expired).await;
            }
        }
        Step::Revoke { nth } => {
            if let Some(id) = pick(ids, *nth) {
                let _ = w.revoke(id).await;
            }
        }
        Step::Sweep => {
            w.sweep().await;
        }
        Step::Reconcile => {
            // What a sync would fetch now: the people, and JumpCloud's members of the group.
            let mut snapshot = DirectorySnapshot::default();
            for id in ["u1", "u2", "u10", "u11", "u12", "u13"] {
                snapshot.users.insert(id.into(), crate::domain::model::fixtures::user(id, &format!("{id}@corp.com")));
            }
            for user in w.jc.members.lock().unwrap().get("g1").cloned().unwrap_or_default() {
                snapshot.memberships.insert(Membership { group_id: "g1".into(), user_id: user.as_str().into() });
            }
            let report = reconcile(&ctx, "corp", w.jc.as_ref(), &mut snapshot, w.clock.now()).await;
            // Nothing drifted outside the product: reconciliation finds nothing to mend.
            assert!(report.removed.is_empty() && report.missing.is_empty(), "reconcile changed {report:?}");
        }
        Step::Advance { minutes: m } => w.advance(Duration::minutes(*m)),
    }
}

/// Invariants 1-3, 5, 7 and 8 over the state the steps left, `Err` naming the broken one.
fn check(w: &World, after_sweep: bool) -> Result<(), String> {
    w.assert_consistent();
    let now = w.clock.now();
    let grants: Vec<Grant> = w.store.grants();
    let eligible: BTreeSet<&str> = ["u1", "u11"].into();
    for g in &grants {
        if g.status == GrantStatus::Pending {
            return Err(format!("grant {} left pending (no failure was injected)", g.id));
        }
        // 8: a request that never activated never holds a membership (assert_consistent: no lease).
        if matches!(g.status, GrantStatus::Denied | GrantStatus::Cancelled | GrantStatus::RequestExpired)
            && g.granted_at.is_some()
        {
            return Err(format!("8: request {} ended as {:?} but was activated", g.id, g.status));
        }
        // 7: what activated was allowed.
        if g.granted_at.is_some() && g.approval != ApprovalMode::Admin {
            if !eligible.contains(g.user.id.as_str()) {
                return Err(format!("7: {} activated for {}, who is not eligible", g.id, g.user.id));
            }
            match g.approval {
                ApprovalMode::AutoApproved if g.duration > crate::domain::model::GrantDuration::from_secs(30 * 60) => {
                    return Err(format!("7: {} auto-approved for {}", g.id, g.duration))
                }
                ApprovalMode::Approvers => {
                    let by: BTreeSet<&str> = g.approvals.iter().map(|a| a.by.as_str()).collect();
                    if by.len() < g.approvals_required as usize || by.len() != g.approvals.len() {
                        return Err(format!("7: {} active on {:?} of {}", g.id, by, g.approvals_required));
                    }
                    if by.contains(g.user.email.as_str()) {
                        return Err(format!("7: {} approved by its own grantee", g.id));
                    }
                    if let Some(outsider) = by.iter().find(|b| !g.approvers.iter().any(|a| a == *b)) {
                        return Err(format!("7: {} approved by {outsider}, not one of its approvers", g.id));
                    }
                }
                _ => {}
            }
        }
        // 1: after a sweep, nothing due is still open.
        if after_sweep && g.status == GrantStatus::Active && g.expires_at.is_some_and(|t| t <= now) {
            return Err(format!("1: {} still active after a sweep, expired at {:?}", g.id, g.expires_at));
        }
    }
    // 1-3 and 5: alice's and user11's memberships are exactly "an active grant holds it"; user12's
    // standing membership is never removed, whatever its grants did.
    for (user, standing) in [("u1", false), ("u11", false), ("u12", true)] {
        let held = grants.iter().any(|g| g.user.id == user && g.status == GrantStatus::Active);
        let member = w.jc.is_member("g1", user);
        if member != (held || standing) {
            return Err(format!(
                "{}: {user} member = {member}, active grant = {held}, standing = {standing}",
                if standing { "2" } else { "1/3/5" }
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2048, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_keeps_the_invariants(steps in prop::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome: Result<(), String> = runtime.block_on(async {
            let w = World::new(&[("g1", "u12")]);
            w.policies.apply(REQUEST_POLICY, w.clock.now());
            w.sync_request_directory().await;
            let mut ids = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                run(&w, step, &mut ids).await;
                check(&w, matches!(step, Step::Sweep)).map_err(|e| format!("after step {i} ({step:?}): {e}"))?;
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
