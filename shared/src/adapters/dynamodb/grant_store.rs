//! Grants, their membership leases, the audit trail and idempotency records in DynamoDB: the
//! adapter of [`GrantStore`], and of [`MembershipOracle`] over the synced directory.
//!
//! Items (the one table of [`table`], keys in [`keys`]):
//! - grant: `pk=GRANT#{id}`, `sk=GRANT`, the grant's own fields, `gsi1pk=GRANTS` and
//!   `gsi1sk={granted_at}#{id}` (`list`, newest first); while it is in the sweep's index also
//!   `gsi2pk=DUE` and `gsi2sk={due}#{id}` (`due` queries `gsi2`, never scans).
//! - lease: `pk=LEASE#{integration}`, `sk={group}#{user}`, `holders` (a string set, absent when
//!   empty), `preexisting`, `lock_owner`, `lock_until`.
//! - audit record: `pk=AUDIT#{grant}`, `sk={at}#{seq}#{id}`, `gsi1pk=AUDIT#{day}`, `gsi1sk=sk`.
//! - idempotency record: `pk=IDEMPOTENCY#{key}`, `sk=IDEMPOTENCY`, `ttl` in epoch seconds (the
//!   only items with a TTL: grants and audit are kept).
//!
//! Times that a condition or a sort key compares are fixed-width text ([`keys::sortable_time`]).
//! Every change is one conditional write or one `TransactWriteItems`. The operations that return
//! the grant, or must know its state to choose what to write, first read it (consistently) and
//! then condition the transaction on what they read, so that nothing in between goes unnoticed.
//! AWS's limits hold by construction: at most 100 writes and 4 MB per transaction, 400 KB per
//! item (free text of audit records is cut to fit), unprocessed batch reads retried.

use super::{
    keys,
    table::{self, Index},
    StoreError,
};
use crate::{
    domain::model::{
        AuditPage, AuditRecord, Grant, GrantFilter, GrantPage, GrantStatus, IdempotencyClaim, IdempotencyState, Lease,
        LeaseHold, LeaseKey, LeaseLock, RevocationRequest,
    },
    ports::{Activation, Ending, Failure, GrantStore, GrantStoreError, MembershipOracle, SyncState},
};
use async_trait::async_trait;
use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    operation::{
        delete_item::DeleteItemError, put_item::PutItemError, query::builders::QueryFluentBuilder,
        transact_write_items::TransactWriteItemsError, update_item::builders::UpdateItemFluentBuilder,
        update_item::UpdateItemError,
    },
    types::{
        AttributeValue, Delete, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
        TransactWriteItem, Update,
    },
    Client,
};
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

type Item = HashMap<String, AttributeValue>;
type Names = Option<HashMap<String, String>>;
type Values = Option<Item>;

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

// ---------------------------------------------------------------------------------------------
// Mapping

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn grant_key(id: &str) -> Item {
    key(keys::grant(id), keys::GRANT_SORT)
}

fn lease_key(lease: &LeaseKey) -> Item {
    key(keys::lease(&lease.integration), &keys::lease_sort(&lease.group_id, &lease.user_id))
}

fn idempotency_key(key_text: &str) -> Item {
    key(keys::idempotency(key_text), keys::IDEMPOTENCY_SORT)
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Mapping(e.to_string()))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Mapping(e.to_string()))
}

fn to_value<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Mapping(e.to_string()))
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Mapping(format!("time {text:?}: {e}")))
}

fn aws<E: std::error::Error + 'static>(e: E) -> GrantStoreError {
    GrantStoreError::Store(StoreError::aws(e))
}

fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Mapping(format!("request not built: {e}")))
}

/// An item's size as DynamoDB counts it (names plus values), rounded up where unsure.
fn item_bytes(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_bytes(value)).sum()
}

fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len() / 2 + 2,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len() / 2 + 2).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_bytes(x)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value_bytes(x)).sum::<usize>(),
        _ => 64,
    }
}

fn check_item(item: &Item) -> Result<(), StoreError> {
    let bytes = item_bytes(item);
    if bytes > ITEM_BYTES {
        return Err(StoreError::Mapping(format!("an item of {bytes} bytes exceeds DynamoDB's 400 KB")));
    }
    Ok(())
}

/// Cuts free text to [`AUDIT_TEXT_BYTES`] (at a character boundary), saying so.
fn cut(text: &mut String) {
    if text.len() > AUDIT_TEXT_BYTES {
        let mut end = AUDIT_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [truncated]");
    }
}

static LAST_SEQ: AtomicU64 = AtomicU64::new(0);

/// The order of writing, which breaks ties between audit records of one instant: the wall clock in
/// nanoseconds, strictly increasing within the process (records of one grant are written under
/// its lease's lock, one writer after the other).
fn next_seq() -> u64 {
    let now =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let previous = LAST_SEQ.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(now.max(last + 1)));
    let last = previous.unwrap_or_else(|last| last);
    now.max(last + 1)
}

fn grant_item(grant: &Grant, due: Option<DateTime<Utc>>) -> Result<Item, StoreError> {
    let mut item = to_item(grant)?;
    item.extend([
        (PK.to_owned(), s(keys::grant(&grant.id))),
        (SK.to_owned(), s(keys::GRANT_SORT)),
        (KIND.to_owned(), s("grant")),
        (GSI1PK.to_owned(), s(keys::GRANTS)),
        (GSI1SK.to_owned(), s(keys::grant_by_time(grant.granted_at, &grant.id))),
    ]);
    if let Some(due) = due {
        item.insert(GSI2PK.to_owned(), s(keys::DUE));
        item.insert(GSI2SK.to_owned(), s(keys::due_sort(due, &grant.id)));
    }
    check_item(&item)?;
    Ok(item)
}

fn audit_item(record: &AuditRecord) -> Result<Item, StoreError> {
    let mut record = record.clone();
    for text in [&mut record.reason, &mut record.detail].into_iter().flatten() {
        cut(text);
    }
    let sort = keys::audit_sort(record.at, next_seq(), &record.id);
    let mut item = to_item(&record)?;
    item.extend([
        (PK.to_owned(), s(keys::audit(&record.grant_id))),
        (SK.to_owned(), s(sort.clone())),
        (KIND.to_owned(), s("audit")),
        (GSI1PK.to_owned(), s(keys::audit_day(record.at.date_naive()))),
        (GSI1SK.to_owned(), s(sort)),
    ]);
    check_item(&item)?;
    Ok(item)
}

