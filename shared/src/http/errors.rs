//! The one place where the domain's errors become HTTP statuses and problem+json: the domain says
//! what went wrong, the edge decides how HTTP says it.

use super::Problem;
use crate::{
    domain::{
        grant::GrantError,
        identity::IdentityError,
        model::{DurationError, InvalidField},
        request::RequestError,
        revoke::RevokeError,
        sync::SyncError,
    },
    ports::{GrantStoreError, PolicyStoreError, SecretsError, StoreError},
};
use lambda_http::http::StatusCode;

impl From<&GrantError> for Problem {
    fn from(error: &GrantError) -> Self {
        let status = match error {
            // A field missing from the request itself.
            GrantError::IntegrationRequired(_) => StatusCode::BAD_REQUEST,
            // Understood, but against the product's rules.
            GrantError::InvalidRequest(_)
            | GrantError::DurationOutOfRange { .. }
            | GrantError::UserSuspended(_)
            | GrantError::GroupNotRequestable { .. }
            | GrantError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            GrantError::UnknownIntegration(_) | GrantError::UserNotFound(_) | GrantError::GroupNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            GrantError::IdempotencyInProgress | GrantError::Busy => StatusCode::CONFLICT,
            // Who asks: not allowed to ask for this at all.
            GrantError::NoPolicy | GrantError::ForSomeoneElse | GrantError::NotAUser(_) => StatusCode::FORBIDDEN,
            GrantError::Refused(refusal) if refusal.is_forbidden() => StatusCode::FORBIDDEN,
            // What was asked: against the rule (duration, ticket, break glass, no approver).
            GrantError::Refused(_) | GrantError::NoApprover { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            GrantError::Policy(_) | GrantError::SyncedDirectory(_) => StatusCode::SERVICE_UNAVAILABLE,
            GrantError::Directory(_) => StatusCode::BAD_GATEWAY,
            GrantError::NoIntegration | GrantError::Integrations(_) => StatusCode::SERVICE_UNAVAILABLE,
            GrantError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, error.to_string())
    }
}

impl From<&RequestError> for Problem {
    fn from(error: &RequestError) -> Self {
        match error {
            RequestError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, error.to_string()),
            RequestError::NotPending(_)
            | RequestError::Expired(_)
            | RequestError::Contended
            | RequestError::Conflict(_) => Problem::new(StatusCode::CONFLICT, error.to_string()),
            RequestError::Forbidden(_) => Problem::new(StatusCode::FORBIDDEN, error.to_string()),
            RequestError::InvalidComment(_) => Problem::new(StatusCode::BAD_REQUEST, error.to_string()),
            RequestError::Activation(e) | RequestError::Rejected(e) => Problem::from(e),
            RequestError::Store(e) => Problem::from(e),
        }
    }
}

impl From<&RevokeError> for Problem {
    fn from(error: &RevokeError) -> Self {
        let status = match error {
            RevokeError::NotFound(_) => StatusCode::NOT_FOUND,
            RevokeError::NotDue { .. } | RevokeError::Busy | RevokeError::Request(_) => StatusCode::CONFLICT,
            RevokeError::Directory(_) | RevokeError::UnknownIntegration(_) | RevokeError::IntegrationChanged(_) => {
                StatusCode::BAD_GATEWAY
            }
            RevokeError::Integrations(_) => StatusCode::SERVICE_UNAVAILABLE,
            RevokeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, error.to_string())
    }
}

impl From<&SyncError> for Problem {
    fn from(error: &SyncError) -> Self {
        match error {
            SyncError::UnknownIntegration(name) => {
                Problem::new(StatusCode::NOT_FOUND, format!("unknown integration {name:?}"))
            }
            // JumpCloud, Secrets Manager or DynamoDB: a service behind this one failed.
            other => Problem::new(StatusCode::BAD_GATEWAY, other.to_string()),
        }
    }
}

impl From<&GrantStoreError> for Problem {
    fn from(error: &GrantStoreError) -> Self {
        match error {
            GrantStoreError::InvalidToken(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "`next` is not a page token from this API")
            }
            // A read that failed: the store's fault, not the request's.
            _ => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        }
    }
}

