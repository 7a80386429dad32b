//! The listings: grants due for the sweep, grants by filter (open ones from the sweep's index,
//! the others from `gsi1`, newest first), and audit records by grant or by time range.

use super::{
    items::{s, text},
    paging::{
        decode_any_cursor, decode_cursor, decode_grant_cursor, has_key, invalid_token, Cursor, PageEnd, PageKey, Query,
        GSI1_KEY, OPEN_KEY,
    },
    transactions::Expr,
    DynamoGrantStore, AUDIT_DAYS_MAX, GSI1PK, GSI1SK, GSI2PK, GSI2SK, LIST_EVALUATED_MAX, PK, SK, STATUS,
};
use crate::{
    adapters::dynamodb::{keys, table},
    domain::model::{AuditPage, AuditRecord, Grant, GrantFilter, GrantPage, GrantStatus},
    ports::GrantStoreError,
};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

pub(super) async fn due(
    store: &DynamoGrantStore,
    now: DateTime<Utc>,
    limit: usize,
    next: Option<&str>,
) -> Result<GrantPage, GrantStoreError> {
    let until = keys::due_until(now);
    let start = match next {
        Some(token) => {
            let cursor = decode_grant_cursor(token, "due", table::GSI2, keys::DUE)?;
            if cursor.key[GSI2SK] > until {
                // Continues after everything due now.
                return Ok(GrantPage::default());
            }
            Some(cursor.start_key())
        }
        None => None,
    };
    if limit == 0 {
        return Ok(GrantPage::default());
    }
    let query = Query::new(
        Some(table::GSI2),
        "#gsi2pk = :due AND #gsi2sk <= :until",
        Expr::default().names(&[GSI2PK, GSI2SK]).value(":due", s(keys::DUE)).value(":until", s(&until)),
    );
    store.grant_page(&query, "due", start, limit).await
}

pub(super) async fn list(
    store: &DynamoGrantStore,
    filter: &GrantFilter,
    limit: usize,
    next: Option<&str>,
) -> Result<GrantPage, GrantStoreError> {
    let open = matches!(filter.status, Some(GrantStatus::Pending | GrantStatus::Active));
    if limit == 0 {
        // Still refuse a bad token.
        if let Some(token) = next {
            let (kind, names): (&str, &[&str]) = if open { ("open", &OPEN_KEY) } else { ("list", &GSI1_KEY) };
            decode_cursor(token, kind, names)?;
        }
        return Ok(GrantPage::default());
    }
    if open {
        list_open(store, filter, limit, next).await
    } else {
        list_all(store, filter, limit, next).await
    }
}

/// `list` of pending or active grants: every grant in the sweep's index is open (or a failed
/// one awaiting clean-up), far fewer than all grants; read them all and page in memory.
async fn list_open(
    store: &DynamoGrantStore,
    filter: &GrantFilter,
    limit: usize,
    next: Option<&str>,
) -> Result<GrantPage, GrantStoreError> {
    let after = next.map(|t| decode_cursor(t, "open", &OPEN_KEY)).transpose()?.map(|c| c.key["after"].clone());
    let indexed =
        Query::new(Some(table::GSI2), "#gsi2pk = :due", Expr::default().names(&[GSI2PK]).value(":due", s(keys::DUE)));
    let mut open: Vec<(String, Grant)> = Vec::new();
    for grant in store.query_all::<Grant>(&indexed).await? {
        let position = keys::grant_by_time(grant.requested_at, &grant.id);
        if filter.matches(&grant) && after.as_ref().is_none_or(|a| position < *a) {
            open.push((position, grant));
        }
    }
    open.sort_by(|a, b| b.0.cmp(&a.0));
    let more = open.len() > limit;
    open.truncate(limit);
    let next = if more {
        let after = open.last().map(|(p, _)| p.clone()).unwrap_or_default();
        Some(Cursor::new("open", BTreeMap::from([("after".into(), after)])).token())
    } else {
        None
    };
    Ok(GrantPage { grants: open.into_iter().map(|(_, g)| g).collect(), next })
}

