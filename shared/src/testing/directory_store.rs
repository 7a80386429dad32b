//! An in-memory store for domain tests: same contract as DynamoDB, counts the writes it takes.

use crate::ports::StoreError;
use crate::{
    domain::model::{DirectoryChanges, DirectoryDigest, DirectoryGroup, DirectorySnapshot, DirectoryUser, Membership},
    ports::{DirectoryStore, SyncStatus},
};
use async_trait::async_trait;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};

#[derive(Default)]
pub struct MemoryStore {
    directories: Mutex<HashMap<String, DirectorySnapshot>>,
    statuses: Mutex<HashMap<String, SyncStatus>>,
    item_writes: AtomicUsize,
}

impl MemoryStore {
    /// Directory items put or deleted so far.
    pub fn item_writes(&self) -> usize {
        self.item_writes.load(Ordering::SeqCst)
    }
    pub fn directory(&self, integration: &str) -> DirectorySnapshot {
        self.directories.lock().expect("lock").get(integration).cloned().unwrap_or_default()
    }
}

#[async_trait]
impl DirectoryStore for MemoryStore {
    async fn load_digest(&self, integration: &str) -> Result<DirectoryDigest, StoreError> {
        Ok(DirectoryDigest::of(&self.directory(integration)))
    }

    async fn apply_changes(&self, integration: &str, changes: &DirectoryChanges) -> Result<(), StoreError> {
        let mut dirs = self.directories.lock().expect("lock");
        let dir = dirs.entry(integration.to_owned()).or_default();
        for u in &changes.put_users {
            dir.users.insert(u.id.clone(), u.clone());
        }
        for id in &changes.delete_users {
            dir.users.remove(id);
        }
        for g in &changes.put_groups {
            dir.groups.insert(g.id.clone(), g.clone());
        }
        for id in &changes.delete_groups {
            dir.groups.remove(id);
        }
        dir.memberships.extend(changes.put_memberships.iter().cloned());
        for m in &changes.delete_memberships {
            dir.memberships.remove(m);
        }
        self.item_writes.fetch_add(changes.len(), Ordering::SeqCst);
        Ok(())
    }

    async fn list_groups(&self, integration: &str) -> Result<Vec<crate::domain::model::DirectoryGroup>, StoreError> {
        let mut groups: Vec<_> = self.directory(integration).groups.into_values().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    async fn put_sync_status(&self, status: &SyncStatus) -> Result<(), StoreError> {
        self.statuses.lock().expect("lock").insert(status.integration.clone(), status.clone());
        Ok(())
    }

    async fn user_by_email(&self, integration: &str, email: &str) -> Result<Option<DirectoryUser>, StoreError> {
        Ok(self.directory(integration).users.into_values().find(|u| u.email == email))
    }

    async fn group_by_name(&self, integration: &str, name: &str) -> Result<Option<DirectoryGroup>, StoreError> {
        Ok(self.directory(integration).groups.into_values().find(|g| g.name == name))
    }

    async fn is_member(&self, integration: &str, group_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let membership = Membership { group_id: group_id.into(), user_id: user_id.into() };
        Ok(self.directory(integration).memberships.contains(&membership))
    }

    async fn sync_status(&self, integration: &str) -> Result<Option<SyncStatus>, StoreError> {
        Ok(self.statuses.lock().expect("lock").get(integration).cloned())
    }
}
