//! A fanned-out sync run's records ([`SyncRunStore`]), one partition per run,
//! `pk=SYNCRUN#{integration}#{run id}`, every item expiring ([`KEEP`]) after it is written:
//! - `RUN`: the run (`stage` at the top level, for the conditional moves);
//! - `PLAN#{part}`: the groups of a members part;
//! - `REPORT#{kind}#{part}`: a part's report; `IDS#{part}#{list}#{chunk}`: a users part's ids,
//!   in chunks well under DynamoDB's 400 KB item limit;
//! - `DONE#{kind}`: the parts of that kind reported, a number set grown with `ADD` (so a part
//!   delivered twice counts once, and the count comes back with the write);
//! - `NEW#{kind}#{part}#{chunk}`: users or groups the run stored for the first time.

use super::{
    directory_store::{put, SortRange},
    item::{from_item, key, to_item, Item},
    keys, table, DynamoStore, StoreError,
};
use crate::ports::{NewKind, PartIds, PartKind, PartReport, RunStage, SyncRun, SyncRunStore};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// How long a run's items are kept: long after any run ends, short enough not to pile up.
const KEEP: chrono::Duration = chrono::Duration::days(7);
/// Ids per item: 8,000 ids of 24 characters are about 200 KB.
const IDS_PER_ITEM: usize = 8_000;
const RUN: &str = "RUN";

#[derive(Serialize, Deserialize)]
struct RunItem {
    pk: String,
    sk: String,
    ttl: i64,
    #[serde(flatten)]
    run: SyncRun,
}

#[derive(Serialize, Deserialize)]
struct ReportItem {
    pk: String,
    sk: String,
    ttl: i64,
    #[serde(flatten)]
    report: PartReport,
}

#[derive(Serialize, Deserialize)]
struct IdsItem {
    pk: String,
    sk: String,
    ttl: i64,
    ids: Vec<String>,
}

fn expires() -> i64 {
    (chrono::Utc::now() + KEEP).timestamp()
}

