//! What a list request asks for: `limit`, `skip`, `sort`, `fields` and `filter`, in the two
//! dialects of JumpCloud's APIs.
//!
//! API 1.0: `sort` and `fields` are space separated, filters are `field:$op:value` and may be
//! given as `filter`, `filter[0]`, `filter[1]`... (ANDed) or `filter[or][0]`... (ORed).
//! API 2.0: `sort` and `fields` are comma separated, filters are `field:op:value`, repeated
//! `filter` parameters are ANDed. Both dialects accept either separator for `sort` and `fields`.
//! Empty values (`sort=&fields=`, as JumpCloud's own code samples send) count as absent.

use std::borrow::Cow;
use std::hash::Hash;

use crate::error::ApiError;
use crate::model::{Group, User};

/// JumpCloud's page size limit ("Limited to 100").
pub const MAX_LIMIT: usize = 100;
/// JumpCloud's default page size.
pub const DEFAULT_LIMIT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    V1,
    V2,
}

/// A field of a listed object that can be sorted and filtered on.
pub(crate) trait Field: Copy + Eq + Hash + Sized {
    type Item;
    fn parse(name: &str) -> Option<Self>;
    fn get(self, item: &Self::Item) -> Cow<'_, str>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UserField {
    Id,
    Username,
    Email,
    Firstname,
    Lastname,
    Displayname,
    JobTitle,
    Department,
    Location,
    EmployeeType,
    Manager,
    State,
    Suspended,
    Activated,
    Created,
}

impl Field for UserField {
    type Item = User;

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "_id" | "id" => UserField::Id,
            "username" => UserField::Username,
            "email" => UserField::Email,
            "firstname" => UserField::Firstname,
            "lastname" => UserField::Lastname,
            "displayname" => UserField::Displayname,
            "jobTitle" => UserField::JobTitle,
            "department" => UserField::Department,
            "location" => UserField::Location,
            "employeeType" => UserField::EmployeeType,
            "manager" => UserField::Manager,
            "state" => UserField::State,
            "suspended" => UserField::Suspended,
            "activated" => UserField::Activated,
            "created" => UserField::Created,
            _ => return None,
        })
    }

    fn get(self, u: &User) -> Cow<'_, str> {
        let s: &str = match self {
            UserField::Id => &u.id,
            UserField::Username => &u.username,
            UserField::Email => &u.email,
            UserField::Firstname => &u.firstname,
            UserField::Lastname => &u.lastname,
            UserField::Displayname => &u.displayname,
            UserField::JobTitle => &u.job_title,
            UserField::Department => &u.department,
            UserField::Location => &u.location,
            UserField::EmployeeType => &u.employee_type,
            UserField::Manager => u.manager.as_deref().unwrap_or(""),
            UserField::State => u.state.as_str(),
            UserField::Suspended => bool_str(u.suspended),
            UserField::Activated => bool_str(u.activated),
            UserField::Created => &u.created,
        };
        Cow::Borrowed(s)
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GroupField {
    Id,
    Name,
    Description,
    Email,
    MembershipMethod,
    Type,
}

impl Field for GroupField {
    type Item = Group;

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" | "_id" => GroupField::Id,
            "name" => GroupField::Name,
            "description" => GroupField::Description,
            "email" => GroupField::Email,
            "membershipMethod" => GroupField::MembershipMethod,
            "type" => GroupField::Type,
            _ => return None,
        })
    }

    fn get(self, g: &Group) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            GroupField::Id => &g.id,
            GroupField::Name => &g.name,
            GroupField::Description => &g.description,
            GroupField::Email => &g.email,
            GroupField::MembershipMethod => g.membership_method.as_str(),
            GroupField::Type => "user_group",
        })
    }
}

/// `limit` and `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub limit: usize,
    pub skip: usize,
}

