//! What applying a policy document would change (`jitctl policy plan`, and `apply` before it
//! writes): compared with the applied policy (or none: then only admins can grant) and with the
//! synced directory of each integration. Pure: the caller reads the directory and the active
//! grants and hands them in.
//!
//! Per requestable group: the rule that decides before and after, what changes in it, and who
//! gains or loses eligibility (suspended users are left out: they can request nothing). Then the
//! active grants the new policy would not allow (no rule, grantee no longer eligible, or longer
//! than the new maximum), and warnings for names the document uses that the directory does not
//! know.

use super::{Approver, Eligibility, GroupRef, Policy, Requester, Rule};
use crate::domain::model::{DirectoryGroup, DirectoryUser, Grant, GrantDuration, GrantStatus, Membership, UserState};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// One integration's synced directory, as the plan reads it.
#[derive(Debug, Clone, Default)]
pub struct DirectoryView {
    pub integration: String,
    pub users: Vec<DirectoryUser>,
    pub groups: Vec<DirectoryGroup>,
    pub memberships: Vec<Membership>,
}

/// The difference a document makes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyPlan {
    /// Requestable groups whose rule or eligible users change.
    pub groups: Vec<GroupPlan>,
    /// Requestable groups for which nothing changes.
    pub unchanged_groups: usize,
    /// Active grants the new policy would not allow as they are.
    pub over_limit: Vec<OverLimitGrant>,
    pub warnings: Vec<PlanWarning>,
}

/// One requestable group that the change affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    pub integration: String,
    pub group_id: String,
    pub group_name: String,
    /// The rule that decides for the group (numbered from 1) before and after; `None`: no rule
    /// covers it (it cannot be requested).
    pub rule_before: Option<usize>,
    pub rule_after: Option<usize>,
    pub changes: Vec<RuleChange>,
    /// Emails of the users who become eligible.
    pub gains: Vec<String>,
    /// Emails of the users who are eligible no more.
    pub loses: Vec<String>,
}

/// One setting of a group's rule, before and after (`-` where no rule covers the group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

/// An active grant the new policy would not allow: it keeps running until it ends; the plan
/// says so that the operator can decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverLimitGrant {
    pub grant_id: String,
    pub integration: String,
    pub user: String,
    pub group: String,
    /// `expires_at - granted_at`.
    pub duration: String,
    pub expires_at: DateTime<Utc>,
    /// Why, in words.
    pub reasons: Vec<String>,
}

/// A name the document uses that no synced directory knows (by name or id; users by email,
/// username or id). Rules are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanWarning {
    UnknownApproverGroup {
        rule: usize,
        group: String,
    },
    UnknownEligibleGroup {
        rule: usize,
        group: String,
    },
    UnknownApproverUser {
        rule: usize,
        user: String,
    },
    UnknownEligibleUser {
        rule: usize,
        user: String,
    },
    /// The rule's `groups` match no requestable group of any synced directory.
    RuleMatchesNoGroup {
        rule: usize,
    },
}

impl fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownApproverGroup { rule, group } => {
                write!(f, "rule {rule}: approver group {group:?} is not in the synced directory")
            }
            Self::UnknownEligibleGroup { rule, group } => {
                write!(f, "rule {rule}: eligible group {group:?} is not in the synced directory")
            }
            Self::UnknownApproverUser { rule, user } => {
                write!(f, "rule {rule}: approver user {user:?} is not in the synced directory")
            }
            Self::UnknownEligibleUser { rule, user } => {
                write!(f, "rule {rule}: eligible user {user:?} is not in the synced directory")
            }
            Self::RuleMatchesNoGroup { rule } => write!(f, "rule {rule}: its groups match no requestable group"),
        }
    }
}

impl PolicyPlan {
    /// Approver groups that no synced directory knows: `apply` refuses the document (nobody could
    /// approve what those rules cover).
    pub fn unknown_approver_groups(&self) -> Vec<&PlanWarning> {
        self.warnings.iter().filter(|w| matches!(w, PlanWarning::UnknownApproverGroup { .. })).collect()
    }
}

