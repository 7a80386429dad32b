//! `GET /openapi.json` on the `grant` function: the API's contract (`api/openapi.yaml`, compiled
//! into the binary), as JSON. It needs no caller (API Gateway's authorizer still guards the
//! route): it describes the API, it holds nothing of anyone's. The tests check every handler
//! answer against it (`testing::contract`).

use super::routing;
use lambda_http::{
    http::{Method, StatusCode},
    Body, Request, Response,
};
use serde_json::Value;
use std::sync::OnceLock;

/// The document as written (YAML), for the tests and `jitctl`.
pub const DOCUMENT_YAML: &str = include_str!("../../../api/openapi.yaml");
/// Its route.
pub const ROUTE: &[&str] = &["openapi.json"];

/// The document, parsed once per container.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_yaml_ng::from_str(DOCUMENT_YAML).expect("api/openapi.yaml parses (a unit test checks it)")
    })
}

/// Answers `GET /openapi.json`; `None` for any other request.
pub fn respond(request: &Request) -> Option<Response<Body>> {
    if !routing::matches(request, &Method::GET, ROUTE) {
        return None;
    }
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| serde_json::to_string(document()).expect("a JSON value serializes"));
    Some(
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("cache-control", "max-age=300")
            .body(Body::Text(body.clone()))
            .expect("valid response"),
    )
}
