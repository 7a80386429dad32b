//! Who is calling (SPEC "Who may do what"): the principal behind a request's credential, resolved
//! against the synced directory of each integration.
//!
//! - JWT: the claim `IDENTITY_CLAIM` (default `email`) names a user; a token whose
//!   `email_verified` is `"false"` (API Gateway passes claims as strings) is refused (401). The
//!   principal's id is `<iss>#<sub>`.
//! - IAM: an ARN matching `ADMIN_PRINCIPALS` is an admin; an IAM Identity Center role session is
//!   the user whose email is the session name; any other IAM caller is refused (403).
//! - Users in the group `ADMIN_GROUP` are admins too.
//! - A caller that is no admin and no active user of any integration is refused (403), saying why.

use crate::{
    config::IdentityConfig,
    domain::{model::UserState, snapshot::canonical_email},
    ports::{DirectoryStore, IntegrationCatalog, SecretsError, StoreError},
};
use std::collections::BTreeMap;

/// What the request's authorizer says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// IAM authorization: the caller's ARN.
    Iam { arn: String },
    /// A JWT authorizer: the token's claims, as strings.
    Jwt { claims: BTreeMap<String, String> },
}

/// A caller, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as `requested_by` and as the actor of audit records.
    pub id: String,
    pub admin: bool,
    /// The JumpCloud user behind the caller, per integration (none for an admin principal without one).
    pub users: Vec<PrincipalUser>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalUser {
    pub integration: String,
    pub id: String,
    pub email: String,
}

