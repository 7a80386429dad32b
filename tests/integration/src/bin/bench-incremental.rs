//! Incremental sync benchmark (not a test; issue 13's 6a): a generated organization served by the
//! simulator with a fixed latency per request, synced in full into DynamoDB on moto's server, then
//! changed through the simulator's controls by 0, 10 and 1,000 changes, each batch followed by one
//! incremental run. Prints per run: the events read, the JumpCloud requests made (the target: 1
//! when nothing changed, O(changes) otherwise) and their ratio to the changes and to a full sync's,
//! the items written, and the time from the batch's last change to the stored directory holding
//! it (the run's wall time; the schedule adds up to its one-minute interval). Every change is
//! checked in the stored directory afterwards.
//!
//! `cargo run --release -p integration-tests --bin bench-incremental -- [--users N] [--groups N]
//!  [--avg-members N] [--latency-ms N]`

use anyhow::bail;
use integration_tests::{sdk_config, unique};
use jit_shared::{
    adapters::dynamodb::DynamoStore,
    adapters::jumpcloud::JumpCloudClient,
    adapters::setup::ensure_table,
    clock::SystemClock,
    config::{DirectoryPolicy, JumpCloudLimits},
    credentials::{ApiKey, Credentials},
    domain::{
        incremental::{sync_incremental, IncrementalContext, IncrementalOutcome, IncrementalReport},
        sync::{sync_integration, NoProgress, SyncContext},
    },
    ports::DirectoryStore,
};
use jumpcloud_sim::{Faults, GenerateSpec, Org, OrgHandle, Simulator, User};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{collections::BTreeSet, time::Instant};

const KEY: &str = "bench-incremental-key";

/// Incremental sync benchmark: requests a run and the time from a change to the stored directory.
#[derive(clap::Parser)]
struct Args {
    /// Users of the organization.
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// Groups of the organization.
    #[arg(long, default_value_t = 200)]
    groups: usize,
    /// Mean members a group.
    #[arg(long, default_value_t = 50)]
    avg_members: usize,
    /// The simulator's latency a request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
}

/// What a batch of changes must leave in the stored directory.
#[derive(Default)]
struct Expected {
    members: BTreeSet<(String, String)>,
    not_members: BTreeSet<(String, String)>,
    users: BTreeSet<String>,
    group_names: Vec<(String, String)>,
}

/// `n` changes through the simulator's controls: three in four a membership added or removed,
/// the rest a new user or a renamed group.
fn change(org: &OrgHandle, n: usize, rng: &mut StdRng, round: usize) -> anyhow::Result<Expected> {
    let snapshot = org.snapshot();
    let users: Vec<String> = snapshot.users.iter().filter(|u| !u.suspended).map(|u| u.id.to_string()).collect();
    let groups: Vec<String> =
        snapshot.groups.iter().filter(|g| !g.membership_method.is_dynamic()).map(|g| g.id.to_string()).collect();
    let mut expected = Expected::default();
    for i in 0..n {
        match i % 8 {
            0..=2 => {
                let (g, u) = (&groups[rng.random_range(0..groups.len())], &users[rng.random_range(0..users.len())]);
                if org.add_member(g, u)? || org.is_member(g, u)? {
                    expected.not_members.remove(&(g.clone(), u.clone()));
                    expected.members.insert((g.clone(), u.clone()));
                }
            }
            3..=5 => {
                let g = &groups[rng.random_range(0..groups.len())];
                if let Some(u) = org.members(g)?.into_iter().next() {
                    org.remove_member(g, &u)?;
                    expected.members.remove(&(g.clone(), u.clone()));
                    expected.not_members.insert((g.clone(), u));
                }
            }
            6 => {
                let name = format!("bench-{round}-{i}");
                expected.users.insert(org.add_user(User::new(&name, format!("{name}@corp.example")))?);
            }
            _ => {
                let g = &groups[rng.random_range(0..groups.len())];
                let name = format!("renamed-{round}-{i}");
                org.update_group(g, |group| group.name = name.as_str().into())?;
                expected.group_names.retain(|(id, _)| id != g);
                expected.group_names.push((g.clone(), name));
            }
        }
    }
    Ok(expected)
}

