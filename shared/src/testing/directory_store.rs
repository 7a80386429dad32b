//! An in-memory store for domain tests: same contract as DynamoDB, counts the writes it takes.

use crate::ports::{StoreError, StoredUserDigest};
use crate::{
    domain::model::{
        canonical_username, content_hash, DirectoryChanges, DirectoryDigest, DirectoryGroup, DirectorySnapshot,
        DirectoryUser, Membership,
    },
    ports::{DirectoryStore, SyncStatus},
};
use async_trait::async_trait;
use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};

#[derive(Default)]
pub struct MemoryStore {
    directories: Mutex<HashMap<String, DirectorySnapshot>>,
    statuses: Mutex<HashMap<String, SyncStatus>>,
    /// A running sync's claim: until when it holds.
    sync_claims: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    event_cursors: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    item_writes: AtomicUsize,
    /// Users asked for by id in batches (`user_digests_by_ids`), found or not.
    digest_reads: AtomicUsize,
    /// Users looked up in the email index one at a time (`user_key_by_email`), found or not.
    email_lookups: AtomicUsize,
    /// Queries of the memberships partition (`group_members`, `memberships_of_groups`).
    membership_queries: AtomicUsize,
    /// While set, `user_digests_by_ids` waits for a permit of this semaphore (a slow store).
    pub hold_digest_reads: Mutex<Option<std::sync::Arc<tokio::sync::Semaphore>>>,
    /// While set, `user_emails_by_ids` waits for a permit of this semaphore likewise.
    pub hold_email_reads: Mutex<Option<std::sync::Arc<tokio::sync::Semaphore>>>,
    /// Integration -> email -> user id: the email index.
    emails: Mutex<HashMap<String, HashMap<String, String>>>,
    /// Integration -> the user ids in order: the users partition's sort key, for the id ranges
    /// (a scan of a million users per range would make the benchmarks quadratic).
    user_ids: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl MemoryStore {
    /// Directory items put or deleted so far.
    pub fn item_writes(&self) -> usize {
        self.item_writes.load(Ordering::SeqCst)
    }
    /// Users asked for so far by `user_digests_by_ids`.
    pub fn digest_reads(&self) -> usize {
        self.digest_reads.load(Ordering::SeqCst)
    }
    /// Lookups so far by `user_key_by_email`: one index query each in DynamoDB.
    pub fn email_lookups(&self) -> usize {
        self.email_lookups.load(Ordering::SeqCst)
    }
    /// Queries so far of the stored members of a group or a span of groups.
    pub fn membership_queries(&self) -> usize {
        self.membership_queries.load(Ordering::SeqCst)
    }
    pub fn directory(&self, integration: &str) -> DirectorySnapshot {
        self.directories.lock().expect("lock").get(integration).cloned().unwrap_or_default()
    }

    /// `read` over the integration's directory in place: no copy of it (benchmarks hold a
    /// million users here).
    fn with<T>(&self, integration: &str, read: impl FnOnce(&DirectorySnapshot) -> T) -> T {
        let directories = self.directories.lock().expect("lock");
        match directories.get(integration) {
            Some(directory) => read(directory),
            None => read(&DirectorySnapshot::default()),
        }
    }

    /// The integration's users by canonical email (kept beside the directory, as the index is).
    fn user_id_by_email(&self, integration: &str, email: &str) -> Option<String> {
        self.emails.lock().expect("lock").get(integration).and_then(|by_email| by_email.get(email).cloned())
    }
}

#[async_trait]
impl DirectoryStore for MemoryStore {
    async fn user_ids_between(
        &self,
        integration: &str,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        let to = upto.map_or(Unbounded, Included);
        if matches!((after, upto), (Some(a), Some(u)) if a >= u) {
            return Ok(Vec::new()); // BTreeSet::range panics on such a range
        }
        let user_ids = self.user_ids.lock().expect("lock");
        let Some(ids) = user_ids.get(integration) else { return Ok(Vec::new()) };
        Ok(ids.range::<str, _>((from, to)).cloned().collect())
    }

