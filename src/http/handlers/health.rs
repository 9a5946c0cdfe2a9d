//! Liveness and readiness probes.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::http::response::{HttpResult, json};
use crate::state::AppState;

pub fn healthz() -> HttpResult {
    Ok(json(StatusCode::OK, &json!({ "status": "ok" })))
}

/// 200 when Redis and MongoDB both answer within a second, else 503 naming
/// what is down.
pub async fn readyz(state: &AppState) -> HttpResult {
    let limit = Duration::from_secs(1);
    let redis = tokio::time::timeout(limit, crate::redis::ping(&state.redis)).await;
    let mongo = tokio::time::timeout(
        limit,
        state.db.run_command(mongodb::bson::doc! { "ping": 1 }),
    )
    .await;
    let redis_ok = matches!(redis, Ok(Ok(())));
    let mongo_ok = matches!(mongo, Ok(Ok(_)));
    let word = |ok: bool| if ok { "up" } else { "down" };
    let body = json!({
        "status": if redis_ok && mongo_ok { "ready" } else { "degraded" },
        "redis": word(redis_ok),
        "mongodb": word(mongo_ok),
    });
    let status = if redis_ok && mongo_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json(status, &body))
}
