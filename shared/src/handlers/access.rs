//! Who may do what on each route (SPEC "Who may do what"): every request's caller is resolved to
//! a principal first; each route then applies its rule.

use crate::{
    config::IdentityConfig,
    domain::{
        identity::{resolve, Principal},
        model::{Grant, GrantStatus},
    },
    http::{credential, Problem},
    ports::{DirectoryStore, IntegrationCatalog},
};
use lambda_http::{http::StatusCode, request::RequestContext, Request, RequestExt};

/// The caller of a request: 401 without a credential (or an unusable one), 403 for someone this
/// product does not serve.
pub async fn principal(
    request: &Request,
    identity: &IdentityConfig,
    catalog: &dyn IntegrationCatalog,
    directory: &dyn DirectoryStore,
) -> Result<Principal, Problem> {
    through_this_api(request, identity)?;
    let credential = credential(request).ok_or_else(|| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "no caller identity in the request context (IAM or JWT authorization is required)",
        )
    })?;
    resolve(&credential, identity, catalog, directory).await.map_err(|e| Problem::from(&e))
}

/// With `API_ID` set (deployed), a request must have come through that API: anything else (another
/// stack's API, a forged invocation) is refused (403).
pub fn through_this_api(request: &Request, identity: &IdentityConfig) -> Result<(), Problem> {
    match &identity.api_id {
        Some(expected) if api_id(request).as_deref() != Some(expected.as_str()) => {
            Err(Problem::new(StatusCode::FORBIDDEN, "this request did not come through this product's API"))
        }
        _ => Ok(()),
    }
}

/// The API Gateway API the request came through.
fn api_id(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.apiid.clone(),
        RequestContext::ApiGatewayV1(ctx) => ctx.apiid.clone(),
        _ => None,
    }
}

/// Admins see every grant; anyone else only those they requested, hold or may approve. A grant
/// they may not see answers 404, as if it did not exist.
pub fn can_see(principal: &Principal, grant: &Grant) -> bool {
    principal.admin
        || is_requester(principal, grant)
        || principal.is_user(&grant.integration, &grant.user.id)
        || is_approver(principal, grant)
}

/// A request awaiting approval: its requester or an admin may cancel it. A grant: its grantee
/// may give it up, an approver of its rule or an admin may end it.
pub fn can_end(principal: &Principal, grant: &Grant) -> bool {
    if grant.status == GrantStatus::PendingApproval {
        return principal.admin || is_requester(principal, grant);
    }
    principal.admin || principal.is_user(&grant.integration, &grant.user.id) || is_approver(principal, grant)
}

fn is_requester(principal: &Principal, grant: &Grant) -> bool {
    principal.id == grant.requested_by
        || grant.requester.as_ref().is_some_and(|r| principal.is_user(&grant.integration, &r.id))
}

/// One of the emails the grant's rule resolved as its approvers.
pub fn is_approver(principal: &Principal, grant: &Grant) -> bool {
    principal.user_in(&grant.integration).is_some_and(|me| grant.approvers.contains(&me.email))
}

pub fn admins_only(principal: &Principal, what: &str) -> Result<(), Problem> {
    if principal.admin {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, format!("only admins may {what}")))
    }
}
