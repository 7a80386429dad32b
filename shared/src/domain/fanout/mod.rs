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
//!    `jit_only` group is judged as the incremental sync judges it) and deletes those gone, storing
//!    the groups read so far while it reads the rest. A group's member list is read whole by one
//!    part, so its deletions are exact there.
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
        RunStage, SourceUser, StoredUserDigest, SyncRun, SyncRunStore, SyncState, SyncStatus,
    },
};
use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

mod finish;
mod members;
mod plan;
mod users;

/// Users per users part: 100 of JumpCloud's pages, and the part's ids fit its report.
pub const USERS_PER_PART: u64 = 10_000;
/// Users a users part reads at once (ten of JumpCloud's pages): each read's stored digests and
/// managers are looked up while the next ones are read.
pub const USERS_PER_READ: u64 = 1_000;
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
    /// [`USERS_PER_READ`], smaller in tests.
    pub users_per_read: u64,
}

impl<'a> FanOut<'a> {
    pub fn new(queue: &'a dyn PartQueue, runs: &'a dyn SyncRunStore, above_users: u64) -> Self {
        Self {
            queue,
            runs,
            above_users,
            users_per_part: USERS_PER_PART,
            groups_per_part: GROUPS_PER_PART,
            users_per_read: USERS_PER_READ,
        }
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
    let planned = plan::plan(ctx, fanout, integration, directory, started_at, wanted).await;
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
        (PartKind::Users, RunStage::Users) => users::users_part(ctx, fanout, &run, message.part, directory).await,
        // This part moved the run on, then failed before sending the members parts.
        (PartKind::Users, RunStage::Members) if moved_by_me && !run.members_sent => {
            users::send_members(fanout, run).await?;
            Ok(PartOutcome::Done { kind: PartKind::Users, part: message.part, moved: Some(RunStage::Members) })
        }
        (PartKind::Members, RunStage::Members) => {
            members::members_part(ctx, fanout, &run, message.part, directory).await
        }
        // This part began the finish and failed in it.
        (PartKind::Members, RunStage::Finishing) if moved_by_me => {
            finish::finish(ctx, fanout, run, directory).await?;
            Ok(PartOutcome::Done { kind: PartKind::Members, part: message.part, moved: Some(RunStage::Done) })
        }
        (PartKind::Members, RunStage::Users) => {
            Err(SyncError::Fanout(format!("members part {me} before the users half")))
        }
        _ => dropped("the run is past this part"),
    }
}

/// A read and its place among those let ahead of their consumer: the place frees when the
/// consumer drops it, done with the read.
pub(super) struct Ahead<T> {
    pub read: T,
    place: tokio::sync::OwnedSemaphorePermit,
}

impl<T> Ahead<T> {
    /// The read, and its place: held until dropped.
    fn into_parts(self) -> (T, tokio::sync::OwnedSemaphorePermit) {
        (self.read, self.place)
    }
}

/// Gives each read a place before it starts: at most `places` reads begun and not yet done with
/// by the consumer (what bounds the memory, not the channel, which [`forward`] never waits on).
fn placed<T, F>(
    reads: impl futures::Stream<Item = F>,
    places: usize,
) -> impl futures::Stream<Item = impl std::future::Future<Output = Result<Ahead<T>, SyncError>>>
where
    F: std::future::Future<Output = Result<T, SyncError>>,
{
    let free = std::sync::Arc::new(tokio::sync::Semaphore::new(places));
    reads
        .then(move |read| {
            let free = free.clone();
            async move { (read, free.acquire_owned().await.expect("the semaphore is never closed")) }
        })
        .map(|(read, place)| async move { Ok(Ahead { read: read.await?, place }) })
}

/// Sends each read down the channel as it comes, until the reads end, one fails (its error is
/// the part's) or the receiver is gone (its side failed, and its error is the part's).
///
/// It never waits to send, so that the reads in flight are polled to their end while the
/// consumer works: a JumpCloud request left unpolled runs out its timeout with its answer
/// waiting (a users part on a slow store failed five times so, "timed out"). The reads'
/// [`placed`] bound what the channel holds.
async fn forward<T>(
    reads: impl futures::Stream<Item = Result<Ahead<T>, SyncError>>,
    sender: futures::channel::mpsc::UnboundedSender<Ahead<T>>,
) -> Result<(), SyncError> {
    let mut reads = std::pin::pin!(reads);
    while let Some(read) = reads.next().await {
        if sender.unbounded_send(read?).is_err() {
            break;
        }
    }
    Ok(())
}

async fn write(store: &dyn DirectoryStore, integration: &str, changes: DirectoryChanges) -> Result<(), SyncError> {
    for slice in super::sync::slices(changes, WRITE_SLICE) {
        store.apply_changes(integration, &slice).await?;
    }
    Ok(())
}
