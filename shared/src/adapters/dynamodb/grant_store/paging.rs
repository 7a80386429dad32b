//! Paging: page tokens (what a listing continues, and after which key) and the reader of one
//! page of a `Query`, which may span several DynamoDB calls.

use super::{
    super::table::{self, Index},
    aws,
    items::{from_item, s, text},
    transactions::{Expr, Names, Values},
    DynamoGrantStore, Item, PK, SK,
};
use crate::{adapters::dynamodb::StoreError, domain::model::GrantPage, ports::GrantStoreError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use chrono::NaiveDate;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;

// Page tokens: base64url (no padding) of a small JSON document naming what they continue and
// the key to continue after. Tokens are validated: a bad one is an error, never a panic.

/// An item's key attributes, as a token keeps them.
pub(super) type PageKey = BTreeMap<String, String>;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Cursor {
    /// What the token continues: `due`, `list`, `open` or `audit`.
    k: String,
    /// `audit`: the day partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) day: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) key: PageKey,
}

impl Cursor {
    pub(super) fn new(kind: &str, key: PageKey) -> Self {
        Self { k: kind.to_owned(), day: None, key }
    }

    /// `audit_between` continues in `day`'s partition: after `key`, or at its start (no key).
    pub(super) fn audit(day: NaiveDate, key: PageKey) -> Self {
        Self { day: Some(day.to_string()), ..Self::new("audit", key) }
    }

    pub(super) fn token(&self) -> String {
        base64url(&serde_json::to_vec(self).expect("a cursor serializes"))
    }

    /// Where the query continues (`ExclusiveStartKey`).
    pub(super) fn start_key(&self) -> Item {
        self.key.iter().map(|(k, v)| (k.clone(), s(v))).collect()
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Longer tokens are refused unread (keys are a few hundred bytes at most).
const TOKEN_MAX_CHARS: usize = 8 * 1024;

fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn from_base64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() < 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let digit = BASE64URL.iter().position(|a| a == c)?;
            n |= u32::try_from(digit).ok()? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push(((n >> (16 - 8 * i)) & 0xff) as u8);
        }
    }
    Some(out)
}

pub(super) fn invalid_token(why: impl std::fmt::Display) -> GrantStoreError {
    GrantStoreError::InvalidToken(why.to_string())
}

/// Decodes a token of `kind` whose key has exactly the attributes `names`.
pub(super) fn decode_cursor(token: &str, kind: &str, names: &[&str]) -> Result<Cursor, GrantStoreError> {
    let cursor = decode_any_cursor(token, kind)?;
    if !has_key(&cursor, names) {
        return Err(invalid_token("unexpected key attributes"));
    }
    Ok(cursor)
}

/// Decodes a `due` or `list` token: a key of `index` (see [`page_key`]) of a grant in the
/// index's partition `partition` (the one queried).
pub(super) fn decode_grant_cursor(
    token: &str,
    kind: &str,
    index: Index,
    partition: &str,
) -> Result<Cursor, GrantStoreError> {
    let cursor = decode_cursor(token, kind, &page_key(index))?;
    if cursor.key[index.partition_key] != partition || !cursor.key[PK].starts_with("GRANT#") {
        return Err(invalid_token(format!("not a grant of the {kind:?} listing")));
    }
    Ok(cursor)
}

pub(super) fn decode_any_cursor(token: &str, kind: &str) -> Result<Cursor, GrantStoreError> {
    if token.len() > TOKEN_MAX_CHARS {
        return Err(invalid_token("too long"));
    }
    let bytes = from_base64url(token).ok_or_else(|| invalid_token("not base64url"))?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(invalid_token)?;
    if cursor.k != kind {
        return Err(invalid_token(format!("it continues a {:?} listing, not a {kind:?} one", cursor.k)));
    }
    Ok(cursor)
}

pub(super) fn has_key(cursor: &Cursor, names: &[&str]) -> bool {
    cursor.key.len() == names.len() && names.iter().all(|n| cursor.key.contains_key(*n))
}

fn key_of(item: &Item, names: &[&str]) -> Result<PageKey, StoreError> {
    names
        .iter()
        .map(|n| {
            text(item, n)
                .map(|v| ((*n).to_owned(), v.to_owned()))
                .ok_or_else(|| StoreError::Mapping(format!("item without {n}")))
        })
        .collect()
}

