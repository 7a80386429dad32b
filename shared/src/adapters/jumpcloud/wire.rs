//! JumpCloud's wire shapes (v1 `systemuser`, v2 `UserGroup`, `GraphConnection`), only the fields we use.

use serde::{Deserialize, Serialize};

/// The `fields` we ask `/api/systemusers` for: exactly what the directory stores.
pub const USER_FIELDS: &str =
    "_id username email firstname lastname jobTitle department location employeeType manager state suspended attributes";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JumpCloudUser {
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

impl JumpCloudUser {
    pub fn is_suspended(&self) -> bool {
        self.suspended || self.state.as_deref() == Some("SUSPENDED")
    }
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|a| a.name == name).and_then(|a| a.value.as_deref()).filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomAttribute {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JumpCloudGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub membership_method: Option<String>,
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
