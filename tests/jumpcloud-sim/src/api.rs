//! The JumpCloud API operations (`/api/...`, `/api/v2/...` and Directory Insights'
//! `/insights/directory/v1/events`).
//!
//! Every operation starts with [`begin`]: count and log the request, wait while requests are held,
//! add latency, serve an injected fault if one is due, then authenticate. Only then is the request itself looked at.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::events::{Actor, EventQuery};
use crate::faults::FaultKind;
use crate::model::{Group, User};
use crate::query::{fields_param, Dialect, GroupField, ListQuery, Page, UserField};
use crate::server::Shared;
use crate::stats::{Endpoint, InFlight};
use crate::store::OrgStore;

type AppState = State<Arc<Shared>>;
type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

const X_TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");
const X_RESULT_COUNT: HeaderName = HeaderName::from_static("x-result-count");
const X_LIMIT: HeaderName = HeaderName::from_static("x-limit");
const X_SORT: HeaderName = HeaderName::from_static("x-sort");
const X_SEARCH_AFTER: HeaderName = HeaderName::from_static("x-search_after");

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/systemusers", get(list_users))
        .route("/api/systemusers/{id}", get(get_user))
        .route("/api/v2/usergroups", get(list_groups))
        .route("/api/v2/usergroups/{id}", get(get_group))
        .route("/api/v2/usergroups/{id}/members", get(list_members).post(manage_members))
        .route("/api/v2/users/{id}/memberof", get(member_of))
        .route("/insights/directory/v1/events", post(list_events))
}

pub(crate) async fn no_route() -> ApiError {
    ApiError::not_found("no such route in the simulator")
}

pub(crate) async fn no_method() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// An authenticated request: its organization, and the in-flight mark to hold until answered.
struct Begun {
    org: Arc<OrgStore>,
    _in_flight: InFlight,
}

async fn begin(shared: &Shared, endpoint: Endpoint, headers: &HeaderMap) -> Result<Begun, ApiError> {
    let in_flight = shared.stats.begin(endpoint);
    if !shared.released().await {
        return Err(shutting_down());
    }
    let (latency, fault) = shared.faults.next();
    if !latency.is_zero() && !shared.pause(latency).await {
        return Err(shutting_down());
    }
    if let Some(kind) = fault {
        shared.stats.record_fault(endpoint);
        tracing::debug!(endpoint = endpoint.key(), ?kind, "injecting a fault");
        return Err(fault_answer(shared, kind).await);
    }
    let org = authenticate(shared, headers)?;
    Ok(Begun { org, _in_flight: in_flight })
}

fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the simulator is shutting down")
}

async fn fault_answer(shared: &Shared, kind: FaultKind) -> ApiError {
    match kind {
        FaultKind::TooManyRequests { retry_after_secs } => {
            ApiError { retry_after_secs, ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests") }
        }
        FaultKind::ServerError(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            ApiError::new(status, "injected server error")
        }
        FaultKind::Hang(duration) => {
            if !shared.pause(duration).await {
                return shutting_down();
            }
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "injected hang")
        }
    }
}

/// `x-api-key` picks the organizations; `x-org-id` (when sent and not empty) picks one of them.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Arc<OrgStore>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let key = header("x-api-key").ok_or_else(ApiError::unauthorized)?;
    let mut opened = shared.orgs.iter().filter(|o| o.api_key == key).peekable();
    if opened.peek().is_none() {
        return Err(ApiError::unauthorized());
    }
    match header("x-org-id") {
        Some(org_id) => {
            opened.find(|o| o.org_id.as_deref() == Some(org_id)).cloned().ok_or_else(ApiError::unauthorized)
        }
        None => {
            let first = opened.next().cloned();
            match (first, opened.next()) {
                (Some(org), None) => Ok(org),
                _ => Err(ApiError::bad_request("x-org-id required: this API key opens several organizations")),
            }
        }
    }
}

fn params(query: Params) -> Result<Vec<(String, String)>, ApiError> {
    query.map(|Query(p)| p).map_err(|e| ApiError::bad_request(format!("query string: {e}")))
}

/// Keeps only the fields asked for, plus the ids JumpCloud always returns.
fn project(mut object: Map<String, Value>, fields: Option<&[String]>) -> Value {
    if let Some(fields) = fields {
        object.retain(|k, _| k == "_id" || k == "id" || fields.iter().any(|f| f == k));
    }
    Value::Object(object)
}

/// A user as the API returns it: the fields asked for, and `id` beside `_id`. Written straight into
/// the response: building a `serde_json::Value` of every user first cost more CPU than the rest of
/// serving a page (a million-user sync reads 10,000 pages). The names are `User`'s serialized
/// names; a test holds the two equal.
struct UserJson<'a> {
    user: &'a User,
    fields: Option<&'a [String]>,
}

