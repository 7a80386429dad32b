//! `jitctl grant`, `revoke`, `grants` and `audit` end to end: the real binary, its environment
//! pointing at moto's server and the JumpCloud simulator, exactly as an operator runs it.

use integration_tests::{aws_endpoint, unique, Stack};
use jit_shared::{
    adapters::setup,
    clock::ManualClock,
    domain::grant::{request_grant, GrantRequest},
    wiring::{Function, Lifecycle},
};
use jumpcloud_sim::{Group, MembershipMethod, Org, RunningSimulator, Simulator, User};
use serde_json::Value;
use std::{
    process::{Command, Output},
    sync::Arc,
};

const KEY: &str = "cli-admin-key-7f3e";
const OPERATOR: &str = "ops-carol";

struct World {
    env: Vec<(String, String)>,
    /// The same configuration, for the in-process domain calls that set a test up.
    config: jit_shared::config::Config,
    sim: RunningSimulator,
    stack: Stack,
    alice: String,
    db: String,
}

async fn world() -> World {
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    let alice = org.add_user(User::new("alice", "alice@example.com"));
    org.add_user(User::new("bob", "bob@example.com"));
    let db = org.add_group(Group::new("prod-db-admins"));
    org.add_group(Group::new("prod-auto").with_method(MembershipMethod::DynamicAutomated));
    org.add_group(Group::new("staging-admins"));
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    let (schedule_group, bus) = (unique("sg"), unique("bus"));
    setup::ensure_schedule_group(&aws_sdk_scheduler::Client::new(&stack.sdk), &schedule_group).await.unwrap();
    setup::ensure_event_bus(&aws_sdk_eventbridge::Client::new(&stack.sdk), &bus).await.unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", aws_endpoint().as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("TABLE_NAME", &stack.table),
        ("JUMPCLOUD_API_URL", &sim.url()),
        ("SECRET_TAG_KEY", &stack.tag_key),
        ("SECRET_TAG_VALUE", "true"),
        ("SCHEDULE_GROUP", &schedule_group),
        ("EVENT_BUS_NAME", &bus),
        ("REVOKE_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:revoke"),
        ("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/jit-access-scheduler"),
        ("REQUESTABLE_GROUPS", "prod-*"),
        ("USER", OPERATOR),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect::<Vec<_>>();
    let lifecycle_vars =
        ["SCHEDULE_GROUP", "EVENT_BUS_NAME", "REVOKE_FUNCTION_ARN", "SCHEDULER_ROLE_ARN", "REQUESTABLE_GROUPS"];
    let extra: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| lifecycle_vars.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let config = stack.config(&sim.url(), &extra);
    World { env, config, sim, stack, alice, db }
}

