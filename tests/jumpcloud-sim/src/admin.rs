//! `/_sim/...`: steering and inspection over HTTP for scripts and the local walk-through.
//! No authentication, no faults, not counted.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{group_json, MemberOp, MemberOperation};
use crate::error::ApiError;
use crate::faults::{FaultKind, Faults};
use crate::server::Shared;
use crate::store::OrgStore;

type AppState = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/health", get(health))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset-stats", post(reset_stats))
        .route("/_sim/faults", get(get_faults).put(put_faults).delete(clear_faults))
        .route("/_sim/fail-next", post(fail_next))
        .route("/_sim/orgs", get(orgs))
        .route("/_sim/orgs/{index}/seed", get(seed))
        .route("/_sim/orgs/{index}/users", get(users))
        .route("/_sim/orgs/{index}/groups", get(groups))
        .route("/_sim/orgs/{index}/groups/{group_id}/members", get(members).post(change_member))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn stats(State(shared): AppState) -> Response {
    Json(shared.stats.snapshot()).into_response()
}

async fn reset_stats(State(shared): AppState) -> StatusCode {
    shared.stats.reset();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(shared): AppState) -> Json<Faults> {
    Json(shared.faults.get())
}

async fn put_faults(State(shared): AppState, body: Bytes) -> Result<StatusCode, ApiError> {
    let faults: Faults =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed faults: {e}")))?;
    faults.validate().map_err(ApiError::bad_request)?;
    shared.faults.set(faults);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(shared): AppState) -> StatusCode {
    shared.faults.clear();
    StatusCode::NO_CONTENT
}

/// `{"count": 3, "kind": "429" | "5xx" | "hang", "retry_after_secs"?, "status"?, "hang_ms"?}`.
#[derive(Deserialize)]
struct FailNext {
    count: usize,
    kind: String,
    retry_after_secs: Option<u64>,
    status: Option<u16>,
    hang_ms: Option<u64>,
}

async fn fail_next(State(shared): AppState, body: Bytes) -> Result<StatusCode, ApiError> {
    let request: FailNext =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))?;
    let kind = match request.kind.as_str() {
        "429" => FaultKind::TooManyRequests { retry_after_secs: request.retry_after_secs },
        "5xx" => FaultKind::ServerError(request.status.unwrap_or(503)),
        "hang" => FaultKind::Hang(Duration::from_millis(request.hang_ms.unwrap_or(30_000))),
        other => return Err(ApiError::bad_request(format!("kind: {other:?} is not one of 429, 5xx, hang"))),
    };
    shared.faults.push(request.count, kind);
    Ok(StatusCode::NO_CONTENT)
}

fn org(shared: &Shared, index: usize) -> Result<&Arc<OrgStore>, ApiError> {
    shared.orgs.get(index).ok_or_else(|| ApiError::not_found(format!("no organization {index}")))
}

async fn orgs(State(shared): AppState) -> Json<Value> {
    let list: Vec<Value> = shared
        .orgs
        .iter()
        .enumerate()
        .map(|(index, o)| {
            let data = o.read();
            json!({
                "index": index,
                "org_id": o.org_id,
                "users": data.users().len(),
                "groups": data.groups().len(),
            })
        })
        .collect();
    Json(Value::Array(list))
}

async fn seed(State(shared): AppState, Path(index): Path<usize>) -> Result<Response, ApiError> {
    Ok(Json(org(&shared, index)?.snapshot()).into_response())
}

#[derive(Deserialize)]
struct UserLookup {
    email: Option<String>,
    username: Option<String>,
}

/// Users matching `email` (any case) and/or `username`; every user when neither is given.
async fn users(
    State(shared): AppState,
    Path(index): Path<usize>,
    Query(lookup): Query<UserLookup>,
) -> Result<Json<Value>, ApiError> {
    let data = org(&shared, index)?.read();
    let found: Vec<Value> = data
        .users()
        .iter()
        .filter(|u| {
            lookup.email.as_ref().is_none_or(|e| u.email.eq_ignore_ascii_case(e))
                && lookup.username.as_ref().is_none_or(|n| &u.username == n)
        })
        .map(|u| serde_json::to_value(u).unwrap_or(Value::Null))
        .collect();
    Ok(Json(Value::Array(found)))
}

#[derive(Deserialize)]
struct GroupLookup {
    name: Option<String>,
}

/// Groups named `name`; every group when it is not given.
async fn groups(
    State(shared): AppState,
    Path(index): Path<usize>,
    Query(lookup): Query<GroupLookup>,
) -> Result<Json<Value>, ApiError> {
    let data = org(&shared, index)?.read();
    let found: Vec<Value> = data
        .groups()
        .iter()
        .filter(|g| lookup.name.as_ref().is_none_or(|n| &g.name == n))
        .map(|g| group_json(g, None))
        .collect();
    Ok(Json(Value::Array(found)))
}

async fn members(
    State(shared): AppState,
    Path((index, group_id)): Path<(usize, String)>,
) -> Result<Json<Value>, ApiError> {
    let data = org(&shared, index)?.read();
    let members = data.members(&group_id).ok_or_else(|| ApiError::not_found(format!("group {group_id} not found")))?;
    Ok(Json(json!(members)))
}

/// A change made outside the product: `{"op": "add"|"remove", "type": "user", "id"}`.
/// Answers `{"changed": bool}` rather than 409/404, since the caller wants a state, not a test.
async fn change_member(
    State(shared): AppState,
    Path((index, group_id)): Path<(usize, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (op, user_id) = MemberOperation::parse(&body)?;
    let mut data = org(&shared, index)?.write();
    let changed = match op {
        MemberOp::Add => data.add_member(&group_id, &user_id),
        MemberOp::Remove => data.remove_member(&group_id, &user_id),
    }
    .map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(Json(json!({ "changed": changed })))
}
