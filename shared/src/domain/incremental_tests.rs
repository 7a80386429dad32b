//! The incremental sync on in-memory stores: what each kind of event does to the stored
//! directory, that only the objects events name are read again, order and duplicates, and every
//! way it hands over to the full sync.

use super::*;
use crate::{
    clock::ManualClock,
    domain::sync::{sync_integration, SyncContext},
    ports::{DirectoryEvent, EventBatch, SyncStatus, UserAttribute},
    testing::{FakeDirectory, MemoryStore},
};
use async_trait::async_trait;
use chrono::TimeZone;
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap() + Duration::minutes(minute)
}

/// Directory Insights in memory: the events it holds, answered from a time on.
#[derive(Default)]
struct Insights {
    events: Mutex<Vec<DirectoryEvent>>,
    fail: Mutex<Option<DirectoryError>>,
    reads: AtomicUsize,
    /// Read from (the last request's `from`).
    from: Mutex<Option<DateTime<Utc>>>,
}

impl Insights {
    fn push(&self, minute: i64, change: DirectoryChange) {
        let mut events = self.events.lock().unwrap();
        let id = format!("e{:04}", events.len());
        events.push(DirectoryEvent { id, at: t(minute), change });
    }
}

#[async_trait]
impl DirectoryInsights for Insights {
    async fn directory_events(&self, from: DateTime<Utc>, max: usize) -> Result<EventBatch, DirectoryError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        *self.from.lock().unwrap() = Some(from);
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        let mut events: Vec<DirectoryEvent> =
            self.events.lock().unwrap().iter().filter(|e| e.at >= from).cloned().collect();
        events.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        let complete = events.len() <= max;
        events.truncate(max);
        Ok(EventBatch { events, complete, requests: 1 })
    }
}

/// A directory that counts the users and groups read one by one.
struct Counting {
    inner: FakeDirectory,
    reads: Mutex<Vec<String>>,
}

#[async_trait]
impl Directory for Counting {
    async fn list_users(&self) -> Result<Vec<SourceUser>, DirectoryError> {
        self.inner.list_users().await
    }
    async fn list_groups(&self) -> Result<Vec<crate::ports::SourceGroup>, DirectoryError> {
        self.inner.list_groups().await
    }
    async fn list_group_members(&self, group_id: &str) -> Result<Vec<String>, DirectoryError> {
        self.inner.list_group_members(group_id).await
    }
    async fn groups_of_user(&self, user_id: &str) -> Result<Vec<String>, DirectoryError> {
        self.inner.groups_of_user(user_id).await
    }
    async fn find_user(&self, key: &str) -> Result<SourceUser, DirectoryError> {
        self.reads.lock().unwrap().push(key.to_owned());
        self.inner.find_user(key).await
    }
    async fn find_group(&self, key: &str) -> Result<crate::ports::SourceGroup, DirectoryError> {
        self.reads.lock().unwrap().push(key.to_owned());
        self.inner.find_group(key).await
    }
    async fn add_member(&self, g: &str, u: &str) -> Result<crate::ports::AddOutcome, crate::ports::AddError> {
        self.inner.add_member(g, u).await
    }
    async fn remove_member(&self, g: &str, u: &str) -> Result<crate::ports::RemoveOutcome, DirectoryError> {
        self.inner.remove_member(g, u).await
    }
}

struct World {
    store: MemoryStore,
    directory: Counting,
    insights: Insights,
    clock: ManualClock,
    policy: DirectoryPolicy,
}

impl World {
    /// alice (u1, bob's manager by email) and bob (u2); groups g1 (prod-db), g2 (eng); alice in
    /// both. A full sync at minute 0 stored it and set the cursor; the clock is at minute 1.
    async fn new() -> Self {
        let mut bob = FakeDirectory::user("u2", "bob@corp.com");
        bob.attributes.push(UserAttribute { name: "manager".into(), value: Some("ALICE@corp.com".into()) });
        let directory = FakeDirectory::with(
            vec![FakeDirectory::user("u1", "alice@corp.com"), bob],
            vec![FakeDirectory::group("g1", "prod-db"), FakeDirectory::group("g2", "eng")],
            &[("g1", "u1"), ("g2", "u1")],
        );
        let world = Self {
            store: MemoryStore::default(),
            directory: Counting { inner: directory, reads: Mutex::default() },
            insights: Insights::default(),
            clock: ManualClock::new(t(0)),
            policy: DirectoryPolicy::default(),
        };
        let ctx = SyncContext::directory_only(&world.store, &world.policy, &world.clock);
        sync_integration(&ctx, "corp", &world.directory).await.expect("full sync");
        world.directory.reads.lock().unwrap().clear();
        world.clock.advance(Duration::minutes(1));
        world
    }

