//! Deterministic generation of realistic organizations of any size.
//!
//! The same [`GenerateSpec`] always gives the same [`Org`] (with this crate's version of `rand`),
//! so that tests and the local walk-through can name users and groups that will exist.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::{index, IndexedRandom};
use rand::{Rng, SeedableRng};

use compact_str::{format_compact, CompactString, ToCompactString};

use crate::ids::{object_id, rfc3339};
use crate::model::{Attribute, Group, MembershipMethod, Org, User, UserState};

/// What to generate. `Default` gives a small organization suited to tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSpec {
    pub users: usize,
    pub groups: usize,
    /// Average number of direct members per group; sizes vary between 0 and about twice this.
    pub avg_members: usize,
    pub seed: u64,
    pub api_key: String,
    pub org_id: Option<String>,
}

impl Default for GenerateSpec {
    fn default() -> Self {
        GenerateSpec {
            users: 200,
            groups: 20,
            avg_members: 10,
            seed: 1,
            api_key: "sim-api-key".to_owned(),
            org_id: None,
        }
    }
}

/// Groups that exist (in this order) in every generated organization with enough groups, so that
/// tests and documentation can name them. `engineering` is made large enough to need several
/// pages of members when the organization allows it.
pub const FIXED_GROUPS: [(&str, MembershipMethod); 5] = [
    ("prod-db-admins", MembershipMethod::Static),
    ("engineering", MembershipMethod::Static),
    ("oncall-sre", MembershipMethod::Static),
    ("all-staff", MembershipMethod::DynamicAutomated),
    ("finance-approvers", MembershipMethod::DynamicReviewRequired),
];

const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "karl", "laura", "mallory",
    "nina", "oscar", "peggy", "quentin", "rupert", "sybil", "trent", "ursula", "victor", "walter", "xena", "yusuf",
    "zoe", "amir", "bea", "chen", "dmitri", "elena", "fatima", "gustavo", "hana", "ines", "jonas", "keiko", "luis",
    "maya", "noah",
];
const LAST_NAMES: &[&str] = &[
    "smith", "johnson", "garcia", "miller", "davis", "martinez", "lopez", "wilson", "anderson", "thomas", "taylor",
    "moore", "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "clark", "lewis", "robinson",
    "walker", "young", "king", "wright", "scott", "nguyen", "hill", "adams", "baker", "nelson", "carter", "mitchell",
    "roberts", "turner", "phillips", "campbell", "parker", "evans",
];
/// Departments and the job titles found in each.
const DEPARTMENTS: &[(&str, &[&str])] = &[
    ("Engineering", &["Software Engineer", "Senior Software Engineer", "Staff Engineer", "Engineering Manager"]),
    ("Platform", &["Site Reliability Engineer", "Platform Engineer", "Platform Lead"]),
    ("Security", &["Security Engineer", "Security Analyst", "CISO"]),
    ("Data", &["Data Engineer", "Data Scientist", "Analytics Manager"]),
    ("Product", &["Product Manager", "Product Designer", "Head of Product"]),
    ("Sales", &["Account Executive", "Sales Engineer", "Sales Director"]),
    ("Support", &["Support Engineer", "Support Lead"]),
    ("Finance", &["Accountant", "Financial Analyst", "Controller"]),
    ("People", &["Recruiter", "HR Business Partner"]),
    ("Legal", &["Counsel", "Paralegal"]),
];
const LOCATIONS: &[&str] = &["Remote", "New York", "London", "Berlin", "Denver", "Singapore", "Toronto"];
const ENVIRONMENTS: &[&str] = &["prod", "staging", "dev", "corp"];
const RESOURCES: &[&str] = &["db", "k8s", "aws", "vpn", "billing", "analytics", "ci", "support", "grafana", "vault"];
const ROLES: &[&str] = &["admins", "readonly", "operators", "users", "break-glass"];

