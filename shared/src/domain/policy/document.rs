//! The policy document as a team writes it (YAML or JSON, `policy/schema.json`), parsed into a
//! [`Policy`] whose every value is already checked: durations, globs, ticket patterns and
//! approver counts are refused while parsing, so the parser's error carries the line and column
//! of the value at fault.

use super::{Approval, Approver, Eligibility, GroupMatcher, Policy, Rule};
use crate::domain::model::{is_object_id, GrantDuration};
use serde::{de, Deserialize, Deserializer};
use std::fmt;

/// The document format this build reads.
pub const POLICY_VERSION: u32 = 1;

/// Why a document was refused: where (when the parser knows it) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// 1-based line and column of the value at fault.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: {}", self.reason),
            (Some(line), None) => write!(f, "line {line}: {}", self.reason),
            _ => f.write_str(&self.reason),
        }
    }
}

impl PolicyError {
    fn whole(reason: impl Into<String>) -> Self {
        Self { line: None, column: None, reason: reason.into() }
    }
}

/// The longest document accepted: far more than 500 rules need, far less than DynamoDB's 400 KB.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// Parses a document: JSON when it starts with `{`, else YAML (JSON is YAML too, but JSON's own
/// parser gives better positions).
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::whole(format!("the document is larger than {MAX_POLICY_BYTES} bytes")));
    }
    let document: Document = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| PolicyError {
            line: Some(e.line()),
            column: Some(e.column()),
            reason: strip_position(&e.to_string()),
        })?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e.location();
            PolicyError {
                line: at.as_ref().map(|l| l.line()),
                column: at.as_ref().map(|l| l.column()),
                reason: strip_position(&e.to_string()),
            }
        })?
    };
    document.compile()
}

/// serde's messages end with " at line L column C": the position is reported apart.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: Version,
    #[serde(default)]
    defaults: Settings,
    rules: Vec<RuleDocument>,
}

/// What a rule may say, and `defaults` too; a rule's unset fields come from `defaults`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default, deserialize_with = "eligible")]
    eligible: Option<EligibleDocument>,
    #[serde(default, deserialize_with = "max_duration")]
    max_duration: Option<DurationValue>,
    approval: Option<ApprovalDocument>,
    #[serde(default, deserialize_with = "ticket")]
    ticket: Option<TicketPattern>,
    break_glass: Option<bool>,
    #[serde(default, deserialize_with = "remind_before")]
    remind_before: Option<DurationValue>,
    extend: Option<ExtendDocument>,
    #[serde(default, deserialize_with = "slack_channel")]
    slack_channel: Option<SlackChannel>,
    jit_only: Option<bool>,
    remove_outside: Option<bool>,
}

