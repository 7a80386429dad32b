//! `soak`: many grants on the local stack under faults, then a reckoning of what JumpCloud holds
//! against what the product recorded (issue 12's soak; a short run is part of the test command).
//!
//! The real `grant`, `revoke` and `sync` handlers (moto's server, the JumpCloud simulator, the real
//! SDK) run in this process on a simulated clock that moves 10 s a tick:
//! - grants by an admin and requests by people (auto-approved up to 30 minutes, else their
//!   manager approves, denies, or lets them lapse), random durations, random users and groups;
//! - early revocations, expiry schedules delivered as Scheduler would (read back from moto and
//!   retried on failure; 2% never delivered, left to the sweep), a sweep every minute and a
//!   full sync every 15 (simulated), as the template schedules them; within a tick the new
//!   grants, the early revocations (some of grants expiring that very tick), the expiries, the
//!   sweep and the sync all run at once;
//! - JumpCloud faults throughout (5% 5xx, 2% 429), a 2-minute outage (every call 503) and
//!   latency spikes;
//! - DynamoDB throttling throughout (2% of requests answered `ProvisionedThroughputExceeded` by a
//!   proxy in front of moto, which also applies each request atomically, as DynamoDB does) and a
//!   2-minute throttling storm (30%: some operations fail once the SDK's retries are spent).
//!
//! At the end the faults stop, the clock runs past every expiry, and it prints: invariant
//! violations (memberships without a grant, standing memberships touched, grants left open),
//! the audit trail's verification (lost or unchained records), and the revocation lag (how long
//! a membership outlived its grant, p50 / p99 / max, simulated time). Exit 1 on any violation.
//!
//! Usage: soak [--grants N] [--concurrency C] [--seed S]   (JIT_TEST_AWS_ENDPOINT: moto's server)

use anyhow::bail;
use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use chrono::{DateTime, Duration, Utc};
use futures::{stream, StreamExt};
use integration_tests::{event, functions::Functions, lambda_event, Stack, ThrottlingProxy};
use jit_local_api::Invoker;
use jit_schedule_runner::{deliver, DueSchedule, LambdaInvoker};
use jit_shared::{
    clock::{Clock, ManualClock},
    domain::{
        audit::{verify, AuditScope},
        model::{AuditAction, GrantFilter, GrantStatus},
    },
    handlers::sync::SyncHandler,
};
use jumpcloud_sim::{Faults, Group, Org, Simulator, User};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

const KEY: &str = "corp-admin-key-soak";
const USERS: usize = 200;
const GROUPS: usize = 20;
const TICK_SECS: i64 = 10;
/// DynamoDB requests throttled per million: throughout, and in the storm.
const THROTTLE_BACKGROUND: u32 = 20_000;
const THROTTLE_STORM: u32 = 300_000;
const POLICY: &str = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n    max_duration: 4h\n    approval: {approvers: [manager], required: 1, timeout: 1h, auto_approve_up_to: 30m}\n";

/// Soak: grants on the local stack under JumpCloud faults and an outage, then JumpCloud against
/// the record.
#[derive(clap::Parser)]
struct Args {
    /// Grants.
    #[arg(long, default_value_t = 10_000, value_parser = integration_tests::bench::at_least(1usize))]
    grants: usize,
    /// Grants at once.
    #[arg(long, default_value_t = 16, value_parser = integration_tests::bench::at_least(1usize))]
    concurrency: usize,
    /// The run's seed.
    #[arg(long, default_value_t = 20261130)]
    seed: u64,
}

/// The functions in this process, as the schedule runner invokes them.
struct InProcess(jit_local_api::Handlers);

#[async_trait]
impl LambdaInvoker for InProcess {
    async fn invoke(&self, function: &str, payload: &str) -> Result<jit_schedule_runner::Invocation, String> {
        let event: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
        let answer = self.0.invoke(function, event).await;
        Ok(jit_schedule_runner::Invocation {
            status: 200,
            function_error: answer.as_ref().err().map(|_| "Unhandled".to_owned()),
            body_excerpt: answer.err().map(|e| e.to_string()).unwrap_or_default(),
        })
    }
}

