//! The purchase engine: each sale's hot state in Redis and the one-round-trip
//! purchase. Every Redis call about a sale's stock, limits and buyers lives here.
//!
//! Invariant: a purchase is a single EVALSHA of `lua/purchase.lua`; nothing else
//! ever decrements stock.

pub mod closed;
pub mod keys;
pub mod outcome;
pub mod scripts;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Key;

pub use closed::{Closed, ClosedSales};
pub use keys::{CallKeys, ORDERS_GROUP, SALES_REGISTRY, SaleKeys};
pub use outcome::{BadReply, Placed, PurchaseOutcome};
pub use scripts::Scripts;

use crate::error::StoreError;
use crate::ids::{SaleId, UserId};

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

/// A validated purchase request.
#[derive(Debug, Clone)]
pub struct PurchaseRequest<'a> {
    pub sale: SaleId,
    pub user: UserId,
    pub quantity: u32,
    pub ip: IpAddr,
    pub idempotency_key: Option<&'a str>,
}

/// The purchase engine shared by every request.
#[derive(Debug, Clone)]
pub struct PurchaseEngine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    scripts: Scripts,
    closed: ClosedSales,
    idempotency_ttl: Duration,
    attempts: AttemptLimit,
    /// Each recently bought sale's keys, so a purchase formats only the
    /// per-buyer ones. Bounded: unknown sale ids cannot grow it.
    call_keys: quick_cache::sync::Cache<SaleId, Arc<CallKeys>>,
}

/// Sales whose purchase keys are kept ready.
const CALL_KEYS_CACHED: usize = 4_096;

/// Purchase attempts allowed per buyer per window, enforced in Redis so the
/// limit holds across instances.
#[derive(Debug, Clone, Copy)]
pub struct AttemptLimit {
    pub max: u32,
    pub window: Duration,
}

