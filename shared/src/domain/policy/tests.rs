//! The policy document's parsing (every refusal with its position) and evaluation (every path).

use super::*;
use crate::domain::model::GrantDuration;
use std::collections::HashSet;

const EXAMPLE: &str = include_str!("../../../../policy/example.yaml");

fn d(text: &str) -> GrantDuration {
    text.parse().unwrap()
}

fn refused(text: &str) -> PolicyError {
    parse_policy(text).expect_err("refused")
}

#[test]
fn the_shipped_example_parses_with_its_defaults_applied() {
    let policy = parse_policy(EXAMPLE).unwrap();
    assert_eq!(policy.version, 1);
    assert_eq!(policy.rules.len(), 3);
    let db = &policy.rules[0];
    assert_eq!(db.max_duration, d("2h"));
    assert_eq!(db.approval.required, 2);
    assert_eq!(
        db.approval.approvers,
        vec![Approver::Manager, Approver::Group("db-owners".into()), Approver::User("bob@corp.com".into())]
    );
    assert_eq!(db.approval.auto_approve_up_to, Some(d("30m")));
    // Not said by the rule: from `defaults`.
    assert_eq!(db.approval.timeout, d("24h"));
    assert!(db.break_glass && db.ticket.is_some());
    assert_eq!((db.remind_before, db.extend_max_total), (Some(d("15m")), d("8h")));
    assert_eq!(db.slack_channel.as_deref(), Some("#db-access"));
    let readonly = &policy.rules[1];
    assert_eq!(readonly.eligible, Eligibility::Everyone);
    assert_eq!(readonly.approval.approvers, vec![Approver::Manager], "from defaults");
    assert_eq!(readonly.extend_max_total, readonly.max_duration, "extend defaults to max_duration");
    assert!(!readonly.break_glass);
    assert_eq!(policy.rules[2].eligible, Eligibility::Nobody);
}

