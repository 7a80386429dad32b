//! A JumpCloud API simulator, faithful to JumpCloud's OpenAPI documents (API 1.0 under `/api`,
//! API 2.0 under `/api/v2`, Directory Insights under `/insights/directory/v1`), for the product's
//! tests and the local stack.
//!
//! # Served operations
//! All require `x-api-key`; JSON in and out; errors are `{"code", "message", "status"}`.
//!
//! | key (for counts) | answer |
//! |---|---|
//! | `GET /api/systemusers` | `{"totalCount", "results": [systemuser]}`; `limit` (default 10, at most 100), `skip`, `sort` (space separated, `-` descending, ties by id), `fields` (space separated; `_id`/`id` always kept), `filter=field:$eq\|$ne:value` (repeatable, also `filter[N]`, ANDed; `filter[or][N]` ORed) |
//! | `GET /api/systemusers/{id}` | one systemuser (`fields` applies) or 404 |
//! | `GET /api/v2/usergroups` | `[UserGroup]` + `x-total-count`; `limit`, `skip`, `sort` (comma separated), `fields`, `filter=field:eq\|ne:value` (repeatable, ANDed) |
//! | `GET /api/v2/usergroups/{id}` | one UserGroup or 404 |
//! | `GET /api/v2/usergroups/{id}/members` | `[GraphConnection]` in user-id order + `x-total-count`; 404 for an unknown group |
//! | `POST /api/v2/usergroups/{id}/members` | `{"op": "add"\|"remove", "type": "user", "id"}` -> 204; add of a direct member 409; remove of a non-member 404; unknown group or user 404; bad body 400 |
//! | `GET /api/v2/users/{id}/memberof` | `[GraphObjectWithPaths]` of the groups the user is a direct member of (each path the one edge user -> group), in group-id order, + `x-total-count`; `limit`, `skip`; 404 for an unknown user |
//! | `POST /insights/directory/v1/events` | `[event]` (see [Events](#directory-insights-events)) + `X-Result-Count` (events in this answer), `X-Limit`, `X-Sort` (`ASC`\|`DESC`), `X-Search_after` (`["<timestamp in epoch millis>","<event id>"]` of the last event; absent on an empty answer). Body (`EventQuery`): `service` (required, non-empty; `directory` and `all` select the events, the document's other services select none, other values 400), `start_time` (required, RFC 3339, inclusive; in the future of the event clock 400), `end_time` (exclusive; before `start_time` 400), `sort` (`ASC`\|`DESC`, any case; default ASC, as the document says), `limit` (default 1000, as the document says; at most 10000, more 400), `skip`, `search_after` (the `X-Search_after` array as given; the timestamp may also be a number). `0`, `""` and `[]` count as absent. Unknown fields, wrong types and the document's unsimulated `fields`, `q`, `exact_match`, `search_term` are 400 |
//!
//! Users carry `_id` and `id`, `username`, `email`, `firstname`, `lastname`, `displayname`,
//! `jobTitle`, `department`, `location`, `employeeType`, `manager` (a user id, absent when none),
//! `state`, `suspended`, `activated`, `attributes` (`[{"name", "value"}]`), `created`.
//! User filters and sorts take those scalar fields; group ones take `id`, `name`, `description`,
//! `email`, `membershipMethod`, `type`. Anything else is a 400, so that a client relying on an
//! unsimulated feature fails loudly.
//!
//! Authentication: the key must open at least one organization (else 401). With `x-org-id`, the
//! organization with that id among them is used (none: 401); without it, the key must open exactly
//! one (several: 400 "x-org-id required").
//!
//! Every API request is counted under its key above (faulted ones too) and logged in arrival
//! order, and the peak number in flight is tracked. While requests are held
//! ([`SimHandle::hold_requests`]) they wait, counted and in flight, until released. Faults
//! ([`Faults`] rates, or [`SimHandle::fail_next`]) apply to API requests only, after counting,
//! holding and latency and before authentication. A 429 carries `Retry-After` when
//! configured; a hang waits, then answers 504 without doing anything (so a client that timed out
//! and retried sees exactly one effect); a faulted write never changes anything.
//!
//! # Directory Insights events
//! Every change made after start appends one event to its organization's log: through the API
//! (`auth_method: "api-key"`), the control endpoints or [`OrgHandle`] (`"session"`: changes made
//! outside the product). The data given at start (an [`Org`], a generated one) emits none, so the
//! log is empty until something changes. Shape (JumpCloud's directory events):
//! ```json
//! {"id": "<24 hex>", "service": "directory", "event_type": "user_update",
//!  "timestamp": "2026-11-30T12:00:00.123Z", "organization": "<org id>", "success": true,
//!  "auth_method": "api-key" | "session",
//!  "initiated_by": {"id": "<24 hex>", "type": "admin", "email": "sim-admin@<org id>"},
//!  "resource": {"id": "<user id>", "type": "user", "username": "<username>"},
//!  "changes": [{"field": "state", "from": "ACTIVATED", "to": "SUSPENDED"},
//!              {"field": "suspended", "from": false, "to": true}]}
//! ```
//! - `event_type`: `user_create`, `user_update`, `user_delete` (resource `{"id", "type": "user",
//!   "username"}`); `user_group_create`, `user_group_update`, `user_group_delete` (resource
//!   `{"id", "type": "user_group", "name"}`); `association_change` (resource: the group) with
//!   `"association": {"op": "add"|"remove", "connection": {"from": {"type": "user_group",
//!   "object_id", "name"}, "to": {"type": "user", "object_id", "name": "<username>"}}}`.
//! - `changes` (updates only): each field that changed, in the object's JumpCloud name and in
//!   name order, values as the API serves them (`null` for an absent `manager`; `attributes` as
//!   the whole list). An update that changes nothing, an add of a member or a remove of a
//!   non-member emits nothing. Deleting a user or a group emits `user_delete` /
//!   `user_group_delete` only, not the removals of the memberships that go with it, as JumpCloud does.
//! - `organization`: the org id, or (none given) a 24-hex id derived from the API key
//!   ([`OrgHandle::event_org_id`]).
//! - `timestamp`: the event clock (the system clock unless pinned: [`SimHandle::pin_clock`]), to
//!   the millisecond, never before the previous event of the organization. Ids sort by time, then
//!   by order within the organization, so (timestamp, id) orders events as they happened, and
//!   paging with `search_after` returns each once (events appended meanwhile come after an
//!   ascending cursor; a descending walk does not see them).
//! - Retention: events older than [`EVENT_RETENTION_DAYS`] (90) before the event clock's now are
//!   not served; [`OrgHandle::expire_events_before`] drops events for good.
//!
//! # Library
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use jumpcloud_sim::{FaultKind, GenerateSpec, Group, Org, Simulator, User};
//!
//! let mut org = Org::new("test-key").with_org_id("org-1");
//! let alice = org.add_user(User::new("alice", "alice@example.com"));
//! let admins = org.add_group(Group::new("prod-db-admins"));
//! org.add_member(&admins, &alice);
//! let big = Org::generate(&GenerateSpec { users: 5_000, groups: 200, avg_members: 50, ..Default::default() });
//!
//! let sim = Simulator::start(vec![org, big]).await?;      // 127.0.0.1, free port
//! let url = sim.url();                                     // http://127.0.0.1:PORT
//! let handle = sim.handle();
//! handle.fail_next(2, FaultKind::TooManyRequests { retry_after_secs: Some(1) });
//! // ... run the product against `url` ...
//! assert_eq!(handle.request_count("POST /api/v2/usergroups/{id}/members"), 3);
//! assert!(handle.org(0).is_member(&admins, &alice)?);
//! handle.org(0).remove_member(&admins, &alice)?;           // a change outside the product
//! sim.shutdown().await?;                                   // or just drop it
//! # Ok(()) }
//! ```
//!
//! - [`Org`]: `new(api_key)`, `with_org_id(id)`, `add_user(User) -> String`,
//!   `add_group(Group) -> String`, `add_member(&group_id, &user_id) -> bool`, lookups
//!   (`user`, `user_by_username`, `group`, `group_by_name`, `members`), `validate()`,
//!   `generate(&GenerateSpec)`, `from_json` / `list_from_json` (object or array) / `to_json` /
//!   `list_to_json`. Seed files are `Org`s in JSON, users and groups in JumpCloud's field names,
//!   `memberships` as `{"<group id>": ["<user id>", ...]}`.
//! - [`User::new(username, email)`](User::new), [`Group::new(name)`](Group::new) give fresh
//!   ObjectId-like ids; fields are public (use struct update syntax or `with_state`,
//!   `with_method`, `set_attribute`).
//! - [`Simulator::start(orgs)`](Simulator::start), [`Simulator::start_on(addr, orgs)`](Simulator::start_on)
//!   -> [`RunningSimulator`]: `url()`, `addr()`, `handle()`, `shutdown().await`; stops on drop.
//! - [`SimHandle`] (clone freely): `set_faults(Faults)`, `faults()`, `fail_next(n, FaultKind)`,
//!   `pending_faults()`, `clear_faults()`; `hold_requests()`, `release_next(n)`,
//!   `release_requests()`;
//!   `request_count(key)`, `request_counts()`, `request_log()` (keys in arrival order),
//!   `faulted_count()`, `faulted_count_for(key)`, `total_requests()`, `in_flight()`,
//!   `peak_in_flight()`, `stats()`, `reset_counts()`; `org(index)`, `org_by_id(org_id)`,
//!   `org_count()`; the event clock: `pin_clock(SystemTime)`, `advance_clock(Duration) ->
//!   SystemTime` (pins), `unpin_clock()`, `clock_now()`, `clock_is_pinned()`.
//! - [`OrgHandle`] (direct access, bypassing the API, its counts and faults; every change emits
//!   its event): `members`, `is_member`, `add_member`, `remove_member`, `user`,
//!   `user_by_username`, `user_by_email`, `add_user`, `remove_user` (memberships too),
//!   `update_user(id, |u| ...)`, `group`, `group_by_name`, `add_group`, `remove_group`,
//!   `update_group(id, |g| ...)`, `set_group_method`, `snapshot`; `events()` (JSON, oldest
//!   first, retention not applied), `event_count()`, `event_org_id()`,
//!   `expire_events_before(SystemTime) -> usize`.
//! - [`parse_rfc3339`] and [`format_rfc3339_millis`] convert between `SystemTime` and the text
//!   the events API speaks.
//!
//! # Admin endpoints (no auth, no faults, not counted)
//! `GET /_sim/health`, `GET /_sim/stats`, `POST /_sim/reset-stats`, `GET|PUT|DELETE /_sim/faults`
//! (a [`Faults`] JSON), `POST /_sim/fail-next` (`{"count", "kind": "429"|"5xx"|"hang",
//! "retry_after_secs"?, "status"?, "hang_ms"?}`), `GET /_sim/orgs`, `GET /_sim/orgs/{index}/seed`,
//! `GET /_sim/orgs/{index}/users?email=&username=`, `GET /_sim/orgs/{index}/groups?name=`,
//! `GET|POST /_sim/orgs/{index}/groups/{group_id}/members` (ids; POST takes the API's body and
//! answers `{"changed": bool}`).
//!
//! Changes made outside the product (each emits its event, `auth_method: "session"`): `POST
//! /_sim/orgs/{index}/users` (a user as in a seed file, `_id` optional; 201 with it, 409 when
//! taken), `PATCH|DELETE /_sim/orgs/{index}/users/{user_id}` (a merge patch, e.g. `{"state":
//! "SUSPENDED"}`, `{"suspended": false}`, `{"email"}`, `{"manager": id|null}`, `{"attributes":
//! [...]}`; 200 with the user / 204), `POST /_sim/orgs/{index}/groups` (`name`, optional `id`,
//! `description`, `email`, `membershipMethod`; 201), `PATCH|DELETE
//! /_sim/orgs/{index}/groups/{group_id}` (e.g. a rename; 200 / 204). Unknown fields 400, unknown
//! objects 404, taken names 409.
//!
//! Events: `GET /_sim/orgs/{index}/events` (all held, oldest first), `POST
//! /_sim/orgs/{index}/events/expire` (`{"before": "<RFC 3339>"}` -> `{"expired": n}`). The event
//! clock: `GET /_sim/clock` -> `{"now", "pinned"}`; `PUT /_sim/clock` (`{"now": "<RFC 3339>"}`:
//! pin), `POST /_sim/clock/advance` (`{"ms": n}`: advance and pin), `DELETE /_sim/clock` (back to
//! the system clock) answer the same.
//!
//! # Binary
//! `jumpcloud-sim [--host 127.0.0.1] [--port 0] [--allow-non-loopback]
//! [--seed-file org.json | --users 200 --groups 20 --avg-members 10 --seed 1]
//! [--api-key sim-api-key] [--org-id O] [--latency-ms N] [--rate-429 F] [--retry-after-secs N]
//! [--rate-5xx F] [--rate-hang F --hang-ms 30000] [--fault-seed S] [--write-seed PATH]
//! [--port-file PATH]`: prints `jumpcloud-sim listening on http://HOST:PORT` on stdout when ready
//! (after writing the seed and port files), logs to stderr (`RUST_LOG=jumpcloud_sim=debug` logs
//! every request), stops on SIGINT/SIGTERM.

mod admin;
mod api;
mod clock;
mod edit;
mod error;
mod events;
mod faults;
mod generate;
mod ids;
mod model;
mod query;
mod server;
mod stats;
mod store;

pub use error::SimError;
pub use events::{DEFAULT_EVENT_LIMIT, EVENT_RETENTION_DAYS, MAX_EVENT_LIMIT};
pub use faults::{FaultKind, Faults};
pub use generate::{GenerateSpec, FIXED_GROUPS};
pub use ids::{format_rfc3339_millis, is_object_id, new_object_id, parse_rfc3339};
pub use model::{Attribute, Group, MembershipMethod, Org, User, UserState};
pub use query::{DEFAULT_LIMIT, MAX_LIMIT};
pub use server::{RunningSimulator, SimHandle, Simulator};
pub use stats::{Endpoint, StatsSnapshot, LOG_CAPACITY};
pub use store::OrgHandle;
