//! JumpCloud's wire shapes (v1 `systemuser`, v2 `UserGroup`, `GraphConnection`), only the fields we
//! use, and their conversion into the directory port's types.

use crate::{
    domain::model::{MembershipMethod, UserState},
    ports::{SourceGroup, SourceUser, UserAttribute},
};
use serde::{Deserialize, Serialize};

/// The `fields` we ask `/api/systemusers` for: exactly what the directory stores.
pub const USER_FIELDS: &str =
    "_id username email firstname lastname jobTitle department location employeeType manager state suspended attributes";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JumpCloudUser {
    /// JumpCloud sends `_id` and `id` alike; `id` is ignored.
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub email: String,
    #[serde(default, rename = "firstname")]
    pub first_name: Option<String>,
    #[serde(default, rename = "lastname")]
    pub last_name: Option<String>,
    #[serde(default)]
    pub job_title: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub employee_type: Option<String>,
    /// The built-in manager relation: a user id.
    #[serde(default)]
    pub manager: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub attributes: Vec<CustomAttribute>,
}

impl From<JumpCloudUser> for SourceUser {
    fn from(user: JumpCloudUser) -> Self {
        // `suspended` and `state` can disagree for a moment: either one suspends.
        let state = if user.suspended || user.state.as_deref() == Some("SUSPENDED") {
            UserState::Suspended
        } else if user.state.as_deref() == Some("STAGED") {
            UserState::Staged
        } else {
            UserState::Activated
        };
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            job_title: user.job_title,
            department: user.department,
            location: user.location,
            employee_type: user.employee_type,
            manager: user.manager,
            state,
            attributes: user.attributes.into_iter().map(|a| UserAttribute { name: a.name, value: a.value }).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CustomAttribute {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JumpCloudGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub membership_method: Option<String>,
}

impl From<JumpCloudGroup> for SourceGroup {
    fn from(group: JumpCloudGroup) -> Self {
        let membership_method = match group.membership_method.as_deref() {
            Some("STATIC") => MembershipMethod::Static,
            Some("DYNAMIC_REVIEW_REQUIRED") => MembershipMethod::DynamicReviewRequired,
            Some("DYNAMIC_AUTOMATED") => MembershipMethod::DynamicAutomated,
            // Absent or unknown.
            _ => MembershipMethod::Notset,
        };
        Self { id: group.id, name: group.name, description: group.description, membership_method }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserList {
    #[serde(rename = "totalCount")]
    pub total_count: Option<u64>,
    #[serde(default)]
    pub results: Vec<JumpCloudUser>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GraphConnection {
    pub to: GraphObject,
}

/// `GraphObjectWithPaths` (`graph_userMemberOf`): a group and the paths by which the user reaches it.
#[derive(Debug, Deserialize)]
pub(crate) struct GraphObjectWithPaths {
    pub id: String,
    /// Absent or `null` (as in the document's own example) reads as no path.
    #[serde(default)]
    pub paths: Option<Vec<Vec<serde_json::Value>>>,
}

impl GraphObjectWithPaths {
    /// `memberof` also lists the groups a user reaches through other groups: a direct membership
    /// is a path of one edge.
    pub fn is_direct(&self) -> bool {
        self.paths.iter().flatten().any(|path| path.len() == 1)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct GraphObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct MemberOperation<'a> {
    pub op: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub id: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: serde_json::Value) -> SourceUser {
        serde_json::from_value::<JumpCloudUser>(json).unwrap().into()
    }

    #[test]
    fn a_group_is_a_direct_parent_only_by_a_path_of_one_edge() {
        let edge = |from: &str, to: &str| serde_json::json!({"from": {"id": from, "type": "user"}, "to": {"id": to, "type": "user_group"}});
        let read = |json| serde_json::from_value::<GraphObjectWithPaths>(json).unwrap();
        let direct = read(serde_json::json!({"id": "g1", "type": "user_group", "paths": [[edge("u", "g1")]]}));
        assert!(direct.is_direct());
        let nested =
            read(serde_json::json!({"id": "g2", "type": null, "paths": [[edge("u", "g1"), edge("g1", "g2")]]}));
        assert!(!nested.is_direct());
        let both =
            read(serde_json::json!({"id": "g3", "paths": [[edge("u", "g1"), edge("g1", "g3")], [edge("u", "g3")]]}));
        assert!(both.is_direct());
        assert!(!read(serde_json::json!({"id": "g4", "paths": null})).is_direct());
        assert!(!read(serde_json::json!({"id": "g5"})).is_direct());
    }

    #[test]
    fn user_state_comes_from_suspended_or_state() {
        let base = || serde_json::json!({"_id": "u1", "email": "a@corp.com", "username": "a"});
        assert_eq!(user(base()).state, UserState::Activated);
        let mut staged = base();
        staged["state"] = "STAGED".into();
        assert_eq!(user(staged).state, UserState::Staged);
        let mut by_state = base();
        by_state["state"] = "SUSPENDED".into();
        assert_eq!(user(by_state).state, UserState::Suspended);
        let mut by_flag = base();
        by_flag["state"] = "ACTIVATED".into();
        by_flag["suspended"] = true.into();
        assert!(user(by_flag).is_suspended());
    }

    #[test]
    fn attributes_keep_their_order_and_null_is_none() {
        let u = user(serde_json::json!({"_id": "u1", "attributes": null}));
        assert!(u.attributes.is_empty());
        let u = user(serde_json::json!({"_id": "u1", "attributes": [
            {"name": "manager", "value": ""}, {"name": "manager", "value": "b@corp.com"}, {"name": "x"}]}));
        assert_eq!(u.attributes.len(), 3);
        // The first of that name counts, and an empty value is no value.
        assert_eq!(u.attribute("manager"), None);
        assert_eq!(u.attribute("x"), None);
    }

    #[test]
    fn membership_methods_map_and_unknown_is_notset() {
        let group = |method: Option<&str>| -> SourceGroup {
            let mut json = serde_json::json!({"id": "g1", "name": "admins"});
            if let Some(m) = method {
                json["membershipMethod"] = m.into();
            }
            serde_json::from_value::<JumpCloudGroup>(json).unwrap().into()
        };
        assert_eq!(group(Some("STATIC")).membership_method, MembershipMethod::Static);
        assert_eq!(group(Some("DYNAMIC_AUTOMATED")).membership_method, MembershipMethod::DynamicAutomated);
        assert_eq!(group(Some("DYNAMIC_REVIEW_REQUIRED")).membership_method, MembershipMethod::DynamicReviewRequired);
        assert_eq!(group(Some("SOMETHING_NEW")).membership_method, MembershipMethod::Notset);
        assert_eq!(group(None).membership_method, MembershipMethod::Notset);
    }
}
