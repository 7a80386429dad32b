//! Test tooling for the end-to-end tests: a real moto server on a free loopback port, real AWS
//! SDK clients pointed at it, and names unique per test so tests run in parallel on one server.
//!
//! `JIT_TEST_AWS_ENDPOINT` (set by `scripts/test.sh`) shares one moto server across all test
//! binaries; without it, the first test of a binary starts one from the project's venv.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

pub use jumpcloud_sim;

pub mod bench;
pub mod functions;
pub mod memory;
mod proxy;

pub use proxy::{serial_proxy, ThrottlingProxy};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

struct MotoServer {
    endpoint: String,
    _child: Option<Child>,
}

static MOTO: OnceLock<MotoServer> = OnceLock::new();

/// The local AWS endpoint (moto's server), started on first use.
pub fn aws_endpoint() -> String {
    MOTO.get_or_init(|| {
        if let Some(endpoint) = std::env::var("JIT_TEST_AWS_ENDPOINT").ok().filter(|e| !e.is_empty()) {
            return MotoServer { endpoint, _child: None };
        }
        let python = workspace_root().join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: run scripts/test.sh (it installs moto into .venv)", python.display());
        // moto's server as scripts/test.sh starts it (scripts/moto_server.py says what it changes).
        let server = workspace_root().join("scripts/moto_server.py");
        let port = free_port();
        // The watchdog ends moto when this test process ends (statics are never dropped).
        let script = format!(
            "'{}' '{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; while kill -0 {} 2>/dev/null; do sleep 1; done; kill $m",
            python.display(),
            server.display(),
            std::process::id()
        );
        let child = Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).spawn().expect("start moto");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_until_listening(port, Duration::from_secs(60));
        MotoServer { endpoint, _child: Some(child) }
    })
    .endpoint
    .clone()
}

/// Polls until the port accepts connections: waiting for a server to start, not for a result.
pub fn wait_until_listening(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port} after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The caller of the sample events in `events/` (IAM authorization): the tests' admin.
pub const ADMIN_ARN: &str = "arn:aws:iam::123456789012:user/alice";

/// SDK configuration for the local stack: fixed test credentials, one region, moto's endpoint.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_for(&aws_endpoint()).await
}

/// As [`sdk_config`], with another endpoint (a relay or proxy in front of moto).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "integration-tests"))
        .load()
        .await
}

/// A name no other test uses (tables, tags, secrets).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh EventBridge bus whose events matching a pattern a rule copies to a fresh SQS queue:
/// what the functions publish, read as a subscriber of the bus receives it.
pub struct BusCopy {
    /// The bus's name (the functions' `EVENT_BUS_NAME`).
    pub name: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl BusCopy {
    /// Makes the bus, the queue and the rule between them with `events` (a test may wrap the
    /// client, to watch its calls) and an SQS client of `sdk`.
    pub async fn new(sdk: &SdkConfig, events: &aws_sdk_eventbridge::Client, pattern: serde_json::Value) -> Self {
        use aws_sdk_sqs::types::QueueAttributeName;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let name = unique("bus");
        jit_shared::adapters::setup::ensure_event_bus(events, &name).await.expect("event bus created");
        let queue_url = sqs.create_queue().queue_name(unique("copy")).send().await.expect("queue created").queue_url;
        let queue_url = queue_url.expect("a queue URL");
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        let queue_arn = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).expect("queue ARN");
        let rule = unique("copy");
        let put = events.put_rule().name(&rule).event_bus_name(&name).event_pattern(pattern.to_string());
        put.send().await.expect("rule created");
        let target = aws_sdk_eventbridge::types::Target::builder().id("copy").arn(queue_arn).build().expect("target");
        events.put_targets().rule(&rule).event_bus_name(&name).targets(target).send().await.expect("rule's target");
        Self { name, sqs, queue_url }
    }

    /// The events delivered since the last call, each as the queue holds it.
    pub async fn delivered(&self) -> Vec<serde_json::Value> {
        let mut delivered = Vec::new();
        loop {
            let receive = self.sqs.receive_message().queue_url(&self.queue_url).max_number_of_messages(10);
            let answer = receive.send().await.expect("messages received");
            if answer.messages().is_empty() {
                return delivered;
            }
            for message in answer.messages() {
                let body = message.body().expect("a message body");
                delivered.push(serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}")));
                let receipt = message.receipt_handle().expect("a receipt handle");
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .expect("deleted");
            }
        }
    }
}

