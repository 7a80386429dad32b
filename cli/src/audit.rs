//! `jitctl audit`: the trail (of a grant, or of a time range; `grants.rs`), `audit verify`, which
//! proves nothing in it was removed or altered (each grant's hash chain, the daily seals), and
//! `audit seal`, which seals the days not sealed yet (the scheduled sync does it too).

use crate::grants::{self, grant_id, instant, lifecycle, AuditArgs};
use anyhow::bail;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jit_shared::{
    config::Config,
    domain::audit::{seal_days, verify, verify_anchors, AuditScope, AuditVerification, SealAnchor},
    wiring::Function,
};
use std::process::ExitCode;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditCommand {
    #[command(subcommand)]
    action: Option<AuditAction>,
    #[command(flatten)]
    show: AuditArgs,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Prove that no audit record was removed or altered: every grant's hash chain against its
    /// head, and the daily seals against the days' records. Exit 1 if anything is broken.
    Verify(VerifyArgs),
    /// Seal every finished day not sealed yet (the scheduled sync does this after each run).
    Seal,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("scope").multiple(false).args(["grant", "since"]))]
struct VerifyArgs {
    /// Grants with records from this time on (RFC 3339 or a duration back, `7d`), and the seals of
    /// those days. Default: every grant and every seal.
    #[arg(long)]
    since: Option<String>,
    /// One grant's chain.
    #[arg(long)]
    grant: Option<String>,
    /// Seals kept outside the table, one JSON line each: `Audit Day Sealed` events (as a rule
    /// delivers them, or their `detail`) or the `audit_day_sealed` log lines. Each day's stored
    /// seal must be the one its copy names: a rewrite of the table and its seals fails here.
    #[arg(long, value_name = "FILE")]
    anchors: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

pub async fn run(sdk: &aws_config::SdkConfig, config: &Config, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command.action {
        None => grants::audit(sdk, config, command.show).await,
        Some(AuditAction::Seal) => {
            let lifecycle = lifecycle(sdk, config, Function::Revoke)?;
            let sealed = seal_days(lifecycle.store.as_ref(), lifecycle.events.as_ref(), lifecycle.clock.now()).await?;
            if sealed.is_empty() {
                println!("nothing to seal: every finished day is sealed");
            }
            for seal in sealed {
                println!("sealed {}: {} records, digest {}, hash {}", seal.day, seal.records, seal.digest, seal.hash());
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(AuditAction::Verify(args)) => verify_command(sdk, config, args).await,
    }
}

async fn verify_command(sdk: &aws_config::SdkConfig, config: &Config, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let anchors = match &args.anchors {
        Some(path) => read_anchors(path)?,
        None => Vec::new(),
    };
    let lifecycle = lifecycle(sdk, config, Function::Revoke)?;
    let now = lifecycle.clock.now();
    let scope = match (args.grant, args.since) {
        (Some(id), _) => AuditScope::Grant(grant_id(&id)?),
        (None, Some(since)) => {
            let from = instant("--since", &since, now)?;
            if from > now {
                bail!("--since ({from}) is in the future");
            }
            AuditScope::Since(from)
        }
        (None, None) => AuditScope::All,
    };
    // Drawn on a terminal only (indicatif hides it otherwise), so --json output stays clean.
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} verifying chains: {pos} grants ({msg})").expect("valid template"),
    );
    let mut report = verify(lifecycle.store.as_ref(), &scope, now, &mut |grant| {
        bar.inc(1);
        bar.set_message(grant.to_owned());
    })
    .await?;
    verify_anchors(lifecycle.store.as_ref(), &anchors, &mut report).await?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&report))?);
    } else {
        print_report(&report);
    }
    Ok(if report.intact() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The seals' copies in `path`, one JSON line each (blank lines skipped).
fn read_anchors(path: &std::path::Path) -> anyhow::Result<Vec<SealAnchor>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut anchors = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match SealAnchor::parse(line) {
            Ok(anchor) => anchors.push(anchor),
            Err(e) => bail!("{}, line {}: {e}", path.display(), n + 1),
        }
    }
    if anchors.is_empty() {
        bail!("{}: no seal copies in it", path.display());
    }
    Ok(anchors)
}

fn as_json(report: &AuditVerification) -> serde_json::Value {
    serde_json::json!({
        "intact": report.intact(),
        "grants": report.grants,
        "records": report.records,
        "unchained_records": report.unchained,
        "seals": report.seals,
        "anchors": report.anchors,
        "unsealed_days": report.unsealed_days,
        "breaks": report.chain_breaks.iter().map(|(grant, b)| serde_json::json!({"grant_id": grant, "problem": b.to_string()}))
            .chain(report.seal_breaks.iter().map(|b| serde_json::json!({"problem": b.to_string()})))
            .collect::<Vec<_>>(),
    })
}

/// `1 grant`, `2 grants`.
fn count(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

fn print_report(report: &AuditVerification) {
    println!(
        "checked {} ({}) and {}",
        count(report.grants, "grant"),
        count(report.records, "record"),
        count(report.seals, "sealed day")
    );
    if report.anchors > 0 {
        println!("compared {} with their copies kept outside the table", count(report.anchors, "seal"));
    }
    if report.unchained > 0 {
        println!("{} records were written before audit chains existed: not verifiable", report.unchained);
    }
    if !report.unsealed_days.is_empty() {
        let days: Vec<String> = report.unsealed_days.iter().map(ToString::to_string).collect();
        println!("not sealed yet: {}", days.join(", "));
    }
    for (grant, problem) in &report.chain_breaks {
        println!("BROKEN grant {grant}: {problem}");
    }
    for problem in &report.seal_breaks {
        println!("BROKEN seal {problem}");
    }
    if report.intact() {
        println!("intact: no record removed or altered");
    } else {
        println!(
            "the audit trail was tampered with: {} problems",
            report.chain_breaks.len() + report.seal_breaks.len()
        );
    }
}
