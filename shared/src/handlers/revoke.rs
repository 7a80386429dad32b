//! The `revoke` function: a grant's expiry schedule, `DELETE /grants/{id}`, and the sweep.

use super::{access, failure, routing};
use crate::wiring::Lifecycle;
use crate::{
    domain::extension::remind,
    domain::model::{EndReason, ExpiryAction, ExpiryInput, GrantStatus, ACTOR_SCHEDULE},
    domain::revoke::{revoke_grant, sweep, RevokeError},
    http::{handle_invocation, json, problem, Problem},
};
use lambda_http::{
    http::{Method, StatusCode},
    lambda_runtime::Diagnostic,
    Body, LambdaEvent, Request, Response,
};
use serde_json::Value;
use std::sync::Arc;

/// The sweep schedule's event `source` (see `infra/template.yaml`); EventBridge schedules work too.
pub const SWEEP_SOURCES: [&str; 3] = ["jit-access.sweep", "aws.events", "aws.scheduler"];

pub struct RevokeHandler {
    pub lifecycle: Arc<Lifecycle>,
}

impl RevokeHandler {
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        handle_invocation(event, |request| self.http(request), |event| self.scheduled(event)).await
    }

    async fn http(&self, request: Request) -> Response<Body> {
        if !routing::matches(&request, &Method::DELETE, &["grants", "*"]) {
            let status = if routing::path_known(&request, &["grants", "*"]) {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::NOT_FOUND
            };
            return problem(status, format!("no route {} {}", request.method(), request.uri().path()));
        }
        let l = &self.lifecycle;
        let principal =
            match access::principal(&request, &l.identity, l.catalog.as_ref(), l.directory_store.as_ref()).await {
                Ok(p) => p,
                Err(p) => return p.into_response(),
            };
        let id = routing::segments(&request).pop().unwrap_or_default();
        if uuid::Uuid::parse_str(&id).is_err() {
            return problem(StatusCode::NOT_FOUND, format!("no grant {id:?}"));
        }
        if !principal.admin {
            // Admins end any grant without this read; anyone else only their own.
            match l.store.get(&id).await {
                Ok(Some(grant)) if access::can_end(&principal, &grant) => {}
                Ok(Some(grant)) if access::can_see(&principal, &grant) => {
                    let who = if grant.status == GrantStatus::PendingApproval {
                        "only its requester or an admin may cancel this request"
                    } else {
                        "only the grantee, an approver of its rule or an admin may end this grant"
                    };
                    return problem(StatusCode::FORBIDDEN, who);
                }
                Ok(_) => return problem(StatusCode::NOT_FOUND, format!("no grant {id:?}")),
                Err(e) => return Problem::from(&e).into_response(),
            }
        }
        let actor = principal.id;
        match revoke_grant(&self.lifecycle.ctx(), &id, &actor, EndReason::Revoked).await {
            Ok(outcome) => json(StatusCode::OK, &outcome.grant),
            Err(e) => {
                let problem = Problem::from(&e);
                if problem.status >= 500 {
                    tracing::error!(grant_id = %id, error = %e, "revocation failed");
                }
                problem.into_response()
            }
        }
    }

    /// The expiry schedule's input, or the sweep. A retryable diagnostic makes Lambda (and the
    /// schedule's retry policy) deliver again; what no retry can fix is logged and acknowledged.
    async fn scheduled(&self, event: Value) -> Result<Value, Diagnostic> {
        if let Ok(input) = serde_json::from_value::<ExpiryInput>(event.clone()) {
            let ctx = self.lifecycle.ctx();
            if input.action == ExpiryAction::Remind {
                return match remind(&ctx, &input.grant_id, ACTOR_SCHEDULE).await {
                    Ok(published) => Ok(serde_json::json!({ "grant_id": input.grant_id, "reminded": published })),
                    // A store failure: the schedule's retry delivers again.
                    Err(e) => Err(Diagnostic::from(&RevokeError::Store(e))),
                };
            }
            return match revoke_grant(&ctx, &input.grant_id, ACTOR_SCHEDULE, EndReason::Expired).await {
                Ok(outcome) => Ok(to_json(outcome)),
                Err(e @ RevokeError::NotDue { .. }) => {
                    tracing::warn!(grant_id = %input.grant_id, error = %e, "expiry delivered early; the sweep ends the grant on time");
                    Ok(serde_json::json!({ "grant_id": input.grant_id, "outcome": "not_due" }))
                }
                Err(e) => {
                    let diagnostic = Diagnostic::from(&e);
                    if failure::is_retryable(&diagnostic) {
                        return Err(diagnostic);
                    }
                    tracing::error!(grant_id = %input.grant_id, error = %e, "expiry for a grant that cannot be ended");
                    Ok(serde_json::json!({ "grant_id": input.grant_id, "outcome": "not_found" }))
                }
            };
        }
        let source = event.get("source").and_then(Value::as_str).unwrap_or_default();
        if SWEEP_SOURCES.contains(&source) {
            let ctx = self.lifecycle.ctx();
            let report = sweep(&ctx, ctx.clock.now()).await.map_err(|e| Diagnostic::from(&e))?;
            // The heartbeat the template's SweepStoppedAlarm counts.
            tracing::info!(event = "sweep_heartbeat", report = ?report, "sweep finished");
            return Ok(to_json(report));
        }
        Err(failure::non_retryable(format!(
            "unsupported event (source {source:?}): expected an expiry input, the sweep or an HTTP request"
        )))
    }
}

fn to_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("outcomes serialize")
}