impl World {
    /// Runs jitctl to completion (a blocking child process, off the async runtime's threads).
    async fn jitctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jitctl"));
        command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(self.env.clone());
        tokio::task::spawn_blocking(move || command.output().expect("jitctl runs")).await.unwrap()
    }

    async fn ok_json(&self, args: &[&str]) -> Value {
        let out = self.jitctl(args).await;
        assert!(out.status.success(), "jitctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("jitctl {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A failing command: exit status 1 and its error message.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.jitctl(args).await;
        assert_eq!(out.status.code(), Some(1), "jitctl {args:?}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn member(&self) -> bool {
        self.sim.handle().org(0).is_member(&self.db, &self.alice).unwrap()
    }

    async fn grant_count(&self) -> usize {
        self.ok_json(&["grants", "list", "--all", "--json"]).await["grants"].as_array().unwrap().len()
    }
}

fn actions(trail: &Value) -> Vec<&str> {
    trail.as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn an_operator_grants_lists_shows_revokes_and_reads_the_audit_trail() {
    let w = world().await;
    let grant = w
        .ok_json(&[
            "grant",
            "--user",
            "alice@example.com",
            "--group",
            "prod-db-admins",
            "--duration",
            "2h",
            "--reason",
            "INC-7 restore",
            "--json",
        ])
        .await;
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["requested_by"], format!("cli:{OPERATOR}"), "the operator is the recorded requester");
    assert_eq!(grant["user"]["id"], w.alice.as_str());
    assert!(w.member(), "the membership is added in JumpCloud");
    let id = grant["id"].as_str().unwrap().to_owned();

    // Filters take the same forms as the API: email and group name resolve to ids.
    let listed =
        w.ok_json(&["grants", "list", "--user", "alice@example.com", "--group", "prod-db-admins", "--json"]).await;
    let ids: Vec<&str> = listed["grants"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str()]);
    let revoked = w.ok_json(&["grants", "list", "--status", "revoked", "--json"]).await;
    assert!(revoked["grants"].as_array().unwrap().is_empty());
    let bob = w.ok_json(&["grants", "list", "--user", "bob", "--json"]).await;
    assert!(bob["grants"].as_array().unwrap().is_empty(), "bob's filter does not match alice's grant");

    let shown = w.ok_json(&["grants", "show", &id, "--json"]).await;
    assert_eq!(shown["grant"]["id"], id.as_str());
    assert_eq!(actions(&shown["audit"]), ["created", "activated"]);

    let human = w.jitctl(&["revoke", &id]).await;
    assert!(human.status.success(), "{}", String::from_utf8_lossy(&human.stderr));
    assert!(String::from_utf8_lossy(&human.stdout).contains(&format!("revoked: {id} (membership removed)")));
    assert!(!w.member(), "the membership is removed in JumpCloud");
    let again = w.jitctl(&["revoke", &id]).await;
    assert!(again.status.success(), "revoking twice is not an error");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already ended"));

    let trail = w.ok_json(&["audit", "--grant", &id, "--json"]).await;
    assert_eq!(actions(&trail), ["created", "activated", "revoked", "membership_removed"]);
    let revocation = &trail.as_array().unwrap()[2];
    assert_eq!(revocation["actor"], format!("cli:{OPERATOR}"));
    let recent = w.ok_json(&["audit", "--since", "1h", "--json"]).await;
    let of_grant = recent.as_array().unwrap().iter().filter(|r| r["grant_id"] == id.as_str()).count();
    assert_eq!(of_grant, 4, "the time-range query finds the grant's records: {recent}");
    let future =
        w.ok_json(&["audit", "--since", "2099-01-01T00:00:00Z", "--until", "2099-01-02T00:00:00Z", "--json"]).await;
    assert!(future.as_array().unwrap().is_empty());

    // The trail is whole; `audit seal` seals the finished days (none yet: this one is today).
    let verified = w.ok_json(&["audit", "verify", "--json"]).await;
    assert_eq!((verified["intact"].as_bool(), verified["records"].as_u64()), (Some(true), Some(4)), "{verified}");
    let human = w.jitctl(&["audit", "verify", "--since", "1h"]).await;
    assert!(String::from_utf8_lossy(&human.stdout).contains("intact: no record removed or altered"));
    let sealed = w.jitctl(&["audit", "seal"]).await;
    assert!(sealed.status.success(), "{}", String::from_utf8_lossy(&sealed.stderr));
    // The first seal ever is of the day before: "sealed DAY: 0 records, digest D, hash H".
    let printed = String::from_utf8_lossy(&sealed.stdout).into_owned();
    let (day, hash) = printed
        .strip_prefix("sealed ")
        .and_then(|rest| Some((rest.split(':').next()?, rest.trim().rsplit(' ').next()?)))
        .unwrap_or_else(|| panic!("a seal printed: {printed}"));
    // Its copy kept outside the table (the event's detail) vouches for it; a copy naming another
    // seal (the table rewritten and sealed again) fails the command, naming the day.
    let dir = std::env::temp_dir().join(unique("anchors"));
    std::fs::create_dir_all(&dir).unwrap();
    let (kept, other) = (dir.join("kept.jsonl"), dir.join("other.jsonl"));
    std::fs::write(&kept, format!("{{\"day\":\"{day}\",\"hash\":\"{hash}\"}}\n\n")).unwrap();
    std::fs::write(&other, format!("{{\"detail\":{{\"day\":\"{day}\",\"hash\":\"{}\"}}}}\n", "0".repeat(64))).unwrap();
    let anchored = w.ok_json(&["audit", "verify", "--json", "--anchors", kept.to_str().unwrap()]).await;
    assert_eq!((anchored["intact"].as_bool(), anchored["anchors"].as_u64()), (Some(true), Some(1)), "{anchored}");
    let out = w.jitctl(&["audit", "verify", "--anchors", other.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "a seal unlike its copy fails the command");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("BROKEN seal {day}: the seal differs from its copy kept outside the table")),
        "{printed}"
    );
    std::fs::write(&other, "{\"day\":\"yesterday\"}\n").unwrap();
    let out = w.jitctl(&["audit", "verify", "--anchors", other.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: no `day` and `hash`"), "{out:?}");

    // Someone with table rights rewrites who revoked it: verify fails, naming the grant.
    let item = w.stack.item(&format!("AUDIT#{id}"), revocation_sort(&w, &id).await.as_str()).await.unwrap();
    let mut forged = item.clone();
    forged.insert("actor".into(), aws_sdk_dynamodb::types::AttributeValue::S("cli:nobody".into()));
    w.stack.dynamodb.put_item().table_name(&w.stack.table).set_item(Some(forged)).send().await.unwrap();
    let out = w.jitctl(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(1), "a broken trail fails the command");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("BROKEN grant {id}: record 4")), "{printed}");
    let report = w.jitctl(&["audit", "verify", "--grant", &id, "--json"]).await;
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["intact"], false);
}

