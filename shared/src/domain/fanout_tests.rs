//! The fanned-out full sync over in-memory ports: it stores exactly what the single sync stores,
//! deletes exactly, retries a part alone, finishes once, and drops parts of runs that are over.

use super::{
    fanout::{run_part, FanOut, PartOutcome, PART_ATTEMPTS},
    sync::{full_sync, sync_integration, IntegrationOutcome, NoProgress, SyncContext},
};
use crate::{
    clock::ManualClock,
    config::DirectoryPolicy,
    domain::model::{DirectorySnapshot, UserState},
    ports::{DirectoryError, DirectoryStore, PartKind, RunStage, SourceUser, SyncRunStore, SyncState, UserAttribute},
    testing::{FakeDirectory, MemoryQueue, MemoryRuns, MemoryStore},
};
use chrono::{TimeZone, Utc};

fn id(n: usize) -> String {
    format!("{n:024x}")
}

fn user(n: usize) -> SourceUser {
    FakeDirectory::user(&id(n), &format!("user{n}@corp.com"))
}

/// 23 users (ids 1..=23; user 5 suspended; managers across parts, by id and by custom email
/// attribute, one naming itself, one unknown, one suspended, one read later in the same part), 7 groups, memberships spread over them.
fn org() -> FakeDirectory {
    let mut users: Vec<SourceUser> = (1..=23).map(user).collect();
    users[4].state = UserState::Suspended;
    users[0].manager = Some(id(22)); // in another part
    users[1].manager = Some(id(1)); // in the same part
    users[2].manager = Some(id(3)); // itself
    users[3].manager = Some(id(99)); // nobody
    users[12].manager = Some(id(5)); // suspended, in another part
    users[5].manager = Some(id(9)); // in the same part, read after
    users[20].attributes = vec![UserAttribute { name: "manager".into(), value: Some("USER2@corp.com".into()) }];
    users[20].manager = None;
    let groups = (1..=7).map(|g| FakeDirectory::group(&id(1000 + g), &format!("group-{g}"))).collect();
    let dir = FakeDirectory::with(users, groups, &[]);
    for g in 1..=7 {
        for u in (g..=23).step_by(g) {
            dir.set_member(&id(1000 + g), &id(u));
        }
    }
    dir
}

struct World {
    store: MemoryStore,
    runs: MemoryRuns,
    queue: MemoryQueue,
    clock: ManualClock,
    policy: DirectoryPolicy,
    dir: FakeDirectory,
}

impl World {
    fn new(dir: FakeDirectory) -> Self {
        Self {
            store: MemoryStore::default(),
            runs: MemoryRuns::default(),
            queue: MemoryQueue::default(),
            clock: ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap()),
            policy: DirectoryPolicy::default(),
            dir,
        }
    }

    fn fanout(&self) -> FanOut<'_> {
        FanOut { users_per_part: 5, groups_per_part: 3, users_per_read: 2, ..FanOut::new(&self.queue, &self.runs, 10) }
    }

    /// Plans a run; `None` when the sync ran in one invocation.
    async fn start(&self) -> IntegrationOutcome {
        let fanout = self.fanout();
        let ctx = self.ctx(Some(&fanout));
        full_sync(&ctx, "corp", &self.dir).await
    }

    fn ctx<'a>(&'a self, fanout: Option<&'a FanOut<'a>>) -> SyncContext<'a> {
        SyncContext {
            store: &self.store,
            policy: &self.policy,
            clock: &self.clock,
            progress: &NoProgress,
            grants: None,
            fanout,
        }
    }

    async fn deliver(&self, attempt: u32) -> Option<Result<PartOutcome, crate::domain::sync::SyncError>> {
        let message = self.queue.take()?;
        let fanout = self.fanout();
        let outcome = run_part(&self.ctx(Some(&fanout)), &fanout, &message, &self.dir, attempt).await;
        if outcome.is_err() {
            self.queue.messages.lock().unwrap().push_back(message); // the queue delivers it again
        }
        Some(outcome)
    }

    /// Works every part until the queue is empty.
    async fn drain(&self) -> Vec<PartOutcome> {
        let mut outcomes = Vec::new();
        while let Some(outcome) = self.deliver(1).await {
            outcomes.push(outcome.expect("part"));
        }
        outcomes
    }

    async fn fanned_sync(&self) -> Vec<PartOutcome> {
        assert!(matches!(self.start().await, IntegrationOutcome::FannedOut(_)), "fanned out");
        self.drain().await
    }
}

