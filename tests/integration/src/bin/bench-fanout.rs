//! Fanned-out full sync benchmark (not a test), two parts:
//!
//! 1. **At scale** (default 1,000,000 users / 50,000 groups / ~4,000,000 memberships, 20 ms per
//!    request): the simulator in a child process; the planner and `--workers` workers in this
//!    process, each worker on a thread of its own (as a Lambda has a process of its own) with its
//!    own JumpCloud client (`--concurrency` in flight) and all of them under one shared rate
//!    budget (`--rps`), parts passed through an in-memory queue. The
//!    stored directory and the run's records are in memory (`MemoryStore`, `MemoryRuns`): moto
//!    cannot hold 5 million items in reasonable time, so DynamoDB is replaced here (its writes are
//!    counted), and said so in the output. Prints requests vs the documented API's minimum, wall
//!    time vs max(rate bound, concurrency bound), the CPU both processes used, each half's wall
//!    time vs its own request and CPU bounds, parts, and a second sync's writes (0).
//! 2. **Per worker** (`--worker-org USERS:GROUPS:AVG`, default 30,000:750:80: full-size parts, 3
//!    of each kind): the real `sync` handler in a fresh child process per delivered part, on moto
//!    (DynamoDB, SQS), the parts relayed from moto's queue as Lambda's event source mapping
//!    would; each child reports its peak RSS (VmHWM), the number the 128 MB bound is about.
//!
//! `cargo run --profile bench-fast -p integration-tests --bin bench-fanout -- [--users N]
//!  [--groups N] [--avg-members N] [--latency-ms N] [--workers N] [--concurrency N] [--rps N]
//!  [--worker-org U:G:A] [--skip-scale] [--skip-workers]`

use anyhow::{bail, Context};
use async_trait::async_trait;
use integration_tests::{
    bench::{at_least, jumpcloud_client, serve_until_stdin_closes, spawn_simulator, SimOrg},
    memory::{peak_rss_mib, reset_peak_rss, ProcessGauge},
    sdk_config, unique, Stack,
};
use jit_schedule_runner::{sqs::SqsRelay, Invocation, LambdaInvoker};
use jit_shared::{
    adapters::jumpcloud::JumpCloudClient,
    clock::SystemClock,
    config::DirectoryPolicy,
    domain::{
        fanout::{run_part, FanOut},
        sync::{full_sync, IntegrationOutcome, NoProgress, SyncContext},
    },
    handlers::sync::SyncHandler,
    ports::{DirectoryStore, RunStage, SharedRate, StoreError, SyncRunStore},
    testing::{MemoryQueue, MemoryRuns, MemoryStore},
};
use jumpcloud_sim::{GenerateSpec, Org};
use serde_json::Value;
use std::{
    num::NonZeroU32,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

// No counting allocator here: a profile at scale (`perf record -e cpu-clock`) put ~14% of this
// process's samples in its two shared atomics (no wall-time change measured on removing it), a
// cost of the measurement, not of the sync. Peak RSS, the number the 128 MB bound is about, needs none.

const KEY: &str = "bench-key";

/// Fanned-out full sync benchmark: at scale (in memory) and per worker (the real handler on moto).
#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    #[command(flatten)]
    args: Args,
}

/// This binary's child processes.
#[derive(clap::Subcommand)]
enum Child {
    /// Serves a generated organization until stdin closes.
    #[command(hide = true)]
    ServeSim(SimOrg),
    /// Works parts relayed from moto's queue with the real `sync` handler.
    #[command(hide = true)]
    Worker { table: String, tag_key: String, sim: String, queue: String },
}

