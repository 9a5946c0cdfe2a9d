//! The `fraud_events` collection, and the write-behind sink that fills it
//! from the fraud stream; `_id` is the stream entry id, so a re-delivery is
//! harmless.

use fred::prelude::{Client, Value};
use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::{FRAUD_STREAM, FraudAction, FraudEvent};
use crate::error::StoreError;
use crate::mongo;
use crate::write_behind::{Malformed, Sink, Written};

pub(super) const COLLECTION: &str = "fraud_events";

/// A fraud event as MongoDB stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    #[serde(rename = "_id")]
    pub id: String,
    pub rule: String,
    pub action: FraudAction,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub ip: String,
    #[serde(
        rename = "flashSaleId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub flash_sale_id: Option<String>,
    pub at: DateTime,
    #[serde(default)]
    pub details: mongodb::bson::Bson,
}

/// The JSON shape of a fraud event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: String,
    pub rule: String,
    pub action: FraudAction,
    pub user_id: Option<String>,
    pub ip: String,
    pub flash_sale_id: Option<String>,
    pub at: String,
    pub details: serde_json::Value,
}

impl From<&StoredEvent> for EventView {
    fn from(e: &StoredEvent) -> Self {
        Self {
            id: e.id.clone(),
            rule: e.rule.clone(),
            action: e.action,
            user_id: e.user_id.clone(),
            ip: e.ip.clone(),
            flash_sale_id: e.flash_sale_id.clone(),
            at: crate::clock::rfc3339(e.at),
            details: e.details.clone().into_relaxed_extjson(),
        }
    }
}

/// Decodes a fraud stream entry (`event` = the JSON of a [`FraudEvent`]).
pub fn decode_event(id: &str, fields: &[Value]) -> Option<StoredEvent> {
    let mut json = None;
    for kv in fields.chunks(2) {
        if let [k, v] = kv
            && k.as_str().as_deref() == Some("event")
        {
            json = v.as_string();
        }
    }
    let ev: FraudEvent = serde_json::from_str(&json?).ok()?;
    Some(StoredEvent {
        id: id.to_owned(),
        rule: ev.rule,
        action: ev.action,
        user_id: ev.user_id,
        ip: ev.ip,
        flash_sale_id: ev.flash_sale_id,
        at: DateTime::from_millis(ev.at_ms),
        details: mongodb::bson::to_bson(&ev.details).unwrap_or(mongodb::bson::Bson::Null),
    })
}

#[derive(Debug, Clone)]
pub struct FraudStore {
    coll: Collection<StoredEvent>,
}

impl FraudStore {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection(COLLECTION),
        }
    }

    /// Indexes for the event listing filtered by sale or by user, newest first.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let by_sale = doc! { "flashSaleId": 1, "at": -1 };
        let by_user = doc! { "userId": 1, "at": -1 };
        mongo::ensure_indexes(&self.coll, [by_sale, by_user]).await
    }

    pub async fn insert_batch(&self, events: &[StoredEvent]) -> Result<Written, StoreError> {
        mongo::insert_idempotent(&self.coll, events).await
    }

    /// Events newest first, filtered by any of sale, user and rule.
    pub async fn list(
        &self,
        sale: Option<&str>,
        user: Option<&str>,
        rule: Option<&str>,
        offset: u64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut filter = Document::new();
        if let Some(s) = sale {
            filter.insert("flashSaleId", s);
        }
        if let Some(u) = user {
            filter.insert("userId", u);
        }
        if let Some(r) = rule {
            filter.insert("rule", r);
        }
        mongo::find_page(
            &self.coll,
            filter,
            doc! { "at": -1, "_id": -1 },
            offset,
            limit,
        )
        .await
    }
}

// === impl Sink ===

/// Fraud events are best effort: a malformed one is dropped, and they do not
/// count in the (order) backlog gauges.
impl Sink for FraudStore {
    type Item = StoredEvent;
    type Stream = ();

    const KIND: &'static str = "fraud event";
    const MALFORMED: Malformed = Malformed::Drop;
    const IN_BACKLOG: bool = false;

    async fn streams(&self, _redis: &Client) -> Result<Vec<(String, ())>, fred::error::Error> {
        Ok(vec![(FRAUD_STREAM.to_owned(), ())])
    }

    fn decode(&self, _: &(), id: &str, fields: &[Value]) -> Option<StoredEvent> {
        decode_event(id, fields)
    }

    async fn write(&self, events: &[StoredEvent]) -> Result<Written, StoreError> {
        self.insert_batch(events).await
    }
}
