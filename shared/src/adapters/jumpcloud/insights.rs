//! Directory Insights (`POST /insights/directory/v1/events`): the `directory` events since a time,
//! oldest first, paged with `search_after` (the `X-Search_after` header of the previous answer;
//! where an answer carries none, `skip` by the events served), each reduced to what it says about users, groups and
//! memberships.
//!
//! What an event means (JumpCloud's directory events):
//! - `user_create` / `user_update` (suspension and activation included) → read the user again;
//!   `user_delete` → gone. Another `user_*` type naming a user → read it again (harmless), except
//!   the sign-in and password ones, which change nothing stored.
//! - `user_group_create` / `user_group_update` → read the group again; `user_group_delete` → gone;
//!   another `user_group_*` type → not understood (it may change members in bulk).
//! - `association_change` between a user group and a user, `op` `add` / `remove` → that
//!   membership; between other kinds of objects → unrelated; another `op` → not understood.
//! - Anything else (systems, applications, policies, admins) → unrelated.

use super::{decode, Call, Class, JumpCloudClient, Reply};
use crate::ports::{DirectoryChange, DirectoryError, DirectoryEvent, DirectoryInsights, EventBatch};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub const EVENTS_PATH: &str = "/insights/directory/v1/events";
/// Events per page (Directory Insights answers up to 10,000).
pub const EVENT_PAGE: usize = 1_000;

