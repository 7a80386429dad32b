//! Requests and approvals (SPEC "Who may do what", invariants 7 and 8).
//!
//! A non-admin's `POST /grants` is checked against the applied policy ([`authorize`]): the rule
//! that covers the group, the requester's eligibility, the rule's limits, and the approval it
//! needs, with the rule's approvers resolved from the synced directory (the requester and the
//! grantee never among them). A request that needs approval is recorded `pending_approval`
//! ([`record`]): due in the sweep's index and scheduled at its approval timeout, with no lease and
//! nothing in JumpCloud.
//!
//! Every decision on a request ([`approve`], [`deny`], [`end_request`]) reads it and writes its
//! successor conditioned on the revision it read, so concurrent decisions leave one outcome: the
//! loser reads again and finds the request decided (409), or (an approval short of the count)
//! adds its approval to the newer revision. The approval that completes the count promotes the
//! request to a pending grant under the lease's lock, in the same conditional write; the grant
//! is then activated like any other (`domain::grant`), its clock starting then.

use super::extension;
use super::grant::{add_and_activate, lock, publish, resolve_integration, unlock, GrantContext, GrantError};
use crate::{
    domain::identity::{Principal, PrincipalUser},
    domain::model::{
        request_schedule_name, Approval, ApprovalMode, AuditAction, AuditOutcome, AuditRecord, EventType, Grant,
        GrantDuration, GrantStatus, LeaseHold, PolicyRef, UserState,
    },
    domain::policy::{Approver, Decision, GroupRef, PolicyRequest, Requester, Rule},
    domain::snapshot::canonical_email,
    ports::{AppliedPolicy, DirectoryStore, GrantStoreError, SourceGroup, SourceUser, StoreError},
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashSet};

/// The longest approval or denial comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// Times a decision re-reads a request that changed under it before giving up (each retry is
/// caused by another decision landing, so few are ever needed).
pub(crate) const CONFLICT_ATTEMPTS: usize = 8;

/// What the policy allows a non-admin's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub policy: PolicyRef,
    /// The rule's `remind_before`.
    pub remind_before: Option<GrantDuration>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    AutoApproved,
    /// Active at once, flagged; `notify` are the rule's approvers, told of it.
    BreakGlass {
        notify: Vec<String>,
    },
    NeedsApproval {
        required: u32,
        approvers: Vec<String>,
        timeout: GrantDuration,
    },
}

/// A request for oneself, as [`authorize`] checks it.
pub(crate) struct Ask<'a> {
    pub integration: &'a str,
    /// The requester, who is the grantee (live from JumpCloud).
    pub grantee: &'a SourceUser,
    pub group: &'a SourceGroup,
    pub duration: GrantDuration,
    pub reason: &'a str,
    pub break_glass: bool,
}

/// A request for oneself, checked against the applied policy.
pub(crate) async fn authorize(
    ctx: &GrantContext<'_>,
    applied: &AppliedPolicy,
    ask: Ask<'_>,
) -> Result<Authorization, GrantError> {
    let Ask { integration, grantee, group, duration, reason, break_glass } = ask;
    let policy = &applied.policy;
    let group_ref = GroupRef { id: &group.id, name: &group.name };
    // The rule decides which of the requester's groups matter: only those are looked up.
    let member_of = match policy.rule_for(&group_ref) {
        Some(rule) => eligibility_groups(ctx.directory_store, integration, &grantee.id, rule).await?,
        None => HashSet::new(),
    };
    let email = canonical_email(&grantee.email);
    let is_member = |name_or_id: &str| member_of.contains(name_or_id);
    let request = PolicyRequest {
        group: group_ref,
        requester: Requester { id: &grantee.id, email: &email, username: &grantee.username, member_of: &is_member },
        duration,
        reason,
        break_glass,
    };
    let (rule, decision) = policy.evaluate(&request).map_err(GrantError::Refused)?;
    let policy_ref = PolicyRef { version: applied.version, rule: rule.index };
    let authorized = |verdict| Authorization { policy: policy_ref, remind_before: rule.remind_before, verdict };
    match decision {
        Decision::AutoApproved => Ok(authorized(Verdict::AutoApproved)),
        Decision::BreakGlass => {
            // Break glass must not depend on the directory: who to tell is best effort.
            let notify = resolve_approvers(ctx.directory_store, integration, &rule.approval.approvers, &grantee.id)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not resolve the approvers to tell of a break-glass grant");
                    Vec::new()
                });
            Ok(authorized(Verdict::BreakGlass { notify }))
        }
        Decision::NeedsApproval { required, approvers, timeout } => {
            let emails = resolve_approvers(ctx.directory_store, integration, &approvers, &grantee.id).await?;
            if emails.len() < required as usize {
                return Err(GrantError::NoApprover { required, found: emails.len(), rule: rule.number() });
            }
            Ok(authorized(Verdict::NeedsApproval { required, approvers: emails, timeout }))
        }
    }
}

