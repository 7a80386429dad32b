//! Adapters: the ports implemented over the outside world. JumpCloud over reqwest; DynamoDB,
//! EventBridge Scheduler, EventBridge and Secrets Manager over the AWS SDK; `policy_cache`, the
//! applied policy read at most once per TTL; and `setup`, which creates the resources the template
//! declares (for `jitctl setup` and the local stack); `slack`, Slack approvals over Slack's Web API
//! (a decorator of the event bus, and what `POST /slack/interactions` calls); `ttl_cache`, the one
//! read-through cache with a time to live that the secrets and the policy are read through; `sqs`,
//! the fanned-out sync's parts.

pub mod aws;
pub mod dynamodb;
pub mod eventbridge;
pub mod jumpcloud;
pub mod policy_cache;
pub mod scheduler;
pub mod secrets_manager;
pub mod setup;
pub mod slack;
pub mod sqs;
pub mod ttl_cache;
