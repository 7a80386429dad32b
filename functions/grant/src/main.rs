//! `grant`: `POST /grants`, `GET /grants`, `GET /grants/{id}`, `GET /groups`, `GET /policy`. Wiring only; see
//! `jit_shared::handlers::grant`.

use jit_shared::{
    adapters::aws,
    config::Config,
    handlers::grant::GrantHandler,
    telemetry,
    wiring::{Function, Lifecycle},
};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    let config = Config::from_env()?;
    let lifecycle = Lifecycle::from_config(&aws::sdk_config().await, &config, Function::Grant)?;
    let handler = GrantHandler { lifecycle: Arc::new(lifecycle) };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handler.handle(event))).await
}
