//! Policy evaluation benchmark (not a test): a 500-rule policy (499 team rules with globs,
//! eligibility by department group or user, approvers, a ticket pattern on every third rule, and
//! a catch-all), a 50,000-user directory (each user in 5 of 2,000 groups), and `--requests`
//! evaluations of random requests, each timed alone. Prints p50 / p99 / max per evaluation and
//! the share of each outcome. Target: p99 under 1 ms (SPEC "Who may do what", issue 9).
//!
//! `cargo run --release -p integration-tests --bin bench-policy -- [--rules 500] [--users 50000]
//!  [--requests 200000] [--seed 7]`

use jit_shared::domain::{
    model::GrantDuration,
    policy::{parse_policy, Decision, GroupRef, PolicyRequest, Refusal, Requester},
};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::{
    collections::{BTreeMap, HashSet},
    time::Instant,
};

/// Policy evaluation benchmark: a large policy, a large directory, random requests timed alone.
#[derive(clap::Parser)]
struct Options {
    /// Rules of the policy: team rules and the catch-all.
    #[arg(long, default_value_t = 500, value_parser = integration_tests::bench::at_least(2usize))]
    rules: usize,
    /// Users of the directory.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Requests evaluated.
    #[arg(long, default_value_t = 200_000, value_parser = integration_tests::bench::at_least(1usize))]
    requests: usize,
    /// The generator's seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// `teams` team rules and a catch-all, as YAML (the parser under test reads the same text a team writes).
fn policy_document(teams: usize) -> String {
    let mut doc = String::from(
        "version: 1\ndefaults:\n  max_duration: 4h\n  approval: {approvers: [manager], timeout: 24h}\nrules:\n",
    );
    for i in 0..teams {
        doc.push_str(&format!(
            "  - groups: [\"team-{i}-*\", \"svc-{i}-?\"]\n    eligible: {{groups: [dept-{}], users: [lead{i}@corp.com]}}\n    max_duration: {}h\n    approval:\n      approvers: [manager, {{group: owners-{i}}}, {{user: sec{i}@corp.com}}]\n      required: {}\n      auto_approve_up_to: 30m\n",
            i % 40,
            1 + i % 8,
            1 + i % 2
        ));
        if i % 3 == 0 {
            doc.push_str("    ticket: \"INC-[0-9]+\"\n    break_glass: true\n");
        }
    }
    doc.push_str("  - groups: [\"*\"]\n    eligible: nobody\n");
    doc
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let o = <Options as clap::Parser>::parse();
    let teams = o.rules - 1;
    let text = policy_document(teams);
    let parse_started = Instant::now();
    let policy = parse_policy(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let parse_time = parse_started.elapsed();
    let mut rng = SmallRng::seed_from_u64(o.seed);

    // The directory: each user in 5 of 2,000 groups (40 departments among them).
    let mut by_dept: Vec<Vec<usize>> = vec![Vec::new(); 40];
    let users: Vec<(String, HashSet<String>)> = (0..o.users)
        .map(|u| {
            let mut groups: HashSet<String> = (0..4).map(|_| format!("group-{}", rng.random_range(0..1_960))).collect();
            let dept = rng.random_range(0..40);
            by_dept[dept].push(u);
            groups.insert(format!("dept-{dept}"));
            (format!("user{u}@corp.com"), groups)
        })
        .collect();
    // Requests: any team's groups (the worst case scans every rule: a group only the catch-all
    // covers), durations 15m..8h, reasons with and without a ticket, 1 in 20 break glass.
    // Half the requests come from a member of the team's department (eligible), half from anyone.
    let group_names: Vec<(usize, String)> =
        (0..teams + teams / 10).flat_map(|i| [(i, format!("team-{i}-admins")), (i, format!("svc-{i}-a"))]).collect();

    let mut samples = Vec::with_capacity(o.requests);
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for n in 0..o.requests {
        let (team, group) = &group_names[rng.random_range(0..group_names.len())];
        let dept = &by_dept[team % 40];
        let user = if rng.random_bool(0.5) && !dept.is_empty() {
            dept[rng.random_range(0..dept.len())]
        } else {
            rng.random_range(0..users.len())
        };
        let (email, groups) = &users[user];
        let duration = GrantDuration::from_secs(60 * rng.random_range(15..=480));
        let reason = if rng.random_bool(0.5) { "INC-4711 disk full" } else { "debugging" };
        let member_of = |g: &str| groups.contains(g);
        let request = PolicyRequest {
            group: GroupRef { id: "5f00000000000000000000aa", name: group },
            requester: Requester { id: "5f00000000000000000000bb", email, username: email, member_of: &member_of },
            duration,
            reason,
            break_glass: n % 20 == 0,
        };
        let started = Instant::now();
        let outcome = policy.evaluate(&request);
        samples.push(started.elapsed().as_nanos());
        let kind = match outcome {
            Ok((_, Decision::AutoApproved)) => "auto-approved",
            Ok((_, Decision::BreakGlass)) => "break glass",
            Ok((_, Decision::NeedsApproval { .. })) => "needs approval",
            Err(Refusal::NoRule { .. }) => "no rule",
            Err(Refusal::Ineligible { .. }) => "ineligible",
            Err(Refusal::OverMaximum { .. }) => "over maximum",
            Err(Refusal::TicketMissing { .. }) => "ticket missing",
            Err(Refusal::BreakGlassNotAllowed { .. }) => "break glass not allowed",
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<u128>() as f64 / samples.len() as f64;
    println!(
        "policy: {} rules ({} bytes of YAML, parsed in {:.1} ms); directory: {} users in 5 groups each",
        policy.rules.len(),
        text.len(),
        parse_time.as_secs_f64() * 1e3,
        o.users
    );
    println!("{} evaluations, each timed alone:", o.requests);
    println!(
        "  p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs, mean {:.2} µs; p99 vs the 1 ms target: {:.4}",
        percentile(&samples, 0.50) as f64 / 1e3,
        percentile(&samples, 0.99) as f64 / 1e3,
        percentile(&samples, 0.999) as f64 / 1e3,
        *samples.last().unwrap() as f64 / 1e3,
        mean / 1e3,
        percentile(&samples, 0.99) as f64 / 1e6,
    );
    for (kind, count) in outcomes {
        println!("  {kind:<24} {count:>7} ({:.1}%)", 100.0 * count as f64 / o.requests as f64);
    }
    Ok(())
}
