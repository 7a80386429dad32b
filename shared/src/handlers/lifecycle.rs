//! What the `grant` and `revoke` functions share: the grant lifecycle's ports, built once per
//! container, and the domain context over them.

use crate::{
    clock::Clock,
    domain::grant::{GrantContext, GrantPolicy},
    ports::{
        DirectoryProvider, DirectoryStore, EventBus, ExpiryScheduler, GrantStore, IntegrationCatalog, MembershipOracle,
    },
};
use std::sync::Arc;

pub struct Lifecycle {
    pub store: Arc<dyn GrantStore>,
    pub scheduler: Arc<dyn ExpiryScheduler>,
    pub events: Arc<dyn EventBus>,
    pub catalog: Arc<dyn IntegrationCatalog>,
    pub directories: Arc<dyn DirectoryProvider>,
    pub oracle: Arc<dyn MembershipOracle>,
    /// The synced directory (`GET /groups`).
    pub directory_store: Arc<dyn DirectoryStore>,
    pub clock: Arc<dyn Clock>,
    pub policy: GrantPolicy,
}

impl Lifecycle {
    pub fn ctx(&self) -> GrantContext<'_> {
        GrantContext {
            store: self.store.as_ref(),
            scheduler: self.scheduler.as_ref(),
            events: self.events.as_ref(),
            catalog: self.catalog.as_ref(),
            directories: self.directories.as_ref(),
            oracle: self.oracle.as_ref(),
            clock: self.clock.as_ref(),
            policy: &self.policy,
        }
    }
}
