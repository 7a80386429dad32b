//! The `jumpcloud-sim` binary as scripts use it: flags, ready line, port file, seed file, signals.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use jumpcloud_sim::Org;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_jumpcloud-sim");

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("jumpcloud-sim-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the binary and reads its ready line: the base URL.
fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("jumpcloud-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([format!("-{name}"), child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

async fn get(url: &str, key: &str, org_id: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url).header("x-api-key", key);
    if let Some(org_id) = org_id {
        request = request.header("x-org-id", org_id);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn generates_serves_writes_and_stops_on_signals() {
    let scratch = Scratch::new("run");
    let (port_file, seed_file) = (scratch.path("port"), scratch.path("seed.json"));
    let (mut child, url) = start(&[
        "--users",
        "50",
        "--groups",
        "6",
        "--avg-members",
        "5",
        "--seed",
        "3",
        "--api-key",
        "k",
        "--org-id",
        "o",
        "--port-file",
        port_file.to_str().unwrap(),
        "--write-seed",
        seed_file.to_str().unwrap(),
    ]);
    let port = std::fs::read_to_string(&port_file).unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));

    let (status, users) = get(&format!("{url}/api/systemusers"), "k", Some("o")).await;
    assert_eq!(status, 200);
    assert_eq!(users["totalCount"], 50);
    let (status, _) = get(&format!("{url}/api/systemusers"), "k", Some("elsewhere")).await;
    assert_eq!(status, 401);

    let seed = Org::list_from_json(&std::fs::read_to_string(&seed_file).unwrap()).unwrap();
    assert_eq!(seed.len(), 1);
    assert_eq!((seed[0].api_key.as_str(), seed[0].org_id.as_deref()), ("k", Some("o")));
    assert_eq!(seed[0].users.len(), 50);

    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());

    // The written seed serves the same organization, with the key overridden.
    let (mut child, url) = start(&["--seed-file", seed_file.to_str().unwrap(), "--api-key", "k2"]);
    let (status, groups) = get(&format!("{url}/api/v2/usergroups?limit=100"), "k2", Some("o")).await;
    assert_eq!(status, 200);
    assert_eq!(groups.as_array().unwrap().len(), 6);
    signal(&child, "INT");
    assert!(child.wait().unwrap().success());
}

#[test]
fn refuses_a_non_loopback_host_and_bad_flags() {
    for args in [
        &["--host", "0.0.0.0"][..],
        &["--rate-429", "1.5"],
        &["--seed-file", "x.json", "--users", "5"],
        &["--seed-file", "/nonexistent/seed.json"],
    ] {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
    }
    let stderr = |args: &[&str]| {
        let output = Command::new(BIN).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(stderr(&["--host", "0.0.0.0"]).contains("--allow-non-loopback"));
    assert!(stderr(&["--seed-file", "x.json", "--users", "5"]).contains("cannot be used with"));
}
