//! `portal-e2e-stack`: the whole product on 127.0.0.1 for the portal's end-to-end browser test
//! (`tests/browser/e2e.mjs`): moto's server (`JIT_TEST_AWS_ENDPOINT`, or one started from the
//! project's venv), the JumpCloud simulator, the local OIDC issuer, the real `grant`, `revoke`
//! and `sync` handlers, and the local API in front of them checking ID tokens as API Gateway's
//! JWT authorizer does. The portal is the local API's `/`; people sign in at the issuer's form.
//!
//! The directory: alice and bob are in `engineering`, bob is alice's manager; erin is in no
//! group; dave is in `jit-admins` (`ADMIN_GROUP`). The policy: engineering may ask for
//! `prod-db-*` for up to 2 hours with a ticket, the manager approves beyond 30 minutes, extended
//! up to 8 hours in all.
//!
//! Prints one line, `portal-e2e-stack: {"api": ..., "issuer": ..., "people": {...}, ...}`, once ready
//! (logs go to stderr, `RUST_LOG` filters them), and serves until its standard input closes or
//! it is killed.

use integration_tests::{free_port, functions::Functions, Stack};
use jit_local_api::{LocalApiConfig, RouteTable};
use jit_oidc_issuer::{ClientRegistration, IssuerConfig, UserSource};
use jumpcloud_sim::{Group, Org, Simulator, User};
use serde_json::json;
use std::{net::SocketAddr, sync::Arc};

const KEY: &str = "corp-admin-key-e2e-7a41";
const CLIENT_ID: &str = "jit-portal";

const POLICY: &str = r#"version: 1
rules:
  - groups: ["prod-db-*"]
    eligible: {groups: [engineering]}
    max_duration: 2h
    approval: {approvers: [manager], required: 1, timeout: 24h, auto_approve_up_to: 30m}
    ticket: "^INC-[0-9]+$"
    extend: {max_total: 8h}
  - groups: ["*"]
    eligible: nobody
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();

    let mut org = Org::new(KEY);
    let bob = org.add_user(User::new("bob", "bob@example.com"));
    let mut alice = User::new("alice", "alice@example.com");
    alice.manager = Some(bob.clone());
    alice.set_attribute("manager", "bob@example.com");
    let alice = org.add_user(alice);
    org.add_user(User::new("erin", "erin@example.com"));
    let dave = org.add_user(User::new("dave", "dave@example.com"));
    let db = org.add_group(Group::new("prod-db-admins"));
    let engineering = org.add_group(Group::new("engineering"));
    let admins = org.add_group(Group::new("jit-admins"));
    for (group, user) in [(&engineering, &alice), (&engineering, &bob), (&admins, &dave)] {
        org.add_member(group, user);
    }
    let sim = Simulator::start(vec![org]).await?;
    let stack = Stack::new().await;
    stack.integration("corp", KEY).await;

    // The portal's redirect URI is the API's own `/`: its port is chosen before the issuer
    // registers it, and the API binds it once the handlers exist.
    let api_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let api_url = format!("http://{api_addr}");
    let issuer = jit_oidc_issuer::start(IssuerConfig::new(
        vec![ClientRegistration::new(CLIENT_ID, [format!("{api_url}/")])],
        UserSource::Simulator { url: sim.url(), org: 0 },
    ))
    .await?;

    let functions = Functions::new(
        &stack,
        &sim.url(),
        &[("OIDC_ISSUER", &issuer.url()), ("OIDC_CLIENT_ID", CLIENT_ID), ("ADMIN_GROUP", "jit-admins")],
        None,
    )
    .await;
    functions.sync_now().await;
    functions.apply_policy(POLICY).await;

    let jwt = jit_local_api::JwtConfiguration { issuer: issuer.url(), audience: vec![CLIENT_ID.into()] };
    let mut config = LocalApiConfig::new(RouteTable::deployed()?, Some(jwt));
    config.addr = api_addr;
    let api = jit_local_api::start(config, Arc::new(functions.handlers())).await?;

    let ready = json!({
        "api": api.url(),
        "issuer": issuer.url(),
        "people": {
            "requester": "alice@example.com",
            "manager": "bob@example.com",
            "ineligible": "erin@example.com",
            "admin": "dave@example.com",
        },
        "group": "prod-db-admins",
        // To check what the portal says against JumpCloud itself (a test key of the simulator's).
        "directory": { "url": sim.url(), "api_key": KEY, "group_id": db, "requester_id": alice },
    });
    println!("portal-e2e-stack: {ready}");

    // Serve until the test closes our standard input (or kills us).
    tokio::task::spawn_blocking(|| std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())).await??;
    drop((api, issuer, sim));
    Ok(())
}
