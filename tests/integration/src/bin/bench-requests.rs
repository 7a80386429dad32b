//! Requests and approvals benchmark (not a test): the real `grant` handler in this process, called
//! by people (JWT authorizer claims, no admin), against moto's server behind the counting relay
//! and the JumpCloud simulator (in this process, 0 ms latency). The applied policy is read through
//! the real `PolicyCache` over the real `DynamoPolicyStore` (applied with `PolicyStore::apply`);
//! the synced directory is the real `DynamoStore`, filled by a real sync of the simulator's
//! organization (`POST /sync` to the `sync` handler). Prints
//! 1. the calls each operation makes — JumpCloud requests per endpoint, AWS calls per service and
//!    operation — against the minimum one can argue for, and why: a request that needs approval,
//!    an approval short of the count, the last approval (promotion and activation), an
//!    auto-approved request; the first request of a container and one whose policy cache expired;
//! 2. handler time (p50, p95, mean, max) over `--requests` rounds of the four operations, with the
//!    calls per operation averaged over them and moto's share of the time.
//!
//! `cargo run --release -p integration-tests --bin bench-requests -- [--requests N] [--batch N]`
//!
//! `--batch`: rounds per table (a fresh table, organization, sync and policy per batch: moto's
//! TransactWriteItems copies the whole table, so it slows down as the table grows; DynamoDB's
//! does not). Setup (sync, policy apply, tables) goes straight to moto and is not counted.
//!
//! The policy is the shape of `jit_shared::testing::lifecycle::REQUEST_POLICY` (that module is
//! behind the `testing` feature, which only this crate's tests enable: enabling it for a binary
//! would compile the doubles into the functions built with it).

use anyhow::{ensure, Context};
use chrono::Utc;
use integration_tests::{
    aws_endpoint,
    bench::{at_least, cell, function_settings, ms, percentile, Cost, CountingProxy, Meter, Minimum, GRANT_MIN},
    event, http_event, http_response, lambda_event, sdk_config_for, unique, Stack,
};
use jit_shared::{
    adapters::{dynamodb::DynamoPolicyStore, policy_cache::PolicyCache, setup},
    clock::ManualClock,
    domain::policy::parse_policy,
    handlers::{grant::GrantHandler, sync::SyncHandler},
    ports::{PolicyChange, PolicyStore},
    wiring::{Function, Lifecycle},
};
use jumpcloud_sim::{Group, Org, RunningSimulator, Simulator, User};
use serde_json::{json, Value};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

const KEY: &str = "bench-requests-key";
const GROUP: &str = "prod-db-admins";
const MANAGER: &str = "lead@example.com";
const OWNERS: [&str; 3] = ["owner0@example.com", "owner1@example.com", "owner2@example.com"];
const REASON: &str = "INC-4711 restore the replica";

/// `prod-db-*` for engineering, up to 2h with a ticket; two approvals among the grantee's manager
/// and db-owners; up to 30m auto-approved. Nothing else may be requested.
const POLICY: &str = r#"
version: 1
defaults:
  max_duration: 4h
  approval: {approvers: [manager], required: 1, timeout: 24h}
rules:
  - groups: ["prod-db-*"]
    eligible: {groups: [engineering]}
    max_duration: 2h
    approval:
      approvers: [manager, {group: db-owners}]
      required: 2
      auto_approve_up_to: 30m
      timeout: 4h
    ticket: "INC-[0-9]+"
    break_glass: true
  - groups: ["*"]
    eligible: nobody
"#;

/// Requests and approvals benchmark: the real `grant` handler called by people, on moto and the simulator.
#[derive(clap::Parser)]
struct Args {
    /// Requests.
    #[arg(long, default_value_t = 200, value_parser = at_least(1usize))]
    requests: usize,
    /// Requests a table.
    #[arg(long, default_value_t = 25, value_parser = at_least(1usize))]
    batch: usize,
}

// ---------------------------------------------------------------------------------------------
// The local stack: an organization synced, a policy applied, the grant handler.

/// One slice of the local stack. The organization: `lead` (everyone's manager), three db-owners,
/// and `devs` engineers who may request `prod-db-admins`.
struct Fixture {
    stack: Stack,
    sim: RunningSimulator,
    grant: GrantHandler,
    /// The handler's clock, and its policy cache's.
    clock: Arc<ManualClock>,
    devs: Vec<String>,
}

fn dev(i: usize) -> String {
    format!("dev{i}@example.com")
}