fn lease_from(item: &Item) -> Result<Lease, StoreError> {
    let holders = match item.get(HOLDERS) {
        Some(AttributeValue::Ss(ids)) => ids.iter().cloned().collect(),
        Some(other) => return Err(StoreError::Mapping(format!("lease holders are not a string set: {other:?}"))),
        None => Default::default(),
    };
    let preexisting = item.get(PREEXISTING).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
    let lock = match (text(item, LOCK_OWNER), text(item, LOCK_UNTIL)) {
        (Some(owner), Some(until)) => Some(LeaseLock { owner: owner.to_owned(), until: parse_time(until)? }),
        _ => None,
    };
    Ok(Lease { holders, preexisting, lock })
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Names and values of one request's expressions.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// `#name` placeholders for attributes of the same name.
    fn names(mut self, attributes: &[&str]) -> Self {
        self.names.extend(attributes.iter().map(|a| (format!("#{a}"), (*a).to_owned())));
        self
    }
    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }
    fn parts(self) -> (Names, Values) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
    fn bytes(&self) -> usize {
        self.values.values().map(value_bytes).sum()
    }
}

/// One write of a transaction.
struct Write {
    item: TransactWriteItem,
    /// What failed when this write's condition fails (the `Conflict` reported).
    refused: String,
    bytes: usize,
}

impl Write {
    fn put(table: &str, item: Item, condition: Option<(&str, Expr)>, refused: String) -> Result<Self, StoreError> {
        let bytes = item_bytes(&item);
        let mut put = Put::builder().table_name(table).set_item(Some(item));
        if let Some((condition, expr)) = condition {
            let (names, values) = expr.parts();
            put = put
                .condition_expression(condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values);
        }
        Ok(Self { item: TransactWriteItem::builder().put(built(put.build())?).build(), refused, bytes })
    }

    fn update(
        table: &str,
        key: Item,
        update: &str,
        condition: &str,
        expr: Expr,
        refused: String,
    ) -> Result<Self, StoreError> {
        let bytes = item_bytes(&key) + expr.bytes() + update.len();
        let (names, values) = expr.parts();
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values);
        Ok(Self { item: TransactWriteItem::builder().update(built(update.build())?).build(), refused, bytes })
    }

    fn delete(table: &str, key: Item, condition: &str, expr: Expr, refused: String) -> Result<Self, StoreError> {
        let bytes = item_bytes(&key) + expr.bytes();
        let (names, values) = expr.parts();
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values);
        Ok(Self { item: TransactWriteItem::builder().delete(built(delete.build())?).build(), refused, bytes })
    }
}

/// How a transaction changes a lease (see [`DynamoGrantStore::lease_write`]).
enum LeaseChange<'a> {
    Update(&'a str),
    Delete,
}

/// Retries of writes that DynamoDB refused only because another write was in flight on one of
/// their items (`TransactionConflict`) or because of throttling that outlasted the SDK's retries.
fn write_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(6)
        .with_jitter()
}

fn transaction_conflict<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("TransactionConflictException")
}

/// Sends a single-item write, again while DynamoDB refuses it only because a transaction is in
/// flight on the item (a refused condition is an answer: it is not retried).
async fn retry_conflicts<T, E, R, F, Fut>(send: F) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    send.retry(write_backoff()).when(transaction_conflict).await
}

/// A transaction cancelled for a transient reason only (no condition failed).
fn transient_cancellation<R>(e: &SdkError<TransactWriteItemsError, R>) -> bool {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
            let codes: Vec<&str> = c.cancellation_reasons().iter().filter_map(|r| r.code()).collect();
            !codes.contains(&"ConditionalCheckFailed")
                && codes
                    .iter()
                    .any(|c| matches!(*c, "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"))
        }
        _ => false,
    }
}

