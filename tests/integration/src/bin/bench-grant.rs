//! Grant lifecycle benchmark (not a test): the real `grant` and `revoke` handlers, in this process,
//! against moto's server and the JumpCloud simulator (in this process, 0 ms latency). Prints
//! 1. the calls each operation makes — JumpCloud requests per endpoint (the simulator's counters),
//!    AWS calls per service and operation (counted by a small HTTP relay between the SDK and moto)
//!    — against the minimum one can argue for while keeping the invariants;
//! 2. handler time (p50, p99, mean, max) and throughput over `--grants` grants and their
//!    revocations, one at a time and then `--concurrency` at a time, with moto's own share
//!    (time the relay waits for moto, and a bare `GetItem` round trip) set apart;
//! 3. the cold start of each function binary (host build) under a fake Lambda Runtime API, and
//!    the binaries' sizes (grant twice: an API request, and the portal's page `GET /`).
//!
//! `cargo run --release -p integration-tests --bin bench-grant -- [--grants N] [--batch N]
//!  [--concurrency N] [--concurrent-grants N] [--baseline N] [--cold-runs N] [--skip-cold-start]
//!  [--cold-start-only] [--bin-dir DIR]`
//!
//! `--cold-start-only`: part 3 alone. `--bin-dir DIR`: cold-start the binaries in DIR (another
//! commit's `target/release`, say) instead of building this one's; a binary missing there is
//! skipped.
//!
//! `--batch`: grants per table. moto copies the whole table in every TransactWriteItems (its
//! rollback state), so its transactions slow down as the table grows (DynamoDB's do not): each
//! batch gets a fresh table.
//!
//! Without `JIT_TEST_AWS_ENDPOINT` it starts moto from `.venv` (`scripts/test.sh` installs it) and
//! stops it at exit. Part 3 first runs `cargo build --release -p sync -p grant -p revoke` (when
//! started by `cargo run`), then spawns each binary `--cold-runs` times, killing each at the end.

