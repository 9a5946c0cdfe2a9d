//! The purchase engine: one EVALSHA of `lua/purchase.lua` per purchase and
//! its outcome, plus the in-memory answer for sales this instance knows are
//! over. `keys` names every Redis key of a sale.
//!
//! Invariant: a purchase is a single script call; nothing else ever
//! decrements stock. A sale's other hot state (seed, snapshot, cancel) is
//! `crate::hot`.
//!
//! A purchase with an Idempotency-Key costs one more round trip, before the
//! script: `SET {user:<id>}:idem:<key> <saleId> NX GET` binds the key to its
//! first sale, so the same key on another sale is refused. It cannot live in
//! the script, which may touch only the sale's slot. Unkeyed purchases skip it.

pub mod closed;
pub mod keys;
pub mod outcome;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use fred::prelude::*;
use fred::types::Key;

pub use closed::{Closed, ClosedSales};
pub use keys::{CallKeys, ORDERS_GROUP, SALES_REGISTRY, SaleKeys};
pub use outcome::{BadReply, Placed, PurchaseOutcome, Refusal};

use crate::error::StoreError;
use crate::ids::{SaleId, UserId};
use crate::redis::Script;
use crate::redis::ack::Acks;

/// `lua/purchase.lua`: window, stock, limits, idempotency, leaderboard and
/// the order stream in one atomic call.
pub static PURCHASE: LazyLock<Script> =
    LazyLock::new(|| Script::new("purchase", include_str!("../../lua/purchase.lua")));

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
    /// Confirms accepted orders on replicas before they are answered.
    acks: Acks,
    /// Round-robin over the pool's connections when orders are confirmed.
    next_conn: AtomicUsize,
    /// Shared with `hot::HotSales`, which marks cancelled sales.
    closed: Arc<ClosedSales>,
    idempotency_ttl: Duration,
    attempts: AttemptLimit,
    /// Each recently bought sale's keys, so a purchase formats only the
    /// per-buyer ones. Bounded: unknown sale ids cannot grow it.
    call_keys: quick_cache::sync::Cache<SaleId, Arc<CallKeys>>,
}

/// Sales whose purchase keys are kept ready.
const CALL_KEYS_CACHED: usize = 4_096;

/// How many replicas must hold an accepted order before it is answered
/// (`REDIS_ACK_REPLICAS`, 0: none) and how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub struct AckPolicy {
    pub replicas: u32,
    pub timeout: Duration,
}

/// Purchase attempts allowed per buyer per window, enforced in Redis so the
/// limit holds across instances.
#[derive(Debug, Clone, Copy)]
pub struct AttemptLimit {
    pub max: u32,
    pub window: Duration,
}

