//! The policy the request paths decide by ([`PolicySource`]): the applied version read through
//! the [`PolicyStore`] at most once per `ttl` per container (SPEC: a change takes effect within a
//! minute; the default 30 s keeps it well inside). A failed read is not cached: the next request
//! reads again. Concurrent requests of one container wait for one read.

use super::ttl_cache::TtlCache;
use crate::{
    clock::Clock,
    ports::{AppliedPolicy, PolicySource, PolicyStore, PolicyStoreError},
};
use async_trait::async_trait;
use std::sync::Arc;

/// How long a read of the applied policy is used.
pub const DEFAULT_POLICY_TTL: chrono::Duration = chrono::Duration::seconds(30);

pub struct PolicyCache {
    store: Arc<dyn PolicyStore>,
    cached: TtlCache<Option<Arc<AppliedPolicy>>>,
}

impl PolicyCache {
    pub fn new(store: Arc<dyn PolicyStore>, clock: Arc<dyn Clock>, ttl: chrono::Duration) -> Self {
        Self { store, cached: TtlCache::new(ttl, clock) }
    }

    pub fn with_default_ttl(store: Arc<dyn PolicyStore>, clock: Arc<dyn Clock>) -> Self {
        Self::new(store, clock, DEFAULT_POLICY_TTL)
    }
}

#[async_trait]
impl PolicySource for PolicyCache {
    async fn current(&self) -> Result<Option<Arc<AppliedPolicy>>, PolicyStoreError> {
        self.cached.get_or_read(|| async { Ok(self.store.applied().await?.map(Arc::new)) }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::ManualClock, testing::MemoryPolicyStore};
    use chrono::{TimeZone, Utc};
    use std::sync::atomic::Ordering;

    const V1: &str = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: everyone\n";
    const V2: &str = "version: 1\nrules:\n  - groups: [\"prod-*\"]\n    eligible: nobody\n";

    fn cache() -> (Arc<MemoryPolicyStore>, Arc<ManualClock>, PolicyCache) {
        let store = Arc::new(MemoryPolicyStore::default());
        let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()));
        let cache = PolicyCache::with_default_ttl(store.clone(), clock.clone());
        (store, clock, cache)
    }

    #[tokio::test]
    async fn a_change_is_seen_after_the_ttl_and_not_before() {
        let (store, clock, cache) = cache();
        store.apply_document(V1, "cli:carol").await;
        assert_eq!(cache.current().await.unwrap().unwrap().version, 1);
        store.apply_document(V2, "cli:carol").await;
        clock.advance(chrono::Duration::seconds(29));
        assert_eq!(cache.current().await.unwrap().unwrap().version, 1, "within the ttl: the cached version");
        assert_eq!(store.reads.load(Ordering::SeqCst), 1, "one read per ttl");
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(cache.current().await.unwrap().unwrap().version, 2, "ttl over: read again");
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_policy_is_cached_too_and_errors_are_not() {
        let (store, clock, cache) = cache();
        assert!(cache.current().await.unwrap().is_none());
        store.apply_document(V1, "cli:carol").await;
        assert!(cache.current().await.unwrap().is_none(), "none applied at the last read");
        clock.advance(DEFAULT_POLICY_TTL);
        store.fail_next_read.store(true, Ordering::SeqCst);
        assert!(cache.current().await.is_err());
        assert_eq!(cache.current().await.unwrap().unwrap().version, 1, "the failure was not cached");
        assert_eq!(store.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_clock_set_back_reads_again() {
        let (store, clock, cache) = cache();
        store.apply_document(V1, "cli:carol").await;
        cache.current().await.unwrap();
        clock.advance(chrono::Duration::seconds(-5));
        cache.current().await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }
}
