//! `jitctl requests`, `approve` and `deny`: requests awaiting approval, from the terminal, through
//! the same domain code as `GET /grants?awaiting=me` and `POST /grants/{id}/approve|deny`.
//!
//! An operator records the decision of an approver (`--as EMAIL`, a user of the synced
//! directory): the decision is made as that approver's principal, so the domain's rules apply
//! unchanged (never the requester or the grantee, only the request's approvers, a request no
//! longer pending or past its timeout is refused). The audit actor is
//! `cli:<operator> as <email>`: who typed it, and for whom.

use crate::grants::{grant_id, integration_name, maybe_time, operator, print_grant, shown};
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Args;
use jit_shared::{
    config::Config,
    domain::extension::{extend, ExtendRequest},
    domain::identity::{Principal, PrincipalUser},
    domain::model::{DirectoryUser, Grant, GrantDuration, GrantFilter, GrantStatus, Name, UserState},
    domain::request::{approve, approver_of, deny, RequestError},
    domain::snapshot::canonical_email,
    wiring::{Function, Lifecycle},
};
use std::process::ExitCode;

/// The statuses a request has before it is approved: awaiting approval, or ended unapproved.
const REQUEST_STATUSES: [GrantStatus; 4] =
    [GrantStatus::PendingApproval, GrantStatus::Denied, GrantStatus::Cancelled, GrantStatus::RequestExpired];

/// Grants read per page of the store's listing.
const PAGE: usize = 100;

#[derive(Args)]
pub struct RequestsArgs {
    /// Only the requests this approver may decide now: they are among its approvers, are neither
    /// its requester nor its grantee, and its approval timeout has not passed. EMAIL is a user of
    /// the synced directory.
    #[arg(long, value_name = "EMAIL", conflicts_with = "all")]
    awaiting: Option<String>,
    /// Every request, not only those awaiting approval: also the ones that ended unapproved
    /// (`denied`, `cancelled`, `request_expired`). An approved request is a grant from then on:
    /// `jitctl grants list` shows it, with its approvals.
    #[arg(long)]
    all: bool,
    /// Only the requests of this integration.
    #[arg(long, value_parser = integration_name)]
    integration: Option<Name>,
    /// At most this many requests, newest first (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Print `{"grants": [...]}`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ApproveArgs {
    /// The request's id.
    id: String,
    /// The approver whose approval this records: the email of a user of the synced directory
    /// who is one of the request's approvers.
    #[arg(long = "as", value_name = "EMAIL")]
    approver: String,
    /// Why (recorded with the approval and in the audit trail).
    #[arg(long)]
    comment: Option<String>,
    /// Print the request (or the grant it became) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DenyArgs {
    /// The request's id.
    id: String,
    /// The approver whose denial this records: the email of a user of the synced directory who
    /// is one of the request's approvers.
    #[arg(long = "as", value_name = "EMAIL")]
    approver: String,
    /// Why (required; recorded in the audit trail).
    #[arg(long)]
    comment: String,
    /// Print the request as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn requests(sdk: &aws_config::SdkConfig, config: &Config, args: RequestsArgs) -> anyhow::Result<ExitCode> {
    let lifecycle = Lifecycle::from_config(sdk, config, Function::Revoke).context("configuration")?;
    let integration = args.integration.as_ref().map(Name::to_string);
    let limit = usize::from(args.limit);
    let grants = if let Some(email) = &args.awaiting {
        let approver = approver_anywhere(&lifecycle, email, integration.as_deref()).await?;
        let now = lifecycle.clock.now();
        let filter = GrantFilter { status: Some(GrantStatus::PendingApproval), integration, ..GrantFilter::default() };
        collect(&lifecycle, &filter, limit, |g| {
            approver_of(g, &approver).is_ok() && g.request_expires_at.is_none_or(|t| now < t)
        })
        .await?
    } else {
        let statuses: &[GrantStatus] = if args.all { &REQUEST_STATUSES } else { &REQUEST_STATUSES[..1] };
        let mut all = Vec::new();
        for status in statuses {
            let filter =
                GrantFilter { status: Some(*status), integration: integration.clone(), ..GrantFilter::default() };
            all.extend(collect(&lifecycle, &filter, limit, |_| true).await?);
        }
        // Each status's newest `limit`: the newest `limit` of them all are among them.
        all.sort_by(|a, b| (b.requested_at, &b.id).cmp(&(a.requested_at, &a.id)));
        all.truncate(limit);
        all
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "grants": grants }))?);
    } else {
        print_request_table(&grants, lifecycle.clock.now());
    }
    Ok(ExitCode::SUCCESS)
}

