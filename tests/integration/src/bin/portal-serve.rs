//! `portal-serve [--port N]`: the `grant` function's handler behind a local HTTP server, to look
//! at the portal in a browser and for its browser smoke test (`tests/browser/smoke.mjs`).
//!
//! Each request becomes an API Gateway HTTP API (payload 2.0) event, handed to
//! `GrantHandler::handle`, and its answer goes back as is. No token is verified here, so no event
//! carries an authorizer context: the portal's page, files and configuration load (they need none)
//! and every API route answers 401, as API Gateway's authorizer would without a valid token. (A
//! local gateway that verifies tokens as the JWT authorizer does is issue 11's point 2.)
//!
//! Configuration as the function's (`Config::from_env`: `OIDC_ISSUER`, `OIDC_CLIENT_ID`, ...);
//! with `REVOKE_FUNCTION_ARN` and `SCHEDULER_ROLE_ARN` unset the handler is built without a
//! scheduler, which the portal's routes never use. Prints `portal: http://127.0.0.1:PORT/` once
//! it listens.

use axum::{body::Bytes, extract::Request, response::Response, Router};
use jit_shared::{
    adapters::aws,
    config::Config,
    handlers::grant::GrantHandler,
    wiring::{Function, Lifecycle},
};
use lambda_http::{Context, LambdaEvent};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The `grant` function's handler behind a local HTTP server (the portal, no token verified).
#[derive(clap::Parser)]
struct Args {
    /// The port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { port } = <Args as clap::Parser>::parse();
    let config = Config::from_env()?;
    let function = if config.revoke_function_arn.is_some() { Function::Grant } else { Function::Revoke };
    let lifecycle = Lifecycle::from_config(&aws::sdk_config().await, &config, function)?;
    let handler = Arc::new(GrantHandler { lifecycle: Arc::new(lifecycle) });
    let app = Router::new().fallback(move |request: Request| {
        let handler = handler.clone();
        async move { serve(&handler, request).await }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("portal: http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve(handler: &GrantHandler, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or_default().to_owned();
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().unwrap_or_default();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => *joined = format!("{joined},{value}"),
            _ => {
                headers.insert(name.as_str().to_owned(), value.into());
            }
        }
    }
    let mut params = Map::new();
    if !raw_query.is_empty() {
        let url = reqwest::Url::parse(&format!("http://local/?{raw_query}")).expect("a query string");
        for (k, v) in url.query_pairs() {
            match params.get_mut(k.as_ref()) {
                Some(Value::String(joined)) => *joined = format!("{joined},{v}"),
                _ => {
                    params.insert(k.into_owned(), v.into_owned().into());
                }
            }
        }
    }
    // The API and the portal speak text (JSON, HTML, CSS, JS, SVG).
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return Response::builder().status(400).body("binary bodies are not served here".into()).expect("a response");
    };
    let now = chrono::Utc::now();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(), "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(), "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !params.is_empty() {
        event["queryStringParameters"] = params.into();
    }
    if !text.is_empty() {
        event["body"] = text.into();
    }
    let answer = match handler.handle(LambdaEvent::new(event, Context::default())).await {
        Ok(answer) => answer,
        Err(diagnostic) => {
            return Response::builder()
                .status(500)
                .body(format!("{}: {}", diagnostic.error_type, diagnostic.error_message).into())
                .expect("a response")
        }
    };
    let mut response = Response::builder().status(answer["statusCode"].as_u64().unwrap_or(500) as u16);
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        response = response.header(name, value.as_str().unwrap_or_default());
    }
    for (name, values) in answer["multiValueHeaders"].as_object().into_iter().flatten() {
        for value in values.as_array().into_iter().flatten() {
            response = response.header(name, value.as_str().unwrap_or_default());
        }
    }
    if answer["isBase64Encoded"] == true {
        return Response::builder().status(502).body("a binary answer: not served here".into()).expect("a response");
    }
    response.body(answer["body"].as_str().unwrap_or_default().to_owned().into()).expect("a response")
}
