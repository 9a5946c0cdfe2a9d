//! What feeds the hub: the stock of every sale this instance's watchers
//! follow, read from Redis once per tick (one pipelined GET per watched
//! sale, whichever instance sold), so a watcher sees at most one stock
//! update per sale per tick; and lifecycle events on a Redis pub/sub
//! channel, published by the scheduler or the cancel endpoint.
//!
//! Stock is polled rather than pushed by keyspace notifications: those cost
//! Redis a notification per write of every purchase (matched against every
//! subscriber's pattern) and each instance a message and a task wake-up per
//! purchase, while the tick reads each watched sale once whatever the
//! purchase rate, and nothing when nobody watches.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Hub, ServerMessage};
use crate::error::{ErrorChain, StoreError};
use crate::hot::HotSales;
use crate::ids::SaleId;

/// The pub/sub channel of lifecycle events.
pub const EVENTS_CHANNEL: &str = "flashsale:events";

/// A lifecycle event as published on [`EVENTS_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEvent {
    pub event: LifecycleKind,
    pub flash_sale_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which lifecycle change an event announces (its wire name is the
/// WebSocket event's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleKind {
    #[serde(rename = "flashSaleStarted")]
    Started,
    #[serde(rename = "flashSaleEnded")]
    Ended,
}

impl std::fmt::Display for LifecycleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Started => "flashSaleStarted",
            Self::Ended => "flashSaleEnded",
        })
    }
}

impl LifecycleEvent {
    pub fn started(sale: SaleId) -> Self {
        Self {
            event: LifecycleKind::Started,
            flash_sale_id: sale.hex(),
            reason: None,
        }
    }

    pub fn ended(sale: SaleId, reason: &str) -> Self {
        Self {
            event: LifecycleKind::Ended,
            flash_sale_id: sale.hex(),
            reason: Some(reason.to_owned()),
        }
    }

    fn message(&self) -> ServerMessage {
        match self.event {
            LifecycleKind::Started => ServerMessage::Started {
                flash_sale_id: self.flash_sale_id.clone(),
            },
            LifecycleKind::Ended => ServerMessage::Ended {
                flash_sale_id: self.flash_sale_id.clone(),
                reason: self
                    .reason
                    .clone()
                    .unwrap_or_else(|| "time-ended".to_owned()),
            },
        }
    }
}

/// Publishes a lifecycle event to every instance.
pub async fn publish_lifecycle(pool: &Pool, event: &LifecycleEvent) -> Result<(), StoreError> {
    let payload = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let _: i64 = pool.next().publish(EVENTS_CHANNEL, payload).await?;
    Ok(())
}

/// Listens to Redis and feeds the hub until stopped.
#[derive(Debug)]
pub struct Source {
    /// Lifecycle, blocklist and token epoch channels (pub/sub reaches every
    /// cluster node).
    subscriber: SubscriberClient,
    hub: Arc<Hub>,
    hot: HotSales,
    blocklist: Arc<crate::fraud::Blocklist>,
    epochs: Arc<crate::auth::TokenEpochs>,
    tick: Duration,
}

impl Source {
    pub fn new(
        subscriber: SubscriberClient,
        hub: Arc<Hub>,
        hot: HotSales,
        blocklist: Arc<crate::fraud::Blocklist>,
        epochs: Arc<crate::auth::TokenEpochs>,
        tick: Duration,
    ) -> Self {
        Self {
            subscriber,
            hub,
            hot,
            blocklist,
            epochs,
            tick,
        }
    }

    /// Connects and subscribes; re-subscribes by itself after reconnects.
    pub async fn connect(&self) -> Result<(), StoreError> {
        self.subscriber.init().await?;
        // A detached task that re-subscribes after every reconnect.
        drop(self.subscriber.manage_subscriptions());
        self.subscriber.subscribe(EVENTS_CHANNEL).await?;
        self.subscriber
            .subscribe(crate::fraud::BLOCKLIST_CHANGED)
            .await?;
        self.subscriber
            .subscribe(crate::auth::EPOCH_CHANGED)
            .await?;
        Ok(())
    }

    pub async fn run_until_stopped(self, stop: CancellationToken) {
        let mut messages = self.subscriber.message_rx();
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                m = messages.recv() => match m {
                    Ok(m) => self.on_message(&m).await,
                    Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "lifecycle events lagged"),
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => self.poll().await,
            }
        }
        let _ = self.subscriber.quit().await;
    }

    /// One tick: reads the stock of every watched sale and publishes what
    /// went down (the hub sends nothing for an unchanged level).
    async fn poll(&self) {
        let sales = self.hub.watched();
        if !sales.is_empty() {
            self.refresh(&sales).await;
        }
    }
}

impl Source {
    async fn on_message(&self, m: &fred::types::Message) {
        if &*m.channel == crate::fraud::BLOCKLIST_CHANGED {
            if let Err(e) = self.blocklist.reload().await {
                tracing::warn!(error = %ErrorChain(&e), "blocklist reload failed");
            }
            return;
        }
        if &*m.channel == crate::auth::EPOCH_CHANGED {
            if let Some(text) = m.value.as_str() {
                self.epochs.on_message(&text);
            }
            return;
        }
        if &*m.channel != EVENTS_CHANNEL {
            return;
        }
        let Some(text) = m.value.as_str() else { return };
        let Ok(ev) = serde_json::from_str::<LifecycleEvent>(&text) else {
            tracing::warn!("malformed lifecycle event ignored");
            return;
        };
        let Ok(sale) = SaleId::parse(&ev.flash_sale_id) else {
            return;
        };
        let msg = ev.message();
        if let ServerMessage::Ended { reason, .. } = &msg
            && reason == "cancelled"
        {
            self.hub.mark_cancelled(sale);
        }
        if matches!(msg, ServerMessage::Ended { .. }) {
            // Make the final stock visible before the end event where we can.
            self.refresh(&[sale]).await;
        }
        self.hub.publish_event(sale, &msg);
    }

    async fn refresh(&self, sales: &[SaleId]) {
        match self.hot.available_many(sales).await {
            Ok(levels) => {
                for (sale, units) in sales.iter().zip(levels) {
                    if let Some(units) = units {
                        self.hub.publish_stock(*sale, units);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %ErrorChain(&e), "stock refresh failed"),
        }
    }
}
