//! Creates the product's resources idempotently: the table with its indexes and TTL, the schedule
//! group, the event bus and, for the local stack, a tagged secret for the simulator. Used by
//! `jitctl setup`; the table comes from [`crate::adapters::dynamodb::table`], the same definition the template
//! is checked against.

use crate::{adapters::dynamodb::table, config::Config};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_secretsmanager::types::Tag;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    AlreadyThere,
    Updated,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::AlreadyThere => "already there",
            Self::Updated => "updated",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub resource: String,
    pub outcome: Outcome,
}

/// A secret to create for a local integration (the simulator's key).
pub struct LocalSecret {
    pub secret_name: String,
    /// The JSON value: `{"token", "org_id"?, "name"?}`.
    pub value: String,
}

impl fmt::Debug for LocalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSecret").field("secret_name", &self.secret_name).field("value", &"<redacted>").finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("setup of {resource} failed: {reason}")]
pub struct SetupError {
    pub resource: String,
    pub reason: String,
}

fn failed<E: std::error::Error + 'static>(resource: &str) -> impl FnOnce(E) -> SetupError + '_ {
    move |e| SetupError {
        resource: resource.to_owned(),
        reason: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

pub async fn ensure_all(
    sdk: &SdkConfig,
    config: &Config,
    local_secret: Option<&LocalSecret>,
) -> Result<Vec<Step>, SetupError> {
    let mut steps = vec![
        ensure_table(&aws_sdk_dynamodb::Client::new(sdk), &config.table_name).await?,
        ensure_schedule_group(&aws_sdk_scheduler::Client::new(sdk), &config.schedule_group).await?,
        ensure_event_bus(&aws_sdk_eventbridge::Client::new(sdk), &config.event_bus_name).await?,
    ];
    if let Some(fanout) = &config.fanout {
        steps.extend(ensure_sync_parts_queue(&aws_sdk_sqs::Client::new(sdk), &fanout.queue_url).await?);
    }
    if let Some(secret) = local_secret {
        steps.push(ensure_secret(&aws_sdk_secretsmanager::Client::new(sdk), config, secret).await?);
    }
    Ok(steps)
}

/// The sync parts' visibility timeout: six times the sync function's (`SyncPartsQueue`).
pub const SYNC_PARTS_VISIBILITY_SECS: u32 = 3_600;

/// The fanned-out sync's queue that `SYNC_QUEUE_URL` names (its last path segment), and its
/// dead-letter queue (`{name}-dead-letters`), as the template's `SyncPartsQueue` has them: a part
/// received [`PART_ATTEMPTS`](crate::domain::fanout::PART_ATTEMPTS) times goes there. Creating a
/// queue that exists with the same attributes is a no-op in SQS.
pub async fn ensure_sync_parts_queue(client: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Vec<Step>, SetupError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let name = queue_url.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
    let resource = format!("queue {name}");
    let sqs_failed = |e: aws_sdk_sqs::error::SdkError<_, _>| -> SetupError {
        SetupError { resource: resource.clone(), reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string() }
    };
    let exists = |name: &str| {
        let name = name.to_owned();
        async move { client.get_queue_url().queue_name(&name).send().await.is_ok() }
    };
    let dead_letters = format!("{name}-dead-letters");
    let dlq_existed = exists(&dead_letters).await;
    let dlq = client
        .create_queue()
        .queue_name(&dead_letters)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e: aws_sdk_sqs::error::SdkError<_, _>| SetupError {
            resource: format!("queue {dead_letters}"),
            reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?;
    let dlq_url = dlq.queue_url.unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| SetupError {
            resource: format!("queue {dead_letters}"),
            reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": crate::domain::fanout::PART_ATTEMPTS,
    });
    let existed = exists(&name).await;
    client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::VisibilityTimeout, SYNC_PARTS_VISIBILITY_SECS.to_string())
        .attributes(QueueAttributeName::MessageRetentionPeriod, "86400")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(sqs_failed)?;
    let outcome = |existed: bool| if existed { Outcome::AlreadyThere } else { Outcome::Created };
    Ok(vec![
        Step { resource: format!("queue {dead_letters}"), outcome: outcome(dlq_existed) },
        Step { resource: resource.clone(), outcome: outcome(existed) },
    ])
}

pub async fn ensure_table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<Step, SetupError> {
    let resource = format!("table {name}");
    let created = client
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(table::attribute_definitions()))
        .set_key_schema(Some(table::key_schema()))
        .set_global_secondary_indexes(Some(table::global_secondary_indexes()))
        .billing_mode(table::BILLING_MODE)
        .send()
        .await;
    let outcome = match created {
        Ok(_) => Outcome::Created,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Outcome::AlreadyThere,
        Err(e) => return Err(failed(&resource)(e)),
    };
    // TTL can only be set on an active table; waiting keeps `setup` usable right before a sync.
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(std::time::Duration::from_secs(120))
        .await
        .map_err(|e| SetupError { resource: resource.clone(), reason: e.to_string() })?;
    let ttl = client.describe_time_to_live().table_name(name).send().await.map_err(failed(&resource))?;
    let enabled = ttl.time_to_live_description().and_then(|d| d.time_to_live_status()).is_some_and(|s| {
        matches!(
            s,
            aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled | aws_sdk_dynamodb::types::TimeToLiveStatus::Enabling
        )
    });
    if !enabled {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .attribute_name(table::TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .expect("complete TTL specification"),
            )
            .send()
            .await
            .map_err(failed(&resource))?;
    }
    Ok(Step { resource, outcome })
}

