//! The issuer's HTTP endpoints: discovery, JWKS, the authorization endpoint (the sign-in form and
//! its submission) and the token endpoint.

use crate::{clock::Clock, jwt::SigningKey, pages, users::SignInUser, users::UserSource};
use anyhow::Context;
use aws_lc_rs::{digest, rand};
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};

/// A client (relying party) allowed to ask for tokens: a public client (no secret; PKCE instead),
/// redirected only to one of its `redirect_uris`, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistration {
    pub id: String,
    pub redirect_uris: Vec<String>,
}

impl ClientRegistration {
    pub fn new(id: impl Into<String>, redirect_uris: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { id: id.into(), redirect_uris: redirect_uris.into_iter().map(Into::into).collect() }
    }
}

pub struct IssuerConfig {
    /// Where to listen; port 0 picks a free one. The issuer identifier is `http://{addr}`.
    pub addr: SocketAddr,
    pub clients: Vec<ClientRegistration>,
    pub users: UserSource,
    /// Lifetime of ID tokens (and `expires_in`).
    pub token_ttl: Duration,
    /// Lifetime of an authorization code (each is good for one token request).
    pub code_ttl: Duration,
    pub clock: Arc<dyn Clock>,
}

impl IssuerConfig {
    /// 127.0.0.1 on a free port, ID tokens for an hour, codes for a minute, the wall clock.
    pub fn new(clients: Vec<ClientRegistration>, users: UserSource) -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            clients,
            users,
            token_ttl: Duration::from_secs(3600),
            code_ttl: Duration::from_secs(60),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }
}

/// An authorization code waiting for its token request.
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
    user: SignInUser,
    expires_at: i64,
}

struct Issuer {
    url: String,
    key: SigningKey,
    clients: Vec<ClientRegistration>,
    users: UserSource,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    code_ttl: Duration,
    token_ttl: Duration,
    codes: Mutex<HashMap<String, PendingCode>>,
}

type Shared = State<Arc<Issuer>>;

/// Starts an issuer (a fresh RSA key) and serves it until [`RunningIssuer::shutdown`] or drop.
pub async fn start(config: IssuerConfig) -> anyhow::Result<RunningIssuer> {
    for client in &config.clients {
        anyhow::ensure!(!client.id.trim().is_empty(), "a client id is empty");
        anyhow::ensure!(!client.redirect_uris.is_empty(), "client {}: no redirect URI", client.id);
        for uri in &client.redirect_uris {
            let parsed = Url::parse(uri).with_context(|| format!("client {}: redirect URI {uri:?}", client.id))?;
            anyhow::ensure!(parsed.fragment().is_none(), "client {}: redirect URI {uri:?} has a fragment", client.id);
        }
    }
    let listener =
        tokio::net::TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    let issuer = Arc::new(Issuer {
        url: format!("http://{addr}"),
        key: SigningKey::generate()?,
        clients: config.clients,
        users: config.users,
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        clock: config.clock,
        code_ttl: config.code_ttl,
        token_ttl: config.token_ttl,
        codes: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks.json", get(jwks))
        .route("/authorize", get(authorize_form).post(authorize_submit))
        .route("/token", axum::routing::post(token).options(token_preflight))
        .with_state(issuer.clone());
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(RunningIssuer { addr, issuer, stop, task: Some(task) })
}

pub struct RunningIssuer {
    addr: SocketAddr,
    issuer: Arc<Issuer>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningIssuer {
    /// The issuer identifier (`iss`), e.g. `http://127.0.0.1:41234`; discovery is under it.
    pub fn url(&self) -> String {
        self.issuer.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// For tests of token verification: `claims` signed with this issuer's key, as it signs its
    /// ID tokens (RS256, its `kid`), whatever they say.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        self.issuer.key.sign(claims)
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            task.await.context("issuer task")??;
        }
        Ok(())
    }
}

impl Drop for RunningIssuer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery and keys
// ---------------------------------------------------------------------------------------------

fn public_json(value: Value) -> Response {
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], Json(value)).into_response()
}

