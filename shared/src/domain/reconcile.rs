//! Reconciliation, run by sync after each fetch (SPEC invariant 6): a membership the product
//! granted that outlived its grant is removed and reported; an active grant whose membership
//! vanished outside the product is marked and reported.
//!
//! Only what the fetch can speak for is judged: grants created or ended well before the fetch
//! started (a change racing the fetch is judged by the next sync), and users the synced snapshot
//! holds (suspended users are not synced unless configured).

use super::grant::{notify_list, GrantContext};
use crate::{
    domain::model::{
        AuditAction, AuditOutcome, AuditRecord, EventType, Grant, GrantEvent, GrantEventDetail, GrantFilter,
        GrantStatus, LeaseHold, MembershipEnd,
    },
    domain::model::{DirectorySnapshot, Membership, ObjectId},
    ports::{Directory, RemoveOutcome},
};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeSet;

/// Who the audit trail and events name for reconciliation.
pub const ACTOR_SYNC: &str = "system:sync";
/// Changes this close to the fetch's start are left to the next sync.
const SETTLE_MARGIN_SECS: i64 = 120;
/// How long after its end a grant's membership is still watched for.
const WATCH_ENDED_HOURS: i64 = 24;
const PAGE: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Memberships that outlived their grants, removed: `(grant id, group id, user id)`.
    pub removed: Vec<(String, String, String)>,
    /// Active grants whose membership vanished outside the product.
    pub missing: Vec<String>,
    /// Memberships the product removed at a grant's end that are back (someone restored them
    /// outside the product): reported once, left alone. `(grant id, group id, user id)`.
    pub readded: Vec<(String, String, String)>,
    /// What could not be done (retried by the next sync).
    pub failures: Vec<String>,
    /// Memberships added outside the product to a `jit_only` group since the last sync, which the
    /// incremental sync had not judged: `(group id, user id, removed)` (`domain::outside`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added_outside: Vec<(String, String, bool)>,
}

/// What reconciliation reads of JumpCloud's memberships as the sync fetched them, and where it
/// takes out the ones it removed: the single invocation's snapshot, or the stored directory a
/// fanned-out run has just written (`domain::fanout`).
#[async_trait]
pub trait Fetched: Send {
    /// Whether the fetch holds the membership; `None` when it does not hold the user at all (not
    /// synced: suspended, say), so nothing can be said.
    async fn holds(&mut self, group_id: &str, user_id: &str) -> Result<Option<bool>, String>;
    /// The product removed the membership: the stored directory must not keep it.
    async fn removed(&mut self, group_id: &str, user_id: &str) -> Result<(), String>;
}

#[async_trait]
impl Fetched for DirectorySnapshot {
    async fn holds(&mut self, group_id: &str, user_id: &str) -> Result<Option<bool>, String> {
        Ok(self.users.contains_key(user_id).then(|| {
            self.memberships
                .contains(&Membership { group_id: ObjectId::new(group_id), user_id: ObjectId::new(user_id) })
        }))
    }
    async fn removed(&mut self, group_id: &str, user_id: &str) -> Result<(), String> {
        self.memberships.remove(&Membership { group_id: ObjectId::new(group_id), user_id: ObjectId::new(user_id) });
        Ok(())
    }
}

async fn present(fetched: &mut dyn Fetched, grant: &Grant) -> Result<Option<bool>, String> {
    fetched.holds(&grant.group.id, &grant.user.id).await
}

async fn grants(
    ctx: &GrantContext<'_>,
    integration: &str,
    status: GrantStatus,
    stop_before: DateTime<Utc>,
) -> Result<Vec<Grant>, String> {
    let filter =
        GrantFilter { status: Some(status), integration: Some(integration.to_owned()), ..GrantFilter::default() };
    let mut out = Vec::new();
    let mut next = None;
    loop {
        let page = ctx.store.list(&filter, PAGE, next.as_deref()).await.map_err(|e| e.to_string())?;
        // Listed newest request first.
        let older = page.grants.iter().any(|g| g.requested_at < stop_before);
        out.extend(page.grants.into_iter().filter(|g| g.requested_at >= stop_before));
        match page.next {
            Some(token) if !older => next = Some(token),
            _ => return Ok(out),
        }
    }
}

