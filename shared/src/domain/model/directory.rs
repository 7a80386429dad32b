//! The directory as the product stores it: users, groups and direct memberships of one integration.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserState {
    Activated,
    Staged,
    Suspended,
}

/// A user as stored. `email` is canonical (trimmed, lower case): lookups by email use it.
/// `username` is kept as JumpCloud spells it; lookups by username compare
/// [`canonical_username`]s, since JumpCloud's usernames are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: String,
    pub email: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_type: Option<String>,
    /// The manager, resolved from `MANAGER_ATTRIBUTE` to a user of the same directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_email: Option<String>,
    pub state: UserState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MembershipMethod {
    Notset,
    Static,
    DynamicReviewRequired,
    DynamicAutomated,
}

impl MembershipMethod {
    /// Dynamic groups follow JumpCloud's rules: never requestable.
    pub fn is_dynamic(self) -> bool {
        matches!(self, Self::DynamicReviewRequired | Self::DynamicAutomated)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryGroup {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub membership_method: MembershipMethod,
    /// Static and in scope of `REQUESTABLE_GROUPS`.
    pub requestable: bool,
}

/// The form in which usernames are compared: trimmed, lower case (JumpCloud treats `Alice` and
/// `alice` as one username).
pub fn canonical_username(username: &str) -> String {
    username.trim().to_lowercase()
}

/// JumpCloud ids are 24 hex digits (MongoDB ObjectIds).
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A directory object id. JumpCloud's are 24 lower-case hex digits (MongoDB ObjectIds): those are
/// kept in 12 bytes with no heap allocation, which is most of a large sync's memory (hundreds of
/// thousands of memberships); any other id is kept as text. Serialized as the id's own text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectId {
    Hex([u8; 12]),
    Text(Box<str>),
}

impl ObjectId {
    pub fn new(id: &str) -> Self {
        let hex = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        if id.len() == 24 {
            let mut bytes = [0u8; 12];
            let parsed =
                id.as_bytes().chunks(2).zip(bytes.iter_mut()).all(|(pair, out)| match (hex(pair[0]), hex(pair[1])) {
                    (Some(hi), Some(lo)) => {
                        *out = hi << 4 | lo;
                        true
                    }
                    _ => false,
                });
            if parsed {
                return Self::Hex(bytes);
            }
        }
        Self::Text(id.into())
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hex(bytes) => bytes.iter().try_for_each(|b| write!(f, "{b:02x}")),
            Self::Text(text) => f.write_str(text),
        }
    }
}

impl std::fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl From<&str> for ObjectId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for ObjectId {
    fn from(id: String) -> Self {
        Self::new(&id)
    }
}

impl PartialEq<&str> for ObjectId {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Self::Text(text) => &**text == *other,
            Self::Hex(_) => Self::new(other) == *self,
        }
    }
}

impl Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::new(&String::deserialize(d)?))
    }
}

/// A direct membership: `user_id` is a member of `group_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Membership {
    pub group_id: ObjectId,
    pub user_id: ObjectId,
}

/// One integration's directory at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectorySnapshot {
    pub users: HashMap<String, DirectoryUser>,
    pub groups: HashMap<String, DirectoryGroup>,
    pub memberships: BTreeSet<Membership>,
}

/// What sync needs to know of the stored directory: each item's content hash, and the memberships.
/// Much smaller than the items themselves, so a sync of a large directory stays within a small
/// Lambda's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryDigest {
    pub users: HashMap<String, u64>,
    pub groups: HashMap<String, u64>,
    pub memberships: BTreeSet<Membership>,
    /// Stored memberships (a subset of `memberships`) whose item is in an older layout (the
    /// store's concern: e.g. written before an index attribute existed). `diff` puts those that
    /// are still current again, which brings them up to date; those that vanished are deleted as
    /// usual. Users and groups need no such set: a store reports an outdated one with a hash no
    /// item has (0), so it differs and is rewritten.
    pub memberships_to_rewrite: BTreeSet<Membership>,
}

impl DirectoryDigest {
    pub fn of(snapshot: &DirectorySnapshot) -> Self {
        Self {
            users: snapshot.users.iter().map(|(id, u)| (id.clone(), content_hash(u))).collect(),
            groups: snapshot.groups.iter().map(|(id, g)| (id.clone(), content_hash(g))).collect(),
            memberships: snapshot.memberships.clone(),
            memberships_to_rewrite: BTreeSet::new(),
        }
    }
}

/// A stable 64-bit FNV-1a hash of an item's JSON form (field order is the struct's, so stable
/// across runs and releases as long as the struct is unchanged; a changed struct rewrites once).
pub fn content_hash<T: Serialize>(item: &T) -> u64 {
    // Hashed as it is written: no buffer per item (a million-user sync hashes every user).
    let mut hasher = Fnv1a(0xcbf2_9ce4_8422_2325);
    serde_json::to_writer(&mut hasher, item).expect("directory items serialize");
    hasher.0
}

