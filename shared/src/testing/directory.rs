//! The one directory double ([`FakeDirectory`]: a JumpCloud organization in memory, whose calls
//! can be made to fail) and the integrations that hand it out ([`FakeIntegrations`]).

use crate::{
    credentials::{ApiKey, Credentials},
    domain::model::{MembershipMethod, UserState},
    ports::{
        AddError, AddOutcome, Directory, DirectoryError, DirectoryEvent, DirectoryInsights, DirectoryProvider,
        Discovered, EventBatch, Integration, IntegrationCatalog, InvalidIntegration, RemoveOutcome, SecretsError,
        SourceGroup, SourceUser,
    },
};
use async_trait::async_trait;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

/// How a member operation fails.
#[derive(Debug, Clone)]
pub struct Fault {
    pub error: DirectoryError,
    /// JumpCloud applied the change before the failure reached us (a timeout after sending).
    pub applied: bool,
}

/// A JumpCloud organization in memory.
/// - `fail_with` makes every call fail (JumpCloud down);
/// - `add_fault` / `remove_fault` make only adds / removes fail (lookups keep working);
/// - `ambiguous_409` reports a 409 as `AlreadyMember { ambiguous: true }`;
/// - `hold_members_of` holds one group's member listing until the test lets it go;
///   `member_reads_begun` / `member_reads_answered` count member listings;
/// - `hold_users_from` holds the listing of users from one position (`list_users_from`) likewise;
///   `users_reads_begun` / `users_reads_answered` count those listings;
/// - `adds` / `removes` count the member operations sent.
///
/// Lookups and member operations yield first, so that concurrent tests interleave.
#[derive(Default)]
pub struct FakeDirectory {
    pub users: Mutex<Vec<SourceUser>>,
    pub groups: Mutex<Vec<SourceGroup>>,
    pub members: Mutex<BTreeMap<String, BTreeSet<String>>>,
    pub fail_with: Mutex<Option<DirectoryError>>,
    pub add_fault: Mutex<Option<Fault>>,
    pub remove_fault: Mutex<Option<Fault>>,
    pub ambiguous_409: AtomicBool,
    pub adds: AtomicUsize,
    pub removes: AtomicUsize,
    /// Its Directory Insights events (as `DirectoryInsights` answers them: from a time on, in order).
    pub events: Mutex<Vec<DirectoryEvent>>,
    /// Listing this group's members waits until the semaphore gives a permit (a slow group).
    pub hold_members_of: Mutex<Option<(String, std::sync::Arc<tokio::sync::Semaphore>)>>,
    /// Listing users from this position waits until the semaphore gives a permit (a slow page).
    pub hold_users_from: Mutex<Option<(u64, std::sync::Arc<tokio::sync::Semaphore>)>>,
    /// Listings of users begun and answered (`list_users_from`): one begun and not answered is
    /// in flight, or was left unpolled by its caller.
    pub users_reads_begun: AtomicUsize,
    pub users_reads_answered: AtomicUsize,
    /// Listings of a group's members begun and answered (`list_group_members`), likewise.
    pub member_reads_begun: AtomicUsize,
    pub member_reads_answered: AtomicUsize,
}

impl FakeDirectory {
    pub fn user(id: &str, email: &str) -> SourceUser {
        SourceUser {
            id: id.into(),
            username: email.split('@').next().unwrap_or(id).into(),
            email: email.into(),
            first_name: Some("Given".into()),
            last_name: Some("Family".into()),
            job_title: None,
            department: Some("Engineering".into()),
            location: None,
            employee_type: None,
            manager: None,
            state: UserState::Activated,
            attributes: vec![],
        }
    }

    pub fn group(id: &str, name: &str) -> SourceGroup {
        SourceGroup { id: id.into(), name: name.into(), description: None, membership_method: MembershipMethod::Static }
    }

