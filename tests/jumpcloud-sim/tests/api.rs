//! The simulator over real HTTP, as the product's JumpCloud client will see it.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use jumpcloud_sim::{
    FaultKind, Faults, GenerateSpec, Group, MembershipMethod, Org, RunningSimulator, Simulator, User, UserState,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const KEY: &str = "test-key";
const LIST_USERS: &str = "GET /api/systemusers";
const GET_USER: &str = "GET /api/systemusers/{id}";
const LIST_GROUPS: &str = "GET /api/v2/usergroups";
const GET_GROUP: &str = "GET /api/v2/usergroups/{id}";
const LIST_MEMBERS: &str = "GET /api/v2/usergroups/{id}/members";
const MANAGE_MEMBERS: &str = "POST /api/v2/usergroups/{id}/members";

/// A bare client of the simulator, speaking raw HTTP.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    org_id: Option<String>,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn total(&self) -> usize {
        self.headers["x-total-count"].to_str().unwrap().parse().unwrap()
    }

    fn array(&self) -> &Vec<Value> {
        self.body.as_array().expect("an array")
    }

    /// JumpCloud's `Error` shape, checked on every error answer.
    fn assert_error(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["code"], status);
        assert_eq!(self.body["status"], self.status.canonical_reason().unwrap(), "{}", self.body);
        self.body["message"].as_str().expect("a message")
    }
}

impl Api {
    fn new(sim: &RunningSimulator) -> Api {
        Api { http: reqwest::Client::new(), base: sim.url(), key: KEY.to_owned(), org_id: None }
    }

    fn with_key(mut self, key: &str) -> Api {
        self.key = key.to_owned();
        self
    }

    fn with_org_id(mut self, org_id: &str) -> Api {
        self.org_id = Some(org_id.to_owned());
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .header("accept", "application/json");
        if let Some(org_id) = &self.org_id {
            request = request.header("x-org-id", org_id);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the simulator answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    async fn member_op(&self, group_id: &str, op: &str, user_id: &str) -> Answer {
        self.post(&format!("/api/v2/usergroups/{group_id}/members"), json!({"op": op, "type": "user", "id": user_id}))
            .await
    }
}

fn generated(users: usize, groups: usize, avg: usize) -> Org {
    Org::generate(&GenerateSpec { users, groups, avg_members: avg, seed: 11, api_key: KEY.to_owned(), org_id: None })
}

/// alice and bob; `admins` holds alice, `empty` nobody.
struct Small {
    org: Org,
    alice: String,
    bob: String,
    admins: String,
    empty: String,
}

fn small() -> Small {
    let mut org = Org::new(KEY);
    let alice = org.add_user(User { department: "Engineering".into(), ..User::new("alice", "alice@example.com") });
    let bob = org.add_user(User {
        department: "Finance".into(),
        manager: Some(alice.as_str().into()),
        ..User::new("bob", "bob@example.com")
    });
    let admins = org.add_group(Group::new("prod-db-admins"));
    let empty = org.add_group(Group::new("empty"));
    org.add_member(&admins, &alice);
    Small { org, alice, bob, admins, empty }
}

async fn all_user_ids(api: &Api, sort: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut skip = 0;
    loop {
        let page = api.get(&format!("/api/systemusers?limit=100&skip={skip}&sort={sort}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let results = page.body["results"].as_array().unwrap();
        assert!(results.len() <= 100);
        ids.extend(results.iter().map(|u| u["_id"].as_str().unwrap().to_owned()));
        skip += 100;
        if skip >= page.body["totalCount"].as_u64().unwrap() as usize {
            return ids;
        }
    }
}

#[tokio::test]
async fn paging_with_a_stable_sort_returns_every_user_exactly_once() {
    let org = generated(250, 5, 10);
    let expected: HashSet<String> = org.users.iter().map(|u| u.id.to_string()).collect();
    let sim = Simulator::start(vec![org.clone()]).await.unwrap();
    let api = Api::new(&sim);

    for sort in ["", "_id", "username", "-email", "department", "-department%20username"] {
        let ids = all_user_ids(&api, sort).await;
        assert_eq!(ids.len(), 250, "sort {sort:?}");
        assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), expected, "sort {sort:?}");
    }

    let by_username = all_user_ids(&api, "username").await;
    let names: Vec<&str> = by_username.iter().map(|id| org.user(id).unwrap().username.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]));
    // Ties are broken by id.
    let by_department = all_user_ids(&api, "department").await;
    let keys: Vec<(&str, &str)> =
        by_department.iter().map(|id| (org.user(id).unwrap().department.as_str(), id.as_str())).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    let descending = all_user_ids(&api, "-_id").await;
    assert!(descending.windows(2).all(|w| w[0] > w[1]));

