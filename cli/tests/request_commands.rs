//! `jitctl requests`, `approve`, `deny` and `revoke` of a request, end to end: the real binary
//! against moto's server and the JumpCloud simulator. The policy is applied with
//! `jitctl policy apply`, the directory synced with `jitctl sync` (alice's manager is maria), and
//! alice's requests are made through the domain as her signed-in principal would make them.

use integration_tests::{aws_endpoint, unique, Stack};
use jit_shared::{
    adapters::setup,
    domain::grant::{request_grant, GrantRequest},
    domain::identity::PrincipalUser,
    wiring::{Function, Lifecycle},
};
use jumpcloud_sim::{Group, Org, RunningSimulator, Simulator, User, UserState};
use serde_json::Value;
use std::process::{Command, Output};

const KEY: &str = "cli-requests-key-51c2";
const OPERATOR: &str = "ops-olga";

/// prod-* needs one approval, by the grantee's manager.
const POLICY: &str = "\
version: 1
defaults:
  max_duration: 4h
  approval: {approvers: [manager], required: 1, timeout: 24h}
rules:
  - groups: [\"prod-*\"]
    eligible: everyone
  - groups: [\"*\"]
    eligible: nobody
";

struct World {
    env: Vec<(String, String)>,
    config: jit_shared::config::Config,
    sim: RunningSimulator,
    stack: Stack,
    dir: std::path::PathBuf,
    alice: String,
    db: String,
    web: String,
}

async fn world() -> World {
    let stack = Stack::new().await;
    let mut org = Org::new(KEY);
    let maria = org.add_user(User::new("maria", "maria@example.com"));
    let mut alice = User::new("alice", "alice@example.com");
    alice.manager = Some(maria.into());
    let alice = org.add_user(alice);
    org.add_user(User::new("bob", "bob@example.com"));
    org.add_user(User::new("sam", "sam@example.com").with_state(UserState::Suspended));
    let db = org.add_group(Group::new("prod-db-admins"));
    let web = org.add_group(Group::new("prod-web-admins"));
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
        // sam is synced, as suspended, so that an approval as sam finds him and refuses.
        ("INCLUDE_SUSPENDED_USERS", "true"),
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
    let dir = std::env::temp_dir().join(unique("jitctl-requests"));
    std::fs::create_dir_all(&dir).unwrap();
    let w = World { env, config, sim, stack, dir, alice, db, web };
    w.ok(&["sync"]).await;
    let policy = w.dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    w.ok(&["policy", "apply", policy.to_str().unwrap()]).await;
    w
}

impl World {
    async fn jitctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jitctl"));
        command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(self.env.clone());
        tokio::task::spawn_blocking(move || command.output().expect("jitctl runs")).await.unwrap()
    }

    /// A succeeding command's stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.jitctl(args).await;
        assert!(out.status.success(), "jitctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn ok_json(&self, args: &[&str]) -> Value {
        let out = self.ok(args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("jitctl {args:?}: {e}: {out}"))
    }

    /// A refused command: exit status 1 and its error message.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.jitctl(args).await;
        assert_eq!(out.status.code(), Some(1), "jitctl {args:?}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// alice asks for `group` for herself, as her signed-in principal would (not an admin).
    async fn alice_requests(&self, group: &str) -> String {
        let lifecycle = Lifecycle::from_config(&self.stack.sdk, &self.config, Function::Grant).unwrap();
        let request = GrantRequest {
            user: None,
            group: group.into(),
            duration: "2h".parse().unwrap(),
            reason: "INC-88 replica lag".into(),
            integration: None,
            requested_by: "https://sso.example.com#alice".into(),
            caller_users: vec![PrincipalUser {
                integration: "corp".into(),
                id: self.alice.clone(),
                email: "alice@example.com".into(),
            }],
            caller_admin: false,
            break_glass: false,
            idempotency_key: None,
        };
        let grant = request_grant(&lifecycle.ctx(), request).await.expect("request").grant;
        assert_eq!(grant.status.as_str(), "pending_approval");
        assert_eq!(grant.approvers, ["maria@example.com"], "her manager approves");
        grant.id
    }

    async fn shown(&self, id: &str) -> Value {
        self.ok_json(&["grants", "show", id, "--json"]).await
    }

    fn member(&self, group: &str) -> bool {
        self.sim.handle().org(0).is_member(group, &self.alice).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ids(listing: &Value) -> Vec<&str> {
    listing["grants"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect()
}

fn actions(trail: &Value) -> Vec<&str> {
    trail.as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_manager_approves_through_jitctl_and_the_grant_activates() {
    let w = world().await;
    let id = w.alice_requests("prod-db-admins").await;

    // Awaiting maria, not alice (she asked) and not bob (no approver).
    assert_eq!(ids(&w.ok_json(&["requests", "--awaiting", "maria@example.com", "--json"]).await), [id.as_str()]);
    assert!(ids(&w.ok_json(&["requests", "--awaiting", "alice@example.com", "--json"]).await).is_empty());
    assert!(ids(&w.ok_json(&["requests", "--awaiting", "bob@example.com", "--json"]).await).is_empty());
    let pending = w.ok_json(&["requests", "--json"]).await;
    assert_eq!(ids(&pending), [id.as_str()]);
    assert_eq!(pending["grants"][0]["approvals_required"], 1);
    let table = w.ok(&["requests", "--awaiting", "Maria@Example.com"]).await;
    assert!(table.contains("approvals") && table.contains(&id), "{table}");
    assert!(table.contains("pending_approval") && table.contains("0/1") && table.contains("maria@example.com"));

    // Self-approval and a non-approver are refused, and change nothing.
    let own = w.fails(&["approve", &id, "--as", "alice@example.com"]).await;
    assert!(own.contains("cannot approve or deny") && own.contains("alice@example.com"), "{own}");
    let other = w.fails(&["approve", &id, "--as", "bob@example.com", "--comment", "lgtm"]).await;
    assert!(other.contains("not one of its approvers (maria@example.com)"), "{other}");
    assert!(w.fails(&["approve", &id, "--as", "nobody@example.com"]).await.contains("no user \"nobody@example.com\""));
    let suspended = w.fails(&["approve", &id, "--as", "sam@example.com"]).await;
    assert!(suspended.contains("suspended"), "{suspended}");
    let unchanged = w.shown(&id).await;
    assert_eq!(unchanged["grant"]["status"], "pending_approval");
    assert_eq!(unchanged["grant"]["approvals"], serde_json::json!([]));
    assert_eq!(actions(&unchanged["audit"]), ["created"]);
    assert!(!w.member(&w.db));
    assert_eq!(w.sim.handle().request_count("POST /api/v2/usergroups/{id}/members"), 0, "JumpCloud untouched");

    // maria's approval, recorded by the operator: the grant activates, the membership is added.
    let approved =
        w.ok_json(&["approve", &id, "--as", "maria@example.com", "--comment", "ok for INC-88", "--json"]).await;
    assert_eq!(approved["status"], "active", "{approved}");
    assert_eq!(approved["approvals"][0]["by"], "maria@example.com");
    assert_eq!(approved["approvals"][0]["comment"], "ok for INC-88");
    assert!(approved["expires_at"].is_string());
    assert!(w.member(&w.db), "the simulator shows the membership");
    let trail = w.shown(&id).await["audit"].clone();
    assert_eq!(actions(&trail), ["created", "approved", "activated"]);
    assert_eq!(trail[1]["actor"], format!("cli:{OPERATOR} as maria@example.com"), "who typed it, for whom");

    // Decided: no longer awaiting anyone, and a second decision is refused.
    assert!(ids(&w.ok_json(&["requests", "--awaiting", "maria@example.com", "--json"]).await).is_empty());
    let again = w.fails(&["deny", &id, "--as", "maria@example.com", "--comment", "changed my mind"]).await;
    assert!(again.contains("is active: only a request awaiting approval"), "{again}");

    // The grant as `grants show` and `grants list` print it.
    let human = w.ok(&["grants", "show", &id]).await;
    for expected in ["approvals     1 of 1", "approvers     maria@example.com", "by maria@example.com: ok for INC-88"] {
        assert!(human.contains(expected), "{expected:?} in {human}");
    }
    assert!(w.ok(&["grants", "list"]).await.contains("1/1"));

    // Extended as alice under the policy: her manager's approval moves the expiry; the operator,
    // an admin, extends at once.
    let expires = approved["expires_at"].as_str().unwrap().to_owned();
    let asked = w
        .ok_json(&[
            "extend",
            &id,
            "--duration",
            "30m",
            "--reason",
            "INC-88 longer",
            "--as",
            "alice@example.com",
            "--json",
        ])
        .await;
    assert_eq!(asked["pending_extension"]["approvers"], serde_json::json!(["maria@example.com"]), "{asked}");
    assert_eq!(asked["expires_at"], expires.as_str(), "not before the approval");
    let extended = w.ok_json(&["approve", &id, "--as", "maria@example.com", "--json"]).await;
    assert_eq!(extended["extensions"][0]["duration"], "30m", "{extended}");
    assert_ne!(extended["expires_at"], expires.as_str());
    let by_admin = w.ok(&["extend", &id, "--duration", "15m", "--reason", "INC-88 wrap up"]).await;
    assert!(by_admin.contains("extended:"), "{by_admin}");
    assert_eq!(w.shown(&id).await["grant"]["extensions"].as_array().unwrap().len(), 2);
    let refused = w.fails(&["extend", &id, "--duration", "15m", "--reason", "x", "--as", "bob@example.com"]).await;
    assert!(refused.contains("only the grantee or an admin"), "{refused}");
}

#[tokio::test]
async fn a_denial_needs_a_comment_and_ends_the_request_and_revoke_cancels_one() {
    let w = world().await;
    let denied = w.alice_requests("prod-web-admins").await;
    let cancelled = w.alice_requests("prod-db-admins").await;

    // clap refuses a denial without a comment (status 2); a blank one is refused by the domain.
    let out = w.jitctl(&["deny", &denied, "--as", "maria@example.com"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(w.fails(&["deny", &denied, "--as", "maria@example.com", "--comment", "  "]).await.contains("--comment"));
    assert!(w
        .fails(&["deny", &denied, "--as", "alice@example.com", "--comment", "no"])
        .await
        .contains("the grantee of a request cannot approve or deny it"));

    let ended =
        w.ok_json(&["deny", &denied, "--as", "maria@example.com", "--comment", "use read-only", "--json"]).await;
    assert_eq!(ended["status"], "denied", "{ended}");
    assert_eq!(ended["decided_by"], "maria@example.com");
    let trail = w.shown(&denied).await["audit"].clone();
    assert_eq!(actions(&trail), ["created", "denied"]);
    assert_eq!(trail[1]["reason"], "use read-only");
    assert!(!w.member(&w.web));
    assert!(w
        .fails(&["approve", &denied, "--as", "maria@example.com"])
        .await
        .contains("is denied: only a request awaiting approval"));

    // `revoke` of a request awaiting approval cancels it.
    let human = w.ok(&["revoke", &cancelled]).await;
    assert!(human.contains(&format!("cancelled: {cancelled}")), "{human}");
    assert_eq!(w.shown(&cancelled).await["grant"]["status"], "cancelled");

    // Nothing awaits approval any more; `--all` lists both ended requests, newest first.
    assert!(ids(&w.ok_json(&["requests", "--json"]).await).is_empty());
    let all = w.ok_json(&["requests", "--all", "--json"]).await;
    assert_eq!(ids(&all), [cancelled.as_str(), denied.as_str()]);
    assert_eq!(ids(&w.ok_json(&["requests", "--all", "--limit", "1", "--json"]).await), [cancelled.as_str()]);
    let table = w.ok(&["requests", "--all"]).await;
    assert!(table.contains("denied") && table.contains("cancelled"), "{table}");
    assert!(w.ok(&["requests", "--integration", "other"]).await.contains("no requests"));
    assert_eq!(w.sim.handle().request_count("POST /api/v2/usergroups/{id}/members"), 0, "JumpCloud untouched");
}