/// `list` of every other filter: `gsi1` newest first, filtered by DynamoDB.
async fn list_all(
    store: &DynamoGrantStore,
    filter: &GrantFilter,
    limit: usize,
    next: Option<&str>,
) -> Result<GrantPage, GrantStoreError> {
    let start = match next {
        Some(token) => Some(decode_grant_cursor(token, "list", table::GSI1, keys::GRANTS)?.start_key()),
        None => None,
    };
    let mut conditions = Vec::new();
    let mut expr = Expr::default().names(&[GSI1PK]).value(":grants", s(keys::GRANTS));
    if let Some(status) = filter.status {
        conditions.push("#status = :status");
        expr = expr.names(&[STATUS]).value(":status", s(status.as_str()));
    }
    if let Some(user) = &filter.user_id {
        conditions.push("#user.#id = :user");
        expr = expr.names(&["user", "id"]).value(":user", s(user));
    }
    if let Some(group) = &filter.group_id {
        conditions.push("#group.#id = :group");
        expr = expr.names(&["group", "id"]).value(":group", s(group));
    }
    if let Some(integration) = &filter.integration {
        conditions.push("#integration = :integration");
        expr = expr.names(&["integration"]).value(":integration", s(integration));
    }
    let query = Query {
        filter: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
        newest_first: true,
        read_max: Some(LIST_EVALUATED_MAX),
        ..Query::new(Some(table::GSI1), "#gsi1pk = :grants", expr)
    };
    store.grant_page(&query, "list", start, limit).await
}

pub(super) async fn audit_for(store: &DynamoGrantStore, grant_id: &str) -> Result<Vec<AuditRecord>, GrantStoreError> {
    let query = Query {
        consistent: true,
        ..Query::new(
            None,
            "#pk = :pk AND #sk < :head",
            Expr::default()
                .names(&[PK, SK])
                .value(":pk", s(keys::audit(grant_id)))
                .value(":head", s(keys::AUDIT_CHAIN_HEAD)),
        )
    };
    store.query_all(&query).await
}

pub(super) async fn audit_between(
    store: &DynamoGrantStore,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
    next: Option<&str>,
) -> Result<AuditPage, GrantStoreError> {
    let first_day = from.date_naive();
    let last_day = (to - chrono::Duration::nanoseconds(1)).date_naive();
    let (mut day, mut start) = match next {
        Some(token) => {
            // At the start of a day (no key), or after a record of that day.
            let cursor = decode_any_cursor(token, "audit")?;
            if !cursor.key.is_empty() && !has_key(&cursor, &GSI1_KEY) {
                return Err(invalid_token("unexpected key attributes"));
            }
            let day = cursor
                .day
                .as_deref()
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .ok_or_else(|| invalid_token("no day"))?;
            if day < first_day || day > last_day {
                return Err(invalid_token("its day is outside the range"));
            }
            let start = (!cursor.key.is_empty()).then(|| cursor.start_key());
            if start.as_ref().is_some_and(|k| text(k, GSI1PK) != Some(keys::audit_day(day).as_str())) {
                return Err(invalid_token("its key is not of its day"));
            }
            (day, start)
        }
        None => (first_day, None),
    };
    if to <= from || limit == 0 {
        return Ok(AuditPage::default());
    }
    let (low, high) = (keys::sortable_time(from), keys::sortable_time(to));
    let mut records = Vec::new();
    let mut days = 0;
    loop {
        let of_day = Query::new(
            Some(table::GSI1),
            "#gsi1pk = :day AND #gsi1sk BETWEEN :low AND :high",
            Expr::default()
                .names(&[GSI1PK, GSI1SK])
                .value(":day", s(keys::audit_day(day)))
                .value(":low", s(&low))
                .value(":high", s(&high)),
        );
        if let PageEnd::More(after) = store.read_page(&of_day, start.take(), limit, &mut records).await? {
            // No key: the page was full with earlier days' records; the next starts this day.
            let next = Cursor::audit(day, after.unwrap_or_default());
            return Ok(AuditPage { records, next: Some(next.token()) });
        }
        days += 1;
        match day.succ_opt().filter(|d| *d <= last_day) {
            None => return Ok(AuditPage { records, next: None }),
            // Enough day partitions for one call: a short page, continued at the next day.
            Some(following) if days >= AUDIT_DAYS_MAX => {
                let next = Cursor::audit(following, PageKey::new());
                return Ok(AuditPage { records, next: Some(next.token()) });
            }
            Some(following) => day = following,
        }
    }
}