#[derive(clap::Args)]
struct Args {
    /// Users of the organization at scale.
    #[arg(long, default_value_t = 1_000_000)]
    users: usize,
    /// Groups of the organization at scale.
    #[arg(long, default_value_t = 50_000)]
    groups: usize,
    /// Mean members a group.
    #[arg(long, default_value_t = 80)]
    avg_members: usize,
    /// The simulator's latency a request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Workers at scale.
    #[arg(long, default_value_t = 4, value_parser = at_least(1usize))]
    workers: usize,
    /// JumpCloud requests in flight a worker.
    #[arg(long, default_value_t = 8, value_parser = at_least(1usize))]
    concurrency: usize,
    /// The shared rate budget, requests a second (the default lifts it).
    #[arg(long, default_value_t = 100_000, value_parser = at_least(1u32))]
    rps: u32,
    /// The per-worker organization, USERS:GROUPS:AVG.
    #[arg(long, default_value = "30000:750:80", value_parser = org_size)]
    worker_org: (usize, usize, usize),
    /// Skips the run at scale.
    #[arg(long)]
    skip_scale: bool,
    /// Skips the per-worker run.
    #[arg(long)]
    skip_workers: bool,
}

fn org_size(value: &str) -> Result<(usize, usize, usize), String> {
    let numbers: Vec<usize> = value.split(':').map(str::parse).collect::<Result<_, _>>().map_err(|e| format!("{e}"))?;
    match numbers[..] {
        [users, groups, avg] => Ok((users, groups, avg)),
        _ => Err("expected USERS:GROUPS:AVG".to_owned()),
    }
}

fn spec(users: usize, groups: usize, avg_members: usize) -> GenerateSpec {
    GenerateSpec { users, groups, avg_members, seed: 42, api_key: KEY.into(), ..GenerateSpec::default() }
}

/// The documented API's minimum for a full read: user pages, group pages, and each group's member
/// pages (one for an empty group), 100 per page; and the membership count.
fn minimum(org: &Org) -> (usize, usize) {
    let pages = |n: usize| n.div_ceil(100).max(1);
    let members: usize = org.groups.iter().map(|g| org.members(&g.id).len()).sum();
    let member_pages: usize = org.groups.iter().map(|g| pages(org.members(&g.id).len())).sum();
    (pages(org.users.len()) + pages(org.groups.len()) + member_pages, members)
}

/// The mean latency, in ms, of one member page asked for 50 times one after another with
/// nothing else running: what a request costs here beyond the simulator's nominal latency (its
/// timer, HTTP on the loopback), with no load to wait behind.
async fn latency_alone(client: &JumpCloudClient, group: &str) -> anyhow::Result<f64> {
    use jit_shared::ports::Directory;
    const TIMES: u32 = 50;
    for _ in 0..TIMES {
        client.list_group_members(group).await?;
    }
    let stats = client.stats();
    let micros = stats.permit_micros.load(Ordering::Relaxed) as f64;
    Ok(micros / 1000.0 / stats.requests.load(Ordering::Relaxed).max(1) as f64)
}

/// The workers' shared budget, in memory (in AWS: `DynamoSharedRate`, a counter per second).
struct InMemoryRate(governor::DefaultDirectRateLimiter);

#[async_trait]
impl SharedRate for InMemoryRate {
    async fn acquire(&self) -> Result<(), StoreError> {
        self.0.until_ready().await;
        Ok(())
    }
}

fn client(url: &str, a: &Args, rate: Arc<dyn SharedRate>) -> JumpCloudClient {
    jumpcloud_client(url, KEY, a.concurrency, a.rps).with_shared_rate(rate)
}

struct RunResult {
    wall: Duration,
    requests: u64,
    retries: u64,
    parts: u32,
    written: u64,
    deleted: u64,
    users: u64,
    memberships: u64,
    /// Seconds the requests held a concurrency slot, all of them together.
    permit: f64,
    /// The users half (the plan and the users parts, up to the first members part taken).
    users_half: Phase,
}

/// A stretch of the run: its wall time, its JumpCloud requests, the CPU both processes used.
#[derive(Default, Clone, Copy)]
struct Phase {
    wall: f64,
    requests: u64,
    cpu: f64,
    /// Seconds the requests held a slot: over `requests`, the latency the workers saw.
    permit: f64,
}

