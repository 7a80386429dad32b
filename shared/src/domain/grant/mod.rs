//! Grant: validate a request, add the user to the group, record the grant, schedule its expiry.
//!
//! What happens, in order:
//! 1. The request itself is checked (reason, duration bounds; its names and key were parsed at
//!    the edge, see `domain::model::input`), then the `Idempotency-Key` is
//!    claimed: a replay of a completed request returns its grant and does nothing else.
//! 2. The integration is resolved, the user and group are looked up live in JumpCloud and checked
//!    (suspended user, dynamic or out-of-scope group). Nothing is written before this point.
//! 3. The membership's lease is locked; the grant is recorded `pending` and becomes a holder of
//!    the lease (so the sweep already knows it); JumpCloud is asked to add the member.
//! 4. Added, or already a member (409): whether the membership pre-existed is decided (invariant
//!    2), the expiry schedule is created (its failure does not fail the grant: the sweep covers
//!    it, invariant 1), the grant becomes `active` and the lock is released, in one write.
//! 5. JumpCloud failed: the grant ends `failed` with nothing active. If the add may have been
//!    applied (a timeout or 5xx), the failed grant stays a holder and due in the sweep's index, so
//!    that the sweep removes whatever membership it may have left.
//!
//! Every state change writes its audit records in the same atomic store operation, and is then
//! published (best effort) to the event bus.

mod check;

use crate::{
    clock::Clock,
    config::{Config, GroupScope},
    domain::extension,
    domain::model::GrantDuration,
    domain::model::{
        ApprovalMode, AuditAction, AuditOutcome, AuditRecord, EventType, Grant, GrantEvent, GrantEventDetail,
        GrantGroup, GrantStatus, GrantUser, IdempotencyClaim, IdempotencyKey, IdempotencyState, IntegrationSource,
        Lease, LeaseHold, LeaseKey, Name,
    },
    domain::policy::Refusal,
    domain::request::{self, authorize, Ask, Authorization, Verdict},
    domain::{identity::PrincipalUser, snapshot::canonical_email},
    ports::{
        Activation, AddOutcome, Directory, DirectoryProvider, DirectoryStore, Ending, EventBus, ExpiryScheduler,
        Failure, GrantStore, GrantStoreError, Integration, IntegrationCatalog, MembershipOracle, PolicySource,
        PolicyStoreError, SecretsError, StoreError,
    },
    ports::{AddError, DirectoryError},
};
use backon::{ExponentialBuilder, Retryable};
use check::{check_request, CheckedRequest};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tracing::Instrument;

/// The longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// The rules and tunables of the grant lifecycle.
#[derive(Debug, Clone)]
pub struct GrantPolicy {
    pub min_duration: GrantDuration,
    pub max_duration: GrantDuration,
    pub requestable_groups: GroupScope,
    /// How long a lease lock lasts if its owner dies. Must exceed every function's timeout, or a
    /// lapsed owner could still be talking to JumpCloud while another request acts.
    pub lease_ttl: chrono::Duration,
    /// Attempts to take a busy lease lock, with jittered exponential backoff from `lock_backoff`.
    pub lock_attempts: usize,
    pub lock_backoff: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: chrono::Duration,
    /// An expiry that arrives this much before `expires_at` is still honoured (clock skew).
    pub early_expiry_tolerance: chrono::Duration,
    /// The sweep's page size, page limit per run, and grants settled at once.
    pub sweep_page: usize,
    pub sweep_max: usize,
    pub sweep_concurrency: usize,
}

impl Default for GrantPolicy {
    fn default() -> Self {
        Self {
            min_duration: GrantDuration::from_secs(60),
            max_duration: GrantDuration::from_secs(12 * 3600),
            requestable_groups: GroupScope::all(),
            lease_ttl: chrono::Duration::minutes(3),
            lock_attempts: 6,
            lock_backoff: Duration::from_millis(50),
            idempotency_ttl: chrono::Duration::hours(24),
            early_expiry_tolerance: chrono::Duration::seconds(5),
            sweep_page: 100,
            sweep_max: 1000,
            sweep_concurrency: 16,
        }
    }
}

impl GrantPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            min_duration: config.min_grant_duration,
            max_duration: config.max_grant_duration,
            requestable_groups: config.directory.requestable_groups.clone(),
            ..Self::default()
        }
    }
}