/// `Settings` plus `groups`, spelt out: serde's `flatten` would lose `deny_unknown_fields`, and an
/// unknown (misspelt) field must be refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDocument {
    #[serde(deserialize_with = "groups")]
    groups: GroupList,
    #[serde(default, deserialize_with = "eligible")]
    eligible: Option<EligibleDocument>,
    #[serde(default, deserialize_with = "max_duration")]
    max_duration: Option<DurationValue>,
    approval: Option<ApprovalDocument>,
    #[serde(default, deserialize_with = "ticket")]
    ticket: Option<TicketPattern>,
    break_glass: Option<bool>,
    #[serde(default, deserialize_with = "remind_before")]
    remind_before: Option<DurationValue>,
    extend: Option<ExtendDocument>,
    #[serde(default, deserialize_with = "slack_channel")]
    slack_channel: Option<SlackChannel>,
    jit_only: Option<bool>,
    remove_outside: Option<bool>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalDocument {
    #[serde(default, deserialize_with = "approvers")]
    approvers: Option<ApproverList>,
    #[serde(default, deserialize_with = "required")]
    required: Option<Required>,
    #[serde(default, deserialize_with = "auto_approve_up_to")]
    auto_approve_up_to: Option<AutoApproveLimit>,
    #[serde(default, deserialize_with = "timeout")]
    timeout: Option<DurationValue>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendDocument {
    max_total: DurationValue,
}

/// Defaults of what neither a rule nor `defaults` says.
const DEFAULT_MAX_DURATION: GrantDuration = GrantDuration::from_secs(4 * 3600);
const DEFAULT_APPROVAL_TIMEOUT: GrantDuration = GrantDuration::from_secs(24 * 3600);

impl Document {
    fn compile(self) -> Result<Policy, PolicyError> {
        let defaults = self.defaults;
        let rules = self
            .rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| {
                let approval = merge_approval(rule.approval.as_ref(), defaults.approval.as_ref());
                let eligible = rule.eligible.or_else(|| defaults.eligible.clone());
                let max_duration = rule.max_duration.or(defaults.max_duration).map_or(DEFAULT_MAX_DURATION, |d| d.0);
                let approvers: Vec<Approver> =
                    approval.approvers.map(|a| a.0).unwrap_or_else(|| vec![Approver::Manager]);
                let required = approval.required.map_or(1, |r| r.0);
                if required as usize > approvers.len() && !approvers.iter().any(|a| matches!(a, Approver::Group(_))) {
                    // A group may hold any number of approvers; a list of people and the manager cannot.
                    return Err(PolicyError::whole(format!(
                        "rule {} ({}): approval.required is {required} but only {} approver(s) are named",
                        index + 1,
                        rule.groups.describe(),
                        approvers.len()
                    )));
                }
                let extend_max_total =
                    rule.extend.or_else(|| defaults.extend.clone()).map_or(max_duration, |e| e.max_total.0);
                if extend_max_total < max_duration {
                    return Err(PolicyError::whole(format!(
                        "rule {} ({}): extend.max_total {extend_max_total} is below max_duration {max_duration}",
                        index + 1,
                        rule.groups.describe()
                    )));
                }
                let jit_only = rule.jit_only.or(defaults.jit_only).unwrap_or(false);
                let remove_outside = rule.remove_outside.or(defaults.remove_outside).unwrap_or(false);
                if remove_outside && !jit_only {
                    return Err(PolicyError::whole(format!(
                        "rule {} ({}): remove_outside needs jit_only: true (only a group the product alone fills has memberships to remove)",
                        index + 1,
                        rule.groups.describe()
                    )));
                }
                Ok(Rule {
                    index,
                    groups: rule.groups.0,
                    eligible: eligible.map_or(Eligibility::Nobody, EligibleDocument::into_eligibility),
                    max_duration,
                    approval: Approval {
                        approvers,
                        required,
                        auto_approve_up_to: approval.auto_approve_up_to.and_then(|d| d.0),
                        timeout: approval.timeout.map_or(DEFAULT_APPROVAL_TIMEOUT, |d| d.0),
                    },
                    ticket: rule.ticket.or_else(|| defaults.ticket.clone()).map(|t| t.0),
                    break_glass: rule.break_glass.or(defaults.break_glass).unwrap_or(false),
                    remind_before: rule.remind_before.or(defaults.remind_before).map(|d| d.0),
                    extend_max_total,
                    slack_channel: rule.slack_channel.or_else(|| defaults.slack_channel.clone()).map(|c| c.0),
                    jit_only,
                    remove_outside,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { version: self.version.0, rules })
    }
}

fn merge_approval(rule: Option<&ApprovalDocument>, defaults: Option<&ApprovalDocument>) -> ApprovalDocument {
    let (rule, defaults) = (rule.cloned().unwrap_or_default(), defaults.cloned().unwrap_or_default());
    ApprovalDocument {
        approvers: rule.approvers.or(defaults.approvers),
        required: rule.required.or(defaults.required),
        auto_approve_up_to: rule.auto_approve_up_to.or(defaults.auto_approve_up_to),
        timeout: rule.timeout.or(defaults.timeout),
    }
}

// serde_yaml_ng places a value's error at the start of the mapping that holds it: each checked
// field names itself in the message, so the line (the rule's) and the field together point at it.
macro_rules! named_fields {
    ($($name:ident: $ty:ty),* $(,)?) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            <$ty>::deserialize(d).map(Some).map_err(|e| de::Error::custom(format!(concat!("`", stringify!($name), "`: {}"), e)))
        }
    )*};
}

named_fields! {
    eligible: EligibleDocument,
    max_duration: DurationValue,
    ticket: TicketPattern,
    remind_before: DurationValue,
    approvers: ApproverList,
    required: Required,
    auto_approve_up_to: AutoApproveLimit,
    timeout: DurationValue,
    slack_channel: SlackChannel,
}

fn groups<'de, D: Deserializer<'de>>(d: D) -> Result<GroupList, D::Error> {
    GroupList::deserialize(d).map_err(|e| de::Error::custom(format!("`groups`: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Values checked while parsing (so that a refusal carries the value's position)

struct Version(u32);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v != POLICY_VERSION {
            return Err(de::Error::custom(format!("version {v} is not supported: this build reads version 1")));
        }
        Ok(Self(v))
    }
}

#[derive(Clone, Copy)]
struct DurationValue(GrantDuration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<GrantDuration>().map(Self).map_err(de::Error::custom)
    }
}

/// `auto_approve_up_to`: a duration, or 0 for never.
#[derive(Clone, Copy)]
struct AutoApproveLimit(Option<GrantDuration>);

impl<'de> Deserialize<'de> for AutoApproveLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Number(u64),
            Text(String),
        }
        match Form::deserialize(d).map_err(|_| de::Error::custom("is a duration, or 0 for never"))? {
            Form::Number(0) => Ok(Self(None)),
            Form::Number(n) => Err(de::Error::custom(format!("{n} needs a unit (`30m`), or is 0 for never"))),
            Form::Text(t) if t.trim().trim_end_matches(['s', 'm', 'h', 'd']) == "0" => Ok(Self(None)),
            Form::Text(t) => t.parse::<GrantDuration>().map(|d| Self(Some(d))).map_err(de::Error::custom),
        }
    }
}

