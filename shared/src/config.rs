//! Configuration from the environment, read and validated once at start-up. A bad value fails
//! with a message that names the variable.

use crate::domain::model::GrantDuration;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// Glob patterns on group names (`REQUESTABLE_GROUPS`, comma separated).
#[derive(Debug, Clone)]
pub struct GroupScope(Vec<glob::Pattern>);

impl GroupScope {
    pub fn parse(list: &str) -> Result<Self, String> {
        let patterns = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| glob::Pattern::new(p).map_err(|e| format!("bad pattern {p:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(patterns))
    }
    pub fn all() -> Self {
        Self(vec![glob::Pattern::new("*").expect("valid pattern")])
    }
    /// Case-sensitive, as JumpCloud group names are.
    pub fn contains(&self, group_name: &str) -> bool {
        self.0.iter().any(|p| p.matches(group_name))
    }
}

/// What sync needs to turn JumpCloud's directory into ours.
#[derive(Debug, Clone)]
pub struct DirectoryPolicy {
    pub requestable_groups: GroupScope,
    pub manager_attribute: String,
    pub include_suspended_users: bool,
}

impl Default for DirectoryPolicy {
    fn default() -> Self {
        Self {
            requestable_groups: GroupScope::all(),
            manager_attribute: "manager".into(),
            include_suspended_users: false,
        }
    }
}

/// Limits of the JumpCloud client, per integration.
#[derive(Debug, Clone)]
pub struct JumpCloudLimits {
    pub max_concurrency: usize,
    pub requests_per_second: u32,
    /// Timeout of one HTTP attempt.
    pub request_timeout: Duration,
    /// Total time one logical call may spend retrying.
    pub retry_budget: Duration,
    /// First backoff delay; it doubles per attempt with full jitter.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
}

impl Default for JumpCloudLimits {
    fn default() -> Self {
        Self {
            max_concurrency: 8,
            requests_per_second: 20,
            request_timeout: Duration::from_secs(10),
            retry_budget: Duration::from_secs(30),
            retry_base_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(8),
        }
    }
}

/// Who the callers are (SPEC "Who may do what").
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The JWT claim naming the JumpCloud user (`IDENTITY_CLAIM`, default `email`).
    pub claim: String,
    /// IAM principals that are admins (`ADMIN_PRINCIPALS`, comma-separated ARN globs; default none).
    pub admin_principals: Vec<glob::Pattern>,
    /// JumpCloud users in this group are admins too (`ADMIN_GROUP`, a group name; default none).
    pub admin_group: Option<String>,
    /// The deployed HTTP API's id (`API_ID`, set by the template): HTTP events from any other
    /// API (another stack's, a forged invocation) are refused. `None`: not checked (local use).
    pub api_id: Option<String>,
    /// The portal's sign-in (`OIDC_ISSUER`, `OIDC_CLIENT_ID`); `None`: the portal cannot sign in.
    pub oidc: Option<OidcClient>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self { claim: "email".into(), admin_principals: vec![], admin_group: None, api_id: None, oidc: None }
    }
}

/// The portal's OpenID Connect client (SPEC "People's interfaces"): the issuer whose ID tokens are
/// the API's bearer tokens (JumpCloud's OIDC SSO application in production), and the portal's
/// client id there (the tokens' `aud`). A public client: no secret, authorization code with PKCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcClient {
    /// As configured, compared with the `iss` claim as is (JumpCloud's ends with `/`).
    pub issuer: String,
    pub client_id: String,
    /// `scheme://host[:port]` of the issuer: what the portal's Content-Security-Policy lets it reach.
    pub issuer_origin: String,
}

