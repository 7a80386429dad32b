//! Directory Insights events over real HTTP: what each change emits, and paging through
//! `POST /insights/directory/v1/events`. The event clock is pinned, never slept on.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use jumpcloud_sim::{
    parse_rfc3339, FaultKind, GenerateSpec, Group, MembershipMethod, Org, RunningSimulator, SimHandle, Simulator, User,
    UserState, DEFAULT_EVENT_LIMIT,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const KEY: &str = "test-key";
const ORG: &str = "org-1";
const EVENTS: &str = "/insights/directory/v1/events";
const EVENTS_KEY: &str = "POST /insights/directory/v1/events";
const T0: &str = "2026-11-30T12:00:00.123Z";
const LONG_AGO: &str = "2026-01-01T00:00:00Z";

fn at(text: &str) -> SystemTime {
    parse_rfc3339(text).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn events(&self) -> &Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body.as_array().expect("an array")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn count(&self) -> usize {
        self.header("x-result-count").unwrap().parse().unwrap()
    }

    /// The cursor, exactly as the header gives it.
    fn search_after(&self) -> Option<Value> {
        self.header("x-search_after").map(|v| serde_json::from_str(v).unwrap())
    }

    /// JumpCloud's `Error` shape.
    fn assert_error(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["code"], status);
        assert_eq!(self.body["status"], self.status.canonical_reason().unwrap());
        self.body["message"].as_str().expect("a message")
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(sim: &RunningSimulator) -> Client {
        Client { http: reqwest::Client::new(), base: sim.url() }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the simulator answers");
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        Answer { status, headers, body }
    }

    /// An API request with the test key.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).header("x-api-key", KEY)
    }

    async fn query(&self, body: Value) -> Answer {
        self.send(self.api(reqwest::Method::POST, EVENTS).json(&body)).await
    }

    async fn raw_query(&self, body: &'static str) -> Answer {
        self.send(self.api(reqwest::Method::POST, EVENTS).header("content-type", "application/json").body(body)).await
    }

    async fn member_op(&self, group: &str, op: &str, user: &str) -> Answer {
        let path = format!("/api/v2/usergroups/{group}/members");
        self.send(self.api(reqwest::Method::POST, &path).json(&json!({"op": op, "type": "user", "id": user}))).await
    }

    /// A control endpoint.
    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// Every event from `start`, paging by `limit` with `search_after`; checks the headers of each page.
    async fn all(&self, start: &str, sort: &str, limit: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor: Option<Value> = None;
        loop {
            let mut body = json!({"service": ["directory"], "start_time": start, "sort": sort, "limit": limit});
            if let Some(cursor) = &cursor {
                body["search_after"] = cursor.clone();
            }
            let page = self.query(body).await;
            let got = page.events();
            assert!(got.len() <= limit);
            assert_eq!(page.count(), got.len());
            assert_eq!(page.header("x-limit"), Some(limit.to_string().as_str()));
            assert_eq!(page.header("x-sort"), Some(sort));
            events.extend(got.iter().cloned());
            if got.len() < limit {
                return events;
            }
            cursor = Some(page.search_after().expect("a full page has a cursor"));
        }
    }
}

/// alice (managed by nobody) and bob; `admins` holds alice.
struct Small {
    org: Org,
    alice: String,
    bob: String,
    admins: String,
}

fn small() -> Small {
    let mut org = Org::new(KEY).with_org_id(ORG);
    let alice = org.add_user(User::new("alice", "alice@example.com"));
    let bob = org.add_user(User::new("bob", "bob@example.com"));
    let admins = org.add_group(Group::new("prod-db-admins"));
    org.add_member(&admins, &alice);
    Small { org, alice, bob, admins }
}

async fn started(org: Org) -> (RunningSimulator, SimHandle, Client) {
    let sim = Simulator::start(vec![org]).await.unwrap();
    let handle = sim.handle();
    handle.pin_clock(at(T0));
    let client = Client::new(&sim);
    (sim, handle, client)
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["event_type"].as_str().unwrap()).collect()
}

