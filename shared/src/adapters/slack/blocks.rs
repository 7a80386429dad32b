//! The approval message in Block Kit (<https://docs.slack.dev/reference/block-kit/blocks>): what
//! is asked, where the request stands, and, while it awaits approval, a comment box and the
//! Approve / Deny buttons. One rendering of the grant's state, used to post the message and to
//! update it at every step (an approval, the activation, a denial, the end).
//!
//! An extension awaiting approval has a message of its own ([`render_extension`]): its buttons
//! ([`APPROVE_EXTENSION`], [`DENY_EXTENSION`]) name the grant and that extension (its request
//! time, [`extension_value`]), so a click decides that extension and nothing else.
//!
//! Text from requests (reason, names) is escaped as Slack asks for `mrkdwn` (`&`, `<`, `>`), so a
//! reason cannot mention `@channel` or forge a link.

use crate::domain::model::{Approval, Grant, GrantStatus, PendingExtension};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// `action_id` of the Approve button (its `value` is the grant id).
pub const APPROVE: &str = "approve";
/// `action_id` of the Deny button (its `value` is the grant id).
pub const DENY: &str = "deny";
/// `action_id` of an extension's Approve button (its `value`: [`extension_value`]).
pub const APPROVE_EXTENSION: &str = "approve_extension";
/// `action_id` of an extension's Deny button (its `value`: [`extension_value`]).
pub const DENY_EXTENSION: &str = "deny_extension";
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
    by(&grant.approvals)
}

fn by(approvals: &[Approval]) -> String {
    approvals.iter().map(|a| escape(&a.by)).collect::<Vec<_>>().join(", ")
}

/// An extension's request time as its buttons and its messages' key spell it (RFC 3339, to the
/// nanosecond, so that it reads back equal).
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The value of an extension's buttons: `{grant id}/{stamp}`.
pub fn extension_value(grant_id: &str, requested_at: DateTime<Utc>) -> String {
    format!("{grant_id}/{}", stamp(requested_at))
}

/// The grant id and the extension's request time of [`extension_value`].
pub fn parse_extension_value(value: &str) -> Option<(String, DateTime<Utc>)> {
    let (grant_id, at) = value.split_once('/')?;
    uuid::Uuid::parse_str(grant_id).ok()?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some((grant_id.to_owned(), at))
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
        blocks.extend(decision(APPROVE, DENY, &grant.id));
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

/// The comment box and the Approve / Deny buttons, carrying `value`.
fn decision(approve: &str, deny: &str, value: &str) -> [Value; 2] {
    let button = |action: &str, label: &str, style: &str| {
        json!({
            "type": "button",
            "action_id": action,
            "text": { "type": "plain_text", "text": label },
            "style": style,
            "value": value,
        })
    };
    [
        json!({
            "type": "input",
            "block_id": COMMENT,
            "optional": true,
            "label": { "type": "plain_text", "text": "Comment (required to deny)" },
            "element": { "type": "plain_text_input", "action_id": COMMENT, "multiline": true, "max_length": 1000 },
        }),
        json!({
            "type": "actions",
            "block_id": DECISION,
            "elements": [button(approve, "Approve", "primary"), button(deny, "Deny", "danger")],
        }),
    ]
}

/// Where an extension stands, as the events and the clicks tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionState {
    /// Pending: the grant carries it (buttons).
    Awaiting,
    /// Applied: the grant's expiry moved.
    Approved,
    Denied,
    /// Not approved within its approval timeout.
    Lapsed,
    /// The grant ended (expired, revoked) while the extension awaited approval.
    GrantEnded,
}

