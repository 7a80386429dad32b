//! `jitctl policy`: the real binary. `validate` on the shipped example and on broken documents
//! (no AWS, no configuration); `plan`, `apply` and `show` against moto's server (`with_stack`).

use std::process::Command;

fn validate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jitctl"))
        .args(["policy", "validate"])
        .args(args)
        .env_clear()
        .output()
        .expect("jitctl runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn example() -> String {
    format!("{}/../policy/example.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_example_policy_is_valid_and_summarized() {
    let (ok, out, err) = validate(&[&example()]);
    assert!(ok, "{err}");
    assert!(out.contains("valid (version 1, 3 rules)"), "{out}");
    assert!(
        out.contains("rule 1 [prod-db-*]") && out.contains("2 of [manager, group db-owners, user bob@corp.com]"),
        "{out}"
    );
    let (ok, out, _) = validate(&["--json", &example()]);
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["policy"]["rules"][0]["approval"]["auto_approve_up_to"], "30m");
    assert_eq!(doc["policy"]["rules"][2]["eligible"], "nobody");
    assert_eq!(doc["policy"]["rules"][0]["slack_channel"], "#db-access");
    assert_eq!(doc["policy"]["rules"][1]["slack_channel"], serde_json::Value::Null);
}

#[test]
fn a_broken_policy_fails_with_the_line_and_the_reason() {
    let dir = std::env::temp_dir().join(format!("jitctl-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "version: 1\nrules:\n  - groups: [prod-*]\n    approval: {approvers: [boss]}\n").unwrap();
    let (ok, out, err) = validate(&[bad.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(err.contains("line 4") && err.contains("unknown approver \"boss\""), "{err}");
    let (ok, out, _) = validate(&["--json", bad.to_str().unwrap()]);
    assert!(!ok);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((doc["valid"].as_bool(), doc["line"].as_u64()), (Some(false), Some(4)));
    // A Slack channel that is neither a channel id nor `#name`.
    let channel = dir.join("channel.yaml");
    std::fs::write(&channel, "version: 1\nrules:\n  - groups: [prod-*]\n    slack_channel: \"#Prod Access\"\n")
        .unwrap();
    let (ok, out, err) = validate(&[channel.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("line 3") && err.contains("`slack_channel`: \"#Prod Access\" is not a Slack channel"),
        "{err}"
    );
    let (ok, _, err) = validate(&[dir.join("missing.yaml").to_str().unwrap()]);
    assert!(!ok && err.contains("reading"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// plan, apply and show: against moto's server, with a synced directory written in-process.

mod with_stack {
    use integration_tests::{aws_endpoint, unique, Stack};
    use jit_shared::{
        adapters::{dynamodb::DynamoStore, setup},
        domain::model::{DirectoryChanges, DirectoryGroup, DirectoryUser, Membership, MembershipMethod, UserState},
        ports::DirectoryStore,
    };
    use serde_json::Value;
    use std::{path::PathBuf, process::Output};

    struct World {
        env: Vec<(String, String)>,
        dir: PathBuf,
        _stack: Stack,
    }

    fn user(id: &str, email: &str) -> DirectoryUser {
        DirectoryUser {
            id: id.into(),
            email: email.into(),
            username: email.split('@').next().unwrap().into(),
            first_name: None,
            last_name: None,
            job_title: None,
            department: None,
            location: None,
            employee_type: None,
            manager_id: None,
            manager_email: None,
            state: UserState::Activated,
        }
    }

    fn group(id: &str, name: &str, requestable: bool) -> DirectoryGroup {
        DirectoryGroup {
            id: id.into(),
            name: name.into(),
            description: None,
            membership_method: MembershipMethod::Static,
            requestable,
        }
    }

    async fn world() -> World {
        let stack = Stack::new().await;
        stack.integration("corp", "policy-key").await;
        let bus = unique("bus");
        setup::ensure_event_bus(&aws_sdk_eventbridge::Client::new(&stack.sdk), &bus).await.unwrap();
        let directory = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
        let changes = DirectoryChanges {
            put_users: vec![user("u-alice", "alice@corp.com"), user("u-bob", "bob@corp.com")],
            put_groups: vec![
                group("g-db", "prod-db-admins", true),
                group("g-eng", "engineering", false),
                group("g-own", "db-owners", false),
            ],
            put_memberships: vec![
                Membership { group_id: "g-eng".into(), user_id: "u-alice".into() },
                Membership { group_id: "g-own".into(), user_id: "u-bob".into() },
            ],
            ..DirectoryChanges::default()
        };
        directory.apply_changes("corp", &changes).await.unwrap();
        let env = [
            ("AWS_ENDPOINT_URL", aws_endpoint().as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("TABLE_NAME", &stack.table),
            ("JUMPCLOUD_API_URL", "http://127.0.0.1:9"),
            ("SECRET_TAG_KEY", &stack.tag_key),
            ("SECRET_TAG_VALUE", "true"),
            ("EVENT_BUS_NAME", &bus),
            ("JITCTL_OPERATOR", "ops-carol"),
            ("RUST_LOG", "warn"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let dir = std::env::temp_dir().join(unique("jitctl-policy"));
        std::fs::create_dir_all(&dir).unwrap();
        World { env, dir, _stack: stack }
    }

    impl World {
        fn file(&self, name: &str, text: &str) -> String {
            let path = self.dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        }

        async fn jitctl(&self, args: &[&str]) -> Output {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jitctl"));
            command
                .args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(self.env.clone());
            tokio::task::spawn_blocking(move || command.output().expect("jitctl runs")).await.unwrap()
        }

        async fn ok_json(&self, args: &[&str]) -> Value {
            let out = self.jitctl(args).await;
            assert!(out.status.success(), "jitctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("jitctl {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
        }

        /// A refused command: exit status 1, its stdout and stderr.
        async fn fails(&self, args: &[&str]) -> (String, String) {
            let out = self.jitctl(args).await;
            assert_eq!(out.status.code(), Some(1), "jitctl {args:?}: {}", String::from_utf8_lossy(&out.stdout));
            (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
        }
    }

    impl Drop for World {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const ENGINEERS: &str = "version: 1\nrules:\n  - groups: [\"prod-db-*\"]\n    eligible: {groups: [engineering]}\n    max_duration: 2h\n    approval: {approvers: [{group: db-owners}]}\n";
    const BOB_ONLY: &str = "version: 1\nrules:\n  - groups: [\"prod-db-*\"]\n    eligible: {users: [bob@corp.com]}\n    max_duration: 1h\n    approval: {approvers: [{group: db-owners}]}\n";
    const UNKNOWN_APPROVERS: &str = "version: 1\nrules:\n  - groups: [\"prod-db-*\"]\n    eligible: everyone\n    approval: {approvers: [{group: dba-team}]}\n";

    #[tokio::test]
    async fn plan_apply_and_show_version_the_policy() {
        let w = world().await;
        let (engineers, bob_only) = (w.file("engineers.yaml", ENGINEERS), w.file("bob.yaml", BOB_ONLY));
        let (_, err) = w.fails(&["policy", "show"]).await;
        assert!(err.contains("no policy is applied"), "{err}");

        // Plan against nothing applied: alice (engineering) gains prod-db-admins.
        let plan = w.ok_json(&["policy", "plan", &engineers, "--json"]).await;
        assert_eq!(plan["applied"], Value::Null);
        let groups = plan["plan"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{plan}");
        assert_eq!(groups[0]["group_name"], "prod-db-admins");
        assert_eq!(groups[0]["gains"], serde_json::json!(["alice@corp.com"]));
        assert_eq!(plan["plan"]["warnings"], serde_json::json!([]));

        let applied = w.ok_json(&["policy", "apply", &engineers, "--json"]).await;
        assert_eq!((applied["applied"].as_bool(), applied["version"].as_u64()), (Some(true), Some(1)), "{applied}");
        assert_eq!(applied["previous"], Value::Null);
        assert_eq!(applied["applied_by"], "cli:ops-carol");
        assert_eq!(applied["notify"], serde_json::json!([]));
        // The same document again: nothing stored.
        let again = w.ok_json(&["policy", "apply", &engineers, "--json"]).await;
        assert_eq!((again["unchanged"].as_bool(), again["version"].as_u64()), (Some(true), Some(1)));

        // The human plan of the next change, then apply it against the version it planned on.
        let out = w.jitctl(&["policy", "plan", &bob_only]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(text.contains("against version 1"), "{text}");
        assert!(text.contains("max_duration: 2h -> 1h"), "{text}");
        assert!(text.contains("gain eligibility (1): bob@corp.com"), "{text}");
        assert!(text.contains("lose eligibility (1): alice@corp.com"), "{text}");
        let (_, err) = w.fails(&["policy", "apply", &bob_only, "--expect-version", "0"]).await;
        assert!(err.contains("the applied version is 1, not 0"), "{err}");
        let out = w.jitctl(&["policy", "apply", &bob_only, "--expect-version", "1"]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("as version 2") && text.contains("previous 1"), "{text}");

        let shown = w.ok_json(&["policy", "show", "--json"]).await;
        assert_eq!((shown["version"].as_u64(), shown["document"].as_str()), (Some(2), Some(BOB_ONLY)));
        assert_eq!(shown["sha256"].as_str().unwrap().len(), 64);
        let first = w.ok_json(&["policy", "show", "--version", "1", "--json"]).await;
        assert_eq!(first["document"], ENGINEERS, "version 1 as it was applied");
        let out = w.jitctl(&["policy", "show"]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("version     2") && text.contains("applied by  cli:ops-carol"), "{text}");
        let (_, err) = w.fails(&["policy", "show", "--version", "9"]).await;
        assert!(err.contains("no policy version 9"), "{err}");

        // Both changes are in the audit trail of the day.
        let trail = w.ok_json(&["audit", "--since", "1h", "--json"]).await;
        let changes: Vec<&Value> =
            trail.as_array().unwrap().iter().filter(|r| r["action"] == "policy_applied").collect();
        assert_eq!(changes.len(), 2, "{trail}");
        assert_eq!(changes[1]["actor"], "cli:ops-carol");
        assert!(changes[1]["detail"].as_str().unwrap().ends_with("previous 1"), "{trail}");
    }

    #[tokio::test]
    async fn malformed_documents_and_unknown_approver_groups_are_refused_and_nothing_is_stored() {
        let w = world().await;
        let bad = w.file("bad.yaml", "version: 1\nrules:\n  - groups: [prod-*]\n    max_duration: soon\n");
        let (_, err) = w.fails(&["policy", "apply", &bad]).await;
        // The parser places a value's error at its rule (line 3) and names the field.
        assert!(err.contains("line 3") && err.contains("`max_duration`: invalid duration \"soon\""), "{err}");
        let (out, _) = w.fails(&["policy", "plan", &bad, "--json"]).await;
        let refusal: Value = serde_json::from_str(&out).unwrap();
        assert_eq!((refusal["valid"].as_bool(), refusal["line"].as_u64()), (Some(false), Some(3)));

        let unknown = w.file("unknown.yaml", UNKNOWN_APPROVERS);
        // A warning in plan...
        let plan = w.ok_json(&["policy", "plan", &unknown, "--json"]).await;
        let warnings = &plan["plan"]["warnings"];
        assert_eq!(warnings[0]["kind"], "unknown_approver_group", "{plan}");
        assert_eq!(warnings[0]["group"], "dba-team");
        // ...a refusal in apply.
        let (_, err) = w.fails(&["policy", "apply", &unknown]).await;
        assert!(err.contains("approver group \"dba-team\" is not in the synced directory"), "{err}");
        let (_, err) = w.fails(&["policy", "show"]).await;
        assert!(err.contains("no policy is applied"), "nothing stored: {err}");
    }
}
