//! The `flash_sales` collection.

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, doc, oid::ObjectId};
use mongodb::{Collection, Database, IndexModel};

use super::{EndReason, FlashSale, NewFlashSale, SaleStatus};
use crate::error::StoreError;
use crate::ids::{ProductId, SaleId};

pub(crate) const COLLECTION: &str = "flash_sales";

#[derive(Debug, Clone)]
pub struct SaleStore {
    coll: Collection<FlashSale>,
}

impl SaleStore {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection(COLLECTION),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "productId": 1, "startTime": 1 })
                    .build(),
            )
            .await?;
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "status": 1, "endTime": 1 })
                    .build(),
            )
            .await?;
        Ok(())
    }

    pub async fn insert(&self, sale: &FlashSale) -> Result<(), StoreError> {
        self.coll.insert_one(sale).await?;
        Ok(())
    }

    pub async fn get(&self, id: SaleId) -> Result<Option<FlashSale>, StoreError> {
        Ok(self.coll.find_one(doc! { "_id": id.oid() }).await?)
    }

    /// Open (pending or active) sales of `product` whose window overlaps [start, end).
    pub async fn overlapping(
        &self,
        product: ProductId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<FlashSale>, StoreError> {
        let filter = doc! {
            "productId": product.oid(),
            "status": { "$in": ["pending", "active"] },
            "startTime": { "$lt": DateTime::from_millis(end_ms) },
            "endTime": { "$gt": DateTime::from_millis(start_ms) },
        };
        Ok(self.coll.find(filter).await?.try_collect().await?)
    }

    /// Sales by effective status at `now_ms`, newest first.
    pub async fn list(
        &self,
        status: Option<SaleStatus>,
        now_ms: i64,
        offset: u64,
        limit: i64,
    ) -> Result<Vec<FlashSale>, StoreError> {
        let now = DateTime::from_millis(now_ms);
        let filter = match status {
            None => doc! {},
            Some(SaleStatus::Pending) => {
                doc! { "status": { "$in": ["pending", "active"] }, "startTime": { "$gt": now } }
            }
            Some(SaleStatus::Active) => doc! {
                "status": { "$in": ["pending", "active"] },
                "startTime": { "$lte": now },
                "endTime": { "$gt": now },
            },
            Some(SaleStatus::Ended) => doc! { "$or": [
                { "status": "ended" },
                { "status": { "$in": ["pending", "active"] }, "endTime": { "$lte": now } },
            ] },
            Some(SaleStatus::Cancelled) => doc! { "status": "cancelled" },
        };
        let sort = doc! { "startTime": -1, "_id": -1 };
        crate::mongo::find_page(&self.coll, filter, sort, offset, limit).await
    }

    /// Sales that may still sell: not ended or cancelled, and not past their end.
    pub async fn open(&self, now_ms: i64) -> Result<Vec<FlashSale>, StoreError> {
        let filter = doc! {
            "status": { "$in": ["pending", "active"] },
            "endTime": { "$gt": DateTime::from_millis(now_ms) },
        };
        Ok(self.coll.find(filter).await?.try_collect().await?)
    }

    /// Moves an open sale to a terminal status. Returns false when it was not open.
    pub async fn finish(
        &self,
        id: SaleId,
        status: SaleStatus,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id.oid(), "status": { "$in": ["pending", "active"] } },
                doc! { "$set": { "status": status.as_str(), "endReason": reason_str(reason) } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Pending sales whose start has come.
    pub async fn due_to_start(&self, now_ms: i64) -> Result<Vec<FlashSale>, StoreError> {
        let filter =
            doc! { "status": "pending", "startTime": { "$lte": DateTime::from_millis(now_ms) } };
        Ok(self.coll.find(filter).await?.try_collect().await?)
    }

    /// Open sales whose end has come.
    pub async fn due_to_end(&self, now_ms: i64) -> Result<Vec<FlashSale>, StoreError> {
        let filter = doc! {
            "status": { "$in": ["pending", "active"] },
            "endTime": { "$lte": DateTime::from_millis(now_ms) },
        };
        Ok(self.coll.find(filter).await?.try_collect().await?)
    }

    /// Sales inside their window and not ended.
    pub async fn running(&self, now_ms: i64) -> Result<Vec<FlashSale>, StoreError> {
        let now = DateTime::from_millis(now_ms);
        let filter = doc! {
            "status": { "$in": ["pending", "active"] },
            "startTime": { "$lte": now },
            "endTime": { "$gt": now },
        };
        Ok(self.coll.find(filter).await?.try_collect().await?)
    }

    /// Moves a sale from one of `from` to `to`, fenced by the scheduler epoch:
    /// a write from an older leader never lands after a newer one's. Returns
    /// true only for the one call that made the change.
    pub async fn transition(
        &self,
        id: SaleId,
        from: &[SaleStatus],
        to: SaleStatus,
        reason: Option<EndReason>,
        epoch: i64,
    ) -> Result<bool, StoreError> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let filter = doc! {
            "_id": id.oid(),
            "status": { "$in": from },
            "$or": [ { "epoch": { "$exists": false } }, { "epoch": { "$lte": epoch } } ],
        };
        let mut set = doc! { "status": to.as_str(), "epoch": epoch };
        if let Some(r) = reason {
            set.insert("endReason", reason_str(r));
        }
        let r = self.coll.update_one(filter, doc! { "$set": set }).await?;
        Ok(r.modified_count == 1)
    }
}

fn reason_str(r: EndReason) -> &'static str {
    match r {
        EndReason::SoldOut => "sold-out",
        EndReason::TimeEnded => "time-ended",
        EndReason::Cancelled => "cancelled",
    }
}

/// A fresh sale document from a validated request.
pub(crate) fn new_sale_doc(
    new: &NewFlashSale,
    price_cents: i64,
    rerun_of: Option<ObjectId>,
) -> FlashSale {
    FlashSale {
        id: ObjectId::new(),
        product_id: new.product_id.oid(),
        start_time: DateTime::from_millis(new.start_ms),
        end_time: DateTime::from_millis(new.end_ms),
        discount: new.discount,
        price_cents,
        sale_price_cents: super::model::sale_price_cents(price_cents, new.discount),
        total_units: new.total_units,
        max_per_user: new.max_per_user,
        max_per_transaction: new.max_per_transaction,
        max_accounts_per_ip: new.max_accounts_per_ip,
        status: SaleStatus::Pending,
        end_reason: None,
        rerun_of,
        created_at: DateTime::now(),
    }
}