/// Reconciles one integration against what the sync just fetched. Removals are also taken out of
/// `fetched`, so the stored directory matches JumpCloud afterwards.
pub async fn reconcile(
    ctx: &GrantContext<'_>,
    integration: &str,
    directory: &dyn Directory,
    fetched: &mut dyn Fetched,
    fetch_started: DateTime<Utc>,
) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    let settled_before = fetch_started - Duration::seconds(SETTLE_MARGIN_SECS);

    // Active grants whose membership is gone.
    match grants(ctx, integration, GrantStatus::Active, DateTime::<Utc>::MIN_UTC).await {
        Err(e) => report.failures.push(format!("listing active grants: {e}")),
        Ok(active) => {
            for grant in active
                .iter()
                .filter(|g| g.granted_at.unwrap_or(g.requested_at) < settled_before && !g.membership_missing)
            {
                match present(fetched, grant).await {
                    Ok(Some(false)) => {}
                    Ok(_) => continue,
                    Err(e) => {
                        report.failures.push(format!("reading the membership of grant {}: {e}", grant.id));
                        continue;
                    }
                }
                let audit = AuditRecord::new(
                    grant,
                    ctx.clock.now(),
                    ACTOR_SYNC,
                    AuditAction::MembershipMissing,
                    AuditOutcome::Failed,
                )
                .detail("the membership vanished in JumpCloud outside the product while the grant is active");
                match ctx.store.mark_membership_missing(&grant.id, &[audit]).await {
                    Ok(marked) => {
                        tracing::warn!(grant_id = %grant.id, "drift: an active grant's membership vanished outside the product");
                        publish_drift(ctx, &marked, "membership_missing", "membership missing").await;
                        report.missing.push(grant.id.clone());
                    }
                    Err(e) => report.failures.push(format!("marking grant {}: {e}", grant.id)),
                }
            }
        }
    }

    // Ended grants whose membership is still (or again) there. The last grant to end on each
    // membership decides: if its end removed the membership, someone put it back outside the
    // product (an admin restoring access on purpose, say): reported, never touched. Otherwise
    // (JumpCloud answered "not a member", or other grants kept it) the product's removal never
    // happened: the membership outlived its grants and goes.
    let oldest = fetch_started - Duration::hours(WATCH_ENDED_HOURS) - ctx.policy.max_duration.to_chrono();
    let watch_from = fetch_started - Duration::hours(WATCH_ENDED_HOURS);
    let mut candidates = Vec::new();
    for status in [GrantStatus::Expired, GrantStatus::Revoked] {
        match grants(ctx, integration, status, oldest).await {
            Ok(ended) => candidates.extend(ended),
            Err(e) => report.failures.push(format!("listing {status:?} grants: {e}")),
        }
    }
    let ended_at = |g: &Grant| g.ended_at.unwrap_or(g.expiry());
    candidates.sort_by_key(|g| std::cmp::Reverse(ended_at(g)));
    let mut seen = BTreeSet::new();
    for grant in candidates {
        let ended = ended_at(&grant);
        if ended >= settled_before || ended < watch_from {
            continue;
        }
        match present(fetched, &grant).await {
            Ok(Some(true)) => {}
            Ok(_) => continue,
            Err(e) => {
                report.failures.push(format!("reading the membership of grant {}: {e}", grant.id));
                continue;
            }
        }
        if !seen.insert((grant.group.id.clone(), grant.user.id.clone())) || grant.preexisting_membership {
            continue;
        }
        // Removed by the product (or ended before this was recorded: unknown, so left alone).
        if matches!(grant.membership_end, Some(MembershipEnd::Removed) | None) {
            match readded_outside(ctx, &grant).await {
                Ok(true) => report.readded.push((grant.id.clone(), grant.group.id.clone(), grant.user.id.clone())),
                Ok(false) => {}
                Err(e) => report.failures.push(format!("reporting the restored membership of grant {}: {e}", grant.id)),
            }
            continue;
        }
        {
            match remove_outlived(ctx, directory, &grant).await {
                Ok(true) => {
                    if let Err(e) = fetched.removed(&grant.group.id, &grant.user.id).await {
                        report.failures.push(format!("forgetting the removed membership of grant {}: {e}", grant.id));
                    }
                    report.removed.push((grant.id.clone(), grant.group.id.clone(), grant.user.id.clone()));
                }
                Ok(false) => {}
                Err(e) => report.failures.push(format!("removing the membership of grant {}: {e}", grant.id)),
            }
        }
    }
    report
}

