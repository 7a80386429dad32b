//! State in DynamoDB (one table, see [`table`]): the synced directory and the grants.

mod directory_store;
mod grant_store;
mod keys;
mod membership_oracle;
pub mod table;

pub use directory_store::DynamoStore;
pub use grant_store::DynamoGrantStore;

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