use anyhow::{bail, ensure, Context};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{
    aws_endpoint,
    bench::{
        at_least, cell, function_settings, ms, percentile, read_message, Cost, CountingProxy, Meter, Minimum, ACCOUNT,
        GRANT_MIN,
    },
    event, http_event, http_response, lambda_event, sdk_config_for, unique, workspace_root, Stack,
};
use jit_shared::{
    adapters::setup,
    clock::ManualClock,
    config::Config,
    handlers::{grant::GrantHandler, revoke::RevokeHandler},
    wiring::{Function, Lifecycle},
};
use jumpcloud_sim::{Group, Org, RunningSimulator, Simulator, User};
use serde_json::{json, Value};
use std::{
    io::{self, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const KEY: &str = "bench-key";
const GROUP: &str = "prod-bench";

/// Grant lifecycle benchmark: the real `grant` and `revoke` handlers on moto and the simulator.
#[derive(clap::Parser)]
struct Args {
    /// Grants (and their revocations) one at a time.
    #[arg(long, default_value_t = 2_000, value_parser = at_least(1usize))]
    grants: usize,
    /// Grants a table (moto's transactions slow down as a table grows).
    #[arg(long, default_value_t = 25, value_parser = at_least(1usize))]
    batch: usize,
    /// Grant and revoke pairs at once.
    #[arg(long, default_value_t = 8, value_parser = at_least(1usize))]
    concurrency: usize,
    /// Grant and revoke pairs run concurrently (0: none).
    #[arg(long, default_value_t = 400)]
    concurrent_grants: usize,
    /// Bare `GetItem` round trips for moto's own share.
    #[arg(long, default_value_t = 500, value_parser = at_least(1usize))]
    baseline: usize,
    /// Cold starts a function binary.
    #[arg(long, default_value_t = 20, value_parser = at_least(1usize))]
    cold_runs: usize,
    /// Skips part 3 (the cold starts).
    #[arg(long = "skip-cold-start", action = clap::ArgAction::SetFalse)]
    cold_start: bool,
    /// Part 3 alone.
    #[arg(long)]
    cold_start_only: bool,
    /// Cold-starts the binaries in DIR instead of building this commit's.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// The local stack and the handlers.

/// One slice of the local stack: a table, an integration secret, a schedule group and an event bus
/// on moto; a simulated organization of `users` users and one requestable group.
struct Fixture {
    stack: Stack,
    sim: RunningSimulator,
    config: Config,
    /// Through the counting relay: what the handlers use.
    sdk: SdkConfig,
    emails: Vec<String>,
    schedule_group: String,
    bus: String,
}

async fn fixture(proxy: &CountingProxy, users: usize) -> anyhow::Result<Fixture> {
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    let emails: Vec<String> = (0..users).map(|i| format!("user{i}@example.com")).collect();
    for (i, email) in emails.iter().enumerate() {
        org.add_user(User::new(format!("user{i}"), email));
    }
    org.add_group(Group::new(GROUP));
    let sim = Simulator::start(vec![org]).await?;
    stack.integration("bench", KEY).await;
    let (schedule_group, bus) = (unique("sg"), unique("bus"));
    setup::ensure_schedule_group(&aws_sdk_scheduler::Client::new(&stack.sdk), &schedule_group).await?;
    setup::ensure_event_bus(&aws_sdk_eventbridge::Client::new(&stack.sdk), &bus).await?;
    let extra = function_settings(&schedule_group, &bus, true);
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = stack.config(&sim.url(), &extra);
    let sdk = sdk_config_for(&proxy.url).await;
    Ok(Fixture { stack, sim, config, sdk, emails, schedule_group, bus })
}

impl Fixture {
    /// The handlers as a new container builds them (nothing cached); `clock` replaces the wall clock.
    fn handlers(&self, clock: Option<Arc<ManualClock>>) -> anyhow::Result<(GrantHandler, RevokeHandler)> {
        let build = |function| -> anyhow::Result<Arc<Lifecycle>> {
            let built = Lifecycle::from_config(&self.sdk, &self.config, function)?;
            Ok(Arc::new(match &clock {
                Some(clock) => Lifecycle { clock: clock.clone(), ..built },
                None => built,
            }))
        };
        Ok((GrantHandler { lifecycle: build(Function::Grant)? }, RevokeHandler { lifecycle: build(Function::Revoke)? }))
    }

    /// Deletes the table: a smaller moto heap, fewer and shorter garbage collection pauses later.
    async fn drop_table(&self) -> anyhow::Result<()> {
        self.stack.dynamodb.delete_table().table_name(&self.stack.table).send().await?;
        Ok(())
    }

    fn meter<'a>(&'a self, proxy: &'a CountingProxy) -> Meter<'a> {
        Meter { proxy, sims: vec![self.sim.handle()] }
    }
}

fn create_event(email: &str, duration: &str, key: Option<&str>) -> Value {
    let mut e = event("grant-create.json");
    let headers = e["headers"].as_object_mut().expect("headers");
    match key {
        Some(key) => headers.insert("idempotency-key".into(), key.into()),
        None => headers.remove("idempotency-key"),
    };
    e["body"] = json!({"user": email, "group": GROUP, "duration": duration, "reason": "bench"}).to_string().into();
    e
}

fn delete_event(id: &str) -> Value {
    let path = format!("/grants/{id}");
    let mut e = event("grant-revoke-http.json");
    e["rawPath"] = path.clone().into();
    e["requestContext"]["http"]["path"] = path.into();
    e
}

/// `POST /grants`, which must answer `want`; the grant.
async fn create(
    handler: &GrantHandler,
    email: &str,
    duration: &str,
    key: Option<&str>,
    want: u16,
) -> anyhow::Result<Value> {
    let response = handler
        .handle(lambda_event(create_event(email, duration, key)))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.error_type, e.error_message))?;
    let (status, body, _) = http_response(&response);
    ensure!(status == want, "POST /grants for {email}: {status} {body}");
    Ok(body)
}

/// `DELETE /grants/{id}`, which must answer 200; the grant.
async fn delete(handler: &RevokeHandler, id: &str) -> anyhow::Result<Value> {
    let response = handler
        .handle(lambda_event(delete_event(id)))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.error_type, e.error_message))?;
    let (status, body, _) = http_response(&response);
    ensure!(status == 200, "DELETE /grants/{id}: {status} {body}");
    Ok(body)
}

/// A schedule's input (expiry or sweep) delivered to `revoke`.
async fn scheduled(handler: &RevokeHandler, input: Value) -> anyhow::Result<Value> {
    handler.handle(lambda_event(input)).await.map_err(|e| anyhow::anyhow!("{}: {}", e.error_type, e.error_message))
}

fn id(grant: &Value) -> anyhow::Result<String> {
    grant["id"].as_str().map(str::to_owned).with_context(|| format!("no grant id in {grant}"))
}

// ---------------------------------------------------------------------------------------------
// Part 1: calls per operation.

