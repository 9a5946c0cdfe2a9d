//! GET /api/leaderboard (admin): buyers by first purchase, from Redis.

use bytes::Bytes;
use http::Request;

use super::admin;
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::response::{HttpResult, ok};
use crate::ids::SaleId;
use crate::state::AppState;

pub async fn page(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    admin(state, req)?;
    let q = Query::parse(req.uri().query(), &["flashSaleId", "offset", "limit"])?;
    let sale = q
        .get("flashSaleId")
        .ok_or_else(|| ApiError::field("flashSaleId", "is required"))?;
    let sale = SaleId::parse(sale)
        .map_err(|_| ApiError::field("flashSaleId", "must be a 24-hex-digit id"))?;
    let offset = q.int("offset", 0, 0, 10_000_000)?;
    let limit = q.int("limit", 100, 1, 1_000)?;
    let entries = state
        .leaderboard
        .page(sale, offset, limit)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::FlashSaleNotFound, "flash sale not found"))?;
    ok(&entries)
}