#[derive(Clone, Copy)]
struct Required(u32);

impl<'de> Deserialize<'de> for Required {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            n @ 1..=10 => Ok(Self(n)),
            n => Err(de::Error::custom(format!("must be 1 to 10 distinct approvers, not {n}"))),
        }
    }
}

#[derive(Clone)]
struct TicketPattern(regex_lite::Regex);

impl<'de> Deserialize<'de> for TicketPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() > 512 {
            return Err(de::Error::custom("a ticket pattern is at most 512 characters"));
        }
        regex_lite::Regex::new(&text).map(Self).map_err(|e| de::Error::custom(format!("bad ticket pattern: {e}")))
    }
}

/// `slack_channel`: where Slack posts the rule's requests (instead of a direct message to each
/// approver). A channel id (`C0123ABCD`, `G...` for an old private channel), as Slack's channel
/// details show it, or a public channel's name (`#access-requests`): lower case letters, digits,
/// `-` and `_`, at most 80 characters, as Slack allows.
#[derive(Clone)]
struct SlackChannel(String);

impl<'de> Deserialize<'de> for SlackChannel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let text = text.trim();
        let is_id = (9..=21).contains(&text.len())
            && text.starts_with(['C', 'G'])
            && text.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let is_name = text.strip_prefix('#').is_some_and(|name| {
            (1..=80).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
        if is_id || is_name {
            Ok(Self(text.to_owned()))
        } else {
            Err(de::Error::custom(format!(
                "{text:?} is not a Slack channel: a channel id (`C0123ABCD`) or `#name` (lower case letters, digits, \
                 `-`, `_`)"
            )))
        }
    }
}

struct GroupList(Vec<GroupMatcher>);

impl GroupList {
    fn describe(&self) -> String {
        self.0.iter().map(GroupMatcher::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl<'de> Deserialize<'de> for GroupList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        if items.is_empty() {
            return Err(de::Error::custom("must name at least one group glob or id"));
        }
        items
            .into_iter()
            .map(|item| {
                let item = item.trim().to_owned();
                if is_object_id(&item) {
                    return Ok(GroupMatcher::Id(item));
                }
                glob::Pattern::new(&item)
                    .map(GroupMatcher::Glob)
                    .map_err(|e| de::Error::custom(format!("bad group pattern {item:?}: {e}")))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[derive(Clone)]
struct ApproverList(Vec<Approver>);

impl<'de> Deserialize<'de> for ApproverList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Word(String),
            Group { group: String },
            User { user: String },
        }
        let items = Vec::<Item>::deserialize(d)
            .map_err(|_| de::Error::custom("is a list of `manager`, `{group: NAME}` or `{user: EMAIL}`"))?;
        if items.is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        items
            .into_iter()
            .map(|item| match item {
                Item::Word(w) if w == "manager" => Ok(Approver::Manager),
                Item::Word(w) => Err(de::Error::custom(format!(
                    "unknown approver {w:?}: use `manager`, `{{group: NAME}}` or `{{user: EMAIL}}`"
                ))),
                Item::Group { group } if !group.trim().is_empty() => Ok(Approver::Group(group.trim().to_owned())),
                Item::User { user } if !user.trim().is_empty() => Ok(Approver::User(user.trim().to_lowercase())),
                _ => Err(de::Error::custom("an approver's group or user must not be empty")),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[derive(Clone)]
enum EligibleDocument {
    Everyone,
    Nobody,
    Some { groups: Vec<String>, users: Vec<String> },
}

impl EligibleDocument {
    fn into_eligibility(self) -> Eligibility {
        match self {
            Self::Everyone => Eligibility::Everyone,
            Self::Nobody => Eligibility::Nobody,
            Self::Some { groups, users } => {
                Eligibility::Members { groups, users: users.into_iter().map(|u| u.trim().to_lowercase()).collect() }
            }
        }
    }
}

impl<'de> Deserialize<'de> for EligibleDocument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Members {
            #[serde(default)]
            groups: Vec<String>,
            #[serde(default)]
            users: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            Members(Members),
        }
        let invalid = || de::Error::custom("is `everyone`, `nobody` or `{groups: [...], users: [...]}`");
        match Form::deserialize(d).map_err(|_| invalid())? {
            Form::Word(w) if w == "everyone" => Ok(Self::Everyone),
            Form::Word(w) if w == "nobody" => Ok(Self::Nobody),
            Form::Word(_) => Err(invalid()),
            Form::Members(m) if m.groups.is_empty() && m.users.is_empty() => {
                Err(de::Error::custom("names no group and no user: write `nobody` if that is meant"))
            }
            Form::Members(m) => Ok(Self::Some { groups: m.groups, users: m.users }),
        }
    }
}
