//! The JWT authorizer, as API Gateway's HTTP API runs it before a route's function is invoked
//! (developer guide, "Control access to HTTP APIs with JWT authorizers"):
//!
//! 1. the token from `Authorization` (alone, or after `Bearer `);
//! 2. its header: an RSA algorithm (RS256, RS384, RS512) and a `kid` among the issuer's keys,
//!    read from `{issuer}/.well-known/openid-configuration` -> `jwks_uri` (cached; re-read for
//!    an unknown `kid` at most once a minute, and after two hours, as API Gateway caches them);
//! 3. the signature;
//! 4. the claims: `iss` equals the issuer; `aud` (or `client_id` when there is no `aud`) is one of
//!    the audiences; `exp` is after now, `nbf` and `iat` before now (5 s of leeway); with route
//!    scopes, `scope` or `scp` holds one of them.
//!
//! Any failure: `401 {"message":"Unauthorized"}` and the function is not invoked. The claims then
//! go to the function as strings, as API Gateway passes them (`requestContext.authorizer.jwt.claims`):
//! numbers and booleans as their JSON text, arrays as `[a b c]`.

use jit_oidc_issuer::jwt::{install_provider, RSA_ALGORITHMS};
use jit_shared::clock::Clock;
use jsonwebtoken::{decode, decode_header, jwk::JwkSet, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::sync::Mutex;

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 5;
/// How long keys are kept before they are read again.
const KEYS_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// The shortest interval between two reads of the keys for an unknown `kid`.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// The template's `JwtConfiguration`: the issuer and the accepted audiences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfiguration {
    pub issuer: String,
    pub audience: Vec<String>,
}

/// Why a request was refused (logged, and named in `www-authenticate`; the body is always
/// `{"message":"Unauthorized"}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no token in the Authorization header")]
    Missing,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0} is not RSA")]
    Algorithm(String),
    #[error("the token's kid {0:?} is none of the issuer's keys")]
    UnknownKey(String),
    #[error("the issuer's keys could not be read: {0}")]
    KeysUnavailable(String),
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token's issuer {0:?} is not the configured one")]
    Issuer(String),
    #[error("the token's audience is not accepted")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no scope this route requires")]
    Scope,
}

struct Keys {
    set: JwkSet,
    read_at: chrono::DateTime<chrono::Utc>,
}

pub struct JwtAuthorizer {
    config: JwtConfiguration,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    keys: Mutex<Option<Keys>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The bearer token of an `Authorization` header value.
fn token_of(header: Option<&str>) -> Result<&str, Denied> {
    let value = header.map(str::trim).filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("bearer"));
    let value = value.ok_or(Denied::Missing)?;
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return Err(Denied::Malformed("expected a token or `Bearer <token>`".into())),
        None => value,
    };
    if token.is_empty() {
        return Err(Denied::Missing);
    }
    Ok(token)
}

/// A claim's value as API Gateway hands it to the function: a string.
pub fn claim_string(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().filter_map(claim_string).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let pairs: Vec<String> =
                map.iter().filter_map(|(k, v)| claim_string(v).map(|v| format!("{k}:{v}"))).collect();
            format!("map[{}]", pairs.join(" "))
        }
    })
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

impl JwtAuthorizer {
    pub fn new(config: JwtConfiguration, clock: Arc<dyn Clock>) -> Self {
        install_provider();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
        Self { config, http, clock, keys: Mutex::new(None) }
    }

    pub fn configuration(&self) -> &JwtConfiguration {
        &self.config
    }

