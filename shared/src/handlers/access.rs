//! Who may do what on each route (SPEC "Who may do what"): every request's caller is resolved to
//! a principal first; each route then applies its rule.

use crate::{
    config::IdentityConfig,
    domain::{
        identity::{resolve, Principal},
        model::Grant,
    },
    http::{credential, Problem},
    ports::{DirectoryStore, IntegrationCatalog},
};
use lambda_http::{http::StatusCode, Request};

/// The caller of a request: 401 without a credential (or an unusable one), 403 for someone this
/// product does not serve.
pub async fn principal(
    request: &Request,
    identity: &IdentityConfig,
    catalog: &dyn IntegrationCatalog,
    directory: &dyn DirectoryStore,
) -> Result<Principal, Problem> {
    let credential = credential(request).ok_or_else(|| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "no caller identity in the request context (IAM or JWT authorization is required)",
        )
    })?;
    resolve(&credential, identity, catalog, directory).await.map_err(|e| Problem::from(&e))
}

/// Admins see every grant; anyone else only those they requested or hold. A grant they may not
/// see answers 404, as if it did not exist.
pub fn can_see(principal: &Principal, grant: &Grant) -> bool {
    principal.admin || principal.id == grant.requested_by || principal.is_user(&grant.integration, &grant.user.id)
}

/// Admins may end any grant; its grantee may give it up.
pub fn can_end(principal: &Principal, grant: &Grant) -> bool {
    principal.admin || principal.is_user(&grant.integration, &grant.user.id)
}

pub fn admins_only(principal: &Principal, what: &str) -> Result<(), Problem> {
    if principal.admin {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, format!("only admins may {what}")))
    }
}
