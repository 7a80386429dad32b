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
        if let Ok(endpoint) = std::env::var("JIT_TEST_AWS_ENDPOINT") {
            return MotoServer { endpoint, _child: None };
        }
        let moto = workspace_root().join(".venv/bin/moto_server");
        assert!(moto.exists(), "{} is missing: run scripts/test.sh (it installs moto into .venv)", moto.display());
        let port = free_port();
        // The watchdog ends moto when this test process ends (statics are never dropped).
        let script = format!(
            "'{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; while kill -0 {} 2>/dev/null; do sleep 1; done; kill $m",
            moto.display(),
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

/// SDK configuration for the local stack: fixed test credentials, one region, moto's endpoint.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(aws_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "integration-tests"))
        .load()
        .await
}

/// A name no other test uses (tables, tags, secrets).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
