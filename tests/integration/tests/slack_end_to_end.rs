//! Slack approvals end to end: the real `grant`, `revoke` and `sync` handlers and adapters as
//! `Lifecycle::from_config` wires them, moto's server (DynamoDB, Secrets Manager, Scheduler,
//! EventBridge), the JumpCloud simulator, and the fake Slack Web API (`tests/slack-fake`), all on
//! 127.0.0.1. The Slack secret is found by its tag in Secrets Manager; the clicks are the signed
//! requests Slack would send, dated by the functions' (manual) clock.

use integration_tests::{event, lambda_event, unique, Stack};
use jit_shared::{
    adapters::setup,
    clock::{Clock, ManualClock},
    domain::{
        model::{
            schedules::{expiry_schedule_expression, expiry_schedule_name},
            AuditAction,
        },
        policy::parse_policy,
    },
    handlers::{grant::GrantHandler, revoke::RevokeHandler, sync::SyncHandler},
    ports::PolicyChange,
    wiring::{Function, Lifecycle},
};
use jumpcloud_sim::{Group, Org, RunningSimulator, Simulator, User};
use serde_json::{json, Value};
use slack_fake::{Channel, FakeSlack, Message, RunningFakeSlack, SignedRequest, SlackHandle, SlackUser, Workspace};
use std::sync::Arc;

const KEY: &str = "corp-admin-key-51ac";
const BOT_TOKEN: &str = "xoxb-e2e-bot-token";
const SIGNING_SECRET: &str = "e2e-signing-secret-4f1d";

/// bob approves alice's requests (her manager); carol approves nothing.
const DM_POLICY: &str = "version: 1\nrules:\n  - groups: [\"prod-db-*\"]\n    eligible: everyone\n    max_duration: 4h\n    approval: {approvers: [manager], required: 1, timeout: 1h}\n";
const CHANNEL_POLICY: &str = "version: 1\nrules:\n  - groups: [\"prod-db-*\"]\n    eligible: everyone\n    max_duration: 4h\n    approval: {approvers: [manager], required: 1, timeout: 1h}\n    slack_channel: \"#db-access\"\n";

struct World {
    stack: Stack,
    sim: RunningSimulator,
    _slack: RunningFakeSlack,
    fake: SlackHandle,
    grant: GrantHandler,
    revoke: RevokeHandler,
    clock: Arc<ManualClock>,
    alice: String,
    db: String,
    schedule_group: String,
}

/// How Slack is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slack {
    /// `SLACK_ENABLED=true` and the secret tagged.
    On,
    /// `SLACK_ENABLED=true`, no secret yet.
    NoSecret,
    /// The secret tagged, but `SLACK_ENABLED` unset (the default: off).
    Disabled,
}