/// The rule's eligibility groups (names or ids, as the document names them) that the user is a
/// direct member of in the synced directory.
async fn eligibility_groups(
    store: &dyn DirectoryStore,
    integration: &str,
    user_id: &str,
    rule: &Rule,
) -> Result<HashSet<String>, StoreError> {
    let crate::domain::policy::Eligibility::Members { groups, .. } = &rule.eligible else {
        return Ok(HashSet::new());
    };
    if groups.is_empty() {
        return Ok(HashSet::new());
    }
    let mine: HashSet<String> = store.groups_of(integration, user_id).await?.into_iter().collect();
    let mut named = HashSet::new();
    for name_or_id in groups {
        let held = mine.contains(name_or_id)
            || match store.group_by_name(integration, name_or_id).await? {
                Some(group) => mine.contains(&group.id),
                None => false,
            };
        if held {
            named.insert(name_or_id.clone());
        }
    }
    Ok(named)
}

/// The emails of the active users who may approve a request for `grantee_id` under `approvers`:
/// the grantee's manager (a missing or suspended one yields nobody), members of groups, named
/// users. The grantee (who is the requester) never counts.
pub(crate) async fn resolve_approvers(
    store: &dyn DirectoryStore,
    integration: &str,
    approvers: &[Approver],
    grantee_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut ids = BTreeSet::new();
    let mut found = Vec::new();
    for approver in approvers {
        match approver {
            Approver::Manager => {
                if let Some(manager) = store.user_by_id(integration, grantee_id).await?.and_then(|u| u.manager_id) {
                    ids.insert(manager);
                }
            }
            Approver::Group(name_or_id) => {
                let group_id = match store.group_by_name(integration, name_or_id).await? {
                    Some(group) => group.id,
                    None => name_or_id.clone(),
                };
                ids.extend(store.group_members(integration, &group_id).await?);
            }
            Approver::User(who) => {
                let user = if who.contains('@') {
                    store.user_by_email(integration, &canonical_email(who)).await?
                } else {
                    match store.user_by_id(integration, who).await? {
                        Some(user) => Some(user),
                        None => store.user_by_username(integration, who).await?,
                    }
                };
                found.extend(user);
            }
        }
    }
    let ids: Vec<String> = ids.into_iter().collect();
    if !ids.is_empty() {
        found.extend(store.users_by_ids(integration, &ids).await?);
    }
    let emails: BTreeSet<String> = found
        .into_iter()
        .filter(|u| u.id != grantee_id && u.state != UserState::Suspended)
        .map(|u| canonical_email(&u.email))
        .collect();
    Ok(emails.into_iter().collect())
}

