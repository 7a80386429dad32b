//! The caller's credential, from API Gateway's authorizer context: the IAM principal's ARN (IAM
//! authorization) or the JWT's claims (JWT authorizer; API Gateway passes every claim as a
//! string). `domain::identity` resolves it to a principal.

use crate::domain::identity::Credential;
use lambda_http::{request::RequestContext, Request, RequestExt};
use std::collections::BTreeMap;

/// The longest ARN or claim value taken from a request.
const MAX_VALUE_CHARS: usize = 512;

fn usable(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && value.chars().count() <= MAX_VALUE_CHARS && !value.chars().any(char::is_control))
        .then(|| value.to_owned())
}

fn claims<'a>(pairs: impl Iterator<Item = (&'a String, String)>) -> BTreeMap<String, String> {
    pairs.filter_map(|(k, v)| Some((k.clone(), usable(&v)?))).collect()
}

pub fn credential(request: &Request) -> Option<Credential> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => {
            let auth = ctx.authorizer.as_ref()?;
            if let Some(arn) = auth.iam.as_ref().and_then(|iam| iam.user_arn.as_deref()).and_then(usable) {
                return Some(Credential::Iam { arn });
            }
            let jwt = auth.jwt.as_ref()?;
            let claims = claims(jwt.claims.iter().map(|(k, v)| (k, v.clone())));
            (!claims.is_empty()).then_some(Credential::Jwt { claims })
        }
        RequestContext::ApiGatewayV1(ctx) => {
            if let Some(arn) = ctx.identity.user_arn.as_deref().and_then(usable) {
                return Some(Credential::Iam { arn });
            }
            let found = ctx.authorizer.fields.get("claims")?.as_object()?;
            let claims =
                claims(found.iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))));
            (!claims.is_empty()).then_some(Credential::Jwt { claims })
        }
        _ => None,
    }
}