    // The default page is 10.
    let page = api.get("/api/systemusers").await;
    assert_eq!(page.body["results"].as_array().unwrap().len(), 10);
    assert_eq!(page.body["totalCount"], 250);
}

#[tokio::test]
async fn limits_above_100_and_bad_numbers_are_400() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let api = Api::new(&sim);
    for path in [
        "/api/systemusers?limit=101".to_owned(),
        "/api/v2/usergroups?limit=1000".to_owned(),
        format!("/api/v2/usergroups/{}/members?limit=101", s.admins),
    ] {
        let message = api.get(&path).await.assert_error(400).to_owned();
        assert!(message.contains("Limited to 100"), "{message}");
    }
    for path in [
        "/api/systemusers?limit=-1",
        "/api/systemusers?skip=-1",
        "/api/systemusers?limit=ten",
        "/api/v2/usergroups?skip=x",
        "/api/systemusers?sort=password",
        "/api/systemusers?filter=email:eq:x",
        "/api/v2/usergroups?filter=name:$eq:x",
    ] {
        api.get(path).await.assert_error(400);
    }
    // Empty values, as JumpCloud's own samples send them, mean "absent"; 100 is allowed.
    let ok = api.get("/api/systemusers?limit=100&skip=0&sort=&fields=&filter=").await;
    assert_eq!(ok.body["totalCount"], 2);
}

#[tokio::test]
async fn fields_project_users_and_keep_the_ids() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let api = Api::new(&sim);
    for fields in ["email+username", "email%20username"] {
        let page = api.get(&format!("/api/systemusers?fields={fields}")).await;
        for user in page.body["results"].as_array().unwrap() {
            let keys: BTreeSet<&str> = user.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(keys, BTreeSet::from(["_id", "id", "email", "username"]));
        }
    }
    let full = api.get(&format!("/api/systemusers/{}", s.bob)).await;
    assert_eq!(full.status, StatusCode::OK);
    for field in [
        "_id",
        "id",
        "username",
        "email",
        "firstname",
        "lastname",
        "displayname",
        "jobTitle",
        "department",
        "location",
        "employeeType",
        "manager",
        "state",
        "suspended",
        "activated",
        "attributes",
        "created",
    ] {
        assert!(full.body.get(field).is_some(), "{field} missing: {}", full.body);
    }
    assert_eq!(full.body["manager"], s.alice.as_str());
    let alice = api.get(&format!("/api/systemusers/{}?fields=email", s.alice)).await;
    assert_eq!(alice.body, json!({"_id": s.alice, "id": s.alice, "email": "alice@example.com"}));
    // Alice has no manager: the field is absent, not null.
    let alice = api.get(&format!("/api/systemusers/{}", s.alice)).await;
    assert!(alice.body.get("manager").is_none());
}

