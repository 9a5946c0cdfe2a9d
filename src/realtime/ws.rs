//! One task per WebSocket (the handshake is `http::handlers::ws`), with a
//! bounded outgoing queue. A client too slow to drain its queue is dropped,
//! never waited for. Sockets close with 1001 when the service shuts down,
//! and with 1008 when the client sends faster than its message rate, when
//! its token expires or is revoked, or when its user is blocked. A join is
//! answered from the room's shared snapshot (one Redis read per sale).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::tungstenite::protocol::CloseFrame;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use hyper_tungstenite::{HyperWebsocket, HyperWebsocketStream};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Room, Slot};
use super::messages::{ClientMessage, ServerMessage};
use crate::auth::{CurrentUser, TokenEpochs};
pub use crate::config::RealtimeConfig;
use crate::error::ErrorCode;
use crate::error::StoreError;
use crate::fraud::Blocklist;
use crate::hot::HotSales;
use crate::ids::SaleId;

/// What every socket task shares: the hub, the sales' hot state (for the
/// first snapshot of a sale), what revokes access (blocklist, token epochs)
/// and the limits. One per instance, behind an `Arc`.
#[derive(Debug)]
pub struct Sockets {
    pub hub: Arc<Hub>,
    pub hot: HotSales,
    pub blocklist: Arc<Blocklist>,
    pub epochs: Arc<TokenEpochs>,
    pub cfg: RealtimeConfig,
}

impl Sockets {
    /// Runs an upgraded socket for `user` on the hub's task tracker. `slot`
    /// is the connection's place in the hub's counts, held until the socket
    /// ends.
    pub fn spawn(self: &Arc<Self>, websocket: HyperWebsocket, user: CurrentUser, slot: Slot) {
        let sockets = self.clone();
        self.hub.tracker.clone().spawn(async move {
            let _slot = slot;
            match websocket.await {
                Ok(ws) => Connection::new(sockets, user).run(ws).await,
                Err(e) => tracing::debug!(error = %e, "websocket handshake failed"),
            }
        });
    }
}

/// One socket's state.
struct Connection {
    sockets: Arc<Sockets>,
    /// Who opened the socket (its token was verified at the handshake).
    user: CurrentUser,
    hub: Arc<Hub>,
    /// Cancelled when the service shuts down.
    shutdown: CancellationToken,
    /// Cancelled when this client is too slow or its socket failed.
    kill: CancellationToken,
}

fn text(msg: &ServerMessage) -> Message {
    Message::Text(Utf8Bytes::from(msg.to_text()))
}

