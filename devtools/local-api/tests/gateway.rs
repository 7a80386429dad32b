//! The local API over HTTP with a recording function in place of the real ones, and the local
//! issuer's real tokens: what reaches a function (and what does not), and how answers come back.

use async_trait::async_trait;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jit_local_api::{start, Auth, InvokeError, Invoker, JwtConfiguration, LocalApiConfig, RouteTable, RunningLocalApi};
use jit_oidc_issuer::{ClientRegistration, IssuerConfig, RunningIssuer, SignInUser, UserSource};
use jit_shared::clock::ManualClock;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

const CLIENT: &str = "jit-portal";
const REDIRECT: &str = "http://127.0.0.1:18080/";

/// Records each event and answers with `answer` (or fails, or never answers).
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(String, Value)>>,
    behaviour: Mutex<Behaviour>,
}

#[derive(Default, Clone)]
enum Behaviour {
    #[default]
    Echo,
    Answer(Value),
    Fail,
    Hang,
}

impl Recorder {
    fn events(&self) -> Vec<(String, Value)> {
        self.events.lock().unwrap().clone()
    }
    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
}

#[async_trait]
impl Invoker for Recorder {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        self.events.lock().unwrap().push((function.to_owned(), event.clone()));
        let behaviour = self.behaviour.lock().unwrap().clone();
        match behaviour {
            Behaviour::Echo => Ok(json!({
                "statusCode": 200,
                "headers": {"content-type": "application/json"},
                "body": json!({"function": function}).to_string(),
            })),
            Behaviour::Answer(answer) => Ok(answer),
            Behaviour::Fail => Err(InvokeError::Failed { function: function.to_owned(), message: "boom".into() }),
            Behaviour::Hang => std::future::pending().await,
        }
    }
}

struct World {
    issuer: RunningIssuer,
    api: RunningLocalApi,
    recorder: Arc<Recorder>,
    clock: Arc<ManualClock>,
}

async fn issuer() -> RunningIssuer {
    let clients = vec![
        ClientRegistration::new(CLIENT, [REDIRECT]),
        ClientRegistration::new("other-app", ["http://127.0.0.1:19090/"]),
    ];
    let users = UserSource::Static(vec![
        SignInUser { preferred_username: Some("alice".into()), ..SignInUser::new("u-alice", "alice@example.com") },
        SignInUser::new("u-bob", "bob@example.com"),
    ]);
    jit_oidc_issuer::start(IssuerConfig::new(clients, users)).await.unwrap()
}

async fn world_with(routes: RouteTable) -> World {
    let issuer = issuer().await;
    let recorder = Arc::new(Recorder::default());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let jwt = JwtConfiguration { issuer: issuer.url(), audience: vec![CLIENT.into()] };
    let mut config = LocalApiConfig::new(routes, Some(jwt));
    config.clock = clock.clone();
    let api = start(config, recorder.clone()).await.unwrap();
    World { issuer, api, recorder, clock }
}

async fn world() -> World {
    world_with(RouteTable::deployed().unwrap()).await
}

impl World {
    async fn token(&self, email: &str) -> String {
        jit_oidc_issuer::sign_in(&self.issuer.url(), CLIENT, REDIRECT, email).await.unwrap().id_token
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.api.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Claims a valid token of this issuer would carry, for tokens made to measure.
    fn claims(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": self.issuer.url(), "aud": CLIENT, "sub": "u-alice", "email": "alice@example.com",
               "email_verified": true, "iat": now, "exp": now + 600})
    }
}

async fn refused(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let reason = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"message": "Unauthorized"}));
    reason
}