/// The ports the grant lifecycle works through (grant, revoke and sweep share it).
pub struct GrantContext<'a> {
    pub store: &'a dyn GrantStore,
    pub scheduler: &'a dyn ExpiryScheduler,
    pub events: &'a dyn EventBus,
    pub catalog: &'a dyn IntegrationCatalog,
    pub directories: &'a dyn DirectoryProvider,
    pub oracle: &'a dyn MembershipOracle,
    /// The synced directory: eligibility and approvers.
    pub directory_store: &'a dyn DirectoryStore,
    /// The applied access policy.
    pub policies: &'a dyn PolicySource,
    pub clock: &'a dyn Clock,
    pub policy: &'a GrantPolicy,
}

/// `POST /grants`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// Email, username or JumpCloud id; `None`: the caller.
    pub user: Option<Name>,
    /// Name or JumpCloud id.
    pub group: Name,
    pub duration: GrantDuration,
    /// Checked here (not empty, at most [`MAX_REASON_CHARS`]): a rule of the product, not of
    /// the field's syntax.
    pub reason: String,
    pub integration: Option<Name>,
    /// The caller, from the authorizer context.
    pub requested_by: String,
    /// The JumpCloud users behind the caller, per integration (`Principal::users`): the one of
    /// the grant's integration is recorded as its `requester`.
    pub caller_users: Vec<PrincipalUser>,
    /// An admin grants on their own say; anyone else as the applied policy allows.
    pub caller_admin: bool,
    /// Skip approval where the rule allows it (flagged, published).
    pub break_glass: bool,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantOutcome {
    pub grant: Grant,
    /// A replay of a completed request (`Idempotency-Key`): nothing was done (HTTP 200, not 201).
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("duration {requested} is outside the allowed range {min} to {max}")]
    DurationOutOfRange { requested: GrantDuration, min: GrantDuration, max: GrantDuration },
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
    /// Several integrations are configured and the request named none.
    #[error("integration is required: there are several ({})", .0.join(", "))]
    IntegrationRequired(Vec<String>),
    #[error("no integration is configured")]
    NoIntegration,
    #[error("user {0:?} not found")]
    UserNotFound(String),
    #[error("group {0:?} not found")]
    GroupNotFound(String),
    #[error("user {0:?} is suspended")]
    UserSuspended(String),
    #[error("group {group:?} is not requestable: {why}")]
    GroupNotRequestable { group: String, why: &'static str },
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    #[error("the membership is being changed by another request; retry shortly")]
    Busy,
    /// No access policy is applied: only admins grant.
    #[error("only admins may grant access while no access policy is applied")]
    NoPolicy,
    #[error(transparent)]
    Refused(Refusal),
    #[error("you may request access only for yourself")]
    ForSomeoneElse,
    #[error("you are not a user of integration {0:?}: name the user to grant")]
    NotAUser(String),
    #[error(
        "no approver can be resolved for this request (rule {rule} needs {required}, found {found}): ask an admin"
    )]
    NoApprover { required: u32, found: usize, rule: usize },
    #[error("the access policy could not be read: {0}")]
    Policy(PolicyStoreError),
    #[error("the synced directory could not be read: {0}")]
    SyncedDirectory(#[from] StoreError),
    #[error(transparent)]
    Directory(DirectoryError),
    #[error("integrations unavailable: {0}")]
    Integrations(SecretsError),
    #[error(transparent)]
    Store(GrantStoreError),
}

impl From<GrantStoreError> for GrantError {
    fn from(e: GrantStoreError) -> Self {
        match e {
            GrantStoreError::LeaseBusy { .. } => Self::Busy,
            other => Self::Store(other),
        }
    }
}

/// Requests a grant. See the module documentation for the steps.
pub async fn request_grant(ctx: &GrantContext<'_>, request: GrantRequest) -> Result<GrantOutcome, GrantError> {
    let checked = check_request(&request, ctx.policy)?;
    let now = ctx.clock.now();
    let Some(idempotency_key) = checked.idempotency_key.clone() else {
        return create(ctx, &checked, now).await.map(|grant| GrantOutcome { grant, replayed: false });
    };
    let claim = IdempotencyClaim {
        key: idempotency_key.clone(),
        request_hash: checked.hash(),
        now,
        expires_at: now + ctx.policy.idempotency_ttl,
        in_progress_until: now + ctx.policy.lease_ttl,
    };
    match ctx.store.begin_idempotent(&claim).await? {
        IdempotencyState::New => {}
        IdempotencyState::InProgress => return Err(GrantError::IdempotencyInProgress),
        IdempotencyState::Mismatch => return Err(GrantError::IdempotencyMismatch),
        IdempotencyState::Completed(grant_id) => {
            let grant = ctx.store.get(&grant_id).await?.ok_or(GrantStoreError::NotFound(grant_id))?;
            return Ok(GrantOutcome { grant, replayed: true });
        }
    }
    let result = create(ctx, &checked, now).await;
    let recorded = match &result {
        Ok(grant) => ctx.store.complete_idempotent(&idempotency_key, &grant.id).await,
        Err(_) => ctx.store.abandon_idempotent(&idempotency_key).await,
    };
    if let Err(e) = recorded {
        // The grant's own outcome stands; a retry after the in-progress window runs again.
        tracing::error!(error = %e, "could not record the outcome of an idempotent request");
    }
    result.map(|grant| GrantOutcome { grant, replayed: false })
}

