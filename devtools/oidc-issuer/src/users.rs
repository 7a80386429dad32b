//! Who may sign in: a fixed list, or the JumpCloud simulator's users, read from its admin endpoint
//! (`GET /_sim/orgs/{index}/users`) each time the sign-in form is shown, so users added to the
//! simulator later can sign in too.

use serde::{Deserialize, Serialize};

/// A person the sign-in form offers, and the claims their ID token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInUser {
    /// `sub`: the JumpCloud user id when read from the simulator.
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
}

impl SignInUser {
    /// A user with a verified email and no other claims.
    pub fn new(sub: impl Into<String>, email: impl Into<String>) -> Self {
        Self { sub: sub.into(), email: email.into(), email_verified: true, name: None, preferred_username: None }
    }
}

#[derive(Debug, Clone)]
pub enum UserSource {
    Static(Vec<SignInUser>),
    /// The activated users of organization `org` of the simulator at `url` (JumpCloud lets no
    /// suspended or staged user sign in).
    Simulator {
        url: String,
        org: usize,
    },
}

/// A user as the simulator's admin endpoint answers it (JumpCloud's field names).
#[derive(Deserialize)]
struct SimUser {
    #[serde(rename = "_id")]
    id: String,
    email: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    firstname: Option<String>,
    #[serde(default)]
    lastname: Option<String>,
    #[serde(default)]
    displayname: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    suspended: bool,
}

impl From<SimUser> for SignInUser {
    fn from(u: SimUser) -> Self {
        let full = [u.firstname.as_deref(), u.lastname.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
        let name = u.displayname.filter(|n| !n.trim().is_empty()).or((!full.trim().is_empty()).then_some(full));
        SignInUser { sub: u.id, email: u.email, email_verified: true, name, preferred_username: u.username }
    }
}

impl UserSource {
    /// Every user who may sign in, by email.
    pub async fn users(&self, http: &reqwest::Client) -> anyhow::Result<Vec<SignInUser>> {
        let mut users = match self {
            UserSource::Static(users) => users.clone(),
            UserSource::Simulator { url, org } => {
                let url = format!("{}/_sim/orgs/{org}/users", url.trim_end_matches('/'));
                let found: Vec<SimUser> = http.get(&url).send().await?.error_for_status()?.json().await?;
                found
                    .into_iter()
                    .filter(|u| !u.suspended && u.state.as_deref().is_none_or(|s| s == "ACTIVATED"))
                    .map(SignInUser::from)
                    .collect()
            }
        };
        users.sort_by_key(|u| u.email.to_ascii_lowercase());
        Ok(users)
    }
}
