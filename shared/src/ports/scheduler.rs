//! One-time expiry schedules.

use crate::domain::model::Grant;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

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
    /// Creates the grant's reminder: name [`crate::domain::model::reminder_schedule_name`], at
    /// `at`, input [`crate::domain::model::ExpiryInput::remind`], otherwise as `create`.
    async fn create_reminder(&self, grant: &Grant, at: DateTime<Utc>) -> Result<String, SchedulerError>;
    /// Moves the grant's schedule to its new expiry (an extension): the old one is deleted, a
    /// new one created.
    async fn reschedule(&self, grant: &Grant) -> Result<String, SchedulerError> {
        self.delete(&crate::domain::model::schedule_name_for(grant)).await?;
        self.create(grant).await
    }
}
