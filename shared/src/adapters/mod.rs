//! Adapters: the ports implemented over the outside world. JumpCloud over reqwest; DynamoDB,
//! EventBridge Scheduler, EventBridge and Secrets Manager over the AWS SDK; and `setup`, which
//! creates the resources the template declares (for `jitctl setup` and the local stack).

pub mod aws;
pub mod dynamodb;
pub mod eventbridge;
pub mod jumpcloud;
pub mod scheduler;
pub mod secrets_manager;
pub mod setup;
