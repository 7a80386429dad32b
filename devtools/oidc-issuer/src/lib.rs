//! A local OpenID Connect issuer for development and tests: it stands in for JumpCloud's OIDC SSO
//! application so that the portal signs people in, and the local API checks their ID tokens, with
//! no network. **Never for production**: anyone listed signs in without a password, and the key
//! lives in memory for the life of the process.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | the discovery document (issuer = `http://HOST:PORT`) |
//! | `GET /jwks.json` | the public key: RSA, `use` sig, `alg` RS256, `kid` = its RFC 7638 thumbprint |
//! | `GET /authorize` | authorization code flow, PKCE S256 required: `response_type=code`, `client_id`, `redirect_uri` (exact match), `scope` with `openid`, `code_challenge`, `code_challenge_method=S256`, `state`, `nonce`; a sign-in form with one button per user (filter `q`) |
//! | `POST /authorize` | the form's submission (the same parameters and `user` = a `sub`, or `cancel`): `303` to `redirect_uri?code=..&state=..` (or `error=access_denied`) |
//! | `POST /token` | `grant_type=authorization_code`, `code`, `redirect_uri`, `client_id`, `code_verifier` (form): `{"id_token", "access_token", "token_type": "Bearer", "expires_in", "scope"}`; errors as RFC 6749 JSON (`invalid_request`, `invalid_client` 401, `invalid_grant`, `unsupported_grant_type`); CORS for the origins of registered redirect URIs |
//!
//! An unknown client or an unregistered redirect URI gets an error page (never a redirect); other
//! bad authorization requests are redirected back with `error` and `error_description`. Codes live
//! `code_ttl` (default 60 s) and serve one token request, right or wrong. The ID token carries
//! `iss`, `aud` (the client id), `sub`, `email`, `email_verified`, `iat`, `exp`, `nonce` (when
//! sent), `name` and `preferred_username` (when known); the access token is opaque.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use jit_oidc_issuer::{ClientRegistration, IssuerConfig, SignInUser, UserSource};
//! let issuer = jit_oidc_issuer::start(IssuerConfig::new(
//!     vec![ClientRegistration::new("jit-portal", ["http://127.0.0.1:8080/"])],
//!     UserSource::Static(vec![SignInUser::new("u-1", "alice@example.com")]),
//!     // or UserSource::Simulator { url: sim.url(), org: 0 }
//! ))
//! .await?;
//! let token = jit_oidc_issuer::sign_in(&issuer.url(), "jit-portal", "http://127.0.0.1:8080/", "alice@example.com").await?;
//! # Ok(()) }
//! ```

pub mod clock;
pub mod flow;
pub mod jwt;
mod pages;
pub mod process;
mod server;
pub mod users;

pub use clock::{Clock, ManualClock, SystemClock};
pub use flow::{sign_in, Pkce, SignedIn};
pub use server::{start, ClientRegistration, IssuerConfig, RunningIssuer};
pub use users::{SignInUser, UserSource};
