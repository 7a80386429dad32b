//! `revoke`: a grant's expiry schedule, `DELETE /grants/{id}`, the sweep schedule. Wiring only;
//! see `jit_shared::handlers::revoke`.

use jit_shared::{
    adapters::aws,
    config::Config,
    handlers::revoke::RevokeHandler,
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
    let lifecycle = Lifecycle::from_config(&aws::sdk_config().await, &config, Function::Revoke)?;
    let handler = RevokeHandler { lifecycle: Arc::new(lifecycle) };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handler.handle(event))).await
}