    pub fn with(users: Vec<SourceUser>, groups: Vec<SourceGroup>, members: &[(&str, &str)]) -> Self {
        let dir = Self::default();
        *dir.users.lock().unwrap() = users;
        *dir.groups.lock().unwrap() = groups;
        for (g, u) in members {
            dir.set_member(g, u);
        }
        dir
    }

    pub fn is_member(&self, group_id: &str, user_id: &str) -> bool {
        self.members.lock().unwrap().get(group_id).is_some_and(|m| m.contains(user_id))
    }

    /// Changes a membership behind the product's back; true when it changed.
    pub fn set_member(&self, group_id: &str, user_id: &str) -> bool {
        self.members.lock().unwrap().entry(group_id.into()).or_default().insert(user_id.into())
    }

    pub fn unset_member(&self, group_id: &str, user_id: &str) -> bool {
        self.members.lock().unwrap().get_mut(group_id).is_some_and(|m| m.remove(user_id))
    }

    /// Member operations (adds plus removes) sent so far.
    pub fn member_calls(&self) -> usize {
        self.adds.load(Ordering::SeqCst) + self.removes.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), DirectoryError> {
        match self.fail_with.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Directory for FakeDirectory {
    async fn list_users(&self) -> Result<Vec<SourceUser>, DirectoryError> {
        self.check()?;
        Ok(self.users.lock().unwrap().clone())
    }
    async fn list_users_from(&self, skip: u64, limit: Option<u64>) -> Result<Vec<SourceUser>, DirectoryError> {
        self.users_reads_begun.fetch_add(1, Ordering::SeqCst);
        // In flight for a moment, as a request is.
        tokio::task::yield_now().await;
        let held = self.hold_users_from.lock().unwrap().clone().filter(|(at, _)| *at == skip);
        if let Some((_, gate)) = held {
            let _passed = gate.acquire().await.expect("the gate is never closed");
        }
        let users = crate::ports::users_from(self.list_users().await?, skip, limit);
        self.users_reads_answered.fetch_add(1, Ordering::SeqCst);
        Ok(users)
    }
    async fn list_groups(&self) -> Result<Vec<SourceGroup>, DirectoryError> {
        self.check()?;
        Ok(self.groups.lock().unwrap().clone())
    }
    async fn list_group_members(&self, group_id: &str) -> Result<Vec<String>, DirectoryError> {
        self.member_reads_begun.fetch_add(1, Ordering::SeqCst);
        // In flight for a moment, as a request is.
        tokio::task::yield_now().await;
        let held = self.hold_members_of.lock().unwrap().clone().filter(|(g, _)| g == group_id);
        if let Some((_, gate)) = held {
            let _passed = gate.acquire().await.expect("the gate is never closed");
        }
        self.check()?;
        let members =
            self.members.lock().unwrap().get(group_id).map(|m| m.iter().cloned().collect()).unwrap_or_default();
        self.member_reads_answered.fetch_add(1, Ordering::SeqCst);
        Ok(members)
    }
    async fn groups_of_user(&self, user_id: &str) -> Result<Vec<String>, DirectoryError> {
        self.check()?;
        let members = self.members.lock().unwrap();
        Ok(members.iter().filter(|(_, m)| m.contains(user_id)).map(|(g, _)| g.clone()).collect())
    }
    async fn find_user(&self, key: &str) -> Result<SourceUser, DirectoryError> {
        tokio::task::yield_now().await;
        self.check()?;
        let key_lower = key.to_lowercase();
        self.users
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.id == key || u.username == key || u.email.to_lowercase() == key_lower)
            .cloned()
            .ok_or(DirectoryError::NotFound { what: format!("user {key:?}") })
    }
    async fn find_group(&self, key: &str) -> Result<SourceGroup, DirectoryError> {
        self.check()?;
        self.groups
            .lock()
            .unwrap()
            .iter()
            .find(|g| g.id == key || g.name == key)
            .cloned()
            .ok_or(DirectoryError::NotFound { what: format!("group {key:?}") })
    }
    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<AddOutcome, AddError> {
        tokio::task::yield_now().await;
        self.adds.fetch_add(1, Ordering::SeqCst);
        let fault = self.add_fault.lock().unwrap().clone();
        if let Some(Fault { error, applied }) = fault {
            if applied {
                self.set_member(group_id, user_id);
            }
            // As the adapter reports it: a transient failure may have reached JumpCloud.
            let maybe_applied = applied || error.is_retryable();
            return Err(AddError { error, maybe_applied });
        }
        self.check().map_err(|error| AddError { maybe_applied: error.is_retryable(), error })?;
        let added = self.set_member(group_id, user_id);
        tokio::task::yield_now().await;
        Ok(if added {
            AddOutcome::Added
        } else {
            AddOutcome::AlreadyMember { ambiguous: self.ambiguous_409.load(Ordering::SeqCst) }
        })
    }
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<RemoveOutcome, DirectoryError> {
        tokio::task::yield_now().await;
        self.removes.fetch_add(1, Ordering::SeqCst);
        let fault = self.remove_fault.lock().unwrap().clone();
        if let Some(fault) = fault {
            if fault.applied {
                self.unset_member(group_id, user_id);
            }
            return Err(fault.error);
        }
        self.check()?;
        let removed = self.unset_member(group_id, user_id);
        tokio::task::yield_now().await;
        Ok(if removed { RemoveOutcome::Removed } else { RemoveOutcome::NotMember })
    }
}

/// Integrations in memory, each with its fake directory; `invalid` lists secrets that could not
/// be used.
#[derive(Default)]
pub struct FakeIntegrations {
    pub integrations: Mutex<Vec<(Integration, Arc<FakeDirectory>)>>,
    pub invalid: Mutex<Vec<InvalidIntegration>>,
}

impl FakeIntegrations {
    pub fn add(&self, name: &str, directory: Arc<FakeDirectory>) {
        let integration = Integration {
            name: name.into(),
            secret_id: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}"),
            credentials: Credentials { token: ApiKey::new(format!("key-of-{name}")), org_id: None },
        };
        self.integrations.lock().unwrap().push((integration, directory));
    }
    pub fn remove(&self, name: &str) {
        self.integrations.lock().unwrap().retain(|(i, _)| i.name != name);
    }
}

