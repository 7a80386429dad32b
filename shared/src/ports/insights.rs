//! JumpCloud's Directory Insights, as the incremental sync reads it: the `directory` events since
//! a time, each reduced to what it says about users, groups and their memberships.

use super::DirectoryError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One Directory Insights event, as far as the stored directory is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEvent {
    /// JumpCloud's event id (ties on time are ordered by it).
    pub id: String,
    pub at: DateTime<Utc>,
    pub change: DirectoryChange,
}

/// What an event says changed. Users and groups are read again from JumpCloud whatever the event
/// says of them (their current state is the truth, so the order of events does not matter);
/// a membership is taken from the event itself (the last one by time wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryChange {
    /// Created, updated, suspended or activated: read it again.
    User {
        id: String,
    },
    UserDeleted {
        id: String,
    },
    /// Created, renamed or updated: read it again.
    Group {
        id: String,
    },
    GroupDeleted {
        id: String,
    },
    /// A user's direct membership of a group, added (`true`) or removed.
    Membership {
        group_id: String,
        user_id: String,
        added: bool,
    },
    /// An event about something the stored directory does not hold (systems, applications,
    /// policies, an association between other kinds of objects, an admin's sign-in).
    Unrelated,
    /// An event about users or groups of a type the sync does not understand: only a full sync
    /// can say what it changed.
    NotUnderstood {
        event_type: String,
    },
}

/// The events read in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventBatch {
    /// In ascending order of time (then id).
    pub events: Vec<DirectoryEvent>,
    /// `false` when the run stopped at its limit with more events waiting.
    pub complete: bool,
    /// Requests the reading took (pages).
    pub requests: u64,
}

#[async_trait]
pub trait DirectoryInsights: Send + Sync {
    /// The `directory` events from `from` (inclusive) on, oldest first, every page up to `max`
    /// events.
    async fn directory_events(&self, from: DateTime<Utc>, max: usize) -> Result<EventBatch, DirectoryError>;
}
