//! The `grant` function: `POST /grants`, `GET /grants`, `GET /grants/{id}`, `GET /groups`, and
//! the decisions on requests: `POST /grants/{id}/approve`, `POST /grants/{id}/deny`, and
//! `POST /grants/{id}/extend`; Slack's clicks on them, `POST /slack/interactions` (`slack.rs`);
//! `GET /policy` (`policy.rs`); the portal's pages and its routes `GET /me`, `GET /integrations`,
//! `GET /audit` (`portal.rs`, `admin.rs`).

use super::{access, admin, failure, portal, routing};
use crate::wiring::Lifecycle;
use crate::{
    domain::identity::{Principal, PrincipalUser},
    domain::model::GrantDuration,
    domain::model::{GrantFilter, GrantStatus, IdempotencyKey, Name},
    domain::policy::{GroupRef, Requester},
    domain::{
        extension::{extend, ExtendRequest},
        grant::{request_grant, GrantRequest},
        query::{resolve_filter, GrantQuery},
        request,
    },
    http::{handle_invocation, json, parse_body, problem, Problem},
    ports::{AppliedPolicy, StoreError},
};
use lambda_http::{
    http::{Method, StatusCode},
    lambda_runtime::Diagnostic,
    Body, LambdaEvent, Request, RequestExt, Response,
};
use serde::Deserialize;
use serde_json::{json as json_value, Value};
use std::{collections::HashSet, sync::Arc};

pub struct GrantHandler {
    pub lifecycle: Arc<Lifecycle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGrant {
    user: Option<String>,
    group: String,
    duration: String,
    reason: String,
    integration: Option<String>,
    #[serde(default)]
    break_glass: bool,
}

/// `POST /grants/{id}/extend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    duration: String,
    reason: String,
}

