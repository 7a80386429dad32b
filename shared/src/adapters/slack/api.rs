//! The Slack Web API methods the product calls, over reqwest, at `SLACK_API_URL` (default
//! `https://slack.com/api`): `chat.postMessage`, `chat.update`, `chat.postEphemeral`
//! (scope `chat:write`), `users.lookupByEmail` and `users.info` (`users:read`,
//! `users:read.email`). Method reference: <https://docs.slack.dev/reference/methods>.
//!
//! The bot token goes in `Authorization: Bearer` (never in a URL or a body). `chat.*` take a JSON
//! body; `users.*` take form arguments (`users.info` accepts no JSON body). Slack answers HTTP
//! 200 with `{"ok": false, "error": "<code>"}` for a refused call and 429 when rate limited: both
//! are errors here, with the method and Slack's code, never the token. Each call is bounded by
//! [`CALL_TIMEOUT`] and never retried: Slack is a notification, best effort.

use crate::credentials::SlackBotToken;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// One Web API call at most (so that a slow Slack cannot hold a grant or Slack's 3-second wait).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// `{"ok": false, "error": code}`.
    #[error("Slack {method}: {code}")]
    Refused { method: &'static str, code: String },
    #[error("Slack {method}: HTTP {status}")]
    Status { method: &'static str, status: u16 },
    #[error("Slack {method}: {reason}")]
    Transport { method: &'static str, reason: String },
}

impl SlackError {
    pub fn method(&self) -> &'static str {
        match self {
            Self::Refused { method, .. } | Self::Status { method, .. } | Self::Transport { method, .. } => method,
        }
    }
    /// Slack's error code, for a refused call.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A message the app posted: where it is, to update it later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct PostedMessage {
    /// The channel's id (a direct message's `D...`, not the user's id).
    pub channel: String,
    pub ts: String,
}

/// The parts of Slack's user object the product reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SlackUser {
    pub id: String,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub is_bot: bool,
    /// Absent in some answers; `false` means the address is not proven to be theirs.
    #[serde(default)]
    pub is_email_confirmed: Option<bool>,
    /// A user of another organization (Slack Connect).
    #[serde(default)]
    pub is_stranger: bool,
    #[serde(default)]
    pub profile: SlackProfile,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SlackProfile {
    /// Present with `users:read.email`.
    #[serde(default)]
    pub email: Option<String>,
}

/// Slack's Web API at one base URL. Cheap to clone.
#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: String,
}

impl SlackApi {
    /// `base`: `SLACK_API_URL` (`https://slack.com/api`, or the fake's in tests).
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self { http, base: base.into().trim_end_matches('/').to_owned() }
    }

    /// `chat.postMessage`: `channel` is a channel id or `#name`, or a user id (the app's direct
    /// message with them).
    pub async fn post_message(
        &self,
        token: &SlackBotToken,
        channel: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<PostedMessage, SlackError> {
        let method = "chat.postMessage";
        let answer = self.json(method, token, &json!({ "channel": channel, "text": text, "blocks": blocks })).await?;
        match (answer["channel"].as_str(), answer["ts"].as_str()) {
            (Some(channel), Some(ts)) => Ok(PostedMessage { channel: channel.to_owned(), ts: ts.to_owned() }),
            _ => Err(SlackError::Transport { method, reason: "the answer has no channel or ts".into() }),
        }
    }

    /// `chat.update`: the message's text and blocks replaced.
    pub async fn update(
        &self,
        token: &SlackBotToken,
        message: &PostedMessage,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SlackError> {
        let body = json!({ "channel": message.channel, "ts": message.ts, "text": text, "blocks": blocks });
        self.json("chat.update", token, &body).await.map(drop)
    }

    /// `chat.postEphemeral`: a message only `user` sees, in `channel`.
    pub async fn post_ephemeral(
        &self,
        token: &SlackBotToken,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        self.json("chat.postEphemeral", token, &json!({ "channel": channel, "user": user, "text": text }))
            .await
            .map(drop)
    }

    /// `users.lookupByEmail`: the user's id, `None` when no user of the workspace has it.
    pub async fn lookup_by_email(&self, token: &SlackBotToken, email: &str) -> Result<Option<String>, SlackError> {
        let method = "users.lookupByEmail";
        match self.form(method, token, &[("email", email)]).await {
            Ok(answer) => answer["user"]["id"]
                .as_str()
                .map(|id| Some(id.to_owned()))
                .ok_or_else(|| SlackError::Transport { method, reason: "the answer has no user id".into() }),
            Err(e) if e.code() == Some("users_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `users.info`.
    pub async fn user_info(&self, token: &SlackBotToken, user: &str) -> Result<SlackUser, SlackError> {
        let method = "users.info";
        let answer = self.form(method, token, &[("user", user)]).await?;
        serde_json::from_value(answer["user"].clone())
            .map_err(|e| SlackError::Transport { method, reason: format!("the user object does not parse: {e}") })
    }

    async fn json(&self, method: &'static str, token: &SlackBotToken, body: &Value) -> Result<Value, SlackError> {
        let request = self.http.post(self.url(method)).json(body);
        self.send(method, token, request).await
    }

    async fn form(
        &self,
        method: &'static str,
        token: &SlackBotToken,
        args: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        let request = self.http.post(self.url(method)).form(args);
        self.send(method, token, request).await
    }

    fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.base)
    }

    async fn send(
        &self,
        method: &'static str,
        token: &SlackBotToken,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let transport = |e: reqwest::Error| SlackError::Transport { method, reason: e.without_url().to_string() };
        let response = request.bearer_auth(token.expose()).timeout(CALL_TIMEOUT).send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(SlackError::Status { method, status: status.as_u16() });
        }
        let answer: Value = response.json().await.map_err(transport)?;
        if answer["ok"].as_bool() == Some(true) {
            return Ok(answer);
        }
        let code = answer["error"].as_str().unwrap_or("unknown_error");
        // Slack's codes are short identifiers; anything else is not repeated into logs.
        let code = if code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            code.to_owned()
        } else {
            "unknown_error".to_owned()
        };
        Err(SlackError::Refused { method, code })
    }
}