/// Records a request awaiting approval (`grant` built by `domain::grant`, not yet stored).
pub(crate) async fn record(
    ctx: &GrantContext<'_>,
    mut grant: Grant,
    required: u32,
    approvers: Vec<String>,
    timeout: GrantDuration,
) -> Result<Grant, GrantError> {
    let now = grant.requested_at;
    grant.status = GrantStatus::PendingApproval;
    grant.granted_at = None;
    grant.expires_at = None;
    grant.approval = ApprovalMode::Approvers;
    grant.approvals_required = required;
    grant.approvers = approvers;
    grant.request_expires_at = Some(now + timeout.to_chrono());
    let created = AuditRecord::new(&grant, now, &grant.requested_by, AuditAction::Created, AuditOutcome::Succeeded)
        .reason(grant.reason.clone())
        .detail(format!(
            "request: {} in {} for {}; {required} approval(s) needed from {}; open until {}",
            grant.user.email,
            grant.group.name,
            grant.duration,
            grant.approvers.join(", "),
            grant.expiry().to_rfc3339()
        ));
    ctx.store.insert_request(&grant, &[created]).await?;
    // The request's end at its timeout: by this schedule, or by the sweep if it is never made.
    if let Err(e) = ctx.scheduler.create(&grant).await {
        tracing::warn!(error = %e, "could not schedule the request's expiry; the sweep ends it");
        let audit =
            AuditRecord::new(&grant, now, &grant.requested_by, AuditAction::ScheduleFailed, AuditOutcome::Failed)
                .detail(format!("{e}; the sweep ends the request at its timeout"));
        if let Err(e) = ctx.store.append_audit(&[audit]).await {
            tracing::error!(error = %e, "could not audit a failed request schedule");
        }
    }
    tracing::info!(grant_id = %grant.id, required, "request awaiting approval");
    publish(ctx.events, EventType::ApprovalRequested, &grant, &grant.requested_by, None, None).await;
    Ok(grant)
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no grant {0:?}")]
    NotFound(String),
    #[error("the request is {}: only a request awaiting approval can be decided", .0.as_str())]
    NotPending(GrantStatus),
    #[error("the request expired at {0} without enough approvals")]
    Expired(DateTime<Utc>),
    /// Not allowed to decide it (the requester, the grantee, anyone but its approvers).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidComment(String),
    #[error("the request kept changing while it was being decided; retry")]
    Contended,
    /// The grant is in a state that refuses this change (an extension awaiting approval already).
    #[error("{0}")]
    Conflict(String),
    /// The activation at the last approval failed (JumpCloud, the lease).
    #[error(transparent)]
    Activation(GrantError),
    /// An extension the product or the policy does not allow.
    #[error(transparent)]
    Rejected(GrantError),
    #[error(transparent)]
    Store(GrantStoreError),
}

impl From<GrantStoreError> for RequestError {
    fn from(e: GrantStoreError) -> Self {
        match e {
            GrantStoreError::LeaseBusy { .. } => Self::Activation(GrantError::Busy),
            other => Self::Store(other),
        }
    }
}

/// A comment: optional for an approval, required for a denial; at most [`MAX_COMMENT_CHARS`]
/// characters and no control characters but line breaks and tabs.
pub fn check_comment(comment: Option<&str>, required: bool) -> Result<Option<String>, RequestError> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    let Some(comment) = comment else {
        return if required {
            Err(RequestError::InvalidComment("a comment is required: say why".into()))
        } else {
            Ok(None)
        };
    };
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(RequestError::InvalidComment(format!("comment is longer than {MAX_COMMENT_CHARS} characters")));
    }
    if comment.chars().any(crate::domain::model::is_unsafe_text_char) {
        return Err(RequestError::InvalidComment(
            "comment contains control or bidirectional-formatting characters".into(),
        ));
    }
    Ok(Some(comment.to_owned()))
}

/// The caller as an approver of the request: never its requester or grantee, whatever their
/// role; otherwise one of the approvers resolved for it.
pub fn approver_of<'p>(grant: &Grant, caller: &'p Principal) -> Result<&'p PrincipalUser, RequestError> {
    approver_of_among(grant, caller, &grant.approvers)
}

