//! Reading grants: the filters of `GET /grants` and `jitctl grants list`, in the forms a request
//! may use (email, username or id; group name or id), resolved to ids live in JumpCloud.

use crate::{
    domain::grant::{resolve_integration, GrantError},
    grants::{GrantFilter, GrantStatus},
    jumpcloud::{is_object_id, JumpCloudError},
    ports::{DirectoryProvider, IntegrationCatalog},
};

/// A listing's filters as the caller gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantQuery {
    pub status: Option<GrantStatus>,
    /// Email, username or JumpCloud id.
    pub user: Option<String>,
    /// Name or JumpCloud id.
    pub group: Option<String>,
    pub integration: Option<String>,
}

/// Turns a query into a store filter. Ids are taken as given (no JumpCloud call); names are looked
/// up in the named integration (or the only one).
pub async fn resolve_filter(
    catalog: &dyn IntegrationCatalog,
    directories: &dyn DirectoryProvider,
    query: &GrantQuery,
) -> Result<GrantFilter, GrantError> {
    let mut filter =
        GrantFilter { status: query.status, user_id: None, group_id: None, integration: query.integration.clone() };
    let by_name = |key: &Option<String>| key.as_ref().filter(|k| !is_object_id(k)).cloned();
    let (user_name, group_name) = (by_name(&query.user), by_name(&query.group));
    let directory = if user_name.is_some() || group_name.is_some() {
        let integration = resolve_integration(catalog, query.integration.as_deref()).await?;
        Some(directories.directory(&integration))
    } else {
        None
    };
    filter.user_id = match (&query.user, &user_name, &directory) {
        (_, Some(name), Some(directory)) => {
            Some(directory.find_user(name).await.map(|u| u.id).map_err(|e| match e {
                JumpCloudError::NotFound { .. } => GrantError::UserNotFound(name.clone()),
                other => GrantError::JumpCloud(other),
            })?)
        }
        (id, _, _) => id.clone(),
    };
    filter.group_id = match (&query.group, &group_name, &directory) {
        (_, Some(name), Some(directory)) => {
            Some(directory.find_group(name).await.map(|g| g.id).map_err(|e| match e {
                JumpCloudError::NotFound { .. } => GrantError::GroupNotFound(name.clone()),
                other => GrantError::JumpCloud(other),
            })?)
        }
        (id, _, _) => id.clone(),
    };
    Ok(filter)
}
