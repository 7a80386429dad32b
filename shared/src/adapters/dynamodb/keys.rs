//! Item keys. One place, so that the adapter and later features agree on them.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

pub fn users(integration: &str) -> String {
    format!("DIR#{integration}#USER")
}
pub fn groups(integration: &str) -> String {
    format!("DIR#{integration}#GROUP")
}
pub fn memberships(integration: &str) -> String {
    format!("DIR#{integration}#MEMBER")
}
pub fn membership_sort(group_id: &str, user_id: &str) -> String {
    format!("{group_id}#{user_id}")
}
pub fn user_by_email(integration: &str, email: &str) -> String {
    format!("EMAIL#{integration}#{email}")
}
pub fn group_by_name(integration: &str, name: &str) -> String {
    format!("GROUPNAME#{integration}#{name}")
}
/// `gsi1pk` of a membership item: the groups a user is a direct member of (`gsi1sk` = group id).
pub fn member_of(integration: &str, user_id: &str) -> String {
    format!("MEMBEROF#{integration}#{user_id}")
}
/// `gsi2pk` of a user item (`gsi2sk` = `USER`): usernames compare case-insensitively, so the key
/// holds the canonical (lower-case) form. Its prefix keeps it apart from the grants' `DUE`.
pub fn user_by_username(integration: &str, username: &str) -> String {
    format!("USERNAME#{integration}#{}", crate::domain::model::canonical_username(username))
}
pub fn integration(integration: &str) -> String {
    format!("INTEGRATION#{integration}")
}
pub const SYNC_STATUS: &str = "SYNC";
/// A fanned-out sync run's items (`adapters/dynamodb/sync_runs.rs`): one partition per run.
pub fn sync_run(integration: &str, run_id: &str) -> String {
    format!("SYNCRUN#{integration}#{run_id}")
}
/// The incremental sync's cursor in Directory Insights (`sk` beside the integration's sync status).
pub const EVENT_CURSOR: &str = "EVENTS";

// ---------------------------------------------------------------------------------------------
// Grant lifecycle: grants, leases, audit, idempotency (see `grant_store`).

/// A time as sort keys hold it: RFC 3339 UTC with nanoseconds, always the same width, so that the
/// text order is the time order (chrono's own serialization drops zero fractions: it would not).
pub fn sortable_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub fn grant(id: &str) -> String {
    format!("GRANT#{id}")
}
pub const GRANT_SORT: &str = "GRANT";
/// `gsi1pk` of every grant: all grants, newest first by `gsi1sk`.
pub const GRANTS: &str = "GRANTS";
pub fn grant_by_time(granted_at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", sortable_time(granted_at))
}
/// `gsi2pk` of a grant while it is in the sweep's index.
pub const DUE: &str = "DUE";
pub fn due_sort(at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", sortable_time(at))
}
/// The greatest `gsi2sk` due at `now` (`~` sorts after every character of a grant id).
pub fn due_until(now: DateTime<Utc>) -> String {
    format!("{}#~", sortable_time(now))
}

/// One partition per integration: reconciliation lists an integration's leases with one query.
pub fn lease(integration: &str) -> String {
    format!("LEASE#{integration}")
}
pub fn lease_sort(group_id: &str, user_id: &str) -> String {
    membership_sort(group_id, user_id)
}

pub fn audit(grant_id: &str) -> String {
    format!("AUDIT#{grant_id}")
}
/// Time first; `seq` (the order of writing) breaks ties between records of one instant.
pub fn audit_sort(at: DateTime<Utc>, seq: u64, id: &str) -> String {
    format!("{}#{seq:020}#{id}", sortable_time(at))
}
/// The sort key of a grant's audit chain head, in the grant's audit partition: after every record
/// (their sort keys start with a time), so that reading the records is a range up to it.
pub const AUDIT_CHAIN_HEAD: &str = "~CHAIN";
/// The partition of the audit trail's daily seals (not a grant id: those are UUIDs or `policy`);
/// under `AUDIT#`, so the functions' roles may not update or delete them either.
pub const AUDIT_SEALS: &str = "AUDIT#~SEALS";
pub fn audit_seal_sort(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}
/// `gsi1pk` of an audit record: one partition per UTC day.
pub fn audit_day(day: NaiveDate) -> String {
    format!("AUDIT#{}", day.format("%Y-%m-%d"))
}

