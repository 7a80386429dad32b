//! Tamper evidence for the audit trail (SPEC inv. 4, issue 10 point 2).
//!
//! IAM already forbids the functions to update or delete audit items; what it cannot forbid is a
//! `PutItem` that overwrites one, nor a person with wider rights. So each grant's records form a
//! hash chain: every record carries its place `n` (1, 2, ...) and the SHA-256 of the record
//! before it, and the chain's head (its length and the hash of its newest record) is stored
//! beside them, written in the same transaction as the records. A record altered, removed,
//! inserted or reordered breaks a link; removing the newest records breaks the head. A daily seal
//! ([`DaySeal`]) chains the days: the digest of every record of a day, and the previous seal's
//! hash, so a grant's whole trail removed (records and head) still shows.
//!
//! The hash is over the record's JSON (field order is the struct's, `None` fields omitted), as
//! stored: free text is cut to its stored size before the record is linked.

use super::AuditRecord;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// A record's place in its grant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// 1 for a grant's first record.
    pub n: u64,
    /// [`record_hash`] of record `n - 1`; `None` for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

/// The newest link of a grant's chain: how many records it has and the hash of the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub n: u64,
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of the record as stored, its link included.
pub fn record_hash(record: &AuditRecord) -> String {
    hex(&sha2::Sha256::digest(serde_json::to_vec(record).expect("audit records serialize")))
}

/// Links `records`, in order, after `head` (the grant's chain so far, `None` if it has none);
/// every record must belong to the same grant. Returns the new head.
pub fn link(head: Option<&ChainHead>, records: &mut [AuditRecord]) -> Option<ChainHead> {
    let mut head = head.cloned();
    for record in records {
        record.chain =
            Some(ChainLink { n: head.as_ref().map_or(1, |h| h.n + 1), prev: head.as_ref().map(|h| h.hash.clone()) });
        head = Some(ChainHead { n: record.chain.as_ref().map_or(0, |l| l.n), hash: record_hash(record) });
    }
    head
}

/// What is wrong with a grant's chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("record {n} is missing")]
    Missing { n: u64 },
    #[error("record {n} appears {count} times (records {ids})")]
    Duplicated { n: u64, count: usize, ids: String },
    #[error("record {n} ({id}) does not follow record {previous}: one of them was altered")]
    Altered { n: u64, id: String, previous: u64 },
    #[error("the chain's head says {head_n} records, the newest stored is {stored_n}: records were removed or added")]
    Length { head_n: u64, stored_n: u64 },
    #[error("the newest record ({id}) is not the one the chain's head names: it was altered")]
    HeadMismatch { id: String },
    #[error("chained records exist but the chain's head is gone")]
    HeadMissing,
    #[error("the chain's head names {n} records but none is stored")]
    RecordsMissing { n: u64 },
}

/// The result of checking one grant's chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainCheck {
    /// Records that are part of the chain.
    pub chained: usize,
    /// Records without a link: written before chains existed (not verifiable, reported apart).
    pub unchained: usize,
    pub breaks: Vec<ChainBreak>,
}

/// Checks a grant's records (any order) against its head.
pub fn verify(records: &[AuditRecord], head: Option<&ChainHead>) -> ChainCheck {
    let mut linked: Vec<(&ChainLink, &AuditRecord)> =
        records.iter().filter_map(|r| r.chain.as_ref().map(|l| (l, r))).collect();
    linked.sort_by_key(|(l, _)| l.n);
    let mut check = ChainCheck { chained: linked.len(), unchained: records.len() - linked.len(), breaks: Vec::new() };
    let Some(head) = head else {
        if !linked.is_empty() {
            check.breaks.push(ChainBreak::HeadMissing);
        }
        return check;
    };
    let Some(&(newest, last)) = linked.last() else {
        check.breaks.push(ChainBreak::RecordsMissing { n: head.n });
        return check;
    };
    // One pass over 1..=head.n: each place held by exactly one record that names its predecessor.
    let mut previous: Option<(u64, String)> = None;
    let mut at = 0;
    for n in 1..=head.n.max(newest.n) {
        let same: Vec<&AuditRecord> = linked[at..].iter().take_while(|(l, _)| l.n == n).map(|(_, r)| *r).collect();
        at += same.len();
        match same.as_slice() {
            [] => {
                check.breaks.push(ChainBreak::Missing { n });
                previous = None;
            }
            [record] => {
                let link = record.chain.as_ref().expect("linked");
                if let Some((p, hash)) = &previous {
                    if link.prev.as_deref() != Some(hash.as_str()) {
                        check.breaks.push(ChainBreak::Altered { n, id: record.id.clone(), previous: *p });
                    }
                } else if n == 1 && link.prev.is_some() {
                    // A first record that names a predecessor was not written as a first record.
                    check.breaks.push(ChainBreak::Altered { n, id: record.id.clone(), previous: 0 });
                }
                previous = Some((n, record_hash(record)));
            }
            many => {
                let ids = many.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ");
                check.breaks.push(ChainBreak::Duplicated { n, count: many.len(), ids });
                previous = None;
            }
        }
    }
    if newest.n != head.n {
        check.breaks.push(ChainBreak::Length { head_n: head.n, stored_n: newest.n });
    } else if record_hash(last) != head.hash {
        check.breaks.push(ChainBreak::HeadMismatch { id: last.id.clone() });
    }
    check
}