    async fn run(&self) -> IncrementalOutcome {
        let ctx = IncrementalContext { store: &self.store, policy: &self.policy, clock: &self.clock, grants: None };
        sync_incremental(&ctx, "corp", &self.directory, &self.insights).await.expect("incremental run")
    }

    async fn applied(&self) -> IncrementalReport {
        match self.run().await {
            IncrementalOutcome::Applied(report) => report,
            other => panic!("expected the events applied, got {other:?}"),
        }
    }

    async fn needed(&self) -> String {
        match self.run().await {
            IncrementalOutcome::FullSyncNeeded { reason } => reason,
            other => panic!("expected a full sync needed, got {other:?}"),
        }
    }

    fn reads(&self) -> Vec<String> {
        std::mem::take(&mut *self.directory.reads.lock().unwrap())
    }

    fn members(&self) -> BTreeSet<(String, String)> {
        self.store
            .directory("corp")
            .memberships
            .iter()
            .map(|m| (m.group_id.to_string(), m.user_id.to_string()))
            .collect()
    }
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter().map(|(g, u)| (g.to_string(), u.to_string())).collect()
}

#[tokio::test]
async fn a_full_sync_sets_the_cursor_to_when_it_began_and_nothing_changed_costs_one_request() {
    let world = World::new().await;
    assert_eq!(world.store.event_cursor("corp").await.unwrap(), Some(t(0)));
    let writes = world.store.item_writes();
    let report = world.applied().await;
    assert_eq!((report.events, report.written, report.deleted, report.event_requests), (0, 0, 0, 1));
    assert_eq!(*world.insights.from.lock().unwrap(), Some(t(0) - OVERLAP), "read from the cursor less the overlap");
    assert!(world.reads().is_empty(), "nothing read again from JumpCloud");
    assert_eq!(world.store.item_writes(), writes, "nothing written");
    assert_eq!(report.cursor, t(0));
}

#[tokio::test]
async fn a_created_or_updated_user_is_read_again_and_only_that_one() {
    let world = World::new().await;
    let mut carol = FakeDirectory::user("u3", "Carol@Corp.com");
    carol.manager = Some("u1".into());
    world.directory.inner.users.lock().unwrap().push(carol);
    world.directory.inner.users.lock().unwrap()[1].job_title = Some("DBA".into());
    world.insights.push(1, DirectoryChange::User { id: "u3".into() });
    world.insights.push(1, DirectoryChange::User { id: "u2".into() });
    world.insights.push(1, DirectoryChange::User { id: "u3".into() }); // a duplicate
    let report = world.applied().await;
    assert_eq!((report.events, report.users_read, report.written), (3, 2, 2));
    let mut reads = world.reads();
    reads.sort();
    assert_eq!(reads, ["u2", "u3"], "each named user read once, nobody else");
    let stored = world.store.directory("corp");
    assert_eq!(stored.users["u3"].email, "carol@corp.com", "canonical email");
    assert_eq!(stored.users["u3"].manager_email.as_deref(), Some("alice@corp.com"), "manager by JumpCloud's id");
    assert_eq!(stored.users["u2"].job_title.as_deref(), Some("DBA"));
    assert_eq!(stored.users["u2"].manager_id.as_deref(), Some("u1"), "manager by email, any case");
    assert_eq!(report.cursor, t(1));
    assert_eq!(world.store.event_cursor("corp").await.unwrap(), Some(t(1)));

    // Read again in the next run's overlap: the same state, nothing written.
    let writes = world.store.item_writes();
    let again = world.applied().await;
    assert_eq!((again.events, again.written), (3, 0));
    assert_eq!(world.store.item_writes(), writes);
}

