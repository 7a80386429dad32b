//! The identity directory (one JumpCloud organization) as the domain sees it: users, groups and
//! direct memberships, in the domain's own terms. The adapter converts its wire shapes into these.

use crate::domain::model::{MembershipMethod, UserState};
use async_trait::async_trait;
use std::time::Duration;

/// A user as the directory reports it, before the product's rules (canonical email, manager
/// resolution, suspended users left out) turn it into a stored `DirectoryUser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub location: Option<String>,
    pub employee_type: Option<String>,
    /// The directory's own manager relation: a user id.
    pub manager: Option<String>,
    pub state: UserState,
    /// Custom attributes, in the directory's order.
    pub attributes: Vec<UserAttribute>,
}

impl SourceUser {
    pub fn is_suspended(&self) -> bool {
        self.state == UserState::Suspended
    }
    /// The first attribute of that name with a non-empty value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|a| a.name == name).and_then(|a| a.value.as_deref()).filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAttribute {
    pub name: String,
    pub value: Option<String>,
}

/// A user group as the directory reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceGroup {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub membership_method: MembershipMethod,
}

/// What an add answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// The user already was a direct member. `ambiguous`: an earlier attempt of this same call
    /// may have been applied before it failed (timeout or 5xx after sending), so the membership
    /// may be our own add.
    AlreadyMember {
        ambiguous: bool,
    },
}

/// What a remove answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    /// The user was not a member (any more).
    NotMember,
}

/// Errors of the directory. None carries a credential: messages hold statuses, paths and the
/// directory's own `message` only. The directory is JumpCloud, and the messages say so: they
/// reach operators as they are.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    #[error("JumpCloud: {what} not found")]
    NotFound { what: String },
    #[error("JumpCloud refused the API key (HTTP {status}); check the integration's secret")]
    Unauthorized { status: u16 },
    #[error("JumpCloud rate limit still hit after retrying")]
    RateLimited { retry_after: Option<Duration> },
    #[error("JumpCloud unavailable: {reason}")]
    Transient { reason: String },
    #[error("JumpCloud rejected the request (HTTP {status}): {message}")]
    Invalid { status: u16, message: String },
    #[error("JumpCloud answered something unexpected: {reason}")]
    Decode { reason: String },
    #[error("JumpCloud credentials unavailable: {reason}")]
    Credentials { reason: String },
}

impl DirectoryError {
    /// Worth another attempt (within a retry budget, or by the next sweep).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A failed add, with what the adapter knows of its effect.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{error}")]
pub struct AddError {
    pub error: DirectoryError,
    /// An attempt may have been applied before the call failed (a timeout or a 5xx after the
    /// request was sent): the membership may exist now.
    pub maybe_applied: bool,
}

/// One organization's directory.
/// `list_users_from` over a whole listing: in id order from position `skip`, `limit` of them or
/// all to the end.
pub fn users_from(mut users: Vec<SourceUser>, skip: u64, limit: Option<u64>) -> Vec<SourceUser> {
    users.sort_by(|a, b| a.id.cmp(&b.id));
    users.into_iter().skip(skip as usize).take(limit.map_or(usize::MAX, |l| l as usize)).collect()
}

#[async_trait]
pub trait Directory: Send + Sync {
    async fn list_users(&self) -> Result<Vec<SourceUser>, DirectoryError>;
    async fn list_groups(&self) -> Result<Vec<SourceGroup>, DirectoryError>;
    /// Users in JumpCloud's id order from position `skip`: `limit` of them, or all to the end
    /// (`None`): a fanned-out sync's users part.
    async fn list_users_from(&self, skip: u64, limit: Option<u64>) -> Result<Vec<SourceUser>, DirectoryError> {
        Ok(users_from(self.list_users().await?, skip, limit))
    }
    /// How many users the organization has.
    async fn count_users(&self) -> Result<u64, DirectoryError> {
        Ok(self.list_users().await?.len() as u64)
    }
    /// Ids of the group's direct user members.
    async fn list_group_members(&self, group_id: &str) -> Result<Vec<String>, DirectoryError>;
    /// Ids of the groups the user is a direct member of.
    async fn groups_of_user(&self, user_id: &str) -> Result<Vec<String>, DirectoryError>;
    /// By email, username or id.
    async fn find_user(&self, key: &str) -> Result<SourceUser, DirectoryError>;
    /// By name or id.
    async fn find_group(&self, key: &str) -> Result<SourceGroup, DirectoryError>;
    /// By id only (no name lookup after a miss).
    async fn group_by_id(&self, id: &str) -> Result<SourceGroup, DirectoryError> {
        match self.find_group(id).await {
            Ok(group) if group.id == id => Ok(group),
            Ok(_) => Err(DirectoryError::NotFound { what: format!("group {id:?}") }),
            Err(e) => Err(e),
        }
    }
    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<AddOutcome, AddError>;
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<RemoveOutcome, DirectoryError>;
}
