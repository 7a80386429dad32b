//! `jitctl policy validate FILE`: checks a policy document (YAML or JSON, `policy/schema.json`)
//! without touching AWS: the same parser the functions use, so a document that validates here is
//! one they accept. A refusal names the line and the reason.

use anyhow::Context;
use clap::Subcommand;
use jit_shared::domain::policy::{parse_policy, Approver, Eligibility, GroupMatcher, Policy, Rule};
use serde_json::{json, Value};
use std::{path::PathBuf, process::ExitCode};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy document: its syntax, every value, and the rules' consistency.
    Validate {
        file: PathBuf,
        /// Print the outcome (the rules as understood, or the error) as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Validate { file, json } => validate(&file, json),
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
        "rule {} [{}]: eligible {eligible}; up to {}; {} of [{}]{auto}{}{}",
        rule.number(),
        groups(rule).join(", "),
        rule.max_duration,
        rule.approval.required,
        approvers(rule).join(", "),
        if rule.break_glass { "; break glass" } else { "" },
        rule.ticket.as_ref().map(|t| format!("; ticket {:?}", t.as_str())).unwrap_or_default(),
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
            })
        })
        .collect();
    json!({ "version": policy.version, "rules": rules })
}
