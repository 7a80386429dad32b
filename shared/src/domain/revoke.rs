//! Revoke, expire and sweep: end a grant and remove its membership when nothing else holds it.
//!
//! One path settles every grant, whoever asks (`DELETE /grants/{id}`, the grant's expiry
//! schedule, the sweep), so that repeated and concurrent deliveries end in one outcome
//! (invariant 5):
//! 1. The grant is read; an expired or revoked one is returned unchanged (not an error).
//! 2. The membership's lease is locked, so that no grant or revocation of the same membership
//!    runs meanwhile, and what may have changed while waiting is read again.
//! 3. The membership is removed only if this grant is the lease's last holder (invariant 3) and
//!    the membership did not pre-exist (invariant 2). JumpCloud's 404 means it is gone already.
//! 4. JumpCloud failed: the grant stays active and in the sweep's index (overdue, or made due
//!    now if it was a revocation), `Revocation Failed` is audited and published, and the sweep
//!    retries it next time (invariant 1).
//! 5. Otherwise the grant ends, leaves the lease and the sweep's index, and its audit records
//!    are written, in one atomic store operation; then the event is published.
//!
//! The sweep finds every grant due in the index (not a scan) and settles it the same way: active
//! grants past expiry whose schedule never fired or was never created, revocations that failed,
//! grants left pending by a crash, and failed grants whose add may have left a membership.

use super::grant::{
    lock, publish, resolve_integration, source_mismatch, synced_membership, unlock, GrantContext, GrantError,
};
use super::request::{end_request, RequestEnd, RequestError};
use crate::{
    domain::model::{
        AuditAction, AuditOutcome, AuditRecord, EndReason, EventType, Grant, GrantStatus, Lease, LeaseHold,
        MembershipEnd, RevocationRequest, ACTOR_SWEEP,
    },
    ports::DirectoryError,
    ports::{Ending, GrantStoreError, RemoveOutcome, SecretsError},
};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use serde::Serialize;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("grant {0} not found")]
    NotFound(String),
    /// An expiry delivered before the grant's time (a schedule firing early): nothing was done;
    /// the schedule's retry or the sweep ends the grant when it is due.
    #[error("grant {grant_id} is not due before {expires_at}")]
    NotDue { grant_id: String, expires_at: DateTime<Utc> },
    #[error("the membership is being changed by another request; retry shortly")]
    Busy,
    #[error(transparent)]
    Directory(DirectoryError),
    #[error("the grant's integration {0:?} is no longer configured")]
    UnknownIntegration(String),
    /// Another secret (or organization) stands behind the grant's integration name now: removing
    /// through it could "succeed" in the wrong organization while the membership stays.
    #[error("{0}: refusing to revoke through it")]
    IntegrationChanged(String),
    #[error("integrations unavailable: {0}")]
    Integrations(SecretsError),
    /// Ending a request awaiting approval failed.
    #[error("{0}")]
    Request(String),
    #[error(transparent)]
    Store(GrantStoreError),
}

