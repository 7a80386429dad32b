//! Injected latency and failures, for the product's retry and timeout tests.
//!
//! Two sources, checked in this order for every API request (never for `/_sim/...`):
//! 1. a queue filled by [`crate::SimHandle::fail_next`]: the next n requests fail that way,
//!    whatever the rates say (deterministic, for exact assertions);
//! 2. the rates of [`Faults`], drawn from an RNG seeded by `Faults::seed` (reproducible runs
//!    when requests are sequential).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::ids::{now_secs, splitmix64};

/// Rates and delays applied to API requests. `Default` injects nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every API request, faulted or not.
    pub latency_ms: u64,
    /// Share of requests (0..1) answered `429 Too Many Requests`.
    pub rate_429: f64,
    /// Sent as `Retry-After` on 429s when set.
    pub retry_after_secs: Option<u64>,
    /// Share of requests answered `503` or `500` (evenly).
    pub rate_5xx: f64,
    /// Share of requests that hang for `hang_ms` and then answer `504` without doing anything.
    pub rate_hang: f64,
    pub hang_ms: u64,
    /// Seed of the RNG that draws faults; `None` seeds from the clock.
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            rate_429: 0.0,
            retry_after_secs: None,
            rate_5xx: 0.0,
            rate_hang: 0.0,
            // Longer than any sane client timeout, so a hang is seen as one.
            hang_ms: 30_000,
            seed: None,
        }
    }
}

impl Faults {
    /// Rates must lie in 0..=1 and add up to at most 1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [("rate_429", self.rate_429), ("rate_5xx", self.rate_5xx), ("rate_hang", self.rate_hang)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.rate_429 + self.rate_5xx + self.rate_hang > 1.0 + f64::EPSILON {
            return Err("rate_429 + rate_5xx + rate_hang must not exceed 1".into());
        }
        Ok(())
    }

    fn any_rate(&self) -> bool {
        self.rate_429 > 0.0 || self.rate_5xx > 0.0 || self.rate_hang > 0.0
    }
}

/// One injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// `429 Too Many Requests`, with `Retry-After` when `retry_after_secs` is set.
    TooManyRequests { retry_after_secs: Option<u64> },
    /// That status (normally a 5xx), with a JumpCloud error body.
    ServerError(u16),
    /// Wait that long, then answer `504 Gateway Timeout` without doing anything: the request
    /// never reached JumpCloud, so a client that timed out and retries sees no side effect.
    Hang(Duration),
}

struct State {
    faults: Faults,
    rng: StdRng,
    queue: VecDeque<FaultKind>,
}

/// The fault source shared by all request handlers.
pub(crate) struct FaultInjector {
    state: Mutex<State>,
}

fn rng_for(faults: &Faults) -> StdRng {
    StdRng::seed_from_u64(faults.seed.unwrap_or_else(|| splitmix64(now_secs())))
}

impl FaultInjector {
    pub fn new(faults: Faults) -> Self {
        FaultInjector { state: Mutex::new(State { rng: rng_for(&faults), faults, queue: VecDeque::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the rates (and reseeds the RNG); the queue is kept.
    pub fn set(&self, faults: Faults) {
        let mut state = self.lock();
        state.rng = rng_for(&faults);
        state.faults = faults;
    }

    pub fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn push(&self, n: usize, kind: FaultKind) {
        self.lock().queue.extend(std::iter::repeat_n(kind, n));
    }

    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// Back to no faults at all: default rates, empty queue.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.queue.clear();
        state.faults = Faults::default();
    }

    /// The latency to add and the fault (if any) for the next API request.
    pub fn next(&self) -> (Duration, Option<FaultKind>) {
        let mut state = self.lock();
        let latency = Duration::from_millis(state.faults.latency_ms);
        if let Some(kind) = state.queue.pop_front() {
            return (latency, Some(kind));
        }
        if !state.faults.any_rate() {
            return (latency, None);
        }
        let f = state.faults.clone();
        let roll: f64 = state.rng.random();
        let kind = if roll < f.rate_429 {
            Some(FaultKind::TooManyRequests { retry_after_secs: f.retry_after_secs })
        } else if roll < f.rate_429 + f.rate_5xx {
            let status = if state.rng.random_bool(0.5) { 503 } else { 500 };
            Some(FaultKind::ServerError(status))
        } else if roll < f.rate_429 + f.rate_5xx + f.rate_hang {
            Some(FaultKind::Hang(Duration::from_millis(f.hang_ms)))
        } else {
            None
        };
        (latency, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_comes_first_then_rates() {
        let injector = FaultInjector::new(Faults { rate_5xx: 1.0, latency_ms: 5, ..Faults::default() });
        injector.push(2, FaultKind::Hang(Duration::from_millis(1)));
        assert_eq!(injector.pending(), 2);
        for _ in 0..2 {
            assert!(matches!(injector.next(), (_, Some(FaultKind::Hang(_)))));
        }
        let (latency, kind) = injector.next();
        assert_eq!(latency, Duration::from_millis(5));
        assert!(matches!(kind, Some(FaultKind::ServerError(500 | 503))));
        injector.clear();
        assert_eq!(injector.next(), (Duration::ZERO, None));
    }

    #[test]
    fn seeded_rates_are_reproducible_and_roughly_right() {
        let faults = Faults { rate_429: 0.2, rate_5xx: 0.1, seed: Some(7), ..Faults::default() };
        let draw = || {
            let injector = FaultInjector::new(faults.clone());
            (0..1000).map(|_| injector.next().1).collect::<Vec<_>>()
        };
        let a = draw();
        assert_eq!(a, draw());
        let n429 = a.iter().filter(|k| matches!(k, Some(FaultKind::TooManyRequests { .. }))).count();
        assert!((150..250).contains(&n429), "{n429}");
    }

    #[test]
    fn validation() {
        assert!(Faults::default().validate().is_ok());
        let bad = Faults { rate_429: 0.7, rate_5xx: 0.7, ..Faults::default() };
        assert!(bad.validate().is_err());
        assert!(Faults { rate_hang: -0.1, ..Faults::default() }.validate().is_err());
    }
}