/// Share of users per state, and of groups per membership method (the rest are plain).
const SUSPENDED_SHARE: f64 = 0.03;
const STAGED_SHARE: f64 = 0.04;
const DYNAMIC_SHARE: f64 = 0.05;
const NOTSET_SHARE: f64 = 0.03;
const EMPTY_SHARE: f64 = 0.03;
/// Average number of reports per manager.
const FANOUT: usize = 8;
/// Size of the group forced above one page of members when the organization is big enough.
const BIG_GROUP: usize = 150;
const MAX_PAGE: usize = 100;
/// 2021-01-01T00:00:00Z: generated objects are created over the following three years.
const EPOCH: u64 = 1_609_459_200;
const SPAN_SECS: u64 = 3 * 365 * 86_400;

impl Org {
    /// Generates an organization:
    /// - users `first.last.N` with email `first.last.N@example.com` (unique, lowercase), names,
    ///   departments, job titles, locations, employee types; about 3% `SUSPENDED` and 4% `STAGED`;
    /// - a hierarchy: all but the first `users / 1000` (at least one) report to an earlier user,
    ///   given as `manager` (its id) and as the custom attribute `manager` (its email); about 40%
    ///   also carry `costCenter`, 10% `githubUsername`;
    /// - groups: [`FIXED_GROUPS`] first, then `env-resource-role-NNNN`; about 5% dynamic (both
    ///   kinds) and 3% `NOTSET`, the rest `STATIC`;
    /// - direct members: 0 to about twice the average per group; about 3% of the non-fixed groups
    ///   (and always the last of them) empty; `engineering` above one page when the totals allow
    ///   it; about `groups × avg_members` in all.
    pub fn generate(spec: &GenerateSpec) -> Org {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let users = generate_users(spec.users, &mut rng);
        let groups = generate_groups(spec.groups, spec.users as u32, &mut rng);
        let sizes = group_sizes(spec, &mut rng);
        let mut org = Org::new(spec.api_key.clone());
        org.org_id = spec.org_id.clone();
        for (group, size) in groups.iter().zip(sizes) {
            if size == 0 {
                continue;
            }
            // Floyd's or a partial shuffle, whichever is cheaper: fast for 100 out of 50,000.
            let members: BTreeSet<CompactString> =
                index::sample(&mut rng, users.len(), size).into_iter().map(|i| users[i].id.clone()).collect();
            org.memberships.insert(group.id.clone(), members);
        }
        org.users = users;
        org.groups = groups;
        org
    }
}

fn created_at(i: usize, n: usize) -> u64 {
    EPOCH + SPAN_SECS * i as u64 / n.max(1) as u64
}

fn generate_users(n: usize, rng: &mut StdRng) -> Vec<User> {
    let creator: u64 = rng.random();
    // A handful of people at the top of the hierarchy; everyone else reports to an earlier user,
    // so that the hierarchy has no cycles and every manager resolves.
    let tops = (n / 1000).max(1);
    let mut users: Vec<User> = Vec::with_capacity(n);
    for i in 0..n {
        let first = *FIRST_NAMES.choose(rng).expect("non-empty");
        let last = *LAST_NAMES.choose(rng).expect("non-empty");
        // The index makes usernames and emails unique however many users share a name.
        let username = format_compact!("{first}.{last}.{i}");
        let (department, titles) = *DEPARTMENTS.choose(rng).expect("non-empty");
        let created = created_at(i, n);
        let state = match rng.random::<f64>() {
            r if r < SUSPENDED_SHARE => UserState::Suspended,
            r if r < SUSPENDED_SHARE + STAGED_SHARE => UserState::Staged,
            _ => UserState::Activated,
        };
        let mut user = User {
            id: object_id(created as u32, creator, i as u32).into(),
            email: format_compact!("{username}@example.com"),
            username,
            firstname: capitalize(first),
            lastname: capitalize(last),
            displayname: format_compact!("{} {}", capitalize(first), capitalize(last)),
            job_title: (*titles.choose(rng).expect("non-empty")).into(),
            department: department.into(),
            location: (*LOCATIONS.choose(rng).expect("non-empty")).into(),
            employee_type: employee_type(rng).into(),
            manager: None,
            state: UserState::Activated,
            suspended: false,
            activated: true,
            attributes: Vec::new(),
            created: rfc3339(created).into(),
        };
        user.set_state(state);
        if i >= tops {
            let m = rng.random_range(0..(i / FANOUT).max(1));
            user.manager = Some(users[m].id.clone());
            user.attributes.push(Attribute::new("manager", users[m].email.clone()));
        }
        if rng.random_bool(0.4) {
            let cost_center = format_compact!("CC-{:04}", rng.random_range(1000..10_000));
            user.attributes.push(Attribute::new("costCenter", cost_center));
        }
        if rng.random_bool(0.1) {
            user.attributes.push(Attribute::new("githubUsername", format_compact!("{first}{last}{i}")));
        }
        // A pushed-to Vec keeps room for 4: a million times 1 to 3 unused slots.
        user.attributes.shrink_to_fit();
        users.push(user);
    }
    users
}

