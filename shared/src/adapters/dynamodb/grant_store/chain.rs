//! The audit trail's hash chains and daily seals in DynamoDB (see `domain::model::audit_chain`).
//!
//! - chain head: `pk=AUDIT#{grant}`, `sk=~CHAIN` (`n`, `hash`), after the grant's records.
//! - daily seal: `pk=AUDIT#~SEALS`, `sk={day}`.
//!
//! Every write of audit records reads the heads of their grants (one consistent `GetItem` each),
//! links the records after them and puts the new heads in the same transaction as the records and
//! the change they record, each conditioned on the head read: two writers that read the same head
//! cannot both land. The one refused only for that reads the head again and retries; any other
//! refused condition is the caller's `Conflict`, as before.

use super::{
    items::{audit_item, from_item, s, stored_form},
    paging::Query,
    transactions::{Expr, Write},
    DynamoGrantStore, Item, KIND, PK, SK, TRANSACTION_ITEMS,
};
use crate::{
    adapters::dynamodb::{
        item::{key, to_item},
        keys, StoreError,
    },
    domain::model::{audit_chain, AuditRecord, ChainHead, DaySeal},
    ports::GrantStoreError,
};
use aws_sdk_dynamodb::types::AttributeValue;
use backon::{ExponentialBuilder, Retryable};
use chrono::NaiveDate;
use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

/// What a refused head condition reports; such a refusal only means another record came first.
const CHAIN_MOVED: &str = "the audit chain of grant";
/// Writers racing on one grant's chain: each retry follows a newer head (jittered, so that racing
/// writers spread out); with n writers at once the last one loses at most n - 1 times.
fn chain_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(200))
        .with_max_times(40)
        .with_jitter()
}
/// Records per transaction when only records are written: each may bring its grant's head.
pub(super) const RECORDS_PER_TRANSACTION: usize = TRANSACTION_ITEMS / 2;

/// Whether the heads of the records' chains must be read, or are known not to exist yet.
#[derive(Clone, Copy)]
enum Heads {
    Read,
    New,
}

fn head_key(grant_id: &str) -> Item {
    key(keys::audit(grant_id), keys::AUDIT_CHAIN_HEAD)
}

impl DynamoGrantStore {
    /// `writes` and the records, linked into their grants' chains, in one transaction.
    pub(in crate::adapters::dynamodb) async fn transact_with_audit(
        &self,
        writes: Vec<Write>,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        self.transact_chained(writes, audit, Heads::Read).await
    }

    /// As [`Self::transact_with_audit`], for the first records of a grant being created: its
    /// chain has no head yet, so none is read (the head's put is still conditioned on that).
    pub(super) async fn transact_with_first_audit(
        &self,
        writes: Vec<Write>,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        self.transact_chained(writes, audit, Heads::New).await
    }

    async fn transact_chained(
        &self,
        writes: Vec<Write>,
        audit: &[AuditRecord],
        heads: Heads,
    ) -> Result<(), GrantStoreError> {
        if audit.is_empty() {
            return self.transact(writes).await;
        }
        let grants = audit.iter().map(|r| r.grant_id.as_str()).collect::<std::collections::BTreeSet<_>>().len();
        let items = writes.len() + audit.len() + grants;
        if items > TRANSACTION_ITEMS {
            // Said before any read: the same refusal `transact` gives, counting the chains' heads.
            return Err(StoreError::Mapping(format!(
                "{items} writes (with the audit chains' heads) exceed DynamoDB's {TRANSACTION_ITEMS} per transaction"
            ))
            .into());
        }
        let records: Vec<AuditRecord> = audit.iter().map(stored_form).collect();
        // Only the first attempt may skip reading the heads; a retry follows whatever head is there.
        let first = std::sync::atomic::AtomicBool::new(true);
        let attempt = || async {
            let heads = if first.swap(false, Ordering::Relaxed) { heads } else { Heads::Read };
            let mut all = writes.clone();
            all.extend(self.chained_writes(records.clone(), heads).await?);
            self.transact(all).await
        };
        // Each lost race means another writer's records landed: every writer gets through.
        attempt
            .retry(chain_backoff())
            .when(|e| matches!(e, GrantStoreError::Conflict(what) if what.starts_with(CHAIN_MOVED)))
            .notify(|e, delay| tracing::debug!(error = %e, ?delay, "audit chain moved meanwhile; linking again"))
            .await
    }

