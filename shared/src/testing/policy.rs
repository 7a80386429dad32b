//! A policy source for domain tests: the applied policy is whatever the test last set.

use crate::{
    domain::policy::parse_policy,
    ports::{AppliedPolicy, PolicySource, PolicyStoreError},
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct FixedPolicy {
    applied: Mutex<Option<Arc<AppliedPolicy>>>,
}

impl FixedPolicy {
    /// Applies `document` (which must parse) as the next version.
    pub fn apply(&self, document: &str, at: DateTime<Utc>) -> Arc<AppliedPolicy> {
        let policy = parse_policy(document).expect("test policy parses");
        let mut applied = self.applied.lock().expect("lock");
        let version = applied.as_ref().map_or(1, |a| a.version + 1);
        let next = Arc::new(AppliedPolicy {
            version,
            document: document.to_owned(),
            sha256: format!("test-{version}"),
            applied_at: at,
            applied_by: "test".into(),
            policy: Arc::new(policy),
        });
        *applied = Some(next.clone());
        next
    }
}

#[async_trait]
impl PolicySource for FixedPolicy {
    async fn current(&self) -> Result<Option<Arc<AppliedPolicy>>, PolicyStoreError> {
        Ok(self.applied.lock().expect("lock").clone())
    }
}
