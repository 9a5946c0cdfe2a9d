//! The hub: one room per watched sale, shared by every connection on this
//! instance. A room holds a `watch` of the latest stock (only the newest value
//! matters) and a `broadcast` of lifecycle events; both carry frames that are
//! serialised once and shared by all watchers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tungstenite::Utf8Bytes;

use super::ServerMessage;
use crate::ids::SaleId;
use hyper_tungstenite::tungstenite;

/// Latest stock of a sale and its frame.
#[derive(Debug, Clone)]
pub struct StockFrame {
    pub units: i64,
    pub frame: Utf8Bytes,
}

#[derive(Debug)]
pub struct Room {
    pub stock: watch::Sender<Option<StockFrame>>,
    pub events: broadcast::Sender<Utf8Bytes>,
    watchers: AtomicUsize,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct HubStats {
    pub connections: AtomicUsize,
    pub slow_dropped: AtomicU64,
    pub frames_sent: AtomicU64,
}

#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<SaleId, Arc<Room>>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub stats: HubStats,
    /// Cancelled at shutdown: every socket closes with 1001.
    pub stop: CancellationToken,
    /// Tracks socket tasks so shutdown can wait for their close frames.
    pub tracker: TaskTracker,
    max_per_ip: usize,
}

/// A connection slot for one IP, released on drop.
#[derive(Debug)]
pub struct IpSlot {
    hub: Arc<Hub>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.hub.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
        self.hub.stats.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::WS_CONNECTIONS).decrement(1.0);
    }
}

/// A watcher's membership in a room, released on drop.
#[derive(Debug)]
pub struct Membership {
    hub: Arc<Hub>,
    sale: SaleId,
    pub room: Arc<Room>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.room.watchers.fetch_sub(1, Ordering::AcqRel) == 1
            && let Ok(mut rooms) = self.hub.rooms.lock()
        {
            // Only remove it if nobody joined in between.
            if self.room.watchers.load(Ordering::Acquire) == 0 {
                rooms.remove(&self.sale);
            }
        }
    }
}

impl Hub {
    pub fn new(max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            stats: HubStats::default(),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            max_per_ip,
        })
    }

    /// Takes a connection slot for `ip`, or None when the IP has too many.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut m = self.per_ip.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::WS_CONNECTIONS).increment(1.0);
        Some(IpSlot {
            hub: self.clone(),
            ip,
        })
    }

    /// Joins (creating if needed) the room of `sale`.
    pub fn join(self: &Arc<Self>, sale: SaleId) -> Membership {
        let room = {
            let mut rooms = self.rooms.lock().expect("hub lock");
            let room = rooms
                .entry(sale)
                .or_insert_with(|| {
                    Arc::new(Room {
                        stock: watch::channel(None).0,
                        events: broadcast::channel(256).0,
                        watchers: AtomicUsize::new(0),
                    })
                })
                .clone();
            room.watchers.fetch_add(1, Ordering::AcqRel);
            room
        };
        Membership {
            hub: self.clone(),
            sale,
            room,
        }
    }

    /// Sales with at least one watcher on this instance.
    pub fn watched(&self) -> Vec<SaleId> {
        self.rooms
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn is_watched(&self, sale: SaleId) -> bool {
        self.rooms
            .lock()
            .map(|r| r.contains_key(&sale))
            .unwrap_or(false)
    }

    fn room(&self, sale: SaleId) -> Option<Arc<Room>> {
        self.rooms.lock().ok()?.get(&sale).cloned()
    }

    /// Publishes a stock level. Stock never rises within a sale event, so a
    /// value above the last one published is ignored.
    pub fn publish_stock(&self, sale: SaleId, units: i64) -> bool {
        let Some(room) = self.room(sale) else {
            return false;
        };
        let units = units.max(0);
        room.stock.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|c| units >= c.units) {
                return false;
            }
            let msg = ServerMessage::StockUpdate {
                flash_sale_id: sale.hex(),
                available_units: units,
            };
            *cur = Some(StockFrame {
                units,
                frame: Utf8Bytes::from(msg.to_text()),
            });
            true
        })
    }

    /// Publishes a lifecycle event to this instance's watchers of `sale`.
    pub fn publish_event(&self, sale: SaleId, msg: &ServerMessage) -> usize {
        let Some(room) = self.room(sale) else {
            return 0;
        };
        room.events
            .send(Utf8Bytes::from(msg.to_text()))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stock_never_goes_up_and_rooms_vanish_with_their_last_watcher() {
        let hub = Hub::new(10);
        let sale = SaleId::new();
        assert!(!hub.publish_stock(sale, 5), "no room, nothing published");
        let m = hub.join(sale);
        let mut rx = m.room.stock.subscribe();
        assert!(hub.publish_stock(sale, 5));
        assert!(!hub.publish_stock(sale, 7), "never increases");
        assert!(hub.publish_stock(sale, 2));
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().as_ref().unwrap().units, 2);
        assert!(hub.is_watched(sale));
        drop(m);
        assert!(!hub.is_watched(sale));
    }

    #[test]
    fn each_ip_gets_a_bounded_number_of_connections() {
        let hub = Hub::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = hub.admit(ip).unwrap();
        let _b = hub.admit(ip).unwrap();
        assert!(hub.admit(ip).is_none());
        drop(a);
        assert!(hub.admit(ip).is_some());
        assert!(hub.admit("10.0.0.2".parse().unwrap()).is_some());
    }

    #[tokio::test]
    async fn events_are_serialised_once_and_reach_every_watcher() {
        let hub = Hub::new(10);
        let sale = SaleId::new();
        let (a, b) = (hub.join(sale), hub.join(sale));
        let (mut ra, mut rb) = (a.room.events.subscribe(), b.room.events.subscribe());
        let msg = ServerMessage::Started {
            flash_sale_id: sale.hex(),
        };
        assert_eq!(hub.publish_event(sale, &msg), 2);
        let (fa, fb) = (ra.recv().await.unwrap(), rb.recv().await.unwrap());
        assert_eq!(fa, fb);
        assert!(fa.as_str().contains("flashSaleStarted"));
    }
}
