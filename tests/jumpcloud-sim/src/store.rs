//! One organization's live data, shared by the HTTP handlers and [`OrgHandle`].
//!
//! Built for 50,000 users: users and groups are kept sorted by id (the default, stable order),
//! and the order for each `sort` asked for is computed once and cached as indices until the
//! users change. A page then costs a walk over indices plus serializing at most 100 users.
//!
//! Every change appends its Directory Insights event to the organization's [`EventLog`] under
//! the same write lock, so that events are in the order of the changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use compact_str::CompactString;
use serde_json::Value;

use crate::api::MemberOp;
use crate::clock::EventClock;
use crate::error::SimError;
use crate::events::{Actor, EventLog};
use crate::ids::to_millis;
use crate::model::{Group, MembershipMethod, Org, User};
use crate::query::{Field, GroupField, ListQuery, Page, SortKey, UserField};

type SortCache = Mutex<HashMap<Vec<SortKey<UserField>>, Arc<[u32]>>>;

pub(crate) struct OrgData {
    /// Sorted by id.
    users: Vec<User>,
    /// Sorted by id.
    groups: Vec<Group>,
    /// Group id -> direct members; every group has an entry. A `BTreeSet` pages members in id
    /// order, which is stable.
    members: HashMap<CompactString, BTreeSet<CompactString>>,
    user_orders: SortCache,
    /// Changes since start (the data given at start emits none).
    events: EventLog,
}

pub(crate) struct OrgStore {
    pub api_key: String,
    pub org_id: Option<String>,
    data: RwLock<OrgData>,
}

impl OrgStore {
    /// Takes an organization that passed [`Org::validate`]; its events are stamped by `clock`.
    pub fn new(org: Org, clock: Arc<EventClock>) -> Self {
        let Org { api_key, org_id, mut users, mut groups, memberships } = org;
        let events = EventLog::new(clock, &api_key, org_id.as_deref());
        // Ids are unique (validated), so an unstable sort gives the one order, and it needs no
        // scratch copy (at 1,000,000 users a stable sort's would be 150 MB).
        users.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        groups.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let mut members: HashMap<CompactString, BTreeSet<CompactString>> = memberships.into_iter().collect();
        for g in &groups {
            members.entry(g.id.clone()).or_default();
        }
        OrgStore {
            api_key,
            org_id,
            data: RwLock::new(OrgData { users, groups, members, user_orders: Mutex::default(), events }),
        }
    }

    // A panic in a caller's `update_user` closure must not wedge the simulator for later tests.
    pub fn read(&self) -> RwLockReadGuard<'_, OrgData> {
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, OrgData> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> Org {
        let data = self.read();
        Org {
            api_key: self.api_key.clone(),
            org_id: self.org_id.clone(),
            users: data.users.clone(),
            groups: data.groups.clone(),
            memberships: data
                .members
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(g, m)| (g.clone(), m.clone()))
                .collect(),
        }
    }
}