/// As [`approver_of`], among `approvers` (a pending extension's own).
pub(crate) fn approver_of_among<'p>(
    grant: &Grant,
    caller: &'p Principal,
    approvers: &[String],
) -> Result<&'p PrincipalUser, RequestError> {
    let not_approver = || RequestError::Forbidden("you are not an approver of this request".into());
    let me = caller.user_in(&grant.integration).ok_or_else(not_approver)?;
    if me.id == grant.user.id {
        return Err(RequestError::Forbidden("the grantee of a request cannot approve or deny it".into()));
    }
    if caller.id == grant.requested_by || grant.requester.as_ref().is_some_and(|r| r.id == me.id) {
        return Err(RequestError::Forbidden("the requester of a request cannot approve or deny it".into()));
    }
    if !approvers.contains(&me.email) {
        return Err(not_approver());
    }
    Ok(me)
}

/// Whether the caller may decide something of `grant` now, as `approve` / `deny` would let them:
/// a request awaiting approval, or an active grant's pending extension (by that extension's own
/// approvers); never its requester or grantee, never past its timeout (nor, for an extension,
/// past the grant's expiry). What `GET /grants?awaiting=me` lists.
pub fn awaits(grant: &Grant, caller: &Principal, now: DateTime<Utc>) -> bool {
    match grant.status {
        GrantStatus::PendingApproval => {
            approver_of(grant, caller).is_ok() && grant.request_expires_at.is_none_or(|t| now < t)
        }
        GrantStatus::Active => grant.pending_extension.as_ref().is_some_and(|pending| {
            now < pending.request_expires_at
                && now < grant.expiry()
                && extension::approver_of_extension(grant, caller).is_ok()
        }),
        _ => false,
    }
}

/// The checks every decision makes on the request it read.
fn decidable(grant: &Grant, now: DateTime<Utc>) -> Result<(), RequestError> {
    if grant.status != GrantStatus::PendingApproval {
        return Err(RequestError::NotPending(grant.status));
    }
    let timeout = grant.expiry();
    if now >= timeout {
        return Err(RequestError::Expired(timeout));
    }
    Ok(())
}

async fn read(ctx: &GrantContext<'_>, grant_id: &str) -> Result<Grant, RequestError> {
    ctx.store.get(grant_id).await?.ok_or_else(|| RequestError::NotFound(grant_id.to_owned()))
}

/// What a decision is for, when the caller names it (a Slack button does): decided only while
/// that is what awaits, whatever the grant has become since the caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Whatever awaits: the request, or the active grant's pending extension (the API).
    Any,
    /// The request, while it awaits approval.
    Request,
    /// The pending extension asked for at this time (`PendingExtension::at`), while it awaits
    /// approval: never another extension of the same grant.
    Extension(DateTime<Utc>),
}

impl Target {
    /// Checked on every read of a decision, so a change between the caller's read and the
    /// decision's cannot slip another target in.
    fn check(self, grant: &Grant) -> Result<(), RequestError> {
        let this_extension =
            |at| grant.status == GrantStatus::Active && grant.pending_extension.as_ref().is_some_and(|p| p.at == at);
        match self {
            Self::Any => Ok(()),
            Self::Request if grant.status == GrantStatus::PendingApproval => Ok(()),
            Self::Request => Err(RequestError::NotPending(grant.status)),
            Self::Extension(at) if this_extension(at) => Ok(()),
            Self::Extension(_) => Err(RequestError::Conflict("this extension no longer awaits approval".into())),
        }
    }
}

/// `POST /grants/{id}/approve`. The same approver twice counts once (the request is returned
/// unchanged); the approval that completes `approvals_required` activates the grant.
pub async fn approve(
    ctx: &GrantContext<'_>,
    grant_id: &str,
    caller: &Principal,
    comment: Option<&str>,
) -> Result<Grant, RequestError> {
    approve_target(ctx, grant_id, caller, comment, Target::Any).await
}