impl Principal {
    pub fn user_in(&self, integration: &str) -> Option<&PrincipalUser> {
        self.users.iter().find(|u| u.integration == integration)
    }
    /// Whether `user_id` of `integration` is the caller.
    pub fn is_user(&self, integration: &str, user_id: &str) -> bool {
        self.user_in(integration).is_some_and(|u| u.id == user_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No usable credential: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// A credential, but no one this product serves: 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("integrations unavailable: {0}")]
    Integrations(SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `arn:aws:sts::<account>:assumed-role/AWSReservedSSO_<permission set>_<suffix>/<session>`: the
/// session name of an IAM Identity Center role session.
pub fn identity_center_session(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:sts::")?;
    let (account, role_path) = rest.split_once(":assumed-role/")?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (role, session) = role_path.split_once('/')?;
    (role.starts_with("AWSReservedSSO_") && !session.is_empty() && !session.contains('/')).then_some(session)
}

/// Resolves a credential to a principal: who it is, whether an admin, and which users.
pub async fn resolve(
    credential: &Credential,
    config: &IdentityConfig,
    catalog: &dyn IntegrationCatalog,
    directory: &dyn DirectoryStore,
) -> Result<Principal, IdentityError> {
    let (id, mut admin, name) = match credential {
        Credential::Iam { arn } => {
            let admin = config.is_admin_principal(arn);
            let session = identity_center_session(arn);
            if !admin && session.is_none() {
                return Err(IdentityError::Forbidden(format!(
                    "the IAM principal {arn} is neither an admin (ADMIN_PRINCIPALS) nor an IAM Identity Center session"
                )));
            }
            (arn.clone(), admin, session.map(str::to_owned))
        }
        Credential::Jwt { claims } => {
            if claims.get("email_verified").is_some_and(|v| v.trim().eq_ignore_ascii_case("false")) {
                return Err(IdentityError::Unauthenticated("the token's email is not verified".into()));
            }
            let name =
                claims.get(&config.claim).map(|v| v.trim()).filter(|v| !v.is_empty()).ok_or_else(|| {
                    IdentityError::Unauthenticated(format!("the token has no `{}` claim", config.claim))
                })?;
            let (Some(issuer), Some(subject)) = (claims.get("iss"), claims.get("sub")) else {
                return Err(IdentityError::Unauthenticated("the token has no `iss` or `sub` claim".into()));
            };
            (format!("{issuer}#{subject}"), false, Some(name.to_owned()))
        }
    };
    let mut users = Vec::new();
    if let Some(name) = &name {
        let integrations = catalog.list().await.map_err(IdentityError::Integrations)?.integrations;
        for integration in integrations {
            // An email, or else a username (both indexed in the synced directory).
            let user = if name.contains('@') {
                directory.user_by_email(&integration.name, &canonical_email(name)).await?
            } else {
                directory.user_by_username(&integration.name, name).await?
            };
            let Some(user) = user else { continue };
            if user.state == UserState::Suspended {
                continue;
            }
            if !admin {
                if let Some(group) = &config.admin_group {
                    if let Some(group) = directory.group_by_name(&integration.name, group).await? {
                        admin = directory.is_member(&integration.name, &group.id, &user.id).await?;
                    }
                }
            }
            users.push(PrincipalUser { integration: integration.name, id: user.id, email: user.email });
        }
    }
    if !admin && users.is_empty() {
        let who = name.unwrap_or_else(|| id.clone());
        return Err(IdentityError::Forbidden(format!("{who} is not an active user of the synced directory")));
    }
    Ok(Principal { id, admin, users })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::model::{fixtures, DirectoryChanges, DirectoryGroup, DirectoryUser, Membership, MembershipMethod},
        ports::DirectoryStore,
        testing::{FakeDirectory, FakeIntegrations, MemoryStore},
    };
    use std::sync::Arc;

    struct World {
        store: MemoryStore,
        integrations: FakeIntegrations,
        config: IdentityConfig,
    }

    fn user(id: &str, email: &str, state: UserState) -> DirectoryUser {
        DirectoryUser { state, ..fixtures::user(id, email) }
    }

    async fn world() -> World {
        let store = MemoryStore::default();
        let changes = DirectoryChanges {
            put_users: vec![
                user("u1", "alice@corp.com", UserState::Activated),
                user("u2", "bob@corp.com", UserState::Activated),
                user("u3", "sam@corp.com", UserState::Suspended),
            ],
            put_groups: vec![DirectoryGroup {
                id: "g9".into(),
                name: "jit-admins".into(),
                description: None,
                membership_method: MembershipMethod::Static,
                requestable: false,
            }],
            put_memberships: vec![Membership { group_id: "g9".into(), user_id: "u2".into() }],
            ..DirectoryChanges::default()
        };
        store.apply_changes("corp", &changes).await.unwrap();
        let integrations = FakeIntegrations::default();
        integrations.add("corp", Arc::new(FakeDirectory::default()));
        let config = IdentityConfig {
            admin_principals: vec![glob::Pattern::new("arn:aws:iam::123456789012:role/deployer").unwrap()],
            admin_group: Some("jit-admins".into()),
            ..IdentityConfig::default()
        };
        World { store, integrations, config }
    }

    fn jwt(pairs: &[(&str, &str)]) -> Credential {
        Credential::Jwt { claims: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    impl World {
        async fn resolve(&self, credential: Credential) -> Result<Principal, IdentityError> {
            resolve(&credential, &self.config, &self.integrations, &self.store).await
        }
    }

    const ISS: &str = "https://oidc.example.com";

    #[tokio::test]
    async fn a_verified_token_names_a_directory_user() {
        let w = world().await;
        let p = w
            .resolve(jwt(&[("iss", ISS), ("sub", "s-1"), ("email", "Alice@Corp.com"), ("email_verified", "true")]))
            .await
            .unwrap();
        assert_eq!(p.id, format!("{ISS}#s-1"));
        assert!(!p.admin);
        assert_eq!(
            p.users,
            vec![PrincipalUser { integration: "corp".into(), id: "u1".into(), email: "alice@corp.com".into() }]
        );
        assert!(p.is_user("corp", "u1") && !p.is_user("corp", "u2") && !p.is_user("other", "u1"));
    }

    #[tokio::test]
    async fn an_identity_claim_may_name_a_username() {
        let mut w = world().await;
        w.config.claim = "preferred_username".into();
        let p = w
            .resolve(jwt(&[("iss", ISS), ("sub", "s-2"), ("preferred_username", "Bob"), ("email_verified", "true")]))
            .await
            .unwrap();
        assert_eq!(p.users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["u2"], "bob by his username");
        assert!(p.admin, "bob is in the admin group");
        let nobody = jwt(&[("iss", ISS), ("sub", "s-3"), ("preferred_username", "mallory")]);
        assert!(matches!(w.resolve(nobody).await, Err(IdentityError::Forbidden(_))));
    }

    #[tokio::test]
    async fn unverified_tokens_and_tokens_without_the_claim_are_unauthenticated() {
        let w = world().await;
        let unverified = jwt(&[("iss", ISS), ("sub", "s-1"), ("email", "alice@corp.com"), ("email_verified", "false")]);
        assert!(
            matches!(w.resolve(unverified).await, Err(IdentityError::Unauthenticated(m)) if m.contains("not verified"))
        );
        let no_claim = jwt(&[("iss", ISS), ("sub", "s-1")]);
        assert!(matches!(w.resolve(no_claim).await, Err(IdentityError::Unauthenticated(m)) if m.contains("`email`")));
        let no_subject = jwt(&[("email", "alice@corp.com")]);
        assert!(matches!(w.resolve(no_subject).await, Err(IdentityError::Unauthenticated(_))));
    }

    #[tokio::test]
    async fn unknown_and_suspended_users_are_forbidden_with_the_reason() {
        let w = world().await;
        for email in ["mallory@corp.com", "sam@corp.com"] {
            let err = w.resolve(jwt(&[("iss", ISS), ("sub", "x"), ("email", email)])).await.unwrap_err();
            assert!(
                matches!(&err, IdentityError::Forbidden(m) if m.contains(email) && m.contains("not an active user")),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn admin_principals_admin_group_and_other_iam_callers() {
        let w = world().await;
        let deployer =
            w.resolve(Credential::Iam { arn: "arn:aws:iam::123456789012:role/deployer".into() }).await.unwrap();
        assert!(deployer.admin && deployer.users.is_empty());
        let other = w.resolve(Credential::Iam { arn: "arn:aws:iam::123456789012:user/alice".into() }).await;
        assert!(matches!(other, Err(IdentityError::Forbidden(m)) if m.contains("ADMIN_PRINCIPALS")));
        // bob is in ADMIN_GROUP; alice is not.
        let bob = w.resolve(jwt(&[("iss", ISS), ("sub", "b"), ("email", "bob@corp.com")])).await.unwrap();
        assert!(bob.admin && bob.is_user("corp", "u2"));
        let alice = w.resolve(jwt(&[("iss", ISS), ("sub", "a"), ("email", "alice@corp.com")])).await.unwrap();
        assert!(!alice.admin);
    }

    #[tokio::test]
    async fn an_identity_center_session_is_the_user_it_names() {
        let w = world().await;
        let arn = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Engineers_0a1b2c3d4e5f6789/alice@corp.com";
        let alice = w.resolve(Credential::Iam { arn: arn.into() }).await.unwrap();
        assert_eq!((alice.id.as_str(), alice.admin), (arn, false));
        assert!(alice.is_user("corp", "u1"));
        let stranger = arn.replace("alice@", "nobody@");
        assert!(matches!(w.resolve(Credential::Iam { arn: stranger }).await, Err(IdentityError::Forbidden(_))));
        assert_eq!(identity_center_session("arn:aws:sts::123456789012:assumed-role/Other/alice@corp.com"), None);
        assert_eq!(identity_center_session("arn:aws:sts::12:assumed-role/AWSReservedSSO_X_1/a"), None);
    }
}
