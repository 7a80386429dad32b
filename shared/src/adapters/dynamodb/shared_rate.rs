//! JumpCloud's rate budget shared by every sync worker of an integration ([`SharedRate`]): one
//! counter item per second, `pk=RATE#{integration}`, `sk={epoch second}`, expiring after an hour.
//! A worker takes a few requests at a time with a conditional `ADD` that never lets the second's
//! count pass `per_second`; refused, it waits for the next second. So the workers together send at
//! most `per_second` requests in any second, whatever their number, and one write serves
//! [`TAKE`] requests. What a worker took and did not use in its second is lost: the budget is a
//! ceiling, never exceeded.

use super::{item::key, table, StoreError};
use crate::ports::SharedRate;
use async_trait::async_trait;
use aws_sdk_dynamodb::{types::AttributeValue, Client};
use chrono::Utc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Requests taken per write.
const TAKE: u32 = 4;

pub struct DynamoSharedRate {
    client: Client,
    table: String,
    integration: String,
    per_second: u32,
    /// This worker's requests left in a second: `(epoch second, left)`.
    taken: Mutex<(i64, u32)>,
}

impl DynamoSharedRate {
    pub fn new(client: Client, table: impl Into<String>, integration: &str, per_second: u32) -> Self {
        Self {
            client,
            table: table.into(),
            integration: integration.to_owned(),
            per_second: per_second.max(1),
            taken: Mutex::new((0, 0)),
        }
    }

    /// Takes `n` of second `second`'s requests; `false` when fewer than `n` are left.
    async fn take(&self, second: i64, n: u32) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("RATE#{}", self.integration), &second.to_string())))
            .update_expression("ADD #used :n SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#used) OR #used <= :most")
            .expression_attribute_names("#used", "used")
            .expression_attribute_names("#ttl", table::TTL_ATTRIBUTE)
            .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
            .expression_attribute_values(":most", AttributeValue::N((self.per_second - n).to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N((second + 3600).to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(StoreError::aws(e)),
        }
    }
}

#[async_trait]
impl SharedRate for DynamoSharedRate {
    async fn acquire(&self) -> Result<(), StoreError> {
        // Held across the write: this worker's other requests wait for what it takes.
        let mut taken = self.taken.lock().await;
        loop {
            let now = Utc::now();
            let second = now.timestamp();
            if taken.0 == second && taken.1 > 0 {
                taken.1 -= 1;
                return Ok(());
            }
            // Fewer than `TAKE` left in the second: take them one by one.
            for n in [TAKE.min(self.per_second), 1] {
                if self.take(second, n).await? {
                    *taken = (second, n - 1);
                    return Ok(());
                }
            }
            let into_second = now.timestamp_subsec_millis() as u64;
            tokio::time::sleep(Duration::from_millis(1_000u64.saturating_sub(into_second).max(1))).await;
        }
    }
}