/// `POST /grants/{id}/approve` and `/deny`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    comment: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    Approve,
    Deny,
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
        // The portal's page and files need no caller: it must load before anyone signs in.
        let l = &self.lifecycle;
        if let Some(page) = portal::respond(&request, l.identity.oidc.as_ref(), &l.policy) {
            return page;
        }
        if let Some(document) = super::openapi::respond(&request) {
            return document;
        }
        if let Some(response) = admin::respond(l, &request).await {
            return log_failure(&request, response);
        }
        let response = if routing::matches(&request, &Method::POST, &["grants"]) {
            self.create(&request).await
        } else if routing::matches(&request, &Method::GET, &["grants"]) {
            self.list(&request).await
        } else if routing::matches(&request, &Method::GET, &["grants", "*"]) {
            self.get(&request).await
        } else if routing::matches(&request, &Method::GET, &["groups"]) {
            self.groups(&request).await
        } else if routing::matches(&request, &Method::POST, &["grants", "*", "approve"]) {
            self.decide(&request, Verdict::Approve).await
        } else if routing::matches(&request, &Method::POST, &["grants", "*", "deny"]) {
            self.decide(&request, Verdict::Deny).await
        } else if routing::matches(&request, &Method::POST, &["grants", "*", "extend"]) {
            self.extend(&request).await
        } else if routing::matches(&request, &Method::GET, &["policy"]) {
            super::policy::get(&self.lifecycle, &request).await
        } else if routing::matches(&request, &Method::POST, &["slack", "interactions"]) {
            super::slack::interactions(&self.lifecycle, &request).await
        } else if routing::path_known(&request, &["grants"])
            || routing::path_known(&request, &["policy"])
            || routing::path_known(&request, &["grants", "*"])
            || routing::path_known(&request, &["grants", "*", "approve"])
            || routing::path_known(&request, &["grants", "*", "deny"])
            || routing::path_known(&request, &["grants", "*", "extend"])
            || routing::path_known(&request, &["groups"])
            || routing::path_known(&request, &["slack", "interactions"])
            || [admin::ME, admin::INTEGRATIONS, admin::AUDIT].iter().any(|r| routing::path_known(&request, r))
            || portal::path_known(&request)
            || routing::path_known(&request, super::openapi::ROUTE)
        {
            problem(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed here", request.method()))
        } else {
            problem(StatusCode::NOT_FOUND, format!("no route {} {}", request.method(), request.uri().path()))
        };
        log_failure(&request, response)
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
        match self.parse_create(request, principal) {
            Ok(grant_request) => match request_grant(&self.lifecycle.ctx(), grant_request).await {
                Ok(outcome) => {
                    let status = match (outcome.replayed, outcome.grant.status) {
                        (true, _) => StatusCode::OK,
                        (false, GrantStatus::PendingApproval) => StatusCode::ACCEPTED,
                        (false, _) => StatusCode::CREATED,
                    };
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
            user: body.user.as_deref().map(|u| Name::parse("user", u)).transpose()?,
            group: Name::parse("group", &body.group)?,
            duration: body.duration.parse::<GrantDuration>()?,
            reason: body.reason,
            integration: body.integration.as_deref().map(|i| Name::parse("integration", i)).transpose()?,
            requested_by: principal.id,
            caller_users: principal.users,
            caller_admin: principal.admin,
            break_glass: body.break_glass,
            idempotency_key,
        })
    }

    /// `POST /grants/{id}/approve` and `/deny`. A request the caller may not see answers 404.
    async fn decide(&self, request: &Request, verdict: Verdict) -> Response<Body> {
        let principal = match self.principal(request).await {
            Ok(p) => p,
            Err(p) => return p.into_response(),
        };
        let mut segments = routing::segments(request);
        segments.pop();
        let id = segments.pop().unwrap_or_default();
        if uuid::Uuid::parse_str(&id).is_err() {
            return problem(StatusCode::NOT_FOUND, format!("no grant {id:?}"));
        }
        let body: DecisionBody = if request.body().is_empty() {
            DecisionBody::default()
        } else {
            match parse_body(request, None) {
                Ok(body) => body,
                Err(p) => return p.into_response(),
            }
        };
        match self.lifecycle.store.get(&id).await {
            Ok(Some(grant)) if access::can_see(&principal, &grant) => {}
            Ok(_) => return problem(StatusCode::NOT_FOUND, format!("no grant {id:?}")),
            Err(e) => return Problem::from(&e).into_response(),
        }
        let ctx = self.lifecycle.ctx();
        let comment = body.comment.as_deref();
        let decided = match verdict {
            Verdict::Approve => request::approve(&ctx, &id, &principal, comment).await,
            Verdict::Deny => request::deny(&ctx, &id, &principal, comment).await,
        };
        match decided {
            Ok(grant) => json(StatusCode::OK, &grant),
            Err(e) => Problem::from(&e).into_response(),
        }
    }

    /// `POST /grants/{id}/extend`: 200 with the new expiry, or 202 with a `pending_extension`.
    async fn extend(&self, request: &Request) -> Response<Body> {
        let principal = match self.principal(request).await {
            Ok(p) => p,
            Err(p) => return p.into_response(),
        };
        let mut segments = routing::segments(request);
        segments.pop();
        let id = segments.pop().unwrap_or_default();
        if uuid::Uuid::parse_str(&id).is_err() {
            return problem(StatusCode::NOT_FOUND, format!("no grant {id:?}"));
        }
        let parsed = parse_body::<ExtendBody>(request, None).and_then(|body| {
            Ok(ExtendRequest { duration: body.duration.parse::<GrantDuration>()?, reason: body.reason })
        });
        let extension = match parsed {
            Ok(extension) => extension,
            Err(p) => return p.into_response(),
        };
        match self.lifecycle.store.get(&id).await {
            Ok(Some(grant)) if access::can_see(&principal, &grant) => {}
            Ok(_) => return problem(StatusCode::NOT_FOUND, format!("no grant {id:?}")),
            Err(e) => return Problem::from(&e).into_response(),
        }
        match extend(&self.lifecycle.ctx(), &id, &principal, &extension).await {
            Ok(grant) if grant.pending_extension.is_some() => json(StatusCode::ACCEPTED, &grant),
            Ok(grant) => json(StatusCode::OK, &grant),
            Err(e) => Problem::from(&e).into_response(),
        }
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
        match request.query_string_parameters().first("awaiting") {
            None => {}
            Some("me") => return self.awaiting(&principal, limit, next.as_deref()).await,
            Some(_) => return problem(StatusCode::BAD_REQUEST, "`awaiting` takes only the value `me`"),
        }
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

    /// `GET /grants?awaiting=me`: requests awaiting approval that the caller may approve, newest
    /// first. A page holds the caller's among `limit` requests; `next` continues.
    async fn awaiting(&self, principal: &Principal, limit: usize, next: Option<&str>) -> Response<Body> {
        let filter = GrantFilter { status: Some(GrantStatus::PendingApproval), ..GrantFilter::default() };
        let now = self.lifecycle.clock.now();
        match self.lifecycle.store.list(&filter, limit, next).await {
            Ok(page) => {
                let mine: Vec<_> = page
                    .grants
                    .into_iter()
                    .filter(|g| {
                        request::approver_of(g, principal).is_ok() && g.request_expires_at.is_none_or(|t| now < t)
                    })
                    .collect();
                json(StatusCode::OK, &json_value!({ "grants": mine, "next": page.next }))
            }
            Err(e) => Problem::from(&e).into_response(),
        }
    }

    /// `GET /groups`: what the caller may request. Admins: every requestable group; anyone else:
    /// those the applied policy makes them eligible for, each with its rule's terms.
    async fn groups(&self, request: &Request) -> Response<Body> {
        let principal = match self.principal(request).await {
            Ok(p) => p,
            Err(p) => return p.into_response(),
        };
        let l = &self.lifecycle;
        let applied = match l.policies.current().await {
            Ok(applied) => applied,
            Err(e) => {
                return problem(StatusCode::SERVICE_UNAVAILABLE, format!("the access policy could not be read: {e}"))
            }
        };
        if !principal.admin && applied.is_none() {
            // Without a policy, only admins grant: nothing to request.
            return json(StatusCode::OK, &json_value!({ "groups": [] }));
        }
        let discovered = match l.catalog.list().await {
            Ok(d) => d,
            Err(e) => return Problem::from(&e).into_response(),
        };
        let mut groups = Vec::new();
        for integration in &discovered.integrations {
            let me = principal.user_in(&integration.name);
            if !principal.admin && me.is_none() {
                continue;
            }
            match requestable_groups(l, &integration.name, me, principal.admin, applied.as_deref()).await {
                Ok(found) => groups.extend(found),
                Err(e) => return Problem::from(&e).into_response(),
            }
        }
        json(StatusCode::OK, &json_value!({ "groups": groups }))
    }
}

fn log_failure(request: &Request, response: Response<Body>) -> Response<Body> {
    if response.status().is_server_error() {
        tracing::error!(status = response.status().as_u16(), path = request.uri().path(), "request failed");
    }
    response
}

/// The requestable groups of one integration that the caller may request, with their rule's terms.
async fn requestable_groups(
    l: &Lifecycle,
    integration: &str,
    me: Option<&PrincipalUser>,
    admin: bool,
    applied: Option<&AppliedPolicy>,
) -> Result<Vec<Value>, StoreError> {
    let store = l.directory_store.as_ref();
    let found = store.list_groups(integration).await?;
    // Who the caller is in the synced directory, and their groups (names and ids).
    let (user, member_of) = match me {
        Some(me) => {
            let user = store.user_by_id(integration, &me.id).await?;
            let ids: HashSet<String> = store.groups_of(integration, &me.id).await?.into_iter().collect();
            let names: HashSet<String> = found.iter().filter(|g| ids.contains(&g.id)).map(|g| g.name.clone()).collect();
            (user, ids.into_iter().chain(names).collect::<HashSet<String>>())
        }
        None => (None, HashSet::new()),
    };
    let is_member = |g: &str| member_of.contains(g);
    let mut out = Vec::new();
    for group in found.into_iter().filter(|g| g.requestable) {
        let rule = applied.and_then(|a| a.policy.rule_for(&GroupRef { id: &group.id, name: &group.name }));
        let eligible = match (rule, &user) {
            (Some(rule), Some(user)) => rule.allows(&Requester {
                id: &user.id,
                email: &user.email,
                username: &user.username,
                member_of: &is_member,
            }),
            _ => false,
        };
        if !admin && !eligible {
            continue;
        }
        let mut entry = json_value!({
            "integration": integration, "id": group.id, "name": group.name, "description": group.description,
        });
        if let Some(rule) = rule.filter(|_| eligible) {
            let approval = &rule.approval;
            entry["max_duration"] = rule.max_duration.to_string().into();
            entry["approval_required"] = (approval.required > 0).into();
            entry["auto_approve_up_to"] = approval.auto_approve_up_to.map(|d| d.to_string()).into();
            entry["break_glass"] = rule.break_glass.into();
            // The reason must name a ticket matching it (the portal shows it as the reason's hint).
            entry["ticket"] = rule.ticket.as_ref().map(|t| t.as_str()).into();
            entry["extend_max_total"] = rule.extend_max_total.to_string().into();
        }
        out.push(entry);
    }
    Ok(out)
}

/// `GET /grants`: the filters, the page size and the page token.
fn parse_list(request: &Request) -> Result<(GrantQuery, usize, Option<String>), Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let params = request.query_string_parameters();
    let status =
        params.first("status").map(str::parse::<GrantStatus>).transpose().map_err(|e| bad(format!("`status`: {e}")))?;
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
