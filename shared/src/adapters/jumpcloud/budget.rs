//! A client's rate budget with two classes: requests in flight (a semaphore) and requests per
//! second (a `governor` token bucket), where a priority call waiting for either gets the next one
//! before any normal call that is waiting.
//!
//! How: a call needs a permit, then a token. Priority calls register (`waiting`) and take both
//! directly. Normal calls queue on a fair mutex (`normal_lane`); only its holder, the head, takes
//! a permit and a token, and only while no priority call is registered. A priority call that
//! registers wakes the head (`priority_arrived`), which gives back the permit it may hold and
//! stops waiting for a token, then waits for the last priority call to be admitted
//! (`priority_cleared`). So at most one normal call waits for a permit or a token at a time, and
//! it takes neither once a priority call has registered (should the semaphore hand it a permit
//! before it is polled again, it gives it back). Normal calls keep their order among themselves.
//!
//! Wake-ups are not lost: a waiter enables its `Notified` before it reads the count, and the
//! count changes before `notify_waiters`. A dropped call unregisters in `Drop` (`Waiting`), so
//! cancelling a waiting priority call lets the normal ones go on. Normal calls wait while priority
//! calls keep coming: revocations are few and short, and they are what must not wait.

use governor::{
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
    Quota, RateLimiter,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Mutex, Notify, Semaphore, SemaphorePermit};

/// Which queue a call waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Served before any waiting normal call.
    Priority,
    Normal,
}

pub(crate) struct Budget<C: Clock = DefaultClock> {
    in_flight: Semaphore,
    rate: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    /// Calls waiting for a permit or a token, by class (`Class as usize`).
    waiting: [AtomicUsize; 2],
    priority_arrived: Notify,
    priority_cleared: Notify,
    normal_lane: Mutex<()>,
}

impl Budget {
    pub fn new(max_concurrency: usize, quota: Quota) -> Self {
        Self::with_clock(max_concurrency, quota, DefaultClock::default())
    }
}

impl<C: Clock> Budget<C> {
    pub fn with_clock(max_concurrency: usize, quota: Quota, clock: C) -> Self {
        Self {
            in_flight: Semaphore::new(max_concurrency.max(1)),
            rate: RateLimiter::direct_with_clock(quota, clock),
            waiting: Default::default(),
            priority_arrived: Notify::new(),
            priority_cleared: Notify::new(),
            normal_lane: Mutex::new(()),
        }
    }

    /// Calls of that class waiting now for a permit or a token.
    pub fn waiting(&self, class: Class) -> usize {
        self.waiting[class as usize].load(Ordering::SeqCst)
    }

    /// A permit to hold while the request is in flight, once a token was spent for it.
    pub async fn admit(&self, class: Class) -> SemaphorePermit<'_> {
        let _waiting = Waiting::new(self, class);
        if class == Class::Priority {
            return self.take().await;
        }
        let _head = self.normal_lane.lock().await;
        loop {
            self.no_priority_waiting().await;
            let arrived = self.priority_arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.waiting(Class::Priority) > 0 {
                continue;
            }
            tokio::select! {
                biased;
                // Give way: dropping `take` gives back a permit it held; no token was spent.
                () = &mut arrived => continue,
                permit = self.take() => return permit,
            }
        }
    }

    /// A permit, then a token. Cancel-safe: a token is spent only when this returns.
    async fn take(&self) -> SemaphorePermit<'_> {
        let permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        // `until_ready`, but on tokio's timer (and for any clock, so that tests can use a fake one).
        while let Err(not_until) = self.rate.check() {
            tokio::time::sleep(not_until.wait_time_from(self.rate.clock().now())).await;
        }
        permit
    }

    async fn no_priority_waiting(&self) {
        loop {
            let cleared = self.priority_cleared.notified();
            tokio::pin!(cleared);
            cleared.as_mut().enable();
            if self.waiting(Class::Priority) == 0 {
                return;
            }
            cleared.await;
        }
    }
}

/// A call counted as waiting from its start until it is admitted or dropped.
struct Waiting<'a, C: Clock> {
    budget: &'a Budget<C>,
    class: Class,
}

impl<'a, C: Clock> Waiting<'a, C> {
    fn new(budget: &'a Budget<C>, class: Class) -> Self {
        budget.waiting[class as usize].fetch_add(1, Ordering::SeqCst);
        if class == Class::Priority {
            budget.priority_arrived.notify_waiters();
        }
        Self { budget, class }
    }
}

