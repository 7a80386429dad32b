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

use anyhow::{bail, Context};
use integration_tests::{
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
struct HeapByStage;

impl ProgressSink for HeapByStage {
    fn report(&self, progress: SyncProgress) {
        if !std::env::args().any(|a| a == "--stages") {
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

struct Args {
    users: usize,
    groups: usize,
    avg_members: usize,
    latency_ms: u64,
    concurrency: usize,
    rps: u32,
}

fn parse_args(mut raw: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut a = Args { users: 50_000, groups: 2_000, avg_members: 100, latency_ms: 20, concurrency: 16, rps: 2_000 };
    while let Some(flag) = raw.next() {
        if flag == "--stages" {
            continue;
        }
        let value = raw.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--users" => a.users = value.parse()?,
            "--groups" => a.groups = value.parse()?,
            "--avg-members" => a.avg_members = value.parse()?,
            "--latency-ms" => a.latency_ms = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--rps" => a.rps = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn spec(a: &Args) -> GenerateSpec {
    GenerateSpec {
        users: a.users,
        groups: a.groups,
        avg_members: a.avg_members,
        seed: 42,
        api_key: KEY.into(),
        ..GenerateSpec::default()
    }
}

/// The child: serve the generated organization and print the URL.
async fn serve_sim(a: Args) -> anyhow::Result<()> {
    integration_tests::bench::serve_until_stdin_closes(Org::generate(&spec(&a)), a.latency_ms).await
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
    let mut raw = std::env::args().skip(1).peekable();
    if raw.peek().map(String::as_str) == Some("serve-sim") {
        raw.next();
        return serve_sim(parse_args(raw)?).await;
    }
    let a = parse_args(raw)?;

    // The minimum number of requests, from the same deterministic organization.
    let org = Org::generate(&spec(&a));
    let pages = |n: usize| n.div_ceil(100).max(1);
    let member_pages: usize = org.groups.iter().map(|g| pages(org.members(&g.id).len())).sum();
    let minimum = pages(org.users.len()) + pages(org.groups.len()) + member_pages;
    let total_members: usize = org.groups.iter().map(|g| org.members(&g.id).len()).sum();
    drop(org);
    println!(
        "organization: {} users, {} groups, {} memberships; simulator latency {} ms; client concurrency {}, {} req/s",
        a.users, a.groups, total_members, a.latency_ms, a.concurrency, a.rps
    );

    let sim_args = integration_tests::bench::serve_sim_args(a.users, a.groups, a.avg_members, a.latency_ms);
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
        progress: &HeapByStage,
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
