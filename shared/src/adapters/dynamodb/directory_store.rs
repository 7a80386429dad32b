//! The directory in DynamoDB. Writes respect AWS's limits by construction: 25 items per
//! `BatchWriteItem`, 100 keys per `BatchGetItem`, unprocessed items retried with backoff.
//!
//! Items: a user `pk=DIR#{integration}#USER`, `sk={id}`, `gsi1pk=EMAIL#..`, `gsi2pk=USERNAME#..`
//! (canonical username); a group `pk=DIR#{integration}#GROUP`, `gsi1pk=GROUPNAME#..`; a
//! membership `pk=DIR#{integration}#MEMBER`, `sk={group}#{user}`, `gsi1pk=MEMBEROF#{integration}#{user}`,
//! `gsi1sk={group}` (see `keys`).
//!
//! Items written before an index attribute existed (`gsi2pk` on users, `gsi1pk` on memberships)
//! are not in that index. `load_digest` reports them as outdated (a user with hash 0, a
//! membership in `memberships_to_rewrite`), so the next sync puts them again in the current
//! layout: from then on the index finds them. Until that sync, `user_by_username` and
//! `groups_of` do not see them.

use super::{
    item::{from_item, key, to_item, Item},
    keys, table,
    user_projections::{DigestItem, EmailItem, Projection, DIGEST, ID_AND_EMAIL},
    StoreError,
};
use crate::{
    domain::model::{content_hash, DirectoryChanges, DirectoryDigest, DirectoryGroup, DirectoryUser, Membership},
    ports::{DirectoryStore, StoredUserDigest, SyncStatus},
};
use async_trait::async_trait;
use aws_sdk_dynamodb::{
    types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest},
    Client,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The marker attribute of the current layout, per kind (see the module's documentation).
const USER_LAYOUT: &str = table::GSI2.partition_key;
const MEMBERSHIP_LAYOUT: &str = table::GSI1.partition_key;

mod batches;

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
    /// Absent on items of an older layout (read back, never written so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
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
    gsi1pk: String,
    gsi1sk: String,
    #[serde(flatten)]
    membership: Membership,
}

/// A running sync's claim on its integration, as sortable time: it lapses then.
const RUNNING_UNTIL: &str = "running_until";
/// The event cursor item's time (sortable text).
const EVENTS_UNTIL: &str = "events_until";

#[derive(Serialize, Deserialize)]
struct SyncStatusItem {
    pk: String,
    sk: String,
    kind: String,
    #[serde(flatten)]
    status: SyncStatus,
}

pub(super) fn put(item: Item) -> WriteRequest {
    WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().expect("item set")).build()
}

fn delete(key: Item) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(DeleteRequest::builder().set_key(Some(key)).build().expect("key set"))
        .build()
}

/// Which sort keys of a partition a query reads (DynamoDB compares them as UTF-8 bytes).
pub(super) enum SortRange {
    /// Those that begin with this.
    Prefix(String),
    /// Those from the first to the second, both included.
    Between(String, String),
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

