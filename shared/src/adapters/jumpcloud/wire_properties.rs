//! Property tests (proptest) of the client's reading of JumpCloud's answers: any user, group or
//! membership page the API documents (v1 `systemuserreturn`, v2 `UserGroup`, `GraphConnection`:
//! optional fields absent or present, `null` where JumpCloud's own examples send it, fields we do
//! not read) reads back as sent; anything else is a `Decode` refusal, never a panic; headers are
//! read within bounds.

use super::{decode, retry_after, total_count, wire::*, Reply};
use crate::{
    domain::model::{MembershipMethod, UserState},
    ports::{DirectoryError, SourceGroup, SourceUser},
};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Map, Value};

fn reply(body: &Value) -> Reply {
    Reply { headers: HeaderMap::new(), body: serde_json::to_vec(body).expect("json") }
}

/// Text as JumpCloud may hold it: any Unicode, quotes and escapes included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,30}", "[a-z0-9._%+-]{1,12}@[a-z]{1,8}\\.[a-z]{2,4}"]
}

fn object_id() -> impl Strategy<Value = String> {
    "[0-9a-f]{24}"
}

/// An optional field: absent, or present with a value.
fn optional<S: Strategy<Value = String>>(s: S) -> impl Strategy<Value = Option<String>> {
    prop::option::of(s)
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
type Nullable<T> = Option<Option<T>>;
/// A custom attribute: its name and value (absent when `None`).
type Attribute = (String, Option<String>);
/// A group as sent: id, name, description, membership method, and fields we do not read.
type SentGroup = (String, String, Nullable<String>, Nullable<&'static str>, bool);

/// A user as `GET /api/systemusers` documents it, with fields we do not read beside ours.
#[derive(Debug, Clone)]
struct SentUser {
    id: String,
    username: Option<String>,
    email: Option<String>,
    first_name: Option<String>,
    job_title: Option<String>,
    manager: Option<String>,
    state: Option<&'static str>,
    suspended: Option<bool>,
    /// `None`: absent; `Some(None)`: `null`.
    attributes: Nullable<Vec<Attribute>>,
    also_id: bool,
    extra: Option<String>,
}

fn sent_user() -> impl Strategy<Value = SentUser> {
    (
        (object_id(), optional(text()), optional(text()), optional(text()), optional(text())),
        (
            optional(object_id()),
            prop::option::of(prop::sample::select(vec!["STAGED", "ACTIVATED", "SUSPENDED"])),
            prop::option::of(any::<bool>()),
            prop::option::of(prop::option::of(prop::collection::vec(("[a-zA-Z_]{1,10}", optional(text())), 0..4))),
            any::<bool>(),
            optional(text()),
        ),
    )
        .prop_map(
            |(
                (id, username, email, first_name, job_title),
                (manager, state, suspended, attributes, also_id, extra),
            )| {
                SentUser {
                    id,
                    username,
                    email,
                    first_name,
                    job_title,
                    manager,
                    state,
                    suspended,
                    attributes,
                    also_id,
                    extra,
                }
            },
        )
}

impl SentUser {
    fn json(&self) -> Value {
        let mut o = Map::new();
        o.insert("_id".into(), self.id.clone().into());
        if self.also_id {
            o.insert("id".into(), self.id.clone().into());
        }
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                o.insert(k.into(), v.clone().into());
            }
        };
        put("username", &self.username);
        put("email", &self.email);
        put("firstname", &self.first_name);
        put("jobTitle", &self.job_title);
        put("manager", &self.manager);
        put("organization", &self.extra);
        if let Some(s) = self.state {
            o.insert("state".into(), s.into());
        }
        if let Some(s) = self.suspended {
            o.insert("suspended".into(), s.into());
        }
        match &self.attributes {
            None => {}
            Some(None) => {
                o.insert("attributes".into(), Value::Null);
            }
            Some(Some(list)) => {
                let list: Vec<Value> = list
                    .iter()
                    .map(|(name, value)| match value {
                        Some(v) => json!({"name": name, "value": v}),
                        None => json!({"name": name}),
                    })
                    .collect();
                o.insert("attributes".into(), list.into());
            }
        }
        if self.extra.is_some() {
            o.insert("mfa".into(), json!({"configured": false, "exclusion": true}));
        }
        Value::Object(o)
    }

    fn expected_state(&self) -> UserState {
        if self.suspended == Some(true) || self.state == Some("SUSPENDED") {
            UserState::Suspended
        } else if self.state == Some("STAGED") {
            UserState::Staged
        } else {
            UserState::Activated
        }
    }
}

/// A group as `GET /api/v2/usergroups` documents it (its example sends `null` for several fields).
fn sent_group() -> impl Strategy<Value = SentGroup> {
    (
        object_id(),
        text(),
        prop::option::of(prop::option::of(text())),
        prop::option::of(prop::option::of(prop::sample::select(vec![
            "STATIC",
            "DYNAMIC_REVIEW_REQUIRED",
            "DYNAMIC_AUTOMATED",
            "SOMETHING_NEW",
        ]))),
        any::<bool>(),
    )
}

