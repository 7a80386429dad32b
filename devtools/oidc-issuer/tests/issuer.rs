//! The issuer over HTTP, as a browser and a client would use it: discovery, the sign-in form over
//! the simulator's users, the code flow with PKCE, and each refusal.

use jit_oidc_issuer::{
    flow::{authorize, authorize_params, http_client, redeem},
    jwt::install_provider,
    start, ClientRegistration, IssuerConfig, ManualClock, Pkce, RunningIssuer, SignInUser, UserSource,
};
use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
use jumpcloud_sim::{Org, RunningSimulator, Simulator, User, UserState};
use reqwest::{header, StatusCode, Url};
use serde_json::Value;
use std::{sync::Arc, time::Duration, time::SystemTime};

const CLIENT: &str = "jit-portal";
const REDIRECT: &str = "http://127.0.0.1:18080/";
const OTHER_REDIRECT: &str = "http://127.0.0.1:18080/callback";

fn clients() -> Vec<ClientRegistration> {
    vec![
        ClientRegistration::new(CLIENT, [REDIRECT, OTHER_REDIRECT]),
        ClientRegistration::new("other-app", ["http://127.0.0.1:19090/cb"]),
    ]
}

fn static_users() -> UserSource {
    UserSource::Static(vec![
        SignInUser { name: Some("Alice Doe".into()), ..SignInUser::new("u-alice", "alice@example.com") },
        SignInUser::new("u-bob", "bob@example.com"),
    ])
}

async fn issuer() -> RunningIssuer {
    start(IssuerConfig::new(clients(), static_users())).await.unwrap()
}

async fn jwks(issuer: &str) -> JwkSet {
    reqwest::get(format!("{issuer}/jwks.json")).await.unwrap().json().await.unwrap()
}

/// The token's claims, verified with the issuer's published key as a relying party would.
async fn verified_claims(issuer: &str, token: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    install_provider();
    let keys = jwks(issuer).await;
    let kid = decode_header(token)?.kid.unwrap_or_default();
    let jwk = keys.find(&kid).expect("the token's kid is in the JWKS");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[CLIENT]);
    Ok(decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
}

async fn code_for(issuer: &RunningIssuer, email: &str, pkce: &Pkce) -> String {
    authorize(&http_client(), &issuer.url(), CLIENT, REDIRECT, email, pkce).await.unwrap()
}

async fn token_error(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned(), body["error_description"].as_str().unwrap().to_owned())
}

/// GET /authorize with these parameters, redirects not followed.
async fn authorize_with(issuer: &RunningIssuer, params: &[(&str, &str)]) -> reqwest::Response {
    http_client().get(format!("{}/authorize", issuer.url())).query(params).send().await.unwrap()
}