/// Why an open socket's access ended, as its close reason.
fn revoked(sockets: &Sockets, user: &CurrentUser) -> Option<&'static str> {
    if sockets.blocklist.is_user_blocked(user.id) {
        Some("blocked")
    } else if sockets.epochs.is_revoked(user) {
        Some("token revoked")
    } else if user.expires_at <= now_secs() {
        Some("token expired")
    } else {
        None
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Why a sale's snapshot could not be read.
enum SnapshotError {
    NotFound,
    Store(StoreError),
}

fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

impl Connection {
    fn new(sockets: Arc<Sockets>, user: CurrentUser) -> Self {
        let hub = sockets.hub.clone();
        Self {
            shutdown: hub.stop.child_token(),
            kill: CancellationToken::new(),
            hub,
            sockets,
            user,
        }
    }

    async fn run(self, ws: HyperWebsocketStream) {
        let cfg = self.sockets.cfg.clone();
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::channel::<Message>(cfg.queue.max(2));

        let this = &self;
        let send_timeout = cfg.send_timeout;
        let writer = async move {
            loop {
                tokio::select! {
                    biased;
                    _ = this.shutdown.cancelled() => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close(CloseCode::Away, "server shutting down"))).await;
                        break;
                    }
                    _ = this.kill.cancelled() => {
                        this.hub.stats.slow_dropped.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(crate::metrics::WS_SLOW_CLIENTS_DROPPED_TOTAL).increment(1);
                        let _ = tokio::time::timeout(Duration::from_millis(200), sink.send(close(CloseCode::Policy, "client too slow"))).await;
                        break;
                    }
                    m = rx.recv() => {
                        let Some(m) = m else { break };
                        let closing = matches!(m, Message::Close(_));
                        match tokio::time::timeout(send_timeout, sink.send(m)).await {
                            Ok(Ok(())) => {
                                this.hub.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                                metrics::counter!(crate::metrics::WS_MESSAGES_SENT_TOTAL).increment(1);
                            }
                            _ => {
                                this.hub.stats.slow_dropped.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(crate::metrics::WS_SLOW_CLIENTS_DROPPED_TOTAL).increment(1);
                                break;
                            }
                        }
                        if closing {
                            break;
                        }
                    }
                }
            }
        };

        let reader = async move {
            let mut rooms: HashMap<SaleId, (super::Membership, CancellationToken)> = HashMap::new();
            let mut ping = tokio::time::interval(cfg.ping_interval);
            ping.tick().await;
            let mut last_seen = tokio::time::Instant::now();
            let rate = governor::RateLimiter::direct(
                governor::Quota::per_second(
                    NonZeroU32::new(cfg.messages_per_second).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(cfg.messages_burst).unwrap_or(NonZeroU32::MIN)),
            );
            // Access ends when the token expires, or at once when the user
            // is blocked or the token revoked (both arrive by pub/sub).
            let mut blocks = this.sockets.blocklist.changes();
            let mut epochs = this.sockets.epochs.changes();
            let expiry = tokio::time::sleep(Duration::from_secs(
                this.user.expires_at.saturating_sub(now_secs()),
            ));
            tokio::pin!(expiry);
            loop {
                let changed = tokio::select! {
                    _ = this.shutdown.cancelled() => break,
                    _ = this.kill.cancelled() => break,
                    _ = &mut expiry => {
                        // The timer was set from the token's `exp`.
                        metrics::counter!(crate::metrics::WS_REVOKED_TOTAL).increment(1);
                        let _ = tx.try_send(close(CloseCode::Policy, "token expired"));
                        break;
                    }
                    r = blocks.changed() => r.is_ok(),
                    r = epochs.changed() => r.is_ok(),
                    _ = ping.tick() => {
                        if last_seen.elapsed() > cfg.idle_timeout {
                            let _ = tx.try_send(close(CloseCode::Away, "idle timeout"));
                            break;
                        }
                        let _ = tx.try_send(Message::Ping(Default::default()));
                        false
                    }
                    m = stream.next() => {
                        if !matches!(m, None | Some(Ok(Message::Close(_)))) && rate.check().is_err() {
                            metrics::counter!(crate::metrics::WS_RATE_LIMITED_TOTAL).increment(1);
                            let _ = tx.try_send(close(CloseCode::Policy, "message rate limit exceeded"));
                            break;
                        }
                        match m {
                            None | Some(Ok(Message::Close(_))) => break,
                            Some(Err(tungstenite::Error::Capacity(_))) => {
                                let _ = tx.try_send(text(&ServerMessage::error(ErrorCode::MessageTooLarge, "message exceeds the size limit")));
                                let _ = tx.try_send(close(CloseCode::Size, "message too large"));
                                break;
                            }
                            Some(Err(_)) => break,
                            Some(Ok(msg)) => {
                                last_seen = tokio::time::Instant::now();
                                if let Message::Text(t) = msg {
                                    this.handle(&t, &mut rooms, &tx).await;
                                } else if let Message::Binary(_) = msg {
                                    let _ = tx.try_send(text(&ServerMessage::error(ErrorCode::BadMessage, "binary messages are not supported")));
                                }
                            }
                        }
                        false
                    }
                };
                if changed && let Some(reason) = revoked(&this.sockets, &this.user) {
                    metrics::counter!(crate::metrics::WS_REVOKED_TOTAL).increment(1);
                    let _ = tx.try_send(close(CloseCode::Policy, reason));
                    break;
                }
            }
            for (_, (_, token)) in rooms.drain() {
                token.cancel();
            }
        };

        tokio::pin!(writer);
        tokio::select! {
            _ = &mut writer => {}
            _ = reader => {
                // The reader owned the queue's sender and its forwarders are
                // cancelled, so the writer sends what is queued (an error, a
                // close frame) and then stops.
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
            }
        }
        tracing::debug!(user = %self.user.id.hex(), "websocket closed");
    }

    async fn handle(
        &self,
        raw: &str,
        rooms: &mut HashMap<SaleId, (super::Membership, CancellationToken)>,
        tx: &mpsc::Sender<Message>,
    ) {
        let msg: ClientMessage = match serde_json::from_str(raw) {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.try_send(text(&ServerMessage::error(
                    ErrorCode::BadMessage,
                    format!("expected {{\"event\":\"joinFlashSale\"|\"leaveFlashSale\",\"data\":{{\"flashSaleId\":...}}}}: {e}"),
                )));
                return;
            }
        };
        match msg {
            ClientMessage::Join(r) => {
                let not_found = || {
                    text(&ServerMessage::error(
                        ErrorCode::FlashSaleNotFound,
                        "flash sale not found",
                    ))
                };
                let Ok(sale) = SaleId::parse(r.flash_sale_id.trim()) else {
                    let _ = tx.try_send(not_found());
                    return;
                };
                if !rooms.contains_key(&sale) && rooms.len() >= self.sockets.cfg.max_rooms {
                    let _ = tx.try_send(text(&ServerMessage::error(
                        ErrorCode::RoomLimit,
                        format!(
                            "at most {} flash sales per connection",
                            self.sockets.cfg.max_rooms
                        ),
                    )));
                    return;
                }
                // Join the room first: its snapshot is shared, and
                // subscribing before the snapshot goes out loses nothing.
                let membership = rooms.remove(&sale).map(|(m, t)| {
                    t.cancel();
                    m
                });
                let membership = membership.unwrap_or_else(|| self.hub.join(sale));
                let stock_rx = membership.room.stock.subscribe();
                let events_rx = membership.room.events.subscribe();
                let snapshot = match self.snapshot(sale, &membership.room).await {
                    Ok(s) => s,
                    Err(SnapshotError::NotFound) => {
                        let _ = tx.try_send(not_found());
                        return;
                    }
                    Err(SnapshotError::Store(e)) => {
                        tracing::warn!(error = %crate::error::ErrorChain(&e), "sale snapshot read failed");
                        let _ = tx.try_send(text(&ServerMessage::error(
                            ErrorCode::Unavailable,
                            "try again shortly",
                        )));
                        return;
                    }
                };
                let units = snapshot.available;
                if tx.try_send(text(&status_message(sale, &snapshot))).is_err() {
                    self.kill.cancel();
                    return;
                }
                let token = self.kill.child_token();
                tokio::spawn(forward(
                    stock_rx,
                    events_rx,
                    tx.clone(),
                    token.clone(),
                    self.kill.clone(),
                    units,
                    self.sockets.cfg.send_timeout,
                ));
                rooms.insert(sale, (membership, token));
            }
            ClientMessage::Leave(r) => {
                if let Ok(sale) = SaleId::parse(r.flash_sale_id.trim())
                    && let Some((_, token)) = rooms.remove(&sale)
                {
                    token.cancel();
                }
            }
        }
    }
}

