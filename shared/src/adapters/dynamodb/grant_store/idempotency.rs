//! Idempotency records (the Powertools design on conditional writes): a request claims its key
//! before any work, completes it with the grant it made, or abandons it on failure.

use super::{
    super::{keys, table},
    aws,
    items::{check_item, from_item, idempotency_key, s},
    transactions::{retry_conflicts, Conditioned, Expr},
    DynamoGrantStore, Item, KIND, PK, SK, STATUS,
};
use crate::{
    domain::model::{IdempotencyClaim, IdempotencyState},
    ports::GrantStoreError,
};
use aws_sdk_dynamodb::{
    operation::{delete_item::DeleteItemError, put_item::PutItemError, update_item::UpdateItemError},
    types::{AttributeValue, ReturnValuesOnConditionCheckFailure},
};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
struct IdempotencySeen {
    status: String,
    request_hash: String,
    #[serde(default)]
    grant_id: Option<String>,
}

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";

pub(super) async fn begin(
    store: &DynamoGrantStore,
    claim: &IdempotencyClaim,
) -> Result<IdempotencyState, GrantStoreError> {
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
    let request = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(item))
        .only_if(
            "attribute_not_exists(#pk) OR #expires_at <= :now \
             OR (#status = :in_progress AND #in_progress_until <= :now)",
            Expr::default()
                .names(&[PK, STATUS, "expires_at", "in_progress_until"])
                .value(":now", s(keys::sortable_time(claim.now)))
                .value(":in_progress", s(IN_PROGRESS)),
        )
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
            None => store.raw(idempotency_key(&claim.key)).await?,
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

pub(super) async fn complete(store: &DynamoGrantStore, key: &str, grant_id: &str) -> Result<(), GrantStoreError> {
    let request = store.update_item(
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

pub(super) async fn abandon(store: &DynamoGrantStore, key: &str) -> Result<(), GrantStoreError> {
    let request = store.delete_item(
        idempotency_key(key),
        "#status = :in_progress",
        Expr::default().names(&[STATUS]).value(":in_progress", s(IN_PROGRESS)),
    );
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