async fn fixture(proxy: &CountingProxy, devs: usize) -> anyhow::Result<Fixture> {
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    let lead = org.add_user(User::new("lead", MANAGER));
    let owners: Vec<String> =
        OWNERS.iter().enumerate().map(|(i, email)| org.add_user(User::new(format!("owner{i}"), *email))).collect();
    let mut engineers = Vec::with_capacity(devs);
    for i in 0..devs {
        let mut user = User::new(format!("dev{i}"), dev(i));
        user.manager = Some(lead.as_str().into());
        engineers.push(org.add_user(user));
    }
    org.add_group(Group::new(GROUP));
    let engineering = org.add_group(Group::new("engineering"));
    let db_owners = org.add_group(Group::new("db-owners"));
    for id in &engineers {
        org.add_member(&engineering, id);
    }
    for id in &owners {
        org.add_member(&db_owners, id);
    }
    let sim = Simulator::start(vec![org]).await?;
    stack.integration("corp", KEY).await;
    let (schedule_group, bus) = (unique("sg"), unique("bus"));
    setup::ensure_schedule_group(&aws_sdk_scheduler::Client::new(&stack.sdk), &schedule_group).await?;
    setup::ensure_event_bus(&aws_sdk_eventbridge::Client::new(&stack.sdk), &bus).await?;
    let extra = function_settings(&schedule_group, &bus, true);
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = stack.config(&sim.url(), &extra);

    // The synced directory: a real sync of the simulator's organization (straight to moto).
    let sync = SyncHandler::from_config(&stack.sdk, &config)?;
    let response = sync
        .handle(lambda_event(http_event("POST", "/sync", Some("{}"))))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.error_type, e.error_message))?;
    let (status, body, _) = http_response(&response);
    ensure!(status == 200, "POST /sync: {status} {body}");

    // The policy, applied through the real store (straight to moto).
    let policy = parse_policy(POLICY).map_err(|e| anyhow::anyhow!("the benchmark's policy: {e}"))?;
    let change = PolicyChange {
        document: POLICY.to_owned(),
        policy: Arc::new(policy),
        previous: None,
        by: "bench".into(),
        at: Utc::now(),
    };
    DynamoPolicyStore::new(stack.dynamodb.clone(), &stack.table).apply(&change).await?;

    // The grant function as a new container builds it, through the relay; its clock (and its
    // policy cache's, the real `PolicyCache` over the real `DynamoPolicyStore`) is the benchmark's.
    let sdk = sdk_config_for(&proxy.url).await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let built = Lifecycle::from_config(&sdk, &config, Function::Grant)?;
    let policies = Arc::new(PolicyCache::with_default_ttl(built.policy_store.clone(), clock.clone()));
    let lifecycle = Lifecycle { clock: clock.clone(), policies, ..built };
    let grant = GrantHandler { lifecycle: Arc::new(lifecycle) };
    Ok(Fixture { stack, sim, grant, clock, devs: (0..devs).map(dev).collect() })
}