const KEYED_MIN: Minimum = Minimum {
    dynamodb: 5,
    why: "as a grant, +1: claim the key with a conditional put before any work; recording the outcome can ride \
          in the activation transaction.",
    ..GRANT_MIN
};
const REPLAY_MIN: Minimum = Minimum {
    jumpcloud: 0,
    dynamodb: 2,
    scheduler: 0,
    events: 0,
    why: "the claim fails and returns the stored record (ReturnValuesOnConditionCheckFailure), then the grant is \
          read as it is now = 2 (1 if the response were stored with the key, at the price of answering a stale \
          grant).",
};
const REVOKE_MIN: Minimum = Minimum {
    jumpcloud: 1,
    dynamodb: 4,
    scheduler: 1,
    events: 1,
    why: "read the grant (the id alone does not name the lease), lock the lease (returns its holders), end the \
          grant + leave or delete the lease + audit in one transaction, after reading the audit chain's head \
          (the record names the hash of the one before) = 4. JumpCloud remove 1. DeleteSchedule \
          1 (ended before its expiry, the schedule would fire for nothing). PutEvents 1 (Grant Revoked).",
};
const AGAIN_MIN: Minimum = Minimum {
    jumpcloud: 0,
    dynamodb: 1,
    scheduler: 0,
    events: 0,
    why: "read the grant: ended already, answered as it is.",
};
const EXPIRY_MIN: Minimum = Minimum {
    scheduler: 0,
    why: "as a revocation, without DeleteSchedule (a one-time schedule deletes itself after it fired).",
    ..REVOKE_MIN
};
const SWEEP1_MIN: Minimum = Minimum {
    scheduler: 0,
    why: "one query of the due index returns the grant with its lease key; lock; the audit chain's head; end \
          transaction = 4.",
    ..REVOKE_MIN
};
const SWEEP10_MIN: Minimum = Minimum {
    jumpcloud: 10,
    dynamodb: 31,
    scheduler: 0,
    events: 1,
    why: "1 query + 3 per grant (lock, the audit chain's head, end). PutEvents takes 10 entries: 1 call if the sweep batched its events \
          (it publishes each grant as it ends it, which keeps events prompt).",
};

struct Row {
    operation: &'static str,
    cost: Cost,
    min: &'static Minimum,
}

async fn calls_per_operation(proxy: &CountingProxy) -> anyhow::Result<()> {
    let fx = fixture(proxy, 20).await?;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let (grant, revoke) = fx.handlers(Some(clock.clone()))?;
    let meter = fx.meter(proxy);
    let u = &fx.emails;

    // A new container first: the first call also discovers the integrations (Secrets Manager).
    let (g0, cold_grant) = meter.metered(create(&grant, &u[0], "2h", None, 201)).await?;
    let (g1, warm_grant) = meter.metered(create(&grant, &u[1], "2h", None, 201)).await?;
    let (g2, keyed) = meter.metered(create(&grant, &u[2], "2h", Some("bench-key-2"), 201)).await?;
    let (again2, replay) = meter.metered(create(&grant, &u[2], "2h", Some("bench-key-2"), 200)).await?;
    ensure!(again2["id"] == g2["id"], "the replay answered another grant: {again2}");
    let (_, cold_revoke) = meter.metered(delete(&revoke, &id(&g0)?)).await?;
    let (r1, warm_revoke) = meter.metered(delete(&revoke, &id(&g1)?)).await?;
    ensure!(r1["status"] == "revoked", "{r1}");
    let (_, revoke_again) = meter.metered(delete(&revoke, &id(&g1)?)).await?;
    delete(&revoke, &id(&g2)?).await?;

    // Expiry by the grant's schedule, and by the sweep (its schedule never fired).
    let by_schedule = create(&grant, &u[3], "1h", None, 201).await?;
    create(&grant, &u[4], "1h", None, 201).await?;
    clock.advance(chrono::Duration::minutes(61));
    let expire = json!({"action": "expire", "grant_id": id(&by_schedule)?});
    let (ended, expiry) = meter.metered(scheduled(&revoke, expire)).await?;
    ensure!(ended["grant"]["status"] == "expired", "expiry: {ended}");
    let (report, sweep1) = meter.metered(scheduled(&revoke, event("revoke-sweep.json"))).await?;
    ensure!(report["ended"] == 1, "sweep: {report}");
    for email in &u[5..15] {
        create(&grant, email, "1h", None, 201).await?;
    }
    clock.advance(chrono::Duration::minutes(61));
    let (report, sweep10) = meter.metered(scheduled(&revoke, event("revoke-sweep.json"))).await?;
    ensure!(report["ended"] == 10, "sweep: {report}");

    let rows = [
        Row { operation: "POST /grants, new container", cost: cold_grant, min: &GRANT_MIN },
        Row { operation: "POST /grants", cost: warm_grant, min: &GRANT_MIN },
        Row { operation: "POST /grants + Idempotency-Key", cost: keyed, min: &KEYED_MIN },
        Row { operation: "replay (same Idempotency-Key)", cost: replay, min: &REPLAY_MIN },
        Row { operation: "DELETE /grants/{id}, new container", cost: cold_revoke, min: &REVOKE_MIN },
        Row { operation: "DELETE /grants/{id}", cost: warm_revoke, min: &REVOKE_MIN },
        Row { operation: "DELETE again (already revoked)", cost: revoke_again, min: &AGAIN_MIN },
        Row { operation: "expiry `{\"action\":\"expire\"}`", cost: expiry, min: &EXPIRY_MIN },
        Row { operation: "sweep, 1 due grant", cost: sweep1, min: &SWEEP1_MIN },
        Row { operation: "sweep, 10 due grants", cost: sweep10, min: &SWEEP10_MIN },
    ];
    print_calls(&rows);
    Ok(())
}

