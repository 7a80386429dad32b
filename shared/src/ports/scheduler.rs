//! One-time expiry schedules.

use crate::domain::model::Grant;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("EventBridge Scheduler: {0}")]
pub struct SchedulerError(pub String);

/// One-time expiry schedules (EventBridge Scheduler).
#[async_trait]
pub trait ExpiryScheduler: Send + Sync {
    /// Creates the grant's schedule: name [`crate::domain::model::schedule_name_for`] (a request
    /// awaiting approval has its own), at [`Grant::expiry`] by
    /// [`crate::domain::model::expiry_schedule_expression`] in timezone UTC, flexible window off,
    /// deleted after completion, input [`crate::domain::model::ExpiryInput`] as JSON, target the `revoke`
    /// function. An existing schedule of that name counts as created. Returns its name.
    async fn create(&self, grant: &Grant) -> Result<String, SchedulerError>;
    /// Deletes a schedule; one that does not exist (fired, or never created) is success.
    async fn delete(&self, name: &str) -> Result<(), SchedulerError>;
}
