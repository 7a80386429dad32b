//! `sync`: EventBridge schedule and `POST /sync`. Wiring only; see `jit_shared::handlers::sync`.

use jit_shared::{adapters::aws, config::Config, handlers::sync::SyncHandler, telemetry};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    let config = Config::from_env()?;
    let handler = SyncHandler::from_config(&aws::sdk_config().await, &config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handler.handle(event))).await
}
