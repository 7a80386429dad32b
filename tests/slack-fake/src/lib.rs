//! A fake of the Slack Web API methods jit-access calls, served on 127.0.0.1, and of the signed
//! interaction requests Slack sends when someone clicks a button, for tests. Written from Slack's
//! published documents:
//! - Web API basics (<https://docs.slack.dev/apis/web-api/>): `POST https://slack.com/api/{method}`,
//!   arguments as `application/x-www-form-urlencoded` or (for methods that accept it)
//!   `application/json`; the token as `Authorization: Bearer` (or a `token` form argument; never
//!   in a JSON body); every answer HTTP 200 with `{"ok": true, ...}` or
//!   `{"ok": false, "error": "<code>"}`; `not_authed` without a token, `invalid_auth` with a wrong one.
//! - `chat.postMessage` (<https://docs.slack.dev/reference/methods/chat.postMessage>): `channel` (a
//!   channel id, a `#name`, or a user id: the app's direct message with that user, answered with
//!   the `D...` conversation id), `text` and/or `blocks` (`no_text` when neither; `invalid_blocks`
//!   unless an array of at most 50 objects with a `type`); `channel_not_found`, `not_in_channel`
//!   when the app is not a member; answers `channel`, `ts`, `message`.
//! - `chat.update` (<https://docs.slack.dev/reference/methods/chat.update>): `channel` (an id: a
//!   direct message's `D...`, not the user's id) and `ts`; `message_not_found`, `channel_not_found`;
//!   `text`/`blocks` replace the message's; answers `channel`, `ts`, `text`.
//! - `chat.postEphemeral` (<https://docs.slack.dev/reference/methods/chat.postEphemeral>): `channel`,
//!   `user`, `text`/`blocks`; `user_not_in_channel`; answers `message_ts`.
//! - `users.lookupByEmail` (<https://docs.slack.dev/reference/methods/users.lookupByEmail>): `email`;
//!   `users_not_found`; answers `user`.
//! - `users.info` (<https://docs.slack.dev/reference/methods/users.info>): `user`, form or query
//!   arguments only (its documented content type); `user_not_found`; answers `user` (`id`, `team_id`,
//!   `name`, `deleted`, `is_bot`, `is_email_confirmed`, `profile.email`, ...).
//! - Interactivity (<https://docs.slack.dev/interactivity/handling-user-interaction>, the
//!   `block_actions` payload <https://docs.slack.dev/reference/interaction-payloads/block_actions-payload>):
//!   a click is a `POST` of `payload=<JSON>` (form-encoded) with `type: block_actions`, `user`,
//!   `team`, `container` (`message_ts`, `channel_id`), `channel`, `message`, `actions[]`
//!   (`action_id`, `block_id`, `value`), `state.values` (the message's inputs), `response_url`;
//!   signed as "Verifying requests from Slack" says
//!   (<https://api.slack.com/authentication/verifying-requests-from-slack>):
//!   `X-Slack-Request-Timestamp` and `X-Slack-Signature` = `v0=` + hex(HMAC-SHA256(signing secret,
//!   `v0:{timestamp}:{body}`)).
//!
//! What it keeps (for tests to inspect through [`SlackHandle`]): every message posted, with its
//! updates, the ephemeral messages, and every call in order. Faults: [`SlackHandle::fail_next`]
//! (an `ok: false` answer) and [`SlackHandle::set_unavailable`] (HTTP 503).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use slack_fake::{FakeSlack, SlackUser, Workspace};
//! let workspace = Workspace::new("T0CORP", "xoxb-test", "signing-secret")
//!     .with_user(SlackUser::new("U0BOB", "bob", "bob@example.com"));
//! let slack = FakeSlack::start(workspace).await?;
//! let url = slack.url(); // SLACK_API_URL: http://127.0.0.1:PORT/api
//! // ... the product posts a request ...
//! let handle = slack.handle();
//! let message = handle.messages().pop().unwrap();
//! let click = handle.click("U0BOB", &message, "approve", None, 1_700_000_000)?;
//! // POST click.body with click.timestamp and click.signature to the product.
//! # Ok(()) }
//! ```

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};
use tokio::{sync::watch, task::JoinHandle};

