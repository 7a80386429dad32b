//! Where the events go: the functions served by `cargo lambda watch` (the local stack), or the
//! handlers in this process (Rust tests).

use async_trait::async_trait;
use jit_shared::handlers::{grant::GrantHandler, revoke::RevokeHandler, sync::SyncHandler};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("no function {0}")]
    UnknownFunction(String),
    /// The function failed (an unhandled error: API Gateway answers 500).
    #[error("{function} failed: {message}")]
    Failed { function: String, message: String },
}

/// Invokes a function by its binary name (`grant`, `revoke`, `sync`) with an event, returning
/// what the function returned.
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError>;
}

/// The Lambda Invoke API of `cargo lambda watch`
/// (`POST {url}/2015-03-31/functions/{name}/invocations`).
pub struct LambdaWatch {
    url: String,
    http: reqwest::Client,
}

impl LambdaWatch {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into().trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }
}

#[async_trait]
impl Invoker for LambdaWatch {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        let failed = |message: String| InvokeError::Failed { function: function.to_owned(), message };
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.url);
        let response = self.http.post(&url).json(&event).send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let function_error = response.headers().get("x-amz-function-error").is_some();
        let body = response.text().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() || function_error {
            return Err(failed(format!("{status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| failed(format!("the answer is not JSON: {e}")))
    }
}

/// The three functions' handlers, in this process.
#[derive(Clone)]
pub struct Handlers {
    pub grant: Arc<GrantHandler>,
    pub revoke: Arc<RevokeHandler>,
    pub sync: Arc<SyncHandler>,
}

#[async_trait]
impl Invoker for Handlers {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        let event = lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default());
        let answer = match function {
            "grant" => self.grant.handle(event).await,
            "revoke" => self.revoke.handle(event).await,
            "sync" => self.sync.handle(event).await,
            other => return Err(InvokeError::UnknownFunction(other.to_owned())),
        };
        answer.map_err(|d| InvokeError::Failed {
            function: function.to_owned(),
            message: format!("{}: {}", d.error_type, d.error_message),
        })
    }
}