impl<C: Clock> Drop for Waiting<'_, C> {
    fn drop(&mut self) {
        let left = self.budget.waiting[self.class as usize].fetch_sub(1, Ordering::SeqCst) - 1;
        if self.class == Class::Priority && left == 0 {
            self.budget.priority_cleared.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::poll;
    use governor::clock::FakeRelativeClock;
    use std::{future::Future, num::NonZeroU32, pin::Pin, task::Poll, time::Duration};

    type Call<'a> = Pin<Box<dyn Future<Output = SemaphorePermit<'a>> + 'a>>;

    /// Tokens never run out.
    fn plenty() -> Quota {
        Quota::per_second(NonZeroU32::new(1_000_000).unwrap())
    }

    fn call(budget: &Budget<impl Clock>, class: Class) -> Call<'_> {
        Box::pin(budget.admit(class))
    }

    async fn pending(call: &mut Call<'_>) {
        assert!(poll!(call.as_mut()).is_pending(), "admitted too early");
    }

    /// Polls every call in turn, normal ones first (the order least kind to priority), until all
    /// are admitted; each admitted call gives its permit back at once. Returns the order of
    /// admission. Polling a call that was not woken is allowed: the budget must hold anyway.
    async fn admission_order(mut calls: Vec<(&'static str, Call<'_>)>) -> Vec<&'static str> {
        let mut order = vec![];
        // Only against a hang when the budget is broken: a working one needs milliseconds.
        let stuck = std::time::Instant::now() + Duration::from_secs(30);
        while !calls.is_empty() {
            assert!(std::time::Instant::now() < stuck, "calls never admitted; admitted so far: {order:?}");
            let mut admitted = None;
            for (i, (name, call)) in calls.iter_mut().enumerate() {
                if let Poll::Ready(permit) = poll!(call.as_mut()) {
                    drop(permit);
                    order.push(*name);
                    admitted = Some(i);
                    break;
                }
            }
            match admitted {
                Some(i) => drop(calls.remove(i)),
                // Only a token's timer can still be running (fake clock already advanced).
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        order
    }

    #[tokio::test]
    async fn a_waiting_priority_call_takes_the_next_permit_before_queued_normal_ones() {
        let budget = Budget::new(1, plenty());
        let held = budget.admit(Class::Normal).await;
        let mut calls = vec![];
        for name in ["normal 1", "normal 2", "normal 3"] {
            let mut c = call(&budget, Class::Normal);
            pending(&mut c).await;
            calls.push((name, c));
        }
        let mut removal = call(&budget, Class::Priority);
        pending(&mut removal).await;
        assert_eq!((budget.waiting(Class::Normal), budget.waiting(Class::Priority)), (3, 1));
        // Normal calls polled now, while the permit is still held, must not get ahead either.
        for (_, c) in &mut calls {
            pending(c).await;
        }
        calls.push(("removal", removal));

        drop(held);
        assert_eq!(admission_order(calls).await, ["removal", "normal 1", "normal 2", "normal 3"]);
        assert_eq!((budget.waiting(Class::Normal), budget.waiting(Class::Priority)), (0, 0));
    }

    #[tokio::test]
    async fn a_waiting_priority_call_takes_the_next_token_before_a_normal_one() {
        let clock = FakeRelativeClock::default();
        let one_per_100ms = Quota::with_period(Duration::from_millis(100)).unwrap().allow_burst(NonZeroU32::MIN);
        let budget = Budget::with_clock(4, one_per_100ms, clock.clone());
        drop(budget.admit(Class::Normal).await); // spends the only token
        let mut normal = call(&budget, Class::Normal);
        pending(&mut normal).await; // holds a permit and waits for a token
        assert_eq!(budget.in_flight.available_permits(), 3);
        let mut removal = call(&budget, Class::Priority);
        pending(&mut removal).await;
        // The normal call gives way: its permit back, no longer waiting for a token.
        pending(&mut normal).await;
        assert_eq!(budget.in_flight.available_permits(), 3, "only the removal holds a permit");

        // The fake clock moves only here: until now no token could be had, whatever the timing.
        clock.advance(Duration::from_millis(100));
        let order = admission_order(vec![("normal", normal), ("removal", removal)]);
        tokio::pin!(order);
        let order = loop {
            // The normal call needs a second token.
            match poll!(order.as_mut()) {
                Poll::Ready(order) => break order,
                Poll::Pending => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    clock.advance(Duration::from_millis(100));
                }
            }
        };
        assert_eq!(order, ["removal", "normal"]);
    }

    #[tokio::test]
    async fn a_cancelled_priority_call_lets_normal_ones_go_on() {
        let budget = Budget::new(1, plenty());
        let held = budget.admit(Class::Normal).await;
        let mut normal = call(&budget, Class::Normal);
        pending(&mut normal).await;
        let mut removal = call(&budget, Class::Priority);
        pending(&mut removal).await;
        pending(&mut normal).await; // gave way: now waiting for the removal to be admitted
        drop(removal); // e.g. its caller timed out
        assert_eq!(budget.waiting(Class::Priority), 0);

        drop(held);
        assert!(poll!(normal.as_mut()).is_ready(), "the normal call is not held back by a call that is gone");
        assert_eq!(budget.in_flight.available_permits(), 1);
    }
}