#[test]
fn the_routes_are_the_templates_with_the_function_behind_each() {
    let routes = RouteTable::deployed().unwrap();
    let table: BTreeMap<&str, (&str, &Auth)> =
        routes.routes().iter().map(|r| (r.key.as_str(), (r.function.as_str(), &r.auth))).collect();
    let jwt = Auth::Jwt { scopes: vec![] };
    let expected: BTreeMap<&str, (&str, &Auth)> = [
        ("DELETE /grants/{id}", "revoke"),
        ("GET /grants", "grant"),
        ("GET /grants/{id}", "grant"),
        ("GET /groups", "grant"),
        ("GET /policy", "grant"),
        ("POST /grants", "grant"),
        ("POST /grants/{id}/approve", "grant"),
        ("POST /grants/{id}/deny", "grant"),
        ("POST /grants/{id}/extend", "grant"),
        ("POST /sync", "sync"),
    ]
    .into_iter()
    .map(|(k, f)| (k, (f, &jwt)))
    .collect();
    // Every route of the template is served (a new one shows up here), each in JWT mode but
    // Slack's, which Slack signs instead (the handler verifies the signature), and the portal's
    // page, files and configuration, which load before anyone signs in.
    for (key, behind) in &expected {
        assert_eq!(table.get(key), Some(behind), "{key}");
    }
    const UNAUTHENTICATED: &[&str] =
        &["POST /slack/interactions", "GET /", "GET /assets/{version}/{file}", "GET /portal/config.json"];
    for (key, (_, auth)) in &table {
        let wanted = if UNAUTHENTICATED.contains(key) { &Auth::None } else { &jwt };
        assert_eq!(*auth, wanted, "{key}: every deployed route but Slack's takes the JWT authorizer in JWT mode");
    }
    assert_eq!(table.get("POST /slack/interactions"), Some(&("grant", &Auth::None)));
    assert!(routes.routes().iter().all(|r| r.timeout == Duration::from_secs(30)));

    // IAM mode: every route AWS_IAM, as deployed by default, but Slack's (the portal's exist in
    // JWT mode only).
    let iam = RouteTable::from_template(jit_local_api::routes::TEMPLATE, &BTreeMap::from([("UseJwt".into(), false)]));
    assert!(iam
        .unwrap()
        .routes()
        .iter()
        .all(|r| r.auth == if UNAUTHENTICATED.contains(&r.key.as_str()) { Auth::None } else { Auth::Iam }));
    // An undecided condition fails loudly.
    let err = RouteTable::from_template(jit_local_api::routes::TEMPLATE, &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("UseJwt"), "{err:#}");
}

/// A template with the routes the portal and Slack will add, to check the matching and the
/// unauthenticated path.
const PORTAL_TEMPLATE: &str = r#"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: grant}}
  Slow:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: slow}}
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn, PayloadFormatVersion: "2.0"}
  SlowIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Slow.Arn, PayloadFormatVersion: "2.0", TimeoutInMillis: 200}
  Root: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: GET /, Target: !Sub "integrations/${Integration}"}}
  Assets: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: "GET /assets/{proxy+}", AuthorizationType: NONE, Target: !Sub "integrations/${Integration}"}}
  Slack: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: POST /slack/interactions, AuthorizationType: NONE, Target: !Sub "integrations/${Integration}"}}
  Grant: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: "GET /grants/{id}", AuthorizationType: JWT, Target: !Sub "integrations/${Integration}"}}
  Mine: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: GET /grants/mine, AuthorizationType: NONE, Target: !Sub "integrations/${Integration}"}}
  Any: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: "ANY /grants/{id}", AuthorizationType: NONE, Target: !Sub "integrations/${Integration}"}}
  Scoped: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: GET /admin, AuthorizationType: JWT, AuthorizationScopes: [jit/admin], Target: !Sub "integrations/${Integration}"}}
  Iam: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: GET /iam, AuthorizationType: AWS_IAM, Target: !Sub "integrations/${Integration}"}}
  SlowRoute: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: GET /slow, Target: !Sub "integrations/${SlowIntegration}"}}
  Fallback: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: $default, Target: !Sub "integrations/${Integration}"}}
"#;

fn portal_routes() -> RouteTable {
    RouteTable::from_template(PORTAL_TEMPLATE, &BTreeMap::new()).unwrap()
}

#[test]
fn routes_match_as_api_gateway_prioritizes_them() {
    let routes = portal_routes();
    let key = |method: &str, path: &str| {
        let m = routes.find(&method.parse().unwrap(), path).map(|m| (m.route.key.clone(), m.path_parameters));
        m.map(|(k, p)| (k, p.into_iter().collect::<Vec<_>>()))
    };
    let p = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    assert_eq!(key("GET", "/"), Some(("GET /".into(), vec![])));
    assert_eq!(key("GET", "/grants/mine"), Some(("GET /grants/mine".into(), vec![])), "a literal before a variable");
    assert_eq!(
        key("GET", "/grants/g%201"),
        Some(("GET /grants/{id}".into(), p(&[("id", "g 1")]))),
        "a method before ANY"
    );
    assert_eq!(key("DELETE", "/grants/g1"), Some(("ANY /grants/{id}".into(), p(&[("id", "g1")]))));
    assert_eq!(
        key("GET", "/assets/css/site.css"),
        Some(("GET /assets/{proxy+}".into(), p(&[("proxy", "css/site.css")])))
    );
    assert_eq!(key("POST", "/assets/x"), Some(("$default".into(), vec![])), "no route for the method: $default");
    assert_eq!(key("GET", "/grants/a/b"), Some(("$default".into(), vec![])));

    let without_default =
        RouteTable::from_template(&PORTAL_TEMPLATE.replace("RouteKey: $default", "RouteKey: GET /x"), &BTreeMap::new());
    assert!(without_default.unwrap().find(&"GET".parse().unwrap(), "/nowhere").is_none());
}

