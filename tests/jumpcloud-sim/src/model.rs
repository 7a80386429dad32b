//! The directory data an organization holds, in JumpCloud's own field names so that a seed file
//! reads like API output (`_id`, `jobTitle`, `membershipMethod`...).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use anyhow::{bail, Context};
pub use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::ids::{new_object_id, now_secs, rfc3339};

/// `systemuser.state` in API 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserState {
    Staged,
    #[default]
    Activated,
    Suspended,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Staged => "STAGED",
            UserState::Activated => "ACTIVATED",
            UserState::Suspended => "SUSPENDED",
        }
    }
}

/// A custom attribute (`systemuserput_attributes_inner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: CompactString,
    pub value: CompactString,
}

impl Attribute {
    pub fn new(name: impl Into<CompactString>, value: impl Into<CompactString>) -> Self {
        Attribute { name: name.into(), value: value.into() }
    }
}

fn yes() -> bool {
    true
}

/// A system user (the subset of `systemuserreturn` the product reads).
///
/// Only `_id`, `username` and `email` are required in a seed file; the rest defaults (state
/// `ACTIVATED`). The API adds `id` (same value as `_id`) when serializing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(rename = "_id")]
    pub id: CompactString,
    pub username: CompactString,
    pub email: CompactString,
    #[serde(default)]
    pub firstname: CompactString,
    #[serde(default)]
    pub lastname: CompactString,
    #[serde(default)]
    pub displayname: CompactString,
    #[serde(default)]
    pub job_title: CompactString,
    #[serde(default)]
    pub department: CompactString,
    #[serde(default)]
    pub location: CompactString,
    #[serde(default)]
    pub employee_type: CompactString,
    /// The manager's user id; JumpCloud omits the field when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<CompactString>,
    #[serde(default)]
    pub state: UserState,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default = "yes")]
    pub activated: bool,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub created: CompactString,
}

impl User {
    /// An activated user with a fresh id, created now.
    pub fn new(username: impl Into<CompactString>, email: impl Into<CompactString>) -> Self {
        User {
            id: new_object_id().into(),
            username: username.into(),
            email: email.into(),
            firstname: CompactString::default(),
            lastname: CompactString::default(),
            displayname: CompactString::default(),
            job_title: CompactString::default(),
            department: CompactString::default(),
            location: CompactString::default(),
            employee_type: CompactString::default(),
            manager: None,
            state: UserState::Activated,
            suspended: false,
            activated: true,
            attributes: Vec::new(),
            created: rfc3339(now_secs()).into(),
        }
    }

    /// Sets `state` and keeps `suspended` / `activated` consistent with it, as JumpCloud does.
    pub fn set_state(&mut self, state: UserState) {
        self.state = state;
        self.suspended = state == UserState::Suspended;
        match state {
            UserState::Staged => self.activated = false,
            UserState::Activated => self.activated = true,
            // A suspended user keeps whatever activation it had.
            UserState::Suspended => {}
        }
    }

    pub fn with_state(mut self, state: UserState) -> Self {
        self.set_state(state);
        self
    }

    /// The value of a custom attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|a| a.name == name).map(|a| a.value.as_str())
    }

    /// Sets (or replaces) a custom attribute.
    pub fn set_attribute(&mut self, name: impl Into<CompactString>, value: impl Into<CompactString>) {
        let (name, value) = (name.into(), value.into());
        match self.attributes.iter_mut().find(|a| a.name == name) {
            Some(a) => a.value = value,
            None => self.attributes.push(Attribute { name, value }),
        }
    }
}

/// `GroupMembershipMethodType` in API 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MembershipMethod {
    #[serde(rename = "NOTSET")]
    NotSet,
    #[default]
    #[serde(rename = "STATIC")]
    Static,
    #[serde(rename = "DYNAMIC_REVIEW_REQUIRED")]
    DynamicReviewRequired,
    #[serde(rename = "DYNAMIC_AUTOMATED")]
    DynamicAutomated,
}

impl MembershipMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipMethod::NotSet => "NOTSET",
            MembershipMethod::Static => "STATIC",
            MembershipMethod::DynamicReviewRequired => "DYNAMIC_REVIEW_REQUIRED",
            MembershipMethod::DynamicAutomated => "DYNAMIC_AUTOMATED",
        }
    }

    /// Membership managed by JumpCloud rules.
    pub fn is_dynamic(self) -> bool {
        matches!(self, MembershipMethod::DynamicReviewRequired | MembershipMethod::DynamicAutomated)
    }
}

