//! Sync benchmark (not a test): a generated 50,000-user / 2,000-group / ~200,000-membership
//! organization served by the simulator with 20 ms latency per request, synced into DynamoDB on
//! moto's server, twice. Prints JumpCloud requests made vs the minimum possible, the fetch phase's
//! wall time vs what the concurrency limit allows, items written by each sync, and peak memory.
//!
//! `cargo run --release -p integration-tests --bin bench-sync -- [--users N] [--groups N]
//!  [--avg-members N] [--latency-ms N] [--concurrency N] [--rps N]`
//!
//! The simulator runs in a child process (this binary, `serve-sim`), so the peak memory measured
//! here is the sync's own.

use integration_tests::{
    bench::{at_least, SimOrg},
    memory::{
        file_rss_mib, heap_live_mib, heap_peak_mib, peak_rss_mib, reset_heap_peak, reset_peak_rss, CountingAllocator,
    },
    sdk_config, unique,
};
use jit_shared::{
    adapters::dynamodb::DynamoStore,
    adapters::setup::ensure_table,
    clock::SystemClock,
    config::DirectoryPolicy,
    domain::sync::{sync_integration, ProgressSink, SyncContext, SyncProgress, SyncReport},
};
use jumpcloud_sim::{GenerateSpec, Org};
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

const KEY: &str = "bench-key";

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Prints the live heap and its peak so far at each stage of a sync (with `--stages`), to show
/// where the memory goes.
struct HeapByStage {
    print: bool,
}

impl ProgressSink for HeapByStage {
    fn report(&self, progress: SyncProgress) {
        if !self.print {
            return;
        }
        let stage = match &progress {
            SyncProgress::Written { items_done, items_total, .. } if items_done < items_total => return,
            SyncProgress::MembersFetched { groups_done, groups_total, .. } if groups_done < groups_total => return,
            other => format!("{other:?}"),
        };
        eprintln!(
            "  heap {:>6.1} MiB live, {:>6.1} MiB peak: {}",
            heap_live_mib(),
            heap_peak_mib(),
            stage.chars().take(90).collect::<String>()
        );
    }
}

/// Sync benchmark: a generated organization synced into DynamoDB on moto, twice.
#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    #[command(flatten)]
    args: Args,
}

/// This binary's child process.
#[derive(clap::Subcommand)]
enum Child {
    /// Serves a generated organization until stdin closes.
    #[command(hide = true)]
    ServeSim(SimOrg),
}

#[derive(clap::Args)]
struct Args {
    /// Users of the organization.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Groups of the organization.
    #[arg(long, default_value_t = 2_000)]
    groups: usize,
    /// Mean members a group.
    #[arg(long, default_value_t = 100)]
    avg_members: usize,
    /// The simulator's latency a request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// JumpCloud requests in flight.
    #[arg(long, default_value_t = 16, value_parser = at_least(1usize))]
    concurrency: usize,
    /// JumpCloud requests a second.
    #[arg(long, default_value_t = 2_000, value_parser = at_least(1u32))]
    rps: u32,
    /// Prints the live heap and its peak at each stage of the sync.
    #[arg(long)]
    stages: bool,
}

fn spec(users: usize, groups: usize, avg_members: usize) -> GenerateSpec {
    GenerateSpec { users, groups, avg_members, seed: 42, api_key: KEY.into(), ..GenerateSpec::default() }
}

/// The child: serve the generated organization and print the URL.
async fn serve_sim(sim: SimOrg) -> anyhow::Result<()> {
    let org = Org::generate(&spec(sim.users, sim.groups, sim.avg_members));
    integration_tests::bench::serve_until_stdin_closes(org, sim.latency_ms).await
}

