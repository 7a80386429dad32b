//! Memberships added outside the product to a group only it should fill (a policy rule's
//! `jit_only: true`), judged as the incremental sync sees them added: reported (`Drift Detected`,
//! kind `added_outside`) and, with `remove_outside: true`, removed; audited either way.
//!
//! A membership a grant holds (the grant is a holder of its lease before JumpCloud is asked to
//! add it) or one a grant found standing (`preexisting`) is the product's knowledge, not drift.
//! The lease's lock is taken for the judgement, so that a grant adding the same membership at
//! that moment is waited for, never raced. Under it JumpCloud is asked whether the membership is
//! still there: one a grant added and has removed since (its lease released before the run read
//! the event) is not reported as drift, and neither is one removed again by hand.

use super::{grant::GrantContext, reconcile::ACTOR_SYNC};
use crate::{
    domain::{
        model::{AuditOutcome, AuditRecord, EventType, GrantEvent, LeaseHold, LeaseKey},
        policy::GroupRef,
    },
    ports::{Directory, RemoveOutcome},
};
use serde::Serialize;
use serde_json::json;

/// What became of one membership added outside the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outside {
    /// Not drift: no `jit_only` rule covers the group, or a grant holds or found the membership.
    NotDrift,
    /// JumpCloud no longer has the membership (removed again by hand, or a grant's own that has
    /// ended): nothing to report, and nothing to store.
    Gone,
    /// Reported, left in place (the rule does not say `remove_outside`).
    Reported,
    /// Reported and removed from JumpCloud.
    Removed,
}

/// The group and user as the stored directory names them (for the record and the event).
pub struct Added<'a> {
    pub key: LeaseKey,
    pub group_name: &'a str,
    pub user_email: Option<&'a str>,
}

/// Judges one membership added outside a grant (see the module's comment).
pub async fn judge(ctx: &GrantContext<'_>, directory: &dyn Directory, added: &Added<'_>) -> Result<Outside, String> {
    match jit_only_rule(ctx, added).await? {
        Some(rule) => judge_under(ctx, directory, added, rule).await,
        None => Ok(Outside::NotDrift),
    }
}

/// What a `jit_only` rule says of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitOnlyRule {
    /// The rule's place in the policy (from 0).
    pub index: usize,
    pub remove_outside: bool,
}

/// The `jit_only` rule that covers the membership's group under the current policy, if any.
pub async fn jit_only_rule(ctx: &GrantContext<'_>, added: &Added<'_>) -> Result<Option<JitOnlyRule>, String> {
    let policy = ctx.policies.current().await.map_err(|e| e.to_string())?;
    let group = GroupRef { id: &added.key.group_id, name: added.group_name };
    Ok(policy
        .as_ref()
        .and_then(|p| p.policy.rule_for(&group))
        .filter(|r| r.jit_only)
        .map(|r| JitOnlyRule { index: r.index, remove_outside: r.remove_outside }))
}

/// Judges one membership added outside a grant to a group `rule` covers.
pub async fn judge_under(
    ctx: &GrantContext<'_>,
    directory: &dyn Directory,
    added: &Added<'_>,
    rule: JitOnlyRule,
) -> Result<Outside, String> {
    let key = &added.key;
    let (rule_index, remove) = (rule.index, rule.remove_outside);
    let hold = LeaseHold { key: key.clone(), owner: format!("sync:{}", uuid::Uuid::new_v4()) };
    let lease = ctx
        .store
        .lock_lease(key, &hold.owner, ctx.clock.now(), ctx.policy.lease_ttl)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = if !lease.holders.is_empty() || lease.preexisting {
        Ok(Outside::NotDrift)
    } else if remove {
        match directory.remove_member(&key.group_id, &key.user_id).await {
            Ok(RemoveOutcome::Removed) => Ok(Outside::Removed),
            // Gone already (removed again by hand): nothing to report.
            Ok(RemoveOutcome::NotMember) => Ok(Outside::Gone),
            Err(e) => Err(format!("removing {} from {}: {e}", key.user_id, added.group_name)),
        }
    } else {
        match directory.groups_of_user(&key.user_id).await {
            Ok(groups) if groups.contains(&key.group_id) => Ok(Outside::Reported),
            Ok(_) | Err(crate::ports::DirectoryError::NotFound { .. }) => Ok(Outside::Gone),
            Err(e) => Err(format!("reading the groups of {}: {e}", key.user_id)),
        }
    };
    if let Err(e) = ctx.store.unlock_lease(&hold).await {
        tracing::error!(error = %e, "could not release a lease lock (it expires by itself)");
    }
    let outcome = outcome?;
    if matches!(outcome, Outside::NotDrift | Outside::Gone) {
        return Ok(outcome);
    }
    let who = added.user_email.unwrap_or(&key.user_id);
    let detail = match outcome {
        Outside::Removed => format!(
            "{who} was added to {} outside the product (rule {} is jit_only): removed",
            added.group_name,
            rule_index + 1
        ),
        _ => format!(
            "{who} was added to {} outside the product (rule {} is jit_only): reported, left in place",
            added.group_name,
            rule_index + 1
        ),
    };
    let record = AuditRecord::outside_membership(ctx.clock.now(), ACTOR_SYNC, key, AuditOutcome::Succeeded, &detail);
    if let Err(e) = ctx.store.append_audit(&[record]).await {
        tracing::error!(error = %e, "could not audit a membership added outside the product");
    }
    tracing::warn!(
        integration = %key.integration, group_id = %key.group_id, user_id = %key.user_id,
        removed = outcome == Outside::Removed, "drift: a membership was added outside the product to a jit_only group"
    );
    let event = GrantEvent {
        detail_type: EventType::DriftDetected,
        detail: json!({
            "drift": "added_outside",
            "actor": ACTOR_SYNC,
            "integration": key.integration,
            "group": {"id": key.group_id, "name": added.group_name},
            "user": {"id": key.user_id, "email": added.user_email},
            "rule": rule_index,
            "removed": outcome == Outside::Removed,
            "detail": detail,
        }),
    };
    if let Err(e) = ctx.events.publish(&[event]).await {
        tracing::error!(error = %e, "could not publish a drift event");
    }
    Ok(outcome)
}