/// Up to `limit` grants of the listing that `keep` keeps, newest first, paging as needed.
async fn collect(
    lifecycle: &Lifecycle,
    filter: &GrantFilter,
    limit: usize,
    keep: impl Fn(&Grant) -> bool,
) -> anyhow::Result<Vec<Grant>> {
    let mut found = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = lifecycle.store.list(filter, PAGE, next.as_deref()).await?;
        found.extend(page.grants.into_iter().filter(|g| keep(g)));
        next = page.next;
        if found.len() >= limit || next.is_none() {
            break;
        }
    }
    found.truncate(limit);
    Ok(found)
}

pub async fn approve_request(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    args: ApproveArgs,
) -> anyhow::Result<ExitCode> {
    let id = grant_id(&args.id)?;
    // The last approval activates the grant and creates its expiry schedule: the grant's wiring.
    let lifecycle = Lifecycle::from_config(sdk, config, Function::Grant).context("configuration")?;
    let (seen, approver) = request_and_approver(&lifecycle, &id, &args.approver).await?;
    let grant = approve(&lifecycle.ctx(), &id, &approver, args.comment.as_deref())
        .await
        .map_err(|e| decision_error(e, &seen, &approver, &args.approver))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&grant)?);
    } else {
        let count = grant.approvals.len();
        let before =
            approver.user_in(&grant.integration).is_some_and(|me| seen.approvals.iter().any(|a| a.by == me.email));
        match grant.status {
            GrantStatus::PendingApproval if before => {
                println!(
                    "already approved by {}: {} ({count} of {})",
                    args.approver, grant.id, grant.approvals_required
                )
            }
            GrantStatus::PendingApproval => {
                println!("approved: {} ({count} of {} approvals)", grant.id, grant.approvals_required)
            }
            status => println!("approved and {}: {}", status.as_str(), grant.id),
        }
        print_grant(&grant);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExtendArgs {
    /// The grant's id (an active grant).
    id: String,
    /// How much longer: `30m`, `2h`, `PT1H`.
    #[arg(long)]
    duration: GrantDuration,
    /// Why (a ticket where the policy asks for one).
    #[arg(long)]
    reason: String,
    /// Ask as the grantee (email) under the access policy: applied at once when the rule
    /// auto-approves it, otherwise it awaits the rule's approvers. Without it, the operator
    /// extends as an admin, within MAX_GRANT_DURATION in all.
    #[arg(long = "as", value_name = "EMAIL")]
    grantee: Option<String>,
    #[arg(long)]
    json: bool,
}

/// `jitctl extend`: the domain's extension, as an admin (the operator) or as the grantee.
pub async fn extend_grant(sdk: &aws_config::SdkConfig, config: &Config, args: ExtendArgs) -> anyhow::Result<ExitCode> {
    let id = grant_id(&args.id)?;
    // The expiry schedule moves: the grant's wiring.
    let lifecycle = Lifecycle::from_config(sdk, config, Function::Grant).context("configuration")?;
    let (seen, caller) = match &args.grantee {
        Some(email) => request_and_approver(&lifecycle, &id, email).await?,
        None => {
            let Some(grant) = lifecycle.store.get(&id).await? else { bail!("no grant {id}") };
            (grant, Principal { id: operator(), admin: true, users: vec![] })
        }
    };
    let request = ExtendRequest { duration: args.duration, reason: args.reason };
    let grant = extend(&lifecycle.ctx(), &id, &caller, &request).await.map_err(|e| match e {
        RequestError::Forbidden(why) => anyhow::anyhow!("refused: {why}"),
        RequestError::NotPending(status) => {
            anyhow::anyhow!("grant {id} is {}: only an active grant can be extended", status.as_str())
        }
        RequestError::Expired(at) => anyhow::anyhow!("grant {id} ended (or is ending) at {at}: it cannot be extended"),
        other => anyhow::anyhow!("grant {id}: {other}"),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&grant)?);
    } else if let Some(pending) = &grant.pending_extension {
        println!(
            "extension by {} awaits {} approval(s) from {}: {}",
            pending.duration,
            pending.approvals_required,
            pending.approvers.join(", "),
            grant.id
        );
        print_grant(&grant);
    } else {
        let was = seen.expires_at.map_or("-".into(), |t| t.to_rfc3339());
        println!("extended: {} (expired at {was}, now at {})", grant.id, grant.expiry().to_rfc3339());
        print_grant(&grant);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn deny_request(sdk: &aws_config::SdkConfig, config: &Config, args: DenyArgs) -> anyhow::Result<ExitCode> {
    let id = grant_id(&args.id)?;
    let lifecycle = Lifecycle::from_config(sdk, config, Function::Revoke).context("configuration")?;
    let (seen, approver) = request_and_approver(&lifecycle, &id, &args.approver).await?;
    let grant = deny(&lifecycle.ctx(), &id, &approver, Some(&args.comment))
        .await
        .map_err(|e| decision_error(e, &seen, &approver, &args.approver))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&grant)?);
    } else {
        println!("denied: {}", grant.id);
        print_grant(&grant);
    }
    Ok(ExitCode::SUCCESS)
}

