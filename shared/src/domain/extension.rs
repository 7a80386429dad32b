//! Extensions and reminders (SPEC "Who may do what"): `POST /grants/{id}/extend` by the grantee
//! or an admin, on an active grant. An admin's moves the expiry at once (within the product's
//! maximum); anyone else's follows the rule's approval like a request of that length, within
//! `extend.max_total` counted from `granted_at`: applied at once (auto-approval), or kept as the
//! grant's `pending_extension` that approve / deny act on. Every change is conditioned on the
//! grant's revision, and so is a grant's end: an expiry read before an extension fails and is
//! delivered again (`domain::revoke`), finding the grant not yet due.
//!
//! Reminders: a grant whose rule has `remind_before` gets a one-time schedule that far before
//! its expiry (moved with it); its delivery publishes `Grant Expiring Soon` if the grant is
//! still active and due then.

use super::grant::{publish, publish_extension_decision, GrantContext, GrantError, MAX_REASON_CHARS};
use super::request::{approver_of_among, resolve_approvers, RequestError, CONFLICT_ATTEMPTS};
use crate::{
    domain::identity::Principal,
    domain::model::{
        reminder_schedule_name, Approval, AuditAction, AuditOutcome, AuditRecord, EventType, Extension, Grant,
        GrantDuration, GrantStatus, PendingExtension,
    },
    domain::policy::{GroupRef, Refusal},
    ports::GrantStoreError,
};
use chrono::{DateTime, Utc};

/// `POST /grants/{id}/extend`, parsed.
#[derive(Debug, Clone)]
pub struct ExtendRequest {
    pub duration: GrantDuration,
    pub reason: String,
}

