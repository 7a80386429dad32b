//! The local stand-in for Lambda's SQS event source mapping ([`SqsRelay`]): moto keeps the
//! fanned-out sync's parts on its SQS but never hands them to a function. The relay does what the
//! deployed mapping (`SyncPartsEventSourceMapping`) does: receives, invokes `sync` with a
//! one-record SQS event (`BatchSize: 1`), and deletes the message unless the function reported
//! it failed (`ReportBatchItemFailures`); a failed one shows again after its visibility timeout,
//! and SQS moves it to the dead-letter queue after the queue's `maxReceiveCount`.

use crate::LambdaInvoker;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde_json::{json, Value};
use std::{fmt, sync::Arc};

/// The function the parts go to.
pub const PARTS_FUNCTION: &str = "sync";

pub struct SqsRelay {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    invoker: Arc<dyn LambdaInvoker>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub message_id: String,
    /// SQS's `ApproximateReceiveCount` for this delivery.
    pub receive_count: u32,
    /// `None`: done and deleted; otherwise why it stays on the queue.
    pub failure: Option<String>,
}

impl fmt::Display for Relayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            None => write!(f, "sync part {} -> {PARTS_FUNCTION}: done", self.message_id),
            Some(why) => write!(
                f,
                "sync part {} -> {PARTS_FUNCTION}: FAILED (receive {}), back on the queue: {why}",
                self.message_id, self.receive_count
            ),
        }
    }
}

/// The SQS event Lambda hands a function for one message (the shape of
/// `events/sync-part-sqs.json`).
pub fn sqs_event(queue_arn: &str, message: &Message) -> Value {
    let attributes: serde_json::Map<String, Value> = message
        .attributes
        .iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
        .collect();
    json!({
        "Records": [{
            "messageId": message.message_id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": attributes,
            "messageAttributes": {},
            "md5OfBody": message.md5_of_body,
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": queue_arn.split(':').nth(3).unwrap_or("us-east-1"),
        }]
    })
}

impl SqsRelay {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>, invoker: Arc<dyn LambdaInvoker>) -> Self {
        Self { client, queue_url: queue_url.into(), invoker }
    }

    /// Relays what is on the queue, one message per invocation, until a receive comes back empty.
    pub async fn drain(&self) -> Result<Vec<Relayed>, String> {
        let queue_arn = self.queue_arn().await?;
        let mut relayed = Vec::new();
        loop {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .map_err(|e| {
                    format!("receiving from {}: {}", self.queue_url, aws_sdk_sqs::error::DisplayErrorContext(e))
                })?;
            let Some(message) = received.messages.unwrap_or_default().into_iter().next() else {
                return Ok(relayed);
            };
            relayed.push(self.relay(&queue_arn, message).await?);
        }
    }

    async fn relay(&self, queue_arn: &str, message: Message) -> Result<Relayed, String> {
        let message_id = message.message_id.clone().unwrap_or_default();
        let receive_count = message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let event = sqs_event(queue_arn, &message);
        let failure = match self.invoker.invoke(PARTS_FUNCTION, &event.to_string()).await {
            Err(error) => Some(error),
            Ok(invocation) if !invocation.succeeded() => Some(invocation.body_excerpt),
            // One record, so the answer is short: `{"batchItemFailures":[]}` or one id.
            Ok(invocation) => match serde_json::from_str::<Value>(&invocation.body_excerpt) {
                Ok(answer) if answer["batchItemFailures"].as_array().is_some_and(Vec::is_empty) => None,
                Ok(answer) => Some(format!("reported failed: {answer}")),
                Err(e) => Some(format!("not a batch response ({e}): {}", invocation.body_excerpt)),
            },
        };
        if failure.is_none() {
            let receipt = message.receipt_handle.unwrap_or_default();
            self.client
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| format!("deleting {message_id}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        }
        Ok(Relayed { message_id, receive_count, failure })
    }

    async fn queue_arn(&self) -> Result<String, String> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("reading {}: {}", self.queue_url, aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(attributes
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap_or_default())
    }
}
