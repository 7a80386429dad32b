//! `e2e-stack`: the whole product on 127.0.0.1 for the portal's end-to-end browser test
//! (`tests/browser/e2e.mjs`) and the API's contract fuzzing (`tests/api/fuzz.py`): moto's server (`JIT_TEST_AWS_ENDPOINT`, or one started from the
//! project's venv), the JumpCloud simulator, the local OIDC issuer, the real `grant`, `revoke`
//! and `sync` handlers, and the local API in front of them checking ID tokens as API Gateway's
//! JWT authorizer does. The portal is the local API's `/`; people sign in at the issuer's form.
//!
//! The directory: alice and bob are in `engineering`, bob is alice's manager; erin is in no
//! group; dave is in `jit-admins` (`ADMIN_GROUP`). The policy: engineering may ask for
//! `prod-db-*` for up to 2 hours with a ticket, the manager approves beyond 30 minutes, extended
//! up to 8 hours in all.
//!
//! Prints one line, `e2e-stack: {"api": ..., "issuer": ..., "people": {...}, "tokens": {...}, ...}`,
//! once ready (`tokens`: an ID token for each person, signed in at the issuer), logs to stderr
//! (`RUST_LOG` filters them). Then it serves until its standard input closes or it is killed; each
//! line `state` read from standard input is answered with one line, `state: {...}`: what the API
//! answered so far (requests, and accepted changes: 2xx answers to POST and DELETE, by route) and
//! what is stored (grants and audit records in DynamoDB, membership changes sent to JumpCloud),
//! so a test can check that rejected requests changed nothing.

use async_trait::async_trait;
use integration_tests::{free_port, functions::Functions, Stack};
use jit_local_api::{Handlers, InvokeError, Invoker, LocalApiConfig, RouteTable};
use jit_oidc_issuer::{ClientRegistration, IssuerConfig, UserSource};
use jit_shared::domain::model::GrantFilter;
use jumpcloud_sim::{Group, Org, RunningSimulator, Simulator, User};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    io::BufRead,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

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

/// The real handlers, counting what the API answered.
struct Recorded {
    handlers: Handlers,
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    requests: u64,
    /// 2xx answers to POST and DELETE, by route (`POST /grants`, ...).
    accepted_changes: BTreeMap<String, u64>,
}

#[async_trait]
impl Invoker for Recorded {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        let route = event["routeKey"].as_str().unwrap_or_default().to_owned();
        let answer = self.handlers.invoke(function, event).await;
        let status = answer.as_ref().ok().and_then(|a| a["statusCode"].as_u64()).unwrap_or(500);
        let mut answers = self.answers.lock().expect("not poisoned");
        answers.requests += 1;
        if (route.starts_with("POST ") || route.starts_with("DELETE ")) && (200..300).contains(&status) {
            *answers.accepted_changes.entry(route).or_default() += 1;
        }
        answer
    }
}

/// What the API answered so far and what is stored now.
async fn state(recorded: &Recorded, functions: &Functions, sim: &RunningSimulator) -> anyhow::Result<Value> {
    let store = &functions.grant.lifecycle.store;
    let (mut grants, mut next) = (0usize, None);
    loop {
        let page = store.list(&GrantFilter::default(), 100, next.as_deref()).await?;
        grants += page.grants.len();
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    let (from, to) = (chrono::DateTime::UNIX_EPOCH, chrono::Utc::now() + chrono::Duration::days(1));
    let audit_records = jit_shared::domain::audit::records_between(store.as_ref(), from, to).await?.len();
    let answers = recorded.answers.lock().expect("not poisoned");
    Ok(json!({
        "requests": answers.requests,
        "accepted_changes": answers.accepted_changes,
        "grants": grants,
        "audit_records": audit_records,
        "membership_changes": sim.handle().request_count("POST /api/v2/usergroups/{id}/members"),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();

    let mut org = Org::new(KEY);
    let bob = org.add_user(User::new("bob", "bob@example.com"));
    let mut alice = User::new("alice", "alice@example.com");
    alice.manager = Some(bob.as_str().into());
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
    let recorded = Arc::new(Recorded { handlers: functions.handlers(), answers: Mutex::default() });
    let api = jit_local_api::start(config, recorded.clone()).await?;

    let people = [
        ("requester", "alice@example.com"),
        ("manager", "bob@example.com"),
        ("ineligible", "erin@example.com"),
        ("admin", "dave@example.com"),
    ];
    let mut tokens = serde_json::Map::new();
    for (_, email) in people {
        let signed_in = jit_oidc_issuer::sign_in(&issuer.url(), CLIENT_ID, &format!("{api_url}/"), email).await?;
        tokens.insert(email.to_owned(), signed_in.id_token.into());
    }
    let ready = json!({
        "api": api.url(),
        "issuer": issuer.url(),
        "people": people.iter().map(|(role, email)| (role.to_string(), Value::from(*email))).collect::<serde_json::Map<_, _>>(),
        "tokens": tokens,
        "group": "prod-db-admins",
        // To check what the portal says against JumpCloud itself (a test key of the simulator's).
        "directory": { "url": sim.url(), "api_key": KEY, "group_id": db, "requester_id": alice },
    });
    println!("e2e-stack: {ready}");

    // Serve until the test closes our standard input (or kills us), answering `state`.
    let (lines, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(command) = commands.recv().await {
        match command.trim() {
            "state" => println!("state: {}", state(&recorded, &functions, &sim).await?),
            "" => {}
            other => eprintln!("e2e-stack: unknown command {other:?} (only `state`)"),
        }
    }
    drop((api, issuer, sim));
    Ok(())
}