/// A member of the workspace.
#[derive(Debug, Clone)]
pub struct SlackUser {
    pub id: String,
    pub name: String,
    pub email: String,
    pub deleted: bool,
    pub is_bot: bool,
    pub is_email_confirmed: bool,
}

impl SlackUser {
    pub fn new(id: &str, name: &str, email: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            email: email.into(),
            deleted: false,
            is_bot: false,
            is_email_confirmed: true,
        }
    }
}

/// A channel; `bot_member`: the app was invited (it may post there).
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
    pub bot_member: bool,
}

impl Channel {
    /// A channel the app is a member of, with these users.
    pub fn new(id: &str, name: &str, members: &[&str]) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            bot_member: true,
        }
    }
}

/// The workspace the fake serves, and its app's credentials.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub team_id: String,
    pub bot_token: String,
    pub signing_secret: String,
    pub users: Vec<SlackUser>,
    pub channels: Vec<Channel>,
}

impl Workspace {
    pub fn new(team_id: &str, bot_token: &str, signing_secret: &str) -> Self {
        Self {
            team_id: team_id.into(),
            bot_token: bot_token.into(),
            signing_secret: signing_secret.into(),
            users: vec![],
            channels: vec![],
        }
    }
    pub fn with_user(mut self, user: SlackUser) -> Self {
        self.users.push(user);
        self
    }
    pub fn with_channel(mut self, channel: Channel) -> Self {
        self.channels.push(channel);
        self
    }
}

/// A message the app posted, as it now is.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The conversation's id (`C...`, or `D...` for a direct message).
    pub channel: String,
    pub ts: String,
    pub text: String,
    pub blocks: Value,
    /// Each earlier version (text, blocks), oldest first: one per `chat.update`.
    pub history: Vec<(String, Value)>,
}

impl Message {
    /// The `action_id`s of its buttons, in order.
    pub fn buttons(&self) -> Vec<String> {
        buttons(&self.blocks).into_iter().map(|(_, b)| b["action_id"].as_str().unwrap_or_default().to_owned()).collect()
    }
    /// Its blocks' text, for assertions.
    pub fn shown(&self) -> String {
        format!("{} {}", self.text, self.blocks)
    }
}

/// An ephemeral message: shown to one user only.
#[derive(Debug, Clone, PartialEq)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
}

/// A signed interaction request, as Slack would send it to the app's request URL.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// `payload=<JSON>`, form-encoded (`Content-Type: application/x-www-form-urlencoded`).
    pub body: String,
    /// `X-Slack-Request-Timestamp`.
    pub timestamp: String,
    /// `X-Slack-Signature`.
    pub signature: String,
}

struct Inner {
    workspace: Workspace,
    messages: Vec<Message>,
    ephemerals: Vec<Ephemeral>,
    calls: Vec<String>,
    fail_next: Vec<(String, String)>,
    unavailable: bool,
    /// Message timestamps: unique, increasing, independent of the wall clock.
    next_ts: u64,
    next_trigger: u64,
}

struct Shared {
    state: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Entry point: `FakeSlack::start(workspace).await?`.
pub struct FakeSlack;

impl FakeSlack {
    /// Serves `workspace` on a free port of 127.0.0.1.
    pub async fn start(workspace: Workspace) -> anyhow::Result<RunningFakeSlack> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(Inner {
                workspace,
                messages: vec![],
                ephemerals: vec![],
                calls: vec![],
                fail_next: vec![],
                unavailable: false,
                next_ts: 1,
                next_trigger: 1,
            }),
        });
        let app = Router::new().route("/api/{method}", post(call).get(call)).with_state(shared.clone());
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(RunningFakeSlack { addr, handle: SlackHandle { shared }, stop: stop_tx, _task: task })
    }
}

/// The fake, serving in the background; dropping it stops it.
pub struct RunningFakeSlack {
    addr: SocketAddr,
    handle: SlackHandle,
    stop: watch::Sender<bool>,
    _task: JoinHandle<std::io::Result<()>>,
}

impl RunningFakeSlack {
    /// `http://127.0.0.1:PORT/api`: the value for `SLACK_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }
    pub fn handle(&self) -> SlackHandle {
        self.handle.clone()
    }
}

