//! The HTTP server: route, authorize, build the event, invoke, answer.

use crate::{
    authorizer::{JwtAuthorizer, JwtConfiguration},
    event::{gateway_error, http_response, request_event, Context},
    invoke::{Handlers, InvokeError, Invoker},
    routes::{Auth, RouteTable},
};
use anyhow::Context as _;
use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    http::{header, HeaderValue, Request, Response, StatusCode},
    Router,
};
use jit_shared::clock::{Clock, SystemClock};
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Instant,
};
use tokio::{sync::watch, task::JoinHandle};

/// API Gateway's payload limit for HTTP APIs.
const MAX_BODY: usize = 10 * 1024 * 1024;

pub struct LocalApiConfig {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    pub routes: RouteTable,
    /// The JWT authorizer's issuer and audiences (required when a route uses it).
    pub jwt: Option<JwtConfiguration>,
    /// `requestContext.apiId` (the functions check it against `API_ID` when that is set).
    pub api_id: String,
    pub account_id: String,
    /// The authorizer's clock (token expiry).
    pub clock: Arc<dyn Clock>,
}

impl LocalApiConfig {
    /// 127.0.0.1 on a free port, API id `local`, the wall clock.
    pub fn new(routes: RouteTable, jwt: Option<JwtConfiguration>) -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            routes,
            jwt,
            api_id: "local".into(),
            account_id: "123456789012".into(),
            clock: Arc::new(SystemClock),
        }
    }
}

struct Gateway {
    routes: RouteTable,
    authorizer: Option<JwtAuthorizer>,
    invoker: Arc<dyn Invoker>,
    api_id: String,
    account_id: String,
    clock: Arc<dyn Clock>,
}

/// Entry points with the deployed template's routes.
pub struct LocalApi;

impl LocalApi {
    /// The deployed routes over these handlers, tokens checked against `issuer` for `audience`.
    pub async fn start(handlers: Handlers, issuer: &str, audience: &str) -> anyhow::Result<RunningLocalApi> {
        let jwt = JwtConfiguration { issuer: issuer.to_owned(), audience: vec![audience.to_owned()] };
        start(LocalApiConfig::new(RouteTable::deployed()?, Some(jwt)), Arc::new(handlers)).await
    }
}

/// Serves `config.routes`, invoking functions through `invoker`, until shutdown or drop.
pub async fn start(config: LocalApiConfig, invoker: Arc<dyn Invoker>) -> anyhow::Result<RunningLocalApi> {
    let needs_jwt = config.routes.routes().iter().any(|r| matches!(r.auth, Auth::Jwt { .. }));
    if needs_jwt && config.jwt.is_none() {
        anyhow::bail!("routes use the JWT authorizer: give its issuer and audience");
    }
    let authorizer = config.jwt.map(|jwt| JwtAuthorizer::new(jwt, config.clock.clone()));
    let gateway = Arc::new(Gateway {
        routes: config.routes,
        authorizer,
        invoker,
        api_id: config.api_id,
        account_id: config.account_id,
        clock: config.clock,
    });
    let listener =
        tokio::net::TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(handle).with_state(gateway);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(RunningLocalApi { addr, stop, task: Some(task) })
}

pub struct RunningLocalApi {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningLocalApi {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            task.await.context("local API task")??;
        }
        Ok(())
    }
}

impl Drop for RunningLocalApi {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let (response, route) = gateway.answer(parts, body, source, &request_id).await;
    tracing::info!(
        %method,
        path,
        route = route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        millis = started.elapsed().as_millis() as u64,
        request_id,
        "request"
    );
    response
}

impl Gateway {
    async fn answer(
        &self,
        parts: axum::http::request::Parts,
        body: Body,
        source: SocketAddr,
        request_id: &str,
    ) -> (Response<Body>, Option<String>) {
        let error = |status, message: &str| gateway_error(status, message, request_id);
        let Some(matched) = self.routes.find(&parts.method, parts.uri.path()) else {
            return (error(StatusCode::NOT_FOUND, "Not Found"), None);
        };
        let route = matched.route;
        let key = Some(route.key.clone());
        let claims = match &route.auth {
            Auth::None => None,
            Auth::Iam => {
                tracing::warn!(route = route.key, "AWS_IAM routes are not emulated locally (no SigV4 check)");
                return (error(StatusCode::FORBIDDEN, "Forbidden"), key);
            }
            Auth::Jwt { scopes } => {
                let Some(authorizer) = &self.authorizer else {
                    return (error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"), key);
                };
                let header = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
                match authorizer.authorize(header, scopes).await {
                    Ok(claims) => Some(claims),
                    Err(denied) => {
                        tracing::info!(route = route.key, reason = %denied, "JWT authorizer refused the request");
                        let mut response = error(StatusCode::UNAUTHORIZED, "Unauthorized");
                        let challenge = format!(
                            "Bearer error=\"invalid_token\", error_description=\"{}\"",
                            denied.to_string().replace('"', "'")
                        );
                        if let Ok(value) = HeaderValue::from_str(&challenge) {
                            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                        }
                        return (response, key);
                    }
                }
            }
        };
        let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
            return (error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"), key);
        };
        let ctx = Context {
            api_id: &self.api_id,
            account_id: &self.account_id,
            request_id,
            source,
            now: self.clock.now(),
            claims: claims.as_ref(),
        };
        let query = parts.uri.query().unwrap_or_default();
        let event = request_event(&ctx, &matched, &parts.method, parts.uri.path(), query, &parts.headers, &body);
        let invoked = tokio::time::timeout(route.timeout, self.invoker.invoke(&route.function, event)).await;
        let response = match invoked {
            Err(_) => {
                tracing::warn!(route = route.key, function = route.function, "the integration timed out");
                error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
            Ok(Err(e @ (InvokeError::Failed { .. } | InvokeError::UnknownFunction(_)))) => {
                tracing::error!(route = route.key, error = %e, "the function failed");
                error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            Ok(Ok(answer)) => http_response(&answer, request_id).unwrap_or_else(|| {
                tracing::error!(route = route.key, %answer, "the function's answer is not a valid response");
                error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }),
        };
        (response, key)
    }
}
