//! The functions' handlers: parse the event, call the domain, map the result. Each function's
//! `main.rs` only builds its handler once per container and hands it to the runtime.

pub mod grant;
pub mod lifecycle;
pub mod placeholder;
pub mod revoke;
pub mod routing;
pub mod sync;
#[cfg(test)]
mod tests;

/// One HTTP client per container, shared by every integration's JumpCloud client.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("jit-access/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client builds")
}