fn print_report(label: &str, r: &SyncReport, peak: f64) {
    println!(
        "{label:<12} users {:>6}  groups {:>5}  memberships {:>7}  written {:>7}  deleted {:>5}  fetch {:>7.2} s  total {:>7.2} s  peak RSS {:>6.1} MiB",
        r.users,
        r.groups,
        r.memberships,
        r.written,
        r.deleted,
        r.fetch_duration.as_secs_f64(),
        r.duration.as_secs_f64(),
        peak
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    if let Some(Child::ServeSim(sim)) = cli.child {
        return serve_sim(sim).await;
    }
    let a = cli.args;

    // The minimum number of requests, from the same deterministic organization.
    let org = Org::generate(&spec(a.users, a.groups, a.avg_members));
    let pages = |n: usize| n.div_ceil(100).max(1);
    let member_pages: usize = org.groups.iter().map(|g| pages(org.members(&g.id).len())).sum();
    let minimum = pages(org.users.len()) + pages(org.groups.len()) + member_pages;
    let total_members: usize = org.groups.iter().map(|g| org.members(&g.id).len()).sum();
    drop(org);
    println!(
        "organization: {} users, {} groups, {} memberships; simulator latency {} ms; client concurrency {}, {} req/s",
        a.users, a.groups, total_members, a.latency_ms, a.concurrency, a.rps
    );

    let sim_args =
        SimOrg { users: a.users, groups: a.groups, avg_members: a.avg_members, latency_ms: a.latency_ms }.args();
    let (mut child, url) = integration_tests::bench::spawn_simulator(&sim_args)?;

    let sdk = sdk_config().await;
    let table = unique("bench");
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    ensure_table(&dynamodb, &table).await?;
    let store = DynamoStore::new(dynamodb, &table);
    let client = integration_tests::bench::jumpcloud_client(&url, KEY, a.concurrency, a.rps);
    let policy = DirectoryPolicy { include_suspended_users: true, ..DirectoryPolicy::default() };
    let ctx = SyncContext {
        store: &store,
        policy: &policy,
        clock: &SystemClock,
        progress: &HeapByStage { print: a.stages },
        grants: None,
        fanout: None,
    };

    reset_peak_rss();
    reset_heap_peak();
    let started = Instant::now();
    let first = sync_integration(&ctx, "bench", &client).await?;
    let first_peak = peak_rss_mib();
    let first_heap = heap_peak_mib();
    let requests = client.stats().requests.load(Ordering::Relaxed);
    let retries = client.stats().retries.load(Ordering::Relaxed);
    let first_wall = started.elapsed();

    reset_peak_rss();
    reset_heap_peak();
    let second = sync_integration(&ctx, "bench", &client).await?;
    let second_peak = peak_rss_mib();
    let second_heap = heap_peak_mib();
    drop(child.stdin.take());
    let _ = child.wait();

    // With every request taking the latency and `concurrency` in flight, no client does better.
    let ideal = Duration::from_millis(a.latency_ms) * (minimum.div_ceil(a.concurrency) as u32);
    println!();
    print_report("first sync", &first, first_peak);
    print_report("second sync", &second, second_peak);
    println!();
    println!(
        "JumpCloud requests (first sync): {requests} made, minimum {minimum} (ratio {:.3}); retries {retries}",
        requests as f64 / minimum as f64
    );
    println!(
        "fetch phase: {:.2} s; concurrency-limited ideal {:.2} s (minimum requests / concurrency x latency); ratio {:.2}",
        first.fetch_duration.as_secs_f64(),
        ideal.as_secs_f64(),
        first.fetch_duration.as_secs_f64() / ideal.as_secs_f64()
    );
    println!(
        "items written: first sync {}, second sync {}",
        first.written + first.deleted,
        second.written + second.deleted
    );
    println!(
        "peak RSS: first sync {first_peak:.1} MiB, second sync {second_peak:.1} MiB; first sync wall {:.1} s",
        first_wall.as_secs_f64()
    );
    println!("peak heap (live allocations): first sync {first_heap:.1} MiB, second sync {second_heap:.1} MiB");
    println!(
        "resident and file-backed (the binary's code, not the sync's data) at the end: {:.1} MiB; MALLOC_ARENA_MAX={}",
        file_rss_mib(),
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    Ok(())
}