// ---------------------------------------------------------------------------------------------
// The access policy (see `policy_store`): one partition, a few items per change.

/// The partition of every policy item: its versions and the pointer to the applied one.
pub const POLICY: &str = "POLICY";
/// The sort key of the pointer to the applied version.
pub const POLICY_CURRENT: &str = "CURRENT";
/// The sort key of one version: zero-padded, so that the text order is the version order.
pub fn policy_version(version: u64) -> String {
    format!("VERSION#{version:020}")
}

/// DynamoDB's limit for a partition key is 2048 bytes; keys this long or shorter are kept as they
/// are (no collision is possible), longer ones are hashed.
const IDEMPOTENCY_KEY_MAX_BYTES: usize = 1024;

/// The partition of an idempotency record. The two forms have distinct prefixes, so a key kept
/// as it is never meets a hashed one.
pub fn idempotency(key: &str) -> String {
    if key.len() <= IDEMPOTENCY_KEY_MAX_BYTES {
        format!("IDEMPOTENCY#{key}")
    } else {
        format!("IDEMPOTENCY-H#{:032x}", fnv1a_128(key.as_bytes()))
    }
}
pub const IDEMPOTENCY_SORT: &str = "IDEMPOTENCY";

/// 128-bit FNV-1a: stable across runs and releases (a key must map to the same item tomorrow).
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

// ---------------------------------------------------------------------------------------------
// Slack approvals (see `slack_messages`): where a request's messages are.

/// The partition of a request's Slack messages (one item, sort key [`SLACK_MESSAGES`]).
pub fn slack_messages(grant_id: &str) -> String {
    format!("SLACK#{grant_id}")
}
pub const SLACK_MESSAGES: &str = "MESSAGES";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sortable_times_have_one_width_and_sort_as_times() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let later = t + chrono::Duration::nanoseconds(500_000_000);
        assert_eq!(sortable_time(t), "2026-11-23T12:00:00.000000000Z");
        assert_eq!(sortable_time(later), "2026-11-23T12:00:00.500000000Z");
        assert!(sortable_time(t) < sortable_time(later));
        assert!(due_sort(later, "ffffffff-ffff") < due_until(later));
        assert!(due_until(t) < due_sort(later, "00000000"));
    }

    #[test]
    fn index_partitions_of_different_kinds_never_meet() {
        // gsi1: emails, group names, memberships by user, all grants, audit days. gsi2: due grants,
        // usernames. Distinct prefixes (up to the first `#`, or the whole key), so no partition of
        // one kind can equal one of another, whatever the integration, email, name or id.
        let prefix = |key: &str| key.split('#').next().unwrap().to_owned();
        let gsi1 = [
            user_by_email("DUE", "GRANTS"),
            group_by_name("MEMBEROF", "x"),
            member_of("EMAIL", "u1"),
            GRANTS.to_owned(),
            audit_day(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()),
        ];
        let gsi2 = [DUE.to_owned(), user_by_username("corp", "Alice")];
        for keys in [&gsi1[..], &gsi2[..]] {
            let prefixes: std::collections::BTreeSet<String> = keys.iter().map(|k| prefix(k)).collect();
            assert_eq!(prefixes.len(), keys.len(), "{keys:?}");
        }
        assert_eq!(user_by_username("corp", " Alice.Smith "), "USERNAME#corp#alice.smith");
        assert_eq!(member_of("corp", "u1"), "MEMBEROF#corp#u1");
    }

    #[test]
    fn policy_versions_sort_as_numbers() {
        assert_eq!(policy_version(7), "VERSION#00000000000000000007");
        assert!(policy_version(9) < policy_version(10));
        assert!(policy_version(u64::MAX).len() == policy_version(1).len());
    }

    #[test]
    fn idempotency_keys_are_kept_or_hashed_stably() {
        assert_eq!(idempotency("arn:aws:iam::1:user/a#k1"), "IDEMPOTENCY#arn:aws:iam::1:user/a#k1");
        let long = "x".repeat(2000);
        let hashed = idempotency(&long);
        assert!(hashed.starts_with("IDEMPOTENCY-H#") && hashed.len() == "IDEMPOTENCY-H#".len() + 32);
        assert_eq!(hashed, idempotency(&long));
        assert_ne!(hashed, idempotency(&"x".repeat(2001)));
        assert_eq!(fnv1a_128(b""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
    }
}