/// Lets a part run as far as it can: it and the test are one task on one thread, so yielding is
/// enough, no clock involved.
async fn settle() {
    for _ in 0..500 {
        tokio::task::yield_now().await;
    }
}

async fn single(dir: &FakeDirectory) -> DirectorySnapshot {
    let store = MemoryStore::default();
    let (policy, clock) = (DirectoryPolicy::default(), ManualClock::new(Utc::now()));
    let ctx = SyncContext::directory_only(&store, &policy, &clock);
    sync_integration(&ctx, "corp", dir).await.expect("single sync");
    store.directory("corp")
}

#[tokio::test]
async fn a_fanned_out_sync_stores_exactly_what_the_single_sync_stores() {
    let w = World::new(org());
    let started = match w.start().await {
        IntegrationOutcome::FannedOut(started) => started,
        other => panic!("{other:?}"),
    };
    assert_eq!((started.users, started.groups, started.user_parts, started.member_parts), (23, 7, 5, 3));
    let status = w.store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.state, SyncState::Running, "the run holds the claim");
    assert_eq!(w.queue.len(), 5, "one message per users part");

    let outcomes = w.drain().await;
    assert_eq!(outcomes.len(), 8, "5 users parts, then 3 members parts");
    let moved: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            PartOutcome::Done { moved: Some(stage), .. } => Some(*stage),
            _ => None,
        })
        .collect();
    assert_eq!(moved, vec![RunStage::Members, RunStage::Done], "moved on once per half");

    let expected = single(&w.dir).await;
    let stored = w.store.directory("corp");
    assert_eq!(stored.users, expected.users, "users, managers resolved across parts");
    assert_eq!(stored.groups, expected.groups);
    assert_eq!(stored.memberships, expected.memberships);
    assert!(!stored.users.contains_key(&id(5)), "suspended: not stored");
    assert_eq!(stored.users[&id(1)].manager_id.as_deref(), Some(id(22).as_str()), "a manager in another part");
    assert_eq!(stored.users[&id(21)].manager_email.as_deref(), Some("user2@corp.com"), "by email attribute");
    assert_eq!(stored.users[&id(13)].manager_id.as_deref(), Some(id(5).as_str()), "a suspended manager");
    assert_eq!(stored.users[&id(6)].manager_id.as_deref(), Some(id(9).as_str()), "a manager read later in the part");

    let status = w.store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.state, SyncState::Succeeded);
    assert_eq!((status.users, status.groups), (22, 7));
    assert_eq!(status.memberships as usize, expected.memberships.len());
    assert_eq!(w.store.event_cursor("corp").await.unwrap(), Some(started.started_at), "the cursor at the run's start");
}

#[tokio::test]
async fn a_second_fanned_out_sync_of_an_unchanged_directory_writes_nothing() {
    let w = World::new(org());
    w.fanned_sync().await;
    let before = w.store.item_writes();
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    assert_eq!(w.store.item_writes(), before, "no item written");
    let status = w.store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!((status.state, status.written, status.deleted), (SyncState::Succeeded, 0, 0));
}

