//! People through the local API, end to end: the local OIDC issuer signs in the simulator's users,
//! the local API checks their ID tokens as API Gateway's JWT authorizer would and hands the claims
//! to the real handlers (moto's server, the JumpCloud simulator, the real SDK). A token that would
//! not pass API Gateway never reaches a handler.

use async_trait::async_trait;
use integration_tests::{event, functions::Functions, http_response, lambda_event, unique, Stack};
use jit_local_api::{Handlers, InvokeError, Invoker, JwtConfiguration, LocalApiConfig, RouteTable, RunningLocalApi};
use jit_oidc_issuer::{ClientRegistration, IssuerConfig, RunningIssuer, UserSource};
use jit_shared::{clock::ManualClock, handlers::grant::GrantHandler};
use jumpcloud_sim::{Group, Org, RunningSimulator, Simulator, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

const KEY: &str = "corp-admin-key-5e0d";
const CLIENT: &str = "jit-portal";
const REDIRECT: &str = "http://127.0.0.1:18080/";

/// The real handlers, counting the invocations that reach them.
struct Counted {
    handlers: Handlers,
    invocations: AtomicUsize,
}

#[async_trait]
impl Invoker for Counted {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        self.handlers.invoke(function, event).await
    }
}

struct World {
    _stack: Stack,
    _sim: RunningSimulator,
    issuer: RunningIssuer,
    api: RunningLocalApi,
    functions: Arc<Counted>,
    grant: Arc<GrantHandler>,
    clock: Arc<ManualClock>,
}

async fn world() -> World {
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    org.add_user(User::new("alice", "alice@example.com"));
    org.add_user(User::new("bob", "bob@example.com"));
    org.add_group(Group::new("prod-db-admins"));
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let functions = Functions::new(&stack, &sim.url(), &[], None).await;
    // The directory the callers resolve against (the sample event's caller is the admin).
    functions.sync_now().await;
    let (grant, handlers) = (functions.grant.clone(), functions.handlers());

    let issuer = jit_oidc_issuer::start(IssuerConfig::new(
        vec![
            ClientRegistration::new(CLIENT, [REDIRECT]),
            ClientRegistration::new("other-app", ["http://127.0.0.1:19090/"]),
        ],
        UserSource::Simulator { url: sim.url(), org: 0 },
    ))
    .await
    .unwrap();
    let functions = Arc::new(Counted { handlers, invocations: AtomicUsize::new(0) });
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let jwt = JwtConfiguration { issuer: issuer.url(), audience: vec![CLIENT.into()] };
    let mut api_config = LocalApiConfig::new(RouteTable::deployed().unwrap(), Some(jwt));
    api_config.clock = clock.clone();
    let api = jit_local_api::start(api_config, functions.clone()).await.unwrap();
    World { _stack: stack, _sim: sim, issuer, api, functions, grant, clock }
}

