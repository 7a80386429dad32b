//! The full sync fanned out over a queue (SPEC "Scale"), for organizations too large for one
//! invocation. The same function plans, works the parts and finishes:
//!
//! 1. **Plan** (`start`, the scheduled full sync): claims the integration for [`RUN_CLAIM`],
//!    counts the users (one request), lists and writes the groups, writes which groups each
//!    members part fetches, the run's record, and sends one message per users part.
//! 2. **Users parts** (`run_part`): each lists its range of users in JumpCloud's id order, writes
//!    the new and changed ones, and reports the ids it saw. The part that finds every users part
//!    reported resolves the managers no part could, moves the run to `Members` (a conditional
//!    write: exactly one does) and sends the members parts.
//! 3. **Members parts**: each reads its groups' members, writes the memberships new since the
//!    stored directory (of users the first half stored; one added outside the product to a
//!    `jit_only` group is judged as the incremental sync judges it) and deletes those gone. A
//!    group's member list is read whole by one part, so its deletions are exact there.
//! 4. **Finish**, by the part that finds every members part reported: users and groups that
//!    vanished (only now that every part has reported, each one confirmed with JumpCloud before
//!    it goes, so a user that paging moved past its part is never deleted), reconciliation
//!    against the stored directory, then the status, the event cursor and `Sync Completed`,
//!    once: behind the run's conditional move to `Done`.
//!
//! A part that fails is delivered again by the queue (it redoes only itself: every write is a
//! diff against the store); after [`PART_ATTEMPTS`] the run is marked failed and the message goes
//! to the dead-letter queue. A part of a run that is no longer the integration's current one is
//! dropped.

use super::{
    model::{content_hash, DirectoryChanges, DirectoryGroup, DirectoryUser, Membership, ObjectId},
    outside::{self, Added, Outside},
    policy::GroupRef,
    reconcile::{reconcile, Fetched},
    snapshot::{canonical_email, directory_group, directory_user, manager_reference},
    sync::{record_outcome, SyncContext, SyncError, SyncReport},
};
use crate::{
    domain::model::LeaseKey,
    ports::{
        Directory, DirectoryError, DirectoryStore, NewKind, PartIds, PartKind, PartMessage, PartQueue, PartReport,
        RunStage, SyncRun, SyncRunStore, SyncState, SyncStatus,
    },
};
use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// Users per users part: 100 of JumpCloud's pages, and the part's ids fit its report.
pub const USERS_PER_PART: u64 = 10_000;
/// Groups per members part: a few hundred requests, done well within a worker's time even when
/// the shared rate budget is split among every worker.
pub const GROUPS_PER_PART: usize = 250;
/// How long a fanned-out run holds its integration's claim (one sync at a time).
pub const RUN_CLAIM: chrono::Duration = chrono::Duration::hours(3);
/// Deliveries of a part before the run fails and the message goes to the dead-letter queue: the
/// template's `maxReceiveCount`.
pub const PART_ATTEMPTS: u32 = 5;
/// Groups whose members one worker reads at once (the client's limits bound the requests).
const GROUP_CONCURRENCY: usize = 16;
/// Lookups of the stored directory at once.
const STORE_CONCURRENCY: usize = 16;
/// Writes are applied in slices, so that no worker holds a large batch.
const WRITE_SLICE: usize = 2_500;

/// The fan-out's ports and threshold.
pub struct FanOut<'a> {
    pub queue: &'a dyn PartQueue,
    pub runs: &'a dyn SyncRunStore,
    /// Organizations with at least this many users are fanned out (`FANOUT_ABOVE_USERS`).
    pub above_users: u64,
    /// [`USERS_PER_PART`] and [`GROUPS_PER_PART`], smaller in tests.
    pub users_per_part: u64,
    pub groups_per_part: usize,
}