/// The request, and the principal of the approver `email` in its integration.
async fn request_and_approver(lifecycle: &Lifecycle, id: &str, email: &str) -> anyhow::Result<(Grant, Principal)> {
    let Some(grant) = lifecycle.store.get(id).await? else { bail!("no request {id}") };
    let user = directory_user(lifecycle, &grant.integration, email)
        .await?
        .with_context(|| unknown_user(email, Some(&grant.integration)))?;
    Ok((grant, principal_for(email, vec![user])?))
}

/// The approver `email` in every integration that knows them (or only `only`), for listing what
/// they may decide.
async fn approver_anywhere(lifecycle: &Lifecycle, email: &str, only: Option<&str>) -> anyhow::Result<Principal> {
    let integrations: Vec<String> = match only {
        Some(name) => vec![name.to_owned()],
        None => lifecycle.catalog.list().await?.integrations.into_iter().map(|i| i.name).collect(),
    };
    let mut users = Vec::new();
    for integration in &integrations {
        users.extend(directory_user(lifecycle, integration, email).await?);
    }
    if users.is_empty() {
        bail!("{}", unknown_user(email, only));
    }
    principal_for(email, users)
}

async fn directory_user(
    lifecycle: &Lifecycle,
    integration: &str,
    email: &str,
) -> anyhow::Result<Option<(String, DirectoryUser)>> {
    let user = lifecycle.directory_store.user_by_email(integration, &canonical_email(email)).await?;
    Ok(user.map(|u| (integration.to_owned(), u)))
}

fn unknown_user(email: &str, integration: Option<&str>) -> String {
    let where_ = match integration {
        Some(name) => format!("the synced directory of integration {name:?}"),
        None => "the synced directory of any integration".into(),
    };
    format!(
        "no user {email:?} in {where_}: not in JumpCloud at the last `jitctl sync`, or suspended (suspended users \
         are synced only with INCLUDE_SUSPENDED_USERS=true)"
    )
}

