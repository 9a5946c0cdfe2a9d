//! What feeds the hub: Redis keyspace notifications on the sales' stock keys
//! (every instance receives them, whichever instance sold), coalesced to at
//! most one stock update per sale per tick; and lifecycle events on a Redis
//! pub/sub channel, published by the scheduler or the cancel endpoint.
//!
//! Notifications are fire-and-forget (lost during a disconnect), so watched
//! sales are also re-read every second; they are never used for correctness.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Hub, ServerMessage};
use crate::engine::SaleKeys;
use crate::error::{ErrorChain, StoreError};
use crate::hot::HotSales;
use crate::ids::SaleId;

/// The pub/sub channel of lifecycle events.
pub const EVENTS_CHANNEL: &str = "flashsale:events";
const STOCK_PATTERN: &str = "__keyspace@*__:{sale:*}:stock";

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

/// Makes sure Redis sends the keyspace notifications stock updates need
/// (`K` and `$`, or `A`): sets them when allowed, else says what to configure.
pub async fn check_keyspace_config(pool: &Pool) -> Result<(), String> {
    let config = |args: Vec<&str>| {
        let client = pool.next().clone();
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move { crate::redis::on_each_node(&client, "CONFIG", args).await }
    };
    // On a cluster, the node with the least configured decides.
    let current: Result<Vec<String>, fred::error::Error> =
        config(vec!["GET", "notify-keyspace-events"])
            .await
            .map(|replies| {
                let values: Vec<String> = replies
                    .into_iter()
                    .map(|v| {
                        v.convert::<Vec<String>>()
                            .ok()
                            .and_then(|v| v.get(1).cloned())
                            .unwrap_or_default()
                    })
                    .collect();
                vec![
                    "notify-keyspace-events".to_owned(),
                    values
                        .into_iter()
                        .min_by_key(String::len)
                        .unwrap_or_default(),
                ]
            });
    let current = match current {
        Ok(v) => v.get(1).cloned().unwrap_or_default(),
        Err(e) => {
            return Err(format!(
                "cannot read notify-keyspace-events ({e}); configure Redis with notify-keyspace-events K$ (or KEA) for live stock updates"
            ));
        }
    };
    let has = |c: char| current.contains(c);
    if has('K') && (has('$') || has('A')) {
        return Ok(());
    }
    let mut wanted: String = current.clone();
    for c in ['K', '$'] {
        if !wanted.contains(c) {
            wanted.push(c);
        }
    }
    let set = config(vec!["SET", "notify-keyspace-events", wanted.as_str()]).await;
    match set {
        Ok(_) => {
            tracing::info!(from = %current, to = %wanted, "enabled Redis keyspace notifications for stock keys");
            Ok(())
        }
        Err(e) => Err(format!(
            "Redis notify-keyspace-events is `{current}` and cannot be changed ({e}); set it to include K$ (e.g. KEA) for live stock updates"
        )),
    }
}

/// Listens to Redis and feeds the hub until stopped.
#[derive(Debug)]
pub struct Source {
    /// Lifecycle, blocklist and token epoch channels (pub/sub reaches every
    /// cluster node),
    /// and keyspace notifications on a single server.
    subscriber: SubscriberClient,
    /// On a cluster: one subscriber per primary for its keyspace notifications.
    nodes: Vec<SubscriberClient>,
    hub: Arc<Hub>,
    hot: HotSales,
    blocklist: Arc<crate::fraud::Blocklist>,
    epochs: Arc<crate::auth::TokenEpochs>,
    tick: Duration,
}

impl Source {
    pub fn new(
        subscriber: SubscriberClient,
        nodes: Vec<SubscriberClient>,
        hub: Arc<Hub>,
        hot: HotSales,
        blocklist: Arc<crate::fraud::Blocklist>,
        epochs: Arc<crate::auth::TokenEpochs>,
        tick: Duration,
    ) -> Self {
        Self {
            subscriber,
            nodes,
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
        if self.nodes.is_empty() {
            self.subscriber.psubscribe(STOCK_PATTERN).await?;
        }
        for node in &self.nodes {
            node.init().await?;
            drop(node.manage_subscriptions());
            node.psubscribe(STOCK_PATTERN).await?;
        }
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
        // Keyspace events of every node mark watched sales dirty; the tick
        // below reads their stock. A flag, not a message per event: a
        // purchase storm must not wake this loop once per purchase.
        let dirty = Arc::new(Dirty::default());
        let sources: Vec<&SubscriberClient> = if self.nodes.is_empty() {
            vec![&self.subscriber]
        } else {
            self.nodes.iter().collect()
        };
        let forwarders: Vec<tokio::task::JoinHandle<()>> = sources
            .into_iter()
            .map(|client| {
                let mut rx = client.keyspace_event_rx();
                let dirty = dirty.clone();
                let hub = self.hub.clone();
                tokio::spawn(async move {
                    loop {
                        match rx.recv().await {
                            Ok(ev) => {
                                if let Some(sale) = ev.key.as_str().and_then(SaleKeys::sale_of)
                                    && hub.is_watched(sale)
                                {
                                    dirty.mark(sale);
                                }
                            }
                            // Events were lost: every watched sale is re-read.
                            Err(RecvError::Lagged(_)) => dirty.mark_all(),
                            Err(RecvError::Closed) => break,
                        }
                    }
                })
            })
            .collect();
        let mut messages = self.subscriber.message_rx();
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                m = messages.recv() => match m {
                    Ok(m) => self.on_message(&m).await,
                    Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "lifecycle events lagged"),
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    let sales = dirty.take(|| self.hub.watched());
                    if !sales.is_empty() {
                        self.refresh(&sales).await;
                    }
                }
                _ = refresh.tick() => dirty.mark_all(),
            }
        }
        for f in forwarders {
            f.abort();
        }
        let _ = self.subscriber.quit().await;
        for node in &self.nodes {
            let _ = node.quit().await;
        }
    }
}

/// Sales whose stock changed since the last tick.
#[derive(Debug, Default)]
struct Dirty {
    inner: std::sync::Mutex<DirtyInner>,
}

#[derive(Debug, Default)]
struct DirtyInner {
    sales: HashSet<SaleId>,
    /// Every watched sale must be re-read (events were lost, or the periodic
    /// refresh is due).
    all: bool,
}

impl Dirty {
    fn mark(&self, sale: SaleId) {
        if let Ok(mut d) = self.inner.lock()
            && !d.all
        {
            d.sales.insert(sale);
        }
    }

    fn mark_all(&self) {
        if let Ok(mut d) = self.inner.lock() {
            d.all = true;
        }
    }

    /// Takes the dirty sales; `watched` lists them all when every one is.
    fn take(&self, watched: impl FnOnce() -> Vec<SaleId>) -> Vec<SaleId> {
        let (sales, all) = match self.inner.lock() {
            Ok(mut d) => (std::mem::take(&mut d.sales), std::mem::take(&mut d.all)),
            Err(_) => return Vec::new(),
        };
        if all {
            watched()
        } else {
            sales.into_iter().collect()
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
