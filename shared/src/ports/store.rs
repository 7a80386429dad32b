//! The product's state: the synced directory, and grants with their leases, audit trail and
//! idempotency records.
//!
//! Each `GrantStore` method is one conditional write, one transaction (a handful of items, far
//! below DynamoDB's 100) or one query in the DynamoDB adapter. Methods that change a lease take
//! the `LeaseHold` of the lock the caller holds and fail with `Conflict` if that lock has passed
//! to someone else, so a caller whose lock lapsed can never overwrite a newer decision.

use crate::domain::model::{
    AuditPage, AuditRecord, ChainHead, DaySeal, DirectoryChanges, DirectoryDigest, DirectoryGroup, DirectoryUser,
    Grant, GrantFilter, GrantPage, GrantStatus, IdempotencyClaim, IdempotencyState, Lease, LeaseHold, LeaseKey,
    MembershipEnd, RevocationRequest,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Errors of the store's backend (DynamoDB), as the domain sees them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB: {0}")]
    Aws(String),
    #[error("DynamoDB item could not be mapped: {0}")]
    Mapping(String),
    #[error("DynamoDB kept {0} writes unprocessed after retrying")]
    Unprocessed(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    Running,
    Succeeded,
    Failed,
}

/// The last sync of one integration, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub integration: String,
    pub state: SyncState,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub users: u64,
    #[serde(default)]
    pub groups: u64,
    #[serde(default)]
    pub memberships: u64,
    /// Items put (new or changed).
    #[serde(default)]
    pub written: u64,
    #[serde(default)]
    pub deleted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SyncStatus {
    /// A sync of `integration` that began at `started_at` and has not finished.
    pub fn running(integration: &str, started_at: DateTime<Utc>) -> Self {
        Self {
            integration: integration.to_owned(),
            state: SyncState::Running,
            started_at,
            finished_at: None,
            users: 0,
            groups: 0,
            memberships: 0,
            written: 0,
            deleted: 0,
            error: None,
        }
    }
}

/// A stored user as a sync compares it with JumpCloud's: its content hash
/// ([`content_hash`](crate::domain::model::content_hash)) and its manager as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUserDigest {
    pub hash: u64,
    pub manager_id: Option<String>,
    pub manager_email: Option<String>,
}