    async fn load_digest(&self, integration: &str) -> Result<DirectoryDigest, StoreError> {
        Ok(DirectoryDigest::of(&self.directory(integration)))
    }

    async fn apply_changes(&self, integration: &str, changes: &DirectoryChanges) -> Result<(), StoreError> {
        let mut dirs = self.directories.lock().expect("lock");
        let mut emails = self.emails.lock().expect("lock");
        let mut user_ids = self.user_ids.lock().expect("lock");
        let dir = dirs.entry(integration.to_owned()).or_default();
        let by_email = emails.entry(integration.to_owned()).or_default();
        let ids = user_ids.entry(integration.to_owned()).or_default();
        for u in &changes.put_users {
            if let Some(before) = dir.users.insert(u.id.clone(), u.clone()) {
                by_email.remove(&before.email);
            } else {
                ids.insert(u.id.clone());
            }
            by_email.insert(u.email.clone(), u.id.clone());
        }
        for id in &changes.delete_users {
            if let Some(before) = dir.users.remove(id) {
                by_email.remove(&before.email);
                ids.remove(id);
            }
        }
        for g in &changes.put_groups {
            dir.groups.insert(g.id.clone(), g.clone());
        }
        for id in &changes.delete_groups {
            dir.groups.remove(id);
        }
        dir.memberships.extend(changes.put_memberships.iter().cloned());
        for m in &changes.delete_memberships {
            dir.memberships.remove(m);
        }
        self.item_writes.fetch_add(changes.len(), Ordering::SeqCst);
        Ok(())
    }