fn print_calls(rows: &[Row]) {
    println!("## 1. Calls per operation (measured) vs the argued minimum");
    println!();
    println!(
        "| operation | JumpCloud | DynamoDB | Scheduler | EventBridge | Secrets Manager | calls / minimum | moto's non-2xx answers |"
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
            "| {} | {} | {} | {} | {} | {secrets} | {total} / {min} = {:.2} | {} |",
            r.operation,
            cell(c.jumpcloud(), r.min.jumpcloud, &jumpcloud),
            cell(c.service("DynamoDB"), r.min.dynamodb, &c.breakdown("DynamoDB")),
            cell(c.service("Scheduler"), r.min.scheduler, &c.breakdown("Scheduler")),
            cell(c.service("EventBridge"), r.min.events, &c.breakdown("EventBridge")),
            total as f64 / min.max(1) as f64,
            c.errors()
        );
    }
    println!();
    println!(
        "Secrets Manager is read once per container and cached (SECRETS_CACHE_TTL): warm calls 0; a new container"
    );
    println!(
        "lists the tagged secrets once and reads each integration's secret (minimum 1 + integrations: a tag filter on"
    );
    println!(
        "BatchGetSecretValue would match by prefix and read other secrets' values). The calls / minimum column leaves"
    );
    println!("Secrets Manager out. A 400 is a refused condition the code expects (the replay's claim); a 500 is moto failing");
    println!(
        "under concurrent TransactWriteItems on one table (see below): the call was retried and is counted twice."
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

/// Latencies of one kind of invocation, and what they cost.
struct Sample {
    label: String,
    times: Vec<Duration>,
    wall: Duration,
    cost: Cost,
}

struct Baselines {
    /// A bare DynamoDB GetItem (consistent, one grant item) through the relay, as the handlers call.
    get_item: Duration,
    /// The same, straight to moto.
    get_item_direct: Duration,
    /// The grant's user lookup, straight to the simulator.
    jumpcloud: Duration,
}

async fn get_grant_item(client: &aws_sdk_dynamodb::Client, table: &str, id: &str) -> anyhow::Result<()> {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("GRANT#{id}")))
        .key("sk", AttributeValue::S("GRANT".into()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .context("the grant item exists")?;
    Ok(())
}

async fn baselines(fx: &Fixture, grant_id: &str, n: usize) -> anyhow::Result<Baselines> {
    let p50 = |mut times: Vec<Duration>| {
        times.sort();
        percentile(&times, 50.0)
    };
    let mut run = Vec::with_capacity(n);
    let proxied = aws_sdk_dynamodb::Client::new(&fx.sdk);
    for _ in 0..n {
        let t = Instant::now();
        get_grant_item(&proxied, &fx.stack.table, grant_id).await?;
        run.push(t.elapsed());
    }
    let get_item = p50(std::mem::take(&mut run));
    for _ in 0..n {
        let t = Instant::now();
        get_grant_item(&fx.stack.dynamodb, &fx.stack.table, grant_id).await?;
        run.push(t.elapsed());
    }
    let get_item_direct = p50(std::mem::take(&mut run));
    let http = reqwest::Client::new();
    let url = format!("{}/api/systemusers", fx.sim.url());
    for _ in 0..n {
        let t = Instant::now();
        http.get(&url)
            .query(&[("filter", "email:$eq:user1@example.com"), ("limit", "2")])
            .header("x-api-key", KEY)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        run.push(t.elapsed());
    }
    Ok(Baselines { get_item, get_item_direct, jumpcloud: p50(run) })
}

async fn sequential_grants(
    fx: &Fixture,
    proxy: &CountingProxy,
    grant: &GrantHandler,
    users: &[String],
) -> anyhow::Result<(Sample, Vec<String>)> {
    let meter = fx.meter(proxy);
    let mark = meter.mark();
    let (mut times, mut ids) = (Vec::with_capacity(users.len()), Vec::with_capacity(users.len()));
    let started = Instant::now();
    for email in users {
        let t = Instant::now();
        let g = create(grant, email, "2h", None, 201).await?;
        times.push(t.elapsed());
        ids.push(id(&g)?);
    }
    let sample = Sample { label: "POST /grants".into(), times, wall: started.elapsed(), cost: meter.since(&mark) };
    Ok((sample, ids))
}

async fn sequential_revokes(
    fx: &Fixture,
    proxy: &CountingProxy,
    revoke: &RevokeHandler,
    ids: &[String],
) -> anyhow::Result<Sample> {
    let meter = fx.meter(proxy);
    let mark = meter.mark();
    let mut times = Vec::with_capacity(ids.len());
    let started = Instant::now();
    for id in ids {
        let t = Instant::now();
        delete(revoke, id).await?;
        times.push(t.elapsed());
    }
    Ok(Sample { label: "DELETE /grants/{id}".into(), times, wall: started.elapsed(), cost: meter.since(&mark) })
}

/// A fresh slice of the stack for `users` grants, with handlers warmed by one grant and its
/// revocation (not measured). Fresh, because moto copies the whole table in every
/// TransactWriteItems (its rollback state): its cost grows with the table, DynamoDB's does not.
async fn batch(proxy: &CountingProxy, users: usize) -> anyhow::Result<(Fixture, GrantHandler, RevokeHandler)> {
    let fx = fixture(proxy, 1 + users).await?;
    let (grant, revoke) = fx.handlers(None)?;
    let g = create(&grant, &fx.emails[0], "2h", None, 201).await?;
    delete(&revoke, &id(&g)?).await?;
    Ok((fx, grant, revoke))
}

/// `concurrency` workers, each with its own table (moto's TransactWriteItems is not safe against
/// concurrent transactions on one table), granting a user and revoking the grant, `pairs` in all.
async fn concurrent_pairs(proxy: &CountingProxy, pairs: usize, concurrency: usize) -> anyhow::Result<(Sample, Sample)> {
    let per_worker = pairs.div_ceil(concurrency);
    let mut fixtures = Vec::with_capacity(concurrency);
    let mut workers = tokio::task::JoinSet::new();
    let mut ready = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (fx, grant, revoke) = batch(proxy, per_worker).await?;
        ready.push((fx.emails[1..].to_vec(), grant, revoke));
        fixtures.push(fx);
    }
    let meter = Meter { proxy, sims: fixtures.iter().map(|fx| fx.sim.handle()).collect() };
    let mark = meter.mark();
    let started = Instant::now();
    for (emails, grant, revoke) in ready {
        workers.spawn(async move {
            let (mut granted, mut revoked) = (Vec::new(), Vec::new());
            for email in &emails {
                let t = Instant::now();
                let g = create(&grant, email, "2h", None, 201).await?;
                granted.push(t.elapsed());
                let t = Instant::now();
                delete(&revoke, &id(&g)?).await?;
                revoked.push(t.elapsed());
            }
            anyhow::Ok((granted, revoked))
        });
    }
    let (mut granted, mut revoked) = (Vec::new(), Vec::new());
    while let Some(done) = workers.join_next().await {
        let (g, r) = done??;
        granted.extend(g);
        revoked.extend(r);
    }
    let (wall, cost) = (started.elapsed(), meter.since(&mark));
    for fx in &fixtures {
        fx.drop_table().await?;
    }
    let label = |what: &str| format!("{what}, {concurrency} at a time");
    Ok((
        Sample { label: label("POST /grants"), times: granted, wall, cost: cost.clone() },
        Sample { label: label("DELETE /grants/{id}"), times: revoked, wall, cost },
    ))
}

