//! A JumpCloud API simulator, faithful to JumpCloud's OpenAPI documents (API 1.0 under `/api`,
//! API 2.0 under `/api/v2`), for the product's tests and the local stack.
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
//!   `org_count()`.
//! - [`OrgHandle`] (direct access, bypassing the API, its counts and faults): `members`,
//!   `is_member`, `add_member`, `remove_member`, `user`, `user_by_username`, `user_by_email`,
//!   `add_user`, `remove_user` (memberships too), `update_user(id, |u| ...)`, `group`,
//!   `group_by_name`, `add_group`, `remove_group`, `set_group_method`, `snapshot`.
//!
//! # Admin endpoints (no auth, no faults, not counted)
//! `GET /_sim/health`, `GET /_sim/stats`, `POST /_sim/reset-stats`, `GET|PUT|DELETE /_sim/faults`
//! (a [`Faults`] JSON), `POST /_sim/fail-next` (`{"count", "kind": "429"|"5xx"|"hang",
//! "retry_after_secs"?, "status"?, "hang_ms"?}`), `GET /_sim/orgs`, `GET /_sim/orgs/{index}/seed`,
//! `GET /_sim/orgs/{index}/users?email=&username=`, `GET /_sim/orgs/{index}/groups?name=`,
//! `GET|POST /_sim/orgs/{index}/groups/{group_id}/members` (ids; POST takes the API's body and
//! answers `{"changed": bool}`).
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
mod error;
mod faults;
mod generate;
mod ids;
mod model;
mod query;
mod server;
mod stats;
mod store;

pub use error::SimError;
pub use faults::{FaultKind, Faults};
pub use generate::{GenerateSpec, FIXED_GROUPS};
pub use ids::{is_object_id, new_object_id};
pub use model::{Attribute, Group, MembershipMethod, Org, User, UserState};
pub use query::{DEFAULT_LIMIT, MAX_LIMIT};
pub use server::{RunningSimulator, SimHandle, Simulator};
pub use stats::{Endpoint, StatsSnapshot, LOG_CAPACITY};
pub use store::OrgHandle;