pub async fn ensure_schedule_group(client: &aws_sdk_scheduler::Client, name: &str) -> Result<Step, SetupError> {
    let resource = format!("schedule group {name}");
    // Look first: moto, unlike AWS, accepts a second group of the same name without a conflict.
    match client.get_schedule_group().name(name).send().await {
        Ok(_) => return Ok(Step { resource, outcome: Outcome::AlreadyThere }),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => return Err(failed(&resource)(e)),
    }
    let outcome = match client.create_schedule_group().name(name).send().await {
        Ok(_) => Outcome::Created,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => Outcome::AlreadyThere,
        Err(e) => return Err(failed(&resource)(e)),
    };
    Ok(Step { resource, outcome })
}

pub async fn ensure_event_bus(client: &aws_sdk_eventbridge::Client, name: &str) -> Result<Step, SetupError> {
    let resource = format!("event bus {name}");
    let outcome = match client.create_event_bus().name(name).send().await {
        Ok(_) => Outcome::Created,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_already_exists_exception()) => {
            Outcome::AlreadyThere
        }
        Err(e) => return Err(failed(&resource)(e)),
    };
    Ok(Step { resource, outcome })
}

/// Creates the secret with the discovery tag, or brings an existing one's value and tag up to date.
pub async fn ensure_secret(
    client: &aws_sdk_secretsmanager::Client,
    config: &Config,
    secret: &LocalSecret,
) -> Result<Step, SetupError> {
    let resource = format!("secret {}", secret.secret_name);
    let tag = Tag::builder().key(&config.secret_tag_key).value(&config.secret_tag_value).build();
    let created =
        client.create_secret().name(&secret.secret_name).secret_string(&secret.value).tags(tag.clone()).send().await;
    let outcome = match created {
        Ok(_) => Outcome::Created,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => {
            client
                .put_secret_value()
                .secret_id(&secret.secret_name)
                .secret_string(&secret.value)
                .send()
                .await
                .map_err(failed(&resource))?;
            client.tag_resource().secret_id(&secret.secret_name).tags(tag).send().await.map_err(failed(&resource))?;
            Outcome::Updated
        }
        Err(e) => return Err(failed(&resource)(e)),
    };
    Ok(Step { resource, outcome })
}
