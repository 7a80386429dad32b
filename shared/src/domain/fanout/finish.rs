//! The finish: what vanished goes (confirmed with JumpCloud), grants reconciled, the run recorded once.

use super::*;

/// The stored directory as reconciliation's view of what the run fetched: every part has
/// written, so the store holds it.
struct StoredFetched<'a> {
    store: &'a dyn DirectoryStore,
    integration: &'a str,
    removed: Vec<Membership>,
}

#[async_trait]
impl Fetched for StoredFetched<'_> {
    async fn holds(&mut self, group_id: &str, user_id: &str) -> Result<Option<bool>, String> {
        let user = self.store.user_by_id(self.integration, user_id).await.map_err(|e| e.to_string())?;
        if user.is_none() {
            return Ok(None);
        }
        self.store.is_member(self.integration, group_id, user_id).await.map(Some).map_err(|e| e.to_string())
    }
    async fn removed(&mut self, group_id: &str, user_id: &str) -> Result<(), String> {
        self.removed.push(Membership { group_id: ObjectId::new(group_id), user_id: ObjectId::new(user_id) });
        Ok(())
    }
}

/// Every part has reported: what vanished goes, grants are reconciled, and the run is recorded.
pub(super) async fn finish(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    run: SyncRun,
    directory: &dyn Directory,
) -> Result<(), SyncError> {
    let integration = run.integration.as_str();
    let mut changes = DirectoryChanges::default();

    // Users: each part speaks for the ids after the previous part's last, up to its own last
    // (the last part: to the end). A stored user there that it did not list is gone, unless
    // JumpCloud still has it (paging moved it past the part while users changed).
    let mut after: Option<String> = None;
    let (mut users, mut memberships_kept, mut written, mut deleted) = (0u64, 0u64, run.groups_written, 0u64);
    let mut added_outside = Vec::new();
    let mut failures = Vec::new();
    for part in 0..run.user_parts {
        let report = fanout
            .runs
            .part_report(integration, &run.run_id, PartKind::Users, part)
            .await?
            .ok_or_else(|| SyncError::Fanout(format!("users part {part} has no report")))?;
        users += report.kept;
        written += report.written;
        let last_part = part + 1 == run.user_parts;
        let upto = if last_part { None } else { report.last_id.clone() };
        if !last_part && upto.is_none() {
            continue; // listed nothing: the next part's range covers what it would have
        }
        let ids = fanout.runs.part_ids(integration, &run.run_id, part).await?;
        let (kept, excluded): (HashSet<&str>, HashSet<&str>) =
            (ids.kept.iter().map(String::as_str).collect(), ids.excluded.iter().map(String::as_str).collect());
        let stored = ctx.store.user_ids_between(integration, after.as_deref(), upto.as_deref()).await?;
        for id in stored.into_iter().filter(|id| !kept.contains(id.as_str())) {
            let vanished = excluded.contains(id.as_str())
                || match directory.find_user(&id).await {
                    Err(DirectoryError::NotFound { .. }) => true,
                    Ok(user) => user.is_suspended() && !ctx.policy.include_suspended_users,
                    Err(e) => return Err(e.into()),
                };
            if vanished {
                changes.delete_users.push(id);
            }
        }
        if upto.is_some() {
            after = upto;
        }
    }

    // Groups: stored, but in no part's plan, and gone from JumpCloud.
    let mut planned = HashSet::new();
    let mut gone_groups = Vec::new();
    for part in 0..run.member_parts {
        planned.extend(fanout.runs.member_plan(integration, &run.run_id, part).await?);
        if let Some(report) = fanout.runs.part_report(integration, &run.run_id, PartKind::Members, part).await? {
            memberships_kept += report.listed;
            written += report.written;
            deleted += report.deleted;
            added_outside.extend(report.added_outside);
            failures.extend(report.failures);
            gone_groups.extend(report.gone_groups);
        }
    }
    // And those a members part found gone (its member listing answered 404).
    let unplanned =
        ctx.store.list_groups(integration).await?.into_iter().map(|g| g.id).filter(|id| !planned.contains(id));
    for group_id in unplanned.chain(gone_groups) {
        match directory.group_by_id(&group_id).await {
            Err(DirectoryError::NotFound { .. }) => changes.delete_groups.push(group_id),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
    changes.delete_groups.sort();
    changes.delete_groups.dedup();
    // Their memberships go with them.
    for user_id in &changes.delete_users {
        for group_id in ctx.store.groups_of(integration, user_id).await? {
            changes
                .delete_memberships
                .push(Membership { group_id: ObjectId::new(&group_id), user_id: ObjectId::new(user_id) });
        }
    }
    for group_id in &changes.delete_groups {
        for user_id in ctx.store.group_members(integration, group_id).await? {
            changes
                .delete_memberships
                .push(Membership { group_id: ObjectId::new(group_id), user_id: ObjectId::new(&user_id) });
        }
    }
    changes.delete_memberships.sort();
    changes.delete_memberships.dedup();
    deleted += changes.len() as u64;
    write(ctx.store, integration, changes).await?;

    let reconciliation = match ctx.grants {
        Some(grants) => {
            let mut fetched = StoredFetched { store: ctx.store, integration, removed: Vec::new() };
            let mut report = reconcile(grants, integration, directory, &mut fetched, run.started_at).await;
            let removals = DirectoryChanges { delete_memberships: fetched.removed, ..DirectoryChanges::default() };
            deleted += removals.len() as u64;
            write(ctx.store, integration, removals).await?;
            report.added_outside = added_outside;
            report.failures.extend(failures);
            Some(report)
        }
        None => None,
    };

    let done = SyncRun { stage: RunStage::Done, ..run.clone() };
    if !fanout.runs.put_run(&done, Some(RunStage::Finishing)).await? {
        return Ok(()); // finished by an earlier delivery of this part
    }
    let elapsed = (ctx.clock.now() - run.started_at).to_std().unwrap_or(Duration::ZERO);
    let report = SyncReport {
        integration: integration.to_owned(),
        users: users as usize,
        groups: run.groups as usize,
        memberships: memberships_kept as usize,
        written: written as usize,
        deleted: deleted as usize,
        fetch_duration: elapsed,
        duration: elapsed,
        reconciliation,
        parts: Some(run.user_parts + run.member_parts),
    };
    tracing::info!(integration, run_id = run.run_id, users, written, deleted, "fanned-out sync finished");
    record_outcome(ctx, integration, run.started_at, &Ok(report)).await;
    Ok(())
}
