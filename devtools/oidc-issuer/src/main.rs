//! `jit-oidc-issuer`: the local OIDC issuer for the local stack (scripts/demo.sh) and manual tests.
//!
//! Prints `jit-oidc-issuer listening on http://HOST:PORT` on stdout once ready (logs go to stderr),
//! and stops on SIGINT or SIGTERM. Loopback only: anyone listed signs in without a password.

use anyhow::bail;
use clap::Parser;
use jit_oidc_issuer::{process, ClientRegistration, IssuerConfig, SignInUser, UserSource};
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

#[derive(Debug, Parser)]
#[command(version, about = "A local OpenID Connect issuer for development and tests (never for production)")]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free one (see --port-file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write the listening port to this file once ready.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// A client and its redirect URIs (exact match): `ID=URI[,URI...]`. Repeatable.
    #[arg(long = "client", required = true, value_parser = parse_client)]
    clients: Vec<ClientRegistration>,
    /// The JumpCloud simulator whose activated users may sign in (read at each sign-in).
    #[arg(long, conflicts_with = "users")]
    sim_url: Option<String>,
    /// Which of the simulator's organizations.
    #[arg(long, default_value_t = 0)]
    sim_org: usize,
    /// A user who may sign in, `SUB=EMAIL` (instead of --sim-url). Repeatable.
    #[arg(long = "user", value_parser = parse_user)]
    users: Vec<SignInUser>,
    /// Lifetime of ID tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Lifetime of authorization codes, in seconds.
    #[arg(long, default_value_t = 60)]
    code_ttl_secs: u64,
}

fn parse_client(value: &str) -> Result<ClientRegistration, String> {
    let (id, uris) = value.split_once('=').ok_or("expected ID=URI[,URI...]")?;
    let uris: Vec<&str> = uris.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    if id.trim().is_empty() || uris.is_empty() {
        return Err("expected ID=URI[,URI...]".into());
    }
    Ok(ClientRegistration::new(id.trim(), uris))
}

fn parse_user(value: &str) -> Result<SignInUser, String> {
    let (sub, email) = value.split_once('=').ok_or("expected SUB=EMAIL")?;
    if sub.trim().is_empty() || !email.contains('@') {
        return Err("expected SUB=EMAIL".into());
    }
    Ok(SignInUser::new(sub.trim(), email.trim()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    process::init_logging();
    let args = Args::parse();
    if !args.host.is_loopback() {
        bail!("--host {} is not a loopback address: this issuer signs anyone in without a password", args.host);
    }
    let users = match (args.sim_url, args.users.is_empty()) {
        (Some(url), _) => UserSource::Simulator { url, org: args.sim_org },
        (None, false) => UserSource::Static(args.users),
        (None, true) => bail!("give --sim-url or at least one --user"),
    };
    let mut config = IssuerConfig::new(args.clients, users);
    config.addr = SocketAddr::new(args.host, args.port);
    config.token_ttl = Duration::from_secs(args.token_ttl_secs);
    config.code_ttl = Duration::from_secs(args.code_ttl_secs);

    let stopped = process::stop_signal()?;
    let issuer = jit_oidc_issuer::start(config).await?;
    process::announce("jit-oidc-issuer", issuer.addr(), args.port_file.as_deref())?;
    stopped.await;
    issuer.shutdown().await
}
