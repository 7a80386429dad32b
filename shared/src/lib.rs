//! Just-in-time JumpCloud group access: the library every function and the CLI share.
//!
//! Layers (see `ARCHITECTURE.md` at the repository's root):
//! - [`domain`]: what happens on sync, grant, revoke, sweep and reconciliation: pure logic over
//!   [`ports`], and the domain's types in [`domain::model`].
//! - [`ports`]: the small traits the domain needs (directory, stores, scheduler, event bus,
//!   integrations), with the types they speak in.
//! - [`adapters`]: the ports over the outside world: JumpCloud (reqwest), DynamoDB, EventBridge
//!   Scheduler, EventBridge, Secrets Manager; and [`adapters::setup`] (creates the resources the
//!   template also declares).
//! - edges: [`handlers`] (the functions' events in, responses out), [`http`] (routes,
//!   problem+json, caller identity), [`config`] (environment, validated once), [`wiring`] (the
//!   adapters behind each port, built once per container), [`telemetry`] (JSON logs), [`clock`].
//! - [`credentials`]: secret values and the types that hold them (redacted `Debug`).
//! - `testing`: in-memory doubles of the ports (tests, and the `testing` feature).

pub mod adapters;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod handlers;
pub mod http;
pub mod ports;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wiring;

#[cfg(test)]
mod parser_properties;
