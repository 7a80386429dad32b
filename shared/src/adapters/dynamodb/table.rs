//! The table's definition: the one source of truth for `jitctl setup` (and, through a test, the
//! SAM template). Keys are generic (`pk`/`sk`, two overloaded GSIs) so that new kinds of item need
//! no new table.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
/// Alternate lookups: users by email, groups by name, a user's groups (`MEMBEROF#` on membership
/// items), grants newest first, audit by day.
pub const GSI1: Index = Index { name: "gsi1", partition_key: "gsi1pk", sort_key: "gsi1sk" };
/// Active grants by expiry, for the sweep (`DUE`); users by username (`USERNAME#`).
pub const GSI2: Index = Index { name: "gsi2", partition_key: "gsi2pk", sort_key: "gsi2sk" };
pub const INDEXES: [Index; 2] = [GSI1, GSI2];
/// Epoch seconds after which DynamoDB deletes an item (idempotency records, never audit).
pub const TTL_ATTRIBUTE: &str = "ttl";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: &'static str,
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("complete key schema")
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("complete attribute definition")
}

/// Every key attribute, all strings.
pub fn attribute_definitions() -> Vec<AttributeDefinition> {
    let mut names = vec![PARTITION_KEY, SORT_KEY];
    for index in INDEXES {
        names.extend([index.partition_key, index.sort_key]);
    }
    names.into_iter().map(string_attribute).collect()
}

pub fn key_schema() -> Vec<KeySchemaElement> {
    vec![key(PARTITION_KEY, KeyType::Hash), key(SORT_KEY, KeyType::Range)]
}

pub fn global_secondary_indexes() -> Vec<GlobalSecondaryIndex> {
    INDEXES
        .iter()
        .map(|index| {
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.partition_key, KeyType::Hash))
                .key_schema(key(index.sort_key, KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .expect("complete index")
        })
        .collect()
}

/// On-demand: traffic is spiky (a sync every few minutes, grants now and then).
pub const BILLING_MODE: BillingMode = BillingMode::PayPerRequest;
