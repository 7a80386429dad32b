//! `jitctl grant`, `revoke`, `grants list|show` and `audit`: the grant lifecycle from the
//! terminal, through the same domain code and stores as the functions. The operator's OS user is
//! recorded as the actor (`cli:<user>`); AWS credentials decide what the command may touch.

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use jit_shared::{
    config::Config,
    domain::model::GrantDuration,
    domain::model::{
        ApprovalMode, AuditRecord, EndReason, Grant, GrantStatus, IdempotencyKey, InvalidField, MembershipEnd, Name,
    },
    domain::{
        grant::{request_grant, GrantRequest},
        query::{resolve_filter, GrantQuery},
        revoke::revoke_grant,
    },
    wiring::{Function, Lifecycle},
};
use std::process::ExitCode;

// Each argument is parsed into the type the domain takes, by the same rule as the HTTP API's.
fn user_name(value: &str) -> Result<Name, InvalidField> {
    Name::parse("user", value)
}
fn group_name(value: &str) -> Result<Name, InvalidField> {
    Name::parse("group", value)
}
pub(crate) fn integration_name(value: &str) -> Result<Name, InvalidField> {
    Name::parse("integration", value)
}

#[derive(Args)]
pub struct GrantArgs {
    /// Email, username or JumpCloud id.
    #[arg(long, value_parser = user_name)]
    user: Name,
    /// Group name or JumpCloud id.
    #[arg(long, value_parser = group_name)]
    group: Name,
    /// How long: `90m`, `2h`, `1h30m`, `PT2H`.
    #[arg(long)]
    duration: GrantDuration,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    reason: String,
    /// The integration (required when there are several).
    #[arg(long, value_parser = integration_name)]
    integration: Option<Name>,
    /// Makes a retried command return the first one's grant instead of making another.
    #[arg(long, value_parser = IdempotencyKey::parse)]
    idempotency_key: Option<IdempotencyKey>,
    /// Print the grant as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The grant's id (or the id of a request awaiting approval: it ends `cancelled`).
    id: String,
    /// Print the grant as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum GrantsCommand {
    /// Grants, newest first.
    List(ListArgs),
    /// One grant and its audit trail.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ListArgs {
    /// pending_approval, pending, active, expired, revoked, failed, denied, cancelled or request_expired.
    #[arg(long)]
    status: Option<GrantStatus>,
    /// Email, username or JumpCloud id.
    #[arg(long, value_parser = user_name)]
    user: Option<Name>,
    /// Group name or JumpCloud id.
    #[arg(long, value_parser = group_name)]
    group: Option<Name>,
    #[arg(long, value_parser = integration_name)]
    integration: Option<Name>,
    /// Grants per page (1 to 100).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u16).range(1..=100))]
    limit: u16,
    /// Continue a listing: the page token a previous page printed.
    #[arg(long, conflicts_with = "all")]
    next: Option<String>,
    /// Every page, not only the first.
    #[arg(long)]
    all: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["grant", "since"]))]
pub struct AuditArgs {
    /// The trail of one grant.
    #[arg(long)]
    grant: Option<String>,
    /// Records from this time on: RFC 3339 (`2026-11-23T08:00:00Z`) or a duration back from now (`24h`).
    #[arg(long)]
    since: Option<String>,
    /// Records before this time (RFC 3339 or a duration back from now); default: now.
    #[arg(long, requires = "since")]
    until: Option<String>,
    #[arg(long)]
    json: bool,
}

