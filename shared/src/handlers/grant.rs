//! The `grant` function: `POST /grants`, `GET /grants`, `GET /grants/{id}`, `GET /groups`.

use super::{access, failure, routing};
use crate::wiring::Lifecycle;
use crate::{
    domain::identity::{Principal, PrincipalUser},
    domain::model::GrantDuration,
    domain::model::{GrantStatus, IdempotencyKey, Name},
    domain::{
        grant::{request_grant, GrantRequest},
        query::{resolve_filter, GrantQuery},
    },
    http::{handle_invocation, json, parse_body, problem, Problem},
};
use lambda_http::{
    http::{Method, StatusCode},
    lambda_runtime::Diagnostic,
    Body, LambdaEvent, Request, RequestExt, Response,
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

/// An optional name from the query string.
fn name_param(request: &Request, name: &'static str) -> Result<Option<Name>, Problem> {
    let params = request.query_string_parameters();
    params.first(name).map(|v| Name::parse(name, v)).transpose().map_err(Problem::from)
}

impl GrantHandler {
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        handle_invocation(
            event,
            |request| self.http(request),
            |_| async { Err(failure::non_retryable("the grant function only answers HTTP requests")) },
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
            self.groups(&request).await
        } else if routing::matches(&request, &Method::GET, &["policy"]) {
            super::policy::get(&self.lifecycle, &request).await
        } else if routing::path_known(&request, &["grants"])
            || routing::path_known(&request, &["policy"])
            || routing::path_known(&request, &["grants", "*"])
            || routing::path_known(&request, &["groups"])
        {
            problem(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed here", request.method()))
        } else {
            problem(StatusCode::NOT_FOUND, format!("no route {} {}", request.method(), request.uri().path()))
        };
        if response.status().is_server_error() {
            tracing::error!(status = response.status().as_u16(), path = request.uri().path(), "request failed");
        }
        response
    }

    async fn principal(&self, request: &Request) -> Result<Principal, Problem> {
        let l = &self.lifecycle;
        access::principal(request, &l.identity, l.catalog.as_ref(), l.directory_store.as_ref()).await
    }

    async fn create(&self, request: &Request) -> Response<Body> {
        let principal = match self.principal(request).await {
            Ok(p) => p,
            Err(p) => return p.into_response(),
        };
        // Until an access policy is applied, granting is for admins only (SPEC: without any
        // policy, only admins can grant).
        if let Err(p) = access::admins_only(&principal, "grant access while no access policy is applied") {
            return p.into_response();
        }
        match self.parse_create(request, principal) {
            Ok(grant_request) => match request_grant(&self.lifecycle.ctx(), grant_request).await {
                Ok(outcome) => {
                    let status = if outcome.replayed { StatusCode::OK } else { StatusCode::CREATED };
                    let mut response = json(status, &outcome.grant);
                    if let Ok(location) = format!("/grants/{}", outcome.grant.id).parse() {
                        response.headers_mut().insert("location", location);
                    }
                    response
                }
                Err(e) => Problem::from(&e).into_response(),
            },
            Err(p) => p.into_response(),
        }
    }

    /// `POST /grants`: each field parsed once, into its type.
    fn parse_create(&self, request: &Request, principal: Principal) -> Result<GrantRequest, Problem> {
        let idempotency_key = match request.headers().get("idempotency-key") {
            None => None,
            Some(value) => Some(IdempotencyKey::parse(value.to_str().unwrap_or_default())?),
        };
        let body: CreateGrant = parse_body(request, None)?;
        Ok(GrantRequest {
            user: Name::parse("user", &body.user)?,
            group: Name::parse("group", &body.group)?,
            duration: body.duration.parse::<GrantDuration>()?,
            reason: body.reason,
            integration: body.integration.as_deref().map(|i| Name::parse("integration", i)).transpose()?,
            requested_by: principal.id,
            caller_users: principal.users,
            idempotency_key,
        })
    }

    async fn get(&self, request: &Request) -> Response<Body> {
        let principal = match self.principal(request).await {
            Ok(p) => p,
            Err(p) => return p.into_response(),
        };
        let id = routing::segments(request).pop().unwrap_or_default();
        if uuid::Uuid::parse_str(&id).is_err() {
            return problem(StatusCode::NOT_FOUND, format!("no grant {id:?}"));
        }
        match self.lifecycle.store.get(&id).await {
            Ok(Some(grant)) if access::can_see(&principal, &grant) => json(StatusCode::OK, &grant),
            Ok(_) => problem(StatusCode::NOT_FOUND, format!("no grant {id:?}")),
            Err(e) => Problem::from(&e).into_response(),
        }
    }

    async fn list(&self, request: &Request) -> Response<Body> {
        let principal = match self.principal(request).await {
            Ok(p) => p,
            Err(p) => return p.into_response(),
        };
        let (mut query, limit, next) = match parse_list(request) {
            Ok(parsed) => parsed,
            Err(p) => return p.into_response(),
        };
        let own = match own_grants_only(&principal, &mut query) {
            Ok(own) => own,
            Err(p) => return p.into_response(),
        };
        let lifecycle = &self.lifecycle;
        let mut filter = match resolve_filter(lifecycle.catalog.as_ref(), lifecycle.directories.as_ref(), &query).await
        {
            Ok(filter) => filter,
            Err(e) => return Problem::from(&e).into_response(),
        };
        if let Some(me) = own {
            filter.user_id = Some(me.id);
            filter.integration = Some(me.integration);
        }
        match lifecycle.store.list(&filter, limit, next.as_deref()).await {
            Ok(page) => json(StatusCode::OK, &json_value!({ "grants": page.grants, "next": page.next })),
            Err(e) => Problem::from(&e).into_response(),
        }
    }

    async fn groups(&self, request: &Request) -> Response<Body> {
        let principal = match self.principal(request).await {
            Ok(p) => p,
            Err(p) => return p.into_response(),
        };
        if !principal.admin {
            // What a person may request comes from the access policy; without one, nothing.
            return json(StatusCode::OK, &json_value!({ "groups": [] }));
        }
        let discovered = match self.lifecycle.catalog.list().await {
            Ok(d) => d,
            Err(e) => return Problem::from(&e).into_response(),
        };
        let mut groups = Vec::new();
        for integration in &discovered.integrations {
            match self.lifecycle.directory_store.list_groups(&integration.name).await {
                Ok(found) => groups.extend(found.into_iter().filter(|g| g.requestable).map(|g| {
                    json_value!({ "integration": integration.name, "id": g.id, "name": g.name, "description": g.description })
                })),
                Err(e) => return Problem::from(&e).into_response(),
            }
        }
        json(StatusCode::OK, &json_value!({ "groups": groups }))
    }
}

/// `GET /grants`: the filters, the page size and the page token.
fn parse_list(request: &Request) -> Result<(GrantQuery, usize, Option<String>), Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let params = request.query_string_parameters();
    let status = params
        .first("status")
        .map(str::parse::<GrantStatus>)
        .transpose()
        .map_err(|_| bad("`status` must be one of pending, active, expired, revoked, failed".into()))?;
    let limit = match params.first("limit").map(str::parse::<usize>) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return Err(bad(format!("`limit` must be a whole number from 1 to {MAX_PAGE}"))),
    };
    let next = params.first("next").map(str::to_owned);
    if next.as_ref().is_some_and(|n| n.is_empty() || n.len() > 2048) {
        return Err(bad("`next` is not a page token from this API".into()));
    }
    let query = GrantQuery {
        status,
        user: name_param(request, "user")?,
        group: name_param(request, "group")?,
        integration: name_param(request, "integration")?,
    };
    Ok((query, limit, next))
}

/// A listing by someone who is no admin covers their own grants (as grantee) only: their user, to
/// filter on after the query is resolved. A `user` filter naming someone else is refused; with
/// users in several integrations, `integration` picks one.
fn own_grants_only(principal: &Principal, query: &mut GrantQuery) -> Result<Option<PrincipalUser>, Problem> {
    if principal.admin {
        return Ok(None);
    }
    let me = match &query.integration {
        Some(integration) => principal.user_in(integration.as_str()),
        None if principal.users.len() == 1 => principal.users.first(),
        None => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "`integration` is required: you are a user of several integrations",
            ))
        }
    };
    let Some(me) = me else {
        return Err(Problem::new(StatusCode::FORBIDDEN, "you are not a user of this integration"));
    };
    if let Some(user) = query.user.take() {
        let named = user.as_str();
        if named != me.id && !named.eq_ignore_ascii_case(&me.email) {
            return Err(Problem::new(StatusCode::FORBIDDEN, "you may list only your own grants"));
        }
    }
    Ok(Some(me.clone()))
}
