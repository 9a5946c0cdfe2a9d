//! The `fraud_events` collection, and the write-behind sink that fills it
//! from the fraud stream. One document per kind of decision (rule, action,
//! user, address, sale) and hour: each stream entry adds its count with
//! `$inc` and moves `lastAt` (`firstAt` keeps the first). The entry ids
//! applied are kept in the document, so a re-delivered entry is not counted
//! twice.

use fred::prelude::{Client, Value};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, WriteConcern};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::{FRAUD_STREAM, FraudAction, FraudEvent};
use crate::error::StoreError;
use crate::mongo;
use crate::write_behind::{Malformed, Rejected, Sink, Written};

pub(super) const COLLECTION: &str = "fraud_events";
const HOUR_MS: i64 = 3_600_000;
/// MongoDB's error code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// A kind of decision in one hour, as MongoDB stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// rule|action|user|ip|sale|hour.
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
    /// How many times it happened in the hour.
    pub count: i64,
    #[serde(rename = "firstAt")]
    pub first_at: DateTime,
    #[serde(rename = "lastAt")]
    pub last_at: DateTime,
    /// What the rule measured, the last time.
    #[serde(default)]
    pub details: Bson,
}

/// One fraud stream entry: its id and the event it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrences {
    pub entry: String,
    pub event: FraudEvent,
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
    pub count: i64,
    pub first_at: String,
    pub last_at: String,
    /// The last occurrence (kept for older clients; same as `lastAt`).
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
            count: e.count,
            first_at: crate::clock::rfc3339(e.first_at),
            last_at: crate::clock::rfc3339(e.last_at),
            at: crate::clock::rfc3339(e.last_at),
            details: e.details.clone().into_relaxed_extjson(),
        }
    }
}

/// Decodes a fraud stream entry (`event` = the JSON of a [`FraudEvent`]).
pub fn decode_event(id: &str, fields: &[Value]) -> Option<Occurrences> {
    let mut json = None;
    for kv in fields.chunks(2) {
        if let [k, v] = kv
            && k.as_str().as_deref() == Some("event")
        {
            json = v.as_string();
        }
    }
    let event: FraudEvent = serde_json::from_str(&json?).ok()?;
    (event.count > 0).then(|| Occurrences {
        entry: id.to_owned(),
        event,
    })
}

/// The document key of an event: its kind and hour.
fn key(ev: &FraudEvent) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        ev.rule,
        ev.action,
        ev.user_id.as_deref().unwrap_or("-"),
        ev.ip,
        ev.flash_sale_id.as_deref().unwrap_or("-"),
        ev.at_ms.div_euclid(HOUR_MS),
    )
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

    /// Indexes for the listing (newest last occurrence first), alone or
    /// filtered by sale, user or rule.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let newest = doc! { "lastAt": -1, "_id": -1 };
        let by_sale = doc! { "flashSaleId": 1, "lastAt": -1, "_id": -1 };
        let by_user = doc! { "userId": 1, "lastAt": -1, "_id": -1 };
        let by_rule = doc! { "rule": 1, "lastAt": -1, "_id": -1 };
        mongo::ensure_indexes(&self.coll, [newest, by_sale, by_user, by_rule]).await
    }

    /// Adds each entry's occurrences to its kind's document for the hour.
    /// An entry already applied (its id is in `entries`) matches nothing,
    /// and the upsert's insert then hits the existing `_id`: counted once.
    pub async fn apply(&self, batch: &[Occurrences]) -> Result<Written, StoreError> {
        let raw = self.coll.clone_with_type::<Document>();
        let concern = WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build();
        let mut written = Written::default();
        for (index, o) in batch.iter().enumerate() {
            let ev = &o.event;
            let at = DateTime::from_millis(ev.at_ms);
            let mut on_insert = doc! {
                "rule": &ev.rule,
                "action": ev.action.as_str(),
                "ip": &ev.ip,
            };
            if let Some(u) = &ev.user_id {
                on_insert.insert("userId", u);
            }
            if let Some(s) = &ev.flash_sale_id {
                on_insert.insert("flashSaleId", s);
            }
            let update = doc! {
                "$setOnInsert": on_insert,
                "$inc": { "count": i64::try_from(ev.count).unwrap_or(i64::MAX) },
                "$min": { "firstAt": at },
                "$max": { "lastAt": at },
                "$set": { "details": mongodb::bson::to_bson(&ev.details).unwrap_or(Bson::Null) },
                "$addToSet": { "entries": &o.entry },
            };
            let filter = doc! { "_id": key(ev), "entries": { "$ne": &o.entry } };
            match raw
                .update_one(filter, update)
                .upsert(true)
                .write_concern(concern.clone())
                .await
            {
                Ok(_) => written.new += 1,
                Err(e) => match &*e.kind {
                    ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w))
                        if w.code == DUPLICATE_KEY => {}
                    ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
                        written.rejected.push(Rejected {
                            index,
                            code: w.code,
                            message: w.message.clone(),
                        });
                    }
                    _ => return Err(e.into()),
                },
            }
        }
        Ok(written)
    }

    /// Kinds of decision newest first, filtered by any of sale, user and rule.
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
            doc! { "lastAt": -1, "_id": -1 },
            offset,
            limit,
        )
        .await
    }
}

// === impl Sink ===

/// Fraud events do not count in the (order) backlog gauges; a malformed one
/// is dropped (it has no count to add).
impl Sink for FraudStore {
    type Item = Occurrences;
    type Stream = ();

    const KIND: &'static str = "fraud event";
    const MALFORMED: Malformed = Malformed::Drop;
    const IN_BACKLOG: bool = false;

    async fn streams(&self, _redis: &Client) -> Result<Vec<(String, ())>, fred::error::Error> {
        Ok(vec![(FRAUD_STREAM.to_owned(), ())])
    }

    fn decode(&self, _: &(), id: &str, fields: &[Value]) -> Option<Occurrences> {
        decode_event(id, fields)
    }

    async fn write(&self, batch: &[Occurrences]) -> Result<Written, StoreError> {
        self.apply(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kind_in_one_hour_shares_a_key_and_anything_else_does_not() {
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let mut a = FraudEvent::blocked("ip-deny", None, ip, None);
        a.at_ms = 10 * HOUR_MS + 5;
        let mut b = a.clone();
        b.at_ms = 10 * HOUR_MS + 59 * 60_000;
        assert_eq!(key(&a), key(&b));
        let mut next_hour = a.clone();
        next_hour.at_ms = 11 * HOUR_MS;
        let other_rule = FraudEvent {
            rule: "blocklist-ip".into(),
            ..a.clone()
        };
        let other_ip = FraudEvent {
            ip: "127.0.0.2".into(),
            ..a.clone()
        };
        for other in [next_hour, other_rule, other_ip] {
            assert_ne!(key(&a), key(&other));
        }
    }
}