/// A user group (the subset of `UserGroup` the product reads). The API adds `type` and
/// `attributes` when serializing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: CompactString,
    pub name: CompactString,
    #[serde(default)]
    pub description: CompactString,
    #[serde(default)]
    pub email: CompactString,
    #[serde(default)]
    pub membership_method: MembershipMethod,
}

impl Group {
    /// A static group with a fresh id.
    pub fn new(name: impl Into<CompactString>) -> Self {
        Group {
            id: new_object_id().into(),
            name: name.into(),
            description: CompactString::default(),
            email: CompactString::default(),
            membership_method: MembershipMethod::Static,
        }
    }

    pub fn with_method(mut self, method: MembershipMethod) -> Self {
        self.membership_method = method;
        self
    }
}

/// A string that hashes and compares as its lowercase form, without making that form.
struct IgnoreCase<'a>(&'a str);

impl IgnoreCase<'_> {
    fn lowercase(&self) -> impl Iterator<Item = char> + '_ {
        self.0.chars().flat_map(char::to_lowercase)
    }
}

impl PartialEq for IgnoreCase<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.lowercase().eq(other.lowercase())
    }
}

impl Eq for IgnoreCase<'_> {}

impl Hash for IgnoreCase<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.lowercase().for_each(|c| c.hash(state));
    }
}

/// One organization: the unit a seed file describes and an API key opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub api_key: String,
    /// Sent by clients as `x-org-id`; needed when one key opens several organizations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Group id -> ids of its direct members.
    #[serde(default)]
    pub memberships: BTreeMap<CompactString, BTreeSet<CompactString>>,
}

