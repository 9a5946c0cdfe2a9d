//! Reconciliation: per sale, the units Redis sold against the orders MongoDB
//! holds. Used by the admin reconcile endpoint and the `reconcile` subcommand;
//! it reads sales, orders and the write-behind's stream state, and none of
//! them reads it.

use fred::prelude::*;
use serde::Serialize;

use crate::engine::{SALES_REGISTRY, SaleKeys};
use crate::error::StoreError;
use crate::ids::SaleId;
use crate::orders::OrderStore;
use crate::sales::SaleStore;
use crate::write_behind::group_info;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub flash_sale_id: String,
    pub total_units: i64,
    /// totalUnits minus the stock Redis holds.
    pub redis_sold: i64,
    /// Units in MongoDB's orders for the sale.
    pub mongo_sold: i64,
    pub mongo_orders: i64,
    /// Orders the script allocated (the sequence counter).
    pub redis_orders: i64,
    /// Stream entries not yet acknowledged by the write-behind.
    pub pending_write_behind: i64,
    /// Orders the write-behind gave up on (malformed, or refused by MongoDB
    /// `WRITE_BEHIND_MAX_DELIVERIES` times): in `<orders stream>:dead` with
    /// their payload, not in MongoDB. Any makes the sale inconsistent.
    pub dead_lettered: i64,
    /// redisSold - mongoSold; 0 when everything reached MongoDB.
    pub difference: i64,
    pub consistent: bool,
}

#[derive(Debug, Clone)]
pub struct Reconciler {
    pool: Pool,
    orders: OrderStore,
    sales: SaleStore,
}

impl Reconciler {
    pub fn new(pool: Pool, orders: OrderStore, sales: SaleStore) -> Self {
        Self {
            pool,
            orders,
            sales,
        }
    }

    pub async fn sale(&self, sale: SaleId) -> Result<ReconcileReport, StoreError> {
        let keys = SaleKeys::new(sale);
        let client = self.pool.next();
        let total: Option<i64> = client.hget(&keys.meta, "total").await?;
        let stock: Option<i64> = client.get(&keys.stock).await?;
        let seq: Option<i64> = client.get(&keys.seq).await?;
        // Pending (read, not acknowledged) plus unread entries: not yet in MongoDB.
        let (pending, unread) = group_info(client, &keys.orders)
            .await?
            .map_or((0, 0), |g| (g.pending, g.lag));
        let total = match total {
            Some(t) => t,
            None => self.sales.get(sale).await?.map_or(0, |s| s.total_units),
        };
        let redis_sold = total - stock.unwrap_or(total);
        let dead_lettered: i64 = client.xlen(format!("{}:dead", keys.orders)).await?;
        let (mongo_sold, mongo_orders) = self.orders.sale_totals(sale).await?;
        let difference = redis_sold - mongo_sold;
        Ok(ReconcileReport {
            flash_sale_id: sale.hex(),
            total_units: total,
            redis_sold,
            mongo_sold,
            mongo_orders,
            redis_orders: seq.unwrap_or(0),
            pending_write_behind: pending + unread,
            dead_lettered,
            difference,
            consistent: difference == 0 && dead_lettered == 0,
        })
    }

    /// Every sale in the write-behind registry: open ones, and ended ones
    /// with orders not yet in MongoDB or dead-lettered (an ended sale fully
    /// written leaves it; ask for it by id).
    pub async fn all(&self) -> Result<Vec<ReconcileReport>, StoreError> {
        let ids: Vec<String> = self.pool.smembers(SALES_REGISTRY).await?;
        let mut out = Vec::new();
        for id in ids {
            if let Ok(s) = SaleId::parse(&id) {
                out.push(self.sale(s).await?);
            }
        }
        out.sort_by(|a, b| a.flash_sale_id.cmp(&b.flash_sale_id));
        Ok(out)
    }
}