#[tokio::test]
async fn v1_filters_select_users() {
    let org = generated(300, 5, 10);
    let sim = Simulator::start(vec![org.clone()]).await.unwrap();
    let api = Api::new(&sim);
    let target = &org.users[42];

    let by_email = api.get(&format!("/api/systemusers?filter=email:$eq:{}", target.email)).await;
    assert_eq!(by_email.body["totalCount"], 1);
    assert_eq!(by_email.body["results"][0]["_id"], target.id.as_str());
    let by_id = api.get(&format!("/api/systemusers?filter=_id:$eq:{}", target.id)).await;
    assert_eq!(by_id.body["totalCount"], 1);
    let by_username = api.get(&format!("/api/systemusers?filter[0]=username:$eq:{}", target.username)).await;
    assert_eq!(by_username.body["totalCount"], 1);

    let count = |pred: &dyn Fn(&User) -> bool| org.users.iter().filter(|u| pred(u)).count();
    let suspended = api.get("/api/systemusers?filter=state:$eq:SUSPENDED&limit=100").await;
    assert_eq!(suspended.body["totalCount"], count(&|u| u.state == UserState::Suspended));
    assert!(suspended.body["results"].as_array().unwrap().iter().all(|u| u["suspended"] == true));
    let not_engineering = api.get("/api/systemusers?filter=department:$ne:Engineering").await;
    assert_eq!(not_engineering.body["totalCount"], count(&|u| u.department != "Engineering"));
    // Several filters are ANDed.
    let both = api.get("/api/systemusers?filter=department:$eq:Engineering&filter=state:$ne:SUSPENDED").await;
    assert_eq!(both.body["totalCount"], count(&|u| u.department == "Engineering" && u.state != UserState::Suspended));
    // `filter[or][N]` are ORed.
    let either =
        api.get("/api/systemusers?filter[or][0]=department:$eq:Legal&filter[or][1]=department:$eq:People").await;
    assert_eq!(either.body["totalCount"], count(&|u| u.department == "Legal" || u.department == "People"));
}

#[tokio::test]
async fn v2_groups_filter_sort_and_page() {
    let org = generated(100, 30, 5);
    let sim = Simulator::start(vec![org.clone()]).await.unwrap();
    let api = Api::new(&sim);

    let one = api.get("/api/v2/usergroups?filter=name:eq:prod-db-admins").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.total(), 1);
    let group = &one.array()[0];
    let expected = org.group_by_name("prod-db-admins").unwrap();
    assert_eq!(group["id"], expected.id.as_str());
    assert_eq!(group["type"], "user_group");
    assert_eq!(group["membershipMethod"], "STATIC");
    assert_eq!(group["attributes"], json!({}));
    assert!(group.get("description").is_some() && group.get("email").is_some());

    let others = api.get("/api/v2/usergroups?filter=name:ne:prod-db-admins&limit=100").await;
    assert_eq!(others.total(), 29);
    assert_eq!(others.array().len(), 29);

    let dynamic = api.get("/api/v2/usergroups?filter=name:eq:all-staff").await;
    assert_eq!(dynamic.array()[0]["membershipMethod"], "DYNAMIC_AUTOMATED");

    let mut names = Vec::new();
    for skip in (0..30).step_by(7) {
        let page = api.get(&format!("/api/v2/usergroups?sort=-name&limit=7&skip={skip}")).await;
        assert_eq!(page.total(), 30);
        names.extend(page.array().iter().map(|g| g["name"].as_str().unwrap().to_owned()));
    }
    assert_eq!(names.len(), 30);
    assert!(names.windows(2).all(|w| w[0] > w[1]));

    let by_id = api.get(&format!("/api/v2/usergroups/{}", expected.id)).await;
    assert_eq!(by_id.body["name"], "prod-db-admins");
    api.get("/api/v2/usergroups/0123456789abcdef01234567").await.assert_error(404);

    let projected = api.get("/api/v2/usergroups?fields=name&limit=1").await;
    let keys: BTreeSet<&str> = projected.array()[0].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, BTreeSet::from(["id", "name"]));
}