async fn check(store: &DynamoStore, expected: &Expected) -> anyhow::Result<()> {
    for (g, u) in &expected.members {
        if !store.is_member("bench", g, u).await? {
            bail!("membership {g}/{u} added in JumpCloud is not stored");
        }
    }
    for (g, u) in &expected.not_members {
        if store.is_member("bench", g, u).await? {
            bail!("membership {g}/{u} removed in JumpCloud is still stored");
        }
    }
    for u in &expected.users {
        if store.user_by_id("bench", u).await?.is_none() {
            bail!("user {u} created in JumpCloud is not stored");
        }
    }
    for (g, name) in &expected.group_names {
        let stored = store.group_by_id("bench", g).await?.map(|group| group.name);
        if stored.as_deref() != Some(name.as_str()) {
            bail!("group {g} renamed to {name} in JumpCloud is stored as {stored:?}");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let spec = GenerateSpec {
        users: a.users,
        groups: a.groups,
        avg_members: a.avg_members,
        seed: 13,
        api_key: KEY.to_owned(),
        ..GenerateSpec::default()
    };
    let sim = Simulator::start(vec![Org::generate(&spec)]).await?;
    sim.handle().set_faults(Faults { latency_ms: a.latency_ms, ..Faults::default() });
    let sdk = sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("bench-incremental");
    ensure_table(&dynamodb, &table).await?;
    let store = DynamoStore::new(dynamodb, &table);
    let client = JumpCloudClient::with_credentials(
        jit_shared::wiring::http_client(),
        &sim.url(),
        Credentials { token: ApiKey::new(KEY.to_owned()), org_id: None },
        JumpCloudLimits { requests_per_second: 1_000, ..JumpCloudLimits::default() },
    );
    let policy = DirectoryPolicy::default();
    let full = SyncContext {
        store: &store,
        policy: &policy,
        clock: &SystemClock,
        progress: &NoProgress,
        grants: None,
        fanout: None,
    };
    let started = Instant::now();
    let report = sync_integration(&full, "bench", &client).await?;
    let full_requests = sim.handle().total_requests();
    println!(
        "organization: {} users, {} groups, {} memberships; full sync: {full_requests} JumpCloud requests, {:.1} s ({} ms latency per request)",
        report.users,
        report.groups,
        report.memberships,
        started.elapsed().as_secs_f64(),
        a.latency_ms
    );
    println!(
        "| changes | events read | JumpCloud requests | per change | vs full sync | items written | change -> stored |"
    );
    println!("|---|---|---|---|---|---|---|");
    let org = sim.handle().org(0);
    let mut rng = StdRng::seed_from_u64(13);
    let ctx = IncrementalContext { store: &store, policy: &policy, clock: &SystemClock, grants: None };
    for (round, n) in [0usize, 10, 1_000].into_iter().enumerate() {
        let expected = change(&org, n, &mut rng, round)?;
        sim.handle().reset_counts();
        let started = Instant::now();
        let run: IncrementalReport = match sync_incremental(&ctx, "bench", &client, &client).await? {
            IncrementalOutcome::Applied(report) => report,
            other => bail!("the incremental run did not apply the events: {other:?}"),
        };
        let wall = started.elapsed();
        let requests = sim.handle().total_requests();
        check(&store, &expected).await?;
        println!(
            "| {n} | {} | {requests} | {} | {:.4} | {} | {} ms |",
            run.events,
            if n == 0 { "-".to_owned() } else { format!("{:.2}", requests as f64 / n as f64) },
            requests as f64 / full_requests as f64,
            run.written + run.deleted,
            wall.as_millis()
        );
        if n == 0 && requests != 1 {
            bail!("nothing changed, yet {requests} requests (the target is 1)");
        }
    }
    println!(
        "(every change checked in the stored directory; each run also reads again the last 2 minutes of events, the\n overlap for events indexed late, so a run right after another counts its events too; the schedule adds up to\n its 1-minute interval to change -> stored)"
    );
    Ok(())
}