/// The key of an item in `index`, as DynamoDB returns it (`LastEvaluatedKey`): the table's key
/// and the index's.
const fn page_key(index: Index) -> [&'static str; 4] {
    [PK, SK, index.partition_key, index.sort_key]
}
/// The key of `list` and `audit` pages.
pub(super) const GSI1_KEY: [&str; 4] = page_key(table::GSI1);
/// `open` listings continue after a grant's `{granted_at}#{id}`.
pub(super) const OPEN_KEY: [&str; 1] = ["after"];

fn query_limit(n: usize) -> i32 {
    i32::try_from(n.clamp(1, 1000)).unwrap_or(1000)
}

// ---------------------------------------------------------------------------------------------
// Queries

/// One `Query` of the table or of an index.
#[derive(Default)]
pub(super) struct Query {
    pub(super) index: Option<Index>,
    pub(super) key_condition: &'static str,
    /// Applied by DynamoDB after reading: a filtered query may read many items to return a few.
    pub(super) filter: Option<String>,
    pub(super) names: Names,
    pub(super) values: Values,
    pub(super) newest_first: bool,
    pub(super) consistent: bool,
    /// Items one call may read before it returns a short page (`None`: no bound).
    pub(super) read_max: Option<usize>,
}

impl Query {
    pub(super) fn new(index: Option<Index>, key_condition: &'static str, expr: Expr) -> Self {
        let (names, values) = expr.parts();
        Self { index, key_condition, names, values, ..Self::default() }
    }

    /// The attributes of an item's key in this query: what `LastEvaluatedKey` and a token hold.
    fn key_names(&self) -> Vec<&'static str> {
        match self.index {
            Some(index) => page_key(index).to_vec(),
            None => vec![PK, SK],
        }
    }
}

/// Where a page read by [`DynamoGrantStore::read_page`] ends.
pub(super) enum PageEnd {
    /// The query has no more items.
    Exhausted,
    /// More follow: continue after this key, or (`None`: the page was full before the first item
    /// of this query) at the query's start.
    More(Option<PageKey>),
}