impl OidcClient {
    /// `OIDC_ISSUER`: https (http only to 127.0.0.1 / localhost), no query, fragment or user;
    /// `OIDC_CLIENT_ID`: 1 to 255 visible ASCII characters. Both or neither.
    pub fn from_values(issuer: Option<String>, client_id: Option<String>) -> Result<Option<Self>, ConfigError> {
        let (issuer, client_id) = match (issuer, client_id) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(ConfigError { var: "OIDC_CLIENT_ID", reason: "is required with OIDC_ISSUER".into() })
            }
            (None, Some(_)) => {
                return Err(ConfigError { var: "OIDC_ISSUER", reason: "is required with OIDC_CLIENT_ID".into() })
            }
            (Some(issuer), Some(client_id)) => (issuer, client_id),
        };
        let bad_issuer = |reason: String| ConfigError { var: "OIDC_ISSUER", reason };
        check_api_url(&issuer).map_err(bad_issuer)?;
        let url = reqwest::Url::parse(&issuer).map_err(|e| bad_issuer(e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad_issuer(format!("{issuer:?} must have no query, fragment or user")));
        }
        if client_id.len() > 255 || !client_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError {
                var: "OIDC_CLIENT_ID",
                reason: "must be 1 to 255 visible ASCII characters (no spaces)".into(),
            });
        }
        let issuer_origin = url.origin().ascii_serialization();
        Ok(Some(Self { issuer, client_id, issuer_origin }))
    }
}

impl IdentityConfig {
    pub fn is_admin_principal(&self, arn: &str) -> bool {
        self.admin_principals.iter().any(|p| p.matches(arn))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub jumpcloud_api_url: String,
    /// Directory Insights' base URL (`JUMPCLOUD_INSIGHTS_URL`; default: [`default_insights_url`]).
    pub jumpcloud_insights_url: String,
    pub secret_tag_key: String,
    pub secret_tag_value: String,
    pub secrets_cache_ttl: Duration,
    pub schedule_group: String,
    pub revoke_function_arn: Option<String>,
    pub scheduler_role_arn: Option<String>,
    /// Dead-letter queue (SQS) of expiry schedule deliveries.
    pub schedule_dlq_arn: Option<String>,
    pub event_bus_name: String,
    pub min_grant_duration: GrantDuration,
    pub max_grant_duration: GrantDuration,
    pub directory: DirectoryPolicy,
    pub jumpcloud: JumpCloudLimits,
    pub identity: IdentityConfig,
    pub slack: SlackConfig,
    /// The fanned-out full sync (`domain::fanout`): on when `SYNC_QUEUE_URL` is set.
    pub fanout: Option<FanOutConfig>,
}

/// The fanned-out full sync's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutConfig {
    /// The parts' queue (`SYNC_QUEUE_URL`), consumed by the sync function itself.
    pub queue_url: String,
    /// Organizations with at least this many users are fanned out (`FANOUT_ABOVE_USERS`,
    /// default 100,000); smaller ones sync in one invocation.
    pub above_users: u64,
    /// JumpCloud requests per second that all of an integration's sync workers share
    /// (`FANOUT_REQUESTS_PER_SECOND`, default three quarters of `JUMPCLOUD_REQUESTS_PER_SECOND`):
    /// the rest is left to grants and revocations.
    pub requests_per_second: u32,
    /// Users per users part (`FANOUT_USERS_PER_PART`, 100 to 10,000, default 10,000: what one
    /// part's report holds) and groups per members part (`FANOUT_GROUPS_PER_PART`, 1 to 250,
    /// default 250: a part stays well within the function's time at any worker count).
    pub users_per_part: u64,
    pub groups_per_part: usize,
}

/// Slack approvals (optional: on with `SLACK_ENABLED`, and then used while a secret carries the tag).
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// `SLACK_ENABLED` (default false). Off: no Slack adapter is built, nothing looks for the
    /// Slack secret, nothing calls Slack, and `POST /slack/interactions` answers 404.
    pub enabled: bool,
    /// Slack's Web API (`SLACK_API_URL`, default `https://slack.com/api`; a local fake in tests).
    pub api_url: String,
    /// The tag of the Slack app's secret (`SLACK_SECRET_TAG_KEY` = `SLACK_SECRET_TAG_VALUE`,
    /// default `jit-access-slack` = `true`).
    pub secret_tag_key: String,
    pub secret_tag_value: String,
}

pub const DEFAULT_JUMPCLOUD_API_URL: &str = "https://console.jumpcloud.com";

