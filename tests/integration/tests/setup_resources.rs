//! `setup` against the local stack: idempotent, and the table matches its one definition.

use integration_tests::{sdk_config, unique};
use jit_shared::{
    adapters::dynamodb::table,
    adapters::setup::{ensure_all, LocalSecret, Outcome},
    config::Config,
};

#[tokio::test]
async fn setup_creates_everything_once_and_is_idempotent() {
    let sdk = sdk_config().await;
    let (table_name, group, bus, tag) = (unique("t"), unique("sg"), unique("bus"), unique("tag"));
    let vars = [
        ("TABLE_NAME", table_name.clone()),
        ("SCHEDULE_GROUP", group.clone()),
        ("EVENT_BUS_NAME", bus.clone()),
        ("SECRET_TAG_KEY", tag.clone()),
    ];
    let config = Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let secret = LocalSecret { secret_name: unique("jit-access/local"), value: r#"{"token":"sim-key"}"#.into() };
    assert!(!format!("{secret:?}").contains("sim-key"));

    let first = ensure_all(&sdk, &config, Some(&secret)).await.unwrap();
    assert!(first.iter().all(|s| s.outcome == Outcome::Created), "{first:?}");
    let second = ensure_all(&sdk, &config, Some(&secret)).await.unwrap();
    assert_eq!(
        second.iter().map(|s| s.outcome.clone()).collect::<Vec<_>>(),
        vec![Outcome::AlreadyThere, Outcome::AlreadyThere, Outcome::AlreadyThere, Outcome::Updated]
    );

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let described = dynamodb.describe_table().table_name(&table_name).send().await.unwrap();
    let t = described.table().unwrap();
    let mut indexes: Vec<&str> = t.global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
    indexes.sort();
    assert_eq!(indexes, table::INDEXES.iter().map(|i| i.name).collect::<Vec<_>>());
    let ttl = dynamodb.describe_time_to_live().table_name(&table_name).send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some(table::TTL_ATTRIBUTE));

    let scheduler = aws_sdk_scheduler::Client::new(&sdk);
    assert_eq!(scheduler.get_schedule_group().name(&group).send().await.unwrap().name(), Some(group.as_str()));
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    assert_eq!(events.describe_event_bus().name(&bus).send().await.unwrap().name(), Some(bus.as_str()));
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let described = secrets.describe_secret().secret_id(&secret.secret_name).send().await.unwrap();
    assert!(described.tags().iter().any(|t| t.key() == Some(tag.as_str()) && t.value() == Some("true")));
}

#[tokio::test]
async fn with_the_fan_out_setup_creates_the_parts_queue_and_its_dead_letters_like_the_template() {
    let sdk = sdk_config().await;
    let name = unique("jit-sync-parts");
    // moto names its queues `{endpoint}/{account}/{name}`: the configured URL's last segment.
    let url = format!("http://127.0.0.1:1/123456789012/{name}");
    let vars = [("TABLE_NAME", unique("t")), ("SYNC_QUEUE_URL", url)];
    let config = Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let steps = ensure_all(&sdk, &config, None).await.unwrap();
    let queues: Vec<(String, Outcome)> = steps
        .iter()
        .filter(|s| s.resource.starts_with("queue "))
        .map(|s| (s.resource.clone(), s.outcome.clone()))
        .collect();
    assert_eq!(
        queues,
        vec![(format!("queue {name}-dead-letters"), Outcome::Created), (format!("queue {name}"), Outcome::Created)]
    );
    let again = ensure_all(&sdk, &config, None).await.unwrap();
    assert!(again.iter().all(|s| s.outcome == Outcome::AlreadyThere), "{again:?}");

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs.get_queue_url().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let attribute =
        |n: &str| attributes.get(&aws_sdk_sqs::types::QueueAttributeName::from(n)).cloned().unwrap_or_default();
    assert_eq!(attribute("VisibilityTimeout"), jit_shared::adapters::setup::SYNC_PARTS_VISIBILITY_SECS.to_string());
    let redrive: serde_json::Value = serde_json::from_str(&attribute("RedrivePolicy")).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        jit_shared::domain::fanout::PART_ATTEMPTS.to_string()
    );
    assert!(redrive["deadLetterTargetArn"].as_str().unwrap().ends_with(&format!("{name}-dead-letters")));
}