fn employee_type(rng: &mut StdRng) -> &'static str {
    match rng.random_range(0..100) {
        0..80 => "Full-Time",
        80..92 => "Contractor",
        92..97 => "Part-Time",
        _ => "Intern",
    }
}

fn capitalize(s: &str) -> CompactString {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => CompactString::default(),
    }
}

fn generate_groups(n: usize, first_counter: u32, rng: &mut StdRng) -> Vec<Group> {
    let creator: u64 = rng.random();
    (0..n)
        .map(|i| {
            let created = created_at(i, n);
            let (name, method) = match FIXED_GROUPS.get(i) {
                Some((name, method)) => ((*name).to_compact_string(), *method),
                None => {
                    let name = format_compact!(
                        "{}-{}-{}-{i:04}",
                        ENVIRONMENTS.choose(rng).expect("non-empty"),
                        RESOURCES.choose(rng).expect("non-empty"),
                        ROLES.choose(rng).expect("non-empty"),
                    );
                    let method = match rng.random::<f64>() {
                        r if r < DYNAMIC_SHARE / 2.0 => MembershipMethod::DynamicAutomated,
                        r if r < DYNAMIC_SHARE => MembershipMethod::DynamicReviewRequired,
                        r if r < DYNAMIC_SHARE + NOTSET_SHARE => MembershipMethod::NotSet,
                        _ => MembershipMethod::Static,
                    };
                    (name, method)
                }
            };
            let email =
                if rng.random_bool(0.3) { format_compact!("{name}@example.com") } else { CompactString::default() };
            Group {
                id: object_id(created as u32, creator, first_counter.wrapping_add(i as u32)).into(),
                description: format_compact!("Access group {name}"),
                name,
                email,
                membership_method: method,
            }
        })
        .collect()
}

