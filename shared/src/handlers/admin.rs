//! Routes of the `grant` function for the portal's pages (SPEC "People's interfaces"):
//! - `GET /me`: who the caller is to the product (any caller);
//! - `GET /integrations`: every integration with its last sync, and the tagged secrets that could
//!   not be used (admins only);
//! - `GET /audit`: the audit trail, one grant's or a time window's, optionally of one user, group
//!   or integration (admins only).

use super::{access, routing};
use crate::{
    domain::{
        identity::Principal,
        model::{AuditRecord, Name, DRIFT_AUDIT_ID, POLICY_AUDIT_ID},
        query::{resolve_filter, GrantQuery},
    },
    http::{json, Problem},
    wiring::Lifecycle,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use lambda_http::{
    http::{Method, StatusCode},
    Body, Request, RequestExt, Response,
};
use serde_json::json as json_value;

/// The routes of this module, for the grant handler's dispatch and its 405 check.
pub const ME: &[&str] = &["me"];
pub const INTEGRATIONS: &[&str] = &["integrations"];
pub const AUDIT: &[&str] = &["audit"];

const DEFAULT_AUDIT_PAGE: usize = 50;
const MAX_AUDIT_PAGE: usize = 100;

/// Answers this module's routes; `None` for any other request.
pub async fn respond(l: &Lifecycle, request: &Request) -> Option<Response<Body>> {
    let route = [ME, INTEGRATIONS, AUDIT].into_iter().find(|r| routing::matches(request, &Method::GET, r))?;
    let principal = match access::principal(request, &l.identity, l.catalog.as_ref(), l.directory_store.as_ref()).await
    {
        Ok(p) => p,
        Err(p) => return Some(p.into_response()),
    };
    let answer = if route == ME {
        Ok(me(&principal))
    } else if route == INTEGRATIONS {
        match access::admins_only(&principal, "read the sync status") {
            Ok(()) => integrations(l).await,
            Err(p) => Err(p),
        }
    } else {
        match access::admins_only(&principal, "search the audit trail") {
            Ok(()) => audit(l, request).await,
            Err(p) => Err(p),
        }
    };
    Some(answer.unwrap_or_else(Problem::into_response))
}

/// `{id, admin, users: [{integration, id, email}]}`: what the portal shows and asks for.
fn me(principal: &Principal) -> Response<Body> {
    let users: Vec<_> = principal
        .users
        .iter()
        .map(|u| json_value!({ "integration": u.integration, "id": u.id, "email": u.email }))
        .collect();
    json(StatusCode::OK, &json_value!({ "id": principal.id, "admin": principal.admin, "users": users }))
}

/// `{integrations: [{name, sync: {state, started_at, finished_at, users, groups, memberships,
/// written, deleted, error} | null}], invalid: [{secret, reason}]}`.
async fn integrations(l: &Lifecycle) -> Result<Response<Body>, Problem> {
    let discovered = l.catalog.list().await.map_err(|e| Problem::from(&e))?;
    let mut integrations = Vec::new();
    for integration in &discovered.integrations {
        let sync = l.directory_store.sync_status(&integration.name).await.map_err(|e| Problem::from(&e))?;
        integrations.push(json_value!({ "name": integration.name, "sync": sync }));
    }
    let invalid: Vec<_> =
        discovered.invalid.iter().map(|i| json_value!({ "secret": i.secret, "reason": i.reason })).collect();
    Ok(json(StatusCode::OK, &json_value!({ "integrations": integrations, "invalid": invalid })))
}

/// `GET /audit?grant=ID` (that grant's records, oldest first), or
/// `GET /audit?from=&to=&user=&group=&integration=&limit=&next=` (records of the window, oldest
/// first; `from` and `to` are RFC 3339 times or dates, a date meaning its whole day in UTC; by
/// default the last 24 hours). `{records: [...], next: token | null}`: a page holds the matching
/// records among `limit` read, and `next` continues.
async fn audit(l: &Lifecycle, request: &Request) -> Result<Response<Body>, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let params = request.query_string_parameters();
    if let Some(grant) = params.first("grant") {
        if let Some(other) =
            ["from", "to", "user", "group", "integration", "next"].iter().find(|p| params.first(p).is_some())
        {
            return Err(bad(format!("`grant` lists one grant's whole trail: `{other}` does not go with it")));
        }
        if grant != POLICY_AUDIT_ID && grant != DRIFT_AUDIT_ID && uuid::Uuid::parse_str(grant).is_err() {
            return Err(bad(format!("`grant`: {grant:?} is not a grant id")));
        }
        let records = l.store.audit_for(grant).await.map_err(|e| Problem::from(&e))?;
        return Ok(json(StatusCode::OK, &json_value!({ "records": records, "next": null })));
    }
    let now = l.clock.now();
    let to = match params.first("to") {
        None => now,
        Some(v) => {
            instant(v, true).ok_or_else(|| bad(format!("`to`: {v:?} is neither an RFC 3339 time nor a date")))?
        }
    };
    let from = match params.first("from") {
        None => to - Duration::hours(24),
        Some(v) => {
            instant(v, false).ok_or_else(|| bad(format!("`from`: {v:?} is neither an RFC 3339 time nor a date")))?
        }
    };
    if from >= to {
        return Err(bad("`from` must be before `to`".into()));
    }
    let limit = match params.first("limit").map(str::parse::<usize>) {
        None => DEFAULT_AUDIT_PAGE,
        Some(Ok(n)) if (1..=MAX_AUDIT_PAGE).contains(&n) => n,
        Some(_) => return Err(bad(format!("`limit` must be a whole number from 1 to {MAX_AUDIT_PAGE}"))),
    };
    let next = params.first("next");
    if next.is_some_and(|n| n.is_empty() || n.len() > 2048) {
        return Err(bad("`next` is not a page token from this API".into()));
    }
    let name = |key: &'static str| params.first(key).map(|v| Name::parse(key, v)).transpose();
    let query =
        GrantQuery { status: None, user: name("user")?, group: name("group")?, integration: name("integration")? };
    let filter = if query.user.is_some() || query.group.is_some() || query.integration.is_some() {
        Some(resolve_filter(l.catalog.as_ref(), l.directories.as_ref(), &query).await.map_err(|e| Problem::from(&e))?)
    } else {
        None
    };
    let page = l.store.audit_between(from, to, limit, next).await.map_err(|e| Problem::from(&e))?;
    let matches = |r: &AuditRecord| {
        filter.as_ref().is_none_or(|f| {
            f.integration.as_ref().is_none_or(|i| *i == r.integration)
                && f.user_id.as_ref().is_none_or(|u| *u == r.user_id)
                && f.group_id.as_ref().is_none_or(|g| *g == r.group_id)
        })
    };
    let records: Vec<&AuditRecord> = page.records.iter().filter(|r| matches(r)).collect();
    Ok(json(StatusCode::OK, &json_value!({ "records": records, "next": page.next })))
}

/// An RFC 3339 time, or a date: its start (`from`), or the start of the next day (`to`, so that a
/// date includes its whole day).
fn instant(value: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(at.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    let day = if end { day.succ_opt()? } else { day };
    Some(day.and_hms_opt(0, 0, 0)?.and_utc())
}
