//! A grant's life in the store: reading it, recording it pending, activating, failing or ending
//! it, a failed revocation, a missing membership, and appending audit records. Each change is one
//! transaction conditioned on the state the caller read.

use super::{
    super::StoreError,
    aws,
    chain::RECORDS_PER_TRANSACTION,
    items::{from_item, grant_item, grant_key, s, to_value},
    leases::LeaseChange,
    transactions::{Expr, Write},
    DynamoGrantStore, Item, GSI2PK, GSI2SK, HOLDERS, LOCK_UNTIL, PK, STATUS,
};
use crate::{
    adapters::dynamodb::keys,
    domain::model::{AuditRecord, Grant, GrantStatus, LeaseHold, RevocationRequest},
    ports::{Activation, Ending, Failure, GrantStoreError},
};
use aws_sdk_dynamodb::types::AttributeValue;

impl DynamoGrantStore {
    /// Reads a raw item consistently.
    pub(super) async fn raw(&self, key: Item) -> Result<Option<Item>, GrantStoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws)?;
        Ok(output.item)
    }

    /// The grant as stored (consistent read) and whether it is in the sweep's index.
    pub(super) async fn load(&self, id: &str) -> Result<Option<(Grant, bool)>, GrantStoreError> {
        let Some(item) = self.raw(grant_key(id)).await? else { return Ok(None) };
        let indexed = item.contains_key(GSI2PK);
        Ok(Some((from_item(item)?, indexed)))
    }

    /// The grant as stored, for an operation under `hold` (a failed revocation).
    async fn load_held(&self, id: &str, hold: &LeaseHold) -> Result<(Grant, bool), GrantStoreError> {
        let (grant, indexed) = self.load(id).await?.ok_or_else(|| GrantStoreError::NotFound(id.to_owned()))?;
        check_held(&grant, hold)?;
        Ok((grant, indexed))
    }

    /// An update of a grant that the caller read as pending: refused unless it still is.
    fn update_pending_grant(&self, id: &str, update: &str, expr: Expr) -> Result<Write, StoreError> {
        Write::update(
            &self.table,
            grant_key(id),
            update,
            "#status = :pending",
            expr.names(&[STATUS]).value(":pending", s(GrantStatus::Pending.as_str())),
            format!("grant {id} is not pending"),
        )
    }
}

/// A grant that an operation under `hold` writes must be of its lease (a programming error
/// otherwise: the caller passes the grant it locked the lease for).
fn check_held(grant: &Grant, hold: &LeaseHold) -> Result<(), GrantStoreError> {
    if grant.lease_key() != hold.key {
        return Err(GrantStoreError::Conflict(format!("grant {} belongs to another lease", grant.id)));
    }
    Ok(())
}

/// As [`check_held`], and the grant must be pending (`activate`, `fail_for_cleanup`).
fn check_pending(grant: &Grant, hold: &LeaseHold) -> Result<(), GrantStoreError> {
    check_held(grant, hold)?;
    if grant.status != GrantStatus::Pending {
        return Err(GrantStoreError::Conflict(format!("grant {} is not pending", grant.id)));
    }
    Ok(())
}

/// The grant becomes a holder of its lease. The lock is kept: `activate` or `fail_for_cleanup`
/// follows under it.
fn join_lease(store: &DynamoGrantStore, grant: &Grant, hold: &LeaseHold) -> Result<Write, GrantStoreError> {
    Ok(store.lease_write(
        hold,
        LeaseChange::Update("ADD #holders :ids"),
        Expr::default().names(&[HOLDERS]).value(":ids", AttributeValue::Ss(vec![grant.id.clone()])),
        None,
    )?)
}

pub(super) async fn insert_pending(
    store: &DynamoGrantStore,
    grant: &Grant,
    hold: &LeaseHold,
    audit: &[AuditRecord],
) -> Result<(), GrantStoreError> {
    if grant.lease_key() != hold.key || grant.status != GrantStatus::Pending {
        return Err(GrantStoreError::Conflict("not a pending grant of this lease".into()));
    }
    let put = Write::put(
        &store.table,
        grant_item(grant, grant.expires_at)?,
        Some(("attribute_not_exists(#pk)", Expr::default().names(&[PK]))),
        format!("grant {} exists", grant.id),
    )?;
    store.transact_with_first_audit(vec![put, join_lease(store, grant, hold)?], audit).await
}

