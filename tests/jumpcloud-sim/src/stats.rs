//! Request counts per endpoint, their order and concurrency, so tests can assert how the product
//! used the API.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The API operations the simulator serves, one per endpoint template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ListUsers,
    GetUser,
    ListGroups,
    GetGroup,
    ListMembers,
    ManageMembers,
    MemberOf,
    Events,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::ListUsers,
        Endpoint::GetUser,
        Endpoint::ListGroups,
        Endpoint::GetGroup,
        Endpoint::ListMembers,
        Endpoint::ManageMembers,
        Endpoint::MemberOf,
        Endpoint::Events,
    ];

    /// The key counts are reported under: method and path template.
    pub fn key(self) -> &'static str {
        match self {
            Endpoint::ListUsers => "GET /api/systemusers",
            Endpoint::GetUser => "GET /api/systemusers/{id}",
            Endpoint::ListGroups => "GET /api/v2/usergroups",
            Endpoint::GetGroup => "GET /api/v2/usergroups/{id}",
            Endpoint::ListMembers => "GET /api/v2/usergroups/{id}/members",
            Endpoint::ManageMembers => "POST /api/v2/usergroups/{id}/members",
            Endpoint::MemberOf => "GET /api/v2/users/{id}/memberof",
            Endpoint::Events => "POST /insights/directory/v1/events",
        }
    }

    pub fn from_key(key: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.key() == key)
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A copy of the counters, as served by `GET /_sim/stats`. Maps hold only endpoints with a
/// non-zero count, so that a test can compare them with exactly the calls it expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub requests: BTreeMap<String, u64>,
    pub faulted: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub faulted_total: u64,
    pub in_flight: u64,
    pub peak_in_flight: u64,
}

/// How many requests the ordered log keeps (one byte each); later ones are counted, not logged.
pub const LOG_CAPACITY: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Stats {
    requests: [AtomicU64; Endpoint::ALL.len()],
    faulted: [AtomicU64; Endpoint::ALL.len()],
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    /// Endpoints in the order their requests arrived (the first `LOG_CAPACITY`).
    log: Mutex<Vec<Endpoint>>,
}

/// Counts a request as in flight until dropped.
pub(crate) struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Stats {
    /// Counts a request to `endpoint` and marks it in flight.
    pub fn begin(self: &Arc<Self>, endpoint: Endpoint) -> InFlight {
        self.requests[endpoint.slot()].fetch_add(1, Ordering::SeqCst);
        let mut log = self.log();
        if log.len() < LOG_CAPACITY {
            log.push(endpoint);
        }
        drop(log);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    pub fn record_fault(&self, endpoint: Endpoint) {
        self.faulted[endpoint.slot()].fetch_add(1, Ordering::SeqCst);
    }

    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.requests[endpoint.slot()].load(Ordering::SeqCst)
    }

    pub fn faulted(&self, endpoint: Endpoint) -> u64 {
        self.faulted[endpoint.slot()].load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<Endpoint>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The endpoint keys of the requests since start or the last reset, in arrival order.
    pub fn ordered(&self) -> Vec<&'static str> {
        self.log().iter().map(|e| e.key()).collect()
    }

    /// Zeroes the counts and empties the ordered log; the peak restarts from the requests in
    /// flight now.
    pub fn reset(&self) {
        for c in self.requests.iter().chain(&self.faulted) {
            c.store(0, Ordering::SeqCst);
        }
        self.log().clear();
        self.peak_in_flight.store(self.in_flight(), Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let non_zero = |counter: fn(&Stats, Endpoint) -> u64| {
            Endpoint::ALL
                .into_iter()
                .map(|e| (e.key().to_owned(), counter(self, e)))
                .filter(|&(_, n)| n > 0)
                .collect::<BTreeMap<_, _>>()
        };
        let requests = non_zero(Stats::count);
        let faulted = non_zero(Stats::faulted);
        StatsSnapshot {
            total_requests: requests.values().sum(),
            faulted_total: faulted.values().sum(),
            requests,
            faulted,
            in_flight: self.in_flight(),
            peak_in_flight: self.peak_in_flight(),
        }
    }
}