/// A members part reads its groups' stored members a window of groups a query (here every
/// part's 3 groups in one), not a query a group: each part still stores exactly.
#[tokio::test]
async fn a_members_part_reads_the_stored_members_of_its_groups_a_window_a_query() {
    let w = World::new(org());
    w.fanned_sync().await;
    w.dir.unset_member(&id(1003), &id(9));
    w.dir.set_member(&id(1004), &id(2));
    let before = w.store.membership_queries();
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    assert_eq!(w.store.membership_queries() - before, 3, "one query for each of the 3 members parts (7 groups)");
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

/// A re-sync confirms a manager named by email with the stored user it found last time (read by
/// id with the others), not with an email index query each: unless that user's email changed.
#[tokio::test]
async fn a_re_sync_confirms_managers_by_email_without_the_email_index_until_one_changes() {
    let w = World::new(org());
    w.fanned_sync().await;
    assert!(w.store.email_lookups() > 0, "the first sync asked the index for user 21's manager");

    let before = w.store.email_lookups();
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    assert_eq!(w.store.email_lookups(), before, "unchanged managers confirmed by id");

    // User 2's email goes to user 3: user 21 names user 3 now (parts 0 and 4: user 3 is written
    // before user 21's part confirms user 2, who no longer has that email).
    {
        let mut users = w.dir.users.lock().unwrap();
        users[1].email = "user2.old@corp.com".into();
        users[2].email = "user2@corp.com".into();
    }
    let before = w.store.email_lookups();
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    assert_eq!(w.store.email_lookups(), before + 1, "the one manager not confirmed was asked of the index");
    let stored = w.store.directory("corp");
    assert_eq!(stored.users[&id(21)].manager_id.as_deref(), Some(id(3).as_str()));
    assert_eq!(stored, single(&w.dir).await);
}

#[tokio::test]
async fn vanished_users_groups_and_memberships_go_and_nothing_else() {
    let w = World::new(org());
    w.fanned_sync().await;
    w.dir.users.lock().unwrap().retain(|u| u.id != id(7) && u.id != id(23));
    w.dir.groups.lock().unwrap().retain(|g| g.id != id(1002));
    w.dir.unset_member(&id(1003), &id(9));
    w.dir.users.lock().unwrap()[10].state = UserState::Suspended; // user 12
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

/// A members part stores the groups it has read while a slow one is still being read: its
/// JumpCloud reads and its store writes overlap instead of taking turns.
#[tokio::test]
async fn a_members_part_stores_what_it_has_read_while_a_slow_group_is_read() {
    let w = World::new(org());
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)), "fanned out");
    while w.queue.messages.lock().unwrap().front().is_some_and(|m| m.kind == PartKind::Users) {
        w.deliver(1).await.expect("a part").expect("users part");
    }
    // The first members part reads groups 1001..=1003: hold the last one's listing.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    *w.dir.hold_members_of.lock().unwrap() = Some((id(1003), gate.clone()));
    let stored_meanwhile = async {
        // Let the held group go only once the others' memberships are in the store.
        loop {
            let (first, second) = (
                w.store.group_members("corp", &id(1001)).await.unwrap(),
                w.store.group_members("corp", &id(1002)).await.unwrap(),
            );
            if !first.is_empty() && !second.is_empty() {
                assert!(w.store.group_members("corp", &id(1003)).await.unwrap().is_empty(), "not read yet");
                gate.add_permits(1);
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    let part = w.deliver(1);
    let (outcome, ()) =
        tokio::time::timeout(std::time::Duration::from_secs(10), async { tokio::join!(part, stored_meanwhile) })
            .await
            .expect("the part stored nothing until every group was read");
    outcome.expect("a part").expect("members part");
    assert!(!w.store.group_members("corp", &id(1003)).await.unwrap().is_empty(), "the held group stored after");
    w.drain().await;
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

/// A members part polls every group read it began to its end while it waits for its store, and
/// reads only a bounded number of groups ahead (as the users part below: an unpolled JumpCloud
/// request runs out its timeout with its answer there).
#[tokio::test]
async fn a_members_part_polls_the_reads_it_began_to_their_end_while_the_store_is_slow() {
    use std::sync::{atomic::Ordering, Arc};
    use tokio::sync::Semaphore;
    const GROUPS: usize = 80;
    let dir = org();
    for g in 8..=GROUPS {
        dir.groups.lock().unwrap().push(FakeDirectory::group(&id(1000 + g), &format!("group-{g}")));
        dir.set_member(&id(1000 + g), &id(g % 23 + 1));
    }
    let w = World::new(dir);
    // One members part reads every group.
    let fanout = FanOut { groups_per_part: GROUPS, ..w.fanout() };
    let ctx = w.ctx(Some(&fanout));
    assert!(matches!(full_sync(&ctx, "corp", &w.dir).await, IntegrationOutcome::FannedOut(_)), "fanned out");
    let mut message = w.queue.take().expect("a users part");
    while message.kind == PartKind::Users {
        run_part(&ctx, &fanout, &message, &w.dir, 1).await.expect("users part");
        message = w.queue.take().expect("a part");
    }
    assert!(w.queue.take().is_none(), "one members part");
    // A slow store: checking the members found new against the stored users waits.
    let store = Arc::new(Semaphore::new(0));
    *w.store.hold_email_reads.lock().unwrap() = Some(store.clone());
    let part = run_part(&ctx, &fanout, &message, &w.dir, 1);
    let (begun, answered) = (&w.dir.member_reads_begun, &w.dir.member_reads_answered);
    let meanwhile = async {
        settle().await;
        assert_eq!(answered.load(Ordering::SeqCst), begun.load(Ordering::SeqCst), "a read left unpolled");
        assert!(begun.load(Ordering::SeqCst) > 25, "reads went on ahead of the held store");
        assert!(begun.load(Ordering::SeqCst) < GROUPS, "the reads ahead are bounded");
        store.add_permits(1_000);
    };
    let (outcome, ()) = tokio::join!(part, meanwhile);
    outcome.expect("members part");
    assert_eq!(begun.load(Ordering::SeqCst), GROUPS);
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

/// A users part looks up what it has read (the stored users and managers) while it reads the
/// rest: the worker's JumpCloud reads do not wait for its store lookups, nor the other way round.
#[tokio::test]
async fn a_users_part_looks_up_what_it_has_read_while_the_rest_is_read() {
    let w = World::new(org());
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)), "fanned out");
    // Part 0 is users 1..=5, read two at a time: hold the second read (from position 2).
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    *w.dir.hold_users_from.lock().unwrap() = Some((2, gate.clone()));
    let looked_up_meanwhile = async {
        // Let the held read go only once the first read's users were looked up in the store.
        while w.store.digest_reads() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(w.store.digest_reads(), 2, "only the first read's users, the rest not read yet");
        gate.add_permits(1);
    };
    deliver_while(&w, looked_up_meanwhile, "the part looked nothing up until every user was read").await;
    assert_eq!(w.store.digest_reads(), 4, "each user the part keeps asked for once (user 5 is suspended)");
    w.drain().await;
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

/// Delivers the next part with `meanwhile` beside it (one task, one thread: the part runs while
/// `meanwhile` waits); `stuck` says what it means if the two never finish.
async fn deliver_while(w: &World, meanwhile: impl std::future::Future<Output = ()>, stuck: &str) {
    let part = w.deliver(1);
    let (outcome, ()) =
        tokio::time::timeout(std::time::Duration::from_secs(10), async { tokio::join!(part, meanwhile) })
            .await
            .expect(stuck);
    outcome.expect("a part").expect("users part");
}

/// A users part writes the users it has read and decided while it reads the rest, so that its
/// JumpCloud slots are not idle while it writes.
#[tokio::test]
async fn a_users_part_writes_what_it_has_read_while_the_rest_is_read() {
    let w = World::new(org());
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)), "fanned out");
    let planned = w.store.item_writes();
    // Part 0 is users 1..=5, read two at a time: hold the third read (from position 4).
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    *w.dir.hold_users_from.lock().unwrap() = Some((4, gate.clone()));
    let written_meanwhile = async {
        settle().await;
        let stored = w.store.directory("corp").users;
        let ids: std::collections::BTreeSet<String> = stored.keys().cloned().collect();
        // Of the first two reads' users, 1 and 4 name managers not found yet (user 22, of a
        // later part, and nobody): they wait for the end of the part.
        assert_eq!(ids, [2, 3].map(id).into(), "the first two reads' users decided");
        assert_eq!(w.store.item_writes() - planned, 2, "written, and nothing else");
        gate.add_permits(1);
    };
    deliver_while(&w, written_meanwhile, "the part wrote nothing until every user was read").await;
    w.drain().await;
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

