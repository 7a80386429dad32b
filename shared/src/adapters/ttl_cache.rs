//! One value read through at most once per `ttl` per container: the integrations' secrets
//! (`secrets_manager.rs` `SecretsManagerCatalog`), the Slack app's secret
//! (`SecretsManagerSlackApp`) and the applied policy (`policy_cache.rs`). A failed read is not
//! cached (the next call reads again); a clock set back before the last read reads again rather
//! than trusting it; concurrent callers of one container wait for one read.

use crate::clock::Clock;
use chrono::{DateTime, Utc};
use std::{future::Future, sync::Arc};
use tokio::sync::Mutex;

pub struct TtlCache<T> {
    ttl: chrono::Duration,
    clock: Arc<dyn Clock>,
    /// The last successful read: when it was made, and what it found.
    slot: Mutex<Option<(DateTime<Utc>, T)>>,
}

impl<T: Clone + Send> TtlCache<T> {
    pub fn new(ttl: chrono::Duration, clock: Arc<dyn Clock>) -> Self {
        Self { ttl, clock, slot: Mutex::new(None) }
    }

    /// With a `std` duration, as configuration gives it (beyond chrono's range: for ever).
    pub fn from_std(ttl: std::time::Duration, clock: Arc<dyn Clock>) -> Self {
        Self::new(chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX), clock)
    }

    /// The cached value while it is fresh, else what `read` finds (kept only when it succeeds).
    pub async fn get_or_read<E, F, Fut>(&self, read: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        let now = self.clock.now();
        if let Some((read_at, value)) = slot.as_ref() {
            if now >= *read_at && now - *read_at < self.ttl {
                return Ok(value.clone());
            }
        }
        let value = read().await?;
        *slot = Some((now, value.clone()));
        Ok(value)
    }

    /// Changes the cached value in place, if there is one; its read time stays.
    pub async fn update(&self, change: impl FnOnce(&mut T)) {
        if let Some((_, value)) = self.slot.lock().await.as_mut() {
            change(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn cache() -> (Arc<ManualClock>, TtlCache<u32>) {
        let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()));
        (clock.clone(), TtlCache::from_std(std::time::Duration::from_secs(300), clock))
    }

    /// A source that answers its read count, or fails when told to.
    struct Source {
        reads: AtomicU32,
    }

    impl Source {
        async fn read(&self, fail: bool) -> Result<u32, &'static str> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
            if fail {
                Err("unavailable")
            } else {
                Ok(n)
            }
        }
    }

    #[tokio::test]
    async fn one_read_per_ttl_then_read_again() {
        let (clock, cache) = cache();
        let source = Source { reads: AtomicU32::new(0) };
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(1));
        clock.advance(chrono::Duration::seconds(299));
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(1), "within the ttl: cached");
        assert_eq!(source.reads.load(Ordering::SeqCst), 1);
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(2), "the ttl is over: read again");
    }

    #[tokio::test]
    async fn a_failed_read_is_not_cached_and_keeps_nothing_stale() {
        let (clock, cache) = cache();
        let source = Source { reads: AtomicU32::new(0) };
        assert_eq!(cache.get_or_read(|| source.read(true)).await, Err("unavailable"));
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(2), "the failure was not kept");
        clock.advance(chrono::Duration::seconds(300));
        assert_eq!(cache.get_or_read(|| source.read(true)).await, Err("unavailable"), "stale: never served");
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(4));
    }

    #[tokio::test]
    async fn a_clock_set_back_reads_again() {
        let (clock, cache) = cache();
        let source = Source { reads: AtomicU32::new(0) };
        cache.get_or_read(|| source.read(false)).await.unwrap();
        clock.advance(chrono::Duration::seconds(-5));
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(2));
    }

    #[tokio::test]
    async fn update_changes_the_cached_value_and_keeps_its_age() {
        let (clock, cache) = cache();
        let source = Source { reads: AtomicU32::new(0) };
        cache.update(|v| *v = 40).await;
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(1), "nothing cached: nothing updated");
        cache.update(|v| *v += 41).await;
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(42));
        clock.advance(chrono::Duration::seconds(300));
        assert_eq!(cache.get_or_read(|| source.read(false)).await, Ok(2), "its ttl counted from the read");
    }
}