impl PurchaseEngine {
    pub fn new(pool: Pool, idempotency_ttl: Duration, attempts: AttemptLimit) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                scripts: Scripts::new(),
                closed: ClosedSales::default(),
                idempotency_ttl,
                attempts,
                call_keys: quick_cache::sync::Cache::new(CALL_KEYS_CACHED),
            }),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn closed(&self) -> &ClosedSales {
        &self.inner.closed
    }

    /// Loads every script on every primary.
    pub async fn load_scripts(&self) -> Result<(), StoreError> {
        self.inner.scripts.load_all(self.inner.pool.next()).await?;
        Ok(())
    }

    /// The answer for a sale this instance knows is over, if it is.
    pub fn closed_answer(&self, sale: SaleId) -> Option<PurchaseOutcome> {
        self.inner.closed.get(sale).map(|c| match c {
            Closed::SoldOut => PurchaseOutcome::SoldOut,
            Closed::Ended { end_ms, cancelled } => PurchaseOutcome::Ended { end_ms, cancelled },
        })
    }

    /// Buys units in one atomic script call, or answers from memory when this
    /// instance already knows the sale is over.
    pub async fn purchase(&self, req: &PurchaseRequest<'_>) -> Result<PurchaseOutcome, StoreError> {
        // A keyed retry must reach Redis so it can get its first order back.
        if req.idempotency_key.is_none()
            && let Some(answer) = self.closed_answer(req.sale)
        {
            return Ok(answer);
        }
        let hot = self.call_keys(req.sale);
        let user = req.user.hex();
        let mut keys: Vec<Key> = Vec::with_capacity(9);
        keys.extend(hot.fixed.iter().cloned());
        keys.push(match req.idempotency_key {
            Some(k) => Key::from(hot.names.idempotency(&user, Some(k))),
            None => hot.no_idempotency.clone(),
        });
        keys.push(Key::from(
            hot.names
                .ip_accounts(&crate::net::ip_key(req.ip).to_string()),
        ));
        keys.push(Key::from(hot.names.attempts(&user)));
        let attempts = &self.inner.attempts;
        let ttl = if req.idempotency_key.is_some() {
            self.inner.idempotency_ttl.as_secs().max(1)
        } else {
            0
        };
        let int = |v: u128| Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
        let started = std::time::Instant::now();
        let reply: Vec<i64> = self
            .inner
            .scripts
            .purchase
            .call(
                &self.inner.pool,
                keys,
                vec![
                    Value::from(user),
                    Value::Integer(i64::from(req.quantity)),
                    Value::from(req.ip.to_string()),
                    int(u128::from(ttl)),
                    Value::Integer(i64::from(attempts.max)),
                    int(attempts.window.as_millis()),
                ],
            )
            .await?;
        metrics::histogram!(crate::metrics::PURCHASE_SCRIPT_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        let outcome = PurchaseOutcome::decode(&reply, i64::from(req.quantity))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match outcome {
            PurchaseOutcome::SoldOut => self.inner.closed.mark(req.sale, Closed::SoldOut),
            PurchaseOutcome::Accepted { order, .. } if order.remaining == 0 => {
                self.inner.closed.mark(req.sale, Closed::SoldOut);
            }
            PurchaseOutcome::Ended { end_ms, cancelled } => {
                self.inner
                    .closed
                    .mark(req.sale, Closed::Ended { end_ms, cancelled });
            }
            _ => {}
        }
        Ok(outcome)
    }

    fn call_keys(&self, sale: SaleId) -> Arc<CallKeys> {
        let cache = &self.inner.call_keys;
        cache.get(&sale).unwrap_or_else(|| {
            let keys = Arc::new(CallKeys::new(sale));
            cache.insert(sale, keys.clone());
            keys
        })
    }

    /// Writes a sale's hot state; never resets stock Redis already holds.
    /// Returns true when the stock was created by this call.
    pub async fn seed(&self, sale: &HotSale) -> Result<bool, StoreError> {
        let keys = SaleKeys::new(sale.id);
        let created: i64 = self
            .inner
            .scripts
            .seed_sale
            .call(
                &self.inner.pool,
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
        let _: i64 = self.inner.pool.sadd(SALES_REGISTRY, sale.id.hex()).await?;
        Ok(created == 1)
    }

    /// True when Redis holds the sale's hot state.
    pub async fn is_seeded(&self, sale: SaleId) -> Result<bool, StoreError> {
        let n: i64 = self.inner.pool.exists(SaleKeys::new(sale).stock).await?;
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
            let _: i64 = self.inner.pool.hset(&keys.buyers, fields).await?;
            let _: i64 = self
                .inner
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
        Ok(self.inner.pool.get(SaleKeys::new(sale).stock).await?)
    }

    /// Units left for many sales in one pipelined round trip.
    pub async fn available_many(&self, sales: &[SaleId]) -> Result<Vec<Option<i64>>, StoreError> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let pipe = self.inner.pool.next().pipeline();
        for s in sales {
            let _: () = pipe.get(SaleKeys::new(*s).stock).await?;
        }
        Ok(pipe.all().await?)
    }

    /// The window, state and stock of a sale, in one round trip.
    pub async fn snapshot(&self, sale: SaleId) -> Result<Option<Snapshot>, StoreError> {
        let keys = SaleKeys::new(sale);
        let pipe = self.inner.pool.next().pipeline();
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
        let r: i64 = self
            .inner
            .scripts
            .cancel_sale
            .call(
                &self.inner.pool,
                vec![SaleKeys::new(sale).meta],
                Vec::<String>::new(),
            )
            .await?;
        if r >= 0 {
            self.inner.closed.mark(
                sale,
                Closed::Ended {
                    end_ms: 0,
                    cancelled: true,
                },
            );
        }
        Ok(r == 1)
    }

    /// Takes a short lock, waiting up to `wait` for it. Returns the token.
    pub async fn lock(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<String>, StoreError> {
        let token = crate::ids::SaleId::new().hex();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let set: Option<String> = self
                .inner
                .pool
                .set(
                    key,
                    token.as_str(),
                    Some(Expiration::PX(ttl.as_millis() as i64)),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
            if set.is_some() {
                return Ok(Some(token));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .inner
            .scripts
            .unlock
            .call(
                &self.inner.pool,
                vec![key.to_owned()],
                vec![token.to_owned()],
            )
            .await?;
        Ok(())
    }

    /// The scripts, for modules that run their own (the scheduler's lease).
    pub fn scripts(&self) -> &Scripts {
        &self.inner.scripts
    }

    /// Redis's clock in unix milliseconds (the clock sale windows use).
    pub async fn redis_time_ms(&self) -> Result<i64, StoreError> {
        let t: Vec<String> = self
            .inner
            .pool
            .next()
            .custom(
                fred::types::CustomCommand::new_static(
                    "TIME",
                    fred::types::ClusterHash::Random,
                    false,
                ),
                Vec::<String>::new(),
            )
            .await?;
        let secs: i64 = t.first().and_then(|s| s.parse().ok()).unwrap_or(0);
        let micros: i64 = t.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok(secs * 1000 + micros / 1000)
    }

    /// Redis answers PING.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.inner.pool.next().ping(None).await?;
        Ok(())
    }
}