impl Sample {
    fn new(label: &str) -> Self {
        Self { label: label.to_owned(), times: Vec::new(), wall: Duration::ZERO, cost: Cost::default() }
    }
    fn absorb(&mut self, other: Sample) {
        self.times.extend(other.times);
        self.wall += other.wall;
        self.cost.add(&other.cost);
    }
}

async fn handler_times(proxy: &CountingProxy, a: &Args) -> anyhow::Result<()> {
    eprintln!("part 2: {} grants, then their revocations, one at a time, {} per table ...", a.grants, a.batch);
    let (mut grants, mut revokes) = (Sample::new("POST /grants"), Sample::new("DELETE /grants/{id}"));
    let mut base = None;
    let mut done = 0;
    while done < a.grants {
        let n = a.batch.min(a.grants - done);
        let (fx, grant, revoke) = batch(proxy, n).await?;
        let (g, ids) = sequential_grants(&fx, proxy, &grant, &fx.emails[1..]).await?;
        if base.is_none() {
            base = Some(baselines(&fx, &ids[0], a.baseline).await?);
        }
        let r = sequential_revokes(&fx, proxy, &revoke, &ids).await?;
        fx.drop_table().await?;
        grants.absorb(g);
        revokes.absorb(r);
        done += n;
        eprintln!("  {done} / {}", a.grants);
    }
    let base = base.context("no batch ran")?;
    print_times(&[grants, revokes], &base, a);
    if a.concurrent_grants > 0 {
        eprintln!("part 2: {} grant + revoke pairs, {} at a time ...", a.concurrent_grants, a.concurrency);
        let (g, r) = concurrent_pairs(proxy, a.concurrent_grants, a.concurrency).await?;
        print_concurrent(&[g, r], &base);
    }
    Ok(())
}