/// Finds an integration by name, or the only one when none is named.
pub(crate) async fn resolve_integration(
    catalog: &dyn IntegrationCatalog,
    name: Option<&str>,
) -> Result<Integration, GrantError> {
    let discovered = catalog.list().await.map_err(GrantError::Integrations)?;
    match name {
        Some(name) => discovered
            .integrations
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| GrantError::UnknownIntegration(name.to_owned())),
        None => match discovered.integrations.len() {
            0 => Err(GrantError::NoIntegration),
            1 => Ok(discovered.integrations.into_iter().next().expect("one")),
            _ => Err(GrantError::IntegrationRequired(discovered.integrations.into_iter().map(|i| i.name).collect())),
        },
    }
}

/// Why `integration` is not the one `grant` was made through (another secret now claims its name,
/// or the secret now names another organization); `None` when it is, or the grant predates the
/// record of its source.
pub(crate) fn source_mismatch(grant: &Grant, integration: &Integration) -> Option<String> {
    let source = grant.source.as_ref()?;
    let why = if source.secret_arn != integration.secret_id {
        "another secret than the one that made the grant"
    } else if source.org_id != integration.credentials.org_id {
        "its secret with another organization than the one the grant was made in"
    } else {
        return None;
    };
    // ARNs and organization ids in the log (for the operator), not in what callers are answered.
    tracing::error!(event = "integration_changed", grant_id = %grant.id, integration = %grant.integration,
        granted_through = %source.secret_arn, granted_org = ?source.org_id,
        now_through = %integration.secret_id, now_org = ?integration.credentials.org_id,
        "the grant's integration is configured by another secret or organization now");
    Some(format!("the integration {:?} is now configured by {why}", grant.integration))
}

/// A lookup's "not found" is the request's error; any other failure is JumpCloud's.
pub(crate) fn not_found_as(error: DirectoryError, missing: impl FnOnce() -> GrantError) -> GrantError {
    match error {
        DirectoryError::NotFound { .. } => missing(),
        other => GrantError::Directory(other),
    }
}

