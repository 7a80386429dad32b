//! State in DynamoDB (one table, see [`table`]) and an in-memory double for domain tests.

mod dynamo;
mod grants_dynamo;
mod keys;
mod memory;
pub mod table;

pub use dynamo::DynamoStore;
pub use grants_dynamo::DynamoGrantStore;
pub use memory::MemoryStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB: {0}")]
    Aws(String),
    #[error("DynamoDB item could not be mapped: {0}")]
    Mapping(String),
    #[error("DynamoDB kept {0} writes unprocessed after retrying")]
    Unprocessed(usize),
}

impl StoreError {
    pub(crate) fn aws<E: std::error::Error + 'static>(e: E) -> Self {
        Self::Aws(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
    }
}