/// The message of an extension awaiting approval, or decided: `ext` as asked (with its approvals),
/// `grant` as it now is.
pub fn render_extension(grant: &Grant, ext: &PendingExtension, state: ExtensionState) -> (String, Value) {
    let (who, group) = (escape(&grant.user.email), escape(&grant.group.name));
    let expiry = grant.expires_at.map(when).unwrap_or_default();
    let (label, status) = match state {
        ExtensionState::Awaiting => {
            let so_far =
                if ext.approvals.is_empty() { String::new() } else { format!(" (approved by {})", by(&ext.approvals)) };
            (
                "awaiting approval",
                format!(
                    ":hourglass_flowing_sand: Awaiting approval: {} of {}{so_far} · open until {}",
                    ext.approvals.len(),
                    ext.approvals_required,
                    when(ext.request_expires_at)
                ),
            )
        }
        ExtensionState::Approved => (
            "approved",
            format!(":white_check_mark: Extended, approved by {} · access now until {expiry}", by(&ext.approvals)),
        ),
        ExtensionState::Denied => ("denied", format!(":x: Extension denied · access still ends {expiry}")),
        ExtensionState::Lapsed => ("expired", ":hourglass: Expired without enough approvals".to_owned()),
        ExtensionState::GrantEnded => {
            ("moot", ":checkered_flag: The grant ended before the extension was decided".to_owned())
        }
    };
    let text = format!("Extension request: {who} asks for {} more of {group} ({label})", ext.duration);
    let summary = format!(
        "*{who}* asks to extend *{group}* by *{}*\n*Reason:* {}\n*Expires:* {expiry}",
        ext.duration,
        escape(&ext.reason)
    );
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": summary } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": status } }),
    ];
    if state == ExtensionState::Awaiting {
        blocks.extend(decision(APPROVE_EXTENSION, DENY_EXTENSION, &extension_value(&grant.id, ext.at)));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!("Extension of grant `{}` · integration {}", grant.id, escape(&grant.integration)),
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
    fn extension() -> (Grant, PendingExtension) {
        let mut g = sample_grant();
        g.status = GrantStatus::Active;
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 13, 0, 0).unwrap() + chrono::Duration::nanoseconds(123_456_789);
        let ext = PendingExtension {
            duration: "1h".parse().unwrap(),
            reason: "INC-1 <!here> runs long".into(),
            by: g.user.email.clone(),
            at,
            approvals_required: 2,
            approvals: vec![],
            approvers: vec!["carol@example.com".into(), "erin@example.com".into()],
            request_expires_at: at + chrono::Duration::hours(24),
        };
        g.pending_extension = Some(ext.clone());
        (g, ext)
    }

    #[test]
    fn an_extensions_buttons_name_the_grant_and_that_extension() {
        let (g, ext) = extension();
        let (text, blocks) = render_extension(&g, &ext, ExtensionState::Awaiting);
        assert!(text.starts_with("Extension request:") && text.contains("1h more of"), "{text}");
        let value = extension_value(&g.id, ext.at);
        assert_eq!(
            buttons(&blocks),
            [(APPROVE_EXTENSION.into(), value.clone()), (DENY_EXTENSION.into(), value.clone())]
        );
        assert_eq!(parse_extension_value(&value), Some((g.id.clone(), ext.at)), "read back to the nanosecond");
        assert!(blocks.to_string().contains("0 of 2"), "{blocks}");
        assert!(!blocks.to_string().contains("<!here>"), "escaped");
        for bad in ["", &g.id, "nope/2026-11-23T13:00:00Z", &format!("{}/yesterday", g.id)] {
            assert_eq!(parse_extension_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_decided_extension_has_no_buttons_and_says_the_outcome() {
        let (mut g, mut ext) = extension();
        ext.approvals = vec![Approval { by: "carol@example.com".into(), at: ext.at, comment: None }];
        for (state, says) in [
            (ExtensionState::Approved, "Extended, approved by carol@example.com · access now until"),
            (ExtensionState::Denied, "Extension denied · access still ends"),
            (ExtensionState::Lapsed, "Expired without enough approvals"),
        ] {
            let (_, blocks) = render_extension(&g, &ext, state);
            assert!(buttons(&blocks).is_empty(), "{state:?}");
            assert!(blocks.to_string().contains(says), "{state:?}: {blocks}");
        }
        g.status = GrantStatus::Revoked;
        let (_, blocks) = render_extension(&g, &ext, ExtensionState::GrantEnded);
        assert!(blocks.to_string().contains("The grant ended before the extension was decided"), "{blocks}");
    }
}
