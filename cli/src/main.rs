//! `jitctl`: the operator's command line. `setup` creates the resources (locally or in AWS),
//! `sync` runs a sync from the terminal with progress, `grant`, `revoke`, `grants` and `audit`
//! work the grant lifecycle, `requests`, `approve` and `deny` the requests awaiting approval,
//! `policy validate|plan|apply|show` the access policy. Configuration
//! comes from the same environment variables as the functions (`policy validate` needs none).

mod audit;
mod grants;
mod policy;
mod progress;
mod requests;
mod schedule_runner;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use jit_shared::{
    adapters::aws,
    adapters::dynamodb::DynamoStore,
    adapters::setup::{self, LocalSecret},
    config::Config,
    domain::{
        reconcile::ReconcileReport,
        sync::{sync_all, IntegrationOutcome, SyncContext, SyncError},
    },
    telemetry,
    wiring::{Function, Lifecycle},
};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "jitctl", version, about = "Just-in-time JumpCloud group access: operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the table, schedule group and event bus (idempotent); optionally a tagged secret.
    Setup {
        /// Also create (or update) a tagged integration secret with this integration name. The
        /// JumpCloud API key is read from the environment variable JUMPCLOUD_API_KEY, never from
        /// the command line.
        #[arg(long, value_name = "NAME")]
        integration: Option<String>,
        /// `x-org-id` for the integration (multi-tenant admins).
        #[arg(long, requires = "integration")]
        org_id: Option<String>,
    },
    /// Sync every integration (or one) from JumpCloud into DynamoDB, with progress.
    Sync {
        #[arg(long)]
        integration: Option<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Grant a user temporary membership of a group (checked live in JumpCloud).
    Grant(grants::GrantArgs),
    /// End a grant now (its membership is removed unless it pre-existed or another grant holds it);
    /// on a request awaiting approval, cancel it (it ends `cancelled`).
    Revoke(grants::RevokeArgs),
    /// List grants or show one.
    #[command(subcommand)]
    Grants(grants::GrantsCommand),
    /// Requests awaiting approval, newest first (`--all`: also those that ended unapproved).
    Requests(requests::RequestsArgs),
    /// Record an approver's approval of a request; the last one needed activates the grant.
    Approve(requests::ApproveArgs),
    /// Record an approver's denial of a request, with a comment: it ends `denied`.
    Deny(requests::DenyArgs),
    /// Extend an active grant: as an admin (the operator), or `--as` its grantee under the policy.
    Extend(requests::ExtendArgs),
    /// The audit trail: of one grant, or of a time range; `audit verify` proves it whole,
    /// `audit seal` seals the finished days.
    Audit(audit::AuditCommand),
    /// Access policy documents (policy as code).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Local stack only: deliver due expiry schedules (moto never fires them) and the sweep to the
    /// functions served by `cargo lambda watch`.
    RunSchedules(schedule_runner::RunSchedulesArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_terminal();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Checking a document needs no configuration and no AWS.
    let command = match cli.command {
        Command::Policy(command) if command.is_offline() => return policy::run(command),
        other => other,
    };
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    match command {
        Command::Setup { integration, org_id } => {
            let local_secret = match integration {
                None => None,
                Some(name) => {
                    let token = std::env::var("JUMPCLOUD_API_KEY").ok().filter(|t| !t.trim().is_empty()).context(
                        "--integration needs the JumpCloud API key in the environment variable JUMPCLOUD_API_KEY",
                    )?;
                    let value = serde_json::json!({ "token": token, "org_id": org_id, "name": name });
                    Some(LocalSecret { secret_name: format!("jit-access/{name}"), value: value.to_string() })
                }
            };
            for step in setup::ensure_all(&sdk, &config, local_secret.as_ref()).await? {
                println!("{:<50} {}", step.resource, step.outcome);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { integration, json } => sync(&sdk, &config, integration.as_deref(), json).await,
        Command::Grant(args) => grants::grant(&sdk, &config, args).await,
        Command::Revoke(args) => grants::revoke(&sdk, &config, args).await,
        Command::Grants(command) => grants::grants(&sdk, &config, command).await,
        Command::Requests(args) => requests::requests(&sdk, &config, args).await,
        Command::Approve(args) => requests::approve_request(&sdk, &config, args).await,
        Command::Deny(args) => requests::deny_request(&sdk, &config, args).await,
        Command::Extend(args) => requests::extend_grant(&sdk, &config, args).await,
        Command::Audit(command) => audit::run(&sdk, &config, command).await,
        Command::RunSchedules(args) => schedule_runner::run(&sdk, &config, args).await,
        Command::Policy(command) => policy::run_with_stack(&sdk, &config, command).await,
    }
}

async fn sync(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // The same ports as the sync function: the directory sync, then reconciliation of grants.
    let lifecycle = Lifecycle::from_config(sdk, config, Function::Revoke)?;
    let grants = lifecycle.ctx();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.table_name);
    let bars = progress::Bars::new();
    let ctx = SyncContext {
        store: &store,
        policy: &config.directory,
        clock: lifecycle.clock.as_ref(),
        progress: &bars,
        grants: Some(&grants),
        fanout: None,
    };
    let summary = match sync_all(&ctx, lifecycle.catalog.as_ref(), lifecycle.directories.as_ref(), only).await {
        Ok(summary) => summary,
        Err(SyncError::UnknownIntegration(name)) => bail!(
            "unknown integration {name:?} (no secret tagged {}={} names it)",
            config.secret_tag_key,
            config.secret_tag_value
        ),
        Err(e) => return Err(e.into()),
    };
    bars.finish();
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if summary.integrations.is_empty() {
        println!("no integrations: no secret is tagged {}={}", config.secret_tag_key, config.secret_tag_value);
    } else {
        println!(
            "{:<24} {:>9} {:>8} {:>8} {:>12} {:>8} {:>8} {:>9}",
            "integration", "status", "users", "groups", "memberships", "written", "deleted", "seconds"
        );
        for outcome in &summary.integrations {
            match outcome {
                IntegrationOutcome::Succeeded(r) => println!(
                    "{:<24} {:>9} {:>8} {:>8} {:>12} {:>8} {:>8} {:>9.2}",
                    r.integration,
                    "ok",
                    r.users,
                    r.groups,
                    r.memberships,
                    r.written,
                    r.deleted,
                    r.duration.as_secs_f64()
                ),
                IntegrationOutcome::Failed { integration, error } => {
                    println!("{integration:<24} {:>9}  {error}", "FAILED")
                }
                IntegrationOutcome::Running { integration, started_at } => println!(
                    "{integration:<24} {:>9}  another sync is running since {}: not started",
                    "RUNNING",
                    started_at.to_rfc3339()
                ),
                IntegrationOutcome::FannedOut(run) => println!(
                    "{:<24} {:>9} {:>8} {:>8}  run {}: {} users parts, then {} members parts, on the queue",
                    run.integration, "QUEUED", run.users, run.groups, run.run_id, run.user_parts, run.member_parts
                ),
            }
        }
        for outcome in &summary.integrations {
            if let IntegrationOutcome::Succeeded(r) = outcome {
                if let Some(reconciliation) = &r.reconciliation {
                    print_reconciliation(&r.integration, reconciliation);
                }
            }
        }
    }
    // A sync already running is not a failure: it does the work.
    let all_ok = summary.integrations.iter().all(|o| o.is_success() || o.is_running());
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What reconciliation changed or found; nothing when all grants matched JumpCloud.
fn print_reconciliation(integration: &str, report: &ReconcileReport) {
    for (grant, group, user) in &report.removed {
        println!("{integration}: removed user {user} from group {group}: the membership outlived grant {grant}");
    }
    for (grant, group, user) in &report.readded {
        println!(
            "{integration}: user {user} is in group {group} again after grant {grant} removed it: restored outside \
             this product, left alone"
        );
    }
    for grant in &report.missing {
        println!("{integration}: grant {grant} is active but its membership was removed outside this product");
    }
    for failure in &report.failures {
        println!("{integration}: reconciliation failed (the next sync retries): {failure}");
    }
}
