//! Sale lifecycle operations that span MongoDB (the record) and Redis (the
//! hot state): create, rerun, cancel, and re-seeding Redis after it lost data.

use std::time::Duration;

use serde::Deserialize;

use super::model::{FieldError, parse_time};
use super::store::new_sale_doc;
use super::{EndReason, FlashSale, NewFlashSale, SaleDefaults, SaleInput, SaleStatus, SaleStore};
use crate::catalog::ProductStore;
use crate::clock::now_ms;
use crate::engine::keys;
use crate::error::{ErrorCode, StoreError};
use crate::hot::{HotSale, HotSales};
use crate::ids::SaleId;
use crate::orders::OrderStore;
use crate::redis::lease;

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("product not found")]
    ProductNotFound,
    #[error("flash sale not found")]
    NotFound,
    #[error("another flash sale of this product overlaps this window")]
    Overlap(Vec<String>),
    #[error("the flash sale has already ended")]
    AlreadyEnded,
    #[error("another change to this product's sales is in progress")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FieldError> for SaleError {
    fn from((f, m): FieldError) -> Self {
        Self::Invalid(f, m)
    }
}

impl SaleError {
    /// The stable error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(..) => ErrorCode::ValidationFailed,
            Self::ProductNotFound => ErrorCode::ProductNotFound,
            Self::NotFound => ErrorCode::FlashSaleNotFound,
            Self::Overlap(_) => ErrorCode::FlashSaleOverlap,
            Self::AlreadyEnded => ErrorCode::FlashSaleEnded,
            Self::Busy => ErrorCode::Unavailable,
            Self::Store(_) => ErrorCode::Internal,
        }
    }
}

/// The rerun body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RerunInput {
    pub start_time: String,
    pub end_time: String,
    pub total_units: Option<i64>,
}

/// Sale operations shared by the handlers, the scheduler and start-up.
#[derive(Debug, Clone)]
pub struct SaleService {
    pub store: SaleStore,
    products: ProductStore,
    pool: fred::prelude::Pool,
    hot: HotSales,
    orders: OrderStore,
    defaults: SaleDefaults,
}

impl SaleService {
    pub fn new(
        store: SaleStore,
        products: ProductStore,
        pool: fred::prelude::Pool,
        hot: HotSales,
        orders: OrderStore,
        defaults: SaleDefaults,
    ) -> Self {
        Self {
            store,
            products,
            pool,
            hot,
            orders,
            defaults,
        }
    }

    pub async fn create(&self, input: &SaleInput) -> Result<FlashSale, SaleError> {
        let new = NewFlashSale::parse(input, now_ms(), self.defaults)?;
        self.create_validated(&new, None).await
    }

    /// Inserts a validated sale after checking its product and overlaps, with
    /// sale creation for one product serialised by a short Redis lock.
    async fn create_validated(
        &self,
        new: &NewFlashSale,
        rerun_of: Option<SaleId>,
    ) -> Result<FlashSale, SaleError> {
        let product = self
            .products
            .get(new.product_id)
            .await?
            .ok_or(SaleError::ProductNotFound)?;
        let lock_key = keys::product_lock(&new.product_id.hex());
        let token = lease::lock(
            &self.pool,
            &lock_key,
            Duration::from_secs(10),
            Duration::from_secs(3),
        )
        .await
        .map_err(StoreError::from)?
        .ok_or(SaleError::Busy)?;
        let result = self
            .insert_unless_overlap(new, product.price_cents, rerun_of)
            .await;
        if let Err(e) = lease::unlock(&self.pool, &lock_key, &token).await {
            tracing::warn!(error = %e, "failed to release a product lock; it expires by itself");
        }
        result
    }

    async fn insert_unless_overlap(
        &self,
        new: &NewFlashSale,
        price_cents: i64,
        rerun_of: Option<SaleId>,
    ) -> Result<FlashSale, SaleError> {
        let candidates = self
            .store
            .overlapping(new.product_id, new.start_ms, new.end_ms)
            .await?;
        if !candidates.is_empty() {
            // A sold-out sale no longer holds its window.
            let ids: Vec<SaleId> = candidates.iter().map(FlashSale::sale_id).collect();
            let stock = self.hot.available_many(&ids).await?;
            let live: Vec<String> = ids
                .iter()
                .zip(stock)
                .filter(|(_, s)| s.is_none_or(|s| s > 0))
                .map(|(id, _)| id.hex())
                .collect();
            if !live.is_empty() {
                return Err(SaleError::Overlap(live));
            }
        }
        let sale = new_sale_doc(new, price_cents, rerun_of.map(SaleId::oid));
        // Redis first: a sale in MongoDB is always buyable, and a crash between
        // the two leaves only unreachable hot state behind.
        self.hot.seed(&hot(&sale, sale.total_units, 0)).await?;
        self.store.insert(&sale).await?;
        Ok(sale)
    }