impl Connection {
    /// The sale's snapshot as the room holds it: read from Redis by the
    /// first join only (the others wait for that read), with the stock
    /// published since and a cancel announced since.
    async fn snapshot(
        &self,
        sale: SaleId,
        room: &Room,
    ) -> Result<crate::hot::Snapshot, SnapshotError> {
        let first = room
            .snapshot
            .get_or_try_init(|| async {
                metrics::counter!(crate::metrics::WS_SNAPSHOT_READS_TOTAL).increment(1);
                match self.sockets.hot.snapshot(sale).await {
                    Ok(Some(s)) => Ok(s),
                    Ok(None) => Err(SnapshotError::NotFound),
                    Err(e) => Err(SnapshotError::Store(e)),
                }
            })
            .await?;
        let mut s = *first;
        if let Some(latest) = room.stock.borrow().as_ref() {
            // Stock never rises within a sale event: the lower one is newer.
            s.available = s.available.min(latest.units);
        }
        s.cancelled |= room.cancelled.load(Ordering::Acquire);
        Ok(s)
    }
}

/// Copies a room's stock updates and events into one connection's queue.
/// A queue that stays full for the send timeout marks the client as too
/// slow: the connection is dropped rather than waited for. Bursts beyond the
/// room's broadcast capacity are skipped (the client sees later events).
async fn forward(
    mut stock: tokio::sync::watch::Receiver<Option<super::StockFrame>>,
    mut events: broadcast::Receiver<Utf8Bytes>,
    tx: mpsc::Sender<Message>,
    token: CancellationToken,
    kill: CancellationToken,
    mut last: i64,
    send_timeout: Duration,
) {
    // A value published before we subscribed still counts.
    stock.mark_changed();
    let push = |m: Message| {
        let tx = tx.clone();
        let kill = kill.clone();
        async move {
            match tx.send_timeout(m, send_timeout).await {
                Ok(()) => true,
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    kill.cancel();
                    false
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
            }
        }
    };
    loop {
        let frame = tokio::select! {
            _ = token.cancelled() => break,
            r = stock.changed() => {
                if r.is_err() {
                    break;
                }
                let latest = stock.borrow_and_update().clone();
                match latest {
                    Some(f) if f.units < last => {
                        last = f.units;
                        f.frame
                    }
                    _ => continue,
                }
            }
            r = events.recv() => match r {
                Ok(f) => f,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        };
        tokio::select! {
            _ = token.cancelled() => break,
            ok = push(Message::Text(frame)) => if !ok { break },
        }
    }
}

/// The `flashSaleStatus` snapshot sent on join.
fn status_message(sale: SaleId, s: &crate::hot::Snapshot) -> ServerMessage {
    let now = crate::clock::now_ms();
    let status = if s.cancelled {
        "cancelled"
    } else if now < s.start_ms {
        "pending"
    } else if now >= s.end_ms || s.available <= 0 {
        "ended"
    } else {
        "active"
    };
    let iso = |ms| crate::clock::rfc3339_ms(ms);
    ServerMessage::Status {
        flash_sale_id: sale.hex(),
        status: status.to_owned(),
        available_units: s.available.max(0),
        start_time: iso(s.start_ms),
        end_time: iso(s.end_ms),
    }
}
