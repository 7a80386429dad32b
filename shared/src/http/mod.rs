//! The HTTP edge: the domain's errors as problem+json (`errors`, the only place that knows
//! their statuses), JSON responses, body limits, and dispatch of a Lambda
//! event that may be HTTP (API Gateway 2.0 / 1.0, function URL) or something else (a schedule).

mod errors;
mod identity;
mod invocation;
mod problem;

pub use identity::credential;
pub use invocation::{handle_invocation, Invocation};
pub use problem::Problem;

use lambda_http::{http::StatusCode, Body, Request, Response};
use serde::{de::DeserializeOwned, Serialize};

/// Largest request body we read (API Gateway allows far more than any of our requests needs).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).expect("response types serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .expect("valid response")
}

/// A problem+json response.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response<Body> {
    Problem::new(status, detail).into_response()
}

/// Parses a JSON body: 413 when too large, 400 when malformed (or an unknown field), with the
/// parser's reason but never the body itself.
pub fn parse_body<T: DeserializeOwned>(request: &Request, empty_is: Option<T>) -> Result<T, Problem> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => b"",
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if let Some(default) = empty_is {
            return Ok(default);
        }
        return Err(Problem::new(StatusCode::BAD_REQUEST, "request body is empty; a JSON object is expected"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let kind = if e.is_data() { "request body has an invalid field" } else { "request body is not valid JSON" };
        // serde's messages name fields and positions, not values.
        Problem::new(StatusCode::BAD_REQUEST, format!("{kind}: {e}"))
    })
}