/// Steps 2 to 5.
async fn create(ctx: &GrantContext<'_>, request: &CheckedRequest, now: DateTime<Utc>) -> Result<Grant, GrantError> {
    let integration = resolve_integration(ctx.catalog, request.integration.as_deref()).await?;
    let directory = ctx.directories.directory(&integration);
    let caller_user = request.caller_users.iter().find(|u| u.integration == integration.name);
    // A person asks for themself: `user` omitted means the caller.
    let user_name = match (&request.user, caller_user) {
        (Some(user), _) => user.clone(),
        (None, Some(me)) => me.id.clone(),
        (None, None) => return Err(GrantError::NotAUser(integration.name.clone())),
    };
    let (user, group) = futures::join!(directory.find_user(&user_name), directory.find_group(&request.group));
    let user = user.map_err(|e| not_found_as(e, || GrantError::UserNotFound(user_name.clone())))?;
    let group = group.map_err(|e| not_found_as(e, || GrantError::GroupNotFound(request.group.clone())))?;
    if !request.caller_admin && caller_user.is_none_or(|me| me.id != user.id) {
        return Err(GrantError::ForSomeoneElse);
    }
    if user.is_suspended() {
        return Err(GrantError::UserSuspended(user_name.clone()));
    }
    if group.membership_method.is_dynamic() {
        return Err(GrantError::GroupNotRequestable {
            group: group.name,
            why: "its members are managed by JumpCloud rules (dynamic group)",
        });
    }
    if !ctx.policy.requestable_groups.contains(&group.name) {
        return Err(GrantError::GroupNotRequestable { group: group.name, why: "outside REQUESTABLE_GROUPS" });
    }

    // Invariant 7: an admin grants on their own say; anyone else as the applied policy allows.
    let authorization = if request.caller_admin {
        None
    } else {
        let applied = ctx.policies.current().await.map_err(GrantError::Policy)?.ok_or(GrantError::NoPolicy)?;
        let ask = Ask {
            integration: &integration.name,
            grantee: &user,
            group: &group,
            duration: request.duration,
            reason: &request.reason,
            break_glass: request.break_glass,
        };
        let authorized = authorize(ctx, &applied, ask).await?;
        Some(authorized)
    };

    let mut grant = Grant {
        id: uuid::Uuid::new_v4().to_string(),
        integration: integration.name.clone(),
        user: GrantUser { id: user.id, email: canonical_email(&user.email) },
        group: GrantGroup { id: group.id, name: group.name },
        status: GrantStatus::Pending,
        requested_at: now,
        granted_at: Some(now),
        expires_at: Some(now + request.duration.to_chrono()),
        ended_at: None,
        duration: request.duration,
        requested_by: request.requested_by.clone(),
        requester: caller_user.map(|u| GrantUser { id: u.id.clone(), email: u.email.clone() }),
        reason: request.reason.clone(),
        break_glass: false,
        approval: ApprovalMode::Admin,
        approvals_required: 0,
        approvals: Vec::new(),
        approvers: Vec::new(),
        request_expires_at: None,
        decided_by: None,
        policy: None,
        revision: 0,
        pending_extension: None,
        extensions: Vec::new(),
        remind_before: None,
        membership_end: None,
        preexisting_membership: false,
        membership_missing: false,
        schedule_name: None,
        revocation_requested: None,
        source: Some(IntegrationSource {
            secret_arn: integration.secret_id.clone(),
            org_id: integration.credentials.org_id.clone(),
        }),
    };
    let span = tracing::info_span!("grant", grant_id = %grant.id, integration = %grant.integration,
        user = %grant.user.id, group = %grant.group.id);
    if let Some(Authorization { policy, remind_before, verdict }) = authorization {
        grant.policy = Some(policy);
        grant.remind_before = remind_before;
        match verdict {
            Verdict::AutoApproved => grant.approval = ApprovalMode::AutoApproved,
            Verdict::BreakGlass { notify } => {
                grant.approval = ApprovalMode::BreakGlass;
                grant.break_glass = true;
                grant.approvers = notify;
            }
            Verdict::NeedsApproval { required, approvers, timeout } => {
                return request::record(ctx, grant, required, approvers, timeout).instrument(span).await;
            }
        }
    }
    let hold = LeaseHold { key: grant.lease_key(), owner: format!("grant:{}", grant.id) };
    async {
        let lease = lock(ctx, &hold.key, &hold.owner).await?;
        create_locked(ctx, grant, directory.as_ref(), &lease, &hold).await
    }
    .instrument(span)
    .await
}

/// Steps 3 to 5, holding the lease's lock. Every way out releases it.
async fn create_locked(
    ctx: &GrantContext<'_>,
    grant: Grant,
    directory: &dyn Directory,
    lease: &Lease,
    hold: &LeaseHold,
) -> Result<Grant, GrantError> {
    let how = match grant.approval {
        ApprovalMode::Admin => "granted by an admin",
        ApprovalMode::AutoApproved => "auto-approved by the policy",
        ApprovalMode::BreakGlass => "BREAK GLASS: active without approval",
        ApprovalMode::Approvers => "approved",
    };
    let created = AuditRecord::new(
        &grant,
        grant.requested_at,
        &grant.requested_by,
        AuditAction::Created,
        AuditOutcome::Succeeded,
    )
    .reason(grant.reason.clone())
    .detail(format!("{} in {} for {}; {how}", grant.user.email, grant.group.name, grant.duration));
    if let Err(e) = ctx.store.insert_pending(&grant, hold, &[created]).await {
        return Err(abort(ctx, hold, e.into()).await);
    }
    if grant.break_glass {
        publish(ctx.events, EventType::BreakGlassUsed, &grant, &grant.requested_by, None, None).await;
    }
    add_and_activate(ctx, grant, directory, lease, hold).await
}