/// Extends a grant: `Ok` with the grant as now stored; `pending_extension` set means it awaits
/// approval (HTTP 202), otherwise `expires_at` moved (200). The caller checked visibility; this
/// checks that the caller is the grantee or an admin.
pub async fn extend(
    ctx: &GrantContext<'_>,
    grant_id: &str,
    caller: &Principal,
    request: &ExtendRequest,
) -> Result<Grant, RequestError> {
    let reason = request.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(crate::domain::model::is_unsafe_text_char)
    {
        return Err(RequestError::InvalidComment(format!(
            "reason must be 1 to {MAX_REASON_CHARS} characters, without control or bidirectional-formatting characters"
        )));
    }
    if request.duration < ctx.policy.min_duration {
        return Err(rejected(GrantError::DurationOutOfRange {
            requested: request.duration,
            min: ctx.policy.min_duration,
            max: ctx.policy.max_duration,
        }));
    }
    for _ in 0..CONFLICT_ATTEMPTS {
        let seen = ctx.store.get(grant_id).await?.ok_or_else(|| RequestError::NotFound(grant_id.to_owned()))?;
        let grantee = caller.is_user(&seen.integration, &seen.user.id);
        if !caller.admin && !grantee {
            return Err(RequestError::Forbidden("only the grantee or an admin may extend a grant".into()));
        }
        let now = ctx.clock.now();
        let expires_at = extendable(&seen, now)?;
        let new_expiry = expires_at + request.duration.to_chrono();
        let total = GrantDuration::from_secs(
            (new_expiry - seen.granted_at.unwrap_or(seen.requested_at)).num_seconds().max(0) as u64,
        );
        let mut next = seen.clone();
        next.revision += 1;
        let by = caller.user_in(&seen.integration).map_or(caller.id.clone(), |u| u.email.clone());
        let extension = Extension { duration: request.duration, by, at: now, reason: reason.to_owned() };
        let applied = if caller.admin {
            if total > ctx.policy.max_duration {
                return Err(rejected(GrantError::DurationOutOfRange {
                    requested: total,
                    min: ctx.policy.min_duration,
                    max: ctx.policy.max_duration,
                }));
            }
            true
        } else {
            match by_policy(ctx, &seen, request, reason, total, now).await? {
                None => true,
                Some(pending) => {
                    next.pending_extension = Some(pending);
                    false
                }
            }
        };
        let (action, event) = if applied {
            next.expires_at = Some(new_expiry);
            next.pending_extension = None;
            next.extensions.push(extension);
            (AuditAction::Extended, EventType::GrantExtended)
        } else {
            (AuditAction::ExtensionRequested, EventType::ExtensionRequested)
        };
        let audit = AuditRecord::new(&next, now, &caller.id, action, AuditOutcome::Succeeded)
            .reason(reason.to_owned())
            .detail(format!("by {} until {}", request.duration, next.expiry().to_rfc3339()));
        match ctx.store.extend_grant(&next, &[audit]).await {
            Ok(()) => {}
            Err(GrantStoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        if applied {
            moved(ctx, &next).await;
        }
        publish(ctx.events, event, &next, &caller.id, None, None).await;
        return Ok(next);
    }
    Err(RequestError::Contended)
}

/// An active grant, not past its expiry, without a revocation under way: its expiry.
fn extendable(grant: &Grant, now: DateTime<Utc>) -> Result<DateTime<Utc>, RequestError> {
    if grant.status != GrantStatus::Active {
        return Err(RequestError::NotPending(grant.status));
    }
    let expires_at = grant.expiry();
    if now >= expires_at || grant.revocation_requested.is_some() {
        return Err(RequestError::Expired(expires_at));
    }
    if grant.pending_extension.as_ref().is_some_and(|p| now < p.request_expires_at) {
        return Err(RequestError::Conflict("an extension of this grant already awaits approval".into()));
    }
    Ok(expires_at)
}

fn rejected(error: GrantError) -> RequestError {
    RequestError::Rejected(error)
}

/// A non-admin's extension under the applied policy: `None` to apply it at once, or the
/// pending extension awaiting approval.
async fn by_policy(
    ctx: &GrantContext<'_>,
    grant: &Grant,
    request: &ExtendRequest,
    reason: &str,
    total: GrantDuration,
    now: DateTime<Utc>,
) -> Result<Option<PendingExtension>, RequestError> {
    let applied = ctx.policies.current().await.map_err(|e| rejected(GrantError::Policy(e)))?;
    let applied = applied.ok_or_else(|| rejected(GrantError::NoPolicy))?;
    let group = GroupRef { id: &grant.group.id, name: &grant.group.name };
    let rule = applied
        .policy
        .rule_for(&group)
        .ok_or_else(|| rejected(GrantError::Refused(Refusal::NoRule { group: grant.group.name.clone() })))?;
    if request.duration > rule.max_duration {
        return Err(rejected(GrantError::Refused(Refusal::OverMaximum {
            requested: request.duration,
            max: rule.max_duration,
            rule: rule.number(),
        })));
    }
    if total > rule.extend_max_total {
        return Err(rejected(GrantError::InvalidRequest(format!(
            "the grant would last {total} in all, beyond the maximum {} of policy rule {} (extend.max_total)",
            rule.extend_max_total,
            rule.number()
        ))));
    }
    if let Some(ticket) = rule.ticket.as_ref().filter(|_| !rule.reason_names_ticket(reason)) {
        return Err(rejected(GrantError::Refused(Refusal::TicketMissing {
            pattern: ticket.as_str().to_owned(),
            rule: rule.number(),
        })));
    }
    let approval = &rule.approval;
    if approval.auto_approve_up_to.is_some_and(|limit| request.duration <= limit) {
        return Ok(None);
    }
    let approvers = resolve_approvers(ctx.directory_store, &grant.integration, &approval.approvers, &grant.user.id)
        .await
        .map_err(|e| rejected(GrantError::SyncedDirectory(e)))?;
    if approvers.len() < approval.required as usize {
        return Err(rejected(GrantError::NoApprover {
            required: approval.required,
            found: approvers.len(),
            rule: rule.number(),
        }));
    }
    Ok(Some(PendingExtension {
        duration: request.duration,
        reason: reason.to_owned(),
        by: grant.user.email.clone(),
        at: now,
        approvals_required: approval.required,
        approvals: Vec::new(),
        approvers,
        request_expires_at: now + approval.timeout.to_chrono(),
    }))
}

/// The caller as an approver of the grant's pending extension: one of that extension's approvers,
/// never the grantee (who asked for it) nor the grant's requester ([`approver_of_among`]).
pub fn approver_of_extension<'p>(
    grant: &Grant,
    caller: &'p Principal,
) -> Result<&'p crate::domain::identity::PrincipalUser, RequestError> {
    let Some(pending) = &grant.pending_extension else { return Err(RequestError::NotPending(grant.status)) };
    approver_of_among(grant, caller, &pending.approvers)
}

