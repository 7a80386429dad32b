//! RFC 9457 problem details: the only shape an error leaves the API in.

use lambda_http::{http::StatusCode, Body, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    /// A 500's detail is the product's fault and may carry a backend's error text (an AWS SDK
    /// message naming a table, an ARN): it is logged, with an error id, and the caller gets that
    /// id instead.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            let error_id = uuid::Uuid::new_v4();
            tracing::error!(%error_id, error = %detail, "internal error");
            detail = format!("an internal error occurred; it is logged as error id {error_id}");
        }
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        Response::builder()
            .status(self.status)
            .header("content-type", "application/problem+json")
            .body(Body::Text(serde_json::to_string(&self).expect("problem serializes")))
            .expect("valid response")
    }
}

impl From<Problem> for Response<Body> {
    fn from(p: Problem) -> Self {
        p.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_never_carries_the_backend_s_text() {
        let sdk =
            "DynamoDB: service error: ResourceNotFoundException: arn:aws:dynamodb:eu-west-1:123456789012:table/jit";
        let p = Problem::new(StatusCode::INTERNAL_SERVER_ERROR, sdk);
        assert!(!p.detail.contains("arn:aws") && !p.detail.contains("DynamoDB"), "{}", p.detail);
        assert!(p.detail.contains("error id"), "{}", p.detail);
        // Other statuses say what was wrong.
        assert_eq!(Problem::new(StatusCode::NOT_FOUND, "no grant \"x\"").detail, "no grant \"x\"");
    }
}
