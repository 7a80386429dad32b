//! Item keys. One place, so that the adapter and later features agree on them.

pub fn users(integration: &str) -> String {
    format!("DIR#{integration}#USER")
}
pub fn groups(integration: &str) -> String {
    format!("DIR#{integration}#GROUP")
}
pub fn memberships(integration: &str) -> String {
    format!("DIR#{integration}#MEMBER")
}
pub fn membership_sort(group_id: &str, user_id: &str) -> String {
    format!("{group_id}#{user_id}")
}
pub fn user_by_email(integration: &str, email: &str) -> String {
    format!("EMAIL#{integration}#{email}")
}
pub fn group_by_name(integration: &str, name: &str) -> String {
    format!("GROUPNAME#{integration}#{name}")
}
pub fn integration(integration: &str) -> String {
    format!("INTEGRATION#{integration}")
}
pub const SYNC_STATUS: &str = "SYNC";