async fn discovery(State(issuer): Shared) -> Response {
    let url = &issuer.url;
    public_json(json!({
        "issuer": url,
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "jwks_uri": format!("{url}/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "aud", "sub", "iat", "exp", "nonce", "email", "email_verified", "name", "preferred_username"],
    }))
}

async fn jwks(State(issuer): Shared) -> Response {
    public_json(serde_json::to_value(issuer.key.jwks()).unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Authorization endpoint
// ---------------------------------------------------------------------------------------------

/// The authorization request's parameters (query on GET, form on POST) and the form's own.
#[derive(Debug, Default, Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// The form: the chosen user's `sub`, or `cancel`.
    user: Option<String>,
    cancel: Option<String>,
    /// The form's filter.
    q: Option<String>,
}

/// A valid authorization request.
pub(crate) struct Checked {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
}

enum Refusal {
    /// No trustworthy redirect URI (unknown client, redirect URI not registered): an error page.
    Page(StatusCode, String),
    /// Back to the client with `error` and `error_description` (RFC 6749 4.1.2.1).
    Redirect { checked_redirect: String, state: Option<String>, error: &'static str, description: String },
}

/// `code_challenge` of S256: base64url of a SHA-256 digest, 43 characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|d| d.len() == 32)
}

/// RFC 7636 4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

impl Issuer {
    fn client(&self, id: &str) -> Option<&ClientRegistration> {
        self.clients.iter().find(|c| c.id == id)
    }

    fn check(&self, p: &AuthorizeParams) -> Result<Checked, Refusal> {
        let page = |message: String| Refusal::Page(StatusCode::BAD_REQUEST, message);
        let client_id =
            p.client_id.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| page("client_id is required".into()))?;
        let client = self.client(client_id).ok_or_else(|| page(format!("unknown client_id {client_id:?}")))?;
        let redirect_uri = p
            .redirect_uri
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| page("redirect_uri is required".into()))?;
        if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err(page(format!(
                "redirect_uri {redirect_uri:?} is not registered for client {client_id:?} (registered: {})",
                client.redirect_uris.join(", ")
            )));
        }
        let refuse = |error: &'static str, description: String| Refusal::Redirect {
            checked_redirect: redirect_uri.to_owned(),
            state: p.state.clone(),
            error,
            description,
        };
        match p.response_type.as_deref() {
            Some("code") => {}
            Some(other) => {
                return Err(refuse(
                    "unsupported_response_type",
                    format!("response_type {other:?}: only code is supported"),
                ))
            }
            None => return Err(refuse("invalid_request", "response_type is required".into())),
        }
        let scope = p.scope.clone().unwrap_or_default();
        if !scope.split(' ').any(|s| s == "openid") {
            return Err(refuse("invalid_scope", "scope must include openid".into()));
        }
        let challenge = p
            .code_challenge
            .as_deref()
            .ok_or_else(|| refuse("invalid_request", "code_challenge is required (PKCE)".into()))?;
        if p.code_challenge_method.as_deref() != Some("S256") {
            return Err(refuse("invalid_request", "code_challenge_method must be S256".into()));
        }
        if !is_s256_challenge(challenge) {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier".into(),
            ));
        }
        Ok(Checked {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scope,
            state: p.state.clone(),
            nonce: p.nonce.clone(),
            code_challenge: challenge.to_owned(),
        })
    }
}

fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = Url::parse(redirect_uri).expect("registered redirect URIs parse");
    url.query_pairs_mut().extend_pairs(params);
    url.into()
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_owned()), (header::CACHE_CONTROL, "no-store".into())])
        .into_response()
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Page(status, message) => pages::error(status, &message),
        Refusal::Redirect { checked_redirect, state, error, description } => {
            let mut params = vec![("error", error), ("error_description", description.as_str())];
            if let Some(state) = &state {
                params.push(("state", state));
            }
            see_other(&with_params(&checked_redirect, &params))
        }
    }
}

fn parse_params(text: &str) -> Result<AuthorizeParams, Refusal> {
    serde_urlencoded::from_str(text)
        .map_err(|e| Refusal::Page(StatusCode::BAD_REQUEST, format!("malformed authorization request: {e}")))
}

async fn authorize_form(State(issuer): Shared, RawQuery(query): RawQuery) -> Response {
    let params = match parse_params(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(r) => return refusal(r),
    };
    let checked = match issuer.check(&params) {
        Ok(c) => c,
        Err(r) => return refusal(r),
    };
    match issuer.users.users(&issuer.http).await {
        Ok(users) => pages::sign_in(&checked, &users, params.q.as_deref().unwrap_or_default()),
        Err(e) => pages::error(StatusCode::BAD_GATEWAY, &format!("could not read the users who may sign in: {e:#}")),
    }
}

async fn authorize_submit(State(issuer): Shared, body: Bytes) -> Response {
    let params = match parse_params(&String::from_utf8_lossy(&body)) {
        Ok(p) => p,
        Err(r) => return refusal(r),
    };
    let checked = match issuer.check(&params) {
        Ok(c) => c,
        Err(r) => return refusal(r),
    };
    if params.cancel.is_some() {
        return refusal(Refusal::Redirect {
            checked_redirect: checked.redirect_uri,
            state: checked.state,
            error: "access_denied",
            description: "sign-in cancelled".into(),
        });
    }
    let Some(sub) = params.user.as_deref() else {
        return pages::error(StatusCode::BAD_REQUEST, "choose a user to sign in as");
    };
    let user = match issuer.users.users(&issuer.http).await {
        Ok(users) => users.into_iter().find(|u| u.sub == sub),
        Err(e) => {
            return pages::error(StatusCode::BAD_GATEWAY, &format!("could not read the users who may sign in: {e:#}"))
        }
    };
    let Some(user) = user else {
        return pages::error(StatusCode::BAD_REQUEST, &format!("no user {sub:?} may sign in here"));
    };
    let code = random_token();
    let now = issuer.clock.unix();
    {
        let mut codes = issuer.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, c| c.expires_at > now);
        codes.insert(
            code.clone(),
            PendingCode {
                client_id: checked.client_id,
                redirect_uri: checked.redirect_uri.clone(),
                code_challenge: checked.code_challenge,
                nonce: checked.nonce,
                scope: checked.scope,
                user,
                expires_at: now + issuer.code_ttl.as_secs() as i64,
            },
        );
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &checked.state {
        params.push(("state", state));
    }
    see_other(&with_params(&checked.redirect_uri, &params))
}

