//! Where a request's Slack messages are ([`SlackMessageStore`]): one item per request,
//! `pk=SLACK#{grant id}`, `sk=MESSAGES`, and one per extension of a grant,
//! `pk=SLACK#{grant id}#extension#{its request time}` (`slack::extension_subject`), each holding
//! `messages` (a list of `{channel, ts}`) and `ttl`.
//! `record` appends with one `UpdateItem` (`list_append`), so a second post adds to the first
//! instead of replacing it; the item expires `ttl` after the request's first post. Not an
//! audit record: nothing under `AUDIT#`.

use super::{
    item::{from_item, key},
    keys, table, StoreError,
};
use crate::adapters::slack::{PostedMessage, SlackMessageStore};
use async_trait::async_trait;
use aws_sdk_dynamodb::{types::AttributeValue, Client};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Clone)]
pub struct DynamoSlackMessages {
    client: Client,
    table: String,
}

impl DynamoSlackMessages {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[derive(Deserialize)]
struct MessagesItem {
    #[serde(default)]
    messages: Vec<PostedMessage>,
}

#[async_trait]
impl SlackMessageStore for DynamoSlackMessages {
    async fn record(
        &self,
        subject: &str,
        messages: &[PostedMessage],
        keep_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let list = messages
            .iter()
            .map(|m| {
                AttributeValue::M(HashMap::from([
                    ("channel".to_owned(), AttributeValue::S(m.channel.clone())),
                    ("ts".to_owned(), AttributeValue::S(m.ts.clone())),
                ]))
            })
            .collect();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::slack_messages(subject), keys::SLACK_MESSAGES)))
            .update_expression("SET #messages = list_append(if_not_exists(#messages, :none), :new), #ttl = :ttl")
            .expression_attribute_names("#messages", "messages")
            .expression_attribute_names("#ttl", table::TTL_ATTRIBUTE)
            .expression_attribute_values(":none", AttributeValue::L(vec![]))
            .expression_attribute_values(":new", AttributeValue::L(list))
            .expression_attribute_values(":ttl", AttributeValue::N(keep_until.timestamp().to_string()))
            .send()
            .await
            .map_err(StoreError::aws)?;
        Ok(())
    }

    async fn messages(&self, subject: &str) -> Result<Vec<PostedMessage>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::slack_messages(subject), keys::SLACK_MESSAGES)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::aws)?;
        Ok(output.item.map(from_item::<MessagesItem>).transpose()?.map(|i| i.messages).unwrap_or_default())
    }
}