/// An HTTP API event: `who` an admin (IAM, `None`) or a person (JWT, their email).
fn http(method: &str, path: &str, body: Option<Value>, who: Option<&str>) -> Value {
    let mut e = event("grant-create.json");
    e["rawPath"] = path.into();
    e["requestContext"]["http"]["method"] = method.into();
    e["requestContext"]["http"]["path"] = path.into();
    e["headers"].as_object_mut().expect("headers").remove("idempotency-key");
    e["body"] = body.map_or(Value::Null, |b| b.to_string().into());
    if let Some(email) = who {
        e["requestContext"]["authorizer"] = json!({ "jwt": { "claims": {
            "iss": "https://sso.example.com", "sub": email, "email": email, "email_verified": "true" } } });
    }
    e
}

/// What the soak knows of one grant.
#[derive(Debug, Clone)]
struct Tracked {
    id: String,
    approver: Option<String>,
    /// Its expiry schedule is never delivered: only the sweep can end it.
    schedule_lost: bool,
    revoke_at: Option<DateTime<Utc>>,
    /// When it expires, once active; `None` also once its expiry was delivered.
    expires_at: Option<DateTime<Utc>>,
}

struct Soak {
    functions: Functions,
    sync: SyncHandler,
    clock: Arc<ManualClock>,
    scheduler: aws_sdk_scheduler::Client,
    invoker: InProcess,
    emails: Vec<String>,
    managers: Vec<String>,
    groups: Vec<String>,
}

impl Soak {
    async fn call_grant(&self, e: Value) -> (u16, Value) {
        let answer = self
            .functions
            .grant
            .handle(lambda_event(e))
            .await
            .unwrap_or_else(|d| json!({"statusCode": 500, "body": d.error_message}));
        let status = answer["statusCode"].as_u64().unwrap_or(500) as u16;
        let body = answer["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        (status, body)
    }

    /// One new grant or request: `None` when refused (a fault, a policy bound).
    async fn create(&self, seed: u64) -> Option<Tracked> {
        let mut rng = StdRng::seed_from_u64(seed);
        let user = rng.random_range(0..USERS);
        let group = &self.groups[rng.random_range(0..GROUPS)];
        let email = &self.emails[user];
        let (e, approver) = if rng.random_bool(0.5) {
            let minutes = rng.random_range(5..=120);
            let body = json!({"user": email, "group": group, "duration": format!("{minutes}m"), "reason": "soak: admin grant"});
            (http("POST", "/grants", Some(body), None), None)
        } else {
            let minutes = *[10, 20, 30, 45, 60, 90].get(rng.random_range(0..6)).expect("in range");
            let body = json!({"group": group, "duration": format!("{minutes}m"), "reason": "soak: a request"});
            (http("POST", "/grants", Some(body), Some(email)), Some(self.managers[user].clone()))
        };
        let (status, grant) = self.call_grant(e).await;
        if !(200..300).contains(&status) {
            return None;
        }
        let pending = grant["status"] == "pending_approval";
        Some(Tracked {
            id: grant["id"].as_str()?.to_owned(),
            approver: approver.filter(|_| pending),
            schedule_lost: rng.random_bool(0.02),
            revoke_at: rng.random_bool(0.05).then(|| self.clock.now() + Duration::minutes(rng.random_range(1..60))),
            expires_at: expiry(&grant),
        })
    }

    /// The manager approves (85%), denies (10%) or lets the request lapse; the new expiry if active.
    async fn decide(&self, tracked: &Tracked, seed: u64) -> Option<DateTime<Utc>> {
        let approver = tracked.approver.as_ref()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let roll: f64 = rng.random();
        let path = if roll < 0.85 {
            "approve"
        } else if roll < 0.95 {
            "deny"
        } else {
            return None;
        };
        let body = json!({"comment": "soak decision"});
        let (_, grant) =
            self.call_grant(http("POST", &format!("/grants/{}/{path}", tracked.id), Some(body), Some(approver))).await;
        expiry(&grant)
    }

    async fn revoke(&self, id: &str) {
        let _ = self.functions.revoke.handle(lambda_event(http("DELETE", &format!("/grants/{id}"), None, None))).await;
    }

    /// Delivers the grant's expiry schedule if it is due: read back from moto, as Scheduler keeps
    /// it, `attempt` counting from 1: whether there is nothing more to deliver, `None` when it is
    /// not due (an extension moved it).
    async fn deliver_expiry(&self, id: &str, attempt: u32) -> Option<bool> {
        let group = &self.functions.schedule_group;
        let name = format!("jit-expire-{id}");
        let Ok(schedule) = self.scheduler.get_schedule().group_name(group).name(&name).send().await else {
            return Some(true); // delivered and deleted already, or never created
        };
        let now = self.clock.now();
        // Not due (an extension moved it): later.
        let due = DueSchedule::from_output(group, &name, &schedule, now)?;
        Some(deliver(&self.scheduler, &due, "revoke", &self.invoker, attempt, now).await.succeeded())
    }

    async fn sweep(&self) {
        let _ = self.functions.revoke.handle(lambda_event(event("revoke-sweep.json"))).await;
    }

    async fn sync(&self) {
        let _ = self.sync.handle(lambda_event(integration_tests::http_event("POST", "/sync", Some("{}")))).await;
    }
}

/// An active grant's expiry, from an answer.
fn expiry(grant: &Value) -> Option<DateTime<Utc>> {
    (grant["status"] == "active").then(|| grant["expires_at"].as_str()?.parse().ok()).flatten()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed);