#[derive(Debug, Deserialize)]
pub(super) struct WireEvent {
    pub id: String,
    pub event_type: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub resource: Option<WireObject>,
    #[serde(default)]
    pub association: Option<WireAssociation>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireObject {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    /// Association ends name their object so.
    #[serde(default)]
    pub object_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireAssociation {
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub connection: Option<WireConnection>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireConnection {
    #[serde(default)]
    pub from: Option<WireObject>,
    #[serde(default)]
    pub to: Option<WireObject>,
}

impl WireObject {
    fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
    fn object_id(&self) -> Option<&str> {
        self.object_id.as_deref().or(self.id.as_deref()).filter(|id| !id.is_empty())
    }
}

/// User event types that change nothing the directory stores.
const USER_EVENTS_WITHOUT_CHANGES: [&str; 5] =
    ["user_login_attempt", "user_password_expiration", "user_reset_password", "user_change_password", "user_mfa_used"];

/// What the event says about users, groups and memberships.
pub(super) fn change_of(event: &WireEvent) -> DirectoryChange {
    let kind = event.event_type.as_str();
    let not_understood = || DirectoryChange::NotUnderstood { event_type: kind.to_owned() };
    if kind == "association_change" {
        let Some(association) = &event.association else { return not_understood() };
        let ends = association.connection.as_ref().and_then(|c| Some((c.from.as_ref()?, c.to.as_ref()?)));
        let Some((from, to)) = ends else { return not_understood() };
        let (group, user) = match (from, to) {
            (g, u) | (u, g) if g.is("user_group") && u.is("user") => (g, u),
            _ => return DirectoryChange::Unrelated,
        };
        let (Some(group_id), Some(user_id)) = (group.object_id(), user.object_id()) else { return not_understood() };
        let added = match association.op.as_deref() {
            Some("add") => true,
            Some("remove") => false,
            _ => return not_understood(),
        };
        return DirectoryChange::Membership { group_id: group_id.to_owned(), user_id: user_id.to_owned(), added };
    }
    let resource = event.resource.as_ref();
    let id = || resource.and_then(WireObject::object_id).map(str::to_owned);
    if let Some(group) = kind.strip_prefix("user_group_") {
        return match (group, id()) {
            ("create" | "update", Some(id)) => DirectoryChange::Group { id },
            ("delete", Some(id)) => DirectoryChange::GroupDeleted { id },
            _ => not_understood(),
        };
    }
    if kind.starts_with("user_") {
        if USER_EVENTS_WITHOUT_CHANGES.contains(&kind) {
            return DirectoryChange::Unrelated;
        }
        let names_a_user = resource.is_some_and(|r| r.is("user"));
        return match (kind, id()) {
            ("user_delete", Some(id)) => DirectoryChange::UserDeleted { id },
            (_, Some(id)) if names_a_user || kind == "user_create" || kind == "user_update" => {
                DirectoryChange::User { id }
            }
            ("user_create" | "user_update" | "user_delete", _) => not_understood(),
            _ => DirectoryChange::Unrelated,
        };
    }
    DirectoryChange::Unrelated
}

/// One page: its events (as JSON, read one by one) and where the next starts.
pub(super) fn parse_page(reply: &Reply) -> Result<(Vec<DirectoryEvent>, Option<Vec<String>>), DirectoryError> {
    let raw: Vec<Value> = decode(reply)?;
    let events = raw
        .into_iter()
        .map(|value| {
            let event: WireEvent = serde_json::from_value(value)
                .map_err(|e| DirectoryError::Decode { reason: format!("a Directory Insights event: {e}") })?;
            Ok(DirectoryEvent { change: change_of(&event), id: event.id, at: event.timestamp })
        })
        .collect::<Result<Vec<_>, DirectoryError>>()?;
    let search_after = reply
        .headers
        .get("x-search_after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str::<Vec<Value>>(v).ok())
        .map(|values| values.into_iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect());
    Ok((events, search_after))
}

#[async_trait]
impl DirectoryInsights for JumpCloudClient {
    async fn directory_events(&self, from: DateTime<Utc>, max: usize) -> Result<EventBatch, DirectoryError> {
        let start_time = from.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut batch = EventBatch::default();
        let mut seen = BTreeSet::new();
        let mut search_after: Option<Vec<String>> = None;
        // Events served so far (before dedupe): where `skip` goes on when no `X-Search_after` came.
        let mut served = 0usize;
        loop {
            let limit = EVENT_PAGE.min(max.saturating_sub(batch.events.len())).max(1);
            let mut body = json!({"service": ["directory"], "start_time": start_time, "sort": "ASC", "limit": limit});
            match &search_after {
                Some(after) => body["search_after"] = json!(after),
                None if served > 0 => body["skip"] = json!(served),
                None => {}
            }
            let call = Call {
                class: Class::Normal,
                insights: true,
                method: Method::POST,
                path: EVENTS_PATH,
                query: &[],
                body: Some(&body),
            };
            let reply = self.send(call).await.0?;
            batch.requests += 1;
            let (page, next) = parse_page(&reply)?;
            let full = page.len() >= limit;
            served += page.len();
            let before = batch.events.len();
            for event in page {
                if event.at >= from && seen.insert(event.id.clone()) {
                    batch.events.push(event);
                }
            }
            if full && batch.events.len() == before {
                // A full page of nothing new: paging is not moving (it would loop until the timeout).
                return Err(DirectoryError::Decode {
                    reason: "Directory Insights answered a full page of events already read: paging makes no progress"
                        .into(),
                });
            }
            if !full {
                batch.complete = true;
                break;
            }
            if batch.events.len() >= max {
                break;
            }
            search_after = next;
        }
        batch.events.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(event: Value) -> DirectoryChange {
        change_of(&serde_json::from_value(event).expect("an event"))
    }

    fn event(event_type: &str, resource: Value) -> Value {
        json!({"id": "e1", "event_type": event_type, "timestamp": "2026-11-30T12:00:00.123Z", "service": "directory",
               "resource": resource, "initiated_by": {"type": "admin", "id": "a1"}})
    }

    fn association(op: &str, from: (&str, &str), to: (&str, &str)) -> Value {
        let mut e = event("association_change", json!({"type": "user_group", "id": "g1"}));
        e["association"] = json!({"op": op, "action_source": "manual", "connection": {
            "from": {"type": from.0, "object_id": from.1, "name": "n"}, "to": {"type": to.0, "object_id": to.1, "name": "n"}}});
        e
    }

    #[test]
    fn user_and_group_events_name_what_to_read_again() {
        let user = json!({"type": "user", "id": "u1", "username": "alice"});
        let group = json!({"type": "user_group", "id": "g1", "name": "admins"});
        assert_eq!(change(event("user_create", user.clone())), DirectoryChange::User { id: "u1".into() });
        assert_eq!(change(event("user_update", user.clone())), DirectoryChange::User { id: "u1".into() });
        assert_eq!(change(event("user_delete", user.clone())), DirectoryChange::UserDeleted { id: "u1".into() });
        assert_eq!(change(event("user_something_new", user.clone())), DirectoryChange::User { id: "u1".into() });
        assert_eq!(change(event("user_login_attempt", user.clone())), DirectoryChange::Unrelated);
        assert_eq!(change(event("user_group_create", group.clone())), DirectoryChange::Group { id: "g1".into() });
        assert_eq!(change(event("user_group_update", group.clone())), DirectoryChange::Group { id: "g1".into() });
        assert_eq!(
            change(event("user_group_delete", group.clone())),
            DirectoryChange::GroupDeleted { id: "g1".into() }
        );
        assert_eq!(
            change(event("user_group_bulk_merge", group)),
            DirectoryChange::NotUnderstood { event_type: "user_group_bulk_merge".into() }
        );
        assert_eq!(
            change(event("user_update", json!({"type": "user"}))),
            DirectoryChange::NotUnderstood { event_type: "user_update".into() },
            "a change to no one in particular"
        );
        assert_eq!(change(event("system_create", json!({"type": "system", "id": "s1"}))), DirectoryChange::Unrelated);
        assert_eq!(
            change(event("admin_login_attempt", json!({"type": "admin", "id": "a1"}))),
            DirectoryChange::Unrelated
        );
    }

    #[test]
    fn associations_between_a_group_and_a_user_are_memberships_either_way_round() {
        let added = DirectoryChange::Membership { group_id: "g1".into(), user_id: "u1".into(), added: true };
        assert_eq!(change(association("add", ("user_group", "g1"), ("user", "u1"))), added);
        assert_eq!(change(association("add", ("user", "u1"), ("user_group", "g1"))), added);
        assert_eq!(
            change(association("remove", ("user_group", "g1"), ("user", "u1"))),
            DirectoryChange::Membership { group_id: "g1".into(), user_id: "u1".into(), added: false }
        );
        assert_eq!(change(association("add", ("user_group", "g1"), ("system", "s1"))), DirectoryChange::Unrelated);
        assert_eq!(
            change(association("update", ("user_group", "g1"), ("user", "u1"))),
            DirectoryChange::NotUnderstood { event_type: "association_change".into() }
        );
        let mut bare = association("add", ("user_group", "g1"), ("user", "u1"));
        bare.as_object_mut().unwrap().remove("association");
        assert_eq!(change(bare), DirectoryChange::NotUnderstood { event_type: "association_change".into() });
    }

    #[test]
    fn a_page_reads_its_events_and_where_the_next_begins() {
        let body = json!([event("user_create", json!({"type": "user", "id": "u1"}))]);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("X-Search_after", r#"[1796040000123,"e1"]"#.parse().unwrap());
        let reply = Reply { headers, body: serde_json::to_vec(&body).unwrap() };
        let (events, next) = parse_page(&reply).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].at.timestamp_millis() % 1000, 123);
        assert_eq!(next, Some(vec!["1796040000123".to_owned(), "e1".to_owned()]));
        let broken = Reply { headers: Default::default(), body: br#"[{"event_type": "user_create"}]"#.to_vec() };
        assert!(matches!(parse_page(&broken), Err(DirectoryError::Decode { .. })), "no id nor time: refused");
    }
}
