//! `POST /slack/interactions` through the grant handler, with in-memory stores and the fake Slack
//! Web API (`tests/slack-fake`) on 127.0.0.1: bob asks, his manager carol approves or denies by a
//! click; a click that is not Slack's (bad, stale, future or replayed signature, no headers) gets
//! 401 and changes nothing; a click by someone who is no approver is refused and told so.

use super::requests::{http, world_with_policy, ASK};
use super::*;
use crate::{
    adapters::slack::{SlackApi, SlackApprovals, SlackEventBus},
    clock::Clock,
    credentials::SlackSecret,
    domain::model::{AuditAction, GrantStatus},
    testing::{MemorySlackMessages, StaticSlackApp},
};
use serde_json::json;
use slack_fake::{FakeSlack, Message, RunningFakeSlack, SignedRequest, SlackHandle, SlackUser, Workspace};

const BOT_TOKEN: &str = "xoxb-unit-test-token";
const SIGNING_SECRET: &str = "unit-test-signing-secret";

struct SlackWorld {
    w: World,
    slack: RunningFakeSlack,
    fake: SlackHandle,
    /// The request bob made (pending, carol its approver).
    id: String,
}

fn secret(team_id: Option<&str>) -> Arc<SlackSecret> {
    let mut value = json!({ "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET });
    if let Some(team) = team_id {
        value["team_id"] = team.into();
    }
    Arc::new(SlackSecret::parse(&value.to_string()).unwrap())
}

/// The grant handler with Slack wired as `Lifecycle::from_config` wires it (the bus decorated),
/// over the world's stores, and `app` as the Slack secret.
fn with_slack(w: &World, url: &str, app: Option<Arc<SlackSecret>>) -> GrantHandler {
    let base = (*w.grant.lifecycle).clone();
    let slack = Arc::new(SlackApprovals::new(
        Arc::new(StaticSlackApp(app)),
        SlackApi::new(reqwest::Client::new(), url),
        Arc::new(MemorySlackMessages::default()),
        base.policy_store.clone(),
        base.clock.clone(),
    ));
    let events = Arc::new(SlackEventBus::new(base.events.clone(), slack.clone()));
    GrantHandler { lifecycle: Arc::new(Lifecycle { slack: Some(slack), events, ..base }) }
}

/// The handler tests' policy with the rule's `slack_channel` set.
const CHANNEL_POLICY: &str = r##"
version: 1
defaults: {max_duration: 4h, approval: {approvers: [manager], required: 1, timeout: 24h}}
rules:
  - groups: ["prod-db-*"]
    eligible: {groups: [engineering]}
    slack_channel: "#access"
  - groups: ["*"]
    eligible: nobody
"##;

async fn slack_world(team_id: Option<&str>) -> (SlackWorld, GrantHandler) {
    slack_world_posting(team_id, false).await
}

/// `in_channel`: the rule names `#access` (everyone below is in it), so the request is posted
/// there rather than to carol.
async fn slack_world_posting(team_id: Option<&str>, in_channel: bool) -> (SlackWorld, GrantHandler) {
    let w = world_with_policy().await;
    if in_channel {
        use crate::{
            domain::policy::parse_policy,
            ports::{PolicyChange, PolicyStore},
        };
        // Version 2 in both: the request paths' source and the store the Slack adapter reads.
        w.policies.apply(CHANNEL_POLICY, w.clock.now());
        for (previous, document) in [(None, super::requests::POLICY), (Some(1), CHANNEL_POLICY)] {
            let change = PolicyChange {
                document: document.into(),
                policy: Arc::new(parse_policy(document).unwrap()),
                previous,
                by: "test".into(),
                at: w.clock.now(),
            };
            w.policy_store.apply(&change).await.unwrap();
        }
    }
    let everyone = ["U0BOB", "U0CAROL", "U0ERIN", "U0DAVE"];
    let workspace = Workspace::new("T0CORP", BOT_TOKEN, SIGNING_SECRET)
        .with_user(SlackUser::new("U0BOB", "bob", "bob@example.com"))
        .with_user(SlackUser::new("U0CAROL", "carol", "Carol@Example.com"))
        .with_user(SlackUser::new("U0ERIN", "erin", "erin@example.com"))
        .with_user(SlackUser::new("U0DAVE", "dave", "dave@example.com"))
        .with_channel(slack_fake::Channel::new("C0ACCESS1", "access", &everyone));
    let slack = FakeSlack::start(workspace).await.unwrap();
    let handler = with_slack(&w, &slack.url(), Some(secret(team_id)));
    let (status, request, _) = call(&handler, http("POST", "/grants", "", Some(ASK), Some("bob@example.com"))).await;
    assert_eq!(status, 202, "{request}");
    let fake = slack.handle();
    let id = request["id"].as_str().unwrap().to_owned();
    (SlackWorld { w, fake, slack, id }, handler)
}

impl SlackWorld {
    /// The approval message (one: to carol, the request's only approver, or to the channel).
    fn message(&self) -> Message {
        let messages = self.fake.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        messages.into_iter().next().unwrap()
    }
    fn now(&self) -> i64 {
        self.w.clock.now().timestamp()
    }
    fn click(&self, user: &str, action: &str, comment: Option<&str>) -> SignedRequest {
        self.fake.click(user, &self.message(), action, comment, self.now()).unwrap()
    }
    fn pending(&self) -> crate::domain::model::Grant {
        self.w.store.grant(&self.id).unwrap()
    }
    /// The request's message (the first posted).
    fn request_message(&self) -> Message {
        let messages = self.fake.messages();
        messages.into_iter().find(|m| m.text.starts_with("Access request")).expect("the request's message")
    }
    /// The newest extension message.
    fn extension_message(&self) -> Message {
        let messages = self.fake.messages();
        messages.into_iter().rfind(|m| m.text.starts_with("Extension request")).expect("an extension's message")
    }
    /// The message posted as `message` was, as it is now.
    fn now_of(&self, message: &Message) -> Message {
        self.fake.messages().into_iter().find(|m| m.ts == message.ts && m.channel == message.channel).unwrap()
    }
    fn click_on(&self, message: &Message, user: &str, action: &str, comment: Option<&str>) -> SignedRequest {
        self.fake.click(user, &self.now_of(message), action, comment, self.now()).unwrap()
    }
    /// carol approves bob's request by a click: active for 2 hours.
    async fn approved(&self, handler: &GrantHandler) {
        let click = self.click_on(&self.request_message(), "U0CAROL", "approve", None);
        assert_eq!(send(handler, signed(&click)).await.0, 200);
        assert_eq!(self.pending().status, GrantStatus::Active);
    }
    /// bob asks for an hour more: 202, awaiting carol.
    async fn bob_extends(&self, handler: &GrantHandler, reason: &str) {
        let body = json!({ "duration": "1h", "reason": reason }).to_string();
        let extend = http("POST", &format!("/grants/{}/extend", self.id), "", Some(&body), Some("bob@example.com"));
        let (status, extended, _) = call(handler, extend).await;
        assert_eq!(status, 202, "{extended}");
    }
}

/// The interaction event as API Gateway delivers it: no authorizer, the raw form body.
fn interaction(body: &str, timestamp: Option<&str>, signature: Option<&str>) -> Value {
    let mut e = event("slack-interaction.json");
    let headers = e["headers"].as_object_mut().unwrap();
    headers.remove("x-slack-request-timestamp");
    headers.remove("x-slack-signature");
    if let Some(t) = timestamp {
        headers.insert("x-slack-request-timestamp".into(), t.into());
    }
    if let Some(s) = signature {
        headers.insert("x-slack-signature".into(), s.into());
    }
    e["body"] = body.into();
    e
}

fn signed(click: &SignedRequest) -> Value {
    interaction(&click.body, Some(&click.timestamp), Some(&click.signature))
}

async fn send(handler: &GrantHandler, e: Value) -> (u16, Value) {
    let (status, body, _) = call(handler, e).await;
    (status, body)
}

#[tokio::test]
async fn the_request_is_posted_to_its_approver_with_two_buttons() {
    let (s, _) = slack_world(None).await;
    let message = s.message();
    assert_eq!(message.channel, SlackHandle::dm_channel("U0CAROL"), "a direct message to carol, found by email");
    assert_eq!(message.buttons(), ["approve", "deny"]);
    assert!(message.shown().contains("bob@example.com") && message.shown().contains("prod-db-admins"));
    assert_eq!(s.fake.call_count("users.lookupByEmail"), 1);
}

#[tokio::test]
async fn the_approvers_click_approves_as_the_api_would_and_updates_the_message() {
    let (s, handler) = slack_world(None).await;
    let (status, body) = send(&handler, signed(&s.click("U0CAROL", "approve", Some("for INC-4711")))).await;
    assert_eq!((status, &body), (200, &Value::Null), "acknowledged with an empty body");
    let grant = s.pending();
    assert_eq!(grant.status, GrantStatus::Active);
    assert_eq!(grant.approvals[0].by, "carol@example.com", "the Slack user's email, canonical");
    assert_eq!(grant.approvals[0].comment.as_deref(), Some("for INC-4711"));
    assert!(is_member(&s.w, "g-db", "u-bob"));
    let approved = s.w.store.audit().into_iter().find(|r| r.grant_id == s.id && r.action == AuditAction::Approved);
    assert_eq!(approved.unwrap().actor, "slack:U0CAROL as carol@example.com", "the audit says it came through Slack");
    assert!(s.w.bus.types_for(&s.id).contains(&"Request Approved"));
    let message = s.message();
    assert!(message.buttons().is_empty(), "decided: no buttons left");
    assert!(message.shown().contains("Approved by carol@example.com"), "{}", message.shown());
    assert!(message.shown().contains("active until"), "{}", message.shown());
}

#[tokio::test]
async fn a_click_that_is_not_slacks_gets_401_and_changes_nothing() {
    let (s, handler) = slack_world(None).await;
    let before = s.pending();
    let events = s.w.bus.published().len();
    let click = s.click("U0CAROL", "approve", None);
    let now = s.now();
    let stale = s.fake.click("U0CAROL", &s.message(), "approve", None, now - 301).unwrap();
    let future = s.fake.click("U0CAROL", &s.message(), "approve", None, now + 301).unwrap();
    let wrong_secret = slack_fake::sign("another-apps-secret", now, &click.body);
    let later = (now + 60).to_string();
    let tampered = click.body.replace("U0CAROL", "U0ERIN");
    let cases: Vec<(&str, Value)> = vec![
        ("wrong secret", interaction(&click.body, Some(&click.timestamp), Some(&wrong_secret))),
        ("stale: signed 301 s ago", signed(&stale)),
        ("future: dated 301 s ahead", signed(&future)),
        ("replayed body with another timestamp", interaction(&click.body, Some(&later), Some(&click.signature))),
        ("body changed after signing", interaction(&tampered, Some(&click.timestamp), Some(&click.signature))),
        ("no timestamp", interaction(&click.body, None, Some(&click.signature))),
        ("no signature", interaction(&click.body, Some(&click.timestamp), None)),
        ("no headers", interaction(&click.body, None, None)),
    ];
    for (case, e) in cases {
        let (status, problem) = send(&handler, e).await;
        assert_eq!(status, 401, "{case}: {problem}");
        assert!(problem["detail"].as_str().unwrap().starts_with("not a request from Slack"), "{case}: {problem}");
    }
    assert_eq!(s.pending(), before, "the request is unchanged");
    assert_eq!(s.w.bus.published().len(), events, "nothing published");
    assert_eq!(s.fake.call_count("users.info"), 0, "nothing read from the payload, no Slack call");
    assert_eq!(s.fake.call_count("chat.update") + s.fake.call_count("chat.postEphemeral"), 0);
    // The genuine click still works: the refusals did not spend it.
    assert_eq!(send(&handler, signed(&click)).await.0, 200);
    assert_eq!(s.pending().status, GrantStatus::Active);
}

#[tokio::test]
async fn the_rules_slack_channel_gets_the_request_instead_of_the_approvers() {
    let (s, _) = slack_world_posting(None, true).await;
    let message = s.message();
    assert_eq!(message.channel, "C0ACCESS1", "#access, by name, answered with its id");
    assert_eq!(message.buttons(), ["approve", "deny"]);
    assert_eq!(s.fake.call_count("users.lookupByEmail"), 0, "no direct messages");
}

#[tokio::test]
async fn someone_who_is_not_an_approver_is_refused_told_alone_and_nothing_changes() {
    // In a channel, anyone in it can click.
    let (s, handler) = slack_world_posting(None, true).await;
    let before = s.pending();
    // erin is nobody's approver, bob is the requester, dave is an admin but not an approver.
    for user in ["U0ERIN", "U0BOB", "U0DAVE"] {
        let (status, _) = send(&handler, signed(&s.click(user, "approve", None))).await;
        assert_eq!(status, 200, "{user}: Slack is answered; the refusal is told in Slack");
    }
    assert_eq!(s.pending(), before, "still pending, no approval recorded");
    assert!(!is_member(&s.w, "g-db", "u-bob"));
    let told = s.fake.ephemerals();
    assert_eq!(told.iter().map(|e| e.user.as_str()).collect::<Vec<_>>(), ["U0ERIN", "U0BOB", "U0DAVE"]);
    assert!(told[0].text.contains("not an approver of this request"), "{told:?}");
    assert!(told[1].text.contains("grantee of a request cannot approve"), "{told:?}");
    assert!(told.iter().all(|e| e.channel == "C0ACCESS1"), "in the conversation clicked");
    assert_eq!(s.message().buttons(), ["approve", "deny"], "the message still awaits carol");
}

#[tokio::test]
async fn a_denial_needs_the_comment_box_and_ends_the_request() {
    let (s, handler) = slack_world(None).await;
    assert_eq!(send(&handler, signed(&s.click("U0CAROL", "deny", None))).await.0, 200);
    assert_eq!(s.pending().status, GrantStatus::PendingApproval);
    assert!(s.fake.ephemerals()[0].text.contains("write why in the comment box"));
    assert_eq!(send(&handler, signed(&s.click("U0CAROL", "deny", Some("not during the freeze")))).await.0, 200);
    let denied = s.pending();
    assert_eq!((denied.status, denied.decided_by.as_deref()), (GrantStatus::Denied, Some("carol@example.com")));
    let record = s.w.store.audit().into_iter().find(|r| r.grant_id == s.id && r.action == AuditAction::Denied);
    assert_eq!(record.unwrap().reason.as_deref(), Some("not during the freeze"));
    assert!(s.message().shown().contains("Denied by carol@example.com"), "{}", s.message().shown());
    assert!(s.message().buttons().is_empty());
}

#[tokio::test]
async fn a_stale_button_never_approves_what_the_request_became() {
    let (s, handler) = slack_world(None).await;
    let stale = s.message();
    // carol approves through the API; the message's update fails, so its buttons stay.
    s.fake.fail_next("chat.update", "ratelimited");
    s.fake.fail_next("chat.update", "ratelimited");
    let approve = http("POST", &format!("/grants/{}/approve", s.id), "", None, Some("carol@example.com"));
    assert_eq!(call(&handler, approve).await.0, 200);
    assert_eq!(s.message().buttons(), ["approve", "deny"], "the update failed: the buttons are still there");
    // bob asks for an hour more: an extension awaiting carol, the same approver.
    let extend = http(
        "POST",
        &format!("/grants/{}/extend", s.id),
        "",
        Some(r#"{"duration":"1h","reason":"INC-4711 not done"}"#),
        Some("bob@example.com"),
    );
    let (status, extended, _) = call(&handler, extend).await;
    assert_eq!(status, 202, "{extended}");
    let before = s.pending();
    assert!(before.pending_extension.is_some());

    let click = s.fake.click("U0CAROL", &stale, "approve", None, s.now()).unwrap();
    assert_eq!(send(&handler, signed(&click)).await.0, 200);
    assert_eq!(s.pending(), before, "the extension still awaits a decision made knowingly");
    assert!(s.fake.ephemerals()[0].text.contains("already active"), "{:?}", s.fake.ephemerals());
    assert!(s.request_message().buttons().is_empty(), "the stale message is brought up to date");
    assert_eq!(s.extension_message().buttons(), ["approve_extension", "deny_extension"], "posted on its own");
}

#[tokio::test]
async fn an_extension_is_posted_to_its_approver_and_approved_by_a_click_moves_the_expiry() {
    let (s, handler) = slack_world(None).await;
    s.approved(&handler).await;
    let expiry = s.pending().expires_at.unwrap();
    s.bob_extends(&handler, "INC-4711 the <!channel> restore runs long").await;
    let message = s.extension_message();
    assert_eq!(message.channel, SlackHandle::dm_channel("U0CAROL"), "to the extension's approver, by email");
    assert_eq!(message.buttons(), ["approve_extension", "deny_extension"]);
    assert!(message.shown().contains("asks to extend *prod-db-admins* by *1h*"), "{}", message.shown());
    assert!(message.shown().contains("the &lt;!channel&gt; restore runs long"), "escaped: {}", message.shown());
    assert_eq!(s.fake.messages().len(), 2, "the request's message and the extension's");

    let click = s.click_on(&message, "U0CAROL", "approve_extension", Some("ok, INC-4711"));
    assert_eq!(send(&handler, signed(&click)).await, (200, Value::Null));
    let grant = s.pending();
    assert_eq!(grant.expires_at, Some(expiry + chrono::Duration::hours(1)), "the expiry moved by the hour");
    assert_eq!((grant.pending_extension, grant.extensions.len()), (None, 1));
    let extended = s.w.store.audit().into_iter().find(|r| r.grant_id == s.id && r.action == AuditAction::Extended);
    let extended = extended.expect("the extension is audited");
    assert_eq!(extended.actor, "slack:U0CAROL as carol@example.com");
    assert_eq!(extended.reason.as_deref(), Some("ok, INC-4711"));
    let message = s.now_of(&message);
    assert!(message.buttons().is_empty(), "decided: no buttons left");
    assert!(message.shown().contains("Extended, approved by carol@example.com"), "{}", message.shown());
    let until = grant.expires_at.unwrap().timestamp().to_string();
    assert!(s.request_message().shown().contains(&until), "the request's message shows the new expiry too");
}

#[tokio::test]
async fn an_extension_denied_by_a_click_leaves_the_grant_as_it_was() {
    let (s, handler) = slack_world(None).await;
    s.approved(&handler).await;
    s.bob_extends(&handler, "INC-4711 not done").await;
    let before = s.pending();
    let request_updates = s.request_message().history.len();
    let message = s.extension_message();
    assert_eq!(send(&handler, signed(&s.click_on(&message, "U0CAROL", "deny_extension", None))).await.0, 200);
    assert!(s.fake.ephemerals()[0].text.contains("write why in the comment box"));
    assert_eq!(s.pending(), before, "a denial without its reason does nothing");
    let click = s.click_on(&message, "U0CAROL", "deny_extension", Some("finish tomorrow"));
    assert_eq!(send(&handler, signed(&click)).await.0, 200);
    let denied = s.pending();
    assert_eq!(
        (denied.status, denied.expires_at, denied.pending_extension),
        (GrantStatus::Active, before.expires_at, None)
    );
    let message = s.now_of(&message);
    assert!(message.buttons().is_empty());
    assert!(message.shown().contains("Extension denied"), "{}", message.shown());
    assert_eq!(s.request_message().history.len(), request_updates, "the request's message has nothing new to say");
}

#[tokio::test]
async fn a_stale_extension_button_never_decides_a_later_extension() {
    let (s, handler) = slack_world(None).await;
    s.approved(&handler).await;
    s.bob_extends(&handler, "INC-4711 first").await;
    let stale = s.extension_message();
    // carol denies it through the API; the update of its message fails, so its buttons stay.
    s.fake.fail_next("chat.update", "ratelimited");
    let deny =
        http("POST", &format!("/grants/{}/deny", s.id), "", Some(r#"{"comment":"no"}"#), Some("carol@example.com"));
    assert_eq!(call(&handler, deny).await.0, 200);
    assert_eq!(s.now_of(&stale).buttons(), ["approve_extension", "deny_extension"], "the update failed");
    // bob asks again: another extension, awaiting the same approver.
    s.w.clock.advance(chrono::Duration::minutes(1));
    s.bob_extends(&handler, "INC-4711 second").await;
    let second = s.extension_message();
    assert_ne!(second.ts, stale.ts);
    let before = s.pending();

    assert_eq!(send(&handler, signed(&s.click_on(&stale, "U0CAROL", "approve_extension", None))).await.0, 200);
    assert_eq!(s.pending(), before, "the second extension still awaits a decision made knowingly");
    assert!(s.fake.ephemerals()[0].text.contains("no longer awaits approval"), "{:?}", s.fake.ephemerals());
    // Its own button decides it.
    assert_eq!(send(&handler, signed(&s.click_on(&second, "U0CAROL", "approve_extension", None))).await.0, 200);
    let extended = s.pending();
    assert_eq!(extended.expires_at, Some(before.expires_at.unwrap() + chrono::Duration::hours(1)));
    assert_eq!(extended.extensions[0].reason, "INC-4711 second");
}

#[tokio::test]
async fn in_the_rules_channel_the_grantee_and_strangers_cannot_decide_an_extension() {
    let (s, handler) = slack_world_posting(None, true).await;
    s.approved(&handler).await;
    s.bob_extends(&handler, "INC-4711 not done").await;
    let message = s.extension_message();
    assert_eq!(message.channel, "C0ACCESS1", "the applied rule's slack_channel");
    let before = s.pending();
    for user in ["U0BOB", "U0ERIN"] {
        assert_eq!(send(&handler, signed(&s.click_on(&message, user, "approve_extension", None))).await.0, 200);
    }
    assert_eq!(s.pending(), before, "nothing approved");
    let told = s.fake.ephemerals();
    assert!(told[0].text.contains("grantee of a request cannot approve"), "{told:?}");
    assert!(told[1].text.contains("not an approver"), "{told:?}");
    assert_eq!(s.now_of(&message).buttons(), ["approve_extension", "deny_extension"], "still awaits carol");
}

#[tokio::test]
async fn a_click_on_a_lapsed_extension_is_refused_and_its_message_says_so() {
    let (s, handler) = slack_world(None).await;
    s.approved(&handler).await;
    // Extensions of the rule lapse after 30 minutes without approval.
    s.w.policies.apply(&super::requests::POLICY.replace("timeout: 24h", "timeout: 30m"), s.w.clock.now());
    s.bob_extends(&handler, "INC-4711 not done").await;
    let before = s.pending();
    s.w.clock.advance(chrono::Duration::minutes(31));
    let message = s.extension_message();
    assert_eq!(send(&handler, signed(&s.click_on(&message, "U0CAROL", "approve_extension", None))).await.0, 200);
    assert_eq!(s.pending(), before);
    assert!(s.fake.ephemerals()[0].text.contains("timed out"), "{:?}", s.fake.ephemerals());
    let message = s.now_of(&message);
    assert!(message.buttons().is_empty());
    assert!(message.shown().contains("Expired without enough approvals"), "{}", message.shown());
}

#[tokio::test]
async fn slack_off_answers_404_and_limits_hold_before_anything_is_read() {
    let (s, handler) = slack_world(None).await;
    let click = s.click("U0CAROL", "approve", None);
    // Not wired (the handler tests' lifecycle), or wired without a secret.
    assert_eq!(send(&s.w.grant, signed(&click)).await.0, 404);
    let off = with_slack(&s.w, &s.slack.url(), None);
    assert_eq!(send(&off, signed(&click)).await.0, 404);
    // Too large: 413, even signed.
    let big = format!("{}&pad={}", click.body, "x".repeat(40 * 1024));
    let sig = s.fake.sign(s.now(), &big);
    assert_eq!(send(&handler, interaction(&big, Some(&click.timestamp), Some(&sig))).await.0, 413);
    // Other methods on the path: 405.
    let mut get = signed(&click);
    get["requestContext"]["http"]["method"] = "GET".into();
    assert_eq!(send(&handler, get).await.0, 405);
    assert_eq!(s.pending().status, GrantStatus::PendingApproval);
}

#[tokio::test]
async fn a_base64_body_is_verified_as_sent() {
    use base64_engine::encode;
    let (s, handler) = slack_world(None).await;
    let click = s.click("U0CAROL", "approve", None);
    let mut e = signed(&click);
    e["body"] = encode(click.body.as_bytes()).into();
    e["isBase64Encoded"] = true.into();
    assert_eq!(send(&handler, e).await.0, 200);
    assert_eq!(s.pending().status, GrantStatus::Active);
}

#[tokio::test]
async fn a_click_from_another_workspace_is_refused_when_the_secret_names_its_own() {
    let (s, handler) = slack_world(Some("T0OTHER")).await;
    let (status, problem) = send(&handler, signed(&s.click("U0CAROL", "approve", None))).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(s.pending().status, GrantStatus::PendingApproval);
}

/// Standard base64 (RFC 4648), enough for one test.
mod base64_engine {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn an_extension_left_pending_when_the_grant_ends_is_marked_moot() {
    let (s, handler) = slack_world(None).await;
    s.approved(&handler).await;
    s.bob_extends(&handler, "INC-4711 not done").await;
    let message = s.extension_message();
    // bob gives his access up (revoke, wired with Slack as grant is).
    let revoke = crate::handlers::revoke::RevokeHandler { lifecycle: handler.lifecycle.clone() };
    let delete = super::requests::with_id_as(event("grant-revoke-http.json"), &s.id, "bob@example.com");
    let (status, revoked, _) = split(revoke.handle(LambdaEvent::new(delete, Context::default())).await.unwrap());
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")), "{revoked}");
    let message = s.now_of(&message);
    assert!(message.buttons().is_empty(), "nothing left to decide");
    assert!(message.shown().contains("The grant ended before the extension was decided"), "{}", message.shown());
}