impl Serialize for UserJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let u = self.user;
        let wanted = |name: &str| self.fields.is_none_or(|f| f.iter().any(|x| x == name));
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("_id", &u.id)?;
        map.serialize_entry("id", &u.id)?;
        macro_rules! fields {
            ($($name:literal => $value:expr),* $(,)?) => {
                $(if wanted($name) { map.serialize_entry($name, $value)?; })*
            };
        }
        fields! {
            "username" => &u.username, "email" => &u.email, "firstname" => &u.firstname,
            "lastname" => &u.lastname, "displayname" => &u.displayname, "jobTitle" => &u.job_title,
            "department" => &u.department, "location" => &u.location, "employeeType" => &u.employee_type,
            "state" => &u.state, "suspended" => &u.suspended, "activated" => &u.activated,
            "attributes" => &u.attributes, "created" => &u.created,
        }
        // JumpCloud omits `manager` when there is none, as `User` does.
        if let Some(manager) = u.manager.as_ref().filter(|_| wanted("manager")) {
            map.serialize_entry("manager", manager)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserPage<'a> {
    total_count: usize,
    results: Vec<UserJson<'a>>,
}

pub(crate) fn group_json(group: &Group, fields: Option<&[String]>) -> Value {
    let Ok(Value::Object(mut object)) = serde_json::to_value(group) else {
        unreachable!("a Group serializes to an object")
    };
    object.insert("type".into(), "user_group".into());
    object.insert("attributes".into(), json!({}));
    object.insert("membershipAutomated".into(), group.membership_method.is_dynamic().into());
    project(object, fields)
}

fn with_total(total: usize, body: impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(X_TOTAL_COUNT, HeaderValue::from(total));
    response
}

async fn list_users(State(shared): AppState, headers: HeaderMap, query: Params) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::ListUsers, &headers).await?;
    let query = ListQuery::<UserField>::parse(&params(query)?, Dialect::V1)?;
    let data = begun.org.read();
    let (total, users) = data.list_users(&query);
    let results = users.into_iter().map(|user| UserJson { user, fields: query.fields.as_deref() }).collect();
    Ok(Json(UserPage { total_count: total, results }).into_response())
}

async fn get_user(
    State(shared): AppState,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::GetUser, &headers).await?;
    let fields = fields_param(&params(query)?);
    let data = begun.org.read();
    let user = data.user(&id).ok_or_else(|| ApiError::not_found(format!("user {id} not found")))?;
    Ok(Json(UserJson { user, fields: fields.as_deref() }).into_response())
}

async fn list_groups(State(shared): AppState, headers: HeaderMap, query: Params) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::ListGroups, &headers).await?;
    let query = ListQuery::<GroupField>::parse(&params(query)?, Dialect::V2)?;
    let data = begun.org.read();
    let (total, groups) = data.list_groups(&query);
    let body: Vec<Value> = groups.into_iter().map(|g| group_json(g, query.fields.as_deref())).collect();
    Ok(with_total(total, Value::Array(body)))
}

async fn get_group(State(shared): AppState, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::GetGroup, &headers).await?;
    let data = begun.org.read();
    let group = data.group(&id).ok_or_else(|| ApiError::not_found(format!("group {id} not found")))?;
    Ok(Json(group_json(group, None)).into_response())
}

async fn list_members(
    State(shared): AppState,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::ListMembers, &headers).await?;
    let page = Page::parse(&params(query)?)?;
    let data = begun.org.read();
    let (total, ids) =
        data.member_page(&group_id, page).ok_or_else(|| ApiError::not_found(format!("group {group_id} not found")))?;
    let body: Vec<MemberJson> =
        ids.into_iter().map(|id| MemberJson { attributes: Empty {}, to: UserRef::of(id) }).collect();
    Ok(with_total(total, body))
}

/// One `GraphConnection` of a member listing: written straight from the member's id, no
/// `Value` built (the million-user benchmark serves 4,000,000 of them).
#[derive(Serialize)]
struct MemberJson<'a> {
    attributes: Empty,
    to: UserRef<'a>,
}

#[derive(Serialize)]
struct UserRef<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: Empty,
}

impl<'a> UserRef<'a> {
    fn of(id: &'a str) -> Self {
        Self { id, kind: "user", attributes: Empty {} }
    }
}

/// `{}`.
#[derive(Serialize)]
struct Empty {}