fn table_head() {
    println!(
        "| operation | n | p50 ms | p99 ms | mean ms | max ms | per second | AWS calls / op | JumpCloud / op | p50 / (AWS calls x GetItem p50) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
}

/// One row; `ops` is how many operations the sample's counters and wall time cover.
fn table_row(s: &Sample, ops: usize, base: &Baselines) {
    let mut sorted = s.times.clone();
    sorted.sort();
    let n = sorted.len();
    let mean = sorted.iter().sum::<Duration>() / n as u32;
    let aws = s.cost.aws_calls() as f64 / ops as f64;
    let jumpcloud = s.cost.jumpcloud() as f64 / ops as f64;
    let p50 = percentile(&sorted, 50.0);
    println!(
        "| {} | {n} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {aws:.2} | {jumpcloud:.2} | {:.2} |",
        s.label,
        ms(p50),
        ms(percentile(&sorted, 99.0)),
        ms(mean),
        ms(*sorted.last().expect("samples")),
        ops as f64 / s.wall.as_secs_f64(),
        ms(p50) / (aws * ms(base.get_item)),
    );
}

fn print_times(samples: &[Sample], base: &Baselines, a: &Args) {
    println!("## 2. Handler time (in-process handlers, simulator latency 0 ms, moto's server, logging off)");
    println!();
    println!(
        "{} grants one at a time, then their revocations, in tables of {} grants (moto copies the whole table in \
         every TransactWriteItems). Baselines (p50 of {}, in the first table): DynamoDB GetItem through the \
         counting relay {:.2} ms (straight to moto {:.2} ms); one JumpCloud user lookup on the simulator {:.2} ms.",
        a.grants,
        a.batch,
        a.baseline,
        ms(base.get_item),
        ms(base.get_item_direct),
        ms(base.jumpcloud)
    );
    println!();
    table_head();
    for s in samples {
        table_row(s, s.times.len(), base);
    }
    println!();
    println!("Where the mean goes (moto = the relay's wait for moto's answers, per operation x mean time each):");
    for s in samples {
        let n = s.times.len() as f64;
        let mean = ms(s.times.iter().sum::<Duration>()) / n;
        let moto = ms(s.cost.moto_time()) / n;
        let jumpcloud = s.cost.jumpcloud() as f64 / n * ms(base.jumpcloud);
        let by_op = s
            .cost
            .aws
            .calls
            .iter()
            .map(|(op, calls)| {
                let each = ms(s.cost.aws.moto[op]) / *calls as f64;
                format!("{op} {:.2} x {each:.2} ms", *calls as f64 / n)
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "- {}: mean {mean:.2} ms = moto {moto:.2} ms ({by_op}) + JumpCloud ~{jumpcloud:.2} ms + the rest {:.2} ms \
             (handler, SDK, relay hop); moto's non-2xx answers: {}",
            s.label,
            mean - moto - jumpcloud,
            s.cost.errors()
        );
    }
    println!();
}

fn print_concurrent(samples: &[Sample], base: &Baselines) {
    println!(
        "Concurrent: each worker its own table, a grant then its revocation, in turn. Counters and wall time are the \
         whole run's, so \"per second\" and the calls are per operation of either kind."
    );
    println!();
    table_head();
    let ops: usize = samples.iter().map(|s| s.times.len()).sum();
    for s in samples {
        table_row(s, ops, base);
    }
    println!();
    println!("moto's non-2xx answers: {}", samples[0].cost.errors());
    println!();
}

// ---------------------------------------------------------------------------------------------
// Part 3: cold start under a fake Lambda Runtime API.

/// What the function asked or told the runtime API, and when.
enum Call {
    Next(Instant),
    Response(Instant, String),
    Error(String),
}

/// Serves `GET .../invocation/next` once with the event (later ones never answer: the process is
/// killed), and records the response or error the function posts.
struct RuntimeApi {
    addr: String,
    calls: mpsc::Receiver<Call>,
    stop: Arc<AtomicBool>,
}

impl RuntimeApi {
    fn start(event: String, function_arn: String) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let (tx, calls) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handed_out = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let invocation = Arc::new((event, function_arn));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (tx, invocation, handed_out) = (tx.clone(), invocation.clone(), handed_out.clone());
                thread::spawn(move || serve_runtime(stream, &invocation, &handed_out, &tx));
            }
        });
        Ok(Self { addr, calls, stop })
    }

    /// Waits for a call `want` accepts; fails if the process exits or reports an error first.
    fn wait(&self, child: &mut Child, want: fn(&Call) -> bool, what: &str) -> anyhow::Result<Call> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.calls.recv_timeout(Duration::from_millis(20)) {
                Ok(call) if want(&call) => return Ok(call),
                Ok(Call::Error(body)) => bail!("the function reported an error before {what}: {body}"),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        bail!("the function exited ({status}) before {what}");
                    }
                    ensure!(Instant::now() < deadline, "no {what} within 30 s");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the runtime API stopped before {what}"),
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr); // wakes the accept loop
    }
}

