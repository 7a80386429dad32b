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
