//! The JumpCloud API client (v1 users, v2 user groups and members).
//!
//! Every call goes through `JumpCloudClient::send`: a semaphore bounds the requests in flight,
//! a token bucket bounds requests per second, and 429 / 5xx / timeouts are retried with jittered
//! exponential backoff (honouring `Retry-After`) until the call's time budget is spent. A 401 makes
//! the client read its credentials again, once, then retry.
//!
//! Revocations go first: `remove_member` (each of its attempts) waiting for a permit or a token
//! gets the next one before any other waiting call, so that an expiry, the sweep or reconciliation
//! never queues behind the listings or lookups waiting on the same client (`budget.rs`). It still
//! waits for the requests already in flight: at most `max_concurrency`, each bounded by its timeout.

mod budget;
mod credentials;
mod insights;
mod provider;
mod wire;
#[cfg(test)]
mod wire_properties;

pub use credentials::{CatalogCredentials, CredentialSource, StaticCredentials};
pub use provider::{JumpCloudDirectories, SharedRateFor};
pub use wire::USER_FIELDS;

use crate::{
    config::JumpCloudLimits,
    credentials::Credentials,
    domain::model::is_object_id,
    ports::{AddError, AddOutcome, Directory, DirectoryError, RemoveOutcome, SharedRate, SourceGroup, SourceUser},
};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use budget::{Budget, Class};
use futures::future::try_join_all;
use governor::Quota;
use reqwest::{header::HeaderMap, Method, StatusCode};
use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use wire::{
    ErrorBody, GraphConnection, GraphObjectWithPaths, JumpCloudGroup, JumpCloudUser, MemberOperation, UserList,
};

/// JumpCloud's largest page.
pub const PAGE_SIZE: u64 = 100;

/// Requests and retries made by one client, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Microseconds requests held a concurrency permit, sending to the body read (the benchmarks'
    /// observed latency: the nominal one plus the server's and this machine's time).
    pub permit_micros: AtomicU64,
}

pub struct JumpCloudClient {
    http: reqwest::Client,
    base_url: String,
    /// Directory Insights' host: JumpCloud's `api` host beside its console, else `base_url` (a
    /// simulator, a proxy).
    insights_url: String,
    credentials: Arc<dyn CredentialSource>,
    limits: JumpCloudLimits,
    /// Permits for requests in flight and tokens per second, removals first.
    budget: Budget,
    /// The rate budget shared with other containers (a fanned-out sync's workers); removals
    /// never wait for it.
    shared_rate: Option<Arc<dyn SharedRate>>,
    stats: ClientStats,
}

/// A successful HTTP answer.
struct Reply {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// One logical call: the request, and the queue each of its attempts waits in for the budget.
struct Call<'a> {
    class: Class,
    /// Directory Insights has a host of its own (`insights_url`); everything else `base_url`.
    insights: bool,
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<&'a serde_json::Value>,
}

/// Adds the time a permit was held to the client's total when dropped (every way out of an attempt).
struct PermitTimer<'a> {
    since: Instant,
    total: &'a AtomicU64,
}

impl Drop for PermitTimer<'_> {
    fn drop(&mut self) {
        let micros = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.total.fetch_add(micros, Ordering::Relaxed);
    }
}

/// One attempt's failure, with whether the request may have been applied server-side.
struct AttemptError {
    error: DirectoryError,
    maybe_applied: bool,
}

