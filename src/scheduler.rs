//! The scheduler: exactly one leader among all instances moves sales through
//! pending → active → ended and announces each change to every instance.
//!
//! Leadership is a Redis lease (`SET NX PX`, renewed by a script that checks
//! the owner) carrying a fencing epoch. Every MongoDB status change is
//! conditional on the old status and on the epoch, so a transition happens,
//! and is announced, exactly once even if two instances briefly both believe
//! they lead. A leader that dies is replaced within one lease period.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use fred::prelude::Pool;

use crate::error::{ErrorChain, StoreError};
use crate::hot::HotSales;
use crate::ids::SaleId;
use crate::realtime::{LifecycleEvent, publish_lifecycle};
use crate::redis::lease::Lease;
use crate::sales::{EndReason, FlashSale, SaleStatus, SaleStore};

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    Follower,
    Leader { epoch: i64, transitions: usize },
}

#[derive(Debug)]
pub struct Scheduler {
    pool: Pool,
    hot: HotSales,
    sales: SaleStore,
    /// Leadership: held by at most one instance, with a fencing epoch.
    lease: Lease,
    tick: Duration,
}

impl Scheduler {
    pub fn new(
        pool: Pool,
        hot: HotSales,
        sales: SaleStore,
        lease_key: &str,
        instance: String,
        ttl: Duration,
        tick: Duration,
    ) -> Self {
        Self {
            lease: Lease::new(pool.clone(), lease_key, instance, ttl),
            pool,
            hot,
            sales,
            tick,
        }
    }

    /// Keeps or takes the lease, then, as leader, applies due transitions.
    pub async fn tick_once(&mut self) -> Result<TickOutcome, StoreError> {
        let epoch = self.lease.keep().await?;
        metrics::gauge!(crate::metrics::SCHEDULER_LEADER).set(if epoch.is_some() {
            1.0
        } else {
            0.0
        });
        let Some(epoch) = epoch else {
            return Ok(TickOutcome::Follower);
        };
        let transitions = self.transitions(epoch).await?;
        Ok(TickOutcome::Leader { epoch, transitions })
    }

    async fn transitions(&self, epoch: i64) -> Result<usize, StoreError> {
        let now = crate::redis::time_ms(&self.pool).await?;
        let mut n = 0;
        for sale in self.sales.due_to_start(now).await? {
            if self
                .sales
                .transition(
                    sale.sale_id(),
                    &[SaleStatus::Pending],
                    SaleStatus::Active,
                    None,
                    epoch,
                )
                .await?
            {
                n += 1;
                metrics::counter!(crate::metrics::SCHEDULER_TRANSITIONS_TOTAL, "to" => "active")
                    .increment(1);
                self.announce(&LifecycleEvent::started(sale.sale_id()))
                    .await;
            }
        }
        for sale in self.sales.due_to_end(now).await? {
            n += usize::from(
                self.end(sale.sale_id(), EndReason::TimeEnded, epoch)
                    .await?,
            );
        }
        let running = self.sales.running(now).await?;
        let ids: Vec<SaleId> = running.iter().map(FlashSale::sale_id).collect();
        let stock = self.hot.available_many(&ids).await?;
        for ((id, units), sale) in ids.into_iter().zip(stock).zip(&running) {
            if let Some(u) = units {
                let label = id.hex();
                metrics::gauge!(crate::metrics::SALE_STOCK_UNITS, "sale" => label.clone())
                    .set(u.max(0) as f64);
                metrics::gauge!(crate::metrics::SALE_SOLD_UNITS, "sale" => label)
                    .set((sale.total_units - u.max(0)) as f64);
            }
            if units.is_some_and(|u| u <= 0) {
                n += usize::from(self.end(id, EndReason::SoldOut, epoch).await?);
            }
        }
        Ok(n)
    }

    async fn end(&self, sale: SaleId, reason: EndReason, epoch: i64) -> Result<bool, StoreError> {
        let changed = self
            .sales
            .transition(
                sale,
                &[SaleStatus::Pending, SaleStatus::Active],
                SaleStatus::Ended,
                Some(reason),
                epoch,
            )
            .await?;
        if changed {
            metrics::counter!(crate::metrics::SCHEDULER_TRANSITIONS_TOTAL, "to" => "ended")
                .increment(1);
            let word = match reason {
                EndReason::SoldOut => "sold-out",
                EndReason::TimeEnded => "time-ended",
                EndReason::Cancelled => "cancelled",
            };
            self.announce(&LifecycleEvent::ended(sale, word)).await;
        }
        Ok(changed)
    }

    async fn announce(&self, ev: &LifecycleEvent) {
        tracing::info!(sale = %ev.flash_sale_id, event = %ev.event, reason = ?ev.reason, "sale lifecycle");
        if let Err(e) = publish_lifecycle(&self.pool, ev).await {
            tracing::warn!(error = %ErrorChain(&e), "failed to publish a lifecycle event");
        }
    }

    /// Gives up the lease so another instance can lead at once.
    pub async fn release(&mut self) {
        metrics::gauge!(crate::metrics::SCHEDULER_LEADER).set(0.0);
        if let Err(e) = self.lease.release().await {
            tracing::warn!(error = %ErrorChain(&e), "failed to release the scheduler lease; it expires by itself");
        }
    }

    /// Ticks until stopped, then releases the lease.
    pub async fn run_until_stopped(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.tick_once().await {
                        tracing::warn!(error = %ErrorChain(&e), "scheduler tick failed");
                    }
                }
            }
        }
        self.release().await;
    }
}
