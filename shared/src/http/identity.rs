//! The caller, from API Gateway's authorizer context: the IAM principal's ARN (IAM authorization)
//! or the JWT's `email` / `sub` claim (JWT authorizer). Recorded as `requested_by`.

use lambda_http::{request::RequestContext, Request, RequestExt};

pub fn caller(request: &Request) -> Option<String> {
    let found = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.authorizer.as_ref().and_then(|auth| {
            auth.iam.as_ref().and_then(|iam| iam.user_arn.clone()).or_else(|| {
                auth.jwt.as_ref().and_then(|jwt| jwt.claims.get("email").or_else(|| jwt.claims.get("sub")).cloned())
            })
        }),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.user_arn.clone().or_else(|| {
            let claims = ctx.authorizer.fields.get("claims")?;
            claims.get("email").or_else(|| claims.get("sub"))?.as_str().map(str::to_owned)
        }),
        _ => None,
    };
    found.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty() && c.len() <= 512)
}