fn serve_runtime(
    stream: TcpStream,
    (event, function_arn): &(String, String),
    handed_out: &AtomicBool,
    calls: &mpsc::Sender<Call>,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_message(&mut reader, None)? {
        let now = Instant::now();
        if request.method() == "GET" && request.path().ends_with("/runtime/invocation/next") {
            let _ = calls.send(Call::Next(now));
            if handed_out.swap(true, Ordering::SeqCst) {
                // Done with this process: hold the request until it is killed.
                io::copy(&mut reader, &mut io::sink())?;
                return Ok(());
            }
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() + 60_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {}\r\n\
                 lambda-runtime-deadline-ms: {deadline}\r\nlambda-runtime-invoked-function-arn: {function_arn}\r\n\
                 lambda-runtime-trace-id: Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0\r\n\
                 content-length: {}\r\n\r\n",
                uuid::Uuid::new_v4(),
                event.len()
            );
            writer.write_all(head.as_bytes())?;
            writer.write_all(event.as_bytes())?;
        } else {
            let body = String::from_utf8_lossy(request.body()).into_owned();
            let _ = calls.send(if request.path().ends_with("/response") {
                Call::Response(now, body)
            } else {
                Call::Error(format!("{} {body}", request.path()))
            });
            let ok = r#"{"status":"OK"}"#;
            let reply = format!(
                "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ok}",
                ok.len()
            );
            writer.write_all(reply.as_bytes())?;
        }
    }
    Ok(())
}

/// Kills and reaps the child when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Trial {
    ready: Duration,
    responded: Duration,
    response: String,
}

/// Spawns the binary; times spawn -> first `next` (initialized) and spawn -> response posted.
fn cold_start(binary: &Path, env: &[(String, String)], event: &Value, function_arn: &str) -> anyhow::Result<Trial> {
    let api = RuntimeApi::start(event.to_string(), function_arn.to_owned())?;
    let started = Instant::now();
    let mut child = Running(
        Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?,
    );
    let Call::Next(ready) = api.wait(&mut child.0, |c| matches!(c, Call::Next(_)), "asking for an event")? else {
        unreachable!()
    };
    let Call::Response(responded, response) =
        api.wait(&mut child.0, |c| matches!(c, Call::Response(..)), "posting a response")?
    else {
        unreachable!()
    };
    Ok(Trial { ready: ready - started, responded: responded - started, response })
}

struct Lambda {
    name: &'static str,
    memory: u32,
    event: Value,
    /// What the cheap event is.
    doing: &'static str,
}

/// The environment Lambda and the template give the function.
fn lambda_env(fx: &Fixture, moto: &str, f: &Lambda) -> Vec<(String, String)> {
    let name = format!("jit-access-{}", f.name);
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/23/[$LATEST]0123456789abcdef".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_ENDPOINT_URL", moto.to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("TABLE_NAME", fx.stack.table.clone()),
        ("JUMPCLOUD_API_URL", fx.sim.url()),
        ("SECRET_TAG_KEY", fx.stack.tag_key.clone()),
        ("SECRET_TAG_VALUE", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(function_settings(&fx.schedule_group, &fx.bus, f.name == "grant"));
    env
}

/// `cargo build --release -p sync -p grant -p revoke` when started by cargo; where they are.
fn build_functions() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe.parent().and_then(Path::parent).context("target directory")?.join("release");
    if let Ok(cargo) = std::env::var("CARGO") {
        eprintln!("part 3: cargo build --release -p sync -p grant -p revoke ...");
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "sync", "-p", "grant", "-p", "revoke"])
            .current_dir(workspace_root())
            .status()?;
        ensure!(status.success(), "building the functions failed");
    }
    Ok(release)
}

fn size_mb(path: &Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64 / 1e6)
}

fn gzip_mb(path: &Path) -> Option<f64> {
    let out = Command::new("gzip").args(["-9", "-c"]).arg(path).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| out.stdout.len() as f64 / 1e6)
}