#[tokio::test]
async fn a_signed_in_users_request_reaches_the_function_with_the_claims_as_strings() {
    let w = world().await;
    let token = w.token("alice@example.com").await;
    let response = w.get("/grants?status=active&status=pending&user=alice%40example.com", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("apigw-requestid"));
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"function": "grant"}));

    let events = w.recorder.events();
    let [(function, event)] = events.as_slice() else { panic!("one invocation: {events:?}") };
    assert_eq!(function, "grant");
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "GET /grants");
    assert_eq!(event["rawPath"], "/grants");
    assert_eq!(event["rawQueryString"], "status=active&status=pending&user=alice%40example.com");
    assert_eq!(event["queryStringParameters"], json!({"status": "active,pending", "user": "alice@example.com"}));
    assert_eq!(event["requestContext"]["routeKey"], "GET /grants");
    assert_eq!(event["requestContext"]["apiId"], "local");
    assert_eq!(event["requestContext"]["stage"], "$default");
    assert_eq!(event["requestContext"]["http"]["method"], "GET");
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert!(event["headers"]["authorization"].as_str().unwrap().starts_with("Bearer "));
    let claims = &event["requestContext"]["authorizer"]["jwt"]["claims"];
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["sub"], "u-alice");
    assert_eq!(claims["iss"], w.issuer.url().as_str());
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["email_verified"], "true", "API Gateway passes every claim as a string");
    assert!(claims["exp"].as_str().unwrap().parse::<i64>().is_ok(), "{claims}");
    assert_eq!(claims["preferred_username"], "alice");

    // The event is one lambda_http reads as an API Gateway 2.0 request.
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(event.clone()).unwrap();
    assert!(matches!(request, lambda_http::request::LambdaRequest::ApiGatewayV2(_)));
}

#[tokio::test]
async fn requests_without_a_good_token_get_401_and_reach_no_function() {
    let w = world().await;
    let good = w.token("alice@example.com").await;

    assert!(refused(w.get("/grants", None).await).await.contains("no token"));
    assert!(refused(w.get("/grants", Some("not-a-jwt")).await).await.contains("malformed"));

    // Signed in at the same issuer, for another client.
    let issuer_url = w.issuer.url();
    let other = jit_oidc_issuer::sign_in(&issuer_url, "other-app", "http://127.0.0.1:19090/", "alice@example.com");
    assert!(refused(w.get("/grants", Some(&other.await.unwrap().id_token)).await).await.contains("audience"));

    // This issuer's key, another issuer's name.
    let mut foreign = w.claims();
    foreign["iss"] = "https://sso.example.com".into();
    assert!(refused(w.get("/grants", Some(&w.issuer.sign(&foreign).unwrap())).await)
        .await
        .contains("not the configured one"));

    // A changed payload: the signature fails.
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["email"] = "bob@example.com".into();
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    assert!(refused(w.get("/grants", Some(&tampered)).await).await.contains("signature"));

    // Another issuer's token: its key is not among this issuer's.
    let stranger = issuer().await;
    let token = jit_oidc_issuer::sign_in(&stranger.url(), CLIENT, REDIRECT, "alice@example.com").await.unwrap();
    assert!(refused(w.get("/grants", Some(&token.id_token)).await).await.contains("none of the issuer's keys"));

    // No exp; not valid before a time to come; an unsigned token.
    let mut endless = w.claims();
    endless.as_object_mut().unwrap().remove("exp");
    assert!(refused(w.get("/grants", Some(&w.issuer.sign(&endless).unwrap())).await).await.contains("no exp"));
    let mut early = w.claims();
    early["nbf"] = (chrono::Utc::now().timestamp() + 600).into();
    assert!(refused(w.get("/grants", Some(&w.issuer.sign(&early).unwrap())).await).await.contains("not valid yet"));
    let unsigned = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), parts[1]);
    assert!(refused(w.get("/grants", Some(&unsigned)).await).await.contains("malformed"));

    assert!(w.recorder.events().is_empty(), "no function ran: {:?}", w.recorder.events());
    assert_eq!(w.get("/grants", Some(&good)).await.status(), StatusCode::OK, "the good token still works");
}

