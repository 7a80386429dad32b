//! The product's events.

use crate::domain::model::GrantEvent;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("EventBridge: {0}")]
pub struct EventBusError(pub String);

/// Publishes events (EventBridge `PutEvents`, at most 10 entries per call, source
/// [`crate::domain::model::EVENT_SOURCE`]).
#[async_trait]
pub trait EventBus: Send + Sync {
    async fn publish(&self, events: &[GrantEvent]) -> Result<(), EventBusError>;
}