impl World {
    async fn sign_in(&self, email: &str) -> String {
        jit_oidc_issuer::sign_in(&self.issuer.url(), CLIENT, REDIRECT, email).await.unwrap().id_token
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request =
            reqwest::Client::new().request(method, format!("{}{path}", self.api.url())).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    fn invocations(&self) -> usize {
        self.functions.invocations.load(Ordering::SeqCst)
    }

    /// A grant made by the admin (the sample event's IAM caller), straight to the handler.
    async fn admin_grants(&self, user: &str) -> Value {
        let mut e = event("grant-create.json");
        e["headers"]["idempotency-key"] = unique("k").into();
        e["body"] =
            json!({"user": user, "group": "prod-db-admins", "duration": "2h", "reason": "INC-1"}).to_string().into();
        let (status, grant, _) = http_response(&self.grant.handle(lambda_event(e)).await.unwrap());
        assert_eq!(status, 201, "{grant}");
        grant
    }
}

#[tokio::test]
async fn a_signed_in_person_reads_their_grants_through_the_local_api() {
    let w = world().await;
    let alice = w.sign_in("alice@example.com").await;
    let (status, body) = w.call(reqwest::Method::GET, "/grants", &alice, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"grants": [], "next": null})));

    let grant = w.admin_grants("alice@example.com").await;
    let id = grant["id"].as_str().unwrap();
    let (status, body) = w.call(reqwest::Method::GET, "/grants", &alice, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["grants"].as_array().map(|g| g.len()), Some(1), "{body}");
    assert_eq!(body["grants"][0]["id"], id);
    let (status, body) = w.call(reqwest::Method::GET, &format!("/grants/{id}"), &alice, None).await;
    assert_eq!((status, body["user"]["email"].as_str()), (StatusCode::OK, Some("alice@example.com")));

    // bob is signed in too, and the grant is not his: it does not exist for him.
    let bob = w.sign_in("bob@example.com").await;
    let (status, problem) = w.call(reqwest::Method::GET, &format!("/grants/{id}"), &bob, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    // Nobody but an admin grants while no policy is applied: the handler's 403, through the API.
    let ask = json!({"group": "prod-db-admins", "duration": "1h", "reason": "please"});
    let (status, problem) = w.call(reqwest::Method::POST, "/grants", &bob, Some(ask)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(w.invocations(), 5);
}

#[tokio::test]
async fn a_token_api_gateway_would_refuse_never_reaches_a_handler() {
    let w = world().await;
    let alice = w.sign_in("alice@example.com").await;
    let issuer = w.issuer.url();
    let other_app = jit_oidc_issuer::sign_in(&issuer, "other-app", "http://127.0.0.1:19090/", "alice@example.com");
    let other_app = other_app.await.unwrap().id_token;
    let claims = |iss: &str| {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": iss, "aud": CLIENT, "sub": "x", "email": "alice@example.com", "email_verified": true,
               "iat": now, "exp": now + 600})
    };
    let wrong_issuer = w.issuer.sign(&claims("https://sso.example.com")).unwrap();
    let forged = {
        // alice's token with bob's email: the signature fails.
        let parts: Vec<&str> = alice.split('.').collect();
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        let mut c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        c["email"] = "bob@example.com".into();
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(c.to_string()), parts[2])
    };
    for (what, token) in [("wrong audience", &other_app), ("wrong issuer", &wrong_issuer), ("bad signature", &forged)] {
        let (status, body) = w.call(reqwest::Method::GET, "/grants", token, None).await;
        assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!({"message": "Unauthorized"})), "{what}");
    }
    assert_eq!(w.invocations(), 0, "no handler ran");

    // alice's own token, before and after it expires (by the API's clock).
    assert_eq!(w.call(reqwest::Method::GET, "/grants", &alice, None).await.0, StatusCode::OK);
    w.clock.advance(chrono::Duration::hours(2));
    let (status, body) = w.call(reqwest::Method::GET, "/grants", &alice, None).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!({"message": "Unauthorized"})), "expired");
    assert_eq!(w.invocations(), 1, "only the valid request reached a handler");
}

/// Every operation of `api/openapi.yaml`, called through the local API (the template's routes)
/// with a valid token: each reaches its handler and answers as the document says (a status it
/// declares, problem+json for errors, a body its schema allows), none answers "no route".
#[tokio::test]
async fn every_documented_operation_answers_as_the_document_says() {
    use jit_shared::{handlers::openapi::document, testing::contract};
    let w = world().await;
    let alice = w.sign_in("alice@example.com").await;
    let grant = w.admin_grants("alice@example.com").await;
    let id = grant["id"].as_str().unwrap();
    let mut checked = 0;
    for (template, item) in document()["paths"].as_object().unwrap() {
        let path = template.replace("{id}", id).replace("{version}", "v0").replace("{file}", "app.js");
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = reqwest::Client::new().request(method.clone(), format!("{}{path}", w.api.url()));
            if template != "/slack/interactions" {
                request = request.bearer_auth(&alice);
            }
            if method == reqwest::Method::POST {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            let text = response.text().await.unwrap();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // The handlers' own "no route" answer means the route reached a function that has none.
            assert!(!text.contains(&format!("no route {method} {path}\"")), "{method} {template}: {text}");
            let answer = contract::check(method.as_str(), &path, status, content_type.as_deref(), &body);
            assert_eq!(answer, Ok(()), "{method} {template} -> {status}: {text}");
            checked += 1;
        }
    }
    assert_eq!(checked, 18, "every operation called");
}