/// Approves a grant's pending extension (`approve` on an active grant).
pub(crate) async fn approve_extension(
    ctx: &GrantContext<'_>,
    seen: Grant,
    caller: &Principal,
    comment: Option<String>,
) -> Result<Option<Grant>, RequestError> {
    let me = approver_of_extension(&seen, caller)?;
    let Some(pending) = seen.pending_extension.clone() else { return Err(RequestError::NotPending(seen.status)) };
    let now = ctx.clock.now();
    let expires_at = seen.expiry();
    if now >= pending.request_expires_at || now >= expires_at {
        return Err(RequestError::Expired(pending.request_expires_at.min(expires_at)));
    }
    if pending.approvals.iter().any(|a| a.by == me.email) {
        return Ok(Some(seen));
    }
    let mut next = seen.clone();
    next.revision += 1;
    let mut approvals = pending.approvals.clone();
    approvals.push(Approval { by: me.email.clone(), at: now, comment: comment.clone() });
    let complete = approvals.len() >= pending.approvals_required as usize;
    let decided = PendingExtension { approvals: approvals.clone(), ..pending.clone() };
    let (action, event) = if complete {
        next.expires_at = Some(expires_at + pending.duration.to_chrono());
        next.extensions.push(Extension {
            duration: pending.duration,
            by: pending.by.clone(),
            at: now,
            reason: pending.reason.clone(),
        });
        next.pending_extension = None;
        (AuditAction::Extended, Some(EventType::GrantExtended))
    } else {
        next.pending_extension = Some(decided.clone());
        (AuditAction::Approved, None)
    };
    let audit = AuditRecord::new(&next, now, &caller.id, action, AuditOutcome::Succeeded)
        .detail(format!("extension by {} approved by {}", pending.duration, me.email));
    let audit = match comment {
        Some(c) => audit.reason(c),
        None => audit,
    };
    match ctx.store.extend_grant(&next, &[audit]).await {
        Ok(()) => {}
        // Re-read by the caller's loop.
        Err(GrantStoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if let Some(event) = event {
        moved(ctx, &next).await;
        publish_extension_decision(ctx.events, event, &next, &caller.id, &decided).await;
    }
    Ok(Some(next))
}

/// Denies a grant's pending extension: the grant stays as it was.
pub(crate) async fn deny_extension(
    ctx: &GrantContext<'_>,
    seen: Grant,
    caller: &Principal,
    comment: String,
) -> Result<Option<Grant>, RequestError> {
    let me = approver_of_extension(&seen, caller)?;
    let Some(pending) = seen.pending_extension.clone() else { return Err(RequestError::NotPending(seen.status)) };
    let now = ctx.clock.now();
    let mut next = seen.clone();
    next.revision += 1;
    next.pending_extension = None;
    let audit = AuditRecord::new(&next, now, &caller.id, AuditAction::ExtensionDenied, AuditOutcome::Succeeded)
        .reason(comment)
        .detail(format!("extension by {} denied by {}", pending.duration, me.email));
    match ctx.store.extend_grant(&next, &[audit]).await {
        Ok(()) => {}
        Err(GrantStoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    publish_extension_decision(ctx.events, EventType::RequestDenied, &next, &caller.id, &pending).await;
    Ok(Some(next))
}

/// The expiry moved: the schedules follow (best effort: the sweep ends the grant at its
/// stored expiry whatever the schedules do).
async fn moved(ctx: &GrantContext<'_>, grant: &Grant) {
    if let Err(e) = ctx.scheduler.reschedule(grant).await {
        tracing::warn!(error = %e, grant_id = %grant.id, "could not move the expiry schedule; the sweep ends the grant");
    }
    schedule_reminder(ctx, grant).await;
}

/// Creates (or moves) the grant's reminder, when its rule asks for one and the time is ahead.
pub(crate) async fn schedule_reminder(ctx: &GrantContext<'_>, grant: &Grant) {
    let (Some(before), Some(expires_at)) = (grant.remind_before, grant.expires_at) else { return };
    let at = expires_at - before.to_chrono();
    if at <= ctx.clock.now() {
        return;
    }
    let name = reminder_schedule_name(&grant.id);
    if let Err(e) = ctx.scheduler.delete(&name).await {
        tracing::warn!(error = %e, schedule = %name, "could not delete the previous reminder");
    }
    if let Err(e) = ctx.scheduler.create_reminder(grant, at).await {
        tracing::warn!(error = %e, grant_id = %grant.id, "could not schedule the expiry reminder");
    }
}

/// A reminder's delivery: publishes `Grant Expiring Soon` when the grant is still active and
/// within `remind_before` of its expiry (an extension since moved the reminder). `true` when
/// published.
pub async fn remind(ctx: &GrantContext<'_>, grant_id: &str, actor: &str) -> Result<bool, GrantStoreError> {
    let Some(grant) = ctx.store.get(grant_id).await? else { return Ok(false) };
    let (Some(before), Some(expires_at)) = (grant.remind_before, grant.expires_at) else { return Ok(false) };
    let now = ctx.clock.now();
    let due = expires_at - before.to_chrono();
    if grant.status != GrantStatus::Active || now >= expires_at || now + ctx.policy.early_expiry_tolerance < due {
        return Ok(false);
    }
    publish(ctx.events, EventType::GrantExpiringSoon, &grant, actor, None, None).await;
    Ok(true)
}
