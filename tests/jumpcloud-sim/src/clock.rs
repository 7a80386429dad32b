//! The event clock: the time Directory Insights events are stamped with and their retention is
//! measured from. The system clock, unless a test pins it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::ids::to_millis;

#[derive(Default)]
pub(crate) struct EventClock {
    /// Milliseconds since the Unix epoch while pinned.
    pinned: Mutex<Option<i64>>,
}

impl EventClock {
    fn pinned(&self) -> MutexGuard<'_, Option<i64>> {
        self.pinned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.pinned().unwrap_or_else(system_ms)
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned().is_some()
    }

    /// Stops the clock at `ms`.
    pub fn pin(&self, ms: i64) {
        *self.pinned() = Some(ms);
    }

    /// Moves the clock on by `ms` (back, when negative) and keeps it pinned there; an unpinned clock
    /// is pinned at the system time plus `ms`. Returns the new time.
    pub fn advance(&self, ms: i64) -> i64 {
        let mut pinned = self.pinned();
        let now = pinned.unwrap_or_else(system_ms).saturating_add(ms);
        *pinned = Some(now);
        now
    }

    /// Back to the system clock.
    pub fn unpin(&self) {
        *self.pinned() = None;
    }
}

fn system_ms() -> i64 {
    to_millis(SystemTime::now(), false)
}
