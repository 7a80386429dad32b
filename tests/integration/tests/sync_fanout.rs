//! The fanned-out full sync on the local stack: the real `sync` handler plans onto moto's SQS and
//! works the parts it receives back (as Lambda's SQS event source mapping would hand them over),
//! its records and the shared rate budget in moto's DynamoDB, the simulator as JumpCloud.

use aws_sdk_sqs::types::QueueAttributeName;
use integration_tests::{event, lambda_event, unique, Stack};
use jit_schedule_runner::{sqs::SqsRelay, Invocation, LambdaInvoker};
use jit_shared::{
    adapters::dynamodb::{DynamoSharedRate, DynamoStore},
    handlers::sync::SyncHandler,
    ports::{DirectoryStore, SharedRate, SyncState},
};
use jumpcloud_sim::{GenerateSpec, Org, RunningSimulator, Simulator, UserState};
use serde_json::{json, Value};
use std::sync::Arc;

const KEY: &str = "fanout-admin-key-3c9a1e";

fn org() -> Org {
    Org::generate(&GenerateSpec {
        users: 1_200,
        groups: 40,
        avg_members: 30,
        seed: 20261201,
        api_key: KEY.into(),
        org_id: None,
    })
}

/// A queue whose messages show again at once when a worker reports them failed.
async fn queue(sqs: &aws_sdk_sqs::Client) -> String {
    let created = sqs
        .create_queue()
        .queue_name(unique("jit-sync-parts"))
        .attributes(QueueAttributeName::VisibilityTimeout, "0")
        .send()
        .await
        .expect("create queue");
    created.queue_url.expect("queue URL")
}

/// The sync handler fanning out above 1,000 users, 250 users and 10 groups per part.
fn fanned(stack: &Stack, sim: &RunningSimulator, queue_url: &str) -> Arc<SyncHandler> {
    let config = stack.config(&sim.url(), &[("SYNC_QUEUE_URL", queue_url), ("FANOUT_ABOVE_USERS", "1000")]);
    let mut handler = SyncHandler::from_config(&stack.sdk, &config).expect("handler");
    let ports = handler.fanout.as_mut().expect("fan-out on");
    (ports.settings.users_per_part, ports.settings.groups_per_part) = (250, 10);
    Arc::new(handler)
}

/// A stack with the integration, the simulator serving [`org`], a queue, and the fanning handler.
struct Fixture {
    stack: Stack,
    sim: RunningSimulator,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    handler: Arc<SyncHandler>,
}

impl Fixture {
    async fn new() -> Self {
        let stack = Stack::new().await;
        let sim = Simulator::start(vec![org()]).await.unwrap();
        stack.integration("corp", KEY).await;
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
        let queue_url = queue(&sqs).await;
        let handler = fanned(&stack, &sim, &queue_url);
        Self { stack, sim, sqs, queue_url, handler }
    }
}

/// The sync handler in this process, as the local relay invokes it.
struct InProcess(Arc<SyncHandler>);

#[async_trait::async_trait]
impl LambdaInvoker for InProcess {
    async fn invoke(&self, function: &str, payload: &str) -> Result<Invocation, String> {
        assert_eq!(function, "sync");
        let event: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
        Ok(match self.0.handle(lambda_event(event)).await {
            Ok(answer) => Invocation { status: 200, function_error: None, body_excerpt: answer.to_string() },
            Err(e) => {
                Invocation { status: 200, function_error: Some("Unhandled".into()), body_excerpt: format!("{e:?}") }
            }
        })
    }
}

/// The local stand-in for Lambda's SQS event source mapping (`jitctl run-schedules`' relay):
/// each message to the handler as an SQS event, deleted unless reported failed. Returns the
/// deliveries made and those that failed.
async fn deliver(sqs: &aws_sdk_sqs::Client, queue_url: &str, handler: &Arc<SyncHandler>) -> (usize, usize) {
    let relay = SqsRelay::new(sqs.clone(), queue_url, Arc::new(InProcess(handler.clone())));
    let relayed = relay.drain().await.expect("relay");
    (relayed.len(), relayed.iter().filter(|r| r.failure.is_some()).count())
}

/// The stored directory, in a comparable form.
async fn stored(stack: &Stack) -> (Vec<Value>, Vec<Value>, Vec<String>) {
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    let mut users: Vec<Value> =
        store.list_users("corp").await.unwrap().iter().map(|u| serde_json::to_value(u).unwrap()).collect();
    users.sort_by_key(|u| u["id"].as_str().unwrap_or_default().to_owned());
    let mut groups: Vec<Value> =
        store.list_groups("corp").await.unwrap().iter().map(|g| serde_json::to_value(g).unwrap()).collect();
    groups.sort_by_key(|g| g["id"].as_str().unwrap_or_default().to_owned());
    let memberships = store.load_digest("corp").await.unwrap().memberships.iter().map(|m| format!("{m:?}")).collect();
    (users, groups, memberships)
}

