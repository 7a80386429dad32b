//! Proof that the audit trail is whole: each grant's chain checked against its head, and the
//! daily seals against the days' records (`jitctl audit verify`); and the sealing of days, run
//! after every scheduled sync (`seal_days`). The hashing is `model::audit_chain`.

use super::model::{
    audit_chain::{self, ChainBreak, SealBreak},
    AuditRecord, DaySeal, GrantFilter, DRIFT_AUDIT_ID, POLICY_AUDIT_ID,
};
use crate::ports::{GrantStore, GrantStoreError};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::BTreeSet;

/// A day is sealed this long after it ended: a record stamped just before midnight may land a
/// little later (the writer took its time between reading the clock and writing), and the
/// per-day index it is read from is eventually consistent.
pub const SEAL_AFTER: Duration = Duration::minutes(15);
/// Days sealed by one call at most (a catch-up after an outage continues on the next call).
pub const SEAL_DAYS_PER_CALL: usize = 31;
const PAGE: usize = 500;
/// Before any seal this product can have written: where "every seal" starts looking.
const FIRST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2020, 1, 1).expect("a valid date");

/// What `verify` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScope {
    /// Every grant (as listed) and the policy's trail, and every seal.
    All,
    /// Grants with records from this instant on (their whole chains), and the seals of the days
    /// from its day on.
    Since(DateTime<Utc>),
    /// One grant's chain.
    Grant(String),
}

/// The result of `verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditVerification {
    pub grants: usize,
    pub records: usize,
    /// Records written before chains existed: counted, not verifiable.
    pub unchained: usize,
    pub chain_breaks: Vec<(String, ChainBreak)>,
    pub seals: usize,
    pub seal_breaks: Vec<SealBreak>,
    /// Days in scope not sealed yet (today, or before the first seal).
    pub unsealed_days: Vec<NaiveDate>,
}

impl AuditVerification {
    /// Nothing was removed or altered.
    pub fn intact(&self) -> bool {
        self.chain_breaks.is_empty() && self.seal_breaks.is_empty()
    }
}

