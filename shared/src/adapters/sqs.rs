//! The fanned-out sync's parts on SQS ([`PartQueue`]): `SendMessageBatch`, 10 entries a call
//! (SQS's limit; a part's message is a few hundred bytes, far below the 256 KB per call), the
//! entries SQS refused sent again up to [`RESENDS`] times.

use crate::ports::{PartMessage, PartQueue, QueueError};
use async_trait::async_trait;
use aws_sdk_sqs::{types::SendMessageBatchRequestEntry, Client};

const BATCH: usize = 10;
const RESENDS: usize = 3;

pub struct SqsPartQueue {
    client: Client,
    queue_url: String,
}

impl SqsPartQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

fn aws<E: std::error::Error + 'static>(e: E) -> QueueError {
    QueueError::Aws(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

#[async_trait]
impl PartQueue for SqsPartQueue {
    async fn send(&self, parts: &[PartMessage]) -> Result<(), QueueError> {
        for batch in parts.chunks(BATCH) {
            let mut entries = batch
                .iter()
                .enumerate()
                .map(|(i, part)| {
                    let body = serde_json::to_string(part).map_err(|e| QueueError::Aws(e.to_string()))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| QueueError::Aws(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for attempt in 0..=RESENDS {
                let output = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(aws)?;
                let refused: Vec<&str> = output.failed.iter().map(|f| f.id.as_str()).collect();
                if refused.is_empty() {
                    break;
                }
                if attempt == RESENDS {
                    let reasons: Vec<String> = output
                        .failed
                        .iter()
                        .map(|f| format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")))
                        .collect();
                    return Err(QueueError::Aws(format!(
                        "SQS refused {} messages: {}",
                        refused.len(),
                        reasons.join("; ")
                    )));
                }
                entries.retain(|e| refused.contains(&e.id.as_str()));
            }
        }
        Ok(())
    }
}