impl Org {
    /// An empty organization opened by `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Org {
            api_key: api_key.into(),
            org_id: None,
            users: Vec::new(),
            groups: Vec::new(),
            memberships: BTreeMap::new(),
        }
    }

    pub fn with_org_id(mut self, org_id: impl Into<String>) -> Self {
        self.org_id = Some(org_id.into());
        self
    }

    /// Adds a user and returns its id. Consistency (unique ids, usernames, emails) is checked by
    /// [`Org::validate`], which the simulator runs at start.
    pub fn add_user(&mut self, user: User) -> String {
        let id = user.id.to_string();
        self.users.push(user);
        id
    }

    /// Adds a group and returns its id.
    pub fn add_group(&mut self, group: Group) -> String {
        let id = group.id.to_string();
        self.groups.push(group);
        id
    }

    /// Makes a user a direct member of a group; false if it already was.
    pub fn add_member(&mut self, group_id: &str, user_id: &str) -> bool {
        self.memberships.entry(group_id.into()).or_default().insert(user_id.into())
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Direct members of a group (empty for an unknown group).
    pub fn members(&self, group_id: &str) -> BTreeSet<String> {
        self.memberships.get(group_id).map(|m| m.iter().map(CompactString::to_string).collect()).unwrap_or_default()
    }

    /// Checks what JumpCloud itself guarantees: unique ids, usernames, emails (ignoring case) and
    /// group names; managers and memberships that point at existing objects.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.api_key.is_empty() {
            bail!("api_key is empty");
        }
        // Sets of borrowed strings: at 1,000,000 users, owned copies would double the peak.
        let mut user_ids = HashSet::with_capacity(self.users.len());
        let mut usernames = HashSet::with_capacity(self.users.len());
        let mut emails = HashSet::with_capacity(self.users.len());
        for u in &self.users {
            if u.id.is_empty() {
                bail!("user {:?} has an empty _id", u.username);
            }
            if !user_ids.insert(u.id.as_str()) {
                bail!("duplicate id {}", u.id);
            }
            if !usernames.insert(u.username.as_str()) {
                bail!("duplicate username {}", u.username);
            }
            if !emails.insert(IgnoreCase(&u.email)) {
                bail!("duplicate email {}", u.email);
            }
        }
        drop((usernames, emails));
        for u in &self.users {
            if let Some(m) = &u.manager {
                if !user_ids.contains(m.as_str()) {
                    bail!("user {} has an unknown manager {m}", u.id);
                }
            }
        }
        let mut group_ids = HashSet::new();
        let mut names = HashSet::new();
        for g in &self.groups {
            if g.id.is_empty() {
                bail!("group {:?} has an empty id", g.name);
            }
            if user_ids.contains(g.id.as_str()) || !group_ids.insert(g.id.as_str()) {
                bail!("duplicate id {}", g.id);
            }
            if !names.insert(g.name.as_str()) {
                bail!("duplicate group name {}", g.name);
            }
        }
        for (gid, members) in &self.memberships {
            if !group_ids.contains(gid.as_str()) {
                bail!("memberships name an unknown group {gid}");
            }
            if let Some(u) = members.iter().find(|u| !user_ids.contains(u.as_str())) {
                bail!("group {gid} has an unknown member {u}");
            }
        }
        Ok(())
    }

    /// Reads one organization from a seed file's text.
    pub fn from_json(json: &str) -> anyhow::Result<Org> {
        let org: Org = serde_json::from_str(json).context("parsing the organization")?;
        org.validate()?;
        Ok(org)
    }

    /// Reads a seed file: one organization (an object) or several (an array).
    pub fn list_from_json(json: &str) -> anyhow::Result<Vec<Org>> {
        let value: serde_json::Value = serde_json::from_str(json).context("parsing the seed")?;
        let orgs: Vec<Org> = if value.is_array() {
            serde_json::from_value(value)
        } else {
            serde_json::from_value(value).map(|o| vec![o])
        }
        .context("parsing the seed")?;
        for (i, org) in orgs.iter().enumerate() {
            org.validate().with_context(|| format!("organization {i}"))?;
        }
        Ok(orgs)
    }

    /// The seed file's text (pretty-printed: seed files are read by people).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an Org always serializes")
    }

    /// A seed file for several organizations: an object when there is one, else an array.
    pub fn list_to_json(orgs: &[Org]) -> String {
        match orgs {
            [one] => one.to_json(),
            many => serde_json::to_string_pretty(many).expect("an Org always serializes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_seed_gets_defaults() {
        let org = Org::from_json(
            r#"{"api_key": "k", "users": [{"_id": "u1", "username": "a", "email": "a@x"}],
                "groups": [{"id": "g1", "name": "g"}], "memberships": {"g1": ["u1"]}}"#,
        )
        .unwrap();
        let u = &org.users[0];
        assert_eq!(u.state, UserState::Activated);
        assert!(u.activated && !u.suspended && u.manager.is_none());
        assert_eq!(org.groups[0].membership_method, MembershipMethod::Static);
        assert_eq!(org.members("g1"), BTreeSet::from(["u1".to_owned()]));
    }

    #[test]
    fn users_serialize_with_jumpcloud_names() {
        let mut u = User::new("a", "a@x");
        u.job_title = "Engineer".into();
        u.employee_type = "Contractor".into();
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v["_id"], u.id.as_str());
        assert_eq!(v["jobTitle"], "Engineer");
        assert_eq!(v["employeeType"], "Contractor");
        assert_eq!(v["state"], "ACTIVATED");
        assert!(v.get("manager").is_none());
        let g = serde_json::to_value(Group::new("g").with_method(MembershipMethod::NotSet)).unwrap();
        assert_eq!(g["membershipMethod"], "NOTSET");
    }

    #[test]
    fn validation_rejects_inconsistent_seeds() {
        let mut org = Org::new("k");
        let a = org.add_user(User::new("a", "a@x"));
        org.add_user(User::new("b", "A@X"));
        assert!(org.validate().unwrap_err().to_string().contains("duplicate email"));

        let mut org = Org::new("k");
        org.add_user(User::new("a", "a@x"));
        org.add_member("nope", &a);
        assert!(org.validate().unwrap_err().to_string().contains("unknown group"));

        let mut org = Org::new("k");
        let mut u = User::new("a", "a@x");
        u.manager = Some("missing".into());
        org.add_user(u);
        assert!(org.validate().unwrap_err().to_string().contains("unknown manager"));
    }

    #[test]
    fn state_changes_keep_flags_consistent() {
        let u = User::new("a", "a@x").with_state(UserState::Suspended);
        assert!(u.suspended && u.activated);
        let u = u.with_state(UserState::Staged);
        assert!(!u.suspended && !u.activated);
    }
}
