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
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
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
