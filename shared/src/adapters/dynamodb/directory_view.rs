//! One integration's whole synced directory, for `jitctl policy plan` (an operator's command: it
//! reads every user, group and membership once; the request paths never do).

use super::{item::from_item, keys, table, DynamoStore, StoreError};
use crate::{
    domain::{model::DirectoryUser, policy::DirectoryView},
    ports::DirectoryStore,
};
use aws_sdk_dynamodb::types::AttributeValue;

impl DynamoStore {
    /// Users, groups and direct memberships of one integration, as the last sync stored them.
    pub async fn directory_view(&self, integration: &str) -> Result<DirectoryView, StoreError> {
        let (users, groups, digest) = futures::try_join!(
            self.all_users(integration),
            self.list_groups(integration),
            self.load_digest(integration)
        )?;
        Ok(DirectoryView {
            integration: integration.to_owned(),
            users,
            groups,
            memberships: digest.memberships.into_iter().collect(),
        })
    }

    async fn all_users(&self, integration: &str) -> Result<Vec<DirectoryUser>, StoreError> {
        let mut pages = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", table::PARTITION_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(keys::users(integration)))
            .into_paginator()
            .send();
        let mut users = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::aws)?.items.unwrap_or_default() {
                // A user item is the user's own fields plus keys and a hash: those are ignored.
                users.push(from_item::<DirectoryUser>(item)?);
            }
        }
        users.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(users)
    }
}
