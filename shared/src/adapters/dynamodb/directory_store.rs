//! The directory in DynamoDB. Writes respect AWS's limits by construction: 25 items per
//! `BatchWriteItem`, unprocessed items retried with backoff.

use super::{
    item::{from_item, key, to_item, Item},
    keys, table, StoreError,
};
use crate::{
    domain::model::{content_hash, DirectoryChanges, DirectoryDigest, DirectoryGroup, DirectoryUser, Membership},
    ports::{DirectoryStore, SyncStatus},
};
use async_trait::async_trait;
use aws_sdk_dynamodb::{
    types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest},
    Client,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// AWS's limit for one `BatchWriteItem`.
pub const BATCH_WRITE_LIMIT: usize = 25;
/// Batches in flight at once per sync.
const WRITE_CONCURRENCY: usize = 8;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

#[derive(Serialize, Deserialize)]
struct UserItem {
    pk: String,
    sk: String,
    kind: String,
    integration: String,
    gsi1pk: String,
    gsi1sk: String,
    /// Content hash: sync compares it instead of reading the item back.
    h: u64,
    #[serde(flatten)]
    user: DirectoryUser,
}

#[derive(Serialize, Deserialize)]
struct GroupItem {
    pk: String,
    sk: String,
    kind: String,
    integration: String,
    gsi1pk: String,
    gsi1sk: String,
    h: u64,
    #[serde(flatten)]
    group: DirectoryGroup,
}

#[derive(Serialize, Deserialize)]
struct MembershipItem {
    pk: String,
    sk: String,
    kind: String,
    integration: String,
    #[serde(flatten)]
    membership: Membership,
}

#[derive(Serialize, Deserialize)]
struct SyncStatusItem {
    pk: String,
    sk: String,
    kind: String,
    #[serde(flatten)]
    status: SyncStatus,
}

fn put(item: Item) -> WriteRequest {
    WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().expect("item set")).build()
}

fn delete(key: Item) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(DeleteRequest::builder().set_key(Some(key)).build().expect("key set"))
        .build()
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The sort key and content hash (`h`) of every item of one partition, page by page. Only
    /// those two attributes are read: sync never needs the items themselves back.
    async fn keys_and_hashes(&self, pk: String, with_hash: bool) -> Result<Vec<(String, u64)>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", table::PARTITION_KEY)
            .expression_attribute_names("#sk", table::SORT_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(pk));
        query = if with_hash {
            query.projection_expression("#sk, #h").expression_attribute_names("#h", "h")
        } else {
            query.projection_expression("#sk")
        };
        let mut pages = query.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::aws)?.items.unwrap_or_default() {
                let sk = item.get(table::SORT_KEY).and_then(|v| v.as_s().ok()).cloned();
                let sk = sk.ok_or_else(|| StoreError::Mapping("item without a sort key".into()))?;
                // An item written before hashes existed has none: it differs, and is rewritten once.
                let h = item.get("h").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
                out.push((sk, h));
            }
        }
        Ok(out)
    }

    /// The first item of a `gsi1` partition with this sort key (emails and names are unique in a
    /// directory; a stale duplicate during a rename is harmless: the sync removes it).
    async fn first_in_gsi1(&self, partition: String, sort: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(table::GSI1.name)
            .key_condition_expression("#pk = :pk AND #sk = :sk")
            .expression_attribute_names("#pk", table::GSI1.partition_key)
            .expression_attribute_names("#sk", table::GSI1.sort_key)
            .expression_attribute_values(":pk", AttributeValue::S(partition))
            .expression_attribute_values(":sk", AttributeValue::S(sort.to_owned()))
            .limit(1)
            .send()
            .await
            .map_err(StoreError::aws)?;
        Ok(output.items.unwrap_or_default().into_iter().next())
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(BATCH_WRITE_LIMIT).map(<[_]>::to_vec).collect();
        stream::iter(chunks)
            .map(|chunk| self.write_batch(chunk))
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect()
            .await
    }

    /// One batch, retrying what DynamoDB leaves unprocessed (throttling) with jittered backoff.
    async fn write_batch(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(10)
            .with_jitter()
            .build();
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
}

