//! The policy store in memory, with the DynamoDB adapter's contract: versions numbered from 1 and
//! never changed, the applied one moved only from the version the change was planned against
//! (`Conflict` otherwise), one audit record per change, stored with it.

use crate::{
    domain::{
        model::AuditRecord,
        policy::{document_sha256, parse_policy},
    },
    ports::{AppliedPolicy, PolicyChange, PolicyStore, PolicyStoreError, StoreError},
};
use async_trait::async_trait;
use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc, Mutex,
};

#[derive(Default)]
pub struct MemoryPolicyStore {
    state: Mutex<State>,
    /// Reads of the applied version (`applied`), for the cache's tests.
    pub reads: AtomicUsize,
    /// The next read fails (once), as a throttled or unreachable table would.
    pub fail_next_read: AtomicBool,
}

#[derive(Default)]
struct State {
    versions: Vec<AppliedPolicy>,
    current: Option<u64>,
    audit: Vec<AuditRecord>,
}

impl MemoryPolicyStore {
    /// The audit records written, oldest first.
    pub fn audit(&self) -> Vec<AuditRecord> {
        self.state.lock().expect("lock").audit.clone()
    }

    /// Applies a document as the next version (a test's set-up).
    pub async fn apply_document(&self, document: &str, by: &str) -> AppliedPolicy {
        let previous = self.state.lock().expect("lock").current;
        let change = PolicyChange {
            document: document.to_owned(),
            policy: Arc::new(parse_policy(document).expect("a valid policy document")),
            previous,
            by: by.to_owned(),
            at: chrono::Utc::now(),
        };
        self.apply(&change).await.expect("applied")
    }
}

#[async_trait]
impl PolicyStore for MemoryPolicyStore {
    async fn applied(&self) -> Result<Option<AppliedPolicy>, PolicyStoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_next_read.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Aws("injected read failure".into()).into());
        }
        let state = self.state.lock().expect("lock");
        Ok(state.current.and_then(|v| state.versions.get(v as usize - 1).cloned()))
    }

    async fn version(&self, version: u64) -> Result<Option<AppliedPolicy>, PolicyStoreError> {
        let state = self.state.lock().expect("lock");
        Ok(version.checked_sub(1).and_then(|i| state.versions.get(i as usize).cloned()))
    }

    async fn apply(&self, change: &PolicyChange) -> Result<AppliedPolicy, PolicyStoreError> {
        let mut state = self.state.lock().expect("lock");
        if state.current != change.previous {
            return Err(PolicyStoreError::Conflict { current: state.current });
        }
        let version = state.versions.len() as u64 + 1;
        let applied = AppliedPolicy {
            version,
            document: change.document.clone(),
            sha256: document_sha256(&change.document),
            applied_at: change.at,
            applied_by: change.by.clone(),
            policy: change.policy.clone(),
        };
        let record = AuditRecord::policy_applied(change.at, &change.by, version, change.previous, &applied.sha256);
        state.versions.push(applied.clone());
        state.current = Some(version);
        state.audit.push(record);
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::AuditAction;

    const DOC: &str = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n";

    fn change(document: &str, previous: Option<u64>) -> PolicyChange {
        PolicyChange {
            document: document.into(),
            policy: Arc::new(parse_policy(document).unwrap()),
            previous,
            by: "cli:carol".into(),
            at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn versions_count_up_and_stay_as_applied() {
        let store = MemoryPolicyStore::default();
        assert!(store.applied().await.unwrap().is_none());
        let first = store.apply(&change(DOC, None)).await.unwrap();
        assert_eq!((first.version, first.sha256.len()), (1, 64));
        let second_doc = DOC.replace("everyone", "nobody");
        let second = store.apply(&change(&second_doc, Some(1))).await.unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(store.applied().await.unwrap().unwrap().document, second_doc);
        assert_eq!(store.version(1).await.unwrap().unwrap().document, DOC, "version 1 unchanged");
        assert!(store.version(0).await.unwrap().is_none() && store.version(3).await.unwrap().is_none());
        let audit = store.audit();
        assert_eq!(audit.len(), 2);
        assert!(audit.iter().all(|r| r.action == AuditAction::PolicyApplied && r.actor == "cli:carol"));
        assert!(audit[1].detail.as_deref().unwrap().starts_with("version 2 (sha256 "), "{audit:?}");
    }

    #[tokio::test]
    async fn a_change_planned_against_an_older_version_conflicts() {
        let store = MemoryPolicyStore::default();
        store.apply(&change(DOC, None)).await.unwrap();
        for previous in [None, Some(2)] {
            match store.apply(&change(DOC, previous)).await {
                Err(PolicyStoreError::Conflict { current }) => assert_eq!(current, Some(1)),
                other => panic!("{previous:?}: {other:?}"),
            }
        }
        assert_eq!(store.audit().len(), 1, "nothing written for a refused change");
        assert!(store.version(2).await.unwrap().is_none());
    }
}