/// [`approve`], only while `target` is what awaits approval.
pub async fn approve_target(
    ctx: &GrantContext<'_>,
    grant_id: &str,
    caller: &Principal,
    comment: Option<&str>,
    target: Target,
) -> Result<Grant, RequestError> {
    let comment = check_comment(comment, false)?;
    for _ in 0..CONFLICT_ATTEMPTS {
        let seen = read(ctx, grant_id).await?;
        target.check(&seen)?;
        if seen.status == GrantStatus::Active && seen.pending_extension.is_some() {
            match extension::approve_extension(ctx, seen, caller, comment.clone()).await? {
                Some(grant) => return Ok(grant),
                None => continue,
            }
        }
        let me = approver_of(&seen, caller)?;
        let now = ctx.clock.now();
        decidable(&seen, now)?;
        if seen.approvals.iter().any(|a| a.by == me.email) {
            return Ok(seen);
        }
        let mut next = seen.clone();
        next.revision += 1;
        next.approvals.push(Approval { by: me.email.clone(), at: now, comment: comment.clone() });
        let count = next.approvals.len();
        let audit = AuditRecord::new(&next, now, &caller.id, AuditAction::Approved, AuditOutcome::Succeeded)
            .detail(format!("approval {count} of {} by {}", next.approvals_required, me.email));
        let audit = match &comment {
            Some(c) => audit.reason(c.clone()),
            None => audit,
        };
        if count < next.approvals_required as usize {
            match ctx.store.update_request(&next, &[audit]).await {
                Ok(()) => {
                    tracing::info!(grant_id, count, "request approved in part");
                    return Ok(next);
                }
                Err(GrantStoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        match activate_request(ctx, next, audit, &caller.id).await {
            Err(RequestError::Store(GrantStoreError::Conflict(_))) => continue,
            other => return other,
        }
    }
    Err(RequestError::Contended)
}

/// The last approval: promotes the request under the lease's lock, then activates it.
async fn activate_request(
    ctx: &GrantContext<'_>,
    mut grant: Grant,
    approved: AuditRecord,
    actor: &str,
) -> Result<Grant, RequestError> {
    let integration =
        resolve_integration(ctx.catalog, Some(&grant.integration)).await.map_err(RequestError::Activation)?;
    let directory = ctx.directories.directory(&integration);
    // The grantee was checked live when they asked; a suspension since then refuses the
    // activation (the request stays pending, and ends at its timeout or by a denial).
    match directory.find_user(&grant.user.id).await {
        Ok(user) if user.is_suspended() => {
            return Err(RequestError::Activation(GrantError::UserSuspended(grant.user.email.clone())))
        }
        Ok(_) => {}
        Err(e) => {
            return Err(RequestError::Activation(super::grant::not_found_as(e, || {
                GrantError::UserNotFound(grant.user.email.clone())
            })))
        }
    }
    // An owner of this attempt alone: two last approvals at once must not share the lock (the
    // loser's release would free the winner's).
    let hold = LeaseHold { key: grant.lease_key(), owner: format!("approve:{}:{}", grant.id, uuid::Uuid::new_v4()) };
    let lease = lock(ctx, &hold.key, &hold.owner).await?;
    // The clock of the grant starts now, at its activation.
    let now = ctx.clock.now();
    grant.status = GrantStatus::Pending;
    grant.granted_at = Some(now);
    grant.expires_at = Some(now + grant.duration.to_chrono());
    if let Err(e) = ctx.store.promote_request(&grant, &hold, &[approved]).await {
        unlock(ctx, &hold).await;
        return Err(e.into());
    }
    tracing::info!(grant_id = %grant.id, "request approved: activating");
    delete_request_schedule(ctx, &grant.id).await;
    publish(ctx.events, EventType::RequestApproved, &grant, actor, None, None).await;
    add_and_activate(ctx, grant, directory.as_ref(), &lease, &hold).await.map_err(RequestError::Activation)
}

/// `POST /grants/{id}/deny`: by an approver, with a comment; the request ends `denied` (a
/// pending extension is dropped, the grant unchanged).
pub async fn deny(
    ctx: &GrantContext<'_>,
    grant_id: &str,
    caller: &Principal,
    comment: Option<&str>,
) -> Result<Grant, RequestError> {
    deny_target(ctx, grant_id, caller, comment, Target::Any).await
}

/// [`deny`], only while `target` is what awaits approval.
pub async fn deny_target(
    ctx: &GrantContext<'_>,
    grant_id: &str,
    caller: &Principal,
    comment: Option<&str>,
    target: Target,
) -> Result<Grant, RequestError> {
    let comment = check_comment(comment, true)?.unwrap_or_default();
    for _ in 0..CONFLICT_ATTEMPTS {
        let seen = read(ctx, grant_id).await?;
        target.check(&seen)?;
        if seen.status == GrantStatus::Active && seen.pending_extension.is_some() {
            match extension::deny_extension(ctx, seen, caller, comment.clone()).await? {
                Some(grant) => return Ok(grant),
                None => continue,
            }
        }
        let me = approver_of(&seen, caller)?;
        let now = ctx.clock.now();
        decidable(&seen, now)?;
        let mut next = seen.clone();
        next.revision += 1;
        next.status = GrantStatus::Denied;
        next.decided_by = Some(me.email.clone());
        next.ended_at = Some(now);
        let audit = AuditRecord::new(&next, now, &caller.id, AuditAction::Denied, AuditOutcome::Succeeded)
            .reason(comment.clone())
            .detail(format!("denied by {}", me.email));
        match ctx.store.update_request(&next, &[audit]).await {
            Ok(()) => {
                tracing::info!(grant_id, "request denied");
                delete_request_schedule(ctx, grant_id).await;
                publish(ctx.events, EventType::RequestDenied, &next, &caller.id, None, None).await;
                return Ok(next);
            }
            Err(GrantStoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RequestError::Contended)
}

/// How a request ends without approval, other than a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    /// Withdrawn by its requester or an admin (`DELETE /grants/{id}`).
    Cancelled,
    /// Not decided within its approval timeout (its schedule or the sweep).
    Expired,
}

/// Ends a request awaiting approval; `false` when it was no longer pending (decided meanwhile:
/// returned as it now is). The caller checked who may.
pub async fn end_request(
    ctx: &GrantContext<'_>,
    mut seen: Grant,
    actor: &str,
    end: RequestEnd,
) -> Result<(Grant, bool), RequestError> {
    for _ in 0..CONFLICT_ATTEMPTS {
        if seen.status != GrantStatus::PendingApproval {
            return Ok((seen, false));
        }
        let now = ctx.clock.now();
        let mut next = seen.clone();
        next.revision += 1;
        next.ended_at = Some(now);
        let (action, event) = match end {
            RequestEnd::Cancelled => {
                next.status = GrantStatus::Cancelled;
                next.decided_by = Some(actor.to_owned());
                (AuditAction::Cancelled, EventType::RequestCancelled)
            }
            RequestEnd::Expired => {
                next.status = GrantStatus::RequestExpired;
                (AuditAction::RequestExpired, EventType::RequestExpired)
            }
        };
        let audit = AuditRecord::new(&next, now, actor, action, AuditOutcome::Succeeded);
        match ctx.store.update_request(&next, &[audit]).await {
            Ok(()) => {
                tracing::info!(grant_id = %next.id, status = next.status.as_str(), "request ended");
                if end == RequestEnd::Cancelled {
                    delete_request_schedule(ctx, &next.id).await;
                }
                publish(ctx.events, event, &next, actor, None, None).await;
                return Ok((next, true));
            }
            Err(GrantStoreError::Conflict(_)) => seen = read(ctx, &seen.id).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RequestError::Contended)
}

/// A decided request's schedule would find it decided; deleting it is tidiness, best effort.
async fn delete_request_schedule(ctx: &GrantContext<'_>, grant_id: &str) {
    let name = request_schedule_name(grant_id);
    if let Err(e) = ctx.scheduler.delete(&name).await {
        tracing::warn!(error = %e, schedule = %name, "could not delete a decided request's schedule");
    }
}
