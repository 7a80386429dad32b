//! In-memory doubles of the ports, for domain tests (here and in later crates, behind the
//! `testing` feature). Integration tests use the real adapters instead.

use crate::{
    adapters::jumpcloud::{JumpCloudError, JumpCloudGroup, JumpCloudUser},
    credentials::{ApiKey, Credentials},
    ports::{
        AddOutcome, Directory, DirectoryProvider, Discovered, Integration, IntegrationCatalog, RemoveOutcome,
        SecretsError,
    },
};
use async_trait::async_trait;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

/// A JumpCloud organization in memory. `fail_with` makes every call fail (JumpCloud down).
#[derive(Default)]
pub struct FakeDirectory {
    pub users: Mutex<Vec<JumpCloudUser>>,
    pub groups: Mutex<Vec<JumpCloudGroup>>,
    pub members: Mutex<BTreeMap<String, BTreeSet<String>>>,
    pub fail_with: Mutex<Option<JumpCloudError>>,
}

impl FakeDirectory {
    pub fn user(id: &str, email: &str) -> JumpCloudUser {
        JumpCloudUser {
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
            state: Some("ACTIVATED".into()),
            suspended: false,
            attributes: vec![],
        }
    }

    pub fn group(id: &str, name: &str) -> JumpCloudGroup {
        JumpCloudGroup { id: id.into(), name: name.into(), description: None, membership_method: Some("STATIC".into()) }
    }

    pub fn with(users: Vec<JumpCloudUser>, groups: Vec<JumpCloudGroup>, members: &[(&str, &str)]) -> Self {
        let dir = Self::default();
        *dir.users.lock().unwrap() = users;
        *dir.groups.lock().unwrap() = groups;
        for (g, u) in members {
            dir.members.lock().unwrap().entry(g.to_string()).or_default().insert(u.to_string());
        }
        dir
    }

    fn check(&self) -> Result<(), JumpCloudError> {
        match self.fail_with.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Directory for FakeDirectory {
    async fn list_users(&self) -> Result<Vec<JumpCloudUser>, JumpCloudError> {
        self.check()?;
        Ok(self.users.lock().unwrap().clone())
    }
    async fn list_groups(&self) -> Result<Vec<JumpCloudGroup>, JumpCloudError> {
        self.check()?;
        Ok(self.groups.lock().unwrap().clone())
    }
    async fn list_group_members(&self, group_id: &str) -> Result<Vec<String>, JumpCloudError> {
        self.check()?;
        Ok(self.members.lock().unwrap().get(group_id).map(|m| m.iter().cloned().collect()).unwrap_or_default())
    }
    async fn find_user(&self, key: &str) -> Result<JumpCloudUser, JumpCloudError> {
        self.check()?;
        let key_lower = key.to_lowercase();
        self.users
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.id == key || u.username == key || u.email.to_lowercase() == key_lower)
            .cloned()
            .ok_or(JumpCloudError::NotFound { what: format!("user {key:?}") })
    }
    async fn find_group(&self, key: &str) -> Result<JumpCloudGroup, JumpCloudError> {
        self.check()?;
        self.groups
            .lock()
            .unwrap()
            .iter()
            .find(|g| g.id == key || g.name == key)
            .cloned()
            .ok_or(JumpCloudError::NotFound { what: format!("group {key:?}") })
    }
    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<AddOutcome, JumpCloudError> {
        self.check()?;
        let added = self.members.lock().unwrap().entry(group_id.into()).or_default().insert(user_id.into());
        Ok(if added { AddOutcome::Added } else { AddOutcome::AlreadyMember { ambiguous: false } })
    }
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<RemoveOutcome, JumpCloudError> {
        self.check()?;
        let removed = self.members.lock().unwrap().get_mut(group_id).is_some_and(|m| m.remove(user_id));
        Ok(if removed { RemoveOutcome::Removed } else { RemoveOutcome::NotMember })
    }
}

/// Integrations in memory, each with its fake directory.
#[derive(Default)]
pub struct FakeIntegrations {
    pub discovered: Mutex<Discovered>,
    pub directories: Mutex<HashMap<String, Arc<FakeDirectory>>>,
}

impl FakeIntegrations {
    pub fn add(&self, name: &str, directory: Arc<FakeDirectory>) {
        self.discovered.lock().unwrap().integrations.push(Integration {
            name: name.into(),
            secret_id: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}"),
            credentials: Credentials { token: ApiKey::new(format!("key-of-{name}")), org_id: None },
        });
        self.directories.lock().unwrap().insert(name.into(), directory);
    }
}

#[async_trait]
impl IntegrationCatalog for FakeIntegrations {
    async fn list(&self) -> Result<Discovered, SecretsError> {
        Ok(self.discovered.lock().unwrap().clone())
    }
    async fn refresh(&self, name: &str) -> Result<Integration, SecretsError> {
        self.discovered
            .lock()
            .unwrap()
            .integrations
            .iter()
            .find(|i| i.name == name)
            .cloned()
            .ok_or_else(|| SecretsError::UnknownIntegration(name.into()))
    }
}

impl DirectoryProvider for FakeIntegrations {
    fn directory(&self, integration: &Integration) -> Arc<dyn Directory> {
        self.directories.lock().unwrap()[&integration.name].clone()
    }
}