#[tokio::test]
async fn a_token_expires_by_the_gateways_clock() {
    let w = world().await;
    let token = w.token("alice@example.com").await;
    let exp: i64 = {
        let parts: Vec<&str> = token.split('.').collect();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["exp"].as_i64().unwrap()
    };
    let leeway = jit_local_api::authorizer::LEEWAY_SECS;
    let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap();
    w.clock.set(at(exp + leeway - 1));
    assert_eq!(w.get("/grants", Some(&token)).await.status(), StatusCode::OK, "within the leeway");
    w.clock.set(at(exp + leeway));
    assert!(refused(w.get("/grants", Some(&token)).await).await.contains("expired"));
    assert_eq!(w.recorder.events().len(), 1);
}

#[tokio::test]
async fn unauthenticated_routes_get_no_claims_and_form_bodies_arrive_base64() {
    let w = world_with(portal_routes()).await;
    let form = "payload=%7B%22type%22%3A%22block_actions%22%7D";
    let response = reqwest::Client::new()
        .post(format!("{}/slack/interactions", w.api.url()))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, "a=1; b=2")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = w.recorder.events();
    let event = &events[0].1;
    assert_eq!(event["routeKey"], "POST /slack/interactions");
    assert!(event["requestContext"].get("authorizer").is_none());
    assert_eq!(event["isBase64Encoded"], true);
    use base64::engine::general_purpose::STANDARD;
    assert_eq!(STANDARD.decode(event["body"].as_str().unwrap()).unwrap(), form.as_bytes());
    assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
    assert!(event["headers"].get("cookie").is_none());

    let json_body = reqwest::Client::new().post(format!("{}/slack/interactions", w.api.url())).json(&json!({"a": 1}));
    json_body.send().await.unwrap();
    let events = w.recorder.events();
    assert_eq!(
        (events[1].1["body"].as_str(), events[1].1["isBase64Encoded"].as_bool()),
        (Some(r#"{"a":1}"#), Some(false))
    );

    let asset = w.get("/assets/app.js", None).await;
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(w.recorder.events()[2].1["pathParameters"], json!({"proxy": "app.js"}));
}

#[tokio::test]
async fn api_gateways_own_answers() {
    let w = world_with(portal_routes()).await;
    let token = w.token("alice@example.com").await;

    let iam = w.get("/iam", None).await;
    assert_eq!(iam.status(), StatusCode::FORBIDDEN);
    assert!(refused(w.get("/admin", Some(&token)).await).await.contains("scope"));
    let mut scoped = w.claims();
    scoped["scope"] = "openid jit/admin".into();
    assert_eq!(w.get("/admin", Some(&w.issuer.sign(&scoped).unwrap())).await.status(), StatusCode::OK);

    w.recorder.set(Behaviour::Fail);
    let failed = w.get("/", None).await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.json::<Value>().await.unwrap(), json!({"message": "Internal Server Error"}));

    w.recorder.set(Behaviour::Answer(json!({"statusCode": "not a number"})));
    assert_eq!(w.get("/", None).await.status(), StatusCode::INTERNAL_SERVER_ERROR);

    w.recorder.set(Behaviour::Answer(json!({
        "statusCode": 302, "headers": {"location": "/next"}, "cookies": ["s=1; HttpOnly"], "body": ""
    })));
    let redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let moved = redirect.get(format!("{}/", w.api.url())).send().await.unwrap();
    assert_eq!(moved.status(), StatusCode::FOUND);
    assert_eq!(
        (moved.headers()[header::LOCATION].to_str().unwrap(), moved.headers()[header::SET_COOKIE].to_str().unwrap()),
        ("/next", "s=1; HttpOnly")
    );

    // The integration's timeout (200 ms in this template): 503, as API Gateway answers.
    w.recorder.set(Behaviour::Hang);
    let slow = w.get("/slow", None).await;
    assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(slow.json::<Value>().await.unwrap(), json!({"message": "Service Unavailable"}));
    assert_eq!(w.recorder.events().last().unwrap().0, "slow");
}

#[tokio::test]
async fn an_unknown_route_is_404_and_reaches_no_function() {
    let w = world().await;
    let token = w.token("alice@example.com").await;
    let response = w.get("/nowhere", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"message": "Not Found"}));
    // A known path, a method no route has.
    let put = reqwest::Client::new().put(format!("{}/grants", w.api.url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::NOT_FOUND);
    assert!(w.recorder.events().is_empty());
}