impl From<&PolicyStoreError> for Problem {
    fn from(error: &PolicyStoreError) -> Self {
        let status = match error {
            PolicyStoreError::Conflict { .. } => StatusCode::CONFLICT,
            // A stored version that no longer parses, or the table: not the request's fault.
            PolicyStoreError::Invalid { .. } | PolicyStoreError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, error.to_string())
    }
}

impl From<&IdentityError> for Problem {
    fn from(error: &IdentityError) -> Self {
        let status = match error {
            IdentityError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            IdentityError::Forbidden(_) => StatusCode::FORBIDDEN,
            IdentityError::Integrations(_) => StatusCode::SERVICE_UNAVAILABLE,
            IdentityError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, error.to_string())
    }
}

impl From<&StoreError> for Problem {
    fn from(error: &StoreError) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

/// The integrations (Secrets Manager) could not be listed: nothing can be served for now.
impl From<&SecretsError> for Problem {
    fn from(error: &SecretsError) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
    }
}

impl From<DurationError> for Problem {
    fn from(error: DurationError) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, error.to_string())
    }
}

impl From<InvalidField> for Problem {
    fn from(error: InvalidField) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{domain::model::GrantDuration, ports::DirectoryError};

    fn status<E>(error: &E) -> u16
    where
        for<'a> Problem: From<&'a E>,
    {
        Problem::from(error).status
    }

    #[test]
    fn grant_errors_map_to_their_statuses() {
        let d = GrantDuration::from_secs(60);
        let transient = DirectoryError::Transient { reason: "HTTP 503".into() };
        let cases: Vec<(GrantError, u16)> = vec![
            (GrantError::IntegrationRequired(vec!["a".into(), "b".into()]), 400),
            (GrantError::InvalidRequest("reason must not be empty".into()), 422),
            (GrantError::DurationOutOfRange { requested: d, min: d, max: d }, 422),
            (GrantError::UserSuspended("sam".into()), 422),
            (GrantError::GroupNotRequestable { group: "g".into(), why: "dynamic" }, 422),
            (GrantError::IdempotencyMismatch, 422),
            (GrantError::UnknownIntegration("x".into()), 404),
            (GrantError::UserNotFound("x".into()), 404),
            (GrantError::GroupNotFound("x".into()), 404),
            (GrantError::IdempotencyInProgress, 409),
            (GrantError::Busy, 409),
            (GrantError::Directory(transient), 502),
            (GrantError::NoIntegration, 503),
            (GrantError::Store(GrantStoreError::Conflict("x".into())), 500),
            (GrantError::Store(GrantStoreError::Store(crate::ports::StoreError::Aws("down".into()))), 500),
        ];
        for (error, expected) in cases {
            assert_eq!(status(&error), expected, "{error:?}");
        }
    }

    #[test]
    fn revoke_sync_and_store_errors_map_to_their_statuses() {
        assert_eq!(status(&RevokeError::NotFound("g".into())), 404);
        assert_eq!(status(&RevokeError::Busy), 409);
        assert_eq!(status(&RevokeError::UnknownIntegration("corp".into())), 502);
        assert_eq!(status(&SyncError::UnknownIntegration("corp".into())), 404);
        assert_eq!(status(&SyncError::Directory(DirectoryError::Unauthorized { status: 401 })), 502);
        let bad_token = GrantStoreError::InvalidToken("x".into());
        assert_eq!(status(&bad_token), 400);
        assert_eq!(Problem::from(&bad_token).detail, "`next` is not a page token from this API");
        let field = InvalidField { field: "user", rule: "1 to 256 printable characters" };
        assert_eq!(Problem::from(field).status, 400);
        assert_eq!(Problem::from("soon".parse::<GrantDuration>().unwrap_err()).status, 400);
        assert_eq!(status(&SecretsError::List("throttled".into())), 503);
        assert_eq!(status(&crate::ports::StoreError::Aws("down".into())), 500);
        assert_eq!(status(&IdentityError::Unauthenticated("no claim".into())), 401);
        assert_eq!(status(&IdentityError::Forbidden("not a user".into())), 403);
        assert_eq!(status(&IdentityError::Integrations(SecretsError::List("x".into()))), 503);
        assert_eq!(status(&PolicyStoreError::Conflict { current: Some(2) }), 409);
        assert_eq!(status(&PolicyStoreError::Invalid { version: 1, reason: "x".into() }), 500);
        assert_eq!(status(&PolicyStoreError::Store(StoreError::Aws("down".into()))), 500);
    }
}