/// Steps 3 (after the grant is recorded pending and a holder) to 5, holding the lease's lock:
/// JumpCloud is asked to add the member, then the grant is activated or failed.
pub(crate) async fn add_and_activate(
    ctx: &GrantContext<'_>,
    grant: Grant,
    directory: &dyn Directory,
    lease: &Lease,
    hold: &LeaseHold,
) -> Result<Grant, GrantError> {
    // The lease as locked, before this grant joined it.
    let other_holders = lease.holders.iter().any(|h| *h != grant.id);
    let attempt_started = ctx.clock.now();
    match directory.add_member(&grant.group.id, &grant.user.id).await {
        Ok(outcome) => activate(ctx, grant, outcome, other_holders, lease, hold, attempt_started).await,
        Err(error) => Err(fail(ctx, &grant, error, other_holders, hold, attempt_started).await),
    }
}

async fn activate(
    ctx: &GrantContext<'_>,
    grant: Grant,
    outcome: AddOutcome,
    other_holders: bool,
    lease: &Lease,
    hold: &LeaseHold,
    attempt_started: DateTime<Utc>,
) -> Result<Grant, GrantError> {
    // Invariant 2: what JumpCloud's answer proves about the membership before this grant.
    let (preexisting, lease_preexisting, how) = match outcome {
        // Not a member a moment ago: whatever standing membership there was is gone.
        AddOutcome::Added => (false, Some(false), "added to the group"),
        // The other holders' membership: they decided whether it pre-existed.
        AddOutcome::AlreadyMember { .. } if other_holders => {
            let how = if lease.preexisting {
                "already a standing member (and held by other grants): kept at the end"
            } else {
                "already a member through other grants"
            };
            (lease.preexisting, None, how)
        }
        AddOutcome::AlreadyMember { ambiguous: false } => {
            (true, Some(true), "already a standing member: kept at the end")
        }
        // The 409 may answer our own earlier, timed-out attempt: the synced directory decides.
        AddOutcome::AlreadyMember { ambiguous: true } => {
            let held = synced_membership(ctx, &hold.key, attempt_started).await;
            let how = if held {
                "already a member per the synced directory: kept at the end"
            } else {
                "added (JumpCloud's 409 answered an earlier attempt of ours)"
            };
            (held, Some(held), how)
        }
    };
    let (schedule_name, schedule_error) = match ctx.scheduler.create(&grant).await {
        Ok(name) => (Some(name), None),
        Err(e) => {
            tracing::warn!(error = %e, "could not create the expiry schedule; the sweep will end the grant");
            (None, Some(e.to_string()))
        }
    };
    let now = ctx.clock.now();
    let mut audit =
        vec![AuditRecord::new(&grant, now, &grant.requested_by, AuditAction::Activated, AuditOutcome::Succeeded)
            .detail(how)];
    if let Some(error) = schedule_error {
        audit.push(
            AuditRecord::new(&grant, now, &grant.requested_by, AuditAction::ScheduleFailed, AuditOutcome::Failed)
                .detail(format!("{error}; the sweep ends the grant at its expiry")),
        );
    }
    let activation = Activation { grant, preexisting, lease_preexisting, schedule_name };
    let active = match ctx.store.activate(&activation, hold, &audit).await {
        Ok(active) => active,
        // The grant stays pending and a holder: the schedule or the sweep settles it at expiry.
        Err(e) => return Err(abort(ctx, hold, e.into()).await),
    };
    tracing::info!(preexisting, "grant active");
    extension::schedule_reminder(ctx, &active).await;
    publish(ctx.events, EventType::GrantCreated, &active, &active.requested_by, None, None).await;
    Ok(active)
}

/// JumpCloud failed to add the member (after its retries).
async fn fail(
    ctx: &GrantContext<'_>,
    grant: &Grant,
    failure: AddError,
    other_holders: bool,
    hold: &LeaseHold,
    attempt_started: DateTime<Utc>,
) -> GrantError {
    let now = ctx.clock.now();
    // The adapter knows whether an attempt may have reached JumpCloud (a timeout or a 5xx after
    // sending); a definite refusal did not.
    let AddError { error, maybe_applied } = failure;
    let audit = AuditRecord::new(grant, now, &grant.requested_by, AuditAction::Failed, AuditOutcome::Failed);
    let stored = if maybe_applied {
        let lease_preexisting =
            if other_holders { None } else { Some(synced_membership(ctx, &hold.key, attempt_started).await) };
        let audit = audit.detail(format!("{error}; the add may have been applied: the sweep removes what it left"));
        let failure = Failure { grant: grant.clone(), ended_at: now, lease_preexisting };
        ctx.store.fail_for_cleanup(&failure, hold, &[audit]).await
    } else {
        let ending = Ending {
            grant: grant.clone(),
            status: GrantStatus::Failed,
            ended_at: now,
            last_holder: !other_holders,
            membership: None,
        };
        ctx.store.end(&ending, hold, &[audit.detail(error.to_string())]).await
    };
    match stored {
        Ok(failed) => {
            tracing::warn!(error = %error, maybe_applied, "grant failed");
            publish(ctx.events, EventType::GrantFailed, &failed, &failed.requested_by, None, Some(error.to_string()))
                .await;
        }
        Err(e) => {
            // Left pending and a holder: settled at its expiry like any leftover.
            tracing::error!(error = %e, "could not record the failed grant");
            unlock(ctx, hold).await;
        }
    }
    GrantError::Directory(error)
}

