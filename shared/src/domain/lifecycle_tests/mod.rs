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
                // Invariant 8: a request holds no membership, ever; an open one is due in the index.
                GrantStatus::PendingApproval => {
                    assert!(!holds && indexed.contains(&g.id), "request {} held or not indexed", g.id);
                    assert!(g.granted_at.is_none() && g.expires_at.is_none());
                }
                GrantStatus::Denied | GrantStatus::Cancelled | GrantStatus::RequestExpired => {
                    assert!(!holds && !indexed.contains(&g.id), "ended request {} held or indexed", g.id);
                    assert!(g.granted_at.is_none() && g.ended_at.is_some());
                }
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

mod approvals;
mod extensions;
mod failures;
mod invariants;
mod outside;
mod properties;
mod requests;