fn stage_name(stage: RunStage) -> String {
    serde_json::to_value(stage).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn report_sort(kind: PartKind, part: u32) -> String {
    format!("REPORT#{}#{part:06}", kind.as_str())
}

impl DynamoStore {
    /// Writes `ids` in chunks under `prefix` (`{prefix}#{chunk}`).
    async fn put_ids(&self, pk: &str, prefix: &str, ids: &[String]) -> Result<(), StoreError> {
        let ttl = expires();
        let items = ids
            .chunks(IDS_PER_ITEM)
            .enumerate()
            .map(|(chunk, ids)| {
                to_item(&IdsItem { pk: pk.to_owned(), sk: format!("{prefix}#{chunk:04}"), ttl, ids: ids.to_vec() })
                    .map(put)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_all(items).await
    }

    /// Every id written under `prefix` by `put_ids`.
    async fn ids_under(&self, pk: String, prefix: String) -> Result<Vec<String>, StoreError> {
        let items = self.query_partition(None, pk, Some(SortRange::Prefix(prefix)), None).await?;
        let mut ids = Vec::new();
        for item in items {
            ids.extend(from_item::<IdsItem>(item)?.ids);
        }
        Ok(ids)
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::aws)?;
        Ok(output.item)
    }
}

#[async_trait]
impl SyncRunStore for DynamoStore {
    async fn put_run(&self, run: &SyncRun, expected: Option<RunStage>) -> Result<bool, StoreError> {
        let item = to_item(&RunItem {
            pk: keys::sync_run(&run.integration, &run.run_id),
            sk: RUN.into(),
            ttl: (run.started_at + KEEP).timestamp(),
            run: run.clone(),
        })?;
        let mut request = self.client().put_item().table_name(self.table()).set_item(Some(item));
        request = match expected {
            None => request.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", "pk"),
            Some(stage) => request
                .condition_expression("#stage = :expected")
                .expression_attribute_names("#stage", "stage")
                .expression_attribute_values(":expected", AttributeValue::S(stage_name(stage))),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => match expected
            {
                None => Err(StoreError::Aws(format!("run {} exists already", run.run_id))),
                Some(_) => Ok(false),
            },
            Err(e) => Err(StoreError::aws(e)),
        }
    }

    async fn run(&self, integration: &str, run_id: &str) -> Result<Option<SyncRun>, StoreError> {
        let item = self.get(keys::sync_run(integration, run_id), RUN).await?;
        Ok(item.map(from_item::<RunItem>).transpose()?.map(|i| i.run))
    }

    async fn put_member_plan(
        &self,
        integration: &str,
        run_id: &str,
        part: u32,
        group_ids: &[String],
    ) -> Result<(), StoreError> {
        let item = to_item(&IdsItem {
            pk: keys::sync_run(integration, run_id),
            sk: format!("PLAN#{part:06}"),
            ttl: expires(),
            ids: group_ids.to_vec(),
        })?;
        self.client().put_item().table_name(self.table()).set_item(Some(item)).send().await.map_err(StoreError::aws)?;
        Ok(())
    }

    async fn member_plan(&self, integration: &str, run_id: &str, part: u32) -> Result<Vec<String>, StoreError> {
        let item = self.get(keys::sync_run(integration, run_id), &format!("PLAN#{part:06}")).await?;
        let item =
            item.ok_or_else(|| StoreError::Mapping(format!("run {run_id} has no plan for members part {part}")))?;
        Ok(from_item::<IdsItem>(item)?.ids)
    }

    async fn report_part(
        &self,
        integration: &str,
        run_id: &str,
        kind: PartKind,
        part: u32,
        report: &PartReport,
        ids: &PartIds,
    ) -> Result<u32, StoreError> {
        let pk = keys::sync_run(integration, run_id);
        // The ids first: a report only ever stands beside all of its ids.
        self.put_ids(&pk, &format!("IDS#{part:06}#kept"), &ids.kept).await?;
        self.put_ids(&pk, &format!("IDS#{part:06}#excluded"), &ids.excluded).await?;
        self.put_ids(&pk, &format!("IDS#{part:06}#emails"), &ids.excluded_emails).await?;
        let item = to_item(&ReportItem {
            pk: pk.clone(),
            sk: report_sort(kind, part),
            ttl: expires(),
            report: report.clone(),
        })?;
        self.client().put_item().table_name(self.table()).set_item(Some(item)).send().await.map_err(StoreError::aws)?;
        let output = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(pk, &format!("DONE#{}", kind.as_str()))))
            .update_expression("ADD #parts :part SET #ttl = :ttl")
            .expression_attribute_names("#parts", "parts")
            .expression_attribute_names("#ttl", table::TTL_ATTRIBUTE)
            .expression_attribute_values(":part", AttributeValue::Ns(vec![part.to_string()]))
            .expression_attribute_values(":ttl", AttributeValue::N(expires().to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::aws)?;
        let done =
            output.attributes.as_ref().and_then(|a| a.get("parts")).and_then(|v| v.as_ns().ok()).map_or(0, Vec::len);
        Ok(done as u32)
    }

    async fn part_report(
        &self,
        integration: &str,
        run_id: &str,
        kind: PartKind,
        part: u32,
    ) -> Result<Option<PartReport>, StoreError> {
        let item = self.get(keys::sync_run(integration, run_id), &report_sort(kind, part)).await?;
        Ok(item.map(from_item::<ReportItem>).transpose()?.map(|i| i.report))
    }

    async fn part_ids(&self, integration: &str, run_id: &str, part: u32) -> Result<PartIds, StoreError> {
        let pk = keys::sync_run(integration, run_id);
        let (kept, excluded, excluded_emails) = futures::try_join!(
            self.ids_under(pk.clone(), format!("IDS#{part:06}#kept#")),
            self.ids_under(pk.clone(), format!("IDS#{part:06}#excluded#")),
            self.ids_under(pk.clone(), format!("IDS#{part:06}#emails#")),
        )?;
        Ok(PartIds { kept, excluded, excluded_emails })
    }

    async fn put_new_ids(
        &self,
        integration: &str,
        run_id: &str,
        kind: NewKind,
        part: u32,
        ids: &[String],
    ) -> Result<(), StoreError> {
        self.put_ids(&keys::sync_run(integration, run_id), &format!("NEW#{}#{part:06}", kind.as_str()), ids).await
    }

    async fn new_ids(&self, integration: &str, run_id: &str, kind: NewKind) -> Result<HashSet<String>, StoreError> {
        let pk = keys::sync_run(integration, run_id);
        Ok(self.ids_under(pk, format!("NEW#{}#", kind.as_str())).await?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::dynamodb::item::text;

    #[test]
    fn stages_are_stored_as_the_run_item_spells_them() {
        let run = SyncRun {
            integration: "corp".into(),
            run_id: "r1".into(),
            started_at: chrono::Utc::now(),
            stage: RunStage::Finishing,
            users_per_part: 10,
            user_parts: 1,
            member_parts: 1,
            groups: 0,
            groups_written: 0,
            first_sync: false,
            moved_by: None,
            members_sent: false,
            error: None,
        };
        let item = to_item(&RunItem { pk: "p".into(), sk: RUN.into(), ttl: 0, run }).unwrap();
        assert_eq!(text(&item, "stage"), Some(stage_name(RunStage::Finishing).as_str()));
        assert_eq!(stage_name(RunStage::Finishing), "finishing");
    }
}