/// Directory Insights' host for a JumpCloud API URL: `api` beside `console` (US and EU), else the
/// URL itself (a simulator or a proxy serves both).
pub fn default_insights_url(api_url: &str) -> String {
    match api_url.trim_end_matches('/') {
        DEFAULT_JUMPCLOUD_API_URL => "https://api.jumpcloud.com".to_owned(),
        "https://console.eu.jumpcloud.com" => "https://api.eu.jumpcloud.com".to_owned(),
        other => other.to_owned(),
    }
}
pub const DEFAULT_TABLE_NAME: &str = "jit-access";
pub const DEFAULT_SCHEDULE_GROUP: &str = "jit-access";
pub const DEFAULT_EVENT_BUS_NAME: &str = "jit-access";
pub const DEFAULT_SECRET_TAG_KEY: &str = "apono-connector-read";
pub const DEFAULT_SECRET_TAG_VALUE: &str = "true";
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_SLACK_SECRET_TAG_KEY: &str = "jit-access-slack";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads every variable through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let string = |var: &'static str, default: &str| get(var).unwrap_or_else(|| default.to_owned());
        let duration = |var: &'static str, default: &str| -> Result<GrantDuration, ConfigError> {
            string(var, default)
                .parse()
                .map_err(|e: crate::domain::model::DurationError| ConfigError { var, reason: e.to_string() })
        };
        let number = |var: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| ConfigError {
                    var,
                    reason: format!("{v:?} is not a whole number from {min} to {max}"),
                }),
            }
        };
        let boolean = |var: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(var).map(|v| v.to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["false", "0", "no"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(ConfigError { var, reason: format!("{v:?} is not true or false") }),
            }
        };

        let jumpcloud_api_url = string("JUMPCLOUD_API_URL", DEFAULT_JUMPCLOUD_API_URL);
        check_api_url(&jumpcloud_api_url).map_err(|reason| ConfigError { var: "JUMPCLOUD_API_URL", reason })?;
        let jumpcloud_insights_url =
            get("JUMPCLOUD_INSIGHTS_URL").unwrap_or_else(|| default_insights_url(&jumpcloud_api_url));
        check_api_url(&jumpcloud_insights_url)
            .map_err(|reason| ConfigError { var: "JUMPCLOUD_INSIGHTS_URL", reason })?;

        let slack_api_url = string("SLACK_API_URL", DEFAULT_SLACK_API_URL);
        // The bot token travels in a header: as for JumpCloud, plain HTTP only to this machine.
        check_api_url(&slack_api_url).map_err(|reason| ConfigError { var: "SLACK_API_URL", reason })?;

        let min_grant_duration = duration("MIN_GRANT_DURATION", "1m")?;
        let max_grant_duration = duration("MAX_GRANT_DURATION", "12h")?;
        if min_grant_duration > max_grant_duration {
            return Err(ConfigError {
                var: "MIN_GRANT_DURATION",
                reason: format!("{min_grant_duration} is longer than MAX_GRANT_DURATION {max_grant_duration}"),
            });
        }
        let requestable_groups = GroupScope::parse(&string("REQUESTABLE_GROUPS", "*"))
            .map_err(|reason| ConfigError { var: "REQUESTABLE_GROUPS", reason })?;
        let arn = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match get(var) {
                Some(v) if !v.starts_with("arn:") => Err(ConfigError { var, reason: format!("{v:?} is not an ARN") }),
                other => Ok(other),
            }
        };

        let jumpcloud_rps = number("JUMPCLOUD_REQUESTS_PER_SECOND", 20, 1, 10_000)? as u32;
        let fanout = match get("SYNC_QUEUE_URL") {
            None => None,
            Some(queue_url) => {
                reqwest::Url::parse(&queue_url).map_err(|e| ConfigError {
                    var: "SYNC_QUEUE_URL",
                    reason: format!("{queue_url:?} is not a URL: {e}"),
                })?;
                Some(FanOutConfig {
                    queue_url,
                    above_users: number("FANOUT_ABOVE_USERS", 100_000, 1, 1_000_000_000)?,
                    requests_per_second: number(
                        "FANOUT_REQUESTS_PER_SECOND",
                        u64::from((jumpcloud_rps * 3 / 4).max(1)),
                        1,
                        u64::from(jumpcloud_rps),
                    )? as u32,
                    users_per_part: number(
                        "FANOUT_USERS_PER_PART",
                        crate::domain::fanout::USERS_PER_PART,
                        100,
                        crate::domain::fanout::USERS_PER_PART,
                    )?,
                    groups_per_part: number(
                        "FANOUT_GROUPS_PER_PART",
                        crate::domain::fanout::GROUPS_PER_PART as u64,
                        1,
                        crate::domain::fanout::GROUPS_PER_PART as u64,
                    )? as usize,
                })
            }
        };

        let admin_principals = string("ADMIN_PRINCIPALS", "")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if !p.starts_with("arn:") {
                    return Err(ConfigError { var: "ADMIN_PRINCIPALS", reason: format!("{p:?} is not an ARN glob") });
                }
                glob::Pattern::new(p)
                    .map_err(|e| ConfigError { var: "ADMIN_PRINCIPALS", reason: format!("bad pattern {p:?}: {e}") })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            table_name: string("TABLE_NAME", DEFAULT_TABLE_NAME),
            jumpcloud_api_url: jumpcloud_api_url.trim_end_matches('/').to_owned(),
            jumpcloud_insights_url: jumpcloud_insights_url.trim_end_matches('/').to_owned(),
            secret_tag_key: string("SECRET_TAG_KEY", DEFAULT_SECRET_TAG_KEY),
            secret_tag_value: string("SECRET_TAG_VALUE", DEFAULT_SECRET_TAG_VALUE),
            secrets_cache_ttl: duration("SECRETS_CACHE_TTL", "5m")?.as_std(),
            schedule_group: string("SCHEDULE_GROUP", DEFAULT_SCHEDULE_GROUP),
            revoke_function_arn: arn("REVOKE_FUNCTION_ARN")?,
            scheduler_role_arn: arn("SCHEDULER_ROLE_ARN")?,
            schedule_dlq_arn: arn("SCHEDULE_DLQ_ARN")?,
            event_bus_name: string("EVENT_BUS_NAME", DEFAULT_EVENT_BUS_NAME),
            min_grant_duration,
            max_grant_duration,
            directory: DirectoryPolicy {
                requestable_groups,
                manager_attribute: string("MANAGER_ATTRIBUTE", "manager"),
                include_suspended_users: boolean("INCLUDE_SUSPENDED_USERS", false)?,
            },
            jumpcloud: JumpCloudLimits {
                max_concurrency: number("JUMPCLOUD_MAX_CONCURRENCY", 8, 1, 256)? as usize,
                requests_per_second: jumpcloud_rps,
                request_timeout: duration("JUMPCLOUD_REQUEST_TIMEOUT", "10s")?.as_std(),
                retry_budget: duration("JUMPCLOUD_RETRY_BUDGET", "30s")?.as_std(),
                ..JumpCloudLimits::default()
            },
            identity: IdentityConfig {
                claim: string("IDENTITY_CLAIM", "email"),
                admin_principals,
                admin_group: get("ADMIN_GROUP"),
                api_id: get("API_ID"),
                oidc: OidcClient::from_values(get("OIDC_ISSUER"), get("OIDC_CLIENT_ID"))?,
            },
            slack: SlackConfig {
                enabled: boolean("SLACK_ENABLED", false)?,
                api_url: slack_api_url.trim_end_matches('/').to_owned(),
                secret_tag_key: string("SLACK_SECRET_TAG_KEY", DEFAULT_SLACK_SECRET_TAG_KEY),
                secret_tag_value: string("SLACK_SECRET_TAG_VALUE", DEFAULT_SECRET_TAG_VALUE),
            },
            fanout,
        })
    }
}