const READDED: &str =
    "the membership the product removed at the grant's end is back (restored outside the product): left alone";

/// A membership restored outside the product after its grant's end removed it: audited and
/// published once (`Drift Detected`, kind `readded_outside`), never removed. `Ok(false)`: reported
/// by an earlier sync already.
async fn readded_outside(ctx: &GrantContext<'_>, grant: &Grant) -> Result<bool, String> {
    let trail = ctx.store.audit_for(&grant.id).await.map_err(|e| e.to_string())?;
    if trail.iter().any(|r| r.action == AuditAction::DriftDetected && r.detail.as_deref() == Some(READDED)) {
        return Ok(false);
    }
    let audit =
        AuditRecord::new(grant, ctx.clock.now(), ACTOR_SYNC, AuditAction::DriftDetected, AuditOutcome::Succeeded)
            .detail(READDED);
    ctx.store.append_audit(&[audit]).await.map_err(|e| e.to_string())?;
    tracing::warn!(grant_id = %grant.id, "drift: a membership removed at its grant's end was restored outside the product");
    publish_drift(ctx, grant, "readded_outside", "membership restored outside the product after its removal").await;
    Ok(true)
}

/// `Drift Detected` with its kind.
async fn publish_drift(ctx: &GrantContext<'_>, grant: &Grant, kind: &str, error: &str) {
    let detail = GrantEventDetail {
        grant: grant.clone(),
        actor: ACTOR_SYNC.to_owned(),
        membership: None,
        error: Some(error.to_owned()),
        notify: notify_list(grant),
        drift: Some(kind.to_owned()),
        extension: None,
    };
    if let Err(e) = ctx.events.publish(&[GrantEvent::for_grant(EventType::DriftDetected, &detail)]).await {
        tracing::error!(error = %e, grant_id = %grant.id, "could not publish a drift event");
    }
}

