//! `/_sim/...`: steering and inspection over HTTP for scripts and the local walk-through.
//! No authentication, no faults, not counted.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{group_json, MemberOperation};
use crate::edit;
use crate::error::{ApiError, SimError};
use crate::events::Actor;
use crate::faults::{FaultKind, Faults};
use crate::ids::{parse_rfc3339, rfc3339_millis, to_millis};
use crate::model::{Group, User};
use crate::server::Shared;
use crate::store::{OrgData, OrgStore};

type AppState = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/health", get(health))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset-stats", post(reset_stats))
        .route("/_sim/faults", get(get_faults).put(put_faults).delete(clear_faults))
        .route("/_sim/fail-next", post(fail_next))
        .route("/_sim/clock", get(get_clock).put(pin_clock).delete(unpin_clock))
        .route("/_sim/clock/advance", post(advance_clock))
        .route("/_sim/orgs", get(orgs))
        .route("/_sim/orgs/{index}/seed", get(seed))
        .route("/_sim/orgs/{index}/users", get(users).post(create_user))
        .route("/_sim/orgs/{index}/users/{user_id}", patch(update_user).delete(delete_user))
        .route("/_sim/orgs/{index}/groups", get(groups).post(create_group))
        .route("/_sim/orgs/{index}/groups/{group_id}", patch(update_group).delete(delete_group))
        .route("/_sim/orgs/{index}/groups/{group_id}/members", get(members).post(change_member))
        .route("/_sim/orgs/{index}/events", get(events))
        .route("/_sim/orgs/{index}/events/expire", post(expire_events))
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
                "events": data.events().len(),
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
                && lookup.username.as_ref().is_none_or(|n| u.username == n)
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
        .filter(|g| lookup.name.as_ref().is_none_or(|n| g.name == n))
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
    let changed =
        data.change_member(Actor::Console, op, &group_id, &user_id).map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(Json(json!({ "changed": changed })))
}

/// Unknown objects are 404, taken names and ids 409.
fn refused(error: SimError) -> ApiError {
    match error {
        SimError::UnknownUser(_) | SimError::UnknownGroup(_) => ApiError::not_found(error.to_string()),
        SimError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
    }
}

fn user_json(user: &User) -> Json<Value> {
    Json(serde_json::to_value(user).unwrap_or(Value::Null))
}

/// A manager must be a user of the organization, as in a seed file.
fn check_manager(data: &OrgData, user: &User) -> Result<(), ApiError> {
    match &user.manager {
        Some(m) if data.user(m).is_none() => Err(ApiError::bad_request(format!("manager: unknown user {m}"))),
        _ => Ok(()),
    }
}

/// A user created outside the product (`user_create`): the body as in a seed file, `_id`
/// optional. 201 with the user; 409 when its id, username or email is taken.
async fn create_user(
    State(shared): AppState,
    Path(index): Path<usize>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user = edit::new_user(edit::object(&body)?, rfc3339_millis(shared.clock.now_ms()))?;
    let mut data = org(&shared, index)?.write();
    check_manager(&data, &user)?;
    data.add_user(Actor::Console, user.clone()).map_err(refused)?;
    Ok((StatusCode::CREATED, user_json(&user)))
}

/// A merge patch of a user (`user_update` with the changed fields, no event if none changed), e.g.
/// `{"state": "SUSPENDED"}`, `{"email": ...}`, `{"manager": null}`, `{"attributes": [...]}`.
async fn update_user(
    State(shared): AppState,
    Path((index, user_id)): Path<(usize, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch = edit::object(&body)?;
    let mut data = org(&shared, index)?.write();
    let current = data.user(&user_id).ok_or_else(|| ApiError::not_found(format!("user {user_id} not found")))?;
    let updated = edit::patched_user(current, patch)?;
    check_manager(&data, &updated)?;
    let answer = user_json(&updated);
    data.update_user(Actor::Console, &user_id, |u| *u = updated).map_err(refused)?;
    Ok(answer)
}

/// `user_delete` (its memberships go too, without events of their own). 204.
async fn delete_user(
    State(shared): AppState,
    Path((index, user_id)): Path<(usize, String)>,
) -> Result<StatusCode, ApiError> {
    org(&shared, index)?.write().remove_user(Actor::Console, &user_id).map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group created outside the product (`user_group_create`): `name` required, `id`,
/// `description`, `email`, `membershipMethod` optional. 201 with the group; 409 when taken.
async fn create_group(
    State(shared): AppState,
    Path(index): Path<usize>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let group = edit::new_group(edit::object(&body)?)?;
    org(&shared, index)?.write().add_group(Actor::Console, group.clone()).map_err(refused)?;
    Ok((StatusCode::CREATED, Json(group_json(&group, None))))
}

/// A merge patch of a group, e.g. a rename (`user_group_update`, no event if nothing changed).
async fn update_group(
    State(shared): AppState,
    Path((index, group_id)): Path<(usize, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch = edit::object(&body)?;
    let mut data = org(&shared, index)?.write();
    let current = data.group(&group_id).ok_or_else(|| ApiError::not_found(format!("group {group_id} not found")))?;
    let updated: Group = edit::patched_group(current, patch)?;
    let answer = Json(group_json(&updated, None));
    data.update_group(Actor::Console, &group_id, |g| *g = updated).map_err(refused)?;
    Ok(answer)
}

/// `user_group_delete` (its memberships go too, without events of their own). 204.
async fn delete_group(
    State(shared): AppState,
    Path((index, group_id)): Path<(usize, String)>,
) -> Result<StatusCode, ApiError> {
    org(&shared, index)?.write().remove_group(Actor::Console, &group_id).map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every event the organization holds, oldest first (retention not applied).
async fn events(State(shared): AppState, Path(index): Path<usize>) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Array(org(&shared, index)?.read().events().all_json())))
}

fn time_field(name: &str, text: &str) -> Result<std::time::SystemTime, ApiError> {
    parse_rfc3339(text).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expire {
    before: String,
}

/// `{"before": "<RFC 3339>"}`: drops the events stamped before it. Answers `{"expired": n}`.
async fn expire_events(
    State(shared): AppState,
    Path(index): Path<usize>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: Expire =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))?;
    let before = to_millis(time_field("before", &request.before)?, true);
    let expired = org(&shared, index)?.write().expire_events_before(before);
    Ok(Json(json!({ "expired": expired })))
}

/// `{"now": "<RFC 3339, ms>", "pinned": bool}`.
fn clock_json(shared: &Shared) -> Json<Value> {
    Json(json!({ "now": rfc3339_millis(shared.clock.now_ms()), "pinned": shared.clock.is_pinned() }))
}

async fn get_clock(State(shared): AppState) -> Json<Value> {
    clock_json(&shared)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinClock {
    now: String,
}

/// `{"now": "<RFC 3339>"}`: stops the event clock there.
async fn pin_clock(State(shared): AppState, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: PinClock =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))?;
    shared.clock.pin(to_millis(time_field("now", &request.now)?, false));
    Ok(clock_json(&shared))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceClock {
    ms: i64,
}

/// `{"ms": n}`: moves the event clock on (back, when negative) and keeps it pinned.
async fn advance_clock(State(shared): AppState, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: AdvanceClock =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))?;
    shared.clock.advance(request.ms);
    Ok(clock_json(&shared))
}

/// Back to the system clock.
async fn unpin_clock(State(shared): AppState) -> Json<Value> {
    shared.clock.unpin();
    clock_json(&shared)
}
