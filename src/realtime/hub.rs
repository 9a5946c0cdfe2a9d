//! The hub: one room per watched sale, shared by every connection on this
//! instance. A room holds a `watch` of the latest stock (only the newest value
//! matters) and a `broadcast` of lifecycle events; both carry frames that are
//! serialised once and shared by all watchers. A room also holds the sale's
//! snapshot for joins, read from Redis once (single-flight) and kept current
//! by the stock source and lifecycle events. The hub counts open sockets:
//! in all, per user, and per address key (`crate::net::ip_key`, IPv6 by /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tungstenite::Utf8Bytes;

use super::ServerMessage;
use crate::hot::Snapshot;
use crate::ids::{SaleId, UserId};
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
    /// The sale's window and stock as first read from Redis: set once, by
    /// the first join (the others wait for it); later stock comes from
    /// `stock`.
    pub snapshot: OnceCell<Snapshot>,
    /// Set by a `cancelled` end event after the snapshot was read.
    pub cancelled: AtomicBool,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct HubStats {
    pub connections: AtomicUsize,
    pub slow_dropped: AtomicU64,
    pub frames_sent: AtomicU64,
}

/// How many sockets may be open on this instance.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// In all (`WS_MAX_CONNECTIONS`).
    pub total: usize,
    /// Per user (`WS_MAX_PER_USER`).
    pub per_user: usize,
    /// Per address key (`WS_MAX_CONNECTIONS_PER_IP`).
    pub per_ip: usize,
}

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The instance holds `WS_MAX_CONNECTIONS` sockets.
    Full,
    /// The user holds `WS_MAX_PER_USER`.
    User,
    /// The address key holds `WS_MAX_CONNECTIONS_PER_IP`.
    Address,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_user: HashMap<UserId, usize>,
}

#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<SaleId, Arc<Room>>>,
    /// Open sockets; one lock, taken once per handshake and once per close.
    counts: Mutex<Counts>,
    pub stats: HubStats,
    /// Cancelled at shutdown: every socket closes with 1001.
    pub stop: CancellationToken,
    /// Tracks socket tasks so shutdown can wait for their close frames.
    pub tracker: TaskTracker,
    caps: Caps,
}

/// An open socket's place in the counts, released on drop.
#[derive(Debug)]
pub struct Slot {
    hub: Arc<Hub>,
    ip: IpAddr,
    user: UserId,
}

fn release<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.hub.counts.lock() {
            c.total -= 1;
            release(&mut c.per_ip, &self.ip);
            release(&mut c.per_user, &self.user);
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
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
            stats: HubStats::default(),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            caps,
        })
    }

    /// Takes a socket slot for `user` from `ip` (counted under its
    /// `ip_key`), or says which cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, user: UserId) -> Result<Slot, Refused> {
        let ip = crate::net::ip_key(ip);
        let mut c = self.counts.lock().map_err(|_| Refused::Full)?;
        if c.total >= self.caps.total {
            return Err(Refused::Full);
        }
        if c.per_user.get(&user).copied().unwrap_or(0) >= self.caps.per_user {
            return Err(Refused::User);
        }
        if c.per_ip.get(&ip).copied().unwrap_or(0) >= self.caps.per_ip {
            return Err(Refused::Address);
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        *c.per_user.entry(user).or_insert(0) += 1;
        drop(c);
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::WS_CONNECTIONS).increment(1.0);
        Ok(Slot {
            hub: self.clone(),
            ip,
            user,
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
                        snapshot: OnceCell::new(),
                        cancelled: AtomicBool::new(false),
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

    /// Records in the room's snapshot that `sale` was cancelled.
    pub fn mark_cancelled(&self, sale: SaleId) {
        if let Some(room) = self.room(sale) {
            room.cancelled.store(true, Ordering::Release);
        }
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

    fn caps(total: usize, per_user: usize, per_ip: usize) -> Caps {
        Caps {
            total,
            per_user,
            per_ip,
        }
    }

    #[tokio::test]
    async fn stock_never_goes_up_and_rooms_vanish_with_their_last_watcher() {
        let hub = Hub::new(caps(10, 10, 10));
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
        let hub = Hub::new(caps(100, 100, 2));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = hub.admit(ip, UserId::new()).unwrap();
        let _b = hub.admit(ip, UserId::new()).unwrap();
        assert_eq!(hub.admit(ip, UserId::new()).unwrap_err(), Refused::Address);
        drop(a);
        assert!(hub.admit(ip, UserId::new()).is_ok());
        assert!(
            hub.admit("10.0.0.2".parse().unwrap(), UserId::new())
                .is_ok()
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let hub = Hub::new(caps(100, 100, 1));
        let _a = hub
            .admit("2001:db8:1:2::1".parse().unwrap(), UserId::new())
            .unwrap();
        assert_eq!(
            hub.admit("2001:db8:1:2:ffff::9".parse().unwrap(), UserId::new())
                .unwrap_err(),
            Refused::Address
        );
        assert!(
            hub.admit("2001:db8:1:3::1".parse().unwrap(), UserId::new())
                .is_ok()
        );
    }

    #[test]
    fn users_and_the_instance_have_caps_and_closing_frees_them() {
        let hub = Hub::new(caps(3, 2, 100));
        let (u, v) = (UserId::new(), UserId::new());
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let a = hub.admit(ip(1), u).unwrap();
        let _b = hub.admit(ip(2), u).unwrap();
        assert_eq!(hub.admit(ip(3), u).unwrap_err(), Refused::User);
        let _c = hub.admit(ip(4), v).unwrap();
        assert_eq!(hub.admit(ip(5), v).unwrap_err(), Refused::Full);
        drop(a);
        let _d = hub.admit(ip(6), u).expect("a closed socket frees its slot");
        assert_eq!(hub.stats.connections.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn events_are_serialised_once_and_reach_every_watcher() {
        let hub = Hub::new(caps(10, 10, 10));
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
