//! Directory Insights: each organization's event log, and the query of
//! `POST /insights/directory/v1/events`.
//!
//! Every change made after start appends one event, under the organization's write lock, in the
//! order the changes happened. An event is stamped by the [`EventClock`] but never earlier than the
//! event before it, and its id ends with a per-organization sequence number: the log is sorted by
//! (timestamp, id), the order queries page in, by construction, and a query costs a few binary
//! searches plus its page. Events hold ids and names, not JSON (about 64 bytes each, plus the
//! values of an update's changes); the data an organization starts with emits nothing, so even a
//! generated million-user organization starts with an empty log.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::MemberOp;
use crate::clock::EventClock;
use crate::error::ApiError;
use crate::ids::{parse_rfc3339, rfc3339_millis, splitmix64, to_millis};
use crate::model::{Group, User};

/// Events older than this (from the event clock's now) are no longer served, as in JumpCloud.
pub const EVENT_RETENTION_DAYS: i64 = 90;
const RETENTION_MS: i64 = EVENT_RETENTION_DAYS * 86_400_000;
/// Rows returned when the query gives no `limit` (or 0), per JumpCloud's document.
pub const DEFAULT_EVENT_LIMIT: usize = 1_000;
/// The largest `limit` JumpCloud takes; more is a 400 here.
pub const MAX_EVENT_LIMIT: usize = 10_000;

/// `EventServiceTimeQuery.service`'s values. The simulator's events are `directory` ones, which
/// `all` takes too; the other services have no events.
const SERVICES: [&str; 16] = [
    "alerts",
    "all",
    "directory",
    "ldap",
    "mdm",
    "notifications",
    "object_storage",
    "password_manager",
    "radius",
    "reports",
    "saas_app_management",
    "software",
    "sso",
    "systems",
    "access_management",
    "asset_management",
];

/// Who made a change: the API key's administrator, through the API (`auth_method: "api-key"`), or
/// an administrator in the console (`"session"`): the control endpoints and [`crate::OrgHandle`],
/// that is, changes made outside the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Actor {
    ApiKey,
    Console,
}

impl Actor {
    fn auth_method(self) -> &'static str {
        match self {
            Actor::ApiKey => "api-key",
            Actor::Console => "session",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UserCreate,
    UserUpdate,
    UserDelete,
    GroupCreate,
    GroupUpdate,
    GroupDelete,
    /// The resource is the group, the member the user.
    Association(MemberOp),
}

impl Kind {
    fn event_type(self) -> &'static str {
        match self {
            Kind::UserCreate => "user_create",
            Kind::UserUpdate => "user_update",
            Kind::UserDelete => "user_delete",
            Kind::GroupCreate => "user_group_create",
            Kind::GroupUpdate => "user_group_update",
            Kind::GroupDelete => "user_group_delete",
            Kind::Association(_) => "association_change",
        }
    }

    fn is_user(self) -> bool {
        matches!(self, Kind::UserCreate | Kind::UserUpdate | Kind::UserDelete)
    }
}

/// An object as an event names it: its id and its username (users) or name (groups) at the time.
struct Named {
    id: Box<str>,
    name: Box<str>,
}

impl Named {
    fn user(user: &User) -> Named {
        Named { id: user.id.as_str().into(), name: user.username.as_str().into() }
    }

    fn group(group: &Group) -> Named {
        Named { id: group.id.as_str().into(), name: group.name.as_str().into() }
    }
}

/// One field of an update, in the object's JumpCloud name; values as the API serves them (`null`
/// for an absent `manager`).
struct Change {
    field: Box<str>,
    from: Value,
    to: Value,
}

enum Detail {
    Changes(Box<[Change]>),
    Member(Named),
}

struct Event {
    seq: u64,
    at_ms: i64,
    kind: Kind,
    actor: Actor,
    resource: Named,
    detail: Option<Box<Detail>>,
}

