//! Incremental sync: the stored directory kept current from JumpCloud's Directory Insights events
//! instead of a full read of the organization.
//!
//! Each run reads the `directory` events since the stored cursor (less an overlap, for events
//! indexed late), reads again from JumpCloud only the users and groups they name (their current
//! state is the truth: duplicates and the order of events do not matter), takes memberships from
//! the events (the last by time wins, and a membership re-read twice is written the same) and
//! writes what differs. The cursor moves only if no full sync moved it meanwhile.
//!
//! What it cannot follow it hands to the full sync, saying why: no cursor yet, a cursor older than
//! Directory Insights keeps events, an event type about users or groups it does not understand,
//! Directory Insights failing past the client's retries, a user or group it names that cannot be
//! read for a reason other than JumpCloud being unavailable (which only fails the run: the next
//! one reads the same events again), more events within the overlap than a run takes. The full
//! sync sets the cursor to when it began: an event that stopped the run and is older than that
//! by more than the overlap is not read again.

use crate::{
    clock::Clock,
    config::DirectoryPolicy,
    domain::{
        drift_watch::{self, DriftWatch},
        grant::GrantContext,
        model::{DirectoryChanges, DirectoryGroup, DirectoryUser, LeaseKey, Membership, ObjectId},
        outside::{self, Added, Outside},
        snapshot::{canonical_email, directory_group, directory_user, manager_reference},
        sync::{full_sync, IntegrationOutcome, SyncContext, SYNC_CLAIM},
    },
    ports::{
        Directory, DirectoryChange, DirectoryError, DirectoryEvent, DirectoryInsights, DirectoryProvider,
        DirectoryStore, IntegrationCatalog, SecretsError, SourceUser, StoreError, SyncState,
    },
};
use chrono::{DateTime, Duration, Utc};
use futures::{stream, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How long Directory Insights keeps events (JumpCloud: 90 days).
pub const RETENTION: Duration = Duration::days(90);
/// Each run reads again this far before its cursor: events indexed after a later one was read.
pub const OVERLAP: Duration = Duration::minutes(2);
/// Events one run takes at most; the rest waits for the next run.
pub const MAX_EVENTS: usize = 10_000;
/// A full sync in place of an incremental run starts at most this long after the last full sync
/// of the integration began: Directory Insights failing for good (not in the organization's plan,
/// the key not allowed to read it) or an event that stops every run must not make every minute a
/// full sync. In between, runs that cannot go on wait, and say so.
pub const FALLBACK_INTERVAL: Duration = Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum IncrementalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// A membership added outside the product could not be judged: the run is retried.
    #[error("judging a membership added outside the product: {0}")]
    Drift(String),
}

/// What one run did, or why a full sync must do it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IncrementalOutcome {
    Applied(IncrementalReport),
    /// A full sync of the integration is running, or began during the run: this run stored nothing.
    FullSyncRunning,
    /// A full sync of the integration is running: this run stored nothing, and removed what
    /// `remove_outside` rules say was added outside the product meanwhile (`domain::drift_watch`).
    Watched(DriftWatch),
    /// Only a full sync can bring the stored directory up to date.
    FullSyncNeeded {
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IncrementalReport {
    pub integration: String,
    /// Events read (the overlap's included).
    pub events: usize,
    pub users_read: usize,
    pub groups_read: usize,
    /// Items put and deleted.
    pub written: usize,
    pub deleted: usize,
    /// Requests to Directory Insights (pages).
    pub event_requests: u64,
    /// Memberships added outside the product to a `jit_only` group: `(group id, user id, removed)`.
    pub added_outside: Vec<(String, String, bool)>,
    /// The cursor after the run; `complete` is false when more events wait.
    pub cursor: DateTime<Utc>,
    pub complete: bool,
}

pub struct IncrementalContext<'a> {
    pub store: &'a dyn DirectoryStore,
    pub policy: &'a DirectoryPolicy,
    pub clock: &'a dyn Clock,
    /// The grant lifecycle's ports: with them, memberships added outside the product to a
    /// `jit_only` group are judged (`domain::outside`).
    pub grants: Option<&'a GrantContext<'a>>,
}