/// The seal of one day (UTC) of the audit trail: every record of the day, in the order of the
/// per-day index, digested, and chained to the previous sealed day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySeal {
    pub day: NaiveDate,
    pub records: u64,
    /// SHA-256 over the day's record hashes, in order.
    pub digest: String,
    /// [`DaySeal::hash`] of the previous sealed day; `None` for the first seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    pub sealed_at: DateTime<Utc>,
}

impl DaySeal {
    pub fn new(day: NaiveDate, records: &[AuditRecord], previous: Option<&DaySeal>, sealed_at: DateTime<Utc>) -> Self {
        Self {
            day,
            records: records.len() as u64,
            digest: day_digest(records),
            prev: previous.map(DaySeal::hash),
            sealed_at,
        }
    }

    /// SHA-256 of the seal itself (what the next day's seal names).
    pub fn hash(&self) -> String {
        hex(&sha2::Sha256::digest(serde_json::to_vec(self).expect("seals serialize")))
    }
}

/// SHA-256 over the records' hashes, in the given order.
pub fn day_digest(records: &[AuditRecord]) -> String {
    let mut digest = sha2::Sha256::new();
    for record in records {
        digest.update(record_hash(record).as_bytes());
        digest.update(b"\n");
    }
    hex(&digest.finalize())
}

/// What is wrong with a day's seal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealBreak {
    #[error("{day}: sealed with {sealed} records, {stored} stored now, or one of them altered")]
    Contents { day: NaiveDate, sealed: u64, stored: u64 },
    #[error("{day}: the seal does not follow the seal of {previous}: a seal was altered or removed")]
    Chain { day: NaiveDate, previous: NaiveDate },
    #[error("{day}: no seal, though later days are sealed: the seal was removed")]
    Missing { day: NaiveDate },
    /// The seal's copy kept outside the table (`audit::SealAnchor`) names another seal: the day,
    /// or one before it, was rewritten and everything sealed again.
    #[error("{day}: the seal differs from its copy kept outside the table: this day or one before it was rewritten and sealed again")]
    Anchor { day: NaiveDate },
    #[error("{day}: no seal, though its copy kept outside the table names one: the seal was removed")]
    AnchorMissing { day: NaiveDate },
}

