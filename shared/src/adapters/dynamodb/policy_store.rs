//! The access policy's versions in DynamoDB: the adapter of [`PolicyStore`], in the one table.
//!
//! Items (partition [`keys::POLICY`]):
//! - one per version: `sk=VERSION#{n, 20 digits}`, `version`, `previous`, `document`, `sha256`,
//!   `applied_at`, `applied_by`. Put with `attribute_not_exists`: never overwritten.
//! - the pointer to the applied version: `sk=CURRENT`, a copy of that version's item (so that
//!   reading the applied policy is one `GetItem`, which the request paths' cache makes every 30 s).
//!
//! `apply` is one `TransactWriteItems`: the new version's put, the pointer's put conditioned on the
//! version the change was planned against (`attribute_not_exists` when none), and the audit record
//! of the change (see `AuditRecord::policy_applied`: a record of the pseudo-grant `policy`, so that
//! it lands in the per-day audit index and `jitctl audit --since` lists it). Of two applies planned
//! against the same version exactly one lands; the other is `Conflict`.

use super::{
    grant_store::{Expr, Write},
    item::{from_item, key, to_item},
    keys, table, DynamoGrantStore, StoreError,
};
use crate::{
    domain::{
        model::AuditRecord,
        policy::{document_sha256, parse_policy},
    },
    ports::{AppliedPolicy, GrantStoreError, PolicyChange, PolicyStore, PolicyStoreError},
};
use async_trait::async_trait;
use aws_sdk_dynamodb::{types::AttributeValue, Client};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A version as stored (and its copy under `CURRENT`).
#[derive(Serialize, Deserialize)]
struct VersionItem {
    pk: String,
    sk: String,
    kind: String,
    version: u64,
    #[serde(default)]
    previous: Option<u64>,
    document: String,
    sha256: String,
    applied_at: DateTime<Utc>,
    applied_by: String,
}

impl VersionItem {
    fn into_applied(self) -> Result<AppliedPolicy, PolicyStoreError> {
        let policy = parse_policy(&self.document)
            .map_err(|e| PolicyStoreError::Invalid { version: self.version, reason: e.to_string() })?;
        Ok(AppliedPolicy {
            version: self.version,
            document: self.document,
            sha256: self.sha256,
            applied_at: self.applied_at,
            applied_by: self.applied_by,
            policy: Arc::new(policy),
        })
    }
}

/// The policy store in DynamoDB. Cheap to clone.
#[derive(Clone)]
pub struct DynamoPolicyStore {
    /// Its transactions (retries of transient cancellations, conditions reported) and audit items.
    grants: DynamoGrantStore,
}

impl DynamoPolicyStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { grants: DynamoGrantStore::new(client, table) }
    }

    async fn read(&self, sort: &str) -> Result<Option<VersionItem>, StoreError> {
        let output = self
            .grants
            .client()
            .get_item()
            .table_name(self.grants.table())
            .set_key(Some(key(keys::POLICY.to_owned(), sort)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::aws)?;
        output.item.map(from_item::<VersionItem>).transpose()
    }
}

fn store_error(e: GrantStoreError) -> PolicyStoreError {
    match e {
        GrantStoreError::Store(e) => e.into(),
        other => StoreError::Aws(other.to_string()).into(),
    }
}

#[async_trait]
impl PolicyStore for DynamoPolicyStore {
    async fn applied(&self) -> Result<Option<AppliedPolicy>, PolicyStoreError> {
        self.read(keys::POLICY_CURRENT).await?.map(VersionItem::into_applied).transpose()
    }

    async fn version(&self, version: u64) -> Result<Option<AppliedPolicy>, PolicyStoreError> {
        self.read(&keys::policy_version(version)).await?.map(VersionItem::into_applied).transpose()
    }

    async fn apply(&self, change: &PolicyChange) -> Result<AppliedPolicy, PolicyStoreError> {
        let version = change.previous.map_or(1, |p| p + 1);
        let sha256 = document_sha256(&change.document);
        let item = |sort: String, kind: &str| VersionItem {
            pk: keys::POLICY.to_owned(),
            sk: sort,
            kind: kind.to_owned(),
            version,
            previous: change.previous,
            document: change.document.clone(),
            sha256: sha256.clone(),
            applied_at: change.at,
            applied_by: change.by.clone(),
        };
        let table_name = self.grants.table();
        let absent = || ("attribute_not_exists(#pk)", Expr::default().names(&[table::PARTITION_KEY]));
        let pointer_condition = match change.previous {
            None => absent(),
            Some(previous) => (
                "#version = :previous",
                Expr::default().names(&["version"]).value(":previous", AttributeValue::N(previous.to_string())),
            ),
        };
        let writes = vec![
            Write::put(
                table_name,
                to_item(&item(keys::policy_version(version), "policy-version"))?,
                Some(absent()),
                format!("policy version {version} exists already"),
            )?,
            Write::put(
                table_name,
                to_item(&item(keys::POLICY_CURRENT.to_owned(), "policy-current"))?,
                Some(pointer_condition),
                "the applied policy changed meanwhile".to_owned(),
            )?,
        ];
        let audit = AuditRecord::policy_applied(change.at, &change.by, version, change.previous, &sha256);
        match self.grants.transact_with_audit(writes, &[audit]).await {
            Ok(()) => Ok(AppliedPolicy {
                version,
                document: change.document.clone(),
                sha256,
                applied_at: change.at,
                applied_by: change.by.clone(),
                policy: change.policy.clone(),
            }),
            Err(GrantStoreError::Conflict(_)) => {
                let current = self.read(keys::POLICY_CURRENT).await?.map(|item| item.version);
                Err(PolicyStoreError::Conflict { current })
            }
            Err(e) => Err(store_error(e)),
        }
    }
}