/// The API key (or a token) travels over it: plain HTTP is allowed only to this machine (the
/// simulator, the local OIDC issuer).
fn check_api_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{url:?} must be https (http only for 127.0.0.1 / localhost)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_sane() {
        let c = config(&[]).unwrap();
        assert_eq!(c.jumpcloud_api_url, DEFAULT_JUMPCLOUD_API_URL);
        assert_eq!(c.jumpcloud_insights_url, "https://api.jumpcloud.com", "Directory Insights beside the console");
        assert_eq!(c.secret_tag_key, "apono-connector-read");
        assert_eq!(c.secret_tag_value, "true");
        assert_eq!(c.directory.manager_attribute, "manager");
        assert!(!c.directory.include_suspended_users);
        assert!(c.directory.requestable_groups.contains("anything"));
        assert_eq!((c.min_grant_duration.as_secs(), c.max_grant_duration.as_secs()), (60, 43_200));
        assert!(!c.slack.enabled, "Slack is off unless switched on");
        assert_eq!(c.slack.api_url, "https://slack.com/api");
        assert_eq!((c.slack.secret_tag_key.as_str(), c.slack.secret_tag_value.as_str()), ("jit-access-slack", "true"));
    }

    #[test]
    fn reads_every_documented_variable() {
        let c = config(&[
            ("TABLE_NAME", "t"),
            ("JUMPCLOUD_API_URL", "http://127.0.0.1:9000/"),
            ("SECRET_TAG_KEY", "k"),
            ("SECRET_TAG_VALUE", "v"),
            ("SCHEDULE_GROUP", "sg"),
            ("REVOKE_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:revoke"),
            ("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler"),
            ("EVENT_BUS_NAME", "bus"),
            ("MIN_GRANT_DURATION", "PT5M"),
            ("MAX_GRANT_DURATION", "1d"),
            ("REQUESTABLE_GROUPS", "prod-*, eng-?"),
            ("MANAGER_ATTRIBUTE", "boss"),
            ("INCLUDE_SUSPENDED_USERS", "true"),
            ("JUMPCLOUD_MAX_CONCURRENCY", "3"),
            ("JUMPCLOUD_REQUESTS_PER_SECOND", "7"),
            ("SLACK_ENABLED", "true"),
            ("SLACK_API_URL", "http://localhost:8123/api/"),
            ("SLACK_SECRET_TAG_KEY", "slack-k"),
            ("SLACK_SECRET_TAG_VALUE", "yes"),
        ])
        .unwrap();
        assert!(c.slack.enabled);
        assert_eq!(c.slack.api_url, "http://localhost:8123/api");
        assert_eq!((c.slack.secret_tag_key.as_str(), c.slack.secret_tag_value.as_str()), ("slack-k", "yes"));
        assert_eq!(c.table_name, "t");
        assert_eq!(c.jumpcloud_api_url, "http://127.0.0.1:9000");
        assert_eq!(c.jumpcloud_insights_url, "http://127.0.0.1:9000", "the simulator serves both");
        assert_eq!((c.secret_tag_key.as_str(), c.secret_tag_value.as_str()), ("k", "v"));
        assert_eq!(c.schedule_group, "sg");
        assert!(c.revoke_function_arn.is_some() && c.scheduler_role_arn.is_some());
        assert_eq!(c.event_bus_name, "bus");
        assert_eq!((c.min_grant_duration.as_secs(), c.max_grant_duration.as_secs()), (300, 86_400));
        let scope = &c.directory.requestable_groups;
        assert!(
            scope.contains("prod-db") && scope.contains("eng-a") && !scope.contains("eng-ab") && !scope.contains("dev")
        );
        assert_eq!(c.directory.manager_attribute, "boss");
        assert!(c.directory.include_suspended_users);
        assert_eq!((c.jumpcloud.max_concurrency, c.jumpcloud.requests_per_second), (3, 7));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&str, &str)] = &[
            ("MIN_GRANT_DURATION", "soon"),
            ("MAX_GRANT_DURATION", "0m"),
            ("JUMPCLOUD_MAX_CONCURRENCY", "0"),
            ("JUMPCLOUD_REQUESTS_PER_SECOND", "many"),
            ("INCLUDE_SUSPENDED_USERS", "maybe"),
            ("SLACK_ENABLED", "sometimes"),
            ("REQUESTABLE_GROUPS", "prod-[a"),
            ("JUMPCLOUD_API_URL", "http://console.jumpcloud.com"),
            ("JUMPCLOUD_API_URL", "not a url"),
            ("REVOKE_FUNCTION_ARN", "revoke"),
            ("SLACK_API_URL", "http://slack.com/api"),
            ("SLACK_API_URL", "slack"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, *var, "{err}");
            assert!(err.to_string().contains(var));
        }
        let err = config(&[("MIN_GRANT_DURATION", "2h"), ("MAX_GRANT_DURATION", "1h")]).unwrap_err();
        assert_eq!(err.var, "MIN_GRANT_DURATION");
    }

    #[test]
    fn the_portals_issuer_and_client_id_come_together_and_are_checked() {
        assert_eq!(config(&[]).unwrap().identity.oidc, None);
        let c =
            config(&[("OIDC_ISSUER", "https://oauth.id.jumpcloud.com/"), ("OIDC_CLIENT_ID", "jit-portal")]).unwrap();
        // As given: API Gateway compares `iss` with the configured issuer exactly.
        let oidc = c.identity.oidc.unwrap();
        assert_eq!((oidc.issuer.as_str(), oidc.client_id.as_str()), ("https://oauth.id.jumpcloud.com/", "jit-portal"));
        let local = config(&[("OIDC_ISSUER", "http://127.0.0.1:4180"), ("OIDC_CLIENT_ID", "jit-portal")]).unwrap();
        assert_eq!(local.identity.oidc.unwrap().issuer, "http://127.0.0.1:4180");

        let client = ("OIDC_CLIENT_ID", "jit-portal");
        let issuer = ("OIDC_ISSUER", "https://sso.example.com");
        for (vars, var) in [
            (vec![("OIDC_ISSUER", "http://sso.example.com"), client], "OIDC_ISSUER"),
            (vec![("OIDC_ISSUER", "sso.example.com"), client], "OIDC_ISSUER"),
            (vec![("OIDC_ISSUER", "https://sso.example.com/?tenant=1"), client], "OIDC_ISSUER"),
            (vec![("OIDC_ISSUER", "https://sso.example.com/#x"), client], "OIDC_ISSUER"),
            (vec![issuer, ("OIDC_CLIENT_ID", "jit portal")], "OIDC_CLIENT_ID"),
            (vec![issuer], "OIDC_CLIENT_ID"),
            (vec![client], "OIDC_ISSUER"),
        ] {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.var, var, "{vars:?}: {err}");
            assert!(err.to_string().contains(var));
        }
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn nobody_is_an_admin_by_default() {
        let c = config(&[]).unwrap();
        assert_eq!((c.identity.claim.as_str(), c.identity.admin_group.as_deref()), ("email", None));
        assert!(!c.identity.is_admin_principal("arn:aws:iam::123456789012:user/alice"));
    }

    #[test]
    fn admin_principals_are_arn_globs_and_the_claim_and_group_are_read() {
        let c = config(&[
            (
                "ADMIN_PRINCIPALS",
                "arn:aws:iam::123456789012:role/deployer, arn:aws:sts::123456789012:assumed-role/Ops/*",
            ),
            ("IDENTITY_CLAIM", "preferred_username"),
            ("ADMIN_GROUP", "jit-admins"),
        ])
        .unwrap();
        assert!(c.identity.is_admin_principal("arn:aws:iam::123456789012:role/deployer"));
        assert!(c.identity.is_admin_principal("arn:aws:sts::123456789012:assumed-role/Ops/carol"));
        assert!(!c.identity.is_admin_principal("arn:aws:iam::123456789012:role/deployer2"));
        assert_eq!(
            (c.identity.claim.as_str(), c.identity.admin_group.as_deref()),
            ("preferred_username", Some("jit-admins"))
        );
        for bad in ["alice", "arn:aws:iam::1:user/[x"] {
            let err = config(&[("ADMIN_PRINCIPALS", bad)]).unwrap_err();
            assert_eq!(err.var, "ADMIN_PRINCIPALS", "{bad}");
        }
    }
}