/// The fields every event carries, checked; returns the event without them for exact comparison.
fn strip_common(event: &Value, auth_method: &str) -> Value {
    let mut rest = event.as_object().unwrap().clone();
    let id = rest.remove("id").unwrap();
    assert!(jumpcloud_sim::is_object_id(id.as_str().unwrap()), "{id}");
    assert_eq!(rest.remove("service").unwrap(), "directory");
    assert_eq!(rest.remove("organization").unwrap(), ORG);
    assert_eq!(rest.remove("success").unwrap(), true);
    assert_eq!(rest.remove("auth_method").unwrap(), auth_method);
    let by = rest.remove("initiated_by").unwrap();
    assert_eq!((by["type"].as_str(), by["email"].as_str()), (Some("admin"), Some("sim-admin@org-1")));
    assert!(jumpcloud_sim::is_object_id(by["id"].as_str().unwrap()));
    Value::Object(rest)
}

#[tokio::test]
async fn each_direct_change_emits_exactly_its_event() {
    let s = small();
    let (_sim, handle, client) = started(s.org).await;
    let org = handle.org(0);
    assert_eq!(org.event_count(), 0, "the initial data emits nothing");
    let tick = || handle.advance_clock(Duration::from_secs(1));

    let carol = org.add_user(User::new("carol", "carol@example.com")).unwrap();
    tick();
    org.update_user(&carol, |u| {
        u.email = "carol@corp.example.com".into();
        u.manager = Some(s.alice.as_str().into());
        u.set_attribute("costCenter", "42");
    })
    .unwrap();
    tick();
    org.update_user(&carol, |u| u.set_state(UserState::Suspended)).unwrap();
    org.update_user(&carol, |u| u.set_state(UserState::Suspended)).unwrap(); // no change, no event
    tick();
    org.update_user(&carol, |u| u.set_state(UserState::Activated)).unwrap();
    let ops = org.add_group(Group::new("ops")).unwrap();
    org.update_group(&ops, |g| g.name = "ops-oncall".into()).unwrap();
    org.set_group_method(&ops, MembershipMethod::NotSet).unwrap();
    assert!(org.add_member(&ops, &carol).unwrap());
    assert!(!org.add_member(&ops, &carol).unwrap(), "no change, no event");
    assert!(org.remove_member(&ops, &carol).unwrap());
    assert!(org.add_member(&s.admins, &carol).unwrap());
    org.remove_user(&carol).unwrap();
    assert!(!org.is_member(&s.admins, &carol).unwrap(), "its memberships went with it");
    org.remove_group(&ops).unwrap();
    assert!(org.update_group(&s.admins, |g| g.name = "ops".into()).is_ok());
    assert!(org.update_group(&s.admins, |g| g.name = "prod-db-admins".into()).is_ok());

    let page = client.query(json!({"service": ["all"], "start_time": T0})).await;
    let events = page.events();
    assert_eq!(org.events(), *events, "the handle sees what the API serves");
    let expected = [
        json!({"event_type": "user_create", "timestamp": T0,
               "resource": {"id": carol, "type": "user", "username": "carol"}}),
        json!({"event_type": "user_update", "timestamp": "2026-11-30T12:00:01.123Z",
        "resource": {"id": carol, "type": "user", "username": "carol"},
        "changes": [
            {"field": "attributes", "from": [], "to": [{"name": "costCenter", "value": "42"}]},
            {"field": "email", "from": "carol@example.com", "to": "carol@corp.example.com"},
            {"field": "manager", "from": null, "to": s.alice},
        ]}),
        json!({"event_type": "user_update", "timestamp": "2026-11-30T12:00:02.123Z",
        "resource": {"id": carol, "type": "user", "username": "carol"},
        "changes": [
            {"field": "state", "from": "ACTIVATED", "to": "SUSPENDED"},
            {"field": "suspended", "from": false, "to": true},
        ]}),
        json!({"event_type": "user_update", "timestamp": "2026-11-30T12:00:03.123Z",
        "resource": {"id": carol, "type": "user", "username": "carol"},
        "changes": [
            {"field": "state", "from": "SUSPENDED", "to": "ACTIVATED"},
            {"field": "suspended", "from": true, "to": false},
        ]}),
        json!({"event_type": "user_group_create", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": ops, "type": "user_group", "name": "ops"}}),
        json!({"event_type": "user_group_update", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": ops, "type": "user_group", "name": "ops-oncall"},
               "changes": [{"field": "name", "from": "ops", "to": "ops-oncall"}]}),
        json!({"event_type": "user_group_update", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": ops, "type": "user_group", "name": "ops-oncall"},
               "changes": [{"field": "membershipMethod", "from": "STATIC", "to": "NOTSET"}]}),
        json!({"event_type": "association_change", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": ops, "type": "user_group", "name": "ops-oncall"},
               "association": {"op": "add", "connection": {
                   "from": {"type": "user_group", "object_id": ops, "name": "ops-oncall"},
                   "to": {"type": "user", "object_id": carol, "name": "carol"}}}}),
        json!({"event_type": "association_change", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": ops, "type": "user_group", "name": "ops-oncall"},
               "association": {"op": "remove", "connection": {
                   "from": {"type": "user_group", "object_id": ops, "name": "ops-oncall"},
                   "to": {"type": "user", "object_id": carol, "name": "carol"}}}}),
        json!({"event_type": "association_change", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": s.admins, "type": "user_group", "name": "prod-db-admins"},
               "association": {"op": "add", "connection": {
                   "from": {"type": "user_group", "object_id": s.admins, "name": "prod-db-admins"},
                   "to": {"type": "user", "object_id": carol, "name": "carol"}}}}),
        // user_delete only: no association_change for the membership that went with it.
        json!({"event_type": "user_delete", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": carol, "type": "user", "username": "carol"}}),
        json!({"event_type": "user_group_delete", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": ops, "type": "user_group", "name": "ops-oncall"}}),
        json!({"event_type": "user_group_update", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": s.admins, "type": "user_group", "name": "ops"},
               "changes": [{"field": "name", "from": "prod-db-admins", "to": "ops"}]}),
        json!({"event_type": "user_group_update", "timestamp": "2026-11-30T12:00:03.123Z",
               "resource": {"id": s.admins, "type": "user_group", "name": "prod-db-admins"},
               "changes": [{"field": "name", "from": "ops", "to": "prod-db-admins"}]}),
    ];
    assert_eq!(events.len(), expected.len(), "{}", types(events).join(" "));
    for (event, expected) in events.iter().zip(&expected) {
        assert_eq!(strip_common(event, "session"), *expected);
    }
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "unique ids");
    assert_eq!(handle.request_count(EVENTS_KEY), 1);
}

#[tokio::test]
async fn control_endpoints_emit_the_same_events() {
    use reqwest::Method;
    let s = small();
    let (_sim, handle, client) = started(s.org).await;
    let users = "/_sim/orgs/0/users";

    let created = client
        .control(
            Method::POST,
            users,
            Some(json!({"username": "dave", "email": "dave@example.com", "department": "Ops"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["created"], T0);
    let dave = created.body["_id"].as_str().unwrap().to_owned();
    let taken = client.control(Method::POST, users, Some(json!({"username": "dave", "email": "d2@example.com"}))).await;
    taken.assert_error(409);
    let user = format!("{users}/{dave}");
    let patched = client.control(Method::PATCH, &user, Some(json!({"state": "SUSPENDED"}))).await;
    assert_eq!((patched.body["state"].as_str(), patched.body["suspended"].as_bool()), (Some("SUSPENDED"), Some(true)));
    client.control(Method::PATCH, &user, Some(json!({"suspended": false}))).await;
    let patch =
        json!({"email": "dave@corp.example.com", "manager": s.alice, "attributes": [{"name": "a", "value": "b"}]});
    assert_eq!(client.control(Method::PATCH, &user, Some(patch)).await.status, StatusCode::OK);
    client.control(Method::PATCH, &user, Some(json!({"manager": "nobody"}))).await.assert_error(400);
    client.control(Method::PATCH, &user, Some(json!({"password": "x"}))).await.assert_error(400);
    client.control(Method::PATCH, &user, Some(json!({"email": "BOB@example.com"}))).await.assert_error(409);
    client.control(Method::PATCH, &format!("{users}/nobody"), Some(json!({}))).await.assert_error(404);

    let group = client.control(Method::POST, "/_sim/orgs/0/groups", Some(json!({"name": "ops"}))).await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let ops = group.body["id"].as_str().unwrap().to_owned();
    let group_path = format!("/_sim/orgs/0/groups/{ops}");
    let renamed = client.control(Method::PATCH, &group_path, Some(json!({"name": "ops-oncall"}))).await;
    assert_eq!(renamed.body["name"], "ops-oncall");
    client.control(Method::PATCH, &group_path, Some(json!({"name": "prod-db-admins"}))).await.assert_error(409);
    let members = format!("{group_path}/members");
    let add = client.control(Method::POST, &members, Some(json!({"op": "add", "type": "user", "id": dave}))).await;
    assert_eq!(add.body, json!({"changed": true}));
    client.control(Method::POST, &members, Some(json!({"op": "remove", "type": "user", "id": dave}))).await;
    assert_eq!(client.control(Method::DELETE, &user, None).await.status, StatusCode::NO_CONTENT);
    client.control(Method::DELETE, &user, None).await.assert_error(404);
    assert_eq!(client.control(Method::DELETE, &group_path, None).await.status, StatusCode::NO_CONTENT);

    let events = client.query(json!({"service": ["directory"], "start_time": T0})).await.events().clone();
    assert_eq!(
        types(&events),
        [
            "user_create",
            "user_update",
            "user_update",
            "user_update",
            "user_group_create",
            "user_group_update",
            "association_change",
            "association_change",
            "user_delete",
            "user_group_delete"
        ]
    );
    for event in &events {
        strip_common(event, "session");
    }
    assert_eq!(events[0]["resource"], json!({"id": dave, "type": "user", "username": "dave"}));
    assert_eq!(events[1]["changes"][0], json!({"field": "state", "from": "ACTIVATED", "to": "SUSPENDED"}));
    assert_eq!(events[2]["changes"][0], json!({"field": "state", "from": "SUSPENDED", "to": "ACTIVATED"}));
    let fields: Vec<&str> =
        events[3]["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["attributes", "email", "manager"]);
    assert_eq!(events[5]["changes"], json!([{"field": "name", "from": "ops", "to": "ops-oncall"}]));
    assert_eq!(events[6]["association"]["op"], "add");
    assert_eq!(events[7]["association"]["op"], "remove");
    assert_eq!(events[9]["resource"], json!({"id": ops, "type": "user_group", "name": "ops-oncall"}));

    let log = client.control(Method::GET, "/_sim/orgs/0/events", None).await;
    assert_eq!(log.body, Value::Array(events));
    assert_eq!(handle.org(0).event_count(), 10);
    assert_eq!(handle.request_count(EVENTS_KEY), 1, "control endpoints are not counted");
}

#[tokio::test]
async fn the_membership_api_emits_association_changes() {
    let s = small();
    let (_sim, handle, client) = started(s.org).await;

    assert_eq!(client.member_op(&s.admins, "add", &s.bob).await.status, StatusCode::NO_CONTENT);
    client.member_op(&s.admins, "add", &s.bob).await.assert_error(409);
    handle.fail_next(1, FaultKind::ServerError(503));
    client.member_op(&s.admins, "remove", &s.alice).await.assert_error(503);
    client.member_op(&s.admins, "remove", &s.bob).await;
    client.member_op(&s.admins, "remove", &s.bob).await.assert_error(404);
    client.member_op("000000000000000000000000", "add", &s.bob).await.assert_error(404);

    let events = client.query(json!({"service": ["directory"], "start_time": T0})).await.events().clone();
    assert_eq!(events.len(), 2, "failed and faulted writes emit nothing: {events:?}");
    for (event, op) in events.iter().zip(["add", "remove"]) {
        let rest = strip_common(event, "api-key");
        assert_eq!(
            rest,
            json!({
                "event_type": "association_change",
                "timestamp": T0,
                "resource": {"id": s.admins, "type": "user_group", "name": "prod-db-admins"},
                "association": {"op": op, "connection": {
                    "from": {"type": "user_group", "object_id": s.admins, "name": "prod-db-admins"},
                    "to": {"type": "user", "object_id": s.bob, "name": "bob"},
                }},
            })
        );
    }
    assert!(events[0]["id"].as_str() < events[1]["id"].as_str(), "ties on timestamp are ordered by id");
}

/// `n` membership changes through the handle, `per_ms` of them in each millisecond.
fn churn(handle: &SimHandle, s: &Small, n: usize, per_ms: usize) {
    let org = handle.org(0);
    for i in 0..n {
        if i > 0 && i % per_ms == 0 {
            handle.advance_clock(Duration::from_millis(1));
        }
        if org.is_member(&s.admins, &s.bob).unwrap() {
            org.remove_member(&s.admins, &s.bob).unwrap();
        } else {
            org.add_member(&s.admins, &s.bob).unwrap();
        }
    }
}

fn keys(events: &[Value]) -> Vec<(SystemTime, String)> {
    events.iter().map(|e| (at(e["timestamp"].as_str().unwrap()), e["id"].as_str().unwrap().to_owned())).collect()
}

#[tokio::test]
async fn paging_returns_every_event_once_in_both_orders() {
    let s = small();
    let (_sim, handle, client) = started(s.org.clone()).await;
    churn(&handle, &s, 57, 4);
    let stored = keys(&handle.org(0).events());

    let asc = keys(&client.all(T0, "ASC", 5).await);
    assert_eq!(asc, stored, "every event once, by timestamp then id");
    assert!(asc.windows(2).all(|w| w[0] < w[1]));
    let mut desc = keys(&client.all(T0, "DESC", 5).await);
    desc.reverse();
    assert_eq!(desc, stored);
    // A limit dividing the count exactly ends on an empty page without a cursor.
    assert_eq!(keys(&client.all(T0, "ASC", 19).await), stored);
    let past_end = client.query(json!({"service": ["all"], "start_time": T0, "skip": 57})).await;
    assert!(past_end.events().is_empty());
    assert_eq!(past_end.count(), 0);
    assert_eq!(past_end.header("x-search_after"), None);

    // The cursor is ["<epoch millis>", "<event id>"] of the last event of the page.
    let page = client.query(json!({"service": ["all"], "start_time": T0, "limit": 3})).await;
    let last = &page.events()[2];
    let millis = at(last["timestamp"].as_str().unwrap()).duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis();
    assert_eq!(page.search_after(), Some(json!([millis.to_string(), last["id"]])));
    assert_eq!(page.header("x-limit"), Some("3"));
    // ASC by default, and the default limit.
    let default = client.query(json!({"service": ["all"], "start_time": T0})).await;
    assert_eq!((default.header("x-sort"), default.count()), (Some("ASC"), 57));
    assert_eq!(default.header("x-limit"), Some(DEFAULT_EVENT_LIMIT.to_string().as_str()));
    assert_eq!(keys(default.events()), stored);
}

#[tokio::test]
async fn search_after_continues_over_appended_events() {
    let s = small();
    let (_sim, handle, client) = started(s.org.clone()).await;
    churn(&handle, &s, 10, 100);
    let query = |sort: &str, cursor: Option<Value>| {
        let mut body = json!({"service": ["directory"], "start_time": T0, "sort": sort, "limit": 4});
        if let Some(cursor) = cursor {
            body["search_after"] = cursor;
        }
        body
    };

    // Ascending: events appended between pages (in the same millisecond as the cursor, too) come
    // after it, each once.
    let first = client.query(query("ASC", None)).await;
    let mut seen = first.events().clone();
    let mut cursor = first.search_after();
    churn(&handle, &s, 5, 100);
    loop {
        let page = client.query(query("ASC", cursor.clone())).await;
        seen.extend(page.events().iter().cloned());
        if page.count() < 4 {
            break;
        }
        cursor = page.search_after();
        churn(&handle, &s, 1, 1);
    }
    let stored = handle.org(0).events();
    assert_eq!(keys(&seen), keys(&stored), "{} seen of {}", seen.len(), stored.len());

    // Descending: the cursor walks back through older events; newer ones appended meanwhile
    // belong to the next query from the top, not to this walk.
    let before = keys(&handle.org(0).events());
    let first = client.query(query("DESC", None)).await;
    let mut walked = first.events().clone();
    let mut cursor = first.search_after();
    loop {
        churn(&handle, &s, 2, 1);
        let page = client.query(query("DESC", cursor.clone())).await;
        walked.extend(page.events().iter().cloned());
        if page.count() < 4 {
            break;
        }
        cursor = page.search_after();
    }
    let mut walked = keys(&walked);
    walked.reverse();
    assert_eq!(walked, before);
    let top = client.query(query("DESC", None)).await;
    assert_eq!(keys(&top.events()[..1]), keys(&handle.org(0).events()[handle.org(0).event_count() - 1..]));
}

#[tokio::test]
async fn time_bounds_retention_and_expiry() {
    let s = small();
    let (_sim, handle, client) = started(s.org.clone()).await;
    let org = handle.org(0);
    let stamps = ["2026-11-30T12:00:00.123Z", "2026-11-30T12:00:01.000Z", "2026-11-30T12:00:02.500Z"];
    for stamp in stamps {
        handle.pin_clock(at(stamp));
        org.add_member(&s.admins, &s.bob).unwrap();
        org.remove_member(&s.admins, &s.bob).unwrap();
    }
    let window = |start: &str, end: Option<&str>| {
        let mut body = json!({"service": ["directory"], "start_time": start});
        if let Some(end) = end {
            body["end_time"] = end.into();
        }
        body
    };
    let timestamps = |events: &Vec<Value>| -> Vec<String> {
        events.iter().map(|e| e["timestamp"].as_str().unwrap().to_owned()).collect()
    };
    // start_time is inclusive, end_time exclusive; both take any RFC 3339 form.
    let middle = client.query(window("2026-11-30T12:00:01Z", Some("2026-11-30T12:00:02.500Z"))).await;
    assert_eq!(timestamps(middle.events()), [stamps[1], stamps[1]]);
    let offset = client.query(window("2026-11-30T13:00:01+01:00", None)).await;
    assert_eq!(offset.count(), 4);
    let sub_ms = client.query(window("2026-11-30T12:00:00.1225Z", Some("2026-11-30T12:00:00.1231Z"))).await;
    assert_eq!(sub_ms.count(), 2);
    assert_eq!(client.query(window(T0, Some(T0))).await.count(), 0);

    // Retention: 90 days back from the event clock.
    handle.pin_clock(at("2027-02-28T12:00:01.000Z"));
    assert_eq!(
        timestamps(client.query(window(LONG_AGO, None)).await.events()),
        [stamps[1], stamps[1], stamps[2], stamps[2]]
    );
    handle.advance_clock(Duration::from_secs(2));
    assert_eq!(client.query(window(LONG_AGO, None)).await.count(), 0, "all past retention");
    assert_eq!(org.event_count(), 6, "hidden, still held");

    // Expiry: a client's cursor may point at events that no longer exist; paging goes on from it.
    handle.pin_clock(at("2026-11-30T12:00:03Z"));
    let first = client.query(json!({"service": ["all"], "start_time": LONG_AGO, "limit": 1})).await;
    assert_eq!(org.expire_events_before(at(stamps[2])), 4);
    let rest =
        client.query(json!({"service": ["all"], "start_time": LONG_AGO, "search_after": first.search_after()})).await;
    assert_eq!(timestamps(rest.events()), [stamps[2], stamps[2]]);
    let expired = client
        .control(
            reqwest::Method::POST,
            "/_sim/orgs/0/events/expire",
            Some(json!({"before": "2026-11-30T12:00:02.501Z"})),
        )
        .await;
    assert_eq!(expired.body, json!({"expired": 2}));
    assert_eq!(org.event_count(), 0);
    // Events never go back in time, even when the clock does.
    handle.pin_clock(at(T0));
    org.add_member(&s.admins, &s.bob).unwrap();
    assert_eq!(org.events()[0]["timestamp"], stamps[2]);
}

#[tokio::test]
async fn the_clock_is_steered_over_http() {
    let s = small();
    let sim = Simulator::start(vec![s.org.clone()]).await.unwrap();
    let (handle, client) = (sim.handle(), Client::new(&sim));
    use reqwest::Method;

    let clock = client.control(Method::GET, "/_sim/clock", None).await;
    assert_eq!(clock.body["pinned"], false);
    // In the past, so that the system clock is later once unpinned.
    let pinned = client.control(Method::PUT, "/_sim/clock", Some(json!({"now": "2020-11-30T13:00:00+01:00"}))).await;
    assert_eq!(pinned.body, json!({"now": "2020-11-30T12:00:00.000Z", "pinned": true}));
    assert!(handle.clock_is_pinned());
    let advanced = client.control(Method::POST, "/_sim/clock/advance", Some(json!({"ms": 1500}))).await;
    assert_eq!(advanced.body["now"], "2020-11-30T12:00:01.500Z");
    assert_eq!(handle.clock_now(), at("2020-11-30T12:00:01.5Z"));
    handle.org(0).add_member(&s.admins, &s.bob).unwrap();
    assert_eq!(handle.org(0).events()[0]["timestamp"], "2020-11-30T12:00:01.500Z");
    client.control(Method::PUT, "/_sim/clock", Some(json!({"now": "noon"}))).await.assert_error(400);
    client.control(Method::PUT, "/_sim/clock", Some(json!({"at": T0}))).await.assert_error(400);

    let unpinned = client.control(Method::DELETE, "/_sim/clock", None).await;
    assert_eq!(unpinned.body["pinned"], false);
    assert!(!handle.clock_is_pinned());
    let before = SystemTime::now() - Duration::from_secs(1);
    handle.org(0).remove_member(&s.admins, &s.bob).unwrap();
    let stamped = at(handle.org(0).events()[1]["timestamp"].as_str().unwrap());
    assert!(stamped >= before && stamped <= SystemTime::now(), "the system clock again");
    let orgs = client.control(Method::GET, "/_sim/orgs", None).await;
    assert_eq!(orgs.body[0]["events"], 2);
}

#[tokio::test]
async fn services_other_than_directory_have_no_events() {
    let s = small();
    let (_sim, handle, client) = started(s.org.clone()).await;
    churn(&handle, &s, 3, 3);
    for (services, n) in [
        (json!(["directory"]), 3),
        (json!(["all"]), 3),
        (json!(["sso", "directory"]), 3),
        (json!(["sso"]), 0),
        (json!(["radius", "systems"]), 0),
    ] {
        let page = client.query(json!({"service": services, "start_time": T0})).await;
        assert_eq!(page.events().len(), n, "{services}");
        assert_eq!(page.count(), n);
        assert_eq!(page.header("x-search_after").is_some(), n > 0, "no cursor on an empty answer");
    }
    let message = client.query(json!({"service": ["bogus"], "start_time": T0})).await.assert_error(400).to_owned();
    assert!(message.contains("directory"), "lists the supported values: {message}");
}

#[tokio::test]
async fn events_need_a_key_and_are_counted_and_faulted_like_the_api() {
    let s = small();
    let other = Org::new(KEY).with_org_id("org-2");
    let sim = Simulator::start(vec![s.org.clone(), other]).await.unwrap();
    let handle = sim.handle();
    handle.pin_clock(at(T0));
    let http = reqwest::Client::new();
    let url = format!("{}{EVENTS}", sim.url());
    let body = json!({"service": ["all"], "start_time": T0});
    handle.org(0).add_member(&s.admins, &s.bob).unwrap();

    let status = |r: reqwest::Response| r.status();
    let no_key = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    let wrong = http.post(&url).header("x-api-key", "nope").header("x-org-id", ORG).json(&body).send().await.unwrap();
    assert_eq!(status(wrong), StatusCode::UNAUTHORIZED);
    let ambiguous = http.post(&url).header("x-api-key", KEY).json(&body).send().await.unwrap();
    assert_eq!(status(ambiguous), StatusCode::BAD_REQUEST, "x-org-id required");
    for (org_id, n) in [(ORG, 1), ("org-2", 0)] {
        let page: Vec<Value> = http
            .post(&url)
            .header("x-api-key", KEY)
            .header("x-org-id", org_id)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page.len(), n, "{org_id}: each organization has its own events");
    }
    handle.fail_next(1, FaultKind::TooManyRequests { retry_after_secs: Some(3) });
    let faulted = http.post(&url).header("x-api-key", KEY).header("x-org-id", ORG).json(&body).send().await.unwrap();
    assert_eq!(faulted.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(faulted.headers()["retry-after"], "3");
    assert_eq!(handle.request_count(EVENTS_KEY), 6);
    assert_eq!(handle.faulted_count_for(EVENTS_KEY), 1);
    assert_eq!(handle.request_log().last(), Some(&EVENTS_KEY));
}

#[tokio::test]
async fn malformed_queries_are_400() {
    let s = small();
    let (_sim, _handle, client) = started(s.org).await;
    let ok = json!({"service": ["all"], "start_time": T0});
    let with = |key: &str, value: Value| {
        let mut body = ok.clone();
        body[key] = value;
        body
    };
    for (body, expected) in [
        (json!({"start_time": T0}), "service: required"),
        (json!({"service": ["all"]}), "start_time: required"),
        (with("service", json!("all")), "malformed body"),
        (with("service", json!([])), "service"),
        (with("start_time", json!("30/11/2026")), "start_time"),
        (with("start_time", json!("2026-11-30T12:00:00.124Z")), "in the future"),
        (with("end_time", json!("2026-11-30T11:00:00Z")), "before start_time"),
        (with("end_time", json!(5)), "malformed body"),
        (with("sort", json!("newest")), "sort"),
        (with("limit", json!(10_001)), "limit"),
        (with("limit", json!(-5)), "limit"),
        (with("limit", json!(1.5)), "malformed body"),
        (with("skip", json!(-1)), "skip"),
        (with("search_after", json!("1764504000123")), "malformed body"),
        (with("search_after", json!(["1764504000123"])), "search_after"),
        (with("search_after", json!(["soon", "000000000000000000000001"])), "search_after"),
        (with("search_after", json!(["1764504000123", "not-an-id"])), "search_after"),
        (with("search_term", json!({"and": [{"event_type": "user_create"}]})), "search_term"),
        (with("fields", json!(["timestamp"])), "fields"),
        (with("q", json!("alice")), "q"),
        (with("start", json!(T0)), "unknown field"),
    ] {
        let message = client.query(body.clone()).await.assert_error(400).to_owned();
        assert!(message.contains(expected), "{body}: {message}");
    }
    client.raw_query("").await.assert_error(400);
    client.raw_query("{\"service\": [\"all\"],").await.assert_error(400);
    client.raw_query("[]").await.assert_error(400);
    // What is accepted: the largest limit, zero values as absent, a numeric timestamp in the cursor.
    assert_eq!(client.query(with("limit", json!(10_000))).await.header("x-limit"), Some("10000"));
    assert_eq!(client.query(with("limit", json!(0))).await.header("x-limit"), Some("1000"));
    assert_eq!(client.query(with("sort", json!("desc"))).await.header("x-sort"), Some("DESC"));
    let numeric = client.query(with("search_after", json!([1_764_504_000_123_i64, "000000000000000000000001"]))).await;
    assert_eq!(numeric.status, StatusCode::OK);
}

#[tokio::test]
async fn a_generated_org_holds_no_events_until_a_change() {
    let spec =
        GenerateSpec { users: 10_000, groups: 50, avg_members: 100, seed: 3, api_key: KEY.to_owned(), org_id: None };
    let org = Org::generate(&spec);
    let group = org.groups[0].id.clone();
    let user = org.users.iter().find(|u| u.state == UserState::Activated).unwrap().id.clone();
    let (_sim, handle, client) = started(org).await;
    let handle_org = handle.org(0);
    assert_eq!(handle_org.event_count(), 0);
    let page = client.query(json!({"service": ["all"], "start_time": LONG_AGO})).await;
    assert!(page.events().is_empty());
    assert_eq!(page.header("x-search_after"), None);

    handle_org.update_user(&user, |u| u.set_state(UserState::Suspended)).unwrap();
    if !handle_org.is_member(&group, &user).unwrap() {
        handle_org.add_member(&group, &user).unwrap();
    }
    let events = client.query(json!({"service": ["all"], "start_time": LONG_AGO})).await.events().clone();
    assert_eq!(events.len(), handle_org.event_count());
    assert_eq!(events[0]["event_type"], "user_update");
    assert_eq!(events[0]["resource"]["id"], user.as_str());
    // Without an org id, the organization is an id derived from the API key.
    let organization = handle_org.event_org_id();
    assert!(jumpcloud_sim::is_object_id(&organization), "{organization}");
    assert!(events.iter().all(|e| e["organization"] == organization.as_str()));
    assert_eq!(events[0]["initiated_by"]["email"], format!("sim-admin@{organization}"));
}