impl From<GrantStoreError> for RevokeError {
    fn from(e: GrantStoreError) -> Self {
        match e {
            GrantStoreError::LeaseBusy { .. } => Self::Busy,
            other => Self::Store(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokeOutcome {
    pub grant: Grant,
    /// This call settled the grant; `false`: it was settled already (or by a concurrent call).
    pub changed: bool,
    /// What happened to the membership, when this call settled the grant.
    pub membership: Option<MembershipEnd>,
}

/// Ends a grant: `Revoked` for `DELETE /grants/{id}`, `Expired` for its schedule. Idempotent: a
/// grant already ended is returned unchanged. A failed grant whose add may have left a membership
/// is cleaned up (it stays `failed`).
pub async fn revoke_grant(
    ctx: &GrantContext<'_>,
    grant_id: &str,
    actor: &str,
    reason: EndReason,
) -> Result<RevokeOutcome, RevokeError> {
    // An extension landing between the read and the end makes the end fail (it is conditioned
    // on the revision read): read again and decide again.
    for _ in 0..3 {
        match revoke_once(ctx, grant_id, actor, reason).await {
            Err(RevokeError::Store(GrantStoreError::Conflict(_))) => continue,
            other => return other,
        }
    }
    revoke_once(ctx, grant_id, actor, reason).await
}

async fn revoke_once(
    ctx: &GrantContext<'_>,
    grant_id: &str,
    actor: &str,
    reason: EndReason,
) -> Result<RevokeOutcome, RevokeError> {
    let grant = ctx.store.get(grant_id).await?.ok_or_else(|| RevokeError::NotFound(grant_id.to_owned()))?;
    if grant.status.is_final() {
        return Ok(unchanged(grant));
    }
    // A revocation that failed before is finished as one, whoever delivers it now.
    let reason = if grant.revocation_requested.is_some() { EndReason::Revoked } else { reason };
    let open = matches!(grant.status, GrantStatus::Pending | GrantStatus::Active | GrantStatus::PendingApproval);
    let expires_at = grant.expiry();
    if reason == EndReason::Expired && open && ctx.clock.now() + ctx.policy.early_expiry_tolerance < expires_at {
        tracing::warn!(grant_id, %expires_at, "expiry delivered early; left to the sweep");
        return Err(RevokeError::NotDue { grant_id: grant.id, expires_at });
    }
    settle(ctx, grant, actor, reason).await
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Grants found due.
    pub examined: usize,
    /// Active or pending grants ended.
    pub ended: usize,
    /// Failed grants whose possible leftover membership was settled.
    pub cleaned_up: usize,
    /// Settled meanwhile by someone else.
    pub unchanged: usize,
    /// Skipped because another request held the lease: the next sweep retries.
    pub busy: usize,
    /// Could not be settled (JumpCloud or the store failed): the next sweep retries.
    pub failed: usize,
    pub failures: Vec<SweepFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepFailure {
    pub grant_id: String,
    pub error: String,
}

/// Settles every grant due at `now`: expired ones, failed revocations, leftovers. Continues past
/// failures (they stay due, and the next sweep retries them).
pub async fn sweep(ctx: &GrantContext<'_>, now: DateTime<Utc>) -> Result<SweepReport, RevokeError> {
    let mut report = SweepReport::default();
    let mut next: Option<String> = None;
    loop {
        let page = ctx.store.due(now, ctx.policy.sweep_page, next.as_deref()).await?;
        report.examined += page.grants.len();
        let results: Vec<_> = stream::iter(page.grants)
            .map(|grant| async move {
                let (id, cleanup) = (grant.id.clone(), grant.status == GrantStatus::Failed);
                let reason = if grant.revocation_requested.is_some() { EndReason::Revoked } else { EndReason::Expired };
                (id, cleanup, settle(ctx, grant, ACTOR_SWEEP, reason).await)
            })
            .buffer_unordered(ctx.policy.sweep_concurrency.max(1))
            .collect()
            .await;
        for (grant_id, cleanup, result) in results {
            match result {
                Ok(RevokeOutcome { changed: true, .. }) if cleanup => report.cleaned_up += 1,
                Ok(RevokeOutcome { changed: true, .. }) => report.ended += 1,
                Ok(_) => report.unchanged += 1,
                Err(RevokeError::Busy) => report.busy += 1,
                Err(e) => {
                    report.failed += 1;
                    report.failures.push(SweepFailure { grant_id, error: e.to_string() });
                }
            }
        }
        next = page.next;
        if next.is_none() || report.examined >= ctx.policy.sweep_max {
            break;
        }
    }
    if report.examined > 0 {
        tracing::info!(
            examined = report.examined,
            ended = report.ended,
            cleaned_up = report.cleaned_up,
            busy = report.busy,
            failed = report.failed,
            "sweep done"
        );
    }
    Ok(report)
}

fn unchanged(grant: Grant) -> RevokeOutcome {
    RevokeOutcome { grant, changed: false, membership: None }
}

/// Steps 2 to 5 for one grant.
async fn settle(
    ctx: &GrantContext<'_>,
    seen: Grant,
    actor: &str,
    reason: EndReason,
) -> Result<RevokeOutcome, RevokeError> {
    if seen.status == GrantStatus::PendingApproval {
        // A request holds no membership: its end is a change of the request alone.
        let end = match reason {
            EndReason::Expired => RequestEnd::Expired,
            EndReason::Revoked => RequestEnd::Cancelled,
        };
        return match end_request(ctx, seen, actor, end).await {
            Ok((grant, changed)) => Ok(RevokeOutcome { grant, changed, membership: None }),
            Err(RequestError::Store(e)) => Err(e.into()),
            Err(e) => Err(RevokeError::Request(e.to_string())),
        };
    }
    let span = tracing::info_span!("settle", grant_id = %seen.id, integration = %seen.integration,
        user = %seen.user.id, group = %seen.group.id, actor);
    async {
        let hold = LeaseHold { key: seen.lease_key(), owner: format!("revoke:{}", uuid::Uuid::new_v4()) };
        let lease = lock(ctx, &hold.key, &hold.owner).await?;
        settle_locked(ctx, seen, actor, reason, &lease, &hold).await
    }
    .instrument(span)
    .await
}

async fn settle_locked(
    ctx: &GrantContext<'_>,
    seen: Grant,
    actor: &str,
    reason: EndReason,
    lease: &Lease,
    hold: &LeaseHold,
) -> Result<RevokeOutcome, RevokeError> {
    // Under the lock, the lease is the truth. An active (or failed) grant that is still a holder
    // cannot have changed status while we waited; a pending one may have become active, and one
    // that left the lease has been settled by someone else: read those again.
    let holder = lease.holders.contains(&seen.id);
    let grant = if holder && seen.status != GrantStatus::Pending {
        seen
    } else {
        match ctx.store.get(&seen.id).await {
            Ok(Some(grant)) => grant,
            Ok(None) => {
                unlock(ctx, hold).await;
                return Err(RevokeError::NotFound(seen.id));
            }
            Err(e) => {
                unlock(ctx, hold).await;
                return Err(e.into());
            }
        }
    };
    let open = match grant.status {
        GrantStatus::Pending | GrantStatus::Active => true,
        GrantStatus::Failed => holder,
        // Requests are ended by `domain::request` (see `settle`), never here.
        GrantStatus::PendingApproval
        | GrantStatus::Expired
        | GrantStatus::Revoked
        | GrantStatus::Denied
        | GrantStatus::Cancelled
        | GrantStatus::RequestExpired => false,
    };
    if !open {
        unlock(ctx, hold).await;
        return Ok(unchanged(grant));
    }
    if !holder {
        tracing::error!(
            status = grant.status.as_str(),
            "an open grant is not a holder of its lease; settling it anyway"
        );
    }

    // Invariants 3 and 2: the last holder removes the membership, unless it pre-existed.
    let others = lease.holders.iter().filter(|h| **h != grant.id).count();
    let membership = if others > 0 {
        MembershipEnd::KeptForOtherGrants
    } else if lease.preexisting
        // A grant left pending never learnt what JumpCloud answered: the synced directory from
        // before it decides, as for an ambiguous 409.
        || (grant.status == GrantStatus::Pending && synced_membership(ctx, &hold.key, grant.granted_at.unwrap_or(grant.requested_at)).await)
    {
        MembershipEnd::KeptPreexisting
    } else {
        match remove_membership(ctx, &grant).await {
            Ok(RemoveOutcome::Removed) => MembershipEnd::Removed,
            Ok(RemoveOutcome::NotMember) => MembershipEnd::AlreadyRemoved,
            Err(error) => return Err(removal_failed(ctx, &grant, actor, reason, hold, error).await),
        }
    };

    let now = ctx.clock.now();
    let status = match grant.status {
        GrantStatus::Active => reason.status(),
        _ => GrantStatus::Failed,
    };
    let audit = end_audit(&grant, status, membership, actor, now, others);
    let ending =
        Ending { grant: grant.clone(), status, ended_at: now, last_holder: others == 0, membership: Some(membership) };
    let ended = match ctx.store.end(&ending, hold, &audit).await {
        Ok(ended) => ended,
        Err(e) => {
            // Still open and a holder: the next delivery or sweep finishes it (a removed
            // membership then answers 404, which counts as removed).
            unlock(ctx, hold).await;
            return Err(e.into());
        }
    };
    tracing::info!(status = status.as_str(), membership = ?membership, "grant settled");

    // Ended before its expiry: the schedule would fire for nothing. At or after the expiry it
    // fired (and deletes itself after completion) or will find the grant ended.
    if now < grant.expiry() {
        if let Some(name) = &ended.schedule_name {
            if let Err(e) = ctx.scheduler.delete(name).await {
                tracing::warn!(error = %e, schedule = %name, "could not delete the expiry schedule; it will find the grant ended");
            }
        }
    }
    let event = match (grant.status, status) {
        (GrantStatus::Active, GrantStatus::Revoked) => Some(EventType::GrantRevoked),
        (GrantStatus::Active, GrantStatus::Expired) => Some(EventType::GrantExpired),
        (GrantStatus::Pending, _) => Some(EventType::GrantFailed),
        // A failed grant's clean-up: the audit trail records it; its failure was published.
        _ => None,
    };
    if let Some(event) = event {
        publish(ctx.events, event, &ended, actor, Some(membership), None).await;
    }
    Ok(RevokeOutcome { grant: ended, changed: true, membership: Some(membership) })
}

/// The audit records of a settled grant: its new status (unless it stays failed), and the
/// membership's fate.
fn end_audit(
    grant: &Grant,
    status: GrantStatus,
    membership: MembershipEnd,
    actor: &str,
    now: DateTime<Utc>,
    others: usize,
) -> Vec<AuditRecord> {
    let mut audit = Vec::with_capacity(2);
    let record = |action| AuditRecord::new(grant, now, actor, action, AuditOutcome::Succeeded);
    match (grant.status, status) {
        (GrantStatus::Active, GrantStatus::Revoked) => {
            let mut r = record(AuditAction::Revoked);
            if let Some(request) = &grant.revocation_requested {
                r = r.reason(format!("revocation requested by {} at {}", request.by, request.at.to_rfc3339()));
            }
            audit.push(r);
        }
        (GrantStatus::Active, _) => audit.push(record(AuditAction::Expired)),
        (GrantStatus::Pending, _) => {
            audit.push(record(AuditAction::Failed).detail("left pending (its request did not finish); settled"))
        }
        _ => {}
    }
    let (action, detail) = match membership {
        MembershipEnd::Removed => (AuditAction::MembershipRemoved, "removed from the group".to_owned()),
        MembershipEnd::AlreadyRemoved => {
            (AuditAction::MembershipRemoved, "not a member any more (removed outside the product)".to_owned())
        }
        MembershipEnd::KeptPreexisting => {
            (AuditAction::MembershipKept, "the membership pre-existed the grant: left in place".to_owned())
        }
        MembershipEnd::KeptForOtherGrants => {
            (AuditAction::MembershipKept, format!("still held by {others} other grant(s)"))
        }
    };
    audit.push(record(action).detail(detail));
    audit
}

#[derive(Debug)]
enum RemovalError {
    Directory(DirectoryError),
    UnknownIntegration(String),
    IntegrationChanged(String),
    Integrations(SecretsError),
}

async fn remove_membership(ctx: &GrantContext<'_>, grant: &Grant) -> Result<RemoveOutcome, RemovalError> {
    let integration = resolve_integration(ctx.catalog, Some(&grant.integration)).await.map_err(|e| match e {
        GrantError::Integrations(e) => RemovalError::Integrations(e),
        _ => RemovalError::UnknownIntegration(grant.integration.clone()),
    })?;
    if let Some(why) = source_mismatch(grant, &integration) {
        return Err(RemovalError::IntegrationChanged(why));
    }
    let directory = ctx.directories.directory(&integration);
    directory.remove_member(&grant.group.id, &grant.user.id).await.map_err(RemovalError::Directory)
}

/// Step 4: the grant stays as it is, and due, so that the sweep retries.
async fn removal_failed(
    ctx: &GrantContext<'_>,
    grant: &Grant,
    actor: &str,
    reason: EndReason,
    hold: &LeaseHold,
    error: RemovalError,
) -> RevokeError {
    let error = match error {
        RemovalError::Directory(e) => RevokeError::Directory(e),
        RemovalError::UnknownIntegration(name) => RevokeError::UnknownIntegration(name),
        RemovalError::IntegrationChanged(why) => RevokeError::IntegrationChanged(why),
        RemovalError::Integrations(e) => RevokeError::Integrations(e),
    };
    let now = ctx.clock.now();
    // A revocation before expiry would otherwise wait for the expiry: the sweep finishes it now.
    let request = (reason == EndReason::Revoked
        && grant.status != GrantStatus::Failed
        && grant.revocation_requested.is_none()
        && now < grant.expiry())
    .then(|| RevocationRequest { at: now, by: actor.to_owned() });
    let audit = AuditRecord::new(grant, now, actor, AuditAction::RevocationFailed, AuditOutcome::Failed)
        .detail(format!("{error}; the sweep retries"));
    if let Err(e) = ctx.store.revocation_failed(&grant.id, request.as_ref(), hold, &[audit]).await {
        tracing::error!(error = %e, "could not record the failed revocation");
        unlock(ctx, hold).await;
    }
    // `event` is what the deployment's metric filter counts (the revocation-failure alarm).
    tracing::error!(event = "revocation_failed", grant_id = %grant.id, error = %error, "revocation failed; the grant stays until the sweep succeeds");
    publish(ctx.events, EventType::RevocationFailed, grant, actor, None, Some(error.to_string())).await;
    error
}