    /// The sort key, content hash (`h`) and layout of every item of one partition, page by page:
    /// `(sk, h, current)`, where `current` says the item has the `layout` attribute (without a
    /// `layout`, every item is current). Only those attributes are read: sync never needs the
    /// items themselves back.
    /// Each item's sort key, hash and whether it is in the current `layout`, handed to `each` page
    /// by page (a large directory's keys are not collected twice over).
    async fn keys_and_hashes(
        &self,
        pk: String,
        with_hash: bool,
        layout: Option<&str>,
        mut each: impl FnMut(String, u64, bool) -> Result<(), StoreError> + Send,
    ) -> Result<(), StoreError> {
        let mut projection = vec!["#sk"];
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", table::PARTITION_KEY)
            .expression_attribute_names("#sk", table::SORT_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(pk));
        if with_hash {
            projection.push("#h");
            query = query.expression_attribute_names("#h", "h");
        }
        if let Some(layout) = layout {
            projection.push("#layout");
            query = query.expression_attribute_names("#layout", layout);
        }
        let mut pages = query.projection_expression(projection.join(", ")).into_paginator().send();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::aws)?.items.unwrap_or_default() {
                let sk = item.get(table::SORT_KEY).and_then(|v| v.as_s().ok()).cloned();
                let sk = sk.ok_or_else(|| StoreError::Mapping("item without a sort key".into()))?;
                // An item written before hashes existed has none: it differs, and is rewritten once.
                let h = item.get("h").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
                let current = layout.is_none_or(|name| item.contains_key(name));
                each(sk, h, current)?;
            }
        }
        Ok(())
    }

    /// Every item of one partition of the table or of an `index` whose sort key is in `sort`
    /// (every item without one), following `LastEvaluatedKey` page by page (1 MB each); with a
    /// `projection`, only that attribute is read back.
    pub(super) async fn query_partition(
        &self,
        index: Option<table::Index>,
        pk: String,
        sort: Option<SortRange>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let (pk_name, sk_name) = match index {
            Some(index) => (index.partition_key, index.sort_key),
            None => (table::PARTITION_KEY, table::SORT_KEY),
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(|i| i.name.to_owned()))
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", AttributeValue::S(pk));
        query = match sort {
            Some(SortRange::Prefix(prefix)) => query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":prefix", AttributeValue::S(prefix)),
            Some(SortRange::Between(low, high)) => query
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":low", AttributeValue::S(low))
                .expression_attribute_values(":high", AttributeValue::S(high)),
            None => query.key_condition_expression("#pk = :pk"),
        };
        if let Some(projection) = projection {
            query = query.projection_expression("#projected").expression_attribute_names("#projected", projection);
        }
        let mut pages = query.into_paginator().send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            items.extend(page.map_err(StoreError::aws)?.items.unwrap_or_default());
        }
        Ok(items)
    }

    /// The stored memberships (group id, user id) whose sort keys `{group}#{user}` are in
    /// `sort`: keys only, page by page.
    async fn membership_keys(&self, integration: &str, sort: SortRange) -> Result<Vec<(String, String)>, StoreError> {
        let items =
            self.query_partition(None, keys::memberships(integration), Some(sort), Some(table::SORT_KEY)).await?;
        items
            .iter()
            .map(|item| {
                let sk = required_text(item, table::SORT_KEY)?;
                // A user id is JumpCloud's: no `#` in it.
                sk.rsplit_once('#')
                    .map(|(group, user)| (group.to_owned(), user.to_owned()))
                    .ok_or_else(|| StoreError::Mapping(format!("membership key {sk:?}")))
            })
            .collect()
    }

    /// The first item of an index partition with this sort key (emails, usernames and names are
    /// unique in a directory; a stale duplicate during a rename is harmless: the sync removes it).
    async fn first_in(
        &self,
        index: table::Index,
        partition: String,
        sort: &str,
        projection: Option<&Projection>,
    ) -> Result<Option<Item>, StoreError> {
        let mut names = projection.map(Projection::names).unwrap_or_default();
        names.extend([
            ("#pk".to_owned(), index.partition_key.to_owned()),
            ("#sk".to_owned(), index.sort_key.to_owned()),
        ]);
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index.name)
            .key_condition_expression("#pk = :pk AND #sk = :sk")
            .set_projection_expression(projection.map(|p| p.expression.to_owned()))
            .set_expression_attribute_names(Some(names))
            .expression_attribute_values(":pk", AttributeValue::S(partition))
            .expression_attribute_values(":sk", AttributeValue::S(sort.to_owned()))
            .limit(1)
            .send()
            .await
            .map_err(StoreError::aws)?;
        Ok(output.items.unwrap_or_default().into_iter().next())
    }
}

fn user_of(item: Item) -> Result<DirectoryUser, StoreError> {
    from_item::<UserItem>(item).map(|i| i.user)
}

/// A string attribute every item of the kind has.
fn required_text(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Mapping(format!("directory item without {name}")))
}