impl DynamoGrantStore {
    /// One atomic transaction; a failed condition is a `Conflict` naming what was refused.
    async fn transact(&self, writes: Vec<Write>) -> Result<(), GrantStoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        if writes.len() > TRANSACTION_ITEMS {
            return Err(StoreError::Mapping(format!(
                "{} writes exceed DynamoDB's {TRANSACTION_ITEMS} per transaction",
                writes.len()
            ))
            .into());
        }
        let bytes: usize = writes.iter().map(|w| w.bytes).sum();
        if bytes > TRANSACTION_BYTES {
            return Err(StoreError::Mapping(format!("a transaction of {bytes} bytes exceeds DynamoDB's 4 MB")).into());
        }
        let (items, refused): (Vec<TransactWriteItem>, Vec<String>) =
            writes.into_iter().map(|w| (w.item, w.refused)).unzip();
        let sent =
            (|| async { self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await })
                .retry(write_backoff())
                .when(transient_cancellation)
                .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() {
                    let failed =
                        c.cancellation_reasons().iter().position(|r| r.code() == Some("ConditionalCheckFailed"));
                    if let Some(i) = failed {
                        let what = refused.get(i).cloned().unwrap_or_else(|| "a condition failed".to_owned());
                        return Err(GrantStoreError::Conflict(what));
                    }
                }
                Err(aws(e))
            }
        }
    }

    /// `writes` and the puts of the audit records, in one transaction: a change and its audit
    /// trail are stored together or not at all ([`Self::transact`] refuses more than 100 writes).
    async fn transact_with_audit(&self, mut writes: Vec<Write>, audit: &[AuditRecord]) -> Result<(), GrantStoreError> {
        writes.extend(self.audit_writes(audit)?);
        self.transact(writes).await
    }

    fn audit_writes(&self, audit: &[AuditRecord]) -> Result<Vec<Write>, StoreError> {
        audit
            .iter()
            .map(|record| Write::put(&self.table, audit_item(record)?, None, "audit record".to_owned()))
            .collect()
    }

    /// An update of a grant that the caller read as pending: refused unless it still is.
    fn update_pending_grant(&self, id: &str, update: &str, expr: Expr) -> Result<Write, StoreError> {
        Write::update(
            &self.table,
            grant_key(id),
            update,
            "#status = :pending",
            expr.names(&[STATUS]).value(":pending", s(GrantStatus::Pending.as_str())),
            format!("grant {id} is not pending"),
        )
    }

    /// A write of `hold`'s lease. Every one is conditioned on the lock still being `hold`'s (and
    /// on `also`, with what its failure means): a caller whose lock lapsed and passed to another
    /// owner can never change the lease.
    fn lease_write(
        &self,
        hold: &LeaseHold,
        change: LeaseChange,
        expr: Expr,
        also: Option<(&str, String)>,
    ) -> Result<Write, StoreError> {
        let mut condition = "#lock_owner = :owner".to_owned();
        let mut refused = format!("the lease lock is not held by {}", hold.owner);
        if let Some((also, why)) = also {
            condition = format!("{condition} AND {also}");
            refused = format!("{refused}, or {why}");
        }
        let expr = expr.names(&[LOCK_OWNER]).value(":owner", s(&hold.owner));
        match change {
            LeaseChange::Update(update) => {
                Write::update(&self.table, lease_key(&hold.key), update, &condition, expr, refused)
            }
            LeaseChange::Delete => Write::delete(&self.table, lease_key(&hold.key), &condition, expr, refused),
        }
    }

    /// The lease write of `activate` and `fail_for_cleanup`: the grant must hold the lease and
    /// the lock be `hold`'s; sets `preexisting` when decided; releases the lock.
    fn release_for(&self, hold: &LeaseHold, grant_id: &str, preexisting: Option<bool>) -> Result<Write, StoreError> {
        let mut expr = Expr::default().names(&[LOCK_UNTIL, HOLDERS]).value(":id", s(grant_id));
        let update = match preexisting {
            Some(preexisting) => {
                expr = expr.names(&[PREEXISTING]).value(":preexisting", AttributeValue::Bool(preexisting));
                "SET #preexisting = :preexisting REMOVE #lock_owner, #lock_until"
            }
            None => "REMOVE #lock_owner, #lock_until",
        };
        let also = ("contains(#holders, :id)", format!("grant {grant_id} does not hold its lease"));
        self.lease_write(hold, LeaseChange::Update(update), expr, Some(also))
    }

    /// Releases `hold`'s lock (condition: it is still `hold`'s).
    fn release(&self, hold: &LeaseHold) -> Result<Write, StoreError> {
        let update = LeaseChange::Update("REMOVE #lock_owner, #lock_until");
        self.lease_write(hold, update, Expr::default().names(&[LOCK_UNTIL]), None)
    }

    /// Reads a raw item consistently.
    async fn raw(&self, key: Item) -> Result<Option<Item>, GrantStoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws)?;
        Ok(output.item)
    }

    /// A single-item `UpdateItem`, outside a transaction (as [`Write::update`] within one).
    fn update_item(&self, key: Item, update: &str, condition: &str, expr: Expr) -> UpdateItemFluentBuilder {
        let (names, values) = expr.parts();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
    }

    /// The grant as stored (consistent read) and whether it is in the sweep's index.
    async fn load(&self, id: &str) -> Result<Option<(Grant, bool)>, GrantStoreError> {
        let Some(item) = self.raw(grant_key(id)).await? else { return Ok(None) };
        let indexed = item.contains_key(GSI2PK);
        Ok(Some((from_item(item)?, indexed)))
    }

    /// A grant that an operation under `hold` writes must be of its lease (a programming error
    /// otherwise: the caller passes the grant it locked the lease for).
    fn check_held(grant: &Grant, hold: &LeaseHold) -> Result<(), GrantStoreError> {
        if grant.lease_key() != hold.key {
            return Err(GrantStoreError::Conflict(format!("grant {} belongs to another lease", grant.id)));
        }
        Ok(())
    }

    /// The grant as stored, for an operation under `hold` (a failed revocation).
    async fn load_held(&self, id: &str, hold: &LeaseHold) -> Result<(Grant, bool), GrantStoreError> {
        let (grant, indexed) = self.load(id).await?.ok_or_else(|| GrantStoreError::NotFound(id.to_owned()))?;
        Self::check_held(&grant, hold)?;
        Ok((grant, indexed))
    }

    /// As [`Self::check_held`], and the grant must be pending (`activate`, `fail_for_cleanup`).
    fn check_pending(grant: &Grant, hold: &LeaseHold) -> Result<(), GrantStoreError> {
        Self::check_held(grant, hold)?;
        if grant.status != GrantStatus::Pending {
            return Err(GrantStoreError::Conflict(format!("grant {} is not pending", grant.id)));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Page tokens: base64url (no padding) of a small JSON document naming what they continue and
// the key to continue after. Tokens are validated: a bad one is an error, never a panic.

/// An item's key attributes, as a token keeps them.
type PageKey = BTreeMap<String, String>;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Cursor {
    /// What the token continues: `due`, `list`, `open` or `audit`.
    k: String,
    /// `audit`: the day partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    day: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    key: PageKey,
}

impl Cursor {
    fn new(kind: &str, key: PageKey) -> Self {
        Self { k: kind.to_owned(), day: None, key }
    }

    /// `audit_between` continues in `day`'s partition: after `key`, or at its start (no key).
    fn audit(day: NaiveDate, key: PageKey) -> Self {
        Self { day: Some(day.to_string()), ..Self::new("audit", key) }
    }

    fn token(&self) -> String {
        base64url(&serde_json::to_vec(self).expect("a cursor serializes"))
    }

    /// Where the query continues (`ExclusiveStartKey`).
    fn start_key(&self) -> Item {
        self.key.iter().map(|(k, v)| (k.clone(), s(v))).collect()
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Longer tokens are refused unread (keys are a few hundred bytes at most).
const TOKEN_MAX_CHARS: usize = 8 * 1024;

fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn from_base64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() < 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let digit = BASE64URL.iter().position(|a| a == c)?;
            n |= u32::try_from(digit).ok()? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push(((n >> (16 - 8 * i)) & 0xff) as u8);
        }
    }
    Some(out)
}

fn invalid_token(why: impl std::fmt::Display) -> GrantStoreError {
    GrantStoreError::InvalidToken(why.to_string())
}

/// Decodes a token of `kind` whose key has exactly the attributes `names`.
fn decode_cursor(token: &str, kind: &str, names: &[&str]) -> Result<Cursor, GrantStoreError> {
    let cursor = decode_any_cursor(token, kind)?;
    if !has_key(&cursor, names) {
        return Err(invalid_token("unexpected key attributes"));
    }
    Ok(cursor)
}

/// Decodes a `due` or `list` token: a key of `index` (see [`page_key`]) of a grant in the
/// index's partition `partition` (the one queried).
fn decode_grant_cursor(token: &str, kind: &str, index: Index, partition: &str) -> Result<Cursor, GrantStoreError> {
    let cursor = decode_cursor(token, kind, &page_key(index))?;
    if cursor.key[index.partition_key] != partition || !cursor.key[PK].starts_with("GRANT#") {
        return Err(invalid_token(format!("not a grant of the {kind:?} listing")));
    }
    Ok(cursor)
}

fn decode_any_cursor(token: &str, kind: &str) -> Result<Cursor, GrantStoreError> {
    if token.len() > TOKEN_MAX_CHARS {
        return Err(invalid_token("too long"));
    }
    let bytes = from_base64url(token).ok_or_else(|| invalid_token("not base64url"))?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(invalid_token)?;
    if cursor.k != kind {
        return Err(invalid_token(format!("it continues a {:?} listing, not a {kind:?} one", cursor.k)));
    }
    Ok(cursor)
}

fn has_key(cursor: &Cursor, names: &[&str]) -> bool {
    cursor.key.len() == names.len() && names.iter().all(|n| cursor.key.contains_key(*n))
}

fn key_of(item: &Item, names: &[&str]) -> Result<PageKey, StoreError> {
    names
        .iter()
        .map(|n| {
            text(item, n)
                .map(|v| ((*n).to_owned(), v.to_owned()))
                .ok_or_else(|| StoreError::Mapping(format!("item without {n}")))
        })
        .collect()
}

/// The key of an item in `index`, as DynamoDB returns it (`LastEvaluatedKey`): the table's key
/// and the index's.
const fn page_key(index: Index) -> [&'static str; 4] {
    [PK, SK, index.partition_key, index.sort_key]
}
/// The key of `list` and `audit` pages.
const GSI1_KEY: [&str; 4] = page_key(table::GSI1);
/// `open` listings continue after a grant's `{granted_at}#{id}`.
const OPEN_KEY: [&str; 1] = ["after"];

fn query_limit(n: usize) -> i32 {
    i32::try_from(n.clamp(1, 1000)).unwrap_or(1000)
}

// ---------------------------------------------------------------------------------------------
// Queries

/// One `Query` of the table or of an index.
#[derive(Default)]
struct Query {
    index: Option<Index>,
    key_condition: &'static str,
    /// Applied by DynamoDB after reading: a filtered query may read many items to return a few.
    filter: Option<String>,
    names: Names,
    values: Values,
    newest_first: bool,
    consistent: bool,
    /// Items one call may read before it returns a short page (`None`: no bound).
    read_max: Option<usize>,
}

impl Query {
    fn new(index: Option<Index>, key_condition: &'static str, expr: Expr) -> Self {
        let (names, values) = expr.parts();
        Self { index, key_condition, names, values, ..Self::default() }
    }

    /// The attributes of an item's key in this query: what `LastEvaluatedKey` and a token hold.
    fn key_names(&self) -> Vec<&'static str> {
        match self.index {
            Some(index) => page_key(index).to_vec(),
            None => vec![PK, SK],
        }
    }
}

