//! Turning JumpCloud's answers into the directory we store: canonical emails, managers resolved,
//! suspended users left out unless configured, requestability decided.

use crate::{
    config::DirectoryPolicy,
    domain::model::{DirectoryGroup, DirectorySnapshot, DirectoryUser, Membership, ObjectId},
    ports::{SourceGroup, SourceUser},
};
use std::collections::HashMap;

pub fn canonical_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

pub fn directory_group(group: &SourceGroup, policy: &DirectoryPolicy) -> DirectoryGroup {
    let membership_method = group.membership_method;
    DirectoryGroup {
        id: group.id.clone(),
        name: group.name.clone(),
        description: non_empty(&group.description),
        membership_method,
        requestable: !membership_method.is_dynamic() && policy.requestable_groups.contains(&group.name),
    }
}

/// Whom the user names as manager, an email or a JumpCloud id: the `MANAGER_ATTRIBUTE` custom
/// attribute, or JumpCloud's own `manager` field (an id) when the attribute is the default one and
/// no custom value is set.
pub fn manager_reference(user: &SourceUser, policy: &DirectoryPolicy) -> Option<String> {
    let raw = user
        .attribute(&policy.manager_attribute)
        .map(str::to_owned)
        .or_else(|| (policy.manager_attribute == "manager").then(|| non_empty(&user.manager)).flatten())?;
    Some(raw.trim().to_owned())
}

/// A user as stored, with its manager (id, canonical email) as the caller resolved it.
pub fn directory_user(user: SourceUser, manager: Option<(String, String)>) -> DirectoryUser {
    let state = user.state;
    let SourceUser {
        id, email, username, first_name, last_name, job_title, department, location, employee_type, ..
    } = user;
    // Trimmed, and a value that needs no trimming kept as it is (no copy a field).
    let present = |v: Option<String>| {
        v.and_then(|s| match s.trim() {
            "" => None,
            trimmed if trimmed.len() == s.len() => Some(s),
            trimmed => Some(trimmed.to_owned()),
        })
    };
    let (manager_id, manager_email) = manager.unzip();
    DirectoryUser {
        id,
        email: canonical_email(&email),
        username,
        first_name: present(first_name),
        last_name: present(last_name),
        job_title: present(job_title),
        department: present(department),
        location: present(location),
        employee_type: present(employee_type),
        manager_id,
        manager_email,
        state,
    }
}

