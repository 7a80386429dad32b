//! Sync: pull one integration's users, groups and direct memberships from JumpCloud and write
//! only what changed. One failing integration never stops the others.

use super::{
    fanout::{self, FanOut, FanOutStarted},
    grant::GrantContext,
    model::{DirectoryDigest, DirectoryGroup, DirectorySnapshot, LeaseKey, Membership, ObjectId},
    outside::{self, Added, Outside},
    policy::GroupRef,
    reconcile::{reconcile, ReconcileReport},
    snapshot::build_snapshot,
};
use crate::domain::model::{EventType, GrantEvent};
use crate::{
    clock::Clock,
    config::DirectoryPolicy,
    domain::model::diff,
    ports::DirectoryError,
    ports::StoreError,
    ports::{Directory, DirectoryProvider, DirectoryStore, IntegrationCatalog, SecretsError, SyncState, SyncStatus},
};
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
    #[error(transparent)]
    Queue(#[from] crate::ports::QueueError),
    /// A fanned-out run's records are not as its parts left them.
    #[error("fanned-out sync: {0}")]
    Fanout(String),
    /// Another sync of the integration is running (one at a time per integration).
    #[error("a sync of integration {:?} is running since {}", .0.integration, .0.started_at)]
    AlreadyRunning(Box<SyncStatus>),
}

/// How long a sync's claim on its integration holds: longer than the sync function's timeout
/// (10 minutes), so that only a sync that died lets another one start early.
pub(crate) const SYNC_CLAIM: chrono::Duration = chrono::Duration::minutes(15);

/// Progress of a sync, for terminals (the CLI's bars) and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    Started { integration: String },
    UsersFetched { integration: String, users: usize },
    GroupsFetched { integration: String, groups: usize },
    MembersFetched { integration: String, groups_done: usize, groups_total: usize },
    Writing { integration: String, items: usize },
    Written { integration: String, items_done: usize, items_total: usize },
}

pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: SyncProgress);
}

/// Reports nowhere.
pub struct NoProgress;
impl ProgressSink for NoProgress {
    fn report(&self, _: SyncProgress) {}
}

/// What one integration's sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub integration: String,
    pub users: usize,
    pub groups: usize,
    pub memberships: usize,
    /// Items put because they are new or changed.
    pub written: usize,
    /// Items deleted because they vanished from JumpCloud.
    pub deleted: usize,
    #[serde(serialize_with = "millis")]
    pub fetch_duration: Duration,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<ReconcileReport>,
    /// A fanned-out sync: how many parts it ran in (`domain::fanout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Groups whose members are being fetched at once; the client's own limits bound the requests.
const MEMBER_FETCH_CONCURRENCY: usize = 64;
/// Writes are applied in slices so that progress can be shown on large directories.
const WRITE_SLICE: usize = 2_500;

pub struct SyncContext<'a> {
    pub store: &'a dyn DirectoryStore,
    pub policy: &'a DirectoryPolicy,
    pub clock: &'a dyn Clock,
    pub progress: &'a dyn ProgressSink,
    /// The grant lifecycle's ports: with them, each sync also reconciles grants against what it
    /// fetched (invariant 6) and publishes `Sync Completed`.
    pub grants: Option<&'a GrantContext<'a>>,
    /// With a queue, a full sync of a large organization is fanned out (`domain::fanout`).
    pub fanout: Option<&'a FanOut<'a>>,
}

impl<'a> SyncContext<'a> {
    /// The directory alone: no progress shown, no grant lifecycle, no fan-out.
    pub fn directory_only(store: &'a dyn DirectoryStore, policy: &'a DirectoryPolicy, clock: &'a dyn Clock) -> Self {
        Self { store, policy, clock, progress: &NoProgress, grants: None, fanout: None }
    }
}

/// Syncs one integration and records its status (running, then succeeded or failed).
pub async fn sync_integration(
    ctx: &SyncContext<'_>,
    integration: &str,
    directory: &dyn Directory,
) -> Result<SyncReport, SyncError> {
    let started_at = ctx.clock.now();
    let status = SyncStatus::running(integration, started_at);
    if let Some(running) = ctx.store.claim_sync(&status, started_at + SYNC_CLAIM).await? {
        tracing::info!(integration, since = %running.started_at, "a sync of this integration is running: not starting another");
        return Err(SyncError::AlreadyRunning(Box::new(running)));
    }
    let outcome = run(ctx, integration, directory).await;
    record_outcome(ctx, integration, started_at, &outcome).await;
    outcome
}

