//! The `orders` collection.

use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use futures_util::TryStreamExt;
use mongodb::bson::{Document, RawDocumentBuf, doc};
use mongodb::{Collection, Database};

use super::Order;
use crate::error::StoreError;
use crate::ids::{SaleId, UserId};
use crate::mongo;

pub(super) const COLLECTION: &str = "orders";

/// What MongoDB holds for one sale.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaleSummary {
    pub sold: i64,
    pub orders: i64,
    pub max_seq: i64,
    pub buyers: Vec<BuyerSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerSummary {
    pub user: UserId,
    pub units: i64,
    pub first_ms: i64,
    pub first_seq: i64,
}

#[derive(Debug, Clone)]
pub struct OrderStore {
    coll: Collection<Order>,
    /// The same collection for the write-behind's inserts, which build
    /// each document themselves ([`Order::to_raw`]).
    raw: Collection<RawDocumentBuf>,
    /// The write-behind sink's view of each drained sale's end (unix ms by
    /// Redis's clock) and when it was read: an open sale is not asked about
    /// on every pass.
    pub(super) windows: Arc<DashMap<SaleId, (i64, Instant)>>,
}

impl OrderStore {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection(COLLECTION),
            raw: db.collection(COLLECTION),
            windows: Arc::new(DashMap::new()),
        }
    }

    /// Indexes for what the listings filter and sort on: a buyer's orders
    /// newest first, a sale's orders in sequence (reconcile, the admin
    /// listing), a sale's orders of one buyer, and everyone's newest first.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let by_user = doc! { "userId": 1, "purchasedAt": -1, "_id": -1 };
        let by_sale = doc! { "flashSaleId": 1, "seq": 1 };
        let by_sale_user = doc! { "flashSaleId": 1, "userId": 1, "seq": 1 };
        let newest = doc! { "purchasedAt": -1, "_id": -1 };
        mongo::ensure_indexes(&self.coll, [by_user, by_sale, by_sale_user, newest]).await
    }

    /// Writes a batch idempotently; returns how many were new and which
    /// ones MongoDB refused.
    pub async fn insert_batch(&self, orders: &[Order]) -> Result<mongo::Written, StoreError> {
        let docs: Vec<RawDocumentBuf> = orders.iter().map(Order::to_raw).collect();
        mongo::insert_idempotent(&self.raw, &docs).await
    }

    pub async fn for_user(
        &self,
        user: UserId,
        offset: u64,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        mongo::find_page(
            &self.coll,
            doc! { "userId": user.oid() },
            doc! { "purchasedAt": -1, "_id": -1 },
            offset,
            limit,
        )
        .await
    }

    pub async fn for_sale(
        &self,
        sale: SaleId,
        user: Option<UserId>,
        offset: u64,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let mut filter = doc! { "flashSaleId": sale.oid() };
        if let Some(u) = user {
            filter.insert("userId", u.oid());
        }
        mongo::find_page(&self.coll, filter, doc! { "seq": 1 }, offset, limit).await
    }

    /// How many orders of a sale (of one buyer, when given) MongoDB holds.
    pub async fn count_for_sale(
        &self,
        sale: SaleId,
        user: Option<UserId>,
    ) -> Result<u64, StoreError> {
        let mut filter = doc! { "flashSaleId": sale.oid() };
        if let Some(u) = user {
            filter.insert("userId", u.oid());
        }
        Ok(self.coll.count_documents(filter).await?)
    }

    pub async fn all(&self, offset: u64, limit: i64) -> Result<Vec<Order>, StoreError> {
        mongo::find_page(
            &self.coll,
            doc! {},
            doc! { "purchasedAt": -1, "_id": -1 },
            offset,
            limit,
        )
        .await
    }

    /// Units sold and order count of a sale, in one grouped aggregation.
    pub async fn sale_totals(&self, sale: SaleId) -> Result<(i64, i64), StoreError> {
        let pipeline = vec![
            doc! { "$match": { "flashSaleId": sale.oid() } },
            doc! { "$group": { "_id": null, "units": { "$sum": "$quantity" }, "orders": { "$sum": 1 } } },
        ];
        let docs: Vec<Document> = self.coll.aggregate(pipeline).await?.try_collect().await?;
        let Some(d) = docs.first() else {
            return Ok((0, 0));
        };
        let int = |k: &str| match d.get(k) {
            Some(mongodb::bson::Bson::Int32(v)) => i64::from(*v),
            Some(mongodb::bson::Bson::Int64(v)) => *v,
            Some(mongodb::bson::Bson::Double(v)) => *v as i64,
            _ => 0,
        };
        Ok((int("units"), int("orders")))
    }

    /// Units sold, order count, highest sequence and per-buyer totals of a sale.
    pub async fn sale_summary(&self, sale: SaleId) -> Result<SaleSummary, StoreError> {
        let pipeline = vec![
            doc! { "$match": { "flashSaleId": sale.oid() } },
            doc! { "$group": {
                "_id": "$userId",
                "units": { "$sum": "$quantity" },
                "orders": { "$sum": 1 },
                "firstAt": { "$min": "$purchasedAt" },
                "firstSeq": { "$min": "$seq" },
                "maxSeq": { "$max": "$seq" },
            } },
        ];
        let docs: Vec<Document> = self.coll.aggregate(pipeline).await?.try_collect().await?;
        let mut s = SaleSummary::default();
        for d in docs {
            let int = |k: &str| -> Result<i64, StoreError> {
                match d.get(k) {
                    Some(mongodb::bson::Bson::Int32(v)) => Ok(i64::from(*v)),
                    Some(mongodb::bson::Bson::Int64(v)) => Ok(*v),
                    Some(mongodb::bson::Bson::Double(v)) => Ok(*v as i64),
                    other => Err(StoreError::Corrupt(format!(
                        "order summary field {k}: {other:?}"
                    ))),
                }
            };
            let user = d
                .get_object_id("_id")
                .map_err(|_| StoreError::Corrupt("order summary without a user id".into()))?;
            let first_ms = d
                .get_datetime("firstAt")
                .map(|t| t.timestamp_millis())
                .map_err(|_| StoreError::Corrupt("order summary without firstAt".into()))?;
            let b = BuyerSummary {
                user: UserId(user),
                units: int("units")?,
                first_ms,
                first_seq: int("firstSeq")?,
            };
            s.sold += b.units;
            s.orders += int("orders")?;
            s.max_seq = s.max_seq.max(int("maxSeq")?);
            s.buyers.push(b);
        }
        s.buyers.sort_by_key(|b| b.first_seq);
        Ok(s)
    }
}
