//! The grant lifecycle over test doubles, around a grant store of the test's choosing: the
//! in-memory store in the domain's unit tests, DynamoDB on moto in the integration tests. The
//! concurrency scenarios that must hold whatever the store live here once; each test runs them
//! in rounds and adds its own store's consistency checks.

use crate::{
    clock::{Clock, ManualClock},
    config::GroupScope,
    domain::model::GrantDuration,
    domain::model::{AuditAction, EndReason, Grant, GrantStatus, MembershipMethod, UserState, ACTOR_SCHEDULE},
    domain::{
        grant::{request_grant, GrantContext, GrantError, GrantOutcome, GrantPolicy, GrantRequest},
        identity::{Principal, PrincipalUser},
        model::{fixtures, DirectoryChanges, DirectoryGroup},
        request::{approve, deny, RequestError},
        revoke::{revoke_grant, sweep, RevokeError, RevokeOutcome, SweepReport},
    },
    ports::{DirectoryStore, GrantStore, MembershipOracle},
    testing::FakeDirectory,
    testing::{FakeIntegrations, FakeScheduler, FixedPolicy, MemoryStore, RecordingBus},
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::{atomic::Ordering, Arc};

pub const ADMIN: &str = "arn:aws:iam::123456789012:user/admin";
pub const REVOKER: &str = "arn:aws:iam::123456789012:user/security";

/// The harness clock's start: 2026-11-23 12:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

/// The access policy of the request scenarios: `prod-db-*` for engineering, up to 2h with a
/// ticket; two approvals of the grantee's manager and db-owners; up to 30m auto-approved; break
/// glass allowed. Nothing else may be requested.
pub const REQUEST_POLICY: &str = r#"
version: 1
defaults:
  max_duration: 4h
  approval: {approvers: [manager], required: 1, timeout: 24h}
rules:
  - groups: ["prod-db-*"]
    eligible: {groups: [engineering]}
    max_duration: 2h
    approval:
      approvers: [manager, {group: db-owners}]
      required: 2
      auto_approve_up_to: 30m
      timeout: 4h
    ticket: "INC-[0-9]+"
    break_glass: true
  - groups: ["*"]
    eligible: nobody
"#;

/// A person signed in: the JumpCloud user `id` of "corp".
pub fn person(id: &str, email: &str) -> Principal {
    Principal {
        id: format!("https://idp.corp.com#{id}"),
        admin: false,
        users: vec![PrincipalUser { integration: "corp".into(), id: id.into(), email: email.into() }],
    }
}

/// One JumpCloud organization ("corp") and every port of the lifecycle: `store` and `oracle` as
/// given, the rest doubles.
pub struct LifecycleHarness<S, O> {
    pub store: S,
    pub oracle: O,
    pub scheduler: FakeScheduler,
    pub bus: RecordingBus,
    pub integrations: FakeIntegrations,
    pub clock: ManualClock,
    pub policy: GrantPolicy,
    pub jc: Arc<FakeDirectory>,
    /// The synced directory (eligibility, approvers): empty until a test fills it.
    pub synced: MemoryStore,
    /// The applied access policy: none until a test applies one.
    pub policies: FixedPolicy,
}

impl<S: GrantStore, O: MembershipOracle> LifecycleHarness<S, O> {
    /// alice (u1), bob (u2), sam (u3, suspended), user10..user29 (u10..u29); groups
    /// `prod-db-admins` (g1, static), `prod-auto` (g2, dynamic), `finance` (g3, static but outside
    /// `prod-*`). `members`: standing memberships `(group, user)`.
    pub fn new(store: S, oracle: O, members: &[(&str, &str)]) -> Self {
        let mut users = vec![
            FakeDirectory::user("u1", "Alice@corp.com"),
            FakeDirectory::user("u2", "bob@corp.com"),
            FakeDirectory::user("u3", "sam@corp.com"),
        ];
        users[2].state = UserState::Suspended;
        users.extend((10..30).map(|i| FakeDirectory::user(&format!("u{i}"), &format!("user{i}@corp.com"))));
        let mut dynamic = FakeDirectory::group("g2", "prod-auto");
        dynamic.membership_method = MembershipMethod::DynamicAutomated;
        let groups = vec![FakeDirectory::group("g1", "prod-db-admins"), dynamic, FakeDirectory::group("g3", "finance")];
        let jc = Arc::new(FakeDirectory::with(users, groups, members));
        let integrations = FakeIntegrations::default();
        integrations.add("corp", jc.clone());
        Self {
            store,
            oracle,
            scheduler: FakeScheduler::default(),
            bus: RecordingBus::default(),
            integrations,
            clock: ManualClock::new(t0()),
            policy: GrantPolicy {
                min_duration: GrantDuration::from_secs(60),
                max_duration: GrantDuration::from_secs(12 * 3600),
                requestable_groups: GroupScope::parse("prod-*").unwrap(),
                // Contended locks are waited for, not failed, in the concurrency scenarios.
                lock_attempts: 100,
                lock_backoff: std::time::Duration::from_millis(2),
                ..GrantPolicy::default()
            },
            jc,
            synced: MemoryStore::default(),
            policies: FixedPolicy::default(),
        }
    }

    pub fn ctx(&self) -> GrantContext<'_> {
        GrantContext {
            store: &self.store,
            scheduler: &self.scheduler,
            events: &self.bus,
            catalog: &self.integrations,
            directories: &self.integrations,
            oracle: &self.oracle,
            directory_store: &self.synced,
            policies: &self.policies,
            clock: &self.clock,
            policy: &self.policy,
        }
    }

    /// The synced directory of the request scenarios: alice (u1, manager bob u2), user10
    /// (manager sam, suspended) and user11 (no manager) in engineering; user12, user13 and alice
    /// own the databases (db-owners).
    pub async fn sync_request_directory(&self) {
        let user = |id: &str, email: &str, manager: Option<&str>| {
            let mut u = fixtures::user(id, email);
            u.manager_id = manager.map(str::to_owned);
            u
        };
        let mut sam = user("u3", "sam@corp.com", None);
        sam.state = UserState::Suspended;
        let group = |id: &str, name: &str| DirectoryGroup {
            requestable: name.starts_with("prod-"),
            ..fixtures::group(id, name)
        };
        let member = fixtures::member;
        let changes = DirectoryChanges {
            put_users: vec![
                user("u1", "alice@corp.com", Some("u2")),
                user("u2", "bob@corp.com", None),
                sam,
                user("u10", "user10@corp.com", Some("u3")),
                user("u11", "user11@corp.com", None),
                user("u12", "user12@corp.com", None),
                user("u13", "user13@corp.com", None),
            ],
            put_groups: vec![group("g1", "prod-db-admins"), group("g-eng", "engineering"), group("g-own", "db-owners")],
            put_memberships: vec![
                member("g-eng", "u1"),
                member("g-eng", "u10"),
                member("g-eng", "u11"),
                member("g-own", "u12"),
                member("g-own", "u13"),
                member("g-own", "u1"),
            ],
            ..DirectoryChanges::default()
        };
        self.synced.apply_changes("corp", &changes).await.expect("synced directory");
    }

    /// `caller` asks for `prod-db-admins` for themself (a ticket in the reason).
    pub async fn request_as(&self, caller: &Principal, duration: &str) -> Result<Grant, GrantError> {
        let request = GrantRequest {
            user: None,
            reason: "INC-4711 restore the replica".into(),
            requested_by: caller.id.clone(),
            caller_users: caller.users.clone(),
            caller_admin: false,
            ..self.request("ignored", duration)
        };
        request_grant(&self.ctx(), request).await.map(|o| o.grant)
    }

    /// Decisions at once (needs [`Self::sync_request_directory`] and [`REQUEST_POLICY`]): three
    /// approvers approve alice's request (two required); user11's request is approved and
    /// denied at once; alice's next one is approved and cancelled at once; user11's next one gets
    /// its last approval as its timeout's expiry is delivered (within the early-delivery
    /// tolerance). Returns the four requests as stored after, for the caller to check with its
    /// store's own reads.
    pub async fn concurrent_decisions(&self) -> [Grant; 4] {
        let ctx = self.ctx();
        let (bob, owner12, owner13) =
            (person("u2", "bob@corp.com"), person("u12", "user12@corp.com"), person("u13", "user13@corp.com"));
        let alice = person("u1", "alice@corp.com");
        let first = self.request_as(&alice, "1h").await.expect("request");
        let (a, b, c) = tokio::join!(
            approve(&ctx, &first.id, &bob, None),
            approve(&ctx, &first.id, &owner12, None),
            approve(&ctx, &first.id, &owner13, None),
        );
        let activations = [&a, &b, &c].iter().filter(|r| matches!(r, Ok(g) if g.status == GrantStatus::Active)).count();
        assert_eq!(activations, 1, "exactly one activation: {a:?} {b:?} {c:?}");
        for result in [a, b, c] {
            // The others counted before the last, or found it decided (active, or being activated).
            assert!(
                matches!(result, Ok(_) | Err(RequestError::NotPending(GrantStatus::Active | GrantStatus::Pending))),
                "{result:?}"
            );
        }

        // user11 has no manager: the two owners are the approvers, both needed.
        let second = self.request_as(&person("u11", "user11@corp.com"), "1h").await.expect("request");
        let (approved, denied) =
            tokio::join!(approve(&ctx, &second.id, &owner12, None), deny(&ctx, &second.id, &owner13, Some("no")));
        assert!(denied.is_ok() || approved.is_ok(), "{approved:?} {denied:?}");

        // Approved by one, then its last approval races its cancellation.
        let third = self.request_as(&alice, "1h").await.expect("request");
        approve(&ctx, &third.id, &bob, None).await.expect("first approval");
        let (approved, cancelled) = tokio::join!(
            approve(&ctx, &third.id, &owner12, None),
            revoke_grant(&ctx, &third.id, &alice.id, EndReason::Revoked),
        );
        let third_now = self.store.get(&third.id).await.unwrap().unwrap();
        match third_now.status {
            GrantStatus::Cancelled => {
                assert!(matches!(approved, Err(RequestError::NotPending(GrantStatus::Cancelled))), "{approved:?}")
            }
            // Approved first: the DELETE then ended the active grant (a revocation).
            GrantStatus::Revoked => assert!(approved.is_ok() && cancelled.is_ok(), "{approved:?} {cancelled:?}"),
            GrantStatus::Active => assert!(cancelled.is_ok(), "{cancelled:?}"),
            other => panic!("unexpected {other:?}: {approved:?} {cancelled:?}"),
        }
        // The last approval against the timeout's expiry, two seconds before the timeout.
        let fourth = self.request_as(&person("u11", "user11@corp.com"), "1h").await.expect("request");
        approve(&ctx, &fourth.id, &owner12, None).await.expect("first approval");
        self.clock.set(fourth.expiry() - Duration::seconds(2));
        let (approved, expired) = tokio::join!(
            approve(&ctx, &fourth.id, &owner13, None),
            revoke_grant(&ctx, &fourth.id, ACTOR_SCHEDULE, EndReason::Expired),
        );
        let fourth_now = self.store.get(&fourth.id).await.unwrap().unwrap();
        match fourth_now.status {
            GrantStatus::RequestExpired => {
                assert!(matches!(approved, Err(RequestError::NotPending(_))), "{approved:?}")
            }
            GrantStatus::Active => assert!(matches!(expired, Ok(RevokeOutcome { changed: false, .. })), "{expired:?}"),
            other => panic!("unexpected {other:?}: {approved:?} {expired:?}"),
        }
        let get = |id: String| async move { self.store.get(&id).await.unwrap().unwrap() };
        [get(first.id).await, get(second.id).await, third_now, fourth_now]
    }

    /// A request for `prod-db-admins` by [`ADMIN`].
    pub fn request(&self, user: &str, duration: &str) -> GrantRequest {
        GrantRequest {
            user: Some(user.into()),
            group: "prod-db-admins".into(),
            duration: duration.parse().unwrap(),
            reason: "incident 4711".into(),
            integration: None,
            requested_by: ADMIN.into(),
            caller_users: vec![],
            caller_admin: true,
            break_glass: false,
            idempotency_key: None,
        }
    }

    /// A new grant of `prod-db-admins` (panics on failure, or on a replay).
    pub async fn grant(&self, user: &str, duration: &str) -> Grant {
        let outcome = request_grant(&self.ctx(), self.request(user, duration)).await.expect("grant");
        assert!(!outcome.replayed);
        outcome.grant
    }

    /// `DELETE /grants/{id}` by [`REVOKER`].
    pub async fn revoke(&self, id: &str) -> Result<RevokeOutcome, RevokeError> {
        revoke_grant(&self.ctx(), id, REVOKER, EndReason::Revoked).await
    }

    /// What the expiry schedule delivers.
    pub async fn expire(&self, id: &str) -> Result<RevokeOutcome, RevokeError> {
        revoke_grant(&self.ctx(), id, ACTOR_SCHEDULE, EndReason::Expired).await
    }

    pub async fn sweep(&self) -> SweepReport {
        sweep(&self.ctx(), self.clock.now()).await.expect("sweep")
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// alice in prod-db-admins, in JumpCloud.
    pub fn alice_member(&self) -> bool {
        self.jc.is_member("g1", "u1")
    }

    /// The grant's status as stored.
    pub async fn stored_status(&self, id: &str) -> GrantStatus {
        self.store.get(id).await.unwrap().expect("grant").status
    }

    /// The grant's audit actions, oldest first, as stored.
    pub async fn stored_actions(&self, id: &str) -> Vec<AuditAction> {
        self.store.audit_for(id).await.unwrap().into_iter().map(|r| r.action).collect()
    }
}

/// Invariant 5: the schedule, the sweep and `DELETE` delivered together for a due grant settle it
/// exactly once, with one removal, one pair of terminal audit records and one event.
pub async fn deliveries_together_settle_once<S, O>(w: Arc<LifecycleHarness<S, O>>, round: usize)
where
    S: GrantStore + 'static,
    O: MembershipOracle + 'static,
{
    let grant = w.grant("alice@corp.com", "1h").await;
    w.advance(Duration::hours(1));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (w, id) = (w.clone(), grant.id.clone());
            tokio::spawn(async move {
                match i % 3 {
                    0 => w.revoke(&id).await.map(|o| o.changed),
                    1 => w.expire(&id).await.map(|o| o.changed),
                    _ => sweep(&w.ctx(), w.clock.now()).await.map(|r| r.ended == 1),
                }
            })
        })
        .collect();
    let mut settled = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(changed) => settled += usize::from(changed),
            Err(RevokeError::Busy) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    assert_eq!(settled, 1, "round {round}: settled by exactly one delivery");
    assert!(matches!(w.stored_status(&grant.id).await, GrantStatus::Revoked | GrantStatus::Expired), "round {round}");
    assert!(!w.alice_member(), "round {round}");
    let terminal: Vec<_> = w
        .stored_actions(&grant.id)
        .await
        .into_iter()
        .filter(|a| matches!(a, AuditAction::Revoked | AuditAction::Expired | AuditAction::MembershipRemoved))
        .collect();
    assert_eq!(terminal.len(), 2, "round {round}: {terminal:?}");
    assert_eq!(w.bus.types_for(&grant.id).len(), 2, "round {round}");
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 1, "round {round}: one removal");
}