/// A full sync (single or fanned out) that began at `started_at` has ended: `Sync Completed`
/// (with the grant lifecycle), the event cursor (on success) and the status.
pub(crate) async fn record_outcome(
    ctx: &SyncContext<'_>,
    integration: &str,
    started_at: chrono::DateTime<chrono::Utc>,
    outcome: &Result<SyncReport, SyncError>,
) {
    let mut status = SyncStatus::running(integration, started_at);
    status.finished_at = Some(ctx.clock.now());
    if let (Some(grants), Ok(report)) = (ctx.grants, outcome) {
        let event = GrantEvent {
            detail_type: EventType::SyncCompleted,
            detail: serde_json::to_value(report).unwrap_or_default(),
        };
        if let Err(e) = grants.events.publish(&[event]).await {
            tracing::error!(integration, error = %e, "could not publish Sync Completed");
        }
    }
    if outcome.is_ok() {
        // The incremental sync goes on from when this one began reading: events since then may
        // not be in what it read (or were overwritten by its writes); reading them again is harmless.
        if let Err(e) = ctx.store.put_event_cursor(integration, started_at, None).await {
            tracing::error!(integration, error = %e, "could not record the event cursor");
        }
    }
    match outcome {
        Ok(report) => {
            status.state = SyncState::Succeeded;
            status.users = report.users as u64;
            status.groups = report.groups as u64;
            status.memberships = report.memberships as u64;
            status.written = report.written as u64;
            status.deleted = report.deleted as u64;
        }
        Err(error) => {
            status.state = SyncState::Failed;
            status.error = Some(error.to_string());
        }
    }
    // The sync's own outcome matters more than a failure to record it.
    if let Err(e) = ctx.store.put_sync_status(&status).await {
        tracing::error!(integration, error = %e, "could not record the sync status");
    }
}

async fn run(ctx: &SyncContext<'_>, integration: &str, directory: &dyn Directory) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let fetch_started = ctx.clock.now();
    let progress = ctx.progress;
    let name = || integration.to_owned();
    progress.report(SyncProgress::Started { integration: name() });

    let fetch = async {
        let (users, groups) = futures::try_join!(
            async {
                let users = directory.list_users().await?;
                progress.report(SyncProgress::UsersFetched { integration: name(), users: users.len() });
                Ok::<_, DirectoryError>(users)
            },
            async {
                let groups = directory.list_groups().await?;
                progress.report(SyncProgress::GroupsFetched { integration: name(), groups: groups.len() });
                Ok(groups)
            },
        )?;
        let groups_total = groups.len();
        let mut groups_done = 0;
        let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let members: Vec<(String, Vec<ObjectId>)> = stream::iter(group_ids)
            // Kept as `ObjectId`s from the start: a quarter of the memory of the ids as text.
            .map(|id| async move {
                directory.list_group_members(&id).await.map(|m| (id, m.iter().map(|u| ObjectId::new(u)).collect()))
            })
            .buffer_unordered(MEMBER_FETCH_CONCURRENCY)
            .inspect_ok(|_| {
                groups_done += 1;
                if groups_done % 50 == 0 || groups_done == groups_total {
                    progress.report(SyncProgress::MembersFetched { integration: name(), groups_done, groups_total });
                }
            })
            .try_collect()
            .await?;
        Ok::<_, DirectoryError>((users, groups, members))
    };
    // The stored copy is read while JumpCloud is being fetched.
    let (fetched, stored) = futures::join!(
        async {
            let out = fetch.await;
            (out, started.elapsed())
        },
        ctx.store.load_digest(integration)
    );
    let ((users, groups, members), fetch_duration) = (fetched.0?, fetched.1);
    let stored = stored?;

    let mut snapshot = build_snapshot(users, &groups, members, ctx.policy);
    drop(groups);
    let reconciliation = match ctx.grants {
        Some(grants) => {
            let mut report = reconcile(grants, integration, directory, &mut snapshot, fetch_started).await;
            judge_added_outside(grants, integration, directory, &stored, &mut snapshot, &mut report).await;
            Some(report)
        }
        None => None,
    };
    let (users, groups, memberships) = (snapshot.users.len(), snapshot.groups.len(), snapshot.memberships.len());
    let changes = diff(&stored, snapshot);
    drop(stored);

    let (total, written, deleted) = (changes.len(), changes.puts(), changes.deletes());
    progress.report(SyncProgress::Writing { integration: name(), items: total });
    let mut done = 0;
    for slice in slices(changes, WRITE_SLICE) {
        ctx.store.apply_changes(integration, &slice).await?;
        done += slice.len();
        progress.report(SyncProgress::Written { integration: name(), items_done: done, items_total: total });
    }
    Ok(SyncReport {
        integration: integration.to_owned(),
        users,
        groups,
        memberships,
        written,
        deleted,
        fetch_duration,
        duration: started.elapsed(),
        reconciliation,
        parts: None,
    })
}