#[tokio::test]
async fn a_manager_created_in_the_same_run_as_its_report_is_found() {
    let world = World::new().await;
    let mut carol = FakeDirectory::user("u3", "carol@corp.com");
    carol.attributes.push(UserAttribute { name: "manager".into(), value: Some("Dave@Corp.com".into()) });
    let mut erin = FakeDirectory::user("u5", "erin@corp.com");
    erin.manager = Some("u4".into());
    world.directory.inner.users.lock().unwrap().extend([carol, FakeDirectory::user("u4", "dave@corp.com"), erin]);
    // Her report's event first: the manager is not stored when it is read.
    world.insights.push(1, DirectoryChange::User { id: "u3".into() });
    world.insights.push(1, DirectoryChange::User { id: "u5".into() });
    world.insights.push(2, DirectoryChange::User { id: "u4".into() });
    world.clock.advance(Duration::minutes(2));
    world.applied().await;
    let stored = world.store.directory("corp");
    for report in ["u3", "u5"] {
        assert_eq!(
            (stored.users[report].manager_id.as_deref(), stored.users[report].manager_email.as_deref()),
            (Some("u4"), Some("dave@corp.com")),
            "{report}: by email and by id"
        );
    }
    assert_eq!(stored.users["u4"].manager_id, None);
}

#[tokio::test]
async fn a_deleted_or_suspended_user_leaves_with_its_memberships() {
    let world = World::new().await;
    world.directory.inner.users.lock().unwrap()[0].state = crate::domain::model::UserState::Suspended;
    world.insights.push(1, DirectoryChange::User { id: "u1".into() });
    let report = world.applied().await;
    assert_eq!(report.deleted, 3, "alice and her two memberships");
    assert!(!world.store.directory("corp").users.contains_key("u1"));
    assert!(world.members().is_empty());

    world.directory.inner.users.lock().unwrap().retain(|u| u.id != "u2");
    world.insights.push(2, DirectoryChange::UserDeleted { id: "u2".into() });
    world.applied().await;
    assert!(world.store.directory("corp").users.is_empty());
}

#[tokio::test]
async fn a_reactivated_user_comes_back_with_the_memberships_it_held_all_along() {
    let world = World::new().await;
    world.directory.inner.users.lock().unwrap()[0].state = crate::domain::model::UserState::Suspended;
    world.insights.push(1, DirectoryChange::User { id: "u1".into() });
    world.applied().await;
    assert!(world.members().is_empty());

    // Reactivated: JumpCloud kept her memberships (no event names them); one more group, g3,
    // that the stored directory does not hold, is left out; g2 she leaves in the same run.
    world.directory.inner.users.lock().unwrap()[0].state = crate::domain::model::UserState::Activated;
    world.directory.inner.set_member("g3", "u1");
    world.directory.inner.unset_member("g2", "u1");
    world.insights.push(2, DirectoryChange::User { id: "u1".into() });
    world.insights.push(2, DirectoryChange::Membership { group_id: "g2".into(), user_id: "u1".into(), added: false });
    world.clock.advance(Duration::minutes(2));
    let report = world.applied().await;
    assert!(world.store.directory("corp").users.contains_key("u1"));
    assert_eq!(world.members(), pairs(&[("g1", "u1")]));
    assert_eq!(report.written, 2, "alice and her membership of g1");
}

#[tokio::test]
async fn groups_are_created_renamed_and_deleted_with_their_memberships() {
    let world = World::new().await;
    {
        let mut groups = world.directory.inner.groups.lock().unwrap();
        groups[0].name = "prod-db-admins".into();
        groups.retain(|g| g.id != "g2");
        groups.push(FakeDirectory::group("g3", "new"));
    }
    world.insights.push(1, DirectoryChange::Group { id: "g1".into() });
    world.insights.push(1, DirectoryChange::GroupDeleted { id: "g2".into() });
    world.insights.push(1, DirectoryChange::Group { id: "g3".into() });
    let report = world.applied().await;
    assert_eq!(report.groups_read, 3);
    let stored = world.store.directory("corp");
    assert_eq!(stored.groups["g1"].name, "prod-db-admins");
    assert_eq!(stored.groups["g3"].name, "new");
    assert!(!stored.groups.contains_key("g2"));
    assert_eq!(world.members(), pairs(&[("g1", "u1")]), "g2's membership left with it");
}