/// Takes a lease's lock, retrying a busy one with jittered exponential backoff.
pub(crate) async fn lock(ctx: &GrantContext<'_>, key: &LeaseKey, owner: &str) -> Result<Lease, GrantStoreError> {
    let policy = ctx.policy;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.lock_backoff)
        .with_max_delay(policy.lock_backoff * 8)
        .with_max_times(policy.lock_attempts)
        .with_jitter();
    (|| async { ctx.store.lock_lease(key, owner, ctx.clock.now(), policy.lease_ttl).await })
        .retry(backoff)
        .when(|e| matches!(e, GrantStoreError::LeaseBusy { .. }))
        .await
}

/// Releases the lock, best effort: it lapses by itself after the lease TTL anyway.
pub(crate) async fn unlock(ctx: &GrantContext<'_>, hold: &LeaseHold) {
    if let Err(e) = ctx.store.unlock_lease(hold).await {
        tracing::warn!(error = %e, "could not release a lease lock; it lapses by itself");
    }
}

async fn abort(ctx: &GrantContext<'_>, hold: &LeaseHold, error: GrantError) -> GrantError {
    unlock(ctx, hold).await;
    error
}

/// Whether the synced directory held the membership before `before`; unknown counts as not held.
pub(crate) async fn synced_membership(ctx: &GrantContext<'_>, key: &LeaseKey, before: DateTime<Utc>) -> bool {
    match ctx.oracle.synced_membership(key, before).await {
        Ok(known) => known.unwrap_or(false),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the synced directory; taking the membership as not pre-existing");
            false
        }
    }
}

/// The emails an event of `grant` tells (SPEC: requester, approvers, grantee), each once.
pub(crate) fn notify_list(grant: &Grant) -> Vec<String> {
    let extension_approvers = grant.pending_extension.iter().flat_map(|p| p.approvers.iter());
    let people = std::iter::once(&grant.user.email)
        .chain(grant.requester.as_ref().map(|r| &r.email))
        .chain(grant.approvers.iter())
        .chain(extension_approvers);
    let mut seen = std::collections::BTreeSet::new();
    people.filter(|email| seen.insert(email.as_str())).cloned().collect()
}

/// Publishes one grant event, best effort: the audit trail is the record, the bus a notification.
pub(crate) async fn publish(
    events: &dyn EventBus,
    detail_type: EventType,
    grant: &Grant,
    actor: &str,
    membership: Option<crate::domain::model::MembershipEnd>,
    error: Option<String>,
) {
    let detail = GrantEventDetail {
        grant: grant.clone(),
        actor: actor.to_owned(),
        membership,
        error,
        notify: notify_list(grant),
        drift: None,
        extension: None,
    };
    publish_detail(events, detail_type, &detail).await;
}

/// Publishes the decision on a pending extension (`Grant Extended`, `Request Denied`): the event
/// carries the extension decided, and tells its approvers too.
pub(crate) async fn publish_extension_decision(
    events: &dyn EventBus,
    detail_type: EventType,
    grant: &Grant,
    actor: &str,
    extension: &crate::domain::model::PendingExtension,
) {
    let mut notify = notify_list(grant);
    notify.extend(extension.approvers.iter().filter(|a| !notify.contains(a)).cloned().collect::<Vec<_>>());
    let detail = GrantEventDetail {
        grant: grant.clone(),
        actor: actor.to_owned(),
        membership: None,
        error: None,
        notify,
        drift: None,
        extension: Some(extension.clone()),
    };
    publish_detail(events, detail_type, &detail).await;
}

async fn publish_detail(events: &dyn EventBus, detail_type: EventType, detail: &GrantEventDetail) {
    if let Err(e) = events.publish(&[GrantEvent::for_grant(detail_type, detail)]).await {
        tracing::error!(error = %e, detail_type = detail_type.detail_type(), grant_id = %detail.grant.id, "could not publish an event");
    }
}