/// The sort key of a grant's third audit record (its revocation).
async fn revocation_sort(w: &World, id: &str) -> String {
    let out = w
        .stack
        .dynamodb
        .query()
        .table_name(&w.stack.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("AUDIT#{id}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items()[2]["sk"].as_s().unwrap().clone()
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_grant_return_the_first_one() {
    let mut w = world().await;
    // Automation names itself instead of the OS user.
    w.env.push(("JITCTL_OPERATOR".into(), "change-bot".into()));
    let args = [
        "grant",
        "--user",
        "alice",
        "--group",
        "prod-db-admins",
        "--duration",
        "90m",
        "--reason",
        "deploy",
        "--idempotency-key",
        "change-1234",
        "--json",
    ];
    let first = w.ok_json(&args).await;
    let second = w.ok_json(&args).await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["requested_by"], "cli:change-bot");
    assert_eq!(w.sim.handle().request_count("POST /api/v2/usergroups/{id}/members"), 1, "one add only");
    assert_eq!(w.grant_count().await, 1);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let w = world().await;
    let base = ["grant", "--group", "prod-db-admins", "--reason", "x"];
    let cases: [(&[&str], &str); 6] = [
        (&["--user", "nobody@example.com", "--duration", "1h"], "user \"nobody@example.com\" not found"),
        (&["--user", "alice", "--duration", "30d"], "outside the allowed range"),
        (&["--user", "alice", "--duration", "1h", "--integration", "other"], "unknown integration \"other\""),
        (&["--user", "alice", "--duration", "1h", "--group", "prod-auto"], "dynamic group"),
        (&["--user", "alice", "--duration", "1h", "--group", "staging"], "group \"staging\" not found"),
        (&["--user", "alice", "--duration", "1h", "--group", "staging-admins"], "outside REQUESTABLE_GROUPS"),
    ];
    for (extra, expected) in cases {
        let mut args = base.to_vec();
        if extra.contains(&"--group") {
            args.drain(1..3);
        }
        args.extend_from_slice(extra);
        let error = w.fails(&args).await;
        assert!(error.contains(expected), "jitctl {args:?}: expected {expected:?} in {error:?}");
    }
    assert!(w.fails(&["revoke", "not-a-grant"]).await.contains("is not a grant id"));
    let unknown = "6f1c2b9e-0d4a-4c71-9a57-3e2f1b8c4d10";
    assert!(w.fails(&["grants", "show", unknown]).await.contains("no grant"));
    assert!(w.fails(&["revoke", unknown]).await.contains("not found"));
    assert!(w.fails(&["audit", "--since", "yesterday"]).await.contains("neither an RFC 3339 time nor a duration"));
    assert!(w.fails(&["grants", "list", "--next", "bogus"]).await.contains("invalid page token"));

    assert_eq!(w.grant_count().await, 0, "no grant was recorded");
    assert_eq!(w.stack.count(&format!("AUDIT#{unknown}")).await, 0);
    assert_eq!(w.sim.handle().request_count("POST /api/v2/usergroups/{id}/members"), 0, "JumpCloud untouched");
    assert!(!w.member());
}

#[tokio::test]
async fn jitctl_sync_reconciles_grants_like_the_sync_function() {
    let w = world().await;
    // A grant made ten minutes ago (reconciliation leaves grants younger than its settle margin
    // alone), through the domain with a clock set back: no waiting.
    let built = Lifecycle::from_config(&w.stack.sdk, &w.config, Function::Grant).unwrap();
    let past = Arc::new(ManualClock::new(chrono::Utc::now() - chrono::Duration::minutes(10)));
    let lifecycle = Lifecycle { clock: past, ..built };
    let request = GrantRequest {
        user: Some("alice".into()),
        group: "prod-db-admins".into(),
        duration: "2h".parse().unwrap(),
        reason: "x".into(),
        integration: None,
        requested_by: "test".into(),
        caller_users: vec![],
        caller_admin: true,
        break_glass: false,
        idempotency_key: None,
    };
    let id = request_grant(&lifecycle.ctx(), request).await.unwrap().grant.id;
    // Someone removes the membership in JumpCloud's console, outside the product.
    assert!(w.sim.handle().org(0).remove_member(&w.db, &w.alice).unwrap());

    let human = w.jitctl(&["sync"]).await;
    assert!(human.status.success(), "{}", String::from_utf8_lossy(&human.stderr));
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains(&format!("grant {id} is active but its membership was removed outside")), "{stdout}");
    let shown = w.ok_json(&["grants", "show", &id, "--json"]).await;
    assert_eq!(shown["grant"]["membership_missing"], true);
    assert!(actions(&shown["audit"]).contains(&"membership_missing"), "{shown}");

    // Drift is reported once: the grant is marked, a second sync has nothing new to say.
    let summary = w.ok_json(&["sync", "--json"]).await;
    let reconciliation = &summary["integrations"][0]["reconciliation"];
    assert_eq!(reconciliation["missing"], serde_json::json!([]), "{summary}");
    assert_eq!(reconciliation["failures"], serde_json::json!([]), "{summary}");
}
