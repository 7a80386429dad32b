//! The fanned-out full sync's ports (`domain::fanout`): the queue its parts travel on, the run's
//! record, and the JumpCloud rate budget its workers share.

use super::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The two halves of a fanned-out run, in order: every users part, then every members part (which
/// keep only memberships of users the first half stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartKind {
    Users,
    Members,
}

impl PartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Members => "members",
        }
    }
}

/// One queue message: a part of a run. Everything else the part needs is in the run's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartMessage {
    pub integration: String,
    pub run_id: String,
    pub kind: PartKind,
    pub part: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS: {0}")]
    Aws(String),
}

/// Where parts wait for a worker (SQS, consumed by the sync function itself).
#[async_trait]
pub trait PartQueue: Send + Sync {
    /// Sends every message (in batches; entries the queue refused are sent again, then an error).
    async fn send(&self, parts: &[PartMessage]) -> Result<(), QueueError>;
}

/// Where a run stands. It only moves forward: `Users` -> `Members` -> `Finishing` -> `Done`, or
/// `Failed` from any of the first three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStage {
    Users,
    Members,
    Finishing,
    Done,
    Failed,
}

/// A fanned-out run's record: written by the planner, then moved on only by the part that finds
/// its half complete (a conditional write on the stage, so exactly one does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    pub integration: String,
    pub run_id: String,
    /// The integration's sync status has the same `started_at` while this run is the current one.
    pub started_at: DateTime<Utc>,
    pub stage: RunStage,
    /// Users part `k` lists from position `k * users_per_part` in JumpCloud's id order; the last
    /// one to the end.
    pub users_per_part: u64,
    pub user_parts: u32,
    pub member_parts: u32,
    /// Groups listed by the planner (and written, where new or changed).
    pub groups: u64,
    pub groups_written: u64,
    /// Nothing was stored before the run: every membership is there from before the product, so
    /// none is judged as added outside it.
    pub first_sync: bool,
    /// The part that moved the run to its stage (`"users/3"`): its redelivery redoes the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_by: Option<String>,
    /// The members parts were sent (after the move to `Members`).
    #[serde(default)]
    pub members_sent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`SyncRunStore::put_new_ids`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NewKind {
    Users,
    Groups,
}

impl NewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
        }
    }
}

/// The ids a users part saw, kept apart from its report: they are the bulk of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartIds {
    /// Users listed and stored, in id order.
    pub kept: Vec<String>,
    /// Users listed but not stored (suspended, unless configured otherwise), in id order...
    pub excluded: Vec<String>,
    /// ...and their canonical emails, in the same order: a stored user may name one as manager
    /// (as the single sync resolves managers among every user it fetched).
    pub excluded_emails: Vec<String>,
}

/// What one part did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartReport {
    /// Users: listed (kept or excluded); members: memberships now stored of its groups.
    pub listed: u64,
    pub kept: u64,
    pub written: u64,
    pub deleted: u64,
    /// The last user listed (JumpCloud's id order): the upper end of the ids this part speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_id: Option<String>,
    /// Users whose manager was neither in the part nor stored when it ran: `(user id, reference)`,
    /// resolved once every users part is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved_managers: Vec<(String, String)>,
    /// Members parts: memberships added outside the product (`(group id, user id, removed)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_outside: Vec<(String, String, bool)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Members parts: groups whose member listing answered 404 (gone, or going).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone_groups: Vec<String>,
}

/// The records of fanned-out runs (DynamoDB: one partition per integration, items expiring after
/// a week).
#[async_trait]
pub trait SyncRunStore: Send + Sync {
    /// Writes the run's record: a new one when `expected` is `None` (fails if it exists), else
    /// only while the stored one is at stage `expected` (`Ok(false)` otherwise).
    async fn put_run(&self, run: &SyncRun, expected: Option<RunStage>) -> Result<bool, StoreError>;
    async fn run(&self, integration: &str, run_id: &str) -> Result<Option<SyncRun>, StoreError>;
    /// The groups of members part `part`, as the planner wrote them.
    async fn put_member_plan(
        &self,
        integration: &str,
        run_id: &str,
        part: u32,
        group_ids: &[String],
    ) -> Result<(), StoreError>;
    async fn member_plan(&self, integration: &str, run_id: &str, part: u32) -> Result<Vec<String>, StoreError>;
    /// Records a part's report (a redelivered part writes the same again) and counts the part
    /// done; returns how many parts of its kind are done.
    async fn report_part(
        &self,
        integration: &str,
        run_id: &str,
        kind: PartKind,
        part: u32,
        report: &PartReport,
        ids: &PartIds,
    ) -> Result<u32, StoreError>;
    async fn part_report(
        &self,
        integration: &str,
        run_id: &str,
        kind: PartKind,
        part: u32,
    ) -> Result<Option<PartReport>, StoreError>;
    async fn part_ids(&self, integration: &str, run_id: &str, part: u32) -> Result<PartIds, StoreError>;
    /// Users or groups the run stored for the first time, recorded by part (the planner's groups
    /// as part 0).
    async fn put_new_ids(
        &self,
        integration: &str,
        run_id: &str,
        kind: NewKind,
        part: u32,
        ids: &[String],
    ) -> Result<(), StoreError>;
    async fn new_ids(&self, integration: &str, run_id: &str, kind: NewKind) -> Result<HashSet<String>, StoreError>;
}

/// JumpCloud's rate budget, shared by every worker of an integration's run (a DynamoDB counter
/// per second): what they take together stays under the sync's share, leaving the rest of
/// JumpCloud's limit to grants and revocations.
#[async_trait]
pub trait SharedRate: Send + Sync {
    /// Waits until one more request may be sent.
    async fn acquire(&self) -> Result<(), StoreError>;
}