impl Page {
    pub fn parse(params: &[(String, String)]) -> Result<Page, ApiError> {
        let limit = match last(params, "limit") {
            None => DEFAULT_LIMIT,
            Some(v) => {
                let n = parse_count("limit", v)?;
                if n > MAX_LIMIT {
                    return Err(ApiError::bad_request(format!("limit: Limited to {MAX_LIMIT}")));
                }
                n
            }
        };
        let skip = match last(params, "skip") {
            None => 0,
            Some(v) => parse_count("skip", v)?,
        };
        Ok(Page { limit, skip })
    }

    /// Whether the `position`th match (0-based) belongs to this page.
    pub fn contains(&self, position: usize) -> bool {
        position >= self.skip && position - self.skip < self.limit
    }
}

fn parse_count(name: &str, value: &str) -> Result<usize, ApiError> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| ApiError::bad_request(format!("{name}: must be a non-negative integer, got {value:?}")))
}

/// The last non-empty value of a parameter.
fn last<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SortKey<F> {
    pub field: F,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter<F> {
    pub field: F,
    pub op: Op,
    pub value: String,
}

impl<F: Field> Filter<F> {
    fn matches(&self, item: &F::Item) -> bool {
        let actual = self.field.get(item);
        match self.op {
            Op::Eq => actual == self.value.as_str(),
            Op::Ne => actual != self.value.as_str(),
        }
    }
}

/// Everything a list request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery<F> {
    pub page: Page,
    pub sort: Vec<SortKey<F>>,
    /// Fields to return (besides the ids); `None` returns every field.
    pub fields: Option<Vec<String>>,
    /// ANDed.
    pub all: Vec<Filter<F>>,
    /// ORed (API 1.0's `filter[or][N]`); empty means no constraint.
    pub any: Vec<Filter<F>>,
}

impl<F: Field> ListQuery<F> {
    pub fn parse(params: &[(String, String)], dialect: Dialect) -> Result<Self, ApiError> {
        let page = Page::parse(params)?;
        let sort = match last(params, "sort") {
            None => Vec::new(),
            Some(v) => split_list(v).map(parse_sort_key).collect::<Result<_, _>>()?,
        };
        let fields = fields_param(params);
        if last(params, "search").is_some() {
            return Err(ApiError::bad_request("search: not supported by the simulator; use filter"));
        }
        let mut all = Vec::new();
        let mut any = Vec::new();
        for (key, value) in params {
            if value.trim().is_empty() {
                continue;
            }
            match (dialect, filter_kind(key)) {
                (_, None) => {}
                (Dialect::V2, Some(FilterKind::And)) if key == "filter" => all.push(parse_filter(value, dialect)?),
                (Dialect::V1, Some(FilterKind::And)) => all.push(parse_filter(value, dialect)?),
                (Dialect::V1, Some(FilterKind::Or)) => any.push(parse_filter(value, dialect)?),
                (Dialect::V2, Some(_)) => {
                    return Err(ApiError::bad_request(format!("{key}: API 2.0 takes repeated `filter` parameters")))
                }
            }
        }
        Ok(ListQuery { page, sort, fields, all, any })
    }

    pub fn matches(&self, item: &F::Item) -> bool {
        self.all.iter().all(|f| f.matches(item)) && (self.any.is_empty() || self.any.iter().any(|f| f.matches(item)))
    }

    pub fn is_unfiltered(&self) -> bool {
        self.all.is_empty() && self.any.is_empty()
    }
}

/// The `fields` asked for; `None` (every field) when absent or empty.
pub(crate) fn fields_param(params: &[(String, String)]) -> Option<Vec<String>> {
    last(params, "fields").map(|v| split_list(v).map(str::to_owned).collect())
}

enum FilterKind {
    And,
    Or,
}

