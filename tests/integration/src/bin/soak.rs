//! `soak`: many grants on the local stack under faults, then a reckoning of what JumpCloud holds
//! against what the product recorded (issue 12's soak; a short run is part of the test command).
//!
//! The real `grant`, `revoke` and `sync` handlers (moto's server, the JumpCloud simulator, the real
//! SDK) run in this process on a simulated clock that moves 30 s a tick:
//! - grants by an admin and requests by people (auto-approved up to 30 minutes, else their
//!   manager approves, denies, or lets them lapse), random durations, random users and groups;
//! - early revocations, expiry schedules delivered as Scheduler would (read back from moto and
//!   retried on failure; 2% never delivered, left to the sweep), a sweep every minute and a
//!   full sync every 15 (simulated), as the template schedules them;
//! - JumpCloud faults throughout (5% 5xx, 2% 429), a 2-minute outage (every call 503) and
//!   latency spikes.
//!
//! At the end the faults stop, the clock runs past every expiry, and it prints: invariant
//! violations (memberships without a grant, standing memberships touched, grants left open),
//! the audit trail's verification (lost or unchained records), and the revocation lag (how long
//! a membership outlived its grant, p50 / p99 / max, simulated time). Exit 1 on any violation.
//! Not yet: DynamoDB throttling injected through a proxy (issue 12 point 4 names it).
//!
//! Usage: soak [--grants N] [--concurrency C] [--seed S]   (JIT_TEST_AWS_ENDPOINT: moto's server)

use anyhow::{bail, Context};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::{stream, StreamExt};
use integration_tests::{event, functions::Functions, lambda_event, Stack};
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
const TICK_SECS: i64 = 30;
const POLICY: &str = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n    max_duration: 4h\n    approval: {approvers: [manager], required: 1, timeout: 1h, auto_approve_up_to: 30m}\n";