#[tokio::test]
async fn a_fanned_out_sync_over_sqs_stores_what_one_invocation_stores_and_a_resync_writes_nothing() {
    let Fixture { stack, sim, sqs, queue_url, handler } = Fixture::new().await;

    let summary = handler.handle(lambda_event(event("sync-schedule.json"))).await.unwrap();
    let run = &summary["integrations"][0];
    assert_eq!((run["status"].as_str(), run["users"].as_u64()), (Some("fanned_out"), Some(1_200)), "{summary}");
    assert_eq!((run["user_parts"].as_u64(), run["member_parts"].as_u64()), (Some(5), Some(4)));
    let (delivered, failed) = deliver(&sqs, &queue_url, &handler).await;
    assert_eq!((delivered, failed), (9, 0), "5 users parts, then 4 members parts");
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    let status = store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.state, SyncState::Succeeded, "{status:?}");

    // The same organization synced in one invocation, into a table of its own.
    let single = Stack::new().await;
    single.integration("corp", KEY).await;
    let one = SyncHandler::from_config(&single.sdk, &single.config(&sim.url(), &[])).unwrap();
    let summary = one.handle(lambda_event(event("sync-schedule.json"))).await.unwrap();
    assert_eq!(summary["integrations"][0]["status"], "succeeded", "{summary}");
    let (fanned_out, in_one) = (stored(&stack).await, stored(&single).await);
    assert_eq!(fanned_out.0.len(), in_one.0.len());
    let differing: Vec<(&Value, &Value)> = fanned_out.0.iter().zip(&in_one.0).filter(|(a, b)| a != b).collect();
    assert!(
        differing.is_empty(),
        "the same users, managers resolved across parts: {} differ, first {:?}",
        differing.len(),
        differing.first()
    );
    assert!(fanned_out.1 == in_one.1, "the same groups");
    assert!(fanned_out.2 == in_one.2, "the same memberships ({} and {})", fanned_out.2.len(), in_one.2.len());
    assert_eq!(status.memberships as usize, in_one.2.len());

    // Again, nothing changed: nothing written.
    let summary = handler.handle(lambda_event(event("sync-schedule.json"))).await.unwrap();
    assert_eq!(summary["integrations"][0]["status"], "fanned_out");
    assert_eq!(deliver(&sqs, &queue_url, &handler).await, (9, 0));
    let again = store.sync_status("corp").await.unwrap().unwrap();
    assert_eq!((again.state, again.written, again.deleted), (SyncState::Succeeded, 0, 0), "{again:?}");
}

#[tokio::test]
async fn a_part_that_fails_is_delivered_again_alone() {
    let Fixture { stack, sim, sqs, queue_url, handler } = Fixture::new().await;
    handler.handle(lambda_event(event("sync-schedule.json"))).await.unwrap();
    // JumpCloud answers 503 to the next requests, past the client's retry budget for one part.
    sim.handle().fail_next(30, jumpcloud_sim::FaultKind::ServerError(503));
    let (delivered, failed) = deliver(&sqs, &queue_url, &handler).await;
    assert!(failed >= 1, "a part failed and came back ({delivered} deliveries)");
    assert_eq!(delivered - failed, 9, "each part done once");
    let status = DynamoStore::new(stack.dynamodb.clone(), &stack.table).sync_status("corp").await.unwrap().unwrap();
    assert_eq!(status.state, SyncState::Succeeded, "{status:?}");
    assert_eq!(status.users as usize, org().users.iter().filter(|u| u.state != UserState::Suspended).count());
}

#[tokio::test]
async fn workers_sharing_the_rate_budget_never_take_more_than_its_share_of_a_second() {
    let stack = Stack::new().await;
    const PER_SECOND: u32 = 20;
    // Six workers, as six containers would: each its own budget over the one table.
    let workers: Vec<DynamoSharedRate> = (0..6)
        .map(|_| DynamoSharedRate::new(stack.dynamodb.clone(), stack.table.clone(), "corp", PER_SECOND))
        .collect();
    futures::future::join_all(workers.iter().map(|w| async move {
        for _ in 0..10 {
            w.acquire().await.expect("acquire");
        }
    }))
    .await;
    let seconds = stack
        .dynamodb
        .query()
        .table_name(&stack.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S("RATE#corp".into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let used: Vec<u32> = seconds.iter().map(|item| item["used"].as_n().unwrap().parse().unwrap()).collect();
    assert!(used.iter().all(|&n| n <= PER_SECOND), "a second over the budget: {used:?}");
    assert!(used.iter().sum::<u32>() >= 60, "every request was taken from some second: {used:?}");
    assert!(used.len() >= 3, "60 requests at 20 a second span at least 3 seconds: {used:?}");
}

#[tokio::test]
async fn a_message_that_is_not_a_part_goes_back_and_a_sync_without_a_queue_refuses_sqs_events() {
    let Fixture { stack, sim, handler, .. } = Fixture::new().await;
    let mut malformed = event("sync-part-sqs.json");
    malformed["Records"][0]["body"] = json!("{\"integration\":\"corp\"}");
    let response = handler.handle(lambda_event(malformed)).await.unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([{"itemIdentifier": "4f2b7d1e-9c3a-4e8b-a1f0-6d5c2b9e8a71"}]),
        "reported failed: after the queue's retries it waits in the dead-letter queue"
    );
    // A part of a run nobody planned: dropped, not failed.
    let response = handler.handle(lambda_event(event("sync-part-sqs.json"))).await.unwrap();
    assert_eq!(response["batchItemFailures"], json!([]));

    let plain = SyncHandler::from_config(&stack.sdk, &stack.config(&sim.url(), &[])).unwrap();
    let refused = plain.handle(lambda_event(event("sync-part-sqs.json"))).await.unwrap_err();
    assert!(format!("{refused:?}").contains("SYNC_QUEUE_URL"), "{refused:?}");
}