impl Fixture {
    fn meter<'a>(&self, proxy: &'a CountingProxy) -> Meter<'a> {
        Meter { proxy, sims: vec![self.sim.handle()] }
    }

    /// Deletes the table: a smaller moto heap for the batches after.
    async fn drop_table(&self) -> anyhow::Result<()> {
        self.stack.dynamodb.delete_table().table_name(&self.stack.table).send().await?;
        Ok(())
    }

    /// An HTTP API 2.0 request by the person `email` (JWT authorizer), answered as a JSON body.
    async fn call(&self, email: &str, method: &str, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let mut e = event("grant-approve.json");
        e["routeKey"] = format!("{method} {path}").into();
        e["rawPath"] = path.into();
        e["requestContext"]["http"]["method"] = method.into();
        e["requestContext"]["http"]["path"] = path.into();
        e["requestContext"]["routeKey"] = format!("{method} {path}").into();
        e["requestContext"]["authorizer"]["jwt"]["claims"]["email"] = email.into();
        e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = format!("sub-{email}").into();
        e["pathParameters"] = Value::Null;
        e["body"] = body.to_string().into();
        let response = self
            .grant
            .handle(lambda_event(e))
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", e.error_type, e.error_message))?;
        let (status, body, _) = http_response(&response);
        Ok((status, body))
    }

    /// `POST /grants` for oneself: `want` 202 (awaiting approval) or 201 (auto-approved).
    async fn request(&self, email: &str, duration: &str, want: u16) -> anyhow::Result<String> {
        let body = json!({"group": GROUP, "duration": duration, "reason": REASON});
        let (status, grant) = self.call(email, "POST", "/grants", body).await?;
        ensure!(status == want, "POST /grants by {email}: {status} {grant}");
        let expected = if want == 202 { "pending_approval" } else { "active" };
        ensure!(grant["status"] == expected, "POST /grants by {email}: {grant}");
        grant["id"].as_str().map(str::to_owned).with_context(|| format!("no id in {grant}"))
    }

    /// `POST /grants/{id}/approve` by `email`; the request must then be `status`.
    async fn approve(&self, email: &str, id: &str, status: &str) -> anyhow::Result<()> {
        let body = json!({"comment": "ok for the incident"});
        let (code, grant) = self.call(email, "POST", &format!("/grants/{id}/approve"), body).await?;
        ensure!(code == 200 && grant["status"] == status, "approve {id} by {email}: {code} {grant}");
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: calls per operation.

const REQUEST_MIN: Minimum = Minimum {
    jumpcloud: 2,
    dynamodb: 7,
    scheduler: 1,
    events: 1,
    why: "the caller: 1 Query (the JWT's email on the synced directory's email index; the item holds the \
          user's id and manager). JumpCloud: the user and the group live (suspended? dynamic?) before anything is \
          written, as for an admin's grant = 2. Policy: 1 GetItem per container per 30 s, amortized 0. \
          Eligibility: the user's groups (1 Query, ids) and the rule's group by name (1 Query: memberships carry \
          no group name) = 2. Approvers: the manager's id is on the caller's item already read (0); db-owners by \
          name (1 Query) and its members (1 Query); the manager and members' emails and states in 1 BatchGetItem \
          = 3. The request, its due time and audit in 1 transaction. 1 CreateSchedule (its approval timeout), 1 \
          PutEvents (Approval Requested). DynamoDB 1 + 2 + 3 + 1 = 7.",
};
const REQUEST_READ_MIN: Minimum = Minimum {
    dynamodb: 8,
    why: "as a request, + the policy's 1 GetItem: the first request of a container, and the first after the \
          cache's 30 s.",
    ..REQUEST_MIN
};
const APPROVE_MIN: Minimum = Minimum {
    jumpcloud: 0,
    dynamodb: 4,
    scheduler: 0,
    events: 0,
    why: "the caller 1 Query; read the request 1 GetItem (who may see it and approve it, its revision); its \
          successor with the approval, conditioned on the revision read, and the audit in 1 transaction, after \
          reading the audit chain's head = 4.",
};
const LAST_APPROVAL_MIN: Minimum = Minimum {
    jumpcloud: 1,
    dynamodb: 7,
    scheduler: 1,
    events: 1,
    why: "the caller 1 Query, the request 1 GetItem; then the admin grant's 3 writes: lock the lease, promote \
          (the request's successor conditioned on the revision, joining the lease, audit) in 1 transaction, \
          activate in 1 transaction, each after reading the audit chain's head = 7. JumpCloud: add 1 (the ids are on the request). Scheduler 1: the \
          request's schedule can become the grant's expiry (UpdateSchedule) rather than DeleteSchedule + \
          CreateSchedule. PutEvents 1 if Request Approved and Grant Created went in one call (10 entries per \
          call; published apart, Request Approved goes out before JumpCloud is asked).",
};
const AUTO_MIN: Minimum = Minimum {
    jumpcloud: GRANT_MIN.jumpcloud,
    dynamodb: 1 + 2 + GRANT_MIN.dynamodb,
    why: "the caller 1 Query, eligibility 2 Queries (no approver is resolved), policy amortized 0; then as an \
          admin's grant: JumpCloud user, group, add = 3; lock, pending transaction, chain head, activation \
          transaction = 4; \
          CreateSchedule 1; PutEvents 1.",
    ..GRANT_MIN
};

struct Row {
    operation: &'static str,
    cost: Cost,
    time: Duration,
    min: &'static Minimum,
}

/// Runs `work` metered and timed.
async fn measure<T>(
    meter: &Meter<'_>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Cost, Duration)> {
    let started = Instant::now();
    let (out, cost) = meter.metered(work).await?;
    Ok((out, cost, started.elapsed()))
}

async fn calls_per_operation(proxy: &CountingProxy) -> anyhow::Result<()> {
    let fx = fixture(proxy, 4).await?;
    let meter = fx.meter(proxy);
    let d = &fx.devs;
    // A new container: it discovers the integrations (Secrets Manager) and reads the policy.
    let (_, cold, t_cold) = measure(&meter, fx.request(&d[0], "1h", 202)).await?;
    let (id, warm, t_warm) = measure(&meter, fx.request(&d[1], "1h", 202)).await?;
    fx.clock.advance(chrono::Duration::seconds(31));
    let (_, expired, t_expired) = measure(&meter, fx.request(&d[2], "1h", 202)).await?;
    let (_, first, t_first) = measure(&meter, fx.approve(MANAGER, &id, "pending_approval")).await?;
    let (_, last, t_last) = measure(&meter, fx.approve(OWNERS[0], &id, "active")).await?;
    let (_, auto, t_auto) = measure(&meter, fx.request(&d[3], "30m", 201)).await?;
    fx.drop_table().await?;
    let rows = [
        Row { operation: "request, new container", cost: cold, time: t_cold, min: &REQUEST_READ_MIN },
        Row { operation: "request (needs approval)", cost: warm, time: t_warm, min: &REQUEST_MIN },
        Row { operation: "request, policy cache expired", cost: expired, time: t_expired, min: &REQUEST_READ_MIN },
        Row { operation: "approval 1 of 2", cost: first, time: t_first, min: &APPROVE_MIN },
        Row { operation: "approval 2 of 2 (activation)", cost: last, time: t_last, min: &LAST_APPROVAL_MIN },
        Row { operation: "auto-approved request", cost: auto, time: t_auto, min: &AUTO_MIN },
    ];
    print_calls(&rows);
    Ok(())
}

fn print_calls(rows: &[Row]) {
    println!("## 1. Calls per operation (measured) vs the argued minimum");
    println!();
    println!(
        "| operation | JumpCloud | DynamoDB | Scheduler | EventBridge | Secrets Manager | calls / minimum | ms (this one call) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let c = &r.cost;
        let jumpcloud = c.jumpcloud.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
        let secrets = c.service("SecretsManager");
        let secrets =
            if secrets == 0 { "0".to_owned() } else { format!("{secrets}: {}", c.breakdown("SecretsManager")) };
        let (total, min) = (c.jumpcloud() + c.aws_calls(), r.min.total());
        println!(
            "| {} | {} | {} | {} | {} | {secrets} | {total} / {min} = {:.2} | {:.1} |",
            r.operation,
            cell(c.jumpcloud(), r.min.jumpcloud, &jumpcloud),
            cell(c.service("DynamoDB"), r.min.dynamodb, &c.breakdown("DynamoDB")),
            cell(c.service("Scheduler"), r.min.scheduler, &c.breakdown("Scheduler")),
            cell(c.service("EventBridge"), r.min.events, &c.breakdown("EventBridge")),
            total as f64 / min.max(1) as f64,
            ms(r.time),
        );
    }
    let errors: Vec<String> = rows.iter().map(|r| r.cost.errors()).filter(|e| e != "none").collect();
    println!();
    println!(
        "moto's non-2xx answers: {}. The calls / minimum column leaves Secrets Manager out (read once per \
         container, then cached). The policy cache runs on the benchmark's clock: advanced 31 s before the third \
         request.",
        if errors.is_empty() { "none".to_owned() } else { errors.join("; ") }
    );
    println!();
    println!("Why these minimums:");
    let mut seen: Vec<*const Minimum> = Vec::new();
    for r in rows {
        if !seen.contains(&(r.min as *const Minimum)) {
            seen.push(r.min);
            println!("- {}: {}", r.operation, r.min.why);
        }
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// Part 2: handler time.

/// Latencies of one kind of operation, and what they cost.
struct Sample {
    label: &'static str,
    min: &'static Minimum,
    times: Vec<Duration>,
    cost: Cost,
}

impl Sample {
    fn new(label: &'static str, min: &'static Minimum) -> Self {
        Self { label, min, times: Vec::new(), cost: Cost::default() }
    }
    async fn run<T>(
        &mut self,
        meter: &Meter<'_>,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let (out, cost, time) = measure(meter, work).await?;
        self.times.push(time);
        self.cost.add(&cost);
        Ok(out)
    }
}

/// One round: a request approved by the manager and an owner, and an auto-approved request.
async fn round(
    fx: &Fixture,
    meter: &Meter<'_>,
    samples: &mut [Sample; 4],
    asks: &str,
    auto: &str,
    owner: &str,
) -> anyhow::Result<()> {
    let [request, first, last, auto_approved] = samples;
    let id = request.run(meter, fx.request(asks, "1h", 202)).await?;
    first.run(meter, fx.approve(MANAGER, &id, "pending_approval")).await?;
    last.run(meter, fx.approve(owner, &id, "active")).await?;
    auto_approved.run(meter, fx.request(auto, "30m", 201)).await?;
    Ok(())
}

async fn handler_times(proxy: &CountingProxy, a: &Args) -> anyhow::Result<()> {
    eprintln!("part 2: {} rounds, {} per table ...", a.requests, a.batch);
    let mut samples = [
        Sample::new("request (needs approval)", &REQUEST_MIN),
        Sample::new("approval 1 of 2", &APPROVE_MIN),
        Sample::new("approval 2 of 2 (activation)", &LAST_APPROVAL_MIN),
        Sample::new("auto-approved request", &AUTO_MIN),
    ];
    let mut done = 0;
    while done < a.requests {
        let n = a.batch.min(a.requests - done);
        // Two engineers per round, and two for the round that warms the container (not measured).
        let fx = fixture(proxy, 2 * n + 2).await?;
        let unmetered = fx.meter(proxy);
        let mut warm_up = [
            Sample::new("", &REQUEST_MIN),
            Sample::new("", &APPROVE_MIN),
            Sample::new("", &LAST_APPROVAL_MIN),
            Sample::new("", &AUTO_MIN),
        ];
        round(&fx, &unmetered, &mut warm_up, &fx.devs[2 * n], &fx.devs[2 * n + 1], OWNERS[2]).await?;
        let meter = fx.meter(proxy);
        for i in 0..n {
            round(&fx, &meter, &mut samples, &fx.devs[2 * i], &fx.devs[2 * i + 1], OWNERS[i % 2]).await?;
        }
        fx.drop_table().await?;
        done += n;
        eprintln!("  {done} / {}", a.requests);
    }
    print_times(&samples, a);
    Ok(())
}

fn print_times(samples: &[Sample], a: &Args) {
    println!("## 2. Handler time (in-process handler, simulator latency 0 ms, moto's server, logging off)");
    println!();
    println!(
        "{} rounds (a request, its two approvals, an auto-approved request), {} rounds per table, each table's \
         container warmed by one round first (policy and integrations cached). Calls per operation are the means \
         over all rounds.",
        a.requests, a.batch
    );
    println!();
    println!(
        "| operation | n | p50 ms | p95 ms | mean ms | max ms | DynamoDB / op | AWS calls / op (min) | JumpCloud / op (min) | calls / minimum | moto ms / op |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for s in samples {
        let mut sorted = s.times.clone();
        sorted.sort();
        let n = sorted.len() as f64;
        let mean = ms(sorted.iter().sum::<Duration>()) / n;
        let per = |x: u64| x as f64 / n;
        let dynamodb =
            s.cost.ops("DynamoDB").map(|(op, c)| format!("{op} {:.2}", per(c))).collect::<Vec<_>>().join(", ");
        let (aws, jumpcloud) = (per(s.cost.aws_calls()), per(s.cost.jumpcloud()));
        let aws_min = s.min.dynamodb + s.min.scheduler + s.min.events;
        println!(
            "| {} | {} | {:.2} | {:.2} | {mean:.2} | {:.2} | {dynamodb} | {aws:.2} ({aws_min}) | {jumpcloud:.2} ({}) | {:.2} | {:.2} |",
            s.label,
            sorted.len(),
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 95.0)),
            ms(*sorted.last().expect("samples")),
            s.min.jumpcloud,
            (aws + jumpcloud) / s.min.total() as f64,
            ms(s.cost.moto_time()) / n,
        );
    }
    println!();
    let errors: Vec<String> = samples.iter().map(|s| format!("{}: {}", s.label, s.cost.errors())).collect();
    println!("moto's non-2xx answers: {}", errors.join("; "));
    println!();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let moto = tokio::task::block_in_place(aws_endpoint);
    let proxy = CountingProxy::start(&moto)?;
    println!("# Requests and approvals benchmark");
    println!();
    println!(
        "moto's server {moto} (the grant handler's AWS calls through a counting relay at {}); JumpCloud \
         simulator in this process, latency 0 ms; the real grant handler in this process, called by people \
         (JWT claims); the policy applied with `PolicyStore::apply` and read through `PolicyCache`; the synced \
         directory filled by a real sync.",
        proxy.url
    );
    println!();
    calls_per_operation(&proxy).await?;
    handler_times(&proxy, &a).await?;
    Ok(())
}
