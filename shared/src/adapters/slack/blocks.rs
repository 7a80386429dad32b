//! The approval message in Block Kit (<https://docs.slack.dev/reference/block-kit/blocks>): what
//! is asked, where the request stands, and, while it awaits approval, a comment box and the
//! Approve / Deny buttons. One rendering of the grant's state, used to post the message and to
//! update it at every step (an approval, the activation, a denial, the end).
//!
//! Text from requests (reason, names) is escaped as Slack asks for `mrkdwn` (`&`, `<`, `>`), so a
//! reason cannot mention `@channel` or forge a link.

use crate::domain::model::{Grant, GrantStatus};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// `action_id` of the Approve button (its `value` is the grant id).
pub const APPROVE: &str = "approve";
/// `action_id` of the Deny button (its `value` is the grant id).
pub const DENY: &str = "deny";
/// `block_id` and `action_id` of the comment box, read from the interaction's `state.values`.
pub const COMMENT: &str = "comment";
const DECISION: &str = "decision";

/// Escapes `&`, `<` and `>`, as Slack's "Formatting text" asks of text shown as `mrkdwn`.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A time as Slack shows it in the reader's own time zone, with a UTC fallback.
fn when(at: DateTime<Utc>) -> String {
    format!("<!date^{}^{{date_short_pretty}} {{time}}|{}>", at.timestamp(), at.format("%Y-%m-%d %H:%M UTC"))
}

fn approved_by(grant: &Grant) -> String {
    grant.approvals.iter().map(|a| escape(&a.by)).collect::<Vec<_>>().join(", ")
}

/// Where the request stands, in one line.
pub fn status_line(grant: &Grant) -> String {
    let ended = grant.ended_at.map(when).unwrap_or_default();
    match grant.status {
        GrantStatus::PendingApproval => {
            let so_far = if grant.approvals.is_empty() {
                String::new()
            } else {
                format!(" (approved by {})", approved_by(grant))
            };
            let until = grant.request_expires_at.map(|t| format!(" · open until {}", when(t))).unwrap_or_default();
            format!(
                ":hourglass_flowing_sand: Awaiting approval: {} of {}{so_far}{until}",
                grant.approvals.len(),
                grant.approvals_required
            )
        }
        GrantStatus::Pending => format!(":white_check_mark: Approved by {}: activating", approved_by(grant)),
        GrantStatus::Active => {
            let until = grant.expires_at.map(|t| format!(" · active until {}", when(t))).unwrap_or_default();
            format!(":white_check_mark: Approved by {}{until}", approved_by(grant))
        }
        GrantStatus::Expired => format!(":checkered_flag: Approved by {} · access expired {ended}", approved_by(grant)),
        GrantStatus::Revoked => format!(":no_entry: Approved by {} · access revoked {ended}", approved_by(grant)),
        GrantStatus::Failed => {
            format!(":warning: Approved by {}, but the membership could not be added: no access", approved_by(grant))
        }
        GrantStatus::Denied => {
            let by = grant.decided_by.as_deref().map(|b| format!(" by {}", escape(b))).unwrap_or_default();
            format!(":x: Denied{by} {ended}")
        }
        GrantStatus::Cancelled => format!(":leftwards_arrow_with_hook: Cancelled by the requester {ended}"),
        GrantStatus::RequestExpired => format!(":hourglass: Expired without enough approvals {ended}"),
    }
}

/// The notification text (`text`, shown where blocks are not) and the blocks.
pub fn render(grant: &Grant) -> (String, Value) {
    let text = format!(
        "Access request: {} asks for {} for {} ({})",
        escape(&grant.user.email),
        escape(&grant.group.name),
        grant.duration,
        grant.status.as_str()
    );
    let summary = format!(
        "*{}* requests *{}* for *{}*\n*Reason:* {}",
        escape(&grant.user.email),
        escape(&grant.group.name),
        grant.duration,
        escape(&grant.reason)
    );
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": summary } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": status_line(grant) } }),
    ];
    if grant.status == GrantStatus::PendingApproval {
        blocks.push(json!({
            "type": "input",
            "block_id": COMMENT,
            "optional": true,
            "label": { "type": "plain_text", "text": "Comment (required to deny)" },
            "element": { "type": "plain_text_input", "action_id": COMMENT, "multiline": true, "max_length": 1000 },
        }));
        let button = |action: &str, label: &str, style: &str| {
            json!({
                "type": "button",
                "action_id": action,
                "text": { "type": "plain_text", "text": label },
                "style": style,
                "value": grant.id,
            })
        };
        blocks.push(json!({
            "type": "actions",
            "block_id": DECISION,
            "elements": [button(APPROVE, "Approve", "primary"), button(DENY, "Deny", "danger")],
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!("Request `{}` · integration {}", grant.id, escape(&grant.integration)),
        }],
    }));
    (text, Value::Array(blocks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{sample_grant, Approval};
    use chrono::TimeZone;

    fn pending() -> Grant {
        let mut g = sample_grant();
        g.status = GrantStatus::PendingApproval;
        g.approvals_required = 2;
        g.reason = "INC-1 <!channel> & <https://evil.example|click>".into();
        g.request_expires_at = Some(Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap());
        g
    }

    fn buttons(blocks: &Value) -> Vec<(String, String)> {
        blocks
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .map(|e| (e["action_id"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn a_pending_request_has_a_comment_box_and_two_buttons_carrying_its_id() {
        let g = pending();
        let (text, blocks) = render(&g);
        assert!(text.contains(&g.user.email) && text.contains(&g.group.name), "{text}");
        assert_eq!(buttons(&blocks), [(APPROVE.into(), g.id.clone()), (DENY.into(), g.id.clone())]);
        let input = blocks.as_array().unwrap().iter().find(|b| b["type"] == "input").expect("a comment box");
        assert_eq!(
            (input["block_id"].as_str(), input["element"]["action_id"].as_str()),
            (Some(COMMENT), Some(COMMENT))
        );
        assert!(status_line(&g).contains("0 of 2"), "{}", status_line(&g));
    }

    #[test]
    fn request_text_is_escaped() {
        let blocks = render(&pending()).1.to_string();
        assert!(!blocks.contains("<!channel>") && !blocks.contains("<https://evil"), "{blocks}");
        assert!(blocks.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"), "{blocks}");
    }

    #[test]
    fn a_decided_request_has_no_buttons_and_says_the_outcome() {
        let mut g = pending();
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 13, 0, 0).unwrap();
        g.approvals = vec![Approval { by: "bob@example.com".into(), at, comment: None }];
        assert!(status_line(&g).contains("1 of 2 (approved by bob@example.com)"));
        assert_eq!(buttons(&render(&g).1).len(), 2, "still awaiting a second approval");
        g.status = GrantStatus::Active;
        g.expires_at = Some(at + chrono::Duration::hours(2));
        let (_, blocks) = render(&g);
        assert!(buttons(&blocks).is_empty());
        assert!(!blocks.to_string().contains("\"input\""));
        assert!(status_line(&g).starts_with(":white_check_mark: Approved by bob@example.com · active until <!date^"));
        g.status = GrantStatus::Expired;
        g.ended_at = Some(at + chrono::Duration::hours(2));
        assert!(status_line(&g).contains("access expired <!date^"), "{}", status_line(&g));
        g.status = GrantStatus::Denied;
        g.decided_by = Some("carol@example.com".into());
        assert!(status_line(&g).starts_with(":x: Denied by carol@example.com"));
        g.status = GrantStatus::RequestExpired;
        assert!(status_line(&g).contains("Expired without enough approvals"));
    }
}
