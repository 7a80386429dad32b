//! The deployment template (`infra/template.yaml`) held to the code and to least privilege, so that
//! neither can drift or widen silently:
//! - the table equals `jit_shared::adapters::dynamodb::table` (the definition `jitctl setup` uses);
//! - every IAM statement keeps to the allow-lists below (no `*` action, no `*` resource but
//!   `secretsmanager:ListSecrets`, secrets only by tag, schedules only in the group, ...);
//! - every HTTP API route requires IAM authorization unless JWT is chosen;
//! - the functions get the configuration the code reads, and its defaults are valid;
//! - the optional notification topic exists only when asked for, and only its rule publishes to it;
//! - each HTTP sample event in `events/` is a request to one of the template's routes.
//!
//! No AWS: this only reads the file. cfn-lint, `sam validate --lint` and `sam build` run in
//! scripts/test.sh. Short-form tags (`!Ref`, `!Sub`, `!GetAtt`, `!If`) are turned into their long
//! form (`Ref`, `Fn::Sub`, `Fn::GetAtt`, `Fn::If`) first, so the template may use either.

use jit_shared::{adapters::dynamodb::table, config::Config, domain::model::EVENT_SOURCE};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------------
// What each role may do. Adjust these together with the template when a function's code calls
// something new: that is the point of keeping them here.
// ---------------------------------------------------------------------------------------------

/// BatchGetItem: users by id (the incremental sync's named users, a fanned-out sync's parts).
const SYNC_TABLE_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:Query",
];
/// Transactions (TransactWriteItems) are authorized per item by these actions: IAM has no
/// `dynamodb:TransactWriteItems` action.
/// BatchGetItem: the synced-membership oracle; DeleteItem: a lease ends with its last grant.
const GRANT_TABLE_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
];
const REVOKE_TABLE_ACTIONS: &[&str] = GRANT_TABLE_ACTIONS;

const SYNC_PARTS_ACTIONS: &[&str] = &[
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
];

const SECRETS_ACTIONS: &[&str] = &["secretsmanager:ListSecrets", "secretsmanager:GetSecretValue"];
const LOG_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

/// Every action a role may hold, by role logical id (the function's role, or the scheduler's).
fn allowed_actions() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let common = || SECRETS_ACTIONS.iter().chain(LOG_ACTIONS).chain(&["events:PutEvents"]).copied();
    BTreeMap::from([
        (
            "SyncRole",
            SYNC_TABLE_ACTIONS
                .iter()
                .copied()
                .chain(common())
                // The fanned-out sync's parts: sent, and received as the queue's event source.
                .chain(SYNC_PARTS_ACTIONS.iter().copied())
                .collect(),
        ),
        (
            "GrantRole",
            GRANT_TABLE_ACTIONS
                .iter()
                .copied()
                .chain(common())
                .chain(["scheduler:CreateSchedule", "scheduler:DeleteSchedule", "iam:PassRole"])
                .collect(),
        ),
        (
            "RevokeRole",
            REVOKE_TABLE_ACTIONS
                .iter()
                .copied()
                .chain(common())
                // sqs:SendMessage: Lambda's on-failure destination for asynchronous invocations.
                .chain(["scheduler:DeleteSchedule", "sqs:SendMessage"])
                .collect(),
        ),
        ("SchedulerRole", BTreeSet::from(["lambda:InvokeFunction", "sqs:SendMessage"])),
    ])
}

/// The function each role belongs to (the scheduler role belongs to none).
const FUNCTIONS: [(&str, &str, &str); 3] = [
    ("SyncFunction", "sync", "SyncRole"),
    ("GrantFunction", "grant", "GrantRole"),
    ("RevokeFunction", "revoke", "RevokeRole"),
];

// ---------------------------------------------------------------------------------------------
// Reading the template
// ---------------------------------------------------------------------------------------------

const TEMPLATE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/template.yaml");

fn template() -> Value {
    let text = std::fs::read_to_string(TEMPLATE_PATH).unwrap_or_else(|e| panic!("{TEMPLATE_PATH}: {e}"));
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{TEMPLATE_PATH}: {e}"));
    long_form(yaml)
}

/// YAML to JSON, with CloudFormation's short-form tags in their long form: `!Ref x` is
/// `{"Ref": x}`, `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`.
fn long_form(yaml: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).expect("a YAML number is a JSON number"),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(long_form).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match k {
                    Y::String(k) => (k, long_form(v)),
                    other => panic!("a mapping key that is not a string: {other:?}"),
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = long_form(tagged.value);
            let value = match (name, value) {
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s.split_once('.').expect("!GetAtt Resource.Attribute");
                    json!([resource, attribute])
                }
                (_, value) => value,
            };
            let key = if matches!(name, "Ref" | "Condition") { name.to_owned() } else { format!("Fn::{name}") };
            Value::Object(Map::from_iter([(key, value)]))
        }
    }
}

struct Template(Value);

impl Template {
    fn load() -> Self {
        Self(template())
    }
    fn resources(&self) -> &Map<String, Value> {
        self.0["Resources"].as_object().expect("Resources")
    }
    fn resource(&self, id: &str) -> &Value {
        self.resources().get(id).unwrap_or_else(|| panic!("no resource {id}"))
    }
    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources().iter().filter(move |(_, r)| r["Type"] == kind)
    }
    fn parameter_default(&self, name: &str) -> Option<String> {
        match &self.0["Parameters"][name]["Default"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Null => None,
            other => panic!("parameter {name}: default {other}"),
        }
    }
}

fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

fn reference(name: &str) -> Value {
    json!({ "Ref": name })
}

