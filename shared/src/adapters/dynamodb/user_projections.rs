//! What the directory store's projected reads of users ask for and read back: a users part
//! compares hashes and managers and looks managers up by id and email, a members part reads ids
//! and emails, not whole users.

use crate::ports::StoredUserDigest;
use serde::Deserialize;
use std::collections::HashMap;

/// Attributes a read asks for, by placeholder (`id` and the like are not reserved words,
/// but placeholders keep any name safe).
pub(super) struct Projection {
    pub(super) expression: &'static str,
    names: &'static [(&'static str, &'static str)],
}

impl Projection {
    pub(super) fn names(&self) -> HashMap<String, String> {
        self.names.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }
}

/// A user item as `DIGEST` reads it.
#[derive(Deserialize)]
pub(super) struct DigestItem {
    id: String,
    h: u64,
    manager_id: Option<String>,
    manager_email: Option<String>,
}

impl DigestItem {
    pub(super) fn pair(self) -> (String, StoredUserDigest) {
        (self.id, StoredUserDigest { hash: self.h, manager_id: self.manager_id, manager_email: self.manager_email })
    }
}

/// A user item as `ID_AND_EMAIL` reads it.
#[derive(Deserialize)]
pub(super) struct EmailItem {
    pub(super) id: String,
    pub(super) email: String,
}

pub(super) const DIGEST: Projection = Projection {
    expression: "#id, #h, #mid, #memail",
    names: &[("#id", "id"), ("#h", "h"), ("#mid", "manager_id"), ("#memail", "manager_email")],
};
pub(super) const ID_AND_EMAIL: Projection =
    Projection { expression: "#id, #email", names: &[("#id", "id"), ("#email", "email")] };
