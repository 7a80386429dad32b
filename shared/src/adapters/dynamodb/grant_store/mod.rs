//! Grants, their membership leases, the audit trail and idempotency records in DynamoDB: the
//! adapter of [`GrantStore`] (the [`MembershipOracle`](crate::ports::MembershipOracle) over the
//! synced directory is in `membership_oracle`).
//!
//! Items (the one table of [`table`], keys in [`keys`](super::keys)):
//! - grant: `pk=GRANT#{id}`, `sk=GRANT`, the grant's own fields, `gsi1pk=GRANTS` and
//!   `gsi1sk={requested_at}#{id}` (`list`, newest first); while it is in the sweep's index also
//!   `gsi2pk=DUE` and `gsi2sk={due}#{id}` (`due` queries `gsi2`, never scans).
//! - lease: `pk=LEASE#{integration}`, `sk={group}#{user}`, `holders` (a string set, absent when
//!   empty), `preexisting`, `lock_owner`, `lock_until`.
//! - audit record: `pk=AUDIT#{grant}`, `sk={at}#{seq}#{id}`, `gsi1pk=AUDIT#{day}`, `gsi1sk=sk`;
//!   its chain's head `sk=~CHAIN`, and the daily seals `pk=AUDIT#~SEALS` (see `chain.rs`).
//! - idempotency record: `pk=IDEMPOTENCY#{key}`, `sk=IDEMPOTENCY`, `ttl` in epoch seconds (the
//!   only items with a TTL: grants and audit are kept).
//!
//! Times that a condition or a sort key compares are fixed-width text ([`keys::sortable_time`](super::keys::sortable_time)).
//! Every change is one conditional write or one `TransactWriteItems`. The operations that return
//! the grant, or must know its state to choose what to write, first read it (consistently) and
//! then condition the transaction on what they read, so that nothing in between goes unnoticed.
//! AWS's limits hold by construction: at most 100 writes and 4 MB per transaction, 400 KB per
//! item (free text of audit records is cut to fit), unprocessed batch reads retried.
//!
//! The port's operations live by topic: [`grants`] (a grant's changes), [`leases`], [`listing`]
//! (over [`paging`]), [`idempotency`]; items in [`items`], writes in [`transactions`].

mod chain;
mod grants;
mod idempotency;
mod items;
mod leases;
mod listing;
mod paging;
mod transactions;

pub(super) use transactions::{built, write_backoff, Expr, Write};

use super::{table, StoreError};
use crate::{
    domain::model::{
        AuditPage, AuditRecord, ChainHead, DaySeal, Grant, GrantFilter, GrantPage, IdempotencyClaim, IdempotencyState,
        Lease, LeaseHold, LeaseKey, RevocationRequest,
    },
    ports::{Activation, Ending, Failure, GrantStore, GrantStoreError},
};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, Utc};

pub(super) use super::item::{from_item, key, text, Item};

/// AWS's limits: writes and bytes per transaction, bytes per item.
pub const TRANSACTION_ITEMS: usize = 100;
const TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
const ITEM_BYTES: usize = 400 * 1024;
/// An audit record's free text (`reason`, `detail`) is cut to this many bytes: any record then fits
/// an item, and a full transaction stays far below 4 MB.
pub const AUDIT_TEXT_BYTES: usize = 16 * 1024;
/// Items a filtered `list` reads per call at most; then it returns a short page and a token.
const LIST_EVALUATED_MAX: usize = 5_000;
/// Day partitions `audit_between` queries per call at most; then it returns a short page and a token.
const AUDIT_DAYS_MAX: usize = 92;

// Attribute names (beyond the grant's and the audit record's own fields).
const PK: &str = table::PARTITION_KEY;
const SK: &str = table::SORT_KEY;
const GSI1PK: &str = table::GSI1.partition_key;
const GSI1SK: &str = table::GSI1.sort_key;
const GSI2PK: &str = table::GSI2.partition_key;
const GSI2SK: &str = table::GSI2.sort_key;
const KIND: &str = "kind";
const STATUS: &str = "status";
const HOLDERS: &str = "holders";
const PREEXISTING: &str = "preexisting";
const LOCK_OWNER: &str = "lock_owner";
const LOCK_UNTIL: &str = "lock_until";