    async fn read_keys(&self) -> Result<JwkSet, Denied> {
        let unavailable = |e: reqwest::Error| Denied::KeysUnavailable(e.to_string());
        let discovery_url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let discovery: Discovery = self
            .http
            .get(&discovery_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        if discovery.issuer != self.config.issuer {
            return Err(Denied::KeysUnavailable(format!(
                "{discovery_url} names the issuer {:?}, not {:?}",
                discovery.issuer, self.config.issuer
            )));
        }
        let keys = self.http.get(&discovery.jwks_uri).send().await.and_then(reqwest::Response::error_for_status);
        keys.map_err(unavailable)?.json().await.map_err(unavailable)
    }

    /// The issuer's key `kid`, read again when unknown or stale.
    async fn key(&self, kid: &str) -> Result<DecodingKey, Denied> {
        let now = self.clock.now();
        let mut cached = self.keys.lock().await;
        let age = |k: &Keys| (now - k.read_at).to_std().unwrap_or_default();
        let fresh = cached.as_ref().is_some_and(|k| age(k) < KEYS_MAX_AGE);
        let known = cached.as_ref().is_some_and(|k| k.set.find(kid).is_some());
        let may_refresh = cached.as_ref().is_none_or(|k| age(k) >= REFRESH_AT_MOST_EVERY);
        if !fresh || (!known && may_refresh) {
            let set = self.read_keys().await?;
            *cached = Some(Keys { set, read_at: now });
        }
        let jwk = cached.as_ref().and_then(|k| k.set.find(kid)).ok_or_else(|| Denied::UnknownKey(kid.to_owned()))?;
        DecodingKey::from_jwk(jwk).map_err(|e| Denied::KeysUnavailable(format!("key {kid:?}: {e}")))
    }

    /// The token's claims, as strings, when it passes; why not otherwise.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        scopes: &[String],
    ) -> Result<BTreeMap<String, String>, Denied> {
        let token = token_of(authorization)?;
        let header = decode_header(token).map_err(|e| Denied::Malformed(e.to_string()))?;
        if !RSA_ALGORITHMS.contains(&header.alg) {
            return Err(Denied::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| Denied::UnknownKey(String::new()))?;
        let key = self.key(&kid).await?;
        // The signature only: the claims are checked below, against this authorizer's clock.
        let mut signature_only = Validation::new(header.alg);
        signature_only.required_spec_claims.clear();
        signature_only.validate_exp = false;
        signature_only.validate_nbf = false;
        signature_only.validate_aud = false;
        let claims = decode::<Map<String, Value>>(token, &key, &signature_only)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Denied::Signature,
                _ => Denied::Malformed(e.to_string()),
            })?
            .claims;
        self.check_claims(&claims, scopes)?;
        Ok(claims.iter().filter_map(|(k, v)| claim_string(v).map(|v| (k.clone(), v))).collect())
    }

    fn check_claims(&self, claims: &Map<String, Value>, scopes: &[String]) -> Result<(), Denied> {
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        if issuer != self.config.issuer {
            return Err(Denied::Issuer(issuer.to_owned()));
        }
        // `aud` when present (a string or a list), else `client_id`.
        let audiences = match claims.get("aud") {
            Some(aud) => strings(aud),
            None => claims.get("client_id").map(strings).unwrap_or_default(),
        };
        if !audiences.iter().any(|a| self.config.audience.contains(a)) {
            return Err(Denied::Audience);
        }
        let now = self.clock.now().timestamp();
        let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t as i64);
        match time("exp") {
            Some(exp) if exp + LEEWAY_SECS > now => {}
            Some(_) => return Err(Denied::Expired),
            None if claims.contains_key("exp") => return Err(Denied::Malformed("exp is not a number".into())),
            None => return Err(Denied::Malformed("the token has no exp".into())),
        }
        for name in ["nbf", "iat"] {
            if time(name).is_some_and(|t| t > now + LEEWAY_SECS) {
                return Err(Denied::NotYetValid);
            }
        }
        if !scopes.is_empty() {
            let held: Vec<String> = match (claims.get("scope"), claims.get("scp")) {
                (Some(Value::String(s)), _) => s.split(' ').map(str::to_owned).collect(),
                (_, Some(scp)) => strings(scp).iter().flat_map(|s| s.split(' ').map(str::to_owned)).collect(),
                _ => vec![],
            };
            if !scopes.iter().any(|s| held.contains(s)) {
                return Err(Denied::Scope);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_token_comes_alone_or_after_bearer() {
        assert_eq!(token_of(Some("Bearer abc")), Ok("abc"));
        assert_eq!(token_of(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(token_of(Some("abc")), Ok("abc"));
        assert_eq!(token_of(None), Err(Denied::Missing));
        assert_eq!(token_of(Some("Bearer ")), Err(Denied::Missing));
        assert!(matches!(token_of(Some("Basic abc")), Err(Denied::Malformed(_))));
    }

    #[test]
    fn claims_become_strings_as_api_gateway_passes_them() {
        assert_eq!(claim_string(&json!("alice@example.com")).as_deref(), Some("alice@example.com"));
        assert_eq!(claim_string(&json!(true)).as_deref(), Some("true"));
        assert_eq!(claim_string(&json!(false)).as_deref(), Some("false"));
        assert_eq!(claim_string(&json!(1795435200)).as_deref(), Some("1795435200"));
        assert_eq!(claim_string(&json!(["a", "b", 3])).as_deref(), Some("[a b 3]"));
        assert_eq!(claim_string(&json!({"k": "v"})).as_deref(), Some("map[k:v]"));
        assert_eq!(claim_string(&Value::Null), None);
    }
}