fn group_json((id, name, description, method, extra): &SentGroup) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), id.clone().into());
    o.insert("name".into(), name.clone().into());
    if let Some(d) = description {
        o.insert("description".into(), d.clone().map_or(Value::Null, Value::from));
    }
    if let Some(m) = method {
        o.insert("membershipMethod".into(), m.map_or(Value::Null, Value::from));
    }
    if *extra {
        o.insert("type".into(), "user_group".into());
        o.insert("attributes".into(), Value::Null);
        o.insert("memberQuery".into(), Value::Null);
        o.insert("suggestionCounts".into(), json!({"add": 0, "remove": 6, "total": 1}));
    }
    Value::Object(o)
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        object_id().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec!["_id", "id", "name", "to", "type", "results", "totalCount", "attributes"]),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A page of users as documented reads back field for field, the state from `state` or `suspended`.
    #[test]
    fn a_documented_user_page_reads_back_as_sent(users in prop::collection::vec(sent_user(), 0..6), total in prop::option::of(0u64..10_000)) {
        let mut page = json!({"results": users.iter().map(SentUser::json).collect::<Vec<_>>()});
        if let Some(t) = total {
            page["totalCount"] = t.into();
        }
        let list: UserList = decode(&reply(&page)).map_err(|e| TestCaseError::fail(format!("{e:?} for {page}")))?;
        prop_assert_eq!(list.total_count, total);
        prop_assert_eq!(list.results.len(), users.len());
        for (sent, read) in users.iter().zip(list.results) {
            let read = SourceUser::from(read);
            prop_assert_eq!(&read.id, &sent.id);
            prop_assert_eq!(&read.username, sent.username.as_deref().unwrap_or(""));
            prop_assert_eq!(&read.email, sent.email.as_deref().unwrap_or(""));
            prop_assert_eq!(&read.first_name, &sent.first_name);
            prop_assert_eq!(&read.job_title, &sent.job_title);
            prop_assert_eq!(&read.manager, &sent.manager);
            prop_assert_eq!(read.state, sent.expected_state());
            let attributes: Vec<(String, Option<String>)> = read.attributes.iter().map(|a| (a.name.clone(), a.value.clone())).collect();
            prop_assert_eq!(attributes, sent.attributes.clone().flatten().unwrap_or_default());
        }
    }

    /// A page of groups as documented reads back, an unknown membership method as `Notset`.
    #[test]
    fn a_documented_group_page_reads_back_as_sent(groups in prop::collection::vec(sent_group(), 0..6)) {
        let page = Value::from(groups.iter().map(group_json).collect::<Vec<_>>());
        let read: Vec<JumpCloudGroup> = decode(&reply(&page)).map_err(|e| TestCaseError::fail(format!("{e:?} for {page}")))?;
        prop_assert_eq!(read.len(), groups.len());
        for (sent, read) in groups.iter().zip(read) {
            let read = SourceGroup::from(read);
            prop_assert_eq!(&read.id, &sent.0);
            prop_assert_eq!(&read.name, &sent.1);
            prop_assert_eq!(&read.description, &sent.2.clone().flatten());
            let method = match sent.3.flatten() {
                Some("STATIC") => MembershipMethod::Static,
                Some("DYNAMIC_REVIEW_REQUIRED") => MembershipMethod::DynamicReviewRequired,
                Some("DYNAMIC_AUTOMATED") => MembershipMethod::DynamicAutomated,
                _ => MembershipMethod::Notset,
            };
            prop_assert_eq!(read.membership_method, method);
        }
    }

    /// A page of a group's members (`GraphConnection`s) keeps every `to`, with or without `from` and
    /// `attributes`.
    #[test]
    fn a_documented_membership_page_reads_back_as_sent(
        members in prop::collection::vec((object_id(), prop::sample::select(vec!["user", "system", "user_group"]), any::<bool>()), 0..8),
    ) {
        let page: Vec<Value> = members.iter().map(|(id, kind, full)| {
            let mut c = json!({"to": {"id": id, "type": kind}});
            if *full {
                c["from"] = json!({"id": "5f0000000000000000000000", "type": "user_group", "attributes": {}});
                c["attributes"] = json!({});
                c["to"]["attributes"] = json!({});
            }
            c
        }).collect();
        let read: Vec<GraphConnection> = decode(&reply(&Value::from(page))).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let read: Vec<(String, String)> = read.into_iter().map(|c| (c.to.id, c.to.kind)).collect();
        let sent: Vec<(String, String)> = members.iter().map(|(id, kind, _)| (id.clone(), (*kind).to_owned())).collect();
        prop_assert_eq!(read, sent);
    }

    /// Any body at all, JSON or not: read or refused as `Decode`, never a panic.
    #[test]
    fn any_body_is_read_or_refused_as_undecodable(value in any_json(), raw in prop::collection::vec(any::<u8>(), 0..64), as_json in any::<bool>()) {
        let r = if as_json { reply(&value) } else { Reply { headers: HeaderMap::new(), body: raw } };
        let outcomes = [
            decode::<UserList>(&r).map(|_| ()),
            decode::<Vec<JumpCloudGroup>>(&r).map(|_| ()),
            decode::<Vec<GraphConnection>>(&r).map(|_| ()),
            decode::<JumpCloudUser>(&r).map(|_| ()),
        ];
        for outcome in outcomes {
            if let Err(e) = outcome {
                prop_assert!(matches!(e, DirectoryError::Decode { .. }), "{:?}", e);
            }
        }
    }

    /// `x-total-count` and `Retry-After`: any header value is a number read as written or nothing;
    /// a wait is never longer than five minutes, whatever the server asks.
    #[test]
    fn headers_are_read_within_bounds(value in "[ -~]{0,24}", n in any::<u64>()) {
        for written in [value.clone(), n.to_string(), format!(" {n} ")] {
            let Ok(header) = HeaderValue::from_str(&written) else { continue };
            let mut headers = HeaderMap::new();
            headers.insert("x-total-count", header.clone());
            headers.insert(reqwest::header::RETRY_AFTER, header);
            let number = written.trim().parse::<u64>().ok();
            prop_assert_eq!(total_count(&headers), number);
            prop_assert_eq!(retry_after(&headers).map(|d| d.as_secs()), number.map(|n| n.min(300)));
        }
    }
}