/// Where a page read by [`DynamoGrantStore::read_page`] ends.
enum PageEnd {
    /// The query has no more items.
    Exhausted,
    /// More follow: continue after this key, or (`None`: the page was full before the first item
    /// of this query) at the query's start.
    More(Option<PageKey>),
}

impl DynamoGrantStore {
    fn request(&self, query: &Query) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .set_index_name(query.index.map(|i| i.name.to_owned()))
            .key_condition_expression(query.key_condition)
            .set_filter_expression(query.filter.clone())
            .set_expression_attribute_names(query.names.clone())
            .set_expression_attribute_values(query.values.clone())
            .scan_index_forward(!query.newest_first)
            .consistent_read(query.consistent)
    }

    /// Every item of `query`.
    async fn query_all<T: DeserializeOwned>(&self, query: &Query) -> Result<Vec<T>, GrantStoreError> {
        let mut pages = self.request(query).into_paginator().send();
        let mut all = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(aws)?.items.unwrap_or_default() {
                all.push(from_item(item)?);
            }
        }
        Ok(all)
    }

    /// Reads `query` from `start` into `found` until `found` holds `limit` items
    /// (`limit >= 1`) and one more is known to follow, or the query is exhausted, or it has read
    /// `query.read_max` items. `found` may hold items of earlier queries of the same page.
    async fn read_page<T: DeserializeOwned>(
        &self,
        query: &Query,
        mut start: Option<Item>,
        limit: usize,
        found: &mut Vec<T>,
    ) -> Result<PageEnd, GrantStoreError> {
        let names = query.key_names();
        let mut last_kept = None;
        let mut read = 0usize;
        loop {
            // One item more than the page holds tells whether there is a next page; a filtered
            // query returns fewer items than it reads, so it asks for at least 100.
            let wanted = limit + 1 - found.len();
            let asked = if query.filter.is_some() { wanted.max(100) } else { wanted };
            let output = self
                .request(query)
                .limit(query_limit(asked))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            read += usize::try_from(output.scanned_count).unwrap_or(0);
            for item in output.items.unwrap_or_default() {
                if found.len() == limit {
                    return Ok(PageEnd::More(last_kept));
                }
                last_kept = Some(key_of(&item, &names)?);
                found.push(from_item(item)?);
            }
            match output.last_evaluated_key {
                None => return Ok(PageEnd::Exhausted),
                // Read enough for one call: a short page, continued where the reading stopped.
                Some(last) if query.read_max.is_some_and(|max| read >= max) => {
                    return Ok(PageEnd::More(Some(key_of(&last, &names)?)));
                }
                Some(last) => start = Some(last),
            }
        }
    }

    /// A page of the grants of `query` from `start`, with a `kind` token for the next one.
    async fn grant_page(
        &self,
        query: &Query,
        kind: &str,
        start: Option<Item>,
        limit: usize,
    ) -> Result<GrantPage, GrantStoreError> {
        let mut grants = Vec::new();
        let next = match self.read_page(query, start, limit, &mut grants).await? {
            PageEnd::Exhausted => None,
            PageEnd::More(after) => Some(Cursor::new(kind, after.unwrap_or_default()).token()),
        };
        Ok(GrantPage { grants, next })
    }

    /// `list` of pending or active grants: every grant in the sweep's index is open (or a failed
    /// one awaiting clean-up), far fewer than all grants; read them all and page in memory.
    async fn list_open(
        &self,
        filter: &GrantFilter,
        limit: usize,
        next: Option<&str>,
    ) -> Result<GrantPage, GrantStoreError> {
        let after = next.map(|t| decode_cursor(t, "open", &OPEN_KEY)).transpose()?.map(|c| c.key["after"].clone());
        let indexed = Query::new(
            Some(table::GSI2),
            "#gsi2pk = :due",
            Expr::default().names(&[GSI2PK]).value(":due", s(keys::DUE)),
        );
        let mut open: Vec<(String, Grant)> = Vec::new();
        for grant in self.query_all::<Grant>(&indexed).await? {
            let position = keys::grant_by_time(grant.granted_at, &grant.id);
            if filter.matches(&grant) && after.as_ref().is_none_or(|a| position < *a) {
                open.push((position, grant));
            }
        }
        open.sort_by(|a, b| b.0.cmp(&a.0));
        let more = open.len() > limit;
        open.truncate(limit);
        let next = if more {
            let after = open.last().map(|(p, _)| p.clone()).unwrap_or_default();
            Some(Cursor::new("open", BTreeMap::from([("after".into(), after)])).token())
        } else {
            None
        };
        Ok(GrantPage { grants: open.into_iter().map(|(_, g)| g).collect(), next })
    }

    /// `list` of every other filter: `gsi1` newest first, filtered by DynamoDB.
    async fn list_all(
        &self,
        filter: &GrantFilter,
        limit: usize,
        next: Option<&str>,
    ) -> Result<GrantPage, GrantStoreError> {
        let start = match next {
            Some(token) => Some(decode_grant_cursor(token, "list", table::GSI1, keys::GRANTS)?.start_key()),
            None => None,
        };
        let mut conditions = Vec::new();
        let mut expr = Expr::default().names(&[GSI1PK]).value(":grants", s(keys::GRANTS));
        if let Some(status) = filter.status {
            conditions.push("#status = :status");
            expr = expr.names(&[STATUS]).value(":status", s(status.as_str()));
        }
        if let Some(user) = &filter.user_id {
            conditions.push("#user.#id = :user");
            expr = expr.names(&["user", "id"]).value(":user", s(user));
        }
        if let Some(group) = &filter.group_id {
            conditions.push("#group.#id = :group");
            expr = expr.names(&["group", "id"]).value(":group", s(group));
        }
        if let Some(integration) = &filter.integration {
            conditions.push("#integration = :integration");
            expr = expr.names(&["integration"]).value(":integration", s(integration));
        }
        let query = Query {
            filter: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
            newest_first: true,
            read_max: Some(LIST_EVALUATED_MAX),
            ..Query::new(Some(table::GSI1), "#gsi1pk = :grants", expr)
        };
        self.grant_page(&query, "list", start, limit).await
    }
}

