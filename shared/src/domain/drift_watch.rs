//! While a full sync of an integration runs (in a large organization, a fanned-out sync of an
//! hour or more), the incremental run stores nothing: the full sync's reads have the last word.
//! It still reads the last few minutes of Directory Insights events, so that a membership added
//! outside the product to a group a `remove_outside` rule covers is removed within a minute, as
//! it is when no full sync runs.
//!
//! Only removal is done here, and each run reads a fixed window ([`WATCH_WINDOW`]) remembering
//! nothing, because removal is what stays true when judged again: the next run (its window
//! overlaps), the full sync and the first incremental run after it find the membership gone
//! (`RemoveOutcome::NotMember`) and report nothing more. A report-only rule's membership is left
//! where it stays: not stored, so the full sync (or the incremental run after it) judges it then,
//! once. A membership the stored directory holds already is not news, as in the incremental run.

use super::{
    grant::GrantContext,
    incremental::{last_words, IncrementalContext, MAX_EVENTS, OVERLAP},
    outside::{self, Added, Outside},
};
use crate::{
    domain::model::LeaseKey,
    ports::{Directory, DirectoryError, DirectoryInsights, StoreError},
};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// How far back each run reads: the schedule's minute and the incremental run's overlap (events
/// indexed late). One indexed later still is judged by the full sync or the run after it.
pub const WATCH_WINDOW: Duration = Duration::minutes(3);

/// What one run did while a full sync ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftWatch {
    /// Events read from `from` on.
    pub from: DateTime<Utc>,
    pub events: usize,
    /// Memberships whose last word was "added", not stored, in a group a `jit_only` rule covers.
    pub judged: usize,
    /// Removed as added outside the product (`remove_outside`): `(group id, user id)`.
    pub removed: Vec<(String, String)>,
    /// Under a report-only rule: left for the full sync, or the incremental run after it, to judge.
    pub left_to_full_sync: usize,
    /// What could not be read or judged (the full sync and the runs after it still judge it).
    pub failures: Vec<String>,
}

/// One run's watch for `integration` (see the module's comment); `cursor` is the stored event cursor.
pub async fn watch(
    ctx: &IncrementalContext<'_>,
    grants: &GrantContext<'_>,
    integration: &str,
    cursor: DateTime<Utc>,
    directory: &dyn Directory,
    insights: &dyn DirectoryInsights,
) -> Result<DriftWatch, StoreError> {
    let from = (ctx.clock.now() - WATCH_WINDOW).max(cursor - OVERLAP);
    let mut report = DriftWatch { from, ..DriftWatch::default() };
    let batch = match insights.directory_events(from, MAX_EVENTS).await {
        Ok(batch) => batch,
        Err(e) => {
            report.failures.push(format!("Directory Insights: {e}"));
            return Ok(report);
        }
    };
    report.events = batch.events.len();
    for ((group_id, user_id), (_, _, added)) in last_words(&batch.events) {
        if !added || ctx.store.is_member(integration, &group_id, &user_id).await? {
            continue;
        }
        let group_name = match ctx.store.group_by_id(integration, &group_id).await? {
            Some(group) => group.name,
            // Created since the stored directory was: its name decides which rule covers it.
            None => match directory.group_by_id(&group_id).await {
                Ok(group) => group.name,
                Err(DirectoryError::NotFound { .. }) => continue,
                Err(e) => {
                    report.failures.push(format!("reading group {group_id:?}: {e}"));
                    continue;
                }
            },
        };
        let user_email = ctx.store.user_by_id(integration, &user_id).await?.map(|u| u.email);
        let added = Added {
            key: LeaseKey { integration: integration.to_owned(), group_id: group_id.clone(), user_id: user_id.clone() },
            group_name: &group_name,
            user_email: user_email.as_deref(),
        };
        let rule = match outside::jit_only_rule(grants, &added).await {
            Ok(Some(rule)) => rule,
            Ok(None) => continue,
            Err(e) => {
                report.failures.push(format!("reading the policy: {e}"));
                continue;
            }
        };
        report.judged += 1;
        if !rule.remove_outside {
            report.left_to_full_sync += 1;
            continue;
        }
        match outside::judge_under(grants, directory, &added, rule).await {
            Ok(Outside::Removed) => report.removed.push((group_id, user_id)),
            Ok(Outside::NotDrift | Outside::Reported | Outside::Gone) => {}
            Err(e) => report.failures.push(format!("judging {user_id} added to {group_name}: {e}")),
        }
    }
    if !report.failures.is_empty() {
        tracing::warn!(integration, failures = ?report.failures, "drift watch during a full sync: some additions were not judged (the full sync judges them)");
    }
    Ok(report)
}