/// One test's slice of the local stack: its own table and its own secret tag on the shared moto.
pub struct Stack {
    pub sdk: SdkConfig,
    pub table: String,
    pub tag_key: String,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Stack {
    pub async fn new() -> Self {
        Self::with_sdk(sdk_config().await).await
    }

    /// As [`Stack::new`], its clients talking to `endpoint` (a proxy in front of moto).
    pub async fn with_endpoint(endpoint: &str) -> Self {
        Self::with_sdk(sdk_config_for(endpoint).await).await
    }

    /// As [`Stack::new`], its clients made from `sdk`.
    pub async fn with_sdk(sdk: SdkConfig) -> Self {
        let table = unique("jit-test");
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        jit_shared::adapters::setup::ensure_table(&dynamodb, &table).await.expect("table created");
        Self { secrets: aws_sdk_secretsmanager::Client::new(&sdk), dynamodb, sdk, table, tag_key: unique("tag") }
    }

    /// A stack over a table another process made (its secret tag too): a benchmark's children.
    pub async fn existing(sdk: SdkConfig, table: String, tag_key: String) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        Self { secrets: aws_sdk_secretsmanager::Client::new(&sdk), dynamodb, sdk, table, tag_key }
    }

    /// The functions' configuration for this stack and a JumpCloud URL.
    pub fn config(&self, jumpcloud_url: &str, extra: &[(&str, &str)]) -> jit_shared::config::Config {
        let mut vars: std::collections::HashMap<String, String> = [
            ("TABLE_NAME", self.table.as_str()),
            ("JUMPCLOUD_API_URL", jumpcloud_url),
            ("SECRET_TAG_KEY", self.tag_key.as_str()),
            ("SECRET_TAG_VALUE", "true"),
            ("JUMPCLOUD_REQUEST_TIMEOUT", "5s"),
            ("JUMPCLOUD_RETRY_BUDGET", "5s"),
            ("JUMPCLOUD_REQUESTS_PER_SECOND", "1000"),
            // The sample events' caller is the admin.
            ("ADMIN_PRINCIPALS", ADMIN_ARN),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        jit_shared::config::Config::from_lookup(|k| vars.get(k).cloned()).expect("valid configuration")
    }

    /// Creates a secret with `tags`, returning its name.
    pub async fn secret(&self, value: &str, tags: &[(&str, &str)]) -> String {
        let name = unique("jit-access/secret");
        let mut request = self.secrets.create_secret().name(&name).secret_string(value);
        for (k, v) in tags {
            request = request.tags(aws_sdk_secretsmanager::types::Tag::builder().key(*k).value(*v).build());
        }
        request.send().await.expect("secret created");
        name
    }

    /// An integration secret carrying this stack's tag.
    pub async fn integration(&self, name: &str, token: &str) -> String {
        let value = serde_json::json!({ "token": token, "name": name }).to_string();
        self.secret(&value, &[(&self.tag_key, "true")]).await
    }

    /// Number of items in one partition (a strongly consistent count).
    pub async fn count(&self, pk: &str) -> i32 {
        use aws_sdk_dynamodb::types::{AttributeValue, Select};
        let mut total = 0;
        let mut start = None;
        loop {
            let out = self
                .dynamodb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("count query");
            total += out.count;
            start = out.last_evaluated_key;
            if start.is_none() {
                return total;
            }
        }
    }

    /// Every item of one partition, in sort-key order (strongly consistent, all pages).
    pub async fn partition(
        &self,
        pk: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let pages = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        pages.into_iter().map(|item| item.expect("partition query")).collect()
    }

    pub async fn item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
    }
}

/// A sample event from `events/`, as JSON.
pub fn event(name: &str) -> serde_json::Value {
    let path = workspace_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("event is JSON")
}

/// The HTTP API 2.0 sample with another method, path and body.
pub fn http_event(method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
    let mut e = event("sync-http-post.json");
    e["routeKey"] = format!("{method} {path}").into();
    e["rawPath"] = path.into();
    e["requestContext"]["http"]["method"] = method.into();
    e["requestContext"]["http"]["path"] = path.into();
    e["requestContext"]["routeKey"] = format!("{method} {path}").into();
    e["body"] = body.map(Into::into).unwrap_or(serde_json::Value::Null);
    e
}

/// Invokes a handler as the Lambda runtime would.
pub fn lambda_event(payload: serde_json::Value) -> lambda_runtime::LambdaEvent<serde_json::Value> {
    lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default())
}

/// The status and JSON body of an HTTP API 2.0 response.
pub fn http_response(response: &serde_json::Value) -> (u16, serde_json::Value, String) {
    let status = response["statusCode"].as_u64().expect("statusCode") as u16;
    let content_type = response["headers"]["content-type"].as_str().unwrap_or_default().to_owned();
    let body = response["body"].as_str().map(|b| serde_json::from_str(b).expect("JSON body")).unwrap_or_default();
    (status, body, content_type)
}