/// A stack with Slack set up as `slack`, the directory synced and `policy` applied.
async fn world(policy: &str, slack_setup: Slack) -> World {
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    let bob = org.add_user(User::new("bob", "bob@example.com"));
    org.add_user(User::new("carol", "carol@example.com"));
    let mut alice = User::new("alice", "alice@example.com");
    alice.manager = Some(bob.into());
    alice.set_attribute("manager", "bob@example.com");
    let alice = org.add_user(alice);
    let db = org.add_group(Group::new("prod-db-admins"));
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;

    let members = ["U0ALICE", "U0BOB", "U0CAROL"];
    let workspace = Workspace::new("T0CORP", BOT_TOKEN, SIGNING_SECRET)
        .with_user(SlackUser::new("U0ALICE", "alice", "alice@example.com"))
        .with_user(SlackUser::new("U0BOB", "bob", "bob@example.com"))
        .with_user(SlackUser::new("U0CAROL", "carol", "carol@example.com"))
        .with_channel(Channel::new("C0DBACCESS", "db-access", &members));
    let slack = FakeSlack::start(workspace).await.unwrap();
    let slack_tag = unique("slack-tag");
    if slack_setup != Slack::NoSecret {
        let value = json!({ "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET, "team_id": "T0CORP" });
        stack.secret(&value.to_string(), &[(&slack_tag, "true")]).await;
    }

    let (schedule_group, bus) = (unique("sg"), unique("bus"));
    setup::ensure_schedule_group(&aws_sdk_scheduler::Client::new(&stack.sdk), &schedule_group).await.unwrap();
    setup::ensure_event_bus(&aws_sdk_eventbridge::Client::new(&stack.sdk), &bus).await.unwrap();
    let enabled = if slack_setup == Slack::Disabled { "" } else { "true" };
    let config = stack.config(
        &sim.url(),
        &[
            ("SLACK_ENABLED", enabled),
            ("SCHEDULE_GROUP", &schedule_group),
            ("EVENT_BUS_NAME", &bus),
            ("REVOKE_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:revoke"),
            ("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/jit-access-scheduler"),
            ("REQUESTABLE_GROUPS", "prod-*"),
            ("SLACK_API_URL", &slack.url()),
            ("SLACK_SECRET_TAG_KEY", &slack_tag),
        ],
    );
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let lifecycle = |function| {
        let built = Lifecycle::from_config(&stack.sdk, &config, function).expect("lifecycle");
        Arc::new(Lifecycle { clock: clock.clone(), ..built })
    };
    let grant = GrantHandler { lifecycle: lifecycle(Function::Grant) };
    let sync = SyncHandler::from_config(&stack.sdk, &config).unwrap();
    let synced = sync.handle(lambda_event(integration_tests::http_event("POST", "/sync", Some("{}")))).await.unwrap();
    assert_eq!(synced["statusCode"], 200, "{synced}");
    let change = PolicyChange {
        document: policy.into(),
        policy: Arc::new(parse_policy(policy).unwrap()),
        previous: None,
        by: "test".into(),
        at: clock.now(),
    };
    grant.lifecycle.policy_store.apply(&change).await.unwrap();
    World {
        revoke: RevokeHandler { lifecycle: lifecycle(Function::Revoke) },
        grant,
        fake: slack.handle(),
        _slack: slack,
        stack,
        sim,
        clock,
        alice,
        db,
        schedule_group,
    }
}

/// alice (signed in with a JWT) asks for prod-db-admins for 2 hours.
fn alice_asks() -> Value {
    let mut e = event("grant-create.json");
    e["requestContext"]["authorizer"] = json!({
        "jwt": { "claims": { "iss": "https://sso.example.com", "sub": "alice", "email": "alice@example.com", "email_verified": "true" } }
    });
    e["headers"].as_object_mut().unwrap().remove("idempotency-key");
    e["body"] = json!({"group": "prod-db-admins", "duration": "2h", "reason": "INC-7 replica lag"}).to_string().into();
    e
}

/// alice (signed in) asks for `duration` more of grant `id`.
fn alice_extends(id: &str, duration: &str) -> Value {
    let mut e = event("grant-extend.json");
    let path = format!("/grants/{id}/extend");
    e["rawPath"] = path.clone().into();
    e["requestContext"]["http"]["path"] = path.into();
    e["pathParameters"]["id"] = id.into();
    e["requestContext"]["authorizer"] = json!({
        "jwt": { "claims": { "iss": "https://sso.example.com", "sub": "alice", "email": "alice@example.com", "email_verified": "true" } }
    });
    e["body"] = json!({"duration": duration, "reason": "INC-7 the rebuild runs long"}).to_string().into();
    e
}

/// The interaction request as API Gateway hands it over: no authorizer, Slack's headers and body.
fn delivered(click: &SignedRequest) -> Value {
    let mut e = event("slack-interaction.json");
    e["headers"]["x-slack-request-timestamp"] = click.timestamp.clone().into();
    e["headers"]["x-slack-signature"] = click.signature.clone().into();
    e["body"] = click.body.clone().into();
    e
}

impl World {
    async fn call_grant(&self, e: Value) -> (u16, Value) {
        let response = self.grant.handle(lambda_event(e)).await.unwrap();
        let status = response["statusCode"].as_u64().unwrap() as u16;
        let body = response["body"]
            .as_str()
            .filter(|b| !b.is_empty())
            .map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
        (status, body)
    }

    async fn request(&self) -> String {
        let (status, request) = self.call_grant(alice_asks()).await;
        assert_eq!(status, 202, "{request}");
        request["id"].as_str().unwrap().to_owned()
    }

    fn only_message(&self) -> Message {
        let messages = self.fake.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        messages.into_iter().next().unwrap()
    }

    /// `user` clicks `action` on the request's message, now.
    async fn click(&self, user: &str, action: &str, comment: Option<&str>) -> u16 {
        let click = self.fake.click(user, &self.only_message(), action, comment, self.clock.now().timestamp()).unwrap();
        self.call_grant(delivered(&click)).await.0
    }

    async fn status(&self, id: &str) -> String {
        self.grant.lifecycle.store.get(id).await.unwrap().unwrap().status.as_str().to_owned()
    }

    fn member(&self) -> bool {
        self.sim.handle().org(0).is_member(&self.db, &self.alice).unwrap()
    }

    async fn expire(&self, id: &str) -> Value {
        let mut expiry = event("revoke-expiry.json");
        expiry["grant_id"] = id.into();
        self.revoke.handle(lambda_event(expiry)).await.unwrap()
    }
}

#[tokio::test]
async fn a_request_approved_in_slack_is_active_and_its_message_follows_it_to_the_end() {
    let w = world(DM_POLICY, Slack::On).await;
    let id = w.request().await;
    // Posted to the approver, found by email, with the two buttons.
    let message = w.only_message();
    assert_eq!(message.channel, SlackHandle::dm_channel("U0BOB"), "a direct message to bob, alice's manager");
    assert_eq!(message.buttons(), ["approve", "deny"]);
    assert_eq!(w.fake.call_count("users.lookupByEmail"), 1);
    assert!(!w.member(), "nothing in JumpCloud while pending");
    let stored = w.stack.item(&format!("SLACK#{id}"), "MESSAGES").await.expect("the message is recorded");
    assert_eq!(stored["messages"].as_l().unwrap().len(), 1);

    w.clock.advance(chrono::Duration::minutes(5));
    assert_eq!(w.click("U0BOB", "approve", Some("ok for INC-7")).await, 200);
    assert_eq!(w.status(&id).await, "active");
    assert!(w.member(), "the membership is added in JumpCloud");
    let audit = w.grant.lifecycle.store.audit_for(&id).await.unwrap();
    let approved = audit.iter().find(|r| r.action == AuditAction::Approved).expect("the approval is audited");
    assert_eq!(approved.actor, "slack:U0BOB as bob@example.com");
    assert_eq!(approved.reason.as_deref(), Some("ok for INC-7"));
    assert!(audit.iter().any(|r| r.action == AuditAction::Activated));
    let message = w.only_message();
    assert!(message.buttons().is_empty(), "decided: no buttons");
    assert!(message.shown().contains("Approved by bob@example.com") && message.shown().contains("active until"));

    // At expiry the membership goes, and the message says so.
    w.clock.advance(chrono::Duration::minutes(121));
    let ended = w.expire(&id).await;
    assert_eq!(ended["grant"]["status"], "expired", "{ended}");
    assert!(!w.member());
    let message = w.only_message();
    assert!(message.shown().contains("access expired"), "{}", message.shown());
    assert!(
        message.history.len() >= 3,
        "updated at the approval, the activation and the expiry: {}",
        message.history.len()
    );
}

#[tokio::test]
async fn an_extension_approved_in_slack_moves_the_grants_expiry_and_its_schedule() {
    let w = world(DM_POLICY, Slack::On).await;
    let id = w.request().await;
    assert_eq!(w.click("U0BOB", "approve", None).await, 200);
    let granted = w.grant.lifecycle.store.get(&id).await.unwrap().unwrap();
    assert_eq!(granted.status.as_str(), "active");
    let expiry = granted.expires_at.unwrap();

    // alice asks for an hour more: bob, her manager, gets a message of its own.
    w.clock.advance(chrono::Duration::minutes(30));
    let (status, pending) = w.call_grant(alice_extends(&id, "1h")).await;
    assert_eq!(status, 202, "{pending}");
    let messages = w.fake.messages();
    assert_eq!(messages.len(), 2, "the request's message, then the extension's: {messages:?}");
    let message = messages[1].clone();
    assert_eq!(message.channel, SlackHandle::dm_channel("U0BOB"));
    assert_eq!(message.buttons(), ["approve_extension", "deny_extension"]);
    assert!(message.shown().contains("INC-7 the rebuild runs long"), "{}", message.shown());
    let at = pending["pending_extension"]["at"].as_str().unwrap();
    let subject = format!(
        "SLACK#{id}#extension#{}",
        chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    );
    let stored = w.stack.item(&subject, "MESSAGES").await.expect("the extension's message is recorded apart");
    assert_eq!(stored["messages"].as_l().unwrap().len(), 1);

    // bob approves it in Slack: a signed click on the extension's message.
    w.clock.advance(chrono::Duration::minutes(1));
    let click = w.fake.click("U0BOB", &message, "approve_extension", None, w.clock.now().timestamp()).unwrap();
    assert_eq!(w.call_grant(delivered(&click)).await.0, 200);
    let extended = w.grant.lifecycle.store.get(&id).await.unwrap().unwrap();
    let new_expiry = expiry + chrono::Duration::hours(1);
    assert_eq!(extended.expires_at, Some(new_expiry), "the expiry moved by the hour");
    assert!(extended.pending_extension.is_none());
    let audit = w.grant.lifecycle.store.audit_for(&id).await.unwrap();
    let record = audit.iter().find(|r| r.action == AuditAction::Extended).expect("the extension is audited");
    assert_eq!(record.actor, "slack:U0BOB as bob@example.com");
    // The expiry schedule moved with it.
    let schedule = aws_sdk_scheduler::Client::new(&w.stack.sdk)
        .get_schedule()
        .group_name(&w.schedule_group)
        .name(expiry_schedule_name(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(schedule.schedule_expression(), Some(expiry_schedule_expression(new_expiry).as_str()));
    // Both messages say so.
    let messages = w.fake.messages();
    assert!(messages[1].buttons().is_empty(), "decided: no buttons");
    assert!(messages[1].shown().contains("Extended, approved by bob@example.com"), "{}", messages[1].shown());
    assert!(messages[0].shown().contains(&new_expiry.timestamp().to_string()), "{}", messages[0].shown());
    assert!(w.member());
}

#[tokio::test]
async fn in_the_rules_channel_a_non_approver_is_refused_and_the_expired_request_is_marked() {
    let w = world(CHANNEL_POLICY, Slack::On).await;
    let id = w.request().await;
    let message = w.only_message();
    assert_eq!(message.channel, "C0DBACCESS", "the rule's slack_channel, not a direct message");
    assert_eq!(w.fake.call_count("users.lookupByEmail"), 0);

    // carol is in the channel but no approver; alice is the requester: both refused, told alone.
    for user in ["U0CAROL", "U0ALICE"] {
        assert_eq!(w.click(user, "approve", None).await, 200, "{user}");
    }
    assert_eq!(w.status(&id).await, "pending_approval");
    assert!(!w.member());
    let audit = w.grant.lifecycle.store.audit_for(&id).await.unwrap();
    assert!(audit.iter().all(|r| r.action != AuditAction::Approved), "no approval recorded");
    let told = w.fake.ephemerals();
    assert_eq!(told.iter().map(|e| e.user.as_str()).collect::<Vec<_>>(), ["U0CAROL", "U0ALICE"]);
    assert!(told[0].text.contains("not an approver"), "{told:?}");

    // A click replayed with another timestamp is not Slack's: 401, nothing changes.
    let click = w.fake.click("U0BOB", &w.only_message(), "approve", None, w.clock.now().timestamp()).unwrap();
    let replayed = SignedRequest { timestamp: (w.clock.now().timestamp() + 30).to_string(), ..click };
    assert_eq!(w.call_grant(delivered(&replayed)).await.0, 401);
    assert_eq!(w.status(&id).await, "pending_approval");

    // Nobody approved within the hour: the request's schedule ends it, and the message says so.
    w.clock.advance(chrono::Duration::minutes(61));
    let ended = w.expire(&id).await;
    assert_eq!(ended["grant"]["status"], "request_expired", "{ended}");
    let message = w.only_message();
    assert!(message.buttons().is_empty());
    assert!(message.shown().contains("Expired without enough approvals"), "{}", message.shown());
    assert!(!w.member(), "invariant 8: an expired request never adds the membership");
}

#[tokio::test]
async fn slack_down_never_fails_a_request_and_without_its_secret_the_route_is_not_there() {
    let w = world(DM_POLICY, Slack::On).await;
    w.fake.set_unavailable(true);
    let id = w.request().await;
    assert_eq!(w.status(&id).await, "pending_approval", "requested, whatever Slack says");
    assert!(w.fake.messages().is_empty());
    assert!(w.stack.item(&format!("SLACK#{id}"), "MESSAGES").await.is_none(), "nothing to update later");

    let click = SignedRequest { body: "payload=%7B%7D".into(), timestamp: "1".into(), signature: "v0=00".into() };
    for (setup, why) in [(Slack::NoSecret, "no Slack secret"), (Slack::Disabled, "SLACK_ENABLED unset")] {
        let off = world(DM_POLICY, setup).await;
        let id = off.request().await;
        assert!(off.fake.calls().is_empty(), "{why}: Slack is never called");
        assert_eq!(off.call_grant(delivered(&click)).await.0, 404, "{why}");
        assert_eq!(off.status(&id).await, "pending_approval");
        // Disabled: no Slack adapter at all, so nothing that could look for its secret.
        assert_eq!(off.grant.lifecycle.slack.is_none(), setup == Slack::Disabled, "{why}");
    }
}
