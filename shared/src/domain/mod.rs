//! What the product does, over the ports only: no network here, every path testable in memory.

pub mod audit;
pub mod drift_watch;
pub mod extension;
pub mod fanout;
#[cfg(test)]
mod fanout_tests;
pub mod grant;
pub mod identity;
pub mod incremental;
#[cfg(test)]
mod lifecycle_tests;
pub mod model;
pub mod outside;
pub mod policy;
pub mod query;
pub mod reconcile;
pub mod request;
pub mod revoke;
pub mod snapshot;
pub mod sync;
