//! Slack's interaction requests (<https://docs.slack.dev/interactivity/handling-user-interaction>):
//! a form-encoded body (`application/x-www-form-urlencoded`) whose `payload` field is JSON. A click
//! on a Block Kit button is a `block_actions` payload
//! (<https://docs.slack.dev/reference/interaction-payloads/block_actions-payload>): `user.id`, `team.id`,
//! `container` (`message_ts`, `channel_id` for a message), `channel.id`, `actions[]` (`action_id`,
//! `value`) and `state.values` (`{block_id: {action_id: {value}}}`: what the message's inputs
//! hold, here the comment box). Parse only after the signature holds.

use super::blocks::{parse_extension_value, APPROVE, APPROVE_EXTENSION, COMMENT, DENY, DENY_EXTENSION};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// The approval message's buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

/// A click on Approve or Deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The grant the button names.
    pub grant_id: String,
    /// An extension's button: the request time of the extension it decides. `None`: a request's.
    pub extension: Option<DateTime<Utc>>,
    /// The Slack user who clicked.
    pub user_id: String,
    /// Their workspace (`team.id`, or the user's `team_id`).
    pub team_id: Option<String>,
    /// The conversation of the message clicked (for an ephemeral answer).
    pub channel_id: Option<String>,
    /// What the comment box held.
    pub comment: Option<String>,
}

/// What an interaction asks of the product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    Decision(Decision),
    /// Anything else (another payload type, another element): acknowledged, nothing done.
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Slack interaction payload: {0}")]
pub struct PayloadError(String);

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: Option<Named>,
    #[serde(default)]
    team: Option<Named>,
    #[serde(default)]
    container: Option<Container>,
    #[serde(default)]
    channel: Option<Named>,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    state: Option<State>,
}

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    channel_id: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct State {
    #[serde(default)]
    values: std::collections::HashMap<String, std::collections::HashMap<String, Value>>,
}

/// Reads an interaction request's body.
pub fn parse(body: &[u8]) -> Result<Interaction, PayloadError> {
    let payload = form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| PayloadError("no `payload` field".into()))?;
    let payload: Payload =
        serde_json::from_str(&payload).map_err(|e| PayloadError(format!("the payload does not parse: {e}")))?;
    if payload.kind != "block_actions" {
        return Ok(Interaction::Ignored(format!("payload type {:?}", payload.kind)));
    }
    let [action] = payload.actions.as_slice() else {
        return Ok(Interaction::Ignored(format!("{} actions", payload.actions.len())));
    };
    let (verdict, of_extension) = match action.action_id.as_str() {
        APPROVE => (Verdict::Approve, false),
        DENY => (Verdict::Deny, false),
        APPROVE_EXTENSION => (Verdict::Approve, true),
        DENY_EXTENSION => (Verdict::Deny, true),
        other => return Ok(Interaction::Ignored(format!("action {other:?}"))),
    };
    let value = action.value.as_deref().unwrap_or_default();
    let (grant_id, extension) = if of_extension {
        let Some((grant_id, at)) = parse_extension_value(value) else {
            return Err(PayloadError("the button's value does not name an extension".into()));
        };
        (grant_id, Some(at))
    } else if uuid::Uuid::parse_str(value).is_ok() {
        (value.to_owned(), None)
    } else {
        return Err(PayloadError("the button's value is not a request id".into()));
    };
    let user = payload.user.ok_or_else(|| PayloadError("no `user`".into()))?;
    let comment = payload
        .state
        .as_ref()
        .and_then(|s| s.values.get(COMMENT))
        .and_then(|block| block.get(COMMENT))
        .and_then(|input| input["value"].as_str())
        .map(str::to_owned);
    Ok(Interaction::Decision(Decision {
        verdict,
        grant_id,
        extension,
        team_id: payload.team.map(|t| t.id).or(user.team_id),
        user_id: user.id,
        channel_id: payload.container.and_then(|c| c.channel_id).or(payload.channel.map(|c| c.id)),
        comment,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0b7c1e9e-4a8e-4bd6-9a8c-2b1f1c7a1d11";

    fn body(payload: &Value) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish().into()
    }

    fn click(action: &str, value: &str, comment: Option<&str>) -> Value {
        json!({
            "type": "block_actions",
            "user": { "id": "U0BOB", "username": "bob", "team_id": "T0CORP" },
            "team": { "id": "T0CORP", "domain": "corp" },
            "container": { "type": "message", "message_ts": "1700000000.000100", "channel_id": "D0BOB" },
            "channel": { "id": "D0BOB", "name": "directmessage" },
            "actions": [{ "type": "button", "action_id": action, "block_id": "decision", "value": value, "action_ts": "1700000001.1" }],
            "state": { "values": { "comment": { "comment": { "type": "plain_text_input", "value": comment } } } },
            "response_url": "https://hooks.slack.com/actions/T0CORP/1/abc",
        })
    }

    #[test]
    fn a_click_on_approve_or_deny_is_a_decision_with_the_comment() {
        let parsed = parse(&body(&click("deny", ID, Some("not during the freeze")))).unwrap();
        assert_eq!(
            parsed,
            Interaction::Decision(Decision {
                verdict: Verdict::Deny,
                grant_id: ID.into(),
                extension: None,
                user_id: "U0BOB".into(),
                team_id: Some("T0CORP".into()),
                channel_id: Some("D0BOB".into()),
                comment: Some("not during the freeze".into()),
            })
        );
        let Interaction::Decision(approve) = parse(&body(&click("approve", ID, None))).unwrap() else { panic!() };
        assert_eq!((approve.verdict, approve.comment), (Verdict::Approve, None));
    }

    #[test]
    fn a_click_on_an_extensions_button_names_that_extension() {
        let at = "2026-11-23T13:00:00.123456789Z";
        let value = format!("{ID}/{at}");
        let Interaction::Decision(d) = parse(&body(&click("approve_extension", &value, None))).unwrap() else {
            panic!()
        };
        let expected = DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc);
        assert_eq!((d.verdict, d.grant_id.as_str(), d.extension), (Verdict::Approve, ID, Some(expected)));
        let Interaction::Decision(d) = parse(&body(&click("deny_extension", &value, Some("no")))).unwrap() else {
            panic!()
        };
        assert_eq!((d.verdict, d.comment.as_deref()), (Verdict::Deny, Some("no")));
        // A request's button with an extension's value, or the reverse: refused.
        assert!(parse(&body(&click("approve", &value, None))).is_err());
        assert!(parse(&body(&click("approve_extension", ID, None))).is_err());
    }

    #[test]
    fn other_interactions_are_ignored_and_garbage_is_refused() {
        let mut other = click("approve", ID, None);
        other["type"] = "view_submission".into();
        assert!(matches!(parse(&body(&other)).unwrap(), Interaction::Ignored(_)));
        assert!(matches!(parse(&body(&click("comment", ID, None))).unwrap(), Interaction::Ignored(_)));
        assert!(parse(&body(&click("approve", "GRANT#x", None))).is_err());
        assert!(parse(b"payload=%7Bnope").is_err());
        assert!(parse(b"token=x").is_err());
    }
}