/// Stable-sorts indices of `items` (which are in id order) by `keys`: ties keep id order.
fn sorted_indices<F: Field>(items: &[F::Item], keys: &[SortKey<F>]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    if !keys.is_empty() {
        order.sort_by(|&a, &b| {
            let (a, b) = (&items[a as usize], &items[b as usize]);
            keys.iter()
                .map(|k| {
                    let o = k.field.get(a).cmp(&k.field.get(b));
                    if k.descending {
                        o.reverse()
                    } else {
                        o
                    }
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    order
}

/// The matches of `query` on page `query.page`, and how many matched in all.
fn select<'a, F: Field>(items: &'a [F::Item], order: &[u32], query: &ListQuery<F>) -> (usize, Vec<&'a F::Item>) {
    let page = query.page;
    if query.is_unfiltered() {
        let end = page.skip.saturating_add(page.limit).min(order.len());
        let start = page.skip.min(end);
        let selected = order[start..end].iter().map(|&i| &items[i as usize]);
        return (order.len(), selected.collect());
    }
    let mut total = 0;
    let mut selected = Vec::new();
    for item in order.iter().map(|&i| &items[i as usize]) {
        if query.matches(item) {
            if page.contains(total) {
                selected.push(item);
            }
            total += 1;
        }
    }
    (total, selected)
}

impl OrgData {
    fn user_index(&self, id: &str) -> Option<usize> {
        self.users.binary_search_by(|u| u.id.as_str().cmp(id)).ok()
    }

    fn group_index(&self, id: &str) -> Option<usize> {
        self.groups.binary_search_by(|g| g.id.as_str().cmp(id)).ok()
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.user_index(id).map(|i| &self.users[i])
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.group_index(id).map(|i| &self.groups[i])
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    fn user_order(&self, keys: &[SortKey<UserField>]) -> Arc<[u32]> {
        let mut cache = self.user_orders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(order) = cache.get(keys) {
            return Arc::clone(order);
        }
        let order: Arc<[u32]> = sorted_indices(&self.users, keys).into();
        cache.insert(keys.to_vec(), Arc::clone(&order));
        order
    }

    pub fn list_users(&self, query: &ListQuery<UserField>) -> (usize, Vec<&User>) {
        let order = self.user_order(&query.sort);
        select(&self.users, &order, query)
    }

    pub fn list_groups(&self, query: &ListQuery<GroupField>) -> (usize, Vec<&Group>) {
        // A few thousand groups at most: sorting per request costs less than caching.
        let order = sorted_indices(&self.groups, &query.sort);
        select(&self.groups, &order, query)
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    pub fn members(&self, group_id: &str) -> Option<&BTreeSet<CompactString>> {
        self.members.get(group_id)
    }

    /// One page of a group's member ids and the member count; `None` for an unknown group.
    pub fn member_page(&self, group_id: &str, page: Page) -> Option<(usize, Vec<&str>)> {
        let members = self.members.get(group_id)?;
        let ids = members.iter().skip(page.skip).take(page.limit).map(CompactString::as_str).collect();
        Some((members.len(), ids))
    }

    /// One page of the ids of the groups a user is a direct member of, in group-id order, and
    /// their count; `None` for an unknown user.
    pub fn member_of_page(&self, user_id: &str, page: Page) -> Option<(usize, Vec<&str>)> {
        self.user_index(user_id)?;
        let mut groups: Vec<&str> =
            self.members.iter().filter(|(_, members)| members.contains(user_id)).map(|(g, _)| g.as_str()).collect();
        groups.sort_unstable();
        let total = groups.len();
        Some((total, groups.into_iter().skip(page.skip).take(page.limit).collect()))
    }

    fn users_changed(&mut self) {
        self.user_orders.get_mut().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn check_pair(&self, group_id: &str, user_id: &str) -> Result<(usize, usize), SimError> {
        let group = self.group_index(group_id).ok_or_else(|| SimError::UnknownGroup(group_id.to_owned()))?;
        let user = self.user_index(user_id).ok_or_else(|| SimError::UnknownUser(user_id.to_owned()))?;
        Ok((group, user))
    }

    /// Adds or removes a direct member; true if that changed the membership (an `association_change`
    /// event), false if the user already was (add) or was not (remove) a direct member.
    pub fn change_member(&mut self, by: Actor, op: MemberOp, group_id: &str, user_id: &str) -> Result<bool, SimError> {
        let (g, u) = self.check_pair(group_id, user_id)?;
        let members = self.members.entry(group_id.into()).or_default();
        let changed = match op {
            MemberOp::Add => members.insert(user_id.into()),
            MemberOp::Remove => members.remove(user_id),
        };
        if changed {
            self.events.association_changed(by, op, &self.groups[g], &self.users[u]);
        }
        Ok(changed)
    }

    fn check_unique_user(&self, user: &User, except: Option<usize>) -> Result<(), SimError> {
        let email = user.email.to_lowercase();
        let clash = self.users.iter().enumerate().find(|&(i, u)| {
            Some(i) != except && (u.id == user.id || u.username == user.username || u.email.to_lowercase() == email)
        });
        match clash {
            Some((_, u)) => Err(SimError::Conflict(format!("user {} ({}, {})", u.id, u.username, u.email))),
            None => Ok(()),
        }
    }

    /// `user_create`.
    pub fn add_user(&mut self, by: Actor, user: User) -> Result<String, SimError> {
        self.check_unique_user(&user, None)?;
        if self.group_index(&user.id).is_some() {
            return Err(SimError::Conflict(format!("id {}", user.id)));
        }
        self.events.user_created(by, &user);
        let id = user.id.to_string();
        let at = self.users.partition_point(|u| u.id < user.id);
        self.users.insert(at, user);
        self.users_changed();
        Ok(id)
    }

    /// Removes a user and its memberships: `user_delete` only, as JumpCloud (no
    /// `association_change` for the memberships that go with it). Users it managed keep their
    /// (now dangling) `manager`, as can happen in a real directory.
    pub fn remove_user(&mut self, by: Actor, id: &str) -> Result<User, SimError> {
        let i = self.user_index(id).ok_or_else(|| SimError::UnknownUser(id.to_owned()))?;
        let user = self.users.remove(i);
        for members in self.members.values_mut() {
            members.remove(id);
        }
        self.users_changed();
        self.events.user_deleted(by, &user);
        Ok(user)
    }

    /// Applies `change` to a user: `user_update` with the changed fields, nothing if none changed.
    /// The id cannot change; a change that would duplicate another user's username or email is
    /// refused and undone.
    pub fn update_user(&mut self, by: Actor, id: &str, change: impl FnOnce(&mut User)) -> Result<(), SimError> {
        let i = self.user_index(id).ok_or_else(|| SimError::UnknownUser(id.to_owned()))?;
        let mut updated = self.users[i].clone();
        change(&mut updated);
        updated.id = id.into();
        self.check_unique_user(&updated, Some(i))?;
        self.events.user_updated(by, &self.users[i], &updated);
        self.users[i] = updated;
        self.users_changed();
        Ok(())
    }

    fn check_unique_group(&self, group: &Group, except: Option<usize>) -> Result<(), SimError> {
        let clash = self
            .groups
            .iter()
            .enumerate()
            .find(|&(i, g)| Some(i) != except && (g.id == group.id || g.name == group.name));
        match clash {
            Some((_, g)) => Err(SimError::Conflict(format!("group {} ({})", g.id, g.name))),
            None => Ok(()),
        }
    }

    /// `user_group_create`.
    pub fn add_group(&mut self, by: Actor, group: Group) -> Result<String, SimError> {
        self.check_unique_group(&group, None)?;
        if self.user_index(&group.id).is_some() {
            return Err(SimError::Conflict(format!("id {}", group.id)));
        }
        self.events.group_created(by, &group);
        let id = group.id.to_string();
        let at = self.groups.partition_point(|g| g.id < group.id);
        self.members.insert(group.id.clone(), BTreeSet::new());
        self.groups.insert(at, group);
        Ok(id)
    }

    /// Removes a group and its memberships: `user_group_delete` only.
    pub fn remove_group(&mut self, by: Actor, id: &str) -> Result<Group, SimError> {
        let i = self.group_index(id).ok_or_else(|| SimError::UnknownGroup(id.to_owned()))?;
        self.members.remove(id);
        let group = self.groups.remove(i);
        self.events.group_deleted(by, &group);
        Ok(group)
    }

    /// Applies `change` to a group (rename, description...): `user_group_update` with the changed
    /// fields, nothing if none changed. The id cannot change; a name taken by another group is
    /// refused and undone.
    pub fn update_group(&mut self, by: Actor, id: &str, change: impl FnOnce(&mut Group)) -> Result<(), SimError> {
        let i = self.group_index(id).ok_or_else(|| SimError::UnknownGroup(id.to_owned()))?;
        let mut updated = self.groups[i].clone();
        change(&mut updated);
        updated.id = id.into();
        self.check_unique_group(&updated, Some(i))?;
        self.events.group_updated(by, &self.groups[i], &updated);
        self.groups[i] = updated;
        Ok(())
    }

    /// Drops the events stamped before `ms`; returns how many.
    pub fn expire_events_before(&mut self, ms: i64) -> usize {
        self.events.expire_before(ms)
    }
}

/// Direct access to one organization of a running simulator, bypassing the API (and its counts
/// and faults): to set up a test, or to simulate a change made outside the product.
#[derive(Clone)]
pub struct OrgHandle {
    pub(crate) index: usize,
    pub(crate) store: Arc<OrgStore>,
}

impl OrgHandle {
    /// Position of the organization in the list given to the simulator.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn api_key(&self) -> &str {
        &self.store.api_key
    }

    pub fn org_id(&self) -> Option<&str> {
        self.store.org_id.as_deref()
    }

    /// The organization as it is now (the same shape as a seed file).
    pub fn snapshot(&self) -> Org {
        self.store.snapshot()
    }

    pub fn user(&self, id: &str) -> Option<User> {
        self.store.read().user(id).cloned()
    }

    pub fn user_by_username(&self, username: &str) -> Option<User> {
        let data = self.store.read();
        data.users().iter().find(|u| u.username == username).cloned()
    }

    /// Emails compare without case, as in JumpCloud.
    pub fn user_by_email(&self, email: &str) -> Option<User> {
        let data = self.store.read();
        data.users().iter().find(|u| u.email.eq_ignore_ascii_case(email)).cloned()
    }

    pub fn group(&self, id: &str) -> Option<Group> {
        self.store.read().group(id).cloned()
    }

    pub fn group_by_name(&self, name: &str) -> Option<Group> {
        let data = self.store.read();
        data.groups().iter().find(|g| g.name == name).cloned()
    }

    /// Direct member ids of a group.
    pub fn members(&self, group_id: &str) -> Result<BTreeSet<String>, SimError> {
        self.store
            .read()
            .members(group_id)
            .map(|m| m.iter().map(CompactString::to_string).collect())
            .ok_or_else(|| SimError::UnknownGroup(group_id.to_owned()))
    }

    pub fn is_member(&self, group_id: &str, user_id: &str) -> Result<bool, SimError> {
        self.store
            .read()
            .members(group_id)
            .map(|m| m.contains(user_id))
            .ok_or_else(|| SimError::UnknownGroup(group_id.to_owned()))
    }

    /// True if the user was not a direct member before (and an `association_change` event was
    /// logged).
    pub fn add_member(&self, group_id: &str, user_id: &str) -> Result<bool, SimError> {
        self.store.write().change_member(Actor::Console, MemberOp::Add, group_id, user_id)
    }

    /// True if the user was a direct member before (and an `association_change` event was logged).
    pub fn remove_member(&self, group_id: &str, user_id: &str) -> Result<bool, SimError> {
        self.store.write().change_member(Actor::Console, MemberOp::Remove, group_id, user_id)
    }

    /// Adds a user (unique id, username and email required) and returns its id: `user_create`.
    pub fn add_user(&self, user: User) -> Result<String, SimError> {
        self.store.write().add_user(Actor::Console, user)
    }

    /// Removes a user and its memberships: `user_delete` (only).
    pub fn remove_user(&self, id: &str) -> Result<User, SimError> {
        self.store.write().remove_user(Actor::Console, id)
    }

    /// Changes a user in place (e.g. suspends it with
    /// [`set_state`](User::set_state)); the id cannot change. `user_update` listing the changed
    /// fields, or no event when nothing changed.
    pub fn update_user(&self, id: &str, change: impl FnOnce(&mut User)) -> Result<(), SimError> {
        self.store.write().update_user(Actor::Console, id, change)
    }

    /// Adds a group (unique id and name required) and returns its id: `user_group_create`.
    pub fn add_group(&self, group: Group) -> Result<String, SimError> {
        self.store.write().add_group(Actor::Console, group)
    }

    /// Removes a group and its memberships: `user_group_delete` (only).
    pub fn remove_group(&self, id: &str) -> Result<Group, SimError> {
        self.store.write().remove_group(Actor::Console, id)
    }

    /// Changes a group in place (e.g. renames it); the id cannot change, the name must stay
    /// unique. `user_group_update` listing the changed fields, or no event when nothing changed.
    pub fn update_group(&self, id: &str, change: impl FnOnce(&mut Group)) -> Result<(), SimError> {
        self.store.write().update_group(Actor::Console, id, change)
    }

    /// `user_group_update`, as [`update_group`](Self::update_group).
    pub fn set_group_method(&self, id: &str, method: MembershipMethod) -> Result<(), SimError> {
        self.update_group(id, |g| g.membership_method = method)
    }

    /// The Directory Insights events held, oldest first, as the API serves them (retention not
    /// applied). Empty until something changes after start.
    pub fn events(&self) -> Vec<Value> {
        self.store.read().events().all_json()
    }

    pub fn event_count(&self) -> usize {
        self.store.read().events().len()
    }

    /// The `organization` of this organization's events: its org id, or (without one) an id
    /// derived from its API key.
    pub fn event_org_id(&self) -> String {
        self.store.read().events().organization().to_owned()
    }

    /// Drops the events stamped before `before` (as if aged out of retention); returns how many.
    /// A client's cursor may then point at events that no longer exist.
    pub fn expire_events_before(&self, before: SystemTime) -> usize {
        self.store.write().expire_events_before(to_millis(before, true))
    }
}