/// 32 random bytes, base64url (codes and opaque access tokens).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct TokenParams {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
}

/// A refused token request: RFC 6749 5.2's `{"error", "error_description"}`, never cached.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn oauth_error(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError { status, error, description: description.into() }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        tracing::info!(status = self.status.as_u16(), error = self.error, description = %self.description, "token request refused");
        let body = Json(json!({ "error": self.error, "error_description": self.description }));
        (self.status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
    }
}

impl Issuer {
    /// The browser origin allowed to call the token endpoint: that of a registered redirect URI.
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
        let registered = self.clients.iter().flat_map(|c| &c.redirect_uris).filter_map(|r| Url::parse(r).ok());
        let allowed = registered.map(|u| u.origin().ascii_serialization()).any(|o| o == origin);
        allowed.then(|| HeaderValue::from_str(origin).ok()).flatten()
    }

    fn exchange(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().unwrap_or_default().trim() == "application/x-www-form-urlencoded");
        if !form {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let p: TokenParams = serde_urlencoded::from_bytes(body)
            .map_err(|e| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", format!("malformed request: {e}")))?;
        let required = |value: &Option<String>, name: &str| -> Result<String, OAuthError> {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", format!("{name} is required")))
        };
        match required(&p.grant_type, "grant_type")?.as_str() {
            "authorization_code" => {}
            other => {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    format!("grant_type {other:?}: only authorization_code is supported"),
                ))
            }
        }
        let client_id = required(&p.client_id, "client_id")?;
        if self.client(&client_id).is_none() {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                format!("unknown client_id {client_id:?}"),
            ));
        }
        let code = required(&p.code, "code")?;
        let redirect_uri = required(&p.redirect_uri, "redirect_uri")?;
        let verifier = required(&p.code_verifier, "code_verifier")?;
        let invalid_grant = |description: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
        // Taken out whatever follows: a code is good for one token request, right or wrong.
        let pending = self.codes.lock().unwrap_or_else(|e| e.into_inner()).remove(&code);
        let pending = pending.ok_or_else(|| invalid_grant("the code is unknown or was already used"))?;
        let now = self.clock.unix();
        if now >= pending.expires_at {
            return Err(invalid_grant("the code has expired"));
        }
        if pending.client_id != client_id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if pending.redirect_uri != redirect_uri {
            return Err(invalid_grant("redirect_uri differs from the authorization request's"));
        }
        if !is_code_verifier(&verifier) {
            return Err(invalid_grant("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~"));
        }
        if s256(&verifier) != pending.code_challenge {
            return Err(invalid_grant("code_verifier does not match the code_challenge"));
        }
        self.tokens(&pending, now)
    }

    fn tokens(&self, code: &PendingCode, now: i64) -> Result<Response, OAuthError> {
        let ttl = self.token_ttl.as_secs() as i64;
        let user = &code.user;
        let mut claims = json!({
            "iss": self.url,
            "aud": code.client_id,
            "sub": user.sub,
            "email": user.email,
            "email_verified": user.email_verified,
            "iat": now,
            "exp": now + ttl,
        });
        if let Some(nonce) = &code.nonce {
            claims["nonce"] = nonce.clone().into();
        }
        if let Some(name) = &user.name {
            claims["name"] = name.clone().into();
        }
        if let Some(username) = &user.preferred_username {
            claims["preferred_username"] = username.clone().into();
        }
        let id_token = self
            .key
            .sign(&claims)
            .map_err(|e| oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))?;
        Ok((
            [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
            Json(json!({
                "access_token": random_token(),
                "token_type": "Bearer",
                "expires_in": ttl,
                "id_token": id_token,
                "scope": code.scope,
            })),
        )
            .into_response())
    }
}

fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

async fn token(State(issuer): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let answer = issuer.exchange(&headers, &body).unwrap_or_else(IntoResponse::into_response);
    with_cors(answer, issuer.allowed_origin(&headers))
}

async fn token_preflight(State(issuer): Shared, headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(Method::POST.as_str()));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    with_cors(response, issuer.allowed_origin(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_code_verifier(verifier));
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(is_s256_challenge(&s256(verifier)));
        assert!(!is_code_verifier("short"));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
        assert!(!is_s256_challenge("plain-challenge"));
    }

    #[test]
    fn redirect_parameters_are_added_to_the_registered_uri() {
        assert_eq!(with_params("http://127.0.0.1:9/cb?x=1", &[("code", "a b")]), "http://127.0.0.1:9/cb?x=1&code=a+b");
    }
}
