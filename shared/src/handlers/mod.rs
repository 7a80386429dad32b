//! The functions' handlers: parse the event, call the domain, map the result. Each function's
//! `main.rs` only builds its handler once per container and hands it to the runtime.

pub mod access;
pub mod admin;
pub mod failure;
pub mod grant;
pub mod openapi;
pub mod policy;
pub mod portal;
pub mod revoke;
pub mod routing;
pub mod slack;
pub mod sync;
#[cfg(test)]
mod tests;