/// Memberships new since the last sync, of a user and a group it had stored (so not the first
/// sight of either), in a group a `jit_only` rule covers: added outside the product meanwhile
/// unless a grant holds them. Judged as the incremental sync judges those it sees
/// (`domain::outside`): this catches the ones it did not (it was behind, or handed over to this
/// sync). One removed as drift, or not judged now, is left out of the snapshot, so not stored: the
/// next sync (or incremental run) sees it as new again. The first sync stores what it finds: all
/// of it was there before the product.
async fn judge_added_outside(
    grants: &GrantContext<'_>,
    integration: &str,
    directory: &dyn Directory,
    stored: &DirectoryDigest,
    snapshot: &mut DirectorySnapshot,
    report: &mut ReconcileReport,
) {
    if stored.users.is_empty() && stored.groups.is_empty() {
        return;
    }
    let policy = match grants.policies.current().await {
        Ok(Some(policy)) => policy,
        Ok(None) => return,
        Err(e) => {
            report.failures.push(format!("reading the policy to judge memberships added outside the product: {e}"));
            return;
        }
    };
    let jit_only = |group: &DirectoryGroup| {
        policy.policy.rule_for(&GroupRef { id: &group.id, name: &group.name }).is_some_and(|r| r.jit_only)
    };
    let readded: BTreeSet<(&str, &str)> = report.readded.iter().map(|(_, g, u)| (g.as_str(), u.as_str())).collect();
    let new: Vec<(Membership, DirectoryGroup, Option<String>)> = snapshot
        .memberships
        .iter()
        .filter(|m| !stored.memberships.contains(m))
        .filter_map(|m| {
            let (group_id, user_id) = (m.group_id.to_string(), m.user_id.to_string());
            let group = snapshot.groups.get(&group_id)?;
            let known = stored.users.contains_key(&user_id) && stored.groups.contains_key(&group_id);
            (known && jit_only(group) && !readded.contains(&(group_id.as_str(), user_id.as_str())))
                .then(|| (m.clone(), group.clone(), snapshot.users.get(&user_id).map(|u| u.email.clone())))
        })
        .collect();
    for (membership, group, email) in new {
        let key = LeaseKey {
            integration: integration.to_owned(),
            group_id: group.id.clone(),
            user_id: membership.user_id.to_string(),
        };
        let added = Added { key, group_name: &group.name, user_email: email.as_deref() };
        let (group_id, user_id) = (group.id.clone(), membership.user_id.to_string());
        match outside::judge(grants, directory, &added).await {
            Ok(Outside::NotDrift) => {}
            Ok(Outside::Gone) => {
                snapshot.memberships.remove(&membership);
            }
            Ok(Outside::Reported) => report.added_outside.push((group_id, user_id, false)),
            Ok(Outside::Removed) => {
                snapshot.memberships.remove(&membership);
                report.added_outside.push((group_id, user_id, true));
            }
            Err(e) => {
                snapshot.memberships.remove(&membership);
                report.failures.push(format!("judging {user_id} added to {} outside the product: {e}", group.name));
            }
        }
    }
}