pub(super) async fn insert_request(
    store: &DynamoGrantStore,
    request: &Grant,
    audit: &[AuditRecord],
) -> Result<(), GrantStoreError> {
    if request.status != GrantStatus::PendingApproval {
        return Err(GrantStoreError::Conflict("not a request awaiting approval".into()));
    }
    let put = Write::put(
        &store.table,
        grant_item(request, request.request_expires_at)?,
        Some(("attribute_not_exists(#pk)", Expr::default().names(&[PK]))),
        format!("grant {} exists", request.id),
    )?;
    store.transact_with_first_audit(vec![put], audit).await
}

/// Puts `new` over the request it replaces, conditioned on the status and revision the caller
/// read (`new.revision - 1`): a concurrent approval, denial, cancellation or expiry makes it fail.
fn replace_request(
    store: &DynamoGrantStore,
    new: &Grant,
    due: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Write, GrantStoreError> {
    let seen =
        new.revision.checked_sub(1).ok_or_else(|| GrantStoreError::Conflict("revision 0 replaces nothing".into()))?;
    Ok(Write::put(
        &store.table,
        grant_item(new, due)?,
        Some((
            "#status = :awaiting AND #revision = :seen",
            Expr::default()
                .names(&[STATUS, "revision"])
                .value(":awaiting", s(GrantStatus::PendingApproval.as_str()))
                .value(":seen", AttributeValue::N(seen.to_string())),
        )),
        format!("request {} changed meanwhile", new.id),
    )?)
}

pub(super) async fn update_request(
    store: &DynamoGrantStore,
    new: &Grant,
    audit: &[AuditRecord],
) -> Result<(), GrantStoreError> {
    let due = match new.status {
        GrantStatus::PendingApproval => new.request_expires_at,
        status if status.is_ended_request() => None,
        status => return Err(GrantStoreError::Conflict(format!("{} does not end a request", status.as_str()))),
    };
    store.transact_with_audit(vec![replace_request(store, new, due)?], audit).await
}

pub(super) async fn promote_request(
    store: &DynamoGrantStore,
    grant: &Grant,
    hold: &LeaseHold,
    audit: &[AuditRecord],
) -> Result<(), GrantStoreError> {
    if grant.lease_key() != hold.key || grant.status != GrantStatus::Pending {
        return Err(GrantStoreError::Conflict("not a pending grant of this lease".into()));
    }
    let replace = replace_request(store, grant, grant.expires_at)?;
    store.transact_with_audit(vec![replace, join_lease(store, grant, hold)?], audit).await
}

pub(super) async fn extend_grant(
    store: &DynamoGrantStore,
    new: &Grant,
    audit: &[AuditRecord],
) -> Result<(), GrantStoreError> {
    let id = &new.id;
    let seen =
        new.revision.checked_sub(1).ok_or_else(|| GrantStoreError::Conflict("revision 0 follows nothing".into()))?;
    let expires_at = new.expires_at.ok_or_else(|| GrantStoreError::Conflict(format!("grant {id} has no expiry")))?;
    let mut expr = Expr::default()
        .names(&[STATUS, "revision", "expires_at", "extensions", "pending_extension", GSI2PK, GSI2SK])
        .value(":active", s(GrantStatus::Active.as_str()))
        .value(":seen", AttributeValue::N(seen.to_string()))
        .value(":rev", AttributeValue::N(new.revision.to_string()))
        .value(":expires", to_value(&expires_at)?)
        .value(":extensions", to_value(&new.extensions)?)
        .value(":due_at", s(keys::due_sort(expires_at, id)));
    let update = match &new.pending_extension {
        Some(pending) => {
            expr = expr.value(":pending", to_value(pending)?);
            "SET #revision = :rev, #expires_at = :expires, #extensions = :extensions, \
             #pending_extension = :pending, #gsi2sk = :due_at"
        }
        None => {
            "SET #revision = :rev, #expires_at = :expires, #extensions = :extensions, #gsi2sk = :due_at \
             REMOVE #pending_extension"
        }
    };
    let write = Write::update(
        &store.table,
        grant_key(id),
        update,
        "#status = :active AND #revision = :seen AND attribute_exists(#gsi2pk)",
        expr,
        format!("grant {id} changed meanwhile"),
    )?;
    store.transact_with_audit(vec![write], audit).await
}

pub(super) async fn activate(
    store: &DynamoGrantStore,
    activation: &Activation,
    hold: &LeaseHold,
    audit: &[AuditRecord],
) -> Result<Grant, GrantStoreError> {
    let id = &activation.grant.id;
    check_pending(&activation.grant, hold)?;
    let mut grant = activation.grant.clone();
    let mut expr = Expr::default()
        .names(&["preexisting_membership", "schedule_name"])
        .value(":active", s(GrantStatus::Active.as_str()))
        .value(":preexisting", AttributeValue::Bool(activation.preexisting));
    let update = match &activation.schedule_name {
        Some(name) => {
            expr = expr.value(":schedule", s(name));
            "SET #status = :active, #preexisting_membership = :preexisting, #schedule_name = :schedule"
        }
        None => "SET #status = :active, #preexisting_membership = :preexisting REMOVE #schedule_name",
    };
    let writes =
        vec![store.update_pending_grant(id, update, expr)?, store.release_for(hold, id, activation.lease_preexisting)?];
    store.transact_with_audit(writes, audit).await?;
    grant.status = GrantStatus::Active;
    grant.preexisting_membership = activation.preexisting;
    grant.schedule_name = activation.schedule_name.clone();
    Ok(grant)
}

pub(super) async fn fail_for_cleanup(
    store: &DynamoGrantStore,
    failure: &Failure,
    hold: &LeaseHold,
    audit: &[AuditRecord],
) -> Result<Grant, GrantStoreError> {
    let id = &failure.grant.id;
    check_pending(&failure.grant, hold)?;
    let mut grant = failure.grant.clone();
    // Stays a holder and in the sweep's index, due at `ended_at`: the sweep cleans up.
    let expr = Expr::default()
        .names(&["ended_at", GSI2PK, GSI2SK])
        .value(":failed", s(GrantStatus::Failed.as_str()))
        .value(":ended", to_value(&failure.ended_at)?)
        .value(":due", s(keys::DUE))
        .value(":due_at", s(keys::due_sort(failure.ended_at, id)));
    let update = "SET #status = :failed, #ended_at = :ended, #gsi2pk = :due, #gsi2sk = :due_at";
    let writes =
        vec![store.update_pending_grant(id, update, expr)?, store.release_for(hold, id, failure.lease_preexisting)?];
    store.transact_with_audit(writes, audit).await?;
    grant.status = GrantStatus::Failed;
    grant.ended_at = Some(failure.ended_at);
    Ok(grant)
}

pub(super) async fn end(
    store: &DynamoGrantStore,
    ending: &Ending,
    hold: &LeaseHold,
    audit: &[AuditRecord],
) -> Result<Grant, GrantStoreError> {
    let id = &ending.grant.id;
    check_held(&ending.grant, hold)?;
    let mut grant = ending.grant.clone();
    // A failed grant is open only while in the sweep's index: the condition checks that.
    let status = grant.settled_status(ending.status, true).map_err(GrantStoreError::Conflict)?;
    let expr = Expr::default()
        .names(&[STATUS, "ended_at", GSI2PK, GSI2SK, "revision"])
        .value(":status", s(status.as_str()))
        .value(":ended", to_value(&ending.ended_at)?)
        .value(":seen", s(grant.status.as_str()))
        .value(":rev", AttributeValue::N(grant.revision.to_string()));
    // Exactly what the caller read: a failed grant still in the index, or a pending or
    // active one, at the revision read (an extension meanwhile moved its expiry); anything
    // else was settled (or changed) by someone else meanwhile.
    let condition = if grant.status == GrantStatus::Failed {
        "#status = :seen AND attribute_exists(#gsi2pk) AND (attribute_not_exists(#revision) OR #revision = :rev)"
    } else {
        "#status = :seen AND (attribute_not_exists(#revision) OR #revision = :rev)"
    };
    let (update, expr) = match ending.membership {
        Some(membership) => (
            "SET #status = :status, #ended_at = :ended, #membership_end = :membership REMOVE #gsi2pk, #gsi2sk",
            expr.names(&["membership_end"]).value(":membership", to_value(&membership)?),
        ),
        None => ("SET #status = :status, #ended_at = :ended REMOVE #gsi2pk, #gsi2sk", expr),
    };
    let grant_write =
        Write::update(&store.table, grant_key(id), update, condition, expr, format!("grant {id} is settled already"))?;
    let lease_write = if ending.last_holder {
        store.lease_write(
            hold,
            LeaseChange::Delete,
            Expr::default().names(&[HOLDERS]).value(":one", AttributeValue::N("1".into())).value(":id", s(id)),
            Some((
                "(attribute_not_exists(#holders) OR (size(#holders) = :one AND contains(#holders, :id)))",
                "other grants hold the lease".to_owned(),
            )),
        )?
    } else {
        store.lease_write(
            hold,
            LeaseChange::Update("DELETE #holders :ids REMOVE #lock_owner, #lock_until"),
            Expr::default().names(&[HOLDERS, LOCK_UNTIL]).value(":ids", AttributeValue::Ss(vec![id.clone()])),
            None,
        )?
    };
    store.transact_with_audit(vec![grant_write, lease_write], audit).await?;
    grant.status = status;
    grant.ended_at = Some(ending.ended_at);
    if ending.membership.is_some() {
        grant.membership_end = ending.membership;
    }
    Ok(grant)
}

pub(super) async fn revocation_failed(
    store: &DynamoGrantStore,
    grant_id: &str,
    request: Option<&RevocationRequest>,
    hold: &LeaseHold,
    audit: &[AuditRecord],
) -> Result<(), GrantStoreError> {
    let (grant, indexed) = store.load_held(grant_id, hold).await?;
    let mut writes = vec![store.release(hold)?];
    // Recorded once: the first request stands (and keeps its place in the index).
    if let Some(request) = request.filter(|_| grant.revocation_requested.is_none()) {
        let expr = Expr::default().names(&["revocation_requested", GSI2PK]).value(":request", to_value(request)?);
        let (update, condition, expr) = if indexed {
            (
                "SET #revocation_requested = :request, #gsi2sk = :due_at",
                "attribute_not_exists(#revocation_requested) AND attribute_exists(#gsi2pk)",
                expr.names(&[GSI2SK]).value(":due_at", s(keys::due_sort(request.at, grant_id))),
            )
        } else {
            (
                "SET #revocation_requested = :request",
                "attribute_not_exists(#revocation_requested) AND attribute_not_exists(#gsi2pk)",
                expr,
            )
        };
        let refused = format!("grant {grant_id} changed meanwhile");
        writes.push(Write::update(&store.table, grant_key(grant_id), update, condition, expr, refused)?);
    }
    store.transact_with_audit(writes, audit).await
}

pub(super) async fn mark_membership_missing(
    store: &DynamoGrantStore,
    grant_id: &str,
    audit: &[AuditRecord],
) -> Result<Grant, GrantStoreError> {
    let (mut grant, _) = store.load(grant_id).await?.ok_or_else(|| GrantStoreError::NotFound(grant_id.to_owned()))?;
    if grant.status != GrantStatus::Active {
        return Err(GrantStoreError::Conflict(format!("grant {grant_id} is not active")));
    }
    let mark = Write::update(
        &store.table,
        grant_key(grant_id),
        "SET #membership_missing = :true",
        "#status = :active",
        Expr::default()
            .names(&["membership_missing", STATUS])
            .value(":true", AttributeValue::Bool(true))
            .value(":active", s(GrantStatus::Active.as_str())),
        format!("grant {grant_id} is not active"),
    )?;
    store.transact_with_audit(vec![mark], audit).await?;
    grant.membership_missing = true;
    Ok(grant)
}

pub(super) async fn append_audit(store: &DynamoGrantStore, records: &[AuditRecord]) -> Result<(), GrantStoreError> {
    // Atomic up to a transaction's worth (records and their chains' heads); more go in several, in order.
    for chunk in records.chunks(RECORDS_PER_TRANSACTION) {
        store.transact_with_audit(Vec::new(), chunk).await?;
    }
    Ok(())
}