impl JumpCloudClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        credentials: Arc<dyn CredentialSource>,
        limits: JumpCloudLimits,
    ) -> Self {
        let rps = NonZeroU32::new(limits.requests_per_second.max(1)).expect("non-zero");
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            insights_url: crate::config::default_insights_url(base_url),
            credentials,
            budget: Budget::new(limits.max_concurrency, Quota::per_second(rps)),
            limits,
            shared_rate: None,
            stats: ClientStats::default(),
        }
    }

    /// Every request but removals also takes from `rate`, shared with other containers.
    pub fn with_shared_rate(mut self, rate: Arc<dyn SharedRate>) -> Self {
        self.shared_rate = Some(rate);
        self
    }

    /// A client with fixed credentials (CLI, tests).
    pub fn with_credentials(
        http: reqwest::Client,
        base_url: &str,
        credentials: Credentials,
        limits: JumpCloudLimits,
    ) -> Self {
        Self::new(http, base_url, Arc::new(StaticCredentials(credentials)), limits)
    }

    /// Directory Insights at `url` rather than beside `base_url` (`JUMPCLOUD_INSIGHTS_URL`).
    pub fn with_insights_url(mut self, url: &str) -> Self {
        self.insights_url = url.trim_end_matches('/').to_owned();
        self
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Calls waiting now for a permit or a rate token, removals and others together.
    pub fn waiting(&self) -> usize {
        self.budget.waiting(Class::Priority) + self.budget.waiting(Class::Normal)
    }

    /// One logical call: retried within the budget, and once more with fresh credentials after a 401.
    /// The flag tells whether an earlier attempt may have been applied by JumpCloud before it failed.
    async fn send(&self, call: Call<'_>) -> (Result<Reply, DirectoryError>, bool) {
        let maybe_applied = AtomicBool::new(false);
        let mut credentials = self.credentials.current();
        let mut refreshed = false;
        let result = loop {
            match self.send_with_retries(&call, &credentials, &maybe_applied).await {
                Err(DirectoryError::Unauthorized { .. }) if !refreshed => {
                    refreshed = true;
                    tracing::warn!(path = call.path, "JumpCloud answered 401; reading the integration's secret again");
                    match self.credentials.refresh().await {
                        Ok(fresh) => credentials = fresh,
                        Err(e) => break Err(e),
                    }
                }
                other => break other,
            }
        };
        (result, maybe_applied.load(Ordering::Relaxed))
    }

    async fn send_with_retries(
        &self,
        call: &Call<'_>,
        credentials: &Credentials,
        maybe_applied: &AtomicBool,
    ) -> Result<Reply, DirectoryError> {
        let deadline = Instant::now() + self.limits.retry_budget;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.limits.retry_base_delay)
            .with_max_delay(self.limits.retry_max_delay)
            .with_max_times(usize::MAX)
            .with_jitter();
        (|| async {
            self.attempt(call, credentials).await.map_err(|e| {
                if e.maybe_applied {
                    maybe_applied.store(true, Ordering::Relaxed);
                }
                e.error
            })
        })
        .retry(backoff)
        .when(DirectoryError::is_retryable)
        .adjust(|error, delay| {
            // Retry-After wins over our own backoff; either way, never past the budget.
            let delay = error.retry_after().or(delay)?;
            (Instant::now() + delay <= deadline).then_some(delay)
        })
        .notify(|error, delay| {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let delay_ms = delay.as_millis() as u64;
            tracing::info!(path = call.path, error = %error, delay_ms, "retrying JumpCloud request");
        })
        .await
    }

    async fn attempt(&self, call: &Call<'_>, credentials: &Credentials) -> Result<Reply, AttemptError> {
        // The shared budget first (it may wait for the next second), then this client's own.
        if let (Some(rate), Class::Normal) = (&self.shared_rate, call.class) {
            rate.acquire().await.map_err(|e| AttemptError {
                maybe_applied: false,
                error: DirectoryError::Transient { reason: format!("the shared rate budget: {e}") },
            })?;
        }
        // Held only while the request is in flight, not during backoff sleeps. Every attempt,
        // retries included, waits in the call's class.
        let _permit = self.budget.admit(call.class).await;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let _held = PermitTimer { since: Instant::now(), total: &self.stats.permit_micros };

        let mut request = self
            .http
            .request(
                call.method.clone(),
                format!("{}{}", if call.insights { &self.insights_url } else { &self.base_url }, call.path),
            )
            .timeout(self.limits.request_timeout)
            .header("x-api-key", credentials.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .query(call.query);
        if let Some(org_id) = &credentials.org_id {
            request = request.header("x-org-id", org_id);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let sent_body = call.body.is_some();
        let response = request.send().await.map_err(|e| AttemptError {
            // A timeout may hit after JumpCloud applied a change; a refused connection cannot.
            maybe_applied: sent_body && !e.is_connect(),
            error: DirectoryError::Transient { reason: describe_reqwest_error(&e) },
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| AttemptError {
            maybe_applied: sent_body,
            error: DirectoryError::Transient { reason: describe_reqwest_error(&e) },
        })?;
        if status.is_success() {
            return Ok(Reply { headers, body: body.to_vec() });
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .ok()
            .and_then(|b| b.message)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let error = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                DirectoryError::Unauthorized { status: status.as_u16() }
            }
            StatusCode::NOT_FOUND => DirectoryError::NotFound { what: call.path.to_owned() },
            StatusCode::TOO_MANY_REQUESTS => DirectoryError::RateLimited { retry_after: retry_after(&headers) },
            s if s.is_server_error() => DirectoryError::Transient { reason: format!("HTTP {}: {message}", s.as_u16()) },
            s => DirectoryError::Invalid { status: s.as_u16(), message },
        };
        Err(AttemptError { maybe_applied: sent_body && status.is_server_error(), error })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Reply, DirectoryError> {
        self.send(Call { class: Class::Normal, insights: false, method: Method::GET, path, query, body: None }).await.0
    }

    /// Every page of a listing. With a total count from the first page the rest is fetched
    /// concurrently (bounded by the client's limits); without one, page by page until a short page.
    async fn all_pages<T, F>(&self, path: &str, query: &[(&str, String)], parse: F) -> Result<Vec<T>, DirectoryError>
    where
        F: Fn(&Reply) -> Result<(Vec<T>, Option<u64>), DirectoryError>,
    {
        let page = |skip: u64| {
            let mut q = query.to_vec();
            q.push(("limit", PAGE_SIZE.to_string()));
            q.push(("skip", skip.to_string()));
            async move { self.get(path, &q).await }
        };
        let (mut items, total) = parse(&page(0).await?)?;
        match total {
            Some(total) => {
                // Each page is read as it arrives: its raw body (several times the size of what
                // is kept of it) is dropped then, not held until every page is in.
                let parse = &parse;
                let rest = try_join_all(
                    (PAGE_SIZE..total)
                        .step_by(PAGE_SIZE as usize)
                        .map(|skip| async move { parse(&page(skip).await?).map(|(items, _)| items) }),
                )
                .await?;
                items.reserve_exact(rest.iter().map(Vec::len).sum());
                items.extend(rest.into_iter().flatten());
            }
            None => {
                let mut last = items.len() as u64;
                while last == PAGE_SIZE {
                    let (more, _) = parse(&page(items.len() as u64).await?)?;
                    last = more.len() as u64;
                    items.extend(more);
                }
            }
        }
        Ok(items)
    }

    /// The result and whether an earlier attempt may have been applied.
    async fn member_operation(&self, op: &str, group_id: &str, user_id: &str) -> (Result<(), DirectoryError>, bool) {
        if let Err(e) = check_id(group_id, "group").and_then(|_| check_id(user_id, "user")) {
            return (Err(e), false);
        }
        let body = serde_json::to_value(MemberOperation { op, kind: "user", id: user_id }).expect("serializable");
        let path = format!("/api/v2/usergroups/{group_id}/members");
        // A removal is a revocation: it must never wait behind a sync's listings. An add is not:
        // a grant adding access is not what an expiry must never wait for, so it queues with the
        // rest (and would otherwise delay the removals it competes with).
        let class = if op == "remove" { Class::Priority } else { Class::Normal };
        let call = Call { class, insights: false, method: Method::POST, path: &path, query: &[], body: Some(&body) };
        let (result, maybe_applied) = self.send(call).await;
        (result.map(|_| ()), maybe_applied)
    }
}

#[async_trait]
impl Directory for JumpCloudClient {
    async fn list_users(&self) -> Result<Vec<SourceUser>, DirectoryError> {
        let query = [("sort", "_id".to_owned()), ("fields", USER_FIELDS.to_owned())];
        self.all_pages("/api/systemusers", &query, |reply| {
            let list: UserList = decode(reply)?;
            Ok((list.results.into_iter().map(SourceUser::from).collect(), list.total_count))
        })
        .await
    }

    async fn list_users_from(&self, skip: u64, limit: Option<u64>) -> Result<Vec<SourceUser>, DirectoryError> {
        // A page of users, and how many the organization has (v1 pages carry `totalCount`).
        let page = |skip: u64, size: u64| async move {
            let query = [
                ("sort", "_id".to_owned()),
                ("fields", USER_FIELDS.to_owned()),
                ("limit", size.to_string()),
                ("skip", skip.to_string()),
            ];
            let list: UserList = decode(&self.get("/api/systemusers", &query).await?)?;
            Ok::<_, DirectoryError>((
                list.results.into_iter().map(SourceUser::from).collect::<Vec<_>>(),
                list.total_count,
            ))
        };
        let range = |from: u64, to: u64| {
            try_join_all((from..to).step_by(PAGE_SIZE as usize).map(move |at| page(at, PAGE_SIZE.min(to - at))))
        };
        // A known range: its pages at once, within the client's limits.
        if let Some(limit) = limit {
            return Ok(range(skip, skip + limit).await?.into_iter().flat_map(|(users, _)| users).collect());
        }
        // To the end: the first page says how far that is, the rest of the way at once; then page
        // by page while users keep coming (created since), as the latest count says.
        let (mut users, mut total) = page(skip, PAGE_SIZE).await?;
        if let Some(known) = total.filter(|_| users.len() as u64 == PAGE_SIZE) {
            for (more, count) in range(skip + PAGE_SIZE, known.max(skip + PAGE_SIZE)).await? {
                users.extend(more);
                total = count.or(total);
            }
        }
        loop {
            let next = skip + users.len() as u64;
            let full = (users.len() as u64).is_multiple_of(PAGE_SIZE) && !users.is_empty();
            if !full || total.is_some_and(|t| next >= t) {
                return Ok(users);
            }
            let (more, count) = page(next, PAGE_SIZE).await?;
            total = count.or(total);
            if more.is_empty() {
                return Ok(users);
            }
            users.extend(more);
        }
    }

    async fn count_users(&self) -> Result<u64, DirectoryError> {
        let query = [("fields", "_id".to_owned()), ("limit", "1".to_owned())];
        let list: UserList = decode(&self.get("/api/systemusers", &query).await?)?;
        list.total_count.ok_or_else(|| DirectoryError::Invalid {
            status: 200,
            message: "the user listing carries no totalCount".into(),
        })
    }

    async fn list_groups(&self) -> Result<Vec<SourceGroup>, DirectoryError> {
        self.all_pages("/api/v2/usergroups", &[("sort", "id".to_owned())], |reply| {
            let page: Vec<JumpCloudGroup> = decode(reply)?;
            Ok((page.into_iter().map(SourceGroup::from).collect(), total_count(&reply.headers)))
        })
        .await
    }

    async fn list_group_members(&self, group_id: &str) -> Result<Vec<String>, DirectoryError> {
        check_id(group_id, "group")?;
        let path = format!("/api/v2/usergroups/{group_id}/members");
        let connections = self
            .all_pages(&path, &[], |reply| {
                let page: Vec<GraphConnection> = decode(reply)?;
                Ok((page, total_count(&reply.headers)))
            })
            .await?;
        Ok(connections.into_iter().filter(|c| c.to.kind == "user").map(|c| c.to.id).collect())
    }

    async fn groups_of_user(&self, user_id: &str) -> Result<Vec<String>, DirectoryError> {
        check_id(user_id, "user")?;
        let path = format!("/api/v2/users/{user_id}/memberof");
        let groups = self
            .all_pages(&path, &[], |reply| {
                let page: Vec<GraphObjectWithPaths> = decode(reply)?;
                Ok((page, total_count(&reply.headers)))
            })
            .await?;
        Ok(groups.into_iter().filter(GraphObjectWithPaths::is_direct).map(|g| g.id).collect())
    }

    async fn find_user(&self, key: &str) -> Result<SourceUser, DirectoryError> {
        let key = key.trim();
        let not_found = || DirectoryError::NotFound { what: format!("user {key:?}") };
        if is_object_id(key) {
            match self.get(&format!("/api/systemusers/{key}"), &[("fields", USER_FIELDS.to_owned())]).await {
                Ok(reply) => return decode::<JumpCloudUser>(&reply).map(SourceUser::from),
                Err(DirectoryError::NotFound { .. }) => return Err(not_found()),
                Err(e) => return Err(e),
            }
        }
        if has_filter_syntax(key) {
            return Err(DirectoryError::NotFound { what: format!("user {key:?} (it holds JumpCloud filter syntax)") });
        }
        // JumpCloud's filter values are case-sensitive: the address as given, then in lower case.
        let by_email = key.contains('@');
        let mut filters = vec![if by_email { format!("email:$eq:{key}") } else { format!("username:$eq:{key}") }];
        if by_email && key.to_lowercase() != key {
            filters.push(format!("email:$eq:{}", key.to_lowercase()));
        }
        for filter in filters {
            let query = [("filter", filter), ("limit", "2".to_owned()), ("fields", USER_FIELDS.to_owned())];
            let list: UserList = decode(&self.get("/api/systemusers", &query).await?)?;
            // Only an exact match counts, and only a unique one: whatever the filter's semantics.
            let mut exact = list.results.into_iter().filter(|u| {
                let value = if by_email { &u.email } else { &u.username };
                value.eq_ignore_ascii_case(key)
            });
            match (exact.next(), exact.next()) {
                (Some(user), None) => return Ok(user.into()),
                (Some(_), Some(_)) => {
                    return Err(DirectoryError::NotFound { what: format!("user {key:?} (not a unique match)") })
                }
                (None, _) => {}
            }
        }
        Err(not_found())
    }

    async fn group_by_id(&self, id: &str) -> Result<SourceGroup, DirectoryError> {
        check_id(id, "group")?;
        match self.get(&format!("/api/v2/usergroups/{id}"), &[]).await {
            Ok(reply) => decode::<JumpCloudGroup>(&reply).map(SourceGroup::from),
            Err(DirectoryError::NotFound { .. }) => Err(DirectoryError::NotFound { what: format!("group {id:?}") }),
            Err(e) => Err(e),
        }
    }

    async fn find_group(&self, key: &str) -> Result<SourceGroup, DirectoryError> {
        let key = key.trim();
        if is_object_id(key) {
            match self.get(&format!("/api/v2/usergroups/{key}"), &[]).await {
                Ok(reply) => return decode::<JumpCloudGroup>(&reply).map(SourceGroup::from),
                Err(DirectoryError::NotFound { .. }) => {} // may still be a group so named
                Err(e) => return Err(e),
            }
        }
        if has_filter_syntax(key) {
            return Err(DirectoryError::NotFound { what: format!("group {key:?} (it holds JumpCloud filter syntax)") });
        }
        let query = [("filter", format!("name:eq:{key}")), ("limit", "2".to_owned())];
        let groups: Vec<JumpCloudGroup> = decode(&self.get("/api/v2/usergroups", &query).await?)?;
        let mut exact = groups.into_iter().filter(|g| g.name == key);
        match (exact.next(), exact.next()) {
            (Some(group), None) => Ok(SourceGroup::from(group)),
            (Some(_), Some(_)) => Err(DirectoryError::NotFound { what: format!("group {key:?} (not a unique match)") }),
            (None, _) => Err(DirectoryError::NotFound { what: format!("group {key:?}") }),
        }
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<AddOutcome, AddError> {
        match self.member_operation("add", group_id, user_id).await {
            (Ok(()), _) => Ok(AddOutcome::Added),
            // JumpCloud's 409 on an add: the user already is a direct member.
            (Err(DirectoryError::Invalid { status: 409, .. }), ambiguous) => {
                Ok(AddOutcome::AlreadyMember { ambiguous })
            }
            (Err(error), maybe_applied) => Err(AddError { error, maybe_applied }),
        }
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<RemoveOutcome, DirectoryError> {
        match self.member_operation("remove", group_id, user_id).await.0 {
            Ok(()) => Ok(RemoveOutcome::Removed),
            // JumpCloud answers 404 both for "not a member" and for a group that does not exist in
            // this organization (a key of another one): only the first means the access is gone.
            Err(DirectoryError::NotFound { .. }) => {
                // Part of the revocation: as urgent as the removal itself.
                let path = format!("/api/v2/usergroups/{group_id}");
                let confirm = Call {
                    class: Class::Priority,
                    insights: false,
                    method: Method::GET,
                    path: &path,
                    query: &[],
                    body: None,
                };
                match self.send(confirm).await.0 {
                    Ok(_) => Ok(RemoveOutcome::NotMember),
                    Err(DirectoryError::NotFound { .. }) => Err(DirectoryError::NotFound {
                        what: format!(
                        "group {group_id} in this organization (the removal answered 404 and the group does not exist \
                         here: is the integration's key for another organization?)"
                    ),
                    }),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(reply: &Reply) -> Result<T, DirectoryError> {
    serde_json::from_slice(&reply.body).map_err(|e| DirectoryError::Decode { reason: e.to_string() })
}

fn total_count(headers: &HeaderMap) -> Option<u64> {
    headers.get("x-total-count")?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` in seconds (JumpCloud's form); an HTTP date is not expected and is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(300)))
}

/// Ids go into URL paths: refuse anything that could change the path.
fn check_id(id: &str, what: &str) -> Result<(), DirectoryError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(DirectoryError::Invalid { status: 400, message: format!("malformed {what} id") })
    }
}

/// reqwest's messages hold the URL, never headers: safe to report.
fn describe_reqwest_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_decode() || e.is_body() {
        "response body could not be read".to_owned()
    } else {
        match e.status() {
            Some(status) => format!("HTTP {status}"),
            None => "request failed".to_owned(),
        }
    }
}

/// JumpCloud's filter syntax in a lookup value (`field:$op:value`, `,` between filters) would
/// change the query it is put in: such a value names nobody, and no request is sent.
fn has_filter_syntax(key: &str) -> bool {
    key.contains(',') || key.contains(":$") || key.matches(':').count() >= 2
}
