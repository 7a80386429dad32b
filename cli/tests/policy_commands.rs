//! `jitctl policy validate`: the real binary on the shipped example and on broken documents. It
//! needs no AWS and no configuration.

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
    let (ok, _, err) = validate(&[dir.join("missing.yaml").to_str().unwrap()]);
    assert!(!ok && err.contains("reading"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
