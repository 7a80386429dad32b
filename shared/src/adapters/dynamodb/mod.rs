//! State in DynamoDB (one table, see [`table`]): the synced directory, the grants, the access
//! policy's versions, and where each request's Slack messages are.

mod directory_store;
mod directory_view;
mod grant_store;
mod item;
mod keys;
mod membership_oracle;
mod policy_store;
mod shared_rate;
mod slack_messages;
mod sync_runs;
pub mod table;
mod user_projections;

pub use directory_store::DynamoStore;
pub use grant_store::DynamoGrantStore;
pub use policy_store::DynamoPolicyStore;
pub use shared_rate::DynamoSharedRate;
pub use slack_messages::DynamoSlackMessages;

pub use crate::ports::StoreError;

// The port's error, made from an SDK error here, where the SDK is known.
impl StoreError {
    pub(crate) fn aws<E: std::error::Error + 'static>(e: E) -> Self {
        Self::Aws(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
    }
}
