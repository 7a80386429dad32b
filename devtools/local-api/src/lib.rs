//! A local stand-in for the deployed HTTP API (API Gateway HTTP API, payload format 2.0), so that a
//! browser, `curl` or a test talks HTTP to the functions exactly as it would to the deployed stack:
//!
//! - the routes are the deployment template's (`infra/template.yaml`, built in: [`RouteTable`]),
//!   matched as API Gateway matches them, each to the function behind it;
//! - routes with the JWT authorizer check `Authorization: Bearer <token>` as API Gateway does
//!   (issuer, audience, RS256 signature against the issuer's JWKS, `exp`/`nbf`/`iat`:
//!   [`JwtAuthorizer`]); a refused request gets `401 {"message":"Unauthorized"}` and no function
//!   runs; an accepted one carries the claims, as strings, in `requestContext.authorizer.jwt.claims`;
//! - the request becomes a payload 2.0 event (`routeKey`, `rawPath`, `rawQueryString`, lowercased
//!   headers, `cookies`, `queryStringParameters`, `pathParameters`, `body`, base64 for non-text
//!   bodies, `requestContext` with `apiId`, `http`, `requestId`, `time`); the function's answer
//!   becomes the response (status, headers, `cookies` as `set-cookie`, body, `isBase64Encoded`);
//! - functions are invoked through an [`Invoker`]: [`LambdaWatch`] (the Invoke API of
//!   `cargo lambda watch`, for the local stack) or [`Handlers`] (the handlers in process, for Rust
//!   tests). API Gateway's own errors: 404 `Not Found`, 500 (the function failed), 503 (the
//!   integration's timeout), 403 for `AWS_IAM` routes (SigV4 is not emulated).
//!
//! ```no_run
//! # async fn demo(handlers: jit_local_api::Handlers) -> anyhow::Result<()> {
//! let api = jit_local_api::LocalApi::start(handlers, "http://127.0.0.1:4180", "jit-portal").await?;
//! let grants = reqwest::Client::new().get(format!("{}/grants", api.url())).bearer_auth("<id token>").send().await?;
//! # Ok(()) }
//! ```

pub mod authorizer;
pub mod event;
pub mod invoke;
pub mod routes;
mod server;

pub use authorizer::{Denied, JwtAuthorizer, JwtConfiguration};
pub use invoke::{Handlers, InvokeError, Invoker, LambdaWatch};
pub use routes::{Auth, Route, RouteTable};
pub use server::{start, LocalApi, LocalApiConfig, RunningLocalApi};