/// Member counts: uniform between 0 and twice the average, a few forced empty, and (when the
/// organization is big enough) `engineering` above one page; the others are then scaled so that
/// the total stays close to `groups × avg_members`.
fn group_sizes(spec: &GenerateSpec, rng: &mut StdRng) -> Vec<usize> {
    let n = spec.groups;
    let target = n * spec.avg_members;
    let mut sizes: Vec<usize> = (0..n)
        .map(|i| {
            let forced_empty = i >= FIXED_GROUPS.len() && (i == n - 1 || rng.random_bool(EMPTY_SHARE));
            if forced_empty {
                0
            } else {
                rng.random_range(0..=2 * spec.avg_members)
            }
        })
        .collect();
    let big = if n > 1 && spec.users > MAX_PAGE && target >= 3 * BIG_GROUP && sizes.iter().all(|&s| s <= MAX_PAGE) {
        sizes[1] = BIG_GROUP.min(spec.users);
        Some(1)
    } else {
        None
    };
    let fixed: usize = big.map_or(0, |b| sizes[b]);
    let others: usize = sizes.iter().enumerate().filter(|&(i, _)| Some(i) != big).map(|(_, s)| s).sum();
    if others > 0 {
        let scale = target.saturating_sub(fixed) as f64 / others as f64;
        for (i, s) in sizes.iter_mut().enumerate() {
            if Some(i) != big {
                *s = (*s as f64 * scale).round() as usize;
            }
        }
    }
    for s in &mut sizes {
        *s = (*s).min(spec.users);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn spec(users: usize, groups: usize, avg: usize, seed: u64) -> GenerateSpec {
        GenerateSpec { users, groups, avg_members: avg, seed, ..GenerateSpec::default() }
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        let a = Org::generate(&spec(300, 30, 20, 7));
        let b = Org::generate(&spec(300, 30, 20, 7));
        let c = Org::generate(&spec(300, 30, 20, 8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn generated_orgs_have_the_promised_shape() {
        let s = spec(2000, 200, 40, 42);
        let org = Org::generate(&s);
        org.validate().unwrap();
        assert_eq!(org.users.len(), 2000);
        assert_eq!(org.groups.len(), 200);

        let ids: HashSet<&str> = org.users.iter().map(|u| u.id.as_str()).collect();
        assert!(org.users.iter().all(|u| crate::ids::is_object_id(&u.id)));
        assert!(org.groups.iter().all(|g| crate::ids::is_object_id(&g.id)));
        let emails: HashSet<CompactString> = org.users.iter().map(|u| u.email.to_lowercase()).collect();
        assert_eq!(emails.len(), 2000);

        let suspended = org.users.iter().filter(|u| u.suspended).count();
        assert!((20..=120).contains(&suspended), "{suspended} suspended");
        assert!(org.users.iter().filter(|u| u.suspended).all(|u| u.state == UserState::Suspended));
        assert!(org.users.iter().any(|u| u.state == UserState::Staged));

        // Every non-top user has a manager that resolves, mirrored in the `manager` attribute.
        let with_manager: Vec<&User> = org.users.iter().filter(|u| u.manager.is_some()).collect();
        assert_eq!(with_manager.len(), 2000 - 2);
        for u in with_manager {
            let m = org.user(u.manager.as_deref().unwrap()).expect("manager exists");
            assert_eq!(u.attribute("manager"), Some(m.email.as_str()));
            assert!(ids.contains(m.id.as_str()));
        }
        assert!(org.users.iter().any(|u| u.attribute("costCenter").is_some()));

        let dynamic = org.groups.iter().filter(|g| g.membership_method.is_dynamic()).count();
        assert!((3..=30).contains(&dynamic), "{dynamic} dynamic");
        for (name, method) in FIXED_GROUPS {
            assert_eq!(org.group_by_name(name).unwrap().membership_method, method);
        }
        let names: HashSet<&str> = org.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names.len(), 200);

        let sizes: Vec<usize> = org.groups.iter().map(|g| org.members(&g.id).len()).collect();
        let total: usize = sizes.iter().sum();
        let target = 200 * 40;
        assert!(total.abs_diff(target) <= target / 10, "{total} memberships");
        assert!(sizes.contains(&0));
        assert!(sizes.iter().any(|&s| s > 100));
        assert!(sizes.iter().all(|&s| s <= 2 * 40 + 10 || s == BIG_GROUP));
    }

    #[test]
    fn big_averages_vary_naturally_above_one_page() {
        let org = Org::generate(&spec(5000, 50, 100, 3));
        let sizes: Vec<usize> = org.groups.iter().map(|g| org.members(&g.id).len()).collect();
        assert!(sizes.iter().filter(|&&s| s > 100).count() > 10);
        assert!(sizes.contains(&0));
    }

    #[test]
    fn tiny_specs_do_not_panic() {
        for (u, g, a) in [(0, 0, 0), (0, 3, 5), (1, 1, 1), (3, 10, 50)] {
            let org = Org::generate(&spec(u, g, a, 1));
            org.validate().unwrap();
            assert_eq!((org.users.len(), org.groups.len()), (u, g));
        }
    }

    #[test]
    fn fifty_thousand_users_generate() {
        // Size check only: speed is visible in the test's duration, not asserted.
        let org = Org::generate(&spec(50_000, 2_000, 100, 9));
        assert_eq!(org.users.len(), 50_000);
        let total: usize = org.memberships.values().map(BTreeSet::len).sum();
        assert!(total.abs_diff(200_000) < 20_000, "{total}");
    }
}