#[async_trait]
impl DirectoryStore for DynamoStore {
    async fn load_digest(&self, integration: &str) -> Result<DirectoryDigest, StoreError> {
        let mut users = HashMap::new();
        let mut groups = HashMap::new();
        let mut stored = BTreeSet::new();
        let mut memberships_to_rewrite = BTreeSet::new();
        futures::try_join!(
            // A user item without `gsi2pk` reports hash 0, which no content hash is (in practice):
            // sync puts it again, with the attribute.
            self.keys_and_hashes(keys::users(integration), true, Some(USER_LAYOUT), |id, h, current| {
                users.insert(id, if current { h } else { 0 });
                Ok(())
            }),
            self.keys_and_hashes(keys::groups(integration), true, None, |id, h, _| {
                groups.insert(id, h);
                Ok(())
            }),
            self.keys_and_hashes(keys::memberships(integration), false, Some(MEMBERSHIP_LAYOUT), |sk, _, current| {
                let (group_id, user_id) =
                    sk.split_once('#').ok_or_else(|| StoreError::Mapping(format!("membership key {sk:?}")))?;
                let membership = Membership { group_id: group_id.into(), user_id: user_id.into() };
                if !current {
                    memberships_to_rewrite.insert(membership.clone());
                }
                stored.insert(membership);
                Ok(())
            }),
        )?;
        Ok(DirectoryDigest { users, groups, memberships: stored, memberships_to_rewrite })
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
                gsi2pk: Some(keys::user_by_username(integration, &user.username)),
                gsi2sk: Some("USER".into()),
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
            let (group_id, user_id) = (membership.group_id.to_string(), membership.user_id.to_string());
            requests.push(put(to_item(&MembershipItem {
                pk: keys::memberships(integration),
                sk: keys::membership_sort(&group_id, &user_id),
                kind: "membership".into(),
                integration: integration.into(),
                gsi1pk: keys::member_of(integration, &user_id),
                gsi1sk: group_id,
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

    async fn claim_sync(&self, status: &SyncStatus, until: DateTime<Utc>) -> Result<Option<SyncStatus>, StoreError> {
        let mut item = to_item(&SyncStatusItem {
            pk: keys::integration(&status.integration),
            sk: keys::SYNC_STATUS.into(),
            kind: "sync-status".into(),
            status: status.clone(),
        })?;
        item.insert(RUNNING_UNTIL.into(), AttributeValue::S(keys::sortable_time(until)));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(#pk) OR #state <> :running OR attribute_not_exists(#until) OR #until <= :now",
            )
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#until", RUNNING_UNTIL)
            .expression_attribute_values(":running", AttributeValue::S("running".into()))
            .expression_attribute_values(":now", AttributeValue::S(keys::sortable_time(status.started_at)))
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                // Another sync holds it: say which (it may have finished a moment ago: then
                // the caller simply reports it).
                Ok(Some(self.sync_status(&status.integration).await?.unwrap_or_else(|| status.clone())))
            }
            Err(e) => Err(StoreError::aws(e)),
        }
    }

    async fn user_by_email(&self, integration: &str, email: &str) -> Result<Option<DirectoryUser>, StoreError> {
        let item = self.first_in(table::GSI1, keys::user_by_email(integration, email), "USER", None).await?;
        item.map(user_of).transpose()
    }

    async fn user_key_by_email(&self, integration: &str, email: &str) -> Result<Option<(String, String)>, StoreError> {
        let partition = keys::user_by_email(integration, email);
        let item = self.first_in(table::GSI1, partition, "USER", Some(&ID_AND_EMAIL)).await?;
        item.map(|item| from_item::<EmailItem>(item).map(|i| (i.id, i.email))).transpose()
    }

    async fn group_by_name(&self, integration: &str, name: &str) -> Result<Option<DirectoryGroup>, StoreError> {
        let item = self.first_in(table::GSI1, keys::group_by_name(integration, name), "GROUP", None).await?;
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

    async fn user_by_id(&self, integration: &str, id: &str) -> Result<Option<DirectoryUser>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::users(integration), id)))
            .send()
            .await
            .map_err(StoreError::aws)?;
        output.item.map(user_of).transpose()
    }