#[tokio::test]
async fn members_page_in_user_id_order() {
    let mut org = Org::new(KEY);
    let group = org.add_group(Group::new("big"));
    let mut expected = Vec::new();
    for i in 0..250 {
        let id = org.add_user(User::new(format!("user{i}"), format!("user{i}@example.com")));
        org.add_member(&group, &id);
        expected.push(id);
    }
    expected.sort();
    let sim = Simulator::start(vec![org]).await.unwrap();
    let api = Api::new(&sim);

    let mut seen = Vec::new();
    for skip in [0, 100, 200] {
        let page = api.get(&format!("/api/v2/usergroups/{group}/members?limit=100&skip={skip}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.total(), 250);
        for connection in page.array() {
            // A GraphConnection, whole: nothing more, nothing less.
            let id = connection["to"]["id"].as_str().unwrap().to_owned();
            assert_eq!(connection, &json!({"attributes": {}, "to": {"id": id, "type": "user", "attributes": {}}}));
            seen.push(id);
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(api.get(&format!("/api/v2/usergroups/{group}/members")).await.array().len(), 10);
    api.get("/api/v2/usergroups/0123456789abcdef01234567/members").await.assert_error(404);
}

#[tokio::test]
async fn member_of_pages_a_users_direct_groups_in_group_id_order() {
    let mut org = Org::new(KEY);
    let user = org.add_user(User::new("carol", "carol@example.com"));
    let other = org.add_user(User::new("dave", "dave@example.com"));
    let mut expected = Vec::new();
    for i in 0..130 {
        let group = org.add_group(Group::new(format!("group{i}")));
        if i % 5 != 0 {
            org.add_member(&group, &user);
            expected.push(group);
        } else {
            org.add_member(&group, &other);
        }
    }
    expected.sort();
    let sim = Simulator::start(vec![org]).await.unwrap();
    let api = Api::new(&sim);

    let mut seen = Vec::new();
    for skip in [0, 100] {
        let page = api.get(&format!("/api/v2/users/{user}/memberof?limit=100&skip={skip}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.total(), 104);
        for group in page.array() {
            let id = group["id"].as_str().unwrap().to_owned();
            assert_eq!(group["type"], "user_group");
            // One path, the direct edge from the user to the group.
            assert_eq!(group["paths"].as_array().unwrap().len(), 1);
            assert_eq!(group["paths"][0][0]["from"], json!({"id": user, "type": "user", "attributes": {}}));
            assert_eq!(group["paths"][0][0]["to"]["id"], id.as_str());
            seen.push(id);
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(sim.handle().request_count("GET /api/v2/users/{id}/memberof"), 2);
    api.get("/api/v2/users/0123456789abcdef01234567/memberof").await.assert_error(404);
}

#[tokio::test]
async fn authentication_needs_a_known_key() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let wrong = Api::new(&sim).with_key("wrong");
    wrong.get("/api/systemusers").await.assert_error(401);
    wrong.member_op(&s.admins, "add", &s.bob).await.assert_error(401);
    let no_key = reqwest::get(format!("{}/api/v2/usergroups", sim.url())).await.unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    // A single organization without an org id refuses an x-org-id it does not have.
    Api::new(&sim).with_org_id("other").get("/api/systemusers").await.assert_error(401);
    assert!(!sim.handle().org(0).is_member(&s.admins, &s.bob).unwrap());
}

#[tokio::test]
async fn x_org_id_picks_among_the_organizations_of_a_key() {
    let mut a = Org::new(KEY).with_org_id("org-a");
    a.add_user(User::new("only-in-a", "a@example.com"));
    let mut b = Org::new(KEY).with_org_id("org-b");
    b.add_user(User::new("only-in-b", "b@example.com"));
    b.add_user(User::new("also-in-b", "b2@example.com"));
    let other = Org::new("other-key").with_org_id("org-c");
    let sim = Simulator::start(vec![a, b, other]).await.unwrap();

    let message = Api::new(&sim).get("/api/systemusers").await.assert_error(400).to_owned();
    assert!(message.contains("x-org-id required"), "{message}");
    let in_a = Api::new(&sim).with_org_id("org-a").get("/api/systemusers").await;
    assert_eq!(in_a.body["results"][0]["username"], "only-in-a");
    let in_b = Api::new(&sim).with_org_id("org-b").get("/api/systemusers").await;
    assert_eq!(in_b.body["totalCount"], 2);
    // org-c exists, but this key does not open it.
    Api::new(&sim).with_org_id("org-c").get("/api/systemusers").await.assert_error(401);
    // A key that opens one organization needs no x-org-id.
    let c = Api::new(&sim).with_key("other-key").get("/api/systemusers").await;
    assert_eq!(c.body["totalCount"], 0);
}

#[tokio::test]
async fn add_and_remove_members_with_jumpcloud_statuses() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let api = Api::new(&sim);
    let org = sim.handle().org(0);

    let added = api.member_op(&s.admins, "add", &s.bob).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT);
    assert_eq!(added.body, Value::Null);
    assert!(org.is_member(&s.admins, &s.bob).unwrap());
    let message = api.member_op(&s.admins, "add", &s.bob).await.assert_error(409).to_owned();
    assert!(message.contains("already"), "{message}");

    assert_eq!(api.member_op(&s.admins, "remove", &s.bob).await.status, StatusCode::NO_CONTENT);
    assert!(!org.is_member(&s.admins, &s.bob).unwrap());
    api.member_op(&s.admins, "remove", &s.bob).await.assert_error(404);
    api.member_op(&s.empty, "remove", &s.alice).await.assert_error(404);
    // Alice's pre-existing membership is untouched throughout.
    assert!(org.is_member(&s.admins, &s.alice).unwrap());

    // `attributes` is accepted, as in GraphOperation-UserGroup-Member.
    let with_attributes = api
        .post(
            &format!("/api/v2/usergroups/{}/members", s.empty),
            json!({"op": "add", "type": "user", "id": s.bob, "attributes": {}}),
        )
        .await;
    assert_eq!(with_attributes.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn unknown_groups_and_users_are_404() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let api = Api::new(&sim);
    let nobody = "0123456789abcdef01234567";
    api.member_op(nobody, "add", &s.alice).await.assert_error(404);
    api.member_op(&s.admins, "add", nobody).await.assert_error(404);
    api.member_op(&s.admins, "remove", nobody).await.assert_error(404);
    api.get(&format!("/api/systemusers/{nobody}")).await.assert_error(404);
    api.get("/api/nothing-here").await.assert_error(404);
    assert_eq!(sim.handle().org(0).members(&s.admins).unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_member_operations_are_400() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let api = Api::new(&sim);
    let path = format!("/api/v2/usergroups/{}/members", s.admins);
    let not_json = api.send(api.request(reqwest::Method::POST, &path).body("{not json")).await;
    not_json.assert_error(400);
    for body in [
        json!({"op": "add", "type": "user"}),
        json!({"op": "update", "type": "user", "id": s.bob}),
        json!({"op": "delete", "type": "user", "id": s.bob}),
        json!({"op": "add", "type": "system", "id": s.bob}),
        json!({"op": "add", "id": s.bob}),
        json!({"op": "add", "type": "user", "id": ""}),
        json!({"op": "add", "type": "user", "id": s.bob, "attributes": [1]}),
        json!(["add"]),
    ] {
        api.post(&path, body.clone()).await.assert_error(400);
    }
    assert!(!sim.handle().org(0).is_member(&s.admins, &s.bob).unwrap());
}

#[tokio::test]
async fn fail_next_serves_exactly_n_faults_then_succeeds() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let api = Api::new(&sim);
    let handle = sim.handle();

    handle.fail_next(2, FaultKind::TooManyRequests { retry_after_secs: Some(3) });
    for _ in 0..2 {
        let answer = api.get("/api/systemusers").await;
        answer.assert_error(429);
        assert_eq!(answer.headers["retry-after"], "3");
    }
    assert_eq!(api.get("/api/systemusers").await.status, StatusCode::OK);
    assert_eq!(handle.request_count(LIST_USERS), 3);
    assert_eq!(handle.faulted_count(), 2);
    assert_eq!(handle.faulted_count_for(LIST_USERS), 2);

    handle.fail_next(1, FaultKind::TooManyRequests { retry_after_secs: None });
    let answer = api.get("/api/v2/usergroups").await;
    answer.assert_error(429);
    assert!(answer.headers.get("retry-after").is_none());

    // A faulted write does nothing.
    handle.fail_next(1, FaultKind::ServerError(502));
    api.member_op(&s.admins, "add", &s.bob).await.assert_error(502);
    assert!(!handle.org(0).is_member(&s.admins, &s.bob).unwrap());
    assert_eq!(api.member_op(&s.admins, "add", &s.bob).await.status, StatusCode::NO_CONTENT);
    assert_eq!(handle.pending_faults(), 0);
    assert_eq!(handle.faulted_count(), 4);
}

#[tokio::test]
async fn a_hang_outlasts_the_client_timeout_and_changes_nothing() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let handle = sim.handle();
    let api = Api::new(&sim);
    handle.fail_next(1, FaultKind::Hang(Duration::from_secs(60)));
    let timed_out = api
        .request(reqwest::Method::POST, &format!("/api/v2/usergroups/{}/members", s.admins))
        .json(&json!({"op": "add", "type": "user", "id": s.bob}))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());
    assert!(!handle.org(0).is_member(&s.admins, &s.bob).unwrap());
    assert_eq!(api.member_op(&s.admins, "add", &s.bob).await.status, StatusCode::NO_CONTENT);
    assert_eq!(handle.request_count(MANAGE_MEMBERS), 2);
    assert_eq!(handle.faulted_count(), 1);
    // Shutdown cuts the pending hang short instead of waiting a minute.
    let started = Instant::now();
    sim.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn rates_and_latency_apply_to_api_requests_only() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let handle = sim.handle();
    let api = Api::new(&sim);

    handle.set_faults(Faults { rate_5xx: 1.0, seed: Some(1), ..Faults::default() });
    let status = api.get("/api/systemusers").await.status.as_u16();
    assert!(status == 500 || status == 503, "{status}");
    // Admin endpoints are never faulted (nor counted).
    let health = reqwest::get(format!("{}/_sim/health", sim.url())).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    handle.set_faults(Faults { rate_429: 1.0, retry_after_secs: Some(7), ..Faults::default() });
    let limited = api.get("/api/v2/usergroups").await;
    limited.assert_error(429);
    assert_eq!(limited.headers["retry-after"], "7");

    handle.set_faults(Faults { latency_ms: 100, ..Faults::default() });
    let started = Instant::now();
    assert_eq!(api.get("/api/systemusers").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(100));

    handle.clear_faults();
    assert_eq!(handle.faults(), Faults::default());
    assert_eq!(api.get("/api/systemusers").await.status, StatusCode::OK);
    assert_eq!(handle.total_requests(), 4);
    assert_eq!(handle.faulted_count(), 2);
}

#[tokio::test]
async fn requests_are_counted_per_endpoint() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let handle = sim.handle();
    let api = Api::new(&sim);

    api.get("/api/systemusers").await;
    api.get("/api/systemusers?skip=10").await;
    api.get(&format!("/api/systemusers/{}", s.alice)).await;
    api.get("/api/v2/usergroups").await;
    api.get(&format!("/api/v2/usergroups/{}", s.admins)).await;
    api.get(&format!("/api/v2/usergroups/{}/members", s.admins)).await;
    api.member_op(&s.admins, "add", &s.bob).await;
    api.member_op(&s.admins, "add", &s.bob).await; // 409, still counted
    Api::new(&sim).with_key("wrong").get("/api/v2/usergroups").await; // 401, still counted
    reqwest::get(format!("{}/_sim/stats", sim.url())).await.unwrap(); // not counted

    let expected =
        [(LIST_USERS, 2), (GET_USER, 1), (LIST_GROUPS, 2), (GET_GROUP, 1), (LIST_MEMBERS, 1), (MANAGE_MEMBERS, 2)];
    for (key, n) in expected {
        assert_eq!(handle.request_count(key), n, "{key}");
    }
    assert_eq!(handle.request_counts(), expected.iter().map(|&(k, n)| (k.to_owned(), n)).collect());
    assert_eq!(handle.total_requests(), 9);

    let stats: Value = reqwest::get(format!("{}/_sim/stats", sim.url())).await.unwrap().json().await.unwrap();
    assert_eq!(stats["requests"][MANAGE_MEMBERS], 2);
    assert_eq!(stats["total_requests"], 9);
    let order = [
        LIST_USERS,
        LIST_USERS,
        GET_USER,
        LIST_GROUPS,
        GET_GROUP,
        LIST_MEMBERS,
        MANAGE_MEMBERS,
        MANAGE_MEMBERS,
        LIST_GROUPS,
    ];
    assert_eq!(handle.request_log(), order, "in arrival order");

    handle.reset_counts();
    assert!(handle.request_counts().is_empty());
    assert_eq!(handle.request_count(LIST_USERS), 0);
    assert!(handle.request_log().is_empty());
}

#[tokio::test]
async fn held_requests_wait_in_flight_until_released() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let handle = sim.handle();
    let in_flight = |n: u64| {
        let handle = handle.clone();
        async move {
            while handle.in_flight() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    handle.hold_requests();
    let (admins, bob) = (s.admins.clone(), s.bob.clone());
    let api = Api::new(&sim);
    let add = tokio::spawn(async move { api.member_op(&admins, "add", &bob).await.status });
    in_flight(1).await;
    let api = Api::new(&sim);
    let list = tokio::spawn(async move { api.get("/api/v2/usergroups").await.status });
    in_flight(2).await;
    assert_eq!(handle.request_log(), [MANAGE_MEMBERS, LIST_GROUPS], "counted and logged while held");
    assert!(!handle.org(0).is_member(&s.admins, &s.bob).unwrap(), "not applied while held");

    handle.release_next(1);
    assert_eq!(add.await.unwrap(), StatusCode::NO_CONTENT, "the first to arrive goes first");
    assert!(handle.org(0).is_member(&s.admins, &s.bob).unwrap());
    assert_eq!(handle.in_flight(), 1);
    assert!(!list.is_finished(), "the other stays held");

    handle.release_requests();
    assert_eq!(list.await.unwrap(), StatusCode::OK);
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(Api::new(&sim).get("/api/v2/usergroups").await.status, StatusCode::OK, "no longer held");
}

#[tokio::test]
#[should_panic(expected = "unknown endpoint key")]
async fn a_mistyped_endpoint_key_panics() {
    let sim = Simulator::start(vec![small().org]).await.unwrap();
    sim.handle().request_count("GET /api/systemuser");
}

#[tokio::test]
async fn peak_in_flight_sees_concurrent_requests() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let handle = sim.handle();
    // The latency keeps each request in flight long enough for all of them to overlap.
    handle.set_faults(Faults { latency_ms: 500, ..Faults::default() });
    let api = Api::new(&sim);
    let path = "/api/systemusers";
    let answers = tokio::join!(api.get(path), api.get(path), api.get(path), api.get(path));
    for answer in [answers.0, answers.1, answers.2, answers.3] {
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(handle.peak_in_flight(), 4);
    assert_eq!(handle.in_flight(), 0);
    handle.reset_counts();
    assert_eq!(handle.peak_in_flight(), 0);
}

#[tokio::test]
async fn direct_changes_show_through_the_api() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let api = Api::new(&sim);
    let org = sim.handle().org(0);

    // Membership changed outside the product.
    assert!(org.add_member(&s.admins, &s.bob).unwrap());
    let members = api.get(&format!("/api/v2/usergroups/{}/members", s.admins)).await;
    assert_eq!(members.total(), 2);
    assert!(org.remove_member(&s.admins, &s.alice).unwrap());
    assert!(!org.remove_member(&s.admins, &s.alice).unwrap());
    assert_eq!(org.members(&s.admins).unwrap(), BTreeSet::from([s.bob.clone()]));

    // Suspension, new users and removed users.
    org.update_user(&s.bob, |u| u.set_state(UserState::Suspended)).unwrap();
    let bob = api.get(&format!("/api/systemusers/{}", s.bob)).await;
    assert_eq!((bob.body["state"].clone(), bob.body["suspended"].clone()), (json!("SUSPENDED"), json!(true)));
    let carol = org.add_user(User::new("carol", "carol@example.com")).unwrap();
    assert!(org.add_user(User::new("carol2", "CAROL@example.com")).is_err());
    let sorted = api.get("/api/systemusers?sort=-username&fields=username").await;
    assert_eq!(sorted.body["results"][0]["username"], "carol");
    org.remove_user(&s.bob).unwrap();
    api.get(&format!("/api/systemusers/{}", s.bob)).await.assert_error(404);
    assert!(org.members(&s.admins).unwrap().is_empty());
    assert_eq!(org.user(&carol).unwrap().username, "carol");
    assert_eq!(org.user_by_email("Carol@Example.com").unwrap().id, carol);

    // Groups.
    let ops = org.add_group(Group::new("ops")).unwrap();
    assert!(org.add_group(Group::new("ops")).is_err());
    org.set_group_method(&ops, MembershipMethod::DynamicReviewRequired).unwrap();
    let ops_json = api.get(&format!("/api/v2/usergroups/{ops}")).await;
    assert_eq!(ops_json.body["membershipMethod"], "DYNAMIC_REVIEW_REQUIRED");
    org.remove_group(&s.empty).unwrap();
    api.get(&format!("/api/v2/usergroups/{}", s.empty)).await.assert_error(404);
    assert_eq!(org.group_by_name("ops").unwrap().id, ops);
    // None of this went through the API's counters.
    assert_eq!(sim.handle().total_requests(), 6);
}

#[tokio::test]
async fn admin_endpoints_steer_and_inspect() {
    let s = small();
    let sim = Simulator::start(vec![s.org]).await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", sim.url());
    let api = Api::new(&sim);

    let put = http.put(url("/_sim/faults")).json(&json!({"rate_5xx": 1.0})).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    assert!(api.get("/api/systemusers").await.status.is_server_error());
    let bad = http.put(url("/_sim/faults")).json(&json!({"rate_429": 2.0})).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    http.delete(url("/_sim/faults")).send().await.unwrap();

    let queued = http
        .post(url("/_sim/fail-next"))
        .json(&json!({"count": 1, "kind": "429", "retry_after_secs": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.get("/api/systemusers").await.status, StatusCode::TOO_MANY_REQUESTS);

    let stats: Value = http.get(url("/_sim/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["requests"][LIST_USERS], 2);
    assert_eq!(stats["faulted_total"], 2);
    http.post(url("/_sim/reset-stats")).send().await.unwrap();
    let stats: Value = http.get(url("/_sim/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["total_requests"], 0);

    let groups: Value =
        http.get(url("/_sim/orgs/0/groups?name=prod-db-admins")).send().await.unwrap().json().await.unwrap();
    assert_eq!(groups[0]["id"], s.admins.as_str());
    let path = format!("/_sim/orgs/0/groups/{}/members", s.admins);
    let members: Value = http.get(url(&path)).send().await.unwrap().json().await.unwrap();
    assert_eq!(members, json!([s.alice]));
    let changed: Value = http
        .post(url(&path))
        .json(&json!({"op": "add", "type": "user", "id": s.bob}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(changed, json!({"changed": true}));
    let users: Value =
        http.get(url("/_sim/orgs/0/users?email=BOB@example.com")).send().await.unwrap().json().await.unwrap();
    assert_eq!(users[0]["_id"], s.bob.as_str());
    let missing = http.get(url("/_sim/orgs/9/groups")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.handle().total_requests(), 0);
}

#[tokio::test]
async fn a_served_org_snapshots_back_to_its_seed() {
    let org = generated(150, 12, 20);
    let json = org.to_json();
    assert_eq!(Org::from_json(&json).unwrap(), org);
    let sim = Simulator::start(vec![org.clone()]).await.unwrap();
    assert_eq!(sim.handle().org(0).snapshot(), org);
    let seed: Value = reqwest::get(format!("{}/_sim/orgs/0/seed", sim.url())).await.unwrap().json().await.unwrap();
    assert_eq!(serde_json::from_value::<Org>(seed).unwrap(), org);
}

#[tokio::test]
async fn seed_files_round_trip_one_or_several_orgs() {
    let a = generated(20, 4, 5);
    let b = small().org.with_org_id("org-b");
    let one = Org::list_to_json(std::slice::from_ref(&a));
    assert!(one.trim_start().starts_with('{'));
    assert_eq!(Org::list_from_json(&one).unwrap(), vec![a.clone()]);
    let both = Org::list_to_json(&[a.clone(), b.clone()]);
    assert!(both.trim_start().starts_with('['));
    assert_eq!(Org::list_from_json(&both).unwrap(), vec![a, b]);

    // JumpCloud's own names in the file.
    let text = small().org.to_json();
    for name in ["\"_id\"", "\"jobTitle\"", "\"employeeType\"", "\"membershipMethod\"", "\"memberships\""] {
        assert!(text.contains(name), "{name}");
    }
}

#[tokio::test]
async fn inconsistent_orgs_are_refused_at_start() {
    let a = Org::new(KEY);
    let b = Org::new(KEY);
    let error = Simulator::start(vec![a, b]).await.err().unwrap();
    assert!(error.to_string().contains("same api_key"), "{error:#}");
    let mut bad = Org::new(KEY);
    bad.add_member("nope", "nobody");
    assert!(Simulator::start(vec![bad]).await.is_err());
}

#[tokio::test]
async fn a_large_generated_org_serves_every_user() {
    let org = generated(5_000, 100, 50);
    let sim = Simulator::start(vec![org]).await.unwrap();
    let api = Api::new(&sim);
    let ids = all_user_ids(&api, "email").await;
    assert_eq!(ids.len(), 5_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 5_000);
}
