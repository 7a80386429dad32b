//! Starting and stopping the simulator, and the handle tests use to steer and inspect it.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::clock::EventClock;
use crate::faults::{FaultInjector, FaultKind, Faults};
use crate::ids::{from_millis, to_millis};
use crate::model::Org;
use crate::stats::{Endpoint, Stats, StatsSnapshot};
use crate::store::{OrgHandle, OrgStore};

/// The end of a pause slept by a thread rather than tokio's millisecond timer.
const FINE_SLEEP: Duration = Duration::from_millis(3);

/// State shared by the handlers and every [`SimHandle`].
pub(crate) struct Shared {
    pub orgs: Vec<Arc<OrgStore>>,
    pub faults: FaultInjector,
    pub stats: Arc<Stats>,
    /// Stamps every organization's events.
    pub clock: Arc<EventClock>,
    shutdown: watch::Receiver<bool>,
    /// While API requests are held (see [`SimHandle::hold_requests`]), the gate they wait at:
    /// each takes a permit, in arrival order.
    hold: Mutex<Option<Arc<Semaphore>>>,
}

impl Shared {
    /// Sleeps `duration`, unless the simulator shuts down first; false if it did.
    ///
    /// tokio's timer fires on whole milliseconds and a little late (20 ms came to ~21.7 ms a
    /// request here, 8% more than asked): it sleeps to within [`FINE_SLEEP`] of the end, a
    /// thread's sleep (to tens of microseconds) the rest, so that the latency asked for is served.
    pub async fn pause(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(duration.saturating_sub(FINE_SLEEP)) => {}
            // An error means the sender is gone: the simulator is shutting down too.
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
        let rest = end.saturating_duration_since(Instant::now());
        if !rest.is_zero() {
            // A blocking-pool thread, not a runtime one: other requests go on meanwhile.
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
        }
        true
    }

    fn hold(&self) -> MutexGuard<'_, Option<Arc<Semaphore>>> {
        self.hold.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while requests are held, unless the simulator shuts down first; false if it did.
    pub async fn released(&self) -> bool {
        let Some(gate) = self.hold().clone() else { return true };
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            permit = gate.acquire() => {
                // Closed: everything was released.
                if let Ok(permit) = permit {
                    permit.forget();
                }
                true
            }
            _ = shutdown.wait_for(|stop| *stop) => false,
        }
    }
}

/// Entry point: `Simulator::start(orgs).await?` serves `orgs` on a free loopback port.
pub struct Simulator;

impl Simulator {
    /// Serves `orgs` on `127.0.0.1` at a port chosen by the system.
    pub async fn start(orgs: Vec<Org>) -> anyhow::Result<RunningSimulator> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), orgs).await
    }

    /// Serves `orgs` on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, orgs: Vec<Org>) -> anyhow::Result<RunningSimulator> {
        check_orgs(&orgs)?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let clock = Arc::new(EventClock::default());
        let shared = Arc::new(Shared {
            orgs: orgs.into_iter().map(|o| Arc::new(OrgStore::new(o, Arc::clone(&clock)))).collect(),
            faults: FaultInjector::new(Faults::default()),
            stats: Arc::default(),
            clock,
            shutdown: shutdown_rx.clone(),
            hold: Mutex::new(None),
        });
        let app = router(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::debug!(%addr, "jumpcloud-sim started");
        Ok(RunningSimulator { addr, handle: SimHandle { shared }, shutdown: shutdown_tx, task: Some(task) })
    }
}