/// One organization's events, oldest first.
pub(crate) struct EventLog {
    clock: Arc<EventClock>,
    organization: String,
    admin_id: String,
    admin_email: String,
    /// Id bits telling this organization's events from others'.
    tag: u64,
    events: Vec<Event>,
    next_seq: u64,
    /// The latest timestamp given, even if its event was expired since.
    last_ms: i64,
}

/// A stable 64-bit hash (FNV-1a, then mixed): ids derived from names stay the same across runs.
fn hash(text: &str) -> u64 {
    let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    splitmix64(fnv)
}

/// A 24-hex id derived from a name.
fn derived_id(name: &str) -> String {
    let h = hash(name);
    format!("{:08x}{:016x}", splitmix64(h) as u32, h)
}

impl EventLog {
    /// An empty log. `organization` in events is the org id, or (without one) an id derived from
    /// the API key; the initiating administrator is `sim-admin@<organization>`.
    pub fn new(clock: Arc<EventClock>, api_key: &str, org_id: Option<&str>) -> EventLog {
        let organization = org_id.map_or_else(|| derived_id(&format!("org:{api_key}")), str::to_owned);
        EventLog {
            clock,
            admin_id: derived_id(&format!("admin:{organization}")),
            admin_email: format!("sim-admin@{organization}"),
            tag: hash(&organization) & 0xff_ffff,
            organization,
            events: Vec::new(),
            next_seq: 0,
            last_ms: i64::MIN,
        }
    }

