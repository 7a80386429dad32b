//! The `grant` function: `POST /grants`, `GET /grants`, `GET /grants/{id}`, `GET /groups`.

use super::routing;
use crate::wiring::Lifecycle;
use crate::{
    domain::model::GrantStatus,
    domain::{
        grant::{request_grant, GrantError, GrantRequest},
        query::{resolve_filter, GrantQuery},
    },
    duration::GrantDuration,
    http::{caller, handle_invocation, json, parse_body, Problem},
    ports::GrantStoreError,
};
use lambda_http::{
    http::{Method, StatusCode},
    Body, Error, LambdaEvent, Request, RequestExt, Response,
};
use serde::Deserialize;
use serde_json::{json as json_value, Value};
use std::sync::Arc;

pub struct GrantHandler {
    pub lifecycle: Arc<Lifecycle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGrant {
    user: String,
    group: String,
    duration: String,
    reason: String,
    integration: Option<String>,
}

const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: usize = 100;

fn problem(status: u16, detail: impl Into<String>) -> Response<Body> {
    fail(status, detail).into_response()
}

fn fail(status: u16, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), detail)
}

/// A name or id from a request: trimmed, 1 to 256 characters, no control characters.
fn field(name: &str, value: &str) -> Result<String, Problem> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 256 || value.chars().any(char::is_control) {
        return Err(fail(400, format!("`{name}` must be 1 to 256 printable characters")));
    }
    Ok(value.to_owned())
}

impl GrantHandler {
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Error> {
        handle_invocation(
            event,
            |request| self.http(request),
            |_| async { Err("the grant function only answers HTTP requests".into()) },
        )
        .await
    }

    async fn http(&self, request: Request) -> Response<Body> {
        let response = if routing::matches(&request, &Method::POST, &["grants"]) {
            self.create(&request).await
        } else if routing::matches(&request, &Method::GET, &["grants"]) {
            self.list(&request).await
        } else if routing::matches(&request, &Method::GET, &["grants", "*"]) {
            self.get(&request).await
        } else if routing::matches(&request, &Method::GET, &["groups"]) {
            self.groups().await
        } else if routing::path_known(&request, &["grants"])
            || routing::path_known(&request, &["grants", "*"])
            || routing::path_known(&request, &["groups"])
        {
            problem(405, format!("{} is not allowed here", request.method()))
        } else {
            problem(404, format!("no route {} {}", request.method(), request.uri().path()))
        };
        if response.status().is_server_error() {
            tracing::error!(status = response.status().as_u16(), path = request.uri().path(), "request failed");
        }
        response
    }

    async fn create(&self, request: &Request) -> Response<Body> {
        let Some(requested_by) = caller(request) else {
            return problem(401, "no caller identity in the request context (IAM or JWT authorization is required)");
        };
        let idempotency_key = match request.headers().get("idempotency-key").map(|v| v.to_str()) {
            None => None,
            Some(Ok(key)) if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(key.to_owned())
            }
            Some(_) => return problem(400, "`Idempotency-Key` must be 1 to 255 visible ASCII characters"),
        };
        let body: CreateGrant = match parse_body(request, None) {
            Ok(body) => body,
            Err(p) => return p.into_response(),
        };
        let parsed = (|| {
            Ok::<_, Problem>(GrantRequest {
                user: field("user", &body.user)?,
                group: field("group", &body.group)?,
                duration: body.duration.parse::<GrantDuration>().map_err(|e| fail(400, e.to_string()))?,
                reason: body.reason.clone(),
                integration: body.integration.as_deref().map(|i| field("integration", i)).transpose()?,
                requested_by,
                idempotency_key,
            })
        })();
        let grant_request = match parsed {
            Ok(r) => r,
            Err(p) => return p.into_response(),
        };
        match request_grant(&self.lifecycle.ctx(), grant_request).await {
            Ok(outcome) => {
                let status = if outcome.replayed { StatusCode::OK } else { StatusCode::CREATED };
                let mut response = json(status, &outcome.grant);
                if let Ok(location) = format!("/grants/{}", outcome.grant.id).parse() {
                    response.headers_mut().insert("location", location);
                }
                response
            }
            Err(e) => problem(e.http_status(), e.to_string()),
        }
    }

    async fn get(&self, request: &Request) -> Response<Body> {
        let id = routing::segments(request).pop().unwrap_or_default();
        if uuid::Uuid::parse_str(&id).is_err() {
            return problem(404, format!("no grant {id:?}"));
        }
        match self.lifecycle.store.get(&id).await {
            Ok(Some(grant)) => json(StatusCode::OK, &grant),
            Ok(None) => problem(404, format!("no grant {id:?}")),
            Err(e) => problem(500, e.to_string()),
        }
    }

    async fn list(&self, request: &Request) -> Response<Body> {
        let params = request.query_string_parameters();
        let status = match params.first("status").map(str::parse::<GrantStatus>) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(_)) => return problem(400, "`status` must be one of pending, active, expired, revoked, failed"),
        };
        let limit = match params.first("limit").map(str::parse::<usize>) {
            None => DEFAULT_PAGE,
            Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => return problem(400, format!("`limit` must be a whole number from 1 to {MAX_PAGE}")),
        };
        let next = params.first("next").map(str::to_owned);
        if next.as_ref().is_some_and(|n| n.is_empty() || n.len() > 2048) {
            return problem(400, "`next` is not a page token from this API");
        }
        let integration = match params.first("integration").map(|i| field("integration", i)).transpose() {
            Ok(i) => i,
            Err(p) => return p.into_response(),
        };
        let mut query = GrantQuery { status, user: None, group: None, integration };
        for (name, slot) in [("user", &mut query.user), ("group", &mut query.group)] {
            match params.first(name).map(|v| field(name, v)).transpose() {
                Ok(v) => *slot = v,
                Err(p) => return p.into_response(),
            }
        }
        let lifecycle = &self.lifecycle;
        let filter = match resolve_filter(lifecycle.catalog.as_ref(), lifecycle.directories.as_ref(), &query).await {
            Ok(filter) => filter,
            // A missing query parameter (which integration) is a bad request, not a semantic error.
            Err(e @ GrantError::InvalidRequest(_)) => return problem(400, e.to_string()),
            Err(e) => return problem(e.http_status(), e.to_string()),
        };
        match lifecycle.store.list(&filter, limit, next.as_deref()).await {
            Ok(page) => json(StatusCode::OK, &json_value!({ "grants": page.grants, "next": page.next })),
            Err(GrantStoreError::InvalidToken(_)) => problem(400, "`next` is not a page token from this API"),
            Err(e) => problem(500, e.to_string()),
        }
    }

    async fn groups(&self) -> Response<Body> {
        let discovered = match self.lifecycle.catalog.list().await {
            Ok(d) => d,
            Err(e) => return problem(503, e.to_string()),
        };
        let mut groups = Vec::new();
        for integration in &discovered.integrations {
            match self.lifecycle.directory_store.list_groups(&integration.name).await {
                Ok(found) => groups.extend(found.into_iter().filter(|g| g.requestable).map(|g| {
                    json_value!({ "integration": integration.name, "id": g.id, "name": g.name, "description": g.description })
                })),
                Err(e) => return problem(500, e.to_string()),
            }
        }
        json(StatusCode::OK, &json_value!({ "groups": groups }))
    }
}