/// The grant store in DynamoDB. Cheap to clone.
#[derive(Clone)]
pub struct DynamoGrantStore {
    client: Client,
    table: String,
}

impl DynamoGrantStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

pub(super) fn aws<E: std::error::Error + 'static>(e: E) -> GrantStoreError {
    GrantStoreError::Store(StoreError::aws(e))
}

#[async_trait]
impl GrantStore for DynamoGrantStore {
    async fn lock_lease(
        &self,
        key: &LeaseKey,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Lease, GrantStoreError> {
        leases::lock(self, key, owner, now, ttl).await
    }

    async fn unlock_lease(&self, hold: &LeaseHold) -> Result<(), GrantStoreError> {
        leases::unlock(self, hold).await
    }

    async fn insert_pending(
        &self,
        grant: &Grant,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        grants::insert_pending(self, grant, hold, audit).await
    }

    async fn insert_request(&self, request: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError> {
        grants::insert_request(self, request, audit).await
    }

    async fn update_request(&self, new: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError> {
        grants::update_request(self, new, audit).await
    }

    async fn promote_request(
        &self,
        grant: &Grant,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        grants::promote_request(self, grant, hold, audit).await
    }

    async fn extend_grant(&self, new: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError> {
        grants::extend_grant(self, new, audit).await
    }

    async fn activate(
        &self,
        activation: &Activation,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError> {
        grants::activate(self, activation, hold, audit).await
    }

    async fn fail_for_cleanup(
        &self,
        failure: &Failure,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError> {
        grants::fail_for_cleanup(self, failure, hold, audit).await
    }

    async fn end(&self, ending: &Ending, hold: &LeaseHold, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError> {
        grants::end(self, ending, hold, audit).await
    }

    async fn revocation_failed(
        &self,
        grant_id: &str,
        request: Option<&RevocationRequest>,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        grants::revocation_failed(self, grant_id, request, hold, audit).await
    }

    async fn get(&self, id: &str) -> Result<Option<Grant>, GrantStoreError> {
        Ok(self.load(id).await?.map(|(grant, _)| grant))
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError> {
        listing::due(self, now, limit, next).await
    }

    async fn list(&self, filter: &GrantFilter, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError> {
        listing::list(self, filter, limit, next).await
    }

    async fn mark_membership_missing(&self, grant_id: &str, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError> {
        grants::mark_membership_missing(self, grant_id, audit).await
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), GrantStoreError> {
        grants::append_audit(self, records).await
    }

    async fn audit_for(&self, grant_id: &str) -> Result<Vec<AuditRecord>, GrantStoreError> {
        listing::audit_for(self, grant_id).await
    }

    async fn chain_head(&self, grant_id: &str) -> Result<Option<ChainHead>, GrantStoreError> {
        DynamoGrantStore::chain_head(self, grant_id).await
    }

    async fn seals(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<DaySeal>, GrantStoreError> {
        DynamoGrantStore::seals(self, from, to).await
    }

    async fn last_seal(&self) -> Result<Option<DaySeal>, GrantStoreError> {
        DynamoGrantStore::last_seal(self).await
    }

    async fn put_seal(&self, seal: &DaySeal) -> Result<(), GrantStoreError> {
        DynamoGrantStore::put_seal(self, seal).await
    }

    async fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        next: Option<&str>,
    ) -> Result<AuditPage, GrantStoreError> {
        listing::audit_between(self, from, to, limit, next).await
    }

    async fn begin_idempotent(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState, GrantStoreError> {
        idempotency::begin(self, claim).await
    }

    async fn complete_idempotent(&self, key: &str, grant_id: &str) -> Result<(), GrantStoreError> {
        idempotency::complete(self, key, grant_id).await
    }

    async fn abandon_idempotent(&self, key: &str) -> Result<(), GrantStoreError> {
        idempotency::abandon(self, key).await
    }
}