/// `cli:<operator> as <email>`, as the JumpCloud user(s) found: the domain decides as it would
/// for that approver signed in, and records this id as the actor. Suspended users decide nothing.
fn principal_for(email: &str, found: Vec<(String, DirectoryUser)>) -> anyhow::Result<Principal> {
    if found.iter().all(|(_, u)| u.state == UserState::Suspended) {
        bail!("{email} is suspended in JumpCloud: a suspended user cannot approve or deny requests");
    }
    let users = found
        .into_iter()
        .filter(|(_, u)| u.state != UserState::Suspended)
        .map(|(integration, u)| PrincipalUser { integration, id: u.id, email: canonical_email(&u.email) })
        .collect();
    Ok(Principal { id: format!("{} as {}", operator(), canonical_email(email)), admin: false, users })
}

/// A refused decision, said for the operator: the domain's verdict, with the request it read.
fn decision_error(e: RequestError, seen: &Grant, approver: &Principal, email: &str) -> anyhow::Error {
    let id = &seen.id;
    match e {
        RequestError::NotFound(_) => anyhow::anyhow!("no request {id}"),
        RequestError::NotPending(status) => anyhow::anyhow!(
            "request {id} is {}: only a request awaiting approval can be approved or denied",
            status.as_str()
        ),
        RequestError::Expired(at) => anyhow::anyhow!(
            "request {id} timed out at {} without enough approvals: it can no longer be decided",
            at.format("%Y-%m-%d %H:%M:%SZ")
        ),
        RequestError::Forbidden(reason) => {
            // The domain's reasons address the signed-in caller ("you"); here they name the approver.
            let me = approver.user_in(&seen.integration);
            let why = match me {
                Some(me) if me.id == seen.user.id => "the grantee of a request cannot approve or deny it".to_owned(),
                Some(me) if seen.requester.as_ref().is_some_and(|r| r.id == me.id) => {
                    "the requester of a request cannot approve or deny it".to_owned()
                }
                Some(me) if !seen.approvers.contains(&me.email) => {
                    format!("not one of its approvers ({})", seen.approvers.join(", "))
                }
                _ => reason,
            };
            anyhow::anyhow!("refused: {email} may not decide request {id}: {why}")
        }
        RequestError::InvalidComment(reason) => anyhow::anyhow!("--comment: {reason}"),
        RequestError::Contended => anyhow::anyhow!("request {id} kept changing while it was being decided; retry"),
        RequestError::Conflict(reason) => anyhow::anyhow!("request {id}: {reason}"),
        RequestError::Rejected(e) => anyhow::anyhow!("request {id}: refused: {e}"),
        RequestError::Activation(e) => anyhow::anyhow!(
            "the approval of request {id} could not activate the grant: {e} (see `jitctl grants show {id}`)"
        ),
        RequestError::Store(e) => anyhow::Error::new(e).context(format!("deciding request {id}")),
    }
}

/// id, status, user, group, duration, approvals n/m, approvers, expires (the approval timeout).
fn print_request_table(grants: &[Grant], now: DateTime<Utc>) {
    if grants.is_empty() {
        println!("no requests");
        return;
    }
    println!(
        "{:<36}  {:<16}  {:<28}  {:<24}  {:<8}  {:<9}  {:<20}  approvers",
        "id", "status", "user", "group", "duration", "approvals", "expires"
    );
    for g in grants {
        let mut expires = maybe_time(g.request_expires_at);
        if g.status == GrantStatus::PendingApproval && g.request_expires_at.is_some_and(|t| t <= now) {
            expires.push_str(" (timed out)");
        }
        let line = format!(
            "{:<36}  {:<16}  {:<28}  {:<24}  {:<8}  {:<9}  {:<20}  {}",
            g.id,
            g.status.as_str(),
            g.user.email,
            g.group.name,
            g.duration.to_string(),
            format!("{}/{}", g.approvals.len(), g.approvals_required),
            expires,
            g.approvers.join(", ")
        );
        println!("{}", shown(&line));
    }
}