impl DynamoGrantStore {
    fn request(&self, query: &Query) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .set_index_name(query.index.map(|i| i.name.to_owned()))
            .key_condition_expression(query.key_condition)
            .set_filter_expression(query.filter.clone())
            .set_expression_attribute_names(query.names.clone())
            .set_expression_attribute_values(query.values.clone())
            .scan_index_forward(!query.newest_first)
            .consistent_read(query.consistent)
    }

    /// Every item of `query`.
    pub(super) async fn query_all<T: DeserializeOwned>(&self, query: &Query) -> Result<Vec<T>, GrantStoreError> {
        let mut pages = self.request(query).into_paginator().send();
        let mut all = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(aws)?.items.unwrap_or_default() {
                all.push(from_item(item)?);
            }
        }
        Ok(all)
    }

    /// Reads `query` from `start` into `found` until `found` holds `limit` items
    /// (`limit >= 1`) and one more is known to follow, or the query is exhausted, or it has read
    /// `query.read_max` items. `found` may hold items of earlier queries of the same page.
    pub(super) async fn read_page<T: DeserializeOwned>(
        &self,
        query: &Query,
        mut start: Option<Item>,
        limit: usize,
        found: &mut Vec<T>,
    ) -> Result<PageEnd, GrantStoreError> {
        let names = query.key_names();
        let mut last_kept = None;
        let mut read = 0usize;
        loop {
            // One item more than the page holds tells whether there is a next page; a filtered
            // query returns fewer items than it reads, so it asks for at least 100.
            let wanted = limit + 1 - found.len();
            let asked = if query.filter.is_some() { wanted.max(100) } else { wanted };
            let output = self
                .request(query)
                .limit(query_limit(asked))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws)?;
            read += usize::try_from(output.scanned_count).unwrap_or(0);
            for item in output.items.unwrap_or_default() {
                if found.len() == limit {
                    return Ok(PageEnd::More(last_kept));
                }
                last_kept = Some(key_of(&item, &names)?);
                found.push(from_item(item)?);
            }
            match output.last_evaluated_key {
                None => return Ok(PageEnd::Exhausted),
                // Read enough for one call: a short page, continued where the reading stopped.
                Some(last) if query.read_max.is_some_and(|max| read >= max) => {
                    return Ok(PageEnd::More(Some(key_of(&last, &names)?)));
                }
                Some(last) => start = Some(last),
            }
        }
    }

    /// A page of the grants of `query` from `start`, with a `kind` token for the next one.
    pub(super) async fn grant_page(
        &self,
        query: &Query,
        kind: &str,
        start: Option<Item>,
        limit: usize,
    ) -> Result<GrantPage, GrantStoreError> {
        let mut grants = Vec::new();
        let next = match self.read_page(query, start, limit, &mut grants).await? {
            PageEnd::Exhausted => None,
            PageEnd::More(after) => Some(Cursor::new(kind, after.unwrap_or_default()).token()),
        };
        Ok(GrantPage { grants, next })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{GSI2PK, GSI2SK},
        *,
    };
    use crate::adapters::dynamodb::keys;

    #[test]
    fn base64url_round_trips_every_length_and_refuses_garbage() {
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let encoded = base64url(&bytes);
            assert!(encoded.bytes().all(|b| BASE64URL.contains(&b)), "{encoded}");
            assert_eq!(from_base64url(&encoded).as_deref(), Some(bytes.as_slice()), "{n} bytes");
        }
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(b"Ma"), "TWE");
        assert_eq!(from_base64url("a"), None);
        assert_eq!(from_base64url("ab=c"), None);
        assert_eq!(from_base64url("ab c"), None);
    }

    #[test]
    fn tokens_are_checked_for_kind_and_key() {
        let key = BTreeMap::from([(PK.to_owned(), "GRANT#x".to_owned()), (SK.to_owned(), "GRANT".to_owned())]);
        let token = Cursor::new("due", key).token();
        assert!(decode_cursor(&token, "due", &[PK, SK]).is_ok());
        for bad in [
            decode_cursor(&token, "list", &[PK, SK]),
            decode_cursor(&token, "due", &page_key(table::GSI2)),
            decode_cursor("!!!", "due", &[PK, SK]),
            decode_cursor(&base64url(b"{\"k\":1}"), "due", &[PK, SK]),
            decode_cursor(&"A".repeat(TOKEN_MAX_CHARS + 1), "due", &[PK, SK]),
        ] {
            assert!(matches!(bad, Err(GrantStoreError::InvalidToken(_))));
        }
    }

    #[test]
    fn grant_tokens_must_continue_after_a_grant_of_the_partition_queried() {
        let key = |pk: &str, index_pk: &str| {
            BTreeMap::from([
                (PK.to_owned(), pk.to_owned()),
                (SK.to_owned(), "GRANT".to_owned()),
                (GSI2PK.to_owned(), index_pk.to_owned()),
                (GSI2SK.to_owned(), "2026-11-23T14:00:00.000000000Z#x".to_owned()),
            ])
        };
        let due = Cursor::new("due", key("GRANT#x", keys::DUE)).token();
        let cursor = decode_grant_cursor(&due, "due", table::GSI2, keys::DUE).unwrap();
        assert_eq!(text(&cursor.start_key(), GSI2SK), Some("2026-11-23T14:00:00.000000000Z#x"));
        for bad in [
            decode_grant_cursor(&due, "list", table::GSI1, keys::GRANTS),
            decode_grant_cursor(&Cursor::new("due", key("AUDIT#x", keys::DUE)).token(), "due", table::GSI2, keys::DUE),
            decode_grant_cursor(&Cursor::new("due", key("GRANT#x", "OTHER")).token(), "due", table::GSI2, keys::DUE),
        ] {
            assert!(matches!(bad, Err(GrantStoreError::InvalidToken(_))), "{bad:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Any text as a page token: a cursor or `InvalidToken`, never a panic, for every kind.
        #[test]
        fn any_token_is_a_cursor_or_refused(token in ".{0,64}|[A-Za-z0-9_-]{0,96}") {
            for kind in ["due", "list", "open", "audit"] {
                let _ = decode_any_cursor(&token, kind);
            }
            let _ = decode_grant_cursor(&token, "due", table::GSI2, keys::DUE);
            let _ = decode_grant_cursor(&token, "list", table::GSI1, keys::GRANTS);
        }

        /// A cursor's token decodes to the same cursor, and only for its own kind.
        #[test]
        fn a_cursor_survives_its_token(key in proptest::collection::btree_map("[a-z0-9]{1,8}", ".{0,30}", 0..5),
                                       kind in "due|list|open|audit") {
            let cursor = Cursor::new(&kind, key);
            let token = cursor.token();
            proptest::prop_assert!(token.bytes().all(|b| BASE64URL.contains(&b)));
            proptest::prop_assert_eq!(decode_any_cursor(&token, &kind).ok(), Some(Cursor::new(&kind, cursor.key.clone())));
            let other = if kind == "due" { "list" } else { "due" };
            proptest::prop_assert!(decode_any_cursor(&token, other).is_err());
        }
    }
}