struct Args {
    grants: usize,
    concurrency: usize,
    seed: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut parsed = Args { grants: 10_000, concurrency: 16, seed: 20261130 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--grants" => parsed.grants = value()?.parse()?,
            "--concurrency" => parsed.concurrency = value()?.parse()?,
            "--seed" => parsed.seed = value()?.parse()?,
            other => bail!("unknown argument {other} (usage: soak [--grants N] [--concurrency C] [--seed S])"),
        }
    }
    Ok(parsed)
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
    /// it. `true` once there is nothing more to deliver.
    async fn deliver_expiry(&self, id: &str, attempts: &mut BTreeMap<String, u32>) -> bool {
        let group = &self.functions.schedule_group;
        let name = format!("jit-expire-{id}");
        let Ok(schedule) = self.scheduler.get_schedule().group_name(group).name(&name).send().await else {
            return true; // delivered and deleted already, or never created
        };
        let now = self.clock.now();
        // Not due (an extension moved it): later.
        let Some(due) = DueSchedule::from_output(group, &name, &schedule, now) else { return false };
        let attempt = attempts.get(id).copied().unwrap_or(0) + 1;
        let delivery = deliver(&self.scheduler, &due, "revoke", &self.invoker, attempt, now).await;
        if delivery.succeeded() {
            attempts.remove(id);
            true
        } else {
            attempts.insert(id.to_owned(), attempt);
            false
        }
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
    let args = args()?;
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
    let stack = Stack::new().await;
    stack.integration("corp", KEY).await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let functions = Functions::new(&stack, &sim.url(), &[("REQUESTABLE_GROUPS", "prod-*")], Some(clock.clone())).await;
    let sync = SyncHandler {
        lifecycle: Some(functions.revoke.lifecycle.clone()),
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

    // The run: grants arrive over the first ~hour of simulated time; the rest is expiry.
    let creating_ticks = 120usize;
    let per_tick = args.grants.div_ceil(creating_ticks);
    let outage = (creating_ticks / 3, creating_ticks / 3 + 4); // 4 ticks: 2 minutes
    let mut tracked: Vec<Tracked> = Vec::new();
    let mut attempts = BTreeMap::new();
    let mut created = 0usize;
    let mut tick = 0usize;
    eprintln!("soak: {} grants, concurrency {}, seed {}", args.grants, args.concurrency, args.seed);
    loop {
        let now = clock.now();
        let faults = match tick {
            t if (outage.0..outage.1).contains(&t) => Faults { rate_5xx: 1.0, rate_429: 0.0, ..background.clone() },
            t if t % 17 == 5 => Faults { latency_ms: 300, ..background.clone() },
            _ => background.clone(),
        };
        sim.handle().set_faults(faults);
        if created < args.grants {
            let n = per_tick.min(args.grants - created);
            let seeds: Vec<u64> = (0..n).map(|_| rng.random()).collect();
            let new: Vec<Tracked> = stream::iter(seeds)
                .map(|s| soak.create(s))
                .buffer_unordered(args.concurrency)
                .filter_map(|t| async { t })
                .collect()
                .await;
            created += n;
            let decisions: Vec<(Tracked, u64)> = new.iter().map(|t| (t.clone(), rng.random())).collect();
            let soak = &soak;
            let mut new = new;
            let decided: BTreeMap<String, DateTime<Utc>> = stream::iter(decisions)
                .map(|(t, s)| async move { soak.decide(&t, s).await.map(|at| (t.id.clone(), at)) })
                .buffer_unordered(args.concurrency)
                .filter_map(|d| async { d })
                .collect()
                .await;
            for t in &mut new {
                if let Some(at) = decided.get(&t.id) {
                    t.expires_at = Some(*at);
                }
            }
            tracked.extend(new);
        }
        // Early revocations, due expiries, the sweep, the sync.
        let due_revokes: Vec<String> =
            tracked.iter().filter(|t| t.revoke_at.is_some_and(|at| at <= now)).map(|t| t.id.clone()).collect();
        stream::iter(&due_revokes).for_each_concurrent(args.concurrency, |id| soak.revoke(id)).await;
        for t in tracked.iter_mut().filter(|t| t.revoke_at.is_some_and(|at| at <= now)) {
            t.revoke_at = None;
        }
        for t in tracked.iter_mut().filter(|t| !t.schedule_lost && t.expires_at.is_some_and(|at| at <= now)) {
            if soak.deliver_expiry(&t.id, &mut attempts).await {
                t.expires_at = None;
            }
        }
        // The template's sweep runs every minute.
        if tick.is_multiple_of(2) {
            soak.sweep().await;
        }
        if tick % 30 == 29 {
            soak.sync().await;
        }
        tick += 1;
        let open = soak
            .functions
            .grant
            .lifecycle
            .store
            .list(&GrantFilter { status: Some(GrantStatus::Active), ..GrantFilter::default() }, 5, None)
            .await?;
        if tick % 20 == 1 {
            let oldest: Vec<String> = open
                .grants
                .iter()
                .map(|g| format!("{} until {:?}", &g.id[..8], g.expires_at.map(|t| (t - now).num_minutes())))
                .collect();
            eprintln!(
                "  tick {tick} (+{} min simulated): {} created, {:.0} s; open e.g. {oldest:?}",
                (now - start).num_minutes(),
                tracked.len(),
                started.elapsed().as_secs_f64()
            );
        }
        if created >= args.grants && open.grants.is_empty() && tick > creating_ticks + 10 {
            break;
        }
        if tick > creating_ticks + 2 * 60 * 4 + 60 {
            eprintln!("  stopping: simulated time is well past every expiry");
            break;
        }
        clock.advance(Duration::seconds(TICK_SECS));
    }

    // The reckoning, without faults: a last sweep and sync, then JumpCloud against the record.
    sim.handle().set_faults(Faults::default());
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
    let mut lags = Vec::new();
    for g in grants.iter().filter(|g| g.status == GrantStatus::Expired) {
        let trail = store.audit_for(&g.id).await?;
        if let (Some(expires), Some(removed)) = (
            g.expires_at,
            trail
                .iter()
                .find(|r| matches!(r.action, AuditAction::MembershipRemoved | AuditAction::MembershipKept))
                .map(|r| r.at),
        ) {
            lags.push((removed - expires).num_seconds().max(0));
        }
    }
    lags.sort_unstable();
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
    for v in violations.iter().take(20) {
        println!("  VIOLATION: {v}");
    }
    if !violations.is_empty() {
        bail!("{} invariant violations", violations.len());
    }
    Ok(())
}
