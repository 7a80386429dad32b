//! In-memory doubles of the grant lifecycle's ports: the grant store, the synced-directory
//! oracle, the expiry scheduler and the event bus.
//!
//! [`MemoryGrantStore`] enforces the conditions the DynamoDB adapter enforces, each operation
//! atomically under one mutex: a test that passes here exercises the same protocol.

use crate::{
    domain::model::{
        audit_chain, AuditPage, AuditRecord, ChainHead, DaySeal, Grant, GrantEvent, GrantFilter, GrantPage,
        GrantStatus, IdempotencyClaim, IdempotencyState, Lease, LeaseHold, LeaseKey, LeaseLock, RevocationRequest,
    },
    ports::StoreError,
    ports::{
        Activation, Ending, EventBus, EventBusError, ExpiryScheduler, Failure, GrantStore, GrantStoreError,
        MembershipOracle, SchedulerError,
    },
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

// ---------------------------------------------------------------------------------------------
// Store

#[derive(Debug, Clone)]
enum IdempotencyRecord {
    InProgress { hash: String, until: DateTime<Utc>, expires_at: DateTime<Utc> },
    Completed { hash: String, grant_id: String, expires_at: DateTime<Utc> },
}

#[derive(Debug, Default)]
struct State {
    grants: HashMap<String, Grant>,
    /// The sweep's index: grant id -> due time.
    index: HashMap<String, DateTime<Utc>>,
    leases: BTreeMap<LeaseKey, Lease>,
    audit: Vec<AuditRecord>,
    /// Each grant's audit chain head, as DynamoDB keeps it beside the records.
    chains: HashMap<String, ChainHead>,
    seals: BTreeMap<NaiveDate, DaySeal>,
    idempotency: HashMap<String, IdempotencyRecord>,
}

impl State {
    /// Appends audit records, each linked into its grant's chain (as the DynamoDB store does).
    fn record(&mut self, records: &[AuditRecord]) {
        for record in records {
            let mut record = record.clone();
            let head = audit_chain::link(self.chains.get(&record.grant_id), std::slice::from_mut(&mut record));
            self.chains.insert(record.grant_id.clone(), head.expect("one record linked"));
            self.audit.push(record);
        }
    }
    /// The lease, if `hold` still holds its lock.
    fn held_lease(&mut self, hold: &LeaseHold) -> Result<&mut Lease, GrantStoreError> {
        match self.leases.get_mut(&hold.key) {
            Some(lease) if lease.lock.as_ref().is_some_and(|l| l.owner == hold.owner) => Ok(lease),
            _ => Err(GrantStoreError::Conflict(format!("the lease lock is not held by {}", hold.owner))),
        }
    }
    /// DynamoDB: a change of a request is conditioned on the status and revision read.
    fn check_request_seen(&self, new: &Grant) -> Result<(), GrantStoreError> {
        match self.grants.get(&new.id) {
            Some(stored) if stored.status == GrantStatus::PendingApproval && stored.revision + 1 == new.revision => {
                Ok(())
            }
            Some(_) => Err(GrantStoreError::Conflict(format!("request {} changed meanwhile", new.id))),
            None => Err(GrantStoreError::NotFound(new.id.clone())),
        }
    }

    fn grant_of(&self, id: &str, hold: &LeaseHold) -> Result<&Grant, GrantStoreError> {
        let grant = self.grants.get(id).ok_or_else(|| GrantStoreError::NotFound(id.to_owned()))?;
        if grant.lease_key() != hold.key {
            return Err(GrantStoreError::Conflict(format!("grant {id} belongs to another lease")));
        }
        Ok(grant)
    }
    /// What `activate` and `fail_for_cleanup` share: the grant is pending and holds `hold`'s
    /// lease; the lease's `preexisting` is set when decided and its lock released. Returns the
    /// grant, for the caller to change.
    fn release_pending(
        &mut self,
        id: &str,
        hold: &LeaseHold,
        lease_preexisting: Option<bool>,
    ) -> Result<&mut Grant, GrantStoreError> {
        if self.grant_of(id, hold)?.status != GrantStatus::Pending {
            return Err(GrantStoreError::Conflict(format!("grant {id} is not pending")));
        }
        let lease = self.held_lease(hold)?;
        if !lease.holders.contains(id) {
            return Err(GrantStoreError::Conflict(format!("grant {id} does not hold its lease")));
        }
        if let Some(preexisting) = lease_preexisting {
            lease.preexisting = preexisting;
        }
        lease.lock = None;
        Ok(self.grants.get_mut(id).expect("checked"))
    }
}

/// The grant store in memory. `fail(op)` makes the named operation fail (DynamoDB down), e.g.
/// `"end"`, `"activate"`, `"complete_idempotent"`.
#[derive(Default)]
pub struct MemoryGrantStore {
    state: Mutex<State>,
    failing: Mutex<HashSet<&'static str>>,
    /// Operations called, by name.
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

impl MemoryGrantStore {
    pub fn fail(&self, op: &'static str) {
        self.failing.lock().unwrap().insert(op);
    }
    pub fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }
    fn enter(&self, op: &'static str) -> Result<std::sync::MutexGuard<'_, State>, GrantStoreError> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        if self.failing.lock().unwrap().contains(op) {
            return Err(GrantStoreError::Store(StoreError::Aws(format!("injected failure of {op}"))));
        }
        Ok(self.state.lock().unwrap())
    }
    pub fn grants(&self) -> Vec<Grant> {
        let mut grants: Vec<Grant> = self.state.lock().unwrap().grants.values().cloned().collect();
        grants.sort_by(|a, b| (a.granted_at, &a.id).cmp(&(b.granted_at, &b.id)));
        grants
    }
    /// Overwrites a stored grant as it is (a test's way to set up states no operation makes).
    pub fn put_grant(&self, grant: Grant) {
        self.state.lock().unwrap().grants.insert(grant.id.clone(), grant);
    }
    pub fn grant(&self, id: &str) -> Option<Grant> {
        self.state.lock().unwrap().grants.get(id).cloned()
    }
    pub fn leases(&self) -> BTreeMap<LeaseKey, Lease> {
        self.state.lock().unwrap().leases.clone()
    }
    /// Ids in the sweep's index.
    pub fn indexed(&self) -> BTreeSet<String> {
        self.state.lock().unwrap().index.keys().cloned().collect()
    }
    /// Changes stored audit records behind the store's back (what an attacker with table rights
    /// could do), for tests of verification.
    pub fn tamper_audit(&self, change: impl FnOnce(&mut Vec<AuditRecord>)) {
        change(&mut self.state.lock().unwrap().audit);
    }
    /// Changes stored seals behind the store's back, as [`Self::tamper_audit`] does records.
    pub fn tamper_seals(&self, change: impl FnOnce(&mut BTreeMap<NaiveDate, DaySeal>)) {
        change(&mut self.state.lock().unwrap().seals);
    }
    pub fn audit(&self) -> Vec<AuditRecord> {
        self.state.lock().unwrap().audit.clone()
    }
    pub fn idempotency_records(&self) -> usize {
        self.state.lock().unwrap().idempotency.len()
    }
    pub fn calls(&self, op: &str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }
}

fn page_token(due: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", due.to_rfc3339())
}

#[async_trait]
impl GrantStore for MemoryGrantStore {
    async fn lock_lease(
        &self,
        key: &LeaseKey,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Lease, GrantStoreError> {
        let mut state = self.enter("lock_lease")?;
        let lease = state.leases.entry(key.clone()).or_default();
        if let Some(lock) = &lease.lock {
            if lock.owner != owner && lock.until > now {
                return Err(GrantStoreError::LeaseBusy { until: lock.until });
            }
        }
        lease.lock = Some(LeaseLock { owner: owner.to_owned(), until: now + ttl });
        Ok(lease.clone())
    }

    async fn unlock_lease(&self, hold: &LeaseHold) -> Result<(), GrantStoreError> {
        let mut state = self.enter("unlock_lease")?;
        if let Ok(lease) = state.held_lease(hold) {
            lease.lock = None;
            if lease.holders.is_empty() {
                state.leases.remove(&hold.key);
            }
        }
        Ok(())
    }

    async fn insert_pending(
        &self,
        grant: &Grant,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        let mut state = self.enter("insert_pending")?;
        if grant.lease_key() != hold.key || grant.status != GrantStatus::Pending {
            return Err(GrantStoreError::Conflict("not a pending grant of this lease".into()));
        }
        if state.grants.contains_key(&grant.id) {
            return Err(GrantStoreError::Conflict(format!("grant {} exists", grant.id)));
        }
        state.held_lease(hold)?.holders.insert(grant.id.clone());
        state.grants.insert(grant.id.clone(), grant.clone());
        state.index.insert(grant.id.clone(), grant.expiry());
        state.record(audit);
        Ok(())
    }

    async fn insert_request(&self, request: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError> {
        let mut state = self.enter("insert_request")?;
        if request.status != GrantStatus::PendingApproval {
            return Err(GrantStoreError::Conflict("not a request awaiting approval".into()));
        }
        if state.grants.contains_key(&request.id) {
            return Err(GrantStoreError::Conflict(format!("grant {} exists", request.id)));
        }
        state.grants.insert(request.id.clone(), request.clone());
        state.index.insert(request.id.clone(), request.expiry());
        state.record(audit);
        Ok(())
    }

    async fn update_request(&self, new: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError> {
        let mut state = self.enter("update_request")?;
        state.check_request_seen(new)?;
        if new.status == GrantStatus::PendingApproval {
            state.index.insert(new.id.clone(), new.expiry());
        } else if new.status.is_ended_request() {
            state.index.remove(&new.id);
        } else {
            return Err(GrantStoreError::Conflict(format!("{} does not end a request", new.status.as_str())));
        }
        state.grants.insert(new.id.clone(), new.clone());
        state.record(audit);
        Ok(())
    }

    async fn promote_request(
        &self,
        grant: &Grant,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        let mut state = self.enter("promote_request")?;
        if grant.lease_key() != hold.key || grant.status != GrantStatus::Pending {
            return Err(GrantStoreError::Conflict("not a pending grant of this lease".into()));
        }
        state.check_request_seen(grant)?;
        state.held_lease(hold)?.holders.insert(grant.id.clone());
        state.grants.insert(grant.id.clone(), grant.clone());
        state.index.insert(grant.id.clone(), grant.expiry());
        state.record(audit);
        Ok(())
    }

    async fn extend_grant(&self, new: &Grant, audit: &[AuditRecord]) -> Result<(), GrantStoreError> {
        let mut state = self.enter("extend_grant")?;
        let indexed = state.index.contains_key(&new.id);
        match state.grants.get_mut(&new.id) {
            Some(stored) if stored.status == GrantStatus::Active && indexed && stored.revision + 1 == new.revision => {
                stored.expires_at = new.expires_at;
                stored.revision = new.revision;
                stored.pending_extension = new.pending_extension.clone();
                stored.extensions = new.extensions.clone();
            }
            Some(_) => return Err(GrantStoreError::Conflict(format!("grant {} changed meanwhile", new.id))),
            None => return Err(GrantStoreError::NotFound(new.id.clone())),
        }
        state.index.insert(new.id.clone(), new.expiry());
        state.record(audit);
        Ok(())
    }

    async fn activate(
        &self,
        activation: &Activation,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError> {
        let mut state = self.enter("activate")?;
        let grant = state.release_pending(&activation.grant.id, hold, activation.lease_preexisting)?;
        grant.status = GrantStatus::Active;
        grant.preexisting_membership = activation.preexisting;
        grant.schedule_name = activation.schedule_name.clone();
        let grant = grant.clone();
        state.record(audit);
        Ok(grant)
    }

    async fn fail_for_cleanup(
        &self,
        failure: &Failure,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<Grant, GrantStoreError> {
        let mut state = self.enter("fail_for_cleanup")?;
        let grant = state.release_pending(&failure.grant.id, hold, failure.lease_preexisting)?;
        grant.status = GrantStatus::Failed;
        grant.ended_at = Some(failure.ended_at);
        let grant = grant.clone();
        // Stays in the sweep's index, due at `ended_at`: the sweep cleans up.
        state.index.insert(grant.id.clone(), failure.ended_at);
        state.record(audit);
        Ok(grant)
    }

    async fn end(&self, ending: &Ending, hold: &LeaseHold, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError> {
        let mut state = self.enter("end")?;
        let id = &ending.grant.id;
        let indexed = state.index.contains_key(id);
        let stored = state.grant_of(id, hold)?;
        // DynamoDB: the write is conditioned on the status and revision the caller read.
        if stored.status != ending.grant.status || stored.revision != ending.grant.revision {
            return Err(GrantStoreError::Conflict(format!("grant {id} is settled already")));
        }
        let status = stored.settled_status(ending.status, indexed).map_err(GrantStoreError::Conflict)?;
        let lease = state.held_lease(hold)?;
        if ending.last_holder {
            // DynamoDB: a Delete conditioned on the lock and on no other holder.
            if lease.holders.iter().any(|h| h != id) {
                return Err(GrantStoreError::Conflict("other grants hold the lease".into()));
            }
            state.leases.remove(&hold.key);
        } else {
            lease.holders.remove(id);
            lease.lock = None;
        }
        state.index.remove(id);
        let grant = state.grants.get_mut(id).expect("checked");
        grant.status = status;
        grant.ended_at = Some(ending.ended_at);
        if ending.membership.is_some() {
            grant.membership_end = ending.membership;
        }
        let grant = grant.clone();
        state.record(audit);
        Ok(grant)
    }

    async fn revocation_failed(
        &self,
        grant_id: &str,
        request: Option<&RevocationRequest>,
        hold: &LeaseHold,
        audit: &[AuditRecord],
    ) -> Result<(), GrantStoreError> {
        let mut state = self.enter("revocation_failed")?;
        state.grant_of(grant_id, hold)?;
        state.held_lease(hold)?.lock = None;
        if let Some(request) = request {
            let grant = state.grants.get_mut(grant_id).expect("checked");
            if grant.revocation_requested.is_none() {
                grant.revocation_requested = Some(request.clone());
                if let Some(due) = state.index.get_mut(grant_id) {
                    *due = request.at;
                }
            }
        }
        state.record(audit);
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Grant>, GrantStoreError> {
        Ok(self.enter("get")?.grants.get(id).cloned())
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError> {
        let state = self.enter("due")?;
        let mut due: Vec<(DateTime<Utc>, &String)> =
            state.index.iter().filter(|(_, at)| **at <= now).map(|(id, at)| (*at, id)).collect();
        due.sort();
        let after = next.map(str::to_owned);
        let mut grants = Vec::new();
        let mut token = None;
        for (at, id) in due {
            if after.as_ref().is_some_and(|a| page_token(at, id) <= *a) {
                continue;
            }
            if grants.len() == limit {
                break;
            }
            token = Some(page_token(at, id));
            grants.push(state.grants[id].clone());
        }
        let more = grants.len() == limit;
        Ok(GrantPage { grants, next: if more { token } else { None } })
    }

    async fn list(&self, filter: &GrantFilter, limit: usize, next: Option<&str>) -> Result<GrantPage, GrantStoreError> {
        let state = self.enter("list")?;
        let mut grants: Vec<&Grant> = state.grants.values().filter(|g| filter.matches(g)).collect();
        grants.sort_by(|a, b| (b.granted_at, &b.id).cmp(&(a.granted_at, &a.id)));
        let skip: usize = match next {
            None => 0,
            Some(n) => n.parse().map_err(|_| GrantStoreError::InvalidToken(format!("{n:?} is not an offset")))?,
        };
        let page: Vec<Grant> = grants.iter().skip(skip).take(limit).map(|g| (*g).clone()).collect();
        let next = (skip + page.len() < grants.len()).then(|| (skip + page.len()).to_string());
        Ok(GrantPage { grants: page, next })
    }

    async fn mark_membership_missing(&self, grant_id: &str, audit: &[AuditRecord]) -> Result<Grant, GrantStoreError> {
        let mut state = self.enter("mark_membership_missing")?;
        let grant = state.grants.get_mut(grant_id).ok_or_else(|| GrantStoreError::NotFound(grant_id.to_owned()))?;
        if grant.status != GrantStatus::Active {
            return Err(GrantStoreError::Conflict(format!("grant {grant_id} is not active")));
        }
        grant.membership_missing = true;
        let grant = grant.clone();
        state.record(audit);
        Ok(grant)
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), GrantStoreError> {
        self.enter("append_audit")?.record(records);
        Ok(())
    }

    async fn audit_for(&self, grant_id: &str) -> Result<Vec<AuditRecord>, GrantStoreError> {
        let state = self.enter("audit_for")?;
        let mut records: Vec<AuditRecord> = state.audit.iter().filter(|r| r.grant_id == grant_id).cloned().collect();
        records.sort_by_key(|r| r.at); // stable: appended order within one instant
        Ok(records)
    }

    async fn chain_head(&self, grant_id: &str) -> Result<Option<ChainHead>, GrantStoreError> {
        Ok(self.enter("chain_head")?.chains.get(grant_id).cloned())
    }

    async fn seals(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<DaySeal>, GrantStoreError> {
        Ok(self.enter("seals")?.seals.range(from..=to).map(|(_, seal)| seal.clone()).collect())
    }

    async fn last_seal(&self) -> Result<Option<DaySeal>, GrantStoreError> {
        Ok(self.enter("last_seal")?.seals.values().next_back().cloned())
    }

    async fn put_seal(&self, seal: &DaySeal) -> Result<(), GrantStoreError> {
        let mut state = self.enter("put_seal")?;
        if state.seals.contains_key(&seal.day) {
            return Err(GrantStoreError::Conflict(format!("{} is sealed already", seal.day)));
        }
        state.seals.insert(seal.day, seal.clone());
        Ok(())
    }

    async fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        next: Option<&str>,
    ) -> Result<AuditPage, GrantStoreError> {
        let state = self.enter("audit_between")?;
        let mut records: Vec<&AuditRecord> = state.audit.iter().filter(|r| r.at >= from && r.at < to).collect();
        records.sort_by_key(|r| r.at);
        let skip: usize = match next {
            None => 0,
            Some(n) => n.parse().map_err(|_| GrantStoreError::InvalidToken(format!("{n:?} is not an offset")))?,
        };
        let page: Vec<AuditRecord> = records.iter().skip(skip).take(limit).map(|r| (*r).clone()).collect();
        let next = (skip + page.len() < records.len()).then(|| (skip + page.len()).to_string());
        Ok(AuditPage { records: page, next })
    }

    async fn begin_idempotent(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState, GrantStoreError> {
        let mut state = self.enter("begin_idempotent")?;
        let fresh = IdempotencyRecord::InProgress {
            hash: claim.request_hash.clone(),
            until: claim.in_progress_until,
            expires_at: claim.expires_at,
        };
        // DynamoDB: a put conditioned on `attribute_not_exists(pk) OR ttl <= :now OR (status =
        // in_progress AND in_progress_until <= :now)`; on failure the old item tells which.
        let outcome = match state.idempotency.get(&claim.key) {
            None => IdempotencyState::New,
            Some(
                IdempotencyRecord::InProgress { expires_at, .. } | IdempotencyRecord::Completed { expires_at, .. },
            ) if *expires_at <= claim.now => IdempotencyState::New,
            Some(IdempotencyRecord::InProgress { until, .. }) if *until <= claim.now => IdempotencyState::New,
            Some(IdempotencyRecord::InProgress { hash, .. } | IdempotencyRecord::Completed { hash, .. })
                if *hash != claim.request_hash =>
            {
                return Ok(IdempotencyState::Mismatch)
            }
            Some(IdempotencyRecord::Completed { grant_id, .. }) => {
                return Ok(IdempotencyState::Completed(grant_id.clone()))
            }
            Some(IdempotencyRecord::InProgress { .. }) => return Ok(IdempotencyState::InProgress),
        };
        state.idempotency.insert(claim.key.clone(), fresh);
        Ok(outcome)
    }

    async fn complete_idempotent(&self, key: &str, grant_id: &str) -> Result<(), GrantStoreError> {
        let mut state = self.enter("complete_idempotent")?;
        match state.idempotency.get(key).cloned() {
            Some(IdempotencyRecord::InProgress { hash, expires_at, .. }) => {
                state.idempotency.insert(
                    key.to_owned(),
                    IdempotencyRecord::Completed { hash, grant_id: grant_id.to_owned(), expires_at },
                );
                Ok(())
            }
            _ => Err(GrantStoreError::Conflict(format!("idempotency key {key:?} is not in progress"))),
        }
    }

    async fn abandon_idempotent(&self, key: &str) -> Result<(), GrantStoreError> {
        let mut state = self.enter("abandon_idempotent")?;
        if let Some(IdempotencyRecord::InProgress { .. }) = state.idempotency.get(key) {
            state.idempotency.remove(key);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Synced directory

/// What the synced directory knew, and whether it is known from before a given moment.
#[derive(Default)]
pub struct SyncedMemberships {
    /// `(integration, group, user)` memberships of the last successful sync.
    pub memberships: Mutex<BTreeSet<LeaseKey>>,
    /// When that sync finished; `None`: no successful sync.
    pub synced_at: Mutex<Option<DateTime<Utc>>>,
}

impl SyncedMemberships {
    pub fn synced(&self, at: DateTime<Utc>, memberships: &[LeaseKey]) {
        *self.synced_at.lock().unwrap() = Some(at);
        *self.memberships.lock().unwrap() = memberships.iter().cloned().collect();
    }
}

#[async_trait]
impl MembershipOracle for SyncedMemberships {
    async fn synced_membership(&self, key: &LeaseKey, before: DateTime<Utc>) -> Result<Option<bool>, GrantStoreError> {
        let synced_at = *self.synced_at.lock().unwrap();
        Ok(synced_at.filter(|at| *at <= before).map(|_| self.memberships.lock().unwrap().contains(key)))
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduler and bus

/// Schedules in memory: name -> the grant it expires.
#[derive(Default)]
pub struct FakeScheduler {
    pub schedules: Mutex<BTreeMap<String, Grant>>,
    /// Reminder schedules: name -> (grant id, when).
    pub reminders: Mutex<BTreeMap<String, (String, DateTime<Utc>)>>,
    pub deleted: Mutex<Vec<String>>,
    pub fail_create: AtomicBool,
    pub fail_delete: AtomicBool,
}

impl FakeScheduler {
    /// Schedules due at `now` (what the local runner would deliver), by grant id.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<String> {
        self.schedules.lock().unwrap().values().filter(|g| g.expiry() <= now).map(|g| g.id.clone()).collect()
    }
}

#[async_trait]
impl ExpiryScheduler for FakeScheduler {
    async fn create(&self, grant: &Grant) -> Result<String, SchedulerError> {
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(SchedulerError("injected: service unavailable".into()));
        }
        let name = crate::domain::model::schedule_name_for(grant);
        self.schedules.lock().unwrap().insert(name.clone(), grant.clone());
        Ok(name)
    }
    async fn create_reminder(&self, grant: &Grant, at: DateTime<Utc>) -> Result<String, SchedulerError> {
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(SchedulerError("injected: service unavailable".into()));
        }
        let name = crate::domain::model::reminder_schedule_name(&grant.id);
        self.reminders.lock().unwrap().insert(name.clone(), (grant.id.clone(), at));
        Ok(name)
    }
    async fn delete(&self, name: &str) -> Result<(), SchedulerError> {
        if self.fail_delete.load(Ordering::SeqCst) {
            return Err(SchedulerError("injected: service unavailable".into()));
        }
        self.schedules.lock().unwrap().remove(name);
        self.reminders.lock().unwrap().remove(name);
        self.deleted.lock().unwrap().push(name.to_owned());
        Ok(())
    }
}

/// Keeps every event published.
#[derive(Default)]
pub struct RecordingBus {
    pub events: Mutex<Vec<GrantEvent>>,
    pub fail: AtomicBool,
}

impl RecordingBus {
    pub fn published(&self) -> Vec<GrantEvent> {
        self.events.lock().unwrap().clone()
    }
    /// The detail-types published for one grant, in order.
    pub fn types_for(&self, grant_id: &str) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.grant_id() == Some(grant_id))
            .map(|e| e.detail_type.detail_type())
            .collect()
    }
}

#[async_trait]
impl EventBus for RecordingBus {
    async fn publish(&self, events: &[GrantEvent]) -> Result<(), EventBusError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(EventBusError("injected: PutEvents failed".into()));
        }
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}
