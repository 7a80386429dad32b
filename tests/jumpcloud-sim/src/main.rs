//! `jumpcloud-sim`: serves generated or seeded organizations for the local stack and scripts.
//!
//! Prints `jumpcloud-sim listening on http://HOST:PORT` on stdout once ready (logs go to stderr),
//! and stops cleanly on SIGINT or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Parser;
use jumpcloud_sim::{Faults, GenerateSpec, Org, Simulator};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

const DEFAULT_API_KEY: &str = "sim-api-key";

#[derive(Debug, Parser)]
#[command(version, about = "A JumpCloud API simulator (API 1.0 and 2.0) for tests and the local stack")]
struct Args {
    /// Address to listen on (loopback only unless --allow-non-loopback).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Accept a --host other than a loopback address: the simulator has no real security.
    #[arg(long)]
    allow_non_loopback: bool,

    /// Serve the organizations of this seed file (an Org JSON object, or an array of them).
    #[arg(long, conflicts_with_all = ["users", "groups", "avg_members", "seed"])]
    seed_file: Option<PathBuf>,
    /// Users of the generated organization.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Groups of the generated organization.
    #[arg(long, default_value_t = 20)]
    groups: usize,
    /// Average direct members per generated group.
    #[arg(long, default_value_t = 10)]
    avg_members: usize,
    /// Seed of the generator (same seed, same organization).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// API key of the generated organization [default: sim-api-key], or override of a
    /// one-organization seed file.
    #[arg(long, env = "JUMPCLOUD_SIM_API_KEY")]
    api_key: Option<String>,
    /// Org id of the generated organization (or override of a one-organization seed file).
    #[arg(long, env = "JUMPCLOUD_SIM_ORG_ID")]
    org_id: Option<String>,

    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share (0..1) of API requests answered 429.
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// Retry-After sent with injected 429s.
    #[arg(long)]
    retry_after_secs: Option<u64>,
    /// Share (0..1) of API requests answered 503 or 500.
    #[arg(long, default_value_t = 0.0)]
    rate_5xx: f64,
    /// Share (0..1) of API requests that hang for --hang-ms, then answer 504.
    #[arg(long, default_value_t = 0.0)]
    rate_hang: f64,
    /// How long an injected hang lasts, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    hang_ms: u64,
    /// Seed of the fault RNG (default: from the clock).
    #[arg(long)]
    fault_seed: Option<u64>,

    /// Write the served organizations as a seed file before serving.
    #[arg(long)]
    write_seed: Option<PathBuf>,
    /// Write the listening port to this file once ready.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();

    let ip = parse_host(&args.host)?;
    if !ip.is_loopback() && !args.allow_non_loopback {
        bail!("--host {ip} is not a loopback address; pass --allow-non-loopback to serve it anyway");
    }
    let faults = Faults {
        latency_ms: args.latency_ms,
        rate_429: args.rate_429,
        retry_after_secs: args.retry_after_secs,
        rate_5xx: args.rate_5xx,
        rate_hang: args.rate_hang,
        hang_ms: args.hang_ms,
        seed: args.fault_seed,
    };
    faults.validate().map_err(anyhow::Error::msg)?;

    let orgs = load_orgs(&args)?;
    for (i, org) in orgs.iter().enumerate() {
        let memberships: usize = org.memberships.values().map(|m| m.len()).sum();
        tracing::info!(
            org = i,
            org_id = org.org_id.as_deref().unwrap_or("-"),
            users = org.users.len(),
            groups = org.groups.len(),
            memberships,
            "serving organization"
        );
    }
    if let Some(path) = &args.write_seed {
        write_atomically(path, &Org::list_to_json(&orgs))?;
        tracing::info!(path = %path.display(), "seed written");
    }

    let signals = ShutdownSignals::listen()?;
    let sim = Simulator::start_on(SocketAddr::new(ip, args.port), orgs).await?;
    sim.handle().set_faults(faults);
    if let Some(path) = &args.port_file {
        write_atomically(path, &sim.addr().port().to_string())?;
    }
    println!("jumpcloud-sim listening on {}", sim.url());

    signals.recv().await;
    tracing::info!("shutting down");
    sim.shutdown().await
}

fn parse_host(host: &str) -> anyhow::Result<IpAddr> {
    if host == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.parse().with_context(|| format!("--host {host:?} is not an IP address"))
}

fn load_orgs(args: &Args) -> anyhow::Result<Vec<Org>> {
    let Some(path) = &args.seed_file else {
        return Ok(vec![Org::generate(&GenerateSpec {
            users: args.users,
            groups: args.groups,
            avg_members: args.avg_members,
            seed: args.seed,
            api_key: args.api_key.clone().unwrap_or_else(|| DEFAULT_API_KEY.to_owned()),
            org_id: args.org_id.clone(),
        })]);
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut orgs = Org::list_from_json(&text).with_context(|| format!("loading {}", path.display()))?;
    // The key and org id may be overridden (e.g. to match a local secret) when there is no
    // ambiguity about which organization they belong to.
    if args.api_key.is_some() || args.org_id.is_some() {
        let [org] = orgs.as_mut_slice() else {
            bail!("--api-key / --org-id apply only to a seed file with one organization");
        };
        if let Some(api_key) = &args.api_key {
            org.api_key = api_key.clone();
        }
        if let Some(org_id) = &args.org_id {
            org.org_id = Some(org_id.clone());
        }
    }
    Ok(orgs)
}

/// Writes through a temporary file and a rename, so a script polling for the file never reads it
/// half-written.
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// SIGINT and SIGTERM, listened to from creation: create it before announcing readiness, so that a
/// script that signals right after the ready line is never met by the default (abrupt) handler.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn listen() -> anyhow::Result<Self> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