/// Invariants 2, 3 and 5 at once: a new grant for a membership whose old grant is being revoked,
/// expired and swept at the same moment. Whatever the interleaving, the old grant ends once and
/// the new one holds the membership. Returns the new grant (still active: the caller checks its
/// store's lease, then ends it).
pub async fn grant_during_revocations_keeps_the_membership<S, O>(
    w: Arc<LifecycleHarness<S, O>>,
    standing: bool,
    round: usize,
) -> Grant
where
    S: GrantStore + 'static,
    O: MembershipOracle + 'static,
{
    let old = w.grant("alice@corp.com", "1h").await;
    w.advance(Duration::hours(1));
    let new_grant = {
        let w = w.clone();
        tokio::spawn(async move { request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await })
    };
    let others: Vec<_> = (0..4)
        .map(|i| {
            let (w, id) = (w.clone(), old.id.clone());
            tokio::spawn(async move {
                match i {
                    0 => w.revoke(&id).await.map(|_| ()),
                    1 => w.expire(&id).await.map(|_| ()),
                    _ => sweep(&w.ctx(), w.clock.now()).await.map(|_| ()),
                }
            })
        })
        .collect();
    let new_grant: GrantOutcome = new_grant.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
    for t in others {
        match t.await.unwrap() {
            Ok(()) | Err(RevokeError::Busy) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    w.sweep().await;
    assert!(matches!(w.stored_status(&old.id).await, GrantStatus::Revoked | GrantStatus::Expired), "round {round}");
    assert_eq!(w.stored_status(&new_grant.grant.id).await, GrantStatus::Active, "round {round}");
    assert!(w.alice_member(), "round {round}: the new grant's membership was removed");
    assert_eq!(new_grant.grant.preexisting_membership, standing, "round {round}");
    assert_eq!(w.bus.types_for(&old.id).len(), 2, "round {round}: one Created, one end event");
    new_grant.grant
}

/// Invariant 3 under concurrency: six overlapping grants made at once, five revoked at once; the
/// membership stays until the last ends.
pub async fn overlapping_grants_end_with_the_last<S, O>(w: Arc<LifecycleHarness<S, O>>, round: usize)
where
    S: GrantStore + 'static,
    O: MembershipOracle + 'static,
{
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(
                async move { request_grant(&w.ctx(), w.request("alice@corp.com", &format!("{}h", i + 1))).await },
            )
        })
        .collect();
    let mut grants = vec![];
    for t in tasks {
        grants.push(t.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}")).grant);
    }
    assert!(w.alice_member(), "round {round}");
    assert!(grants.iter().all(|g| !g.preexisting_membership), "round {round}");
    let (keep, end) = grants.split_at(1);
    let tasks: Vec<_> = end
        .iter()
        .map(|g| {
            let (w, id) = (w.clone(), g.id.clone());
            tokio::spawn(async move { w.revoke(&id).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(w.alice_member(), "round {round}: removed while a grant still holds it");
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 0, "round {round}");
    w.revoke(&keep[0].id).await.unwrap();
    assert!(!w.alice_member(), "round {round}");
    assert_eq!(w.jc.removes.load(Ordering::SeqCst), 1, "round {round}");
}