#[tokio::test]
async fn memberships_follow_the_last_event_by_time_whatever_the_order_they_arrive_in() {
    let world = World::new().await;
    let change = |g: &str, u: &str, added| DirectoryChange::Membership { group_id: g.into(), user_id: u.into(), added };
    // Bob joins g1 then leaves it; the leaving is recorded first (out of order) and twice.
    world.insights.push(3, change("g1", "u2", false));
    world.insights.push(2, change("g1", "u2", true));
    world.insights.push(3, change("g1", "u2", false));
    // Bob joins g2 and stays; alice leaves g1.
    world.insights.push(2, change("g2", "u2", true));
    world.insights.push(1, change("g1", "u1", false));
    // Someone unknown joins g1, and bob an unknown group: neither is stored.
    world.insights.push(1, change("g1", "u9", true));
    world.insights.push(1, change("g9", "u2", true));
    world.clock.advance(Duration::minutes(2)); // the run comes after the last of them
    let report = world.applied().await;
    assert_eq!(world.members(), pairs(&[("g2", "u1"), ("g2", "u2")]));
    assert_eq!((report.written, report.deleted), (1, 1));
    assert!(world.reads().is_empty(), "memberships are taken from the events");
    assert_eq!(report.cursor, t(3));
}

#[tokio::test]
async fn a_run_stops_at_its_limit_and_the_next_goes_on_from_there() {
    let world = World::new().await;
    for i in 0..(MAX_EVENTS + 5) {
        world.insights.push(1 + (i / 1000) as i64, DirectoryChange::Unrelated);
    }
    world.clock.advance(Duration::minutes(10)); // the runs come after the last of them
    let first = world.applied().await;
    assert!(!first.complete);
    assert_eq!(first.events, MAX_EVENTS);
    assert_eq!(first.cursor, t(10));
    let second = world.applied().await;
    assert!(second.complete, "the rest, from the cursor less the overlap");
    assert_eq!(second.cursor, t(11));
}

