//! The plan: the run's record, the members parts' groups, the groups written, the users parts sent.

use super::*;

pub(super) async fn plan(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    integration: &str,
    directory: &dyn Directory,
    started_at: chrono::DateTime<chrono::Utc>,
    wanted: Wanted,
) -> Result<FanOutStarted, SyncError> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let count = async {
        match wanted.counted {
            Some(users) => Ok(users),
            None => directory.count_users().await,
        }
    };
    let (users, groups) = futures::try_join!(count, directory.list_groups())?;
    let stored: HashMap<String, u64> =
        ctx.store.list_groups(integration).await?.iter().map(|g| (g.id.clone(), content_hash(g))).collect();
    let first_sync = stored.is_empty();
    let mut group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
    group_ids.sort();
    group_ids.dedup();
    let put_groups: Vec<DirectoryGroup> = groups
        .iter()
        .map(|g| directory_group(g, ctx.policy))
        .filter(|g| stored.get(&g.id) != Some(&content_hash(g)))
        .collect();
    drop(groups);
    let new_groups: Vec<String> =
        put_groups.iter().filter(|g| !stored.contains_key(&g.id)).map(|g| g.id.clone()).collect();
    let groups_written = put_groups.len() as u64;
    write(ctx.store, integration, DirectoryChanges { put_groups, ..DirectoryChanges::default() }).await?;
    if !first_sync && !new_groups.is_empty() {
        fanout.runs.put_new_ids(integration, &run_id, NewKind::Groups, 0, &new_groups).await?;
    }

    let plans: Vec<Vec<String>> = group_ids.chunks(fanout.groups_per_part.max(1)).map(<[String]>::to_vec).collect();
    let member_parts = plans.len().max(1) as u32;
    let run_ref = run_id.as_str();
    if plans.is_empty() {
        fanout.runs.put_member_plan(integration, run_ref, 0, &[]).await?;
    }
    stream::iter(plans.into_iter().enumerate())
        .map(|(part, ids)| async move { fanout.runs.put_member_plan(integration, run_ref, part as u32, &ids).await })
        .buffer_unordered(STORE_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    let users_per_part = fanout.users_per_part.max(1);
    let user_parts = users.div_ceil(users_per_part).max(1) as u32;
    let run = SyncRun {
        integration: integration.to_owned(),
        run_id: run_id.clone(),
        started_at,
        stage: RunStage::Users,
        users_per_part,
        user_parts,
        member_parts,
        groups: group_ids.len() as u64,
        groups_written,
        first_sync,
        moved_by: None,
        members_sent: false,
        error: None,
    };
    fanout.runs.put_run(&run, None).await?;
    fanout.queue.send(&messages(&run, PartKind::Users, user_parts)).await.map_err(SyncError::Queue)?;
    tracing::info!(
        integration,
        run_id,
        users,
        groups = run.groups,
        user_parts,
        member_parts,
        "fanned-out sync planned"
    );
    Ok(FanOutStarted {
        integration: integration.to_owned(),
        run_id,
        started_at,
        users,
        groups: run.groups,
        user_parts,
        member_parts,
    })
}
