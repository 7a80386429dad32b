//! The membership oracle over the synced directory: whether a user was in a group as of the
//! integration's last successful sync, read in one consistent `BatchGetItem`.

use super::{
    grant_store::{aws, built, from_item, key, text, write_backoff, Item},
    keys,
    table::{PARTITION_KEY as PK, SORT_KEY as SK},
    DynamoGrantStore, StoreError,
};
use crate::{
    domain::model::LeaseKey,
    ports::{GrantStoreError, MembershipOracle, SyncState},
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// What the oracle needs of a sync status item (see `directory_store::SyncStatusItem`).
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
            let output =
                self.client().batch_get_item().request_items(self.table(), request).send().await.map_err(aws)?;
            found.extend(output.responses.and_then(|mut r| r.remove(self.table())).unwrap_or_default());
            let left = output.unprocessed_keys.and_then(|mut u| u.remove(self.table())).filter(|k| !k.keys.is_empty());
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
