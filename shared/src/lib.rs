//! Just-in-time JumpCloud group access: the library every function and the CLI share.
//!
//! Layers (see `../shared/STYLE.md`):
//! - [`domain`]: what happens on sync (and later grant, revoke, reconcile), pure logic over [`ports`].
//! - [`ports`]: the small traits the domain needs (JumpCloud directory, store, integrations).
//! - adapters: [`jumpcloud`] (reqwest), [`store`] (DynamoDB and an in-memory double), [`secrets`]
//!   (Secrets Manager).
//! - edges: [`config`] (environment, validated once), [`http`] (routes and problem+json),
//!   [`telemetry`] (JSON logs), [`setup`] (creates the resources the template also declares).

pub mod aws;
pub mod clock;
pub mod config;
pub mod domain;
pub mod duration;
pub mod events;
pub mod grants;
pub mod handlers;
pub mod http;
pub mod jumpcloud;
pub mod model;
pub mod ports;
pub mod scheduler;
pub mod secret;
pub mod secrets;
pub mod setup;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(any(test, feature = "testing"))]
pub mod testing_grants;
#[cfg(any(test, feature = "testing"))]
pub mod testing_lifecycle;