/// A value that may be one item or a list of them, as a list.
fn one_or_many(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

fn strings(value: &Value) -> Vec<String> {
    one_or_many(value)
        .into_iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The table: one source of truth
// ---------------------------------------------------------------------------------------------

fn key_schema_of(value: &Value) -> Vec<(String, String)> {
    one_or_many(value)
        .iter()
        .map(|k| (k["AttributeName"].as_str().unwrap().to_owned(), k["KeyType"].as_str().unwrap().to_owned()))
        .collect()
}

fn sdk_key_schema(keys: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> Vec<(String, String)> {
    keys.iter().map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned())).collect()
}

#[test]
fn the_table_equals_its_definition_in_code() {
    let t = Template::load();
    let tables: Vec<_> = t.of_type("AWS::DynamoDB::Table").collect();
    assert_eq!(tables.len(), 1, "one table");
    let (id, resource) = tables[0];
    let p = &resource["Properties"];

    assert_eq!(p["BillingMode"], table::BILLING_MODE.as_str(), "{id}: billing mode");
    assert!(p.get("ProvisionedThroughput").is_none(), "{id}: on-demand has no provisioned throughput");

    // Keys: the constants and the SDK definition `jitctl setup` uses.
    assert_eq!(
        key_schema_of(&p["KeySchema"]),
        vec![(table::PARTITION_KEY.to_owned(), "HASH".to_owned()), (table::SORT_KEY.to_owned(), "RANGE".to_owned())]
    );
    assert_eq!(key_schema_of(&p["KeySchema"]), sdk_key_schema(&table::key_schema()));

    let attributes: BTreeSet<(String, String)> = one_or_many(&p["AttributeDefinitions"])
        .iter()
        .map(|a| (a["AttributeName"].as_str().unwrap().to_owned(), a["AttributeType"].as_str().unwrap().to_owned()))
        .collect();
    let expected: BTreeSet<(String, String)> = table::attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
        .collect();
    assert_eq!(attributes, expected, "{id}: attribute definitions");
    assert_eq!(one_or_many(&p["AttributeDefinitions"]).len(), expected.len(), "{id}: no duplicate attribute");

    type Gsi = (String, Vec<(String, String)>, String);
    let indexes: Vec<Gsi> = one_or_many(&p["GlobalSecondaryIndexes"])
        .iter()
        .map(|g| {
            assert!(g.get("ProvisionedThroughput").is_none(), "{g}: on-demand");
            (
                g["IndexName"].as_str().unwrap().to_owned(),
                key_schema_of(&g["KeySchema"]),
                g["Projection"]["ProjectionType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<Gsi> = table::global_secondary_indexes()
        .iter()
        .map(|g| {
            let projection = g.projection().and_then(|p| p.projection_type()).expect("a projection");
            (g.index_name().to_owned(), sdk_key_schema(g.key_schema()), projection.as_str().to_owned())
        })
        .collect();
    assert_eq!(indexes, expected, "{id}: global secondary indexes");
    let names: Vec<&str> = table::INDEXES.iter().map(|i| i.name).collect();
    assert_eq!(indexes.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), names);
    for (index, (_, keys, _)) in table::INDEXES.iter().zip(&indexes) {
        assert_eq!(keys[0].0, index.partition_key);
        assert_eq!(keys[1].0, index.sort_key);
    }
    assert!(p.get("LocalSecondaryIndexes").is_none(), "{id}: no LSI in the code's definition");

    assert_eq!(
        p["TimeToLiveSpecification"],
        json!({ "AttributeName": table::TTL_ATTRIBUTE, "Enabled": true }),
        "{id}: TTL attribute"
    );
    assert_eq!(p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true, "{id}: PITR");
    assert_eq!(p["DeletionProtectionEnabled"], true, "{id}: deletion protection");
    assert_eq!(resource["DeletionPolicy"], "Retain", "{id}: the audit trail outlives the stack");
    assert_eq!(resource["UpdateReplacePolicy"], "Retain", "{id}: the audit trail outlives a replacement");

    // The functions find it through TABLE_NAME.
    assert_eq!(t.0["Globals"]["Function"]["Environment"]["Variables"]["TABLE_NAME"], reference(id));
}

// ---------------------------------------------------------------------------------------------
// Least privilege
// ---------------------------------------------------------------------------------------------

/// A policy document: an object, or a JSON string (possibly under `Fn::Sub`, whose `${...}` stay
/// inside JSON strings).
fn policy_document(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.contains_key("Statement") => value.clone(),
        Value::String(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("policy JSON: {e}\n{text}")),
        Value::Object(map) if map.contains_key("Fn::Sub") => match &map["Fn::Sub"] {
            Value::String(_) => policy_document(&map["Fn::Sub"]),
            Value::Array(parts) => policy_document(&parts[0]),
            other => panic!("Fn::Sub {other}"),
        },
        other => panic!("unsupported policy document: {other}"),
    }
}

fn statements(document: &Value) -> Vec<Value> {
    let document = policy_document(document);
    assert_eq!(document["Version"], "2012-10-17", "{document}");
    one_or_many(&document["Statement"])
}

/// Every statement of every identity policy that applies to a role, with where it comes from.
fn role_statements(t: &Template, role_id: &str) -> Vec<(String, Value)> {
    let role = &t.resource(role_id)["Properties"];
    let mut out = vec![];
    for policy in one_or_many(&role["Policies"]) {
        let name = policy["PolicyName"].as_str().unwrap_or("?").to_owned();
        out.extend(statements(&policy["PolicyDocument"]).into_iter().map(|s| (format!("{role_id}/{name}"), s)));
    }
    for arn in one_or_many(&role["ManagedPolicyArns"]) {
        // A policy attached only with Slack on is checked as if it were on (the widest case).
        let arn = slack_on(&arn);
        let id = arn["Ref"].as_str().unwrap_or_else(|| {
            panic!("{role_id}: managed policy {arn} is not one of this template's: its actions cannot be checked")
        });
        let managed = t.resource(id);
        assert_eq!(managed["Type"], "AWS::IAM::ManagedPolicy", "{role_id}: {id}");
        out.extend(statements(&managed["Properties"]["PolicyDocument"]).into_iter().map(|s| (id.to_owned(), s)));
    }
    for (id, policy) in t.of_type("AWS::IAM::Policy") {
        if one_or_many(&policy["Properties"]["Roles"]).contains(&reference(role_id)) {
            out.extend(statements(&policy["Properties"]["PolicyDocument"]).into_iter().map(|s| (id.clone(), s)));
        }
    }
    assert!(!out.is_empty(), "{role_id} has no policy");
    // Denials only narrow what the rest allows (see `audit_records_cannot_be_changed_or_deleted`).
    out.retain(|(_, s)| s["Effect"] != "Deny");
    out
}

/// Resolves `Fn::If [SlackOn, ...]` as with `SlackEnabled` "true".
fn slack_on(value: &Value) -> Value {
    match value.get("Fn::If").and_then(Value::as_array) {
        Some(args) if args[0] == "SlackOn" => args[1].clone(),
        Some(args) => panic!("unexpected condition {}", args[0]),
        None => value.clone(),
    }
}

/// The Deny statements of a role's inline policies.
fn role_denials(t: &Template, role_id: &str) -> Vec<Value> {
    one_or_many(&t.resource(role_id)["Properties"]["Policies"])
        .iter()
        .flat_map(|p| statements(&p["PolicyDocument"]))
        .filter(|s| s["Effect"] == "Deny")
        .collect()
}

#[test]
fn every_function_has_reserved_concurrency_from_a_parameter() {
    let t = Template::load();
    let expected = [
        ("RevokeFunction", "RevokeReservedConcurrency", "5"),
        ("SyncFunction", "SyncReservedConcurrency", "6"),
        ("GrantFunction", "GrantReservedConcurrency", "10"),
    ];
    for (function, parameter, default) in expected {
        let properties = &t.resource(function)["Properties"];
        assert_eq!(properties["ReservedConcurrentExecutions"], reference(parameter), "{function}");
        assert_eq!(t.parameter_default(parameter).as_deref(), Some(default), "{parameter}");
    }
    let functions: BTreeSet<&str> = t.of_type("AWS::Serverless::Function").map(|(id, _)| id.as_str()).collect();
    let covered: BTreeSet<&str> = expected.iter().map(|(function, _, _)| *function).collect();
    assert_eq!(functions, covered, "each function needs its reserved concurrency parameter here");
}

#[test]
fn audit_records_cannot_be_changed_or_deleted() {
    let t = Template::load();
    for (_, _, role_id) in FUNCTIONS {
        let denials = role_denials(&t, role_id);
        let audit = denials
            .iter()
            .find(|s| s["Sid"] == "AuditAppendOnly")
            .unwrap_or_else(|| panic!("{role_id}: no AuditAppendOnly denial"));
        let mut denied = strings(&audit["Action"]);
        denied.sort();
        assert_eq!(denied, ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"], "{role_id}");
        assert_eq!(audit["Resource"], get_att("Table", "Arn"), "{role_id}");
        assert_eq!(
            audit["Condition"],
            json!({ "ForAnyValue:StringLike": { "dynamodb:LeadingKeys": ["AUDIT#*"] } }),
            "{role_id}: every audit record's partition (`AUDIT#<grant>`)"
        );
    }
}

fn actions(statement: &Value) -> Vec<String> {
    assert!(statement.get("NotAction").is_none(), "NotAction widens: {statement}");
    strings(&statement["Action"])
}

fn resources(statement: &Value) -> Vec<Value> {
    assert!(statement.get("NotResource").is_none(), "NotResource widens: {statement}");
    one_or_many(&statement["Resource"])
}

fn sub(text: &str) -> Value {
    json!({ "Fn::Sub": text })
}

const SECRET_ARNS: &str = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*";

/// The tag of the Slack app's secret, as the functions' environment and IAM name it.
const SLACK_TAG_KEY: &str = "jit-access-slack";

fn slack_tag_condition() -> Value {
    json!({ "StringEquals": { format!("secretsmanager:ResourceTag/{SLACK_TAG_KEY}"): "true" } })
}
const GROUP_SCHEDULES: &str =
    "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${ScheduleGroup}/*";

/// The rules every Allow statement of every role keeps, whatever the action.
fn check_statement(t: &Template, origin: &str, statement: &Value) {
    assert_eq!(statement["Effect"], "Allow", "{origin}: only Allow statements are expected: {statement}");
    let actions = actions(statement);
    let resources = resources(statement);
    assert!(!actions.is_empty() && !resources.is_empty(), "{origin}: {statement}");
    for action in &actions {
        assert!(!action.contains('*'), "{origin}: wildcard action {action}");
        assert!(action.contains(':'), "{origin}: {action} is not service:Action");
    }
    // Resource "*": only for ListSecrets, which supports no resource-level permissions.
    let star = resources.iter().any(|r| r == "*");
    if star {
        assert_eq!(actions, ["secretsmanager:ListSecrets"], "{origin}: Resource \"*\" for {actions:?}");
        assert_eq!(resources.len(), 1);
    }

    for action in &actions {
        let (service, _) = action.split_once(':').unwrap();
        match service {
            "secretsmanager" => {
                assert!(SECRETS_ACTIONS.contains(&action.as_str()), "{origin}: {action}");
                if action == "secretsmanager:GetSecretValue" {
                    // Only secrets carrying the integration tag (or the Slack app's), through the
                    // resource-tag condition.
                    assert_eq!(actions, ["secretsmanager:GetSecretValue"], "{origin}: keep GetSecretValue alone");
                    assert_eq!(resources, [json!(SECRET_ARNS)], "{origin}: secrets of this account and region");
                    let integration = json!({ "StringEquals": { "secretsmanager:ResourceTag/${SecretTagKey}": "${SecretTagValue}" } });
                    assert!(
                        statement["Condition"] == integration || statement["Condition"] == slack_tag_condition(),
                        "{origin}: GetSecretValue only on tagged secrets: {}",
                        statement["Condition"]
                    );
                }
            }
            "dynamodb" => {
                let table_resources = [get_att("Table", "Arn"), sub("${Table.Arn}/index/*")];
                for r in &resources {
                    assert!(table_resources.contains(r), "{origin}: {action} on {r}");
                }
            }
            "scheduler" => {
                assert!(
                    ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"].contains(&action.as_str()),
                    "{origin}: {action}"
                );
                assert_eq!(resources, [sub(GROUP_SCHEDULES)], "{origin}: {action} only on the group's schedules");
            }
            "iam" => {
                assert_eq!(action, "iam:PassRole", "{origin}: {action}");
                assert_eq!(actions, ["iam:PassRole"], "{origin}: keep PassRole alone");
                assert_eq!(
                    resources,
                    [get_att("SchedulerRole", "Arn")],
                    "{origin}: PassRole only on the scheduler role"
                );
                assert_eq!(
                    statement["Condition"],
                    json!({ "StringEquals": { "iam:PassedToService": "scheduler.amazonaws.com" } }),
                    "{origin}: PassRole only to EventBridge Scheduler"
                );
            }
            "events" => {
                assert_eq!(action, "events:PutEvents", "{origin}: {action}");
                assert_eq!(resources, [get_att("EventBus", "Arn")], "{origin}: PutEvents only on the bus");
            }
            "sqs" if resources == [get_att("SyncPartsQueue", "Arn")] => {
                assert!(origin.starts_with("SyncRole"), "{origin}: only sync sends and receives the sync parts");
                assert!(SYNC_PARTS_ACTIONS.contains(&action.as_str()), "{origin}: {action}");
            }
            "sqs" => {
                assert_eq!(action, "sqs:SendMessage", "{origin}: {action}");
                assert_eq!(resources, [get_att("ScheduleDeadLetterQueue", "Arn")], "{origin}: only the DLQ");
            }
            "lambda" => {
                assert_eq!(action, "lambda:InvokeFunction", "{origin}: {action}");
                assert_eq!(resources, [get_att("RevokeFunction", "Arn")], "{origin}: only revoke");
            }
            "logs" => {
                assert!(LOG_ACTIONS.contains(&action.as_str()), "{origin}: {action}");
                for r in &resources {
                    let group = r["Fn::GetAtt"][0].as_str().unwrap_or_else(|| panic!("{origin}: {action} on {r}"));
                    assert_eq!(r["Fn::GetAtt"][1], "Arn");
                    assert_eq!(t.resource(group)["Type"], "AWS::Logs::LogGroup", "{origin}: {action} on {r}");
                }
            }
            other => panic!("{origin}: unexpected service {other} ({action}): add it to this test deliberately"),
        }
    }
}

#[test]
fn every_role_keeps_to_least_privilege() {
    let t = Template::load();
    let allowed = allowed_actions();

    let roles: BTreeSet<&str> = t.of_type("AWS::IAM::Role").map(|(id, _)| id.as_str()).collect();
    assert_eq!(roles, allowed.keys().copied().collect(), "every role is known to this test");
    for kind in ["AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey"] {
        assert_eq!(t.of_type(kind).count(), 0, "no {kind}");
    }

    for (role_id, allowed) in &allowed {
        let mut held = BTreeSet::new();
        for (origin, statement) in role_statements(&t, role_id) {
            check_statement(&t, &origin, &statement);
            held.extend(actions(&statement));
        }
        let extra: Vec<_> = held.iter().filter(|a| !allowed.contains(a.as_str())).collect();
        assert!(extra.is_empty(), "{role_id} holds actions beyond its list: {extra:?}");
    }

    // Each function's table actions stay within its list (and its logs are its own).
    for (function, _, role_id) in FUNCTIONS {
        let list = match function {
            "SyncFunction" => SYNC_TABLE_ACTIONS,
            "GrantFunction" => GRANT_TABLE_ACTIONS,
            _ => REVOKE_TABLE_ACTIONS,
        };
        let statements = role_statements(&t, role_id);
        let table: BTreeSet<String> =
            statements.iter().flat_map(|(_, s)| actions(s)).filter(|a| a.starts_with("dynamodb:")).collect();
        assert!(table.iter().all(|a| list.contains(&a.as_str())), "{function}: {table:?} not within {list:?}");
        let log_group = t.resource(function)["Properties"]["LoggingConfig"]["LogGroup"]["Ref"].as_str().unwrap();
        for (origin, s) in &statements {
            if actions(s).iter().any(|a| a.starts_with("logs:")) {
                assert_eq!(resources(s), [get_att(log_group, "Arn")], "{origin}: {function} writes only its own logs");
            }
        }
    }

    // The grant role alone may pass the scheduler role; schedules are created by grant alone.
    for role_id in allowed.keys() {
        let acts: BTreeSet<String> = role_statements(&t, role_id).iter().flat_map(|(_, s)| actions(s)).collect();
        let is_grant = *role_id == "GrantRole";
        assert_eq!(acts.contains("iam:PassRole"), is_grant, "{role_id}: iam:PassRole");
        assert_eq!(acts.contains("scheduler:CreateSchedule"), is_grant, "{role_id}: scheduler:CreateSchedule");
    }
}

#[test]
fn roles_trust_only_their_service() {
    let t = Template::load();
    for (role_id, service) in
        [("SyncRole", "lambda"), ("GrantRole", "lambda"), ("RevokeRole", "lambda"), ("SchedulerRole", "scheduler")]
    {
        let trust = statements(&t.resource(role_id)["Properties"]["AssumeRolePolicyDocument"]);
        assert_eq!(trust.len(), 1, "{role_id}");
        let s = &trust[0];
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(strings(&s["Action"]), ["sts:AssumeRole"], "{role_id}");
        assert_eq!(s["Principal"], json!({ "Service": format!("{service}.amazonaws.com") }), "{role_id}");
        if service == "scheduler" {
            assert_eq!(
                s["Condition"]["StringEquals"],
                json!({ "aws:SourceAccount": reference("AWS::AccountId") }),
                "{role_id}: only this account's schedules"
            );
            let arns: Vec<String> = s["Condition"]["ArnLike"]["aws:SourceArn"]
                .as_array()
                .expect("aws:SourceArn patterns")
                .iter()
                .map(|a| a["Fn::Sub"].as_str().unwrap().to_owned())
                .collect();
            let schedules = "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule";
            assert_eq!(
                arns,
                [format!("{schedules}/${{ScheduleGroup}}/*"), format!("{schedules}/default/*")],
                "{role_id}: only the expiry schedules' group and the sweep's"
            );
        }
    }
}

#[test]
fn functions_use_their_own_roles_and_the_rust_build() {
    let t = Template::load();
    let globals = &t.0["Globals"]["Function"];
    let functions: BTreeSet<&str> = t.of_type("AWS::Serverless::Function").map(|(id, _)| id.as_str()).collect();
    assert_eq!(functions, FUNCTIONS.iter().map(|f| f.0).collect());
    assert_eq!(t.of_type("AWS::Lambda::Function").count(), 0);
    for (id, binary, role) in FUNCTIONS {
        let f = t.resource(id);
        let p = &f["Properties"];
        let setting = |name: &str| if p.get(name).is_some() { p[name].clone() } else { globals[name].clone() };
        assert_eq!(setting("Runtime"), "provided.al2023", "{id}");
        assert_eq!(setting("Handler"), "bootstrap", "{id}");
        assert_eq!(setting("Architectures"), json!(["arm64"]), "{id}");
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}");
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], binary, "{id}");
        // A role of our own, so that SAM adds no managed policy (AWSLambdaBasicExecutionRole has
        // Resource "*") and no policy template.
        assert_eq!(p["Role"], get_att(role, "Arn"), "{id}");
        assert!(p.get("Policies").is_none() && globals.get("Policies").is_none(), "{id}: policies go on {role}");
        assert!(p.get("Events").is_none(), "{id}: triggers are explicit resources, checked below");
        assert!(p.get("FunctionUrlConfig").is_none(), "{id}: no function URL (it would bypass the API's auth)");
        let log_group = p["LoggingConfig"]["LogGroup"]["Ref"].as_str().expect("an explicit log group");
        let retention = &t.resource(log_group)["Properties"]["RetentionInDays"];
        assert_eq!(*retention, reference("LogRetentionInDays"), "{id}: log retention");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP API: IAM authorization by default
// ---------------------------------------------------------------------------------------------

/// Resolves the routes' `Fn::If [UseJwt, ...]`: `jwt` false is the default (ApiAuthorization=AWS_IAM).
fn resolve_if(value: &Value, jwt: bool) -> Value {
    match value {
        Value::Object(map) if map.contains_key("Fn::If") => {
            let args = map["Fn::If"].as_array().unwrap();
            let condition = args[0].as_str().unwrap();
            assert_eq!(condition, "UseJwt", "routes switch on UseJwt only");
            resolve_if(&args[if jwt { 1 } else { 2 }], jwt)
        }
        other => other.clone(),
    }
}

/// Routes that API Gateway does not authorize: their function authenticates the request itself.
/// `POST /slack/interactions`: Slack's signature (`handlers/slack.rs`), throttled harder than the
/// rest (`the_slack_route_is_signed_throttled_and_its_secret_read_by_tag`).
const UNAUTHENTICATED_ROUTES: &[&str] = &["POST /slack/interactions"];
/// The portal's routes (JWT mode only): its page, files and configuration load before sign-in,
/// so they alone have no authorization. They serve only what ships in the grant binary.
const PUBLIC_ROUTES: [&str; 3] = ["GET /", "GET /assets/{version}/{file}", "GET /portal/config.json"];

#[test]
fn every_route_requires_iam_authorization_by_default() {
    let t = Template::load();
    // The switch: AWS_IAM unless the deployer chooses JWT.
    assert_eq!(t.parameter_default("ApiAuthorization").as_deref(), Some("AWS_IAM"));
    assert_eq!(t.0["Parameters"]["ApiAuthorization"]["AllowedValues"], json!(["AWS_IAM", "JWT"]));
    assert_eq!(t.0["Conditions"]["UseJwt"], json!({ "Fn::Equals": [reference("ApiAuthorization"), "JWT"] }));

    let integrations: BTreeMap<&str, &str> = t
        .of_type("AWS::ApiGatewayV2::Integration")
        .map(|(id, i)| (id.as_str(), i["Properties"]["IntegrationUri"]["Fn::GetAtt"][0].as_str().unwrap()))
        .collect();
    let mut routes = BTreeMap::new();
    for (id, route) in t.of_type("AWS::ApiGatewayV2::Route") {
        let p = &route["Properties"];
        assert_eq!(p["ApiId"], reference("HttpApi"), "{id}");
        let key = p["RouteKey"].as_str().unwrap();
        if UNAUTHENTICATED_ROUTES.contains(&key) {
            // Slack signs its requests; the function checks that before anything else.
            assert_eq!(p["AuthorizationType"], "NONE", "{id}: whatever ApiAuthorization says");
            assert!(p.get("AuthorizerId").is_none(), "{id}");
            let target = p["Target"]["Fn::Sub"].as_str().expect("Target: !Sub integrations/${...}");
            let integration = target.strip_prefix("integrations/${").and_then(|s| s.strip_suffix('}')).unwrap();
            routes.insert(key.to_owned(), integrations[integration].to_owned());
            continue;
        }
        if PUBLIC_ROUTES.contains(&key) {
            assert_eq!(route["Condition"], "UseJwt", "{id}: the portal exists in JWT mode only");
            assert_eq!(p["AuthorizationType"], "NONE", "{id}");
            assert!(p.get("AuthorizerId").is_none(), "{id}");
            assert_eq!(p["Target"], json!({ "Fn::Sub": "integrations/${GrantIntegration}" }), "{id}: served by grant");
            routes.insert(key.to_owned(), "GrantFunction".to_owned());
            continue;
        }
        assert!(route.get("Condition").is_none(), "{id}: an API route exists whatever the authorization");
        let by_default = resolve_if(&p["AuthorizationType"], false);
        assert_eq!(by_default, "AWS_IAM", "{id}: IAM authorization by default");
        assert_eq!(resolve_if(&p["AuthorizerId"], false), reference("AWS::NoValue"), "{id}");
        assert_eq!(resolve_if(&p["AuthorizationType"], true), "JWT", "{id}: JWT when chosen");
        assert_eq!(resolve_if(&p["AuthorizerId"], true), reference("JwtAuthorizer"), "{id}");
        let target = p["Target"]["Fn::Sub"].as_str().expect("Target: !Sub integrations/${...}");
        let integration = target.strip_prefix("integrations/${").and_then(|s| s.strip_suffix('}')).unwrap();
        routes.insert(p["RouteKey"].as_str().unwrap().to_owned(), integrations[integration].to_owned());
    }
    let expected: BTreeMap<String, String> = [
        ("POST /grants", "GrantFunction"),
        ("GET /grants", "GrantFunction"),
        ("GET /grants/{id}", "GrantFunction"),
        ("POST /grants/{id}/approve", "GrantFunction"),
        ("POST /grants/{id}/deny", "GrantFunction"),
        ("POST /grants/{id}/extend", "GrantFunction"),
        ("GET /groups", "GrantFunction"),
        ("GET /policy", "GrantFunction"),
        ("GET /me", "GrantFunction"),
        ("GET /integrations", "GrantFunction"),
        ("GET /audit", "GrantFunction"),
        ("GET /openapi.json", "GrantFunction"),
        ("GET /", "GrantFunction"),
        ("GET /assets/{version}/{file}", "GrantFunction"),
        ("GET /portal/config.json", "GrantFunction"),
        ("DELETE /grants/{id}", "RevokeFunction"),
        ("POST /sync", "SyncFunction"),
        ("POST /slack/interactions", "GrantFunction"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(routes, expected, "routes and the functions behind them");

    let authorizer = t.resource("JwtAuthorizer");
    assert_eq!(authorizer["Condition"], "UseJwt", "the JWT authorizer exists only in JWT mode");
    assert_eq!(authorizer["Properties"]["AuthorizerType"], "JWT");

    // No other way in: no SAM API (its auth would not be checked here), no function URL.
    for kind in ["AWS::Serverless::Api", "AWS::Serverless::HttpApi", "AWS::ApiGateway::RestApi", "AWS::Lambda::Url"] {
        assert_eq!(t.of_type(kind).count(), 0, "{kind}: add its authorization to this test first");
    }
    assert_eq!(t.of_type("AWS::ApiGatewayV2::Api").count(), 1);

    // API Gateway may invoke a function only through this API's routes: one permission per route,
    // on its function, scoped to its method and path (`{id}` is `*` in the ARN).
    let mut invocable = BTreeMap::new();
    for (id, permission) in t.of_type("AWS::Lambda::Permission") {
        let p = &permission["Properties"];
        assert_eq!(p["Action"], "lambda:InvokeFunction", "{id}");
        let source = p["SourceArn"].clone();
        match p["Principal"].as_str().unwrap() {
            "apigateway.amazonaws.com" => {
                let arn = source["Fn::Sub"].as_str().unwrap_or_else(|| panic!("{id}: SourceArn"));
                let prefix = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*/";
                let route = arn.strip_prefix(prefix).unwrap_or_else(|| panic!("{id}: {arn}"));
                assert!(!route.starts_with('*'), "{id}: scoped to a method and path: {arn}");
                let function = p["FunctionName"]["Ref"].as_str().unwrap_or_else(|| panic!("{id}: FunctionName"));
                let previous = invocable.insert(route.to_owned(), function.to_owned());
                assert!(previous.is_none(), "{id}: a second permission for {route}");
                let public = ["GET/", "GET/assets/*/*", "GET/portal/config.json"].contains(&route);
                let condition = permission.get("Condition").cloned().unwrap_or(Value::Null);
                assert_eq!(condition == "UseJwt", public, "{id}: only the portal's permissions are JWT mode only");
            }
            "events.amazonaws.com" => {
                let rules = [get_att("SyncScheduleRule", "Arn"), get_att("IncrementalSyncScheduleRule", "Arn")];
                assert!(rules.contains(&source), "{id}: only the sync schedules' rules: {source}");
                assert_eq!(p["FunctionName"]["Ref"], "SyncFunction", "{id}");
            }
            other => panic!("{id}: unexpected principal {other}"),
        }
    }
    let route_arns: BTreeMap<String, String> = expected
        .iter()
        .map(|(key, function)| {
            let (method, path) = key.split_once(' ').unwrap();
            let path: Vec<&str> = path
                .split('/')
                .map(|part| if part.starts_with('{') && part.ends_with('}') { "*" } else { part })
                .collect();
            (format!("{method}{}", path.join("/")), function.clone())
        })
        .collect();
    assert_eq!(invocable, route_arns, "each route's function may be invoked through that route, and no other way");
}

#[test]
fn the_slack_route_is_signed_throttled_and_its_secret_read_by_tag() {
    let t = Template::load();
    // Throttled harder than the authorized routes: unsigned traffic cannot crowd out people.
    let stage = &t.resource("HttpApiStage")["Properties"];
    let slack = &stage["RouteSettings"]["POST /slack/interactions"];
    let default = &stage["DefaultRouteSettings"];
    assert!(slack["ThrottlingRateLimit"].as_u64().unwrap() < default["ThrottlingRateLimit"].as_u64().unwrap());
    assert!(slack["ThrottlingBurstLimit"].as_u64().unwrap() < default["ThrottlingBurstLimit"].as_u64().unwrap());

    // Off unless switched on: then no function may read the Slack secret (nor looks for it).
    let env = &t.0["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(env["SLACK_ENABLED"], reference("SlackEnabled"));
    assert_eq!(t.parameter_default("SlackEnabled").as_deref(), Some("false"));
    assert_eq!(t.0["Conditions"]["SlackOn"], json!({ "Fn::Equals": [reference("SlackEnabled"), "true"] }));
    assert_eq!(t.resource("SlackSecretPolicy")["Condition"], "SlackOn");
    let only_when_on = json!({ "Fn::If": ["SlackOn", reference("SlackSecretPolicy"), reference("AWS::NoValue")] });
    for (_, _, role_id) in FUNCTIONS {
        let attached = one_or_many(&t.resource(role_id)["Properties"]["ManagedPolicyArns"]);
        assert_eq!(
            attached.contains(&only_when_on),
            role_id != "SyncRole",
            "{role_id}: the Slack secret, Slack on only"
        );
        assert!(!attached.contains(&reference("SlackSecretPolicy")), "{role_id}: never unconditionally");
    }

    // The Slack secret: readable by grant (clicks, posts) and revoke (updates at the end), by its
    // tag only, which is the one the functions look for.
    assert_eq!(env["SLACK_SECRET_TAG_KEY"], SLACK_TAG_KEY);
    assert_eq!(env["SLACK_API_URL"], reference("SlackApiUrl"));
    assert_eq!(t.parameter_default("SlackApiUrl").as_deref(), Some(jit_shared::config::DEFAULT_SLACK_API_URL));
    assert_eq!(jit_shared::config::DEFAULT_SLACK_SECRET_TAG_KEY, SLACK_TAG_KEY);
    for (_, _, role_id) in FUNCTIONS {
        let reads_slack = role_statements(&t, role_id).iter().any(|(_, s)| s["Condition"] == slack_tag_condition());
        assert_eq!(reads_slack, role_id != "SyncRole", "{role_id}: the Slack secret is for grant and revoke only");
    }

    // Failures and refused signatures are counted.
    for (id, group, pattern, metric) in [
        ("GrantSlackFailuresMetricFilter", "GrantLogGroup", "slack_failed", "SlackFailures"),
        ("RevokeSlackFailuresMetricFilter", "RevokeLogGroup", "slack_failed", "SlackFailures"),
        ("SlackSignatureRefusalsMetricFilter", "GrantLogGroup", "slack_signature_refused", "SlackSignatureRefusals"),
    ] {
        let f = &t.resource(id)["Properties"];
        assert_eq!(f["LogGroupName"], reference(group), "{id}");
        assert_eq!(f["FilterPattern"], format!(r#"{{ $.event = "{pattern}" }}"#), "{id}");
        assert_eq!(f["MetricTransformations"][0]["MetricName"], metric, "{id}");
    }
    // Their alarms: in the stack's namespace, with Slack on only.
    for (alarm, metric) in
        [("SlackFailuresAlarm", "SlackFailures"), ("SlackSignatureRefusalsAlarm", "SlackSignatureRefusals")]
    {
        let a = t.resource(alarm);
        assert_eq!(a["Condition"], "SlackOn", "{alarm}");
        assert_eq!(a["Properties"]["MetricName"], metric, "{alarm}");
        assert_eq!(a["Properties"]["Namespace"], sub("JitAccess/${AWS::StackName}"), "{alarm}");
        assert_eq!(a["Properties"]["TreatMissingData"], "notBreaching", "{alarm}");
    }
    assert_eq!(
        t.0["Outputs"]["SlackInteractivityUrl"]["Value"],
        sub("${HttpApi.ApiEndpoint}/slack/interactions"),
        "the URL to paste into the Slack app's Interactivity settings"
    );
}

// ---------------------------------------------------------------------------------------------
// Schedules, dead letters, alarms
// ---------------------------------------------------------------------------------------------

#[test]
fn schedules_have_retries_a_dead_letter_queue_and_alarms() {
    let t = Template::load();
    let dlq = get_att("ScheduleDeadLetterQueue", "Arn");

    let sweep = &t.resource("SweepSchedule")["Properties"];
    assert_eq!(sweep["ScheduleExpression"], reference("SweepScheduleExpression"));
    assert!(sweep.get("GroupName").is_none(), "the sweep stays out of the group the functions may delete from");
    let target = &sweep["Target"];
    assert_eq!(target["Arn"], get_att("RevokeFunction", "Arn"));
    assert_eq!(target["RoleArn"], get_att("SchedulerRole", "Arn"));
    assert_eq!(target["DeadLetterConfig"]["Arn"], dlq);
    assert!(target["RetryPolicy"]["MaximumRetryAttempts"].as_u64().unwrap() >= 1);
    let input: Value = serde_json::from_str(target["Input"].as_str().unwrap()).expect("the sweep's input is JSON");
    assert_eq!(input["source"], "jit-access.sweep", "the documented sweep event");

    let rule = &t.resource("SyncScheduleRule")["Properties"];
    assert_eq!(rule["ScheduleExpression"], reference("SyncScheduleExpression"));
    let targets = one_or_many(&rule["Targets"]);
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["Arn"], get_att("SyncFunction", "Arn"));
    assert_eq!(targets[0]["DeadLetterConfig"]["Arn"], dlq);
    assert!(rule.get("Input").is_none() && targets[0].get("Input").is_none(), "sync expects the aws.events event");

    // The incremental sync: every minute by default, the documented input, no retries (the next
    // minute's run reads the same events again), dead letters to the same queue.
    let rule = &t.resource("IncrementalSyncScheduleRule")["Properties"];
    assert_eq!(rule["ScheduleExpression"], reference("IncrementalSyncScheduleExpression"));
    assert_eq!(t.0["Parameters"]["IncrementalSyncScheduleExpression"]["Default"], "rate(1 minute)");
    let targets = one_or_many(&rule["Targets"]);
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["Arn"], get_att("SyncFunction", "Arn"));
    assert_eq!(targets[0]["DeadLetterConfig"]["Arn"], dlq);
    assert_eq!(targets[0]["RetryPolicy"]["MaximumRetryAttempts"], 0);
    let input: Value = serde_json::from_str(targets[0]["Input"].as_str().unwrap()).expect("JSON input");
    assert_eq!(
        input,
        serde_json::from_str::<Value>(
            &std::fs::read_to_string(integration_tests::workspace_root().join("events/sync-incremental.json")).unwrap()
        )
        .unwrap(),
        "the sample event is what the rule sends"
    );
    assert_eq!(input["source"], jit_shared::handlers::sync::INCREMENTAL_SOURCE);

    // Grant's expiry schedules get the same queue through the environment.
    let grant_env = &t.resource("GrantFunction")["Properties"]["Environment"]["Variables"];
    assert_eq!(grant_env["SCHEDULE_DLQ_ARN"], dlq);

    // Alarms: failed revocations (the log line revoke writes) and dead letters.
    let filters: Vec<_> = t
        .of_type("AWS::Logs::MetricFilter")
        .filter(|(id, _)| {
            *id != "SweepHeartbeatMetricFilter"
                && !id.ends_with("IntegrationConflictsMetricFilter")
                && !id.contains("Slack")
        })
        .collect();
    assert!(filters.iter().any(|(_, f)| f["Properties"]["LogGroupName"] == reference("RevokeLogGroup")));
    for (id, f) in &filters {
        assert_eq!(f["Properties"]["FilterPattern"], r#"{ $.event = "revocation_failed" }"#, "{id}");
        assert_eq!(f["Properties"]["MetricTransformations"][0]["MetricName"], "RevocationFailures", "{id}");
    }
    let mut alarms: BTreeMap<&str, &Value> =
        t.of_type("AWS::CloudWatch::Alarm").map(|(id, a)| (id.as_str(), &a["Properties"])).collect();
    // The sweep's heartbeat: no run in 5 minutes (no data at all included) alarms.
    let heartbeat = &t.resource("SweepHeartbeatMetricFilter")["Properties"];
    assert_eq!(heartbeat["LogGroupName"], reference("RevokeLogGroup"));
    assert_eq!(heartbeat["FilterPattern"], r#"{ $.event = "sweep_heartbeat" }"#);
    let stopped = alarms.remove("SweepStoppedAlarm").expect("a sweep-stopped alarm");
    assert_eq!(stopped["MetricName"], heartbeat["MetricTransformations"][0]["MetricName"]);
    assert_eq!((stopped["Period"].as_u64(), stopped["EvaluationPeriods"].as_u64()), (Some(300), Some(1)));
    assert_eq!(
        (stopped["ComparisonOperator"].as_str(), stopped["Threshold"].as_u64()),
        (Some("LessThanThreshold"), Some(1))
    );
    assert_eq!(stopped["TreatMissingData"], "breaching");
    assert_eq!(alarms["RevocationFailuresAlarm"]["MetricName"], "RevocationFailures");
    // Two secrets claiming one integration name (issue 10 point 1), whichever function lists them.
    for function in ["Sync", "Grant", "Revoke"] {
        let conflict = &t.resource(&format!("{function}IntegrationConflictsMetricFilter"))["Properties"];
        assert_eq!(conflict["LogGroupName"], reference(&format!("{function}LogGroup")));
        assert_eq!(conflict["FilterPattern"], r#"{ $.event = "integration_conflict" }"#);
        assert_eq!(conflict["MetricTransformations"][0]["MetricName"], "IntegrationConflicts");
    }
    assert_eq!(alarms["IntegrationConflictAlarm"]["MetricName"], "IntegrationConflicts");
    // Slack's (with Slack on): any failure; signature refusals only when they spike.
    assert_eq!(alarms["SlackFailuresAlarm"]["MetricName"], "SlackFailures");
    let refusals = alarms.remove("SlackSignatureRefusalsAlarm").expect("an alarm on refused Slack signatures");
    assert_eq!(refusals["MetricName"], "SlackSignatureRefusals");
    assert_eq!(refusals["ComparisonOperator"], "GreaterThanThreshold");
    assert!(refusals["Threshold"].as_u64().unwrap() > 0, "a stale click now and then is no alarm");
    assert_eq!(refusals["AlarmActions"], alarms["SlackFailuresAlarm"]["AlarmActions"]);
    assert_eq!(alarms["DeadLetterQueueAlarm"]["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(
        alarms["DeadLetterQueueAlarm"]["Dimensions"][0]["Value"],
        get_att("ScheduleDeadLetterQueue", "QueueName")
    );
    for (id, alarm) in &alarms {
        assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold", "{id}");
        assert_eq!(alarm["Threshold"], 0, "{id}");
        assert_eq!(
            alarm["AlarmActions"],
            json!({ "Fn::If": ["HasAlarmTopic", [reference("AlarmTopicArn")], reference("AWS::NoValue")] }),
            "{id}: notifies the topic when one is given"
        );
    }
}

#[test]
fn the_fanned_out_sync_has_its_queue_dead_letters_bounded_workers_and_an_alarm() {
    let t = Template::load();
    let queue = &t.resource("SyncPartsQueue")["Properties"];
    assert_eq!(queue["RedrivePolicy"]["deadLetterTargetArn"], get_att("SyncPartsDeadLetterQueue", "Arn"));
    assert_eq!(
        queue["RedrivePolicy"]["maxReceiveCount"].as_u64(),
        Some(u64::from(jit_shared::domain::fanout::PART_ATTEMPTS)),
        "the part's last delivery is the one that fails the run"
    );
    let timeout = t.resource("SyncFunction")["Properties"]["Timeout"].as_u64().unwrap();
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout, "six times the function's timeout");
    assert_eq!(
        queue["VisibilityTimeout"].as_u64(),
        Some(u64::from(jit_shared::adapters::setup::SYNC_PARTS_VISIBILITY_SECS)),
        "jitctl setup makes the local queue alike"
    );
    for id in ["SyncPartsQueue", "SyncPartsDeadLetterQueue"] {
        assert_eq!(t.resource(id)["Properties"]["SqsManagedSseEnabled"], true, "{id} encrypted");
    }

    // The sync function consumes it: one part per invocation, failures reported per message, at
    // most SyncWorkers at once, and fewer than the function's reserved concurrency.
    let mapping = &t.resource("SyncPartsEventSourceMapping")["Properties"];
    assert_eq!(mapping["EventSourceArn"], get_att("SyncPartsQueue", "Arn"));
    assert_eq!(mapping["FunctionName"], reference("SyncFunction"));
    assert_eq!(mapping["BatchSize"], 1);
    assert_eq!(mapping["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));
    assert_eq!(mapping["ScalingConfig"]["MaximumConcurrency"], reference("SyncWorkers"));
    let parameters = &t.0["Parameters"];
    assert!(
        parameters["SyncWorkers"]["Default"].as_u64() < parameters["SyncReservedConcurrency"]["Default"].as_u64(),
        "the schedules still run while the parts are worked"
    );
    assert!(parameters["SyncWorkers"]["MinValue"].as_u64() >= Some(2), "SQS's least maximum concurrency");
    let env = &t.resource("SyncFunction")["Properties"]["Environment"]["Variables"];
    assert_eq!(env["SYNC_QUEUE_URL"], reference("SyncPartsQueue"));
    assert_eq!(env["FANOUT_ABOVE_USERS"], reference("FanOutAboveUsers"));

    // Only the sync role touches it, and only it.
    for (role, _) in t.of_type("AWS::IAM::Role") {
        for (origin, statement) in role_statements(&t, role) {
            let sqs: Vec<String> = actions(&statement).into_iter().filter(|a| a.starts_with("sqs:")).collect();
            if sqs.is_empty() || role != "SyncRole" {
                continue;
            }
            assert_eq!(resources(&statement), [get_att("SyncPartsQueue", "Arn")], "{origin}");
        }
    }

    let alarm = &t.resource("SyncPartsDeadLetterAlarm")["Properties"];
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(alarm["Dimensions"][0]["Value"], get_att("SyncPartsDeadLetterQueue", "QueueName"));
}

// ---------------------------------------------------------------------------------------------
// Notifications: an optional topic of the request and approval events
// ---------------------------------------------------------------------------------------------

/// The events the notification rule sends to the topic (SPEC "Requests and approvals": each
/// carries `notify`).
const NOTIFIED_EVENTS: &[&str] = &[
    "Approval Requested",
    "Request Approved",
    "Request Denied",
    "Request Cancelled",
    "Request Expired",
    "Break Glass Used",
    "Extension Requested",
    "Grant Extended",
    "Grant Expiring Soon",
];

#[test]
fn the_notification_topic_is_optional_encrypted_and_fed_only_by_its_rule() {
    let t = Template::load();

    // Off by default; an email needs the topic.
    assert_eq!(t.parameter_default("CreateNotificationTopic").as_deref(), Some("false"));
    assert_eq!(t.0["Parameters"]["CreateNotificationTopic"]["AllowedValues"], json!(["true", "false"]));
    assert_eq!(t.parameter_default("NotificationEmail").as_deref(), Some(""));
    let on = json!({ "Fn::Equals": [reference("CreateNotificationTopic"), "true"] });
    assert_eq!(t.0["Conditions"]["HasNotificationTopic"], on);
    let email = &t.0["Conditions"]["HasNotificationEmail"]["Fn::And"];
    assert!(one_or_many(email).contains(&json!({ "Condition": "HasNotificationTopic" })), "{email}");
    assert_eq!(
        t.0["Rules"]["NotificationEmailNeedsTopic"]["Assertions"][0]["Assert"], on,
        "NotificationEmail without the topic is refused, not ignored"
    );

    // Everything exists only when asked for.
    for kind in ["AWS::SNS::Topic", "AWS::SNS::TopicPolicy", "AWS::KMS::Key", "AWS::SNS::Subscription"] {
        assert!(t.of_type(kind).count() > 0, "{kind}");
        for (id, resource) in t.of_type(kind) {
            let expected =
                if kind == "AWS::SNS::Subscription" { "HasNotificationEmail" } else { "HasNotificationTopic" };
            assert_eq!(resource["Condition"], expected, "{id}: only with CreateNotificationTopic \"true\"");
        }
    }
    assert_eq!(t.of_type("AWS::SNS::Topic").count(), 1);
    let rule_resource = t.resource("NotificationRule");
    assert_eq!(rule_resource["Condition"], "HasNotificationTopic");
    let output = &t.0["Outputs"]["NotificationTopicArn"];
    assert_eq!(output["Condition"], "HasNotificationTopic");
    assert_eq!(output["Value"], reference("NotificationTopic"));

    // The rule: the product's events on the product's bus, the request and approval kinds, as they are.
    let rule = &rule_resource["Properties"];
    assert_eq!(rule["EventBusName"], reference("EventBus"), "the product's bus, not the default one");
    assert_eq!(rule["State"], "ENABLED");
    let pattern = &rule["EventPattern"];
    assert_eq!(pattern["source"], json!([EVENT_SOURCE]));
    let kinds: BTreeSet<String> = strings(&pattern["detail-type"]).into_iter().collect();
    assert_eq!(kinds, NOTIFIED_EVENTS.iter().map(|k| k.to_string()).collect(), "the request and approval events");
    let pattern_keys: BTreeSet<&str> = pattern.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(pattern_keys, BTreeSet::from(["source", "detail-type"]), "no narrower pattern");
    let targets = one_or_many(&rule["Targets"]);
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["Arn"], reference("NotificationTopic"));
    for key in ["Input", "InputPath", "InputTransformer", "RoleArn"] {
        assert!(targets[0].get(key).is_none(), "the event as is, through the topic's policy: no {key}");
    }

    // The topic: a key of its own (EventBridge cannot use the AWS managed alias/aws/sns).
    let topic = &t.resource("NotificationTopic")["Properties"];
    assert_eq!(topic["KmsMasterKeyId"], get_att("NotificationKey", "Arn"));

    // Only the rule publishes.
    let policy = &t.resource("NotificationTopicPolicy")["Properties"];
    assert_eq!(one_or_many(&policy["Topics"]), [reference("NotificationTopic")]);
    let publishers = statements(&policy["PolicyDocument"]);
    assert_eq!(publishers.len(), 1, "{publishers:?}");
    let s = &publishers[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(s["Principal"], json!({ "Service": "events.amazonaws.com" }));
    assert_eq!(actions(s), ["sns:Publish"]);
    assert_eq!(resources(s), [reference("NotificationTopic")]);
    assert_eq!(s["Condition"], json!({ "ArnEquals": { "aws:SourceArn": get_att("NotificationRule", "Arn") } }));

    // The key: EventBridge may encrypt with it for that rule only. The rule's ARN is spelt out in
    // the key policy (a !GetAtt would be a cycle): it must be the ARN of the named rule on the bus.
    let key = &t.resource("NotificationKey")["Properties"];
    assert_eq!(key["EnableKeyRotation"], true);
    let name = rule["Name"]["Fn::Sub"].as_str().expect("the rule is named (Fn::Sub)");
    let rule_arn =
        sub(&format!("arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/${{EventBus}}/{name}"));
    let key_statements = statements(&key["KeyPolicy"]);
    let services: Vec<&Value> = key_statements.iter().filter(|s| s["Principal"].get("Service").is_some()).collect();
    assert_eq!(services.len(), 1, "one service statement: {key_statements:?}");
    let s = services[0];
    assert_eq!(s["Principal"], json!({ "Service": "events.amazonaws.com" }));
    assert_eq!(actions(s), ["kms:GenerateDataKey*", "kms:Decrypt"]);
    assert_eq!(s["Condition"], json!({ "ArnEquals": { "aws:SourceArn": rule_arn } }), "only for the notification rule");
    for other in key_statements.iter().filter(|s| s["Principal"].get("Service").is_none()) {
        assert_eq!(
            other["Principal"],
            json!({ "AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root") }),
            "the rest of the key policy is the account's own (IAM decides): {other}"
        );
    }

    // The optional email subscription.
    let subscription = &t.resource("NotificationEmailSubscription")["Properties"];
    assert_eq!(subscription["TopicArn"], reference("NotificationTopic"));
    assert_eq!(subscription["Protocol"], "email");
    assert_eq!(subscription["Endpoint"], reference("NotificationEmail"));
}

// ---------------------------------------------------------------------------------------------
// Configuration: what the code reads, with valid defaults
// ---------------------------------------------------------------------------------------------

/// The SPEC's variables every function gets.
const COMMON_VARIABLES: &[&str] = &[
    "TABLE_NAME",
    "SECRET_TAG_KEY",
    "SECRET_TAG_VALUE",
    "SCHEDULE_GROUP",
    "EVENT_BUS_NAME",
    "MIN_GRANT_DURATION",
    "MAX_GRANT_DURATION",
    "REQUESTABLE_GROUPS",
    "MANAGER_ATTRIBUTE",
    "INCLUDE_SUSPENDED_USERS",
    "JUMPCLOUD_API_URL",
    "JUMPCLOUD_MAX_CONCURRENCY",
    "JUMPCLOUD_REQUESTS_PER_SECOND",
    "ADMIN_PRINCIPALS",
    "ADMIN_GROUP",
    "IDENTITY_CLAIM",
    "API_ID",
    "SLACK_ENABLED",
    "SLACK_API_URL",
    "SLACK_SECRET_TAG_KEY",
];

/// A plausible deployed value: parameters take their defaults, resources a name or an ARN.
fn deployed_value(t: &Template, value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(map) if map.contains_key("Ref") => {
            let name = map["Ref"].as_str().unwrap();
            match t.0["Resources"][name]["Type"].as_str() {
                // A queue's `Ref` is its URL.
                Some("AWS::SQS::Queue") => {
                    format!("https://sqs.us-east-1.amazonaws.com/123456789012/jit-access-{name}")
                }
                _ => t.parameter_default(name).unwrap_or_else(|| format!("jit-access-{name}")),
            }
        }
        Value::Object(map) if map.contains_key("Fn::GetAtt") => {
            let resource = map["Fn::GetAtt"][0].as_str().unwrap();
            format!("arn:aws:service:us-east-1:123456789012:{resource}")
        }
        // The default: ApiAuthorization AWS_IAM, so UseJwt is false.
        Value::Object(map) if map.contains_key("Fn::If") => deployed_value(t, &resolve_if(value, false)),
        other => panic!("unexpected environment value {other}"),
    }
}

#[test]
fn functions_get_the_configuration_the_code_reads_and_its_defaults_are_valid() {
    let t = Template::load();
    let globals = t.0["Globals"]["Function"]["Environment"]["Variables"].as_object().unwrap().clone();
    for (id, _, _) in FUNCTIONS {
        let mut env = globals.clone();
        if let Some(own) = t.resource(id)["Properties"]["Environment"]["Variables"].as_object() {
            env.extend(own.clone());
        }
        for var in COMMON_VARIABLES {
            assert!(env.contains_key(*var), "{id}: {var}");
        }
        let is_grant = id == "GrantFunction";
        for var in ["REVOKE_FUNCTION_ARN", "SCHEDULER_ROLE_ARN"] {
            assert_eq!(env.contains_key(var), is_grant, "{id}: {var} (grant only)");
        }
        if is_grant {
            assert_eq!(env["REVOKE_FUNCTION_ARN"], get_att("RevokeFunction", "Arn"));
            assert_eq!(env["SCHEDULER_ROLE_ARN"], get_att("SchedulerRole", "Arn"));
        }

        let values: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.clone(), deployed_value(&t, v))).collect();
        let config = Config::from_lookup(|k| values.get(k).cloned())
            .unwrap_or_else(|e| panic!("{id}: the template's defaults are not a valid configuration: {e}"));
        let defaults = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.secret_tag_key, defaults.secret_tag_key, "{id}");
        assert_eq!(config.secret_tag_value, defaults.secret_tag_value, "{id}");
        assert_eq!(config.jumpcloud_api_url, defaults.jumpcloud_api_url, "{id}");
        assert_eq!(config.min_grant_duration, defaults.min_grant_duration, "{id}");
        assert_eq!(config.max_grant_duration, defaults.max_grant_duration, "{id}");
        assert_eq!(config.directory.manager_attribute, defaults.directory.manager_attribute, "{id}");
        assert_eq!(config.directory.include_suspended_users, defaults.directory.include_suspended_users, "{id}");
        assert_eq!(config.jumpcloud.max_concurrency, defaults.jumpcloud.max_concurrency, "{id}");
        assert_eq!(config.jumpcloud.requests_per_second, defaults.jumpcloud.requests_per_second, "{id}");
        assert_eq!(config.slack.api_url, defaults.slack.api_url, "{id}");
        assert!(!config.slack.enabled, "{id}: Slack is off by default");
        assert_eq!(config.slack.secret_tag_key, SLACK_TAG_KEY, "{id}");
        assert_eq!(
            (config.slack.secret_tag_key.as_str(), config.slack.secret_tag_value.as_str()),
            (defaults.slack.secret_tag_key.as_str(), defaults.slack.secret_tag_value.as_str()),
            "{id}"
        );
        // grant answers before API Gateway's 30 s: its JumpCloud retry budget must fit in its timeout.
        let timeout = t.resource(id)["Properties"]["Timeout"].as_u64().unwrap();
        assert!(config.jumpcloud.retry_budget.as_secs() < timeout, "{id}: retry budget within the timeout");
        if is_grant {
            assert!(timeout <= 30, "{id}: API Gateway's integration timeout is 30 s");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sample events: each HTTP API event in events/ is a request to one of the template's routes
// ---------------------------------------------------------------------------------------------

/// Route key (`POST /grants/{id}/approve`) to the function behind it.
fn template_routes(t: &Template) -> BTreeMap<String, String> {
    let integrations: BTreeMap<&str, &str> = t
        .of_type("AWS::ApiGatewayV2::Integration")
        .map(|(id, i)| (id.as_str(), i["Properties"]["IntegrationUri"]["Fn::GetAtt"][0].as_str().unwrap()))
        .collect();
    t.of_type("AWS::ApiGatewayV2::Route")
        .map(|(_, route)| {
            let p = &route["Properties"];
            let target = p["Target"]["Fn::Sub"].as_str().unwrap();
            let integration = target.strip_prefix("integrations/${").and_then(|s| s.strip_suffix('}')).unwrap();
            (p["RouteKey"].as_str().unwrap().to_owned(), integrations[integration].to_owned())
        })
        .collect()
}

/// The API's document (`api/openapi.yaml`, served at `GET /openapi.json`) lists exactly the
/// template's routes: a route added to one and not the other fails here.
#[test]
fn the_openapi_document_lists_exactly_the_templates_routes() {
    let document: Value = serde_yaml_ng::from_str(jit_shared::handlers::openapi::DOCUMENT_YAML).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let routed: BTreeSet<String> = template_routes(&Template::load()).into_keys().collect();
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented, but no route in infra/template.yaml"
    );
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "routed, but not in api/openapi.yaml"
    );
}

/// Whether a concrete path matches a route's path (`{name}` matches one segment).
fn path_matches(route_path: &str, path: &str) -> bool {
    let (route, path): (Vec<&str>, Vec<&str>) = (route_path.split('/').collect(), path.split('/').collect());
    route.len() == path.len()
        && route.iter().zip(&path).all(|(r, p)| (r.starts_with('{') && r.ends_with('}') && !p.is_empty()) || r == p)
}

#[test]
fn http_sample_events_are_requests_to_the_templates_routes() {
    let t = Template::load();
    let routes = template_routes(&t);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        if event["version"] != "2.0" {
            continue; // not an HTTP API (payload 2.0) event: schedules, the REST API (1.0) sample
        }
        let key = event["routeKey"].as_str().unwrap_or_else(|| panic!("{name}: routeKey"));
        assert!(routes.contains_key(key), "{name}: {key} is no route of the template");
        assert_eq!(event["requestContext"]["routeKey"], key, "{name}: requestContext.routeKey");
        let (method, route_path) = key.split_once(' ').unwrap();
        assert_eq!(event["requestContext"]["http"]["method"], method, "{name}: method");
        let raw_path = event["rawPath"].as_str().unwrap();
        assert_eq!(event["requestContext"]["http"]["path"], raw_path, "{name}: requestContext.http.path");
        assert!(path_matches(route_path, raw_path), "{name}: {raw_path} does not match {key}");
        for (param, value) in event["pathParameters"].as_object().into_iter().flatten() {
            assert!(route_path.contains(&format!("{{{param}}}")), "{name}: path parameter {param} not in {key}");
            assert!(raw_path.split('/').any(|s| value == s), "{name}: {param}={value} not in {raw_path}");
        }
        let authorizer: Option<Vec<String>> =
            event["requestContext"]["authorizer"].as_object().map(|a| a.keys().cloned().collect());
        if UNAUTHENTICATED_ROUTES.contains(&key) || PUBLIC_ROUTES.contains(&key) {
            assert!(authorizer.is_none(), "{name}: {key} has no authorization, so no authorizer context");
            seen.insert(key.to_owned());
            continue;
        }
        assert!(
            matches!(authorizer.as_deref(), Some([k]) if k == "iam" || k == "jwt"),
            "{name}: one IAM or JWT authorizer context, as the routes require: {authorizer:?}"
        );
        seen.insert(key.to_owned());
    }
    for key in [
        "POST /grants/{id}/approve",
        "POST /grants/{id}/deny",
        "POST /grants/{id}/extend",
        "GET /policy",
        "POST /slack/interactions",
        "GET /me",
        "GET /integrations",
        "GET /audit",
        "GET /",
        "GET /portal/config.json",
    ] {
        assert!(seen.contains(key), "no sample event for {key}");
    }
}

#[test]
fn the_portal_signs_in_at_the_jwt_authorizers_issuer_for_its_first_audience() {
    let t = Template::load();
    let env = &t.resource("GrantFunction")["Properties"]["Environment"]["Variables"];
    // JWT mode: the authorizer's issuer, and its first audience as the portal's client id.
    assert_eq!(resolve_if(&env["OIDC_ISSUER"], true), reference("JwtIssuer"));
    assert_eq!(
        resolve_if(&env["OIDC_CLIENT_ID"], true),
        json!({ "Fn::Select": [0, { "Fn::Split": [",", reference("JwtAudience")] }] })
    );
    let jwt = &t.resource("JwtAuthorizer")["Properties"]["JwtConfiguration"];
    assert_eq!(jwt["Issuer"], reference("JwtIssuer"));
    assert_eq!(jwt["Audience"], json!({ "Fn::Split": [",", reference("JwtAudience")] }));
    // IAM mode (the default): no sign-in, so the portal cannot reach any issuer.
    assert_eq!(
        (resolve_if(&env["OIDC_ISSUER"], false), resolve_if(&env["OIDC_CLIENT_ID"], false)),
        (json!(""), json!(""))
    );
    for (id, function) in t.of_type("AWS::Serverless::Function") {
        let vars = &function["Properties"]["Environment"]["Variables"];
        assert_eq!(vars.get("OIDC_ISSUER").is_some(), id == "GrantFunction", "{id}: the portal is grant's");
    }
    // Its URL is the redirect URI to register at the issuer.
    let output = &t.0["Outputs"]["PortalUrl"];
    assert_eq!(output["Condition"], "UseJwt");
    assert_eq!(output["Value"], json!({ "Fn::Sub": "${HttpApi.ApiEndpoint}/" }));
}