// ---------------------------------------------------------------------------------------------
// The port

#[derive(Deserialize)]
struct IdempotencySeen {
    status: String,
    request_hash: String,
    #[serde(default)]
    grant_id: Option<String>,
}

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";

#[async_trait]
impl GrantStore for DynamoGrantStore {
    async fn lock_lease(
        &self,
        key: &LeaseKey,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Lease, GrantStoreError> {
        let until = now + ttl;
        let request = self
            .update_item(
                lease_key(key),
                "SET #kind = :kind, #integration = :integration, #group_id = :group, #user_id = :user, \
                 #lock_owner = :owner, #lock_until = :until, #preexisting = if_not_exists(#preexisting, :false)",
                "attribute_not_exists(#lock_owner) OR #lock_owner = :owner OR #lock_until <= :now",
                Expr::default()
                    .names(&[KIND, "integration", "group_id", "user_id", LOCK_OWNER, LOCK_UNTIL, PREEXISTING])
                    .value(":kind", s("lease"))
                    .value(":integration", s(&key.integration))
                    .value(":group", s(&key.group_id))
                    .value(":user", s(&key.user_id))
                    .value(":owner", s(owner))
                    .value(":until", s(keys::sortable_time(until)))
                    .value(":now", s(keys::sortable_time(now)))
                    .value(":false", AttributeValue::Bool(false)),
            )
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let sent = retry_conflicts(|| request.clone().send()).await;
        match sent {
            Ok(output) => Ok(lease_from(&output.attributes.unwrap_or_default())?),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let held = failed.item().and_then(|item| text(item, LOCK_UNTIL)).map(parse_time).transpose()?;
                    // DynamoDB returns the item; without it, the lock lasts no longer than a TTL.
                    Err(GrantStoreError::LeaseBusy { until: held.unwrap_or(until) })
                }
                _ => Err(aws(e)),
            },
        }
    }

    async fn unlock_lease(&self, hold: &LeaseHold) -> Result<(), GrantStoreError> {
        let request = self
            .update_item(
                lease_key(&hold.key),
                "REMOVE #lock_owner, #lock_until",
                "#lock_owner = :owner",
                Expr::default().names(&[LOCK_OWNER, LOCK_UNTIL]).value(":owner", s(&hold.owner)),
            )
            .return_values(ReturnValue::AllNew);
        let sent = retry_conflicts(|| request.clone().send()).await;
        let lease = match sent {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(e) => {
                return match e.as_service_error() {
                    // Not (or no longer) ours: nothing to release.
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(()),
                    _ => Err(aws(e)),
                };
            }
        };
        if lease.contains_key(HOLDERS) {
            return Ok(());
        }
        // Holds no grant: delete it, unless someone locked or joined it meanwhile.
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(&hold.key)))
            .condition_expression("attribute_not_exists(#holders) AND attribute_not_exists(#lock_owner)")
            .expression_attribute_names("#holders", HOLDERS)
            .expression_attribute_names("#lock_owner", LOCK_OWNER)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(_))
                | Some(DeleteItemError::TransactionConflictException(_)) => Ok(()),
                _ => Err(aws(e)),
            },
        }
    }

    async fn insert_pending(
        &self,
        grant: &Grant,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        if grant.lease_key() != hold.key || grant.status != GrantStatus::Pending {
            return Err(GrantStoreError::Conflict("not a pending grant of this lease".into()));
        }
        let put = Write::put(
            &self.table,
            grant_item(grant, Some(grant.expires_at))?,
            Some(("attribute_not_exists(#pk)", Expr::default().names(&[PK]))),
            format!("grant {} exists", grant.id),
        )?;
        // The lock is kept: `activate` or `fail_for_cleanup` follows under it.
        let join = self.lease_write(
            hold,
            LeaseChange::Update("ADD #holders :ids"),
            Expr::default().names(&[HOLDERS]).value(":ids", AttributeValue::Ss(vec![grant.id.clone()])),
            None,
        )?;
        self.transact_with_audit(vec![put, join], audit).await
    }

    async fn activate(
        &self,
        activation: &Activation,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError> {
        let id = &activation.grant.id;
        Self::check_pending(&activation.grant, hold)?;
        let mut grant = activation.grant.clone();
        let mut expr = Expr::default()
            .names(&["preexisting_membership", "schedule_name"])
            .value(":active", s(GrantStatus::Active.as_str()))
            .value(":preexisting", AttributeValue::Bool(activation.preexisting));
        let update = match &activation.schedule_name {
            Some(name) => {
                expr = expr.value(":schedule", s(name));
                "SET #status = :active, #preexisting_membership = :preexisting, #schedule_name = :schedule"
            }
            None => "SET #status = :active, #preexisting_membership = :preexisting REMOVE #schedule_name",
        };
        let writes = vec![
            self.update_pending_grant(id, update, expr)?,
            self.release_for(hold, id, activation.lease_preexisting)?,
        ];
        self.transact_with_audit(writes, audit).await?;
        grant.status = GrantStatus::Active;
        grant.preexisting_membership = activation.preexisting;
        grant.schedule_name = activation.schedule_name.clone();
        Ok(grant)
    }

    async fn fail_for_cleanup(
        &self,
        failure: &Failure,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError> {
        let id = &failure.grant.id;
        Self::check_pending(&failure.grant, hold)?;
        let mut grant = failure.grant.clone();
        // Stays a holder and in the sweep's index, due at `ended_at`: the sweep cleans up.
        let expr = Expr::default()
            .names(&["ended_at", GSI2PK, GSI2SK])
            .value(":failed", s(GrantStatus::Failed.as_str()))
            .value(":ended", to_value(&failure.ended_at)?)
            .value(":due", s(keys::DUE))
            .value(":due_at", s(keys::due_sort(failure.ended_at, id)));
        let update = "SET #status = :failed, #ended_at = :ended, #gsi2pk = :due, #gsi2sk = :due_at";
        let writes =
            vec![self.update_pending_grant(id, update, expr)?, self.release_for(hold, id, failure.lease_preexisting)?];
        self.transact_with_audit(writes, audit).await?;
        grant.status = GrantStatus::Failed;
        grant.ended_at = Some(failure.ended_at);
        Ok(grant)
    }

    async fn end(&self, ending: &Ending, hold: &LeaseHold, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError> {
        let id = &ending.grant.id;
        Self::check_held(&ending.grant, hold)?;
        let mut grant = ending.grant.clone();
        // A failed grant is open only while in the sweep's index: the condition checks that.
        let status = grant.settled_status(ending.status, true).map_err(GrantStoreError::Conflict)?;
        let expr = Expr::default()
            .names(&[STATUS, "ended_at", GSI2PK, GSI2SK])
            .value(":status", s(status.as_str()))
            .value(":ended", to_value(&ending.ended_at)?)
            .value(":seen", s(grant.status.as_str()));
        // Exactly what the caller read: a failed grant still in the index, or a pending or
        // active one; anything else was settled (or changed) by someone else meanwhile.
        let condition = if grant.status == GrantStatus::Failed {
            "#status = :seen AND attribute_exists(#gsi2pk)"
        } else {
            "#status = :seen"
        };
        let grant_write = Write::update(
            &self.table,
            grant_key(id),
            "SET #status = :status, #ended_at = :ended REMOVE #gsi2pk, #gsi2sk",
            condition,
            expr,
            format!("grant {id} is settled already"),
        )?;
        let lease_write = if ending.last_holder {
            self.lease_write(
                hold,
                LeaseChange::Delete,
                Expr::default().names(&[HOLDERS]).value(":one", AttributeValue::N("1".into())).value(":id", s(id)),
                Some((
                    "(attribute_not_exists(#holders) OR (size(#holders) = :one AND contains(#holders, :id)))",
                    "other grants hold the lease".to_owned(),
                )),
            )?
        } else {
            self.lease_write(
                hold,
                LeaseChange::Update("DELETE #holders :ids REMOVE #lock_owner, #lock_until"),
                Expr::default().names(&[HOLDERS, LOCK_UNTIL]).value(":ids", AttributeValue::Ss(vec![id.clone()])),
                None,
            )?
        };
        self.transact_with_audit(vec![grant_write, lease_write], audit).await?;
        grant.status = status;
        grant.ended_at = Some(ending.ended_at);
        Ok(grant)
    }

    async fn revocation_failed(
        &self,
        grant_id: &str,
        request: Option<&RevocationRequest>,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        let (grant, indexed) = self.load_held(grant_id, hold).await?;
        let mut writes = vec![self.release(hold)?];
        // Recorded once: the first request stands (and keeps its place in the index).
        if let Some(request) = request.filter(|_| grant.revocation_requested.is_none()) {
            let expr = Expr::default().names(&["revocation_requested", GSI2PK]).value(":request", to_value(request)?);
            let (update, condition, expr) = if indexed {
                (
                    "SET #revocation_requested = :request, #gsi2sk = :due_at",
                    "attribute_not_exists(#revocation_requested) AND attribute_exists(#gsi2pk)",
                    expr.names(&[GSI2SK]).value(":due_at", s(keys::due_sort(request.at, grant_id))),
                )
            } else {
                (
                    "SET #revocation_requested = :request",
                    "attribute_not_exists(#revocation_requested) AND attribute_not_exists(#gsi2pk)",
                    expr,
                )
            };
            let refused = format!("grant {grant_id} changed meanwhile");
            writes.push(Write::update(&self.table, grant_key(grant_id), update, condition, expr, refused)?);
        }
        self.transact_with_audit(writes, audit).await
    }

    async fn get(&self, id: &str) -> Result<Option<Grant>, GrantStoreError> {
        Ok(self.load(id).await?.map(|(grant, _)| grant))
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError> {
        let until = keys::due_until(now);
        let start = match next {
            Some(token) => {
                let cursor = decode_grant_cursor(token, "due", table::GSI2, keys::DUE)?;
                if cursor.key[GSI2SK] > until {
                    // Continues after everything due now.
                    return Ok(GrantPage::default());
                }
                Some(cursor.start_key())
            }
            None => None,
        };
        if limit == 0 {
            return Ok(GrantPage::default());
        }
        let query = Query::new(
            Some(table::GSI2),
            "#gsi2pk = :due AND #gsi2sk <= :until",
            Expr::default().names(&[GSI2PK, GSI2SK]).value(":due", s(keys::DUE)).value(":until", s(&until)),
        );
        self.grant_page(&query, "due", start, limit).await
    }

    async fn list(&self, filter: &GrantFilter, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError> {
        let open = matches!(filter.status, Some(GrantStatus::Pending | GrantStatus::Active));
        if limit == 0 {
            // Still refuse a bad token.
            if let Some(token) = next {
                let (kind, names): (&str, &[&str]) = if open { ("open", &OPEN_KEY) } else { ("list", &GSI1_KEY) };
                decode_cursor(token, kind, names)?;
            }
            return Ok(GrantPage::default());
        }
        if open {
            self.list_open(filter, limit, next).await
        } else {
            self.list_all(filter, limit, next).await
        }
    }

    async fn mark_membership_missing(&self, grant_id: &str, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError> {
        let (mut grant, _) =
            self.load(grant_id).await?.ok_or_else(|| GrantStoreError::NotFound(grant_id.to_owned()))?;
        if grant.status != GrantStatus::Active {
            return Err(GrantStoreError::Conflict(format!("grant {grant_id} is not active")));
        }
        let mark = Write::update(
            &self.table,
            grant_key(grant_id),
            "SET #membership_missing = :true",
            "#status = :active",
            Expr::default()
                .names(&["membership_missing", STATUS])
                .value(":true", AttributeValue::Bool(true))
                .value(":active", s(GrantStatus::Active.as_str())),
            format!("grant {grant_id} is not active"),
        )?;
        self.transact_with_audit(vec![mark], audit).await?;
        grant.membership_missing = true;
        Ok(grant)
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), GrantStoreError> {
        if let [record] = records {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(audit_item(record)?))
                .send()
                .await
                .map_err(aws)?;
            return Ok(());
        }
        // Atomic up to 100 records (one transaction); more go in several, in order.
        let mut writes = self.audit_writes(records)?.into_iter().peekable();
        while writes.peek().is_some() {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            while let Some(write) =
                writes.next_if(|w| chunk.len() < TRANSACTION_ITEMS && bytes + w.bytes <= TRANSACTION_BYTES)
            {
                bytes += write.bytes;
                chunk.push(write);
            }
            self.transact(chunk).await?;
        }
        Ok(())
    }

    async fn audit_for(&self, grant_id: &str) -> Result<Vec<AuditRecord>, GrantStoreError> {
        let query = Query {
            consistent: true,
            ..Query::new(None, "#pk = :pk", Expr::default().names(&[PK]).value(":pk", s(keys::audit(grant_id))))
        };
        self.query_all(&query).await
    }

    async fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        next: Option<&str>,
    ) -> Result<AuditPage, GrantStoreError> {
        let first_day = from.date_naive();
        let last_day = (to - chrono::Duration::nanoseconds(1)).date_naive();
        let (mut day, mut start) = match next {
            Some(token) => {
                // At the start of a day (no key), or after a record of that day.
                let cursor = decode_any_cursor(token, "audit")?;
                if !cursor.key.is_empty() && !has_key(&cursor, &GSI1_KEY) {
                    return Err(invalid_token("unexpected key attributes"));
                }
                let day = cursor
                    .day
                    .as_deref()
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    .ok_or_else(|| invalid_token("no day"))?;
                if day < first_day || day > last_day {
                    return Err(invalid_token("its day is outside the range"));
                }
                let start = (!cursor.key.is_empty()).then(|| cursor.start_key());
                if start.as_ref().is_some_and(|k| text(k, GSI1PK) != Some(keys::audit_day(day).as_str())) {
                    return Err(invalid_token("its key is not of its day"));
                }
                (day, start)
            }
            None => (first_day, None),
        };
        if to <= from || limit == 0 {
            return Ok(AuditPage::default());
        }
        let (low, high) = (keys::sortable_time(from), keys::sortable_time(to));
        let mut records = Vec::new();
        let mut days = 0;
        loop {
            let of_day = Query::new(
                Some(table::GSI1),
                "#gsi1pk = :day AND #gsi1sk BETWEEN :low AND :high",
                Expr::default()
                    .names(&[GSI1PK, GSI1SK])
                    .value(":day", s(keys::audit_day(day)))
                    .value(":low", s(&low))
                    .value(":high", s(&high)),
            );
            if let PageEnd::More(after) = self.read_page(&of_day, start.take(), limit, &mut records).await? {
                // No key: the page was full with earlier days' records; the next starts this day.
                let next = Cursor::audit(day, after.unwrap_or_default());
                return Ok(AuditPage { records, next: Some(next.token()) });
            }
            days += 1;
            match day.succ_opt().filter(|d| *d <= last_day) {
                None => return Ok(AuditPage { records, next: None }),
                // Enough day partitions for one call: a short page, continued at the next day.
                Some(following) if days >= AUDIT_DAYS_MAX => {
                    let next = Cursor::audit(following, PageKey::new());
                    return Ok(AuditPage { records, next: Some(next.token()) });
                }
                Some(following) => day = following,
            }
        }
    }

    async fn begin_idempotent(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState, GrantStoreError> {
        let expires = claim.expires_at;
        // DynamoDB deletes the record after `ttl` (epoch seconds, rounded up: never early).
        let ttl = expires.timestamp() + i64::from(expires.timestamp_subsec_nanos() > 0);
        let item: Item = HashMap::from([
            (PK.to_owned(), s(keys::idempotency(&claim.key))),
            (SK.to_owned(), s(keys::IDEMPOTENCY_SORT)),
            (KIND.to_owned(), s("idempotency")),
            ("key".to_owned(), s(&claim.key)),
            (STATUS.to_owned(), s(IN_PROGRESS)),
            ("request_hash".to_owned(), s(&claim.request_hash)),
            ("in_progress_until".to_owned(), s(keys::sortable_time(claim.in_progress_until))),
            ("expires_at".to_owned(), s(keys::sortable_time(expires))),
            (table::TTL_ATTRIBUTE.to_owned(), AttributeValue::N(ttl.to_string())),
        ]);
        check_item(&item)?;
        let (names, values) = Expr::default()
            .names(&[PK, STATUS, "expires_at", "in_progress_until"])
            .value(":now", s(keys::sortable_time(claim.now)))
            .value(":in_progress", s(IN_PROGRESS))
            .parts();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(#pk) OR #expires_at <= :now \
                 OR (#status = :in_progress AND #in_progress_until <= :now)",
            )
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        // The old record decides; should it vanish before it is read, claim again.
        for _ in 0..3 {
            let sent = retry_conflicts(|| request.clone().send()).await;
            let failed = match sent {
                Ok(_) => return Ok(IdempotencyState::New),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => failed.item().cloned(),
                    _ => return Err(aws(e)),
                },
            };
            let old = match failed {
                Some(old) => Some(old),
                None => self.raw(idempotency_key(&claim.key)).await?,
            };
            let Some(old) = old else { continue };
            let seen: IdempotencySeen = from_item(old)?;
            return Ok(if seen.request_hash != claim.request_hash {
                IdempotencyState::Mismatch
            } else {
                match (seen.status.as_str(), seen.grant_id) {
                    (COMPLETED, Some(grant_id)) => IdempotencyState::Completed(grant_id),
                    _ => IdempotencyState::InProgress,
                }
            });
        }
        Err(GrantStoreError::Conflict(format!("idempotency key {:?} keeps changing", claim.key)))
    }

    async fn complete_idempotent(&self, key: &str, grant_id: &str) -> Result<(), GrantStoreError> {
        let request = self.update_item(
            idempotency_key(key),
            "SET #status = :completed, #grant_id = :grant",
            "#status = :in_progress",
            Expr::default()
                .names(&[STATUS, "grant_id"])
                .value(":completed", s(COMPLETED))
                .value(":in_progress", s(IN_PROGRESS))
                .value(":grant", s(grant_id)),
        );
        let sent = retry_conflicts(|| request.clone().send()).await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Err(GrantStoreError::Conflict(format!("idempotency key {key:?} is not in progress")))
                }
                _ => Err(aws(e)),
            },
        }
    }

    async fn abandon_idempotent(&self, key: &str) -> Result<(), GrantStoreError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_key(key)))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_values(":in_progress", s(IN_PROGRESS));
        let sent = retry_conflicts(|| request.clone().send()).await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                // Completed meanwhile, or gone: nothing to free.
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(aws(e)),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The synced directory