/// What the planner and the workers share, owned, so that each worker runs on a thread of its own.
#[derive(Clone)]
struct Shared {
    store: Arc<MemoryStore>,
    runs: Arc<MemoryRuns>,
    queue: Arc<MemoryQueue>,
    policy: Arc<DirectoryPolicy>,
}

impl Shared {
    fn fanout(&self) -> FanOut<'_> {
        FanOut::new(&*self.queue, &*self.runs, 1)
    }
    fn ctx<'a>(&'a self, fanout: &'a FanOut<'a>) -> SyncContext<'a> {
        SyncContext {
            store: &*self.store,
            policy: &self.policy,
            clock: &SystemClock,
            progress: &NoProgress,
            grants: None,
            fanout: Some(fanout),
        }
    }
}

/// One worker, as a Lambda of its own: its JumpCloud client and a single-threaded runtime that one
/// OS thread drives while a sync runs. In AWS each worker has its own process and CPU; as tasks of
/// one multi-threaded runtime, a worker busy with a part's CPU work (deciding, writing) held a
/// runtime thread the other workers' responses waited for (their requests seemed to take 35 ms,
/// not 21). Threads of their own share the cores the way processes do: the kernel preempts them.
struct Worker {
    client: Arc<JumpCloudClient>,
    /// Always `Some` until dropped.
    runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl Drop for Worker {
    /// A worker is dropped on the bench's own runtime, where dropping a runtime panics (it would
    /// wait for its blocking pool): its own is shut down without waiting. Should its thread still
    /// hold it, that thread drops it last, outside any runtime.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take().and_then(|r| Arc::try_unwrap(r).ok()) {
            runtime.shutdown_background();
        }
    }
}

impl Worker {
    fn new(client: JumpCloudClient) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Self { client: Arc::new(client), runtime: Some(Arc::new(runtime)) })
    }

    /// Runs [`worker`] on this worker's thread; the answer comes when it is done.
    fn start(
        &self,
        shared: Shared,
        run_id: String,
        started: Instant,
        members_from: Arc<std::sync::Mutex<Option<Duration>>>,
    ) -> tokio::sync::oneshot::Receiver<anyhow::Result<()>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let (runtime, client) = (self.runtime.clone().expect("a worker's runtime"), self.client.clone());
        std::thread::spawn(move || {
            let _ = done.send(runtime.block_on(worker(shared, client, run_id, started, members_from)));
        });
        answer
    }
}

