//! `GET /policy` on the `grant` function: the applied access policy, for admins only (SPEC "Who
//! may do what": admins manage the policy). Read from the store (strongly consistent), not
//! through the request paths' cache, so that an admin sees a change as soon as it is applied.

use super::access;
use crate::{
    http::{json, problem, Problem},
    wiring::Lifecycle,
};
use lambda_http::{http::StatusCode, Body, Request, Response};
use serde_json::json as json_value;

/// `{version, sha256, applied_at, applied_by, document}`; 404 while no policy is applied.
pub async fn get(lifecycle: &Lifecycle, request: &Request) -> Response<Body> {
    let l = lifecycle;
    let principal = match access::principal(request, &l.identity, l.catalog.as_ref(), l.directory_store.as_ref()).await
    {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    if let Err(p) = access::admins_only(&principal, "read the access policy") {
        return p.into_response();
    }
    match l.policy_store.applied().await {
        Ok(Some(applied)) => json(
            StatusCode::OK,
            &json_value!({
                "version": applied.version,
                "sha256": applied.sha256,
                "applied_at": applied.applied_at,
                "applied_by": applied.applied_by,
                "document": applied.document,
            }),
        ),
        Ok(None) => problem(StatusCode::NOT_FOUND, "no access policy is applied (jitctl policy apply FILE)"),
        Err(e) => Problem::from(&e).into_response(),
    }
}