    async fn group_by_id(&self, integration: &str, id: &str) -> Result<Option<DirectoryGroup>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::groups(integration), id)))
            .send()
            .await
            .map_err(StoreError::aws)?;
        output.item.map(|item| from_item::<GroupItem>(item).map(|i| i.group)).transpose()
    }

    async fn users_by_ids(&self, integration: &str, ids: &[String]) -> Result<Vec<DirectoryUser>, StoreError> {
        let found = self.users_batch(integration, ids, None).await?;
        found.into_iter().map(user_of).collect()
    }

    async fn user_digests_by_ids(
        &self,
        integration: &str,
        ids: &[String],
    ) -> Result<HashMap<String, StoredUserDigest>, StoreError> {
        let found = self.users_batch(integration, ids, Some(&DIGEST)).await?;
        found.into_iter().map(|item| from_item::<DigestItem>(item).map(DigestItem::pair)).collect()
    }

    async fn user_emails_by_ids(
        &self,
        integration: &str,
        ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        let found = self.users_batch(integration, ids, Some(&ID_AND_EMAIL)).await?;
        found.into_iter().map(|item| from_item::<EmailItem>(item).map(|i| (i.id, i.email))).collect()
    }

    async fn user_by_username(&self, integration: &str, username: &str) -> Result<Option<DirectoryUser>, StoreError> {
        let item = self.first_in(table::GSI2, keys::user_by_username(integration, username), "USER", None).await?;
        item.map(user_of).transpose()
    }

    async fn group_members(&self, integration: &str, group_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = SortRange::Prefix(keys::membership_sort(group_id, ""));
        Ok(self.membership_keys(integration, prefix).await?.into_iter().map(|(_, user)| user).collect())
    }

    async fn memberships_of_groups(
        &self,
        integration: &str,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // `{group}#{user}`: from the first group's `#` to past every user of the last one.
        let span =
            SortRange::Between(keys::membership_sort(first, ""), keys::membership_sort(last, &char::MAX.to_string()));
        self.membership_keys(integration, span).await
    }

    async fn groups_of(&self, integration: &str, user_id: &str) -> Result<Vec<String>, StoreError> {
        let partition = keys::member_of(integration, user_id);
        let items = self.query_partition(Some(table::GSI1), partition, None, Some(table::GSI1.sort_key)).await?;
        items.iter().map(|item| required_text(item, table::GSI1.sort_key)).collect()
    }

    async fn list_users(&self, integration: &str) -> Result<Vec<DirectoryUser>, StoreError> {
        let items = self.query_partition(None, keys::users(integration), None, None).await?;
        items.into_iter().map(user_of).collect()
    }

    async fn user_ids_between(
        &self,
        integration: &str,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        if let (Some(after), Some(upto)) = (after, upto) {
            if after >= upto {
                return Ok(Vec::new()); // and DynamoDB refuses such a `BETWEEN`
            }
        }
        let mut condition = "#pk = :pk".to_owned();
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", table::PARTITION_KEY)
            .expression_attribute_names("#sk", table::SORT_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(keys::users(integration)))
            .projection_expression("#sk");
        // A key condition takes one range: both ends as `BETWEEN` (inclusive; `after` itself is
        // dropped below), or one comparison.
        match (after, upto) {
            (Some(_), Some(_)) => condition.push_str(" AND #sk BETWEEN :after AND :upto"),
            (Some(_), None) => condition.push_str(" AND #sk > :after"),
            (None, Some(_)) => condition.push_str(" AND #sk <= :upto"),
            (None, None) => {}
        }
        if let Some(after) = after {
            query = query.expression_attribute_values(":after", AttributeValue::S(after.to_owned()));
        }
        if let Some(upto) = upto {
            query = query.expression_attribute_values(":upto", AttributeValue::S(upto.to_owned()));
        }
        let mut pages = query.key_condition_expression(condition).into_paginator().send();
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::aws)?.items.unwrap_or_default() {
                let id = required_text(&item, table::SORT_KEY)?;
                if Some(id.as_str()) != after {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    async fn event_cursor(&self, integration: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::integration(integration), keys::EVENT_CURSOR)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::aws)?;
        let Some(item) = output.item else { return Ok(None) };
        let at = item
            .get(EVENTS_UNTIL)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Mapping(format!("the event cursor of {integration} has no {EVENTS_UNTIL}")))?;
        at.parse().map(Some).map_err(|e| StoreError::Mapping(format!("the event cursor of {integration}: {e}")))
    }

    async fn put_event_cursor(
        &self,
        integration: &str,
        to: DateTime<Utc>,
        expected: Option<Option<DateTime<Utc>>>,
    ) -> Result<bool, StoreError> {
        let mut item = key(keys::integration(integration), keys::EVENT_CURSOR);
        item.insert("kind".into(), AttributeValue::S("event-cursor".into()));
        item.insert(EVENTS_UNTIL.into(), AttributeValue::S(keys::sortable_time(to)));
        let mut put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        put = match expected {
            None => put,
            Some(None) => put.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", "pk"),
            Some(Some(at)) => put
                .condition_expression("#until = :expected")
                .expression_attribute_names("#until", EVENTS_UNTIL)
                .expression_attribute_values(":expected", AttributeValue::S(keys::sortable_time(at))),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(StoreError::aws(e)),
        }
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