#[async_trait]
impl IntegrationCatalog for FakeIntegrations {
    async fn list(&self) -> Result<Discovered, SecretsError> {
        let integrations = self.integrations.lock().unwrap().iter().map(|(i, _)| i.clone()).collect();
        Ok(Discovered { integrations, invalid: self.invalid.lock().unwrap().clone() })
    }
    async fn refresh(&self, name: &str) -> Result<Integration, SecretsError> {
        self.integrations
            .lock()
            .unwrap()
            .iter()
            .find(|(i, _)| i.name == name)
            .map(|(i, _)| i.clone())
            .ok_or_else(|| SecretsError::UnknownIntegration(name.into()))
    }
}

impl FakeIntegrations {
    fn fake(&self, integration: &Integration) -> Arc<FakeDirectory> {
        self.integrations
            .lock()
            .unwrap()
            .iter()
            .find(|(i, _)| i.name == integration.name)
            .map(|(_, d)| d.clone())
            .expect("a directory for every listed integration")
    }
}

impl DirectoryProvider for FakeIntegrations {
    fn directory(&self, integration: &Integration) -> Arc<dyn Directory> {
        self.fake(integration)
    }
    fn insights(&self, integration: &Integration) -> Arc<dyn DirectoryInsights> {
        self.fake(integration)
    }
}

#[async_trait]
impl DirectoryInsights for FakeDirectory {
    async fn directory_events(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        max: usize,
    ) -> Result<EventBatch, DirectoryError> {
        self.check()?;
        let mut events: Vec<DirectoryEvent> =
            self.events.lock().unwrap().iter().filter(|e| e.at >= from).cloned().collect();
        events.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        let complete = events.len() <= max;
        events.truncate(max);
        Ok(EventBatch { events, complete, requests: 1 })
    }
}