#[tokio::test]
async fn what_it_cannot_follow_it_hands_to_a_full_sync_and_says_why() {
    // No cursor: no full sync has run.
    let world = World::new().await;
    let fresh = MemoryStore::default();
    let ctx = IncrementalContext { store: &fresh, policy: &world.policy, clock: &world.clock, grants: None };
    match sync_incremental(&ctx, "corp", &world.directory, &world.insights).await.unwrap() {
        IncrementalOutcome::FullSyncNeeded { reason } => assert!(reason.contains("no event cursor"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let writes = world.store.item_writes();
    // An event type about users it does not understand.
    world.insights.push(1, DirectoryChange::NotUnderstood { event_type: "user_group_merge".into() });
    assert!(world.needed().await.contains("user_group_merge"));
    world.insights.events.lock().unwrap().clear();
    // Directory Insights failing past the client's retries.
    *world.insights.fail.lock().unwrap() = Some(DirectoryError::Transient { reason: "HTTP 503".into() });
    assert!(world.needed().await.contains("Directory Insights"));
    *world.insights.fail.lock().unwrap() = None;
    // A cursor older than Directory Insights keeps events.
    world.clock.advance(RETENTION);
    assert!(world.needed().await.contains("older than"));
    assert_eq!(world.store.event_cursor("corp").await.unwrap(), Some(t(0)), "the cursor untouched");
    assert_eq!(world.store.item_writes(), writes, "nothing written by any of them");
}

#[tokio::test]
async fn a_running_full_sync_is_left_alone_and_a_cursor_it_moved_is_kept() {
    let world = World::new().await;
    let running = SyncStatus::running("corp", t(1));
    world.store.put_sync_status(&running).await.unwrap();
    assert_eq!(world.run().await, IncrementalOutcome::FullSyncRunning);
    assert_eq!(world.insights.reads.load(Ordering::SeqCst), 0);

    // A full sync that finishes while a run is reading moves the cursor back to when it began:
    // the run does not move it forward over what that sync may have overwritten.
    world.store.put_sync_status(&SyncStatus { state: SyncState::Succeeded, ..running }).await.unwrap();
    world.insights.push(5, DirectoryChange::Unrelated);
    struct MovedMeanwhile<'a>(&'a Insights, &'a MemoryStore);
    #[async_trait]
    impl DirectoryInsights for MovedMeanwhile<'_> {
        async fn directory_events(&self, from: DateTime<Utc>, max: usize) -> Result<EventBatch, DirectoryError> {
            self.1.put_event_cursor("corp", t(4), None).await.unwrap();
            self.0.directory_events(from, max).await
        }
    }
    let ctx = IncrementalContext { store: &world.store, policy: &world.policy, clock: &world.clock, grants: None };
    let moved = MovedMeanwhile(&world.insights, &world.store);
    sync_incremental(&ctx, "corp", &world.directory, &moved).await.unwrap();
    assert_eq!(world.store.event_cursor("corp").await.unwrap(), Some(t(4)));
}

#[tokio::test]
async fn every_integration_runs_and_one_without_a_cursor_is_synced_in_full_instead() {
    use crate::testing::FakeIntegrations;
    let store = MemoryStore::default();
    let clock = ManualClock::new(t(0));
    let policy = DirectoryPolicy::default();
    let ctx = SyncContext::directory_only(&store, &policy, &clock);
    let corp = Arc::new(FakeDirectory::with(
        vec![FakeDirectory::user("u1", "alice@corp.com")],
        vec![FakeDirectory::group("g1", "admins")],
        &[],
    ));
    let labs = Arc::new(FakeDirectory::with(vec![FakeDirectory::user("u7", "lab@labs.com")], vec![], &[]));
    let integrations = FakeIntegrations::default();
    integrations.add("corp", corp.clone());
    integrations.add("labs", labs);
    sync_integration(&ctx, "corp", corp.as_ref()).await.unwrap();
    clock.advance(Duration::minutes(1));
    corp.set_member("g1", "u1");
    corp.events.lock().unwrap().push(DirectoryEvent {
        id: "e1".into(),
        at: t(1),
        change: DirectoryChange::Membership { group_id: "g1".into(), user_id: "u1".into(), added: true },
    });

    let summary = sync_incremental_all(&ctx, &integrations, &integrations).await.unwrap();
    let mut outcomes = summary.integrations.iter();
    match outcomes.next() {
        Some(IncrementalIntegrationOutcome::Applied(report)) => {
            assert_eq!((report.integration.as_str(), report.written), ("corp", 1))
        }
        other => panic!("{other:?}"),
    }
    match outcomes.next() {
        Some(IncrementalIntegrationOutcome::FellBack { integration, reason, full_sync }) => {
            assert_eq!(integration, "labs");
            assert!(reason.contains("no event cursor"), "{reason}");
            assert!(full_sync.is_success());
        }
        other => panic!("{other:?}"),
    }
    assert!(store.is_member("corp", "g1", "u1").await.unwrap());
    assert!(store.user_by_id("labs", "u7").await.unwrap().is_some(), "synced in full");
    assert_eq!(store.event_cursor("labs").await.unwrap(), Some(t(1)), "and its cursor set");
    assert!(summary.integrations.iter().all(|o| !o.is_failure()));
}

#[tokio::test]
async fn a_named_object_that_cannot_be_read_hands_over_and_jumpcloud_down_only_fails_the_run() {
    let world = World::new().await;
    world.insights.push(1, DirectoryChange::User { id: "u2".into() });
    *world.directory.inner.fail_with.lock().unwrap() = Some(DirectoryError::Decode { reason: "garbled".into() });
    assert!(world.needed().await.contains("user \"u2\" could not be read"));
    *world.directory.inner.fail_with.lock().unwrap() = Some(DirectoryError::Transient { reason: "HTTP 503".into() });
    let ctx = IncrementalContext { store: &world.store, policy: &world.policy, clock: &world.clock, grants: None };
    let down = sync_incremental(&ctx, "corp", &world.directory, &world.insights).await;
    assert!(matches!(down, Err(IncrementalError::Directory(DirectoryError::Transient { .. }))), "{down:?}");
    assert_eq!(world.store.event_cursor("corp").await.unwrap(), Some(t(0)), "the same events next run");
}

#[tokio::test]
async fn more_events_at_the_cursor_than_a_run_takes_hand_over_instead_of_stalling() {
    let world = World::new().await;
    for _ in 0..(MAX_EVENTS + 5) {
        world.insights.push(1, DirectoryChange::Unrelated);
    }
    let first = world.applied().await;
    assert!(!first.complete);
    assert_eq!(first.cursor, t(1));
    // The next run would read the same 10,000 again: it says so rather than stand still.
    assert!(world.needed().await.contains("cannot get past them"));
}

#[tokio::test]
async fn a_full_sync_that_died_no_longer_holds_runs_back_and_the_cursor_never_passes_now() {
    let world = World::new().await;
    let died = SyncStatus::running("corp", t(1) - crate::domain::sync::SYNC_CLAIM - Duration::minutes(1));
    world.store.put_sync_status(&died).await.unwrap();
    world.insights.push(90, DirectoryChange::Unrelated); // stamped an hour and a half ahead
    let report = world.applied().await;
    assert_eq!(report.cursor, t(1), "now, not the event's time");
}

#[tokio::test]
async fn a_full_sync_in_place_of_runs_that_cannot_go_on_starts_at_most_every_fifteen_minutes() {
    use crate::testing::FakeIntegrations;
    let store = MemoryStore::default();
    let clock = ManualClock::new(t(0));
    let policy = DirectoryPolicy::default();
    let ctx = SyncContext::directory_only(&store, &policy, &clock);
    let corp = Arc::new(FakeDirectory::with(vec![FakeDirectory::user("u1", "alice@corp.com")], vec![], &[]));
    let integrations = FakeIntegrations::default();
    integrations.add("corp", corp.clone());
    sync_integration(&ctx, "corp", corp.as_ref()).await.unwrap();
    // An event no run understands, at minute 1: every run that reads it stops.
    corp.events.lock().unwrap().push(DirectoryEvent {
        id: "e1".into(),
        at: t(1),
        change: DirectoryChange::NotUnderstood { event_type: "user_group_nest".into() },
    });
    let run = || async { sync_incremental_all(&ctx, &integrations, &integrations).await.unwrap().integrations };

    clock.advance(Duration::minutes(2));
    // A full sync began at minute 0: this one waits until minute 15.
    match run().await.as_slice() {
        [IncrementalIntegrationOutcome::FallBackDeferred { reason, not_before, .. }] => {
            assert!(reason.contains("user_group_nest"), "{reason}");
            assert_eq!(*not_before, t(15));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.event_cursor("corp").await.unwrap(), Some(t(0)), "nothing moved");

    clock.advance(Duration::minutes(13));
    match run().await.as_slice() {
        [IncrementalIntegrationOutcome::FellBack { full_sync, .. }] => assert!(full_sync.is_success()),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.event_cursor("corp").await.unwrap(), Some(t(15)));
    // The next run reads past the event (more than the overlap before the new cursor).
    clock.advance(Duration::minutes(1));
    let outcomes = run().await;
    assert!(matches!(outcomes.as_slice(), [IncrementalIntegrationOutcome::Applied(_)]), "{outcomes:?}");
    assert!(outcomes.iter().all(|o| !o.is_failure()));
}

#[tokio::test]
async fn a_full_sync_that_begins_during_a_run_keeps_its_word() {
    let world = World::new().await;
    world.directory.inner.users.lock().unwrap()[1].job_title = Some("DBA".into());
    world.insights.push(1, DirectoryChange::User { id: "u2".into() });
    struct BeganMeanwhile<'a>(&'a Insights, &'a MemoryStore);
    #[async_trait]
    impl DirectoryInsights for BeganMeanwhile<'_> {
        async fn directory_events(&self, from: DateTime<Utc>, max: usize) -> Result<EventBatch, DirectoryError> {
            let running = SyncStatus::running("corp", t(1));
            self.1.put_sync_status(&running).await.unwrap();
            self.0.directory_events(from, max).await
        }
    }
    let writes = world.store.item_writes();
    let ctx = IncrementalContext { store: &world.store, policy: &world.policy, clock: &world.clock, grants: None };
    let began = BeganMeanwhile(&world.insights, &world.store);
    let outcome = sync_incremental(&ctx, "corp", &world.directory, &began).await.unwrap();
    assert_eq!(outcome, IncrementalOutcome::FullSyncRunning);
    assert_eq!(world.store.item_writes(), writes, "nothing written over the full sync's reads");
    assert_eq!(world.store.event_cursor("corp").await.unwrap(), Some(t(0)), "nor the cursor moved");
}
