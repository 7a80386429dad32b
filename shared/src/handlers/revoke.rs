//! The `revoke` function: a grant's expiry schedule, `DELETE /grants/{id}`, and the sweep.

use super::routing;
use crate::wiring::Lifecycle;
use crate::{
    domain::model::{EndReason, ExpiryInput, ACTOR_SCHEDULE},
    domain::revoke::{revoke_grant, sweep, RevokeError},
    http::{caller, handle_invocation, json, Problem},
};
use lambda_http::{
    http::{Method, StatusCode},
    Body, Error, LambdaEvent, Request, Response,
};
use serde_json::Value;
use std::sync::Arc;

/// The sweep schedule's event `source` (see `infra/template.yaml`); EventBridge schedules work too.
pub const SWEEP_SOURCES: [&str; 3] = ["jit-access.sweep", "aws.events", "aws.scheduler"];

pub struct RevokeHandler {
    pub lifecycle: Arc<Lifecycle>,
}

fn problem(status: u16, detail: impl Into<String>) -> Response<Body> {
    Problem::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), detail).into_response()
}

impl RevokeHandler {
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Error> {
        handle_invocation(event, |request| self.http(request), |event| self.scheduled(event)).await
    }

    async fn http(&self, request: Request) -> Response<Body> {
        if !routing::matches(&request, &Method::DELETE, &["grants", "*"]) {
            let status = if routing::path_known(&request, &["grants", "*"]) { 405 } else { 404 };
            return problem(status, format!("no route {} {}", request.method(), request.uri().path()));
        }
        let Some(actor) = caller(&request) else {
            return problem(401, "no caller identity in the request context (IAM or JWT authorization is required)");
        };
        let id = routing::segments(&request).pop().unwrap_or_default();
        if uuid::Uuid::parse_str(&id).is_err() {
            return problem(404, format!("no grant {id:?}"));
        }
        match revoke_grant(&self.lifecycle.ctx(), &id, &actor, EndReason::Revoked).await {
            Ok(outcome) => json(StatusCode::OK, &outcome.grant),
            Err(e) => {
                if e.http_status() >= 500 {
                    tracing::error!(grant_id = %id, error = %e, "revocation failed");
                }
                problem(e.http_status(), e.to_string())
            }
        }
    }

    /// The expiry schedule's input, or the sweep. An error makes Lambda (and the schedule's
    /// retry policy) deliver again; what no retry can fix is logged and acknowledged.
    async fn scheduled(&self, event: Value) -> Result<Value, Error> {
        if let Ok(input) = serde_json::from_value::<ExpiryInput>(event.clone()) {
            let ctx = self.lifecycle.ctx();
            return match revoke_grant(&ctx, &input.grant_id, ACTOR_SCHEDULE, EndReason::Expired).await {
                Ok(outcome) => Ok(serde_json::to_value(outcome)?),
                Err(e @ RevokeError::NotDue { .. }) => {
                    tracing::warn!(grant_id = %input.grant_id, error = %e, "expiry delivered early; the sweep ends the grant on time");
                    Ok(serde_json::json!({ "grant_id": input.grant_id, "outcome": "not_due" }))
                }
                Err(e) if !e.is_retryable() => {
                    tracing::error!(grant_id = %input.grant_id, error = %e, "expiry for a grant that cannot be ended");
                    Ok(serde_json::json!({ "grant_id": input.grant_id, "outcome": "not_found" }))
                }
                Err(e) => Err(e.into()),
            };
        }
        let source = event.get("source").and_then(Value::as_str).unwrap_or_default();
        if SWEEP_SOURCES.contains(&source) {
            let ctx = self.lifecycle.ctx();
            let report = sweep(&ctx, ctx.clock.now()).await?;
            tracing::info!(report = ?report, "sweep finished");
            return Ok(serde_json::to_value(report)?);
        }
        Err(format!("unsupported event (source {source:?}): expected an expiry input, the sweep or an HTTP request")
            .into())
    }
}
