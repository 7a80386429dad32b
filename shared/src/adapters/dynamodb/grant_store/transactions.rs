//! Conditional writes: expression names and values ([`Expr`]), the conditions every write request
//! carries ([`Conditioned::only_if`]), the writes of one transaction ([`Write`]) and sending them,
//! retried while DynamoDB refuses them for transient reasons only.

use super::{
    super::StoreError,
    aws,
    items::{item_bytes, value_bytes},
    DynamoGrantStore, Item, TRANSACTION_BYTES, TRANSACTION_ITEMS,
};
use crate::ports::GrantStoreError;
use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    operation::{
        delete_item::builders::DeleteItemFluentBuilder, put_item::builders::PutItemFluentBuilder,
        transact_write_items::TransactWriteItemsError, update_item::builders::UpdateItemFluentBuilder,
    },
    types::{
        builders::{DeleteBuilder, PutBuilder, UpdateBuilder},
        AttributeValue, Delete, Put, TransactWriteItem, Update,
    },
};
use backon::{ExponentialBuilder, Retryable};
use std::{collections::HashMap, future::Future, time::Duration};

pub(super) type Names = Option<HashMap<String, String>>;
pub(super) type Values = Option<Item>;

pub(in crate::adapters::dynamodb) fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Mapping(format!("request not built: {e}")))
}

/// Names and values of one request's expressions.
#[derive(Default)]
pub(in crate::adapters::dynamodb) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// `#name` placeholders for attributes of the same name.
    pub(in crate::adapters::dynamodb) fn names(mut self, attributes: &[&str]) -> Self {
        self.names.extend(attributes.iter().map(|a| (format!("#{a}"), (*a).to_owned())));
        self
    }
    pub(in crate::adapters::dynamodb) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }
    pub(super) fn parts(self) -> (Names, Values) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
    fn bytes(&self) -> usize {
        self.values.values().map(value_bytes).sum()
    }
}

/// The SDK's conditional write requests (transaction items and single-item calls) share these
/// setters but no trait: this one lets one `only_if` set a condition and its expressions on each.
pub(super) trait Conditioned: Sized {
    fn set_condition(self, condition: Option<String>) -> Self;
    fn set_names(self, names: Names) -> Self;
    fn set_values(self, values: Values) -> Self;

    /// Sends the write only if `condition` holds, with `expr`'s names and values.
    fn only_if(self, condition: &str, expr: Expr) -> Self {
        let (names, values) = expr.parts();
        self.set_condition(Some(condition.to_owned())).set_names(names).set_values(values)
    }
}

macro_rules! conditioned {
    ($($builder:ty),*) => {$(
        impl Conditioned for $builder {
            fn set_condition(self, condition: Option<String>) -> Self {
                self.set_condition_expression(condition)
            }
            fn set_names(self, names: Names) -> Self {
                self.set_expression_attribute_names(names)
            }
            fn set_values(self, values: Values) -> Self {
                self.set_expression_attribute_values(values)
            }
        }
    )*};
}

conditioned!(
    PutBuilder,
    UpdateBuilder,
    DeleteBuilder,
    PutItemFluentBuilder,
    UpdateItemFluentBuilder,
    DeleteItemFluentBuilder
);

/// One write of a transaction.
#[derive(Clone)]
pub(in crate::adapters::dynamodb) struct Write {
    item: TransactWriteItem,
    /// What failed when this write's condition fails (the `Conflict` reported).
    refused: String,
    pub(super) bytes: usize,
}

impl Write {
    pub(in crate::adapters::dynamodb) fn put(
        table: &str,
        item: Item,
        condition: Option<(&str, Expr)>,
        refused: String,
    ) -> Result<Self, StoreError> {
        let bytes = item_bytes(&item);
        let mut put = Put::builder().table_name(table).set_item(Some(item));
        if let Some((condition, expr)) = condition {
            put = put.only_if(condition, expr);
        }
        Ok(Self { item: TransactWriteItem::builder().put(built(put.build())?).build(), refused, bytes })
    }