#[test]
fn json_documents_parse_too() {
    let policy = parse_policy(r#"{"version": 1, "rules": [{"groups": ["ops-*"], "eligible": "everyone"}]}"#).unwrap();
    let rule = &policy.rules[0];
    assert_eq!((rule.max_duration, rule.approval.required), (d("4h"), 1));
    assert_eq!(rule.approval.auto_approve_up_to, None);
    // A rule that says nothing about eligibility is closed.
    let closed = parse_policy(r#"{"version": 1, "rules": [{"groups": ["ops-*"]}]}"#).unwrap();
    assert_eq!(closed.rules[0].eligible, Eligibility::Nobody);
}

#[test]
fn malformed_documents_are_refused_with_the_line_and_the_reason() {
    // serde_yaml_ng places a value's error at the mapping that holds it (the rule, or its
    // `approval`); the message names the path and the field.
    let cases: [(&str, &str, Option<usize>); 14] = [
        ("version: 2\nrules: []\n", "version 2 is not supported", Some(1)),
        (
            "version: 1\nrules:\n  - groups: [a]\n    max_duration: soon\n",
            "rules[0]: `max_duration`: invalid duration \"soon\"",
            Some(3),
        ),
        (
            "version: 1\nrules:\n  - groups: [a]\n    maxduration: 2h\n",
            "rules[0]: unknown field `maxduration`",
            Some(4),
        ),
        ("version: 1\nrules:\n  - groups: []\n", "rules[0]: `groups`: must name at least one group", Some(3)),
        ("version: 1\nrules:\n  - groups: [\"[a\"]\n", "`groups`: bad group pattern", Some(3)),
        ("version: 1\nrules:\n  - groups: [a]\n    ticket: \"(INC\"\n", "`ticket`: bad ticket pattern", Some(3)),
        (
            "version: 1\nrules:\n  - groups: [a]\n    approval: {approvers: [boss]}\n",
            "rules[0].approval: `approvers`: unknown approver",
            Some(4),
        ),
        ("version: 1\nrules:\n  - groups: [a]\n    approval: {required: 0}\n", "`required`: must be 1 to 10", Some(4)),
        ("version: 1\nrules:\n  - groups: [a]\n    eligible: {}\n", "`eligible`: names no group and no user", Some(3)),
        ("version: 1\nrules:\n  - groups: [a]\n    eligible: all\n", "`eligible`: is `everyone`", Some(3)),
        (
            "version: 1\nrules:\n  - groups: [a]\n\n    approval:\n      auto_approve_up_to: 15\n",
            "`auto_approve_up_to`: 15 needs a unit",
            Some(6),
        ),
        ("version: 1\ndefaults:\n  max_duration: 2x\nrules: []\n", "defaults: `max_duration`", Some(3)),
        ("version: 1\n", "missing field `rules`", Some(1)),
        (
            "version: 1\nrules:\n  - groups: [a]\n    slack_channel: \"#Access Requests\"\n",
            "`slack_channel`: \"#Access Requests\" is not a Slack channel",
            Some(3),
        ),
    ];
    for (text, reason, line) in cases {
        let err = refused(text);
        assert!(err.reason.contains(reason), "{text:?}: {err}");
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.to_string().starts_with(&format!("line {}", line.unwrap())), "{err}");
    }
}

#[test]
fn a_rules_slack_channel_is_a_channel_id_or_name_and_inherits_from_defaults() {
    let policy = parse_policy(
        "version: 1\ndefaults:\n  slack_channel: \"#access-requests\"\nrules:\n  - groups: [a]\n  - groups: [b]\n    slack_channel: C0123ABCD\n",
    )
    .unwrap();
    assert_eq!(policy.rules[0].slack_channel.as_deref(), Some("#access-requests"), "from defaults");
    assert_eq!(policy.rules[1].slack_channel.as_deref(), Some("C0123ABCD"));
    assert_eq!(parse_policy(EXAMPLE).unwrap().rules[1].slack_channel, None, "none unless said");
    for bad in ["general", "#", "#UPPER", "#with space", "U0123ABCD", "C01", "c0123abcd", "#a.b", ""] {
        let doc = format!("version: 1\nrules:\n  - groups: [a]\n    slack_channel: {bad:?}\n");
        let err = refused(&doc);
        assert!(err.reason.contains("`slack_channel`") && err.reason.contains("not a Slack channel"), "{bad}: {err}");
    }
    let long = format!("version: 1\nrules:\n  - groups: [a]\n    slack_channel: \"#{}\"\n", "a".repeat(81));
    assert!(refused(&long).reason.contains("not a Slack channel"));
    let longest = format!("version: 1\nrules:\n  - groups: [a]\n    slack_channel: \"#{}\"\n", "a".repeat(80));
    assert!(parse_policy(&longest).is_ok());
}

#[test]
fn inconsistent_rules_are_refused_naming_the_rule() {
    let err = refused(
        "version: 1\nrules:\n  - groups: [a]\n  - groups: [b]\n    approval: {approvers: [manager], required: 2}\n",
    );
    assert!(err.reason.contains("rule 2 (b)") && err.reason.contains("required is 2"), "{err}");
    // A group can hold any number of approvers.
    assert!(parse_policy(
        "version: 1\nrules:\n  - groups: [b]\n    approval: {approvers: [{group: owners}], required: 3}\n"
    )
    .is_ok());
    let err = refused("version: 1\nrules:\n  - groups: [a]\n    max_duration: 4h\n    extend: {max_total: 2h}\n");
    assert!(err.reason.contains("below max_duration"), "{err}");
    assert!(refused(&"#".repeat(MAX_POLICY_BYTES + 1)).reason.contains("larger than"));
}

// ---------------------------------------------------------------------------------------------
// Evaluation

struct Person {
    id: &'static str,
    email: &'static str,
    groups: HashSet<&'static str>,
}

fn person(id: &'static str, email: &'static str, groups: &[&'static str]) -> Person {
    Person { id, email, groups: groups.iter().copied().collect() }
}

fn evaluate(
    policy: &Policy,
    who: &Person,
    group: &str,
    duration: &str,
    reason: &str,
    break_glass: bool,
) -> Result<(usize, Decision), Refusal> {
    let member_of = |g: &str| who.groups.contains(g);
    let request = PolicyRequest {
        group: GroupRef { id: "5f0000000000000000000001", name: group },
        requester: Requester {
            id: who.id,
            email: who.email,
            username: who.email.split('@').next().unwrap(),
            member_of: &member_of,
        },
        duration: d(duration),
        reason,
        break_glass,
    };
    policy.evaluate(&request).map(|(rule, decision)| (rule.number(), decision))
}

#[test]
fn a_ticket_pattern_is_matched_by_the_reason_or_one_of_its_words() {
    let policy = parse_policy(EXAMPLE).unwrap();
    let rule = &policy.rules[0];
    assert_eq!(rule.ticket.as_ref().map(|t| t.as_str()), Some("^INC-[0-9]+$"), "anchored, as people write it");
    for named in ["INC-4711", "INC-4711 restore the orders table", "restore (INC-4711), urgently", "see INC-12."] {
        assert!(rule.reason_names_ticket(named), "{named:?} names a ticket");
    }
    for unnamed in ["because", "INC-", "xINC-4711 restore", "INC-4711x", "INC 4711", ""] {
        assert!(!rule.reason_names_ticket(unnamed), "{unnamed:?} names no ticket");
    }
    let engineer = person("u1", "eve@corp.com", &["engineering"]);
    assert!(evaluate(&policy, &engineer, "prod-db-admins", "1h", "INC-4711: restore a table", false).is_ok());
}

#[test]
fn each_policy_path_decides_as_the_rule_says() {
    let policy = parse_policy(EXAMPLE).unwrap();
    let engineer = person("u1", "eve@corp.com", &["engineering"]);
    let carol = person("u2", "carol@corp.com", &[]);
    let outsider = person("u3", "mallory@corp.com", &["sales"]);
    let inc = "INC-4711";

    // Eligible by group, by user; the rule's approval.
    let needs = Decision::NeedsApproval {
        required: 2,
        approvers: vec![Approver::Manager, Approver::Group("db-owners".into()), Approver::User("bob@corp.com".into())],
        timeout: d("24h"),
    };
    assert_eq!(evaluate(&policy, &engineer, "prod-db-admins", "2h", inc, false), Ok((1, needs.clone())));
    assert_eq!(evaluate(&policy, &carol, "prod-db-admins", "1h", inc, false), Ok((1, needs)));
    // Ineligible; a group that only the catch-all rule covers; over the maximum; no ticket.
    assert!(matches!(
        evaluate(&policy, &outsider, "prod-db-admins", "1h", inc, false),
        Err(Refusal::Ineligible { rule: 1, .. })
    ));
    assert!(matches!(
        evaluate(&policy, &engineer, "finance", "1h", inc, false),
        Err(Refusal::Ineligible { rule: 3, .. })
    ));
    assert!(matches!(
        evaluate(&policy, &engineer, "prod-db-admins", "3h", inc, false),
        Err(Refusal::OverMaximum { rule: 1, .. })
    ));
    assert!(matches!(
        evaluate(&policy, &engineer, "prod-db-admins", "1h", "because", false),
        Err(Refusal::TicketMissing { rule: 1, .. })
    ));
    // Auto-approval up to its threshold, not beyond.
    assert_eq!(evaluate(&policy, &engineer, "prod-db-admins", "30m", inc, false), Ok((1, Decision::AutoApproved)));
    assert!(matches!(
        evaluate(&policy, &engineer, "prod-db-admins", "31m", inc, false),
        Ok((1, Decision::NeedsApproval { .. }))
    ));
    // Break glass where the rule allows it, refused where it does not.
    assert_eq!(evaluate(&policy, &engineer, "prod-db-admins", "2h", inc, true), Ok((1, Decision::BreakGlass)));
    assert!(matches!(
        evaluate(&policy, &outsider, "prod-ci-runners", "1h", "x", true),
        Err(Refusal::BreakGlassNotAllowed { rule: 2, .. })
    ));
    // The first matching rule decides: everyone, auto-approved within 8h.
    assert_eq!(evaluate(&policy, &outsider, "prod-ci-runners", "8h", "x", false), Ok((2, Decision::AutoApproved)));
}

#[test]
fn a_group_no_rule_covers_cannot_be_requested_and_rules_match_ids() {
    let policy = parse_policy(
        "version: 1\nrules:\n  - groups: [\"5f0000000000000000000001\"]\n    eligible: everyone\n    approval: {approvers: [{user: Bob@Corp.com}]}\n",
    )
    .unwrap();
    let anyone = person("u9", "x@corp.com", &[]);
    // The evaluate helper asks for the group with id ...0001, whatever its name.
    let (rule, decision) = evaluate(&policy, &anyone, "renamed-group", "1h", "x", false).unwrap();
    assert_eq!(rule, 1);
    assert_eq!(
        decision,
        Decision::NeedsApproval {
            required: 1,
            approvers: vec![Approver::User("bob@corp.com".into())],
            timeout: d("24h")
        }
    );
    let other = GroupRef { id: "5f0000000000000000000002", name: "renamed-group" };
    assert!(policy.rule_for(&other).is_none());
    let closed = parse_policy("version: 1\nrules: []\n").unwrap();
    let refusal = evaluate(&closed, &anyone, "prod-db-admins", "1h", "x", false).unwrap_err();
    assert!(matches!(&refusal, Refusal::NoRule { group } if group == "prod-db-admins"));
    assert!(refusal.is_forbidden());
    assert!(!Refusal::OverMaximum { requested: d("2h"), max: d("1h"), rule: 1 }.is_forbidden());
}

#[test]
fn the_schema_describes_the_same_fields_the_parser_reads() {
    let schema: serde_json::Value = serde_json::from_str(include_str!("../../../../policy/schema.json")).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&schema["properties"]), ["defaults", "rules", "version"]);
    assert_eq!(
        keys(&schema["$defs"]["settings"]["properties"]),
        [
            "approval",
            "break_glass",
            "eligible",
            "extend",
            "jit_only",
            "max_duration",
            "remind_before",
            "remove_outside",
            "slack_channel",
            "ticket"
        ]
    );
    assert_eq!(
        keys(&schema["$defs"]["approval"]["properties"]),
        ["approvers", "auto_approve_up_to", "required", "timeout"]
    );
    // Each settings field is one the parser accepts on a rule and in defaults.
    for field in keys(&schema["$defs"]["settings"]["properties"]) {
        let value = match field.as_str() {
            "approval" => "{required: 1}",
            "break_glass" | "jit_only" => "true",
            // Only with jit_only (see `remove_outside_without_jit_only_is_refused`).
            "remove_outside" => "false",
            "eligible" => "everyone",
            "extend" => "{max_total: 12h}",
            "ticket" => "x",
            "slack_channel" => "C0123ABCD",
            _ => "1h",
        };
        let doc = format!("version: 1\ndefaults:\n  {field}: {value}\nrules:\n  - groups: [a]\n    {field}: {value}\n");
        assert!(parse_policy(&doc).is_ok(), "{field}: {:?}", parse_policy(&doc).err());
    }
}