impl<'a> FanOut<'a> {
    pub fn new(queue: &'a dyn PartQueue, runs: &'a dyn SyncRunStore, above_users: u64) -> Self {
        Self { queue, runs, above_users, users_per_part: USERS_PER_PART, groups_per_part: GROUPS_PER_PART }
    }
}

/// A run the planner started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FanOutStarted {
    pub integration: String,
    pub run_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub users: u64,
    pub groups: u64,
    pub user_parts: u32,
    pub member_parts: u32,
}

/// What a delivered part came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PartOutcome {
    /// Done; `moved` when this part moved the run on (to `Members`, or finished it: `Done`).
    Done {
        kind: PartKind,
        part: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        moved: Option<RunStage>,
    },
    /// Not worked: the run is over, not the integration's current one, or past this part.
    Dropped { reason: String },
}

/// Whether an integration's full sync is fanned out: its last sync counted at least
/// `above_users` users or, when none counted any, JumpCloud says it has that many (one request,
/// whose count the plan then uses: `Wanted::counted`).
pub async fn wanted(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    integration: &str,
    directory: &dyn Directory,
) -> Result<Option<Wanted>, SyncError> {
    let last = ctx.store.sync_status(integration).await?;
    let (users, counted) = match last.filter(|s| s.users > 0) {
        Some(status) => (status.users, None),
        None => {
            let users = directory.count_users().await?;
            (users, Some(users))
        }
    };
    Ok((users >= fanout.above_users).then_some(Wanted { counted }))
}

/// A full sync to fan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The users JumpCloud counted just now, if it was asked.
    pub counted: Option<u64>,
}

/// Claims the integration and plans the run; on failure records the sync as failed.
pub async fn start(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    integration: &str,
    directory: &dyn Directory,
    wanted: Wanted,
) -> Result<FanOutStarted, SyncError> {
    let started_at = ctx.clock.now();
    let mut status = SyncStatus::running(integration, started_at);
    if let Some(running) = ctx.store.claim_sync(&status, started_at + RUN_CLAIM).await? {
        tracing::info!(integration, since = %running.started_at, "a sync of this integration is running: not starting another");
        return Err(SyncError::AlreadyRunning(Box::new(running)));
    }
    let planned = plan(ctx, fanout, integration, directory, started_at, wanted).await;
    if let Err(error) = &planned {
        status.state = SyncState::Failed;
        status.finished_at = Some(ctx.clock.now());
        status.error = Some(format!("planning the fanned-out sync: {error}"));
        if let Err(e) = ctx.store.put_sync_status(&status).await {
            tracing::error!(integration, error = %e, "could not record the sync status");
        }
    }
    planned
}