    /// Puts of the records linked after their grants' current heads, and of the new heads.
    async fn chained_writes(
        &self,
        mut records: Vec<AuditRecord>,
        heads_are: Heads,
    ) -> Result<Vec<Write>, GrantStoreError> {
        // Read heads in the order grants first appear; link each grant's records in their order.
        let mut read: Vec<(String, Option<ChainHead>)> = Vec::new();
        let mut heads: HashMap<String, Option<ChainHead>> = HashMap::new();
        for record in &mut records {
            if !heads.contains_key(&record.grant_id) {
                let head = match heads_are {
                    Heads::Read => self.chain_head(&record.grant_id).await?,
                    Heads::New => None,
                };
                read.push((record.grant_id.clone(), head.clone()));
                heads.insert(record.grant_id.clone(), head);
            }
            let head = heads.get_mut(&record.grant_id).expect("read above");
            *head = audit_chain::link(head.as_ref(), std::slice::from_mut(record));
        }
        let mut writes = Vec::with_capacity(records.len() + read.len());
        for record in &records {
            writes.push(Write::put(&self.table, audit_item(record)?, None, "audit record".to_owned())?);
        }
        for (grant_id, seen) in read {
            let new = heads.remove(&grant_id).flatten().expect("at least one record linked");
            let mut item = to_item(&new)?;
            item.extend(head_key(&grant_id));
            item.insert(KIND.to_owned(), s("audit-chain"));
            let condition = match &seen {
                None => ("attribute_not_exists(#pk)", Expr::default().names(&[PK])),
                Some(seen) => {
                    ("#n = :n", Expr::default().names(&["n"]).value(":n", AttributeValue::N(seen.n.to_string())))
                }
            };
            writes.push(Write::put(&self.table, item, Some(condition), format!("{CHAIN_MOVED} {grant_id} moved"))?);
        }
        Ok(writes)
    }

    pub(super) async fn chain_head(&self, grant_id: &str) -> Result<Option<ChainHead>, GrantStoreError> {
        self.raw(head_key(grant_id)).await?.map(from_item).transpose().map_err(Into::into)
    }

    pub(super) async fn seals(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<DaySeal>, GrantStoreError> {
        let expr = Expr::default()
            .names(&[PK, SK])
            .value(":pk", s(keys::AUDIT_SEALS))
            .value(":from", s(keys::audit_seal_sort(from)))
            .value(":to", s(keys::audit_seal_sort(to)));
        let query = Query { consistent: true, ..Query::new(None, "#pk = :pk AND #sk BETWEEN :from AND :to", expr) };
        self.query_all(&query).await
    }

    pub(super) async fn last_seal(&self) -> Result<Option<DaySeal>, GrantStoreError> {
        let expr = Expr::default().names(&[PK]).value(":pk", s(keys::AUDIT_SEALS));
        let query = Query { consistent: true, newest_first: true, ..Query::new(None, "#pk = :pk", expr) };
        let mut found = Vec::with_capacity(2);
        self.read_page(&query, None, 1, &mut found).await?;
        Ok(found.pop())
    }

    pub(super) async fn put_seal(&self, seal: &DaySeal) -> Result<(), GrantStoreError> {
        let mut item = to_item(seal)?;
        item.extend(key(keys::AUDIT_SEALS.to_owned(), &keys::audit_seal_sort(seal.day)));
        item.insert(KIND.to_owned(), s("audit-seal"));
        let put = Write::put(
            &self.table,
            item,
            Some(("attribute_not_exists(#pk)", Expr::default().names(&[PK]))),
            format!("{} is sealed already", seal.day),
        )?;
        self.transact(vec![put]).await
    }
}
