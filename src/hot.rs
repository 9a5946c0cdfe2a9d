//! Each sale's hot state in Redis, apart from the purchase itself: seeding
//! it (never resetting stock Redis already holds), restoring buyers after
//! Redis lost them, its window/state/stock snapshot, live availability, and
//! cancelling. Used by `sales` (lifecycle), `realtime` (snapshots and stock)
//! and `scheduler`; the purchase is `engine`.

use std::sync::{Arc, LazyLock};

use fred::prelude::*;

use crate::engine::{Closed, ClosedSales, ORDERS_GROUP, SALES_REGISTRY, SaleKeys};
use crate::error::StoreError;
use crate::ids::SaleId;
use crate::redis::Script;

pub static SEED_SALE: LazyLock<Script> =
    LazyLock::new(|| Script::new("seed_sale", include_str!("../lua/seed_sale.lua")));
pub static CANCEL_SALE: LazyLock<Script> =
    LazyLock::new(|| Script::new("cancel_sale", include_str!("../lua/cancel_sale.lua")));

/// What Redis needs to know about a sale.
#[derive(Debug, Clone)]
pub struct HotSale {
    pub id: SaleId,
    pub start_ms: i64,
    pub end_ms: i64,
    pub max_per_user: i64,
    pub max_per_transaction: i64,
    pub price_cents: i64,
    pub total_units: i64,
    /// Distinct accounts that may buy from one client IP (0: no cap).
    pub max_accounts_per_ip: i64,
    /// Units to put on sale when Redis holds no stock for it yet.
    pub stock_if_new: i64,
    /// The order sequence continues above this (orders already in MongoDB).
    pub seq_floor: i64,
}

/// A sale's hot state as Redis holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub start_ms: i64,
    pub end_ms: i64,
    pub cancelled: bool,
    pub available: i64,
}

/// Reads and writes sales' hot state.
#[derive(Debug, Clone)]
pub struct HotSales {
    pool: Pool,
    /// The purchase engine's in-memory closed answers: a cancel is known at
    /// once on this instance.
    closed: Arc<ClosedSales>,
}

impl HotSales {
    pub fn new(pool: Pool, closed: Arc<ClosedSales>) -> Self {
        Self { pool, closed }
    }

    /// Writes a sale's hot state; never resets stock Redis already holds.
    /// Returns true when the stock was created by this call.
    pub async fn seed(&self, sale: &HotSale) -> Result<bool, StoreError> {
        let keys = SaleKeys::new(sale.id);
        let created: i64 = SEED_SALE
            .call(
                &self.pool,
                vec![keys.meta, keys.stock, keys.seq, keys.orders],
                vec![
                    sale.start_ms.to_string(),
                    sale.end_ms.to_string(),
                    sale.max_per_user.to_string(),
                    sale.max_per_transaction.to_string(),
                    sale.price_cents.to_string(),
                    sale.total_units.to_string(),
                    sale.stock_if_new.to_string(),
                    sale.seq_floor.to_string(),
                    ORDERS_GROUP.to_owned(),
                    sale.max_accounts_per_ip.to_string(),
                ],
            )
            .await?;
        let _: i64 = self.pool.sadd(SALES_REGISTRY, sale.id.hex()).await?;
        Ok(created == 1)
    }

    /// True when Redis holds the sale's hot state.
    pub async fn is_seeded(&self, sale: SaleId) -> Result<bool, StoreError> {
        let n: i64 = self.pool.exists(SaleKeys::new(sale).stock).await?;
        Ok(n == 1)
    }

    /// Restores buyers' counts and the leaderboard (after Redis lost them).
    /// `buyers` holds (user hex, units bought, first purchase ms, first order seq).
    pub async fn restore_buyers(
        &self,
        sale: SaleId,
        buyers: &[(String, i64, i64, i64)],
    ) -> Result<(), StoreError> {
        if buyers.is_empty() {
            return Ok(());
        }
        let keys = SaleKeys::new(sale);
        for chunk in buyers.chunks(500) {
            let mut fields: Vec<(String, String)> = Vec::with_capacity(chunk.len() * 2);
            let mut scores: Vec<(f64, String)> = Vec::with_capacity(chunk.len());
            for (user, units, first_ms, first_seq) in chunk {
                fields.push((user.clone(), units.to_string()));
                fields.push((format!("t:{user}"), first_ms.to_string()));
                scores.push((*first_seq as f64, user.clone()));
            }
            let _: i64 = self.pool.hset(&keys.buyers, fields).await?;
            let _: i64 = self
                .pool
                .zadd(
                    &keys.leaderboard,
                    Some(fred::types::SetOptions::NX),
                    None,
                    false,
                    false,
                    scores,
                )
                .await?;
        }
        Ok(())
    }

    /// Units left, live; `None` when Redis holds no such sale.
    pub async fn available(&self, sale: SaleId) -> Result<Option<i64>, StoreError> {
        Ok(self.pool.get(SaleKeys::new(sale).stock).await?)
    }

    /// Units left for many sales in one pipelined round trip.
    pub async fn available_many(&self, sales: &[SaleId]) -> Result<Vec<Option<i64>>, StoreError> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let pipe = self.pool.next().pipeline();
        for s in sales {
            let _: () = pipe.get(SaleKeys::new(*s).stock).await?;
        }
        Ok(pipe.all().await?)
    }

    /// The window, state and stock of a sale, in one round trip.
    pub async fn snapshot(&self, sale: SaleId) -> Result<Option<Snapshot>, StoreError> {
        let keys = SaleKeys::new(sale);
        let pipe = self.pool.next().pipeline();
        let _: () = pipe
            .hmget(&keys.meta, vec!["start", "end", "state"])
            .await?;
        let _: () = pipe.get(&keys.stock).await?;
        let (meta, stock): (Vec<Option<String>>, Option<i64>) = pipe.all().await?;
        let num = |i: usize| {
            meta.get(i)
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<i64>().ok())
        };
        let (Some(start_ms), Some(end_ms), Some(available)) = (num(0), num(1), stock) else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            start_ms,
            end_ms,
            cancelled: meta.get(2).cloned().flatten().as_deref() == Some("cancelled"),
            available,
        }))
    }

    /// Marks a sale cancelled in Redis. Returns false when it already was.
    pub async fn cancel(&self, sale: SaleId) -> Result<bool, StoreError> {
        let r: i64 = CANCEL_SALE
            .call(
                &self.pool,
                vec![SaleKeys::new(sale).meta],
                Vec::<String>::new(),
            )
            .await?;
        if r >= 0 {
            self.closed.mark(
                sale,
                Closed::Ended {
                    end_ms: 0,
                    cancelled: true,
                },
            );
        }
        Ok(r == 1)
    }
}