impl Drop for RunningFakeSlack {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Inspects and steers the fake. Cheap to clone.
#[derive(Clone)]
pub struct SlackHandle {
    shared: Arc<Shared>,
}

impl SlackHandle {
    /// Every message the app posted, as it now is, in the order posted.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.lock().messages.clone()
    }
    pub fn message(&self, channel: &str, ts: &str) -> Option<Message> {
        self.shared.lock().messages.iter().find(|m| m.channel == channel && m.ts == ts).cloned()
    }
    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.shared.lock().ephemerals.clone()
    }
    /// Every Web API call (the method's name), in arrival order, failed ones too.
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }
    pub fn call_count(&self, method: &str) -> usize {
        self.shared.lock().calls.iter().filter(|c| *c == method).count()
    }
    /// The next call of `method` answers `{"ok": false, "error": code}`.
    pub fn fail_next(&self, method: &str, code: &str) {
        self.shared.lock().fail_next.push((method.into(), code.into()));
    }
    /// While set, every call answers HTTP 503.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.lock().unavailable = unavailable;
    }
    /// The direct message conversation of the app with `user_id`.
    pub fn dm_channel(user_id: &str) -> String {
        format!("D{}", user_id.trim_start_matches(['U', 'W']))
    }

    /// `X-Slack-Signature` for `body` at `timestamp`, with the workspace's signing secret.
    pub fn sign(&self, timestamp: i64, body: &str) -> String {
        let secret = self.shared.lock().workspace.signing_secret.clone();
        sign(&secret, timestamp, body)
    }

    /// The request Slack sends when `user_id` clicks the button `action_id` of `message` at
    /// `timestamp` (Unix seconds), the message's comment box holding `comment`. Fails when the
    /// message has no such button, the workspace no such user, or the user is not in the message's
    /// conversation (a direct message is its one user's): Slack could not send it.
    pub fn click(
        &self,
        user_id: &str,
        message: &Message,
        action_id: &str,
        comment: Option<&str>,
        timestamp: i64,
    ) -> anyhow::Result<SignedRequest> {
        let mut state = self.shared.lock();
        let user = state
            .workspace
            .users
            .iter()
            .find(|u| u.id == user_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no user {user_id} in the workspace"))?;
        let (_, members) = conversation(&state, &message.channel).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !members.contains(&user.id) {
            anyhow::bail!("{user_id} is not in the conversation {} and cannot see the message", message.channel);
        }
        let (block_id, button) = buttons(&message.blocks)
            .into_iter()
            .find(|(_, b)| b["action_id"] == action_id)
            .ok_or_else(|| anyhow::anyhow!("the message has no button {action_id:?}"))?;
        let mut values = Map::new();
        for block in message.blocks.as_array().into_iter().flatten().filter(|b| b["type"] == "input") {
            let element = &block["element"];
            if element["type"] == "plain_text_input" {
                let input = json!({ "type": "plain_text_input", "value": comment });
                let action = element["action_id"].as_str().unwrap_or_default().to_owned();
                values.insert(block["block_id"].as_str().unwrap_or_default().to_owned(), json!({ action: input }));
            }
        }
        let channel_name = match state.workspace.channels.iter().find(|c| c.id == message.channel) {
            Some(c) => c.name.clone(),
            None => "directmessage".into(),
        };
        let team = state.workspace.team_id.clone();
        let trigger = state.next_trigger;
        state.next_trigger += 1;
        let payload = json!({
            "type": "block_actions",
            "user": { "id": user.id, "username": user.name, "name": user.name, "team_id": team },
            "api_app_id": "A0FAKEAPP",
            "token": "legacy-verification-token",
            "container": {
                "type": "message", "message_ts": message.ts, "channel_id": message.channel, "is_ephemeral": false,
            },
            "trigger_id": format!("{trigger}.{timestamp}.fake"),
            "team": { "id": team, "domain": "fake" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": message.channel, "name": channel_name },
            "message": { "type": "message", "ts": message.ts, "text": message.text, "blocks": message.blocks },
            "state": { "values": values },
            "response_url": format!("https://hooks.slack.com/actions/{team}/{trigger}/fake"),
            "actions": [{
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "text": button["text"],
                "value": button["value"],
                "style": button["style"],
                "action_ts": format!("{timestamp}.000001"),
            }],
        });
        let body =
            form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish();
        let signature = sign(&state.workspace.signing_secret, timestamp, &body);
        Ok(SignedRequest { body, timestamp: timestamp.to_string(), signature })
    }
}

/// `v0=` + hex(HMAC-SHA256(secret, `v0:{timestamp}:{body}`)).
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("v0={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The buttons of `actions` blocks: (block id, element).
fn buttons(blocks: &Value) -> Vec<(String, Value)> {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| {
            let block_id = b["block_id"].as_str().unwrap_or_default().to_owned();
            b["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["type"] == "button")
                .map(move |e| (block_id.clone(), e.clone()))
        })
        .collect()
}

fn ok(mut fields: Value) -> Response {
    fields["ok"] = true.into();
    Json(fields).into_response()
}

fn refused(code: &str) -> Response {
    Json(json!({ "ok": false, "error": code })).into_response()
}

/// The call's arguments: the query string, then the form or JSON body (methods documented as
/// form-only ignore a JSON body); and the token.
fn arguments(
    method: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> (Map<String, Value>, Option<String>) {
    let mut args = Map::new();
    let form = |text: &[u8], args: &mut Map<String, Value>| {
        for (k, v) in form_urlencoded::parse(text) {
            args.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    };
    if let Some(query) = query {
        form(query.as_bytes(), &mut args);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        let form_only = method == "users.info";
        if let (false, Ok(Value::Object(map))) = (form_only, serde_json::from_slice::<Value>(body)) {
            // A JSON body carries no token (it goes in the Authorization header).
            args.extend(map.into_iter().filter(|(k, _)| k != "token"));
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        form(body, &mut args);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = bearer.or_else(|| args.get("token").and_then(Value::as_str).map(str::to_owned));
    (args, token)
}

fn text_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `blocks` as an array (a form argument carries it as a JSON string): `Err` when invalid.
fn blocks_arg(args: &Map<String, Value>) -> Result<Option<Value>, &'static str> {
    let blocks = match args.get("blocks") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|_| "invalid_blocks")?,
        Some(other) => other.clone(),
    };
    let Some(items) = blocks.as_array() else { return Err("invalid_blocks") };
    if items.len() > 50 || items.iter().any(|b| !b["type"].is_string()) {
        return Err("invalid_blocks");
    }
    Ok(Some(blocks))
}

fn user_object(user: &SlackUser, team: &str) -> Value {
    json!({
        "id": user.id,
        "team_id": team,
        "name": user.name,
        "deleted": user.deleted,
        "real_name": user.name,
        "is_bot": user.is_bot,
        "is_admin": false,
        "is_restricted": false,
        "is_ultra_restricted": false,
        "is_email_confirmed": user.is_email_confirmed,
        "profile": { "real_name": user.name, "display_name": user.name, "email": user.email },
    })
}

async fn call(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    state.calls.push(method.clone());
    if state.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (args, token) = arguments(&method, &headers, query.as_deref(), &body);
    match token {
        None => return refused("not_authed"),
        Some(t) if t != state.workspace.bot_token => return refused("invalid_auth"),
        Some(_) => {}
    }
    if let Some(i) = state.fail_next.iter().position(|(m, _)| *m == method) {
        let (_, code) = state.fail_next.remove(i);
        return refused(&code);
    }
    let state = &mut *state;
    match method.as_str() {
        "chat.postMessage" => post_message(state, &args),
        "chat.update" => update(state, &args),
        "chat.postEphemeral" => post_ephemeral(state, &args),
        "users.lookupByEmail" => {
            let Some(email) = text_arg(&args, "email") else { return refused("invalid_arguments") };
            match state.workspace.users.iter().find(|u| u.email.eq_ignore_ascii_case(email)) {
                Some(user) => ok(json!({ "user": user_object(user, &state.workspace.team_id) })),
                None => refused("users_not_found"),
            }
        }
        "users.info" => {
            let Some(id) = text_arg(&args, "user") else { return refused("invalid_arguments") };
            match state.workspace.users.iter().find(|u| u.id == id) {
                Some(user) => ok(json!({ "user": user_object(user, &state.workspace.team_id) })),
                None => refused("user_not_found"),
            }
        }
        _ => refused("unknown_method"),
    }
}

/// The conversation `channel` names: a channel (by id or `#name`), or a user's direct message.
fn conversation(state: &Inner, channel: &str) -> Result<(String, Vec<String>), &'static str> {
    if let Some(user) = state.workspace.users.iter().find(|u| u.id == channel) {
        return Ok((SlackHandle::dm_channel(&user.id), vec![user.id.clone()]));
    }
    if channel.starts_with('D') {
        let user = state.workspace.users.iter().find(|u| SlackHandle::dm_channel(&u.id) == channel);
        return user.map(|u| (channel.to_owned(), vec![u.id.clone()])).ok_or("channel_not_found");
    }
    let found = state.workspace.channels.iter().find(|c| c.id == channel || channel.strip_prefix('#') == Some(&c.name));
    let found = found.ok_or("channel_not_found")?;
    if !found.bot_member {
        return Err("not_in_channel");
    }
    Ok((found.id.clone(), found.members.clone()))
}

fn post_message(state: &mut Inner, args: &Map<String, Value>) -> Response {
    let Some(channel) = text_arg(args, "channel") else { return refused("channel_not_found") };
    let blocks = match blocks_arg(args) {
        Ok(blocks) => blocks,
        Err(code) => return refused(code),
    };
    let text = text_arg(args, "text").map(str::to_owned);
    if text.is_none() && blocks.is_none() {
        return refused("no_text");
    }
    let (channel, _) = match conversation(state, channel) {
        Ok(found) => found,
        Err(code) => return refused(code),
    };
    let ts = format!("1700000000.{:06}", state.next_ts);
    state.next_ts += 1;
    let message = Message {
        channel: channel.clone(),
        ts: ts.clone(),
        text: text.unwrap_or_default(),
        blocks: blocks.unwrap_or_else(|| json!([])),
        history: vec![],
    };
    let shown =
        json!({ "type": "message", "ts": ts, "text": message.text, "blocks": message.blocks, "bot_id": "B0FAKE" });
    state.messages.push(message);
    ok(json!({ "channel": channel, "ts": ts, "message": shown }))
}

fn update(state: &mut Inner, args: &Map<String, Value>) -> Response {
    let (Some(channel), Some(ts)) = (text_arg(args, "channel"), text_arg(args, "ts")) else {
        return refused("invalid_arguments");
    };
    // An id of a conversation: a user's id is not one.
    if state.workspace.users.iter().any(|u| u.id == channel) {
        return refused("channel_not_found");
    }
    let blocks = match blocks_arg(args) {
        Ok(blocks) => blocks,
        Err(code) => return refused(code),
    };
    let text = text_arg(args, "text").map(str::to_owned);
    if text.is_none() && blocks.is_none() {
        return refused("no_text");
    }
    let Some(message) = state.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts) else {
        return refused("message_not_found");
    };
    message.history.push((message.text.clone(), message.blocks.clone()));
    if let Some(text) = text {
        message.text = text;
    }
    if let Some(blocks) = blocks {
        message.blocks = blocks;
    }
    ok(json!({ "channel": channel, "ts": ts, "text": message.text }))
}

fn post_ephemeral(state: &mut Inner, args: &Map<String, Value>) -> Response {
    let (Some(channel), Some(user)) = (text_arg(args, "channel"), text_arg(args, "user")) else {
        return refused("invalid_arguments");
    };
    let text = text_arg(args, "text").map(str::to_owned);
    if text.is_none() && args.get("blocks").is_none() {
        return refused("no_text");
    }
    let (channel, members) = match conversation(state, channel) {
        Ok(found) => found,
        Err(code) => return refused(code),
    };
    if !members.iter().any(|m| m == user) {
        return refused("user_not_in_channel");
    }
    let ts = format!("1700000000.{:06}", state.next_ts);
    state.next_ts += 1;
    state.ephemerals.push(Ephemeral { channel, user: user.to_owned(), text: text.unwrap_or_default() });
    ok(json!({ "message_ts": ts }))
}