    /// The sale and its live stock.
    pub async fn get(&self, id: SaleId) -> Result<(FlashSale, Option<i64>), SaleError> {
        let sale = self.store.get(id).await?.ok_or(SaleError::NotFound)?;
        let available = self.hot.available(id).await?;
        Ok((sale, available))
    }

    pub async fn list(
        &self,
        status: Option<SaleStatus>,
        offset: u64,
        limit: i64,
    ) -> Result<Vec<(FlashSale, Option<i64>)>, SaleError> {
        let sales = self.store.list(status, now_ms(), offset, limit).await?;
        let ids: Vec<SaleId> = sales.iter().map(FlashSale::sale_id).collect();
        let stock = self.hot.available_many(&ids).await?;
        Ok(sales.into_iter().zip(stock).collect())
    }

    /// A new sale event for the same product with fresh inventory.
    pub async fn rerun(&self, id: SaleId, input: &RerunInput) -> Result<FlashSale, SaleError> {
        let old = self.store.get(id).await?.ok_or(SaleError::NotFound)?;
        let start_ms = parse_time("startTime", &input.start_time)?;
        let end_ms = parse_time("endTime", &input.end_time)?;
        NewFlashSale::check_window(start_ms, end_ms, now_ms())?;
        let total_units = input.total_units.unwrap_or(old.total_units);
        if !(1..=super::model::MAX_TOTAL_UNITS).contains(&total_units) {
            return Err(SaleError::Invalid(
                "totalUnits",
                "must be an integer from 1 to 10000000".into(),
            ));
        }
        let new = NewFlashSale {
            product_id: crate::ids::ProductId(old.product_id),
            start_ms,
            end_ms,
            discount: old.discount,
            total_units,
            max_per_user: old.max_per_user,
            max_per_transaction: old.max_per_transaction,
            max_accounts_per_ip: old.max_accounts_per_ip,
        };
        self.create_validated(&new, Some(id)).await
    }

    /// Cancels an open sale: Redis refuses purchases at once, then MongoDB records it.
    pub async fn cancel(&self, id: SaleId) -> Result<FlashSale, SaleError> {
        let sale = self.store.get(id).await?.ok_or(SaleError::NotFound)?;
        if sale.status_at(now_ms()) != SaleStatus::Pending
            && sale.status_at(now_ms()) != SaleStatus::Active
        {
            return Err(SaleError::AlreadyEnded);
        }
        self.hot.cancel(id).await?;
        let changed = self
            .store
            .finish(id, SaleStatus::Cancelled, EndReason::Cancelled)
            .await?;
        if changed {
            let ev = crate::realtime::LifecycleEvent::ended(id, "cancelled");
            if let Err(e) = crate::realtime::publish_lifecycle(&self.pool, &ev).await {
                tracing::warn!(error = %e, "failed to announce a cancellation");
            }
        }
        let sale = self.store.get(id).await?.ok_or(SaleError::NotFound)?;
        Ok(sale)
    }

    /// Re-seeds Redis for every open sale it no longer holds (Redis restarted
    /// empty). Stock is rebuilt from the orders MongoDB holds; stock Redis
    /// still holds is never touched. Returns how many sales were re-seeded.
    pub async fn reseed_missing(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for sale in self.store.open(now_ms()).await? {
            let id = sale.sale_id();
            if self.hot.is_seeded(id).await? {
                // Make sure the write-behind knows the stream even if the
                // registry was lost on its own.
                self.hot.seed(&hot(&sale, 0, 0)).await?;
                continue;
            }
            let summary = self.orders.sale_summary(id).await?;
            let buyers: Vec<(String, i64, i64, i64)> = summary
                .buyers
                .iter()
                .map(|b| (b.user.hex(), b.units, b.first_ms, b.first_seq))
                .collect();
            self.hot.restore_buyers(id, &buyers).await?;
            let stock = (sale.total_units - summary.sold).max(0);
            if self.hot.seed(&hot(&sale, stock, summary.max_seq)).await? {
                tracing::info!(sale = %id, stock, sold = summary.sold, "re-seeded a sale into Redis");
                n += 1;
            }
        }
        Ok(n)
    }
}

fn hot(sale: &FlashSale, stock_if_new: i64, seq_floor: i64) -> HotSale {
    HotSale {
        id: sale.sale_id(),
        start_ms: sale.start_time.timestamp_millis(),
        end_ms: sale.end_time.timestamp_millis(),
        max_per_user: sale.max_per_user,
        max_per_transaction: sale.max_per_transaction,
        price_cents: sale.sale_price_cents,
        total_units: sale.total_units,
        max_accounts_per_ip: sale.max_accounts_per_ip,
        stock_if_new,
        seq_floor,
    }
}