fn summary(response: &str) -> String {
    let v: Value = serde_json::from_str(response).unwrap_or(Value::Null);
    if let Some(status) = v["statusCode"].as_u64() {
        return format!("HTTP {status}");
    }
    v["outcome"].as_str().map(str::to_owned).unwrap_or_else(|| response.chars().take(60).collect())
}

async fn cold_starts(proxy: &CountingProxy, moto: &str, a: &Args) -> anyhow::Result<()> {
    let fx = fixture(proxy, 20).await?;
    let release = match &a.bin_dir {
        Some(dir) => dir.clone(),
        None => tokio::task::block_in_place(build_functions)?,
    };
    let unknown = uuid::Uuid::new_v4().to_string();
    let functions = [
        Lambda {
            name: "sync",
            memory: 1024,
            event: event("sync-http-post.json"),
            doing: "POST /sync: one integration, 20 users, 1 group",
        },
        Lambda {
            name: "grant",
            memory: 512,
            event: http_event("GET", &format!("/grants/{unknown}"), None),
            doing: "GET /grants/{unknown id}",
        },
        Lambda {
            name: "grant",
            memory: 512,
            event: http_event("GET", "/", None),
            doing: "GET / (the portal's page; 404 before the portal existed)",
        },
        Lambda {
            name: "revoke",
            memory: 512,
            event: json!({"action": "expire", "grant_id": unknown}),
            doing: "expiry of an unknown grant",
        },
    ];
    println!("## 3. Cold start (x86_64 host binaries on this machine, fake Lambda Runtime API, moto straight)");
    println!();
    println!("| function | cheap event | answer | init: spawn -> first `next`, p50 / max ms | spawn -> response posted, p50 / max ms | runs |");
    println!("|---|---|---|---|---|---|");
    for f in &functions {
        let binary = release.join(f.name);
        if !binary.exists() {
            println!("| {} | {} | not in {} | | | 0 |", f.name, f.doing, release.display());
            continue;
        }
        let env = lambda_env(&fx, moto, f);
        let arn = format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:jit-access-{}", f.name);
        let trials = tokio::task::block_in_place(|| {
            (0..a.cold_runs).map(|_| cold_start(&binary, &env, &f.event, &arn)).collect::<anyhow::Result<Vec<_>>>()
        })?;
        let stat = |pick: fn(&Trial) -> Duration| {
            let mut times: Vec<Duration> = trials.iter().map(pick).collect();
            times.sort();
            format!("{:.1} / {:.1}", ms(percentile(&times, 50.0)), ms(*times.last().expect("trials")))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            f.name,
            f.doing,
            summary(&trials[0].response),
            stat(|t| t.ready),
            stat(|t| t.responded),
            trials.len()
        );
    }
    println!();
    println!("Binary sizes (MB = 10^6 bytes; gzip -9 approximates the zip Lambda stores):");
    for f in functions.iter().filter(|f| f.event["rawPath"] != "/") {
        let host = release.join(f.name);
        let host_size = std::fs::metadata(&host)
            .map_or("missing".to_owned(), |m| format!("{:.1} MB ({} bytes)", m.len() as f64 / 1e6, m.len()));
        let host_gz = gzip_mb(&host).map_or(String::new(), |s| format!(" (gzip {s:.1} MB)"));
        let mut arm64 = Vec::new();
        let sam = workspace_root().join(".aws-sam/build").join(format!(
            "{}{}Function",
            f.name[..1].to_uppercase(),
            &f.name[1..]
        ));
        for path in
            [sam.join("bootstrap"), release.parent().unwrap_or(&release).join("lambda").join(f.name).join("bootstrap")]
        {
            if let (Some(size), gz) = (size_mb(&path), gzip_mb(&path)) {
                let gz = gz.map_or(String::new(), |g| format!(", gzip {g:.1} MB"));
                arm64.push(format!("{size:.1} MB{gz} ({})", path.display()));
            }
        }
        let arm64 = if arm64.is_empty() {
            "not built here (`sam build` or `cargo lambda build --release --arm64`)".to_owned()
        } else {
            arm64.join("; ")
        };
        println!("- {}: x86_64 host {host_size}{host_gz}; arm64: {arm64}", f.name);
    }
    println!();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let moto = tokio::task::block_in_place(aws_endpoint);
    let proxy = CountingProxy::start(&moto)?;
    println!("# Grant lifecycle benchmark");
    println!();
    println!(
        "moto's server {moto} (every AWS call through a counting relay at {}); JumpCloud simulator in this process, \
         latency 0 ms; the real grant and revoke handlers in this process.",
        proxy.url
    );
    println!();
    if !a.cold_start_only {
        calls_per_operation(&proxy).await?;
        handler_times(&proxy, &a).await?;
    }
    if a.cold_start || a.cold_start_only {
        cold_starts(&proxy, &moto, &a).await?;
    }
    Ok(())
}
