//! Flash sales: create, list, get, rerun, cancel.

use bytes::Bytes;
use http::Request;

use super::{admin, user};
use crate::clock::now_ms;
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract::{self, Query};
use crate::http::response::{HttpResult, created, ok};
use crate::ids::SaleId;
use crate::sales::{RerunInput, SaleInput, SaleStatus, SaleView};
use crate::state::AppState;

fn sale_id(id: &str) -> Result<SaleId, ApiError> {
    SaleId::parse(id)
        .map_err(|_| ApiError::new(ErrorCode::FlashSaleNotFound, "flash sale not found"))
}

pub async fn create(state: &AppState, req: Request<Bytes>) -> HttpResult {
    admin(state, &req)?;
    let (parts, body) = req.into_parts();
    let input: SaleInput = extract::json(&parts.headers, &body)?;
    let sale = state.sales.create(&input).await?;
    created(&sale.view(Some(sale.total_units), now_ms()))
}

pub async fn list(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    user(state, req)?;
    let q = Query::parse(req.uri().query(), &["status", "offset", "limit"])?;
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(SaleStatus::parse(s).ok_or_else(|| {
            ApiError::field("status", "must be pending, active, ended or cancelled")
        })?),
    };
    let offset = q.int("offset", 0, 0, 1_000_000)?;
    let limit = q.int("limit", 100, 1, 1_000)?;
    let now = now_ms();
    let views: Vec<SaleView> = state
        .sales
        .list(status, offset, limit as i64)
        .await?
        .iter()
        .map(|(s, a)| s.view(*a, now))
        .collect();
    ok(&views)
}

pub async fn get(state: &AppState, req: &Request<Bytes>, id: &str) -> HttpResult {
    user(state, req)?;
    let (sale, available) = state.sales.get(sale_id(id)?).await?;
    ok(&sale.view(available, now_ms()))
}

pub async fn rerun(state: &AppState, req: Request<Bytes>, id: &str) -> HttpResult {
    admin(state, &req)?;
    let id = sale_id(id)?;
    let (parts, body) = req.into_parts();
    let input: RerunInput = extract::json(&parts.headers, &body)?;
    let sale = state.sales.rerun(id, &input).await?;
    created(&sale.view(Some(sale.total_units), now_ms()))
}

pub async fn cancel(state: &AppState, req: &Request<Bytes>, id: &str) -> HttpResult {
    admin(state, req)?;
    let id = sale_id(id)?;
    let sale = state.sales.cancel(id).await?;
    let available = state.hot.available(id).await?;
    ok(&sale.view(available, now_ms()))
}