fn redirect_params(response: &reqwest::Response) -> Vec<(String, String)> {
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    Url::parse(location).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_discovery_document_names_the_endpoints_and_what_they_support() {
    let issuer = issuer().await;
    let response = reqwest::get(format!("{}/.well-known/openid-configuration", issuer.url())).await.unwrap();
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let doc: Value = response.json().await.unwrap();
    let url = issuer.url();
    assert_eq!(doc["issuer"], url.as_str());
    assert_eq!(doc["authorization_endpoint"], format!("{url}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{url}/token"));
    assert_eq!(doc["jwks_uri"], format!("{url}/jwks.json"));
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(doc["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));

    let keys = jwks(&url).await;
    assert_eq!(keys.keys.len(), 1);
    let key = serde_json::to_value(&keys.keys[0]).unwrap();
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
}

#[tokio::test]
async fn a_signed_in_user_gets_an_id_token_the_jwks_verifies() {
    let issuer = issuer().await;
    let (pkce, state, nonce) = (Pkce::new(), "st-123", "n-456");
    let params = authorize_params(CLIENT, REDIRECT, &pkce, state, nonce);
    let form = authorize_with(&issuer, &params).await;
    assert_eq!(form.status(), StatusCode::OK);
    let csp = form.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = form.text().await.unwrap();
    assert!(page.contains(">alice@example.com</button> <span>(Alice Doe)</span>"), "{page}");
    assert!(page.contains("<label for=\"q\">"), "the filter has a label");

    let mut chosen = params.clone();
    chosen.push(("user", "u-alice"));
    let back = http_client().post(format!("{}/authorize", issuer.url())).form(&chosen).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let location = back.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    let got = redirect_params(&back);
    assert_eq!(param(&got, "state"), Some(state));
    let code = param(&got, "code").unwrap();

    let answer = redeem(&http_client(), &issuer.url(), CLIENT, REDIRECT, code, &pkce.verifier).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-store");
    let tokens: Value = answer.json().await.unwrap();
    assert_eq!((tokens["token_type"].as_str(), tokens["expires_in"].as_u64()), (Some("Bearer"), Some(3600)));
    assert!(tokens["access_token"].as_str().is_some_and(|t| t.len() >= 43));

    let claims = verified_claims(&issuer.url(), tokens["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims["iss"], issuer.url().as_str());
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["sub"], "u-alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["nonce"], nonce);
    assert_eq!(claims["name"], "Alice Doe");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
}

#[tokio::test]
async fn a_tampered_or_foreign_token_fails_verification() {
    let issuer = issuer().await;
    let signed = jit_oidc_issuer::sign_in(&issuer.url(), CLIENT, REDIRECT, "bob@example.com").await.unwrap();
    let token = signed.id_token;
    assert!(verified_claims(&issuer.url(), &token).await.is_ok());

    // bob's token claiming to be alice: the signature no longer matches.
    let parts: Vec<&str> = token.split('.').collect();
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["email"] = "alice@example.com".into();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    let err = verified_claims(&issuer.url(), &forged).await.unwrap_err();
    assert_eq!(err.kind(), &jsonwebtoken::errors::ErrorKind::InvalidSignature);

    // Another issuer's key under this issuer's kid: refused too.
    let other = jit_oidc_issuer::jwt::SigningKey::generate().unwrap();
    let foreign = other.sign(&claims).unwrap();
    let kid = decode_header(&token).unwrap().kid.unwrap();
    let foreign_parts: Vec<&str> = foreign.split('.').collect();
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"typ":"JWT","alg":"RS256","kid":"{kid}"}}"#));
    let relabelled = format!("{header}.{}.{}", foreign_parts[1], foreign_parts[2]);
    let err = verified_claims(&issuer.url(), &relabelled).await.unwrap_err();
    assert_eq!(err.kind(), &jsonwebtoken::errors::ErrorKind::InvalidSignature);
}

#[tokio::test]
async fn the_sign_in_form_lists_the_simulators_activated_users() {
    let mut org = Org::new("k");
    org.add_user(User::new("carol", "carol@corp.example"));
    org.add_user(User::new("dave", "dave@corp.example").with_state(UserState::Suspended));
    let sim: RunningSimulator = Simulator::start(vec![org]).await.unwrap();
    let issuer = start(IssuerConfig::new(clients(), UserSource::Simulator { url: sim.url(), org: 0 })).await.unwrap();
    let pkce = Pkce::new();
    let params = authorize_params(CLIENT, REDIRECT, &pkce, "s", "n");
    let page = authorize_with(&issuer, &params).await.text().await.unwrap();
    assert!(page.contains(">carol@corp.example</button>"), "{page}");
    assert!(!page.contains("dave@corp.example"), "a suspended user cannot sign in");

    // Added to the simulator after start: on the form at once.
    sim.handle().org(0).add_user(User::new("erin", "erin@corp.example")).unwrap();
    let mut filtered = params.clone();
    filtered.push(("q", "ERIN"));
    let page = authorize_with(&issuer, &filtered).await.text().await.unwrap();
    assert!(page.contains(">erin@corp.example</button>") && !page.contains("carol@corp.example"), "{page}");
    assert!(page.contains("1 of 2 people match"), "{page}");

    let signed = jit_oidc_issuer::sign_in(&issuer.url(), CLIENT, REDIRECT, "carol@corp.example").await.unwrap();
    let claims = verified_claims(&issuer.url(), &signed.id_token).await.unwrap();
    let carol = sim.handle().org(0).user_by_email("carol@corp.example").unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["preferred_username"].as_str()),
        (Some(carol.id.as_str()), Some("carol"))
    );
}

#[tokio::test]
async fn a_wrong_code_verifier_is_refused_and_spends_the_code() {
    let issuer = issuer().await;
    let http = http_client();
    let pkce = Pkce::new();
    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    let wrong = Pkce::new().verifier;
    let (status, error, description) =
        token_error(redeem(&http, &issuer.url(), CLIENT, REDIRECT, &code, &wrong).await.unwrap()).await;
    assert_eq!((status, error.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert!(description.contains("code_challenge"), "{description}");
    // The right verifier comes too late: a code serves one token request.
    let (_, error, _) =
        token_error(redeem(&http, &issuer.url(), CLIENT, REDIRECT, &code, &pkce.verifier).await.unwrap()).await;
    assert_eq!(error, "invalid_grant");

    // A malformed verifier.
    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    let (_, error, description) =
        token_error(redeem(&http, &issuer.url(), CLIENT, REDIRECT, &code, "short").await.unwrap()).await;
    assert_eq!(error, "invalid_grant");
    assert!(description.contains("43 to 128"), "{description}");
}

#[tokio::test]
async fn a_code_is_good_for_one_token_request() {
    let issuer = issuer().await;
    let http = http_client();
    let pkce = Pkce::new();
    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    let first = redeem(&http, &issuer.url(), CLIENT, REDIRECT, &code, &pkce.verifier).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let (status, error, description) =
        token_error(redeem(&http, &issuer.url(), CLIENT, REDIRECT, &code, &pkce.verifier).await.unwrap()).await;
    assert_eq!((status, error.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert!(description.contains("already used"), "{description}");
}

#[tokio::test]
async fn a_code_expires_after_its_lifetime() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let mut config = IssuerConfig::new(clients(), static_users());
    config.clock = clock.clone();
    config.code_ttl = Duration::from_secs(30);
    let issuer = start(config).await.unwrap();
    let http = http_client();
    let pkce = Pkce::new();

    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    clock.advance(Duration::from_secs(29));
    assert_eq!(redeem(&http, &issuer.url(), CLIENT, REDIRECT, &code, &pkce.verifier).await.unwrap().status(), 200);

    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    clock.advance(Duration::from_secs(30));
    let (_, error, description) =
        token_error(redeem(&http, &issuer.url(), CLIENT, REDIRECT, &code, &pkce.verifier).await.unwrap()).await;
    assert_eq!((error.as_str(), description.as_str()), ("invalid_grant", "the code has expired"));
}

#[tokio::test]
async fn an_unknown_client_or_unregistered_redirect_gets_an_error_page_never_a_redirect() {
    let issuer = issuer().await;
    let pkce = Pkce::new();
    for (client, redirect, expected) in [
        ("nobody", REDIRECT, "unknown client_id"),
        (CLIENT, "http://127.0.0.1:18080/elsewhere", "is not registered for client"),
        (CLIENT, "http://127.0.0.1:18080", "is not registered for client"),
        ("other-app", REDIRECT, "is not registered for client"),
    ] {
        let response = authorize_with(&issuer, &authorize_params(client, redirect, &pkce, "s", "n")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{client} {redirect}");
        assert!(response.headers().get(header::LOCATION).is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains(expected) && page.contains("role=\"alert\""), "{page}");
    }
    // The token endpoint: an unknown client is invalid_client (401).
    let (status, error, _) =
        token_error(redeem(&http_client(), &issuer.url(), "nobody", REDIRECT, "c", &pkce.verifier).await.unwrap())
            .await;
    assert_eq!((status, error.as_str()), (StatusCode::UNAUTHORIZED, "invalid_client"));
}

#[tokio::test]
async fn the_token_request_must_match_the_authorization_request() {
    let issuer = issuer().await;
    let http = http_client();
    let pkce = Pkce::new();
    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    let (_, error, description) =
        token_error(redeem(&http, &issuer.url(), CLIENT, OTHER_REDIRECT, &code, &pkce.verifier).await.unwrap()).await;
    assert_eq!(error, "invalid_grant");
    assert!(description.contains("redirect_uri"), "{description}");

    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    let (_, error, description) = token_error(
        redeem(&http, &issuer.url(), "other-app", "http://127.0.0.1:19090/cb", &code, &pkce.verifier).await.unwrap(),
    )
    .await;
    assert_eq!(error, "invalid_grant");
    assert!(description.contains("another client"), "{description}");
}

#[tokio::test]
async fn bad_authorization_requests_go_back_to_the_client_with_an_error() {
    let issuer = issuer().await;
    let pkce = Pkce::new();
    let base = authorize_params(CLIENT, REDIRECT, &pkce, "st", "n");
    let without = |name: &str| base.iter().filter(|(k, _)| *k != name).cloned().collect::<Vec<_>>();
    let with = |name: &'static str, value: &'static str| {
        base.iter().map(|(k, v)| if *k == name { (*k, value) } else { (*k, *v) }).collect::<Vec<_>>()
    };
    for (params, error, hint) in [
        (without("code_challenge"), "invalid_request", "PKCE"),
        (without("code_challenge_method"), "invalid_request", "S256"),
        (with("code_challenge_method", "plain"), "invalid_request", "S256"),
        (with("code_challenge", "too-short"), "invalid_request", "SHA-256"),
        (with("response_type", "token"), "unsupported_response_type", "code"),
        (with("scope", "email"), "invalid_scope", "openid"),
    ] {
        let response = authorize_with(&issuer, &params).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{error} {hint}");
        let got = redirect_params(&response);
        assert_eq!(param(&got, "error"), Some(error), "{got:?}");
        assert!(param(&got, "error_description").unwrap().contains(hint), "{got:?}");
        assert_eq!(param(&got, "state"), Some("st"));
        assert_eq!(param(&got, "code"), None);
    }

    // Cancelling the form.
    let mut cancel = base.clone();
    cancel.push(("cancel", "1"));
    let response = http_client().post(format!("{}/authorize", issuer.url())).form(&cancel).send().await.unwrap();
    let got = redirect_params(&response);
    assert_eq!((param(&got, "error"), param(&got, "state")), (Some("access_denied"), Some("st")));

    // Someone not on the list.
    let mut stranger = base.clone();
    stranger.push(("user", "u-mallory"));
    let response = http_client().post(format!("{}/authorize", issuer.url())).form(&stranger).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
}

#[tokio::test]
async fn the_token_endpoint_refuses_other_grants_and_bodies() {
    let issuer = issuer().await;
    let http = http_client();
    let token_url = format!("{}/token", issuer.url());
    let password = http
        .post(&token_url)
        .form(&[("grant_type", "password"), ("client_id", CLIENT), ("username", "a"), ("password", "b")])
        .send()
        .await
        .unwrap();
    let (status, error, _) = token_error(password).await;
    assert_eq!((status, error.as_str()), (StatusCode::BAD_REQUEST, "unsupported_grant_type"));

    let json =
        http.post(&token_url).json(&serde_json::json!({"grant_type": "authorization_code"})).send().await.unwrap();
    assert_eq!(token_error(json).await.1, "invalid_request");

    let missing = http.post(&token_url).form(&[("grant_type", "authorization_code"), ("client_id", CLIENT)]).send();
    let (_, error, description) = token_error(missing.await.unwrap()).await;
    assert_eq!((error.as_str(), description.as_str()), ("invalid_request", "code is required"));
}

#[tokio::test]
async fn browsers_on_a_registered_origin_may_call_the_token_endpoint() {
    let issuer = issuer().await;
    let http = http_client();
    let token_url = format!("{}/token", issuer.url());
    let preflight = http
        .request(reqwest::Method::OPTIONS, &token_url)
        .header(header::ORIGIN, "http://127.0.0.1:18080")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:18080");
    assert_eq!(preflight.headers()[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");

    let pkce = Pkce::new();
    let code = code_for(&issuer, "alice@example.com", &pkce).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", CLIENT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let answer =
        http.post(&token_url).header(header::ORIGIN, "http://127.0.0.1:18080").form(&form).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:18080");

    let elsewhere =
        http.post(&token_url).header(header::ORIGIN, "http://evil.example").form(&form).send().await.unwrap();
    assert!(elsewhere.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}
