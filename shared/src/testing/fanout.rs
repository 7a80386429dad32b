//! Doubles of the fan-out's ports: a queue that keeps what was sent, and the runs' records.

use crate::ports::{
    NewKind, PartIds, PartKind, PartMessage, PartQueue, PartReport, QueueError, RunStage, StoreError, SyncRun,
    SyncRunStore,
};
use async_trait::async_trait;
use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::Mutex,
};

/// A queue in memory: `take` hands out what was sent, in order; `fail_next` refuses sends.
#[derive(Default)]
pub struct MemoryQueue {
    pub messages: Mutex<VecDeque<PartMessage>>,
    pub sent: Mutex<Vec<PartMessage>>,
    pub fail_sends: Mutex<usize>,
}

impl MemoryQueue {
    pub fn take(&self) -> Option<PartMessage> {
        self.messages.lock().unwrap().pop_front()
    }
    pub fn len(&self) -> usize {
        self.messages.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The next `n` sends fail.
    pub fn fail_next(&self, n: usize) {
        *self.fail_sends.lock().unwrap() = n;
    }
}

#[async_trait]
impl PartQueue for MemoryQueue {
    async fn send(&self, parts: &[PartMessage]) -> Result<(), QueueError> {
        {
            let mut failing = self.fail_sends.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(QueueError::Aws("queue unavailable (test)".into()));
            }
        }
        self.messages.lock().unwrap().extend(parts.iter().cloned());
        self.sent.lock().unwrap().extend(parts.iter().cloned());
        Ok(())
    }
}

/// A part of a run: `(integration, run id, kind, part)`.
type PartKey = (String, String, PartKind, u32);

/// Runs' records in memory, with the DynamoDB adapter's conditions.
#[derive(Default)]
pub struct MemoryRuns {
    runs: Mutex<HashMap<(String, String), SyncRun>>,
    plans: Mutex<HashMap<(String, String, u32), Vec<String>>>,
    reports: Mutex<HashMap<PartKey, (PartReport, PartIds)>>,
    done: Mutex<HashMap<(String, String, PartKind), BTreeSet<u32>>>,
    new_ids: Mutex<HashMap<(String, String, NewKind), HashSet<String>>>,
}

fn key(integration: &str, run_id: &str) -> (String, String) {
    (integration.to_owned(), run_id.to_owned())
}

#[async_trait]
impl SyncRunStore for MemoryRuns {
    async fn put_run(&self, run: &SyncRun, expected: Option<RunStage>) -> Result<bool, StoreError> {
        let mut runs = self.runs.lock().unwrap();
        let k = key(&run.integration, &run.run_id);
        let stored = runs.get(&k).map(|r| r.stage);
        if stored != expected {
            if expected.is_none() {
                return Err(StoreError::Aws(format!("run {} exists", run.run_id)));
            }
            return Ok(false);
        }
        runs.insert(k, run.clone());
        Ok(true)
    }
    async fn run(&self, integration: &str, run_id: &str) -> Result<Option<SyncRun>, StoreError> {
        Ok(self.runs.lock().unwrap().get(&key(integration, run_id)).cloned())
    }
    async fn put_member_plan(
        &self,
        integration: &str,
        run_id: &str,
        part: u32,
        group_ids: &[String],
    ) -> Result<(), StoreError> {
        self.plans.lock().unwrap().insert((integration.into(), run_id.into(), part), group_ids.to_vec());
        Ok(())
    }
    async fn member_plan(&self, integration: &str, run_id: &str, part: u32) -> Result<Vec<String>, StoreError> {
        let plans = self.plans.lock().unwrap();
        plans
            .get(&(integration.into(), run_id.into(), part))
            .cloned()
            .ok_or_else(|| StoreError::Mapping(format!("no plan for members part {part}")))
    }
    async fn report_part(
        &self,
        integration: &str,
        run_id: &str,
        kind: PartKind,
        part: u32,
        report: &PartReport,
        ids: &PartIds,
    ) -> Result<u32, StoreError> {
        self.reports
            .lock()
            .unwrap()
            .insert((integration.into(), run_id.into(), kind, part), (report.clone(), ids.clone()));
        let mut done = self.done.lock().unwrap();
        let parts = done.entry((integration.into(), run_id.into(), kind)).or_default();
        parts.insert(part);
        Ok(parts.len() as u32)
    }
    async fn part_report(
        &self,
        integration: &str,
        run_id: &str,
        kind: PartKind,
        part: u32,
    ) -> Result<Option<PartReport>, StoreError> {
        Ok(self.reports.lock().unwrap().get(&(integration.into(), run_id.into(), kind, part)).map(|(r, _)| r.clone()))
    }
    async fn part_ids(&self, integration: &str, run_id: &str, part: u32) -> Result<PartIds, StoreError> {
        let reports = self.reports.lock().unwrap();
        Ok(reports
            .get(&(integration.into(), run_id.into(), PartKind::Users, part))
            .map(|(_, i)| i.clone())
            .unwrap_or_default())
    }
    async fn put_new_ids(
        &self,
        integration: &str,
        run_id: &str,
        kind: NewKind,
        _part: u32,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let mut all = self.new_ids.lock().unwrap();
        all.entry((integration.into(), run_id.into(), kind)).or_default().extend(ids.iter().cloned());
        Ok(())
    }
    async fn new_ids(&self, integration: &str, run_id: &str, kind: NewKind) -> Result<HashSet<String>, StoreError> {
        Ok(self.new_ids.lock().unwrap().get(&(integration.into(), run_id.into(), kind)).cloned().unwrap_or_default())
    }
}