/// Under the membership's lease lock: removes it only if no grant holds it and it is not standing
/// access. `Ok(false)`: left alone.
async fn remove_outlived(ctx: &GrantContext<'_>, directory: &dyn Directory, grant: &Grant) -> Result<bool, String> {
    let hold = LeaseHold { key: grant.lease_key(), owner: format!("sync:{}", uuid::Uuid::new_v4()) };
    let lease = ctx
        .store
        .lock_lease(&hold.key, &hold.owner, ctx.clock.now(), ctx.policy.lease_ttl)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = if !lease.holders.is_empty() || lease.preexisting {
        Ok(false)
    } else {
        directory
            .remove_member(&grant.group.id, &grant.user.id)
            .await
            .map_err(|e| e.to_string())
            .map(|r| r == RemoveOutcome::Removed)
    };
    if let Err(e) = ctx.store.unlock_lease(&hold).await {
        tracing::error!(grant_id = %grant.id, error = %e, "could not release a lease lock (it expires by itself)");
    }
    if let Ok(true) = outcome {
        let audit =
            AuditRecord::new(grant, ctx.clock.now(), ACTOR_SYNC, AuditAction::DriftDetected, AuditOutcome::Succeeded)
                .detail("the membership outlived the grant in JumpCloud: removed");
        if let Err(e) = ctx.store.append_audit(&[audit]).await {
            tracing::error!(grant_id = %grant.id, error = %e, "could not audit a drift removal");
        }
        tracing::warn!(grant_id = %grant.id, "drift: a membership outlived its grant; removed");
        publish_drift(ctx, grant, "outlived_grant", "membership outlived its grant; removed").await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        clock::Clock,
        domain::model::EndReason,
        domain::model::{DirectoryUser, UserState},
        domain::revoke::revoke_grant,
        testing::lifecycle::LifecycleHarness,
        testing::{MemoryGrantStore, SyncedMemberships},
    };

    /// The lifecycle over the in-memory store; `jc` is JumpCloud.
    struct Parts(LifecycleHarness<MemoryGrantStore, SyncedMemberships>);

    impl std::ops::Deref for Parts {
        type Target = LifecycleHarness<MemoryGrantStore, SyncedMemberships>;
        fn deref(&self) -> &Self::Target {
            &self.0
        }
    }

    impl Parts {
        fn new() -> Self {
            Self(LifecycleHarness::new(MemoryGrantStore::default(), SyncedMemberships::default(), &[]))
        }
        async fn grant(&self, user: &str) -> Grant {
            self.0.grant(user, "1h").await
        }
        fn is_member(&self, user: &str) -> bool {
            self.jc.is_member("g1", user)
        }
        /// What a sync would fetch now.
        fn snapshot(&self) -> DirectorySnapshot {
            let mut s = DirectorySnapshot::default();
            for id in ["u1", "u2"] {
                let mut u = crate::domain::model::fixtures::user(id, "x@corp.com");
                u.state = UserState::Activated;
                s.users.insert(id.into(), DirectoryUser { ..u });
            }
            for user in self.jc.members.lock().unwrap().get("g1").cloned().unwrap_or_default() {
                s.memberships.insert(Membership { group_id: "g1".into(), user_id: user.as_str().into() });
            }
            s
        }
    }

    #[tokio::test]
    async fn an_active_grant_whose_membership_vanished_is_marked_and_reported() {
        let p = Parts::new();
        let grant = p.grant("alice@corp.com").await;
        p.jc.members.lock().unwrap().get_mut("g1").unwrap().remove("u1"); // outside the product
        p.clock.advance(Duration::minutes(5));
        let mut snapshot = p.snapshot();
        let report = reconcile(&p.ctx(), "corp", p.jc.as_ref(), &mut snapshot, p.clock.now()).await;
        assert_eq!(report.missing, vec![grant.id.clone()]);
        assert!(p.store.grant(&grant.id).unwrap().membership_missing);
        assert!(p.bus.types_for(&grant.id).contains(&"Drift Detected"));
        // Reported once, not at every sync.
        let again = reconcile(&p.ctx(), "corp", p.jc.as_ref(), &mut snapshot, p.clock.now()).await;
        assert!(again.missing.is_empty());
    }

    #[tokio::test]
    async fn a_grant_created_while_the_fetch_ran_is_left_to_the_next_sync() {
        let p = Parts::new();
        let fetch_started = p.clock.now();
        let mut snapshot = p.snapshot(); // fetched before the grant
        p.clock.advance(Duration::seconds(1));
        let grant = p.grant("alice@corp.com").await;
        let report = reconcile(&p.ctx(), "corp", p.jc.as_ref(), &mut snapshot, fetch_started).await;
        assert!(report.missing.is_empty(), "{report:?}");
        assert!(!p.store.grant(&grant.id).unwrap().membership_missing);
    }

    #[tokio::test]
    async fn a_membership_whose_removal_never_happened_is_removed_and_reported() {
        let p = Parts::new();
        let grant = p.grant("alice@corp.com").await;
        // JumpCloud answers "not a member" at the end (a lagging replica): the product removed
        // nothing, and the membership shows up again.
        p.jc.unset_member("g1", "u1");
        let ended = revoke_grant(&p.ctx(), &grant.id, "admin", EndReason::Revoked).await.unwrap();
        assert_eq!(ended.membership, Some(MembershipEnd::AlreadyRemoved));
        p.jc.set_member("g1", "u1");
        p.clock.advance(Duration::minutes(10));
        let mut snapshot = p.snapshot();
        let report = reconcile(&p.ctx(), "corp", p.jc.as_ref(), &mut snapshot, p.clock.now()).await;
        assert_eq!(report.removed, vec![(grant.id.clone(), "g1".into(), "u1".into())]);
        assert!(report.readded.is_empty());
        assert!(!p.is_member("u1"));
        assert!(snapshot.memberships.is_empty(), "the stored directory will match JumpCloud");
        let drift = p.bus.published().into_iter().find(|e| e.detail_type == EventType::DriftDetected).unwrap();
        assert_eq!(drift.detail["drift"], "outlived_grant");
    }

    #[tokio::test]
    async fn a_membership_restored_after_the_product_removed_it_is_reported_once_and_left_alone() {
        let p = Parts::new();
        let grant = p.grant("alice@corp.com").await;
        let ended = revoke_grant(&p.ctx(), &grant.id, "admin", EndReason::Revoked).await.unwrap();
        assert_eq!(ended.membership, Some(MembershipEnd::Removed));
        assert_eq!(p.store.grant(&grant.id).unwrap().membership_end, Some(MembershipEnd::Removed));
        // An admin puts alice back on purpose, in JumpCloud's console.
        p.jc.set_member("g1", "u1");
        p.clock.advance(Duration::minutes(10));
        let mut snapshot = p.snapshot();
        let report = reconcile(&p.ctx(), "corp", p.jc.as_ref(), &mut snapshot, p.clock.now()).await;
        assert!(report.removed.is_empty(), "{report:?}");
        assert_eq!(report.readded, vec![(grant.id.clone(), "g1".into(), "u1".into())]);
        assert!(p.is_member("u1"), "restored access is respected");
        let drift = p.bus.published().into_iter().find(|e| e.detail_type == EventType::DriftDetected).unwrap();
        assert_eq!(drift.detail["drift"], "readded_outside");
        // The next sync does not report it again.
        p.clock.advance(Duration::minutes(10));
        let mut snapshot = p.snapshot();
        let again = reconcile(&p.ctx(), "corp", p.jc.as_ref(), &mut snapshot, p.clock.now()).await;
        assert!(again.readded.is_empty() && again.removed.is_empty(), "{again:?}");
        assert!(p.is_member("u1"));
        let drifts = p.store.audit().iter().filter(|r| r.action == AuditAction::DriftDetected).count();
        assert_eq!(drifts, 1);
    }

    #[tokio::test]
    async fn memberships_held_by_another_grant_or_standing_access_are_kept() {
        let p = Parts::new();
        let old = p.grant("alice@corp.com").await;
        let current = p.grant("alice@corp.com").await; // overlapping: holds the membership
        revoke_grant(&p.ctx(), &old.id, "admin", EndReason::Revoked).await.unwrap();
        p.jc.members.lock().unwrap().get_mut("g1").unwrap().insert("u2".into()); // bob's standing access
        let bobs = p.grant("bob@corp.com").await;
        assert!(bobs.preexisting_membership);
        revoke_grant(&p.ctx(), &bobs.id, "admin", EndReason::Revoked).await.unwrap();
        p.clock.advance(Duration::minutes(10));
        let mut snapshot = p.snapshot();
        let report = reconcile(&p.ctx(), "corp", p.jc.as_ref(), &mut snapshot, p.clock.now()).await;
        assert!(report.removed.is_empty(), "{report:?}");
        assert!(report.missing.is_empty(), "an active grant whose membership is there is not drift: {report:?}");
        assert!(p.is_member("u1"), "still held by {}", current.id);
        assert!(p.is_member("u2"), "standing access is never touched");
    }
}
