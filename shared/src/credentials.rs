//! Secret values and the types that hold them. `Debug` and `Display` never show a secret, so a
//! secret cannot reach a log line, an error or a response by accident.

use serde::Deserialize;
use std::fmt;

/// The JumpCloud admin API key. Read it only through [`ApiKey::expose`], where it is sent.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The raw key, for the `x-api-key` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A newtype over a secret string whose `Debug` and `Display` show `<redacted>`: the value is read
/// only through `expose`, where it is used.
macro_rules! redacted {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
    };
}

redacted!(
    /// The Slack app's bot token (`xoxb-...`): sent as `Authorization: Bearer` to Slack's Web API
    /// and nowhere else.
    SlackBotToken
);
redacted!(
    /// The Slack app's signing secret: the HMAC key of Slack's request signatures, used to verify
    /// them and nothing else.
    SlackSigningSecret
);

/// What the Slack secret (tagged `jit-access-slack` = `true`) holds: `bot_token` and
/// `signing_secret`, required; `team_id` (the workspace's id, `T...`), optional: when set,
/// interactions from any other workspace are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackSecret {
    pub bot_token: SlackBotToken,
    pub signing_secret: SlackSigningSecret,
    pub team_id: Option<String>,
}

impl SlackSecret {
    /// Parses the secret's value. Errors name the field, never quote the value.
    pub fn parse(value: &str) -> Result<Self, SecretValueError> {
        let json: serde_json::Value = serde_json::from_str(value).map_err(|_| SecretValueError::NotJsonObject)?;
        let obj = json.as_object().ok_or(SecretValueError::NotJsonObject)?;
        let required = |field: &'static str| match obj.get(field) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => Err(SecretValueError::MissingField(field)),
        };
        let team_id = match obj.get("team_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(_) => return Err(SecretValueError::BadField("team_id")),
        };
        Ok(Self {
            bot_token: SlackBotToken::new(required("bot_token")?),
            signing_secret: SlackSigningSecret::new(required("signing_secret")?),
            team_id,
        })
    }
}

/// What an integration's secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub token: ApiKey,
    pub org_id: Option<String>,
}

/// The JSON value of an integration's secret: `token` required, `org_id` and `name` optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationSecret {
    pub name: Option<String>,
    pub credentials: Credentials,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretValueError {
    #[error("the secret value is not a JSON object")]
    NotJsonObject,
    #[error("the secret value has no non-empty string field `token`")]
    MissingToken,
    #[error("the secret value's field `{0}` must be a non-empty string")]
    BadField(&'static str),
    #[error("the secret value has no non-empty string field `{0}`")]
    MissingField(&'static str),
}

impl IntegrationSecret {
    /// Parses a secret value. Errors describe the shape only: the value itself is never quoted
    /// (serde_json's messages can echo input, so they are not passed on).
    pub fn parse(value: &str) -> Result<Self, SecretValueError> {
        let json: serde_json::Value = serde_json::from_str(value).map_err(|_| SecretValueError::NotJsonObject)?;
        let obj = json.as_object().ok_or(SecretValueError::NotJsonObject)?;
        let token = match obj.get("token") {
            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => ApiKey::new(t.trim()),
            _ => return Err(SecretValueError::MissingToken),
        };
        let optional = |field: &'static str| -> Result<Option<String>, SecretValueError> {
            match obj.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(SecretValueError::BadField(field)),
            }
        };
        Ok(Self { name: optional("name")?, credentials: Credentials { token, org_id: optional("org_id")? } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "jc-admin-key-5f1a9c0e7b";

    #[test]
    fn parses_token_org_and_name() {
        let s = IntegrationSecret::parse(&format!(r#"{{"token":"{KEY}","org_id":"org1","name":"corp"}}"#)).unwrap();
        assert_eq!(s.credentials.token.expose(), KEY);
        assert_eq!(s.credentials.org_id.as_deref(), Some("org1"));
        assert_eq!(s.name.as_deref(), Some("corp"));
        let minimal = IntegrationSecret::parse(&format!(r#"{{"token":"{KEY}"}}"#)).unwrap();
        assert_eq!((minimal.name, minimal.credentials.org_id), (None, None));
    }

    #[test]
    fn refuses_bad_values_without_echoing_them() {
        let cases = [
            (format!("not json {KEY}"), SecretValueError::NotJsonObject),
            (format!(r#"["{KEY}"]"#), SecretValueError::NotJsonObject),
            (r#"{"org_id":"x"}"#.to_owned(), SecretValueError::MissingToken),
            (r#"{"token":"  "}"#.to_owned(), SecretValueError::MissingToken),
            (format!(r#"{{"token":"{KEY}","org_id":7}}"#), SecretValueError::BadField("org_id")),
        ];
        for (value, expected) in cases {
            let err = IntegrationSecret::parse(&value).unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.to_string().contains(KEY));
            assert!(!format!("{err:?}").contains(KEY));
        }
    }

    const BOT: &str = "xoxb-1111-2222-botsecretvalue";
    const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn the_slack_secret_parses_and_never_shows_its_values() {
        let s = SlackSecret::parse(&format!(r#"{{"bot_token":"{BOT}","signing_secret":"{SIGNING}"}}"#)).unwrap();
        assert_eq!((s.bot_token.expose(), s.signing_secret.expose(), s.team_id.as_deref()), (BOT, SIGNING, None));
        let with_team =
            SlackSecret::parse(&format!(r#"{{"bot_token":"{BOT}","signing_secret":"{SIGNING}","team_id":"T0123"}}"#))
                .unwrap();
        assert_eq!(with_team.team_id.as_deref(), Some("T0123"));
        let shown = format!("{s:?} {} {} {:?}", s.bot_token, s.signing_secret, with_team);
        assert!(!shown.contains(BOT) && !shown.contains(SIGNING), "{shown}");
        assert!(shown.contains("SlackBotToken(<redacted>)") && shown.contains("T0123"), "{shown}");
        let cases = [
            (format!(r#"{{"bot_token":"{BOT}"}}"#), SecretValueError::MissingField("signing_secret")),
            (
                format!(r#"{{"signing_secret":"{SIGNING}","bot_token":" "}}"#),
                SecretValueError::MissingField("bot_token"),
            ),
            (
                format!(r#"{{"bot_token":"{BOT}","signing_secret":"{SIGNING}","team_id":1}}"#),
                SecretValueError::BadField("team_id"),
            ),
            (format!("{BOT} {SIGNING}"), SecretValueError::NotJsonObject),
        ];
        for (value, expected) in cases {
            let err = SlackSecret::parse(&value).unwrap_err();
            assert_eq!(err, expected);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(BOT) && !shown.contains(SIGNING), "{shown}");
        }
    }

    #[test]
    fn debug_and_display_redact_the_key() {
        let s = IntegrationSecret::parse(&format!(r#"{{"token":"{KEY}","name":"corp"}}"#)).unwrap();
        let shown = format!("{s:?} {} {:?}", s.credentials.token, s.credentials);
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("redacted"));
        assert!(shown.contains("corp"), "non-secret fields stay visible: {shown}");
    }
}
