//! Extensions and reminders over the in-memory doubles (SPEC "Who may do what": extend within
//! the rule's approval and `max_total`, the schedule moved; `Grant Expiring Soon` by a schedule).

use super::*;
use crate::{
    domain::extension::{extend, remind, ExtendRequest},
    domain::identity::Principal,
    domain::model::{reminder_schedule_name, EndReason, EventType, Grant},
    domain::request::{approve, approve_target, deny, RequestError, Target},
    domain::revoke::revoke_grant,
    testing::lifecycle::{person, REQUEST_POLICY},
};

/// The request policy with a reminder 15 minutes before expiry; `max_total` stays the rule's
/// maximum (2h).
fn policy() -> String {
    REQUEST_POLICY.replace("    break_glass: true\n", "    break_glass: true\n    remind_before: 15m\n")
}

async fn world() -> World {
    let w = World::new(&[]);
    w.sync_request_directory().await;
    w.policies.apply(&policy(), t0());
    w
}

fn alice() -> Principal {
    person("u1", "alice@corp.com")
}

fn by(duration: &str) -> ExtendRequest {
    ExtendRequest { duration: duration.parse().unwrap(), reason: "INC-4711 still restoring".into() }
}

/// alice's auto-approved 30-minute grant.
async fn short_grant(w: &World) -> Grant {
    let grant = w.request_as(&alice(), "30m").await.unwrap();
    assert_eq!(grant.status, GrantStatus::Active);
    grant
}

fn expiry_scheduled(w: &World, id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    w.scheduler.schedules.lock().unwrap().get(&format!("jit-expire-{id}")).and_then(|g| g.expires_at)
}

#[tokio::test]
async fn a_short_extension_moves_the_expiry_and_its_schedules_within_max_total() {
    let w = world().await;
    let grant = short_grant(&w).await;
    let ctx = w.ctx();
    let reminder = |w: &World| w.scheduler.reminders.lock().unwrap().get(&reminder_schedule_name(&grant.id)).cloned();
    assert_eq!(reminder(&w).map(|r| r.1), Some(t0() + Duration::minutes(15)));

    w.clock.advance(Duration::minutes(10));
    let extended = extend(&ctx, &grant.id, &alice(), &by("30m")).await.unwrap();
    let new_expiry = t0() + hours(1);
    assert_eq!((extended.expires_at, extended.pending_extension.is_none()), (Some(new_expiry), true));
    assert_eq!(extended.extensions.len(), 1);
    assert_eq!(expiry_scheduled(&w, &grant.id), Some(new_expiry), "the expiry schedule moved");
    assert_eq!(reminder(&w).map(|r| r.1), Some(new_expiry - Duration::minutes(15)), "the reminder moved");
    assert!(w.bus.types_for(&grant.id).contains(&"Grant Extended"));

    // Up to 2h in all (30m + 30m + 30m + 30m); one more would make 2h30m.
    extend(&ctx, &grant.id, &alice(), &by("30m")).await.unwrap();
    extend(&ctx, &grant.id, &alice(), &by("30m")).await.unwrap();
    let err = extend(&ctx, &grant.id, &alice(), &by("30m")).await.unwrap_err();
    assert!(err.to_string().contains("max_total"), "{err}");
    assert_eq!(status_of(&err), 422);
    assert_eq!(w.store.grant(&grant.id).unwrap().expires_at, Some(t0() + hours(2)), "nothing changed");

    // The old expiry's delivery finds the grant not due; the new one ends it.
    w.clock.set(t0() + Duration::minutes(31));
    assert!(matches!(
        revoke_grant(&ctx, &grant.id, crate::domain::model::ACTOR_SCHEDULE, EndReason::Expired).await,
        Err(RevokeError::NotDue { .. })
    ));
    w.clock.set(t0() + hours(2));
    let ended = revoke_grant(&ctx, &grant.id, crate::domain::model::ACTOR_SCHEDULE, EndReason::Expired).await.unwrap();
    assert_eq!(ended.grant.status, GrantStatus::Expired);
    assert!(!w.alice_member());
    w.assert_consistent();
}

#[tokio::test]
async fn a_longer_extension_waits_for_its_approvals() {
    let w = world().await;
    let grant = short_grant(&w).await;
    let ctx = w.ctx();
    let pending = extend(&ctx, &grant.id, &alice(), &by("1h")).await.unwrap();
    let asked = pending.pending_extension.clone().expect("awaits approval");
    assert_eq!(pending.expires_at, grant.expires_at, "not moved yet");
    assert_eq!(asked.approvers, ["bob@corp.com", "user12@corp.com", "user13@corp.com"]);
    // A second extension while one waits: 409.
    let err = extend(&ctx, &grant.id, &alice(), &by("1h")).await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    // The grantee never approves it.
    assert!(matches!(approve(&ctx, &grant.id, &alice(), None).await, Err(RequestError::Forbidden(_))));
    let once = approve(&ctx, &grant.id, &person("u2", "bob@corp.com"), None).await.unwrap();
    assert_eq!(once.pending_extension.unwrap().approvals.len(), 1);
    assert_eq!(once.expires_at, grant.expires_at);
    let done = approve(&ctx, &grant.id, &person("u12", "user12@corp.com"), None).await.unwrap();
    assert_eq!(done.expires_at, Some(grant.expires_at.unwrap() + hours(1)));
    assert!(done.pending_extension.is_none());
    assert_eq!(expiry_scheduled(&w, &grant.id), done.expires_at);
    assert!(w.bus.types_for(&grant.id).contains(&"Extension Requested"));
}