async fn plan(
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

fn messages(run: &SyncRun, kind: PartKind, parts: u32) -> Vec<PartMessage> {
    (0..parts)
        .map(|part| PartMessage { integration: run.integration.clone(), run_id: run.run_id.clone(), kind, part })
        .collect()
}

fn part_name(kind: PartKind, part: u32) -> String {
    format!("{}/{part}", kind.as_str())
}

/// Works one delivered part (`attempt`: the queue's delivery count). The last attempt's failure
/// fails the run.
pub async fn run_part(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    message: &PartMessage,
    directory: &dyn Directory,
    attempt: u32,
) -> Result<PartOutcome, SyncError> {
    let outcome = work(ctx, fanout, message, directory).await;
    if let Err(error) = &outcome {
        if attempt >= PART_ATTEMPTS {
            let reason = format!("part {} failed {attempt} times: {error}", part_name(message.kind, message.part));
            fail_run(ctx, fanout, message, &reason).await;
        }
    }
    outcome
}

async fn fail_run(ctx: &SyncContext<'_>, fanout: &FanOut<'_>, message: &PartMessage, reason: &str) {
    let integration = message.integration.as_str();
    tracing::error!(integration, run_id = message.run_id, reason, "fanned-out sync failed");
    let run = match fanout.runs.run(integration, &message.run_id).await {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(e) => return tracing::error!(integration, error = %e, "could not read the run to fail it"),
    };
    if matches!(run.stage, RunStage::Done | RunStage::Failed) {
        return;
    }
    let failed = SyncRun { stage: RunStage::Failed, error: Some(reason.to_owned()), ..run.clone() };
    match fanout.runs.put_run(&failed, Some(run.stage)).await {
        Ok(true) => {}
        Ok(false) => return, // moved on meanwhile
        Err(e) => tracing::error!(integration, error = %e, "could not mark the run failed"),
    }
    match current(ctx, &run).await {
        Ok(true) => {
            let status = SyncStatus {
                state: SyncState::Failed,
                finished_at: Some(ctx.clock.now()),
                error: Some(reason.to_owned()),
                ..SyncStatus::running(integration, run.started_at)
            };
            if let Err(e) = ctx.store.put_sync_status(&status).await {
                tracing::error!(integration, error = %e, "could not record the sync status");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::error!(integration, error = %e, "could not read the sync status"),
    }
}

/// The run is the integration's current sync: its status is running and began with it.
async fn current(ctx: &SyncContext<'_>, run: &SyncRun) -> Result<bool, SyncError> {
    let status = ctx.store.sync_status(&run.integration).await?;
    Ok(status.is_some_and(|s| s.state == SyncState::Running && s.started_at == run.started_at))
}

async fn work(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    message: &PartMessage,
    directory: &dyn Directory,
) -> Result<PartOutcome, SyncError> {
    let dropped = |reason: &str| Ok(PartOutcome::Dropped { reason: reason.to_owned() });
    let Some(run) = fanout.runs.run(&message.integration, &message.run_id).await? else {
        return dropped("no such run");
    };
    if matches!(run.stage, RunStage::Done | RunStage::Failed) {
        return dropped("the run is over");
    }
    if !current(ctx, &run).await? {
        return dropped("the run is not the integration's current sync");
    }
    let me = part_name(message.kind, message.part);
    let moved_by_me = run.moved_by.as_deref() == Some(me.as_str());
    match (message.kind, run.stage) {
        (PartKind::Users, RunStage::Users) => users_part(ctx, fanout, &run, message.part, directory).await,
        // This part moved the run on, then failed before sending the members parts.
        (PartKind::Users, RunStage::Members) if moved_by_me && !run.members_sent => {
            send_members(fanout, run).await?;
            Ok(PartOutcome::Done { kind: PartKind::Users, part: message.part, moved: Some(RunStage::Members) })
        }
        (PartKind::Members, RunStage::Members) => members_part(ctx, fanout, &run, message.part, directory).await,
        // This part began the finish and failed in it.
        (PartKind::Members, RunStage::Finishing) if moved_by_me => {
            finish(ctx, fanout, run, directory).await?;
            Ok(PartOutcome::Done { kind: PartKind::Members, part: message.part, moved: Some(RunStage::Done) })
        }
        (PartKind::Members, RunStage::Users) => {
            Err(SyncError::Fanout(format!("members part {me} before the users half")))
        }
        _ => dropped("the run is past this part"),
    }
}

async fn write(store: &dyn DirectoryStore, integration: &str, changes: DirectoryChanges) -> Result<(), SyncError> {
    for slice in super::sync::slices(changes, WRITE_SLICE) {
        store.apply_changes(integration, &slice).await?;
    }
    Ok(())
}

/// A manager named by id or email, as stored.
async fn stored_manager(
    store: &dyn DirectoryStore,
    integration: &str,
    reference: &str,
) -> Result<Option<(String, String)>, SyncError> {
    let found = if reference.contains('@') {
        store.user_by_email(integration, &canonical_email(reference)).await?
    } else {
        store.user_by_id(integration, reference).await?
    };
    Ok(found.map(|u| (u.id, u.email)))
}

async fn users_part(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
    part: u32,
    directory: &dyn Directory,
) -> Result<PartOutcome, SyncError> {
    let integration = run.integration.as_str();
    let last_part = part + 1 == run.user_parts;
    let skip = u64::from(part) * run.users_per_part;
    let listed = directory.list_users_from(skip, (!last_part).then_some(run.users_per_part)).await?;
    let last_id = listed.iter().map(|u| u.id.clone()).max();

    // Managers among the part's own users first (as the single sync resolves them), then stored.
    let by_id: HashMap<&str, usize> = listed.iter().enumerate().map(|(i, u)| (u.id.as_str(), i)).collect();
    let by_email: HashMap<String, usize> =
        listed.iter().enumerate().map(|(i, u)| (canonical_email(&u.email), i)).collect();
    let references: Vec<Option<String>> = listed.iter().map(|u| manager_reference(u, ctx.policy)).collect();
    let mut managers: Vec<Option<(String, String)>> = vec![None; listed.len()];
    let mut elsewhere: Vec<usize> = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        let Some(reference) = reference else { continue };
        let local = by_id.get(reference.as_str()).or_else(|| by_email.get(&canonical_email(reference))).copied();
        match local {
            Some(m) if m != i => managers[i] = Some((listed[m].id.clone(), canonical_email(&listed[m].email))),
            Some(_) => {}
            None => elsewhere.push(i),
        }
    }
    drop((by_id, by_email));
    let found: Vec<(usize, Option<(String, String)>)> = stream::iter(elsewhere)
        .map(|i| {
            let reference = references[i].clone().unwrap_or_default();
            async move { stored_manager(ctx.store, integration, &reference).await.map(|m| (i, m)) }
        })
        .buffer_unordered(STORE_CONCURRENCY)
        .try_collect()
        .await?;
    let mut unresolved = Vec::new();
    for (i, manager) in found {
        match manager.filter(|(id, _)| *id != listed[i].id) {
            Some(m) => managers[i] = Some(m),
            None => unresolved.push((listed[i].id.clone(), references[i].clone().unwrap_or_default())),
        }
    }
    unresolved.sort();

    let mut users: Vec<DirectoryUser> = Vec::with_capacity(listed.len());
    let mut excluded: Vec<(String, String)> = Vec::new();
    let listed_count = listed.len() as u64;
    for (user, manager) in listed.into_iter().zip(managers) {
        if !ctx.policy.include_suspended_users && user.is_suspended() {
            excluded.push((user.id, canonical_email(&user.email)));
            continue;
        }
        users.push(directory_user(user, manager));
    }
    excluded.sort();
    let mut ids = PartIds { kept: users.iter().map(|u| u.id.clone()).collect(), ..PartIds::default() };
    ids.kept.sort();
    (ids.excluded, ids.excluded_emails) = excluded.into_iter().unzip();

    let stored: HashMap<String, DirectoryUser> =
        ctx.store.users_by_ids(integration, &ids.kept).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
    // A manager named but found neither here nor stored (a suspended one, say) keeps what the
    // store has for it until `resolve_managers`, once every part is in, says what it is: so an
    // unchanged user is not written twice over.
    let unresolved_of: HashMap<&str, &str> = unresolved.iter().map(|(u, r)| (u.as_str(), r.as_str())).collect();
    for user in &mut users {
        let (Some(reference), Some(before)) = (unresolved_of.get(user.id.as_str()), stored.get(&user.id)) else {
            continue;
        };
        let named = |id: &Option<String>, email: &Option<String>| {
            id.as_deref() == Some(*reference) || email.as_deref() == Some(canonical_email(reference).as_str())
        };
        if named(&before.manager_id, &before.manager_email) {
            (user.manager_id, user.manager_email) = (before.manager_id.clone(), before.manager_email.clone());
        }
    }
    drop(unresolved_of);
    let stored: HashMap<String, u64> = stored.iter().map(|(id, u)| (id.clone(), content_hash(u))).collect();
    let new: Vec<String> = users.iter().filter(|u| !stored.contains_key(&u.id)).map(|u| u.id.clone()).collect();
    let put_users: Vec<DirectoryUser> =
        users.into_iter().filter(|u| stored.get(&u.id) != Some(&content_hash(u))).collect();
    let report = PartReport {
        listed: listed_count,
        kept: ids.kept.len() as u64,
        written: put_users.len() as u64,
        deleted: 0,
        last_id,
        unresolved_managers: unresolved,
        ..PartReport::default()
    };
    write(ctx.store, integration, DirectoryChanges { put_users, ..DirectoryChanges::default() }).await?;
    if !run.first_sync && !new.is_empty() {
        fanout.runs.put_new_ids(integration, &run.run_id, NewKind::Users, part, &new).await?;
    }
    let done = fanout.runs.report_part(integration, &run.run_id, PartKind::Users, part, &report, &ids).await?;
    tracing::info!(
        integration,
        run_id = run.run_id,
        part,
        listed = listed_count,
        written = report.written,
        done,
        of = run.user_parts,
        "users part done"
    );
    let mut moved = None;
    if done >= run.user_parts {
        resolve_managers(ctx, fanout, run).await?;
        let next = SyncRun {
            stage: RunStage::Members,
            moved_by: Some(part_name(PartKind::Users, part)),
            members_sent: false,
            ..run.clone()
        };
        if fanout.runs.put_run(&next, Some(RunStage::Users)).await? {
            send_members(fanout, next).await?;
            moved = Some(RunStage::Members);
        }
    }
    Ok(PartOutcome::Done { kind: PartKind::Users, part, moved })
}

/// Managers no users part found (in another part, and not stored when it ran; or not stored at
/// all: suspended users are not, yet the single sync resolves managers among every user it
/// fetched): every user of the run is stored now, and the parts' excluded users are known.
async fn resolve_managers(ctx: &SyncContext<'_>, fanout: &FanOut<'_>, run: &SyncRun) -> Result<(), SyncError> {
    let integration = run.integration.as_str();
    let mut reports = Vec::new();
    for part in 0..run.user_parts {
        let Some(report) = fanout.runs.part_report(integration, &run.run_id, PartKind::Users, part).await? else {
            return Err(SyncError::Fanout(format!("users part {part} counted done without a report")));
        };
        if !report.unresolved_managers.is_empty() {
            reports.push(report);
        }
    }
    if reports.is_empty() {
        return Ok(());
    }
    let mut excluded_by_id: HashMap<String, String> = HashMap::new();
    for part in 0..run.user_parts {
        let ids = fanout.runs.part_ids(integration, &run.run_id, part).await?;
        excluded_by_id.extend(ids.excluded.into_iter().zip(ids.excluded_emails));
    }
    let excluded_by_email: HashMap<&str, &str> =
        excluded_by_id.iter().map(|(id, email)| (email.as_str(), id.as_str())).collect();
    let excluded = |reference: &str| -> Option<(String, String)> {
        if let Some((id, email)) = excluded_by_id.get_key_value(reference) {
            return Some((id.clone(), email.clone()));
        }
        let email = canonical_email(reference);
        excluded_by_email.get(email.as_str()).map(|id| ((*id).to_owned(), email.clone()))
    };
    for report in reports {
        let ids: Vec<String> = report.unresolved_managers.iter().map(|(user, _)| user.clone()).collect();
        let mut users: HashMap<String, DirectoryUser> =
            ctx.store.users_by_ids(integration, &ids).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        let mut put_users = Vec::new();
        for (user_id, reference) in &report.unresolved_managers {
            let Some(mut user) = users.remove(user_id) else { continue };
            let found = match stored_manager(ctx.store, integration, reference).await? {
                Some(manager) => Some(manager),
                None => excluded(reference),
            };
            // Nobody (or the user itself): no manager, as the single sync decides.
            let (id, email) = found.filter(|(id, _)| *id != user.id).unzip();
            if (&user.manager_id, &user.manager_email) != (&id, &email) {
                (user.manager_id, user.manager_email) = (id, email);
                put_users.push(user);
            }
        }
        write(ctx.store, integration, DirectoryChanges { put_users, ..DirectoryChanges::default() }).await?;
    }
    Ok(())
}

async fn send_members(fanout: &FanOut<'_>, mut run: SyncRun) -> Result<(), SyncError> {
    fanout.queue.send(&messages(&run, PartKind::Members, run.member_parts)).await.map_err(SyncError::Queue)?;
    run.members_sent = true;
    fanout.runs.put_run(&run, Some(RunStage::Members)).await?;
    Ok(())
}

/// One group's members as JumpCloud and the store have them (`None`: the group is gone).
struct GroupRead {
    group_id: String,
    fetched: Option<BTreeSet<String>>,
    stored: BTreeSet<String>,
}

async fn members_part(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
    part: u32,
    directory: &dyn Directory,
) -> Result<PartOutcome, SyncError> {
    let integration = run.integration.as_str();
    let group_ids = fanout.runs.member_plan(integration, &run.run_id, part).await?;
    let reads: Vec<GroupRead> = stream::iter(group_ids)
        .map(|group_id| async move {
            let (fetched, stored) = futures::join!(
                directory.list_group_members(&group_id),
                ctx.store.group_members(integration, &group_id)
            );
            let fetched = match fetched {
                Ok(members) => Some(members.into_iter().collect()),
                Err(DirectoryError::NotFound { .. }) => None, // vanished: the finish deletes it
                Err(e) => return Err(SyncError::Directory(e)),
            };
            Ok::<_, SyncError>(GroupRead { group_id, fetched, stored: stored?.into_iter().collect() })
        })
        .buffer_unordered(GROUP_CONCURRENCY)
        .try_collect()
        .await?;

    // Memberships only of users the run stored (the single sync keeps those of the users it
    // stores: not of suspended ones, unless configured).
    let candidates: Vec<String> = reads
        .iter()
        .filter_map(|r| r.fetched.as_ref().map(|f| f.difference(&r.stored)))
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let stored_users: HashMap<String, DirectoryUser> =
        ctx.store.users_by_ids(integration, &candidates).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
    let judging = judging(ctx, fanout, run).await?;

    let mut report = PartReport::default();
    let mut changes = DirectoryChanges::default();
    for read in reads {
        let Some(fetched) = read.fetched else {
            report.gone_groups.push(read.group_id);
            continue;
        };
        let group = ObjectId::new(&read.group_id);
        let membership = |user: &str| Membership { group_id: group.clone(), user_id: ObjectId::new(user) };
        let gone: Vec<&String> = read.stored.difference(&fetched).collect();
        let added: Vec<&String> =
            fetched.difference(&read.stored).filter(|u| stored_users.contains_key(u.as_str())).collect();
        report.listed += (read.stored.len() - gone.len() + added.len()) as u64;
        changes.delete_memberships.extend(gone.iter().map(|u| membership(u)));
        for user_id in added {
            let keep = match &judging {
                Some(judge) if !judge.new_users.contains(user_id) && !judge.new_groups.contains(&read.group_id) => {
                    let email = stored_users.get(user_id).map(|u| u.email.as_str());
                    judge.added(ctx, integration, &read.group_id, user_id, email, directory, &mut report).await?
                }
                _ => true,
            };
            if keep {
                changes.put_memberships.push(membership(user_id));
            } else {
                report.listed -= 1;
            }
        }
    }
    report.written = changes.put_memberships.len() as u64;
    report.deleted = changes.delete_memberships.len() as u64;
    write(ctx.store, integration, changes).await?;
    let done = fanout
        .runs
        .report_part(integration, &run.run_id, PartKind::Members, part, &report, &PartIds::default())
        .await?;
    tracing::info!(
        integration,
        run_id = run.run_id,
        part,
        written = report.written,
        deleted = report.deleted,
        done,
        of = run.member_parts,
        "members part done"
    );
    let mut moved = None;
    if done >= run.member_parts {
        let next =
            SyncRun { stage: RunStage::Finishing, moved_by: Some(part_name(PartKind::Members, part)), ..run.clone() };
        if fanout.runs.put_run(&next, Some(RunStage::Members)).await? {
            finish(ctx, fanout, next, directory).await?;
            moved = Some(RunStage::Done);
        }
    }
    Ok(PartOutcome::Done { kind: PartKind::Members, part, moved })
}

/// What a members part needs to judge memberships added outside the product (`domain::outside`):
/// none on an integration's first sync, nor without the grant lifecycle or a policy.
struct Judging<'a> {
    grants: &'a super::grant::GrantContext<'a>,
    policy: std::sync::Arc<crate::ports::AppliedPolicy>,
    /// Users and groups the run stored for the first time: their memberships are first sights.
    new_users: HashSet<String>,
    new_groups: HashSet<String>,
    groups: std::sync::Mutex<HashMap<String, Option<DirectoryGroup>>>,
}

async fn judging<'a>(
    ctx: &SyncContext<'a>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
) -> Result<Option<Judging<'a>>, SyncError> {
    let Some(grants) = ctx.grants else { return Ok(None) };
    if run.first_sync {
        return Ok(None);
    }
    let policy = match grants.policies.current().await {
        Ok(Some(policy)) => policy,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(SyncError::Fanout(format!(
                "reading the policy to judge memberships added outside the product: {e}"
            )))
        }
    };
    let (new_users, new_groups) = futures::try_join!(
        fanout.runs.new_ids(&run.integration, &run.run_id, NewKind::Users),
        fanout.runs.new_ids(&run.integration, &run.run_id, NewKind::Groups),
    )?;
    Ok(Some(Judging { grants, policy, new_users, new_groups, groups: Default::default() }))
}