/// The groups a user is a direct member of (`graph_userMemberOf`, `[GraphObjectWithPaths]`): the
/// simulator has no nested groups, so each path is the one direct edge.
async fn member_of(
    State(shared): AppState,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::MemberOf, &headers).await?;
    let page = Page::parse(&params(query)?)?;
    let data = begun.org.read();
    let (total, ids) =
        data.member_of_page(&user_id, page).ok_or_else(|| ApiError::not_found(format!("user {user_id} not found")))?;
    let body: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            json!({
                "id": id,
                "type": "user_group",
                "compiledAttributes": {},
                "paths": [[{ "attributes": {}, "from": { "id": user_id, "type": "user", "attributes": {} }, "to": { "id": id, "type": "user_group", "attributes": {} } }]],
            })
        })
        .collect();
    Ok(with_total(total, Value::Array(body)))
}

/// `GraphOperation-UserGroup-Member`.
#[derive(Debug, Deserialize)]
pub(crate) struct MemberOperation {
    pub op: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: String,
    #[serde(default)]
    pub attributes: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberOp {
    Add,
    Remove,
}

impl MemberOperation {
    /// Parses and checks a request body; the error is a 400.
    pub fn parse(body: &[u8]) -> Result<(MemberOp, String), ApiError> {
        let operation: MemberOperation =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))?;
        let op = match operation.op.as_str() {
            "add" => MemberOp::Add,
            "remove" => MemberOp::Remove,
            other => {
                return Err(ApiError::bad_request(format!("op: {other:?} is not supported for members (add, remove)")))
            }
        };
        match operation.kind.as_deref() {
            Some("user") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!("type: a user group's members are users, not {other:?}")))
            }
            None => return Err(ApiError::bad_request("type: required")),
        }
        if operation.id.trim().is_empty() {
            return Err(ApiError::bad_request("id: required"));
        }
        if !matches!(operation.attributes, None | Some(Value::Null | Value::Object(_))) {
            return Err(ApiError::bad_request("attributes: must be an object"));
        }
        Ok((op, operation.id))
    }
}

async fn manage_members(
    State(shared): AppState,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::ManageMembers, &headers).await?;
    let (op, user_id) = MemberOperation::parse(&body)?;
    // One write lock for the check and the change, so concurrent adds see one 204 and 409s.
    let mut data = begun.org.write();
    // Unknown group or user: 404.
    let changed =
        data.change_member(Actor::ApiKey, op, &group_id, &user_id).map_err(|e| ApiError::not_found(e.to_string()))?;
    match (op, changed) {
        (_, true) => Ok(StatusCode::NO_CONTENT.into_response()),
        (MemberOp::Add, false) => {
            Err(ApiError::new(StatusCode::CONFLICT, format!("user {user_id} is already a member of group {group_id}")))
        }
        (MemberOp::Remove, false) => {
            Err(ApiError::not_found(format!("user {user_id} is not a member of group {group_id}")))
        }
    }
}

/// Directory Insights' `Event_Get`: a page of the organization's events, with the paging headers.
async fn list_events(State(shared): AppState, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let begun = begin(&shared, Endpoint::Events, &headers).await?;
    let now_ms = shared.clock.now_ms();
    let query = EventQuery::parse(&body, now_ms)?;
    let page = begun.org.read().events().query(&query, now_ms);
    let count = page.events.len();
    let mut response = Json(Value::Array(page.events)).into_response();
    let answer = response.headers_mut();
    answer.insert(X_RESULT_COUNT, HeaderValue::from(count));
    answer.insert(X_LIMIT, HeaderValue::from(query.limit));
    answer.insert(X_SORT, HeaderValue::from_static(if query.descending { "DESC" } else { "ASC" }));
    if let Some(cursor) = page.search_after {
        answer.insert(X_SEARCH_AFTER, HeaderValue::try_from(cursor).expect("digits, hex and punctuation"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GenerateSpec, Org};

    #[test]
    fn a_user_is_served_as_it_serializes_with_id_beside_it() {
        let org = Org::generate(&GenerateSpec { users: 300, groups: 0, ..GenerateSpec::default() });
        assert!(org.users.iter().any(|u| u.manager.is_none()) && org.users.iter().any(|u| u.manager.is_some()));
        let asked = ["email".to_owned(), "manager".to_owned()];
        for user in &org.users {
            let mut expected = serde_json::to_value(user).unwrap();
            expected["id"] = user.id.as_str().into();
            assert_eq!(serde_json::to_value(UserJson { user, fields: None }).unwrap(), expected);

            let projected = serde_json::to_value(UserJson { user, fields: Some(&asked) }).unwrap();
            let mut keys: Vec<&str> = projected.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            let want: &[&str] =
                if user.manager.is_some() { &["_id", "email", "id", "manager"] } else { &["_id", "email", "id"] };
            assert_eq!(keys, want);
            assert_eq!(projected["email"], expected["email"]);
        }
    }
}
