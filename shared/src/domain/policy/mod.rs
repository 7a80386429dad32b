//! Policy as code: which groups a person may request, for how long, and who must approve
//! (SPEC "Who may do what"). A [`Policy`] is parsed from its document once ([`parse_policy`]) and
//! then evaluated per request without I/O: the caller hands in what the directory knows about the
//! requester.
//!
//! The first rule whose `groups` matches the group (a glob on its name, or its id) decides; a
//! group no rule matches cannot be requested.

mod document;
mod evaluate;
mod plan;

pub use document::{parse_policy, PolicyError, MAX_POLICY_BYTES, POLICY_VERSION};
pub use evaluate::{Decision, GroupRef, PolicyRequest, Refusal, Requester};
pub use plan::{plan, DirectoryView, GroupPlan, OverLimitGrant, PlanWarning, PolicyPlan, RuleChange};

/// The hex SHA-256 of a policy document's text: what identifies an applied version in the audit
/// trail and the `Policy Changed` event.
pub fn document_sha256(document: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(document.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

use crate::domain::model::GrantDuration;
use std::fmt;

/// A parsed, checked policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    pub version: u32,
    pub rules: Vec<Rule>,
}

/// One rule, with `defaults` already applied.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in the document (0-based), for messages and audit.
    pub index: usize,
    pub groups: Vec<GroupMatcher>,
    pub eligible: Eligibility,
    pub max_duration: GrantDuration,
    pub approval: Approval,
    /// The reason must name a ticket: see [`Rule::reason_names_ticket`].
    pub ticket: Option<regex_lite::Regex>,
    pub break_glass: bool,
    pub remind_before: Option<GrantDuration>,
    /// A grant's total length with extensions, counted from `granted_at`.
    pub extend_max_total: GrantDuration,
    /// Slack approvals (optional): the channel its requests are posted to, rather than a
    /// direct message to each approver. A channel id (`C0123ABCD`) or `#name`.
    pub slack_channel: Option<String>,
    /// Only the product fills the group: a membership added outside it is drift (`added_outside`).
    pub jit_only: bool,
    /// With `jit_only`: such a membership is also removed (and audited).
    pub remove_outside: bool,
}

impl Rule {
    /// Whether `reason` satisfies the rule's `ticket` (always, without one): the pattern matches
    /// the whole reason or one of its words (split at white space, with the punctuation around a
    /// word dropped). So an anchored pattern such as `^INC-[0-9]+$` means "a ticket reference
    /// somewhere in the reason" (`INC-4711: restore the orders table`), as people write it,
    /// without the reason having to be the bare reference.
    pub fn reason_names_ticket(&self, reason: &str) -> bool {
        let Some(ticket) = &self.ticket else { return true };
        ticket.is_match(reason)
            || reason
                .split_whitespace()
                .map(|word| {
                    word.trim_matches(|c: char| c.is_ascii_punctuation() && !matches!(c, '#' | '-' | '_' | '/'))
                })
                .any(|word| !word.is_empty() && ticket.is_match(word))
    }
}

/// How a rule names groups: a glob on the name, or a JumpCloud id.
#[derive(Debug, Clone)]
pub enum GroupMatcher {
    Glob(glob::Pattern),
    Id(String),
}

impl GroupMatcher {
    pub fn matches(&self, group: &GroupRef<'_>) -> bool {
        match self {
            // Case-sensitive, as JumpCloud group names are.
            Self::Glob(pattern) => pattern.matches(group.name),
            Self::Id(id) => id == group.id,
        }
    }
}

impl fmt::Display for GroupMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glob(pattern) => f.write_str(pattern.as_str()),
            Self::Id(id) => f.write_str(id),
        }
    }
}

/// Who may request a rule's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    Everyone,
    Nobody,
    /// Members of any of `groups` (names or ids), or any of `users` (emails, usernames or ids;
    /// lower case).
    Members {
        groups: Vec<String>,
        users: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub approvers: Vec<Approver>,
    /// Distinct approvals needed; the requester and the grantee never count.
    pub required: u32,
    /// Requests up to this long are approved at once; `None`: never.
    pub auto_approve_up_to: Option<GrantDuration>,
    /// A request not decided by then ends `request_expired`.
    pub timeout: GrantDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Approver {
    /// The grantee's manager in the synced directory (`MANAGER_ATTRIBUTE`).
    Manager,
    /// Members of a JumpCloud group (name or id).
    Group(String),
    /// One user (email, username or id; lower case).
    User(String),
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manager => f.write_str("manager"),
            Self::Group(g) => write!(f, "group {g}"),
            Self::User(u) => write!(f, "user {u}"),
        }
    }
}

impl Policy {
    /// The rule that decides for a group: the first whose `groups` matches.
    pub fn rule_for(&self, group: &GroupRef<'_>) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.groups.iter().any(|m| m.matches(group)))
    }
}

#[cfg(test)]
mod tests;
