//! One JumpCloud client per integration per container: built on first use, reused after.

use super::{CatalogCredentials, JumpCloudClient};
use crate::{
    config::JumpCloudLimits,
    ports::{Directory, DirectoryProvider, Integration, IntegrationCatalog, SharedRate},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

pub struct JumpCloudDirectories {
    http: reqwest::Client,
    base_url: String,
    insights_url: String,
    limits: JumpCloudLimits,
    catalog: Arc<dyn IntegrationCatalog>,
    clients: Mutex<HashMap<String, Arc<JumpCloudClient>>>,
    /// Each integration's rate budget shared with other containers (the fanned-out sync).
    shared_rate: Option<SharedRateFor>,
}

/// The shared rate budget of an integration, by name.
pub type SharedRateFor = Arc<dyn Fn(&str) -> Arc<dyn SharedRate> + Send + Sync>;

impl JumpCloudDirectories {
    pub fn new(
        http: reqwest::Client,
        base_url: String,
        insights_url: String,
        limits: JumpCloudLimits,
        catalog: Arc<dyn IntegrationCatalog>,
    ) -> Self {
        Self { http, base_url, insights_url, limits, catalog, clients: Mutex::new(HashMap::new()), shared_rate: None }
    }

    /// Every client it builds also takes from its integration's shared rate budget.
    pub fn with_shared_rate(mut self, rate_for: SharedRateFor) -> Self {
        self.shared_rate = Some(rate_for);
        self
    }

    pub fn client(&self, integration: &Integration) -> Arc<JumpCloudClient> {
        let mut clients = self.clients.lock().expect("clients lock");
        clients
            .entry(integration.name.clone())
            .or_insert_with(|| {
                let credentials = CatalogCredentials::new(
                    self.catalog.clone(),
                    integration.name.clone(),
                    integration.credentials.clone(),
                );
                let client =
                    JumpCloudClient::new(self.http.clone(), &self.base_url, Arc::new(credentials), self.limits.clone())
                        .with_insights_url(&self.insights_url);
                Arc::new(match &self.shared_rate {
                    Some(rate_for) => client.with_shared_rate(rate_for(&integration.name)),
                    None => client,
                })
            })
            .clone()
    }
}

impl DirectoryProvider for JumpCloudDirectories {
    fn directory(&self, integration: &Integration) -> Arc<dyn Directory> {
        self.client(integration)
    }
    fn insights(&self, integration: &Integration) -> Arc<dyn crate::ports::DirectoryInsights> {
        self.client(integration)
    }
}