/// `filter`, `filter[N]` (AND) or `filter[or][N]` (OR).
fn filter_kind(key: &str) -> Option<FilterKind> {
    let rest = key.strip_prefix("filter")?;
    if rest.is_empty() {
        return Some(FilterKind::And);
    }
    let index_ok =
        |s: &str| s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).is_some_and(|n| n.parse::<usize>().is_ok());
    if let Some(or) = rest.strip_prefix("[or]") {
        return index_ok(or).then_some(FilterKind::Or);
    }
    index_ok(rest).then_some(FilterKind::And)
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty())
}

fn parse_sort_key<F: Field>(s: &str) -> Result<SortKey<F>, ApiError> {
    let (name, descending) = match s.strip_prefix('-') {
        Some(name) => (name, true),
        None => (s, false),
    };
    let field = F::parse(name).ok_or_else(|| ApiError::bad_request(format!("sort: unsupported field {name:?}")))?;
    Ok(SortKey { field, descending })
}

/// `field:op:value`; the value may itself contain colons.
fn parse_filter<F: Field>(s: &str, dialect: Dialect) -> Result<Filter<F>, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("filter {s:?}: {why}"));
    let mut parts = s.splitn(3, ':');
    let (Some(name), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected <field>:<operator>:<value>"));
    };
    let field = F::parse(name).ok_or_else(|| bad("unsupported field"))?;
    let op = match (dialect, op) {
        (Dialect::V1, "$eq") | (Dialect::V2, "eq") => Op::Eq,
        (Dialect::V1, "$ne") | (Dialect::V2, "ne") => Op::Ne,
        (Dialect::V1, _) => return Err(bad("supported operators are $eq and $ne")),
        (Dialect::V2, _) => return Err(bad("supported operators are eq and ne")),
    };
    Ok(Filter { field, op, value: value.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn page_defaults_and_limits() {
        assert_eq!(Page::parse(&[]).unwrap(), Page { limit: 10, skip: 0 });
        assert_eq!(Page::parse(&params(&[("limit", "100")])).unwrap().limit, 100);
        assert_eq!(Page::parse(&params(&[("limit", "")])).unwrap().limit, 10);
        for bad in [("limit", "101"), ("limit", "-1"), ("limit", "x"), ("skip", "-5")] {
            let err = Page::parse(&params(&[bad])).unwrap_err();
            assert_eq!(err.status.as_u16(), 400, "{bad:?}");
        }
    }

    #[test]
    fn v1_filters_and_sorts() {
        let q = ListQuery::<UserField>::parse(
            &params(&[
                ("filter", "email:$eq:a@x.com"),
                ("filter[1]", "state:$ne:SUSPENDED"),
                ("filter[or][0]", "department:$eq:A:B"),
                ("sort", "-username _id"),
                ("fields", "email username"),
            ]),
            Dialect::V1,
        )
        .unwrap();
        assert_eq!(q.all.len(), 2);
        assert_eq!(q.any[0].value, "A:B");
        assert_eq!(
            q.sort,
            vec![
                SortKey { field: UserField::Username, descending: true },
                SortKey { field: UserField::Id, descending: false }
            ]
        );
        assert_eq!(q.fields.unwrap(), ["email", "username"]);
        for bad in ["email:eq:x", "nope:$eq:x", "email", "email:$gt:x"] {
            assert!(ListQuery::<UserField>::parse(&params(&[("filter", bad)]), Dialect::V1).is_err(), "{bad}");
        }
    }

    #[test]
    fn v2_filters_and_sorts() {
        let q = ListQuery::<GroupField>::parse(
            &params(&[("filter", "name:eq:Test Group"), ("sort", "-name,id")]),
            Dialect::V2,
        )
        .unwrap();
        assert_eq!(q.all[0].value, "Test Group");
        assert_eq!(q.sort.len(), 2);
        assert!(ListQuery::<GroupField>::parse(&params(&[("filter", "name:$eq:x")]), Dialect::V2).is_err());
        assert!(ListQuery::<GroupField>::parse(&params(&[("sort", "bogus")]), Dialect::V2).is_err());
    }
}