    async fn list_groups(&self, integration: &str) -> Result<Vec<crate::domain::model::DirectoryGroup>, StoreError> {
        let mut groups: Vec<_> = self.with(integration, |d| d.groups.values().cloned().collect());
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    async fn put_sync_status(&self, status: &SyncStatus) -> Result<(), StoreError> {
        self.statuses.lock().expect("lock").insert(status.integration.clone(), status.clone());
        self.sync_claims.lock().expect("lock").remove(&status.integration);
        Ok(())
    }

    async fn claim_sync(
        &self,
        status: &SyncStatus,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<SyncStatus>, StoreError> {
        let mut statuses = self.statuses.lock().expect("lock");
        let mut claims = self.sync_claims.lock().expect("lock");
        if let Some(current) = statuses.get(&status.integration) {
            let held = claims.get(&status.integration).is_some_and(|until| *until > status.started_at);
            if current.state == crate::ports::SyncState::Running && held {
                return Ok(Some(current.clone()));
            }
        }
        statuses.insert(status.integration.clone(), status.clone());
        claims.insert(status.integration.clone(), until);
        Ok(None)
    }

    async fn user_by_email(&self, integration: &str, email: &str) -> Result<Option<DirectoryUser>, StoreError> {
        let Some(id) = self.user_id_by_email(integration, email) else { return Ok(None) };
        Ok(self.with(integration, |d| d.users.get(&id).cloned()))
    }

    async fn user_key_by_email(&self, integration: &str, email: &str) -> Result<Option<(String, String)>, StoreError> {
        self.email_lookups.fetch_add(1, Ordering::SeqCst);
        // The index holds every stored user's email: no copy of the user.
        Ok(self.user_id_by_email(integration, email).map(|id| (id, email.to_owned())))
    }

    async fn group_by_name(&self, integration: &str, name: &str) -> Result<Option<DirectoryGroup>, StoreError> {
        Ok(self.with(integration, |d| d.groups.values().find(|g| g.name == name).cloned()))
    }

    async fn is_member(&self, integration: &str, group_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let membership = Membership { group_id: group_id.into(), user_id: user_id.into() };
        Ok(self.with(integration, |d| d.memberships.contains(&membership)))
    }

    async fn user_by_id(&self, integration: &str, id: &str) -> Result<Option<DirectoryUser>, StoreError> {
        Ok(self.with(integration, |d| d.users.get(id).cloned()))
    }

    async fn group_by_id(&self, integration: &str, id: &str) -> Result<Option<DirectoryGroup>, StoreError> {
        Ok(self.with(integration, |d| d.groups.get(id).cloned()))
    }

    async fn users_by_ids(&self, integration: &str, ids: &[String]) -> Result<Vec<DirectoryUser>, StoreError> {
        // An id asked twice is answered once, as by DynamoDB's adapter.
        let mut seen = std::collections::HashSet::new();
        Ok(self.with(integration, |d| {
            ids.iter().filter(|id| seen.insert(id.as_str())).filter_map(|id| d.users.get(id).cloned()).collect()
        }))
    }

    async fn user_digests_by_ids(
        &self,
        integration: &str,
        ids: &[String],
    ) -> Result<HashMap<String, StoredUserDigest>, StoreError> {
        self.digest_reads.fetch_add(ids.len(), Ordering::SeqCst);
        let held = self.hold_digest_reads.lock().expect("lock").clone();
        if let Some(gate) = held {
            let _passed = gate.acquire().await.expect("the gate is never closed");
        }
        Ok(self.with(integration, |d| {
            let digest = |u: &DirectoryUser| StoredUserDigest {
                hash: content_hash(u),
                manager_id: u.manager_id.clone(),
                manager_email: u.manager_email.clone(),
            };
            ids.iter().filter_map(|id| d.users.get(id).map(|u| (u.id.clone(), digest(u)))).collect()
        }))
    }

    async fn user_emails_by_ids(
        &self,
        integration: &str,
        ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        let held = self.hold_email_reads.lock().expect("lock").clone();
        if let Some(gate) = held {
            let _passed = gate.acquire().await.expect("the gate is never closed");
        }
        Ok(self.with(integration, |d| {
            ids.iter().filter_map(|id| d.users.get(id).map(|u| (u.id.clone(), u.email.clone()))).collect()
        }))
    }

    async fn user_by_username(&self, integration: &str, username: &str) -> Result<Option<DirectoryUser>, StoreError> {
        let wanted = canonical_username(username);
        Ok(self.with(integration, |d| d.users.values().find(|u| canonical_username(&u.username) == wanted).cloned()))
    }

    async fn group_members(&self, integration: &str, group_id: &str) -> Result<Vec<String>, StoreError> {
        self.membership_queries.fetch_add(1, Ordering::SeqCst);
        // Memberships are ordered by group, then user: the group's are one range.
        let group = crate::domain::model::ObjectId::new(group_id);
        let from = Membership { group_id: group.clone(), user_id: crate::domain::model::ObjectId::Hex([0; 12]) };
        Ok(self.with(integration, |d| {
            d.memberships.range(from..).take_while(|m| m.group_id == group).map(|m| m.user_id.to_string()).collect()
        }))
    }

    async fn memberships_of_groups(
        &self,
        integration: &str,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        use crate::domain::model::ObjectId;
        self.membership_queries.fetch_add(1, Ordering::SeqCst);
        // Memberships are ordered by group id, hex ids (in text order) before any other (in text
        // order): a range of each, as DynamoDB's sort keys hold them in text order.
        let at = |group_id: ObjectId| Membership { group_id, user_id: ObjectId::Hex([0; 12]) };
        let hex_from = match ObjectId::new(first) {
            hex @ ObjectId::Hex(_) => hex,
            ObjectId::Text(_) => ObjectId::Hex([0; 12]),
        };
        let text_from = ObjectId::Text(first.into());
        let span = |d: &DirectorySnapshot, from: ObjectId, hex: bool| -> Vec<(String, String)> {
            d.memberships
                .range(at(from)..)
                .take_while(|m| matches!(m.group_id, ObjectId::Hex(_)) == hex)
                .map(|m| (m.group_id.to_string(), m))
                .skip_while(|(group, _)| group.as_str() < first)
                .take_while(|(group, _)| group.as_str() <= last)
                .map(|(group, m)| (group, m.user_id.to_string()))
                .collect()
        };
        Ok(self.with(integration, |d| {
            let mut found = span(d, hex_from, true);
            found.extend(span(d, text_from, false));
            found
        }))
    }

    async fn groups_of(&self, integration: &str, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.with(integration, |d| {
            d.memberships.iter().filter(|m| m.user_id == user_id).map(|m| m.group_id.to_string()).collect()
        }))
    }

    async fn list_users(&self, integration: &str) -> Result<Vec<DirectoryUser>, StoreError> {
        let mut users: Vec<_> = self.with(integration, |d| d.users.values().cloned().collect());
        users.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(users)
    }

    async fn sync_status(&self, integration: &str) -> Result<Option<SyncStatus>, StoreError> {
        Ok(self.statuses.lock().expect("lock").get(integration).cloned())
    }

    async fn event_cursor(&self, integration: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        Ok(self.event_cursors.lock().expect("lock").get(integration).copied())
    }

    async fn put_event_cursor(
        &self,
        integration: &str,
        to: chrono::DateTime<chrono::Utc>,
        expected: Option<Option<chrono::DateTime<chrono::Utc>>>,
    ) -> Result<bool, StoreError> {
        let mut cursors = self.event_cursors.lock().expect("lock");
        if expected.is_some_and(|e| e != cursors.get(integration).copied()) {
            return Ok(false);
        }
        cursors.insert(integration.to_owned(), to);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::fixtures::{group, member, user};

    async fn seeded() -> MemoryStore {
        let store = MemoryStore::default();
        let mut alice = user("u1", "alice@corp.com");
        alice.username = "Alice.Smith".into();
        let changes = DirectoryChanges {
            put_users: vec![alice, user("u2", "bob@corp.com"), user("u3", "carol@corp.com")],
            put_groups: vec![group("g1", "admins"), group("g2", "db")],
            put_memberships: vec![member("g1", "u1"), member("g1", "u2"), member("g2", "u1")],
            ..DirectoryChanges::default()
        };
        store.apply_changes("corp", &changes).await.unwrap();
        store
    }

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn users_are_found_by_id_alone_or_in_batches() {
        let store = seeded().await;
        assert_eq!(store.user_by_id("corp", "u2").await.unwrap().unwrap().email, "bob@corp.com");
        assert!(store.user_by_id("corp", "nobody").await.unwrap().is_none());
        assert!(store.user_by_id("other", "u2").await.unwrap().is_none(), "per integration");
        let bob = Some(("u2".to_owned(), "bob@corp.com".to_owned()));
        assert_eq!(store.user_key_by_email("corp", "bob@corp.com").await.unwrap(), bob);
        assert!(store.user_key_by_email("corp", "nobody@corp.com").await.unwrap().is_none());
        assert!(store.user_key_by_email("other", "bob@corp.com").await.unwrap().is_none(), "per integration");

        let ids: Vec<String> = ["u3", "nobody", "u1", "u3"].map(String::from).into();
        let found = store.users_by_ids("corp", &ids).await.unwrap();
        assert_eq!(sorted(found.into_iter().map(|u| u.id).collect()), ["u1", "u3"], "missing skipped, repeats once");
        assert!(store.users_by_ids("corp", &[]).await.unwrap().is_empty());

        let emails = store.user_emails_by_ids("corp", &ids).await.unwrap();
        let expected = [("u1", "alice@corp.com"), ("u3", "carol@corp.com")].map(|(i, e)| (i.to_owned(), e.to_owned()));
        assert_eq!(emails, HashMap::from(expected));
        assert!(store.user_emails_by_ids("other", &ids).await.unwrap().is_empty());

        let digests = store.user_digests_by_ids("corp", &ids).await.unwrap();
        assert_eq!(digests.len(), 2);
        let alice = store.user_by_id("corp", "u1").await.unwrap().unwrap();
        assert_eq!(digests["u1"].hash, content_hash(&alice));
        assert_ne!(digests["u1"].hash, digests["u3"].hash);
        assert!(store.user_digests_by_ids("other", &ids).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn user_ids_are_listed_by_range_in_order() {
        let store = seeded().await;
        let between = |after: Option<&'static str>, upto: Option<&'static str>| {
            let store = &store;
            async move { store.user_ids_between("corp", after, upto).await.unwrap() }
        };
        assert_eq!(between(None, None).await, ["u1", "u2", "u3"]);
        assert_eq!(between(Some("u1"), None).await, ["u2", "u3"], "after is left out");
        assert_eq!(between(None, Some("u2")).await, ["u1", "u2"], "upto is kept");
        assert_eq!(between(Some("u1"), Some("u2")).await, ["u2"]);
        assert!(between(Some("u2"), Some("u2")).await.is_empty());
        assert!(between(Some("u3"), Some("u1")).await.is_empty());
        assert!(store.user_ids_between("other", None, None).await.unwrap().is_empty());

        let gone = DirectoryChanges { delete_users: vec!["u2".into()], ..DirectoryChanges::default() };
        store.apply_changes("corp", &gone).await.unwrap();
        let again = DirectoryChanges { put_users: vec![user("u1", "alice@corp.com")], ..DirectoryChanges::default() };
        store.apply_changes("corp", &again).await.unwrap();
        assert_eq!(
            between(None, None).await,
            ["u1", "u3"],
            "a deleted user leaves the range; a rewritten one stays once"
        );
    }

    #[tokio::test]
    async fn usernames_match_case_insensitively() {
        let store = seeded().await;
        for name in ["Alice.Smith", "alice.smith", "ALICE.SMITH", " alice.smith "] {
            assert_eq!(store.user_by_username("corp", name).await.unwrap().map(|u| u.id).as_deref(), Some("u1"));
        }
        let alice = store.user_by_username("corp", "alice.smith").await.unwrap().unwrap();
        assert_eq!(alice.username, "Alice.Smith", "stored as JumpCloud spells it");
        assert!(store.user_by_username("corp", "alice").await.unwrap().is_none(), "whole names only");
        assert!(store.user_by_username("other", "alice.smith").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn memberships_are_listed_by_group_and_by_user() {
        let store = seeded().await;
        assert_eq!(sorted(store.group_members("corp", "g1").await.unwrap()), ["u1", "u2"]);
        assert!(store.group_members("corp", "g3").await.unwrap().is_empty());
        assert_eq!(sorted(store.groups_of("corp", "u1").await.unwrap()), ["g1", "g2"]);
        assert!(store.groups_of("corp", "u3").await.unwrap().is_empty());
        assert!(store.groups_of("other", "u1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn memberships_are_listed_for_a_span_of_groups() {
        let store = seeded().await;
        let hex = |n: u8| format!("{n:024x}");
        let more = DirectoryChanges {
            put_memberships: vec![member(&hex(1), "u1"), member(&hex(2), "u2"), member(&hex(3), "u3")],
            ..DirectoryChanges::default()
        };
        store.apply_changes("corp", &more).await.unwrap();
        let store = &store;
        let span = |first: String, last: String| async move {
            let mut found = store.memberships_of_groups("corp", &first, &last).await.unwrap();
            found.sort();
            found
        };
        let pair = |g: &str, u: &str| (g.to_owned(), u.to_owned());
        assert_eq!(span(hex(1), hex(2)).await, [pair(&hex(1), "u1"), pair(&hex(2), "u2")], "both ends included");
        assert_eq!(span(hex(3), "g1".into()).await, [pair(&hex(3), "u3"), pair("g1", "u1"), pair("g1", "u2")]);
        assert_eq!(span("g2".into(), "g9".into()).await, [pair("g2", "u1")], "ids of any form, in text order");
        assert!(span("g3".into(), "g9".into()).await.is_empty());
        assert!(store.memberships_of_groups("other", "g1", "g2").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_user_is_listed_by_id() {
        let store = seeded().await;
        let ids: Vec<String> = store.list_users("corp").await.unwrap().into_iter().map(|u| u.id).collect();
        assert_eq!(ids, ["u1", "u2", "u3"]);
        assert!(store.list_users("other").await.unwrap().is_empty());
    }
}
