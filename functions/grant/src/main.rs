//! `grant`: not implemented yet (the grant-lifecycle issue). Answers 501 on HTTP and fails other events.

use jit_shared::{config::Config, handlers::placeholder, telemetry};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    Config::from_env()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| placeholder::not_implemented("grant", event))).await
}
