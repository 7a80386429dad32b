//! For functions whose domain has not landed yet: an honest 501, never a fake success.

use crate::http::{handle_invocation, Problem};
use lambda_http::{http::StatusCode, Error, LambdaEvent};
use serde_json::Value;

pub async fn not_implemented(function: &'static str, event: LambdaEvent<Value>) -> Result<Value, Error> {
    handle_invocation(
        event,
        |_request| async move {
            Problem::new(StatusCode::NOT_IMPLEMENTED, format!("the {function} function is not implemented yet"))
                .into_response()
        },
        |_event| async move { Err(format!("the {function} function is not implemented yet").into()) },
    )
    .await
}