/// A user decided as read with a stored manager who is also read later in the same part: the
/// part's own user comes first, as in the single sync (here the manager's email changed).
#[tokio::test]
async fn a_manager_read_later_in_the_part_corrects_the_stored_one() {
    let w = World::new(org());
    w.fanned_sync().await;
    let before = w.store.directory("corp");
    assert_eq!(before.users[&id(6)].manager_email.as_deref(), Some("user9@corp.com"));
    w.dir.users.lock().unwrap()[8].email = "user9.new@corp.com".into();
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    let stored = w.store.directory("corp");
    assert_eq!(stored.users[&id(6)].manager_email.as_deref(), Some("user9.new@corp.com"), "corrected");
    assert_eq!(stored, single(&w.dir).await);
    let status = w.store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.written, 2, "user 9 and, once, user 6");
}

#[tokio::test]
async fn a_users_part_polls_the_reads_it_began_to_their_end_while_the_store_is_slow() {
    use std::sync::{atomic::Ordering, Arc};
    use tokio::sync::Semaphore;
    let w = World::new(org());
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)), "fanned out");
    // A slow store: every lookup of stored users waits until the end of the test.
    let store = Arc::new(Semaphore::new(0));
    *w.store.hold_digest_reads.lock().unwrap() = Some(store.clone());
    // Part 0 is users 1..=5, read one at a time here (each read in flight for a moment); the
    // fourth read's answer comes late, while the part waits for the store.
    let answer = Arc::new(Semaphore::new(0));
    *w.dir.hold_users_from.lock().unwrap() = Some((3, answer.clone()));
    let message = w.queue.take().expect("users part 0");
    let fanout = FanOut { users_per_read: 1, ..w.fanout() };
    let ctx = w.ctx(Some(&fanout));
    let part = run_part(&ctx, &fanout, &message, &w.dir, 1);
    let (begun, answered) = (&w.dir.users_reads_begun, &w.dir.users_reads_answered);
    let meanwhile = async {
        settle().await;
        assert!(w.store.digest_reads() > 0, "the first read's lookup is held");
        answer.add_permits(1);
        settle().await;
        // A read begun and left unpolled while its part waits for the store is how a JumpCloud
        // request runs out its timeout with its answer there: every read begun is answered.
        assert_eq!(answered.load(Ordering::SeqCst), begun.load(Ordering::SeqCst), "a read left unpolled");
        assert!(begun.load(Ordering::SeqCst) >= 3, "reads went on ahead of the held lookup");
        assert!(begun.load(Ordering::SeqCst) < 5, "the reads ahead are bounded");
        store.add_permits(1_000);
    };
    let (outcome, ()) = tokio::join!(part, meanwhile);
    outcome.expect("users part");
    assert_eq!(begun.load(Ordering::SeqCst), 5);
    w.drain().await;
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