#[cfg(test)]
mod oidc_tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_portal_sign_in_is_optional_and_read_as_given() {
        assert_eq!(config(&[]).unwrap().identity.oidc, None);
        let c = config(&[("OIDC_ISSUER", "https://oauth.id.jumpcloud.com/"), ("OIDC_CLIENT_ID", " 0a1b2c-portal ")])
            .unwrap();
        let oidc = c.identity.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://oauth.id.jumpcloud.com/", "kept as is: `iss` is compared exactly");
        assert_eq!(oidc.client_id, "0a1b2c-portal");
        assert_eq!(oidc.issuer_origin, "https://oauth.id.jumpcloud.com");
        let local = config(&[("OIDC_ISSUER", "http://127.0.0.1:9400/issuer"), ("OIDC_CLIENT_ID", "portal")]).unwrap();
        assert_eq!(local.identity.oidc.unwrap().issuer_origin, "http://127.0.0.1:9400");
    }

    #[test]
    fn a_bad_or_half_sign_in_configuration_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("OIDC_ISSUER", "https://sso.example.com")], "OIDC_CLIENT_ID"),
            (&[("OIDC_CLIENT_ID", "portal")], "OIDC_ISSUER"),
            (&[("OIDC_ISSUER", "http://sso.example.com"), ("OIDC_CLIENT_ID", "portal")], "OIDC_ISSUER"),
            (&[("OIDC_ISSUER", "not a url"), ("OIDC_CLIENT_ID", "portal")], "OIDC_ISSUER"),
            (&[("OIDC_ISSUER", "https://sso.example.com/?x=1"), ("OIDC_CLIENT_ID", "portal")], "OIDC_ISSUER"),
            (&[("OIDC_ISSUER", "https://u:p@sso.example.com"), ("OIDC_CLIENT_ID", "portal")], "OIDC_ISSUER"),
            (&[("OIDC_ISSUER", "https://sso.example.com"), ("OIDC_CLIENT_ID", "has space")], "OIDC_CLIENT_ID"),
            (&[("OIDC_ISSUER", "https://sso.example.com"), ("OIDC_CLIENT_ID", &"x".repeat(256))], "OIDC_CLIENT_ID"),
        ];
        for (vars, var) in cases {
            let err = config(vars).unwrap_err();
            assert_eq!(err.var, *var, "{vars:?}: {err}");
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn the_fan_out_is_off_without_a_queue_and_shares_three_quarters_of_the_rate_by_default() {
        assert_eq!(config(&[]).unwrap().fanout, None);
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jit-access-sync-parts";
        let on = config(&[("SYNC_QUEUE_URL", url)]).unwrap().fanout.unwrap();
        assert_eq!((on.queue_url.as_str(), on.above_users, on.requests_per_second), (url, 100_000, 15));
        let set = config(&[
            ("SYNC_QUEUE_URL", url),
            ("FANOUT_ABOVE_USERS", "5000"),
            ("JUMPCLOUD_REQUESTS_PER_SECOND", "40"),
            ("FANOUT_REQUESTS_PER_SECOND", "25"),
        ])
        .unwrap()
        .fanout
        .unwrap();
        assert_eq!((set.above_users, set.requests_per_second), (5000, 25));
        assert_eq!((on.users_per_part, on.groups_per_part), (10_000, 250), "the domain's defaults");
        let small =
            config(&[("SYNC_QUEUE_URL", url), ("FANOUT_USERS_PER_PART", "100"), ("FANOUT_GROUPS_PER_PART", "10")])
                .unwrap()
                .fanout
                .unwrap();
        assert_eq!((small.users_per_part, small.groups_per_part), (100, 10));
        for (vars, var) in [
            (vec![("SYNC_QUEUE_URL", "not a url")], "SYNC_QUEUE_URL"),
            (vec![("SYNC_QUEUE_URL", url), ("FANOUT_ABOVE_USERS", "0")], "FANOUT_ABOVE_USERS"),
            // More than JumpCloud allows the whole deployment: no room left for revocations.
            (vec![("SYNC_QUEUE_URL", url), ("FANOUT_REQUESTS_PER_SECOND", "21")], "FANOUT_REQUESTS_PER_SECOND"),
            // A bigger users part's ids would not fit its report.
            (vec![("SYNC_QUEUE_URL", url), ("FANOUT_USERS_PER_PART", "10001")], "FANOUT_USERS_PER_PART"),
            (vec![("SYNC_QUEUE_URL", url), ("FANOUT_GROUPS_PER_PART", "0")], "FANOUT_GROUPS_PER_PART"),
        ] {
            assert_eq!(config(&vars).unwrap_err().var, var);
        }
    }
}
