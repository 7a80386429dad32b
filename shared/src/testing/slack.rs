//! Doubles of Slack approvals' seams: a fixed app secret and messages kept in memory.

use crate::{
    adapters::slack::{PostedMessage, SlackAppSource, SlackMessageStore},
    credentials::SlackSecret,
    ports::{SecretsError, StoreError},
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::{collections::HashMap, sync::Arc, sync::Mutex};

/// The Slack app's secret as given (`None`: Slack is off).
#[derive(Default)]
pub struct StaticSlackApp(pub Option<Arc<SlackSecret>>);

#[async_trait]
impl SlackAppSource for StaticSlackApp {
    async fn current(&self) -> Result<Option<Arc<SlackSecret>>, SecretsError> {
        Ok(self.0.clone())
    }
}

/// Each request's messages, appended as the DynamoDB item's `list_append` does.
#[derive(Default)]
pub struct MemorySlackMessages(Mutex<HashMap<String, Vec<PostedMessage>>>);

#[async_trait]
impl SlackMessageStore for MemorySlackMessages {
    async fn record(&self, subject: &str, messages: &[PostedMessage], _: DateTime<Utc>) -> Result<(), StoreError> {
        self.0.lock().expect("lock").entry(subject.to_owned()).or_default().extend_from_slice(messages);
        Ok(())
    }
    async fn messages(&self, subject: &str) -> Result<Vec<PostedMessage>, StoreError> {
        Ok(self.0.lock().expect("lock").get(subject).cloned().unwrap_or_default())
    }
}