#[tokio::test]
async fn a_user_that_paging_moves_past_its_part_is_not_deleted() {
    let w = World::new(org());
    w.fanned_sync().await;
    w.clock.advance(chrono::Duration::hours(1));
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)));
    // Part 0 (users 1-5) runs; then user 2 is deleted: every later user moves down a place, so
    // part 1 (positions 5-9) starts at user 7 and nobody lists user 6.
    let first = w.queue.take().unwrap();
    let fanout = w.fanout();
    run_part(&w.ctx(Some(&fanout)), &fanout, &first, &w.dir, 1).await.unwrap();
    w.dir.users.lock().unwrap().retain(|u| u.id != id(2));
    w.drain().await;
    let stored = w.store.directory("corp");
    assert!(stored.users.contains_key(&id(6)), "JumpCloud still has user 6: kept");
    // User 2 went after the run read it: like a change during a single sync's fetch, the next
    // run (or the events since this one began) takes it out.
    assert!(stored.users.contains_key(&id(2)));
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    let stored = w.store.directory("corp");
    assert!(!stored.users.contains_key(&id(2)), "gone now");
    // User 21 names user 2 as manager: its part found user 2 still stored (users go only when
    // every part has reported), so the manager goes one run later. A known lag, not a loss.
    assert_eq!(stored.users[&id(21)].manager_id.as_deref(), Some(id(2).as_str()));
    w.clock.advance(chrono::Duration::hours(1));
    w.fanned_sync().await;
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);
}