#[tokio::test]
async fn only_the_grantee_or_an_admin_extends_and_an_admin_needs_no_approval() {
    let w = world().await;
    let grant = short_grant(&w).await;
    let ctx = w.ctx();
    let err = extend(&ctx, &grant.id, &person("u2", "bob@corp.com"), &by("30m")).await.unwrap_err();
    assert!(matches!(err, RequestError::Forbidden(_)), "{err}");
    let admin = Principal { id: ADMIN.into(), admin: true, users: vec![] };
    let extended = extend(&ctx, &grant.id, &admin, &by("5h")).await.unwrap();
    assert_eq!(extended.expires_at, Some(t0() + Duration::minutes(330)), "beyond the rule: an admin's say");
    let err = extend(&ctx, &grant.id, &admin, &by("7h")).await.unwrap_err();
    assert_eq!(status_of(&err), 422, "but not beyond the product's maximum (12h)");
}

#[tokio::test]
async fn a_denied_extension_changes_nothing_but_the_request() {
    let w = world().await;
    let grant = short_grant(&w).await;
    let ctx = w.ctx();
    extend(&ctx, &grant.id, &alice(), &by("1h")).await.unwrap();
    let denied = deny(&ctx, &grant.id, &person("u2", "bob@corp.com"), Some("finish tomorrow")).await.unwrap();
    assert!(denied.pending_extension.is_none());
    assert_eq!((denied.status, denied.expires_at), (GrantStatus::Active, grant.expires_at));
    assert!(denied.extensions.is_empty());
    assert_eq!(expiry_scheduled(&w, &grant.id), grant.expires_at);
}

#[tokio::test]
async fn the_reminder_is_published_once_due_and_only_for_an_active_grant() {
    let w = world().await;
    let grant = short_grant(&w).await;
    let ctx = w.ctx();
    assert!(!remind(&ctx, &grant.id, "system:schedule").await.unwrap(), "not yet due");
    w.clock.set(t0() + Duration::minutes(15));
    assert!(remind(&ctx, &grant.id, "system:schedule").await.unwrap());
    let soon = w.bus.published().into_iter().find(|e| e.detail_type == EventType::GrantExpiringSoon).unwrap();
    assert_eq!(soon.detail["notify"][0], "alice@corp.com");
    revoke_grant(&ctx, &grant.id, ADMIN, EndReason::Revoked).await.unwrap();
    assert!(!remind(&ctx, &grant.id, "system:schedule").await.unwrap(), "revoked: nothing to remind of");
}

#[tokio::test]
async fn a_decision_for_one_extension_never_decides_another_or_the_request() {
    let w = world().await;
    let grant = short_grant(&w).await;
    let ctx = w.ctx();
    let bob = person("u2", "bob@corp.com");
    let first = extend(&ctx, &grant.id, &alice(), &by("1h")).await.unwrap().pending_extension.unwrap();
    deny(&ctx, &grant.id, &bob, Some("finish tomorrow")).await.unwrap();
    let denied = w.bus.published().into_iter().rfind(|e| e.detail_type == EventType::RequestDenied).unwrap();
    assert_eq!(denied.detail["extension"]["at"], serde_json::to_value(first.at).unwrap(), "the event names it");
    assert!(denied.detail["notify"].as_array().unwrap().contains(&"bob@corp.com".into()), "its approvers told");

    w.clock.advance(Duration::minutes(1));
    let second = extend(&ctx, &grant.id, &alice(), &by("1h")).await.unwrap().pending_extension.unwrap();
    let before = w.store.grant(&grant.id).unwrap();
    // A decision meant for the first extension, or for a request, decides nothing now.
    let stale = approve_target(&ctx, &grant.id, &bob, None, Target::Extension(first.at)).await.unwrap_err();
    assert!(matches!(&stale, RequestError::Conflict(why) if why.contains("no longer awaits")), "{stale}");
    let request = approve_target(&ctx, &grant.id, &bob, None, Target::Request).await.unwrap_err();
    assert!(matches!(request, RequestError::NotPending(GrantStatus::Active)), "{request}");
    assert_eq!(w.store.grant(&grant.id).unwrap(), before, "nothing changed");

    let once = approve_target(&ctx, &grant.id, &bob, None, Target::Extension(second.at)).await.unwrap();
    assert_eq!(once.pending_extension.unwrap().approvals.len(), 1);
    let user12 = person("u12", "user12@corp.com");
    let done = approve_target(&ctx, &grant.id, &user12, None, Target::Extension(second.at)).await.unwrap();
    assert_eq!(done.expires_at, Some(grant.expires_at.unwrap() + hours(1)));
    let extended = w.bus.published().into_iter().rfind(|e| e.detail_type == EventType::GrantExtended).unwrap();
    assert_eq!(extended.detail["extension"]["approvals"].as_array().unwrap().len(), 2, "as it stood when decided");
}
