//! The WebSocket endpoint on the HTTP port (`/` and `/ws`): handshake checks
//! (token, Origin, connections per IP), then one task per socket with a
//! bounded outgoing queue. A client too slow to drain its queue is dropped,
//! never waited for. Sockets close with 1001 when the service shuts down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Request;
use hyper::body::Incoming;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use hyper_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use hyper_tungstenite::{HyperWebsocket, HyperWebsocketStream};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::hub::Hub;
use super::messages::{ClientMessage, ServerMessage};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorCode};
use crate::http::extract::{self, Query};
use crate::http::response::HttpResult;
use crate::ids::SaleId;

pub use crate::config::RealtimeConfig;

/// Handles `GET /` or `/ws`: checks the handshake and upgrades.
pub fn upgrade(state: &Arc<AppState>, mut req: Request<Incoming>, peer: SocketAddr) -> HttpResult {
    let cfg = &state.config.realtime;
    if !hyper_tungstenite::is_upgrade_request(&req) {
        return Err(ApiError::new(
            ErrorCode::UpgradeRequired,
            "this endpoint speaks WebSocket; send an Upgrade: websocket request",
        ));
    }
    if !cfg.allowed_origins.is_empty() {
        let origin = req.headers().get("origin").and_then(|o| o.to_str().ok());
        if let Some(origin) = origin
            && !cfg.allowed_origins.iter().any(|a| a == origin)
        {
            return Err(ApiError::new(ErrorCode::Forbidden, "origin not allowed"));
        }
    }
    let token = match extract::bearer(req.headers()) {
        Some(t) => t.to_owned(),
        None => {
            let q = Query::parse(req.uri().query(), &["token"])?;
            q.get("token").map(str::to_owned).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "a token is required (Authorization header or ?token=)",
                )
            })?
        }
    };
    let user = CurrentUser::from_token(&state.keys, &token)?;
    let ip = extract::client_ip(peer.ip(), req.headers(), &state.config.http.trust_proxy);
    let Some(slot) = state.hub.admit(ip) else {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many WebSocket connections from this address",
        )
        .with_retry_after(5));
    };
    // tungstenite allocates (and zero-fills) the whole read buffer for every
    // connection up front. Clients send only small join/leave messages, so
    // 1 KiB is one read for any of them; a larger frame grows the buffer.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    let (response, websocket) = hyper_tungstenite::upgrade(&mut req, Some(ws_config))
        .map_err(|_| ApiError::validation("invalid WebSocket handshake"))?;
    let state = state.clone();
    state.hub.tracker.clone().spawn(async move {
        let _slot = slot;
        if let Err(e) = serve(websocket, &state, user).await {
            tracing::debug!(error = %e, "websocket ended with an error");
        }
    });
    Ok(response)
}

async fn serve(
    websocket: HyperWebsocket,
    state: &Arc<AppState>,
    user: CurrentUser,
) -> Result<(), tungstenite::Error> {
    let ws = websocket.await?;
    let _ = user;
    Connection::new(state.clone()).run(ws).await;
    Ok(())
}

/// One socket's state.
struct Connection {
    state: Arc<AppState>,
    hub: Arc<Hub>,
    /// Cancelled when the service shuts down.
    shutdown: CancellationToken,
    /// Cancelled when this client is too slow or its socket failed.
    kill: CancellationToken,
}

fn text(msg: &ServerMessage) -> Message {
    Message::Text(Utf8Bytes::from(msg.to_text()))
}

fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

impl Connection {
    fn new(state: Arc<AppState>) -> Self {
        let hub = state.hub.clone();
        Self {
            shutdown: hub.stop.child_token(),
            kill: CancellationToken::new(),
            hub,
            state,
        }
    }

    async fn run(self, ws: HyperWebsocketStream) {
        let cfg = self.state.config.realtime.clone();
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
            loop {
                tokio::select! {
                    _ = this.shutdown.cancelled() => break,
                    _ = this.kill.cancelled() => break,
                    _ = ping.tick() => {
                        if last_seen.elapsed() > cfg.idle_timeout {
                            let _ = tx.try_send(close(CloseCode::Away, "idle timeout"));
                            break;
                        }
                        let _ = tx.try_send(Message::Ping(Default::default()));
                    }
                    m = stream.next() => {
                        match m {
                            None | Some(Ok(Message::Close(_))) => break,
                            Some(Err(tungstenite::Error::Capacity(_))) => {
                                let _ = tx.try_send(text(&ServerMessage::error("MESSAGE_TOO_LARGE", "message exceeds the size limit")));
                                let _ = tx.try_send(close(CloseCode::Size, "message too large"));
                                break;
                            }
                            Some(Err(_)) => break,
                            Some(Ok(msg)) => {
                                last_seen = tokio::time::Instant::now();
                                if let Message::Text(t) = msg {
                                    this.handle(&t, &mut rooms, &tx).await;
                                } else if let Message::Binary(_) = msg {
                                    let _ = tx.try_send(text(&ServerMessage::error("BAD_MESSAGE", "binary messages are not supported")));
                                }
                            }
                        }
                    }
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
                    "BAD_MESSAGE",
                    format!("expected {{\"event\":\"joinFlashSale\"|\"leaveFlashSale\",\"data\":{{\"flashSaleId\":...}}}}: {e}"),
                )));
                return;
            }
        };
        match msg {
            ClientMessage::Join(r) => {
                let not_found = || {
                    text(&ServerMessage::error(
                        "FLASH_SALE_NOT_FOUND",
                        "flash sale not found",
                    ))
                };
                let Ok(sale) = SaleId::parse(r.flash_sale_id.trim()) else {
                    let _ = tx.try_send(not_found());
                    return;
                };
                if !rooms.contains_key(&sale) && rooms.len() >= self.state.config.realtime.max_rooms
                {
                    let _ = tx.try_send(text(&ServerMessage::error(
                        "ROOM_LIMIT",
                        format!(
                            "at most {} flash sales per connection",
                            self.state.config.realtime.max_rooms
                        ),
                    )));
                    return;
                }
                let snapshot = match self.state.engine.snapshot(sale).await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        let _ = tx.try_send(not_found());
                        return;
                    }
                    Err(_) => {
                        let _ = tx.try_send(text(&ServerMessage::error(
                            "UNAVAILABLE",
                            "try again shortly",
                        )));
                        return;
                    }
                };
                // Join the room before sending the snapshot, so nothing after it is missed.
                let membership = rooms.remove(&sale).map(|(m, t)| {
                    t.cancel();
                    m
                });
                let membership = membership.unwrap_or_else(|| self.hub.join(sale));
                let units = snapshot.available;
                // Subscribe before the snapshot goes out, so no event in between is lost.
                let stock_rx = membership.room.stock.subscribe();
                let events_rx = membership.room.events.subscribe();
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
                    self.state.config.realtime.send_timeout,
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
fn status_message(sale: SaleId, s: &crate::engine::Snapshot) -> ServerMessage {
    let now = crate::sales::now_ms();
    let status = if s.cancelled {
        "cancelled"
    } else if now < s.start_ms {
        "pending"
    } else if now >= s.end_ms || s.available <= 0 {
        "ended"
    } else {
        "active"
    };
    let iso = |ms| crate::sales::model_rfc3339(mongodb::bson::DateTime::from_millis(ms));
    ServerMessage::Status {
        flash_sale_id: sale.hex(),
        status: status.to_owned(),
        available_units: s.available.max(0),
        start_time: iso(s.start_ms),
        end_time: iso(s.end_ms),
    }
}