    // The directory: USERS people (each with a manager), GROUPS groups, some standing members.
    let emails: Vec<String> = (0..USERS).map(|i| format!("user{i:03}@corp.example")).collect();
    // A manager by the `manager` attribute (MANAGER_ATTRIBUTE), as the sync reads it.
    let manager_of = |i: usize| if i < 10 { i + 10 } else { i % 10 };
    let mut sim_org = Org::new(KEY);
    let mut ids = Vec::new();
    for (i, email) in emails.iter().enumerate() {
        let mut user = User::new(email.split('@').next().unwrap(), email);
        user.set_attribute("manager", &emails[manager_of(i)]);
        ids.push(sim_org.add_user(user));
    }
    let groups: Vec<String> = (0..GROUPS).map(|g| format!("prod-app-{g:02}")).collect();
    let group_ids: Vec<String> = groups.iter().map(|g| sim_org.add_group(Group::new(g))).collect();
    let mut standing = BTreeSet::new();
    for _ in 0..(USERS * GROUPS / 20) {
        let (g, u) = (rng.random_range(0..GROUPS), rng.random_range(0..USERS));
        sim_org.add_member(&group_ids[g], &ids[u]);
        standing.insert((group_ids[g].clone(), ids[u].clone()));
    }
    let sim = Simulator::start(vec![sim_org]).await?;
    // Every AWS request through the proxy: DynamoDB's throttled at a rate, each applied atomically.
    let proxy = ThrottlingProxy::start(0);
    // Retries wait in real time while the simulated clock stands still: the SDK's first backoff
    // (1 s) and JumpCloud's retry budget (30 s) are scaled down so that a failure is retried, or
    // given up, within the tick, as it would be within seconds of a real clock.
    let sdk = integration_tests::sdk_config_for(&proxy.url)
        .await
        .to_builder()
        .retry_config(RetryConfig::standard().with_initial_backoff(std::time::Duration::from_millis(50)))
        .build();
    let stack = Stack::with_sdk(sdk).await;
    stack.integration("corp", KEY).await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let functions = Functions::new(
        &stack,
        &sim.url(),
        &[("REQUESTABLE_GROUPS", "prod-*"), ("JUMPCLOUD_RETRY_BUDGET", "2s")],
        Some(clock.clone()),
    )
    .await;
    // The sync on the simulated clock too: the membership oracle compares its finish with grant times.
    let sync = SyncHandler {
        lifecycle: Some(functions.revoke.lifecycle.clone()),
        clock: clock.clone(),
        ..SyncHandler::from_config(&stack.sdk, &functions.config)?
    };
    let soak = Soak {
        invoker: InProcess(functions.handlers()),
        scheduler: aws_sdk_scheduler::Client::new(&stack.sdk),
        sync,
        functions,
        clock: clock.clone(),
        managers: (0..USERS).map(|i| emails[manager_of(i)].clone()).collect(),
        emails,
        groups,
    };
    soak.sync().await;
    soak.functions.apply_policy(POLICY).await;
    let start = clock.now();
    let background = Faults {
        rate_5xx: 0.05,
        rate_429: 0.02,
        retry_after_secs: Some(0),
        seed: Some(args.seed),
        ..Faults::default()
    };
    sim.handle().set_faults(background.clone());