#[async_trait]
impl DirectoryStore for DynamoStore {
    async fn load_digest(&self, integration: &str) -> Result<DirectoryDigest, StoreError> {
        let (users, groups, memberships) = futures::try_join!(
            self.keys_and_hashes(keys::users(integration), true),
            self.keys_and_hashes(keys::groups(integration), true),
            self.keys_and_hashes(keys::memberships(integration), false),
        )?;
        let memberships = memberships
            .into_iter()
            .map(|(sk, _)| {
                let (group_id, user_id) =
                    sk.split_once('#').ok_or_else(|| StoreError::Mapping(format!("membership key {sk:?}")))?;
                Ok(Membership { group_id: group_id.into(), user_id: user_id.into() })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(DirectoryDigest { users: users.into_iter().collect(), groups: groups.into_iter().collect(), memberships })
    }

    async fn apply_changes(&self, integration: &str, changes: &DirectoryChanges) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(changes.len());
        for user in &changes.put_users {
            requests.push(put(to_item(&UserItem {
                pk: keys::users(integration),
                sk: user.id.clone(),
                kind: "user".into(),
                integration: integration.into(),
                gsi1pk: keys::user_by_email(integration, &user.email),
                gsi1sk: "USER".into(),
                h: content_hash(user),
                user: user.clone(),
            })?));
        }
        for group in &changes.put_groups {
            requests.push(put(to_item(&GroupItem {
                pk: keys::groups(integration),
                sk: group.id.clone(),
                kind: "group".into(),
                integration: integration.into(),
                gsi1pk: keys::group_by_name(integration, &group.name),
                gsi1sk: "GROUP".into(),
                h: content_hash(group),
                group: group.clone(),
            })?));
        }
        for membership in &changes.put_memberships {
            requests.push(put(to_item(&MembershipItem {
                pk: keys::memberships(integration),
                sk: keys::membership_sort(&membership.group_id.to_string(), &membership.user_id.to_string()),
                kind: "membership".into(),
                integration: integration.into(),
                membership: membership.clone(),
            })?));
        }
        requests.extend(changes.delete_users.iter().map(|id| delete(key(keys::users(integration), id))));
        requests.extend(changes.delete_groups.iter().map(|id| delete(key(keys::groups(integration), id))));
        requests.extend(changes.delete_memberships.iter().map(|m| {
            delete(key(
                keys::memberships(integration),
                &keys::membership_sort(&m.group_id.to_string(), &m.user_id.to_string()),
            ))
        }));
        self.write_all(requests).await
    }

    async fn list_groups(&self, integration: &str) -> Result<Vec<DirectoryGroup>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", table::PARTITION_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(keys::groups(integration)))
            .into_paginator()
            .send();
        let mut groups = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::aws)?.items.unwrap_or_default() {
                groups.push(from_item::<GroupItem>(item)?.group);
            }
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    async fn put_sync_status(&self, status: &SyncStatus) -> Result<(), StoreError> {
        let item = to_item(&SyncStatusItem {
            pk: keys::integration(&status.integration),
            sk: keys::SYNC_STATUS.into(),
            kind: "sync-status".into(),
            status: status.clone(),
        })?;
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(StoreError::aws)?;
        Ok(())
    }

    async fn user_by_email(&self, integration: &str, email: &str) -> Result<Option<DirectoryUser>, StoreError> {
        let item = self.first_in_gsi1(keys::user_by_email(integration, email), "USER").await?;
        item.map(|item| from_item::<UserItem>(item).map(|i| i.user)).transpose()
    }

    async fn group_by_name(&self, integration: &str, name: &str) -> Result<Option<DirectoryGroup>, StoreError> {
        let item = self.first_in_gsi1(keys::group_by_name(integration, name), "GROUP").await?;
        item.map(|item| from_item::<GroupItem>(item).map(|i| i.group)).transpose()
    }

    async fn is_member(&self, integration: &str, group_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::memberships(integration), &keys::membership_sort(group_id, user_id))))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", table::PARTITION_KEY)
            .send()
            .await
            .map_err(StoreError::aws)?;
        Ok(output.item.is_some())
    }

    async fn sync_status(&self, integration: &str) -> Result<Option<SyncStatus>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::integration(integration), keys::SYNC_STATUS)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::aws)?;
        output.item.map(|item| from_item::<SyncStatusItem>(item).map(|i| i.status)).transpose()
    }
}