/// Splits changes into slices of at most `size` items, puts before deletes.
pub(crate) fn slices(
    changes: crate::domain::model::DirectoryChanges,
    size: usize,
) -> Vec<crate::domain::model::DirectoryChanges> {
    use crate::domain::model::DirectoryChanges;
    let mut out = Vec::new();
    let mut current = DirectoryChanges::default();
    macro_rules! drain {
        ($field:ident) => {
            for item in changes.$field {
                if current.len() == size {
                    out.push(std::mem::take(&mut current));
                }
                current.$field.push(item);
            }
        };
    }
    drain!(put_users);
    drain!(put_groups);
    drain!(put_memberships);
    drain!(delete_memberships);
    drain!(delete_groups);
    drain!(delete_users);
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One integration's full sync, its outcome whatever happened: fanned out when the context has a
/// queue and the organization is large (`fanout::wanted`), else in this invocation.
pub async fn full_sync(ctx: &SyncContext<'_>, integration: &str, directory: &dyn Directory) -> IntegrationOutcome {
    if let Some(fanout) = ctx.fanout {
        let started = match fanout::wanted(ctx, fanout, integration, directory).await {
            Ok(None) => None,
            Ok(Some(wanted)) => Some(fanout::start(ctx, fanout, integration, directory, wanted).await),
            Err(e) => Some(Err(e)),
        };
        match started {
            None => {}
            Some(Ok(started)) => return IntegrationOutcome::FannedOut(started),
            Some(Err(SyncError::AlreadyRunning(running))) => {
                return IntegrationOutcome::Running { integration: running.integration, started_at: running.started_at }
            }
            Some(Err(error)) => {
                tracing::error!(integration, error = %error, "fanned-out sync failed to start");
                return IntegrationOutcome::Failed { integration: integration.to_owned(), error: error.to_string() };
            }
        }
    }
    match sync_integration(ctx, integration, directory).await {
        Ok(report) => IntegrationOutcome::Succeeded(report),
        Err(SyncError::AlreadyRunning(running)) => {
            IntegrationOutcome::Running { integration: running.integration, started_at: running.started_at }
        }
        Err(error) => {
            tracing::error!(integration, error = %error, "sync failed");
            IntegrationOutcome::Failed { integration: integration.to_owned(), error: error.to_string() }
        }
    }
}

/// The outcome of one integration in a sync of several.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum IntegrationOutcome {
    Succeeded(SyncReport),
    Failed {
        integration: String,
        error: String,
    },
    /// Another sync of it was running: this one did nothing.
    Running {
        integration: String,
        started_at: chrono::DateTime<chrono::Utc>,
    },
    /// Planned and handed to workers over the queue: it goes on there (`domain::fanout`).
    #[serde(rename = "fanned_out")]
    FannedOut(FanOutStarted),
}

impl IntegrationOutcome {
    pub fn integration(&self) -> &str {
        match self {
            Self::Succeeded(r) => &r.integration,
            Self::FannedOut(started) => &started.integration,
            Self::Failed { integration, .. } | Self::Running { integration, .. } => integration,
        }
    }
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running { .. })
    }
    /// Succeeded, or handed to the fan-out's workers.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded(_) | Self::FannedOut(_))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    pub integrations: Vec<IntegrationOutcome>,
    #[serde(serialize_with = "millis", rename = "duration_ms")]
    pub duration: Duration,
}