    pub fn organization(&self) -> &str {
        &self.organization
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    fn push(&mut self, kind: Kind, actor: Actor, resource: Named, detail: Option<Detail>) {
        let at_ms = self.clock.now_ms().max(self.last_ms);
        self.last_ms = at_ms;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(Event { seq, at_ms, kind, actor, resource, detail: detail.map(Box::new) });
    }

    pub fn user_created(&mut self, actor: Actor, user: &User) {
        self.push(Kind::UserCreate, actor, Named::user(user), None);
    }

    /// Nothing when nothing changed.
    pub fn user_updated(&mut self, actor: Actor, before: &User, after: &User) {
        if let Some(changes) = changes(before, after) {
            self.push(Kind::UserUpdate, actor, Named::user(after), Some(changes));
        }
    }

    pub fn user_deleted(&mut self, actor: Actor, user: &User) {
        self.push(Kind::UserDelete, actor, Named::user(user), None);
    }

    pub fn group_created(&mut self, actor: Actor, group: &Group) {
        self.push(Kind::GroupCreate, actor, Named::group(group), None);
    }

    /// Nothing when nothing changed.
    pub fn group_updated(&mut self, actor: Actor, before: &Group, after: &Group) {
        if let Some(changes) = changes(before, after) {
            self.push(Kind::GroupUpdate, actor, Named::group(after), Some(changes));
        }
    }

    pub fn group_deleted(&mut self, actor: Actor, group: &Group) {
        self.push(Kind::GroupDelete, actor, Named::group(group), None);
    }

    pub fn association_changed(&mut self, actor: Actor, op: MemberOp, group: &Group, user: &User) {
        self.push(Kind::Association(op), actor, Named::group(group), Some(Detail::Member(Named::user(user))));
    }

    /// Drops the events stamped before `ms`; returns how many.
    pub fn expire_before(&mut self, ms: i64) -> usize {
        let n = self.events.partition_point(|e| e.at_ms < ms);
        self.events.drain(..n);
        n
    }

    /// Every event held (retention not applied), oldest first.
    pub fn all_json(&self) -> Vec<Value> {
        self.events.iter().map(|e| self.to_json(e)).collect()
    }

    /// 8 hex digits of seconds, 6 of organization, 10 of sequence: ids sort by time, then by order
    /// of arrival within the organization.
    fn id(&self, e: &Event) -> u128 {
        let secs = e.at_ms.div_euclid(1000) as u32;
        (u128::from(secs) << 64) | (u128::from(self.tag) << 40) | u128::from(e.seq & 0xff_ffff_ffff)
    }

    fn key(&self, e: &Event) -> (i64, u128) {
        (e.at_ms, self.id(e))
    }

    fn to_json(&self, e: &Event) -> Value {
        let mut resource = json!({ "id": &*e.resource.id });
        if e.kind.is_user() {
            resource["type"] = "user".into();
            resource["username"] = (&*e.resource.name).into();
        } else {
            resource["type"] = "user_group".into();
            resource["name"] = (&*e.resource.name).into();
        }
        let mut event = json!({
            "id": format!("{:024x}", self.id(e)),
            "service": "directory",
            "event_type": e.kind.event_type(),
            "timestamp": rfc3339_millis(e.at_ms),
            "organization": self.organization,
            "success": true,
            "auth_method": e.actor.auth_method(),
            "initiated_by": { "id": self.admin_id, "type": "admin", "email": self.admin_email },
            "resource": resource,
        });
        match (e.kind, e.detail.as_deref()) {
            (_, Some(Detail::Changes(changes))) => {
                let changes: Vec<Value> =
                    changes.iter().map(|c| json!({ "field": &*c.field, "from": c.from, "to": c.to })).collect();
                event["changes"] = changes.into();
            }
            (Kind::Association(op), Some(Detail::Member(user))) => {
                event["association"] = json!({
                    "op": match op { MemberOp::Add => "add", MemberOp::Remove => "remove" },
                    "connection": {
                        "from": { "type": "user_group", "object_id": &*e.resource.id, "name": &*e.resource.name },
                        "to": { "type": "user", "object_id": &*user.id, "name": &*user.name },
                    },
                });
            }
            _ => {}
        }
        event
    }

    /// One page of the events `query` selects, at `now_ms` on the event clock.
    pub fn query(&self, query: &EventQuery, now_ms: i64) -> EventPage {
        let window = if query.directory { self.window(query, now_ms) } else { &[] };
        let page: Vec<&Event> = if query.descending {
            window.iter().rev().skip(query.skip).take(query.limit).collect()
        } else {
            window.iter().skip(query.skip).take(query.limit).collect()
        };
        let search_after = page.last().map(|e| {
            let cursor = [e.at_ms.to_string(), format!("{:024x}", self.id(e))];
            serde_json::to_string(&cursor).expect("strings serialize")
        });
        EventPage { events: page.into_iter().map(|e| self.to_json(e)).collect(), search_after }
    }

    /// The events in the time range, within retention, and past the cursor, oldest first.
    fn window(&self, query: &EventQuery, now_ms: i64) -> &[Event] {
        let floor = query.start_ms.max(now_ms.saturating_sub(RETENTION_MS));
        let mut lo = self.events.partition_point(|e| e.at_ms < floor);
        let mut hi = query.end_ms.map_or(self.events.len(), |end| self.events.partition_point(|e| e.at_ms < end));
        if let Some(cursor) = query.search_after {
            if query.descending {
                hi = hi.min(self.events.partition_point(|e| self.key(e) < cursor));
            } else {
                lo = lo.max(self.events.partition_point(|e| self.key(e) <= cursor));
            }
        }
        self.events.get(lo..hi).unwrap_or(&[])
    }
}

/// The fields that differ between two versions of an object, in name order; `None` if none do.
fn changes<T: Serialize>(before: &T, after: &T) -> Option<Detail> {
    let (Ok(Value::Object(before)), Ok(Value::Object(after))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        unreachable!("users and groups serialize to objects")
    };
    let fields: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changes: Vec<Change> = fields
        .into_iter()
        .filter_map(|field| {
            let from = before.get(field).cloned().unwrap_or(Value::Null);
            let to = after.get(field).cloned().unwrap_or(Value::Null);
            (from != to).then(|| Change { field: field.as_str().into(), from, to })
        })
        .collect();
    (!changes.is_empty()).then(|| Detail::Changes(changes.into()))
}

pub(crate) struct EventPage {
    pub events: Vec<Value>,
    /// `X-Search_after`: `["<timestamp in epoch millis>","<event id>"]` of the last event; `None`
    /// for an empty page.
    pub search_after: Option<String>,
}

/// `EventQuery`'s body. `fields`, `q`, `exact_match` and `search_term` are JumpCloud's but not
/// simulated: they are refused, so that a client relying on them fails loudly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    service: Option<Vec<String>>,
    start_time: Option<String>,
    end_time: Option<String>,
    sort: Option<String>,
    limit: Option<i64>,
    skip: Option<i64>,
    search_after: Option<Vec<Value>>,
    fields: Option<Value>,
    q: Option<Value>,
    exact_match: Option<Value>,
    search_term: Option<Value>,
}