#[tokio::test]
async fn a_failing_part_is_retried_alone_and_the_last_attempt_fails_the_run() {
    let w = World::new(org());
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)));
    for _ in 0..3 {
        w.deliver(1).await.unwrap().unwrap();
    }
    // JumpCloud fails part 3's listing; it goes back to the queue, behind part 4.
    *w.dir.fail_with.lock().unwrap() = Some(DirectoryError::Transient { reason: "HTTP 503".into() });
    assert!(w.deliver(1).await.unwrap().is_err());
    *w.dir.fail_with.lock().unwrap() = None;
    let rest = w.drain().await;
    let parts: Vec<(PartKind, u32)> = rest
        .iter()
        .filter_map(|o| match o {
            PartOutcome::Done { kind, part, .. } => Some((*kind, *part)),
            _ => None,
        })
        .take(2)
        .collect();
    assert_eq!(parts, vec![(PartKind::Users, 4), (PartKind::Users, 3)], "only the failed part again");
    assert_eq!(w.store.sync_status("corp").await.unwrap().unwrap().state, SyncState::Succeeded);
    assert_eq!(w.store.directory("corp"), single(&w.dir).await);

    // A part failing on its last delivery fails the run: the status says why, later parts drop.
    w.clock.advance(chrono::Duration::hours(1));
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)));
    *w.dir.fail_with.lock().unwrap() = Some(DirectoryError::Transient { reason: "HTTP 503".into() });
    assert!(w.deliver(PART_ATTEMPTS).await.unwrap().is_err());
    let status = w.store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.state, SyncState::Failed);
    assert!(status.error.as_deref().unwrap().contains("users/0 failed 5 times"), "{status:?}");
    *w.dir.fail_with.lock().unwrap() = None;
    let after = w.drain().await;
    assert!(after.iter().all(|o| matches!(o, PartOutcome::Dropped { .. })), "{after:?}");
}

#[tokio::test]
async fn a_finishing_part_delivered_twice_finishes_once() {
    let w = World::new(org());
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)));
    let mut sent = Vec::new();
    while let Some(message) = w.queue.take() {
        sent.push(message.clone());
        let fanout = w.fanout();
        run_part(&w.ctx(Some(&fanout)), &fanout, &message, &w.dir, 1).await.unwrap();
    }
    let status = w.store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.state, SyncState::Succeeded);
    // Every message delivered again (SQS delivers at least once): nothing changes.
    let writes = w.store.item_writes();
    for message in &sent {
        let fanout = w.fanout();
        let outcome = run_part(&w.ctx(Some(&fanout)), &fanout, message, &w.dir, 1).await.unwrap();
        assert!(matches!(outcome, PartOutcome::Dropped { .. }), "{outcome:?}");
    }
    assert_eq!(w.store.item_writes(), writes);
    assert_eq!(w.store.sync_status("corp").await.unwrap().unwrap(), status, "finished once");
}

#[tokio::test]
async fn a_run_that_lost_its_claim_is_dropped_and_a_small_org_is_synced_in_one_invocation() {
    let w = World::new(org());
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)));
    // Its claim lapsed (the run died) and a new sync began: the old run's parts do nothing.
    w.clock.advance(chrono::Duration::hours(4));
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)));
    let runs_sent =
        w.queue.sent.lock().unwrap().iter().map(|m| m.run_id.clone()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(runs_sent.len(), 2);
    let outcomes = w.drain().await;
    let dropped = outcomes.iter().filter(|o| matches!(o, PartOutcome::Dropped { .. })).count();
    assert_eq!(dropped, 5, "the old run's users parts");
    assert_eq!(w.store.sync_status("corp").await.unwrap().unwrap().state, SyncState::Succeeded);

    // Below the threshold: the single invocation, nothing queued.
    let small = World::new(FakeDirectory::with((1..=9).map(user).collect(), vec![], &[]));
    assert!(matches!(small.start().await, IntegrationOutcome::Succeeded(_)));
    assert!(small.queue.sent.lock().unwrap().is_empty());
    assert!(small.runs.run("corp", "x").await.unwrap().is_none());
}

#[tokio::test]
async fn a_queue_that_refuses_the_plan_fails_the_sync_and_releases_the_claim() {
    let w = World::new(org());
    w.queue.fail_next(1);
    match w.start().await {
        IntegrationOutcome::Failed { error, .. } => assert!(error.contains("SQS"), "{error}"),
        other => panic!("{other:?}"),
    }
    let status = w.store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.state, SyncState::Failed);
    // Nothing holds the integration: the next sync starts at once.
    assert!(matches!(w.start().await, IntegrationOutcome::FannedOut(_)));
    w.drain().await;
    assert_eq!(w.store.sync_status("corp").await.unwrap().unwrap().state, SyncState::Succeeded);
}