/// Syncs every integration (or only `only`). Integrations run concurrently, each within its own
/// client's limits; a tagged secret that cannot be used is reported as a failed integration.
pub async fn sync_all(
    ctx: &SyncContext<'_>,
    catalog: &dyn IntegrationCatalog,
    directories: &dyn DirectoryProvider,
    only: Option<&str>,
) -> Result<SyncSummary, SyncError> {
    let started = Instant::now();
    let discovered = catalog.list().await?;
    let selected: Vec<_> = discovered.integrations.iter().filter(|i| only.is_none_or(|o| o == i.name)).collect();
    if let Some(name) = only {
        if selected.is_empty() {
            return Err(SyncError::UnknownIntegration(name.to_owned()));
        }
    }
    let runs = selected.iter().map(|integration| async move {
        full_sync(ctx, &integration.name, directories.directory(integration).as_ref()).await
    });
    let mut integrations = futures::future::join_all(runs).await;
    if only.is_none() {
        integrations.extend(
            discovered
                .invalid
                .iter()
                .map(|bad| IntegrationOutcome::Failed { integration: bad.secret.clone(), error: bad.reason.clone() }),
        );
    }
    Ok(SyncSummary { integrations, duration: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        clock::ManualClock,
        ports::InvalidIntegration,
        testing::MemoryStore,
        testing::{FakeDirectory, FakeIntegrations},
    };
    use chrono::TimeZone;
    use std::sync::{Arc, Mutex};

    fn org() -> Arc<FakeDirectory> {
        Arc::new(FakeDirectory::with(
            vec![FakeDirectory::user("u1", "alice@corp.com"), FakeDirectory::user("u2", "bob@corp.com")],
            vec![FakeDirectory::group("g1", "prod-db-admins"), FakeDirectory::group("g2", "engineering")],
            &[("g1", "u1"), ("g2", "u1"), ("g2", "u2")],
        ))
    }

    struct Recorder(Mutex<Vec<SyncProgress>>);
    impl ProgressSink for Recorder {
        fn report(&self, p: SyncProgress) {
            self.0.lock().unwrap().push(p);
        }
    }

    async fn sync(store: &MemoryStore, dir: &FakeDirectory) -> Result<SyncReport, SyncError> {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap());
        let policy = DirectoryPolicy::default();
        let ctx =
            SyncContext { store, policy: &policy, clock: &clock, progress: &NoProgress, grants: None, fanout: None };
        sync_integration(&ctx, "corp", dir).await
    }

    use chrono::Utc;

    #[tokio::test]
    async fn first_sync_stores_the_directory_and_records_success() {
        let store = MemoryStore::default();
        let report = sync(&store, &org()).await.unwrap();
        assert_eq!((report.users, report.groups, report.memberships), (2, 2, 3));
        assert_eq!((report.written, report.deleted), (7, 0));
        let stored = store.directory("corp");
        assert_eq!(stored.users["u1"].email, "alice@corp.com");
        assert_eq!(stored.memberships.len(), 3);
        let status = store.sync_status("corp").await.unwrap().unwrap();
        assert_eq!(status.state, SyncState::Succeeded);
        assert_eq!((status.users, status.groups, status.memberships, status.written), (2, 2, 3, 7));
        assert!(status.finished_at.is_some() && status.error.is_none());
    }

    #[tokio::test]
    async fn a_sync_running_elsewhere_is_not_started_again_until_its_claim_lapses() {
        let store = MemoryStore::default();
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 11, 59, 0).unwrap();
        let running = SyncStatus::running("corp", at);
        assert!(store.claim_sync(&running, at + SYNC_CLAIM).await.unwrap().is_none(), "another sync runs");
        match sync(&store, &org()).await {
            Err(SyncError::AlreadyRunning(other)) => assert_eq!(other.started_at, at),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        assert_eq!(store.item_writes(), 0, "nothing fetched nor written");
        assert_eq!(store.sync_status("corp").await.unwrap().unwrap().started_at, at, "the running one stands");
        // A claim past its time (the sync died): the next one runs.
        let dead = SyncStatus { started_at: at - chrono::Duration::hours(1), ..running };
        let store = MemoryStore::default();
        store.claim_sync(&dead, dead.started_at + SYNC_CLAIM).await.unwrap();
        assert!(sync(&store, &org()).await.is_ok());
        assert_eq!(store.sync_status("corp").await.unwrap().unwrap().state, SyncState::Succeeded);
    }

    #[tokio::test]
    async fn second_sync_of_an_unchanged_directory_writes_nothing() {
        let store = MemoryStore::default();
        let dir = org();
        sync(&store, &dir).await.unwrap();
        let before = store.item_writes();
        let report = sync(&store, &dir).await.unwrap();
        assert_eq!((report.written, report.deleted), (0, 0));
        assert_eq!(store.item_writes(), before);
    }

    #[tokio::test]
    async fn vanished_users_groups_and_memberships_are_deleted() {
        let store = MemoryStore::default();
        let dir = org();
        sync(&store, &dir).await.unwrap();
        dir.users.lock().unwrap().retain(|u| u.id != "u2");
        dir.groups.lock().unwrap().retain(|g| g.id != "g1");
        let report = sync(&store, &dir).await.unwrap();
        // u2, g1, and the memberships g1/u1 and g2/u2.
        assert_eq!((report.written, report.deleted), (0, 4));
        let stored = store.directory("corp");
        assert_eq!(stored.users.keys().collect::<Vec<_>>(), vec!["u1"]);
        assert_eq!(stored.groups.keys().collect::<Vec<_>>(), vec!["g2"]);
        assert_eq!(
            stored.memberships.iter().map(|m| (m.group_id.to_string(), m.user_id.to_string())).collect::<Vec<_>>(),
            vec![("g2".to_string(), "u1".to_string())]
        );
    }

    #[tokio::test]
    async fn a_jumpcloud_failure_is_recorded_and_nothing_is_written() {
        let store = MemoryStore::default();
        let dir = org();
        *dir.fail_with.lock().unwrap() = Some(DirectoryError::Transient { reason: "HTTP 503".into() });
        let err = sync(&store, &dir).await.unwrap_err();
        assert!(matches!(err, SyncError::Directory(_)));
        assert_eq!(store.item_writes(), 0);
        let status = store.sync_status("corp").await.unwrap().unwrap();
        assert_eq!(status.state, SyncState::Failed);
        assert!(status.error.unwrap().contains("503"));
    }

    #[tokio::test]
    async fn progress_is_reported_through_the_stages() {
        let store = MemoryStore::default();
        let policy = DirectoryPolicy::default();
        let clock = ManualClock::new(Utc::now());
        let recorder = Recorder(Mutex::new(vec![]));
        let ctx = SyncContext {
            store: &store,
            policy: &policy,
            clock: &clock,
            progress: &recorder,
            grants: None,
            fanout: None,
        };
        sync_integration(&ctx, "corp", org().as_ref()).await.unwrap();
        let seen = recorder.0.into_inner().unwrap();
        assert!(matches!(seen.first(), Some(SyncProgress::Started { .. })));
        assert!(seen.contains(&SyncProgress::MembersFetched {
            integration: "corp".into(),
            groups_done: 2,
            groups_total: 2
        }));
        assert!(matches!(seen.last(), Some(SyncProgress::Written { items_done: 7, items_total: 7, .. })));
    }

    #[test]
    fn slices_keep_every_change_and_respect_the_size() {
        use crate::domain::model::{fixtures::*, DirectoryChanges};
        let changes = DirectoryChanges {
            put_users: (0..5).map(|i| user(&format!("u{i}"), "x@y.z")).collect(),
            delete_memberships: (0..4).map(|i| member("g", &format!("u{i}"))).collect(),
            ..DirectoryChanges::default()
        };
        let parts = slices(changes.clone(), 4);
        assert_eq!(parts.iter().map(DirectoryChanges::len).collect::<Vec<_>>(), vec![4, 4, 1]);
        assert_eq!(parts.iter().map(|p| p.put_users.len()).sum::<usize>(), 5);
        assert_eq!(parts.iter().map(|p| p.delete_memberships.len()).sum::<usize>(), 4);
    }

    fn ctx_parts() -> (MemoryStore, DirectoryPolicy, ManualClock) {
        (MemoryStore::default(), DirectoryPolicy::default(), ManualClock::new(Utc::now()))
    }

    #[tokio::test]
    async fn one_failing_integration_does_not_stop_the_others() {
        let (store, policy, clock) = ctx_parts();
        let ctx = SyncContext::directory_only(&store, &policy, &clock);
        let integrations = FakeIntegrations::default();
        integrations.add("good", org());
        let broken = org();
        *broken.fail_with.lock().unwrap() = Some(DirectoryError::Unauthorized { status: 401 });
        integrations.add("broken", broken);
        integrations
            .invalid
            .lock()
            .unwrap()
            .push(InvalidIntegration { secret: "jit/bad".into(), reason: "no token".into() });

        let summary = sync_all(&ctx, &integrations, &integrations, None).await.unwrap();
        let by_name: std::collections::HashMap<&str, &IntegrationOutcome> =
            summary.integrations.iter().map(|o| (o.integration(), o)).collect();
        assert!(by_name["good"].is_success());
        assert!(matches!(by_name["broken"], IntegrationOutcome::Failed { error, .. } if error.contains("401")));
        assert!(matches!(by_name["jit/bad"], IntegrationOutcome::Failed { error, .. } if error == "no token"));
        assert_eq!(store.directory("good").users.len(), 2);
        assert!(store.directory("broken").users.is_empty());
    }

    #[tokio::test]
    async fn only_the_named_integration_is_synced_and_an_unknown_one_is_an_error() {
        let (store, policy, clock) = ctx_parts();
        let ctx = SyncContext::directory_only(&store, &policy, &clock);
        let integrations = FakeIntegrations::default();
        integrations.add("a", org());
        integrations.add("b", org());
        let summary = sync_all(&ctx, &integrations, &integrations, Some("b")).await.unwrap();
        assert_eq!(summary.integrations.iter().map(IntegrationOutcome::integration).collect::<Vec<_>>(), vec!["b"]);
        assert!(store.directory("a").users.is_empty());
        let err = sync_all(&ctx, &integrations, &integrations, Some("nope")).await.unwrap_err();
        assert!(matches!(err, SyncError::UnknownIntegration(n) if n == "nope"));
    }
}