    pub(super) fn update(
        table: &str,
        key: Item,
        update: &str,
        condition: &str,
        expr: Expr,
        refused: String,
    ) -> Result<Self, StoreError> {
        let bytes = item_bytes(&key) + expr.bytes() + update.len();
        let update =
            Update::builder().table_name(table).set_key(Some(key)).update_expression(update).only_if(condition, expr);
        Ok(Self { item: TransactWriteItem::builder().update(built(update.build())?).build(), refused, bytes })
    }

    pub(super) fn delete(
        table: &str,
        key: Item,
        condition: &str,
        expr: Expr,
        refused: String,
    ) -> Result<Self, StoreError> {
        let bytes = item_bytes(&key) + expr.bytes();
        let delete = Delete::builder().table_name(table).set_key(Some(key)).only_if(condition, expr);
        Ok(Self { item: TransactWriteItem::builder().delete(built(delete.build())?).build(), refused, bytes })
    }
}

/// Retries of writes that DynamoDB refused only because another write was in flight on one of
/// their items (`TransactionConflict`) or because of throttling that outlasted the SDK's retries.
pub(in crate::adapters::dynamodb) fn write_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(6)
        .with_jitter()
}

fn transaction_conflict<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("TransactionConflictException")
}

/// Sends a single-item write, again while DynamoDB refuses it only because a transaction is in
/// flight on the item (a refused condition is an answer: it is not retried).
pub(super) async fn retry_conflicts<T, E, R, F, Fut>(send: F) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    send.retry(write_backoff()).when(transaction_conflict).await
}

/// A transaction cancelled for a transient reason only (no condition failed).
fn transient_cancellation<R>(e: &SdkError<TransactWriteItemsError, R>) -> bool {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
            let codes: Vec<&str> = c.cancellation_reasons().iter().filter_map(|r| r.code()).collect();
            !codes.contains(&"ConditionalCheckFailed")
                && codes
                    .iter()
                    .any(|c| matches!(*c, "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"))
        }
        _ => false,
    }
}

impl DynamoGrantStore {
    /// One atomic transaction; a failed condition is a `Conflict` naming what was refused.
    pub(super) async fn transact(&self, writes: Vec<Write>) -> Result<(), GrantStoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        if writes.len() > TRANSACTION_ITEMS {
            return Err(StoreError::Mapping(format!(
                "{} writes exceed DynamoDB's {TRANSACTION_ITEMS} per transaction",
                writes.len()
            ))
            .into());
        }
        let bytes: usize = writes.iter().map(|w| w.bytes).sum();
        if bytes > TRANSACTION_BYTES {
            return Err(StoreError::Mapping(format!("a transaction of {bytes} bytes exceeds DynamoDB's 4 MB")).into());
        }
        let (items, refused): (Vec<TransactWriteItem>, Vec<String>) =
            writes.into_iter().map(|w| (w.item, w.refused)).unzip();
        let sent =
            (|| async { self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await })
                .retry(write_backoff())
                .when(transient_cancellation)
                .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() {
                    let failed =
                        c.cancellation_reasons().iter().position(|r| r.code() == Some("ConditionalCheckFailed"));
                    if let Some(i) = failed {
                        let what = refused.get(i).cloned().unwrap_or_else(|| "a condition failed".to_owned());
                        return Err(GrantStoreError::Conflict(what));
                    }
                }
                Err(aws(e))
            }
        }
    }

    /// A single-item `UpdateItem`, outside a transaction (as [`Write::update`] within one).
    pub(super) fn update_item(&self, key: Item, update: &str, condition: &str, expr: Expr) -> UpdateItemFluentBuilder {
        let request = self.client.update_item().table_name(&self.table).set_key(Some(key));
        request.update_expression(update).only_if(condition, expr)
    }

    /// A single-item `DeleteItem`, outside a transaction (as [`Write::delete`] within one).
    pub(super) fn delete_item(&self, key: Item, condition: &str, expr: Expr) -> DeleteItemFluentBuilder {
        self.client.delete_item().table_name(&self.table).set_key(Some(key)).only_if(condition, expr)
    }
}
