//! The functions' handlers: parse the event, call the domain, map the result. Each function's
//! `main.rs` only builds its handler once per container and hands it to the runtime.

pub mod grant;
pub mod lifecycle;
pub mod revoke;
pub mod routing;
pub mod sync;
#[cfg(test)]
mod tests;

/// Integrations (Secrets Manager, by tag) and their JumpCloud clients: built once per container.
pub fn integrations(
    sdk: &aws_config::SdkConfig,
    config: &crate::config::Config,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> (std::sync::Arc<dyn crate::ports::IntegrationCatalog>, std::sync::Arc<crate::jumpcloud::JumpCloudDirectories>) {
    let catalog: std::sync::Arc<dyn crate::ports::IntegrationCatalog> =
        std::sync::Arc::new(crate::secrets::SecretsManagerCatalog::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            &config.secret_tag_key,
            &config.secret_tag_value,
            config.secrets_cache_ttl,
            clock,
        ));
    let directories = std::sync::Arc::new(crate::jumpcloud::JumpCloudDirectories::new(
        http_client(),
        config.jumpcloud_api_url.clone(),
        config.jumpcloud.clone(),
        catalog.clone(),
    ));
    (catalog, directories)
}

/// One HTTP client per container, shared by every integration's JumpCloud client.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("jit-access/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client builds")
}
