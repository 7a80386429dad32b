//! Errors: [`SimError`] for the library's direct mutations, `ApiError` for HTTP answers in
//! JumpCloud's `Error` shape (`{"code", "message", "status"}`).

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a direct change through [`crate::OrgHandle`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    UnknownUser(String),
    UnknownGroup(String),
    /// A unique field (id, username, email, group name) is already taken.
    Conflict(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::UnknownUser(id) => write!(f, "unknown user {id}"),
            SimError::UnknownGroup(id) => write!(f, "unknown group {id}"),
            SimError::Conflict(what) => write!(f, "already exists: {what}"),
        }
    }
}

impl std::error::Error for SimError {}

/// An error answer. JumpCloud's bodies carry the status twice: as a number and as its reason phrase.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after_secs: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": self.status.canonical_reason().unwrap_or("Unknown"),
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