/// The plan of applying `new` where `applied` is in force.
pub fn plan(new: &Policy, applied: Option<&Policy>, directories: &[DirectoryView], active: &[Grant]) -> PolicyPlan {
    let mut out = PolicyPlan::default();
    let indexes: Vec<Index<'_>> = directories.iter().map(Index::new).collect();
    for index in &indexes {
        let mut groups: Vec<&DirectoryGroup> = index.view.groups.iter().filter(|g| g.requestable).collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        for group in groups {
            let group_ref = GroupRef { id: &group.id, name: &group.name };
            let before = applied.and_then(|p| p.rule_for(&group_ref));
            let after = new.rule_for(&group_ref);
            let changes = rule_changes(before, after);
            let (gains, loses) = eligibility_changes(index, before, after);
            if changes.is_empty() && gains.is_empty() && loses.is_empty() {
                out.unchanged_groups += 1;
                continue;
            }
            out.groups.push(GroupPlan {
                integration: index.view.integration.clone(),
                group_id: group.id.clone(),
                group_name: group.name.clone(),
                rule_before: before.map(Rule::number),
                rule_after: after.map(Rule::number),
                changes,
                gains,
                loses,
            });
        }
    }
    out.over_limit = active
        .iter()
        .filter(|g| g.status == GrantStatus::Active)
        .filter_map(|grant| over_limit(new, &indexes, grant))
        .collect();
    out.warnings = warnings(new, &indexes);
    out
}

/// A directory with what the plan looks up in it.
struct Index<'a> {
    view: &'a DirectoryView,
    users: HashMap<&'a str, &'a DirectoryUser>,
    groups: HashMap<&'a str, &'a DirectoryGroup>,
    /// Per user id: the ids and names of the groups they are a direct member of.
    member_of: HashMap<&'a str, HashSet<&'a str>>,
}

impl<'a> Index<'a> {
    fn new(view: &'a DirectoryView) -> Self {
        let users: HashMap<&str, &DirectoryUser> = view.users.iter().map(|u| (u.id.as_str(), u)).collect();
        let groups: HashMap<&str, &DirectoryGroup> = view.groups.iter().map(|g| (g.id.as_str(), g)).collect();
        let mut member_of: HashMap<&'a str, HashSet<&'a str>> = HashMap::new();
        for membership in &view.memberships {
            let (user_id, group_id) = (membership.user_id.to_string(), membership.group_id.to_string());
            if let (Some(user), Some(group)) = (users.get(user_id.as_str()), groups.get(group_id.as_str())) {
                member_of.entry(user.id.as_str()).or_default().extend([group.id.as_str(), group.name.as_str()]);
            }
        }
        Self { view, users, groups, member_of }
    }

    fn user(&self, id: &str) -> Option<&'a DirectoryUser> {
        self.users.get(id).copied()
    }

    fn group(&self, id: &str) -> Option<&'a DirectoryGroup> {
        self.groups.get(id).copied()
    }

    fn eligible(&self, rule: Option<&Rule>, user: &DirectoryUser) -> bool {
        let Some(rule) = rule else { return false };
        let groups = self.member_of.get(user.id.as_str());
        let member_of = |g: &str| groups.is_some_and(|set| set.contains(g));
        rule.allows(&Requester { id: &user.id, email: &user.email, username: &user.username, member_of: &member_of })
    }
}

fn eligibility_changes(index: &Index<'_>, before: Option<&Rule>, after: Option<&Rule>) -> (Vec<String>, Vec<String>) {
    let same = match (before, after) {
        (Some(b), Some(a)) => b.eligible == a.eligible,
        (None, None) => true,
        _ => false,
    };
    if same {
        return (vec![], vec![]);
    }
    let (mut gains, mut loses) = (vec![], vec![]);
    for user in index.view.users.iter().filter(|u| u.state != UserState::Suspended) {
        match (index.eligible(before, user), index.eligible(after, user)) {
            (false, true) => gains.push(user.email.clone()),
            (true, false) => loses.push(user.email.clone()),
            _ => {}
        }
    }
    gains.sort();
    loses.sort();
    (gains, loses)
}

fn eligibility_text(eligible: &Eligibility) -> String {
    match eligible {
        Eligibility::Everyone => "everyone".to_owned(),
        Eligibility::Nobody => "nobody".to_owned(),
        Eligibility::Members { groups, users } => {
            format!("groups [{}], users [{}]", groups.join(", "), users.join(", "))
        }
    }
}

fn approvers_text(approvers: &[Approver]) -> String {
    approvers.iter().map(Approver::to_string).collect::<Vec<_>>().join(", ")
}

fn optional_duration(d: Option<GrantDuration>) -> String {
    d.map_or_else(|| "never".to_owned(), |d| d.to_string())
}

