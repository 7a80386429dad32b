//! `jit-local-api`: the deployed HTTP API's stand-in for the local stack (scripts/demo.sh): the
//! template's routes and JWT authorizer in front of the functions served by `cargo lambda watch`.
//!
//! Prints `jit-local-api listening on http://HOST:PORT` on stdout once ready (logs go to stderr),
//! and stops on SIGINT or SIGTERM.

use anyhow::{bail, Context};
use clap::Parser;
use jit_local_api::{Auth, JwtConfiguration, LambdaWatch, LocalApiConfig, RouteTable};
use jit_oidc_issuer::process;
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The HTTP API (API Gateway, payload 2.0, JWT authorizer) in front of locally served functions"
)]
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
    /// `cargo lambda watch`'s address (its Lambda Invoke API).
    #[arg(long)]
    lambda_url: String,
    /// The JWT authorizer's issuer (the template's JwtIssuer).
    #[arg(long)]
    issuer: Option<String>,
    /// An accepted audience (the template's JwtAudience). Repeatable.
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// `requestContext.apiId` of the events.
    #[arg(long, default_value = "local")]
    api_id: String,
    /// Read the routes from this template instead of the built-in infra/template.yaml.
    #[arg(long)]
    template: Option<PathBuf>,
    /// Decide one of the template's conditions, `NAME=true|false` (UseJwt is true unless given).
    #[arg(long = "condition", value_parser = parse_condition)]
    conditions: Vec<(String, bool)>,
}

fn parse_condition(value: &str) -> Result<(String, bool), String> {
    let (name, decided) = value.split_once('=').ok_or("expected NAME=true|false")?;
    let decided = decided.parse::<bool>().map_err(|_| "expected NAME=true|false")?;
    Ok((name.trim().to_owned(), decided))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    process::init_logging();
    let args = Args::parse();
    if !args.host.is_loopback() {
        bail!("--host {} is not a loopback address", args.host);
    }
    let mut conditions = BTreeMap::from([("UseJwt".to_owned(), true)]);
    conditions.extend(args.conditions);
    let routes = match &args.template {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            RouteTable::from_template(&text, &conditions)?
        }
        None => RouteTable::from_template(jit_local_api::routes::TEMPLATE, &conditions)?,
    };
    for route in routes.routes() {
        let auth = match &route.auth {
            Auth::None => "none",
            Auth::Jwt { .. } => "JWT",
            Auth::Iam => "AWS_IAM (refused locally)",
        };
        tracing::info!(route = route.key, function = route.function, auth, "route");
    }
    let jwt = match (args.issuer, args.audiences.is_empty()) {
        (Some(issuer), false) => Some(JwtConfiguration { issuer, audience: args.audiences }),
        (None, true) => None,
        _ => bail!("--issuer and --audience go together"),
    };
    let mut config = LocalApiConfig::new(routes, jwt);
    config.addr = SocketAddr::new(args.host, args.port);
    config.api_id = args.api_id;

    let stopped = process::stop_signal()?;
    let api = jit_local_api::start(config, Arc::new(LambdaWatch::new(args.lambda_url))).await?;
    process::announce("jit-local-api", api.addr(), args.port_file.as_deref())?;
    stopped.await;
    api.shutdown().await
}