impl PurchaseEngine {
    pub fn new(
        pool: Pool,
        closed: Arc<ClosedSales>,
        idempotency_ttl: Duration,
        attempts: AttemptLimit,
        ack: AckPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                acks: Acks::new(&pool, ack.replicas, ack.timeout),
                next_conn: AtomicUsize::new(0),
                pool,
                closed,
                idempotency_ttl,
                attempts,
                call_keys: quick_cache::sync::Cache::new(CALL_KEYS_CACHED),
            }),
        }
    }

    /// The answer for a sale this instance knows is over, if it is.
    pub fn closed_answer(&self, sale: SaleId) -> Option<Refusal> {
        self.inner.closed.get(sale).map(|c| match c {
            Closed::SoldOut => Refusal::SoldOut,
            Closed::Ended { end_ms, cancelled } => Refusal::Ended { end_ms, cancelled },
        })
    }

    /// Buys units in one atomic script call, or answers from memory when this
    /// instance already knows the sale is over. A keyed purchase first binds
    /// its key to the sale ([`Self::bind_key`]).
    pub async fn purchase(&self, req: &PurchaseRequest<'_>) -> Result<PurchaseOutcome, StoreError> {
        // A keyed retry must reach Redis so it can get its first order back.
        if req.idempotency_key.is_none()
            && let Some(answer) = self.closed_answer(req.sale)
        {
            return Ok(PurchaseOutcome::Refused(answer));
        }
        if let Some(key) = req.idempotency_key
            && let Some(sale) = self.bind_key(req.user, key, req.sale).await?
        {
            return Ok(PurchaseOutcome::Refused(Refusal::IdempotencyOtherSale {
                sale,
            }));
        }
        let hot = self.call_keys(req.sale);
        let user = req.user.hex();
        let mut keys: Vec<Key> = Vec::with_capacity(9);
        keys.extend(hot.fixed.iter().cloned());
        keys.push(match req.idempotency_key {
            Some(k) => Key::from(hot.names.idempotency(&user, Some(k))),
            None => hot.no_idempotency.clone(),
        });
        // The address as the order records it, and as the per-address
        // account cap counts it (an IPv6 address by its /64): one string
        // when they are the same, as every IPv4 address is.
        let ip = req.ip.to_string();
        let ip_key = crate::net::ip_key(req.ip);
        let ip_key = if ip_key == req.ip {
            hot.names.ip_accounts(&ip)
        } else {
            hot.names.ip_accounts(&ip_key.to_string())
        };
        keys.push(Key::from(ip_key));
        keys.push(Key::from(hot.names.attempts(&user)));
        let attempts = &self.inner.attempts;
        let ttl = if req.idempotency_key.is_some() {
            self.inner.idempotency_ttl.as_secs().max(1)
        } else {
            0
        };
        let int = |v: u128| Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
        let started = std::time::Instant::now();
        let args = vec![
            Value::from(user),
            Value::Integer(i64::from(req.quantity)),
            Value::from(ip),
            int(u128::from(ttl)),
            Value::Integer(i64::from(attempts.max)),
            int(attempts.window.as_millis()),
        ];
        let acks = &self.inner.acks;
        // With REDIS_ACK_REPLICAS the script runs on a chosen connection, so
        // the WAIT that confirms it can follow on the same one: one that is
        // not waiting for the replicas now, so the script is not queued
        // behind a WAIT.
        let conn = acks.enabled().then(|| {
            let start = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
            acks.pick(start, hot.names.tag.as_bytes())
        });
        let reply: Vec<i64> = match conn {
            Some(i) => PURCHASE.call_on(&acks.clients()[i], keys, args).await?,
            None => PURCHASE.call(&self.inner.pool, keys, args).await?,
        };
        metrics::histogram!(crate::metrics::PURCHASE_SCRIPT_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        let outcome = PurchaseOutcome::decode(&reply, i64::from(req.quantity))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match outcome {
            PurchaseOutcome::Refused(Refusal::SoldOut) => {
                self.inner.closed.mark(req.sale, Closed::SoldOut);
            }
            PurchaseOutcome::Accepted { order, .. } if order.remaining == 0 => {
                self.inner.closed.mark(req.sale, Closed::SoldOut);
            }
            PurchaseOutcome::Refused(Refusal::Ended { end_ms, cancelled }) => {
                self.inner
                    .closed
                    .mark(req.sale, Closed::Ended { end_ms, cancelled });
            }
            _ => {}
        }
        if let Some(i) = conn
            && matches!(
                outcome,
                PurchaseOutcome::Accepted { .. } | PurchaseOutcome::Duplicate { .. }
            )
        {
            acks.confirm(i, hot.names.tag.as_bytes()).await?;
        }
        Ok(outcome)
    }

    /// Binds a user's Idempotency-Key to `sale` unless it is bound already,
    /// and returns the other sale it is bound to, if so. Bound to `sale`
    /// itself, the purchase goes on: the script replays the first order, or,
    /// when the bind succeeded but the script never ran (an outage, a
    /// timeout), the retry buys as the first attempt would have.
    async fn bind_key(
        &self,
        user: UserId,
        key: &str,
        sale: SaleId,
    ) -> Result<Option<SaleId>, StoreError> {
        use fred::types::{Expiration, SetOptions};
        let ttl = self.inner.idempotency_ttl.as_secs().max(1);
        let previous: Option<String> = self
            .inner
            .pool
            .set(
                keys::user_idempotency(&user.hex(), key),
                sale.hex(),
                Some(Expiration::EX(i64::try_from(ttl).unwrap_or(i64::MAX))),
                Some(SetOptions::NX),
                true,
            )
            .await?;
        match previous {
            None => Ok(None),
            Some(bound) if bound == sale.hex() => Ok(None),
            Some(bound) => SaleId::parse(&bound).map(Some).map_err(|_| {
                StoreError::Corrupt(format!("idempotency record names no sale: {bound:?}"))
            }),
        }
    }

    fn call_keys(&self, sale: SaleId) -> Arc<CallKeys> {
        let cache = &self.inner.call_keys;
        cache.get(&sale).unwrap_or_else(|| {
            let keys = Arc::new(CallKeys::new(sale));
            cache.insert(sale, keys.clone());
            keys
        })
    }
}