/// FNV-1a 64 over the bytes written to it.
struct Fnv1a(u64);

impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 = bytes.iter().fold(self.0, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What must be written to turn the stored directory into the fetched one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryChanges {
    pub put_users: Vec<DirectoryUser>,
    pub delete_users: Vec<String>,
    pub put_groups: Vec<DirectoryGroup>,
    pub delete_groups: Vec<String>,
    pub put_memberships: Vec<Membership>,
    pub delete_memberships: Vec<Membership>,
}

impl DirectoryChanges {
    /// Items to write (puts plus deletes).
    pub fn len(&self) -> usize {
        self.put_users.len()
            + self.delete_users.len()
            + self.put_groups.len()
            + self.delete_groups.len()
            + self.put_memberships.len()
            + self.delete_memberships.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn puts(&self) -> usize {
        self.put_users.len() + self.put_groups.len() + self.put_memberships.len()
    }
    pub fn deletes(&self) -> usize {
        self.delete_users.len() + self.delete_groups.len() + self.delete_memberships.len()
    }
}

/// Change detection: only what differs is written, what vanished is deleted. Takes the fetched
/// snapshot by value so that items move into the changes instead of being copied. Output is
/// sorted so that writes are deterministic.
pub fn diff(stored: &DirectoryDigest, fetched: DirectorySnapshot) -> DirectoryChanges {
    // The puts are moved straight into a vector sized for all of them (untouched capacity costs
    // no resident memory): no copies of a large directory's items while they are sorted.
    fn changed<T: Serialize>(
        old: &HashMap<String, u64>,
        new: HashMap<String, T>,
        id_of: fn(&T) -> &str,
    ) -> (Vec<T>, Vec<String>) {
        let mut deletes: Vec<String> = old.keys().filter(|id| !new.contains_key(*id)).cloned().collect();
        deletes.sort();
        let mut puts: Vec<T> = Vec::with_capacity(new.len());
        puts.extend(
            new.into_iter().filter(|(id, item)| old.get(id) != Some(&content_hash(item))).map(|(_, item)| item),
        );
        puts.sort_unstable_by(|a, b| id_of(a).cmp(id_of(b)));
        (puts, deletes)
    }
    let delete_memberships = stored.memberships.difference(&fetched.memberships).cloned().collect();
    let put_memberships = fetched
        .memberships
        .into_iter()
        .filter(|m| !stored.memberships.contains(m) || stored.memberships_to_rewrite.contains(m))
        .collect();
    let (put_users, delete_users) = changed(&stored.users, fetched.users, |u| &u.id);
    let (put_groups, delete_groups) = changed(&stored.groups, fetched.groups, |g| &g.id);
    DirectoryChanges { put_users, delete_users, put_groups, delete_groups, put_memberships, delete_memberships }
}

#[cfg(any(test, feature = "testing"))]
pub(crate) mod fixtures {
    use super::*;

    pub fn user(id: &str, email: &str) -> DirectoryUser {
        DirectoryUser {
            id: id.into(),
            email: email.into(),
            username: email.split('@').next().unwrap_or(id).into(),
            first_name: Some("First".into()),
            last_name: Some("Last".into()),
            job_title: None,
            department: Some("Engineering".into()),
            location: None,
            employee_type: None,
            manager_id: None,
            manager_email: None,
            state: UserState::Activated,
        }
    }

    pub fn group(id: &str, name: &str) -> DirectoryGroup {
        DirectoryGroup {
            id: id.into(),
            name: name.into(),
            description: None,
            membership_method: MembershipMethod::Static,
            requestable: true,
        }
    }

    pub fn member(group: &str, user: &str) -> Membership {
        Membership { group_id: group.into(), user_id: user.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn snapshot(users: &[DirectoryUser], groups: &[DirectoryGroup], members: &[Membership]) -> DirectorySnapshot {
        DirectorySnapshot {
            users: users.iter().map(|u| (u.id.clone(), u.clone())).collect(),
            groups: groups.iter().map(|g| (g.id.clone(), g.clone())).collect(),
            memberships: members.iter().cloned().collect(),
        }
    }

    #[test]
    fn unchanged_directory_needs_no_writes() {
        let s = snapshot(&[user("u1", "a@x.io")], &[group("g1", "admins")], &[member("g1", "u1")]);
        assert!(diff(&DirectoryDigest::of(&s), s.clone()).is_empty());
    }

    #[test]
    fn first_sync_writes_everything() {
        let s =
            snapshot(&[user("u1", "a@x.io"), user("u2", "b@x.io")], &[group("g1", "admins")], &[member("g1", "u1")]);
        let c = diff(&DirectoryDigest::default(), s);
        assert_eq!((c.put_users.len(), c.put_groups.len(), c.put_memberships.len(), c.deletes()), (2, 1, 1, 0));
    }

    #[test]
    fn only_changed_items_are_written_and_vanished_ones_deleted() {
        let old = snapshot(
            &[user("u1", "a@x.io"), user("u2", "b@x.io"), user("u3", "c@x.io")],
            &[group("g1", "admins"), group("g2", "old")],
            &[member("g1", "u1"), member("g1", "u2"), member("g2", "u3")],
        );
        let mut moved = user("u2", "b@x.io");
        moved.department = Some("Finance".into());
        let new = snapshot(
            &[user("u1", "a@x.io"), moved.clone(), user("u4", "d@x.io")],
            &[group("g1", "admins")],
            &[member("g1", "u1"), member("g1", "u4")],
        );
        let c = diff(&DirectoryDigest::of(&old), new);
        assert_eq!(c.put_users, vec![moved, user("u4", "d@x.io")]);
        assert_eq!(c.delete_users, vec!["u3".to_string()]);
        assert!(c.put_groups.is_empty());
        assert_eq!(c.delete_groups, vec!["g2".to_string()]);
        assert_eq!(c.put_memberships, vec![member("g1", "u4")]);
        assert_eq!(c.delete_memberships, vec![member("g1", "u2"), member("g2", "u3")]);
        assert_eq!(c.len(), 7);
    }

    #[test]
    fn object_ids_are_compact_and_round_trip_exactly() {
        for id in ["5f1a9c0e7b3d2a1f0c9e8d7b", "u1", "5F1A9C0E7B3D2A1F0C9E8D7B", "5f1a9c0e7b3d2a1f0c9e8d7", ""] {
            let parsed = ObjectId::new(id);
            assert_eq!(parsed.to_string(), id, "exact text back");
            assert!(parsed == id);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, format!("{id:?}"));
            assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), parsed);
        }
        assert!(matches!(ObjectId::new("5f1a9c0e7b3d2a1f0c9e8d7b"), ObjectId::Hex(_)));
        assert!(matches!(ObjectId::new("5F1A9C0E7B3D2A1F0C9E8D7B"), ObjectId::Text(_)), "upper case stays text");
        assert_eq!(std::mem::size_of::<Membership>(), 48, "no heap allocation for ObjectIds");
    }

    #[test]
    fn content_hash_is_stable_and_sensitive() {
        let u = user("u1", "a@x.io");
        assert_eq!(content_hash(&u), content_hash(&u.clone()));
        // Pinned (FNV-1a 64 of the JSON `"abc"`): a change would make every directory rewrite itself once.
        assert_eq!(content_hash(&"abc"), 14325826948191411115);
        // Hashed as written: the same hash as over the whole JSON at once.
        let whole = serde_json::to_vec(&u).expect("serializes");
        let at_once =
            whole.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        assert_eq!(content_hash(&u), at_once);
        let mut other = u.clone();
        other.job_title = Some("CTO".into());
        assert_ne!(content_hash(&u), content_hash(&other));
    }

    #[test]
    fn memberships_in_an_older_layout_are_rewritten_while_current_and_deleted_once_gone() {
        let stored = snapshot(&[], &[], &[member("g1", "u1"), member("g1", "u2"), member("g2", "u1")]);
        let mut digest = DirectoryDigest::of(&stored);
        digest.memberships_to_rewrite = [member("g1", "u1"), member("g1", "u2")].into();
        let fetched = snapshot(&[], &[], &[member("g1", "u1"), member("g2", "u1")]);
        let c = diff(&digest, fetched.clone());
        assert_eq!(c.put_memberships, vec![member("g1", "u1")], "current and outdated: put again");
        assert_eq!(c.delete_memberships, vec![member("g1", "u2")], "gone: deleted as usual");
        digest.memberships_to_rewrite.clear();
        assert!(diff(&digest, fetched).put_memberships.is_empty(), "up to date: not written");
    }

    #[test]
    fn usernames_compare_case_insensitively() {
        assert_eq!(canonical_username(" Alice.Smith "), "alice.smith");
        assert_eq!(canonical_username("alice.smith"), canonical_username("ALICE.SMITH"));
    }

    #[test]
    fn a_renamed_group_is_rewritten() {
        let old = snapshot(&[], &[group("g1", "admins")], &[]);
        let new = snapshot(&[], &[group("g1", "admins-renamed")], &[]);
        assert_eq!(diff(&DirectoryDigest::of(&old), new).put_groups, vec![group("g1", "admins-renamed")]);
    }
}