/// Builds the snapshot to store from what JumpCloud returned. Takes users and members by value:
/// their strings move into the snapshot rather than being copied (large directories, small Lambdas).
pub fn build_snapshot(
    users: Vec<SourceUser>,
    groups: &[SourceGroup],
    members: Vec<(String, Vec<ObjectId>)>,
    policy: &DirectoryPolicy,
) -> DirectorySnapshot {
    // Each user's manager among the fetched users, by id or canonical email (`manager_reference`).
    let managers: Vec<Option<usize>> = {
        let by_id: HashMap<&str, usize> = users.iter().enumerate().map(|(i, u)| (u.id.as_str(), i)).collect();
        let by_email: HashMap<String, usize> =
            users.iter().enumerate().map(|(i, u)| (canonical_email(&u.email), i)).collect();
        users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let raw = manager_reference(user, policy)?;
                by_id.get(raw.as_str()).or_else(|| by_email.get(&canonical_email(&raw))).copied().filter(|m| *m != i)
            })
            .collect()
    };
    let identities: Vec<(String, String)> = managers
        .iter()
        .map(|m| m.map(|m| (users[m].id.clone(), canonical_email(&users[m].email))).unwrap_or_default())
        .collect();

    let mut snapshot = DirectorySnapshot::default();
    snapshot.users.reserve(users.len());
    for ((user, manager), (manager_id, manager_email)) in users.into_iter().zip(managers).zip(identities) {
        if !policy.include_suspended_users && user.is_suspended() {
            continue;
        }
        let manager = manager.map(|_| (manager_id, manager_email));
        snapshot.users.insert(user.id.clone(), directory_user(user, manager));
    }
    for group in groups {
        snapshot.groups.insert(group.id.clone(), directory_group(group, policy));
    }
    for (group_id, user_ids) in members {
        if !snapshot.groups.contains_key(&group_id) {
            continue;
        }
        let group_id = ObjectId::new(&group_id);
        for user_id in user_ids.into_iter().filter(|u| snapshot.users.contains_key(&u.to_string())) {
            snapshot.memberships.insert(Membership { group_id: group_id.clone(), user_id });
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::GroupScope,
        domain::model::{MembershipMethod, UserState},
        ports::UserAttribute,
    };

    fn jc_user(id: &str, email: &str) -> SourceUser {
        SourceUser {
            id: id.into(),
            username: id.into(),
            email: email.into(),
            first_name: Some("A".into()),
            last_name: Some(" ".into()),
            job_title: None,
            department: None,
            location: None,
            employee_type: None,
            manager: None,
            state: UserState::Activated,
            attributes: vec![],
        }
    }

    fn jc_group(id: &str, name: &str, membership_method: MembershipMethod) -> SourceGroup {
        SourceGroup { id: id.into(), name: name.into(), description: None, membership_method }
    }

    #[test]
    fn emails_are_canonical_and_blank_fields_dropped() {
        let s = build_snapshot(vec![jc_user("u1", " Alice@Corp.COM ")], &[], vec![], &DirectoryPolicy::default());
        let u = &s.users["u1"];
        assert_eq!(u.email, "alice@corp.com");
        assert_eq!(u.last_name, None);
    }

    #[test]
    fn managers_resolve_by_email_attribute_or_builtin_id() {
        let boss = jc_user("b1", "boss@corp.com");
        let mut by_attr = jc_user("u1", "a@corp.com");
        by_attr.attributes = vec![UserAttribute { name: "manager".into(), value: Some("BOSS@corp.com".into()) }];
        let mut by_field = jc_user("u2", "b@corp.com");
        by_field.manager = Some("b1".into());
        let mut dangling = jc_user("u3", "c@corp.com");
        dangling.manager = Some("nobody".into());
        let s = build_snapshot(vec![boss, by_attr, by_field, dangling], &[], vec![], &DirectoryPolicy::default());
        assert_eq!(s.users["u1"].manager_id.as_deref(), Some("b1"));
        assert_eq!(s.users["u1"].manager_email.as_deref(), Some("boss@corp.com"));
        assert_eq!(s.users["u2"].manager_id.as_deref(), Some("b1"));
        assert_eq!(s.users["u3"].manager_id, None);
    }

    #[test]
    fn custom_manager_attribute_is_honoured() {
        let boss = jc_user("b1", "boss@corp.com");
        let mut u = jc_user("u1", "a@corp.com");
        u.manager = Some("b1".into()); // ignored: the policy names another attribute
        u.attributes = vec![UserAttribute { name: "supervisor".into(), value: Some("b1".into()) }];
        let mut other = jc_user("u2", "b@corp.com");
        other.manager = Some("b1".into());
        let policy = DirectoryPolicy { manager_attribute: "supervisor".into(), ..DirectoryPolicy::default() };
        let s = build_snapshot(vec![boss, u, other], &[], vec![], &policy);
        assert_eq!(s.users["u1"].manager_id.as_deref(), Some("b1"));
        assert_eq!(s.users["u2"].manager_id, None);
    }

    #[test]
    fn suspended_users_and_their_memberships_are_left_out_unless_configured() {
        let mut sus = jc_user("u2", "s@corp.com");
        sus.state = UserState::Suspended;
        let users = vec![jc_user("u1", "a@corp.com"), sus];
        let groups = [jc_group("g1", "admins", MembershipMethod::Static)];
        let members = vec![("g1".to_string(), vec![ObjectId::new("u1"), ObjectId::new("u2")])];
        let s = build_snapshot(users.clone(), &groups, members.clone(), &DirectoryPolicy::default());
        assert_eq!((s.users.len(), s.memberships.len()), (1, 1));
        let policy = DirectoryPolicy { include_suspended_users: true, ..DirectoryPolicy::default() };
        let s = build_snapshot(users, &groups, members, &policy);
        assert_eq!((s.users.len(), s.memberships.len()), (2, 2));
        assert_eq!(s.users["u2"].state, UserState::Suspended);
    }

    #[test]
    fn dynamic_and_out_of_scope_groups_are_not_requestable() {
        let policy =
            DirectoryPolicy { requestable_groups: GroupScope::parse("prod-*").unwrap(), ..DirectoryPolicy::default() };
        let groups = [
            jc_group("g1", "prod-db", MembershipMethod::Static),
            jc_group("g2", "prod-auto", MembershipMethod::DynamicAutomated),
            jc_group("g3", "prod-review", MembershipMethod::DynamicReviewRequired),
            jc_group("g4", "dev", MembershipMethod::Static),
        ];
        let s = build_snapshot(vec![], &groups, vec![], &policy);
        let requestable: Vec<&str> =
            ["g1", "g2", "g3", "g4"].into_iter().filter(|g| s.groups[*g].requestable).collect();
        assert_eq!(requestable, vec!["g1"]);
    }
}