/// The synced directory in DynamoDB.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// The stored directory's ids, content hashes and memberships (not the items themselves).
    async fn load_digest(&self, integration: &str) -> Result<DirectoryDigest, StoreError>;
    /// Writes the changes (batched; retried until nothing is left unprocessed).
    async fn apply_changes(&self, integration: &str, changes: &DirectoryChanges) -> Result<(), StoreError>;
    async fn put_sync_status(&self, status: &SyncStatus) -> Result<(), StoreError>;
    /// Starts a sync of the integration (one at a time per integration): records `status`
    /// (running, started now) unless another sync of it is running and its claim holds until
    /// after `status.started_at`; then returns that one and records nothing. A claim lapses at
    /// `until` (a sync that died). One conditional put (and a read when refused).
    async fn claim_sync(&self, status: &SyncStatus, until: DateTime<Utc>) -> Result<Option<SyncStatus>, StoreError>;
    /// Every group of the synced directory (for `GET /groups`).
    async fn list_groups(&self, integration: &str) -> Result<Vec<DirectoryGroup>, StoreError>;
    async fn sync_status(&self, integration: &str) -> Result<Option<SyncStatus>, StoreError>;
    /// Up to when the stored directory reflects JumpCloud's Directory Insights events: the
    /// incremental sync reads from here (`None`: no full sync has set it yet).
    async fn event_cursor(&self, integration: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Moves the cursor to `to`. With `expected`, only if the cursor is still that (`false` when
    /// it is not: a full sync moved it meanwhile); without, whatever it is (a full sync).
    async fn put_event_cursor(
        &self,
        integration: &str,
        to: DateTime<Utc>,
        expected: Option<Option<DateTime<Utc>>>,
    ) -> Result<bool, StoreError>;
    /// A user of the synced directory by canonical email (an index query, not a scan).
    async fn user_by_email(&self, integration: &str, email: &str) -> Result<Option<DirectoryUser>, StoreError>;
    /// The id and canonical email of the user `user_by_email` finds: all a manager lookup needs
    /// (a sync resolves one per distinct manager), without reading the whole user.
    async fn user_key_by_email(&self, integration: &str, email: &str) -> Result<Option<(String, String)>, StoreError>;
    /// A group of the synced directory by exact name (an index query).
    async fn group_by_name(&self, integration: &str, name: &str) -> Result<Option<DirectoryGroup>, StoreError>;
    /// Whether the synced directory holds the direct membership (one read).
    async fn is_member(&self, integration: &str, group_id: &str, user_id: &str) -> Result<bool, StoreError>;
    /// A user of the synced directory by JumpCloud id (one `GetItem`).
    async fn user_by_id(&self, integration: &str, id: &str) -> Result<Option<DirectoryUser>, StoreError>;
    /// A group of the synced directory by JumpCloud id (one `GetItem`).
    async fn group_by_id(&self, integration: &str, id: &str) -> Result<Option<DirectoryGroup>, StoreError>;
    /// The users of the synced directory with these ids, in no particular order; ids that are not
    /// stored are skipped, repeated ids answered once. One `BatchGetItem` per 100 distinct ids
    /// (DynamoDB's limit), plus one per retry of keys DynamoDB left unprocessed; none for no ids.
    async fn users_by_ids(&self, integration: &str, ids: &[String]) -> Result<Vec<DirectoryUser>, StoreError>;
    /// The stored users among these ids as a sync compares them (content hash and manager), by
    /// id: what [`users_by_ids`] reads, projected to those attributes (a fan-out users part
    /// compares ten thousand users a time: a hash each, not whole users). Same calls.
    ///
    /// [`users_by_ids`]: DirectoryStore::users_by_ids
    async fn user_digests_by_ids(
        &self,
        integration: &str,
        ids: &[String],
    ) -> Result<HashMap<String, StoredUserDigest>, StoreError>;
    /// The canonical emails of the stored users among these ids, by id: what [`users_by_ids`]
    /// reads, projected to the two attributes (a fan-out worker checks the millions of members
    /// it reads against the stored users: a few bytes each, not whole users). Same calls.
    ///
    /// [`users_by_ids`]: DirectoryStore::users_by_ids
    async fn user_emails_by_ids(
        &self,
        integration: &str,
        ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError>;
    /// A user of the synced directory by username, case-insensitively (JumpCloud's usernames are:
    /// see [`canonical_username`](crate::domain::model::canonical_username)). One index query (`gsi2`), not a scan.
    async fn user_by_username(&self, integration: &str, username: &str) -> Result<Option<DirectoryUser>, StoreError>;
    /// The ids of the group's direct members. One `Query` of the memberships partition (one call
    /// per 1 MB page; keys only).
    async fn group_members(&self, integration: &str, group_id: &str) -> Result<Vec<String>, StoreError>;
    /// The stored memberships, as (group id, user id), of every group whose id is from `first`
    /// to `last` (both included; groups are in id order): [`group_members`] for a span of
    /// groups at once. One `Query` of the memberships partition (one call per 1 MB page; keys
    /// only): a fan-out members part reads its groups' stored members a window at a time, not a
    /// query a group.
    ///
    /// [`group_members`]: DirectoryStore::group_members
    async fn memberships_of_groups(
        &self,
        integration: &str,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// The ids of the groups the user is a direct member of. One index query (`gsi1`, one call
    /// per 1 MB page), not a scan. Eventually consistent, like every index read.
    async fn groups_of(&self, integration: &str, user_id: &str) -> Result<Vec<String>, StoreError>;
    /// Every user of the synced directory, by id. One `Query` of the users partition (one call
    /// per 1 MB page, a few thousand users each).
    async fn list_users(&self, integration: &str) -> Result<Vec<DirectoryUser>, StoreError>;
    /// The ids of the stored users after `after` up to and including `upto` (either end open when
    /// `None`), in id order. One `Query` of the users partition with a key range, keys only.
    async fn user_ids_between(
        &self,
        integration: &str,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Vec<String>, StoreError>;
}

/// Errors of the grant store.
#[derive(Debug, thiserror::Error)]
pub enum GrantStoreError {
    /// Another request holds the lease's lock until `until`.
    #[error("the membership is being changed by another request; retry shortly")]
    LeaseBusy { until: DateTime<Utc> },
    /// A condition failed: the grant or lease is not in the state the caller expected (the lock
    /// passed to someone else, the grant was settled meanwhile, or the id exists already).
    #[error("conflicting change: {0}")]
    Conflict(String),
    #[error("grant {0} not found")]
    NotFound(String),
    /// A page token (`next`) that this store did not hand out, or for another listing.
    #[error("invalid page token: {0}")]
    InvalidToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `activate`: the membership is in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The pending grant as recorded by `insert_pending` (the store writes the change without
    /// reading it back).
    pub grant: Grant,
    /// Recorded on the grant.
    pub preexisting: bool,
    /// `Some(v)`: set the lease's `preexisting` to `v` (what JumpCloud's answer proved about the
    /// membership); `None`: leave it (other holders already decided it).
    pub lease_preexisting: Option<bool>,
    pub schedule_name: Option<String>,
}

/// `end`: the grant is settled and leaves the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The grant as the caller read it under the lease lock. The write is conditioned on the
    /// stored status still being this one, so the store needs no read of its own.
    pub grant: Grant,
    /// `Expired`, `Revoked` or `Failed` (a failed grant stays failed).
    pub status: GrantStatus,
    pub ended_at: DateTime<Utc>,
    /// No other grant holds the lease: delete it (it held only this grant, or nothing).
    pub last_holder: bool,
    /// Recorded on the grant: what its end did to the membership.
    pub membership: Option<MembershipEnd>,
}

/// `fail_for_cleanup`: JumpCloud failed in a way that may have applied the add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The pending grant, as in [`Activation::grant`].
    pub grant: Grant,
    pub ended_at: DateTime<Utc>,
    /// As in [`Activation::lease_preexisting`].
    pub lease_preexisting: Option<bool>,
}

/// Grants, their membership leases, the audit trail and idempotency records.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Takes the lease's lock (creating the lease if there is none) and returns the lease as it
    /// now stands. Fails with `LeaseBusy` while another owner's lock is unexpired; the same owner
    /// may take it again. One conditional update (`ReturnValues: ALL_NEW`).
    async fn lock_lease(
        &self,
        key: &LeaseKey,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Lease, GrantStoreError>;

    /// Releases the lock if `owner` still holds it (otherwise does nothing); deletes the lease
    /// if it holds no grant.
    async fn unlock_lease(&self, hold: &LeaseHold) -> Result<(), GrantStoreError>;

    /// Records a pending grant: puts it (condition: no grant with this id), adds it to the lease's
    /// holders (condition: the lock is `hold`'s) and appends `audit`, atomically. From now on the
    /// grant is in the sweep's index, due at its `expires_at`.
    async fn insert_pending(
        &self,
        grant: &Grant,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError>;

    /// Records a request awaiting approval (`pending_approval`): puts it (condition: no grant
    /// with this id), due in the sweep's index at its `request_expires_at`, and appends `audit`,
    /// atomically. No lease: a request never touches the membership (invariant 8).
    async fn insert_request(&self, request: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError>;

    /// Replaces a request awaiting approval with `new` (an approval short of the required count,
    /// or its end: denied, cancelled, request_expired, out of the sweep's index), with `audit`,
    /// atomically. Condition: the stored request is still `pending_approval` at revision
    /// `new.revision - 1` (the one the caller read); `Conflict` otherwise. One write.
    async fn update_request(&self, new: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError>;

    /// The last required approval: the request (stored `pending_approval` at revision
    /// `grant.revision - 1`) becomes the pending grant `grant` (status `pending`, activation time
    /// and expiry set), joins the lease's holders (the lock is `hold`'s) and is due at its
    /// expiry, with `audit`, atomically; `activate` or `fail_for_cleanup` follow as for any
    /// grant. `Conflict` when the request changed meanwhile.
    async fn promote_request(
        &self,
        grant: &Grant,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError>;

    /// An active grant's extension (asked for, approved in part, applied or denied): sets
    /// `expires_at`, `revision`, `pending_extension` and `extensions` from `new`, due in the
    /// sweep's index at the new expiry, with `audit`, atomically. Condition: the stored grant is
    /// still active, in the sweep's index, at revision `new.revision - 1`. One write.
    async fn extend_grant(&self, new: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError>;

    /// Pending -> active, atomically with the lease (`preexisting` per the activation; lock
    /// released) and the audit records. Conditions: the grant is pending and a holder, the lock
    /// is `hold`'s. Returns the grant as now stored. One write, no read.
    async fn activate(
        &self,
        activation: &Activation,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError>;

    /// Pending -> failed, but the grant stays a holder and in the sweep's index, due at
    /// `ended_at`: the sweep removes the membership the failed add may have left. Lock released,
    /// audit appended, atomically. Conditions: the grant is pending, the lock is `hold`'s.
    async fn fail_for_cleanup(
        &self,
        failure: &Failure,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError>;

    /// Settles a grant, atomically: sets its status and `ended_at` (a failed grant keeps its
    /// status), removes it from the sweep's index and from the lease's holders, releases the lock
    /// (or deletes the lease when `last_holder`) and appends `audit`. Conditions: the stored
    /// status is still the one the caller read (pending or active, or failed and still in the
    /// index) at the revision read (an extension meanwhile makes a stale expiry fail); the lock
    /// is `hold`'s. One write, no read.
    async fn end(&self, ending: &Ending, hold: &LeaseHold, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError>;

    /// A revocation could not be carried out: releases the lock and appends `audit`; with a
    /// `request`, records it on the grant (unless one is recorded already) and makes the grant
    /// due now in the sweep's index, so that the sweep finishes the revocation.
    async fn revocation_failed(
        &self,
        grant_id: &str,
        request: Option<&RevocationRequest>,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError>;

    /// A strongly consistent read: the domain re-reads grants under the lease lock.
    async fn get(&self, id: &str) -> Result<Option<Grant>, GrantStoreError>;

    /// Grants in the sweep's index due at or before `now`, earliest first: a query of the index,
    /// never a scan. `next` continues after the last grant of the previous page (a key, not an
    /// offset: settling grants while paging skips none). May be eventually consistent: a grant
    /// settled a moment ago that still shows up is found settled under the lock.
    async fn due(&self, now: DateTime<Utc>, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError>;

    /// Newest first.
    async fn list(&self, filter: &GrantFilter, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError>;

    /// Sync found the membership of an active grant gone. Condition: the grant is active.
    async fn mark_membership_missing(&self, grant_id: &str, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError>;

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), GrantStoreError>;
    /// Oldest first.
    async fn audit_for(&self, grant_id: &str) -> Result<Vec<AuditRecord>, GrantStoreError>;
    /// The head of a grant's audit chain (`None`: no chained record was written for it).
    async fn chain_head(&self, grant_id: &str) -> Result<Option<ChainHead>, GrantStoreError>;
    /// Seals of the days `from..=to`, oldest first.
    async fn seals(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<DaySeal>, GrantStoreError>;
    /// The newest seal.
    async fn last_seal(&self) -> Result<Option<DaySeal>, GrantStoreError>;
    /// Stores a seal, once: `Conflict` if the day is sealed already.
    async fn put_seal(&self, seal: &DaySeal) -> Result<(), GrantStoreError>;
    /// Records with `from <= at < to`, oldest first.
    async fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        next: Option<&str>,
    ) -> Result<AuditPage, GrantStoreError>;

    /// Claims an idempotency key (one conditional put): `New` when there is no record, or only an
    /// expired one, or an in-progress one past `in_progress_until` (its request died).
    async fn begin_idempotent(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState, GrantStoreError>;
    async fn complete_idempotent(&self, key: &str, grant_id: &str) -> Result<(), GrantStoreError>;
    /// The request failed: a retry may run again.
    async fn abandon_idempotent(&self, key: &str) -> Result<(), GrantStoreError>;
}

/// What the synced directory knows about a membership, when it is known to predate a moment.
#[async_trait]
pub trait MembershipOracle: Send + Sync {
    /// `Some(held)` when the integration's last sync succeeded and finished at or before `before`
    /// (so its copy shows the membership as it was then); `None` when no such sync exists.
    async fn synced_membership(&self, key: &LeaseKey, before: DateTime<Utc>) -> Result<Option<bool>, GrantStoreError>;
}
