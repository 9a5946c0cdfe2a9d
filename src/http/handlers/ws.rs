//! `GET /` and `/ws` with `Upgrade: websocket`: the handshake checks (Origin,
//! credentials, the socket caps), then the socket runs in
//! `realtime::Sockets`. And `POST /api/ws-ticket`, the one-use ticket a
//! browser puts in the WebSocket URL instead of its token.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;
use serde::Serialize;

use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract::{self, Query};
use crate::http::response::{HttpResult, created};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketView {
    ticket: String,
    expires_in: u64,
}

/// POST /api/ws-ticket: any signed-in user gets a ticket for `?ticket=`.
pub async fn ticket(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    extract::current_user(state, req.headers())?;
    Query::parse(req.uri().query(), &[])?;
    // The ticket stands for the caller's token, checked again when used.
    let token = extract::bearer(req.headers()).unwrap_or_default();
    let ticket = state.tickets.issue(token).await?;
    created(&TicketView {
        ticket,
        expires_in: state.tickets.ttl().as_secs(),
    })
}

/// The bearer token of a handshake: the Authorization header, a one-use
/// `?ticket=`, or (legacy, it ends up in logs) `?token=`.
async fn handshake_token(state: &AppState, req: &Request<Bytes>) -> Result<String, ApiError> {
    if let Some(t) = extract::bearer(req.headers()) {
        return Ok(t.to_owned());
    }
    let q = Query::parse(req.uri().query(), &["ticket", "token"])?;
    match (q.get("ticket"), q.get("token")) {
        (Some(_), Some(_)) => Err(ApiError::validation("give either ?ticket= or ?token=")),
        (Some(ticket), None) => state.tickets.redeem(ticket).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidToken,
                "the ticket is unknown, used or expired; get a new one from POST /api/ws-ticket",
            )
        }),
        (None, Some(token)) => Ok(token.to_owned()),
        (None, None) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a token is required (Authorization header, or ?ticket= from POST /api/ws-ticket)",
        )),
    }
}

/// Handles `GET /` or `/ws`: checks the handshake and upgrades.
pub async fn upgrade(state: &AppState, mut req: Request<Bytes>, peer: SocketAddr) -> HttpResult {
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
    let token = handshake_token(state, &req).await?;
    let user = extract::authenticate(state, &token)?;
    let ip = crate::net::client_ip(peer.ip(), req.headers(), &state.config.http.trust_proxy);
    // The socket's slot is held until it closes: upgraded sockets leave the
    // HTTP connection pool (MAX_CONNECTIONS) and count here instead.
    let slot = state.hub.admit(ip, user.id)?;
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
    state.sockets.spawn(websocket, user, slot);
    Ok(response)
}