    proxy.set_rate(THROTTLE_BACKGROUND);

    // The run: grants arrive over the first hour of simulated time; the rest is expiry.
    let ticks_per_minute = (60 / TICK_SECS) as usize;
    let creating_ticks = 60 * ticks_per_minute;
    let per_tick = args.grants.div_ceil(creating_ticks);
    let window = |at: usize| (at, at + 2 * ticks_per_minute); // two minutes
    let outage = window(creating_ticks / 3);
    let storm = window(creating_ticks * 2 / 3);
    // Past every expiry: the last grant's longest duration (4 h) and its approval (up to 1 h).
    let give_up = start + Duration::minutes(60 + 5 * 60 + 30);
    let mut tracked: Vec<Tracked> = Vec::new();
    let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
    let mut created = 0usize;
    let mut tick = 0usize;
    eprintln!("soak: {} grants, concurrency {}, seed {}", args.grants, args.concurrency, args.seed);
    loop {
        let now = clock.now();
        let in_window = |(from, to): (usize, usize)| (from..to).contains(&tick);
        let faults = match tick {
            _ if in_window(outage) => Faults { rate_5xx: 1.0, rate_429: 0.0, ..background.clone() },
            t if t % 17 == 5 => Faults { latency_ms: 300, ..background.clone() },
            _ => background.clone(),
        };
        sim.handle().set_faults(faults);
        proxy.set_rate(if in_window(storm) { THROTTLE_STORM } else { THROTTLE_BACKGROUND });

        // New grants and their decisions.
        let n = per_tick.min(args.grants - created);
        let seeds: Vec<(u64, u64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
        created += n;
        let soak = &soak;
        let creating = stream::iter(seeds)
            .map(|(s, decision)| async move {
                let mut t = soak.create(s).await?;
                if let Some(at) = soak.decide(&t, decision).await {
                    t.expires_at = Some(at);
                }
                Some(t)
            })
            .buffer_unordered(args.concurrency)
            .filter_map(|t| async { t })
            .collect::<Vec<Tracked>>();
        // Expiries due now, some of them revoked early in the same tick (a race on purpose).
        let due: Vec<(String, u32)> = tracked
            .iter()
            .filter(|t| !t.schedule_lost && t.expires_at.is_some_and(|at| at <= now))
            .map(|t| (t.id.clone(), attempts.get(&t.id).copied().unwrap_or(0) + 1))
            .collect();
        let mut revokes: Vec<String> =
            tracked.iter().filter(|t| t.revoke_at.is_some_and(|at| at <= now)).map(|t| t.id.clone()).collect();
        revokes.extend(due.iter().filter(|(id, attempt)| *attempt == 1 && id.ends_with('7')).map(|(id, _)| id.clone()));
        let revoking = stream::iter(&revokes).for_each_concurrent(args.concurrency, |id| soak.revoke(id));
        let expiring = stream::iter(due)
            .map(|(id, attempt)| async move {
                let done = soak.deliver_expiry(&id, attempt).await;
                (id, attempt, done)
            })
            .buffer_unordered(args.concurrency)
            .collect::<Vec<_>>();
        // The template's sweep runs every minute, the full sync every 15.
        let sweeping = async {
            if tick.is_multiple_of(ticks_per_minute) {
                soak.sweep().await;
            }
        };
        let syncing = async {
            if tick % (15 * ticks_per_minute) == 15 * ticks_per_minute - 1 {
                soak.sync().await;
            }
        };
        let (new, (), delivered, (), ()) = tokio::join!(creating, revoking, expiring, sweeping, syncing);
        let mut undelivered = BTreeSet::new();
        for (id, attempt, done) in delivered {
            match done {
                Some(true) => {
                    attempts.remove(&id);
                }
                Some(false) => {
                    attempts.insert(id.clone(), attempt);
                    undelivered.insert(id);
                }
                None => {
                    undelivered.insert(id);
                }
            }
        }
        for t in tracked.iter_mut() {
            if t.revoke_at.is_some_and(|at| at <= now) {
                t.revoke_at = None;
            }
            if !t.schedule_lost && t.expires_at.is_some_and(|at| at <= now) && !undelivered.contains(&t.id) {
                t.expires_at = None;
            }
        }
        tracked.extend(new);
        tick += 1;
        if tick % (20 * ticks_per_minute) == 1 || (created >= args.grants && tick.is_multiple_of(ticks_per_minute)) {
            let listed = soak
                .functions
                .grant
                .lifecycle
                .store
                .list(&GrantFilter { status: Some(GrantStatus::Active), ..GrantFilter::default() }, 5, None)
                .await;
            // The soak's own look goes through the throttling too: a refused one waits for the next.
            let open = match listed {
                Ok(open) => open,
                Err(e) => {
                    eprintln!(
                        "  +{} min simulated: could not list the active grants ({}...): next minute",
                        (now - start).num_minutes(),
                        e.to_string().chars().take(100).collect::<String>()
                    );
                    clock.advance(Duration::seconds(TICK_SECS));
                    continue;
                }
            };
            if tick % (20 * ticks_per_minute) == 1 {
                let (seen, throttled) = proxy.counts();
                eprintln!(
                    "  +{} min simulated: {} created, {:.0} s wall, DynamoDB {throttled} of {seen} requests throttled, {} active now",
                    (now - start).num_minutes(),
                    tracked.len(),
                    started.elapsed().as_secs_f64(),
                    if open.next.is_some() { "5+".to_owned() } else { open.grants.len().to_string() },
                );
            }
            if created >= args.grants && open.grants.is_empty() && tick > creating_ticks + 10 {
                break;
            }
        }
        if now > give_up {
            eprintln!("  stopping: simulated time is well past every expiry");
            break;
        }
        clock.advance(Duration::seconds(TICK_SECS));
    }

    // The reckoning, without faults: a last sweep and sync, then JumpCloud against the record.
    sim.handle().set_faults(Faults::default());
    let (dynamodb_requests, throttled) = proxy.counts();
    proxy.set_rate(0);
    soak.sweep().await;
    soak.sync().await;
    let store = &soak.functions.grant.lifecycle.store;
    let mut grants = Vec::new();
    let mut next = None;
    loop {
        let page = store.list(&GrantFilter::default(), 100, next.as_deref()).await?;
        grants.extend(page.grants);
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    let org = sim.handle().org(0);
    let mut violations = Vec::new();
    let mut standing_touched = 0;
    for (g, u) in &standing {
        if !org.is_member(g, u).unwrap_or(false) {
            standing_touched += 1;
            violations.push(format!("standing membership {u} in {g} removed"));
        }
    }
    for (gi, g) in group_ids.iter().enumerate() {
        for u in org.members(g).unwrap_or_default() {
            if !standing.contains(&(g.clone(), u.clone())) {
                violations.push(format!("{u} is still in {} without a grant", soak.groups[gi]));
            }
        }
    }
    let open: Vec<_> = grants
        .iter()
        .filter(|g| matches!(g.status, GrantStatus::Active | GrantStatus::Pending | GrantStatus::PendingApproval))
        .collect();
    for g in &open {
        violations.push(format!("grant {} still {:?} at the end", g.id, g.status));
    }
    // How long each membership outlived its grant: its removal against its expiry (simulated).
    // Expired grants, and grants revoked at or after their expiry (the race on purpose).
    let mut lagging = Vec::new();
    for g in grants.iter().filter(|g| matches!(g.status, GrantStatus::Expired | GrantStatus::Revoked)) {
        let trail = store.audit_for(&g.id).await?;
        let removed = trail
            .iter()
            .find(|r| matches!(r.action, AuditAction::MembershipRemoved | AuditAction::MembershipKept))
            .map(|r| r.at);
        if let (Some(expires), Some(removed)) = (g.expires_at, removed) {
            if g.status == GrantStatus::Expired || removed >= expires {
                lagging.push(((removed - expires).num_seconds().max(0), g.id.clone(), expires));
            }
        }
    }
    lagging.sort_unstable();
    let lags: Vec<i64> = lagging.iter().map(|(lag, ..)| *lag).collect();
    let verification = verify(store.as_ref(), &AuditScope::All, clock.now(), &mut |_| {}).await?;
    let broken = verification.chain_breaks.len() + verification.seal_breaks.len();
    if broken > 0 || verification.unchained > 0 {
        violations.push(format!("audit: {broken} breaks, {} unchained records", verification.unchained));
    }
    let by_status = grants.iter().fold(BTreeMap::<String, usize>::new(), |mut m, g| {
        *m.entry(format!("{:?}", g.status)).or_default() += 1;
        m
    });
    let requests = sim.handle().request_counts();
    println!(
        "soak: {} grants asked for, {} recorded, in {:.0} s wall, {} min simulated (seed {})",
        args.grants,
        grants.len(),
        started.elapsed().as_secs_f64(),
        (clock.now() - start).num_minutes(),
        args.seed
    );
    println!("  outcomes: {by_status:?}");
    println!(
        "  JumpCloud requests: {} (faults: 5% 5xx, 2% 429, a 2-minute outage, latency spikes)",
        requests.values().sum::<u64>()
    );
    println!(
        "  DynamoDB requests: {dynamodb_requests}, {throttled} throttled ({:.1}%; 2% throughout, 30% for 2 minutes)",
        throttled as f64 * 100.0 / dynamodb_requests.max(1) as f64
    );
    println!(
        "  invariant violations: {} (memberships without a grant, standing touched, grants left open)",
        violations.len()
    );
    println!("  standing memberships touched: {standing_touched} of {}", standing.len());
    println!(
        "  audit: {} records of {} grants verified, {} breaks, {} unchained",
        verification.records, verification.grants, broken, verification.unchained
    );
    let p99 = percentile(&lags, 0.99);
    println!(
        "  revocation lag of {} expired grants (simulated s): p50 {} / p99 {p99} / max {} (target p99 under 60 s: {}; ticks are {TICK_SECS} s)",
        lags.len(),
        percentile(&lags, 0.5),
        lags.last().copied().unwrap_or(0),
        if p99 < 60 { "met" } else { "NOT met" }
    );
    let during = |at: DateTime<Utc>, (from, to): (usize, usize)| {
        let minutes = |tick: usize| start + Duration::seconds(tick as i64 * TICK_SECS);
        at >= minutes(from) - Duration::seconds(TICK_SECS) && at < minutes(to)
    };
    let slowest: Vec<String> = lagging
        .iter()
        .rev()
        .take(5)
        .map(|(lag, id, expires)| {
            let cause = if during(*expires, outage) {
                " (JumpCloud down)"
            } else if during(*expires, storm) {
                " (throttling storm)"
            } else {
                ""
            };
            format!("{} {lag} s at +{} min{cause}", &id[..8], (*expires - start).num_minutes())
        })
        .collect();
    println!("  slowest revocations: {}", slowest.join(", "));
    for v in violations.iter().take(20) {
        println!("  VIOLATION: {v}");
    }
    if !violations.is_empty() {
        bail!("{} invariant violations", violations.len());
    }
    Ok(())
}
