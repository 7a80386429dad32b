//! The JumpCloud client against the simulator (a real HTTP server following the OpenAPI documents).

use async_trait::async_trait;
use jit_shared::{
    adapters::jumpcloud::{CredentialSource, JumpCloudClient},
    config::JumpCloudLimits,
    credentials::{ApiKey, Credentials},
    ports::{AddError, AddOutcome, Directory, DirectoryError, RemoveOutcome, SourceGroup},
};
use jumpcloud_sim::{FaultKind, Faults, Group, Org, RunningSimulator, Simulator, User};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const KEY: &str = "sim-key-0123456789abcdef";

fn limits() -> JumpCloudLimits {
    JumpCloudLimits {
        max_concurrency: 4,
        requests_per_second: 1_000,
        request_timeout: Duration::from_secs(5),
        retry_budget: Duration::from_secs(10),
        retry_base_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(100),
    }
}

fn client(sim: &RunningSimulator, limits: JumpCloudLimits) -> JumpCloudClient {
    let credentials = Credentials { token: ApiKey::new(KEY), org_id: None };
    JumpCloudClient::with_credentials(reqwest::Client::new(), &sim.url(), credentials, limits)
}

/// 250 users; groups of 0, 100 and 150 members; one user suspended.
fn org() -> (Org, Vec<String>, Vec<String>) {
    let mut org = Org::new(KEY);
    let users: Vec<String> =
        (0..250).map(|i| org.add_user(User::new(format!("user{i:03}"), format!("User{i:03}@Example.com")))).collect();
    let groups: Vec<String> = ["empty", "hundred", "big"].iter().map(|n| org.add_group(Group::new(*n))).collect();
    for u in &users[..100] {
        org.add_member(&groups[1], u);
    }
    for u in &users[100..250] {
        org.add_member(&groups[2], u);
    }
    (org, users, groups)
}

async fn start(org: Org) -> RunningSimulator {
    Simulator::start(vec![org]).await.expect("simulator starts")
}

#[tokio::test]
async fn lists_everything_with_the_minimum_number_of_requests() {
    let (org, users, groups) = org();
    let sim = start(org).await;
    let c = client(&sim, limits());
    let mut listed: Vec<String> = c.list_users().await.unwrap().into_iter().map(|u| u.id).collect();
    listed.sort();
    let mut expected = users.clone();
    expected.sort();
    assert_eq!(listed, expected, "every user exactly once");
    assert_eq!(c.list_groups().await.unwrap().len(), 3);
    let mut sizes = vec![];
    for g in &groups {
        sizes.push(c.list_group_members(g).await.unwrap().len());
    }
    assert_eq!(sizes, vec![0, 100, 150]);

    let h = sim.handle();
    assert_eq!(h.request_count("GET /api/systemusers"), 3, "ceil(250/100)");
    assert_eq!(h.request_count("GET /api/v2/usergroups"), 1);
    assert_eq!(h.request_count("GET /api/v2/usergroups/{id}/members"), 1 + 1 + 2, "max(1, ceil(m/100)) per group");
}

#[tokio::test]
async fn lists_a_range_of_users_in_id_order_and_to_the_end_with_the_fewest_requests() {
    let (org, mut users, _) = org();
    users.sort();
    let sim = start(org).await;
    let c = client(&sim, limits());
    let h = sim.handle();
    let ids = |listed: Vec<jit_shared::ports::SourceUser>| listed.into_iter().map(|u| u.id).collect::<Vec<_>>();

    assert_eq!(c.count_users().await.unwrap(), 250);
    assert_eq!(h.request_count("GET /api/systemusers"), 1);
    h.reset_counts();

    // A part in the middle: positions 50..180, its pages at once (the last one short).
    assert_eq!(ids(c.list_users_from(50, Some(130)).await.unwrap()), users[50..180].to_vec());
    assert_eq!(h.request_count("GET /api/systemusers"), 2, "skip 50 limit 100, skip 150 limit 30");
    h.reset_counts();

    // The last part: to the end, the first page's count says where that is.
    assert_eq!(ids(c.list_users_from(50, None).await.unwrap()), users[50..].to_vec());
    assert_eq!(h.request_count("GET /api/systemusers"), 2, "pages at 50 and 150; 250 is the end: no empty page");
    h.reset_counts();
    assert_eq!(ids(c.list_users_from(150, None).await.unwrap()), users[150..].to_vec());
    assert_eq!(h.request_count("GET /api/systemusers"), 1, "one full page, and the count says it is the last");
    h.reset_counts();
    assert!(c.list_users_from(300, None).await.unwrap().is_empty(), "past the end");
    assert_eq!(h.request_count("GET /api/systemusers"), 1);
}

