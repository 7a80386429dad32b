//! `jitctl policy validate|plan|apply|show`: the access policy as code.
//!
//! `validate FILE` checks a document (YAML or JSON, `policy/schema.json`) without touching AWS: the
//! same parser the functions use, so a document that validates here is one they accept. A refusal
//! names the line and the reason. `plan FILE` compares it with the applied version and the synced
//! directory (`domain/policy/plan.rs`); `apply FILE` plans, refuses a document whose approver groups
//! the directory does not know, stores it as the next version (conditioned on the version it
//! planned on) and publishes `Policy Changed`; `show` prints a version and its metadata.

use crate::grants::operator;
use anyhow::Context;
use clap::Subcommand;
use jit_shared::{
    adapters::dynamodb::DynamoStore,
    config::Config,
    domain::{
        model::{EventType, Grant, GrantEvent, GrantFilter, GrantStatus},
        policy::{
            document_sha256, parse_policy, plan, Approver, DirectoryView, Eligibility, GroupMatcher, Policy,
            PolicyPlan, Rule,
        },
    },
    ports::{AppliedPolicy, PolicyChange, PolicyStoreError},
    wiring::{Function, Lifecycle},
};
use serde_json::{json, Value};
use std::{path::PathBuf, process::ExitCode, sync::Arc};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy document: its syntax, every value, and the rules' consistency.
    Validate {
        file: PathBuf,
        /// Print the outcome (the rules as understood, or the error) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What applying a document would change: per requestable group, who gains or loses
    /// eligibility and how its rule changes; the active grants over the new limits; names the
    /// synced directory does not know.
    Plan {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Apply a document as the next version (planned first; refused if an approver group is
    /// unknown, or if another apply lands meanwhile). Publishes `Policy Changed`.
    Apply {
        file: PathBuf,
        /// Apply only if this is the applied version (0: none applied), as a plan showed it.
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// The applied document (or version N) and its metadata.
    Show {
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

impl PolicyCommand {
    /// Commands that need no configuration and no AWS.
    pub fn is_offline(&self) -> bool {
        matches!(self, Self::Validate { .. })
    }
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Validate { file, json } => validate(&file, json),
        _ => anyhow::bail!("this policy command needs the configuration"),
    }
}

/// `plan`, `apply` and `show`: the stores of the configured stack.
pub async fn run_with_stack(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    command: PolicyCommand,
) -> anyhow::Result<ExitCode> {
    let lifecycle = Lifecycle::from_config(sdk, config, Function::Revoke).context("configuration")?;
    let directory = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.table_name);
    let stack = Stack { lifecycle, directory };
    match command {
        PolicyCommand::Validate { file, json } => validate(&file, json),
        PolicyCommand::Plan { file, json } => stack.plan(&file, json).await,
        PolicyCommand::Apply { file, expect_version, json } => stack.apply(&file, expect_version, json).await,
        PolicyCommand::Show { version, json } => stack.show(version, json).await,
    }
}

struct Stack {
    lifecycle: Lifecycle,
    directory: DynamoStore,
}

/// A document read, parsed and planned against what is applied now.
struct Planned {
    document: String,
    policy: Policy,
    applied: Option<AppliedPolicy>,
    plan: PolicyPlan,
}

impl Planned {
    fn sha256(&self) -> String {
        document_sha256(&self.document)
    }
    /// The document is the applied one, byte for byte.
    fn unchanged(&self) -> bool {
        self.applied.as_ref().is_some_and(|a| a.sha256 == self.sha256())
    }
    fn json(&self, file: &std::path::Path) -> Value {
        json!({
            "file": file.display().to_string(),
            "sha256": self.sha256(),
            "applied": self.applied.as_ref().map(|a| json!({ "version": a.version, "sha256": a.sha256 })),
            "unchanged": self.unchanged(),
            "plan": self.plan,
        })
    }
}

impl Stack {
    /// Reads and parses the document (a refusal names the line: `None`, after saying so), then
    /// plans it against the applied version, every integration's synced directory and the active
    /// grants.
    async fn planned(&self, file: &std::path::Path, json_output: bool) -> anyhow::Result<Option<Planned>> {
        let document = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let policy = match parse_policy(&document) {
            Ok(policy) => policy,
            Err(e) => {
                if json_output {
                    let error = json!({ "valid": false, "line": e.line, "column": e.column, "reason": e.reason });
                    println!("{}", serde_json::to_string_pretty(&error)?);
                }
                eprintln!("{}: {e}", file.display());
                return Ok(None);
            }
        };
        let l = &self.lifecycle;
        let applied = l.policy_store.applied().await?;
        let mut views: Vec<DirectoryView> = vec![];
        for integration in l.catalog.list().await?.integrations {
            views.push(self.directory.directory_view(&integration.name).await?);
        }
        let grants = self.active_grants().await?;
        let plan = plan(&policy, applied.as_ref().map(|a| a.policy.as_ref()), &views, &grants);
        Ok(Some(Planned { document, policy, applied, plan }))
    }

    async fn active_grants(&self) -> anyhow::Result<Vec<Grant>> {
        let filter = GrantFilter { status: Some(GrantStatus::Active), ..GrantFilter::default() };
        let (mut grants, mut next) = (vec![], None);
        loop {
            let page = self.lifecycle.store.list(&filter, 100, next.as_deref()).await?;
            grants.extend(page.grants);
            next = page.next;
            if next.is_none() {
                return Ok(grants);
            }
        }
    }

    async fn plan(&self, file: &std::path::Path, json_output: bool) -> anyhow::Result<ExitCode> {
        let Some(planned) = self.planned(file, json_output).await? else { return Ok(ExitCode::FAILURE) };
        if json_output {
            println!("{}", serde_json::to_string_pretty(&planned.json(file))?);
        } else {
            print_plan(file, &planned);
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn apply(&self, file: &std::path::Path, expect: Option<u64>, json_output: bool) -> anyhow::Result<ExitCode> {
        let Some(planned) = self.planned(file, json_output).await? else { return Ok(ExitCode::FAILURE) };
        let applied_version = planned.applied.as_ref().map(|a| a.version);
        let refusal = if let Some(expected) = expect.filter(|e| applied_version.unwrap_or(0) != *e) {
            Some(format!(
                "the applied version is {}, not {expected}: plan again",
                applied_version.map_or_else(|| "none".to_owned(), |v| v.to_string())
            ))
        } else {
            let unknown = planned.plan.unknown_approver_groups();
            (!unknown.is_empty()).then(|| {
                let list: Vec<String> = unknown.iter().map(ToString::to_string).collect();
                format!("refused: nobody could approve these rules' requests: {}", list.join("; "))
            })
        };
        if let Some(refusal) = refusal {
            if json_output {
                let out = json!({ "applied": false, "error": refusal, "plan": planned.json(file) });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_plan(file, &planned);
            }
            eprintln!("{}: {refusal}", file.display());
            return Ok(ExitCode::FAILURE);
        }
        if planned.unchanged() {
            let version = applied_version.unwrap_or_default();
            if json_output {
                let out =
                    json!({ "applied": false, "unchanged": true, "version": version, "sha256": planned.sha256() });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{}: unchanged: it is the applied version {version}; nothing to apply", file.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        let l = &self.lifecycle;
        let change = PolicyChange {
            document: planned.document.clone(),
            policy: Arc::new(planned.policy.clone()),
            previous: applied_version,
            by: operator(),
            at: l.clock.now(),
        };
        let applied = match l.policy_store.apply(&change).await {
            Ok(applied) => applied,
            Err(e @ PolicyStoreError::Conflict { .. }) => {
                eprintln!("{}: {e}", file.display());
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e.into()),
        };
        let detail = json!({
            "version": applied.version,
            "previous": applied_version,
            "sha256": applied.sha256,
            "applied_by": applied.applied_by,
            "applied_at": applied.applied_at,
            "notify": [],
        });
        // Best effort: the change is stored and audited; a lost event is logged, not fatal.
        let event = GrantEvent { detail_type: EventType::PolicyChanged, detail: detail.clone() };
        if let Err(e) = l.events.publish(&[event]).await {
            tracing::warn!(error = %e, version = applied.version, "the Policy Changed event was not published");
        }
        if json_output {
            let mut out = detail;
            out["applied"] = json!(true);
            out["plan"] = serde_json::to_value(&planned.plan)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print_plan(file, &planned);
            println!(
                "\napplied {} as version {} (sha256 {}, previous {})",
                file.display(),
                applied.version,
                applied.sha256,
                applied_version.map_or_else(|| "none".to_owned(), |v| v.to_string())
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn show(&self, version: Option<u64>, json_output: bool) -> anyhow::Result<ExitCode> {
        let store = &self.lifecycle.policy_store;
        let found = match version {
            Some(v) => store.version(v).await?,
            None => store.applied().await?,
        };
        let Some(policy) = found else {
            match version {
                Some(v) => eprintln!("error: no policy version {v}"),
                None => eprintln!("error: no policy is applied (jitctl policy apply FILE)"),
            }
            return Ok(ExitCode::FAILURE);
        };
        if json_output {
            let out = json!({
                "version": policy.version,
                "sha256": policy.sha256,
                "applied_at": policy.applied_at,
                "applied_by": policy.applied_by,
                "document": policy.document,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("version     {}", policy.version);
            println!("sha256      {}", policy.sha256);
            println!("applied at  {}", policy.applied_at.format("%Y-%m-%d %H:%M:%SZ"));
            println!("applied by  {}", policy.applied_by);
            println!("---");
            print!("{}", policy.document);
            if !policy.document.ends_with('\n') {
                println!();
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_plan(file: &std::path::Path, planned: &Planned) {
    match &planned.applied {
        Some(a) => println!(
            "plan for {} against version {} (applied {} by {})",
            file.display(),
            a.version,
            a.applied_at.format("%Y-%m-%d %H:%M:%SZ"),
            a.applied_by
        ),
        None => println!("plan for {} against no applied policy (only admins can grant now)", file.display()),
    }
    if planned.unchanged() {
        println!("the document is the applied one: nothing changes");
    }
    let plan = &planned.plan;
    let rule = |r: Option<usize>| r.map_or_else(|| "none".to_owned(), |n| format!("rule {n}"));
    for group in &plan.groups {
        println!(
            "\ngroup {} ({}, {}): {} -> {}",
            group.group_name,
            group.integration,
            group.group_id,
            rule(group.rule_before),
            rule(group.rule_after)
        );
        for change in group.changes.iter().filter(|c| c.field != "rule") {
            println!("  {}: {} -> {}", change.field, change.before, change.after);
        }
        if !group.gains.is_empty() {
            println!("  gain eligibility ({}): {}", group.gains.len(), group.gains.join(", "));
        }
        if !group.loses.is_empty() {
            println!("  lose eligibility ({}): {}", group.loses.len(), group.loses.join(", "));
        }
    }
    println!("\n{} requestable group(s) change, {} unchanged", plan.groups.len(), plan.unchanged_groups);
    if !plan.over_limit.is_empty() {
        println!("\nactive grants the new policy would not allow (they run until they end):");
        for g in &plan.over_limit {
            println!(
                "  {} {} in {} ({}, {}, until {}): {}",
                g.grant_id,
                g.user,
                g.group,
                g.integration,
                g.duration,
                g.expires_at.format("%Y-%m-%d %H:%M:%SZ"),
                g.reasons.join("; ")
            );
        }
    }
    if !plan.warnings.is_empty() {
        println!("\nwarnings:");
        for w in &plan.warnings {
            println!("  {w}");
        }
    }
}

fn validate(file: &PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match parse_policy(&text) {
        Ok(policy) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({ "valid": true, "policy": describe(&policy) }))?);
            } else {
                println!("{}: valid (version {}, {} rules)", file.display(), policy.version, policy.rules.len());
                for rule in &policy.rules {
                    println!("  {}", summary(rule));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                let error = json!({ "valid": false, "line": e.line, "column": e.column, "reason": e.reason });
                println!("{}", serde_json::to_string_pretty(&error)?);
            } else {
                eprintln!("{}: {e}", file.display());
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn groups(rule: &Rule) -> Vec<String> {
    rule.groups.iter().map(GroupMatcher::to_string).collect()
}

fn eligible(rule: &Rule) -> Value {
    match &rule.eligible {
        Eligibility::Everyone => json!("everyone"),
        Eligibility::Nobody => json!("nobody"),
        Eligibility::Members { groups, users } => json!({ "groups": groups, "users": users }),
    }
}

fn approvers(rule: &Rule) -> Vec<String> {
    rule.approval.approvers.iter().map(Approver::to_string).collect()
}

fn summary(rule: &Rule) -> String {
    let eligible = match &rule.eligible {
        Eligibility::Everyone => "everyone".to_owned(),
        Eligibility::Nobody => "nobody".to_owned(),
        Eligibility::Members { groups, users } => {
            format!("members of [{}], users [{}]", groups.join(", "), users.join(", "))
        }
    };
    let auto = rule.approval.auto_approve_up_to.map(|d| format!(", auto-approved up to {d}")).unwrap_or_default();
    format!(
        "rule {} [{}]: eligible {eligible}; up to {}; {} of [{}]{auto}{}{}{}",
        rule.number(),
        groups(rule).join(", "),
        rule.max_duration,
        rule.approval.required,
        approvers(rule).join(", "),
        if rule.break_glass { "; break glass" } else { "" },
        rule.ticket.as_ref().map(|t| format!("; ticket {:?}", t.as_str())).unwrap_or_default(),
        rule.slack_channel.as_ref().map(|c| format!("; Slack {c}")).unwrap_or_default(),
    )
}

fn describe(policy: &Policy) -> Value {
    let rules: Vec<Value> = policy
        .rules
        .iter()
        .map(|rule| {
            json!({
                "rule": rule.number(),
                "groups": groups(rule),
                "eligible": eligible(rule),
                "max_duration": rule.max_duration.to_string(),
                "approval": {
                    "approvers": approvers(rule),
                    "required": rule.approval.required,
                    "auto_approve_up_to": rule.approval.auto_approve_up_to.map(|d| d.to_string()),
                    "timeout": rule.approval.timeout.to_string(),
                },
                "ticket": rule.ticket.as_ref().map(|t| t.as_str()),
                "break_glass": rule.break_glass,
                "remind_before": rule.remind_before.map(|d| d.to_string()),
                "extend": { "max_total": rule.extend_max_total.to_string() },
                "slack_channel": rule.slack_channel,
            })
        })
        .collect();
    json!({ "version": policy.version, "rules": rules })
}