/// What the oracle needs of a sync status item (see `dynamo::SyncStatusItem`).
#[derive(Deserialize)]
struct SyncSeen {
    state: SyncState,
    #[serde(default)]
    finished_at: Option<DateTime<Utc>>,
}

#[async_trait]
impl MembershipOracle for DynamoGrantStore {
    /// One consistent `BatchGetItem` of the integration's sync status and the membership item.
    async fn synced_membership(&self, key: &LeaseKey, before: DateTime<Utc>) -> Result<Option<bool>, GrantStoreError> {
        let status_pk = keys::integration(&key.integration);
        let member_pk = keys::memberships(&key.integration);
        let member_sk = keys::membership_sort(&key.group_id, &key.user_id);
        let mut request = built(
            KeysAndAttributes::builder()
                .keys(self::key(status_pk.clone(), keys::SYNC_STATUS))
                .keys(self::key(member_pk.clone(), &member_sk))
                .consistent_read(true)
                .projection_expression("#pk, #sk, #state, #finished_at")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#finished_at", "finished_at")
                .build(),
        )?;
        let mut delays = write_backoff().build();
        let mut found: Vec<Item> = Vec::new();
        loop {
            let output = self.client.batch_get_item().request_items(&self.table, request).send().await.map_err(aws)?;
            found.extend(output.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
            let left = output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
            match left {
                None => break,
                Some(left) => {
                    let delay = delays.next().ok_or(StoreError::Unprocessed(left.keys.len()))?;
                    tokio::time::sleep(delay).await;
                    request = left;
                }
            }
        }
        let held = found.iter().any(|i| text(i, PK) == Some(member_pk.as_str()) && text(i, SK) == Some(&member_sk));
        let Some(status) = found.into_iter().find(|i| text(i, PK) == Some(status_pk.as_str())) else {
            return Ok(None);
        };
        let status: SyncSeen = from_item(status)?;
        let known = status.state == SyncState::Succeeded && status.finished_at.is_some_and(|at| at <= before);
        Ok(known.then_some(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{sample_grant, AuditAction, AuditOutcome};
    use chrono::TimeZone;

    #[test]
    fn base64url_round_trips_every_length_and_refuses_garbage() {
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let encoded = base64url(&bytes);
            assert!(encoded.bytes().all(|b| BASE64URL.contains(&b)), "{encoded}");
            assert_eq!(from_base64url(&encoded).as_deref(), Some(bytes.as_slice()), "{n} bytes");
        }
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(b"Ma"), "TWE");
        assert_eq!(from_base64url("a"), None);
        assert_eq!(from_base64url("ab=c"), None);
        assert_eq!(from_base64url("ab c"), None);
    }

    #[test]
    fn tokens_are_checked_for_kind_and_key() {
        let key = BTreeMap::from([(PK.to_owned(), "GRANT#x".to_owned()), (SK.to_owned(), "GRANT".to_owned())]);
        let token = Cursor::new("due", key).token();
        assert!(decode_cursor(&token, "due", &[PK, SK]).is_ok());
        for bad in [
            decode_cursor(&token, "list", &[PK, SK]),
            decode_cursor(&token, "due", &page_key(table::GSI2)),
            decode_cursor("!!!", "due", &[PK, SK]),
            decode_cursor(&base64url(b"{\"k\":1}"), "due", &[PK, SK]),
            decode_cursor(&"A".repeat(TOKEN_MAX_CHARS + 1), "due", &[PK, SK]),
        ] {
            assert!(matches!(bad, Err(GrantStoreError::InvalidToken(_))));
        }
    }

    #[test]
    fn grant_tokens_must_continue_after_a_grant_of_the_partition_queried() {
        let key = |pk: &str, index_pk: &str| {
            BTreeMap::from([
                (PK.to_owned(), pk.to_owned()),
                (SK.to_owned(), "GRANT".to_owned()),
                (GSI2PK.to_owned(), index_pk.to_owned()),
                (GSI2SK.to_owned(), "2026-11-23T14:00:00.000000000Z#x".to_owned()),
            ])
        };
        let due = Cursor::new("due", key("GRANT#x", keys::DUE)).token();
        let cursor = decode_grant_cursor(&due, "due", table::GSI2, keys::DUE).unwrap();
        assert_eq!(text(&cursor.start_key(), GSI2SK), Some("2026-11-23T14:00:00.000000000Z#x"));
        for bad in [
            decode_grant_cursor(&due, "list", table::GSI1, keys::GRANTS),
            decode_grant_cursor(&Cursor::new("due", key("AUDIT#x", keys::DUE)).token(), "due", table::GSI2, keys::DUE),
            decode_grant_cursor(&Cursor::new("due", key("GRANT#x", "OTHER")).token(), "due", table::GSI2, keys::DUE),
        ] {
            assert!(matches!(bad, Err(GrantStoreError::InvalidToken(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_grant_item_carries_its_keys_and_maps_back() {
        let g = sample_grant();
        let item = grant_item(&g, Some(g.expires_at)).unwrap();
        assert_eq!(text(&item, PK), Some("GRANT#0b7c1e9e-4a8e-4bd6-9a8c-2b1f1c7a1d11"));
        assert_eq!(text(&item, GSI1SK), Some("2026-11-23T12:00:00.000000000Z#0b7c1e9e-4a8e-4bd6-9a8c-2b1f1c7a1d11"));
        assert_eq!(text(&item, GSI2SK), Some("2026-11-23T14:00:00.000000000Z#0b7c1e9e-4a8e-4bd6-9a8c-2b1f1c7a1d11"));
        assert!(!item.contains_key(table::TTL_ATTRIBUTE));
        let back: Grant = from_item(item).unwrap();
        assert_eq!(back, g);
        assert!(!grant_item(&g, None).unwrap().contains_key(GSI2PK));
        let mut huge = g;
        huge.reason = "x".repeat(ITEM_BYTES);
        assert!(grant_item(&huge, None).is_err());
    }

    #[test]
    fn audit_items_cut_free_text_and_sort_in_writing_order() {
        let g = sample_grant();
        let mut record = AuditRecord::new(&g, g.granted_at, "me", AuditAction::Created, AuditOutcome::Succeeded);
        record.detail = Some("é".repeat(AUDIT_TEXT_BYTES));
        let first = audit_item(&record).unwrap();
        let second = audit_item(&record).unwrap();
        assert!(text(&first, SK) < text(&second, SK), "same instant: writing order");
        assert_eq!(text(&first, GSI1PK), Some("AUDIT#2026-11-23"));
        assert!(!first.contains_key(table::TTL_ATTRIBUTE));
        let back: AuditRecord = from_item(first).unwrap();
        let detail = back.detail.unwrap();
        assert!(detail.len() <= AUDIT_TEXT_BYTES + 20 && detail.ends_with("[truncated]"));
        // The largest record the domain can write fits, and so do 98 of them in one transaction.
        assert!(item_bytes(&second) < ITEM_BYTES && 98 * item_bytes(&second) < TRANSACTION_BYTES);
    }

    #[test]
    fn leases_map_from_items() {
        let item = HashMap::from([
            (HOLDERS.to_owned(), AttributeValue::Ss(vec!["a".into(), "b".into()])),
            (PREEXISTING.to_owned(), AttributeValue::Bool(true)),
            (LOCK_OWNER.to_owned(), s("me")),
            (LOCK_UNTIL.to_owned(), s("2026-11-23T12:03:00.000000000Z")),
        ]);
        let lease = lease_from(&item).unwrap();
        assert_eq!(lease.holders.len(), 2);
        assert!(lease.preexisting);
        assert_eq!(lease.lock.unwrap().until, Utc.with_ymd_and_hms(2026, 11, 23, 12, 3, 0).unwrap());
        assert_eq!(lease_from(&Item::new()).unwrap(), Lease::default());
    }
}
