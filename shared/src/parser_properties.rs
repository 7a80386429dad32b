//! Property tests of the parsers at the edge (proptest): whatever arrives, they answer, never
//! panic, and never echo a secret; what they accept means what it says.

use crate::{
    credentials::{IntegrationSecret, SlackSecret},
    domain::{model::GrantDuration, policy::parse_policy},
    http::Invocation,
};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A duration's own form parses back to it, and `XhYm` means X hours and Y minutes.
    #[test]
    fn a_duration_reads_back_as_written(hours in 0u64..200, minutes in 0u64..60, seconds in 0u64..60) {
        let secs = hours * 3600 + minutes * 60 + seconds;
        prop_assume!(secs > 0);
        let written = GrantDuration::from_secs(secs).to_string();
        prop_assert_eq!(written.parse::<GrantDuration>().map(|d| d.as_secs()), Ok(secs), "{}", written);
        let mut spelled = String::new();
        for (n, unit) in [(hours, 'h'), (minutes, 'm'), (seconds, 's')] {
            if n > 0 {
                spelled.push_str(&format!("{n}{unit}"));
            }
        }
        prop_assert_eq!(spelled.parse::<GrantDuration>().map(|d| d.as_secs()), Ok(secs));
        prop_assert_eq!(format!("PT{}S", secs).parse::<GrantDuration>().map(|d| d.as_secs()), Ok(secs));
    }

    /// Any text: a duration or a refusal, never a panic, never zero or over a year.
    #[test]
    fn any_text_is_a_duration_or_a_refusal(text in ".{0,40}|[0-9dhmsPTDHMS ]{0,20}") {
        if let Ok(d) = text.parse::<GrantDuration>() {
            prop_assert!(d.as_secs() > 0 && d.as_secs() <= 366 * 86_400, "{} -> {}", text, d.as_secs());
        }
    }

    /// A secret's value: parsed or refused by shape; the token never in an error or `Debug`.
    #[test]
    fn a_secret_value_never_echoes_its_token(extra in any_json(), token in "[A-Za-z0-9]{12,40}", name in ".{0,20}") {
        let mut value = json!({ "token": token, "name": name });
        if let (Value::Object(fields), Value::Object(more)) = (&mut value, &extra) {
            for (k, v) in more {
                if k != "token" {
                    fields.insert(k.clone(), v.clone());
                }
            }
        }
        let text = value.to_string();
        let shown = match IntegrationSecret::parse(&text) {
            Ok(secret) => format!("{:?}", secret),
            Err(e) => format!("{} {:?}", e, e),
        };
        prop_assert!(!shown.contains(&token), "the token in {}", shown);
        let slack = json!({ "bot_token": format!("xoxb-{token}"), "signing_secret": token, "extra": extra }).to_string();
        let shown = match SlackSecret::parse(&slack) {
            Ok(secret) => format!("{:?}", secret),
            Err(e) => format!("{} {:?}", e, e),
        };
        prop_assert!(!shown.contains(&token), "the token in {}", shown);
    }

    /// Any JSON as a secret or an event: an answer, never a panic.
    #[test]
    fn any_json_is_classified_or_refused(value in any_json()) {
        let _ = IntegrationSecret::parse(&value.to_string());
        let _ = SlackSecret::parse(&value.to_string());
        let _ = Invocation::classify(value.clone());
        // Shaped like an HTTP API event, with anything in its fields.
        let event = json!({ "version": "2.0", "routeKey": "POST /grants", "rawPath": "/grants",
            "requestContext": { "http": { "method": "POST", "path": "/grants" }, "stage": "$default" },
            "headers": value.clone(), "body": value.to_string() });
        let _ = Invocation::classify(event);
    }

    /// Any text as a policy document: a policy or a refusal naming where, never a panic.
    #[test]
    fn any_text_is_a_policy_or_a_refusal(text in "(version: 1\n)?(rules:\n)?(  - groups: \\[[a-z*\"]{0,10}\\]\n)?.{0,80}") {
        let _ = parse_policy(&text);
    }

    /// A generated rule parses, and reads back what it was given.
    #[test]
    fn a_generated_rule_reads_back(hours in 1u64..12, required in 1u32..=3, auto in prop::option::of(1u64..60),
                                   break_glass in any::<bool>(), group in "[a-z]{1,10}-\\*") {
        let auto_line = auto.map(|m| format!(", auto_approve_up_to: {m}m")).unwrap_or_default();
        let document = format!(
            "version: 1\nrules:\n  - groups: [\"{group}\"]\n    eligible: everyone\n    max_duration: {hours}h\n    approval: {{approvers: [manager, {{group: db-owners}}, {{user: a@corp.com}}], required: {required}{auto_line}}}\n    break_glass: {break_glass}\n"
        );
        let policy = parse_policy(&document).map_err(|e| TestCaseError::fail(format!("{e}\n{document}")))?;
        let rule = &policy.rules[0];
        prop_assert_eq!(rule.max_duration.as_secs(), hours * 3600);
        prop_assert_eq!(rule.approval.required, required);
        prop_assert_eq!(rule.approval.auto_approve_up_to.map(|d| d.as_secs()), auto.map(|m| m * 60));
        prop_assert_eq!(rule.break_glass, break_glass);
    }
}
