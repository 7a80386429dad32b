//! The directory store's batch calls, within AWS's limits by construction: 25 items per
//! `BatchWriteItem`, 100 keys per `BatchGetItem`, a few in flight, what DynamoDB leaves
//! unprocessed retried with jittered backoff.

use super::{DynamoStore, Projection};
use crate::adapters::dynamodb::{
    item::{key, Item},
    keys, StoreError,
};
use aws_sdk_dynamodb::types::{KeysAndAttributes, WriteRequest};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::{stream, StreamExt, TryStreamExt};
use std::{collections::BTreeSet, time::Duration};

/// AWS's limit for one `BatchWriteItem`.
pub(super) const BATCH_WRITE_LIMIT: usize = 25;
/// AWS's limit for one `BatchGetItem`.
pub(super) const BATCH_GET_LIMIT: usize = 100;
/// Batches in flight at once per sync.
const WRITE_CONCURRENCY: usize = 8;
/// `BatchGetItem`s in flight at once per `users_by_ids`.
const READ_CONCURRENCY: usize = 4;

impl DynamoStore {
    pub(in crate::adapters::dynamodb) async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(BATCH_WRITE_LIMIT).map(<[_]>::to_vec).collect();
        stream::iter(chunks)
            .map(|chunk| self.write_batch(chunk))
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect()
            .await
    }

    /// One batch, retrying what DynamoDB leaves unprocessed (throttling) with jittered backoff.
    async fn write_batch(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut delays = batch_backoff();
        loop {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(StoreError::aws)?;
            pending = output.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(StoreError::Unprocessed(pending.len())),
            }
        }
    }

    /// The stored users among `ids` (repeats asked once: DynamoDB refuses a batch that names one
    /// key twice), as items: one `BatchGetItem` per 100, a few in flight.
    pub(super) async fn users_batch(
        &self,
        integration: &str,
        ids: &[String],
        projection: Option<&Projection>,
    ) -> Result<Vec<Item>, StoreError> {
        let distinct: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let keys: Vec<Item> = distinct.into_iter().map(|id| key(keys::users(integration), id)).collect();
        let chunks: Vec<Vec<Item>> = keys.chunks(BATCH_GET_LIMIT).map(<[_]>::to_vec).collect();
        let found: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|chunk| self.get_batch(chunk, projection))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One `BatchGetItem` of at most 100 keys (all attributes, or only `projection`'s), retrying
    /// the keys DynamoDB leaves unprocessed (throttling, or the 16 MB response limit) with
    /// jittered backoff, as `write_batch` does.
    async fn get_batch(&self, keys: Vec<Item>, projection: Option<&Projection>) -> Result<Vec<Item>, StoreError> {
        let mut pending = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .set_projection_expression(projection.map(|p| p.expression.to_owned()))
            .set_expression_attribute_names(projection.map(|p| p.names()))
            .build()
            .map_err(|e| StoreError::Mapping(e.to_string()))?;
        let mut delays = batch_backoff();
        let mut found = Vec::new();
        loop {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(StoreError::aws)?;
            found.extend(output.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
            let left = output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
            let Some(left) = left else { return Ok(found) };
            match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(StoreError::Unprocessed(left.keys.len())),
            }
            pending = left;
        }
    }
}

/// Backoff between retries of what a batch call left unprocessed.
fn batch_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(10)
        .with_jitter()
        .build()
}