fn check_orgs(orgs: &[Org]) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    for (i, org) in orgs.iter().enumerate() {
        org.validate().with_context(|| format!("organization {i}"))?;
        if !seen.insert((org.api_key.as_str(), org.org_id.as_deref())) {
            bail!("organization {i}: another organization has the same api_key and org_id");
        }
    }
    for (i, org) in orgs.iter().enumerate() {
        let shared_key = orgs.iter().filter(|o| o.api_key == org.api_key).count() > 1;
        if shared_key && org.org_id.is_none() {
            bail!("organization {i}: organizations sharing an api_key need an org_id each");
        }
    }
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    crate::api::routes()
        .merge(crate::admin::routes())
        .fallback(crate::api::no_route)
        .method_not_allowed_fallback(crate::api::no_method)
        .layer(middleware::from_fn(log_request))
        .with_state(shared)
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        %uri,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// A simulator serving in the background. Dropping it stops the server.
pub struct RunningSimulator {
    addr: SocketAddr,
    handle: SimHandle,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    /// `http://127.0.0.1:PORT`: the value for `JUMPCLOUD_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting connections, cuts injected delays short, and waits (at most 5 s) for the
    /// requests in flight to be answered.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(joined) => joined.context("server task")??,
                Err(_) => abort.abort(),
            }
        }
        Ok(())
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Steers and inspects a running simulator. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl SimHandle {
    /// Replaces the fault rates and latency (and reseeds their RNG). Panics on rates outside
    /// 0..=1 or adding up to more than 1: a test bug.
    pub fn set_faults(&self, faults: Faults) {
        if let Err(e) = faults.validate() {
            panic!("invalid faults: {e}");
        }
        self.shared.faults.set(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.get()
    }

    /// The next `n` API requests fail with `kind`, whatever the rates say.
    pub fn fail_next(&self, n: usize, kind: FaultKind) {
        self.shared.faults.push(n, kind);
    }

    /// Queued faults not yet served.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults.pending()
    }

    /// No latency, no rates, empty queue.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// API requests arriving from now on are counted, logged and marked in flight, then wait
    /// unanswered until released ([`release_next`](Self::release_next),
    /// [`release_requests`](Self::release_requests)): a test can keep requests in flight for as
    /// long as it needs, without guessing at a latency.
    pub fn hold_requests(&self) {
        self.shared.hold().get_or_insert_with(|| Arc::new(Semaphore::new(0)));
    }

    /// Lets the next `n` held requests go on, in arrival order (or, if fewer are held, the next
    /// ones to arrive); the others stay held.
    pub fn release_next(&self, n: usize) {
        if let Some(gate) = &*self.shared.hold() {
            gate.add_permits(n);
        }
    }

    /// Lets every held request go on, and stops holding.
    pub fn release_requests(&self) {
        if let Some(gate) = self.shared.hold().take() {
            gate.close();
        }
    }

    /// Requests (faulted ones included) to one endpoint, by its key such as
    /// `"POST /api/v2/usergroups/{id}/members"`. Panics on an unknown key, so that a typo cannot
    /// make an assertion of zero pass.
    pub fn request_count(&self, key: &str) -> u64 {
        self.shared.stats.count(endpoint(key))
    }

    /// The endpoint keys of the API requests since start or the last reset, in the order they
    /// arrived (faulted and held ones too; the first [`LOG_CAPACITY`](crate::LOG_CAPACITY)).
    pub fn request_log(&self) -> Vec<&'static str> {
        self.shared.stats.ordered()
    }

    /// Requests per endpoint key; endpoints never called are left out.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.stats.snapshot().requests
    }

    /// Requests answered with an injected fault, all endpoints together.
    pub fn faulted_count(&self) -> u64 {
        self.shared.stats.snapshot().faulted_total
    }

    /// Requests to one endpoint answered with an injected fault. Panics on an unknown key.
    pub fn faulted_count_for(&self, key: &str) -> u64 {
        self.shared.stats.faulted(endpoint(key))
    }

    pub fn total_requests(&self) -> u64 {
        self.shared.stats.snapshot().total_requests
    }

    pub fn in_flight(&self) -> u64 {
        self.shared.stats.in_flight()
    }

    /// The most API requests ever in flight at once since start or the last reset.
    pub fn peak_in_flight(&self) -> u64 {
        self.shared.stats.peak_in_flight()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Zeroes the counts and empties the request log; the peak restarts from the requests in
    /// flight now.
    pub fn reset_counts(&self) {
        self.shared.stats.reset();
    }

    pub fn org_count(&self) -> usize {
        self.shared.orgs.len()
    }

    /// The `index`th organization given at start. Panics when out of range.
    pub fn org(&self, index: usize) -> OrgHandle {
        let store = self
            .shared
            .orgs
            .get(index)
            .unwrap_or_else(|| panic!("no organization {index}: the simulator has {}", self.shared.orgs.len()));
        OrgHandle { index, store: Arc::clone(store) }
    }

    /// Stops the event clock at `now`: events are stamped `now` (or later, never before the
    /// previous event of their organization) and retention counts from it, until the clock is
    /// advanced, pinned elsewhere or unpinned. Tests use it instead of sleeping.
    pub fn pin_clock(&self, now: SystemTime) {
        self.shared.clock.pin(to_millis(now, false));
    }

    /// Moves the event clock on by `by` and keeps it pinned there (an unpinned clock is pinned at
    /// the system time plus `by`); returns the new time.
    pub fn advance_clock(&self, by: Duration) -> SystemTime {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        from_millis(self.shared.clock.advance(ms))
    }

    /// Back to the system clock.
    pub fn unpin_clock(&self) {
        self.shared.clock.unpin();
    }

    /// The event clock's time (to the millisecond).
    pub fn clock_now(&self) -> SystemTime {
        from_millis(self.shared.clock.now_ms())
    }

    pub fn clock_is_pinned(&self) -> bool {
        self.shared.clock.is_pinned()
    }

    /// The organization with that `org_id`.
    pub fn org_by_id(&self, org_id: &str) -> Option<OrgHandle> {
        let index = self.shared.orgs.iter().position(|o| o.org_id.as_deref() == Some(org_id))?;
        Some(self.org(index))
    }
}

fn endpoint(key: &str) -> Endpoint {
    Endpoint::from_key(key).unwrap_or_else(|| {
        let known: Vec<&str> = Endpoint::ALL.iter().map(|e| e.key()).collect();
        panic!("unknown endpoint key {key:?}; known keys: {known:?}")
    })
}
