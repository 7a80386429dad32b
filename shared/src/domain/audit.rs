//! Proof that the audit trail is whole: each grant's chain checked against its head, and the
//! daily seals against the days' records (`jitctl audit verify`); and the sealing of days, run
//! after every scheduled sync (`seal_days`). The hashing is `model::audit_chain`.

use super::model::{
    audit_chain::{self, ChainBreak, SealBreak},
    AuditRecord, DaySeal, EventType, GrantEvent, GrantFilter, DRIFT_AUDIT_ID, POLICY_AUDIT_ID,
};
use crate::ports::{EventBus, GrantStore, GrantStoreError};
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
    /// Seals compared with their copies kept outside the table (`verify_anchors`).
    pub anchors: usize,
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

/// A seal's hash kept outside the table: the `Audit Day Sealed` event or the `audit_day_sealed`
/// log line the sealing writes. Someone who can rewrite the table can rewrite the records and
/// every seal after them consistently; not these copies. As each seal names the one before, a
/// copy of a day's seal vouches for every day up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealAnchor {
    pub day: NaiveDate,
    /// [`DaySeal::hash`].
    pub hash: String,
}

impl SealAnchor {
    pub fn of(seal: &DaySeal) -> Self {
        Self { day: seal.day, hash: seal.hash() }
    }

    /// The fields of the event's `detail` (also the log line's).
    pub fn detail(seal: &DaySeal) -> serde_json::Value {
        serde_json::json!({
            "day": seal.day,
            "records": seal.records,
            "digest": seal.digest,
            "prev": seal.prev,
            "sealed_at": seal.sealed_at,
            "hash": seal.hash(),
        })
    }