/// Checks the chains (and seals) in `scope`. `progress` is told each grant checked.
pub async fn verify(
    store: &dyn GrantStore,
    scope: &AuditScope,
    now: DateTime<Utc>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<AuditVerification, GrantStoreError> {
    let mut report = AuditVerification::default();
    let grants: BTreeSet<String> = match scope {
        AuditScope::Grant(id) => BTreeSet::from([id.clone()]),
        AuditScope::Since(from) => records_between(store, *from, now).await?.into_iter().map(|r| r.grant_id).collect(),
        AuditScope::All => {
            let mut ids = BTreeSet::from([POLICY_AUDIT_ID.to_owned(), DRIFT_AUDIT_ID.to_owned()]);
            let mut next = None;
            loop {
                let page = store.list(&GrantFilter::default(), PAGE, next.as_deref()).await?;
                ids.extend(page.grants.into_iter().map(|g| g.id));
                next = page.next;
                if next.is_none() {
                    break;
                }
            }
            ids
        }
    };
    for grant_id in &grants {
        progress(grant_id);
        let records = store.audit_for(grant_id).await?;
        let head = store.chain_head(grant_id).await?;
        let check = audit_chain::verify(&records, head.as_ref());
        report.grants += 1;
        report.records += records.len();
        report.unchained += check.unchained;
        report.chain_breaks.extend(check.breaks.into_iter().map(|b| (grant_id.clone(), b)));
    }
    let days = match scope {
        AuditScope::Grant(_) => None,
        AuditScope::Since(from) => Some(from.date_naive()),
        AuditScope::All => store.seals(FIRST_DAY, now.date_naive()).await?.first().map(|s| s.day),
    };
    if let Some(first) = days {
        verify_seals(store, first, now, &mut report).await?;
    }
    Ok(report)
}

/// Every day from `first` to today: sealed days checked against their records and the seal of
/// the day before; a day missing between sealed ones is a removed seal.
async fn verify_seals(
    store: &dyn GrantStore,
    first: NaiveDate,
    now: DateTime<Utc>,
    report: &mut AuditVerification,
) -> Result<(), GrantStoreError> {
    let today = now.date_naive();
    let before = first.pred_opt().unwrap_or(first);
    let seals = store.seals(before, today).await?;
    let last_sealed = seals.last().map(|s| s.day);
    let mut previous: Option<&DaySeal> = seals.first().filter(|s| s.day == before && before != first);
    let mut seals_in_range = seals.iter().filter(|s| s.day >= first).peekable();
    for day in first.iter_days().take_while(|d| *d <= today) {
        match seals_in_range.next_if(|s| s.day == day) {
            Some(seal) => {
                let records = records_between(store, start_of(day), start_of(day.succ_opt().unwrap_or(day))).await?;
                report.seals += 1;
                report.seal_breaks.extend(audit_chain::verify_seal(seal, &records, previous));
                previous = Some(seal);
            }
            None if last_sealed.is_some_and(|last| day < last) && previous.is_some() => {
                report.seal_breaks.push(SealBreak::Missing { day });
                previous = None;
            }
            None => report.unsealed_days.push(day),
        }
    }
    Ok(())
}

/// Seals every day not sealed yet that ended at least [`SEAL_AFTER`] ago, oldest first, each
/// chained to the one before. The first seal ever is of yesterday: days before it are covered by
/// the grants' chains only. A day another caller sealed first ends this call (the next goes on).
pub async fn seal_days(store: &dyn GrantStore, now: DateTime<Utc>) -> Result<Vec<DaySeal>, GrantStoreError> {
    let Some(last_day) = (now - SEAL_AFTER).date_naive().pred_opt() else { return Ok(Vec::new()) };
    let mut previous = store.last_seal().await?;
    let first_day = match &previous {
        Some(seal) => match seal.day.succ_opt() {
            Some(day) => day,
            None => return Ok(Vec::new()),
        },
        None => last_day,
    };
    let mut sealed = Vec::new();
    for day in first_day.iter_days().take_while(|d| *d <= last_day).take(SEAL_DAYS_PER_CALL) {
        let records = records_between(store, start_of(day), start_of(day.succ_opt().unwrap_or(day))).await?;
        let seal = DaySeal::new(day, &records, previous.as_ref(), now);
        match store.put_seal(&seal).await {
            Ok(()) => {
                // The digest in the logs too: a copy outside the table, to compare a seal with.
                tracing::info!(event = "audit_day_sealed", %day, records = seal.records, digest = %seal.digest, "audit day sealed");
                sealed.push(seal.clone());
                previous = Some(seal);
            }
            Err(GrantStoreError::Conflict(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sealed)
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Every record with `from <= at < to`, in the per-day index's order (all pages).
pub async fn records_between(
    store: &dyn GrantStore,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<AuditRecord>, GrantStoreError> {
    let mut records = Vec::new();
    let mut next = None;
    loop {
        let page = store.audit_between(from, to, PAGE, next.as_deref()).await?;
        records.extend(page.records);
        next = page.next;
        if next.is_none() {
            return Ok(records);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::model::{sample_grant, AuditAction, AuditOutcome},
        testing::MemoryGrantStore,
    };
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    async fn write(store: &MemoryGrantStore, grant_id: &str, when: DateTime<Utc>) {
        let mut grant = sample_grant();
        grant.id = grant_id.to_owned();
        let record = AuditRecord::new(&grant, when, "me", AuditAction::Created, AuditOutcome::Succeeded);
        store.append_audit(&[record]).await.unwrap();
    }

    #[tokio::test]
    async fn days_are_sealed_once_each_after_the_margin_and_chained() {
        let store = MemoryGrantStore::default();
        write(&store, "a", at(27, 10)).await;
        // Ten minutes into the 28th, the 27th is not sealed yet: the first seal is of the 26th.
        let earliest = seal_days(&store, at(28, 0) + Duration::minutes(10)).await.unwrap();
        assert_eq!(earliest.iter().map(|s| (s.day, s.records)).collect::<Vec<_>>(), vec![(at(26, 0).date_naive(), 0)]);
        let first = seal_days(&store, at(28, 1)).await.unwrap();
        assert_eq!(first.iter().map(|s| (s.day, s.records)).collect::<Vec<_>>(), vec![(at(27, 0).date_naive(), 1)]);
        assert_eq!(first[0].prev, Some(earliest[0].hash()));
        write(&store, "a", at(28, 9)).await;
        write(&store, "b", at(29, 9)).await;
        let caught_up = seal_days(&store, at(30, 2)).await.unwrap();
        assert_eq!(caught_up.len(), 2, "28th and 29th: {caught_up:?}");
        assert_eq!(caught_up[0].prev, Some(first[0].hash()));
        assert!(seal_days(&store, at(30, 3)).await.unwrap().is_empty(), "nothing sealed twice");

        let report = verify(&store, &AuditScope::Since(at(27, 0)), at(30, 3), &mut |_| {}).await.unwrap();
        assert!(report.intact(), "{report:?}");
        assert_eq!((report.grants, report.records, report.seals), (2, 3, 3));
        assert_eq!(report.unsealed_days, vec![at(30, 0).date_naive()]);
    }

    #[tokio::test]
    async fn a_record_removed_from_a_sealed_day_or_a_chain_fails_verification() {
        let store = MemoryGrantStore::default();
        write(&store, "a", at(28, 9)).await;
        write(&store, "a", at(28, 10)).await;
        write(&store, "b", at(28, 11)).await;
        seal_days(&store, at(29, 1)).await.unwrap();
        store.tamper_audit(|records| records.retain(|r| r.grant_id != "b"));
        let report = verify(&store, &AuditScope::Since(at(28, 0)), at(29, 2), &mut |_| {}).await.unwrap();
        assert!(!report.intact());
        assert_eq!(report.seal_breaks, vec![SealBreak::Contents { day: at(28, 0).date_naive(), sealed: 3, stored: 2 }]);
        // A record removed from a grant's chain (the newest of a's two).
        store.tamper_audit(|records| records.retain(|r| r.at != at(28, 10)));
        let report = verify(&store, &AuditScope::Grant("a".into()), at(29, 2), &mut |_| {}).await.unwrap();
        assert_eq!(
            report.chain_breaks,
            vec![
                ("a".to_owned(), ChainBreak::Missing { n: 2 }),
                ("a".to_owned(), ChainBreak::Length { head_n: 2, stored_n: 1 })
            ]
        );
    }
}