/// One worker: takes parts until the run is done or failed.
async fn worker(
    shared: Shared,
    client: Arc<JumpCloudClient>,
    run_id: String,
    started: Instant,
    members_from: Arc<std::sync::Mutex<Option<Duration>>>,
) -> anyhow::Result<()> {
    let fanout = shared.fanout();
    let ctx = shared.ctx(&fanout);
    loop {
        match shared.queue.take() {
            Some(message) => {
                if message.kind == jit_shared::ports::PartKind::Members {
                    members_from.lock().expect("lock").get_or_insert_with(|| started.elapsed());
                }
                run_part(&ctx, &fanout, &message, &*client, 1).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            None => {
                let stage = shared.runs.run("bench", &run_id).await?.map(|r| r.stage);
                if matches!(stage, Some(RunStage::Done | RunStage::Failed)) {
                    return Ok(());
                }
                // Between the halves: the part that completes the users half sends the rest.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// One fanned-out sync: the plan, then the workers, each on a thread of its own, taking parts
/// until the run is done.
async fn fanned_sync(
    shared: &Shared,
    planner: &JumpCloudClient,
    workers: &[Worker],
    cpu: impl Fn() -> f64,
) -> anyhow::Result<RunResult> {
    let clients = || std::iter::once(planner).chain(workers.iter().map(|w| &*w.client));
    let before: u64 = clients().map(|c| c.stats().requests.load(Ordering::Relaxed)).sum();
    let permit = || clients().map(|c| c.stats().permit_micros.load(Ordering::Relaxed)).sum::<u64>() as f64 / 1e6;
    let permit_before = permit();
    let (started, cpu_before) = (Instant::now(), cpu());
    let run = {
        let fanout = shared.fanout();
        match full_sync(&shared.ctx(&fanout), "bench", planner).await {
            IntegrationOutcome::FannedOut(run) => run,
            other => bail!("not fanned out: {other:?}"),
        }
    };
    let planned = started.elapsed();
    let members_from = Arc::new(std::sync::Mutex::new(None::<Duration>));
    let tasks: Vec<_> =
        workers.iter().map(|w| w.start(shared.clone(), run.run_id.clone(), started, members_from.clone())).collect();
    // Sampled every 20 ms until the first members part is taken: the users half's requests
    // and CPU (the halves are sequential, so each has bounds of its own).
    let requests = || clients().map(|c| c.stats().requests.load(Ordering::Relaxed)).sum::<u64>();
    let mut users_half = None::<Phase>;
    let mut all = futures::future::try_join_all(tasks);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            joined = &mut all => {
                for worker in joined.context("a worker's thread ended without an answer")? {
                    worker?;
                }
                break;
            }
            _ = tick.tick() => {
                let members = *members_from.lock().expect("lock");
                if let (Some(at), None) = (members, users_half) {
                    users_half = Some(Phase {
                        wall: at.as_secs_f64(),
                        requests: requests() - before,
                        cpu: cpu() - cpu_before,
                        permit: permit() - permit_before,
                    });
                }
            }
        }
    }
    let wall = started.elapsed();
    let users_half = users_half.context("no members part was taken")?;
    eprintln!("  plan {:.1} s", planned.as_secs_f64());
    let done = shared.runs.run("bench", &run.run_id).await?.context("the run")?;
    if done.stage != RunStage::Done {
        bail!("the run ended {:?}: {:?}", done.stage, done.error);
    }
    let status = shared.store.sync_status("bench").await?.context("status")?;
    let (requests, retries) = clients().fold((0, 0), |(r, t), c| {
        (r + c.stats().requests.load(Ordering::Relaxed), t + c.stats().retries.load(Ordering::Relaxed))
    });
    Ok(RunResult {
        wall,
        requests: requests - before,
        retries,
        parts: run.user_parts + run.member_parts,
        written: status.written,
        deleted: status.deleted,
        users: status.users,
        memberships: status.memberships,
        permit: permit() - permit_before,
        users_half,
    })
}

async fn at_scale(a: &Args) -> anyhow::Result<()> {
    let org = Org::generate(&spec(a.users, a.groups, a.avg_members));
    let (minimum, members) = minimum(&org);
    // A group of one page, for the latency of a request alone.
    let one_page = org.groups.iter().find(|g| (1..=100).contains(&org.members(&g.id).len())).map(|g| g.id.to_string());
    drop(org);
    println!(
        "== at scale: {} users, {} groups, {} memberships; simulator latency {} ms; {} workers x {} in flight; shared budget {} req/s",
        a.users, a.groups, members, a.latency_ms, a.workers, a.concurrency, a.rps
    );
    println!("   DynamoDB: replaced by the in-memory store (moto cannot hold 5 million items in useful time); its writes are counted");
    let sim_args =
        SimOrg { users: a.users, groups: a.groups, avg_members: a.avg_members, latency_ms: a.latency_ms }.args();
    let (mut sim, url) = spawn_simulator(&sim_args)?;
    let (sim_gauge, this_gauge) = (ProcessGauge::of(sim.id()), ProcessGauge::current());
    println!(
        "   simulator (a child process, ready): RSS {:.0} MiB, peak {:.0} MiB while generating; {:.0} bytes a user, memberships included",
        sim_gauge.rss_mib(),
        sim_gauge.peak_rss_mib(),
        sim_gauge.rss_mib() * 1024.0 * 1024.0 / a.users.max(1) as f64
    );

    let rate: Arc<dyn SharedRate> = Arc::new(InMemoryRate(governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(a.rps.max(1)).expect("non-zero"),
    ))));
    let alone = match one_page {
        Some(group) => Some(latency_alone(&client(&url, a, rate.clone()), &group).await?),
        None => None,
    };
    let planner = client(&url, a, rate.clone());
    let workers: Vec<Worker> =
        (0..a.workers).map(|_| Worker::new(client(&url, a, rate.clone()))).collect::<anyhow::Result<_>>()?;
    let shared = Shared {
        store: Arc::default(),
        runs: Arc::default(),
        queue: Arc::default(),
        policy: Arc::new(DirectoryPolicy { include_suspended_users: true, ..DirectoryPolicy::default() }),
    };
    reset_peak_rss();
    let cpu_before = (sim_gauge.cpu_seconds(), this_gauge.cpu_seconds());
    let both_cpu = || sim_gauge.cpu_seconds() + this_gauge.cpu_seconds();
    let first = fanned_sync(&shared, &planner, &workers, both_cpu).await?;
    let first_rss = peak_rss_mib();
    let cpu = (sim_gauge.cpu_seconds() - cpu_before.0, this_gauge.cpu_seconds() - cpu_before.1);
    let sim_rss_after = sim_gauge.rss_mib();
    let second = fanned_sync(&shared, &planner, &workers, both_cpu).await?;
    drop(sim.stdin.take());
    let _ = sim.wait();

    let in_flight = (a.workers * a.concurrency) as f64;
    let rate_bound = first.requests as f64 / f64::from(a.rps);
    let concurrency_bound = first.requests as f64 * a.latency_ms as f64 / 1000.0 / in_flight;
    let bound = rate_bound.max(concurrency_bound);
    for (label, r) in [("first sync", &first), ("second sync", &second)] {
        println!(
            "   {label:<12} users {:>8}  memberships {:>8}  parts {:>4}  requests {:>6} (retries {})  written {:>8}  deleted {:>4}  wall {:>7.1} s",
            r.users, r.memberships, r.parts, r.requests, r.retries, r.written, r.deleted, r.wall.as_secs_f64()
        );
    }
    println!(
        "   requests: {} made, documented-API minimum {minimum} (ratio {:.4}: the one extra is the users count that plans the parts)",
        first.requests,
        first.requests as f64 / minimum as f64
    );
    println!(
        "   wall time: {:.1} s; rate bound {rate_bound:.1} s, concurrency bound {concurrency_bound:.1} s ({} in flight x {} ms); ratio {:.3}",
        first.wall.as_secs_f64(),
        in_flight,
        a.latency_ms,
        first.wall.as_secs_f64() / bound
    );
    // The slots' side of the concurrency bound: how long a request took as the workers saw it
    // (the simulator's nominal latency plus its own and this machine's time), and how much of
    // the wall time the slots were held.
    let seen_ms = 1000.0 * first.permit / first.requests.max(1) as f64;
    let seen_bound = first.requests as f64 * seen_ms / 1000.0 / in_flight;
    println!(
        "   latency seen by the workers {seen_ms:.1} ms a request (nominal {} ms), so the concurrency bound at the seen latency is {seen_bound:.1} s (ratio {:.3}); slots busy {:.0}% of the wall time",
        a.latency_ms,
        first.wall.as_secs_f64() / seen_bound.max(rate_bound),
        100.0 * first.permit / (in_flight * first.wall.as_secs_f64())
    );
    if let Some(alone) = alone {
        let bound_alone = first.requests as f64 * alone / 1000.0 / in_flight;
        println!(
            "   latency of a request alone (one at a time, before the sync, the machine idle): {alone:.1} ms, the floor of this simulator and loopback; the concurrency bound at it is {bound_alone:.1} s (ratio {:.3})",
            first.wall.as_secs_f64() / bound_alone.max(rate_bound)
        );
    }
    // What the two bounds leave out: on this machine the simulator, the workers and the
    // in-memory store share its cores, so their CPU time is a third bound.
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let cpu_bound = (cpu.0 + cpu.1) / cores;
    let wall = first.wall.as_secs_f64();
    println!(
        "   CPU during the first sync: simulator {:.1} s, workers and store {:.1} s, so the {cores} cores were busy {:.0}% of the wall time; CPU bound {cpu_bound:.1} s; ratio to the largest of the three bounds {:.3}; simulator RSS after it {sim_rss_after:.0} MiB",
        cpu.0,
        cpu.1,
        100.0 * cpu_bound / wall,
        wall / bound.max(cpu_bound)
    );
    // The halves one after the other, each under its own bounds.
    let users = first.users_half;
    let members = Phase {
        wall: wall - users.wall,
        requests: first.requests - users.requests,
        cpu: cpu.0 + cpu.1 - users.cpu,
        permit: first.permit - users.permit,
    };
    let bounds = |p: &Phase| {
        let requests = p.requests as f64;
        let concurrency = requests * a.latency_ms as f64 / 1000.0 / in_flight;
        (concurrency.max(requests / f64::from(a.rps)), p.cpu / cores)
    };
    let describe = |p: &Phase| {
        let (requests, cpu) = bounds(p);
        format!(
            "{:.1} s, {} requests: request bound {requests:.1} s, CPU {:.1} s so CPU bound {cpu:.1} s (ratio {:.2}); seen latency {:.1} ms, slots busy {:.0}%",
            p.wall,
            p.requests,
            p.cpu,
            p.wall / requests.max(cpu),
            1000.0 * p.permit / p.requests.max(1) as f64,
            100.0 * p.permit / (in_flight * p.wall)
        )
    };
    let halves_bound: f64 = [users, members]
        .iter()
        .map(|p| {
            let (r, c) = bounds(p);
            r.max(c)
        })
        .sum();
    println!("   by half: users (with the plan) {}; members and finish {}", describe(&users), describe(&members));
    println!("   the halves' bounds add up to {halves_bound:.1} s: ratio {:.3}", wall / halves_bound);
    println!("   a re-sync wrote {} items and deleted {}", second.written, second.deleted);
    println!(
        "   this process (workers and the in-memory store together): peak RSS {first_rss:.0} MiB; per worker: below"
    );
    Ok(())
}

/// The child: one part, delivered by the relay as an SQS event, worked by the real handler.
async fn worker_child(table: String, tag_key: String, sim_url: String, queue_url: String) -> anyhow::Result<()> {
    // Warnings and errors on stderr (the parent's): a part that fails says why.
    jit_shared::telemetry::init_terminal();
    let stack = Stack::existing(sdk_config().await, table, tag_key).await;
    let config = stack.config(&sim_url, &[("SYNC_QUEUE_URL", &queue_url), ("FANOUT_ABOVE_USERS", "1")]);
    let handler = SyncHandler::from_config(&stack.sdk, &config)?;
    let mut payload = String::new();
    std::io::stdin().read_line(&mut payload)?;
    let answer = handler.handle(integration_tests::lambda_event(serde_json::from_str(&payload)?)).await;
    let body = match answer {
        Ok(answer) => answer.to_string(),
        Err(e) => bail!("{e:?}"),
    };
    println!("{body}");
    println!("VmHWM {:.1}", peak_rss_mib());
    Ok(())
}

/// Invokes `sync` as a fresh child process per part, and keeps each child's peak RSS.
struct ChildProcesses {
    args: Vec<String>,
    peaks: std::sync::Mutex<Vec<f64>>,
}

#[async_trait]
impl LambdaInvoker for ChildProcesses {
    async fn invoke(&self, _function: &str, payload: &str) -> Result<Invocation, String> {
        use std::io::Write;
        let mut child = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        writeln!(child.stdin.take().expect("stdin"), "{payload}").map_err(|e| e.to_string())?;
        let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.map_err(|e| e.to_string())?;
        let output = output.map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines = stdout.lines();
        let body = lines.next().unwrap_or_default().to_owned();
        if let Some(peak) = lines.find_map(|l| l.strip_prefix("VmHWM ")).and_then(|v| v.parse().ok()) {
            self.peaks.lock().expect("peaks").push(peak);
        }
        let failed = !output.status.success();
        Ok(Invocation { status: 200, function_error: failed.then(|| "Unhandled".into()), body_excerpt: body })
    }
}

async fn per_worker(a: &Args) -> anyhow::Result<()> {
    let (users, groups, avg) = a.worker_org;
    println!(
        "== per worker: {users} users, {groups} groups (~{} memberships), full-size parts; each part a fresh process running the real sync handler on moto",
        groups * avg
    );
    let org = Org::generate(&spec(users, groups, avg));
    let sim_args = SimOrg { users, groups, avg_members: avg, latency_ms: 0 }.args();
    drop(org);
    let (mut sim, url) = spawn_simulator(&sim_args)?;
    let stack = Stack::new().await;
    stack.integration("bench", KEY).await;
    // Runs publish `Sync Completed` on the functions' default bus, as deployed.
    jit_shared::adapters::setup::ensure_event_bus(
        &aws_sdk_eventbridge::Client::new(&stack.sdk),
        jit_shared::config::DEFAULT_EVENT_BUS_NAME,
    )
    .await?;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("bench-sync-parts"))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "0")
        .send()
        .await?
        .queue_url
        .context("queue URL")?;
    let config = stack.config(&url, &[("SYNC_QUEUE_URL", &queue_url), ("FANOUT_ABOVE_USERS", "1")]);
    let planner = SyncHandler::from_config(&stack.sdk, &config)?;
    let children = Arc::new(ChildProcesses {
        args: vec!["worker".into(), stack.table.clone(), stack.tag_key.clone(), url.clone(), queue_url.clone()],
        peaks: Default::default(),
    });
    let relay = SqsRelay::new(sqs.clone(), &queue_url, children.clone());
    for label in ["first sync", "second sync"] {
        let started = Instant::now();
        let summary: Value = planner
            .handle(integration_tests::lambda_event(integration_tests::event("sync-schedule.json")))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let run = &summary["integrations"][0];
        if run["status"] != "fanned_out" {
            bail!("not fanned out: {summary}");
        }
        children.peaks.lock().expect("peaks").clear();
        let relayed = relay.drain().await.map_err(anyhow::Error::msg)?;
        let failed = relayed.iter().filter(|r| r.failure.is_some()).count();
        for failure in relayed.iter().filter_map(|r| r.failure.as_deref()) {
            eprintln!("   a part failed: {failure}");
        }
        let status = jit_shared::adapters::dynamodb::DynamoStore::new(stack.dynamodb.clone(), &stack.table)
            .sync_status("bench")
            .await?
            .context("status")?;
        let peaks = children.peaks.lock().expect("peaks").clone();
        println!(
            "   {label:<12} {} parts ({} users, {} members), {failed} failed; {} users, {} memberships, written {}; {:.1} s; worker peak RSS max {:.1} MiB, min {:.1} MiB",
            relayed.len(),
            run["user_parts"],
            run["member_parts"],
            status.users,
            status.memberships,
            status.written,
            started.elapsed().as_secs_f64(),
            peaks.iter().copied().fold(0.0, f64::max),
            peaks.iter().copied().fold(f64::MAX, f64::min),
        );
    }
    drop(sim.stdin.take());
    let _ = sim.wait();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    match cli.child {
        Some(Child::ServeSim(sim)) => {
            let org = Org::generate(&spec(sim.users, sim.groups, sim.avg_members));
            return serve_until_stdin_closes(org, sim.latency_ms).await;
        }
        Some(Child::Worker { table, tag_key, sim, queue }) => return worker_child(table, tag_key, sim, queue).await,
        None => {}
    }
    let a = cli.args;
    if !a.skip_scale {
        at_scale(&a).await?;
    }
    if !a.skip_workers {
        per_worker(&a).await?;
    }
    Ok(())
}
