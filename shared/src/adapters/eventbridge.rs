//! EventBridge: the product's events ([`EventBridgeBus`], the [`EventBus`] adapter) on the bus
//! `EVENT_BUS_NAME`, with source [`EVENT_SOURCE`] and the event's `detail-type`.
//!
//! `PutEvents` takes at most 10 entries per call, their total size below 256 KB, and may accept
//! some entries of a call and refuse others (`FailedEntryCount`). Both limits hold by
//! construction here; refused entries are sent once more, then reported.

use crate::{
    domain::model::{GrantEvent, EVENT_SOURCE},
    ports::{EventBus, EventBusError},
};
use async_trait::async_trait;
use aws_sdk_eventbridge::{error::DisplayErrorContext, types::PutEventsRequestEntry};

/// Entries per `PutEvents` call (EventBridge's limit).
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// EventBridge's limit on one call's entries, "less than 256 KB", taken as 256,000 bytes so that
/// neither reading of KB is exceeded.
pub const MAX_CALL_BYTES: usize = 256_000;

/// AWS counts an entry's source, detail-type and detail and, per the `PutEvents` reference, "any
/// necessary characters and keys of the JSON representation of the event" (id, time, account,
/// region, the keys): this much is reserved for that per entry.
pub const ENVELOPE_BYTES: usize = 1_024;

/// The size EventBridge counts for one event, with the envelope reserve.
pub fn entry_size(event: &GrantEvent, detail_json: &str) -> usize {
    EVENT_SOURCE.len() + event.detail_type.detail_type().len() + detail_json.len() + ENVELOPE_BYTES
}

/// The event as errors name it: its detail-type and grant, never its content.
fn label(event: &GrantEvent) -> String {
    match event.grant_id() {
        Some(id) => format!("{} (grant {id})", event.detail_type.detail_type()),
        None => event.detail_type.detail_type().to_owned(),
    }
}

/// An event ready to send.
struct Entry<'a> {
    event: &'a GrantEvent,
    detail: String,
    size: usize,
}

/// Consecutive groups of at most [`MAX_ENTRIES_PER_CALL`] entries and [`MAX_CALL_BYTES`] bytes,
/// in order. Every entry fits a call on its own (larger ones are refused before).
fn batches<'e, 'a>(entries: &'e [Entry<'a>]) -> Vec<&'e [Entry<'a>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, entry) in entries.iter().enumerate() {
        if i > start && (i - start == MAX_ENTRIES_PER_CALL || bytes + entry.size > MAX_CALL_BYTES) {
            out.push(&entries[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += entry.size;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

/// The [`EventBus`] over EventBridge `PutEvents`.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgeBus {
    /// `bus_name`: `EVENT_BUS_NAME` (a name or an ARN).
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        Self { client, bus_name: bus_name.into() }
    }

    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }

    /// One call. Answers, for each entry EventBridge refused, its index and error code.
    async fn put(&self, entries: &[&Entry<'_>]) -> Result<Vec<(usize, String)>, String> {
        let request: Vec<PutEventsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .source(EVENT_SOURCE)
                    .detail_type(e.event.detail_type.detail_type())
                    .detail(&e.detail)
                    .event_bus_name(&self.bus_name)
                    .build()
            })
            .collect();
        let output = self
            .client
            .put_events()
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        if output.failed_entry_count() == 0 && output.entries().len() == entries.len() {
            return Ok(Vec::new());
        }
        // Results line up with the request's entries; an accepted one carries an event id.
        let results = output.entries();
        Ok((0..entries.len())
            .filter_map(|i| match results.get(i) {
                Some(r) if r.event_id().is_some() && r.error_code().is_none() => None,
                Some(r) => Some((i, r.error_code().unwrap_or("UnknownError").to_owned())),
                None => Some((i, "NoResult".to_owned())),
            })
            .collect())
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    /// Publishes every event it can: in calls of at most 10 entries and 256 KB, each refused
    /// entry sent once more. Fails, naming the detail-types (and grant ids) of the events not
    /// published and why, when any event is too large, a call fails, or an entry is refused twice.
    async fn publish(&self, events: &[GrantEvent]) -> Result<(), EventBusError> {
        let mut unpublished: Vec<String> = Vec::new();
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            let detail = event.detail.to_string();
            let size = entry_size(event, &detail);
            if size > MAX_CALL_BYTES {
                unpublished.push(format!(
                    "{}: {size} bytes, above EventBridge's limit of {MAX_CALL_BYTES} (refused)",
                    label(event)
                ));
            } else {
                entries.push(Entry { event, detail, size });
            }
        }
        for batch in batches(&entries) {
            let all: Vec<&Entry> = batch.iter().collect();
            let refused = match self.put(&all).await {
                Ok(refused) => refused,
                Err(error) => {
                    unpublished.extend(all.iter().map(|e| format!("{}: PutEvents failed: {error}", label(e.event))));
                    continue;
                }
            };
            if refused.is_empty() {
                continue;
            }
            tracing::warn!(refused = refused.len(), "EventBridge refused some entries; sending them once more");
            let again: Vec<&Entry> = refused.iter().map(|(i, _)| all[*i]).collect();
            match self.put(&again).await {
                Ok(refused) => unpublished.extend(
                    refused.iter().map(|(i, code)| format!("{}: refused twice ({code})", label(again[*i].event))),
                ),
                Err(error) => unpublished
                    .extend(again.iter().map(|e| format!("{}: PutEvents failed on retry: {error}", label(e.event)))),
            }
        }
        if unpublished.is_empty() {
            return Ok(());
        }
        Err(EventBusError(format!(
            "{} of {} event(s) not published to bus {}: {}",
            unpublished.len(),
            events.len(),
            self.bus_name,
            unpublished.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::EventType;

    fn event(bytes: usize) -> GrantEvent {
        GrantEvent { detail_type: EventType::SyncCompleted, detail: serde_json::json!({ "pad": "x".repeat(bytes) }) }
    }

    fn prepared(events: &[GrantEvent]) -> Vec<Entry<'_>> {
        events
            .iter()
            .map(|event| {
                let detail = event.detail.to_string();
                Entry { event, size: entry_size(event, &detail), detail }
            })
            .collect()
    }

    fn sizes(batches: &[&[Entry]]) -> Vec<usize> {
        batches.iter().map(|b| b.len()).collect()
    }

    #[test]
    fn batches_hold_at_most_ten_entries_in_order() {
        let events: Vec<GrantEvent> = (0..23).map(|_| event(10)).collect();
        assert_eq!(sizes(&batches(&prepared(&events))), vec![10, 10, 3]);
        assert!(batches(&[]).is_empty());
        let events: Vec<GrantEvent> = (0..10).map(|_| event(10)).collect();
        assert_eq!(sizes(&batches(&prepared(&events))), vec![10]);
    }

    #[test]
    fn batches_stay_below_the_call_size_limit() {
        // 100 KB each: two fit a call, a third would not.
        let events: Vec<GrantEvent> = (0..5).map(|_| event(100_000)).collect();
        let entries = prepared(&events);
        let batches = batches(&entries);
        assert_eq!(sizes(&batches), vec![2, 2, 1]);
        for batch in batches {
            assert!(batch.iter().map(|e| e.size).sum::<usize>() <= MAX_CALL_BYTES);
        }
    }

    #[test]
    fn entry_size_counts_source_detail_type_detail_and_the_envelope() {
        let e = event(0);
        let detail = e.detail.to_string();
        assert_eq!(
            entry_size(&e, &detail),
            "jit-access".len() + "Sync Completed".len() + detail.len() + ENVELOPE_BYTES
        );
    }
}