    /// One copy from a line of JSON, as it is exported: the `Audit Day Sealed` event (its
    /// `detail`), the detail alone, or the `audit_day_sealed` log line (fields at its top level).
    pub fn parse(line: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let fields = value.get("detail").filter(|d| d.is_object()).unwrap_or(&value);
        let text = |key: &str| fields.get(key).and_then(serde_json::Value::as_str);
        let (Some(day), Some(hash)) = (text("day"), text("hash")) else {
            return Err(
                "no `day` and `hash` (an Audit Day Sealed event, its detail, or the audit_day_sealed log line)".into(),
            );
        };
        let day = day.parse().map_err(|e| format!("`day` {day:?} is not a date: {e}"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`hash` {hash:?} is not a SHA-256 in hex"));
        }
        Ok(Self { day, hash: hash.to_ascii_lowercase() })
    }
}

/// Compares the stored seals with their copies kept outside the table, adding to `report`.
pub async fn verify_anchors(
    store: &dyn GrantStore,
    anchors: &[SealAnchor],
    report: &mut AuditVerification,
) -> Result<(), GrantStoreError> {
    let (Some(first), Some(last)) = (anchors.iter().map(|a| a.day).min(), anchors.iter().map(|a| a.day).max()) else {
        return Ok(());
    };
    let stored: std::collections::BTreeMap<NaiveDate, String> =
        store.seals(first, last).await?.iter().map(|s| (s.day, s.hash())).collect();
    for anchor in anchors {
        report.anchors += 1;
        match stored.get(&anchor.day) {
            Some(hash) if *hash == anchor.hash => {}
            Some(_) => report.seal_breaks.push(SealBreak::Anchor { day: anchor.day }),
            None => report.seal_breaks.push(SealBreak::AnchorMissing { day: anchor.day }),
        }
    }
    Ok(())
}

/// Seals every day not sealed yet that ended at least [`SEAL_AFTER`] ago, oldest first, each
/// chained to the one before. The first seal ever is of yesterday: days before it are covered by
/// the grants' chains only. A day another caller sealed first ends this call (the next goes on).
///
/// Each seal goes out of the table too ([`SealAnchor`]): a log line, and `Audit Day Sealed` on
/// `events` (best effort: a seal stands without its event, and the log line is still written).
pub async fn seal_days(
    store: &dyn GrantStore,
    events: &dyn EventBus,
    now: DateTime<Utc>,
) -> Result<Vec<DaySeal>, GrantStoreError> {
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
                // Copies outside the table, to compare the seal with (`SealAnchor`): this log line
                // and the event below.
                tracing::info!(event = "audit_day_sealed", %day, records = seal.records, digest = %seal.digest,
                    prev = seal.prev.as_deref().unwrap_or_default(), sealed_at = %seal.sealed_at, hash = %seal.hash(),
                    "audit day sealed");
                let event = GrantEvent { detail_type: EventType::AuditDaySealed, detail: SealAnchor::detail(&seal) };
                if let Err(e) = events.publish(&[event]).await {
                    tracing::error!(%day, error = %e, "could not publish Audit Day Sealed (the log line holds the seal's hash)");
                }
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
        testing::{MemoryGrantStore, RecordingBus},
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
        let earliest = seal_days(&store, &RecordingBus::default(), at(28, 0) + Duration::minutes(10)).await.unwrap();
        assert_eq!(earliest.iter().map(|s| (s.day, s.records)).collect::<Vec<_>>(), vec![(at(26, 0).date_naive(), 0)]);
        let first = seal_days(&store, &RecordingBus::default(), at(28, 1)).await.unwrap();
        assert_eq!(first.iter().map(|s| (s.day, s.records)).collect::<Vec<_>>(), vec![(at(27, 0).date_naive(), 1)]);
        assert_eq!(first[0].prev, Some(earliest[0].hash()));
        write(&store, "a", at(28, 9)).await;
        write(&store, "b", at(29, 9)).await;
        let caught_up = seal_days(&store, &RecordingBus::default(), at(30, 2)).await.unwrap();
        assert_eq!(caught_up.len(), 2, "28th and 29th: {caught_up:?}");
        assert_eq!(caught_up[0].prev, Some(first[0].hash()));
        assert!(
            seal_days(&store, &RecordingBus::default(), at(30, 3)).await.unwrap().is_empty(),
            "nothing sealed twice"
        );

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
        seal_days(&store, &RecordingBus::default(), at(29, 1)).await.unwrap();
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

    #[tokio::test]
    async fn each_seal_goes_out_as_an_event_whose_copy_catches_the_table_rewritten_and_sealed_again() {
        let (store, bus) = (MemoryGrantStore::default(), RecordingBus::default());
        write(&store, "a", at(27, 9)).await;
        write(&store, "b", at(28, 9)).await;
        let first = seal_days(&store, &bus, at(28, 1)).await.unwrap();
        let second = seal_days(&store, &bus, at(29, 1)).await.unwrap();
        let published = bus.published();
        assert_eq!(
            published.iter().map(|e| e.detail_type.detail_type()).collect::<Vec<_>>(),
            vec!["Audit Day Sealed", "Audit Day Sealed"]
        );
        assert_eq!(published[1].detail["hash"], second[0].hash());
        assert_eq!(published[1].detail["prev"], first[0].hash());
        assert_eq!(published[1].detail["records"], 1);
        // The copies kept elsewhere, read back as exported (the events as EventBridge delivers them).
        let anchors: Vec<SealAnchor> = published
            .iter()
            .map(|e| {
                SealAnchor::parse(
                    &serde_json::json!({ "detail-type": "Audit Day Sealed", "detail": e.detail }).to_string(),
                )
            })
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(anchors, vec![SealAnchor::of(&first[0]), SealAnchor::of(&second[0])]);
        let scope = AuditScope::Since(at(27, 0));
        let mut clean = verify(&store, &scope, at(29, 2), &mut |_| {}).await.unwrap();
        verify_anchors(&store, &anchors, &mut clean).await.unwrap();
        assert!(clean.intact(), "{clean:?}");
        assert_eq!(clean.anchors, 2);

        // Someone with the table's rights removes a's record of the 27th and seals both days again,
        // consistently: the table alone verifies, the copies do not.
        store.tamper_audit(|records| records.retain(|r| r.grant_id != "a"));
        store.tamper_seals(|seals| seals.clear());
        seal_days(&store, &RecordingBus::default(), at(28, 1)).await.unwrap();
        seal_days(&store, &RecordingBus::default(), at(29, 1)).await.unwrap();
        let mut report = verify(&store, &scope, at(29, 2), &mut |_| {}).await.unwrap();
        assert!(report.seal_breaks.is_empty(), "the rewrite is consistent: {report:?}");
        verify_anchors(&store, &anchors, &mut report).await.unwrap();
        assert_eq!(
            report.seal_breaks,
            vec![SealBreak::Anchor { day: at(27, 0).date_naive() }, SealBreak::Anchor { day: at(28, 0).date_naive() }]
        );
        // And a seal removed with its day's records: its copy still names it.
        store.tamper_seals(|seals| {
            seals.remove(&at(28, 0).date_naive());
        });
        let mut report = AuditVerification::default();
        verify_anchors(&store, &anchors[1..], &mut report).await.unwrap();
        assert_eq!(report.seal_breaks, vec![SealBreak::AnchorMissing { day: at(28, 0).date_naive() }]);
    }

    #[tokio::test]
    async fn a_seal_stands_when_its_event_cannot_be_published() {
        let (store, bus) = (MemoryGrantStore::default(), RecordingBus::default());
        bus.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let sealed = seal_days(&store, &bus, at(28, 1)).await.unwrap();
        assert_eq!(sealed.len(), 1);
        assert_eq!(store.last_seal().await.unwrap().as_ref(), sealed.first());
    }

    #[test]
    fn a_seal_copy_is_read_from_the_event_its_detail_or_the_log_line() {
        let hash = "ab".repeat(32);
        let want = SealAnchor { day: at(28, 0).date_naive(), hash: hash.clone() };
        let lines = [
            format!(
                r#"{{"detail-type":"Audit Day Sealed","source":"jit-access","detail":{{"day":"2026-11-28","records":3,"hash":"{hash}"}}}}"#
            ),
            format!(r#"{{"day":"2026-11-28","hash":"{}"}}"#, hash.to_uppercase()),
            format!(
                r#"{{"timestamp":"2026-11-29T00:15:02Z","level":"INFO","event":"audit_day_sealed","day":"2026-11-28","hash":"{hash}","message":"audit day sealed"}}"#
            ),
        ];
        for line in &lines {
            assert_eq!(SealAnchor::parse(line), Ok(want.clone()), "{line}");
        }
        for (line, says) in [
            ("not json", "not JSON"),
            (r#"{"day":"2026-11-28"}"#, "no `day` and `hash`"),
            (&format!(r#"{{"day":"28.11.2026","hash":"{hash}"}}"#), "is not a date"),
            (r#"{"day":"2026-11-28","hash":"abc"}"#, "is not a SHA-256"),
        ] {
            let error = SealAnchor::parse(line).unwrap_err();
            assert!(error.contains(says), "{line}: {error}");
        }
    }
}
