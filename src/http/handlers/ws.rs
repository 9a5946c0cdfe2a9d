//! `GET /` and `/ws` with `Upgrade: websocket`: the handshake checks (token,
//! Origin, connections per address), then the socket runs in
//! `realtime::Sockets`.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::auth::CurrentUser;
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract::{self, Query};
use crate::http::response::HttpResult;
use crate::state::AppState;

/// Handles `GET /` or `/ws`: checks the handshake and upgrades.
pub fn upgrade(state: &AppState, mut req: Request<Bytes>, peer: SocketAddr) -> HttpResult {
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
    let ip = crate::net::client_ip(peer.ip(), req.headers(), &state.config.http.trust_proxy);
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
    state.sockets.spawn(websocket, user, slot);
    Ok(response)
}