impl Judging<'_> {
    /// Judges one membership new since the stored directory; whether to store it.
    #[allow(clippy::too_many_arguments)]
    async fn added(
        &self,
        ctx: &SyncContext<'_>,
        integration: &str,
        group_id: &str,
        user_id: &str,
        user_email: Option<&str>,
        directory: &dyn Directory,
        report: &mut PartReport,
    ) -> Result<bool, SyncError> {
        let cached = self.groups.lock().expect("lock").get(group_id).cloned();
        let group = match cached {
            Some(group) => group,
            None => {
                let group = ctx.store.group_by_id(integration, group_id).await?;
                self.groups.lock().expect("lock").insert(group_id.to_owned(), group.clone());
                group
            }
        };
        let Some(group) = group else { return Ok(true) };
        let jit_only =
            self.policy.policy.rule_for(&GroupRef { id: &group.id, name: &group.name }).is_some_and(|r| r.jit_only);
        if !jit_only {
            return Ok(true);
        }
        let key = LeaseKey {
            integration: integration.to_owned(),
            group_id: group_id.to_owned(),
            user_id: user_id.to_owned(),
        };
        let added = Added { key, group_name: &group.name, user_email };
        match outside::judge(self.grants, directory, &added).await {
            Ok(Outside::NotDrift) => Ok(true),
            Ok(Outside::Reported) => {
                report.added_outside.push((group_id.to_owned(), user_id.to_owned(), false));
                Ok(true)
            }
            Ok(Outside::Removed) => {
                report.added_outside.push((group_id.to_owned(), user_id.to_owned(), true));
                Ok(false)
            }
            // Not stored: the next sync sees it as new again.
            Err(e) => {
                report.failures.push(format!("judging {user_id} added to {} outside the product: {e}", group.name));
                Ok(false)
            }
        }
    }
}

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
async fn finish(
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