/// A checked `EventQuery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventQuery {
    /// The services asked for include `directory` (or `all`).
    directory: bool,
    /// Inclusive, in milliseconds (a finer start is rounded up: the first millisecond at or after it).
    start_ms: i64,
    /// Exclusive.
    end_ms: Option<i64>,
    pub descending: bool,
    pub limit: usize,
    skip: usize,
    /// Past this (timestamp, id): after it in ascending order, before it in descending order.
    search_after: Option<(i64, u128)>,
}

impl EventQuery {
    /// Parses and checks a request body at `now_ms` on the event clock; the error is a 400.
    /// Zero values (`"limit": 0`, `"sort": ""`, `"search_after": []`) count as absent, as in
    /// JumpCloud's Go service.
    pub fn parse(body: &[u8], now_ms: i64) -> Result<EventQuery, ApiError> {
        let body: QueryBody =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))?;
        for (name, given) in [
            ("fields", &body.fields),
            ("q", &body.q),
            ("exact_match", &body.exact_match),
            ("search_term", &body.search_term),
        ] {
            if given.is_some() {
                return Err(ApiError::bad_request(format!("{name}: not supported by the simulator")));
            }
        }
        let services = body.service.ok_or_else(|| ApiError::bad_request("service: required"))?;
        if services.is_empty() {
            return Err(ApiError::bad_request("service: at least one is required"));
        }
        if let Some(unknown) = services.iter().find(|s| !SERVICES.contains(&s.as_str())) {
            return Err(ApiError::bad_request(format!("service: {unknown:?} is not one of {}", SERVICES.join(", "))));
        }
        let directory = services.iter().any(|s| s == "directory" || s == "all");

        let time =
            |name: &str, text: &str| parse_rfc3339(text).map_err(|e| ApiError::bad_request(format!("{name}: {e}")));
        let start = time(
            "start_time",
            body.start_time.as_deref().ok_or_else(|| ApiError::bad_request("start_time: required"))?,
        )?;
        let start_ms = to_millis(start, true);
        if start_ms > now_ms {
            return Err(ApiError::bad_request(format!(
                "start_time: {} is in the future (now is {})",
                rfc3339_millis(start_ms),
                rfc3339_millis(now_ms)
            )));
        }
        let end_ms = match body.end_time.as_deref() {
            None => None,
            Some(text) => {
                let end = time("end_time", text)?;
                if end < start {
                    return Err(ApiError::bad_request("end_time: before start_time"));
                }
                Some(to_millis(end, true))
            }
        };

        let descending = match body.sort.as_deref().unwrap_or("") {
            "" => false,
            s if s.eq_ignore_ascii_case("asc") => false,
            s if s.eq_ignore_ascii_case("desc") => true,
            other => return Err(ApiError::bad_request(format!("sort: {other:?} is not ASC or DESC"))),
        };
        let limit = match body.limit.unwrap_or(0) {
            0 => DEFAULT_EVENT_LIMIT,
            n if n < 0 => return Err(ApiError::bad_request("limit: must not be negative")),
            n if n as u64 > MAX_EVENT_LIMIT as u64 => {
                return Err(ApiError::bad_request(format!("limit: at most {MAX_EVENT_LIMIT}")))
            }
            n => n as usize,
        };
        let skip = match body.skip.unwrap_or(0) {
            n if n < 0 => return Err(ApiError::bad_request("skip: must not be negative")),
            n => n as usize,
        };
        let search_after = match body.search_after.as_deref() {
            None | Some([]) => None,
            Some(cursor) => Some(parse_cursor(cursor)?),
        };
        Ok(EventQuery { directory, start_ms, end_ms, descending, limit, skip, search_after })
    }
}