/// The actor recorded for commands run here: `JITCTL_OPERATOR` when set (automation names
/// itself), else the OS user (`USER`, `LOGNAME`, then `id -un`).
pub fn operator() -> String {
    let from_env = ["JITCTL_OPERATOR", "USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok());
    let user = from_env
        .or_else(|| {
            let out = std::process::Command::new("id").arg("-un").output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .map(|u| u.trim().chars().filter(|c| !c.is_control()).take(64).collect::<String>())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}")
}

pub(crate) fn lifecycle(sdk: &aws_config::SdkConfig, config: &Config, function: Function) -> anyhow::Result<Lifecycle> {
    Lifecycle::from_config(sdk, config, function).context("configuration")
}

pub async fn grant(sdk: &aws_config::SdkConfig, config: &Config, args: GrantArgs) -> anyhow::Result<ExitCode> {
    let lifecycle = lifecycle(sdk, config, Function::Grant)?;
    let request = GrantRequest {
        user: Some(args.user),
        group: args.group,
        duration: args.duration,
        reason: args.reason,
        integration: args.integration,
        requested_by: operator(),
        caller_users: vec![],
        // The operator acts with the AWS credentials that can change the table: an admin.
        caller_admin: true,
        break_glass: false,
        idempotency_key: args.idempotency_key,
    };
    let outcome = request_grant(&lifecycle.ctx(), request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.grant)?);
    } else {
        let verb = if outcome.replayed { "already granted (same idempotency key)" } else { "granted" };
        println!("{verb}: {}", outcome.grant.id);
        print_grant(&outcome.grant);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(sdk: &aws_config::SdkConfig, config: &Config, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let id = grant_id(&args.id)?;
    let lifecycle = lifecycle(sdk, config, Function::Revoke)?;
    let outcome = revoke_grant(&lifecycle.ctx(), &id, &operator(), EndReason::Revoked).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.grant)?);
    } else {
        match (outcome.changed, outcome.membership) {
            (true, _) if outcome.grant.status == GrantStatus::Cancelled => {
                println!("cancelled: {} (the request awaited approval)", outcome.grant.id)
            }
            (true, Some(membership)) => println!("revoked: {} ({})", outcome.grant.id, membership_end(membership)),
            (true, None) => println!("revoked: {}", outcome.grant.id),
            (false, _) => println!("already ended: {} ({})", outcome.grant.id, outcome.grant.status.as_str()),
        }
        print_grant(&outcome.grant);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn grants(sdk: &aws_config::SdkConfig, config: &Config, command: GrantsCommand) -> anyhow::Result<ExitCode> {
    let lifecycle = lifecycle(sdk, config, Function::Revoke)?;
    match command {
        GrantsCommand::Show { id, json } => {
            let id = grant_id(&id)?;
            let Some(grant) = lifecycle.store.get(&id).await? else { bail!("no grant {id}") };
            let trail = lifecycle.store.audit_for(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "grant": grant, "audit": trail }))?);
            } else {
                print_grant(&grant);
                println!("\naudit trail:");
                print_audit(&trail);
            }
        }
        GrantsCommand::List(args) => {
            let query =
                GrantQuery { status: args.status, user: args.user, group: args.group, integration: args.integration };
            let filter = resolve_filter(lifecycle.catalog.as_ref(), lifecycle.directories.as_ref(), &query).await?;
            let mut next = args.next;
            let mut grants = Vec::new();
            loop {
                let page = lifecycle.store.list(&filter, usize::from(args.limit), next.as_deref()).await?;
                grants.extend(page.grants);
                next = page.next;
                if !args.all || next.is_none() {
                    break;
                }
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "grants": grants, "next": next }))?);
            } else {
                print_grant_table(&grants);
                if let Some(next) = next {
                    println!("more: --next {next}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(sdk: &aws_config::SdkConfig, config: &Config, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let lifecycle = lifecycle(sdk, config, Function::Revoke)?;
    let now = lifecycle.clock.now();
    let records = match (args.grant, args.since) {
        (Some(id), _) => lifecycle.store.audit_for(&grant_id(&id)?).await?,
        (None, Some(since)) => {
            let from = instant("--since", &since, now)?;
            let to = args.until.as_deref().map(|u| instant("--until", u, now)).transpose()?.unwrap_or(now);
            if from >= to {
                bail!("--since ({from}) must be before --until ({to})");
            }
            jit_shared::domain::audit::records_between(lifecycle.store.as_ref(), from, to).await?
        }
        (None, None) => unreachable!("clap requires --grant or --since"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print_audit(&records);
    }
    Ok(ExitCode::SUCCESS)
}

/// Grant ids are UUIDs: anything else is a typo, said before any AWS call.
pub(crate) fn grant_id(id: &str) -> anyhow::Result<String> {
    uuid::Uuid::parse_str(id.trim())
        .map(|u| u.to_string())
        .map_err(|_| anyhow::anyhow!("{id:?} is not a grant id (a UUID)"))
}

/// An RFC 3339 time, or a duration back from `now`.
pub(crate) fn instant(flag: &str, value: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    match value.parse::<GrantDuration>() {
        Ok(back) => Ok(now - back.to_chrono()),
        Err(_) => bail!("{flag} {value:?} is neither an RFC 3339 time nor a duration like 24h"),
    }
}

fn membership_end(end: MembershipEnd) -> &'static str {
    match end {
        MembershipEnd::Removed => "membership removed",
        MembershipEnd::AlreadyRemoved => "membership was already gone",
        MembershipEnd::KeptPreexisting => "membership kept: it pre-existed the grant",
        MembershipEnd::KeptForOtherGrants => "membership kept: other grants hold it",
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// A time that may not be set yet (a request awaiting approval has no activation or expiry).
pub(crate) fn maybe_time(at: Option<DateTime<Utc>>) -> String {
    at.map(time).unwrap_or_else(|| "-".into())
}

pub(crate) fn print_grant(grant: &Grant) {
    let mut rows = vec![
        ("id", grant.id.clone()),
        ("status", grant.status.as_str().to_owned()),
        ("integration", grant.integration.clone()),
        ("user", format!("{} ({})", grant.user.email, grant.user.id)),
        ("group", format!("{} ({})", grant.group.name, grant.group.id)),
        ("duration", grant.duration.to_string()),
        ("requested at", time(grant.requested_at)),
        ("granted at", maybe_time(grant.granted_at)),
        ("expires at", maybe_time(grant.expires_at)),
        ("ended at", maybe_time(grant.ended_at)),
        ("requested by", grant.requested_by.clone()),
    ];
    if let Some(requester) = &grant.requester {
        rows.push(("requester", format!("{} ({})", requester.email, requester.id)));
    }
    rows.push(("reason", grant.reason.clone()));
    rows.push(("allowed by", allowed_by(grant)));
    // A request (pending, decided or ended): what it needed, and who decided it.
    if grant.approval == ApprovalMode::Approvers {
        rows.push(("approvals", format!("{} of {}", grant.approvals.len(), grant.approvals_required)));
        rows.push(("approvers", grant.approvers.join(", ")));
        rows.push(("request until", maybe_time(grant.request_expires_at)));
        for a in &grant.approvals {
            let comment = a.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
            rows.push(("approved", format!("{} by {}{comment}", time(a.at), a.by)));
        }
    }
    if let Some(by) = &grant.decided_by {
        let verb = if grant.status == GrantStatus::Cancelled { "cancelled by" } else { "denied by" };
        rows.push((verb, by.clone()));
    }
    let preexisting = if grant.preexisting_membership { "yes: the membership stays" } else { "no" };
    rows.push(("pre-existing", preexisting.to_owned()));
    for (name, value) in rows {
        println!("  {name:<13} {}", shown(&value));
    }
    if grant.membership_missing {
        println!("  {:<13} the membership was removed outside this product", "note");
    }
}

/// How the grant came to be allowed, and by which policy rule.
fn allowed_by(grant: &Grant) -> String {
    let how = match grant.approval {
        ApprovalMode::Admin => "an admin",
        ApprovalMode::AutoApproved => "auto-approval",
        ApprovalMode::BreakGlass => "break glass",
        ApprovalMode::Approvers => "approvers",
    };
    match grant.policy {
        Some(p) => format!("{how} (policy version {}, rule {})", p.version, p.rule + 1),
        None => how.to_owned(),
    }
}

fn print_grant_table(grants: &[Grant]) {
    if grants.is_empty() {
        println!("no grants");
        return;
    }
    println!(
        "{:<36}  {:<16}  {:<28}  {:<24}  {:<20}  {:<20}  {:<20}  {:<9}  requested by",
        "id", "status", "user", "group", "requested", "granted", "expires", "approvals"
    );
    for g in grants {
        // A request awaiting approval ends at its approval timeout, if no one decides it.
        let expires = match (g.expires_at, g.status) {
            (None, GrantStatus::PendingApproval) => {
                g.request_expires_at.map(|t| format!("{} (request)", time(t))).unwrap_or_else(|| "-".into())
            }
            (at, _) => maybe_time(at),
        };
        let approvals = if g.approval == ApprovalMode::Approvers {
            format!("{}/{}", g.approvals.len(), g.approvals_required)
        } else {
            "-".into()
        };
        let line = format!(
            "{:<36}  {:<16}  {:<28}  {:<24}  {:<20}  {:<20}  {:<20}  {:<9}  {}",
            g.id,
            g.status.as_str(),
            g.user.email,
            g.group.name,
            time(g.requested_at),
            maybe_time(g.granted_at),
            expires,
            approvals,
            g.requested_by
        );
        println!("{}", shown(&line));
    }
}

fn print_audit(records: &[AuditRecord]) {
    if records.is_empty() {
        println!("no audit records");
        return;
    }
    for r in records {
        let action =
            serde_json::to_value(r.action).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let outcome =
            serde_json::to_value(r.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let mut line = format!("{}  {:<36}  {:<20} {:<9}  by {}", time(r.at), r.grant_id, action, outcome, r.actor);
        if let Some(reason) = &r.reason {
            line.push_str(&format!("  reason: {reason}"));
        }
        if let Some(detail) = &r.detail {
            line.push_str(&format!("  ({detail})"));
        }
        println!("{}", shown(&line));
    }
}

/// Text from the store as a terminal may safely show it: control and bidirectional-formatting
/// characters (which could rewrite the line, or make it read otherwise than it is) escaped.
pub(crate) fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || jit_shared::domain::model::is_unsafe_text_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn stored_text_cannot_rewrite_the_terminal() {
        assert_eq!(shown("INC-1 restore"), "INC-1 restore");
        assert_eq!(shown("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(shown("ok \u{202E}deined"), "ok \\u{202e}deined");
        assert_eq!(shown("two\nlines"), "two\\u{a}lines");
    }
}