/// One incremental run for one integration.
pub async fn sync_incremental(
    ctx: &IncrementalContext<'_>,
    integration: &str,
    directory: &dyn Directory,
    insights: &dyn DirectoryInsights,
) -> Result<IncrementalOutcome, IncrementalError> {
    let needed = |reason: String| Ok(IncrementalOutcome::FullSyncNeeded { reason });
    let now = ctx.clock.now();
    // A running full sync's claim lapses (it died): then it no longer holds the incremental back.
    let running = |s: &crate::ports::SyncStatus| s.state == SyncState::Running && s.started_at + SYNC_CLAIM > now;
    let status_at_start = ctx.store.sync_status(integration).await?;
    let full_sync_running = status_at_start.as_ref().is_some_and(running);
    if full_sync_running && ctx.grants.is_none() {
        return Ok(IncrementalOutcome::FullSyncRunning);
    }
    let cursor = ctx.store.event_cursor(integration).await?;
    if full_sync_running {
        // Without a cursor the running sync is the integration's first: nothing to watch for yet.
        return Ok(match (ctx.grants, cursor) {
            (Some(grants), Some(cursor)) => IncrementalOutcome::Watched(
                drift_watch::watch(ctx, grants, integration, cursor, directory, insights).await?,
            ),
            _ => IncrementalOutcome::FullSyncRunning,
        });
    }
    let Some(cursor) = cursor else {
        return needed("no event cursor yet: a full sync sets it".into());
    };
    if cursor < now - RETENTION + OVERLAP {
        return needed(format!("the event cursor ({cursor}) is older than Directory Insights keeps events"));
    }
    let batch = match insights.directory_events(cursor - OVERLAP, MAX_EVENTS).await {
        Ok(batch) => batch,
        Err(e) => return needed(format!("Directory Insights: {e}")),
    };
    // More events than one run takes, all within the overlap before the cursor: the next run
    // would read the same ones again, and the cursor never move.
    if !batch.complete && batch.events.last().is_none_or(|e| e.at <= cursor) {
        return needed(format!(
            "more than {MAX_EVENTS} events at or just before the cursor ({cursor}): a run cannot get past them"
        ));
    }
    let mut users = BTreeSet::new();
    let mut groups = BTreeSet::new();
    let memberships = last_words(&batch.events);
    for event in &batch.events {
        match &event.change {
            DirectoryChange::User { id } | DirectoryChange::UserDeleted { id } => {
                users.insert(id.clone());
            }
            DirectoryChange::Group { id } | DirectoryChange::GroupDeleted { id } => {
                groups.insert(id.clone());
            }
            DirectoryChange::Membership { .. } | DirectoryChange::Unrelated => {}
            DirectoryChange::NotUnderstood { event_type } => {
                return needed(format!("event type {event_type:?} is not understood"));
            }
        }
    }

    let (users_read, groups_read) = (users.len(), groups.len());
    let mut changes = DirectoryChanges::default();
    // Users and groups as JumpCloud has them now (written only where they differ from the stored
    // ones); gone (or, by policy, left out) ones deleted with their memberships. Each object's
    // reads are its own; up to READ_CONCURRENCY objects at once (the client bounds JumpCloud).
    let user_outcomes: Vec<Result<NamedUser, Stop>> = stream::iter(users)
        .map(|id: String| async move {
            let id = &id;
            let stored = ctx.store.user_by_id(integration, id).await?;
            let read = match read_user(directory, id).await {
                Err(e) if !e.is_retryable() => return Err(Stop::Needed(format!("user {id:?} could not be read: {e}"))),
                read => read?,
            };
            Ok(match read {
                Some(user) if ctx.policy.include_suspended_users || !user.is_suspended() => {
                    let manager = resolve_manager(ctx, integration, &user).await?;
                    // Not stored (yet): perhaps a user of this same run, looked for below.
                    let unresolved_manager = manager.is_none().then(|| manager_reference(&user, ctx.policy)).flatten();
                    let user = directory_user(user, manager);
                    // New to the stored directory (created, reactivated, or no longer left out by
                    // policy): its memberships come with it, as JumpCloud has them now, since no
                    // event names those it held all along.
                    let arrived_groups = match stored {
                        Some(_) => None,
                        None => Some(match directory.groups_of_user(id).await {
                            Err(DirectoryError::NotFound { .. }) => Vec::new(),
                            Err(e) if !e.is_retryable() => {
                                return Err(Stop::Needed(format!("the groups of user {id:?} could not be read: {e}")))
                            }
                            read => read?,
                        }),
                    };
                    NamedUser::Present {
                        user: Box::new(user),
                        stored: stored.map(Box::new),
                        unresolved_manager,
                        arrived_groups,
                    }
                }
                _ => NamedUser::Gone {
                    id: id.clone(),
                    stored: stored.is_some(),
                    related: ctx.store.groups_of(integration, id).await?,
                },
            })
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut removed_users = BTreeSet::new();
    // (group id, user id) of the memberships arrived users hold.
    let mut arrived_memberships = BTreeSet::new();
    let mut present = Vec::new();
    for outcome in user_outcomes {
        match outcome {
            Err(Stop::Needed(reason)) => return needed(reason),
            Err(Stop::Failed(e)) => return Err(e),
            Ok(NamedUser::Present { user, stored, unresolved_manager, arrived_groups }) => {
                present.push((user, stored, unresolved_manager, arrived_groups))
            }
            Ok(NamedUser::Gone { id, stored, related }) => {
                if stored {
                    changes.delete_users.push(id.clone());
                }
                changes.delete_memberships.extend(related.iter().map(|group_id| membership(group_id, &id)));
                removed_users.insert(id);
            }
        }
    }
    // A manager named by a user of this run and first stored by it (both created at once, say).
    let in_run: BTreeMap<String, (String, String)> = present
        .iter()
        .flat_map(|(u, ..)| {
            [(u.id.clone(), (u.id.clone(), u.email.clone())), (u.email.clone(), (u.id.clone(), u.email.clone()))]
        })
        .collect();
    for (mut user, stored, unresolved_manager, arrived_groups) in present {
        if let Some((manager_id, manager_email)) = unresolved_manager
            .and_then(|reference| in_run.get(&reference).or_else(|| in_run.get(&canonical_email(&reference))))
            .filter(|(manager_id, _)| manager_id != &user.id)
        {
            user.manager_id = Some(manager_id.clone());
            user.manager_email = Some(manager_email.clone());
        }
        match arrived_groups {
            Some(groups) => {
                arrived_memberships.extend(groups.into_iter().map(|g| (g, user.id.clone())));
                changes.put_users.push(*user);
            }
            None if stored.as_deref() == Some(&*user) => {}
            None => changes.put_users.push(*user),
        }
    }
    let group_outcomes: Vec<Result<Named<DirectoryGroup>, Stop>> = stream::iter(groups)
        .map(|id: String| async move {
            let id = &id;
            let stored = ctx.store.group_by_id(integration, id).await?;
            let read = match read_group(directory, id).await {
                Err(e) if !e.is_retryable() => {
                    return Err(Stop::Needed(format!("group {id:?} could not be read: {e}")))
                }
                read => read?,
            };
            Ok(match read {
                Some(group) => {
                    let group = directory_group(&group, ctx.policy);
                    if stored.as_ref() == Some(&group) {
                        Named::Same
                    } else {
                        Named::Put(group)
                    }
                }
                None => Named::Gone {
                    id: id.clone(),
                    stored: stored.is_some(),
                    related: ctx.store.group_members(integration, id).await?,
                },
            })
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut removed_groups = BTreeSet::new();
    for outcome in group_outcomes {
        match outcome {
            Err(Stop::Needed(reason)) => return needed(reason),
            Err(Stop::Failed(e)) => return Err(e),
            Ok(Named::Same) => {}
            Ok(Named::Put(group)) => changes.put_groups.push(group),
            Ok(Named::Gone { id, stored, related }) => {
                if stored {
                    changes.delete_groups.push(id.clone());
                }
                changes.delete_memberships.extend(related.iter().map(|user_id| membership(&id, user_id)));
                removed_groups.insert(id);
            }
        }
    }
    let named_memberships: BTreeSet<(String, String)> = memberships.keys().cloned().collect();
    // Memberships: only of users and groups the stored directory holds (after this run).
    let candidates: Vec<((String, String), bool)> = memberships
        .into_iter()
        .filter(|((group_id, user_id), _)| !removed_users.contains(user_id) && !removed_groups.contains(group_id))
        .map(|(key, (_, _, added))| (key, added))
        .collect();
    // The users and groups an added membership needs, each looked up once (users in batches).
    let wanted_users: Vec<String> = candidates
        .iter()
        .filter(|(_, added)| *added)
        .map(|((_, u), _)| u.clone())
        .filter(|u| !changes.put_users.iter().any(|p| &p.id == u))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut known_users: BTreeMap<String, DirectoryUser> =
        changes.put_users.iter().map(|u| (u.id.clone(), u.clone())).collect();
    known_users
        .extend(ctx.store.users_by_ids(integration, &wanted_users).await?.into_iter().map(|u| (u.id.clone(), u)));
    let wanted_groups: BTreeSet<String> = candidates
        .iter()
        .filter(|(_, added)| *added)
        .map(|((g, _), _)| g.clone())
        .filter(|g| !changes.put_groups.iter().any(|p| &p.id == g))
        .collect();
    let mut known_groups: BTreeMap<String, DirectoryGroup> =
        changes.put_groups.iter().map(|g| (g.id.clone(), g.clone())).collect();
    let stored_groups: Vec<Result<Option<DirectoryGroup>, StoreError>> = stream::iter(wanted_groups)
        .map(|id: String| async move { ctx.store.group_by_id(integration, &id).await })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    for group in stored_groups {
        if let Some(group) = group? {
            known_groups.insert(group.id.clone(), group);
        }
    }
    let (known_users, known_groups) = (&known_users, &known_groups);
    let membership_outcomes: Vec<Result<Option<MembershipChange>, StoreError>> = stream::iter(candidates)
        .map(|((group_id, user_id), added)| async move {
            let member = ctx.store.is_member(integration, &group_id, &user_id).await?;
            if added && !member {
                let held = known_users.contains_key(&user_id) && known_groups.contains_key(&group_id);
                Ok(held.then_some(MembershipChange::Added(group_id, user_id)))
            } else if !added && member {
                Ok(Some(MembershipChange::Removed(membership(&group_id, &user_id))))
            } else {
                Ok(None)
            }
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut added_memberships = Vec::new();
    for outcome in membership_outcomes {
        match outcome? {
            None => {}
            Some(MembershipChange::Added(group_id, user_id)) => {
                changes.put_memberships.push(membership(&group_id, &user_id));
                added_memberships.push((known_groups[&group_id].clone(), known_users[&user_id].clone()));
            }
            Some(MembershipChange::Removed(m)) => changes.delete_memberships.push(m),
        }
    }
    // Judged before they are stored: one removed as drift is not stored at all. One that cannot
    // be judged now is not stored either, and the cursor stays: the next run reads its event
    // again and judges it then, while those judged here are stored (so not news again).
    let mut added_outside = Vec::new();
    let mut unjudged = Vec::new();
    if let Some(grants) = ctx.grants {
        for (group, user) in &added_memberships {
            let added = Added {
                key: LeaseKey {
                    integration: integration.to_owned(),
                    group_id: group.id.clone(),
                    user_id: user.id.clone(),
                },
                group_name: &group.name,
                user_email: Some(&user.email),
            };
            match outside::judge(grants, directory, &added).await {
                Ok(Outside::NotDrift) => {}
                // Its removal's event, if not read yet, finds nothing to delete.
                Ok(Outside::Gone) => changes.put_memberships.retain(|m| m != &membership(&group.id, &user.id)),
                Ok(Outside::Reported) => added_outside.push((group.id.clone(), user.id.clone(), false)),
                Ok(Outside::Removed) => {
                    changes.put_memberships.retain(|m| m != &membership(&group.id, &user.id));
                    added_outside.push((group.id.clone(), user.id.clone(), true));
                }
                Err(e) => {
                    tracing::warn!(integration, group_id = %group.id, user_id = %user.id, error = %e, "a membership added outside the product could not be judged: the next run judges it");
                    changes.put_memberships.retain(|m| m != &membership(&group.id, &user.id));
                    unjudged.push(e);
                }
            }
        }
    }
    // The memberships arrived users held all along: of stored groups, and not named by an event
    // of this run (those events had their say above).
    let arrived: Vec<(String, String)> =
        arrived_memberships.into_iter().filter(|pair| !named_memberships.contains(pair)).collect();
    let unknown_groups: BTreeSet<String> =
        arrived.iter().map(|(g, _)| g.clone()).filter(|g| !known_groups.contains_key(g)).collect();
    let looked_up: Vec<Result<Option<DirectoryGroup>, StoreError>> = stream::iter(unknown_groups)
        .map(|id: String| async move { ctx.store.group_by_id(integration, &id).await })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut stored_group_ids: BTreeSet<String> = known_groups.keys().cloned().collect();
    for group in looked_up {
        if let Some(group) = group? {
            stored_group_ids.insert(group.id);
        }
    }
    changes.put_memberships.extend(
        arrived
            .iter()
            .filter(|(g, _)| stored_group_ids.contains(g) && !removed_groups.contains(g))
            .map(|(g, u)| membership(g, u)),
    );
    changes.delete_memberships.sort();
    changes.delete_memberships.dedup();

    let (written, deleted) = (changes.puts(), changes.deletes());
    if !changes.is_empty() {
        // A full sync that began meanwhile may have stored newer reads than some of this run's:
        // its word stands, and the next run reads again from the cursor it set.
        let began = |s: &Option<crate::ports::SyncStatus>| s.as_ref().map(|s| s.started_at);
        if began(&ctx.store.sync_status(integration).await?) != began(&status_at_start) {
            tracing::info!(integration, "a full sync began during the run: its changes are left to it");
            return Ok(IncrementalOutcome::FullSyncRunning);
        }
        ctx.store.apply_changes(integration, &changes).await?;
    }
    if !unjudged.is_empty() {
        return Err(IncrementalError::Drift(unjudged.join("; ")));
    }
    // The next run reads from the last event seen (or from where this one started, if none).
    // Never past now: an event stamped in the future must not make the next run skip what comes before it.
    let next = batch.events.last().map_or(cursor, |e| e.at.min(now)).max(cursor);
    let complete = batch.complete;
    if next != cursor && !ctx.store.put_event_cursor(integration, next, Some(Some(cursor))).await? {
        tracing::info!(integration, "a full sync moved the event cursor meanwhile: it stays where that sync set it");
    }
    Ok(IncrementalOutcome::Applied(IncrementalReport {
        integration: integration.to_owned(),
        events: batch.events.len(),
        users_read,
        groups_read,
        written,
        deleted,
        event_requests: batch.requests,
        added_outside,
        cursor: next,
        complete,
    }))
}

/// Objects whose reads run at once in one run.
const READ_CONCURRENCY: usize = 16;

/// The last word of the events on each membership they name, `(group id, user id)` to `(time,
/// event id, added)`: the latest by time (then id) wins, so order and duplicates do not matter.
pub(crate) fn last_words(events: &[DirectoryEvent]) -> BTreeMap<(String, String), (DateTime<Utc>, String, bool)> {
    let mut memberships: BTreeMap<(String, String), (DateTime<Utc>, String, bool)> = BTreeMap::new();
    for event in events {
        if let DirectoryChange::Membership { group_id, user_id, added } = &event.change {
            let word = (event.at, event.id.clone(), *added);
            let last = memberships.entry((group_id.clone(), user_id.clone())).or_insert_with(|| word.clone());
            if (&word.0, &word.1) > (&last.0, &last.1) {
                *last = word;
            }
        }
    }
    memberships
}

/// A named user or group, as read again.
enum Named<T> {
    /// As stored: nothing to write.
    Same,
    Put(T),
    /// Gone from JumpCloud (or left out by policy): deleted if `stored`, with its memberships.
    Gone {
        id: String,
        stored: bool,
        related: Vec<String>,
    },
}

/// A named user, as read again.
enum NamedUser {
    /// In JumpCloud (and kept by policy), with what is stored of it.
    Present {
        user: Box<DirectoryUser>,
        stored: Option<Box<DirectoryUser>>,
        /// The manager it names, not found in the stored directory.
        unresolved_manager: Option<String>,
        /// Not stored before: the groups it is a direct member of.
        arrived_groups: Option<Vec<String>>,
    },
    /// Gone from JumpCloud (or left out by policy): deleted if `stored`, with its memberships.
    Gone { id: String, stored: bool, related: Vec<String> },
}

enum MembershipChange {
    /// Of a stored group and user (ids).
    Added(String, String),
    Removed(Membership),
}

/// Why one object's reads stopped the run.
enum Stop {
    /// Only a full sync can go on.
    Needed(String),
    Failed(IncrementalError),
}

impl<E: Into<IncrementalError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

fn membership(group_id: &str, user_id: &str) -> Membership {
    Membership { group_id: ObjectId::new(group_id), user_id: user_id.into() }
}

/// The user as JumpCloud has it now; `None` when it is gone.
async fn read_user(directory: &dyn Directory, id: &str) -> Result<Option<SourceUser>, DirectoryError> {
    match directory.find_user(id).await {
        Ok(user) if user.id == id => Ok(Some(user)),
        Ok(_) | Err(DirectoryError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn read_group(directory: &dyn Directory, id: &str) -> Result<Option<crate::ports::SourceGroup>, DirectoryError> {
    match directory.group_by_id(id).await {
        Ok(group) => Ok(Some(group)),
        Err(DirectoryError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The manager the user names, found in the stored directory by id or email.
async fn resolve_manager(
    ctx: &IncrementalContext<'_>,
    integration: &str,
    user: &SourceUser,
) -> Result<Option<(String, String)>, StoreError> {
    let Some(reference) = manager_reference(user, ctx.policy) else { return Ok(None) };
    let manager = match ctx.store.user_by_id(integration, &reference).await? {
        Some(m) => Some((m.id, m.email)),
        None => ctx.store.user_key_by_email(integration, &canonical_email(&reference)).await?,
    };
    Ok(manager.filter(|(id, _)| *id != user.id))
}

/// One integration's incremental run, as a run over every integration reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IncrementalIntegrationOutcome {
    Applied(IncrementalReport),
    /// A full sync of it was running: nothing stored; with the lifecycle's ports, what the run
    /// did against memberships added outside the product meanwhile (`domain::drift_watch`).
    FullSyncRunning {
        integration: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        watch: Option<DriftWatch>,
    },
    /// The events could not bring it up to date: a full sync ran instead.
    FellBack {
        integration: String,
        reason: String,
        full_sync: IntegrationOutcome,
    },
    /// The events could not bring it up to date, and a full sync began less than
    /// [`FALLBACK_INTERVAL`] ago: the next may start at `not_before`.
    FallBackDeferred {
        integration: String,
        reason: String,
        not_before: DateTime<Utc>,
    },
    Failed {
        integration: String,
        error: String,
    },
}

impl IncrementalIntegrationOutcome {
    pub fn is_failure(&self) -> bool {
        match self {
            Self::Failed { .. } => true,
            Self::FellBack { full_sync, .. } => !full_sync.is_success() && !full_sync.is_running(),
            Self::Applied(_) | Self::FullSyncRunning { .. } | Self::FallBackDeferred { .. } => false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IncrementalSummary {
    pub integrations: Vec<IncrementalIntegrationOutcome>,
}

/// The incremental run of every integration (the schedule's, every minute). One that cannot go
/// on from its events is synced in full, and the reason reported.
pub async fn sync_incremental_all(
    ctx: &SyncContext<'_>,
    catalog: &dyn IntegrationCatalog,
    directories: &dyn DirectoryProvider,
) -> Result<IncrementalSummary, SecretsError> {
    let discovered = catalog.list().await?;
    let runs = discovered.integrations.iter().map(|integration| async move {
        let name = integration.name.clone();
        let directory = directories.directory(integration);
        let insights = directories.insights(integration);
        let incremental = IncrementalContext { store: ctx.store, policy: ctx.policy, clock: ctx.clock, grants: ctx.grants };
        match sync_incremental(&incremental, &name, directory.as_ref(), insights.as_ref()).await {
            Ok(IncrementalOutcome::Applied(report)) => IncrementalIntegrationOutcome::Applied(report),
            Ok(IncrementalOutcome::FullSyncRunning) => {
                IncrementalIntegrationOutcome::FullSyncRunning { integration: name, watch: None }
            }
            Ok(IncrementalOutcome::Watched(watch)) => {
                IncrementalIntegrationOutcome::FullSyncRunning { integration: name, watch: Some(watch) }
            }
            Ok(IncrementalOutcome::FullSyncNeeded { reason }) => {
                let last_began = match ctx.store.sync_status(&name).await {
                    Ok(status) => status.map(|s| s.started_at),
                    Err(e) => {
                        tracing::error!(integration = %name, error = %e, "incremental sync failed");
                        return IncrementalIntegrationOutcome::Failed { integration: name, error: e.to_string() };
                    }
                };
                if let Some(not_before) =
                    last_began.map(|at| at + FALLBACK_INTERVAL).filter(|not_before| *not_before > ctx.clock.now())
                {
                    tracing::warn!(integration = %name, reason, %not_before, event = "incremental_sync_fallback_deferred", "incremental sync cannot go on from the events, and a full sync began less than 15 minutes ago: waiting for the next");
                    return IncrementalIntegrationOutcome::FallBackDeferred { integration: name, reason, not_before };
                }
                tracing::warn!(integration = %name, reason, event = "incremental_sync_fell_back", "incremental sync cannot go on from the events: a full sync instead");
                let full_sync = full_sync(ctx, &name, directory.as_ref()).await;
                IncrementalIntegrationOutcome::FellBack { integration: name, reason, full_sync }
            }
            Err(e) => {
                tracing::error!(integration = %name, error = %e, "incremental sync failed");
                IncrementalIntegrationOutcome::Failed { integration: name, error: e.to_string() }
            }
        }
    });
    Ok(IncrementalSummary { integrations: futures::future::join_all(runs).await })
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
