//! Membership leases: locking and unlocking one (single-item writes), and the lease writes that
//! transactions carry, each conditioned on the caller still holding the lock.

use super::{
    super::StoreError,
    aws,
    items::{lease_from, lease_key, parse_time, s, text},
    transactions::{retry_conflicts, Expr, Write},
    DynamoGrantStore, HOLDERS, KIND, LOCK_OWNER, LOCK_UNTIL, PREEXISTING,
};
use crate::{
    adapters::dynamodb::keys,
    domain::model::{Lease, LeaseHold, LeaseKey},
    ports::GrantStoreError,
};
use aws_sdk_dynamodb::{
    operation::{delete_item::DeleteItemError, update_item::UpdateItemError},
    types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure},
};
use chrono::{DateTime, Utc};

/// Locks `key`'s lease for `owner` until `now + ttl` (creating the lease if need be) and returns it.
pub(super) async fn lock(
    store: &DynamoGrantStore,
    key: &LeaseKey,
    owner: &str,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<Lease, GrantStoreError> {
    let until = now + ttl;
    let request = store
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

/// Releases `hold`'s lock, if still `hold`'s; deletes the lease if it then holds no grant.
pub(super) async fn unlock(store: &DynamoGrantStore, hold: &LeaseHold) -> Result<(), GrantStoreError> {
    let request = store
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
    let deleted = store
        .delete_item(
            lease_key(&hold.key),
            "attribute_not_exists(#holders) AND attribute_not_exists(#lock_owner)",
            Expr::default().names(&[HOLDERS, LOCK_OWNER]),
        )
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

/// How a transaction changes a lease (see [`DynamoGrantStore::lease_write`]).
pub(super) enum LeaseChange<'a> {
    Update(&'a str),
    Delete,
}

impl DynamoGrantStore {
    /// A write of `hold`'s lease. Every one is conditioned on the lock still being `hold`'s (and
    /// on `also`, with what its failure means): a caller whose lock lapsed and passed to another
    /// owner can never change the lease.
    pub(super) fn lease_write(
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
    pub(super) fn release_for(
        &self,
        hold: &LeaseHold,
        grant_id: &str,
        preexisting: Option<bool>,
    ) -> Result<Write, StoreError> {
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
    pub(super) fn release(&self, hold: &LeaseHold) -> Result<Write, StoreError> {
        let update = LeaseChange::Update("REMOVE #lock_owner, #lock_until");
        self.lease_write(hold, update, Expr::default().names(&[LOCK_UNTIL]), None)
    }
}
