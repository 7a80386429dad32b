//! Item mapping: grants, audit records and leases to and from DynamoDB items, their keys, and
//! the sizes that DynamoDB's limits count.

use super::{
    super::{
        item::{key, to_item},
        keys, StoreError,
    },
    Item, AUDIT_TEXT_BYTES, GSI1PK, GSI1SK, GSI2PK, GSI2SK, HOLDERS, ITEM_BYTES, KIND, LOCK_OWNER, LOCK_UNTIL, PK,
    PREEXISTING, SK,
};
use crate::domain::model::{AuditRecord, Grant, Lease, LeaseKey, LeaseLock};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

pub(super) use super::super::item::{from_item, text};

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn grant_key(id: &str) -> Item {
    key(keys::grant(id), keys::GRANT_SORT)
}

pub(super) fn lease_key(lease: &LeaseKey) -> Item {
    key(keys::lease(&lease.integration), &keys::lease_sort(&lease.group_id, &lease.user_id))
}

pub(super) fn idempotency_key(key_text: &str) -> Item {
    key(keys::idempotency(key_text), keys::IDEMPOTENCY_SORT)
}

pub(super) fn to_value<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Mapping(e.to_string()))
}

pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Mapping(format!("time {text:?}: {e}")))
}

/// An item's size as DynamoDB counts it (names plus values), rounded up where unsure.
pub(super) fn item_bytes(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_bytes(value)).sum()
}

pub(super) fn value_bytes(value: &AttributeValue) -> usize {
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

pub(super) fn check_item(item: &Item) -> Result<(), StoreError> {
    let bytes = item_bytes(item);
    if bytes > ITEM_BYTES {
        return Err(StoreError::Mapping(format!("an item of {bytes} bytes exceeds DynamoDB's 400 KB")));
    }
    Ok(())
}

/// Cuts free text to [`AUDIT_TEXT_BYTES`] (at a character boundary), saying so; the mark counts
/// in the limit, so text cut once is never cut again.
fn cut(text: &mut String) {
    const MARK: &str = " [truncated]";
    if text.len() > AUDIT_TEXT_BYTES {
        let mut end = AUDIT_TEXT_BYTES - MARK.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(MARK);
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

pub(super) fn grant_item(grant: &Grant, due: Option<DateTime<Utc>>) -> Result<Item, StoreError> {
    let mut item = to_item(grant)?;
    item.extend([
        (PK.to_owned(), s(keys::grant(&grant.id))),
        (SK.to_owned(), s(keys::GRANT_SORT)),
        (KIND.to_owned(), s("grant")),
        (GSI1PK.to_owned(), s(keys::GRANTS)),
        (GSI1SK.to_owned(), s(keys::grant_by_time(grant.requested_at, &grant.id))),
    ]);
    if let Some(due) = due {
        item.insert(GSI2PK.to_owned(), s(keys::DUE));
        item.insert(GSI2SK.to_owned(), s(keys::due_sort(due, &grant.id)));
    }
    check_item(&item)?;
    Ok(item)
}

/// The record as it will be stored: free text cut to fit. Linked into its chain after this, so
/// the chain's hashes are of what is stored.
pub(super) fn stored_form(record: &AuditRecord) -> AuditRecord {
    let mut record = record.clone();
    for text in [&mut record.reason, &mut record.detail].into_iter().flatten() {
        cut(text);
    }
    record
}

/// The item of a record in its stored form ([`stored_form`]).
pub(super) fn audit_item(record: &AuditRecord) -> Result<Item, StoreError> {
    let sort = keys::audit_sort(record.at, next_seq(), &record.id);
    let mut item = to_item(record)?;
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

pub(super) fn lease_from(item: &Item) -> Result<Lease, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::{super::super::table, super::TRANSACTION_BYTES, *};
    use crate::domain::model::{sample_grant, AuditAction, AuditOutcome};
    use chrono::TimeZone;
    use std::collections::HashMap;

    #[test]
    fn a_grant_item_carries_its_keys_and_maps_back() {
        let g = sample_grant();
        let item = grant_item(&g, g.expires_at).unwrap();
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
        let mut record = AuditRecord::new(&g, g.requested_at, "me", AuditAction::Created, AuditOutcome::Succeeded);
        record.detail = Some("é".repeat(AUDIT_TEXT_BYTES));
        let record = stored_form(&record);
        let first = audit_item(&record).unwrap();
        let second = audit_item(&record).unwrap();
        assert!(text(&first, SK) < text(&second, SK), "same instant: writing order");
        assert_eq!(text(&first, GSI1PK), Some("AUDIT#2026-11-23"));
        assert!(!first.contains_key(table::TTL_ATTRIBUTE));
        let back: AuditRecord = from_item(first).unwrap();
        let detail = back.detail.unwrap();
        assert!(detail.len() <= AUDIT_TEXT_BYTES && detail.ends_with("[truncated]"));
        // The largest record the domain can write fits, and so do 98 of them in one transaction.
        assert!(item_bytes(&second) < ITEM_BYTES && 98 * item_bytes(&second) < TRANSACTION_BYTES);
        assert_eq!(stored_form(&record), record, "cutting twice changes nothing more");
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
