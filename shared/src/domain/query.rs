//! Reading grants: the filters of `GET /grants` and `jitctl grants list`, in the forms a request
//! may use (email, username or id; group name or id), resolved to ids live in JumpCloud.

use crate::{
    domain::grant::{not_found_as, resolve_integration, GrantError},
    domain::model::{is_object_id, GrantFilter, GrantStatus, Name},
    ports::{DirectoryProvider, IntegrationCatalog},
};

/// A listing's filters as the caller gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantQuery {
    pub status: Option<GrantStatus>,
    /// Email, username or JumpCloud id.
    pub user: Option<Name>,
    /// Name or JumpCloud id.
    pub group: Option<Name>,
    pub integration: Option<Name>,
}

/// Turns a query into a store filter. Ids are taken as given (no JumpCloud call); names are looked
/// up in the named integration (or the only one).
pub async fn resolve_filter(
    catalog: &dyn IntegrationCatalog,
    directories: &dyn DirectoryProvider,
    query: &GrantQuery,
) -> Result<GrantFilter, GrantError> {
    let mut filter = GrantFilter {
        status: query.status,
        user_id: query.user.as_ref().map(Name::to_string),
        group_id: query.group.as_ref().map(Name::to_string),
        integration: query.integration.as_ref().map(Name::to_string),
    };
    // Ids are taken as given; only names need JumpCloud (and so an integration).
    let user_name = query.user.as_ref().map(Name::as_str).filter(|k| !is_object_id(k));
    let group_name = query.group.as_ref().map(Name::as_str).filter(|k| !is_object_id(k));
    if user_name.is_none() && group_name.is_none() {
        return Ok(filter);
    }
    let integration = resolve_integration(catalog, query.integration.as_ref().map(Name::as_str)).await?;
    let directory = directories.directory(&integration);
    if let Some(name) = user_name {
        let user = directory
            .find_user(name)
            .await
            .map_err(|e| not_found_as(e, || GrantError::UserNotFound(name.to_owned())))?;
        filter.user_id = Some(user.id);
    }
    if let Some(name) = group_name {
        let group = directory
            .find_group(name)
            .await
            .map_err(|e| not_found_as(e, || GrantError::GroupNotFound(name.to_owned())))?;
        filter.group_id = Some(group.id);
    }
    Ok(filter)
}