/// The settings of a rule that the plan compares, in words.
fn settings(rule: &Rule) -> [(&'static str, String); 8] {
    [
        ("eligible", eligibility_text(&rule.eligible)),
        ("max_duration", rule.max_duration.to_string()),
        ("approval.required", rule.approval.required.to_string()),
        ("approval.approvers", approvers_text(&rule.approval.approvers)),
        ("approval.auto_approve_up_to", optional_duration(rule.approval.auto_approve_up_to)),
        ("break_glass", rule.break_glass.to_string()),
        ("ticket", rule.ticket.as_ref().map_or_else(|| "none".to_owned(), |t| t.as_str().to_owned())),
        ("slack_channel", rule.slack_channel.clone().unwrap_or_else(|| "none".to_owned())),
    ]
}

fn rule_changes(before: Option<&Rule>, after: Option<&Rule>) -> Vec<RuleChange> {
    let label = |rule: Option<&Rule>| {
        rule.map_or_else(|| "none: not requestable".to_owned(), |r| format!("rule {}", r.number()))
    };
    match (before, after) {
        (None, None) => vec![],
        (Some(b), Some(a)) => settings(b)
            .into_iter()
            .zip(settings(a))
            .filter(|((_, x), (_, y))| x != y)
            .map(|((field, before), (_, after))| RuleChange { field, before, after })
            .collect(),
        _ => {
            let mut changes = vec![RuleChange { field: "rule", before: label(before), after: label(after) }];
            // A group becoming requestable (or no longer): its settings from (or to) nothing.
            let (side, new_side) = match (before, after) {
                (Some(b), None) => (settings(b), false),
                (None, Some(a)) => (settings(a), true),
                _ => unreachable!("one side only"),
            };
            changes.extend(side.into_iter().map(|(field, value)| {
                let (before, after) = if new_side { ("-".to_owned(), value) } else { (value, "-".to_owned()) };
                RuleChange { field, before, after }
            }));
            changes
        }
    }
}

fn over_limit(new: &Policy, indexes: &[Index<'_>], grant: &Grant) -> Option<OverLimitGrant> {
    let index = indexes.iter().find(|i| i.view.integration == grant.integration);
    let group_name = index.and_then(|i| i.group(&grant.group.id)).map_or(grant.group.name.as_str(), |g| &g.name);
    // An active grant has both; its length counts extensions.
    let duration = grant.expiry() - grant.granted_at.unwrap_or(grant.requested_at);
    let mut reasons = vec![];
    match new.rule_for(&GroupRef { id: &grant.group.id, name: group_name }) {
        None => reasons.push(format!("no rule covers group {group_name:?}")),
        Some(rule) => {
            let user = index.and_then(|i| i.user(&grant.user.id));
            let eligible = match (index, user) {
                (Some(index), Some(user)) => index.eligible(Some(rule), user),
                // Not in the synced directory: only the grant's own record of the user.
                _ => {
                    let member_of = |_: &str| false;
                    rule.allows(&Requester {
                        id: &grant.user.id,
                        email: &grant.user.email,
                        username: "",
                        member_of: &member_of,
                    })
                }
            };
            if !eligible {
                reasons.push(format!("{} is not eligible under rule {}", grant.user.email, rule.number()));
            }
            if duration > rule.max_duration.to_chrono() {
                reasons.push(format!(
                    "lasts {} over the maximum {} of rule {}",
                    duration_text(duration),
                    rule.max_duration,
                    rule.number()
                ));
            }
        }
    }
    (!reasons.is_empty()).then(|| OverLimitGrant {
        grant_id: grant.id.clone(),
        integration: grant.integration.clone(),
        user: grant.user.email.clone(),
        group: group_name.to_owned(),
        duration: duration_text(duration),
        expires_at: grant.expiry(),
        reasons,
    })
}

fn duration_text(d: chrono::Duration) -> String {
    GrantDuration::from_secs(u64::try_from(d.num_seconds()).unwrap_or(0)).to_string()
}

fn warnings(policy: &Policy, indexes: &[Index<'_>]) -> Vec<PlanWarning> {
    let group_known = |name: &str| indexes.iter().any(|i| i.view.groups.iter().any(|g| g.name == name || g.id == name));
    let user_known = |name: &str| {
        indexes.iter().any(|i| {
            i.view.users.iter().any(|u| u.email == name || u.id == name || u.username.eq_ignore_ascii_case(name))
        })
    };
    let mut out: Vec<PlanWarning> = vec![];
    let mut push = |w: PlanWarning| {
        if !out.contains(&w) {
            out.push(w);
        }
    };
    for rule in &policy.rules {
        let number = rule.number();
        if let Eligibility::Members { groups, users } = &rule.eligible {
            for group in groups.iter().filter(|g| !group_known(g)) {
                push(PlanWarning::UnknownEligibleGroup { rule: number, group: group.clone() });
            }
            for user in users.iter().filter(|u| !user_known(u)) {
                push(PlanWarning::UnknownEligibleUser { rule: number, user: user.clone() });
            }
        }
        for approver in &rule.approval.approvers {
            match approver {
                Approver::Group(group) if !group_known(group) => {
                    push(PlanWarning::UnknownApproverGroup { rule: number, group: group.clone() })
                }
                Approver::User(user) if !user_known(user) => {
                    push(PlanWarning::UnknownApproverUser { rule: number, user: user.clone() })
                }
                _ => {}
            }
        }
        let matches_some = indexes.iter().any(|i| {
            i.view.groups.iter().filter(|g| g.requestable).any(|g| {
                let group = GroupRef { id: &g.id, name: &g.name };
                rule.groups.iter().any(|m| m.matches(&group))
            })
        });
        if !indexes.is_empty() && !matches_some {
            push(PlanWarning::RuleMatchesNoGroup { rule: number });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{
        fixtures::{group, member, user},
        sample_grant,
    };
    use crate::domain::policy::parse_policy;

    fn view() -> DirectoryView {
        let mut eng = group("g-eng", "engineering");
        eng.requestable = false;
        let mut owners = group("g-own", "db-owners");
        owners.requestable = false;
        let mut suspended = user("u-sam", "sam@corp.com");
        suspended.state = UserState::Suspended;
        DirectoryView {
            integration: "corp".into(),
            users: vec![
                user("u-alice", "alice@corp.com"),
                user("u-bob", "bob@corp.com"),
                user("u-carol", "carol@corp.com"),
                suspended,
            ],
            groups: vec![group("g-db", "prod-db-admins"), group("g-web", "prod-web"), eng, owners],
            memberships: vec![member("g-eng", "u-alice"), member("g-eng", "u-sam"), member("g-own", "u-bob")],
        }
    }

    const APPLIED: &str = r#"
version: 1
defaults: {max_duration: 4h, approval: {approvers: [manager]}}
rules:
  - groups: ["prod-db-*"]
    eligible: {groups: [engineering]}
    max_duration: 2h
  - groups: ["prod-web"]
    eligible: everyone
"#;

    const NEW: &str = r#"
version: 1
defaults: {max_duration: 4h, approval: {approvers: [manager]}}
rules:
  - groups: ["prod-db-*"]
    eligible: {users: [carol@corp.com]}
    max_duration: 1h
    approval: {approvers: [{group: db-owners}, {group: dba-team}], required: 1}
    break_glass: true
  - groups: ["prod-web"]
    eligible: everyone
  - groups: ["staging-*"]
    eligible: {groups: [contractors], users: [nobody@corp.com]}
"#;

    fn active(id: &str, user: (&str, &str), group: (&str, &str), hours: i64) -> Grant {
        let mut g = sample_grant();
        g.id = id.into();
        g.integration = "corp".into();
        g.user.id = user.0.into();
        g.user.email = user.1.into();
        g.group.id = group.0.into();
        g.group.name = group.1.into();
        g.expires_at = Some(g.requested_at + chrono::Duration::hours(hours));
        g
    }

    #[test]
    fn gains_losses_and_rule_changes_per_requestable_group() {
        let (applied, new) = (parse_policy(APPLIED).unwrap(), parse_policy(NEW).unwrap());
        let p = plan(&new, Some(&applied), &[view()], &[]);
        assert_eq!(p.groups.len(), 1, "{p:#?}");
        assert_eq!(p.unchanged_groups, 1, "prod-web: same rule, same people");
        let db = &p.groups[0];
        assert_eq!((db.group_name.as_str(), db.rule_before, db.rule_after), ("prod-db-admins", Some(1), Some(1)));
        assert_eq!(db.gains, vec!["carol@corp.com"]);
        assert_eq!(db.loses, vec!["alice@corp.com"], "sam is suspended: not counted");
        let fields: Vec<(&str, &str, &str)> =
            db.changes.iter().map(|c| (c.field, c.before.as_str(), c.after.as_str())).collect();
        assert!(fields.contains(&("max_duration", "2h", "1h")), "{fields:?}");
        assert!(fields.contains(&("approval.approvers", "manager", "group db-owners, group dba-team")), "{fields:?}");
        assert!(fields.contains(&("break_glass", "false", "true")), "{fields:?}");
        assert!(!fields.iter().any(|f| f.0 == "approval.required"), "1 before and after: {fields:?}");
    }

    #[test]
    fn without_an_applied_policy_every_eligible_user_gains() {
        let new = parse_policy(APPLIED).unwrap();
        let p = plan(&new, None, &[view()], &[]);
        assert_eq!(p.groups.len(), 2);
        let web = p.groups.iter().find(|g| g.group_name == "prod-web").unwrap();
        assert_eq!(web.gains, vec!["alice@corp.com", "bob@corp.com", "carol@corp.com"]);
        assert_eq!((web.rule_before, web.rule_after), (None, Some(2)));
        assert_eq!(web.changes[0].field, "rule");
        assert_eq!(web.changes[0].before, "none: not requestable");
        let db = p.groups.iter().find(|g| g.group_name == "prod-db-admins").unwrap();
        assert_eq!(db.gains, vec!["alice@corp.com"], "a member of engineering");
        // The reverse: nothing covers the groups any more.
        let nothing = parse_policy("version: 1\nrules:\n  - groups: [other]\n    eligible: everyone\n").unwrap();
        let p = plan(&nothing, Some(&new), &[view()], &[]);
        let web = p.groups.iter().find(|g| g.group_name == "prod-web").unwrap();
        assert_eq!((web.rule_after, web.loses.len()), (None, 3));
    }

    #[test]
    fn active_grants_over_the_new_limits_are_listed() {
        let (applied, new) = (parse_policy(APPLIED).unwrap(), parse_policy(NEW).unwrap());
        let grants = vec![
            // carol is eligible under the new rule 1 but her grant lasts 2h: over the new 1h.
            active("g1", ("u-carol", "carol@corp.com"), ("g-db", "prod-db-admins"), 2),
            // alice is no longer eligible, within the limit.
            active("g2", ("u-alice", "alice@corp.com"), ("g-db", "prod-db-admins"), 1),
            // prod-web: everyone, 4h: fine.
            active("g3", ("u-bob", "bob@corp.com"), ("g-web", "prod-web"), 3),
            // a group no rule covers.
            active("g4", ("u-bob", "bob@corp.com"), ("g-x", "finance"), 1),
        ];
        let mut ended = active("g5", ("u-alice", "alice@corp.com"), ("g-db", "prod-db-admins"), 8);
        ended.status = GrantStatus::Expired;
        let all: Vec<Grant> = grants.into_iter().chain([ended]).collect();
        let p = plan(&new, Some(&applied), &[view()], &all);
        let ids: Vec<&str> = p.over_limit.iter().map(|g| g.grant_id.as_str()).collect();
        assert_eq!(ids, vec!["g1", "g2", "g4"], "{p:#?}");
        assert_eq!(p.over_limit[0].reasons, vec!["lasts 2h over the maximum 1h of rule 1"]);
        assert_eq!(p.over_limit[1].reasons, vec!["alice@corp.com is not eligible under rule 1"]);
        assert!(p.over_limit[2].reasons[0].contains("no rule covers group \"finance\""));
        assert_eq!(p.over_limit[0].duration, "2h");
    }

    #[test]
    fn unknown_groups_and_users_are_warnings() {
        let new = parse_policy(NEW).unwrap();
        let p = plan(&new, None, &[view()], &[]);
        let warnings: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
        assert!(warnings.contains(&"rule 1: approver group \"dba-team\" is not in the synced directory".into()));
        assert!(warnings.contains(&"rule 3: eligible group \"contractors\" is not in the synced directory".into()));
        assert!(warnings.contains(&"rule 3: eligible user \"nobody@corp.com\" is not in the synced directory".into()));
        assert!(warnings.contains(&"rule 3: its groups match no requestable group".into()));
        assert!(!warnings.iter().any(|w| w.contains("db-owners") || w.contains("carol")), "{warnings:?}");
        assert_eq!(p.unknown_approver_groups().len(), 1);
        // A group named by id is known too.
        let by_id = parse_policy(
            "version: 1\nrules:\n  - groups: [prod-web]\n    eligible: everyone\n    approval: {approvers: [{group: g-own}]}\n",
        )
        .unwrap();
        assert!(plan(&by_id, None, &[view()], &[]).warnings.is_empty());
    }
}