/// `["<timestamp in epoch millis>", "<event id>"]`, as `X-Search_after` gives it (the timestamp is
/// also taken as a JSON number, as in JumpCloud's document's example).
fn parse_cursor(cursor: &[Value]) -> Result<(i64, u128), ApiError> {
    let bad = || {
        ApiError::bad_request("search_after: expected [\"<epoch millis>\", \"<event id>\"], as sent in X-Search_after")
    };
    let [at, id] = cursor else { return Err(bad()) };
    let at_ms = match at {
        Value::String(s) => s.parse::<i64>().map_err(|_| bad())?,
        Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let id = id.as_str().filter(|s| crate::ids::is_object_id(s)).ok_or_else(bad)?;
    let id = u128::from_str_radix(id, 16).map_err(|_| bad())?;
    Ok((at_ms, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn log() -> (Arc<EventClock>, EventLog) {
        let clock = Arc::new(EventClock::default());
        clock.pin(NOW);
        let log = EventLog::new(Arc::clone(&clock), "key", Some("org-1"));
        (clock, log)
    }

    fn query(body: Value) -> EventQuery {
        EventQuery::parse(body.to_string().as_bytes(), NOW).unwrap()
    }

    fn error(body: Value) -> String {
        EventQuery::parse(body.to_string().as_bytes(), NOW).unwrap_err().message
    }

    fn ids(page: &EventPage) -> Vec<String> {
        page.events.iter().map(|e| e["resource"]["username"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn timestamps_never_go_back_and_ties_keep_arrival_order() {
        let (clock, mut log) = log();
        for (i, at) in [NOW, NOW, NOW - 5_000, NOW + 1].into_iter().enumerate() {
            clock.pin(at);
            log.user_created(Actor::Console, &User::new(format!("u{i}"), format!("u{i}@x")));
        }
        let all = log.all_json();
        let stamps: Vec<&str> = all.iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
        assert_eq!(stamps[1], stamps[2], "an earlier clock does not stamp earlier");
        let keys: Vec<(&str, &str)> =
            all.iter().map(|e| (e["timestamp"].as_str().unwrap(), e["id"].as_str().unwrap())).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(all.iter().all(|e| crate::ids::is_object_id(e["id"].as_str().unwrap())));

        let start = rfc3339_millis(NOW - 1_000);
        let asc = log.query(&query(json!({"service": ["all"], "start_time": start})), NOW + 1);
        assert_eq!(ids(&asc), ["u0", "u1", "u2", "u3"]);
        let desc = log.query(&query(json!({"service": ["directory"], "start_time": start, "sort": "desc"})), NOW + 1);
        assert_eq!(ids(&desc), ["u3", "u2", "u1", "u0"]);
        let skipped = log.query(&query(json!({"service": ["all"], "start_time": start, "skip": 3})), NOW + 1);
        assert_eq!(ids(&skipped), ["u3"]);
        let other = log.query(&query(json!({"service": ["sso"], "start_time": start})), NOW + 1);
        assert!(other.events.is_empty() && other.search_after.is_none());
    }

    #[test]
    fn events_stay_compact() {
        assert!(std::mem::size_of::<Event>() <= 64, "{}", std::mem::size_of::<Event>());
    }

    #[test]
    fn updates_list_the_changed_fields_only() {
        let (_, mut log) = log();
        let before = User::new("a", "a@x");
        log.user_updated(Actor::Console, &before, &before.clone());
        assert_eq!(log.len(), 0, "no change, no event");
        let mut after = before.clone();
        after.set_state(crate::model::UserState::Suspended);
        after.manager = Some("m".into());
        log.user_updated(Actor::ApiKey, &before, &after);
        let event = &log.all_json()[0];
        assert_eq!(
            event["changes"],
            json!([
                {"field": "manager", "from": null, "to": "m"},
                {"field": "state", "from": "ACTIVATED", "to": "SUSPENDED"},
                {"field": "suspended", "from": false, "to": true},
            ])
        );
        assert_eq!(event["auth_method"], "api-key");
        assert!(event.get("association").is_none());
    }

    #[test]
    fn expiry_and_retention_hide_old_events() {
        let (clock, mut log) = log();
        for (i, at) in [NOW - 100 * 86_400_000, NOW - 10_000, NOW].into_iter().enumerate() {
            clock.pin(at);
            log.user_created(Actor::Console, &User::new(format!("u{i}"), format!("u{i}@x")));
        }
        let q = query(json!({"service": ["all"], "start_time": "2000-01-01T00:00:00Z"}));
        assert_eq!(ids(&log.query(&q, NOW)), ["u1", "u2"], "u0 is past retention");
        assert_eq!(log.len(), 3);
        assert_eq!(log.expire_before(NOW - 10_000), 1);
        assert_eq!(log.expire_before(NOW - 10_000), 0);
        assert_eq!(log.expire_before(NOW + 1), 2);
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn bad_queries_are_refused() {
        let ok = json!({"service": ["all"], "start_time": "2020-01-01T00:00:00Z"});
        let q = query(ok.clone());
        assert_eq!((q.limit, q.descending, q.skip), (DEFAULT_EVENT_LIMIT, false, 0));
        let with = |key: &str, value: Value| {
            let mut body = ok.clone();
            body[key] = value;
            body
        };
        assert_eq!(query(with("limit", json!(0))).limit, DEFAULT_EVENT_LIMIT);
        assert_eq!(query(with("limit", json!(10_000))).limit, 10_000);
        assert!(query(with("sort", json!("DeSc"))).descending);
        assert_eq!(query(with("search_after", json!([])).clone()).search_after, None);
        assert_eq!(
            query(with("search_after", json!([5, "00000000000000000000000a"]))).search_after,
            Some((5, 10)),
            "a number is taken for the timestamp"
        );
        for (body, expected) in [
            (json!({"start_time": "2020-01-01T00:00:00Z"}), "service: required"),
            (json!({"service": ["all"]}), "start_time: required"),
            (with("service", json!([])), "at least one"),
            (with("service", json!(["nope"])), "not one of"),
            (with("service", json!("all")), "malformed body"),
            (with("start_time", json!("yesterday")), "start_time"),
            (with("start_time", json!("2030-01-01T00:00:00Z")), "in the future"),
            (with("end_time", json!("2019-01-01T00:00:00Z")), "before start_time"),
            (with("sort", json!("newest")), "sort"),
            (with("limit", json!(10_001)), "at most 10000"),
            (with("limit", json!(-1)), "limit"),
            (with("limit", json!("10")), "malformed body"),
            (with("skip", json!(-1)), "skip"),
            (with("search_after", json!(["1"])), "search_after"),
            (with("search_after", json!(["x", "00000000000000000000000a"])), "search_after"),
            (with("search_after", json!(["1", "DZrPyW8BNsa9iKWoOm7h"])), "search_after"),
            (with("search_term", json!({"and": []})), "search_term: not supported"),
            (with("fields", json!(["id"])), "fields: not supported"),
            (with("colour", json!("red")), "unknown field"),
        ] {
            let message = error(body.clone());
            assert!(message.contains(expected), "{body}: {message}");
        }
        assert!(EventQuery::parse(b"", NOW).unwrap_err().message.contains("malformed body"));
    }
}