/// Checks one day's seal against the day's records (in the index's order) and the seal before it
/// (`None` when the day is the first checked: its `prev` is then taken on trust).
pub fn verify_seal(seal: &DaySeal, records: &[AuditRecord], previous: Option<&DaySeal>) -> Vec<SealBreak> {
    let mut breaks = Vec::new();
    if seal.records != records.len() as u64 || seal.digest != day_digest(records) {
        breaks.push(SealBreak::Contents { day: seal.day, sealed: seal.records, stored: records.len() as u64 });
    }
    if let Some(previous) = previous {
        if seal.prev.as_deref() != Some(previous.hash().as_str()) {
            breaks.push(SealBreak::Chain { day: seal.day, previous: previous.day });
        }
    }
    breaks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{sample_grant, AuditAction, AuditOutcome};
    use chrono::TimeZone;

    fn records(count: usize) -> (Vec<AuditRecord>, Option<ChainHead>) {
        let grant = sample_grant();
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        let mut records: Vec<AuditRecord> = (0..count)
            .map(|i| {
                AuditRecord::new(
                    &grant,
                    at + chrono::Duration::seconds(i as i64),
                    "me",
                    AuditAction::Created,
                    AuditOutcome::Succeeded,
                )
            })
            .collect();
        let head = link(None, &mut records);
        (records, head)
    }

    #[test]
    fn an_untouched_chain_verifies_and_links_continue_after_a_head() {
        let (mut all, head) = records(3);
        let mut more = records(2)
            .0
            .into_iter()
            .map(|mut r| {
                r.chain = None;
                r
            })
            .collect::<Vec<_>>();
        let head = link(head.as_ref(), &mut more);
        assert_eq!(more[0].chain.as_ref().unwrap().n, 4);
        all.extend(more);
        all.reverse(); // order of reading does not matter
        let check = verify(&all, head.as_ref());
        assert_eq!(check, ChainCheck { chained: 5, unchained: 0, breaks: vec![] });
    }

    #[test]
    fn an_altered_record_breaks_the_link_after_it_or_the_head() {
        let (mut all, head) = records(3);
        all[1].actor = "someone-else".into();
        assert_eq!(
            verify(&all, head.as_ref()).breaks,
            vec![ChainBreak::Altered { n: 3, id: all[2].id.clone(), previous: 2 }]
        );
        let (mut all, head) = records(3);
        all[2].reason = Some("rewritten".into());
        assert_eq!(verify(&all, head.as_ref()).breaks, vec![ChainBreak::HeadMismatch { id: all[2].id.clone() }]);
    }

    #[test]
    fn removed_records_show_in_the_middle_at_the_end_and_all_of_them() {
        let (mut all, head) = records(4);
        all.remove(1);
        assert_eq!(verify(&all, head.as_ref()).breaks, vec![ChainBreak::Missing { n: 2 }]);
        let (mut all, head) = records(4);
        all.pop();
        assert_eq!(
            verify(&all, head.as_ref()).breaks,
            vec![ChainBreak::Missing { n: 4 }, ChainBreak::Length { head_n: 4, stored_n: 3 }]
        );
        let (_, head) = records(2);
        assert_eq!(verify(&[], head.as_ref()).breaks, vec![ChainBreak::RecordsMissing { n: 2 }]);
        let (all, _) = records(2);
        assert_eq!(verify(&all, None).breaks, vec![ChainBreak::HeadMissing]);
    }

    #[test]
    fn a_record_inserted_twice_at_one_place_is_reported() {
        let (mut all, head) = records(2);
        let mut forged = all[1].clone();
        forged.id = "forged".into();
        all.push(forged);
        let breaks = verify(&all, head.as_ref()).breaks;
        assert!(matches!(&breaks[0], ChainBreak::Duplicated { n: 2, count: 2, .. }), "{breaks:?}");
    }

    #[test]
    fn records_written_before_chains_are_counted_apart() {
        let (mut all, head) = records(2);
        let mut old = all[0].clone();
        old.chain = None;
        all.push(old);
        assert_eq!(verify(&all, head.as_ref()), ChainCheck { chained: 2, unchained: 1, breaks: vec![] });
        assert_eq!(verify(&all[2..], None), ChainCheck { chained: 0, unchained: 1, breaks: vec![] });
    }

    #[test]
    fn a_seal_covers_its_day_and_follows_the_previous_one() {
        let (all, _) = records(3);
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 30, 0).unwrap();
        let first = DaySeal::new(at.date_naive().pred_opt().unwrap(), &all[..1], None, at);
        let second = DaySeal::new(at.date_naive(), &all[1..], Some(&first), at);
        assert!(verify_seal(&second, &all[1..], Some(&first)).is_empty());
        assert_eq!(
            verify_seal(&second, &all[2..], Some(&first)),
            vec![SealBreak::Contents { day: second.day, sealed: 2, stored: 1 }]
        );
        let mut altered = all[1..].to_vec();
        altered[0].detail = Some("x".into());
        assert_eq!(verify_seal(&second, &altered, Some(&first)).len(), 1);
        let mut forged_first = first.clone();
        forged_first.records = 0;
        assert_eq!(
            verify_seal(&second, &all[1..], Some(&forged_first)),
            vec![SealBreak::Chain { day: second.day, previous: first.day }]
        );
    }

    #[test]
    fn the_hash_is_pinned_so_stored_chains_stay_valid_across_releases() {
        let grant = sample_grant();
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        let mut record = AuditRecord::new(&grant, at, "me", AuditAction::Created, AuditOutcome::Succeeded);
        record.id = "00000000-0000-4000-8000-000000000000".into();
        (record.grant_id, record.integration, record.user_id, record.group_id) =
            ("g".into(), "corp".into(), "u".into(), "gr".into());
        link(None, std::slice::from_mut(&mut record));
        assert_eq!(record_hash(&record), PINNED);
    }
    const PINNED: &str = "dd8eb21477f6eb1921e5a931e32271d34fab1f895989bbc5c4352466f67f9769";
}