#[tokio::test]
async fn lists_the_groups_a_user_is_a_direct_member_of() {
    let (mut org, users, mut groups) = org();
    // 120 more groups hold user 0: the answer spans pages.
    for i in 0..120 {
        let g = org.add_group(Group::new(format!("extra{i:03}")));
        org.add_member(&g, &users[0]);
        groups.push(g);
    }
    let sim = start(org).await;
    let c = client(&sim, limits());
    let mut of_first = c.groups_of_user(&users[0]).await.unwrap();
    of_first.sort();
    let mut expected: Vec<String> = std::iter::once(groups[1].clone()).chain(groups[3..].iter().cloned()).collect();
    expected.sort();
    assert_eq!(of_first, expected);
    assert_eq!(c.groups_of_user(&users[200]).await.unwrap(), vec![groups[2].clone()]);
    assert_eq!(sim.handle().request_count("GET /api/v2/users/{id}/memberof"), 2 + 1);
    assert!(matches!(c.groups_of_user("0123456789abcdef01234567").await, Err(DirectoryError::NotFound { .. })));
    assert!(matches!(c.groups_of_user("../systemusers").await, Err(DirectoryError::Invalid { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_429_and_honours_retry_after() {
    let (org, ..) = org();
    let sim = start(org).await;
    sim.handle().fail_next(2, FaultKind::TooManyRequests { retry_after_secs: Some(1) });
    let started = Instant::now();
    let groups = client(&sim, limits()).list_groups().await.unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(sim.handle().request_count("GET /api/v2/usergroups"), 3);
    // Our own backoff is at most 100 ms here: only Retry-After explains two seconds.
    assert!(started.elapsed() >= Duration::from_secs(2), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn retries_server_errors_and_timeouts() {
    let (org, ..) = org();
    let sim = start(org).await;
    let h = sim.handle();
    h.fail_next(2, FaultKind::ServerError(503));
    h.fail_next(1, FaultKind::Hang(Duration::from_secs(3)));
    h.fail_next(1, FaultKind::ServerError(500));
    let c = client(&sim, JumpCloudLimits { request_timeout: Duration::from_millis(300), ..limits() });
    assert_eq!(c.list_groups().await.unwrap().len(), 3);
    assert_eq!(h.request_count("GET /api/v2/usergroups"), 5);
    assert_eq!(c.stats().retries.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn gives_up_when_the_retry_budget_is_spent() {
    let (org, ..) = org();
    let sim = start(org).await;
    sim.handle().set_faults(Faults { rate_5xx: 1.0, seed: Some(7), ..Faults::default() });
    let c = client(&sim, JumpCloudLimits { retry_budget: Duration::from_millis(500), ..limits() });
    let started = Instant::now();
    let err = c.list_groups().await.unwrap_err();
    assert!(matches!(err, DirectoryError::Transient { .. }), "{err:?}");
    assert!(sim.handle().request_count("GET /api/v2/usergroups") > 2, "it did retry");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the budget: {:?}", started.elapsed());

    sim.handle().set_faults(Faults { rate_429: 1.0, seed: Some(7), ..Faults::default() });
    let err = c.list_groups().await.unwrap_err();
    assert!(matches!(err, DirectoryError::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_is_not_waited_for() {
    let (org, ..) = org();
    let sim = start(org).await;
    sim.handle().fail_next(1, FaultKind::TooManyRequests { retry_after_secs: Some(60) });
    let c = client(&sim, JumpCloudLimits { retry_budget: Duration::from_secs(2), ..limits() });
    let started = Instant::now();
    let err = c.list_groups().await.unwrap_err();
    assert_eq!(err, DirectoryError::RateLimited { retry_after: Some(Duration::from_secs(60)) });
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn bounds_requests_in_flight() {
    let (org, ..) = org();
    let mut org = org;
    for i in 0..750 {
        org.add_user(User::new(format!("more{i}"), format!("more{i}@example.com")));
    }
    let sim = start(org).await;
    sim.handle().set_faults(Faults { latency_ms: 30, ..Faults::default() });
    let c = client(&sim, JumpCloudLimits { max_concurrency: 3, ..limits() });
    assert_eq!(c.list_users().await.unwrap().len(), 1_000);
    let peak = sim.handle().peak_in_flight();
    assert!(peak <= 3, "peak in flight {peak} exceeds the limit of 3");
    assert!(peak >= 2, "pages were fetched concurrently (peak {peak})");
    // Each request held its slot for at least the simulator's latency (the benchmarks' measure of
    // how busy the slots were).
    let (requests, held) =
        (c.stats().requests.load(Ordering::Relaxed), c.stats().permit_micros.load(Ordering::Relaxed));
    assert_eq!(requests, 10, "ten pages of 100");
    assert!(held >= requests * 30_000, "{held} µs for {requests} requests of 30 ms");
}

#[tokio::test]
async fn limits_requests_per_second() {
    let (org, ..) = org();
    let sim = start(org).await;
    let c = client(&sim, JumpCloudLimits { requests_per_second: 5, ..limits() });
    let started = Instant::now();
    for _ in 0..10 {
        c.list_groups().await.unwrap();
    }
    // A bucket of 5 per second: the first 5 pass at once, the next 5 need about a second more.
    assert!(started.elapsed() >= Duration::from_millis(800), "{:?}", started.elapsed());
}

struct RotatingKey {
    stale: Credentials,
    fresh: Credentials,
    refreshes: AtomicUsize,
}

#[async_trait]
impl CredentialSource for RotatingKey {
    fn current(&self) -> Credentials {
        if self.refreshes.load(Ordering::SeqCst) == 0 {
            self.stale.clone()
        } else {
            self.fresh.clone()
        }
    }
    async fn refresh(&self) -> Result<Credentials, DirectoryError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok(self.fresh.clone())
    }
}

#[tokio::test]
async fn reads_the_key_again_once_after_a_401() {
    let (org, ..) = org();
    let sim = start(org).await;
    let creds = |k: &str| Credentials { token: ApiKey::new(k), org_id: None };
    let rotating = Arc::new(RotatingKey { stale: creds("old-key"), fresh: creds(KEY), refreshes: AtomicUsize::new(0) });
    let c = JumpCloudClient::new(reqwest::Client::new(), &sim.url(), rotating.clone(), limits());
    assert_eq!(c.list_groups().await.unwrap().len(), 3);
    assert_eq!(rotating.refreshes.load(Ordering::SeqCst), 1);

    // A key that stays wrong: one refresh, then the 401 is reported, never retried in a loop.
    let wrong = Arc::new(RotatingKey { stale: creds("bad-1"), fresh: creds("bad-2"), refreshes: AtomicUsize::new(0) });
    let c = JumpCloudClient::new(reqwest::Client::new(), &sim.url(), wrong.clone(), limits());
    sim.handle().reset_counts();
    let err = c.list_groups().await.unwrap_err();
    assert_eq!(err, DirectoryError::Unauthorized { status: 401 });
    assert_eq!(wrong.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(sim.handle().request_count("GET /api/v2/usergroups"), 2);
    assert!(!format!("{err} {err:?}").contains("bad-"), "the key never appears in errors");
}

#[tokio::test]
async fn sends_the_org_id() {
    let mut a = Org::new(KEY).with_org_id("org-a");
    a.add_group(Group::new("only-in-a"));
    let mut b = Org::new(KEY).with_org_id("org-b");
    b.add_group(Group::new("only-in-b"));
    let sim = Simulator::start(vec![a, b]).await.unwrap();
    let with_org = |org: Option<&str>| {
        let credentials = Credentials { token: ApiKey::new(KEY), org_id: org.map(str::to_owned) };
        JumpCloudClient::with_credentials(reqwest::Client::new(), &sim.url(), credentials, limits())
    };
    let names = |groups: Vec<SourceGroup>| groups.into_iter().map(|g| g.name).collect::<Vec<_>>();
    assert_eq!(names(with_org(Some("org-b")).list_groups().await.unwrap()), vec!["only-in-b"]);
    assert_eq!(names(with_org(Some("org-a")).list_groups().await.unwrap()), vec!["only-in-a"]);
    // Without x-org-id a multi-organization key is ambiguous: JumpCloud refuses it.
    assert!(matches!(with_org(None).list_groups().await, Err(DirectoryError::Invalid { status: 400, .. })));
}

#[tokio::test]
async fn member_changes_report_409_and_404_as_outcomes() {
    let (org, users, groups) = org();
    let sim = start(org).await;
    let c = client(&sim, limits());
    let (g, u) = (&groups[0], &users[0]);
    assert_eq!(c.add_member(g, u).await.unwrap(), AddOutcome::Added);
    assert!(sim.handle().org(0).is_member(g, u).unwrap());
    assert_eq!(c.add_member(g, u).await.unwrap(), AddOutcome::AlreadyMember { ambiguous: false });
    assert_eq!(c.remove_member(g, u).await.unwrap(), RemoveOutcome::Removed);
    assert!(!sim.handle().org(0).is_member(g, u).unwrap());
    assert_eq!(c.remove_member(g, u).await.unwrap(), RemoveOutcome::NotMember);
    let refused = c.add_member(g, "not/an id").await;
    assert!(
        matches!(refused, Err(AddError { error: DirectoryError::Invalid { .. }, maybe_applied: false })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_404_on_remove_is_not_a_member_only_when_the_group_exists_in_this_organization() {
    // The grant's group lives in the real organization; a key of another one (a secret shadowing
    // the integration's name) gets 404 for the removal, as for a user who is not a member.
    let (org, users, groups) = org();
    let other_key = "other-org-key-0123456789";
    let sim = Simulator::start(vec![org, Org::new(other_key)]).await.unwrap();
    sim.handle().org(0).add_member(&groups[0], &users[0]).unwrap();
    let other = JumpCloudClient::with_credentials(
        reqwest::Client::new(),
        &sim.url(),
        Credentials { token: ApiKey::new(other_key), org_id: None },
        limits(),
    );
    match other.remove_member(&groups[0], &users[0]).await {
        Err(DirectoryError::NotFound { what }) => assert!(what.contains("another organization"), "{what}"),
        answer => panic!("a group of another organization is no 'not a member': {answer:?}"),
    }
    assert!(sim.handle().org(0).is_member(&groups[0], &users[0]).unwrap(), "the real membership is still there");
    // Through the right organization, the same 404 for a non-member is an answer.
    assert_eq!(client(&sim, limits()).remove_member(&groups[0], &users[1]).await.unwrap(), RemoveOutcome::NotMember);
}

#[tokio::test]
async fn a_failed_add_reports_whether_it_may_have_been_applied() {
    let (org, users, groups) = org();
    let sim = start(org).await;
    let c = client(&sim, JumpCloudLimits { retry_budget: Duration::ZERO, ..limits() });
    // A 5xx after the request was sent: JumpCloud may have applied it.
    sim.handle().fail_next(1, FaultKind::ServerError(502));
    let failed = c.add_member(&groups[0], &users[0]).await.unwrap_err();
    assert!(failed.maybe_applied && failed.error.is_retryable(), "{failed:?}");
    // Refused before anything was sent: it cannot have been applied.
    let refused = c.add_member(&groups[0], "not/an id").await.unwrap_err();
    assert!(!refused.maybe_applied, "{refused:?}");
    assert!(!sim.handle().org(0).is_member(&groups[0], &users[0]).unwrap());
}

#[tokio::test]
async fn a_409_after_a_failed_attempt_is_flagged_ambiguous() {
    let (org, users, groups) = org();
    let sim = start(org).await;
    let c = client(&sim, limits());
    // Member already (as if the first attempt had been applied before its answer was lost).
    sim.handle().org(0).add_member(&groups[0], &users[0]).unwrap();
    sim.handle().fail_next(1, FaultKind::ServerError(502));
    assert_eq!(c.add_member(&groups[0], &users[0]).await.unwrap(), AddOutcome::AlreadyMember { ambiguous: true });
}

#[tokio::test]
async fn finds_users_and_groups_by_every_key() {
    let (org, users, groups) = org();
    let sim = start(org).await;
    let c = client(&sim, limits());
    assert_eq!(c.find_user("User007@Example.com").await.unwrap().id, users[7]);
    let lower = sim.handle().org(0).add_user(User::new("alice", "alice@example.com")).unwrap();
    assert_eq!(c.find_user("Alice@Example.COM").await.unwrap().id, lower, "a typed-in capital still finds the user");
    assert_eq!(c.find_user("user008").await.unwrap().id, users[8]);
    assert_eq!(c.find_user(&users[9]).await.unwrap().username, "user009");
    assert_eq!(c.find_group("big").await.unwrap().id, groups[2]);
    assert_eq!(c.find_group(&groups[1]).await.unwrap().name, "hundred");
    for missing in ["nobody@example.com", "nobody", "0123456789abcdef01234567"] {
        assert!(matches!(c.find_user(missing).await, Err(DirectoryError::NotFound { .. })), "{missing}");
    }
    assert!(matches!(c.find_group("no-such-group").await, Err(DirectoryError::NotFound { .. })));
}

#[tokio::test]
async fn lookups_refuse_filter_syntax_without_asking_and_take_only_an_exact_unique_match() {
    let (org, users, _groups) = org();
    let sim = start(org).await;
    let c = client(&sim, limits());
    // Values that would extend the filter they are put in: refused before any request.
    for injected in ["x,email:$ne:nobody", "user007:$ne:x", "name:eq:big", "big,name:$ne:x"] {
        assert!(matches!(c.find_user(injected).await, Err(DirectoryError::NotFound { .. })), "{injected}");
        assert!(matches!(c.find_group(injected).await, Err(DirectoryError::NotFound { .. })), "{injected}");
    }
    assert_eq!(sim.handle().request_count("GET /api/systemusers"), 0, "nothing was asked");
    assert_eq!(sim.handle().request_count("GET /api/v2/usergroups"), 0, "nothing was asked");
    // A match that is not exact is no match.
    assert_eq!(c.find_user("user008").await.unwrap().id, users[8]);
    assert!(matches!(c.find_user("user00").await, Err(DirectoryError::NotFound { .. })));
    assert!(matches!(c.find_group("bi").await, Err(DirectoryError::NotFound { .. })));
}

const LIST_GROUPS: &str = "GET /api/v2/usergroups";
const MEMBER_CHANGE: &str = "POST /api/v2/usergroups/{id}/members";

/// Waits for a condition that other tasks bring about (not for a time).
async fn until(what: &str, condition: impl Fn() -> bool) {
    let stuck = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < stuck, "never came: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One request at a time, two per second: calls queue for the permit, then for tokens.
fn one_at_a_time() -> JumpCloudLimits {
    JumpCloudLimits { max_concurrency: 1, requests_per_second: 2, ..limits() }
}

fn spawn_listings(c: &Arc<JumpCloudClient>, n: usize) -> Vec<tokio::task::JoinHandle<Vec<SourceGroup>>> {
    (0..n)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.list_groups().await.unwrap() })
        })
        .collect()
}

fn spawn_removal(
    c: &Arc<JumpCloudClient>,
    group: &str,
    user: &str,
) -> tokio::task::JoinHandle<Result<RemoveOutcome, DirectoryError>> {
    let (c, group, user) = (c.clone(), group.to_owned(), user.to_owned());
    tokio::spawn(async move { c.remove_member(&group, &user).await })
}

#[tokio::test]
async fn a_removal_is_served_before_the_listings_queued_ahead_of_it() {
    let (org, users, groups) = org();
    let sim = start(org).await;
    let h = sim.handle();
    let c = Arc::new(client(&sim, one_at_a_time()));
    h.hold_requests();
    // A sync's listings: the first in flight (held by the simulator), three queued behind it.
    let listings = spawn_listings(&c, 4);
    until("one listing in flight, three waiting", || h.in_flight() == 1 && c.waiting() == 3).await;
    // Then an expiry's removal on the same client.
    let removal = spawn_removal(&c, &groups[1], &users[0]);
    until("the removal waiting too", || c.waiting() == 4).await;

    h.release_requests();
    assert_eq!(removal.await.unwrap(), Ok(RemoveOutcome::Removed));
    for listing in listings {
        assert_eq!(listing.await.unwrap().len(), 3);
    }
    assert_eq!(h.request_log(), [LIST_GROUPS, MEMBER_CHANGE, LIST_GROUPS, LIST_GROUPS, LIST_GROUPS]);
}

#[tokio::test]
async fn a_removal_s_retry_is_served_before_the_listings_queued_ahead_of_it() {
    let (org, users, groups) = org();
    let sim = start(org).await;
    let h = sim.handle();
    let c = Arc::new(client(&sim, one_at_a_time()));
    h.hold_requests();
    let removal = spawn_removal(&c, &groups[1], &users[0]);
    until("the removal in flight", || h.in_flight() == 1).await;
    let listings = spawn_listings(&c, 3);
    until("three listings waiting", || c.waiting() == 3).await;

    // The removal's first attempt fails; meanwhile a listing takes the permit (and stays held).
    h.fail_next(1, FaultKind::ServerError(503));
    h.release_next(1);
    until("a listing in flight and the removal's retry waiting", || {
        h.request_log().len() == 2 && h.in_flight() == 1 && c.waiting() == 3
    })
    .await;

    h.release_requests();
    assert_eq!(removal.await.unwrap(), Ok(RemoveOutcome::Removed));
    for listing in listings {
        assert_eq!(listing.await.unwrap().len(), 3);
    }
    let log = h.request_log();
    assert_eq!(log, [MEMBER_CHANGE, LIST_GROUPS, MEMBER_CHANGE, LIST_GROUPS, LIST_GROUPS], "the retry went first");
    assert_eq!(c.stats().retries.load(Ordering::Relaxed), 1);
}

/// A server that answers Directory Insights' POSTs with the given pages in turn (none with an
/// `X-Search_after` header), and keeps the request bodies.
async fn canned_insights(pages: Vec<serde_json::Value>) -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        let mut pages = pages.into_iter();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            // Headers, then the body its Content-Length announces.
            let body = loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break serde_json::from_slice::<serde_json::Value>(&request[end + 4..end + 4 + length])
                            .unwrap();
                    }
                }
            };
            seen.lock().unwrap().push(body);
            let page = pages.next().unwrap_or_else(|| serde_json::json!([])).to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    (url, bodies)
}

fn insights_event(id: &str, at: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "event_type": "user_update", "timestamp": at, "service": "directory",
                       "resource": {"type": "user", "id": "u1"}})
}

#[tokio::test]
async fn without_search_after_events_are_paged_by_what_was_served_and_a_stuck_page_is_refused() {
    use jit_shared::ports::DirectoryInsights;
    let from: chrono::DateTime<chrono::Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
    let credentials = Credentials { token: ApiKey::new(KEY), org_id: None };
    // Page 1 (4 asked, 4 served): one event older than asked and a duplicate (neither kept), two
    // new; page 2 goes on after the four served, and is the last (fewer than asked).
    let (url, bodies) = canned_insights(vec![
        serde_json::json!([
            insights_event("e0", "2026-11-30T11:59:00Z"),
            insights_event("e1", "2026-11-30T12:00:01Z"),
            insights_event("e2", "2026-11-30T12:00:02Z"),
            insights_event("e1", "2026-11-30T12:00:01Z")
        ]),
        serde_json::json!([insights_event("e3", "2026-11-30T12:00:03Z")]),
    ])
    .await;
    let c = JumpCloudClient::with_credentials(reqwest::Client::new(), &url, credentials.clone(), limits())
        .with_insights_url(&url);
    let batch = c.directory_events(from, 4).await.unwrap();
    let ids: Vec<&str> = batch.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    assert!(batch.complete);
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!((bodies[0].get("skip"), bodies[0]["limit"].as_u64()), (None, Some(4)));
    assert_eq!((bodies[1]["skip"].as_u64(), bodies[1]["limit"].as_u64()), (Some(4), Some(2)));

    // A server that answers the same full page again: paging makes no progress, and says so
    // rather than asking until the timeout.
    let same =
        serde_json::json!([insights_event("e1", "2026-11-30T12:00:01Z"), insights_event("e0", "2026-11-30T11:59:00Z")]);
    let (url, bodies) = canned_insights(vec![same.clone(), same]).await;
    let c =
        JumpCloudClient::with_credentials(reqwest::Client::new(), &url, credentials, limits()).with_insights_url(&url);
    let stuck = c.directory_events(from, 2).await;
    assert!(matches!(&stuck, Err(DirectoryError::Decode { reason }) if reason.contains("no progress")), "{stuck:?}");
    assert_eq!(bodies.lock().unwrap().len(), 2);
}
